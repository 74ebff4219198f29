//! Who is in the cluster: the table of tracked nodes with its indexes by name
//! and by gossip address, and the memory of removed identities.
//!
//! [`Membership`] keeps the table and its indexes consistent: a node is added
//! and removed only through it, so a name or an address never points at a node
//! that is gone. It decides nothing about liveness; the cluster state does, and
//! records its verdicts in each [`NodeEntry`].

mod index;
mod removed;
mod search;
mod table;

use std::hash::{BuildHasher, RandomState};

use std::net::{IpAddr, SocketAddr};
use std::ops::Bound;

use serde::{Deserialize, Serialize};
use xxhash_rust::xxh3::xxh3_64_with_seed;

use crate::identity::Fingerprint;
use crate::node_state::NodeState;
use crate::time::Timestamp;
use crate::wire::DigestEntry;

use index::HashIndex;
pub(crate) use removed::RemovedNodes;
use table::NodeTable;
use table::SlotId;
pub(crate) use table::{EntryMut, Row, Rows, Summary};

/// What this node thinks of a node's liveness.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[non_exhaustive]
pub enum NodeStatus {
    /// Not declared dead (this node itself is always live until it leaves).
    Live,
    /// Enough of the nodes that watch it accused it (see
    /// [`crate::Config::observers`]),
    /// and it has not refuted them since.
    Dead,
    /// It announced that it leaves.
    Left,
}

/// One tracked node: 56 bytes, its identity 40 of them. Its flags share
/// one byte and the time its status changed is kept to 100 µs in 48 bits
/// (see [`NodeEntry::status_since`]), so that the status, the flags and the
/// time fit the 8 bytes beside the state.
#[derive(Debug)]
pub(crate) struct NodeEntry {
    pub state: NodeState,
    pub status: NodeStatus,
    /// [`NodeEntry::status_since`] in 100-µs ticks from the caller's epoch:
    /// the high 16 bits and the low 32.
    since_high: u16,
    since_low: u32,
    flags: u8,
}

