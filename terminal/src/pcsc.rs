//! A card in a PC/SC reader. pcsc-lite passes APDUs through untouched, so this works the
//! same with a real card and reader as with the emulator behind vpcd.

use std::ffi::CString;
use std::time::{Duration, Instant};

use pcsc::{Context, Disposition, Protocols, ReaderState, Scope, ShareMode, State};

use crate::transport::{Transport, TransportError, apdu_log_start, log_apdu};

/// A reader as `valuecard readers` shows it.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct ReaderInfo {
    pub name: String,
    pub card_present: bool,
    /// The card's ATR; `None` without a card, or with a mute one.
    pub atr: Option<Vec<u8>>,
}

fn establish() -> Result<Context, TransportError> {
    Context::establish(Scope::User).map_err(TransportError::NoService)
}

fn reader_names(context: &Context) -> Result<Vec<CString>, TransportError> {
    match context.list_readers_owned() {
        Ok(names) => Ok(names),
        // pcsc-lite reports "no readers" as an error; for us it is an empty list.
        Err(pcsc::Error::NoReadersAvailable) => Ok(Vec::new()),
        Err(e) => Err(TransportError::NoService(e)),
    }
}

fn lossy(name: &CString) -> String {
    name.to_string_lossy().into_owned()
}

/// Every reader, with whether a card is in it and its ATR. Nothing is connected to: the
/// ATR comes from the resource manager's reader state.
pub fn list_readers() -> Result<Vec<ReaderInfo>, TransportError> {
    let context = establish()?;
    let names = reader_names(&context)?;
    if names.is_empty() {
        return Ok(Vec::new());
    }
    let mut states: Vec<ReaderState> = names
        .iter()
        .map(|n| ReaderState::new(n.clone(), State::UNAWARE))
        .collect();
    // UNAWARE makes the call return the current state at once.
    context
        .get_status_change(Duration::ZERO, &mut states)
        .map_err(|source| TransportError::Pcsc {
            reader: "all readers".into(),
            action: "reading reader states",
            source,
        })?;
    Ok(states
        .iter()
        .map(|s| {
            let event = s.event_state();
            let present = event.contains(State::PRESENT);
            let atr = (present && !event.contains(State::MUTE) && !s.atr().is_empty())
                .then(|| s.atr().to_vec());
            ReaderInfo {
                name: s.name().to_string_lossy().into_owned(),
                card_present: present,
                atr,
            }
        })
        .collect())
}

/// Picks a reader: a selector that parses as a number is an index, otherwise it is an exact
/// name, or else a part of exactly one name (case-insensitive), so `--reader "00 01"` works.
pub fn choose_reader(names: &[String], selector: &str) -> Result<usize, TransportError> {
    if let Ok(index) = selector.trim().parse::<usize>() {
        return if index < names.len() {
            Ok(index)
        } else {
            Err(TransportError::ReaderIndex {
                index,
                count: names.len(),
            })
        };
    }
    if let Some(i) = names.iter().position(|n| n == selector) {
        return Ok(i);
    }
    let wanted = selector.to_lowercase();
    let matches: Vec<usize> = (0..names.len())
        .filter(|&i| names[i].to_lowercase().contains(&wanted))
        .collect();
    match matches.as_slice() {
        [one] => Ok(*one),
        [] => Err(TransportError::UnknownReader {
            selector: selector.into(),
            available: if names.is_empty() {
                "none".into()
            } else {
                quoted(names.iter())
            },
        }),
        _ => Err(TransportError::AmbiguousReader {
            selector: selector.into(),
            matches: quoted(matches.iter().map(|&i| &names[i])),
        }),
    }
}

fn quoted<'a>(names: impl Iterator<Item = &'a String>) -> String {
    names
        .map(|n| format!("\"{n}\""))
        .collect::<Vec<_>>()
        .join(", ")
}

/// Waits until one of `readers` holds a card that answered its reset, for at most `timeout`
/// (zero: look once). Returns the index of the first such reader.
pub fn wait_for_card(
    context: &Context,
    readers: &[CString],
    timeout: Duration,
) -> Result<usize, TransportError> {
    wait_for(context, readers, timeout, |s| {
        s.contains(State::PRESENT) && !s.contains(State::MUTE)
    })
    .map_err(|e| no_card_if_timeout(e, readers))
}

