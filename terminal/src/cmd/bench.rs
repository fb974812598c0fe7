//! `valuecard bench`: every benchmark in one table, and `valuecard bench apdu` for the cards
//! in given readers.

use std::process::ExitCode;

use clap::{Args, Subcommand};
use valuecard_terminal::bench::{self, BASELINE_WARM_UP, Plan, Progress, Stats, format_duration};
use valuecard_terminal::pcsc::{self, PcscTransport};
use valuecard_terminal::transport::{InProcess, Transport};

use super::{CliError, Result, date, wait};
use crate::cli::Global;

const BENCH_HELP: &str = "\
What it measures, each figure the median of --runs runs and each next to a reference
measured in the same run:
  - an APDU round trip (GET DATA) to an in-process card, against the same APDU through
    pcscd + vpcd;
  - an APDU round trip through pcscd + vpcd to a virtual card with the tuned socket,
    against a virtual card with a plain socket (--plain-socket) in the other slot;
  - exchanges per second between two in-process cards, and between two virtual cards
    through pcscd + vpcd, against the exchange's cryptography alone (2 ECDSA P-256
    signatures and 4 verifications);
  - the bank's blind signatures per second (RSA-2048, one core), against the RSA-2048
    private-key signatures per second of `openssl speed rsa2048` (one core);
  - the center's redemptions per second and the arbiter's verdicts per second over HTTP,
    to a valuecard-backend started for the run (4 client threads), against their
    cryptography alone (one core);
  - the peak memory (VmHWM) of a virtual card after the pcscd rows, against the same
    card just started and selected, before them.
The ratio column is the figure's cost over its reference's: time per operation (the
inverse of a rate) or memory.

What it needs: pcscd with vsmartcard-vpcd and both vpcd slots free (`make setup`); it
takes the machine-wide vpcd lock while it uses them. openssl on PATH. valuecard-card and
valuecard-backend next to this program. Only a release build gives meaningful figures
(`make bench` builds one). A full run takes under a minute, --quick about ten seconds.

Progress goes to standard error when it is a terminal; the table, or the JSON, to
standard output.

Examples:
  valuecard bench
  valuecard bench --runs 11
  valuecard bench --quick --json > bench.json
  valuecard --reader 0 bench apdu --baseline-reader 1    (cards you started yourself)";

/// `valuecard bench`: every benchmark in one table.
#[derive(Args, Debug)]
#[command(args_conflicts_with_subcommands = true, after_help = BENCH_HELP)]
pub struct BenchArgs {
    #[command(subcommand)]
    pub only: Option<BenchCommand>,
    /// Runs of each benchmark: each figure is their median [default: 5, 3 with --quick].
    #[arg(long, value_name = "N", value_parser = clap::value_parser!(u16).range(1..))]
    pub runs: Option<u16>,
    /// Few operations per run: every row in seconds, with rough figures (tests, CI).
    #[arg(long)]
    pub quick: bool,
    /// Print the table as JSON on standard output.
    #[arg(long)]
    pub json: bool,
}

#[derive(Subcommand, Debug)]
pub enum BenchCommand {
    /// Time one small APDU round trip (GET DATA of the life-cycle state).
    #[command(
        after_help = "Measures the in-process card, then the card in the chosen reader (--reader, or the
first reader holding a valuecard), then, if asked, a baseline reader for comparison, e.g.
the emulator started with --plain-socket. --trace is ignored here: it would be measured.

Examples:
  valuecard bench apdu
  valuecard --reader 0 bench apdu --baseline-reader 1"
    )]
    Apdu {
        /// Round trips to time on each card.
        #[arg(long, value_name = "N", default_value_t = 2000)]
        iterations: usize,
        /// A second reader to time for comparison.
        #[arg(long, value_name = "R")]
        baseline_reader: Option<String>,
        /// Round trips to time on the baseline reader (a slow one takes ~50 ms each).
        #[arg(long, value_name = "N", default_value_t = 50)]
        baseline_iterations: usize,
    },
}

