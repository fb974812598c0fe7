//! The databases: migrations are idempotent, a file database re-opens as it was, and the
//! schema itself refuses double debits and credits and overdrafts, even from raw SQL that
//! bypasses the roles' code.
#![allow(clippy::unwrap_used)]

mod common;

use std::sync::Arc;

use apdu_spec::units::UnitMessage;
use common::*;
use p256::ecdsa::SigningKey;
use p256::elliptic_curve::Generate;
use valuecard_backend::arbiter::{self, Arbiter, ArbiterConfig};
use valuecard_backend::bank::{self, Bank, BankConfig};
use valuecard_backend::center::{self, Center, CenterConfig};
use valuecard_backend::clock::ManualClock;
use valuecard_backend::db::{Constraint, Database, DbError, Value};
use valuecard_protocol::api::*;

fn path(dir: &tempfile::TempDir, name: &str) -> String {
    dir.path().join(name).to_str().unwrap().to_owned()
}

#[test]
fn applying_migrations_twice_is_a_no_op() {
    let dir = tempfile::tempdir().unwrap();
    for (role, migrations) in [
        ("bank", bank::MIGRATIONS),
        ("center", center::MIGRATIONS),
        ("arbiter", arbiter::MIGRATIONS),
    ] {
        for file in [":memory:".to_owned(), path(&dir, &format!("{role}.sqlite"))] {
            let db = Database::open_sqlite(&file, role, migrations).unwrap();
            let before = db.dump().unwrap();
            let recorded: Vec<Vec<Value>> = migrations
                .iter()
                .map(|m| {
                    vec![
                        Value::Int(m.version),
                        Value::Text(format!("{role}/{}", m.name)),
                    ]
                })
                .collect();
            assert_eq!(before["schema_migrations"], recorded);
            assert_eq!(recorded[0][1], Value::Text(format!("{role}/0001_init")));
            db.migrate(role, migrations).unwrap();
            assert_eq!(db.dump().unwrap(), before);
            drop(db);
            let reopened = Database::open_sqlite(&file, role, migrations).unwrap();
            if file != ":memory:" {
                assert_eq!(reopened.dump().unwrap(), before);
            }
        }
    }
}

#[test]
fn file_databases_reopen_with_state_intact() {
    let dir = tempfile::tempdir().unwrap();
    let clock = Arc::new(ManualClock::new(START));
    let (bank_file, center_file, arbiter_file) = (
        path(&dir, "bank.sqlite"),
        path(&dir, "center.sqlite"),
        path(&dir, "arbiter.sqlite"),
    );
    let open_bank = || Bank::open(&bank_file, clock.clone(), BankConfig::default(), ADMIN).unwrap();
    let arbiter_key = arbiter::public_key(&arbiter::open_database(&arbiter_file).unwrap()).unwrap();
    let bank = open_bank();
    let open_center = |bank_key| {
        Center::open(
            &center_file,
            clock.clone(),
            CenterConfig {
                currency: "JPY".into(),
                bank_public_key: bank_key,
                arbiter_public_key: arbiter_key,
            },
            ADMIN,
        )
        .unwrap()
    };
    let center = open_center(*bank.verifying_key());

    let account = bank
        .open_account(
            Some(ADMIN),
            &OpenAccountRequest {
                credential: CREDENTIAL.into(),
            },
        )
        .unwrap()
        .account;
    bank.deposit(
        Some(ADMIN),
        &DepositRequest {
            account: account.clone(),
            amount: 64,
            reference: "r1".into(),
        },
    )
    .unwrap();
    let list = bank.key_list(&[32]).unwrap();
    center.import_keys(&list).unwrap();
    let key = list.verify(bank.verifying_key()).unwrap().keys[0].clone();
    let card = SigningKey::generate_from_rng(&mut rand::rng());
    let challenge = center
        .challenge(&ChallengeRequest {
            purpose: ChallengePurpose::Register,
        })
        .unwrap()
        .challenge;
    let register = RegisterRequest {
        public_key: apdu_spec::cert::encode_public_key(card.verifying_key()),
        proof: CardProof {
            challenge,
            signature: apdu_spec::auth::sign(&card, &challenge).to_vec(),
        },
    };
    let registration = center.register(&register).unwrap();
    let pending = Pending::new(&key, registration.card_id, 32);
    let token = pending.clone().finalize(
        &bank
            .withdraw(&pending.request(&account, CREDENTIAL))
            .unwrap(),
    );
    center.redeem(&token.redeem).unwrap();

    let (bank_key, issuer_key) = (bank.public_key(), center.issuer_public_key());
    let (bank_dump, center_dump) = (
        bank.database().dump().unwrap(),
        center.database().dump().unwrap(),
    );
    drop((bank, center));

    let bank = open_bank();
    let center = open_center(*bank.verifying_key());
    assert_eq!(
        (bank.public_key(), center.issuer_public_key()),
        (bank_key, issuer_key)
    );
    assert_eq!(
        arbiter::public_key(&arbiter::open_database(&arbiter_file).unwrap()).unwrap(),
        arbiter_key
    );
    assert_eq!(bank.database().dump().unwrap(), bank_dump);
    assert_eq!(center.database().dump().unwrap(), center_dump);
    // The stored Argon2 hash, denomination key and ledger work after the restart.
    assert_eq!(
        bank.balance(&AccountBalanceRequest {
            account: account.clone(),
            credential: CREDENTIAL.into()
        })
        .unwrap()
        .balance,
        32
    );
    let pending = Pending::new(&key, registration.card_id, 32);
    let second = pending.clone().finalize(
        &bank
            .withdraw(&pending.request(&account, CREDENTIAL))
            .unwrap(),
    );
    assert!(!center.redeem(&second.redeem).unwrap().replayed);
    assert!(center.redeem(&token.redeem).unwrap().replayed);
}

