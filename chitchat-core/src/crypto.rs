//! Authenticated encryption of datagrams: keys, the keyring, the sealed
//! envelope, and the replay filter.
//!
//! Without encryption, any host that reaches the gossip port can join, forge any
//! node's state or mark nodes dead: the cluster id is only a label. With a
//! [`Keyring`] installed ([`crate::Chitchat::set_encryption`]), every datagram is
//! sealed with XChaCha20-Poly1305 under a 32-byte cluster key, and only holders
//! of a key take part.
//!
//! # Sealed envelope
//!
//! ```text
//! offset  size  field
//! 0       3     magic: b"CCT"
//! 3       1     0x80 | protocol version (0x81): sealed
//! 4       4     key id (big endian), see KeyId
//! 8       24    nonce: 16-byte per-incarnation prefix || 8-byte counter (big endian)
//! 32      ..    ciphertext of the plaintext datagram's body (postcard(Packet))
//! end-16  16    Poly1305 tag
//! ```
//!
//! The associated data is the 32 header bytes followed by the receiver's cluster
//! id: a tampered header, a datagram of another cluster (even one sharing the
//! key) and a datagram sealed under another key all fail authentication. A
//! sealed datagram is [`SEAL_OVERHEAD`] (44) bytes longer than its plaintext;
//! the core reserves that room in every datagram it builds, so
//! [`crate::Config::max_datagram_size`] stays a hard bound.
//!
//! # Why XChaCha20-Poly1305
//!
//! It is fast in software on every CPU (no AES-NI needed), constant-time by
//! construction, and its 192-bit nonce leaves room for a 128-bit random prefix
//! per incarnation plus a counter, so nonces stay unique across restarts and
//! across all the nodes sharing a key without any coordination. AES-GCM's and
//! ChaCha20-Poly1305's 96-bit nonces would not leave that margin.
//!
//! # Nonces
//!
//! Nonces must never repeat under one key, across every node of the cluster and
//! every restart. The core's random generator is seeded from the configuration
//! (one seed replays one run), so it is deliberately **not** the nonce source.
//! Instead a nonce is `prefix || counter`:
//!
//! - the caller hands [`crate::Chitchat::set_encryption`] a fresh 16-byte salt
//!   per incarnation (the runtime adapters draw it from the operating system; the
//!   simulator derives it from its seed, the node and the generation). With
//!   random salts, two incarnations collide with probability about `n² / 2¹²⁹`
//!   for `n` incarnations ever sharing a key: negligible.
//! - as defense in depth, the core XORs the salt with the node's generation and
//!   identity fingerprint, so even a caller that passes a constant salt gets
//!   distinct prefixes for distinct nodes and for every restart (generations
//!   grow).
//! - the 8-byte counter starts at 0 and grows by one per sealed datagram; it is
//!   never reset within an incarnation (not by rotation, not by a new keyring).
//!   At 2⁶⁴ the node stops sending rather than reuse a nonce.
//!
//! # Keys and rotation
//!
//! A [`Keyring`] holds one primary key, which seals, and any number of extra
//! keys, which only open. A datagram names its key by a [`KeyId`], so the
//! receiver tries one key, and refuses an unknown id without any cryptography.
//! Rotation takes three steps, each finished on every node before the next:
//! install the new key ([`crate::Chitchat::add_key`]), make it primary
//! ([`crate::Chitchat::set_primary_key`]), remove the old one
//! ([`crate::Chitchat::remove_key`]).
//!
//! # Modes and migration
//!
//! [`EncryptionMode`] says what a node sends and what it accepts. A sealed
//! datagram that a key of the ring opens is accepted in every mode, so a
//! plaintext cluster migrates without downtime: install the keyring everywhere
//! (mode `Off`), then switch every node to `EncryptAcceptPlaintext`, then to
//! `Required`.
//!
//! # Hostile datagrams and replays
//!
//! A datagram that fails authentication, or plaintext in `Required` mode, is
//! refused with a [`crate::DatagramError`], counted, and never answered (no
//! reflection, no amplification). Opening allocates nothing proportional to a
//! claimed length: the ciphertext is the datagram's real bytes, decrypted into a
//! buffer reused across datagrams.
//!
//! Replays are harmless to the state by construction (versions and heartbeats
//! only grow, stale sections are ignored, a removed node only comes back with a
//! newer heartbeat). On top of that, a replay filter remembers, per sender
//! prefix, the last 128 counters it accepted, and refuses a datagram it has
//! seen or one older than that window: a recorded Syn replayed with a spoofed
//! source address is not answered. The filter tracks up to `2 × max_nodes`
//! senders (the least recently heard is forgotten first) and starts empty at
//! each restart; a datagram it no longer covers is accepted but, being stale,
//! changes nothing.

