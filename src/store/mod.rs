//! Storage: one abstraction for contexts ([`ContextStore`]) and one for identity state
//! ([`AuthStore`]), each with two real backends — embedded SQLite and PostgreSQL — that
//! share their SQL (see `sql.rs`) and differ only in connection set-up and locking.
//!
//! Every write is one transaction, so an interrupted write leaves the previous version
//! intact; every query is scoped by tenant, so isolation does not depend on callers
//! remembering a `WHERE` clause.

mod audit;
mod batch;
pub mod body;
pub mod cached;
pub mod changes;
pub mod feed;
mod postgres;
mod sql;
mod sql_anomaly;
mod sql_audit;
mod sql_auth;
pub mod sql_fields;
mod sql_history;
mod sql_legacy;
mod sql_oauth;
mod sql_signing;
mod sqlite;
pub mod stamped;

use std::path::Path;
use std::sync::Arc;

use async_trait::async_trait;

pub use audit::{AuditQuery, AuditStore, ChainEnds};

use crate::domain::anomaly::{Lockout, Subject};
use crate::domain::{
    ApiKey, ApiKeyId, ClientId, ContextFacts, ContextGrant, ContextHead, ContextId, Error, FamilyId, Jti, OAuthClient,
    Principal, PrincipalId, Revision, RoleSet, ScopeSet, StoreError, StoredContext, Tenant, TenantId, Timestamp,
    TokenHash, Version,
};

pub use changes::{Bucket, ChangeClock, Stamp};
pub use postgres::PostgresStore;
pub use sqlite::SqliteStore;
pub use stamped::StampedCache;

/// The state of a context id within a tenant.
#[derive(Clone, Debug)]
pub enum ContextRecord {
    Live {
        facts: ContextFacts,
        context: StoredContext,
    },
    /// Deleted or swept after expiry: the id stays reserved.
    Tombstone {
        facts: ContextFacts,
    },
}

/// The latest version as served (JSON bytes and where its messages sit), with what is
/// needed to decide whether it may be served without parsing it: authorization facts,
/// version and expiry.
#[derive(Clone, Debug)]
pub enum RawContextRecord {
    Live { facts: ContextFacts, version: Version, expires_at: Option<Timestamp>, body: body::Body },
    Tombstone { facts: ContextFacts },
}

/// A context's authorization facts, live or tombstoned.
#[derive(Clone, Debug)]
pub enum FactsRecord {
    Live(ContextFacts),
    Tombstone(ContextFacts),
}

/// One entry of a listing: its position, its authorization facts and its head (a
/// listing never reads messages).
#[derive(Clone, Debug)]
pub struct ListedContext {
    pub seq: i64,
    pub facts: ContextFacts,
    pub head: ContextHead,
}

/// Parses a stored context body.
pub fn decode_context(json: &[u8]) -> Result<StoredContext, StoreError> {
    serde_json::from_slice(json).map_err(|e| StoreError::Corrupt(format!("context body: {e}")))
}

/// What an update wrote: the new head, the messages it added or replaced, and a stamp
/// of the context's change counter as the write left it (none when the counters are not
/// fresh), so that the writing process can cache the new version without reading it.
#[derive(Clone, Debug)]
pub struct Written {
    pub head: ContextHead,
    pub messages: crate::domain::NewMessages,
    /// The new version's signature (none when the store has no signer).
    pub signature: Option<String>,
    pub stamp: Option<Stamp>,
}

/// One entry of a version listing.
#[derive(Clone, Debug, serde::Serialize, utoipa::ToSchema)]
pub struct VersionInfo {
    pub version: Version,
    pub created_at: Timestamp,
}

/// Computes the next version from the current head inside the store's write transaction.
/// It is called with the row locked, so read-modify-write cannot lose an update.
pub type Mutation<'a> = Box<dyn FnOnce(&ContextFacts, &ContextHead) -> Result<Revision, Error> + Send + 'a>;

/// Computes a context's new grant list from its facts and current head, inside the
/// write transaction with the row locked.
pub type GrantMutation<'a> =
    Box<dyn FnOnce(&ContextFacts, &ContextHead) -> Result<Vec<ContextGrant>, Error> + Send + 'a>;

