//! Who a node is: its name, its generation and the address peers gossip to.

use std::borrow::Cow;
use std::fmt;
use std::hash::{Hash, Hasher};
use std::net::{Ipv4Addr, Ipv6Addr, SocketAddr, SocketAddrV4, SocketAddrV6};
use std::sync::Arc;

use serde::{Deserialize, Serialize};
use xxhash_rust::xxh3::Xxh3;

/// The identity of one incarnation of a node: its name, its generation and
/// its gossip address.
///
/// Two identities with the same name are two incarnations of the same node: the
/// one with the higher generation supersedes the other, whose state is dropped.
/// A node must start with a generation higher than any it used before (the
/// adapters default to the start time in milliseconds since the Unix epoch).
///
/// An identity is 40 bytes and allocates nothing for a name of up to
/// [`NodeId::INLINE_NAME_LEN`] bytes beside an IPv4 address, or
/// [`NodeId::INLINE_NAME_LEN_V6`] beside an IPv6 one; a longer name is
/// shared (reference-counted), so that a clone (one per event, view or set
/// that names the node) copies 40 bytes or counts a reference, and never
/// allocates. Every node tracks every other's identity: at 10,000 nodes,
/// each byte here is 100 MB over the cluster.
#[derive(Clone, PartialEq, Eq)]
pub struct NodeId {
    generation: u64,
    repr: Repr,
}

/// A name with an address, packed. The wire carries neither an IPv6 flow
/// label nor a scope id; an address with either (set locally) is held
/// whole, apart. Each identity has one representation (the first that
/// holds it, in this order of preference), so two are equal exactly when
/// their representations are.
#[derive(Clone, PartialEq, Eq)]
enum Repr {
    /// The first `len` bytes of `name` are the name.
    V4 {
        len: u8,
        ip: [u8; 4],
        port: [u8; 2],
        name: [u8; NodeId::INLINE_NAME_LEN],
    },
    /// The same beside an IPv6 address.
    V6 {
        len: u8,
        ip: [u8; 16],
        port: [u8; 2],
        name: [u8; NodeId::INLINE_NAME_LEN_V6],
    },
    V4Shared {
        ip: [u8; 4],
        port: [u8; 2],
        name: Arc<str>,
    },
    /// The address's 16 bytes and port's 2 ([`V6_PREFIX_LEN`]), then the
    /// name's bytes, in one allocation (an `Arc<str>` beside the address
    /// would not fit 40 bytes).
    V6Shared(Arc<[u8]>),
    /// An IPv6 address with a flow label or a scope id.
    Scoped(Arc<(SocketAddrV6, Box<str>)>),
}

/// The bytes of an IPv6 address and port before the name in
/// [`Repr::V6Shared`].
const V6_PREFIX_LEN: usize = 18;

/// `name` in an inline buffer, if it fits.
fn inline<const N: usize>(name: &str) -> Option<(u8, [u8; N])> {
    let mut bytes = [0; N];
    bytes.get_mut(..name.len())?.copy_from_slice(name.as_bytes());
    Some((name.len() as u8, bytes))
}

impl NodeId {
    /// The longest name held inline beside an IPv4 address.
    pub const INLINE_NAME_LEN: usize = 24;
    /// The longest name held inline beside an IPv6 address.
    pub const INLINE_NAME_LEN_V6: usize = 12;

    /// An identity from its three parts.
    pub fn new(name: impl AsRef<str>, generation: u64, gossip_addr: SocketAddr) -> Self {
        let name = name.as_ref();
        let repr = match gossip_addr {
            SocketAddr::V4(addr) => {
                let (ip, port) = (addr.ip().octets(), addr.port().to_le_bytes());
                match inline(name) {
                    Some((len, name)) => Repr::V4 { len, ip, port, name },
                    None => Repr::V4Shared { ip, port, name: Arc::from(name) },
                }
            }
            SocketAddr::V6(addr) if addr.flowinfo() == 0 && addr.scope_id() == 0 => {
                let (ip, port) = (addr.ip().octets(), addr.port().to_le_bytes());
                match inline(name) {
                    Some((len, name)) => Repr::V6 { len, ip, port, name },
                    None => Repr::V6Shared(ip.iter().chain(&port).chain(name.as_bytes()).copied().collect()),
                }
            }
            SocketAddr::V6(addr) => Repr::Scoped(Arc::new((addr, Box::from(name)))),
        };
        NodeId { generation, repr }
    }

