//! Every conformance vector of `apdu-spec`, against the in-process card, so that the card's
//! crate checks the vectors it must pass. (The terminal runs the same vectors over any
//! transport, and the workspace's tests through pcscd and vpcd; this runner is the smallest
//! one: a card, a reset and a power cycle.)

use apdu_spec::apdu::Response;
use apdu_spec::vectors::{self, Step, Vars, Vector};
use valuecard_card::{Card, Options};

fn run_step(card: &mut Card, step: &Step, vars: &mut Vars) -> Result<(), String> {
    if let Some(template) = &step.send {
        let command = vectors::expand(template, vars)?;
        let answer = card.transmit(&command);
        let response =
            Response::from_bytes(&answer).ok_or("the card answered less than a status word")?;
        step.check(&response, vars)
    } else if step.power_cycle {
        card.power_off();
        Ok(())
    } else if step.reset {
        card.reset();
        Ok(())
    } else {
        Err("the step neither sends, resets nor power-cycles".into())
    }
}

fn run_vector(card: &mut Card, vector: &Vector) -> Result<(), String> {
    let mut vars = vectors::initial_vars();
    for (i, step) in vectors::setup(vector.given).iter().enumerate() {
        run_step(card, step, &mut vars).map_err(|e| format!("setup step {}: {e}", i + 1))?;
    }
    for (i, step) in vector.steps.iter().enumerate() {
        run_step(card, step, &mut vars).map_err(|e| {
            let note = step.note.as_deref().unwrap_or_default();
            format!("step {} [{note}]: {e}", i + 1)
        })?;
    }
    Ok(())
}

#[test]
fn every_vector_passes_on_the_in_process_card() {
    // One card for all, as over a reader: the preconditions' TEST RESET installs the
    // vectors' manufacture record on a card that was never manufactured.
    let mut card = Card::in_memory(Options {
        test_mode: true,
        rng_seed: None,
    });
    let all = vectors::all().expect("the vectors parse");
    let failures: Vec<String> = all
        .iter()
        .filter_map(|(file, vector)| {
            run_vector(&mut card, vector)
                .err()
                .map(|e| format!("{file}: {}: {e}", vector.name))
        })
        .collect();
    assert!(
        failures.is_empty(),
        "{} of {} vectors failed:\n{}",
        failures.len(),
        all.len(),
        failures.join("\n")
    );
    println!("{} vectors passed", all.len());
}
