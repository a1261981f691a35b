//! The OAuth 2.1 authorization server as a service: endpoints (in `http::oauth`) parse
//! their input into the typed requests of [`request`] and hand them to [`AuthServer`],
//! which alone reads and writes the OAuth state (clients, codes, refresh families, the
//! deny-list, browser sessions). Tokens are minted with [`crate::jwt`], the format the
//! resource server (`authn`) verifies.

pub mod authorization_code;
pub mod authorize;
pub mod client_auth;
pub mod client_metadata;
pub mod clients;
pub mod error;
pub mod exchange;
pub mod introspect;
pub mod metadata;
pub mod params;
pub mod refresh;
pub mod register;
pub mod request;
pub mod revoke;
pub mod server;
pub mod session;
pub mod token;

pub use error::{OAuthError, OAuthErrorCode, OAuthResult};
pub use server::{AuthServer, AuthServerConfig};

/// Who may register clients dynamically (RFC 7591).
#[derive(Clone, Copy, Debug, PartialEq, Eq, serde::Serialize, serde::Deserialize, clap::ValueEnum)]
#[serde(rename_all = "lowercase")]
pub enum RegistrationMode {
    Open,
    /// Only with the configured initial access token (RFC 7591 section 3).
    Token,
    Disabled,
}
