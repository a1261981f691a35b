//! Anomaly response end to end (docs/anomaly.md): failed authentications lock an
//! address or a principal out (429 + Retry-After, doubling, held across a restart,
//! lifted by an administrator); a flood of writes suspends its principal (its token and
//! API key refused on the next request, lifting restores the key), posted to a signed
//! webhook that is retried.

use std::net::{IpAddr, Ipv4Addr};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use ctxguard::domain::Timestamp;
use ctxguard::domain::anomaly::Subject;
use reqwest::{Method, StatusCode};
use serde_json::Value;

use crate::backend_tests;
use crate::support::{Backend, Reply, TestServer, sample_context};

/// Another address on this host: requests from it are not the locked-out ones.
const OTHER: IpAddr = IpAddr::V4(Ipv4Addr::new(127, 0, 0, 2));
const HERE: IpAddr = IpAddr::V4(Ipv4Addr::LOCALHOST);

fn from_other_address() -> reqwest::Client {
    reqwest::Client::builder().local_address(OTHER).build().unwrap()
}

/// `srv`'s request, sent from [`OTHER`].
async fn elsewhere(srv: &TestServer, method: Method, path: &str, key: &str) -> Reply {
    let rb = from_other_address().request(method, format!("{}{path}", srv.url)).bearer_auth(key);
    srv.send(rb).await
}

/// Day-long windows: a test's events never straddle a window boundary (fixed windows
/// start at multiples of their length), which would split their count.
fn day_windows(c: &mut ctxguard::config::ConfigOverrides) {
    c.anomaly_auth_window_secs = Some(86_400);
    c.anomaly_writes_window_secs = Some(86_400);
}

fn retry_after(r: &Reply) -> u64 {
    r.header("retry-after").expect("Retry-After").parse().expect("seconds")
}

async fn anomaly_records(srv: &TestServer, action: &str) -> Vec<Value> {
    let db = srv.database().await;
    for _ in 0..100 {
        let records = db.audit_records(1, 100_000).await.unwrap();
        let found: Vec<Value> =
            records.into_iter().filter(|r| r.action == action).map(|r| serde_json::to_value(r).unwrap()).collect();
        if !found.is_empty() {
            return found;
        }
        tokio::time::sleep(Duration::from_millis(30)).await;
    }
    panic!("no {action} record");
}

