//! Files that hold secrets (the KEK, the bootstrap admin key) and the directory they
//! live in: written owner-only from the first byte, and refused when anyone else could
//! read them.

use std::io::Write;
use std::path::Path;

use anyhow::{Context as _, bail};

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

/// Creates `dir` (and its parents) readable by the owner only.
pub fn create_private_dir(dir: &Path) -> anyhow::Result<()> {
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

/// Refuses a file or directory that group or others may access, naming the fix.
#[cfg(unix)]
pub fn check_not_shared(path: &Path, is_dir: bool) -> anyhow::Result<()> {
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
pub fn check_not_shared(_path: &Path, _is_dir: bool) -> anyhow::Result<()> {
    Ok(())
}
