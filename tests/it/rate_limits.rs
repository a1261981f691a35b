//! Rate limits (docs/anomaly.md): per address and per principal, per route class, with
//! draft-ietf-httpapi-ratelimit-headers fields that say exactly where the client stands;
//! the probes are never limited; the OAuth endpoints refuse in their own error shape.

use reqwest::{Method, StatusCode};

use crate::backend_tests;
use crate::support::{Reply, TestServer};

fn limit(r: &Reply) -> (Option<&str>, Option<&str>) {
    (r.header("ratelimit-policy"), r.header("ratelimit"))
}

backend_tests! {
    async fn per_principal_then_per_address_with_exact_headers(srv) {
        let Some(srv) = TestServer::start_with(srv.backend, |c| c.rate_limit_read = Some("5/3".into())).await else { return };
        let (a, b) = (srv.agent("reader-a", &["reader"]).await, srv.agent("reader-b", &["reader"]).await);
        let policy = "\"read-ip\";q=5;w=60, \"read-principal\";q=3;w=60";
        // A quota of 5 a minute refills one request every 12 s.
        for (remaining, reset) in [(4, 12), (3, 24), (2, 36)] {
            let r = srv.call(Method::GET, "/context", Some(&a), None).await;
            assert_eq!(r.status, StatusCode::OK);
            let expected = format!("\"read-ip\";r={remaining};t={reset}");
            assert_eq!(limit(&r), (Some(policy), Some(expected.as_str())));
        }
        // a's own bucket (3) is empty: refused, and the answer names that bucket.
        let refused = srv.call(Method::GET, "/context", Some(&a), None).await;
        refused.assert_error(StatusCode::TOO_MANY_REQUESTS, "rate_limited");
        let (p, l) = limit(&refused);
        assert_eq!(p, Some(policy));
        assert!(l.unwrap().starts_with("\"read-principal\";r=0;t="), "{l:?}");
        let wait: u64 = refused.header("retry-after").unwrap().parse().unwrap();
        assert!((1..=20).contains(&wait), "{wait}");
        // b has its own bucket, but the address's (5) runs out after its first request.
        assert_eq!(srv.call(Method::GET, "/context", Some(&b), None).await.status, StatusCode::OK);
        let by_address = srv.call(Method::GET, "/context", Some(&b), None).await;
        by_address.assert_error(StatusCode::TOO_MANY_REQUESTS, "rate_limited");
        assert!(limit(&by_address).1.unwrap().starts_with("\"read-ip\";r=0;t="));
        // Other classes have buckets of their own.
        assert_eq!(srv.call(Method::POST, "/context", Some(&srv.admin_key.clone()), Some(crate::support::sample_context())).await.status, StatusCode::CREATED);
        srv.stop().await;
    }

    async fn probes_are_never_limited_and_oauth_refuses_in_its_shape(srv) {
        let Some(srv) = TestServer::start_with(srv.backend, |c| {
            c.rate_limit_other = Some("1/0".into());
            c.rate_limit_token = Some("2/0".into());
        }).await else { return };
        for path in ["/healthz", "/readyz"] {
            for _ in 0..5 {
                let r = srv.call(Method::GET, path, None, None).await;
                assert_eq!(r.status, StatusCode::OK, "{path}");
                assert_eq!(limit(&r), (None, None), "{path}");
            }
        }
        let jwks = || srv.call(Method::GET, "/oauth/jwks", None, None);
        assert_eq!(jwks().await.status, StatusCode::OK);
        jwks().await.assert_error(StatusCode::TOO_MANY_REQUESTS, "rate_limited");
        let (client, secret) = srv.machine_client("bot", &["reader"], None).await;
        for _ in 0..2 {
            assert_eq!(srv.cc_token(&client, &secret, &[]).await.status, StatusCode::OK);
        }
        let refused = srv.cc_token(&client, &secret, &[]).await;
        assert_eq!(refused.status, StatusCode::TOO_MANY_REQUESTS);
        assert_eq!(refused.body["error"], "temporarily_unavailable", "{}", refused.body);
        assert!(refused.header("retry-after").is_some());
        assert_eq!(limit(&refused).0, Some("\"token-ip\";q=2;w=60"));
        srv.stop().await;
    }
}
