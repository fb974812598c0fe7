//! The card maker's offline tools in `valuecard-card`: `maker-key` and `provision`. They
//! write secrets, so they never overwrite and they write files only their owner can read.

use std::fs;
use std::path::Path;
use std::process::{Command, Output};

use apdu_spec::cert;
use apdu_spec::maker::{self, MakerCertificate};
use p256::ecdsa::SigningKey;
use valuecard_card::applet::decode;
use valuecard_card::storage::{FileStorage, Storage};
use valuecard_card::{Card, Options};

fn card_tool(args: &[&str]) -> Output {
    Command::new(env!("CARGO_BIN_EXE_valuecard-card"))
        .args(args)
        .output()
        .expect("run valuecard-card")
}

fn stdout(out: &Output) -> String {
    String::from_utf8_lossy(&out.stdout).into_owned()
}

fn stderr(out: &Output) -> String {
    String::from_utf8_lossy(&out.stderr).into_owned()
}

#[cfg(unix)]
fn mode(path: &Path) -> u32 {
    use std::os::unix::fs::PermissionsExt;
    fs::metadata(path).expect("metadata").permissions().mode() & 0o777
}

/// The line `label: value` of a tool's output.
fn field(output: &str, label: &str) -> String {
    output
        .lines()
        .find_map(|l| l.strip_prefix(&format!("{label}:")))
        .map(|v| v.trim().to_string())
        .unwrap_or_else(|| panic!("no {label:?} line in {output}"))
}

fn root_hex() -> String {
    let root = SigningKey::from_slice(&[0x4F; 32]).expect("a scalar");
    hex::encode(cert::encode_public_key(root.verifying_key()))
}

#[test]
fn maker_key_writes_a_private_key_once() {
    let dir = tempfile::tempdir().expect("tempdir");
    let path = dir.path().join("maker.key");
    let path_str = path.to_str().expect("utf-8");
    let out = card_tool(&["maker-key", "--out", path_str]);
    assert!(out.status.success(), "{}", stderr(&out));
    let text = fs::read_to_string(&path).expect("the key file");
    assert_eq!(text.trim().len(), 64, "64 hex digits");
    let key = SigningKey::from_slice(&hex::decode(text.trim()).expect("hex")).expect("a scalar");
    let printed = stdout(&out);
    assert_eq!(
        field(&printed, "maker public key"),
        hex::encode(cert::encode_public_key(key.verifying_key()))
    );
    assert_eq!(
        field(&printed, "maker id"),
        hex::encode(maker::maker_id(key.verifying_key()))
    );
    assert!(!printed.contains(text.trim()), "the secret is not printed");
    #[cfg(unix)]
    assert_eq!(mode(&path), 0o600);

    // Never over an existing key.
    let again = card_tool(&["maker-key", "--out", path_str]);
    assert!(!again.status.success());
    assert!(
        stderr(&again).contains("never overwritten"),
        "{}",
        stderr(&again)
    );
    assert_eq!(fs::read_to_string(&path).expect("the key file"), text);
}

