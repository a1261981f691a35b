//! Human passwords: argon2id with a random salt, computed off the async workers
//! (tens of milliseconds of CPU and memory-hard by design).

use argon2::Argon2;
use argon2::password_hash::{PasswordHasher, PasswordVerifier};

use crate::crypto::Secret;

pub const MIN_LEN: usize = 12;
/// Long enough for any passphrase, short enough to bound the hashing input.
pub const MAX_LEN: usize = 256;

pub fn validate(password: &str) -> Result<(), String> {
    if password.chars().count() < MIN_LEN {
        return Err(format!("must be at least {MIN_LEN} characters"));
    }
    if password.chars().count() > MAX_LEN {
        return Err(format!("must be at most {MAX_LEN} characters"));
    }
    Ok(())
}

/// Returns the PHC string (`$argon2id$v=19$…`) to store.
pub async fn hash(password: Secret) -> anyhow::Result<String> {
    tokio::task::spawn_blocking(move || {
        Argon2::default()
            .hash_password(password.expose().as_bytes())
            .map(|h| h.to_string())
            .map_err(|e| anyhow::anyhow!("password hashing failed: {e}"))
    })
    .await?
}

pub async fn verify(password: Secret, phc: String) -> bool {
    tokio::task::spawn_blocking(move || {
        Argon2::default().verify_password(password.expose().as_bytes(), phc.as_str()).is_ok()
    })
    .await
    .unwrap_or(false)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test]
    async fn hash_then_verify() {
        let phc = hash(Secret::new("correct horse battery".into())).await.unwrap();
        assert!(phc.starts_with("$argon2id$"));
        assert!(verify(Secret::new("correct horse battery".into()), phc.clone()).await);
        assert!(!verify(Secret::new("wrong horse battery!".into()), phc).await);
    }
}
