//! Who a node is: its name, its generation and the address peers gossip to.

use std::borrow::Borrow;
use std::fmt;
use std::net::SocketAddr;
use std::ops::Deref;
use std::sync::Arc;

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
    pub name: NodeName,
    /// Grows every time the node restarts.
    pub generation: u64,
    /// The address peers send gossip to.
    pub gossip_addr: SocketAddr,
}

impl NodeId {
    /// An identity from its three parts.
    pub fn new(name: impl Into<NodeName>, generation: u64, gossip_addr: SocketAddr) -> Self {
        NodeId { name: name.into(), generation, gossip_addr }
    }

    /// The compact name of this identity used in digests (see [`Fingerprint`]).
    pub fn fingerprint(&self) -> Fingerprint {
        // The postcard encoding of an identity is canonical, so every node computes
        // the same fingerprint on any platform. No allocation (this runs for every
        // identity a datagram carries): encoded on the stack and hashed at once,
        // or, for a long name, streamed into the hash (the same hash).
        let mut buffer = [0; 96];
        if let Ok(encoded) = postcard::to_slice(self, &mut buffer) {
            return Fingerprint(xxhash_rust::xxh3::xxh3_64(encoded));
        }
        let hasher = HashFlavor(Xxh3::new());
        Fingerprint(postcard::serialize_with_flavor(self, hasher).unwrap_or_else(|_| Xxh3::new().digest()))
    }
}

/// A node's name: UTF-8 text, held inline up to [`NodeName::INLINE_LEN`]
/// bytes and shared beyond. A [`NodeId`] is cloned into every event, view and
/// set that names the node: cloning a short name copies 24 bytes, a long one
/// counts a reference; neither allocates. It reads as a `&str` (`Deref`),
/// compares with strings, and is encoded as a string.
#[derive(Clone)]
pub struct NodeName(Repr);

#[derive(Clone)]
enum Repr {
    /// The first `len` bytes are the name.
    Inline {
        len: u8,
        bytes: [u8; NodeName::INLINE_LEN],
    },
    Shared(Arc<str>),
}

impl NodeName {
    /// The longest name held inline, without an allocation.
    pub const INLINE_LEN: usize = 22;

    /// The name as a string slice.
    pub fn as_str(&self) -> &str {
        match &self.0 {
            // Always whole UTF-8: copied from a `&str` (`From<&str>`).
            Repr::Inline { len, bytes } => std::str::from_utf8(&bytes[..*len as usize]).unwrap_or_default(),
            Repr::Shared(name) => name,
        }
    }
}

impl PartialEq for NodeName {
    fn eq(&self, other: &Self) -> bool {
        self.as_str() == other.as_str()
    }
}

impl Eq for NodeName {}

impl PartialOrd for NodeName {
    fn partial_cmp(&self, other: &Self) -> Option<std::cmp::Ordering> {
        Some(self.cmp(other))
    }
}

impl Ord for NodeName {
    fn cmp(&self, other: &Self) -> std::cmp::Ordering {
        self.as_str().cmp(other.as_str())
    }
}

impl std::hash::Hash for NodeName {
    fn hash<H: std::hash::Hasher>(&self, state: &mut H) {
        self.as_str().hash(state);
    }
}

impl Deref for NodeName {
    type Target = str;

    fn deref(&self) -> &str {
        self.as_str()
    }
}

impl AsRef<str> for NodeName {
    fn as_ref(&self) -> &str {
        self.as_str()
    }
}

impl Borrow<str> for NodeName {
    fn borrow(&self) -> &str {
        self.as_str()
    }
}

impl From<&str> for NodeName {
    fn from(name: &str) -> Self {
        if name.len() <= NodeName::INLINE_LEN {
            let mut bytes = [0; NodeName::INLINE_LEN];
            bytes[..name.len()].copy_from_slice(name.as_bytes());
            NodeName(Repr::Inline { len: name.len() as u8, bytes })
        } else {
            NodeName(Repr::Shared(Arc::from(name)))
        }
    }
}

impl From<&String> for NodeName {
    fn from(name: &String) -> Self {
        NodeName::from(name.as_str())
    }
}

impl From<String> for NodeName {
    fn from(name: String) -> Self {
        NodeName::from(name.as_str())
    }
}

impl From<NodeName> for String {
    fn from(name: NodeName) -> Self {
        name.as_str().to_string()
    }
}

