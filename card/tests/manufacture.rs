//! What a card gets at manufacture, and what it lets a terminal do with it: ATTEST, GET DATA
//! C5 and C6, TEST RESET's manufacture record, PERSONALIZE's trust anchors, and the state
//! file that keeps them.
//!
//! The adversary at PERSONALIZE is a terminal that holds keys of its own (an issuer key, an
//! arbiter key, a root of its own), every genuine anchor and certificate it has seen, and
//! the card in its reader: each of its bodies is refused, and the card's state file stays
//! byte for byte as it was, with not one file-system operation.

mod common;

use std::fs;
use std::path::Path;

use apdu_spec::anchor::{Anchor, AnchorRole};
use apdu_spec::cert::{self, Certificate};
use apdu_spec::commands::ins;
use apdu_spec::maker::{self, Attestation, MakerCertificate, Manufacture};
use apdu_spec::objects::{CardInfo, Personalization, tag};
use apdu_spec::{CLA_ISO, tlv};
use common::{
    PIN, anchor, bytes, issuer, maker, maker_id, manufacture, new_card, ok, options, other_issuer,
    other_root, personalization, proprietary, root, transmit,
};
use p256::ecdsa::{SigningKey, VerifyingKey};
use valuecard_card::applet::decode;
use valuecard_card::provision::{ProvisionError, provision};
use valuecard_card::state::{FORMAT, Persistent};
use valuecard_card::storage::{FileStorage, SharedFs, Storage, StorageError};
use valuecard_card::{Card, Options};

fn arbiter() -> SigningKey {
    SigningKey::from_slice(&[0x7C; 32]).expect("a P-256 scalar")
}

/// The terminal's own keys.
fn terminal_key() -> SigningKey {
    SigningKey::from_slice(&[0x7E; 32]).expect("a P-256 scalar")
}

fn get_data(object: u16) -> Vec<u8> {
    let [p1, p2] = object.to_be_bytes();
    apdu_spec::apdu::encode(CLA_ISO, ins::GET_DATA, p1, p2, &[], 65536, true)
}

fn attest(challenge: &[u8]) -> Vec<u8> {
    proprietary(ins::ATTEST, challenge)
}

/// A manufactured card in a state file, with its key made: (card, its public key).
fn keyed_card_in(path: &Path, seed: u64) -> (Card, VerifyingKey) {
    let mut storage = FileStorage::open(path).expect("storage");
    provision(&mut storage, &manufacture(seed)).expect("made");
    let mut card = Card::new(Box::new(storage), options(seed)).expect("card");
    let public = ok(&mut card, &proprietary(ins::GENERATE_KEY, &[]))[2..].to_vec();
    (card, cert::decode_public_key(&public).expect("a key"))
}

/// The same card, restarted on a file system that counts its operations.
fn counted(path: &Path, seed: u64) -> (Card, SharedFs) {
    let fs = SharedFs::default();
    let storage = FileStorage::with_fs(path, fs.clone()).expect("storage");
    (
        Card::new(Box::new(storage), options(seed)).expect("card"),
        fs,
    )
}

// ---- PERSONALIZE ------------------------------------------------------------------------

