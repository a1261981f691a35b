//! Tenants, principals and the built-in roles (docs/policies.md).

use std::fmt;

use serde::{Deserialize, Deserializer, Serialize, Serializer};

use super::anomaly::Suspension;
use super::{PrincipalId, TenantId, Timestamp};

#[derive(Clone, Debug, PartialEq, Eq, Serialize, utoipa::ToSchema)]
pub struct Tenant {
    pub id: TenantId,
    pub name: String,
    pub created_at: Timestamp,
}

impl Tenant {
    /// Tenant names are human handles (`default`, `acme`): short, printable, and never
    /// shaped like a UUID so that "tenant id or name" is never ambiguous.
    pub fn validate_name(name: &str) -> Result<(), String> {
        let ok_chars = name.chars().all(|c| c.is_ascii_alphanumeric() || matches!(c, '-' | '_' | '.'));
        if name.is_empty() || name.len() > 64 || !ok_chars {
            return Err("name must be 1-64 characters of A-Z a-z 0-9 - _ .".into());
        }
        if name.parse::<TenantId>().is_ok() {
            return Err("name must not be a UUID".into());
        }
        Ok(())
    }
}

#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, Serialize, Deserialize, utoipa::ToSchema)]
#[serde(rename_all = "lowercase")]
pub enum PrincipalKind {
    User,
    Agent,
    Service,
}

impl PrincipalKind {
    pub fn as_str(self) -> &'static str {
        match self {
            PrincipalKind::User => "user",
            PrincipalKind::Agent => "agent",
            PrincipalKind::Service => "service",
        }
    }

    pub fn parse(s: &str) -> Result<Self, String> {
        match s {
            "user" => Ok(Self::User),
            "agent" => Ok(Self::Agent),
            "service" => Ok(Self::Service),
            other => Err(format!("unknown principal kind {other:?}; expected user, agent or service")),
        }
    }
}

/// Built-in roles, each including the powers of the ones before it.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub enum Role {
    Reader,
    Injector,
    Writer,
    Maintainer,
    Admin,
}

impl Role {
    pub const ALL: [Role; 5] = [Role::Reader, Role::Injector, Role::Writer, Role::Maintainer, Role::Admin];

    pub fn as_str(self) -> &'static str {
        match self {
            Role::Reader => "reader",
            Role::Injector => "injector",
            Role::Writer => "writer",
            Role::Maintainer => "maintainer",
            Role::Admin => "admin",
        }
    }

    pub fn parse(s: &str) -> Result<Self, String> {
        Role::ALL
            .into_iter()
            .find(|r| r.as_str() == s)
            .ok_or_else(|| format!("unknown role {s:?}; expected one of reader, injector, writer, maintainer, admin"))
    }
}

/// On the wire a role is its name.
impl Serialize for Role {
    fn serialize<S: Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        s.serialize_str(self.as_str())
    }
}

impl<'de> Deserialize<'de> for Role {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        let s = <std::borrow::Cow<'de, str>>::deserialize(d)?;
        Role::parse(&s).map_err(serde::de::Error::custom)
    }
}

/// The roles a principal holds in its tenant.
#[derive(Clone, Debug, PartialEq, Eq, Default)]
pub struct RoleSet(Vec<Role>);

impl RoleSet {
    pub fn new(mut roles: Vec<Role>) -> Self {
        roles.sort();
        roles.dedup();
        Self(roles)
    }

    /// The strongest role held; roles are cumulative, so it alone decides.
    pub fn highest(&self) -> Option<Role> {
        self.0.last().copied()
    }

    pub fn at_least(&self, role: Role) -> bool {
        self.highest().is_some_and(|h| h >= role)
    }

    pub fn iter(&self) -> impl Iterator<Item = Role> + '_ {
        self.0.iter().copied()
    }

    /// Space-separated form used in storage.
    pub fn to_storage(&self) -> String {
        self.0.iter().map(|r| r.as_str()).collect::<Vec<_>>().join(" ")
    }

    pub fn from_storage(s: &str) -> Result<Self, String> {
        s.split(' ').filter(|t| !t.is_empty()).map(Role::parse).collect::<Result<Vec<_>, _>>().map(Self::new)
    }
}

impl Serialize for RoleSet {
    fn serialize<S: Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        self.0.serialize(s)
    }
}

impl<'de> Deserialize<'de> for RoleSet {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        Vec::<Role>::deserialize(d).map(Self::new)
    }
}

impl fmt::Display for RoleSet {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.to_storage())
    }
}

/// Who is acting: a user, an agent or a service, always inside exactly one tenant.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, utoipa::ToSchema)]
pub struct Principal {
    pub id: PrincipalId,
    pub tenant: TenantId,
    pub kind: PrincipalKind,
    pub name: String,
    pub roles: RoleSet,
    pub disabled: bool,
    /// The bootstrap operator: may create tenants and administer any tenant.
    pub platform_admin: bool,
    pub created_at: Timestamp,
    /// Access tokens issued at or before this instant are refused ("revoke everything").
    #[serde(skip)]
    pub tokens_revoked_at: Option<Timestamp>,
    /// Set by anomaly response (docs/anomaly.md): every credential is refused until an
    /// administrator lifts it.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub suspension: Option<Suspension>,
}

impl Principal {
    /// Whether the principal's credentials may be used: neither disabled by an
    /// administrator nor suspended by anomaly response.
    pub fn is_active(&self) -> bool {
        !self.disabled && self.suspension.is_none()
    }

    /// Whether a token issued at `iat` (seconds) falls under a "revoke everything".
    /// Tokens issued in the same second as the revocation are refused too: `iat` has
    /// only second precision.
    pub fn revoked_token_issued_at(&self, iat: i64) -> bool {
        self.tokens_revoked_at.is_some_and(|at| iat.saturating_mul(1000) <= at.millis())
    }

    pub fn validate_name(name: &str) -> Result<(), String> {
        if name.is_empty() || name.chars().count() > 128 || name.chars().any(char::is_control) {
            return Err("name must be 1-128 printable characters".into());
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn roles_are_cumulative() {
        let r = RoleSet::new(vec![Role::Reader, Role::Writer]);
        assert!(r.at_least(Role::Injector));
        assert!(!r.at_least(Role::Maintainer));
        assert!(!RoleSet::default().at_least(Role::Reader));
    }

    #[test]
    fn storage_round_trip_and_unknown_role() {
        let r = RoleSet::from_storage("writer reader").unwrap();
        assert_eq!(r.to_storage(), "reader writer");
        assert!(RoleSet::from_storage("superuser").is_err());
    }

    #[test]
    fn tenant_names() {
        assert!(Tenant::validate_name("acme-1").is_ok());
        assert!(Tenant::validate_name("").is_err());
        assert!(Tenant::validate_name("a b").is_err());
        assert!(Tenant::validate_name("123e4567-e89b-42d3-a456-426614174000").is_err());
    }
}