#[async_trait]
pub trait ContextStore: Send + Sync {
    /// The latest version, unparsed (the read hot path serves these bytes as they are).
    async fn get_raw(&self, tenant: TenantId, id: ContextId) -> Result<Option<RawContextRecord>, StoreError>;

    /// Only what authorizing a write needs: the context's facts, and whether it is live
    /// (one small row, whatever the history's length).
    async fn facts(&self, tenant: TenantId, id: ContextId) -> Result<Option<FactsRecord>, StoreError>;
    /// The latest version, parsed.
    async fn get(&self, tenant: TenantId, id: ContextId) -> Result<Option<ContextRecord>, StoreError> {
        Ok(match self.get_raw(tenant, id).await? {
            None => None,
            Some(RawContextRecord::Tombstone { facts }) => Some(ContextRecord::Tombstone { facts }),
            Some(RawContextRecord::Live { facts, body, .. }) => {
                Some(ContextRecord::Live { facts, context: decode_context(&body.json)? })
            }
        })
    }
    async fn get_version(
        &self,
        tenant: TenantId,
        id: ContextId,
        version: Version,
    ) -> Result<Option<StoredContext>, StoreError>;
    async fn versions(&self, tenant: TenantId, id: ContextId) -> Result<Vec<VersionInfo>, StoreError>;
    /// Inserts version 1. `StoreError::Duplicate` if the id exists or ever existed.
    /// Stores a new context; returns its first version's signature.
    async fn create(
        &self,
        tenant: TenantId,
        owner: PrincipalId,
        context: &StoredContext,
    ) -> Result<Option<String>, StoreError>;
    /// Atomically adds the version `mutate(facts, latest head)` makes, writing only
    /// what it changes (an append writes its messages and one small version row), and
    /// says what was written.
    async fn update(&self, tenant: TenantId, id: ContextId, mutate: Mutation<'_>) -> Result<Written, Error>;
    /// Live, unexpired contexts, newest first, strictly older than `before_seq`.
    async fn list(
        &self,
        tenant: TenantId,
        now: Timestamp,
        before_seq: Option<i64>,
        limit: u32,
        author: Option<PrincipalId>,
    ) -> Result<Vec<ListedContext>, StoreError>;
    /// Atomically replaces a live context's grants with `mutate(facts, latest)`; the
    /// context's version does not change (grants are not part of the OCP object).
    async fn update_grants(
        &self,
        tenant: TenantId,
        id: ContextId,
        mutate: GrantMutation<'_>,
    ) -> Result<Vec<ContextGrant>, Error>;
    /// Tombstones a context and drops its versions. False if it was not live, or its
    /// latest version is not `expected` when that is given.
    async fn delete(
        &self,
        tenant: TenantId,
        id: ContextId,
        expected: Option<Version>,
        now: Timestamp,
    ) -> Result<bool, StoreError>;
    /// Tombstones every context whose `expires` is at or before `cutoff`.
    async fn sweep_expired(&self, cutoff: Timestamp, now: Timestamp) -> Result<u64, StoreError>;
}

#[async_trait]
pub trait AuthStore: Send + Sync {
    async fn create_tenant(&self, tenant: &Tenant) -> Result<(), StoreError>;
    async fn tenants(&self) -> Result<Vec<Tenant>, StoreError>;
    async fn tenant(&self, id: TenantId) -> Result<Option<Tenant>, StoreError>;
    async fn tenant_by_name(&self, name: &str) -> Result<Option<Tenant>, StoreError>;

    async fn create_principal(&self, principal: &Principal, password_hash: Option<&str>) -> Result<(), StoreError>;
    async fn principal(&self, id: PrincipalId) -> Result<Option<Principal>, StoreError>;
    /// The principal of an access token and whether the token's `jti` is on the
    /// revocation deny-list, in one round trip (the bearer-token hot path).
    async fn token_principal(&self, id: PrincipalId, jti: &Jti) -> Result<Option<TokenPrincipal>, StoreError>;
    async fn principal_by_name(&self, tenant: TenantId, name: &str) -> Result<Option<Principal>, StoreError>;
    async fn principals(&self, tenant: TenantId) -> Result<Vec<Principal>, StoreError>;
    /// Changes roles and/or the disabled flag; false if there is no such principal.
    async fn update_principal(
        &self,
        id: PrincipalId,
        roles: Option<&RoleSet>,
        disabled: Option<bool>,
    ) -> Result<bool, StoreError>;

