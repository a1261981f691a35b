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

/// Whether an address may be the target of a URL named by a request: not loopback,
/// private, link-local, shared, reserved, documentation, multicast or any other range of
/// the IANA special-purpose registries (RFC 6890 and its updates) that does not lead to
/// the public internet — nor a translation or tunnelling prefix (NAT64, 6to4, Teredo,
/// IPv4-compatible and -mapped addresses) that could carry a private IPv4 address.
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
                // 100.64.0.0/10 shared address space (carrier-grade NAT)
                || (o[0] == 100 && (o[1] & 0xc0) == 64)
                // 192.0.0.0/24 IETF protocol assignments
                || (o[0] == 192 && o[1] == 0 && o[2] == 0)
                // 192.88.99.0/24 the deprecated 6to4 relay anycast
                || (o[0] == 192 && o[1] == 88 && o[2] == 99)
                // 198.18.0.0/15 benchmarking
                || (o[0] == 198 && (o[1] & 0xfe) == 18)
                // 240.0.0.0/4 reserved
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
                // ::/96 IPv4-compatible (deprecated; would carry an IPv4 address)
                || s[..6].iter().all(|x| *x == 0)
                // 64:ff9b::/96 and 64:ff9b:1::/48 NAT64
                || (s[0] == 0x0064 && s[1] == 0xff9b)
                // 100::/64 discard-only
                || (s[0] == 0x0100 && s[1..4].iter().all(|x| *x == 0))
                // 2001::/23 IETF protocol assignments (Teredo 2001::/32, benchmarking, ORCHID)
                || (s[0] == 0x2001 && s[1] < 0x0200)
                // 2001:db8::/32 and 3fff::/20 documentation
                || (s[0] == 0x2001 && s[1] == 0x0db8)
                || (s[0] & 0xfff0) == 0x3ff0
                // 2002::/16 6to4
                || s[0] == 0x2002
                // 5f00::/16 segment routing SIDs
                || s[0] == 0x5f00
                // fc00::/7 unique local, fe80::/10 link-local, fec0::/10 site-local
                || (s[0] & 0xfe00) == 0xfc00
                || (s[0] & 0xffc0) == 0xfe80
                || (s[0] & 0xffc0) == 0xfec0)
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
        let literal = match url.host() {
            Some(url::Host::Ipv4(ip)) => Some(IpAddr::V4(ip)),
            Some(url::Host::Ipv6(ip)) => Some(IpAddr::V6(ip)),
            _ => None,
        };
        let addrs: Vec<SocketAddr> = match literal {
            // A request names a host, never an address: addresses are what the checks
            // below are about, and a literal skips the name a certificate is issued for.
            Some(_) if trust == Trust::Untrusted && !self.allow_loopback_http => {
                return Err(FetchError::Refused(format!("{url} names an IP address; a host name is required")));
            }
            Some(ip) => vec![SocketAddr::new(ip, port)],
            None => tokio::time::timeout(self.timeout, tokio::net::lookup_host((host, port)))
                .await
                .map_err(|_| FetchError::Failed(format!("resolving {host} timed out")))?
                .map_err(|e| FetchError::Failed(format!("cannot resolve {host}: {e}")))?
                .collect(),
        };
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
        // No proxy: a proxy from the environment (HTTPS_PROXY, ALL_PROXY) would make the
        // connection to an address other than the one checked and pinned here.
        let client = reqwest::Client::builder()
            .no_proxy()
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
            // The gaps a review found: NAT64, IPv4-compatible, 6to4, Teredo, site-local,
            // IETF protocol assignments — and the rest of the special-purpose ranges.
            "64:ff9b::a00:1",
            "64:ff9b:1::1",
            "::10.0.0.1",
            "::127.0.0.1",
            "2002:a00:1::1",
            "2001::1",
            "2001:0:4136:e378::1",
            "fec0::1",
            "192.0.0.1",
            "192.0.0.170",
            "192.88.99.1",
            "198.18.0.1",
            "198.51.100.7",
            "203.0.113.9",
            "240.0.0.1",
            "255.255.255.255",
            "100::1",
            "2001:db8::1",
            "3fff::1",
            "5f00::1",
            "ff02::1",
        ] {
            assert!(!is_public(ip.parse().unwrap()), "{ip}");
        }
        for ip in ["93.184.216.34", "2606:4700::1111", "8.8.8.8", "2a00:1450:4001::1", "192.0.1.1", "2001:4860::8888"] {
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
