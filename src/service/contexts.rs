//! The context use cases: create, get, replace, patch, append, delete, list, versions.

use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};

use bytes::Bytes;
use serde::Serialize;
use serde_json::{Map, Value};

use super::context_denial;
use crate::anomaly::Guard;
use crate::audit::Audit;
use crate::authn::Caller;
use crate::authz::{Action, Authorizer, Decision, Resource};
use crate::domain::audit::{Action as Audited, Target};
use crate::domain::context::{AppendInput, ContextLimits, append_messages, apply_patch};
use crate::domain::{ChangeKind, ContextChange, TenantId};
use crate::domain::{
    ContextFacts, ContextHead, ContextId, ContextInput, Error, Provenance, Revision, StoreError, StoredContext,
    Timestamp, Version,
};
use crate::store::body::Body;
use crate::store::{AuthStore, ContextRecord, ContextStore, RawContextRecord, VersionInfo, decode_context};

/// An `If-Match` precondition (RFC 9110 section 13.1.1).
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum IfMatch {
    Any,
    OneOf(Vec<Version>),
}

impl IfMatch {
    fn check(&self, id: ContextId, current: Version) -> Result<(), Error> {
        match self {
            IfMatch::Any => Ok(()),
            IfMatch::OneOf(v) if v.contains(&current) => Ok(()),
            IfMatch::OneOf(_) => Err(Error::PreconditionFailed { context_id: id, current }),
        }
    }
}

/// One entry of `GET /context`: everything but the history, which can be large.
#[derive(Debug, Serialize, utoipa::ToSchema)]
pub struct ContextSummary {
    pub context_id: ContextId,
    pub metadata: Map<String, Value>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub expires: Option<Timestamp>,
    pub version: Version,
    pub message_count: usize,
    pub created_at: Timestamp,
    pub updated_at: Timestamp,
}

#[derive(Debug, Serialize, utoipa::ToSchema)]
pub struct Page {
    pub items: Vec<ContextSummary>,
    pub next_cursor: Option<String>,
}

/// Computes the next version from the current head and the time of the write.
type NextVersion<'a> = Box<dyn FnOnce(&ContextHead, Timestamp) -> Result<Revision, Error> + Send + 'a>;

/// The provenance of what `caller` writes at `at`: the server's record of the
/// authenticated principal, its client and the actors of an exchanged token.
pub fn provenance(caller: &Caller, at: Timestamp) -> Provenance {
    let p = &caller.principal;
    Provenance {
        principal: p.id,
        name: p.name.clone(),
        kind: p.kind,
        client_id: caller.origin.as_ref().map(|o| o.client_id.clone()),
        act: caller.origin.as_ref().map(|o| o.actors.clone()).unwrap_or_default(),
        at,
    }
}

pub use super::listing::Cursor;

#[derive(Clone)]
pub struct ContextService {
    pub(super) store: Arc<dyn ContextStore>,
    /// Principals, to check the grantee of a grant.
    pub(super) principals: Arc<dyn AuthStore>,
    pub(super) authz: Authorizer,
    limits: ContextLimits,
    /// Committed changes, for MCP subscriptions: this process's own writes, or — when
    /// the database announces every replica's writes — what it announces.
    changes: tokio::sync::broadcast::Sender<ContextChange>,
    /// Whether this service announces its own writes (false once the database does).
    announces_writes: Arc<AtomicBool>,
    pub(super) audit: Audit,
    /// Counts writes per principal (the write rule of docs/anomaly.md).
    pub(super) guard: Guard,
    /// Sealed inline contexts (`service/sealing.rs`); none until the root enables them.
    pub(super) inline: Option<Arc<super::sealing::Inline>>,
}

impl ContextService {
    pub fn new(
        store: Arc<dyn ContextStore>,
        principals: Arc<dyn AuthStore>,
        authz: Authorizer,
        limits: ContextLimits,
        audit: Audit,
        guard: Guard,
    ) -> Self {
        let (changes, _) = tokio::sync::broadcast::channel(256);
        let announces_writes = Arc::new(AtomicBool::new(true));
        Self { store, principals, authz, limits, changes, announces_writes, audit, guard, inline: None }
    }

    pub fn authorizer(&self) -> &Authorizer {
        &self.authz
    }

