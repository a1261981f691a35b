//! What anomaly response acts on (docs/anomaly.md): lockouts of a source address or a
//! principal after failed authentications, and suspensions of a principal.

use std::fmt;
use std::net::IpAddr;

use serde::{Deserialize, Serialize};

use super::{PrincipalId, TenantId, Timestamp};

/// Who a lockout holds back: everything authenticating from an address, or sign-ins and
/// client authentication as one principal.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum Subject {
    Source(IpAddr),
    Principal(PrincipalId),
}

impl Subject {
    /// `ip:<address>` or `principal:<id>`: the stored form, and the one the admin API
    /// and the audit log use.
    pub fn parse(s: &str) -> Result<Self, String> {
        let bad = || format!("{s:?} is not a lockout subject (ip:<address> or principal:<id>)");
        match s.split_once(':') {
            Some(("ip", addr)) => addr.parse().map(Subject::Source).map_err(|_| bad()),
            Some(("principal", id)) => id.parse().map(Subject::Principal).map_err(|_| bad()),
            _ => Err(bad()),
        }
    }
}

impl fmt::Display for Subject {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Subject::Source(ip) => write!(f, "ip:{ip}"),
            Subject::Principal(id) => write!(f, "principal:{id}"),
        }
    }
}

impl Serialize for Subject {
    fn serialize<S: serde::Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        s.collect_str(self)
    }
}

impl<'de> Deserialize<'de> for Subject {
    fn deserialize<D: serde::Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        let s = String::deserialize(d)?;
        Subject::parse(&s).map_err(serde::de::Error::custom)
    }
}

/// A lockout, active while `until` is in the future. The row stays after that, so
/// that the next lockout of the same subject lasts twice as long (`strikes`).
#[derive(Clone, Debug, PartialEq, Eq, Serialize, utoipa::ToSchema)]
pub struct Lockout {
    #[schema(value_type = String, example = "ip:203.0.113.7")]
    pub subject: Subject,
    /// The principal's tenant (none for an address).
    #[serde(skip_serializing_if = "Option::is_none")]
    #[schema(value_type = Option<String>, format = Uuid)]
    pub tenant: Option<TenantId>,
    pub since: Timestamp,
    pub until: Timestamp,
    /// Consecutive lockouts of this subject, this one included.
    pub strikes: u32,
    pub reason: String,
}

impl Lockout {
    pub fn is_active_at(&self, now: Timestamp) -> bool {
        now < self.until
    }
}

/// Why and since when a principal is suspended: every credential it holds is refused
/// until an administrator lifts the suspension.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, utoipa::ToSchema)]
pub struct Suspension {
    pub since: Timestamp,
    pub reason: String,
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn subjects_round_trip() {
        for s in ["ip:203.0.113.7", "ip:2001:db8::1", "principal:123e4567-e89b-42d3-a456-426614174000"] {
            assert_eq!(Subject::parse(s).unwrap().to_string(), s);
        }
        for bad in ["", "ip:", "ip:300.1.1.1", "principal:x", "user:1", "203.0.113.7"] {
            assert!(Subject::parse(bad).is_err(), "{bad}");
        }
    }
}