/// Runs raw SQL in a transaction and returns which constraint refused it.
fn refused_by(db: &Database, sql: &str, params: &[Value]) -> Option<Constraint> {
    let before = db.dump().unwrap();
    let result: Result<usize, DbError> = db.transaction(|tx| tx.execute(sql, params));
    assert_eq!(
        db.dump().unwrap(),
        before,
        "a refused statement changed the database: {sql}"
    );
    result.err().and_then(|e| e.constraint())
}

#[test]
fn the_schema_refuses_double_debits_credits_and_overdrafts_by_itself() {
    let w = World::new(&[32]);
    let key = w.key(32);
    let account = w.open_account(40);
    let (_, card_id) = w.new_card();
    let token = w.token(&account, &key, card_id);
    w.redeem(&token.redeem).unwrap();
    let bank = w.bank.database();
    let center = w.center.database();
    let row = bank
        .transaction(|tx| tx.query("SELECT * FROM withdrawals", &[]))
        .unwrap()
        .remove(0)
        .0;

    // Bank: the same withdrawal again (a bug that skipped the replay check).
    let insert = "INSERT INTO withdrawals VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7)";
    assert_eq!(refused_by(bank, insert, &row), Some(Constraint::Unique));
    // A new withdrawal that would overdraw the account (8 left, 32 asked).
    let mut overdraft = row.clone();
    overdraft[0] = Value::Blob(vec![0xAB; 32]);
    assert_eq!(
        refused_by(bank, insert, &overdraft),
        Some(Constraint::Check)
    );
    // A withdrawal whose amount is not its key's.
    let mut cheap = overdraft.clone();
    cheap[3] = Value::Int(1);
    assert_eq!(refused_by(bank, insert, &cheap), Some(Constraint::Other));
    // Ledger rows cannot be changed or removed, and accounts open empty.
    assert_eq!(
        refused_by(bank, "UPDATE withdrawals SET amount = 1", &[]),
        Some(Constraint::Other)
    );
    assert_eq!(
        refused_by(bank, "DELETE FROM deposits", &[]),
        Some(Constraint::Other)
    );
    assert_eq!(
        refused_by(
            bank,
            "INSERT INTO accounts VALUES ('123456789012', 'x', 'JPY', 100, 0)",
            &[]
        ),
        Some(Constraint::Other)
    );
    // A deposit whose claimed balance is not the real one.
    assert_eq!(
        refused_by(
            bank,
            "INSERT INTO deposits VALUES ('x', ?1, 5, 999, 0)",
            &[Value::Text(account.clone())]
        ),
        Some(Constraint::Other)
    );

    // Center: the same token again.
    let row = center
        .transaction(|tx| tx.query("SELECT * FROM redemptions", &[]))
        .unwrap()
        .remove(0)
        .0;
    let insert = "INSERT INTO redemptions VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8, ?9)";
    assert_eq!(refused_by(center, insert, &row), Some(Constraint::Unique));
    // A new nonce for a card without a unit account.
    let mut orphan = row.clone();
    orphan[0] = Value::Blob(vec![0xCD; 32]);
    orphan[1] = Value::Blob(vec![0xCD; 8]);
    orphan[4] = Value::Blob(vec![0xEE; 32]);
    assert_eq!(
        refused_by(center, insert, &orphan),
        Some(Constraint::ForeignKey)
    );
    assert_eq!(
        refused_by(center, "DELETE FROM redemptions", &[]),
        Some(Constraint::Other)
    );
    assert_eq!(
        refused_by(center, "UPDATE unit_accounts SET balance = -1", &[]),
        Some(Constraint::Check)
    );
}

