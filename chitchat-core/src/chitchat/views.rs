//! What a node knows, read without changing anything.

use std::net::SocketAddr;

use crate::chitchat::Chitchat;
use crate::config::Config;
use crate::identity::{Fingerprint, NodeId};
use crate::leave::Phase;
use crate::membership::NodeStatus;
use crate::metrics::Metrics;
use crate::node_state::NodeState;
use crate::snapshot::{ClusterSnapshot, NodeSnapshot};
use crate::time::Timestamp;

impl Chitchat {
    /// This node's identity.
    pub fn self_id(&self) -> &NodeId {
        self.cluster.self_entry().state.id()
    }

    /// The configuration in force.
    pub fn config(&self) -> &Config {
        self.cluster.config()
    }

    /// The value of one of this node's keys.
    pub fn get(&self, key: &str) -> Option<&str> {
        self.cluster.self_entry().state.get(key)
    }

    /// This node's own state.
    pub fn self_node_state(&self) -> &NodeState {
        &self.cluster.self_entry().state
    }

    /// The tracked nodes the application sees: those vouched for (named by a
    /// sender that proved its address, or heard at their own address). A
    /// node heard of only from senders that proved nothing is in no view and
    /// no event until then.
    fn visible(&self) -> impl Iterator<Item = &crate::membership::NodeEntry> {
        self.cluster.membership().entries().filter(|entry| entry.vouched())
    }

    fn visible_entry(&self, node_id: &NodeId) -> Option<&crate::membership::NodeEntry> {
        self.cluster.membership().get(&node_id.fingerprint()).filter(|entry| entry.vouched())
    }

    /// The state of a tracked node (one vouched for).
    pub fn node_state(&self, node_id: &NodeId) -> Option<&NodeState> {
        self.visible_entry(node_id).map(|entry| &entry.state)
    }

    /// What this node thinks of a tracked node's liveness (one vouched for).
    pub fn node_status(&self, node_id: &NodeId) -> Option<NodeStatus> {
        self.visible_entry(node_id).map(|entry| entry.status)
    }

    /// Every tracked node's state (this node included, and every node
    /// vouched for), in fingerprint order.
    pub fn node_states(&self) -> impl Iterator<Item = &NodeState> {
        self.visible().map(|entry| &entry.state)
    }

    fn nodes_with(&self, status: NodeStatus) -> impl Iterator<Item = &NodeId> {
        self.visible().filter(move |entry| entry.status == status).map(|entry| entry.state.id())
    }

    /// Live nodes, this one included (until it leaves).
    pub fn live_nodes(&self) -> impl Iterator<Item = &NodeId> {
        self.nodes_with(NodeStatus::Live)
    }

    /// Nodes seen dead and not yet removed.
    pub fn dead_nodes(&self) -> impl Iterator<Item = &NodeId> {
        self.nodes_with(NodeStatus::Dead)
    }

    /// Nodes that announced they leave, not yet removed.
    pub fn left_nodes(&self) -> impl Iterator<Item = &NodeId> {
        self.nodes_with(NodeStatus::Left)
    }

    /// Live nodes that pass the ready predicate.
    pub fn ready_nodes(&self) -> impl Iterator<Item = &NodeId> {
        self.cluster.membership().entries().filter(|entry| entry.ready()).map(|entry| entry.state.id())
    }

    /// The failure detector's phi at `now` for a node this node watches (one
    /// of its subjects, see [`crate::Config::observers`]); `None` for the
    /// others, whose liveness this node learns from their watchers.
    pub fn phi(&self, node_id: &NodeId, now: Timestamp) -> Option<f64> {
        // Probe windows are kept for tracked subjects only.
        self.cluster.phi(node_id.fingerprint(), self.clock.read(now).now)
    }

    /// How many events wait for [`crate::Chitchat::poll_event`] (at most
    /// [`crate::Config::max_pending_events`]).
    pub fn pending_events(&self) -> usize {
        self.cluster.pending_events()
    }

    /// The counters.
    pub fn metrics(&self) -> Metrics {
        let mut metrics = self.cluster.metrics().clone();
        metrics.events_dropped = self.cluster.events_dropped();
        metrics
    }

