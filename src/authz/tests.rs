//! The role × action decision table (docs/policies.md) at the unit level: every built-in role ×
//! action × resource relation (own, other's, shared, foreign tenant) × credential
//! binding, plus reload and the rules no policy can lift.

use std::sync::Arc;

use super::*;
use crate::authn::test_caller as caller;
use crate::domain::{ContextBinding, ContextGrant, GrantId, Grantee, PrincipalId, Timestamp};

fn context(tenant: TenantId, owner: PrincipalId) -> ContextFacts {
    ContextFacts {
        id: crate::domain::ContextId::new_random(),
        tenant,
        owner,
        labels: Arc::from(Vec::<String>::new()),
        grants: Arc::from(Vec::<ContextGrant>::new()),
    }
}

fn with_grant(mut c: ContextFacts, grantee: Grantee, role: Role) -> ContextFacts {
    c.grants = Arc::from(vec![ContextGrant {
        id: GrantId::new_random(),
        grantee,
        role,
        granted_by: PrincipalId::new_random(),
        created_at: Timestamp::now(),
    }]);
    c
}

fn bound(c: &ContextFacts, actions: &str) -> Option<Arc<ContextBinding>> {
    let details = format!(r#"[{{"type":"ctxguard_context","context_ids":["{}"],"actions":{actions}}}]"#, c.id);
    Some(Arc::new(ContextBinding::from_authorization_details(&details).unwrap()))
}

/// "A" allowed, "404" not visible, "403" forbidden.
fn outcome(r: &Result<Arc<Decision>, Denial>) -> &'static str {
    match r {
        Ok(_) => "A",
        Err(Denial::NotVisible) => "404",
        Err(Denial::Forbidden(_)) => "403",
        Err(Denial::InsufficientScope(_)) => "403s",
    }
}

const CONTEXT_ACTIONS: [Action; 5] = [Action::Read, Action::Inject, Action::Write, Action::Delete, Action::Share];

#[test]
fn role_table_on_contexts() {
    use Role::*;
    let authz = Authorizer::builtin();
    // Expected outcome per role for read, inject, write, delete, share — on a context
    // owned by someone else, on the caller's own context, and on a foreign tenant's.
    let table: [(Option<Role>, [&str; 5], [&str; 5]); 6] = [
        (None, ["404"; 5], ["404"; 5]),
        (Some(Reader), ["A", "403", "403", "403", "403"], ["A", "403", "403", "403", "403"]),
        (Some(Injector), ["A", "A", "403", "403", "403"], ["A", "A", "403", "403", "403"]),
        (Some(Writer), ["A", "A", "403", "403", "403"], ["A", "A", "A", "403", "403"]),
        (Some(Maintainer), ["A"; 5], ["A"; 5]),
        (Some(Admin), ["A"; 5], ["A"; 5]),
    ];
    for (role, others, own) in table {
        let c = caller(role.as_slice(), ScopeSet::all());
        let theirs = context(c.principal.tenant, PrincipalId::new_random());
        let mine = context(c.principal.tenant, c.principal.id);
        let foreign = context(TenantId::new_random(), c.principal.id);
        for (i, action) in CONTEXT_ACTIONS.into_iter().enumerate() {
            let got = outcome(&authz.authorize(&c, action, Resource::Context(&theirs)));
            assert_eq!(got, others[i], "{role:?} {action:?} on another's context");
            let got = outcome(&authz.authorize(&c, action, Resource::Context(&mine)));
            assert_eq!(got, own[i], "{role:?} {action:?} on own context");
            let got = outcome(&authz.authorize(&c, action, Resource::Context(&foreign)));
            assert_eq!(got, "404", "{role:?} {action:?} on a foreign tenant's context");
        }
    }
}

