//! The audit chain's SQL, shared by both backends like `sql.rs`: blocks of records
//! (docs/audit.md "Storage", [`crate::domain::audit_block`]), the head row that keeps
//! the chain one sequence, checkpoints, retention, and the move of records stored one
//! per row (before blocks) into blocks.

macro_rules! impl_audit_store {
    ($store:ident, $db:ty, lock_suffix = $lock:literal, contains = $contains:literal, optimistic = $optimistic:literal) => {
        use crate::domain::audit::{AuditRecord, Checkpoint, PendingRecord};
        use crate::domain::audit_block::{self, BLOCK_RECORDS, Block, BlockIndex};
        use crate::store::{AuditQuery, AuditStore};

        const BLOCK_COLS: &str =
            "first_seq, last_seq, min_time, max_time, tenants, principals, actions, targets, decisions, records";

        /// The columns of records stored one per row before blocks.
        const LEGACY_COLS: &str = "seq, time_ms, tenant_id, principal_id, principal_name, client_id, credential, \
                                   channel, action, target, decision, reason, policies, ip, request_id, prev_hash, hash";

        fn block_from_row(row: &DbRow) -> Result<Block, StoreError> {
            let get = |c: &str| row.try_get::<Option<String>, _>(c).map_err(map_sqlx);
            Ok(Block {
                first_seq: row.try_get("first_seq").map_err(map_sqlx)?,
                last_seq: row.try_get("last_seq").map_err(map_sqlx)?,
                index: BlockIndex {
                    min_time: row.try_get("min_time").map_err(map_sqlx)?,
                    max_time: row.try_get("max_time").map_err(map_sqlx)?,
                    tenants: get("tenants")?,
                    principals: get("principals")?,
                    actions: get("actions")?,
                    targets: get("targets")?,
                    decisions: get("decisions")?,
                },
                records: row.try_get("records").map_err(map_sqlx)?,
            })
        }

        /// Takes the block by value: its text is moved into the statement, not copied.
        /// Adds the write of block `b` to `batch`.
        fn push_block(batch: &mut crate::store::batch::Batch<'_>, b: Block) {
            let i = b.index;
            batch.push(
                format!("INSERT INTO audit_blocks ({BLOCK_COLS}) VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10)"),
                vec![
                    b.first_seq.into(),
                    b.last_seq.into(),
                    i.min_time.into(),
                    i.max_time.into(),
                    i.tenants.into(),
                    i.principals.into(),
                    i.actions.into(),
                    i.targets.into(),
                    i.decisions.into(),
                    b.records.into(),
                ],
            );
        }

        async fn insert_block(conn: &mut <$db as sqlx::Database>::Connection, b: Block) -> Result<(), StoreError> {
            let mut batch = crate::store::batch::Batch::default();
            push_block(&mut batch, b);
            run_batch(conn, batch).await.map(|_| ())
        }

        /// Opens or closes the gate the triggers let deletions through (retention and
        /// the move into blocks only, inside their transactions).
        async fn audit_gate(conn: &mut <$db as sqlx::Database>::Connection, open: bool) -> Result<(), StoreError> {
            sqlx::query("UPDATE audit_gate SET open = $1 WHERE id = 1").bind(open).execute(conn).await.map_err(map_sqlx)?;
            Ok(())
        }

        fn legacy_from_row(row: &DbRow) -> Result<AuditRecord, StoreError> {
            let get = |c: &str| row.try_get::<Option<String>, _>(c).map_err(map_sqlx);
            let need = |c: &str| row.try_get::<String, _>(c).map_err(map_sqlx);
            let policies: String = need("policies")?;
            Ok(AuditRecord {
                seq: row.try_get("seq").map_err(map_sqlx)?,
                time: Timestamp::from_millis(row.try_get("time_ms").map_err(map_sqlx)?).to_rfc3339_millis(),
                tenant: get("tenant_id")?,
                principal: get("principal_id")?,
                principal_name: get("principal_name")?,
                client_id: get("client_id")?,
                credential: get("credential")?,
                channel: need("channel")?,
                action: need("action")?,
                target: get("target")?,
                decision: need("decision")?,
                reason: get("reason")?,
                policies: serde_json::from_str(&policies).map_err(|e| corrupt("policies", e))?,
                ip: get("ip")?,
                request_id: get("request_id")?,
                prev_hash: need("prev_hash")?,
                hash: need("hash")?,
            })
        }

        fn block_corrupt(e: impl std::fmt::Display) -> StoreError {
            StoreError::Corrupt(format!("audit block: {e}"))
        }

        /// Seals `records` after record `seq` whose hash is `prev`, as blocks in a
        /// batch; with the chain's new end.
        fn chained(
            records: &mut [PendingRecord],
            mut seq: i64,
            mut prev: String,
        ) -> (crate::store::batch::Batch<'static>, (i64, String)) {
            let mut batch = crate::store::batch::Batch::default();
            for chunk in records.chunks_mut(BLOCK_RECORDS) {
                let mut text = String::with_capacity(chunk.len() * 512);
                for p in chunk.iter_mut() {
                    seq += 1;
                    audit_block::seal_into(&mut p.record, seq, std::mem::take(&mut prev), &mut text);
                    prev.clone_from(&p.record.hash);
                }
                let sealed: Vec<&AuditRecord> = chunk.iter().map(|p| &p.record).collect();
                push_block(&mut batch, audit_block::block(&sealed, text));
            }
            (batch, (seq, prev))
        }

        #[async_trait]
        impl AuditStore for $store {
            async fn append_audit(&self, records: &mut [PendingRecord]) -> Result<(i64, String), StoreError> {
                let mut tx = self.begin_write().await.map_err(map_sqlx)?;
                // The head row's lock makes every writer of every process wait its turn:
                // one sequence, no forks.
                let head = sqlx::query(concat!("SELECT seq, hash FROM audit_head WHERE id = 1 ", $lock))
                    .fetch_one(&mut *tx)
                    .await
                    .map_err(map_sqlx)?;
                let seq: i64 = head.try_get("seq").map_err(map_sqlx)?;
                let prev: String = head.try_get("hash").map_err(map_sqlx)?;
                let (mut batch, tail) = chained(records, seq, prev);
                batch.push("UPDATE audit_head SET seq = $1, hash = $2 WHERE id = 1", vec![tail.0.into(), tail.1.as_str().into()]);
                run_batch(&mut tx, batch).await?;
                tx.commit().await.map_err(map_sqlx)?;
                Ok(tail)
            }

            async fn append_audit_after(
                &self,
                records: &mut [PendingRecord],
                after: &(i64, String),
            ) -> Result<Option<(i64, String)>, StoreError> {
                if !$optimistic {
                    return self.append_audit(records).await.map(Some);
                }
                let mut tx = self.begin_write().await.map_err(map_sqlx)?;
                let (mut batch, tail) = chained(records, after.0, after.1.clone());
                // The head moves only from where this writer last left it: under the
                // write lock, so a record another process appended since makes this
                // return no row and the transaction roll back.
                batch.push(
                    "UPDATE audit_head SET seq = $1, hash = $2 WHERE id = 1 AND seq = $3 AND hash = $4 RETURNING seq",
                    vec![tail.0.into(), tail.1.as_str().into(), after.0.into(), after.1.as_str().into()],
                );
                match run_batch(&mut tx, batch).await {
                    Ok(Some(_)) => {}
                    Ok(None) => return Ok(None),
                    Err(e) => {
                        // A block at a number another process took first fails before
                        // the head's check; tell that apart from a real failure.
                        let head: Option<(i64, String)> = sqlx::query_as("SELECT seq, hash FROM audit_head WHERE id = 1")
                            .fetch_optional(&mut *tx)
                            .await
                            .map_err(map_sqlx)?;
                        return if head.as_ref().is_some_and(|h| h != after) { Ok(None) } else { Err(e) };
                    }
                }
                tx.commit().await.map_err(map_sqlx)?;
                Ok(Some(tail))
            }

            async fn add_audit_checkpoint(&self, c: &Checkpoint) -> Result<(), StoreError> {
                sqlx::query(
                    "INSERT INTO audit_checkpoints (seq, hash, time_ms, kid, signature) VALUES ($1, $2, $3, $4, $5) \
                     ON CONFLICT (seq) DO NOTHING",
                )
                .bind(c.seq)
                .bind(&c.hash)
                .bind(c.time_ms)
                .bind(&c.kid)
                .bind(&c.signature)
                .execute(self.writes())
                .await
                .map_err(map_sqlx)?;
                Ok(())
            }

            async fn audit_checkpoints(&self) -> Result<Vec<Checkpoint>, StoreError> {
                let rows = sqlx::query("SELECT seq, hash, time_ms, kid, signature FROM audit_checkpoints ORDER BY seq")
                    .fetch_all(&self.pool)
                    .await
                    .map_err(map_sqlx)?;
                rows.iter()
                    .map(|row| {
                        Ok(Checkpoint {
                            seq: row.try_get("seq").map_err(map_sqlx)?,
                            hash: row.try_get("hash").map_err(map_sqlx)?,
                            time_ms: row.try_get("time_ms").map_err(map_sqlx)?,
                            kid: row.try_get("kid").map_err(map_sqlx)?,
                            signature: row.try_get("signature").map_err(map_sqlx)?,
                        })
                    })
                    .collect()
            }

            async fn audit_block_key(&self, seq: i64) -> Result<i64, StoreError> {
                let key: Option<i64> = sqlx::query_scalar("SELECT MAX(first_seq) FROM audit_blocks WHERE first_seq <= $1")
                    .bind(seq)
                    .fetch_one(&self.pool)
                    .await
                    .map_err(map_sqlx)?;
                Ok(key.unwrap_or(seq))
            }

            async fn audit_blocks(&self, from_key: i64, limit: u32) -> Result<Vec<Block>, StoreError> {
                let rows = sqlx::query(sqlx::AssertSqlSafe(format!(
                    "SELECT {BLOCK_COLS} FROM audit_blocks WHERE first_seq >= $1 ORDER BY first_seq LIMIT $2"
                )))
                .bind(from_key)
                .bind(i64::from(limit))
                .fetch_all(&self.pool)
                .await
                .map_err(map_sqlx)?;
                rows.iter().map(block_from_row).collect()
            }

            async fn audit_candidates(
                &self,
                q: &AuditQuery,
                before_key: Option<i64>,
                limit: u32,
            ) -> Result<Vec<Block>, StoreError> {
                let mut query =
                    sqlx::QueryBuilder::<$db>::new(format!("SELECT {BLOCK_COLS} FROM audit_blocks WHERE 1 = 1"));
                for (column, value) in q.members() {
                    if let Some(token) = value.and_then(audit_block::member_token) {
                        query
                            .push(format_args!(" AND ({column} IS NULL OR {}({column}, ", $contains))
                            .push_bind(token)
                            .push(") > 0)");
                    }
                }
                let (since, until) = q.time_bounds();
                if let Some(t) = since {
                    query.push(" AND max_time >= ").push_bind(t);
                }
                if let Some(t) = until {
                    query.push(" AND min_time < ").push_bind(t);
                }
                if let Some(k) = before_key {
                    query.push(" AND first_seq < ").push_bind(k);
                }
                query.push(" ORDER BY first_seq DESC LIMIT ").push_bind(i64::from(limit));
                let rows = query.build().fetch_all(&self.pool).await.map_err(map_sqlx)?;
                rows.iter().map(block_from_row).collect()
            }

            async fn audit_ends(&self) -> Result<crate::store::ChainEnds, StoreError> {
                let row = sqlx::query("SELECT seq, hash, base_seq, base_hash FROM audit_head WHERE id = 1")
                    .fetch_one(&self.pool)
                    .await
                    .map_err(map_sqlx)?;
                let get_i = |c: &str| row.try_get::<i64, _>(c).map_err(map_sqlx);
                let get_s = |c: &str| row.try_get::<String, _>(c).map_err(map_sqlx);
                Ok(crate::store::ChainEnds {
                    base: (get_i("base_seq")?, get_s("base_hash")?),
                    head: (get_i("seq")?, get_s("hash")?),
                })
            }

            async fn prune_audit(&self, through: i64) -> Result<u64, StoreError> {
                let mut tx = self.begin_write().await.map_err(map_sqlx)?;
                let base: i64 = sqlx::query_scalar(concat!("SELECT base_seq FROM audit_head WHERE id = 1 ", $lock))
                    .fetch_one(&mut *tx)
                    .await
                    .map_err(map_sqlx)?;
                let holder = sqlx::query(sqlx::AssertSqlSafe(format!(
                    "SELECT {BLOCK_COLS} FROM audit_blocks WHERE first_seq <= $1 ORDER BY first_seq DESC LIMIT 1"
                )))
                .bind(through)
                .fetch_optional(&mut *tx)
                .await
                .map_err(map_sqlx)?;
                let missing = || StoreError::Corrupt(format!("audit record {through} is not stored"));
                let holder = block_from_row(&holder.ok_or_else(missing)?)?;
                let lines: Vec<audit_block::Line<'_>> =
                    audit_block::lines(&holder.records).collect::<Result<_, _>>().map_err(block_corrupt)?;
                let mut cut = None;
                for (i, line) in lines.iter().enumerate() {
                    if line.parse().map_err(block_corrupt)?.seq == through {
                        cut = Some(i);
                    }
                }
                let cut = cut.ok_or_else(missing)?;
                let hash = lines[cut].hash.to_string();
                audit_gate(&mut tx, true).await?;
                sqlx::query("DELETE FROM audit_blocks WHERE first_seq <= $1")
                    .bind(through)
                    .execute(&mut *tx)
                    .await
                    .map_err(map_sqlx)?;
                // A block the cut falls inside keeps its later records, as a new block.
                if cut + 1 < lines.len() {
                    let rest = audit_block::rebuild(&lines[cut + 1..]).map_err(block_corrupt)?;
                    insert_block(&mut tx, rest).await?;
                }
                sqlx::query("DELETE FROM audit_checkpoints WHERE seq < $1")
                    .bind(through)
                    .execute(&mut *tx)
                    .await
                    .map_err(map_sqlx)?;
                audit_gate(&mut tx, false).await?;
                sqlx::query("UPDATE audit_head SET base_seq = $1, base_hash = $2 WHERE id = 1")
                    .bind(through)
                    .bind(&hash)
                    .execute(&mut *tx)
                    .await
                    .map_err(map_sqlx)?;
                tx.commit().await.map_err(map_sqlx)?;
                Ok(u64::try_from(through - base).unwrap_or(0))
            }

            async fn legacy_audit_records(&self) -> Result<u64, StoreError> {
                let n: i64 = sqlx::query_scalar("SELECT COUNT(*) FROM audit_log")
                    .fetch_one(&self.pool)
                    .await
                    .map_err(map_sqlx)?;
                Ok(n.max(0) as u64)
            }

            async fn convert_legacy_audit(&self, batch: u32) -> Result<u64, StoreError> {
                let mut tx = self.begin_write().await.map_err(map_sqlx)?;
                // Under the head's lock: no record is appended while rows move.
                sqlx::query(concat!("SELECT seq FROM audit_head WHERE id = 1 ", $lock))
                    .fetch_one(&mut *tx)
                    .await
                    .map_err(map_sqlx)?;
                let rows = sqlx::query(sqlx::AssertSqlSafe(format!(
                    "SELECT {LEGACY_COLS} FROM audit_log ORDER BY seq LIMIT $1"
                )))
                .bind(i64::from(batch.clamp(1, BLOCK_RECORDS as u32)))
                .fetch_all(&mut *tx)
                .await
                .map_err(map_sqlx)?;
                let records = rows.iter().map(legacy_from_row).collect::<Result<Vec<_>, _>>()?;
                let Some(last) = records.last() else { return Ok(0) };
                let mut text = String::new();
                for r in &records {
                    audit_block::append_as_stored(r, &mut text);
                }
                let refs: Vec<&AuditRecord> = records.iter().collect();
                insert_block(&mut tx, audit_block::block(&refs, text)).await?;
                audit_gate(&mut tx, true).await?;
                sqlx::query("DELETE FROM audit_log WHERE seq <= $1")
                    .bind(last.seq)
                    .execute(&mut *tx)
                    .await
                    .map_err(map_sqlx)?;
                audit_gate(&mut tx, false).await?;
                tx.commit().await.map_err(map_sqlx)?;
                Ok(records.len() as u64)
            }
        }
    };
}

pub(crate) use impl_audit_store;
