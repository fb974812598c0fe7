//! The auditor (PROTOCOLS.md, "Parties", invariants 4 to 6): a read-only pass over the
//! bank's, the center's and the arbiter's databases that checks every invariant they can
//! show, and reports each by name (`valuecard-backend audit`).
//!
//! It trusts nothing the roles keep for themselves: each invariant is computed again from
//! the ledger rows (every sum in i128, so that no sum can overflow while it is checked, and
//! then checked to fit an SQL integer), and compared with what the roles store. The
//! databases are opened read-only, in one read transaction each, the center's before the
//! bank's: the bank's rows only grow, so a withdrawal made between the two reads can only
//! make "redemptions per key ≤ signatures per key" easier, never fail it by accident.
//!
//! | invariant | needs | holds when |
//! |---|---|---|
//! | `bank.account_balance` | bank | every account's balance = its deposits − its withdrawals |
//! | `bank.withdrawal_amount` | bank | every withdrawal's amount = its denomination key's |
//! | `bank.debits_per_key` | bank | the debits per key = the tokens it signed × its amount |
//! | `bank.totals_fit_i64` | bank | every total above fits in 2^63 − 1 |
//! | `center.redemption_amount` | center | every redemption's amount = its key's |
//! | `center.redemptions_signed` | center, bank | per key, the redemptions ≤ the bank's signatures |
//! | `center.unit_accounts` | center | every unit account = redeemed − loaded + refunded + unloaded of its rows, and its stored totals are those sums |
//! | `center.float` | center | per asset, loads − refunds − unloads ≥ 0, and = the `floats` table |
//! | `center.attested_cards` | center | every card that holds or moved units was registered with an attestation |
//! | `center.totals_fit_i64` | center | every total above, per card and for all cards, fits in 2^63 − 1 |
//! | `arbiter.one_verdict_per_session` | arbiter | one verdict per (a, s2) |
//! | `arbiter.one_agreement_per_responder` | arbiter | one agreement per (s2, responder): a genuine card signs one; two mean the responder's key is out of its chip (block the card). The arbiter takes both, each its own session |
//! | `arbiter.parties` | arbiter | every verdict is the arbiter's, its a = SHA-256(c ‖ id_A ‖ id_B), and its proof is signed by the parties it names |

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};

use serde::Serialize;

use apdu_spec::cert::{Certificate, decode_public_key};
use apdu_spec::exchange::{self, Outcome, domains};

use crate::db::{Database, DbError, Row, Tx, Value};
use crate::{arbiter, bank, center};

/// The most details a check lists; the rest are counted.
pub const MAX_DETAILS: usize = 20;

/// The databases to audit; any of them may be left out (the checks that need it are
/// skipped).
#[derive(Clone, Debug, Default)]
pub struct Paths {
    pub bank: Option<PathBuf>,
    pub center: Option<PathBuf>,
    pub arbiter: Option<PathBuf>,
}

impl Paths {
    /// The three databases of `valuecard-backend all --db DIR`.
    pub fn in_folder(dir: &Path) -> Self {
        Paths {
            bank: Some(dir.join("bank.sqlite")),
            center: Some(dir.join("center.sqlite")),
            arbiter: Some(dir.join("arbiter.sqlite")),
        }
    }
}

/// Why the audit could not run at all.
#[derive(Debug, thiserror::Error)]
pub enum AuditError {
    #[error("cannot open the {role}'s database {path}: {error}")]
    Open {
        role: &'static str,
        path: String,
        error: DbError,
    },
    #[error("reading the {role}'s database: {error}")]
    Read { role: &'static str, error: DbError },
}

#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum Status {
    Ok,
    Violation,
    Skipped,
}

/// One invariant's result.
#[derive(Clone, Debug, Serialize)]
pub struct Check {
    pub name: &'static str,
    pub description: &'static str,
    pub status: Status,
    /// What broke it (at most [`MAX_DETAILS`] lines, then a count), or what was checked.
    pub details: Vec<String>,
}