#[test]
fn racing_key_generation_ends_with_one_key() {
    // Two bank processes on one database file, both asked for the same new key at once:
    // both generate one, the UNIQUE (currency, amount, epoch) constraint keeps the first.
    let dir = tempfile::tempdir().unwrap();
    let file = path(&dir, "bank.sqlite");
    let clock = Arc::new(ManualClock::new(START));
    let banks: Vec<Arc<Bank>> = (0..2)
        .map(|_| Arc::new(Bank::open(&file, clock.clone(), BankConfig::default(), ADMIN).unwrap()))
        .collect();
    assert_eq!(banks[0].public_key(), banks[1].public_key());
    let barrier = Arc::new(std::sync::Barrier::new(2));
    let lists: Vec<_> = banks
        .iter()
        .map(|bank| {
            let (bank, barrier) = (bank.clone(), barrier.clone());
            std::thread::spawn(move || {
                barrier.wait();
                bank.key_list(&[4]).unwrap()
            })
        })
        .collect::<Vec<_>>()
        .into_iter()
        .map(|t| {
            t.join()
                .unwrap()
                .verify(banks[0].verifying_key())
                .unwrap()
                .keys
        })
        .collect();
    assert_eq!(lists[0].len(), 1);
    assert_eq!(lists[0], lists[1]);
    assert_eq!(
        banks[0].database().dump().unwrap()["denomination_keys"].len(),
        1
    );
}

fn units_balance(db: &Database, card_id: [u8; 32]) -> i64 {
    db.transaction(|tx| {
        tx.query_opt(
            "SELECT balance FROM unit_accounts WHERE card_id = ?1",
            &[card_id.into()],
        )
    })
    .unwrap()
    .unwrap()
    .i64(0)
    .unwrap()
}

const INSERT_LOAD: &str = "INSERT INTO loads
    (card_id, counter, request, signature, kind, asset, amount, serial, authorisation, day)
    VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8, ?9, ?10)";
const INSERT_CANCELLATION: &str = "INSERT INTO load_cancellations
    (card_id, counter, request, signature, outcome, acknowledgement, day)
    VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7)";
const INSERT_UNLOAD: &str = "INSERT INTO unloads
    (card_id, counter, receipt, signature, asset, amount, acknowledgement, day)
    VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8)";

/// A `loads` row as the code writes it, for `value` under `counter` (signatures made up:
/// SQL cannot check them).
fn load_row(card_id: [u8; 32], counter: u32, value: UnitValue) -> Vec<Value> {
    let request = UnitMessage {
        card_id,
        counter,
        value: value.clone(),
    }
    .encode_load();
    let (kind, amount, serial) = match &value {
        UnitValue::Asset { amount, .. } => ("asset", Value::Int(*amount as i64), Value::Null),
        UnitValue::Ticket { serial, .. } => ("ticket", Value::Null, Value::Blob(serial.clone())),
    };
    vec![
        Value::Blob(card_id.to_vec()),
        Value::Int(counter.into()),
        Value::Blob(request),
        Value::Blob(vec![1; 64]),
        Value::Text(kind.into()),
        Value::Text(value.code().into()),
        amount,
        serial,
        Value::Blob(vec![2; 64]),
        Value::Int(0),
    ]
}

