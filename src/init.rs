//! The data directory: created owner-only on first start, checked on every start, and
//! the bootstrap tenant, operator principal and admin API key (DESIGN.md section 10).

use std::io::Write;
use std::path::{Path, PathBuf};

use anyhow::{Context as _, bail};

use crate::domain::{Error, PrincipalKind, Role, RoleSet};
use crate::service::AdminService;
use crate::service::admin::NewPrincipal;
use crate::store::Database;
use std::sync::Arc;

pub const ADMIN_KEY_FILE: &str = "admin.key";
pub const DEFAULT_TENANT: &str = "default";
pub const OPERATOR_NAME: &str = "admin";

/// Files that hold secrets; every start refuses to run if any is readable by others.
const SECRET_FILES: &[&str] = &[ADMIN_KEY_FILE, crate::crypto::kek::KEK_FILE];

/// Creates the data dir (mode 0700) or checks an existing one and its secret files.
pub fn prepare_data_dir(dir: &Path) -> anyhow::Result<()> {
    if !dir.exists() {
        create_private_dir(dir)?;
    }
    check_not_shared(dir, true)?;
    for name in SECRET_FILES {
        let path = dir.join(name);
        if path.exists() {
            check_not_shared(&path, false)?;
        }
    }
    Ok(())
}

fn create_private_dir(dir: &Path) -> anyhow::Result<()> {
    #[cfg(unix)]
    {
        use std::os::unix::fs::DirBuilderExt;
        std::fs::DirBuilder::new()
            .recursive(true)
            .mode(0o700)
            .create(dir)
            .with_context(|| format!("cannot create data directory {}", dir.display()))
    }
    #[cfg(not(unix))]
    {
        std::fs::create_dir_all(dir).with_context(|| format!("cannot create data directory {}", dir.display()))
    }
}

#[cfg(unix)]
fn check_not_shared(path: &Path, is_dir: bool) -> anyhow::Result<()> {
    use std::os::unix::fs::PermissionsExt;
    let mode = std::fs::metadata(path).with_context(|| format!("cannot read {}", path.display()))?.permissions().mode()
        & 0o777;
    if mode & 0o077 != 0 {
        let fix = if is_dir { "chmod 700" } else { "chmod 600" };
        bail!(
            "refusing to start: {} is accessible by group or others (mode {:o}); it holds secrets. Fix with: {fix} {}",
            path.display(),
            mode,
            path.display()
        );
    }
    Ok(())
}

#[cfg(not(unix))]
fn check_not_shared(_path: &Path, _is_dir: bool) -> anyhow::Result<()> {
    Ok(())
}

/// Writes a secret file with mode 0600 from the start (never briefly readable),
/// atomically replacing any previous one.
pub fn write_secret_file(path: &Path, contents: &str) -> anyhow::Result<()> {
    let tmp = path.with_extension("tmp");
    let _ = std::fs::remove_file(&tmp);
    let mut options = std::fs::OpenOptions::new();
    options.write(true).create_new(true);
    #[cfg(unix)]
    {
        use std::os::unix::fs::OpenOptionsExt;
        options.mode(0o600);
    }
    let mut f = options.open(&tmp).with_context(|| format!("cannot create {}", tmp.display()))?;
    f.write_all(contents.as_bytes())?;
    f.sync_all()?;
    std::fs::rename(&tmp, path).with_context(|| format!("cannot write {}", path.display()))?;
    Ok(())
}

pub enum Bootstrap {
    /// A fresh database was initialised; the admin key is in this file.
    Created {
        key_file: PathBuf,
    },
    AlreadyInitialised,
}

/// Creates tenant `default`, the platform operator `admin` and its API key, once.
pub async fn bootstrap(store: Arc<dyn Database>, data_dir: &Path) -> anyhow::Result<Bootstrap> {
    if store.tenant_by_name(DEFAULT_TENANT).await?.is_some() {
        return Ok(Bootstrap::AlreadyInitialised);
    }
    // Bootstrapping creates the operator itself: no caller, no policy involved.
    let admin = AdminService::new(store, crate::authz::Authorizer::builtin());
    let tenant = match admin.create_tenant_unchecked(DEFAULT_TENANT).await {
        Ok(t) => t,
        // Another replica sharing the database got there first.
        Err(Error::Conflict(_)) => return Ok(Bootstrap::AlreadyInitialised),
        Err(e) => return Err(e.into()),
    };
    let operator = admin
        .create_principal_in(
            tenant.id,
            NewPrincipal {
                tenant: None,
                kind: PrincipalKind::Service,
                name: OPERATOR_NAME.into(),
                roles: RoleSet::new(vec![Role::Admin]),
                password: None,
            },
            true,
        )
        .await?;
    let issued = admin.issue_api_key(&operator, None, None).await?;
    let key_file = data_dir.join(ADMIN_KEY_FILE);
    write_secret_file(&key_file, &format!("{}\n", issued.key))?;
    Ok(Bootstrap::Created { key_file })
}
