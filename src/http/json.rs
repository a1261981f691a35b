//! Reading JSON request bodies with our limits and our error messages: media type
//! (415), size (413), nesting depth (400) and syntax/type errors that name the field.

use axum::body::Body;
use axum::http::{HeaderMap, header};
use http_body_util::BodyExt;
use serde::de::DeserializeOwned;

use super::error::HttpError;
use crate::domain::Error;

#[derive(Clone, Copy, Debug)]
pub struct BodyLimits {
    pub max_bytes: usize,
    pub max_depth: usize,
}

/// `application/json` or any `application/<x>+json` (e.g. merge-patch+json).
pub fn check_content_type(headers: &HeaderMap) -> Result<(), HttpError> {
    let expected = "application/json";
    let value = headers
        .get(header::CONTENT_TYPE)
        .and_then(|v| v.to_str().ok())
        .ok_or(HttpError::UnsupportedMediaType { expected })?;
    let essence = value.split(';').next().unwrap_or("").trim().to_ascii_lowercase();
    let ok = essence == "application/json" || (essence.starts_with("application/") && essence.ends_with("+json"));
    if ok { Ok(()) } else { Err(HttpError::UnsupportedMediaType { expected }) }
}

/// How much of an oversized body is read and discarded before answering 413, as a
/// multiple of the limit. Answering without reading makes most clients fail with a
/// broken pipe instead of seeing the 413; reading without bound would be a gift to
/// anyone who wants to keep a worker busy.
const DRAIN_FACTOR: usize = 8;

pub async fn read_body(headers: &HeaderMap, mut body: Body, limits: BodyLimits) -> Result<bytes::Bytes, HttpError> {
    let max = limits.max_bytes;
    let drain_cap = max.saturating_mul(DRAIN_FACTOR);
    let too_large = HttpError::PayloadTooLarge { max };
    let announced =
        headers.get(header::CONTENT_LENGTH).and_then(|v| v.to_str().ok()).and_then(|v| v.parse::<u64>().ok());
    if let Some(len) = announced
        && len > max as u64
    {
        if len <= drain_cap as u64 {
            drain(&mut body, drain_cap).await;
        }
        return Err(too_large);
    }
    let mut buf = bytes::BytesMut::new();
    while let Some(frame) = body.frame().await {
        let frame = frame.map_err(|e| HttpError::MalformedJson(format!("the request body could not be read: {e}")))?;
        if let Ok(data) = frame.into_data() {
            if buf.len() + data.len() > max {
                drain(&mut body, drain_cap.saturating_sub(buf.len() + data.len())).await;
                return Err(too_large);
            }
            buf.extend_from_slice(&data);
        }
    }
    Ok(buf.freeze())
}

/// Reads and discards up to `cap` more bytes of the body.
async fn drain(body: &mut Body, cap: usize) {
    let mut seen = 0usize;
    while seen <= cap {
        match body.frame().await {
            Some(Ok(frame)) => seen += frame.data_ref().map_or(0, |d| d.len()),
            _ => break,
        }
    }
}

/// Parses a JSON document into `T`. Errors name the offending field by its path
/// (e.g. `session.history[2].role`).
pub fn parse<T: DeserializeOwned>(bytes: &[u8], max_depth: usize) -> Result<T, HttpError> {
    let first = bytes.iter().find(|b| !b.is_ascii_whitespace());
    if first.is_none() {
        return Err(HttpError::MalformedJson("the request body is empty".into()));
    }
    check_depth(bytes, max_depth)?;
    // Every body of this API is an object; serde would also take a struct from an
    // array (`[null, null]`), which no client means.
    if first != Some(&b'{') {
        return Err(HttpError::Domain(Error::invalid("body", "must be a JSON object")));
    }
    let mut de = serde_json::Deserializer::from_slice(bytes);
    let value: T = serde_path_to_error::deserialize(&mut de).map_err(|e| {
        let path = e.path().to_string();
        let inner = e.into_inner();
        match inner.classify() {
            serde_json::error::Category::Data => {
                let field = if path == "." { "body".to_string() } else { path };
                HttpError::Domain(Error::invalid(field, inner.to_string()))
            }
            _ => HttpError::MalformedJson(inner.to_string()),
        }
    })?;
    de.end().map_err(|e| HttpError::MalformedJson(e.to_string()))?;
    Ok(value)
}

/// Rejects documents nested deeper than `max` before the parser recurses into them.
/// A byte scan is enough: brackets inside strings are skipped by tracking quotes and
/// escapes; the parser will reject anything else that is malformed.
pub fn check_depth(bytes: &[u8], max: usize) -> Result<(), HttpError> {
    let mut depth = 0usize;
    let mut in_string = false;
    let mut escaped = false;
    for &b in bytes {
        if in_string {
            match (escaped, b) {
                (true, _) => escaped = false,
                (false, b'\\') => escaped = true,
                (false, b'"') => in_string = false,
                _ => {}
            }
            continue;
        }
        match b {
            b'"' => in_string = true,
            b'{' | b'[' => {
                depth += 1;
                if depth > max {
                    return Err(HttpError::TooDeep { max });
                }
            }
            b'}' | b']' => depth = depth.saturating_sub(1),
            _ => {}
        }
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn depth_counts_only_structure() {
        assert!(check_depth(br#"{"a":[[1]]}"#, 3).is_ok());
        assert!(matches!(check_depth(br#"{"a":[[[1]]]}"#, 3), Err(HttpError::TooDeep { max: 3 })));
        assert!(check_depth(br#"{"a":"[[[[[[\"[[[["}"#, 1).is_ok());
    }

    #[test]
    fn data_errors_name_the_field() {
        #[derive(serde::Deserialize, Debug)]
        #[allow(dead_code)]
        struct T {
            a: Vec<u8>,
        }
        match parse::<T>(br#"{"a":[1,"x"]}"#, 64) {
            Err(HttpError::Domain(Error::InvalidField { field, .. })) => assert_eq!(field, "a[1]"),
            other => panic!("{other:?}"),
        }
        assert!(matches!(parse::<T>(b"{\"a\":", 64), Err(HttpError::MalformedJson(_))));
        assert!(matches!(parse::<T>(b"{\"a\":[]} x", 64), Err(HttpError::MalformedJson(_))));
        assert!(matches!(parse::<T>(b"  ", 64), Err(HttpError::MalformedJson(_))));
    }
}
