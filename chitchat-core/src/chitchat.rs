//! [`Chitchat`]: one node of the protocol, driven by its caller.

use std::collections::VecDeque;
use std::net::SocketAddr;
use std::time::Duration;

use crate::cluster::{ClusterState, NodeStatus, ReadyPredicate};
use crate::config::{Config, ConfigError};
use crate::crypto::{Encryption, EncryptionMode, KeyId, Keyring, KeyringError, SecretKey};
use crate::error::{DatagramError, KeyValueError};
use crate::events::Event;
use crate::identity::{Fingerprint, NodeId};
use crate::message::{Delta, Digest, Message, NodeDelta, NodeRef, Packet};
use crate::metrics::Metrics;
use crate::node_state::{NodeState, ValueStatus};
use crate::snapshot::{ClusterSnapshot, NodeSnapshot};
use crate::time::Timestamp;
use crate::timers::{Timer, TimerTable};
use crate::wire;

/// A datagram to send, pulled with [`Chitchat::poll_transmit`].
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Transmit {
    /// Where to send it.
    pub to: SocketAddr,
    /// The datagram, at most [`Config::max_datagram_size`] bytes.
    pub bytes: Vec<u8>,
}

/// Farewells are sent to at most this many live peers; the others learn of the
/// leave by gossip.
const MAX_FAREWELLS: usize = 16;

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Phase {
    Running,
    /// Farewells are queued; `NodeLeft` follows once they are all polled.
    Leaving {
        farewells_left: usize,
    },
    Left,
}

/// A datagram waiting for `poll_transmit`, not yet sealed.
struct Queued {
    to: SocketAddr,
    plain: Vec<u8>,
    farewell: bool,
}

/// One node of a chitchat cluster: the whole protocol as a state machine.
///
/// The caller owns the socket, the clock and the timer. It feeds received
/// datagrams to [`Chitchat::handle_datagram`] and expired deadlines to
/// [`Chitchat::handle_timeout`], then drains [`Chitchat::poll_transmit`] and
/// [`Chitchat::poll_event`] until they return `None`, and sleeps until
/// [`Chitchat::poll_timeout`] or the next datagram. Outputs may be drained in
/// any order. Every input takes the current [`Timestamp`]; time never has to be
/// read anywhere else.
///
/// Memory is bounded by the [`Config`]: at most `max_nodes` nodes of at most
/// `max_keys_per_node` records each, `max_pending_events` events and
/// `max_pending_transmits` datagrams.
pub struct Chitchat {
    cluster: ClusterState,
    timers: TimerTable,
    transmits: VecDeque<Queued>,
    rng: fastrand::Rng,
    seeds: Vec<SocketAddr>,
    /// Where the next partial digest starts.
    digest_cursor: Fingerprint,
    phase: Phase,
    /// The node's own time: the latest caller's time passed in, plus `skew`.
    now: Timestamp,
    /// How far the node's time is ahead of the caller's clock: the total of the
    /// caller's clock's steps back (see [`Chitchat::advance`]).
    skew: Duration,
    /// The last time this node was driven: a timer fired or a datagram was
    /// accepted. A longer gap than two gossip intervals is a pause of this node.
    driven_at: Timestamp,
    /// Keyring, mode and nonces of authenticated encryption (off by default).
    encryption: Encryption,
}

impl Chitchat {
    /// A node with identity `self_id` and initial keys, starting at `now`.
    ///
    /// Fails if the configuration is inconsistent, the name too long, or an
    /// initial key-value refused. The first gossip round is due at once.
    pub fn new<K, V>(
        config: Config,
        self_id: NodeId,
        initial_key_values: impl IntoIterator<Item = (K, V)>,
        now: Timestamp,
    ) -> Result<Self, ConfigError>
    where
        K: AsRef<str>,
        V: AsRef<str>,
    {
        config.validate()?;
        if self_id.name.len() > config.max_node_name_len {
            return Err(ConfigError::NodeNameTooLong {
                len: self_id.name.len(),
                max: config.max_node_name_len,
            });
        }
        // Mixing in the identity keeps nodes that share a configuration (and so a
        // seed) from choosing peers in lockstep; one seed still replays one run.
        let rng = fastrand::Rng::with_seed(config.rng_seed ^ self_id.fingerprint().0);
        let mut chitchat = Chitchat {
            cluster: ClusterState::new(config, NodeState::new(self_id), now),
            timers: TimerTable::default(),
            transmits: VecDeque::new(),
            rng,
            seeds: Vec::new(),
            digest_cursor: Fingerprint(0),
            phase: Phase::Running,
            now,
            skew: Duration::ZERO,
            driven_at: now,
            encryption: Encryption::default(),
        };
        for (key, value) in initial_key_values {
            chitchat.set(key.as_ref(), value.as_ref())?;
        }
        chitchat.timers.set(Timer::Gossip, now);
        Ok(chitchat)
    }

