//! RFC 9474, Appendix A: the published test vector for RSABSSA-SHA384-PSS-Randomized, the
//! variant valuecard uses, run through the code paths the parties use: the terminal's
//! `DenominationPublicKey::blind` and `finalize`, the bank's
//! `DenominationSecretKey::blind_sign`, and the center's `verify`.
//!
//! The vector file is the RFC's, as carried by the blind-rsa-signatures crate's test suite.
//! The RFC fixes the message randomizer, the PSS salt and the blinding inverse; a scripted
//! random source hands them to `blind` in the order RFC 9474's Blind draws them.

use rsa::BoxedUint;
use rsa::rand_core::{TryCryptoRng, TryRng};
use serde::Deserialize;
use valuecard_protocol::token::{DenominationSecretKey, TokenError};

#[derive(Deserialize)]
struct Vector {
    name: String,
    p: String,
    q: String,
    n: String,
    e: String,
    d: String,
    msg: String,
    msg_prefix: String,
    salt: String,
    inv: String,
    blinded_msg: String,
    blind_sig: String,
    sig: String,
}

fn uint(s: &str) -> BoxedUint {
    BoxedUint::from_str_radix_vartime(s.trim_start_matches("0x"), 16).expect("hex integer")
}

fn bytes(s: &str) -> Vec<u8> {
    hex::decode(s).expect("hex bytes")
}

/// Hands out the scripted values, one per request, and fails the test if asked for more.
struct Scripted(Vec<Vec<u8>>);

impl TryRng for Scripted {
    type Error = core::convert::Infallible;
    fn try_next_u32(&mut self) -> Result<u32, Self::Error> {
        panic!("blind drew an unscripted u32")
    }
    fn try_next_u64(&mut self) -> Result<u64, Self::Error> {
        panic!("blind drew an unscripted u64")
    }
    fn try_fill_bytes(&mut self, dst: &mut [u8]) -> Result<(), Self::Error> {
        assert!(
            !self.0.is_empty(),
            "blind drew more random values than RFC 9474 says"
        );
        let next = self.0.remove(0);
        assert_eq!(
            next.len(),
            dst.len(),
            "blind drew a value of an unexpected length"
        );
        dst.copy_from_slice(&next);
        Ok(())
    }
}
impl TryCryptoRng for Scripted {}

fn vector() -> Vector {
    let all: Vec<Vector> =
        serde_json::from_str(include_str!("rfc9474-pss-randomized.json")).expect("vector file");
    assert_eq!(all.len(), 1);
    let v = all.into_iter().next().expect("one vector");
    assert_eq!(v.name, "RSABSSA-SHA384-PSS-Randomized");
    v
}

fn bank_key(v: &Vector) -> DenominationSecretKey {
    let key = rsa::RsaPrivateKey::from_components(
        uint(&v.n),
        uint(&v.e),
        uint(&v.d),
        vec![uint(&v.p), uint(&v.q)],
    )
    .expect("the vector's key");
    DenominationSecretKey::from_rsa(key).expect("a valid RSA-PSS key")
}

#[test]
fn published_vector_passes_blind_sign_finalize_verify() {
    let v = vector();
    let bank = bank_key(&v);
    let public = bank.public().clone();
    let n = uint(&v.n);

    // The blinding factor r is the inverse of the published `inv`; the crate draws it as
    // little-endian bytes of the modulus' size.
    let r = uint(&v.inv)
        .invert_mod(&n.to_nz().expect("non-zero modulus"))
        .expect("inv is invertible")
        .to_le_bytes()
        .to_vec();
    let mut rng = Scripted(vec![bytes(&v.msg_prefix), bytes(&v.salt), r]);
    let msg = bytes(&v.msg);

    // Terminal: blind.
    let blinded = public.blind(&mut rng, &msg).expect("blind");
    assert!(rng.0.is_empty(), "blind used every scripted value");
    assert_eq!(blinded.randomizer.to_vec(), bytes(&v.msg_prefix));
    assert_eq!(blinded.blinded_message, bytes(&v.blinded_msg));

    // Bank: blind-sign.
    let blind_sig = bank
        .blind_sign(&blinded.blinded_message)
        .expect("blind sign");
    assert_eq!(blind_sig, bytes(&v.blind_sig));

    // Terminal: finalize (which verifies), then the center: verify.
    let sig = public
        .finalize(&blind_sig, &blinded, &msg)
        .expect("finalize");
    assert_eq!(sig, bytes(&v.sig));
    public
        .verify(&sig, &blinded.randomizer, &msg)
        .expect("verify");
}

#[test]
fn published_signature_fails_for_another_message_randomizer_or_blind_signature() {
    let v = vector();
    let bank = bank_key(&v);
    let public = bank.public();
    let msg = bytes(&v.msg);
    let sig = bytes(&v.sig);
    let mut randomizer = [0u8; 32];
    randomizer.copy_from_slice(&bytes(&v.msg_prefix));

    public
        .verify(&sig, &randomizer, &msg)
        .expect("the published signature verifies");

    let mut other_msg = msg.clone();
    other_msg[0] ^= 1;
    assert_eq!(
        public.verify(&sig, &randomizer, &other_msg),
        Err(TokenError::BadSignature)
    );

    let mut other_randomizer = randomizer;
    other_randomizer[31] ^= 1;
    assert_eq!(
        public.verify(&sig, &other_randomizer, &msg),
        Err(TokenError::BadSignature)
    );

    let mut other_sig = sig.clone();
    other_sig[100] ^= 1;
    assert_eq!(
        public.verify(&other_sig, &randomizer, &msg),
        Err(TokenError::BadSignature)
    );

    // A blind signature that is not the bank's does not finalize.
    let mut rng = rand::rng();
    let blinded = public.blind(&mut rng, &msg).expect("blind");
    let mut forged = bank
        .blind_sign(&blinded.blinded_message)
        .expect("blind sign");
    forged[7] ^= 1;
    assert_eq!(
        public.finalize(&forged, &blinded, &msg),
        Err(TokenError::BadBlindSignature)
    );
    // The bank refuses a blinded message of the wrong size.
    assert_eq!(
        bank.blind_sign(&blinded.blinded_message[1..]),
        Err(TokenError::BadBlindedMessage)
    );
}
