//! Cluster keys and the keyring: which key seals, which keys open, and how a
//! key is named on the wire. See [`crate::crypto`] for how they are used.

use std::fmt;

use chacha20poly1305::aead::{AeadInOut, KeyInit};
use chacha20poly1305::{XChaCha20Poly1305, XNonce};
use thiserror::Error;

/// Bytes of a [`SecretKey`].
pub const KEY_LEN: usize = 32;
/// Domain separation of key ids from data nonces (24 bytes, as every nonce).
const KEY_ID_NONCE: [u8; 24] = *b"chitchat/key-id/nonce/v1";

/// Names a key on the wire: the first 4 bytes of the XChaCha20-Poly1305 tag of
/// an empty message under the key, with a fixed nonce reserved for this. It
/// reveals nothing about the key, and is public.
#[derive(Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct KeyId(pub u32);

impl fmt::Display for KeyId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{:08x}", self.0)
    }
}

impl fmt::Debug for KeyId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "KeyId({self})")
    }
}

/// A 32-byte cluster key. Its `Debug` shows only its [`KeyId`].
#[derive(Clone)]
pub struct SecretKey {
    bytes: [u8; KEY_LEN],
    id: KeyId,
    cipher: XChaCha20Poly1305,
}

impl SecretKey {
    /// The key made of these 32 bytes (which should be uniformly random, e.g.
    /// `openssl rand -hex 32`).
    pub fn from_bytes(bytes: [u8; KEY_LEN]) -> Self {
        let cipher = XChaCha20Poly1305::new(&bytes.into());
        let mut empty: [u8; 0] = [];
        let tag = cipher
            .encrypt_inout_detached(&XNonce::from(KEY_ID_NONCE), b"chitchat key id", (&mut empty[..]).into())
            .unwrap_or_default();
        let id = KeyId(u32::from_be_bytes([tag[0], tag[1], tag[2], tag[3]]));
        SecretKey { bytes, id, cipher }
    }

    /// The key's public name.
    pub fn id(&self) -> KeyId {
        self.id
    }

    /// The cipher this key seals and opens with.
    pub(crate) fn cipher(&self) -> &XChaCha20Poly1305 {
        &self.cipher
    }
}

impl fmt::Debug for SecretKey {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("SecretKey").field("id", &self.id).finish_non_exhaustive()
    }
}

/// One primary key that seals, and extra keys that only open.
#[derive(Clone)]
pub struct Keyring {
    /// The primary first.
    keys: Vec<SecretKey>,
}

impl Keyring {
    /// A keyring of one key.
    pub fn new(primary: SecretKey) -> Self {
        Keyring { keys: vec![primary] }
    }

    /// A keyring with extra keys. Fails if two different keys share an id.
    pub fn with_extra_keys(
        primary: SecretKey,
        extras: impl IntoIterator<Item = SecretKey>,
    ) -> Result<Self, KeyringError> {
        let mut keyring = Keyring::new(primary);
        for key in extras {
            keyring.add(key)?;
        }
        Ok(keyring)
    }

    /// The id of the key that seals.
    pub fn primary_id(&self) -> KeyId {
        self.keys[0].id
    }

    /// The ids of every key, the primary first.
    pub fn key_ids(&self) -> Vec<KeyId> {
        self.keys.iter().map(SecretKey::id).collect()
    }

    /// Whether the ring holds a key with this id.
    pub fn contains(&self, id: KeyId) -> bool {
        self.get(id).is_some()
    }

    /// Adds a key that opens datagrams. Adding a key already held does nothing
    /// (so a step of a rotation can be retried); on `Err` nothing changed.
    pub fn add(&mut self, key: SecretKey) -> Result<KeyId, KeyringError> {
        match self.get(key.id) {
            Some(held) if held.bytes == key.bytes => Ok(key.id),
            Some(_) => Err(KeyringError::KeyIdCollision(key.id)),
            None => {
                let id = key.id;
                self.keys.push(key);
                Ok(id)
            }
        }
    }

    /// Makes a held key the one that seals; the previous primary keeps opening.
    /// On `Err` nothing changed.
    pub fn set_primary(&mut self, id: KeyId) -> Result<(), KeyringError> {
        let index = self.index(id).ok_or(KeyringError::UnknownKey(id))?;
        self.keys.swap(0, index);
        Ok(())
    }

    /// Removes a key that is not the primary. On `Err` nothing changed.
    pub fn remove(&mut self, id: KeyId) -> Result<(), KeyringError> {
        match self.index(id) {
            None => Err(KeyringError::UnknownKey(id)),
            Some(0) => Err(KeyringError::RemovePrimary(id)),
            Some(index) => {
                self.keys.remove(index);
                Ok(())
            }
        }
    }

    fn index(&self, id: KeyId) -> Option<usize> {
        self.keys.iter().position(|key| key.id == id)
    }

    /// The key with this id.
    pub(crate) fn get(&self, id: KeyId) -> Option<&SecretKey> {
        self.keys.iter().find(|key| key.id == id)
    }

    /// The key that seals.
    pub(crate) fn primary(&self) -> &SecretKey {
        &self.keys[0]
    }
}

impl fmt::Debug for Keyring {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Keyring").field("primary", &self.primary_id()).field("keys", &self.key_ids()).finish()
    }
}

