//! `valuecard bench`.

use std::process::ExitCode;

use valuecard_terminal::bench::{self, Stats, format_duration};
use valuecard_terminal::pcsc::{self, PcscTransport};
use valuecard_terminal::transport::{InProcess, Transport};

use super::{Result, wait};
use crate::cli::{BenchCommand, Global};

/// A slow card is measured with fewer warm-up round trips: at ~50 ms each, the full warm-up
/// alone would take seconds.
const BASELINE_WARM_UP: usize = 5;

pub fn run(global: &Global, command: BenchCommand) -> Result<ExitCode> {
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
