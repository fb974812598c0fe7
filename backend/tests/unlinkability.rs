//! Invariant 5 (PROTOCOLS.md): nothing the bank stores equals or contains anything the
//! center stores, other than the public key data (key id, SPKI, amount, and the key's
//! published epoch, validity times and currency).
//!
//! Every value of every column of every table of both databases is compared: as bytes, as
//! hex text and as decimal text, in both directions, for values of 8 bytes or more; and
//! integers of 2^20 or more for equality. The same checker is shown to catch a bank that
//! stored the token message and a center that stored the blinded message.
#![allow(clippy::unwrap_used)]

mod common;

use std::collections::BTreeSet;

use common::*;
use valuecard_backend::db::{Dump, Value};
use valuecard_protocol::api::TicketIssueRequest;
use valuecard_protocol::keylist::KeyList;

const MIN_LEN: usize = 8;
const MIN_INT: i64 = 1 << 20;

/// The values both sides may hold: the bank's published key list.
fn allowed(list: &KeyList) -> BTreeSet<Value> {
    let mut allowed = BTreeSet::new();
    for k in &list.keys {
        allowed.insert(Value::Blob(k.key_id.to_vec()));
        allowed.insert(Value::Blob(k.public_key.clone()));
        allowed.insert(Value::Text(k.currency.clone()));
        for n in [
            k.amount,
            k.epoch,
            k.valid_from,
            k.withdraw_until,
            k.redeem_until,
        ] {
            allowed.insert(Value::Int(n as i64));
        }
    }
    allowed
}

/// The byte strings a value could be found as inside another.
fn needles(v: &Value) -> Vec<Vec<u8>> {
    let mut out = Vec::new();
    match v {
        Value::Null => {}
        Value::Int(i) => {
            if *i >= MIN_INT {
                out.push(i.to_string().into_bytes());
                out.push(i.to_be_bytes().to_vec());
                out.push(i.to_le_bytes().to_vec());
            }
        }
        Value::Text(t) => {
            out.push(t.as_bytes().to_vec());
            if let Ok(decoded) = hex::decode(t) {
                out.push(decoded);
            }
        }
        Value::Blob(b) => {
            out.push(b.clone());
            out.push(hex::encode(b).into_bytes());
            out.push(hex::encode_upper(b).into_bytes());
        }
    }
    out.retain(|n| n.len() >= MIN_LEN);
    out
}

/// The byte strings a value is stored as.
fn haystacks(v: &Value) -> Vec<Vec<u8>> {
    match v {
        Value::Null => vec![],
        Value::Int(i) => vec![i.to_string().into_bytes(), i.to_be_bytes().to_vec()],
        Value::Text(t) => vec![t.as_bytes().to_vec()],
        Value::Blob(b) => vec![b.clone(), hex::encode(b).into_bytes()],
    }
}

fn values(dump: &Dump) -> Vec<(String, Value)> {
    let mut out = Vec::new();
    for (table, rows) in dump {
        for row in rows {
            for (col, v) in row.iter().enumerate() {
                out.push((format!("{table}[{col}]"), v.clone()));
            }
        }
    }
    out
}

fn contains(hay: &[u8], needle: &[u8]) -> bool {
    hay.len() >= needle.len() && hay.windows(needle.len()).any(|w| w == needle)
}

/// Every place where a value of `from` (not an allowed one) shows up in `into`.
fn found_in(from: &Dump, into: &Dump, allowed: &BTreeSet<Value>) -> Vec<String> {
    let targets = values(into);
    let mut hits = Vec::new();
    for (place, v) in values(from) {
        if allowed.contains(&v) {
            continue;
        }
        if let Value::Int(i) = v
            && i >= MIN_INT
        {
            for (other, w) in &targets {
                if *w == Value::Int(i) {
                    hits.push(format!("integer {i} of {place} equals {other}"));
                }
            }
        }
        for needle in needles(&v) {
            for (other, w) in &targets {
                if haystacks(w).iter().any(|h| contains(h, &needle)) {
                    hits.push(format!("{place} ({v:?}) is in {other}"));
                }
            }
        }
    }
    hits.sort();
    hits.dedup();
    hits
}

fn shared(bank: &Dump, center: &Dump, allowed: &BTreeSet<Value>) -> Vec<String> {
    let mut hits = found_in(center, bank, allowed);
    hits.extend(found_in(bank, center, allowed));
    hits
}