#[derive(Clone, Debug, Serialize)]
pub struct Report {
    /// True when no invariant is violated.
    pub ok: bool,
    pub invariants: Vec<Check>,
}

impl Report {
    pub fn violations(&self) -> impl Iterator<Item = &Check> {
        self.invariants
            .iter()
            .filter(|c| c.status == Status::Violation)
    }

    /// The check named `name`.
    pub fn check(&self, name: &str) -> Option<&Check> {
        self.invariants.iter().find(|c| c.name == name)
    }

    /// The report for people: one line per invariant, the details of violations indented.
    pub fn render(&self) -> String {
        let mut out = String::new();
        for c in &self.invariants {
            let status = match c.status {
                Status::Ok => "ok",
                Status::Violation => "VIOLATION",
                Status::Skipped => "skipped",
            };
            out.push_str(&format!("{status:<10} {:<38} {}\n", c.name, c.description));
            for d in &c.details {
                out.push_str(&format!("{:<10}   {d}\n", ""));
            }
        }
        let count = |s| self.invariants.iter().filter(|c| c.status == s).count();
        out.push_str(&format!(
            "{} invariants hold, {} violated, {} skipped\n",
            count(Status::Ok),
            count(Status::Violation),
            count(Status::Skipped)
        ));
        out
    }
}

/// Collects what breaks one invariant.
struct Findings {
    lines: Vec<String>,
    more: usize,
}

impl Findings {
    fn new() -> Self {
        Findings {
            lines: Vec::new(),
            more: 0,
        }
    }

    fn push(&mut self, line: String) {
        if self.lines.len() < MAX_DETAILS {
            self.lines.push(line);
        } else {
            self.more += 1;
        }
    }

    fn into_check(
        mut self,
        name: &'static str,
        description: &'static str,
        checked: String,
    ) -> Check {
        if self.lines.is_empty() {
            let checked = if checked.is_empty() {
                "nothing to check yet".to_owned()
            } else {
                checked
            };
            return Check {
                name,
                description,
                status: Status::Ok,
                details: vec![checked],
            };
        }
        if self.more > 0 {
            self.lines.push(format!("... and {} more", self.more));
        }
        Check {
            name,
            description,
            status: Status::Violation,
            details: self.lines,
        }
    }
}

fn skipped(name: &'static str, description: &'static str, why: &str) -> Check {
    Check {
        name,
        description,
        status: Status::Skipped,
        details: vec![why.to_owned()],
    }
}

/// Sums of i64 amounts in i128, by key.
struct Sums<K>(BTreeMap<K, i128>);

impl<K: Ord + Clone> Sums<K> {
    fn new() -> Self {
        Sums(BTreeMap::new())
    }

    fn add(&mut self, key: &K, amount: i128) {
        *self.0.entry(key.clone()).or_insert(0) += amount;
    }

    fn get(&self, key: &K) -> i128 {
        self.0.get(key).copied().unwrap_or(0)
    }
}

fn fits(total: i128) -> bool {
    (0..=i128::from(i64::MAX)).contains(&total)
}

fn short(bytes: &[u8]) -> String {
    let h = hex::encode(bytes);
    if h.len() > 16 {
        format!("{}…", &h[..16])
    } else {
        h
    }
}

/// Reads everything in one transaction.
fn read<T>(
    db: &Database,
    role: &'static str,
    body: impl FnOnce(&mut dyn Tx) -> Result<T, DbError>,
) -> Result<T, AuditError> {
    db.transaction(body)
        .map_err(|error| AuditError::Read { role, error })
}

fn amount(row: &Row, i: usize) -> Result<i128, DbError> {
    Ok(i128::from(row.i64(i)?))
}

fn open(
    path: &Path,
    role: &'static str,
    migrations: &[crate::db::Migration],
) -> Result<Database, AuditError> {
    let text = path.to_string_lossy().into_owned();
    Database::open_sqlite_read_only(&text, role, migrations).map_err(|error| AuditError::Open {
        role,
        path: text,
        error,
    })
}

