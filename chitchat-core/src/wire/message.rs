//! The typed messages of the protocol. Only the rest of [`crate::wire`] turns
//! them into bytes.
//!
//! A handshake is `Syn(digest)` → `SynAck(digest, delta)` → `Ack(delta)`; a
//! probe of liveness is `Ping(target)` → `Pong`. Every
//! message travels with the sender's cluster id; a `Syn` from another cluster is
//! answered with `BadCluster`, anything else from another cluster is dropped.
//!
//! On a stream (the catch-up of a large state, see [`crate::stream`]), the
//! puller sends `Pull(digest)`, and the pulled node answers with `Records`
//! frames of what the digest lacks, then `Done`. Stream messages are refused
//! in a datagram and datagram messages on a stream.

use compact_str::CompactString;
use serde::{Deserialize, Serialize};

use crate::identity::{Fingerprint, NodeId};
use crate::wire::packed::bounded_vec;

/// A message with the cluster id it belongs to: the body of every datagram.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct Packet {
    /// What the answer to this datagram must echo (a `Syn` and a `SynAck`
    /// carry one): an unguessable value that proves the answer's sender
    /// received this datagram, not merely that it can spoof its source.
    pub token: Option<Token>,
    /// The token of the datagram this one answers (a `SynAck`, an `Ack`, a
    /// `BadCluster`), if it carried one.
    pub echo: Option<Token>,
    /// The sender's cluster id.
    pub cluster_id: String,
    /// What the sender says.
    pub message: Message,
}

/// A proof of return routability: 8 bytes drawn by the node that sends a
/// `Syn` or a `SynAck`, echoed by the answer (see [`Packet::token`]).
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, Serialize, Deserialize)]
pub struct Token(pub [u8; 8]);

impl Packet {
    /// A packet that asks for no echo and answers none.
    pub fn new(cluster_id: impl Into<String>, message: Message) -> Self {
        Packet { token: None, echo: None, cluster_id: cluster_id.into(), message }
    }
}

/// One protocol message.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub enum Message {
    /// Opens a handshake: what the sender knows, over one range of the ring.
    Syn {
        /// The sender's digest.
        digest: Digest,
    },
    /// Answers a `Syn`: what the receiver of the Syn knows (over the Syn's range),
    /// and what the Syn's sender lacks.
    SynAck {
        /// The responder's digest.
        digest: Digest,
        /// Updates the Syn's sender lacks.
        delta: Delta,
    },
    /// Closes a handshake with what the SynAck's sender lacks; also sent unasked as
    /// a node's farewell when it leaves.
    Ack {
        /// Updates the SynAck's sender lacks.
        delta: Delta,
    },
    /// Answers a `Syn` whose cluster id is not ours.
    BadCluster,
    /// Opens a stream exchange (the puller's only frame): what the sender
    /// holds, over the whole ring if the frame has room.
    Pull {
        /// The sender's digest.
        digest: Digest,
    },
    /// Part of what the other end's `Pull` lacks: a delta, deflated.
    Records {
        /// The delta, compressed.
        records: Compressed,
    },
    /// The sender has sent all it will on this stream.
    Done,
    /// Asks `target`, a node the sender watches, for a sign of life: the
    /// packet carries a token that the answer echoes.
    Ping {
        /// The node asked: only a node of this fingerprint answers, so that an
        /// identity whose address is now someone else's (a restart with a new
        /// generation, say) gets no answer.
        target: Fingerprint,
    },
    /// Answers a `Ping` of this node's fingerprint, echoing its token.
    Pong,
}

impl Message {
    /// Whether the message travels on a stream rather than in a datagram.
    pub fn is_stream_message(&self) -> bool {
        matches!(self, Message::Pull { .. } | Message::Records { .. } | Message::Done)
    }
}

/// A postcard-encoded [`Delta`] compressed with raw deflate (RFC 1951).
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct Compressed {
    /// The length of the encoded delta once inflated: checked against the
    /// frame limit and deflate's largest ratio before anything is allocated.
    pub len: u32,
    /// The deflate stream.
    #[serde(with = "crate::wire::packed::bytes")]
    pub deflated: Vec<u8>,
}

