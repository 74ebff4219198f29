//! Liveness: probes of this node's subjects and their answers, heartbeats as
//! refutations, removals once a round, and forgiveness for this node's own
//! pauses and lateness. Who watches whom and how a node is declared dead:
//! [`super::verdicts`].

use std::net::SocketAddr;
use std::time::Duration;

use crate::clock::Forgiveness;
use crate::cluster::ClusterState;
use crate::events::Event;
use crate::identity::Fingerprint;
use crate::membership::{NodeEntry, NodeStatus};
use crate::time::Timestamp;
use crate::wire::{Delta, Digest, Message, NodeRef, Token};

/// Raises a node's known heartbeat; returns whether that refutes the verdict
/// that made it dead (any growth does: the verdict was at the heartbeat then
/// known, and it only grows), or the farewell a spoofer may have sent in its
/// name (a node that left refutes nothing): the caller revives it. Growth
/// that may be old news (`fresh` is false: this node just came out of a
/// pause) is recorded but revives nothing.
pub(super) fn grow_heartbeat(entry: &mut NodeEntry, heartbeat: u64, fresh: bool) -> bool {
    if heartbeat <= entry.state.heartbeat() {
        return false;
    }
    entry.state.set_heartbeat(heartbeat);
    fresh
        && (entry.status == NodeStatus::Dead
            || (entry.status == NodeStatus::Left && entry.provisional_left()))
}

impl ClusterState {
    /// A node's heartbeat is `heartbeat` as someone reports it: if it went
    /// past the one it was declared dead at, it refuted the verdict and lives.
    pub(crate) fn report_heartbeat(&mut self, fingerprint: Fingerprint, heartbeat: u64, now: Timestamp) {
        if fingerprint == self.self_fingerprint() {
            return;
        }
        let fresh = self.is_fresh(now);
        let Some(mut entry) = self.membership.get_mut(&fingerprint) else { return };
        let before = entry.state.heartbeat();
        let revived = grow_heartbeat(&mut entry, heartbeat, fresh);
        let grew = entry.state.heartbeat() > before;
        drop(entry);
        if revived {
            self.revive(fingerprint, now);
        }
        if grew {
            self.note_news(fingerprint);
        }
    }

    /// A `Ping` carrying `token` leaves for `subject` (unanswered until its
    /// `Pong` comes). Returns the subject's gossip address.
    pub(crate) fn note_ping(&mut self, subject: Fingerprint, token: Token) -> Option<SocketAddr> {
        let window = self.config.phi_sampling_window;
        let addr = self.membership.get(&subject)?.state.id().gossip_addr();
        self.probe_mut(subject)?.probe(token, window);
        self.metrics.pings_sent += 1;
        Some(addr)
    }