/// Defines a flag of [`NodeEntry`]: its bit, a getter and a setter.
macro_rules! flags {
    ($($(#[$doc:meta])* $bit:literal => $get:ident, $set:ident;)*) => {
        impl NodeEntry {
            $(
                $(#[$doc])*
                pub(crate) fn $get(&self) -> bool {
                    self.flags & (1 << $bit) != 0
                }

                #[doc = concat!("Sets [`NodeEntry::", stringify!($get), "`].")]
                pub(crate) fn $set(&mut self, on: bool) {
                    self.flags = (self.flags & !(1 << $bit)) | (u8::from(on) << $bit);
                }
            )*
        }
    };
}

flags! {
    /// A peer confirmed, since this node's last pause ended, that the node
    /// is still part of the cluster: a peer listed it in a digest or sent a
    /// section of it, or it answered a probe. After a pause of this node
    /// (which clears this for every node), a node not confirmed since is not
    /// introduced to peers (they may have removed it meanwhile), and is
    /// declared dead if nobody confirms it (see [`crate::cluster`]). A flag,
    /// not a time: 8 bytes less a tracked node.
    0 => confirmed, set_confirmed;
    /// Live and passing the ready predicate.
    1 => ready, set_ready;
    /// A peer at the node's gossip address answered a `Syn` of this node: the
    /// address is validated (see [`crate::validation`]).
    2 => address_validated, set_address_validated;
    /// A datagram from the node's gossip address named it: this node heard
    /// from it first-hand, not only of it. A full table evicts the nodes it
    /// never heard from first.
    3 => heard_first_hand, set_heard_first_hand;
    /// This node relays it (lists it in digests, sends it in deltas, gossips
    /// to it): a datagram whose sender proved its address (an answer echoing a
    /// token of this node, or one from a validated address) named it, or its
    /// own address was validated. A flood of introductions from spoofed
    /// addresses is thus tracked here (within `max_nodes`, evicted first) but
    /// goes no further.
    4 => vouched, set_vouched;
    /// `Left` on the node's own word alone (its farewell, from an address it
    /// has not proved): not relayed, and revoked if the node talks to this
    /// node again (one that left stays silent; one that was said to leave by a
    /// spoofer does not).
    5 => provisional_left, set_provisional_left;
}

/// [`NodeEntry::status_since`]'s unit: 100 µs.
const SINCE_TICK_NANOS: u64 = 100_000;

const _: () = assert!(SINCE_MAX_TICKS < 1 << 48, "the ticks fit 48 bits");

/// The latest time [`NodeEntry::status_since`] holds, in ticks: the last
/// whole tick of a [`Timestamp`] (584 years after the caller's epoch), which
/// 48 bits hold.
const SINCE_MAX_TICKS: u64 = u64::MAX / SINCE_TICK_NANOS;

impl NodeEntry {
    fn new(state: NodeState, now: Timestamp) -> Self {
        let mut entry = NodeEntry { state, status: NodeStatus::Live, since_high: 0, since_low: 0, flags: 0 };
        entry.set_status_since(now);
        entry.set_confirmed(true);
        entry
    }

    /// When `status` last changed, to 100 µs, rounded up (a time elapsed
    /// since is never overstated: a grace or a patience measured from it
    /// ends up to 100 µs late, never early). (A node declared dead is live
    /// again once its heartbeat goes past the one known then, which `state`
    /// holds: the heartbeat only grows, so any growth since refutes the
    /// verdict.)
    pub(crate) fn status_since(&self) -> Timestamp {
        let ticks = (u64::from(self.since_high) << 32) | u64::from(self.since_low);
        Timestamp::from_nanos(ticks * SINCE_TICK_NANOS)
    }

    /// Sets [`NodeEntry::status_since`] (rounded up to 100 µs; within the
    /// last tick of [`Timestamp::MAX`], rounded down to it).
    pub(crate) fn set_status_since(&mut self, at: Timestamp) {
        let ticks = at.as_nanos().div_ceil(SINCE_TICK_NANOS).min(SINCE_MAX_TICKS);
        self.since_high = (ticks >> 32) as u16;
        self.since_low = ticks as u32;
    }

    /// The node's entry in a digest, as this node holds it.
    pub(crate) fn digest_entry(&self, fingerprint: Fingerprint) -> DigestEntry {
        DigestEntry {
            fingerprint,
            heartbeat: self.state.heartbeat(),
            last_gc_version: self.state.last_gc_version(),
            max_version: self.state.max_version(),
        }
    }
}

/// The tracked nodes (this one included, at most `max_nodes`), their indexes,
/// and the removed identities (at most `max_nodes`).
#[derive(Debug)]
pub(crate) struct Membership {
    self_fingerprint: Fingerprint,
    /// Every tracked node, in ring order.
    table: NodeTable,
    /// Name → slot of its tracked incarnation. The index holds only slots
    /// (4 bytes a node): a name is hashed and compared through the node's
    /// entry, never copied.
    by_name: HashIndex,
    /// Gossip address → slot of the tracked node there (the one tracked
    /// last, if several share it), the same way.
    by_addr: HashIndex,
    /// Keys both indexes' hashes (XXH3, seeded at random as a `HashMap`'s
    /// SipHash would be: names and addresses come from the network, and
    /// the indexes are ordered by the hashes; XXH3 is several times
    /// cheaper on a short name).
    seed: u64,
    removed: RemovedNodes,
    /// The address a datagram being handled came from, and the node there:
    /// [`Membership::at_addr`] is asked of it several times a datagram.
    /// Forgotten whenever a node is added or removed.
    sender: Option<(SocketAddr, Option<Fingerprint>)>,
}

impl Membership {
    /// A membership of this node alone.
    pub(crate) fn new(self_state: NodeState, now: Timestamp) -> Self {
        let self_fingerprint = self_state.id().fingerprint();
        let mut membership = Membership {
            self_fingerprint,
            table: NodeTable::default(),
            by_name: HashIndex::default(),
            by_addr: HashIndex::default(),
            seed: RandomState::new().hash_one("chitchat membership index"),
            removed: RemovedNodes::default(),
            sender: None,
        };
        membership.insert(self_fingerprint, self_state, now).set_vouched(true);
        membership
    }

    pub(crate) fn self_fingerprint(&self) -> Fingerprint {
        self.self_fingerprint
    }

    pub(crate) fn self_entry(&self) -> &NodeEntry {
        &self.table[&self.self_fingerprint]
    }

    pub(crate) fn self_entry_mut(&mut self) -> EntryMut<'_> {
        self.table.get_mut(&self.self_fingerprint).expect("this node is always tracked")
    }

    pub(crate) fn get(&self, fingerprint: &Fingerprint) -> Option<&NodeEntry> {
        self.table.get(fingerprint)
    }

    pub(crate) fn get_mut(&mut self, fingerprint: &Fingerprint) -> Option<EntryMut<'_>> {
        self.table.get_mut(fingerprint)
    }

    pub(crate) fn contains(&self, fingerprint: &Fingerprint) -> bool {
        self.table.contains_key(fingerprint)
    }

    /// Clears every node's [`NodeEntry::confirmed`]: this node comes out
    /// of a pause. A walk of the entries in the order they are stored, not
    /// of the rows (which the flag is not part of).
    pub(crate) fn unconfirm_all(&mut self) {
        self.table.for_each_entry(|entry| entry.set_confirmed(false));
    }

    /// How many nodes are tracked, this one included.
    pub(crate) fn len(&self) -> usize {
        self.table.len()
    }

    /// Every tracked node, in ring order.
    pub(crate) fn iter(&self) -> impl Iterator<Item = (&Fingerprint, &NodeEntry)> {
        self.table.iter()
    }

    /// Every tracked node's row, in ring order.
    pub(crate) fn rows(&self) -> Rows<'_> {
        self.table.rows()
    }

    /// Every tracked node's entry, in ring order.
    pub(crate) fn entries(&self) -> impl Iterator<Item = &NodeEntry> {
        self.table.iter().map(|(_, entry)| entry)
    }

    /// The tracked nodes within `bounds`, in ring order.
    pub(crate) fn range(&self, bounds: (Bound<Fingerprint>, Bound<Fingerprint>)) -> Rows<'_> {
        self.table.range(bounds)
    }

    /// Checks that every row's summary says what its entry holds.
    #[cfg_attr(not(feature = "sim"), allow(dead_code))]
    pub(crate) fn check_summaries(&self) -> Result<(), String> {
        self.table.check_summaries()
    }

    /// The tracked incarnation named `name`.
    pub(crate) fn by_name(&self, name: &str) -> Option<Fingerprint> {
        let table = &self.table;
        let named = |slot: SlotId| {
            table.at_slot(slot).is_some_and(|entry| entry.state.id().name_bytes() == name.as_bytes())
        };
        let hash_of = |slot| slot_name_hash(table, self.seed, slot);
        let slot = self.by_name.find(name_hash(self.seed, name.as_bytes()), hash_of, named)?;
        table.at_slot(slot).map(|entry| entry.state.id().fingerprint())
    }

    /// The tracked node whose gossip address is `addr`.
    pub(crate) fn at_addr(&self, addr: &SocketAddr) -> Option<Fingerprint> {
        match self.sender {
            Some((sender, fingerprint)) if sender == *addr => fingerprint,
            _ => self.look_up_addr(addr),
        }
    }

    /// Looks up the node at `from` once for the datagram that came from there
    /// (see [`Membership::at_addr`]).
    pub(crate) fn note_sender(&mut self, from: SocketAddr) {
        self.sender = Some((from, self.look_up_addr(&from)));
    }

    fn look_up_addr(&self, addr: &SocketAddr) -> Option<Fingerprint> {
        let table = &self.table;
        let at =
            |slot: SlotId| table.at_slot(slot).is_some_and(|entry| entry.state.id().gossip_addr() == *addr);
        let hash_of = |slot| slot_addr_hash(table, self.seed, slot);
        let slot = self.by_addr.find(addr_hash(self.seed, addr), hash_of, at)?;
        table.at_slot(slot).map(|entry| entry.state.id().fingerprint())
    }

    /// Starts tracking a node, live as of `now`; the caller checked that its
    /// fingerprint (`state`'s identity's, which it computed) is free and the
    /// table has room.
    pub(crate) fn insert(
        &mut self,
        fingerprint: Fingerprint,
        state: NodeState,
        now: Timestamp,
    ) -> EntryMut<'_> {
        // A clone copies 40 bytes or counts a reference (a long name's).
        let node_id = state.id().clone();
        debug_assert_eq!(fingerprint, node_id.fingerprint());
        debug_assert!(!self.table.contains_key(&fingerprint));
        self.sender = None;
        let (name, addr) = (node_id.name_bytes(), node_id.gossip_addr());
        let slot = self.table.insert(fingerprint, NodeEntry::new(state, now));
        let (table, seed) = (&self.table, self.seed);
        let id_of = |slot: SlotId| table.at_slot(slot).map(|entry| entry.state.id());
        self.by_name.set(
            name_hash(seed, name),
            slot,
            |slot| slot_name_hash(table, seed, slot),
            |other| other != slot && id_of(other).is_some_and(|id| id.name_bytes() == name),
        );
        self.by_addr.set(
            addr_hash(seed, &addr),
            slot,
            |slot| slot_addr_hash(table, seed, slot),
            |other| other != slot && id_of(other).is_some_and(|id| id.gossip_addr() == addr),
        );
        self.table.get_mut(&fingerprint).expect("just inserted")
    }

    /// Stops tracking a node (never this one), and remembers its identity with
    /// its last heartbeat until `remember_until`.
    pub(crate) fn remove(
        &mut self,
        fingerprint: Fingerprint,
        remember_until: Timestamp,
        bound: usize,
    ) -> Option<NodeEntry> {
        if fingerprint == self.self_fingerprint {
            return None;
        }
        // Out of the indexes first: their searches hash the keys of the
        // nodes they pass, this one's included.
        let slot = self.table.slot_of(&fingerprint)?;
        let (table, seed) = (&self.table, self.seed);
        self.by_name
            .remove(slot_name_hash(table, seed, slot), slot, |slot| slot_name_hash(table, seed, slot));
        self.by_addr
            .remove(slot_addr_hash(table, seed, slot), slot, |slot| slot_addr_hash(table, seed, slot));
        let (_, entry) = self.table.remove(&fingerprint)?;
        self.sender = None;
        let node_id = entry.state.id();
        self.removed.insert(node_id, entry.state.heartbeat(), remember_until, bound);
        Some(entry)
    }

    /// The memory of removed identities.
    pub(crate) fn removed(&self) -> &RemovedNodes {
        &self.removed
    }

    /// The memory of removed identities, to forget, postpone or expire.
    pub(crate) fn removed_mut(&mut self) -> &mut RemovedNodes {
        &mut self.removed
    }
}

