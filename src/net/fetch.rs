//! A bounded JSON fetcher with SSRF protection.
//!
//! For untrusted URLs every address the host resolves to must be public; the
//! connection is then pinned to the checked address so a second DNS answer cannot
//! point it elsewhere (DNS rebinding). Redirects are not followed.

use std::net::{IpAddr, SocketAddr};
use std::time::Duration;

use reqwest::header::CACHE_CONTROL;
use serde_json::Value;
use url::Url;

#[derive(Debug, thiserror::Error)]
pub enum FetchError {
    #[error("{0}")]
    Refused(String),
    #[error("fetch failed: {0}")]
    Failed(String),
}

/// Who named the URL.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Trust {
    /// A request (e.g. a client_id URL): public https targets only.
    Untrusted,
    /// The operator's configuration.
    Configured,
}

pub struct Fetched {
    pub json: Value,
    /// From `Cache-Control: max-age`; `None` if absent, `Some(0)` for no-store/no-cache.
    pub max_age: Option<Duration>,
}

#[derive(Clone)]
pub struct Fetcher {
    /// Accept `http://` on loopback addresses even for untrusted URLs (tests only).
    allow_loopback_http: bool,
    timeout: Duration,
    max_bytes: usize,
}

fn is_public(ip: IpAddr) -> bool {
    match ip {
        IpAddr::V4(v4) => {
            let o = v4.octets();
            !(v4.is_private()
                || v4.is_loopback()
                || v4.is_link_local()
                || v4.is_multicast()
                || v4.is_broadcast()
                || v4.is_unspecified()
                || v4.is_documentation()
                || o[0] == 0
                || (o[0] == 100 && (o[1] & 0xc0) == 64)
                || (o[0] == 198 && (o[1] & 0xfe) == 18)
                || o[0] >= 240)
        }
        IpAddr::V6(v6) => {
            if let Some(v4) = v6.to_ipv4_mapped() {
                return is_public(IpAddr::V4(v4));
            }
            let s = v6.segments();
            !(v6.is_loopback()
                || v6.is_unspecified()
                || v6.is_multicast()
                || (s[0] & 0xfe00) == 0xfc00
                || (s[0] & 0xffc0) == 0xfe80
                || (s[0] == 0x2001 && s[1] == 0x0db8))
        }
    }
}

impl Fetcher {
    pub fn new(allow_loopback_http: bool) -> Self {
        Self { allow_loopback_http, timeout: Duration::from_secs(5), max_bytes: 64 * 1024 }
    }

    pub async fn json(&self, url: &Url, trust: Trust) -> Result<Fetched, FetchError> {
        let host = url.host_str().ok_or_else(|| FetchError::Refused("the URL has no host".into()))?;
        let port = url.port_or_known_default().ok_or_else(|| FetchError::Refused("the URL has no port".into()))?;
        let addrs: Vec<SocketAddr> = tokio::time::timeout(self.timeout, tokio::net::lookup_host((host, port)))
            .await
            .map_err(|_| FetchError::Failed(format!("resolving {host} timed out")))?
            .map_err(|e| FetchError::Failed(format!("cannot resolve {host}: {e}")))?
            .collect();
        let first = *addrs.first().ok_or_else(|| FetchError::Failed(format!("{host} has no address")))?;
        let all_loopback = addrs.iter().all(|a| a.ip().is_loopback());
        match (url.scheme(), trust) {
            ("https", _) => {}
            ("http", Trust::Configured) if all_loopback => {}
            ("http", Trust::Untrusted) if self.allow_loopback_http && all_loopback => {}
            _ => return Err(FetchError::Refused(format!("{url} must use https"))),
        }
        if trust == Trust::Untrusted
            && !(self.allow_loopback_http && all_loopback)
            && let Some(bad) = addrs.iter().find(|a| !is_public(a.ip()))
        {
            return Err(FetchError::Refused(format!("{host} resolves to a non-public address ({})", bad.ip())));
        }
        let client = reqwest::Client::builder()
            .redirect(reqwest::redirect::Policy::none())
            .timeout(self.timeout)
            .resolve(host, first)
            .build()
            .map_err(|e| FetchError::Failed(e.to_string()))?;
        let mut res = client
            .get(url.clone())
            .header(reqwest::header::ACCEPT, "application/json")
            .send()
            .await
            .map_err(|e| FetchError::Failed(e.to_string()))?;
        if !res.status().is_success() {
            return Err(FetchError::Failed(format!("{url} answered {}", res.status())));
        }
        let max_age = res.headers().get(CACHE_CONTROL).and_then(|v| v.to_str().ok()).map(cache_lifetime);
        let mut body = Vec::new();
        while let Some(chunk) = res.chunk().await.map_err(|e| FetchError::Failed(e.to_string()))? {
            if body.len() + chunk.len() > self.max_bytes {
                return Err(FetchError::Refused(format!("{url} is larger than {} bytes", self.max_bytes)));
            }
            body.extend_from_slice(&chunk);
        }
        let json = serde_json::from_slice(&body).map_err(|e| FetchError::Failed(format!("{url} is not JSON: {e}")))?;
        Ok(Fetched { json, max_age })
    }
}

fn cache_lifetime(header: &str) -> Duration {
    let mut max_age = None;
    for directive in header.split(',').map(|d| d.trim().to_ascii_lowercase()) {
        if directive == "no-store" || directive == "no-cache" {
            return Duration::ZERO;
        }
        if let Some(v) = directive.strip_prefix("max-age=") {
            max_age = v.trim_matches('"').parse().ok().map(Duration::from_secs);
        }
    }
    max_age.unwrap_or(Duration::ZERO)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn public_addresses() {
        for ip in [
            "10.1.2.3",
            "172.16.0.1",
            "192.168.1.1",
            "127.0.0.1",
            "169.254.169.254",
            "100.64.0.1",
            "0.0.0.0",
            "::1",
            "fd00::1",
            "fe80::1",
            "::ffff:10.0.0.1",
        ] {
            assert!(!is_public(ip.parse().unwrap()), "{ip}");
        }
        for ip in ["93.184.216.34", "2606:4700::1111", "8.8.8.8"] {
            assert!(is_public(ip.parse().unwrap()), "{ip}");
        }
    }

    #[test]
    fn cache_control() {
        assert_eq!(cache_lifetime("public, max-age=600"), Duration::from_secs(600));
        assert_eq!(cache_lifetime("no-store"), Duration::ZERO);
        assert_eq!(cache_lifetime("private"), Duration::ZERO);
    }
}
