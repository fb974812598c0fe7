//! Invariant 5 (PROTOCOLS.md) at the center, over HTTP: no value from outside. Only a key
//! that a trusted maker vouches for is registered; blocked cards and makers are refused; the
//! float (what all cards hold) never goes below zero, however a genuine card's key is used.
//! Every adversary here holds something real: a software key of its own, a genuine chip, an
//! attestation seen on the wire, a registered and funded card.
#![allow(clippy::unwrap_used)]

mod common;

use apdu_spec::blocklist::BlockEntry;
use apdu_spec::cert::{Certificate, encode_public_key};
use apdu_spec::maker::{Attestation, MakerCertificate, maker_id};
use apdu_spec::units;
use common::*;
use p256::ecdsa::SigningKey;
use p256::elliptic_curve::Generate;
use valuecard_backend::center::MAX_ALARMS_PER_CARD;
use valuecard_protocol::ErrorCode;
use valuecard_protocol::api::*;

fn key() -> SigningKey {
    SigningKey::generate_from_rng(&mut rand::rng())
}

fn card_id(card: &SigningKey) -> [u8; 32] {
    apdu_spec::card_id(&encode_public_key(card.verifying_key()))
}

/// The registration of `card` on `chip`, refused with `code`, writing nothing; then the
/// same challenge still registers a genuine card (a refusal leaves the challenge unused).
#[track_caller]
fn refused_registration(w: &World, code: ErrorCode, req: RegisterRequest) {
    refused(w, code, || w.register(&req));
}

#[test]
fn a_software_key_without_a_genuine_attestation_is_refused() {
    let w = World::new(&[]);
    let software = key();
    let base = w.register_request(&software);
    for (what, attestation) in [
        ("none", vec![]),
        ("garbage", b"\xE9\x03abc".to_vec()),
        ("random bytes", vec![0x5A; 210]),
        ("an attestation cut short", {
            let mut a = base.attestation.clone();
            a.truncate(a.len() - 1);
            a
        }),
        ("an attestation with bytes after it", {
            let mut a = base.attestation.clone();
            a.extend_from_slice(&[0x90, 0x00]);
            a
        }),
        ("the maker certificate alone", {
            Attestation::decode(&base.attestation)
                .unwrap()
                .certificate
                .encode()
        }),
    ] {
        eprintln!("{what}");
        refused_registration(
            &w,
            ErrorCode::BadAttestation,
            RegisterRequest {
                attestation,
                ..base.clone()
            },
        );
    }
    // The challenge was not used by the refusals: the genuine request on it registers.
    let registration = w.register(&base).unwrap();
    assert!(!registration.replayed);
    let cert = Certificate::decode(&registration.certificate).unwrap();
    assert_eq!(
        cert.maker,
        maker_id(w.maker.verifying_key()),
        "the certificate names the maker"
    );
    assert_eq!(cert.card_id, card_id(&software));
}

#[test]
fn a_key_vouched_for_by_an_untrusted_maker_is_refused() {
    let w = World::new(&[]);
    let card = key();
    // A maker the center was not told to trust (the emulator's test maker, in production).
    let untrusted = Chip::made_by(&key());
    refused_registration(
        &w,
        ErrorCode::UntrustedMaker,
        w.register_with(&card, &untrusted),
    );
    // A maker certificate that names the trusted maker but was signed by another key.
    let attestation_key = key();
    let forged = Chip {
        certificate: MakerCertificate {
            maker: maker_id(w.maker.verifying_key()),
            ..MakerCertificate::issue(&key(), attestation_key.verifying_key())
        },
        attestation_key,
    };
    refused_registration(
        &w,
        ErrorCode::BadAttestation,
        w.register_with(&card, &forged),
    );
    // A trusted maker's certificate over one attestation key, with another key signing.
    let genuine = w.chip();
    let swapped = Chip {
        attestation_key: key(),
        certificate: genuine.certificate.clone(),
    };
    refused_registration(
        &w,
        ErrorCode::BadAttestation,
        w.register_with(&card, &swapped),
    );
    w.register(&w.register_with(&card, &genuine)).unwrap();
}

