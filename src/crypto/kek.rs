//! The key-encryption key (KEK): 32 random bytes in `<data dir>/kek.key` (mode 0600),
//! or base64 in the `CTXGUARD_KEK` environment variable (then no file is made).
//! Private signing keys are stored in the database sealed under it with AES-256-GCM, so
//! a database dump alone reveals no private key. Replicas sharing one database must
//! share this file.

use std::path::Path;

use aes_gcm::aead::{Aead, Payload};
use aes_gcm::{Aes256Gcm, KeyInit, Nonce};
use anyhow::{Context as _, bail};
use base64::Engine;
use base64::engine::general_purpose::STANDARD;
use zeroize::Zeroizing;

pub const KEK_FILE: &str = "kek.key";
/// A rotation's new KEK, beside the current one until every key is re-wrapped under it
/// (docs/encryption.md "Rotation").
pub const KEK_NEXT_FILE: &str = "kek.key.next";
/// The environment variable that holds the KEK instead of the file.
pub const KEK_ENV: &str = "CTXGUARD_KEK";
const NONCE_LEN: usize = 12;

pub struct Kek {
    cipher: Aes256Gcm,
}

impl Kek {
    /// Loads the KEK from `CTXGUARD_KEK`, or from the data dir's file, creating that
    /// (0600) if there is none yet.
    pub fn load_or_create(data_dir: &Path) -> anyhow::Result<Kek> {
        Kek::from_sources(data_dir, std::env::var(KEK_ENV).ok().map(Zeroizing::new))
    }

    /// [`Kek::load_or_create`] with the environment's value given.
    pub fn from_sources(data_dir: &Path, env: Option<Zeroizing<String>>) -> anyhow::Result<Kek> {
        if let Some(text) = env {
            let raw = Zeroizing::new(STANDARD.decode(text.trim()).context("CTXGUARD_KEK is not base64")?);
            if raw.len() != 32 {
                bail!("CTXGUARD_KEK must hold 32 bytes of key material (base64)");
            }
            return Kek::from_raw(&raw);
        }
        let path = data_dir.join(KEK_FILE);
        if !path.exists() {
            let mut raw = Zeroizing::new([0u8; 32]);
            rand::fill(&mut raw[..]);
            super::secret_file::write_secret_file(&path, &format!("{}\n", STANDARD.encode(&raw[..])))?;
        }
        Kek::read_file(&path)
    }

    fn from_raw(raw: &[u8]) -> anyhow::Result<Kek> {
        Ok(Kek { cipher: Aes256Gcm::new_from_slice(raw).map_err(|_| anyhow::anyhow!("bad KEK length"))? })
    }

    fn read_file(path: &Path) -> anyhow::Result<Kek> {
        let text =
            Zeroizing::new(std::fs::read_to_string(path).with_context(|| format!("cannot read {}", path.display()))?);
        let raw =
            Zeroizing::new(STANDARD.decode(text.trim()).with_context(|| format!("{} is not base64", path.display()))?);
        if raw.len() != 32 {
            bail!("{} must hold 32 bytes of key material", path.display());
        }
        Kek::from_raw(&raw)
    }

    /// Writes a fresh KEK to `kek.key.next` (0600), replacing one an interrupted
    /// rotation left, and returns it.
    pub fn stage_next(data_dir: &Path) -> anyhow::Result<Kek> {
        let mut raw = Zeroizing::new([0u8; 32]);
        rand::fill(&mut raw[..]);
        let path = data_dir.join(KEK_NEXT_FILE);
        super::secret_file::write_secret_file(&path, &format!("{}\n", STANDARD.encode(&raw[..])))?;
        Kek::from_raw(&raw[..])
    }

    /// The KEK a rotation staged, if one is there.
    pub fn staged(data_dir: &Path) -> anyhow::Result<Option<Kek>> {
        let path = data_dir.join(KEK_NEXT_FILE);
        if !path.exists() {
            return Ok(None);
        }
        Kek::read_file(&path).map(Some)
    }

    /// Makes the staged KEK the current one: a rename, so the file is always whole.
    pub fn promote_staged(data_dir: &Path) -> anyhow::Result<()> {
        std::fs::rename(data_dir.join(KEK_NEXT_FILE), data_dir.join(KEK_FILE))
            .with_context(|| format!("cannot replace {}", data_dir.join(KEK_FILE).display()))
    }

