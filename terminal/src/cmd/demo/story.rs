//! The story the demo tells, act by act, with the figures expected after each.

use p256::ecdsa::VerifyingKey;
use valuecard_protocol::api::{Verdict, VerdictAnswer};
use valuecard_terminal::journal::Journal;

use super::knowledge::{self, Comparison, short};
use super::narrator::{CardFigures, Failed, Figures, Narrator, Step, Ticket, ending};
use super::relay::Message;

const DEPOSIT: u64 = 1000;
const WITHDRAWAL: u64 = 500;
const LOAD: u64 = 300;
const PRICE: u64 = 100;
const PINS: [&str; 2] = ["123456", "654321"];
const A: usize = 0;
const B: usize = 1;
/// The exchange that loses a message: the terminal dies once CONFIRM is answered.
const FAULT: &str = "after-confirm";

fn args(list: &[&str]) -> Vec<String> {
    list.iter().map(|s| s.to_string()).collect()
}

/// The terminal's journal in the demo's folder, as the commands left it; `None` when it
/// cannot be read.
fn journal(n: &Narrator) -> Option<Journal> {
    Journal::open(&n.folder.join("journal.json"), || {}).ok()
}

fn card(figures: &mut Figures, i: usize) -> &mut CardFigures {
    figures.cards[i].get_or_insert_with(CardFigures::default)
}

/// The messages the bank got, and those the center and the arbiter got.
fn by_party(messages: &[Message]) -> (Vec<&Message>, Vec<&Message>) {
    let bank = messages.iter().filter(|m| m.role() == "bank").collect();
    let others = messages
        .iter()
        .filter(|m| matches!(m.role(), "center" | "arbiter"))
        .collect();
    (bank, others)
}

fn unlinked(comparison: &Comparison, who: &str) -> Step {
    if comparison.shared.is_empty() {
        return Ok(());
    }
    let list: Vec<String> = comparison
        .shared
        .iter()
        .map(|s| {
            format!(
                "{} in the bank's {} and the {who}'s {}",
                hex::encode_upper(&s.run),
                s.left,
                s.right
            )
        })
        .collect();
    Err(Failed(format!(
        "the bank and the {who} were told the same bytes:\n  {}",
        list.join("\n  ")
    )))
}

/// Options for the story.
pub struct Plot {
    /// The cards are virtual cards behind pcscd (`valuecard readers` shows them).
    pub readers: bool,
    /// The demo's own test: expect one figure that is wrong.
    pub wrong_figure: bool,
    /// The backend's folder of databases, for the auditor.
    pub databases: std::path::PathBuf,
}

pub fn tell(n: &mut Narrator, plot: &Plot) -> Step {
    let mut expected = Figures::default();
    set_up(n, plot, &expected)?;
    open_account(n, plot, &mut expected)?;
    register(n, &mut expected)?;
    withdraw_and_redeem(n, &mut expected)?;
    load(n, &mut expected)?;
    issue_tickets(n, &mut expected)?;
    exchange(n, &mut expected)?;
    lost_message(n, &mut expected)?;
    unload(n, &mut expected)?;
    the_end(n, &expected)?;
    audit(n, plot)
}

fn set_up(n: &mut Narrator, plot: &Plot, expected: &Figures) -> Step {
    if plot.readers {
        n.say("The readers: vpcd's two virtual readers, each holding one of the demo's cards.");
        n.run(&args(&["readers"]))?;
    }
    n.balances(expected)
}

fn open_account(n: &mut Narrator, plot: &Plot, expected: &mut Figures) -> Step {
    n.act(
        "Open a bank account",
        &format!(
            "Bank staff (with the admin token) open an account and pay {DEPOSIT} JPY in. The \
             bank knows the account number, its balance, and a hash of its credential, which \
             the account's owner uses from now on."
        ),
    );
    let output = n.run(&args(&[
        "bank",
        "open-account",
        "--deposit",
        &DEPOSIT.to_string(),
    ]))?;
    let text = String::from_utf8_lossy(&output.stdout);
    let field = |name: &str| {
        text.lines()
            .find_map(|l| l.strip_prefix(name))
            .map(|v| v.trim().to_string())
            .ok_or_else(|| Failed(format!("`bank open-account` printed no {name:?} line")))
    };
    let account = field("account:")?;
    let credential = field("credential:")?;
    println!("$ export VALUECARD_CREDENTIAL={credential}");
    n.set_env("VALUECARD_CREDENTIAL", &credential);
    n.account = Some(account);
    expected.bank = Some(DEPOSIT + u64::from(plot.wrong_figure));
    n.balances(expected)
}

