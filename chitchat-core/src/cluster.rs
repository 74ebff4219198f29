//! What a node knows of the cluster: every tracked node's state and liveness,
//! the memory of removed nodes, and the events and counters they produce.

use std::collections::{HashMap, VecDeque};
use std::net::SocketAddr;
use std::ops::Bound;
use std::time::Duration;

use serde::{Deserialize, Serialize};

use crate::config::Config;
use crate::events::{Event, EventQueue};
use crate::failure_detector::{ArrivalWindow, DetectorSettings};
use crate::identity::{Fingerprint, NodeId};
use crate::message::{Delta, Digest, Message, NodeRef, RingRange};
use crate::metrics::Metrics;
use crate::node_state::NodeState;
use crate::node_table::NodeTable;
use crate::time::Timestamp;

/// A predicate on a live node's state that says whether it is ready.
pub type ReadyPredicate = Box<dyn Fn(&NodeState) -> bool + Send + Sync>;

/// What this node thinks of a node's liveness.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, Serialize, Deserialize)]
pub enum NodeStatus {
    /// Its heartbeat keeps growing (this node itself is always live until it leaves).
    Live,
    /// Its phi crossed the threshold.
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
    pub arrivals: ArrivalWindow,
    pub ready: bool,
}

/// Raises a node's known heartbeat; growth is an arrival for the failure
/// detector, and returns whether the node was dead (the caller revives it: it
/// beat after we gave up on it). A crashed node's last heartbeats have reached
/// every connected node long before any of them declares it dead, so growth
/// cannot come from them. Growth that may be old news (`fresh` is false: this
/// node just came out of a pause) is recorded but is no arrival and revives
/// nothing.
pub(crate) fn grow_heartbeat(
    entry: &mut NodeEntry,
    heartbeat: u64,
    now: Timestamp,
    fresh: bool,
    detector: &DetectorSettings,
) -> bool {
    if heartbeat <= entry.state.heartbeat() {
        return false;
    }
    entry.state.set_heartbeat(heartbeat);
    if !fresh {
        return false;
    }
    entry.arrivals.report_heartbeat(now, detector);
    entry.status == NodeStatus::Dead
}

/// Identities removed recently, with their heartbeat then, so that stale gossip
/// cannot bring them back: a removed identity is taken back only with a higher
/// heartbeat (it beat after we removed it: a partition healed) or when it talks
/// to us itself. Bounded by [`Config::max_nodes`] entries: when full, the oldest
/// is forgotten first. Each is forgotten after twice the dead-node grace period.
#[derive(Debug, Default)]
pub(crate) struct RemovedNodes {
    entries: HashMap<Fingerprint, (Timestamp, SocketAddr, u64)>,
    by_addr: HashMap<SocketAddr, Fingerprint>,
    order: VecDeque<(Timestamp, Fingerprint)>,
}

impl RemovedNodes {
    pub fn insert(&mut self, node_id: &NodeId, heartbeat: u64, until: Timestamp, bound: usize) {
        while self.order.len() >= bound {
            self.pop_oldest();
        }
        let fingerprint = node_id.fingerprint();
        self.entries.insert(fingerprint, (until, node_id.gossip_addr, heartbeat));
        self.by_addr.insert(node_id.gossip_addr, fingerprint);
        self.order.push_back((until, fingerprint));
    }

    fn pop_oldest(&mut self) {
        if let Some((until, fingerprint)) = self.order.pop_front()
            && self.entries.get(&fingerprint).is_some_and(|(entry_until, ..)| *entry_until == until)
        {
            self.forget(fingerprint);
        }
    }

    /// Forgets an identity (its queue entry lingers and is skipped when popped).
    pub fn forget(&mut self, fingerprint: Fingerprint) {
        if let Some((_, addr, _)) = self.entries.remove(&fingerprint)
            && self.by_addr.get(&addr) == Some(&fingerprint)
        {
            self.by_addr.remove(&addr);
        }
    }

    #[cfg(test)]
    pub fn contains(&self, fingerprint: &Fingerprint) -> bool {
        self.entries.contains_key(fingerprint)
    }

    /// Whether news of `fingerprint` with `heartbeat` may be taken: it was not
    /// removed, or it beat since.
    pub fn admits(&self, fingerprint: Fingerprint, heartbeat: u64) -> bool {
        self.entries.get(&fingerprint).is_none_or(|(_, _, removed_at)| heartbeat > *removed_at)
    }

