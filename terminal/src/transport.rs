//! How APDUs reach a card: the [`Transport`] trait, the in-process emulator, and a tracing
//! wrapper. A transport moves bytes and nothing else: 61xx, 6Cxx, chaining and extended
//! length belong to [`crate::client::Client`], so that the conformance runner can see the
//! card's raw answers.

use std::path::{Path, PathBuf};
use std::time::Instant;

use apdu_spec::maker::Manufacture;
use valuecard_card::storage::FileStorage;
use valuecard_card::{Card, Options};

/// Why bytes did not reach the card or its answer did not come back.
#[derive(Debug, thiserror::Error)]
pub enum TransportError {
    #[error(
        "cannot reach the PC/SC service (pcscd): {0}. Start pcscd, or use --card-state FILE for an emulated card"
    )]
    NoService(pcsc::Error),
    #[error(
        "no smartcard reader is connected. Plug one in, or use --card-state FILE for an emulated card"
    )]
    NoReaders,
    #[error(
        "no reader matches {selector:?}. Readers: {available}. Pass a name, part of a name, or an index from `valuecard readers`"
    )]
    UnknownReader { selector: String, available: String },
    #[error(
        "{selector:?} matches several readers: {matches}. Pass more of the name, or an index from `valuecard readers`"
    )]
    AmbiguousReader { selector: String, matches: String },
    #[error(
        "reader index {index} does not exist: there are {count} readers (see `valuecard readers`)"
    )]
    ReaderIndex { index: usize, count: usize },
    #[error("no card in {reader}. Insert one (--wait SECONDS waits for it)")]
    NoCard { reader: String },
    #[error("the card was removed from {reader}")]
    CardRemoved { reader: String },
    #[error(
        "another program reset the card in {reader}, so the card forgot its session (selection, PIN). Run the command again"
    )]
    CardReset { reader: String },
    #[error("{reader} is in exclusive use by another program. Close it and try again")]
    Busy { reader: String },
    #[error("the card in {reader} does not answer (mute card, or a card the reader cannot power)")]
    Mute { reader: String },
    #[error("PC/SC error while {action} on {reader}: {source}")]
    Pcsc {
        reader: String,
        action: &'static str,
        source: pcsc::Error,
    },
    #[error("cannot use the card state file {path}: {message}")]
    Storage { path: PathBuf, message: String },
}

/// Logs one APDU exchange at DEBUG (RUST_LOG=debug): the command's name, header and lengths,
/// the status word and the time taken. Never the data: VERIFY, CHANGE REFERENCE DATA and
/// PERSONALIZE carry the PIN. `started` is `None` when DEBUG is off, so that a disabled log
/// costs no clock reading.
pub fn log_apdu(
    card: &str,
    apdu: &[u8],
    answer: &Result<Vec<u8>, TransportError>,
    started: Option<Instant>,
) {
    let Some(started) = started else {
        return;
    };
    let elapsed_us = started.elapsed().as_micros() as u64;
    let [cla, ins, p1, p2] = apdu.first_chunk::<4>().copied().unwrap_or_default();
    let name = apdu_spec::commands::lookup(cla, ins).map_or("?", |c| c.name);
    let lc = apdu_spec::apdu::Apdu::parse(apdu).map_or(0, |a| a.data.len());
    let ins = format!("{ins:02X}");
    let header = format!("{cla:02X} {ins} {p1:02X} {p2:02X}");
    match answer {
        Ok(bytes) => {
            let sw = bytes
                .last_chunk::<2>()
                .map_or("none".to_string(), hex::encode_upper);
            let data = bytes.len().saturating_sub(2);
            tracing::debug!(card, command = name, %header, lc, sw, response_len = data, elapsed_us, "APDU");
        }
        Err(e) => {
            tracing::debug!(card, command = name, %header, lc, error = %e, elapsed_us, "APDU failed");
        }
    }
}

/// When to start the clock for [`log_apdu`]: only when the APDU log is on.
pub fn apdu_log_start() -> Option<Instant> {
    tracing::enabled!(tracing::Level::DEBUG).then(Instant::now)
}

/// A connection to one card.
pub trait Transport {
    /// Sends one command APDU exactly as given and returns the card's answer, status word
    /// included.
    fn transmit(&mut self, apdu: &[u8]) -> Result<Vec<u8>, TransportError>;
    /// Warm reset: the card keeps its persistent state and forgets its session.
    fn reset(&mut self) -> Result<(), TransportError>;
    /// Power the card off and on again.
    fn power_cycle(&mut self) -> Result<(), TransportError>;
    /// The card's answer to reset.
    fn atr(&self) -> Vec<u8>;
    /// A name for people: the reader, or which emulator.
    fn name(&self) -> String;
}

