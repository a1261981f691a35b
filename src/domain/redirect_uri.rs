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
