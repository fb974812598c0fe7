//! The `valuecard-backend` binary: `keys init`, the ready line, the roles' prefixes, clear
//! errors for a missing configuration or a key that is not the role's, a clean stop on
//! SIGTERM, the arbiter wired to the scheme's issuer, and `audit`'s exit status.
#![allow(clippy::unwrap_used)]

mod common;

use std::io::{BufRead, BufReader, Read};
use std::process::{Child, Command, Stdio};

use std::path::{Path, PathBuf};

use apdu_spec::exchange::Outcome;
use p256::ecdsa::SigningKey;
use p256::elliptic_curve::Generate;
use valuecard_backend::db::Database;
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

/// A software card on a chip of `maker`, registered at the center behind `url`: its
/// certificate is the center's.
fn registered_card(agent: &ureq::Agent, url: &str, maker: &SigningKey) -> common::SoftCard {
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
            attestation: common::Chip::made_by(maker).attest(&key, &challenge.challenge),
        },
    );
    common::SoftCard {
        key,
        id: registration.card_id,
        certificate: registration.certificate,
    }
}

/// Runs `keys init --out DIR`: the four public keys it printed, by name.
fn keys_init(dir: &Path) -> Vec<(String, String)> {
    let out = command(&["keys", "init", "--out"])
        .arg(dir)
        .output()
        .unwrap();
    assert!(out.status.success(), "{out:?}");
    let stdout = String::from_utf8(out.stdout).unwrap();
    let keys: Vec<(String, String)> = stdout
        .lines()
        .map(|l| {
            let (name, key) = l.split_once(" public key: ").unwrap();
            (name.to_owned(), key.to_owned())
        })
        .collect();
    assert_eq!(
        keys.iter().map(|k| k.0.as_str()).collect::<Vec<_>>(),
        ["root", "issuer", "arbiter", "bank"]
    );
    assert!(String::from_utf8_lossy(&out.stderr).contains("offline"));
    keys
}

fn key_file(path: &Path) -> SigningKey {
    let text = std::fs::read_to_string(path).unwrap();
    SigningKey::from_slice(&hex::decode(text.trim()).unwrap()).unwrap()
}

fn hex_key(key: &SigningKey) -> String {
    hex::encode(apdu_spec::cert::encode_public_key(key.verifying_key()))
}

fn arg(path: &Path) -> &str {
    path.to_str().unwrap()
}

#[test]
fn keys_init_makes_every_key_once() {
    let dir = tempfile::tempdir().unwrap();
    let keys = dir.path().join("keys");
    let printed = keys_init(&keys);
    for (name, file) in [
        ("root", "root.key"),
        ("issuer", "issuer.key"),
        ("arbiter", "arbiter.key"),
        ("bank", "bank.key"),
    ] {
        let key = key_file(&keys.join(file));
        assert_eq!(
            printed.iter().find(|k| k.0 == name).unwrap().1,
            hex_key(&key),
            "{name}"
        );
        #[cfg(unix)]
        {
            use std::os::unix::fs::PermissionsExt;
            let mode = std::fs::metadata(keys.join(file))
                .unwrap()
                .permissions()
                .mode();
            assert_eq!(mode & 0o777, 0o600, "{file}");
        }
    }
    let root_pub = std::fs::read_to_string(keys.join("root.pub")).unwrap();
    assert_eq!(root_pub.trim(), printed[0].1);
    let scheme: valuecard_protocol::scheme::Scheme =
        serde_json::from_str(&std::fs::read_to_string(keys.join("scheme.json")).unwrap()).unwrap();
    let checked = scheme.keys().unwrap();
    assert_eq!(
        hex::encode(apdu_spec::cert::encode_public_key(&checked.issuer)),
        printed[1].1
    );
    // Never twice into one folder: the keys stay as they were.
    let before = std::fs::read(keys.join("issuer.key")).unwrap();
    let out = command(&["keys", "init", "--out"])
        .arg(&keys)
        .output()
        .unwrap();
    assert_eq!(out.status.code(), Some(1));
    assert!(out.stdout.is_empty());
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(stderr.contains("never overwrites"), "{stderr}");
    assert_eq!(std::fs::read(keys.join("issuer.key")).unwrap(), before);
}

/// `all` on a folder of databases with the keys of `keys`.
fn all(db: &Path, keys: &Path, maker: &SigningKey) -> Command {
    let mut c = command(&[
        "all",
        "--listen",
        "127.0.0.1:0",
        "--db",
        arg(db),
        "--keys",
        arg(keys),
        "--trust-card-maker",
        &hex_key(maker),
    ]);
    c.env("VALUECARD_ADMIN_TOKEN", "s3cret-admin");
    c
}