    // ---- inputs ----------------------------------------------------------

    /// Handles a datagram received from `from` at `now`.
    ///
    /// On `Err` the datagram changed nothing (no state, output or event) and was
    /// counted in [`Metrics::rejected`]. A `Syn` from another cluster is answered
    /// with `BadCluster` and returns `Ok`.
    pub fn handle_datagram(
        &mut self,
        now: Timestamp,
        from: SocketAddr,
        bytes: &[u8],
    ) -> Result<(), DatagramError> {
        // The node's clock moves only if the datagram is accepted: a refused one
        // changes nothing.
        let (own, skew) = self.time_at(now);
        let metrics = &mut self.cluster.metrics;
        metrics.datagrams_received += 1;
        metrics.bytes_received += bytes.len() as u64;
        let result = self.handle_packet(own, from, bytes);
        match &result {
            Ok(()) => (self.now, self.skew) = (own, skew),
            Err(error) => {
                self.cluster.metrics.rejected.count(error);
                tracing::debug!(%from, %error, "datagram rejected");
            }
        }
        result
    }

    fn handle_packet(&mut self, now: Timestamp, from: SocketAddr, bytes: &[u8]) -> Result<(), DatagramError> {
        if self.phase != Phase::Running {
            return Err(DatagramError::NotRunning);
        }
        let (packet, opened) = self.encryption.open(bytes, &self.cluster.config.cluster_id)?;
        if packet.cluster_id != self.config().cluster_id {
            if matches!(packet.message, Message::Syn { .. }) {
                // Answered, so accepted: a replay of it is refused.
                self.encryption.note_accepted(opened);
                self.cluster.metrics.bad_cluster_sent += 1;
                self.queue(from, Message::BadCluster, false);
                return Ok(());
            }
            return Err(DatagramError::WrongCluster);
        }
        // Every check comes before the first change.
        if let Message::SynAck { delta, .. } | Message::Ack { delta } = &packet.message {
            self.cluster.check_delta(delta)?;
        }
        self.note_driven(now, None);
        self.cluster.pardon_sender(from, &packet.message, now);
        self.dispatch(now, from, &packet.message);
        self.cluster.confirm_sender(from, &packet.message, now);
        self.encryption.note_accepted(opened);
        Ok(())
    }

    fn dispatch(&mut self, now: Timestamp, from: SocketAddr, message: &Message) {
        match message {
            Message::Syn { digest } => {
                self.cluster.metrics.syns_received += 1;
                self.cluster.absorb_digest(digest, now);
                self.answer_syn(now, from, digest);
            }
            Message::SynAck { digest, delta } => {
                self.cluster.metrics.syn_acks_received += 1;
                self.cluster.apply_delta(delta, now);
                self.cluster.absorb_digest(digest, now);
                let budget = self.payload_budget();
                let (delta, _) = self.cluster.build_delta(now, digest, budget, &mut self.rng);
                if !delta.nodes.is_empty() {
                    self.queue(from, Message::Ack { delta }, false);
                }
            }
            Message::Ack { delta } => {
                self.cluster.metrics.acks_received += 1;
                self.cluster.apply_delta(delta, now);
            }
            Message::BadCluster => {
                self.cluster.metrics.bad_cluster_received += 1;
                tracing::warn!(%from, "peer belongs to another cluster");
            }
        }
    }

    fn answer_syn(&mut self, now: Timestamp, from: SocketAddr, syn_digest: &Digest) {
        let payload = self.payload_budget();
        let start = if syn_digest.range.is_full() { self.digest_cursor } else { syn_digest.range.start };
        let unknown = self.cluster.unknown_in(syn_digest);
        // The delta gets at least half of the room; the digest what the delta leaves.
        let (full_digest, full_len) = self.cluster.build_digest(now, start, unknown.clone(), payload);
        let delta_budget = payload - full_len.min(payload / 2);
        let (delta, delta_len) = self.cluster.build_delta(now, syn_digest, delta_budget, &mut self.rng);
        let digest = if full_len + delta_len <= payload {
            full_digest
        } else {
            self.cluster.build_digest(now, start, unknown, payload - delta_len).0
        };
        if !digest.range.is_full() {
            self.cluster.metrics.partial_digests_sent += 1;
            if syn_digest.range.is_full() {
                self.digest_cursor = digest.range.end;
            }
        }
        self.queue(from, Message::SynAck { digest, delta }, false);
    }