use std::collections::HashMap;
use std::fmt;

use chacha20poly1305::aead::{AeadInOut, KeyInit};
use chacha20poly1305::{Tag, XChaCha20Poly1305, XNonce};
use thiserror::Error;

use crate::config::Config;
use crate::error::DatagramError;
use crate::message::Packet;
use crate::wire;

/// Bytes of a [`SecretKey`].
pub const KEY_LEN: usize = 32;
/// Bytes of a [`KeyId`] on the wire.
pub const KEY_ID_LEN: usize = 4;
/// Bytes of a nonce.
pub const NONCE_LEN: usize = 24;
/// Bytes of the nonce's per-incarnation prefix.
pub const NONCE_PREFIX_LEN: usize = 16;
/// Bytes of the Poly1305 tag.
pub const TAG_LEN: usize = 16;
/// Set in the version byte of a sealed datagram.
pub const SEALED_FLAG: u8 = 0x80;
/// Bytes before the ciphertext: magic, version byte, key id, nonce.
pub const SEALED_HEADER_LEN: usize = wire::HEADER_LEN + KEY_ID_LEN + NONCE_LEN;
/// How much longer a sealed datagram is than its plaintext.
pub const SEAL_OVERHEAD: usize = KEY_ID_LEN + NONCE_LEN + TAG_LEN;

/// Counters the replay filter remembers per sender.
const REPLAY_WINDOW: u64 = 128;
/// Domain separation of key ids from data nonces.
const KEY_ID_NONCE: [u8; NONCE_LEN] = *b"chitchat/key-id/nonce/v1";

