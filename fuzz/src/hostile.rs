//! `Arbitrary`-driven builders of syntactically valid, semantically hostile
//! messages. The core's message types cannot derive `Arbitrary` (the fuzz crate
//! does not touch the core), so these mirror them and build the real ones,
//! biased towards what reaches past the decoder: fingerprints and identities the
//! receiver knows, versions at the edges, multi-byte and oversized strings,
//! unusual addresses, and optional repairs that make a section or digest obey
//! the decoder's ordering rules.

use std::net::{Ipv4Addr, Ipv6Addr, SocketAddr};

use arbitrary::Arbitrary;
use chitchat_core::wire::{
    Delta, Digest, DigestEntry, KeyValueUpdate, Message, NodeDelta, NodeRef, Packet, RangeHash, RangeHashes,
    RingRange, Segment, Token, ValueUpdate,
};
use chitchat_core::{Fingerprint, NodeId};

/// What the builders may refer to: the receiver and the nodes it knows.
pub struct Context {
    /// The receiver's cluster id.
    pub cluster_id: String,
    /// The receiver.
    pub self_id: NodeId,
    /// Nodes the receiver knows (or once knew).
    pub known: Vec<NodeId>,
    /// Tokens the receiver sent lately (in a `Syn` or a `SynAck`), which a
    /// packet may echo as a peer that received them would.
    pub tokens: Vec<Token>,
}

impl Context {
    fn known(&self, index: u8) -> &NodeId {
        if self.known.is_empty() { &self.self_id } else { &self.known[index as usize % self.known.len()] }
    }
}

/// A `u64` biased towards the edges.
#[derive(Arbitrary, Debug, Clone, Copy)]
pub enum ArbU64 {
    /// 0 to 255.
    Small(u8),
    /// `u64::MAX` minus 0 to 255.
    NearMax(u8),
    /// `2^k`, `2^k - 1` (varint boundaries).
    Power(u8, bool),
    /// Anything.
    Raw(u64),
}

impl ArbU64 {
    /// The value.
    pub fn get(self) -> u64 {
        match self {
            ArbU64::Small(n) => u64::from(n),
            ArbU64::NearMax(n) => u64::MAX - u64::from(n),
            ArbU64::Power(k, minus_one) => (1u64 << (k % 64)).wrapping_sub(u64::from(minus_one)),
            ArbU64::Raw(n) => n,
        }
    }
}

/// A string: a hostile pick or anything.
#[derive(Arbitrary, Debug, Clone)]
pub enum ArbStr {
    /// One of a few known-awkward strings.
    Pick(u8),
    /// A key the receiver's peers hold (`key-0` ...).
    Key(u8),
    /// Anything.
    Raw(String),
    /// A character repeated (to pass a length limit by one, or by far).
    Repeat(char, u16),
}

const PICKS: &[&str] = &[
    "",
    "k",
    "own",
    "é",
    "é-1",
    "🦀",
    "🦀 starts with a crab",
    "ключ",
    "ñødé-🦀",
    "\0",
    "a\u{FFFD}b",
    "0123456789abcdef",  // exactly 16 bytes: the fuzz config's max key length
    "0123456789abcdefg", // one past it
    "ééééééééé",         // 18 bytes, 9 characters
];

impl ArbStr {
    /// The string.
    pub fn get(&self) -> String {
        match self {
            ArbStr::Pick(i) => PICKS[*i as usize % PICKS.len()].to_string(),
            ArbStr::Key(i) => format!("key-{}", i % 4),
            ArbStr::Raw(s) => s.clone(),
            ArbStr::Repeat(c, n) => std::iter::repeat_n(*c, usize::from(*n % 2_048)).collect(),
        }
    }
}

/// A fingerprint: mostly one the receiver knows.
#[derive(Arbitrary, Debug, Clone, Copy)]
pub enum ArbFingerprint {
    /// A known node's.
    Known(u8),
    /// A known node's, plus or minus a little (ring neighbours).
    Near(u8, i8),
    /// The receiver's own.
    Receiver,
    /// Anything.
    Raw(u64),
}

impl ArbFingerprint {
    fn get(self, cx: &Context) -> Fingerprint {
        match self {
            ArbFingerprint::Known(i) => cx.known(i).fingerprint(),
            ArbFingerprint::Near(i, d) => {
                Fingerprint::from_u64(cx.known(i).fingerprint().as_u64().wrapping_add_signed(i64::from(d)))
            }
            ArbFingerprint::Receiver => cx.self_id.fingerprint(),
            ArbFingerprint::Raw(n) => Fingerprint::from_u64(n),
        }
    }
}