/// Opens the databases of `paths` read-only and audits them.
pub fn audit_files(paths: &Paths) -> Result<Report, AuditError> {
    let center = paths
        .center
        .as_deref()
        .map(|p| open(p, "center", center::MIGRATIONS))
        .transpose()?;
    let bank = paths
        .bank
        .as_deref()
        .map(|p| open(p, "bank", bank::MIGRATIONS))
        .transpose()?;
    let arbiter = paths
        .arbiter
        .as_deref()
        .map(|p| open(p, "arbiter", arbiter::MIGRATIONS))
        .transpose()?;
    audit(bank.as_ref(), center.as_ref(), arbiter.as_ref())
}

/// What the bank shows.
struct BankFacts {
    /// Withdrawals (tokens signed) per key id.
    signed_per_key: BTreeMap<[u8; 32], i128>,
}

/// Audits the databases given (opened read-only or not: nothing is written).
pub fn audit(
    bank: Option<&Database>,
    center: Option<&Database>,
    arbiter: Option<&Database>,
) -> Result<Report, AuditError> {
    let mut checks = Vec::new();
    // The center first: see the module's doc.
    let center_rows = center
        .map(|db| read(db, "center", CenterRows::read))
        .transpose()?;
    let bank_facts = match bank {
        Some(db) => Some(read(db, "bank", |tx| audit_bank(tx, &mut checks))?),
        None => {
            for (name, description) in BANK_CHECKS {
                checks.push(skipped(name, description, "no bank database given"));
            }
            None
        }
    };
    match center_rows {
        Some(rows) => rows.audit(bank_facts.as_ref(), &mut checks),
        None => {
            for (name, description) in CENTER_CHECKS {
                checks.push(skipped(name, description, "no center database given"));
            }
        }
    }
    match arbiter {
        Some(db) => read(db, "arbiter", |tx| audit_arbiter(tx, &mut checks))?,
        None => {
            for (name, description) in ARBITER_CHECKS {
                checks.push(skipped(name, description, "no arbiter database given"));
            }
        }
    }
    Ok(Report {
        ok: checks.iter().all(|c| c.status != Status::Violation),
        invariants: checks,
    })
}

const BANK_ACCOUNTS: (&str, &str) = (
    "bank.account_balance",
    "every account's balance = its deposits - its withdrawals",
);
const BANK_WITHDRAWALS: (&str, &str) = (
    "bank.withdrawal_amount",
    "every withdrawal's amount = its denomination key's amount",
);
const BANK_DEBITS: (&str, &str) = (
    "bank.debits_per_key",
    "the bank's debits per key = the tokens it signed with the key x its amount",
);
const BANK_FITS: (&str, &str) = (
    "bank.totals_fit_i64",
    "every bank total (per account, per key, in all) fits in 2^63 - 1",
);
const BANK_CHECKS: [(&str, &str); 4] = [BANK_ACCOUNTS, BANK_WITHDRAWALS, BANK_DEBITS, BANK_FITS];

