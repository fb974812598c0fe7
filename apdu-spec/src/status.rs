//! Status words: every one the valuecard card answers, with its meaning.
//!
//! The card works with [`iso7816::Status`]; this table is what `SPEC.md`, the terminal's
//! explanations and the property test read.

/// A status word, or a family of them: `x` in the pattern is a wildcard nibble.
#[derive(Clone, Copy, Debug)]
pub struct StatusDef {
    pub pattern: &'static str,
    pub meaning: &'static str,
}

/// Every status word the card can answer.
pub const CARD_STATUS_WORDS: &[StatusDef] = &[
    StatusDef {
        pattern: "9000",
        meaning: "success",
    },
    StatusDef {
        pattern: "61xx",
        meaning: "more response data waiting: xx bytes (00: 256 or more); fetch it with GET RESPONSE",
    },
    StatusDef {
        pattern: "6300",
        meaning: "verification failed: a signature or commitment in the command does not verify; nothing changed (COMMIT alone marks its session PENDING)",
    },
    StatusDef {
        pattern: "63Cx",
        meaning: "wrong PIN (or try-count query): x tries left",
    },
    StatusDef {
        pattern: "6581",
        meaning: "persistent write failed: the card kept its previous state",
    },
    StatusDef {
        pattern: "6700",
        meaning: "wrong length: the APDU encoding, Lc or the command's body length is wrong",
    },
    StatusDef {
        pattern: "6881",
        meaning: "logical channels are not supported",
    },
    StatusDef {
        pattern: "6882",
        meaning: "secure messaging is not supported",
    },
    StatusDef {
        pattern: "6883",
        meaning: "the last command of a chain was expected",
    },
    StatusDef {
        pattern: "6982",
        meaning: "security status not satisfied: verify the PIN first",
    },
    StatusDef {
        pattern: "6983",
        meaning: "PIN blocked",
    },
    StatusDef {
        pattern: "6985",
        meaning: "conditions of use not satisfied: the card's state does not allow this command",
    },
    StatusDef {
        pattern: "6A80",
        meaning: "incorrect data in the command body",
    },
    StatusDef {
        pattern: "6A82",
        meaning: "application not found",
    },
    StatusDef {
        pattern: "6A84",
        meaning: "not enough memory: the value store, the receipt list or the session list is full",
    },
    StatusDef {
        pattern: "6A86",
        meaning: "incorrect P1 or P2",
    },
    StatusDef {
        pattern: "6A88",
        meaning: "referenced data not found",
    },
    StatusDef {
        pattern: "6D00",
        meaning: "instruction not supported",
    },
    StatusDef {
        pattern: "6E00",
        meaning: "class not supported",
    },
];

/// Status words other cards answer, for the terminal's explanations.
const OTHER_STATUS_WORDS: &[StatusDef] = &[
    StatusDef {
        pattern: "6Cxx",
        meaning: "wrong Le: repeat with Le = xx",
    },
    StatusDef {
        pattern: "62xx",
        meaning: "warning: state unchanged",
    },
    StatusDef {
        pattern: "64xx",
        meaning: "execution error: state unchanged",
    },
    StatusDef {
        pattern: "65xx",
        meaning: "execution error: state changed",
    },
    StatusDef {
        pattern: "6800",
        meaning: "function in CLA not supported",
    },
    StatusDef {
        pattern: "6884",
        meaning: "command chaining not supported",
    },
    StatusDef {
        pattern: "6981",
        meaning: "command incompatible with file structure",
    },
    StatusDef {
        pattern: "6984",
        meaning: "reference data not usable",
    },
    StatusDef {
        pattern: "6986",
        meaning: "command not allowed (no current EF)",
    },
    StatusDef {
        pattern: "6A81",
        meaning: "function not supported",
    },
    StatusDef {
        pattern: "6B00",
        meaning: "wrong parameters P1-P2",
    },
    StatusDef {
        pattern: "6F00",
        meaning: "no precise diagnosis",
    },
];

/// Whether `sw` matches a pattern such as `61xx` or `63Cx` (case-insensitive).
pub fn sw_matches(pattern: &str, sw: u16) -> bool {
    let actual = format!("{sw:04X}");
    pattern.len() == 4
        && pattern
            .chars()
            .zip(actual.chars())
            .all(|(p, a)| p == 'x' || p == 'X' || p.eq_ignore_ascii_case(&a))
}

/// Whether the card can answer this status word at all.
pub fn is_card_status(sw: u16) -> bool {
    CARD_STATUS_WORDS.iter().any(|d| sw_matches(d.pattern, sw))
}

/// Data may accompany only 9000, 61xx, 62xx and 63xx (CONFORMANCE.md).
pub fn allows_data(sw: u16) -> bool {
    sw == 0x9000 || matches!(sw >> 8, 0x61..=0x63)
}

/// A person-readable meaning of any status word.
pub fn describe(sw: u16) -> String {
    let def = CARD_STATUS_WORDS
        .iter()
        .chain(OTHER_STATUS_WORDS)
        .find(|d| sw_matches(d.pattern, sw));
    match def {
        Some(def) if def.pattern.contains('x') => {
            let low = if def.pattern.ends_with("xx") {
                sw & 0xFF
            } else {
                sw & 0x0F
            };
            format!(
                "{} [{}={}]",
                def.meaning,
                &def.pattern[def.pattern.find('x').unwrap_or(0)..],
                low
            )
        }
        Some(def) => def.meaning.to_string(),
        None => "unknown status word".to_string(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn patterns() {
        assert!(sw_matches("61xx", 0x6110));
        assert!(sw_matches("63Cx", 0x63C2));
        assert!(!sw_matches("63Cx", 0x6302));
        assert!(is_card_status(0x6A88));
        assert!(!is_card_status(0x6F00));
        assert!(allows_data(0x6312) && !allows_data(0x6700));
        assert_eq!(
            describe(0x63C2),
            "wrong PIN (or try-count query): x tries left [x=2]"
        );
    }

    #[test]
    fn the_card_table_agrees_with_iso7816() {
        // Every fixed word in our table has a name in the iso7816 crate, so the card can
        // answer it through `iso7816::Status` without a raw number.
        for def in CARD_STATUS_WORDS
            .iter()
            .filter(|d| !d.pattern.contains('x'))
        {
            let sw = u16::from_str_radix(def.pattern, 16).expect("hex pattern");
            let status = iso7816::Status::from(sw);
            assert_eq!(u16::from(status), sw, "{}", def.pattern);
            assert!(
                !format!("{status:?}").contains("Unknown"),
                "{}",
                def.pattern
            );
        }
    }
}
