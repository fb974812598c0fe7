//! LOAD REQUEST, LOAD APPLY, LOAD CANCEL, UNLOAD and UNLOAD ACK on the in-process card: what
//! each does, what each refuses, and that every refusal leaves the persistent state byte for
//! byte as it was.

mod common;

use apdu_spec::blocklist::{BlockEntry, BlockList};
use apdu_spec::commands::ins;
use apdu_spec::objects::{AssetBalance, CardInfo, Counters, Values, tag as obj};
use apdu_spec::units::{
    self, Acknowledgement, InFlight, LoadApply, MAX_ASSETS, MAX_RECEIPTS, MAX_TICKETS, ReceiptKind,
    SignedMessage, UnitMessage, UnitValue, domains, tag,
};
use apdu_spec::{CLA_ISO, CLA_PROPRIETARY, tlv};
use common::{
    Activated, PIN, activate, block_list, bytes, card_from, card_on, issuer, ok, options,
    other_issuer, transmit,
};
use p256::ecdsa::VerifyingKey;
use valuecard_card::Card;
use valuecard_card::applet::decode;
use valuecard_card::state::Persistent;
use valuecard_card::storage::{FileStorage, MemoryStorage, Storage};

fn jpy(amount: u64) -> UnitValue {
    asset("JPY", amount)
}

fn asset(code: &str, amount: u64) -> UnitValue {
    UnitValue::Asset {
        code: code.into(),
        amount,
    }
}

fn ticket(code: &str, serial: &[u8]) -> UnitValue {
    UnitValue::Ticket {
        code: code.into(),
        serial: serial.to_vec(),
    }
}

/// A command of ours with Le = 256, in the short form.
fn command(ins: u8, p1: u8, p2: u8, data: &[u8]) -> Vec<u8> {
    apdu_spec::apdu::encode(CLA_PROPRIETARY, ins, p1, p2, data, 256, false)
}

fn load_request(value: &UnitValue) -> Vec<u8> {
    command(ins::LOAD_REQUEST, 0, 0, &value.encode())
}

/// The block list the center sends with the loads of these tests: version 1, empty.
const LIST_VERSION: u32 = 1;

fn list() -> BlockList {
    block_list(LIST_VERSION, &[])
}

fn load_apply(authorisation: [u8; 64], ticket_signature: Option<[u8; 64]>) -> Vec<u8> {
    load_apply_with(authorisation, ticket_signature, list())
}

fn load_apply_with(
    authorisation: [u8; 64],
    ticket_signature: Option<[u8; 64]>,
    block_list: BlockList,
) -> Vec<u8> {
    let body = LoadApply {
        authorisation,
        ticket_signature,
        block_list,
    }
    .encode();
    command(ins::LOAD_APPLY, 0, 0, &body)
}

fn load_cancel() -> Vec<u8> {
    command(ins::LOAD_CANCEL, 0, 0, &[])
}

fn unload(value: &UnitValue) -> Vec<u8> {
    command(ins::UNLOAD, 0, 0, &value.encode())
}

fn unload_ack(kind: ReceiptKind, counter: u32, signature: [u8; 64]) -> Vec<u8> {
    let body = Acknowledgement { counter, signature }.encode();
    command(ins::UNLOAD_ACK, kind.ack_p1(), 0, &body)
}

/// The issuer's authorisation of a load request, with [`list`] beside it.
fn authorise(request: &SignedMessage) -> [u8; 64] {
    authorise_with(request, LIST_VERSION)
}

/// The issuer's authorisation of a load request, with the list of `version` beside it.
fn authorise_with(request: &SignedMessage, version: u32) -> [u8; 64] {
    units::sign(
        &issuer(),
        domains::LOAD_AUTH,
        &units::authorised(&request.message, version),
    )
}

/// The issuer's acknowledgement of a receipt.
fn acknowledge(kind: ReceiptKind, receipt: &SignedMessage) -> [u8; 64] {
    units::sign(&issuer(), kind.ack_domain(), &receipt.message)
}

/// An active card, personalised for [`issuer`] with [`PIN`].
struct Tester {
    card: Card,
    key: VerifyingKey,
    id: [u8; 32],
}

impl Tester {
    fn new(seed: u64) -> Self {
        Self::on(Box::new(MemoryStorage::default()), seed)
    }

    fn on(storage: Box<dyn Storage + Send>, seed: u64) -> Self {
        let mut card = card_on(storage, seed);
        let Activated { key, id, .. } = activate(&mut card, &other_issuer());
        Tester { card, key, id }
    }

    /// The same card, restarted from its state edited by `edit` (the PIN is not verified
    /// any more, as after a power cycle).
    fn edited(&self, edit: impl FnOnce(&mut Persistent)) -> Self {
        let mut state = self.state();
        edit(&mut state);
        Tester {
            card: card_from(&state, 99).expect("the edited state loads"),
            key: self.key,
            id: self.id,
        }
    }

    fn state(&self) -> Persistent {
        self.card.applet().persistent().clone()
    }

    fn send(&mut self, apdu: &[u8]) -> (Vec<u8>, u16) {
        transmit(&mut self.card, apdu)
    }

    fn ok(&mut self, apdu: &[u8]) -> Vec<u8> {
        ok(&mut self.card, apdu)
    }

    /// Sends a command that must be refused with `sw`, with no data, and leave the
    /// persistent state exactly as it was.
    #[track_caller]
    fn refused(&mut self, apdu: &[u8], sw: u16, why: &str) {
        let before = self.state();
        let before_bytes = bytes(&before);
        let (data, got) = self.send(apdu);
        assert_eq!(got, sw, "{why}: {:04X} instead of {sw:04X}", got);
        assert!(data.is_empty(), "{why}: an error carries no data");
        assert_eq!(self.state(), before, "{why}: the state changed");
        assert_eq!(
            bytes(&self.state()),
            before_bytes,
            "{why}: the bytes changed"
        );
    }