fn audit_bank(tx: &mut dyn Tx, checks: &mut Vec<Check>) -> Result<BankFacts, DbError> {
    let mut deposits = Sums::<String>::new();
    let mut withdrawals = Sums::<String>::new();
    let mut in_all = (0i128, 0i128);
    for r in tx.query("SELECT account, amount FROM deposits", &[])? {
        deposits.add(&r.text(0)?, amount(&r, 1)?);
        in_all.0 += amount(&r, 1)?;
    }
    let key_amounts: BTreeMap<[u8; 32], i128> = tx
        .query("SELECT key_id, amount FROM denomination_keys", &[])?
        .iter()
        .map(|r| Ok((r.array(0)?, amount(r, 1)?)))
        .collect::<Result<_, DbError>>()?;
    let mut wrong_amount = Findings::new();
    let mut debits = Sums::<[u8; 32]>::new();
    let mut signed = Sums::<[u8; 32]>::new();
    let rows = tx.query("SELECT account, key_id, amount FROM withdrawals", &[])?;
    for r in &rows {
        let (account, key, value) = (r.text(0)?, r.array::<32>(1)?, amount(r, 2)?);
        withdrawals.add(&account, value);
        debits.add(&key, value);
        signed.add(&key, 1);
        in_all.1 += value;
        match key_amounts.get(&key) {
            Some(k) if *k == value => {}
            Some(k) => wrong_amount.push(format!(
                "a withdrawal of {value} from account {account} with key {} of {k}",
                short(&key)
            )),
            None => wrong_amount.push(format!(
                "a withdrawal of {value} from account {account} with unknown key {}",
                short(&key)
            )),
        }
    }
    let mut wrong_balance = Findings::new();
    let mut too_big = Findings::new();
    let accounts = tx.query("SELECT number, balance FROM accounts ORDER BY number", &[])?;
    for r in &accounts {
        let (number, balance) = (r.text(0)?, amount(r, 1)?);
        let (d, w) = (deposits.get(&number), withdrawals.get(&number));
        if balance != d - w {
            wrong_balance.push(format!(
                "account {number}: balance {balance}, deposits {d} - withdrawals {w} = {}",
                d - w
            ));
        }
        for (what, total) in [("deposits", d), ("withdrawals", w)] {
            if !fits(total) {
                too_big.push(format!("account {number}: {what} total {total}"));
            }
        }
    }
    let mut wrong_debits = Findings::new();
    for (key, debited) in &debits.0 {
        let count = signed.get(key);
        let expected = key_amounts.get(key).map(|a| a * count);
        if expected != Some(*debited) {
            wrong_debits.push(format!(
                "key {}: {count} tokens signed, {debited} debited",
                short(key)
            ));
        }
        if !fits(*debited) {
            too_big.push(format!("key {}: debits {debited}", short(key)));
        }
    }
    for (what, total) in [("deposits", in_all.0), ("withdrawals", in_all.1)] {
        if !fits(total) {
            too_big.push(format!("all {what}: {total}"));
        }
    }
    checks.push(wrong_balance.into_check(
        BANK_ACCOUNTS.0,
        BANK_ACCOUNTS.1,
        format!("{} accounts", accounts.len()),
    ));
    checks.push(wrong_amount.into_check(
        BANK_WITHDRAWALS.0,
        BANK_WITHDRAWALS.1,
        format!("{} withdrawals", rows.len()),
    ));
    checks.push(wrong_debits.into_check(
        BANK_DEBITS.0,
        BANK_DEBITS.1,
        format!("{} keys used", debits.0.len()),
    ));
    checks.push(too_big.into_check(
        BANK_FITS.0,
        BANK_FITS.1,
        format!("deposits {} and withdrawals {} in all", in_all.0, in_all.1),
    ));
    Ok(BankFacts {
        signed_per_key: signed.0,
    })
}

const CENTER_REDEMPTIONS: (&str, &str) = (
    "center.redemption_amount",
    "every redemption's amount = its denomination key's amount",
);
const CENTER_SIGNED: (&str, &str) = (
    "center.redemptions_signed",
    "per key, the center's redemptions <= the tokens the bank signed",
);
const CENTER_ACCOUNTS: (&str, &str) = (
    "center.unit_accounts",
    "every unit account's balance = redeemed - loaded + refunded + unloaded of its rows, and its totals are those sums",
);
const CENTER_FLOAT: (&str, &str) = (
    "center.float",
    "per asset, the float loads - refunds - unloads >= 0 and = the floats table",
);
const CENTER_ATTESTED: (&str, &str) = (
    "center.attested_cards",
    "every card that holds or moved units was registered with a maker's attestation",
);
const CENTER_FITS: (&str, &str) = (
    "center.totals_fit_i64",
    "every center total (per card, per key, per asset, for all cards) fits in 2^63 - 1",
);
const CENTER_CHECKS: [(&str, &str); 6] = [
    CENTER_REDEMPTIONS,
    CENTER_SIGNED,
    CENTER_ACCOUNTS,
    CENTER_FLOAT,
    CENTER_ATTESTED,
    CENTER_FITS,
];

