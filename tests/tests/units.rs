//! Units between the center and a card, end to end: `valuecard-backend all` over HTTP, the
//! `valuecard` CLI, and a card behind pcscd + vpcd (or in-process, where the test needs
//! two cards' signatures).
//!
//! The crash tests stop the terminal before and after every card command of a load, an
//! unload and a cancelled load, and drop every message to or from the center
//! (`VALUECARD_FAULT`, see terminal/src/fault.rs). At each cut the card and the center
//! must hold exactly what that step leaves; after `valuecard recover` the totals must be
//! exact, and card + center must equal what was redeemed.

use std::path::Path;

use apdu_spec::units::{Acknowledgement, LoadApply, ReceiptKind, UnitMessage, UnitValue};
use serde_json::Value;
use valuecard_protocol::api::{LoadOrder, UnloadOrder};
use valuecard_terminal::backend_client::CenterClient;
use valuecard_terminal::{CardError, Client, ClientError, InProcess};
use valuecard_tests::{
    ADMIN_TOKEN, Backend, Balances, PIN, Run, User, assert_interrupted, json, lock_vpcd,
};

fn jpy(amount: u64) -> UnitValue {
    UnitValue::Asset {
        code: "JPY".into(),
        amount,
    }
}

/// A user whose card's center account holds `redeemed` JPY.
fn funded_user(backend: &Backend, dir: &Path, card: &[&str], redeemed: u64) -> User {
    let user = User::new(backend, dir, card, redeemed);
    let withdrawn = json(&user.withdraw(redeemed, &[], None).expect_ok("withdraw"));
    assert_eq!(withdrawn["credited"], redeemed, "{withdrawn}");
    user
}

/// The acceptance run: 500 withdrawn to the center, 200 loaded, 50 unloaded: the card shows
/// 150 and the center 350. Then a ticket is issued to the card, loaded, and listed.
#[test]
fn withdraw_load_unload_and_a_ticket_through_pcscd() {
    let _lock = lock_vpcd();
    let dir = tempfile::tempdir().expect("temp dir");
    let backend = Backend::start(&dir.path().join("db"));
    let card = backend.virtual_card(0, &dir.path().join("card.state"));
    let user = funded_user(&backend, dir.path(), &["--reader", &card.reader], 500);
    assert_eq!(user.balances().center, 500);

    let loaded = json(&user.load(200, None).expect_ok("load"));
    assert_eq!(loaded["done"][0]["action"], "loaded", "{loaded}");
    assert_eq!(loaded["done"][0]["value"]["amount"], 200, "{loaded}");
    assert_eq!(loaded["done"][0]["counter"], 0, "{loaded}");

    let unloaded = json(&user.unload(50, None).expect_ok("unload"));
    assert_eq!(unloaded["done"][0]["action"], "unloaded", "{unloaded}");
    assert_eq!(unloaded["done"][0]["counter"], 0, "{unloaded}");

    let b = user.balances();
    assert_eq!((b.card, b.center), (150, 350), "{b:?}");
    assert!(!b.pending_load && b.receipts == 0, "{b:?}");

    // Text output shows both sides.
    let text = user.run(&["balance"], &[]).expect_ok("balance");
    let row = text
        .stdout
        .lines()
        .find(|l| l.starts_with("JPY"))
        .unwrap_or_else(|| panic!("no JPY row:\n{}", text.stdout));
    let numbers: Vec<&str> = row.split_whitespace().collect();
    assert_eq!(numbers, ["JPY", "150", "0", "350"], "{}", text.stdout);

    // A ticket for the card in the reader: issued and loaded at once, then listed.
    let issued = json(
        &user
            .run(
                &[
                    "tickets", "issue", "--asset", "CONCERT", "--serial", "00C0FFEE", "--json",
                ],
                &[("VALUECARD_ADMIN_TOKEN", ADMIN_TOKEN)],
            )
            .expect_ok("tickets issue"),
    );
    assert_eq!(issued["loaded"], true, "{issued}");
    let listed = json(&user.run(&["tickets", "--json"], &[]).expect_ok("tickets"));
    assert_eq!(
        listed["tickets"],
        serde_json::json!([{"asset": "CONCERT", "serial": "00C0FFEE", "escrowed": false}])
    );
    let text = user.run(&["tickets"], &[]).expect_ok("tickets");
    assert!(text.stdout.contains("CONCERT") && text.stdout.contains("00C0FFEE"));

    // Issuing it again changes nothing, and the card does not get it twice.
    let again = json(
        &user
            .run(
                &[
                    "tickets", "issue", "--asset", "CONCERT", "--serial", "00C0FFEE", "--json",
                ],
                &[("VALUECARD_ADMIN_TOKEN", ADMIN_TOKEN)],
            )
            .expect_ok("tickets issue again"),
    );
    assert_eq!(
        (&again["replayed"], &again["loaded"]),
        (&Value::Bool(true), &Value::Bool(false))
    );
    assert_eq!(user.balances().tickets, 1);

    // A ticket issued to the card by id, while it is elsewhere, waits for `tickets fetch`.
    let card_id = json(&user.run(&["info", "--json"], &[]).expect_ok("info"))["card_id"]
        .as_str()
        .expect("card id")
        .to_string();
    let later = json(
        &valuecard_tests::valuecard_env(
            &[
                "--backend",
                &user.backend_url,
                "tickets",
                "issue",
                "--asset",
                "MUSEUM",
                "--card-id",
                &card_id,
                "--json",
            ],
            &[("VALUECARD_ADMIN_TOKEN", ADMIN_TOKEN)],
        )
        .expect_ok("tickets issue --card-id"),
    );
    assert_eq!(later["loaded"], false, "{later}");
    assert_eq!(user.balances().tickets, 1);
    let fetched = json(
        &user
            .run(&["tickets", "fetch", "--json"], &[])
            .expect_ok("fetch"),
    );
    assert_eq!(
        fetched["done"].as_array().map(Vec::len),
        Some(1),
        "{fetched}"
    );
    assert_eq!(user.balances().tickets, 2);
    let none = user
        .run(&["tickets", "fetch"], &[])
        .expect_ok("fetch again");
    assert!(
        none.stdout.contains("no tickets waiting"),
        "{}",
        none.stdout
    );

    // Units are untouched by tickets.
    let b = user.balances();
    assert_eq!((b.card, b.center), (150, 350), "{b:?}");
    assert_eq!(user.recover()["nothing_to_recover"], true);
}