    fn request(&mut self, value: &UnitValue) -> SignedMessage {
        let answer = self.ok(&load_request(value));
        SignedMessage::decode(&answer, tag::SIGNED_LOAD).expect("an EC answer")
    }

    /// Requests and applies a value.
    fn load(&mut self, value: &UnitValue) -> SignedMessage {
        let request = self.request(value);
        let ticket_signature = match value {
            UnitValue::Ticket { code, serial } => {
                Some(units::sign_ticket(&issuer(), code, serial, &self.id))
            }
            UnitValue::Asset { .. } => None,
        };
        let answer = self.ok(&load_apply(authorise(&request), ticket_signature));
        assert!(answer.is_empty());
        request
    }

    fn cancel(&mut self) -> SignedMessage {
        let answer = self.ok(&load_cancel());
        SignedMessage::decode(&answer, tag::SIGNED_CANCEL).expect("an ED answer")
    }

    fn verify_pin(&mut self) {
        self.ok(&apdu_spec::apdu::encode(
            CLA_ISO,
            ins::VERIFY,
            0,
            apdu_spec::PIN_REFERENCE,
            PIN,
            0,
            false,
        ));
    }

    /// Puts a value in escrow: START of an exchange that gives it and wants nothing.
    fn escrow(&mut self, value: &UnitValue) {
        self.verify_pin();
        let body = apdu_spec::exchange::messages::StartBody {
            v1: Some(value.clone()),
            wanted_v2: None,
        };
        self.ok(&command(ins::START, 0, 0, &body.encode()));
    }

    fn unload(&mut self, value: &UnitValue) -> SignedMessage {
        let answer = self.ok(&unload(value));
        SignedMessage::decode(&answer, tag::SIGNED_UNLOAD).expect("an EE answer")
    }

    /// GET DATA, with an extended Le so that the whole object comes at once.
    fn get(&mut self, object: u16) -> Vec<u8> {
        let [p1, p2] = object.to_be_bytes();
        self.ok(&apdu_spec::apdu::encode(
            CLA_ISO,
            ins::GET_DATA,
            p1,
            p2,
            &[],
            65536,
            true,
        ))
    }

    fn values(&mut self) -> Values {
        let bytes = self.get(obj::VALUES);
        let top = tlv::parse_all(&bytes).expect("TLV");
        Values::from_children(tlv::find_constructed(&top, obj::VALUES).expect("E6"))
            .expect("a value store")
    }

    fn counters(&mut self) -> Counters {
        let bytes = self.get(obj::COUNTERS);
        let top = tlv::parse_all(&bytes).expect("TLV");
        Counters::from_children(tlv::find_constructed(&top, obj::COUNTERS).expect("E5"))
            .expect("counters")
    }

    fn in_flight(&mut self) -> InFlight {
        InFlight::decode(&self.get(units::tag::IN_FLIGHT)).expect("an EB answer")
    }
}

fn balance(code: &str, available: u64) -> AssetBalance {
    AssetBalance {
        code: code.into(),
        available,
        escrowed: 0,
    }
}

// ---- what the commands do -------------------------------------------------------------

#[test]
fn load_an_asset_and_read_it_back() {
    let mut t = Tester::new(1);
    let request = t.request(&jpy(100));
    assert!(
        units::verify(
            &t.key,
            domains::LOAD_REQUEST,
            &request.message,
            &request.signature
        ),
        "signed by the card key in the load-request domain"
    );
    assert_eq!(
        UnitMessage::decode_load(&request.message),
        Ok(UnitMessage {
            card_id: t.id,
            counter: 0,
            value: jpy(100),
        })
    );
    assert_eq!(t.counters().load, 1, "the counter moves at the request");
    assert_eq!(
        t.in_flight(),
        InFlight {
            pending_load: Some(request.clone()),
            receipts: vec![],
        }
    );
    assert_eq!(
        t.values(),
        Values::default(),
        "nothing before the authorisation"
    );

    assert!(t.ok(&load_apply(authorise(&request), None)).is_empty());
    assert_eq!(t.values().assets, vec![balance("JPY", 100)]);
    assert!(t.in_flight().is_empty());

    let second = t.load(&jpy(50));
    assert_eq!(
        UnitMessage::decode_load(&second.message).map(|m| m.counter),
        Ok(1)
    );
    t.load(&asset("EUR", 7));
    assert_eq!(
        t.values().assets,
        vec![balance("JPY", 150), balance("EUR", 7)]
    );
    assert_eq!(t.counters().load, 3);
    assert_eq!(t.counters().unload, 0);
}

#[test]
fn the_largest_amount_loads_and_the_request_works_in_every_encoding() {
    let mut t = Tester::new(2);
    // Extended length.
    let body = jpy(u64::MAX).encode();
    let answer = t.ok(&apdu_spec::apdu::encode(
        CLA_PROPRIETARY,
        ins::LOAD_REQUEST,
        0,
        0,
        &body,
        65536,
        true,
    ));
    let request = SignedMessage::decode(&answer, tag::SIGNED_LOAD).expect("EC");
    // A chained LOAD APPLY.
    let apply = LoadApply {
        authorisation: authorise(&request),
        ticket_signature: None,
        block_list: list(),
    }
    .encode();
    let (head, tail) = apply.split_at(30);
    let (data, sw) = t.send(&apdu_spec::apdu::encode(
        0x90,
        ins::LOAD_APPLY,
        0,
        0,
        head,
        0,
        false,
    ));
    assert_eq!((data.len(), sw), (0, 0x9000));
    t.ok(&apdu_spec::apdu::encode(
        CLA_PROPRIETARY,
        ins::LOAD_APPLY,
        0,
        0,
        tail,
        0,
        false,
    ));
    assert_eq!(t.values().assets, vec![balance("JPY", u64::MAX)]);
    // Case 3: the answer waits behind 61xx.
    let (data, sw) = t.send(&apdu_spec::apdu::encode(
        CLA_PROPRIETARY,
        ins::LOAD_REQUEST,
        0,
        0,
        &asset("EUR", 1).encode(),
        0,
        false,
    ));
    assert!(data.is_empty());
    assert_eq!(sw >> 8, 0x61);
    let rest = t.ok(&[0x00, 0xC0, 0x00, 0x00, (sw & 0xFF) as u8]);
    let request = SignedMessage::decode(&rest, tag::SIGNED_LOAD).expect("EC");
    assert_eq!(t.in_flight().pending_load, Some(request));
}

