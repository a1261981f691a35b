//! The OCP context API: parse, call [`ContextService`], map.

use axum::Json;
use axum::extract::State;
use axum::http::{HeaderMap, HeaderValue, StatusCode, header};
use axum::response::{IntoResponse, Response};
use serde::Deserialize;
use serde_json::Value;
use utoipa_axum::router::OpenApiRouter;
use utoipa_axum::routes;

use super::AppState;
use super::error::{ErrorBody, HttpResult};
use super::extract::{Authenticated, ContextIdPath, JsonBody, QueryParams, VersionPath, if_match, none_match};
use super::history_api::{self, WindowQuery};
use crate::authn::Caller;
use crate::domain::context::AppendInput;
use crate::domain::{ContextHead, ContextInput, StoredContext, Version};
use crate::service::contexts::{Cursor, Page};
use crate::store::VersionInfo;

pub fn routes() -> OpenApiRouter<AppState> {
    OpenApiRouter::new()
        .routes(routes!(create_context, list_contexts))
        .routes(routes!(get_context, replace_context, patch_context, delete_context))
        .routes(routes!(append_messages, history_api::messages))
        .routes(routes!(list_versions))
        .routes(routes!(get_version))
}

/// A context with its `ETag`. Contexts steer agents: caches may keep them only
/// privately and must revalidate.
fn context_response(status: StatusCode, ctx: &StoredContext, extra: Option<(header::HeaderName, String)>) -> Response {
    json_response(status, ctx.version, Json(ctx).into_response(), extra)
}

/// Served bytes of a version as a context response.
fn bytes_response(
    status: StatusCode,
    version: Version,
    json: bytes::Bytes,
    extra: Option<(header::HeaderName, String)>,
) -> Response {
    json_response(status, version, ([(header::CONTENT_TYPE, "application/json")], json).into_response(), extra)
}

fn json_response(
    status: StatusCode,
    version: Version,
    mut response: Response,
    extra: Option<(header::HeaderName, String)>,
) -> Response {
    *response.status_mut() = status;
    let headers = response.headers_mut();
    if let Ok(v) = HeaderValue::from_str(&version.etag()) {
        headers.insert(header::ETAG, v);
    }
    headers.insert(header::CACHE_CONTROL, HeaderValue::from_static("private, no-cache"));
    if let Some((name, value)) = extra
        && let Ok(v) = HeaderValue::from_str(&value)
    {
        headers.insert(name, v);
    }
    response
}

/// `Prefer: return=minimal` (RFC 7240 section 4.2): the client does not want the
/// representation back.
fn wants_minimal(headers: &HeaderMap) -> bool {
    headers.get_all("prefer").iter().filter_map(|v| v.to_str().ok()).flat_map(|v| v.split(',')).any(|p| {
        let p = p.trim();
        p.split_once('=').is_some_and(|(k, v)| {
            k.trim().eq_ignore_ascii_case("return") && v.trim().trim_matches('"').eq_ignore_ascii_case("minimal")
        })
    })
}

/// Headers every write answer carries: the new version and the history's length.
fn version_headers(r: &mut Response, head: &ContextHead) {
    let h = r.headers_mut();
    h.insert(history_api::VERSION_HEADER, HeaderValue::from(head.version.0));
    h.insert(history_api::LENGTH_HEADER, HeaderValue::from(head.history_len));
}

/// The answer to a write: the new version's representation, or with
/// `Prefer: return=minimal` no body (`status_minimal`) and the `ETag`, `Location`,
/// version and history length in headers only.
async fn write_answer(
    state: &AppState,
    caller: &Caller,
    headers: &HeaderMap,
    head: &ContextHead,
    status: StatusCode,
    status_minimal: StatusCode,
) -> HttpResult<Response> {
    let location = format!("{}/context/{}", state.inner.public_url, head.context_id);
    let mut r = if wants_minimal(headers) {
        let mut r = status_minimal.into_response();
        let h = r.headers_mut();
        if let Ok(v) = HeaderValue::from_str(&head.version.etag()) {
            h.insert(header::ETAG, v);
        }
        if let Ok(v) = HeaderValue::from_str(&location) {
            h.insert(header::LOCATION, v);
        }
        h.insert("preference-applied", HeaderValue::from_static("return=minimal"));
        r
    } else {
        let json = state.inner.contexts.written(caller, head).await?;
        let extra = (status == StatusCode::CREATED).then_some((header::LOCATION, location));
        bytes_response(status, head.version, json, extra)
    };
    version_headers(&mut r, head);
    Ok(r)
}

