//! What a node knows of the cluster: every tracked node's state and liveness,
//! and the events and counters its changes produce.
//!
//! [`ClusterState`] owns the [`Membership`], the event queue and the counters,
//! and is the only way to change them, so that every change of a node is
//! reported. Its parts: reconciliation ([`digest`] and [`delta`]), liveness
//! ([`liveness`] and [`verdicts`]), and here the lifecycle of a node (added,
//! left, removed, ready).

mod delta;
mod digest;
mod liveness;
mod refutation;
mod rumors;
mod verdicts;

pub(crate) use digest::SEGMENT_NODES;

use std::net::SocketAddr;
use std::ops::Bound;

use crate::config::Config;
use crate::events::{Event, EventQueue};
use crate::failure_detector::ProbeWindow;
use crate::identity::{Fingerprint, NodeId};
use crate::membership::{Membership, NodeEntry, NodeStatus, Row, Rows};
use crate::metrics::Metrics;
use crate::node_state::NodeState;
use crate::peers::LivePeers;
use crate::time::Timestamp;
use crate::wire::RingRange;

/// Vouches for a node not vouched for yet (a proven sender named it, or its
/// own address answered): what unproven senders said of it is dropped (its
/// state starts afresh, heartbeat kept) and returned, and the application,
/// which heard nothing of the node until now, hears that it joined and its
/// status. A node heard of only from senders that proved nothing (a blind
/// spoofer can name anything) stays out of the views and the events; if
/// nobody vouches for it, it is dropped unseen. The caller accounts for the
/// dropped state's bytes and accusations.
fn vouch_for(entry: &mut NodeEntry, events: &mut EventQueue) -> NodeState {
    debug_assert!(!entry.vouched());
    entry.set_vouched(true);
    let heartbeat = entry.state.heartbeat();
    let fresh = NodeState::new(entry.state.id().clone());
    let dropped = std::mem::replace(&mut entry.state, fresh);
    entry.state.set_heartbeat(heartbeat);
    let node = entry.state.id().clone();
    events.push(Event::NodeJoined(node.clone()));
    events.push(match entry.status {
        NodeStatus::Live => Event::NodeLive(node),
        NodeStatus::Dead => Event::NodeDead(node),
        NodeStatus::Left => Event::NodeLeft(node),
    });
    dropped
}

/// A predicate on a live node's state that says whether it is ready.
pub type ReadyPredicate = Box<dyn Fn(&NodeState) -> bool + Send + Sync>;

/// The knowledge of one node.
pub(crate) struct ClusterState {
    config: Config,
    /// Every tracked node, this one included (at most `config.max_nodes`), and
    /// the removed identities.
    membership: Membership,
    /// At most `config.max_pending_events`.
    events: EventQueue,
    metrics: Metrics,
    ready_predicate: Option<ReadyPredicate>,
    /// The nodes this node watches (at most `config.observers`, chosen once
    /// a round), each with its probe window: kept here, not in every tracked
    /// node's entry, since only a few nodes have one. A subject declared dead
    /// or removed leaves the list at once.
    subjects: Vec<(Fingerprint, ProbeWindow)>,
    /// Every accusation the tracked nodes' states hold.
    accusations: verdicts::Accusations,
    /// The nodes this node's `Syn`s name, and ask for.
    rumors: rumors::Rumors,
    /// Where the next round's maintenance window starts.
    sweep_cursor: Fingerprint,
    /// The other vouched-for nodes, for choosing a round's targets: how
    /// many are `Live` (drawn from the table's rows, see [`LiveRows`]) and
    /// which are `Dead` (a few, but for a partition); `None` once a node is
    /// added, removed, vouched for or changes status (rebuilt when next
    /// needed, so that a round costs no walk of the table).
    peer_tally: Option<(usize, Vec<Fingerprint>)>,
    /// Until then, what arrives may be old news: this node came out of a pause
    /// (see [`ClusterState::forgive`]).
    doubtful_until: Timestamp,
    /// Claims about this node, to refute at the next gossip round.
    claims: refutation::Claims,
    /// This node's state is not re-published again before then.
    next_republish_at: Timestamp,
    /// What the other nodes' states hold, by [`NodeState::held_bytes`]: the
    /// sum over every tracked node but this one. Grows only where
    /// `config.max_remote_state_bytes` allows.
    remote_bytes: usize,
}