#[test]
fn load_a_ticket() {
    let mut t = Tester::new(3);
    let value = ticket("CONCERT", &[1, 2, 3]);
    let request = t.request(&value);
    assert_eq!(
        UnitMessage::decode_load(&request.message).map(|m| m.value),
        Ok(value.clone())
    );
    let signature = units::sign_ticket(&issuer(), "CONCERT", &[1, 2, 3], &t.id);
    t.ok(&load_apply(authorise(&request), Some(signature)));
    let values = t.values();
    assert_eq!(values.assets, vec![]);
    assert_eq!(values.tickets.len(), 1);
    let held = &values.tickets[0];
    assert_eq!(
        (held.asset.as_str(), held.serial.as_slice(), held.escrowed),
        ("CONCERT", &[1u8, 2, 3][..], false)
    );
    assert!(units::verify_ticket(
        issuer().verifying_key(),
        "CONCERT",
        &[1, 2, 3],
        &t.id,
        &held.issuer_signature
    ));
    // Another serial of the same code is another ticket.
    t.load(&ticket("CONCERT", &[1, 2, 4]));
    assert_eq!(t.values().tickets.len(), 2);
}

#[test]
fn cancel_a_load_then_acknowledge_the_cancellation() {
    let mut t = Tester::new(4);
    let request = t.request(&jpy(100));
    let cancellation = t.cancel();
    assert_eq!(
        cancellation.message, request.message,
        "the request's own bytes"
    );
    assert!(units::verify(
        &t.key,
        domains::LOAD_CANCEL,
        &cancellation.message,
        &cancellation.signature
    ));
    let in_flight = t.in_flight();
    assert_eq!(in_flight.pending_load, None);
    assert_eq!(in_flight.receipts.len(), 1);
    assert_eq!(in_flight.receipts[0].kind, ReceiptKind::LoadCancel);
    assert_eq!(in_flight.receipts[0].counter, 0);
    assert_eq!(in_flight.receipts[0].signed, cancellation);

    // The center's authorisation arrives late: the card never applies a cancelled request.
    t.refused(
        &load_apply(authorise(&request), None),
        0x6985,
        "an authorisation after the cancellation",
    );
    // A new request takes the next number.
    let next = t.request(&jpy(100));
    assert_eq!(
        UnitMessage::decode_load(&next.message).map(|m| m.counter),
        Ok(1)
    );
    t.refused(
        &load_apply(authorise(&request), None),
        0x6300,
        "the cancelled request's authorisation for the new request",
    );

    t.ok(&unload_ack(
        ReceiptKind::LoadCancel,
        0,
        acknowledge(ReceiptKind::LoadCancel, &cancellation),
    ));
    assert_eq!(
        t.in_flight(),
        InFlight {
            pending_load: Some(next),
            receipts: vec![],
        }
    );
    assert_eq!(t.values(), Values::default());
}

#[test]
fn unload_then_acknowledge_the_receipt() {
    let mut t = Tester::new(5);
    t.load(&jpy(100));
    t.load(&asset("EUR", 5));
    t.verify_pin();
    let receipt = t.unload(&jpy(30));
    assert!(units::verify(
        &t.key,
        domains::UNLOAD,
        &receipt.message,
        &receipt.signature
    ));
    assert_eq!(
        UnitMessage::decode_unload(&receipt.message),
        Ok(UnitMessage {
            card_id: t.id,
            counter: 0,
            value: jpy(30),
        })
    );
    assert_eq!(
        t.values().assets,
        vec![balance("JPY", 70), balance("EUR", 5)]
    );
    assert_eq!(t.counters().unload, 1);
    assert_eq!(t.counters().load, 2, "an unload leaves the load counter");
    let in_flight = t.in_flight();
    assert_eq!(in_flight.receipts.len(), 1);
    assert_eq!(
        (in_flight.receipts[0].kind, in_flight.receipts[0].counter),
        (ReceiptKind::Unload, 0)
    );

    // The rest of the JPY: the entry goes.
    let second = t.unload(&jpy(70));
    assert_eq!(t.values().assets, vec![balance("EUR", 5)]);
    assert_eq!(t.in_flight().receipts.len(), 2);

    t.ok(&unload_ack(
        ReceiptKind::Unload,
        1,
        acknowledge(ReceiptKind::Unload, &second),
    ));
    t.ok(&unload_ack(
        ReceiptKind::Unload,
        0,
        acknowledge(ReceiptKind::Unload, &receipt),
    ));
    assert!(t.in_flight().is_empty());
    assert_eq!(t.counters().unload, 2);
}

#[test]
fn get_data_shows_values_and_everything_in_flight() {
    let mut t = Tester::new(6);
    t.load(&jpy(100));
    t.verify_pin();
    t.unload(&jpy(10));
    t.request(&jpy(1));
    t.cancel();
    let pending = t.request(&ticket("T", &[9]));
    let in_flight = t.in_flight();
    assert_eq!(in_flight.pending_load, Some(pending));
    assert_eq!(
        in_flight
            .receipts
            .iter()
            .map(|r| (r.kind, r.counter))
            .collect::<Vec<_>>(),
        vec![(ReceiptKind::Unload, 0), (ReceiptKind::LoadCancel, 1)]
    );
    assert_eq!(in_flight, t.state().in_flight);

    let all = CardInfo::decode(&t.get(obj::ALL)).expect("6E");
    assert_eq!(all.in_flight, in_flight);
    assert_eq!(all.values.assets, vec![balance("JPY", 90)]);
    assert_eq!((all.counters.load, all.counters.unload), (3, 1));
}

