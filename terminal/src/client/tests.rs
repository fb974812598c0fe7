use apdu_spec::anchor::{Anchor, AnchorRole};
use apdu_spec::cert::{self, Certificate};
use p256::ecdsa::SigningKey;

use super::*;
use crate::transport::InProcess;

/// Passes APDUs on and remembers them; may claim an ATR other than the card's.
struct Recorder<T: Transport> {
    inner: T,
    atr: Option<Vec<u8>>,
    sent: Vec<Vec<u8>>,
}

impl<T: Transport> Recorder<T> {
    fn new(inner: T, atr: Option<Vec<u8>>) -> Self {
        Recorder {
            inner,
            atr,
            sent: Vec::new(),
        }
    }
}

impl<T: Transport> Transport for Recorder<T> {
    fn transmit(&mut self, apdu: &[u8]) -> Result<Vec<u8>, TransportError> {
        self.sent.push(apdu.to_vec());
        self.inner.transmit(apdu)
    }
    fn reset(&mut self) -> Result<(), TransportError> {
        self.inner.reset()
    }
    fn power_cycle(&mut self) -> Result<(), TransportError> {
        self.inner.power_cycle()
    }
    fn atr(&self) -> Vec<u8> {
        self.atr.clone().unwrap_or_else(|| self.inner.atr())
    }
    fn name(&self) -> String {
        self.inner.name()
    }
}

/// Our ATR with the extended-length bit cleared (card capabilities `80`: chaining only).
fn atr_without_extended_length() -> Vec<u8> {
    let mut atr = vec![0x3B, 0x85, 0x01, 0x80, 0x73, 0x80, 0x01, 0x80];
    let tck = atr[1..].iter().fold(0, |a, b| a ^ b);
    atr.push(tck);
    assert!(
        !Atr::parse(&atr)
            .expect("valid ATR")
            .capabilities()
            .extended_length
    );
    atr
}

fn key(secret: u8) -> SigningKey {
    SigningKey::from_slice(&[secret; 32]).expect("a P-256 scalar")
}

/// A card made by a test maker for a test root.
fn card(atr: Option<Vec<u8>>) -> Client<Recorder<InProcess>> {
    let made = Manufacture::make(&key(0x55), key(0x44).verifying_key(), &key(0x57));
    let card = InProcess::provisioned(&made, false).expect("a card");
    Client::new(Recorder::new(card, atr))
}

fn personalised(client: &mut Client<Recorder<InProcess>>) {
    client.select().expect("SELECT");
    let public = client.generate_key().expect("GENERATE KEY");
    let (root, issuer, arbiter) = (key(0x44), key(0x11), key(0x22));
    let card_key = cert::decode_public_key(&public).expect("card key");
    let maker = apdu_spec::maker::maker_id(key(0x55).verifying_key());
    client
        .personalize(&Personalization {
            issuer: Anchor::issue(&root, AnchorRole::Issuer, issuer.verifying_key()),
            arbiter: Anchor::issue(&root, AnchorRole::Arbiter, arbiter.verifying_key()),
            certificate: Certificate::issue(&issuer, &card_key, maker, 0, u64::MAX).encode(),
            pin: b"123456".to_vec(),
        })
        .expect("PERSONALIZE");
}

#[test]
fn a_long_body_goes_as_a_chain_when_the_atr_has_no_extended_length() {
    let mut client = card(Some(atr_without_extended_length()));
    // 300 bytes cannot be our AID, so the card answers 6A82, but only once it has the whole
    // chain: a card without chaining would refuse the first link.
    let answer = client
        .transmit(0x00, ins::SELECT, 4, 0, &[0xF0; 300], 256)
        .expect("transmit");
    assert_eq!(answer.sw, 0x6A82);
    let sent = &client.transport().sent;
    assert_eq!(sent.len(), 2, "two links");
    assert_eq!(
        (sent[0][0], sent[0].len()),
        (0x10, 4 + 1 + 255),
        "first link: chaining bit, 255 bytes"
    );
    assert_eq!(
        (sent[1][0], sent[1].len()),
        (0x00, 4 + 1 + 45 + 1),
        "last link: plain CLA, the rest and Le"
    );
}

