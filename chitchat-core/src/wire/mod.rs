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
//! 3       1     protocol version: 3
//! 4       ..    postcard(Packet { token: Option<Token>, echo: Option<Token>,
//!                                 cluster_id: String, message: Message })
//! ```
//!
//! A [`Token`] is 8 raw bytes, so a packet with a token has it at offsets 5 to
//! 12 ([`stamp_token`] rewrites it in place).
//!
//! Postcard writes integers as LEB128 varints, strings and sequences as a varint
//! length then their content, enums as a varint variant index then the payload,
//! `Option` as a 0/1 byte then the value. A [`crate::Fingerprint`] is 8 raw bytes.
//! Variant indices follow declaration order in [`message`](self): `Syn` = 0,
//! `SynAck` = 1, `Ack` = 2, `BadCluster` = 3, and on streams (see [`frame`])
//! `Pull` = 4, `Records` = 5, `Done` = 6.
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

mod envelope;
mod frame;
mod message;
mod packed;
pub(crate) mod size;

use crate::error::{DatagramError, Violation};
use crate::identity::Fingerprint;

pub use envelope::*;
pub use frame::*;
pub use message::*;

/// Heartbeats and versions on the wire are below this (2^62); a datagram with
/// a larger one is refused ([`Violation::ImplausibleCounter`]).
pub const MAX_COUNTER: u64 = 1 << 62;

/// Encodes a packet into a datagram.
pub fn encode(packet: &Packet) -> Vec<u8> {
    encode_body(packet)
}

/// Encodes into a datagram a body that writes as a [`Packet`]: one, or a
/// [`PacketOut`] whose delta is read in place.
///
/// Through postcard's `AllocVec`, which appends a slice at a time
/// (`to_extend` appends byte by byte through an iterator: the handshake
/// that fills a 64 KB datagram took 3.5 % more instructions).
pub(crate) fn encode_body<T: serde::Serialize + ?Sized>(body: &T) -> Vec<u8> {
    use postcard::ser_flavors::{AllocVec, Flavor};
    // Serializing plain data into a Vec cannot fail.
    let mut output = AllocVec::new();
    let _ = output.try_extend(&MAGIC);
    let _ = output.try_push(PROTOCOL_VERSION);
    postcard::serialize_with_flavor(body, output).unwrap_or_default()
}

/// Where a packet's token lies in its plaintext datagram, after the header and
/// the `Some` tag.
const TOKEN_OFFSET: usize = HEADER_LEN + 1;

/// Replaces the token of an encoded plaintext datagram that carries one, so
/// that one encoding serves several receivers with a token each. Returns
/// whether it did (`false`: the datagram carries no token).
pub fn stamp_token(bytes: &mut [u8], token: Token) -> bool {
    match bytes.get_mut(HEADER_LEN..TOKEN_OFFSET + token.0.len()) {
        Some([1, rest @ ..]) => {
            rest.copy_from_slice(&token.0);
            true
        }
        _ => false,
    }
}

/// Decodes a datagram and checks the rules of the protocol that need no state.
/// A stream message is refused ([`Violation::WrongTransport`]).
pub fn decode(bytes: &[u8]) -> Result<Packet, DatagramError> {
    let packet = decode_limited(bytes, MAX_DATAGRAM_SIZE)?;
    if packet.message.is_stream_message() {
        return Err(Violation::WrongTransport.into());
    }
    Ok(packet)
}

