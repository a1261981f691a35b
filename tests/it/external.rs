//! Tokens from a trusted external issuer: a fake IdP on loopback publishes discovery
//! and a JWKS; its tokens are mapped to principals, roles and scopes, its keys are
//! refreshed on an unknown `kid` — no more often than configured.

use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};

use ed25519_dalek::pkcs8::EncodePrivateKey;
use jsonwebtoken::jwk::{Jwk, JwkSet};
use jsonwebtoken::{Algorithm, DecodingKey, EncodingKey, Header};
use reqwest::{Method, StatusCode};
use serde_json::{Value, json};

use crate::support::{Backend, TestServer, sample_context};

struct Key {
    kid: String,
    encoding: EncodingKey,
    jwk: Jwk,
}

fn new_key(kid: &str) -> Key {
    let mut seed = [0u8; 32];
    rand::fill(&mut seed[..]);
    let sk = ed25519_dalek::SigningKey::from_bytes(&seed);
    let encoding = EncodingKey::from_ed_der(sk.to_pkcs8_der().unwrap().as_bytes());
    let mut jwk =
        Jwk::from_decoding_key(&DecodingKey::from_ed_der(&sk.verifying_key().to_bytes()), Some(Algorithm::EdDSA))
            .unwrap();
    jwk.common.key_id = Some(kid.to_string());
    Key { kid: kid.to_string(), encoding, jwk }
}

struct FakeIdp {
    url: String,
    key: Arc<Mutex<Key>>,
    jwks_fetches: Arc<AtomicUsize>,
}

impl FakeIdp {
    async fn start() -> FakeIdp {
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let url = format!("http://{}", listener.local_addr().unwrap());
        let key = Arc::new(Mutex::new(new_key("k1")));
        let fetches = Arc::new(AtomicUsize::new(0));
        let (k, f, u) = (key.clone(), fetches.clone(), url.clone());
        let app = axum::Router::new()
            .route(
                "/.well-known/openid-configuration",
                axum::routing::get(move || {
                    let u = u.clone();
                    async move { axum::Json(json!({"issuer": u, "jwks_uri": format!("{u}/jwks")})) }
                }),
            )
            .route(
                "/jwks",
                axum::routing::get(move || {
                    f.fetch_add(1, Ordering::SeqCst);
                    let set = JwkSet { keys: vec![k.lock().unwrap().jwk.clone()] };
                    async move { axum::Json(set) }
                }),
            );
        tokio::spawn(async move { axum::serve(listener, app).await.unwrap() });
        FakeIdp { url, key, jwks_fetches: fetches }
    }

    fn rotate(&self, kid: &str) {
        *self.key.lock().unwrap() = new_key(kid);
    }

    fn token(&self, claims: Value) -> String {
        let key = self.key.lock().unwrap();
        let mut h = Header::new(Algorithm::EdDSA);
        h.kid = Some(key.kid.clone());
        jsonwebtoken::encode(&h, &claims, &key.encoding).unwrap()
    }

    fn claims(&self, aud: &str, extra: Value) -> Value {
        let now = chrono::Utc::now().timestamp();
        let mut c = json!({"iss": self.url, "aud": aud, "sub": "ext-agent-7", "iat": now, "exp": now + 300,
                           "roles": ["writer", "admin"], "scope": "context:read context:write"});
        for (k, v) in extra.as_object().unwrap() {
            c[k] = v.clone();
        }
        c
    }
}

async fn server_trusting(idp: &FakeIdp, min_refresh: u64) -> TestServer {
    let issuer = ctxguard::authn::external::ExternalIssuerConfig {
        issuer: idp.url.clone(),
        audience: None,
        mcp_audience: None,
        tenant: "default".into(),
        subject_claim: None,
        roles_claim: Some("roles".into()),
        default_roles: vec!["reader".into()],
        allowed_roles: None,
        principal_kind: None,
        jwks_refresh_min_secs: Some(min_refresh),
    };
    TestServer::start_with(Backend::Sqlite, |c| c.external_issuers = Some(vec![issuer])).await.unwrap()
}