    /// Fires the timers due at `now`. Calling it early is harmless.
    ///
    /// Call it at [`Chitchat::poll_timeout`]. A node driven neither by its timer
    /// nor by an accepted datagram for more than two gossip intervals takes the
    /// gap as a pause of its own (a stopped process, a long garbage collection,
    /// a suspended machine): it does not blame its peers' silence during the
    /// pause on them, and for one gossip interval it doubts what arrives, which
    /// may have waited in the socket since before the pause (counted in
    /// [`Metrics::pauses`]). Short of a pause, a gossip round that runs late
    /// (the caller's event loop was busy or starved) forgives its lateness the
    /// same way: liveness is judged in the node's own rounds, and an overloaded
    /// node does not blame its peers for its own slowness.
    pub fn handle_timeout(&mut self, now: Timestamp) {
        let now = self.advance(now);
        if self.phase != Phase::Running {
            return;
        }
        let round_due = self.timers.next_deadline().filter(|due| *due <= now);
        self.note_driven(now, round_due);
        while let Some(timer) = self.timers.pop_expired(now) {
            match timer {
                Timer::Gossip => {
                    self.gossip_round(now);
                    let interval = self.config().gossip_interval;
                    let jitter = interval.mul_f64(self.rng.f64() * 0.1);
                    self.timers.set(Timer::Gossip, now + (interval - jitter));
                }
            }
        }
    }

    fn gossip_round(&mut self, now: Timestamp) {
        self.cluster.metrics.gossip_rounds += 1;
        // Liveness, removals and garbage collection are judged once a round, right
        // before targets are chosen, so that they are chosen on fresh liveness
        // (after a stall, say).
        self.cluster.maintain(now);
        let self_fingerprint = self.cluster.self_fingerprint;
        let self_entry = self.cluster.self_entry_mut();
        let heartbeat = self_entry.state.heartbeat() + 1;
        self_entry.state.set_heartbeat(heartbeat);
        let self_addr = self_entry.state.id().gossip_addr;

        let mut live = Vec::new();
        let mut dead = Vec::new();
        for (fingerprint, entry) in self.cluster.nodes.iter() {
            if *fingerprint == self_fingerprint {
                continue;
            }
            match entry.status {
                NodeStatus::Live => live.push(entry.state.id().gossip_addr),
                NodeStatus::Dead => dead.push(entry.state.id().gossip_addr),
                NodeStatus::Left => {}
            }
        }
        let fanout = self.config().gossip_fanout;
        let mut targets: Vec<SocketAddr> = Vec::with_capacity(fanout + 2);
        // A partial Fisher-Yates shuffle picks `fanout` distinct live peers.
        for i in 0..fanout.min(live.len()) {
            let j = self.rng.usize(i..live.len());
            live.swap(i, j);
            targets.push(live[i]);
        }
        if !dead.is_empty() && self.rng.f64() < dead.len() as f64 / (live.len() + 1) as f64 {
            targets.push(dead[self.rng.usize(..dead.len())]);
        }
        let seeds: Vec<SocketAddr> = self.seeds.iter().copied().filter(|seed| *seed != self_addr).collect();
        if live.is_empty() {
            targets.extend(seeds.iter().copied());
        } else if !seeds.is_empty()
            && !targets.iter().any(|target| seeds.contains(target))
            && self.rng.f64() < seeds.len() as f64 / (live.len() + seeds.len()) as f64
        {
            targets.push(seeds[self.rng.usize(..seeds.len())]);
        }
        targets.sort_unstable();
        targets.dedup();
        let budget = self.payload_budget();
        // A digest of the whole ring is the same for every target: built and
        // encoded once. Partial digests rotate: one range per target.
        let mut whole_ring: Option<Vec<u8>> = None;
        for target in targets {
            if let Some(bytes) = &whole_ring {
                let bytes = bytes.clone();
                self.queue_bytes(target, bytes, false);
                continue;
            }
            let (digest, _) = self.cluster.build_digest(now, self.digest_cursor, Vec::new(), budget);
            let full = digest.range.is_full();
            if !full {
                self.cluster.metrics.partial_digests_sent += 1;
                self.digest_cursor = digest.range.end;
            }
            let bytes = self.encode(Message::Syn { digest });
            if full {
                whole_ring = Some(bytes.clone());
            }
            self.queue_bytes(target, bytes, false);
        }
    }

