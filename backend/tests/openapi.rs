//! The OpenAPI documents stay in step with the routers: the documents list exactly the
//! routes of the API, every documented route answers (not 404 or 405), and a method a path
//! does not document is refused with 405.
#![allow(clippy::unwrap_used)]

mod common;

use std::collections::BTreeSet;

use common::*;
use valuecard_backend::http::{arbiter_openapi, bank_openapi, center_openapi};
use valuecard_protocol::ErrorCode;

const BANK_ROUTES: &[(&str, &str)] = &[
    ("post", "/bank/v1/accounts"),
    ("post", "/bank/v1/deposits"),
    ("post", "/bank/v1/balance"),
    ("get", "/bank/v1/keys"),
    ("post", "/bank/v1/withdrawals"),
    ("get", "/bank/openapi.json"),
    ("get", "/healthz"),
];

const CENTER_ROUTES: &[(&str, &str)] = &[
    ("get", "/center/v1/info"),
    ("post", "/center/v1/challenges"),
    ("post", "/center/v1/cards"),
    ("post", "/center/v1/bank-keys"),
    ("post", "/center/v1/redemptions"),
    ("post", "/center/v1/balance"),
    ("post", "/center/v1/loads"),
    ("post", "/center/v1/load-cancellations"),
    ("post", "/center/v1/unloads"),
    ("post", "/center/v1/tickets"),
    ("post", "/center/v1/ledger"),
    ("post", "/center/v1/blocks"),
    ("get", "/center/v1/block-list"),
    ("get", "/center/v1/float"),
    ("get", "/center/openapi.json"),
    ("get", "/healthz"),
];

const ARBITER_ROUTES: &[(&str, &str)] = &[
    ("get", "/arbiter/v1/info"),
    ("post", "/arbiter/v1/cancellations"),
    ("post", "/arbiter/v1/resolutions"),
    ("get", "/arbiter/v1/verdicts/{a}/{s2}"),
    ("post", "/arbiter/v1/block-list"),
    ("get", "/arbiter/openapi.json"),
    ("get", "/healthz"),
];

const METHODS: &[&str] = &["get", "post", "put", "delete", "patch"];

/// (method, path) of every operation in a document.
fn operations(doc: &serde_json::Value) -> BTreeSet<(String, String)> {
    let mut out = BTreeSet::new();
    for (path, item) in doc["paths"].as_object().unwrap() {
        for method in item.as_object().unwrap().keys() {
            if METHODS.contains(&method.as_str()) {
                out.insert((method.clone(), path.clone()));
            }
        }
    }
    out
}

fn expected(routes: &[(&str, &str)]) -> BTreeSet<(String, String)> {
    routes
        .iter()
        .map(|(m, p)| (m.to_string(), p.to_string()))
        .collect()
}

