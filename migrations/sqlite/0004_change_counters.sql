-- Change counters (SQLite). Every replica keeps cached credentials and context heads;
-- it polls these counters to learn which cached entries went stale. The triggers
-- bump them in the same transaction as the change, so no write path can forget to.
-- Bucket 'auth' counts changes to principals, API keys, OAuth clients and the token
-- deny-list;
-- 'c00' .. 'cff' count changes to contexts whose id ends in those two hex digits.
CREATE TABLE change_counters (
    bucket TEXT PRIMARY KEY,
    n      INTEGER NOT NULL
);

INSERT INTO change_counters (bucket, n) VALUES ('auth', 0);
WITH RECURSIVE h(i) AS (SELECT 0 UNION ALL SELECT i + 1 FROM h WHERE i < 255)
INSERT INTO change_counters (bucket, n)
SELECT 'c' || substr('0123456789abcdef', i / 16 + 1, 1) || substr('0123456789abcdef', i % 16 + 1, 1), 0 FROM h;

CREATE TRIGGER principals_changed AFTER UPDATE ON principals
BEGIN UPDATE change_counters SET n = n + 1 WHERE bucket = 'auth'; END;
CREATE TRIGGER principals_deleted AFTER DELETE ON principals
BEGIN UPDATE change_counters SET n = n + 1 WHERE bucket = 'auth'; END;
CREATE TRIGGER api_keys_changed AFTER UPDATE ON api_keys
BEGIN UPDATE change_counters SET n = n + 1 WHERE bucket = 'auth'; END;
CREATE TRIGGER api_keys_deleted AFTER DELETE ON api_keys
BEGIN UPDATE change_counters SET n = n + 1 WHERE bucket = 'auth'; END;
CREATE TRIGGER oauth_clients_changed AFTER UPDATE ON oauth_clients
BEGIN UPDATE change_counters SET n = n + 1 WHERE bucket = 'auth'; END;
CREATE TRIGGER oauth_clients_deleted AFTER DELETE ON oauth_clients
BEGIN UPDATE change_counters SET n = n + 1 WHERE bucket = 'auth'; END;
CREATE TRIGGER revoked_tokens_added AFTER INSERT ON revoked_tokens
BEGIN UPDATE change_counters SET n = n + 1 WHERE bucket = 'auth'; END;

CREATE TRIGGER contexts_changed AFTER UPDATE ON contexts
BEGIN UPDATE change_counters SET n = n + 1 WHERE bucket = 'c' || substr(NEW.context_id, 35, 2); END;
CREATE TRIGGER contexts_deleted AFTER DELETE ON contexts
BEGIN UPDATE change_counters SET n = n + 1 WHERE bucket = 'c' || substr(OLD.context_id, 35, 2); END;
