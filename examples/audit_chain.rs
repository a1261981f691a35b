//! Writes N synthetic audit records (batches of 512, as the writer commits them) into
//! the SQLite database of a data dir, for measuring `ctxguard audit verify` on a large
//! log (docs/benchmarks.md). Usage: audit_chain DATA_DIR N
use ctxguard::domain::audit::{Action, Actor, AuditEvent, Channel, Credential, Outcome, RequestMeta, Target};
use ctxguard::domain::{ApiKeyId, ContextId, PrincipalId, TenantId};
use ctxguard::store::DatabaseLocation;

#[tokio::main]
async fn main() -> anyhow::Result<()> {
    let mut args = std::env::args().skip(1);
    let dir = std::path::PathBuf::from(args.next().expect("DATA_DIR"));
    let n: usize = args.next().expect("N").parse()?;
    std::fs::create_dir_all(&dir)?;
    let db = ctxguard::store::open(&DatabaseLocation::Sqlite(dir.join("ctxguard.db"))).await?;
    let actor = Actor {
        tenant: Some(TenantId::new_random()),
        principal: Some(PrincipalId::new_random()),
        name: Some("agent:bench".into()),
        client_id: None,
        credential: Some(Credential::ApiKey(ApiKeyId::new_random())),
    };
    let request =
        RequestMeta { id: Some("3f1c0f8e-1111-4222-8333-944455556666".into()), ip: None, channel: Channel::Http };
    let policies: std::sync::Arc<[String]> = std::sync::Arc::from(["builtin.reader".to_string()]);
    let started = std::time::Instant::now();
    let mut left = n;
    while left > 0 {
        let batch = left.min(512);
        let mut records: Vec<_> = (0..batch)
            .map(|_| {
                let target = Some(Target::Context(ContextId::new_random()));
                AuditEvent::new(
                    Action::ContextRead,
                    actor.clone(),
                    target,
                    Outcome::Allow(policies.clone()),
                    request.clone(),
                )
                .render()
            })
            .collect();
        db.append_audit(&mut records).await?;
        left -= batch;
    }
    eprintln!("{n} records written in {:.1} s", started.elapsed().as_secs_f64());
    db.close().await;
    Ok(())
}