#[test]
fn the_state_survives_a_power_cycle() {
    let dir = tempfile::tempdir().expect("tempdir");
    let path = dir.path().join("card.state");
    let mut t = Tester::on(Box::new(FileStorage::open(&path).expect("storage")), 7);
    t.load(&jpy(100));
    t.load(&ticket("CONCERT", &[1]));
    t.verify_pin();
    let receipt = t.unload(&jpy(40));
    t.request(&jpy(5));
    t.cancel();
    let pending = t.request(&jpy(8));
    let before = t.state();
    let in_flight = t.get(units::tag::IN_FLIGHT);
    let values = t.get(obj::VALUES);
    let (key, id) = (t.key, t.id);
    drop(t);

    let card = Card::new(
        Box::new(FileStorage::open(&path).expect("storage")),
        options(8),
    )
    .expect("the card restarts");
    let mut t = Tester { card, key, id };
    assert_eq!(t.state(), before);
    assert_eq!(t.get(units::tag::IN_FLIGHT), in_flight);
    assert_eq!(t.get(obj::VALUES), values);
    // The PIN did not survive; the pending load and the receipts did.
    t.refused(&unload(&jpy(1)), 0x6982, "the PIN is volatile");
    t.ok(&load_apply(authorise(&pending), None));
    t.ok(&unload_ack(
        ReceiptKind::Unload,
        0,
        acknowledge(ReceiptKind::Unload, &receipt),
    ));
    assert_eq!(t.values().assets, vec![balance("JPY", 68)]);
    assert_eq!(t.in_flight().receipts.len(), 1);
}

// ---- what the commands refuse ---------------------------------------------------------

#[test]
fn parameters_and_lengths_come_first() {
    let mut t = Tester::new(10);
    let value = jpy(5).encode();
    let signature = [0x11; 64];
    for (name, ins, body) in [
        ("LOAD REQUEST", ins::LOAD_REQUEST, value.clone()),
        (
            "LOAD APPLY",
            ins::LOAD_APPLY,
            LoadApply {
                authorisation: signature,
                ticket_signature: None,
                block_list: list(),
            }
            .encode(),
        ),
        ("UNLOAD", ins::UNLOAD, value.clone()),
    ] {
        t.refused(&command(ins, 0, 1, &body), 0x6A86, name);
        t.refused(&command(ins, 1, 0, &body), 0x6A86, name);
        t.refused(&command(ins, 0xFF, 0xFF, &body), 0x6A86, name);
        t.refused(&command(ins, 0, 0, &[]), 0x6700, name);
        t.refused(&[0x80, ins, 0, 0], 0x6700, name);
        // An Lc that does not match the data.
        let mut long_lc = command(ins, 0, 0, &body);
        long_lc[4] += 1;
        long_lc.pop();
        t.refused(&long_lc, 0x6700, name);
        let mut short = vec![0x80, ins, 0, 0, body.len() as u8 + 3];
        short.extend_from_slice(&body);
        t.refused(&short, 0x6700, name);
    }
    t.refused(&command(ins::LOAD_CANCEL, 0, 1, &[]), 0x6A86, "LOAD CANCEL");
    t.refused(
        &command(ins::LOAD_CANCEL, 0, 0, &[0]),
        0x6700,
        "LOAD CANCEL body",
    );
    let ack = Acknowledgement {
        counter: 0,
        signature,
    }
    .encode();
    for (p1, p2) in [(0, 0), (3, 0), (0xFF, 0), (1, 1), (2, 0x80)] {
        t.refused(
            &command(ins::UNLOAD_ACK, p1, p2, &ack),
            0x6A86,
            "UNLOAD ACK P1 P2",
        );
    }
    t.refused(
        &command(ins::UNLOAD_ACK, 1, 0, &[]),
        0x6700,
        "UNLOAD ACK body",
    );
}

#[test]
fn the_commands_need_an_active_card() {
    for generate in [false, true] {
        let mut card = Card::in_memory(options(11));
        if generate {
            ok(&mut card, &command(ins::GENERATE_KEY, 0, 0, &[]));
        }
        let apdus = [
            load_request(&jpy(1)),
            load_apply([0x11; 64], None),
            load_cancel(),
            unload(&jpy(1)),
            unload_ack(ReceiptKind::Unload, 0, [0x11; 64]),
            unload_ack(ReceiptKind::LoadCancel, 0, [0x11; 64]),
        ];
        for apdu in apdus {
            let before = card.applet().persistent().clone();
            assert_eq!(
                transmit(&mut card, &apdu),
                (Vec::new(), 0x6985),
                "keyed: {generate}"
            );
            assert_eq!(card.applet().persistent(), &before);
        }
    }
}

/// Bodies that are not one value object of the allowed form.
fn malformed_values() -> Vec<(&'static str, Vec<u8>)> {
    let good = jpy(5).encode();
    let mut trailing = good.clone();
    trailing.push(0);
    let mut two = good.clone();
    two.extend_from_slice(&good);
    let field = |t: u16, v: &[u8]| tlv::primitive(t, v);
    let template = |t: u16, fields: Vec<tlv::Tlv>| tlv::constructed(t, fields).to_vec();
    vec![
        ("truncated", good[..good.len() - 1].to_vec()),
        ("a byte after it", trailing),
        ("two values", two),
        ("not TLV", vec![0xFF]),
        ("zero amount", jpy(0).encode()),
        ("empty code", asset("", 1).encode()),
        ("nine-character code", asset("NINECHARS", 1).encode()),
        ("a space in the code", asset("J Y", 1).encode()),
        ("empty serial", ticket("T", &[]).encode()),
        ("33-byte serial", ticket("T", &[0; 33]).encode()),
        (
            "7-byte amount",
            template(0xE1, vec![field(0x81, b"JPY"), field(0x82, &[0; 7])]),
        ),
        (
            "an extra field",
            template(
                0xE1,
                vec![
                    field(0x81, b"JPY"),
                    field(0x82, &5u64.to_be_bytes()),
                    field(0x83, &[0]),
                ],
            ),
        ),
        ("no amount", template(0xE1, vec![field(0x81, b"JPY")])),
        (
            "another template",
            template(
                0xE3,
                vec![field(0x81, b"JPY"), field(0x82, &5u64.to_be_bytes())],
            ),
        ),
        ("a primitive", field(0x81, b"JPY").to_vec()),
    ]
}