    /// A `Pong` echoing `echo` came from `from`: if it answers one of the
    /// last `Ping`s to the subject there (see
    /// [`crate::failure_detector::LATE_PROBES`]), it is an
    /// answer for the failure detector, and proves the address. Returns
    /// whether it was.
    pub(crate) fn take_pong(&mut self, from: SocketAddr, echo: Option<Token>, now: Timestamp) -> bool {
        let answerer = match (echo, self.membership.at_addr(&from)) {
            (Some(echo), Some(fingerprint)) => self
                .probe_mut(fingerprint)
                .is_some_and(|probe| probe.answer(echo, now))
                .then_some(fingerprint),
            _ => None,
        };
        let answered = answerer.is_some();
        if let Some(fingerprint) = answerer {
            let fresh = self.is_fresh(now);
            if fresh && let Some(mut entry) = self.membership.get_mut(&fingerprint) {
                entry.set_confirmed(true);
            }
            self.metrics.pongs_received += 1;
            self.validate_node(fingerprint);
        } else {
            self.metrics.probes_ignored += 1;
        }
        answered
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

    /// After a message from `from` is processed: if the node at that address
    /// is named in it, this node heard from it first-hand; and if it was said
    /// to leave on its own unproven word, it did not (a node that left stays
    /// silent). A node declared dead is not revived this way: only its
    /// refutation, which every node hears of, revives it everywhere.
    pub(crate) fn confirm_sender(&mut self, from: SocketAddr, message: &Message, now: Timestamp) {
        if !self.is_fresh(now) {
            return;
        }
        let Some(fingerprint) = self.membership.at_addr(&from) else { return };
        let Some(entry) = self.membership.get(&fingerprint) else { return };
        // Nothing to learn of a node already heard from first-hand: spare the
        // walk over the message (and the entry's loan).
        // Not on the farewell itself (an `Ack`): on a later word of the node.
        let revoke = entry.status == NodeStatus::Left
            && entry.provisional_left()
            && !matches!(message, Message::Ack { .. });
        if (entry.heard_first_hand() && !revoke) || !mentions(message, fingerprint) {
            return;
        }
        if let Some(mut entry) = self.membership.get_mut(&fingerprint) {
            entry.set_heard_first_hand(true);
        }
        if revoke {
            self.revive(fingerprint, now);
        }
    }

    /// Marks a dead node live again.
    pub(crate) fn revive(&mut self, fingerprint: Fingerprint, now: Timestamp) {
        let Some(mut entry) = self.membership.get_mut(&fingerprint) else { return };
        entry.status = NodeStatus::Live;
        entry.set_status_since(now);
        entry.set_provisional_left(false);
        self.peer_tally = None;
        if entry.vouched() {
            self.events.push(Event::NodeLive(entry.state.id().clone()));
        }
        drop(entry);
        self.update_ready(fingerprint);
    }

    /// Whether a node is live and may be introduced to peers: not declared
    /// dead, not left, and (after a pause of this node) confirmed since.
    pub(crate) fn is_live_now(&self, entry: &NodeEntry) -> bool {
        entry.status == NodeStatus::Live
            && (entry.confirmed() || entry.state.id().fingerprint() == self.self_fingerprint())
    }

    /// Whether news handled at `now` is taken as current: it is, but during the
    /// gossip interval after a pause of this node, when datagrams that waited in
    /// its socket are handled.
    pub(crate) fn is_fresh(&self, now: Timestamp) -> bool {
        now >= self.doubtful_until
    }

    /// Forgives subjects' silence that was this node's own doing.
    pub(crate) fn forgive(&mut self, forgiveness: Forgiveness, now: Timestamp) {
        match forgiveness {
            Forgiveness::Pause(pause) => self.forgive_pause(pause, now),
            Forgiveness::Lateness(lateness) => self.forgive_lateness(lateness, now),
        }
    }

    /// This node handled nothing for `pause` up to `now` (a stop of the process,
    /// a long garbage collection, a suspended machine, a clock jump). The silence
    /// of every subject during it is forgiven, so that nobody is accused for
    /// this node's own pause; and for one gossip interval what arrives is
    /// doubtful, because it may have waited in the socket since before the pause:
    /// heartbeats it reports are recorded but revive no dead node, it brings in
    /// no new node, and only nodes heard of after that interval are introduced
    /// to peers. Without this, a datagram held through a
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
        self.membership.unconfirm_all();
        self.metrics.pauses += 1;
    }

    /// This node's gossip round ran `lateness` after it was due (its event loop
    /// was busy or starved): subjects' silence during that time is forgiven, so
    /// that liveness is judged in the node's own rounds and an overloaded node
    /// does not blame its subjects for its own slowness. (Their silence still
    /// counts at least one gossip interval a round.)
    fn forgive_lateness(&mut self, lateness: Duration, now: Timestamp) {
        for (_, probe) in &mut self.subjects {
            probe.forgive(lateness, now);
        }
    }

