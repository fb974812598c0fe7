//! `valuecard withdraw`, `redeem` and `recover`: money from a bank account to a card's
//! account at the center, through the journal (see the library's `funding` and `journal`).

use std::collections::HashMap;
use std::io::IsTerminal;
use std::process::ExitCode;

use apdu_spec::cert;
use indicatif::ProgressBar;
use rand::RngExt;
use serde::Serialize;
use serde_json::json;
use valuecard_protocol::keylist::DenominationKeyInfo;
use valuecard_protocol::token::split_amount;
use valuecard_terminal::backend_client::{BankClient, CenterClient};
use valuecard_terminal::fault::{self, Point};
use valuecard_terminal::funding::{
    self, FundingError, KeyLists, bank_refused_for_good, blind_pieces, current_key, fetch_keys,
    redeem_piece, sign_piece,
};
use valuecard_terminal::journal::{Journal, Withdrawal};

use super::{
    CliError, Endpoints, Result, active_card_id, open_journal, prompt_hidden, secret_from,
    selected_client,
};
use crate::cli::Global;

/// More pieces than this is a mistake (or an amount for several withdrawals).
const MAX_PIECES: usize = 64;

pub struct WithdrawArgs {
    pub account: String,
    pub amount: u64,
    pub credential: Option<String>,
    pub redeem_later: bool,
    pub json: bool,
}

/// The id of the card in the reader, which must be personalised: a token for a card the
/// center does not know would be refused there after the bank has debited the account.
fn card_id(global: &Global) -> Result<[u8; 32]> {
    active_card_id(&selected_client(global)?.info()?)
}