/// A range of the fingerprint ring, from `start` (included) clockwise to `end`
/// (excluded). `start == end` is the whole ring.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct RingRange {
    /// First fingerprint covered.
    pub start: Fingerprint,
    /// First fingerprint past the range.
    pub end: Fingerprint,
}

impl RingRange {
    /// The whole ring.
    pub const FULL: RingRange = RingRange { start: Fingerprint(0), end: Fingerprint(0) };

    /// Whether the range is the whole ring.
    pub fn is_full(&self) -> bool {
        self.start == self.end
    }

    /// Whether `fingerprint` lies in the range.
    pub fn contains(&self, fingerprint: Fingerprint) -> bool {
        self.is_full() || self.offset(fingerprint) < self.offset(self.end)
    }

    /// Distance clockwise from `start` to `fingerprint`: sorts the range's members.
    pub fn offset(&self, fingerprint: Fingerprint) -> u64 {
        fingerprint.0.wrapping_sub(self.start.0)
    }
}

/// What a node knows, in three parts, any of which may be empty:
///
/// - a **listing** over one range of the ring: for every node it tracks in the
///   range, that node's heartbeat and versions (a node of the range missing
///   from the listing is one the sender does not know; a node outside the
///   range says nothing either way);
/// - **rumors**: the entries of a few nodes outside the range, news the sender
///   spreads or nodes it knows it is behind on (they say nothing of the nodes
///   they do not name);
/// - **hashes** of what it knows over consecutive ranges, for the receiver to
///   compare with its own: two nodes that agree exchange one hash per range,
///   whatever the number of nodes in it.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct Digest {
    /// The range the digest is complete over.
    pub range: RingRange,
    /// One entry per known node in the range, in ring order from `range.start`.
    /// On the wire: one byte string of packed entries (see [`crate::wire`]).
    #[serde(with = "crate::wire::packed::entries")]
    pub entries: Vec<DigestEntry>,
    /// Nodes named in the peer's digest that the sender does not know and asks
    /// for (only in a `SynAck`, whose own range may be cut shorter than the Syn's).
    #[serde(deserialize_with = "bounded_vec")]
    pub unknown: Vec<Fingerprint>,
    /// The sender's own entry when the range does not cover it, so that every
    /// peer it talks to hears its versions first-hand whatever the range.
    pub sender: Option<DigestEntry>,
    /// Entries of nodes outside `range` (and other than the sender), by
    /// increasing fingerprint. Packed as `entries`.
    #[serde(with = "crate::wire::packed::entries")]
    pub rumors: Vec<DigestEntry>,
    /// Hashes of the sender's relayed nodes over consecutive ranges.
    pub hashes: RangeHashes,
}

impl Default for Digest {
    /// The digest of a node that knows nobody: an empty listing over the
    /// whole ring.
    fn default() -> Self {
        Digest {
            range: RingRange::FULL,
            entries: Vec::new(),
            unknown: Vec::new(),
            sender: None,
            rumors: Vec::new(),
            hashes: RangeHashes::default(),
        }
    }
}

/// Hashes of consecutive ranges of the ring, from `start` clockwise: the
/// first range is `start..segments[0].end`, the next
/// `segments[0].end..segments[1].end`, and so on, never past `start` again
/// (an `end` equal to `start` closes the ring, and only the last may).
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct RangeHashes {
    /// Where the first range starts.
    pub start: Fingerprint,
    /// The ranges' ends and hashes.
    #[serde(deserialize_with = "bounded_vec")]
    pub segments: Vec<Segment>,
}

impl RangeHashes {
    /// The ranges and their hashes, in order.
    pub fn ranges(&self) -> impl Iterator<Item = (RingRange, RangeHash)> + '_ {
        let starts = std::iter::once(self.start).chain(self.segments.iter().map(|segment| segment.end));
        starts
            .zip(&self.segments)
            .map(|(start, segment)| (RingRange { start, end: segment.end }, segment.hash))
    }
}

