//! The `valuecard-backend` binary: the ready line, the roles' prefixes, clear errors for a
//! missing configuration, a clean stop on SIGTERM, and the arbiter wired to the issuer.
#![allow(clippy::unwrap_used)]

mod common;

use std::io::{BufRead, BufReader, Read};
use std::process::{Child, Command, Stdio};

use apdu_spec::exchange::Outcome;
use p256::ecdsa::SigningKey;
use p256::elliptic_curve::Generate;
use valuecard_protocol::api::{
    ArbiterInfo, CardProof, CenterInfo, Challenge, ChallengePurpose, ChallengeRequest,
    RegisterRequest, Registration, Verdict, VerdictAnswer,
};

const BIN: &str = env!("CARGO_BIN_EXE_valuecard-backend");

fn command(args: &[&str]) -> Command {
    let mut c = Command::new(BIN);
    c.args(args)
        .env_remove("VALUECARD_ADMIN_TOKEN")
        .env("RUST_LOG", "info");
    c
}

/// Starts the server and reads its ready line: the base URL.
fn start(mut c: Command) -> (Child, String, BufReader<std::process::ChildStdout>) {
    let mut child = c
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    let mut stdout = BufReader::new(child.stdout.take().unwrap());
    let mut line = String::new();
    stdout.read_line(&mut line).unwrap();
    let url = line
        .trim_end()
        .strip_prefix("valuecard-backend listening on ")
        .unwrap_or_else(|| panic!("not the ready line: {line:?}"))
        .to_owned();
    assert!(
        url.starts_with("http://127.0.0.1:") && !url.ends_with(":0"),
        "{url}"
    );
    (child, url, stdout)
}

fn stop(mut child: Child, mut stdout: BufReader<std::process::ChildStdout>) -> String {
    let status = Command::new("kill")
        .args(["-TERM", &child.id().to_string()])
        .status()
        .unwrap();
    assert!(status.success());
    let exit = child.wait().unwrap();
    assert!(
        exit.success(),
        "SIGTERM should stop the server cleanly: {exit:?}"
    );
    let mut rest = String::new();
    stdout.read_to_string(&mut rest).unwrap();
    assert_eq!(rest, "", "exactly one line on stdout");
    let mut stderr = String::new();
    child
        .stderr
        .take()
        .unwrap()
        .read_to_string(&mut stderr)
        .unwrap();
    stderr
}

/// The status of an admin request to the center: a ticket for a card that does not exist
/// (404 once the token passes, 401 before).
fn issue_ticket(agent: &ureq::Agent, url: &str, token: &str) -> u16 {
    agent
        .post(format!("{url}/center/v1/tickets"))
        .header("Authorization", format!("Bearer {token}"))
        .send_json(serde_json::json!({ "card_id": "00".repeat(32), "asset": "CONCERT" }))
        .unwrap()
        .status()
        .as_u16()
}

fn get_status(agent: &ureq::Agent, url: &str) -> u16 {
    agent.get(url).call().unwrap().status().as_u16()
}

fn get_json<R: serde::de::DeserializeOwned>(agent: &ureq::Agent, url: &str) -> R {
    let mut response = agent.get(url).call().unwrap();
    assert_eq!(response.status().as_u16(), 200, "GET {url}");
    response.body_mut().read_json().unwrap()
}

fn post_json<B: serde::Serialize, R: serde::de::DeserializeOwned>(
    agent: &ureq::Agent,
    url: &str,
    body: &B,
) -> R {
    let mut response = agent.post(url).send_json(body).unwrap();
    let status = response.status().as_u16();
    let text = response.body_mut().read_to_string().unwrap();
    assert_eq!(status, 200, "POST {url}: {text}");
    serde_json::from_str(&text).unwrap()
}

/// A software card registered at the center behind `url`: its certificate is the center's.
fn registered_card(agent: &ureq::Agent, url: &str) -> common::SoftCard {
    let key = SigningKey::generate_from_rng(&mut rand::rng());
    let challenge: Challenge = post_json(
        agent,
        &format!("{url}/center/v1/challenges"),
        &ChallengeRequest {
            purpose: ChallengePurpose::Register,
        },
    );
    let registration: Registration = post_json(
        agent,
        &format!("{url}/center/v1/cards"),
        &RegisterRequest {
            public_key: apdu_spec::cert::encode_public_key(key.verifying_key()),
            proof: CardProof {
                challenge: challenge.challenge,
                signature: apdu_spec::auth::sign(&key, &challenge.challenge).to_vec(),
            },
        },
    );
    common::SoftCard {
        key,
        id: registration.card_id,
        certificate: registration.certificate,
    }
}