#[test]
fn role_table_on_tenants() {
    use Role::*;
    let authz = Authorizer::builtin();
    // list, create, admin on the own tenant.
    let table: [(Option<Role>, [&str; 3]); 6] = [
        (None, ["A", "403", "403"]),
        (Some(Reader), ["A", "403", "403"]),
        (Some(Injector), ["A", "403", "403"]),
        (Some(Writer), ["A", "A", "403"]),
        (Some(Maintainer), ["A", "A", "403"]),
        (Some(Admin), ["A", "A", "A"]),
    ];
    for (role, expected) in table {
        let c = caller(role.as_slice(), ScopeSet::all());
        for (i, action) in [Action::List, Action::Create, Action::Admin].into_iter().enumerate() {
            let own = outcome(&authz.authorize(&c, action, Resource::Tenant(c.principal.tenant)));
            assert_eq!(own, expected[i], "{role:?} {action:?}");
            let foreign = outcome(&authz.authorize(&c, action, Resource::Tenant(TenantId::new_random())));
            assert_eq!(foreign, "404", "{role:?} {action:?} on a foreign tenant");
        }
    }
}

#[test]
fn grants_extend_roles_on_one_context_only() {
    let authz = Authorizer::builtin();
    let c = caller(&[], ScopeSet::all());
    let shared = with_grant(
        context(c.principal.tenant, PrincipalId::new_random()),
        Grantee::Principal(c.principal.id),
        Role::Injector,
    );
    let other = context(c.principal.tenant, PrincipalId::new_random());
    let got: Vec<&str> =
        CONTEXT_ACTIONS.iter().map(|a| outcome(&authz.authorize(&c, *a, Resource::Context(&shared)))).collect();
    assert_eq!(got, ["A", "A", "403", "403", "403"]);
    assert_eq!(outcome(&authz.authorize(&c, Action::Read, Resource::Context(&other))), "404");
    // A role grant reaches everyone holding that role (or more), nobody else.
    let readers = with_grant(
        context(c.principal.tenant, PrincipalId::new_random()),
        Grantee::Role(Role::Reader),
        Role::Maintainer,
    );
    let reader = caller(&[Role::Reader], ScopeSet::all());
    let reader_in_tenant =
        Caller { principal: Principal { tenant: readers.tenant, ..reader.principal.clone() }, ..reader };
    assert_eq!(outcome(&authz.authorize(&reader_in_tenant, Action::Delete, Resource::Context(&readers))), "A");
    assert_eq!(outcome(&authz.authorize(&c, Action::Read, Resource::Context(&readers))), "404");
    // A grant is useless across tenants: the grantee id is from another tenant.
    let foreign = with_grant(
        context(TenantId::new_random(), PrincipalId::new_random()),
        Grantee::Principal(c.principal.id),
        Role::Maintainer,
    );
    assert_eq!(outcome(&authz.authorize(&c, Action::Read, Resource::Context(&foreign))), "404");
}

