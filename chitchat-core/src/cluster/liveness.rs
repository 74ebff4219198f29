//! Liveness: heartbeats as arrivals for the failure detector, first-hand proof
//! of life, verdicts once a round, and forgiveness for this node's own pauses
//! and lateness.

use std::net::SocketAddr;
use std::time::Duration;

use crate::clock::Forgiveness;
use crate::cluster::ClusterState;
use crate::events::Event;
use crate::failure_detector::{ArrivalWindow, DetectorSettings};
use crate::identity::Fingerprint;
use crate::membership::{NodeEntry, NodeStatus};
use crate::time::Timestamp;
use crate::wire::{Delta, Digest, Message, NodeRef};

/// Raises a node's known heartbeat; growth is an arrival for the failure
/// detector, and returns whether the node was dead (the caller revives it: it
/// beat after we gave up on it). A crashed node's last heartbeats have reached
/// every connected node long before any of them declares it dead, so growth
/// cannot come from them. Growth that may be old news (`fresh` is false: this
/// node just came out of a pause) is recorded but is no arrival and revives
/// nothing.
pub(super) fn grow_heartbeat(
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
    entry.status == NodeStatus::Dead || (entry.status == NodeStatus::Left && entry.provisional_left)
}

impl ClusterState {
    /// A node's heartbeat is `heartbeat` as someone reports it: if it grew, it is
    /// an arrival for the failure detector, and a dead node comes back to life.
    pub(crate) fn report_heartbeat(&mut self, fingerprint: Fingerprint, heartbeat: u64, now: Timestamp) {
        if fingerprint == self.self_fingerprint() {
            return;
        }
        let fresh = self.is_fresh(now);
        if let Some(entry) = self.membership.get_mut(&fingerprint)
            && grow_heartbeat(entry, heartbeat, now, fresh, &self.detector)
        {
            self.revive(fingerprint, now);
        }
    }

    /// Before a message from `from` is processed: if a removed identity lives at
    /// that address and the message names it, the node talks to us itself, so
    /// it is alive: stop ignoring it.
    pub(crate) fn pardon_sender(&mut self, from: SocketAddr, message: &Message, now: Timestamp) {
        if self.is_fresh(now)
            && let Some(fingerprint) = self.membership.removed().fingerprint_at(&from)
            && mentions(message, fingerprint)
        {
            self.membership.removed_mut().forget(fingerprint);
        }
    }

    /// After a message from `from` is processed: if a node we saw dead lives at
    /// that address and the message names it, it is first-hand proof of life.
    pub(crate) fn confirm_sender(&mut self, from: SocketAddr, message: &Message, now: Timestamp) {
        if !self.is_fresh(now) {
            return;
        }
        let Some(fingerprint) = self.membership.at_addr(&from) else { return };
        let Some(entry) = self.membership.get_mut(&fingerprint) else { return };
        // Nothing to learn of a live node already heard from first-hand: spare
        // the walk over the message.
        if (entry.heard_first_hand && entry.status != NodeStatus::Dead) || !mentions(message, fingerprint) {
            return;
        }
        entry.heard_first_hand = true;
        if entry.status == NodeStatus::Dead {
            entry.arrivals = ArrivalWindow::new(now);
            self.revive(fingerprint, now);
        }
    }

    /// Marks a dead node live again.
    pub(crate) fn revive(&mut self, fingerprint: Fingerprint, now: Timestamp) {
        let Some(entry) = self.membership.get_mut(&fingerprint) else { return };
        entry.status = NodeStatus::Live;
        entry.status_since = now;
        entry.provisional_left = false;
        self.events.push(Event::NodeLive(entry.state.id().clone()));
        self.update_ready(fingerprint);
    }

    /// Whether a node is live by a fresh look at its phi (its status may be a
    /// round old, or older after a stall).
    /// After a pause, a node heard of only before it (or in the backlog right
    /// after it) is not vouched for: it may have died meanwhile.
    pub(crate) fn is_live_now(&self, entry: &NodeEntry, now: Timestamp) -> bool {
        entry.status == NodeStatus::Live
            && (entry.state.id().fingerprint() == self.self_fingerprint()
                || (entry.arrivals.phi(now, &self.detector) <= self.config.phi_threshold
                    && entry.arrivals.last_arrival() >= self.doubtful_until))
    }

    /// Whether news handled at `now` is taken as current: it is, but during the
    /// gossip interval after a pause of this node, when datagrams that waited in
    /// its socket are handled.
    pub(crate) fn is_fresh(&self, now: Timestamp) -> bool {
        now >= self.doubtful_until
    }

    /// Forgives peers' silence that was this node's own doing.
    pub(crate) fn forgive(&mut self, forgiveness: Forgiveness, now: Timestamp) {
        match forgiveness {
            Forgiveness::Pause(pause) => self.forgive_pause(pause, now),
            Forgiveness::Lateness(lateness) => self.forgive_lateness(lateness, now),
        }
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
    fn forgive_pause(&mut self, pause: Duration, now: Timestamp) {
        self.forgive_lateness(pause, now);
        // The memory of removals outlasts stale gossip elsewhere, which did not
        // age during this node's pause (or its clock's jump).
        self.membership.removed_mut().postpone(pause);
        self.doubtful_until = now + self.config.gossip_interval;
        self.metrics.pauses += 1;
    }

    /// This node's gossip round ran `lateness` after it was due (its event loop
    /// was busy or starved): peers' silence during that time is forgiven, so
    /// that liveness is judged in the node's own rounds and an overloaded node
    /// does not blame its peers for its own slowness. (Their silence still
    /// counts at least one gossip interval a round.)
    fn forgive_lateness(&mut self, lateness: Duration, now: Timestamp) {
        let self_fingerprint = self.self_fingerprint();
        for (fingerprint, entry) in self.membership.iter_mut() {
            if *fingerprint != self_fingerprint {
                entry.arrivals.forgive(lateness, now);
            }
        }
    }

    /// Judges liveness, removes nodes past their grace period, and collects
    /// garbage in every node's state.
    pub(crate) fn maintain(&mut self, now: Timestamp) {
        let threshold = self.config.phi_threshold;
        let grace = self.config.dead_node_grace_period;
        let mut newly_dead = Vec::new();
        let mut expired = Vec::new();
        for (fingerprint, entry) in self.membership.iter() {
            if *fingerprint == self.self_fingerprint() {
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
            if let Some(entry) = self.membership.get_mut(&fingerprint) {
                entry.status = NodeStatus::Dead;
                entry.status_since = now;
                self.events.push(Event::NodeDead(entry.state.id().clone()));
                self.update_ready(fingerprint);
            }
        }
        for fingerprint in expired {
            self.remove_node(fingerprint, now);
        }
        self.membership.removed_mut().expire(now);
        let deletion_grace = self.config.deletion_grace_period;
        let mut changed = Vec::new();
        let self_fingerprint = self.self_fingerprint();
        for (fingerprint, entry) in self.membership.iter_mut() {
            let held_before = entry.state.held_bytes();
            let collected = entry.state.collect_garbage(now, deletion_grace);
            if collected.is_empty() {
                continue;
            }
            if *fingerprint != self_fingerprint {
                self.remote_bytes -= held_before - entry.state.held_bytes();
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
        // Stream messages never reach the datagram path (`wire::decode`).
        Message::BadCluster | Message::Pull { .. } | Message::Records { .. } | Message::Done => false,
    }
}
