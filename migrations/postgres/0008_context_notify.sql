-- Every committed change of a context is announced to every replica listening on this
-- schema's channel (MCP subscriptions/listen): "<kind> <tenant_id> <context_id>", kind
-- created, updated or deleted. A trigger, like the change counters, so that no write
-- path (a replica, the CLI) can forget to. NOTIFY is delivered at commit and never for
-- a rolled-back write. The channel is named after the schema so that deployments
-- sharing a database do not hear each other (the listener names it the same way:
-- store/feed.rs).
CREATE FUNCTION ctxguard_context_notify() RETURNS trigger LANGUAGE plpgsql AS $$
DECLARE
    kind TEXT;
    row_tenant TEXT;
    row_context TEXT;
BEGIN
    IF TG_OP = 'INSERT' THEN
        kind := 'created';
    ELSIF TG_OP = 'DELETE' THEN
        -- A purged tombstone was announced when it was deleted.
        IF OLD.deleted_at_ms IS NOT NULL THEN
            RETURN NULL;
        END IF;
        kind := 'deleted';
    ELSIF NEW.deleted_at_ms IS NOT NULL AND OLD.deleted_at_ms IS NULL THEN
        kind := 'deleted';
    ELSIF NEW.version IS DISTINCT FROM OLD.version THEN
        kind := 'updated';
    ELSE
        -- Bookkeeping (e.g. the storage conversion filling head columns): no new version.
        RETURN NULL;
    END IF;
    IF TG_OP = 'DELETE' THEN
        row_tenant := OLD.tenant_id;
        row_context := OLD.context_id;
    ELSE
        row_tenant := NEW.tenant_id;
        row_context := NEW.context_id;
    END IF;
    PERFORM pg_notify('ctxguard_' || left(md5(TG_TABLE_SCHEMA), 16), kind || ' ' || row_tenant || ' ' || row_context);
    RETURN NULL;
END $$;

CREATE TRIGGER contexts_notify AFTER INSERT OR UPDATE OR DELETE ON contexts
    FOR EACH ROW EXECUTE FUNCTION ctxguard_context_notify();
