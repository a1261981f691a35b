//! The key-encryption key (KEK): 32 random bytes in `<data dir>/kek.key` (mode 0600).
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
const NONCE_LEN: usize = 12;

pub struct Kek {
    cipher: Aes256Gcm,
}

impl Kek {
    /// Loads the KEK, creating it (0600) if the data dir has none yet.
    pub fn load_or_create(data_dir: &Path) -> anyhow::Result<Kek> {
        let path = data_dir.join(KEK_FILE);
        if !path.exists() {
            let mut raw = Zeroizing::new([0u8; 32]);
            rand::fill(&mut raw[..]);
            super::secret_file::write_secret_file(&path, &format!("{}\n", STANDARD.encode(&raw[..])))?;
        }
        let text =
            Zeroizing::new(std::fs::read_to_string(&path).with_context(|| format!("cannot read {}", path.display()))?);
        let raw =
            Zeroizing::new(STANDARD.decode(text.trim()).with_context(|| format!("{} is not base64", path.display()))?);
        if raw.len() != 32 {
            bail!("{} must hold 32 bytes of key material", path.display());
        }
        Ok(Kek { cipher: Aes256Gcm::new_from_slice(&raw).map_err(|_| anyhow::anyhow!("bad KEK length"))? })
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
}