/// Another node this node may gossip to: vouched for (the ones a spoofer
/// introduced and nothing proved are left out).
fn is_peer(row: Row<'_>, self_fingerprint: Fingerprint) -> bool {
    row.fingerprint() != self_fingerprint && row.summary().vouched
}

/// The `Live` peers, drawn from the table's rows: a row drawn at random is
/// one of them most of the time, as most tracked nodes are, so a round
/// finds its targets in a few draws, and no list of them is kept.
pub(crate) struct LiveRows<'a> {
    rows: Rows<'a>,
    count: usize,
    self_fingerprint: Fingerprint,
}

impl LiveRows<'_> {
    fn is_live_peer(&self, row: Row<'_>) -> bool {
        is_peer(row, self.self_fingerprint) && row.summary().status == NodeStatus::Live
    }
}

impl LivePeers for LiveRows<'_> {
    type Peer = Fingerprint;

    fn count(&self) -> usize {
        self.count
    }

    fn draw(&self, rng: &mut fastrand::Rng) -> Option<Fingerprint> {
        let row = self.rows.get(rng.usize(..self.rows.len().max(1)))?;
        self.is_live_peer(row).then(|| row.fingerprint())
    }

    /// Fewer than a quarter of the rows are live peers.
    fn sparse(&self) -> bool {
        self.count.saturating_mul(4) < self.rows.len()
    }

    fn all(&self) -> Vec<Fingerprint> {
        self.rows.iter().filter(|row| self.is_live_peer(*row)).map(|row| row.fingerprint()).collect()
    }
}

impl std::fmt::Debug for ClusterState {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("ClusterState")
            .field("self", self.self_entry().state.id())
            .field("nodes", &self.membership.len())
            .field("pending_events", &self.events.len())
            .field("ready_predicate", &self.ready_predicate.is_some())
            .field("doubtful_until", &self.doubtful_until)
            .finish_non_exhaustive()
    }
}

impl ClusterState {
    pub(crate) fn new(config: Config, self_state: NodeState, now: Timestamp) -> Self {
        let self_id = self_state.id().clone();
        let mut cluster = ClusterState {
            events: EventQueue::new(config.max_pending_events),
            config,
            membership: Membership::new(self_state, now),
            metrics: Metrics::default(),
            ready_predicate: None,
            subjects: Vec::new(),
            accusations: verdicts::Accusations::default(),
            rumors: rumors::Rumors::default(),
            sweep_cursor: Fingerprint(0),
            peer_tally: None,
            doubtful_until: Timestamp::ZERO,
            claims: refutation::Claims::default(),
            next_republish_at: Timestamp::ZERO,
            remote_bytes: 0,
        };
        let self_fingerprint = cluster.self_fingerprint();
        cluster.events.push(Event::NodeJoined(self_id.clone()));
        cluster.events.push(Event::NodeLive(self_id));
        cluster.update_ready(self_fingerprint);
        cluster
    }

    // ---- reading ----------------------------------------------------------

    pub(crate) fn config(&self) -> &Config {
        &self.config
    }

    pub(crate) fn membership(&self) -> &Membership {
        &self.membership
    }

    pub(crate) fn self_fingerprint(&self) -> Fingerprint {
        self.membership.self_fingerprint()
    }

    pub(crate) fn self_entry(&self) -> &NodeEntry {
        self.membership.self_entry()
    }

