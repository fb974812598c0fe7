-- The arbiter's schema, version 1: only its key so far. The verdict records come with the
-- arbiter service.

-- The arbiter key (ECDSA P-256) that signs verdicts. One row.
CREATE TABLE arbiter_key (
    id INTEGER PRIMARY KEY CHECK (id = 1),
    private_key BLOB NOT NULL CHECK (length(private_key) = 32)
) STRICT;
