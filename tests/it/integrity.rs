//! Signed context versions (docs/integrity.md): every version is served with a
//! signature that verifies against `/oauth/jwks` by the documented algorithm, and a row
//! changed behind the server's back is never served — 409 `integrity_error`, an audit
//! record, and writes on it refused with nothing stored.

use base64::Engine;
use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use reqwest::{Method, StatusCode};
use serde_json::{Value, json};
use sha2::{Digest, Sha256};

use crate::backend_tests;
use crate::support::{TestServer, sample_context};

fn jcs(v: &Value) -> Vec<u8> {
    serde_json_canonicalizer::to_vec(v).unwrap()
}

/// The manifest a version's signature covers, computed from the served context as a
/// third party would (docs/integrity.md "Verifying"), as base64url.
pub fn manifest_b64(ctx: &Value) -> String {
    let mut h = [0u8; 32];
    let history = ctx["session"]["history"].as_array().unwrap();
    for m in history {
        let mut step = Sha256::new();
        step.update(h);
        step.update(Sha256::digest(jcs(m)));
        h = step.finalize().into();
    }
    let mut manifest = json!({
        "context_id": ctx["context_id"],
        "created_at": ctx["created_at"],
        "history_len": history.len(),
        "history_sha256": URL_SAFE_NO_PAD.encode(h),
        "metadata_sha256": URL_SAFE_NO_PAD.encode(Sha256::digest(jcs(&ctx["metadata"]))),
        "updated_at": ctx["updated_at"],
        "version": ctx["version"],
    });
    if !ctx["expires"].is_null() {
        manifest["expires"] = ctx["expires"].clone();
    }
    URL_SAFE_NO_PAD.encode(jcs(&manifest))
}

/// Verifies a served context's signature with the keys of `jwks`.
pub fn verify(ctx: &Value, jwks: &Value) -> Result<Value, String> {
    let signature = ctx["signature"].as_str().ok_or("no signature")?;
    let (protected, sig) = signature.split_once("..").ok_or("not a detached JWS")?;
    let header: Value = serde_json::from_slice(&URL_SAFE_NO_PAD.decode(protected).map_err(|e| e.to_string())?)
        .map_err(|e| e.to_string())?;
    let set: jsonwebtoken::jwk::JwkSet = serde_json::from_value(jwks.clone()).unwrap();
    let kid = header["kid"].as_str().ok_or("no kid")?;
    let jwk = set.find(kid).ok_or(format!("kid {kid} is not published"))?;
    let key = jsonwebtoken::DecodingKey::from_jwk(jwk).map_err(|e| e.to_string())?;
    let alg: jsonwebtoken::Algorithm = serde_json::from_value(header["alg"].clone()).map_err(|e| e.to_string())?;
    let mut validation = jsonwebtoken::Validation::new(alg);
    validation.required_spec_claims.clear();
    validation.validate_exp = false;
    let jws = jsonwebtoken::jws::Jws::<Value> {
        protected: protected.into(),
        payload: manifest_b64(ctx),
        signature: sig.into(),
        _pd: Default::default(),
    };
    jsonwebtoken::jws::decode(&jws, &key, &validation).map_err(|e| e.to_string())?;
    Ok(header)
}

async fn jwks(srv: &TestServer) -> Value {
    srv.call(Method::GET, "/oauth/jwks", None, None).await.body
}

