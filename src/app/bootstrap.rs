//! The data directory: created owner-only on first start, checked on every start, and
//! the bootstrap tenant, operator principal and admin API key.

use std::path::{Path, PathBuf};

use crate::crypto::secret_file::{check_not_shared, create_private_dir, write_secret_file};
use crate::domain::{Error, PrincipalKind, Role, RoleSet};
use crate::service::AdminService;
use crate::service::admin::NewPrincipal;
use crate::store::AuthStore;

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

pub enum Bootstrap {
    /// A fresh database was initialised; the admin key is in this file.
    Created {
        key_file: PathBuf,
    },
    AlreadyInitialised,
}

/// Creates tenant `default`, the platform operator `admin` and its API key, once.
/// Bootstrapping creates the operator itself: no caller, no policy involved.
pub async fn bootstrap(admin: &AdminService, store: &dyn AuthStore, data_dir: &Path) -> anyhow::Result<Bootstrap> {
    if store.tenant_by_name(DEFAULT_TENANT).await?.is_some() {
        return Ok(Bootstrap::AlreadyInitialised);
    }
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
