//! Power cut at every file-system operation of every command that writes: afterwards the
//! state file holds exactly the state before the command or the state after it.
//!
//! One deliberate exception, named where it applies: VERIFY and CHANGE REFERENCE DATA with
//! the right PIN commit twice (the try is spent and committed before the comparison, then
//! given back), so a cut between the two leaves the "try spent" state. That state is the
//! safe side of a PIN check: it can only cost the holder a try, never give a free guess.

use std::collections::BTreeSet;
use std::fs;
use std::path::Path;

use apdu_spec::commands::{COMMANDS, LifeCycle};
use apdu_spec::vectors::{self, Vars};
use valuecard_card::applet::decode;
use valuecard_card::state::Persistent;
use valuecard_card::storage::{FileStorage, PowerCutFs, SharedFs, Storage};
use valuecard_card::{Card, Options};

const SEED: u64 = 7;

fn options() -> Options {
    Options {
        test_mode: true,
        rng_seed: Some(SEED),
    }
}

fn send(card: &mut Card, hex_apdu: &str, vars: &Vars) -> Vec<u8> {
    let apdu = vectors::expand(hex_apdu, vars).expect("template");
    card.transmit(&apdu)
}

fn ok(card: &mut Card, hex_apdu: &str, vars: &Vars) -> Vec<u8> {
    let r = send(card, hex_apdu, vars);
    assert_eq!(&r[r.len() - 2..], &[0x90, 0x00], "{hex_apdu}");
    r[..r.len() - 2].to_vec()
}

/// Brings a card to `life` (and a PIN with one try spent, when asked), binding the
/// variables the command under test needs.
fn prepare(card: &mut Card, life: LifeCycle, spend_a_try: bool) -> Vars {
    let mut vars = vectors::initial_vars();
    ok(card, "00 A4 04 0C ${lc:AID} ${AID}", &vars);
    if life == LifeCycle::Blank {
        return vars;
    }
    let key = ok(card, "80 47 00 00 00", &vars);
    vars.insert("PUBLIC_KEY".into(), key[2..].to_vec());
    if life == LifeCycle::Active {
        ok(
            card,
            "80 50 00 00 ${lc:PERSONALIZATION} ${PERSONALIZATION}",
            &vars,
        );
        if spend_a_try {
            assert_eq!(
                send(card, "00 20 00 81 04 39393939", &vars),
                vec![0x63, 0xC2]
            );
        }
    }
    vars
}

struct Scenario {
    command: &'static str,
    path: &'static str,
    given: LifeCycle,
    spend_a_try: bool,
    apdu: &'static str,
    /// The state a cut between the two commits of a PIN check leaves.
    try_spent_is_allowed: bool,
}

const SCENARIOS: &[Scenario] = &[
    Scenario {
        command: "GENERATE KEY",
        path: "new key",
        given: LifeCycle::Blank,
        spend_a_try: false,
        apdu: "80 47 00 00 00",
        try_spent_is_allowed: false,
    },
    Scenario {
        command: "PERSONALIZE",
        path: "install",
        given: LifeCycle::Keyed,
        spend_a_try: false,
        apdu: "80 50 00 00 ${lc:PERSONALIZATION} ${PERSONALIZATION}",
        try_spent_is_allowed: false,
    },
    Scenario {
        command: "VERIFY",
        path: "right PIN",
        given: LifeCycle::Active,
        spend_a_try: true,
        apdu: "00 20 00 81 ${lc:PIN} ${PIN}",
        try_spent_is_allowed: true,
    },
    Scenario {
        command: "VERIFY",
        path: "wrong PIN",
        given: LifeCycle::Active,
        spend_a_try: true,
        apdu: "00 20 00 81 04 39393939",
        try_spent_is_allowed: false,
    },
    Scenario {
        command: "CHANGE REFERENCE DATA",
        path: "right PIN",
        given: LifeCycle::Active,
        spend_a_try: true,
        apdu: "00 24 00 81 10 81 06 ${PIN} 82 06 363534333231",
        try_spent_is_allowed: true,
    },
    Scenario {
        command: "CHANGE REFERENCE DATA",
        path: "wrong PIN",
        given: LifeCycle::Active,
        spend_a_try: true,
        apdu: "00 24 00 81 10 81 06 393939393939 82 06 363534333231",
        try_spent_is_allowed: false,
    },
    Scenario {
        command: "TEST RESET",
        path: "erase",
        given: LifeCycle::Active,
        spend_a_try: false,
        apdu: "80 7E 00 00",
        try_spent_is_allowed: false,
    },
];

