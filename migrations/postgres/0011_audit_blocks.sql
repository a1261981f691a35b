-- The audit log in blocks (docs/audit.md "Storage"): each row holds up to 256
-- consecutive records as text, one line per record (`hash SP canonical-json`), with an
-- index of what `GET /admin/audit` filters on. Records stored one per row in
-- `audit_log` are moved into blocks at start-up, their hashes kept as stored; the
-- table then stays empty. The same trigger function guards blocks as guarded rows.
CREATE TABLE audit_blocks (
    first_seq BIGINT PRIMARY KEY,
    last_seq BIGINT NOT NULL,
    min_time TEXT NOT NULL,
    max_time TEXT NOT NULL,
    tenants TEXT,
    principals TEXT,
    actions TEXT,
    targets TEXT,
    decisions TEXT,
    records TEXT NOT NULL
);

CREATE TRIGGER audit_blocks_append_only BEFORE UPDATE OR DELETE ON audit_blocks
FOR EACH ROW EXECUTE FUNCTION audit_log_append_only();
CREATE TRIGGER audit_blocks_no_truncate BEFORE TRUNCATE ON audit_blocks
FOR EACH STATEMENT EXECUTE FUNCTION audit_log_append_only();
