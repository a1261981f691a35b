//! The audit log's block storage (docs/audit.md "Storage"): queries through the blocks'
//! index find exactly what a full scan finds; retention cuts inside a block; records
//! stored one per row before blocks move into blocks with their hashes as stored.

use std::sync::Arc;

use ctxguard::audit::checkpoint::CheckpointKeys;
use ctxguard::audit::verify::{self, Break};
use ctxguard::domain::audit::{
    Action, Actor, AuditEvent, AuditRecord, Channel, GENESIS, Outcome, PendingRecord, RequestMeta, Target,
};
use ctxguard::domain::audit_block::BLOCK_RECORDS;
use ctxguard::domain::{ContextId, PrincipalId, TenantId, Timestamp};
use ctxguard::store::{AuditQuery, Database};

use crate::backend_tests;
use crate::support::Backend;

/// `n` rendered records over three tenants, seven contexts and both decisions, one
/// millisecond apart from `start`.
/// Fresh tenants and contexts for [`events`] to spread records over.
fn subjects() -> ([TenantId; 3], [ContextId; 7]) {
    (std::array::from_fn(|_| TenantId::new_random()), std::array::from_fn(|_| ContextId::new_random()))
}

fn events(n: usize, start: Timestamp, tenants: &[TenantId; 3], contexts: &[ContextId; 7]) -> Vec<PendingRecord> {
    let principal = PrincipalId::new_random();
    let policies: Arc<[String]> = Arc::from(["builtin.writer".to_string()]);
    (0..n)
        .map(|i| {
            let actor = Actor {
                tenant: Some(tenants[i % 3]),
                principal: Some(principal),
                name: Some("agent:many".into()),
                client_id: None,
                credential: None,
            };
            let outcome = if i % 5 == 0 { Outcome::Deny("forbidden".into()) } else { Outcome::Allow(policies.clone()) };
            let target = Some(Target::Context(contexts[i % 7]));
            let request = RequestMeta { id: None, ip: None, channel: Channel::Http };
            let mut event = AuditEvent::new(Action::ContextReplace, actor, target, outcome, request);
            event.time = Timestamp::from_millis(start.millis() + i as i64);
            event.render()
        })
        .collect()
}

/// What `query` must find, by brute force over `all` (ascending).
fn expected(all: &[AuditRecord], q: &AuditQuery) -> Vec<i64> {
    let is = |want: &Option<String>, have: &Option<String>| want.is_none() || want == have;
    let since = q.since.map(|t| t.to_rfc3339_millis());
    let until = q.until.map(|t| t.to_rfc3339_millis());
    all.iter()
        .rev()
        .filter(|r| {
            q.before_seq.is_none_or(|b| r.seq < b)
                && is(&q.tenant, &r.tenant)
                && is(&q.principal, &r.principal)
                && is(&q.action, &Some(r.action.clone()))
                && is(&q.target, &r.target)
                && is(&q.decision, &Some(r.decision.clone()))
                && since.as_ref().is_none_or(|s| r.time >= *s)
                && until.as_ref().is_none_or(|u| r.time < *u)
        })
        .take(q.limit as usize)
        .map(|r| r.seq)
        .collect()
}

async fn first_break(db: &dyn Database) -> Option<Break> {
    let keys = CheckpointKeys::load(db).await.unwrap();
    verify::verify(db, &keys, None, |_| {}).await.unwrap().first_break
}

