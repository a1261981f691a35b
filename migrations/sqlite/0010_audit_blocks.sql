-- The audit log in blocks (docs/audit.md "Storage"): each row holds up to 256
-- consecutive records as text, one line per record (`hash SP canonical-json`), with an
-- index of what `GET /admin/audit` filters on. Records stored one per row in
-- `audit_log` are moved into blocks at start-up, their hashes kept as stored; the
-- table then stays empty. The same triggers guard blocks as guarded rows.
CREATE TABLE audit_blocks (
    first_seq INTEGER PRIMARY KEY,
    last_seq INTEGER NOT NULL,
    min_time TEXT NOT NULL,
    max_time TEXT NOT NULL,
    tenants TEXT,
    principals TEXT,
    actions TEXT,
    targets TEXT,
    decisions TEXT,
    records TEXT NOT NULL
);

CREATE TRIGGER audit_blocks_no_update BEFORE UPDATE ON audit_blocks
BEGIN
    SELECT RAISE(ABORT, 'audit_blocks is append-only');
END;

CREATE TRIGGER audit_blocks_no_delete BEFORE DELETE ON audit_blocks
WHEN (SELECT open FROM audit_gate WHERE id = 1) = 0
BEGIN
    SELECT RAISE(ABORT, 'audit_blocks is append-only; records leave only through audit prune');
END;
