//! The database's announcement of every committed context change, for MCP
//! subscriptions across replicas: PostgreSQL `LISTEN` on the channel the
//! `contexts_notify` trigger (migration 0008) notifies. SQLite has no such feed: one
//! process owns the file and announces its own writes.

use sqlx::postgres::{PgListener, PgPool};

use crate::domain::{ChangeKind, ContextChange, StoreError};

/// The channel for this connection's schema, named by the database exactly as the
/// trigger names it from the table's schema (short enough for any schema name).
const CHANNEL_QUERY: &str = "SELECT 'ctxguard_' || left(md5(current_schema()), 16)";

/// Parses a notification payload: `<kind> <tenant_id> <context_id>`.
fn parse(payload: &str) -> Option<ContextChange> {
    let mut parts = payload.split(' ');
    let kind = ChangeKind::parse(parts.next()?)?;
    let tenant = parts.next()?.parse().ok()?;
    let context_id = parts.next()?.parse().ok()?;
    parts.next().is_none().then_some(ContextChange { tenant, context_id, kind })
}

/// Committed context changes from every process sharing the database.
pub struct ContextFeed {
    listener: PgListener,
}

impl ContextFeed {
    pub(super) async fn listen(pool: &PgPool) -> Result<Self, StoreError> {
        let channel: String =
            sqlx::query_scalar(CHANNEL_QUERY).fetch_one(pool).await.map_err(|e| StoreError::Backend(e.to_string()))?;
        let mut listener = PgListener::connect_with(pool).await.map_err(|e| StoreError::Backend(e.to_string()))?;
        listener.listen(&channel).await.map_err(|e| StoreError::Backend(e.to_string()))?;
        Ok(Self { listener })
    }

    /// The next change. When the connection drops it reconnects (changes committed
    /// meanwhile are not announced: subscribers miss them, nothing else does).
    pub async fn next(&mut self) -> Result<ContextChange, StoreError> {
        loop {
            let n = self.listener.recv().await.map_err(|e| StoreError::Backend(e.to_string()))?;
            match parse(n.payload()) {
                Some(change) => return Ok(change),
                None => tracing::warn!(payload = n.payload(), "an unreadable context change notification"),
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn payloads_parse_and_junk_does_not() {
        let t = "2b7e1c5e-7d0b-4e59-9a3c-1d2e3f4a5b6c";
        let c = "123e4567-e89b-42d3-a456-426614174000";
        let got = parse(&format!("deleted {t} {c}")).unwrap();
        assert_eq!(got.kind, ChangeKind::Deleted);
        assert_eq!(got.tenant.to_string(), t);
        assert_eq!(got.context_id.to_string(), c);
        assert!(parse(&format!("renamed {t} {c}")).is_none());
        assert!(parse(&format!("updated {t}")).is_none());
        assert!(parse(&format!("updated {t} {c} extra")).is_none());
        assert!(parse(&format!("updated {c} not-a-uuid")).is_none());
    }
}
