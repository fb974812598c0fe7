//! What the bank and the center were told, from the relay's record: side by side, and
//! checked byte for byte to share nothing but the published key data.
//!
//! A party's "values" are the strings of every request it got and every answer it gave
//! (an error answer is its own words and carries none of the user's data): hex strings as
//! the bytes they encode, anything else as its text. Two parties share something when a run
//! of [`RUN`] bytes of one party's value appears in one of the other's, which catches a
//! value copied whole or embedded in another (the card id inside a token message, say).
//! Runs found in the published key data (the bank's key list, the center's and the
//! arbiter's public keys) are allowed: everyone may know them.

use std::collections::{HashMap, HashSet};

use serde_json::Value;
use valuecard_protocol::api::{Redemption, WithdrawAnswer, WithdrawRequest};

use super::relay::Message;
use crate::cmd::date;

/// The shortest shared run that counts: 8 bytes of a random value are alike by chance with
/// odds of 2^-64 per pair, and public words such as "JPY" are shorter.
pub const RUN: usize = 8;

/// The routes whose answers are published to anyone: key lists and public keys.
const PUBLISHED: [&str; 3] = ["/bank/v1/keys", "/center/v1/info", "/arbiter/v1/info"];

/// One value, in the forms it may take: the bytes hex stands for (keys, ids, messages,
/// signatures), and text; digits are both (an account number is no hex, "0001" may be).
type Forms = Vec<Vec<u8>>;

fn string_bytes(text: &str) -> Forms {
    let digits = text.bytes().all(|b| b.is_ascii_digit());
    match hex::decode(text) {
        Ok(bytes) if digits => vec![text.as_bytes().to_vec(), bytes],
        Ok(bytes) => vec![bytes],
        Err(_) => vec![text.as_bytes().to_vec()],
    }
}

fn collect(value: &Value, out: &mut Vec<Forms>) {
    match value {
        // A JSON document inside a string (the bank's signed key list): its own values.
        Value::String(s) if s.starts_with(['{', '[']) => match serde_json::from_str(s) {
            Ok(inner) => collect(&inner, out),
            Err(_) => out.push(string_bytes(s)),
        },
        Value::String(s) => out.push(string_bytes(s)),
        Value::Array(items) => items.iter().for_each(|v| collect(v, out)),
        Value::Object(map) => map.values().for_each(|v| collect(v, out)),
        _ => {}
    }
}

fn body_values(body: &[u8], out: &mut Vec<Forms>) {
    match serde_json::from_slice::<Value>(body) {
        Ok(value) => collect(&value, out),
        Err(_) if !body.is_empty() => out.push(vec![body.to_vec()]),
        Err(_) => {}
    }
}

/// The values one message carried: the segments of its path after the version (e.g. the
/// a and s2 of `/arbiter/v1/verdicts/{a}/{s2}`) and query, its request, and its answer unless it is an
/// error.
pub fn values(message: &Message) -> Vec<Forms> {
    let mut out = Vec::new();
    for part in message
        .target
        .split(['/', '?', '&', '=', ','])
        .filter(|p| !p.is_empty())
        .skip(3)
    {
        out.push(string_bytes(part));
    }
    body_values(&message.request, &mut out);
    if message.ok() {
        body_values(&message.answer, &mut out);
    }
    out
}

/// A run of bytes that two parties' messages share.
#[derive(Debug)]
pub struct Shared {
    pub run: Vec<u8>,
    /// The two messages, as `METHOD /route`.
    pub left: String,
    pub right: String,
}

/// The outcome of [`compare`].
#[derive(Debug)]
pub struct Comparison {
    pub left_values: usize,
    pub right_values: usize,
    /// At most a few, one per pair of messages.
    pub shared: Vec<Shared>,
}

fn describe(m: &Message) -> String {
    format!("{} {}", m.method, m.route())
}

fn windows(value: &[u8]) -> impl Iterator<Item = [u8; RUN]> + '_ {
    value
        .windows(RUN)
        .map(|w| <[u8; RUN]>::try_from(w).unwrap_or([0; RUN]))
}

