//! Per-context grants: a maintainer shares one context with a principal, or with
//! everyone holding a role in the tenant, by granting a built-in role on that context
//! alone (a principal may be granted roles on single contexts; docs/policies.md).

use std::sync::Arc;

use serde::{Deserialize, Serialize};
use serde_json::{Map, Value};

use super::{ContextId, GrantId, PrincipalId, Role, RoleSet, TenantId, Timestamp};

/// What an authorization decision needs to know about one context, kept in its head
/// row so that deciding never costs another query: owner, labels and grants.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct ContextFacts {
    pub id: ContextId,
    pub tenant: TenantId,
    pub owner: PrincipalId,
    pub labels: Arc<[String]>,
    pub grants: Arc<[ContextGrant]>,
}

/// The most labels taken from one context's metadata (and their longest length).
pub const MAX_LABELS: usize = 32;
pub const MAX_LABEL_LEN: usize = 128;

/// The labels policies see: the strings of `metadata.labels`, deduplicated and sorted;
/// anything else there (numbers, objects, over-long strings) is ignored, so a label
/// never fails a write — it is metadata first.
pub fn labels_of(metadata: &Map<String, Value>) -> Vec<String> {
    let Some(Value::Array(items)) = metadata.get("labels") else {
        return Vec::new();
    };
    let mut labels: Vec<String> =
        items.iter().filter_map(Value::as_str).filter(|l| l.len() <= MAX_LABEL_LEN).map(str::to_string).collect();
    labels.sort();
    labels.dedup();
    labels.truncate(MAX_LABELS);
    labels
}

/// Who a grant is for.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Grantee {
    /// One principal of the context's tenant.
    Principal(PrincipalId),
    /// Every principal of the tenant that holds this role (or a stronger one).
    Role(Role),
}

/// One grant: `grantee` holds `role` on the context it is attached to.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct ContextGrant {
    pub id: GrantId,
    pub grantee: Grantee,
    pub role: Role,
    pub granted_by: PrincipalId,
    pub created_at: Timestamp,
}

/// The most grants one context may carry: a grant list is read with every decision on
/// the context, so it stays small (share with a role for larger audiences).
pub const MAX_GRANTS_PER_CONTEXT: usize = 64;

impl ContextGrant {
    /// Whether this grant applies to a principal with `id` and tenant `roles`.
    pub fn applies_to(&self, id: PrincipalId, roles: &RoleSet) -> bool {
        match self.grantee {
            Grantee::Principal(p) => p == id,
            Grantee::Role(r) => roles.at_least(r),
        }
    }
}

/// The roles `grants` give a principal on one context (the strongest, as a set).
pub fn granted_roles(grants: &[ContextGrant], id: PrincipalId, roles: &RoleSet) -> RoleSet {
    RoleSet::new(grants.iter().filter(|g| g.applies_to(id, roles)).map(|g| g.role).collect())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn grant(grantee: Grantee, role: Role) -> ContextGrant {
        ContextGrant {
            id: GrantId::new_random(),
            grantee,
            role,
            granted_by: PrincipalId::new_random(),
            created_at: Timestamp::now(),
        }
    }

    #[test]
    fn grants_apply_by_principal_or_role() {
        let me = PrincipalId::new_random();
        let grants = [
            grant(Grantee::Principal(me), Role::Injector),
            grant(Grantee::Principal(PrincipalId::new_random()), Role::Maintainer),
            grant(Grantee::Role(Role::Writer), Role::Writer),
        ];
        assert_eq!(granted_roles(&grants, me, &RoleSet::default()).highest(), Some(Role::Injector));
        // Holding a stronger tenant role counts as holding the one a grant names.
        let maintainer = RoleSet::new(vec![Role::Maintainer]);
        assert_eq!(granted_roles(&grants, PrincipalId::new_random(), &maintainer).highest(), Some(Role::Writer));
        assert_eq!(granted_roles(&grants, PrincipalId::new_random(), &RoleSet::default()).highest(), None);
    }

    #[test]
    fn wire_form() {
        let g = grant(Grantee::Role(Role::Reader), Role::Injector);
        let v = serde_json::to_value(&g).unwrap();
        assert_eq!(v["grantee"], serde_json::json!({"role": "reader"}));
        assert_eq!(v["role"], "injector");
        assert_eq!(serde_json::from_value::<ContextGrant>(v).unwrap(), g);
    }
}