#[test]
fn a_terminal_with_keys_of_its_own_cannot_personalise_the_card() {
    let dir = tempfile::tempdir().expect("tempdir");
    let path = dir.path().join("card.state");
    let (card, key) = keyed_card_in(&path, 1);
    drop(card);
    let before = fs::read(&path).expect("state file");

    let (_, genuine) = personalization(&key, &arbiter());
    let issuer_anchor = genuine.issuer.clone();
    let arbiter_anchor = genuine.arbiter.clone();
    let own_certificate = genuine.certificate.clone();
    let mine = terminal_key();
    let certified_by =
        |signer: &SigningKey| Certificate::issue(signer, &key, maker_id(), 0, u64::MAX).encode();
    let another_card = SigningKey::from_slice(&[0x61; 32]).expect("a scalar");
    let relabel = |a: &Anchor, role| Anchor { role, ..a.clone() };
    let body = |issuer: Anchor, arbiter: Anchor, certificate: Vec<u8>| Personalization {
        issuer,
        arbiter,
        certificate,
        pin: PIN.to_vec(),
    };
    let cases: Vec<(&str, Personalization, u16)> = vec![
        (
            "its own issuer key, anchored by a root of its own, and a certificate by it",
            body(
                anchor(&other_root(), AnchorRole::Issuer, &mine),
                arbiter_anchor.clone(),
                certified_by(&mine),
            ),
            0x6300,
        ),
        (
            "its own issuer key, self-anchored, with the genuine certificate",
            body(
                anchor(&mine, AnchorRole::Issuer, &mine),
                arbiter_anchor.clone(),
                own_certificate.clone(),
            ),
            0x6300,
        ),
        (
            "its own arbiter key, anchored by a root of its own",
            body(
                issuer_anchor.clone(),
                anchor(&other_root(), AnchorRole::Arbiter, &mine),
                own_certificate.clone(),
            ),
            0x6300,
        ),
        (
            "its own key under the root's signature of the genuine issuer anchor",
            body(
                Anchor {
                    public_key: cert::encode_public_key(mine.verifying_key()),
                    ..issuer_anchor.clone()
                },
                arbiter_anchor.clone(),
                certified_by(&mine),
            ),
            0x6300,
        ),
        (
            "the issuer's anchor relabelled as the arbiter's",
            body(
                issuer_anchor.clone(),
                relabel(&issuer_anchor, AnchorRole::Arbiter),
                own_certificate.clone(),
            ),
            0x6300,
        ),
        (
            "the arbiter's key presented as the issuer's (the roles swapped)",
            body(
                relabel(&arbiter_anchor, AnchorRole::Issuer),
                relabel(&issuer_anchor, AnchorRole::Arbiter),
                certified_by(&arbiter()),
            ),
            0x6300,
        ),
        (
            "the arbiter's anchor relabelled as the issuer's, beside the genuine arbiter's",
            body(
                relabel(&arbiter_anchor, AnchorRole::Issuer),
                arbiter_anchor.clone(),
                certified_by(&arbiter()),
            ),
            0x6300,
        ),
        (
            "genuine anchors, a certificate by another issuer",
            body(
                issuer_anchor.clone(),
                arbiter_anchor.clone(),
                certified_by(&other_issuer()),
            ),
            0x6300,
        ),
        (
            "genuine anchors, a certificate by the arbiter's key",
            body(
                issuer_anchor.clone(),
                arbiter_anchor.clone(),
                certified_by(&arbiter()),
            ),
            0x6300,
        ),
        (
            "genuine anchors, the genuine certificate of another card",
            body(
                issuer_anchor.clone(),
                arbiter_anchor.clone(),
                Certificate::issue(
                    &issuer(),
                    another_card.verifying_key(),
                    maker_id(),
                    0,
                    u64::MAX,
                )
                .encode(),
            ),
            0x6A80,
        ),
        (
            "genuine anchors, a certificate whose card id is not its key's",
            body(issuer_anchor.clone(), arbiter_anchor.clone(), {
                let mut c = Certificate::issue(&issuer(), &key, maker_id(), 0, u64::MAX);
                c.card_id[0] ^= 1;
                c.encode()
            }),
            0x6A80,
        ),
        (
            "genuine anchors, a certificate that does not decode",
            body(
                issuer_anchor.clone(),
                arbiter_anchor.clone(),
                own_certificate[..own_certificate.len() - 1].to_vec(),
            ),
            0x6A80,
        ),
        (
            "genuine anchors and certificate, a PIN that is no PIN",
            Personalization {
                pin: b"12ab".to_vec(),
                ..genuine.clone()
            },
            0x6A80,
        ),
    ];
    let (mut card, fs) = counted(&path, 1);
    for (why, body, sw) in &cases {
        let (data, got) = transmit(&mut card, &proprietary(ins::PERSONALIZE, &body.encode()));
        assert_eq!((data.len(), got), (0, *sw), "{why}: {got:04X}");
        assert_eq!(card.applet().persistent().personalization, None, "{why}");
    }
    // Bodies that are not four objects with one anchor per role.
    let genuine_bytes = genuine.encode();
    let two_issuers = tlv::encode_all(&[
        issuer_anchor.to_tlv(),
        issuer_anchor.to_tlv(),
        tlv::primitive(tag::CERTIFICATE, own_certificate.clone()),
        tlv::primitive(tag::PIN, PIN.to_vec()),
    ]);
    let old_form = tlv::encode_all(&[
        tlv::primitive(
            tag::ISSUER_KEY,
            cert::encode_public_key(issuer().verifying_key()),
        ),
        tlv::primitive(
            tag::ARBITER_KEY,
            cert::encode_public_key(arbiter().verifying_key()),
        ),
        tlv::primitive(tag::CERTIFICATE, own_certificate.clone()),
        tlv::primitive(tag::PIN, PIN.to_vec()),
    ]);
    for (why, body) in [
        ("two issuer anchors", two_issuers),
        ("bare keys, as before anchors", old_form),
        (
            "cut short",
            genuine_bytes[..genuine_bytes.len() - 1].to_vec(),
        ),
        ("a byte too many", [genuine_bytes.as_slice(), &[0]].concat()),
    ] {
        let got = transmit(&mut card, &proprietary(ins::PERSONALIZE, &body)).1;
        assert_eq!(got, 0x6A80, "{why}");
    }
    assert_eq!(fs.ops(), 0, "no refusal touches the file system");
    drop(card);
    assert_eq!(
        fs::read(&path).expect("state file"),
        before,
        "the state file is byte for byte as it was"
    );

    // The genuine body, in either order of the anchors, installs the anchored keys.
    let (mut card, _) = counted(&path, 1);
    let swapped_order = tlv::encode_all(&[
        arbiter_anchor.to_tlv(),
        issuer_anchor.to_tlv(),
        tlv::primitive(tag::CERTIFICATE, own_certificate.clone()),
        tlv::primitive(tag::PIN, PIN.to_vec()),
    ]);
    ok(&mut card, &proprietary(ins::PERSONALIZE, &swapped_order));
    let issuer_key = cert::encode_public_key(issuer().verifying_key()).to_vec();
    let arbiter_key = cert::encode_public_key(arbiter().verifying_key()).to_vec();
    assert_eq!(
        ok(&mut card, &get_data(tag::ISSUER_KEY))[2..],
        issuer_key[..]
    );
    assert_eq!(
        ok(&mut card, &get_data(tag::ARBITER_KEY))[2..],
        arbiter_key[..]
    );
    assert_eq!(
        ok(&mut card, &get_data(tag::CERTIFICATE))[3..],
        own_certificate[..]
    );
    // Once only.
    assert_eq!(
        transmit(&mut card, &proprietary(ins::PERSONALIZE, &genuine_bytes)).1,
        0x6985
    );
}

