//! Every conformance vector, against the in-process card and against the virtual card
//! behind pcscd + vpcd.

use valuecard_terminal::conformance::{self, Outcome};
use valuecard_terminal::pcsc::PcscTransport;
use valuecard_terminal::transport::InProcess;
use valuecard_tests::{VirtualCard, lock_vpcd, valuecard};

fn assert_all_pass(outcomes: &[Outcome], transport: &str) {
    let total = apdu_spec::vectors::all().expect("vectors").len();
    assert_eq!(outcomes.len(), total, "every vector ran over {transport}");
    assert!(total >= 60, "the suite has {total} vectors");
    let failures: Vec<String> = outcomes
        .iter()
        .filter_map(|o| {
            o.result
                .as_ref()
                .err()
                .map(|e| format!("{} / {}: {e}", o.file, o.name))
        })
        .collect();
    assert!(
        failures.is_empty(),
        "{} of {total} vectors failed over {transport}:\n{}",
        failures.len(),
        failures.join("\n")
    );
    println!("{total} vectors passed over {transport}");
}

#[test]
fn vectors_pass_in_process() {
    let mut card = InProcess::in_memory(true);
    assert_all_pass(&conformance::run(&mut card), "the in-process card");
}

#[test]
fn vectors_pass_through_pcscd_and_vpcd() {
    let _lock = lock_vpcd();
    let dir = tempfile::tempdir().expect("tempdir");
    let card = VirtualCard::start(0, &dir.path().join("card.state"), true);
    let mut transport = PcscTransport::open(Some(&card.reader), std::time::Duration::from_secs(10))
        .expect("connect through pcscd");
    assert_all_pass(&conformance::run(&mut transport), "pcscd + vpcd");
}

#[test]
fn the_cli_runs_the_suite_against_a_reader() {
    let _lock = lock_vpcd();
    let dir = tempfile::tempdir().expect("tempdir");
    let card = VirtualCard::start(1, &dir.path().join("card.state"), true);
    let (ok, stdout, stderr) = valuecard(&["--reader", &card.reader, "conformance"]);
    assert!(ok, "valuecard conformance failed:\n{stdout}\n{stderr}");
    let total = apdu_spec::vectors::all().expect("vectors").len();
    assert!(
        stdout.contains(&format!("{total} passed, 0 failed")),
        "{stdout}"
    );
}

#[test]
fn the_cli_refuses_a_card_without_test_mode() {
    let _lock = lock_vpcd();
    let dir = tempfile::tempdir().expect("tempdir");
    let card = VirtualCard::start(0, &dir.path().join("card.state"), false);
    let (ok, stdout, stderr) = valuecard(&["--reader", &card.reader, "conformance"]);
    assert!(
        !ok,
        "conformance must refuse a card it cannot reset:\n{stdout}"
    );
    assert!(
        stderr.contains("test-mode") || stdout.contains("test-mode"),
        "the error names --test-mode:\n{stdout}\n{stderr}"
    );
}
