//! The command table. The card dispatches from it, the terminal builds from it, and a test
//! keeps `SPEC.md` in step with it.

use crate::{CLA_ISO, CLA_PROPRIETARY};

/// INS bytes.
pub mod ins {
    pub const SELECT: u8 = 0xA4;
    pub const GET_RESPONSE: u8 = 0xC0;
    pub const GET_DATA: u8 = 0xCA;
    pub const VERIFY: u8 = 0x20;
    pub const CHANGE_REFERENCE_DATA: u8 = 0x24;
    pub const INTERNAL_AUTHENTICATE: u8 = 0x88;
    pub const ATTEST: u8 = 0x4A;
    pub const GENERATE_KEY: u8 = 0x47;
    pub const PERSONALIZE: u8 = 0x50;
    pub const TEST_RESET: u8 = 0x7E;
    pub const LOAD_REQUEST: u8 = 0x52;
    pub const LOAD_APPLY: u8 = 0x54;
    pub const LOAD_CANCEL: u8 = 0x56;
    pub const UNLOAD: u8 = 0x58;
    pub const UNLOAD_ACK: u8 = 0x5A;
    pub const START: u8 = 0x70;
    pub const AGREE: u8 = 0x72;
    pub const CONFIRM: u8 = 0x74;
    pub const COMMIT: u8 = 0x76;
    pub const FINISH: u8 = 0x78;
    pub const ABORT: u8 = 0x7A;
    pub const CANCEL: u8 = 0x7C;
    pub const RESOLVE: u8 = 0x30;
    pub const APPLY_VERDICT: u8 = 0x32;
    pub const LIST_SESSIONS: u8 = 0x34;
}

/// P1 of SELECT: select by DF name (AID).
pub const SELECT_BY_NAME: u8 = 0x04;
/// P2 of SELECT: first occurrence, return the FCI.
pub const SELECT_RETURN_FCI: u8 = 0x00;
/// P2 of SELECT: first occurrence, no response data.
pub const SELECT_NO_RESPONSE: u8 = 0x0C;

/// The card's life-cycle state (PROTOCOLS.md, "Card life cycle").
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum LifeCycle {
    /// No key yet.
    Blank = 1,
    /// Key made on the card, not personalised.
    Keyed = 2,
    /// Personalised: trust anchors, certificate and PIN installed.
    Active = 3,
}

impl LifeCycle {
    pub const ALL: &'static [LifeCycle] = &[LifeCycle::Blank, LifeCycle::Keyed, LifeCycle::Active];

    pub fn from_byte(b: u8) -> Option<Self> {
        Self::ALL.iter().copied().find(|s| *s as u8 == b)
    }

    pub fn name(self) -> &'static str {
        match self {
            LifeCycle::Blank => "blank",
            LifeCycle::Keyed => "keyed",
            LifeCycle::Active => "active",
        }
    }
}

/// Whether a command carries a body.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Body {
    /// Case 1 or 2.
    None,
    /// Case 3 or 4.
    Required,
    /// Any case.
    Optional,
}

impl Body {
    pub fn cases(self) -> &'static str {
        match self {
            Body::None => "1 or 2",
            Body::Required => "3 or 4",
            Body::Optional => "1, 2, 3 or 4",
        }
    }
}

/// One command of the wire format.
#[derive(Clone, Copy, Debug)]
pub struct CommandDef {
    pub name: &'static str,
    pub cla: u8,
    pub ins: u8,
    /// The accepted P1 P2 values, as they appear in `SPEC.md`.
    pub p1p2: &'static str,
    pub body: Body,
    /// The life-cycle states the command is allowed in; elsewhere it answers 6985.
    pub states: &'static [LifeCycle],
    /// Whether the command commits persistent state.
    pub writes: bool,
    /// Every status word the command itself can answer (the ISO layer's words for malformed
    /// APDUs, classes and chains come on top, for every command).
    pub status_words: &'static [&'static str],
    pub summary: &'static str,
}

