//! The login, consent and error pages of the browser flow: small, self-contained HTML,
//! every interpolated value escaped, no scripts, not frameable.

use axum::http::{HeaderValue, StatusCode, header};
use axum::response::{Html, IntoResponse, Response};

use crate::domain::{Scope, ScopeSet};

/// Escapes text for HTML element content and attribute values.
pub fn esc(s: &str) -> String {
    let mut out = String::with_capacity(s.len());
    for c in s.chars() {
        match c {
            '&' => out.push_str("&amp;"),
            '<' => out.push_str("&lt;"),
            '>' => out.push_str("&gt;"),
            '"' => out.push_str("&quot;"),
            '\'' => out.push_str("&#x27;"),
            c => out.push(c),
        }
    }
    out
}

fn page(status: StatusCode, title: &str, body: &str) -> Response {
    let html = format!(
        "<!doctype html><html lang=\"en\"><head><meta charset=\"utf-8\"><title>{} · ctxguard</title>\
         <meta name=\"viewport\" content=\"width=device-width\">\
         <style>body{{font-family:system-ui,sans-serif;max-width:28rem;margin:3rem auto;padding:0 1rem}}\
         label,input,button{{display:block;margin:.4rem 0}}input{{width:100%;padding:.4rem}}\
         .err{{color:#a00}}code{{background:#eee;padding:0 .2rem}}</style></head><body><h1>{}</h1>{}</body></html>",
        esc(title),
        esc(title),
        body
    );
    let mut r = (status, Html(html)).into_response();
    let h = r.headers_mut();
    h.insert(
        header::CONTENT_SECURITY_POLICY,
        HeaderValue::from_static(
            "default-src 'none'; style-src 'unsafe-inline'; frame-ancestors 'none'; base-uri 'none'",
        ),
    );
    h.insert(header::X_FRAME_OPTIONS, HeaderValue::from_static("DENY"));
    h.insert(header::CACHE_CONTROL, HeaderValue::from_static("no-store"));
    h.insert(header::REFERRER_POLICY, HeaderValue::from_static("no-referrer"));
    r
}

pub fn error_page(status: StatusCode, message: &str) -> Response {
    page(
        status,
        "Authorization request refused",
        &format!("<p class=\"err\">{}</p><p>Return to the application and try again.</p>", esc(message)),
    )
}

pub fn login_page(status: StatusCode, client_name: &str, request: &str, csrf: &str, error: Option<&str>) -> Response {
    let err = error.map(|e| format!("<p class=\"err\">{}</p>", esc(e))).unwrap_or_default();
    page(
        status,
        "Sign in",
        &format!(
            "<p><strong>{}</strong> wants to access your contexts. Sign in to continue.</p>{err}\
             <form method=\"post\" action=\"login\">\
             <input type=\"hidden\" name=\"csrf\" value=\"{}\">\
             <input type=\"hidden\" name=\"request\" value=\"{}\">\
             <label for=\"t\">Tenant (organisation; leave empty for the default)</label><input id=\"t\" name=\"tenant\" autocomplete=\"organization\">\
             <label for=\"u\">User name</label><input id=\"u\" name=\"username\" autocomplete=\"username\" required>\
             <label for=\"p\">Password</label><input id=\"p\" type=\"password\" name=\"password\" autocomplete=\"current-password\" required>\
             <button type=\"submit\">Sign in</button></form>",
            esc(client_name),
            esc(csrf),
            esc(request)
        ),
    )
}

fn describe(scope: Scope) -> &'static str {
    match scope {
        Scope::ContextRead => "read your contexts",
        Scope::ContextInject => "append messages to your contexts",
        Scope::ContextWrite => "create and change contexts",
        Scope::ContextDelete => "delete contexts",
        Scope::ContextShare => "share contexts with others",
        Scope::Admin => "administer your tenant",
        Scope::OfflineAccess => "keep access while you are away (refresh tokens)",
    }
}

pub struct Consent<'a> {
    pub client_name: &'a str,
    pub client_id: &'a str,
    pub user: &'a str,
    /// The signed-in user's tenant: the tokens will act in it.
    pub tenant: &'a str,
    pub scopes: ScopeSet,
    pub resource: &'a str,
    /// The contexts the token will be limited to, if the client asked for a binding.
    pub binding: Option<&'a crate::domain::ContextBinding>,
    pub request: &'a str,
    pub csrf: &'a str,
}

pub fn consent_page(c: &Consent<'_>) -> Response {
    let items: String =
        c.scopes.iter().map(|s| format!("<li><code>{}</code>: {}</li>", s.as_str(), describe(s))).collect();
    page(
        StatusCode::OK,
        "Allow access?",
        &format!(
            "<p>Signed in as <strong>{}</strong> of tenant <strong>{}</strong>.</p>\
             <p><strong>{}</strong> (<code>{}</code>) asks to:</p><ul>{items}</ul>\
             <p>on the resource <code>{}</code>{}.</p>\
             <form method=\"post\" action=\"consent\">\
             <input type=\"hidden\" name=\"csrf\" value=\"{}\">\
             <input type=\"hidden\" name=\"request\" value=\"{}\">\
             <button type=\"submit\" name=\"decision\" value=\"allow\">Allow</button>\
             <button type=\"submit\" name=\"decision\" value=\"deny\">Deny</button></form>",
            esc(c.user),
            esc(c.tenant),
            esc(c.client_name),
            esc(c.client_id),
            esc(c.resource),
            c.binding.map(|b| format!(", limited to: {}", esc(&b.to_string()))).unwrap_or_default(),
            esc(c.csrf),
            esc(c.request)
        ),
    )
}

#[cfg(test)]
mod tests {
    #[test]
    fn escapes_markup() {
        assert_eq!(super::esc("<a href=\"x\">'&'</a>"), "&lt;a href=&quot;x&quot;&gt;&#x27;&amp;&#x27;&lt;/a&gt;");
    }
}