    /// Changes from now on. A slow receiver may miss some (it is told it lagged).
    pub fn changes(&self) -> tokio::sync::broadcast::Receiver<ContextChange> {
        self.changes.subscribe()
    }

    /// From now on changes come from the database's feed ([`Self::publish`]), which
    /// carries this process's writes as well as every other replica's.
    pub fn follow_database_feed(&self) {
        self.announces_writes.store(false, Ordering::Release);
    }

    /// Announces a change the database reported.
    pub fn publish(&self, change: ContextChange) {
        // No receivers is the common case and not an error.
        let _ = self.changes.send(change);
    }

    fn changed(&self, tenant: TenantId, context_id: ContextId, kind: ChangeKind) {
        if self.announces_writes.load(Ordering::Acquire) {
            self.publish(ContextChange { tenant, context_id, kind });
        }
    }

    pub async fn create(&self, caller: &Caller, input: ContextInput) -> Result<StoredContext, Error> {
        let tenant = caller.principal.tenant;
        let id = input.context_id.unwrap_or_else(ContextId::new_random);
        let target = Some(Target::Context(id));
        let checked = self
            .authz
            .authorize(caller, Action::Create, Resource::Tenant(tenant))
            .map(|d| ((), d))
            .map_err(|d| super::denial_error(d, "tenant"));
        super::audited::decided(&self.audit, caller, Audited::ContextCreate, target.clone(), checked).await?;
        self.guard.wrote(&caller.principal, &caller.request).await;
        let created = async {
            let now = Timestamp::now();
            let mut ctx = input.into_new(id, now, Some(&provenance(caller, now)))?;
            self.limits.check(&ContextHead::of(&ctx), &ctx.session.history)?;
            match self.store.create(tenant, caller.principal.id, &ctx).await {
                Ok(signature) => {
                    self.changed(tenant, id, ChangeKind::Created);
                    ctx.signature = signature;
                    Ok(ctx)
                }
                Err(StoreError::Duplicate) => Err(Error::ContextExists(id)),
                Err(e) => Err(e.into()),
            }
        };
        super::audited::outcome(&self.audit, caller, Audited::ContextCreate, target, created.await).await
    }

    pub async fn get(&self, caller: &Caller, id: ContextId) -> Result<StoredContext, Error> {
        let read = async {
            let (decision, _, body) = self.readable_body(caller, id, Action::Read).await?;
            Ok((decode_context(&body.json)?, decision))
        };
        self.read_decided(caller, Audited::ContextRead, id, read.await).await
    }

    pub async fn get_version(&self, caller: &Caller, id: ContextId, version: Version) -> Result<StoredContext, Error> {
        let read = async {
            let (decision, _, _) = self.readable_body(caller, id, Action::Read).await?;
            let found = self.store.get_version(caller.principal.tenant, id, version).await?;
            Ok((found.ok_or(Error::NotFound { what: "version" })?, decision))
        };
        self.read_decided(caller, Audited::ContextReadVersion, id, read.await).await
    }

    pub async fn versions(&self, caller: &Caller, id: ContextId) -> Result<Vec<VersionInfo>, Error> {
        let read = async {
            let (decision, _, _) = self.readable_body(caller, id, Action::Read).await?;
            Ok((self.store.versions(caller.principal.tenant, id).await?, decision))
        };
        self.read_decided(caller, Audited::ContextVersions, id, read.await).await
    }

    pub async fn replace(
        &self,
        caller: &Caller,
        id: ContextId,
        input: ContextInput,
        if_match: Option<IfMatch>,
    ) -> Result<ContextHead, Error> {
        self.update(
            caller,
            id,
            (Action::Write, Audited::ContextReplace),
            if_match,
            Box::new(|current, now| input.into_replacement(current, now, Some(&provenance(caller, now)))),
        )
        .await
    }

    pub async fn patch(
        &self,
        caller: &Caller,
        id: ContextId,
        patch: Value,
        if_match: Option<IfMatch>,
    ) -> Result<ContextHead, Error> {
        self.update(
            caller,
            id,
            (Action::Write, Audited::ContextPatch),
            if_match,
            Box::new(move |current, now| apply_patch(current, &patch, now)),
        )
        .await
    }