pub fn withdraw(global: &Global, endpoints: &Endpoints, args: WithdrawArgs) -> Result<ExitCode> {
    if args.amount == 0 {
        return Err(CliError::new("--amount must be more than 0").code(2));
    }
    let credential = secret_from(
        args.credential,
        &format!("credential of account {}", args.account),
        "--credential C",
        "VALUECARD_CREDENTIAL",
    )?;
    let mut journal = open_journal(global)?;
    if !journal.is_empty() && !args.json {
        eprintln!(
            "note: the journal holds {} unfinished withdrawal(s); `valuecard recover` finishes them",
            journal.withdrawals().len()
        );
    }
    let card_id = card_id(global)?;

    let bank = endpoints.bank();
    let center = endpoints.center();
    let center_info = center.info()?;
    let currency = center_info.currency.clone();
    let trusted = cert::decode_public_key(&center_info.bank_public_key)
        .ok_or_else(|| CliError::new("the center's bank key is not a P-256 public key"))?;

    // The account, its credential and its money are checked before anything is journaled.
    let balance = bank.balance(&args.account, &credential)?;
    if balance.currency != currency {
        return Err(CliError::new(format!(
            "account {} is in {}, and the center credits {currency}",
            args.account, balance.currency
        )));
    }
    if balance.balance < args.amount {
        return Err(CliError::new(format!(
            "account {} holds {} {currency}, less than {}",
            args.account, balance.balance, args.amount
        ))
        .hint("pay in with `valuecard bank deposit`"));
    }

    // The denominations, then the current keys for the amounts needed, each list checked
    // with the bank key the center trusts.
    let listing = fetch_keys(&bank, &trusted, &[])?;
    if listing.list.currency != currency {
        return Err(CliError::new(format!(
            "the bank issues {}, and the center credits {currency}",
            listing.list.currency
        )));
    }
    let pieces = split_amount(args.amount, &listing.list.denominations).ok_or_else(|| {
        CliError::new(format!(
            "{} cannot be made of the bank's denominations",
            args.amount
        ))
        .hint(format!("the bank issues {:?}", listing.list.denominations))
    })?;
    if pieces.len() > MAX_PIECES {
        return Err(CliError::new(format!(
            "{} takes {} tokens, more than the {MAX_PIECES} one withdrawal may have",
            args.amount,
            pieces.len()
        ))
        .hint("withdraw it in several smaller amounts"));
    }
    let mut amounts = pieces.clone();
    amounts.dedup();
    // The bank makes the keys it lacks on demand, an RSA key generation each: seconds.
    let waiting = super::spinner(global, "the bank prepares its denomination keys");
    let keys = fetch_keys(&bank, &trusted, &amounts);
    waiting.finish_and_clear();
    let keys = keys?;
    let now = funding::now();
    let chosen = pieces
        .iter()
        .map(|amount| {
            current_key(&keys.list, *amount, &currency, now).ok_or_else(|| FundingError::NoKey {
                amount: *amount,
                currency: currency.clone(),
            })
        })
        .collect::<Result<Vec<&DenominationKeyInfo>, _>>()?;

    let mut rng = rand::rng();
    let blinded = blind_pieces(&mut rng, card_id, &chosen)?;
    let messages: Vec<Vec<u8>> = blinded.iter().map(|p| p.message.clone()).collect();
    let id = hex::encode(rng.random::<[u8; 8]>());
    journal.add(Withdrawal {
        id: id.clone(),
        created_at: now,
        account: args.account.clone(),
        bank: bank.base().to_string(),
        center: center.base().to_string(),
        card_id,
        currency: currency.clone(),
        redeem_later: args.redeem_later,
        pieces: blinded,
    })?;
    fault::reached(Point::JournalBlinded);

    // The bank: one blinded message at a time, each journaled signed as soon as it is.
    let steps = pieces.len() * if args.redeem_later { 1 } else { 2 };
    let bar = super::progress(global, steps as u64, "the bank signs");
    let mut states: Vec<&'static str> = vec!["blinded"; pieces.len()];
    let mut failure: Option<CliError> = None;
    for (i, message) in messages.iter().enumerate() {
        bar.inc(1);
        match sign_piece(&mut journal, &id, message, &bank, &credential) {
            Ok(_) => states[i] = "signed",
            Err(FundingError::Backend(e)) if e.is_refusal() => {
                // Sent once and refused: an API error leaves the bank as it was, so this
                // piece was not signed nor debited, and the ones after it were never sent.
                for (j, later) in messages.iter().enumerate().skip(i) {
                    journal.abandon(&id, later)?;
                    states[j] = "dropped";
                }
                failure = Some(e.into());
                break;
            }
            Err(e) => {
                failure = Some(e.into());
                break;
            }
        }
    }

    // The center: whatever was signed is credited, even after a failure at the bank.
    if !args.redeem_later {
        let mut key_lists = KeyLists::default();
        key_lists.insert(&bank, keys.signed.clone());
        bar.set_message("the center credits");
        for (i, message) in messages.iter().enumerate() {
            bar.inc(1);
            if states[i] != "signed" {
                continue;
            }
            match redeem_piece(&mut journal, &id, message, &center, &bank, &mut key_lists) {
                Ok(_) => states[i] = "redeemed",
                Err(e) => {
                    failure.get_or_insert(e.into());
                    break;
                }
            }
        }
    }

    bar.finish_and_clear();
    let sum = |wanted: &[&str]| -> u64 {
        pieces
            .iter()
            .zip(&states)
            .filter(|(_, s)| wanted.contains(s))
            .map(|(a, _)| a)
            .sum()
    };
    let withdrawn = sum(&["signed", "redeemed"]);
    let credited = sum(&["redeemed"]);
    let dropped = sum(&["dropped"]);
    let left = sum(&["blinded"])
        + if args.redeem_later {
            0
        } else {
            sum(&["signed"])
        };
    if args.json {
        println!(
            "{}",
            json!({
                "withdrawal": id,
                "account": args.account,
                "card_id": hex::encode_upper(card_id),
                "currency": currency,
                "amount": args.amount,
                "redeem_later": args.redeem_later,
                "pieces": pieces.iter().zip(&states).map(|(a, s)| json!({"amount": a, "state": s})).collect::<Vec<_>>(),
                "withdrawn": withdrawn,
                "credited": credited,
                "dropped": dropped,
                "unfinished": left,
                "complete": failure.is_none(),
            })
        );
    } else {
        println!(
            "withdrawal {id}: account {} to card {}",
            args.account,
            hex::encode_upper(card_id)
        );
        let shown: Vec<String> = pieces
            .iter()
            .zip(&states)
            .map(|(a, s)| format!("{a} {s}"))
            .collect();
        println!("pieces:     {}", shown.join(", "));
        println!(
            "withdrawn:  {withdrawn} {currency} in {} token(s)",
            states
                .iter()
                .filter(|s| matches!(**s, "signed" | "redeemed"))
                .count()
        );
        if args.redeem_later {
            println!(
                "credited:   nothing yet (--redeem-later): `valuecard redeem` credits the tokens"
            );
        } else {
            println!("credited:   {credited} {currency} to the card at the center");
        }
        if dropped > 0 {
            println!("not debited: {dropped} {currency} (the bank refused it)");
        }
    }
    match failure {
        None => Ok(ExitCode::SUCCESS),
        Some(error) if left > 0 => Err(CliError {
            message: format!(
                "{} ({left} {currency} unfinished, kept in the journal)",
                error.message
            ),
            hint: Some(match error.hint {
                Some(hint) => format!("{hint}; then `valuecard recover` finishes the withdrawal"),
                None => "`valuecard recover` finishes the withdrawal".into(),
            }),
            code: 1,
        }),
        Some(error) => Err(error),
    }
}

