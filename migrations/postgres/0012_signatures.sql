-- Signed versions (docs/integrity.md). signature: the detached JWS over the version's
-- manifest. The head row keeps the latest version's signature and the digests it
-- signed, so that an append signs its successor without reading the history.
-- Rows written before this migration are signed by the server at start-up.
ALTER TABLE context_revisions ADD COLUMN signature TEXT;
ALTER TABLE contexts ADD COLUMN signature TEXT;
ALTER TABLE contexts ADD COLUMN history_sha256 TEXT;
ALTER TABLE contexts ADD COLUMN metadata_sha256 TEXT;
-- The start-up signing finds the next unsigned context here, not by a scan (it would
-- be quadratic over a large store); empty once every context is signed.
CREATE INDEX contexts_unsigned ON contexts (tenant_id, context_id) WHERE signature IS NULL;

-- One row once the start-up signing of the rows above has finished: from then on a
-- version without a signature is an integrity error, never signed afresh.
CREATE TABLE signing_state (
    converted_at_ms BIGINT NOT NULL
);
