//! Power cut at every file-system operation of every command that writes: afterwards the
//! state file holds exactly the state before the command or the state after it, and the
//! card's answer says which: the command's own answer with the state after it (a cut after
//! the rename, at the directory's flush, leaves the new state in place, and the card that
//! reads it back succeeds), 6581 with the state before it. The card's memory is what the
//! file holds.
//!
//! One deliberate exception, named where it applies: VERIFY and CHANGE REFERENCE DATA with
//! the right PIN commit twice (the try is spent and committed before the comparison, then
//! given back), so a cut between the two leaves the "try spent" state. That state is the
//! safe side of a PIN check: it can only cost the holder a try, never give a free guess.

use std::collections::BTreeSet;
use std::fs;
use std::path::Path;

use apdu_spec::apdu::Response;
use apdu_spec::commands::{COMMANDS, LifeCycle};
use apdu_spec::vectors::{self, Step, Vars};
use valuecard_card::applet::decode;
use valuecard_card::provision::provision;
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

/// The conformance vectors' manufacture record: its root anchors the test issuer and
/// arbiter of `PERSONALIZATION`.
fn manufacture() -> apdu_spec::maker::Manufacture {
    let bytes = vectors::lookup("MANUFACTURE", &vectors::initial_vars()).expect("derived");
    apdu_spec::maker::Manufacture::decode(&bytes).expect("a record")
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
    vars.insert("CARD_ID".into(), apdu_spec::card_id(&key[2..]).to_vec());
    if life == LifeCycle::Active {
        ok(
            card,
            "80 50 00 00 ${lc3:PERSONALIZATION} ${PERSONALIZATION}",
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

/// Brings the card further once it is in its life-cycle state: commands that must answer
/// 9000, each with the variables it binds from its answer (a `capture` source of
/// `apdu_spec::vectors`).
fn run_setup(card: &mut Card, setup: &[(&str, &[(&str, &str)])], vars: &mut Vars) {
    for (template, captures) in setup {
        let step = Step {
            send: Some(template.to_string()),
            sw: Some("9000".into()),
            capture: captures
                .iter()
                .map(|(name, source)| (name.to_string(), source.to_string()))
                .collect(),
            ..Step::default()
        };
        let answer = send(card, template, vars);
        let response = Response::from_bytes(&answer).expect("a response APDU");
        step.check(&response, vars)
            .unwrap_or_else(|e| panic!("setup {template}: {e}"));
    }
}

struct Scenario {
    command: &'static str,
    path: &'static str,
    given: LifeCycle,
    spend_a_try: bool,
    /// Commands that bring the card further before the power session of the command.
    setup: &'static [(&'static str, &'static [(&'static str, &'static str)])],
    /// Commands sent in the command's own power session, before it (VERIFY, for a command
    /// that needs the PIN). They must leave the persistent state as it was; the power is
    /// never cut during them.
    session: &'static [&'static str],
    apdu: &'static str,
    /// The state a cut between the two commits of a PIN check leaves.
    try_spent_is_allowed: bool,
    /// The status word of the clean run, a pattern.
    sw: &'static str,
}

/// LOAD REQUEST for 100 JPY, binding the request (`REQ`) for the issuer's signatures.
const REQUEST_100_JPY: (&str, &[(&str, &str)]) = (
    "80 52 00 00 11 E1 0F 81 03 4A5059 82 08 0000000000000064 00",
    &[("REQ", "tlv_object:EC/E7")],
);
const REQUEST_TICKET: (&str, &[(&str, &str)]) = (
    "80 52 00 00 10 E2 0E 81 07 434F4E43455254 84 03 010203 00",
    &[("REQ", "tlv_object:EC/E7")],
);
/// LOAD APPLY of `REQ` with the test issuer's empty block list, version 1 (140 bytes).
const APPLY_UNITS: &str = "80 54 00 00 8C 9E 40 ${load_auth:REQ:BLOCK_LIST} ${BLOCK_LIST}";
const APPLY: (&str, &[(&str, &str)]) = (APPLY_UNITS, &[]);
const VERIFY_PIN: &str = "00 20 00 81 ${lc:PIN} ${PIN}";
const VERIFY: (&str, &[(&str, &str)]) = (VERIFY_PIN, &[]);

// The exchange, with the card under test on one side and the peer that the vectors simulate
// with the published test keys (`PEER_ID`, `PEER_CERT`, `${peer_sign:...}`) on the other.

/// START as initiator: gives 50 JPY, wants nothing. Binds s1 and V1.
const START_50_JPY: &str =
    "80 70 00 00 17 A1 11 E1 0F 81 03 4A5059 82 08 0000000000000032 A2 02 E0 00 00";
const START: (&str, &[(&str, &str)]) = (START_50_JPY, &[("S1", "tlv:80"), ("V1", "tlv:A1")]);
/// LIST SESSIONS after START: binds V2 (the one wanted), and the peer's s2 (r2 = 32 bytes of
/// 5A) and the agreement it would answer.
const AGREED_BY_PEER: (&str, &[(&str, &str)]) = (
    "80 34 00 00 00",
    &[
        ("V2", "tlv:EF/E3/A2"),
        ("S2", "expr:${sha256:fill:32:5A}"),
        ("A", "expr:${agreement:S1:V1:V2:CARD_ID:PEER_ID}"),
    ],
);
/// CONFIRM with the peer's agreement: Sa by the peer over a || s2, cert_B the peer's.
const CONFIRM_PEER: &str = "80 74 00 00 00 01 71 80 20 ${S1} 82 20 ${A} 81 20 ${S2} \
     8A 40 ${peer_sign:agree:A:S2} A2 02 E0 00 A7 81 C2 ${PEER_CERT} 00 00";
const CONFIRM: (&str, &[(&str, &str)]) = (CONFIRM_PEER, &[]);
/// AGREE as responder: the peer gives the ticket CONCERT #010203 (with its proof), the card
/// gives 50 JPY. Binds a and s2.
const AGREE_TICKET_FOR_50_JPY: &str = "80 72 00 00 00 01 84 80 20 ${fill:32:11} \
     A1 10 E2 0E 81 07 434F4E43455254 84 03 010203 \
     A4 64 C2 20 ${PEER_ID} 85 40 ${peer_ticket_sign:CONCERT:010203} \
     A2 11 E1 0F 81 03 4A5059 82 08 0000000000000032 \
     A3 10 E2 0E 81 07 434F4E43455254 84 03 010203 A6 81 C2 ${PEER_CERT} 00 00";
const AGREE: (&str, &[(&str, &str)]) = (
    AGREE_TICKET_FOR_50_JPY,
    &[("A", "tlv:82"), ("S2", "tlv:81")],
);
const INITIATOR_VALID: &[(&str, &[(&str, &str)])] = &[
    REQUEST_100_JPY,
    APPLY,
    VERIFY,
    START,
    AGREED_BY_PEER,
    CONFIRM,
];
const RESPONDER_VALID: &[(&str, &[(&str, &str)])] = &[REQUEST_100_JPY, APPLY, VERIFY, AGREE];

const SCENARIOS: &[Scenario] = &[
    Scenario {
        command: "GENERATE KEY",
        path: "new key",
        given: LifeCycle::Blank,
        spend_a_try: false,
        setup: &[],
        session: &[],
        apdu: "80 47 00 00 00",
        try_spent_is_allowed: false,
        sw: "9000",
    },
    Scenario {
        command: "PERSONALIZE",
        path: "install",
        given: LifeCycle::Keyed,
        spend_a_try: false,
        setup: &[],
        session: &[],
        apdu: "80 50 00 00 ${lc3:PERSONALIZATION} ${PERSONALIZATION}",
        try_spent_is_allowed: false,
        sw: "9000",
    },
    Scenario {
        command: "VERIFY",
        path: "right PIN",
        given: LifeCycle::Active,
        spend_a_try: true,
        setup: &[],
        session: &[],
        apdu: "00 20 00 81 ${lc:PIN} ${PIN}",
        try_spent_is_allowed: true,
        sw: "9000",
    },
    Scenario {
        command: "VERIFY",
        path: "wrong PIN",
        given: LifeCycle::Active,
        spend_a_try: true,
        setup: &[],
        session: &[],
        apdu: "00 20 00 81 04 39393939",
        try_spent_is_allowed: false,
        sw: "63C1",
    },
    Scenario {
        command: "CHANGE REFERENCE DATA",
        path: "right PIN",
        given: LifeCycle::Active,
        spend_a_try: true,
        setup: &[],
        session: &[],
        apdu: "00 24 00 81 10 81 06 ${PIN} 82 06 363534333231",
        try_spent_is_allowed: true,
        sw: "9000",
    },
    Scenario {
        command: "CHANGE REFERENCE DATA",
        path: "wrong PIN",
        given: LifeCycle::Active,
        spend_a_try: true,
        setup: &[],
        session: &[],
        apdu: "00 24 00 81 10 81 06 393939393939 82 06 363534333231",
        try_spent_is_allowed: false,
        sw: "63C1",
    },
    Scenario {
        command: "LOAD REQUEST",
        path: "units",
        given: LifeCycle::Active,
        spend_a_try: false,
        setup: &[],
        session: &[],
        apdu: "80 52 00 00 11 E1 0F 81 03 4A5059 82 08 0000000000000064 00",
        try_spent_is_allowed: false,
        sw: "9000",
    },
    Scenario {
        command: "LOAD REQUEST",
        path: "ticket, after a load",
        given: LifeCycle::Active,
        spend_a_try: false,
        setup: &[REQUEST_100_JPY, APPLY],
        session: &[],
        apdu: "80 52 00 00 10 E2 0E 81 07 434F4E43455254 84 03 010203 00",
        try_spent_is_allowed: false,
        sw: "9000",
    },
    Scenario {
        command: "LOAD APPLY",
        path: "units",
        given: LifeCycle::Active,
        spend_a_try: false,
        setup: &[REQUEST_100_JPY],
        session: &[],
        apdu: APPLY_UNITS,
        try_spent_is_allowed: false,
        sw: "9000",
    },
    Scenario {
        command: "LOAD APPLY",
        path: "units and a newer block list",
        given: LifeCycle::Active,
        spend_a_try: false,
        setup: &[REQUEST_100_JPY, APPLY, REQUEST_100_JPY],
        session: &[],
        apdu: "80 54 00 00 AE 9E 40 ${load_auth:REQ:BLOCK_LIST_PEER} ${BLOCK_LIST_PEER}",
        try_spent_is_allowed: false,
        sw: "9000",
    },
    Scenario {
        command: "LOAD APPLY",
        path: "ticket",
        given: LifeCycle::Active,
        spend_a_try: false,
        setup: &[REQUEST_TICKET],
        session: &[],
        apdu: "80 54 00 00 CE 9E 40 ${load_auth:REQ:BLOCK_LIST} 85 40 ${ticket_sign:CONCERT:010203} ${BLOCK_LIST}",
        try_spent_is_allowed: false,
        sw: "9000",
    },
    Scenario {
        command: "LOAD CANCEL",
        path: "pending load",
        given: LifeCycle::Active,
        spend_a_try: false,
        setup: &[REQUEST_100_JPY],
        session: &[],
        apdu: "80 56 00 00 00",
        try_spent_is_allowed: false,
        sw: "9000",
    },
    Scenario {
        command: "UNLOAD",
        path: "part",
        given: LifeCycle::Active,
        spend_a_try: false,
        setup: &[REQUEST_100_JPY, APPLY],
        session: &[VERIFY_PIN],
        apdu: "80 58 00 00 11 E1 0F 81 03 4A5059 82 08 0000000000000032 00",
        try_spent_is_allowed: false,
        sw: "9000",
    },
    Scenario {
        command: "UNLOAD",
        path: "all of it",
        given: LifeCycle::Active,
        spend_a_try: false,
        setup: &[REQUEST_100_JPY, APPLY],
        session: &[VERIFY_PIN],
        apdu: "80 58 00 00 11 E1 0F 81 03 4A5059 82 08 0000000000000064 00",
        try_spent_is_allowed: false,
        sw: "9000",
    },
    Scenario {
        command: "UNLOAD ACK",
        path: "unload receipt",
        given: LifeCycle::Active,
        spend_a_try: false,
        setup: &[
            REQUEST_100_JPY,
            APPLY,
            (VERIFY_PIN, &[]),
            (
                "80 58 00 00 11 E1 0F 81 03 4A5059 82 08 0000000000000032 00",
                &[("RCPT", "tlv_object:EE/E8")],
            ),
        ],
        session: &[],
        apdu: "80 5A 01 00 48 86 04 00000000 9E 40 ${issuer_sign:unload-ack:RCPT}",
        try_spent_is_allowed: false,
        sw: "9000",
    },
    Scenario {
        command: "UNLOAD ACK",
        path: "load cancellation",
        given: LifeCycle::Active,
        spend_a_try: false,
        setup: &[REQUEST_100_JPY, ("80 56 00 00 00", &[])],
        session: &[],
        apdu: "80 5A 02 00 48 86 04 00000000 9E 40 ${issuer_sign:load-cancel-ack:REQ}",
        try_spent_is_allowed: false,
        sw: "9000",
    },
    Scenario {
        command: "START",
        path: "reserve 50 JPY",
        given: LifeCycle::Active,
        spend_a_try: false,
        setup: &[REQUEST_100_JPY, APPLY],
        session: &[VERIFY_PIN],
        apdu: START_50_JPY,
        try_spent_is_allowed: false,
        sw: "9000",
    },
    Scenario {
        command: "AGREE",
        path: "escrow 50 JPY for a ticket",
        given: LifeCycle::Active,
        spend_a_try: false,
        setup: &[REQUEST_100_JPY, APPLY],
        session: &[VERIFY_PIN],
        apdu: AGREE_TICKET_FOR_50_JPY,
        try_spent_is_allowed: false,
        sw: "9000",
    },
    Scenario {
        command: "CONFIRM",
        path: "the peer's agreement",
        given: LifeCycle::Active,
        spend_a_try: false,
        setup: &[REQUEST_100_JPY, APPLY, VERIFY, START, AGREED_BY_PEER],
        session: &[],
        apdu: CONFIRM_PEER,
        try_spent_is_allowed: false,
        sw: "9000",
    },
    Scenario {
        command: "COMMIT",
        path: "store the ticket",
        given: LifeCycle::Active,
        spend_a_try: false,
        setup: RESPONDER_VALID,
        session: &[],
        apdu: "80 76 00 00 64 81 20 ${S2} 8B 40 ${peer_sign:confirm:A:S2} 00",
        try_spent_is_allowed: false,
        sw: "9000",
    },
    Scenario {
        command: "COMMIT",
        path: "a bad confirmation: PENDING",
        given: LifeCycle::Active,
        spend_a_try: false,
        setup: RESPONDER_VALID,
        session: &[],
        apdu: "80 76 00 00 64 81 20 ${S2} 8B 40 ${peer_sign:agree:A:S2} 00",
        try_spent_is_allowed: false,
        sw: "6300",
    },
    Scenario {
        command: "FINISH",
        path: "r2",
        given: LifeCycle::Active,
        spend_a_try: false,
        setup: INITIATOR_VALID,
        session: &[],
        apdu: "80 78 00 00 44 81 20 ${S2} 83 20 ${fill:32:5A}",
        try_spent_is_allowed: false,
        sw: "9000",
    },
    Scenario {
        command: "ABORT",
        path: "in START",
        given: LifeCycle::Active,
        spend_a_try: false,
        setup: &[REQUEST_100_JPY, APPLY, VERIFY, START],
        session: &[],
        apdu: "80 7A 00 00 22 80 20 ${S1}",
        try_spent_is_allowed: false,
        sw: "9000",
    },
    Scenario {
        command: "CANCEL",
        path: "VALID to PENDING",
        given: LifeCycle::Active,
        spend_a_try: false,
        setup: RESPONDER_VALID,
        session: &[],
        apdu: "80 7C 00 00 22 81 20 ${S2} 00",
        try_spent_is_allowed: false,
        sw: "61xx",
    },
    Scenario {
        command: "APPLY VERDICT",
        path: "initiator, complete",
        given: LifeCycle::Active,
        spend_a_try: false,
        setup: INITIATOR_VALID,
        session: &[],
        apdu: "80 32 00 00 89 81 20 ${S2} 82 20 ${A} 84 01 01 8E 40 ${verdict:complete:S2:A}",
        try_spent_is_allowed: false,
        sw: "9000",
    },
    Scenario {
        command: "APPLY VERDICT",
        path: "initiator, cancel",
        given: LifeCycle::Active,
        spend_a_try: false,
        setup: INITIATOR_VALID,
        session: &[],
        apdu: "80 32 00 00 89 81 20 ${S2} 82 20 ${A} 84 01 02 8E 40 ${verdict:cancel:S2:A}",
        try_spent_is_allowed: false,
        sw: "9000",
    },
    Scenario {
        command: "APPLY VERDICT",
        path: "responder, complete",
        given: LifeCycle::Active,
        spend_a_try: false,
        setup: RESPONDER_VALID,
        session: &[],
        apdu: "80 32 00 00 89 81 20 ${S2} 82 20 ${A} 84 01 01 8E 40 ${verdict:complete:S2:A}",
        try_spent_is_allowed: false,
        sw: "9000",
    },
    Scenario {
        command: "APPLY VERDICT",
        path: "responder, cancel",
        given: LifeCycle::Active,
        spend_a_try: false,
        setup: RESPONDER_VALID,
        session: &[],
        apdu: "80 32 00 00 89 81 20 ${S2} 82 20 ${A} 84 01 02 8E 40 ${verdict:cancel:S2:A}",
        try_spent_is_allowed: false,
        sw: "9000",
    },
    Scenario {
        command: "TEST RESET",
        path: "erase",
        given: LifeCycle::Active,
        spend_a_try: false,
        setup: &[],
        session: &[],
        apdu: "80 7E 00 00",
        try_spent_is_allowed: false,
        sw: "9000",
    },
    Scenario {
        command: "TEST RESET",
        path: "erase, another manufacture record",
        given: LifeCycle::Keyed,
        spend_a_try: false,
        setup: &[],
        session: &[],
        apdu: "80 7E 00 00 ${lc:OTHER_MANUFACTURE} ${OTHER_MANUFACTURE}",
        try_spent_is_allowed: false,
        sw: "9000",
    },
];

/// Another manufacture record, for TEST RESET's body.
fn bind_bodies(vars: &mut Vars) {
    let other = apdu_spec::maker::Manufacture::make(
        &p256::ecdsa::SigningKey::from_slice(&[0x59; 32]).expect("a scalar"),
        p256::ecdsa::SigningKey::from_slice(&[0x5B; 32])
            .expect("a scalar")
            .verifying_key(),
        &p256::ecdsa::SigningKey::from_slice(&[0x5C; 32]).expect("a scalar"),
    );
    vars.insert("OTHER_MANUFACTURE".into(), other.encode());
}

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
        let mut storage = FileStorage::open(&setup_path).expect("storage");
        provision(&mut storage, &manufacture()).expect("made");
        let mut card = Card::new(Box::new(storage), options()).expect("card");
        let mut vars = prepare(&mut card, s.given, s.spend_a_try);
        bind_bodies(&mut vars);
        run_setup(&mut card, s.setup, &mut vars);
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
        for command in s.session {
            ok(&mut card, command, &vars);
        }
        assert_eq!(
            card.applet().persistent(),
            &before,
            "{} ({}): the session's commands keep the state",
            s.command,
            s.path
        );
        // The power is cut only during the command: count the operations before it.
        let session_ops = counter.ops();
        let clean = send(&mut card, s.apdu, &vars);
        let clean_sw = u16::from_be_bytes([clean[clean.len() - 2], clean[clean.len() - 1]]);
        assert!(
            apdu_spec::status::sw_matches(s.sw, clean_sw),
            "{} ({}) clean run answered {clean_sw:04X}, not {}",
            s.command,
            s.path,
            s.sw
        );
        let ops = counter.ops() - session_ops;
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

        let mut honest_successes = 0;
        for cut in 0..ops {
            let dir = tempfile::tempdir().expect("tempdir");
            let path = fresh_copy(&before_bytes, dir.path());
            let fs = SharedFs(std::sync::Arc::new(std::sync::Mutex::new(
                PowerCutFs::cut_at(session_ops + cut),
            )));
            let mut card = Card::new(
                Box::new(FileStorage::with_fs(&path, fs).expect("storage")),
                options(),
            )
            .expect("card");
            ok(&mut card, "00 A4 04 0C ${lc:AID} ${AID}", &vars);
            for command in s.session {
                ok(&mut card, command, &vars);
            }
            let response = send(&mut card, s.apdu, &vars);
            let in_memory = card.applet().persistent().clone();
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
            // The card works from what storage holds, never from what it hoped to write.
            assert_eq!(
                in_memory, found,
                "{label}: the card's memory is not the file"
            );
            // The answer tells which: the command's own answer (the rename was done before
            // the cut, and the card read the new state back), or 6581 with the state the
            // command found (or, between VERIFY's two commits, the try spent).
            let sw =
                u16::from_be_bytes([response[response.len() - 2], response[response.len() - 1]]);
            if sw == 0x6581 {
                assert!(
                    response.len() == 2 && (is_before || is_try_spent),
                    "{label}: 6581, but the state moved on"
                );
            } else {
                assert!(
                    apdu_spec::status::sw_matches(s.sw, sw),
                    "{label}: answered {sw:04X}"
                );
                assert!(
                    is_after,
                    "{label}: {sw:04X}, but the state is not the one after"
                );
                honest_successes += 1;
            }
            // And the card comes back up from what is on disk.
            let path_again = path.clone();
            Card::new(
                Box::new(FileStorage::open(&path_again).expect("storage")),
                options(),
            )
            .expect("card restarts");
            cuts += 1;
            if cut == ops - 1 {
                // The last operation is the directory's flush, after the rename.
                assert!(
                    is_after && sw != 0x6581,
                    "{label}: a commit whose rename happened answers as the command does"
                );
            }
        }
        assert!(honest_successes >= 1, "{} ({})", s.command, s.path);
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