/// An address: unusual ones included.
#[derive(Arbitrary, Debug, Clone, Copy)]
pub enum ArbAddr {
    /// A known node's.
    Known(u8),
    /// The receiver's own.
    Receiver,
    /// Any IPv4 address and port.
    V4([u8; 4], u16),
    /// Any IPv6 address and port.
    V6([u16; 8], u16),
    /// `0.0.0.0:0` or `[::]:0`.
    Unspecified(bool),
    /// `[::1]` with any port.
    Loopback6(u16),
}

impl ArbAddr {
    fn get(self, cx: &Context) -> SocketAddr {
        match self {
            ArbAddr::Known(i) => cx.known(i).gossip_addr(),
            ArbAddr::Receiver => cx.self_id.gossip_addr(),
            ArbAddr::V4(ip, port) => SocketAddr::new(Ipv4Addr::from(ip).into(), port),
            ArbAddr::V6(ip, port) => SocketAddr::new(Ipv6Addr::from(ip).into(), port),
            ArbAddr::Unspecified(v6) if v6 => SocketAddr::new(Ipv6Addr::UNSPECIFIED.into(), 0),
            ArbAddr::Unspecified(_) => SocketAddr::new(Ipv4Addr::UNSPECIFIED.into(), 0),
            ArbAddr::Loopback6(port) => SocketAddr::new(Ipv6Addr::LOCALHOST.into(), port),
        }
    }
}

/// An identity: known ones, their other incarnations, the receiver's, or new.
#[derive(Arbitrary, Debug, Clone)]
pub enum ArbNodeId {
    /// A known node.
    Known(u8),
    /// A known node's name with another generation (older or newer).
    Incarnation(u8, ArbU64),
    /// A known node's name and generation at another address.
    Moved(u8, ArbAddr),
    /// The receiver itself.
    Receiver,
    /// The receiver's name, another generation.
    ReceiverIncarnation(ArbU64),
    /// Someone new.
    Fresh {
        /// Its name.
        name: ArbStr,
        /// Its generation.
        generation: ArbU64,
        /// Its address.
        addr: ArbAddr,
    },
}

impl ArbNodeId {
    /// The identity.
    pub fn get(&self, cx: &Context) -> NodeId {
        match self {
            ArbNodeId::Known(i) => cx.known(*i).clone(),
            ArbNodeId::Incarnation(i, generation) => cx.known(*i).with_generation(generation.get()),
            ArbNodeId::Moved(i, addr) => {
                let known = cx.known(*i);
                NodeId::new(known.name(), known.generation(), addr.get(cx))
            }
            ArbNodeId::Receiver => cx.self_id.clone(),
            ArbNodeId::ReceiverIncarnation(generation) => cx.self_id.with_generation(generation.get()),
            ArbNodeId::Fresh { name, generation, addr } => {
                NodeId::new(name.get(), generation.get(), addr.get(cx))
            }
        }
    }
}

/// A digest entry.
#[derive(Arbitrary, Debug, Clone)]
pub struct ArbEntry {
    fingerprint: ArbFingerprint,
    heartbeat: ArbU64,
    last_gc_version: ArbU64,
    max_version: ArbU64,
}

impl ArbEntry {
    fn get(&self, cx: &Context) -> DigestEntry {
        DigestEntry {
            fingerprint: self.fingerprint.get(cx),
            heartbeat: self.heartbeat.get(),
            last_gc_version: self.last_gc_version.get(),
            max_version: self.max_version.get(),
        }
    }
}

/// Hashed ranges: a start, then ends and hashes.
pub type ArbHashes = (ArbFingerprint, Vec<(ArbFingerprint, Option<u64>)>);

/// A digest; `repair` puts its entries in ring order inside the range.
#[derive(Arbitrary, Debug, Clone)]
pub struct ArbDigest {
    range: Option<(ArbFingerprint, ArbFingerprint)>,
    entries: Vec<ArbEntry>,
    /// Also name every known node (a full digest).
    everyone: Option<ArbEntry>,
    unknown: Vec<ArbFingerprint>,
    sender: Option<ArbEntry>,
    rumors: Vec<ArbEntry>,
    /// Hashed ranges: a start, then ends and hashes (`None`: 0, the hash of
    /// a range that holds nothing).
    hashes: Option<ArbHashes>,
    repair: bool,
}