    pub async fn append(
        &self,
        caller: &Caller,
        id: ContextId,
        input: AppendInput,
        if_match: Option<IfMatch>,
    ) -> Result<ContextHead, Error> {
        self.update(
            caller,
            id,
            (Action::Inject, Audited::ContextAppend),
            if_match,
            Box::new(move |current, now| append_messages(current, input.messages, now, Some(&provenance(caller, now)))),
        )
        .await
    }

    /// The whole version a write of `caller` just made, for answers that carry the
    /// representation. Not authorized again: the writer is shown what it wrote (as
    /// before per-message storage), even where it may not read.
    /// Served as bytes, never parsed: the writer's cache holds what it just wrote (see
    /// `store/cached.rs`), so a long history costs a copy, not a parse and a serialization.
    pub async fn written(&self, caller: &Caller, head: &ContextHead) -> Result<Bytes, Error> {
        let tenant = caller.principal.tenant;
        if let Some(RawContextRecord::Live { version, body, .. }) = self.store.get_raw(tenant, head.context_id).await?
            && version == head.version
        {
            return Ok(body.json);
        }
        let found = self.store.get_version(tenant, head.context_id, head.version).await?;
        // Only a delete racing the write removes the version in between.
        let ctx = found.ok_or(Error::ContextDeleted(head.context_id))?;
        Ok(crate::store::body::of_context(&ctx)?.json)
    }

    pub async fn delete(&self, caller: &Caller, id: ContextId, if_match: Option<IfMatch>) -> Result<(), Error> {
        self.authorize_write(caller, id, Action::Delete, Audited::ContextDelete).await?;
        let deleted = self.delete_authorized(caller, id, if_match).await;
        super::audited::outcome(&self.audit, caller, Audited::ContextDelete, Some(Target::Context(id)), deleted).await
    }

    async fn delete_authorized(&self, caller: &Caller, id: ContextId, if_match: Option<IfMatch>) -> Result<(), Error> {
        let tenant = caller.principal.tenant;
        let record = self.store.get(tenant, id).await?;
        let (facts, current) = match record {
            None => return Err(Error::ContextNotFound(id)),
            Some(ContextRecord::Tombstone { facts }) => return Err(self.deleted(caller, &facts)),
            Some(ContextRecord::Live { facts, context }) => (facts, context),
        };
        self.authz.authorize(caller, Action::Delete, Resource::Context(&facts)).map_err(|d| context_denial(id, d))?;
        if let Some(cond) = &if_match {
            cond.check(id, current.version)?;
        }
        let expected = if_match.is_some().then_some(current.version);
        if self.store.delete(tenant, id, expected, Timestamp::now()).await? {
            self.changed(tenant, id, ChangeKind::Deleted);
            return Ok(());
        }
        // Lost a race: someone else deleted or changed it in between.
        match self.store.get(tenant, id).await? {
            Some(ContextRecord::Live { context, .. }) => {
                Err(Error::PreconditionFailed { context_id: id, current: context.version })
            }
            _ => Err(Error::ContextDeleted(id)),
        }
    }

    /// The latest version as served, after the same visibility, authorization and
    /// expiry checks as every read — without parsing it — and the decision that let it
    /// be read.
    async fn readable_body(
        &self,
        caller: &Caller,
        id: ContextId,
        action: Action,
    ) -> Result<(Arc<Decision>, Version, Body), Error> {
        let tenant = caller.principal.tenant;
        match self.store.get_raw(tenant, id).await? {
            None => Err(Error::ContextNotFound(id)),
            Some(RawContextRecord::Tombstone { facts }) => Err(self.deleted(caller, &facts)),
            Some(RawContextRecord::Live { facts, version, expires_at, body }) => {
                let decision = self
                    .authz
                    .authorize(caller, action, Resource::Context(&facts))
                    .map_err(|d| context_denial(id, d))?;
                if expires_at.is_some_and(|e| e <= Timestamp::now()) {
                    return Err(Error::ContextExpired(id));
                }
                Ok((decision, version, body))
            }
        }
    }

    /// `GET /context/{id}`: the served bytes of the latest version and its version.
    pub async fn get_json(&self, caller: &Caller, id: ContextId) -> Result<(Version, Bytes), Error> {
        let (version, body) = self.get_body(caller, id).await?;
        Ok((version, body.json))
    }

