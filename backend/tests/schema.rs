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
    let scheme = TestScheme::new();
    let maker = SigningKey::generate_from_rng(&mut rand::rng());
    let open_bank = || {
        Bank::open(
            &bank_file,
            clock.clone(),
            BankConfig::default(),
            scheme.bank.clone(),
            ADMIN,
        )
        .unwrap()
    };
    let open_arbiter = || {
        Arbiter::open(
            &arbiter_file,
            clock.clone(),
            ArbiterConfig {
                issuer_public_key: *scheme.issuer.verifying_key(),
            },
            scheme.arbiter.clone(),
        )
        .unwrap()
    };
    let arbiter_key = *open_arbiter().public_key();
    let bank = open_bank();
    let open_center = || {
        Center::open(
            &center_file,
            clock.clone(),
            CenterConfig {
                currency: "JPY".into(),
                scheme: scheme.keys.clone(),
                trusted_makers: vec![*maker.verifying_key()],
            },
            scheme.issuer.clone(),
            ADMIN,
        )
        .unwrap()
    };
    let center = open_center();

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
        attestation: Chip::made_by(&maker).attest(&card, &challenge),
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
    let center = open_center();
    assert_eq!(
        (bank.public_key(), center.issuer_public_key()),
        (bank_key, issuer_key)
    );
    assert_eq!(*open_arbiter().public_key(), arbiter_key);
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
    // A unit account's balance moves only with its totals, which only grow.
    for sql in [
        "UPDATE unit_accounts SET balance = -1",
        "UPDATE unit_accounts SET balance = balance + 1",
        "UPDATE unit_accounts SET balance = balance + 1, redeemed = redeemed + 1, loaded = loaded + 1",
        "UPDATE unit_accounts SET balance = balance - 1, redeemed = redeemed - 1",
        "UPDATE unit_accounts SET card_id = zeroblob(32)",
        "DELETE FROM unit_accounts",
    ] {
        assert!(refused_by(center, sql, &[]).is_some(), "{sql}");
    }
    // A total past 2^63 - 1 is refused by the schema itself (a REAL in a STRICT INTEGER
    // column), even when the balance would be right.
    assert!(
        refused_by(
            center,
            "UPDATE unit_accounts SET balance = balance + 9223372036854775807, redeemed = redeemed + 9223372036854775807",
            &[]
        )
        .is_some()
    );
}

#[test]
fn racing_key_generation_ends_with_one_key() {
    // Two bank processes on one database file, both asked for the same new key at once:
    // both generate one, the UNIQUE (currency, amount, epoch) constraint keeps the first.
    let dir = tempfile::tempdir().unwrap();
    let file = path(&dir, "bank.sqlite");
    let clock = Arc::new(ManualClock::new(START));
    let bank_key = SigningKey::generate_from_rng(&mut rand::rng());
    let banks: Vec<Arc<Bank>> = (0..2)
        .map(|_| {
            Arc::new(
                Bank::open(
                    &file,
                    clock.clone(),
                    BankConfig::default(),
                    bank_key.clone(),
                    ADMIN,
                )
                .unwrap(),
            )
        })
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
    (card_id, counter, request, signature, kind, asset, amount, serial, authorisation, day,
     block_list_version)
    VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8, ?9, ?10, ?11)";
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
        "SELECT card_id, counter, request, signature, kind, asset, amount, serial, authorisation, day, block_list_version FROM loads WHERE counter = 0",
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
    // (No USD was ever loaded onto a card: no float, which the trigger refuses first.)
    assert!(refused_by(center, INSERT_UNLOAD, &unload_row(card_id, 1, "USD", 3)).is_some());
    // Invariant 5: cards hold 10 - 3 = 7 JPY in all (the refunded load came back): an unload
    // of 8 would make the float negative.
    assert_eq!(
        row("SELECT amount FROM floats WHERE asset = 'JPY'"),
        vec![Value::Int(7)]
    );
    assert_eq!(
        refused_by(center, INSERT_UNLOAD, &unload_row(card_id, 1, "JPY", 8)),
        Some(Constraint::Check)
    );
    // Nor can the floats be changed or removed by hand... but by the triggers only.
    assert!(refused_by(center, "DELETE FROM floats", &[]).is_some());
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

