//! Fair exchange end to end: two virtual cards in the two vpcd slots behind pcscd, the
//! `valuecard` CLI relaying, and `valuecard-backend all` (bank, center, arbiter) over HTTP.

use valuecard_tests::{ADMIN_TOKEN, Backend, PIN, User, VirtualCard, json, lock_vpcd};

/// The acceptance run: card A pays 300 JPY for card B's ticket. Afterwards A holds the
/// ticket and 0 JPY of its 300, B holds 300 JPY and no ticket, and neither has a session.
#[test]
fn card_a_pays_300_jpy_for_card_bs_ticket_through_pcscd() {
    let _lock = lock_vpcd();
    let dir = tempfile::tempdir().expect("temp dir");
    let backend = Backend::start(&dir.path().join("db"));
    let card_a = backend.virtual_card(0, &dir.path().join("a.state"));
    let card_b = backend.virtual_card(1, &dir.path().join("b.state"));
    for sub in ["a", "b"] {
        std::fs::create_dir_all(dir.path().join(sub)).expect("dir");
    }
    let a = User::new(
        &backend,
        &dir.path().join("a"),
        &["--reader", &card_a.reader],
        500,
    );
    let b = User::new(
        &backend,
        &dir.path().join("b"),
        &["--reader", &card_b.reader],
        1,
    );

    // A: 500 to the center, 300 onto the card. B: a ticket from the center.
    let withdrawn = json(&a.withdraw(500, &[], None).expect_ok("withdraw"));
    assert_eq!(withdrawn["credited"], 500);
    a.run(&["load", "--amount", "300", "--json"], &[])
        .expect_ok("load");
    b.run(
        &[
            "tickets", "issue", "--asset", "CONCERT", "--serial", "00C0FFEE",
        ],
        &[("VALUECARD_ADMIN_TOKEN", ADMIN_TOKEN)],
    )
    .expect_ok("tickets issue");

    let run = a
        .run(
            &[
                "exchange",
                "--initiator",
                &card_a.reader,
                "--responder",
                &card_b.reader,
                "--give",
                "300JPY",
                "--take",
                "ticket:CONCERT:00C0FFEE",
                "--json",
            ],
            &[
                ("VALUECARD_INITIATOR_PIN", PIN),
                ("VALUECARD_RESPONDER_PIN", PIN),
            ],
        )
        .expect_ok("exchange");
    let report = json(&run);
    assert_eq!(report["completed"], true, "{report}");
    let steps: Vec<&str> = report["steps"]
        .as_array()
        .expect("steps")
        .iter()
        .map(|s| s["step"].as_str().expect("step"))
        .collect();
    assert_eq!(steps, ["START", "AGREE", "CONFIRM", "COMMIT", "FINISH"]);

    let (ba, bb) = (a.balances(), b.balances());
    assert_eq!(
        (ba.card, ba.escrowed, ba.center, ba.tickets),
        (0, 0, 200, 1),
        "{ba:?}"
    );
    assert_eq!(
        (bb.card, bb.escrowed, bb.center, bb.tickets),
        (300, 0, 0, 0),
        "{bb:?}"
    );
    let tickets = json(&a.run(&["tickets", "--json"], &[]).expect_ok("tickets"));
    assert_eq!(
        tickets["tickets"],
        serde_json::json!([{"asset": "CONCERT", "serial": "00C0FFEE", "escrowed": false}])
    );
    for user in [&a, &b] {
        let sessions = json(&user.run(&["sessions", "--json"], &[]).expect_ok("sessions"));
        assert_eq!(sessions["sessions"], serde_json::json!([]), "{sessions}");
    }

    // B unloads what it got: the units are real units of the center.
    b.run(&["unload", "--amount", "300"], &[("VALUECARD_PIN", PIN)])
        .expect_ok("unload");
    let bb = b.balances();
    assert_eq!((bb.card, bb.center), (0, 300), "{bb:?}");
}

/// Two cards in the vpcd slots, ready for A to pay 300 JPY for B's ticket.
struct Pair {
    a: User,
    b: User,
    card_a: VirtualCard,
    card_b: VirtualCard,
}

fn pair(backend: &Backend, dir: &std::path::Path, serial: &str) -> Pair {
    std::fs::create_dir_all(dir.join("a")).expect("dir");
    std::fs::create_dir_all(dir.join("b")).expect("dir");
    let card_a = backend.virtual_card(0, &dir.join("a.state"));
    let card_b = backend.virtual_card(1, &dir.join("b.state"));
    let a = User::new(backend, &dir.join("a"), &["--reader", &card_a.reader], 300);
    let b = User::new(backend, &dir.join("b"), &["--reader", &card_b.reader], 1);
    a.withdraw(300, &[], None).expect_ok("withdraw");
    a.run(&["load", "--amount", "300"], &[]).expect_ok("load");
    b.run(
        &["tickets", "issue", "--asset", "CONCERT", "--serial", serial],
        &[("VALUECARD_ADMIN_TOKEN", ADMIN_TOKEN)],
    )
    .expect_ok("tickets issue");
    Pair {
        a,
        b,
        card_a,
        card_b,
    }
}

