//! Cluster keys from files and text: 32 bytes written as 64 hex digits or as
//! base64 (standard or URL-safe, padded or not), surrounding whitespace ignored.
//!
//! ```text
//! openssl rand -hex 32 > cluster.key
//! head -c 32 /dev/urandom | base64 > cluster.key
//! ```

use std::path::{Path, PathBuf};

use chitchat_core::KEY_LEN;
use chitchat_core::SecretKey;
use thiserror::Error;

/// Why a key could not be read.
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
    /// The text is not 32 bytes in hex or base64.
    #[error("{origin}: a key is 32 bytes written as 64 hex digits or as base64 (44 characters); {reason}")]
    Invalid {
        /// The file, or `"key"` for text.
        origin: String,
        /// What is wrong.
        reason: String,
    },
}

/// Reads a key file.
pub fn read_key_file(path: impl AsRef<Path>) -> Result<SecretKey, KeyFileError> {
    let path = path.as_ref();
    let text = std::fs::read_to_string(path)
        .map_err(|source| KeyFileError::Io { path: path.to_path_buf(), source })?;
    parse_key(&text).map_err(|reason| KeyFileError::Invalid { origin: path.display().to_string(), reason })
}

/// Parses a key written as 64 hex digits or as base64. The error says what is
/// wrong (never echoing the text, which may be secret).
pub fn parse_key(text: &str) -> Result<SecretKey, String> {
    let text = text.trim();
    let bytes = if text.len() == 2 * KEY_LEN && text.bytes().all(|byte| byte.is_ascii_hexdigit()) {
        decode_hex(text)
    } else {
        decode_base64(text).ok_or_else(|| format!("found {} characters that are neither", text.len()))?
    };
    let bytes: [u8; KEY_LEN] =
        bytes.try_into().map_err(|bytes: Vec<u8>| format!("found {} bytes", bytes.len()))?;
    Ok(SecretKey::from_bytes(bytes))
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

fn decode_hex(text: &str) -> Vec<u8> {
    let digit = |byte: u8| (byte as char).to_digit(16).unwrap_or(0) as u8;
    text.as_bytes().chunks(2).map(|pair| digit(pair[0]) << 4 | digit(pair[1])).collect()
}

fn decode_base64(text: &str) -> Option<Vec<u8>> {
    let value = |byte: u8| -> Option<u32> {
        Some(match byte {
            b'A'..=b'Z' => byte - b'A',
            b'a'..=b'z' => byte - b'a' + 26,
            b'0'..=b'9' => byte - b'0' + 52,
            b'+' | b'-' => 62,
            b'/' | b'_' => 63,
            _ => return None,
        } as u32)
    };
    let text = text.trim_end_matches('=');
    if text.len() % 4 == 1 {
        return None;
    }
    let mut bytes = Vec::with_capacity(text.len() * 3 / 4);
    for chunk in text.as_bytes().chunks(4) {
        let mut word = 0;
        for (i, &byte) in chunk.iter().enumerate() {
            word |= value(byte)? << (18 - 6 * i);
        }
        bytes.extend_from_slice(&word.to_be_bytes()[1..chunk.len()]);
    }
    Some(bytes)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn hex_and_base64_give_the_same_key() {
        let bytes: [u8; KEY_LEN] = std::array::from_fn(|i| (i * 37 + 5) as u8);
        let hex = key_to_hex(&bytes);
        // `head -c 32 | base64` of these bytes.
        let standard = "BSpPdJm+4wgtUnecweYLMFV6n8TpDjNYfaLH7BE2W4A=";
        let expected = SecretKey::from_bytes(bytes).id();
        assert_eq!(parse_key(&format!("  {hex}\n")).unwrap().id(), expected);
        assert_eq!(parse_key(&hex.to_uppercase()).unwrap().id(), expected);
        assert_eq!(parse_key(standard).unwrap().id(), expected);
        assert_eq!(parse_key(standard.trim_end_matches('=')).unwrap().id(), expected);
        let url_safe = standard.replace('+', "-").replace('/', "_");
        assert_eq!(parse_key(&url_safe).unwrap().id(), expected);
    }

    #[test]
    fn bad_keys_get_a_clear_error() {
        assert!(parse_key("").unwrap_err().contains("0 bytes"));
        assert!(parse_key("abcd").unwrap_err().contains("3 bytes"));
        assert!(parse_key(&"zz".repeat(32)).is_err());
        assert!(parse_key("not a key!").unwrap_err().contains("neither"));
        let error = read_key_file("/nonexistent/chitchat.key").unwrap_err();
        assert!(matches!(error, KeyFileError::Io { .. }));
    }

    #[test]
    fn generated_keys_differ() {
        assert_ne!(generate_key().unwrap(), generate_key().unwrap());
    }
}