#[test]
fn load_request_refusals() {
    let mut t = Tester::new(12);
    for (why, body) in malformed_values() {
        t.refused(&command(ins::LOAD_REQUEST, 0, 0, &body), 0x6A80, why);
    }
    // An Lc one short, which parses as case 4: the body is cut by a byte.
    let mut cut = load_request(&jpy(5));
    cut[4] -= 1;
    cut.pop();
    t.refused(&cut, 0x6A80, "Lc one short");

    let pending = t.request(&jpy(5));
    t.refused(&load_request(&jpy(5)), 0x6985, "a load is pending");
    t.refused(
        &load_request(&ticket("T", &[1])),
        0x6985,
        "a load is pending",
    );
    t.ok(&load_apply(authorise(&pending), None));

    // Overflow: available + escrowed + amount must stay a u64.
    t.load(&jpy(u64::MAX - 10));
    t.refused(&load_request(&jpy(11)), 0x6A80, "available overflows");
    t.request(&jpy(5));
    t.cancel();
    t.escrow(&jpy(u64::MAX - 20));
    assert_eq!(t.values().assets[0].escrowed, u64::MAX - 20);
    t.refused(&load_request(&jpy(6)), 0x6A80, "escrowed counts");
    t.request(&jpy(5));

    // Tickets: a duplicate, then a full store.
    let mut t = Tester::new(13);
    t.load(&ticket("T", &[0]));
    t.refused(&load_request(&ticket("T", &[0])), 0x6A80, "a ticket held");
    for serial in 1..MAX_TICKETS as u8 {
        t.load(&ticket("T", &[serial]));
    }
    assert_eq!(t.values().tickets.len(), MAX_TICKETS);
    t.refused(&load_request(&ticket("T", &[0xEE])), 0x6A84, "tickets full");
    t.refused(
        &load_request(&ticket("T", &[0])),
        0x6A80,
        "a duplicate is a duplicate, full or not",
    );
    t.load(&jpy(1));

    // Assets: a full store takes more of what it holds, but no new code.
    let mut t = Tester::new(14);
    for i in 0..MAX_ASSETS {
        t.load(&asset(&format!("A{i}"), 1));
    }
    t.refused(&load_request(&asset("NEW", 1)), 0x6A84, "assets full");
    t.load(&asset("A3", 1));
    assert_eq!(t.values().assets[3], balance("A3", 2));
    t.load(&ticket("T", &[1]));

    // The load counter's last value is never used.
    let mut t = Tester::new(15).edited(|s| s.load_counter = u32::MAX - 1);
    let last = t.load(&jpy(1));
    assert_eq!(
        UnitMessage::decode_load(&last.message).map(|m| m.counter),
        Ok(u32::MAX - 1)
    );
    assert_eq!(t.counters().load, u32::MAX);
    t.refused(
        &load_request(&jpy(1)),
        0x6985,
        "the load counter is used up",
    );
}

#[test]
fn load_apply_refusals() {
    let mut t = Tester::new(20);
    t.refused(&load_apply([0x11; 64], None), 0x6985, "nothing pending");
    let never_requested = UnitMessage {
        card_id: t.id,
        counter: 0,
        value: jpy(1),
    }
    .encode_load();
    t.refused(
        &load_apply(
            units::sign(&issuer(), domains::LOAD_AUTH, &never_requested),
            None,
        ),
        0x6985,
        "a valid authorisation, but nothing pending",
    );

    let first = t.request(&jpy(100));
    let good = authorise(&first);
    let malformed: Vec<(&str, Vec<u8>)> = vec![
        ("empty TLV", vec![0x9E, 0x00]),
        ("63 bytes", tlv::primitive(0x9E, &good[..63]).to_vec()),
        (
            "65 bytes",
            tlv::primitive(0x9E, [&good[..], &[0]].concat()).to_vec(),
        ),
        ("another tag", tlv::primitive(0x9D, good).to_vec()),
        ("bare", good.to_vec()),
        (
            "a byte after it",
            [&tlv::primitive(0x9E, good).to_vec()[..], &[0]].concat(),
        ),
        (
            "two authorisations",
            tlv::encode_all(&[tlv::primitive(0x9E, good), tlv::primitive(0x9E, good)]),
        ),
        (
            "a ticket signature for units",
            LoadApply {
                authorisation: good,
                ticket_signature: Some([0x22; 64]),
                block_list: list(),
            }
            .encode(),
        ),
        ("no block list", tlv::primitive(0x9E, good).to_vec()),
        (
            "two block lists",
            tlv::encode_all(&[tlv::primitive(0x9E, good), list().to_tlv(), list().to_tlv()]),
        ),
        ("a block list with 65 entries", {
            let entries: Vec<BlockEntry> = (0..65u8).map(|i| BlockEntry::Card([i; 32])).collect();
            let long = BlockList { entries, ..list() };
            tlv::encode_all(&[tlv::primitive(0x9E, good), long.to_tlv()])
        }),
    ];
    for (why, body) in malformed {
        t.refused(&command(ins::LOAD_APPLY, 0, 0, &body), 0x6A80, why);
    }
    let forged = [
        ("zeros", [0; 64]),
        ("ones", [0xFF; 64]),
        (
            "another issuer",
            units::sign(
                &other_issuer(),
                domains::LOAD_AUTH,
                &units::authorised(&first.message, LIST_VERSION),
            ),
        ),
        (
            "another domain",
            units::sign(
                &issuer(),
                domains::LOAD_CANCEL_ACK,
                &units::authorised(&first.message, LIST_VERSION),
            ),
        ),
        (
            "the request alone, without the list's version (v1 authorisation bytes)",
            units::sign(&issuer(), domains::LOAD_AUTH, &first.message),
        ),
        ("the card's own signature", first.signature),
        ("over the EC answer", {
            let answer = first.to_tlv(tag::SIGNED_LOAD).expect("EC").to_vec();
            units::sign(
                &issuer(),
                domains::LOAD_AUTH,
                &units::authorised(&answer, LIST_VERSION),
            )
        }),
        ("a bit flipped", {
            let mut s = good;
            s[40] ^= 1;
            s
        }),
    ];
    for (why, signature) in forged {
        t.refused(&load_apply(signature, None), 0x6300, why);
    }

    // A replayed authorisation of an older request.
    t.ok(&load_apply(good, None));
    let second = t.request(&jpy(100));
    t.refused(
        &load_apply(good, None),
        0x6300,
        "the first request's authorisation",
    );
    // Another card's request for the same value with the same counter.
    let mut other = Tester::new(21);
    let theirs = other.request(&jpy(100));
    assert_eq!(
        UnitMessage::decode_load(&theirs.message).map(|m| (m.counter, m.value)),
        UnitMessage::decode_load(&first.message).map(|m| (m.counter, m.value))
    );
    other.refused(
        &load_apply(good, None),
        0x6300,
        "another card's authorisation",
    );
    t.refused(
        &load_apply(authorise(&theirs), None),
        0x6300,
        "the other card's",
    );
    t.ok(&load_apply(authorise(&second), None));
    other.ok(&load_apply(authorise(&theirs), None));
    assert_eq!(t.values().assets, vec![balance("JPY", 200)]);
    assert_eq!(other.values().assets, vec![balance("JPY", 100)]);
}

