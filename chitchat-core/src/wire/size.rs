//! The size model: how many bytes postcard writes for each part of a message,
//! so that digests and deltas are cut to fit a datagram with the encoder's own
//! figures, never estimates.

use serde::Serialize;

use crate::identity::NodeId;
use crate::wire::envelope::HEADER_LEN;
use crate::wire::message::{Digest, DigestEntry, KeyValueUpdate, NodeDelta, NodeRef, ValueUpdate};

/// Bytes postcard uses for `value` as a length or unsigned integer.
pub(crate) const fn varint_len(value: u64) -> usize {
    let bits = 64 - (value | 1).leading_zeros() as usize;
    bits.div_ceil(7)
}

/// Bytes postcard uses for `value`, measured by the encoder itself.
pub(crate) fn encoded_len<T: Serialize + ?Sized>(value: &T) -> usize {
    postcard::experimental::serialized_size(value).unwrap_or(usize::MAX)
}

/// The fewest bytes a digest entry takes: the fingerprint and three one-byte
/// varints.
pub(crate) const MIN_DIGEST_ENTRY_LEN: usize = 8 + 3;

/// Bytes of one record, given its key's length, its version and its value's
/// length (`None`: deleted): the key, the version, the value's variant and
/// string. Equal to what the encoder writes (a unit test checks it), without
/// running it for each of a delta's thousands of records.
pub(crate) const fn record_len_of(key_len: usize, version: u64, value_len: Option<usize>) -> usize {
    let value = match value_len {
        Some(len) => varint_len(len as u64) + len,
        None => 0,
    };
    varint_len(key_len as u64) + key_len + varint_len(version) + 1 + value
}

/// Bytes of one digest entry: 8 for the fingerprint and three varints. Equal to
/// what the encoder writes (a unit test checks it), without running it for each
/// of thousands of entries.
pub(crate) fn digest_entry_len(entry: &DigestEntry) -> usize {
    8 + varint_len(entry.heartbeat) + varint_len(entry.last_gc_version) + varint_len(entry.max_version)
}

/// Bytes of a datagram before its message's payload: header, token and echo
/// (`tokens` of them present), cluster id and the message's variant index.
pub(crate) fn packet_overhead(cluster_id: &str, tokens: usize) -> usize {
    packet_overhead_for_len(cluster_id.len(), tokens)
}

/// Bytes of a digest with no entry and nothing unknown.
pub(crate) fn empty_digest_len() -> usize {
    encoded_len(&Digest::default())
}

/// The room a SynAck guarantees to its delta in a datagram of
/// `max_datagram_size` bytes (less `seal_overhead` when sealed) whose cluster id
/// is at most `max_cluster_id_len` bytes, whatever the digest.
pub(crate) fn guaranteed_delta_room(
    max_datagram_size: usize,
    seal_overhead: usize,
    max_cluster_id_len: usize,
) -> usize {
    let payload = max_datagram_size
        .saturating_sub(seal_overhead)
        .saturating_sub(packet_overhead_for_len(max_cluster_id_len, 2) + empty_digest_len() + 4);
    // The delta gets at least half of the payload; the 4 bytes cover the delta's
    // section count and its `more` flag.
    payload / 2
}

fn packet_overhead_for_len(cluster_id_len: usize, tokens: usize) -> usize {
    // Each of token and echo: an `Option` tag, and 8 bytes when present.
    HEADER_LEN + 2 + 8 * tokens + varint_len(cluster_id_len as u64) + cluster_id_len + 1
}

/// The largest possible node section holding one key: a full identity with a
/// name of `max_node_name_len` bytes, an IPv6 address, the largest numbers, and
/// a key and value of `max_key_len` and `max_value_len` bytes.
pub(crate) fn worst_case_key_section_len(
    max_node_name_len: usize,
    max_key_len: usize,
    max_value_len: usize,
) -> usize {
    let node = NodeId::new(
        "x".repeat(max_node_name_len),
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
        key_values: vec![KeyValueUpdate {
            key: "k".repeat(max_key_len).into(),
            version: u64::MAX,
            value: ValueUpdate::SetWithTtl("v".repeat(max_value_len).into()),
        }],
    };
    encoded_len(&section)
}