    /// False if there is no such principal.
    async fn set_password_hash(&self, id: PrincipalId, hash: &str) -> Result<bool, StoreError>;

    async fn create_api_key(&self, key: &ApiKey, key_hash: &str) -> Result<(), StoreError>;
    /// The key, its stored hash and its principal in one round trip (the API-key hot path).
    async fn api_key_with_principal(&self, key_hash: &str) -> Result<Option<KeyWithPrincipal>, StoreError>;
    async fn api_key(&self, id: ApiKeyId) -> Result<Option<ApiKey>, StoreError>;
    async fn api_keys(
        &self,
        tenant: Option<TenantId>,
        principal: Option<PrincipalId>,
    ) -> Result<Vec<ApiKey>, StoreError>;
    /// False if the key does not exist or was already revoked.
    async fn revoke_api_key(&self, id: ApiKeyId, at: Timestamp) -> Result<bool, StoreError>;
    async fn revoke_principal_api_keys(&self, principal: PrincipalId, at: Timestamp) -> Result<u64, StoreError>;
}

/// MCP session state (the `initialize` parameters of 2025-era clients), so a session
/// survives a request landing on another replica.
#[async_trait]
pub trait McpStore: Send + Sync {
    async fn mcp_session(&self, session_id: &str) -> Result<Option<String>, StoreError>;
    async fn put_mcp_session(&self, session_id: &str, state: &str, now: Timestamp) -> Result<(), StoreError>;
    async fn delete_mcp_session(&self, session_id: &str) -> Result<(), StoreError>;
    async fn set_mcp_session_owner(
        &self,
        session_id: &str,
        owner: PrincipalId,
        now: Timestamp,
    ) -> Result<(), StoreError>;
    async fn mcp_session_owner(&self, session_id: &str) -> Result<Option<PrincipalId>, StoreError>;
}

/// Anomaly response's shared state (docs/anomaly.md): counters summed over every
/// replica, lockouts, and suspensions (which live on the principal).
#[async_trait]
pub trait AnomalyStore: Send + Sync {
    /// Adds `add` to the count of `rule` for `subject` in the window starting at
    /// `window_ms`; returns the window's total over every replica.
    async fn add_to_tally(&self, rule: &str, subject: &str, window_ms: i64, add: u64) -> Result<u64, StoreError>;
    /// Forgets the counts of windows that started before `before_ms`.
    async fn purge_tallies(&self, before_ms: i64) -> Result<u64, StoreError>;
    /// The subject's lockout row, active or not.
    async fn lockout(&self, subject: &Subject) -> Result<Option<Lockout>, StoreError>;
    /// Writes (or overwrites) the subject's lockout.
    async fn put_lockout(&self, lockout: &Lockout) -> Result<(), StoreError>;
    /// Lockouts still in force at `now`, of one tenant's principals or of everyone.
    async fn active_lockouts(&self, now: Timestamp, tenant: Option<TenantId>) -> Result<Vec<Lockout>, StoreError>;
    /// Removes the subject's lockout and its strikes; false if there was none in force.
    async fn lift_lockout(&self, subject: &Subject, now: Timestamp) -> Result<bool, StoreError>;
    /// Suspends the principal; false if it does not exist or is suspended already.
    async fn suspend_principal(&self, id: PrincipalId, at: Timestamp, reason: &str) -> Result<bool, StoreError>;
    /// Lifts the principal's suspension; false if it was not suspended.
    async fn lift_suspension(&self, id: PrincipalId) -> Result<bool, StoreError>;
    /// Suspended principals, of one tenant or of every tenant.
    async fn suspended_principals(&self, tenant: Option<TenantId>) -> Result<Vec<Principal>, StoreError>;
}

/// A whole database: every store plus health and shutdown.
#[async_trait]
pub trait Database: ContextStore + AuthStore + OAuthStore + McpStore + AuditStore + AnomalyStore {
    /// This process's mirror of the change counters (what caches check entries against).
    fn changes(&self) -> &ChangeClock;
    /// Reads every change counter into [`Database::changes`].
    async fn sync_changes(&self) -> Result<(), StoreError>;
    async fn ping(&self) -> Result<(), StoreError>;
    /// Waits for in-flight statements and closes every connection (SQLite checkpoints
    /// its WAL on the last close).
    async fn close(&self);
    fn backend(&self) -> &'static str;
    /// Every committed context change of every process sharing this database, where the
    /// database can announce them (PostgreSQL); `None` where this process is the only
    /// writer and announces its own (SQLite).
    async fn context_feed(&self) -> Result<Option<feed::ContextFeed>, StoreError>;
    /// Contexts still stored in the format before per-message storage (every version
    /// a whole body), waiting for [`Database::convert_legacy`].
    async fn legacy_contexts(&self) -> Result<u64, StoreError>;
    /// Converts up to `batch` contexts to per-message storage, each in its own
    /// transaction (so an interrupted conversion resumes where it stopped), and returns
    /// how many it converted; 0 when none are left.
    async fn convert_legacy(&self, batch: u32) -> Result<u64, StoreError>;
    /// Signs every version written from now on and checks every version read from the
    /// database (docs/integrity.md). Attached once, at start-up, before any request;
    /// later calls are ignored.
    fn attach_signer(&self, signer: Arc<dyn crate::domain::manifest::VersionSigner>);
    /// Seals the configured fields of every row written from now on and opens sealed
    /// fields on reads (docs/encryption.md), then unwraps every stored data key (an
    /// error here is a wrong KEK); returns how many there are. Once, at start-up.
    async fn attach_field_sealer(&self, sealer: Arc<sql_fields::FieldSealer>) -> Result<u64, StoreError>;
    /// Starts a data-key rotation (docs/encryption.md "Rotation"): each tenant with data
    /// keys gets a new current key and its older ones are retired. When rows are still
    /// sealed under retired keys, an interrupted rotation is resumed instead.
    async fn begin_data_key_rotation(&self) -> Result<sql_fields::RotationStart, StoreError>;
    /// Seals again, under the current key, what up to `batch` contexts after `after`
    /// hold under other keys; each context in its own transaction.
    async fn reseal_contexts(
        &self,
        after: Option<(TenantId, ContextId)>,
        batch: u32,
    ) -> Result<sql_fields::ResealStep, StoreError>;
    /// Rows still sealed under retired data keys (0 when a rotation is complete).
    async fn rows_on_retired_keys(&self) -> Result<u64, StoreError>;
    /// Every context, live or not (what a rotation pass visits).
    async fn context_count(&self) -> Result<u64, StoreError>;
    /// Re-wraps every key sealed under the KEK (signing keys, data keys) in one
    /// transaction: all or none. Returns how many.
    async fn rewrap_keys(&self, rewrap: &sql_fields::Rewrap<'_>) -> Result<u64, StoreError>;
    /// Every tenant's HMAC signing keys, wrapped: (tenant, key id, wrapped).
    async fn hmac_keys(&self) -> Result<Vec<(TenantId, u32, String)>, StoreError>;
    /// Stores a tenant's HMAC key (a racing replica's first key wins; read them back).
    async fn add_hmac_key(&self, tenant: TenantId, id: u32, wrapped: &str) -> Result<(), StoreError>;
    /// One key sealed under the KEK, as (label, wrapped): a probe of which KEK opens
    /// the database.
    async fn wrapped_key_probe(&self) -> Result<Option<(String, String)>, StoreError>;
    /// Contexts stored before signatures existed, waiting for
    /// [`Database::sign_unsigned`]; 0 once done (and then the end is recorded).
    async fn unsigned_contexts(&self) -> Result<u64, StoreError>;
    /// Signs up to `batch` such contexts, each in its own transaction, and returns how
    /// many steps it did; 0 when none are left.
    async fn sign_unsigned(&self, batch: u32) -> Result<u64, StoreError>;
}

/// Where a store keeps its version signer.
type SignerSlot = std::sync::OnceLock<Arc<dyn crate::domain::manifest::VersionSigner>>;
type FieldSlot = std::sync::OnceLock<Arc<sql_fields::FieldSealer>>;

/// Where the data lives.
#[derive(Clone, Debug)]
pub enum DatabaseLocation {
    Sqlite(std::path::PathBuf),
    Postgres { url: String, max_connections: u32 },
}

/// How long a process may go without a complete change sync before its caches stop
/// answering. Changes committed elsewhere reach every replica's caches within this.
pub const MAX_STALENESS: std::time::Duration = std::time::Duration::from_millis(500);
/// How often a serving process syncs the change counters.
pub const SYNC_INTERVAL: std::time::Duration = std::time::Duration::from_millis(100);

/// Opens (creating and migrating as needed) the database.
pub async fn open(location: &DatabaseLocation) -> anyhow::Result<Arc<dyn Database>> {
    Ok(match location {
        DatabaseLocation::Sqlite(path) => Arc::new(SqliteStore::open(path).await?),
        DatabaseLocation::Postgres { url, max_connections } => {
            Arc::new(PostgresStore::open(url, *max_connections).await?)
        }
    })
}

impl DatabaseLocation {
    pub fn sqlite_in(data_dir: &Path) -> Self {
        DatabaseLocation::Sqlite(data_dir.join("ctxguard.db"))
    }
}

/// Maps a driver error: uniqueness violations are an expected outcome, the rest a
/// backend failure whose text is kept for the logs (never shown to clients).
pub(crate) fn map_sqlx(e: sqlx::Error) -> StoreError {
    match &e {
        sqlx::Error::Database(db) if db.is_unique_violation() => StoreError::Duplicate,
        _ => StoreError::Backend(e.to_string()),
    }
}

/// An API key found by its hash, with the stored hash and its principal.
#[derive(Clone, Debug)]
pub struct KeyWithPrincipal {
    pub key: ApiKey,
    pub key_hash: String,
    pub principal: Principal,
}

/// The principal an access token names, and whether the token is on the deny-list.
#[derive(Clone, Debug)]
pub struct TokenPrincipal {
    pub principal: Principal,
    pub jti_revoked: bool,
}

/// A signing key as stored: the private half sealed under the KEK.
#[derive(Clone, Debug)]
pub struct StoredSigningKey {
    pub kid: String,
    pub alg: String,
    pub private_sealed: String,
    pub public_key: String,
    pub created_at: Timestamp,
    pub superseded_at: Option<Timestamp>,
    pub publish_until: Option<Timestamp>,
}

/// A registered client and the hash of its secret (none for public clients).
#[derive(Clone, Debug)]
pub struct StoredClient {
    pub client: OAuthClient,
    pub secret_hash: Option<TokenHash>,
}

/// What a refresh token stands for.
#[derive(Clone, Debug)]
pub struct RefreshGrant {
    pub family_id: FamilyId,
    pub client_id: ClientId,
    pub principal: PrincipalId,
    pub tenant: TenantId,
    pub scope: ScopeSet,
    pub resource: String,
    pub expires_at: Timestamp,
    /// The context binding the grant was consented with, if any.
    pub binding: Option<crate::domain::ContextBinding>,
}

/// A refresh token looked up without spending it.
#[derive(Clone, Debug)]
pub struct RefreshTokenState {
    pub grant: RefreshGrant,
    /// Already exchanged once: presenting it again is a replay.
    pub spent: bool,
    /// Its family was revoked (replay, client deletion, principal revocation).
    pub family_revoked: bool,
}

/// What an authorization code stands for.
#[derive(Clone, Debug)]
pub struct CodeGrant {
    pub client_id: ClientId,
    pub principal: PrincipalId,
    pub tenant: TenantId,
    pub redirect_uri: String,
    pub code_challenge: String,
    pub scope: ScopeSet,
    pub resource: String,
    pub expires_at: Timestamp,
    /// The context binding the grant was consented with, if any.
    pub binding: Option<crate::domain::ContextBinding>,
}

/// The result of presenting a one-time credential (code or refresh token).
#[derive(Clone, Debug)]
pub enum OneTime<T> {
    Unknown,
    /// First use: it is now spent.
    Fresh(T),
    /// Already spent: a replay, with what it was issued for.
    Replayed {
        grant: T,
        issued_jti: Option<Jti>,
        issued_family: Option<FamilyId>,
    },
}

#[derive(Clone, Debug)]
pub struct BrowserSession {
    pub principal: PrincipalId,
    pub csrf_token: String,
    pub expires_at: Timestamp,
}

#[async_trait]
pub trait OAuthStore: Send + Sync {
    async fn signing_keys(&self) -> Result<Vec<StoredSigningKey>, StoreError>;
    /// Marks every current key superseded (published until `publish_until`) and inserts
    /// `new` as the current key, in one transaction.
    async fn rotate_signing_key(
        &self,
        new: &StoredSigningKey,
        now: Timestamp,
        publish_until: Timestamp,
    ) -> Result<(), StoreError>;