/// A context with two messages, appended to and patched: versions 1 to 3.
async fn three_versions(srv: &TestServer, key: &str) -> String {
    let created = srv
        .create_context(
            key,
            json!({"metadata": {"topic": "billing", "n": 1.50, "nested": {"z": [1e2, "é\u{1F600}"], "a": null}},
                   "session": {"history": [{"role": "user", "message": "hello \"there\"\n"},
                                           {"role": "assistant", "message": "hi"}]},
                   "expires": "2099-01-01T00:00:00Z"}),
        )
        .await;
    let id = created["context_id"].as_str().unwrap().to_string();
    let path = format!("/context/{id}");
    let r = srv
        .call(
            Method::POST,
            &format!("{path}/messages"),
            Some(key),
            Some(json!({"messages": [{"role": "user", "message": "more"}]})),
        )
        .await;
    assert_eq!(r.status, StatusCode::OK, "{}", r.body);
    let r = srv
        .send(
            srv.request(Method::PATCH, &path, Some(key))
                .header("content-type", "application/merge-patch+json")
                .body(r#"{"metadata": {"topic": "support"}}"#),
        )
        .await;
    assert_eq!(r.status, StatusCode::OK, "{}", r.body);
    id
}

async fn get(srv: &TestServer, key: &str, id: &str) -> crate::support::Reply {
    srv.call(Method::GET, &format!("/context/{id}"), Some(key), None).await
}

/// Restarts the server (its caches hold what it wrote; a restart reads the rows).
async fn after_restart(srv: &mut TestServer) {
    srv.restart().await;
}

backend_tests! {
    async fn a_tenant_configured_for_hmac_signs_with_its_own_key(srv) {
        let tenant = srv.create_tenant("clinic").await;
        let nurse = srv.create_principal(&tenant, "nurse", &["writer"]).await;
        let nurse = srv.api_key(&nurse, None, None).await.1;
        let other = srv.agent("writer", &["writer"]).await;
        let err = srv.restart_with(|s| s.hmac_tenants = vec!["nobody".into()]).await.expect_err("unknown tenant");
        assert!(err.to_string().contains("no tenant named \"nobody\""), "{err:#}");
        srv.restart_with(|s| s.hmac_tenants = vec!["clinic".into()]).await.unwrap();
        let id = three_versions(&srv, &nurse).await;
        let served = get(&srv, &nurse, &id).await.body;
        let signature = served["signature"].as_str().unwrap();
        let header: Value = serde_json::from_slice(
            &URL_SAFE_NO_PAD.decode(signature.split_once("..").unwrap().0).unwrap()).unwrap();
        assert_eq!(header["alg"], "HS256");
        assert_eq!(header["kid"], format!("hmac:{tenant}:1"));
        // Never published: the JWKS cannot check it; the exported key can.
        let public = jwks(&srv).await;
        assert!(!public.to_string().contains("hmac:"), "{public}");
        assert!(verify(&served, &public).unwrap_err().contains("not published"));
        let exported: Value = serde_json::from_str(&std::process::Command::new(crate::process::BIN)
            .env_clear().env("PATH", std::env::var_os("PATH").unwrap_or_default())
            .args(["keys", "hmac-export", "--tenant", "clinic", "--data-dir"]).arg(srv.data_dir())
            .args(srv.pg.as_ref().map(|pg| vec!["--database-url".to_string(), pg.url()]).unwrap_or_default())
            .output().map(|o| String::from_utf8(o.stdout).unwrap()).unwrap()).expect("a JWKS");
        assert_eq!(exported["keys"][0]["kty"], "oct");
        assert_eq!(verify(&served, &exported).unwrap()["alg"], "HS256");
        let audit = srv.admin(Method::GET, "/admin/audit?action=keys.export&limit=5", None).await;
        assert!(audit.body.to_string().contains(&tenant), "{}", audit.body);
        // Other tenants keep EdDSA.
        let plain = three_versions(&srv, &other).await;
        verify(&get(&srv, &other, &plain).await.body, &public).unwrap();
        // Read back from the database, checked with the tenant's key; tampering refused.
        after_restart(&mut srv).await;
        assert_eq!(get(&srv, &nurse, &id).await.body, served);
        srv.raw_sql(&format!("UPDATE contexts SET metadata = replace(metadata, 'support', 'evil') WHERE context_id = '{id}'")).await;
        after_restart(&mut srv).await;
        get(&srv, &nurse, &id).await.assert_error(StatusCode::CONFLICT, "integrity_error");
        srv.raw_sql(&format!("UPDATE contexts SET metadata = replace(metadata, 'evil', 'support') WHERE context_id = '{id}'")).await;
        // Taken out of the configuration: new versions are EdDSA, the old still check.
        srv.restart_with(|s| s.hmac_tenants = vec![]).await.unwrap();
        assert_eq!(get(&srv, &nurse, &id).await.body, served);
        let r = srv.call(Method::POST, &format!("/context/{id}/messages"), Some(&nurse),
            Some(json!({"messages": [{"role": "user", "message": "later"}]}))).await;
        assert_eq!(r.status, StatusCode::OK, "{}", r.body);
        verify(&r.body, &public).expect("signed by the key ring again");
    }

    async fn every_version_and_every_answer_carries_a_signature_that_verifies(srv) {
        let key = srv.agent("writer", &["writer"]).await;
        let id = three_versions(&srv, &key).await;
        let keys = jwks(&srv).await;
        for v in 1..=3 {
            let r = srv.call(Method::GET, &format!("/context/{id}/versions/{v}"), Some(&key), None).await;
            assert_eq!(r.status, StatusCode::OK);
            let header = verify(&r.body, &keys).unwrap_or_else(|e| panic!("version {v}: {e}: {}", r.body));
            assert_eq!(header["typ"], "ocp-manifest+json");
        }
        let latest = get(&srv, &key, &id).await.body;
        verify(&latest, &keys).unwrap();
        // Read from the database by a fresh process, not from the writer's cache.
        after_restart(&mut srv).await;
        let fresh = get(&srv, &key, &id).await;
        assert_eq!(fresh.status, StatusCode::OK, "{}", fresh.body);
        assert_eq!(fresh.body, latest);
        // A signature is over this version only: moved to another version, it fails.
        let mut moved = srv.call(Method::GET, &format!("/context/{id}/versions/2"), Some(&key), None).await.body;
        moved["signature"] = latest["signature"].clone();
        assert!(verify(&moved, &keys).is_err());
        // Each message is stored as its canonical JSON (what the history hash covers).
        let first = &latest["session"]["history"][0];
        assert_eq!(serde_json::to_vec(first).unwrap(), jcs(first));
    }

    async fn a_row_changed_behind_the_servers_back_is_never_served(srv) {
        let key = srv.agent("writer", &["writer"]).await;
        let id = three_versions(&srv, &key).await;
        let other = three_versions(&srv, &key).await;
        let mut ok = get(&srv, &key, &id).await.body;
        let cases: [(&str, String, String); 5] = [
            (
                "a message edited",
                format!("UPDATE context_messages SET body = replace(body, 'more', 'MORE') WHERE context_id = '{id}'"),
                format!("UPDATE context_messages SET body = replace(body, 'MORE', 'more') WHERE context_id = '{id}'"),
            ),
            (
                "the metadata edited",
                format!("UPDATE contexts SET metadata = replace(metadata, 'support', 'evil') WHERE context_id = '{id}'"),
                format!("UPDATE contexts SET metadata = replace(metadata, 'evil', 'support') WHERE context_id = '{id}'"),
            ),
            (
                "the expiry moved",
                format!("UPDATE contexts SET expires_at_ms = expires_at_ms + 1000 WHERE context_id = '{id}'"),
                format!("UPDATE contexts SET expires_at_ms = expires_at_ms - 1000 WHERE context_id = '{id}'"),
            ),
            (
                "another context's signature",
                format!(
                    "CREATE TABLE saved_sig AS SELECT signature FROM contexts WHERE context_id = '{id}'; \
                     UPDATE contexts SET signature = (SELECT signature FROM contexts WHERE context_id = '{other}') \
                     WHERE context_id = '{id}'"
                ),
                format!(
                    "UPDATE contexts SET signature = (SELECT signature FROM saved_sig) WHERE context_id = '{id}'; \
                     DROP TABLE saved_sig"
                ),
            ),
            (
                "the signature removed",
                format!(
                    "CREATE TABLE saved_sig AS SELECT signature FROM contexts WHERE context_id = '{id}'; \
                     UPDATE contexts SET signature = NULL WHERE context_id = '{id}'"
                ),
                format!(
                    "UPDATE contexts SET signature = (SELECT signature FROM saved_sig) WHERE context_id = '{id}'; \
                     DROP TABLE saved_sig"
                ),
            ),
        ];
        let messages = format!("SELECT COUNT(*) FROM context_messages WHERE context_id = '{id}'");
        for (what, tamper, restore) in cases {
            srv.raw_sql(&tamper).await;
            after_restart(&mut srv).await;
            let r = get(&srv, &key, &id).await;
            r.assert_error(StatusCode::CONFLICT, "integrity_error");
            assert!(!r.body.to_string().contains("MORE") && !r.body.to_string().contains("evil"), "{what}: {}", r.body);
            // A write on it: refused, storing nothing, when what it would extend is
            // forged (the head's metadata, expiry or signature). A message edited under
            // an intact head is not read by an append (that would make appends cost the
            // whole history): the append extends the signed chain, and every read still
            // refuses the edited message.
            let before = srv.raw_count(&messages).await;
            let append = srv
                .send(srv.request(Method::POST, &format!("/context/{id}/messages"), Some(&key))
                    .header("prefer", "return=minimal")
                    .json(&json!({"messages": [{"role": "user", "message": "on top"}]})))
                .await;
            if what == "a message edited" {
                assert_eq!(append.status, StatusCode::NO_CONTENT, "{what}: {}", append.body);
                assert_eq!(srv.raw_count(&messages).await, before + 1);
                get(&srv, &key, &id).await.assert_error(StatusCode::CONFLICT, "integrity_error");
            } else {
                append.assert_error(StatusCode::CONFLICT, "integrity_error");
                assert_eq!(srv.raw_count(&messages).await, before, "{what}: nothing stored");
            }
            // Nor is it listed as it now reads.
            let listed = srv.call(Method::GET, "/context", Some(&key), None).await;
            if what.contains("metadata") || what.contains("signature") {
                listed.assert_error(StatusCode::CONFLICT, "integrity_error");
            }
            assert!(!listed.body.to_string().contains("evil"), "{what}: {}", listed.body);
            // The other context is untouched.
            assert_eq!(get(&srv, &key, &other).await.status, StatusCode::OK, "{what}");
            srv.raw_sql(&restore).await;
            after_restart(&mut srv).await;
            let restored = get(&srv, &key, &id).await;
            assert_eq!(restored.status, StatusCode::OK, "{what}: restored, served again: {}", restored.body);
            verify(&restored.body, &jwks(&srv).await).unwrap();
            if what != "a message edited" {
                assert_eq!(restored.body, ok, "{what}: exactly as before");
            }
            ok = restored.body;
        }
        // Each failure was recorded and went the anomaly way.
        let audit = srv.admin(Method::GET, "/admin/audit?action=anomaly.detected&limit=100", None).await;
        let found = audit.body["items"].as_array().unwrap().iter()
            .filter(|r| r["reason"].as_str().is_some_and(|s| s.contains("integrity")))
            .count();
        assert!(found >= 10, "a read and a write (or a second read) per case: {}", audit.body);
    }

    async fn an_old_version_edited_is_refused_and_the_digests_a_write_extends_are_checked(srv) {
        let key = srv.agent("writer", &["writer"]).await;
        let id = three_versions(&srv, &key).await;
        // Version 1's metadata snapshot (version 3 has its own).
        srv.raw_sql(&format!(
            "UPDATE context_revisions SET metadata = replace(metadata, 'billing', 'evil') \
             WHERE context_id = '{id}' AND version = 1"
        )).await;
        after_restart(&mut srv).await;
        srv.call(Method::GET, &format!("/context/{id}/versions/1"), Some(&key), None).await
            .assert_error(StatusCode::CONFLICT, "integrity_error");
        assert_eq!(get(&srv, &key, &id).await.status, StatusCode::OK, "the latest version is intact");
        // The running hash a write continues from, replaced by one over forged
        // messages: the write checks it against the signature first.
        srv.raw_sql(&format!(
            "UPDATE contexts SET history_sha256 = 'AAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAA' WHERE context_id = '{id}'"
        )).await;
        after_restart(&mut srv).await;
        srv.call(Method::POST, &format!("/context/{id}/messages"), Some(&key),
                 Some(json!({"messages": [{"role": "user", "message": "x"}]}))).await
            .assert_error(StatusCode::CONFLICT, "integrity_error");
        let version: i64 = srv.raw_count(&format!("SELECT version FROM contexts WHERE context_id = '{id}'")).await;
        assert_eq!(version, 3, "nothing was written");
    }

    async fn signatures_by_a_foreign_key_or_alg_are_refused(srv) {
        let key = srv.agent("writer", &["writer"]).await;
        let id = three_versions(&srv, &key).await;
        let sig = get(&srv, &key, &id).await.body["signature"].as_str().unwrap().to_string();
        let (protected, s) = sig.split_once("..").unwrap();
        let mut header: Value = serde_json::from_slice(&URL_SAFE_NO_PAD.decode(protected).unwrap()).unwrap();
        let forge = |h: &Value| format!("{}..{s}", URL_SAFE_NO_PAD.encode(serde_json::to_vec(h).unwrap()));
        let original = header.clone();
        let mut variants = Vec::new();
        header["alg"] = json!("none");
        variants.push(("alg none", forge(&header), format!("{}..", protected)));
        header = original.clone();
        header["alg"] = json!("HS256");
        variants.push(("alg HS256", forge(&header), String::new()));
        header = original.clone();
        header["kid"] = json!("eddsa-unknown");
        variants.push(("an unknown kid", forge(&header), String::new()));
        header = original.clone();
        header["ctxguard_tenant"] = json!("00000000-0000-4000-8000-000000000000");
        variants.push(("another tenant", forge(&header), String::new()));
        for (what, a, b) in variants {
            for forged in [a, b].into_iter().filter(|f| !f.is_empty()) {
                srv.raw_sql(&format!("UPDATE contexts SET signature = '{forged}' WHERE context_id = '{id}'")).await;
                after_restart(&mut srv).await;
                let r = get(&srv, &key, &id).await;
                assert_eq!(r.status, StatusCode::CONFLICT, "{what}: {}", r.body);
            }
        }
        srv.raw_sql(&format!("UPDATE contexts SET signature = '{sig}' WHERE context_id = '{id}'")).await;
        after_restart(&mut srv).await;
        assert_eq!(get(&srv, &key, &id).await.status, StatusCode::OK);
    }

    // Replicas reload the key ring every few seconds. A version signed on one replica
    // with a key it rotated a moment ago reaches the others first: they must reload
    // and check again, not call it tampered (a 409 and the anomaly path). Each step
    // rotates afresh, so that the replica meets an unknown key on a write, a read and
    // a listing in turn.
    async fn a_version_signed_with_a_key_just_rotated_on_another_replica_is_served(srv) {
        let replica = srv.replica().await;
        let key = srv.agent("writer", &["writer"]).await;
        let on_replica = |method: Method, path: &str| srv.http.request(method, format!("{}{path}", replica.url)).bearer_auth(&key);
        let rotate_and_create = async || {
            // Apart by more than the signer's least time between reloads.
            tokio::time::sleep(std::time::Duration::from_millis(300)).await;
            let r = srv.admin(Method::POST, "/admin/keys/rotate", Some(json!({}))).await;
            assert!(r.status.is_success(), "{}", r.body);
            let kid = r.body["kid"].as_str().unwrap().to_string();
            let created = srv.create_context(&key, sample_context()).await;
            let jwks = jwks(&srv).await;
            assert_eq!(verify(&created, &jwks).unwrap()["kid"], kid.as_str(), "signed with the new key");
            created["context_id"].as_str().unwrap().to_string()
        };

        // A write extending a version signed with a key the replica does not hold yet.
        let id = rotate_and_create().await;
        let r = on_replica(Method::POST, &format!("/context/{id}/messages"))
            .json(&json!({"messages": [{"role": "user", "message": "from the replica"}]}))
            .send()
            .await
            .unwrap();
        assert_eq!(r.status(), StatusCode::OK, "{}", r.text().await.unwrap());
        // A read.
        let id = rotate_and_create().await;
        let r = on_replica(Method::GET, &format!("/context/{id}")).send().await.unwrap();
        assert_eq!(r.status(), StatusCode::OK);
        let served: Value = r.json().await.unwrap();
        assert!(verify(&served, &jwks(&srv).await).is_ok(), "served with its signature");
        // A listing.
        let id = rotate_and_create().await;
        let r = on_replica(Method::GET, "/context?limit=5").send().await.unwrap();
        assert_eq!(r.status(), StatusCode::OK);
        let listed: Value = r.json().await.unwrap();
        assert!(listed.to_string().contains(&id), "{listed}");
        // Nothing was taken for tampering.
        let audit = srv.admin(Method::GET, "/admin/audit?action=anomaly.detected&limit=10", None).await;
        assert_eq!(audit.status, StatusCode::OK);
        assert!(!audit.body.to_string().contains("integrity"), "{}", audit.body);
        replica.stop().await;
    }

    async fn versions_signed_by_a_rotated_or_retired_key_still_verify(srv) {
        let key = srv.agent("writer", &["writer"]).await;
        let id = three_versions(&srv, &key).await;
        let before = get(&srv, &key, &id).await.body;
        let old_kid = verify(&before, &jwks(&srv).await).unwrap()["kid"].as_str().unwrap().to_string();
        let r = srv.admin(Method::POST, "/admin/keys/rotate", Some(json!({}))).await;
        assert!(r.status.is_success(), "{}", r.body);
        // New versions are signed by the new key; old ones keep the old signature.
        let r = srv.call(Method::POST, &format!("/context/{id}/messages"), Some(&key),
                         Some(json!({"messages": [{"role": "user", "message": "after"}]}))).await;
        assert_eq!(r.status, StatusCode::OK);
        let latest = get(&srv, &key, &id).await.body;
        let keys = jwks(&srv).await;
        assert_ne!(verify(&latest, &keys).unwrap()["kid"], old_kid);
        let v3 = srv.call(Method::GET, &format!("/context/{id}/versions/3"), Some(&key), None).await.body;
        assert_eq!(verify(&v3, &keys).unwrap()["kid"], old_kid, "published while tokens may still use it");
        // Past its publication the old key leaves the JWKS, but the server still
        // checks (and serves) what it signed.
        srv.raw_sql(&format!("UPDATE signing_keys SET publish_until_ms = 1 WHERE kid = '{old_kid}'")).await;
        after_restart(&mut srv).await;
        let keys = jwks(&srv).await;
        let v3 = srv.call(Method::GET, &format!("/context/{id}/versions/3"), Some(&key), None).await;
        assert_eq!(v3.status, StatusCode::OK, "{}", v3.body);
        assert!(verify(&v3.body, &keys).unwrap_err().contains("not published"));
    }

    async fn versions_stored_before_signing_are_signed_at_start_up(srv) {
        let key = srv.agent("writer", &["writer"]).await;
        let id = three_versions(&srv, &key).await;
        let signed = get(&srv, &key, &id).await.body;
        // As an older release left them: no signatures, no running hashes, messages
        // with their members in declaration order, and no record of the signing.
        srv.raw_sql(&format!(
            "UPDATE contexts SET signature = NULL, history_sha256 = NULL, metadata_sha256 = NULL; \
             UPDATE context_revisions SET signature = NULL; \
             UPDATE context_messages SET \
               body = '{{\"role\":\"user\",' || substr(replace(body, ',\"role\":\"user\"}}', '}}'), 2) \
               WHERE context_id = '{id}' AND position = 2; \
             DELETE FROM signing_state"
        )).await;
        let stored: String = behind(&srv, &format!(
            "SELECT body FROM context_messages WHERE context_id = '{id}' AND position = 2")).await;
        assert!(stored.starts_with("{\"role\""), "{stored}");
        after_restart(&mut srv).await;
        let fresh = get(&srv, &key, &id).await;
        assert_eq!(fresh.status, StatusCode::OK, "{}", fresh.body);
        verify(&fresh.body, &jwks(&srv).await).unwrap();
        let mut a = fresh.body.clone();
        let mut b = signed.clone();
        a["signature"] = Value::Null;
        b["signature"] = Value::Null;
        assert_eq!(a, b, "the same context, signed again");
        for v in 1..=3 {
            let r = srv.call(Method::GET, &format!("/context/{id}/versions/{v}"), Some(&key), None).await;
            verify(&r.body, &jwks(&srv).await).unwrap_or_else(|e| panic!("version {v}: {e}"));
        }
        let stored: String = behind(&srv, &format!(
            "SELECT body FROM context_messages WHERE context_id = '{id}' AND position = 2")).await;
        assert!(stored.starts_with("{\"message\""), "rewritten canonical: {stored}");
        // Once done, a version without a signature is an error, never signed afresh.
        srv.raw_sql(&format!("UPDATE contexts SET signature = NULL WHERE context_id = '{id}'")).await;
        after_restart(&mut srv).await;
        get(&srv, &key, &id).await.assert_error(StatusCode::CONFLICT, "integrity_error");
    }
}

/// One text value read behind the server's back.
async fn behind(srv: &TestServer, query: &str) -> String {
    srv.raw_text(query).await
}
