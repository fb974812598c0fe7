//! The APDU client: what pcsc-lite leaves to the application (61xx, 6Cxx, command chaining,
//! extended length), and typed valuecard commands on top.

use std::fmt;

use apdu_spec::apdu::{self, Apdu, Response};
use apdu_spec::atr::Atr;
use apdu_spec::commands::{self, ins};
use apdu_spec::exchange::messages::{
    AbortBody, AgreeAnswer, AgreeBody, CancelAnswer, CancelBody, CommitAnswer, CommitBody,
    ConfirmAnswer, ConfirmBody, FinishBody, MessageError, ResolveAnswer, ResolveBody, SessionInfo,
    StartAnswer, StartBody, VerdictBody, decode_sessions,
};
use apdu_spec::maker::{Attestation, Manufacture};
use apdu_spec::objects::{self, CardInfo, Personalization, tag};
use apdu_spec::units::{
    self, Acknowledgement, InFlight, LoadApply, ReceiptKind, SignedMessage, UnitValue,
};
use apdu_spec::{auth, status, tlv};

use crate::transport::{Transport, TransportError};

/// Longest command body a short APDU (or one chain link) carries.
const SHORT_MAX: usize = 255;
/// A card that keeps answering 61xx must not keep us looping for ever: no valuecard
/// response comes near this.
const MAX_RESPONSE_TOTAL: usize = 1 << 20;

/// A command the card refused.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct CardError {
    pub command: &'static str,
    pub sw: u16,
}

impl CardError {
    /// What the user can do about it, if anything.
    pub fn advice(&self) -> Option<&'static str> {
        let command = self.command;
        Some(match self.sw {
            0x6982 => "verify the PIN first with `valuecard pin verify`",
            0x6983 => {
                "the PIN is blocked after too many wrong tries; the card no longer accepts PIN commands"
            }
            0x6A82 => "this card has no valuecard application: is it the right card?",
            0x6581 => {
                "the card kept its previous state; try again, and replace the card if it keeps failing"
            }
            0x6D00 if command == commands::TEST_RESET.name => {
                "TEST RESET works only on the emulator started with --test-mode (valuecard-card --test-mode)"
            }
            0x6D00 | 0x6E00 => {
                "the card does not know this command: is it a valuecard card of this version?"
            }
            0x6985 if command == commands::GENERATE_KEY.name => {
                "the card already has its key (see `valuecard info`)"
            }
            0x6985
                if command == commands::VERIFY.name
                    || command == commands::CHANGE_REFERENCE_DATA.name =>
            {
                "the card has no PIN yet: personalise it with `valuecard card register` (or, for development, `valuecard card init`)"
            }
            0x6985 if command == commands::INTERNAL_AUTHENTICATE.name => {
                "the card is blank: it has no key to sign with yet (GENERATE KEY, e.g. through `valuecard card register`)"
            }
            // The card lists sessions in every state but a blank or keyed one.
            0x6985 if command == commands::LIST_SESSIONS.name => {
                "the card is not personalised yet, so it has no exchange sessions: `valuecard card register` personalises it"
            }
            0x6985 if command == commands::PERSONALIZE.name => {
                "PERSONALIZE works once, on a keyed card made by a card maker (it needs the scheme root key from manufacture); see `valuecard info`"
            }
            0x6985 if command == commands::START.name => {
                "the card cannot start this exchange: the value is not available on it, or the card is on the issuer's block list (see `valuecard info`)"
            }
            0x6985 => "the card's state does not allow this; see `valuecard info`",
            0x6300 if command == commands::PERSONALIZE.name => {
                "the card refused the personalisation: the issuer and arbiter keys must carry the signature of the scheme root the card was made for, and the certificate the issuer's; nothing was written"
            }
            0x6A80 if command == commands::PERSONALIZE.name => {
                "the card refused the personalisation: the certificate must be for this card's key, and the PIN must be 4 to 12 digits"
            }
            0x6A88 if command == commands::ATTEST.name => {
                "the card has no attestation key: it was not made by a card maker (an emulator: `valuecard-card provision`), so no center will register it"
            }
            0x6A80 if command == commands::AGREE.name || command == commands::CONFIRM.name => {
                "the card refused the other card's message: its certificate is not the issuer's, the card is on the issuer's block list, or the values are not the ones asked for"
            }
            0x6A80 if command == commands::CHANGE_REFERENCE_DATA.name => {
                "the new PIN must be 4 to 12 digits"
            }
            0x6A88 => "the card does not hold this object (yet); see `valuecard info`",
            0x6700 if command == commands::INTERNAL_AUTHENTICATE.name => {
                "the challenge must be 16 to 64 bytes long"
            }
            0x6700 | 0x6A86 | 0x6B00 | 0x6883 => {
                "the card and this terminal disagree on the command encoding: run with --trace and report it"
            }
            _ => return None,
        })
    }
}

