//! Writes the fuzzer's seed corpus: one file per malformed conformance vector.
//!
//! `cargo run -p valuecard-apdu-spec --example fuzz_corpus -- fuzz/corpus/apdu_sequence`
//!
//! A file holds, in order, the commands that bring a card into the vector's starting state
//! (`vectors::setup`) and then the vector's own, in the framing that
//! `valuecard_card::fuzz::run_sequence` splits: each APDU as a 2-byte big-endian length and
//! the bytes, and each reset or power cycle as the length `FFFF` alone (a warm reset). The
//! fuzzed card makes its own key, so the personalisation bodies here are computed for a
//! fixed key of ours: GENERATE KEY does bring the card to `keyed`, which opens PERSONALIZE's
//! body checks to the fuzzer, but the PERSONALIZE commands are inputs to mutate, not
//! commands that will succeed.

use std::path::PathBuf;
use std::process::ExitCode;

use apdu_spec::{cert, vectors};
use p256::ecdsa::SigningKey;

/// The secret behind the `PUBLIC_KEY` that the derived variables (PERSONALIZATION, ...) are
/// computed for.
const CORPUS_CARD_SECRET: [u8; 32] = [0x44; 32];

/// The frame length that stands for a reset (`valuecard_card::fuzz::RESET_FRAME`).
const RESET_FRAME: [u8; 2] = [0xFF, 0xFF];

fn vars() -> Result<vectors::Vars, String> {
    let mut vars = vectors::initial_vars();
    let key =
        SigningKey::from_slice(&CORPUS_CARD_SECRET).map_err(|e| format!("corpus key: {e}"))?;
    let public_key = cert::encode_public_key(key.verifying_key());
    vars.insert("CARD_ID".into(), apdu_spec::card_id(&public_key).to_vec());
    vars.insert("PUBLIC_KEY".into(), public_key.to_vec());
    Ok(vars)
}

/// A file name from a vector name: lower-case ASCII letters and digits, `-` between words.
fn file_name(file: &str, name: &str) -> String {
    let stem = file.trim_end_matches(".toml");
    let mut out = String::new();
    for c in format!("{stem} {name}").chars() {
        if c.is_ascii_alphanumeric() {
            out.push(c.to_ascii_lowercase());
        } else if !out.ends_with('-') {
            out.push('-');
        }
    }
    out.trim_matches('-').to_string()
}

fn run() -> Result<usize, String> {
    let dir: PathBuf = std::env::args_os()
        .nth(1)
        .map(PathBuf::from)
        .ok_or("usage: fuzz_corpus OUTPUT_DIR")?;
    std::fs::create_dir_all(&dir).map_err(|e| format!("{}: {e}", dir.display()))?;
    let base = vars()?;
    let mut written = 0;
    for (file, vector) in vectors::all()? {
        if !vector.malformed {
            continue;
        }
        let setup = vectors::setup(vector.given);
        let mut input = Vec::new();
        for step in setup.iter().chain(&vector.steps) {
            let Some(send) = step.send.as_deref() else {
                // A reset or a power cycle: both clear the volatile state.
                input.extend_from_slice(&RESET_FRAME);
                continue;
            };
            // No malformed vector uses a variable captured from the card, so the fixed
            // variables expand every template.
            let apdu = vectors::expand(send, &base)
                .map_err(|e| format!("{file}: {}: {e}", vector.name))?;
            let len = u16::try_from(apdu.len())
                .ok()
                .filter(|&len| len.to_be_bytes() != RESET_FRAME)
                .ok_or_else(|| format!("{file}: {}: an APDU too long to frame", vector.name))?;
            input.extend_from_slice(&len.to_be_bytes());
            input.extend_from_slice(&apdu);
        }
        let path = dir.join(file_name(&file, &vector.name));
        std::fs::write(&path, &input).map_err(|e| format!("{}: {e}", path.display()))?;
        written += 1;
    }
    Ok(written)
}

fn main() -> ExitCode {
    match run() {
        Ok(n) => {
            println!("wrote {n} seed inputs");
            ExitCode::SUCCESS
        }
        Err(e) => {
            eprintln!("fuzz_corpus: {e}");
            ExitCode::FAILURE
        }
    }
}
