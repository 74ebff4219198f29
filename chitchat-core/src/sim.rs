//! A deterministic in-process cluster simulator (feature `sim`).
//!
//! Many [`Chitchat`] nodes share one process and one virtual clock that jumps to
//! the next event: the earliest node deadline or datagram arrival. The network
//! delays datagrams by a latency plus jitter, drops them at random, and honours
//! partitions; nodes can crash and restart with a new generation. All randomness
//! comes from one seed: the same seed and calls replay the same run exactly.
//!
//! ```
//! use std::time::Duration;
//! use chitchat_core::Config;
//! use chitchat_core::sim::Simulation;
//!
//! let mut sim = Simulation::new(7);
//! let nodes: Vec<_> = (0..5).map(|i| sim.add_node(&format!("node-{i}"), Config::local_test())).collect();
//! sim.set_seeds_all(&[nodes[0]]);
//! assert!(sim.run_until(Duration::from_secs(10), |sim| sim.all_see_all_live()));
//! ```

use std::cmp::Reverse;
use std::collections::{BTreeMap, BTreeSet, BinaryHeap};
use std::net::{Ipv4Addr, SocketAddr};
use std::time::Duration;

use crate::chitchat::Chitchat;
use crate::cluster::NodeStatus;
use crate::config::Config;
use crate::events::Event;
use crate::identity::NodeId;
use crate::time::Timestamp;

/// A node of the simulation, by its index of creation.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct NodeIndex(pub usize);

/// How the simulated network treats datagrams.
#[derive(Clone, Debug, PartialEq)]
pub struct NetworkConfig {
    /// One-way delay of every datagram.
    pub latency: Duration,
    /// A uniformly random extra delay in `[0, jitter)` (reorders datagrams).
    pub jitter: Duration,
    /// Probability that a datagram is lost.
    pub loss: f64,
}

impl Default for NetworkConfig {
    fn default() -> Self {
        NetworkConfig { latency: Duration::from_millis(1), jitter: Duration::ZERO, loss: 0.0 }
    }
}

struct SimNode {
    name: String,
    config: Config,
    generation: u64,
    addr: SocketAddr,
    seeds: Vec<SocketAddr>,
    chitchat: Chitchat,
    up: bool,
    events: Vec<Event>,
}

struct InFlight {
    to: SocketAddr,
    from: SocketAddr,
    bytes: Vec<u8>,
}

/// Counters of the simulated network.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct NetworkStats {
    /// Datagrams nodes sent.
    pub sent: u64,
    /// Bytes nodes sent.
    pub bytes_sent: u64,
    /// Datagrams lost (random loss, partitions, crashed receivers).
    pub dropped: u64,
    /// Datagrams delivered.
    pub delivered: u64,
    /// Delivered datagrams the receiver refused.
    pub rejected: u64,
    /// The largest datagram sent.
    pub max_datagram: usize,
}

/// A simulated cluster.
pub struct Simulation {
    now: Timestamp,
    rng: fastrand::Rng,
    network: NetworkConfig,
    nodes: Vec<SimNode>,
    by_addr: BTreeMap<SocketAddr, usize>,
    in_flight: BinaryHeap<Reverse<(Timestamp, u64, usize)>>,
    payloads: BTreeMap<usize, InFlight>,
    timers: BinaryHeap<Reverse<(Timestamp, usize)>>,
    next_id: u64,
    /// Node → partition group; nodes in different groups cannot talk.
    groups: Option<BTreeMap<SocketAddr, usize>>,
    stats: NetworkStats,
    record_events: bool,
}

impl Simulation {
    /// An empty simulation whose randomness derives from `seed`.
    pub fn new(seed: u64) -> Self {
        Simulation {
            now: Timestamp::ZERO,
            rng: fastrand::Rng::with_seed(seed),
            network: NetworkConfig::default(),
            nodes: Vec::new(),
            by_addr: BTreeMap::new(),
            in_flight: BinaryHeap::new(),
            payloads: BTreeMap::new(),
            timers: BinaryHeap::new(),
            next_id: 0,
            groups: None,
            stats: NetworkStats::default(),
            record_events: true,
        }
    }

    /// Sets the network model.
    pub fn set_network(&mut self, network: NetworkConfig) {
        self.network = network;
    }

