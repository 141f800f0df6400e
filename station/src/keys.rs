//! The station key: one secret file from which the SIGNATURE signing key and the key that
//! encrypts account secrets are derived.

use std::io::Write;
use std::os::unix::fs::OpenOptionsExt;
use std::path::{Path, PathBuf};

use chacha20poly1305::aead::{Aead, KeyInit};
use chacha20poly1305::{ChaCha20Poly1305, Nonce};
use hmac::{Hmac, Mac};
use rand::RngCore;
use sha2::Sha256;
use zeroize::Zeroizing;

const KEY_LEN: usize = 32;
const NONCE_LEN: usize = 12;

/// Errors loading the key or opening a sealed secret.
#[derive(Debug, thiserror::Error)]
pub enum KeyError {
    /// The key file could not be read or created.
    #[error("station key {path}")]
    Io {
        /// The key file.
        path: PathBuf,
        /// Why.
        source: std::io::Error,
    },
    /// The key file does not hold a key.
    #[error("station key {path}: {message}")]
    Invalid {
        /// The key file.
        path: PathBuf,
        /// What is wrong.
        message: String,
    },
    /// A sealed secret does not open with this key (wrong key, or damaged database).
    #[error(
        "a stored secret does not decrypt with this station's key: was the key file replaced?"
    )]
    Unseal,
}

/// The station's master key.
pub struct StationKey {
    master: Zeroizing<[u8; KEY_LEN]>,
}

impl std::fmt::Debug for StationKey {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("StationKey(********)")
    }
}

impl StationKey {
    /// Loads the key from `path`, creating it (32 random bytes, mode 0600) if it does not
    /// exist.
    ///
    /// # Errors
    ///
    /// The file cannot be read or created, or holds something other than 32 bytes.
    pub fn load_or_create(path: &Path) -> Result<Self, KeyError> {
        let io = |source| KeyError::Io {
            path: path.to_owned(),
            source,
        };
        match std::fs::read(path) {
            Ok(bytes) => {
                let master: [u8; KEY_LEN] =
                    bytes.as_slice().try_into().map_err(|_| KeyError::Invalid {
                        path: path.to_owned(),
                        message: format!("{} bytes; a station key is {KEY_LEN}", bytes.len()),
                    })?;
                Ok(Self {
                    master: Zeroizing::new(master),
                })
            }
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => {
                if let Some(dir) = path.parent() {
                    std::fs::create_dir_all(dir).map_err(io)?;
                }
                let mut master = Zeroizing::new([0u8; KEY_LEN]);
                rand::rng().fill_bytes(master.as_mut());
                let mut file = std::fs::OpenOptions::new()
                    .write(true)
                    .create_new(true)
                    .mode(0o600)
                    .open(path)
                    .map_err(io)?;
                file.write_all(master.as_ref()).map_err(io)?;
                file.sync_all().map_err(io)?;
                Ok(Self { master })
            }
            Err(e) => Err(io(e)),
        }
    }

    /// A key derived for one purpose, so the uses never share key material.
    fn derive(&self, purpose: &str) -> Zeroizing<[u8; KEY_LEN]> {
        let mut mac = <Hmac<Sha256> as Mac>::new_from_slice(self.master.as_ref())
            .unwrap_or_else(|_| unreachable!());
        mac.update(purpose.as_bytes());
        Zeroizing::new(mac.finalize().into_bytes().into())
    }

    /// The key that signs SIGNATURE files and barcodes.
    pub fn signing_key(&self) -> Zeroizing<[u8; KEY_LEN]> {
        self.derive("station signature v1")
    }

    fn cipher(&self) -> ChaCha20Poly1305 {
        let key = self.derive("station account secrets v1");
        ChaCha20Poly1305::new(key.as_ref().into())
    }

    /// Encrypts a secret for the database: nonce followed by ciphertext.
    pub fn seal(&self, secret: &[u8]) -> Vec<u8> {
        let mut nonce = [0u8; NONCE_LEN];
        rand::rng().fill_bytes(&mut nonce);
        // Encryption with a 32-byte key and a 12-byte nonce cannot fail.
        let sealed = self
            .cipher()
            .encrypt(Nonce::from_slice(&nonce), secret)
            .unwrap_or_default();
        [nonce.as_slice(), &sealed].concat()
    }

    /// Decrypts what [`StationKey::seal`] produced.
    ///
    /// # Errors
    ///
    /// The data was sealed under another key or is damaged.
    pub fn unseal(&self, sealed: &[u8]) -> Result<Zeroizing<Vec<u8>>, KeyError> {
        if sealed.len() < NONCE_LEN {
            return Err(KeyError::Unseal);
        }
        let (nonce, body) = sealed.split_at(NONCE_LEN);
        self.cipher()
            .decrypt(Nonce::from_slice(nonce), body)
            .map(Zeroizing::new)
            .map_err(|_| KeyError::Unseal)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::os::unix::fs::PermissionsExt;

    #[test]
    fn created_once_with_mode_0600_and_reloaded() {
        let dir = tempfile::tempdir().unwrap_or_else(|e| panic!("{e}"));
        let path = dir.path().join("sub/signing.key");
        let a = StationKey::load_or_create(&path).unwrap_or_else(|e| panic!("{e}"));
        let mode = std::fs::metadata(&path)
            .map(|m| m.permissions().mode() & 0o777)
            .ok();
        assert_eq!(mode, Some(0o600));
        let b = StationKey::load_or_create(&path).unwrap_or_else(|e| panic!("{e}"));
        assert_eq!(*a.signing_key(), *b.signing_key());
        let sealed = a.seal(b"secret");
        assert_eq!(
            b.unseal(&sealed).map(|s| s.to_vec()).ok(),
            Some(b"secret".to_vec())
        );
        let mut damaged = sealed.clone();
        damaged[20] ^= 1;
        assert!(b.unseal(&damaged).is_err());
        std::fs::write(&path, b"short").unwrap_or_else(|e| panic!("{e}"));
        let e = StationKey::load_or_create(&path)
            .err()
            .map(|e| e.to_string())
            .unwrap_or_default();
        assert!(e.contains("5 bytes"), "{e}");
    }
}