#[test]
fn an_attestation_for_another_key_is_refused() {
    let w = World::new(&[]);
    let (attacker, genuine_card) = (key(), key());
    let chip = w.chip();
    // The chip attests its own card key; the attacker sends that with its own key and proof.
    let mut req = w.register_request(&attacker);
    req.attestation = chip.attest(&genuine_card, &req.proof.challenge);
    refused_registration(&w, ErrorCode::BadAttestation, req);
    // A genuine card's whole registration, seen on the wire, with the attacker's key in it.
    let seen = w.register_with(&genuine_card, &chip);
    let proof = apdu_spec::auth::sign(&attacker, &seen.proof.challenge).to_vec();
    refused_registration(
        &w,
        ErrorCode::BadAttestation,
        RegisterRequest {
            public_key: encode_public_key(attacker.verifying_key()),
            proof: CardProof {
                signature: proof,
                ..seen.proof.clone()
            },
            ..seen.clone()
        },
    );
    // The genuine registration still goes through: nothing of it was used.
    w.register(&seen).unwrap();
}

#[test]
fn a_replayed_attestation_is_refused() {
    let w = World::new(&[]);
    let card = key();
    let chip = w.chip();
    let first = w.register_with(&card, &chip);
    w.register(&first).unwrap();
    // The same request again: its challenge is used up.
    refused_registration(&w, ErrorCode::BadChallenge, first.clone());
    // The old attestation with a new challenge (and a new proof over it).
    let fresh = w.register_with(&card, &chip);
    refused_registration(
        &w,
        ErrorCode::BadAttestation,
        RegisterRequest {
            attestation: first.attestation.clone(),
            ..fresh.clone()
        },
    );
    // Another key, with an attestation seen before, on a new challenge.
    let other = key();
    let mut req = w.register_request(&other);
    req.attestation = first.attestation.clone();
    refused_registration(&w, ErrorCode::BadAttestation, req);
    // An attestation over a balance challenge does not register either.
    let balance = w.challenge(ChallengePurpose::Balance);
    refused_registration(
        &w,
        ErrorCode::BadChallenge,
        RegisterRequest {
            public_key: encode_public_key(other.verifying_key()),
            proof: CardProof {
                challenge: balance,
                signature: apdu_spec::auth::sign(&other, &balance).to_vec(),
            },
            attestation: w.chip().attest(&other, &balance),
        },
    );
    // The card itself, again with a fresh attestation: its first certificate (`replayed`).
    let again = w.register(&fresh).unwrap();
    assert!(again.replayed);
}

#[test]
fn one_card_key_per_attestation_key() {
    let w = World::new(&[]);
    let chip = w.chip();
    let (first, second) = (key(), key());
    w.register(&w.register_with(&first, &chip)).unwrap();
    // The same chip (its attestation key extracted) vouching for a second card key.
    refused_registration(
        &w,
        ErrorCode::AttestationReused,
        w.register_with(&second, &chip),
    );
    // The first card key on another chip: that is not its chip.
    refused_registration(
        &w,
        ErrorCode::AlreadyRegistered,
        w.register_with(&first, &w.chip()),
    );
    // A second chip makes its own card.
    w.register(&w.register_with(&second, &w.chip())).unwrap();
}

#[test]
fn blocked_cards_and_makers_are_refused_at_registration() {
    let w = World::new(&[]);
    // A card blocked before it registers (its id is known: a stolen card's).
    let stolen = key();
    let answer = w.block(BlockEntry::Card(card_id(&stolen)));
    assert!(!answer.replayed);
    assert_eq!(answer.block_list.version, 1);
    refused_registration(&w, ErrorCode::CardBlocked, w.register_request(&stolen));
    // A registered card, blocked: not even its certificate again.
    let card = key();
    let chip = w.chip();
    w.register(&w.register_with(&card, &chip)).unwrap();
    w.block(BlockEntry::Card(card_id(&card)));
    refused_registration(&w, ErrorCode::CardBlocked, w.register_with(&card, &chip));
    // A maker blocked: none of its cards, old or new.
    let w2 = World::new(&[]);
    let made = key();
    let chip = w2.chip();
    w2.register(&w2.register_with(&made, &chip)).unwrap();
    w2.block(BlockEntry::Maker(maker_id(w2.maker.verifying_key())));
    refused_registration(&w2, ErrorCode::CardBlocked, w2.register_request(&key()));
    refused_registration(&w2, ErrorCode::CardBlocked, w2.register_with(&made, &chip));
}

