-- The center's schema, version 3 (issue 12): only genuine cards hold units, blocked cards
-- are refused, and cards as a whole never give back more than was loaded onto them
-- (PROTOCOLS.md, invariants 4 and 5).
--
--   * The issuer key lives in a file made offline (`valuecard-backend keys init`); the
--     database keeps only its PUBLIC key (`role_key`), and refuses to be started with
--     another.
--   * A card is registered only with a maker's attestation over its key: `cards` records
--     the maker and the attestation key, UNIQUE, so that an attestation key (one chip)
--     vouches for one card key in its life. A card registered before this version has no
--     attestation: the center treats it as not registered (its requests get unknown_card),
--     because nothing shows that its key lives in a genuine card. Its unit account and its
--     rows stay, for the audit and for the staff. Cards are append-only.
--   * `blocks`: the cards and card makers staff blocked, append-only. Block n is version n
--     of the issuer's signed block list. Every load keeps the version its authorisation
--     covers, so that a retry gets the same authorisation and the same list.
--   * `floats`: per asset, loads - refunds - unloads, what the cards hold in all, kept by
--     the same triggers that move the unit accounts, with CHECK (amount >= 0): an unload
--     that would take it below zero (value from outside) fails inside its own INSERT.
--     `float_alarms` keeps the unloads the code refused for that reason, with the card's
--     signed receipt as the proof.
--   * `unit_accounts` gains running totals (redeemed, loaded, refunded, unloaded). The
--     triggers add to them with the balance, and a BEFORE UPDATE trigger holds the balance
--     to redeemed - loaded + refunded + unloaded and the totals to growing. Every column is
--     an INTEGER of a STRICT table: a sum past 2^63 - 1 becomes a REAL, which SQLite refuses
--     to store, so no total can pass i64 even if the code's own check were wrong.
--
-- A card certificate (apdu-spec `cert`) in its canonical encoding, 194 bytes (substr()
-- positions, from 1):
--   7F21 81 BE | 80 20 card_id (7..38) | 81 21 public key (41..73) | 82 08 (76..83)
--   | 83 08 (86..93) | 84 20 maker (96..127) | 5F37 40 signature (131..194)

UPDATE issuer_key SET private_key = zeroblob(32);
DROP TABLE issuer_key;

CREATE TABLE role_key (
    id INTEGER PRIMARY KEY CHECK (id = 1),
    public_key BLOB NOT NULL CHECK (length(public_key) = 33)
) STRICT;

CREATE TRIGGER role_key_no_update BEFORE UPDATE ON role_key
BEGIN
    SELECT RAISE(ABORT, 'a database stays with the key it was first started with');
END;
CREATE TRIGGER role_key_no_delete BEFORE DELETE ON role_key
BEGIN
    SELECT RAISE(ABORT, 'a database stays with the key it was first started with');
END;

-- ---- cards: provenance ----------------------------------------------------------------

-- NULL only in the rows of cards registered before this version.
ALTER TABLE cards ADD COLUMN maker BLOB CHECK (maker IS NULL OR length(maker) = 32);
ALTER TABLE cards ADD COLUMN attestation_key BLOB
    CHECK (attestation_key IS NULL OR length(attestation_key) = 33);
-- One card key per attestation key. (NULLs are distinct: the old rows do not collide.)
CREATE UNIQUE INDEX cards_one_key_per_attestation ON cards (attestation_key);

CREATE TRIGGER cards_attested BEFORE INSERT ON cards
BEGIN
    SELECT RAISE(ABORT, 'a card is registered with its maker and its attestation key')
    WHERE NEW.maker IS NULL OR NEW.attestation_key IS NULL;
    -- The certificate is the issuer's over this very card and maker.
    SELECT RAISE(ABORT, 'the certificate is not this card''s')
    WHERE NOT coalesce(length(NEW.certificate) = 194
        AND substr(NEW.certificate, 1, 6) = x'7F2181BE8020'
        AND substr(NEW.certificate, 7, 32) = NEW.card_id
        AND substr(NEW.certificate, 39, 2) = x'8121'
        AND substr(NEW.certificate, 41, 33) = NEW.public_key
        AND substr(NEW.certificate, 94, 2) = x'8420'
        AND substr(NEW.certificate, 96, 32) = NEW.maker, 0);