#[test]
fn a_long_body_goes_in_one_extended_apdu_when_the_atr_allows() {
    let mut client = card(None);
    let answer = client
        .transmit(0x00, ins::SELECT, 4, 0, &[0xF0; 300], 256)
        .expect("transmit");
    assert_eq!(answer.sw, 0x6A82);
    let sent = &client.transport().sent;
    assert_eq!(sent.len(), 1);
    assert_eq!(&sent[0][4..7], &[0x00, 0x01, 0x2C], "extended Lc");
}

#[test]
fn a_refused_link_ends_the_chain() {
    let mut client = card(Some(atr_without_extended_length()));
    // CLA 0x84 asks for secure messaging: the first link is refused with 6882.
    let answer = client
        .transmit(0x84, ins::PERSONALIZE, 0, 0, &[0; 600], 0)
        .expect("transmit");
    assert_eq!(answer.sw, 0x6882);
    assert_eq!(client.transport().sent.len(), 1);
}

#[test]
fn get_response_collects_more_than_256_bytes() {
    for atr in [None, Some(atr_without_extended_length())] {
        let mut client = card(atr);
        personalised(&mut client);
        client.transport().sent.clear();
        // Case 1: the card announces everything with 6100.
        let answer = client
            .transmit(0x00, ins::GET_DATA, 0x00, 0x6E, &[], 0)
            .expect("transmit");
        assert_eq!(answer.sw, 0x9000);
        assert!(answer.data.len() > 256, "{} bytes", answer.data.len());
        let info = CardInfo::decode(&answer.data).expect("a whole 6E template");
        assert_eq!(info.life_cycle, apdu_spec::commands::LifeCycle::Active);
        let get_responses = client
            .transport()
            .sent
            .iter()
            .filter(|a| a[1] == ins::GET_RESPONSE)
            .count();
        assert!(get_responses >= 2, "{get_responses} GET RESPONSE");
        assert_eq!(
            client.info().expect("info").counters.pin_tries,
            apdu_spec::PIN_MAX_TRIES
        );
    }
}

#[test]
fn pin_status_words_become_pin_states() {
    let mut client = card(None);
    personalised(&mut client);
    assert_eq!(
        client.pin_tries().expect("tries"),
        PinStatus::NotVerified { tries_left: 3 }
    );
    assert_eq!(
        client.verify_pin(b"999999").expect("verify"),
        PinStatus::NotVerified { tries_left: 2 }
    );
    assert_eq!(
        client.verify_pin(b"123456").expect("verify"),
        PinStatus::Verified
    );
    assert_eq!(
        client.change_pin(b"123456", b"4321").expect("change"),
        PinStatus::Verified
    );
    assert_eq!(
        client.verify_pin(b"4321").expect("verify"),
        PinStatus::Verified
    );
    match client.change_pin(b"4321", b"12") {
        Err(ClientError::Card(e)) => assert_eq!(e.sw, 0x6A80),
        other => panic!("{other:?}"),
    }
}

#[test]
fn card_errors_say_what_to_do() {
    let mut client = card(None);
    client.select().expect("SELECT");
    match client.verify_pin(b"123456") {
        Err(ClientError::Card(e)) => {
            assert_eq!(
                e,
                CardError {
                    command: "VERIFY",
                    sw: 0x6985
                }
            );
            assert!(e.to_string().contains("valuecard card register"), "{e}");
        }
        other => panic!("{other:?}"),
    }
}

/// A card that answers 6C05 unless Le is 5, and then `hello`.
#[derive(Default)]
struct WantsLe5 {
    sent: Vec<Vec<u8>>,
}

impl Transport for WantsLe5 {
    fn transmit(&mut self, apdu: &[u8]) -> Result<Vec<u8>, TransportError> {
        self.sent.push(apdu.to_vec());
        Ok(match Apdu::parse(apdu) {
            Ok(a) if a.ne == 5 => b"hello\x90\x00".to_vec(),
            _ => vec![0x6C, 0x05],
        })
    }
    fn reset(&mut self) -> Result<(), TransportError> {
        Ok(())
    }
    fn power_cycle(&mut self) -> Result<(), TransportError> {
        Ok(())
    }
    fn atr(&self) -> Vec<u8> {
        apdu_spec::ATR.to_vec()
    }
    fn name(&self) -> String {
        "fake".into()
    }
}

