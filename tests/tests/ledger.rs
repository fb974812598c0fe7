//! PROTOCOLS.md invariant 4, "Funding ledger", after a randomised run of at least 1,000
//! operations: withdrawals (redeemed at once or later), redemptions, loads, unloads and
//! recoveries by two users, a third of them cut by an injected fault (the terminal aborts
//! at a step, or a message to the bank or the center is lost).
//!
//! Checked every 100 operations, whatever is in flight:
//! - bank debits = the sum of issued tokens (the bank's withdrawals);
//! - center credits = the sum of redeemed tokens ≤ issued tokens;
//! - center units = credits − loads + refunds + unloads, per card (the center's ledger);
//! - the cards and the center together never hold more than was redeemed.
//!
//! At the end, after `valuecard recover` and `valuecard redeem`, all of it exactly: every
//! issued token redeemed once, and each card holding exactly what its loads (not refunded)
//! minus its unloads say, so that no load was applied twice; and `valuecard-backend audit`
//! finds every invariant it checks holding over the three databases.
//!
//! The cards run in-process (`--card-state`): an aborted terminal is then a card pulled out
//! at the same instant. `VALUECARD_LEDGER_SEED` and `VALUECARD_LEDGER_OPS` replay a run.

use std::path::Path;

use rand::rngs::StdRng;
use rand::{RngExt, SeedableRng};
use valuecard_protocol::api::LedgerRequest;
use valuecard_terminal::backend_client::CenterClient;
use valuecard_tests::{ADMIN_TOKEN, Backend, Run, User, json};

const DEPOSIT: u64 = 1_000_000;

const WITHDRAW_FAULTS: &[&str] = &[
    "journal-blinded",
    "bank-answered",
    "bank-answered:2",
    "journal-signed",
    "center-answered",
    "journal-redeemed",
    "fail-bank:4",
    "fail-bank:5",
    "fail-center:2",
    "fail-center:3",
];
const LOAD_FAULTS: &[&str] = &[
    "before-load-request",
    "after-load-request",
    "fail-center:1",
    "center-load-answered",
    "before-load-apply",
    "after-load-apply",
    "before-load-cancel",
    "after-load-cancel",
    "fail-center:2",
    "center-cancel-answered",
    "before-unload-ack",
];
const UNLOAD_FAULTS: &[&str] = &[
    "before-unload",
    "after-unload",
    "fail-center:1",
    "center-unload-answered",
    "before-unload-ack",
    "after-unload-ack",
];

/// A run must end as one of: done, a clear error (exit 1), or the injected abort.
#[track_caller]
fn check_exit(run: &Run, what: &str) {
    assert!(
        run.ok() || run.code == Some(1) || run.aborted(),
        "{what}: unexpected exit {:?}\nstdout:\n{}\nstderr:\n{}",
        run.code,
        run.stdout,
        run.stderr
    );
    assert!(
        !run.stderr.contains("panicked"),
        "{what}: panicked\n{}",
        run.stderr
    );
}

struct Ledger {
    /// The bank: deposits minus balances, and the sum of its withdrawals (issued tokens).
    bank_debits: u64,
    issued: u64,
    /// Per card, the center's totals and unit balance, and the card's own JPY.
    cards: Vec<CardSide>,
}

#[derive(Debug)]
struct CardSide {
    redeemed: u64,
    loaded: u64,
    refunded: u64,
    unloaded: u64,
    units: u64,
    on_card: u64,
    in_flight: bool,
}

fn bank_totals(db_dir: &Path, accounts: &[&str]) -> (u64, u64) {
    let bank = rusqlite::Connection::open_with_flags(
        db_dir.join("bank.sqlite"),
        rusqlite::OpenFlags::SQLITE_OPEN_READ_ONLY,
    )
    .expect("open the bank's database");
    let sum = |sql: &str, account: &str| -> u64 {
        bank.query_row(sql, [account], |r| r.get::<_, i64>(0))
            .expect("bank query") as u64
    };
    let mut debits = 0;
    let mut issued = 0;
    for account in accounts {
        let deposited = sum(
            "SELECT COALESCE(SUM(amount), 0) FROM deposits WHERE account = ?1",
            account,
        );
        let balance = sum("SELECT balance FROM accounts WHERE number = ?1", account);
        debits += deposited - balance;
        issued += sum(
            "SELECT COALESCE(SUM(amount), 0) FROM withdrawals WHERE account = ?1",
            account,
        );
    }
    (debits, issued)
}