/// One cut: the fault; what card and center hold at the cut, and what is in flight; and
/// what they hold once `valuecard recover` has run.
struct Cut {
    fault: &'static str,
    card: u64,
    center: u64,
    pending_load: bool,
    receipts: usize,
    end: (u64, u64),
}

const fn cut(
    fault: &'static str,
    (card, center): (u64, u64),
    pending_load: bool,
    receipts: usize,
    end: (u64, u64),
) -> Cut {
    Cut {
        fault,
        card,
        center,
        pending_load,
        receipts,
        end,
    }
}

/// Runs `op` with each fault, checks the cut, recovers, checks the end with nothing in
/// flight, and brings the card back to where it started for the next cut.
fn cut_and_recover(
    user: &User,
    what: &str,
    op: impl Fn(Option<&str>) -> Run,
    cuts: &[Cut],
    redeemed: u64,
) {
    for c in cuts {
        let end = c.end;
        let before = user.balances();
        let run = op(Some(c.fault));
        assert_interrupted(&run, c.fault);
        let at = user.balances();
        assert_eq!(
            (at.card, at.center, at.pending_load, at.receipts),
            (c.card, c.center, c.pending_load, c.receipts),
            "{what} cut at {}: (card, center, pending load, receipts); before: {before:?}\n{}",
            c.fault,
            run.stderr
        );
        assert!(
            at.card + at.center <= redeemed,
            "{what} {}: {at:?}",
            c.fault
        );

        let recovered = user.recover();
        assert_eq!(
            recovered["complete"], true,
            "{what} {}: {recovered}",
            c.fault
        );
        let after = user.balances();
        assert_eq!(
            (after.card, after.center, after.pending_load, after.receipts),
            (end.0, end.1, false, 0),
            "{what} {}: after recover",
            c.fault
        );
        assert_eq!(after.card + after.center, redeemed, "{what} {}", c.fault);
        // Recovering again changes nothing.
        assert_eq!(
            user.recover()["nothing_to_recover"],
            true,
            "{what} {}",
            c.fault
        );
        assert_eq!(user.balances(), after, "{what} {}", c.fault);
        undo(user, what, end, before);
    }
}

/// Brings the card back to `before` after a case that ended at `end`, without faults.
fn undo(user: &User, what: &str, end: (u64, u64), before: Balances) {
    if end.0 > before.card {
        user.unload(end.0 - before.card, None)
            .expect_ok(&format!("{what}: undo"));
    } else if end.0 < before.card {
        user.load(before.card - end.0, None)
            .expect_ok(&format!("{what}: undo"));
    }
    let now = user.balances();
    assert_eq!(
        (now.card, now.center),
        (before.card, before.center),
        "{what}: undo"
    );
}

