//! Identifier newtypes: a `ContextId` can never be confused with a `TenantId`, and
//! every id that reaches the store has been parsed from its wire form exactly once.

use std::fmt;
use std::str::FromStr;

use serde::{Deserialize, Deserializer, Serialize, Serializer};
use uuid::Uuid;

macro_rules! uuid_id {
    ($(#[$doc:meta])* $name:ident) => {
        $(#[$doc])*
        #[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, PartialOrd, Ord)]
        pub struct $name(Uuid);

        impl $name {
            /// A fresh random (version 4) id.
            pub fn new_random() -> Self {
                Self(Uuid::new_v4())
            }

            pub fn as_uuid(&self) -> &Uuid {
                &self.0
            }
        }

        impl FromStr for $name {
            type Err = String;

            /// Accepts any RFC 9562 UUID in its hyphenated form; the canonical
            /// (lower-case, hyphenated) form is what is stored and printed.
            fn from_str(s: &str) -> Result<Self, Self::Err> {
                if s.len() != 36 {
                    return Err("must be a UUID like 123e4567-e89b-42d3-a456-426614174000".to_string());
                }
                Uuid::try_parse(s)
                    .map(Self)
                    .map_err(|_| "must be a UUID like 123e4567-e89b-42d3-a456-426614174000".to_string())
            }
        }

        impl fmt::Display for $name {
            fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                self.0.hyphenated().fmt(f)
            }
        }

        impl Serialize for $name {
            fn serialize<S: Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
                s.collect_str(self)
            }
        }

        impl<'de> Deserialize<'de> for $name {
            fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
                let s = <std::borrow::Cow<'de, str>>::deserialize(d)?;
                s.parse().map_err(serde::de::Error::custom)
            }
        }
    };
}

uuid_id!(
    /// The id of one context (OCP `context_id`); unique within its tenant for ever,
    /// because a deleted context leaves a tombstone.
    ContextId
);
uuid_id!(
    /// The id of a tenant: the isolation boundary of every stored object.
    TenantId
);
uuid_id!(
    /// The id of a principal (user, agent or service).
    PrincipalId
);
uuid_id!(
    /// The public id of an API key (never the key itself).
    ApiKeyId
);
uuid_id!(
    /// The id of one grant (a role shared on one context).
    GrantId
);

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_and_normalises_uuid() {
        let id: ContextId = "123E4567-E89B-42D3-A456-426614174000".parse().unwrap();
        assert_eq!(id.to_string(), "123e4567-e89b-42d3-a456-426614174000");
    }

    #[test]
    fn rejects_non_uuid_and_compact_forms() {
        assert!("not-a-uuid".parse::<ContextId>().is_err());
        assert!("123e4567e89b42d3a456426614174000".parse::<ContextId>().is_err());
        assert!("".parse::<ContextId>().is_err());
    }
}