    /// The node's name, unique in the cluster. Any UTF-8, at most
    /// [`crate::Config::max_node_name_len`] bytes.
    pub fn name(&self) -> &str {
        match &self.repr {
            // Copied whole from a `&str` (`NodeId::new`).
            Repr::V4 { .. } | Repr::V6 { .. } | Repr::V6Shared(_) => {
                std::str::from_utf8(self.name_bytes()).unwrap_or_default()
            }
            Repr::V4Shared { name, .. } => name,
            Repr::Scoped(scoped) => &scoped.1,
        }
    }

    /// The name's bytes, without the check that they are UTF-8 (they are):
    /// for comparisons, which run often.
    pub(crate) fn name_bytes(&self) -> &[u8] {
        match &self.repr {
            Repr::V4 { len, name, .. } => name.get(..usize::from(*len)).unwrap_or_default(),
            Repr::V6 { len, name, .. } => name.get(..usize::from(*len)).unwrap_or_default(),
            Repr::V4Shared { name, .. } => name.as_bytes(),
            Repr::V6Shared(packed) => packed.get(V6_PREFIX_LEN..).unwrap_or_default(),
            Repr::Scoped(scoped) => scoped.1.as_bytes(),
        }
    }

    /// Grows every time the node restarts.
    pub fn generation(&self) -> u64 {
        self.generation
    }

    /// The address peers send gossip to.
    pub fn gossip_addr(&self) -> SocketAddr {
        match &self.repr {
            Repr::V4 { ip, port, .. } | Repr::V4Shared { ip, port, .. } => {
                SocketAddrV4::new(Ipv4Addr::from(*ip), u16::from_le_bytes(*port)).into()
            }
            Repr::V6 { ip, port, .. } => {
                SocketAddrV6::new(Ipv6Addr::from(*ip), u16::from_le_bytes(*port), 0, 0).into()
            }
            Repr::V6Shared(packed) => {
                // Made with the prefix whole (`NodeId::new`).
                let (ip, rest) = packed.split_first_chunk::<16>().unwrap_or((&[0; 16], &[]));
                let port = rest.first_chunk::<2>().copied().unwrap_or_default();
                SocketAddrV6::new(Ipv6Addr::from(*ip), u16::from_le_bytes(port), 0, 0).into()
            }
            Repr::Scoped(scoped) => scoped.0.into(),
        }
    }