#[test]
fn blocks_are_for_the_staff_bounded_and_versioned() {
    let w = World::new(&[]);
    let entry = BlockEntry::Card([7; 32]);
    let req = |reason: &str| BlockRequest {
        entry,
        reason: reason.into(),
    };
    refused(&w, ErrorCode::AdminUnauthorized, || {
        w.post::<_, BlockAnswer>("/center/v1/blocks", &req("lost"))
    });
    refused(&w, ErrorCode::AdminUnauthorized, || {
        w.post_admin::<_, BlockAnswer>("/center/v1/blocks", "wrong", &req("lost"))
    });
    for bad in ["", "   ", &"x".repeat(201), "two\nlines"] {
        refused(&w, ErrorCode::InvalidField, || {
            w.post_admin::<_, BlockAnswer>("/center/v1/blocks", ADMIN, &req(bad))
        });
    }
    let first: BlockAnswer = w
        .post_admin("/center/v1/blocks", ADMIN, &req(&"é".repeat(200)))
        .unwrap();
    assert_eq!(
        (first.block_list.version, first.block_list.entries.clone()),
        (1, vec![entry])
    );
    // The same block again: nothing more, the same list.
    let before = w.all_dumps();
    let again: BlockAnswer = w
        .post_admin("/center/v1/blocks", ADMIN, &req("stolen"))
        .unwrap();
    assert!(again.replayed);
    assert_eq!(again.block_list, first.block_list);
    assert_eq!(w.all_dumps(), before);
    // The public list is the issuer's, and holds the newest 64.
    for i in 0..70u8 {
        w.block(BlockEntry::Maker([i; 32]));
    }
    let list: BlockList = w.get("/center/v1/block-list").unwrap();
    assert_eq!(list.version, 71);
    assert_eq!(list.entries.len(), 64);
    assert_eq!(list.entries[63], BlockEntry::Maker([69; 32]));
    assert_eq!(list.verify(w.scheme.issuer.verifying_key()), Ok(()));
    // The reason is for the staff only.
    assert!(!serde_json::to_string(&list).unwrap().contains("é"));
    // Every earlier version is served as it was signed then, so that a relay that missed
    // more than 64 blocks can hand the arbiter each one; a version not signed yet is not.
    let at = |v: u32| w.get::<BlockList>(&format!("/center/v1/block-list?version={v}"));
    assert_eq!(at(1).unwrap(), first.block_list);
    assert_eq!(at(71).unwrap(), list);
    let seventh = at(7).unwrap();
    assert_eq!(seventh.version, 7);
    assert_eq!(seventh.entries.len(), 7);
    assert_eq!(seventh.entries[6], BlockEntry::Maker([5; 32]));
    assert_eq!(seventh.verify(w.scheme.issuer.verifying_key()), Ok(()));
    for bad in ["72", "x", "-1"] {
        refused(&w, ErrorCode::InvalidField, || {
            w.get::<BlockList>(&format!("/center/v1/block-list?version={bad}"))
        });
    }
}