#[test]
fn bank_and_center_share_nothing_but_the_public_keys() {
    let w = World::new(&[16, 8]);
    let accounts: Vec<String> = (0..3).map(|_| w.open_account(200)).collect();
    let cards: Vec<_> = (0..3).map(|_| w.new_card()).collect();
    let mut tokens = Vec::new();
    for (i, account) in accounts.iter().enumerate() {
        for (j, (_, card_id)) in cards.iter().enumerate() {
            let amount = if (i + j) % 2 == 0 { 16 } else { 8 };
            tokens.push(w.token(account, &w.key(amount), *card_id));
            w.clock.advance(7);
        }
    }
    // The user chooses a delay between withdrawal and redemption.
    w.clock.advance(3 * 3600 + 17);
    tokens.reverse();
    for token in &tokens {
        assert!(!w.redeem(&token.redeem).unwrap().replayed);
        w.clock.advance(11);
    }
    let total: u64 = cards.iter().map(|(card, _)| w.card_balance(card)).sum();
    let debited: u64 = accounts.iter().map(|a| 200 - w.account_balance(a)).sum();
    assert_eq!(total, debited);

    // Units between center and card fill the center's other tables: a load, a load
    // cancelled after it was authorised and one before, an unload, and a ticket loaded.
    for (i, (card, card_id)) in cards.iter().enumerate() {
        w.load(&load_order(card, 0, jpy(5))).unwrap();
        let refunded = load_order(card, 1, jpy(3));
        w.load(&refunded).unwrap();
        w.cancel(&cancellation(card, &refunded.request)).unwrap();
        w.cancel(&cancellation(card, &load_order(card, 2, jpy(1)).request))
            .unwrap();
        w.unload(&unload_order(card, 0, 4)).unwrap();
        let issued = w
            .issue_ticket(
                ADMIN,
                &TicketIssueRequest {
                    card_id: *card_id,
                    asset: "CONCERT".into(),
                    serial: None,
                },
            )
            .unwrap();
        w.load(&load_order(card, 3, ticket("CONCERT", &issued.serial)))
            .unwrap();
        w.clock.advance(13 + i as u64);
    }
    let after: u64 = cards.iter().map(|(card, _)| w.card_balance(card)).sum();
    assert_eq!(after, total - 3);

    let (bank, center) = w.dumps();
    assert_eq!(bank["withdrawals"].len(), 9);
    assert_eq!(center["redemptions"].len(), 9);
    for (table, rows) in [
        ("loads", 9),
        ("load_cancellations", 6),
        ("unloads", 3),
        ("tickets", 3),
    ] {
        assert_eq!(center[table].len(), rows, "{table}");
    }
    assert!(
        center["challenges"].is_empty(),
        "used challenges are deleted"
    );
    let allowed = allowed(&w.keys);
    let hits = shared(&bank, &center, &allowed);
    assert!(
        hits.is_empty(),
        "the bank and the center share data:\n{}",
        hits.join("\n")
    );

    // The center keeps no time finer than a day: apart from the keys' published times, it
    // holds no integer as large as a Unix time (a redemption time to the second could be
    // matched with the bank's withdrawal time even when the two are not equal).
    let times: Vec<_> = values(&center)
        .into_iter()
        .filter(|(_, v)| matches!(v, Value::Int(i) if *i >= MIN_INT) && !allowed.contains(v))
        .collect();
    assert!(times.is_empty(), "the center stores times: {times:?}");

    // The checker is not blind: it catches each of these leaks.
    let token = &tokens[0];
    let leak = |table: &str, into_bank: bool, v: Value| {
        let (mut bank, mut center) = (bank.clone(), center.clone());
        let target = if into_bank { &mut bank } else { &mut center };
        target
            .entry(table.into())
            .or_default()
            .push(vec![v.clone()]);
        let hits = shared(&bank, &center, &allowed);
        assert!(
            !hits.is_empty(),
            "a leak of {v:?} into {table} went unnoticed"
        );
    };
    leak(
        "withdrawals",
        true,
        Value::Blob(token.redeem.message.clone()),
    );
    leak(
        "withdrawals",
        true,
        Value::Blob(token.redeem.signature.clone()),
    );
    leak(
        "withdrawals",
        true,
        Value::Text(hex::encode(token.pending.message.card_id)),
    );
    leak(
        "withdrawals",
        true,
        Value::Blob([b"nonce:".as_slice(), &token.pending.message.nonce].concat()),
    );
    leak(
        "redemptions",
        false,
        Value::Blob(token.pending.blinded.blinded_message.clone()),
    );
    leak(
        "redemptions",
        false,
        Value::Blob(token.blind_signature.clone()),
    );
    leak("redemptions", false, Value::Text(accounts[0].clone()));
    // A redemption time to the second equal to the bank's withdrawal time.
    let withdrawn_at = bank["withdrawals"][0].iter().find_map(|v| match v {
        Value::Int(i) if *i > MIN_INT => Some(*i),
        _ => None,
    });
    leak("redemptions", false, Value::Int(withdrawn_at.unwrap()));
}
