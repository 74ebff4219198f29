//! The typed messages of the protocol. Only the rest of [`crate::wire`] turns
//! them into bytes.
//!
//! A handshake is `Syn(digest)` → `SynAck(digest, delta)` → `Ack(delta)`. Every
//! message travels with the sender's cluster id; a `Syn` from another cluster is
//! answered with `BadCluster`, anything else from another cluster is dropped.
//!
//! On a stream (the catch-up of a large state, see [`crate::stream`]), the
//! puller sends `Pull(digest)`, and the pulled node answers with `Records`
//! frames of what the digest lacks, then `Done`. Stream messages are refused
//! in a datagram and datagram messages on a stream.

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

/// What a node knows, over one range of the ring: for every node it tracks in
/// the range, that node's heartbeat and versions. A node of the range missing
/// from the digest is one the sender does not know; a node outside the range says
/// nothing either way.
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
    /// peer it talks to hears its heartbeat first-hand whatever the range.
    pub sender: Option<DigestEntry>,
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
    /// The key.
    pub key: String,
    /// The version the owner gave this record.
    pub version: u64,
    /// The record.
    pub value: ValueUpdate,
}

/// A key's record.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub enum ValueUpdate {
    /// The key holds this value.
    Set(String),
    /// The key holds this value until a grace period after the receiver learns
    /// of it; then it expires.
    SetWithTtl(String),
    /// The key was deleted (a tombstone).
    Deleted,
}
