//! Encryption at rest of configured fields (docs/encryption.md): the values never reach
//! the database files in plaintext, reads give them back (signatures over the
//! plaintext), a sealed value moved to another row, version, context or tenant does not
//! open, and a wrong KEK stops the start with nothing touched.

use reqwest::{Method, StatusCode};
use serde_json::{Value, json};

use crate::backend_tests;
use crate::support::{Backend, TestServer};

const POINTERS: [&str; 3] = ["/metadata/ssn", "/metadata/card/number", "/session/history/*/message"];

fn secret(what: &str) -> String {
    format!("{what}-{}", uuid::Uuid::new_v4().simple())
}

async fn sealed_server(backend: Backend) -> Option<TestServer> {
    TestServer::start_with(backend, |c| c.encrypt_pointers = Some(POINTERS.iter().map(|p| p.to_string()).collect()))
        .await
}

async fn get(srv: &TestServer, key: &str, id: &str) -> crate::support::Reply {
    srv.call(Method::GET, &format!("/context/{id}"), Some(key), None).await
}

/// Every byte the database keeps: the SQLite file and its WAL, or a `pg_dump` of the
/// test's schema.
async fn database_bytes(srv: &TestServer) -> Vec<u8> {
    match &srv.pg {
        None => {
            let mut all = Vec::new();
            for name in ["ctxguard.db", "ctxguard.db-wal"] {
                if let Ok(bytes) = std::fs::read(srv.data_dir().join(name)) {
                    all.extend_from_slice(&bytes);
                }
            }
            assert!(!all.is_empty(), "the SQLite files are where the settings say");
            all
        }
        Some(pg) => {
            let args = ["--data-only".to_string(), "--schema".into(), pg.name.clone(), pg.base_url.clone()];
            let out = tokio::task::spawn_blocking(move || std::process::Command::new("pg_dump").args(args).output())
                .await
                .unwrap()
                .expect("pg_dump runs");
            assert!(out.status.success(), "pg_dump: {}", String::from_utf8_lossy(&out.stderr));
            out.stdout
        }
    }
}

fn contains(haystack: &[u8], needle: &str) -> bool {
    haystack.windows(needle.len()).any(|w| w == needle.as_bytes())
}

/// A context with sealed metadata and two sealed messages, its metadata patched once
/// (version 3); the plaintext values it holds.
async fn sealed_context(srv: &TestServer, key: &str) -> (String, Vec<String>) {
    let (ssn, card, first, second, ssn2) =
        (secret("ssn"), secret("card"), secret("first"), secret("second"), secret("ssn2"));
    let created = srv
        .create_context(
            key,
            json!({"metadata": {"topic": "billing", "ssn": ssn, "card": {"brand": "visa", "number": card}},
                   "session": {"history": [{"role": "user", "message": first}]}}),
        )
        .await;
    let id = created["context_id"].as_str().unwrap().to_string();
    assert_eq!(created["metadata"]["ssn"], ssn.as_str(), "served in plaintext");
    let r = srv
        .call(
            Method::POST,
            &format!("/context/{id}/messages"),
            Some(key),
            Some(json!({"messages": [{"role": "assistant", "message": second}]})),
        )
        .await;
    assert_eq!(r.status, StatusCode::OK, "{}", r.body);
    let r = srv
        .send(
            srv.request(Method::PATCH, &format!("/context/{id}"), Some(key))
                .header("content-type", "application/merge-patch+json")
                .body(json!({"metadata": {"ssn": ssn2}}).to_string()),
        )
        .await;
    assert_eq!(r.status, StatusCode::OK, "{}", r.body);
    (id, vec![ssn, card, first, second, ssn2])
}

/// Runs `ctxguard ARGS` on the test server's data (and database); its stderr, after
/// asserting success.
pub(crate) fn ctxguard(srv: &TestServer, args: &[&str]) -> String {
    let mut cmd = std::process::Command::new(crate::process::BIN);
    cmd.env_clear().env("PATH", std::env::var_os("PATH").unwrap_or_default()).args(args);
    cmd.arg("--data-dir").arg(srv.data_dir());
    if let Some(pg) = &srv.pg {
        cmd.arg("--database-url").arg(pg.url());
    }
    let out = cmd.output().unwrap();
    let stderr = String::from_utf8_lossy(&out.stderr).into_owned();
    assert!(out.status.success(), "{args:?}: {stderr}");
    stderr
}