/// Decodes a packet of at most `max` bytes, whatever it carries, and checks
/// the rules of the protocol that need no state.
pub(crate) fn decode_limited(bytes: &[u8], max: usize) -> Result<Packet, DatagramError> {
    if bytes.len() > max {
        return Err(DatagramError::TooLarge { len: bytes.len(), max });
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
    let packet: Packet = take_whole(&bytes[HEADER_LEN..])?;
    check_message(&packet.message)?;
    Ok(packet)
}

/// Decodes a `T` that must take all of `bytes` (a packet's body, an inflated
/// delta), with the decoder's failures as typed errors.
pub(crate) fn take_whole<'a, T: serde::Deserialize<'a>>(bytes: &'a [u8]) -> Result<T, DatagramError> {
    let (value, rest) = postcard::take_from_bytes::<T>(bytes).map_err(|error| match error {
        postcard::Error::DeserializeUnexpectedEnd => DatagramError::Truncated,
        postcard::Error::DeserializeBadUtf8 => DatagramError::InvalidUtf8,
        _ => DatagramError::Malformed,
    })?;
    if !rest.is_empty() {
        return Err(DatagramError::TrailingBytes(rest.len()));
    }
    Ok(value)
}

fn check_message(message: &Message) -> Result<(), Violation> {
    match message {
        Message::Syn { digest } => check_digest(digest),
        Message::SynAck { digest, delta } => {
            check_digest(digest)?;
            check_delta(delta)
        }
        Message::Ack { delta } => check_delta(delta),
        Message::Pull { digest } => check_digest(digest),
        // Checked once inflated (`frame::inflate`).
        Message::Records { .. } => Ok(()),
        Message::BadCluster | Message::Done | Message::Ping { .. } | Message::Pong => Ok(()),
    }
}

fn check_digest(digest: &Digest) -> Result<(), Violation> {
    let range = digest.range;
    if range.is_full() && range.start != Fingerprint(0) {
        // The whole ring is written (0, 0), in plain order: any other
        // `start == end` would order the entries from elsewhere.
        return Err(Violation::NonCanonicalRange);
    }
    for entry in digest.sender.iter().chain(&digest.entries) {
        check_counters([entry.heartbeat, entry.last_gc_version, entry.max_version])?;
    }
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
    let sender = digest.sender.map(|sender| sender.fingerprint);
    let mut previous: Option<Fingerprint> = None;
    for rumor in &digest.rumors {
        check_counters([rumor.heartbeat, rumor.last_gc_version, rumor.max_version])?;
        if range.contains(rumor.fingerprint)
            || sender == Some(rumor.fingerprint)
            || previous.is_some_and(|previous| previous >= rumor.fingerprint)
        {
            return Err(Violation::RumorOrder);
        }
        previous = Some(rumor.fingerprint);
    }
    // Ends go strictly clockwise from the start, the start itself (the whole
    // way round) only last: offsets with 0 read as 2^64.
    let start = digest.hashes.start;
    let mut previous = 0u128;
    for segment in &digest.hashes.segments {
        let offset = match segment.end.0.wrapping_sub(start.0) {
            0 => 1u128 << 64,
            offset => u128::from(offset),
        };
        if offset <= previous || previous == 1u128 << 64 {
            return Err(Violation::RangeHashOrder);
        }
        previous = offset;
    }
    Ok(())
}

/// Heartbeats and versions below [`MAX_COUNTER`]: a larger one is implausible
/// (no node bumps a counter 2^62 times), and refused so that a node refuting a
/// forged claim about itself always has room to go past it.
fn check_counters(counters: impl IntoIterator<Item = u64>) -> Result<(), Violation> {
    match counters.into_iter().all(|counter| counter < MAX_COUNTER) {
        true => Ok(()),
        false => Err(Violation::ImplausibleCounter),
    }
}

// Duplicates are found by sorting, not by a hash set: no hashing of what
// the network sent (with a keyed hash, several times the cost), and no worst
// case an attacker can choose.
pub(crate) fn check_delta(delta: &Delta) -> Result<(), Violation> {
    let mut nodes: Vec<Fingerprint> = Vec::with_capacity(delta.nodes.len());
    let mut keys: Vec<&str> = Vec::new();
    for section in &delta.nodes {
        nodes.push(match &section.node {
            NodeRef::Known(fingerprint) => *fingerprint,
            NodeRef::Full(node_id) => node_id.fingerprint(),
        });
        check_node_delta(section, &mut keys)?;
    }
    if has_duplicates(&mut nodes) {
        return Err(Violation::DuplicateNodeSection);
    }
    Ok(())
}

/// Whether `items` holds an item twice (it is left sorted).
fn has_duplicates<T: Ord>(items: &mut [T]) -> bool {
    items.sort_unstable();
    items.windows(2).any(|pair| pair[0] == pair[1])
}

/// `keys` is room for the section's keys, reused across sections.
fn check_node_delta<'a>(section: &'a NodeDelta, keys: &mut Vec<&'a str>) -> Result<(), Violation> {
    check_counters([section.heartbeat, section.from_version, section.last_gc_version, section.max_version])?;
    check_counters(section.key_values.iter().map(|record| record.version))?;
    if let NodeRef::Full(node_id) = &section.node
        && node_id.name().is_empty()
    {
        return Err(Violation::EmptyNodeName);
    }
    if section.from_version > section.max_version {
        return Err(Violation::InconsistentBounds);
    }
    if section.reset && section.from_version != 0 {
        return Err(Violation::ResetNotFromZero);
    }
    let in_section = |version: u64| version > section.from_version && version <= section.max_version;
    let mut previous = section.from_version;
    keys.clear();
    for record in &section.key_values {
        if !in_section(record.version) {
            return Err(Violation::VersionOutsideSection);
        }
        if record.version <= previous {
            return Err(Violation::VersionsNotIncreasing);
        }
        previous = record.version;
        if record.key.is_empty() {
            return Err(Violation::EmptyKey);
        }
        keys.push(record.key.as_str());
    }
    if has_duplicates(keys) {
        return Err(Violation::DuplicateKey);
    }
    Ok(())
}

#[cfg(test)]
mod tests;
