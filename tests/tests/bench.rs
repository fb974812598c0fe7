//! `valuecard bench --quick --json`: every row is there, with a figure and a reference.
//!
//! The CLI takes the vpcd lock itself while it uses the slots, so this test must not hold
//! it (it would wait for itself). It fails, never skips, when pcscd, vpcd or openssl is
//! missing: the command fails then.

use std::time::Instant;

use serde_json::Value;
use valuecard_tests::{json, valuecard_env};

const ROWS: &[(&str, &str)] = &[
    ("apdu_in_process", "µs"),
    ("apdu_pcscd", "µs"),
    ("exchange_in_process", "exchanges/s"),
    ("exchange_pcscd", "exchanges/s"),
    ("blind_sign", "signs/s"),
    ("redeem_http", "redemptions/s"),
    ("verdict_http", "verdicts/s"),
    ("card_memory", "MiB"),
];

#[test]
fn every_row_has_a_figure_and_a_reference() {
    let start = Instant::now();
    let run = valuecard_env(&["bench", "--quick", "--json"], &[]).expect_ok("valuecard bench");
    let report = json(&run);
    eprintln!("valuecard bench --quick took {:?}", start.elapsed());

    assert_eq!(report["quick"], Value::Bool(true));
    assert_eq!(report["runs"], 3);
    assert!(report["machine"]["cores"].as_u64() > Some(0), "{report}");
    assert!(!report["machine"]["cpu"].as_str().unwrap_or("").is_empty());
    assert!(report["date"].as_str().is_some_and(|d| d.len() == 10));

    let rows = report["rows"].as_array().expect("rows");
    let ids: Vec<&str> = rows.iter().filter_map(|r| r["id"].as_str()).collect();
    assert_eq!(
        ids,
        ROWS.iter().map(|(id, _)| *id).collect::<Vec<_>>(),
        "every row, in order"
    );
    for (row, (id, unit)) in rows.iter().zip(ROWS) {
        let number = |field: &str| {
            row[field]
                .as_f64()
                .unwrap_or_else(|| panic!("{id}: {field} is not a number: {row}"))
        };
        assert_eq!(row["unit"], *unit, "{row}");
        assert!(number("figure") > 0.0, "{row}");
        assert!(number("reference_figure") > 0.0, "{row}");
        let ratio = number("ratio");
        assert!(ratio.is_finite() && ratio > 0.0, "{row}");
        for text in ["name", "reference", "detail"] {
            assert!(
                row[text].as_str().is_some_and(|t| !t.is_empty()),
                "{id}: no {text}: {row}"
            );
        }
    }
}

#[test]
fn help_says_what_it_measures_and_needs() {
    let run = valuecard_env(&["bench", "--help"], &[]).expect_ok("valuecard bench --help");
    for words in [
        "pcscd",
        "openssl speed rsa2048",
        "valuecard-backend",
        "release build",
        "Examples:",
    ] {
        assert!(
            run.stdout.contains(words),
            "no {words:?} in:\n{}",
            run.stdout
        );
    }
}