#[test]
fn a_card_nobody_manufactured_cannot_be_personalised_or_attest() {
    let mut card = Card::in_memory(options(2));
    let public = ok(&mut card, &proprietary(ins::GENERATE_KEY, &[]))[2..].to_vec();
    let key = cert::decode_public_key(&public).expect("a key");
    let (_, body) = personalization(&key, &arbiter());
    let before = card.applet().persistent().clone();
    assert_eq!(
        transmit(&mut card, &proprietary(ins::PERSONALIZE, &body.encode())),
        (Vec::new(), 0x6985),
        "no root key to check the anchors with"
    );
    assert_eq!(
        transmit(&mut card, &attest(&[0xA5; 32])),
        (Vec::new(), 0x6A88),
        "no attestation key"
    );
    for object in [tag::ROOT_KEY, tag::MAKER_CERTIFICATE] {
        assert_eq!(transmit(&mut card, &get_data(object)), (Vec::new(), 0x6A88));
    }
    assert_eq!(card.applet().persistent(), &before);
}

// ---- ATTEST ---------------------------------------------------------------------------

#[test]
fn attest_vouches_for_the_own_key_over_the_challenge_and_writes_nothing() {
    let dir = tempfile::tempdir().expect("tempdir");
    let path = dir.path().join("card.state");
    let (mut card, key) = keyed_card_in(&path, 3);
    let own = cert::encode_public_key(&key);
    for keyed in [true, false] {
        if !keyed {
            let (_, body) = personalization(&key, &arbiter());
            ok(&mut card, &proprietary(ins::PERSONALIZE, &body.encode()));
        }
        let before = fs::read(&path).expect("state file");
        drop(card);
        let (mut c, fs_ops) = counted(&path, 3);
        let challenges: [&[u8]; 3] = [&[0xA5; 16], &[0x3C; 64], b"center: register card 0001"];
        for challenge in challenges {
            let answer = ok(&mut c, &attest(challenge));
            let attestation = Attestation::decode(&answer).expect("an E9 answer");
            assert_eq!(
                attestation.verify(maker().verifying_key(), &own, challenge),
                Ok(maker_id()),
                "keyed: {keyed}"
            );
            // For this key and this challenge only, and the certificate is the maker's
            // over this card's attestation key, as GET DATA C6 shows it.
            let other_key = cert::encode_public_key(other_issuer().verifying_key());
            assert!(
                attestation
                    .verify(maker().verifying_key(), &other_key, challenge)
                    .is_err()
            );
            assert!(
                attestation
                    .verify(maker().verifying_key(), &own, &[challenge, &[0]].concat())
                    .is_err()
            );
            assert!(
                attestation
                    .verify(issuer().verifying_key(), &own, challenge)
                    .is_err()
            );
            assert_eq!(attestation.certificate, manufacture(3).certificate);
            assert_eq!(
                ok(&mut c, &get_data(tag::MAKER_CERTIFICATE))[3..],
                attestation.certificate.encode()[..]
            );
            // The attestation key is not the card key.
            assert_ne!(attestation.certificate.attestation_key, own);
        }
        // Case 3 and a short Le: the answer waits behind 61xx.
        let short = apdu_spec::apdu::encode(0x80, ins::ATTEST, 0, 0, &[0x11; 16], 0, false);
        let (data, sw) = transmit(&mut c, &short);
        assert!(data.is_empty() && sw >> 8 == 0x61, "{sw:04X}");
        assert_eq!(fs_ops.ops(), 0, "ATTEST writes nothing");
        drop(c);
        assert_eq!(fs::read(&path).expect("state file"), before);
        card = counted(&path, 3).0;
    }
}

