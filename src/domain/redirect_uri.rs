//! Redirect URI rules: what may be registered (by `application_type`) and when a
//! requested redirect URI matches a registered one (exactly; for native clients a
//! loopback URI on any port, RFC 8252 section 7.3).

use url::Url;

use super::ApplicationType;

const MAX_LEN: usize = 2048;

fn is_loopback_host(url: &Url) -> bool {
    match url.host() {
        Some(url::Host::Ipv4(ip)) => ip.is_loopback(),
        Some(url::Host::Ipv6(ip)) => ip.is_loopback(),
        Some(url::Host::Domain(d)) => d.eq_ignore_ascii_case("localhost"),
        None => false,
    }
}

/// Checks a redirect URI offered at registration.
pub fn validate(uri: &str, app: ApplicationType) -> Result<(), String> {
    if uri.len() > MAX_LEN {
        return Err(format!("redirect URI longer than {MAX_LEN} characters"));
    }
    let url = Url::parse(uri).map_err(|e| format!("{uri:?} is not an absolute URI ({e})"))?;
    if url.fragment().is_some() {
        return Err(format!("{uri:?} has a fragment"));
    }
    if !url.username().is_empty() || url.password().is_some() {
        return Err(format!("{uri:?} carries credentials"));
    }
    let scheme = url.scheme();
    if matches!(scheme, "javascript" | "data" | "file" | "vbscript" | "blob" | "about") {
        return Err(format!("{uri:?} uses the forbidden scheme {scheme}:"));
    }
    match (app, scheme) {
        (_, "https") if url.host().is_some() => Ok(()),
        (ApplicationType::Native, "http") if is_loopback_host(&url) => Ok(()),
        (ApplicationType::Native, s) if s.contains('.') => Ok(()),
        (ApplicationType::Web, _) => Err(format!("{uri:?}: web clients must use https redirect URIs")),
        (ApplicationType::Native, _) => Err(format!(
            "{uri:?}: native clients use https, http on a loopback address, or a private-use scheme such as com.example.app:/cb"
        )),
    }
}

/// The application type a registration that names none implies: native when every
/// redirect URI is http on a loopback host or a private-use scheme (RFC 8252 sections
/// 7.1 and 7.3: what installed MCP clients register), web otherwise. This is what the
/// official MCP TypeScript SDK derives for its own registrations.
pub fn inferred_application_type(uris: &[String]) -> ApplicationType {
    let native = |uri: &String| {
        Url::parse(uri).is_ok_and(|u| {
            (u.scheme() == "http" && is_loopback_host(&u)) || (u.scheme() != "https" && u.scheme().contains('.'))
        })
    };
    if !uris.is_empty() && uris.iter().all(native) { ApplicationType::Native } else { ApplicationType::Web }
}

/// Whether `requested` matches one of `registered`.
pub fn matches(requested: &str, registered: &[String], app: ApplicationType) -> bool {
    if registered.iter().any(|r| r == requested) {
        return true;
    }
    if app != ApplicationType::Native {
        return false;
    }
    let Ok(req) = Url::parse(requested) else { return false };
    if req.scheme() != "http" || !is_loopback_host(&req) {
        return false;
    }
    registered.iter().filter_map(|r| Url::parse(r).ok()).any(|reg| {
        reg.scheme() == "http"
            && reg.host() == req.host()
            && reg.path() == req.path()
            && reg.query() == req.query()
            && req.fragment().is_none()
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use ApplicationType::*;

    #[test]
    fn the_application_type_a_registration_implies() {
        let v = |uris: &[&str]| inferred_application_type(&uris.iter().map(|u| u.to_string()).collect::<Vec<_>>());
        assert_eq!(v(&["http://127.0.0.1:33418/callback"]), Native);
        assert_eq!(v(&["http://localhost:6274/oauth/callback", "http://[::1]/cb"]), Native);
        assert_eq!(v(&["com.example.app:/oauth2redirect"]), Native);
        assert_eq!(v(&["https://app.example.com/cb"]), Web);
        assert_eq!(v(&["http://127.0.0.1/cb", "https://app.example.com/cb"]), Web, "one web URI makes it web");
        assert_eq!(v(&["http://app.example.com/cb"]), Web, "plain http elsewhere is not native (and is refused)");
        assert_eq!(v(&[]), Web);
    }

    #[test]
    fn registration_rules() {
        assert!(validate("https://app.example.com/cb", Web).is_ok());
        assert!(validate("http://app.example.com/cb", Web).is_err());
        assert!(validate("http://127.0.0.1/cb", Web).is_err());
        assert!(validate("http://127.0.0.1:8080/cb", Native).is_ok());
        assert!(validate("http://[::1]/cb", Native).is_ok());
        assert!(validate("com.example.app:/oauth", Native).is_ok());
        assert!(validate("http://evil.example/cb", Native).is_err());
        assert!(validate("javascript:alert(1)", Native).is_err());
        assert!(validate("https://app.example.com/cb#frag", Web).is_err());
        assert!(validate("https://user:pw@app.example.com/cb", Web).is_err());
        assert!(validate("/relative", Web).is_err());
    }

    #[test]
    fn matching() {
        let reg = vec!["https://app.example.com/cb".to_string(), "http://127.0.0.1/cb".to_string()];
        assert!(matches("https://app.example.com/cb", &reg, Web));
        assert!(!matches("https://app.example.com/cb/", &reg, Web), "one character differs");
        assert!(!matches("https://app.example.com/cB", &reg, Web));
        assert!(matches("http://127.0.0.1:53123/cb", &reg, Native), "loopback: any port");
        assert!(!matches("http://127.0.0.1:53123/cb", &reg, Web));
        assert!(!matches("http://127.0.0.1:53123/other", &reg, Native));
        assert!(!matches("http://localhost:53123/cb", &reg, Native), "host must match");
    }
}