/// Create a context.
#[utoipa::path(post, path = "/context", tag = "contexts", request_body = ContextInput,
    responses(
        (status = 201, description = "Created", body = StoredContext),
        (status = 400, description = "Invalid context", body = ErrorBody),
        (status = 401, description = "No or bad credentials", body = ErrorBody),
        (status = 403, description = "Role or scope does not allow creating", body = ErrorBody),
        (status = 409, description = "The id exists or existed", body = ErrorBody),
        (status = 413, description = "Body too large", body = ErrorBody),
        (status = 415, description = "Body is not JSON", body = ErrorBody),
    ),
    security(("bearer" = [])))]
async fn create_context(
    State(state): State<AppState>,
    Authenticated(caller): Authenticated,
    headers: HeaderMap,
    JsonBody(input): JsonBody<ContextInput>,
) -> HttpResult<Response> {
    let ctx = state.inner.contexts.create(&caller, input).await?;
    let head = ContextHead::of(&ctx);
    if wants_minimal(&headers) {
        return write_answer(&state, &caller, &headers, &head, StatusCode::CREATED, StatusCode::CREATED).await;
    }
    let location = format!("{}/context/{}", state.inner.public_url, ctx.context_id);
    let mut r = context_response(StatusCode::CREATED, &ctx, Some((header::LOCATION, location)));
    version_headers(&mut r, &head);
    Ok(r)
}

/// Get the latest version of a context, or a window of its history (`last`, or
/// `after` and `limit`; the `ETag` is the whole version's).
#[utoipa::path(get, path = "/context/{id}", tag = "contexts",
    params(("id" = String, Path, description = "Context id (UUID)"), WindowQuery),
    responses(
        (status = 200, description = "The context", body = StoredContext),
        (status = 304, description = "Not modified (If-None-Match)"),
        (status = 404, description = "Missing, not visible, deleted or expired", body = ErrorBody),
    ),
    security(("bearer" = [])))]
async fn get_context(
    State(state): State<AppState>,
    Authenticated(caller): Authenticated,
    ContextIdPath(id): ContextIdPath,
    QueryParams(q): QueryParams<WindowQuery>,
    headers: HeaderMap,
) -> HttpResult<Response> {
    let window = q.window()?;
    // Served as assembled from what was stored, never re-serialized.
    let (version, body) = state.inner.contexts.get_body(&caller, id).await?;
    let status = if none_match(&headers, version)? { StatusCode::NOT_MODIFIED } else { StatusCode::OK };
    let mut r = match (status, window) {
        (StatusCode::OK, None) => ([(header::CONTENT_TYPE, "application/json")], body.json.clone()).into_response(),
        (StatusCode::OK, Some(w)) => history_api::window_response(&body, w),
        _ => status.into_response(),
    };
    let h = r.headers_mut();
    if let Ok(v) = HeaderValue::from_str(&version.etag()) {
        h.insert(header::ETAG, v);
    }
    h.insert(header::CACHE_CONTROL, HeaderValue::from_static("private, no-cache"));
    Ok(r)
}

/// Replace a context (metadata, history and expiry). Honours `If-Match`.
#[utoipa::path(put, path = "/context/{id}", tag = "contexts", request_body = ContextInput,
    params(("id" = String, Path, description = "Context id (UUID)")),
    responses(
        (status = 200, description = "The new version", body = StoredContext),
        (status = 204, description = "Written (Prefer: return=minimal): ETag, Location and Ctxguard-Version / Ctxguard-History-Length headers"),
        (status = 412, description = "If-Match does not match", body = ErrorBody),
    ),
    security(("bearer" = [])))]
async fn replace_context(
    State(state): State<AppState>,
    Authenticated(caller): Authenticated,
    ContextIdPath(id): ContextIdPath,
    headers: HeaderMap,
    JsonBody(input): JsonBody<ContextInput>,
) -> HttpResult<Response> {
    let cond = if_match(&headers)?;
    let head = state.inner.contexts.replace(&caller, id, input, cond).await?;
    write_answer(&state, &caller, &headers, &head, StatusCode::OK, StatusCode::NO_CONTENT).await
}

/// Change `metadata` and/or `expires` with a JSON Merge Patch (RFC 7396).
#[utoipa::path(patch, path = "/context/{id}", tag = "contexts",
    request_body(content = Object, content_type = "application/merge-patch+json"),
    params(("id" = String, Path, description = "Context id (UUID)")),
    responses(
        (status = 200, description = "The new version", body = StoredContext),
        (status = 204, description = "Written (Prefer: return=minimal): ETag, Location and Ctxguard-Version / Ctxguard-History-Length headers"),
        (status = 400, description = "Patch touches other fields or is invalid", body = ErrorBody),
        (status = 412, description = "If-Match does not match", body = ErrorBody),
    ),
    security(("bearer" = [])))]
async fn patch_context(
    State(state): State<AppState>,
    Authenticated(caller): Authenticated,
    ContextIdPath(id): ContextIdPath,
    headers: HeaderMap,
    JsonBody(patch): JsonBody<Value>,
) -> HttpResult<Response> {
    let cond = if_match(&headers)?;
    let head = state.inner.contexts.patch(&caller, id, patch, cond).await?;
    write_answer(&state, &caller, &headers, &head, StatusCode::OK, StatusCode::NO_CONTENT).await
}