#[test]
fn attest_refuses_bad_lengths_parameters_and_states() {
    let mut card = new_card(4);
    assert_eq!(
        transmit(&mut card, &attest(&[0xA5; 16])),
        (Vec::new(), 0x6985),
        "blank: no card key to attest"
    );
    ok(&mut card, &proprietary(ins::GENERATE_KEY, &[]));
    let before = bytes(card.applet().persistent());
    for len in [1, 15, 65, 200] {
        assert_eq!(
            transmit(&mut card, &attest(&vec![0xA5; len])),
            (Vec::new(), 0x6700),
            "{len} bytes"
        );
    }
    assert_eq!(
        transmit(&mut card, &[0x80, ins::ATTEST, 0, 0]).1,
        0x6700,
        "no body"
    );
    assert_eq!(
        transmit(&mut card, &[0x80, ins::ATTEST, 0, 0, 0x00]).1,
        0x6700,
        "no body, an Le"
    );
    for (p1, p2) in [(0, 1), (1, 0), (0xFF, 0xFF)] {
        let apdu = apdu_spec::apdu::encode(0x80, ins::ATTEST, p1, p2, &[0; 16], 256, false);
        assert_eq!(transmit(&mut card, &apdu).1, 0x6A86);
    }
    assert_eq!(
        transmit(
            &mut card,
            &apdu_spec::apdu::encode(0x00, ins::ATTEST, 0, 0, &[0; 16], 256, false)
        )
        .1,
        0x6D00,
        "class 00"
    );
    assert_eq!(bytes(card.applet().persistent()), before);
}

// ---- GET DATA, TEST RESET ----------------------------------------------------------------

#[test]
fn get_data_shows_what_manufacture_gave_and_never_the_secret() {
    let mut card = new_card(5);
    let made = manufacture(5);
    let root_key = cert::encode_public_key(root().verifying_key());
    assert_eq!(
        ok(&mut card, &get_data(tag::ROOT_KEY)),
        tlv::primitive(tag::ROOT_KEY, root_key).to_vec()
    );
    assert_eq!(
        ok(&mut card, &get_data(tag::MAKER_CERTIFICATE)),
        tlv::primitive(tag::MAKER_CERTIFICATE, made.certificate.encode()).to_vec()
    );
    let all = ok(&mut card, &get_data(tag::ALL));
    let info = CardInfo::decode(&all).expect("6E");
    assert_eq!(info.root_key, Some(root_key.to_vec()));
    assert_eq!(info.maker_certificate, Some(made.certificate.encode()));
    assert_eq!(info.counters.block_list, 0);
    assert!(
        !hex::encode(&all).contains(&hex::encode(made.attestation_secret)),
        "the attestation secret is never readable"
    );
    let debug = format!("{:?}", card.applet().persistent());
    assert!(
        !debug.contains(&hex::encode(made.attestation_secret)),
        "{debug}"
    );
    let mc = MakerCertificate::decode(&made.certificate.encode()).expect("7F23");
    assert_eq!(mc.verify(maker().verifying_key()).map(|_| ()), Ok(()));

    // Active, with an empty store and nothing in flight: 548 bytes (SPEC.md).
    let public = ok(&mut card, &proprietary(ins::GENERATE_KEY, &[]))[2..].to_vec();
    let key = cert::decode_public_key(&public).expect("a key");
    let (_, body) = personalization(&key, &arbiter());
    ok(&mut card, &proprietary(ins::PERSONALIZE, &body.encode()));
    assert_eq!(ok(&mut card, &get_data(tag::ALL)).len(), 548);
}

