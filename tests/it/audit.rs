//! The audit log end to end (docs/audit.md): what a session leaves in it, in order and
//! with one identity on HTTP and MCP; tampering of each kind named with its record;
//! many writers (and two replicas) making one chain; writes failing closed when their
//! record cannot be written; the triggers; `GET /admin/audit`.

use std::time::Duration;

use ctxguard::audit::checkpoint::CheckpointKeys;
use ctxguard::audit::retention;
use ctxguard::audit::verify::{self, Break};
use ctxguard::domain::Timestamp;
use ctxguard::domain::audit::{AuditRecord, PendingRecord};
use ctxguard::domain::audit_block;
use ctxguard::store::Database;
use reqwest::{Method, StatusCode};
use serde_json::json;

use crate::backend_tests;
use crate::mcp_fast::Rpc;
use crate::support::{Backend, TestServer, sample_context};

/// The records after `seq`, once at least `n` are there (reads are queued, not
/// waited for).
async fn records_after(db: &dyn Database, seq: i64, n: usize) -> Vec<AuditRecord> {
    let mut found = Vec::new();
    for _ in 0..250 {
        found = db.audit_records(seq + 1, 10_000).await.unwrap();
        if found.len() >= n {
            return found;
        }
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    panic!("expected {n} audit records after {seq}, found {}: {found:#?}", found.len());
}

async fn head(db: &dyn Database) -> i64 {
    db.audit_ends().await.unwrap().head.0
}

async fn first_break(db: &dyn Database) -> Option<Break> {
    report(db).await.first_break
}

async fn report(db: &dyn Database) -> verify::Report {
    let keys = CheckpointKeys::load(db).await.unwrap();
    verify::verify(db, &keys, None, |_| {}).await.unwrap()
}

/// (action, decision, channel, who) — who is the principal's name, or "-".
fn line(r: &AuditRecord) -> (String, String, String, String) {
    (r.action.clone(), r.decision.clone(), r.channel.clone(), r.principal_name.clone().unwrap_or_else(|| "-".into()))
}

fn expect(action: &str, decision: &str, channel: &str, who: &str) -> (String, String, String, String) {
    (action.into(), decision.into(), channel.into(), who.into())
}

backend_tests! {
    async fn a_session_leaves_exactly_its_records_in_order(srv) {
        let db = srv.database().await;
        let writer = srv.agent("writer-a", &["writer"]).await;
        let reader = srv.agent("reader-a", &["reader"]).await;
        let start = head(&*db).await;

        let ctx = srv.create_context(&writer, sample_context()).await;
        let id = ctx["context_id"].as_str().unwrap().to_string();
        let path = format!("/context/{id}");
        assert_eq!(srv.call(Method::GET, &path, Some(&writer), None).await.status, StatusCode::OK);
        let msg = json!({"messages": [{"role": "user", "message": "hello"}]});
        let appended = srv.call(Method::POST, &format!("{path}/messages"), Some(&writer), Some(msg.clone())).await;
        assert_eq!(appended.status, StatusCode::OK, "{:?}", appended.body);
        let refused = srv.call(Method::POST, &format!("{path}/messages"), Some(&reader), Some(msg)).await;
        refused.assert_error(StatusCode::FORBIDDEN, "forbidden");
        let forged = srv.call(Method::GET, &path, Some("not-a-real-token"), None).await;
        assert_eq!(forged.status, StatusCode::UNAUTHORIZED);
        let (status, _, answer) = Rpc::tool("context_get", json!({"context_id": id})).send(&srv, &srv.url, &writer).await;
        assert_eq!(status, StatusCode::OK, "{answer}");
        srv.call(Method::DELETE, &path, Some(&writer), None).await.assert_error(StatusCode::FORBIDDEN, "forbidden");
        assert_eq!(srv.admin(Method::DELETE, &path, None).await.status, StatusCode::NO_CONTENT);
        srv.call(Method::GET, &path, Some(&writer), None).await.assert_error(StatusCode::NOT_FOUND, "context_deleted");

        let records = records_after(&*db, start, 9).await;
        let lines: Vec<_> = records.iter().map(line).collect();
        assert_eq!(lines, vec![
            expect("context.create", "allow", "http", "agent:writer-a"),
            expect("context.read", "allow", "http", "agent:writer-a"),
            expect("context.append", "allow", "http", "agent:writer-a"),
            expect("context.append", "deny", "http", "agent:reader-a"),
            expect("authn.failure", "deny", "http", "-"),
            expect("context.read", "allow", "mcp:context_get", "agent:writer-a"),
            expect("context.delete", "deny", "http", "agent:writer-a"),
            expect("context.delete", "allow", "http", "service:admin"),
            expect("context.read", "deny", "http", "agent:writer-a"),
        ]);
        let target = format!("context:{id}");
        for r in records.iter().filter(|r| r.action != "authn.failure") {
            assert_eq!(r.target.as_deref(), Some(target.as_str()), "{r:?}");
            assert!(r.tenant.is_some() && r.principal.is_some() && r.credential.as_deref().is_some_and(|c| c.starts_with("api_key:")), "{r:?}");
            assert_eq!(r.ip.as_deref(), Some("127.0.0.1"), "{r:?}");
            assert!(r.request_id.as_deref().is_some_and(|id| id.len() == 36), "{r:?}");
        }
        // One identity on every way in.
        assert_eq!(records[0].principal, records[5].principal);
        // Allowed: the policies that allowed it; refused: what the caller was told.
        assert!(records[0].policies.iter().any(|p| p.starts_with("builtin.")), "{:?}", records[0]);
        assert!(records[3].policies.is_empty() && records[3].reason.as_deref().is_some_and(|r| r.contains("inject")), "{:?}", records[3]);
        assert_eq!(records[4].credential.as_deref(), Some("presented:jwt"));
        assert_eq!(records[4].reason.as_deref(), Some("the token is not a well-formed JWT"), "{:?}", records[4]);
        assert_eq!(records[8].reason.as_deref(), Some("Context has been deleted"));
        // Never the message text.
        assert!(!serde_json::to_string(&records).unwrap().contains("hello"));
        assert_eq!(first_break(&*db).await, None);
        db.close().await;
    }

    async fn tokens_and_admin_actions_are_recorded(srv) {
        let db = srv.database().await;
        let start = head(&*db).await;
        let (client, secret) = srv.machine_client("robot", &["reader"], None).await;
        let token = srv.cc_token(&client, &secret, &[]).await;
        assert_eq!(token.status, StatusCode::OK, "{:?}", token.body);
        let refused = srv.cc_token(&client, "wrong-secret", &[]).await;
        assert_eq!(refused.status, StatusCode::UNAUTHORIZED, "{:?}", refused.body);
        let principal = srv.create_principal("default", "p1", &["reader"]).await;
        srv.api_key(&principal, None, None).await;
        let records = records_after(&*db, start, 5).await;
        let summary: Vec<_> = records.iter().map(|r| (r.action.as_str(), r.decision.as_str())).collect();
        assert_eq!(summary, vec![
            ("admin.client.create", "allow"),
            ("token.issue", "allow"),
            ("token.issue", "deny"),
            ("admin.principal.create", "allow"),
            ("admin.api_key.create", "allow"),
        ]);
        assert_eq!(records[1].client_id.as_deref(), Some(client.as_str()));
        assert!(records[1].target.as_deref().is_some_and(|t| t.starts_with("token:")));
        assert!(records[2].reason.as_deref().is_some_and(|r| r.starts_with("invalid_client")), "{:?}", records[2]);
        assert_eq!(records[4].target, Some(format!("principal:{principal}")));
        db.close().await;
    }

    async fn each_kind_of_tampering_is_named_with_its_record(srv) {
        let db = srv.database().await;
        let key = srv.agent("busy", &["writer"]).await;
        for _ in 0..6 {
            srv.create_context(&key, sample_context()).await;
        }
        let last = head(&*db).await;
        assert!(last >= 8);
        assert_eq!(first_break(&*db).await, None);
        unguard(&srv).await;

        srv.raw_sql(&one_record_per_block(&*db).await).await;
        assert_eq!(first_break(&*db).await, None);

        srv.raw_sql(&edit_decision(5)).await;
        assert_eq!(first_break(&*db).await, Some(Break::Altered { seq: 5 }));
        srv.raw_sql(&unedit_decision(5)).await;
        assert_eq!(first_break(&*db).await, None);

        srv.raw_sql("CREATE TABLE audit_saved AS SELECT * FROM audit_blocks WHERE first_seq = 4").await;
        srv.raw_sql("DELETE FROM audit_blocks WHERE first_seq = 4").await;
        assert_eq!(first_break(&*db).await, Some(Break::Missing { from: 4, to: 4 }));
        srv.raw_sql("INSERT INTO audit_blocks SELECT * FROM audit_saved").await;
        srv.raw_sql("DROP TABLE audit_saved").await;
        assert_eq!(first_break(&*db).await, None);

        let swap = "UPDATE audit_blocks SET first_seq = -1 WHERE first_seq = 3; \
                    UPDATE audit_blocks SET first_seq = 3 WHERE first_seq = 2; \
                    UPDATE audit_blocks SET first_seq = 2 WHERE first_seq = -1";
        srv.raw_sql(swap).await;
        assert_eq!(first_break(&*db).await, Some(Break::Reordered { seq: 2 }));
        srv.raw_sql(swap).await;
        assert_eq!(first_break(&*db).await, None);

        // The index beside the records, edited to hide a record from queries.
        srv.raw_sql("UPDATE audit_blocks SET decisions = replace(decisions, 'allow', 'deny') WHERE first_seq = 6").await;
        assert_eq!(first_break(&*db).await, Some(Break::Index { first_seq: 6 }));
        srv.raw_sql("UPDATE audit_blocks SET decisions = replace(decisions, 'deny', 'allow') WHERE first_seq = 6").await;

        srv.raw_sql(&format!("DELETE FROM audit_blocks WHERE first_seq > {}", last - 2)).await;
        assert_eq!(first_break(&*db).await, Some(Break::Truncated { last: last - 2, head: last }));
        db.close().await;
    }

    async fn signed_checkpoints_catch_a_rewritten_or_shortened_tail(srv) {
        let Some(srv) = TestServer::start_with(srv.backend, |c| c.audit_checkpoint_records = Some(4)).await else { return };
        let db = srv.database().await;
        let key = srv.agent("busy", &["writer"]).await;
        for _ in 0..12 {
            srv.create_context(&key, sample_context()).await;
        }
        let checkpoints = db.audit_checkpoints().await.unwrap();
        assert!(checkpoints.len() >= 3, "{checkpoints:?}");
        let clean = report(&*db).await;
        assert_eq!((clean.first_break, clean.checkpoints), (None, checkpoints.len()));
        let covered = checkpoints.last().unwrap().seq;
        let target = checkpoints[checkpoints.len() - 2].seq;
        unguard(&srv).await;

        // Someone with the database (but not the signing key) rewrites the tail from
        // record `from` on with our own code: a consistent, re-hashed chain and head.
        let from = target - 1;
        let mut tail: Vec<PendingRecord> = db
            .audit_records(from, 10_000)
            .await
            .unwrap()
            .into_iter()
            .map(|record| PendingRecord { time_ms: Timestamp::parse_rfc3339(&record.time).unwrap().millis(), record })
            .collect();
        tail[0].record.reason = Some("edited".into());
        let before = db.audit_records(from - 1, 1).await.unwrap().remove(0);
        srv.raw_sql(&one_record_per_block(&*db).await).await;
        srv.raw_sql(&format!("DELETE FROM audit_blocks WHERE first_seq >= {from}")).await;
        srv.raw_sql(&format!("UPDATE audit_head SET seq = {}, hash = '{}'", before.seq, before.hash)).await;
        db.append_audit(&mut tail).await.unwrap();
        let mut chain_only = report(&*db).await;
        assert_eq!(chain_only.first_break.take(), Some(Break::Contradicts { seq: target }));

        // Cut back to before the last checkpoint, head and all.
        let keep = covered - 2;
        let last = db.audit_records(keep, 1).await.unwrap().remove(0);
        srv.raw_sql(&one_record_per_block(&*db).await).await;
        srv.raw_sql(&format!("DELETE FROM audit_blocks WHERE first_seq > {keep}")).await;
        srv.raw_sql(&format!("UPDATE audit_head SET seq = {}, hash = '{}'", last.seq, last.hash)).await;
        srv.raw_sql(&format!("DELETE FROM audit_checkpoints WHERE seq <= {keep}")).await;
        assert_eq!(first_break(&*db).await, Some(Break::BeforeCheckpoint { last: keep, checkpoint: covered }));

        // And a checkpoint we did not sign is named as such.
        srv.raw_sql("INSERT INTO audit_checkpoints (seq, hash, time_ms, kid, signature) VALUES (1, 'x', 0, 'k', 'a.b.c')")
            .await;
        assert!(matches!(first_break(&*db).await, Some(Break::ForgedCheckpoint { seq: 1, .. })));
        db.close().await;
        srv.stop().await;
    }

    async fn retention_archives_then_prunes_and_both_still_verify(srv) {
        let Some(srv) = TestServer::start_with(srv.backend, |c| c.audit_checkpoint_records = Some(4)).await else { return };
        let db = srv.database().await;
        let key = srv.agent("old", &["writer"]).await;
        for _ in 0..10 {
            srv.create_context(&key, sample_context()).await;
        }
        tokio::time::sleep(Duration::from_millis(5)).await;
        let dir = tempfile::tempdir().unwrap();
        let archive = dir.path().join("audit-1.jsonl");
        let keys = CheckpointKeys::load(&*db).await.unwrap();
        let expected = retention::cut_point(&*db, Timestamp::now()).await.unwrap().expect("a checkpoint").seq;
        let pruned = retention::prune(&*db, Timestamp::now(), &archive, |_| {}).await.unwrap().expect("pruned");
        assert_eq!(pruned, retention::Pruned { through: expected, records: expected as u64 });
        #[cfg(unix)]
        {
            use std::os::unix::fs::PermissionsExt;
            assert_eq!(std::fs::metadata(&archive).unwrap().permissions().mode() & 0o777, 0o600);
        }
        // The stored chain starts after the archived checkpoint and still verifies; new
        // records go on from it.
        assert_eq!(db.audit_ends().await.unwrap().base.0, expected);
        srv.create_context(&key, sample_context()).await;
        assert_eq!(db.audit_records(1, 1).await.unwrap()[0].seq, expected + 1);
        assert_eq!(first_break(&*db).await, None);
        // The archive verifies on its own, and an edit to it shows.
        let report = retention::verify_archive(&archive, &keys).unwrap();
        assert_eq!((report.first_break, report.records), (None, expected as u64));
        let text = std::fs::read_to_string(&archive).unwrap();
        let edited = dir.path().join("edited.jsonl");
        std::fs::write(&edited, text.replacen("\"decision\":\"allow\"", "\"decision\":\"deny\"", 1)).unwrap();
        assert!(matches!(retention::verify_archive(&edited, &keys).unwrap().first_break, Some(Break::Altered { .. })));
        // An archive is never overwritten (and nothing is pruned then).
        for _ in 0..4 {
            srv.create_context(&key, sample_context()).await;
        }
        assert!(retention::cut_point(&*db, Timestamp::now()).await.unwrap().is_some());
        assert!(retention::prune(&*db, Timestamp::now(), &archive, |_| {}).await.is_err());
        assert_eq!(db.audit_ends().await.unwrap().base.0, expected);
        // Records removed behind prune's back, base and all, are named.
        unguard(&srv).await;
        let (base, _) = db.audit_ends().await.unwrap().base;
        let moved = db.audit_records(base + 2, 1).await.unwrap().remove(0);
        srv.raw_sql(&one_record_per_block(&*db).await).await;
        srv.raw_sql(&format!("DELETE FROM audit_blocks WHERE first_seq <= {}", moved.seq)).await;
        srv.raw_sql(&format!("UPDATE audit_head SET base_seq = {}, base_hash = '{}'", moved.seq, moved.hash)).await;
        assert_eq!(first_break(&*db).await, Some(Break::UnvouchedBase { seq: moved.seq }));
        db.close().await;
        srv.stop().await;
    }

    async fn the_log_refuses_update_and_delete(srv) {
        let db = srv.database().await;
        srv.create_context(&srv.admin_key.clone(), sample_context()).await;
        let before = db.audit_records(1, 100).await.unwrap();
        assert!(!before.is_empty());
        for statement in ["UPDATE audit_blocks SET records = 'x'", "DELETE FROM audit_blocks"] {
            let refused = srv.try_raw_sql(statement).await.expect_err(statement);
            assert!(refused.contains("append-only"), "{refused}");
        }
        if srv.backend == Backend::Postgres {
            let refused = srv.try_raw_sql("TRUNCATE audit_blocks").await.expect_err("truncate");
            assert!(refused.contains("append-only"), "{refused}");
        }
        assert_eq!(db.audit_records(1, 100).await.unwrap()[..before.len()], before[..]);
        db.close().await;
    }

    async fn concurrent_writers_make_one_chain(srv) {
        let db = srv.database().await;
        let key = srv.agent("crowd", &["writer"]).await;
        let start = head(&*db).await;
        // Two replicas write into one chain where the database can be shared.
        let replica = match srv.backend {
            Backend::Postgres => Some(srv.replica().await),
            Backend::Sqlite => None,
        };
        let bases: Vec<String> = std::iter::once(srv.url.clone()).chain(replica.as_ref().map(|r| r.url.clone())).collect();
        let mut tasks = Vec::new();
        for i in 0..50 {
            let (http, base, key) = (srv.http.clone(), bases[i % bases.len()].clone(), key.clone());
            tasks.push(tokio::spawn(async move {
                for _ in 0..4 {
                    let r = http.post(format!("{base}/context")).bearer_auth(&key).json(&sample_context()).send().await.unwrap();
                    assert_eq!(r.status(), StatusCode::CREATED);
                }
            }));
        }
        for t in tasks {
            t.await.unwrap();
        }
        let records = records_after(&*db, start, 200).await;
        assert_eq!(records.iter().filter(|r| r.action == "context.create" && r.decision == "allow").count(), 200);
        let seqs: Vec<i64> = records.iter().map(|r| r.seq).collect();
        assert_eq!(seqs, (start + 1..=start + records.len() as i64).collect::<Vec<_>>());
        let report = report(&*db).await;
        assert_eq!(report.first_break, None);
        assert_eq!(report.last_seq, Some(head(&*db).await));
        if let Some(r) = replica {
            r.stop().await;
        }
        db.close().await;
    }

    async fn writes_fail_closed_when_their_record_cannot_be_written(srv) {
        let key = srv.agent("w", &["writer"]).await;
        let ctx = srv.create_context(&key, sample_context()).await;
        let id = ctx["context_id"].as_str().unwrap().to_string();
        let before = srv.stored(&id).await.body;
        srv.raw_sql("ALTER TABLE audit_blocks RENAME TO audit_blocks_away").await;

        let contexts = srv.raw_count("SELECT COUNT(*) FROM contexts").await;
        let created = srv.call(Method::POST, "/context", Some(&key), Some(sample_context())).await;
        created.assert_error(StatusCode::SERVICE_UNAVAILABLE, "audit_unavailable");
        let msg = json!({"messages": [{"role": "user", "message": "x"}]});
        let appended = srv.call(Method::POST, &format!("/context/{id}/messages"), Some(&key), Some(msg)).await;
        appended.assert_error(StatusCode::SERVICE_UNAVAILABLE, "audit_unavailable");
        assert_eq!(srv.raw_count("SELECT COUNT(*) FROM contexts").await, contexts);
        // Reads go on (audit_fail_closed_reads is off by default), and see nothing changed.
        assert_eq!(srv.stored(&id).await.body, before);

        srv.raw_sql("ALTER TABLE audit_blocks_away RENAME TO audit_blocks").await;
        assert_eq!(srv.call(Method::POST, "/context", Some(&key), Some(sample_context())).await.status, StatusCode::CREATED);
        let db = srv.database().await;
        assert_eq!(first_break(&*db).await, None);
        db.close().await;
    }

    async fn reads_fail_closed_too_when_configured(srv) {
        let Some(srv) = TestServer::start_with(srv.backend, |c| c.audit_fail_closed_reads = Some(true)).await else { return };
        let key = srv.agent("r", &["writer"]).await;
        let id = srv.create_context(&key, sample_context()).await["context_id"].as_str().unwrap().to_string();
        let path = format!("/context/{id}");
        assert_eq!(srv.call(Method::GET, &path, Some(&key), None).await.status, StatusCode::OK);
        srv.raw_sql("ALTER TABLE audit_blocks RENAME TO audit_blocks_away").await;
        srv.call(Method::GET, &path, Some(&key), None).await.assert_error(StatusCode::SERVICE_UNAVAILABLE, "audit_unavailable");
        srv.call(Method::GET, "/context", Some(&key), None).await.assert_error(StatusCode::SERVICE_UNAVAILABLE, "audit_unavailable");
        srv.raw_sql("ALTER TABLE audit_blocks_away RENAME TO audit_blocks").await;
        assert_eq!(srv.call(Method::GET, &path, Some(&key), None).await.status, StatusCode::OK);
        srv.stop().await;
    }

    async fn dynamic_registration_is_recorded(srv) {
        let db = srv.database().await;
        let start = head(&*db).await;
        let client = crate::oauth_flow::register_public_native(&srv).await;
        let refused = srv.call(Method::POST, "/oauth/register", None, Some(json!({"redirect_uris": ["ftp://x"]}))).await;
        assert_eq!(refused.status, StatusCode::BAD_REQUEST);
        let records = records_after(&*db, start, 2).await;
        let summary: Vec<_> = records.iter().map(|r| (r.action.as_str(), r.decision.as_str(), r.target.clone())).collect();
        assert_eq!(summary, vec![
            ("client.register", "allow", Some(format!("client:{client}"))),
            ("client.register", "deny", None),
        ]);
        assert_eq!(records[0].policies, vec!["registration:open".to_string()]);
        db.close().await;
    }

    async fn the_admin_api_reads_the_log(srv) {
        let key = srv.agent("seen", &["writer"]).await;
        let ids: Vec<String> = created_ids(&srv, &key, 3).await;
        let page = async |q: &str| srv.admin(Method::GET, &format!("/admin/audit?{q}"), None).await;
        let r = page(&format!("context={}", ids[1])).await;
        assert_eq!(r.status, StatusCode::OK, "{:?}", r.body);
        let items = r.body["items"].as_array().unwrap();
        assert_eq!(items.len(), 1, "{items:?}");
        assert_eq!(items[0]["action"], "context.create");
        assert_eq!(items[0]["target"], format!("context:{}", ids[1]));
        // Newest first, in pages.
        let first = page("action=context.create&limit=2").await.body;
        let items = first["items"].as_array().unwrap();
        assert_eq!(items.len(), 2);
        assert!(items[0]["seq"].as_i64() > items[1]["seq"].as_i64());
        let cursor = first["next_cursor"].as_str().unwrap();
        let second = page(&format!("action=context.create&limit=2&cursor={cursor}")).await.body;
        let next = second["items"].as_array().unwrap();
        assert!(!next.is_empty() && next[0]["seq"].as_i64() < items[1]["seq"].as_i64());
        assert!(page("decision=deny").await.body["items"].as_array().unwrap().iter().all(|i| i["decision"] == "deny"));
        page("decision=maybe").await.assert_error(StatusCode::BAD_REQUEST, "invalid_request");
        page("limit=0").await.assert_error(StatusCode::BAD_REQUEST, "invalid_request");
        page("cursor=abc").await.assert_error(StatusCode::BAD_REQUEST, "invalid_request");
        page("since=yesterday").await.assert_error(StatusCode::BAD_REQUEST, "invalid_request");
        page("bogus=1").await.assert_error(StatusCode::BAD_REQUEST, "invalid_request");
        // Not an admin: refused. Another tenant's admin: sees only its own tenant.
        srv.call(Method::GET, "/admin/audit", Some(&key), None).await.assert_error(StatusCode::FORBIDDEN, "forbidden");
        let other = srv.create_tenant("elsewhere").await;
        let admin_b = srv.create_principal(&other, "boss", &["admin"]).await;
        let key_b = srv.api_key(&admin_b, None, None).await.1;
        let theirs = srv.call(Method::GET, "/admin/audit?limit=1000", Some(&key_b), None).await;
        assert_eq!(theirs.status, StatusCode::OK, "{:?}", theirs.body);
        let items = theirs.body["items"].as_array().unwrap();
        assert!(items.iter().all(|i| i["tenant"] == other.as_str()), "{items:?}");
        assert!(!items.iter().any(|i| i["target"] == format!("context:{}", ids[0])));
    }
}

/// Creates `n` contexts and returns their ids.
async fn created_ids(srv: &TestServer, key: &str, n: usize) -> Vec<String> {
    let mut ids = Vec::new();
    for _ in 0..n {
        ids.push(srv.create_context(key, sample_context()).await["context_id"].as_str().unwrap().to_string());
    }
    ids
}

/// SQL that stores every record in a block of its own (the triggers must be off), so
/// that a test can edit, delete and move single records as someone with the database
/// could.
async fn one_record_per_block(db: &dyn Database) -> String {
    use std::fmt::Write as _;
    let text = |s: &str| format!("'{}'", s.replace('\'', "''"));
    let opt = |s: &Option<String>| s.as_deref().map_or_else(|| "NULL".to_string(), text);
    let mut sql = String::from("DELETE FROM audit_blocks;");
    for block in db.audit_blocks(i64::MIN, u32::MAX).await.unwrap() {
        for line in audit_block::lines(&block.records) {
            let b = audit_block::rebuild(&[line.unwrap()]).unwrap();
            let i = &b.index;
            write!(
                sql,
                "INSERT INTO audit_blocks (first_seq, last_seq, min_time, max_time, tenants, principals, actions, \
                 targets, decisions, records) VALUES ({}, {}, {}, {}, {}, {}, {}, {}, {}, {});",
                b.first_seq,
                b.last_seq,
                text(&i.min_time),
                text(&i.max_time),
                opt(&i.tenants),
                opt(&i.principals),
                opt(&i.actions),
                opt(&i.targets),
                opt(&i.decisions),
                text(&b.records)
            )
            .unwrap();
        }
    }
    sql
}

/// Edits the decision of record `seq` (stored in a block of its own) behind the
/// server's back: `allow` becomes `xallow`.
fn edit_decision(seq: i64) -> String {
    format!(
        "UPDATE audit_blocks SET records = replace(records, '\"decision\":\"', '\"decision\":\"x') WHERE first_seq = {seq}"
    )
}

fn unedit_decision(seq: i64) -> String {
    format!(
        "UPDATE audit_blocks SET records = replace(records, '\"decision\":\"x', '\"decision\":\"') WHERE first_seq = {seq}"
    )
}

/// Takes the append-only triggers away, as someone with the database's keys could.
async fn unguard(srv: &TestServer) {
    match srv.backend {
        Backend::Sqlite => {
            srv.raw_sql(
                "DROP TRIGGER audit_blocks_no_update; DROP TRIGGER audit_blocks_no_delete; \
                 DROP TRIGGER audit_checkpoints_no_update; DROP TRIGGER audit_checkpoints_no_delete",
            )
            .await
        }
        Backend::Postgres => {
            srv.raw_sql(
                "ALTER TABLE audit_blocks DISABLE TRIGGER USER; ALTER TABLE audit_checkpoints DISABLE TRIGGER USER",
            )
            .await
        }
    }
}

/// kill -9 in the middle of heavy writes: every write that was acknowledged has its
/// record, and the chain left behind verifies (`ctxguard audit verify`, exit code 0);
/// after an edit the same command names the record and exits non-zero.
async fn killed_mid_write(db_url: Option<&str>) {
    let dir = tempfile::tempdir().unwrap();
    let data = dir.path().join("data");
    let mut server = crate::process::serve_with(&data, db_url, &dir.path().join("log"), &[]);
    let admin = std::fs::read_to_string(data.join("admin.key")).unwrap().trim().to_string();
    let http = reqwest::Client::new();
    let stop = std::sync::Arc::new(std::sync::atomic::AtomicBool::new(false));
    let mut writers = Vec::new();
    for _ in 0..16 {
        let (http, url, key, stop) = (http.clone(), server.url.clone(), admin.clone(), stop.clone());
        writers.push(tokio::spawn(async move {
            let mut acknowledged = Vec::new();
            while !stop.load(std::sync::atomic::Ordering::Relaxed) {
                let Ok(r) = http.post(format!("{url}/context")).bearer_auth(&key).json(&sample_context()).send().await
                else {
                    break;
                };
                if r.status() != StatusCode::CREATED {
                    break;
                }
                let Ok(body) = r.json::<serde_json::Value>().await else { break };
                acknowledged.push(body["context_id"].as_str().unwrap().to_string());
            }
            acknowledged
        }));
    }
    tokio::time::sleep(Duration::from_millis(1500)).await;
    server.child.kill().unwrap();
    server.child.wait().unwrap();
    stop.store(true, std::sync::atomic::Ordering::Relaxed);
    let mut acknowledged = Vec::new();
    for w in writers {
        acknowledged.extend(w.await.unwrap());
    }
    assert!(acknowledged.len() > 50, "only {} writes before the kill", acknowledged.len());

    let location = match db_url {
        Some(url) => ctxguard::store::DatabaseLocation::Postgres { url: url.to_string(), max_connections: 2 },
        None => ctxguard::store::DatabaseLocation::Sqlite(data.join("ctxguard.db")),
    };
    let db = ctxguard::store::open(&location).await.unwrap();
    let recorded: std::collections::HashSet<String> = db
        .audit_records(1, 1_000_000)
        .await
        .unwrap()
        .into_iter()
        .filter(|r| r.action == "context.create" && r.decision == "allow")
        .filter_map(|r| r.target)
        .collect();
    for id in &acknowledged {
        assert!(recorded.contains(&format!("context:{id}")), "acknowledged {id} has no record");
    }
    let cli = |args: &[&str]| {
        let mut cmd = std::process::Command::new(crate::process::BIN);
        cmd.env_clear().args(args).arg("--data-dir").arg(&data);
        if let Some(url) = db_url {
            cmd.arg("--database-url").arg(url);
        }
        cmd.output().unwrap()
    };
    let sound = cli(&["audit", "verify"]);
    let said = String::from_utf8_lossy(&sound.stdout).to_string() + &String::from_utf8_lossy(&sound.stderr);
    assert!(sound.status.success() && said.contains("audit log is sound"), "{said}");

    let unguard = match db_url {
        Some(_) => "ALTER TABLE audit_blocks DISABLE TRIGGER USER",
        None => "DROP TRIGGER audit_blocks_no_update; DROP TRIGGER audit_blocks_no_delete",
    };
    let edit = async |sql: &str| match &location {
        ctxguard::store::DatabaseLocation::Postgres { url, .. } => {
            let pool = sqlx::PgPool::connect(url).await.unwrap();
            sqlx::raw_sql(sqlx::AssertSqlSafe(sql)).execute(&pool).await.unwrap();
            pool.close().await;
        }
        ctxguard::store::DatabaseLocation::Sqlite(path) => {
            let pool = sqlx::SqlitePool::connect(&format!("sqlite://{}", path.display())).await.unwrap();
            sqlx::raw_sql(sqlx::AssertSqlSafe(sql)).execute(&pool).await.unwrap();
            pool.close().await;
        }
    };
    edit(unguard).await;
    edit(&one_record_per_block(&*db).await).await;
    edit(&edit_decision(7)).await;
    let broken = cli(&["audit", "verify"]);
    let said = String::from_utf8_lossy(&broken.stderr).to_string();
    assert!(!broken.status.success() && said.contains("record 7 was altered"), "{said}");
    db.close().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sqlite_killed_mid_write_loses_no_acknowledged_record() {
    killed_mid_write(None).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn postgres_killed_mid_write_loses_no_acknowledged_record() {
    let Some(pg) = crate::support::PgSchema::create().await else { return };
    killed_mid_write(Some(&pg.url())).await;
    pg.drop_schema().await;
}