END;

CREATE TRIGGER cards_no_update BEFORE UPDATE ON cards
BEGIN
    SELECT RAISE(ABORT, 'a registration is never changed');
END;
CREATE TRIGGER cards_no_delete BEFORE DELETE ON cards
BEGIN
    SELECT RAISE(ABORT, 'a registration is never deleted');
END;

-- ---- blocks ------------------------------------------------------------------------------

-- Block n (1, 2, ...) makes version n of the signed list. Natural key: (kind, id).
CREATE TABLE blocks (
    version INTEGER PRIMARY KEY CHECK (version BETWEEN 1 AND 4294967295),
    kind TEXT NOT NULL CHECK (kind IN ('card', 'maker')),
    id BLOB NOT NULL CHECK (length(id) = 32),
    -- For the staff's records; never in a list or an answer to a card.
    reason TEXT NOT NULL CHECK (length(reason) BETWEEN 1 AND 200),
    day INTEGER NOT NULL,
    UNIQUE (kind, id)
) STRICT;

CREATE TRIGGER blocks_in_order BEFORE INSERT ON blocks
BEGIN
    SELECT RAISE(ABORT, 'block n makes version n of the block list')
    WHERE NEW.version IS NOT (SELECT COUNT(*) + 1 FROM blocks);
END;
CREATE TRIGGER blocks_no_update BEFORE UPDATE ON blocks
BEGIN
    SELECT RAISE(ABORT, 'a block is for good');
END;
CREATE TRIGGER blocks_no_delete BEFORE DELETE ON blocks
BEGIN
    SELECT RAISE(ABORT, 'a block is for good');
END;

-- ---- loads: the block list their authorisation covers -------------------------------------

-- NULL only in loads authorised before this version (valuecard/load-auth/v1).
ALTER TABLE loads ADD COLUMN block_list_version INTEGER
    CHECK (block_list_version BETWEEN 0 AND 4294967295);

CREATE TRIGGER loads_block_list BEFORE INSERT ON loads
BEGIN
    SELECT RAISE(ABORT, 'a load is authorised over a block list the center has made')
    WHERE NEW.block_list_version IS NULL
       OR NEW.block_list_version > (SELECT COUNT(*) FROM blocks);
END;

-- ---- unit accounts: running totals --------------------------------------------------------

ALTER TABLE unit_accounts ADD COLUMN redeemed INTEGER NOT NULL DEFAULT 0 CHECK (redeemed >= 0);
ALTER TABLE unit_accounts ADD COLUMN loaded INTEGER NOT NULL DEFAULT 0 CHECK (loaded >= 0);
ALTER TABLE unit_accounts ADD COLUMN refunded INTEGER NOT NULL DEFAULT 0 CHECK (refunded >= 0);
ALTER TABLE unit_accounts ADD COLUMN unloaded INTEGER NOT NULL DEFAULT 0 CHECK (unloaded >= 0);

UPDATE unit_accounts SET
    redeemed = (SELECT coalesce(SUM(r.amount), 0) FROM redemptions r
                WHERE r.card_id = unit_accounts.card_id AND r.asset = unit_accounts.asset),
    loaded = (SELECT coalesce(SUM(l.amount), 0) FROM loads l
              WHERE l.card_id = unit_accounts.card_id AND l.asset = unit_accounts.asset
                AND l.kind = 'asset'),
    refunded = (SELECT coalesce(SUM(l.amount), 0) FROM load_cancellations c
                JOIN loads l ON l.card_id = c.card_id AND l.counter = c.counter
                WHERE c.card_id = unit_accounts.card_id AND l.asset = unit_accounts.asset
                  AND c.outcome = 'refunded' AND l.kind = 'asset'),
    unloaded = (SELECT coalesce(SUM(u.amount), 0) FROM unloads u
                WHERE u.card_id = unit_accounts.card_id AND u.asset = unit_accounts.asset);