    /// Opens a handshake with `addr` now, outside the gossip rounds (to reach a
    /// node at once, say, after a configuration change). Its heartbeat is not
    /// bumped: that belongs to rounds.
    pub fn gossip_with(&mut self, now: Timestamp, addr: SocketAddr) {
        let now = self.advance(now);
        if self.phase != Phase::Running {
            return;
        }
        let budget = self.payload_budget();
        let (digest, _) = self.cluster.build_digest(now, self.digest_cursor, Vec::new(), budget);
        if !digest.range.is_full() {
            self.cluster.metrics.partial_digests_sent += 1;
            self.digest_cursor = digest.range.end;
        }
        self.queue(addr, Message::Syn { digest }, false);
    }

    /// Replaces the seed addresses: contacted when no peer is live, and now and
    /// then otherwise, so that newcomers join and partitions heal.
    pub fn set_seed_addrs(&mut self, seeds: impl IntoIterator<Item = SocketAddr>) {
        self.seeds = seeds.into_iter().collect();
        self.seeds.sort_unstable();
        self.seeds.dedup();
    }

    /// Sets a key of this node. Setting the value it already has changes nothing.
    pub fn set(&mut self, key: &str, value: &str) -> Result<(), KeyValueError> {
        let now = self.now;
        self.set_own(key, value, ValueStatus::Set, now)
    }

    /// Sets a key that expires on every node a deletion grace period after that
    /// node learns of it.
    pub fn set_with_ttl(&mut self, now: Timestamp, key: &str, value: &str) -> Result<(), KeyValueError> {
        let now = self.advance(now);
        self.set_own(key, value, ValueStatus::SetWithTtl, now)
    }

    /// Deletes a key, leaving a tombstone that is collected after the deletion
    /// grace period. Deleting an absent key does nothing.
    pub fn delete(&mut self, now: Timestamp, key: &str) -> Result<(), KeyValueError> {
        let now = self.advance(now);
        if self.get(key).is_none() {
            self.check_running()?;
            return Ok(());
        }
        self.set_own(key, "", ValueStatus::Deleted, now)
    }

    /// Gives an existing key a time to live: it expires a deletion grace period
    /// from now (on each node, from when it learns of it). Absent keys are ignored.
    pub fn delete_after_ttl(&mut self, now: Timestamp, key: &str) -> Result<(), KeyValueError> {
        let now = self.advance(now);
        let Some(value) = self.get(key).map(str::to_string) else {
            self.check_running()?;
            return Ok(());
        };
        self.set_own(key, &value, ValueStatus::SetWithTtl, now)
    }

    fn check_running(&self) -> Result<(), KeyValueError> {
        match self.phase {
            Phase::Running => Ok(()),
            _ => Err(KeyValueError::NotRunning),
        }
    }

    fn set_own(
        &mut self,
        key: &str,
        value: &str,
        status: ValueStatus,
        now: Timestamp,
    ) -> Result<(), KeyValueError> {
        self.check_running()?;
        let config = self.config();
        if key.is_empty() {
            return Err(KeyValueError::EmptyKey);
        }
        if key.len() > config.max_key_len {
            return Err(KeyValueError::KeyTooLong { len: key.len(), max: config.max_key_len });
        }
        if value.len() > config.max_value_len {
            return Err(KeyValueError::ValueTooLong { len: value.len(), max: config.max_value_len });
        }
        let max_keys = config.max_keys_per_node;
        let state = &self.cluster.self_entry().state;
        if !state.contains_key(key) && state.num_records() >= max_keys {
            return Err(KeyValueError::TooManyKeys { max: max_keys });
        }
        let self_fingerprint = self.cluster.self_fingerprint;
        let state = &mut self.cluster.self_entry_mut().state;
        if !state.set_own(key, value, status, now) {
            return Ok(());
        }
        let node = state.id().clone();
        let version = state.max_version();
        let event = match status {
            ValueStatus::Deleted => Event::KeyDeleted { node, key: key.to_string() },
            _ => Event::KeySet { node, key: key.to_string(), value: value.to_string(), version },
        };
        self.cluster.events.push(event);
        self.cluster.update_ready(self_fingerprint);
        Ok(())
    }

