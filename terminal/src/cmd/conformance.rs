//! `valuecard conformance`.

use std::process::ExitCode;

use apdu_spec::apdu::Response;
use apdu_spec::commands::ins;
use valuecard_terminal::conformance;

use super::{CliError, Result, open};
use crate::cli::Global;

pub fn run(global: &Global, filter: Option<&str>) -> Result<ExitCode> {
    let mut transport = open(global)?;
    // The vectors reach their preconditions through TEST RESET: find out first whether the
    // card allows it, rather than fail every vector in its setup.
    let answer = transport.transmit(&[apdu_spec::CLA_PROPRIETARY, ins::TEST_RESET, 0, 0])?;
    let sw = Response::from_bytes(&answer).map(|r| r.sw);
    if sw != Some(0x9000) {
        let what = sw.map_or("no status word".to_string(), |sw| format!("{sw:04X}"));
        let hint = if global.card_state.is_some() {
            "with --card-state, add --emulator-test-mode"
        } else {
            "start the emulator as `valuecard-card --test-mode --state FILE` and point --reader at its vpcd reader; a real card cannot run the vectors"
        };
        return Err(CliError::new(format!(
            "the card in {} refused TEST RESET ({what}): the conformance vectors need a card that allows it, the emulator in test mode",
            transport.name()
        ))
        .hint(hint)
        .code(2));
    }

    let outcomes = conformance::run_matching(&mut *transport, |file, vector| {
        filter.is_none_or(|f| file.contains(f) || vector.name.contains(f))
    });
    let file_width = outcomes
        .iter()
        .map(|o| o.file.len())
        .max()
        .unwrap_or(0)
        .max(4);
    let name_width = outcomes
        .iter()
        .map(|o| o.name.chars().count())
        .max()
        .unwrap_or(0)
        .max(6);
    println!(
        "{:<file_width$}  {:<name_width$}  {:<6}  detail",
        "file", "vector", "result"
    );
    for outcome in &outcomes {
        let (result, detail) = match &outcome.result {
            Ok(()) => ("PASS", ""),
            Err(detail) => ("FAIL", detail.as_str()),
        };
        let line = format!(
            "{:<file_width$}  {:<name_width$}  {result:<6}  {detail}",
            outcome.file, outcome.name
        );
        println!("{}", line.trim_end());
    }
    let failed = outcomes.iter().filter(|o| !o.passed()).count();
    println!("{} passed, {failed} failed", outcomes.len() - failed);
    if outcomes.is_empty() {
        return Err(CliError::new("no vector matches the filter"));
    }
    Ok(if failed == 0 {
        ExitCode::SUCCESS
    } else {
        ExitCode::FAILURE
    })
}
