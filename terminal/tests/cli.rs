//! The `valuecard` binary as users meet it: the config file and its precedence, `--json` on
//! the query commands, and logs (RUST_LOG) that never show a PIN, a credential or a token.
//! Everything here runs on in-process cards (`--card-state`) and a stub HTTP server: no
//! pcscd, no backend.
#![allow(clippy::unwrap_used)]

use std::path::Path;
use std::process::{Command, Output};
use std::sync::{Arc, Mutex};

use serde_json::Value;

const BIN: &str = env!("CARGO_BIN_EXE_valuecard");

/// `valuecard` with a clean environment: no VALUECARD_* or RUST_LOG from the caller, and the
/// config and data folders in `home`, so that no user's config file leaks in.
fn valuecard(home: &Path, args: &[&str], env: &[(&str, &str)]) -> Output {
    command(home, args, env).output().unwrap()
}

/// The command that `valuecard` runs, to be run another way.
fn command(home: &Path, args: &[&str], env: &[(&str, &str)]) -> Command {
    let mut command = Command::new(BIN);
    for (name, _) in std::env::vars() {
        if name.starts_with("VALUECARD_") || name == "RUST_LOG" {
            command.env_remove(name);
        }
    }
    command
        .args(args)
        .env("HOME", home)
        .env("XDG_CONFIG_HOME", home.join("config"))
        .env("XDG_DATA_HOME", home.join("data"))
        .envs(env.iter().copied());
    command
}

fn stdout(output: &Output) -> String {
    String::from_utf8_lossy(&output.stdout).into_owned()
}

fn stderr(output: &Output) -> String {
    String::from_utf8_lossy(&output.stderr).into_owned()
}

#[track_caller]
fn ok(output: Output) -> Output {
    assert!(
        output.status.success(),
        "failed ({:?})\nstdout:\n{}\nstderr:\n{}",
        output.status,
        stdout(&output),
        stderr(&output)
    );
    output
}

#[track_caller]
fn json(output: Output) -> Value {
    let output = ok(output);
    serde_json::from_slice(&output.stdout)
        .unwrap_or_else(|e| panic!("not JSON ({e}): {}", stdout(&output)))
}

/// Where `valuecard config --json` says `key` comes from: (value, source).
fn setting(config: &Value, key: &str) -> (Value, String) {
    let s = &config["settings"][key];
    (
        s["value"].clone(),
        s["source"].as_str().unwrap().to_string(),
    )
}

#[test]
fn settings_come_from_the_command_line_then_the_environment_then_the_file() {
    let home = tempfile::tempdir().unwrap();
    let file = home.path().join("valuecard.toml");
    std::fs::write(
        &file,
        "backend = \"http://file:1\"\nbank = \"http://file-bank:2\"\ncenter = \"http://file-center:3\"\n\
         reader = \"file reader\"\njournal = \"journal.json\"\ninitiator = \"0\"\nresponder = \"1\"\n",
    )
    .unwrap();
    let file_arg = file.to_str().unwrap();

    // Nothing set, and no default file: the built-in defaults.
    let config = json(valuecard(home.path(), &["config", "--json"], &[]));
    assert_eq!(config["config_file"]["loaded"], false);
    assert_eq!(
        setting(&config, "backend"),
        ("http://127.0.0.1:8640".into(), "default".into())
    );
    assert_eq!(setting(&config, "reader"), (Value::Null, "default".into()));
    assert_eq!(config["settings"]["bank"]["via_backend"], true);

    // The file, named by --config: every key, the journal beside the file.
    let config = json(valuecard(
        home.path(),
        &["--config", file_arg, "config", "--json"],
        &[],
    ));
    assert_eq!(config["config_file"]["loaded"], true);
    assert_eq!(config["config_file"]["source"], "command_line");
    for (key, value) in [
        ("backend", "http://file:1"),
        ("bank", "http://file-bank:2"),
        ("center", "http://file-center:3"),
        ("reader", "file reader"),
        ("initiator", "0"),
        ("responder", "1"),
    ] {
        assert_eq!(
            setting(&config, key),
            (value.into(), "config_file".into()),
            "{key}"
        );
    }
    assert_eq!(
        setting(&config, "arbiter"),
        ("http://file:1".into(), "config_file".into())
    );
    assert_eq!(
        config["settings"]["journal"]["value"],
        home.path().join("journal.json").to_str().unwrap()
    );

    // The environment wins over the file, and the command line over both.
    let env = [
        ("VALUECARD_CONFIG", file_arg),
        ("VALUECARD_BACKEND", "http://env:4"),
        ("VALUECARD_READER", "env reader"),
        ("VALUECARD_RESPONDER", "env responder"),
    ];
    let config = json(valuecard(
        home.path(),
        &["--reader", "cli reader", "config", "--json"],
        &env,
    ));
    assert_eq!(config["config_file"]["source"], "environment");
    assert_eq!(
        setting(&config, "backend"),
        ("http://env:4".into(), "environment".into())
    );
    assert_eq!(
        setting(&config, "reader"),
        ("cli reader".into(), "command_line".into())
    );
    assert_eq!(
        setting(&config, "responder"),
        ("env responder".into(), "environment".into())
    );
    assert_eq!(
        setting(&config, "bank"),
        ("http://file-bank:2".into(), "config_file".into())
    );

    // The default file is read when it is there.
    let default = home.path().join("config/valuecard/config.toml");
    std::fs::create_dir_all(default.parent().unwrap()).unwrap();
    std::fs::write(&default, "center = \"http://default-file:5\"\n").unwrap();
    let config = json(valuecard(home.path(), &["config", "--json"], &[]));
    assert_eq!(config["config_file"]["loaded"], true);
    assert_eq!(config["config_file"]["source"], "default");
    assert_eq!(
        setting(&config, "center"),
        ("http://default-file:5".into(), "config_file".into())
    );

    // The text form names every source.
    let text = stdout(&ok(valuecard(
        home.path(),
        &["--backend", "http://cli:6", "config"],
        &[],
    )));
    assert!(text.contains("command line (--backend)"), "{text}");
    assert!(text.contains("config file ("), "{text}");
}

