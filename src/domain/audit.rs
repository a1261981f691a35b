//! The audit record (docs/audit.md): what happened, who did it, where the request came
//! from, and its place in the hash chain.
//!
//! Emitters build an [`AuditEvent`] (typed, cheap: ids and `&'static str`s, rendered
//! later by the audit writer off the request path); the store turns it into an
//! [`AuditRecord`] — every field a JSON string, number, array or null — and chains it:
//! `hash` = SHA-256 over the RFC 8785 canonical JSON of the record without `hash`, which
//! includes `prev_hash`, the previous record's `hash`. Anyone can recompute it from an
//! export with any RFC 8785 implementation.

use std::fmt::Write as _;
use std::net::IpAddr;
use std::sync::Arc;

use serde::{Deserialize, Serialize};
use sha2::{Digest, Sha256};

use super::{ApiKeyId, ContextId, PrincipalId, TenantId, Timestamp};

/// The `prev_hash` of the first record of a chain that was never pruned.
pub const GENESIS: &str = "0000000000000000000000000000000000000000000000000000000000000000";

/// The ids of the policies that determined a decision (shared with the memoized
/// decision, so recording them costs a reference count).
pub type PolicyIds = Arc<[String]>;

/// Where a request came from: its id (the `x-request-id` the response carries), the
/// peer address and the way in.
#[derive(Clone, Debug, Default)]
pub struct RequestMeta {
    pub id: Option<Arc<str>>,
    pub ip: Option<IpAddr>,
    pub channel: Channel,
}

