//! The SQL of per-message storage shared by reads, writes and the conversion of old
//! stores: head rows, version rows and message rows (see docs/design-notes.md,
//! "Per-message storage"). Instantiated per backend like `sql.rs`, in the same module.

macro_rules! impl_history_sql {
    ($db:ty) => {
        fn parse_metadata(text: &str) -> Result<serde_json::Map<String, serde_json::Value>, StoreError> {
            serde_json::from_str(text).map_err(|e| corrupt("metadata", e))
        }

        fn metadata_text(metadata: &serde_json::Map<String, serde_json::Value>) -> Result<String, StoreError> {
            serde_json::to_string(metadata).map_err(|e| corrupt("metadata", e))
        }

        fn opt_ms(row: &DbRow, col: &str) -> Result<Option<Timestamp>, StoreError> {
            Ok(row.try_get::<Option<i64>, _>(col).map_err(map_sqlx)?.map(Timestamp::from_millis))
        }

        fn ms(row: &DbRow, col: &str) -> Result<Timestamp, StoreError> {
            Ok(Timestamp::from_millis(row.try_get(col).map_err(map_sqlx)?))
        }

        /// Columns of a head row a read or a write needs.
        const HEAD_COLS: &str = "owner_id, labels, grants, deleted_at_ms, version, expires_at_ms, created_at_ms, \
                                 updated_at_ms, metadata, meta_version, history, history_len, history_bytes, \
                                 signature, history_sha256, metadata_sha256, metadata_sealed";

        /// Where a live head's history is: (history, length, meta_version).
        struct HistoryRef {
            history: i64,
            len: i64,
            meta_version: i64,
        }

        /// What the head row says the latest version's signature covers: its signature
        /// and the digests it signed (none in rows written before signing, until the
        /// start-up conversion signs them).
        struct Sealed {
            signature: Option<String>,
            history: Option<crate::domain::manifest::HistoryHash>,
            metadata: Option<crate::domain::manifest::Sha256Digest>,
        }

        /// The head of a live, converted row, given its metadata (opened by
        /// `head_metadata`): its state without messages, where its history is, and what
        /// its signature covers.
        fn head_from_row(
            row: &DbRow,
            id: ContextId,
            metadata: serde_json::Map<String, serde_json::Value>,
        ) -> Result<(ContextHead, HistoryRef, Sealed), StoreError> {
            let history: Option<i64> = row.try_get("history").map_err(map_sqlx)?;
            let len: Option<i64> = row.try_get("history_len").map_err(map_sqlx)?;
            let meta_version: Option<i64> = row.try_get("meta_version").map_err(map_sqlx)?;
            let (Some(history), Some(len), Some(meta_version)) = (history, len, meta_version) else {
                return Err(old_format());
            };
            let head = ContextHead {
                context_id: id,
                metadata,
                expires: opt_ms(row, "expires_at_ms")?,
                version: Version(row.try_get("version").map_err(map_sqlx)?),
                created_at: ms(row, "created_at_ms")?,
                updated_at: ms(row, "updated_at_ms")?,
                history_len: usize::try_from(len).map_err(|e| corrupt("history_len", e))?,
                history_bytes: usize::try_from(
                    row.try_get::<Option<i64>, _>("history_bytes").map_err(map_sqlx)?.unwrap_or(0),
                )
                .map_err(|e| corrupt("history_bytes", e))?,
            };
            let text = |col: &str| row.try_get::<Option<String>, _>(col).map_err(map_sqlx);
            let sealed = Sealed {
                signature: text("signature")?,
                history: text("history_sha256")?.as_deref().and_then(crate::domain::manifest::HistoryHash::parse_b64),
                metadata: text("metadata_sha256")?
                    .as_deref()
                    .and_then(crate::domain::manifest::Sha256Digest::parse_b64),
            };
            Ok((head, HistoryRef { history, len, meta_version }, sealed))
        }

        /// Signs version `head` over the given digests (none without a signer: tools
        /// that open the database without keys write unsigned versions, which the
        /// server signs at its next start).
        fn sign_version(
            signer: Option<&dyn crate::domain::manifest::VersionSigner>,
            tenant: TenantId,
            head: &ContextHead,
            metadata: crate::domain::manifest::Sha256Digest,
            history: crate::domain::manifest::HistoryHash,
        ) -> Result<Option<String>, StoreError> {
            let Some(signer) = signer else { return Ok(None) };
            let manifest = crate::domain::manifest::Manifest::new(head, metadata, history);
            signer.sign(tenant, &manifest).map(Some).map_err(|e| StoreError::Backend(format!("signing a version: {e}")))
        }

        /// Checks a version read from the database against its signature: the digests
        /// are recomputed from what is about to be served (the parsed metadata and each
        /// message's stored bytes, which are its canonical JSON).
        fn check_version<S: AsRef<str>>(
            signer: Option<&dyn crate::domain::manifest::VersionSigner>,
            tenant: TenantId,
            head: &ContextHead,
            messages: &[S],
            signature: Option<&str>,
        ) -> Result<(), StoreError> {
            use crate::domain::manifest::{HistoryHash, IntegrityFailure, Manifest, metadata_digest};
            let Some(signer) = signer else { return Ok(()) };
            let history = HistoryHash::EMPTY.over(messages.iter().map(|m| m.as_ref().as_bytes()));
            let manifest = Manifest::new(head, metadata_digest(&head.metadata), history);
            signature
                .ok_or(IntegrityFailure::Unsigned)
                .and_then(|s| signer.verify(tenant, &manifest, s))
                .map_err(|f| integrity(head, f))
        }

        /// Runs a signature check again, once, after the signer reloads its keys, when it
        /// failed on a key this process does not hold: a version signed just after
        /// another replica rotated the key ring (which each replica reloads only every
        /// few seconds) must not look like tampering (docs/integrity.md "Rotation").
        async fn rechecked<T>(
            signer: Option<&dyn crate::domain::manifest::VersionSigner>,
            signature: Option<&str>,
            check: impl Fn() -> Result<T, StoreError>,
        ) -> Result<T, StoreError> {
            let first = check();
            let (Err(StoreError::Integrity(_)), Some(signer), Some(signature)) = (&first, signer, signature) else {
                return first;
            };
            if signer.holds_key_for(signature) || !signer.refresh_keys().await {
                return first;
            }
            check()
        }

        /// The digests the head row says its version's signature covers, after checking
        /// that signature: a write extends them, so they must be the signed ones (an
        /// edited digest would otherwise be signed into the next version).
        fn sealed_digests(
            signer: Option<&dyn crate::domain::manifest::VersionSigner>,
            tenant: TenantId,
            head: &ContextHead,
            sealed: &Sealed,
        ) -> Result<(crate::domain::manifest::Sha256Digest, crate::domain::manifest::HistoryHash), StoreError> {
            use crate::domain::manifest::{HistoryHash, IntegrityFailure, Manifest, metadata_digest};
            let Some(signer) = signer else {
                let metadata = sealed.metadata.unwrap_or_else(|| metadata_digest(&head.metadata));
                return Ok((metadata, sealed.history.unwrap_or(HistoryHash::EMPTY)));
            };
            let (Some(metadata), Some(history), Some(signature)) =
                (sealed.metadata, sealed.history, sealed.signature.as_deref())
            else {
                return Err(integrity(head, IntegrityFailure::Unsigned));
            };
            // The metadata is in the row already parsed: its digest costs little.
            if metadata_digest(&head.metadata) != metadata {
                return Err(integrity(head, IntegrityFailure::Mismatch));
            }
            signer
                .verify(tenant, &Manifest::new(head, metadata, history), signature)
                .map_err(|f| integrity(head, f))?;
            Ok((metadata, history))
        }

        /// Checks a head served without its messages (a listing): the metadata as
        /// stored against the signature, with the signed history hash.
        fn check_listed(
            signer: Option<&dyn crate::domain::manifest::VersionSigner>,
            tenant: TenantId,
            head: &ContextHead,
            sealed: &Sealed,
        ) -> Result<(), StoreError> {
            use crate::domain::manifest::{IntegrityFailure, Manifest, metadata_digest};
            let Some(signer) = signer else { return Ok(()) };
            let (Some(history), Some(signature)) = (sealed.history, sealed.signature.as_deref()) else {
                return Err(integrity(head, IntegrityFailure::Unsigned));
            };
            signer
                .verify(tenant, &Manifest::new(head, metadata_digest(&head.metadata), history), signature)
                .map_err(|f| integrity(head, f))
        }

        fn old_format() -> StoreError {
            corrupt("context", "stored in the old format and not converted (restart to convert)")
        }

        fn integrity(head: &ContextHead, failure: crate::domain::manifest::IntegrityFailure) -> StoreError {
            StoreError::Integrity(format!("context {} version {}: {failure}", head.context_id, head.version))
        }

        /// The stored messages `[0, len)` of `history`, in order: each its body and,
        /// when it has sealed fields, their blob (`open_messages` serves them).
        async fn load_messages<'e, E>(
            executor: E,
            tenant: TenantId,
            id: ContextId,
            history: i64,
            len: i64,
        ) -> Result<Vec<(String, Option<String>)>, StoreError>
        where
            E: sqlx::Executor<'e, Database = $db>,
        {
            let rows: Vec<(String, Option<String>)> = sqlx::query_as(
                "SELECT body, sealed FROM context_messages \
                 WHERE tenant_id = $1 AND context_id = $2 AND history = $3 AND position < $4 ORDER BY position",
            )
            .bind(tenant.to_string())
            .bind(id.to_string())
            .bind(history)
            .bind(len)
            .fetch_all(executor)
            .await
            .map_err(map_sqlx)?;
            if rows.len() as i64 != len {
                return Err(corrupt("context", format!("history {history} has {} of its {len} messages", rows.len())));
            }
            Ok(rows)
        }

        /// Messages as rows at positions `start..` of `history`: (author, serialized
        /// entry — its canonical JSON, sealed fields taken out), and the running history
        /// hash over their canonical JSON continued from `before` to after the last.
        fn message_rows(
            entries: &[crate::domain::HistoryEntry],
            before: crate::domain::manifest::HistoryHash,
            at: (TenantId, ContextId, i64, i64),
            sealing: Option<&crate::store::sql_fields::Sealing<'_>>,
        ) -> Result<(Vec<MessageRow>, crate::domain::manifest::HistoryHash), StoreError> {
            use crate::crypto::at_rest::{Place, Row};
            let (tenant, context, history, start) = at;
            let mut chain = before;
            let rows = entries
                .iter()
                .enumerate()
                .map(|(i, e)| {
                    let canonical = serde_json::to_string(e).map_err(|e| corrupt("message", e))?;
                    chain = chain.then(canonical.as_bytes());
                    let place = Place { tenant, context, row: Row::Message { history, position: start + i as i64 } };
                    let (body, sealed) = crate::store::sql_fields::seal_message(&canonical, sealing, place)?;
                    Ok(MessageRow { author: e.provenance.as_ref().map(|p| p.principal.to_string()), body, sealed })
                })
                .collect::<Result<Vec<_>, StoreError>>()?;
            Ok((rows, chain))
        }

        /// One message row to insert.
        struct MessageRow {
            author: Option<String>,
            body: String,
            sealed: Option<String>,
        }

        /// Rows per INSERT statement: 7 parameters each stays far below both backends'
        /// limits on bound parameters.
        const MESSAGE_CHUNK: usize = 200;

        /// Adds to `batch` the writes of messages at positions `start..` of `history`.
        fn insert_messages<'a>(
            batch: &mut crate::store::batch::Batch<'a>,
            (tenant, id): (&'a str, &'a str),
            history: i64,
            start: i64,
            rows: &'a [MessageRow],
        ) {
            for (c, chunk) in rows.chunks(MESSAGE_CHUNK).enumerate() {
                let mut sql = String::from(
                    "INSERT INTO context_messages \
                     (tenant_id, context_id, history, position, author_id, body, sealed) \
                     VALUES ",
                );
                let mut args = Vec::with_capacity(chunk.len() * 7);
                let first = start + (c * MESSAGE_CHUNK) as i64;
                for (i, row) in chunk.iter().enumerate() {
                    let b = i * 7;
                    if i > 0 {
                        sql.push(',');
                    }
                    let p: Vec<String> = (1..=7).map(|k| format!("${}", b + k)).collect();
                    sql.push_str(&format!("({})", p.join(", ")));
                    args.extend([
                        tenant.into(),
                        id.into(),
                        history.into(),
                        (first + i as i64).into(),
                        row.author.as_deref().into(),
                        row.body.as_str().into(),
                        row.sealed.as_deref().into(),
                    ]);
                }
                batch.push(sql, args);
            }
        }

        /// Adds to `batch` the write of one version row.
        fn insert_revision<'a>(
            batch: &mut crate::store::batch::Batch<'a>,
            (tenant, id): (&'a str, &'a str),
            head: &ContextHead,
            history: &HistoryRef,
            metadata: Option<(&'a str, Option<&'a str>)>,
            signature: Option<&'a str>,
        ) {
            batch.push(
                "INSERT INTO context_revisions (tenant_id, context_id, version, history, history_len, meta_version, \
                 metadata, expires_at_ms, created_at_ms, signature, metadata_sealed) \
                 VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10, $11)",
                vec![
                    tenant.into(),
                    id.into(),
                    head.version.0.into(),
                    history.history.into(),
                    history.len.into(),
                    history.meta_version.into(),
                    metadata.map(|m| m.0).into(),
                    head.expires.map(|e| e.millis()).into(),
                    head.updated_at.millis().into(),
                    signature.into(),
                    metadata.and_then(|m| m.1).into(),
                ],
            );
        }
    };
}

pub(crate) use impl_history_sql;
