//! `valuecard card`: registration with the center, development personalisation, and keys.

use std::io::Write;
use std::path::Path;
use std::process::ExitCode;

use apdu_spec::anchor::{Anchor, AnchorRole};
use apdu_spec::cert::{self, Certificate};
use apdu_spec::commands::LifeCycle;
use apdu_spec::maker::MakerCertificate;
use apdu_spec::objects::{CardInfo, Personalization};
use p256::ecdsa::{SigningKey, VerifyingKey};
use p256::elliptic_curve::Generate;
use serde_json::json;
use valuecard_protocol::api::{CardProof, ChallengePurpose, RegisterRequest};
use valuecard_protocol::scheme::{Scheme, SchemeKeys};
use valuecard_terminal::Client;
use valuecard_terminal::transport::Transport;

use super::{CliError, Endpoints, Result, date, new_pin_from, pin_from, selected_client};
use crate::cli::{CardCommand, Global};

pub fn run(global: &Global, endpoints: &Endpoints, command: CardCommand) -> Result<ExitCode> {
    match command {
        CardCommand::Register { pin, json } => register(global, endpoints, pin, json),
        CardCommand::Init {
            keys,
            pin,
            validity_days,
        } => init(global, &keys, pin, validity_days),
        CardCommand::Keygen { out } => keygen(&out),
    }
}

fn init(global: &Global, keys: &Path, pin: Option<String>, validity_days: u64) -> Result<ExitCode> {
    // Everything that can be checked here is, before the card changes.
    let pin = pin_from(pin, "--pin", "VALUECARD_PIN")?;
    let issuer = read_secret(&keys.join("issuer.key"))?;
    let scheme = read_scheme(&keys.join("scheme.json"))?;
    if scheme.issuer != *issuer.verifying_key() {
        return Err(CliError::new(format!(
            "{} is not the issuer key that {} anchors",
            keys.join("issuer.key").display(),
            keys.join("scheme.json").display()
        ))
        .hint("both files come from one `valuecard-backend keys init --out DIR`"));
    }
    let now = valuecard_terminal::funding::now();
    let not_after = now.saturating_add(validity_days.saturating_mul(86_400));

    let mut client = selected_client(global)?;
    let made = manufacture_of(&client.info()?, &scheme.root)?;
    let card_key =
        unpersonalised_card_key(&mut client, "see what it holds with `valuecard info`", true)?;
    let card_verifying_key = cert::decode_public_key(&card_key)
        .ok_or_else(|| CliError::new("the card's public key is not a P-256 point"))?;
    let certificate = Certificate::issue(&issuer, &card_verifying_key, made.maker, now, not_after);
    client.personalize(&Personalization {
        issuer: scheme.issuer_anchor,
        arbiter: scheme.arbiter_anchor,
        certificate: certificate.encode(),
        pin,
    })?;
    println!("card personalised");
    println!("card id:     {}", hex::encode_upper(certificate.card_id));
    println!("certificate: valid {} to {}", date(now), date(not_after));
    Ok(ExitCode::SUCCESS)
}

/// The scheme's keys from `scheme.json`, its anchors checked against its root.
fn read_scheme(path: &Path) -> Result<SchemeKeys> {
    let hint =
        "make the scheme's keys with `valuecard-backend keys init --out DIR` and give that DIR";
    let text = std::fs::read_to_string(path).map_err(|e| {
        CliError::new(format!(
            "cannot read the scheme file {}: {e}",
            path.display()
        ))
        .hint(hint)
    })?;
    let scheme: Scheme = serde_json::from_str(&text).map_err(|e| {
        CliError::new(format!("{} is not a scheme file: {e}", path.display())).hint(hint)
    })?;
    scheme
        .keys()
        .map_err(|e| CliError::new(format!("{}: {e}", path.display())).hint(hint))
}

