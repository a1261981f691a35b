//! Rotation of the keys under the KEK (docs/encryption.md "Rotation"): the KEK itself
//! (every key re-wrapped, no context rewritten) and the tenants' data keys (every sealed
//! value sealed again, in batches, resumable, while servers keep serving).

use std::path::Path;

use anyhow::Context as _;

use crate::crypto::kek::{KEK_ENV, Kek};
use crate::domain::{ContextId, TenantId};
use crate::store::Database;
use crate::store::sql_fields::RotationStart;

/// Contexts per step of a data-key rotation's pass (each one its own transaction).
const RESEAL_BATCH: u32 = 100;

/// What a data-key rotation did.
#[derive(Debug, PartialEq, Eq)]
pub struct DataKeyRotation {
    /// Tenants given a new key (0 when an interrupted rotation was resumed).
    pub tenants: u64,
    /// Sealed values (rows) sealed again under the new keys.
    pub rows: u64,
}

/// Rotates the data keys: new current keys (or the interrupted rotation found), then
/// one pass over every context with a progress bar. Rows a concurrent write sealed
/// under a retired key after the pass went by are caught by another pass.
pub async fn rotate_data_keys(db: &dyn Database) -> anyhow::Result<DataKeyRotation> {
    let tenants = match db.begin_data_key_rotation().await? {
        RotationStart::Started(n) => n,
        RotationStart::Resumed(left) => {
            eprintln!("ctxguard: resuming a data-key rotation: {left} sealed values still under retired keys");
            0
        }
    };
    let mut rows = 0;
    for _ in 0..3 {
        rows += reseal_pass(db).await?;
        let left = db.rows_on_retired_keys().await?;
        if left == 0 {
            return Ok(DataKeyRotation { tenants, rows });
        }
        eprintln!("ctxguard: {left} values were sealed under a retired key during the pass; another pass");
    }
    anyhow::bail!("sealed values under retired keys remain after three passes; run the rotation again")
}

/// One pass over every context; returns the rows sealed again.
async fn reseal_pass(db: &dyn Database) -> anyhow::Result<u64> {
    let total = db.context_count().await?;
    let bar = super::progress_bar(total, "contexts");
    let mut after: Option<(TenantId, ContextId)> = None;
    let mut rows = 0;
    loop {
        let step = db.reseal_contexts(after, RESEAL_BATCH).await.context("sealing values under the new keys")?;
        bar.inc(step.contexts);
        rows += step.rows;
        match step.next {
            Some(next) => after = Some(next),
            None => break,
        }
    }
    bar.finish_and_clear();
    Ok(rows)
}

/// Rotates the KEK held in the data dir's file: a new KEK is staged beside it, every
/// key is re-wrapped under it in one transaction, then the file is replaced. A stop in
/// between is settled at the next start ([`settle_kek_rotation`]). Returns how many
/// keys were re-wrapped.
pub async fn rotate_kek(db: &dyn Database, data_dir: &Path, current: &Kek) -> anyhow::Result<u64> {
    if std::env::var_os(KEK_ENV).is_some() {
        anyhow::bail!(
            "the KEK comes from {KEK_ENV}: rotating it means choosing the new value; unset it to use the data dir's \
             kek.key (docs/encryption.md)"
        );
    }
    let next = Kek::stage_next(data_dir)?;
    let rewrap = |label: &str, wrapped: &str| -> anyhow::Result<String> {
        let key = current.open(wrapped, label)?;
        next.seal(&key, label)
    };
    let n = match db.rewrap_keys(&rewrap).await {
        Ok(n) => n,
        Err(e) => {
            Kek::discard_staged(data_dir)?;
            return Err(e).context("re-wrapping the keys (nothing changed)");
        }
    };
    Kek::promote_staged(data_dir)?;
    Ok(n)
}

/// Settles a KEK rotation that stopped between re-wrapping the keys and replacing the
/// file: the staged KEK is kept when it opens the database's keys (the re-wrap was
/// committed), dropped otherwise.
pub async fn settle_kek_rotation(db: &dyn Database, data_dir: &Path) -> anyhow::Result<()> {
    if std::env::var_os(KEK_ENV).is_some() {
        return Ok(());
    }
    let Some(next) = Kek::staged(data_dir)? else { return Ok(()) };
    let committed = match db.wrapped_key_probe().await? {
        Some((label, wrapped)) => next.open(&wrapped, &label).is_ok(),
        None => false,
    };
    if committed {
        Kek::promote_staged(data_dir)?;
        eprintln!("ctxguard: finished an interrupted KEK rotation (the new kek.key is in place)");
    } else {
        Kek::discard_staged(data_dir)?;
        eprintln!("ctxguard: dropped the new KEK of a rotation that stopped before re-wrapping any key");
    }
    Ok(())
}

/// The tenants' HMAC signing keys (docs/integrity.md "HMAC signatures"): a tenant named
/// in `hmac_tenants` without one gets its first key now; every stored key is unwrapped
/// (a key of a tenant no longer named still checks what it signed).
pub async fn hmac_keys(db: &dyn Database, kek: &Kek, tenants: &[String]) -> anyhow::Result<crate::integrity::HmacKeys> {
    use crate::store::sql_fields::hmac_label;
    let mut signing = Vec::new();
    for name in tenants {
        let tenant = db
            .tenant_by_name(name)
            .await?
            .ok_or_else(|| anyhow::anyhow!("hmac_tenants: there is no tenant named {name:?}"))?;
        signing.push(tenant.id);
    }
    let stored = db.hmac_keys().await?;
    for tenant in &signing {
        if !stored.iter().any(|(t, _, _)| t == tenant) {
            let mut raw = zeroize::Zeroizing::new([0u8; 32]);
            rand::fill(&mut raw[..]);
            db.add_hmac_key(*tenant, 1, &kek.seal(&raw[..], &hmac_label(*tenant, 1))?).await?;
        }
    }
    let mut keys = crate::integrity::HmacKeys::default();
    for (tenant, id, wrapped) in db.hmac_keys().await? {
        let raw = kek
            .open(&wrapped, &hmac_label(tenant, id))
            .with_context(|| format!("HMAC key {id} of tenant {tenant} does not open with this KEK"))?;
        keys.add(tenant, id, raw);
    }
    signing.iter().for_each(|t| keys.sign_with_newest(*t));
    Ok(keys)
}
