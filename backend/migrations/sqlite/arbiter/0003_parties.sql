-- The arbiter's schema, version 3 (issue 12): only a session's own parties settle it, a
-- verdict is keyed by the session (a, s2), blocked cards are refused.
--
--   * The arbiter key lives in a file made offline (`valuecard-backend keys init`); the
--     database keeps only its PUBLIC key (`role_key`), and refuses to be started with
--     another.
--   * `verdicts` is keyed by (a, s2), and by nothing narrower: a request over a made-up
--     agreement with a repeated s2 is another session, and can neither take the verdict of
--     the real one nor keep it from getting one. (A genuine responder signs one agreement
--     per s2; two under one s2 mean its key is out of its chip, which the auditor reports.
--     Refusing the second would be worse: a responder holding its own key could record a
--     made-up agreement first and so keep its honest counterparty's real session from ever
--     being settled.) The rows of version 2 are copied (their a is of the old formula,
--     which the cards no longer use).
--   * Every new row keeps the value commitment c and both certificates, so that anyone can
--     recompute a = SHA-256(c || id_A || id_B) and see that the signers are the session's
--     parties (the audit does).
--   * `block_list`: the newest issuer-signed block list the arbiter has been given, and
--     `blocked`: every entry of every list it has been given. A list carries only the newest
--     64 blocks (the room a card keeps), and blocks are for good, so the arbiter keeps all
--     it has seen: an old block does not fall off when newer ones push it out of the list.
--
-- A card certificate in its canonical encoding is 194 bytes (apdu-spec `cert`):
--   7F21 81 BE | 80 20 card_id (bytes 7..38) | ... ; version 2's rows hold the older
--   160-byte form (7F21 81 9C | 80 20 card_id ...), without the maker.

UPDATE arbiter_key SET private_key = zeroblob(32);
DROP TABLE arbiter_key;

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

-- The issuer's block list (apdu-spec `blocklist`, F1), as signed. One row; only a newer
-- version replaces it.
CREATE TABLE block_list (
    id INTEGER PRIMARY KEY CHECK (id = 1),
    version INTEGER NOT NULL CHECK (version BETWEEN 0 AND 4294967295),
    list BLOB NOT NULL CHECK (length(list) BETWEEN 1 AND 4096)
) STRICT;

CREATE TRIGGER block_list_newer BEFORE UPDATE ON block_list
BEGIN
    SELECT RAISE(ABORT, 'the arbiter keeps the newest block list')
    WHERE NEW.version <= OLD.version OR NEW.id IS NOT OLD.id;
END;
CREATE TRIGGER block_list_no_delete BEFORE DELETE ON block_list
BEGIN
    SELECT RAISE(ABORT, 'the block list is never deleted');
END;

CREATE TABLE blocked (
    kind TEXT NOT NULL CHECK (kind IN ('card', 'maker')),
    id BLOB NOT NULL CHECK (length(id) = 32),
    PRIMARY KEY (kind, id)
) STRICT;

CREATE TRIGGER blocked_for_good_update BEFORE UPDATE ON blocked
BEGIN
    SELECT RAISE(ABORT, 'a block is for good');
END;
CREATE TRIGGER blocked_for_good_delete BEFORE DELETE ON blocked
BEGIN
    SELECT RAISE(ABORT, 'a block is for good');
END;

ALTER TABLE verdicts RENAME TO verdicts_v2;
-- DROP TABLE runs no DELETE trigger; the old table's triggers go with it.
CREATE TABLE verdicts (
    a BLOB NOT NULL CHECK (length(a) = 32),
    s2 BLOB NOT NULL CHECK (length(s2) = 32),
    outcome TEXT NOT NULL CHECK (outcome IN ('complete', 'cancel')),
    -- The arbiter's signature (valuecard/verdict/v1) over s2 || a || outcome byte.
    signature BLOB NOT NULL CHECK (length(signature) = 64),
    -- c = SHA-256(s1 || V1 || V2), with which the request named a: NULL only in rows from
    -- version 2.
    commitment BLOB CHECK (commitment IS NULL OR length(commitment) = 32),
    responder_id BLOB NOT NULL CHECK (length(responder_id) = 32),
    responder_certificate BLOB NOT NULL,
    -- NULL only in a CANCEL from version 2, whose request did not carry A's certificate.
    initiator_id BLOB,
    initiator_certificate BLOB,
    -- Sa (valuecard/agree/v1, by B) and Sr (valuecard/resolve/v1, by A): COMPLETE only.
    agreement_signature BLOB,
    resolve_signature BLOB,
    -- Sab (valuecard/cancel/v1, by B): CANCEL only.
    cancel_signature BLOB,
    day INTEGER NOT NULL CHECK (day >= 0),
    PRIMARY KEY (a, s2),
    CHECK (coalesce(
        (length(responder_certificate) = 194
            AND substr(responder_certificate, 1, 6) = x'7F2181BE8020'
            OR length(responder_certificate) = 160
            AND substr(responder_certificate, 1, 6) = x'7F21819C8020')
        AND substr(responder_certificate, 7, 32) = responder_id, 0)),
    -- A new request names both parties.
    CHECK (commitment IS NULL OR (initiator_id IS NOT NULL AND initiator_certificate IS NOT NULL)),
    CHECK (coalesce(initiator_id IS NULL AND initiator_certificate IS NULL
        OR length(initiator_id) = 32
            AND initiator_id <> responder_id
            AND (length(initiator_certificate) = 194
                AND substr(initiator_certificate, 1, 6) = x'7F2181BE8020'
                OR length(initiator_certificate) = 160
                AND substr(initiator_certificate, 1, 6) = x'7F21819C8020')
            AND substr(initiator_certificate, 7, 32) = initiator_id, 0)),
    -- A CHECK passes on NULL: coalesce() makes a missing part fail instead.
    CHECK (coalesce(CASE outcome
        WHEN 'complete' THEN initiator_id IS NOT NULL
            AND length(agreement_signature) = 64
            AND length(resolve_signature) = 64
            AND cancel_signature IS NULL
        ELSE agreement_signature IS NULL
            AND resolve_signature IS NULL
            AND length(cancel_signature) = 64
    END, 0))
) STRICT;

INSERT INTO verdicts
    (a, s2, outcome, signature, commitment, responder_id, responder_certificate,
     initiator_id, initiator_certificate, agreement_signature, resolve_signature,
     cancel_signature, day)
SELECT a, s2, outcome, signature, NULL, responder_id, responder_certificate,
       initiator_id, initiator_certificate, agreement_signature, resolve_signature,
       cancel_signature, day
FROM verdicts_v2;

DROP TABLE verdicts_v2;

CREATE INDEX verdicts_by_s2 ON verdicts (s2, responder_id);

CREATE TRIGGER verdicts_first_writer_wins BEFORE INSERT ON verdicts
BEGIN
    SELECT RAISE(ABORT, 'the session has a verdict already')
    WHERE EXISTS (SELECT 1 FROM verdicts WHERE a = NEW.a AND s2 = NEW.s2);
END;

CREATE TRIGGER verdicts_no_update BEFORE UPDATE ON verdicts
BEGIN
    SELECT RAISE(ABORT, 'a verdict is final: it is never changed');
END;

CREATE TRIGGER verdicts_no_delete BEFORE DELETE ON verdicts
BEGIN
    SELECT RAISE(ABORT, 'a verdict is final: it is never deleted');
END;