#[test]
fn load_apply_keeps_the_newest_block_list_in_the_same_commit() {
    let mut t = Tester::new(27);
    assert_eq!(t.counters().block_list, 0, "no list before the first load");
    assert_eq!(t.state().block_list, None);

    let v3 = block_list(3, &[BlockEntry::Card([9; 32]), BlockEntry::Maker([8; 32])]);
    let request = t.request(&jpy(10));
    t.ok(&load_apply_with(
        authorise_with(&request, 3),
        None,
        v3.clone(),
    ));
    assert_eq!(t.counters().block_list, 3, "GET DATA E5/84");
    assert_eq!(t.state().block_list, Some(v3.clone()));
    assert_eq!(t.values().assets, vec![balance("JPY", 10)]);

    // An older list with an authorisation over its version: the load is the center's to
    // authorise, and it is applied, but the card keeps the newer list it has.
    let request = t.request(&jpy(5));
    t.ok(&load_apply_with(
        authorise_with(&request, 2),
        None,
        block_list(2, &[]),
    ));
    assert_eq!(
        t.state().block_list,
        Some(v3.clone()),
        "an older list is not kept"
    );
    assert_eq!(t.values().assets, vec![balance("JPY", 15)]);
    // The same version again changes nothing either.
    let request = t.request(&jpy(1));
    t.ok(&load_apply_with(
        authorise_with(&request, 3),
        None,
        v3.clone(),
    ));
    assert_eq!(t.state().block_list, Some(v3));

    let v5 = block_list(5, &[BlockEntry::Card(t.id)]);
    let request = t.request(&jpy(1));
    t.ok(&load_apply_with(
        authorise_with(&request, 5),
        None,
        v5.clone(),
    ));
    assert_eq!(t.state().block_list, Some(v5), "a newer list is kept");
    assert_eq!(t.counters().block_list, 5);
    assert_eq!(t.values().assets, vec![balance("JPY", 17)]);
    // The list survives a restart, and the state file decodes with it.
    let restarted = t.edited(|_| {});
    assert_eq!(restarted.state().block_list, t.state().block_list);
}

#[test]
fn load_apply_refuses_a_block_list_the_issuer_did_not_sign_for_it() {
    // A terminal that wants the card to forget a block (or to learn a list of its own)
    // holds the center's authorisation, its own keys, and every list it has seen.
    let mut t = Tester::new(28);
    let request = t.request(&jpy(100));
    let listed = [BlockEntry::Card([9; 32]), BlockEntry::Card([10; 32])];
    let current = block_list(4, &listed);
    let good = authorise_with(&request, 4);
    let foreign = BlockList::sign(&other_issuer(), 4, &[]);
    let by_foreign = units::sign(
        &other_issuer(),
        domains::LOAD_AUTH,
        &units::authorised(&request.message, 4),
    );
    let mut edited = current.clone();
    edited.entries.remove(0);
    let mut renumbered = current.clone();
    renumbered.version = 9;
    let cases: Vec<(&str, [u8; 64], BlockList)> = vec![
        ("a list signed by another key", good, foreign.clone()),
        ("another key's list and authorisation", by_foreign, foreign),
        ("an entry taken out of the issuer's list", good, edited),
        ("the issuer's list with another version", good, renumbered),
        (
            "an authorisation for another list version (a newer one withheld)",
            good,
            block_list(3, &listed[..1]),
        ),
        (
            "an authorisation for another list version (an older one)",
            authorise_with(&request, 3),
            current.clone(),
        ),
        (
            "an authorisation for another list version (the same list renumbered)",
            authorise_with(&request, 5),
            current.clone(),
        ),
    ];
    for (why, authorisation, list) in cases {
        t.refused(&load_apply_with(authorisation, None, list), 0x6300, why);
    }
    // A missing list is a malformed body.
    t.refused(
        &command(ins::LOAD_APPLY, 0, 0, &tlv::primitive(0x9E, good).to_vec()),
        0x6A80,
        "no block list",
    );
    assert_eq!(t.state().block_list, None);
    assert_eq!(t.values().assets, vec![]);
    t.ok(&load_apply_with(good, None, current.clone()));
    assert_eq!(t.state().block_list, Some(current));
    assert_eq!(t.values().assets, vec![balance("JPY", 100)]);
}

