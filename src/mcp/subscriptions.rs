//! Change notifications to MCP clients, both generations:
//!
//! - 2026-07-28 `subscriptions/listen`: one long-lived request per stream whose filter
//!   names the resources to hear about (`resourceSubscriptions`) and whether to hear
//!   that the list changed (`resourcesListChanged`). rmcp acknowledges the subscription
//!   (`notifications/subscriptions/acknowledged`, the first message) and stamps every
//!   notification with its `subscriptionId`; this module decides what is sent.
//! - 2025-era sessions: `resources/subscribe` adds a URI; one watcher per session sends
//!   `notifications/resources/updated` on the session's stream.
//!
//! Both follow [`ContextService::changes`], which carries every replica's writes where
//! the database announces them (PostgreSQL), and both ask, for each change, about the
//! caller *as it is now* ([`StreamAuthority::current`]): a revoked or expired credential
//! ends the stream, and a change is told only to a caller of the same tenant who can
//! read that context (or could, before it was deleted).

use std::collections::HashSet;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};

use rmcp::ErrorData;
use rmcp::RoleServer;
use rmcp::model::{ResourceUpdatedNotificationParam, SubscriptionFilter};
use rmcp::service::{Peer, SubscriptionContext, SubscriptionSink};
use tokio::sync::broadcast::error::RecvError;
use tokio::sync::watch;

use super::catalog::resource_uri;
use super::stream::{Authority, RECHECK};
use crate::authn::Caller;
use crate::domain::{ContextChange, ContextId, Error, TenantId};
use crate::service::ContextService;

/// The most resources one subscription (or one 2025 session) follows.
pub const MAX_SUBSCRIPTIONS: usize = 1000;

/// What a `subscriptions/listen` filter is granted: resource updates (at most
/// [`MAX_SUBSCRIPTIONS`] URIs) and resource-list changes. Tools and prompts never
/// change while the server runs, so their list-changed notifications are not offered.
pub fn accepted(requested: &SubscriptionFilter) -> SubscriptionFilter {
    let mut accepted = SubscriptionFilter::default();
    accepted.resources_list_changed = requested.resources_list_changed.filter(|on| *on);
    accepted.resource_subscriptions =
        requested.resource_subscriptions.as_ref().map(|uris| uris.iter().take(MAX_SUBSCRIPTIONS).cloned().collect());
    accepted
}

/// Whether `caller` may hear of a change of context `id` of `tenant`: same tenant, and
/// the context is readable to it — or was deleted or expired, which a reader is told as
/// "not found" on its next read.
async fn may_hear(contexts: &ContextService, caller: &Caller, tenant: TenantId, id: ContextId) -> bool {
    if tenant != caller.principal.tenant {
        return false;
    }
    matches!(contexts.get(caller, id).await, Ok(_) | Err(Error::ContextDeleted(_) | Error::ContextExpired(_)))
}

fn credential_ended() -> ErrorData {
    ErrorData::invalid_request("the credential of this subscription no longer holds; authenticate again", None)
}

/// Runs one `subscriptions/listen` stream until the client goes away or the server
/// shuts down (`Ok`: rmcp then sends the final result that says the subscription ended
/// gracefully), or until the credential stops holding (an error ends the stream).
pub async fn listen(
    contexts: &ContextService,
    authority: Authority,
    stopping: Option<watch::Receiver<bool>>,
    subscription: SubscriptionContext,
) -> Result<(), ErrorData> {
    let stop = async move {
        match stopping {
            Some(mut s) => {
                let _ = s.wait_for(|stopping| *stopping).await;
            }
            None => std::future::pending().await,
        }
    };
    tokio::select! {
        ended = follow(contexts, authority, &subscription) => ended,
        _ = stop => Ok(()),
    }
}

async fn follow(
    contexts: &ContextService,
    authority: Authority,
    subscription: &SubscriptionContext,
) -> Result<(), ErrorData> {
    let sink = subscription.sink().clone();
    let uris: HashSet<String> = sink.accepted().resource_subscriptions.iter().flatten().cloned().collect();
    let list = sink.accepted().resources_list_changed == Some(true);
    if uris.is_empty() && !list {
        // Nothing to send: hold the stream open (the client asked for it) until it goes.
        return wait_idle(&authority, subscription).await;
    }
    let mut changes = contexts.changes();
    loop {
        let change = tokio::select! {
            _ = subscription.cancelled() => return Ok(()),
            got = changes.recv() => got,
            _ = tokio::time::sleep(RECHECK) => {
                if authority.current().await.is_none() {
                    return Err(credential_ended());
                }
                continue;
            }
        };
        let Some(caller) = authority.current().await else {
            return Err(credential_ended());
        };
        let sent = match change {
            Ok(change) => notify(contexts, &caller, &sink, &uris, list, &change).await,
            // Some changes were missed: tell of everything they might have touched.
            Err(RecvError::Lagged(_)) => resync(contexts, &caller, &sink, &uris, list).await,
            Err(RecvError::Closed) => return Ok(()),
        };
        if !sent {
            return Ok(());
        }
    }
}