use LifeCycle::{Active, Blank, Keyed};

const ANY: &[LifeCycle] = LifeCycle::ALL;

/// Status words the ISO layer answers for any command, before the command runs.
pub const ISO_LAYER_STATUS_WORDS: &[&str] = &["6700", "6881", "6882", "6883", "6D00", "6E00"];

pub const SELECT: CommandDef = CommandDef {
    name: "SELECT",
    cla: CLA_ISO,
    ins: ins::SELECT,
    p1p2: "0400, 040C",
    body: Body::Required,
    states: ANY,
    writes: false,
    status_words: &["9000", "61xx", "6A82", "6A86"],
    summary: "select the valuecard application by its exact AID; answers the FCI",
};

pub const GET_RESPONSE: CommandDef = CommandDef {
    name: "GET RESPONSE",
    cla: CLA_ISO,
    ins: ins::GET_RESPONSE,
    p1p2: "0000",
    body: Body::None,
    states: ANY,
    writes: false,
    status_words: &["9000", "61xx", "6985", "6A86"],
    summary: "fetch the rest of a response announced by 61xx",
};

pub const GET_DATA: CommandDef = CommandDef {
    name: "GET DATA",
    cla: CLA_ISO,
    ins: ins::GET_DATA,
    p1p2: "00C1-00C8, 00E5, 00E6, 00EB, 006E",
    body: Body::None,
    states: ANY,
    writes: false,
    status_words: &["9000", "61xx", "6A86", "6A88"],
    summary: "read one data object (P1 P2 = its tag), or all of them (006E)",
};

pub const VERIFY: CommandDef = CommandDef {
    name: "VERIFY",
    cla: CLA_ISO,
    ins: ins::VERIFY,
    p1p2: "0081",
    body: Body::Optional,
    states: &[Active],
    writes: true,
    status_words: &["9000", "63Cx", "6581", "6983", "6985", "6A86"],
    summary: "check the PIN; an empty body asks for the tries left",
};

pub const CHANGE_REFERENCE_DATA: CommandDef = CommandDef {
    name: "CHANGE REFERENCE DATA",
    cla: CLA_ISO,
    ins: ins::CHANGE_REFERENCE_DATA,
    p1p2: "0081",
    body: Body::Required,
    states: &[Active],
    writes: true,
    status_words: &["9000", "63Cx", "6581", "6983", "6985", "6A80", "6A86"],
    summary: "replace the PIN, given the current one",
};

pub const INTERNAL_AUTHENTICATE: CommandDef = CommandDef {
    name: "INTERNAL AUTHENTICATE",
    cla: CLA_ISO,
    ins: ins::INTERNAL_AUTHENTICATE,
    p1p2: "0000",
    body: Body::Required,
    states: &[Keyed, Active],
    writes: false,
    status_words: &["9000", "61xx", "6700", "6985", "6A86"],
    summary: "sign a server's challenge (16 to 64 bytes) with the card key; answers r || s",
};

pub const ATTEST: CommandDef = CommandDef {
    name: "ATTEST",
    cla: CLA_PROPRIETARY,
    ins: ins::ATTEST,
    p1p2: "0000",
    body: Body::Required,
    states: &[Keyed, Active],
    writes: false,
    status_words: &["9000", "61xx", "6700", "6985", "6A86", "6A88"],
    summary: "vouch, with the attestation key from manufacture, that the card key was made on this card, over a server's challenge (16 to 64 bytes); answers the maker's certificate and the attestation",
};

pub const GENERATE_KEY: CommandDef = CommandDef {
    name: "GENERATE KEY",
    cla: CLA_PROPRIETARY,
    ins: ins::GENERATE_KEY,
    p1p2: "0000",
    body: Body::None,
    states: &[Blank],
    writes: true,
    status_words: &["9000", "61xx", "6581", "6985", "6A86"],
    summary: "make the card's P-256 key pair on the card; answers the public key",
};