    /// What the other nodes' states hold, by [`NodeState::held_bytes`].
    pub(crate) fn remote_bytes(&self) -> usize {
        self.remote_bytes
    }

    pub(crate) fn metrics(&self) -> &Metrics {
        &self.metrics
    }

    /// The counters, for the parts of the node outside the cluster state
    /// (datagrams, rounds, encryption).
    pub(crate) fn metrics_mut(&mut self) -> &mut Metrics {
        &mut self.metrics
    }

    pub(crate) fn pending_events(&self) -> usize {
        self.events.len()
    }

    pub(crate) fn events_dropped(&self) -> u64 {
        self.events.dropped
    }

    pub(crate) fn pop_event(&mut self) -> Option<Event> {
        self.events.pop()
    }

    /// The failure detector's phi at `now` for a node this node watches
    /// (`None` for the others).
    pub(crate) fn phi(&self, fingerprint: Fingerprint, now: Timestamp) -> Option<f64> {
        self.probe(fingerprint).map(|probe| probe.phi(now, self.config.gossip_interval))
    }

    /// The probe window of a node this node watches.
    pub(crate) fn probe(&self, fingerprint: Fingerprint) -> Option<&ProbeWindow> {
        self.subjects.iter().find(|(subject, _)| *subject == fingerprint).map(|(_, probe)| probe)
    }

    /// The probe window of a node this node watches, to change.
    pub(crate) fn probe_mut(&mut self, fingerprint: Fingerprint) -> Option<&mut ProbeWindow> {
        self.subjects.iter_mut().find(|(subject, _)| *subject == fingerprint).map(|(_, probe)| probe)
    }

    /// Whether a node's state is no longer gossiped: dead or left for half the
    /// grace period.
    pub(crate) fn is_retired(&self, entry: &NodeEntry, now: Timestamp) -> bool {
        self.retired(entry.status, entry.status_since(), now)
    }

    fn retired(&self, status: NodeStatus, since: Timestamp, now: Timestamp) -> bool {
        matches!(status, NodeStatus::Dead | NodeStatus::Left)
            && now.saturating_duration_since(since) >= self.config.dead_node_grace_period / 2
    }

    /// Whether a node's state is gossiped to peers: vouched for, and not
    /// retired.
    pub(crate) fn is_relayed(&self, entry: &NodeEntry, now: Timestamp) -> bool {
        entry.vouched() && !self.is_retired(entry, now)
    }

    /// [`ClusterState::is_relayed`], from a row's summary (and its entry,
    /// for a node not `Live`).
    pub(crate) fn relays(&self, row: Row<'_>, now: Timestamp) -> bool {
        let summary = row.summary();
        summary.vouched
            && (summary.status == NodeStatus::Live
                || !self.retired(summary.status, row.entry().status_since(), now))
    }

    /// The bounds of `range` on the ring as (at most) two ranges of the node map,
    /// in ring order.
    pub(crate) fn ring_bounds(range: RingRange) -> [(Bound<Fingerprint>, Bound<Fingerprint>); 2] {
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
    pub(crate) fn nodes_in(&self, range: RingRange) -> impl Iterator<Item = Row<'_>> {
        let [first, second] = Self::ring_bounds(range);
        self.membership.range(first).iter().chain(self.membership.range(second))
    }

