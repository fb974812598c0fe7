//! Units between center and card over HTTP (PROTOCOLS.md, "Units between center and
//! card"): loads, cancellations, unloads, tickets and the ledger, with a software card (a
//! P-256 key registered through the challenge flow and funded through the bank). Every
//! retry returns the first answer and moves nothing more; every refused request leaves both
//! databases as they were; concurrent loads never overdraw.
#![allow(clippy::unwrap_used)]

mod common;

use std::sync::{Arc, Barrier};

use apdu_spec::units::{self, UnitMessage, domains};
use apdu_spec::{cert::encode_public_key, tlv};
use common::*;
use p256::ecdsa::{SigningKey, VerifyingKey};
use p256::elliptic_curve::Generate;
use valuecard_backend::center::{CERTIFICATE_VALIDITY, RANDOM_SERIAL_LEN};
use valuecard_backend::clock::DAY;
use valuecard_backend::db::{Dump, Value};
use valuecard_protocol::ErrorCode;
use valuecard_protocol::api::*;

fn issuer(w: &World) -> VerifyingKey {
    apdu_spec::cert::decode_public_key(&w.center.issuer_public_key()).unwrap()
}

fn center_dump(w: &World) -> Dump {
    w.center.database().dump().unwrap()
}

/// The center's database after `f`, which must change nothing in it.
#[track_caller]
fn unchanged<T>(w: &World, f: impl FnOnce() -> T) -> T {
    let before = w.dumps();
    let out = f();
    assert_eq!(w.dumps(), before, "a replay changed a database");
    out
}

fn issue(w: &World, card_id: [u8; 32], asset: &str, serial: &[u8]) -> IssuedTicket {
    w.issue_ticket(
        ADMIN,
        &TicketIssueRequest {
            card_id,
            asset: asset.into(),
            serial: Some(serial.to_vec()),
        },
    )
    .unwrap()
}

#[test]
fn a_load_is_authorised_once_and_replayed_with_the_same_answer() {
    let w = World::new(&[256, 32]);
    let account = w.open_account(1000);
    let (card, card_id) = w.funded_card(&account, &[256, 32]);

    let order = load_order(&card, 0, jpy(100));
    let first = w.load(&order).unwrap();
    assert_eq!(
        (first.card_id, first.counter, &first.value, first.replayed),
        (card_id, 0, &jpy(100), false)
    );
    assert_eq!(first.ticket_signature, None);
    // The authorisation is the issuer's signature over the card's exact request bytes and
    // the version of the block list that comes with it, under the load-auth domain only:
    // with the list, it is the body of LOAD APPLY.
    assert_eq!(first.block_list.version, 0);
    assert_eq!(first.block_list.verify(&issuer(&w)), Ok(()));
    assert!(units::verify(
        &issuer(&w),
        domains::LOAD_AUTH,
        &units::authorised(&order.request, first.block_list.version),
        &first.authorisation
    ));
    for (domain, version) in [(domains::LOAD_CANCEL_ACK, 0), (domains::LOAD_AUTH, 1)] {
        assert!(!units::verify(
            &issuer(&w),
            domain,
            &units::authorised(&order.request, version),
            &first.authorisation
        ));
    }
    assert!(!units::verify(
        &issuer(&w),
        domains::LOAD_AUTH,
        &order.request,
        &first.authorisation
    ));
    assert_eq!(w.card_balance(&card), 188);

    // The answer was lost: the same request again gets the same authorisation.
    let again = unchanged(&w, || w.load(&order).unwrap());
    assert!(again.replayed);
    assert_eq!(
        LoadAuthorisation {
            replayed: false,
            ..again
        },
        first
    );
    assert_eq!(w.card_balance(&card), 188);

    // The next counter is a new load.
    let second = w.load(&load_order(&card, 1, jpy(188))).unwrap();
    assert!(!second.replayed);
    assert_eq!(w.card_balance(&card), 0);
    assert_eq!(center_dump(&w)["loads"].len(), 2);
}

