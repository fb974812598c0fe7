//! Funding over HTTP (PROTOCOLS.md, "Funding: bank to center"): the whole flow, retries,
//! concurrency, and every refused request leaving both databases as they were.
#![allow(clippy::unwrap_used)]

mod common;

use std::sync::{Arc, Barrier};

use common::*;
use p256::elliptic_curve::Generate;
use valuecard_backend::clock::DAY;
use valuecard_protocol::ErrorCode;
use valuecard_protocol::api::*;
use valuecard_protocol::keylist::SignedKeyList;
use valuecard_protocol::token::TokenMessage;

#[test]
fn open_deposit_withdraw_redeem_and_balances() {
    let w = World::new(&[256, 32]);
    assert_eq!(w.keys.keys.len(), 2);
    let account = w.open_account(1000);
    assert_eq!(w.account_balance(&account), 1000);
    let (card, card_id) = w.new_card();
    assert_eq!(w.card_balance(&card), 0);

    // 288 = 256 + 32, one token each, as the terminal splits it.
    let big = w.token(&account, &w.key(256), card_id);
    let small = w.token(&account, &w.key(32), card_id);
    assert_eq!(w.account_balance(&account), 1000 - 288);

    for (token, amount) in [(&big, 256), (&small, 32)] {
        let r = w.redeem(&token.redeem).unwrap();
        assert_eq!(
            (r.amount, r.card_id, r.asset.as_str(), r.replayed),
            (amount, card_id, "JPY", false)
        );
        assert_eq!(r.nonce, token.pending.message.nonce);
        assert_eq!(r.key_id, w.key(amount).key_id);
    }
    assert_eq!(w.card_balance(&card), 288);
    assert_eq!(w.account_balance(&account), 712);

    // Invariant 4: bank debits = issued tokens; center credits = redeemed tokens.
    let (bank, center) = w.dumps();
    assert_eq!(bank["withdrawals"].len(), 2);
    assert_eq!(center["redemptions"].len(), 2);
}

#[test]
fn retries_debit_and_credit_exactly_once() {
    let w = World::new(&[32]);
    let key = w.key(32);
    let account = w.open_account(0);

    // Deposit retried: the first answer again, one credit.
    let deposit = DepositRequest {
        account: account.clone(),
        amount: 100,
        reference: "counter-7".into(),
    };
    let first: DepositAnswer = w.post_admin("/bank/v1/deposits", ADMIN, &deposit).unwrap();
    let again: DepositAnswer = w.post_admin("/bank/v1/deposits", ADMIN, &deposit).unwrap();
    assert_eq!((first.balance_after, &again), (100, &first));
    assert_eq!(w.account_balance(&account), 100);
    // Same reference, other content: a conflict, and nothing changes.
    let before = w.dumps();
    w.post_admin::<_, DepositAnswer>(
        "/bank/v1/deposits",
        ADMIN,
        &DepositRequest {
            amount: 99,
            ..deposit.clone()
        },
    )
    .expect_code(ErrorCode::Conflict);
    assert_eq!(w.dumps(), before);

    // Registration retried with a fresh challenge: the same certificate.
    let card = p256::ecdsa::SigningKey::generate_from_rng(&mut rand::rng());
    let chip = w.chip();
    let first = w.register(&w.register_with(&card, &chip)).unwrap();
    assert!(!first.replayed);
    let card_id = first.card_id;
    let again: Registration = w
        .post("/center/v1/cards", &w.register_with(&card, &chip))
        .unwrap();
    assert_eq!(again.certificate, first.certificate);
    assert!(again.replayed);
    assert_eq!(again.card_id, card_id);
    let (_, center) = w.dumps();
    assert_eq!(center["cards"].len(), 1);
    assert_eq!(center["unit_accounts"].len(), 1);

    // Withdrawal retried: the same blind signature, one debit.
    let pending = Pending::new(&key, card_id, 32);
    let request = pending.request(&account, CREDENTIAL);
    let first = w.withdraw(&request).unwrap();
    let retry = w.withdraw(&request).unwrap();
    assert!(!first.replayed && retry.replayed);
    assert_eq!(retry.blind_signature, first.blind_signature);
    assert_eq!(w.account_balance(&account), 68);
    // The same blinded message from another account is a conflict.
    let other = w.open_account(100);
    let before = w.dumps();
    w.withdraw(&WithdrawRequest {
        account: other.clone(),
        ..request.clone()
    })
    .expect_code(ErrorCode::Conflict);
    assert_eq!(w.dumps(), before);

    // Token redeemed twice: the first answer, one credit.
    let token = pending.finalize(&first);
    let first = w.redeem(&token.redeem).unwrap();
    let retry = w.redeem(&token.redeem).unwrap();
    assert!(!first.replayed && retry.replayed);
    assert_eq!(
        Redemption {
            replayed: false,
            ..retry
        },
        first
    );
    assert_eq!(w.card_balance(&card), 32);

    // The same nonce in another validly signed message: a conflict, nothing credited.
    let (_, other_card) = w.new_card();
    let twin = TokenMessage {
        card_id: other_card,
        ..token.pending.message.clone()
    };
    let twin_pending = Pending::with_message(&key, twin);
    let answer = w
        .withdraw(&twin_pending.request(&other, CREDENTIAL))
        .unwrap();
    let twin_token = twin_pending.finalize(&answer);
    let before = w.dumps();
    w.redeem(&twin_token.redeem)
        .expect_code(ErrorCode::Conflict);
    assert_eq!(w.dumps(), before);
    assert_eq!(w.card_balance(&card), 32);

    let (bank, center) = w.dumps();
    assert_eq!(bank["deposits"].len(), 2);
    assert_eq!(bank["withdrawals"].len(), 2);
    assert_eq!(center["redemptions"].len(), 1);
}

