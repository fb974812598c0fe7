//! Prints the generated tables of `SPEC.md`, or writes them into it.
//!
//! `cargo run -p valuecard-apdu-spec --example spec_tables` prints both tables with their
//! markers; `-- --write` replaces the text between the markers in `apdu-spec/SPEC.md`.
//! The `spec_drift` test fails whenever `SPEC.md` and the tables disagree.

use apdu_spec::commands::spec_tables;

fn main() {
    let write = std::env::args().skip(1).any(|a| a == "--write");
    if !write {
        for (begin, end, table) in spec_tables() {
            print!("{begin}\n{table}{end}\n\n");
        }
        return;
    }
    let path = concat!(env!("CARGO_MANIFEST_DIR"), "/SPEC.md");
    let mut text = match std::fs::read_to_string(path) {
        Ok(text) => text,
        Err(e) => {
            eprintln!("cannot read {path}: {e}");
            std::process::exit(1);
        }
    };
    for (begin, end, table) in spec_tables() {
        let (Some(start), Some(stop)) = (text.find(begin), text.find(end)) else {
            eprintln!("{path} lacks the markers {begin} / {end}");
            std::process::exit(1);
        };
        let start = start + begin.len();
        if stop < start {
            eprintln!("{path}: {end} comes before {begin}");
            std::process::exit(1);
        }
        text.replace_range(start..stop, &format!("\n{table}"));
    }
    if let Err(e) = std::fs::write(path, text) {
        eprintln!("cannot write {path}: {e}");
        std::process::exit(1);
    }
    println!("updated the generated tables in {path}");
}
