-- Per-tenant HMAC-SHA256 keys for version signatures (docs/integrity.md "HMAC"), wrapped
-- under the KEK. Never published; the tenant's operator exports them for verifiers.
CREATE TABLE hmac_keys (
    tenant_id     TEXT NOT NULL,
    key_id        BIGINT NOT NULL,
    wrapped       TEXT NOT NULL,
    created_at_ms BIGINT NOT NULL,
    PRIMARY KEY (tenant_id, key_id)
);
