//! Sealed inline contexts as use cases (docs/integrity.md "Inline contexts"): a reader
//! of a context mints a sealed copy for the `OCP-Context` header; any reader in the
//! tenant asks whether an inline context is one ctxguard sealed and still good.

use std::sync::Arc;

use serde::{Deserialize, Serialize};
use serde_json::{Map, Value};

use super::contexts::ContextService;
use crate::authn::Caller;
use crate::authz::{Action, Resource};
use crate::domain::audit::{Action as Audited, Target};
use crate::domain::{ContextId, Error, Timestamp};
use crate::integrity::inline::{InlineError, Opened, Sealer};

/// The most an `OCP-Context` header may carry (DESIGN §4 limits).
pub const MAX_INLINE_BYTES: usize = 64 * 1024;
/// The most messages `last` may ask for (as a read's `?last=`).
const MAX_LAST: u64 = 10_000;
/// How long a seal lives unless asked otherwise.
pub const DEFAULT_SEAL_SECS: u64 = 300;
/// The longest a seal may live: no longer than a superseded key stays published
/// (`jwt::key_retention`), so that every live seal can be checked with `/oauth/jwks`.
pub const MAX_SEAL_SECS: u64 = crate::jwt::MAX_ACCESS_TOKEN_TTL_SECS;

/// What sealing needs besides the context store.
pub struct Inline {
    pub sealer: Sealer,
    /// `inline_allow_unsigned`: accept unsigned inline contexts (answered `signed: false`).
    pub allow_unsigned: bool,
}

/// Members of a context a seal may carry besides `context_id` and `session`, which it
/// always carries (the OCP schema requires them).
#[derive(Clone, Copy, Debug, PartialEq, Eq, Deserialize, utoipa::ToSchema)]
#[serde(rename_all = "snake_case")]
pub enum SealField {
    Metadata,
    Expires,
    Version,
    CreatedAt,
    UpdatedAt,
    Signature,
}

impl SealField {
    fn name(self) -> &'static str {
        match self {
            SealField::Metadata => "metadata",
            SealField::Expires => "expires",
            SealField::Version => "version",
            SealField::CreatedAt => "created_at",
            SealField::UpdatedAt => "updated_at",
            SealField::Signature => "signature",
        }
    }
}

/// Body of `POST /context/{id}/seal` (every member optional).
#[derive(Debug, Default, Deserialize, utoipa::ToSchema)]
#[serde(deny_unknown_fields)]
pub struct SealRequest {
    /// Which members to carry besides `context_id` and `session` (default: all).
    #[serde(default)]
    pub fields: Option<Vec<SealField>>,
    /// Only the last N messages of the history, at most 10,000 (as `?last=` of a read;
    /// a header holds at most 64 KiB).
    #[serde(default, deserialize_with = "crate::domain::time::whole_number")]
    #[schema(value_type = Option<u64>, maximum = 10000)]
    pub last: Option<u64>,
    /// Lifetime in seconds (default 300, at most 3600); never past the context's `expires`.
    #[serde(default, deserialize_with = "crate::domain::time::whole_number")]
    #[schema(value_type = Option<u64>, minimum = 1, maximum = 3600)]
    pub expires_in: Option<u64>,
    /// The audience (`aud`) that alone may accept it.
    #[serde(default)]
    pub audience: Option<String>,
}

impl SealRequest {
    /// The seal's lifetime in seconds, after checking the request's numbers.
    fn lifetime(&self) -> Result<i64, Error> {
        let lifetime = self.expires_in.unwrap_or(DEFAULT_SEAL_SECS);
        if lifetime == 0 || lifetime > MAX_SEAL_SECS {
            return Err(Error::invalid("expires_in", format!("must be 1 to {MAX_SEAL_SECS} seconds")));
        }
        if self.last.is_some_and(|n| n > MAX_LAST) {
            return Err(Error::invalid("last", format!("at most {MAX_LAST}")));
        }
        Ok(lifetime as i64)
    }

    /// What of the served version the seal carries: `context_id`, `session` (its last
    /// `last` messages) and the chosen members.
    fn select(&self, mut served: Map<String, Value>) -> Map<String, Value> {
        if let Some(fields) = &self.fields {
            let keep: Vec<&str> = fields.iter().map(|f| f.name()).collect();
            served.retain(|k, _| k == "context_id" || k == "session" || keep.contains(&k.as_str()));
        }
        if let Some(n) = self.last
            && let Some(Value::Array(history)) = served.get_mut("session").and_then(|s| s.get_mut("history"))
        {
            let skip = history.len().saturating_sub(usize::try_from(n).unwrap_or(usize::MAX));
            history.drain(..skip);
        }
        served
    }
}

/// Answer of `POST /context/{id}/seal`.
#[derive(Debug, Serialize, utoipa::ToSchema)]
pub struct Sealed {
    /// The sealed context: a compact JWS, the value of an `OCP-Context` header.
    pub ocp_context: String,
    pub kid: String,
    pub expires_at: Timestamp,
}

/// Answer of `POST /context/verify`.
#[derive(Debug, Serialize, utoipa::ToSchema)]
pub struct Verified {
    pub valid: bool,
    /// Whether a ctxguard key sealed it (false only for unsigned contexts accepted by
    /// `inline_allow_unsigned`).
    pub signed: bool,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub kid: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub issuer: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub expires_at: Option<Timestamp>,
    #[schema(value_type = Object)]
    pub context: Map<String, Value>,
}

