-- The center's schema, version 2: units between center and card (PROTOCOLS.md, "Units
-- between center and card"): loads, load cancellations, unloads and tickets.
--
-- Why no load is applied twice, and no unit is created or lost, even with a bug in the code
-- or raw SQL that bypasses it:
--   * A unit account's balance still changes ONLY through AFTER INSERT triggers: on
--     `redemptions` (+), `loads` (-), `load_cancellations` with outcome 'refunded' (+ the
--     amount of the load it cancels), and `unloads` (+). `CHECK (balance >= 0)` on
--     `unit_accounts` makes an overdraw fail inside the load's own INSERT.
--   * `loads`, `load_cancellations` and `unloads` have the card's (card_id, counter) as
--     PRIMARY KEY and the signed bytes as UNIQUE: a second insert fails on the key before
--     its trigger can move anything. All three are append-only.
--   * A cancellation decides the fate of its (card_id, counter) once and for all:
--     'refunded' needs the load of the very same request bytes (and credits its amount, or
--     frees its ticket); 'voided' needs that no load exists, and a BEFORE INSERT trigger on
--     `loads` refuses any load of a (card_id, counter) that has a cancellation. So a request
--     is either loaded, or loaded and refunded once, or dead without a load.
--   * Each row's columns are bound to the signed bytes it stores (the CHECKs below read the
--     card id, counter, asset, amount and serial out of the canonical TLV encoding), so that
--     a row cannot debit or credit anything but what the card signed.
--   * A ticket is delivered to at most one live load: the load trigger refuses a ticket that
--     is not issued to the loading card or is delivered already, and sets
--     `tickets.delivery_counter`; only a refund clears it. That column is the only one of
--     `tickets` that can change, and only in step with `loads` and `load_cancellations`.
--
-- The canonical encodings (apdu-spec `units`, every length below 128, so one length byte);
-- offsets are SQLite's substr() positions, counted from 1, with n = the asset code's length:
--   load request  E7 L | C2 20 card_id (5..36) | 86 04 counter (39..42) | value (from 43)
--   unload receipt E8 L | the same fields
--   value, units  E1 L 81 n code (47..46+n) 82 08 amount (49+n..56+n)        total 56+n
--   value, ticket E2 L 81 n code (47..46+n) 84 s serial (49+n..48+n+s)       total 48+n+s
--
-- Privacy: like version 1, every time here is a day number (Unix time / 86400).

CREATE INDEX redemptions_by_card ON redemptions (card_id);

-- Tickets the issuer made for a card. Natural key: (asset, serial). `delivery_counter` is
-- the counter of the live load that handed the ticket to its card, NULL while none has.
CREATE TABLE tickets (
    asset TEXT NOT NULL CHECK (length(CAST(asset AS BLOB)) BETWEEN 1 AND 8),
    serial BLOB NOT NULL CHECK (length(serial) BETWEEN 1 AND 32),
    card_id BLOB NOT NULL REFERENCES cards (card_id),
    signature BLOB NOT NULL CHECK (length(signature) = 64),
    issued_day INTEGER NOT NULL,
    delivery_counter INTEGER CHECK (delivery_counter BETWEEN 0 AND 4294967295),
    PRIMARY KEY (asset, serial)
) STRICT;

CREATE INDEX tickets_by_card ON tickets (card_id);

CREATE TRIGGER tickets_issue BEFORE INSERT ON tickets
BEGIN
    SELECT RAISE(ABORT, 'a ticket is issued undelivered')
    WHERE NEW.delivery_counter IS NOT NULL;
    -- A ticket never shares its code with units the card's account holds.
    SELECT RAISE(ABORT, 'the ticket''s asset code is a unit account''s')
    WHERE EXISTS (SELECT 1 FROM unit_accounts WHERE card_id = NEW.card_id AND asset = NEW.asset);
END;

CREATE TRIGGER tickets_no_delete BEFORE DELETE ON tickets
BEGIN
    SELECT RAISE(ABORT, 'tickets are never deleted');
END;

CREATE TRIGGER tickets_update BEFORE UPDATE ON tickets
BEGIN
    SELECT RAISE(ABORT, 'only the delivery of a ticket changes')
    WHERE NEW.asset IS NOT OLD.asset OR NEW.serial IS NOT OLD.serial
       OR NEW.card_id IS NOT OLD.card_id OR NEW.signature IS NOT OLD.signature
       OR NEW.issued_day IS NOT OLD.issued_day;
    -- Delivered: from undelivered, to a live load of this very ticket by its card.
    SELECT RAISE(ABORT, 'a ticket is delivered only by a live load of it')
    WHERE NEW.delivery_counter IS NOT NULL
      AND NEW.delivery_counter IS NOT OLD.delivery_counter
      AND (OLD.delivery_counter IS NOT NULL
           OR NOT EXISTS (SELECT 1 FROM loads
                          WHERE card_id = NEW.card_id AND counter = NEW.delivery_counter
                            AND kind = 'ticket' AND asset = NEW.asset AND serial = NEW.serial)
           OR EXISTS (SELECT 1 FROM load_cancellations
                      WHERE card_id = NEW.card_id AND counter = NEW.delivery_counter));
    -- Freed: only by the refund of the load that delivered it.
    SELECT RAISE(ABORT, 'a ticket is freed only by the refund of its load')
    WHERE NEW.delivery_counter IS NULL AND OLD.delivery_counter IS NOT NULL
      AND NOT EXISTS (SELECT 1 FROM load_cancellations
                      WHERE card_id = OLD.card_id AND counter = OLD.delivery_counter
                        AND outcome = 'refunded');