impl fmt::Display for CardError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(
            f,
            "{} failed with SW {:04X} ({})",
            self.command,
            self.sw,
            status::describe(self.sw)
        )?;
        if let Some(advice) = self.advice() {
            write!(f, ": {advice}")?;
        }
        Ok(())
    }
}

impl std::error::Error for CardError {}

#[derive(Debug, thiserror::Error)]
pub enum ClientError {
    #[error(transparent)]
    Transport(#[from] TransportError),
    #[error(transparent)]
    Card(#[from] CardError),
    #[error("the card answered {0} byte(s), which is not even a status word")]
    ShortResponse(usize),
    #[error("the answer to {command} is not what the specification says: {detail}")]
    BadAnswer {
        command: &'static str,
        detail: String,
    },
    #[error("a command body of {0} bytes is more than an APDU can carry (65535)")]
    TooLong(usize),
    #[error(
        "the card keeps answering 61xx: its response passed 1 MiB, far more than any valuecard object"
    )]
    EndlessResponse,
}

pub type Result<T, E = ClientError> = std::result::Result<T, E>;

/// The PIN's state, as VERIFY and CHANGE REFERENCE DATA tell it.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum PinStatus {
    /// VERIFY: the PIN is verified in this session. CHANGE REFERENCE DATA: the current PIN
    /// was right and the new one is set.
    Verified,
    /// Not verified (or a wrong PIN); this many tries are left.
    NotVerified {
        tries_left: u8,
    },
    Blocked,
}

impl PinStatus {
    fn from_sw(command: &'static str, sw: u16) -> Result<Self> {
        match sw {
            0x9000 => Ok(PinStatus::Verified),
            0x63C0 | 0x6983 => Ok(PinStatus::Blocked),
            sw if sw & 0xFFF0 == 0x63C0 => Ok(PinStatus::NotVerified {
                tries_left: (sw & 0x0F) as u8,
            }),
            sw => Err(CardError { command, sw }.into()),
        }
    }
}

pub struct Client<T: Transport> {
    transport: T,
    extended_length: bool,
}

impl<T: Transport> Client<T> {
    pub fn new(transport: T) -> Self {
        // Only what the card advertises: a card that cannot parse extended APDUs may answer
        // anything to one, so an unreadable ATR means short APDUs and chaining.
        let extended_length = Atr::parse(&transport.atr())
            .map(|a| a.capabilities().extended_length)
            .unwrap_or(false);
        Client {
            transport,
            extended_length,
        }
    }

    pub fn transport(&mut self) -> &mut T {
        &mut self.transport
    }

    pub fn into_transport(self) -> T {
        self.transport
    }

    /// Sends one APDU as it is and returns the card's answer as it is.
    pub fn transmit_raw(&mut self, apdu: &[u8]) -> Result<Response> {
        let bytes = self.transport.transmit(apdu)?;
        Response::from_bytes(&bytes).ok_or(ClientError::ShortResponse(bytes.len()))
    }

    /// Sends a command, as one extended APDU or as a chain when the body is longer than a
    /// short APDU carries, and collects the whole response (6Cxx and 61xx resolved). `ne` is
    /// 0 (no Le) up to 65536.
    pub fn transmit(
        &mut self,
        cla: u8,
        ins: u8,
        p1: u8,
        p2: u8,
        data: &[u8],
        ne: usize,
    ) -> Result<Response> {
        if data.len() > 65535 {
            return Err(ClientError::TooLong(data.len()));
        }
        let ne = ne.min(65536);
        if self.extended_length || (data.len() <= SHORT_MAX && ne <= 256) {
            return self.transmit_apdu(&apdu::encode(cla, ins, p1, p2, data, ne, false));
        }
        // Without extended length a larger Ne comes through 61xx instead.
        let ne = ne.min(256);
        let mut links = data.chunks(SHORT_MAX).peekable();
        while let Some(link) = links.next() {
            if links.peek().is_none() {
                return self.transmit_apdu(&apdu::encode(cla, ins, p1, p2, link, ne, false));
            }
            let answer = self.transmit_raw(&apdu::encode(
                cla | apdu_spec::CLA_CHAIN,
                ins,
                p1,
                p2,
                link,
                0,
                false,
            ))?;
            if !answer.is_ok() {
                return Ok(answer);
            }
        }
        // Only an empty body gets here, and that never needs a chain.
        self.transmit_apdu(&apdu::encode(cla, ins, p1, p2, data, ne, false))
    }