DROP TRIGGER unit_accounts_open_empty;
CREATE TRIGGER unit_accounts_open_empty BEFORE INSERT ON unit_accounts
WHEN NEW.balance <> 0 OR NEW.redeemed <> 0 OR NEW.loaded <> 0 OR NEW.refunded <> 0
  OR NEW.unloaded <> 0
BEGIN
    SELECT RAISE(ABORT, 'a unit account opens with a zero balance');
END;

CREATE TRIGGER unit_accounts_move BEFORE UPDATE ON unit_accounts
BEGIN
    SELECT RAISE(ABORT, 'a unit account''s card and asset never change')
    WHERE NEW.card_id IS NOT OLD.card_id OR NEW.asset IS NOT OLD.asset;
    SELECT RAISE(ABORT, 'a unit account''s totals only grow')
    WHERE NEW.redeemed < OLD.redeemed OR NEW.loaded < OLD.loaded
       OR NEW.refunded < OLD.refunded OR NEW.unloaded < OLD.unloaded;
    SELECT RAISE(ABORT, 'a unit account''s balance is redeemed - loaded + refunded + unloaded')
    WHERE NEW.balance IS NOT NEW.redeemed - NEW.loaded + NEW.refunded + NEW.unloaded;
END;

CREATE TRIGGER unit_accounts_no_delete BEFORE DELETE ON unit_accounts
BEGIN
    SELECT RAISE(ABORT, 'unit accounts are never deleted');
END;

-- ---- the float ----------------------------------------------------------------------------

-- What the cards hold in all, per asset: loads - refunds - unloads. A database in which
-- cards had already given back more than was loaded (the hole this version closes) starts
-- at 0, and the audit reports the difference.
CREATE TABLE floats (
    asset TEXT PRIMARY KEY CHECK (length(CAST(asset AS BLOB)) BETWEEN 1 AND 8),
    amount INTEGER NOT NULL CHECK (amount >= 0)
) STRICT;

INSERT INTO floats (asset, amount)
SELECT asset, CASE WHEN SUM(delta) > 0 THEN SUM(delta) ELSE 0 END FROM (
    SELECT asset, amount AS delta FROM loads WHERE kind = 'asset'
    UNION ALL
    SELECT l.asset, -l.amount FROM load_cancellations c
    JOIN loads l ON l.card_id = c.card_id AND l.counter = c.counter
    WHERE c.outcome = 'refunded' AND l.kind = 'asset'
    UNION ALL
    SELECT asset, -amount FROM unloads
) GROUP BY asset;

CREATE TRIGGER floats_no_delete BEFORE DELETE ON floats
BEGIN
    SELECT RAISE(ABORT, 'a float is never deleted');
END;

-- An unload the center refused because it would have made the float negative: one row
-- per (card, counter), so that a retry adds nothing; the code keeps at most a few per card
-- (`center::MAX_ALARMS_PER_CARD`). The receipt and the card's signature prove what the card
-- asked for.
CREATE TABLE float_alarms (
    card_id BLOB NOT NULL REFERENCES cards (card_id),
    counter INTEGER NOT NULL CHECK (counter BETWEEN 0 AND 4294967295),
    asset TEXT NOT NULL CHECK (length(CAST(asset AS BLOB)) BETWEEN 1 AND 8),
    receipt BLOB NOT NULL CHECK (length(receipt) BETWEEN 1 AND 64),
    signature BLOB NOT NULL CHECK (length(signature) = 64),
    -- The float of the asset when the unload was refused.
    float INTEGER NOT NULL CHECK (float >= 0),
    day INTEGER NOT NULL,
    PRIMARY KEY (card_id, counter)
) STRICT;

CREATE TRIGGER float_alarms_no_update BEFORE UPDATE ON float_alarms
BEGIN
    SELECT RAISE(ABORT, 'an alarm is never changed');
END;
CREATE TRIGGER float_alarms_no_delete BEFORE DELETE ON float_alarms
BEGIN
    SELECT RAISE(ABORT, 'an alarm is never deleted');
END;

-- ---- the triggers that move units, again, with the totals and the float ----------------

