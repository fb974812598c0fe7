//! `valuecard apdu`.

use std::process::ExitCode;

use apdu_spec::apdu::Response;
use apdu_spec::status;
use valuecard_terminal::Client;

use super::{CliError, Result, open};
use crate::cli::Global;

pub fn run(global: &Global, raw: bool, apdus: &[String]) -> Result<ExitCode> {
    // Parse everything before sending anything: a typo in the third APDU should not leave
    // the first two done.
    let commands = apdus
        .iter()
        .map(|a| parse_hex(a))
        .collect::<Result<Vec<_>>>()?;
    let mut client = Client::new(open(global)?);
    for command in &commands {
        let answer = if raw {
            client.transmit_raw(command)?
        } else {
            client.transmit_apdu(command)?
        };
        println!("{}", show(&answer));
    }
    Ok(ExitCode::SUCCESS)
}

fn parse_hex(text: &str) -> Result<Vec<u8>> {
    let digits: String = text.chars().filter(|c| !c.is_whitespace()).collect();
    let bytes = hex::decode(&digits).map_err(|e| {
        CliError::new(format!("{text:?} is not an APDU in hex: {e}"))
            .hint("write bytes as hex digit pairs, e.g. '00 CA 00 6E 00'")
    })?;
    if bytes.len() < 4 {
        return Err(CliError::new(format!(
            "{text:?} is shorter than an APDU header (4 bytes: CLA INS P1 P2)"
        )));
    }
    Ok(bytes)
}

fn show(answer: &Response) -> String {
    let data = if answer.data.is_empty() {
        String::new()
    } else {
        format!("{} ", hex::encode_upper(&answer.data))
    };
    format!(
        "<< {data}{:04X} — {}",
        answer.sw,
        status::describe(answer.sw)
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn hex_with_spaces() {
        assert_eq!(
            parse_hex("00 ca 00 6e\t00").ok(),
            Some(vec![0, 0xCA, 0, 0x6E, 0])
        );
        assert!(parse_hex("00 CA 0").is_err());
        assert!(parse_hex("00CA").is_err());
        assert_eq!(
            show(&Response {
                data: vec![0xC4, 1, 1],
                sw: 0x9000
            }),
            "<< C40101 9000 — success"
        );
    }
}
