//! The terminal's side of a fair exchange (PROTOCOLS.md, "Fair exchange: card to card"):
//! relaying the five steps between two cards, and settling with the arbiter when a step
//! fails. The terminal is trusted with nothing: every message it carries is signed or
//! checked by a card or by the arbiter.

use apdu_spec::exchange::Outcome;
use apdu_spec::exchange::Value;
use apdu_spec::exchange::messages::{
    AbortBody, CancelBody, ResolveBody, Role, SessionInfo, SessionState, StartAnswer, StartBody,
    VerdictBody,
};
use apdu_spec::units::UnitValue;
use valuecard_protocol::api::{ArbiterCancelRequest, ArbiterResolveRequest, Verdict};

use crate::backend_client::{ArbiterClient, BackendError};
use crate::fault::{self, Point};
use crate::transport::Transport;
use crate::{Client, ClientError};

/// Parses a value as the user writes it: `300JPY` (or `300 JPY`), `ticket:CONCERT:00C0FFEE`,
/// or `nothing` (that side gives nothing: a one-way payment).
pub fn parse_value(text: &str) -> Result<Value, String> {
    let text = text.trim();
    if text.eq_ignore_ascii_case("nothing") || text == "-" {
        return Ok(None);
    }
    let value = if let Some(rest) = text.strip_prefix("ticket:") {
        let (code, serial) = rest
            .split_once(':')
            .ok_or_else(|| format!("{text:?}: a ticket is ticket:CODE:SERIAL (serial in hex)"))?;
        let serial = hex::decode(serial.trim())
            .map_err(|e| format!("{text:?}: the serial is not hex ({e})"))?;
        UnitValue::Ticket {
            code: code.trim().to_string(),
            serial,
        }
    } else {
        let digits = text
            .find(|c: char| !c.is_ascii_digit())
            .unwrap_or(text.len());
        let (amount, code) = text.split_at(digits);
        let form =
            || format!("{text:?}: a value is AMOUNT CODE (300JPY), ticket:CODE:SERIAL, or nothing");
        let amount: u64 = amount.parse().map_err(|_| form())?;
        if code.trim().is_empty() {
            return Err(form());
        }
        UnitValue::Asset {
            code: code.trim().to_string(),
            amount,
        }
    };
    value.validate().map_err(|e| format!("{text:?}: {e}"))?;
    Ok(Some(value))
}

/// A value for people: `300 JPY`, `ticket CONCERT #00C0FFEE`, `nothing`.
pub fn show_value(value: &Value) -> String {
    match value {
        None => "nothing".into(),
        Some(v) => v.to_string(),
    }
}

// ---- relaying and settling -----------------------------------------------------------------

#[derive(Debug, thiserror::Error)]
pub enum ExchangeError {
    #[error("card {card}: {source}")]
    Card {
        card: &'static str,
        source: ClientError,
    },
    #[error(transparent)]
    Arbiter(#[from] BackendError),
}

pub type Result<T, E = ExchangeError> = std::result::Result<T, E>;

fn on(card: &'static str) -> impl Fn(ClientError) -> ExchangeError {
    move |source| ExchangeError::Card { card, source }
}

/// How one session ended on one card.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Ending {
    /// The five steps ran: the card holds what it was to get.
    Exchanged,
    /// The initiator gave up before it had signed anything: V1 is back.
    Aborted,
    /// The arbiter's verdict was applied.
    Verdict(Outcome),
}

impl Ending {
    pub fn describe(&self) -> &'static str {
        match self {
            Ending::Exchanged => "exchanged",
            Ending::Aborted => "aborted: its value is back",
            Ending::Verdict(Outcome::Complete) => "settled by the arbiter: complete",
            Ending::Verdict(Outcome::Cancel) => {
                "settled by the arbiter: cancelled, its value is back"
            }
        }
    }
}