const VERDICT_COLUMNS: &str = "a, s2, outcome, signature, commitment, responder_id,
    responder_certificate, initiator_id, initiator_certificate, agreement_signature,
    resolve_signature, cancel_signature, day";

fn verdict_row(db: &Database, session: &Session) -> Vec<Value> {
    db.transaction(|tx| {
        tx.query_opt(
            &format!("SELECT {VERDICT_COLUMNS} FROM verdicts WHERE a = ?1 AND s2 = ?2"),
            &[
                Value::Blob(session.a.to_vec()),
                Value::Blob(session.s2.to_vec()),
            ],
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
        SigningKey::generate_from_rng(&mut rand::rng()),
    )
    .unwrap();
    let (a, b, c) = (
        SoftCard::new(&issuer),
        SoftCard::new(&issuer),
        SoftCard::new(&issuer),
    );
    let (completed, cancelled) = (Session::new(&a, &b), Session::new(&a, &b));
    arbiter
        .resolve(&resolve_request(&a, &b, &completed))
        .unwrap();
    arbiter.cancel(&cancel_request(&a, &b, &cancelled)).unwrap();
    let db = arbiter.database();
    let complete = verdict_row(db, &completed);
    let cancel = verdict_row(db, &cancelled);
    assert_eq!(complete[2], Value::Text("complete".into()));
    assert_eq!(cancel[2], Value::Text("cancel".into()));
    let insert = format!(
        "INSERT INTO verdicts ({VERDICT_COLUMNS})
         VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8, ?9, ?10, ?11, ?12, ?13)"
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
            &format!("{insert} ON CONFLICT (a, s2) DO UPDATE SET outcome = excluded.outcome"),
            &second
        ),
        Some(Constraint::Other)
    );
    // A second agreement of the same responder under a decided s2 (a made-up a) is another
    // session: the schema takes it, and the decided one keeps its verdict.
    let mut other_agreement = cancel.clone();
    other_agreement[0] = Value::Blob(vec![0x5A; 32]);
    db.transaction(|tx| tx.execute(&insert, &other_agreement))
        .expect("another session under the same s2");
    let rows = db
        .transaction(|tx| {
            tx.query(
                "SELECT a, outcome FROM verdicts WHERE s2 = ?1",
                &[cancel[1].clone()],
            )
        })
        .unwrap();
    assert_eq!(rows.len(), 2, "both sessions under the s2");
    // Verdicts are never changed or deleted.
    for sql in [
        "UPDATE verdicts SET outcome = 'cancel' WHERE outcome = 'complete'",
        "UPDATE verdicts SET signature = zeroblob(64)",
        "UPDATE verdicts SET day = day + 1",
        "UPDATE verdicts SET a = zeroblob(32)",
        "DELETE FROM verdicts WHERE outcome = 'cancel'",
        "DELETE FROM verdicts",
    ] {
        assert_eq!(refused_by(db, sql, &[]), Some(Constraint::Other), "{sql}");
    }
    assert_eq!(verdict_row(db, &completed), complete);
    assert_eq!(verdict_row(db, &cancelled), cancel);

    // A new session's row must carry the proof its outcome needs.
    let fresh = |row: &[Value]| {
        let mut row = row.to_vec();
        row[1] = Value::Blob(vec![0xEE; 32]);
        row
    };
    let (new_complete, new_cancel) = (fresh(&complete), fresh(&cancel));
    let with = |row: &Vec<Value>, changes: &[(usize, Value)]| {
        let mut r = row.clone();
        for (i, v) in changes {
            r[*i] = v.clone();
        }
        r
    };
    let broken: Vec<(&str, Vec<Value>)> = vec![
        (
            "a COMPLETE without Sa",
            with(&new_complete, &[(9, Value::Null)]),
        ),
        (
            "a COMPLETE without the initiator",
            with(&new_complete, &[(7, Value::Null), (8, Value::Null)]),
        ),
        (
            "a COMPLETE with a cancel request",
            with(&new_complete, &[(11, cancel[11].clone())]),
        ),
        (
            "a COMPLETE between a card and itself",
            with(
                &new_complete,
                &[(7, complete[5].clone()), (8, complete[6].clone())],
            ),
        ),
        (
            "a CANCEL without Sab",
            with(&new_cancel, &[(11, Value::Null)]),
        ),
        (
            "a CANCEL with A's resolve request",
            with(&new_cancel, &[(10, complete[10].clone())]),
        ),
        (
            "a new CANCEL without the initiator",
            with(&new_cancel, &[(7, Value::Null), (8, Value::Null)]),
        ),
        (
            "a responder id that is not its certificate's",
            with(&new_cancel, &[(5, Value::Blob(c.id.to_vec()))]),
        ),
        (
            "an initiator id that is not its certificate's",
            with(&new_complete, &[(7, Value::Blob(vec![0x11; 32]))]),
        ),
        (
            "a commitment of 31 bytes",
            with(&new_cancel, &[(4, Value::Blob(vec![1; 31]))]),
        ),
        (
            "a short arbiter signature",
            with(&new_cancel, &[(3, Value::Blob(vec![1; 63]))]),
        ),
        (
            "an outcome that is neither",
            with(&new_cancel, &[(2, Value::Text("undecided".into()))]),
        ),
        (
            "a time as text",
            with(&new_cancel, &[(12, Value::Text("today".into()))]),
        ),
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
    // The two decided sessions, the other agreement under one of their s2, and this one.
    assert_eq!(db.dump().unwrap()["verdicts"].len(), 4);
}

/// A card certificate in the form before cards were attested (no maker id), 160 bytes.
fn old_certificate(card: &SigningKey) -> Vec<u8> {
    let key = apdu_spec::cert::encode_public_key(card.verifying_key());
    let id = apdu_spec::card_id(&key);
    let mut c = vec![0x7F, 0x21, 0x81, 0x9C, 0x80, 0x20];
    c.extend_from_slice(&id);
    c.extend_from_slice(&[0x81, 0x21]);
    c.extend_from_slice(&key);
    c.extend_from_slice(&[0x82, 0x08, 0, 0, 0, 0, 0, 0, 0, 1]);
    c.extend_from_slice(&[0x83, 0x08, 0, 0, 0, 0, 0xFF, 0, 0, 0]);
    c.extend_from_slice(&[0x5F, 0x37, 0x40]);
    c.extend_from_slice(&[0x33; 64]);
    assert_eq!(c.len(), 160);
    c
}

#[test]
fn version_2_databases_migrate() {
    let dir = tempfile::tempdir().unwrap();
    let (bank_file, center_file, arbiter_file) = (
        path(&dir, "bank.sqlite"),
        path(&dir, "center.sqlite"),
        path(&dir, "arbiter.sqlite"),
    );
    let run = |file: &str,
               role: &str,
               migrations: &[valuecard_backend::db::Migration],
               sql: &str,
               params: &[Value]| {
        let db = Database::open_sqlite(file, role, migrations).unwrap();
        db.transaction(|tx| tx.execute(sql, params)).unwrap();
    };
    // The databases as version 2 of the program left them: each with its own private key.
    run(
        &bank_file,
        "bank",
        &bank::MIGRATIONS[..1],
        "INSERT INTO bank_key (id, private_key) VALUES (1, ?1)",
        &[Value::Blob(vec![0x42; 32])],
    );
    let old = SigningKey::generate_from_rng(&mut rand::rng());
    let key = apdu_spec::cert::encode_public_key(old.verifying_key());
    let id = apdu_spec::card_id(&key);
    let c2 = &center::MIGRATIONS[..2];
    for (sql, params) in [
        (
            "INSERT INTO issuer_key (id, private_key) VALUES (1, ?1)",
            vec![Value::Blob(vec![0x43; 32])],
        ),
        (
            "INSERT INTO cards (card_id, public_key, certificate, registered_day) VALUES (?1, ?2, ?3, 1)",
            vec![
                Value::Blob(id.to_vec()),
                Value::Blob(key.to_vec()),
                Value::Blob(old_certificate(&old)),
            ],
        ),
        (
            "INSERT INTO unit_accounts (card_id, asset, balance) VALUES (?1, 'JPY', 0)",
            vec![Value::Blob(id.to_vec())],
        ),
        (
            "INSERT INTO denomination_keys VALUES (?1, 100, 'JPY', 1, 0, 10, 20, x'00')",
            vec![Value::Blob(vec![0x44; 32])],
        ),
        (
            "INSERT INTO redemptions VALUES (?1, x'01', zeroblob(32), x'02', ?2, ?3, 100, 'JPY', 1)",
            vec![
                Value::Blob(vec![0x45; 32]),
                Value::Blob(id.to_vec()),
                Value::Blob(vec![0x44; 32]),
            ],
        ),
    ] {
        run(&center_file, "center", c2, sql, &params);
    }
    let mut old_load = load_row(id, 0, jpy(60));
    old_load.pop();
    run(
        &center_file,
        "center",
        c2,
        "INSERT INTO loads (card_id, counter, request, signature, kind, asset, amount, serial, authorisation, day)
         VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8, ?9, ?10)",
        &old_load,
    );
    let mut refunded = load_row(id, 1, jpy(10));
    refunded.pop();
    run(
        &center_file,
        "center",
        c2,
        "INSERT INTO loads (card_id, counter, request, signature, kind, asset, amount, serial, authorisation, day)
         VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8, ?9, ?10)",
        &refunded,
    );
    run(
        &center_file,
        "center",
        c2,
        INSERT_CANCELLATION,
        &cancellation_row(id, 1, jpy(10), "refunded"),
    );
    run(
        &center_file,
        "center",
        c2,
        INSERT_UNLOAD,
        &unload_row(id, 0, "JPY", 25),
    );
    let a2 = &arbiter::MIGRATIONS[..2];
    run(
        &arbiter_file,
        "arbiter",
        a2,
        "INSERT INTO arbiter_key (id, private_key) VALUES (1, ?1)",
        &[Value::Blob(vec![0x46; 32])],
    );
    let other = SigningKey::generate_from_rng(&mut rand::rng());
    let other_id = apdu_spec::card_id(&apdu_spec::cert::encode_public_key(other.verifying_key()));
    run(
        &arbiter_file,
        "arbiter",
        a2,
        "INSERT INTO verdicts (s2, a, outcome, signature, responder_id, responder_certificate,
             initiator_id, initiator_certificate, agreement_signature, resolve_signature,
             cancel_signature, day)
         VALUES (?1, ?2, 'cancel', zeroblob(64), ?3, ?4, NULL, NULL, NULL, NULL, zeroblob(64), 1)",
        &[
            Value::Blob(vec![0x47; 32]),
            Value::Blob(vec![0x48; 32]),
            Value::Blob(other_id.to_vec()),
            Value::Blob(old_certificate(&other)),
        ],
    );

    // This version opens them with the keys of a scheme: the private keys are gone.
    let w = TestScheme::new();
    let clock = Arc::new(ManualClock::new(START));
    let bank = Bank::open(
        &bank_file,
        clock.clone(),
        BankConfig::default(),
        w.bank.clone(),
        ADMIN,
    )
    .unwrap();
    let center = Center::open(
        &center_file,
        clock.clone(),
        CenterConfig {
            currency: "JPY".into(),
            scheme: w.keys.clone(),
            trusted_makers: vec![],
        },
        w.issuer.clone(),
        ADMIN,
    )
    .unwrap();
    let arbiter = Arbiter::open(
        &arbiter_file,
        clock,
        ArbiterConfig {
            issuer_public_key: *w.issuer.verifying_key(),
        },
        w.arbiter.clone(),
    )
    .unwrap();
    for (db, old_table) in [
        (bank.database(), "bank_key"),
        (center.database(), "issuer_key"),
        (arbiter.database(), "arbiter_key"),
    ] {
        let dump = db.dump().unwrap();
        assert!(!dump.contains_key(old_table), "{old_table} is still there");
        assert_eq!(dump["role_key"].len(), 1);
    }
    // The totals and the float come from the rows: 100 in, 60 + 10 out, 10 back, 25 back.
    let dump = center.database().dump().unwrap();
    assert_eq!(
        dump["unit_accounts"],
        vec![vec![
            Value::Blob(id.to_vec()),
            Value::Text("JPY".into()),
            Value::Int(100 - 70 + 10 + 25),
            Value::Int(100),
            Value::Int(70),
            Value::Int(10),
            Value::Int(25),
        ]]
    );
    assert_eq!(
        dump["floats"],
        vec![vec![
            Value::Text("JPY".into()),
            Value::Int(60 + 10 - 10 - 25)
        ]]
    );
    // The card of before has no attestation: the center takes nothing from it.
    let err = center.load(&load_order(&old, 2, jpy(1))).unwrap_err();
    assert_eq!(err.code, valuecard_protocol::ErrorCode::UnknownCard);
    assert!(
        err.message.contains("before cards were attested"),
        "{}",
        err.message
    );
    let err = center.unload(&unload_order(&old, 1, 1)).unwrap_err();
    assert_eq!(err.code, valuecard_protocol::ErrorCode::UnknownCard);
    // The staff still see its ledger, and the audit names it.
    let ledger = center
        .ledger(
            Some(ADMIN),
            &LedgerRequest {
                card_id: id,
                proof: None,
            },
        )
        .unwrap();
    assert_eq!(ledger.accounts[0].balance, 65);
    let report =
        valuecard_backend::audit::audit(None, Some(center.database()), Some(arbiter.database()))
            .unwrap();
    let violated: Vec<&str> = report.violations().map(|c| c.name).collect();
    assert_eq!(violated, ["center.attested_cards"], "{}", report.render());
    // The old verdict is kept, under its (a, s2).
    let verdict = arbiter.verdict(&[0x48; 32], &[0x47; 32]).unwrap();
    assert_eq!(
        verdict.verdict.map(|v| v.outcome),
        Some(apdu_spec::exchange::Outcome::Cancel)
    );
    // And the databases are bound to the new keys.
    assert!(matches!(
        Bank::open(
            &bank_file,
            Arc::new(ManualClock::new(START)),
            BankConfig::default(),
            SigningKey::generate_from_rng(&mut rand::rng()),
            ADMIN
        ),
        Err(valuecard_backend::keys::StartError::KeyMismatch { role: "bank", .. })
    ));
}