async fn wait_idle(authority: &Authority, subscription: &SubscriptionContext) -> Result<(), ErrorData> {
    loop {
        tokio::select! {
            _ = subscription.cancelled() => return Ok(()),
            _ = tokio::time::sleep(RECHECK) => {
                if authority.current().await.is_none() {
                    return Err(credential_ended());
                }
            }
        }
    }
}

/// Sends what `change` means to this subscription; false once the stream is gone.
async fn notify(
    contexts: &ContextService,
    caller: &Caller,
    sink: &SubscriptionSink,
    uris: &HashSet<String>,
    list: bool,
    change: &ContextChange,
) -> bool {
    let uri = resource_uri(change.context_id);
    let updated = uris.contains(&uri);
    let listed = list && change.kind.changes_the_list();
    if !(updated || listed) || !may_hear(contexts, caller, change.tenant, change.context_id).await {
        return true;
    }
    if updated && sink.notify_resource_updated(uri).await.is_err() {
        return false;
    }
    !(listed && sink.notify_resource_list_changed().await.is_err())
}

async fn resync(
    contexts: &ContextService,
    caller: &Caller,
    sink: &SubscriptionSink,
    uris: &HashSet<String>,
    list: bool,
) -> bool {
    for uri in uris {
        let Some(id) = uri.strip_prefix(super::catalog::RESOURCE_SCHEME).and_then(|r| r.parse().ok()) else {
            continue;
        };
        if may_hear(contexts, caller, caller.principal.tenant, id).await
            && sink.notify_resource_updated(uri.clone()).await.is_err()
        {
            return false;
        }
    }
    !(list && sink.notify_resource_list_changed().await.is_err())
}

/// A 2025-era session's subscriptions (`resources/subscribe`) and its one watcher.
#[derive(Clone, Default)]
pub struct SessionSubscriptions {
    uris: Arc<Mutex<HashSet<String>>>,
    watching: Arc<AtomicBool>,
}

impl SessionSubscriptions {
    /// Any URI is accepted (answering differently would reveal which contexts exist);
    /// only readable contexts of the caller's tenant ever produce notifications.
    pub fn add(&self, uri: String) -> Result<(), ErrorData> {
        if let Ok(mut s) = self.uris.lock() {
            if s.len() >= MAX_SUBSCRIPTIONS {
                return Err(ErrorData::invalid_request("too many subscriptions in this session", None));
            }
            s.insert(uri);
        }
        Ok(())
    }

    pub fn remove(&self, uri: &str) {
        if let Ok(mut s) = self.uris.lock() {
            s.remove(uri);
        }
    }

    fn contains(&self, uri: &str) -> bool {
        self.uris.lock().map(|s| s.contains(uri)).unwrap_or(false)
    }

    /// Sends `notifications/resources/updated` to this session's peer for every change
    /// of a subscribed context the caller may hear of. Ends when the peer is gone; ends
    /// the session when the credential no longer holds (checked before each
    /// notification and every [`RECHECK`] while idle).
    pub fn watch(&self, contexts: ContextService, authority: Authority, peer: Peer<RoleServer>) {
        if self.watching.swap(true, Ordering::SeqCst) {
            return;
        }
        let mut changes = contexts.changes();
        let this = self.clone();
        tokio::spawn(async move {
            let revoked = || async {
                if let Ok(mut s) = this.uris.lock() {
                    s.clear();
                }
                this.watching.store(false, Ordering::SeqCst);
                authority.end().await;
            };
            loop {
                let change = tokio::select! {
                    got = changes.recv() => match got {
                        Ok(c) => c,
                        Err(RecvError::Lagged(_)) => continue,
                        Err(RecvError::Closed) => return,
                    },
                    _ = tokio::time::sleep(RECHECK) => {
                        if authority.current().await.is_none() {
                            return revoked().await;
                        }
                        continue;
                    }
                };
                let uri = resource_uri(change.context_id);
                if !this.contains(&uri) {
                    continue;
                }
                let Some(caller) = authority.current().await else {
                    return revoked().await;
                };
                if may_hear(&contexts, &caller, change.tenant, change.context_id).await
                    && peer.notify_resource_updated(ResourceUpdatedNotificationParam::new(uri)).await.is_err()
                {
                    return;
                }
            }
        });
    }
}