impl ArbDigest {
    fn get(&self, cx: &Context) -> Digest {
        let range = match self.range {
            None => RingRange::FULL,
            Some((start, end)) => RingRange { start: start.get(cx), end: end.get(cx) },
        };
        let mut entries: Vec<DigestEntry> = self.entries.iter().map(|entry| entry.get(cx)).collect();
        if let Some(template) = &self.everyone {
            let template = template.get(cx);
            for node in std::iter::once(&cx.self_id).chain(&cx.known) {
                entries.push(DigestEntry { fingerprint: node.fingerprint(), ..template });
            }
        }
        let mut sender = self.sender.as_ref().map(|entry| entry.get(cx));
        let mut rumors: Vec<DigestEntry> = self.rumors.iter().map(|entry| entry.get(cx)).collect();
        let mut hashes = RangeHashes::default();
        if let Some((start, segments)) = &self.hashes {
            hashes.start = start.get(cx);
            hashes.segments = segments
                .iter()
                .map(|(end, hash)| Segment { end: end.get(cx), hash: RangeHash(hash.unwrap_or(0)) })
                .collect();
        }
        if self.repair {
            entries.retain(|entry| range.contains(entry.fingerprint));
            entries.sort_by_key(|entry| range.offset(entry.fingerprint));
            entries.dedup_by_key(|entry| entry.fingerprint);
            sender = sender.filter(|sender| !range.contains(sender.fingerprint));
            let sender = sender.map(|sender| sender.fingerprint);
            rumors.retain(|rumor| !range.contains(rumor.fingerprint) && Some(rumor.fingerprint) != sender);
            rumors.sort_by_key(|rumor| rumor.fingerprint);
            rumors.dedup_by_key(|rumor| rumor.fingerprint);
            // Ends clockwise from the start, the start itself only last.
            let start = hashes.start;
            let offset = |end: Fingerprint| match end.as_u64().wrapping_sub(start.as_u64()) {
                0 => 1u128 << 64,
                offset => u128::from(offset),
            };
            hashes.segments.sort_by_key(|segment| offset(segment.end));
            hashes.segments.dedup_by_key(|segment| offset(segment.end));
        }
        Digest {
            range,
            entries,
            unknown: self.unknown.iter().map(|f| f.get(cx)).collect(),
            sender,
            rumors,
            hashes,
        }
    }
}

/// A record.
#[derive(Arbitrary, Debug, Clone)]
pub struct ArbRecord {
    key: ArbStr,
    version: ArbU64,
    value: ArbValue,
}

/// A record's value.
#[derive(Arbitrary, Debug, Clone)]
pub enum ArbValue {
    /// Set.
    Set(ArbStr),
    /// Set with a time to live.
    SetWithTtl(ArbStr),
    /// A tombstone.
    Deleted,
}

/// How a section names its node.
#[derive(Arbitrary, Debug, Clone)]
pub enum ArbNodeRef {
    /// By fingerprint.
    Known(ArbFingerprint),
    /// In full.
    Full(ArbNodeId),
}

/// A node section; `repair` makes it obey the decoder's rules (versions
/// increasing inside `(from_version, max_version]`, keys unique, a reset from 0).
#[derive(Arbitrary, Debug, Clone)]
pub struct ArbSection {
    node: ArbNodeRef,
    heartbeat: ArbU64,
    reset: bool,
    from_version: ArbU64,
    last_gc_version: ArbU64,
    max_version: ArbU64,
    left: bool,
    records: Vec<ArbRecord>,
    repair: bool,
}

impl ArbSection {
    fn get(&self, cx: &Context) -> NodeDelta {
        let node = match &self.node {
            ArbNodeRef::Known(fingerprint) => NodeRef::Known(fingerprint.get(cx)),
            ArbNodeRef::Full(id) => NodeRef::Full(id.get(cx)),
        };
        let mut key_values: Vec<KeyValueUpdate> = self
            .records
            .iter()
            .map(|record| KeyValueUpdate {
                key: record.key.get().into(),
                version: record.version.get(),
                value: match &record.value {
                    ArbValue::Set(value) => ValueUpdate::Set(value.get().into()),
                    ArbValue::SetWithTtl(value) => ValueUpdate::SetWithTtl(value.get().into()),
                    ArbValue::Deleted => ValueUpdate::Deleted,
                },
            })
            .collect();
        let mut section = NodeDelta {
            node,
            heartbeat: self.heartbeat.get(),
            reset: self.reset,
            from_version: self.from_version.get(),
            last_gc_version: self.last_gc_version.get(),
            max_version: self.max_version.get(),
            left: self.left,
            key_values: Vec::new(),
        };
        if self.repair {
            if section.reset {
                section.from_version = 0;
            }
            key_values.retain(|record| record.version > 0);
            key_values.sort_by_key(|record| record.version);
            key_values.dedup_by_key(|record| record.version);
            let mut keys = std::collections::HashSet::new();
            key_values.retain(|record| keys.insert(record.key.clone()));
            let lowest = key_values.first().map_or(u64::MAX, |record| record.version);
            section.from_version = section.from_version.min(lowest - 1);
            let highest = key_values.last().map_or(0, |record| record.version);
            section.max_version = section.max_version.max(highest).max(section.from_version);
        }
        section.key_values = key_values;
        section
    }
}

