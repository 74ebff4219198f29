//! Bytes on the wire: the only module that touches them.
//!
//! # Format
//!
//! A datagram is a 4-byte envelope header followed by a [postcard] encoding of a
//! [`Packet`]:
//!
//! ```text
//! offset  size  field
//! 0       3     magic: b"CCT"
//! 3       1     protocol version: 1
//! 4       ..    postcard(Packet { cluster_id: String, message: Message })
//! ```
//!
//! Postcard writes integers as LEB128 varints, strings and sequences as a varint
//! length then their content, enums as a varint variant index then the payload,
//! `Option` as a 0/1 byte then the value. A [`crate::Fingerprint`] is 8 raw bytes.
//! Variant indices follow declaration order in [`crate::message`]: `Syn` = 0,
//! `SynAck` = 1, `Ack` = 2, `BadCluster` = 3.
//!
//! A digest's entries travel as one postcard byte string (a varint length, then
//! the bytes) of packed entries: per entry, the fingerprint as 8 little-endian
//! bytes, then the heartbeat, the GC version and the max version as LEB128
//! varints (postcard's own varint format). That is 12 bytes for a node with a
//! heartbeat below 16,384 and fewer than 128 versions, 13 to 14 in a
//! long-running cluster. Packing them by hand rather than field by field through
//! serde makes the hottest path of the protocol (every handshake carries one or
//! two digests of every node) several times faster to encode and decode. A full
//! identity (name, generation, address) travels only in a delta, to a peer that
//! lacks the node.
//!
//! # Decoding hostile input
//!
//! [`decode`] never panics, rejects trailing bytes, and allocates at most in
//! proportion to the datagram: sequences are grown one decoded element at a time
//! (a claimed length is never used to reserve memory), and every string's bytes
//! must be present before it is allocated. After decoding, [`decode`] checks every
//! rule of the protocol that does not depend on the receiver's state (ordering,
//! version bounds, duplicates); the rest is checked by the receiver before it
//! changes anything.

use std::collections::HashSet;
use std::fmt;
use std::marker::PhantomData;

use serde::de::{Deserializer, SeqAccess, Visitor};
use serde::{Deserialize, Serialize};

use crate::config::Config;
use crate::error::{DatagramError, Violation};
use crate::identity::NodeId;
use crate::message::{Delta, Digest, Message, NodeDelta, NodeRef, Packet};

/// The first three bytes of every datagram.
pub const MAGIC: [u8; 3] = *b"CCT";
/// The protocol version this crate speaks.
pub const PROTOCOL_VERSION: u8 = 1;
/// Length of the envelope header (magic and version).
pub const HEADER_LEN: usize = MAGIC.len() + 1;

/// Encodes a packet into a datagram.
pub fn encode(packet: &Packet) -> Vec<u8> {
    let mut bytes = Vec::with_capacity(HEADER_LEN + 64);
    bytes.extend_from_slice(&MAGIC);
    bytes.push(PROTOCOL_VERSION);
    // Serializing plain data into a Vec cannot fail.
    postcard::to_extend(packet, bytes).unwrap_or_default()
}

/// Decodes a datagram and checks the rules of the protocol that need no state.
pub fn decode(bytes: &[u8]) -> Result<Packet, DatagramError> {
    if bytes.len() > Config::MAX_DATAGRAM_SIZE {
        return Err(DatagramError::TooLarge { len: bytes.len(), max: Config::MAX_DATAGRAM_SIZE });
    }
    if bytes.len() < HEADER_LEN {
        return Err(DatagramError::TooShort);
    }
    if bytes[..MAGIC.len()] != MAGIC {
        return Err(DatagramError::BadMagic);
    }
    let version = bytes[MAGIC.len()];
    if version != PROTOCOL_VERSION {
        return Err(DatagramError::UnsupportedVersion(version));
    }
    let (packet, rest) =
        postcard::take_from_bytes::<Packet>(&bytes[HEADER_LEN..]).map_err(|error| match error {
            postcard::Error::DeserializeUnexpectedEnd => DatagramError::Truncated,
            postcard::Error::DeserializeBadUtf8 => DatagramError::InvalidUtf8,
            _ => DatagramError::Malformed,
        })?;
    if !rest.is_empty() {
        return Err(DatagramError::TrailingBytes(rest.len()));
    }
    check_message(&packet.message)?;
    Ok(packet)
}

fn check_message(message: &Message) -> Result<(), Violation> {
    match message {
        Message::Syn { digest } => check_digest(digest),
        Message::SynAck { digest, delta } => {
            check_digest(digest)?;
            check_delta(delta)
        }
        Message::Ack { delta } => check_delta(delta),
        Message::BadCluster => Ok(()),
    }
}