impl<T: Transport + ?Sized> Transport for Box<T> {
    fn transmit(&mut self, apdu: &[u8]) -> Result<Vec<u8>, TransportError> {
        (**self).transmit(apdu)
    }
    fn reset(&mut self) -> Result<(), TransportError> {
        (**self).reset()
    }
    fn power_cycle(&mut self) -> Result<(), TransportError> {
        (**self).power_cycle()
    }
    fn atr(&self) -> Vec<u8> {
        (**self).atr()
    }
    fn name(&self) -> String {
        (**self).name()
    }
}

/// The emulated card in this process: no reader, no pcscd.
pub struct InProcess {
    card: Card,
    name: String,
}

impl InProcess {
    pub fn new(card: Card, name: impl Into<String>) -> Self {
        InProcess {
            card,
            name: name.into(),
        }
    }

    /// A fresh blank card that lives in memory only, never manufactured: it can make a key
    /// but can neither attest it nor be personalised (see [`InProcess::provisioned`]).
    pub fn in_memory(test_mode: bool) -> Self {
        Self::new(
            Card::in_memory(options(test_mode)),
            "in-process card (in memory)",
        )
    }

    /// A fresh blank card that lives in memory only, as its maker left it: `manufacture`
    /// gives it its attestation key, the maker's certificate and the scheme root's key.
    pub fn provisioned(manufacture: &Manufacture, test_mode: bool) -> Result<Self, TransportError> {
        let card = Card::provisioned(manufacture, options(test_mode)).map_err(|e| {
            TransportError::Storage {
                path: "(memory)".into(),
                message: e.to_string(),
            }
        })?;
        Ok(Self::new(card, "in-process card (in memory)"))
    }

    /// The card whose persistent state lives in `path` (a blank one if the file is new).
    pub fn open(path: &Path, test_mode: bool) -> Result<Self, TransportError> {
        let storage_error = |message: String| TransportError::Storage {
            path: path.to_path_buf(),
            message,
        };
        let storage = FileStorage::open(path).map_err(|e| storage_error(e.to_string()))?;
        let card = Card::new(Box::new(storage), options(test_mode))
            .map_err(|e| storage_error(e.to_string()))?;
        Ok(Self::new(
            card,
            format!("in-process card ({})", path.display()),
        ))
    }

    pub fn card(&mut self) -> &mut Card {
        &mut self.card
    }
}

fn options(test_mode: bool) -> Options {
    Options {
        test_mode,
        ..Options::default()
    }
}

impl Transport for InProcess {
    fn transmit(&mut self, apdu: &[u8]) -> Result<Vec<u8>, TransportError> {
        let started = apdu_log_start();
        let answer = Ok(self.card.transmit(apdu));
        log_apdu(&self.name, apdu, &answer, started);
        answer
    }
    fn reset(&mut self) -> Result<(), TransportError> {
        self.card.reset();
        Ok(())
    }
    fn power_cycle(&mut self) -> Result<(), TransportError> {
        self.card.power_off();
        Ok(())
    }
    fn atr(&self) -> Vec<u8> {
        apdu_spec::ATR.to_vec()
    }
    fn name(&self) -> String {
        self.name.clone()
    }
}

/// Prints every APDU in hex to stderr (`>>` to the card, `<<` from it) and passes it on.
/// It wraps the transport rather than living in the client so that raw and conformance
/// traffic, which bypass the client, show up too.
pub struct Traced<T: Transport> {
    inner: T,
}

impl<T: Transport> Traced<T> {
    pub fn new(inner: T) -> Self {
        Traced { inner }
    }

    pub fn into_inner(self) -> T {
        self.inner
    }
}

/// A response as `DATA SW`, or `SW` alone.
pub fn format_response(bytes: &[u8]) -> String {
    match bytes.split_last_chunk::<2>() {
        Some(([], sw)) => hex::encode_upper(sw),
        Some((data, sw)) => format!("{} {}", hex::encode_upper(data), hex::encode_upper(sw)),
        None => format!("{} (no status word)", hex::encode_upper(bytes)),
    }
}

impl<T: Transport> Transport for Traced<T> {
    fn transmit(&mut self, apdu: &[u8]) -> Result<Vec<u8>, TransportError> {
        eprintln!(">> {}", hex::encode_upper(apdu));
        let answer = self.inner.transmit(apdu);
        match &answer {
            Ok(bytes) => eprintln!("<< {}", format_response(bytes)),
            Err(e) => eprintln!("<< (failed: {e})"),
        }
        answer
    }
    fn reset(&mut self) -> Result<(), TransportError> {
        eprintln!("-- warm reset");
        self.inner.reset()
    }
    fn power_cycle(&mut self) -> Result<(), TransportError> {
        eprintln!("-- power cycle");
        self.inner.power_cycle()
    }
    fn atr(&self) -> Vec<u8> {
        self.inner.atr()
    }
    fn name(&self) -> String {
        self.inner.name()
    }
}