/// The terminal stops after each step of the exchange; both card processes are then
/// killed and restarted from their state files (a real power cut); `valuecard recover` on
/// each card, in both orders, settles them with the arbiter. The outcome must be the same
/// on both cards: exchanged, or both values back where they were.
#[test]
fn an_exchange_cut_after_any_step_is_settled_by_the_arbiter_through_pcscd() {
    let _lock = lock_vpcd();
    let dir = tempfile::tempdir().expect("temp dir");
    let backend = Backend::start(&dir.path().join("db"));
    // (fault, responder recovered first, whether the exchange ends up made)
    let cases = [
        ("after-start", true, false),
        ("after-start", false, false),
        ("after-agree", true, false),
        ("after-agree", false, false),
        // Both sessions VALID: whoever reaches the arbiter first decides.
        ("after-confirm", true, false),
        ("after-confirm", false, true),
        // B has committed: only COMPLETE is possible.
        ("after-commit", true, true),
        ("after-commit", false, true),
    ];
    for (i, &(fault, responder_first, exchanged)) in cases.iter().enumerate() {
        let case = dir.path().join(format!("case{i}"));
        let serial = format!("{i:08X}");
        let mut p = pair(&backend, &case, &serial);
        let cut = p.a.run(
            &[
                "exchange",
                "--initiator",
                &p.card_a.reader,
                "--responder",
                &p.card_b.reader,
                "--give",
                "300JPY",
                "--take",
                &format!("ticket:CONCERT:{serial}"),
            ],
            &[
                ("VALUECARD_INITIATOR_PIN", PIN),
                ("VALUECARD_RESPONDER_PIN", PIN),
                ("VALUECARD_FAULT", fault),
            ],
        );
        assert!(
            cut.aborted(),
            "{fault}: expected the injected abort, got {cut:?}"
        );

        // Pull both cards and put them back: only what they committed survives.
        p.card_a.kill();
        p.card_b.kill();
        p.card_a = VirtualCard::start(0, &case.join("a.state"), false);
        p.card_b = VirtualCard::start(1, &case.join("b.state"), false);
        let order = if responder_first {
            [&p.b, &p.a]
        } else {
            [&p.a, &p.b]
        };
        for user in order {
            let recovered = user.recover();
            assert_eq!(recovered["complete"], true, "{fault}: {recovered}");
        }

        let (ba, bb) = (p.a.balances(), p.b.balances());
        let expected = if exchanged {
            ((0, 1), (300, 0))
        } else {
            ((300, 0), (0, 1))
        };
        assert_eq!(
            ((ba.card, ba.tickets), (bb.card, bb.tickets)),
            expected,
            "{fault}, responder first: {responder_first}: (JPY, tickets) of A and B"
        );
        assert_eq!(
            (ba.escrowed, bb.escrowed),
            (0, 0),
            "{fault}: nothing left in escrow"
        );
        for user in [&p.a, &p.b] {
            let sessions = json(&user.run(&["sessions", "--json"], &[]).expect_ok("sessions"));
            assert_eq!(
                sessions["sessions"],
                serde_json::json!([]),
                "{fault}: {sessions}"
            );
        }
    }
}

/// A responder that does not hold what is asked refuses AGREE: the initiator, which has
/// signed nothing, aborts, and both cards keep their values. Two in-process cards.
#[test]
fn a_refused_agree_aborts_the_initiator_and_moves_nothing() {
    let dir = tempfile::tempdir().expect("temp dir");
    let backend = Backend::start(&dir.path().join("db"));
    let (a, a_state) = User::in_process(&backend, dir.path(), "a", 300);
    let (b, b_state) = User::in_process(&backend, dir.path(), "b", 1);
    a.withdraw(300, &[], None).expect_ok("withdraw");
    a.run(&["load", "--amount", "300"], &[]).expect_ok("load");

    let run = a.run(
        &[
            "exchange",
            "--initiator-state",
            &a_state,
            "--responder-state",
            &b_state,
            "--give",
            "300JPY",
            "--take",
            "ticket:CONCERT:0001",
            "--json",
        ],
        &[
            ("VALUECARD_INITIATOR_PIN", PIN),
            ("VALUECARD_RESPONDER_PIN", PIN),
        ],
    );
    assert_eq!(run.code, Some(1), "{run:?}");
    let report = json(&run);
    assert_eq!(report["completed"], false, "{report}");
    assert_eq!(report["failed_step"]["step"], "AGREE", "{report}");
    assert_eq!(
        report["initiator"], "aborted: its value is back",
        "{report}"
    );
    assert!(
        run.stderr.contains("did not go through") && run.stderr.contains("own value back"),
        "{}",
        run.stderr
    );
    let (ba, bb) = (a.balances(), b.balances());
    assert_eq!((ba.card, ba.escrowed, bb.card, bb.tickets), (300, 0, 0, 0));
    for user in [&a, &b] {
        let sessions = json(&user.run(&["sessions", "--json"], &[]).expect_ok("sessions"));
        assert_eq!(sessions["sessions"], serde_json::json!([]), "{sessions}");
    }
}
