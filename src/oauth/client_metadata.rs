//! Client ID Metadata Documents, the primary registration path of MCP 2026-07-28: a
//! `client_id` that is an https URL names a JSON document describing the client. It is
//! fetched (SSRF-protected, bounded), validated (its `client_id` must equal the URL,
//! redirect URIs follow our rules), and cached per its HTTP cache headers.
//! Such clients are public: they authenticate with PKCE, not a secret.

use std::collections::HashMap;
use std::sync::Mutex;
use std::time::{Duration, Instant};

use serde::Deserialize;
use url::Url;

use super::clients::default_scopes;
use crate::domain::{ApplicationType, ClientId, GrantType, OAuthClient, TenantId, Timestamp, redirect_uri};
use crate::net::fetch::{Fetcher, Trust};

const MIN_CACHE: Duration = Duration::from_secs(60);
const DEFAULT_CACHE: Duration = Duration::from_secs(300);
const MAX_CACHE: Duration = Duration::from_secs(24 * 3600);
const MAX_ENTRIES: usize = 1000;

/// Whether a client_id names a metadata document rather than a registered client.
pub fn is_document_url(client_id: &str) -> bool {
    client_id.starts_with("https://") || client_id.starts_with("http://")
}

#[derive(Deserialize)]
struct Document {
    client_id: String,
    #[serde(default)]
    client_name: Option<String>,
    #[serde(default)]
    redirect_uris: Vec<String>,
    #[serde(default)]
    token_endpoint_auth_method: Option<String>,
    #[serde(default)]
    grant_types: Option<Vec<String>>,
    #[serde(default)]
    client_secret: Option<serde_json::Value>,
}

pub struct ClientMetadata {
    fetcher: Fetcher,
    cache: Mutex<HashMap<String, (OAuthClient, Instant)>>,
}

impl ClientMetadata {
    pub fn new(fetcher: Fetcher) -> Self {
        Self { fetcher, cache: Mutex::new(HashMap::new()) }
    }

    /// The client a document URL describes, in `tenant`. The error is safe to show.
    pub async fn resolve(&self, client_id: &str, tenant: TenantId) -> Result<OAuthClient, String> {
        if let Ok(cache) = self.cache.lock()
            && let Some((client, until)) = cache.get(client_id)
            && *until > Instant::now()
        {
            return Ok(client.clone());
        }
        let url = check_url(client_id)?;
        let fetched =
            self.fetcher.json(&url, Trust::Untrusted).await.map_err(|e| format!("client metadata document: {e}"))?;
        let doc: Document =
            serde_json::from_value(fetched.json).map_err(|e| format!("client metadata document is invalid: {e}"))?;
        let client = validate(doc, client_id, tenant)?;
        let ttl = fetched.max_age.map_or(DEFAULT_CACHE, |a| a.clamp(Duration::ZERO, MAX_CACHE));
        if ttl >= MIN_CACHE
            && let Ok(mut cache) = self.cache.lock()
        {
            if cache.len() >= MAX_ENTRIES {
                cache.clear();
            }
            cache.insert(client_id.to_string(), (client.clone(), Instant::now() + ttl));
        }
        Ok(client)
    }
}

/// The URL rules of the client ID metadata document draft: https, a path, no
/// fragment, no credentials, no dot segments.
fn check_url(client_id: &str) -> Result<Url, String> {
    let url = Url::parse(client_id).map_err(|_| "client_id is not a valid URL".to_string())?;
    if url.fragment().is_some() || !url.username().is_empty() || url.password().is_some() {
        return Err("a client_id URL must not carry a fragment or credentials".into());
    }
    if url.path() == "/" || url.path().is_empty() {
        return Err("a client_id URL must have a path".into());
    }
    if client_id.contains("/./") || client_id.contains("/../") || url.as_str() != client_id {
        return Err("a client_id URL must be in normal form (no dot segments)".into());
    }
    Ok(url)
}

fn validate(doc: Document, client_id: &str, tenant: TenantId) -> Result<OAuthClient, String> {
    if doc.client_id != client_id {
        return Err("the document's client_id does not equal its URL".into());
    }
    if doc.client_secret.is_some() {
        return Err("a client metadata document must not contain a client_secret".into());
    }
    match doc.token_endpoint_auth_method.as_deref() {
        None | Some("none") => {}
        Some(other) => return Err(format!("token_endpoint_auth_method {other:?} is not supported (use none)")),
    }
    if doc.redirect_uris.is_empty() {
        return Err("the document lists no redirect_uris".into());
    }
    let native = doc.redirect_uris.iter().any(|u| redirect_uri::validate(u, ApplicationType::Web).is_err());
    let app = if native { ApplicationType::Native } else { ApplicationType::Web };
    for uri in &doc.redirect_uris {
        redirect_uri::validate(uri, app)?;
    }
    let mut grants = vec![GrantType::AuthorizationCode];
    for g in doc.grant_types.unwrap_or_default() {
        match GrantType::parse(&g)? {
            GrantType::ClientCredentials => {
                return Err("client_credentials needs a registered confidential client".into());
            }
            GrantType::RefreshToken => grants.push(GrantType::RefreshToken),
            GrantType::TokenExchange => grants.push(GrantType::TokenExchange),
            GrantType::AuthorizationCode => {}
        }
    }
    let name = doc.client_name.unwrap_or_else(|| client_id.to_string());
    Ok(OAuthClient {
        client_id: ClientId::new(client_id),
        tenant,
        name: name.chars().filter(|c| !c.is_control()).take(200).collect(),
        confidential: false,
        redirect_uris: doc.redirect_uris,
        grant_types: grants,
        scopes: default_scopes(),
        application_type: app,
        principal: None,
        registered_by: "metadata_document".into(),
        disabled: false,
        created_at: Timestamp::now(),
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn url_rules() {
        assert!(check_url("https://app.example.com/client.json").is_ok());
        assert!(check_url("https://app.example.com/").is_err());
        assert!(check_url("https://app.example.com/a#x").is_err());
        assert!(check_url("https://u:p@app.example.com/a").is_err());
        assert!(check_url("https://app.example.com/a/../b").is_err());
    }

    #[test]
    fn document_rules() {
        let t = TenantId::new_random();
        let id = "https://app.example.com/client.json";
        let doc = |v: serde_json::Value| serde_json::from_value::<Document>(v).unwrap();
        let ok = validate(doc(serde_json::json!({"client_id": id, "redirect_uris": ["http://127.0.0.1/cb"]})), id, t)
            .unwrap();
        assert_eq!(ok.application_type, ApplicationType::Native);
        assert!(!ok.confidential);
        assert!(validate(doc(serde_json::json!({"client_id": "https://evil.example/c.json", "redirect_uris": ["https://a.example/cb"]})), id, t).is_err());
        assert!(validate(doc(serde_json::json!({"client_id": id, "redirect_uris": ["javascript:x"]})), id, t).is_err());
        assert!(validate(doc(serde_json::json!({"client_id": id, "redirect_uris": ["https://a.example/cb"], "client_secret": "s"})), id, t).is_err());
        assert!(validate(doc(serde_json::json!({"client_id": id, "redirect_uris": []})), id, t).is_err());
    }
}
