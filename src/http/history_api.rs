//! Reading long histories in pieces: a window on `GET /context/{id}` (`last`, or
//! `after` and `limit`) and the paginated `GET /context/{id}/messages`. Both are cut
//! from the served bytes of the version (no parsing for a window), and both carry the
//! `ETag` of the whole version, so a client can tell that the pieces belong together.

use axum::Json;
use axum::extract::State;
use axum::http::{HeaderMap, HeaderName, HeaderValue, StatusCode, header};
use axum::response::{IntoResponse, Response};
use serde::Deserialize;

use super::AppState;
use super::error::{ErrorBody, HttpResult};
use super::extract::{Authenticated, ContextIdPath, QueryParams, none_match};
use crate::domain::{Error, HistoryEntry, HistoryWindow, PrincipalId};
use crate::store::body::Body;

/// The version a write made (or a read served).
pub const VERSION_HEADER: HeaderName = HeaderName::from_static("ctxguard-version");
/// How many messages the version's whole history holds.
pub const LENGTH_HEADER: HeaderName = HeaderName::from_static("ctxguard-history-length");
/// The position (1-based) of the first message of a window.
pub const START_HEADER: HeaderName = HeaderName::from_static("ctxguard-history-start");

/// Default and largest page of `GET /context/{id}/messages`.
const DEFAULT_PAGE: usize = 100;
const MAX_PAGE: u64 = 1000;

#[derive(Debug, Default, Deserialize, utoipa::IntoParams)]
#[serde(deny_unknown_fields)]
#[into_params(parameter_in = Query)]
pub struct WindowQuery {
    /// Only the last N messages of the history (not with `after` or `limit`).
    #[param(maximum = 10000)]
    last: Option<u64>,
    /// Only the messages after this position (1-based; 0 is before the first).
    after: Option<u64>,
    /// With `after`: at most this many messages.
    #[param(minimum = 1, maximum = 10000)]
    limit: Option<u64>,
}

impl WindowQuery {
    pub fn window(&self) -> Result<Option<HistoryWindow>, Error> {
        HistoryWindow::from_query(self.last, self.after, self.limit)
    }
}

/// The version with only the window's messages, its headers saying which part of the
/// history it shows.
pub fn window_response(body: &Body, window: HistoryWindow) -> Response {
    let total = body.history_len();
    let range = window.range(total);
    let start = range.start + 1;
    let mut r = ([(header::CONTENT_TYPE, "application/json")], body.window(range)).into_response();
    let h = r.headers_mut();
    h.insert(LENGTH_HEADER, HeaderValue::from(total));
    h.insert(START_HEADER, HeaderValue::from(start));
    r
}

#[derive(Debug, Deserialize, utoipa::IntoParams)]
#[serde(deny_unknown_fields)]
#[into_params(parameter_in = Query)]
pub struct MessagesQuery {
    /// Messages after this position (1-based; default 0, from the first).
    after: Option<u64>,
    /// Page size, 1–1000 (default 100).
    #[param(minimum = 1, maximum = 1000)]
    limit: Option<u64>,
    /// Only messages appended by this principal (its id, as in `provenance.principal`).
    #[param(value_type = Option<String>, format = Uuid)]
    author: Option<String>,
}

/// One page of a version's history: each message with its position.
#[derive(serde::Serialize, utoipa::ToSchema)]
pub struct MessagePage {
    pub context_id: String,
    pub version: i64,
    pub history_length: usize,
    /// Each item is a message (`role`, `message`, `provenance`) with its `position`.
    #[schema(value_type = Vec<Object>)]
    pub items: Vec<serde_json::Value>,
    /// Pass as `after` for the next page; absent on the last page.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub next_after: Option<usize>,
}

/// Read a context's history page by page.
#[utoipa::path(get, path = "/context/{id}/messages", tag = "contexts",
    params(("id" = String, Path, description = "Context id (UUID)"), MessagesQuery),
    responses(
        (status = 200, description = "A page of the latest version's history", body = MessagePage),
        (status = 304, description = "Not modified (If-None-Match)"),
        (status = 400, description = "Bad after, limit or author", body = ErrorBody),
        (status = 404, description = "Missing, not visible, deleted or expired", body = ErrorBody),
    ),
    security(("bearer" = [])))]
pub async fn messages(
    State(state): State<AppState>,
    Authenticated(caller): Authenticated,
    ContextIdPath(id): ContextIdPath,
    QueryParams(q): QueryParams<MessagesQuery>,
    headers: HeaderMap,
) -> HttpResult<Response> {
    let limit = match q.limit {
        None => DEFAULT_PAGE,
        Some(l) if (1..=MAX_PAGE).contains(&l) => l as usize,
        Some(_) => return Err(Error::invalid("limit", format!("must be 1–{MAX_PAGE}")).into()),
    };
    let author =
        q.author.as_deref().map(|a| a.parse::<PrincipalId>().map_err(|m| Error::invalid("author", m))).transpose()?;
    let (version, body) = state.inner.contexts.get_body(&caller, id).await?;
    if none_match(&headers, version)? {
        return Ok(with_etag(StatusCode::NOT_MODIFIED.into_response(), version.etag()));
    }
    let total = body.history_len();
    let after = crate::domain::window::position(q.after)?;
    let start = usize::try_from(after.unwrap_or(0)).unwrap_or(usize::MAX).min(total);
    let mut items = Vec::new();
    let mut last_seen = start;
    for (i, raw) in body.messages(start..total).enumerate() {
        let position = start + i + 1;
        if items.len() == limit {
            break;
        }
        last_seen = position;
        let entry: HistoryEntry =
            serde_json::from_slice(raw).map_err(|e| Error::Store(crate::domain::StoreError::Corrupt(e.to_string())))?;
        if author.is_some_and(|a| entry.provenance.as_ref().map(|p| p.principal) != Some(a)) {
            continue;
        }
        let mut item = serde_json::to_value(&entry).unwrap_or_default();
        item["position"] = position.into();
        items.push(item);
    }
    let next_after = (last_seen < total).then_some(last_seen);
    let page = MessagePage { context_id: id.to_string(), version: version.0, history_length: total, items, next_after };
    let mut r = with_etag(Json(page).into_response(), version.etag());
    r.headers_mut().insert(header::CACHE_CONTROL, HeaderValue::from_static("private, no-cache"));
    Ok(r)
}

fn with_etag(mut r: Response, etag: String) -> Response {
    if let Ok(v) = HeaderValue::from_str(&etag) {
        r.headers_mut().insert(header::ETAG, v);
    }
    r
}
