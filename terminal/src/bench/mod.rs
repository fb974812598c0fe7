//! `valuecard bench`: every benchmark of the project in one run, each figure next to a
//! reference measured in the same run, so that a figure can be judged on any machine.
//!
//! | row | figure | reference |
//! |---|---|---|
//! | `apdu_in_process` | APDU round trip, in-process card | the same APDU through pcscd |
//! | `apdu_pcscd` | APDU round trip through pcscd + vpcd, tuned card | a `--plain-socket` card |
//! | `exchange_in_process` | exchanges/s, two in-process cards | the exchange's cryptography |
//! | `exchange_pcscd` | exchanges/s, two virtual cards | the exchange's cryptography |
//! | `blind_sign` | the bank's blind signatures/s | `openssl speed rsa2048` signs/s |
//! | `redeem_http` | the center's redemptions/s over HTTP | RSA-PSS verification alone |
//! | `verdict_http` | the arbiter's verdicts/s over HTTP | its verifications and signature |
//! | `card_memory` | peak memory of a virtual card | the same card before its work |
//!
//! Each figure is the median of the plan's runs; where a figure and its reference are both
//! timed here, their runs alternate, so that a machine that slows down mid-way slows both.
//! Preparing inputs (keys, cards, blinded messages, tokens, requests) is never timed.

mod apdu;
mod arbiter;
mod backend;
mod exchange;
mod funding;
mod memory;
mod vpcd;

use std::time::Duration;

use indicatif::{ProgressBar, ProgressStyle};
use serde::Serialize;

use crate::ClientError;
use crate::backend_client::BackendError;
use crate::exchange::ExchangeError;
use crate::launch::{self, LaunchError};
use crate::transport::TransportError;

pub use apdu::{
    BASELINE_WARM_UP, Stats, apdu_round_trip, apdu_round_trip_with_warm_up, format_duration,
};

