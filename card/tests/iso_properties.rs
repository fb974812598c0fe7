//! Property test: 100,000 random and mutated APDU sequences through the card core. After
//! every command the shared checker (`valuecard_card::fuzz::Checker`) verifies: no panic,
//! a valid status word, no data with an error, the pending response present exactly after
//! 61xx, the chain cleared by errors and SELECT and left open only by a bare 9000.

use apdu_spec::vectors::{self, Vars};
use proptest::prelude::*;
use proptest::test_runner::{Config, FileFailurePersistence};
use valuecard_card::fuzz::Checker;
use valuecard_card::{Card, Options};

/// Well-formed commands that reach every command family and state.
const TEMPLATES: &[&str] = &[
    "00 A4 04 00 ${lc:AID} ${AID} 00",
    "00 A4 04 0C ${lc:AID} ${AID}",
    "00 A4 04 00 ${lc:AID} ${AID}",
    "00 CA 00 C4",
    "00 CA 00 6E",
    "00 CA 00 6E 00",
    "00 CA 00 6E 00 00 00",
    "00 CA 00 C1 00",
    "00 CA 00 C3 10",
    "00 CA 00 E5 00",
    "00 C0 00 00 00",
    "00 C0 00 00 05",
    "00 C0 00 00",
    "80 47 00 00 00",
    "80 47 00 00",
    "00 20 00 81 ${lc:PIN} ${PIN}",
    "00 20 00 81 04 39393939",
    "00 20 00 81",
    "00 24 00 81 10 81 06 ${PIN} 82 06 363534333231",
    "00 24 00 81 10 81 06 363534333231 82 06 ${PIN}",
    "80 7E 00 00",
    "80 7E 00 00 ${lc:MANUFACTURE} ${MANUFACTURE}",
    "80 7E 00 00 ${lc:MAKER_CERT} ${MAKER_CERT}",
    "90 50 00 00 04 C7 21 02 00",
    "90 50 00 00 ${lc:ISSUER_ANCHOR} ${ISSUER_ANCHOR}",
    "80 50 00 00 ${lc:ARBITER_ANCHOR} ${ARBITER_ANCHOR}",
    "80 4A 00 00 10 ${fill:16:A5} 00",
    "80 4A 00 00 ${lc3:fill:64:5A} ${fill:64:5A} 00 00",
    "80 4A 00 00 0F ${fill:15:A5}",
    "00 CA 00 C5 00",
    "00 CA 00 C6 00",
    "10 A4 04 00 03 ${AID[0..3]}",
    "00 A4 04 00 ${lc:AID[3..]} ${AID[3..]} 00",
    "90 50 00 00 ${lc3:fill:1500:00} ${fill:1500:00}",
    "00 88 00 00 10 ${fill:16:A5} 00",
    "00 88 00 00 ${lc3:fill:64:5A} ${fill:64:5A} 00 00",
    "00 88 00 00 10 ${fill:16:A5}",
    "10 88 00 00 08 ${fill:8:A5}",
    "80 52 00 00 11 E1 0F 81 03 4A5059 82 08 0000000000000064 00",
    "80 52 00 00 10 E2 0E 81 07 434F4E43455254 84 03 010203",
    "80 54 00 00 42 9E 40 ${fill:64:11}",
    "80 54 00 00 8C 9E 40 ${fill:64:11} ${BLOCK_LIST}",
    "80 54 00 00 ${lc3:BLOCK_LIST_PEER} ${BLOCK_LIST_PEER}",
    "80 56 00 00 00",
    "80 58 00 00 11 E1 0F 81 03 4A5059 82 08 0000000000000001 00",
    "80 5A 01 00 48 86 04 00000000 9E 40 ${fill:64:11}",
    "80 5A 02 00 48 86 04 00000001 9E 40 ${fill:64:11}",
    "00 CA 00 EB 00",
    "80 70 00 00 08 A1 02 E0 00 A2 02 E0 00 00",
    "80 70 00 00 17 A1 11 E1 0F 81 03 4A5059 82 08 0000000000000001 A2 02 E0 00 00",
    "80 72 00 00 F3 80 20 ${fill:32:11} A1 02 E0 00 A2 02 E0 00 A3 02 E0 00 A6 81 C2 ${PEER_CERT} 00",
    "90 72 00 00 2E 80 20 ${fill:32:11} A1 02 E0 00 A2 02 E0 00 A3 02 E0 00",
    "80 72 00 00 C5 A6 81 C2 ${PEER_CERT} 00",
    "80 74 00 00 00 01 71 80 20 ${fill:32:00} 82 20 ${fill:32:00} 81 20 ${fill:32:00} 8A 40 ${fill:64:00} A2 02 E0 00 A7 81 C2 ${PEER_CERT} 00 00",
    "80 76 00 00 64 81 20 ${fill:32:00} 8B 40 ${fill:64:00} 00",
    "80 78 00 00 44 81 20 ${fill:32:00} 83 20 ${fill:32:5A}",
    "80 7A 00 00 22 80 20 ${fill:32:00}",
    "80 7C 00 00 22 81 20 ${fill:32:00} 00",
    "80 30 00 00 22 81 20 ${fill:32:00} 00",
    "80 32 00 00 89 81 20 ${fill:32:00} 82 20 ${fill:32:00} 84 01 02 8E 40 ${fill:64:00}",
    "80 34 00 00 00",
    "80 34 00 00 00 00 00",
];

