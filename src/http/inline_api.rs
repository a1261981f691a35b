//! Sealed inline contexts over HTTP (docs/integrity.md "Inline contexts"):
//! `POST /context/{id}/seal` and `POST /context/verify`, and the `OCP-Context` header.
//!
//! The header carries either a sealed context (a compact JWS: three base64url parts) or
//! an unsigned context as base64 (url-safe or standard, padding optional) of its JSON.
//! Its size, encoding and JSON depth are checked here, before anything is verified.

use axum::Json;
use axum::extract::State;
use axum::http::HeaderMap;
use base64::Engine;
use base64::engine::DecodePaddingMode;
use base64::engine::general_purpose::{GeneralPurpose, GeneralPurposeConfig, STANDARD_NO_PAD, URL_SAFE_NO_PAD};
use serde::Deserialize;
use serde_json::{Map, Value};
use utoipa_axum::router::OpenApiRouter;
use utoipa_axum::routes;

use super::AppState;
use super::error::{ErrorBody, HttpError, HttpResult};
use super::extract::{Authenticated, ContextIdPath, OptionalJsonBody, QueryParams};
use super::json;
use crate::domain::Error;
use crate::service::sealing::{InlineInput, MAX_INLINE_BYTES, SealRequest, Sealed, Verified};

/// The request header that carries an inline context.
pub const OCP_CONTEXT: &str = "ocp-context";

pub fn routes() -> OpenApiRouter<AppState> {
    OpenApiRouter::new().routes(routes!(seal_context)).routes(routes!(verify_inline))
}

/// Mint a sealed inline context from the latest version.
#[utoipa::path(post, path = "/context/{id}/seal", tag = "contexts",
    params(("id" = String, Path, description = "Context id (UUID)")),
    request_body(content = Option<SealRequest>, description = "Optional: fields, last, expires_in, audience"),
    responses(
        (status = 200, description = "The sealed context (the value of an OCP-Context header)", body = Sealed),
        (status = 400, description = "Bad request, or the sealed context would exceed 64 KiB", body = ErrorBody),
        (status = 401, description = "No or bad credentials", body = ErrorBody),
        (status = 403, description = "Role or scope does not allow reading", body = ErrorBody),
        (status = 404, description = "No such context, or expired", body = ErrorBody),
        (status = 409, description = "The stored version fails its integrity check", body = ErrorBody),
        (status = 413, description = "Body too large", body = ErrorBody),
        (status = 415, description = "Body is not JSON", body = ErrorBody),
    ),
    security(("bearer" = [])))]
async fn seal_context(
    State(state): State<AppState>,
    Authenticated(caller): Authenticated,
    ContextIdPath(id): ContextIdPath,
    OptionalJsonBody(request): OptionalJsonBody<SealRequest>,
) -> HttpResult<Json<Sealed>> {
    Ok(Json(state.inner.contexts.seal(&caller, id, request, &state.inner.public_url).await?))
}

/// An OCP context object as `POST /context/verify` takes it (docs/ocp-context.schema.json;
/// for the document only).
#[derive(utoipa::ToSchema)]
#[allow(dead_code, reason = "describes a JSON shape for the OpenAPI document")]
struct InlineContext {
    #[schema(min_length = 1)]
    context_id: String,
    #[schema(value_type = Option<Object>)]
    metadata: Option<Value>,
    session: InlineSession,
    #[schema(format = DateTime)]
    expires: Option<String>,
    /// A stored version's signature, as `GET /context/{id}` served it.
    signature: Option<String>,
}

#[derive(utoipa::ToSchema)]
#[allow(dead_code, reason = "describes a JSON shape for the OpenAPI document")]
struct InlineSession {
    history: Vec<InlineMessage>,
}

#[derive(utoipa::ToSchema)]
#[allow(dead_code, reason = "describes a JSON shape for the OpenAPI document")]
struct InlineMessage {
    role: crate::domain::MessageRole,
    message: String,
}

/// Body of `POST /context/verify` (none with the header).
#[derive(Debug, Deserialize, utoipa::ToSchema)]
#[serde(deny_unknown_fields)]
struct VerifyRequest {
    /// An inline context: a context object (unsigned, or carrying a stored version's
    /// `signature`) or a sealed context (compact JWS string).
    #[schema(value_type = InlineContext)]
    context: Value,
}

/// Query of `POST /context/verify`.
#[derive(Debug, Default, Deserialize, utoipa::IntoParams)]
#[into_params(parameter_in = Query)]
#[serde(deny_unknown_fields)]
struct VerifyQuery {
    /// Who is asking: a sealed context with `aud` is accepted only by that audience.
    audience: Option<String>,
}

