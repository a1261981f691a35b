//! How the context use cases record themselves (docs/audit.md): one record per
//! operation, naming the caller (the authentication that let it in), the decision and
//! the policies behind it.
//!
//! - A read is recorded with its outcome: allowed (the policies), or refused with what
//!   the caller was told. Queued, unless `audit_fail_closed_reads`.
//! - A write is authorized from the context's facts first, and its record committed
//!   before the write runs: no write happens without its record, and one whose record
//!   cannot be written does not happen (503). The store checks the authorization again
//!   inside the write's transaction; a write that then fails adds a `fail` record.

use std::sync::Arc;

use super::context_denial;
use super::contexts::ContextService;
use crate::audit::Audit;
use crate::authn::Caller;
use crate::authz::{Action, Decision, Resource};
use crate::domain::audit::{self, Outcome, Target};
use crate::domain::{ContextId, Error, StoreError};
use crate::store::FactsRecord;

/// Records an operation's authorization — allowed, with the policies that allowed it,
/// or refused, with what the caller is told — and passes the result on. An allowed
/// write's record is committed before this returns (`Audit::record`); a read's and a
/// refusal's are queued.
pub(crate) async fn decided<T>(
    audit: &Audit,
    caller: &Caller,
    action: audit::Action,
    target: Option<Target>,
    checked: Result<(T, Arc<Decision>), Error>,
) -> Result<T, Error> {
    let outcome = match &checked {
        Ok((_, decision)) => Outcome::Allow(decision.policies.clone()),
        Err(e) => refusal(e),
    };
    audit.record(caller.event(action, target, outcome)).await.map_err(|_| Error::AuditUnavailable)?;
    checked.map(|(value, _)| value)
}

/// Records the failure of an operation that was authorized (and recorded as such).
pub(crate) async fn outcome<T>(
    audit: &Audit,
    caller: &Caller,
    action: audit::Action,
    target: Option<Target>,
    result: Result<T, Error>,
) -> Result<T, Error> {
    if let Err(e) = &result {
        let _ = audit.record(caller.event(action, target, Outcome::Fail(e.to_string()))).await;
    }
    result
}

impl ContextService {
    /// Records a read of context `id` (see [`decided`]). A stored context that does not
    /// read back (corrupt) is an integrity error: the anomaly path too
    /// (docs/anomaly.md).
    pub(super) async fn read_decided<T>(
        &self,
        caller: &Caller,
        action: audit::Action,
        id: ContextId,
        checked: Result<(T, Arc<Decision>), Error>,
    ) -> Result<T, Error> {
        if let Err(Error::Store(StoreError::Corrupt(why) | StoreError::Integrity(why))) = &checked {
            self.guard.integrity_error(caller.actor(), Target::Context(id), why, &caller.request).await;
        }
        decided(&self.audit, caller, action, Some(Target::Context(id)), checked).await
    }

    /// Authorizes `action` on context `id` from its facts and commits the record of
    /// the decision (see [`decided`]).
    pub(super) async fn authorize_write(
        &self,
        caller: &Caller,
        id: ContextId,
        action: Action,
        audited: audit::Action,
    ) -> Result<(), Error> {
        let tenant = caller.principal.tenant;
        let checked = match self.store.facts(tenant, id).await? {
            None => Err(Error::ContextNotFound(id)),
            Some(FactsRecord::Tombstone(facts)) => Err(self.deleted(caller, &facts)),
            Some(FactsRecord::Live(facts)) => self
                .authz
                .authorize(caller, action, Resource::Context(&facts))
                .map(|d| ((), d))
                .map_err(|d| context_denial(id, d)),
        };
        decided(&self.audit, caller, audited, Some(Target::Context(id)), checked).await?;
        // Counted once authorized: a flood of writes suspends its principal
        // (docs/anomaly.md); this write goes ahead, the next ones are refused.
        self.guard.wrote(&caller.principal, &caller.request).await;
        Ok(())
    }
}

/// A refusal as the log states it: the caller's answer, or — for the server's own
/// failures — a failure.
fn refusal(e: &Error) -> Outcome {
    match e {
        Error::Store(_) | Error::AuditUnavailable => Outcome::Fail(e.to_string()),
        _ => Outcome::Deny(e.to_string()),
    }
}
