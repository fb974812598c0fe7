//! Conformance vectors: a declarative format (TOML, parsed with serde) and the pure parts of
//! running one (expanding templates, checking responses). The terminal drives them over any
//! transport; see `SPEC.md`, "Conformance vectors", for the format.

use std::collections::BTreeMap;
use std::sync::{Mutex, OnceLock};

use p256::ecdsa::SigningKey;
use serde::Deserialize;

use crate::anchor::{Anchor, AnchorRole};
use crate::apdu::Response;
use crate::blocklist::{BlockEntry, BlockList};
use crate::commands::LifeCycle;
use crate::exchange::{self, Outcome};
use crate::maker::{MakerCertificate, Manufacture};
use crate::objects::Personalization;
use crate::units::{self, SignedMessage, UnitMessage};
use crate::{cert, status, tlv};

/// Every vector file, embedded so that the CLI can run them without the source tree.
pub const FILES: &[(&str, &str)] = &[
    ("cases.toml", include_str!("../vectors/cases.toml")),
    ("lengths.toml", include_str!("../vectors/lengths.toml")),
    ("chaining.toml", include_str!("../vectors/chaining.toml")),
    (
        "get-response.toml",
        include_str!("../vectors/get-response.toml"),
    ),
    ("select.toml", include_str!("../vectors/select.toml")),
    (
        "class-ins-params.toml",
        include_str!("../vectors/class-ins-params.toml"),
    ),
    ("lifecycle.toml", include_str!("../vectors/lifecycle.toml")),
    ("pin.toml", include_str!("../vectors/pin.toml")),
    (
        "internal-authenticate.toml",
        include_str!("../vectors/internal-authenticate.toml"),
    ),
    ("attest.toml", include_str!("../vectors/attest.toml")),
    ("units.toml", include_str!("../vectors/units.toml")),
    ("exchange.toml", include_str!("../vectors/exchange.toml")),
];

/// The PIN the conformance preconditions install.
pub const TEST_PIN: &[u8] = b"123456";
/// Issuer and arbiter keys of the conformance preconditions: test keys, published here on
/// purpose, never used outside the conformance suite.
const TEST_ISSUER_SECRET: [u8; 32] = [0x11; 32];
const TEST_ARBITER_SECRET: [u8; 32] = [0x22; 32];
const TEST_OTHER_ISSUER_SECRET: [u8; 32] = [0x33; 32];
/// The scheme root whose anchors the preconditions' PERSONALIZE carries, the card maker, and
/// the attestation key of the card under test: TEST RESET's manufacture record installs them
/// (`MANUFACTURE`).
const TEST_ROOT_SECRET: [u8; 32] = [0x44; 32];
const TEST_MAKER_SECRET: [u8; 32] = [0x55; 32];
const TEST_ATTESTATION_SECRET: [u8; 32] = [0x57; 32];
/// The key of the *peer*: a card simulated by the vectors, the other side of an exchange
/// with the card under test. Its certificate is the test issuer's.
const TEST_PEER_SECRET: [u8; 32] = [0x66; 32];
/// A second card maker, which made no card of the vectors: a certificate of the peer can
/// name it, and a block list can block it.
const TEST_OTHER_MAKER_SECRET: [u8; 32] = [0x56; 32];

#[derive(Clone, Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct VectorFile {
    #[serde(rename = "vector")]
    pub vectors: Vec<Vector>,
}

/// The card state a vector starts from.
#[derive(Clone, Copy, Debug, Deserialize, PartialEq, Eq)]
#[serde(rename_all = "lowercase")]
pub enum Given {
    /// No key: TEST RESET, then SELECT.
    Blank,
    /// Key made (`PUBLIC_KEY` and `CARD_ID` are bound): blank, then GENERATE KEY.
    Keyed,
    /// Personalised with the test keys and [`TEST_PIN`]: keyed, then PERSONALIZE.
    Active,
}

impl Given {
    pub fn life_cycle(self) -> LifeCycle {
        match self {
            Given::Blank => LifeCycle::Blank,
            Given::Keyed => LifeCycle::Keyed,
            Given::Active => LifeCycle::Active,
        }
    }
}

#[derive(Clone, Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Vector {
    pub name: String,
    pub given: Given,
    /// A malformed-input vector: its commands also seed the fuzzer's corpus.
    #[serde(default)]
    pub malformed: bool,
    #[serde(rename = "step")]
    pub steps: Vec<Step>,
}

#[derive(Clone, Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Step {
    /// A command APDU as a hex template (see [`expand`]).
    pub send: Option<String>,
    /// Instead of a command: a warm reset of the card.
    #[serde(default)]
    pub reset: bool,
    /// Instead of a command: power the card off and on.
    #[serde(default)]
    pub power_cycle: bool,
    /// Expected status word, with `x` wildcard nibbles.
    pub sw: Option<String>,
    /// Expected data, exactly (a hex template).
    pub data: Option<String>,
    /// Expected data length.
    pub data_len: Option<usize>,
    /// Expected data, hex with `xx` for any byte.
    pub data_mask: Option<String>,
    /// TLV paths that must be present in the data, e.g. `6F/A5/C4`.
    #[serde(default)]
    pub tlv: Vec<String>,
    /// Objects the data must hold, exactly as sent (tag and length included): TLV path to
    /// a hex template, e.g. `{ "EB/EC" = "${LOAD}" }`.
    #[serde(default)]
    pub tlv_object: BTreeMap<String, String>,
    /// Variables to bind from the data: `data` (all of it), `tlv:6E/C1` (an object's value)
    /// or `tlv_object:EC/E7` (a whole object, as sent); or `expr:TEMPLATE`, a hex template's
    /// expansion, bound after the others (a value computed from earlier ones).
    #[serde(default)]
    pub capture: BTreeMap<String, String>,
    /// The data must be an INTERNAL AUTHENTICATE signature (see [`crate::auth`]).
    pub auth_signature: Option<AuthSignature>,
    /// The data must be a signed units message (see [`crate::units`]).
    pub signed: Option<Signed>,
    /// The data must be an ATTEST answer that verifies (see [`crate::maker`]).
    pub attestation: Option<AttestationCheck>,
    /// The data must hold these exchange signatures of a card over `a ‖ s2` (see
    /// [`crate::exchange`]). Checked after this step's captures, so they may name them.
    #[serde(default)]
    pub session_signatures: Vec<SessionSignature>,
    /// The data's `83` (r2) must be the secret behind this s2, a hex template:
    /// SHA-256(r2) = s2. Checked after this step's captures.
    pub commitment: Option<String>,
    pub note: Option<String>,
}

/// An expected exchange signature in an answer: the 64 bytes at `path` verify under `key`
/// over `a ‖ s2` in the exchange domain named (`exchange::verify`).
#[derive(Clone, Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct SessionSignature {
    /// The TLV path of the signature in the data, e.g. `8A`.
    pub path: String,
    /// The short name of an exchange domain: `agree`, `confirm`, `cancel` or `resolve`.
    pub domain: String,
    /// The signer's public key, compressed SEC1, as a hex template.
    pub key: String,
    /// The agreement a, as a hex template.
    pub a: String,
    /// s2, as a hex template.
    pub s2: String,
}

