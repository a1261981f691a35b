//! Sealed inline contexts (docs/integrity.md "Inline contexts"): `POST /context/{id}/seal`
//! mints a JWS that `POST /context/verify` accepts from the `OCP-Context` header or the
//! body; everything forged, lapsed, misaddressed, unsigned or malformed is refused.

use base64::Engine;
use base64::engine::general_purpose::{STANDARD, URL_SAFE_NO_PAD};
use reqwest::{Method, StatusCode};
use serde_json::{Value, json};

use crate::backend_tests;
use crate::support::{Reply, TestServer};

async fn context(srv: &TestServer, key: &str, expires: &str) -> String {
    let body = json!({"metadata": {"topic": "billing"}, "expires": expires,
        "session": {"history": [{"role": "user", "message": "first"}, {"role": "assistant", "message": "second"}]}});
    srv.create_context(key, body).await["context_id"].as_str().unwrap().to_string()
}

async fn seal(srv: &TestServer, key: &str, id: &str, body: Option<Value>) -> Reply {
    srv.call(Method::POST, &format!("/context/{id}/seal"), Some(key), body).await
}

/// `POST /context/verify` with the header, as `audience` when given.
async fn verify_header(srv: &TestServer, key: &str, value: &str, audience: Option<&str>) -> Reply {
    let path = match audience {
        Some(a) => format!("/context/verify?audience={a}"),
        None => "/context/verify".to_string(),
    };
    srv.send(srv.request(Method::POST, &path, Some(key)).header("OCP-Context", value)).await
}

fn claims(token: &str) -> Value {
    serde_json::from_slice(&URL_SAFE_NO_PAD.decode(token.split('.').nth(1).unwrap()).unwrap()).unwrap()
}

/// A token with the given header and claims, signed by the server's own current key.
async fn signed_by_server(srv: &TestServer, header: jsonwebtoken::Header, claims: &Value) -> String {
    let key = srv.signing_key().await;
    jsonwebtoken::encode(&header, claims, &key.encoding).unwrap()
}

fn header_of(token: &str) -> jsonwebtoken::Header {
    jsonwebtoken::decode_header(token).unwrap()
}