#[test]
fn a_load_or_an_unload_cut_at_any_step_is_finished_exactly_by_recover() {
    let _lock = lock_vpcd();
    let dir = tempfile::tempdir().expect("temp dir");
    let backend = Backend::start(&dir.path().join("db"));
    let card = backend.virtual_card(0, &dir.path().join("card.state"));
    let user = funded_user(&backend, dir.path(), &["--reader", &card.reader], 500);

    // Load 200 with the card at (0, 500). With --asset given, the center's first request
    // of `valuecard load` is the load itself: fail-center:1 drops the message to the
    // center; center-load-answered drops its answer.
    cut_and_recover(
        &user,
        "load",
        |fault| user.load(200, fault),
        &[
            // The card never got LOAD REQUEST: nothing to finish, nothing moved.
            cut("before-load-request", (0, 500), false, 0, (0, 500)),
            cut("after-load-request", (0, 500), true, 0, (200, 300)),
            cut("fail-center:1", (0, 500), true, 0, (200, 300)),
            cut("center-load-answered", (0, 300), true, 0, (200, 300)),
            cut("before-load-apply", (0, 300), true, 0, (200, 300)),
            cut("after-load-apply", (200, 300), false, 0, (200, 300)),
        ],
        500,
    );

    // Unload 50 with the card at (200, 300).
    user.load(200, None).expect_ok("load 200");
    cut_and_recover(
        &user,
        "unload",
        |fault| user.unload(50, fault),
        &[
            cut("before-unload", (200, 300), false, 0, (200, 300)),
            cut("after-unload", (150, 300), false, 1, (150, 350)),
            cut("fail-center:1", (150, 300), false, 1, (150, 350)),
            cut("center-unload-answered", (150, 350), false, 1, (150, 350)),
            cut("before-unload-ack", (150, 350), false, 1, (150, 350)),
            cut("after-unload-ack", (150, 350), false, 0, (150, 350)),
        ],
        500,
    );

    // A load the center refuses (more than the account holds) is cancelled at once: the
    // card signs a cancellation, the center voids the request, and the card clears it.
    let refused = user.load(10_000, None);
    assert_eq!(refused.code, Some(1), "{refused:?}");
    assert!(
        refused.stderr.contains("insufficient") && refused.stderr.contains("cancelled"),
        "{}",
        refused.stderr
    );
    let b = user.balances();
    assert_eq!(
        (b.card, b.center, b.pending_load, b.receipts),
        (200, 300, false, 0)
    );
    cut_and_recover(
        &user,
        "refused load",
        |fault| user.load(10_000, fault),
        &[
            cut("before-load-cancel", (200, 300), true, 0, (200, 300)),
            cut("after-load-cancel", (200, 300), false, 1, (200, 300)),
            cut("fail-center:2", (200, 300), false, 1, (200, 300)),
            cut("center-cancel-answered", (200, 300), false, 1, (200, 300)),
            cut("before-unload-ack", (200, 300), false, 1, (200, 300)),
            cut("after-unload-ack", (200, 300), false, 0, (200, 300)),
        ],
        500,
    );
}

