//! `valuecard card`: development personalisation and keys.

use std::io::Write;
use std::path::Path;
use std::process::ExitCode;

use apdu_spec::cert::{self, Certificate};
use apdu_spec::commands::LifeCycle;
use apdu_spec::objects::Personalization;
use p256::ecdsa::{SigningKey, VerifyingKey};
use p256::elliptic_curve::Generate;
use serde_json::json;
use valuecard_protocol::api::{CardProof, ChallengePurpose, RegisterRequest};
use valuecard_terminal::Client;
use valuecard_terminal::transport::Transport;

use super::{CliError, Endpoints, Result, date, new_pin_from, pin_from, selected_client};
use crate::cli::{CardCommand, Global};

pub fn run(global: &Global, endpoints: &Endpoints, command: CardCommand) -> Result<ExitCode> {
    match command {
        CardCommand::Register { pin, json } => register(global, endpoints, pin, json),
        CardCommand::Init {
            issuer_key,
            arbiter_key,
            pin,
            validity_days,
        } => init(global, &issuer_key, &arbiter_key, pin, validity_days),
        CardCommand::Keygen { out } => keygen(&out),
    }
}

fn init(
    global: &Global,
    issuer_key: &Path,
    arbiter_key: &str,
    pin: Option<String>,
    validity_days: u64,
) -> Result<ExitCode> {
    // Everything that can be checked here is, before the card changes.
    let pin = pin_from(pin, "--pin", "VALUECARD_PIN")?;
    let issuer = read_secret(issuer_key)?;
    let arbiter = parse_public_key(arbiter_key)?;
    let now = valuecard_terminal::funding::now();
    let not_after = now.saturating_add(validity_days.saturating_mul(86_400));

    let mut client = selected_client(global)?;
    let card_key =
        unpersonalised_card_key(&mut client, "see what it holds with `valuecard info`", true)?;
    let card_verifying_key = cert::decode_public_key(&card_key)
        .ok_or_else(|| CliError::new("the card's public key is not a P-256 point"))?;
    let certificate = Certificate::issue(&issuer, &card_verifying_key, now, not_after);
    client.personalize(&Personalization {
        issuer_key: cert::encode_public_key(issuer.verifying_key()).to_vec(),
        arbiter_key: cert::encode_public_key(&arbiter).to_vec(),
        certificate: certificate.encode(),
        pin,
    })?;
    println!("card personalised");
    println!("card id:     {}", hex::encode_upper(certificate.card_id));
    println!("certificate: valid {} to {}", date(now), date(not_after));
    Ok(ExitCode::SUCCESS)
}

/// Registers the card with the center (which certifies its key and opens its unit account)
/// and personalises it with what the center answers.
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

    let mut client = selected_client(global)?;
    let card_key = unpersonalised_card_key(
        &mut client,
        "see what it holds with `valuecard info`, and its units with `valuecard balance`",
        !json,
    )?;

    // The card proves it holds the key it shows: it signs the center's fresh challenge.
    let challenge = center.challenge(ChallengePurpose::Register)?;
    let signature = client.internal_authenticate(&challenge.challenge)?;
    let registration = center.register(&RegisterRequest {
        public_key: card_key,
        proof: CardProof {
            challenge: challenge.challenge,
            signature: signature.to_vec(),
        },
    })?;

    // PERSONALIZE works once: check that what goes in is for this card before it does.
    let certificate = Certificate::decode(&registration.certificate)
        .map_err(|e| CliError::new(format!("the center's certificate for the card: {e}")))?;
    let issuer = cert::decode_public_key(&registration.issuer_public_key)
        .ok_or_else(|| CliError::new("the center's issuer key is not a P-256 public key"))?;
    if registration.issuer_public_key != center_info.issuer_public_key
        || registration.arbiter_public_key != center_info.arbiter_public_key
    {
        return Err(CliError::new(
            "the center registered the card with other issuer or arbiter keys than it publishes",
        )
        .hint("nothing was written to the card; check --center"));
    }
    certificate
        .verify(&issuer)
        .map_err(|e| CliError::new(format!("the center's certificate for the card: {e}")))?;
    if certificate.public_key != card_key || registration.card_id != certificate.card_id {
        return Err(CliError::new(
            "the center certified another key than this card's: nothing was written to the card",
        ));
    }
    if cert::decode_public_key(&registration.arbiter_public_key).is_none() {
        return Err(CliError::new(
            "the center's arbiter key is not a P-256 public key",
        ));
    }

    client.personalize(&Personalization {
        issuer_key: registration.issuer_public_key.to_vec(),
        arbiter_key: registration.arbiter_public_key.to_vec(),
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

fn parse_public_key(text: &str) -> Result<VerifyingKey> {
    let hint = "give the arbiter's public key as SEC1 hex, as `valuecard card keygen` prints it (66 hex digits starting 02 or 03)";
    let digits: String = text.chars().filter(|c| !c.is_whitespace()).collect();
    hex::decode(&digits)
        .ok()
        .and_then(|bytes| VerifyingKey::from_sec1_bytes(&bytes).ok())
        .ok_or_else(|| CliError::new("--arbiter-key is not a P-256 public key").hint(hint))
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
