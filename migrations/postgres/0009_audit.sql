-- The audit log (docs/audit.md): one hash chain, append-only. `audit_head` holds the ends
-- of the chain: every replica's writer locks it (SELECT ... FOR UPDATE) for its batch, so
-- the chain stays one sequence however many replicas share the database. The triggers
-- refuse UPDATE and DELETE of records unless the retention path has opened `audit_gate`
-- inside its own transaction.
CREATE TABLE audit_log (
    seq BIGINT PRIMARY KEY,
    time_ms BIGINT NOT NULL,
    tenant_id TEXT,
    principal_id TEXT,
    principal_name TEXT,
    client_id TEXT,
    credential TEXT,
    channel TEXT NOT NULL,
    action TEXT NOT NULL,
    target TEXT,
    decision TEXT NOT NULL,
    reason TEXT,
    policies TEXT NOT NULL,
    ip TEXT,
    request_id TEXT,
    prev_hash TEXT NOT NULL,
    hash TEXT NOT NULL
);
CREATE INDEX audit_log_tenant ON audit_log (tenant_id, seq);

-- Signed checkpoints: "the chain reached record seq with this hash" (a JWS).
CREATE TABLE audit_checkpoints (
    seq BIGINT PRIMARY KEY,
    hash TEXT NOT NULL,
    time_ms BIGINT NOT NULL,
    kid TEXT NOT NULL,
    signature TEXT NOT NULL
);

CREATE TABLE audit_head (
    id INTEGER PRIMARY KEY CHECK (id = 1),
    seq BIGINT NOT NULL,
    hash TEXT NOT NULL,
    -- Where the stored chain starts: the last record retention removed (0 and the
    -- genesis hash until the first prune); a signed checkpoint vouches for it.
    base_seq BIGINT NOT NULL,
    base_hash TEXT NOT NULL
);
INSERT INTO audit_head (id, seq, hash, base_seq, base_hash) VALUES (1, 0,
    '0000000000000000000000000000000000000000000000000000000000000000', 0,
    '0000000000000000000000000000000000000000000000000000000000000000');

CREATE TABLE audit_gate (
    id INTEGER PRIMARY KEY CHECK (id = 1),
    open BOOLEAN NOT NULL
);
INSERT INTO audit_gate (id, open) VALUES (1, FALSE);

CREATE FUNCTION audit_log_append_only() RETURNS trigger AS $$
BEGIN
    IF TG_OP = 'DELETE' AND (SELECT open FROM audit_gate WHERE id = 1) THEN
        RETURN OLD;
    END IF;
    RAISE EXCEPTION '% is append-only; records leave only through audit prune', TG_TABLE_NAME;
END;
$$ LANGUAGE plpgsql;

CREATE TRIGGER audit_log_append_only BEFORE UPDATE OR DELETE ON audit_log
FOR EACH ROW EXECUTE FUNCTION audit_log_append_only();
CREATE TRIGGER audit_log_no_truncate BEFORE TRUNCATE ON audit_log
FOR EACH STATEMENT EXECUTE FUNCTION audit_log_append_only();
CREATE TRIGGER audit_checkpoints_append_only BEFORE UPDATE OR DELETE ON audit_checkpoints
FOR EACH ROW EXECUTE FUNCTION audit_log_append_only();