/// Inject: append messages to the session history.
#[utoipa::path(post, path = "/context/{id}/messages", tag = "contexts", request_body = AppendInput,
    params(("id" = String, Path, description = "Context id (UUID)")),
    responses(
        (status = 200, description = "The new version", body = StoredContext),
        (status = 204, description = "Written (Prefer: return=minimal): ETag, Location and Ctxguard-Version / Ctxguard-History-Length headers"),
        (status = 400, description = "Invalid messages or history limit reached", body = ErrorBody),
    ),
    security(("bearer" = [])))]
async fn append_messages(
    State(state): State<AppState>,
    Authenticated(caller): Authenticated,
    ContextIdPath(id): ContextIdPath,
    headers: HeaderMap,
    JsonBody(input): JsonBody<AppendInput>,
) -> HttpResult<Response> {
    let cond = if_match(&headers)?;
    let head = state.inner.contexts.append(&caller, id, input, cond).await?;
    write_answer(&state, &caller, &headers, &head, StatusCode::OK, StatusCode::NO_CONTENT).await
}

/// Delete (revoke) a context. Its id stays reserved for ever.
#[utoipa::path(delete, path = "/context/{id}", tag = "contexts",
    params(("id" = String, Path, description = "Context id (UUID)")),
    responses(
        (status = 204, description = "Deleted"),
        (status = 404, description = "Missing or not visible", body = ErrorBody),
    ),
    security(("bearer" = [])))]
async fn delete_context(
    State(state): State<AppState>,
    Authenticated(caller): Authenticated,
    ContextIdPath(id): ContextIdPath,
    headers: HeaderMap,
) -> HttpResult<StatusCode> {
    let cond = if_match(&headers)?;
    state.inner.contexts.delete(&caller, id, cond).await?;
    Ok(StatusCode::NO_CONTENT)
}

#[derive(Debug, Deserialize, utoipa::IntoParams)]
#[serde(deny_unknown_fields)]
#[into_params(parameter_in = Query)]
struct ListQuery {
    /// Opaque cursor from a previous page's `next_cursor`.
    cursor: Option<String>,
    /// Page size, 1–200 (default 50).
    #[param(minimum = 1, maximum = 200)]
    limit: Option<u32>,
    /// Only contexts whose current history holds a message this principal appended.
    #[param(value_type = Option<String>, format = Uuid)]
    author: Option<String>,
}

/// List the contexts visible to the caller, newest first.
#[utoipa::path(get, path = "/context", tag = "contexts", params(ListQuery),
    responses((status = 200, description = "A page of context summaries", body = Page)),
    security(("bearer" = [])))]
async fn list_contexts(
    State(state): State<AppState>,
    Authenticated(caller): Authenticated,
    QueryParams(q): QueryParams<ListQuery>,
) -> HttpResult<Json<Page>> {
    let cursor = q.cursor.as_deref().filter(|c| !c.is_empty()).map(Cursor::parse).transpose()?;
    let author =
        q.author.as_deref().map(|a| a.parse().map_err(|m| crate::domain::Error::invalid("author", m))).transpose()?;
    Ok(Json(state.inner.contexts.list(&caller, cursor, q.limit, author).await?))
}

#[derive(serde::Serialize, utoipa::ToSchema)]
struct VersionList {
    items: Vec<VersionInfo>,
}

/// The versions of a context.
#[utoipa::path(get, path = "/context/{id}/versions", tag = "contexts",
    params(("id" = String, Path, description = "Context id (UUID)")),
    responses((status = 200, description = "Version numbers and times", body = VersionList)),
    security(("bearer" = [])))]
async fn list_versions(
    State(state): State<AppState>,
    Authenticated(caller): Authenticated,
    ContextIdPath(id): ContextIdPath,
) -> HttpResult<Json<VersionList>> {
    let items = state.inner.contexts.versions(&caller, id).await?;
    Ok(Json(VersionList { items }))
}

/// One (possibly older) version of a context.
#[utoipa::path(get, path = "/context/{id}/versions/{n}", tag = "contexts",
    params(("id" = String, Path, description = "Context id (UUID)"), ("n" = i64, Path, description = "Version")),
    responses(
        (status = 200, description = "That version", body = StoredContext),
        (status = 404, description = "No such version", body = ErrorBody),
    ),
    security(("bearer" = [])))]
async fn get_version(
    State(state): State<AppState>,
    Authenticated(caller): Authenticated,
    VersionPath(id, version): VersionPath,
) -> HttpResult<Response> {
    let ctx = state.inner.contexts.get_version(&caller, id, version).await?;
    Ok(context_response(StatusCode::OK, &ctx, None))
}
