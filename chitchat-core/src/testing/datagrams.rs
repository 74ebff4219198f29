//! Datagram builders: plaintext datagrams of any message, and the node
//! sections tests and fuzzers craft most.

use crate::identity::NodeId;
use crate::wire::{self, Delta, Digest, KeyValueUpdate, Message, NodeDelta, NodeRef, Packet, ValueUpdate};

/// A plaintext datagram of `message` in cluster `cluster_id`, that asks for
/// no echo and answers none.
pub fn datagram(cluster_id: &str, message: Message) -> Vec<u8> {
    wire::encode(&Packet::new(cluster_id, message))
}

/// A plaintext datagram of `message` that answers `question` (a plaintext
/// datagram this node received): it echoes the question's token, as a peer
/// that received it would.
pub fn answering(cluster_id: &str, question: &[u8], message: Message) -> Vec<u8> {
    let echo = wire::decode(question).expect("the question decodes").token;
    wire::encode(&Packet { echo, ..Packet::new(cluster_id, message) })
}

/// The token a plaintext datagram carries, if any.
pub fn token_of(datagram: &[u8]) -> Option<wire::Token> {
    wire::decode(datagram).ok()?.token
}

/// A plaintext `Ack` of `sections`.
pub fn ack(cluster_id: &str, sections: Vec<NodeDelta>) -> Vec<u8> {
    datagram(cluster_id, Message::Ack { delta: Delta { nodes: sections, more: false } })
}

/// A plaintext `Syn` of `digest`.
pub fn syn(cluster_id: &str, digest: Digest) -> Vec<u8> {
    datagram(cluster_id, Message::Syn { digest })
}

/// A digest of the whole ring that lists nothing.
pub fn empty_digest() -> Digest {
    Digest::default()
}

/// Records `(key, value, version)` set without a time to live.
pub fn records(records: &[(&str, &str, u64)]) -> Vec<KeyValueUpdate> {
    records
        .iter()
        .map(|(key, value, version)| KeyValueUpdate {
            key: (*key).into(),
            version: *version,
            value: ValueUpdate::Set((*value).into()),
        })
        .collect()
}

/// A section introducing `id` with `records` set without a time to live, from
/// version 0 up to the highest record's version.
pub fn full(id: NodeId, heartbeat: u64, kvs: &[(&str, &str, u64)]) -> NodeDelta {
    full_with(id, heartbeat, records(kvs))
}

/// A section introducing `id` with `key_values` of any kind (set, set with a
/// time to live, deleted), from version 0 up to the highest record's version.
pub fn full_with(id: NodeId, heartbeat: u64, key_values: Vec<KeyValueUpdate>) -> NodeDelta {
    NodeDelta {
        node: NodeRef::Full(id),
        heartbeat,
        reset: false,
        from_version: 0,
        last_gc_version: 0,
        max_version: key_values.iter().map(|record| record.version).max().unwrap_or(0),
        left: false,
        key_values,
    }
}

/// A section of a node the receiver knows, from `from` to `max`, with
/// `heartbeat` 2.
pub fn known(id: &NodeId, from: u64, max: u64, kvs: &[(&str, &str, u64)]) -> NodeDelta {
    NodeDelta {
        node: NodeRef::Known(id.fingerprint()),
        from_version: from,
        max_version: max,
        ..full(id.clone(), 2, kvs)
    }
}