fn check_digest(digest: &Digest) -> Result<(), Violation> {
    let range = digest.range;
    if digest.sender.is_some_and(|sender| range.contains(sender.fingerprint)) {
        return Err(Violation::DigestOrder);
    }
    let mut previous: Option<u64> = None;
    for entry in &digest.entries {
        if !range.contains(entry.fingerprint) {
            return Err(Violation::DigestOrder);
        }
        let offset = range.offset(entry.fingerprint);
        if previous.is_some_and(|previous| previous >= offset) {
            return Err(Violation::DigestOrder);
        }
        previous = Some(offset);
    }
    Ok(())
}

fn check_delta(delta: &Delta) -> Result<(), Violation> {
    let mut seen = HashSet::with_capacity(delta.nodes.len());
    for section in &delta.nodes {
        let fingerprint = match &section.node {
            NodeRef::Known(fingerprint) => *fingerprint,
            NodeRef::Full(node_id) => node_id.fingerprint(),
        };
        if !seen.insert(fingerprint) {
            return Err(Violation::DuplicateNodeSection);
        }
        check_node_delta(section)?;
    }
    Ok(())
}

fn check_node_delta(section: &NodeDelta) -> Result<(), Violation> {
    if section.from_version > section.max_version {
        return Err(Violation::InconsistentBounds);
    }
    if section.reset && section.from_version != 0 {
        return Err(Violation::ResetNotFromZero);
    }
    let in_section = |version: u64| version > section.from_version && version <= section.max_version;
    let mut previous = section.from_version;
    let mut keys = HashSet::with_capacity(section.key_values.len());
    for record in &section.key_values {
        if !in_section(record.version) {
            return Err(Violation::VersionOutsideSection);
        }
        if record.version <= previous {
            return Err(Violation::VersionsNotIncreasing);
        }
        previous = record.version;
        if !keys.insert(record.key.as_str()) {
            return Err(Violation::DuplicateKey);
        }
    }
    Ok(())
}

/// Deserializes a sequence without trusting its claimed length: memory grows with
/// the elements actually decoded, each of which consumed at least one byte.
pub(crate) fn bounded_vec<'de, D, T>(deserializer: D) -> Result<Vec<T>, D::Error>
where
    D: Deserializer<'de>,
    T: Deserialize<'de>,
{
    struct BoundedVec<T>(PhantomData<T>);

    impl<'de, T: Deserialize<'de>> Visitor<'de> for BoundedVec<T> {
        type Value = Vec<T>;

        fn expecting(&self, formatter: &mut fmt::Formatter) -> fmt::Result {
            formatter.write_str("a sequence")
        }

        fn visit_seq<A: SeqAccess<'de>>(self, mut seq: A) -> Result<Vec<T>, A::Error> {
            let mut items = Vec::new();
            while let Some(item) = seq.next_element()? {
                items.push(item);
            }
            Ok(items)
        }
    }

    deserializer.deserialize_seq(BoundedVec(PhantomData))
}

/// Digest entries packed into one byte string (see the module docs).
pub(crate) mod packed_entries {
    use std::fmt;

    use serde::de::{Deserializer, Error, Visitor};
    use serde::ser::Serializer;

    use crate::identity::Fingerprint;
    use crate::message::DigestEntry;

    /// Smallest packed entry: 8 bytes of fingerprint and three 1-byte varints.
    const MIN_ENTRY_LEN: usize = 11;

    pub fn serialize<S: Serializer>(entries: &[DigestEntry], serializer: S) -> Result<S::Ok, S::Error> {
        let mut bytes = Vec::with_capacity(entries.len() * 14);
        for entry in entries {
            bytes.extend_from_slice(&entry.fingerprint.0.to_le_bytes());
            for value in [entry.heartbeat, entry.last_gc_version, entry.max_version] {
                put_varint(&mut bytes, value);
            }
        }
        serializer.serialize_bytes(&bytes)
    }

    pub fn deserialize<'de, D: Deserializer<'de>>(deserializer: D) -> Result<Vec<DigestEntry>, D::Error> {
        deserializer.deserialize_bytes(EntriesVisitor)
    }

    struct EntriesVisitor;

    impl<'de> Visitor<'de> for EntriesVisitor {
        type Value = Vec<DigestEntry>;

        fn expecting(&self, formatter: &mut fmt::Formatter) -> fmt::Result {
            formatter.write_str("packed digest entries")
        }