/// The way a request came in. MCP calls name their tool, so that the log shows the
/// tool beside the context operation it performed.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub enum Channel {
    #[default]
    Http,
    /// A call over `/mcp`: the tool (or `resources/read`).
    Mcp(&'static str),
    /// `ctxguard mcp-stdio`: the tool.
    Stdio(&'static str),
    /// The local command line.
    Cli,
    /// The server itself (anomaly responses, start-up).
    System,
}

impl Channel {
    fn render(self) -> String {
        match self {
            Channel::Http => "http".into(),
            Channel::Mcp(tool) => format!("mcp:{tool}"),
            Channel::Stdio(tool) => format!("stdio:{tool}"),
            Channel::Cli => "cli".into(),
            Channel::System => "system".into(),
        }
    }
}

/// Who acted. `principal` (its id) is the identity string everywhere — HTTP, MCP, the
/// CLI; `name` (`kind:name`) is there for people reading the log.
#[derive(Clone, Debug, Default)]
pub struct Actor {
    pub tenant: Option<TenantId>,
    pub principal: Option<PrincipalId>,
    pub name: Option<String>,
    pub client_id: Option<String>,
    /// What authenticated the actor: `api_key:<id>`, `token:<jti>`, `external`, `operator`.
    pub credential: Option<Credential>,
}

/// A credential as the log names it (never the secret itself).
#[derive(Clone, Debug)]
pub enum Credential {
    ApiKey(ApiKeyId),
    AccessToken(uuid::Uuid),
    External,
    Operator,
    /// A credential that did not authenticate: what it looked like (`api_key`, `jwt`).
    Presented(&'static str),
    /// An OAuth client authenticating at the token endpoint.
    Client,
    /// A browser session (login page, authorization endpoint).
    Session,
}

impl Credential {
    fn render(&self) -> String {
        match self {
            Credential::ApiKey(id) => format!("api_key:{id}"),
            Credential::AccessToken(jti) => format!("token:{jti}"),
            Credential::External => "external".into(),
            Credential::Operator => "operator".into(),
            Credential::Presented(kind) => format!("presented:{kind}"),
            Credential::Client => "client".into(),
            Credential::Session => "session".into(),
        }
    }
}

/// What was acted on.
#[derive(Clone, Debug)]
pub enum Target {
    Context(ContextId),
    Tenant(TenantId),
    Principal(PrincipalId),
    ApiKey(ApiKeyId),
    Client(String),
    /// A token, by its `jti` or, for opaque tokens, the first characters of its hash.
    Token(String),
    Policies,
    SigningKeys,
    /// The key-encryption key (its rotation re-wraps every key under it).
    Kek,
    /// The tenants' data keys (docs/encryption.md).
    DataKeys,
    AuditLog,
    /// What anomaly response acted on: an address or a principal.
    Subject(super::anomaly::Subject),
}

impl Target {
    fn render(&self) -> String {
        match self {
            Target::Context(id) => format!("context:{id}"),
            Target::Tenant(id) => format!("tenant:{id}"),
            Target::Principal(id) => format!("principal:{id}"),
            Target::ApiKey(id) => format!("api_key:{id}"),
            Target::Client(id) => format!("client:{id}"),
            Target::Token(id) => format!("token:{id}"),
            Target::Policies => "policies".into(),
            Target::SigningKeys => "signing_keys".into(),
            Target::Kek => "kek".into(),
            Target::DataKeys => "data_keys".into(),
            Target::AuditLog => "audit_log".into(),
            Target::Subject(s) => s.to_string(),
        }
    }
}

/// The outcome a record states.
#[derive(Clone, Debug)]
pub enum Outcome {
    /// Authorized (and, for a write, committed to the log before it was performed).
    Allow(PolicyIds),
    /// Refused: authentication failed, the policy said no, the scope was short, or the
    /// target is not visible. The reason is the refusal as the caller was told it.
    Deny(String),
    /// Authorized, but the operation then failed (why).
    Fail(String),
    /// Nothing was refused, but something is worth noting (an anomaly rule fired and
    /// cut nothing off): `allow`, with the note as the reason.
    Flagged(String),
}

/// Everything that is recorded, by name (`docs/audit.md` lists when each is written).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Action {
    AuthnFailure,
    /// A request refused at the MCP edge before any tool ran (its scopes).
    McpRequest,
    ContextCreate,
    ContextRead,
    ContextReadVersion,
    ContextVersions,
    ContextList,
    ContextReplace,
    ContextPatch,
    ContextAppend,
    ContextDelete,
    /// A sealed inline context minted (`POST /context/{id}/seal`).
    ContextSeal,
    /// An inline context checked (`POST /context/verify`).
    ContextVerifyInline,
    GrantCreate,
    GrantDelete,
    GrantList,
    TokenIssue,
    TokenRefresh,
    TokenExchange,
    TokenRevoke,
    Login,
    AuthorizeCode,
    ClientRegister,
    TenantCreate,
    PrincipalCreate,
    PrincipalUpdate,
    PrincipalPassword,
    PrincipalRevokeAll,
    ApiKeyCreate,
    ApiKeyRevoke,
    ClientCreate,
    ClientDelete,
    KeysRotate,
    /// A tenant's HMAC signing keys exported for its verifiers.
    KeysExport,
    PolicyReload,
    AuditRead,
    AnomalyLockout,
    AnomalyAutoRevoke,
    AnomalyLift,
    /// A rule fired but cut nothing off (`anomaly_auto_revoke = false`, or the operator).
    AnomalyDetected,
}

impl Action {
    pub fn as_str(self) -> &'static str {
        match self {
            Action::AuthnFailure => "authn.failure",
            Action::McpRequest => "mcp.request",
            Action::ContextCreate => "context.create",
            Action::ContextRead => "context.read",
            Action::ContextReadVersion => "context.read_version",
            Action::ContextVersions => "context.versions",
            Action::ContextList => "context.list",
            Action::ContextReplace => "context.replace",
            Action::ContextPatch => "context.patch",
            Action::ContextAppend => "context.append",
            Action::ContextDelete => "context.delete",
            Action::ContextSeal => "context.seal",
            Action::ContextVerifyInline => "context.verify_inline",
            Action::GrantCreate => "grant.create",
            Action::GrantDelete => "grant.delete",
            Action::GrantList => "grant.list",
            Action::TokenIssue => "token.issue",
            Action::TokenRefresh => "token.refresh",
            Action::TokenExchange => "token.exchange",
            Action::TokenRevoke => "token.revoke",
            Action::Login => "login",
            Action::AuthorizeCode => "authorize.code",
            Action::ClientRegister => "client.register",
            Action::TenantCreate => "admin.tenant.create",
            Action::PrincipalCreate => "admin.principal.create",
            Action::PrincipalUpdate => "admin.principal.update",
            Action::PrincipalPassword => "admin.principal.password",
            Action::PrincipalRevokeAll => "admin.principal.revoke_all",
            Action::ApiKeyCreate => "admin.api_key.create",
            Action::ApiKeyRevoke => "admin.api_key.revoke",
            Action::ClientCreate => "admin.client.create",
            Action::ClientDelete => "admin.client.delete",
            Action::KeysRotate => "keys.rotate",
            Action::KeysExport => "keys.export",
            Action::PolicyReload => "policy.reload",
            Action::AuditRead => "audit.read",
            Action::AnomalyLockout => "anomaly.lockout",
            Action::AnomalyAutoRevoke => "anomaly.auto_revoke",
            Action::AnomalyLift => "anomaly.lift",
            Action::AnomalyDetected => "anomaly.detected",
        }
    }

    /// Whether the action changes state: its record is committed before it runs.
    pub fn is_write(self) -> bool {
        !matches!(
            self,
            Action::AuthnFailure
                | Action::McpRequest
                | Action::ContextRead
                | Action::ContextReadVersion
                | Action::ContextVersions
                | Action::ContextList
                | Action::ContextSeal
                | Action::ContextVerifyInline
                | Action::GrantList
                | Action::AuditRead
        )
    }
}