#[test]
fn concurrent_redemptions_of_one_token_credit_once() {
    let w = World::new(&[32]);
    let account = w.open_account(32);
    let (card, card_id) = w.new_card();
    let token = w.token(&account, &w.key(32), card_id);

    const N: usize = 32;
    let barrier = Arc::new(Barrier::new(N));
    let url = w.url("/center/v1/redemptions");
    let threads: Vec<_> = (0..N)
        .map(|_| {
            let (barrier, url, body) = (barrier.clone(), url.clone(), token.redeem.clone());
            std::thread::spawn(move || {
                let agent = agent();
                barrier.wait();
                let mut response = agent.post(&url).send_json(&body).unwrap();
                assert_eq!(response.status().as_u16(), 200);
                response.body_mut().read_json::<Redemption>().unwrap()
            })
        })
        .collect();
    let answers: Vec<Redemption> = threads.into_iter().map(|t| t.join().unwrap()).collect();
    assert_eq!(
        answers.iter().filter(|a| !a.replayed).count(),
        1,
        "exactly one first credit"
    );
    for a in &answers {
        assert_eq!(
            Redemption {
                replayed: false,
                ..a.clone()
            },
            Redemption {
                replayed: false,
                ..answers[0].clone()
            }
        );
        assert_eq!((a.amount, a.card_id), (32, card_id));
    }
    assert_eq!(w.card_balance(&card), 32);
    assert_eq!(w.dumps().1["redemptions"].len(), 1);
}

