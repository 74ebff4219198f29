//! What the targets check after feeding a node: on `Err` nothing changed, on
//! `Ok` the core's invariants hold.

use std::collections::BTreeMap;

use chitchat_core::testing::DatagramSealer;

use chitchat_core::{Chitchat, DatagramError, Event, Fingerprint, Metrics, Timestamp, wire};

/// Everything observable of a node without draining it: its snapshot, queue
/// lengths, next deadline, counters and failure-detector view.
#[derive(Debug, PartialEq)]
pub struct Probe {
    snapshot: String,
    queues: (usize, usize, usize),
    timeout: Option<Timestamp>,
    metrics: Metrics,
    /// Phi of every tracked node, as bits: the failure detector's state.
    phis: Vec<Option<u64>>,
}

impl Probe {
    /// Observes `node` at `now`.
    pub fn of(node: &Chitchat, now: Timestamp) -> Self {
        let snapshot = node.snapshot();
        let phis = snapshot.nodes.iter().map(|entry| node.phi(&entry.id, now).map(f64::to_bits)).collect();
        Probe {
            snapshot: serde_json::to_string(&snapshot).expect("a snapshot serializes"),
            queues: chitchat_core::testing::queue_lengths(node),
            timeout: node.poll_timeout(),
            metrics: node.metrics(),
            phis,
        }
    }

    /// Panics unless `after` is this probe but for the counters a refused
    /// datagram must move: received, and exactly one rejection of its class.
    pub fn assert_refused(&self, after: &Probe, error: &DatagramError, len: usize) {
        let mut expected = self.metrics.clone();
        expected.datagrams_received += 1;
        expected.bytes_received += len as u64;
        let rejected = &mut expected.rejected;
        rejected.total += 1;
        match error {
            DatagramError::TooShort
            | DatagramError::TooLarge { .. }
            | DatagramError::BadMagic
            | DatagramError::UnsupportedVersion(_) => rejected.envelope += 1,
            DatagramError::Truncated
            | DatagramError::TrailingBytes(_)
            | DatagramError::InvalidUtf8
            | DatagramError::Malformed => rejected.decode += 1,
            DatagramError::WrongCluster => rejected.wrong_cluster += 1,
            DatagramError::Invalid(_) => rejected.invalid += 1,
            DatagramError::NotRunning => rejected.not_running += 1,
            DatagramError::UnknownKey(_) | DatagramError::Unauthenticated => rejected.unauthenticated += 1,
            DatagramError::PlaintextRefused => rejected.plaintext_refused += 1,
            DatagramError::Replayed => rejected.replayed += 1,
            other => panic!("an error class the probe does not know: {other:?}"),
        }
        assert_eq!(after.metrics, expected, "a refused datagram ({error}) moved the wrong counters");
        assert_eq!(after.snapshot, self.snapshot, "a refused datagram ({error}) changed the state");
        assert_eq!(after.queues, self.queues, "a refused datagram ({error}) queued an output");
        assert_eq!(after.timeout, self.timeout, "a refused datagram ({error}) moved a timer");
        assert_eq!(after.phis, self.phis, "a refused datagram ({error}) fed the failure detector");
    }
}

/// Feeds `bytes` to `node` and checks the outcome: on `Err`, a probe taken
/// before equals one taken after (but for the rejection counters); on `Ok`, the
/// node's own state did not change (nobody may speak for it). Drains nothing:
/// run [`Watch::settle`] (or the simulator's checks) next.
pub fn feed(
    node: &mut Chitchat,
    now: Timestamp,
    from: std::net::SocketAddr,
    bytes: &[u8],
) -> Result<(), DatagramError> {
    let before = Probe::of(node, now);
    let self_before = self_state(node);
    let result = node.handle_datagram(now, from, bytes);
    match &result {
        Err(error) => before.assert_refused(&Probe::of(node, now), error, bytes.len()),
        Ok(()) => assert_eq!(self_state(node), self_before, "a datagram changed this node's own state"),
    }
    result
}