    /// Removes a staged KEK that never wrapped anything.
    pub fn discard_staged(data_dir: &Path) -> anyhow::Result<()> {
        std::fs::remove_file(data_dir.join(KEK_NEXT_FILE))
            .with_context(|| format!("cannot remove {}", data_dir.join(KEK_NEXT_FILE).display()))
    }

    /// Seals `plaintext`; `context` (e.g. a key id) is authenticated but not stored, so a
    /// sealed value cannot be moved to another row.
    pub fn seal(&self, plaintext: &[u8], context: &str) -> anyhow::Result<String> {
        let mut nonce = [0u8; NONCE_LEN];
        rand::fill(&mut nonce[..]);
        let sealed = self
            .cipher
            .encrypt(&Nonce::from(nonce), Payload { msg: plaintext, aad: context.as_bytes() })
            .map_err(|_| anyhow::anyhow!("sealing failed"))?;
        let mut out = nonce.to_vec();
        out.extend_from_slice(&sealed);
        Ok(STANDARD.encode(out))
    }

    pub fn open(&self, sealed: &str, context: &str) -> anyhow::Result<Zeroizing<Vec<u8>>> {
        let raw = STANDARD.decode(sealed).context("sealed value is not base64")?;
        if raw.len() <= NONCE_LEN {
            bail!("sealed value is too short");
        }
        let (nonce, body) = raw.split_at(NONCE_LEN);
        let nonce = Nonce::try_from(nonce).map_err(|_| anyhow::anyhow!("bad nonce"))?;
        self.cipher
            .decrypt(&nonce, Payload { msg: body, aad: context.as_bytes() })
            .map(Zeroizing::new)
            .map_err(|_| anyhow::anyhow!("sealed value does not open with this KEK (wrong kek.key, or tampered)"))
    }
}

/// What wraps keys at rest (data keys, docs/encryption.md): the KEK file today; a KMS
/// client can implement it without the store knowing.
pub trait KeyWrap: Send + Sync {
    /// Seals `key`, bound to `label` (which key it is, so it cannot be moved).
    fn wrap(&self, key: &[u8], label: &str) -> anyhow::Result<String>;
    /// Opens what [`KeyWrap::wrap`] sealed with the same label.
    fn unwrap(&self, wrapped: &str, label: &str) -> anyhow::Result<Zeroizing<Vec<u8>>>;
}

impl KeyWrap for Kek {
    fn wrap(&self, key: &[u8], label: &str) -> anyhow::Result<String> {
        self.seal(key, label)
    }

    fn unwrap(&self, wrapped: &str, label: &str) -> anyhow::Result<Zeroizing<Vec<u8>>> {
        self.open(wrapped, label)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn seal_open_and_tamper() {
        let dir = tempfile::tempdir().unwrap();
        let kek = Kek::load_or_create(dir.path()).unwrap();
        let sealed = kek.seal(b"private key", "kid-1").unwrap();
        assert_eq!(&kek.open(&sealed, "kid-1").unwrap()[..], b"private key");
        assert!(kek.open(&sealed, "kid-2").is_err(), "bound to its context");
        let mut raw = STANDARD.decode(&sealed).unwrap();
        let last = raw.len() - 1;
        raw[last] ^= 1;
        assert!(kek.open(&STANDARD.encode(raw), "kid-1").is_err(), "tampering is detected");
        let again = Kek::load_or_create(dir.path()).unwrap();
        assert_eq!(&again.open(&sealed, "kid-1").unwrap()[..], b"private key", "the file is reused");
    }

    #[test]
    fn the_environment_holds_the_kek_instead_of_the_file() {
        let dir = tempfile::tempdir().unwrap();
        let file_kek = Kek::load_or_create(dir.path()).unwrap();
        let text = std::fs::read_to_string(dir.path().join(KEK_FILE)).unwrap();
        let empty = tempfile::tempdir().unwrap();
        let env_kek = Kek::from_sources(empty.path(), Some(Zeroizing::new(text))).unwrap();
        assert!(!empty.path().join(KEK_FILE).exists(), "no file made when the environment has it");
        let sealed = file_kek.seal(b"k", "x").unwrap();
        assert_eq!(&env_kek.open(&sealed, "x").unwrap()[..], b"k", "the same key");
        for bad in ["not base64!", "AAAA"] {
            let err = Kek::from_sources(empty.path(), Some(Zeroizing::new(bad.into()))).err().unwrap();
            assert!(err.to_string().contains("CTXGUARD_KEK"), "{err}");
        }
    }
}
