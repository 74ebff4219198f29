//! A deterministic in-process cluster simulator (feature `sim`).
//!
//! Many [`Chitchat`] nodes share one process and one virtual clock that jumps to
//! the next event: the earliest node deadline or datagram arrival. The network
//! ([`NetworkConfig`]) delays datagrams by a latency plus jitter (reordering
//! them), loses them at random or in bursts (Gilbert-Elliott), duplicates them,
//! drops those above a path MTU, and honours partitions; per-link settings
//! override the default. Nodes can crash and restart with a new generation,
//! stall (stop processing for a while, as in a long GC pause), and run with a
//! clock offset. All randomness comes from one seed: the same seed and calls
//! replay the same run, bit for bit.
//!
//! After every step the simulator checks invariants (unless turned off with
//! [`Simulation::set_check_invariants`]): a node's versions of a node never go
//! backwards (but across a reset); a removed node that crashed or was superseded
//! never comes back through stale gossip (only news of a later heartbeat, which
//! a partition may have held back, can bring it back); a deleted or expired key never comes back with an older
//! version; every datagram fits its sender's maximum; tracked nodes, records and
//! queues stay within their bounds. A violation stops the run with the seed.
//!
//! ```
//! use std::time::Duration;
//! use chitchat_core::Config;
//! use chitchat_core::sim::Simulation;
//!
//! let mut sim = Simulation::new(7);
//! let nodes: Vec<_> = (0..5).map(|i| sim.add_node(&format!("node-{i}"), Config::local_test())).collect();
//! sim.set_seeds_all(&[nodes[0]]);
//! assert!(sim.run_until(Duration::from_secs(10), |sim| sim.all_see_all_live()).unwrap());
//! ```

mod invariants;
mod network;
mod streams;

use std::cmp::Reverse;
use std::collections::{BTreeMap, BTreeSet, BinaryHeap, VecDeque};
use std::net::{Ipv4Addr, SocketAddr};
use std::time::Duration;

pub use invariants::InvariantViolation;
pub use network::{GilbertElliott, NetworkConfig};

use crate::chitchat::Chitchat;
use crate::config::Config;
use crate::crypto::EncryptionMode;
use crate::events::Event;
use crate::identity::{Fingerprint, NodeId};
use crate::keyring::Keyring;
use crate::membership::NodeStatus;
use crate::time::Timestamp;
use invariants::ObserverRecord;
use network::{DropReason, Fate, Network};

/// A node of the simulation, by its index of creation.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct NodeIndex(pub usize);

/// Datagrams a stalled node's socket holds; more are dropped.
const STALL_BACKLOG: usize = 4_096;

struct SimNode {
    name: String,
    config: Config,
    generation: u64,
    addr: SocketAddr,
    seeds: Vec<SocketAddr>,
    chitchat: Chitchat,
    up: bool,
    /// The node's clock reads virtual time plus this.
    clock_offset: Duration,
    stalled_until: Option<Timestamp>,
    backlog: VecDeque<(usize, Vec<u8>)>,
    events: Vec<Event>,
    record: ObserverRecord,
}

/// Counters of a simulation.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct SimStats {
    /// Datagrams nodes sent.
    pub sent: u64,
    /// Bytes nodes sent.
    pub bytes_sent: u64,
    /// Datagrams lost at random or in bursts.
    pub lost: u64,
    /// Datagrams cut off by a partition.
    pub partitioned: u64,
    /// Datagrams above a link's maximum size.
    pub too_large: u64,
    /// Datagrams sent to a crashed node, or beyond a stalled node's backlog.
    pub unreachable: u64,
    /// Extra copies delivered.
    pub duplicated: u64,
    /// Datagrams delivered.
    pub delivered: u64,
    /// Delivered datagrams the receiver refused.
    pub rejected: u64,
    /// The largest datagram sent.
    pub max_datagram: usize,
    /// The largest datagram sent since [`Simulation::restart_window`].
    pub window_max_datagram: usize,
    /// `NodeDead` events about a node that was running, summed over observers.
    pub false_dead: u64,
    /// Streams nodes asked to open.
    pub streams_opened: u64,
    /// Streams a node ended because it refused their data.
    pub streams_refused: u64,
    /// Bytes nodes sent on streams.
    pub stream_bytes: u64,
}