fn card_side(user: &User, center: &CenterClient) -> CardSide {
    let info = json(&user.run(&["info", "--json"], &[]).expect_ok("info"));
    let card_id = info["card_id"].as_str().expect("card id");
    let on_card = info["values"]["assets"]
        .as_array()
        .and_then(|a| a.iter().find(|a| a["code"] == "JPY"))
        .map_or(0, |a| a["available"].as_u64().expect("available"));
    let balance = json(&user.run(&["balance", "--json"], &[]).expect_ok("balance"));
    let in_flight = !balance["pending_load"].is_null()
        || !balance["receipts"].as_array().expect("receipts").is_empty();
    // The center's ledger of the card, read with the admin token.
    let request = LedgerRequest {
        card_id: hex::decode(card_id)
            .ok()
            .and_then(|id| id.try_into().ok())
            .unwrap_or_else(|| panic!("card id {card_id}")),
        proof: None,
    };
    let ledger = center.ledger(&request, Some(ADMIN_TOKEN)).expect("ledger");
    let totals = &ledger.totals;
    let units = ledger
        .accounts
        .iter()
        .find(|a| a.asset == "JPY")
        .map_or(0, |a| a.balance);
    CardSide {
        redeemed: totals.redeemed,
        loaded: totals.loaded,
        refunded: totals.refunded,
        unloaded: totals.unloaded,
        units,
        on_card,
        in_flight,
    }
}

fn ledger(users: &[User], backend: &Backend) -> Ledger {
    let accounts: Vec<&str> = users.iter().map(|u| u.account.as_str()).collect();
    let (bank_debits, issued) = bank_totals(&backend.db_dir, &accounts);
    let center = CenterClient::new(&backend.url);
    Ledger {
        bank_debits,
        issued,
        cards: users.iter().map(|u| card_side(u, &center)).collect(),
    }
}

/// The invariants that hold at any moment, whatever is in flight.
fn check_always(l: &Ledger, when: &str) {
    assert_eq!(
        l.bank_debits, l.issued,
        "{when}: bank debits = issued tokens"
    );
    let redeemed: u64 = l.cards.iter().map(|c| c.redeemed).sum();
    assert!(
        redeemed <= l.issued,
        "{when}: redeemed {redeemed} > issued {}",
        l.issued
    );
    for (i, c) in l.cards.iter().enumerate() {
        assert_eq!(
            c.units + c.loaded,
            c.redeemed + c.refunded + c.unloaded,
            "{when}: card {i}: center units = credits - loads + refunds + unloads: {c:?}"
        );
    }
    let held: u64 = l.cards.iter().map(|c| c.on_card + c.units).sum();
    assert!(
        held <= redeemed,
        "{when}: cards + center {held} > redeemed {redeemed}"
    );
}