/// The end of one hashed range, and its hash.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct Segment {
    /// First fingerprint past the range.
    pub end: Fingerprint,
    /// The hash of the sender's relayed nodes in the range.
    pub hash: RangeHash,
}

/// The hash of a set of nodes' entries: the sum, modulo 2^64, of
/// [`RangeHash::of_entry`] over them. On the wire: 8 bytes, little-endian.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Hash)]
pub struct RangeHash(pub u64);

impl RangeHash {
    /// The hash of one node's entry: XXH3-64 of its fingerprint, heartbeat,
    /// GC watermark and max version, each as 8 little-endian bytes.
    pub fn of_entry(entry: &DigestEntry) -> RangeHash {
        let mut bytes = [0u8; 32];
        for (chunk, value) in bytes.chunks_exact_mut(8).zip([
            entry.fingerprint.0,
            entry.heartbeat,
            entry.last_gc_version,
            entry.max_version,
        ]) {
            chunk.copy_from_slice(&value.to_le_bytes());
        }
        RangeHash(xxhash_rust::xxh3::xxh3_64(&bytes))
    }
}

impl std::ops::Add for RangeHash {
    type Output = RangeHash;

    /// The hash of the union of two disjoint sets.
    fn add(self, other: RangeHash) -> RangeHash {
        RangeHash(self.0.wrapping_add(other.0))
    }
}

impl Serialize for RangeHash {
    fn serialize<S: serde::Serializer>(&self, serializer: S) -> Result<S::Ok, S::Error> {
        self.0.to_le_bytes().serialize(serializer)
    }
}

impl<'de> Deserialize<'de> for RangeHash {
    fn deserialize<D: serde::Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        <[u8; 8]>::deserialize(deserializer).map(|bytes| RangeHash(u64::from_le_bytes(bytes)))
    }
}

/// What a digest says of one node. 12 to 14 bytes on the wire in steady state.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct DigestEntry {
    /// The node.
    pub fingerprint: Fingerprint,
    /// Its highest heartbeat known to the sender.
    pub heartbeat: u64,
    /// The highest version the sender garbage-collected (or was reset to) for it.
    pub last_gc_version: u64,
    /// The highest version of its state the sender holds.
    pub max_version: u64,
}

/// Updates for the receiver, one section per node, most needed first.
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct Delta {
    /// At most one section per node.
    #[serde(deserialize_with = "bounded_vec")]
    pub nodes: Vec<NodeDelta>,
    /// The sender had more for the receiver than fit: a receiver that can
    /// opens a stream to the sender to pull the rest ([`crate::stream`]).
    pub more: bool,
}

/// How a delta names a node.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub enum NodeRef {
    /// By fingerprint, to a receiver whose digest showed it knows the node.
    Known(Fingerprint),
    /// In full, to a receiver that does not know the node yet.
    Full(NodeId),
}

/// The updates of one node's state: every record with a version in
/// `(from_version, max_version]`, in increasing version order.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct NodeDelta {
    /// The node.
    pub node: NodeRef,
    /// Its heartbeat as the sender knows it.
    pub heartbeat: u64,
    /// The receiver must replace its state of the node by this section's (its view
    /// is older than the sender's garbage collection). Then `from_version` is 0.
    pub reset: bool,
    /// Records above this version follow; the receiver has everything up to it.
    pub from_version: u64,
    /// The highest version the sender garbage-collected for the node.
    pub last_gc_version: u64,
    /// After applying, the receiver holds the node up to this version. When the
    /// section was cut to fit the datagram, it is the version of its last record.
    pub max_version: u64,
    /// The node announced that it leaves. Leaving is final for an incarnation, so
    /// this needs no version: any section may carry it, and a farewell is a section
    /// with no record and only this flag.
    pub left: bool,
    /// The records, by increasing version.
    #[serde(deserialize_with = "bounded_vec")]
    pub key_values: Vec<KeyValueUpdate>,
}

/// One versioned record of a node's state.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct KeyValueUpdate {
    /// The key (inline up to 24 bytes: most records decode and encode
    /// without an allocation).
    pub key: CompactString,
    /// The version the owner gave this record.
    pub version: u64,
    /// The record.
    pub value: ValueUpdate,
}