/// A simulated cluster.
pub struct Simulation {
    seed: u64,
    now: Timestamp,
    rng: fastrand::Rng,
    network: Network,
    nodes: Vec<SimNode>,
    by_addr: BTreeMap<SocketAddr, usize>,
    /// (arrival, sequence, receiver, sender) → payload in `payloads`.
    in_flight: BinaryHeap<Reverse<(Timestamp, u64, usize, usize)>>,
    payloads: BTreeMap<u64, Vec<u8>>,
    timers: BinaryHeap<Reverse<(Timestamp, usize)>>,
    next_sequence: u64,
    streams: streams::SimStreams,
    stats: SimStats,
    record_events: bool,
    check_invariants: bool,
    /// `run_until` evaluates its condition at most once per this much virtual time.
    condition_interval: Duration,
}

impl std::fmt::Debug for Simulation {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Simulation")
            .field("seed", &self.seed)
            .field("now", &self.now)
            .field("nodes", &self.nodes.len())
            .field("in_flight", &self.in_flight.len())
            .field("stats", &self.stats)
            .finish_non_exhaustive()
    }
}

impl Simulation {
    /// An empty simulation whose randomness derives from `seed`.
    pub fn new(seed: u64) -> Self {
        Simulation {
            seed,
            now: Timestamp::ZERO,
            rng: fastrand::Rng::with_seed(seed),
            network: Network::default(),
            nodes: Vec::new(),
            by_addr: BTreeMap::new(),
            in_flight: BinaryHeap::new(),
            payloads: BTreeMap::new(),
            timers: BinaryHeap::new(),
            next_sequence: 0,
            streams: streams::SimStreams::default(),
            stats: SimStats::default(),
            record_events: true,
            check_invariants: true,
            condition_interval: Duration::ZERO,
        }
    }

    /// The seed.
    pub fn seed(&self) -> u64 {
        self.seed
    }

    /// Sets the model of every link without its own.
    pub fn set_network(&mut self, network: NetworkConfig) {
        self.network.default = network;
    }

    /// Sets the model of the directed link `from` → `to`.
    pub fn set_link(&mut self, from: NodeIndex, to: NodeIndex, network: NetworkConfig) {
        self.network.links.insert((from.0, to.0), network);
    }

    /// Removes every per-link model.
    pub fn clear_links(&mut self) {
        self.network.links.clear();
    }

    /// Whether nodes' events are kept for [`Simulation::take_events`] (default on;
    /// turn off for long runs of large clusters).
    pub fn set_record_events(&mut self, record: bool) {
        self.record_events = record;
    }

    /// Whether invariants are checked after every step (default on). The checks
    /// cost time proportional to the touched nodes' views: turn them off to
    /// measure speed on large clusters.
    pub fn set_check_invariants(&mut self, check: bool) {
        self.check_invariants = check;
    }

    /// How often [`Simulation::run_until`] evaluates its condition, in virtual
    /// time (default: after every step). Conditions over a large cluster cost
    /// time proportional to its size: sample them, at the cost of resolution.
    pub fn set_condition_interval(&mut self, interval: Duration) {
        self.condition_interval = interval;
    }

    /// Virtual time now.
    pub fn now(&self) -> Timestamp {
        self.now
    }

    /// Counters.
    pub fn stats(&self) -> &SimStats {
        &self.stats
    }

    /// Starts a new measuring window: [`SimStats::window_max_datagram`] counts
    /// from now (after a cold start, say, to see the steady state's datagrams).
    pub fn restart_window(&mut self) {
        self.stats.window_max_datagram = 0;
    }