    /// The removed identity whose gossip address is `addr`.
    pub fn fingerprint_at(&self, addr: &SocketAddr) -> Option<Fingerprint> {
        self.by_addr.get(addr).copied()
    }

    /// Makes every identity remembered for `pause` longer.
    pub fn postpone(&mut self, pause: Duration) {
        for (until, ..) in self.entries.values_mut() {
            *until += pause;
        }
        for (until, _) in &mut self.order {
            *until += pause;
        }
    }

    pub fn expire(&mut self, now: Timestamp) {
        while self.order.front().is_some_and(|(until, _)| *until <= now) {
            self.pop_oldest();
        }
    }

    pub fn len(&self) -> usize {
        self.order.len()
    }
}

/// The knowledge of one node.
pub(crate) struct ClusterState {
    pub config: Config,
    pub self_fingerprint: Fingerprint,
    /// Every tracked node, this one included, in ring order. At most
    /// `config.max_nodes`.
    pub nodes: NodeTable,
    /// Name → fingerprint of its tracked incarnation.
    pub by_name: HashMap<String, Fingerprint>,
    /// Gossip address → fingerprint of the tracked node there.
    pub by_addr: HashMap<SocketAddr, Fingerprint>,
    pub removed: RemovedNodes,
    pub events: EventQueue,
    pub metrics: Metrics,
    pub ready_predicate: Option<ReadyPredicate>,
    pub detector: DetectorSettings,
    /// Until then, what arrives may be old news: this node came out of a pause
    /// (see [`ClusterState::forgive_pause`]).
    pub doubtful_until: Timestamp,
}

impl ClusterState {
    pub fn new(config: Config, self_state: NodeState, now: Timestamp) -> Self {
        let detector = DetectorSettings {
            window: config.phi_sampling_window,
            initial_interval: config.phi_initial_interval,
            max_interval: config.phi_max_interval,
            min_mean: config.gossip_interval,
        };
        let self_id = self_state.id().clone();
        let self_fingerprint = self_id.fingerprint();
        let mut cluster = ClusterState {
            events: EventQueue::new(config.max_pending_events),
            config,
            self_fingerprint,
            nodes: NodeTable::default(),
            by_name: HashMap::new(),
            by_addr: HashMap::new(),
            removed: RemovedNodes::default(),
            metrics: Metrics::default(),
            ready_predicate: None,
            detector,
            doubtful_until: Timestamp::ZERO,
        };
        cluster.by_name.insert(self_id.name.clone(), self_fingerprint);
        cluster.by_addr.insert(self_id.gossip_addr, self_fingerprint);
        cluster.nodes.insert(
            self_fingerprint,
            NodeEntry {
                state: self_state,
                status: NodeStatus::Live,
                status_since: now,
                arrivals: ArrivalWindow::new(now),
                ready: false,
            },
        );
        cluster.events.push(Event::NodeJoined(self_id.clone()));
        cluster.events.push(Event::NodeLive(self_id));
        cluster.update_ready(self_fingerprint);
        cluster
    }

    pub fn self_entry(&self) -> &NodeEntry {
        &self.nodes[&self.self_fingerprint]
    }

    pub fn self_entry_mut(&mut self) -> &mut NodeEntry {
        self.nodes.get_mut(&self.self_fingerprint).expect("this node is always tracked")
    }

    /// Whether a node's state is no longer gossiped: dead or left for half the
    /// grace period.
    pub fn is_retired(&self, entry: &NodeEntry, now: Timestamp) -> bool {
        matches!(entry.status, NodeStatus::Dead | NodeStatus::Left)
            && now.saturating_duration_since(entry.status_since) >= self.config.dead_node_grace_period / 2
    }

    /// Starts tracking a node heard of for the first time. Returns `false` if it
    /// was refused (table full or fingerprint taken).
    /// `heartbeat` is the one the introducer reported: only growth past it makes
    /// the node live.
    pub fn add_node(
        &mut self,
        node_id: NodeId,
        fingerprint: Fingerprint,
        heartbeat: u64,
        now: Timestamp,
    ) -> bool {
        if self.nodes.contains_key(&fingerprint) {
            self.metrics.fingerprint_collisions += 1;
            return false;
        }
        if self.nodes.len() >= self.config.max_nodes {
            self.metrics.nodes_refused += 1;
            return false;
        }
        self.by_name.insert(node_id.name.clone(), fingerprint);
        self.by_addr.insert(node_id.gossip_addr, fingerprint);
        let mut state = NodeState::new(node_id.clone());
        state.set_heartbeat(heartbeat);
        self.nodes.insert(
            fingerprint,
            NodeEntry {
                state,
                status: NodeStatus::Live,
                status_since: now,
                arrivals: ArrivalWindow::new(now),
                ready: false,
            },
        );
        self.events.push(Event::NodeJoined(node_id.clone()));
        self.events.push(Event::NodeLive(node_id));
        true
    }

