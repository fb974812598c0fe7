//! `valuecard-backend audit` (the library's `audit`): every invariant the three databases can
//! show holds on a healthy ledger, and each planted violation, in a copy of the databases
//! with the schema's own defences dropped, is reported under its invariant's name.
#![allow(clippy::unwrap_used)]

mod common;

use std::path::{Path, PathBuf};

use apdu_spec::blocklist::BlockEntry;
use apdu_spec::units::UnitMessage;
use common::*;
use valuecard_backend::audit::{self, Paths, Report, Status};
use valuecard_backend::db::{Database, DbError, Migration, Value};
use valuecard_backend::{arbiter, bank, center};
use valuecard_protocol::api::*;

/// A world in `dir` with some of everything: funding, loads, a refund, a voided load, an
/// unload, a ticket, a block, verdicts of both kinds.
fn healthy(dir: &Path) -> World {
    let w = World::in_dir(dir, &[256, 32]);
    let account = w.open_account(1000);
    let (card, card_id) = w.funded_card(&account, &[256, 32]);
    let (other, _) = w.funded_card(&account, &[32]);
    w.load(&load_order(&card, 0, jpy(100))).unwrap();
    let refunded = load_order(&card, 1, jpy(50));
    w.load(&refunded).unwrap();
    w.cancel(&cancellation(&card, &refunded.request)).unwrap();
    w.cancel(&cancellation(&card, &load_order(&card, 2, jpy(7)).request))
        .unwrap();
    w.unload(&unload_order(&other, 0, 40)).unwrap();
    let ticket_issued = w
        .issue_ticket(
            ADMIN,
            &TicketIssueRequest {
                card_id,
                asset: "CONCERT".into(),
                serial: None,
            },
        )
        .unwrap();
    w.load(&load_order(
        &card,
        3,
        ticket("CONCERT", &ticket_issued.serial),
    ))
    .unwrap();
    // A float alarm (a refused unload) changes no invariant.
    w.unload(&unload_order(&other, 1, 1_000_000))
        .expect_code(valuecard_protocol::ErrorCode::FloatExceeded);
    w.block(BlockEntry::Card([9; 32]));
    let (a, b) = (w.soft_card(), w.soft_card());
    for i in 0..4 {
        let session = Session::new(&a, &b);
        if i % 2 == 0 {
            w.arbiter.cancel(&cancel_request(&a, &b, &session)).unwrap();
        } else {
            w.arbiter
                .resolve(&resolve_request(&a, &b, &session))
                .unwrap();
        }
    }
    w
}

/// Copies of the world's three databases in `dir`.
fn copy(w: &World, dir: &Path) -> Paths {
    std::fs::create_dir_all(dir).unwrap();
    for (name, db) in [
        ("bank.sqlite", w.bank.database()),
        ("center.sqlite", w.center.database()),
        ("arbiter.sqlite", w.arbiter.database()),
    ] {
        db.copy_to(dir.join(name).to_str().unwrap()).unwrap();
    }
    Paths::in_folder(dir)
}

/// Runs raw SQL on the copy `file` of a role's database (schema defences may be dropped).
fn tamper(file: &Path, role: &str, migrations: &[Migration], body: impl FnOnce(&Database)) {
    let db = Database::open_sqlite(file.to_str().unwrap(), role, migrations).unwrap();
    body(&db);
}

fn sql(db: &Database, statements: &str, params: &[Value]) {
    db.transaction(|tx| -> Result<(), DbError> {
        let mut parts: Vec<&str> = statements
            .split(";\n")
            .map(str::trim)
            .filter(|s| !s.is_empty())
            .collect();
        let last = parts.pop().unwrap();
        for p in parts {
            tx.execute_batch(p)?;
        }
        tx.execute(last, params)?;
        Ok(())
    })
    .unwrap_or_else(|e| panic!("{statements}: {e}"));
}

/// Asserts that the report's only violation is `name`, and returns its details.
#[track_caller]
fn only_violation(report: &Report, name: &str) -> Vec<String> {
    let violated: Vec<&str> = report.violations().map(|c| c.name).collect();
    assert_eq!(violated, [name], "{}", report.render());
    assert!(!report.ok);
    report.check(name).unwrap().details.clone()
}

fn dirs() -> (tempfile::TempDir, PathBuf) {
    let dir = tempfile::tempdir().unwrap();
    let live = dir.path().join("live");
    std::fs::create_dir_all(&live).unwrap();
    (dir, live)
}

