-- The arbiter's schema, version 2: verdicts (PROTOCOLS.md, "Fair exchange: card to card").
--
-- Why the arbiter never records both outcomes for one session, even with a bug in the code
-- or raw SQL that bypasses it:
--   * `verdicts` has the session's s2 as PRIMARY KEY: one row per session.
--   * It is append-only: BEFORE UPDATE and BEFORE DELETE triggers abort. A BEFORE INSERT
--     trigger also aborts when the s2 has a row, because `INSERT OR REPLACE` deletes the
--     old row without firing delete triggers (SQLite fires them on REPLACE only with
--     recursive_triggers on, a per-connection setting).
--   * Each row keeps the proof of the request that decided it, and the CHECKs bind the proof
--     to the outcome: COMPLETE needs two different cards, B's agreement Sa and A's resolve
--     request Sr (Sa proves that B escrowed V2); CANCEL needs B's cancel request Sab and
--     nothing of A's. The card ids are read out of the stored certificates.
--
-- A certificate is stored in its canonical encoding (apdu-spec `cert`), 160 bytes:
--   7F21 81 9C | 80 20 card_id (bytes 7..38) | 81 21 key | 82 08 | 83 08 | 5F37 40 signature
--
-- Privacy: like the center, the arbiter keeps days (Unix time / 86400), never seconds: a
-- row names two cards, and a time to the second would say when their holders met.

-- One verdict per exchange session, final.
CREATE TABLE verdicts (
    s2 BLOB PRIMARY KEY CHECK (length(s2) = 32),
    -- The agreement hash of the deciding request: the verdict is signed over s2, a and the
    -- outcome, and a card applies it only to its session with this a.
    a BLOB NOT NULL CHECK (length(a) = 32),
    outcome TEXT NOT NULL CHECK (outcome IN ('complete', 'cancel')),
    -- The arbiter's signature (valuecard/verdict/v1) over s2 || a || outcome byte.
    signature BLOB NOT NULL CHECK (length(signature) = 64),
    -- The responder B: its card id and certificate (both requests carry it).
    responder_id BLOB NOT NULL CHECK (length(responder_id) = 32),
    responder_certificate BLOB NOT NULL,
    -- The initiator A (a resolve request only).
    initiator_id BLOB,
    initiator_certificate BLOB,
    -- Sa (valuecard/agree/v1, by B) and Sr (valuecard/resolve/v1, by A): COMPLETE only.
    agreement_signature BLOB,
    resolve_signature BLOB,
    -- Sab (valuecard/cancel/v1, by B): CANCEL only.
    cancel_signature BLOB,
    day INTEGER NOT NULL CHECK (day >= 0),
    CHECK (coalesce(length(responder_certificate) = 160
        AND substr(responder_certificate, 1, 6) = x'7F21819C8020'
        AND substr(responder_certificate, 7, 32) = responder_id, 0)),
    -- A CHECK passes on NULL: coalesce() makes a missing part fail instead.
    CHECK (coalesce(CASE outcome
        WHEN 'complete' THEN length(initiator_id) = 32
            AND initiator_id <> responder_id
            AND length(initiator_certificate) = 160
            AND substr(initiator_certificate, 1, 6) = x'7F21819C8020'
            AND substr(initiator_certificate, 7, 32) = initiator_id
            AND length(agreement_signature) = 64
            AND length(resolve_signature) = 64
            AND cancel_signature IS NULL
        ELSE initiator_id IS NULL
            AND initiator_certificate IS NULL
            AND agreement_signature IS NULL
            AND resolve_signature IS NULL
            AND length(cancel_signature) = 64
    END, 0))
) STRICT;

CREATE TRIGGER verdicts_first_writer_wins BEFORE INSERT ON verdicts
BEGIN
    SELECT RAISE(ABORT, 'the session has a verdict already')
    WHERE EXISTS (SELECT 1 FROM verdicts WHERE s2 = NEW.s2);
END;

CREATE TRIGGER verdicts_no_update BEFORE UPDATE ON verdicts
BEGIN
    SELECT RAISE(ABORT, 'a verdict is final: it is never changed');
END;

CREATE TRIGGER verdicts_no_delete BEFORE DELETE ON verdicts
BEGIN
    SELECT RAISE(ABORT, 'a verdict is final: it is never deleted');
END;