    /// The tracked nodes from `start` (included) the whole way round the
    /// ring, in ring order.
    pub(crate) fn ring_from(&self, start: Fingerprint) -> impl Iterator<Item = Row<'_>> {
        self.membership
            .range((Bound::Included(start), Bound::Unbounded))
            .iter()
            .chain(self.membership.range((Bound::Unbounded, Bound::Excluded(start))))
    }

    /// `fingerprint`'s state changed in this node's eyes: its `Syn`s name it
    /// for a few rounds.
    pub(crate) fn note_news(&mut self, fingerprint: Fingerprint) {
        if fingerprint != self.self_fingerprint() {
            self.rumors.note(fingerprint, digest::rumor_rounds(self.membership.len()));
        }
    }

    /// The rumors this node names now, freshest first.
    pub(crate) fn current_rumors(&mut self) -> Vec<Fingerprint> {
        self.rumors.current().to_vec()
    }

    /// The nodes a round's `Syn`s ask for (once).
    pub(crate) fn take_asks(&mut self) -> Vec<Fingerprint> {
        self.rumors.take_asks()
    }

    /// Whether this round has news to spread (rumors, asks, or a change of
    /// this node's own state in the last rumor rounds); a round without is
    /// quiet (see [`crate::peers`]). Called once a round, before the asks are
    /// taken.
    pub(crate) fn round_has_news(&mut self) -> bool {
        let own = self.self_entry().digest_entry(self.self_fingerprint());
        let rounds = digest::rumor_rounds(self.membership.len());
        self.rumors.note_own((own.heartbeat, own.max_version, own.last_gc_version), rounds);
        self.rumors.has_news()
    }

    /// A round named its rumors.
    pub(crate) fn end_rumor_round(&mut self) {
        self.rumors.end_round();
    }

    /// What a peer's digest shows: the nodes this node is behind on become
    /// rumors (a peer that holds more sends it when a `Syn` names them), the
    /// nodes it does not know are asked for.
    /// Returns how many it does not know.
    pub(crate) fn note_wants(&mut self, digest: &crate::wire::Digest) -> usize {
        let (behind, unknown) = self.wants_in(digest);
        for fingerprint in behind {
            self.note_news(fingerprint);
        }
        for fingerprint in &unknown {
            self.rumors.ask(*fingerprint);
        }
        unknown.len()
    }

    /// The other vouched-for nodes (nodes heard of only from addresses that
    /// proved nothing are left out): `Live` ones, then `Dead` ones. Their
    /// gossip addresses are [`ClusterState::gossip_addr`].
    pub(crate) fn peers(&self) -> (LiveRows<'_>, &[Fingerprint]) {
        let (count, dead) = self.peer_tally.as_ref().map_or((0, &[][..]), |(live, dead)| (*live, dead));
        let live =
            LiveRows { rows: self.membership.rows(), count, self_fingerprint: self.self_fingerprint() };
        (live, dead)
    }

    /// Recounts [`ClusterState::peers`] if a change since made them stale.
    pub(crate) fn refresh_peers(&mut self) {
        if self.peer_tally.is_none() {
            let self_fingerprint = self.self_fingerprint();
            let (mut live, mut dead) = (0, Vec::new());
            for row in self.membership.rows() {
                if !is_peer(row, self_fingerprint) {
                    continue;
                }
                match row.summary().status {
                    NodeStatus::Live => live += 1,
                    NodeStatus::Dead => dead.push(row.fingerprint()),
                    NodeStatus::Left => {}
                }
            }
            dead.shrink_to_fit();
            self.peer_tally = Some((live, dead));
        }
    }

    /// A tracked node's gossip address.
    pub(crate) fn gossip_addr(&self, fingerprint: Fingerprint) -> Option<SocketAddr> {
        self.membership.get(&fingerprint).map(|entry| entry.state.id().gossip_addr())
    }

    /// A node was added, removed, vouched for or changed status: the peer
    /// addresses are rebuilt when next needed.
    pub(crate) fn peers_changed(&mut self) {
        self.peer_tally = None;
    }

    // ---- this node's own state ------------------------------------------

    /// Changes this node's own state with `change`; reports what it returns
    /// (an event, if anything changed) and re-evaluates this node's readiness.
    pub(crate) fn change_own_state(&mut self, change: impl FnOnce(&mut NodeState) -> Option<Event>) {
        let self_fingerprint = self.self_fingerprint();
        let event = change(&mut self.membership.self_entry_mut().state);
        if let Some(event) = event {
            self.events.push(event);
            self.update_ready(self_fingerprint);
        }
    }

    /// Marks this node as left, for good.
    pub(crate) fn leave(&mut self, now: Timestamp) {
        let self_fingerprint = self.self_fingerprint();
        let mut entry = self.membership.self_entry_mut();
        entry.state.mark_left();
        entry.status = NodeStatus::Left;
        entry.set_status_since(now);
        drop(entry);
        self.update_ready(self_fingerprint);
        self.peers_changed();
    }

    /// Reports that this node has left (its farewells are all sent).
    pub(crate) fn report_self_left(&mut self) {
        let self_id = self.self_entry().state.id().clone();
        self.events.push(Event::NodeLeft(self_id));
    }

    /// A datagram came from `from`: the node there is looked up once for
    /// all the questions its handling asks of the address.
    pub(crate) fn note_sender(&mut self, from: SocketAddr) {
        self.membership.note_sender(from);
    }

    /// Whether `addr` is validated: the gossip address of a live node whose
    /// peer there answered a `Syn` of this node.
    pub(crate) fn is_validated(&self, addr: &SocketAddr) -> bool {
        let Some(fingerprint) = self.membership.at_addr(addr) else { return false };
        self.membership
            .get(&fingerprint)
            .is_some_and(|entry| entry.status == NodeStatus::Live && entry.address_validated())
    }

    /// A peer at `addr` answered a `Syn` of this node: if a node is tracked
    /// there, its address is validated.
    pub(crate) fn validate_address(&mut self, addr: &SocketAddr) {
        if let Some(fingerprint) = self.membership.at_addr(addr) {
            self.validate_node(fingerprint);
        }
    }

    /// The peer at a tracked node's gossip address answered a message of
    /// this node: the address is validated, and the node vouched for (the
    /// application hears of it now).
    pub(crate) fn validate_node(&mut self, fingerprint: Fingerprint) {
        let Some(mut entry) = self.membership.get_mut(&fingerprint) else { return };
        entry.set_address_validated(true);
        if entry.vouched() {
            return;
        }
        // Its records come again from peers, whose digests now show this node
        // behind.
        let dropped = vouch_for(&mut entry, &mut self.events);
        drop(entry);
        self.remote_bytes -= dropped.held_bytes();
        self.peers_changed();
        if dropped.max_version() > 0 {
            self.reread_accusations(fingerprint);
        }
        self.update_ready(fingerprint);
    }

    // ---- lifecycle of other nodes -----------------------------------------

    /// Starts tracking a node heard of for the first time (`first_hand`: the
    /// introduction came from its own gossip address; `vouched`: from a
    /// sender that proved its address, see [`NodeEntry::vouched`]). Returns
    /// `false` if it was refused (fingerprint taken, or table full). When the
    /// table is full, a vouched-for node takes the place of the longest-known
    /// node not vouched for, else (if first-hand) of one never heard from
    /// first-hand (a flood
    /// of forged introductions cannot lock a real newcomer out, whose `Ack`
    /// answering this node's `SynAck` vouches for it), counted in
    /// `nodes_evicted`; any other is refused (`nodes_refused`). `heartbeat` is
    /// the one the introducer reported.
    pub(crate) fn add_node(
        &mut self,
        node_id: NodeId,
        fingerprint: Fingerprint,
        heartbeat: u64,
        first_hand: bool,
        vouched: bool,
        now: Timestamp,
    ) -> bool {
        if self.membership.contains(&fingerprint) {
            self.metrics.fingerprint_collisions += 1;
            return false;
        }
        if self.membership.len() >= self.config.max_nodes && !(vouched && self.evict_a_rumor(first_hand, now))
        {
            self.metrics.nodes_refused += 1;
            return false;
        }
        let mut state = NodeState::new(node_id.clone());
        state.set_heartbeat(heartbeat);
        let fresh = self.is_fresh(now);
        let mut entry = self.membership.insert(fingerprint, state, now);
        entry.set_confirmed(fresh);
        entry.set_heard_first_hand(first_hand);
        entry.set_vouched(vouched);
        drop(entry);
        self.note_news(fingerprint);
        self.peers_changed();
        // The application hears of a node once it is vouched for (see
        // `appearance`).
        if vouched {
            self.events.push(Event::NodeJoined(node_id.clone()));
            self.events.push(Event::NodeLive(node_id));
        }
        true
    }

    /// Forgets a node to make room for a vouched-for newcomer; returns whether
    /// there was one to forget: the longest-known of those not vouched for,
    /// else, for a newcomer heard `first_hand`, of those never heard from
    /// first-hand.
    fn evict_a_rumor(&mut self, first_hand: bool, now: Timestamp) -> bool {
        let self_fingerprint = self.self_fingerprint();
        let rumor = self
            .membership
            .iter()
            .filter(|(fingerprint, entry)| {
                **fingerprint != self_fingerprint
                    && (!entry.vouched() || (first_hand && !entry.heard_first_hand()))
            })
            .min_by_key(|(_, entry)| (entry.vouched(), entry.heard_first_hand(), entry.status_since()))
            .map(|(fingerprint, _)| *fingerprint);
        let Some(rumor) = rumor else { return false };
        self.remove_node(rumor, now);
        self.metrics.nodes_evicted += 1;
        true
    }

    /// Forgets a node, and remembers its identity for twice the dead-node grace
    /// period.
    pub(crate) fn remove_node(&mut self, fingerprint: Fingerprint, now: Timestamp) -> Option<NodeId> {
        let memory = self.config.dead_node_grace_period * 2;
        let entry = self.membership.remove(fingerprint, now + memory, self.config.max_nodes)?;
        self.remote_bytes -= entry.state.held_bytes();
        self.accusations.replace(fingerprint, Vec::new());
        self.subjects.retain(|(subject, _)| *subject != fingerprint);
        self.rumors.forget(fingerprint);
        self.peers_changed();
        let node_id = entry.state.id().clone();
        if entry.ready() {
            self.events.push(Event::ReadyChanged { node: node_id.clone(), ready: false });
        }
        if entry.vouched() {
            self.events.push(Event::NodeRemoved(node_id.clone()));
        }
        Some(node_id)
    }

    /// Marks a node as left (final for its incarnation).
    pub(crate) fn mark_left(&mut self, fingerprint: Fingerprint, now: Timestamp) {
        let Some(mut entry) = self.membership.get_mut(&fingerprint) else { return };
        if entry.status == NodeStatus::Left {
            entry.set_provisional_left(false); // on proven word now
            return;
        }
        entry.status = NodeStatus::Left;
        entry.set_status_since(now);
        if entry.vouched() {
            self.events.push(Event::NodeLeft(entry.state.id().clone()));
        }
        drop(entry);
        self.update_ready(fingerprint);
        self.peers_changed();
    }

    /// Sets the ready predicate, and re-evaluates every node's readiness.
    pub(crate) fn set_ready_predicate(&mut self, predicate: ReadyPredicate) {
        self.ready_predicate = Some(predicate);
        let fingerprints: Vec<Fingerprint> =
            self.membership.iter().map(|(fingerprint, _)| *fingerprint).collect();
        for fingerprint in fingerprints {
            self.update_ready(fingerprint);
        }
    }

    /// Re-evaluates whether a node is ready, and reports a change.
    pub(crate) fn update_ready(&mut self, fingerprint: Fingerprint) {
        let Some(mut entry) = self.membership.get_mut(&fingerprint) else { return };
        let ready = entry.status == NodeStatus::Live
            && entry.vouched()
            && self.ready_predicate.as_ref().is_none_or(|predicate| predicate(&entry.state));
        if ready != entry.ready() {
            entry.set_ready(ready);
            self.events.push(Event::ReadyChanged { node: entry.state.id().clone(), ready });
        }
    }
}