impl PartialEq<str> for NodeName {
    fn eq(&self, other: &str) -> bool {
        self.as_str() == other
    }
}

impl PartialEq<&str> for NodeName {
    fn eq(&self, other: &&str) -> bool {
        self.as_str() == *other
    }
}

impl PartialEq<String> for NodeName {
    fn eq(&self, other: &String) -> bool {
        self.as_str() == other.as_str()
    }
}

impl PartialEq<NodeName> for str {
    fn eq(&self, other: &NodeName) -> bool {
        self == other.as_str()
    }
}

impl PartialEq<NodeName> for &str {
    fn eq(&self, other: &NodeName) -> bool {
        *self == other.as_str()
    }
}

impl PartialEq<NodeName> for String {
    fn eq(&self, other: &NodeName) -> bool {
        self.as_str() == other.as_str()
    }
}

impl fmt::Debug for NodeName {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        fmt::Debug::fmt(self.as_str(), f)
    }
}

impl fmt::Display for NodeName {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

impl Serialize for NodeName {
    fn serialize<S: serde::Serializer>(&self, serializer: S) -> Result<S::Ok, S::Error> {
        serializer.serialize_str(self.as_str())
    }
}

impl<'de> Deserialize<'de> for NodeName {
    fn deserialize<D: serde::Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        struct Visitor;
        impl serde::de::Visitor<'_> for Visitor {
            type Value = NodeName;

            fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                f.write_str("a node name")
            }

            // Borrowed or not, the text is copied once, into the name.
            fn visit_str<E: serde::de::Error>(self, name: &str) -> Result<NodeName, E> {
                Ok(NodeName::from(name))
            }
        }
        deserializer.deserialize_str(Visitor)
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
        let long = "n".repeat(200);
        for node in [
            id("a", 1),
            id("ñødé-🦀", u64::MAX),
            NodeId::new("v6", 0, "[::1]:0".parse().unwrap()),
            id(&long, 3),
        ] {
            let encoded = postcard::to_stdvec(&node).unwrap();
            assert_eq!(node.fingerprint(), Fingerprint(xxhash_rust::xxh3::xxh3_64(&encoded)));
        }
    }

    #[test]
    fn names_are_inline_or_shared_and_read_as_strings() {
        let node = id("node-7", 1);
        assert!(matches!(node.name.0, Repr::Inline { .. }), "a short name is held inline");
        let long = id("indexer-7b1f3c2e-9d4a-4f6e-8a1b", 1);
        assert!(std::ptr::eq(long.name.as_str(), long.clone().name.as_str()), "a long one is shared");
        assert_eq!(long.name, "indexer-7b1f3c2e-9d4a-4f6e-8a1b");
        assert_eq!(std::mem::size_of::<NodeName>(), 24);
        // Equality, order and hashing are the text's, whatever the holding.
        let max_inline = "x".repeat(NodeName::INLINE_LEN);
        let (inline, shared) =
            (NodeName::from(max_inline.as_str()), NodeName::from(format!("{max_inline}x")));
        assert!(matches!(inline.0, Repr::Inline { .. }) && matches!(shared.0, Repr::Shared(_)));
        assert!(inline < shared);
        assert_ne!(inline, shared);
        let hasher = std::hash::RandomState::new();
        assert_eq!(
            std::hash::BuildHasher::hash_one(&hasher, &shared),
            std::hash::BuildHasher::hash_one(&hasher, format!("{max_inline}x").as_str()),
            "hashed as its text (Borrow<str>)"
        );
        assert_eq!(node.name, "node-7");
        assert_eq!("node-7".to_string(), node.name);
        assert_eq!(*"node-7", node.name);
        assert_eq!(node.name.len(), 6);
        assert_eq!(format!("{}", node.name), "node-7");
        assert_eq!(format!("{:?}", node.name), "\"node-7\"");
        // Encoded exactly as the string it holds.
        assert_eq!(postcard::to_stdvec(&node.name).unwrap(), postcard::to_stdvec("node-7").unwrap());
    }

    #[test]
    fn multi_byte_names_work() {
        let node = id("ñødé-🦀", 7);
        let bytes = postcard::to_stdvec(&node).unwrap();
        let back: NodeId = postcard::from_bytes(&bytes).unwrap();
        assert_eq!(back, node);
    }
}