        fn visit_bytes<E: Error>(self, mut bytes: &[u8]) -> Result<Vec<DigestEntry>, E> {
            // The bytes are really there: reserving for them is bounded by the datagram.
            let mut entries = Vec::with_capacity(bytes.len() / MIN_ENTRY_LEN);
            while !bytes.is_empty() {
                let (fingerprint, rest) =
                    bytes.split_first_chunk::<8>().ok_or_else(|| E::custom("short entry"))?;
                bytes = rest;
                let mut next = || take_varint(&mut bytes).ok_or_else(|| E::custom("bad varint"));
                entries.push(DigestEntry {
                    fingerprint: Fingerprint(u64::from_le_bytes(*fingerprint)),
                    heartbeat: next()?,
                    last_gc_version: next()?,
                    max_version: next()?,
                });
            }
            Ok(entries)
        }
    }

    fn put_varint(bytes: &mut Vec<u8>, mut value: u64) {
        while value >= 0x80 {
            bytes.push(value as u8 | 0x80);
            value >>= 7;
        }
        bytes.push(value as u8);
    }

    /// Reads a LEB128 varint of at most 10 bytes whose value fits a `u64`.
    fn take_varint(bytes: &mut &[u8]) -> Option<u64> {
        let mut value = 0u64;
        for (index, byte) in bytes.iter().enumerate().take(10) {
            let bits = u64::from(byte & 0x7f);
            if index == 9 && *byte > 1 {
                return None; // more than 64 bits
            }
            value |= bits << (7 * index);
            if byte & 0x80 == 0 {
                *bytes = &bytes[index + 1..];
                return Some(value);
            }
        }
        None
    }
}

/// Bytes postcard uses for `value` as a length or unsigned integer.
pub(crate) const fn varint_len(value: u64) -> usize {
    let bits = 64 - (value | 1).leading_zeros() as usize;
    bits.div_ceil(7)
}

/// Bytes postcard uses for `value`, measured by the encoder itself.
pub(crate) fn encoded_len<T: Serialize + ?Sized>(value: &T) -> usize {
    postcard::experimental::serialized_size(value).unwrap_or(usize::MAX)
}

/// Bytes of one digest entry: 8 for the fingerprint and three varints. Equal to
/// what the encoder writes (a unit test checks it), without running it for each
/// of thousands of entries.
pub(crate) fn digest_entry_len(entry: &crate::message::DigestEntry) -> usize {
    8 + varint_len(entry.heartbeat) + varint_len(entry.last_gc_version) + varint_len(entry.max_version)
}

/// Bytes of a datagram before its message's payload: header, cluster id and the
/// message's variant index.
pub(crate) fn packet_overhead(cluster_id: &str) -> usize {
    HEADER_LEN + varint_len(cluster_id.len() as u64) + cluster_id.len() + 1
}

/// Bytes of a digest with no entry and nothing unknown.
pub(crate) fn empty_digest_len() -> usize {
    encoded_len(&Digest {
        range: crate::message::RingRange::FULL,
        entries: Vec::new(),
        unknown: Vec::new(),
        sender: None,
    })
}

/// The room a SynAck guarantees to its delta under `config`, whatever the digest.
pub(crate) fn guaranteed_delta_room(config: &Config) -> usize {
    let payload = config
        .max_datagram_size
        .saturating_sub(packet_overhead_for_len(config.max_cluster_id_len) + empty_digest_len() + 3);
    // The delta gets at least half of the payload; the 3 bytes cover the delta's
    // section count.
    payload / 2
}

fn packet_overhead_for_len(cluster_id_len: usize) -> usize {
    HEADER_LEN + varint_len(cluster_id_len as u64) + cluster_id_len + 1
}

/// The largest possible node section holding one key under `config`: a full
/// identity with the longest name, an IPv6 address, the largest numbers, and a
/// key and value at their limits.
pub(crate) fn worst_case_key_section_len(config: &Config) -> usize {
    let node = NodeId::new(
        "x".repeat(config.max_node_name_len),
        u64::MAX,
        std::net::SocketAddr::new(std::net::Ipv6Addr::LOCALHOST.into(), u16::MAX),
    );
    let section = NodeDelta {
        node: NodeRef::Full(node),
        heartbeat: u64::MAX,
        reset: true,
        from_version: u64::MAX,
        last_gc_version: u64::MAX,
        max_version: u64::MAX,
        left: true,
        key_values: vec![crate::message::KeyValueUpdate {
            key: "k".repeat(config.max_key_len),
            version: u64::MAX,
            value: crate::message::ValueUpdate::SetWithTtl("v".repeat(config.max_value_len)),
        }],
    };
    encoded_len(&section)
}

#[cfg(test)]
mod tests;