#[test]
fn documents_list_exactly_the_routes() {
    let bank = serde_json::to_value(bank_openapi()).unwrap();
    let center = serde_json::to_value(center_openapi()).unwrap();
    let arbiter = serde_json::to_value(arbiter_openapi()).unwrap();
    assert_eq!(operations(&bank), expected(BANK_ROUTES));
    assert_eq!(operations(&center), expected(CENTER_ROUTES));
    assert_eq!(operations(&arbiter), expected(ARBITER_ROUTES));
    // The request and answer types are described, and so is the error body.
    for (doc, schemas) in [
        (
            &bank,
            &[
                "WithdrawRequest",
                "WithdrawAnswer",
                "SignedKeyList",
                "ErrorBody",
                "ErrorCode",
            ][..],
        ),
        (
            &center,
            &[
                "RedeemRequest",
                "Redemption",
                "RegisterRequest",
                "ErrorBody",
                "LoadOrder",
                "LoadAuthorisation",
                "LoadCancellation",
                "CancelAcknowledgement",
                "CancelOutcome",
                "UnloadOrder",
                "UnloadAcknowledgement",
                "TicketIssueRequest",
                "IssuedTicket",
                "LedgerRequest",
                "CardLedger",
                "LedgerEntry",
                "LedgerKind",
                "LedgerTotals",
                "CenterInfo",
                "Registration",
                "BlockRequest",
                "BlockAnswer",
                "BlockList",
                "BlockEntry",
                "FloatReport",
                "AssetFloat",
                "FloatAlarm",
            ][..],
        ),
        (
            &arbiter,
            &[
                "ArbiterInfo",
                "ArbiterCancelRequest",
                "ArbiterResolveRequest",
                "Verdict",
                "VerdictAnswer",
                "BlockList",
                "BlockListStatus",
                "ErrorBody",
                "ErrorCode",
            ][..],
        ),
    ] {
        for schema in schemas {
            assert!(
                doc["components"]["schemas"].get(schema).is_some(),
                "{schema} is not described"
            );
        }
    }
    assert!(bank["components"]["securitySchemes"].get("admin").is_some());
    assert!(
        center["components"]["securitySchemes"]
            .get("admin")
            .is_some()
    );
    // The arbiter has no admin routes; its outcome is one of two names.
    assert!(arbiter["components"].get("securitySchemes").is_none());
    assert_eq!(
        arbiter["components"]["schemas"]["Verdict"]["properties"]["outcome"]["enum"],
        serde_json::json!(["complete", "cancel"])
    );
    // The admin routes say so, and every error code a route can answer is documented.
    for (method, path) in [
        ("post", "/center/v1/tickets"),
        ("post", "/center/v1/blocks"),
        ("get", "/center/v1/float"),
    ] {
        assert_eq!(
            center["paths"][path][method]["security"],
            serde_json::json!([{ "admin": [] }]),
            "{path}"
        );
    }
    for (method, path, codes) in [
        (
            "post",
            "/center/v1/cards",
            &[
                "malformed_request",
                "invalid_field",
                "untrusted_maker",
                "card_blocked",
                "attestation_reused",
                "already_registered",
                "bad_challenge",
                "bad_signature",
                "bad_attestation",
            ][..],
        ),
        (
            "post",
            "/center/v1/balance",
            &[
                "malformed_request",
                "card_blocked",
                "unknown_card",
                "bad_challenge",
                "bad_signature",
            ][..],
        ),
        (
            "post",
            "/center/v1/blocks",
            &["malformed_request", "invalid_field", "admin_unauthorized"][..],
        ),
        ("get", "/center/v1/float", &["admin_unauthorized"][..]),
    ] {
        documents_codes(&center, method, path, codes);
    }
    for (path, codes) in [
        (
            "/center/v1/loads",
            &[
                "malformed_request",
                "invalid_field",
                "card_blocked",
                "unknown_card",
                "unknown_ticket",
                "load_cancelled",
                "conflict",
                "bad_signature",
                "certificate_expired",
                "insufficient_funds",
            ][..],
        ),
        (
            "/center/v1/load-cancellations",
            &[
                "malformed_request",
                "invalid_field",
                "unknown_card",
                "conflict",
                "bad_signature",
            ][..],
        ),
        (
            "/center/v1/unloads",
            &[
                "malformed_request",
                "invalid_field",
                "card_blocked",
                "unknown_card",
                "conflict",
                "bad_signature",
                "float_exceeded",
            ][..],
        ),
        (
            "/center/v1/tickets",
            &[
                "malformed_request",
                "invalid_field",
                "admin_unauthorized",
                "card_blocked",
                "unknown_card",
                "conflict",
            ][..],
        ),
        (
            "/center/v1/ledger",
            &[
                "malformed_request",
                "admin_unauthorized",
                "card_blocked",
                "unknown_card",
                "bad_challenge",
                "bad_signature",
            ][..],
        ),
    ] {
        documents_codes(&center, "post", path, codes);
    }
    for (method, path, codes) in [
        (
            "post",
            "/arbiter/v1/cancellations",
            &[
                "malformed_request",
                "invalid_field",
                "card_blocked",
                "conflict",
                "not_a_party",
                "bad_signature",
            ][..],
        ),
        (
            "post",
            "/arbiter/v1/resolutions",
            &[
                "malformed_request",
                "invalid_field",
                "card_blocked",
                "conflict",
                "not_a_party",
                "bad_signature",
            ][..],
        ),
        (
            "get",
            "/arbiter/v1/verdicts/{a}/{s2}",
            &["invalid_field"][..],
        ),
        (
            "post",
            "/arbiter/v1/block-list",
            &["malformed_request", "invalid_field", "bad_signature"][..],
        ),
    ] {
        documents_codes(&arbiter, method, path, codes);
    }
}

/// Asserts that `method path` in `doc` documents each of `codes` under its HTTP status.
#[track_caller]
fn documents_codes(doc: &serde_json::Value, method: &str, path: &str, codes: &[&str]) {
    let responses = doc["paths"][path][method]["responses"]
        .as_object()
        .unwrap_or_else(|| panic!("{method} {path} is not documented"));
    for code in codes {
        let status = code_status(code).to_string();
        let description = responses
            .get(&status)
            .and_then(|r| r["description"].as_str())
            .unwrap_or_else(|| panic!("{path}: no {status} answer for {code}"));
        assert!(
            description.contains(code),
            "{path}: {status} does not name {code}: {description}"
        );
    }
}

/// The HTTP status of an error code, by its name.
fn code_status(name: &str) -> u16 {
    let code: ErrorCode = serde_json::from_value(serde_json::json!(name)).unwrap();
    code.http_status()
}

#[test]
fn every_documented_route_answers_and_other_methods_are_refused() {
    let w = World::new(&[]);
    for routes in [BANK_ROUTES, CENTER_ROUTES, ARBITER_ROUTES] {
        let documented = expected(routes);
        for (method, template) in &documented {
            // A path parameter gets a value of the right form.
            let path = &template
                .replace("{s2}", &"00".repeat(32))
                .replace("{a}", &"11".repeat(32));
            let body: &[u8] = if method == "post" { b"{}" } else { b"" };
            let content_type = (method == "post").then_some("application/json");
            match w.raw(&method.to_uppercase(), path, content_type, body) {
                Ok(status) => assert_eq!(status, 200, "{method} {path}"),
                Err(f) => assert!(
                    f.code != ErrorCode::NotFound && f.code != ErrorCode::MethodNotAllowed,
                    "{method} {path}: {f:?}"
                ),
            }
            for other in METHODS
                .iter()
                .filter(|m| !documented.contains(&(m.to_string(), template.clone())))
            {
                let f = w.raw(&other.to_uppercase(), path, None, b"").unwrap_err();
                assert_eq!(
                    (f.status, f.code),
                    (405, ErrorCode::MethodNotAllowed),
                    "{other} {path}"
                );
            }
        }
    }
    // The served documents are the ones checked above.
    let served: serde_json::Value = w.get("/bank/openapi.json").unwrap();
    assert_eq!(served, serde_json::to_value(bank_openapi()).unwrap());
    let served: serde_json::Value = w.get("/center/openapi.json").unwrap();
    assert_eq!(served, serde_json::to_value(center_openapi()).unwrap());
    let served: serde_json::Value = w.get("/arbiter/openapi.json").unwrap();
    assert_eq!(served, serde_json::to_value(arbiter_openapi()).unwrap());
}