#[derive(Clone, Debug)]
enum Mutation {
    None,
    Flip { at: usize, xor: u8 },
    Truncate(usize),
    ToggleChain,
    Append(Vec<u8>),
    SetByte { at: usize, value: u8 },
}

#[derive(Clone, Debug)]
enum Op {
    Template(usize, Mutation),
    Random(Vec<u8>),
    Reset,
    /// PERSONALIZE with a valid body for the card's own key (its anchors by the root of
    /// the vectors' manufacture record), in one APDU or two links.
    Personalize {
        chained: bool,
    },
}

fn mutation() -> impl Strategy<Value = Mutation> {
    prop_oneof![
        4 => Just(Mutation::None),
        2 => (any::<usize>(), 1u8..=255).prop_map(|(at, xor)| Mutation::Flip { at, xor }),
        1 => any::<usize>().prop_map(Mutation::Truncate),
        1 => Just(Mutation::ToggleChain),
        1 => prop::collection::vec(any::<u8>(), 1..4).prop_map(Mutation::Append),
        1 => (0usize..8, prop_oneof![Just(0u8), Just(0xFF), any::<u8>()]).prop_map(|(at, value)| Mutation::SetByte { at, value }),
    ]
}

fn op() -> impl Strategy<Value = Op> {
    prop_oneof![
        12 => ((0..TEMPLATES.len()), mutation()).prop_map(|(i, m)| Op::Template(i, m)),
        3 => prop::collection::vec(any::<u8>(), 0..64).prop_map(Op::Random),
        1 => Just(Op::Reset),
        2 => any::<bool>().prop_map(|chained| Op::Personalize { chained }),
    ]
}

fn apply(mut bytes: Vec<u8>, m: &Mutation) -> Vec<u8> {
    match m {
        Mutation::None => {}
        Mutation::Flip { at, xor } if !bytes.is_empty() => {
            let i = at % bytes.len();
            bytes[i] ^= xor;
        }
        Mutation::Truncate(len) => bytes.truncate(len % (bytes.len() + 1)),
        Mutation::ToggleChain if !bytes.is_empty() => bytes[0] ^= 0x10,
        Mutation::Append(extra) => bytes.extend_from_slice(extra),
        Mutation::SetByte { at, value } if *at < bytes.len() => bytes[*at] = *value,
        _ => {}
    }
    bytes
}

fn run(ops: &[Op]) -> Result<(), TestCaseError> {
    let mut vars: Vars = vectors::initial_vars();
    // A card made by the vectors' test maker for the vectors' root: PERSONALIZATION's
    // anchors verify on it, and ATTEST answers.
    let made = vectors::lookup("MANUFACTURE", &vars)
        .and_then(|bytes| apdu_spec::maker::Manufacture::decode(&bytes).ok())
        .ok_or_else(|| TestCaseError::fail("no manufacture record"))?;
    let card = Card::provisioned(
        &made,
        Options {
            test_mode: true,
            rng_seed: Some(3),
        },
    )
    .map_err(|e| TestCaseError::fail(e.to_string()))?;
    let mut checker = Checker::new(card);
    for op in ops {
        match op {
            Op::Template(i, m) => {
                let bytes = vectors::expand(TEMPLATES[*i], &vars).map_err(TestCaseError::fail)?;
                checker
                    .step(&apply(bytes, m))
                    .map_err(TestCaseError::fail)?;
            }
            Op::Random(bytes) => {
                checker.step(bytes).map_err(TestCaseError::fail)?;
            }
            Op::Reset => checker.reset(),
            Op::Personalize { chained } => {
                let key = checker
                    .step(&[0x00, 0xCA, 0x00, 0xC1, 0x00])
                    .map_err(TestCaseError::fail)?;
                if key.len() != 37 {
                    continue;
                }
                vars.insert("PUBLIC_KEY".into(), key[2..35].to_vec());
                let body = vectors::lookup("PERSONALIZATION", &vars)
                    .ok_or_else(|| TestCaseError::fail("no body"))?;
                let links: Vec<(u8, &[u8])> = if *chained {
                    vec![(0x90, &body[..50]), (0x80, &body[50..])]
                } else {
                    vec![(0x80, &body[..])]
                };
                for (cla, part) in links {
                    checker
                        .step(&apdu_spec::apdu::encode(cla, 0x50, 0, 0, part, 0, false))
                        .map_err(TestCaseError::fail)?;
                }
            }
        }
    }
    Ok(())
}

proptest! {
    #![proptest_config(Config {
        cases: 100_000,
        failure_persistence: Some(Box::new(FileFailurePersistence::Off)),
        ..Config::default()
    })]

    #[test]
    fn random_and_mutated_apdu_sequences(ops in prop::collection::vec(op(), 1..16)) {
        run(&ops)?;
    }
}
