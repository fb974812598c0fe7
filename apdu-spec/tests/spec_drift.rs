//! Keeps `SPEC.md` in step with the command table and the status catalogue.
//!
//! The two tables between the `<!-- BEGIN ... -->` / `<!-- END ... -->` markers are generated:
//! `cargo run -p valuecard-apdu-spec --example spec_tables -- --write` rewrites them. The
//! command sections under `## Commands` are written by hand, and this test checks that each
//! command of `apdu_spec::COMMANDS` has exactly one, with its header bytes and every status
//! word it can answer.

use apdu_spec::COMMANDS;
use apdu_spec::commands::spec_tables;
use apdu_spec::status::CARD_STATUS_WORDS;

const SPEC: &str = include_str!("../SPEC.md");
const REGENERATE: &str = "cargo run -p valuecard-apdu-spec --example spec_tables -- --write";
const COMMANDS_HEADING: &str = "## Commands";

/// The text between a marker pair, if both markers are there once each and in order.
fn between<'a>(text: &'a str, begin: &str, end: &str) -> Result<&'a str, String> {
    if text.matches(begin).count() != 1 || text.matches(end).count() != 1 {
        return Err(format!(
            "SPEC.md must hold {begin} and {end} exactly once each"
        ));
    }
    let start = text
        .find(begin)
        .map(|i| i + begin.len())
        .unwrap_or_default();
    let stop = text.find(end).unwrap_or_default();
    text.get(start..stop)
        .ok_or_else(|| format!("{end} comes before {begin} in SPEC.md"))
}

/// SPEC.md without the generated tables: what people wrote.
fn prose() -> String {
    let mut text = SPEC.to_string();
    for (begin, end, _) in spec_tables() {
        if let (Some(start), Some(stop)) = (text.find(begin), text.find(end))
            && start < stop
        {
            text.replace_range(start..stop + end.len(), "");
        }
    }
    text
}

/// The `### ` sections of the `## Commands` part: (heading, body).
fn command_sections() -> Result<Vec<(String, String)>, String> {
    let mut lines = SPEC
        .lines()
        .skip_while(|l| l.trim_end() != COMMANDS_HEADING);
    if lines.next().is_none() {
        return Err(format!("SPEC.md has no {COMMANDS_HEADING:?} heading"));
    }
    let mut sections: Vec<(String, String)> = Vec::new();
    for line in lines.take_while(|l| !(l.starts_with("## ") || l.starts_with("# "))) {
        if let Some(name) = line.strip_prefix("### ") {
            sections.push((name.trim().to_string(), String::new()));
        } else if let Some((_, body)) = sections.last_mut() {
            body.push_str(line);
            body.push('\n');
        } else if line.starts_with('#') {
            return Err(format!("unexpected heading {line:?} in {COMMANDS_HEADING}"));
        }
    }
    Ok(sections)
}

fn report(problems: &[String], how: &str) {
    assert!(
        problems.is_empty(),
        "apdu-spec/SPEC.md is out of step with the apdu-spec crate:\n  - {}\n\n{how}",
        problems.join("\n  - ")
    );
}

#[test]
fn generated_tables_are_current() {
    let mut problems = Vec::new();
    for (begin, end, table) in spec_tables() {
        match between(SPEC, begin, end) {
            Ok(text) if text == format!("\n{table}") => {}
            Ok(text) => {
                let first_difference = text
                    .trim_start_matches('\n')
                    .lines()
                    .zip(table.lines())
                    .find(|(a, b)| a != b)
                    .map(|(a, b)| format!("SPEC.md has\n      {a}\n    generated\n      {b}"))
                    .unwrap_or_else(|| "the number of lines differs".to_string());
                problems.push(format!(
                    "the table between {begin} and {end} is stale: {first_difference}"
                ));
            }
            Err(e) => problems.push(e),
        }
    }
    report(
        &problems,
        &format!("Regenerate the tables with:\n    {REGENERATE}"),
    );
}

#[test]
fn every_command_has_one_section_with_its_header_and_status_words() {
    let sections = match command_sections() {
        Ok(sections) => sections,
        Err(e) => {
            return report(
                &[e],
                "Commands live under `## Commands`, one `### NAME` section each.",
            );
        }
    };
    let mut problems = Vec::new();
    for c in COMMANDS {
        let mine: Vec<&String> = sections
            .iter()
            .filter(|(n, _)| n == c.name)
            .map(|(_, b)| b)
            .collect();
        let [body] = mine[..] else {
            problems.push(format!(
                "{} has {} `### {}` sections under {COMMANDS_HEADING}, not 1",
                c.name,
                mine.len(),
                c.name
            ));
            continue;
        };
        let header = format!("`{:02X} {:02X} ", c.cla, c.ins);
        if !body.contains(&header) {
            problems.push(format!(
                "### {} does not give its header bytes as `{:02X} {:02X} P1 P2`",
                c.name, c.cla, c.ins
            ));
        }
        for sw in c.status_words {
            if !body.contains(sw) {
                problems.push(format!(
                    "### {} does not mention {sw}, one of its status words",
                    c.name
                ));
            }
        }
    }
    for (name, _) in &sections {
        if !COMMANDS.iter().any(|c| c.name == name) {
            problems.push(format!(
                "`### {name}` under {COMMANDS_HEADING} is not a command of apdu_spec::COMMANDS"
            ));
        }
    }
    report(
        &problems,
        "The command sections are written by hand: add, rename or complete them to match \
         apdu_spec::commands (and regenerate the tables with `cargo run -p valuecard-apdu-spec \
         --example spec_tables -- --write`).",
    );
}

#[test]
fn every_card_status_word_is_explained() {
    let prose = prose();
    let problems: Vec<String> = CARD_STATUS_WORDS
        .iter()
        .filter(|d| !prose.contains(d.pattern))
        .map(|d| {
            format!(
                "{} ({}) appears only in the generated table, or nowhere",
                d.pattern, d.meaning
            )
        })
        .collect();
    report(
        &problems,
        &format!(
            "Explain every status word of apdu_spec::status::CARD_STATUS_WORDS in the text of SPEC.md, \
             and regenerate the tables with:\n    {REGENERATE}"
        ),
    );
}
