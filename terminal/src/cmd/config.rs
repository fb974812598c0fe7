//! `valuecard config`: the settings in effect, and where each came from.

use std::process::ExitCode;

use serde_json::{Value, json};
use valuecard_terminal::journal;

use super::Result;
use crate::cli::Global;
use crate::settings::Source;

/// One row: the key, its value in effect (None: not set), where it came from, and what
/// not being set means.
struct Row {
    key: &'static str,
    value: Option<String>,
    source: Source,
    /// The bank, the center or the arbiter, at the backend's address.
    via_backend: bool,
    note: Option<String>,
}

fn rows(global: &Global) -> Vec<Row> {
    let s = &global.sources;
    // The bank, the center and the arbiter default to the backend, and then say so.
    let role = |key: &'static str, value: &Option<String>, source: &Source| match value {
        Some(v) => Row {
            key,
            value: Some(v.clone()),
            source: source.clone(),
            via_backend: false,
            note: None,
        },
        None => Row {
            key,
            value: Some(global.backend.clone()),
            source: s.backend.clone(),
            via_backend: true,
            note: None,
        },
    };
    vec![
        Row {
            key: "backend",
            value: Some(global.backend.clone()),
            source: s.backend.clone(),
            via_backend: false,
            note: None,
        },
        role("bank", &global.bank, &s.bank),
        role("center", &global.center, &s.center),
        role("arbiter", &global.arbiter, &s.arbiter),
        Row {
            key: "reader",
            value: global.reader.clone(),
            source: s.reader.clone(),
            via_backend: false,
            note: Some(if global.card_state.is_some() {
                "--card-state card".into()
            } else {
                "first reader holding a card".into()
            }),
        },
        Row {
            key: "journal",
            value: global
                .journal
                .clone()
                .or_else(journal::default_path)
                .map(|p| p.display().to_string()),
            source: s.journal.clone(),
            via_backend: false,
            note: Some("none: set --journal".into()),
        },
        Row {
            key: "initiator",
            value: s.initiator.clone(),
            source: s.initiator_source.clone(),
            via_backend: false,
            note: Some("none".into()),
        },
        Row {
            key: "responder",
            value: s.responder.clone(),
            source: s.responder_source.clone(),
            via_backend: false,
            note: Some("none".into()),
        },
    ]
}

pub fn run(global: &Global, json: bool) -> Result<ExitCode> {
    let rows = rows(global);
    let config = &global.sources.config;
    if json {
        let settings: serde_json::Map<String, Value> = rows
            .iter()
            .map(|r| {
                (
                    r.key.to_string(),
                    json!({
                        "value": r.value,
                        "source": r.source.kind(),
                        "origin": r.source.origin(),
                        "via_backend": r.via_backend,
                    }),
                )
            })
            .collect();
        println!(
            "{}",
            json!({
                "config_file": {
                    "path": config.path.as_ref().map(|p| p.display().to_string()),
                    "source": config.source.kind(),
                    "loaded": config.loaded,
                },
                "settings": settings,
            })
        );
        return Ok(ExitCode::SUCCESS);
    }
    let file = match (&config.path, config.loaded) {
        (Some(path), true) => format!("{} (read)", path.display()),
        (Some(path), false) => format!("{} (not there: nothing read)", path.display()),
        (None, _) => "none (neither XDG_CONFIG_HOME nor HOME is set)".into(),
    };
    let how = match &config.source {
        Source::Default => String::new(),
        other => format!(", named by {other}"),
    };
    println!("config file: {file}{how}");
    let width = rows
        .iter()
        .map(|r| r.value.as_ref().map_or(0, |v| v.chars().count()))
        .max()
        .unwrap_or(0)
        .clamp(8, 48);
    for r in &rows {
        let source = if r.via_backend {
            format!("{}, via backend", r.source)
        } else {
            r.source.to_string()
        };
        let value = match (&r.value, &r.note) {
            (Some(v), _) => v.clone(),
            (None, Some(note)) => format!("({note})"),
            (None, None) => "(not set)".into(),
        };
        println!("{:<10} {value:<width$}  {source}", r.key);
    }
    Ok(ExitCode::SUCCESS)
}
