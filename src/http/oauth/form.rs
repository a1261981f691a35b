//! The request side of the OAuth endpoints: `application/x-www-form-urlencoded` bodies
//! (RFC 6749 section 3.2) and the client credentials they present (section 2.3).

use axum::extract::{FromRequest, Request};
use axum::http::{HeaderMap, header};
use base64::Engine;
use base64::engine::general_purpose::STANDARD;

use crate::crypto::Secret;
use crate::domain::ClientId;
use crate::oauth::client_auth::failed;
use crate::oauth::params::Params;
use crate::oauth::request::{AuthMethod, ClientCredentials};
use crate::oauth::{OAuthError, OAuthResult};

const MAX_FORM_BYTES: usize = 64 * 1024;

/// A form body's parameters.
pub struct Form(pub Params);

impl<S: Send + Sync> FromRequest<S> for Form {
    type Rejection = OAuthError;

    async fn from_request(req: Request, _state: &S) -> Result<Self, OAuthError> {
        let is_form = req.headers().get(header::CONTENT_TYPE).and_then(|v| v.to_str().ok()).is_some_and(|v| {
            v.split(';').next().unwrap_or("").trim().eq_ignore_ascii_case("application/x-www-form-urlencoded")
        });
        if !is_form {
            return Err(OAuthError::invalid_request("the body must be application/x-www-form-urlencoded"));
        }
        let bytes = axum::body::to_bytes(req.into_body(), MAX_FORM_BYTES)
            .await
            .map_err(|_| OAuthError::invalid_request(format!("the body exceeds {MAX_FORM_BYTES} bytes")))?;
        Ok(Form(Params::parse(&bytes)))
    }
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

/// The one client authentication method the request uses: Basic, the form's
/// `client_secret`, or a public client's bare `client_id`.
pub fn client_credentials(headers: &HeaderMap, form: &Params) -> OAuthResult<ClientCredentials> {
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
    Ok(ClientCredentials { client_id: ClientId::new(client_id), secret: secret.map(Secret::new), method })
}