/// What the card got at manufacture, which it must have to be personalised: a root key (the
/// one `root` names) and a maker's certificate.
fn manufacture_of(info: &CardInfo, root: &VerifyingKey) -> Result<MakerCertificate> {
    let provision = "an emulated card is made with `valuecard-card provision --maker-key FILE --root-key HEX --state FILE`";
    let (Some(card_root), Some(maker)) = (&info.root_key, &info.maker_certificate) else {
        return Err(CliError::new(
            "the card was not made by a card maker: it has no scheme root key and no attestation, so it cannot be personalised",
        )
        .hint(provision));
    };
    if card_root.as_slice() != cert::encode_public_key(root).as_slice() {
        return Err(CliError::new(format!(
            "the card was made for the scheme root {}, not this scheme's {}: nothing was written to the card",
            hex::encode_upper(card_root),
            hex::encode_upper(cert::encode_public_key(root))
        ))
        .hint(provision));
    }
    MakerCertificate::decode(maker)
        .map_err(|e| CliError::new(format!("the card's maker certificate: {e}")))
}

/// Registers the card with the center (which checks the maker's attestation, certifies its
/// key and opens its unit account) and personalises it with what the center answers.
fn register(
    global: &Global,
    endpoints: &Endpoints,
    pin: Option<String>,
    json: bool,
) -> Result<ExitCode> {
    // What can fail without the card is tried before the card changes: the PIN's form, and
    // whether the center answers at all.
    let pin = new_pin_from(pin, "--pin", "VALUECARD_PIN")?;
    let center = endpoints.center();
    let center_info = center.info()?;
    let root = cert::decode_public_key(&center_info.root_public_key)
        .ok_or_else(|| CliError::new("the center's scheme root key is not a P-256 public key"))?;

    let mut client = selected_client(global)?;
    // A card made for another scheme could never take this center's anchors: say so before
    // it makes its key.
    manufacture_of(&client.info()?, &root)?;
    let card_key = unpersonalised_card_key(
        &mut client,
        "see what it holds with `valuecard info`, and its units with `valuecard balance`",
        !json,
    )?;

    // The card proves that it holds the key it shows (INTERNAL AUTHENTICATE), and that its
    // maker's attestation key saw the key made inside it (ATTEST), both over the center's
    // fresh challenge.
    let challenge = center.challenge(ChallengePurpose::Register)?;
    let signature = client.internal_authenticate(&challenge.challenge)?;
    let attestation = client.attest(&challenge.challenge)?;
    let registration = center.register(&RegisterRequest {
        public_key: card_key,
        proof: CardProof {
            challenge: challenge.challenge,
            signature: signature.to_vec(),
        },
        attestation,
    })?;

    // PERSONALIZE works once: check that what goes in is for this card, and under this
    // card's root, before it does. The card checks it again itself.
    let anchor = |bytes: &[u8], role: AnchorRole| {
        Anchor::decode(bytes)
            .map_err(|e| CliError::new(format!("the center's {} anchor: {e}", role.name())))
            .and_then(|a| {
                let key = a.verify(&root, role).map_err(|e| {
                    CliError::new(format!(
                        "the center's {} anchor: {e}: nothing was written to the card",
                        role.name()
                    ))
                })?;
                Ok((a, key))
            })
    };
    let (issuer_anchor, issuer) = anchor(&registration.issuer_anchor, AnchorRole::Issuer)?;
    let (arbiter_anchor, _) = anchor(&registration.arbiter_anchor, AnchorRole::Arbiter)?;
    if registration.issuer_anchor != center_info.issuer_anchor
        || registration.arbiter_anchor != center_info.arbiter_anchor
    {
        return Err(CliError::new(
            "the center registered the card with other issuer or arbiter keys than it publishes",
        )
        .hint("nothing was written to the card; check --center"));
    }
    let certificate = Certificate::decode(&registration.certificate)
        .map_err(|e| CliError::new(format!("the center's certificate for the card: {e}")))?;
    certificate
        .verify(&issuer)
        .map_err(|e| CliError::new(format!("the center's certificate for the card: {e}")))?;
    if certificate.public_key != card_key || registration.card_id != certificate.card_id {
        return Err(CliError::new(
            "the center certified another key than this card's: nothing was written to the card",
        ));
    }

    client.personalize(&Personalization {
        issuer: issuer_anchor,
        arbiter: arbiter_anchor,
        certificate: registration.certificate.clone(),
        pin,
    })?;
    let card_id = hex::encode_upper(certificate.card_id);
    if json {
        println!(
            "{}",
            json!({
                "card_id": card_id,
                "center": center.base(),
                "already_registered": registration.replayed,
                "maker_id": hex::encode_upper(certificate.maker),
                "not_before": certificate.not_before,
                "not_after": certificate.not_after,
                "currency": center_info.currency,
            })
        );
    } else {
        let again = if registration.replayed {
            " (it knew the card already)"
        } else {
            ""
        };
        println!(
            "card registered with the center at {}{again}",
            center.base()
        );
        println!("card personalised");
        println!("card id:     {card_id}");
        println!(
            "made by:     maker {}",
            hex::encode_upper(certificate.maker)
        );
        println!(
            "certificate: valid {} to {}",
            date(certificate.not_before),
            date(certificate.not_after)
        );
    }
    Ok(ExitCode::SUCCESS)
}