impl KeyValueUpdate {
    /// The record as a sender writes it.
    #[cfg(test)]
    pub(crate) fn as_out(&self) -> KeyValueOut<'_> {
        let value = match &self.value {
            ValueUpdate::Set(value) => ValueOut::Set(value),
            ValueUpdate::SetWithTtl(value) => ValueOut::SetWithTtl(value),
            ValueUpdate::Deleted => ValueOut::Deleted,
        };
        KeyValueOut { key: &self.key, version: self.version, value }
    }
}

/// A key's record.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub enum ValueUpdate {
    /// The key holds this value.
    Set(CompactString),
    /// The key holds this value until a grace period after the receiver learns
    /// of it; then it expires.
    SetWithTtl(CompactString),
    /// The key was deleted (a tombstone).
    Deleted,
}

// What a sender writes. A delta is encoded from the records in place, not
// from a `Delta` built for the purpose (a full datagram is thousands of
// records, each a copy of its key and value): these borrow what they write,
// and encode exactly as the types they mirror (unit tests compare the bytes).

/// Writes as a [`Packet`] whose message `M` writes (a [`Message`], or a
/// [`DeltaMessage`]).
#[derive(Serialize)]
pub(crate) struct PacketOut<'a, M> {
    pub token: Option<Token>,
    pub echo: Option<Token>,
    pub cluster_id: &'a str,
    pub message: M,
}

/// Writes as the [`Message`] variant of the same name, with a delta that
/// `D` writes (a [`Delta`], or sections of records read in place).
pub(crate) enum DeltaMessage<'a, D> {
    SynAck { digest: &'a Digest, delta: D },
    Ack { delta: D },
}

impl<D: Serialize> Serialize for DeltaMessage<'_, D> {
    fn serialize<S: serde::Serializer>(&self, serializer: S) -> Result<S::Ok, S::Error> {
        use serde::ser::SerializeStructVariant;
        // `Message`'s variant indices (see the module `wire`'s format).
        const SYN_ACK: u32 = 1;
        const ACK: u32 = 2;
        match self {
            DeltaMessage::SynAck { digest, delta } => {
                let mut variant = serializer.serialize_struct_variant("Message", SYN_ACK, "SynAck", 2)?;
                variant.serialize_field("digest", digest)?;
                variant.serialize_field("delta", delta)?;
                variant.end()
            }
            DeltaMessage::Ack { delta } => {
                let mut variant = serializer.serialize_struct_variant("Message", ACK, "Ack", 1)?;
                variant.serialize_field("delta", delta)?;
                variant.end()
            }
        }
    }
}

/// Writes as a [`Delta`] whose sections `N` writes (a sequence of
/// [`NodeDeltaOut`]).
#[derive(Serialize)]
pub(crate) struct DeltaOut<N> {
    pub nodes: N,
    pub more: bool,
}

/// Writes as a [`NodeRef`].
#[derive(Serialize)]
pub(crate) enum NodeRefOut<'a> {
    Known(Fingerprint),
    Full(&'a NodeId),
}

/// Writes as a [`NodeDelta`] whose records `R` writes (a sequence of
/// [`KeyValueOut`]).
#[derive(Serialize)]
pub(crate) struct NodeDeltaOut<'a, R> {
    pub node: NodeRefOut<'a>,
    pub heartbeat: u64,
    pub reset: bool,
    pub from_version: u64,
    pub last_gc_version: u64,
    pub max_version: u64,
    pub left: bool,
    pub key_values: R,
}

/// Writes as a [`KeyValueUpdate`].
#[derive(Serialize)]
pub(crate) struct KeyValueOut<'a> {
    pub key: &'a str,
    pub version: u64,
    pub value: ValueOut<'a>,
}

/// Writes as a [`ValueUpdate`].
#[derive(Clone, Copy, Serialize)]
pub(crate) enum ValueOut<'a> {
    Set(&'a str),
    SetWithTtl(&'a str),
    Deleted,
}