pub const PERSONALIZE: CommandDef = CommandDef {
    name: "PERSONALIZE",
    cla: CLA_PROPRIETARY,
    ins: ins::PERSONALIZE,
    p1p2: "0000",
    body: Body::Required,
    states: &[Keyed],
    writes: true,
    status_words: &["9000", "6300", "6581", "6985", "6A80", "6A86"],
    summary: "install the issuer and arbiter keys (each under the root's signature), the card certificate (under the issuer's) and the PIN, once",
};

pub const TEST_RESET: CommandDef = CommandDef {
    name: "TEST RESET",
    cla: CLA_PROPRIETARY,
    ins: ins::TEST_RESET,
    p1p2: "0000",
    body: Body::Optional,
    states: ANY,
    writes: true,
    status_words: &["9000", "6581", "6A80", "6A86"],
    summary: "emulator in test mode only: erase the card back to blank, keeping what manufacture gave it or installing the manufacture record in the body (otherwise 6D00)",
};

pub const LOAD_REQUEST: CommandDef = CommandDef {
    name: "LOAD REQUEST",
    cla: CLA_PROPRIETARY,
    ins: ins::LOAD_REQUEST,
    p1p2: "0000",
    body: Body::Required,
    states: &[Active],
    writes: true,
    status_words: &["9000", "61xx", "6581", "6985", "6A80", "6A84", "6A86"],
    summary: "ask for a value from the center: signs and keeps a load request (card id, next load counter, value)",
};

pub const LOAD_APPLY: CommandDef = CommandDef {
    name: "LOAD APPLY",
    cla: CLA_PROPRIETARY,
    ins: ins::LOAD_APPLY,
    p1p2: "0000",
    body: Body::Required,
    states: &[Active],
    writes: true,
    status_words: &["9000", "6300", "6581", "6985", "6A80", "6A84", "6A86"],
    summary: "credit the pending load, given the issuer's authorisation of exactly that request",
};

pub const LOAD_CANCEL: CommandDef = CommandDef {
    name: "LOAD CANCEL",
    cla: CLA_PROPRIETARY,
    ins: ins::LOAD_CANCEL,
    p1p2: "0000",
    body: Body::None,
    states: &[Active],
    writes: true,
    status_words: &["9000", "61xx", "6581", "6985", "6A84", "6A86"],
    summary: "give up the pending load for good; answers a signed cancellation, kept until acknowledged",
};

pub const UNLOAD: CommandDef = CommandDef {
    name: "UNLOAD",
    cla: CLA_PROPRIETARY,
    ins: ins::UNLOAD,
    p1p2: "0000",
    body: Body::Required,
    states: &[Active],
    writes: true,
    status_words: &[
        "9000", "61xx", "6581", "6982", "6985", "6A80", "6A84", "6A86",
    ],
    summary: "PIN: debit units back to the center; answers a signed receipt, kept until acknowledged",
};

pub const UNLOAD_ACK: CommandDef = CommandDef {
    name: "UNLOAD ACK",
    cla: CLA_PROPRIETARY,
    ins: ins::UNLOAD_ACK,
    p1p2: "0100, 0200",
    body: Body::Required,
    states: &[Active],
    writes: true,
    status_words: &["9000", "6300", "6581", "6985", "6A80", "6A86", "6A88"],
    summary: "drop a receipt (P1 01 unload, 02 load cancellation) the issuer has acknowledged",
};

pub const START: CommandDef = CommandDef {
    name: "START",
    cla: CLA_PROPRIETARY,
    ins: ins::START,
    p1p2: "0000",
    body: Body::Required,
    states: &[Active],
    writes: true,
    status_words: &[
        "9000", "61xx", "6581", "6982", "6985", "6A80", "6A84", "6A86",
    ],
    summary: "PIN: open an exchange as initiator: reserve V1, record the V2 wanted; answers s1, V1 and the certificate",
};