#[test]
fn load_apply_refuses_a_wrong_ticket() {
    let mut t = Tester::new(22);
    let other = Tester::new(23);
    let request = t.request(&ticket("CONCERT", &[7]));
    let auth = authorise(&request);
    t.refused(&load_apply(auth, None), 0x6A80, "no ticket signature");
    let wrong = [
        (
            "another card's ticket",
            units::sign_ticket(&issuer(), "CONCERT", &[7], &other.id),
        ),
        (
            "another serial",
            units::sign_ticket(&issuer(), "CONCERT", &[8], &t.id),
        ),
        (
            "another code",
            units::sign_ticket(&issuer(), "CONCERTS", &[7], &t.id),
        ),
        (
            "another issuer",
            units::sign_ticket(&other_issuer(), "CONCERT", &[7], &t.id),
        ),
        ("the authorisation again", auth),
        ("zeros", [0; 64]),
    ];
    for (why, signature) in wrong {
        t.refused(&load_apply(auth, Some(signature)), 0x6300, why);
    }
    let good = units::sign_ticket(&issuer(), "CONCERT", &[7], &t.id);
    t.refused(
        &load_apply([0; 64], Some(good)),
        0x6300,
        "a bad authorisation",
    );
    t.ok(&load_apply(auth, Some(good)));
    assert_eq!(t.values().tickets.len(), 1);
}

#[test]
fn load_apply_checks_the_store_again() {
    // Nothing adds values while a load is pending today; the check at LOAD APPLY holds the
    // store's limits even if something does.
    let mut t = Tester::new(24);
    let request = t.request(&asset("NEW", 1));
    let mut full = t.edited(|s| {
        s.values.assets = (0..MAX_ASSETS)
            .map(|i| balance(&format!("A{i}"), 1))
            .collect()
    });
    full.refused(
        &load_apply(authorise(&request), None),
        0x6A84,
        "assets full",
    );

    let mut t = Tester::new(25);
    t.load(&jpy(1));
    let request = t.request(&jpy(100));
    let mut near = t.edited(|s| s.values.assets[0].available = u64::MAX - 50);
    near.refused(&load_apply(authorise(&request), None), 0x6A80, "overflow");
    t.ok(&load_apply(authorise(&request), None));

    let mut t = Tester::new(26);
    let request = t.request(&ticket("T", &[1]));
    let signature = units::sign_ticket(&issuer(), "T", &[1], &t.id);
    let mut held = t.edited(|s| {
        s.values.tickets.push(apdu_spec::objects::Ticket {
            asset: "T".into(),
            serial: vec![1],
            issuer_signature: signature.to_vec(),
            escrowed: false,
            owner: None,
        })
    });
    held.refused(
        &load_apply(authorise(&request), Some(signature)),
        0x6A80,
        "the ticket is held already",
    );
}

#[test]
fn load_cancel_refusals() {
    let mut t = Tester::new(30);
    t.refused(&load_cancel(), 0x6985, "nothing pending");
    t.refused(
        &[0x80, ins::LOAD_CANCEL, 0, 0],
        0x6985,
        "nothing pending, case 1",
    );
    t.load(&jpy(MAX_RECEIPTS as u64 + 1));
    t.verify_pin();
    for _ in 0..MAX_RECEIPTS {
        t.unload(&jpy(1));
    }
    let request = t.request(&jpy(5));
    t.refused(&load_cancel(), 0x6A84, "receipts full");
    t.refused(&unload(&jpy(1)), 0x6A84, "receipts full");
    // Acknowledging one makes room.
    let first = t.state().in_flight.receipts[0].clone();
    t.ok(&unload_ack(
        ReceiptKind::Unload,
        first.counter,
        acknowledge(ReceiptKind::Unload, &first.signed),
    ));
    let cancellation = t.cancel();
    assert_eq!(cancellation.message, request.message);
    t.refused(&load_cancel(), 0x6985, "cancelled already");
    assert_eq!(t.in_flight().receipts.len(), MAX_RECEIPTS);
}

#[test]
fn unload_refusals() {
    let mut t = Tester::new(40);
    t.load(&jpy(100));
    t.load(&ticket("T", &[1]));
    t.refused(&unload(&jpy(1)), 0x6982, "no PIN");
    t.refused(
        &command(ins::UNLOAD, 0, 0, &[0xFF]),
        0x6982,
        "the PIN comes first",
    );
    t.refused(&unload(&jpy(1000)), 0x6982, "the PIN comes first");
    // A wrong PIN leaves the PIN unverified (and spends a try: that is VERIFY's write).
    let (_, sw) = t.send(&apdu_spec::apdu::encode(
        CLA_ISO,
        ins::VERIFY,
        0,
        0x81,
        b"999999",
        0,
        false,
    ));
    assert_eq!(sw, 0x63C2);
    t.refused(&unload(&jpy(1)), 0x6982, "after a wrong PIN");
    t.verify_pin();
    for (why, body) in malformed_values() {
        t.refused(&command(ins::UNLOAD, 0, 0, &body), 0x6A80, why);
    }
    t.refused(&unload(&ticket("T", &[1])), 0x6A80, "a ticket");
    t.refused(&unload(&asset("EUR", 1)), 0x6985, "an asset not held");
    t.refused(&unload(&jpy(101)), 0x6985, "more than available");
    t.unload(&jpy(100));
    t.refused(&unload(&jpy(1)), 0x6985, "nothing left");

    // Escrowed units are not spendable.
    let mut escrow = Tester::new(41);
    escrow.load(&jpy(110));
    escrow.escrow(&jpy(100));
    escrow.refused(&unload(&jpy(11)), 0x6985, "escrowed units");
    escrow.unload(&jpy(10));
    assert_eq!(
        escrow.values().assets,
        vec![AssetBalance {
            code: "JPY".into(),
            available: 0,
            escrowed: 100,
        }],
        "an entry with units in escrow stays"
    );

    // The unload counter's last value is never used.
    let mut t = Tester::new(42);
    t.load(&jpy(10));
    let mut t = t.edited(|s| s.unload_counter = u32::MAX - 1);
    t.verify_pin();
    let last = t.unload(&jpy(1));
    assert_eq!(
        UnitMessage::decode_unload(&last.message).map(|m| m.counter),
        Ok(u32::MAX - 1)
    );
    t.refused(&unload(&jpy(1)), 0x6985, "the unload counter is used up");

    // A reset forgets the PIN.
    t.card.reset();
    t.refused(&unload(&jpy(1)), 0x6982, "after a reset");
}