#[test]
fn a_cancelled_load_is_refunded_once_and_never_authorised_again() {
    let w = World::new(&[32]);
    let account = w.open_account(100);
    let (card, _) = w.funded_card(&account, &[32]);

    // Authorised, then cancelled (the authorisation never reached the card): refunded.
    let order = load_order(&card, 3, jpy(20));
    w.load(&order).unwrap();
    assert_eq!(w.card_balance(&card), 12);
    let cancel = cancellation(&card, &order.request);
    let ack = w.cancel(&cancel).unwrap();
    assert_eq!(
        (ack.counter, &ack.value, ack.outcome, ack.replayed),
        (3, &jpy(20), CancelOutcome::Refunded, false)
    );
    assert!(units::verify(
        &issuer(&w),
        domains::LOAD_CANCEL_ACK,
        &order.request,
        &ack.acknowledgement
    ));
    assert_eq!(w.card_balance(&card), 32);
    // Retried: the same acknowledgement, no second refund.
    let again = unchanged(&w, || w.cancel(&cancel).unwrap());
    assert_eq!(
        CancelAcknowledgement {
            replayed: false,
            ..again
        },
        ack
    );
    assert_eq!(w.card_balance(&card), 32);
    // The request can never be authorised again.
    refused(&w, ErrorCode::LoadCancelled, || w.load(&order));

    // Cancelled before the center ever saw it: voided, nothing moves, and it is dead.
    let never = load_order(&card, 4, jpy(10));
    let before = center_dump(&w)["unit_accounts"].clone();
    let voided = w.cancel(&cancellation(&card, &never.request)).unwrap();
    assert_eq!(
        (voided.outcome, voided.replayed),
        (CancelOutcome::Voided, false)
    );
    assert!(units::verify(
        &issuer(&w),
        domains::LOAD_CANCEL_ACK,
        &never.request,
        &voided.acknowledgement
    ));
    assert_eq!(center_dump(&w)["unit_accounts"], before);
    let again = unchanged(&w, || {
        w.cancel(&cancellation(&card, &never.request)).unwrap()
    });
    assert_eq!(
        (again.outcome, again.replayed),
        (CancelOutcome::Voided, true)
    );
    refused(&w, ErrorCode::LoadCancelled, || w.load(&never));
    assert_eq!(w.card_balance(&card), 32);

    let dump = center_dump(&w);
    assert_eq!(dump["loads"].len(), 1);
    assert_eq!(dump["load_cancellations"].len(), 2);
}

#[test]
fn an_unload_is_credited_once() {
    let w = World::new(&[32]);
    let account = w.open_account(100);
    let (card, card_id) = w.funded_card(&account, &[32]);
    w.load(&load_order(&card, 0, jpy(32))).unwrap();
    assert_eq!(w.card_balance(&card), 0);

    let order = unload_order(&card, 0, 30);
    let ack = w.unload(&order).unwrap();
    assert_eq!(
        (ack.card_id, ack.counter, &ack.value, ack.replayed),
        (card_id, 0, &jpy(30), false)
    );
    assert!(units::verify(
        &issuer(&w),
        domains::UNLOAD_ACK,
        &order.receipt,
        &ack.acknowledgement
    ));
    assert_eq!(w.card_balance(&card), 30);
    let again = unchanged(&w, || w.unload(&order).unwrap());
    assert_eq!(
        UnloadAcknowledgement {
            replayed: false,
            ..again
        },
        ack
    );
    assert_eq!(w.card_balance(&card), 30);
    // Unload counters are their own sequence: counter 0 is taken by a load and an unload.
    w.unload(&unload_order(&card, 1, 2)).unwrap();
    assert_eq!(w.card_balance(&card), 32);
}