    /// Sends the bytes of one APDU exactly as given, then resolves 6Cxx and 61xx.
    pub fn transmit_apdu(&mut self, command: &[u8]) -> Result<Response> {
        let first = self.transmit_raw(command)?;
        let first = self.retry_wrong_le(command, first)?;
        self.collect(first)
    }

    /// 6Cxx: the card wants the same command again with Le = xx. Retried once only, so that
    /// a confused card cannot make us loop.
    fn retry_wrong_le(&mut self, command: &[u8], answer: Response) -> Result<Response> {
        if answer.sw1() != 0x6C {
            return Ok(answer);
        }
        let Ok(parsed) = Apdu::parse(command) else {
            return Ok(answer);
        };
        let ne = short_length(answer.sw2());
        let again = apdu::encode(
            parsed.cla,
            parsed.ins,
            parsed.p1,
            parsed.p2,
            parsed.data,
            ne,
            parsed.case.is_extended(),
        );
        self.transmit_raw(&again)
    }

    /// 61xx: GET RESPONSE until the card has nothing more.
    fn collect(&mut self, mut answer: Response) -> Result<Response> {
        let mut data = std::mem::take(&mut answer.data);
        while answer.sw1() == 0x61 {
            if data.len() > MAX_RESPONSE_TOTAL {
                return Err(ClientError::EndlessResponse);
            }
            let ne = short_length(answer.sw2());
            let get_response =
                apdu::encode(apdu_spec::CLA_ISO, ins::GET_RESPONSE, 0, 0, &[], ne, false);
            answer = self.transmit_raw(&get_response)?;
            answer = self.retry_wrong_le(&get_response, answer)?;
            data.append(&mut answer.data);
        }
        answer.data = data;
        Ok(answer)
    }

    /// Runs a command and insists on 9000.
    fn command(
        &mut self,
        def: &commands::CommandDef,
        p1: u8,
        p2: u8,
        data: &[u8],
        ne: usize,
    ) -> Result<Vec<u8>> {
        let answer = self.transmit(def.cla, def.ins, p1, p2, data, ne)?;
        if answer.is_ok() {
            Ok(answer.data)
        } else {
            Err(CardError {
                command: def.name,
                sw: answer.sw,
            }
            .into())
        }
    }

    /// SELECT the valuecard application; returns the FCI.
    pub fn select(&mut self) -> Result<Vec<u8>> {
        self.command(
            &commands::SELECT,
            commands::SELECT_BY_NAME,
            commands::SELECT_RETURN_FCI,
            apdu_spec::AID,
            256,
        )
    }

    /// GET DATA of one object (or 006E for all); returns the answer, TLV and all.
    pub fn get_data(&mut self, object: u16) -> Result<Vec<u8>> {
        let [p1, p2] = object.to_be_bytes();
        self.command(&commands::GET_DATA, p1, p2, &[], 65536)
    }

    /// Everything the card tells about itself.
    pub fn info(&mut self) -> Result<CardInfo> {
        let answer = self.get_data(tag::ALL)?;
        CardInfo::decode(&answer).map_err(|e| bad_answer(commands::GET_DATA.name, e))
    }

    /// The card's public key, compressed SEC1.
    pub fn public_key(&mut self) -> Result<[u8; 33]> {
        let answer = self.get_data(tag::PUBLIC_KEY)?;
        public_key_from(commands::GET_DATA.name, &answer)
    }

    /// VERIFY the PIN.
    pub fn verify_pin(&mut self, pin: &[u8]) -> Result<PinStatus> {
        let answer = self.transmit(
            commands::VERIFY.cla,
            commands::VERIFY.ins,
            0,
            apdu_spec::PIN_REFERENCE,
            pin,
            0,
        )?;
        PinStatus::from_sw(commands::VERIFY.name, answer.sw)
    }

    /// The PIN's state without using a try (VERIFY with an empty body).
    pub fn pin_tries(&mut self) -> Result<PinStatus> {
        self.verify_pin(&[])
    }