/// Waits until `reader` holds no card, for at most `timeout`. Returns whether it is empty.
pub fn wait_for_removal(reader: &str, timeout: Duration) -> Result<bool, TransportError> {
    let context = establish()?;
    let name = reader_cstring(reader)?;
    match wait_for(&context, std::slice::from_ref(&name), timeout, |s| {
        s.contains(State::EMPTY)
    }) {
        Ok(_) => Ok(true),
        Err(TransportError::Pcsc {
            source: pcsc::Error::Timeout,
            ..
        }) => Ok(false),
        Err(e) => Err(e),
    }
}

fn no_card_if_timeout(e: TransportError, readers: &[CString]) -> TransportError {
    match e {
        TransportError::Pcsc {
            source: pcsc::Error::Timeout,
            ..
        } => TransportError::NoCard {
            reader: match readers {
                [one] => lossy(one),
                _ => "any reader".into(),
            },
        },
        e => e,
    }
}

fn wait_for(
    context: &Context,
    readers: &[CString],
    timeout: Duration,
    done: impl Fn(State) -> bool,
) -> Result<usize, TransportError> {
    let deadline = Instant::now() + timeout;
    let mut states: Vec<ReaderState> = readers
        .iter()
        .map(|n| ReaderState::new(n.clone(), State::UNAWARE))
        .collect();
    let mut wait = Duration::ZERO;
    loop {
        let timed_out = match context.get_status_change(wait, &mut states) {
            Ok(()) => false,
            Err(pcsc::Error::Timeout) => true,
            Err(source) => {
                return Err(TransportError::Pcsc {
                    reader: describe(readers),
                    action: "waiting for a card",
                    source,
                });
            }
        };
        if let Some(i) = states.iter().position(|s| done(s.event_state())) {
            return Ok(i);
        }
        let now = Instant::now();
        if timed_out || now >= deadline {
            return Err(TransportError::Pcsc {
                reader: describe(readers),
                action: "waiting",
                source: pcsc::Error::Timeout,
            });
        }
        for s in &mut states {
            s.sync_current_state();
        }
        wait = deadline - now;
    }
}

fn describe(readers: &[CString]) -> String {
    match readers {
        [one] => lossy(one),
        _ => "the readers".into(),
    }
}

fn reader_cstring(name: &str) -> Result<CString, TransportError> {
    CString::new(name).map_err(|_| TransportError::UnknownReader {
        selector: name.into(),
        available: "(names have no NUL bytes)".into(),
    })
}

/// A shared connection to the card in one reader.
pub struct PcscTransport {
    context: Context,
    card: pcsc::Card,
    reader: CString,
    atr: Vec<u8>,
    /// Allocated once: extended responses need up to 64 KiB, and benchmarks should not
    /// measure the allocator.
    receive: Vec<u8>,
}

impl PcscTransport {
    /// Connects to the reader `selector` names (see [`choose_reader`]), or without one to
    /// the first reader that holds a card. Waits up to `wait` for a card to be inserted.
    pub fn open(selector: Option<&str>, wait: Duration) -> Result<Self, TransportError> {
        let context = establish()?;
        let names = reader_names(&context)?;
        if names.is_empty() {
            return Err(TransportError::NoReaders);
        }
        let candidates = match selector {
            Some(selector) => {
                let strings: Vec<String> = names.iter().map(lossy).collect();
                vec![names[choose_reader(&strings, selector)?].clone()]
            }
            None => names,
        };
        let index = wait_for_card(&context, &candidates, wait)?;
        let reader = candidates[index].clone();
        tracing::info!(reader = %lossy(&reader), selector = selector.unwrap_or("(none: the first holding a card)"), "using reader");
        let card = connect(&context, &reader)?;
        let mut transport = PcscTransport {
            context,
            card,
            reader,
            atr: Vec::new(),
            receive: vec![0; apdu_spec::MAX_BUFFER_SIZE_EXTENDED],
        };
        transport.refresh_atr()?;
        Ok(transport)
    }

    pub fn reader(&self) -> String {
        lossy(&self.reader)
    }

    fn error(&self, action: &'static str, source: pcsc::Error) -> TransportError {
        let reader = self.reader();
        match source {
            pcsc::Error::RemovedCard | pcsc::Error::NoSmartcard => {
                TransportError::CardRemoved { reader }
            }
            pcsc::Error::ResetCard => TransportError::CardReset { reader },
            pcsc::Error::UnresponsiveCard | pcsc::Error::UnpoweredCard => {
                TransportError::Mute { reader }
            }
            source => TransportError::Pcsc {
                reader,
                action,
                source,
            },
        }
    }

