//! Secret values at rest: age (X25519) encryption with an identity kept in `<data_dir>/age.key`
//! (0600), created on first use. Plaintext exists only in memory, on its way in or into a sandbox.

use std::io::Write;
use std::os::unix::fs::OpenOptionsExt;
use std::path::{Path, PathBuf};
use std::str::FromStr;
use std::sync::Mutex;

use age::secrecy::ExposeSecret;
use thiserror::Error;

/// Errors of secret encryption.
#[derive(Debug, Error)]
pub enum SecretsError {
    /// Reading or writing the identity file failed.
    #[error("age identity {path}: {source}")]
    KeyFile {
        /// `age.key`.
        path: PathBuf,
        /// Cause.
        #[source]
        source: std::io::Error,
    },
    /// The identity file is not an age X25519 identity.
    #[error("age identity {path} is not valid: {reason}")]
    BadKey {
        /// `age.key`.
        path: PathBuf,
        /// Parser message.
        reason: String,
    },
    /// Encryption failed.
    #[error("encrypt secret: {0}")]
    Encrypt(String),
    /// Decryption failed (wrong identity or corrupt ciphertext).
    #[error("decrypt secret: {0}")]
    Decrypt(String),
}

/// Encrypts and decrypts secret values with the daemon's age identity.
pub struct SecretBox {
    path: PathBuf,
    identity: Mutex<Option<age::x25519::Identity>>,
}

impl SecretBox {
    /// A box for `<data_dir>/age.key`; the file is read or created on first use.
    pub fn new(data_dir: &Path) -> Self {
        Self {
            path: data_dir.join("age.key"),
            identity: Mutex::new(None),
        }
    }

    fn identity(&self) -> Result<age::x25519::Identity, SecretsError> {
        let mut guard = self.identity.lock().unwrap_or_else(|e| e.into_inner());
        if let Some(id) = guard.as_ref() {
            return Ok(id.clone());
        }
        let id = load_or_create(&self.path)?;
        *guard = Some(id.clone());
        Ok(id)
    }

    /// Plaintext → age ciphertext.
    pub fn encrypt(&self, plaintext: &[u8]) -> Result<Vec<u8>, SecretsError> {
        let recipient = self.identity()?.to_public();
        age::encrypt(&recipient, plaintext).map_err(|e| SecretsError::Encrypt(e.to_string()))
    }

    /// age ciphertext → plaintext.
    pub fn decrypt(&self, ciphertext: &[u8]) -> Result<Vec<u8>, SecretsError> {
        let id = self.identity()?;
        age::decrypt(&id, ciphertext).map_err(|e| SecretsError::Decrypt(e.to_string()))
    }
}

fn load_or_create(path: &Path) -> Result<age::x25519::Identity, SecretsError> {
    let key_err = |source| SecretsError::KeyFile {
        path: path.to_path_buf(),
        source,
    };
    match std::fs::read_to_string(path) {
        Ok(text) if !text.trim().is_empty() => {
            let line = text
                .lines()
                .map(str::trim)
                .find(|l| l.starts_with("AGE-SECRET-KEY-"))
                .unwrap_or("");
            return age::x25519::Identity::from_str(line).map_err(|e| SecretsError::BadKey {
                path: path.to_path_buf(),
                reason: e.to_string(),
            });
        }
        Ok(_) => {}
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => {}
        Err(e) => return Err(key_err(e)),
    }
    let id = age::x25519::Identity::generate();
    // Write to a temp file created 0600 and rename, so a crash never leaves a partial key.
    let tmp = path.with_extension("key.tmp");
    let mut f = std::fs::OpenOptions::new()
        .write(true)
        .create(true)
        .truncate(true)
        .mode(0o600)
        .open(&tmp)
        .map_err(key_err)?;
    f.write_all(format!("{}\n", id.to_string().expose_secret()).as_bytes())
        .map_err(key_err)?;
    f.sync_all().map_err(key_err)?;
    std::fs::rename(&tmp, path).map_err(key_err)?;
    Ok(id)
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::os::unix::fs::PermissionsExt;

    #[test]
    fn round_trip_and_persistent_identity() {
        let dir = tempfile::tempdir().unwrap();
        let b = SecretBox::new(dir.path());
        let ct = b.encrypt(b"hunter2").unwrap();
        assert!(!ct.windows(7).any(|w| w == b"hunter2"));
        let mode = std::fs::metadata(dir.path().join("age.key"))
            .unwrap()
            .permissions()
            .mode();
        assert_eq!(mode & 0o777, 0o600);
        let b2 = SecretBox::new(dir.path());
        assert_eq!(b2.decrypt(&ct).unwrap(), b"hunter2");
    }

    #[test]
    fn other_identity_cannot_decrypt() {
        let d1 = tempfile::tempdir().unwrap();
        let d2 = tempfile::tempdir().unwrap();
        let ct = SecretBox::new(d1.path()).encrypt(b"x").unwrap();
        assert!(SecretBox::new(d2.path()).decrypt(&ct).is_err());
    }
}
