-- OAuth 2.1 authorization server state (SQLite). Times are ms since the epoch.

-- Signing keys; the private part is sealed with the key-encryption key (AES-256-GCM).
CREATE TABLE signing_keys (
    kid               TEXT PRIMARY KEY,
    alg               TEXT NOT NULL,
    private_sealed    TEXT NOT NULL,
    public_key        TEXT NOT NULL,
    created_at_ms     INTEGER NOT NULL,
    -- NULL while current; set when superseded: published until then, then retired.
    superseded_at_ms  INTEGER,
    publish_until_ms  INTEGER
);

CREATE TABLE oauth_clients (
    client_id        TEXT PRIMARY KEY,
    tenant_id        TEXT NOT NULL REFERENCES tenants (id),
    name             TEXT NOT NULL,
    secret_hash      TEXT,
    redirect_uris    TEXT NOT NULL,
    grant_types      TEXT NOT NULL,
    scopes           TEXT NOT NULL,
    application_type TEXT NOT NULL,
    principal_id     TEXT REFERENCES principals (id),
    registered_by    TEXT NOT NULL,
    disabled         BOOLEAN NOT NULL DEFAULT FALSE,
    created_at_ms    INTEGER NOT NULL
);

-- Access tokens revoked before their expiry (RFC 7009), kept until they expire.
CREATE TABLE revoked_tokens (
    jti        TEXT PRIMARY KEY,
    expires_ms INTEGER NOT NULL
);

ALTER TABLE principals ADD COLUMN tokens_revoked_at_ms INTEGER;

CREATE TABLE refresh_tokens (
    token_hash     TEXT PRIMARY KEY,
    family_id      TEXT NOT NULL,
    client_id      TEXT NOT NULL,
    principal_id   TEXT NOT NULL,
    tenant_id      TEXT NOT NULL,
    scope          TEXT NOT NULL,
    resource       TEXT NOT NULL,
    expires_ms     INTEGER NOT NULL,
    used_at_ms     INTEGER,
    created_at_ms  INTEGER NOT NULL
);
CREATE INDEX refresh_tokens_family ON refresh_tokens (family_id);

CREATE TABLE refresh_families (
    family_id     TEXT PRIMARY KEY,
    client_id     TEXT NOT NULL,
    principal_id  TEXT NOT NULL,
    revoked_at_ms INTEGER,
    created_at_ms INTEGER NOT NULL
);

CREATE TABLE authorization_codes (
    code_hash       TEXT PRIMARY KEY,
    client_id       TEXT NOT NULL,
    principal_id    TEXT NOT NULL,
    tenant_id       TEXT NOT NULL,
    redirect_uri    TEXT NOT NULL,
    code_challenge  TEXT NOT NULL,
    scope           TEXT NOT NULL,
    resource        TEXT NOT NULL,
    expires_ms      INTEGER NOT NULL,
    used_at_ms      INTEGER,
    -- What the code was exchanged for, revoked if the code is replayed.
    issued_jti      TEXT,
    issued_family   TEXT,
    created_at_ms   INTEGER NOT NULL
);

-- Browser sessions of the login/consent pages, shared by every replica.
CREATE TABLE browser_sessions (
    session_hash  TEXT PRIMARY KEY,
    principal_id  TEXT NOT NULL,
    csrf_token    TEXT NOT NULL,
    expires_ms    INTEGER NOT NULL,
    created_at_ms INTEGER NOT NULL
);
