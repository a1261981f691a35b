-- ctxguard schema v1 (PostgreSQL). Times are milliseconds since the Unix epoch.
CREATE TABLE tenants (
    id            TEXT PRIMARY KEY,
    name          TEXT NOT NULL UNIQUE,
    created_at_ms BIGINT NOT NULL
);

CREATE TABLE principals (
    id             TEXT PRIMARY KEY,
    tenant_id      TEXT NOT NULL REFERENCES tenants (id),
    kind           TEXT NOT NULL,
    name           TEXT NOT NULL,
    roles          TEXT NOT NULL,
    disabled       BOOLEAN NOT NULL DEFAULT FALSE,
    platform_admin BOOLEAN NOT NULL DEFAULT FALSE,
    password_hash  TEXT,
    created_at_ms  BIGINT NOT NULL,
    UNIQUE (tenant_id, name)
);

CREATE TABLE api_keys (
    id            TEXT PRIMARY KEY,
    key_hash      TEXT NOT NULL UNIQUE,
    principal_id  TEXT NOT NULL REFERENCES principals (id),
    tenant_id     TEXT NOT NULL REFERENCES tenants (id),
    scopes        TEXT,
    expires_at_ms BIGINT,
    revoked_at_ms BIGINT,
    created_at_ms BIGINT NOT NULL
);
CREATE INDEX api_keys_principal ON api_keys (principal_id);

-- The head of every context ever created in a tenant. A deleted context keeps its row
-- (deleted_at_ms set) so that its id is never reused.
CREATE TABLE contexts (
    seq           BIGSERIAL PRIMARY KEY,
    tenant_id     TEXT NOT NULL REFERENCES tenants (id),
    context_id    TEXT NOT NULL,
    owner_id      TEXT NOT NULL,
    version       BIGINT NOT NULL,
    expires_at_ms BIGINT,
    deleted_at_ms BIGINT,
    created_at_ms BIGINT NOT NULL,
    updated_at_ms BIGINT NOT NULL,
    UNIQUE (tenant_id, context_id)
);
CREATE INDEX contexts_live ON contexts (tenant_id, seq) WHERE deleted_at_ms IS NULL;
CREATE INDEX contexts_expiry ON contexts (expires_at_ms) WHERE deleted_at_ms IS NULL AND expires_at_ms IS NOT NULL;

-- Immutable versions; body is the served JSON of that version.
CREATE TABLE context_versions (
    tenant_id     TEXT NOT NULL,
    context_id    TEXT NOT NULL,
    version       BIGINT NOT NULL,
    body          TEXT NOT NULL,
    created_at_ms BIGINT NOT NULL,
    PRIMARY KEY (tenant_id, context_id, version)
);