pub const AGREE: CommandDef = CommandDef {
    name: "AGREE",
    cla: CLA_PROPRIETARY,
    ins: ins::AGREE,
    p1p2: "0000",
    body: Body::Required,
    states: &[Active],
    writes: true,
    status_words: &[
        "9000", "61xx", "6300", "6581", "6982", "6985", "6A80", "6A84", "6A86",
    ],
    summary: "PIN: answer a START as responder: escrow V2, sign the agreement Sa",
};

pub const CONFIRM: CommandDef = CommandDef {
    name: "CONFIRM",
    cla: CLA_PROPRIETARY,
    ins: ins::CONFIRM,
    p1p2: "0000",
    body: Body::Required,
    states: &[Active],
    writes: true,
    status_words: &[
        "9000", "61xx", "6300", "6581", "6985", "6A80", "6A86", "6A88",
    ],
    summary: "initiator: check the responder's agreement and sign the confirmation Se; no ABORT after it",
};

pub const COMMIT: CommandDef = CommandDef {
    name: "COMMIT",
    cla: CLA_PROPRIETARY,
    ins: ins::COMMIT,
    p1p2: "0000",
    body: Body::Required,
    states: &[Active],
    writes: true,
    status_words: &[
        "9000", "61xx", "6300", "6581", "6985", "6A80", "6A86", "6A88",
    ],
    summary: "responder: given Se, store V1 and answer r2; a bad Se makes the session PENDING",
};

pub const FINISH: CommandDef = CommandDef {
    name: "FINISH",
    cla: CLA_PROPRIETARY,
    ins: ins::FINISH,
    p1p2: "0000",
    body: Body::Required,
    states: &[Active],
    writes: true,
    status_words: &["9000", "6300", "6581", "6985", "6A80", "6A86", "6A88"],
    summary: "initiator: given r2 with SHA-256(r2) = s2, store V2 and end the session",
};

pub const ABORT: CommandDef = CommandDef {
    name: "ABORT",
    cla: CLA_PROPRIETARY,
    ins: ins::ABORT,
    p1p2: "0000",
    body: Body::Required,
    states: &[Active],
    writes: true,
    status_words: &["9000", "6581", "6985", "6A80", "6A86", "6A88"],
    summary: "initiator in START: release V1 and end the session",
};

pub const CANCEL: CommandDef = CommandDef {
    name: "CANCEL",
    cla: CLA_PROPRIETARY,
    ins: ins::CANCEL,
    p1p2: "0000",
    body: Body::Required,
    states: &[Active],
    writes: true,
    status_words: &["9000", "61xx", "6581", "6985", "6A80", "6A86", "6A88"],
    summary: "responder: never commit this session; answers the cancel request for the arbiter",
};

pub const RESOLVE: CommandDef = CommandDef {
    name: "RESOLVE",
    cla: CLA_PROPRIETARY,
    ins: ins::RESOLVE,
    p1p2: "0000",
    body: Body::Required,
    states: &[Active],
    writes: false,
    status_words: &["9000", "61xx", "6985", "6A80", "6A86", "6A88"],
    summary: "initiator in VALID: answers the resolve request for the arbiter",
};

pub const APPLY_VERDICT: CommandDef = CommandDef {
    name: "APPLY VERDICT",
    cla: CLA_PROPRIETARY,
    ins: ins::APPLY_VERDICT,
    p1p2: "0000",
    body: Body::Required,
    states: &[Active],
    writes: true,
    status_words: &["9000", "6300", "6581", "6985", "6A80", "6A86", "6A88"],
    summary: "end a session as the arbiter decided: complete or cancel",
};

