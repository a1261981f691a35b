#!/usr/bin/env bash
# Adds N contexts to a ctxguard SQLite database, cloned from an existing one (TEMPLATE
# id, a context at version 1): same tenant, owner, metadata and messages, each with a
# fresh UUIDv4 id. Bulk SQL is the only practical way to reach a million contexts in
# seconds; the rows are what the server writes for a create (head row, version row,
# message rows) less the signature, which covers the context's id: a server signs the
# clones as it starts, once the database's signing end mark is removed (bench/run.sh).
# Usage: bench/seed.sh DB TEMPLATE_ID N
set -euo pipefail
db="$1"; template="$2"; n="$3"
sqlite3 "$db" <<SQL
.timeout 60000
BEGIN IMMEDIATE;
CREATE TEMP TABLE seed (id TEXT NOT NULL);
WITH RECURSIVE k(i) AS (SELECT 1 UNION ALL SELECT i + 1 FROM k WHERE i < $n)
INSERT INTO seed (id)
SELECT lower(hex(randomblob(4)) || '-' || hex(randomblob(2)) || '-4' || substr(hex(randomblob(2)), 2) || '-'
       || substr('89ab', 1 + abs(random()) % 4, 1) || substr(hex(randomblob(2)), 2) || '-' || hex(randomblob(6)))
FROM k;
INSERT INTO contexts (tenant_id, context_id, owner_id, version, expires_at_ms, created_at_ms, updated_at_ms,
                      labels, grants, metadata, meta_version, history, history_len, history_bytes)
SELECT c.tenant_id, s.id, c.owner_id, 1, NULL, c.created_at_ms, c.updated_at_ms,
       c.labels, c.grants, c.metadata, 1, 1, c.history_len, c.history_bytes
FROM seed s, contexts c WHERE c.context_id = '$template';
INSERT INTO context_revisions (tenant_id, context_id, version, history, history_len, meta_version, metadata,
                               expires_at_ms, created_at_ms)
SELECT r.tenant_id, s.id, 1, 1, r.history_len, 1, r.metadata, NULL, r.created_at_ms
FROM seed s, context_revisions r WHERE r.context_id = '$template' AND r.version = 1;
INSERT INTO context_messages (tenant_id, context_id, history, position, author_id, body)
SELECT m.tenant_id, s.id, 1, m.position, m.author_id, m.body
FROM seed s, context_messages m WHERE m.context_id = '$template' AND m.history = 1;
COMMIT;
SQL
