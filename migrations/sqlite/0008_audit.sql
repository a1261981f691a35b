-- The audit log (docs/audit.md): one hash chain, append-only. `audit_head` holds the ends
-- of the chain (the writer locks it, so that the chain stays one sequence); the triggers
-- refuse UPDATE and DELETE of records unless the retention path has opened
-- `audit_gate` inside its own transaction.
CREATE TABLE audit_log (
    seq INTEGER PRIMARY KEY,
    time_ms INTEGER NOT NULL,
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
    seq INTEGER PRIMARY KEY,
    hash TEXT NOT NULL,
    time_ms INTEGER NOT NULL,
    kid TEXT NOT NULL,
    signature TEXT NOT NULL
);

CREATE TABLE audit_head (
    id INTEGER PRIMARY KEY CHECK (id = 1),
    seq INTEGER NOT NULL,
    hash TEXT NOT NULL,
    -- Where the stored chain starts: the last record retention removed (0 and the
    -- genesis hash until the first prune); a signed checkpoint vouches for it.
    base_seq INTEGER NOT NULL,
    base_hash TEXT NOT NULL
);
INSERT INTO audit_head (id, seq, hash, base_seq, base_hash) VALUES (1, 0,
    '0000000000000000000000000000000000000000000000000000000000000000', 0,
    '0000000000000000000000000000000000000000000000000000000000000000');

CREATE TABLE audit_gate (
    id INTEGER PRIMARY KEY CHECK (id = 1),
    open INTEGER NOT NULL
);
INSERT INTO audit_gate (id, open) VALUES (1, 0);

CREATE TRIGGER audit_log_no_update BEFORE UPDATE ON audit_log
BEGIN
    SELECT RAISE(ABORT, 'audit_log is append-only');
END;

CREATE TRIGGER audit_log_no_delete BEFORE DELETE ON audit_log
WHEN (SELECT open FROM audit_gate WHERE id = 1) = 0
BEGIN
    SELECT RAISE(ABORT, 'audit_log is append-only; records leave only through audit prune');
END;

CREATE TRIGGER audit_checkpoints_no_update BEFORE UPDATE ON audit_checkpoints
BEGIN
    SELECT RAISE(ABORT, 'audit_checkpoints is append-only');
END;

CREATE TRIGGER audit_checkpoints_no_delete BEFORE DELETE ON audit_checkpoints
WHEN (SELECT open FROM audit_gate WHERE id = 1) = 0
BEGIN
    SELECT RAISE(ABORT, 'audit_checkpoints is append-only; checkpoints leave only through audit prune');
END;
