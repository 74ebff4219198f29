//! Cluster keys in files: 32 bytes written as 64 hex digits or as base64
//! (standard or URL-safe, padded or not), surrounding whitespace ignored, as
//! [`SecretKey`]'s `FromStr` reads them.
//!
//! ```text
//! openssl rand -hex 32 > cluster.key
//! head -c 32 /dev/urandom | base64 > cluster.key
//! ```

use std::path::{Path, PathBuf};

use chitchat_core::{KEY_LEN, SecretKey, SecretKeyParseError};
use thiserror::Error;

/// Why a key file could not be read.
#[derive(Debug, Error)]
#[non_exhaustive]
pub enum KeyFileError {
    /// The file could not be read.
    #[error("cannot read key file {path}: {source}")]
    Io {
        /// The file.
        path: PathBuf,
        /// The system's error.
        source: std::io::Error,
    },
    /// The file does not hold a key (its text is never echoed).
    #[error("{path}: {source}")]
    Invalid {
        /// The file.
        path: PathBuf,
        /// What is wrong.
        source: SecretKeyParseError,
    },
}

/// Reads a key file.
pub fn read_key_file(path: impl AsRef<Path>) -> Result<SecretKey, KeyFileError> {
    let path = path.as_ref();
    let text = std::fs::read_to_string(path)
        .map_err(|source| KeyFileError::Io { path: path.to_path_buf(), source })?;
    text.parse().map_err(|source| KeyFileError::Invalid { path: path.to_path_buf(), source })
}

/// Writes a key as 64 hex digits (to store a key made by [`generate_key`]).
pub fn key_to_hex(bytes: &[u8; KEY_LEN]) -> String {
    bytes.iter().map(|byte| format!("{byte:02x}")).collect()
}

/// 32 random bytes from the operating system, for a new key.
pub fn generate_key() -> Result<[u8; KEY_LEN], getrandom::Error> {
    let mut bytes = [0; KEY_LEN];
    getrandom::fill(&mut bytes)?;
    Ok(bytes)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn key_files_are_read_and_bad_ones_get_a_clear_error() {
        let dir = std::env::temp_dir().join(format!("chitchat-driver-keys-{}", std::process::id()));
        std::fs::create_dir_all(&dir).unwrap();
        let (good, bad) = (dir.join("good.key"), dir.join("bad.key"));
        let bytes = generate_key().unwrap();
        std::fs::write(&good, format!("{}\n", key_to_hex(&bytes))).unwrap();
        std::fs::write(&bad, "too short").unwrap();
        assert_eq!(read_key_file(&good).unwrap().id(), SecretKey::from_bytes(bytes).id());
        let error = read_key_file(&bad).unwrap_err();
        assert!(matches!(error, KeyFileError::Invalid { .. }));
        assert!(error.to_string().contains("bad.key") && !error.to_string().contains("too short"));
        let error = read_key_file(dir.join("missing.key")).unwrap_err();
        assert!(matches!(error, KeyFileError::Io { .. }));
        std::fs::remove_dir_all(&dir).unwrap();
    }

    #[test]
    fn generated_keys_differ() {
        assert_ne!(generate_key().unwrap(), generate_key().unwrap());
    }
}