#[tokio::test]
async fn external_tokens_map_to_principals_roles_and_scopes() {
    let idp = FakeIdp::start().await;
    let srv = server_trusting(&idp, 0).await;
    let token = idp.token(idp.claims(&srv.url, json!({})));
    let created = srv.create_context(&token, sample_context()).await;
    let path = format!("/context/{}", created["context_id"].as_str().unwrap());
    // The same subject in a later token owns the context (a writer may change its own).
    let again = idp.token(idp.claims(&srv.url, json!({"iat": chrono::Utc::now().timestamp()})));
    let r = srv.call(Method::PATCH, &path, Some(&again), Some(json!({"metadata": {"by": "ext"}}))).await;
    assert_eq!(r.status, StatusCode::OK, "{}", r.body);
    // "admin" is not an allowed role for this issuer: dropped.
    srv.call(Method::GET, "/admin/principals", Some(&token), None)
        .await
        .assert_error(StatusCode::FORBIDDEN, "forbidden");
    // Scopes come from the token: no inject scope.
    srv.call(
        Method::POST,
        &format!("{path}/messages"),
        Some(&token),
        Some(json!({"messages": [{"role": "user", "message": "x"}]})),
    )
    .await
    .assert_error(StatusCode::FORBIDDEN, "insufficient_scope");
    // Without a roles claim the default roles apply (reader: cannot create).
    let reader = idp.token(idp.claims(&srv.url, json!({"roles": null})));
    srv.call(Method::POST, "/context", Some(&reader), Some(sample_context()))
        .await
        .assert_error(StatusCode::FORBIDDEN, "forbidden");
    assert_eq!(srv.call(Method::GET, &path, Some(&reader), None).await.status, StatusCode::OK);

    let now = chrono::Utc::now().timestamp();
    let hs = jsonwebtoken::encode(
        &{
            let mut h = Header::new(Algorithm::HS256);
            h.kid = Some("k1".into());
            h
        },
        &idp.claims(&srv.url, json!({})),
        &EncodingKey::from_secret(b"secret"),
    )
    .unwrap();
    let mut other_issuer = idp.claims(&srv.url, json!({}));
    other_issuer["iss"] = json!("https://unknown-idp.example");
    for (what, t) in [
        ("wrong audience", idp.token(idp.claims("https://other.example", json!({})))),
        ("expired", idp.token(idp.claims(&srv.url, json!({"exp": now - 120})))),
        ("no subject", idp.token(idp.claims(&srv.url, json!({"sub": ""})))),
        ("HS256", hs),
        ("unknown issuer", idp.token(other_issuer)),
    ] {
        let r = srv.call(Method::GET, "/context", Some(&t), None).await;
        assert_eq!(r.status, StatusCode::UNAUTHORIZED, "{what}: {}", r.body);
        assert_eq!(r.body["code"], "invalid_token", "{what}");
    }

    // The IdP rotates its key: the unknown kid triggers a JWKS refresh.
    idp.rotate("k2");
    let rotated = idp.token(idp.claims(&srv.url, json!({})));
    assert_eq!(srv.call(Method::GET, "/context", Some(&rotated), None).await.status, StatusCode::OK);
    srv.stop().await;
}

#[tokio::test]
async fn jwks_refresh_is_rate_limited() {
    let idp = FakeIdp::start().await;
    let srv = server_trusting(&idp, 3600).await;
    let first = idp.token(idp.claims(&srv.url, json!({})));
    assert_eq!(srv.call(Method::GET, "/context", Some(&first), None).await.status, StatusCode::OK);
    assert_eq!(idp.jwks_fetches.load(Ordering::SeqCst), 1);
    idp.rotate("k9");
    for _ in 0..5 {
        let t = idp.token(idp.claims(&srv.url, json!({})));
        assert_eq!(srv.call(Method::GET, "/context", Some(&t), None).await.status, StatusCode::UNAUTHORIZED);
    }
    assert_eq!(idp.jwks_fetches.load(Ordering::SeqCst), 1, "unknown kids must not hammer the issuer");
    srv.stop().await;
}

/// An external token is good for the one resource its audience names: a token for the
/// context API is refused at `/mcp` and the other way round, as for our own tokens.
#[tokio::test]
async fn external_tokens_are_bound_to_one_resource() {
    let idp = FakeIdp::start().await;
    let srv = server_trusting(&idp, 0).await;
    let mcp = format!("{}/mcp", srv.url);
    let for_api = idp.token(idp.claims(&srv.url, json!({})));
    let for_mcp = idp.token(idp.claims(&mcp, json!({})));
    let initialize = json!({"jsonrpc": "2.0", "id": 1, "method": "initialize", "params": {
        "protocolVersion": "2025-06-18", "capabilities": {}, "clientInfo": {"name": "t", "version": "1"}}});
    let (status, _, _) = crate::mcp::rpc(&srv, Some(&for_api), &initialize, &[]).await;
    assert_eq!(status, StatusCode::UNAUTHORIZED, "a context-API token is refused at /mcp");
    let (status, _, answer) = crate::mcp::rpc(&srv, Some(&for_mcp), &initialize, &[]).await;
    assert_eq!(status, StatusCode::OK, "{answer:?}");
    let r = srv.call(Method::GET, "/context", Some(&for_mcp), None).await;
    assert_eq!((r.status, r.body["code"].as_str()), (StatusCode::UNAUTHORIZED, Some("invalid_token")), "{}", r.body);
    assert_eq!(srv.call(Method::GET, "/context", Some(&for_api), None).await.status, StatusCode::OK);
    srv.stop().await;
}