/// One event as emitted: typed, rendered by the writer.
#[derive(Clone, Debug)]
pub struct AuditEvent {
    pub time: Timestamp,
    pub action: Action,
    pub actor: Actor,
    pub target: Option<Target>,
    pub outcome: Outcome,
    pub request: RequestMeta,
}

impl AuditEvent {
    pub fn new(action: Action, actor: Actor, target: Option<Target>, outcome: Outcome, request: RequestMeta) -> Self {
        Self { time: Timestamp::now(), action, actor, target, outcome, request }
    }

    /// The record, before the chain gives it `seq`, `prev_hash` and `hash`.
    pub fn render(&self) -> PendingRecord {
        let (decision, reason, policies) = match &self.outcome {
            Outcome::Allow(p) => ("allow", None, p.to_vec()),
            Outcome::Deny(r) => ("deny", Some(r.clone()), Vec::new()),
            Outcome::Fail(why) => ("fail", Some(why.clone()), Vec::new()),
            Outcome::Flagged(note) => ("allow", Some(note.clone()), Vec::new()),
        };
        let a = &self.actor;
        PendingRecord {
            time_ms: self.time.millis(),
            record: AuditRecord {
                seq: 0,
                time: self.time.to_rfc3339_millis(),
                tenant: a.tenant.map(|t| t.to_string()),
                principal: a.principal.map(|p| p.to_string()),
                principal_name: a.name.clone(),
                client_id: a.client_id.clone(),
                credential: a.credential.as_ref().map(Credential::render),
                channel: self.request.channel.render(),
                action: self.action.as_str().to_string(),
                target: self.target.as_ref().map(Target::render),
                decision: decision.to_string(),
                reason,
                policies,
                ip: self.request.ip.map(|ip| ip.to_string()),
                request_id: self.request.id.as_deref().map(str::to_string),
                prev_hash: String::new(),
                hash: String::new(),
            },
        }
    }
}

/// A signed statement that the chain reached record `seq` with hash `hash`
/// (`signature`: a compact JWS by key `kid` of the signing key ring, docs/audit.md).
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct Checkpoint {
    pub seq: i64,
    pub hash: String,
    pub time_ms: i64,
    pub kid: String,
    pub signature: String,
}

/// A rendered record waiting for its place in the chain, with its time as stored.
#[derive(Clone, Debug)]
pub struct PendingRecord {
    pub time_ms: i64,
    pub record: AuditRecord,
}

/// A chained record, as stored, exported and served.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize, utoipa::ToSchema)]
#[serde(deny_unknown_fields)]
pub struct AuditRecord {
    pub seq: i64,
    /// RFC 3339, UTC, milliseconds.
    pub time: String,
    pub tenant: Option<String>,
    pub principal: Option<String>,
    pub principal_name: Option<String>,
    pub client_id: Option<String>,
    pub credential: Option<String>,
    pub channel: String,
    pub action: String,
    pub target: Option<String>,
    /// `allow`, `deny` or `fail`.
    pub decision: String,
    pub reason: Option<String>,
    pub policies: Vec<String>,
    pub ip: Option<String>,
    pub request_id: Option<String>,
    pub prev_hash: String,
    pub hash: String,
}