#[test]
fn the_audit_passes_on_a_healthy_ledger() {
    let (dir, live) = dirs();
    let w = healthy(&live);
    // On the live files (the services still open them), and on copies.
    for paths in [Paths::in_folder(&live), copy(&w, &dir.path().join("copy"))] {
        let report = audit::audit_files(&paths).unwrap();
        assert!(report.ok, "{}", report.render());
        assert_eq!(report.invariants.len(), 13);
        assert!(
            report.invariants.iter().all(|c| c.status == Status::Ok),
            "{}",
            report.render()
        );
    }
    // Without the bank, what needs it is skipped, not passed.
    let report = audit::audit_files(&Paths {
        bank: None,
        ..Paths::in_folder(&live)
    })
    .unwrap();
    assert!(report.ok);
    let skipped: Vec<&str> = report
        .invariants
        .iter()
        .filter(|c| c.status == Status::Skipped)
        .map(|c| c.name)
        .collect();
    assert_eq!(
        skipped,
        [
            "bank.account_balance",
            "bank.withdrawal_amount",
            "bank.debits_per_key",
            "bank.totals_fit_i64",
            "center.redemptions_signed"
        ]
    );
    // The audit writes nothing.
    let before = w.all_dumps();
    audit::audit_files(&Paths::in_folder(&live)).unwrap();
    assert_eq!(w.all_dumps(), before);
}

#[test]
fn a_credited_unload_nobody_loaded_breaks_the_float() {
    let (dir, live) = dirs();
    let w = healthy(&live);
    let (_, card_id) = w.new_card();
    let paths = copy(&w, &dir.path().join("copy"));
    let receipt = UnitMessage {
        card_id,
        counter: 0,
        value: jpy(1_000_000),
    }
    .encode_unload();
    // Credited as the code would, with the float's defences dropped.
    tamper(
        paths.center.as_ref().unwrap(),
        "center",
        center::MIGRATIONS,
        |db| {
            sql(
                db,
                "DROP TRIGGER unloads_credit;
                 UPDATE unit_accounts SET balance = balance + 1000000, unloaded = unloaded + 1000000
                 WHERE card_id = ?1",
                &[card_id.into()],
            );
            sql(
                db,
                "INSERT INTO unloads (card_id, counter, receipt, signature, asset, amount, acknowledgement, day)
                 VALUES (?1, 0, ?2, zeroblob(64), 'JPY', 1000000, zeroblob(64), 0)",
                &[card_id.into(), receipt.into()],
            );
        },
    );
    let details = only_violation(&audit::audit_files(&paths).unwrap(), "center.float");
    assert!(
        details.iter().any(|d| d.contains("cards gave back more")),
        "{details:?}"
    );
}

#[test]
fn a_redemption_without_a_bank_signature_is_found() {
    let (dir, live) = dirs();
    let w = healthy(&live);
    let (_, card_id) = w.new_card();
    let paths = copy(&w, &dir.path().join("copy"));
    // A redemption row under a known key with a nonce the bank never signed: the center's
    // own checks (key amount, credit) all pass.
    let key_id = w.key(32).key_id;
    tamper(
        paths.center.as_ref().unwrap(),
        "center",
        center::MIGRATIONS,
        |db| {
            sql(
                db,
                "INSERT INTO redemptions (nonce, message, randomizer, signature, card_id, key_id, amount, asset, redeemed_day)
                 VALUES (zeroblob(32), x'01', zeroblob(32), x'02', ?1, ?2, 32, 'JPY', 0)",
                &[card_id.into(), key_id.into()],
            );
        },
    );
    let details = only_violation(
        &audit::audit_files(&paths).unwrap(),
        "center.redemptions_signed",
    );
    assert!(details[0].contains("3 redeemed, 2 signed"), "{details:?}");
    // The center alone cannot tell: the check needs the bank.
    let alone = audit::audit_files(&Paths {
        bank: None,
        ..paths.clone()
    })
    .unwrap();
    assert!(alone.ok, "{}", alone.render());
}