backend_tests! {
    async fn queries_through_the_index_find_what_a_full_scan_finds(srv) {
        let db = srv.database().await;
        let (tenants, contexts) = subjects();
        let start = Timestamp::from_millis(Timestamp::now().millis() - 60_000);
        let mut batch = events(700, start, &tenants, &contexts);
        let (last, _) = db.append_audit(&mut batch).await.unwrap();
        let first = last - 699;
        // One block per 256 records of the batch.
        let blocks = db.audit_blocks(first, 10).await.unwrap();
        let sizes: Vec<i64> = blocks.iter().take(3).map(|b| b.last_seq - b.first_seq + 1).collect();
        assert_eq!(sizes, vec![BLOCK_RECORDS as i64, BLOCK_RECORDS as i64, 700 - 2 * BLOCK_RECORDS as i64]);
        let all: Vec<AuditRecord> = db.audit_records(1, 100_000).await.unwrap();
        assert_eq!(all.iter().filter(|r| r.seq >= first && r.seq <= last).count(), 700);

        let t = |i: usize| Some(tenants[i].to_string());
        let c = |i: usize| Some(format!("context:{}", contexts[i]));
        let at = |i: i64| Some(Timestamp::from_millis(start.millis() + i));
        let queries = [
            AuditQuery { tenant: t(1), limit: 1000, ..Default::default() },
            AuditQuery { tenant: t(2), target: c(3), limit: 1000, ..Default::default() },
            AuditQuery { tenant: t(0), decision: Some("deny".into()), limit: 7, ..Default::default() },
            AuditQuery { tenant: t(0), since: at(100), until: at(420), limit: 1000, ..Default::default() },
            AuditQuery { target: c(5), before_seq: Some(first + 350), limit: 20, ..Default::default() },
            AuditQuery { tenant: t(1), action: Some("context.read".into()), limit: 10, ..Default::default() },
            AuditQuery { target: Some("context:".into()), limit: 10, ..Default::default() },
        ];
        for q in &queries {
            let found: Vec<i64> = db.audit_query(q).await.unwrap().iter().map(|r| r.seq).collect();
            assert_eq!(found, expected(&all, q), "{q:?}");
        }
        // The filters select: every query above but the last two found something.
        assert!(queries[..5].iter().all(|q| !expected(&all, q).is_empty()));
        assert_eq!(first_break(&*db).await, None);
        db.close().await;
    }

    async fn retention_can_cut_inside_a_block(srv) {
        let db = srv.database().await;
        let (tenants, contexts) = subjects();
        let mut batch = events(10, Timestamp::now(), &tenants, &contexts);
        let (last, _) = db.append_audit(&mut batch).await.unwrap();
        let through = last - 5;
        let cut_hash = batch[4].record.hash.clone();
        let base_before = db.audit_ends().await.unwrap().base.0;
        assert_eq!(db.prune_audit(through).await.unwrap(), (through - base_before) as u64);
        assert_eq!(db.audit_ends().await.unwrap().base, (through, cut_hash));
        // The block's later records stay, as a block of their own, byte for byte.
        let kept = db.audit_records(1, 100).await.unwrap();
        let seqs: Vec<i64> = kept.iter().map(|r| r.seq).take(5).collect();
        assert_eq!(seqs, (through + 1..=last).collect::<Vec<_>>());
        assert_eq!(kept[..5], batch[5..].iter().map(|p| p.record.clone()).collect::<Vec<_>>()[..]);
        assert_eq!(db.audit_blocks(through + 1, 1).await.unwrap()[0].first_seq, through + 1);
        // Pruned behind the checkpoints' back (no checkpoint of `through`): named.
        assert_eq!(first_break(&*db).await, Some(Break::UnvouchedBase { seq: through }));
        db.close().await;
    }

    async fn records_stored_one_per_row_move_into_blocks_as_they_were(srv) {
        let db = srv.database().await;
        let ends = db.audit_ends().await.unwrap();
        assert_eq!(db.legacy_audit_records().await.unwrap(), 0);
        let (tenants, contexts) = subjects();
        // 300 records chained after the head, written as before blocks: one row each.
        let mut prev = ends.head.1.clone();
        let mut rows = Vec::new();
        for (i, mut p) in events(300, Timestamp::now(), &tenants, &contexts).into_iter().enumerate() {
            p.record.seal(ends.head.0 + 1 + i as i64, std::mem::take(&mut prev));
            prev.clone_from(&p.record.hash);
            rows.push(p);
        }
        // One row edited after it was written: the move must not launder it.
        let edited = ends.head.0 + 120;
        let mut sql = String::new();
        for p in &rows {
            let r = &p.record;
            let q = |s: &Option<String>| s.as_ref().map_or("NULL".to_string(), |s| format!("'{}'", s.replace('\'', "''")));
            let reason = if r.seq == edited { Some("edited".to_string()) } else { r.reason.clone() };
            sql.push_str(&format!(
                "INSERT INTO audit_log (seq, time_ms, tenant_id, principal_id, principal_name, client_id, credential, \
                 channel, action, target, decision, reason, policies, ip, request_id, prev_hash, hash) VALUES \
                 ({}, {}, {}, {}, {}, NULL, NULL, '{}', '{}', {}, '{}', {}, '{}', NULL, NULL, '{}', '{}');",
                r.seq,
                p.time_ms,
                q(&r.tenant),
                q(&r.principal),
                q(&r.principal_name),
                r.channel,
                r.action,
                q(&r.target),
                r.decision,
                q(&reason),
                serde_json::to_string(&r.policies).unwrap(),
                r.prev_hash,
                r.hash
            ));
        }
        sql.push_str(&format!("UPDATE audit_head SET seq = {}, hash = '{}' WHERE id = 1;", ends.head.0 + 300, prev));
        srv.raw_sql(&sql).await;
        assert_eq!(db.legacy_audit_records().await.unwrap(), 300);

        let mut moved = 0;
        loop {
            let n = db.convert_legacy_audit(256).await.unwrap();
            if n == 0 {
                break;
            }
            moved += n;
        }
        assert_eq!((moved, db.legacy_audit_records().await.unwrap()), (300, 0));
        let back = db.audit_records(ends.head.0 + 1, 1000).await.unwrap();
        assert_eq!(back.len(), 300);
        for (read, written) in back.iter().zip(&rows) {
            if read.seq == edited {
                assert_eq!((read.reason.as_deref(), &read.hash), (Some("edited"), &written.record.hash));
            } else {
                assert_eq!(read, &written.record);
            }
        }
        assert_eq!(first_break(&*db).await, Some(Break::Altered { seq: edited }));
        // Starting after the edit, the moved chain is whole and reaches the head.
        let keys = CheckpointKeys::load(&*db).await.unwrap();
        let rest = verify::verify(&*db, &keys, Some(edited + 1), |_| {}).await.unwrap();
        assert_eq!((rest.first_break, rest.last_seq), (None, Some(ends.head.0 + 300)));
        assert_ne!(prev, GENESIS);
        db.close().await;
    }

    async fn a_writer_that_remembers_the_chains_end_never_forks_it(srv) {
        let db = srv.database().await;
        let (tenants, contexts) = subjects();
        let start = Timestamp::from_millis(Timestamp::now().millis() - 60_000);
        let mut first = events(3, start, &tenants, &contexts);
        let t1 = db.append_audit(&mut first).await.unwrap();
        // After the end it left: written there.
        let mut next = events(2, start, &tenants, &contexts);
        let t2 = db.append_audit_after(&mut next, &t1).await.unwrap().expect("the chain had not moved");
        assert_eq!(t2.0, t1.0 + 2);
        // Another process appends; the remembered end is stale.
        let mut other = events(1, start, &tenants, &contexts);
        let t3 = db.append_audit(&mut other).await.unwrap();
        let end_of = |blocks: Vec<ctxguard::domain::audit_block::Block>| blocks.last().map(|b| b.last_seq);
        for stale in [t2.clone(), (t3.0, t2.1.clone())] {
            let mut late = events(2, start, &tenants, &contexts);
            match db.append_audit_after(&mut late, &stale).await.unwrap() {
                // SQLite: nothing written; the writer appends the usual way next.
                None => assert_eq!(end_of(db.audit_blocks(t1.0 - 2, 100).await.unwrap()), Some(t3.0)),
                // PostgreSQL (replicas are the rule): appended after the true end.
                Some(tail) => {
                    assert!(srv.backend == Backend::Postgres);
                    let t = db.append_audit(&mut events(1, start, &tenants, &contexts)).await.unwrap();
                    assert_eq!(t.0, tail.0 + 1);
                }
            }
        }
        if srv.backend == Backend::Sqlite {
            assert_eq!(end_of(db.audit_blocks(t1.0 - 2, 100).await.unwrap()), Some(t3.0));
        }
        assert_eq!(first_break(&*db).await, None);
    }
}