    /// Leaves the cluster: farewells go to up to 16 live peers, which mark this
    /// node as left at once (the rest learn it by gossip). Once the farewells have
    /// been polled, [`Event::NodeLeft`] for this node is emitted and the node stops:
    /// no more timers, datagrams are refused, own state is frozen.
    pub fn leave(&mut self, now: Timestamp) {
        let now = self.advance(now);
        if self.phase != Phase::Running {
            return;
        }
        let self_fingerprint = self.cluster.self_fingerprint;
        let entry = self.cluster.self_entry_mut();
        entry.state.mark_left();
        entry.status = NodeStatus::Left;
        entry.status_since = now;
        let state = &entry.state;
        let farewell = NodeDelta {
            node: NodeRef::Full(state.id().clone()),
            heartbeat: state.heartbeat(),
            reset: false,
            from_version: 0,
            last_gc_version: 0,
            max_version: 0,
            left: true,
            key_values: Vec::new(),
        };
        self.cluster.update_ready(self_fingerprint);
        let mut peers: Vec<SocketAddr> = self
            .cluster
            .nodes
            .values()
            .filter(|entry| entry.status == NodeStatus::Live)
            .map(|entry| entry.state.id().gossip_addr)
            .collect();
        self.rng.shuffle(&mut peers);
        peers.truncate(MAX_FAREWELLS);
        self.timers.stop_all();
        self.phase = Phase::Leaving { farewells_left: 0 };
        let mut queued = 0;
        for peer in peers {
            let message = Message::Ack { delta: Delta { nodes: vec![farewell.clone()] } };
            if self.queue(peer, message, true) {
                queued += 1;
            }
        }
        self.phase = Phase::Leaving { farewells_left: queued };
        self.finish_leaving_if_done();
    }

    fn finish_leaving_if_done(&mut self) {
        if self.phase == (Phase::Leaving { farewells_left: 0 }) {
            self.phase = Phase::Left;
            let self_id = self.self_id().clone();
            self.cluster.events.push(Event::NodeLeft(self_id));
        }
    }

    /// Sets the predicate that says which live nodes are ready (default: all live
    /// nodes are). Readiness is re-evaluated for a node whenever its state or
    /// liveness changes, and for all nodes now.
    pub fn set_ready_predicate(&mut self, predicate: impl Fn(&NodeState) -> bool + Send + Sync + 'static) {
        self.cluster.ready_predicate = Some(Box::new(predicate) as ReadyPredicate);
        self.cluster.update_all_ready();
    }

    // ---- outputs ---------------------------------------------------------

    /// The next datagram to send.
    pub fn poll_transmit(&mut self) -> Option<Transmit> {
        loop {
            let queued = self.transmits.pop_front()?;
            if queued.farewell {
                if let Phase::Leaving { farewells_left } = &mut self.phase {
                    *farewells_left = farewells_left.saturating_sub(1);
                }
                self.finish_leaving_if_done();
            }
            // Sealed as it leaves, not when queued, so that it follows the
            // encryption in force: a datagram queued before encryption was turned
            // on never leaves in plaintext.
            let Some(bytes) = self.encryption.seal(queued.plain, &self.cluster.config.cluster_id) else {
                // The nonce counter is exhausted: never reuse a nonce.
                self.cluster.metrics.transmits_dropped += 1;
                continue;
            };
            if bytes.len() > self.cluster.config.max_datagram_size {
                // Queued in plaintext at full size, before encryption was on.
                self.cluster.metrics.transmits_dropped += 1;
                continue;
            }
            self.cluster.metrics.datagrams_sent += 1;
            self.cluster.metrics.bytes_sent += bytes.len() as u64;
            return Some(Transmit { to: queued.to, bytes });
        }
    }

    /// The next deadline at which [`Chitchat::handle_timeout`] must be called;
    /// `None` once the node has left.
    pub fn poll_timeout(&self) -> Option<Timestamp> {
        let deadline = self.timers.next_deadline()?;
        Some(Timestamp::from_nanos(deadline.as_nanos().saturating_sub(duration_nanos(self.skew))))
    }

    /// The next event.
    pub fn poll_event(&mut self) -> Option<Event> {
        self.cluster.events.pop()
    }