/// An expected ATTEST answer: an `E9` attestation whose maker certificate verifies under
/// `maker` and whose signature verifies over `key ‖ challenge` (`maker::Attestation::verify`).
#[derive(Clone, Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct AttestationCheck {
    /// The maker's public key, compressed SEC1, as a hex template: usually
    /// `${MAKER_PUBLIC_KEY}`.
    pub maker: String,
    /// The card's public key it vouches for, as a hex template: usually `${PUBLIC_KEY}`.
    pub key: String,
    /// The challenge the command sent, as a hex template.
    pub challenge: String,
}

/// An expected INTERNAL AUTHENTICATE answer: a signature over `challenge` that verifies
/// under `key` ([`crate::auth::verify`]).
#[derive(Clone, Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct AuthSignature {
    /// The card's public key, compressed SEC1, as a hex template: usually `${PUBLIC_KEY}`.
    pub key: String,
    /// The challenge the command sent, as a hex template.
    pub challenge: String,
}

/// An expected answer of LOAD REQUEST, LOAD CANCEL or UNLOAD: exactly one
/// `wrapper { message, 9E signature }`, where the message is a load request (`E7`) or an
/// unload receipt (`E8`) that decodes, and the signature verifies under `key` over the
/// message's bytes, as they were sent, in `domain`.
#[derive(Clone, Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Signed {
    /// The wrapper tag in hex: `EC`, `ED` or `EE`.
    pub wrapper: String,
    /// The short name of a units domain, e.g. `load-request` for `valuecard/load-request/v1`.
    pub domain: String,
    /// The signer's public key, compressed SEC1, as a hex template: usually `${PUBLIC_KEY}`.
    pub key: String,
    /// The message's bytes exactly, as a hex template (optional).
    pub message: Option<String>,
}

/// The domains that `${issuer_sign:...}` and [`Signed`] name by their short names: the
/// units domains, `valuecard/<name>/v1`.
const UNIT_DOMAINS: &[&str] = &[
    units::domains::LOAD_REQUEST,
    units::domains::LOAD_AUTH,
    units::domains::LOAD_CANCEL,
    units::domains::LOAD_CANCEL_ACK,
    units::domains::UNLOAD,
    units::domains::UNLOAD_ACK,
    units::domains::TICKET,
];

/// A units domain by its short name: `load-auth` is `valuecard/load-auth/v1`.
pub fn unit_domain(name: &str) -> Option<&'static str> {
    short_domain(UNIT_DOMAINS, name)
}

/// The card's exchange domains, by their short names in `${peer_sign:...}` and
/// [`SessionSignature`].
const SESSION_DOMAINS: &[&str] = &[
    exchange::domains::AGREE,
    exchange::domains::CONFIRM,
    exchange::domains::CANCEL,
    exchange::domains::RESOLVE,
];

/// An exchange domain of a card's signature by its short name: `agree` is
/// `valuecard/agree/v1`.
pub fn session_domain(name: &str) -> Option<&'static str> {
    short_domain(SESSION_DOMAINS, name)
}

