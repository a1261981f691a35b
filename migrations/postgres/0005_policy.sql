-- Authorization facts kept in each context's head row, so that a decision never
-- costs a second query: the labels policies see (JSON array of strings; NULL for
-- contexts written before this migration, derived from the body when read) and the
-- per-context grants (JSON array). A grant change updates the head row, whose
-- trigger bumps the context's change counter: cached heads see it at once.
ALTER TABLE contexts ADD COLUMN labels TEXT;
ALTER TABLE contexts ADD COLUMN grants TEXT NOT NULL DEFAULT '[]';

-- Context binding (RFC 9396 authorization_details) requested at the authorization
-- endpoint, carried by the code and every refresh token of the family.
ALTER TABLE authorization_codes ADD COLUMN authorization_details TEXT;
ALTER TABLE refresh_tokens ADD COLUMN authorization_details TEXT;