    /// CHANGE REFERENCE DATA: replace the PIN, given the current one.
    pub fn change_pin(&mut self, old: &[u8], new: &[u8]) -> Result<PinStatus> {
        let def = commands::CHANGE_REFERENCE_DATA;
        let answer = self.transmit(
            def.cla,
            def.ins,
            0,
            apdu_spec::PIN_REFERENCE,
            &objects::encode_pin_change(old, new),
            0,
        )?;
        PinStatus::from_sw(def.name, answer.sw)
    }

    /// INTERNAL AUTHENTICATE: the card signs `challenge` (16 to 64 bytes, fresh from the
    /// server) with its key. Returns `r || s`, which `apdu_spec::auth::verify` checks against
    /// the card's public key. Works on a keyed or active card, without the PIN.
    pub fn internal_authenticate(&mut self, challenge: &[u8]) -> Result<[u8; auth::SIGNATURE_LEN]> {
        let def = commands::INTERNAL_AUTHENTICATE;
        // Le 00: the decided wire format, `00 88 00 00 Lc <challenge> 00`.
        let answer = self.command(&def, 0, 0, challenge, 256)?;
        let len = answer.len();
        answer.try_into().map_err(|_| {
            bad_answer(
                def.name,
                format!("{len} bytes, not a {}-byte signature", auth::SIGNATURE_LEN),
            )
        })
    }

    /// ATTEST: the card vouches, with the attestation key it got at manufacture, that its
    /// card key was made inside it, over `challenge` (16 to 64 bytes, fresh from the server).
    /// Returns the answer's bytes exactly as the card gave them (the center takes them so),
    /// after checking that they decode.
    pub fn attest(&mut self, challenge: &[u8]) -> Result<Vec<u8>> {
        let def = commands::ATTEST;
        let answer = self.command(&def, 0, 0, challenge, 65536)?;
        Attestation::decode(&answer).map_err(|e| bad_answer(def.name, e))?;
        Ok(answer)
    }

    /// GENERATE KEY on a blank card; returns the new public key.
    pub fn generate_key(&mut self) -> Result<[u8; 33]> {
        let answer = self.command(&commands::GENERATE_KEY, 0, 0, &[], 256)?;
        public_key_from(commands::GENERATE_KEY.name, &answer)
    }

    /// PERSONALIZE a keyed card.
    pub fn personalize(&mut self, personalization: &Personalization) -> Result<()> {
        self.command(&commands::PERSONALIZE, 0, 0, &personalization.encode(), 0)
            .map(drop)
    }

    /// GET DATA 00EB: the pending load and the receipts the center has not acknowledged.
    pub fn in_flight(&mut self) -> Result<InFlight> {
        let answer = self.get_data(units::tag::IN_FLIGHT)?;
        InFlight::decode(&answer).map_err(|e| bad_answer(commands::GET_DATA.name, e))
    }

    /// LOAD REQUEST: the card signs and keeps a request for `value`; returns it, signed.
    pub fn load_request(&mut self, value: &UnitValue) -> Result<SignedMessage> {
        let def = commands::LOAD_REQUEST;
        let answer = self.command(&def, 0, 0, &value.encode(), 256)?;
        SignedMessage::decode(&answer, units::tag::SIGNED_LOAD).map_err(|e| bad_answer(def.name, e))
    }

    /// LOAD APPLY: the issuer's authorisation of the pending request.
    pub fn load_apply(&mut self, apply: &LoadApply) -> Result<()> {
        self.command(&commands::LOAD_APPLY, 0, 0, &apply.encode(), 0)
            .map(drop)
    }

    /// LOAD CANCEL: the card gives up its pending request; returns the signed cancellation.
    pub fn load_cancel(&mut self) -> Result<SignedMessage> {
        let def = commands::LOAD_CANCEL;
        let answer = self.command(&def, 0, 0, &[], 256)?;
        SignedMessage::decode(&answer, units::tag::SIGNED_CANCEL)
            .map_err(|e| bad_answer(def.name, e))
    }

    /// UNLOAD (PIN verified first): the card debits `value`; returns the signed receipt.
    pub fn unload(&mut self, value: &UnitValue) -> Result<SignedMessage> {
        let def = commands::UNLOAD;
        let answer = self.command(&def, 0, 0, &value.encode(), 256)?;
        SignedMessage::decode(&answer, units::tag::SIGNED_UNLOAD)
            .map_err(|e| bad_answer(def.name, e))
    }

    /// UNLOAD ACK: the issuer's acknowledgement of a receipt of `kind`.
    pub fn unload_ack(&mut self, kind: ReceiptKind, ack: &Acknowledgement) -> Result<()> {
        self.command(&commands::UNLOAD_ACK, kind.ack_p1(), 0, &ack.encode(), 0)
            .map(drop)
    }