    /// Judges liveness (see [`super::verdicts`]), removes nodes past their
    /// grace period, and collects garbage in the nodes' states.
    ///
    /// Removals, the verdicts on nodes nobody will accuse and garbage
    /// collection look at a window of the table each round: an eighth of it
    /// (at least [`MIN_SWEEP`] nodes), in ring order from where the last
    /// round stopped, so that every node is looked at once every eight rounds
    /// at most, and a round's work does not grow with the cluster beyond that
    /// (a walk of every node, each in its own allocation, is a cache miss a
    /// node).
    pub(crate) fn maintain(&mut self, now: Timestamp) {
        let Sweep { expired, forsaken, collectable } = self.sweep(now);
        self.judge(now, forsaken);
        for fingerprint in expired {
            self.remove_node(fingerprint, now);
        }
        self.membership.removed_mut().expire(now);
        let deletion_grace = self.config.deletion_grace_period;
        let self_fingerprint = self.self_fingerprint();
        for fingerprint in collectable {
            let Some(mut entry) = self.membership.get_mut(&fingerprint) else { continue };
            let held_before = entry.state.held_bytes();
            let collected = entry.state.collect_garbage(now, deletion_grace);
            if collected.is_empty() {
                continue;
            }
            if fingerprint != self_fingerprint {
                self.remote_bytes -= held_before - entry.state.held_bytes();
            }
            for key in collected {
                if key.expired && entry.vouched() && !key.key.starts_with(crate::node_state::RESERVED_PREFIX)
                {
                    self.events
                        .push(Event::KeyExpired { node: entry.state.id().clone(), key: key.key.into() });
                }
            }
            drop(entry);
            self.update_ready(fingerprint);
        }
    }

    /// Looks at this round's window of the table (see
    /// [`ClusterState::maintain`]) by the rows' summaries, reading an entry
    /// only where they leave a doubt; the next window starts after it. This
    /// node's own garbage is collected every round.
    fn sweep(&mut self, now: Timestamp) -> Sweep {
        let quota = (self.membership.len() / SWEEP_SHARE).max(MIN_SWEEP);
        let grace = self.config.dead_node_grace_period;
        let self_fingerprint = self.self_fingerprint();
        let mut sweep = Sweep::default();
        let mut next = self.sweep_cursor;
        for (index, row) in self.ring_from(self.sweep_cursor).enumerate() {
            let (fingerprint, summary) = (row.fingerprint(), row.summary());
            if index == quota {
                next = fingerprint;
                break;
            }
            if summary.gc_pending && fingerprint != self_fingerprint {
                sweep.collectable.push(fingerprint);
            }
            if fingerprint == self_fingerprint {
                continue;
            }
            if matches!(summary.status, NodeStatus::Dead | NodeStatus::Left)
                && now.saturating_duration_since(row.entry().status_since()) >= grace
            {
                sweep.expired.push(fingerprint);
            } else if summary.status == NodeStatus::Live
                && (self.doubtful_until != Timestamp::ZERO || !summary.vouched)
                && self.is_forsaken(row.entry(), now)
            {
                sweep.forsaken.push(fingerprint);
            }
        }
        self.sweep_cursor = next;
        if self.self_entry().state.has_pending_gc() {
            sweep.collectable.push(self_fingerprint);
        }
        sweep
    }
}

/// What a round's maintenance found in its window of the table.
#[derive(Default)]
struct Sweep {
    /// Dead or left for the whole grace period: to remove.
    expired: Vec<Fingerprint>,
    /// Live, and nobody will ever accuse them (see
    /// [`ClusterState::is_forsaken`]).
    forsaken: Vec<Fingerprint>,
    /// Their states hold garbage to collect.
    collectable: Vec<Fingerprint>,
}

/// Maintenance looks at this share of the table each round (one in eight).
pub(crate) const SWEEP_SHARE: usize = 8;

/// Maintenance looks at no fewer nodes than this each round (all of them in a
/// smaller cluster).
pub(crate) const MIN_SWEEP: usize = 64;

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
        Message::BadCluster
        | Message::Ping { .. }
        | Message::Pong
        | Message::Pull { .. }
        | Message::Records { .. }
        | Message::Done => false,
    }
}