type Account = ([u8; 32], String);

/// The center's rows, read in one transaction.
struct CenterRows {
    /// (key id, amount, the key's amount).
    redemptions: Vec<([u8; 32], i128, Option<i128>, Account)>,
    /// Asset loads: (card, asset) and amount; refunds and unloads alike.
    loads: Vec<(Account, i128)>,
    refunds: Vec<(Account, i128)>,
    unloads: Vec<(Account, i128)>,
    /// (card, asset) → balance, redeemed, loaded, refunded, unloaded.
    accounts: BTreeMap<Account, [i128; 5]>,
    floats: BTreeMap<String, i128>,
    /// Cards without an attestation.
    unattested: Vec<[u8; 32]>,
}

impl CenterRows {
    fn read(tx: &mut dyn Tx) -> Result<Self, DbError> {
        let account =
            |r: &Row, i: usize| -> Result<Account, DbError> { Ok((r.array(i)?, r.text(i + 1)?)) };
        let mut redemptions = Vec::new();
        for r in tx.query(
            "SELECT r.key_id, r.amount, k.amount, r.card_id, r.asset FROM redemptions r
             LEFT JOIN denomination_keys k ON k.key_id = r.key_id",
            &[],
        )? {
            let key_amount = match r.0.get(2) {
                Some(Value::Int(a)) => Some(i128::from(*a)),
                _ => None,
            };
            redemptions.push((r.array(0)?, amount(&r, 1)?, key_amount, account(&r, 3)?));
        }
        let mut loads = Vec::new();
        for r in tx.query(
            "SELECT card_id, asset, amount FROM loads WHERE kind = 'asset'",
            &[],
        )? {
            loads.push((account(&r, 0)?, amount(&r, 2)?));
        }
        let mut refunds = Vec::new();
        for r in tx.query(
            "SELECT l.card_id, l.asset, l.amount FROM load_cancellations c
             JOIN loads l ON l.card_id = c.card_id AND l.counter = c.counter
             WHERE c.outcome = 'refunded' AND l.kind = 'asset'",
            &[],
        )? {
            refunds.push((account(&r, 0)?, amount(&r, 2)?));
        }
        let mut unloads = Vec::new();
        for r in tx.query("SELECT card_id, asset, amount FROM unloads", &[])? {
            unloads.push((account(&r, 0)?, amount(&r, 2)?));
        }
        let mut accounts = BTreeMap::new();
        for r in tx.query(
            "SELECT card_id, asset, balance, redeemed, loaded, refunded, unloaded FROM unit_accounts",
            &[],
        )? {
            accounts.insert(
                account(&r, 0)?,
                [amount(&r, 2)?, amount(&r, 3)?, amount(&r, 4)?, amount(&r, 5)?, amount(&r, 6)?],
            );
        }
        let floats = tx
            .query("SELECT asset, amount FROM floats", &[])?
            .iter()
            .map(|r| Ok((r.text(0)?, amount(r, 1)?)))
            .collect::<Result<_, DbError>>()?;
        let unattested = tx
            .query(
                "SELECT card_id FROM cards WHERE maker IS NULL OR attestation_key IS NULL",
                &[],
            )?
            .iter()
            .map(|r| r.array(0))
            .collect::<Result<_, _>>()?;
        Ok(CenterRows {
            redemptions,
            loads,
            refunds,
            unloads,
            accounts,
            floats,
            unattested,
        })
    }