pub const LIST_SESSIONS: CommandDef = CommandDef {
    name: "LIST SESSIONS",
    cla: CLA_PROPRIETARY,
    ins: ins::LIST_SESSIONS,
    p1p2: "0000",
    body: Body::None,
    states: &[Active],
    writes: false,
    status_words: &["9000", "61xx", "6985", "6A86"],
    summary: "the open exchange sessions: role, state, s1, s2, a and the values",
};

/// Every command, in the order `SPEC.md` presents them.
pub const COMMANDS: &[CommandDef] = &[
    SELECT,
    GET_RESPONSE,
    GET_DATA,
    VERIFY,
    CHANGE_REFERENCE_DATA,
    INTERNAL_AUTHENTICATE,
    ATTEST,
    GENERATE_KEY,
    PERSONALIZE,
    LOAD_REQUEST,
    LOAD_APPLY,
    LOAD_CANCEL,
    UNLOAD,
    UNLOAD_ACK,
    START,
    AGREE,
    CONFIRM,
    COMMIT,
    FINISH,
    ABORT,
    CANCEL,
    RESOLVE,
    APPLY_VERDICT,
    LIST_SESSIONS,
    TEST_RESET,
];

/// The command for a CLA (chaining bit ignored) and INS, if there is one.
pub fn lookup(cla: u8, ins: u8) -> Option<&'static CommandDef> {
    let class = cla & !crate::CLA_CHAIN;
    COMMANDS.iter().find(|c| c.cla == class && c.ins == ins)
}

/// The summary table of `SPEC.md`, generated from [`COMMANDS`].
pub fn markdown_table() -> String {
    let mut out = String::from(
        "| command | CLA | INS | P1 P2 | case | states | writes | status words |\n|---|---|---|---|---|---|---|---|\n",
    );
    for c in COMMANDS {
        let states: Vec<&str> = c.states.iter().map(|s| s.name()).collect();
        out.push_str(&format!(
            "| {} | {:02X} | {:02X} | {} | {} | {} | {} | {} |\n",
            c.name,
            c.cla,
            c.ins,
            c.p1p2,
            c.body.cases(),
            states.join(", "),
            if c.writes { "yes" } else { "no" },
            c.status_words.join(" "),
        ));
    }
    out
}

/// The generated tables of `SPEC.md`, each with the markers it stands between: the
/// `spec_tables` example writes them, the `spec_drift` test compares them.
pub fn spec_tables() -> [(&'static str, &'static str, String); 2] {
    [
        (
            "<!-- BEGIN COMMAND TABLE -->",
            "<!-- END COMMAND TABLE -->",
            markdown_table(),
        ),
        (
            "<!-- BEGIN STATUS TABLE -->",
            "<!-- END STATUS TABLE -->",
            markdown_status_table(),
        ),
    ]
}

/// The status-word table of `SPEC.md`, generated from the status catalogue.
pub fn markdown_status_table() -> String {
    let mut out = String::from("| SW | meaning |\n|---|---|\n");
    for d in crate::status::CARD_STATUS_WORDS {
        out.push_str(&format!("| {} | {} |\n", d.pattern, d.meaning));
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_command_is_unique_and_its_words_are_card_words() {
        for (i, a) in COMMANDS.iter().enumerate() {
            for b in &COMMANDS[i + 1..] {
                assert!(
                    !(a.cla == b.cla && a.ins == b.ins),
                    "{} and {}",
                    a.name,
                    b.name
                );
            }
            for sw in a.status_words.iter().chain(ISO_LAYER_STATUS_WORDS) {
                assert!(
                    crate::status::CARD_STATUS_WORDS
                        .iter()
                        .any(|d| d.pattern == *sw),
                    "{} lists {sw}, which the status catalogue lacks",
                    a.name
                );
            }
        }
        assert_eq!(
            lookup(0x90, ins::PERSONALIZE).map(|c| c.name),
            Some("PERSONALIZE")
        );
        assert!(lookup(0x80, ins::SELECT).is_none());
    }
}