fn cancellation_row(
    card_id: [u8; 32],
    counter: u32,
    value: UnitValue,
    outcome: &str,
) -> Vec<Value> {
    let request = UnitMessage {
        card_id,
        counter,
        value,
    }
    .encode_load();
    vec![
        Value::Blob(card_id.to_vec()),
        Value::Int(counter.into()),
        Value::Blob(request),
        Value::Blob(vec![1; 64]),
        Value::Text(outcome.into()),
        Value::Blob(vec![2; 64]),
        Value::Int(0),
    ]
}

fn unload_row(card_id: [u8; 32], counter: u32, code: &str, amount: u64) -> Vec<Value> {
    let value = UnitValue::Asset {
        code: code.into(),
        amount,
    };
    let receipt = UnitMessage {
        card_id,
        counter,
        value,
    }
    .encode_unload();
    vec![
        Value::Blob(card_id.to_vec()),
        Value::Int(counter.into()),
        Value::Blob(receipt),
        Value::Blob(vec![1; 64]),
        Value::Text(code.into()),
        Value::Int(amount as i64),
        Value::Blob(vec![2; 64]),
        Value::Int(0),
    ]
}

#[test]
fn the_schema_keeps_the_unit_ledger_by_itself() {
    let w = World::new(&[32]);
    let account = w.open_account(100);
    let (card, card_id) = w.funded_card(&account, &[32]);
    let (_, other_id) = w.new_card();
    // Through the code: counter 0 loads 10 units, counter 1 the ticket A1, counter 2 loads
    // 5 and is refunded, counter 7 is voided; unload counter 0 brings 3 back.
    w.load(&load_order(&card, 0, jpy(10))).unwrap();
    for (owner, serial) in [(card_id, b"A1"), (other_id, b"B1")] {
        w.issue_ticket(
            ADMIN,
            &TicketIssueRequest {
                card_id: owner,
                asset: "CONCERT".into(),
                serial: Some(serial.to_vec()),
            },
        )
        .unwrap();
    }
    w.load(&load_order(&card, 1, ticket("CONCERT", b"A1")))
        .unwrap();
    let refunded = load_order(&card, 2, jpy(5));
    w.load(&refunded).unwrap();
    let ack = w.cancel(&cancellation(&card, &refunded.request)).unwrap();
    assert_eq!(ack.outcome, CancelOutcome::Refunded);
    let voided = load_order(&card, 7, jpy(1));
    let ack = w.cancel(&cancellation(&card, &voided.request)).unwrap();
    assert_eq!(ack.outcome, CancelOutcome::Voided);
    w.unload(&unload_order(&card, 0, 3)).unwrap();
    let center = w.center.database();
    assert_eq!(units_balance(center, card_id), 25);
    let row = |sql: &str| {
        center
            .transaction(|tx| tx.query(sql, &[]))
            .unwrap()
            .remove(0)
            .0
    };

    // A second load of a (card, counter), with the same bytes or others.
    let loaded = row(
        "SELECT card_id, counter, request, signature, kind, asset, amount, serial, authorisation, day FROM loads WHERE counter = 0",
    );
    assert_eq!(loaded, {
        let mut expected = load_row(card_id, 0, jpy(10));
        expected[3] = loaded[3].clone();
        expected[8] = loaded[8].clone();
        expected[9] = loaded[9].clone();
        expected
    });
    assert_eq!(
        refused_by(center, INSERT_LOAD, &loaded),
        Some(Constraint::Unique)
    );
    assert_eq!(
        refused_by(center, INSERT_LOAD, &load_row(card_id, 0, jpy(1))),
        Some(Constraint::Unique)
    );
    // An overdraw: 26 of 25.
    assert_eq!(
        refused_by(center, INSERT_LOAD, &load_row(card_id, 3, jpy(26))),
        Some(Constraint::Check)
    );
    // A load of a cancelled request: voided, or refunded already.
    assert_eq!(
        refused_by(center, INSERT_LOAD, &load_row(card_id, 7, jpy(1))),
        Some(Constraint::Other)
    );
    assert!(refused_by(center, INSERT_LOAD, &load_row(card_id, 2, jpy(5))).is_some());
    // A row that does not say what its signed request says.
    let mut more = load_row(card_id, 3, jpy(1));
    more[6] = Value::Int(2);
    assert_eq!(
        refused_by(center, INSERT_LOAD, &more),
        Some(Constraint::Check)
    );
    let mut elsewhere = load_row(card_id, 3, jpy(1));
    elsewhere[0] = Value::Blob(other_id.to_vec());
    assert_eq!(
        refused_by(center, INSERT_LOAD, &elsewhere),
        Some(Constraint::Check)
    );
    let mut later = load_row(card_id, 3, jpy(1));
    later[1] = Value::Int(4);
    assert_eq!(
        refused_by(center, INSERT_LOAD, &later),
        Some(Constraint::Check)
    );
    let mut priced = load_row(card_id, 3, ticket("CONCERT", b"A1"));
    priced[6] = Value::Int(1);
    assert_eq!(
        refused_by(center, INSERT_LOAD, &priced),
        Some(Constraint::Check)
    );
    let mut free = load_row(card_id, 3, jpy(1));
    free[6] = Value::Null;
    assert_eq!(
        refused_by(center, INSERT_LOAD, &free),
        Some(Constraint::Check)
    );
    // Units of an asset the card has no account for.
    let usd = UnitValue::Asset {
        code: "USD".into(),
        amount: 1,
    };
    assert_eq!(
        refused_by(center, INSERT_LOAD, &load_row(card_id, 3, usd)),
        Some(Constraint::Other)
    );
    // A ticket delivered twice, and another card's ticket.
    assert_eq!(
        refused_by(
            center,
            INSERT_LOAD,
            &load_row(card_id, 3, ticket("CONCERT", b"A1"))
        ),
        Some(Constraint::Other)
    );
    assert_eq!(
        refused_by(
            center,
            INSERT_LOAD,
            &load_row(card_id, 3, ticket("CONCERT", b"B1"))
        ),
        Some(Constraint::Other)
    );

    // A refund without a load, or of another request than the one loaded.
    assert_eq!(
        refused_by(
            center,
            INSERT_CANCELLATION,
            &cancellation_row(card_id, 3, jpy(5), "refunded")
        ),
        Some(Constraint::Other)
    );
    assert_eq!(
        refused_by(
            center,
            INSERT_CANCELLATION,
            &cancellation_row(card_id, 0, jpy(9), "refunded")
        ),
        Some(Constraint::Other)
    );
    // A second refund.
    assert_eq!(
        refused_by(
            center,
            INSERT_CANCELLATION,
            &cancellation_row(card_id, 2, jpy(5), "refunded")
        ),
        Some(Constraint::Unique)
    );
    // Voided, while the request was loaded.
    assert_eq!(
        refused_by(
            center,
            INSERT_CANCELLATION,
            &cancellation_row(card_id, 0, jpy(10), "voided")
        ),
        Some(Constraint::Other)
    );
    // A second credit of an unload counter, and units without an account.
    assert_eq!(
        refused_by(center, INSERT_UNLOAD, &unload_row(card_id, 0, "JPY", 3)),
        Some(Constraint::Unique)
    );
    assert_eq!(
        refused_by(center, INSERT_UNLOAD, &unload_row(card_id, 1, "USD", 3)),
        Some(Constraint::ForeignKey)
    );
    let mut inflated = unload_row(card_id, 1, "JPY", 3);
    inflated[5] = Value::Int(300);
    assert_eq!(
        refused_by(center, INSERT_UNLOAD, &inflated),
        Some(Constraint::Check)
    );

    // Ledger rows never change nor go away.
    for table in ["loads", "load_cancellations", "unloads"] {
        assert_eq!(
            refused_by(center, &format!("UPDATE {table} SET day = day + 1"), &[]),
            Some(Constraint::Other),
            "{table}"
        );
        assert_eq!(
            refused_by(center, &format!("DELETE FROM {table}"), &[]),
            Some(Constraint::Other),
            "{table}"
        );
    }
    // Tickets: never deleted; only their delivery changes, and only with a load or refund.
    for sql in [
        "DELETE FROM tickets",
        "UPDATE tickets SET card_id = (SELECT card_id FROM tickets WHERE serial = x'4231') WHERE serial = x'4131'",
        "UPDATE tickets SET delivery_counter = NULL WHERE serial = x'4131'",
        "UPDATE tickets SET delivery_counter = 1 WHERE serial = x'4231'",
        "UPDATE tickets SET delivery_counter = 0 WHERE serial = x'4131'",
    ] {
        assert_eq!(
            refused_by(center, sql, &[]),
            Some(Constraint::Other),
            "{sql}"
        );
    }
    // A ticket with the code of the card's units.
    assert_eq!(
        refused_by(
            center,
            "INSERT INTO tickets (asset, serial, card_id, signature, issued_day) VALUES ('JPY', x'01', ?1, ?2, 0)",
            &[Value::Blob(card_id.to_vec()), Value::Blob(vec![3; 64])]
        ),
        Some(Constraint::Other)
    );
    assert_eq!(units_balance(center, card_id), 25);

    // And what is right passes: a load that fits the balance debits it, its refund credits
    // it back, and a refunded ticket can be delivered again.
    center
        .transaction(|tx| tx.execute(INSERT_LOAD, &load_row(card_id, 3, jpy(25))))
        .unwrap();
    assert_eq!(units_balance(center, card_id), 0);
    center
        .transaction(|tx| {
            tx.execute(
                INSERT_CANCELLATION,
                &cancellation_row(card_id, 3, jpy(25), "refunded"),
            )
        })
        .unwrap();
    assert_eq!(units_balance(center, card_id), 25);
    center
        .transaction(|tx| {
            tx.execute(
                INSERT_CANCELLATION,
                &cancellation_row(card_id, 1, ticket("CONCERT", b"A1"), "refunded"),
            )
        })
        .unwrap();
    center
        .transaction(|tx| tx.execute(INSERT_LOAD, &load_row(card_id, 4, ticket("CONCERT", b"A1"))))
        .unwrap();
    assert_eq!(
        row("SELECT delivery_counter FROM tickets WHERE serial = x'4131'"),
        vec![Value::Int(4)]
    );
}

