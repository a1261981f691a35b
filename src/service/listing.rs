//! `GET /context` (and MCP `context_list`, `resources/list`): the contexts the caller may
//! read, newest first. Filtering happens here, per item, with the same decision a `GET`
//! would get: a foreign or unreadable id never appears, and a principal with grants only
//! sees exactly what was shared with it.

use base64::Engine;
use base64::engine::general_purpose::URL_SAFE_NO_PAD;

use super::contexts::{ContextService, Page, summary};
use crate::authn::Caller;
use crate::authz::{Action, Resource};
use crate::domain::{ContextBinding, ContextId, Error, PrincipalId, Timestamp};
use crate::store::ContextRecord;

pub const MAX_PAGE: u32 = 200;
pub const DEFAULT_PAGE: u32 = 50;
/// How many stored contexts one listing request looks at, at most, while filtering for
/// those the caller may read; a page may come back short (with a cursor to go on) when
/// the caller can read only a few contexts of a large tenant.
const MAX_LIST_SCAN: usize = 2_000;

/// An opaque position in a listing.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Cursor {
    /// A tenant listing: items strictly older than this creation sequence.
    Before(i64),
    /// The listing of a context-bound token: the items after this many.
    Skip(usize),
}

impl Cursor {
    pub fn parse(s: &str) -> Result<Self, Error> {
        let raw = URL_SAFE_NO_PAD.decode(s).map_err(|_| bad_cursor())?;
        let text = std::str::from_utf8(&raw).map_err(|_| bad_cursor())?;
        let parsed = match text.split_once(':') {
            Some(("s", n)) => n.parse().ok().map(Cursor::Before),
            Some(("o", n)) => n.parse().ok().map(Cursor::Skip),
            _ => None,
        };
        parsed.ok_or_else(bad_cursor)
    }

    fn encode(self) -> String {
        URL_SAFE_NO_PAD.encode(match self {
            Cursor::Before(seq) => format!("s:{seq}"),
            Cursor::Skip(n) => format!("o:{n}"),
        })
    }
}

fn bad_cursor() -> Error {
    Error::invalid("cursor", "is not a cursor returned by this server for this listing")
}

fn page_size(limit: Option<u32>) -> Result<usize, Error> {
    match limit {
        None => Ok(DEFAULT_PAGE as usize),
        Some(n @ 1..=MAX_PAGE) => Ok(n as usize),
        Some(_) => Err(Error::invalid("limit", format!("must be between 1 and {MAX_PAGE}"))),
    }
}

impl ContextService {
    /// One page of the listing; with `author`, only contexts whose current history
    /// holds a message that principal appended.
    pub async fn list(
        &self,
        caller: &Caller,
        cursor: Option<Cursor>,
        limit: Option<u32>,
        author: Option<PrincipalId>,
    ) -> Result<Page, Error> {
        let tenant = caller.principal.tenant;
        let listed = async {
            let decision = self
                .authz
                .authorize(caller, Action::List, Resource::Tenant(tenant))
                .map_err(|d| super::denial_error(d, "tenant"))?;
            Ok((self.list_authorized(caller, cursor, limit, author).await?, decision))
        };
        super::audited::decided(&self.audit, caller, crate::domain::audit::Action::ContextList, None, listed.await)
            .await
    }

    async fn list_authorized(
        &self,
        caller: &Caller,
        cursor: Option<Cursor>,
        limit: Option<u32>,
        author: Option<PrincipalId>,
    ) -> Result<Page, Error> {
        let tenant = caller.principal.tenant;
        let limit = page_size(limit)?;
        if let Some(binding) = caller.binding.clone() {
            return self.list_bound(caller, &binding, cursor, limit, author).await;
        }
        let mut before = match cursor {
            None => None,
            Some(Cursor::Before(seq)) => Some(seq),
            Some(Cursor::Skip(_)) => return Err(bad_cursor()),
        };
        let now = Timestamp::now();
        let mut items = Vec::with_capacity(limit);
        let mut scanned = 0;
        let next_cursor = loop {
            let batch = (limit + 1).max(64) as u32;
            let rows = self.store.list(tenant, now, before, batch, author).await?;
            let exhausted = rows.len() < batch as usize;
            let mut left_over = false;
            for row in rows {
                if items.len() == limit {
                    left_over = true;
                    break;
                }
                scanned += 1;
                before = Some(row.seq);
                if self.authz.can_read(caller, &row.facts) {
                    items.push(summary(row.head));
                }
            }
            let position = before.map(|s| Cursor::Before(s).encode());
            if items.len() == limit {
                break if left_over || !exhausted { position } else { None };
            }
            if exhausted {
                break None;
            }
            if scanned >= MAX_LIST_SCAN {
                break position;
            }
        };
        Ok(Page { items, next_cursor })
    }

    /// A context-bound token lists exactly its readable contexts (at most
    /// `binding::MAX_CONTEXT_IDS`), looked up by id instead of scanning the tenant for
    /// them, newest first.
    async fn list_bound(
        &self,
        caller: &Caller,
        binding: &ContextBinding,
        cursor: Option<Cursor>,
        limit: usize,
        author: Option<PrincipalId>,
    ) -> Result<Page, Error> {
        let skip = match cursor {
            None => 0,
            Some(Cursor::Skip(n)) => n,
            Some(Cursor::Before(_)) => return Err(bad_cursor()),
        };
        let mut ids: Vec<ContextId> = binding.entries().iter().flat_map(|e| e.context_ids.iter().copied()).collect();
        ids.sort();
        ids.dedup();
        let now = Timestamp::now();
        let mut found = Vec::with_capacity(ids.len());
        for id in ids {
            if let Some(ContextRecord::Live { facts, context }) = self.store.get(caller.principal.tenant, id).await?
                && !context.is_expired_at(now)
                && self.authz.can_read(caller, &facts)
                && author.is_none_or(|a| {
                    context.session.history.iter().any(|m| m.provenance.as_ref().is_some_and(|p| p.principal == a))
                })
            {
                found.push(crate::domain::ContextHead::of(&context));
            }
        }
        found.sort_by(|a, b| b.created_at.cmp(&a.created_at).then(b.context_id.cmp(&a.context_id)));
        let more = found.len() > skip.saturating_add(limit);
        let items = found.into_iter().skip(skip).take(limit).map(summary).collect();
        Ok(Page { items, next_cursor: more.then(|| Cursor::Skip(skip + limit).encode()) })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn cursor_round_trip_and_garbage() {
        for c in [Cursor::Before(42), Cursor::Skip(7)] {
            assert_eq!(Cursor::parse(&c.encode()).unwrap(), c);
        }
        assert!(Cursor::parse("zzz").is_err());
        assert!(Cursor::parse(&URL_SAFE_NO_PAD.encode("s:x")).is_err());
        assert!(Cursor::parse(&URL_SAFE_NO_PAD.encode("q:1")).is_err());
        assert!(Cursor::parse(&URL_SAFE_NO_PAD.encode("o:-1")).is_err());
    }
}