#[test]
fn refused_requests_change_nothing() {
    let w = World::new(&[256, 32]);
    let (k256, k32) = (w.key(256), w.key(32));
    let account = w.open_account(100);
    let (card, card_id) = w.new_card();
    let pending = Pending::new(&k32, card_id, 32);

    // Bank.
    refused(&w, ErrorCode::UnknownAccount, || {
        w.withdraw(&pending.request("999999999999", CREDENTIAL))
    });
    refused(&w, ErrorCode::UnknownAccount, || {
        w.withdraw(&pending.request("not-a-number", CREDENTIAL))
    });
    refused(&w, ErrorCode::BadCredential, || {
        w.withdraw(&pending.request(&account, "wrong horse battery"))
    });
    refused(&w, ErrorCode::InsufficientFunds, || {
        w.withdraw(&Pending::new(&k256, card_id, 256).request(&account, CREDENTIAL))
    });
    refused(&w, ErrorCode::UnknownKey, || {
        w.withdraw(&WithdrawRequest {
            key_id: [7; 32],
            ..pending.request(&account, CREDENTIAL)
        })
    });
    refused(&w, ErrorCode::InvalidField, || {
        w.withdraw(&WithdrawRequest {
            blinded_message: vec![1; 255],
            ..pending.request(&account, CREDENTIAL)
        })
    });
    refused(&w, ErrorCode::BadCredential, || {
        w.post::<_, AccountBalance>(
            "/bank/v1/balance",
            &AccountBalanceRequest {
                account: account.clone(),
                credential: "wrong horse battery".into(),
            },
        )
    });
    refused(&w, ErrorCode::AdminUnauthorized, || {
        w.post_admin::<_, AccountOpened>(
            "/bank/v1/accounts",
            "wrong",
            &OpenAccountRequest {
                credential: CREDENTIAL.into(),
            },
        )
    });
    refused(&w, ErrorCode::AdminUnauthorized, || {
        w.post::<_, DepositAnswer>(
            "/bank/v1/deposits",
            &DepositRequest {
                account: account.clone(),
                amount: 1,
                reference: "r".into(),
            },
        )
    });
    refused(&w, ErrorCode::InvalidField, || {
        w.post_admin::<_, AccountOpened>(
            "/bank/v1/accounts",
            ADMIN,
            &OpenAccountRequest {
                credential: "short".into(),
            },
        )
    });
    refused(&w, ErrorCode::UnknownAccount, || {
        w.post_admin::<_, DepositAnswer>(
            "/bank/v1/deposits",
            ADMIN,
            &DepositRequest {
                account: "999999999999".into(),
                amount: 1,
                reference: "r".into(),
            },
        )
    });
    refused(&w, ErrorCode::InvalidField, || {
        w.post_admin::<_, DepositAnswer>(
            "/bank/v1/deposits",
            ADMIN,
            &DepositRequest {
                account: account.clone(),
                amount: 0,
                reference: "r".into(),
            },
        )
    });
    refused(&w, ErrorCode::UnknownKey, || {
        w.get::<SignedKeyList>("/bank/v1/keys?amounts=3")
    });
    refused(&w, ErrorCode::InvalidField, || {
        w.get::<SignedKeyList>("/bank/v1/keys?amounts=x")
    });

    // Center: tokens.
    let token = w.token(&account, &k32, card_id);
    let redeem = &token.redeem;
    let mut unknown_key = TokenMessage::decode(&redeem.message).unwrap();
    unknown_key.key_id = [9; 32];
    refused(&w, ErrorCode::UnknownKey, || {
        w.redeem(&RedeemRequest {
            message: unknown_key.encode(),
            ..redeem.clone()
        })
    });
    refused(&w, ErrorCode::InvalidField, || {
        w.redeem(&RedeemRequest {
            message: redeem.message[1..].to_vec(),
            ..redeem.clone()
        })
    });
    let mut forged = redeem.signature.clone();
    forged[100] ^= 1;
    refused(&w, ErrorCode::BadSignature, || {
        w.redeem(&RedeemRequest {
            signature: forged,
            ..redeem.clone()
        })
    });
    refused(&w, ErrorCode::BadSignature, || {
        w.redeem(&RedeemRequest {
            randomizer: [0; 32],
            ..redeem.clone()
        })
    });
    // A valid signature, but for another token message (same key).
    let other = w.token(&account, &k32, card_id);
    refused(&w, ErrorCode::BadSignature, || {
        w.redeem(&RedeemRequest {
            signature: other.redeem.signature.clone(),
            ..redeem.clone()
        })
    });
    // A token for a card the center does not know.
    let stranger = w.token(&account, &k32, [0x5A; 32]);
    refused(&w, ErrorCode::UnknownCard, || w.redeem(&stranger.redeem));
    // A message that says 32 under the 256 key: the bank signs blindly, the center refuses.
    let rich = w.open_account(256);
    let mismatch = Pending::new(&k256, card_id, 32);
    let answer = w.withdraw(&mismatch.request(&rich, CREDENTIAL)).unwrap();
    let mismatch = mismatch.finalize(&answer);
    refused(&w, ErrorCode::AmountMismatch, || w.redeem(&mismatch.redeem));

    // Center: cards and challenges.
    let newcomer = p256::ecdsa::SigningKey::generate_from_rng(&mut rand::rng());
    let mut bad = w.register_request(&newcomer);
    bad.proof.signature[5] ^= 1;
    refused(&w, ErrorCode::BadSignature, || {
        w.post::<_, Registration>("/center/v1/cards", &bad)
    });
    let mut not_a_point = w.register_request(&newcomer);
    not_a_point.public_key = [0xFF; 33];
    refused(&w, ErrorCode::InvalidField, || {
        w.post::<_, Registration>("/center/v1/cards", &not_a_point)
    });
    let used = w.register_request(&newcomer);
    let _: Registration = w.post("/center/v1/cards", &used).unwrap();
    refused(&w, ErrorCode::BadChallenge, || {
        w.post::<_, Registration>("/center/v1/cards", &used)
    });
    let unknown = RegisterRequest {
        proof: CardProof {
            challenge: [3; 32],
            ..used.proof.clone()
        },
        ..used.clone()
    };
    refused(&w, ErrorCode::BadChallenge, || {
        w.post::<_, Registration>("/center/v1/cards", &unknown)
    });
    // A register challenge does not open a balance.
    let wrong_purpose = w.challenge(ChallengePurpose::Register);
    refused(&w, ErrorCode::BadChallenge, || {
        w.post::<_, CardBalance>(
            "/center/v1/balance",
            &CardBalanceRequest {
                card_id,
                proof: CardProof {
                    challenge: wrong_purpose,
                    signature: apdu_spec::auth::sign(&card, &wrong_purpose).to_vec(),
                },
            },
        )
    });
    refused(&w, ErrorCode::UnknownCard, || {
        w.post::<_, CardBalance>(
            "/center/v1/balance",
            &CardBalanceRequest {
                card_id: [1; 32],
                proof: CardProof {
                    challenge: wrong_purpose,
                    signature: vec![0; 64],
                },
            },
        )
    });
    // A key list signed by another bank.
    let other_bank = p256::ecdsa::SigningKey::generate_from_rng(&mut rand::rng());
    let foreign = SignedKeyList::sign(&w.keys, &other_bank).expect("signs");
    refused(&w, ErrorCode::BadSignature, || {
        w.post::<_, KeysImported>("/center/v1/bank-keys", &foreign)
    });

    // Transport.
    refused(&w, ErrorCode::MalformedRequest, || {
        w.raw(
            "POST",
            "/bank/v1/withdrawals",
            Some("application/json"),
            b"{not json",
        )
    });
    refused(&w, ErrorCode::MalformedRequest, || {
        w.raw(
            "POST",
            "/center/v1/redemptions",
            Some("application/json"),
            b"{\"message\":\"zz\"}",
        )
    });
    refused(&w, ErrorCode::MalformedRequest, || {
        w.raw("POST", "/center/v1/redemptions", Some("text/plain"), b"{}")
    });
    let mut huge = b"{\"message\":\"".to_vec();
    huge.resize(70 * 1024, b'a');
    huge.extend_from_slice(b"\"}");
    refused(&w, ErrorCode::BodyTooLarge, || {
        w.raw(
            "POST",
            "/center/v1/redemptions",
            Some("application/json"),
            &huge,
        )
    });
    refused(&w, ErrorCode::NotFound, || {
        w.raw("GET", "/center/v2/nothing", None, b"")
    });
    refused(&w, ErrorCode::NotFound, || {
        w.raw("POST", "/withdrawals", Some("application/json"), b"{}")
    });
    refused(&w, ErrorCode::MethodNotAllowed, || {
        w.raw("GET", "/bank/v1/withdrawals", None, b"")
    });
    refused(&w, ErrorCode::MethodNotAllowed, || {
        w.raw("PUT", "/center/v1/info", None, b"")
    });

    // And the good token still redeems afterwards.
    assert_eq!(w.redeem(redeem).unwrap().amount, 32);
}