    /// Forgets a node, and remembers its identity for a grace period.
    pub fn remove_node(&mut self, fingerprint: Fingerprint, now: Timestamp) -> Option<NodeId> {
        if fingerprint == self.self_fingerprint {
            return None;
        }
        let entry = self.nodes.remove(&fingerprint)?;
        let node_id = entry.state.id().clone();
        if self.by_name.get(&node_id.name) == Some(&fingerprint) {
            self.by_name.remove(&node_id.name);
        }
        if self.by_addr.get(&node_id.gossip_addr) == Some(&fingerprint) {
            self.by_addr.remove(&node_id.gossip_addr);
        }
        if entry.ready {
            self.events.push(Event::ReadyChanged { node: node_id.clone(), ready: false });
        }
        let memory = self.config.dead_node_grace_period * 2;
        self.removed.insert(&node_id, entry.state.heartbeat(), now + memory, self.config.max_nodes);
        self.events.push(Event::NodeRemoved(node_id.clone()));
        Some(node_id)
    }

    /// A node's heartbeat is `heartbeat` as someone reports it: if it grew, it is
    /// an arrival for the failure detector, and a dead node comes back to life.
    pub fn report_heartbeat(&mut self, fingerprint: Fingerprint, heartbeat: u64, now: Timestamp) {
        if fingerprint == self.self_fingerprint {
            return;
        }
        let fresh = self.is_fresh(now);
        if let Some(entry) = self.nodes.get_mut(&fingerprint)
            && grow_heartbeat(entry, heartbeat, now, fresh, &self.detector)
        {
            self.revive(fingerprint, now);
        }
    }

    /// Before a message from `from` is processed: if a removed identity lives at
    /// that address and the message names it, the node talks to us itself, so
    /// it is alive: stop ignoring it.
    pub fn pardon_sender(&mut self, from: SocketAddr, message: &Message, now: Timestamp) {
        if self.is_fresh(now)
            && let Some(fingerprint) = self.removed.fingerprint_at(&from)
            && mentions(message, fingerprint)
        {
            self.removed.forget(fingerprint);
        }
    }

    /// After a message from `from` is processed: if a node we saw dead lives at
    /// that address and the message names it, it is first-hand proof of life.
    pub fn confirm_sender(&mut self, from: SocketAddr, message: &Message, now: Timestamp) {
        if !self.is_fresh(now) {
            return;
        }
        let Some(&fingerprint) = self.by_addr.get(&from) else { return };
        let Some(entry) = self.nodes.get_mut(&fingerprint) else { return };
        if entry.status == NodeStatus::Dead && mentions(message, fingerprint) {
            entry.arrivals = ArrivalWindow::new(now);
            self.revive(fingerprint, now);
        }
    }

    /// Marks a dead node live again.
    pub fn revive(&mut self, fingerprint: Fingerprint, now: Timestamp) {
        let Some(entry) = self.nodes.get_mut(&fingerprint) else { return };
        entry.status = NodeStatus::Live;
        entry.status_since = now;
        self.events.push(Event::NodeLive(entry.state.id().clone()));
        self.update_ready(fingerprint);
    }

    /// The bounds of `range` on the ring as (at most) two ranges of the node map,
    /// in ring order.
    pub fn ring_bounds(range: RingRange) -> [(Bound<Fingerprint>, Bound<Fingerprint>); 2] {
        let empty = (Bound::Included(Fingerprint(0)), Bound::Excluded(Fingerprint(0)));
        if range.is_full() {
            [(Bound::Unbounded, Bound::Unbounded), empty]
        } else if range.start < range.end {
            [(Bound::Included(range.start), Bound::Excluded(range.end)), empty]
        } else {
            [(Bound::Included(range.start), Bound::Unbounded), (Bound::Unbounded, Bound::Excluded(range.end))]
        }
    }