    /// Adds a node named `name` (its random seed derived from the simulation's)
    /// and returns its index. Its address is `127.x.y.z:7000`.
    pub fn add_node(&mut self, name: &str, mut config: Config) -> NodeIndex {
        let index = self.nodes.len();
        let addr = SocketAddr::new(
            Ipv4Addr::new(127, 1 + (index >> 16) as u8, (index >> 8) as u8, index as u8).into(),
            7000,
        );
        config.rng_seed = self.rng.u64(..);
        let generation = 1;
        let chitchat = Chitchat::new(
            config.clone(),
            NodeId::new(name, generation, addr),
            Vec::<(String, String)>::new(),
            self.now,
        )
        .expect("simulated node configuration must be valid");
        self.nodes.push(SimNode {
            name: name.to_string(),
            config,
            generation,
            addr,
            seeds: Vec::new(),
            chitchat,
            up: true,
            clock_offset: Duration::ZERO,
            stalled_until: None,
            backlog: VecDeque::new(),
            events: Vec::new(),
            record: ObserverRecord::default(),
        });
        self.by_addr.insert(addr, index);
        self.wake(index);
        NodeIndex(index)
    }

    /// Gives every node the same seeds.
    pub fn set_seeds_all(&mut self, seeds: &[NodeIndex]) {
        for index in 0..self.nodes.len() {
            self.set_seeds(NodeIndex(index), seeds);
        }
    }

    /// Gives a node its seeds.
    pub fn set_seeds(&mut self, node: NodeIndex, seeds: &[NodeIndex]) {
        let addrs: Vec<SocketAddr> = seeds.iter().map(|seed| self.nodes[seed.0].addr).collect();
        let sim_node = &mut self.nodes[node.0];
        sim_node.seeds = addrs.clone();
        sim_node.chitchat.set_seed_addrs(addrs);
    }

    /// Sets a node's clock offset: it reads virtual time plus `offset`.
    pub fn set_clock_offset(&mut self, node: NodeIndex, offset: Duration) {
        self.nodes[node.0].clock_offset = offset;
        self.wake(node.0);
    }

    /// The node's protocol state.
    pub fn node(&self, node: NodeIndex) -> &Chitchat {
        &self.nodes[node.0].chitchat
    }

    /// Changes a node (set keys, leave, ...) through `change`, which gets the
    /// node's clock reading; the node's outputs are collected right after.
    pub fn with_node<T>(&mut self, node: NodeIndex, change: impl FnOnce(&mut Chitchat, Timestamp) -> T) -> T {
        let now = self.node_time(node.0);
        let result = change(&mut self.nodes[node.0].chitchat, now);
        self.collect_outputs(node.0);
        self.wake(node.0);
        result
    }

    /// Changes a node; its outputs are collected at the next step.
    pub fn node_mut(&mut self, node: NodeIndex) -> &mut Chitchat {
        self.timers.push(Reverse((self.now, node.0)));
        &mut self.nodes[node.0].chitchat
    }

