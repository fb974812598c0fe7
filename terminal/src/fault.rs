//! Fault injection for the crash tests of the funding, load and unload commands. Hidden from `--help` on
//! purpose: it exists so that tests can stop the terminal at every step that matters and
//! check that `valuecard recover` ends with exact totals.
//!
//! `VALUECARD_FAULT=<point>[:<n>]` acts the n-th time (1 when `:n` is left out) the process
//! reaches `<point>`:
//!
//! | point | where | what happens |
//! |---|---|---|
//! | `journal-blinded` | the journal holds a new withdrawal, every piece blinded, nothing sent yet | abort |
//! | `bank-answered` | the bank's answer to a withdrawal request arrived, not journaled yet | abort |
//! | `journal-signed` | a piece's finished token is journaled | abort |
//! | `center-answered` | the center's answer to a redemption arrived, not journaled yet | abort |
//! | `journal-redeemed` | a piece is journaled as redeemed | abort |
//! | `fail-bank` | the n-th HTTP request to the bank, before it is sent | it fails as a network error |
//! | `fail-center` | the n-th HTTP request to the center, before it is sent | it fails as a network error |
//! | `fail-arbiter` | the n-th HTTP request to the arbiter, before it is sent | it fails as a network error |
//! | `before-load-request`, `after-load-request` | just before LOAD REQUEST goes to the card, just after its answer came | abort |
//! | `center-load-answered` | the center's authorisation of a load arrived, not yet sent to the card | abort |
//! | `before-load-apply`, `after-load-apply` | around LOAD APPLY | abort |
//! | `before-load-cancel`, `after-load-cancel` | around LOAD CANCEL | abort |
//! | `center-cancel-answered` | the center's acknowledgement of a cancellation arrived | abort |
//! | `before-unload`, `after-unload` | around UNLOAD | abort |
//! | `center-unload-answered` | the center's acknowledgement of an unload arrived | abort |
//! | `before-unload-ack`, `after-unload-ack` | around UNLOAD ACK | abort |
//! | `after-start`, `after-agree`, `after-confirm`, `after-commit` | an exchange step's answer came back from its card, before the next step | abort |
//!
//! For a card command, "before" is a card that never got the command, and "after" a card
//! that carried it out and committed, but whose answer was lost: both are what a card pulled
//! out of the reader (or a terminal that crashed) leaves. A power cut in the middle of a
//! command is the card's own tearing test (`card/tests/tearing.rs`).
//!
//! "abort" is `std::process::abort()`: no destructor runs and nothing is flushed, as in a
//! crash or a power cut of the terminal. Without the variable nothing here has any effect.

use std::sync::OnceLock;
use std::sync::atomic::{AtomicU64, Ordering};

/// The points where the process can be made to abort.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Point {
    JournalBlinded,
    BankAnswered,
    JournalSigned,
    CenterAnswered,
    JournalRedeemed,
    FailBank,
    FailCenter,
    FailArbiter,
    BeforeLoadRequest,
    AfterLoadRequest,
    CenterLoadAnswered,
    BeforeLoadApply,
    AfterLoadApply,
    BeforeLoadCancel,
    AfterLoadCancel,
    CenterCancelAnswered,
    BeforeUnload,
    AfterUnload,
    CenterUnloadAnswered,
    BeforeUnloadAck,
    AfterUnloadAck,
    AfterStart,
    AfterAgree,
    AfterConfirm,
    AfterCommit,
}

const POINTS: [(Point, &str); 25] = [
    (Point::JournalBlinded, "journal-blinded"),
    (Point::BankAnswered, "bank-answered"),
    (Point::JournalSigned, "journal-signed"),
    (Point::CenterAnswered, "center-answered"),
    (Point::JournalRedeemed, "journal-redeemed"),
    (Point::FailBank, "fail-bank"),
    (Point::FailCenter, "fail-center"),
    (Point::FailArbiter, "fail-arbiter"),
    (Point::BeforeLoadRequest, "before-load-request"),
    (Point::AfterLoadRequest, "after-load-request"),
    (Point::CenterLoadAnswered, "center-load-answered"),
    (Point::BeforeLoadApply, "before-load-apply"),
    (Point::AfterLoadApply, "after-load-apply"),
    (Point::BeforeLoadCancel, "before-load-cancel"),
    (Point::AfterLoadCancel, "after-load-cancel"),
    (Point::CenterCancelAnswered, "center-cancel-answered"),
    (Point::BeforeUnload, "before-unload"),
    (Point::AfterUnload, "after-unload"),
    (Point::CenterUnloadAnswered, "center-unload-answered"),
    (Point::BeforeUnloadAck, "before-unload-ack"),
    (Point::AfterUnloadAck, "after-unload-ack"),
    (Point::AfterStart, "after-start"),
    (Point::AfterAgree, "after-agree"),
    (Point::AfterConfirm, "after-confirm"),
    (Point::AfterCommit, "after-commit"),
];

/// The names of every point, for tests that go through all of them.
pub fn point_names() -> impl Iterator<Item = &'static str> {
    POINTS.iter().map(|(_, name)| *name)
}

impl Point {
    pub fn name(self) -> &'static str {
        POINTS
            .iter()
            .find(|(p, _)| *p == self)
            .map(|(_, name)| *name)
            .unwrap_or("?")
    }
}

/// A parsed `VALUECARD_FAULT`: the point and which arrival there triggers it.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Fault {
    pub point: Point,
    pub nth: u64,
}

impl Fault {
    pub fn parse(text: &str) -> Option<Fault> {
        let (name, nth) = match text.trim().split_once(':') {
            Some((name, n)) => (name, n.trim().parse().ok().filter(|n| *n > 0)?),
            None => (text.trim(), 1),
        };
        let point = POINTS.iter().find(|(_, n)| *n == name)?.0;
        Some(Fault { point, nth })
    }
}

fn configured() -> Option<Fault> {
    static FAULT: OnceLock<Option<Fault>> = OnceLock::new();
    *FAULT.get_or_init(|| {
        let text = std::env::var("VALUECARD_FAULT").ok()?;
        let fault = Fault::parse(&text);
        if fault.is_none() {
            // A typo must not make a crash test pass by never crashing.
            eprintln!("valuecard: VALUECARD_FAULT={text} names no fault point; aborting");
            std::process::abort();
        }
        fault
    })
}

/// Counts an arrival at `point`; true when this is the configured one.
fn arrive(point: Point) -> bool {
    static COUNT: AtomicU64 = AtomicU64::new(0);
    match configured() {
        Some(fault) if fault.point == point => {
            COUNT.fetch_add(1, Ordering::SeqCst) + 1 == fault.nth
        }
        _ => false,
    }
}

/// The process passes a point where it may be made to crash.
pub fn reached(point: Point) {
    if arrive(point) {
        eprintln!("valuecard: injected fault {}: aborting", point.name());
        std::process::abort();
    }
}

/// A request to a role is about to be sent: true when it must fail instead.
pub fn fail_request(point: Point) -> bool {
    arrive(point)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_points_and_counts() {
        assert_eq!(
            Fault::parse("bank-answered"),
            Some(Fault {
                point: Point::BankAnswered,
                nth: 1
            })
        );
        assert_eq!(
            Fault::parse("fail-center:3"),
            Some(Fault {
                point: Point::FailCenter,
                nth: 3
            })
        );
        assert_eq!(Fault::parse("fail-center:0"), None);
        assert_eq!(Fault::parse("journal-lost"), None);
        for (point, name) in POINTS {
            assert_eq!(point.name(), name);
            assert_eq!(Fault::parse(name).map(|f| f.point), Some(point));
        }
    }
}