    /// The tracked nodes in `range`, in ring order.
    pub fn nodes_in(&self, range: RingRange) -> impl Iterator<Item = (&Fingerprint, &NodeEntry)> {
        let [first, second] = Self::ring_bounds(range);
        self.nodes
            .range(first)
            .iter()
            .chain(self.nodes.range(second))
            .map(|(fingerprint, entry)| (fingerprint, &**entry))
    }

    /// Marks a node as left (final for its incarnation).
    pub fn mark_left(&mut self, fingerprint: Fingerprint, now: Timestamp) {
        let Some(entry) = self.nodes.get_mut(&fingerprint) else { return };
        if entry.status == NodeStatus::Left {
            return;
        }
        entry.status = NodeStatus::Left;
        entry.status_since = now;
        self.events.push(Event::NodeLeft(entry.state.id().clone()));
        self.update_ready(fingerprint);
    }

    /// Re-evaluates whether a node is ready, and reports a change.
    pub fn update_ready(&mut self, fingerprint: Fingerprint) {
        let Some(entry) = self.nodes.get_mut(&fingerprint) else { return };
        let ready = entry.status == NodeStatus::Live
            && self.ready_predicate.as_ref().is_none_or(|predicate| predicate(&entry.state));
        if ready != entry.ready {
            entry.ready = ready;
            self.events.push(Event::ReadyChanged { node: entry.state.id().clone(), ready });
        }
    }

    /// Re-evaluates every node's readiness (after the predicate changed).
    pub fn update_all_ready(&mut self) {
        let fingerprints: Vec<Fingerprint> = self.nodes.keys().copied().collect();
        for fingerprint in fingerprints {
            self.update_ready(fingerprint);
        }
    }

    /// Whether a node is live by a fresh look at its phi (its status may be a
    /// round old, or older after a stall).
    /// After a pause, a node heard of only before it (or in the backlog right
    /// after it) is not vouched for: it may have died meanwhile.
    pub fn is_live_now(&self, entry: &NodeEntry, now: Timestamp) -> bool {
        entry.status == NodeStatus::Live
            && (entry.state.id().fingerprint() == self.self_fingerprint
                || (entry.arrivals.phi(now, &self.detector) <= self.config.phi_threshold
                    && entry.arrivals.last_arrival() >= self.doubtful_until))
    }

    /// Whether news handled at `now` is taken as current: it is, but during the
    /// gossip interval after a pause of this node, when datagrams that waited in
    /// its socket are handled.
    pub fn is_fresh(&self, now: Timestamp) -> bool {
        now >= self.doubtful_until
    }

    /// This node handled nothing for `pause` up to `now` (a stop of the process,
    /// a long garbage collection, a suspended machine, a clock jump). The silence
    /// of every peer during it is forgiven, so that nobody is declared dead for
    /// this node's own pause; and for one gossip interval what arrives is
    /// doubtful, because it may have waited in the socket since before the pause:
    /// heartbeats it reports are recorded but are no arrival and revive no dead
    /// node, it brings in no new node, and only nodes heard of after that
    /// interval are introduced to peers. Without this, a datagram held through a
    /// long pause could make a node dead meanwhile look alive and spread it
    /// again to peers that have forgotten it. The memory of removed identities
    /// lasts `pause` longer too: a jump of this node's clock must not cut it
    /// short while the rest of the cluster may still gossip them.
    pub fn forgive_pause(&mut self, pause: Duration, now: Timestamp) {
        self.forgive_lateness(pause, now);
        // The memory of removals outlasts stale gossip elsewhere, which did not
        // age during this node's pause (or its clock's jump).
        self.removed.postpone(pause);
        self.doubtful_until = now + self.config.gossip_interval;
        self.metrics.pauses += 1;
    }

    /// This node's gossip round ran `lateness` after it was due (its event loop
    /// was busy or starved): peers' silence during that time is forgiven, so
    /// that liveness is judged in the node's own rounds and an overloaded node
    /// does not blame its peers for its own slowness. (Their silence still
    /// counts at least one gossip interval a round.)
    pub fn forgive_lateness(&mut self, lateness: Duration, now: Timestamp) {
        for (fingerprint, entry) in self.nodes.iter_mut() {
            if *fingerprint != self.self_fingerprint {
                entry.arrivals.forgive(lateness, now);
            }
        }
    }