    /// Every node index.
    pub fn node_indices(&self) -> impl Iterator<Item = NodeIndex> + '_ {
        (0..self.nodes.len()).map(NodeIndex)
    }

    /// The node's current identity.
    pub fn node_id(&self, node: NodeIndex) -> &NodeId {
        self.nodes[node.0].chitchat.self_id()
    }

    /// Whether the node runs (not crashed).
    pub fn is_up(&self, node: NodeIndex) -> bool {
        self.nodes[node.0].up
    }

    /// Takes note of a datagram injected from outside the simulated protocol
    /// (as an attacker or a test would): the identities it introduces may come
    /// back at any node even after they were removed, since whoever injected it
    /// can send it again at any time. Without this, the invariant that removed
    /// nodes never return through stale gossip would blame the protocol for a
    /// replayed introduction once the nodes' memory of the removal expired.
    pub fn note_injected(&mut self, packet: &crate::wire::Packet) {
        use crate::wire::{Message, NodeRef};
        let (Message::SynAck { delta, .. } | Message::Ack { delta }) = &packet.message else { return };
        for section in &delta.nodes {
            if let NodeRef::Full(node_id) = &section.node {
                let fingerprint = node_id.fingerprint();
                for node in &mut self.nodes {
                    node.record.vouch_for(fingerprint);
                }
            }
        }
    }

    /// The events the node emitted since the last call (if recording).
    pub fn take_events(&mut self, node: NodeIndex) -> Vec<Event> {
        std::mem::take(&mut self.nodes[node.0].events)
    }

    /// Stops a node abruptly: it sends and handles nothing until restarted.
    pub fn crash(&mut self, node: NodeIndex) {
        let sim_node = &mut self.nodes[node.0];
        sim_node.up = false;
        sim_node.backlog.clear();
        sim_node.stalled_until = None;
        self.break_streams_of(node.0);
    }

    /// Restarts a node with the next generation and no keys.
    pub fn restart(&mut self, node: NodeIndex) {
        self.break_streams_of(node.0);
        let now = self.now;
        let seed = self.rng.u64(..);
        let sim_node = &mut self.nodes[node.0];
        let (keyring, mode) = (sim_node.chitchat.keyring().cloned(), sim_node.chitchat.encryption_mode());
        sim_node.generation += 1;
        let mut config = sim_node.config.clone();
        config.rng_seed = seed;
        let id = NodeId::new(sim_node.name.clone(), sim_node.generation, sim_node.addr);
        sim_node.chitchat =
            Chitchat::new(config, id, Vec::<(String, String)>::new(), now + sim_node.clock_offset)
                .expect("configuration was valid");
        sim_node.chitchat.set_seed_addrs(sim_node.seeds.clone());
        // Keys survive a restart (an operator keeps them in files); the nonce salt
        // is drawn afresh.
        if let Some(keyring) = keyring {
            let salt = nonce_salt(self.seed, node.0, sim_node.generation);
            sim_node.chitchat.set_encryption(mode, keyring, salt).expect("accepted before the restart");
        }
        sim_node.up = true;
        sim_node.stalled_until = None;
        sim_node.backlog.clear();
        sim_node.events.clear();
        sim_node.record = ObserverRecord::default();
        self.wake(node.0);
    }

    /// Installs a keyring and encryption mode on a node, with a nonce salt
    /// derived from the simulation's seed, the node and its generation (a real
    /// node draws it from the operating system). The keys and mode are kept
    /// across restarts. Rotate keys with [`Simulation::with_node`].
    pub fn set_encryption(&mut self, node: NodeIndex, mode: EncryptionMode, keyring: Keyring) {
        let salt = nonce_salt(self.seed, node.0, self.nodes[node.0].generation);
        self.with_node(node, |chitchat, _| chitchat.set_encryption(mode, keyring, salt))
            .expect("the configuration must leave room for the sealed envelope");
    }

    /// Freezes a node for `duration`: it handles nothing, and datagrams for it
    /// wait in its socket (up to a bound) until it resumes.
    pub fn stall(&mut self, node: NodeIndex, duration: Duration) {
        let until = self.now + duration;
        self.nodes[node.0].stalled_until = Some(until);
        self.timers.push(Reverse((until, node.0)));
    }

    /// Splits the network: nodes of different groups cannot reach each other.
    /// Nodes in no group are cut off from everyone.
    pub fn partition(&mut self, groups: &[&[NodeIndex]]) {
        let mut map = std::collections::HashMap::new();
        for (group, members) in groups.iter().enumerate() {
            for member in members.iter() {
                map.insert(member.0, group);
            }
        }
        self.network.groups = Some(map);
    }

    /// Ends any partition.
    pub fn heal(&mut self) {
        self.network.groups = None;
    }

    /// Runs for `duration` of virtual time.
    pub fn run_for(&mut self, duration: Duration) -> Result<(), InvariantViolation> {
        let end = self.now + duration;
        while self.step(end)? {}
        self.now = self.now.max(end);
        Ok(())
    }

    /// Runs until `done` holds (checked after each instant of virtual time) or
    /// `limit` has passed. Returns whether `done` held.
    pub fn run_until(
        &mut self,
        limit: Duration,
        mut done: impl FnMut(&Simulation) -> bool,
    ) -> Result<bool, InvariantViolation> {
        let end = self.now + limit;
        let mut next_check = self.now;
        loop {
            if self.now >= next_check {
                if done(self) {
                    return Ok(true);
                }
                next_check = self.now + self.condition_interval;
            }
            if !self.step(end)? {
                self.now = self.now.max(end);
                return Ok(done(self));
            }
        }
    }

    fn node_time(&self, index: usize) -> Timestamp {
        self.now + self.nodes[index].clock_offset
    }

    fn violation(&self, description: String) -> InvariantViolation {
        InvariantViolation {
            seed: self.seed,
            at_millis: self.now.elapsed_since_epoch().as_millis() as u64,
            description,
        }
    }

    /// Processes everything due at the next instant, if it is not after `end`.
    fn step(&mut self, end: Timestamp) -> Result<bool, InvariantViolation> {
        let next_datagram = self.in_flight.peek().map(|Reverse((at, ..))| *at);
        let next_timer = loop {
            match self.timers.peek() {
                Some(&Reverse((at, index))) => {
                    if self.is_due_entry(at, index) {
                        break Some(at);
                    }
                    self.timers.pop();
                }
                None => break None,
            }
        };
        let next_stream = self.streams.next_arrival();
        let Some(at) = [next_datagram, next_timer, next_stream].into_iter().flatten().min() else {
            return Ok(false);
        };
        if at > end {
            return Ok(false);
        }
        self.now = self.now.max(at);
        let mut touched = BTreeSet::new();
        self.deliver_stream_flights(&mut touched);
        while let Some(&Reverse((due, sequence, to, from))) = self.in_flight.peek() {
            if due > self.now {
                break;
            }
            self.in_flight.pop();
            let Some(bytes) = self.payloads.remove(&sequence) else { continue };
            let node = &mut self.nodes[to];
            if !node.up {
                self.stats.unreachable += 1;
                continue;
            }
            if node.stalled_until.is_some_and(|until| until > self.now) {
                if node.backlog.len() < STALL_BACKLOG {
                    node.backlog.push_back((from, bytes));
                } else {
                    self.stats.unreachable += 1;
                }
                continue;
            }
            self.deliver(to, from, &bytes);
            touched.insert(to);
        }
        while let Some(&Reverse((due, index))) = self.timers.peek() {
            if due > self.now {
                break;
            }
            self.timers.pop();
            let node = &mut self.nodes[index];
            if !node.up || node.stalled_until.is_some_and(|until| until > self.now) {
                continue;
            }
            if node.stalled_until.take().is_some() {
                // Resuming: the socket's backlog is read first, all at once.
                while let Some((from, bytes)) = self.nodes[index].backlog.pop_front() {
                    self.deliver(index, from, &bytes);
                }
            }
            let now = self.node_time(index);
            self.nodes[index].chitchat.handle_timeout(now);
            touched.insert(index);
        }
        for index in touched {
            self.collect_outputs(index);
            self.wake(index);
            if self.check_invariants {
                let mut record = std::mem::take(&mut self.nodes[index].record);
                let nodes = &self.nodes;
                let owner_holds = |node: Fingerprint, key: &str, version: u64| {
                    nodes.iter().map(|sim_node| sim_node.chitchat.self_node_state()).any(|state| {
                        state.id().fingerprint() == node
                            && state
                                .get_versioned(key)
                                .is_some_and(|held| held.version == version && held.is_visible())
                    })
                };
                let checked = record.check(&nodes[index].chitchat, owner_holds);
                self.nodes[index].record = record;
                if let Err(description) = checked {
                    return Err(self.violation(description));
                }
            }
        }
        Ok(true)
    }

    fn is_due_entry(&self, at: Timestamp, index: usize) -> bool {
        let node = &self.nodes[index];
        if !node.up {
            return false;
        }
        if let Some(until) = node.stalled_until {
            return at == until;
        }
        let deadline = node.chitchat.poll_timeout().map(|deadline| self.sim_time(index, deadline));
        deadline == Some(at) || at <= self.now
    }

    /// A node's clock reading as virtual time.
    fn sim_time(&self, index: usize, node_time: Timestamp) -> Timestamp {
        let offset = self.nodes[index].clock_offset;
        Timestamp::from_nanos(node_time.as_nanos().saturating_sub(offset.as_nanos() as u64))
    }

    fn deliver(&mut self, to: usize, from: usize, bytes: &[u8]) {
        self.stats.delivered += 1;
        let now = self.node_time(to);
        let from_addr = self.nodes[from].addr;
        if self.nodes[to].chitchat.handle_datagram(now, from_addr, bytes).is_err() {
            self.stats.rejected += 1;
        }
    }

    fn wake(&mut self, index: usize) {
        if let Some(deadline) = self.nodes[index].chitchat.poll_timeout() {
            let at = self.sim_time(index, deadline).max(self.now);
            self.timers.push(Reverse((at, index)));
        }
    }

    fn collect_outputs(&mut self, index: usize) {
        self.collect_stream_outputs(index);
        let max_datagram = self.nodes[index].config.max_datagram_size;
        while let Some(transmit) = self.nodes[index].chitchat.poll_transmit() {
            self.stats.sent += 1;
            self.stats.bytes_sent += transmit.bytes.len() as u64;
            self.stats.max_datagram = self.stats.max_datagram.max(transmit.bytes.len());
            self.stats.window_max_datagram = self.stats.window_max_datagram.max(transmit.bytes.len());
            assert!(transmit.bytes.len() <= max_datagram, "a datagram exceeds the sender's maximum");
            let Some(&to) = self.by_addr.get(&transmit.to) else {
                self.stats.unreachable += 1;
                continue;
            };
            match self.network.fate(index, to, transmit.bytes.len(), &mut self.rng) {
                Fate::Dropped(DropReason::Loss) => self.stats.lost += 1,
                Fate::Dropped(DropReason::Partition) => self.stats.partitioned += 1,
                Fate::Dropped(DropReason::TooLarge) => self.stats.too_large += 1,
                Fate::Delivered(delays) => {
                    self.stats.duplicated += delays.len() as u64 - 1;
                    for delay in delays {
                        let sequence = self.next_sequence;
                        self.next_sequence += 1;
                        self.payloads.insert(sequence, transmit.bytes.clone());
                        self.in_flight.push(Reverse((self.now + delay, sequence, to, index)));
                    }
                }
            }
        }
        while let Some(event) = self.nodes[index].chitchat.poll_event() {
            if let Event::NodeDead(dead) = &event
                && self.is_running(dead)
            {
                self.stats.false_dead += 1;
            }
            if self.check_invariants {
                let mut record = std::mem::take(&mut self.nodes[index].record);
                record.note_event(&self.nodes[index].chitchat, &event, |node| !self.is_running(node));
                self.nodes[index].record = record;
            }
            if self.record_events {
                self.nodes[index].events.push(event);
            }
        }
    }

    /// Whether the incarnation `node` is running (up, not left).
    fn is_running(&self, node: &NodeId) -> bool {
        self.by_addr.get(&node.gossip_addr()).is_some_and(|&index| {
            let sim_node = &self.nodes[index];
            sim_node.up && sim_node.generation == node.generation() && !sim_node.chitchat.has_left()
        })
    }

    // ---- questions tests ask --------------------------------------------

    /// Names of the nodes `observer` sees live, sorted.
    pub fn live_names(&self, observer: NodeIndex) -> Vec<String> {
        let mut names: Vec<String> =
            self.node(observer).live_nodes().map(|id| id.name().to_string()).collect();
        names.sort();
        names
    }

    /// Whether every running node sees every running node live (and nothing else).
    pub fn all_see_all_live(&self) -> bool {
        let expected: BTreeSet<&NodeId> = self.running().map(|node| node.self_id()).collect();
        // Counted first: until the cluster has converged some node sees fewer,
        // and counting is cheaper than looking each one up.
        if !self.running().all(|node| node.live_nodes().count() == expected.len()) {
            return false;
        }
        self.running().all(|node| {
            let mut live = 0;
            for id in node.live_nodes() {
                if !expected.contains(id) {
                    return false;
                }
                live += 1;
            }
            live == expected.len()
        })
    }

    /// Whether every running node sees `target` with `status`.
    pub fn all_see(&self, target: &NodeId, status: NodeStatus) -> bool {
        self.running().all(|node| node.self_id() == target || node.node_status(target) == Some(status))
    }

    /// Whether no running node (but `target` itself) still tracks `target`.
    pub fn none_track(&self, target: &NodeId) -> bool {
        self.running().all(|node| node.self_id() == target || node.node_state(target).is_none())
    }

    /// Whether every running node holds `key` = `value` of `owner`.
    pub fn all_have_key(&self, owner: &NodeId, key: &str, value: &str) -> bool {
        self.running().all(|node| node.node_state(owner).is_some_and(|state| state.get(key) == Some(value)))
    }

    /// Whether every running node holds identical states of the running nodes
    /// (same versions and records) and the same live set.
    pub fn converged(&self) -> bool {
        let ids = self.running_ids();
        let mut views = self.running().map(|node| view(node, &ids));
        let Some(first) = views.next() else { return true };
        views.all(|other| other == first)
    }

    /// A human-readable dump of every running node's view: for each node it
    /// tracks, status, versions and records. For debugging a failed run.
    pub fn describe(&self) -> String {
        let mut out = String::new();
        for node in self.running() {
            out.push_str(&format!("{}:\n", node.self_id()));
            for state in node.node_states() {
                let records: Vec<String> = state
                    .records()
                    .map(|(key, record)| {
                        format!("{key}@{}{}", record.version, if record.is_visible() { "" } else { "†" })
                    })
                    .collect();
                out.push_str(&format!(
                    "  {} ({:?}) {:?} hb={} max={} gc={} [{}]\n",
                    state.id(),
                    state.id().fingerprint(),
                    node.node_status(state.id()),
                    state.heartbeat(),
                    state.max_version(),
                    state.last_gc_version(),
                    records.join(" ")
                ));
            }
        }
        out
    }

    /// Running nodes (up and not left).
    fn running(&self) -> impl Iterator<Item = &Chitchat> {
        self.nodes.iter().filter(|node| node.up && !node.chitchat.has_left()).map(|node| &node.chitchat)
    }

    fn running_ids(&self) -> BTreeSet<NodeId> {
        self.running().map(|node| node.self_id().clone()).collect()
    }
}

/// A nonce salt unique to a simulation, a node and one of its incarnations.
fn nonce_salt(seed: u64, index: usize, generation: u64) -> [u8; 16] {
    let mut rng =
        fastrand::Rng::with_seed(seed ^ (index as u64).rotate_left(32) ^ generation.rotate_left(48));
    std::array::from_fn(|_| rng.u8(..))
}

type View = Vec<(NodeId, u64, Vec<(String, String, u64)>, bool)>;

fn view(node: &Chitchat, ids: &BTreeSet<NodeId>) -> View {
    ids.iter()
        .map(|id| match node.node_state(id) {
            Some(state) => (
                id.clone(),
                state.max_version(),
                state
                    .records()
                    .map(|(key, record)| (key.to_string(), record.value.clone(), record.version))
                    .collect(),
                node.node_status(id) == Some(NodeStatus::Live),
            ),
            None => (id.clone(), u64::MAX, Vec::new(), false),
        })
        .collect()
}