#[test]
fn the_funding_ledger_holds_after_a_thousand_random_operations_with_faults() {
    let seed: u64 = std::env::var("VALUECARD_LEDGER_SEED")
        .ok()
        .and_then(|s| s.parse().ok())
        .unwrap_or_else(|| rand::rng().random());
    let ops: usize = std::env::var("VALUECARD_LEDGER_OPS")
        .ok()
        .and_then(|s| s.parse().ok())
        .unwrap_or(1000);
    eprintln!("ledger run: VALUECARD_LEDGER_SEED={seed} VALUECARD_LEDGER_OPS={ops}");
    let mut rng = StdRng::seed_from_u64(seed);

    let dir = tempfile::tempdir().expect("temp dir");
    let backend = Backend::start(&dir.path().join("db"));
    let users: Vec<User> = (0..2)
        .map(|i| {
            let home = dir.path().join(format!("user{i}"));
            std::fs::create_dir_all(&home).expect("user dir");
            let state = home.join("card.state");
            User::new(
                &backend,
                &home,
                &["--card-state", state.to_str().expect("utf-8")],
                DEPOSIT,
            )
        })
        .collect();

    let mut counts = std::collections::BTreeMap::<&str, usize>::new();
    for op in 0..ops {
        let user = &users[rng.random_range(0..users.len())];
        let roll = rng.random_range(0..100);
        let faulted = rng.random_range(0..3) == 0;
        let pick = |rng: &mut StdRng, faults: &[&'static str]| {
            faulted.then(|| faults[rng.random_range(0..faults.len())])
        };
        let (name, run) = match roll {
            0..20 => {
                let amount = rng.random_range(1..=120u64);
                let later = rng.random_range(0..3) == 0;
                let fault = pick(&mut rng, WITHDRAW_FAULTS);
                let extra: &[&str] = if later { &["--redeem-later"] } else { &[] };
                ("withdraw", user.withdraw(amount, extra, fault))
            }
            20..25 => ("redeem", user.run(&["redeem", "--json"], &[])),
            25..55 => {
                let amount = rng.random_range(1..=80u64);
                ("load", user.load(amount, pick(&mut rng, LOAD_FAULTS)))
            }
            55..85 => {
                let amount = rng.random_range(1..=60u64);
                ("unload", user.unload(amount, pick(&mut rng, UNLOAD_FAULTS)))
            }
            _ => (
                "recover",
                user.with_credential(&["recover", "--json"], None),
            ),
        };
        check_exit(&run, &format!("op {op} ({name}), seed {seed}"));
        *counts.entry(name).or_default() += 1;
        if op % 100 == 99 {
            check_always(
                &ledger(&users, &backend),
                &format!("after op {op}, seed {seed}"),
            );
        }
    }
    eprintln!("operations: {counts:?}");

    // Finish everything: recover (pieces for the bank, tokens, the cards' loads and
    // receipts), then the tokens kept for later.
    for user in &users {
        for round in 0.. {
            let run = user.with_credential(&["recover", "--json"], None);
            if run.ok() && json(&run)["complete"] == true {
                break;
            }
            assert!(round < 3, "recover does not finish (seed {seed}): {run:?}");
        }
        user.run(&["redeem", "--json"], &[]).expect_ok("redeem");
        let left = user
            .with_credential(&["recover", "--json"], None)
            .expect_ok("recover");
        assert_eq!(
            json(&left)["nothing_to_recover"],
            true,
            "seed {seed}: {}",
            left.stdout
        );
    }

    let end = ledger(&users, &backend);
    eprintln!("issued {}, cards: {:?}", end.issued, end.cards);
    check_always(&end, &format!("at the end, seed {seed}"));
    let redeemed: u64 = end.cards.iter().map(|c| c.redeemed).sum();
    assert_eq!(
        redeemed, end.issued,
        "every issued token redeemed once (seed {seed})"
    );
    for (i, c) in end.cards.iter().enumerate() {
        assert!(
            !c.in_flight,
            "card {i}: nothing in flight at the end: {c:?}"
        );
        assert_eq!(
            c.on_card + c.unloaded,
            c.loaded - c.refunded,
            "card {i} (seed {seed}): on the card = loads not refunded - unloads: no load \
             applied twice, none lost: {c:?}"
        );
        assert_eq!(
            c.on_card + c.units,
            c.redeemed,
            "card {i} (seed {seed}): {c:?}"
        );
    }
    assert!(
        counts.values().sum::<usize>() >= 1000 || ops < 1000,
        "at least 1,000 operations"
    );
    assert!(
        end.cards.iter().all(|c| c.loaded > 0 && c.unloaded > 0),
        "the run moved units both ways: {:?}",
        end.cards
    );

    // The auditor, read-only over the three databases, finds every invariant it can check
    // holding, the float among them (cards hold exactly what was loaded and not refunded
    // or unloaded).
    let audit = backend.audit();
    eprintln!("{}", audit.report);
    assert!(audit.passed, "the auditor (seed {seed}):\n{}", audit.report);
}