#[test]
fn a_configured_reader_yields_to_card_state() {
    let home = tempfile::tempdir().unwrap();
    let file = home.path().join("c.toml");
    std::fs::write(&file, "reader = \"no such reader\"\n").unwrap();
    let state = home.path().join("card.state");
    let info = json(valuecard(
        home.path(),
        &[
            "--config",
            file.to_str().unwrap(),
            "--card-state",
            state.to_str().unwrap(),
            "info",
            "--json",
        ],
        &[],
    ));
    assert_eq!(info["life_cycle"], "blank");
}

#[test]
fn config_file_mistakes_are_clear_errors() {
    let home = tempfile::tempdir().unwrap();
    let cases: [(&str, Option<&str>, &str); 4] = [
        ("missing.toml", None, "cannot read the config file"),
        ("typo.toml", Some("backnd = \"http://x:1\"\n"), "backnd"),
        ("bad.toml", Some("backend = http://x:1\n"), "line 1"),
        ("type.toml", Some("reader = 0\n"), "reader"),
    ];
    for (name, contents, expected) in cases {
        let path = home.path().join(name);
        if let Some(contents) = contents {
            std::fs::write(&path, contents).unwrap();
        }
        let path = path.to_str().unwrap();
        for (args, env) in [
            (vec!["--config", path, "config"], vec![]),
            (vec!["config"], vec![("VALUECARD_CONFIG", path)]),
        ] {
            let output = valuecard(home.path(), &args, &env);
            assert!(!output.status.success(), "{name}");
            let err = stderr(&output);
            assert!(err.contains(expected), "{name}: {err}");
            assert!(err.contains(path), "{name}: {err}");
            assert!(err.contains("hint:"), "{name}: {err}");
            assert!(stdout(&output).is_empty(), "{name}");
        }
    }
}

#[test]
fn a_service_address_without_its_scheme_is_refused_before_anything_is_sent() {
    let home = tempfile::tempdir().unwrap();
    let output = valuecard(
        home.path(),
        &[
            "bank",
            "balance",
            "--account",
            "1",
            "--credential",
            "12345678",
        ],
        &[("VALUECARD_BANK", "localhost:8641")],
    );
    assert_eq!(output.status.code(), Some(2));
    let err = stderr(&output);
    assert!(err.contains("environment (VALUECARD_BANK)"), "{err}");
    assert!(err.contains("http://localhost:8641"), "{err}");
    // It does not stop the commands that need no service.
    ok(valuecard(
        home.path(),
        &["config"],
        &[("VALUECARD_BANK", "localhost:8641")],
    ));
}

