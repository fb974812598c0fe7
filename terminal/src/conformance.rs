//! Runs the conformance vectors of `apdu-spec` over any transport. Commands go out raw: the
//! vectors themselves check 61xx, 6Cxx and chaining, so nothing here may resolve them.

use apdu_spec::apdu::Response;
use apdu_spec::vectors::{self, Given, Step, Vars, Vector};

use crate::transport::{Transport, TransportError};

/// One vector's result.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Outcome {
    pub file: String,
    pub name: String,
    pub result: Result<(), String>,
}

impl Outcome {
    pub fn passed(&self) -> bool {
        self.result.is_ok()
    }
}

/// Runs every vector, in file order.
pub fn run(transport: &mut dyn Transport) -> Vec<Outcome> {
    run_matching(transport, |_, _| true)
}

/// Runs the vectors that `wanted(file, vector)` picks.
pub fn run_matching(
    transport: &mut dyn Transport,
    wanted: impl Fn(&str, &Vector) -> bool,
) -> Vec<Outcome> {
    let all = match vectors::all() {
        Ok(all) => all,
        Err(e) => {
            return vec![Outcome {
                file: "vectors".into(),
                name: "parse the vector files".into(),
                result: Err(e),
            }];
        }
    };
    all.into_iter()
        .filter(|(file, vector)| wanted(file, vector))
        .map(|(file, vector)| {
            let result = run_vector(transport, &vector);
            Outcome {
                file,
                name: vector.name,
                result,
            }
        })
        .collect()
}

/// Runs one vector from its precondition on.
pub fn run_vector(transport: &mut dyn Transport, vector: &Vector) -> Result<(), String> {
    let mut vars = vectors::initial_vars();
    for (i, step) in vectors::setup(vector.given).iter().enumerate() {
        run_step(transport, step, &mut vars).map_err(|e| {
            format!(
                "setup of a {} card, step {} ({}): {e}",
                given_name(vector.given),
                i + 1,
                describe(step)
            )
        })?;
    }
    for (i, step) in vector.steps.iter().enumerate() {
        run_step(transport, step, &mut vars).map_err(|e| {
            let note = step
                .note
                .as_deref()
                .map(|n| format!(" [{n}]"))
                .unwrap_or_default();
            format!("step {} ({}){note}: {e}", i + 1, describe(step))
        })?;
    }
    Ok(())
}

/// Sends TEST RESET and tells whether the card allows it: the vectors need it to reach
/// their preconditions. The card is erased if it does.
pub fn test_mode_available(transport: &mut dyn Transport) -> Result<bool, TransportError> {
    Ok(test_reset(transport)? == Some(0x9000))
}

/// Sends TEST RESET (erasing a card that allows it) and returns the card's status word, or
/// `None` when the answer has none.
pub fn test_reset(transport: &mut dyn Transport) -> Result<Option<u16>, TransportError> {
    let def = apdu_spec::commands::TEST_RESET;
    let answer = transport.transmit(&[def.cla, def.ins, 0, 0])?;
    Ok(Response::from_bytes(&answer).map(|r| r.sw))
}

fn given_name(given: Given) -> &'static str {
    given.life_cycle().name()
}

fn describe(step: &Step) -> String {
    match &step.send {
        Some(send) => {
            let short: String = send.chars().take(60).collect();
            if short.len() < send.len() {
                format!("send {short}...")
            } else {
                format!("send {short}")
            }
        }
        None if step.power_cycle => "power cycle".into(),
        None => "reset".into(),
    }
}

fn run_step(transport: &mut dyn Transport, step: &Step, vars: &mut Vars) -> Result<(), String> {
    if let Some(template) = &step.send {
        let command = vectors::expand(template, vars)?;
        let answer = transport.transmit(&command).map_err(|e| e.to_string())?;
        let response = Response::from_bytes(&answer).ok_or_else(|| {
            format!(
                "the card answered {} byte(s), not even a status word",
                answer.len()
            )
        })?;
        step.check(&response, vars)
    } else if step.power_cycle {
        transport.power_cycle().map_err(|e| e.to_string())
    } else if step.reset {
        transport.reset().map_err(|e| e.to_string())
    } else {
        Err("the step neither sends, resets nor power-cycles".into())
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::transport::InProcess;

    #[test]
    fn every_vector_passes_on_the_in_process_card() {
        let mut card = InProcess::in_memory(true);
        let outcomes = run(&mut card);
        assert_eq!(outcomes.len(), vectors::all().expect("vectors").len());
        let failed: Vec<String> = outcomes
            .iter()
            .filter(|o| !o.passed())
            .map(|o| format!("{}: {}: {:?}", o.file, o.name, o.result))
            .collect();
        assert!(
            failed.is_empty(),
            "{} failed:\n{}",
            failed.len(),
            failed.join("\n")
        );
    }

    #[test]
    fn a_card_without_test_mode_is_detected() {
        assert!(!test_mode_available(&mut InProcess::in_memory(false)).expect("transmit"));
        assert!(test_mode_available(&mut InProcess::in_memory(true)).expect("transmit"));
    }

    #[test]
    fn setup_failures_name_the_setup() {
        let vector = vectors::all()
            .expect("vectors")
            .into_iter()
            .map(|(_, v)| v)
            .next()
            .expect("a vector");
        let err = run_vector(&mut InProcess::in_memory(false), &vector).expect_err("no TEST RESET");
        assert!(err.starts_with("setup of a"), "{err}");
    }
}
