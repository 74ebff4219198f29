//! The probe of "nothing changed": what a refused datagram must leave as it
//! was.

use std::net::SocketAddr;

use crate::chitchat::Chitchat;
use crate::error::DatagramError;
use crate::metrics::Metrics;
use crate::snapshot::ClusterSnapshot;
use crate::time::Timestamp;

/// Everything observable of a node without draining it: its snapshot, queue
/// lengths, next deadline, counters and failure-detector view.
#[derive(Debug, PartialEq)]
pub struct Probe {
    snapshot: ClusterSnapshot,
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
            snapshot,
            queues: node.queue_lengths(),
            timeout: node.poll_timeout(),
            metrics: node.metrics(),
            phis,
        }
    }

    /// Panics unless `after` is this probe but for the counters a refused
    /// datagram of `len` bytes must move: received, and exactly one rejection
    /// of `error`'s class.
    pub fn assert_refused(&self, after: &Probe, error: &DatagramError, len: usize) {
        let mut expected = self.received(len);
        // The class is listed here again, apart from the core's own mapping, so
        // that a datagram counted in the wrong class is caught.
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
        }
        self.assert_only_counted(after, &expected, &format!("a refused datagram ({error})"));
    }

    /// Panics unless `after` is this probe but for the counters of one datagram
    /// of `len` bytes received and those `count` moves (it gets the expected
    /// counters to update): for a datagram that is accepted yet must change
    /// nothing else, such as a `BadCluster` from a stranger.
    pub fn assert_ignored(&self, after: &Probe, len: usize, count: impl FnOnce(&mut Metrics)) {
        let mut expected = self.received(len);
        count(&mut expected);
        self.assert_only_counted(after, &expected, "an ignored datagram");
    }

    /// This probe's counters with one more datagram of `len` bytes received.
    fn received(&self, len: usize) -> Metrics {
        let mut metrics = self.metrics.clone();
        metrics.datagrams_received += 1;
        metrics.bytes_received += len as u64;
        metrics
    }

    fn assert_only_counted(&self, after: &Probe, expected: &Metrics, what: &str) {
        assert_eq!(&after.metrics, expected, "{what} moved the wrong counters");
        assert_eq!(after.snapshot, self.snapshot, "{what} changed the state");
        assert_eq!(after.queues, self.queues, "{what} queued an output");
        assert_eq!(after.timeout, self.timeout, "{what} moved a timer");
        assert_eq!(after.phis, self.phis, "{what} fed the failure detector");
    }
}

/// Feeds `bytes` to `node` and checks the outcome: on `Err`, a probe taken
/// before equals one taken after (but for the rejection counters); on `Ok`, the
/// node's own state did not change (nobody may speak for it). Drains nothing.
pub fn feed(
    node: &mut Chitchat,
    now: Timestamp,
    from: SocketAddr,
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
    let records: Vec<_> = state.records().collect();
    format!("{:?} {} {} {:?}", state.id(), state.max_version(), state.last_gc_version(), records)
}