backend_tests! {
    async fn failed_authentications_lock_the_address_out_until_lifted(srv) {
        let Some(mut srv) = TestServer::start_with(srv.backend, |c| {
            day_windows(c);
            c.anomaly_auth_failures_per_source = Some(3);
            c.anomaly_lockout_secs = Some(60);
        }).await else { return };
        let admin = srv.admin_key.clone();
        let tenant_admin = srv.agent("tenant-admin", &["admin"]).await;
        for _ in 0..3 {
            srv.call(Method::GET, "/context", Some("ctxg_forged"), None).await.assert_error(StatusCode::UNAUTHORIZED, "invalid_token");
        }
        // Locked out: even a valid key is not looked at from this address.
        let locked = srv.call(Method::GET, "/admin/tenants", Some(&admin), None).await;
        locked.assert_error(StatusCode::TOO_MANY_REQUESTS, "locked_out");
        assert!((1..=60).contains(&retry_after(&locked)), "{:?}", locked.header("retry-after"));
        let token = srv.form("/oauth/token", &[("grant_type", "client_credentials"), ("client_id", "x")], Some(("x", "y"))).await;
        assert_eq!((token.status, token.body["error"].as_str()), (StatusCode::TOO_MANY_REQUESTS, Some("temporarily_unavailable")));
        assert!(token.header("retry-after").is_some());

        // Another address is not affected, and sees the lockout.
        let listed = elsewhere(&srv, Method::GET, "/admin/anomalies", &admin).await;
        assert_eq!(listed.status, StatusCode::OK, "{}", listed.body);
        assert_eq!(listed.body["lockouts"][0]["subject"], "ip:127.0.0.1", "{}", listed.body);
        assert_eq!(listed.body["lockouts"][0]["strikes"], 1);
        let record = &anomaly_records(&srv, "anomaly.lockout").await[0];
        assert_eq!((record["target"].as_str(), record["decision"].as_str(), record["channel"].as_str()), (Some("ip:127.0.0.1"), Some("deny"), Some("system")));
        assert!(record["reason"].as_str().unwrap().contains("3 failed authentications"), "{record}");

        let metrics = srv.http.get(&srv.metrics_url).send().await.unwrap().text().await.unwrap();
        for line in [
            "ctxguard_anomaly_lockouts_total{rule=\"auth_failures_per_source\"}",
            "ctxguard_auth_failures_total{reason=\"unknown, revoked or expired API key\"}",
        ] {
            assert!(metrics.contains(line), "{line} in\n{metrics}");
        }

        // The lockout is in the database: a restart keeps it.
        srv.restart().await;
        srv.call(Method::GET, "/admin/tenants", Some(&admin), None).await.assert_error(StatusCode::TOO_MANY_REQUESTS, "locked_out");

        // Only the platform operator lifts an address's lockout.
        let path = "/admin/lockouts/ip:127.0.0.1";
        elsewhere(&srv, Method::DELETE, path, &tenant_admin).await.assert_error(StatusCode::FORBIDDEN, "forbidden");
        srv.call(Method::GET, "/admin/tenants", Some(&admin), None).await.assert_error(StatusCode::TOO_MANY_REQUESTS, "locked_out");
        assert_eq!(elsewhere(&srv, Method::DELETE, path, &admin).await.status, StatusCode::NO_CONTENT);
        assert_eq!(srv.call(Method::GET, "/admin/tenants", Some(&admin), None).await.status, StatusCode::OK);
        elsewhere(&srv, Method::DELETE, path, &admin).await.assert_error(StatusCode::NOT_FOUND, "not_found");
        elsewhere(&srv, Method::DELETE, "/admin/lockouts/nonsense", &admin).await.assert_error(StatusCode::NOT_FOUND, "not_found");
        let lifts: Vec<(String, String)> = anomaly_records(&srv, "anomaly.lift").await.iter()
            .map(|r| (r["target"].as_str().unwrap().to_string(), r["decision"].as_str().unwrap().to_string())).collect();
        let target = "ip:127.0.0.1".to_string();
        assert_eq!(lifts, [(target.clone(), "deny".into()), (target.clone(), "allow".into()), (target, "deny".into())], "the tenant admin's, the operator's, the second");
        srv.stop().await;
    }

    async fn a_lockout_and_a_suspension_reach_the_other_replica(srv) {
        if srv.backend != Backend::Postgres {
            return;
        }
        let Some(srv) = TestServer::start_with(srv.backend, |c| {
            day_windows(c);
            c.anomaly_auth_failures_per_source = Some(4);
            c.anomaly_writes_per_principal = Some(6);
        }).await else { return };
        let replica = srv.replica().await;
        let at_replica = |key: String| {
            let url = format!("{}/context", replica.url);
            let http = srv.http.clone();
            async move { http.get(url).bearer_auth(key).send().await.unwrap().status() }
        };
        // Writes split over both replicas add up: three here, three there.
        let writer = srv.agent("split-writer", &["writer"]).await;
        for _ in 0..3 {
            assert_eq!(srv.call(Method::POST, "/context", Some(&writer), Some(sample_context())).await.status, StatusCode::CREATED);
            let there = srv.http.post(format!("{}/context", replica.url)).bearer_auth(&writer).json(&sample_context()).send().await.unwrap();
            assert_eq!(there.status(), StatusCode::CREATED);
        }
        let started = std::time::Instant::now();
        let mut suspended = false;
        while !suspended && started.elapsed() < Duration::from_secs(10) {
            tokio::time::sleep(Duration::from_millis(100)).await;
            suspended = at_replica(writer.clone()).await == StatusCode::UNAUTHORIZED;
        }
        // Each replica adds its count to the database every second; the suspension
        // then reaches the other replica's credential cache through the change counters.
        assert!(suspended, "six writes across two replicas suspend the writer");
        eprintln!("suspended after {:?}", started.elapsed());

        // Failures split over both replicas add up too, and the lockout holds on both.
        for _ in 0..2 {
            srv.call(Method::GET, "/context", Some("forged"), None).await.assert_error(StatusCode::UNAUTHORIZED, "invalid_token");
            assert_eq!(at_replica("forged".into()).await, StatusCode::UNAUTHORIZED);
        }
        let mut locked = (false, false);
        for _ in 0..40 {
            locked = (
                srv.call(Method::GET, "/context", Some(&srv.admin_key), None).await.status == StatusCode::TOO_MANY_REQUESTS,
                at_replica(srv.admin_key.clone()).await == StatusCode::TOO_MANY_REQUESTS,
            );
            if locked == (true, true) {
                break;
            }
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
        assert_eq!(locked, (true, true), "locked out on both replicas");
        replica.stop().await;
        srv.stop().await;
    }

    async fn each_consecutive_lockout_lasts_twice_as_long(srv) {
        let Some(srv) = TestServer::start_with(srv.backend, |c| {
            day_windows(c);
            c.anomaly_auth_failures_per_source = Some(2);
            c.anomaly_lockout_secs = Some(1);
            c.anomaly_lockout_max_secs = Some(60);
        }).await else { return };
        let db = srv.database().await;
        for _ in 0..2 {
            srv.call(Method::GET, "/context", Some("forged"), None).await.assert_error(StatusCode::UNAUTHORIZED, "invalid_token");
        }
        let first = db.lockout(&Subject::Source(HERE)).await.unwrap().expect("locked out");
        assert_eq!((first.strikes, first.until.millis() - first.since.millis()), (1, 1000));
        srv.call(Method::GET, "/context", Some(&srv.admin_key), None).await.assert_error(StatusCode::TOO_MANY_REQUESTS, "locked_out");
        tokio::time::sleep(Duration::from_millis(1100)).await;
        // Served again; the next failure (still over the threshold) locks for 2 s.
        assert_eq!(srv.call(Method::GET, "/context", Some(&srv.admin_key), None).await.status, StatusCode::OK);
        srv.call(Method::GET, "/context", Some("forged"), None).await.assert_error(StatusCode::UNAUTHORIZED, "invalid_token");
        let second = db.lockout(&Subject::Source(HERE)).await.unwrap().unwrap();
        assert_eq!((second.strikes, second.until.millis() - second.since.millis()), (2, 2000));
        assert!(second.is_active_at(Timestamp::now()));
        srv.stop().await;
    }

    async fn failed_sign_ins_lock_the_user_out_not_others(srv) {
        let Some(srv) = TestServer::start_with(srv.backend, |c| {
            day_windows(c);
            c.anomaly_auth_failures_per_source = Some(0);
            c.anomaly_auth_failures_per_principal = Some(3);
        }).await else { return };
        let pat = crate::sign_in::user_in(&srv, "default", "pat").await;
        crate::sign_in::user_in(&srv, "default", "sam").await;
        let client = crate::oauth_flow::register_public_native(&srv).await;
        for _ in 0..3 {
            let (status, _) = crate::sign_in::attempt(&srv, &client, "default", "pat", "wrong").await;
            assert_eq!(status, StatusCode::UNAUTHORIZED);
        }
        // The right password now meets the lockout; the page says so.
        let (status, page) = crate::sign_in::attempt(&srv, &client, "default", "pat", crate::sign_in::PASSWORD).await;
        assert_eq!(status, StatusCode::TOO_MANY_REQUESTS);
        assert!(page.contains("Too many failed sign-ins"), "{page}");
        // Another user signs in from the same address.
        assert_eq!(crate::sign_in::attempt(&srv, &client, "default", "sam", crate::sign_in::PASSWORD).await.0, StatusCode::SEE_OTHER);
        // An administrator of the tenant lifts it.
        let tenant_admin = srv.agent("tenant-admin", &["admin"]).await;
        let listed = srv.call(Method::GET, "/admin/anomalies", Some(&tenant_admin), None).await;
        assert_eq!(listed.body["lockouts"][0]["subject"], format!("principal:{pat}"), "{}", listed.body);
        let lift = srv.call(Method::DELETE, &format!("/admin/lockouts/principal:{pat}"), Some(&tenant_admin), None).await;
        assert_eq!(lift.status, StatusCode::NO_CONTENT, "{}", lift.body);
        assert_eq!(crate::sign_in::attempt(&srv, &client, "default", "pat", crate::sign_in::PASSWORD).await.0, StatusCode::SEE_OTHER);
        srv.stop().await;
    }

    async fn a_flood_of_writes_suspends_the_principal_until_lifted(srv) {
        let hook = Receiver::start(1).await;
        let url = hook.url.clone();
        let Some(srv) = TestServer::start_with(srv.backend, |c| {
            day_windows(c);
            c.anomaly_writes_per_principal = Some(5);
            c.anomaly_webhook_url = Some(url);
            c.anomaly_webhook_secret = Some(WEBHOOK_SECRET.into());
        }).await else { return };
        let (client, secret) = srv.machine_client("bot", &["writer"], None).await;
        let token = srv.cc_token(&client, &secret, &[]).await.body["access_token"].as_str().unwrap().to_string();
        let me = srv.call(Method::POST, "/context", Some(&token), Some(sample_context())).await;
        assert_eq!(me.status, StatusCode::CREATED);
        let bot = principal_of(&token);
        let (_, key) = srv.api_key(&bot, None, None).await;
        let other = srv.agent("bystander", &["writer"]).await;
        for _ in 0..4 {
            // The fifth write reaches the threshold; it still goes ahead.
            assert_eq!(srv.call(Method::POST, "/context", Some(&key), Some(sample_context())).await.status, StatusCode::CREATED);
        }
        // Both of the principal's credentials are refused on the next request.
        let refused = srv.call(Method::POST, "/context", Some(&key), Some(sample_context())).await;
        refused.assert_error(StatusCode::UNAUTHORIZED, "invalid_token");
        assert!(refused.body["error"].as_str().unwrap().contains("suspended"), "{}", refused.body);
        srv.call(Method::GET, "/context", Some(&token), None).await.assert_error(StatusCode::UNAUTHORIZED, "invalid_token");
        let again = srv.cc_token(&client, &secret, &[]).await;
        assert_eq!(again.body["error"], "unauthorized_client", "{}", again.body);
        // Nobody else is touched.
        assert_eq!(srv.call(Method::POST, "/context", Some(&other), Some(sample_context())).await.status, StatusCode::CREATED);

        let listed = srv.admin(Method::GET, "/admin/anomalies", None).await;
        assert_eq!(listed.body["suspensions"][0]["principal"], bot.as_str(), "{}", listed.body);
        assert!(listed.body["suspensions"][0]["reason"].as_str().unwrap().contains("writes_per_principal"));
        let record = &anomaly_records(&srv, "anomaly.auto_revoke").await[0];
        assert_eq!((record["target"].as_str(), record["principal"].as_str()), (Some(format!("principal:{bot}").as_str()), Some(bot.as_str())));

        let metrics = srv.http.get(&srv.metrics_url).send().await.unwrap().text().await.unwrap();
        for line in [
            "ctxguard_anomaly_auto_revocations_total{rule=\"writes_per_principal\"}",
            "ctxguard_authz_decisions_total{result=\"allow\"}",
        ] {
            assert!(metrics.contains(line), "{line} in\n{metrics}");
        }

        // The webhook got it, signed, after one refused delivery.
        let deliveries = hook.wait_for(2).await;
        assert_eq!(deliveries[0].body, deliveries[1].body, "a retry sends the same notice");
        for d in &deliveries {
            assert!(d.signature_valid(), "signature {:?}", d.signature);
        }
        let notice: Value = serde_json::from_slice(&deliveries[1].body).unwrap();
        assert_eq!((notice["event"].as_str(), notice["rule"].as_str()), (Some("anomaly.auto_revoke"), Some("writes_per_principal")));
        assert_eq!(notice["subject"], format!("principal:{bot}"));

        // Lifting: the API key works again; the revoked token stays revoked.
        let path = format!("/admin/principals/{bot}/suspension");
        assert_eq!(srv.admin(Method::DELETE, &path, None).await.status, StatusCode::NO_CONTENT);
        assert_eq!(srv.call(Method::GET, "/context", Some(&key), None).await.status, StatusCode::OK);
        srv.call(Method::GET, "/context", Some(&token), None).await.assert_error(StatusCode::UNAUTHORIZED, "invalid_token");
        assert_eq!(srv.cc_token(&client, &secret, &[]).await.status, StatusCode::OK);
        assert_eq!(srv.admin(Method::DELETE, &path, None).await.status, StatusCode::NO_CONTENT, "lifting twice is no error");
        let unknown = format!("/admin/principals/{}/suspension", uuid::Uuid::new_v4());
        srv.admin(Method::DELETE, &unknown, None).await.assert_error(StatusCode::NOT_FOUND, "not_found");
        srv.stop().await;
    }

    async fn a_context_that_does_not_read_back_is_an_integrity_anomaly(srv) {
        let hook = Receiver::start(0).await;
        let url = hook.url.clone();
        let Some(srv) = TestServer::start_with(srv.backend, |c| {
            c.context_cache_mb = Some(0);
            c.anomaly_webhook_url = Some(url);
            c.anomaly_webhook_secret = Some(WEBHOOK_SECRET.into());
        }).await else { return };
        let key = srv.agent("reader", &["writer"]).await;
        let id = srv.create_context(&key, sample_context()).await["context_id"].as_str().unwrap().to_string();
        srv.raw_sql(&format!("UPDATE contexts SET metadata = '{{not json' WHERE context_id = '{id}'")).await;
        let read = srv.call(Method::GET, &format!("/context/{id}"), Some(&key), None).await;
        read.assert_error(StatusCode::INTERNAL_SERVER_ERROR, "store_corrupt");
        let record = &anomaly_records(&srv, "anomaly.detected").await[0];
        assert_eq!((record["decision"].as_str(), record["target"].clone()), (Some("fail"), Value::String(format!("context:{id}"))));
        assert!(record["reason"].as_str().unwrap().contains("rule integrity"), "{record}");
        let notice: Value = serde_json::from_slice(&hook.wait_for(1).await[0].body).unwrap();
        assert_eq!((notice["event"].as_str(), notice["rule"].as_str()), (Some("anomaly.detected"), Some("integrity")));
        srv.stop().await;
    }

    async fn the_operator_is_flagged_not_suspended(srv) {
        let Some(srv) = TestServer::start_with(srv.backend, |c| {
            day_windows(c);
            c.anomaly_writes_per_principal = Some(2);
        }).await else { return };
        for _ in 0..3 {
            assert_eq!(srv.admin(Method::POST, "/context", Some(sample_context())).await.status, StatusCode::CREATED);
        }
        let record = &anomaly_records(&srv, "anomaly.detected").await[0];
        assert_eq!(record["decision"], "allow");
        assert!(record["reason"].as_str().unwrap().contains("platform operator"), "{record}");
        srv.stop().await;
    }
}

/// The principal (`sub`) an access token names.
fn principal_of(token: &str) -> String {
    let payload = token.split('.').nth(1).unwrap();
    let bytes = base64::Engine::decode(&base64::engine::general_purpose::URL_SAFE_NO_PAD, payload).unwrap();
    serde_json::from_slice::<Value>(&bytes).unwrap()["sub"].as_str().unwrap().to_string()
}

const WEBHOOK_SECRET: &str = "a webhook secret of at least 32 characters";

struct Delivery {
    body: Vec<u8>,
    signature: String,
}

impl Delivery {
    /// Checks `t=…,v1=…` as a receiver would: HMAC-SHA256 over "<t>.<body>".
    fn signature_valid(&self) -> bool {
        use hmac::{KeyInit, Mac};
        let Some((t, v1)) = self.signature.split_once(",v1=") else { return false };
        let t = t.trim_start_matches("t=");
        let mut mac = <hmac::Hmac<sha2::Sha256> as KeyInit>::new_from_slice(WEBHOOK_SECRET.as_bytes()).unwrap();
        mac.update(format!("{t}.").as_bytes());
        mac.update(&self.body);
        let Ok(tag) =
            (0..v1.len()).step_by(2).map(|i| u8::from_str_radix(&v1[i..i + 2], 16)).collect::<Result<Vec<u8>, _>>()
        else {
            return false;
        };
        mac.verify_slice(&tag).is_ok()
    }
}

/// A webhook receiver that refuses its first `refuse` deliveries with a 500.
struct Receiver {
    url: String,
    got: Arc<Mutex<Vec<Delivery>>>,
}

impl Receiver {
    async fn start(refuse: usize) -> Receiver {
        let got: Arc<Mutex<Vec<Delivery>>> = Arc::default();
        let seen = got.clone();
        let app = axum::Router::new().route(
            "/hook",
            axum::routing::post(move |headers: axum::http::HeaderMap, body: axum::body::Bytes| {
                let seen = seen.clone();
                async move {
                    let signature =
                        headers.get("ctxguard-signature").and_then(|v| v.to_str().ok()).unwrap_or("").to_string();
                    let mut seen = seen.lock().unwrap();
                    seen.push(Delivery { body: body.to_vec(), signature });
                    if seen.len() <= refuse { StatusCode::INTERNAL_SERVER_ERROR } else { StatusCode::NO_CONTENT }
                }
            }),
        );
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let url = format!("http://{}/hook", listener.local_addr().unwrap());
        tokio::spawn(async move { axum::serve(listener, app).await.unwrap() });
        Receiver { url, got }
    }

    async fn wait_for(&self, n: usize) -> Vec<Delivery> {
        for _ in 0..200 {
            {
                let mut got = self.got.lock().unwrap();
                if got.len() >= n {
                    return std::mem::take(&mut *got);
                }
            }
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
        panic!("the webhook received fewer than {n} deliveries");
    }
}