#[derive(Debug, thiserror::Error)]
pub enum BenchError {
    #[error(transparent)]
    Launch(#[from] LaunchError),
    #[error(transparent)]
    Transport(#[from] TransportError),
    #[error("{what}: {source}")]
    Card {
        what: &'static str,
        #[source]
        source: ClientError,
    },
    #[error(transparent)]
    Exchange(#[from] ExchangeError),
    #[error(transparent)]
    Backend(#[from] BackendError),
    #[error("{0}")]
    OpenSsl(String),
    /// A benchmark's own check failed: an answer that should not be.
    #[error("{0}")]
    Check(String),
    #[error("{what}: {source}")]
    Io {
        what: String,
        #[source]
        source: std::io::Error,
    },
}

pub type Result<T, E = BenchError> = std::result::Result<T, E>;

fn on_card(what: &'static str) -> impl FnOnce(ClientError) -> BenchError {
    move |source| BenchError::Card { what, source }
}

/// How much each benchmark does.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Plan {
    /// Runs of every benchmark: each figure is their median.
    pub runs: usize,
    pub quick: bool,
    /// APDU round trips per run, in-process and on the tuned virtual card.
    pub apdus: usize,
    /// APDU round trips per run on the plain-socket card (~44 ms each).
    pub baseline_apdus: usize,
    pub exchanges: usize,
    pub pcsc_exchanges: usize,
    pub blind_signs: usize,
    /// `openssl speed -seconds N`: it then takes 2N seconds (signs, then verifications).
    pub openssl_seconds: u32,
    pub redemptions: usize,
    pub verdicts: usize,
    /// HTTP client threads, one keep-alive connection each.
    pub clients: usize,
}

impl Plan {
    pub const DEFAULT_RUNS: usize = 5;
    pub const QUICK_RUNS: usize = 3;

    /// The full benchmark: under a minute in a release build.
    pub fn full(runs: usize) -> Plan {
        Plan {
            runs: runs.max(1),
            quick: false,
            apdus: 2000,
            baseline_apdus: 10,
            exchanges: 200,
            pcsc_exchanges: 50,
            blind_signs: 200,
            openssl_seconds: 1,
            redemptions: 1000,
            verdicts: 500,
            clients: 4,
        }
    }

    /// Every row with few operations: for tests and CI, rough figures.
    pub fn quick(runs: usize) -> Plan {
        Plan {
            quick: true,
            apdus: 200,
            baseline_apdus: 3,
            exchanges: 10,
            pcsc_exchanges: 5,
            blind_signs: 10,
            redemptions: 40,
            verdicts: 40,
            ..Plan::full(runs)
        }
    }
}

/// One line of the table: a figure and the reference it is judged against.
#[derive(Clone, Debug, PartialEq, Serialize)]
pub struct Row {
    /// A stable name for scripts: `apdu_in_process`, `exchange_pcscd`, ...
    pub id: &'static str,
    pub name: String,
    /// The median of the runs.
    pub figure: f64,
    pub unit: &'static str,
    /// What the reference is; its figure is in the same unit as the row's.
    pub reference: String,
    pub reference_figure: f64,
    /// The figure's cost over the reference's (see [`RATIO`]).
    pub ratio: f64,
    /// What one run does, or when the figure was taken.
    pub detail: String,
}

/// What the ratio column means, for the footer and the JSON.
pub const RATIO: &str = "the figure's cost over the reference's: time per operation (the inverse of a rate) or memory; 1.30× costs 30% more than the reference, 0.01× a hundredth of it";

/// How a figure relates to cost: a time or a size is a cost, a rate its inverse.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Measure {
    Cost,
    Rate,
}

impl Row {
    #[allow(clippy::too_many_arguments)]
    fn new(
        id: &'static str,
        name: impl Into<String>,
        detail: impl Into<String>,
        unit: &'static str,
        measure: Measure,
        figure: f64,
        reference: impl Into<String>,
        reference_figure: f64,
    ) -> Row {
        let ratio = match measure {
            Measure::Cost => figure / reference_figure,
            Measure::Rate => reference_figure / figure,
        };
        Row {
            id,
            name: name.into(),
            figure,
            unit,
            reference: reference.into(),
            reference_figure,
            ratio,
            detail: detail.into(),
        }
    }
}

/// The machine the figures come from.
#[derive(Clone, Debug, PartialEq, Eq, Serialize)]
pub struct Machine {
    /// The CPU model, from /proc/cpuinfo.
    pub cpu: String,
    /// Cores this process may use.
    pub cores: usize,
}

impl Machine {
    pub fn this() -> Machine {
        let cpu = std::fs::read_to_string("/proc/cpuinfo")
            .ok()
            .and_then(|text| {
                text.lines()
                    .find(|l| l.starts_with("model name"))
                    .and_then(|l| l.split_once(':'))
                    .map(|(_, model)| model.split_whitespace().collect::<Vec<_>>().join(" "))
            })
            .unwrap_or_else(|| "unknown CPU".into());
        Machine {
            cpu,
            cores: cores(),
        }
    }
}

fn cores() -> usize {
    std::thread::available_parallelism()
        .map(|n| n.get())
        .unwrap_or(1)
}

/// The whole run: the header and the rows.
#[derive(Clone, Debug, PartialEq, Serialize)]
pub struct Report {
    /// The day of the run (UTC).
    pub date: String,
    pub machine: Machine,
    /// `release` or `debug`: only a release build gives meaningful figures.
    pub build: &'static str,
    pub runs: usize,
    pub quick: bool,
    /// What the rows' ratio means.
    pub ratio: &'static str,
    pub rows: Vec<Row>,
}

impl Report {
    /// The table as Markdown (the README's), with a header line and a footer.
    pub fn table(&self) -> String {
        let mut out = format!(
            "valuecard bench, {}: {}, {} cores, {} build; each figure is the median of {} runs{}, each reference measured in the same run.\n\n",
            self.date,
            self.machine.cpu,
            self.machine.cores,
            self.build,
            self.runs,
            if self.quick { " (--quick)" } else { "" },
        );
        let header = ["benchmark", "figure", "unit", "reference", "ratio"];
        let lines: Vec<[String; 5]> = self
            .rows
            .iter()
            .map(|row| {
                [
                    format!("{} ({})", row.name, row.detail),
                    number(row.figure),
                    row.unit.to_string(),
                    format!(
                        "{}: {} {}",
                        row.reference,
                        number(row.reference_figure),
                        row.unit
                    ),
                    ratio(row.ratio),
                ]
            })
            .collect();
        let mut widths = header.map(|h| h.chars().count());
        for line in &lines {
            for (width, cell) in widths.iter_mut().zip(line) {
                *width = (*width).max(cell.chars().count());
            }
        }
        let right = [false, true, false, false, true];
        let render = |cells: &[String]| {
            let mut line = String::from("|");
            for ((cell, width), right) in cells.iter().zip(widths).zip(right) {
                let pad = " ".repeat(width - cell.chars().count());
                if right {
                    line.push_str(&format!(" {pad}{cell} |"));
                } else {
                    line.push_str(&format!(" {cell}{pad} |"));
                }
            }
            line.push('\n');
            line
        };
        out.push_str(&render(&header.map(String::from)));
        let rule: Vec<String> = widths
            .iter()
            .zip(right)
            .map(|(w, right)| {
                if right {
                    format!("{}:", "-".repeat(w - 1))
                } else {
                    "-".repeat(*w)
                }
            })
            .collect();
        out.push_str(&render(&rule));
        for line in &lines {
            out.push_str(&render(line));
        }
        out.push_str(&format!("\nratio: {RATIO}.\n"));
        out
    }
}

/// Three significant figures, whole numbers from 100 up.
fn number(x: f64) -> String {
    let magnitude = x.abs();
    if magnitude >= 100.0 || magnitude == 0.0 {
        format!("{x:.0}")
    } else {
        let decimals = (2 - magnitude.log10().floor() as i32).clamp(0, 9) as usize;
        format!("{x:.decimals$}")
    }
}

/// A ratio, with its inverse when the figure is much cheaper than its reference.
fn ratio(r: f64) -> String {
    if r > 0.0 && r < 0.1 {
        format!("{}× (1/{})", number(r), number(1.0 / r))
    } else {
        format!("{}×", number(r))
    }
}

/// The median of a run's figures (the upper one of an even count).
fn median(mut values: Vec<f64>) -> f64 {
    values.sort_by(f64::total_cmp);
    values.get(values.len() / 2).copied().unwrap_or(f64::NAN)
}

/// Operations per second.
fn per_second(operations: usize, elapsed: Duration) -> f64 {
    operations as f64 / elapsed.as_secs_f64().max(1e-9)
}

/// Runs `figure` and `reference` alternately, `runs` times each; their medians.
fn alternate(
    runs: usize,
    stage: &Stage,
    mut figure: impl FnMut() -> Result<f64>,
    mut reference: impl FnMut() -> Result<f64>,
) -> Result<(f64, f64)> {
    let (mut figures, mut references) = (Vec::new(), Vec::new());
    for _ in 0..runs {
        references.push(reference()?);
        figures.push(figure()?);
        stage.inc();
    }
    Ok((median(figures), median(references)))
}

// ---- progress ------------------------------------------------------------------------------

/// Progress on standard error: a bar or a spinner per stage. indicatif draws nothing when
/// standard error is not a terminal.
#[derive(Clone, Debug, Default)]
pub struct Progress;

impl Progress {
    pub fn new() -> Progress {
        Progress
    }

    /// A stage of `steps` steps (runs, or tokens): a bar.
    fn stage(&self, message: impl Into<String>, steps: usize) -> Stage {
        let bar = ProgressBar::new(steps as u64);
        bar.set_style(
            ProgressStyle::with_template(
                "{spinner:.green} {msg} [{bar:24.cyan/blue}] {pos}/{len} ({elapsed})",
            )
            .unwrap_or_else(|_| ProgressStyle::default_bar())
            .progress_chars("=> "),
        );
        Stage::new(bar, message.into())
    }

    /// A wait of unknown length (starting processes, taking a lock): a ticking spinner.
    /// Never around timed work: the ticking thread would be measured.
    fn wait(&self, message: impl Into<String>) -> Stage {
        let bar = ProgressBar::new_spinner();
        bar.set_style(
            ProgressStyle::with_template("{spinner:.green} {msg} ({elapsed})")
                .unwrap_or_else(|_| ProgressStyle::default_spinner()),
        );
        bar.enable_steady_tick(Duration::from_millis(120));
        Stage::new(bar, message.into())
    }
}

/// One stage's bar; left on screen with a summary when done.
struct Stage {
    bar: ProgressBar,
    message: String,
}

impl Stage {
    fn new(bar: ProgressBar, message: String) -> Stage {
        bar.set_message(message.clone());
        Stage { bar, message }
    }

    fn inc(&self) {
        self.bar.inc(1);
    }

    fn done(self, summary: impl std::fmt::Display) {
        self.bar.set_style(
            ProgressStyle::with_template("{msg}").unwrap_or_else(|_| ProgressStyle::default_bar()),
        );
        self.bar
            .finish_with_message(format!("✓ {}: {summary}", self.message));
    }
}

// ---- the run -------------------------------------------------------------------------------

/// Checks what the benchmarks need before any of them runs, so that a missing piece fails
/// at once, not after a minute.
fn check_prerequisites() -> Result<String> {
    let openssl = funding::openssl_version()?;
    launch::sibling_binary("valuecard-card")?;
    launch::sibling_binary("valuecard-backend")?;
    launch::require_vpcd()?;
    Ok(openssl)
}

/// Runs every benchmark of `plan`; `date` heads the report.
pub fn run(plan: &Plan, date: String, progress: &Progress) -> Result<Report> {
    let stage = progress.wait("checking pcscd + vpcd, openssl and the valuecard binaries");
    let openssl = check_prerequisites()?;
    let version: Vec<&str> = openssl.split_whitespace().take(2).collect();
    stage.done(format!("all there ({})", version.join(" ")));
    // The cards' state files and the backend's databases, removed when dropped.
    let work = tempfile::Builder::new()
        .prefix("valuecard-bench.")
        .tempdir()
        .map_err(|source| BenchError::Io {
            what: "create a temporary folder".into(),
            source,
        })?;
    // One scheme for the whole run: its maker makes the in-process and the virtual cards,
    // which are personalised under its anchors and issuer (the arbiter is never asked: every
    // exchange here succeeds), and its backend trusts that maker.
    let stage = progress.wait("making the scheme's keys and a test card maker");
    let scheme = launch::Scheme::create(&work.path().join("scheme"))?;
    let keys = exchange::Keys::of(&scheme)?;
    stage.done("made");

    let in_process_apdu = vpcd::apdu_in_process(plan, progress)?;
    let through_pcscd = vpcd::measure(plan, progress, work.path(), &scheme, &keys)?;
    let (exchanges, exchange_crypto) = exchange::in_process(plan, progress, &keys)?;
    let (blind_signs, openssl_signs) = funding::blind_signatures(plan, progress)?;
    let fixture = backend::Fixture::start(progress, &work.path().join("backend"), &scheme)?;
    let (redemptions, verifications) = funding::redemptions(plan, progress, &fixture)?;
    let (verdicts, verdict_crypto) = arbiter::verdicts(plan, progress, &fixture)?;
    drop(fixture);

    let exchange_reference = "its cryptography alone: 2 ECDSA P-256 signs + 4 verifies (1 core)";
    let http = format!("{} clients, {} cores", plan.clients, cores());
    let rows = vec![
        Row::new(
            "apdu_in_process",
            "APDU round trip, in-process card",
            format!("{} GET DATA per run", plan.apdus),
            "µs",
            Measure::Cost,
            in_process_apdu,
            "the same APDU through pcscd + vpcd (next row)",
            through_pcscd.tuned_apdu,
        ),
        Row::new(
            "apdu_pcscd",
            "APDU round trip through pcscd + vpcd, tuned virtual card",
            format!("{} GET DATA per run", plan.apdus),
            "µs",
            Measure::Cost,
            through_pcscd.tuned_apdu,
            format!(
                "a --plain-socket virtual card in the other slot, {} per run",
                plan.baseline_apdus
            ),
            through_pcscd.plain_apdu,
        ),
        Row::new(
            "exchange_in_process",
            "exchanges, two in-process cards",
            format!("{} per run", plan.exchanges),
            "exchanges/s",
            Measure::Rate,
            exchanges,
            exchange_reference,
            exchange_crypto,
        ),
        Row::new(
            "exchange_pcscd",
            "exchanges, two virtual cards through pcscd + vpcd",
            format!("{} per run", plan.pcsc_exchanges),
            "exchanges/s",
            Measure::Rate,
            through_pcscd.exchanges,
            exchange_reference,
            through_pcscd.exchange_crypto,
        ),
        Row::new(
            "blind_sign",
            "bank blind signatures: DenominationSecretKey::blind_sign, RSA-2048, 1 core",
            format!("{} per run", plan.blind_signs),
            "signs/s",
            Measure::Rate,
            blind_signs,
            format!(
                "`openssl speed -seconds {} rsa2048` private-key signs, 1 core",
                plan.openssl_seconds
            ),
            openssl_signs,
        ),
        Row::new(
            "redeem_http",
            format!("center redemptions over HTTP, {http}"),
            format!("{} fresh tokens per run", plan.redemptions),
            "redemptions/s",
            Measure::Rate,
            redemptions,
            "its cryptography alone: RSA-PSS verification of the same tokens, 1 core",
            verifications,
        ),
        Row::new(
            "verdict_http",
            format!("arbiter verdicts over HTTP, {http}"),
            format!("{} fresh sessions per run", plan.verdicts),
            "verdicts/s",
            Measure::Rate,
            verdicts,
            "its cryptography alone: 4 ECDSA P-256 verifies + 1 sign, 1 core",
            verdict_crypto,
        ),
        Row::new(
            "card_memory",
            "peak memory (VmHWM) of a virtual card",
            "after the pcscd APDU and exchange rows",
            "MiB",
            Measure::Cost,
            kib_to_mib(through_pcscd.peak_kib),
            "the same card before them, just started and selected",
            kib_to_mib(through_pcscd.idle_kib),
        ),
    ];
    Ok(Report {
        date,
        machine: Machine::this(),
        build: if cfg!(debug_assertions) {
            "debug"
        } else {
            "release"
        },
        runs: plan.runs,
        quick: plan.quick,
        ratio: RATIO,
        rows,
    })
}

fn kib_to_mib(kib: u64) -> f64 {
    kib as f64 / 1024.0
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn numbers_keep_three_significant_figures() {
        assert_eq!(number(0.1234), "0.123");
        assert_eq!(number(85.24), "85.2");
        assert_eq!(number(1.5), "1.50");
        assert_eq!(number(843.4), "843");
        assert_eq!(number(44012.3), "44012");
        assert_eq!(ratio(1.304), "1.30×");
        assert_eq!(ratio(0.002), "0.00200× (1/500)");
    }

    #[test]
    fn ratios_are_costs() {
        let rate = Row::new("r", "", "", "/s", Measure::Rate, 800.0, "", 1000.0);
        assert!((rate.ratio - 1.25).abs() < 1e-9);
        let time = Row::new("t", "", "", "µs", Measure::Cost, 50.0, "", 100.0);
        assert!((time.ratio - 0.5).abs() < 1e-9);
        assert_eq!(median(vec![3.0, 1.0, 2.0]), 2.0);
    }

    #[test]
    fn the_table_has_a_header_a_line_per_row_and_a_footer() {
        let report = Report {
            date: "2026-11-21".into(),
            machine: Machine {
                cpu: "a CPU".into(),
                cores: 2,
            },
            build: "release",
            runs: 5,
            quick: false,
            ratio: RATIO,
            rows: vec![Row::new(
                "exchange_in_process",
                "exchanges, two in-process cards",
                "200 per run",
                "exchanges/s",
                Measure::Rate,
                800.0,
                "its cryptography alone",
                1040.0,
            )],
        };
        let table = report.table();
        let lines: Vec<&str> = table.lines().collect();
        assert!(lines[0].starts_with("valuecard bench, 2026-11-21: a CPU, 2 cores, release build"));
        assert!(lines[2].starts_with("| benchmark"));
        assert_eq!(
            lines[4],
            "| exchanges, two in-process cards (200 per run) |    800 | exchanges/s | its cryptography alone: 1040 exchanges/s | 1.30× |"
        );
        assert!(lines[6].starts_with("ratio: "));
    }
}
