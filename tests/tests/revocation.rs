//! Revocation end to end (PROTOCOLS.md, invariant 5), through the CLI, the backend and two
//! in-process cards: staff block a card with `valuecard cards block`; the center refuses it
//! service, the arbiter takes the new block list, another card learns the list at its next
//! load and then refuses to exchange with the blocked one; the blocked card's honest
//! counterparty in an exchange that was open before the block still settles it.

use valuecard_tests::{ADMIN_TOKEN, Backend, PIN, User, json};

fn card_id(user: &User) -> String {
    let info = json(&user.run(&["info", "--json"], &[]).expect_ok("info"));
    info["card_id"].as_str().expect("a card id").to_string()
}

fn exchange(
    user: &User,
    initiator: &str,
    responder: &str,
    give: &str,
    take: &str,
) -> serde_json::Value {
    let run = user.run(
        &[
            "exchange",
            "--initiator-state",
            initiator,
            "--responder-state",
            responder,
            "--give",
            give,
            "--take",
            take,
            "--json",
        ],
        &[
            ("VALUECARD_INITIATOR_PIN", PIN),
            ("VALUECARD_RESPONDER_PIN", PIN),
        ],
    );
    assert_eq!(run.code, Some(1), "the exchange is refused: {run:?}");
    json(&run)
}

#[test]
fn a_blocked_card_is_refused_everywhere_and_its_counterparty_still_settles() {
    let dir = tempfile::tempdir().expect("temp dir");
    let backend = Backend::start(&dir.path().join("db"));
    let (a, a_state) = User::in_process(&backend, dir.path(), "a", 400);
    let (b, b_state) = User::in_process(&backend, dir.path(), "b", 100);
    a.withdraw(400, &[], None).expect_ok("A withdraws");
    a.load(300, None).expect_ok("A loads");
    b.withdraw(100, &[], None).expect_ok("B withdraws");
    b.run(
        &["tickets", "issue", "--asset", "CONCERT", "--serial", "0001"],
        &[("VALUECARD_ADMIN_TOKEN", ADMIN_TOKEN)],
    )
    .expect_ok("a ticket for B");

    // An exchange open on both cards when B is blocked: the terminal dies after CONFIRM.
    let cut = a.run(
        &[
            "exchange",
            "--initiator-state",
            &a_state,
            "--responder-state",
            &b_state,
            "--give",
            "100JPY",
            "--take",
            "ticket:CONCERT:0001",
        ],
        &[
            ("VALUECARD_INITIATOR_PIN", PIN),
            ("VALUECARD_RESPONDER_PIN", PIN),
            ("VALUECARD_FAULT", "after-confirm"),
        ],
    );
    assert!(cut.aborted(), "the injected crash: {cut:?}");

    // Staff block B. The center signs block list version 1 and the CLI hands it to the
    // arbiter.
    let b_id = card_id(&b);
    let blocked = json(
        &a.run(
            &[
                "cards",
                "block",
                "--card-id",
                &b_id,
                "--reason",
                "reported stolen",
                "--json",
            ],
            &[("VALUECARD_ADMIN_TOKEN", ADMIN_TOKEN)],
        )
        .expect_ok("cards block"),
    );
    assert_eq!(blocked["block_list_version"], 1, "{blocked}");
    assert_eq!(blocked["arbiter_version"], 1, "{blocked}");
    assert_eq!(blocked["already_blocked"], false, "{blocked}");
    let again = json(
        &a.run(
            &[
                "cards",
                "block",
                "--card-id",
                &b_id,
                "--reason",
                "again",
                "--json",
            ],
            &[("VALUECARD_ADMIN_TOKEN", ADMIN_TOKEN)],
        )
        .expect_ok("cards block again"),
    );
    assert_eq!(
        (
            again["already_blocked"].clone(),
            again["block_list_version"].clone()
        ),
        (serde_json::json!(true), serde_json::json!(1)),
        "{again}"
    );
    let listed = json(
        &a.run(&["cards", "blocked", "--json"], &[])
            .expect_ok("cards blocked"),
    );
    assert_eq!(listed["version"], 1, "{listed}");
    assert_eq!(listed["arbiter_version"], 1, "{listed}");

    // The center refuses B a load and its balance, and nothing changes.
    let refused = b.load(10, None);
    assert_eq!(refused.code, Some(1), "{refused:?}");
    assert!(refused.stderr.contains("blocked"), "{}", refused.stderr);
    let balance = b.run(&["balance", "--json"], &[]);
    assert!(
        !balance.ok() && balance.stderr.contains("blocked"),
        "{balance:?}"
    );

    // A, the honest counterparty, settles the open exchange with the arbiter: A signs its
    // own resolve request, so being B's counterparty does not stop it.
    let recovered = a.recover();
    assert_eq!(recovered["complete"], true, "{recovered}");
    let after = a.balances();
    assert_eq!((after.card, after.escrowed, after.tickets), (200, 0, 1));
    // The verdict is the session's, public to whoever knows (a, s2): B's card applies it and
    // takes what A paid, which it can never unload nor pass on; left unapplied, A's 100 JPY
    // would be nowhere.
    let settled = json(
        &b.with_credential(&["recover", "--json"], None)
            .expect_ok("B's recover"),
    );
    assert_eq!(settled["complete"], true, "{settled}");

    // A learns the block list at its next load...
    a.load(1, None).expect_ok("A loads again");
    let info = json(&a.run(&["info", "--json"], &[]).expect_ok("info"));
    assert_eq!(info["counters"]["block_list"], 1, "{info}");

    // ... and refuses to agree to an exchange that B starts. B, which could not load, does
    // not know that it is blocked; it signed nothing and takes its value back.
    let values =
        |user: &User| json(&user.run(&["info", "--json"], &[]).expect_ok("info"))["values"].clone();
    let b_before = values(&b);
    let report = exchange(&b, &b_state, &a_state, "50JPY", "nothing");
    assert_eq!(report["failed_step"]["step"], "AGREE", "{report}");
    assert_eq!(
        report["initiator"], "aborted: its value is back",
        "{report}"
    );
    assert_eq!(values(&b), b_before, "B keeps what it had");
    for user in [&a, &b] {
        let sessions = json(&user.run(&["sessions", "--json"], &[]).expect_ok("sessions"));
        assert_eq!(sessions["sessions"], serde_json::json!([]), "{sessions}");
    }
}