END;

-- Load requests the center authorised. Natural key: the card's (card_id, counter).
CREATE TABLE loads (
    card_id BLOB NOT NULL REFERENCES cards (card_id),
    counter INTEGER NOT NULL CHECK (counter BETWEEN 0 AND 4294967295),
    -- The card's E7 request, canonical, exactly as signed.
    request BLOB NOT NULL UNIQUE,
    -- The card's signature over it (valuecard/load-request/v1).
    signature BLOB NOT NULL CHECK (length(signature) = 64),
    kind TEXT NOT NULL CHECK (kind IN ('asset', 'ticket')),
    asset TEXT NOT NULL CHECK (length(CAST(asset AS BLOB)) BETWEEN 1 AND 8),
    amount INTEGER,
    serial BLOB,
    -- The issuer's signature over the request (valuecard/load-auth/v1).
    authorisation BLOB NOT NULL CHECK (length(authorisation) = 64),
    day INTEGER NOT NULL,
    PRIMARY KEY (card_id, counter),
    -- A CHECK passes on NULL: coalesce() makes a NULL amount or serial fail instead.
    CHECK (coalesce(CASE kind
        WHEN 'asset' THEN amount > 0 AND serial IS NULL
        ELSE amount IS NULL AND length(serial) BETWEEN 1 AND 32
    END, 0)),
    CHECK (coalesce(substr(request, 1, 1) = x'E7'
        AND substr(request, 3, 2) = x'C220' AND substr(request, 5, 32) = card_id
        AND substr(request, 37, 2) = x'8604'
        AND hex(substr(request, 39, 4)) = printf('%08X', counter)
        AND substr(request, 45, 1) = x'81'
        AND hex(substr(request, 46, 1)) = printf('%02X', length(CAST(asset AS BLOB)))
        AND substr(request, 47, length(CAST(asset AS BLOB))) = CAST(asset AS BLOB)
        AND CASE kind
            WHEN 'asset' THEN substr(request, 43, 1) = x'E1'
                AND length(request) = 56 + length(CAST(asset AS BLOB))
                AND substr(request, 47 + length(CAST(asset AS BLOB)), 2) = x'8208'
                AND hex(substr(request, 49 + length(CAST(asset AS BLOB)), 8))
                    = printf('%016X', amount)
            ELSE substr(request, 43, 1) = x'E2'
                AND length(request) = 48 + length(CAST(asset AS BLOB)) + length(serial)
                AND substr(request, 47 + length(CAST(asset AS BLOB)), 1) = x'84'
                AND hex(substr(request, 48 + length(CAST(asset AS BLOB)), 1))
                    = printf('%02X', length(serial))
                AND substr(request, 49 + length(CAST(asset AS BLOB))) = serial
        END, 0))
) STRICT;

CREATE TRIGGER loads_not_cancelled BEFORE INSERT ON loads
WHEN EXISTS (SELECT 1 FROM load_cancellations
             WHERE card_id = NEW.card_id AND counter = NEW.counter)
BEGIN
    SELECT RAISE(ABORT, 'the card cancelled this load request');
END;

CREATE TRIGGER loads_debit AFTER INSERT ON loads
WHEN NEW.kind = 'asset'
BEGIN
    SELECT RAISE(ABORT, 'the card has no unit account for this asset')
    WHERE NOT EXISTS (SELECT 1 FROM unit_accounts
                      WHERE card_id = NEW.card_id AND asset = NEW.asset);
    -- CHECK (balance >= 0) refuses an overdraw.
    UPDATE unit_accounts SET balance = balance - NEW.amount
    WHERE card_id = NEW.card_id AND asset = NEW.asset;
END;

CREATE TRIGGER loads_deliver_ticket AFTER INSERT ON loads
WHEN NEW.kind = 'ticket'
BEGIN
    SELECT RAISE(ABORT, 'the ticket is not issued to this card')
    WHERE NOT EXISTS (SELECT 1 FROM tickets
                      WHERE asset = NEW.asset AND serial = NEW.serial AND card_id = NEW.card_id);
    SELECT RAISE(ABORT, 'the ticket is delivered already')
    WHERE EXISTS (SELECT 1 FROM tickets
                  WHERE asset = NEW.asset AND serial = NEW.serial
                    AND delivery_counter IS NOT NULL);
    UPDATE tickets SET delivery_counter = NEW.counter
    WHERE asset = NEW.asset AND serial = NEW.serial;
END;

CREATE TRIGGER loads_append_only_update BEFORE UPDATE ON loads
BEGIN
    SELECT RAISE(ABORT, 'loads are append-only');
