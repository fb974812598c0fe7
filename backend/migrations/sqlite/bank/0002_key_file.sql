-- The bank's schema, version 2: the bank's long-term key lives in a file made offline with
-- the scheme's other keys (`valuecard-backend keys init`), not in the ledger's database
-- (PROTOCOLS.md, "Keys"; STYLE.md, "Keys apart from ledgers").
--
-- The private key that version 1 made and kept here is discarded: the scheme file names the
-- bank's new key, and the center takes key lists signed by that one only. Its bytes are
-- overwritten before the table goes, so that they do not linger in a free page.
UPDATE bank_key SET private_key = zeroblob(32);
DROP TABLE bank_key;

-- The PUBLIC key the database belongs to, recorded on the first start (`keys::bind`). A
-- later start with another key refuses to start: the key list this bank signed, and every
-- key list a center imported, name it. One row, never changed.
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