#[test]
fn six_c_repeats_the_command_with_the_le_the_card_asks_for() {
    let mut client = Client::new(WantsLe5::default());
    let answer = client
        .transmit(0x80, 0x01, 2, 3, &[0xAA], 256)
        .expect("transmit");
    assert_eq!((answer.data.as_slice(), answer.sw), (&b"hello"[..], 0x9000));
    assert_eq!(
        client.transport().sent,
        vec![
            vec![0x80, 0x01, 2, 3, 1, 0xAA, 0x00],
            vec![0x80, 0x01, 2, 3, 1, 0xAA, 0x05]
        ]
    );

    // The raw path does nothing of the sort.
    let mut raw = Client::new(WantsLe5::default());
    assert_eq!(
        raw.transmit_raw(&[0x80, 0x01, 2, 3, 0]).expect("raw").sw,
        0x6C05
    );
    assert_eq!(raw.transport().sent.len(), 1);
}

#[test]
fn six_c_is_retried_only_once() {
    let mut client = Client::new(WantsLe5::default());
    // Extended Le 0005 is still Ne 5 for the fake, so make it insist with Le 6 instead.
    let answer = client
        .transmit_apdu(&[0x80, 0x01, 0, 0, 0x06])
        .expect("transmit");
    assert_eq!(answer.sw, 0x9000);
    struct Stubborn;
    impl Transport for Stubborn {
        fn transmit(&mut self, _: &[u8]) -> Result<Vec<u8>, TransportError> {
            Ok(vec![0x6C, 0x05])
        }
        fn reset(&mut self) -> Result<(), TransportError> {
            Ok(())
        }
        fn power_cycle(&mut self) -> Result<(), TransportError> {
            Ok(())
        }
        fn atr(&self) -> Vec<u8> {
            Vec::new()
        }
        fn name(&self) -> String {
            "stubborn".into()
        }
    }
    assert_eq!(
        Client::new(Stubborn)
            .transmit_apdu(&[0x80, 0x01, 0, 0, 0x06])
            .expect("transmit")
            .sw,
        0x6C05
    );
}

#[test]
fn internal_authenticate_signs_the_challenge_with_the_card_key() {
    let mut client = card(None);
    client.select().expect("SELECT");
    match client.internal_authenticate(&[0xA5; 16]) {
        Err(ClientError::Card(e)) => {
            assert_eq!(
                e,
                CardError {
                    command: commands::INTERNAL_AUTHENTICATE.name,
                    sw: 0x6985
                }
            );
            assert!(e.to_string().contains("no key"), "{e}");
        }
        other => panic!("a blank card has no key: {other:?}"),
    }

    let key = client.generate_key().expect("GENERATE KEY");
    let key = cert::decode_public_key(&key).expect("card key");
    let challenge: Vec<u8> = (0..32).collect();
    client.transport().sent.clear();
    let signature = client
        .internal_authenticate(&challenge)
        .expect("INTERNAL AUTHENTICATE");
    assert_eq!(
        client.transport().sent,
        vec![
            [
                &[apdu_spec::CLA_ISO, ins::INTERNAL_AUTHENTICATE, 0, 0, 32][..],
                &challenge,
                &[0],
            ]
            .concat()
        ],
        "00 88 00 00 Lc <challenge> 00"
    );
    assert!(auth::verify(&key, &challenge, &signature));
    let other = client
        .internal_authenticate(&[0x5A; 32])
        .expect("INTERNAL AUTHENTICATE");
    assert!(auth::verify(&key, &[0x5A; 32], &other));
    assert!(
        !auth::verify(&key, &challenge, &other),
        "another challenge's signature does not verify"
    );
    assert!(!auth::verify(&key, &[0x5A; 32], &signature));

    // Active, without the PIN verified: still signs.
    let mut client = card(Some(atr_without_extended_length()));
    personalised(&mut client);
    let key = cert::decode_public_key(&client.public_key().expect("key")).expect("card key");
    let challenge = [0x3C; auth::CHALLENGE_MAX_LEN];
    let signature = client
        .internal_authenticate(&challenge)
        .expect("INTERNAL AUTHENTICATE");
    assert!(auth::verify(&key, &challenge, &signature));
    for len in [auth::CHALLENGE_MIN_LEN - 1, auth::CHALLENGE_MAX_LEN + 1] {
        match client.internal_authenticate(&vec![0; len]) {
            Err(ClientError::Card(e)) => {
                assert_eq!(e.sw, 0x6700, "{len} bytes");
                assert!(e.to_string().contains("16 to 64 bytes"), "{e}");
            }
            other => panic!("{len} bytes: {other:?}"),
        }
    }
}