    // ---- views -----------------------------------------------------------

    /// This node's identity.
    pub fn self_id(&self) -> &NodeId {
        self.cluster.self_entry().state.id()
    }

    /// The configuration in force.
    pub fn config(&self) -> &Config {
        &self.cluster.config
    }

    /// The value of one of this node's keys.
    pub fn get(&self, key: &str) -> Option<&str> {
        self.cluster.self_entry().state.get(key)
    }

    /// This node's own state.
    pub fn self_node_state(&self) -> &NodeState {
        &self.cluster.self_entry().state
    }

    /// The state of a tracked node.
    pub fn node_state(&self, node_id: &NodeId) -> Option<&NodeState> {
        self.cluster.nodes.get(&node_id.fingerprint()).map(|entry| &entry.state)
    }

    /// What this node thinks of a tracked node's liveness.
    pub fn node_status(&self, node_id: &NodeId) -> Option<NodeStatus> {
        self.cluster.nodes.get(&node_id.fingerprint()).map(|entry| entry.status)
    }

    /// Every tracked node's state (this node included), in fingerprint order.
    pub fn node_states(&self) -> impl Iterator<Item = &NodeState> {
        self.cluster.nodes.values().map(|entry| &entry.state)
    }

    fn nodes_with(&self, status: NodeStatus) -> impl Iterator<Item = &NodeId> {
        self.cluster.nodes.values().filter(move |entry| entry.status == status).map(|entry| entry.state.id())
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
        self.cluster.nodes.values().filter(|entry| entry.ready).map(|entry| entry.state.id())
    }

    /// The failure detector's phi for a remote node at `now` (`None` for this
    /// node and untracked ones).
    pub fn phi(&self, node_id: &NodeId, now: Timestamp) -> Option<f64> {
        let fingerprint = node_id.fingerprint();
        if fingerprint == self.cluster.self_fingerprint {
            return None;
        }
        let entry = self.cluster.nodes.get(&fingerprint)?;
        Some(entry.arrivals.phi(self.time_at(now).0, &self.cluster.detector))
    }

