//! Client authentication at the token, revocation and introspection endpoints
//! (RFC 6749 section 2.3): `client_secret_basic`, `client_secret_post`, or `none` for
//! public clients. Exactly one method per request.

use axum::http::{HeaderMap, header};
use base64::Engine;
use base64::engine::general_purpose::STANDARD;
use subtle::ConstantTimeEq;

use super::error::{OAuthError, OAuthResult};
use super::form::Form;
use super::server::AuthServer;
use crate::crypto::token;
use crate::domain::OAuthClient;

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum AuthMethod {
    Basic,
    Post,
    /// A public client naming itself; proves nothing but who it claims to be.
    None,
}

pub struct AuthenticatedClient {
    pub client: OAuthClient,
    pub method: AuthMethod,
}

fn failed(basic: bool) -> OAuthError {
    let mut e = OAuthError::invalid_client("client authentication failed");
    e.basic_challenge = basic;
    e
}

fn basic_credentials(headers: &HeaderMap) -> OAuthResult<Option<(String, String)>> {
    let Some(value) = headers.get(header::AUTHORIZATION) else { return Ok(None) };
    let value = value.to_str().map_err(|_| failed(true))?;
    let Some((scheme, b64)) = value.split_once(' ') else { return Err(failed(true)) };
    if !scheme.eq_ignore_ascii_case("basic") {
        return Err(OAuthError::invalid_request("only Basic client authentication is accepted here"));
    }
    let raw = STANDARD.decode(b64.trim()).map_err(|_| failed(true))?;
    let text = String::from_utf8(raw).map_err(|_| failed(true))?;
    let (id, secret) = text.split_once(':').ok_or_else(|| failed(true))?;
    // RFC 6749 section 2.3.1: both parts are form-urlencoded before base64.
    let decode = |s: &str| form_urlencoded::parse(format!("x={s}").as_bytes()).next().map(|(_, v)| v.into_owned());
    Ok(Some((decode(id).ok_or_else(|| failed(true))?, decode(secret).ok_or_else(|| failed(true))?)))
}

pub async fn authenticate(server: &AuthServer, headers: &HeaderMap, form: &Form) -> OAuthResult<AuthenticatedClient> {
    let basic = basic_credentials(headers)?;
    let post_id = form.get("client_id")?;
    let post_secret = form.get("client_secret")?;
    let (client_id, secret, method) = match (basic, post_secret) {
        (Some(_), Some(_)) => {
            return Err(OAuthError::invalid_request("use one client authentication method, not two"));
        }
        (Some((id, secret)), None) => {
            if post_id.is_some_and(|p| p != id) {
                return Err(OAuthError::invalid_request("client_id differs from the authenticated client"));
            }
            (id, Some(secret), AuthMethod::Basic)
        }
        (None, Some(secret)) => {
            let id = post_id.ok_or_else(|| OAuthError::invalid_request("missing parameter client_id"))?;
            (id.to_string(), Some(secret.to_string()), AuthMethod::Post)
        }
        (None, None) => {
            let id = post_id.ok_or_else(|| failed(false))?;
            (id.to_string(), None, AuthMethod::None)
        }
    };
    let is_basic = method == AuthMethod::Basic;
    let Ok((client, stored_hash)) = server.find_client(&client_id).await? else {
        return Err(failed(is_basic));
    };
    match (stored_hash, secret) {
        (Some(hash), Some(secret)) => {
            let ok: bool = token::hash(&secret).as_bytes().ct_eq(hash.as_bytes()).into();
            if !ok {
                return Err(failed(is_basic));
            }
        }
        // A public client authenticates with `none` only.
        (None, None) => {}
        _ => return Err(failed(is_basic)),
    }
    Ok(AuthenticatedClient { client, method })
}