#[test]
fn all_in_one_serves_both_prefixes_and_stops_on_sigterm() {
    let dir = tempfile::tempdir().unwrap();
    let token_file = dir.path().join("admin");
    std::fs::write(&token_file, "s3cret-admin\n").unwrap();
    let db = dir.path().join("data");
    let mut c = command(&[
        "all",
        "--listen",
        "127.0.0.1:0",
        "--db",
        db.to_str().unwrap(),
        "--admin-token-file",
    ]);
    c.arg(&token_file);
    let (child, url, stdout) = start(c);
    let agent = common::agent();
    let health = agent
        .get(format!("{url}/healthz"))
        .call()
        .unwrap()
        .body_mut()
        .read_to_string()
        .unwrap();
    assert_eq!(health, "ok");
    let info: CenterInfo = get_json(&agent, &format!("{url}/center/v1/info"));
    let opened = agent
        .post(format!("{url}/bank/v1/accounts"))
        .header("Authorization", "Bearer s3cret-admin")
        .send_json(serde_json::json!({ "credential": "correct horse battery" }))
        .unwrap();
    assert_eq!(opened.status().as_u16(), 200);
    // The center's admin routes take the same token.
    assert_eq!(
        issue_ticket(&agent, &url, "s3cret-admin"),
        404,
        "unknown_card"
    );
    assert_eq!(issue_ticket(&agent, &url, "wrong"), 401);
    // The arbiter is the one cards are given, and takes the center's certificates.
    let arbiter: ArbiterInfo = get_json(&agent, &format!("{url}/arbiter/v1/info"));
    assert_eq!(
        (arbiter.arbiter_public_key, arbiter.issuer_public_key),
        (info.arbiter_public_key, info.issuer_public_key)
    );
    let (a, b) = (registered_card(&agent, &url), registered_card(&agent, &url));
    let session = common::Session::new(&a, &b);
    let verdict_url = format!("{url}/arbiter/v1/verdicts/{}", hex::encode(session.s2));
    let none: VerdictAnswer = get_json(&agent, &verdict_url);
    assert_eq!(none.verdict, None);
    let cancelled: Verdict = post_json(
        &agent,
        &format!("{url}/arbiter/v1/cancellations"),
        &common::cancel_request(&b, &session),
    );
    assert_eq!(
        (cancelled.outcome, cancelled.replayed),
        (Outcome::Cancel, false)
    );
    let arbiter_key = apdu_spec::cert::decode_public_key(&info.arbiter_public_key).unwrap();
    assert!(cancelled.verifies(&arbiter_key));
    let stderr = stop(child, stdout);
    for f in ["bank.sqlite", "center.sqlite", "arbiter.sqlite"] {
        assert!(db.join(f).exists(), "{f}");
    }
    // The public keys are logged; secrets are not.
    assert!(
        stderr.contains(&hex::encode(info.bank_public_key)),
        "{stderr}"
    );
    assert!(
        stderr.contains(&hex::encode(info.arbiter_public_key)),
        "{stderr}"
    );
    assert!(
        !stderr.contains("s3cret-admin") && !stderr.contains("correct horse"),
        "{stderr}"
    );

    // A restart keeps the keys.
    let mut c = command(&[
        "all",
        "--listen",
        "127.0.0.1:0",
        "--db",
        db.to_str().unwrap(),
    ]);
    c.env("VALUECARD_ADMIN_TOKEN", "s3cret-admin");
    let (child, url, stdout) = start(c);
    let again: CenterInfo = get_json(&agent, &format!("{url}/center/v1/info"));
    assert_eq!(again, info);
    // The verdict was kept, and A's late resolve request gets it.
    let verdict_url = format!("{url}/arbiter/v1/verdicts/{}", hex::encode(session.s2));
    let kept: VerdictAnswer = get_json(&agent, &verdict_url);
    assert_eq!(
        kept.verdict.map(|v| (v.outcome, v.signature)),
        Some((Outcome::Cancel, cancelled.signature))
    );
    let late: Verdict = post_json(
        &agent,
        &format!("{url}/arbiter/v1/resolutions"),
        &common::resolve_request(&a, &b, &session),
    );
    assert_eq!(
        (late.outcome, late.signature, late.replayed),
        (Outcome::Cancel, cancelled.signature, true)
    );
    stop(child, stdout);
}