pub fn run(global: &Global, args: BenchArgs) -> Result<ExitCode> {
    if let Some(command) = args.only {
        return run_apdu(global, command);
    }
    let plan = match (args.quick, args.runs.map(usize::from)) {
        (false, runs) => Plan::full(runs.unwrap_or(Plan::DEFAULT_RUNS)),
        (true, runs) => Plan::quick(runs.unwrap_or(Plan::QUICK_RUNS)),
    };
    let today = date(valuecard_terminal::funding::now());
    let report = bench::run(&plan, today, &Progress::new())
        .map_err(|e| CliError::new(format!("valuecard bench: {e}")))?;
    if args.json {
        let json = serde_json::to_string_pretty(&report)
            .map_err(|e| CliError::new(format!("valuecard bench: {e}")))?;
        println!("{json}");
    } else {
        print!("{}", report.table());
    }
    Ok(ExitCode::SUCCESS)
}

fn run_apdu(global: &Global, command: BenchCommand) -> Result<ExitCode> {
    let BenchCommand::Apdu {
        iterations,
        baseline_reader,
        baseline_iterations,
    } = command;
    let mut rows: Vec<(String, Stats)> = Vec::new();

    let mut in_process = InProcess::in_memory(false);
    rows.push((
        "in-process".into(),
        bench::apdu_round_trip(&mut in_process, iterations)?,
    ));

    let main_reader = match (&global.reader, &global.card_state) {
        (Some(reader), _) => Some(reader.clone()),
        (None, Some(_)) => None,
        (None, None) => first_valuecard_reader(baseline_reader.as_deref()),
    };
    let mut main_median = None;
    if let Some(selector) = main_reader {
        let mut reader = PcscTransport::open(Some(&selector), wait(global))?;
        let stats = bench::apdu_round_trip(&mut reader, iterations)?;
        main_median = Some(stats.median);
        rows.push((format!("{} (PC/SC)", reader.name()), stats));
    }
    if let Some(selector) = &baseline_reader {
        let mut reader = PcscTransport::open(Some(selector), wait(global))?;
        let stats = bench::apdu_round_trip_with_warm_up(
            &mut reader,
            baseline_iterations,
            BASELINE_WARM_UP,
        )?;
        if let Some(main) = main_median.filter(|m| !m.is_zero()) {
            let ratio = stats.median.as_secs_f64() / main.as_secs_f64();
            rows.push((
                format!("{} (PC/SC, baseline, {ratio:.0}x slower)", reader.name()),
                stats,
            ));
        } else {
            rows.push((format!("{} (PC/SC, baseline)", reader.name()), stats));
        }
    }
    print_table(&rows);
    Ok(ExitCode::SUCCESS)
}

/// The first reader that holds a valuecard (by its ATR), other than the baseline.
fn first_valuecard_reader(baseline: Option<&str>) -> Option<String> {
    let readers = pcsc::list_readers().ok()?;
    let names: Vec<String> = readers.iter().map(|r| r.name.clone()).collect();
    let baseline = baseline.and_then(|b| pcsc::choose_reader(&names, b).ok());
    readers
        .iter()
        .enumerate()
        .find(|(i, r)| Some(*i) != baseline && r.atr.as_deref() == Some(apdu_spec::ATR))
        .map(|(_, r)| r.name.clone())
}

fn print_table(rows: &[(String, Stats)]) {
    let width = rows
        .iter()
        .map(|(name, _)| name.chars().count())
        .max()
        .unwrap_or(0)
        .max(4);
    println!(
        "{:<width$}  {:>6}  {:>10}  {:>10}  {:>10}  {:>10}",
        "card", "APDUs", "median", "p10", "p90", "min"
    );
    for (name, s) in rows {
        println!(
            "{name:<width$}  {:>6}  {:>10}  {:>10}  {:>10}  {:>10}",
            s.iterations,
            format_duration(s.median),
            format_duration(s.p10),
            format_duration(s.p90),
            format_duration(s.min)
        );
    }
}
