//! `valuecard bank`: accounts at the bank.

use std::process::ExitCode;

use rand::RngExt;
use serde_json::json;
use valuecard_protocol::api::DepositRequest;

use super::{CliError, Endpoints, Result, secret_from};
use crate::cli::BankCommand;

/// Letters and digits nobody confuses when copying them by hand (no 0/O, 1/l/I).
const ALPHABET: &[u8] = b"23456789abcdefghjkmnpqrstuvwxyz";
const CREDENTIAL_LEN: usize = 24;

pub fn run(endpoints: &Endpoints, command: BankCommand) -> Result<ExitCode> {
    match command {
        BankCommand::OpenAccount {
            credential,
            deposit,
            admin,
            json,
        } => open_account(endpoints, credential, deposit, admin.admin_token, json),
        BankCommand::Deposit {
            account,
            amount,
            reference,
            admin,
            json,
        } => {
            let admin_token = admin_token_from(admin.admin_token)?;
            let (answer, generated) =
                deposit(endpoints, &admin_token, &account, amount, reference)?;
            if json {
                println!(
                    "{}",
                    json!({
                        "account": answer.account,
                        "amount": answer.amount,
                        "reference": answer.reference,
                        "balance_after": answer.balance_after,
                    })
                );
            } else {
                let note = if generated { " (made here)" } else { "" };
                println!(
                    "deposited:  {} into account {}",
                    answer.amount, answer.account
                );
                println!("reference:  {}{note}", answer.reference);
                println!("balance:    {}", answer.balance_after);
            }
            Ok(ExitCode::SUCCESS)
        }
        BankCommand::Balance {
            account,
            credential,
            json,
        } => {
            let credential = secret_from(
                credential,
                &format!("credential of account {account}"),
                "--credential C",
                "VALUECARD_CREDENTIAL",
            )?;
            let balance = endpoints.bank().balance(&account, &credential)?;
            if json {
                println!(
                    "{}",
                    json!({
                        "account": balance.account,
                        "balance": balance.balance,
                        "currency": balance.currency,
                    })
                );
            } else {
                println!(
                    "account {}: {} {}",
                    balance.account, balance.balance, balance.currency
                );
            }
            Ok(ExitCode::SUCCESS)
        }
    }
}

pub(super) fn admin_token_from(value: Option<String>) -> Result<String> {
    value.ok_or_else(|| {
        CliError::new("this needs the backend's admin token")
            .hint("pass --admin-token TOKEN or set VALUECARD_ADMIN_TOKEN")
    })
}

/// A random string of `len` characters from [`ALPHABET`].
fn random_text(len: usize) -> String {
    let mut rng = rand::rng();
    (0..len)
        .map(|_| char::from(ALPHABET[rng.random_range(0..ALPHABET.len())]))
        .collect()
}

fn open_account(
    endpoints: &Endpoints,
    credential: Option<String>,
    deposit_amount: Option<u64>,
    admin_token: Option<String>,
    json: bool,
) -> Result<ExitCode> {
    let admin_token = admin_token_from(admin_token)?;
    if deposit_amount == Some(0) {
        return Err(CliError::new("--deposit must be more than 0").code(2));
    }
    let generated = credential.is_none();
    let credential = credential.unwrap_or_else(|| random_text(CREDENTIAL_LEN));
    let opened = endpoints.bank().open_account(&admin_token, &credential)?;
    // The account exists from here on: whatever happens next, say which it is.
    let deposited = match deposit_amount {
        Some(amount) => match deposit(endpoints, &admin_token, &opened.account, amount, None) {
            Ok((answer, _)) => Some(answer),
            Err(e) => {
                print_opened(&opened, generated.then_some(&credential), None, json);
                return Err(e);
            }
        },
        None => None,
    };
    print_opened(
        &opened,
        generated.then_some(&credential),
        deposited.as_ref(),
        json,
    );
    Ok(ExitCode::SUCCESS)
}

fn print_opened(
    opened: &valuecard_protocol::api::AccountOpened,
    generated_credential: Option<&String>,
    deposited: Option<&valuecard_protocol::api::DepositAnswer>,
    json: bool,
) {
    let balance = deposited.map_or(opened.balance, |d| d.balance_after);
    if json {
        println!(
            "{}",
            json!({
                "account": opened.account,
                "currency": opened.currency,
                "balance": balance,
                // Only a credential made here: one the caller chose, the caller knows.
                "credential": generated_credential,
                "deposit": deposited.map(|d| json!({
                    "amount": d.amount,
                    "reference": d.reference,
                })),
            })
        );
        return;
    }
    println!("account:    {}", opened.account);
    if let Some(credential) = generated_credential {
        println!("credential: {credential}");
        println!("            shown this once: keep it, the bank keeps only a hash of it");
    }
    if let Some(d) = deposited {
        println!("deposited:  {} (reference {})", d.amount, d.reference);
    }
    println!("balance:    {balance} {}", opened.currency);
}

/// Pays `amount` into `account`; the second value tells whether the reference was made here.
fn deposit(
    endpoints: &Endpoints,
    admin_token: &str,
    account: &str,
    amount: u64,
    reference: Option<String>,
) -> Result<(valuecard_protocol::api::DepositAnswer, bool)> {
    if amount == 0 {
        return Err(CliError::new("the amount must be more than 0").code(2));
    }
    let generated = reference.is_none();
    let reference = reference.unwrap_or_else(|| format!("dep-{}", random_text(16)));
    let answer = endpoints.bank().deposit(
        admin_token,
        &DepositRequest {
            account: account.to_string(),
            amount,
            reference,
        },
    )?;
    Ok((answer, generated))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn random_credentials_are_long_and_unambiguous() {
        let a = random_text(CREDENTIAL_LEN);
        assert_eq!(a.len(), CREDENTIAL_LEN);
        assert!(a.bytes().all(|c| ALPHABET.contains(&c)));
        assert!(!a.contains(['0', 'o', '1', 'l', 'i']));
        assert_ne!(a, random_text(CREDENTIAL_LEN));
    }
}