backend_tests! {
    async fn a_sealed_context_round_trips_through_the_header_and_the_body(srv) {
        let key = srv.agent("reader", &["writer"]).await;
        let id = context(&srv, &key, "2099-01-01T00:00:00Z").await;
        let served = srv.call(Method::GET, &format!("/context/{id}"), Some(&key), None).await.body;
        let r = seal(&srv, &key, &id, None).await;
        assert_eq!(r.status, StatusCode::OK, "{}", r.body);
        let token = r.body["ocp_context"].as_str().unwrap().to_string();
        let c = claims(&token);
        let lifetime = c["exp"].as_i64().unwrap() - c["iat"].as_i64().unwrap();
        assert_eq!(lifetime, 300, "the default lifetime");
        assert_eq!(c["iss"], srv.url.as_str());
        assert_eq!(header_of(&token).typ.as_deref(), Some("ocp-context+jwt"));
        assert_eq!(header_of(&token).kid.as_deref(), r.body["kid"].as_str());
        // The header, then the body: the same context comes back.
        let v = verify_header(&srv, &key, &token, None).await;
        assert_eq!(v.status, StatusCode::OK, "{}", v.body);
        assert_eq!(v.body["valid"], true);
        assert_eq!(v.body["signed"], true);
        assert_eq!(v.body["context"], served, "every member as served, claims removed");
        let b = srv.call(Method::POST, "/context/verify", Some(&key), Some(json!({"context": token}))).await;
        assert_eq!(b.status, StatusCode::OK, "{}", b.body);
        assert_eq!(b.body["context"], v.body["context"]);
        // A stored version as GET served it verifies by its own signature.
        let s = srv.call(Method::POST, "/context/verify", Some(&key), Some(json!({"context": served}))).await;
        assert_eq!(s.status, StatusCode::OK, "{}", s.body);
        assert_eq!(s.body["signed"], true);
        let mut edited = served.clone();
        edited["session"]["history"][0]["message"] = json!("forged");
        srv.call(Method::POST, "/context/verify", Some(&key), Some(json!({"context": edited}))).await
            .assert_error(StatusCode::UNAUTHORIZED, "invalid_context");
        // Both were recorded.
        let sealed = srv.admin(Method::GET, &format!("/admin/audit?context={id}&action=context.seal"), None).await;
        assert_eq!(sealed.body["items"].as_array().unwrap().len(), 1, "{}", sealed.body);
        // Reads are recorded in groups: wait for the last one.
        let mut decisions = Vec::new();
        for _ in 0..50 {
            let checked = srv.admin(Method::GET, "/admin/audit?action=context.verify_inline&limit=50", None).await;
            decisions = checked.body["items"].as_array().unwrap().iter().filter_map(|i| i["decision"].as_str().map(str::to_string)).collect();
            if decisions.len() >= 5 {
                break;
            }
            tokio::time::sleep(std::time::Duration::from_millis(50)).await;
        }
        assert_eq!(decisions.iter().filter(|d| *d == "allow").count(), 4, "{decisions:?}");
        assert_eq!(decisions.iter().filter(|d| *d == "fail").count(), 1, "the refused one: {decisions:?}");
    }

    async fn fields_last_lifetime_and_audience_are_honoured(srv) {
        let key = srv.agent("reader", &["writer"]).await;
        let soon = crate::inline::in_secs(120);
        let id = context(&srv, &key, &soon).await;
        let r = seal(&srv, &key, &id, Some(json!({"fields": ["metadata"], "last": 1, "expires_in": 3600, "audience": "agent-b"}))).await;
        assert_eq!(r.status, StatusCode::OK, "{}", r.body);
        let token = r.body["ocp_context"].as_str().unwrap().to_string();
        let c = claims(&token);
        let expires = ctxguard::domain::Timestamp::parse_rfc3339(&soon).unwrap().millis() / 1000;
        assert_eq!(c["exp"].as_i64().unwrap(), expires, "never past the context's expires");
        assert_eq!(c["aud"], "agent-b");
        assert!(c.get("version").is_none() && c.get("expires").is_none() && c.get("signature").is_none(), "{c}");
        assert_eq!(c["session"]["history"].as_array().unwrap().len(), 1);
        assert_eq!(c["session"]["history"][0]["message"], "second");
        // Only its audience may accept it.
        verify_header(&srv, &key, &token, None).await.assert_error(StatusCode::UNAUTHORIZED, "invalid_context");
        verify_header(&srv, &key, &token, Some("agent-c")).await
            .assert_error(StatusCode::UNAUTHORIZED, "invalid_context");
        let ok = verify_header(&srv, &key, &token, Some("agent-b")).await;
        assert_eq!(ok.status, StatusCode::OK, "{}", ok.body);
        // Bad requests name what is wrong.
        seal(&srv, &key, &id, Some(json!({"expires_in": 7200}))).await.assert_error(StatusCode::BAD_REQUEST, "invalid_request");
        seal(&srv, &key, &id, Some(json!({"fields": ["history"]}))).await.assert_error(StatusCode::BAD_REQUEST, "invalid_request");
        // Sealing is reading: a stranger may not.
        let stranger = srv.agent("stranger", &[]).await;
        assert!(seal(&srv, &stranger, &id, None).await.status.is_client_error());
    }

    async fn forged_lapsed_and_unsigned_contexts_are_refused(srv) {
        let key = srv.agent("reader", &["writer"]).await;
        let id = context(&srv, &key, "2099-01-01T00:00:00Z").await;
        let token = seal(&srv, &key, &id, None).await.body["ocp_context"].as_str().unwrap().to_string();
        let parts: Vec<&str> = token.split('.').collect();
        let mut c = claims(&token);
        // A payload changed under the signature.
        c["session"]["history"][0]["message"] = json!("forged");
        let tampered = format!("{}.{}.{}", parts[0], URL_SAFE_NO_PAD.encode(serde_json::to_vec(&c).unwrap()), parts[2]);
        verify_header(&srv, &key, &tampered, None).await.assert_error(StatusCode::UNAUTHORIZED, "invalid_context");
        // Signed by another key under our kid.
        let other = ed25519_dalek::SigningKey::from_bytes(&[9u8; 32]);
        let der = ed25519_dalek::pkcs8::EncodePrivateKey::to_pkcs8_der(&other).unwrap();
        let foreign = jsonwebtoken::encode(&header_of(&token), &claims(&token), &jsonwebtoken::EncodingKey::from_ed_der(der.as_bytes())).unwrap();
        verify_header(&srv, &key, &foreign, None).await.assert_error(StatusCode::UNAUTHORIZED, "invalid_context");
        // alg none, and an HMAC keyed with anything.
        let none = format!("{}.{}.", URL_SAFE_NO_PAD.encode(br#"{"alg":"none","typ":"ocp-context+jwt"}"#), parts[1]);
        assert!(verify_header(&srv, &key, &none, None).await.status.is_client_error());
        let mut hs = header_of(&token);
        hs.alg = jsonwebtoken::Algorithm::HS256;
        let hmac = jsonwebtoken::encode(&hs, &claims(&token), &jsonwebtoken::EncodingKey::from_secret(b"guess")).unwrap();
        verify_header(&srv, &key, &hmac, None).await.assert_error(StatusCode::UNAUTHORIZED, "invalid_context");
        // An unknown kid.
        let mut unknown = header_of(&token);
        unknown.kid = Some("eddsa-nobody".into());
        let unknown = signed_by_server(&srv, unknown, &claims(&token)).await;
        verify_header(&srv, &key, &unknown, None).await.assert_error(StatusCode::UNAUTHORIZED, "invalid_context");
        // Past its exp (beyond the leeway), really signed by the server.
        let mut lapsed = claims(&token);
        let now = ctxguard::domain::Timestamp::now().millis() / 1000;
        lapsed["iat"] = json!(now - 600);
        lapsed["exp"] = json!(now - 300);
        let lapsed = signed_by_server(&srv, header_of(&token), &lapsed).await;
        let r = verify_header(&srv, &key, &lapsed, None).await;
        r.assert_error(StatusCode::UNAUTHORIZED, "invalid_context");
        assert!(r.body["error"].as_str().unwrap().contains("expired"), "{}", r.body);
        // Unsigned: refused unless configured.
        let plain = json!({"context_id": "x-1", "session": {"history": [{"role": "user", "message": "hi"}]}});
        let b64 = STANDARD.encode(serde_json::to_vec(&plain).unwrap());
        verify_header(&srv, &key, &b64, None).await.assert_error(StatusCode::UNAUTHORIZED, "invalid_context");
        // No credential, no answer.
        let anonymous = srv.send(srv.request(Method::POST, "/context/verify", None).header("OCP-Context", token.as_str())).await;
        assert_eq!(anonymous.status, StatusCode::UNAUTHORIZED);
    }
}

/// An RFC 3339 time `secs` from now.
pub fn in_secs(secs: i64) -> String {
    ctxguard::domain::Timestamp::now().plus_secs(secs).to_rfc3339()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn malformed_headers_get_a_clear_400_or_413() {
    let Some(srv) = TestServer::start(crate::support::Backend::Sqlite).await else { return };
    let key = srv.agent("reader", &["reader"]).await;
    verify_header(&srv, &key, "%%% not base64 %%%", None)
        .await
        .assert_error(StatusCode::BAD_REQUEST, "invalid_request");
    let not_json = STANDARD.encode(b"definitely not json");
    let r = verify_header(&srv, &key, &not_json, None).await;
    r.assert_error(StatusCode::BAD_REQUEST, "invalid_request");
    assert!(r.body["error"].as_str().unwrap().contains("OCP-Context"), "{}", r.body);
    let big = STANDARD.encode(vec![b' '; 70 * 1024]);
    verify_header(&srv, &key, &big, None).await.assert_error(StatusCode::PAYLOAD_TOO_LARGE, "payload_too_large");
    let deep = format!("{}{}", "[".repeat(10_000), "]".repeat(10_000));
    verify_header(&srv, &key, &STANDARD.encode(deep.as_bytes()), None)
        .await
        .assert_error(StatusCode::BAD_REQUEST, "json_too_deep");
    let deep_jws = format!(
        "{}.{}.{}",
        URL_SAFE_NO_PAD.encode(br#"{"alg":"EdDSA"}"#),
        URL_SAFE_NO_PAD.encode(deep.as_bytes()),
        "c2ln"
    );
    verify_header(&srv, &key, &deep_jws, None).await.assert_error(StatusCode::BAD_REQUEST, "json_too_deep");
    // Not an OCP context: the schema's rules, by name.
    let no_session = STANDARD.encode(br#"{"context_id":"a"}"#);
    let r = verify_header(&srv, &key, &no_session, None).await;
    r.assert_error(StatusCode::BAD_REQUEST, "invalid_request");
    assert!(r.body["error"].as_str().unwrap().contains("session.history"), "{}", r.body);
    // Both a header and a body, or neither.
    let both = srv.request(Method::POST, "/context/verify", Some(&key)).header("OCP-Context", no_session.as_str());
    srv.send(both.json(&json!({"context": {"context_id": "a"}})))
        .await
        .assert_error(StatusCode::BAD_REQUEST, "invalid_request");
    srv.call(Method::POST, "/context/verify", Some(&key), None)
        .await
        .assert_error(StatusCode::BAD_REQUEST, "invalid_request");
    srv.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn unsigned_contexts_are_accepted_only_when_configured() {
    let Some(srv) =
        TestServer::start_with(crate::support::Backend::Sqlite, |c| c.inline_allow_unsigned = Some(true)).await
    else {
        return;
    };
    let key = srv.agent("reader", &["reader"]).await;
    let plain =
        json!({"context_id": "x-1", "metadata": {"a": 1}, "session": {"history": [{"role": "user", "message": "hi"}]}});
    let r = verify_header(&srv, &key, &URL_SAFE_NO_PAD.encode(serde_json::to_vec(&plain).unwrap()), None).await;
    assert_eq!(r.status, StatusCode::OK, "{}", r.body);
    assert_eq!(r.body["signed"], false);
    assert_eq!(r.body["context"], plain);
    // Its own expiry still holds.
    let mut old = plain.clone();
    old["expires"] = json!("2020-01-01T00:00:00Z");
    let r = srv.call(Method::POST, "/context/verify", Some(&key), Some(json!({"context": old}))).await;
    r.assert_error(StatusCode::UNAUTHORIZED, "invalid_context");
    srv.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_trusted_issuers_sealed_contexts_are_accepted_and_only_as_that_issuer() {
    use ed25519_dalek::pkcs8::EncodePrivateKey;
    let peer = ed25519_dalek::SigningKey::from_bytes(&[9u8; 32]);
    let jwks = json!({"keys": [{"kty": "OKP", "crv": "Ed25519", "kid": "peer-1", "alg": "EdDSA", "use": "sig",
        "x": URL_SAFE_NO_PAD.encode(peer.verifying_key().as_bytes())}]});
    let dir = tempfile::tempdir().unwrap();
    let file = dir.path().join("peer.jwks");
    std::fs::write(&file, jwks.to_string()).unwrap();
    let trusted = file.clone();
    let Some(srv) = TestServer::start_with(crate::support::Backend::Sqlite, move |c| {
        c.inline_issuers =
            Some(vec![ctxguard::config::InlineIssuer { issuer: "https://peer.example".into(), jwks_file: trusted }]);
    })
    .await
    else {
        return;
    };
    let key = srv.agent("reader", &["reader"]).await;
    let encoding = jsonwebtoken::EncodingKey::from_ed_der(peer.to_pkcs8_der().unwrap().as_bytes());
    let now = std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).unwrap().as_secs();
    let mut header = jsonwebtoken::Header::new(jsonwebtoken::Algorithm::EdDSA);
    header.typ = Some("ocp-context+jwt".into());
    header.kid = Some("peer-1".into());
    let sealed = |iss: &str, header: &jsonwebtoken::Header, with: &jsonwebtoken::EncodingKey| {
        let claims = json!({"context_id": "peer-ctx", "session": {"history": [{"role": "user", "message": "hi"}]},
            "iss": iss, "iat": now, "exp": now + 60});
        jsonwebtoken::encode(header, &claims, with).unwrap()
    };
    let r = verify_header(&srv, &key, &sealed("https://peer.example", &header, &encoding), None).await;
    assert_eq!(r.status, StatusCode::OK, "{}", r.body);
    assert_eq!((r.body["signed"].as_bool(), r.body["kid"].as_str()), (Some(true), Some("peer-1")));
    assert_eq!(r.body["issuer"], "https://peer.example");
    // The peer's key vouches for the peer only: another iss is refused.
    let r = verify_header(&srv, &key, &sealed(&srv.url, &header, &encoding), None).await;
    r.assert_error(StatusCode::UNAUTHORIZED, "invalid_context");
    assert!(r.body["error"].as_str().unwrap().contains("issuer"), "{}", r.body);
    // Signed by another key under the peer's kid: refused.
    let forger = ed25519_dalek::SigningKey::from_bytes(&[8u8; 32]);
    let forged = jsonwebtoken::EncodingKey::from_ed_der(forger.to_pkcs8_der().unwrap().as_bytes());
    verify_header(&srv, &key, &sealed("https://peer.example", &header, &forged), None)
        .await
        .assert_error(StatusCode::UNAUTHORIZED, "invalid_context");
    // An unknown kid: refused, saying so.
    header.kid = Some("peer-2".into());
    let r = verify_header(&srv, &key, &sealed("https://peer.example", &header, &encoding), None).await;
    r.assert_error(StatusCode::UNAUTHORIZED, "invalid_context");
    assert!(r.body["error"].as_str().unwrap().contains("trusted issuer"), "{}", r.body);
    srv.stop().await;
    // A key set without alg is refused at start-up (a key is used with its own algorithm only).
    std::fs::write(&file, json!({"keys": [{"kty": "OKP", "crv": "Ed25519", "kid": "k", "x": "AAAA"}]}).to_string())
        .unwrap();
    let settings = ctxguard::config::Settings::resolve(ctxguard::config::ConfigOverrides {
        data_dir: Some(dir.path().join("data")),
        inline_issuers: Some(vec![ctxguard::config::InlineIssuer { issuer: "p".into(), jwks_file: file }]),
        ..Default::default()
    })
    .unwrap();
    let err = ctxguard::app::App::open(settings).await.err().expect("refused");
    assert!(err.to_string().contains("has no alg"), "{err:#}");
}
