//! The `valuecard-backend` binary: the ready line, the roles' prefixes, clear errors for a
//! missing configuration, and a clean stop on SIGTERM.
#![allow(clippy::unwrap_used)]

mod common;

use std::io::{BufRead, BufReader, Read};
use std::process::{Child, Command, Stdio};

use valuecard_protocol::api::CenterInfo;

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
    let info: CenterInfo = agent
        .get(format!("{url}/center/v1/info"))
        .call()
        .unwrap()
        .body_mut()
        .read_json()
        .unwrap();
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
    let again: CenterInfo = agent
        .get(format!("{url}/center/v1/info"))
        .call()
        .unwrap()
        .body_mut()
        .read_json()
        .unwrap();
    assert_eq!(again, info);
    stop(child, stdout);
}

#[test]
fn a_role_alone_serves_only_its_prefix() {
    let mut c = command(&["bank", "--listen", "127.0.0.1:0", "--db", ":memory:"]);
    c.env("VALUECARD_ADMIN_TOKEN", "tok");
    let (child, url, stdout) = start(c);
    let agent = common::agent();
    assert_eq!(
        agent
            .get(format!("{url}/bank/openapi.json"))
            .call()
            .unwrap()
            .status()
            .as_u16(),
        200
    );
    assert_eq!(
        agent
            .get(format!("{url}/center/v1/info"))
            .call()
            .unwrap()
            .status()
            .as_u16(),
        404
    );
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
    let info: CenterInfo = agent
        .get(format!("{url}/center/v1/info"))
        .call()
        .unwrap()
        .body_mut()
        .read_json()
        .unwrap();
    assert_eq!(hex::encode(info.bank_public_key), key);
    assert_eq!(issue_ticket(&agent, &url, "tok"), 404, "unknown_card");
    assert_eq!(issue_ticket(&agent, &url, "wrong"), 401);
    assert_eq!(
        agent
            .get(format!("{url}/bank/v1/keys"))
            .call()
            .unwrap()
            .status()
            .as_u16(),
        404
    );
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
    ] {
        let out = command(args).output().unwrap();
        assert!(!out.status.success(), "{args:?}");
        assert!(out.stdout.is_empty(), "{args:?}");
        let stderr = String::from_utf8_lossy(&out.stderr);
        assert!(stderr.contains(expected), "{args:?}: {stderr}");
    }
}