const VERDICT_COLUMNS: &str = "s2, a, outcome, signature, responder_id, responder_certificate,
    initiator_id, initiator_certificate, agreement_signature, resolve_signature,
    cancel_signature, day";

fn verdict_row(db: &Database, s2: &[u8; 32]) -> Vec<Value> {
    db.transaction(|tx| {
        tx.query_opt(
            &format!("SELECT {VERDICT_COLUMNS} FROM verdicts WHERE s2 = ?1"),
            &[Value::Blob(s2.to_vec())],
        )
    })
    .unwrap()
    .unwrap()
    .0
}

#[test]
fn the_schema_keeps_one_final_verdict_per_session_by_itself() {
    let issuer = SigningKey::generate_from_rng(&mut rand::rng());
    let arbiter = Arbiter::open(
        ":memory:",
        Arc::new(ManualClock::new(START)),
        ArbiterConfig {
            issuer_public_key: *issuer.verifying_key(),
        },
    )
    .unwrap();
    let (a, b) = (SoftCard::new(&issuer), SoftCard::new(&issuer));
    let (completed, cancelled) = (Session::new(&a, &b), Session::new(&a, &b));
    arbiter
        .resolve(&resolve_request(&a, &b, &completed))
        .unwrap();
    arbiter.cancel(&cancel_request(&b, &cancelled)).unwrap();
    let db = arbiter.database();
    let complete = verdict_row(db, &completed.s2);
    let cancel = verdict_row(db, &cancelled.s2);
    assert_eq!(complete[2], Value::Text("complete".into()));
    assert_eq!(cancel[2], Value::Text("cancel".into()));
    let insert = format!(
        "INSERT INTO verdicts ({VERDICT_COLUMNS})
         VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8, ?9, ?10, ?11, ?12)"
    );

    // A second verdict for a decided session: the other outcome, with a proof that would
    // pass every CHECK (B's cancel request), in every way SQL has to write one.
    let mut second = cancel.clone();
    second[0] = complete[0].clone();
    second[1] = complete[1].clone();
    for verb in [
        "INSERT",
        "INSERT OR REPLACE",
        "REPLACE",
        "INSERT OR IGNORE",
        "INSERT OR FAIL",
    ] {
        let sql = insert.replacen("INSERT", verb, 1);
        let refused = refused_by(db, &sql, &second);
        // OR IGNORE may succeed doing nothing; every other form is an error.
        if verb != "INSERT OR IGNORE" {
            assert!(refused.is_some(), "{verb} recorded a second verdict");
        }
    }
    assert_eq!(
        refused_by(
            db,
            &format!("{insert} ON CONFLICT (s2) DO UPDATE SET outcome = excluded.outcome"),
            &second
        ),
        Some(Constraint::Other)
    );
    // Verdicts are never changed or deleted.
    for sql in [
        "UPDATE verdicts SET outcome = 'cancel' WHERE outcome = 'complete'",
        "UPDATE verdicts SET signature = zeroblob(64)",
        "UPDATE verdicts SET day = day + 1",
        "DELETE FROM verdicts WHERE outcome = 'cancel'",
        "DELETE FROM verdicts",
    ] {
        assert_eq!(refused_by(db, sql, &[]), Some(Constraint::Other), "{sql}");
    }
    assert_eq!(verdict_row(db, &completed.s2), complete);
    assert_eq!(verdict_row(db, &cancelled.s2), cancel);

    // A new session's row must carry the proof its outcome needs.
    let fresh = |row: &[Value]| {
        let mut row = row.to_vec();
        row[0] = Value::Blob(vec![0xEE; 32]);
        row
    };
    let (new_complete, new_cancel) = (fresh(&complete), fresh(&cancel));
    let broken: Vec<(&str, Vec<Value>)> = vec![
        ("a COMPLETE without Sa", {
            let mut r = new_complete.clone();
            r[8] = Value::Null;
            r
        }),
        ("a COMPLETE without the initiator", {
            let mut r = new_complete.clone();
            r[6] = Value::Null;
            r[7] = Value::Null;
            r
        }),
        ("a COMPLETE with a cancel request", {
            let mut r = new_complete.clone();
            r[10] = cancel[10].clone();
            r
        }),
        ("a COMPLETE between a card and itself", {
            let mut r = new_complete.clone();
            r[6] = r[4].clone();
            r[7] = r[5].clone();
            r
        }),
        ("a CANCEL without Sab", {
            let mut r = new_cancel.clone();
            r[10] = Value::Null;
            r
        }),
        ("a CANCEL with A's resolve request", {
            let mut r = new_cancel.clone();
            r[9] = complete[9].clone();
            r
        }),
        ("a responder id that is not its certificate's", {
            let mut r = new_cancel.clone();
            r[4] = Value::Blob(a.id.to_vec());
            r
        }),
        ("an initiator id that is not its certificate's", {
            let mut r = new_complete.clone();
            r[6] = Value::Blob(vec![0x11; 32]);
            r
        }),
        ("a short arbiter signature", {
            let mut r = new_cancel.clone();
            r[3] = Value::Blob(vec![1; 63]);
            r
        }),
        ("an outcome that is neither", {
            let mut r = new_cancel.clone();
            r[2] = Value::Text("undecided".into());
            r
        }),
        ("a time as text", {
            let mut r = new_cancel.clone();
            r[11] = Value::Text("today".into());
            r
        }),
    ];
    for (what, row) in &broken {
        assert!(
            refused_by(db, &insert, row).is_some(),
            "{what} was recorded"
        );
    }
    // The rows above fail for what was changed: unchanged, they are taken.
    db.transaction(|tx| tx.execute(&insert, &new_complete))
        .unwrap();
    assert_eq!(db.dump().unwrap()["verdicts"].len(), 3);
}