impl AuditRecord {
    /// Gives the record its place: number `seq`, after the record whose hash is
    /// `prev_hash`.
    pub fn seal(&mut self, seq: i64, prev_hash: String) {
        self.seq = seq;
        self.prev_hash = prev_hash;
        self.hash = self.compute_hash();
    }

    /// SHA-256 (lowercase hex) over the canonical JSON of every field but `hash`.
    pub fn compute_hash(&self) -> String {
        let mut buf = String::with_capacity(512);
        self.write_canonical(&mut buf);
        hex(&Sha256::digest(buf.as_bytes()))
    }

    /// RFC 8785 canonical JSON of the record without `hash`: members sorted by name
    /// (all names are ASCII, so code-unit order is byte order), strings escaped as
    /// ECMAScript's `JSON.stringify` does, `seq` an integer. Written directly rather
    /// than through a `Value`: verification hashes hundreds of thousands of records a
    /// second. `tests` check it against a general RFC 8785 implementation.
    pub fn write_canonical(&self, out: &mut String) {
        out.push('{');
        member(out, "action", true);
        string(out, &self.action);
        member(out, "channel", false);
        string(out, &self.channel);
        member(out, "client_id", false);
        opt_string(out, &self.client_id);
        member(out, "credential", false);
        opt_string(out, &self.credential);
        member(out, "decision", false);
        string(out, &self.decision);
        member(out, "ip", false);
        opt_string(out, &self.ip);
        member(out, "policies", false);
        out.push('[');
        for (i, p) in self.policies.iter().enumerate() {
            if i > 0 {
                out.push(',');
            }
            string(out, p);
        }
        out.push(']');
        member(out, "prev_hash", false);
        string(out, &self.prev_hash);
        member(out, "principal", false);
        opt_string(out, &self.principal);
        member(out, "principal_name", false);
        opt_string(out, &self.principal_name);
        member(out, "reason", false);
        opt_string(out, &self.reason);
        member(out, "request_id", false);
        opt_string(out, &self.request_id);
        member(out, "seq", false);
        let _ = write!(out, "{}", self.seq);
        member(out, "target", false);
        opt_string(out, &self.target);
        member(out, "tenant", false);
        opt_string(out, &self.tenant);
        member(out, "time", false);
        string(out, &self.time);
        out.push('}');
    }
}

fn member(out: &mut String, name: &str, first: bool) {
    if !first {
        out.push(',');
    }
    out.push('"');
    out.push_str(name);
    out.push_str("\":");
}

fn opt_string(out: &mut String, s: &Option<String>) {
    match s {
        Some(s) => string(out, s),
        None => out.push_str("null"),
    }
}

/// RFC 8785 section 3.2.2.2: `"` and `\` escaped, the five short control escapes, other
/// controls as `\u00xx` (lowercase hex), everything else as is.
fn string(out: &mut String, s: &str) {
    out.push('"');
    // Nearly every value (ids, names, times, actions) needs no escape; one pass without
    // an early exit, which the compiler vectorizes, finds that out.
    let plain = !s.bytes().fold(false, |seen, b| seen | (b < 0x20) | (b == b'"') | (b == b'\\'));
    if plain {
        out.push_str(s);
        out.push('"');
        return;
    }
    let mut start = 0;
    for (i, b) in s.bytes().enumerate() {
        let escape: Option<&str> = match b {
            b'"' => Some("\\\""),
            b'\\' => Some("\\\\"),
            0x08 => Some("\\b"),
            0x0c => Some("\\f"),
            b'\n' => Some("\\n"),
            b'\r' => Some("\\r"),
            b'\t' => Some("\\t"),
            0..=0x1f => None,
            _ => continue,
        };
        out.push_str(&s[start..i]);
        match escape {
            Some(e) => out.push_str(e),
            None => {
                let _ = write!(out, "\\u{b:04x}");
            }
        }
        start = i + 1;
    }
    out.push_str(&s[start..]);
    out.push('"');
}