#[test]
fn binding_limits_contexts_and_actions() {
    let authz = Authorizer::builtin();
    let mut c = caller(&[Role::Maintainer], ScopeSet::all());
    let a = context(c.principal.tenant, PrincipalId::new_random());
    let b = context(c.principal.tenant, PrincipalId::new_random());
    c.binding = bound(&a, r#"["read","inject"]"#);
    assert_eq!(outcome(&authz.authorize(&c, Action::Read, Resource::Context(&a))), "A");
    assert_eq!(outcome(&authz.authorize(&c, Action::Inject, Resource::Context(&a))), "A");
    assert_eq!(outcome(&authz.authorize(&c, Action::Delete, Resource::Context(&a))), "403");
    for action in CONTEXT_ACTIONS {
        assert_eq!(outcome(&authz.authorize(&c, action, Resource::Context(&b))), "404", "{action:?} on B");
    }
    assert_eq!(outcome(&authz.authorize(&c, Action::Create, Resource::Tenant(c.principal.tenant))), "403");
    assert_eq!(outcome(&authz.authorize(&c, Action::List, Resource::Tenant(c.principal.tenant))), "A");
    // The binding never adds what the roles lack.
    let mut reader = caller(&[Role::Reader], ScopeSet::all());
    let r = context(reader.principal.tenant, PrincipalId::new_random());
    reader.binding = bound(&r, r#"["read","delete"]"#);
    assert_eq!(outcome(&authz.authorize(&reader, Action::Delete, Resource::Context(&r))), "403");
}

#[test]
fn scopes_narrow_roles() {
    let authz = Authorizer::builtin();
    let c = caller(&[Role::Admin], ScopeSet::parse("context:read").unwrap());
    let res = context(c.principal.tenant, PrincipalId::new_random());
    assert!(authz.authorize(&c, Action::Read, Resource::Context(&res)).is_ok());
    assert_eq!(
        authz.authorize(&c, Action::Inject, Resource::Context(&res)),
        Err(Denial::InsufficientScope(ScopeSet::parse("context:inject").unwrap()))
    );
}

#[test]
fn platform_actions_are_for_the_operator_only() {
    let authz = Authorizer::builtin();
    let mut c = caller(&[Role::Admin], ScopeSet::all());
    let t = Resource::Tenant(c.principal.tenant);
    assert!(matches!(authz.authorize(&c, Action::ManagePlatform, t), Err(Denial::Forbidden(_))));
    c.principal.platform_admin = true;
    assert!(authz.authorize(&c, Action::ManagePlatform, t).is_ok());
    assert!(authz.authorize(&c, Action::Admin, Resource::Tenant(TenantId::new_random())).is_ok());
    // The operator's reach into other tenants is the admin API, not their contexts.
    let foreign = context(TenantId::new_random(), PrincipalId::new_random());
    assert_eq!(authz.authorize(&c, Action::Read, Resource::Context(&foreign)), Err(Denial::NotVisible));
}

#[test]
fn decisions_name_the_determining_policies() {
    let authz = Authorizer::builtin();
    let c = caller(&[Role::Reader], ScopeSet::all());
    let res = context(c.principal.tenant, PrincipalId::new_random());
    let d = authz.authorize(&c, Action::Read, Resource::Context(&res)).unwrap();
    assert_eq!(*d.policies, ["builtin.reader"]);
}

fn write_policy(dir: &std::path::Path, name: &str, text: &str) {
    std::fs::write(dir.join(name), text).unwrap();
}

#[test]
fn custom_policies_apply_and_reload_atomically() {
    let dir = tempfile::tempdir().unwrap();
    write_policy(
        dir.path(),
        "agents.cedar",
        "@id(\"agents-never-delete\")\nforbid (principal is Ctxguard::Agent, action == Ctxguard::Action::\"delete\", resource);\n",
    );
    let authz = Authorizer::load(Some(dir.path().to_path_buf())).unwrap();
    let agent = caller(&[Role::Maintainer], ScopeSet::all()); // test callers are agents
    let res = context(agent.principal.tenant, PrincipalId::new_random());
    match authz.authorize(&agent, Action::Delete, Resource::Context(&res)) {
        Err(Denial::Forbidden(why)) => assert!(why.contains("agents-never-delete"), "{why}"),
        other => panic!("{other:?}"),
    }
    assert!(authz.authorize(&agent, Action::Write, Resource::Context(&res)).is_ok());
    // A broken file: the reload fails with file and line, and the old set stays.
    write_policy(dir.path(), "zz-broken.cedar", "permit (principal, action, resource)\nwhen { principal.nope };");
    let err = authz.reload().unwrap_err();
    assert!(err.file.ends_with("zz-broken.cedar") && err.line == Some(2), "{err}");
    assert_eq!(authz.summary().generation, 1);
    assert!(authz.authorize(&agent, Action::Delete, Resource::Context(&res)).is_err());
    // Fixed: the new set is in force at once.
    std::fs::remove_file(dir.path().join("zz-broken.cedar")).unwrap();
    std::fs::remove_file(dir.path().join("agents.cedar")).unwrap();
    assert_eq!(authz.reload().unwrap().generation, 2);
    assert!(authz.authorize(&agent, Action::Delete, Resource::Context(&res)).is_ok());
}

#[test]
fn a_custom_permit_cannot_cross_tenants_scopes_or_bindings() {
    let dir = tempfile::tempdir().unwrap();
    write_policy(dir.path(), "open.cedar", "permit (principal, action, resource);");
    let authz = Authorizer::load(Some(dir.path().to_path_buf())).unwrap();
    let mut c = caller(&[], ScopeSet::parse("context:read").unwrap());
    let own_tenant = context(c.principal.tenant, PrincipalId::new_random());
    let foreign = context(TenantId::new_random(), PrincipalId::new_random());
    // Inside the tenant the permit-everything policy widens roles (that is its point)…
    assert!(authz.authorize(&c, Action::Read, Resource::Context(&own_tenant)).is_ok());
    // …but never past the tenant, the scopes or the binding.
    assert_eq!(authz.authorize(&c, Action::Read, Resource::Context(&foreign)), Err(Denial::NotVisible));
    assert!(matches!(
        authz.authorize(&c, Action::Delete, Resource::Context(&own_tenant)),
        Err(Denial::InsufficientScope(_))
    ));
    let other = context(c.principal.tenant, PrincipalId::new_random());
    c.binding = bound(&other, r#"["read"]"#);
    assert_eq!(authz.authorize(&c, Action::Read, Resource::Context(&own_tenant)), Err(Denial::NotVisible));
}

#[test]
fn labels_reach_policies() {
    let dir = tempfile::tempdir().unwrap();
    write_policy(
        dir.path(),
        "pii.cedar",
        "@id(\"pii-users-only\")\nforbid (principal, action, resource is Ctxguard::Context)\n\
         when { resource.labels.contains(\"pii\") } unless { principal is Ctxguard::User };",
    );
    let authz = Authorizer::load(Some(dir.path().to_path_buf())).unwrap();
    let agent = caller(&[Role::Admin], ScopeSet::all());
    let mut res = context(agent.principal.tenant, PrincipalId::new_random());
    assert!(authz.authorize(&agent, Action::Read, Resource::Context(&res)).is_ok());
    res.labels = Arc::from(vec!["pii".to_string()]);
    assert_eq!(authz.authorize(&agent, Action::Read, Resource::Context(&res)), Err(Denial::NotVisible));
    let mut user = caller(&[Role::Admin], ScopeSet::all());
    user.principal.kind = crate::domain::PrincipalKind::User;
    user.principal.tenant = agent.principal.tenant;
    assert!(authz.authorize(&user, Action::Read, Resource::Context(&res)).is_ok());
}

mod properties {
    //! No grant set, custom policy set, role or binding lets a principal act across
    //! tenants; none lifts the credential's scopes or binding.

    use proptest::prelude::*;

    use super::*;

    /// Custom policies as an operator might write them, from harmless to reckless.
    const POLICY_POOL: [&str; 8] = [
        "permit (principal, action, resource);",
        "permit (principal, action, resource) when { principal.platform_admin == false };",
        "permit (principal, action, resource is Ctxguard::Context) when { resource.labels.contains(\"public\") };",
        "permit (principal, action, resource is Ctxguard::Context) when { context.is_owner };",
        "permit (principal, action, resource is Ctxguard::Context) when { context.granted_roles.contains(\"reader\") };",
        "forbid (principal, action == Ctxguard::Action::\"delete\", resource);",
        "permit (principal is Ctxguard::Agent, action, resource is Ctxguard::Tenant);",
        "permit (principal, action in [Ctxguard::Action::\"admin\", Ctxguard::Action::\"create\"], resource);",
    ];
    const ACTIONS: [Action; 8] = Action::CEDAR;

    fn role(i: u8) -> Option<Role> {
        Role::ALL.get(usize::from(i)).copied()
    }

    prop_compose! {
        fn grants(me: PrincipalId)(specs in prop::collection::vec((any::<bool>(), 0u8..5, 0u8..5), 0..6)) -> Vec<ContextGrant> {
            specs.into_iter().map(|(to_me, grantee_role, granted)| ContextGrant {
                id: GrantId::new_random(),
                grantee: if to_me { Grantee::Principal(me) } else { Grantee::Role(role(grantee_role).unwrap_or(Role::Reader)) },
                role: role(granted).unwrap_or(Role::Maintainer),
                granted_by: PrincipalId::new_random(),
                created_at: Timestamp::now(),
            }).collect()
        }
    }

    fn setup(policy_mask: u8, caller_role: u8, platform: bool, scope_bits: u8) -> (Authorizer, Caller) {
        let custom: Vec<(String, String)> = POLICY_POOL
            .iter()
            .enumerate()
            .filter(|(i, _)| policy_mask & (1 << i) != 0)
            .map(|(i, p)| (format!("p{i}.cedar"), p.to_string()))
            .collect();
        let authz = Authorizer::from_sources(&custom).unwrap();
        let scopes: ScopeSet =
            Scope::ALL.into_iter().enumerate().filter(|(i, _)| scope_bits & (1 << i) != 0).map(|(_, s)| s).collect();
        let mut c = caller(role(caller_role).as_slice(), scopes);
        c.principal.platform_admin = platform;
        (authz, c)
    }

    proptest! {
        #![proptest_config(ProptestConfig::with_cases(256))]

        #[test]
        fn nothing_crosses_tenants(
            policy_mask in any::<u8>(),
            caller_role in 0u8..6,
            platform in any::<bool>(),
            action_i in 0usize..8,
            labels in prop::collection::vec(prop_oneof![Just("public".to_string()), "[a-z]{1,6}"], 0..3),
            seed_grants in grants(PrincipalId::new_random()),
            owned in any::<bool>(),
        ) {
            let (authz, c) = setup(policy_mask, caller_role, platform, 0x3f);
            // Grants in the foreign context name the caller directly, too.
            let mut gs = seed_grants;
            gs.push(ContextGrant { grantee: Grantee::Principal(c.principal.id), ..gs.first().cloned().unwrap_or(ContextGrant {
                id: GrantId::new_random(), grantee: Grantee::Role(Role::Reader), role: Role::Maintainer,
                granted_by: PrincipalId::new_random(), created_at: Timestamp::now() }) });
            let foreign = ContextFacts {
                id: crate::domain::ContextId::new_random(),
                tenant: TenantId::new_random(),
                owner: if owned { c.principal.id } else { PrincipalId::new_random() },
                labels: Arc::from(labels),
                grants: Arc::from(gs),
            };
            let action = ACTIONS[action_i];
            let on_context = authz.authorize(&c, action, Resource::Context(&foreign));
            if action.on_context().is_some() {
                prop_assert_eq!(on_context, Err(Denial::NotVisible));
            } else {
                prop_assert!(matches!(on_context, Err(Denial::Forbidden(_))), "{:?}", on_context);
            }
            let on_tenant = authz.authorize(&c, action, Resource::Tenant(foreign.tenant));
            if platform && action == Action::Admin {
                prop_assert!(on_tenant.is_ok());
            } else if action.on_context().is_some() {
                prop_assert!(matches!(on_tenant, Err(Denial::Forbidden(_))), "{:?}", on_tenant);
            } else {
                prop_assert_eq!(on_tenant, Err(Denial::NotVisible));
            }
        }

        #[test]
        fn scopes_and_bindings_always_hold(
            policy_mask in any::<u8>(),
            caller_role in 0u8..6,
            scope_bits in any::<u8>(),
            action_i in 0usize..8,
            bind in any::<bool>(),
            seed_grants in grants(PrincipalId::new_random()),
        ) {
            let (authz, mut c) = setup(policy_mask, caller_role, false, scope_bits);
            let mine = ContextFacts { grants: Arc::from(seed_grants), ..context(c.principal.tenant, PrincipalId::new_random()) };
            let elsewhere = context(c.principal.tenant, PrincipalId::new_random());
            if bind {
                c.binding = bound(&elsewhere, r#"["read"]"#);
            }
            let action = ACTIONS[action_i];
            let problems = scope_and_binding_violations(&authz, &c, action, bind, &mine, &elsewhere);
            prop_assert!(problems.is_empty(), "{:?}", problems);
        }
    }

    /// What `scopes_and_bindings_always_hold` forbids, as a list of violations, and how
    /// many of the three decisions allowed something (so that a test can show the
    /// property is not vacuously true).
    fn scope_and_binding_violations(
        authz: &Authorizer,
        c: &Caller,
        action: Action,
        bind: bool,
        mine: &ContextFacts,
        elsewhere: &ContextFacts,
    ) -> Vec<String> {
        let mut v = Vec::new();
        let scoped = action.required_scopes().is_subset_of(&c.scopes);
        let on_mine = authz.authorize(c, action, Resource::Context(mine));
        if on_mine.is_ok() && !(action.on_context().is_some() && scoped && !bind) {
            v.push(format!("{action:?} on an unbound context allowed: scoped {scoped}, bound elsewhere {bind}"));
        }
        if !scoped && !matches!(on_mine, Err(Denial::InsufficientScope(_) | Denial::NotVisible | Denial::Forbidden(_)))
        {
            v.push(format!("{action:?} without its scope answered {on_mine:?}"));
        }
        let on_tenant = authz.authorize(c, action, Resource::Tenant(c.principal.tenant));
        if on_tenant.is_ok() && !(scoped && (!bind || action == Action::List)) {
            v.push(format!("{action:?} on the tenant allowed: scoped {scoped}, bound {bind}"));
        }
        if bind && authz.authorize(c, action, Resource::Context(elsewhere)).is_ok() && action != Action::Read {
            v.push(format!("a token bound to read did {action:?} on its context"));
        }
        v
    }

    /// The property above on a deterministic grid, counting what was allowed: were the
    /// authorizer to refuse everything, the property would hold and prove nothing.
    #[test]
    fn scopes_and_bindings_hold_and_are_not_vacuous() {
        let (mut allowed_mine, mut allowed_tenant, mut allowed_bound) = (0, 0, 0);
        for caller_role in 0u8..6 {
            for scope_bits in [0x3f_u8, 0x01, 0x04, 0x00] {
                for bind in [false, true] {
                    let (authz, mut c) = setup(0, caller_role, false, scope_bits);
                    let mine = context(c.principal.tenant, c.principal.id);
                    let elsewhere = context(c.principal.tenant, c.principal.id);
                    if bind {
                        c.binding = bound(&elsewhere, r#"["read"]"#);
                    }
                    for action in ACTIONS {
                        let problems = scope_and_binding_violations(&authz, &c, action, bind, &mine, &elsewhere);
                        assert!(problems.is_empty(), "{problems:?}");
                        allowed_mine += usize::from(authz.authorize(&c, action, Resource::Context(&mine)).is_ok());
                        allowed_tenant +=
                            usize::from(authz.authorize(&c, action, Resource::Tenant(c.principal.tenant)).is_ok());
                        allowed_bound +=
                            usize::from(bind && authz.authorize(&c, action, Resource::Context(&elsewhere)).is_ok());
                    }
                }
            }
        }
        assert!(
            allowed_mine > 10 && allowed_tenant > 5 && allowed_bound > 2,
            "{allowed_mine} / {allowed_tenant} / {allowed_bound}"
        );
    }
}

/// The example policies of docs/policies.md do what the page says.
#[test]
fn the_documented_example_policies() {
    let dir = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("examples/policies");
    let authz = Authorizer::load(Some(dir)).unwrap();
    let maintainer_agent = caller(&[Role::Maintainer], ScopeSet::all());
    let tenant = maintainer_agent.principal.tenant;
    let in_tenant = |mut c: Caller, kind: crate::domain::PrincipalKind| {
        c.principal.tenant = tenant;
        c.principal.kind = kind;
        c
    };
    use crate::domain::PrincipalKind::{Agent, Service, User};
    let plain = context(tenant, PrincipalId::new_random());
    // Agents never delete; people still do.
    assert!(matches!(
        authz.authorize(&maintainer_agent, Action::Delete, Resource::Context(&plain)),
        Err(Denial::Forbidden(_))
    ));
    assert!(authz.authorize(&maintainer_agent, Action::Write, Resource::Context(&plain)).is_ok());
    let person = in_tenant(caller(&[Role::Maintainer], ScopeSet::all()), User);
    assert!(authz.authorize(&person, Action::Delete, Resource::Context(&plain)).is_ok());
    // Confidential: not for tenant-wide roles, but for owner, people and grantees.
    let mut secret = context(tenant, PrincipalId::new_random());
    secret.labels = Arc::from(vec!["confidential".to_string()]);
    let reader = in_tenant(caller(&[Role::Reader], ScopeSet::all()), Agent);
    assert_eq!(authz.authorize(&reader, Action::Read, Resource::Context(&secret)), Err(Denial::NotVisible));
    assert!(authz.authorize(&person, Action::Read, Resource::Context(&secret)).is_ok());
    let owned = ContextFacts { owner: reader.principal.id, ..secret.clone() };
    assert!(authz.authorize(&reader, Action::Read, Resource::Context(&owned)).is_ok());
    let shared = with_grant(secret.clone(), Grantee::Principal(reader.principal.id), Role::Reader);
    assert!(authz.authorize(&reader, Action::Read, Resource::Context(&shared)).is_ok());
    // Auditors: service clients named client:audit-* read audit-visible contexts with no role.
    let mut visible = context(tenant, PrincipalId::new_random());
    visible.labels = Arc::from(vec!["audit-visible".to_string()]);
    let mut auditor = in_tenant(caller(&[], ScopeSet::all()), Service);
    auditor.principal.name = "client:audit-eu".into();
    assert!(authz.authorize(&auditor, Action::Read, Resource::Context(&visible)).is_ok());
    assert!(matches!(
        authz.authorize(&auditor, Action::Inject, Resource::Context(&visible)),
        Err(Denial::Forbidden(_))
    ));
    let mut stranger = auditor.clone();
    stranger.principal.name = "client:billing".into();
    assert_eq!(authz.authorize(&stranger, Action::Read, Resource::Context(&visible)), Err(Denial::NotVisible));
}

/// The decision memo is keyed by every input: the same principal and context id with
/// other grants, labels, roles or owner get a fresh decision, never a remembered one.
#[test]
fn the_memo_never_answers_for_changed_inputs() {
    let dir = tempfile::tempdir().unwrap();
    write_policy(
        dir.path(),
        "l.cedar",
        "forbid (principal, action, resource is Ctxguard::Context) when { resource.labels.contains(\"x\") };",
    );
    let authz = Authorizer::load(Some(dir.path().to_path_buf())).unwrap();
    let mut c = caller(&[], ScopeSet::all());
    let bare = context(c.principal.tenant, PrincipalId::new_random());
    assert_eq!(authz.authorize(&c, Action::Read, Resource::Context(&bare)), Err(Denial::NotVisible));
    let shared = with_grant(bare.clone(), Grantee::Principal(c.principal.id), Role::Reader);
    assert!(authz.authorize(&c, Action::Read, Resource::Context(&shared)).is_ok());
    let labelled = ContextFacts { labels: Arc::from(vec!["x".to_string()]), ..shared.clone() };
    assert_eq!(authz.authorize(&c, Action::Read, Resource::Context(&labelled)), Err(Denial::NotVisible));
    assert!(matches!(authz.authorize(&c, Action::Inject, Resource::Context(&shared)), Err(Denial::Forbidden(_))));
    c.principal.roles = RoleSet::new(vec![Role::Injector]);
    assert!(authz.authorize(&c, Action::Inject, Resource::Context(&shared)).is_ok());
    c.principal.roles = RoleSet::new(vec![Role::Writer]);
    assert!(matches!(authz.authorize(&c, Action::Write, Resource::Context(&shared)), Err(Denial::Forbidden(_))));
    let owned = ContextFacts { owner: c.principal.id, ..shared };
    assert!(authz.authorize(&c, Action::Write, Resource::Context(&owned)).is_ok());
}