/// The runs of the left party's values found in the right party's, other than published
/// ones. `published` may hold any messages: the answers of the published routes are taken.
pub fn compare(left: &[&Message], right: &[&Message], published: &[&Message]) -> Comparison {
    let public: HashSet<[u8; RUN]> = published
        .iter()
        .filter(|m| m.ok() && PUBLISHED.contains(&m.route()))
        .flat_map(|m| {
            let mut out = Vec::new();
            body_values(&m.answer, &mut out);
            out
        })
        .flatten()
        .flat_map(|form| windows(&form).collect::<Vec<_>>())
        .collect();
    let mut right_values = 0;
    let mut seen: HashMap<[u8; RUN], usize> = HashMap::new();
    for (i, m) in right.iter().enumerate() {
        for value in values(m) {
            right_values += 1;
            for w in value.iter().flat_map(|form| windows(form)) {
                if !public.contains(&w) {
                    seen.entry(w).or_insert(i);
                }
            }
        }
    }
    let mut left_values = 0;
    let mut pairs = HashSet::new();
    let mut shared = Vec::new();
    for (i, m) in left.iter().enumerate() {
        for value in values(m) {
            left_values += 1;
            for w in value.iter().flat_map(|form| windows(form)) {
                let Some(&j) = seen.get(&w) else { continue };
                if !public.contains(&w) && pairs.insert((i, j)) && shared.len() < 5 {
                    shared.push(Shared {
                        run: w.to_vec(),
                        left: describe(m),
                        right: describe(right[j]),
                    });
                }
            }
        }
    }
    Comparison {
        left_values,
        right_values,
        shared,
    }
}

/// One blind signature, as the bank saw it.
pub struct BankRow {
    pub at: u64,
    pub account: String,
    pub amount: u64,
    pub blinded: Vec<u8>,
}

/// One redeemed token, as the center saw it.
pub struct CenterRow {
    pub at: u64,
    pub card_id: [u8; 32],
    pub amount: u64,
    pub nonce: [u8; 32],
}

/// The bank's withdrawals among `messages` (a repeat of one is left out).
pub fn bank_rows(messages: &[Message]) -> Vec<BankRow> {
    let mut rows: Vec<BankRow> = messages
        .iter()
        .filter(|m| m.ok() && m.method == "POST" && m.route() == "/bank/v1/withdrawals")
        .filter_map(|m| {
            let request: WithdrawRequest = serde_json::from_slice(&m.request).ok()?;
            let answer: WithdrawAnswer = serde_json::from_slice(&m.answer).ok()?;
            (!answer.replayed).then_some(BankRow {
                at: m.at,
                account: request.account,
                amount: answer.amount,
                blinded: request.blinded_message,
            })
        })
        .collect();
    rows.sort_by_key(|r| std::cmp::Reverse(r.amount));
    rows
}

/// The center's redemptions among `messages` (a repeat of one is left out).
pub fn center_rows(messages: &[Message]) -> Vec<CenterRow> {
    let mut rows: Vec<CenterRow> = messages
        .iter()
        .filter(|m| m.ok() && m.method == "POST" && m.route() == "/center/v1/redemptions")
        .filter_map(|m| {
            let answer: Redemption = serde_json::from_slice(&m.answer).ok()?;
            (!answer.replayed).then_some(CenterRow {
                at: m.at,
                card_id: answer.card_id,
                amount: answer.amount,
                nonce: answer.nonce,
            })
        })
        .collect();
    rows.sort_by_key(|r| std::cmp::Reverse(r.amount));
    rows
}

/// The time of day of a Unix time, UTC.
pub fn time_of_day(unix: u64) -> String {
    let s = unix % 86_400;
    format!("{:02}:{:02}:{:02}", s / 3600, s / 60 % 60, s % 60)
}

/// The first bytes of a value in hex, for people.
pub fn short(bytes: &[u8]) -> String {
    format!("{}…", hex::encode_upper(&bytes[..bytes.len().min(4)]))
}

/// Two columns: what the bank was told, what the center was told, one token a line. The
/// rows are sorted by amount on both sides: nothing else could pair them.
pub fn side_by_side(bank: &[BankRow], center: &[CenterRow], currency: &str) -> Vec<String> {
    const WIDTH: usize = 40;
    let mut left = vec!["the bank was told (UTC)".to_string()];
    let mut accounts: Vec<&str> = bank.iter().map(|r| r.account.as_str()).collect();
    accounts.dedup();
    left.push(format!("account {}", accounts.join(", ")));
    left.extend(bank.iter().map(|r| {
        format!(
            "{}  {:>3} {currency}  blinded {}",
            time_of_day(r.at),
            r.amount,
            short(&r.blinded)
        )
    }));
    let mut right = vec!["the center was told (it keeps the day)".to_string()];
    let mut cards: Vec<String> = center.iter().map(|r| short(&r.card_id)).collect();
    cards.dedup();
    right.push(format!("card {}", cards.join(", ")));
    right.extend(center.iter().map(|r| {
        format!(
            "{}  {:>3} {currency}  nonce {}",
            date(r.at),
            r.amount,
            short(&r.nonce)
        )
    }));
    (0..left.len().max(right.len()))
        .map(|i| {
            let l = left.get(i).map_or("", String::as_str);
            let r = right.get(i).map_or("", String::as_str);
            let pad = WIDTH.saturating_sub(l.chars().count());
            format!("  {l}{}  {r}", " ".repeat(pad))
                .trim_end()
                .to_string()
        })
        .collect()
}