#[test]
fn tickets_are_issued_loaded_refunded_and_loaded_again() {
    let w = World::new(&[]);
    let (card, card_id) = w.new_card();

    let issued = issue(&w, card_id, "CONCERT", &[1, 2, 3]);
    assert_eq!(
        (
            issued.card_id,
            issued.asset.as_str(),
            issued.serial.as_slice()
        ),
        (card_id, "CONCERT", &[1u8, 2, 3][..])
    );
    assert!(!issued.delivered && !issued.replayed);
    assert!(units::verify_ticket(
        &issuer(&w),
        "CONCERT",
        &[1, 2, 3],
        &card_id,
        &issued.signature
    ));
    // The same ticket again: the first one, replayed.
    let again = unchanged(&w, || issue(&w, card_id, "CONCERT", &[1, 2, 3]));
    assert_eq!(
        IssuedTicket {
            replayed: false,
            ..again
        },
        issued
    );
    // Without a serial, the center picks 16 random bytes: a new ticket each time.
    let random = |w: &World| {
        w.issue_ticket(
            ADMIN,
            &TicketIssueRequest {
                card_id,
                asset: "SEAT".into(),
                serial: None,
            },
        )
        .unwrap()
    };
    let (r1, r2) = (random(&w), random(&w));
    assert_eq!(
        (r1.serial.len(), r2.serial.len()),
        (RANDOM_SERIAL_LEN, RANDOM_SERIAL_LEN)
    );
    assert_ne!(r1.serial, r2.serial);

    // The card loads it: the answer carries the ticket's signature for LOAD APPLY.
    let value = ticket("CONCERT", &[1, 2, 3]);
    let order = load_order(&card, 0, value.clone());
    let loaded = w.load(&order).unwrap();
    assert_eq!(
        (&loaded.value, loaded.ticket_signature, loaded.replayed),
        (&value, Some(issued.signature), false)
    );
    assert!(units::verify(
        &issuer(&w),
        domains::LOAD_AUTH,
        &units::authorised(&order.request, loaded.block_list.version),
        &loaded.authorisation
    ));
    let again = unchanged(&w, || w.load(&order).unwrap());
    assert_eq!(
        LoadAuthorisation {
            replayed: false,
            ..again
        },
        loaded
    );
    let replay = unchanged(&w, || issue(&w, card_id, "CONCERT", &[1, 2, 3]));
    assert!(replay.delivered && replay.replayed);
    // Delivered: no second load of it under another counter.
    refused(&w, ErrorCode::Conflict, || {
        w.load(&load_order(&card, 1, value.clone()))
    });

    // Cancelled: the ticket is free again, and a new request takes it.
    let ack = w.cancel(&cancellation(&card, &order.request)).unwrap();
    assert_eq!(ack.outcome, CancelOutcome::Refunded);
    let ledger = w.ledger(&card);
    let concert = ledger
        .tickets
        .iter()
        .find(|t| t.asset == "CONCERT")
        .unwrap();
    assert!(!concert.delivered);
    let reloaded = w.load(&load_order(&card, 2, value.clone())).unwrap();
    assert_eq!(reloaded.ticket_signature, Some(issued.signature));
    assert!(
        w.ledger(&card)
            .tickets
            .iter()
            .any(|t| t.asset == "CONCERT" && t.delivered)
    );
    // Tickets move no units.
    assert_eq!(w.card_balance(&card), 0);
}

