//! `valuecard conformance`.

use std::process::ExitCode;

use serde_json::json;
use valuecard_terminal::conformance::{self, Outcome};

use super::{CliError, Result, open, progress};
use crate::cli::Global;

pub fn run(global: &Global, filter: Option<&str>, json: bool) -> Result<ExitCode> {
    let mut transport = open(global)?;
    // The vectors reach their preconditions through TEST RESET: find out first whether the
    // card allows it, rather than fail every vector in its setup.
    let sw = conformance::test_reset(&mut *transport)?;
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

    let vectors = apdu_spec::vectors::all().map_err(|e| {
        CliError::new(format!("the conformance vectors do not parse: {e}")).hint(
            "this valuecard was built from broken vector files: rebuild it from a clean checkout",
        )
    })?;
    let selected: Vec<_> = vectors
        .into_iter()
        .filter(|(file, vector)| filter.is_none_or(|f| file.contains(f) || vector.name.contains(f)))
        .collect();
    if selected.is_empty() {
        return Err(CliError::new(format!(
            "no vector matches the filter {:?}",
            filter.unwrap_or_default()
        ))
        .hint("the filter is matched against file names (e.g. chain, pin) and vector names")
        .code(2));
    }
    let bar = progress(global, selected.len() as u64, "conformance vectors");
    let outcomes: Vec<Outcome> = selected
        .into_iter()
        .map(|(file, vector)| {
            bar.inc(1);
            let result = conformance::run_vector(&mut *transport, &vector);
            Outcome {
                file,
                name: vector.name,
                result,
            }
        })
        .collect();
    bar.finish_and_clear();
    let failed = outcomes.iter().filter(|o| !o.passed()).count();
    let code = if failed == 0 {
        ExitCode::SUCCESS
    } else {
        ExitCode::FAILURE
    };
    if json {
        println!(
            "{}",
            json!({
                "card": transport.name(),
                "vectors": outcomes.len(),
                "passed": outcomes.len() - failed,
                "failed": failed,
                "results": outcomes.iter().map(|o| json!({
                    "file": o.file,
                    "vector": o.name,
                    "passed": o.passed(),
                    "detail": o.result.as_ref().err(),
                })).collect::<Vec<_>>(),
            })
        );
        return Ok(code);
    }
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
    println!("{} passed, {failed} failed", outcomes.len() - failed);
    Ok(code)
}