    fn refresh_atr(&mut self) -> Result<(), TransportError> {
        let status = self
            .card
            .status2_owned()
            .map_err(|e| self.error("reading the card status", e))?;
        self.atr = status.atr().to_vec();
        Ok(())
    }

    fn reconnect(&mut self, disposition: Disposition) -> Result<(), TransportError> {
        match self
            .card
            .reconnect(ShareMode::Shared, Protocols::ANY, disposition)
        {
            Ok(()) => {}
            // Our handle is stale: another program reset the card, or it was swapped. Either
            // way the card has just been through a reset, which is what was asked for.
            Err(pcsc::Error::ResetCard | pcsc::Error::RemovedCard | pcsc::Error::InvalidHandle) => {
                self.card = connect(&self.context, &self.reader)?;
            }
            Err(e) => return Err(self.error("resetting the card", e)),
        }
        self.refresh_atr()
    }
}

fn connect(context: &Context, reader: &CString) -> Result<pcsc::Card, TransportError> {
    context
        .connect(reader, ShareMode::Shared, Protocols::T1 | Protocols::T0)
        .map_err(|source| {
            let reader = lossy(reader);
            match source {
                pcsc::Error::NoSmartcard | pcsc::Error::RemovedCard => {
                    TransportError::NoCard { reader }
                }
                pcsc::Error::SharingViolation => TransportError::Busy { reader },
                pcsc::Error::UnresponsiveCard | pcsc::Error::UnpoweredCard => {
                    TransportError::Mute { reader }
                }
                source => TransportError::Pcsc {
                    reader,
                    action: "connecting",
                    source,
                },
            }
        })
}

impl Transport for PcscTransport {
    fn transmit(&mut self, apdu: &[u8]) -> Result<Vec<u8>, TransportError> {
        let started = apdu_log_start();
        let answer = self.transmit_unlogged(apdu);
        if started.is_some() {
            log_apdu(&self.reader(), apdu, &answer, started);
        }
        answer
    }

    fn reset(&mut self) -> Result<(), TransportError> {
        tracing::debug!(reader = %self.reader(), "warm reset");
        self.reconnect(Disposition::ResetCard)
    }

    fn power_cycle(&mut self) -> Result<(), TransportError> {
        tracing::debug!(reader = %self.reader(), "power cycle");
        self.reconnect(Disposition::UnpowerCard)
    }

    fn atr(&self) -> Vec<u8> {
        self.atr.clone()
    }

    fn name(&self) -> String {
        self.reader()
    }
}

impl PcscTransport {
    fn transmit_unlogged(&mut self, apdu: &[u8]) -> Result<Vec<u8>, TransportError> {
        match self.card.transmit(apdu, &mut self.receive) {
            Ok(answer) => Ok(answer.to_vec()),
            Err(pcsc::Error::ResetCard) => {
                // Take the reset on board so that the next command works, but do not
                // resend: the card lost the session this command may have relied on.
                let _ =
                    self.card
                        .reconnect(ShareMode::Shared, Protocols::ANY, Disposition::LeaveCard);
                Err(self.error("sending an APDU", pcsc::Error::ResetCard))
            }
            Err(e) => Err(self.error("sending an APDU", e)),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn readers_by_index_name_or_part() {
        let names = vec![
            "Virtual PCD 00 00".to_string(),
            "Virtual PCD 00 01".to_string(),
        ];
        assert_eq!(choose_reader(&names, "1").ok(), Some(1));
        assert_eq!(choose_reader(&names, "Virtual PCD 00 00").ok(), Some(0));
        assert_eq!(choose_reader(&names, "pcd 00 01").ok(), Some(1));
        assert!(matches!(
            choose_reader(&names, "2"),
            Err(TransportError::ReaderIndex { index: 2, count: 2 })
        ));
        assert!(matches!(
            choose_reader(&names, "Virtual"),
            Err(TransportError::AmbiguousReader { .. })
        ));
        assert!(matches!(
            choose_reader(&names, "Yubikey"),
            Err(TransportError::UnknownReader { .. })
        ));
    }
}