/// Verify an inline context: from the `OCP-Context` header or the body's `context`.
#[utoipa::path(post, path = "/context/verify", tag = "contexts",
    request_body(content = Option<VerifyRequest>, description = "The inline context, unless the OCP-Context header carries it"),
    params(VerifyQuery, ("OCP-Context" = Option<String>, Header, description = "A sealed context (compact JWS) or base64 of a context's JSON")),
    responses(
        (status = 200, description = "Valid", body = Verified),
        (status = 400, description = "Not an inline context: encoding, JSON, depth, schema", body = ErrorBody),
        (status = 401, description = "No or bad credentials; or the inline context is not acceptable (signature, key, expiry, audience, unsigned)", body = ErrorBody),
        (status = 403, description = "Role or scope does not allow reading", body = ErrorBody),
        (status = 413, description = "Body or header too large", body = ErrorBody),
        (status = 415, description = "Body is not JSON", body = ErrorBody),
    ),
    security(("bearer" = [])))]
async fn verify_inline(
    State(state): State<AppState>,
    Authenticated(caller): Authenticated,
    headers: HeaderMap,
    QueryParams(query): QueryParams<VerifyQuery>,
    OptionalJsonBody(request): OptionalJsonBody<Option<VerifyRequest>>,
) -> HttpResult<Json<Verified>> {
    let max_depth = state.inner.body_limits.max_depth;
    let input = match (headers.get(OCP_CONTEXT), request.map(|r| r.context)) {
        (Some(_), Some(_)) => {
            return Err(Error::invalid("context", "send the OCP-Context header or a body context, not both").into());
        }
        (None, None) => return Err(Error::invalid("context", "no OCP-Context header and no body context").into()),
        (Some(value), None) => from_header(value.as_bytes(), max_depth)?,
        (None, Some(Value::String(token))) => sealed(token, max_depth)?,
        (None, Some(Value::Object(object))) => InlineInput::Object(object),
        (None, Some(_)) => return Err(Error::invalid("context", "must be a context object or a compact JWS").into()),
    };
    let verified = state.inner.contexts.verify_inline(&caller, input, query.audience.as_deref()).await?;
    Ok(Json(verified))
}

/// Base64 as people write it: url-safe or standard alphabet, padded or not.
const LENIENT: GeneralPurposeConfig =
    GeneralPurposeConfig::new().with_decode_padding_mode(DecodePaddingMode::Indifferent);

fn decode_base64(text: &str) -> Option<Vec<u8>> {
    let url = GeneralPurpose::new(&base64::alphabet::URL_SAFE, LENIENT);
    let standard = GeneralPurpose::new(&base64::alphabet::STANDARD, LENIENT);
    url.decode(text).ok().or_else(|| standard.decode(text).ok())
}

/// The header's value: size, encoding, JSON depth.
fn from_header(value: &[u8], max_depth: usize) -> Result<InlineInput, HttpError> {
    if value.len() > MAX_INLINE_BYTES {
        return Err(HttpError::PayloadTooLarge { max: MAX_INLINE_BYTES });
    }
    let text = std::str::from_utf8(value)
        .map_err(|_| Error::invalid("OCP-Context", "not ASCII: a compact JWS or base64 of a context's JSON"))?
        .trim();
    if text.matches('.').count() == 2 {
        return sealed(text.to_string(), max_depth);
    }
    let bytes = decode_base64(text)
        .ok_or_else(|| Error::invalid("OCP-Context", "neither a compact JWS nor base64 of a context's JSON"))?;
    let object: Map<String, Value> = json::parse(&bytes, max_depth).map_err(|e| match e {
        HttpError::MalformedJson(m) | HttpError::Domain(Error::InvalidField { message: m, .. }) => {
            HttpError::Domain(Error::invalid("OCP-Context", format!("not a JSON object: {m}")))
        }
        other => other,
    })?;
    Ok(InlineInput::Object(object))
}

/// A compact JWS, with its payload's depth checked before any JSON parser sees it.
fn sealed(token: String, max_depth: usize) -> Result<InlineInput, HttpError> {
    if token.len() > MAX_INLINE_BYTES {
        return Err(HttpError::PayloadTooLarge { max: MAX_INLINE_BYTES });
    }
    let payload = token.split('.').nth(1).unwrap_or_default();
    let bytes = URL_SAFE_NO_PAD
        .decode(payload)
        .or_else(|_| STANDARD_NO_PAD.decode(payload))
        .map_err(|_| Error::invalid("OCP-Context", "the JWS payload is not base64url"))?;
    json::check_depth(&bytes, max_depth)?;
    Ok(InlineInput::Sealed(token))
}
