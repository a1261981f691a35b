//! Measures the cost of one authorization decision (`Authorizer::authorize`: the rules
//! in code plus one Cedar evaluation) as p50/p99 over many single decisions, for the
//! built-in policies and for the example custom policies in examples/policies/ — once
//! with every decision evaluated by Cedar (memo off) and once as served in production,
//! where a repeated decision comes from the memo. Run with
//! `cargo run --release --example authz_cost`.

use std::time::{Duration, Instant};

use ctxguard::authn::{Caller, CredentialRef};
use ctxguard::authz::{Action, Authorizer, Resource};
use ctxguard::domain::{
    ApiKeyId, ContextFacts, ContextGrant, ContextId, GrantId, Grantee, Principal, PrincipalId, PrincipalKind, Role,
    RoleSet, ScopeSet, TenantId, Timestamp,
};

fn caller(roles: &[Role], tenant: TenantId) -> Caller {
    Caller {
        principal: Principal {
            id: PrincipalId::new_random(),
            tenant,
            kind: PrincipalKind::Agent,
            name: "bench-agent".into(),
            roles: RoleSet::new(roles.to_vec()),
            disabled: false,
            platform_admin: false,
            created_at: Timestamp::now(),
            tokens_revoked_at: None,
            suspension: None,
        },
        scopes: ScopeSet::all(),
        credential: CredentialRef::ApiKey(ApiKeyId::new_random()),
        binding: None,
        origin: None,
        request: Default::default(),
    }
}

fn context(tenant: TenantId, labels: &[&str], grants: Vec<ContextGrant>) -> ContextFacts {
    ContextFacts {
        id: ContextId::new_random(),
        tenant,
        owner: PrincipalId::new_random(),
        labels: labels.iter().map(|l| l.to_string()).collect::<Vec<_>>().into(),
        grants: grants.into(),
    }
}

fn grant(grantee: Grantee, role: Role) -> ContextGrant {
    ContextGrant {
        id: GrantId::new_random(),
        grantee,
        role,
        granted_by: PrincipalId::new_random(),
        created_at: Timestamp::now(),
    }
}

/// p50 and p99 of `n` single calls of `f`, in microseconds.
fn percentiles(n: usize, mut f: impl FnMut() -> bool) -> (f64, f64, bool) {
    let mut samples = Vec::with_capacity(n);
    let mut last = false;
    for _ in 0..n / 10 {
        last = f(); // warm-up
    }
    for _ in 0..n {
        let t = Instant::now();
        last = std::hint::black_box(f());
        samples.push(t.elapsed());
    }
    samples.sort();
    let us = |d: Duration| d.as_nanos() as f64 / 1000.0;
    (us(samples[n / 2]), us(samples[n * 99 / 100]), last)
}

fn main() -> anyhow::Result<()> {
    let dir = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("examples/policies");
    let load = |dir: Option<std::path::PathBuf>, memo: u64| {
        Authorizer::load_with_memo(dir, memo).map_err(|e| anyhow::anyhow!("{e}"))
    };
    let (builtin, builtin_memo) = (load(None, 0)?, load(None, 100_000)?);
    let (custom, custom_memo) = (load(Some(dir.clone()), 0)?, load(Some(dir), 100_000)?);
    let tenant = TenantId::new_random();
    let reader = caller(&[Role::Reader], tenant);
    let guest = caller(&[], tenant);
    let plain = context(tenant, &[], vec![]);
    let shared = context(
        tenant,
        &["billing", "eu"],
        vec![
            grant(Grantee::Principal(guest.principal.id), Role::Injector),
            grant(Grantee::Role(Role::Writer), Role::Maintainer),
        ],
    );
    let confidential = context(tenant, &["confidential"], vec![]);
    let n = 200_000;
    println!("{:<58} {:>15} {:>15}", "", "Cedar each time", "memoised");
    println!("{:<58} {:>7} {:>7} {:>7} {:>7}", "decision", "p50 µs", "p99 µs", "p50 µs", "p99 µs");
    let cases: [(&str, [&Authorizer; 2], &Caller, Action, &ContextFacts); 6] = [
        ("built-in: reader reads (allowed)", [&builtin, &builtin_memo], &reader, Action::Read, &plain),
        (
            "built-in: grant-only guest injects, 2 grants + labels",
            [&builtin, &builtin_memo],
            &guest,
            Action::Inject,
            &shared,
        ),
        (
            "built-in: reader deletes (denied: two evaluations)",
            [&builtin, &builtin_memo],
            &reader,
            Action::Delete,
            &plain,
        ),
        ("custom set: reader reads (allowed)", [&custom, &custom_memo], &reader, Action::Read, &plain),
        (
            "custom set: reader reads a confidential context (denied)",
            [&custom, &custom_memo],
            &reader,
            Action::Read,
            &confidential,
        ),
        ("custom set: guest injects via grant", [&custom, &custom_memo], &guest, Action::Inject, &shared),
    ];
    for (name, [cold, memo], who, action, ctx) in cases {
        let (p50, p99, allowed) = percentiles(n, || cold.authorize(who, action, Resource::Context(ctx)).is_ok());
        let (m50, m99, same) = percentiles(n, || memo.authorize(who, action, Resource::Context(ctx)).is_ok());
        assert_eq!(allowed, same, "the memo must not change a decision");
        println!(
            "{name:<58} {p50:>7.2} {p99:>7.2} {m50:>7.2} {m99:>7.2}  ({})",
            if allowed { "allowed" } else { "denied" }
        );
    }
    Ok(())
}