fn register(n: &mut Narrator, expected: &mut Figures) -> Step {
    n.act(
        "Register and personalise both cards",
        "Each card makes its own key pair (GENERATE KEY) and proves to the center that it \
         holds it, by signing a challenge; its attestation key, which its maker certified, \
         vouches over the same challenge that the key was made inside it (ATTEST). The center \
         registers only keys that a maker it trusts vouches for: it opens a unit account for \
         the card's public key and certifies it. The terminal installs the certificate, the \
         issuer's and the arbiter's keys (each under the scheme root's signature, which the \
         card checks against the root it got from its maker) and the PIN (PERSONALIZE). The \
         center knows each card by its key, and nothing of the bank account.",
    );
    for i in [A, B] {
        n.run(&n.on(i, &["card", "register", "--pin", PINS[i]]))?;
        card(expected, i);
    }
    n.balances(expected)
}

fn withdraw_and_redeem(n: &mut Narrator, expected: &mut Figures) -> Step {
    n.act(
        &format!("Withdraw {WITHDRAWAL} JPY for card A, and redeem it later"),
        &format!(
            "The terminal splits {WITHDRAWAL} into the bank's denominations, makes one token per \
             piece naming card A, and blinds it. The bank debits the account and signs the \
             blinded tokens without seeing them. With --redeem-later the signed tokens wait in \
             the terminal's journal; `valuecard redeem` later hands them to the center, which \
             credits card A's account. Waiting (hours, days) keeps the time from linking the \
             two."
        ),
    );
    let account = n.account.clone().unwrap_or_default();
    let first = n.relay.len();
    let amount = WITHDRAWAL.to_string();
    n.run(&n.on(
        A,
        &[
            "withdraw",
            "--account",
            &account,
            "--amount",
            &amount,
            "--redeem-later",
        ],
    ))?;
    let bank = expected.bank.unwrap_or(0) - WITHDRAWAL;
    expected.bank = Some(bank);
    let found = n.read()?;
    let at_center = found.cards[A].as_ref().map_or(0, |c| c.center);
    let signed = journal(n).map_or(0, |j| {
        j.withdrawals()
            .iter()
            .map(|w| w.tally("signed").0)
            .sum::<usize>()
    });
    n.note(&format!(
        "now: the bank account holds {}, card A's account at the center {at_center}, and \
         {signed} signed token(s) wait in the journal",
        found.bank.unwrap_or(0)
    ));
    if (found.bank, at_center) != (Some(bank), 0) || signed == 0 {
        return Err(Failed(format!(
            "after the withdrawal: expected the bank account at {bank}, nothing at the center \
             and signed tokens in the journal; found {:?}, {at_center} and {signed}",
            found.bank
        )));
    }
    n.pause();
    n.run(&args(&["redeem"]))?;
    card(expected, A).center = WITHDRAWAL;
    n.balances(expected)?;

    println!();
    n.say(
        "What each side was told, as the demo's relay recorded it (every request and answer \
         of the commands above passed through it):",
    );
    let messages = n.relay.since(first);
    let bank_rows = knowledge::bank_rows(&messages);
    let center_rows = knowledge::center_rows(&messages);
    for line in knowledge::side_by_side(&bank_rows, &center_rows, &n.currency) {
        println!("{line}");
    }
    let sum = |amounts: &mut dyn Iterator<Item = u64>| amounts.sum::<u64>();
    let signed = sum(&mut bank_rows.iter().map(|r| r.amount));
    let credited = sum(&mut center_rows.iter().map(|r| r.amount));
    if signed != WITHDRAWAL || credited != WITHDRAWAL {
        return Err(Failed(format!(
            "the bank signed {signed} and the center credited {credited}, not {WITHDRAWAL} each"
        )));
    }
    // Every message so far: the account's opening and the cards' registration too.
    let all = n.relay.since(0);
    let (bank, center): (Vec<&Message>, Vec<&Message>) = (
        all.iter().filter(|m| m.role() == "bank").collect(),
        all.iter().filter(|m| m.role() == "center").collect(),
    );
    let published: Vec<&Message> = all.iter().collect();
    let comparison = knowledge::compare(&bank, &center, &published);
    unlinked(&comparison, "center")?;
    n.say(&format!(
        "Only the amounts are alike, and they are the bank's fixed denominations, the same for \
         everyone's withdrawals. Checked: the {} values the bank was sent or answered so far \
         ({} messages) and the {} values the center was ({} messages) have no run of {} bytes \
         in common, apart from the published key data (key ids and keys). Each token is the \
         unblinded signature of one blinded message, but only the terminal knew which: it \
         deleted the blinding secrets once the tokens were signed.",
        comparison.left_values,
        bank.len(),
        comparison.right_values,
        center.len(),
        knowledge::RUN,
    ));
    Ok(())
}