/// This node's own records and versions: no datagram may change them.
fn self_state(node: &Chitchat) -> String {
    let state = node.self_node_state();
    let records: Vec<_> = state.records().map(|(key, record)| (key.to_string(), record.clone())).collect();
    format!("{:?} {} {} {:?}", state.id(), state.max_version(), state.last_gc_version(), records)
}

/// Remembers what a node showed, to check that it only moves forward.
#[derive(Default)]
pub struct Watch {
    /// Highest max version seen per tracked node, forgotten on reset or removal.
    versions: BTreeMap<Fingerprint, u64>,
    /// Events the node had dropped when last drained.
    events_dropped: u64,
    /// Opens what the node seals, if it seals.
    opener: Option<DatagramSealer>,
}

impl Watch {
    /// A watch that starts from what `node` holds now.
    pub fn new(node: &Chitchat) -> Self {
        let mut watch = Watch { events_dropped: node.metrics().events_dropped, ..Watch::default() };
        watch.check(node);
        watch
    }

    /// Opens the node's sealed datagrams with `opener` (holding the node's
    /// primary key) before checking them.
    pub fn with_opener(mut self, opener: DatagramSealer) -> Self {
        self.opener = Some(opener);
        self
    }

    /// Checks the bounds, that versions only grow, and that every queued
    /// datagram fits and decodes. Drains nothing.
    pub fn check(&mut self, node: &Chitchat) {
        let config = node.config();
        let (transmits, events, removed) = chitchat_core::testing::queue_lengths(node);
        assert!(transmits <= config.max_pending_transmits, "{transmits} datagrams queued");
        assert!(events <= config.max_pending_events, "{events} events queued");
        assert!(removed <= config.max_nodes, "{removed} removed identities remembered");
        let tracked = node.node_states().count();
        assert!(tracked <= config.max_nodes, "{tracked} nodes tracked, max_nodes is {}", config.max_nodes);
        for state in node.node_states() {
            assert!(
                state.num_records() <= config.max_keys_per_node,
                "{} holds {} records, max_keys_per_node is {}",
                state.id(),
                state.num_records(),
                config.max_keys_per_node
            );
            let seen = self.versions.entry(state.id().fingerprint()).or_insert(0);
            assert!(
                state.max_version() >= *seen,
                "{}'s max version went back from {} to {}",
                state.id(),
                seen,
                state.max_version()
            );
            *seen = state.max_version();
        }
    }

    /// Drains the node's outputs (checking them), then checks the invariants.
    pub fn settle(&mut self, node: &mut Chitchat) {
        self.drain(node);
        self.check(node);
    }

    /// Takes note of an event: a reset or removal lets a node's versions restart.
    pub fn note(&mut self, event: &Event) {
        if let Event::NodeReset(node) | Event::NodeRemoved(node) = event {
            self.versions.remove(&node.fingerprint());
        }
    }

    /// Drains the node's outputs, checking each: datagrams fit the maximum and
    /// decode to what re-encodes to the same bytes.
    pub fn drain(&mut self, node: &mut Chitchat) {
        let max = node.config().max_datagram_size;
        while let Some(transmit) = node.poll_transmit() {
            assert!(transmit.bytes.len() <= max, "a {}-byte datagram exceeds {max}", transmit.bytes.len());
            let bytes = match &mut self.opener {
                Some(opener) => opener
                    .open(&transmit.bytes, &node.config().cluster_id)
                    .unwrap_or_else(|error| panic!("the node sent a datagram its peers cannot open: {error}"))
                    .to_vec(),
                None => transmit.bytes,
            };
            let packet = wire::decode(&bytes)
                .unwrap_or_else(|error| panic!("the node sent a datagram it cannot decode: {error}"));
            assert_eq!(wire::encode(&packet), bytes, "a sent datagram does not re-encode the same");
        }
        while let Some(event) = node.poll_event() {
            self.note(&event);
        }
        let dropped = node.metrics().events_dropped;
        if dropped > self.events_dropped {
            // A reset or removal may be among the lost events.
            self.versions.clear();
            self.events_dropped = dropped;
        }
    }
}