/// An inline context as it arrived.
pub enum InlineInput {
    /// A compact JWS (from the header).
    Sealed(String),
    /// A context object (unsigned base64 JSON from the header, or the body's
    /// `context`); one carrying a stored version's `signature` is checked as such.
    Object(Map<String, Value>),
}

impl ContextService {
    /// Enables sealing (the composition root does; without it seal and verify answer
    /// that sealing is off).
    pub fn with_inline(mut self, inline: Inline) -> Self {
        self.inline = Some(Arc::new(inline));
        self
    }

    fn inline(&self) -> Result<&Inline, Error> {
        self.inline.as_deref().ok_or_else(|| Error::Conflict("inline contexts are not enabled".into()))
    }

    /// `POST /context/{id}/seal`: the latest version, sealed for `issuer`'s `OCP-Context`.
    pub async fn seal(
        &self,
        caller: &Caller,
        id: ContextId,
        request: SealRequest,
        issuer: &str,
    ) -> Result<Sealed, Error> {
        let inline = self.inline()?;
        let lifetime = request.lifetime()?;
        let (_, body) = self.read_body(caller, id, Audited::ContextSeal).await?;
        let now = Timestamp::now();
        let served: Map<String, Value> = serde_json::from_slice(&body.json)
            .map_err(|e| Error::Store(crate::domain::StoreError::Corrupt(e.to_string())))?;
        let context_expires =
            served.get("expires").and_then(Value::as_str).and_then(|s| Timestamp::parse_rfc3339(s).ok());
        let expires_at = context_expires.map_or(now.plus_secs(lifetime), |e| e.min(now.plus_secs(lifetime)));
        let (token, kid) = inline
            .sealer
            .seal(request.select(served), issuer, now, expires_at, request.audience.as_deref())
            .map_err(|e| Error::Store(crate::domain::StoreError::Backend(format!("sealing: {e}"))))?;
        if token.len() > MAX_INLINE_BYTES {
            return Err(Error::invalid(
                "last",
                format!(
                    "the sealed context would be {} bytes, over the {MAX_INLINE_BYTES}-byte OCP-Context limit; \
                     seal fewer messages (last) or fields",
                    token.len()
                ),
            ));
        }
        Ok(Sealed { ocp_context: token, kid, expires_at })
    }

    /// `POST /context/verify`: whether an inline context is acceptable here.
    pub async fn verify_inline(
        &self,
        caller: &Caller,
        input: InlineInput,
        audience: Option<&str>,
    ) -> Result<Verified, Error> {
        let checked = self
            .authz
            .authorize(caller, Action::List, Resource::Tenant(caller.principal.tenant))
            .map(|d| ((), d))
            .map_err(|d| super::denial_error(d, "tenant"));
        super::audited::decided(&self.audit, caller, Audited::ContextVerifyInline, None, checked).await?;
        let inline = self.inline()?;
        let now = Timestamp::now();
        let (opened, signed): (Result<Opened, InlineError>, bool) = match input {
            InlineInput::Sealed(token) => (inline.sealer.open(&token, audience, now), true),
            InlineInput::Object(context) if context.get("signature").is_some_and(|s| !s.is_null()) => {
                (open_stored_version(inline, context, now, caller.principal.tenant), true)
            }
            // Malformed before unacceptable: the shape is checked first either way.
            InlineInput::Object(context) => match Sealer::accept_unsigned(context, now) {
                Ok(_) if !inline.allow_unsigned => {
                    (Err(InlineError::Rejected("unsigned inline contexts are not accepted here".into())), false)
                }
                opened => (opened, false),
            },
        };
        let result = match opened {
            Ok(o) => Ok(Verified {
                valid: true,
                signed,
                kid: o.kid,
                issuer: o.issuer,
                expires_at: o.expires_at,
                context: o.context,
            }),
            Err(InlineError::Malformed(m)) => Err(Error::invalid("context", m)),
            Err(InlineError::Rejected(m)) => Err(Error::InlineRejected(m)),
        };
        let target = result.as_ref().ok().and_then(|v| v.context.get("context_id")?.as_str()?.parse().ok());
        super::audited::outcome(&self.audit, caller, Audited::ContextVerifyInline, target.map(Target::Context), result)
            .await
    }
}

/// A context object carrying a stored version's signature (as `GET` served it): checked
/// with every key the server holds, for the caller's tenant, then as an inline context.
fn open_stored_version(
    inline: &Inline,
    context: Map<String, Value>,
    now: Timestamp,
    tenant: crate::domain::TenantId,
) -> Result<Opened, InlineError> {
    use crate::integrity::served::ServedError;
    crate::integrity::inline::check_shape(&context, now)?;
    let value = Value::Object(context);
    // An OCP context, but not a version as ctxguard serves it (no `version`, …): its
    // signature cannot hold.
    let verified = inline.sealer.verify_version(&value).map_err(|e| match e {
        ServedError::Shape(m) => InlineError::Rejected(format!("not a stored version: {m}")),
        ServedError::Failure(f) => InlineError::Rejected(f.to_string()),
    })?;
    if verified.tenant != Some(tenant) {
        return Err(InlineError::Rejected("the version was signed for another tenant".into()));
    }
    let Value::Object(context) = value else { unreachable!("built from a map") };
    let expires_at = context.get("expires").and_then(Value::as_str).and_then(|e| Timestamp::parse_rfc3339(e).ok());
    Ok(Opened { context, kid: Some(verified.kid), issuer: None, expires_at })
}