/// One thing `redeem` or `recover` did, or could not do, to one piece.
#[derive(Serialize)]
struct Action {
    withdrawal: String,
    account: String,
    amount: u64,
    currency: String,
    /// "signed", "redeemed", "dropped", "kept" or "failed".
    action: &'static str,
    /// The server had done this before (a retry after a lost answer): nothing moved twice.
    replayed: bool,
    #[serde(skip_serializing_if = "Option::is_none")]
    detail: Option<String>,
}

#[derive(Default)]
struct Actions {
    done: Vec<Action>,
    /// The first error, for the exit status and the message.
    error: Option<CliError>,
    /// What `recover` did on the card in the reader.
    card: Option<super::units::CardRecovery>,
}

impl Actions {
    fn push(
        &mut self,
        w: &Withdrawal,
        amount: u64,
        action: &'static str,
        replayed: bool,
        detail: Option<String>,
    ) {
        self.done.push(Action {
            withdrawal: w.id.clone(),
            account: w.account.clone(),
            amount,
            currency: w.currency.clone(),
            action,
            replayed,
            detail,
        });
    }

    fn add(&mut self, w: &Withdrawal, amount: u64, action: &'static str, replayed: bool) {
        self.push(w, amount, action, replayed, None);
    }

    fn fail(&mut self, w: &Withdrawal, amount: u64, error: CliError) {
        self.push(w, amount, "failed", false, Some(error.message.clone()));
        self.error.get_or_insert(error);
    }

    /// Prints what was done, and exits 1 with `hint` if something failed.
    fn finish(mut self, journal: &Journal, json: bool, hint: &str) -> Result<ExitCode> {
        self.print(journal, json);
        if let Some(card_error) = self.card.as_mut().and_then(|c| c.error.take()) {
            self.error.get_or_insert(card_error);
        }
        if let Some(error) = &mut self.error {
            error.hint.get_or_insert_with(|| hint.into());
        }
        self.exit()
    }

    fn total(&self, action: &str) -> u64 {
        self.done
            .iter()
            .filter(|a| a.action == action)
            .map(|a| a.amount)
            .sum()
    }

    fn print(&self, journal: &Journal, json: bool) {
        let (blinded, signed) = journal.withdrawals().iter().fold((0, 0), |(b, s), w| {
            (b + w.tally("blinded").0, s + w.tally("signed").0)
        });
        if json {
            println!(
                "{}",
                json!({
                    "actions": self.done,
                    "signed": self.total("signed"),
                    "credited": self.total("redeemed"),
                    "dropped": self.total("dropped"),
                    "left": {
                        "withdrawals": journal.withdrawals().len(),
                        "blinded": blinded,
                        "signed": signed,
                    },
                    "card": self.card.as_ref().map(|c| &c.json),
                    "complete": self.error.is_none()
                        && self.card.as_ref().is_none_or(|c| c.error.is_none()),
                })
            );
            return;
        }
        for a in &self.done {
            let what = match (a.action, a.replayed) {
                ("signed", false) => "signed by the bank".to_string(),
                ("signed", true) => {
                    "signed by the bank, which had signed it before (debited once)".to_string()
                }
                ("redeemed", false) => "credited at the center".to_string(),
                ("redeemed", true) => {
                    "credited at the center, which had credited it before (credited once)"
                        .to_string()
                }
                ("dropped", _) => format!(
                    "dropped: the bank refused it, nothing was debited ({})",
                    a.detail.as_deref().unwrap_or("")
                ),
                ("kept", _) => {
                    "kept for `valuecard redeem` (withdrawn with --redeem-later)".to_string()
                }
                (_, _) => format!("not finished: {}", a.detail.as_deref().unwrap_or("")),
            };
            println!(
                "withdrawal {} (account {}): {} {} {what}",
                a.withdrawal, a.account, a.amount, a.currency
            );
        }
        println!(
            "signed {}, credited {}, dropped {}",
            self.total("signed"),
            self.total("redeemed"),
            self.total("dropped")
        );
        if let Some(card) = &self.card {
            for line in &card.lines {
                println!("card: {line}");
            }
        }
        if journal.is_empty() {
            println!("the journal is empty");
        } else {
            println!(
                "the journal holds {} withdrawal(s): {blinded} piece(s) for the bank, {signed} signed token(s)",
                journal.withdrawals().len()
            );
        }
    }

