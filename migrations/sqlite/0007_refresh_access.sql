-- The access token minted with each refresh token (its jti): a refresh-token replay or
-- the revocation of a refresh token then revokes the access tokens of the family too
-- (RFC 6749 section 10.4, RFC 7009 section 2.1), not only its refresh tokens.
ALTER TABLE refresh_tokens ADD COLUMN access_jti TEXT;