#[test]
fn all_in_one_serves_both_prefixes_and_stops_on_sigterm() {
    let dir = tempfile::tempdir().unwrap();
    let keys = dir.path().join("keys");
    let printed = keys_init(&keys);
    let maker = SigningKey::generate_from_rng(&mut rand::rng());
    let token_file = dir.path().join("admin");
    std::fs::write(&token_file, "s3cret-admin\n").unwrap();
    let db = dir.path().join("data");
    let mut c = command(&[
        "all",
        "--listen",
        "127.0.0.1:0",
        "--db",
        arg(&db),
        "--keys",
        arg(&keys),
        "--trust-card-maker",
        &hex_key(&maker),
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
    // The keys are the scheme's, the anchors its root's.
    let printed = |name: &str| printed.iter().find(|k| k.0 == name).unwrap().1.clone();
    assert_eq!(hex::encode(info.root_public_key), printed("root"));
    assert_eq!(hex::encode(info.issuer_public_key), printed("issuer"));
    assert_eq!(hex::encode(info.arbiter_public_key), printed("arbiter"));
    assert_eq!(hex::encode(info.bank_public_key), printed("bank"));
    let root = apdu_spec::cert::decode_public_key(&info.root_public_key).unwrap();
    let anchor = apdu_spec::anchor::Anchor::decode(&info.issuer_anchor).unwrap();
    assert_eq!(
        anchor
            .verify(&root, apdu_spec::anchor::AnchorRole::Issuer)
            .map(|k| apdu_spec::cert::encode_public_key(&k)),
        Ok(info.issuer_public_key)
    );
    assert_eq!(
        info.trusted_makers,
        vec![valuecard_protocol::api::HexId(apdu_spec::maker::maker_id(
            maker.verifying_key()
        ))]
    );
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
    let (a, b) = (
        registered_card(&agent, &url, &maker),
        registered_card(&agent, &url, &maker),
    );
    let session = common::Session::new(&a, &b);
    let verdict_url = format!(
        "{url}/arbiter/v1/verdicts/{}/{}",
        hex::encode(session.a),
        hex::encode(session.s2)
    );
    let none: VerdictAnswer = get_json(&agent, &verdict_url);
    assert_eq!(none.verdict, None);
    let cancelled: Verdict = post_json(
        &agent,
        &format!("{url}/arbiter/v1/cancellations"),
        &common::cancel_request(&a, &b, &session),
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
    for secret in ["issuer.key", "bank.key", "arbiter.key", "root.key"] {
        let key = std::fs::read_to_string(keys.join(secret)).unwrap();
        assert!(!stderr.contains(key.trim()), "{secret} in the log");
    }
    assert!(
        !stderr.contains("s3cret-admin") && !stderr.contains("correct horse"),
        "{stderr}"
    );
    // root.key next to the running services draws a warning.
    assert!(stderr.contains("move it offline"), "{stderr}");

    // A restart keeps the keys.
    let (child, url, stdout) = start(all(&db, &keys, &maker));
    let again: CenterInfo = get_json(&agent, &format!("{url}/center/v1/info"));
    assert_eq!(again, info);
    // The verdict was kept, and A's late resolve request gets it.
    let verdict_url = format!(
        "{url}/arbiter/v1/verdicts/{}/{}",
        hex::encode(session.a),
        hex::encode(session.s2)
    );
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
    // A block reaches the arbiter of the same process: B gets no verdict any more.
    let blocked: valuecard_protocol::api::BlockAnswer = {
        let mut response = agent
            .post(format!("{url}/center/v1/blocks"))
            .header("Authorization", "Bearer s3cret-admin")
            .send_json(serde_json::json!({
                "entry": { "kind": "card", "id": hex::encode(b.id) },
                "reason": "lost"
            }))
            .unwrap();
        assert_eq!(response.status().as_u16(), 200);
        response.body_mut().read_json().unwrap()
    };
    assert_eq!(blocked.block_list.version, 1);
    let arbiter: ArbiterInfo = get_json(&agent, &format!("{url}/arbiter/v1/info"));
    assert_eq!(arbiter.block_list_version, 1);
    let refused = agent
        .post(format!("{url}/arbiter/v1/cancellations"))
        .send_json(common::cancel_request(
            &a,
            &b,
            &common::Session::new(&a, &b),
        ))
        .unwrap()
        .status()
        .as_u16();
    assert_eq!(refused, 403, "card_blocked");
    // The audit runs while the services do, read-only.
    let out = command(&["audit", "--db", arg(&db)]).output().unwrap();
    assert_eq!(out.status.code(), Some(0), "{out:?}");
    stop(child, stdout);
}

#[test]
fn the_arbiter_alone_takes_the_certificates_of_the_issuer_of_its_scheme() {
    let dir = tempfile::tempdir().unwrap();
    let keys = dir.path().join("keys");
    keys_init(&keys);
    let issuer = key_file(&keys.join("issuer.key"));
    let db = dir.path().join("arbiter.sqlite");
    // No admin token: the arbiter has no admin routes.
    let c = command(&[
        "arbiter",
        "--listen",
        "127.0.0.1:0",
        "--db",
        arg(&db),
        "--key",
        arg(&keys.join("arbiter.key")),
        "--scheme",
        arg(&keys.join("scheme.json")),
    ]);
    let (child, url, stdout) = start(c);
    let agent = common::agent();
    let info: ArbiterInfo = get_json(&agent, &format!("{url}/arbiter/v1/info"));
    assert_eq!(hex::encode(info.issuer_public_key), hex_key(&issuer));
    assert_eq!(
        hex::encode(info.arbiter_public_key),
        hex_key(&key_file(&keys.join("arbiter.key")))
    );
    assert_eq!(info.block_list_version, 0);
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
            &a,
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
    let dir = tempfile::tempdir().unwrap();
    let keys = dir.path().join("keys");
    keys_init(&keys);
    let mut c = command(&[
        "bank",
        "--listen",
        "127.0.0.1:0",
        "--db",
        ":memory:",
        "--key",
        arg(&keys.join("bank.key")),
        "--scheme",
        arg(&keys.join("scheme.json")),
    ]);
    c.env("VALUECARD_ADMIN_TOKEN", "tok");
    let (child, url, stdout) = start(c);
    let agent = common::agent();
    assert_eq!(get_status(&agent, &format!("{url}/bank/openapi.json")), 200);
    assert_eq!(get_status(&agent, &format!("{url}/center/v1/info")), 404);
    stop(child, stdout);

    let maker = SigningKey::generate_from_rng(&mut rand::rng());
    let mut c = command(&[
        "center",
        "--listen",
        "127.0.0.1:0",
        "--db",
        ":memory:",
        "--key",
        arg(&keys.join("issuer.key")),
        "--scheme",
        arg(&keys.join("scheme.json")),
        "--trust-card-maker",
        &hex_key(&maker),
        "--trust-card-maker",
        KEY,
    ]);
    c.env("VALUECARD_ADMIN_TOKEN", "tok");
    let (child, url, stdout) = start(c);
    let info: CenterInfo = get_json(&agent, &format!("{url}/center/v1/info"));
    assert_eq!(
        hex::encode(info.bank_public_key),
        hex_key(&key_file(&keys.join("bank.key")))
    );
    assert_eq!(info.trusted_makers.len(), 2);
    assert_eq!(issue_ticket(&agent, &url, "tok"), 404, "unknown_card");
    assert_eq!(issue_ticket(&agent, &url, "wrong"), 401);
    assert_eq!(get_status(&agent, &format!("{url}/bank/v1/keys")), 404);
    let card = registered_card(&agent, &url, &maker);
    assert_eq!(card.certificate.len(), apdu_spec::cert::ENCODED_LEN);
    stop(child, stdout);
}

/// A valid compressed P-256 public key (the generator point), hex.
const KEY: &str = "036b17d1f2e12c4247f8bce6e563a440f277037d812deb33a0f4a13945d898c296";

#[test]
fn missing_configuration_is_a_clear_error() {
    let dir = tempfile::tempdir().unwrap();
    let keys = dir.path().join("keys");
    keys_init(&keys);
    let file = |name: &str| keys.join(name).to_str().unwrap().to_owned();
    let (bank_key, issuer_key, scheme) =
        (file("bank.key"), file("issuer.key"), file("scheme.json"));
    let missing = file("missing.key");
    for (args, expected) in [
        (vec!["bank", "--db", ":memory:"], "--key"),
        (
            vec!["bank", "--db", ":memory:", "--key", &bank_key],
            "VALUECARD_ADMIN_TOKEN",
        ),
        (
            vec!["bank", "--db", ":memory:", "--key", &missing],
            "keys init",
        ),
        (vec!["all", "--db", ":memory:"], "--keys"),
        (
            vec!["all", "--db", ":memory:", "--keys", keys.to_str().unwrap()],
            "--admin-token-file",
        ),
        (vec!["center", "--db", ":memory:"], "--key"),
        (
            vec!["center", "--db", ":memory:", "--key", &issuer_key],
            "--scheme",
        ),
        (
            vec![
                "center",
                "--db",
                ":memory:",
                "--key",
                &issuer_key,
                "--scheme",
                &scheme,
                "--trust-card-maker",
                "zz",
            ],
            "--trust-card-maker",
        ),
        // The center has admin routes too (tickets, blocks, the float).
        (
            vec![
                "center",
                "--db",
                ":memory:",
                "--key",
                &issuer_key,
                "--scheme",
                &scheme,
            ],
            "VALUECARD_ADMIN_TOKEN",
        ),
        // A scheme file that is not one, a key file that is not one.
        (
            vec![
                "center",
                "--db",
                ":memory:",
                "--key",
                &issuer_key,
                "--scheme",
                &bank_key,
            ],
            "scheme.json",
        ),
        (
            vec![
                "center", "--db", ":memory:", "--key", &scheme, "--scheme", &scheme,
            ],
            "64 hex digits",
        ),
        (vec!["arbiter", "--db", ":memory:"], "--key"),
        (
            vec!["arbiter", "--db", ":memory:", "--key", &file("arbiter.key")],
            "--scheme",
        ),
        (vec!["keys", "init"], "--out"),
        (vec!["audit"], "--db DIR"),
        (vec!["audit", "--db", "x", "--bank", "y"], "--bank"),
    ] {
        let out = command(&args).output().unwrap();
        assert!(!out.status.success(), "{args:?}");
        assert!(out.stdout.is_empty(), "{args:?}");
        let stderr = String::from_utf8_lossy(&out.stderr);
        assert!(stderr.contains(expected), "{args:?}: {stderr}");
    }
}

/// Runs a role that must refuse to start: its stderr. A role that starts instead (prints its
/// ready line) is stopped, and the test fails rather than hangs.
fn refused_start(mut c: Command) -> String {
    let mut child = c
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    let mut line = String::new();
    BufReader::new(child.stdout.take().unwrap())
        .read_line(&mut line)
        .unwrap();
    if !line.is_empty() {
        let _ = child.kill();
        let _ = child.wait();
        panic!("it started: {line}");
    }
    let status = child.wait().unwrap();
    let mut stderr = String::new();
    child
        .stderr
        .take()
        .unwrap()
        .read_to_string(&mut stderr)
        .unwrap();
    assert_eq!(status.code(), Some(1), "{stderr}");
    stderr
}

#[test]
fn a_role_refuses_to_start_with_a_key_that_is_not_its() {
    let dir = tempfile::tempdir().unwrap();
    let (keys, other) = (dir.path().join("keys"), dir.path().join("other"));
    keys_init(&keys);
    keys_init(&other);
    let maker = SigningKey::generate_from_rng(&mut rand::rng());
    let db = dir.path().join("data");
    let (child, _, stdout) = start(all(&db, &keys, &maker));
    stop(child, stdout);
    let file = |dir: &PathBuf, name: &str| dir.join(name).to_str().unwrap().to_owned();

    // Another scheme's keys on these databases: each role is bound to its key.
    let stderr = refused_start(all(&db, &other, &maker));
    assert!(
        stderr.contains("belongs to the bank key") && stderr.contains("hint:"),
        "{stderr}"
    );
    for (role, key, name) in [
        ("center", "issuer.key", "center.sqlite"),
        ("arbiter", "arbiter.key", "arbiter.sqlite"),
        ("bank", "bank.key", "bank.sqlite"),
    ] {
        let mut c = command(&[
            role,
            "--listen",
            "127.0.0.1:0",
            "--db",
            &file(&db, name),
            "--key",
            &file(&other, key),
            "--scheme",
            &file(&other, "scheme.json"),
        ]);
        c.env("VALUECARD_ADMIN_TOKEN", "tok");
        let stderr = refused_start(c);
        let role_key = if role == "center" { "issuer" } else { role };
        assert!(
            stderr.contains(&format!("belongs to the {role_key} key")),
            "{role}: {stderr}"
        );
        assert!(stderr.contains("first started with"), "{role}: {stderr}");
    }

    // A key that is not the one the scheme names: refused before any database is touched.
    for (role, key) in [
        ("center", "arbiter.key"),
        ("arbiter", "issuer.key"),
        ("bank", "issuer.key"),
    ] {
        let fresh = dir.path().join(format!("fresh-{role}.sqlite"));
        let mut c = command(&[
            role,
            "--listen",
            "127.0.0.1:0",
            "--db",
            arg(&fresh),
            "--key",
            &file(&keys, key),
            "--scheme",
            &file(&keys, "scheme.json"),
        ]);
        c.env("VALUECARD_ADMIN_TOKEN", "tok");
        let stderr = refused_start(c);
        assert!(stderr.contains("is not the"), "{role}: {stderr}");
        assert!(stderr.contains("keys init"), "{role}: {stderr}");
        if role != "center" {
            assert!(!fresh.exists(), "{role}: a database was made");
        }
    }
    // `all` with one file of another scheme in its folder.
    let mixed = dir.path().join("mixed");
    keys_init(&mixed);
    std::fs::copy(other.join("arbiter.key"), mixed.join("arbiter.key.new")).unwrap();
    std::fs::rename(mixed.join("arbiter.key.new"), mixed.join("arbiter.key")).unwrap();
    let stderr = refused_start(all(&dir.path().join("mixed-db"), &mixed, &maker));
    assert!(
        stderr.contains("is not the arbiter key of the scheme"),
        "{stderr}"
    );
}

#[test]
fn audit_exits_0_1_or_2() {
    let dir = tempfile::tempdir().unwrap();
    let db = dir.path().join("data");
    std::fs::create_dir_all(&db).unwrap();
    let w = common::World::in_dir(&db, &[32]);
    let account = w.open_account(100);
    let (card, card_id) = w.funded_card(&account, &[32]);
    w.load(&common::load_order(&card, 0, common::jpy(10)))
        .unwrap();
    let copy = dir.path().join("copy");
    std::fs::create_dir_all(&copy).unwrap();
    for (name, database) in [
        ("bank.sqlite", w.bank.database()),
        ("center.sqlite", w.center.database()),
        ("arbiter.sqlite", w.arbiter.database()),
    ] {
        database.copy_to(arg(&copy.join(name))).unwrap();
    }
    let out = command(&["audit", "--db", arg(&copy)]).output().unwrap();
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert_eq!(out.status.code(), Some(0), "{stdout}");
    assert!(
        stdout.contains("13 invariants hold, 0 violated"),
        "{stdout}"
    );
    let json = command(&["audit", "--db", arg(&copy), "--json"])
        .output()
        .unwrap();
    let report: serde_json::Value = serde_json::from_slice(&json.stdout).unwrap();
    assert_eq!(report["ok"], serde_json::json!(true));

    // A credited unload nobody loaded, planted in the copy.
    let center = Database::open_sqlite(
        arg(&copy.join("center.sqlite")),
        "center",
        valuecard_backend::center::MIGRATIONS,
    )
    .unwrap();
    let receipt = apdu_spec::units::UnitMessage {
        card_id,
        counter: 7,
        value: common::jpy(1000),
    }
    .encode_unload();
    center
        .transaction(|tx| {
            tx.execute_batch("DROP TRIGGER unloads_credit;")?;
            tx.execute(
                "INSERT INTO unloads (card_id, counter, receipt, signature, asset, amount, acknowledgement, day)
                 VALUES (?1, 7, ?2, zeroblob(64), 'JPY', 1000, zeroblob(64), 0)",
                &[card_id.into(), receipt.into()],
            )
        })
        .map(|_| ())
        .unwrap_or_else(|e| panic!("{e}"));
    drop(center);
    let out = command(&["audit", "--db", arg(&copy)]).output().unwrap();
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert_eq!(out.status.code(), Some(1), "{stdout}");
    assert!(stdout.contains("VIOLATION  center.float"), "{stdout}");
    let json = command(&[
        "audit",
        "--center",
        arg(&copy.join("center.sqlite")),
        "--json",
    ])
    .output()
    .unwrap();
    assert_eq!(json.status.code(), Some(1));
    let report: serde_json::Value = serde_json::from_slice(&json.stdout).unwrap();
    let float = report["invariants"]
        .as_array()
        .unwrap()
        .iter()
        .find(|c| c["name"] == "center.float")
        .unwrap();
    assert_eq!(float["status"], serde_json::json!("violation"), "{report}");

    // Usage errors, a file that is not a database, a missing one: 2.
    std::fs::write(
        dir.path().join("junk.sqlite"),
        b"not a database at all, not at all",
    )
    .unwrap();
    for args in [
        vec!["audit".to_owned()],
        vec![
            "audit".into(),
            "--bank".into(),
            arg(&dir.path().join("junk.sqlite")).into(),
        ],
        vec![
            "audit".into(),
            "--db".into(),
            arg(&dir.path().join("nowhere")).into(),
        ],
        vec!["audit".into(), "--frobnicate".into()],
    ] {
        let out = command(&args.iter().map(String::as_str).collect::<Vec<_>>())
            .output()
            .unwrap();
        assert_eq!(out.status.code(), Some(2), "{args:?}: {out:?}");
    }
}