    fn exit(self) -> Result<ExitCode> {
        match self.error {
            None => Ok(ExitCode::SUCCESS),
            Some(error) => Err(error),
        }
    }
}

/// The signed pieces of withdrawal `id` (their token messages), in order.
fn pieces_in(journal: &Journal, id: &str, state: &str) -> Vec<(Vec<u8>, u64)> {
    journal
        .withdrawal(id)
        .map(|w| {
            w.pieces
                .iter()
                .filter(|p| p.state.name() == state)
                .map(|p| (p.message.clone(), p.amount))
                .collect()
        })
        .unwrap_or_default()
}

/// Redeems the signed pieces of one withdrawal; stops at its first failure.
fn redeem_withdrawal(
    journal: &mut Journal,
    w: &Withdrawal,
    center: &CenterClient,
    bank: &BankClient,
    key_lists: &mut KeyLists,
    actions: &mut Actions,
    bar: &ProgressBar,
) {
    for (message, amount) in pieces_in(journal, &w.id, "signed") {
        bar.inc(1);
        match redeem_piece(journal, &w.id, &message, center, bank, key_lists) {
            Ok(answer) => actions.add(w, amount, "redeemed", answer.replayed),
            Err(e) => {
                let error = CliError::from(e);
                actions.fail(w, amount, error);
                return;
            }
        }
    }
}

pub fn redeem(global: &Global, endpoints: &Endpoints, json: bool) -> Result<ExitCode> {
    let mut journal = open_journal(global)?;
    let withdrawals: Vec<Withdrawal> = journal.withdrawals().to_vec();
    let waiting: usize = withdrawals.iter().map(|w| w.tally("signed").0).sum();
    if waiting == 0 {
        let blinded: usize = withdrawals.iter().map(|w| w.tally("blinded").0).sum();
        if json {
            println!(
                "{}",
                json!({"actions": [], "signed": 0, "credited": 0, "dropped": 0,
                       "left": {"withdrawals": withdrawals.len(), "blinded": blinded, "signed": 0},
                       "complete": true})
            );
        } else {
            println!("nothing to redeem");
            if blinded > 0 {
                println!(
                    "{blinded} piece(s) still wait for the bank: `valuecard recover` finishes them"
                );
            }
        }
        return Ok(ExitCode::SUCCESS);
    }
    let mut actions = Actions::default();
    let mut key_lists = KeyLists::default();
    let bar = super::progress(global, waiting as u64, "the center credits");
    for w in &withdrawals {
        let center = endpoints.center_for(&w.center);
        let bank = endpoints.bank_for(&w.bank);
        redeem_withdrawal(
            &mut journal,
            w,
            &center,
            &bank,
            &mut key_lists,
            &mut actions,
            &bar,
        );
    }
    bar.finish_and_clear();
    actions.finish(
        &journal,
        json,
        "the tokens stay in the journal: run `valuecard redeem` again",
    )
}

