//! Invariants checked after every step of a simulation.

use std::collections::{BTreeMap, BTreeSet};
use std::fmt;

use crate::chitchat::Chitchat;
use crate::events::Event;
use crate::identity::{Fingerprint, NodeId};

/// A broken invariant: the run stops, and this says how to replay it.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct InvariantViolation {
    /// The simulation's seed.
    pub seed: u64,
    /// Virtual time of the violation, in milliseconds.
    pub at_millis: u64,
    /// What broke.
    pub description: String,
}

impl fmt::Display for InvariantViolation {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "invariant violated at {} ms (seed {}): {}", self.at_millis, self.seed, self.description)
    }
}

impl std::error::Error for InvariantViolation {}

/// What the checker remembers of one observer.
#[derive(Default)]
pub(crate) struct ObserverRecord {
    /// Highest max version seen per node (forgotten on a reset of that node).
    versions: BTreeMap<Fingerprint, u64>,
    /// Last heartbeat seen per node.
    heartbeats: BTreeMap<Fingerprint, u64>,
    /// Identities removed that are not running (crashed, left or superseded),
    /// with their heartbeat then: they may come back only with news of a later
    /// heartbeat (which a partition can hold back), never with stale gossip.
    removed_for_good: BTreeMap<Fingerprint, u64>,
    /// Keys seen deleted or expired: (node, key) → version of the deletion.
    deleted: BTreeMap<(Fingerprint, String), u64>,
    /// The live and ready sets as the events tell them ([`Event::live_change`],
    /// [`Event::ready_change`]): the adapters publish them so.
    live: BTreeSet<NodeId>,
    ready: BTreeSet<NodeId>,
}

impl ObserverRecord {
    /// Takes note of an event the observer emitted. `gone_for_good` says whether
    /// a node identity can never legitimately return.
    pub(super) fn note_event(
        &mut self,
        observer: &Chitchat,
        event: &Event,
        gone_for_good: impl Fn(&NodeId) -> bool,
    ) {
        for (set, change) in [(&mut self.live, event.live_change()), (&mut self.ready, event.ready_change())]
        {
            match change {
                Some((node, true)) => set.insert(node.clone()),
                Some((node, false)) => set.remove(node),
                None => false,
            };
        }
        match event {
            Event::NodeReset(node) => {
                self.versions.remove(&node.fingerprint());
            }
            Event::NodeRemoved(node) => {
                // The observer forgot the node: if it learns of it again, it
                // starts afresh from whoever tells it.
                let fingerprint = node.fingerprint();
                self.versions.remove(&fingerprint);
                self.deleted.retain(|(deleted_node, _), _| *deleted_node != fingerprint);
                if gone_for_good(node) {
                    let heartbeat = self.heartbeats.get(&fingerprint).copied().unwrap_or(0);
                    self.removed_for_good.insert(fingerprint, heartbeat);
                }
            }
            Event::KeyDeleted { node, key } | Event::KeyExpired { node, key } => {
                if observer
                    .node_state(node)
                    .is_some_and(|state| state.max_version() < state.last_gc_version())
                {
                    // Dropped by a reset cut short: "deleted" only stands for
                    // "not held up to the watermark", and the records of the
                    // gap may come back from a peer that collected as much.
                    return;
                }
                let version =
                    observer.node_state(node).and_then(|state| state.get_versioned(key)).map_or_else(
                        || observer.node_state(node).map_or(0, |state| state.last_gc_version()),
                        |record| record.version,
                    );
                self.deleted.insert((node.fingerprint(), key.to_string()), version);
            }
            _ => {}
        }
    }

    /// An identity was vouched for from outside the protocol (an injected
    /// datagram introduced it): it may come back, whatever its heartbeat.
    pub(super) fn vouch_for(&mut self, fingerprint: Fingerprint) {
        self.removed_for_good.remove(&fingerprint);
    }