#[test]
fn unregistered_and_blocked_cards_get_no_load_unload_ticket_or_balance() {
    let w = World::new(&[32]);
    let account = w.open_account(200);
    // A software key nobody registered.
    let stranger = key();
    refused(&w, ErrorCode::UnknownCard, || {
        w.load(&load_order(&stranger, 0, jpy(1)))
    });
    refused(&w, ErrorCode::UnknownCard, || {
        w.unload(&unload_order(&stranger, 0, 1))
    });

    let (card, id) = w.funded_card(&account, &[32]);
    let (other, other_id) = w.funded_card(&account, &[32]);
    let before_block = load_order(&card, 0, jpy(5));
    let first = w.load(&before_block).unwrap();
    assert_eq!(first.block_list.version, 0);
    let pending = load_order(&card, 1, jpy(5));
    w.load(&pending).unwrap();
    w.load(&load_order(&other, 0, jpy(10))).unwrap();

    let blocked = w.block(BlockEntry::Card(id));
    assert!(blocked.block_list.blocks_card(&id));
    refused(&w, ErrorCode::CardBlocked, || {
        w.load(&load_order(&card, 2, jpy(1)))
    });
    // Not even a retry of a load it had: the card may cancel it instead.
    refused(&w, ErrorCode::CardBlocked, || w.load(&before_block));
    refused(&w, ErrorCode::CardBlocked, || {
        w.unload(&unload_order(&card, 0, 1))
    });
    // (The proofs' challenges are made first: that is not what is refused.)
    let (proof, other_proof) = (w.balance_proof(&card), w.balance_proof(&card));
    refused(&w, ErrorCode::CardBlocked, || {
        w.post::<_, CardBalance>(
            "/center/v1/balance",
            &CardBalanceRequest {
                card_id: id,
                proof: proof.clone(),
            },
        )
    });
    refused(&w, ErrorCode::CardBlocked, || {
        w.post::<_, CardLedger>(
            "/center/v1/ledger",
            &LedgerRequest {
                card_id: id,
                proof: Some(other_proof.clone()),
            },
        )
    });
    refused(&w, ErrorCode::CardBlocked, || {
        w.issue_ticket(
            ADMIN,
            &TicketIssueRequest {
                card_id: id,
                asset: "CONCERT".into(),
                serial: None,
            },
        )
    });
    // Its cancellation still goes through: the units come back to the center.
    let ack = w.cancel(&cancellation(&card, &pending.request)).unwrap();
    assert_eq!(ack.outcome, CancelOutcome::Refunded);
    // The staff still read its ledger.
    let ledger: CardLedger = w
        .post_admin(
            "/center/v1/ledger",
            ADMIN,
            &LedgerRequest {
                card_id: id,
                proof: None,
            },
        )
        .unwrap();
    assert_eq!(ledger.accounts[0].balance, 32 - 5);

    // Other cards learn the list at their next load: the authorisation covers its version.
    let next = load_order(&other, 1, jpy(1));
    let auth = w.load(&next).unwrap();
    assert_eq!(auth.block_list, blocked.block_list);
    assert!(units::verify(
        w.scheme.issuer.verifying_key(),
        units::domains::LOAD_AUTH,
        &units::authorised(&next.request, 1),
        &auth.authorisation
    ));
    // A retry of a load authorised before the block gets the list it was authorised with.
    let old = w.load(&load_order(&other, 0, jpy(10))).unwrap();
    assert!(old.replayed);
    assert_eq!(old.block_list.version, 0);
    assert!(old.block_list.entries.is_empty());
    assert!(units::verify(
        w.scheme.issuer.verifying_key(),
        units::domains::LOAD_AUTH,
        &units::authorised(&load_order(&other, 0, jpy(10)).request, 0),
        &old.authorisation
    ));

    // A blocked maker: every card it made.
    w.block(BlockEntry::Maker(maker_id(w.maker.verifying_key())));
    refused(&w, ErrorCode::CardBlocked, || {
        w.load(&load_order(&other, 2, jpy(1)))
    });
    refused(&w, ErrorCode::CardBlocked, || {
        w.unload(&unload_order(&other, 0, 1))
    });
    refused(&w, ErrorCode::CardBlocked, || {
        w.issue_ticket(
            ADMIN,
            &TicketIssueRequest {
                card_id: other_id,
                asset: "CONCERT".into(),
                serial: None,
            },
        )
    });
}

