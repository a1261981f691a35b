//! Identifiers of the authorization server's state. Each is text on the wire and in
//! the database, but a client id can never be passed where a refresh family or a token
//! hash is expected: the OAuth store takes only these types.

use std::fmt;

use serde::{Deserialize, Serialize};

macro_rules! text_id {
    ($(#[$doc:meta])* $name:ident) => {
        $(#[$doc])*
        #[derive(Clone, Debug, PartialEq, Eq, Hash, Serialize, Deserialize)]
        #[serde(transparent)]
        pub struct $name(String);

        impl $name {
            pub fn new(value: impl Into<String>) -> Self {
                Self(value.into())
            }

            pub fn as_str(&self) -> &str {
                &self.0
            }
        }

        impl fmt::Display for $name {
            fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                f.write_str(&self.0)
            }
        }

        impl PartialEq<str> for $name {
            fn eq(&self, other: &str) -> bool {
                self.0 == other
            }
        }
    };
}

text_id!(
    /// An OAuth client id (RFC 6749 section 2.2): a UUID this server issued, or the
    /// https URL of a client ID metadata document.
    ClientId
);
text_id!(
    /// The `jti` of an access token (RFC 7519 section 4.1.7): what the deny-list and
    /// the delegation ancestry (`parents`) name.
    Jti
);
text_id!(
    /// A refresh token family: every rotation of one grant; a replay revokes it whole.
    FamilyId
);
text_id!(
    /// base64url(SHA-256) of an opaque one-time secret (authorization code, refresh
    /// token, browser session id): the only form in which those are stored.
    TokenHash
);

impl utoipa::PartialSchema for ClientId {
    fn schema() -> utoipa::openapi::RefOr<utoipa::openapi::schema::Schema> {
        <String as utoipa::PartialSchema>::schema()
    }
}

impl utoipa::ToSchema for ClientId {}