#[test]
fn the_arbiter_alone_takes_the_certificates_of_the_issuer_it_is_given() {
    let dir = tempfile::tempdir().unwrap();
    let db = dir.path().join("arbiter.sqlite");
    let issuer = SigningKey::generate_from_rng(&mut rand::rng());
    let issuer_hex = hex::encode(apdu_spec::cert::encode_public_key(issuer.verifying_key()));
    // No admin token: the arbiter has no admin routes.
    let c = command(&[
        "arbiter",
        "--listen",
        "127.0.0.1:0",
        "--db",
        db.to_str().unwrap(),
        "--issuer-public-key",
        &issuer_hex,
    ]);
    let (child, url, stdout) = start(c);
    let agent = common::agent();
    let info: ArbiterInfo = get_json(&agent, &format!("{url}/arbiter/v1/info"));
    assert_eq!(hex::encode(info.issuer_public_key), issuer_hex);
    let _: serde_json::Value = get_json(&agent, &format!("{url}/arbiter/openapi.json"));
    for other in ["/center/v1/info", "/bank/v1/keys"] {
        assert_eq!(get_status(&agent, &format!("{url}{other}")), 404, "{other}");
    }
    let (a, b) = (
        common::SoftCard::new(&issuer),
        common::SoftCard::new(&issuer),
    );
    let session = common::Session::new(&a, &b);
    let completed: Verdict = post_json(
        &agent,
        &format!("{url}/arbiter/v1/resolutions"),
        &common::resolve_request(&a, &b, &session),
    );
    assert_eq!(completed.outcome, Outcome::Complete);
    let arbiter_key = apdu_spec::cert::decode_public_key(&info.arbiter_public_key).unwrap();
    assert!(completed.verifies(&arbiter_key));
    // A card of another issuer is refused.
    let stranger = common::SoftCard::new(&SigningKey::generate_from_rng(&mut rand::rng()));
    let refused = agent
        .post(format!("{url}/arbiter/v1/cancellations"))
        .send_json(common::cancel_request(
            &stranger,
            &common::Session::new(&a, &stranger),
        ))
        .unwrap()
        .status()
        .as_u16();
    assert_eq!(refused, 422);
    let stderr = stop(child, stdout);
    assert!(db.exists());
    assert!(
        stderr.contains(&hex::encode(info.arbiter_public_key)),
        "{stderr}"
    );
}

#[test]
fn a_role_alone_serves_only_its_prefix() {
    let mut c = command(&["bank", "--listen", "127.0.0.1:0", "--db", ":memory:"]);
    c.env("VALUECARD_ADMIN_TOKEN", "tok");
    let (child, url, stdout) = start(c);
    let agent = common::agent();
    assert_eq!(get_status(&agent, &format!("{url}/bank/openapi.json")), 200);
    assert_eq!(get_status(&agent, &format!("{url}/center/v1/info")), 404);
    stop(child, stdout);

    let key = hex::encode(apdu_spec::cert::encode_public_key(
        p256::ecdsa::SigningKey::from_slice(&[7; 32])
            .unwrap()
            .verifying_key(),
    ));
    let mut c = command(&[
        "center",
        "--listen",
        "127.0.0.1:0",
        "--db",
        ":memory:",
        "--bank-public-key",
        &key,
        "--arbiter-public-key",
        &key,
    ]);
    c.env("VALUECARD_ADMIN_TOKEN", "tok");
    let (child, url, stdout) = start(c);
    let info: CenterInfo = get_json(&agent, &format!("{url}/center/v1/info"));
    assert_eq!(hex::encode(info.bank_public_key), key);
    assert_eq!(issue_ticket(&agent, &url, "tok"), 404, "unknown_card");
    assert_eq!(issue_ticket(&agent, &url, "wrong"), 401);
    assert_eq!(get_status(&agent, &format!("{url}/bank/v1/keys")), 404);
    stop(child, stdout);
}

/// A valid compressed P-256 public key (the generator point), hex.
const KEY: &str = "036b17d1f2e12c4247f8bce6e563a440f277037d812deb33a0f4a13945d898c296";

#[test]
fn missing_configuration_is_a_clear_error() {
    for (args, expected) in [
        (&["bank", "--db", ":memory:"][..], "VALUECARD_ADMIN_TOKEN"),
        (&["all", "--db", ":memory:"][..], "--admin-token-file"),
        (&["center", "--db", ":memory:"][..], "--bank-public-key"),
        (
            &["center", "--db", ":memory:", "--bank-public-key", "zz"][..],
            "--bank-public-key",
        ),
        // The center has admin routes too (tickets).
        (
            &[
                "center",
                "--db",
                ":memory:",
                "--bank-public-key",
                KEY,
                "--arbiter-public-key",
                KEY,
            ][..],
            "VALUECARD_ADMIN_TOKEN",
        ),
        (&["arbiter", "--db", ":memory:"][..], "--issuer-public-key"),
        (
            &["arbiter", "--db", ":memory:", "--issuer-public-key", "02ab"][..],
            "--issuer-public-key",
        ),
        // `all` wires the arbiter to its own center.
        (
            &["all", "--db", ":memory:", "--issuer-public-key", KEY][..],
            "--issuer-public-key",
        ),
    ] {
        let out = command(args).output().unwrap();
        assert!(!out.status.success(), "{args:?}");
        assert!(out.stdout.is_empty(), "{args:?}");
        let stderr = String::from_utf8_lossy(&out.stderr);
        assert!(stderr.contains(expected), "{args:?}: {stderr}");
    }
}