#[test]
fn test_reset_keeps_or_installs_the_manufacture_record() {
    let mut card = new_card(6);
    let public = ok(&mut card, &proprietary(ins::GENERATE_KEY, &[]))[2..].to_vec();
    let key = cert::decode_public_key(&public).expect("a key");
    let (_, body) = personalization(&key, &arbiter());
    ok(&mut card, &proprietary(ins::PERSONALIZE, &body.encode()));

    // Without a body: blank again, with the record the maker gave it.
    ok(&mut card, &proprietary(ins::TEST_RESET, &[]));
    let state = card.applet().persistent().clone();
    assert_eq!(state, Persistent::manufactured(&manufacture(6)));

    // With a record: blank, with that record.
    let other = manufacture(60);
    ok(&mut card, &proprietary(ins::TEST_RESET, &other.encode()));
    assert_eq!(
        card.applet().persistent(),
        &Persistent::manufactured(&other)
    );

    // A record that is not one, or whose parts do not fit: 6A80, nothing changes.
    let before = bytes(card.applet().persistent());
    let mismatched = Manufacture {
        attestation_secret: [0x58; 32],
        ..manufacture(7)
    };
    let bad_bodies = [
        mismatched.encode(),
        other.encode()[..other.encode().len() - 1].to_vec(),
        vec![0xE4, 0x00],
        other.certificate.encode(),
    ];
    for body in bad_bodies {
        assert_eq!(
            transmit(&mut card, &proprietary(ins::TEST_RESET, &body)),
            (Vec::new(), 0x6A80)
        );
        assert_eq!(bytes(card.applet().persistent()), before);
    }

    // Outside test mode TEST RESET does not exist, with or without a body.
    let mut production = Card::provisioned(
        &manufacture(8),
        Options {
            test_mode: false,
            rng_seed: Some(8),
        },
    )
    .expect("a card");
    for body in [Vec::new(), other.encode()] {
        assert_eq!(
            transmit(&mut production, &proprietary(ins::TEST_RESET, &body)).1,
            0x6D00
        );
    }
    assert_eq!(
        production.applet().persistent(),
        &Persistent::manufactured(&manufacture(8))
    );
}

// ---- the state file -------------------------------------------------------------------

#[test]
fn a_state_file_of_format_1_is_refused_by_name() {
    let format_1 = br#"{ "format": 1, "key": null, "personalization": null,
        "load_counter": 0, "unload_counter": 0, "values": { "assets": [], "tickets": [] } }"#;
    let error = decode(format_1).expect_err("format 1");
    assert!(
        matches!(error, StorageError::Format { found: 1 }),
        "{error:?}"
    );
    let message = error.to_string();
    assert!(message.contains("format 1"), "{message}");
    assert!(message.contains("valuecard-card provision"), "{message}");
    let unknown = decode(br#"{ "format": 3 }"#).expect_err("format 3");
    assert!(unknown.to_string().contains("format 3"), "{unknown}");
    assert_eq!(FORMAT, 2);
    // The card does not start from it either.
    let dir = tempfile::tempdir().expect("tempdir");
    let path = dir.path().join("card.state");
    fs::write(&path, format_1).expect("write");
    let Err(e) = Card::new(
        Box::new(FileStorage::open(&path).expect("storage")),
        options(9),
    ) else {
        panic!("a format-1 card started");
    };
    assert!(e.to_string().contains("format 1"));
}