    /// The latest version as served, with the layout windows are cut by.
    pub async fn get_body(&self, caller: &Caller, id: ContextId) -> Result<(Version, Body), Error> {
        self.read_body(caller, id, Audited::ContextRead).await
    }

    /// The latest version as served, read and recorded as `audited`.
    pub(super) async fn read_body(
        &self,
        caller: &Caller,
        id: ContextId,
        audited: Audited,
    ) -> Result<(Version, Body), Error> {
        let read = self.readable_body(caller, id, Action::Read).await.map(|(d, v, b)| ((v, b), d));
        self.read_decided(caller, audited, id, read).await
    }

    /// Read-modify-write of the latest version, atomic in the store.
    async fn update(
        &self,
        caller: &Caller,
        id: ContextId,
        (action, audited): (Action, Audited),
        if_match: Option<IfMatch>,
        make_next: NextVersion<'_>,
    ) -> Result<ContextHead, Error> {
        self.authorize_write(caller, id, action, audited).await?;
        let tenant = caller.principal.tenant;
        let limits = self.limits;
        let authz = &self.authz;
        let result = self
            .store
            .update(
                tenant,
                id,
                Box::new(|facts, current| {
                    authz.authorize(caller, action, Resource::Context(facts)).map_err(|d| context_denial(id, d))?;
                    let now = Timestamp::now();
                    if current.is_expired_at(now) {
                        return Err(Error::ContextExpired(id));
                    }
                    if let Some(cond) = &if_match {
                        cond.check(id, current.version)?;
                    }
                    let next = make_next(current, now)?;
                    limits.check_revision(&next)?;
                    Ok(next)
                }),
            )
            .await
            .map(|written| written.head);
        let result = self.after_write(caller, id, result).await;
        super::audited::outcome(&self.audit, caller, audited, Some(Target::Context(id)), result).await
    }

    /// What a locked write on context `id` answers: a tombstone says "deleted" only to
    /// those who could read the context; a success is announced to subscribers.
    pub(super) async fn after_write<T>(
        &self,
        caller: &Caller,
        id: ContextId,
        result: Result<T, Error>,
    ) -> Result<T, Error> {
        let tenant = caller.principal.tenant;
        match result {
            Err(Error::ContextDeleted(_)) => match self.store.get(tenant, id).await? {
                Some(ContextRecord::Tombstone { facts }) => Err(self.deleted(caller, &facts)),
                _ => Err(Error::ContextNotFound(id)),
            },
            Ok(done) => {
                self.changed(tenant, id, ChangeKind::Updated);
                Ok(done)
            }
            Err(Error::Store(StoreError::Integrity(why))) => {
                // A write refused because the version it would extend fails its
                // signature: the anomaly path, as for a read (docs/integrity.md).
                self.guard.integrity_error(caller.actor(), Target::Context(id), &why, &caller.request).await;
                Err(Error::Store(StoreError::Integrity(why)))
            }
            other => other,
        }
    }
}

impl ContextService {
    /// A tombstone answers "deleted" only to those who could have read the context.
    pub(super) fn deleted(&self, caller: &Caller, facts: &ContextFacts) -> Error {
        match self.authz.authorize(caller, Action::Read, Resource::Context(facts)) {
            Ok(_) => Error::ContextDeleted(facts.id),
            Err(d) => context_denial(facts.id, d),
        }
    }
}

pub(super) fn summary(c: ContextHead) -> ContextSummary {
    ContextSummary {
        context_id: c.context_id,
        message_count: c.history_len,
        metadata: c.metadata,
        expires: c.expires,
        version: c.version,
        created_at: c.created_at,
        updated_at: c.updated_at,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn if_match() {
        let id = ContextId::new_random();
        assert!(IfMatch::Any.check(id, Version(3)).is_ok());
        assert!(IfMatch::OneOf(vec![Version(2), Version(3)]).check(id, Version(3)).is_ok());
        assert!(matches!(
            IfMatch::OneOf(vec![Version(2)]).check(id, Version(3)),
            Err(Error::PreconditionFailed { current: Version(3), .. })
        ));
    }
}