#[test]
fn pin_status_answers_in_json() {
    let home = tempfile::tempdir().unwrap();
    let state = home.path().join("card.state");
    let state = state.to_str().unwrap();
    let blank = json(valuecard(
        home.path(),
        &["--card-state", state, "pin", "status", "--json"],
        &[],
    ));
    assert_eq!(blank["pin"], "not_set");
    assert_eq!(blank["tries_left"], Value::Null);
    personalise(home.path(), state, "24681357");
    let active = json(valuecard(
        home.path(),
        &["--card-state", state, "pin", "status", "--json"],
        &[],
    ));
    assert_eq!(active["pin"], "not_verified");
    assert_eq!(active["tries_left"], 3);
    assert_eq!(active["max_tries"], 3);
    assert_eq!(active["life_cycle"], "active");
}

#[test]
fn conformance_answers_in_json() {
    let home = tempfile::tempdir().unwrap();
    let state = home.path().join("card.state");
    let state = state.to_str().unwrap();
    let summary = json(valuecard(
        home.path(),
        &[
            "--card-state",
            state,
            "--emulator-test-mode",
            "conformance",
            "--filter",
            "chain",
            "--json",
        ],
        &[],
    ));
    let vectors = summary["vectors"].as_u64().unwrap();
    assert!(vectors > 0);
    assert_eq!(summary["passed"].as_u64(), Some(vectors));
    assert_eq!(summary["failed"], 0);
    let results = summary["results"].as_array().unwrap();
    assert_eq!(results.len() as u64, vectors);
    assert!(results.iter().all(|r| r["passed"] == true));
}

/// Makes the in-process card in `state` active with `pin`: a scheme of its own
/// (`valuecard-backend keys init`, a test maker), the card made by that maker
/// (`valuecard-card provision`), then `card init` with the scheme's issuer key.
fn personalise(home: &Path, state: &str, pin: &str) {
    let scheme = valuecard_terminal::launch::Scheme::create(&home.join("scheme"))
        .unwrap_or_else(|e| panic!("{e}"));
    scheme
        .provision(Path::new(state))
        .unwrap_or_else(|e| panic!("{e}"));
    ok(valuecard(
        home,
        &[
            "--card-state",
            state,
            "card",
            "init",
            "--keys",
            scheme.keys.to_str().unwrap(),
            "--pin",
            pin,
        ],
        &[("RUST_LOG", "trace")],
    ));
}

/// Whether `text` shows `secret`, as text or as hex.
fn shows(text: &str, secret: &str) -> bool {
    let hex = hex::encode(secret);
    text.contains(secret)
        || text.to_lowercase().contains(&hex)
        || text.to_lowercase().replace(' ', "").contains(&hex)
}

#[test]
fn trace_logs_never_show_the_pin() {
    let home = tempfile::tempdir().unwrap();
    let state = home.path().join("card.state");
    let state = state.to_str().unwrap();
    let (pin, new_pin) = ("97531864", "86420975");
    let trace = [("RUST_LOG", "trace")];
    personalise(home.path(), state, pin);
    let mut runs = vec![
        ok(valuecard(
            home.path(),
            &["--card-state", state, "pin", "verify", "--pin", pin],
            &trace,
        )),
        ok(valuecard(
            home.path(),
            &["--card-state", state, "pin", "verify"],
            &[("RUST_LOG", "trace"), ("VALUECARD_PIN", pin)],
        )),
        ok(valuecard(
            home.path(),
            &[
                "--card-state",
                state,
                "pin",
                "change",
                "--old",
                pin,
                "--new",
                new_pin,
            ],
            &trace,
        )),
    ];
    // A wrong PIN is not logged either.
    let wrong = valuecard(
        home.path(),
        &["--card-state", state, "pin", "verify", "--pin", pin],
        &trace,
    );
    assert!(!wrong.status.success());
    runs.push(wrong);
    let logs: String = runs.iter().map(stderr).collect();
    // The APDUs are logged: their names, lengths and status words.
    assert!(logs.contains("VERIFY"), "{logs}");
    assert!(logs.contains("CHANGE REFERENCE DATA"), "{logs}");
    assert!(logs.contains("sw="), "{logs}");
    for run in &runs {
        for secret in [pin, new_pin] {
            assert!(!shows(&stderr(run), secret), "{}", stderr(run));
            assert!(!shows(&stdout(run), secret), "{}", stdout(run));
        }
    }
}

