//! OAuth-style scopes: what a *credential* may do, always intersected with what its
//! principal's roles allow (docs/policies.md). Parsed once into a bit set.

use std::fmt;

use serde::{Deserialize, Deserializer, Serialize, Serializer};

#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum Scope {
    ContextRead,
    ContextInject,
    ContextWrite,
    ContextDelete,
    ContextShare,
    Admin,
    /// OAuth: ask for a refresh token (public clients must). Grants no access itself.
    OfflineAccess,
}

impl Scope {
    /// The scopes that grant access; `ScopeSet::all()` is these.
    pub const ALL: [Scope; 6] = [
        Scope::ContextRead,
        Scope::ContextInject,
        Scope::ContextWrite,
        Scope::ContextDelete,
        Scope::ContextShare,
        Scope::Admin,
    ];

    /// Every scope this server understands, in display order.
    pub const EVERY: [Scope; 7] = [
        Scope::ContextRead,
        Scope::ContextInject,
        Scope::ContextWrite,
        Scope::ContextDelete,
        Scope::ContextShare,
        Scope::Admin,
        Scope::OfflineAccess,
    ];

    pub fn as_str(self) -> &'static str {
        match self {
            Scope::ContextRead => "context:read",
            Scope::ContextInject => "context:inject",
            Scope::ContextWrite => "context:write",
            Scope::ContextDelete => "context:delete",
            Scope::ContextShare => "context:share",
            Scope::Admin => "admin",
            Scope::OfflineAccess => "offline_access",
        }
    }

    fn bit(self) -> u8 {
        1 << (self as u8)
    }
}

impl fmt::Display for Scope {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

/// A set of scopes. `mcp:read` and `mcp:write` are accepted as aliases on input and
/// expanded, so the rest of the code only ever sees the canonical scopes.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Default, Hash)]
pub struct ScopeSet(u8);

impl ScopeSet {
    pub const fn empty() -> Self {
        Self(0)
    }

    pub fn all() -> Self {
        Scope::ALL.into_iter().collect()
    }

    pub fn contains(&self, s: Scope) -> bool {
        self.0 & s.bit() != 0
    }

    pub fn is_empty(&self) -> bool {
        self.0 == 0
    }

    pub fn insert(&mut self, s: Scope) {
        self.0 |= s.bit();
    }

    pub fn iter(&self) -> impl Iterator<Item = Scope> + '_ {
        Scope::EVERY.into_iter().filter(|s| self.contains(*s))
    }

    pub fn is_subset_of(&self, other: &ScopeSet) -> bool {
        self.0 & !other.0 == 0
    }

    pub fn union(&self, other: &ScopeSet) -> ScopeSet {
        ScopeSet(self.0 | other.0)
    }

    pub fn intersection(&self, other: &ScopeSet) -> ScopeSet {
        ScopeSet(self.0 & other.0)
    }

    pub fn without(&self, s: Scope) -> ScopeSet {
        ScopeSet(self.0 & !s.bit())
    }

    /// Parses a space-separated scope string (RFC 6749 section 3.3).
    pub fn parse(s: &str) -> Result<Self, String> {
        let mut set = Self::empty();
        for token in s.split(' ').filter(|t| !t.is_empty()) {
            set.add_token(token)?;
        }
        Ok(set)
    }

    /// Parses the scope of a token we issued, ignoring anything unknown (a newer
    /// replica may know more scopes; unknown ones grant nothing here).
    pub fn parse_known(s: &str) -> Self {
        let mut set = Self::empty();
        for token in s.split(' ').filter(|t| !t.is_empty()) {
            let _ = set.add_token(token);
        }
        set
    }

    pub fn from_tokens<'a>(tokens: impl IntoIterator<Item = &'a str>) -> Result<Self, String> {
        let mut set = Self::empty();
        for t in tokens {
            set.add_token(t)?;
        }
        Ok(set)
    }

    fn add_token(&mut self, token: &str) -> Result<(), String> {
        match token {
            "mcp:read" => self.insert(Scope::ContextRead),
            "mcp:write" => {
                self.insert(Scope::ContextRead);
                self.insert(Scope::ContextInject);
                self.insert(Scope::ContextWrite);
            }
            other => {
                let scope = Scope::EVERY.into_iter().find(|s| s.as_str() == other).ok_or_else(|| {
                    format!(
                        "unknown scope {other:?}; known scopes: {}, offline_access, mcp:read, mcp:write",
                        ScopeSet::all()
                    )
                })?;
                self.insert(scope);
            }
        }
        Ok(())
    }
}

impl FromIterator<Scope> for ScopeSet {
    fn from_iter<I: IntoIterator<Item = Scope>>(iter: I) -> Self {
        let mut set = Self::empty();
        for s in iter {
            set.insert(s);
        }
        set
    }
}

impl fmt::Display for ScopeSet {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let mut first = true;
        for s in self.iter() {
            if !first {
                f.write_str(" ")?;
            }
            first = false;
            f.write_str(s.as_str())?;
        }
        Ok(())
    }
}

/// On the wire a scope set is a JSON array of scope strings.
impl Serialize for ScopeSet {
    fn serialize<S: Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        s.collect_seq(self.iter().map(Scope::as_str))
    }
}

impl<'de> Deserialize<'de> for ScopeSet {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        let tokens = Vec::<String>::deserialize(d)?;
        ScopeSet::from_tokens(tokens.iter().map(String::as_str)).map_err(serde::de::Error::custom)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn aliases_expand() {
        let s = ScopeSet::parse("mcp:write").unwrap();
        assert_eq!(s.to_string(), "context:read context:inject context:write");
        assert_eq!(ScopeSet::parse("mcp:read").unwrap().to_string(), "context:read");
    }

    #[test]
    fn unknown_scope_is_named() {
        let err = ScopeSet::parse("context:read context:everything").unwrap_err();
        assert!(err.contains("context:everything"), "{err}");
    }
}