    /// What this node holds of the other nodes' records, as counted against
    /// [`crate::Config::max_remote_state_bytes`].
    pub fn remote_state_bytes(&self) -> usize {
        self.cluster.remote_bytes()
    }

    /// Whether the node has left (its farewells all polled).
    pub fn has_left(&self) -> bool {
        self.phase == Phase::Left
    }

    /// A serializable copy of everything this node knows.
    pub fn snapshot(&self) -> ClusterSnapshot {
        ClusterSnapshot {
            cluster_id: self.config().cluster_id.clone(),
            self_id: self.self_id().clone(),
            seed_addrs: self.peers.seeds().to_vec(),
            nodes: self
                .visible()
                .map(|entry| NodeSnapshot {
                    id: entry.state.id().clone(),
                    status: entry.status,
                    ready: entry.ready(),
                    heartbeat: entry.state.heartbeat(),
                    max_version: entry.state.max_version(),
                    last_gc_version: entry.state.last_gc_version(),
                    has_left: entry.state.has_left(),
                    key_values: entry
                        .state
                        .records()
                        .map(|(key, record)| (key.to_string(), record.clone()))
                        .collect(),
                })
                .collect(),
        }
    }

    // ---- internals, for the simulator and tests ---------------------------

    /// The state of a tracked node, by fingerprint.
    #[cfg_attr(not(any(feature = "sim", feature = "testing")), allow(dead_code))]
    pub(crate) fn node_state_by_fingerprint(&self, fingerprint: Fingerprint) -> Option<&NodeState> {
        self.cluster.membership().get(&fingerprint).map(|entry| &entry.state)
    }

    /// The status of a tracked node, vouched for or not.
    #[cfg_attr(not(any(feature = "sim", feature = "testing")), allow(dead_code))]
    pub(crate) fn tracked_status_of(&self, fingerprint: Fingerprint) -> Option<NodeStatus> {
        self.cluster.membership().get(&fingerprint).map(|entry| entry.status)
    }

    /// Every tracked node's state, vouched for or not (with whether it is),
    /// for the simulator's checks.
    #[cfg_attr(not(any(feature = "sim", feature = "testing")), allow(dead_code))]
    pub(crate) fn tracked_states(&self) -> impl Iterator<Item = (&NodeState, bool)> {
        self.cluster.membership().entries().map(|entry| (&entry.state, entry.vouched()))
    }

    /// How many nodes are tracked, this one included, vouched for or not
    /// (the views show only those vouched for).
    #[cfg_attr(not(any(feature = "sim", feature = "testing")), allow(dead_code))]
    pub(crate) fn tracked_nodes(&self) -> usize {
        self.cluster.membership().len()
    }

    /// The lengths of the bounded queues (datagrams, events, removed
    /// identities), for bound checks by tests and the simulator.
    #[cfg_attr(not(any(feature = "sim", feature = "testing")), allow(dead_code))]
    pub(crate) fn queue_lengths(&self) -> (usize, usize, usize) {
        (self.outbox.len(), self.cluster.pending_events(), self.cluster.membership().removed().len())
    }

    /// Checks the liveness bookkeeping (probe windows, the accusation index)
    /// against the state it is kept from, for the simulator's invariants.
    #[cfg_attr(not(feature = "sim"), allow(dead_code))]
    pub(crate) fn check_liveness(&self) -> Result<(), String> {
        self.cluster.check_liveness()
    }

    /// Whether answers to `addr` are free of the amplification limit: it is
    /// the gossip address of a live node whose address is validated.
    #[cfg_attr(not(feature = "testing"), allow(dead_code))]
    pub(crate) fn is_validated(&self, addr: &SocketAddr) -> bool {
        self.cluster.is_validated(addr)
    }

    /// Ends rumor rounds until no rumor is left, as gossip rounds would
    /// (without their sends): the node's news has run out.
    #[cfg(feature = "testing")]
    pub(crate) fn let_rumors_run_out(&mut self) {
        while !self.cluster.current_rumors().is_empty() {
            self.cluster.end_rumor_round();
        }
    }
}