fn short_domain(domains: &[&'static str], name: &str) -> Option<&'static str> {
    domains.iter().copied().find(|d| {
        d.strip_prefix("valuecard/")
            .and_then(|d| d.rsplit_once("/v"))
            .map(|(short, _)| short)
            == Some(name)
    })
}

/// Loads every embedded vector file.
pub fn all() -> Result<Vec<(String, Vector)>, String> {
    let mut out = Vec::new();
    for (file, text) in FILES {
        let parsed: VectorFile = toml::from_str(text).map_err(|e| format!("{file}: {e}"))?;
        out.extend(parsed.vectors.into_iter().map(|v| (file.to_string(), v)));
    }
    Ok(out)
}

/// Variables of a running vector: name to bytes.
pub type Vars = BTreeMap<String, Vec<u8>>;

/// The variables every vector starts with.
pub fn initial_vars() -> Vars {
    let mut vars = Vars::new();
    vars.insert("AID".into(), crate::AID.to_vec());
    vars.insert("PIN".into(), TEST_PIN.to_vec());
    vars
}

/// A test key. Each is made once: making a P-256 signing key costs a scalar
/// multiplication, and the property tests expand templates hundreds of thousands of times.
fn test_key(secret: &[u8; 32]) -> SigningKey {
    type Cache = Mutex<Vec<([u8; 32], SigningKey)>>;
    static KEYS: OnceLock<Cache> = OnceLock::new();
    let make = || {
        SigningKey::from_slice(secret)
            .unwrap_or_else(|_| panic!("test key constants are valid scalars"))
    };
    let Ok(mut keys) = KEYS.get_or_init(Cache::default).lock() else {
        return make();
    };
    if let Some((_, key)) = keys.iter().find(|(s, _)| s == secret) {
        return key.clone();
    }
    let key = make();
    keys.push((*secret, key.clone()));
    key
}

/// The maker id of the second test maker.
fn other_maker_id() -> [u8; 32] {
    crate::maker::maker_id(test_key(&TEST_OTHER_MAKER_SECRET).verifying_key())
}

/// Variables computed from the test keys: the manufacture record, the anchors, the block
/// lists, the peer's (`PEER_...`), and for the card whose public key is bound to
/// `PUBLIC_KEY`, its certificate and the PERSONALIZE bodies.
fn derived(name: &str, vars: &Vars) -> Option<Vec<u8>> {
    // Those that depend on no variable are the same every time (ECDSA here is
    // deterministic): made once.
    type Cache = Mutex<BTreeMap<String, Vec<u8>>>;
    static FIXED: OnceLock<Cache> = OnceLock::new();
    let cache = FIXED.get_or_init(Cache::default);
    if let Some(value) = cache.lock().ok().and_then(|c| c.get(name).cloned()) {
        return Some(value);
    }
    if let Some(value) = fixed(name) {
        if let Ok(mut c) = cache.lock() {
            c.insert(name.to_string(), value.clone());
        }
        return Some(value);
    }
    for_card(name, vars)
}

/// The derived variables that depend on no other variable.
fn fixed(name: &str) -> Option<Vec<u8>> {
    let issuer = test_key(&TEST_ISSUER_SECRET);
    let arbiter = test_key(&TEST_ARBITER_SECRET);
    let root = test_key(&TEST_ROOT_SECRET);
    let maker = test_key(&TEST_MAKER_SECRET);
    let maker_id = crate::maker::maker_id(maker.verifying_key());
    let peer = test_key(&TEST_PEER_SECRET);
    let peer_certificate = |signer: &SigningKey| {
        cert::Certificate::issue(signer, peer.verifying_key(), maker_id, 0, u64::MAX)
    };
    let anchor = |role, key: &SigningKey| Anchor::issue(&root, role, key.verifying_key());
    match name {
        "MANUFACTURE" => {
            let made = Manufacture::make(
                &maker,
                root.verifying_key(),
                &test_key(&TEST_ATTESTATION_SECRET),
            );
            return Some(made.encode());
        }
        "ROOT_KEY" => return Some(cert::encode_public_key(root.verifying_key()).to_vec()),
        "MAKER_ID" => return Some(maker_id.to_vec()),
        "MAKER_PUBLIC_KEY" => return Some(cert::encode_public_key(maker.verifying_key()).to_vec()),
        "MAKER_CERT" => {
            let attestation = test_key(&TEST_ATTESTATION_SECRET);
            return Some(MakerCertificate::issue(&maker, attestation.verifying_key()).encode());
        }
        "ISSUER_ANCHOR" => return Some(anchor(AnchorRole::Issuer, &issuer).encode()),
        "ARBITER_ANCHOR" => return Some(anchor(AnchorRole::Arbiter, &arbiter).encode()),
        "BLOCK_LIST" => return Some(BlockList::sign(&issuer, 1, &[]).encode()),
        "BLOCK_LIST_PEER" => {
            let peer_id = peer_certificate(&issuer).card_id;
            return Some(BlockList::sign(&issuer, 2, &[BlockEntry::Card(peer_id)]).encode());
        }
        "BLOCK_LIST_MAKER" => {
            return Some(BlockList::sign(&issuer, 3, &[BlockEntry::Maker(maker_id)]).encode());
        }
        "BLOCK_LIST_FOREIGN" => {
            return Some(BlockList::sign(&test_key(&TEST_OTHER_ISSUER_SECRET), 4, &[]).encode());
        }
        "PEER_PUBLIC_KEY" => return Some(cert::encode_public_key(peer.verifying_key()).to_vec()),
        "PEER_ID" => return Some(peer_certificate(&issuer).card_id.to_vec()),
        "PEER_CERT" => return Some(peer_certificate(&issuer).encode()),
        "PEER_CERT_FOREIGN" => {
            return Some(peer_certificate(&test_key(&TEST_OTHER_ISSUER_SECRET)).encode());
        }
        "OTHER_MAKER_ID" => return Some(other_maker_id().to_vec()),
        // The peer's certificate by the test issuer, naming the other maker.
        "PEER_CERT_OTHER_MAKER" => {
            let c = cert::Certificate::issue(
                &issuer,
                peer.verifying_key(),
                other_maker_id(),
                0,
                u64::MAX,
            );
            return Some(c.encode());
        }
        "BLOCK_LIST_OTHER_MAKER" => {
            let entries = [BlockEntry::Maker(other_maker_id())];
            return Some(BlockList::sign(&issuer, 6, &entries).encode());
        }
        _ => {}
    }
    None
}

/// The derived variables of the card whose public key is bound to `PUBLIC_KEY`: its
/// certificate, the block list that names it, and the PERSONALIZE bodies.
fn for_card(name: &str, vars: &Vars) -> Option<Vec<u8>> {
    let issuer = test_key(&TEST_ISSUER_SECRET);
    let arbiter = test_key(&TEST_ARBITER_SECRET);
    let root = test_key(&TEST_ROOT_SECRET);
    let maker_id = crate::maker::maker_id(test_key(&TEST_MAKER_SECRET).verifying_key());
    let peer = test_key(&TEST_PEER_SECRET);
    let peer_certificate = |signer: &SigningKey| {
        cert::Certificate::issue(signer, peer.verifying_key(), maker_id, 0, u64::MAX)
    };
    let anchor = |role, key: &SigningKey| Anchor::issue(&root, role, key.verifying_key());
    let card_key = cert::decode_public_key(vars.get("PUBLIC_KEY")?)?;
    let certificate = |signer: &SigningKey| {
        cert::Certificate::issue(signer, &card_key, maker_id, 0, u64::MAX).encode()
    };
    if name == "CERT" {
        // The certificate PERSONALIZATION installs: ECDSA here is deterministic.
        return Some(certificate(&issuer));
    }
    if name == "BLOCK_LIST_SELF" {
        let id = crate::card_id(&cert::encode_public_key(&card_key));
        return Some(BlockList::sign(&issuer, 5, &[BlockEntry::Card(id)]).encode());
    }
    let other = test_key(&TEST_OTHER_ISSUER_SECRET);
    let body = |issuer_anchor: Anchor, arbiter_anchor: Anchor, certificate, pin: &[u8]| {
        Personalization {
            issuer: issuer_anchor,
            arbiter: arbiter_anchor,
            certificate,
            pin: pin.to_vec(),
        }
        .encode()
    };
    let (issuer_anchor, arbiter_anchor) = (
        anchor(AnchorRole::Issuer, &issuer),
        anchor(AnchorRole::Arbiter, &arbiter),
    );
    Some(match name {
        "PERSONALIZATION" => body(
            issuer_anchor,
            arbiter_anchor,
            certificate(&issuer),
            TEST_PIN,
        ),
        // The certificate is signed by an issuer other than the one the body installs.
        "PERSONALIZATION_FOREIGN_CERT" => {
            body(issuer_anchor, arbiter_anchor, certificate(&other), TEST_PIN)
        }
        "PERSONALIZATION_BAD_PIN" => {
            body(issuer_anchor, arbiter_anchor, certificate(&issuer), b"12ab")
        }
        // A terminal's own issuer key, anchored by a root that is not the card's, with a
        // certificate by that key.
        "PERSONALIZATION_OWN_ISSUER" => body(
            Anchor::issue(&other, AnchorRole::Issuer, other.verifying_key()),
            arbiter_anchor,
            certificate(&other),
            TEST_PIN,
        ),
        // A terminal's own arbiter key, anchored by a root that is not the card's.
        "PERSONALIZATION_OWN_ARBITER" => body(
            issuer_anchor,
            Anchor::issue(&other, AnchorRole::Arbiter, other.verifying_key()),
            certificate(&issuer),
            TEST_PIN,
        ),
        // The certificate of another card (the peer), by the right issuer.
        "PERSONALIZATION_OTHER_CARD" => body(
            issuer_anchor,
            arbiter_anchor,
            peer_certificate(&issuer).encode(),
            TEST_PIN,
        ),
        _ => return None,
    })
}

/// Looks a variable up, computing the derived ones.
pub fn lookup(name: &str, vars: &Vars) -> Option<Vec<u8>> {
    vars.get(name).cloned().or_else(|| derived(name, vars))
}

/// Expands a hex template: hex digits (spaces ignored) and `${...}` expressions:
/// `${NAME}`, `${NAME[a..b]}` or `${NAME[a..]}` (a byte slice), `${lc:EXPR}` (the one-byte
/// length of EXPR), `${lc3:EXPR}` (its extended length, `00 L1 L2`), `${fill:N:XX}` (N
/// bytes of XX).
pub fn expand(template: &str, vars: &Vars) -> Result<Vec<u8>, String> {
    let mut hex_digits = String::new();
    let mut rest = template;
    while let Some(start) = rest.find("${") {
        hex_digits.push_str(&rest[..start]);
        let end = rest[start..]
            .find('}')
            .ok_or_else(|| format!("unclosed ${{ in {template:?}"))?
            + start;
        let value = expand_expr(&rest[start + 2..end], vars)?;
        hex_digits.push_str(&hex::encode(value));
        rest = &rest[end + 1..];
    }
    hex_digits.push_str(rest);
    let cleaned: String = hex_digits.chars().filter(|c| !c.is_whitespace()).collect();
    hex::decode(&cleaned).map_err(|e| format!("bad hex in {template:?}: {e}"))
}

fn expand_expr(expr: &str, vars: &Vars) -> Result<Vec<u8>, String> {
    if let Some(spec) = expr.strip_prefix("load_auth:") {
        let [request, list] = parts(spec, expr)?;
        let list = BlockList::decode(&expand_expr(list, vars)?)
            .map_err(|e| format!("{list} in {expr} is not a block list: {e}"))?;
        let message = units::authorised(&expand_expr(request, vars)?, list.version);
        return Ok(units::sign(
            &test_key(&TEST_ISSUER_SECRET),
            units::domains::LOAD_AUTH,
            &message,
        )
        .to_vec());
    }
    for (prefix, secret) in [
        ("issuer_sign:", &TEST_ISSUER_SECRET),
        ("other_issuer_sign:", &TEST_OTHER_ISSUER_SECRET),
    ] {
        if let Some(spec) = expr.strip_prefix(prefix) {
            let (domain, inner) = spec
                .split_once(':')
                .ok_or_else(|| format!("bad {prefix} expression: {expr}"))?;
            let domain =
                unit_domain(domain).ok_or_else(|| format!("unknown units domain in {expr}"))?;
            let message = expand_expr(inner, vars)?;
            return Ok(units::sign(&test_key(secret), domain, &message).to_vec());
        }
    }
    for (prefix, owner) in [
        ("ticket_sign:", "CARD_ID"),
        ("peer_ticket_sign:", "PEER_ID"),
    ] {
        if let Some(spec) = expr.strip_prefix(prefix) {
            let (code, serial) = spec
                .split_once(':')
                .ok_or_else(|| format!("bad {prefix} expression: {expr}"))?;
            let serial = hex::decode(serial).map_err(|_| format!("bad serial in {expr}"))?;
            let owner: [u8; 32] = lookup(owner, vars)
                .and_then(|id| id.try_into().ok())
                .ok_or_else(|| format!("{expr} needs a 32-byte {owner}"))?;
            return Ok(
                units::sign_ticket(&test_key(&TEST_ISSUER_SECRET), code, &serial, &owner).to_vec(),
            );
        }
    }
    if let Some(spec) = expr.strip_prefix("peer_sign:") {
        let [domain, a, s2] = parts(spec, expr)?;
        let domain =
            session_domain(domain).ok_or_else(|| format!("unknown exchange domain in {expr}"))?;
        let (a, s2) = (array32(a, vars, expr)?, array32(s2, vars, expr)?);
        return Ok(exchange::sign(&test_key(&TEST_PEER_SECRET), domain, &a, &s2).to_vec());
    }
    for (prefix, secret) in [
        ("verdict:", &TEST_ARBITER_SECRET),
        ("other_verdict:", &TEST_OTHER_ISSUER_SECRET),
    ] {
        if let Some(spec) = expr.strip_prefix(prefix) {
            let [outcome, s2, a] = parts(spec, expr)?;
            let outcome = [Outcome::Complete, Outcome::Cancel]
                .into_iter()
                .find(|o| o.name() == outcome)
                .ok_or_else(|| format!("unknown outcome in {expr}"))?;
            let (s2, a) = (array32(s2, vars, expr)?, array32(a, vars, expr)?);
            return Ok(exchange::sign_verdict(&test_key(secret), &s2, &a, outcome).to_vec());
        }
    }
    if let Some(spec) = expr.strip_prefix("agreement:") {
        let [s1, v1, v2, id_a, id_b] = parts(spec, expr)?;
        let value = |part: &str| {
            exchange::decode_value(&expand_expr(part, vars)?)
                .map_err(|e| format!("{part} in {expr} is not a value object: {e}"))
        };
        return Ok(exchange::agreement(
            &array32(s1, vars, expr)?,
            &value(v1)?,
            &value(v2)?,
            &array32(id_a, vars, expr)?,
            &array32(id_b, vars, expr)?,
        )
        .to_vec());
    }
    if let Some(spec) = expr.strip_prefix("values_commitment:") {
        let [s1, v1, v2] = parts(spec, expr)?;
        let value = |part: &str| {
            exchange::decode_value(&expand_expr(part, vars)?)
                .map_err(|e| format!("{part} in {expr} is not a value object: {e}"))
        };
        return Ok(exchange::values_commitment(
            &array32(s1, vars, expr)?,
            &value(v1)?,
            &value(v2)?,
        )
        .to_vec());
    }
    if let Some(inner) = expr.strip_prefix("sha256:") {
        use sha2::Digest;
        return Ok(sha2::Sha256::digest(expand_expr(inner, vars)?).to_vec());
    }
    if let Some(inner) = expr.strip_prefix("lc:") {
        let len = expand_expr(inner, vars)?.len();
        return u8::try_from(len)
            .map(|l| vec![l])
            .map_err(|_| format!("{inner} is too long for a short Lc"));
    }
    if let Some(inner) = expr.strip_prefix("lc3:") {
        let len = expand_expr(inner, vars)?.len();
        let len =
            u16::try_from(len).map_err(|_| format!("{inner} is too long for an extended Lc"))?;
        let [a, b] = len.to_be_bytes();
        return Ok(vec![0, a, b]);
    }
    if let Some(spec) = expr.strip_prefix("fill:") {
        let (count, byte) = spec
            .split_once(':')
            .ok_or_else(|| format!("bad fill: {expr}"))?;
        let count: usize = count
            .parse()
            .map_err(|_| format!("bad fill count: {expr}"))?;
        let byte = u8::from_str_radix(byte, 16).map_err(|_| format!("bad fill byte: {expr}"))?;
        return Ok(vec![byte; count]);
    }
    let (name, range) = match expr.split_once('[') {
        Some((name, range)) => (
            name,
            Some(
                range
                    .strip_suffix(']')
                    .ok_or_else(|| format!("bad slice: {expr}"))?,
            ),
        ),
        None => (expr, None),
    };
    let value = lookup(name, vars).ok_or_else(|| format!("variable {name} is not bound"))?;
    let Some(range) = range else { return Ok(value) };
    let (from, to) = range
        .split_once("..")
        .ok_or_else(|| format!("bad slice: {expr}"))?;
    let from: usize = from.parse().map_err(|_| format!("bad slice: {expr}"))?;
    let to: usize = if to.is_empty() {
        value.len()
    } else {
        to.parse().map_err(|_| format!("bad slice: {expr}"))?
    };
    value
        .get(from..to)
        .map(<[u8]>::to_vec)
        .ok_or_else(|| format!("slice out of range: {expr}"))
}

/// The N `:`-separated parts of an expression's arguments.
fn parts<'a, const N: usize>(spec: &'a str, expr: &str) -> Result<[&'a str; N], String> {
    let parts: Vec<&str> = spec.split(':').collect();
    parts
        .try_into()
        .map_err(|_| format!("{expr} takes {N} arguments separated by ':'"))
}

/// A 32-byte argument: s1, s2, a or a card id.
fn array32(part: &str, vars: &Vars, expr: &str) -> Result<[u8; 32], String> {
    expand_expr(part, vars)?
        .try_into()
        .map_err(|_| format!("{part} in {expr} is not 32 bytes"))
}

fn parse_path(path: &str) -> Result<Vec<u16>, String> {
    path.split('/')
        .map(|t| u16::from_str_radix(t, 16).map_err(|_| format!("bad TLV path {path:?}")))
        .collect()
}

impl Step {
    /// Checks a response against this step's expectations and binds its captures.
    pub fn check(&self, response: &Response, vars: &mut Vars) -> Result<(), String> {
        let got = format!("got {response:?}");
        // CONFORMANCE.md: error status words never carry data, whatever the vector says.
        if !status::allows_data(response.sw) && !response.data.is_empty() {
            return Err(format!("error status with data: {got}"));
        }
        if let Some(sw) = self
            .sw
            .as_ref()
            .filter(|sw| !status::sw_matches(sw, response.sw))
        {
            return Err(format!(
                "expected SW {sw}, {got} ({})",
                status::describe(response.sw)
            ));
        }
        if let Some(data) = &self.data {
            let want = expand(data, vars)?;
            if want != response.data {
                return Err(format!("expected data {}, {got}", hex::encode_upper(want)));
            }
        }
        if let Some(len) = self.data_len.filter(|len| response.data.len() != *len) {
            return Err(format!("expected {len} data bytes, {got}"));
        }
        if let Some(mask) = &self.data_mask {
            let mask: Vec<char> = mask.chars().filter(|c| !c.is_whitespace()).collect();
            let actual: Vec<char> = hex::encode_upper(&response.data).chars().collect();
            let ok = mask.len() == actual.len()
                && mask
                    .iter()
                    .zip(&actual)
                    .all(|(m, a)| *m == 'x' || m.eq_ignore_ascii_case(a));
            if !ok {
                return Err(format!(
                    "data does not match mask {}, {got}",
                    mask.iter().collect::<String>()
                ));
            }
        }
        for path in &self.tlv {
            if !tlv::has_path(&response.data, &parse_path(path)?) {
                return Err(format!("data lacks TLV {path}, {got}"));
            }
        }
        for (path, want) in &self.tlv_object {
            let want = expand(want, vars)?;
            match tlv::object_at(&response.data, &parse_path(path)?) {
                Some(found) if found == want => {}
                Some(found) => {
                    return Err(format!(
                        "expected the object {path} to be {}, found {}, {got}",
                        hex::encode_upper(want),
                        hex::encode_upper(found)
                    ));
                }
                None => return Err(format!("data lacks TLV {path}, {got}")),
            }
        }
        if let Some(expected) = &self.auth_signature {
            let key = expand(&expected.key, vars)?;
            let key = cert::decode_public_key(&key).ok_or_else(|| {
                format!(
                    "auth_signature: key {} is not a compressed P-256 point",
                    hex::encode_upper(&key)
                )
            })?;
            let challenge = expand(&expected.challenge, vars)?;
            if !crate::auth::verify(&key, &challenge, &response.data) {
                return Err(format!(
                    "data is not a signature over the challenge {} under the key, {got}",
                    hex::encode_upper(&challenge)
                ));
            }
        }
        if let Some(expected) = &self.signed {
            check_signed(expected, &response.data, vars).map_err(|e| format!("{e}, {got}"))?;
        }
        if let Some(expected) = &self.attestation {
            check_attestation(expected, &response.data, vars).map_err(|e| format!("{e}, {got}"))?;
        }
        // Sources read from the answer first; then `expr:` ones, which may use them.
        let (computed, read): (Vec<_>, Vec<_>) = self
            .capture
            .iter()
            .partition(|(_, source)| source.starts_with("expr:"));
        for (name, source) in read.into_iter().chain(computed) {
            let value = if let Some(template) = source.strip_prefix("expr:") {
                expand(template, vars)?
            } else if source == "data" {
                response.data.clone()
            } else if let Some(path) = source.strip_prefix("tlv_object:") {
                tlv::object_at(&response.data, &parse_path(path)?)
                    .map(<[u8]>::to_vec)
                    .ok_or_else(|| format!("no TLV {path} to capture, {got}"))?
            } else if let Some(path) = source.strip_prefix("tlv:") {
                tlv::value_at(&response.data, &parse_path(path)?)
                    .ok_or_else(|| format!("no TLV {path} to capture, {got}"))?
            } else {
                return Err(format!("bad capture source {source:?}"));
            };
            vars.insert(name.clone(), value);
        }
        for expected in &self.session_signatures {
            check_session_signature(expected, &response.data, vars)
                .map_err(|e| format!("{e}, {got}"))?;
        }
        if let Some(s2) = &self.commitment {
            let s2 = expand(s2, vars)?;
            let r2: [u8; 32] = tlv::parse_all(&response.data)
                .ok()
                .and_then(|top| tlv::find(&top, exchange::messages::tag::R2).map(<[u8]>::to_vec))
                .and_then(|r2| r2.try_into().ok())
                .ok_or_else(|| format!("data holds no 32-byte 83 r2, {got}"))?;
            if exchange::commitment(&r2)[..] != s2[..] {
                return Err(format!(
                    "SHA-256 of r2 is not {}, {got}",
                    hex::encode_upper(s2)
                ));
            }
        }
        Ok(())
    }
}

fn check_session_signature(
    expected: &SessionSignature,
    data: &[u8],
    vars: &Vars,
) -> Result<(), String> {
    let domain = session_domain(&expected.domain).ok_or_else(|| {
        format!(
            "session_signature: unknown exchange domain {:?}",
            expected.domain
        )
    })?;
    let key = expand(&expected.key, vars)?;
    let key = cert::decode_public_key(&key).ok_or_else(|| {
        format!(
            "session_signature: key {} is not a P-256 point",
            hex::encode_upper(&key)
        )
    })?;
    let field = |template: &str| -> Result<[u8; 32], String> {
        expand(template, vars)?
            .try_into()
            .map_err(|_| format!("session_signature: {template} is not 32 bytes"))
    };
    let (a, s2) = (field(&expected.a)?, field(&expected.s2)?);
    let signature = tlv::value_at(data, &parse_path(&expected.path)?)
        .ok_or_else(|| format!("data lacks the signature {}", expected.path))?;
    if !exchange::verify(&key, domain, &a, &s2, &signature) {
        return Err(format!(
            "the signature at {} does not verify under the key over a || s2 in {domain}",
            expected.path
        ));
    }
    Ok(())
}

fn check_attestation(expected: &AttestationCheck, data: &[u8], vars: &Vars) -> Result<(), String> {
    let point = |what: &str, template: &str| -> Result<p256::ecdsa::VerifyingKey, String> {
        let bytes = expand(template, vars)?;
        cert::decode_public_key(&bytes).ok_or_else(|| {
            format!(
                "attestation: the {what} {} is not a compressed P-256 point",
                hex::encode_upper(&bytes)
            )
        })
    };
    let maker = point("maker key", &expected.maker)?;
    point("card key", &expected.key)?;
    let key: [u8; 33] = expand(&expected.key, vars)?
        .try_into()
        .map_err(|_| "attestation: the card key is not 33 bytes")?;
    let challenge = expand(&expected.challenge, vars)?;
    let attestation = crate::maker::Attestation::decode(data)
        .map_err(|e| format!("data is not an E9 attestation: {e}"))?;
    attestation
        .verify(&maker, &key, &challenge)
        .map(|_| ())
        .map_err(|e| format!("the attestation does not verify: {e}"))
}

fn check_signed(expected: &Signed, data: &[u8], vars: &Vars) -> Result<(), String> {
    let wrapper = u16::from_str_radix(&expected.wrapper, 16)
        .map_err(|_| format!("signed: bad wrapper tag {:?}", expected.wrapper))?;
    let domain = unit_domain(&expected.domain)
        .ok_or_else(|| format!("signed: unknown units domain {:?}", expected.domain))?;
    let key = expand(&expected.key, vars)?;
    let key = cert::decode_public_key(&key).ok_or_else(|| {
        format!(
            "signed: key {} is not a P-256 point",
            hex::encode_upper(&key)
        )
    })?;
    let decoded = SignedMessage::decode(data, wrapper)
        .map_err(|e| format!("data is not one {wrapper:02X} {{ message, 9E }}: {e}"))?;
    let template = decoded.message.first().copied().map(u16::from);
    let message = template
        .and_then(|t| tlv::object_at(data, &[wrapper, t]))
        .ok_or("the signed message cannot be found")?;
    let well_formed = match template {
        Some(units::tag::LOAD_REQUEST) => UnitMessage::decode_load(message).map(|_| ()),
        _ => UnitMessage::decode_unload(message).map(|_| ()),
    };
    well_formed.map_err(|e| format!("the signed message does not decode: {e}"))?;
    if let Some(want) = &expected.message {
        let want = expand(want, vars)?;
        if want != message {
            return Err(format!(
                "expected the message {}, found {}",
                hex::encode_upper(want),
                hex::encode_upper(message)
            ));
        }
    }
    if !units::verify(&key, domain, message, &decoded.signature) {
        return Err(format!(
            "the signature does not verify under the key in {domain}"
        ));
    }
    Ok(())
}

fn command(send: &str, sw: &str) -> Step {
    Step {
        send: Some(send.into()),
        sw: Some(sw.into()),
        ..Step::default()
    }
}

/// The steps that bring a card into a vector's starting state. They rely on TEST RESET, so
/// the card must allow it (the emulator's `--test-mode`).
pub fn setup(given: Given) -> Vec<Step> {
    let mut steps = vec![
        command("80 7E 00 00 ${lc:MANUFACTURE} ${MANUFACTURE}", "9000"),
        command("00 A4 04 0C ${lc:AID} ${AID}", "9000"),
    ];
    if matches!(given, Given::Keyed | Given::Active) {
        let mut generate = command("80 47 00 00 00", "9000");
        generate
            .capture
            .insert("PUBLIC_KEY".into(), "tlv:C1".into());
        steps.push(generate);
        let mut id = command("00 CA 00 C2 00", "9000");
        id.capture.insert("CARD_ID".into(), "tlv:C2".into());
        steps.push(id);
    }
    if given == Given::Active {
        steps.push(command(
            "80 50 00 00 ${lc3:PERSONALIZATION} ${PERSONALIZATION}",
            "9000",
        ));
    }
    steps
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_file_in_the_folder_is_embedded_and_parses() {
        let dir = concat!(env!("CARGO_MANIFEST_DIR"), "/vectors");
        let mut on_disk: Vec<String> = std::fs::read_dir(dir)
            .expect("vectors folder")
            .filter_map(|e| e.ok())
            .map(|e| e.file_name().to_string_lossy().into_owned())
            .filter(|n| n.ends_with(".toml"))
            .collect();
        on_disk.sort();
        let mut embedded: Vec<String> = FILES.iter().map(|(n, _)| n.to_string()).collect();
        embedded.sort();
        assert_eq!(on_disk, embedded);
        let vectors = all().expect("vectors parse");
        for (file, v) in &vectors {
            for step in &v.steps {
                let kinds = usize::from(step.send.is_some())
                    + usize::from(step.reset)
                    + usize::from(step.power_cycle);
                assert_eq!(
                    kinds, 1,
                    "{file}: {}: each step sends, resets or power-cycles",
                    v.name
                );
                assert_eq!(
                    step.send.is_some(),
                    step.sw.is_some(),
                    "{file}: {}: a sent command needs an SW",
                    v.name
                );
            }
        }
        let mut names: Vec<&str> = vectors.iter().map(|(_, v)| v.name.as_str()).collect();
        names.sort();
        let count = names.len();
        names.dedup();
        assert_eq!(names.len(), count, "vector names are unique");
    }

    #[test]
    fn templates() {
        let mut vars = initial_vars();
        vars.insert("X".into(), vec![1, 2, 3, 4]);
        assert_eq!(
            expand("00 A4 ${lc:AID} ${AID}", &vars).ok(),
            Some([&[0, 0xA4, 7][..], crate::AID].concat())
        );
        assert_eq!(
            expand("${X[1..3]}${X[3..]}", &vars).ok(),
            Some(vec![2, 3, 4])
        );
        assert_eq!(
            expand("${lc3:fill:300:AA}", &vars).ok(),
            Some(vec![0, 1, 0x2C])
        );
        assert!(expand("${NOPE}", &vars).is_err());
        assert!(expand("${X[2..9]}", &vars).is_err());
    }

    #[test]
    fn issuer_signatures_in_templates() {
        let mut vars = initial_vars();
        vars.insert("REQ".into(), vec![0xE7, 0x01, 0x00]);
        let issuer = test_key(&TEST_ISSUER_SECRET);
        let sign = |t: &str| expand(t, &vars);
        let auth = sign("${issuer_sign:load-auth:REQ}").expect("expands");
        assert_eq!(auth.len(), units::SIGNATURE_LEN);
        assert!(units::verify(
            issuer.verifying_key(),
            units::domains::LOAD_AUTH,
            &[0xE7, 0x01, 0x00],
            &auth
        ));
        assert_eq!(
            sign("${issuer_sign:load-auth:REQ}"),
            Ok(auth.clone()),
            "RFC 6979"
        );
        let other = sign("${other_issuer_sign:load-auth:REQ}").expect("expands");
        assert!(!units::verify(
            issuer.verifying_key(),
            units::domains::LOAD_AUTH,
            &[0xE7, 0x01, 0x00],
            &other
        ));
        let ack = sign("${issuer_sign:unload-ack:REQ[0..2]}").expect("expands");
        assert!(units::verify(
            issuer.verifying_key(),
            units::domains::UNLOAD_ACK,
            &[0xE7, 0x01],
            &ack
        ));
        assert!(sign("${issuer_sign:load-authorisation:REQ}").is_err());
        assert!(sign("${issuer_sign:load-auth}").is_err());
        assert!(sign("${issuer_sign:load-auth:NOPE}").is_err());

        assert!(sign("${ticket_sign:CONCERT:0102}").is_err(), "no CARD_ID");
        vars.insert("CARD_ID".into(), vec![9; 32]);
        let ticket = expand("${ticket_sign:CONCERT:0102}", &vars).expect("expands");
        assert!(units::verify_ticket(
            issuer.verifying_key(),
            "CONCERT",
            &[1, 2],
            &[9; 32],
            &ticket
        ));
        assert!(expand("${ticket_sign:CONCERT:01x2}", &vars).is_err());
        assert_eq!(unit_domain("ticket"), Some(units::domains::TICKET));
        assert_eq!(unit_domain("cert"), None);
    }

    #[test]
    fn signed_answers_and_whole_objects() {
        let card = test_key(&[0x44; 32]);
        let mut vars = initial_vars();
        vars.insert(
            "PUBLIC_KEY".into(),
            cert::encode_public_key(card.verifying_key()).to_vec(),
        );
        let message = UnitMessage {
            card_id: [3; 32],
            counter: 5,
            value: units::UnitValue::Asset {
                code: "JPY".into(),
                amount: 100,
            },
        }
        .encode_load();
        let answer = |domain: &str, message: &[u8]| {
            let signed = SignedMessage {
                message: message.to_vec(),
                signature: units::sign(&card, domain, message),
            };
            let data = signed
                .to_tlv(units::tag::SIGNED_LOAD)
                .expect("a message")
                .to_vec();
            Response { data, sw: 0x9000 }
        };
        let step = |message: Option<String>| Step {
            sw: Some("9000".into()),
            signed: Some(Signed {
                wrapper: "EC".into(),
                domain: "load-request".into(),
                key: "${PUBLIC_KEY}".into(),
                message,
            }),
            capture: [("REQ".to_string(), "tlv_object:EC/E7".to_string())].into(),
            ..Step::default()
        };
        let good = answer(units::domains::LOAD_REQUEST, &message);
        assert_eq!(step(None).check(&good, &mut vars), Ok(()));
        assert_eq!(vars.get("REQ"), Some(&message));
        let exact = step(Some(hex::encode(&message)));
        assert_eq!(exact.check(&good, &mut vars), Ok(()));
        let other = step(Some(hex::encode(&message[..message.len() - 1])));
        assert!(other.check(&good, &mut vars).is_err(), "another message");
        let wrong_domain = answer(units::domains::LOAD_CANCEL, &message);
        assert!(step(None).check(&wrong_domain, &mut vars).is_err());
        let not_a_message = answer(units::domains::LOAD_REQUEST, &[0xE7, 0x00]);
        assert!(step(None).check(&not_a_message, &mut vars).is_err());
        let mut wrapper = step(None);
        if let Some(s) = wrapper.signed.as_mut() {
            s.wrapper = "ED".into();
        }
        assert!(wrapper.check(&good, &mut vars).is_err(), "another wrapper");

        let whole = |path: &str, want: &str| Step {
            sw: Some("9000".into()),
            tlv_object: [(path.to_string(), want.to_string())].into(),
            ..Step::default()
        };
        assert_eq!(whole("EC/E7", "${REQ}").check(&good, &mut vars), Ok(()));
        assert!(
            whole("EC/E7", "${REQ[1..]}")
                .check(&good, &mut vars)
                .is_err()
        );
        assert!(whole("EC/E8", "${REQ}").check(&good, &mut vars).is_err());
    }

    #[test]
    fn the_peer_and_the_arbiter_in_templates() {
        let mut vars = initial_vars();
        let peer = test_key(&TEST_PEER_SECRET);
        let peer_certificate =
            cert::Certificate::decode(&lookup("PEER_CERT", &vars).expect("derived"))
                .expect("a certificate");
        let issuer = test_key(&TEST_ISSUER_SECRET);
        assert_eq!(
            peer_certificate.verify(issuer.verifying_key()),
            Ok(*peer.verifying_key())
        );
        assert_eq!(
            lookup("PEER_ID", &vars),
            Some(peer_certificate.card_id.to_vec())
        );
        let foreign =
            cert::Certificate::decode(&lookup("PEER_CERT_FOREIGN", &vars).expect("derived"))
                .expect("a certificate");
        assert!(foreign.verify(issuer.verifying_key()).is_err());
        assert_eq!(lookup("CERT", &vars), None, "CERT needs PUBLIC_KEY");

        let (a, s2) = ([4u8; 32], exchange::commitment(&[0x5A; 32]));
        vars.insert("A".into(), a.to_vec());
        vars.insert(
            "S2".into(),
            expand("${sha256:fill:32:5A}", &vars).expect("expands"),
        );
        assert_eq!(vars.get("S2"), Some(&s2.to_vec()));
        let sa = expand("${peer_sign:agree:A:S2}", &vars).expect("expands");
        assert!(exchange::verify(
            peer.verifying_key(),
            exchange::domains::AGREE,
            &a,
            &s2,
            &sa
        ));
        assert!(
            expand("${peer_sign:verdict:A:S2}", &vars).is_err(),
            "not a card's domain"
        );
        assert!(
            expand("${peer_sign:agree:A}", &vars).is_err(),
            "two arguments"
        );
        assert!(
            expand("${peer_sign:agree:A[0..31]:S2}", &vars).is_err(),
            "31 bytes"
        );
        let arbiter = test_key(&TEST_ARBITER_SECRET);
        let v = expand("${verdict:complete:S2:A}", &vars).expect("expands");
        assert!(exchange::verify_verdict(
            arbiter.verifying_key(),
            &s2,
            &a,
            Outcome::Complete,
            &v
        ));
        let other = expand("${other_verdict:cancel:S2:A}", &vars).expect("expands");
        assert!(!exchange::verify_verdict(
            arbiter.verifying_key(),
            &s2,
            &a,
            Outcome::Cancel,
            &other
        ));
        assert!(expand("${verdict:maybe:S2:A}", &vars).is_err());

        vars.insert("V1".into(), vec![0xE0, 0x00]);
        vars.insert(
            "V2".into(),
            expand("E1 0F 81 03 4A5059 82 08 0000000000000032", &vars).expect("hex"),
        );
        let agreement = expand("${agreement:A:V1:V2:S2:A}", &vars).expect("expands");
        let jpy = Some(units::UnitValue::Asset {
            code: "JPY".into(),
            amount: 50,
        });
        assert_eq!(
            agreement,
            exchange::agreement(&a, &None, &jpy, &s2, &a).to_vec()
        );
        assert!(
            expand("${agreement:A:A:V2:S2:A}", &vars).is_err(),
            "V1 is no value"
        );

        vars.insert("PEER_ID".into(), vec![9; 32]);
        let proof = expand("${peer_ticket_sign:T:01}", &vars).expect("expands");
        assert!(units::verify_ticket(
            issuer.verifying_key(),
            "T",
            &[1],
            &[9; 32],
            &proof
        ));
    }

    #[test]
    fn exchange_answers_are_checked() {
        let card = test_key(&[0x44; 32]);
        let mut vars = initial_vars();
        vars.insert(
            "PUBLIC_KEY".into(),
            cert::encode_public_key(card.verifying_key()).to_vec(),
        );
        let r2 = [7u8; 32];
        let s2 = exchange::commitment(&r2);
        let a = [3u8; 32];
        let se = exchange::sign(&card, exchange::domains::CONFIRM, &a, &s2);
        let answer = Response {
            data: tlv::encode_all(&[
                tlv::primitive(0x81, s2),
                tlv::primitive(0x8B, se),
                tlv::primitive(0x83, r2),
            ]),
            sw: 0x9000,
        };
        let step = |domain: &str, path: &str| Step {
            sw: Some("9000".into()),
            capture: [
                ("S2".to_string(), "tlv:81".to_string()),
                ("A".to_string(), "expr:${fill:32:03}".to_string()),
            ]
            .into(),
            session_signatures: vec![SessionSignature {
                path: path.into(),
                domain: domain.into(),
                key: "${PUBLIC_KEY}".into(),
                a: "${A}".into(),
                s2: "${S2}".into(),
            }],
            commitment: Some("${S2}".into()),
            ..Step::default()
        };
        assert_eq!(step("confirm", "8B").check(&answer, &mut vars), Ok(()));
        assert_eq!(vars.get("A"), Some(&a.to_vec()), "an expr capture");
        assert!(step("agree", "8B").check(&answer, &mut vars).is_err());
        assert!(step("confirm", "81").check(&answer, &mut vars).is_err());
        assert!(step("confirm", "8C").check(&answer, &mut vars).is_err());
        let mut other = step("confirm", "8B");
        other.commitment = Some("${A}".into());
        assert!(
            other.check(&answer, &mut vars).is_err(),
            "r2 is not behind a"
        );
        assert_eq!(session_domain("resolve"), Some(exchange::domains::RESOLVE));
        assert_eq!(session_domain("verdict"), None);
    }

    #[test]
    fn attestations_commitments_and_the_other_maker_in_templates() {
        let card = test_key(&[0x44; 32]);
        let mut vars = initial_vars();
        vars.insert(
            "PUBLIC_KEY".into(),
            cert::encode_public_key(card.verifying_key()).to_vec(),
        );
        let made =
            Manufacture::decode(&lookup("MANUFACTURE", &vars).expect("derived")).expect("a record");
        let attestation_key = SigningKey::from_slice(&made.attestation_secret).expect("a key");
        let own: [u8; 33] = cert::encode_public_key(card.verifying_key());
        let answer = |key: &[u8; 33], challenge: &[u8]| Response {
            data: crate::maker::Attestation::sign(
                &attestation_key,
                made.certificate.clone(),
                key,
                challenge,
            )
            .encode(),
            sw: 0x9000,
        };
        let step = Step {
            sw: Some("9000".into()),
            attestation: Some(AttestationCheck {
                maker: "${MAKER_PUBLIC_KEY}".into(),
                key: "${PUBLIC_KEY}".into(),
                challenge: "${fill:16:A5}".into(),
            }),
            ..Step::default()
        };
        assert_eq!(step.check(&answer(&own, &[0xA5; 16]), &mut vars), Ok(()));
        assert!(step.check(&answer(&own, &[0xA5; 17]), &mut vars).is_err());
        let other = cert::encode_public_key(test_key(&[0x45; 32]).verifying_key());
        assert!(step.check(&answer(&other, &[0xA5; 16]), &mut vars).is_err());
        let mut by_other_maker = step.clone();
        if let Some(a) = by_other_maker.attestation.as_mut() {
            a.maker = hex::encode(cert::encode_public_key(
                test_key(&TEST_OTHER_MAKER_SECRET).verifying_key(),
            ));
        }
        assert!(
            by_other_maker
                .check(&answer(&own, &[0xA5; 16]), &mut vars)
                .is_err()
        );
        assert_eq!(
            lookup("MAKER_CERT", &vars),
            Some(made.certificate.encode()),
            "the record's certificate"
        );

        vars.insert("S1".into(), vec![1; 32]);
        vars.insert("V1".into(), vec![0xE0, 0x00]);
        vars.insert("V2".into(), vec![0xE0, 0x00]);
        assert_eq!(
            expand("${values_commitment:S1:V1:V2}", &vars),
            Ok(exchange::values_commitment(&[1; 32], &None, &None).to_vec())
        );
        assert!(expand("${values_commitment:S1:V1}", &vars).is_err());

        let issuer = test_key(&TEST_ISSUER_SECRET);
        let list = BlockList::decode(&lookup("BLOCK_LIST_OTHER_MAKER", &vars).expect("derived"))
            .expect("a list");
        assert_eq!(list.verify(issuer.verifying_key()), Ok(()));
        let peer =
            cert::Certificate::decode(&lookup("PEER_CERT_OTHER_MAKER", &vars).expect("derived"))
                .expect("a certificate");
        assert!(list.blocks(&peer));
        let usual = cert::Certificate::decode(&lookup("PEER_CERT", &vars).expect("derived"))
            .expect("a certificate");
        assert!(!list.blocks(&usual));
        assert_eq!(peer.card_id, usual.card_id);
    }

    #[test]
    fn checks() {
        let mut vars = initial_vars();
        let step = Step {
            sw: Some("90xx".into()),
            data_mask: Some("6Fxx".into()),
            capture: [("D".to_string(), "data".to_string())].into(),
            ..Step::default()
        };
        assert!(
            step.check(
                &Response {
                    data: vec![0x6F, 1],
                    sw: 0x9000
                },
                &mut vars
            )
            .is_ok()
        );
        assert_eq!(vars.get("D"), Some(&vec![0x6F, 1]));
        assert!(
            step.check(
                &Response {
                    data: vec![0x6E, 1],
                    sw: 0x9000
                },
                &mut vars
            )
            .is_err()
        );
        let card = test_key(&[0x44; 32]);
        vars.insert(
            "PUBLIC_KEY".into(),
            cert::encode_public_key(card.verifying_key()).to_vec(),
        );
        let signed = Step {
            sw: Some("9000".into()),
            auth_signature: Some(AuthSignature {
                key: "${PUBLIC_KEY}".into(),
                challenge: "${fill:16:A5}".into(),
            }),
            ..Step::default()
        };
        let answer = |data: Vec<u8>| Response { data, sw: 0x9000 };
        let signature = crate::auth::sign(&card, &[0xA5; 16]);
        assert!(signed.check(&answer(signature.to_vec()), &mut vars).is_ok());
        let other = crate::auth::sign(&card, &[0xA5; 17]);
        assert!(signed.check(&answer(other.to_vec()), &mut vars).is_err());
        assert!(signed.check(&answer(Vec::new()), &mut vars).is_err());
        vars.insert(
            "PUBLIC_KEY".into(),
            cert::encode_public_key(test_key(&[0x55; 32]).verifying_key()).to_vec(),
        );
        assert!(
            signed
                .check(&answer(signature.to_vec()), &mut vars)
                .is_err(),
            "another key"
        );

        let plain = Step {
            sw: Some("6700".into()),
            ..Step::default()
        };
        assert!(
            plain
                .check(
                    &Response {
                        data: vec![1],
                        sw: 0x6700
                    },
                    &mut vars
                )
                .is_err(),
            "data with an error"
        );
    }
}