fn load(n: &mut Narrator, expected: &mut Figures) -> Step {
    n.act(
        &format!("Load {LOAD} JPY onto card A"),
        "Card A signs a load request with its next load counter and keeps it pending. The \
         center checks it, debits card A's account once for that request, and signs an \
         authorisation that only this request on this card accepts.",
    );
    n.run(&n.on(A, &["load", "--amount", &LOAD.to_string()]))?;
    let a = card(expected, A);
    a.available += LOAD;
    a.center -= LOAD;
    n.balances(expected)
}

fn issue_tickets(n: &mut Narrator, expected: &mut Figures) -> Step {
    n.act(
        "Issue two tickets to card B",
        "Center staff issue two tickets to card B, a museum ticket and a concert ticket: each \
         is the issuer's signature over the asset code, the serial and the owner card, and \
         goes onto the card the way units do.",
    );
    for (asset, serial) in [("MUSEUM", "0001"), ("CONCERT", "0002")] {
        n.run(&n.on(
            B,
            &["tickets", "issue", "--asset", asset, "--serial", serial],
        ))?;
        card(expected, B).tickets.push(Ticket::new(asset, serial));
    }
    card(expected, B).tickets.sort();
    n.run(&n.on(B, &["tickets"]))?;
    n.balances(expected)
}

/// Moves a ticket from one card's expected figures to the other's.
fn hand_over(expected: &mut Figures, from: usize, to: usize, asset: &str) {
    let giver = card(expected, from);
    let at = giver.tickets.iter().position(|t| t.asset == asset);
    if let Some(ticket) = at.map(|i| giver.tickets.remove(i)) {
        let taker = card(expected, to);
        taker.tickets.push(Ticket {
            escrowed: false,
            ..ticket
        });
        taker.tickets.sort();
    }
}

fn exchange_args(n: &Narrator, take: &str) -> Vec<String> {
    let mut all = vec!["exchange".to_string()];
    all.extend(n.exchange_sides(A, B));
    all.extend(args(&[
        "--give",
        &format!("{PRICE}JPY"),
        "--take",
        take,
        "--initiator-pin",
        PINS[A],
        "--responder-pin",
        PINS[B],
    ]));
    all
}

fn exchange(n: &mut Narrator, expected: &mut Figures) -> Step {
    n.act(
        &format!("Card A pays {PRICE} JPY for card B's museum ticket"),
        "A fair exchange in five steps, relayed by the terminal, which neither card trusts: \
         START (A reserves the money), AGREE (B checks A's certificate, puts the ticket in \
         escrow and signs the agreement), CONFIRM (A checks that, puts the money in escrow and \
         signs), COMMIT (B takes the money and reveals its secret), FINISH (A checks the \
         secret and takes the ticket). Each card needs its PIN.",
    );
    n.run(&exchange_args(n, "ticket:MUSEUM:0001"))?;
    card(expected, A).available -= PRICE;
    card(expected, B).available += PRICE;
    hand_over(expected, B, A, "MUSEUM");
    n.balances(expected)
}

/// The arbiter's verdicts on session `s2` among `messages`: those it decided and those it
/// was asked for again.
fn verdicts(messages: &[Message], s2: &str) -> Vec<(String, Verdict)> {
    messages
        .iter()
        .filter(|m| m.ok() && m.role() == "arbiter")
        .filter_map(|m| {
            let verdict = match m.route() {
                "/arbiter/v1/resolutions" | "/arbiter/v1/cancellations" => {
                    serde_json::from_slice::<Verdict>(&m.answer).ok()?
                }
                route if route.starts_with("/arbiter/v1/verdicts/") => {
                    serde_json::from_slice::<VerdictAnswer>(&m.answer)
                        .ok()?
                        .verdict?
                }
                _ => return None,
            };
            hex::encode_upper(verdict.s2)
                .eq_ignore_ascii_case(s2)
                .then(|| (format!("{} {}", m.method, m.route()), verdict))
        })
        .collect()
}

