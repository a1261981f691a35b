//! The authorization_code grant (OAuth 2.1 section 4.1.3) with PKCE S256 (RFC 7636).
//! Codes are one-time: a replayed code is refused and everything it was exchanged for
//! is revoked (RFC 6749 section 4.1.2).

use subtle::ConstantTimeEq;

use super::client_auth::AuthenticatedClient;
use super::error::{OAuthError, OAuthErrorCode, OAuthResult};
use super::request::Narrowing;
use super::server::AuthServer;
use super::token::TokenResponse;
use crate::crypto::{Secret, token};
use crate::domain::{GrantType, Jti, Scope, Timestamp};
use crate::jwt::{Grant, MAX_ACCESS_TOKEN_TTL_SECS};
use crate::store::OneTime;

/// RFC 7636 section 4.1: 43–128 characters of [A-Z a-z 0-9 - . _ ~].
pub fn valid_verifier(v: &str) -> bool {
    (43..=128).contains(&v.len()) && v.bytes().all(|b| b.is_ascii_alphanumeric() || b"-._~".contains(&b))
}

impl AuthServer {
    pub(super) async fn redeem_code(
        &self,
        c: &AuthenticatedClient,
        code: &Secret,
        redirect_uri: &str,
        verifier: &Secret,
        asked: Narrowing,
    ) -> OAuthResult<(TokenResponse, crate::jwt::AccessClaims)> {
        let now = Timestamp::now();
        let hash = token::token_hash(code.expose());
        let grant = match self.db.use_code(&hash, now).await? {
            OneTime::Unknown => return Err(OAuthError::invalid_grant("unknown authorization code")),
            OneTime::Replayed { issued_jti, issued_family, .. } => {
                if let Some(jti) = issued_jti {
                    self.db.revoke_jti(&jti, now.plus_secs(MAX_ACCESS_TOKEN_TTL_SECS as i64 + 60)).await?;
                }
                if let Some(family) = issued_family {
                    self.revoke_family(&family, now).await?;
                }
                tracing::warn!(incident = "authorization_code_replay", client_id = %c.client.client_id, "a used authorization code was presented again; its tokens are revoked");
                metrics::counter!("ctxguard_security_incidents_total", "kind" => "authorization_code_replay")
                    .increment(1);
                return Err(OAuthError::invalid_grant(
                    "the authorization code was already used; the tokens issued for it are revoked",
                ));
            }
            OneTime::Fresh(g) => g,
        };
        if grant.client_id != c.client.client_id {
            return Err(OAuthError::invalid_grant("the authorization code was issued to another client"));
        }
        if grant.expires_at <= now {
            return Err(OAuthError::invalid_grant("the authorization code has expired"));
        }
        if grant.redirect_uri != redirect_uri {
            return Err(OAuthError::invalid_grant("redirect_uri differs from the authorization request"));
        }
        let verifier = verifier.expose();
        let pkce_ok = valid_verifier(verifier)
            && bool::from(token::s256(verifier).as_bytes().ct_eq(grant.code_challenge.as_bytes()));
        if !pkce_ok {
            return Err(OAuthError::invalid_grant("code_verifier does not match the code_challenge"));
        }
        if !asked.names_only(&grant.resource) {
            return Err(OAuthError::new(
                OAuthErrorCode::InvalidTarget,
                "resource differs from the authorization request",
            ));
        }
        let principal = self.active_principal(grant.principal).await?;
        let scopes = grant.scope;
        // RFC 9396 section 6.1: the token request may narrow the consented binding, never widen it.
        let binding = match (asked.binding, grant.binding) {
            (None, consented) => consented,
            (Some(asked), Some(consented)) if asked.is_within(&consented) => Some(asked),
            (Some(_), _) => {
                return Err(OAuthError::new(
                    OAuthErrorCode::InvalidAuthorizationDetails,
                    "authorization_details must stay within what was consented at the authorization endpoint",
                ));
            }
        };
        // Public clients get a refresh token only when offline_access was consented;
        // confidential clients of the code flow always (when registered for refresh).
        let wants_refresh = c.client.allows(GrantType::RefreshToken)
            && (c.client.confidential || scopes.contains(Scope::OfflineAccess));
        let token_grant = Grant {
            principal: principal.id,
            tenant: principal.tenant,
            client_id: c.client.client_id.as_str(),
            scopes,
            audience: &grant.resource,
            binding: binding.as_ref(),
            delegation: None,
        };
        let (mut response, claims) = self.mint(&token_grant, None)?;
        let jti = Jti::new(claims.jti.clone());
        let family = if wants_refresh {
            let (t, f) = self.issue_refresh(None, &token_grant, &jti).await?;
            response.refresh_token = Some(t);
            Some(f)
        } else {
            None
        };
        self.db.record_code_issue(&hash, &jti, family.as_ref()).await?;
        Ok((response, claims))
    }
}

#[cfg(test)]
mod tests {
    #[test]
    fn verifier_shape() {
        assert!(super::valid_verifier("dBjftJeZ4CVP-mB92K1uhyHBMUoMG_ZiNvg2eRcMOMk"));
        assert!(!super::valid_verifier("short"));
        assert!(!super::valid_verifier(&"a".repeat(129)));
        assert!(!super::valid_verifier(&format!("{}+", "a".repeat(43))));
    }
}
