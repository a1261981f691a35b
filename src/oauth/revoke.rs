//! `POST /oauth/revoke` (RFC 7009). Refresh tokens revoke their whole family; access
//! tokens go on a deny-list (by `jti`) until they expire. A client may revoke only
//! its own tokens; an unknown or foreign token still answers 200, as the RFC requires.

use axum::extract::State;
use axum::http::{HeaderMap, StatusCode};

use super::client_auth;
use super::error::OAuthResult;
use super::form::Form;
use crate::crypto::token;
use crate::domain::Timestamp;
use crate::http::AppState;

pub async fn revoke(State(state): State<AppState>, headers: HeaderMap, form: Form) -> OAuthResult<StatusCode> {
    let server = &state.inner.oauth;
    let client = client_auth::authenticate(server, &headers, &form).await?;
    let presented = form.require("token")?;
    let now = Timestamp::now();
    if presented.starts_with(super::refresh::PREFIX) {
        if let Some((grant, _, _)) = server.db.refresh_token(&token::hash(presented)).await?
            && grant.client_id == client.client.client_id
        {
            server.db.revoke_refresh_family(&grant.family_id, now).await?;
        }
    } else if let Ok(claims) = server.tokens.verify(presented, None)
        && claims.client_id == client.client.client_id
    {
        server.db.revoke_jti(&claims.jti, Timestamp::from_millis(claims.exp * 1000)).await?;
    }
    Ok(StatusCode::OK)
}