/// Why a change of keys or mode was refused. The keyring and mode did not
/// change.
#[derive(Debug, Error, Clone, Copy, PartialEq, Eq)]
#[non_exhaustive]
pub enum KeyringError {
    /// The node has no keyring yet: install one with
    /// [`crate::Chitchat::set_encryption`].
    #[error("no keyring is installed")]
    NoKeyring,
    /// No key of the ring has this id.
    #[error("no key with id {0} in the keyring")]
    UnknownKey(KeyId),
    /// The primary key cannot be removed: make another key primary first.
    #[error("key {0} is the primary key: make another key primary before removing it")]
    RemovePrimary(KeyId),
    /// Another key with the same id is held (a 1 in 2³² chance): generate a new key.
    #[error("another key with id {0} is already in the keyring")]
    KeyIdCollision(KeyId),
}

/// Why a text is not a [`SecretKey`]. The text itself is never echoed: it may
/// be secret.
#[derive(Debug, Error, Clone, Copy, PartialEq, Eq)]
#[non_exhaustive]
pub enum SecretKeyParseError {
    /// The text is neither 64 hex digits nor base64.
    #[error("a key is 32 bytes written as 64 hex digits or as base64; found {0} characters that are neither")]
    NotHexOrBase64(usize),
    /// The text is base64, but not of 32 bytes.
    #[error("a key is 32 bytes written as 64 hex digits or as base64 (44 characters); found {0} bytes")]
    WrongLength(usize),
}

/// Reads a key written as 64 hex digits (either case) or as base64 (standard or
/// URL-safe alphabet, padded or not), surrounding whitespace ignored: what
/// `openssl rand -hex 32` or `head -c 32 /dev/urandom | base64` print.
impl std::str::FromStr for SecretKey {
    type Err = SecretKeyParseError;

    fn from_str(text: &str) -> Result<Self, Self::Err> {
        use base64::Engine;
        use base64::engine::{DecodePaddingMode, GeneralPurpose, GeneralPurposeConfig};

        let text = text.trim();
        if let Some(bytes) = decode_hex(text) {
            return Ok(SecretKey::from_bytes(bytes));
        }
        let alphabet = match text.contains(['-', '_']) {
            true => &base64::alphabet::URL_SAFE,
            false => &base64::alphabet::STANDARD,
        };
        let config = GeneralPurposeConfig::new().with_decode_padding_mode(DecodePaddingMode::Indifferent);
        let bytes = GeneralPurpose::new(alphabet, config)
            .decode(text)
            .map_err(|_| SecretKeyParseError::NotHexOrBase64(text.chars().count()))?;
        let bytes: [u8; KEY_LEN] =
            bytes.try_into().map_err(|bytes: Vec<u8>| SecretKeyParseError::WrongLength(bytes.len()))?;
        Ok(SecretKey::from_bytes(bytes))
    }
}

/// 64 hex digits as 32 bytes; `None` for anything else.
fn decode_hex(text: &str) -> Option<[u8; KEY_LEN]> {
    if text.len() != 2 * KEY_LEN {
        return None;
    }
    let mut bytes = [0; KEY_LEN];
    for (i, byte) in bytes.iter_mut().enumerate() {
        let pair = text.get(2 * i..2 * i + 2)?;
        // `from_str_radix` alone would take a sign.
        if !pair.bytes().all(|digit| digit.is_ascii_hexdigit()) {
            return None;
        }
        *byte = u8::from_str_radix(pair, 16).ok()?;
    }
    Some(bytes)
}

#[cfg(test)]
mod parse_tests {
    use super::*;

    /// Bytes whose base64 uses `+` and `/`, to tell the alphabets apart.
    fn bytes() -> [u8; KEY_LEN] {
        std::array::from_fn(|i| (i * 37 + 5) as u8)
    }

    #[test]
    fn hex_and_every_base64_flavour_give_the_same_key() {
        let expected = SecretKey::from_bytes(bytes()).id();
        let hex: String = bytes().iter().map(|byte| format!("{byte:02x}")).collect();
        // `head -c 32 | base64` of these bytes.
        let standard = "BSpPdJm+4wgtUnecweYLMFV6n8TpDjNYfaLH7BE2W4A=";
        let url_safe = standard.replace('+', "-").replace('/', "_");
        for text in [
            format!("  {hex}\n"),
            hex.to_uppercase(),
            standard.to_string(),
            standard.trim_end_matches('=').to_string(),
            url_safe.clone(),
            url_safe.trim_end_matches('=').to_string(),
        ] {
            assert_eq!(text.parse::<SecretKey>().map(|key| key.id()), Ok(expected), "{text:?}");
        }
    }

    #[test]
    fn bad_keys_get_a_typed_error() {
        assert_eq!("".parse::<SecretKey>().map(|key| key.id()), Err(SecretKeyParseError::WrongLength(0)));
        assert_eq!("abcd".parse::<SecretKey>().map(|key| key.id()), Err(SecretKeyParseError::WrongLength(3)));
        let not_hex = "zz".repeat(32);
        assert_eq!(
            not_hex.parse::<SecretKey>().map(|key| key.id()),
            Err(SecretKeyParseError::WrongLength(48))
        );
        let error = "not a key!".parse::<SecretKey>().map(|key| key.id()).unwrap_err();
        assert_eq!(error, SecretKeyParseError::NotHexOrBase64(10));
        assert!(!error.to_string().contains("not a key"), "the text is never echoed");
        let signed = format!("+{}", "a".repeat(63));
        assert!(signed.parse::<SecretKey>().is_err());
        let mixed = "BSpPdJm+4wgtUnecweYLMFV6n8TpDjNYfaLH7BE2W4_=";
        assert!(matches!(mixed.parse::<SecretKey>(), Err(SecretKeyParseError::NotHexOrBase64(_))));
    }
}