END;
CREATE TRIGGER loads_append_only_delete BEFORE DELETE ON loads
BEGIN
    SELECT RAISE(ABORT, 'loads are append-only');
END;

-- Load requests the card cancelled. Natural key: (card_id, counter). 'refunded': the
-- request had been loaded, and its value went back; 'voided': it had not, and never will be.
CREATE TABLE load_cancellations (
    card_id BLOB NOT NULL REFERENCES cards (card_id),
    counter INTEGER NOT NULL CHECK (counter BETWEEN 0 AND 4294967295),
    -- The cancelled E7 request, canonical.
    request BLOB NOT NULL UNIQUE,
    -- The card's signature over it (valuecard/load-cancel/v1).
    signature BLOB NOT NULL CHECK (length(signature) = 64),
    outcome TEXT NOT NULL CHECK (outcome IN ('refunded', 'voided')),
    -- The issuer's signature over it (valuecard/load-cancel-ack/v1).
    acknowledgement BLOB NOT NULL CHECK (length(acknowledgement) = 64),
    day INTEGER NOT NULL,
    PRIMARY KEY (card_id, counter),
    CHECK (substr(request, 1, 1) = x'E7'
        AND substr(request, 3, 2) = x'C220' AND substr(request, 5, 32) = card_id
        AND substr(request, 37, 2) = x'8604'
        AND hex(substr(request, 39, 4)) = printf('%08X', counter))
) STRICT;

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
                             WHERE card_id = NEW.card_id AND counter = NEW.counter)
    WHERE NEW.outcome = 'refunded'
      AND card_id = NEW.card_id
      AND asset = (SELECT asset FROM loads
                   WHERE card_id = NEW.card_id AND counter = NEW.counter AND kind = 'asset');
    UPDATE tickets SET delivery_counter = NULL
    WHERE NEW.outcome = 'refunded'
      AND card_id = NEW.card_id AND delivery_counter = NEW.counter
      AND (asset, serial) = (SELECT asset, serial FROM loads
                             WHERE card_id = NEW.card_id AND counter = NEW.counter
                               AND kind = 'ticket');
END;

CREATE TRIGGER load_cancellations_append_only_update BEFORE UPDATE ON load_cancellations
BEGIN
    SELECT RAISE(ABORT, 'load cancellations are append-only');
END;
CREATE TRIGGER load_cancellations_append_only_delete BEFORE DELETE ON load_cancellations
BEGIN
    SELECT RAISE(ABORT, 'load cancellations are append-only');
END;

-- Unload receipts the center credited. Natural key: the card's (card_id, counter).
CREATE TABLE unloads (
    card_id BLOB NOT NULL REFERENCES cards (card_id),
    counter INTEGER NOT NULL CHECK (counter BETWEEN 0 AND 4294967295),
    -- The card's E8 receipt, canonical, exactly as signed.
    receipt BLOB NOT NULL UNIQUE,
    -- The card's signature over it (valuecard/unload/v1).
    signature BLOB NOT NULL CHECK (length(signature) = 64),
    asset TEXT NOT NULL,
    amount INTEGER NOT NULL CHECK (amount > 0),
    -- The issuer's signature over it (valuecard/unload-ack/v1).
    acknowledgement BLOB NOT NULL CHECK (length(acknowledgement) = 64),
    day INTEGER NOT NULL,
    PRIMARY KEY (card_id, counter),
    FOREIGN KEY (card_id, asset) REFERENCES unit_accounts (card_id, asset),
    CHECK (substr(receipt, 1, 1) = x'E8'
        AND substr(receipt, 3, 2) = x'C220' AND substr(receipt, 5, 32) = card_id
        AND substr(receipt, 37, 2) = x'8604'
        AND hex(substr(receipt, 39, 4)) = printf('%08X', counter)
        AND substr(receipt, 43, 1) = x'E1'
        AND substr(receipt, 45, 1) = x'81'
        AND hex(substr(receipt, 46, 1)) = printf('%02X', length(CAST(asset AS BLOB)))
        AND substr(receipt, 47, length(CAST(asset AS BLOB))) = CAST(asset AS BLOB)
        AND length(receipt) = 56 + length(CAST(asset AS BLOB))
        AND substr(receipt, 47 + length(CAST(asset AS BLOB)), 2) = x'8208'
        AND hex(substr(receipt, 49 + length(CAST(asset AS BLOB)), 8))
            = printf('%016X', amount))
) STRICT;

CREATE TRIGGER unloads_credit AFTER INSERT ON unloads
BEGIN
    UPDATE unit_accounts SET balance = balance + NEW.amount
    WHERE card_id = NEW.card_id AND asset = NEW.asset;
END;

CREATE TRIGGER unloads_append_only_update BEFORE UPDATE ON unloads
BEGIN
    SELECT RAISE(ABORT, 'unloads are append-only');
END;
CREATE TRIGGER unloads_append_only_delete BEFORE DELETE ON unloads
BEGIN
    SELECT RAISE(ABORT, 'unloads are append-only');
END;