/// A stub backend on loopback: answers every request with the API's "admin_unauthorized"
/// error, and keeps what it was sent (headers as `name: value` lines, then the body).
fn stub_backend() -> (String, Arc<Mutex<Vec<u8>>>) {
    let server = tiny_http::Server::http("127.0.0.1:0").unwrap();
    let base = format!("http://{}", server.server_addr().to_ip().unwrap());
    let seen = Arc::new(Mutex::new(Vec::new()));
    let record = Arc::clone(&seen);
    std::thread::spawn(move || {
        for mut request in server.incoming_requests() {
            let mut sent = Vec::new();
            for header in request.headers() {
                sent.extend_from_slice(
                    format!("{}: {}\r\n", header.field, header.value).as_bytes(),
                );
            }
            let _ = request.as_reader().read_to_end(&mut sent);
            record.lock().unwrap().extend_from_slice(&sent);
            let body = r#"{"error":{"code":"admin_unauthorized","message":"the admin token is missing or wrong"}}"#;
            let content_type =
                tiny_http::Header::from_bytes("content-type", "application/json").unwrap();
            let answer = tiny_http::Response::from_string(body)
                .with_status_code(401)
                .with_header(content_type);
            let _ = request.respond(answer);
        }
    });
    (base, seen)
}

#[test]
fn trace_logs_never_show_credentials_or_the_admin_token() {
    let home = tempfile::tempdir().unwrap();
    let (base, seen) = stub_backend();
    let token = "Zq7Xw9Kp4Rt2Vm8NtokenSECRET";
    let credential = "Hj3Lm5Np7Qr9St1Vcredential";
    let runs = [
        valuecard(
            home.path(),
            &[
                "--backend",
                &base,
                "bank",
                "open-account",
                "--admin-token",
                token,
                "--credential",
                credential,
            ],
            &[("RUST_LOG", "trace")],
        ),
        valuecard(
            home.path(),
            &[
                "--backend",
                &base,
                "bank",
                "balance",
                "--account",
                "123456789012",
            ],
            &[("RUST_LOG", "trace"), ("VALUECARD_CREDENTIAL", credential)],
        ),
    ];
    let sent = String::from_utf8_lossy(&seen.lock().unwrap()).into_owned();
    assert!(sent.contains(token), "the token went to the server");
    assert!(
        sent.contains(credential),
        "the credential went to the server"
    );
    let logs: String = runs.iter().map(stderr).collect();
    assert!(logs.contains("/bank/v1/accounts"), "{logs}");
    assert!(logs.contains("status=401"), "{logs}");
    for run in &runs {
        assert!(!run.status.success());
        let all = format!("{}{}", stdout(run), stderr(run));
        for secret in [token, credential] {
            // Any six characters of it: a hex dump would cut it across lines.
            for window in secret.as_bytes().windows(6) {
                let piece = std::str::from_utf8(window).unwrap();
                assert!(!all.contains(piece), "{piece:?} of a secret in:\n{all}");
            }
            assert!(!shows(&all, secret), "{all}");
        }
    }
}

#[test]
fn without_rust_log_nothing_is_logged() {
    let home = tempfile::tempdir().unwrap();
    let state = home.path().join("card.state");
    let output = ok(valuecard(
        home.path(),
        &["--card-state", state.to_str().unwrap(), "info"],
        &[],
    ));
    assert_eq!(stderr(&output), "");
}

/// `valuecard info | head -1`: when whoever reads the output has gone, the command ends as a
/// process killed by SIGPIPE would (141), and says nothing (no panic, no backtrace).
#[test]
fn a_closed_standard_output_ends_the_command_quietly() {
    let home = tempfile::tempdir().unwrap();
    let state = home.path().join("card.state");
    // The reading end is closed before the command starts, so its first write fails.
    let (reader, writer) = std::io::pipe().unwrap();
    drop(reader);
    let child = command(
        home.path(),
        &["--card-state", state.to_str().unwrap(), "info"],
        &[("RUST_BACKTRACE", "1")],
    )
    .stdout(writer)
    .stderr(std::process::Stdio::piped())
    .spawn()
    .unwrap();
    let output = child.wait_with_output().unwrap();
    assert_eq!(
        output.status.code(),
        Some(141),
        "stderr:\n{}",
        stderr(&output)
    );
    assert_eq!(stderr(&output), "");
}