#[test]
fn unload_ack_refusals() {
    let mut t = Tester::new(50);
    let ack_body =
        |counter: u32, signature: [u8; 64]| Acknowledgement { counter, signature }.encode();
    t.refused(
        &unload_ack(ReceiptKind::Unload, 0, [0x11; 64]),
        0x6A88,
        "no receipts at all",
    );
    t.load(&jpy(100));
    t.verify_pin();
    let r0 = t.unload(&jpy(1));
    let r1 = t.unload(&jpy(2));
    let request = t.request(&jpy(3));
    let cancel = t.cancel();
    assert_eq!(
        UnitMessage::decode_load(&request.message).map(|m| m.counter),
        Ok(1),
        "the cancellation has load counter 1"
    );

    let good0 = acknowledge(ReceiptKind::Unload, &r0);
    for (why, body) in [
        ("empty TLV", vec![0x86, 0x00]),
        ("no signature", tlv::primitive(0x86, [0, 0, 0, 0]).to_vec()),
        ("no counter", tlv::primitive(0x9E, good0).to_vec()),
        (
            "3-byte counter",
            tlv::encode_all(&[tlv::primitive(0x86, [0, 0, 0]), tlv::primitive(0x9E, good0)]),
        ),
        (
            "63-byte signature",
            tlv::encode_all(&[
                tlv::primitive(0x86, [0, 0, 0, 0]),
                tlv::primitive(0x9E, &good0[..63]),
            ]),
        ),
        ("a byte after it", [&ack_body(0, good0)[..], &[0]].concat()),
        (
            "a third object",
            [&ack_body(0, good0)[..], &tlv::primitive(0x85, [1]).to_vec()].concat(),
        ),
        ("truncated", ack_body(0, good0)[..70].to_vec()),
    ] {
        t.refused(&command(ins::UNLOAD_ACK, 1, 0, &body), 0x6A80, why);
    }

    t.refused(
        &unload_ack(ReceiptKind::Unload, 2, good0),
        0x6A88,
        "no unload receipt 2",
    );
    t.refused(
        &unload_ack(ReceiptKind::LoadCancel, 0, good0),
        0x6A88,
        "no cancellation 0",
    );
    t.refused(
        &unload_ack(ReceiptKind::Unload, 1, good0),
        0x6300,
        "receipt 0's acknowledgement for receipt 1",
    );
    t.refused(
        &unload_ack(
            ReceiptKind::Unload,
            1,
            units::sign(&issuer(), domains::LOAD_CANCEL_ACK, &r1.message),
        ),
        0x6300,
        "the other kind's domain",
    );
    t.refused(
        &unload_ack(
            ReceiptKind::Unload,
            1,
            units::sign(&other_issuer(), domains::UNLOAD_ACK, &r1.message),
        ),
        0x6300,
        "another issuer",
    );
    t.refused(
        &unload_ack(ReceiptKind::Unload, 1, r1.signature),
        0x6300,
        "the card's own signature",
    );
    t.refused(
        &unload_ack(
            ReceiptKind::LoadCancel,
            1,
            acknowledge(ReceiptKind::Unload, &cancel),
        ),
        0x6300,
        "a cancellation acknowledged in the unload domain",
    );
    t.refused(
        &unload_ack(ReceiptKind::LoadCancel, 1, authorise(&request)),
        0x6300,
        "an authorisation is no acknowledgement",
    );
    t.refused(
        &unload_ack(
            ReceiptKind::Unload,
            1,
            acknowledge(ReceiptKind::LoadCancel, &cancel),
        ),
        0x6300,
        "the cancellation's acknowledgement for unload receipt 1",
    );

    t.ok(&unload_ack(
        ReceiptKind::Unload,
        1,
        acknowledge(ReceiptKind::Unload, &r1),
    ));
    t.refused(
        &unload_ack(
            ReceiptKind::Unload,
            1,
            acknowledge(ReceiptKind::Unload, &r1),
        ),
        0x6A88,
        "acknowledged once",
    );
    t.ok(&unload_ack(
        ReceiptKind::LoadCancel,
        1,
        acknowledge(ReceiptKind::LoadCancel, &cancel),
    ));
    t.ok(&unload_ack(ReceiptKind::Unload, 0, good0));
    assert!(t.in_flight().is_empty());
}

#[test]
fn a_state_file_with_messages_of_another_card_is_corrupt() {
    let mut t = Tester::new(60);
    t.request(&jpy(1));
    t.cancel();
    t.request(&jpy(2));
    let state = t.state();
    assert!(decode(&bytes(&state)).is_ok());

    let foreign = Tester::new(61).request(&jpy(2));
    let mut pending = state.clone();
    pending.in_flight.pending_load = Some(foreign.clone());
    assert!(decode(&bytes(&pending)).is_err());

    let mut receipt = state.clone();
    receipt.in_flight.receipts[0].signed = foreign;
    assert!(decode(&bytes(&receipt)).is_err());

    let mut counter = state.clone();
    counter.in_flight.receipts[0].counter = 5;
    assert!(decode(&bytes(&counter)).is_err());

    let mut kind = state;
    kind.in_flight.receipts[0].kind = ReceiptKind::Unload;
    assert!(
        decode(&bytes(&kind)).is_err(),
        "a load request as an unload"
    );
}