/// How an exchange ended on both cards.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Report {
    pub initiator: Option<Ending>,
    pub responder: Option<Ending>,
    /// The step that failed, and why, when the arbiter had to settle.
    pub failed_step: Option<(&'static str, String)>,
    /// Cards whose session could not be settled now, and why: `valuecard recover` on that
    /// card settles it later.
    pub unsettled: Vec<(&'static str, String)>,
}

/// Relays the five steps of one exchange between the initiator (gives `give`, takes `take`)
/// and the responder, calling `step` after each. When a step fails, settles this exchange's
/// session on each card with the arbiter (or ABORT where that is allowed).
pub fn run<TA: Transport, TB: Transport>(
    initiator: &mut Client<TA>,
    responder: &mut Client<TB>,
    arbiter: &ArbiterClient,
    give: &Value,
    take: &Value,
    step: &mut dyn FnMut(&str, &str),
) -> Result<Report> {
    // Before START nothing is open on either card: a failure is just an error.
    let started = initiator
        .start(&StartBody {
            v1: give.clone(),
            wanted_v2: take.clone(),
        })
        .map_err(on("initiator"))?;
    step(
        "START",
        &format!("the initiator reserves {}", show_value(give)),
    );
    fault::reached(Point::AfterStart);
    match relay(initiator, responder, &started, give, take, step) {
        Ok(()) => Ok(Report {
            initiator: Some(Ending::Exchanged),
            responder: Some(Ending::Exchanged),
            failed_step: None,
            unsettled: Vec::new(),
        }),
        Err(broken) => settle_both(
            initiator,
            responder,
            arbiter,
            &started.s1,
            broken.s2.as_ref(),
            Some((broken.step, broken.error.to_string())),
            step,
        ),
    }
}

/// Where the relay broke off: the step, s2 once AGREE has answered it, and why.
struct Broken {
    step: &'static str,
    s2: Option<[u8; 32]>,
    error: ClientError,
}

/// AGREE, CONFIRM, COMMIT and FINISH, each relaying the previous answer.
fn relay<TA: Transport, TB: Transport>(
    initiator: &mut Client<TA>,
    responder: &mut Client<TB>,
    started: &StartAnswer,
    give: &Value,
    take: &Value,
    step: &mut dyn FnMut(&str, &str),
) -> std::result::Result<(), Broken> {
    let at = |step: &'static str, s2: Option<[u8; 32]>| move |error| Broken { step, s2, error };
    let agreed = responder
        .agree(&started.agree_body(take.clone(), give.clone()))
        .map_err(at("AGREE", None))?;
    step(
        "AGREE",
        &format!("the responder escrows {}", show_value(take)),
    );
    fault::reached(Point::AfterAgree);
    let s2 = Some(agreed.s2);

    let confirmed = initiator
        .confirm(&agreed.confirm_body(started.s1))
        .map_err(at("CONFIRM", s2))?;
    step(
        "CONFIRM",
        &format!("the initiator escrows {}", show_value(give)),
    );
    fault::reached(Point::AfterConfirm);

    let committed = responder.commit(&confirmed).map_err(at("COMMIT", s2))?;
    step(
        "COMMIT",
        &format!("the responder stores {}", show_value(give)),
    );
    fault::reached(Point::AfterCommit);

    initiator
        .finish(&committed.finish_body(agreed.s2))
        .map_err(at("FINISH", s2))?;
    step(
        "FINISH",
        &format!("the initiator stores {}", show_value(take)),
    );
    Ok(())
}

fn settle_both<TA: Transport, TB: Transport>(
    initiator: &mut Client<TA>,
    responder: &mut Client<TB>,
    arbiter: &ArbiterClient,
    s1: &[u8; 32],
    s2: Option<&[u8; 32]>,
    failed_step: Option<(&'static str, String)>,
    step: &mut dyn FnMut(&str, &str),
) -> Result<Report> {
    if let Some((name, why)) = &failed_step {
        step(name, &format!("failed: {why}; settling"));
    }
    // The responder first: a CANCEL there before the initiator's RESOLVE gives both back
    // their values; the other order completes. Either is consistent.
    // A card that cannot be reached (pulled out, a dead reader) does not stop the other
    // one from being settled: its session stays open for `valuecard recover`.
    let mine = |s: &SessionInfo| s.s1 == *s1 || (s2.is_some() && s.s2.as_ref() == s2);
    let mut unsettled = Vec::new();
    let mut ending = |result: Result<Vec<Ending>>, card: &'static str| match result {
        Ok(endings) => endings.into_iter().next(),
        Err(e) => {
            unsettled.push((card, e.to_string()));
            None
        }
    };
    let responder_ending = ending(
        settle_sessions(responder, "responder", arbiter, &mine, step),
        "responder",
    );
    let initiator_ending = ending(
        settle_sessions(initiator, "initiator", arbiter, &mine, step),
        "initiator",
    );
    Ok(Report {
        initiator: initiator_ending,
        responder: responder_ending,
        failed_step,
        unsettled,
    })
}

/// Ends every open session on `client` that `select` picks: ABORT for an initiator that
/// has signed nothing, otherwise the arbiter's verdict (asked for with RESOLVE or CANCEL
/// when it has none yet), applied on the card.
pub fn settle_sessions<T: Transport>(
    client: &mut Client<T>,
    card: &'static str,
    arbiter: &ArbiterClient,
    select: &dyn Fn(&SessionInfo) -> bool,
    step: &mut dyn FnMut(&str, &str),
) -> Result<Vec<Ending>> {
    let mut sessions = client.sessions().map_err(on(card))?;
    sessions.retain(|s| select(s));
    settle_listed(client, card, arbiter, &sessions, step)
}

/// Ends each of `sessions`, as LIST SESSIONS gave them, the way [`settle_sessions`] does:
/// for a caller that has just listed them.
pub fn settle_listed<T: Transport>(
    client: &mut Client<T>,
    card: &'static str,
    arbiter: &ArbiterClient,
    sessions: &[SessionInfo],
    step: &mut dyn FnMut(&str, &str),
) -> Result<Vec<Ending>> {
    let mut endings = Vec::new();
    for session in sessions {
        let ending = settle_one(client, card, arbiter, session)?;
        step(card, ending.describe());
        endings.push(ending);
    }
    Ok(endings)
}

fn settle_one<T: Transport>(
    client: &mut Client<T>,
    card: &'static str,
    arbiter: &ArbiterClient,
    session: &SessionInfo,
) -> Result<Ending> {
    let (Some(s2), Some(a), SessionState::Valid | SessionState::Pending) =
        (session.s2, session.a, session.state)
    else {
        // An initiator in START has signed nothing that commits it.
        client
            .abort(&AbortBody { s1: session.s1 })
            .map_err(on(card))?;
        return Ok(Ending::Aborted);
    };
    let verdict = match arbiter.verdict(&a, &s2)? {
        Some(v) => v,
        None => ask_arbiter(client, card, arbiter, session.role, s2)?,
    };
    client
        .apply_verdict(&VerdictBody::from(&verdict))
        .map_err(on(card))?;
    Ok(Ending::Verdict(verdict.outcome))
}

/// The card's own request to the arbiter: a resolve request from the initiator, a cancel
/// request from the responder.
fn ask_arbiter<T: Transport>(
    client: &mut Client<T>,
    card: &'static str,
    arbiter: &ArbiterClient,
    role: Role,
    s2: [u8; 32],
) -> Result<Verdict> {
    Ok(match role {
        Role::Initiator => {
            let r = client.resolve(&ResolveBody { s2 }).map_err(on(card))?;
            arbiter.resolve(&ArbiterResolveRequest::from(&r))?
        }
        Role::Responder => {
            let c = client.cancel(&CancelBody { s2 }).map_err(on(card))?;
            arbiter.cancel(&ArbiterCancelRequest::from(&c))?
        }
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn values_as_people_write_them() {
        let jpy = Some(UnitValue::Asset {
            code: "JPY".into(),
            amount: 300,
        });
        assert_eq!(parse_value("300JPY"), Ok(jpy.clone()));
        assert_eq!(parse_value(" 300 JPY "), Ok(jpy.clone()));
        assert_eq!(parse_value("nothing"), Ok(None));
        assert_eq!(
            parse_value("ticket:CONCERT:00C0FFEE"),
            Ok(Some(UnitValue::Ticket {
                code: "CONCERT".into(),
                serial: vec![0, 0xC0, 0xFF, 0xEE]
            }))
        );
        assert!(parse_value("0JPY").is_err(), "zero");
        assert!(parse_value("JPY").is_err(), "no amount");
        assert!(
            parse_value("300").is_err_and(|e| e.contains("a value is AMOUNT CODE (300JPY)")),
            "no code: the message shows the form"
        );
        assert!(parse_value("ticket:CONCERT").is_err(), "no serial");
        assert!(parse_value("ticket:CONCERT:zz").is_err(), "bad hex");
        assert_eq!(show_value(&jpy), "300 JPY");
        assert_eq!(show_value(&None), "nothing");
    }
}
