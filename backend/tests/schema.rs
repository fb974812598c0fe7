//! The databases: migrations are idempotent, a file database re-opens as it was, and the
//! schema itself refuses double debits and credits and overdrafts, even from raw SQL that
//! bypasses the roles' code.
#![allow(clippy::unwrap_used)]

mod common;

use std::sync::Arc;

use common::*;
use p256::ecdsa::SigningKey;
use p256::elliptic_curve::Generate;
use valuecard_backend::arbiter::{self, Arbiter};
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
            assert_eq!(
                before["schema_migrations"],
                vec![vec![
                    Value::Int(1),
                    Value::Text(format!("{role}/0001_init"))
                ]]
            );
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
    let arbiter_key = *Arbiter::open(&arbiter_file).unwrap().public_key();
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
        *Arbiter::open(&arbiter_file).unwrap().public_key(),
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