/// `name`'s hash for the index by name.
fn name_hash(seed: u64, name: &[u8]) -> u64 {
    xxh3_64_with_seed(name, seed)
}

/// The hash under which the index by name holds the node in `slot`.
fn slot_name_hash(table: &NodeTable, seed: u64, slot: SlotId) -> u64 {
    table.at_slot(slot).map_or(0, |entry| name_hash(seed, entry.state.id().name_bytes()))
}

/// The hash under which the index by address holds the node in `slot`.
fn slot_addr_hash(table: &NodeTable, seed: u64, slot: SlotId) -> u64 {
    table.at_slot(slot).map_or(0, |entry| addr_hash(seed, &entry.state.id().gossip_addr()))
}

/// `addr`'s hash for the index by address: of its IP and port, which is
/// all the wire carries (equal addresses hash equally, whatever an IPv6
/// address's flow label or scope).
fn addr_hash(seed: u64, addr: &SocketAddr) -> u64 {
    let mut bytes = [0; 18];
    let port = addr.port().to_le_bytes();
    let len = match addr.ip() {
        IpAddr::V4(ip) => {
            bytes[..4].copy_from_slice(&ip.octets());
            bytes[4..6].copy_from_slice(&port);
            6
        }
        IpAddr::V6(ip) => {
            bytes[..16].copy_from_slice(&ip.octets());
            bytes[16..].copy_from_slice(&port);
            18
        }
    };
    xxh3_64_with_seed(&bytes[..len], seed)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::identity::NodeId;

    fn state(name: &str, generation: u64, port: u16) -> NodeState {
        NodeState::new(NodeId::new(name, generation, SocketAddr::from(([127, 0, 0, 1], port))))
    }

    /// Each flag is its own bit, and the status's time is kept to 100 µs,
    /// rounded up, up to the last whole tick of a timestamp.
    #[test]
    fn flags_and_the_status_time_are_packed_without_loss() {
        let mut entry = NodeEntry::new(state("a", 1, 1), Timestamp::ZERO);
        assert!(entry.confirmed(), "a new entry is confirmed");
        type Flag = (fn(&NodeEntry) -> bool, fn(&mut NodeEntry, bool));
        let flags: [Flag; 6] = [
            (NodeEntry::confirmed, NodeEntry::set_confirmed),
            (NodeEntry::ready, NodeEntry::set_ready),
            (NodeEntry::address_validated, NodeEntry::set_address_validated),
            (NodeEntry::heard_first_hand, NodeEntry::set_heard_first_hand),
            (NodeEntry::vouched, NodeEntry::set_vouched),
            (NodeEntry::provisional_left, NodeEntry::set_provisional_left),
        ];
        for pattern in 0..64u8 {
            for (bit, (_, set)) in flags.iter().enumerate() {
                set(&mut entry, pattern & (1 << bit) != 0);
            }
            for (bit, (get, _)) in flags.iter().enumerate() {
                assert_eq!(get(&entry), pattern & (1 << bit) != 0, "pattern {pattern:06b}, bit {bit}");
            }
        }
        for (nanos, kept) in [
            (0, 0),
            (1, 100_000),
            (100_000, 100_000),
            (3_000_000_001, 3_000_100_000),
            (1_764_000_000_000_000_000, 1_764_000_000_000_000_000), // 2025, from the Unix epoch
            (u64::MAX, u64::MAX / 100_000 * 100_000),
        ] {
            entry.set_status_since(Timestamp::from_nanos(nanos));
            assert_eq!(entry.status_since(), Timestamp::from_nanos(kept), "{nanos} ns");
        }
        entry.set_vouched(true);
        entry.set_status_since(Timestamp::from_nanos(5));
        assert!(entry.vouched(), "the time leaves the flags alone");
    }

    /// The node at a datagram's address, looked up once, stays right while
    /// nodes come and go at that address.
    #[test]
    fn the_sender_follows_nodes_added_and_removed() {
        let now = Timestamp::ZERO;
        let mut membership = Membership::new(state("self", 1, 1), now);
        let from = SocketAddr::from(([127, 0, 0, 1], 2));
        membership.note_sender(from);
        assert_eq!(membership.at_addr(&from), None);
        let first = state("peer", 1, 2).id().fingerprint();
        let peer = state("peer", 1, 2);
        drop(membership.insert(peer.id().fingerprint(), peer, now));
        assert_eq!(membership.at_addr(&from), Some(first));
        membership.note_sender(from);
        let second = state("peer", 2, 2).id().fingerprint();
        let peer = state("peer", 2, 2);
        drop(membership.insert(peer.id().fingerprint(), peer, now));
        assert_eq!(membership.at_addr(&from), Some(second), "the node tracked last at the address");
        membership.note_sender(from);
        membership.remove(second, now, 16);
        membership.remove(first, now, 16);
        assert_eq!(membership.at_addr(&from), None);
        let other = SocketAddr::from(([127, 0, 0, 1], 3));
        membership.note_sender(other);
        assert_eq!(
            membership.at_addr(&SocketAddr::from(([127, 0, 0, 1], 1))),
            Some(membership.self_fingerprint())
        );
    }

    /// Thousands of nodes by name and by address, IPv4 and IPv6 (the
    /// indexes grow several times, rehashing what they hold), and each one
    /// found again, removed, and not found.
    #[test]
    fn nodes_are_found_by_name_and_by_address() {
        let now = Timestamp::ZERO;
        let mut membership = Membership::new(state("self", 1, 1), now);
        let addr = |i: u16| match i % 2 {
            0 => SocketAddr::from(([10, 0, (i >> 8) as u8, i as u8], 7000 + i)),
            _ => SocketAddr::from(([0x2001, 0xdb8, 0, 0, 0, 0, 0, i], 7000 + i)),
        };
        let ids: Vec<NodeId> = (0..3_000).map(|i| NodeId::new(format!("node-{i}"), 1, addr(i))).collect();
        for id in &ids {
            drop(membership.insert(id.fingerprint(), NodeState::new(id.clone()), now));
        }
        for id in &ids {
            assert_eq!(membership.by_name(id.name()), Some(id.fingerprint()));
            assert_eq!(membership.at_addr(&id.gossip_addr()), Some(id.fingerprint()));
        }
        assert_eq!(membership.by_name("node-3000"), None);
        assert_eq!(membership.at_addr(&addr(3_001)), None);
        for id in ids.iter().step_by(3) {
            membership.remove(id.fingerprint(), now, 16);
        }
        for (i, id) in ids.iter().enumerate() {
            let expected = (i % 3 != 0).then(|| id.fingerprint());
            assert_eq!(membership.by_name(id.name()), expected);
            assert_eq!(membership.at_addr(&id.gossip_addr()), expected);
        }
    }
}
