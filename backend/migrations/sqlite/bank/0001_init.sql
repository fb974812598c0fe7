-- The bank's schema, version 1 (PROTOCOLS.md, "Funding: bank to center", step 4).
--
-- Why double debits and credits are impossible here even with a bug in the code:
--   * An account's balance changes ONLY through the triggers on INSERT into `deposits` and
--     `withdrawals`. The program never runs UPDATE on `accounts.balance`, and an account
--     is opened with a zero balance (trigger `accounts_open_empty`).
--   * Each ledger row has its natural key as PRIMARY KEY: a deposit its caller's reference,
--     a withdrawal the SHA-256 of its blinded message. A second insert of the same deposit
--     or withdrawal fails on the key, and its trigger never runs: it debits or credits once.
--   * `CHECK (balance >= 0)`: a withdrawal larger than the balance makes the trigger's
--     UPDATE fail, which aborts the INSERT, so nothing of it stays.
--   * Ledger rows are append-only (triggers `*_append_only_*`), so that an account's
--     balance always equals SUM(deposits) - SUM(withdrawals) for it; an audit can check:
--       SELECT number FROM accounts a WHERE balance <>
--         (SELECT COALESCE(SUM(amount), 0) FROM deposits WHERE account = a.number) -
--         (SELECT COALESCE(SUM(amount), 0) FROM withdrawals WHERE account = a.number);
--   * Every table is STRICT: an integer that overflowed into a REAL is refused, not stored.
-- The bank never stores a card id or a token message: it never sees them.

-- The long-term ECDSA P-256 key that signs the published key list. One row.
CREATE TABLE bank_key (
    id INTEGER PRIMARY KEY CHECK (id = 1),
    private_key BLOB NOT NULL CHECK (length(private_key) = 32)
) STRICT;

CREATE TABLE accounts (
    number TEXT PRIMARY KEY CHECK (length(number) = 12),
    -- Argon2id PHC string (random salt inside); never the credential itself.
    credential_hash TEXT NOT NULL,
    currency TEXT NOT NULL,
    balance INTEGER NOT NULL CHECK (balance >= 0),
    opened_at INTEGER NOT NULL
) STRICT;

CREATE TRIGGER accounts_open_empty BEFORE INSERT ON accounts
WHEN NEW.balance <> 0
BEGIN
    SELECT RAISE(ABORT, 'an account opens with a zero balance');
END;

-- Cash paid in at the counter. Natural key: the caller's reference.
CREATE TABLE deposits (
    reference TEXT PRIMARY KEY CHECK (length(reference) BETWEEN 1 AND 64),
    account TEXT NOT NULL REFERENCES accounts (number),
    amount INTEGER NOT NULL CHECK (amount > 0),
    balance_after INTEGER NOT NULL,
    created_at INTEGER NOT NULL
) STRICT;

CREATE TRIGGER deposits_credit AFTER INSERT ON deposits
BEGIN
    UPDATE accounts SET balance = balance + NEW.amount WHERE number = NEW.account;
    SELECT RAISE(ABORT, 'balance_after does not match the credited balance')
    WHERE (SELECT balance FROM accounts WHERE number = NEW.account) <> NEW.balance_after;
END;

-- RSA blind-signature keys, one per (amount, epoch): UNIQUE makes two racing key
-- generations end with one key. `private_key` is the secret (PKCS#8 DER): it leaves this
-- table only to sign, never in an answer or a log line.
CREATE TABLE denomination_keys (
    key_id BLOB PRIMARY KEY CHECK (length(key_id) = 32),
    amount INTEGER NOT NULL CHECK (amount > 0),
    currency TEXT NOT NULL,
    epoch INTEGER NOT NULL CHECK (epoch >= 0),
    valid_from INTEGER NOT NULL,
    withdraw_until INTEGER NOT NULL CHECK (withdraw_until >= valid_from),
    redeem_until INTEGER NOT NULL CHECK (redeem_until >= withdraw_until),
    public_key BLOB NOT NULL,
    private_key BLOB NOT NULL,
    UNIQUE (currency, amount, epoch)
) STRICT;

-- One blind-signed token each. Natural key: SHA-256 of the blinded message. The blind
-- signature is kept so that a retry gets the first answer.
CREATE TABLE withdrawals (
    blinded_message_hash BLOB PRIMARY KEY CHECK (length(blinded_message_hash) = 32),
    account TEXT NOT NULL REFERENCES accounts (number),
    key_id BLOB NOT NULL REFERENCES denomination_keys (key_id),
    amount INTEGER NOT NULL CHECK (amount > 0),
    blinded_message BLOB NOT NULL,
    blind_signature BLOB NOT NULL,
    created_at INTEGER NOT NULL
) STRICT;

CREATE TRIGGER withdrawals_debit AFTER INSERT ON withdrawals
BEGIN
    SELECT RAISE(ABORT, 'the withdrawal amount is not its key''s amount')
    WHERE NEW.amount IS NOT (SELECT amount FROM denomination_keys WHERE key_id = NEW.key_id);
    -- Fails on CHECK (balance >= 0) when the account has too little: the INSERT aborts.
    UPDATE accounts SET balance = balance - NEW.amount WHERE number = NEW.account;
END;

CREATE TRIGGER deposits_append_only_update BEFORE UPDATE ON deposits
BEGIN
    SELECT RAISE(ABORT, 'deposits are append-only');
END;
CREATE TRIGGER deposits_append_only_delete BEFORE DELETE ON deposits
BEGIN
    SELECT RAISE(ABORT, 'deposits are append-only');
END;
CREATE TRIGGER withdrawals_append_only_update BEFORE UPDATE ON withdrawals
BEGIN
    SELECT RAISE(ABORT, 'withdrawals are append-only');
END;
CREATE TRIGGER withdrawals_append_only_delete BEFORE DELETE ON withdrawals
BEGIN
    SELECT RAISE(ABORT, 'withdrawals are append-only');
END;