#[test]
fn a_second_verdict_for_one_responder_and_s2_is_found() {
    let (dir, live) = dirs();
    let w = healthy(&live);
    let paths = copy(&w, &dir.path().join("copy"));
    // Another row for a decided s2 and its responder, under another a (the trigger that
    // keeps one row per (a, s2) is dropped first, so that the copy could even hold a second
    // row of the same session).
    tamper(
        paths.arbiter.as_ref().unwrap(),
        "arbiter",
        arbiter::MIGRATIONS,
        |db| {
            sql(
                db,
                "DROP TRIGGER verdicts_first_writer_wins;
                 INSERT INTO verdicts
                 SELECT zeroblob(32), s2, outcome, signature, commitment, responder_id,
                        responder_certificate, initiator_id, initiator_certificate,
                        agreement_signature, resolve_signature, cancel_signature, day
                 FROM verdicts WHERE outcome = 'cancel' LIMIT 1",
                &[],
            );
        },
    );
    let report = audit::audit_files(&paths).unwrap();
    let violated: Vec<&str> = report.violations().map(|c| c.name).collect();
    // The made-up row is not the parties' either: a is not theirs, nor the arbiter's
    // signature over it.
    assert_eq!(
        violated,
        ["arbiter.one_agreement_per_responder", "arbiter.parties"],
        "{}",
        report.render()
    );
}

#[test]
fn a_unit_account_that_does_not_match_its_rows_is_found() {
    let (dir, live) = dirs();
    let w = healthy(&live);
    let (_, card_id) = w.new_card();
    let paths = copy(&w, &dir.path().join("copy"));
    tamper(
        paths.center.as_ref().unwrap(),
        "center",
        center::MIGRATIONS,
        |db| {
            sql(
                db,
                "DROP TRIGGER unit_accounts_move;
                 UPDATE unit_accounts SET balance = balance + 1000 WHERE card_id = ?1",
                &[card_id.into()],
            );
        },
    );
    let details = only_violation(&audit::audit_files(&paths).unwrap(), "center.unit_accounts");
    assert!(details[0].contains("balance 1000"), "{details:?}");
}

#[test]
fn a_bank_account_that_does_not_match_its_rows_is_found() {
    let (dir, live) = dirs();
    let w = healthy(&live);
    let paths = copy(&w, &dir.path().join("copy"));
    tamper(
        paths.bank.as_ref().unwrap(),
        "bank",
        bank::MIGRATIONS,
        |db| {
            sql(db, "UPDATE accounts SET balance = balance + 5", &[]);
        },
    );
    only_violation(&audit::audit_files(&paths).unwrap(), "bank.account_balance");
}

#[test]
fn totals_past_2_63_are_found() {
    let (dir, live) = dirs();
    let w = healthy(&live);
    let (_, card_id) = w.new_card();
    let paths = copy(&w, &dir.path().join("copy"));
    let key_id = w.key(32).key_id;
    // Two redemptions of 2^62 each, credited by hand: each row fits, their sum does not.
    tamper(
        paths.center.as_ref().unwrap(),
        "center",
        center::MIGRATIONS,
        |db| {
            for nonce in [1u8, 2] {
                sql(
                    db,
                    "DROP TRIGGER IF EXISTS redemptions_credit;
                     INSERT INTO redemptions (nonce, message, randomizer, signature, card_id, key_id, amount, asset, redeemed_day)
                     VALUES (?1, ?2, zeroblob(32), x'02', ?3, ?4, 4611686018427387904, 'JPY', 0)",
                    &[
                        Value::Blob(vec![nonce; 32]),
                        Value::Blob(vec![nonce]),
                        card_id.into(),
                        key_id.into(),
                    ],
                );
            }
        },
    );
    let report = audit::audit_files(&paths).unwrap();
    let violated: Vec<&str> = report.violations().map(|c| c.name).collect();
    for name in [
        "center.redemption_amount",
        "center.redemptions_signed",
        "center.unit_accounts",
        "center.totals_fit_i64",
    ] {
        assert!(violated.contains(&name), "{name}: {}", report.render());
    }
    let fits = report.check("center.totals_fit_i64").unwrap();
    assert!(
        fits.details
            .iter()
            .any(|d| d.contains("redeemed 9223372036854775808")),
        "{:?}",
        fits.details
    );
}

#[test]
fn the_audit_refuses_databases_it_cannot_read() {
    let dir = tempfile::tempdir().unwrap();
    // A role's database of an older schema: start the role first.
    let old = dir.path().join("old.sqlite");
    Database::open_sqlite(old.to_str().unwrap(), "center", &center::MIGRATIONS[..2]).unwrap();
    let e = audit::audit_files(&Paths {
        center: Some(old),
        ..Paths::default()
    })
    .unwrap_err();
    assert!(e.to_string().contains("older than this program"), "{e}");
    let e = audit::audit_files(&Paths {
        bank: Some(dir.path().join("missing.sqlite")),
        ..Paths::default()
    })
    .unwrap_err();
    assert!(e.to_string().contains("no such database file"), "{e}");
    assert!(
        !dir.path().join("missing.sqlite").exists(),
        "the audit made a file"
    );
}