    fn audit(self, bank: Option<&BankFacts>, checks: &mut Vec<Check>) {
        let mut too_big = Findings::new();
        // Redemptions: their amounts, and how many per key.
        let mut wrong_amount = Findings::new();
        let mut per_key = Sums::<[u8; 32]>::new();
        let mut redeemed = Sums::<Account>::new();
        for (key, value, key_amount, acct) in &self.redemptions {
            per_key.add(key, 1);
            redeemed.add(acct, *value);
            if *key_amount != Some(*value) {
                wrong_amount.push(format!(
                    "card {}: a redemption of {value} with key {} of {}",
                    short(&acct.0),
                    short(key),
                    key_amount.map_or("no known amount".to_owned(), |a| a.to_string())
                ));
            }
        }
        checks.push(wrong_amount.into_check(
            CENTER_REDEMPTIONS.0,
            CENTER_REDEMPTIONS.1,
            format!("{} redemptions", self.redemptions.len()),
        ));
        match bank {
            Some(bank) => {
                let mut unsigned = Findings::new();
                for (key, count) in &per_key.0 {
                    let signed = bank.signed_per_key.get(key).copied().unwrap_or(0);
                    if *count > signed {
                        unsigned.push(format!(
                            "key {}: {count} redeemed, {signed} signed by the bank",
                            short(key)
                        ));
                    }
                }
                checks.push(unsigned.into_check(
                    CENTER_SIGNED.0,
                    CENTER_SIGNED.1,
                    format!("{} keys redeemed", per_key.0.len()),
                ));
            }
            None => checks.push(skipped(
                CENTER_SIGNED.0,
                CENTER_SIGNED.1,
                "needs the bank's database too",
            )),
        }
        // Unit accounts: every sum from the rows.
        let sums = |rows: &[(Account, i128)]| {
            let mut s = Sums::<Account>::new();
            for (acct, value) in rows {
                s.add(acct, *value);
            }
            s
        };
        let (loaded, refunded, unloaded) =
            (sums(&self.loads), sums(&self.refunds), sums(&self.unloads));
        let mut wrong_account = Findings::new();
        let mut everyone: Vec<&Account> = self.accounts.keys().collect();
        for s in [&redeemed, &loaded, &refunded, &unloaded] {
            everyone.extend(s.0.keys());
        }
        everyone.sort();
        everyone.dedup();
        for acct in &everyone {
            let rows = [
                redeemed.get(acct),
                loaded.get(acct),
                refunded.get(acct),
                unloaded.get(acct),
            ];
            let expected = rows[0] - rows[1] + rows[2] + rows[3];
            let who = format!("card {} {}", short(&acct.0), acct.1);
            match self.accounts.get(*acct) {
                None => wrong_account.push(format!("{who}: rows but no unit account")),
                Some(stored) => {
                    if stored[0] != expected {
                        wrong_account.push(format!(
                            "{who}: balance {}, its rows make {expected} (redeemed {} - loaded {} + refunded {} + unloaded {})",
                            stored[0], rows[0], rows[1], rows[2], rows[3]
                        ));
                    } else if stored[1..] != rows {
                        wrong_account.push(format!(
                            "{who}: stored totals {:?}, its rows make {rows:?}",
                            &stored[1..]
                        ));
                    }
                }
            }
            for (what, total) in ["redeemed", "loaded", "refunded", "unloaded"]
                .iter()
                .zip(rows)
            {
                if !fits(total) {
                    too_big.push(format!("{who}: {what} {total}"));
                }
            }
            if !fits(expected) {
                too_big.push(format!("{who}: balance {expected}"));
            }
        }
        checks.push(wrong_account.into_check(
            CENTER_ACCOUNTS.0,
            CENTER_ACCOUNTS.1,
            format!("{} unit accounts", self.accounts.len()),
        ));
        // The float per asset.
        let mut per_asset = Sums::<String>::new();
        for (acct, value) in &self.loads {
            per_asset.add(&acct.1, *value);
        }
        for (acct, value) in self.refunds.iter().chain(&self.unloads) {
            per_asset.add(&acct.1, -*value);
        }
        let mut wrong_float = Findings::new();
        let mut assets: Vec<&String> = per_asset.0.keys().chain(self.floats.keys()).collect();
        assets.sort();
        assets.dedup();
        for asset in &assets {
            let float = per_asset.get(asset);
            if float < 0 {
                wrong_float.push(format!(
                    "{asset}: loads - refunds - unloads = {float}: cards gave back more than they were loaded with"
                ));
            }
            let stored = self.floats.get(*asset).copied().unwrap_or(0);
            if stored != float {
                wrong_float.push(format!(
                    "{asset}: the floats table says {stored}, the rows {float}"
                ));
            }
            if !fits(float.max(0)) {
                too_big.push(format!("{asset}: float {float}"));
            }
        }
        checks.push(
            wrong_float.into_check(
                CENTER_FLOAT.0,
                CENTER_FLOAT.1,
                assets
                    .iter()
                    .map(|a| format!("{a} {}", per_asset.get(a)))
                    .collect::<Vec<_>>()
                    .join(", "),
            ),
        );
        // Units only on genuine cards.
        let mut unattested = Findings::new();
        for card in &self.unattested {
            let moved = everyone.iter().any(|a| a.0 == *card)
                || self.accounts.iter().any(|(a, s)| a.0 == *card && s[0] != 0);
            if moved {
                unattested.push(format!(
                    "card {}: registered without an attestation, yet holds or moved units",
                    short(card)
                ));
            }
        }
        checks.push(unattested.into_check(
            CENTER_ATTESTED.0,
            CENTER_ATTESTED.1,
            format!(
                "{} cards registered before attestation",
                self.unattested.len()
            ),
        ));
        for (key, count) in &per_key.0 {
            if !fits(*count) {
                too_big.push(format!("key {}: {count} redemptions", short(key)));
            }
        }
        // All cards together, per asset.
        for (what, sums) in [
            ("redeemed", &redeemed),
            ("loaded", &loaded),
            ("refunded", &refunded),
            ("unloaded", &unloaded),
        ] {
            let mut per_asset = Sums::<String>::new();
            for (acct, value) in &sums.0 {
                per_asset.add(&acct.1, *value);
            }
            for (asset, total) in &per_asset.0 {
                if !fits(*total) {
                    too_big.push(format!("all cards: {what} {total} {asset}"));
                }
            }
        }
        checks.push(too_big.into_check(
            CENTER_FITS.0,
            CENTER_FITS.1,
            format!("{} unit accounts, {} assets", everyone.len(), assets.len()),
        ));
    }
}