    /// The same node with another generation: its next incarnation.
    pub fn with_generation(&self, generation: u64) -> Self {
        NodeId { generation, repr: self.repr.clone() }
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

impl PartialOrd for NodeId {
    fn partial_cmp(&self, other: &Self) -> Option<std::cmp::Ordering> {
        Some(self.cmp(other))
    }
}

/// By name, then generation, then address.
impl Ord for NodeId {
    fn cmp(&self, other: &Self) -> std::cmp::Ordering {
        // Strings order as their bytes.
        self.name_bytes()
            .cmp(other.name_bytes())
            .then(self.generation.cmp(&other.generation))
            .then_with(|| self.gossip_addr().cmp(&other.gossip_addr()))
    }
}

impl Hash for NodeId {
    fn hash<H: Hasher>(&self, state: &mut H) {
        (self.name_bytes(), self.generation, self.gossip_addr()).hash(state);
    }
}

/// Encoded as a struct of `name` (a string), `generation` and `gossip_addr`.
impl Serialize for NodeId {
    fn serialize<S: serde::Serializer>(&self, serializer: S) -> Result<S::Ok, S::Error> {
        Fields {
            name: Cow::Borrowed(self.name()),
            generation: self.generation(),
            gossip_addr: self.gossip_addr(),
        }
        .serialize(serializer)
    }
}

impl<'de> Deserialize<'de> for NodeId {
    fn deserialize<D: serde::Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        // The name is borrowed from the input where it can be, and copied once,
        // into the identity.
        let fields = Fields::deserialize(deserializer)?;
        Ok(NodeId::new(&fields.name, fields.generation, fields.gossip_addr))
    }
}

/// An identity's encoding.
#[derive(Serialize, Deserialize)]
#[serde(rename = "NodeId")]
struct Fields<'a> {
    #[serde(borrow)]
    name: Cow<'a, str>,
    generation: u64,
    gossip_addr: SocketAddr,
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
        write!(f, "{}/{}@{}", self.name(), self.generation(), self.gossip_addr())
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
        assert_eq!(std::mem::size_of::<NodeId>(), 40);
        let v4: SocketAddr = "10.1.2.3:7000".parse().unwrap();
        let v6: SocketAddr = "[2001:db8::1]:7001".parse().unwrap();
        let scoped = SocketAddr::V6(SocketAddrV6::new("fe80::1".parse().unwrap(), 7002, 5, 3));
        let at_most = |len| "é".repeat(len / 2) + &"x".repeat(len % 2);
        let cases = [
            (at_most(NodeId::INLINE_NAME_LEN), v4, "inline"),
            (at_most(NodeId::INLINE_NAME_LEN + 1), v4, "shared"),
            (at_most(NodeId::INLINE_NAME_LEN_V6), v6, "inline"),
            (at_most(NodeId::INLINE_NAME_LEN_V6 + 1), v6, "shared"),
            (String::new(), v4, "inline"),
            ("node-7".to_string(), scoped, "scoped"),
        ];
        for (name, addr, holding) in cases {
            let id = NodeId::new(&name, 9, addr);
            let held = match id.repr {
                Repr::V4 { .. } | Repr::V6 { .. } => "inline",
                Repr::V4Shared { .. } | Repr::V6Shared(_) => "shared",
                Repr::Scoped(_) => "scoped",
            };
            assert_eq!(held, holding, "{name:?} at {addr}");
            assert_eq!((id.name(), id.generation(), id.gossip_addr()), (name.as_str(), 9, addr));
            if holding != "inline" {
                assert!(std::ptr::eq(id.name(), id.clone().name()), "a clone shares the name");
            }
            // Encoded exactly as the three fields it was made of (the wire has
            // no flow label or scope id: those come back as zero).
            let encoded = postcard::to_stdvec(&id).unwrap();
            assert_eq!(encoded, postcard::to_stdvec(&(name.as_str(), 9_u64, addr)).unwrap());
            let back: NodeId = postcard::from_bytes(&encoded).unwrap();
            if holding == "scoped" {
                assert_eq!(
                    back.gossip_addr(),
                    SocketAddr::V6(SocketAddrV6::new("fe80::1".parse().unwrap(), 7002, 0, 0))
                );
            } else {
                assert_eq!(back, id);
            }
            // A human-readable format writes the address as text, which has no
            // flow label.
            let json: NodeId = serde_json::from_str(&serde_json::to_string(&id).unwrap()).unwrap();
            assert_eq!((json.name(), json.generation()), (id.name(), id.generation()));
            assert_eq!(json == id, holding != "scoped");
        }
        // Equality, order and hashing are those of (name, generation, address),
        // whatever the holding.
        let (inline, shared) = (
            NodeId::new("x".repeat(NodeId::INLINE_NAME_LEN), 1, v4),
            NodeId::new("x".repeat(NodeId::INLINE_NAME_LEN + 1), 1, v4),
        );
        assert!(inline < shared && inline != shared);
        assert!(NodeId::new("a", 2, v4) < NodeId::new("b", 1, v4));
        assert!(NodeId::new("a", 1, v6) > NodeId::new("a", 1, v4), "IPv6 after IPv4, as SocketAddr orders");
        assert_eq!(NodeId::new("a", 1, v4).with_generation(2), NodeId::new("a", 2, v4));
        let hasher = std::hash::RandomState::new();
        let hash = |id: &NodeId| std::hash::BuildHasher::hash_one(&hasher, id);
        assert_eq!(hash(&shared), hash(&NodeId::new("x".repeat(NodeId::INLINE_NAME_LEN + 1), 1, v4)));
        assert_eq!(format!("{}", NodeId::new("node-7", 3, v4)), "node-7/3@10.1.2.3:7000");
    }

    #[test]
    fn multi_byte_names_work() {
        let node = id("ñødé-🦀", 7);
        let bytes = postcard::to_stdvec(&node).unwrap();
        let back: NodeId = postcard::from_bytes(&bytes).unwrap();
        assert_eq!(back, node);
    }
}