/// A delta; `dedup` keeps one section per node.
#[derive(Arbitrary, Debug, Clone)]
pub struct ArbDelta {
    sections: Vec<ArbSection>,
    dedup: bool,
}

impl ArbDelta {
    fn get(&self, cx: &Context) -> Delta {
        let mut nodes: Vec<NodeDelta> = self.sections.iter().map(|section| section.get(cx)).collect();
        if self.dedup {
            let mut seen = std::collections::HashSet::new();
            nodes.retain(|section| {
                seen.insert(match &section.node {
                    NodeRef::Known(fingerprint) => *fingerprint,
                    NodeRef::Full(id) => id.fingerprint(),
                })
            });
        }
        Delta { nodes, more: false }
    }
}

/// A message.
#[derive(Arbitrary, Debug, Clone)]
pub enum ArbMessage {
    /// A Syn.
    Syn(ArbDigest),
    /// A SynAck.
    SynAck(ArbDigest, ArbDelta),
    /// An Ack (or a farewell).
    Ack(ArbDelta),
    /// A BadCluster.
    BadCluster,
    /// A Ping for a node.
    Ping(ArbFingerprint),
    /// A Pong.
    Pong,
}

/// A token a packet carries or echoes.
#[derive(Arbitrary, Debug, Clone, Copy)]
pub enum ArbToken {
    /// None.
    None,
    /// One the receiver sent lately (if any).
    Sent(u8),
    /// Any 8 bytes.
    Raw([u8; 8]),
}

impl ArbToken {
    fn get(self, cx: &Context) -> Option<Token> {
        match self {
            ArbToken::None => None,
            ArbToken::Sent(index) if !cx.tokens.is_empty() => {
                Some(cx.tokens[usize::from(index) % cx.tokens.len()])
            }
            ArbToken::Sent(_) => None,
            ArbToken::Raw(bytes) => Some(Token(bytes)),
        }
    }
}

/// A packet: mostly of the receiver's cluster.
#[derive(Arbitrary, Debug, Clone)]
pub struct ArbPacket {
    token: ArbToken,
    echo: ArbToken,
    other_cluster: Option<ArbStr>,
    message: ArbMessage,
}

impl ArbPacket {
    /// The packet.
    pub fn get(&self, cx: &Context) -> Packet {
        let cluster_id = self.other_cluster.as_ref().map_or_else(|| cx.cluster_id.clone(), ArbStr::get);
        let message = match &self.message {
            ArbMessage::Syn(digest) => Message::Syn { digest: digest.get(cx) },
            ArbMessage::SynAck(digest, delta) => {
                Message::SynAck { digest: digest.get(cx), delta: delta.get(cx) }
            }
            ArbMessage::Ack(delta) => Message::Ack { delta: delta.get(cx) },
            ArbMessage::BadCluster => Message::BadCluster,
            ArbMessage::Ping(target) => Message::Ping { target: target.get(cx) },
            ArbMessage::Pong => Message::Pong,
        };
        Packet { token: self.token.get(cx), echo: self.echo.get(cx), cluster_id, message }
    }
}

/// Checks the encoder and decoder agree on a packet built by hand: its encoding
/// decodes to it, or is refused for a protocol rule or its size, never as
/// undecodable (the encoder's output always parses).
pub fn check_round_trip(packet: &Packet, bytes: &[u8]) {
    use chitchat_core::{DatagramError, wire};
    match wire::decode(bytes) {
        Ok(decoded) => assert_eq!(&decoded, packet, "a packet does not survive encoding"),
        Err(DatagramError::Invalid(_)) => {}
        Err(DatagramError::TooLarge { .. }) => {
            assert!(bytes.len() > chitchat_core::Config::MAX_DATAGRAM_SIZE)
        }
        Err(error) => panic!("the decoder refuses the encoder's output: {error}"),
    }
}