fn load(path: &Path) -> Persistent {
    let mut storage = FileStorage::open(path).expect("storage");
    decode(&storage.load().expect("load").expect("a state file")).expect("state decodes")
}

fn fresh_copy(before: &[u8], dir: &Path) -> std::path::PathBuf {
    let path = dir.join("card.state");
    fs::write(&path, before).expect("write before-state");
    path
}

#[test]
fn power_cut_at_every_write_of_every_command() {
    let mut covered = BTreeSet::new();
    let mut cuts = 0;
    for s in SCENARIOS {
        // The before-state, made through the card's own commands.
        let setup_dir = tempfile::tempdir().expect("tempdir");
        let setup_path = setup_dir.path().join("card.state");
        let mut card = Card::new(
            Box::new(FileStorage::open(&setup_path).expect("storage")),
            options(),
        )
        .expect("card");
        let vars = prepare(&mut card, s.given, s.spend_a_try);
        drop(card);
        let before_bytes = fs::read(&setup_path).expect("before-state");
        let before = decode(&before_bytes).expect("before decodes");

        // A clean run: the after-state, and how many file-system operations it takes.
        let dir = tempfile::tempdir().expect("tempdir");
        let path = fresh_copy(&before_bytes, dir.path());
        let counter = SharedFs::default();
        let mut card = Card::new(
            Box::new(FileStorage::with_fs(&path, counter.clone()).expect("storage")),
            options(),
        )
        .expect("card");
        ok(&mut card, "00 A4 04 0C ${lc:AID} ${AID}", &vars);
        let clean = send(&mut card, s.apdu, &vars);
        assert_ne!(
            &clean[clean.len() - 2..],
            &[0x65, 0x81],
            "{} ({}) clean run",
            s.command,
            s.path
        );
        let ops = counter.ops();
        drop(card);
        let after = load(&path);
        assert_ne!(
            before, after,
            "{} ({}) must change the state",
            s.command, s.path
        );
        assert!(
            ops >= 4,
            "{} ({}) made {ops} file operations",
            s.command,
            s.path
        );
        let mut try_spent = before.clone();
        if let Some(p) = try_spent.personalization.as_mut() {
            p.pin.tries_left -= 1;
        }

        for cut in 0..ops {
            let dir = tempfile::tempdir().expect("tempdir");
            let path = fresh_copy(&before_bytes, dir.path());
            let fs = SharedFs(std::sync::Arc::new(std::sync::Mutex::new(
                PowerCutFs::cut_at(cut),
            )));
            let mut card = Card::new(
                Box::new(FileStorage::with_fs(&path, fs).expect("storage")),
                options(),
            )
            .expect("card");
            ok(&mut card, "00 A4 04 0C ${lc:AID} ${AID}", &vars);
            let response = send(&mut card, s.apdu, &vars);
            drop(card);

            let found = load(&path);
            let label = format!(
                "{} ({}), power cut at operation {cut} of {ops}",
                s.command, s.path
            );
            let is_before = found == before;
            let is_after = found == after;
            let is_try_spent = s.try_spent_is_allowed && found == try_spent;
            assert!(
                is_before || is_after || is_try_spent,
                "{label}: torn state {found:?}"
            );
            // The card answers only after its commit, and this commit never completed.
            assert_ne!(
                &response[response.len() - 2..],
                &[0x90, 0x00],
                "{label}: a cut write cannot answer 9000"
            );
            // And the card comes back up from what is on disk.
            let path_again = path.clone();
            Card::new(
                Box::new(FileStorage::open(&path_again).expect("storage")),
                options(),
            )
            .expect("card restarts");
            cuts += 1;
        }
        covered.insert(s.command);
    }
    let writers: BTreeSet<&str> = COMMANDS
        .iter()
        .filter(|c| c.writes)
        .map(|c| c.name)
        .collect();
    assert_eq!(
        covered, writers,
        "every command that writes is cut at every write"
    );
    println!("power cuts tested: {cuts}");
}