#[test]
fn the_ledger_adds_up_to_the_balance() {
    let w = World::new(&[256, 32]);
    let account = w.open_account(1000);
    let (card, card_id) = w.funded_card(&account, &[256, 32]);
    w.load(&load_order(&card, 0, jpy(100))).unwrap();
    w.clock.advance(DAY);
    let cancelled = load_order(&card, 1, jpy(50));
    w.load(&cancelled).unwrap();
    w.cancel(&cancellation(&card, &cancelled.request)).unwrap();
    let voided = load_order(&card, 2, jpy(7));
    w.cancel(&cancellation(&card, &voided.request)).unwrap();
    w.unload(&unload_order(&card, 0, 40)).unwrap();
    issue(&w, card_id, "CONCERT", b"A1");
    w.load(&load_order(&card, 3, ticket("CONCERT", b"A1")))
        .unwrap();

    let ledger = w.ledger(&card);
    let balance = w.card_balance(&card);
    assert_eq!(balance, 288 - 100 - 50 + 50 + 40);
    assert_eq!(ledger.card_id, card_id);
    assert_eq!(
        ledger.accounts,
        vec![UnitAccount {
            asset: "JPY".into(),
            balance
        }]
    );
    assert_eq!(
        ledger.totals,
        LedgerTotals {
            redeemed: 288,
            loaded: 150,
            refunded: 50,
            unloaded: 40
        }
    );
    let t = &ledger.totals;
    assert_eq!(t.redeemed - t.loaded + t.refunded + t.unloaded, balance);
    // Day by day; the voided request moved nothing and is no entry.
    let day = START / DAY;
    let entries: Vec<_> = ledger
        .entries
        .iter()
        .map(|e| (e.day - day, e.kind, e.counter, e.value.clone()))
        .collect();
    let mut redeemed: Vec<_> = entries[..2].to_vec();
    redeemed.sort_by_key(|e| format!("{:?}", e.3));
    assert_eq!(
        redeemed,
        vec![
            (0, LedgerKind::Redeem, None, jpy(256)),
            (0, LedgerKind::Redeem, None, jpy(32)),
        ]
    );
    assert_eq!(
        entries[2..],
        [
            (0, LedgerKind::Load, Some(0), jpy(100)),
            (1, LedgerKind::TicketIssued, None, ticket("CONCERT", b"A1")),
            (1, LedgerKind::Load, Some(1), jpy(50)),
            (1, LedgerKind::Load, Some(3), ticket("CONCERT", b"A1")),
            (1, LedgerKind::Refund, Some(1), jpy(50)),
            (1, LedgerKind::Unload, Some(0), jpy(40)),
        ]
    );
    assert_eq!(ledger.tickets.len(), 1);
    assert!(ledger.tickets[0].delivered);

    // The admin reads the same ledger without a proof.
    let admin: CardLedger = w
        .post_admin(
            "/center/v1/ledger",
            ADMIN,
            &LedgerRequest {
                card_id,
                proof: None,
            },
        )
        .unwrap();
    assert_eq!(admin, ledger);
    // In-process, the admin token is checked too.
    let req = LedgerRequest {
        card_id,
        proof: None,
    };
    assert_eq!(
        w.center.ledger(None, &req).unwrap_err().code,
        ErrorCode::AdminUnauthorized
    );
    assert_eq!(w.center.ledger(Some(ADMIN), &req).unwrap(), ledger);
}

#[test]
fn an_expired_certificate_stops_new_loads_only() {
    let w = World::new(&[32]);
    let account = w.open_account(100);
    let (card, _) = w.funded_card(&account, &[32]);
    let loaded = load_order(&card, 0, jpy(10));
    let first = w.load(&loaded).unwrap();
    let pending = load_order(&card, 1, jpy(10));
    w.load(&pending).unwrap();

    w.clock.advance(CERTIFICATE_VALIDITY + DAY);
    refused(&w, ErrorCode::CertificateExpired, || {
        w.load(&load_order(&card, 2, jpy(1)))
    });
    // A lost answer is still fetched again; a cancellation and an unload still go through,
    // so that no unit is stranded on an expired card.
    let again = w.load(&loaded).unwrap();
    assert_eq!(
        (again.authorisation, again.replayed),
        (first.authorisation, true)
    );
    let ack = w.cancel(&cancellation(&card, &pending.request)).unwrap();
    assert_eq!(ack.outcome, CancelOutcome::Refunded);
    w.unload(&unload_order(&card, 0, 10)).unwrap();
    assert_eq!(w.card_balance(&card), 32);
}

/// A load request that decodes but is not the card's canonical encoding: the same fields
/// in another order.
fn reordered(card: &SigningKey, counter: u32, value: UnitValue) -> LoadOrder {
    let card_id = apdu_spec::card_id(&encode_public_key(card.verifying_key()));
    let request = tlv::constructed(
        units::tag::LOAD_REQUEST,
        vec![
            tlv::primitive(units::tag::COUNTER, counter.to_be_bytes()),
            tlv::primitive(apdu_spec::objects::tag::CARD_ID, card_id),
            value.to_tlv(),
        ],
    )
    .to_vec();
    assert_eq!(
        UnitMessage::decode_load(&request).unwrap().value,
        value,
        "it decodes"
    );
    LoadOrder {
        signature: units::sign(card, domains::LOAD_REQUEST, &request).to_vec(),
        request,
    }
}