#[test]
fn provision_makes_a_card_once_with_a_private_state_file() {
    let dir = tempfile::tempdir().expect("tempdir");
    let maker_path = dir.path().join("maker.key");
    let made = card_tool(&["maker-key", "--out", maker_path.to_str().expect("utf-8")]);
    assert!(made.status.success());
    let maker_key = field(&stdout(&made), "maker public key");
    let state = dir.path().join("card.state");
    let args = |state: &Path, root: &str| -> Vec<String> {
        vec![
            "provision".into(),
            "--state".into(),
            state.to_str().expect("utf-8").into(),
            "--maker-key".into(),
            maker_path.to_str().expect("utf-8").into(),
            "--root-key".into(),
            root.into(),
        ]
    };
    let run = |args: Vec<String>| {
        let refs: Vec<&str> = args.iter().map(String::as_str).collect();
        card_tool(&refs)
    };
    let out = run(args(&state, &root_hex()));
    assert!(out.status.success(), "{}", stderr(&out));
    #[cfg(unix)]
    assert_eq!(
        mode(&state),
        0o600,
        "the state file holds the attestation key"
    );
    let written = fs::read(&state).expect("state file");
    let card = decode(&written).expect("a format-2 state");
    let record = card.manufacture.as_ref().expect("manufactured");
    assert_eq!(hex::encode(record.root_key), root_hex());
    assert!(
        card.key.is_none() && card.personalization.is_none(),
        "blank"
    );
    let certificate = MakerCertificate::decode(&record.maker_certificate).expect("7F23");
    let maker =
        cert::decode_public_key(&hex::decode(&maker_key).expect("hex")).expect("a P-256 key");
    assert!(certificate.verify(&maker).is_ok(), "certified by the maker");
    let printed = stdout(&out);
    assert_eq!(field(&printed, "maker id"), hex::encode(certificate.maker));
    assert_eq!(
        field(&printed, "attestation key"),
        hex::encode(certificate.attestation_key)
    );
    assert!(
        !printed.contains(&hex::encode(record.attestation_secret.0)),
        "the secret is not printed"
    );

    // The run mode starts from it, and shows the root key.
    let mut c = Card::new(
        Box::new(FileStorage::open(&state).expect("storage")),
        Options::default(),
    )
    .expect("the card starts");
    let answer = c.transmit(&[0x00, 0xCA, 0x00, 0xC5, 0x00]);
    assert_eq!(hex::encode(&answer[2..35]), root_hex());
    drop(c);

    // Never over a card: a manufactured one, or one with a key.
    let again = run(args(&state, &root_hex()));
    assert!(!again.status.success());
    assert!(
        stderr(&again).contains("manufactured already"),
        "{}",
        stderr(&again)
    );
    assert_eq!(fs::read(&state).expect("state file"), written);
    let keyed = dir.path().join("keyed.state");
    let mut k = Card::new(
        Box::new(FileStorage::open(&keyed).expect("storage")),
        Options::default(),
    )
    .expect("a blank card");
    let r = k.transmit(&[0x80, 0x47, 0x00, 0x00, 0x00]);
    assert_eq!(&r[r.len() - 2..], &[0x90, 0x00]);
    drop(k);
    let keyed_bytes = fs::read(&keyed).expect("state file");
    let refused = run(args(&keyed, &root_hex()));
    assert!(!refused.status.success());
    assert!(
        stderr(&refused).contains("has a key"),
        "{}",
        stderr(&refused)
    );
    assert_eq!(fs::read(&keyed).expect("state file"), keyed_bytes);

    // Bad inputs: nothing written.
    let fresh = dir.path().join("fresh.state");
    for (root, why) in [("02ab", "a short root key"), ("zz", "not hex")] {
        let out = run(args(&fresh, root));
        assert!(!out.status.success(), "{why}");
        assert!(
            stderr(&out).contains("--root-key"),
            "{why}: {}",
            stderr(&out)
        );
        assert!(!fresh.exists(), "{why}: nothing written");
    }
    fs::write(dir.path().join("bad.key"), "not a key\n").expect("write");
    let bad_maker = card_tool(&[
        "provision",
        "--state",
        fresh.to_str().expect("utf-8"),
        "--maker-key",
        dir.path().join("bad.key").to_str().expect("utf-8"),
        "--root-key",
        &root_hex(),
    ]);
    assert!(!bad_maker.status.success());
    assert!(
        stderr(&bad_maker).contains("holds no maker key"),
        "{}",
        stderr(&bad_maker)
    );
    assert!(!fresh.exists());
    assert_eq!(
        FileStorage::open(&fresh)
            .expect("storage")
            .load()
            .expect("load"),
        None
    );
}

#[test]
fn every_command_has_help_with_examples() {
    for args in [
        vec!["--help"],
        vec!["provision", "--help"],
        vec!["maker-key", "--help"],
    ] {
        let out = card_tool(&args);
        assert!(out.status.success(), "{args:?}");
        assert!(stdout(&out).contains("Examples:"), "{args:?}");
    }
}

#[test]
fn a_format_1_state_file_is_refused_with_a_clear_message() {
    let dir = tempfile::tempdir().expect("tempdir");
    let state = dir.path().join("old.state");
    fs::write(
        &state,
        r#"{ "format": 1, "key": null, "personalization": null, "load_counter": 0,
             "unload_counter": 0, "values": { "assets": [], "tickets": [] } }"#,
    )
    .expect("write");
    // The run mode stops before it connects anywhere.
    let out = card_tool(&[
        "--vpcd",
        "127.0.0.1:9",
        "--state",
        state.to_str().expect("utf-8"),
    ]);
    assert!(!out.status.success());
    let message = stderr(&out);
    assert!(message.contains("format 1"), "{message}");
    assert!(message.contains("valuecard-card provision"), "{message}");
}