DROP TRIGGER redemptions_credit;
CREATE TRIGGER redemptions_credit AFTER INSERT ON redemptions
BEGIN
    SELECT RAISE(ABORT, 'the redemption amount is not its key''s amount')
    WHERE NEW.amount IS NOT (SELECT amount FROM denomination_keys WHERE key_id = NEW.key_id);
    UPDATE unit_accounts SET balance = balance + NEW.amount, redeemed = redeemed + NEW.amount
    WHERE card_id = NEW.card_id AND asset = NEW.asset;
END;

DROP TRIGGER loads_debit;
CREATE TRIGGER loads_debit AFTER INSERT ON loads
WHEN NEW.kind = 'asset'
BEGIN
    SELECT RAISE(ABORT, 'the card has no unit account for this asset')
    WHERE NOT EXISTS (SELECT 1 FROM unit_accounts
                      WHERE card_id = NEW.card_id AND asset = NEW.asset);
    -- CHECK (balance >= 0) refuses an overdraw.
    UPDATE unit_accounts SET balance = balance - NEW.amount, loaded = loaded + NEW.amount
    WHERE card_id = NEW.card_id AND asset = NEW.asset;
    INSERT INTO floats (asset, amount)
    SELECT NEW.asset, 0 WHERE NOT EXISTS (SELECT 1 FROM floats WHERE asset = NEW.asset);
    UPDATE floats SET amount = amount + NEW.amount WHERE asset = NEW.asset;
END;

DROP TRIGGER load_cancellations_settle;
CREATE TRIGGER load_cancellations_settle AFTER INSERT ON load_cancellations
BEGIN
    SELECT RAISE(ABORT, 'a refund needs the load of the same request')
    WHERE NEW.outcome = 'refunded'
      AND NOT EXISTS (SELECT 1 FROM loads
                      WHERE card_id = NEW.card_id AND counter = NEW.counter
                        AND request = NEW.request);
    SELECT RAISE(ABORT, 'a loaded request is refunded, not voided')
    WHERE NEW.outcome = 'voided'
      AND EXISTS (SELECT 1 FROM loads WHERE card_id = NEW.card_id AND counter = NEW.counter);
    UPDATE unit_accounts
    SET balance = balance + (SELECT amount FROM loads
                             WHERE card_id = NEW.card_id AND counter = NEW.counter),
        refunded = refunded + (SELECT amount FROM loads
                               WHERE card_id = NEW.card_id AND counter = NEW.counter)
    WHERE NEW.outcome = 'refunded'
      AND card_id = NEW.card_id
      AND asset = (SELECT asset FROM loads
                   WHERE card_id = NEW.card_id AND counter = NEW.counter AND kind = 'asset');
    -- CHECK (amount >= 0) on floats: a refund gives back only what its load put out.
    UPDATE floats
    SET amount = amount - (SELECT amount FROM loads
                           WHERE card_id = NEW.card_id AND counter = NEW.counter)
    WHERE NEW.outcome = 'refunded'
      AND asset = (SELECT asset FROM loads
                   WHERE card_id = NEW.card_id AND counter = NEW.counter AND kind = 'asset');
    UPDATE tickets SET delivery_counter = NULL
    WHERE NEW.outcome = 'refunded'
      AND card_id = NEW.card_id AND delivery_counter = NEW.counter
      AND (asset, serial) = (SELECT asset, serial FROM loads
                             WHERE card_id = NEW.card_id AND counter = NEW.counter
                               AND kind = 'ticket');
END;

DROP TRIGGER unloads_credit;
CREATE TRIGGER unloads_credit AFTER INSERT ON unloads
BEGIN
    -- No float for the asset: nothing of it was ever loaded onto a card.
    SELECT RAISE(ABORT, 'an unload gives back more than cards were loaded with')
    WHERE NOT EXISTS (SELECT 1 FROM floats WHERE asset = NEW.asset);
    -- CHECK (amount >= 0) on floats refuses an unload past what the cards hold.
    UPDATE floats SET amount = amount - NEW.amount WHERE asset = NEW.asset;
    UPDATE unit_accounts SET balance = balance + NEW.amount, unloaded = unloaded + NEW.amount
    WHERE card_id = NEW.card_id AND asset = NEW.asset;
END;