pub fn recover(
    global: &Global,
    endpoints: &Endpoints,
    credential: Option<String>,
    json: bool,
) -> Result<ExitCode> {
    let mut journal = open_journal(global)?;
    let withdrawals: Vec<Withdrawal> = journal.withdrawals().to_vec();
    let mut credentials: HashMap<String, String> = HashMap::new();
    let mut actions = Actions::default();
    let mut key_lists = KeyLists::default();
    // A step per piece at the bank and per token at the center.
    let steps: usize = withdrawals
        .iter()
        .map(|w| {
            let (blinded, signed) = (w.tally("blinded").0, w.tally("signed").0);
            if w.redeem_later {
                blinded
            } else {
                2 * blinded + signed
            }
        })
        .sum();
    let bar = super::progress(global, steps as u64, "recovering withdrawals");
    for w in &withdrawals {
        let bank = endpoints.bank_for(&w.bank);
        let center = endpoints.center_for(&w.center);

        // The bank: pieces it may not have answered go again, same blinded message.
        let blinded = pieces_in(&journal, &w.id, "blinded");
        let credential = if blinded.is_empty() {
            None
        } else {
            // A prompt for the credential must not share its line with the bar.
            match bar.suspend(|| account_credential(&credential, &mut credentials, &w.account)) {
                Ok(c) => Some(c),
                Err(error) => {
                    let amount = blinded.iter().map(|(_, a)| a).sum();
                    actions.fail(w, amount, error);
                    None
                }
            }
        };
        if let Some(credential) = &credential {
            for (message, amount) in &blinded {
                bar.inc(1);
                match sign_piece(&mut journal, &w.id, message, &bank, credential) {
                    Ok(signed) => actions.add(w, *amount, "signed", signed.replayed),
                    Err(e) if bank_refused_for_good(&e) => {
                        journal.abandon(&w.id, message)?;
                        let mut detail = CliError::from(e).message;
                        detail.truncate(200);
                        actions.push(w, *amount, "dropped", false, Some(detail));
                    }
                    Err(e) => {
                        actions.fail(w, *amount, e.into());
                        break;
                    }
                }
            }
        }

        // The center: signed tokens, unless the user asked to redeem them later.
        if w.redeem_later {
            for (_, amount) in pieces_in(&journal, &w.id, "signed") {
                actions.add(w, amount, "kept", false);
            }
        } else {
            redeem_withdrawal(
                &mut journal,
                w,
                &center,
                &bank,
                &mut key_lists,
                &mut actions,
                &bar,
            );
        }
    }
    bar.finish_and_clear();
    // Then the card in the reader: its pending load and its receipts. After the journal,
    // so that units just credited at the center can be loaded.
    match super::units::recover_card(global, endpoints) {
        Ok(card) => actions.card = card,
        Err(e) => {
            actions.error.get_or_insert(e);
        }
    }
    let nothing = actions.done.is_empty()
        && actions.error.is_none()
        && journal.is_empty()
        && actions.card.as_ref().is_none_or(|c| c.nothing);
    if nothing {
        if json {
            println!(
                "{}",
                json!({"actions": [], "signed": 0, "credited": 0, "dropped": 0,
                       "left": {"withdrawals": 0, "blinded": 0, "signed": 0},
                       "card": actions.card.as_ref().map(|c| &c.json),
                       "complete": true, "nothing_to_recover": true})
            );
        } else {
            println!("nothing to recover");
        }
        return Ok(ExitCode::SUCCESS);
    }
    actions.finish(
        &journal,
        json,
        "what is left stays in the journal and on the card: run `valuecard recover` again",
    )
}

/// The credential for `account`: the one given, else asked once per account when standard
/// input is a terminal.
fn account_credential(
    given: &Option<String>,
    asked: &mut HashMap<String, String>,
    account: &str,
) -> Result<String> {
    if let Some(credential) = given {
        return Ok(credential.clone());
    }
    if let Some(credential) = asked.get(account) {
        return Ok(credential.clone());
    }
    if !std::io::stdin().is_terminal() {
        return Err(CliError::new(format!(
            "account {account} has pieces the bank may not have answered, and no credential was given"
        ))
        .hint("pass the account's credential with --credential or VALUECARD_CREDENTIAL"));
    }
    let credential = prompt_hidden(&format!("credential of account {account}: "))?;
    asked.insert(account.to_string(), credential.clone());
    Ok(credential)
}

#[cfg(test)]
mod tests {
    use valuecard_terminal::journal::{Piece, PieceState};

    use super::*;

    #[test]
    fn pieces_are_listed_by_state() {
        let dir = tempfile::tempdir().expect("temp dir");
        let mut journal = Journal::open(&dir.path().join("j.json"), || {}).expect("open");
        let blinded = valuecard_protocol::token::Blinded {
            blinded_message: vec![1; 256],
            secret: vec![2; 256],
            randomizer: [3; 32],
        };
        let piece = |seed: u8, amount| Piece {
            amount,
            key_id: [seed; 32],
            key_spki: vec![],
            message: vec![seed; 8],
            state: PieceState::Blinded {
                blinded: blinded.clone(),
            },
        };
        journal
            .add(Withdrawal {
                id: "w".into(),
                created_at: 0,
                account: "1".into(),
                bank: String::new(),
                center: String::new(),
                card_id: [0; 32],
                currency: "JPY".into(),
                redeem_later: false,
                pieces: vec![piece(1, 256), piece(2, 32)],
            })
            .expect("add");
        journal
            .mark_signed("w", &[2; 8], vec![0; 256])
            .expect("signed");
        assert_eq!(pieces_in(&journal, "w", "blinded"), vec![(vec![1; 8], 256)]);
        assert_eq!(pieces_in(&journal, "w", "signed"), vec![(vec![2; 8], 32)]);
        assert!(pieces_in(&journal, "nope", "signed").is_empty());
    }
}