/// The key of a card that PERSONALIZE has not run on yet: made with GENERATE KEY on a blank
/// card (and said so when `announce`), read on a keyed one. A personalised card is refused,
/// with `hint`.
fn unpersonalised_card_key<T: Transport>(
    client: &mut Client<T>,
    hint: &str,
    announce: bool,
) -> Result<[u8; 33]> {
    match client.info()?.life_cycle {
        LifeCycle::Active => Err(CliError::new(
            "the card is already personalised, and PERSONALIZE works once",
        )
        .hint(hint)),
        LifeCycle::Blank => {
            let key = client.generate_key()?;
            if announce {
                println!("card key generated on the card");
            }
            Ok(key)
        }
        LifeCycle::Keyed => Ok(client.public_key()?),
    }
}

fn read_secret(path: &Path) -> Result<SigningKey> {
    let hint = "the file must hold a P-256 secret as 64 hex digits; make one with `valuecard card keygen --out FILE`";
    let text = std::fs::read_to_string(path).map_err(|e| {
        CliError::new(format!(
            "cannot read the issuer key {}: {e}",
            path.display()
        ))
        .hint(hint)
    })?;
    let bytes = hex::decode(text.trim()).map_err(|_| {
        CliError::new(format!("the issuer key {} is not hex", path.display())).hint(hint)
    })?;
    SigningKey::from_slice(&bytes).map_err(|_| {
        CliError::new(format!(
            "the issuer key {} is not a P-256 secret",
            path.display()
        ))
        .hint(hint)
    })
}

fn keygen(out: &Path) -> Result<ExitCode> {
    let key = SigningKey::generate_from_rng(&mut rand::rng());
    let mut options = std::fs::OpenOptions::new();
    options.write(true).create_new(true);
    #[cfg(unix)]
    std::os::unix::fs::OpenOptionsExt::mode(&mut options, 0o600);
    let mut file = options.open(out).map_err(|e| {
        let error = CliError::new(format!("cannot create {}: {e}", out.display()));
        if e.kind() == std::io::ErrorKind::AlreadyExists {
            error.hint("keygen never overwrites a key: choose another file name, or delete the old key first")
        } else {
            error
        }
    })?;
    writeln!(file, "{}", hex::encode(key.to_bytes()))
        .map_err(|e| CliError::new(format!("cannot write {}: {e}", out.display())))?;
    println!(
        "secret key written to {} (development use only)",
        out.display()
    );
    println!(
        "public key: {}",
        hex::encode_upper(cert::encode_public_key(key.verifying_key()))
    );
    Ok(ExitCode::SUCCESS)
}
