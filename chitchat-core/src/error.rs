//! The errors of the core, one enum per boundary.

use thiserror::Error;

/// Why a received datagram was refused.
///
/// Whatever the variant, the datagram changed no state: no node, key, heartbeat,
/// queued output or event. It was counted in [`crate::Metrics::rejected`].
#[derive(Debug, Error, Clone, Copy, PartialEq, Eq)]
#[non_exhaustive]
pub enum DatagramError {
    /// Shorter than the 4-byte envelope header.
    #[error("datagram shorter than the envelope header")]
    TooShort,
    /// Longer than any datagram a node sends ([`crate::Config::MAX_DATAGRAM_SIZE`]).
    #[error("datagram of {len} bytes is larger than {max}")]
    TooLarge {
        /// Its length.
        len: usize,
        /// The largest accepted.
        max: usize,
    },
    /// The envelope does not start with the protocol's magic bytes.
    #[error("not a chitchat datagram (bad magic)")]
    BadMagic,
    /// The envelope's protocol version is one this node does not speak.
    #[error("unsupported protocol version {0}")]
    UnsupportedVersion(u8),
    /// The body ends before the message does (a length or count points past the end).
    #[error("truncated datagram")]
    Truncated,
    /// Bytes follow the end of the message.
    #[error("{0} trailing bytes after the message")]
    TrailingBytes(usize),
    /// A string is not valid UTF-8.
    #[error("invalid UTF-8 in a string")]
    InvalidUtf8,
    /// The body is not a valid encoding of a message (bad tag, varint, bool, ...).
    #[error("malformed message body")]
    Malformed,
    /// A `SynAck`, `Ack` or `BadCluster` from another cluster. (A `Syn` from another
    /// cluster is not an error: it is answered with `BadCluster`.)
    #[error("message from another cluster")]
    WrongCluster,
    /// The message decodes but breaks a rule of the protocol.
    #[error("protocol violation: {0}")]
    Invalid(#[from] Violation),
    /// The node has left the cluster and no longer takes part.
    #[error("the node has left the cluster")]
    NotRunning,
    /// A sealed datagram names a key this node does not hold (or the node has no
    /// keyring). Never answered.
    #[error("sealed with unknown key {0}")]
    UnknownKey(crate::keyring::KeyId),
    /// A sealed datagram failed authentication: forged, tampered with,
    /// truncated, sealed under another key, or of another cluster. Never answered.
    #[error("datagram failed authentication")]
    Unauthenticated,
    /// A plaintext datagram while [`crate::EncryptionMode::Required`]. Never answered.
    #[error("plaintext datagram refused: encryption is required")]
    PlaintextRefused,
    /// An authentic sealed datagram already accepted, or older than the replay
    /// window. Never answered.
    #[error("replayed datagram")]
    Replayed,
}

/// A rule of the protocol that a well-formed message broke.
#[derive(Debug, Error, Clone, Copy, PartialEq, Eq)]
#[non_exhaustive]
pub enum Violation {
    /// Digest entries out of ring order, repeated, or outside the digest's range.
    #[error("digest entries are not in ring order inside the range")]
    DigestOrder,
    /// Rumors of a digest not in increasing fingerprint order, repeated, or
    /// inside the digest's range or naming its sender.
    #[error("digest rumors are not in order outside the range")]
    RumorOrder,
    /// Hashed ranges of a digest that do not go clockwise from their start,
    /// or go round the ring more than once.
    #[error("hashed ranges do not go clockwise from their start")]
    RangeHashOrder,
    /// Two sections for one node in a delta.
    #[error("a delta names the same node twice")]
    DuplicateNodeSection,
    /// A section's records are not in strictly increasing version order.
    #[error("a node section's versions are not increasing")]
    VersionsNotIncreasing,
    /// A record's version is not in the section's `(from_version, max_version]`.
    #[error("a record's version lies outside its section's range")]
    VersionOutsideSection,
    /// `from_version` is above `max_version`.
    #[error("a node section's version bounds are inconsistent")]
    InconsistentBounds,
    /// A reset section does not start from version 0.
    #[error("a reset section does not start from version 0")]
    ResetNotFromZero,
    /// A section names one key twice.
    #[error("a node section repeats a key")]
    DuplicateKey,
    /// A section starts past what the receiver holds (it would leave a gap).
    #[error("a delta starts past the versions the receiver holds")]
    DeltaFromFuture,
    /// A record has an empty key, which no node can set.
    #[error("a record has an empty key")]
    EmptyKey,
    /// An identity has an empty name, which no node can have.
    #[error("an identity has an empty name")]
    EmptyNodeName,
    /// A heartbeat or version of 2^62 or more: no node counts that far, and a
    /// node must have room to refute a forged claim about itself.
    #[error("a heartbeat or version is implausibly large")]
    ImplausibleCounter,
    /// A range whose start equals its end (the whole ring) but is not 0: the
    /// whole ring is written (0, 0).
    #[error("a whole-ring range that does not start at 0")]
    NonCanonicalRange,
    /// A stream message in a datagram, or a datagram message on a stream.
    #[error("a message on the wrong transport (stream or datagram)")]
    WrongTransport,
    /// A stream message out of the exchange's order: a second `Pull`, or
    /// anything after `Done`.
    #[error("a stream message out of order")]
    OutOfOrder,
    /// A `Records` frame whose compressed delta does not inflate to its
    /// declared length, or declares more than a frame may hold.
    #[error("a compressed delta does not inflate to its declared length")]
    BadCompression,
}

/// Why the node refused to change its own state.
#[derive(Debug, Error, Clone, PartialEq, Eq)]
#[non_exhaustive]
pub enum KeyValueError {
    /// The key is empty.
    #[error("the key is empty")]
    EmptyKey,
    /// The key starts with [`crate::RESERVED_PREFIX`] (a NUL character): such
    /// keys are the protocol's.
    #[error("keys starting with a NUL character are reserved for the protocol")]
    ReservedKey,
    /// The key is longer than [`crate::Config::max_key_len`].
    #[error("the key is {len} bytes, more than max_key_len ({max})")]
    KeyTooLong {
        /// Its length in bytes.
        len: usize,
        /// The limit.
        max: usize,
    },
    /// The value is longer than [`crate::Config::max_value_len`].
    #[error("the value is {len} bytes, more than max_value_len ({max})")]
    ValueTooLong {
        /// Its length in bytes.
        len: usize,
        /// The limit.
        max: usize,
    },
    /// The node already holds [`crate::Config::max_keys_per_node`] keys.
    #[error("the node already holds max_keys_per_node ({max}) keys")]
    TooManyKeys {
        /// The limit.
        max: usize,
    },
    /// The record would take the node's state past the most one state may
    /// hold (2 GiB of keys and values, counted as
    /// [`crate::NodeState::held_bytes`] counts them), whatever the
    /// configuration allows.
    #[error("the node's state would hold more than {max} bytes")]
    StateTooLarge {
        /// The limit.
        max: usize,
    },
    /// The node has left the cluster; its state is frozen.
    #[error("the node has left the cluster")]
    NotRunning,
}