fn lost_message(n: &mut Narrator, expected: &mut Figures) -> Step {
    n.act(
        "A second exchange loses a message; the arbiter settles it",
        &format!(
            "Card A buys the concert ticket for {PRICE} JPY more. This time the terminal dies \
             right after CONFIRM (the demo makes it crash with VALUECARD_FAULT={FAULT}): card \
             A has put its money in escrow and signed, card B its ticket, and COMMIT never \
             reaches card B. Neither card can finish alone, and neither may simply take its \
             value back."
        ),
    );
    let output = n.show(
        &[("VALUECARD_FAULT", FAULT)],
        &exchange_args(n, "ticket:CONCERT:0002"),
    )?;
    let stderr = String::from_utf8_lossy(&output.stderr);
    if output.status.success() || !stderr.contains(&format!("injected fault {FAULT}")) {
        return Err(Failed(format!(
            "the exchange was to crash after CONFIRM, and it ended with {}",
            ending(&output)
        )));
    }
    n.say(&format!(
        "The terminal is gone ({}). Each card keeps an open session, and the values in escrow:",
        ending(&output)
    ));
    let a = card(expected, A);
    a.available -= PRICE;
    a.escrowed += PRICE;
    a.sessions = 1;
    let b = card(expected, B);
    b.sessions = 1;
    for t in b.tickets.iter_mut().filter(|t| t.asset == "CONCERT") {
        t.escrowed = true;
    }
    n.balances(expected)?;
    n.run(&n.on(A, &["sessions"]))?;
    n.run(&n.on(B, &["sessions"]))?;
    let listed = n.query(&n.on(B, &["sessions", "--json"]))?;
    let s2 = listed["sessions"][0]["s2"]
        .as_str()
        .unwrap_or("")
        .to_string();

    n.say(
        "`valuecard recover` settles a card's open sessions with the arbiter. Card A goes \
         first: it signs a resolve request, which carries card B's signed agreement (the proof \
         that B put the ticket in escrow). The arbiter records COMPLETE for this session, once \
         and for all, and card A takes the ticket.",
    );
    let first = n.relay.len();
    n.run(&n.on(A, &["recover"]))?;
    n.say(
        "Card B then finds that verdict at the arbiter and takes the money. Had B gone first, \
         it would have asked to cancel, the arbiter would have recorded CANCEL, and both cards \
         would have had their own value back: either way, both cards end alike.",
    );
    n.run(&n.on(B, &["recover"]))?;

    let found = verdicts(&n.relay.since(first), &s2);
    let arbiter_key = n.query(&n.on(A, &["info", "--json"]))?["arbiter_key"]
        .as_str()
        .and_then(|k| hex::decode(k).ok())
        .and_then(|k| VerifyingKey::from_sec1_bytes(&k).ok())
        .ok_or_else(|| Failed("card A shows no arbiter key".into()))?;
    let decided = found
        .iter()
        .find(|(route, _)| route.ends_with("/resolutions"))
        .map(|(_, v)| v);
    let repeated = found
        .iter()
        .find(|(route, _)| route.contains("/verdicts/"))
        .map(|(_, v)| v);
    let (Some(decided), Some(repeated)) = (decided, repeated) else {
        return Err(Failed(format!(
            "the relay did not see the arbiter decide session {s2} on card A's resolve request \
             and answer card B with it: {:?}",
            found.iter().map(|(r, _)| r).collect::<Vec<_>>()
        )));
    };
    let outcome = serde_json::to_value(decided.outcome).unwrap_or_default();
    let complete = outcome == "complete";
    let same = (decided.a, decided.outcome, decided.signature)
        == (repeated.a, repeated.outcome, repeated.signature);
    let signed = decided.verifies(&arbiter_key);
    n.note(&format!(
        "the arbiter's verdict on session {}: {}, signature {} ({})",
        short(&decided.s2),
        outcome.as_str().unwrap_or("?"),
        short(&decided.signature),
        if signed {
            "checked with the arbiter key on the cards"
        } else {
            "DOES NOT CHECK"
        }
    ));
    n.note(&format!(
        "card A got it for its resolve request; card B got {}",
        if same {
            "the same verdict, same signature"
        } else {
            "ANOTHER VERDICT"
        }
    ));
    if !(complete && same && signed) {
        return Err(Failed(
            "the arbiter's verdict is not one signed COMPLETE for both cards".into(),
        ));
    }
    let a = card(expected, A);
    a.escrowed -= PRICE;
    a.sessions = 0;
    let b = card(expected, B);
    b.available += PRICE;
    b.sessions = 0;
    hand_over(expected, B, A, "CONCERT");
    n.balances(expected)
}

