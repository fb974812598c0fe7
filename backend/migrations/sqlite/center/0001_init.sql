-- The center's schema, version 1 (PROTOCOLS.md, "Funding: bank to center", step 6).
--
-- Why a token is credited at most once even with a bug in the code:
--   * A unit account's balance changes ONLY through the trigger on INSERT into
--     `redemptions` (later versions add loads and unloads the same way). The program never
--     runs UPDATE on `unit_accounts.balance`, and a unit account opens at zero.
--   * `redemptions` has the token nonce as PRIMARY KEY (and the whole message UNIQUE): a
--     second insert of a token fails on the key, and its trigger never runs.
--   * The redemption's (card_id, asset) is a foreign key to its unit account, so the
--     credit cannot miss; the trigger also checks the amount against the key's.
--   * `CHECK (balance >= 0)` on unit accounts; ledger rows are append-only.
--
-- Privacy (PROTOCOLS.md, invariant 5): nothing here comes from the bank's side of a
-- withdrawal. Registrations and redemptions carry a day number (Unix time / 86400), never a
-- finer time: a redemption time to the second could be matched to the bank's withdrawal
-- record of the same token. Certificates start at the registration day for the same reason.
-- Challenges are deleted once used.

-- The issuer key (ECDSA P-256) that signs card certificates. One row.
CREATE TABLE issuer_key (
    id INTEGER PRIMARY KEY CHECK (id = 1),
    private_key BLOB NOT NULL CHECK (length(private_key) = 32)
) STRICT;

CREATE TABLE challenges (
    challenge BLOB PRIMARY KEY CHECK (length(challenge) = 32),
    purpose TEXT NOT NULL CHECK (purpose IN ('register', 'balance')),
    expires_at INTEGER NOT NULL
) STRICT;

CREATE TABLE cards (
    card_id BLOB PRIMARY KEY CHECK (length(card_id) = 32),
    public_key BLOB NOT NULL UNIQUE CHECK (length(public_key) = 33),
    certificate BLOB NOT NULL,
    registered_day INTEGER NOT NULL
) STRICT;

CREATE TABLE unit_accounts (
    card_id BLOB NOT NULL REFERENCES cards (card_id),
    asset TEXT NOT NULL,
    balance INTEGER NOT NULL CHECK (balance >= 0),
    PRIMARY KEY (card_id, asset)
) STRICT;

CREATE TRIGGER unit_accounts_open_empty BEFORE INSERT ON unit_accounts
WHEN NEW.balance <> 0
BEGIN
    SELECT RAISE(ABORT, 'a unit account opens with a zero balance');
END;

-- The bank's denomination keys, public halves, as imported from its signed key list.
CREATE TABLE denomination_keys (
    key_id BLOB PRIMARY KEY CHECK (length(key_id) = 32),
    amount INTEGER NOT NULL CHECK (amount > 0),
    currency TEXT NOT NULL,
    epoch INTEGER NOT NULL,
    valid_from INTEGER NOT NULL,
    withdraw_until INTEGER NOT NULL,
    redeem_until INTEGER NOT NULL,
    public_key BLOB NOT NULL
) STRICT;

-- Redeemed tokens. Natural key: the token nonce. The message, randomizer and signature are
-- the proof that the bank signed what was credited.
CREATE TABLE redemptions (
    nonce BLOB PRIMARY KEY CHECK (length(nonce) = 32),
    message BLOB NOT NULL UNIQUE,
    randomizer BLOB NOT NULL,
    signature BLOB NOT NULL,
    card_id BLOB NOT NULL REFERENCES cards (card_id),
    key_id BLOB NOT NULL REFERENCES denomination_keys (key_id),
    amount INTEGER NOT NULL CHECK (amount > 0),
    asset TEXT NOT NULL,
    redeemed_day INTEGER NOT NULL,
    FOREIGN KEY (card_id, asset) REFERENCES unit_accounts (card_id, asset)
) STRICT;

CREATE TRIGGER redemptions_credit AFTER INSERT ON redemptions
BEGIN
    SELECT RAISE(ABORT, 'the redemption amount is not its key''s amount')
    WHERE NEW.amount IS NOT (SELECT amount FROM denomination_keys WHERE key_id = NEW.key_id);
    UPDATE unit_accounts SET balance = balance + NEW.amount
    WHERE card_id = NEW.card_id AND asset = NEW.asset;
END;

CREATE TRIGGER redemptions_append_only_update BEFORE UPDATE ON redemptions
BEGIN
    SELECT RAISE(ABORT, 'redemptions are append-only');
END;
CREATE TRIGGER redemptions_append_only_delete BEFORE DELETE ON redemptions
BEGIN
    SELECT RAISE(ABORT, 'redemptions are append-only');
END;