/// Lowercase hex.
pub fn hex(bytes: &[u8]) -> String {
    // By table, not `write!` per byte: every record's hash goes through here, and the
    // formatting machinery showed in the writer's profile (docs/benchmarks.md).
    const DIGITS: &[u8; 16] = b"0123456789abcdef";
    let mut s = String::with_capacity(bytes.len() * 2);
    for b in bytes {
        s.push(char::from(DIGITS[usize::from(b >> 4)]));
        s.push(char::from(DIGITS[usize::from(b & 0x0f)]));
    }
    s
}

#[cfg(test)]
mod tests {
    use proptest::prelude::*;

    use super::*;

    #[test]
    fn hex_is_lowercase_two_digits_a_byte() {
        assert_eq!(hex(&[0x00, 0x0f, 0xab, 0xff]), "000fabff");
        assert_eq!(hex(&[]), "");
    }

    fn record(fields: [Option<String>; 9], policies: Vec<String>, seq: i64) -> AuditRecord {
        let [tenant, principal, name, client, credential, target, reason, ip, rid] = fields;
        let mut r = AuditRecord {
            seq: 0,
            time: Timestamp::from_millis(1_780_000_000_123).to_rfc3339_millis(),
            tenant,
            principal,
            principal_name: name,
            client_id: client,
            credential,
            channel: "mcp:context_get".into(),
            action: "context.read".into(),
            target,
            decision: "allow".into(),
            reason,
            policies,
            ip,
            request_id: rid,
            prev_hash: String::new(),
            hash: String::new(),
        };
        r.seal(seq, GENESIS.into());
        r
    }

    /// The hand-written encoding is exactly what a general RFC 8785 implementation
    /// makes of the record without `hash`.
    fn canonical_by_library(r: &AuditRecord) -> String {
        let mut v = serde_json::to_value(r).unwrap();
        v.as_object_mut().unwrap().remove("hash");
        serde_json_canonicalizer::to_string(&v).unwrap()
    }

    #[test]
    fn canonical_form_matches_rfc8785() {
        let r = record(
            [
                Some("t".into()),
                None,
                Some("user:ünï \"q\" \\ \u{1}\u{1f}\u{7f}\u{2028}😀\n\r\t\u{8}\u{c}".into()),
                None,
                Some("api_key:x".into()),
                Some("context:1".into()),
                None,
                Some("::1".into()),
                None,
            ],
            vec!["builtin.reader".into(), "a,b".into()],
            42,
        );
        let mut mine = String::new();
        r.write_canonical(&mut mine);
        assert_eq!(mine, canonical_by_library(&r));
        assert_eq!(r.hash, hex(&Sha256::digest(mine.as_bytes())));
        assert_eq!(r.hash.len(), 64);
    }

    #[test]
    fn the_hash_covers_every_field() {
        let base = record(Default::default(), vec![], 1);
        let mut changed = base.clone();
        changed.reason = Some(String::new());
        assert_ne!(changed.compute_hash(), base.hash, "null and empty differ");
        let mut changed = base.clone();
        changed.prev_hash = "1".repeat(64);
        assert_ne!(changed.compute_hash(), base.hash);
        let mut changed = base.clone();
        changed.seq = 2;
        assert_ne!(changed.compute_hash(), base.hash);
        let mut changed = base.clone();
        changed.policies = vec![String::new()];
        assert_ne!(changed.compute_hash(), base.hash);
    }

    proptest! {
        #[test]
        fn canonical_form_matches_rfc8785_for_any_text(
            a in proptest::option::of(any::<String>()),
            b in proptest::option::of("\\PC*"),
            c in any::<String>(),
            policies in proptest::collection::vec(any::<String>(), 0..3),
            seq in 0i64..(1 << 53),
        ) {
            let r = record([a.clone(), b.clone(), Some(c.clone()), a, b, Some(c), None, None, None], policies, seq);
            let mut mine = String::new();
            r.write_canonical(&mut mine);
            prop_assert_eq!(mine, canonical_by_library(&r));
        }
    }
}
