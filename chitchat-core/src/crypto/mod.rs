//! Authenticated encryption of datagrams: the modes, sealing and opening the
//! envelope, and the replay filter. Keys are [`crate::SecretKey`]s held in a
//! [`crate::Keyring`].
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
//! sealed datagram is 44 bytes longer than its plaintext;
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

mod envelope;
mod replay;

use crate::error::DatagramError;
use crate::keyring::{KeyId, Keyring, KeyringError};
use crate::wire::{NONCE_PREFIX_LEN, SEAL_OVERHEAD};

pub(crate) use replay::Accepted;
use replay::ReplayFilter;

/// What a node sends and what it accepts.
///
/// In every mode, a sealed datagram that a key of the ring opens is accepted.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Hash)]
#[non_exhaustive]
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

/// The encryption state of one node: mode, keyring, nonce sequence, buffers
/// reused across datagrams, and the replay filter.
#[derive(Debug, Default)]
pub(crate) struct Encryption {
    mode: EncryptionMode,
    keyring: Option<Keyring>,
    nonces: envelope::NonceSequence,
    buffers: envelope::Buffers,
    replays: ReplayFilter,
}

impl Encryption {
    /// Installs a keyring and mode. `salt` must be fresh for this incarnation;
    /// `generation` and `fingerprint` are mixed in (see the module docs). The
    /// replay filter tracks up to `max_senders` senders.
    pub(crate) fn install(
        &mut self,
        mode: EncryptionMode,
        keyring: Keyring,
        salt: [u8; NONCE_PREFIX_LEN],
        generation: u64,
        fingerprint: u64,
        max_senders: usize,
    ) {
        self.nonces.set_prefix(salt, generation, fingerprint);
        self.mode = mode;
        self.keyring = Some(keyring);
        self.replays.set_capacity(max_senders);
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

    /// Seals a plaintext datagram (from [`crate::wire::encode`]) if the mode
    /// says so. `None` if the nonce counter is exhausted: the datagram must not
    /// be sent.
    pub(crate) fn seal(&mut self, plaintext: Vec<u8>, cluster_id: &str) -> Option<Vec<u8>> {
        let key = match (&self.keyring, self.mode) {
            (_, EncryptionMode::Off) => return Some(plaintext),
            (Some(keyring), _) => keyring.primary(),
            // `set_mode` keeps a keyring whenever the mode seals.
            (None, _) => return None,
        };
        let nonce = self.nonces.next()?;
        envelope::seal(key, &nonce, &plaintext, cluster_id, &mut self.buffers)
    }

    /// Checks a received datagram's envelope against the mode and opens it if
    /// sealed. Returns the plaintext datagram (the input itself, or the opened
    /// bytes in a buffer reused across datagrams) and, for a sealed one, what
    /// the replay filter must note once the core accepts it
    /// ([`Encryption::note_accepted`]). Changes nothing but the reused buffers.
    /// `max` is the largest envelope accepted (a datagram's or a frame's).
    pub(crate) fn open<'a>(
        &'a mut self,
        bytes: &'a [u8],
        cluster_id: &str,
        max: usize,
    ) -> Result<(&'a [u8], Option<Accepted>), DatagramError> {
        let sealed = match crate::wire::read_envelope(bytes, max)? {
            crate::wire::Envelope::Plain if self.mode == EncryptionMode::Required => {
                return Err(DatagramError::PlaintextRefused);
            }
            crate::wire::Envelope::Plain => return Ok((bytes, None)),
            crate::wire::Envelope::Sealed(sealed) => sealed,
        };
        let key_id = KeyId(sealed.key_id);
        let key = self.keyring.as_ref().and_then(|keyring| keyring.get(key_id));
        let key = key.ok_or(DatagramError::UnknownKey(key_id))?;
        let plaintext = envelope::open(key, &sealed, cluster_id, &mut self.buffers)?;
        let accepted = Accepted::of(&sealed);
        if self.replays.is_replay(&accepted) {
            return Err(DatagramError::Replayed);
        }
        Ok((plaintext, Some(accepted)))
    }

    /// Notes that an opened datagram was accepted, so that a replay is refused.
    pub(crate) fn note_accepted(&mut self, accepted: Option<Accepted>) {
        if let Some(accepted) = accepted {
            self.replays.note(&accepted);
        }
    }
}

#[cfg(test)]
mod tests;