#[test]
fn a_state_file_whose_manufacture_record_does_not_fit_is_corrupt() {
    let mut card = new_card(10);
    let public = ok(&mut card, &proprietary(ins::GENERATE_KEY, &[]))[2..].to_vec();
    let key = cert::decode_public_key(&public).expect("a key");
    let (_, body) = personalization(&key, &arbiter());
    ok(&mut card, &proprietary(ins::PERSONALIZE, &body.encode()));
    let state = card.applet().persistent().clone();
    assert!(decode(&bytes(&state)).is_ok());
    let corrupt = |edit: &dyn Fn(&mut Persistent), why: &str| {
        let mut s = state.clone();
        edit(&mut s);
        assert!(decode(&bytes(&s)).is_err(), "{why}");
    };
    corrupt(
        &|s| {
            if let Some(m) = s.manufacture.as_mut() {
                m.attestation_secret.0 = [0x58; 32];
            }
        },
        "an attestation secret that is not the certified key's",
    );
    corrupt(
        &|s| {
            if let Some(m) = s.manufacture.as_mut() {
                m.root_key[0] = 0x04;
            }
        },
        "a root key that is no point",
    );
    corrupt(
        &|s| {
            if let Some(m) = s.manufacture.as_mut() {
                m.maker_certificate.pop();
            }
        },
        "a maker certificate that does not decode",
    );
    corrupt(
        &|s| s.manufacture = None,
        "personalised, never manufactured",
    );
    corrupt(
        &|s| {
            if let Some(p) = s.personalization.as_mut() {
                p.arbiter_key[0] = 0x04;
            }
        },
        "an arbiter key that is no point",
    );
    corrupt(
        &|s| {
            // `sign` keeps the newest 64; a file can hold anything.
            s.block_list = Some(apdu_spec::blocklist::BlockList {
                entries: vec![apdu_spec::blocklist::BlockEntry::Card([1; 32]); 65],
                ..common::block_list(1, &[])
            });
        },
        "a block list longer than a card keeps",
    );
    let mut keyed = Persistent::manufactured(&manufacture(10));
    keyed.block_list = Some(common::block_list(1, &[]));
    assert!(
        decode(&bytes(&keyed)).is_err(),
        "a block list before personalisation"
    );
}

#[test]
fn provisioning_makes_a_card_once_and_never_over_a_card() {
    let dir = tempfile::tempdir().expect("tempdir");
    let path = dir.path().join("card.state");
    let mut storage = FileStorage::open(&path).expect("storage");
    let made = provision(&mut storage, &manufacture(11)).expect("provisioned");
    assert_eq!(made, Persistent::manufactured(&manufacture(11)));
    let written = fs::read(&path).expect("state file");
    assert_eq!(decode(&written).expect("decodes"), made);
    #[cfg(unix)]
    {
        use std::os::unix::fs::PermissionsExt;
        let mode = fs::metadata(&path).expect("metadata").permissions().mode();
        assert_eq!(mode & 0o777, 0o600, "the state file holds secrets");
    }
    assert!(matches!(
        provision(&mut storage, &manufacture(12)),
        Err(ProvisionError::AlreadyManufactured)
    ));
    assert_eq!(
        fs::read(&path).expect("state file"),
        written,
        "left as it was"
    );

    // A blank card that was never manufactured (what the run mode creates) is made; a card
    // with a key is not.
    let blank_path = dir.path().join("blank.state");
    drop(Card::new(
        Box::new(FileStorage::open(&blank_path).expect("storage")),
        options(13),
    ));
    let mut blank = FileStorage::open(&blank_path).expect("storage");
    provision(&mut blank, &manufacture(13)).expect("a blank card is made");
    let keyed_path = dir.path().join("keyed.state");
    let mut keyed_card = Card::new(
        Box::new(FileStorage::open(&keyed_path).expect("storage")),
        options(14),
    )
    .expect("card");
    ok(&mut keyed_card, &proprietary(ins::GENERATE_KEY, &[]));
    drop(keyed_card);
    let keyed_bytes = fs::read(&keyed_path).expect("state file");
    let mut keyed = FileStorage::open(&keyed_path).expect("storage");
    assert!(matches!(
        provision(&mut keyed, &manufacture(14)),
        Err(ProvisionError::HasKey)
    ));
    assert_eq!(fs::read(&keyed_path).expect("state file"), keyed_bytes);
    // A record whose parts do not fit is never written.
    let mut fresh = FileStorage::open(&dir.path().join("fresh.state")).expect("storage");
    let mismatched = Manufacture {
        attestation_secret: [0x58; 32],
        ..manufacture(15)
    };
    assert!(matches!(
        provision(&mut fresh, &mismatched),
        Err(ProvisionError::Inconsistent)
    ));
    assert_eq!(fresh.load().expect("load"), None);
}

#[test]
fn the_maker_id_names_the_maker_key() {
    assert_eq!(
        manufacture(1).certificate.maker,
        maker::maker_id(maker().verifying_key())
    );
    let _ = Anchor::issue(&root(), AnchorRole::Issuer, issuer().verifying_key());
}