#[test]
fn a_role_takes_only_the_schemes_key_and_its_databases() {
    let scheme = TestScheme::new();
    let other = TestScheme::new();
    let clock = Arc::new(ManualClock::new(START));
    let config = |scheme: &TestScheme| CenterConfig {
        currency: "JPY".into(),
        scheme: scheme.keys.clone(),
        trusted_makers: vec![],
    };
    // Another scheme's issuer key, or the arbiter's, is not this scheme's issuer.
    for key in [other.issuer.clone(), scheme.arbiter.clone()] {
        match Center::open(":memory:", clock.clone(), config(&scheme), key, ADMIN) {
            Err(valuecard_backend::keys::StartError::NotInScheme { role: "issuer", .. }) => {}
            other => panic!("started: {other:?}"),
        }
    }
    // A center database started with one issuer key does not start with another, even of a
    // scheme that names it.
    let dir = tempfile::tempdir().unwrap();
    let file = path(&dir, "center.sqlite");
    drop(
        Center::open(
            &file,
            clock.clone(),
            config(&scheme),
            scheme.issuer.clone(),
            ADMIN,
        )
        .unwrap(),
    );
    match Center::open(
        &file,
        clock.clone(),
        config(&other),
        other.issuer.clone(),
        ADMIN,
    ) {
        Err(valuecard_backend::keys::StartError::KeyMismatch {
            role: "issuer",
            stored,
            given,
        }) => {
            assert_eq!(
                stored,
                hex::encode(apdu_spec::cert::encode_public_key(
                    scheme.issuer.verifying_key()
                ))
            );
            assert_eq!(
                given,
                hex::encode(apdu_spec::cert::encode_public_key(
                    other.issuer.verifying_key()
                ))
            );
        }
        other => panic!("started: {other:?}"),
    }
    let center = Center::open(&file, clock, config(&scheme), scheme.issuer.clone(), ADMIN).unwrap();
    // The binding is for good.
    assert!(
        center
            .database()
            .transaction(|tx| tx.execute("DELETE FROM role_key", &[]))
            .is_err()
    );
    assert!(
        center
            .database()
            .transaction(|tx| tx.execute("UPDATE role_key SET public_key = public_key", &[]))
            .is_err()
    );
}
