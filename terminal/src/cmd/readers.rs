//! `valuecard readers`.

use std::process::ExitCode;

use valuecard_terminal::pcsc::{self, ReaderInfo};

use super::Result;

pub fn run(json: bool) -> Result<ExitCode> {
    let readers = pcsc::list_readers()?;
    if json {
        let list: Vec<serde_json::Value> = readers
            .iter()
            .enumerate()
            .map(|(index, r)| {
                serde_json::json!({
                    "index": index,
                    "name": r.name,
                    "card_present": r.card_present,
                    "atr": r.atr.as_ref().map(hex::encode_upper),
                    "valuecard": is_valuecard(r),
                })
            })
            .collect();
        println!("{}", serde_json::Value::Array(list));
        return Ok(ExitCode::SUCCESS);
    }
    if readers.is_empty() {
        println!("no smartcard readers found");
        return Ok(ExitCode::SUCCESS);
    }
    let width = readers
        .iter()
        .map(|r| r.name.len())
        .max()
        .unwrap_or(0)
        .max("reader".len());
    println!("{:<3} {:<width$}  {:<5} ATR", "#", "reader", "card");
    for (index, r) in readers.iter().enumerate() {
        let card = match (r.card_present, &r.atr) {
            (false, _) => "no",
            (true, Some(_)) => "yes",
            (true, None) => "mute",
        };
        let atr = r.atr.as_ref().map(hex::encode_upper).unwrap_or_default();
        let tag = if is_valuecard(r) { "  valuecard" } else { "" };
        println!("{index:<3} {:<width$}  {card:<5} {atr}{tag}", r.name);
    }
    Ok(ExitCode::SUCCESS)
}

fn is_valuecard(reader: &ReaderInfo) -> bool {
    reader.atr.as_deref() == Some(apdu_spec::ATR)
}