#[test]
fn an_unload_past_the_float_is_refused_and_raises_an_alarm() {
    let w = World::new(&[32]);
    let account = w.open_account(100);
    let (loader, _) = w.funded_card(&account, &[32]);
    // A genuine card with nothing loaded, whose key the attacker extracted.
    let (thief, thief_id) = w.new_card();
    w.load(&load_order(&loader, 0, jpy(10))).unwrap();
    assert_eq!(
        w.float().floats,
        vec![AssetFloat {
            asset: "JPY".into(),
            amount: 10
        }]
    );
    let (_, before, _) = w.all_dumps();
    let receipt = unload_order(&thief, 0, 11);
    w.unload(&receipt).expect_code(ErrorCode::FloatExceeded);
    // Nothing moved; the alarm is the only row written.
    let (_, after, _) = w.all_dumps();
    for (table, rows) in &before {
        if table != "float_alarms" {
            assert_eq!(&after[table], rows, "{table}");
        }
    }
    let report = w.float();
    assert_eq!(report.floats[0].amount, 10);
    assert_eq!(
        report.alarms,
        vec![FloatAlarm {
            day: START / 86_400,
            card_id: thief_id,
            counter: 0,
            asset: "JPY".into(),
            amount: 11,
            float: 10,
        }]
    );
    // A retry adds no row.
    w.unload(&receipt).expect_code(ErrorCode::FloatExceeded);
    assert_eq!(w.float().alarms.len(), 1);
    // The float route is for the staff.
    let anonymous: Answer<FloatReport> = answer(w.agent.get(w.url("/center/v1/float")).call());
    anonymous.expect_code(ErrorCode::AdminUnauthorized);
    // Within the float, any card's unload is taken (units move between cards by exchange).
    w.unload(&unload_order(&thief, 1, 10)).unwrap();
    assert_eq!(w.float().floats[0].amount, 0);
    w.unload(&unload_order(&loader, 0, 1))
        .expect_code(ErrorCode::FloatExceeded);
    // One card cannot fill the disk with alarms: a few per card at most.
    for counter in 2..40 {
        w.unload(&unload_order(&thief, counter, 1))
            .expect_code(ErrorCode::FloatExceeded);
    }
    let alarms = w.float().alarms;
    assert_eq!(
        alarms.iter().filter(|a| a.card_id == thief_id).count(),
        MAX_ALARMS_PER_CARD
    );
}

#[test]
fn a_genuine_card_signing_value_of_its_own_gets_float_exceeded() {
    // The issue's attack: register a genuine card, sign an unload receipt with its key for
    // 2^63 - 1 (or 1,000,000, or more than an SQL integer), and unload.
    let w = World::new(&[32]);
    let account = w.open_account(100);
    let (card, id) = w.funded_card(&account, &[32]);
    w.load(&load_order(&card, 0, jpy(32))).unwrap();
    for (counter, amount) in [(0, i64::MAX as u64), (1, 1_000_000), (2, u64::MAX), (3, 33)] {
        w.unload(&unload_order(&card, counter, amount))
            .expect_code(ErrorCode::FloatExceeded);
    }
    assert_eq!(w.card_balance(&card), 0);
    // The card's ledger still answers, and adds up.
    let ledger = w.ledger(&card);
    assert_eq!(
        ledger.totals,
        LedgerTotals {
            redeemed: 32,
            loaded: 32,
            refunded: 0,
            unloaded: 0
        }
    );
    let alarms = w.float().alarms;
    assert_eq!(
        alarms.iter().map(|a| a.amount).collect::<Vec<_>>(),
        [i64::MAX as u64, 1_000_000, u64::MAX, 33]
    );
    assert!(alarms.iter().all(|a| a.card_id == id && a.float == 32));
    // What it really holds comes back.
    w.unload(&unload_order(&card, 4, 32)).unwrap();
    assert_eq!(w.card_balance(&card), 32);
    assert_eq!(w.ledger(&card).totals.unloaded, 32);
}

#[test]
fn the_registration_answers_the_anchors_and_the_info_names_the_makers() {
    let w = World::new(&[]);
    let (_, registration) = w.new_registered_card();
    assert_eq!(
        registration.issuer_anchor,
        w.scheme.keys.issuer_anchor.encode()
    );
    assert_eq!(
        registration.arbiter_anchor,
        w.scheme.keys.arbiter_anchor.encode()
    );
    let info: CenterInfo = w.get("/center/v1/info").unwrap();
    assert_eq!(
        info.trusted_makers,
        vec![HexId(maker_id(w.maker.verifying_key()))]
    );
    assert_eq!(info.issuer_anchor, registration.issuer_anchor);
    assert_eq!(info.root_public_key, w.scheme.scheme.root_public_key);
    let cert = Certificate::decode(&registration.certificate).unwrap();
    assert!(cert.verify(w.scheme.issuer.verifying_key()).is_ok());
}