    /// A command whose answer is one of the exchange's messages.
    fn exchange_command<A>(
        &mut self,
        def: &commands::CommandDef,
        body: &[u8],
        decode: impl Fn(&[u8]) -> std::result::Result<A, MessageError>,
    ) -> Result<A> {
        let answer = self.command(def, 0, 0, body, 65536)?;
        decode(&answer).map_err(|e| bad_answer(def.name, e))
    }

    /// START (PIN verified first): the initiator reserves V1 and opens a session.
    pub fn start(&mut self, body: &StartBody) -> Result<StartAnswer> {
        self.exchange_command(&commands::START, &body.encode(), StartAnswer::decode)
    }

    /// AGREE (PIN verified first): the responder checks the offer and escrows V2.
    pub fn agree(&mut self, body: &AgreeBody) -> Result<AgreeAnswer> {
        self.exchange_command(&commands::AGREE, &body.encode(), AgreeAnswer::decode)
    }

    /// CONFIRM: the initiator checks the agreement and escrows V1 for good.
    pub fn confirm(&mut self, body: &ConfirmBody) -> Result<ConfirmAnswer> {
        self.exchange_command(&commands::CONFIRM, &body.encode(), ConfirmAnswer::decode)
    }

    /// COMMIT: the responder stores V1 and reveals r2.
    pub fn commit(&mut self, body: &CommitBody) -> Result<CommitAnswer> {
        self.exchange_command(&commands::COMMIT, &body.encode(), CommitAnswer::decode)
    }

    /// FINISH: the initiator stores V2.
    pub fn finish(&mut self, body: &FinishBody) -> Result<()> {
        self.command(&commands::FINISH, 0, 0, &body.encode(), 0)
            .map(drop)
    }

    /// ABORT: the initiator, still in START, releases V1.
    pub fn abort(&mut self, body: &AbortBody) -> Result<()> {
        self.command(&commands::ABORT, 0, 0, &body.encode(), 0)
            .map(drop)
    }

    /// CANCEL: the responder gives up committing and answers a cancel request.
    pub fn cancel(&mut self, body: &CancelBody) -> Result<CancelAnswer> {
        self.exchange_command(&commands::CANCEL, &body.encode(), CancelAnswer::decode)
    }

    /// RESOLVE: the initiator's resolve request for the arbiter.
    pub fn resolve(&mut self, body: &ResolveBody) -> Result<ResolveAnswer> {
        self.exchange_command(&commands::RESOLVE, &body.encode(), ResolveAnswer::decode)
    }

    /// APPLY VERDICT: the arbiter's decision ends the session on this card.
    pub fn apply_verdict(&mut self, body: &VerdictBody) -> Result<()> {
        self.command(&commands::APPLY_VERDICT, 0, 0, &body.encode(), 0)
            .map(drop)
    }

    /// LIST SESSIONS: the card's open exchange sessions.
    pub fn sessions(&mut self) -> Result<Vec<SessionInfo>> {
        self.exchange_command(&commands::LIST_SESSIONS, &[], decode_sessions)
    }

    /// TEST RESET: erase an emulator in test mode back to blank, keeping what manufacture
    /// gave it, or installing `manufacture` instead.
    pub fn test_reset(&mut self, manufacture: Option<&Manufacture>) -> Result<()> {
        let body = manufacture.map(Manufacture::encode).unwrap_or_default();
        self.command(&commands::TEST_RESET, 0, 0, &body, 0)
            .map(drop)
    }
}

/// The length in SW2 of 61xx and 6Cxx: 00 stands for 256.
fn short_length(sw2: u8) -> usize {
    if sw2 == 0 { 256 } else { usize::from(sw2) }
}

fn bad_answer(command: &'static str, detail: impl fmt::Display) -> ClientError {
    ClientError::BadAnswer {
        command,
        detail: detail.to_string(),
    }
}

fn public_key_from(command: &'static str, answer: &[u8]) -> Result<[u8; 33]> {
    let objects = tlv::parse_all(answer).map_err(|e| bad_answer(command, e))?;
    let key: [u8; 33] =
        tlv::require_array(&objects, tag::PUBLIC_KEY).map_err(|e| bad_answer(command, e))?;
    if apdu_spec::cert::decode_public_key(&key).is_none() {
        return Err(bad_answer(command, "the public key is not a P-256 point"));
    }
    Ok(key)
}

#[cfg(test)]
mod tests;