    async fn create_client(&self, client: &OAuthClient, secret_hash: Option<&TokenHash>) -> Result<(), StoreError>;
    async fn client(&self, client_id: &ClientId) -> Result<Option<StoredClient>, StoreError>;
    async fn clients(&self, tenant: TenantId) -> Result<Vec<OAuthClient>, StoreError>;
    async fn disable_client(&self, client_id: &ClientId) -> Result<bool, StoreError>;

    async fn revoke_jti(&self, jti: &Jti, expires_at: Timestamp) -> Result<(), StoreError>;
    async fn is_jti_revoked(&self, jti: &Jti) -> Result<bool, StoreError>;
    async fn revoke_principal_tokens(&self, principal: PrincipalId, at: Timestamp) -> Result<(), StoreError>;
    /// Drops deny-list entries, codes, sessions and refresh tokens that expired before
    /// `now` and can no longer matter — at most `limit` of each kind per call, so that
    /// one pass never holds the write lock for long.
    async fn purge_expired_grants(&self, now: Timestamp, limit: u32) -> Result<u64, StoreError>;

    async fn create_refresh_family(
        &self,
        family_id: &FamilyId,
        client_id: &ClientId,
        principal: PrincipalId,
        now: Timestamp,
    ) -> Result<(), StoreError>;
    /// Stores a refresh token and the `jti` of the access token minted with it.
    async fn insert_refresh_token(
        &self,
        token_hash: &TokenHash,
        grant: &RefreshGrant,
        access_jti: Option<&Jti>,
        now: Timestamp,
    ) -> Result<(), StoreError>;
    /// Puts the access tokens minted with the family's refresh tokens on the deny-list
    /// (until `until`, past their expiry).
    async fn revoke_family_access_tokens(&self, family_id: &FamilyId, until: Timestamp) -> Result<(), StoreError>;
    /// Atomically marks the token spent. A family that was revoked answers `Unknown`.
    async fn use_refresh_token(
        &self,
        token_hash: &TokenHash,
        now: Timestamp,
    ) -> Result<OneTime<RefreshGrant>, StoreError>;
    /// Looks a refresh token up without spending it.
    async fn refresh_token(&self, token_hash: &TokenHash) -> Result<Option<RefreshTokenState>, StoreError>;
    async fn revoke_refresh_family(&self, family_id: &FamilyId, now: Timestamp) -> Result<(), StoreError>;
    async fn revoke_client_families(&self, client_id: &ClientId, now: Timestamp) -> Result<(), StoreError>;
    async fn revoke_principal_families(&self, principal: PrincipalId, now: Timestamp) -> Result<(), StoreError>;

    async fn insert_code(&self, code_hash: &TokenHash, grant: &CodeGrant, now: Timestamp) -> Result<(), StoreError>;
    /// Atomically marks the code used.
    async fn use_code(&self, code_hash: &TokenHash, now: Timestamp) -> Result<OneTime<CodeGrant>, StoreError>;
    /// Records what a code was exchanged for, so a replay can revoke it.
    async fn record_code_issue(
        &self,
        code_hash: &TokenHash,
        jti: &Jti,
        family: Option<&FamilyId>,
    ) -> Result<(), StoreError>;

    async fn create_session(
        &self,
        session_hash: &TokenHash,
        s: &BrowserSession,
        now: Timestamp,
    ) -> Result<(), StoreError>;
    async fn session(&self, session_hash: &TokenHash) -> Result<Option<BrowserSession>, StoreError>;
    async fn delete_session(&self, session_hash: &TokenHash) -> Result<(), StoreError>;
    async fn password_hash(&self, principal: PrincipalId) -> Result<Option<String>, StoreError>;
}