#[cfg(test)]
mod tests {
    use serde_json::json;

    use super::*;

    fn message(target: &str, request: Value, answer: Value) -> Message {
        Message {
            at: 0,
            method: "POST".into(),
            target: target.into(),
            request: request.to_string().into_bytes(),
            status: 200,
            answer: answer.to_string().into_bytes(),
        }
    }

    #[test]
    fn finds_a_value_of_one_party_inside_the_others() {
        let card_id = "C718A5C29526264C6818DDBA72F44C67891705E847BB1728C10D84BC4C14F0CB";
        let key_id = "11".repeat(32);
        let bank = message(
            "/bank/v1/withdrawals",
            json!({"account": "550096666732", "key_id": key_id, "blinded_message": "AB".repeat(40)}),
            json!({"amount": 256, "blind_signature": "CD".repeat(40)}),
        );
        // The token message holds the card id and the key id: the key id is published.
        let token = format!("76{}{}{}0100", "EE".repeat(32), card_id, key_id);
        let center = message(
            "/center/v1/redemptions",
            json!({"message": token}),
            json!({"card_id": card_id, "amount": 256, "asset": "JPY"}),
        );
        let keys = Message {
            method: "GET".into(),
            ..message(
                "/bank/v1/keys?amounts=256",
                json!(null),
                json!({"keys": [{"key_id": key_id}]}),
            )
        };
        let published = [&keys];
        let clean = compare(&[&bank], &[&center], &published);
        assert!(clean.shared.is_empty(), "{clean:?}");
        assert_eq!((clean.left_values, clean.right_values), (4, 3));
        // Without the key list the key id counts as shared.
        assert_eq!(compare(&[&bank], &[&center], &[]).shared.len(), 1);

        // A center that learnt the account, even inside another value, is caught.
        let leaky = message(
            "/center/v1/redemptions",
            json!({"note": "from 550096666732 today"}),
            json!({}),
        );
        let found = compare(&[&bank], &[&leaky], &published);
        assert_eq!(found.shared.len(), 1);
        assert_eq!(found.shared[0].left, "POST /bank/v1/withdrawals");
        assert_eq!(found.shared[0].run, b"55009666");
        // And the card id in a path, in either direction.
        let verdicts = Message {
            method: "GET".into(),
            ..message(
                &format!("/arbiter/v1/verdicts/{card_id}"),
                json!(null),
                json!({}),
            )
        };
        assert_eq!(compare(&[&center], &[&verdicts], &[]).shared.len(), 1);
    }

    #[test]
    fn error_answers_are_not_values() {
        let mut refused = message(
            "/bank/v1/withdrawals",
            json!({}),
            json!({"error": {"message": "x".repeat(20)}}),
        );
        refused.status = 409;
        assert!(values(&refused).is_empty());
        assert_eq!(string_bytes("0A0b"), [vec![0x0A, 0x0B]]);
        assert_eq!(string_bytes("1234"), [b"1234".to_vec(), vec![0x12, 0x34]]);
        assert_eq!(string_bytes("123"), [b"123"]);
        assert_eq!(string_bytes("JPY"), [b"JPY"]);
    }

    #[test]
    fn columns_line_up() {
        let bank = [BankRow {
            at: 86_399,
            account: "550096666732".into(),
            amount: 4,
            blinded: vec![0xAB; 256],
        }];
        let center = [CenterRow {
            at: 0,
            card_id: [0xC7; 32],
            amount: 4,
            nonce: [0x9B; 32],
        }];
        let lines = side_by_side(&bank, &center, "JPY");
        assert_eq!(
            lines,
            [
                "  the bank was told (UTC)                   the center was told (it keeps the day)",
                "  account 550096666732                      card C7C7C7C7…",
                "  23:59:59    4 JPY  blinded ABABABAB…      1970-01-01    4 JPY  nonce 9B9B9B9B…",
            ]
        );
    }
}