const ARBITER_SESSIONS: (&str, &str) = (
    "arbiter.one_verdict_per_session",
    "one verdict per session (a, s2)",
);
const ARBITER_RESPONDERS: (&str, &str) = (
    "arbiter.one_agreement_per_responder",
    "one agreement per (s2, responder): a genuine responder signs one per s2, so two mean its key is out of its chip (block the card)",
);
const ARBITER_PARTIES: (&str, &str) = (
    "arbiter.parties",
    "every verdict is signed by the arbiter, a = SHA-256(c || id_A || id_B), and its proof is signed by the parties a names",
);
const ARBITER_CHECKS: [(&str, &str); 3] = [ARBITER_SESSIONS, ARBITER_RESPONDERS, ARBITER_PARTIES];

fn audit_arbiter(tx: &mut dyn Tx, checks: &mut Vec<Check>) -> Result<(), DbError> {
    let rows = tx.query(
        "SELECT a, s2, outcome, signature, commitment, responder_id, responder_certificate,
                initiator_id, initiator_certificate, agreement_signature, resolve_signature,
                cancel_signature
         FROM verdicts ORDER BY s2, a",
        &[],
    )?;
    let arbiter_key = tx
        .query_opt("SELECT public_key FROM role_key WHERE id = 1", &[])?
        .map(|r| r.blob(0))
        .transpose()?
        .and_then(|k| decode_public_key(&k));
    let mut sessions = BTreeMap::<([u8; 32], [u8; 32]), usize>::new();
    let mut responders = BTreeMap::<([u8; 32], [u8; 32]), Vec<[u8; 32]>>::new();
    let mut parties = Findings::new();
    let mut legacy = 0usize;
    for r in &rows {
        let (a, s2): ([u8; 32], [u8; 32]) = (r.array(0)?, r.array(1)?);
        *sessions.entry((a, s2)).or_default() += 1;
        responders.entry((s2, r.array(5)?)).or_default().push(a);
        let session = format!("session a {} s2 {}", short(&a), short(&s2));
        let outcome = match r.text(2)?.as_str() {
            "complete" => Outcome::Complete,
            "cancel" => Outcome::Cancel,
            other => {
                parties.push(format!("{session}: outcome {other:?}"));
                continue;
            }
        };
        // A row from before requests named both parties was signed with the key the
        // database held then, and carries no c: nothing of it can be checked again.
        let Some(Value::Blob(c)) = r.0.get(4) else {
            legacy += 1;
            continue;
        };
        match &arbiter_key {
            Some(key) if exchange::verify_verdict(key, &s2, &a, outcome, &r.blob(3)?) => {}
            Some(_) => parties.push(format!(
                "{session}: the verdict is not the arbiter's signature"
            )),
            None => parties.push(format!("{session}: the database names no arbiter key")),
        }
        let certificate = |i: usize| -> Option<Certificate> {
            match r.0.get(i) {
                Some(Value::Blob(b)) => Certificate::decode(b).ok(),
                _ => None,
            }
        };
        let (Some(initiator), Some(responder)) = (certificate(8), certificate(6)) else {
            parties.push(format!("{session}: a certificate does not parse"));
            continue;
        };
        let c: [u8; 32] = match c.as_slice().try_into() {
            Ok(c) => c,
            Err(_) => {
                parties.push(format!("{session}: c is not 32 bytes"));
                continue;
            }
        };
        if exchange::agreement_of(&c, &initiator.card_id, &responder.card_id) != a {
            parties.push(format!(
                "{session}: a is not SHA-256(c || id_A || id_B) of its certificates"
            ));
            continue;
        }
        let signed_by = |cert: &Certificate, domain: &str, i: usize| -> bool {
            match (decode_public_key(&cert.public_key), r.0.get(i)) {
                (Some(key), Some(Value::Blob(sig))) => exchange::verify(&key, domain, &a, &s2, sig),
                _ => false,
            }
        };
        let proven = match outcome {
            Outcome::Cancel => signed_by(&responder, domains::CANCEL, 11),
            Outcome::Complete => {
                signed_by(&responder, domains::AGREE, 9)
                    && signed_by(&initiator, domains::RESOLVE, 10)
            }
        };
        if !proven {
            parties.push(format!(
                "{session}: the {} is not signed by the parties a names",
                outcome.name()
            ));
        }
    }
    let mut twice = Findings::new();
    for ((a, s2), n) in &sessions {
        if *n > 1 {
            twice.push(format!(
                "session a {} s2 {}: {n} verdicts",
                short(a),
                short(s2)
            ));
        }
    }
    let mut two_agreements = Findings::new();
    for ((s2, responder), agreements) in &responders {
        if agreements.len() > 1 {
            two_agreements.push(format!(
                "s2 {} responder {}: {} verdicts, for agreements {}",
                short(s2),
                short(responder),
                agreements.len(),
                agreements
                    .iter()
                    .map(|a| short(a))
                    .collect::<Vec<_>>()
                    .join(", ")
            ));
        }
    }
    checks.push(twice.into_check(
        ARBITER_SESSIONS.0,
        ARBITER_SESSIONS.1,
        format!("{} verdicts", rows.len()),
    ));
    checks.push(two_agreements.into_check(
        ARBITER_RESPONDERS.0,
        ARBITER_RESPONDERS.1,
        format!("{} verdicts", rows.len()),
    ));
    checks.push(parties.into_check(
        ARBITER_PARTIES.0,
        ARBITER_PARTIES.1,
        format!(
            "{} verdicts; {legacy} from before requests named both parties",
            rows.len()
        ),
    ));
    Ok(())
}