    /// Judges liveness, removes nodes past their grace period, and collects
    /// garbage in every node's state.
    pub fn maintain(&mut self, now: Timestamp) {
        let threshold = self.config.phi_threshold;
        let grace = self.config.dead_node_grace_period;
        let mut newly_dead = Vec::new();
        let mut expired = Vec::new();
        for (fingerprint, entry) in self.nodes.iter() {
            if *fingerprint == self.self_fingerprint {
                continue;
            }
            match entry.status {
                NodeStatus::Live if entry.arrivals.phi(now, &self.detector) > threshold => {
                    newly_dead.push(*fingerprint);
                }
                NodeStatus::Dead | NodeStatus::Left
                    if now.saturating_duration_since(entry.status_since) >= grace =>
                {
                    expired.push(*fingerprint);
                }
                _ => {}
            }
        }
        for fingerprint in newly_dead {
            if let Some(entry) = self.nodes.get_mut(&fingerprint) {
                entry.status = NodeStatus::Dead;
                entry.status_since = now;
                self.events.push(Event::NodeDead(entry.state.id().clone()));
                self.update_ready(fingerprint);
            }
        }
        for fingerprint in expired {
            self.remove_node(fingerprint, now);
        }
        self.removed.expire(now);
        let deletion_grace = self.config.deletion_grace_period;
        let mut changed = Vec::new();
        for (fingerprint, entry) in self.nodes.iter_mut() {
            let collected = entry.state.collect_garbage(now, deletion_grace);
            if collected.is_empty() {
                continue;
            }
            for key in collected {
                if key.expired {
                    self.events.push(Event::KeyExpired { node: entry.state.id().clone(), key: key.key });
                }
            }
            changed.push(*fingerprint);
        }
        for fingerprint in changed {
            self.update_ready(fingerprint);
        }
    }
}

/// Whether a message names a node in a digest entry or a delta section.
fn mentions(message: &Message, fingerprint: Fingerprint) -> bool {
    let in_digest = |digest: &Digest| {
        digest.sender.iter().chain(&digest.entries).any(|entry| entry.fingerprint == fingerprint)
    };
    let in_delta = |delta: &Delta| {
        delta.nodes.iter().any(|section| match &section.node {
            NodeRef::Known(known) => *known == fingerprint,
            NodeRef::Full(node_id) => node_id.fingerprint() == fingerprint,
        })
    };
    match message {
        Message::Syn { digest } => in_digest(digest),
        Message::SynAck { digest, delta } => in_digest(digest) || in_delta(delta),
        Message::Ack { delta } => in_delta(delta),
        Message::BadCluster => false,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn removed_nodes_are_bounded_and_expire() {
        let mut removed = RemovedNodes::default();
        let id = |n: u64| NodeId::new(format!("n{n}"), 1, SocketAddr::from(([127, 0, 0, 1], n as u16)));
        for n in 0..10 {
            removed.insert(&id(n), 10, Timestamp::from_millis(100 + n), 4);
        }
        assert_eq!(removed.len(), 4);
        assert!(!removed.contains(&id(0).fingerprint()));
        assert!(removed.contains(&id(9).fingerprint()));
        assert_eq!(removed.fingerprint_at(&id(9).gossip_addr), Some(id(9).fingerprint()));
        removed.expire(Timestamp::from_millis(108));
        assert_eq!(removed.len(), 1);
        assert!(removed.contains(&id(9).fingerprint()));
        assert!(!removed.admits(id(9).fingerprint(), 10));
        assert!(removed.admits(id(9).fingerprint(), 11));
        removed.forget(id(9).fingerprint());
        assert!(!removed.contains(&id(9).fingerprint()));
        assert_eq!(removed.fingerprint_at(&id(9).gossip_addr), None);
    }

    #[test]
    fn a_pause_postpones_the_memory_of_removals() {
        let mut removed = RemovedNodes::default();
        let id = |n: u64| NodeId::new(format!("n{n}"), 1, SocketAddr::from(([127, 0, 0, 1], n as u16)));
        removed.insert(&id(1), 10, Timestamp::from_millis(100), 4);
        removed.insert(&id(2), 10, Timestamp::from_millis(200), 4);
        removed.postpone(Duration::from_secs(60));
        removed.expire(Timestamp::from_millis(60_050));
        assert!(removed.contains(&id(1).fingerprint()), "remembered a minute longer");
        removed.expire(Timestamp::from_millis(60_100));
        assert!(!removed.contains(&id(1).fingerprint()));
        assert!(removed.contains(&id(2).fingerprint()));
        removed.expire(Timestamp::from_millis(60_200));
        assert_eq!(removed.len(), 0);
    }
}