    /// The counters.
    pub fn metrics(&self) -> Metrics {
        let mut metrics = self.cluster.metrics.clone();
        metrics.events_dropped = self.cluster.events.dropped;
        metrics
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
            seed_addrs: self.seeds.clone(),
            nodes: self
                .cluster
                .nodes
                .values()
                .map(|entry| NodeSnapshot {
                    id: entry.state.id().clone(),
                    status: entry.status,
                    ready: entry.ready,
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

    // ---- internals -------------------------------------------------------

    /// The node is driven at `now`: forgives the gap since it was last driven,
    /// beyond one gossip interval, if it exceeds two (a pause); otherwise, if its
    /// gossip round (due at `round_due`) runs late, the lateness.
    fn note_driven(&mut self, now: Timestamp, round_due: Option<Timestamp>) {
        let interval = self.config().gossip_interval;
        let gap = now.saturating_duration_since(self.driven_at);
        if gap > interval * 2 {
            self.cluster.forgive_pause(gap - interval, now);
        } else if let Some(due) = round_due
            && now > due
        {
            self.cluster.forgive_lateness(now.saturating_duration_since(due), now);
        }
        self.driven_at = self.driven_at.max(now);
    }

    /// The node's time at the caller's `now`. The caller's clock should be
    /// monotonic; if it steps back, the node counts the step as no time and
    /// carries on at the clock's pace from where it was (rather than waiting,
    /// frozen, until the clock catches up): its deadlines from
    /// [`Chitchat::poll_timeout`] follow the clock's new reading.
    fn advance(&mut self, now: Timestamp) -> Timestamp {
        (self.now, self.skew) = self.time_at(now);
        self.now
    }

    /// The node's time and skew at the caller's `now` (see [`Chitchat::advance`]).
    fn time_at(&self, now: Timestamp) -> (Timestamp, Duration) {
        let own = now + self.skew;
        if own < self.now {
            (self.now, self.skew + self.now.saturating_duration_since(own))
        } else {
            (own, self.skew)
        }
    }

    /// Room for a message's payload in one datagram.
    fn payload_budget(&self) -> usize {
        self.config().max_datagram_size
            - wire::packet_overhead(&self.config().cluster_id)
            - self.encryption.overhead()
    }

    /// Encodes and queues a datagram. Returns whether it was queued.
    fn queue(&mut self, to: SocketAddr, message: Message, farewell: bool) -> bool {
        let plain = self.encode(message);
        self.queue_bytes(to, plain, farewell)
    }

    /// Encodes a message into a plaintext datagram.
    fn encode(&self, message: Message) -> Vec<u8> {
        wire::encode(&Packet { cluster_id: self.config().cluster_id.clone(), message })
    }

    /// Seals (if encryption is on) and queues an encoded datagram. Returns
    /// whether it was queued. Each destination gets its own sealing, so its own
    /// nonce, even when the plaintext is shared.
    fn queue_bytes(&mut self, to: SocketAddr, plain: Vec<u8>, farewell: bool) -> bool {
        if self.transmits.len() >= self.config().max_pending_transmits {
            self.cluster.metrics.transmits_dropped += 1;
            return false;
        }
        if plain.len() + self.encryption.overhead() > self.config().max_datagram_size {
            // Sizes are computed from the encoder, so this is a bug; never send it.
            debug_assert!(false, "datagram of {} bytes exceeds the maximum", plain.len());
            self.cluster.metrics.transmits_dropped += 1;
            return false;
        }
        self.transmits.push_back(Queued { to, plain, farewell });
        true
    }

    // ---- encryption (see `crate::crypto`) ---------------------------------

    /// Installs a keyring and an encryption mode, replacing any previous ones.
    ///
    /// `nonce_salt` must be fresh for this incarnation of the node: 16 bytes from
    /// the operating system's random source (the runtime adapters do this). The
    /// node's generation and identity are mixed in, and the nonce counter is
    /// never reset, so nonces never repeat under a key.
    ///
    /// Fails, and changes nothing, if the largest key-value section would no
    /// longer fit half a datagram once the sealed envelope's 44 bytes are
    /// reserved ([`ConfigError::DatagramTooSmallForOneKey`]).
    pub fn set_encryption(
        &mut self,
        mode: EncryptionMode,
        keyring: Keyring,
        nonce_salt: [u8; 16],
    ) -> Result<(), ConfigError> {
        self.config().validate_sealed()?;
        let id = self.cluster.self_entry().state.id();
        let (generation, fingerprint) = (id.generation, id.fingerprint().0);
        self.encryption.install(mode, keyring, nonce_salt, generation, fingerprint, &self.cluster.config);
        Ok(())
    }

    /// Changes what the node sends and accepts. Fails (and changes nothing) if
    /// the mode seals and no keyring is installed.
    pub fn set_encryption_mode(&mut self, mode: EncryptionMode) -> Result<(), KeyringError> {
        self.encryption.set_mode(mode)
    }

    /// The encryption mode in force.
    pub fn encryption_mode(&self) -> EncryptionMode {
        self.encryption.mode()
    }

    /// The installed keyring, if any.
    pub fn keyring(&self) -> Option<&Keyring> {
        self.encryption.keyring()
    }

    /// Rotation, step 1: adds a key that opens datagrams (a key already held is
    /// accepted again). On `Err` nothing changed.
    pub fn add_key(&mut self, key: SecretKey) -> Result<KeyId, KeyringError> {
        self.encryption.keyring_mut()?.add(key)
    }

    /// Rotation, step 2: makes a held key the one that seals. On `Err` nothing
    /// changed.
    pub fn set_primary_key(&mut self, id: KeyId) -> Result<(), KeyringError> {
        self.encryption.keyring_mut()?.set_primary(id)
    }

    /// Rotation, step 3: removes a key that is not the primary. On `Err` nothing
    /// changed.
    pub fn remove_key(&mut self, id: KeyId) -> Result<(), KeyringError> {
        self.encryption.keyring_mut()?.remove(id)
    }

    /// The state of a tracked node, by fingerprint.
    pub fn node_state_by_fingerprint(&self, fingerprint: Fingerprint) -> Option<&NodeState> {
        self.cluster.nodes.get(&fingerprint).map(|entry| &entry.state)
    }

    /// Internal sizes, for bound checks by tests and the simulator.
    #[doc(hidden)]
    pub fn debug_queue_lengths(&self) -> (usize, usize, usize) {
        (self.transmits.len(), self.cluster.events.len(), self.cluster.removed.len())
    }
}

/// A duration in nanoseconds, saturating.
fn duration_nanos(duration: Duration) -> u64 {
    u64::try_from(duration.as_nanos()).unwrap_or(u64::MAX)
}
