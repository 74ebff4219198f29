//! Who is in the cluster: the table of tracked nodes with its indexes by name
//! and by gossip address, and the memory of removed identities.
//!
//! [`Membership`] keeps the table and its indexes consistent: a node is added
//! and removed only through it, so a name or an address never points at a node
//! that is gone. It decides nothing about liveness; the cluster state does, and
//! records its verdicts in each [`NodeEntry`].

mod removed;
mod table;

use std::collections::HashMap;
use std::net::SocketAddr;
use std::ops::Bound;

use serde::{Deserialize, Serialize};

use crate::failure_detector::ProbeWindow;
use crate::identity::Fingerprint;
use crate::node_state::NodeState;
use crate::time::Timestamp;

pub(crate) use removed::RemovedNodes;
use table::NodeTable;

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

/// One tracked node.
#[derive(Debug)]
pub(crate) struct NodeEntry {
    pub state: NodeState,
    pub status: NodeStatus,
    /// When `status` last changed.
    pub status_since: Timestamp,
    /// Its probes, while this node watches it (it is one of this node's
    /// subjects): `None` for every other node.
    pub probe: Option<Box<ProbeWindow>>,
    /// The node's heartbeat when it was declared dead: it is live again once
    /// its heartbeat goes past it (it refuted the verdict).
    pub dead_heartbeat: u64,
    /// When this node last had news that the node is still part of the
    /// cluster: a peer listed it in a digest or sent a section of it, or it
    /// answered a probe. After a pause of this node, a node not confirmed
    /// since is not introduced to peers (they may have removed it meanwhile),
    /// and is declared dead if nobody confirms it (see
    /// [`crate::cluster`]).
    pub confirmed_at: Timestamp,
    pub ready: bool,
    /// A peer at the node's gossip address answered a `Syn` of this node: the
    /// address is validated (see [`crate::validation`]).
    pub address_validated: bool,
    /// A datagram from the node's gossip address named it: this node heard
    /// from it first-hand, not only of it. A full table evicts the nodes it
    /// never heard from first.
    pub heard_first_hand: bool,
    /// This node relays it (lists it in digests, sends it in deltas, gossips
    /// to it): a datagram whose sender proved its address (an answer echoing a
    /// token of this node, or one from a validated address) named it, or its
    /// own address was validated. A flood of introductions from spoofed
    /// addresses is thus tracked here (within `max_nodes`, evicted first) but
    /// goes no further.
    pub vouched: bool,
    /// `Left` on the node's own word alone (its farewell, from an address it
    /// has not proved): not relayed, and revoked if the node talks to this
    /// node again (one that left stays silent; one that was said to leave by a
    /// spoofer does not).
    pub provisional_left: bool,
}

impl NodeEntry {
    fn new(state: NodeState, now: Timestamp) -> Self {
        NodeEntry {
            state,
            status: NodeStatus::Live,
            status_since: now,
            probe: None,
            dead_heartbeat: 0,
            confirmed_at: now,
            ready: false,
            address_validated: false,
            heard_first_hand: false,
            vouched: false,
            provisional_left: false,
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
    /// Name → fingerprint of its tracked incarnation.
    by_name: HashMap<String, Fingerprint>,
    /// Gossip address → fingerprint of the tracked node there.
    by_addr: HashMap<SocketAddr, Fingerprint>,
    removed: RemovedNodes,
}

impl Membership {
    /// A membership of this node alone.
    pub(crate) fn new(self_state: NodeState, now: Timestamp) -> Self {
        let self_fingerprint = self_state.id().fingerprint();
        let mut membership = Membership {
            self_fingerprint,
            table: NodeTable::default(),
            by_name: HashMap::new(),
            by_addr: HashMap::new(),
            removed: RemovedNodes::default(),
        };
        membership.insert(self_state, now).vouched = true;
        membership
    }

    pub(crate) fn self_fingerprint(&self) -> Fingerprint {
        self.self_fingerprint
    }

    pub(crate) fn self_entry(&self) -> &NodeEntry {
        &self.table[&self.self_fingerprint]
    }

    pub(crate) fn self_entry_mut(&mut self) -> &mut NodeEntry {
        self.table.get_mut(&self.self_fingerprint).expect("this node is always tracked")
    }

    pub(crate) fn get(&self, fingerprint: &Fingerprint) -> Option<&NodeEntry> {
        self.table.get(fingerprint)
    }

    pub(crate) fn get_mut(&mut self, fingerprint: &Fingerprint) -> Option<&mut NodeEntry> {
        self.table.get_mut(fingerprint)
    }

    pub(crate) fn contains(&self, fingerprint: &Fingerprint) -> bool {
        self.table.contains_key(fingerprint)
    }

    /// How many nodes are tracked, this one included.
    pub(crate) fn len(&self) -> usize {
        self.table.len()
    }

    /// Every tracked node, in ring order.
    pub(crate) fn iter(&self) -> impl Iterator<Item = (&Fingerprint, &NodeEntry)> {
        self.table.iter()
    }

    /// Every tracked node's entry, in ring order.
    pub(crate) fn entries(&self) -> impl Iterator<Item = &NodeEntry> {
        self.table.values()
    }

    /// The tracked nodes within `bounds`, in ring order.
    pub(crate) fn range(
        &self,
        bounds: (Bound<Fingerprint>, Bound<Fingerprint>),
    ) -> &[(Fingerprint, Box<NodeEntry>)] {
        self.table.range(bounds)
    }

    /// The tracked nodes within `bounds`, in ring order, mutably.
    pub(crate) fn range_mut(
        &mut self,
        bounds: (Bound<Fingerprint>, Bound<Fingerprint>),
    ) -> &mut [(Fingerprint, Box<NodeEntry>)] {
        self.table.range_mut(bounds)
    }

    /// The tracked incarnation named `name`.
    pub(crate) fn by_name(&self, name: &str) -> Option<Fingerprint> {
        self.by_name.get(name).copied()
    }

    /// The tracked node whose gossip address is `addr`.
    pub(crate) fn at_addr(&self, addr: &SocketAddr) -> Option<Fingerprint> {
        self.by_addr.get(addr).copied()
    }

    /// Starts tracking a node, live as of `now`; the caller checked that its
    /// fingerprint is free and the table has room.
    pub(crate) fn insert(&mut self, state: NodeState, now: Timestamp) -> &mut NodeEntry {
        let node_id = state.id();
        let fingerprint = node_id.fingerprint();
        debug_assert!(!self.table.contains_key(&fingerprint));
        self.by_name.insert(node_id.name.clone(), fingerprint);
        self.by_addr.insert(node_id.gossip_addr, fingerprint);
        self.table.insert(fingerprint, NodeEntry::new(state, now));
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
        let entry = self.table.remove(&fingerprint)?;
        let node_id = entry.state.id();
        if self.by_name.get(&node_id.name) == Some(&fingerprint) {
            self.by_name.remove(&node_id.name);
        }
        if self.by_addr.get(&node_id.gossip_addr) == Some(&fingerprint) {
            self.by_addr.remove(&node_id.gossip_addr);
        }
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
