//! Funding: the bank's blind signatures against OpenSSL's RSA-2048 signatures, and the
//! center's redemptions over HTTP against the RSA-PSS verification they need.

use std::process::Command;
use std::time::Instant;

use valuecard_protocol::api::{RedeemRequest, WithdrawRequest};
use valuecard_protocol::token::{DenominationPublicKey, DenominationSecretKey, TokenMessage};

use super::backend::{AMOUNT, Fixture, in_parallel};
use super::{BenchError, Plan, Progress, Result, alternate, per_second};
use crate::backend_client::CenterClient;

fn openssl_missing(e: std::io::Error) -> BenchError {
    BenchError::OpenSsl(format!(
        "cannot run openssl ({e}): `valuecard bench` compares the bank's blind signatures with `openssl speed rsa2048`; install OpenSSL's command-line tool (Debian and Ubuntu: apt-get install openssl)"
    ))
}

/// `openssl version`, or why openssl cannot be run.
pub(super) fn openssl_version() -> Result<String> {
    let out = Command::new("openssl")
        .arg("version")
        .output()
        .map_err(openssl_missing)?;
    if !out.status.success() {
        return Err(BenchError::OpenSsl(format!(
            "`openssl version` failed: {}",
            String::from_utf8_lossy(&out.stderr).trim()
        )));
    }
    Ok(String::from_utf8_lossy(&out.stdout).trim().to_string())
}

/// RSA-2048 private-key signatures per second on one core: `openssl speed -seconds N
/// rsa2048`'s sign/s column.
fn openssl_signs(seconds: u32) -> Result<f64> {
    let out = Command::new("openssl")
        .args(["speed", "-seconds", &seconds.to_string(), "rsa2048"])
        .output()
        .map_err(openssl_missing)?;
    let text = String::from_utf8_lossy(&out.stdout);
    parse_openssl_speed(&text).ok_or_else(|| {
        BenchError::OpenSsl(format!(
            "cannot read sign/s from `openssl speed rsa2048` (exit {}):\n{text}{}",
            out.status,
            String::from_utf8_lossy(&out.stderr)
        ))
    })
}

/// The sign/s of the `rsa 2048 bits` row, from the table that ends `openssl speed`:
///
/// ```text
///                   sign    verify    sign/s verify/s
/// rsa 2048 bits 0.000319s 0.000017s   3136.0  57490.0
/// ```
fn parse_openssl_speed(text: &str) -> Option<f64> {
    let header = text.lines().find(|l| l.contains("sign/s"))?;
    let column = header.split_whitespace().position(|t| t == "sign/s")?;
    let row = text
        .lines()
        .find(|l| l.trim_start().starts_with("rsa") && l.contains("2048"))?;
    // The row starts with three label words, `rsa 2048 bits`, the header with none.
    let rate: f64 = row.split_whitespace().nth(column + 3)?.parse().ok()?;
    (rate > 0.0).then_some(rate)
}

/// `DenominationSecretKey::blind_sign` per second (the RSA private-key operation of
/// `Bank::withdraw`, one core), and `openssl speed rsa2048`'s signs per second, in
/// alternate runs.
pub(super) fn blind_signatures(plan: &Plan, progress: &Progress) -> Result<(f64, f64)> {
    let stage = progress.stage(
        "bank blind signatures, and openssl speed rsa2048",
        plan.runs,
    );
    let mut rng = rand::rng();
    let secret = DenominationSecretKey::generate(&mut rng)
        .map_err(|e| BenchError::Check(format!("making an RSA-2048 key: {e}")))?;
    let messages = (0..plan.blind_signs)
        .map(|_| {
            let message = TokenMessage::new(&mut rng, [0; 32], secret.public().id(), AMOUNT);
            secret
                .public()
                .blind(&mut rng, &message.encode())
                .map(|b| b.blinded_message)
                .map_err(|e| BenchError::Check(format!("blinding: {e}")))
        })
        .collect::<Result<Vec<_>>>()?;
    let (signs, openssl) = alternate(
        plan.runs,
        &stage,
        || {
            let start = Instant::now();
            for message in &messages {
                let signature = secret
                    .blind_sign(message)
                    .map_err(|e| BenchError::Check(format!("blind_sign: {e}")))?;
                std::hint::black_box(signature);
            }
            Ok(per_second(messages.len(), start.elapsed()))
        },
        || openssl_signs(plan.openssl_seconds),
    )?;
    stage.done(format!("{signs:.0}/s (openssl: {openssl:.0}/s)"));
    Ok((signs, openssl))
}