    /// Whether nodes' events are kept for [`Simulation::take_events`] (default on;
    /// turn off for long runs of large clusters).
    pub fn set_record_events(&mut self, record: bool) {
        self.record_events = record;
    }

    /// Virtual time now.
    pub fn now(&self) -> Timestamp {
        self.now
    }

    /// Counters of the network.
    pub fn stats(&self) -> &NetworkStats {
        &self.stats
    }

    /// Adds a node named `name` (its seed for randomness derived from the
    /// simulation's) and returns its index. Its address is `127.1.x.y:7000`.
    pub fn add_node(&mut self, name: &str, mut config: Config) -> NodeIndex {
        let index = self.nodes.len();
        let addr = SocketAddr::new(
            Ipv4Addr::new(127, 1, (index >> 8) as u8, index as u8).into(),
            7000 + (index >> 16) as u16,
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
            events: Vec::new(),
        });
        self.by_addr.insert(addr, index);
        self.schedule(index);
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

    /// The node's protocol state.
    pub fn node(&self, node: NodeIndex) -> &Chitchat {
        &self.nodes[node.0].chitchat
    }

    /// Changes a node (set keys, leave, ...); its outputs are collected at the
    /// next step.
    pub fn node_mut(&mut self, node: NodeIndex) -> &mut Chitchat {
        let chitchat = &mut self.nodes[node.0].chitchat;
        self.timers.push(Reverse((self.now, node.0)));
        chitchat
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

    /// The events the node emitted since the last call.
    pub fn take_events(&mut self, node: NodeIndex) -> Vec<Event> {
        std::mem::take(&mut self.nodes[node.0].events)
    }

    /// Stops a node abruptly: it sends and handles nothing until restarted.
    pub fn crash(&mut self, node: NodeIndex) {
        self.nodes[node.0].up = false;
    }

    /// Restarts a crashed (or running) node with the next generation and no keys.
    pub fn restart(&mut self, node: NodeIndex) {
        let now = self.now;
        let seed = self.rng.u64(..);
        let sim_node = &mut self.nodes[node.0];
        sim_node.generation += 1;
        let mut config = sim_node.config.clone();
        config.rng_seed = seed;
        let id = NodeId::new(sim_node.name.clone(), sim_node.generation, sim_node.addr);
        sim_node.chitchat =
            Chitchat::new(config, id, Vec::<(String, String)>::new(), now).expect("configuration was valid");
        sim_node.chitchat.set_seed_addrs(sim_node.seeds.clone());
        sim_node.up = true;
        sim_node.events.clear();
        self.schedule(node.0);
    }

    /// Splits the network: nodes of different groups cannot reach each other.
    /// Nodes in no group are cut off from everyone.
    pub fn partition(&mut self, groups: &[&[NodeIndex]]) {
        let mut map = BTreeMap::new();
        for (group, members) in groups.iter().enumerate() {
            for member in members.iter() {
                map.insert(self.nodes[member.0].addr, group);
            }
        }
        self.groups = Some(map);
    }

    /// Ends any partition.
    pub fn heal(&mut self) {
        self.groups = None;
    }

    /// Runs for `duration` of virtual time.
    pub fn run_for(&mut self, duration: Duration) {
        let end = self.now + duration;
        while self.step(end) {}
        self.now = self.now.max(end);
    }

    /// Runs until `done` holds (checked after each instant of virtual time) or
    /// `limit` has passed. Returns whether `done` held.
    pub fn run_until(&mut self, limit: Duration, mut done: impl FnMut(&Simulation) -> bool) -> bool {
        let end = self.now + limit;
        loop {
            if done(self) {
                return true;
            }
            if !self.step(end) {
                self.now = self.now.max(end);
                return done(self);
            }
        }
    }

    /// Processes everything due at the next instant, if it is not after `end`.
    fn step(&mut self, end: Timestamp) -> bool {
        let next_datagram = self.in_flight.peek().map(|Reverse((at, _, _))| *at);
        let next_timer = loop {
            match self.timers.peek() {
                Some(&Reverse((at, index))) => {
                    let node = &self.nodes[index];
                    let current = node.chitchat.poll_timeout();
                    // Entries are lazily invalidated: keep only live deadlines.
                    if node.up && (current == Some(at) || at == self.now) {
                        break Some(at);
                    }
                    self.timers.pop();
                }
                None => break None,
            }
        };
        let Some(at) = [next_datagram, next_timer].into_iter().flatten().min() else { return false };
        if at > end {
            return false;
        }
        self.now = self.now.max(at);
        let mut touched = BTreeSet::new();
        while let Some(&Reverse((due, _, id))) = self.in_flight.peek() {
            if due > self.now {
                break;
            }
            self.in_flight.pop();
            let Some(datagram) = self.payloads.remove(&id) else { continue };
            let Some(&index) = self.by_addr.get(&datagram.to) else { continue };
            let node = &mut self.nodes[index];
            if !node.up {
                self.stats.dropped += 1;
                continue;
            }
            self.stats.delivered += 1;
            if node.chitchat.handle_datagram(self.now, datagram.from, &datagram.bytes).is_err() {
                self.stats.rejected += 1;
            }
            touched.insert(index);
        }
        while let Some(&Reverse((due, index))) = self.timers.peek() {
            if due > self.now {
                break;
            }
            self.timers.pop();
            if self.nodes[index].up {
                self.nodes[index].chitchat.handle_timeout(self.now);
                touched.insert(index);
            }
        }
        for index in touched {
            self.collect_outputs(index);
            self.schedule(index);
        }
        true
    }

    fn schedule(&mut self, index: usize) {
        if let Some(deadline) = self.nodes[index].chitchat.poll_timeout() {
            self.timers.push(Reverse((deadline, index)));
        }
    }

    fn collect_outputs(&mut self, index: usize) {
        let from = self.nodes[index].addr;
        while let Some(transmit) = self.nodes[index].chitchat.poll_transmit() {
            self.stats.sent += 1;
            self.stats.bytes_sent += transmit.bytes.len() as u64;
            self.stats.max_datagram = self.stats.max_datagram.max(transmit.bytes.len());
            let cut_off = self.groups.as_ref().is_some_and(|groups| {
                groups.get(&from) != groups.get(&transmit.to) || !groups.contains_key(&from)
            });
            if cut_off || self.rng.f64() < self.network.loss {
                self.stats.dropped += 1;
                continue;
            }
            let jitter = if self.network.jitter.is_zero() {
                Duration::ZERO
            } else {
                self.network.jitter.mul_f64(self.rng.f64())
            };
            let at = self.now + self.network.latency + jitter;
            let id = self.next_id;
            self.next_id += 1;
            self.payloads.insert(id as usize, InFlight { to: transmit.to, from, bytes: transmit.bytes });
            self.in_flight.push(Reverse((at, id, id as usize)));
        }
        let record = self.record_events;
        let node = &mut self.nodes[index];
        while let Some(event) = node.chitchat.poll_event() {
            if record {
                node.events.push(event);
            }
        }
    }

    // ---- questions tests ask --------------------------------------------

    /// Names of the nodes `observer` sees live, sorted.
    pub fn live_names(&self, observer: NodeIndex) -> Vec<String> {
        let mut names: Vec<String> = self.node(observer).live_nodes().map(|id| id.name.clone()).collect();
        names.sort();
        names
    }

    /// Whether every running node sees every running node live (and nothing else).
    pub fn all_see_all_live(&self) -> bool {
        let expected: BTreeSet<&NodeId> = self
            .nodes
            .iter()
            .filter(|node| node.up && !node.chitchat.has_left())
            .map(|node| node.chitchat.self_id())
            .collect();
        self.nodes.iter().filter(|node| node.up && !node.chitchat.has_left()).all(|node| {
            let live: BTreeSet<&NodeId> = node.chitchat.live_nodes().collect();
            live == expected
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

    /// Whether every running node holds identical states of the running nodes
    /// (same versions, heartbeats aside, and same records) and the same live set.
    pub fn converged(&self) -> bool {
        let views: Vec<_> = self.running().map(|node| view(node, &self.running_ids())).collect();
        views.windows(2).all(|pair| pair[0] == pair[1])
    }

    fn running(&self) -> impl Iterator<Item = &Chitchat> {
        self.nodes.iter().filter(|node| node.up && !node.chitchat.has_left()).map(|node| &node.chitchat)
    }

    fn running_ids(&self) -> BTreeSet<NodeId> {
        self.running().map(|node| node.self_id().clone()).collect()
    }
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
