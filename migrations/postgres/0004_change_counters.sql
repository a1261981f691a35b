-- Change counters (PostgreSQL). Every replica keeps cached credentials and context
-- heads; it polls these counters to learn which cached entries went stale. The
-- triggers bump them in the same transaction as the change, so no write path can
-- forget to. Bucket 'auth' counts changes to principals, API keys, OAuth clients
-- and the token deny-list; 'c00' .. 'cff' count changes to contexts whose id ends in those digits.
CREATE TABLE change_counters (
    bucket TEXT PRIMARY KEY,
    n      BIGINT NOT NULL
);

INSERT INTO change_counters (bucket, n) VALUES ('auth', 0);
INSERT INTO change_counters (bucket, n) SELECT 'c' || lpad(to_hex(i), 2, '0'), 0 FROM generate_series(0, 255) AS i;

CREATE FUNCTION ctxguard_auth_changed() RETURNS trigger LANGUAGE plpgsql AS $$
BEGIN
    UPDATE change_counters SET n = n + 1 WHERE bucket = 'auth';
    RETURN NULL;
END $$;

CREATE FUNCTION ctxguard_context_changed() RETURNS trigger LANGUAGE plpgsql AS $$
BEGIN
    IF TG_OP = 'DELETE' THEN
        UPDATE change_counters SET n = n + 1 WHERE bucket = 'c' || substr(OLD.context_id, 35, 2);
    ELSE
        UPDATE change_counters SET n = n + 1 WHERE bucket = 'c' || substr(NEW.context_id, 35, 2);
    END IF;
    RETURN NULL;
END $$;

CREATE TRIGGER principals_changed AFTER UPDATE OR DELETE ON principals
    FOR EACH ROW EXECUTE FUNCTION ctxguard_auth_changed();
CREATE TRIGGER api_keys_changed AFTER UPDATE OR DELETE ON api_keys
    FOR EACH ROW EXECUTE FUNCTION ctxguard_auth_changed();
CREATE TRIGGER oauth_clients_changed AFTER UPDATE OR DELETE ON oauth_clients
    FOR EACH ROW EXECUTE FUNCTION ctxguard_auth_changed();
CREATE TRIGGER revoked_tokens_added AFTER INSERT ON revoked_tokens
    FOR EACH ROW EXECUTE FUNCTION ctxguard_auth_changed();
CREATE TRIGGER contexts_changed AFTER UPDATE OR DELETE ON contexts
    FOR EACH ROW EXECUTE FUNCTION ctxguard_context_changed();