/// What a node sends and what it accepts.
///
/// In every mode, a sealed datagram that a key of the ring opens is accepted.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Hash)]
pub enum EncryptionMode {
    /// Sends plaintext; accepts plaintext. The first step of a migration (with a
    /// keyring installed), and the default.
    #[default]
    Off,
    /// Seals every datagram with the primary key; still accepts plaintext. The
    /// second step of a migration.
    EncryptAcceptPlaintext,
    /// Seals every datagram; refuses plaintext.
    Required,
}

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

    fn get(&self, id: KeyId) -> Option<&SecretKey> {
        self.keys.iter().find(|key| key.id == id)
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

/// The encryption state of one node: mode, keyring, nonce sequence, buffers
/// reused across datagrams, and the replay filter.
#[derive(Default)]
pub(crate) struct Encryption {
    mode: EncryptionMode,
    keyring: Option<Keyring>,
    nonce_prefix: [u8; NONCE_PREFIX_LEN],
    /// The counter of the next sealed datagram; never reset.
    next_counter: u64,
    exhausted: bool,
    opened: Vec<u8>,
    associated_data: Vec<u8>,
    replays: ReplayFilter,
}

/// A sealed datagram that was opened, to be noted by the replay filter once the
/// core accepts it.
#[derive(Clone, Copy, Debug)]
pub(crate) struct Opened {
    prefix: [u8; NONCE_PREFIX_LEN],
    counter: u64,
}

impl Encryption {
    /// Installs a keyring and mode. `salt` must be fresh for this incarnation;
    /// `generation` and `fingerprint` are mixed in (see the module docs).
    pub(crate) fn install(
        &mut self,
        mode: EncryptionMode,
        keyring: Keyring,
        salt: [u8; NONCE_PREFIX_LEN],
        generation: u64,
        fingerprint: u64,
        config: &Config,
    ) {
        let mut identity = [0; NONCE_PREFIX_LEN];
        identity[..8].copy_from_slice(&generation.to_be_bytes());
        identity[8..].copy_from_slice(&fingerprint.to_be_bytes());
        for (prefix, (salt, identity)) in self.nonce_prefix.iter_mut().zip(salt.iter().zip(identity)) {
            *prefix = salt ^ identity;
        }
        self.mode = mode;
        self.keyring = Some(keyring);
        self.replays.capacity = config.max_nodes.saturating_mul(2);
    }

    pub(crate) fn mode(&self) -> EncryptionMode {
        self.mode
    }

    pub(crate) fn set_mode(&mut self, mode: EncryptionMode) -> Result<(), KeyringError> {
        if mode != EncryptionMode::Off && self.keyring.is_none() {
            return Err(KeyringError::NoKeyring);
        }
        self.mode = mode;
        Ok(())
    }

    pub(crate) fn keyring(&self) -> Option<&Keyring> {
        self.keyring.as_ref()
    }

    pub(crate) fn keyring_mut(&mut self) -> Result<&mut Keyring, KeyringError> {
        self.keyring.as_mut().ok_or(KeyringError::NoKeyring)
    }

    /// Bytes sealing adds to each datagram sent now.
    pub(crate) fn overhead(&self) -> usize {
        match self.mode {
            EncryptionMode::Off => 0,
            _ => SEAL_OVERHEAD,
        }
    }

    /// Seals a plaintext datagram (from [`wire::encode`]) if the mode says so.
    /// `None` if the nonce counter is exhausted: the datagram must not be sent.
    pub(crate) fn seal(&mut self, plaintext: Vec<u8>, cluster_id: &str) -> Option<Vec<u8>> {
        let key = match (&self.keyring, self.mode) {
            (_, EncryptionMode::Off) => return Some(plaintext),
            (Some(keyring), _) => &keyring.keys[0],
            // `set_mode` keeps a keyring whenever the mode seals.
            (None, _) => return None,
        };
        if self.exhausted {
            return None;
        }
        let counter = self.next_counter;
        match counter.checked_add(1) {
            Some(next) => self.next_counter = next,
            None => self.exhausted = true,
        }
        let body = plaintext.get(wire::HEADER_LEN..)?;
        let mut sealed = Vec::with_capacity(plaintext.len() + SEAL_OVERHEAD);
        sealed.extend_from_slice(&wire::MAGIC);
        sealed.push(SEALED_FLAG | plaintext[wire::MAGIC.len()]);
        sealed.extend_from_slice(&key.id.0.to_be_bytes());
        sealed.extend_from_slice(&self.nonce_prefix);
        sealed.extend_from_slice(&counter.to_be_bytes());
        self.associated_data.clear();
        self.associated_data.extend_from_slice(&sealed);
        self.associated_data.extend_from_slice(cluster_id.as_bytes());
        let nonce = XNonce::try_from(&sealed[wire::HEADER_LEN + KEY_ID_LEN..]).ok()?;
        sealed.extend_from_slice(body);
        let tag = key
            .cipher
            .encrypt_inout_detached(&nonce, &self.associated_data, (&mut sealed[SEALED_HEADER_LEN..]).into())
            .ok()?;
        sealed.extend_from_slice(&tag);
        Some(sealed)
    }

    /// Opens and decodes a received datagram. Changes nothing but the reused
    /// buffers; the replay filter learns of an opened datagram only through
    /// [`Encryption::note_accepted`].
    pub(crate) fn open(
        &mut self,
        bytes: &[u8],
        cluster_id: &str,
    ) -> Result<(Packet, Option<Opened>), DatagramError> {
        match self.unseal(bytes, cluster_id)? {
            None => Ok((wire::decode(bytes)?, None)),
            Some(opened) => Ok((wire::decode(&self.opened)?, Some(opened))),
        }
    }

    /// Checks a datagram's envelope and mode, and opens it if sealed: `Some`
    /// with the plaintext datagram in `self.opened`, `None` for an accepted
    /// plaintext datagram (still to decode).
    fn unseal(&mut self, bytes: &[u8], cluster_id: &str) -> Result<Option<Opened>, DatagramError> {
        let version = match bytes.get(wire::MAGIC.len()) {
            Some(&version) if bytes[..wire::MAGIC.len()] == wire::MAGIC => version,
            // Not even an envelope: the decoder says why.
            _ => return Err(wire::decode(bytes).err().unwrap_or(DatagramError::BadMagic)),
        };
        if version & SEALED_FLAG == 0 {
            if self.mode == EncryptionMode::Required {
                return Err(DatagramError::PlaintextRefused);
            }
            return Ok(None);
        }
        if version & !SEALED_FLAG != wire::PROTOCOL_VERSION {
            return Err(DatagramError::UnsupportedVersion(version));
        }
        if bytes.len() > Config::MAX_DATAGRAM_SIZE {
            return Err(DatagramError::TooLarge { len: bytes.len(), max: Config::MAX_DATAGRAM_SIZE });
        }
        if bytes.len() < SEALED_HEADER_LEN + TAG_LEN {
            return Err(DatagramError::Unauthenticated);
        }
        let (header, rest) = bytes.split_at(SEALED_HEADER_LEN);
        let (ciphertext, tag) = rest.split_at(rest.len() - TAG_LEN);
        let key_id = KeyId(u32::from_be_bytes([header[4], header[5], header[6], header[7]]));
        let key = self.keyring.as_ref().and_then(|keyring| keyring.get(key_id));
        let key = key.ok_or(DatagramError::UnknownKey(key_id))?;
        let nonce_bytes = &header[wire::HEADER_LEN + KEY_ID_LEN..];
        let nonce = XNonce::try_from(nonce_bytes).map_err(|_| DatagramError::Unauthenticated)?;
        let tag = Tag::try_from(tag).map_err(|_| DatagramError::Unauthenticated)?;
        self.associated_data.clear();
        self.associated_data.extend_from_slice(header);
        self.associated_data.extend_from_slice(cluster_id.as_bytes());
        // The plaintext datagram is rebuilt in the reused buffer: its header,
        // then the body decrypted in place (the tag is checked first).
        self.opened.clear();
        self.opened.extend_from_slice(&wire::MAGIC);
        self.opened.push(version & !SEALED_FLAG);
        self.opened.extend_from_slice(ciphertext);
        key.cipher
            .decrypt_inout_detached(
                &nonce,
                &self.associated_data,
                (&mut self.opened[wire::HEADER_LEN..]).into(),
                &tag,
            )
            .map_err(|_| DatagramError::Unauthenticated)?;
        let mut prefix = [0; NONCE_PREFIX_LEN];
        prefix.copy_from_slice(&nonce_bytes[..NONCE_PREFIX_LEN]);
        let mut counter = [0; 8];
        counter.copy_from_slice(&nonce_bytes[NONCE_PREFIX_LEN..]);
        let opened = Opened { prefix, counter: u64::from_be_bytes(counter) };
        if self.replays.is_replay(&opened) {
            return Err(DatagramError::Replayed);
        }
        Ok(Some(opened))
    }

    /// Notes that an opened datagram was accepted, so that a replay is refused.
    pub(crate) fn note_accepted(&mut self, opened: Option<Opened>) {
        if let Some(opened) = opened {
            self.replays.note(&opened);
        }
    }
}

/// Seals and opens raw datagrams outside a node, as a node does: for
/// benchmarks. Opening does not decode the message, nor note replays.
#[doc(hidden)]
pub struct DatagramSealer(Encryption);

impl DatagramSealer {
    /// A sealer in `Required` mode.
    pub fn new(keyring: Keyring, nonce_salt: [u8; NONCE_PREFIX_LEN]) -> Self {
        let mut encryption = Encryption::default();
        encryption.install(EncryptionMode::Required, keyring, nonce_salt, 0, 0, &Config::default());
        DatagramSealer(encryption)
    }

    /// Seals a datagram (its first 4 bytes are the plaintext envelope header).
    pub fn seal(&mut self, plaintext: Vec<u8>, cluster_id: &str) -> Option<Vec<u8>> {
        self.0.seal(plaintext, cluster_id)
    }

    /// Authenticates and decrypts a sealed datagram; returns the plaintext.
    pub fn open(&mut self, sealed: &[u8], cluster_id: &str) -> Result<&[u8], DatagramError> {
        self.0.unseal(sealed, cluster_id)?.ok_or(DatagramError::PlaintextRefused)?;
        Ok(&self.0.opened)
    }
}

/// Per sender prefix, the highest counter accepted and which of the
/// [`REPLAY_WINDOW`] counters below it were.
#[derive(Default)]
struct ReplayFilter {
    senders: HashMap<[u8; NONCE_PREFIX_LEN], ReplayWindow>,
    capacity: usize,
    /// Ticks on every note, to forget the least recently heard sender first.
    clock: u64,
}

#[derive(Clone, Copy)]
struct ReplayWindow {
    highest: u64,
    /// Bit `i`: counter `highest - i` was accepted.
    seen: u128,
    last_heard: u64,
}

impl ReplayFilter {
    fn is_replay(&self, opened: &Opened) -> bool {
        let Some(window) = self.senders.get(&opened.prefix) else { return false };
        if opened.counter > window.highest {
            return false;
        }
        let age = window.highest - opened.counter;
        age >= REPLAY_WINDOW || window.seen >> age & 1 == 1
    }

    fn note(&mut self, opened: &Opened) {
        self.clock += 1;
        if !self.senders.contains_key(&opened.prefix) && self.senders.len() >= self.capacity.max(1) {
            let oldest =
                self.senders.iter().min_by_key(|(_, window)| window.last_heard).map(|(prefix, _)| *prefix);
            if let Some(oldest) = oldest {
                self.senders.remove(&oldest);
            }
        }
        let window = self.senders.entry(opened.prefix).or_insert(ReplayWindow {
            highest: opened.counter,
            seen: 0,
            last_heard: 0,
        });
        window.last_heard = self.clock;
        if opened.counter > window.highest {
            let shift = opened.counter - window.highest;
            window.seen = if shift >= REPLAY_WINDOW { 0 } else { window.seen << shift };
            window.highest = opened.counter;
        }
        let age = window.highest - opened.counter;
        if age < REPLAY_WINDOW {
            window.seen |= 1 << age;
        }
    }
}

#[cfg(test)]
mod tests;