fn unload(n: &mut Narrator, expected: &mut Figures) -> Step {
    let amount = card(expected, B).available;
    n.act(
        &format!("Card B unloads its {amount} JPY"),
        "Unloading needs the PIN: card B debits the amount and signs a receipt with its next \
         unload counter; the center credits card B's account once for that receipt and \
         acknowledges it, which clears the receipt on the card.",
    );
    n.run(&n.on(
        B,
        &["unload", "--amount", &amount.to_string(), "--pin", PINS[B]],
    ))?;
    let b = card(expected, B);
    b.available -= amount;
    b.center += amount;
    n.balances(expected)
}

fn the_end(n: &mut Narrator, expected: &Figures) -> Step {
    n.finale(
        "The end",
        "Everything adds up, nothing is left open, and the bank never heard of a card.",
    );
    let cards = expected.cards.iter().flatten();
    let on_cards: u64 = cards.clone().map(|c| c.available + c.escrowed).sum();
    let at_center: u64 = cards.clone().map(|c| c.center).sum();
    let bank = expected.bank.unwrap_or(0);
    let open: usize = cards.clone().map(|c| c.sessions + c.in_flight).sum();
    let escrowed: u64 = cards.clone().map(|c| c.escrowed).sum();
    // The figures were read and checked at the end of the last act; this checks the story.
    if bank + on_cards + at_center != DEPOSIT || open > 0 || escrowed > 0 {
        return Err(Failed(format!(
            "the story does not add up: bank {bank} + cards {on_cards} + center accounts \
             {at_center} for {DEPOSIT} deposited, {open} open, {escrowed} in escrow"
        )));
    }
    n.note(&format!(
        "{DEPOSIT} JPY paid in = {bank} in the bank account + {on_cards} on the cards + \
         {at_center} in the cards' center accounts"
    ));
    let waiting = journal(n).map_or(0, |j| j.withdrawals().len());
    if waiting > 0 {
        return Err(Failed(format!(
            "the journal still holds {waiting} withdrawal(s)"
        )));
    }
    n.note(
        "every ticket is on one card; no exchange session, nothing in escrow, no load or \
         unload in flight, an empty journal",
    );
    let all = n.relay.since(0);
    let (bank_messages, others) = by_party(&all);
    let published: Vec<&Message> = all.iter().collect();
    let comparison = knowledge::compare(&bank_messages, &others, &published);
    unlinked(&comparison, "center or the arbiter")?;
    n.note(&format!(
        "over the whole demo, the bank's {} messages and the center's and the arbiter's {} \
         share no run of {} bytes, apart from the published key data",
        bank_messages.len(),
        others.len(),
        knowledge::RUN
    ));
    Ok(())
}

/// The auditor reads the bank's, the center's and the arbiter's databases, read-only, and
/// checks every invariant they can show against each other.
fn audit(n: &mut Narrator, plot: &Plot) -> Step {
    n.say(
        "Last, the auditor: it opens the three databases read-only and checks the ledgers \
         against each other (bank debits = tokens signed, redemptions never more than \
         signatures, every account's balance = its rows, the float, one verdict per session).",
    );
    println!("$ valuecard-backend audit --db backend");
    let audit = valuecard_terminal::launch::audit(&plot.databases)
        .map_err(|e| Failed(format!("the auditor did not run: {e}")))?;
    for line in audit.report.lines() {
        println!("    {line}");
    }
    if !audit.passed {
        return Err(Failed(
            "the auditor found a violation (see its report above)".into(),
        ));
    }
    n.note("the auditor found every invariant holding");
    Ok(())
}