    /// Checks the observer's state against what was recorded. `owner_holds`
    /// tells whether a node's own state (the ground truth, while its
    /// incarnation exists in the simulation) holds a key at a version, visible.
    pub(super) fn check(
        &mut self,
        observer: &Chitchat,
        owner_holds: impl Fn(Fingerprint, &str, u64) -> bool,
    ) -> Result<(), String> {
        let config = observer.config();
        observer.check_liveness().map_err(|error| format!("{}: {error}", observer.self_id()))?;
        if observer.metrics().events_dropped == 0 {
            let live: BTreeSet<NodeId> = observer.live_nodes().cloned().collect();
            let ready: BTreeSet<NodeId> = observer.ready_nodes().cloned().collect();
            if live != self.live || ready != self.ready {
                return Err(format!(
                    "{}'s events tell live {:?} and ready {:?}, its views say {live:?} and {ready:?}",
                    observer.self_id(),
                    self.live,
                    self.ready
                ));
            }
        }
        let (transmits, events, removed) = observer.queue_lengths();
        if transmits > config.max_pending_transmits
            || events > config.max_pending_events
            || removed > config.max_nodes
        {
            return Err(format!(
                "{}: a queue exceeds its bound ({transmits}, {events}, {removed})",
                observer.self_id()
            ));
        }
        let mut count = 0;
        let mut remote_bytes = 0;
        let self_fingerprint = observer.self_id().fingerprint();
        for (state, visible) in observer.tracked_states() {
            count += 1;
            let fingerprint = state.id().fingerprint();
            if fingerprint != self_fingerprint {
                remote_bytes += state.held_bytes();
            }
            if let Some(&removed_at) = self.removed_for_good.get(&fingerprint) {
                if state.heartbeat() <= removed_at {
                    return Err(format!(
                        "{} resurrected removed node {} by stale gossip (heartbeat {} <= {removed_at})",
                        observer.self_id(),
                        state.id(),
                        state.heartbeat()
                    ));
                }
                self.removed_for_good.remove(&fingerprint);
            }
            self.heartbeats.insert(fingerprint, state.heartbeat());
            if state.num_records() > config.max_keys_per_node {
                return Err(format!(
                    "{} holds {} records of {}",
                    observer.self_id(),
                    state.num_records(),
                    state.id()
                ));
            }
            if !visible {
                // Unproven, and unseen by the application: dropped wholesale
                // once a proven sender names the node.
                continue;
            }
            let seen = self.versions.entry(fingerprint).or_insert(0);
            if state.max_version() < *seen {
                return Err(format!(
                    "{}'s version of {} went back from {} to {}",
                    observer.self_id(),
                    state.id(),
                    seen,
                    state.max_version()
                ));
            }
            *seen = state.max_version();
        }
        if remote_bytes != observer.remote_state_bytes() || remote_bytes > config.max_remote_state_bytes {
            return Err(format!(
                "{} holds {remote_bytes} bytes of remote records but counts {} (budget {})",
                observer.self_id(),
                observer.remote_state_bytes(),
                config.max_remote_state_bytes
            ));
        }
        if count > config.max_nodes {
            return Err(format!("{} tracks {count} nodes, more than max_nodes", observer.self_id()));
        }
        for ((node, key), deleted_at) in &self.deleted {
            let Some(state) = observer.node_state_by_fingerprint(*node) else { continue };
            // A reset cut short drops every record up to the sender's watermark,
            // live ones included, and reports them deleted at the watermark (an
            // upper bound): one its owner still holds may come back.
            if let Some(record) = state.get_versioned(key)
                && record.version < *deleted_at
                && record.is_visible()
                && !owner_holds(*node, key, record.version)
            {
                return Err(format!(
                    "{} resurrected key {key} of {} at version {} (deleted at {deleted_at})",
                    observer.self_id(),
                    state.id(),
                    record.version
                ));
            }
        }
        Ok(())
    }
}