/// The server's database opened beside it with the KEK, as a rotation opens it.
async fn keyed_database(srv: &TestServer) -> std::sync::Arc<dyn ctxguard::store::Database> {
    use ctxguard::crypto::at_rest::FieldPolicy;
    use ctxguard::store::sql_fields::FieldSealer;
    let db = srv.database().await;
    let kek = ctxguard::crypto::kek::Kek::load_or_create(&srv.data_dir()).unwrap();
    db.attach_field_sealer(std::sync::Arc::new(FieldSealer::new(FieldPolicy::default(), std::sync::Arc::new(kek))))
        .await
        .unwrap();
    db
}

const BLOBS_NOT_UNDER: &str = "SELECT (SELECT COUNT(*) FROM contexts WHERE metadata_sealed NOT LIKE 'v1.{k}.%') \
    + (SELECT COUNT(*) FROM context_revisions WHERE metadata_sealed NOT LIKE 'v1.{k}.%') \
    + (SELECT COUNT(*) FROM context_messages WHERE sealed NOT LIKE 'v1.{k}.%')";

backend_tests! {
    async fn sealed_values_never_reach_the_database_files_and_read_back_signed(srv) {
        let Some(mut srv) = sealed_server(srv.backend).await else { return };
        let key = srv.agent("writer", &["writer"]).await;
        let (id, secrets) = sealed_context(&srv, &key).await;
        let served = get(&srv, &key, &id).await.body;
        assert_eq!(served["metadata"]["ssn"], secrets[4].as_str());
        assert_eq!(served["metadata"]["card"], json!({"brand": "visa", "number": secrets[1]}));
        assert_eq!(served["session"]["history"][1]["message"], secrets[3].as_str());
        let jwks = srv.call(Method::GET, "/oauth/jwks", None, None).await.body;
        crate::integrity::verify(&served, &jwks).expect("the signature covers the plaintext");

        // Read from the database by a fresh process: the same bytes, every version.
        srv.restart().await;
        let fresh = get(&srv, &key, &id).await;
        assert_eq!(fresh.status, StatusCode::OK, "{}", fresh.body);
        assert_eq!(fresh.body, served);
        let v1 = srv.call(Method::GET, &format!("/context/{id}/versions/1"), Some(&key), None).await;
        assert_eq!(v1.body["metadata"]["ssn"], secrets[0].as_str(), "{}", v1.body);
        crate::integrity::verify(&v1.body, &jwks).unwrap();
        let listed = srv.call(Method::GET, "/context", Some(&key), None).await;
        assert_eq!(listed.status, StatusCode::OK, "{}", listed.body);

        // In the rows: a null in each value's place, and no plaintext anywhere.
        let metadata = srv.raw_text(&format!("SELECT metadata FROM contexts WHERE context_id = '{id}'")).await;
        let metadata: Value = serde_json::from_str(&metadata).unwrap();
        assert_eq!(metadata, json!({"topic": "billing", "ssn": null, "card": {"brand": "visa", "number": null}}));
        let bytes = database_bytes(&srv).await;
        assert!(contains(&bytes, "billing") && contains(&bytes, "visa"), "the search sees what is stored plainly");
        for s in &secrets {
            assert!(!contains(&bytes, s), "{s} is stored in plaintext");
        }

        // Pointers taken out of the configuration: what was sealed still opens.
        srv.restart_with(|s| s.encryption = Default::default()).await.unwrap();
        assert_eq!(get(&srv, &key, &id).await.body, served);
        let plain = secret("plain");
        let r = srv.call(Method::POST, &format!("/context/{id}/messages"), Some(&key),
            Some(json!({"messages": [{"role": "user", "message": plain}]}))).await;
        assert_eq!(r.status, StatusCode::OK, "{}", r.body);
        assert!(contains(&database_bytes(&srv).await, &plain), "no longer sealed once not configured");
    }

    async fn a_sealed_value_moved_to_another_row_does_not_open(srv) {
        let Some(mut srv) = sealed_server(srv.backend).await else { return };
        let key = srv.agent("writer", &["writer"]).await;
        let (id, secrets) = sealed_context(&srv, &key).await;
        let (other, _) = sealed_context(&srv, &key).await;
        srv.create_tenant("elsewhere").await;
        let stranger = srv.create_principal("elsewhere", "stranger", &["writer"]).await;
        let stranger = srv.api_key(&stranger, None, None).await.1;
        let (foreign, _) = sealed_context(&srv, &stranger).await;
        srv.restart().await;
        let ok = get(&srv, &key, &id).await.body;

        let head = |ctx: &str| format!("(SELECT metadata_sealed FROM contexts WHERE context_id = '{ctx}')");
        let cases = [
            ("from another context", format!("UPDATE contexts SET metadata_sealed = {} WHERE context_id = '{id}'", head(&other))),
            ("from another tenant", format!("UPDATE contexts SET metadata_sealed = {} WHERE context_id = '{id}'", head(&foreign))),
            ("from an older version", format!(
                "UPDATE contexts SET metadata_sealed = (SELECT metadata_sealed FROM context_revisions \
                 WHERE context_id = '{id}' AND version = 1) WHERE context_id = '{id}'")),
            ("removed", format!("UPDATE contexts SET metadata_sealed = NULL WHERE context_id = '{id}'")),
            ("a message's, from another position", format!(
                "UPDATE context_messages SET sealed = (SELECT sealed FROM context_messages \
                 WHERE context_id = '{id}' AND position = 1) WHERE context_id = '{id}' AND position = 0")),
            ("a message's, altered", format!(
                "UPDATE context_messages SET sealed = replace(sealed, 'v1.1.', 'v1.1.AAAA') \
                 WHERE context_id = '{id}' AND position = 1")),
        ];
        let saved = (
            srv.raw_text(&format!("SELECT metadata_sealed FROM contexts WHERE context_id = '{id}'")).await,
            srv.raw_text(&format!("SELECT sealed FROM context_messages WHERE context_id = '{id}' AND position = 0")).await,
            srv.raw_text(&format!("SELECT sealed FROM context_messages WHERE context_id = '{id}' AND position = 1")).await,
        );
        for (what, tamper) in cases {
            srv.raw_sql(&tamper).await;
            srv.restart().await;
            let r = get(&srv, &key, &id).await;
            r.assert_error(StatusCode::CONFLICT, "integrity_error");
            for s in &secrets {
                assert!(!r.body.to_string().contains(s.as_str()), "{what}: {}", r.body);
            }
            // Nothing is written on top of it (an append does not read the messages
            // themselves: docs/integrity.md; reads refuse them, as above).
            if !what.starts_with("a message") {
                let append = srv.call(Method::POST, &format!("/context/{id}/messages"), Some(&key),
                    Some(json!({"messages": [{"role": "user", "message": "x"}]}))).await;
                append.assert_error(StatusCode::CONFLICT, "integrity_error");
            }
            srv.raw_sql(&format!(
                "UPDATE contexts SET metadata_sealed = '{}' WHERE context_id = '{id}'; \
                 UPDATE context_messages SET sealed = '{}' WHERE context_id = '{id}' AND position = 0; \
                 UPDATE context_messages SET sealed = '{}' WHERE context_id = '{id}' AND position = 1",
                saved.0, saved.1, saved.2)).await;
            srv.restart().await;
            let restored = get(&srv, &key, &id).await;
            assert_eq!(restored.status, StatusCode::OK, "{what}: restored: {}", restored.body);
            assert_eq!(restored.body, ok, "{what}: exactly as before");
        }
    }

    async fn a_wrong_kek_stops_the_start_and_touches_nothing(srv) {
        let Some(mut srv) = sealed_server(srv.backend).await else { return };
        let key = srv.agent("writer", &["writer"]).await;
        let (id, _) = sealed_context(&srv, &key).await;
        let ok = get(&srv, &key, &id).await.body;
        let kek = srv.data_dir().join("kek.key");
        let good = std::fs::read_to_string(&kek).unwrap();
        let counts = "SELECT (SELECT COUNT(*) FROM data_keys) * 1000000 + (SELECT COUNT(*) FROM signing_keys) * 1000 \
                      + (SELECT COUNT(*) FROM context_revisions)";
        let wrapped = "SELECT wrapped FROM data_keys";
        let (before, wrapped_before) = (srv.raw_count(counts).await, srv.raw_text(wrapped).await);
        let err = srv
            .restart_with(|s| {
                use base64::Engine;
                let other = base64::engine::general_purpose::STANDARD.encode([7u8; 32]);
                std::fs::write(s.data_dir.join("kek.key"), format!("{other}\n")).unwrap();
            })
            .await
            .expect_err("a wrong KEK refuses to start");
        assert!(err.to_string().contains("KEK"), "names the KEK: {err:#}");
        assert_eq!(srv.raw_count(counts).await, before, "no key or version added");
        assert_eq!(srv.raw_text(wrapped).await, wrapped_before, "no data key re-wrapped");
        std::fs::write(&kek, good).unwrap();
        srv.restart_with(|_| {}).await.unwrap();
        assert_eq!(get(&srv, &key, &id).await.body, ok);
    }

    async fn a_tenant_seals_its_own_pointers(srv) {
        let tenant = srv.create_tenant("vault").await;
        let vault = srv.create_principal(&tenant, "keeper", &["writer"]).await;
        let vault = srv.api_key(&vault, None, None).await.1;
        let plain = srv.agent("writer", &["writer"]).await;
        let missing = srv
            .restart_with(|s| s.encryption.tenants = vec![("nobody".into(), vec!["/metadata/secret".parse().unwrap()])])
            .await
            .expect_err("an unknown tenant is a configuration error");
        assert!(missing.to_string().contains("no tenant named \"nobody\""), "{missing:#}");
        srv.restart_with(|s| s.encryption.tenants = vec![("vault".into(), vec!["/metadata/secret".parse().unwrap()])])
            .await
            .unwrap();
        let (sealed, open) = (secret("vaulted"), secret("open"));
        let a = srv.create_context(&vault, json!({"metadata": {"secret": sealed}, "session": {"history": []}})).await;
        let b = srv.create_context(&plain, json!({"metadata": {"secret": open}, "session": {"history": []}})).await;
        let stored = |id: &Value| format!("SELECT metadata FROM contexts WHERE context_id = '{}'", id["context_id"].as_str().unwrap());
        assert_eq!(srv.raw_text(&stored(&a)).await, r#"{"secret":null}"#);
        assert!(srv.raw_text(&stored(&b)).await.contains(&open), "other tenants are stored as before");
        assert_eq!(get(&srv, &vault, a["context_id"].as_str().unwrap()).await.body["metadata"]["secret"], sealed.as_str());
    }

    async fn a_data_key_rotation_stopped_half_way_resumes_while_serving(srv) {
        use ctxguard::store::sql_fields::RotationStart;
        let Some(mut srv) = sealed_server(srv.backend).await else { return };
        let key = srv.agent("writer", &["writer"]).await;
        let mut ids = Vec::new();
        for _ in 0..3 {
            ids.push(sealed_context(&srv, &key).await.0);
        }
        let mut served = Vec::new();
        for id in &ids {
            served.push(get(&srv, &key, id).await.body);
        }
        // The rotation begins and stops after its first context, as if killed.
        let db = keyed_database(&srv).await;
        assert_eq!(db.begin_data_key_rotation().await.unwrap(), RotationStart::Started(1));
        let step = db.reseal_contexts(None, 1).await.unwrap();
        assert_eq!(step.contexts, 1);
        assert!(step.rows > 0, "the first context had sealed values");
        let left = db.rows_on_retired_keys().await.unwrap();
        assert!(left > 0, "half-way");
        // Meanwhile the server reads every context (under either key) and writes under
        // the new one.
        srv.restart().await;
        for (id, body) in ids.iter().zip(&served) {
            assert_eq!(&get(&srv, &key, id).await.body, body);
        }
        let later = secret("later");
        let r = srv.call(Method::POST, &format!("/context/{}/messages", ids[2]), Some(&key),
            Some(json!({"messages": [{"role": "user", "message": later}]}))).await;
        assert_eq!(r.status, StatusCode::OK, "{}", r.body);
        let newest = srv.raw_text(&format!(
            "SELECT sealed FROM context_messages WHERE context_id = '{}' AND position = 2", ids[2])).await;
        assert!(newest.starts_with("v1.2."), "new writes use the new key: {newest}");
        served[2] = get(&srv, &key, &ids[2]).await.body;

        // Run again from the command line, beside the running server: it resumes.
        let said = ctxguard(&srv, &["keys", "rotate", "--data-keys"]);
        assert!(said.contains("resuming"), "{said}");
        assert_eq!(db.rows_on_retired_keys().await.unwrap(), 0);
        assert_eq!(srv.raw_count(&BLOBS_NOT_UNDER.replace("{k}", "2")).await, 0, "every value under key 2");
        assert_eq!(srv.raw_count("SELECT COUNT(*) FROM data_keys WHERE retired_at_ms IS NOT NULL").await, 1);
        srv.restart().await;
        let jwks = srv.call(Method::GET, "/oauth/jwks", None, None).await.body;
        for (id, body) in ids.iter().zip(&served) {
            let now = get(&srv, &key, id).await.body;
            assert_eq!(&now, body, "the same plaintext, the same signature");
            crate::integrity::verify(&now, &jwks).unwrap();
        }
        // The rotation is recorded.
        let audit = srv.admin(Method::GET, "/admin/audit?action=keys.rotate&limit=10", None).await;
        assert!(audit.body.to_string().contains("data_keys"), "{}", audit.body);

        // The next rotation destroys keys retired more than an hour before.
        srv.raw_sql("UPDATE data_keys SET retired_at_ms = retired_at_ms - 7200000 WHERE key_id = 1").await;
        assert_eq!(db.begin_data_key_rotation().await.unwrap(), RotationStart::Started(1));
        let keys = srv.raw_count("SELECT COUNT(*) * 100 + CAST(SUM(key_id) AS BIGINT) FROM data_keys").await;
        assert_eq!(keys, 2 * 100 + 2 + 3, "key 1 destroyed, key 2 retired, key 3 current");
        db.close().await;
    }

    async fn a_kek_rotation_rewraps_every_key_and_an_interrupted_one_settles(srv) {
        let Some(mut srv) = sealed_server(srv.backend).await else { return };
        let key = srv.agent("writer", &["writer"]).await;
        let (id, _) = sealed_context(&srv, &key).await;
        let ok = get(&srv, &key, &id).await.body;
        let kek = srv.data_dir().join("kek.key");
        let next = srv.data_dir().join("kek.key.next");
        let wrapped = "SELECT (SELECT MIN(wrapped) FROM data_keys) || (SELECT MIN(private_sealed) FROM signing_keys)";
        let (old_kek, old_wrapped) = (std::fs::read_to_string(&kek).unwrap(), srv.raw_text(wrapped).await);

        // With the servers stopped, as docs/encryption.md says.
        srv.halt().await;
        let said = ctxguard(&srv, &["keys", "rotate", "--kek"]);
        assert!(said.contains("keys re-wrapped"), "{said}");
        let new_kek = std::fs::read_to_string(&kek).unwrap();
        assert_ne!(new_kek, old_kek);
        assert!(!next.exists(), "nothing staged is left");
        assert_ne!(srv.raw_text(wrapped).await, old_wrapped, "every key re-wrapped");
        srv.resume().await.unwrap();
        assert_eq!(get(&srv, &key, &id).await.body, ok, "no context rewritten; all still opens");
        // The old KEK opens nothing any more.
        srv.halt().await;
        std::fs::write(&kek, &old_kek).unwrap();
        let err = srv.resume().await.expect_err("the old KEK no longer starts the server");
        assert!(err.to_string().contains("KEK"), "{err:#}");
        std::fs::write(&kek, &new_kek).unwrap();

        // Stopped after staging, before re-wrapping: the start drops the staged KEK.
        let staged = ctxguard::crypto::kek::Kek::stage_next(&srv.data_dir()).unwrap();
        srv.resume().await.unwrap();
        assert!(!next.exists());
        assert_eq!(std::fs::read_to_string(&kek).unwrap(), new_kek);
        assert_eq!(get(&srv, &key, &id).await.body, ok);
        drop(staged);

        // Stopped after re-wrapping, before replacing the file: the start finishes it.
        srv.halt().await;
        let db = keyed_database(&srv).await;
        let current = ctxguard::crypto::kek::Kek::load_or_create(&srv.data_dir()).unwrap();
        let staged = ctxguard::crypto::kek::Kek::stage_next(&srv.data_dir()).unwrap();
        let rewrap = |label: &str, w: &str| -> anyhow::Result<String> { staged.seal(&current.open(w, label)?, label) };
        assert!(db.rewrap_keys(&rewrap).await.unwrap() >= 2, "a signing key and a data key");
        db.close().await;
        srv.resume().await.unwrap();
        assert!(!next.exists());
        assert_ne!(std::fs::read_to_string(&kek).unwrap(), new_kek, "the staged KEK is the current one");
        assert_eq!(get(&srv, &key, &id).await.body, ok);
    }
}