/// A value's encoding, with any amount (the encoder does not check it).
fn zero_amount_message(card_id: [u8; 32], counter: u32, template: u16) -> Vec<u8> {
    tlv::constructed(
        template,
        vec![
            tlv::primitive(apdu_spec::objects::tag::CARD_ID, card_id),
            tlv::primitive(units::tag::COUNTER, counter.to_be_bytes()),
            jpy(0).to_tlv(),
        ],
    )
    .to_vec()
}

#[test]
fn refused_unit_requests_change_nothing() {
    let w = World::new(&[32]);
    let account = w.open_account(100);
    let (card, card_id) = w.funded_card(&account, &[32]);
    let (other, other_id) = w.new_card();
    let stranger = SigningKey::generate_from_rng(&mut rand::rng());

    // Transport, for every new route.
    for path in [
        "/center/v1/loads",
        "/center/v1/load-cancellations",
        "/center/v1/unloads",
        "/center/v1/tickets",
        "/center/v1/ledger",
    ] {
        refused(&w, ErrorCode::MalformedRequest, || {
            w.raw("POST", path, Some("application/json"), b"{not json")
        });
        refused(&w, ErrorCode::MalformedRequest, || {
            w.raw("POST", path, Some("application/json"), b"{\"unknown\":1}")
        });
    }
    for (path, body) in [
        ("/center/v1/loads", r#"{"request":"zz","signature":"00"}"#),
        (
            "/center/v1/load-cancellations",
            r#"{"request":"e7","signature":"0g"}"#,
        ),
        (
            "/center/v1/unloads",
            r#"{"receipt":"e8x","signature":"00"}"#,
        ),
        (
            "/center/v1/tickets",
            r#"{"card_id":"zz","asset":"CONCERT"}"#,
        ),
        ("/center/v1/ledger", r#"{"card_id":"12"}"#),
    ] {
        refused(&w, ErrorCode::MalformedRequest, || {
            w.raw("POST", path, Some("application/json"), body.as_bytes())
        });
    }

    // Loads.
    let order = load_order(&card, 0, jpy(10));
    let unload = unload_order(&card, 0, 5);
    // An unload receipt is not a load request, and a load request is not a cancellation of
    // anything but a load request.
    refused(&w, ErrorCode::InvalidField, || {
        w.load(&LoadOrder {
            request: unload.receipt.clone(),
            signature: units::sign(&card, domains::LOAD_REQUEST, &unload.receipt).to_vec(),
        })
    });
    refused(&w, ErrorCode::InvalidField, || {
        w.cancel(&cancellation(&card, &unload.receipt))
    });
    refused(&w, ErrorCode::InvalidField, || {
        w.load(&LoadOrder {
            request: order.request[..order.request.len() - 1].to_vec(),
            ..order.clone()
        })
    });
    let mut trailing = order.request.clone();
    trailing.push(0);
    refused(&w, ErrorCode::InvalidField, || {
        w.load(&LoadOrder {
            signature: units::sign(&card, domains::LOAD_REQUEST, &trailing).to_vec(),
            request: trailing.clone(),
        })
    });
    refused(&w, ErrorCode::InvalidField, || {
        w.load(&reordered(&card, 0, jpy(10)))
    });
    let zero = zero_amount_message(card_id, 0, units::tag::LOAD_REQUEST);
    refused(&w, ErrorCode::InvalidField, || {
        w.load(&LoadOrder {
            signature: units::sign(&card, domains::LOAD_REQUEST, &zero).to_vec(),
            request: zero.clone(),
        })
    });
    refused(&w, ErrorCode::InvalidField, || {
        w.load(&load_order(
            &card,
            0,
            UnitValue::Asset {
                code: "USD".into(),
                amount: 10,
            },
        ))
    });
    refused(&w, ErrorCode::InvalidField, || {
        w.load(&LoadOrder {
            signature: order.signature[..63].to_vec(),
            ..order.clone()
        })
    });
    let mut forged = order.signature.clone();
    forged[10] ^= 1;
    refused(&w, ErrorCode::BadSignature, || {
        w.load(&LoadOrder {
            signature: forged.clone(),
            ..order.clone()
        })
    });
    // The card's signatures under other domains do not pass as a load request.
    for domain in [domains::LOAD_CANCEL, domains::UNLOAD, domains::LOAD_AUTH] {
        refused(&w, ErrorCode::BadSignature, || {
            w.load(&LoadOrder {
                signature: units::sign(&card, domain, &order.request).to_vec(),
                ..order.clone()
            })
        });
    }
    // Another card's signature over this card's request.
    refused(&w, ErrorCode::BadSignature, || {
        w.load(&LoadOrder {
            signature: units::sign(&other, domains::LOAD_REQUEST, &order.request).to_vec(),
            ..order.clone()
        })
    });
    refused(&w, ErrorCode::UnknownCard, || {
        w.load(&load_order(&stranger, 0, jpy(1)))
    });
    refused(&w, ErrorCode::InsufficientFunds, || {
        w.load(&load_order(&card, 0, jpy(33)))
    });
    refused(&w, ErrorCode::InsufficientFunds, || {
        w.load(&load_order(&other, 0, jpy(1)))
    });
    w.load(&order).unwrap();
    refused(&w, ErrorCode::Conflict, || {
        w.load(&load_order(&card, 0, jpy(11)))
    });
    refused(&w, ErrorCode::InsufficientFunds, || {
        w.load(&load_order(&card, 1, jpy(23)))
    });

    // Tickets in loads.
    refused(&w, ErrorCode::UnknownTicket, || {
        w.load(&load_order(&card, 1, ticket("CONCERT", b"nope")))
    });
    issue(&w, other_id, "CONCERT", b"B1");
    refused(&w, ErrorCode::UnknownTicket, || {
        w.load(&load_order(&card, 1, ticket("CONCERT", b"B1")))
    });
    issue(&w, card_id, "CONCERT", b"A1");
    w.load(&load_order(&card, 1, ticket("CONCERT", b"A1")))
        .unwrap();
    refused(&w, ErrorCode::Conflict, || {
        w.load(&load_order(&card, 2, ticket("CONCERT", b"A1")))
    });

    // Cancellations.
    let used = load_order(&card, 0, jpy(10));
    // The load request's own signature is not a cancellation.
    refused(&w, ErrorCode::BadSignature, || {
        w.cancel(&LoadCancellation {
            request: used.request.clone(),
            signature: used.signature.clone(),
        })
    });
    refused(&w, ErrorCode::InvalidField, || {
        w.cancel(&cancellation(&card, &zero))
    });
    refused(&w, ErrorCode::UnknownCard, || {
        w.cancel(&cancellation(
            &stranger,
            &load_order(&stranger, 0, jpy(1)).request,
        ))
    });
    // Another request under a counter the center authorised.
    refused(&w, ErrorCode::Conflict, || {
        w.cancel(&cancellation(&card, &load_order(&card, 0, jpy(9)).request))
    });
    let dead = load_order(&card, 5, jpy(1));
    w.cancel(&cancellation(&card, &dead.request)).unwrap();
    refused(&w, ErrorCode::Conflict, || {
        w.cancel(&cancellation(&card, &load_order(&card, 5, jpy(2)).request))
    });
    refused(&w, ErrorCode::LoadCancelled, || w.load(&dead));
    refused(&w, ErrorCode::LoadCancelled, || {
        w.load(&load_order(&card, 5, jpy(2)))
    });

    // Unloads.
    refused(&w, ErrorCode::InvalidField, || {
        w.unload(&UnloadOrder {
            receipt: order.request.clone(),
            signature: units::sign(&card, domains::UNLOAD, &order.request).to_vec(),
        })
    });
    let ticket_receipt = UnitMessage {
        card_id,
        counter: 0,
        value: ticket("CONCERT", b"A1"),
    }
    .encode_unload();
    refused(&w, ErrorCode::InvalidField, || {
        w.unload(&UnloadOrder {
            signature: units::sign(&card, domains::UNLOAD, &ticket_receipt).to_vec(),
            receipt: ticket_receipt.clone(),
        })
    });
    let zero = zero_amount_message(card_id, 0, units::tag::UNLOAD_RECEIPT);
    refused(&w, ErrorCode::InvalidField, || {
        w.unload(&UnloadOrder {
            signature: units::sign(&card, domains::UNLOAD, &zero).to_vec(),
            receipt: zero.clone(),
        })
    });
    let usd = UnitMessage {
        card_id,
        counter: 0,
        value: UnitValue::Asset {
            code: "USD".into(),
            amount: 5,
        },
    }
    .encode_unload();
    refused(&w, ErrorCode::InvalidField, || {
        w.unload(&UnloadOrder {
            signature: units::sign(&card, domains::UNLOAD, &usd).to_vec(),
            receipt: usd.clone(),
        })
    });
    refused(&w, ErrorCode::BadSignature, || {
        w.unload(&UnloadOrder {
            signature: units::sign(&card, domains::LOAD_REQUEST, &unload.receipt).to_vec(),
            ..unload.clone()
        })
    });
    refused(&w, ErrorCode::UnknownCard, || {
        w.unload(&unload_order(&stranger, 0, 5))
    });
    w.unload(&unload).unwrap();
    refused(&w, ErrorCode::Conflict, || {
        w.unload(&unload_order(&card, 0, 6))
    });

    // Ticket issuing.
    let req = |asset: &str, serial: Option<Vec<u8>>| TicketIssueRequest {
        card_id,
        asset: asset.into(),
        serial,
    };
    refused(&w, ErrorCode::AdminUnauthorized, || {
        w.post::<_, IssuedTicket>("/center/v1/tickets", &req("CONCERT", None))
    });
    refused(&w, ErrorCode::AdminUnauthorized, || {
        w.issue_ticket("wrong", &req("CONCERT", None))
    });
    assert_eq!(
        w.center
            .issue_ticket(None, &req("CONCERT", None))
            .unwrap_err()
            .code,
        ErrorCode::AdminUnauthorized
    );
    for bad in ["", "NINECHARS", "TWO WORD", "JPY"] {
        refused(&w, ErrorCode::InvalidField, || {
            w.issue_ticket(ADMIN, &req(bad, None))
        });
    }
    refused(&w, ErrorCode::InvalidField, || {
        w.issue_ticket(ADMIN, &req("CONCERT", Some(vec![])))
    });
    refused(&w, ErrorCode::InvalidField, || {
        w.issue_ticket(ADMIN, &req("CONCERT", Some(vec![7; 33])))
    });
    refused(&w, ErrorCode::UnknownCard, || {
        w.issue_ticket(
            ADMIN,
            &TicketIssueRequest {
                card_id: [0x5A; 32],
                ..req("CONCERT", None)
            },
        )
    });
    refused(&w, ErrorCode::Conflict, || {
        w.issue_ticket(ADMIN, &req("CONCERT", Some(b"B1".to_vec())))
    });

    // Ledger.
    let ledger = |proof: Option<CardProof>| LedgerRequest { card_id, proof };
    refused(&w, ErrorCode::AdminUnauthorized, || {
        w.post::<_, CardLedger>("/center/v1/ledger", &ledger(None))
    });
    refused(&w, ErrorCode::AdminUnauthorized, || {
        w.post_admin::<_, CardLedger>("/center/v1/ledger", "wrong", &ledger(None))
    });
    refused(&w, ErrorCode::UnknownCard, || {
        w.post_admin::<_, CardLedger>(
            "/center/v1/ledger",
            ADMIN,
            &LedgerRequest {
                card_id: [0x5A; 32],
                proof: None,
            },
        )
    });
    let proof = w.balance_proof(&card);
    let _: CardLedger = w
        .post("/center/v1/ledger", &ledger(Some(proof.clone())))
        .unwrap();
    refused(&w, ErrorCode::BadChallenge, || {
        w.post::<_, CardLedger>("/center/v1/ledger", &ledger(Some(proof.clone())))
    });
    // Another card's proof does not open this card's ledger, nor does a register challenge.
    let theirs = w.balance_proof(&other);
    refused(&w, ErrorCode::BadSignature, || {
        w.post::<_, CardLedger>("/center/v1/ledger", &ledger(Some(theirs.clone())))
    });
    let challenge = w.challenge(ChallengePurpose::Register);
    refused(&w, ErrorCode::BadChallenge, || {
        w.post::<_, CardLedger>(
            "/center/v1/ledger",
            &ledger(Some(CardProof {
                challenge,
                signature: apdu_spec::auth::sign(&card, &challenge).to_vec(),
            })),
        )
    });

    // After all that, the card's units are exactly what the accepted requests moved.
    assert_eq!(w.card_balance(&card), 32 - 10 + 5);
    let dump = center_dump(&w);
    assert_eq!(
        (
            dump["loads"].len(),
            dump["load_cancellations"].len(),
            dump["unloads"].len(),
            dump["tickets"].len()
        ),
        (2, 1, 1, 2)
    );
}

#[test]
fn concurrent_loads_never_overdraw() {
    let w = World::new(&[256, 32]);
    let account = w.open_account(1000);
    let (card, _) = w.funded_card(&account, &[256, 32]);
    const N: u32 = 32;
    const AMOUNT: u64 = 20;
    let orders: Vec<LoadOrder> = (0..N).map(|c| load_order(&card, c, jpy(AMOUNT))).collect();
    let barrier = Arc::new(Barrier::new(N as usize));
    let url = w.url("/center/v1/loads");
    let threads: Vec<_> = orders
        .into_iter()
        .map(|order| {
            let (barrier, url) = (barrier.clone(), url.clone());
            std::thread::spawn(move || {
                let agent = agent();
                barrier.wait();
                answer::<LoadAuthorisation>(agent.post(&url).send_json(&order))
                    .map_err(|f| (f.status, f.code))
            })
        })
        .collect();
    let answers: Vec<_> = threads.into_iter().map(|t| t.join().unwrap()).collect();
    let authorised = answers.iter().filter(|a| a.is_ok()).count() as u64;
    assert_eq!(authorised, 288 / AMOUNT, "exactly floor(balance / amount)");
    for a in &answers {
        match a {
            Ok(auth) => assert!(!auth.replayed),
            Err(e) => assert_eq!(*e, (422, ErrorCode::InsufficientFunds)),
        }
    }
    let balance = w.card_balance(&card);
    assert_eq!(balance, 288 - authorised * AMOUNT);
    let ledger = w.ledger(&card);
    let t = &ledger.totals;
    assert_eq!(
        (t.redeemed, t.loaded, t.refunded, t.unloaded),
        (288, authorised * AMOUNT, 0, 0)
    );
    assert_eq!(t.redeemed - t.loaded + t.refunded + t.unloaded, balance);
    assert_eq!(center_dump(&w)["loads"].len() as u64, authorised);
}

#[test]
fn concurrent_retries_of_one_load_debit_once() {
    let w = World::new(&[32]);
    let account = w.open_account(100);
    let (card, _) = w.funded_card(&account, &[32]);
    let order = load_order(&card, 9, jpy(30));
    const N: usize = 16;
    let barrier = Arc::new(Barrier::new(N));
    let url = w.url("/center/v1/loads");
    let threads: Vec<_> = (0..N)
        .map(|_| {
            let (barrier, url, order) = (barrier.clone(), url.clone(), order.clone());
            std::thread::spawn(move || {
                let agent = agent();
                barrier.wait();
                let mut response = agent.post(&url).send_json(&order).unwrap();
                assert_eq!(response.status().as_u16(), 200);
                response
                    .body_mut()
                    .read_json::<LoadAuthorisation>()
                    .unwrap()
            })
        })
        .collect();
    let answers: Vec<_> = threads.into_iter().map(|t| t.join().unwrap()).collect();
    assert_eq!(answers.iter().filter(|a| !a.replayed).count(), 1);
    let first = LoadAuthorisation {
        replayed: false,
        ..answers[0].clone()
    };
    for a in &answers {
        assert_eq!(
            LoadAuthorisation {
                replayed: false,
                ..a.clone()
            },
            first
        );
    }
    assert_eq!(w.card_balance(&card), 2);
    let dump = center_dump(&w);
    assert_eq!(dump["loads"].len(), 1);
    assert!(dump["loads"][0].contains(&Value::Int(30)));
}
