//! INTERNAL AUTHENTICATE on a card that keeps its state in a file: the signature verifies
//! under the card's public key over the challenge, and the command writes nothing at all:
//! no file-system operation, the state file byte for byte as before.

use std::fs;

use apdu_spec::commands::{LifeCycle, ins};
use apdu_spec::{auth, cert, vectors};
use valuecard_card::applet::{decode, encode};
use valuecard_card::storage::{FileStorage, SharedFs};
use valuecard_card::{Card, Options};

/// The manufacture record of the conformance vectors, whose root anchors the test issuer.
fn test_manufacture() -> apdu_spec::maker::Manufacture {
    let bytes = vectors::lookup("MANUFACTURE", &vectors::initial_vars()).expect("derived");
    apdu_spec::maker::Manufacture::decode(&bytes).expect("a record")
}

fn options() -> Options {
    Options {
        test_mode: true,
        rng_seed: Some(11),
    }
}

/// Sends a command and splits the answer into data and status word.
fn send(card: &mut Card, apdu: &[u8]) -> (Vec<u8>, u16) {
    let r = card.transmit(apdu);
    let (data, sw) = r.split_at(r.len() - 2);
    (data.to_vec(), u16::from_be_bytes([sw[0], sw[1]]))
}

fn internal_authenticate(challenge: &[u8]) -> Vec<u8> {
    apdu_spec::apdu::encode(
        apdu_spec::CLA_ISO,
        ins::INTERNAL_AUTHENTICATE,
        0,
        0,
        challenge,
        256,
        false,
    )
}

#[test]
fn the_signature_verifies_and_the_state_file_is_untouched() {
    for life in [LifeCycle::Keyed, LifeCycle::Active] {
        let dir = tempfile::tempdir().expect("tempdir");
        let path = dir.path().join("card.state");

        // Bring the card to `life` through its own commands.
        let mut storage = FileStorage::open(&path).expect("storage");
        valuecard_card::provision::provision(&mut storage, &test_manufacture()).expect("made");
        let mut card = Card::new(Box::new(storage), options()).expect("card");
        let (key, sw) = send(&mut card, &[0x80, 0x47, 0x00, 0x00, 0x00]);
        assert_eq!(sw, 0x9000);
        let public_key = key[2..].to_vec();
        if life == LifeCycle::Active {
            let mut vars = vectors::initial_vars();
            vars.insert("PUBLIC_KEY".into(), public_key.clone());
            let apdu = vectors::expand(
                "80 50 00 00 ${lc3:PERSONALIZATION} ${PERSONALIZATION}",
                &vars,
            )
            .expect("template");
            assert_eq!(send(&mut card, &apdu).1, 0x9000);
        }
        drop(card);
        let before = fs::read(&path).expect("state file");

        let counter = SharedFs::default();
        let mut card = Card::new(
            Box::new(FileStorage::with_fs(&path, counter.clone()).expect("storage")),
            options(),
        )
        .expect("card");
        assert_eq!(card.applet().persistent().life_cycle(), life);
        let key = cert::decode_public_key(&public_key).expect("a P-256 key");
        let challenges: [&[u8]; 3] = [&[0xA5; 16], &[0x3C; 64], b"center: register card 0001"];
        let mut signatures = Vec::new();
        for challenge in challenges {
            let (signature, sw) = send(&mut card, &internal_authenticate(challenge));
            assert_eq!(sw, 0x9000, "{life:?}");
            assert_eq!(signature.len(), auth::SIGNATURE_LEN);
            assert!(auth::verify(&key, challenge, &signature), "{life:?}");
            signatures.push(signature);
        }
        assert!(
            !auth::verify(&key, challenges[0], &signatures[1]),
            "a signature answers its own challenge only"
        );
        // Refusals write nothing either.
        assert_eq!(send(&mut card, &internal_authenticate(&[0; 15])).1, 0x6700);
        assert_eq!(send(&mut card, &internal_authenticate(&[0; 65])).1, 0x6700);

        assert_eq!(counter.ops(), 0, "{life:?}: no file-system operation");
        drop(card);
        assert_eq!(
            fs::read(&path).expect("state file"),
            before,
            "{life:?}: the state file is unchanged"
        );
    }
}

#[test]
fn a_blank_card_has_nothing_to_sign_with() {
    let mut card = Card::in_memory(options());
    assert_eq!(
        send(&mut card, &internal_authenticate(&[0xA5; 16])),
        (Vec::new(), 0x6985)
    );
}

#[test]
fn a_state_file_whose_key_is_not_a_key_pair_is_corrupt() {
    let mut card = Card::in_memory(options());
    assert_eq!(send(&mut card, &[0x80, 0x47, 0x00, 0x00, 0x00]).1, 0x9000);
    let state = card.applet().persistent().clone();
    let encode = |s: &valuecard_card::state::Persistent| encode(s).expect("serialises");
    assert!(decode(&encode(&state)).is_ok());

    let mut wrong_public = state.clone();
    if let Some(key) = wrong_public.key.as_mut() {
        key.public[32] ^= 1;
    }
    assert!(decode(&encode(&wrong_public)).is_err());

    let mut zero_secret = state;
    if let Some(key) = zero_secret.key.as_mut() {
        key.secret = [0; 32];
    }
    assert!(decode(&encode(&zero_secret)).is_err());
}
