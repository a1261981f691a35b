-- Encryption at rest of chosen fields (docs/encryption.md). A row whose JSON had
-- values at configured pointers keeps `null` in their place and the values sealed
-- here, under its tenant's data key.
ALTER TABLE contexts ADD COLUMN metadata_sealed TEXT;
ALTER TABLE context_revisions ADD COLUMN metadata_sealed TEXT;
ALTER TABLE context_messages ADD COLUMN sealed TEXT;

-- Each tenant's data keys, wrapped under the KEK. The current key is the newest one
-- not retired; older keys open what they sealed until rotation re-seals it.
CREATE TABLE data_keys (
    tenant_id     TEXT NOT NULL,
    key_id        BIGINT NOT NULL,
    wrapped       TEXT NOT NULL,
    created_at_ms BIGINT NOT NULL,
    retired_at_ms BIGINT,
    PRIMARY KEY (tenant_id, key_id)
);
