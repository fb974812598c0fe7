//! The virtual card through pcscd, driven by clients other than our terminal: OpenSC's
//! opensc-tool, pcsc-tools' ATR_analysis and pyscard. And our own CLI end to end.

use std::process::Command;

use valuecard_terminal::launch;
use valuecard_terminal::pcsc::list_readers;
use valuecard_tests::{VirtualCard, lock_vpcd, valuecard};

fn hex_spaced(bytes: &[u8]) -> String {
    bytes
        .iter()
        .map(|b| format!("{b:02X}"))
        .collect::<Vec<_>>()
        .join(" ")
}

fn reader_index(name: &str) -> usize {
    list_readers()
        .expect("pcscd")
        .iter()
        .position(|r| r.name == name)
        .expect("reader listed")
}

#[test]
fn opensc_tool_selects_the_application_and_gets_the_fci() {
    let _lock = lock_vpcd();
    let dir = tempfile::tempdir().expect("tempdir");
    let card = VirtualCard::start(0, &dir.path().join("card.state"), false);
    let select = format!(
        "00 A4 04 00 {:02X} {} 00",
        apdu_spec::AID.len(),
        hex_spaced(apdu_spec::AID)
    );
    let out = Command::new("opensc-tool")
        .args(["-r", &reader_index(&card.reader).to_string(), "-s", &select])
        .output()
        .expect("opensc-tool is installed (package opensc)");
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert!(
        out.status.success(),
        "{stdout}\n{}",
        String::from_utf8_lossy(&out.stderr)
    );
    assert!(stdout.contains("SW1=0x90, SW2=0x00"), "{stdout}");
    // opensc-tool prints 16 bytes per line: the FCI starts 6F 11 84 07 and the AID.
    let fci_start = format!("6F 11 84 07 {}", hex_spaced(&apdu_spec::AID[..5]));
    assert!(stdout.contains(&fci_start), "no FCI in:\n{stdout}");
}

#[test]
fn the_atr_pcscd_reports_is_ours_and_atr_analysis_accepts_its_checksum() {
    let _lock = lock_vpcd();
    let dir = tempfile::tempdir().expect("tempdir");
    let card = VirtualCard::start(0, &dir.path().join("card.state"), false);
    let reader = list_readers()
        .expect("pcscd")
        .into_iter()
        .find(|r| r.name == card.reader)
        .expect("reader");
    assert_eq!(
        reader.atr.as_deref(),
        Some(apdu_spec::ATR),
        "pcscd got the card's ATR"
    );
    let out = Command::new("ATR_analysis")
        .arg(hex_spaced(apdu_spec::ATR))
        .output()
        .expect("ATR_analysis is installed (package pcsc-tools)");
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert!(stdout.contains("(correct checksum)"), "{stdout}");
    assert!(
        stdout.contains("Extended Lc and Le fields") && stdout.contains("Command chaining"),
        "{stdout}"
    );
}

const PYSCARD_SCRIPT: &str = r#"
import sys
from smartcard.System import readers
reader = [r for r in readers() if str(r) == sys.argv[1]][0]
c = reader.createConnection()
c.connect()
aid = list(bytes.fromhex(sys.argv[2]))
data, sw1, sw2 = c.transmit([0x00, 0xA4, 0x04, 0x00, len(aid)] + aid + [0x00])
assert (sw1, sw2) == (0x90, 0x00) and data[:2] == [0x6F, 0x11], (data, sw1, sw2)
data, sw1, sw2 = c.transmit([0x80, 0x47, 0x00, 0x00, 0x00])
assert (sw1, sw2) == (0x90, 0x00) and data[:2] == [0xC1, 0x21] and len(data) == 35, (data, sw1, sw2)
key = data[2:]
data, sw1, sw2 = c.transmit([0x00, 0xCA, 0x00, 0xC1, 0x00])
assert data[2:] == key, "GET DATA returns the generated key"
data, sw1, sw2 = c.transmit([0x80, 0x47, 0x00, 0x00, 0x00])
assert (sw1, sw2, data) == (0x69, 0x85, []), (data, sw1, sw2)
data, sw1, sw2 = c.transmit([0x00, 0xCA, 0x00, 0x6E])
assert sw1 == 0x61, (sw1, sw2)
data, sw1, sw2 = c.transmit([0x00, 0xC0, 0x00, 0x00, sw2])
assert (sw1, sw2) == (0x90, 0x00) and data[0] == 0x6E, (data, sw1, sw2)
print("pyscard ok", bytes(key).hex())
"#;

#[test]
fn pyscard_drives_the_card() {
    let _lock = lock_vpcd();
    let dir = tempfile::tempdir().expect("tempdir");
    let card = VirtualCard::start(1, &dir.path().join("card.state"), false);
    // Debian's python3-pyscard lives with the system interpreter.
    let out = Command::new("/usr/bin/python3")
        .args([
            "-c",
            PYSCARD_SCRIPT,
            &card.reader,
            &hex::encode(apdu_spec::AID),
        ])
        .output()
        .expect("/usr/bin/python3 is installed");
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert!(
        out.status.success(),
        "{stdout}\n{}",
        String::from_utf8_lossy(&out.stderr)
    );
    assert!(stdout.starts_with("pyscard ok "), "{stdout}");
}

#[test]
fn cli_life_cycle_survives_a_card_restart() {
    let _lock = lock_vpcd();
    let dir = tempfile::tempdir().expect("tempdir");
    let state = dir.path().join("card.state");
    // The offline steps: the scheme's keys and a maker, which makes the card.
    let scheme =
        launch::Scheme::create(&dir.path().join("scheme")).unwrap_or_else(|e| panic!("{e}"));
    scheme.provision(&state).unwrap_or_else(|e| panic!("{e}"));
    let mut card = VirtualCard::start(0, &state, false);
    let reader = card.reader.clone();

    let (ok, out, err) = valuecard(&["readers"]);
    assert!(
        ok && out.contains(&reader) && out.contains(&hex::encode_upper(apdu_spec::ATR)),
        "{out}\n{err}"
    );

    let (ok, out, err) = valuecard(&[
        "--reader",
        &reader,
        "card",
        "init",
        "--keys",
        scheme.keys.to_str().expect("path"),
        "--pin",
        "2468",
    ]);
    assert!(ok, "card init failed:\n{out}\n{err}");
    let (ok, out, err) = valuecard(&["--reader", &reader, "pin", "verify", "--pin", "1111"]);
    assert!(
        !ok && format!("{out}{err}").contains("2"),
        "a wrong PIN reports the tries left:\n{out}\n{err}"
    );

    // Pull the card out and put it back: the state file carries everything.
    card.kill();
    let _card = VirtualCard::start(0, &state, false);
    let (ok, out, err) = valuecard(&["--reader", &reader, "info", "--json"]);
    assert!(ok, "{err}");
    assert!(out.contains("active"), "{out}");
    let (ok, _, err) = valuecard(&["--reader", &reader, "pin", "status"]);
    assert!(ok, "{err}");
    let (ok, out, err) = valuecard(&[
        "--reader", &reader, "pin", "change", "--old", "2468", "--new", "97531",
    ]);
    assert!(ok, "pin change failed:\n{out}\n{err}");
    let (ok, out, err) = valuecard(&["--reader", &reader, "pin", "verify", "--pin", "97531"]);
    assert!(ok, "the new PIN verifies:\n{out}\n{err}");
}
