-- Per-message storage (PostgreSQL). A message is a row written once; a version is a small
-- row naming the history it shows, how much of it, and the version whose metadata
-- snapshot it carries. An append writes its messages and one version row, whatever
-- the history's length. Rows of context_versions (one whole body per version) are
-- converted by the server at start-up (`convert_legacy`), one context per transaction.

-- body: the served JSON of the message (role, message, provenance). history: the
-- version that started the history (1, or the PUT that replaced it). author_id: the
-- principal that wrote it (NULL for messages stored before provenance existed).
CREATE TABLE context_messages (
    tenant_id  TEXT NOT NULL,
    context_id TEXT NOT NULL,
    history    BIGINT NOT NULL,
    position   BIGINT NOT NULL,
    author_id  TEXT,
    body       TEXT NOT NULL,
    PRIMARY KEY (tenant_id, context_id, history, position)
);
CREATE INDEX context_messages_author ON context_messages (tenant_id, author_id, context_id) WHERE author_id IS NOT NULL;

-- metadata: the serialized metadata object when this version changed it (PATCH, PUT,
-- create), else NULL and meta_version names the version that holds it.
CREATE TABLE context_revisions (
    tenant_id     TEXT NOT NULL,
    context_id    TEXT NOT NULL,
    version       BIGINT NOT NULL,
    history       BIGINT NOT NULL,
    history_len   BIGINT NOT NULL,
    meta_version  BIGINT NOT NULL,
    metadata      TEXT,
    expires_at_ms BIGINT,
    created_at_ms BIGINT NOT NULL,
    PRIMARY KEY (tenant_id, context_id, version)
);

-- The head row serves the hot read without a join: the latest metadata as serialized,
-- the version holding it, and the latest history, its length and size. NULL in rows not yet
-- converted (and in tombstones, which are never read).
ALTER TABLE contexts ADD COLUMN metadata TEXT;
ALTER TABLE contexts ADD COLUMN meta_version BIGINT;
ALTER TABLE contexts ADD COLUMN history BIGINT;
ALTER TABLE contexts ADD COLUMN history_len BIGINT;
-- The serialized size of those messages (the size limit counts it without reading them).
ALTER TABLE contexts ADD COLUMN history_bytes BIGINT;