/// The card takes an authorisation or an acknowledgement only for exactly what it signed,
/// with the center's real signatures: an old authorisation, another card's, and an
/// acknowledgement of another receipt are refused, and change nothing on the card.
#[test]
fn the_card_refuses_replayed_and_foreign_center_signatures() {
    let dir = tempfile::tempdir().expect("temp dir");
    let backend = Backend::start(&dir.path().join("db"));
    let state_a = dir.path().join("a.state");
    let state_b = dir.path().join("b.state");
    std::fs::create_dir_all(dir.path().join("a")).expect("dir");
    std::fs::create_dir_all(dir.path().join("b")).expect("dir");
    let a = funded_user(
        &backend,
        &dir.path().join("a"),
        &["--card-state", state_a.to_str().expect("utf-8")],
        500,
    );
    let b = funded_user(
        &backend,
        &dir.path().join("b"),
        &["--card-state", state_b.to_str().expect("utf-8")],
        500,
    );
    let center = CenterClient::new(&backend.url);
    let open = |state: &Path| {
        let mut client = Client::new(InProcess::open(state, false).expect("open card"));
        client.select().expect("select");
        client
    };
    let refused = |result: Result<(), ClientError>, sw: u16, what: &str| match result {
        Err(ClientError::Card(CardError { sw: got, .. })) => {
            assert_eq!(got, sw, "{what}: status word {got:04X}")
        }
        other => panic!("{what}: expected {sw:04X}, got {other:?}"),
    };

    // Card A: load 100, applied; then a second request of 100 is pending.
    let mut card_a = open(&state_a);
    let first = card_a.load_request(&jpy(100)).expect("request 1");
    let auth1 = center
        .load(&LoadOrder {
            request: first.message.clone(),
            signature: first.signature.to_vec(),
        })
        .expect("authorised 1");
    let apply1 = LoadApply {
        authorisation: auth1.authorisation,
        ticket_signature: None,
        block_list: auth1.block_list.clone(),
    };
    card_a.load_apply(&apply1).expect("apply 1");
    let second = card_a.load_request(&jpy(100)).expect("request 2");
    let before = std::fs::read(&state_a).expect("state");

    // The old authorisation again, for the new pending request: refused.
    refused(card_a.load_apply(&apply1), 0x6300, "old authorisation");
    // Card B's authorisation, from the same center, for B's own request: refused by A.
    let mut card_b = open(&state_b);
    let other = card_b.load_request(&jpy(100)).expect("B's request");
    let auth_b = center
        .load(&LoadOrder {
            request: other.message.clone(),
            signature: other.signature.to_vec(),
        })
        .expect("B authorised");
    refused(
        card_a.load_apply(&LoadApply {
            authorisation: auth_b.authorisation,
            ticket_signature: None,
            block_list: auth_b.block_list.clone(),
        }),
        0x6300,
        "another card's authorisation",
    );
    assert_eq!(
        std::fs::read(&state_a).expect("state"),
        before,
        "A unchanged"
    );

    // A's own authorisation for request 2 works, once.
    let auth2 = center
        .load(&LoadOrder {
            request: second.message.clone(),
            signature: second.signature.to_vec(),
        })
        .expect("authorised 2");
    let apply2 = LoadApply {
        authorisation: auth2.authorisation,
        ticket_signature: None,
        block_list: auth2.block_list.clone(),
    };
    card_a.load_apply(&apply2).expect("apply 2");
    refused(
        card_a.load_apply(&apply2),
        0x6985,
        "the same authorisation twice",
    );
    card_b
        .load_apply(&LoadApply {
            authorisation: auth_b.authorisation,
            ticket_signature: None,
            block_list: auth_b.block_list.clone(),
        })
        .expect("B applies its own");

    // Two unloads on A; the acknowledgement of the first does not clear the second.
    card_a.verify_pin(PIN.as_bytes()).expect("PIN");
    let r1 = card_a.unload(&jpy(10)).expect("unload 1");
    let r2 = card_a.unload(&jpy(20)).expect("unload 2");
    let ack1 = center
        .unload(&UnloadOrder {
            receipt: r1.message.clone(),
            signature: r1.signature.to_vec(),
        })
        .expect("ack 1");
    let counter2 = UnitMessage::decode_unload(&r2.message)
        .expect("receipt 2")
        .counter;
    let before = std::fs::read(&state_a).expect("state");
    refused(
        card_a.unload_ack(
            ReceiptKind::Unload,
            &Acknowledgement {
                counter: counter2,
                signature: ack1.acknowledgement,
            },
        ),
        0x6300,
        "an acknowledgement of another receipt",
    );
    refused(
        card_a.unload_ack(
            ReceiptKind::LoadCancel,
            &Acknowledgement {
                counter: ack1.counter,
                signature: ack1.acknowledgement,
            },
        ),
        0x6A88,
        "an unload acknowledgement presented as a cancellation's",
    );
    assert_eq!(
        std::fs::read(&state_a).expect("state"),
        before,
        "A unchanged"
    );
    card_a
        .unload_ack(
            ReceiptKind::Unload,
            &Acknowledgement {
                counter: ack1.counter,
                signature: ack1.acknowledgement,
            },
        )
        .expect("ack 1 clears receipt 1");
    drop(card_a);
    drop(card_b);

    // recover sends the receipt left, and both sides add up.
    assert_eq!(a.recover()["complete"], true);
    let (ba, bb) = (a.balances(), b.balances());
    assert_eq!((ba.card, ba.center, ba.receipts), (170, 330, 0), "{ba:?}");
    assert_eq!((bb.card, bb.center), (100, 400), "{bb:?}");
}