/// Withdraws `count` tokens from the fixture's bank over HTTP (blinded, signed, unblinded
/// and checked), ready to redeem.
fn withdraw(
    plan: &Plan,
    progress: &Progress,
    fixture: &Fixture,
    key: &DenominationPublicKey,
    count: usize,
) -> Result<Vec<RedeemRequest>> {
    let stage = progress.stage(
        format!(
            "withdrawing tokens from the bank ({} clients)",
            plan.clients
        ),
        count,
    );
    let clients = vec![fixture.bank.clone(); plan.clients];
    let tokens = std::sync::Mutex::new(Vec::with_capacity(count));
    let cards: Vec<[u8; 32]> = fixture.cards.iter().map(|c| c.id).collect();
    let slots: Vec<usize> = (0..count).collect();
    in_parallel(&clients, &slots, |bank, &i| {
        let mut rng = rand::rng();
        let message =
            TokenMessage::new(&mut rng, cards[i % cards.len()], key.id(), AMOUNT).encode();
        let bad = |e| BenchError::Check(format!("a token: {e}"));
        let blinded = key.blind(&mut rng, &message).map_err(bad)?;
        let answer = bank.withdraw(&WithdrawRequest {
            account: fixture.account.clone(),
            credential: fixture.credential.clone(),
            key_id: key.id(),
            blinded_message: blinded.blinded_message.clone(),
        })?;
        let signature = key
            .finalize(&answer.blind_signature, &blinded, &message)
            .map_err(bad)?;
        tokens
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .push(RedeemRequest {
                message,
                randomizer: blinded.randomizer,
                signature,
            });
        stage.inc();
        Ok(())
    })?;
    stage.done(format!("{count} tokens"));
    Ok(tokens.into_inner().unwrap_or_else(|p| p.into_inner()))
}

/// Redemptions per second over HTTP (fresh tokens every run), and the RSA-PSS
/// verification of the same tokens alone, in alternate runs.
pub(super) fn redemptions(
    plan: &Plan,
    progress: &Progress,
    fixture: &Fixture,
) -> Result<(f64, f64)> {
    let key = fixture
        .key
        .key()
        .map_err(|e| BenchError::Check(format!("the bank's key: {e}")))?;
    let warm_up = plan.clients;
    let tokens = withdraw(
        plan,
        progress,
        fixture,
        &key,
        warm_up + plan.runs * plan.redemptions,
    )?;
    let (warm_up, timed) = tokens.split_at(warm_up);
    let stage = progress.stage(
        format!(
            "center redemptions over HTTP ({} clients), and RSA-PSS verification alone",
            plan.clients
        ),
        plan.runs,
    );
    let clients: Vec<CenterClient> = (0..plan.clients)
        .map(|_| CenterClient::new(&fixture.backend.url))
        .collect();
    let redeem = |center: &CenterClient, token: &RedeemRequest| -> Result<()> {
        let answer = center.redeem(token)?;
        if answer.replayed {
            return Err(BenchError::Check(
                "the center had redeemed a fresh token before".into(),
            ));
        }
        Ok(())
    };
    // Opens each client's connection and fills the center's key cache, untimed.
    in_parallel(&clients, warm_up, redeem)?;
    let mut runs = timed.chunks(plan.redemptions.max(1));
    let mut verified = timed.chunks(plan.redemptions.max(1));
    let (redemptions, verifications) = alternate(
        plan.runs,
        &stage,
        || {
            let run = runs.next().unwrap_or_default();
            Ok(per_second(run.len(), in_parallel(&clients, run, redeem)?))
        },
        || {
            let run = verified.next().unwrap_or_default();
            let start = Instant::now();
            for token in run {
                key.verify(&token.signature, &token.randomizer, &token.message)
                    .map_err(|e| BenchError::Check(format!("a token: {e}")))?;
            }
            Ok(per_second(run.len(), start.elapsed()))
        },
    )?;
    stage.done(format!(
        "{redemptions:.0}/s (verification alone: {verifications:.0}/s)"
    ));
    Ok((redemptions, verifications))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn reads_openssl_speed() {
        let text = "version: 3.0.19\n                  sign    verify    sign/s verify/s\nrsa 2048 bits 0.000319s 0.000017s   3136.0  57490.0\n";
        assert_eq!(parse_openssl_speed(text), Some(3136.0));
        assert_eq!(parse_openssl_speed("nothing here"), None);
    }
}