#[test]
fn keys_are_refused_outside_their_windows() {
    let w = World::new(&[32]);
    let key = w.key(32);
    assert_eq!(key.valid_from % (30 * DAY), 0);
    assert_eq!(key.withdraw_until, key.valid_from + 30 * DAY - 1);
    assert_eq!(key.redeem_until, key.withdraw_until + 365 * DAY);
    let account = w.open_account(1000);
    let (card, card_id) = w.new_card();
    let kept = w.token(&account, &key, card_id);
    let late = Pending::new(&key, card_id, 32);
    let journaled = Pending::new(&key, card_id, 32);
    let journaled_answer = w
        .withdraw(&journaled.request(&account, CREDENTIAL))
        .unwrap();

    // Past the withdrawal window: no more signatures with this key...
    w.clock.set(key.withdraw_until + 1);
    refused(&w, ErrorCode::KeyExpired, || {
        w.withdraw(&late.request(&account, CREDENTIAL))
    });
    // ...but a retry of a withdrawal made in time still gets its first answer.
    let retry = w
        .withdraw(&journaled.request(&account, CREDENTIAL))
        .unwrap();
    assert!(retry.replayed);
    assert_eq!(retry.blind_signature, journaled_answer.blind_signature);
    // Tokens signed in time redeem during the redemption period.
    assert!(!w.redeem(&kept.redeem).unwrap().replayed);

    // Past the redemption window: refused, nothing credited.
    let journaled = journaled.finalize(&journaled_answer);
    w.clock.set(key.redeem_until + 1);
    refused(&w, ErrorCode::KeyExpired, || w.redeem(&journaled.redeem));
    // A token redeemed in time is still answered as a retry.
    assert!(w.redeem(&kept.redeem).unwrap().replayed);
    assert_eq!(w.card_balance(&card), 32);
    assert_eq!(w.account_balance(&account), 1000 - 64);

    // The expired key drops out of the list; the new epoch gets its own key.
    let list = w.fetch_keys(&[32]);
    assert_eq!(list.keys.len(), 1);
    assert_ne!(list.keys[0].key_id, key.key_id);
    assert!(list.keys[0].epoch > key.epoch);
}

#[test]
fn in_process_calls_check_the_admin_token_too() {
    let w = World::new(&[]);
    let open = OpenAccountRequest {
        credential: CREDENTIAL.into(),
    };
    assert_eq!(
        w.bank.open_account(None, &open).unwrap_err().code,
        ErrorCode::AdminUnauthorized
    );
    assert_eq!(
        w.bank.open_account(Some("nope"), &open).unwrap_err().code,
        ErrorCode::AdminUnauthorized
    );
    let opened = w.bank.open_account(Some(ADMIN), &open).unwrap();
    assert_eq!(opened.account.len(), 12);
    assert!(opened.account.bytes().all(|b| b.is_ascii_digit()));
    // The credential is stored only as an Argon2id hash.
    let (bank, _) = w.dumps();
    let row = &bank["accounts"][0];
    let texts: Vec<String> = row
        .iter()
        .filter_map(|v| match v {
            valuecard_backend::db::Value::Text(t) => Some(t.clone()),
            _ => None,
        })
        .collect();
    assert!(texts.iter().any(|t| t.starts_with("$argon2id$")));
    assert!(!texts.iter().any(|t| t.contains(CREDENTIAL)));
}
