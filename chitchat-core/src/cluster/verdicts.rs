//! Verdicts: who watches whom, accusations, and the quorum that makes a node
//! dead.
//!
//! Every node watches its *subjects*, the [`Config::observers`] nodes that
//! follow it on the fingerprint ring among the nodes it considers live (and
//! vouched for); so every node is watched by about as many *observers*, the
//! ones before it. An observer probes each subject once a round
//! ([`crate::failure_detector`]) and, when its phi crosses the threshold,
//! **accuses** it: it writes the record `"\0dead:<fingerprint>"` with the
//! subject's heartbeat as it knows it into its own state, which then spreads
//! like any other record. A node is declared dead by every node that holds
//! accusations at its current heartbeat from a majority of its observers
//! (see [`quorum`](ClusterState::quorum)), and stays dead until its heartbeat
//! goes past the one it was declared dead at: the accused node, on learning
//! of an accusation at its own heartbeat, raises its heartbeat past it
//! (it **refutes**), and its accusers withdraw accusations that a heartbeat
//! refuted.
//!
//! So a node's liveness costs each node the probes of a few subjects a
//! round, whatever the size of the cluster, and news of a verdict travels as
//! one record. Records whose key starts with [`crate::RESERVED_PREFIX`] are the
//! protocol's: they are hidden from the application and cannot be set by it.
//!
//! [`Config::observers`]: crate::Config::observers

use std::collections::HashMap;
use std::collections::hash_map::Entry;

use crate::cluster::ClusterState;
use crate::events::Event;
use crate::failure_detector::ProbeWindow;
use crate::identity::Fingerprint;
use crate::membership::{NodeEntry, NodeStatus, Row, Summary};
use crate::node_state::{NodeState, ValueStatus};
use crate::time::Timestamp;

/// How many gossip intervals an accused node has to refute an accusation
/// before the accuser, alone if need be, declares it dead.
pub(crate) const REFUTATION_ROUNDS: u32 = 30;

/// The key prefix of an accusation: `"\0dead:"` then the accused node's
/// fingerprint in 16 lowercase hexadecimal digits; the value is the accused
/// node's heartbeat in decimal.
pub(crate) const ACCUSATION_PREFIX: &str = "\0dead:";

/// The accusation key for `accused`.
pub(crate) fn accusation_key(accused: Fingerprint) -> String {
    format!("{ACCUSATION_PREFIX}{:016x}", accused.0)
}

/// The accusations a state holds (deleted ones aside): (accused, heartbeat).
/// Records of the reserved prefix that are not well-formed accusations are
/// ignored.
pub(crate) fn accusations_in(state: &NodeState) -> Vec<(Fingerprint, u64)> {
    state
        .reserved_records()
        .filter(|(_, status, _)| *status != ValueStatus::Deleted)
        .filter_map(|(key, _, value)| parse_accusation(key, value))
        .collect()
}

fn parse_accusation(key: &str, value: &str) -> Option<(Fingerprint, u64)> {
    let hex = key.strip_prefix(ACCUSATION_PREFIX)?;
    if hex.len() != 16 {
        return None;
    }
    let accused = u64::from_str_radix(hex, 16).ok()?;
    let heartbeat = value.parse::<u64>().ok()?;
    Some((Fingerprint(accused), heartbeat))
}

/// Every accusation held, by accused node. Bounded by the accusation records
/// of the tracked nodes' states, so by their memory budget.
#[derive(Debug, Default)]
pub(crate) struct Accusations {
    /// Accused → (accuser, the accused's heartbeat it accused).
    against: HashMap<Fingerprint, Vec<(Fingerprint, u64)>>,
    /// Accuser → whom it accuses, to withdraw them when its state changes.
    by: HashMap<Fingerprint, Vec<Fingerprint>>,
}

impl Accusations {
    /// `accuser` now accuses exactly `accused`.
    pub(crate) fn replace(&mut self, accuser: Fingerprint, accused: Vec<(Fingerprint, u64)>) {
        if let Some(previous) = self.by.remove(&accuser) {
            for target in previous {
                if let Entry::Occupied(mut entry) = self.against.entry(target) {
                    entry.get_mut().retain(|(by, _)| *by != accuser);
                    if entry.get().is_empty() {
                        entry.remove();
                    }
                }
            }
        }
        if accused.is_empty() {
            return;
        }
        let mut targets = Vec::with_capacity(accused.len());
        for (target, heartbeat) in accused {
            self.against.entry(target).or_default().push((accuser, heartbeat));
            targets.push(target);
        }
        self.by.insert(accuser, targets);
    }

    /// The accusers of `accused` at `heartbeat` or above.
    pub(crate) fn accusers(
        &self,
        accused: Fingerprint,
        heartbeat: u64,
    ) -> impl Iterator<Item = Fingerprint> + '_ {
        self.against
            .get(&accused)
            .into_iter()
            .flatten()
            .filter(move |(_, at)| *at >= heartbeat)
            .map(|(accuser, _)| *accuser)
    }

    /// Every accused node.
    pub(crate) fn accused(&self) -> impl Iterator<Item = Fingerprint> + '_ {
        self.against.keys().copied()
    }

    /// The highest heartbeat `accused` is accused at.
    pub(crate) fn highest(&self, accused: Fingerprint) -> Option<u64> {
        self.against.get(&accused)?.iter().map(|(_, heartbeat)| *heartbeat).max()
    }
}

impl ClusterState {
    /// Whether a node takes part in watching: vouched for and live in this
    /// node's eyes (this node itself included).
    fn is_watchable(summary: &Summary) -> bool {
        summary.vouched && summary.status == NodeStatus::Live
    }

    /// Up to `observers` watchable nodes following `from` on the ring (or
    /// preceding it, `backwards`), `from` excluded.
    fn ring_neighbours(&self, from: Fingerprint, backwards: bool) -> Vec<Fingerprint> {
        use std::ops::Bound::{Excluded, Unbounded};
        let wanted = self.config.observers;
        let after = self.membership.range((Excluded(from), Unbounded));
        let before = self.membership.range((Unbounded, Excluded(from)));
        let pick = |row: Row<'_>| Self::is_watchable(&row.summary()).then_some(row.fingerprint());
        if backwards {
            before.iter().rev().chain(after.iter().rev()).filter_map(pick).take(wanted).collect()
        } else {
            after.iter().chain(before).filter_map(pick).take(wanted).collect()
        }
    }

    /// How many accusations at its current heartbeat make `accused` dead in
    /// this node's eyes: a majority of its observers (the watchable nodes
    /// before it on the ring). At least one.
    pub(crate) fn quorum(&self, accused: Fingerprint) -> usize {
        self.ring_neighbours(accused, true).len() / 2 + 1
    }

    /// Chooses this round's subjects: a probe window for each new one, none
    /// for those that are no longer.
    pub(crate) fn choose_subjects(&mut self, now: Timestamp) {
        let mut previous = std::mem::take(&mut self.subjects);
        for subject in self.ring_neighbours(self.self_fingerprint(), false) {
            if !self.membership.contains(&subject) {
                continue;
            }
            let probe = match previous.iter().position(|(kept, _)| *kept == subject) {
                Some(index) => previous.swap_remove(index).1,
                None => ProbeWindow::new(now),
            };
            self.subjects.push((subject, probe));
        }
    }

    /// This round's subjects.
    pub(crate) fn subjects(&self) -> Vec<Fingerprint> {
        self.subjects.iter().map(|(subject, _)| *subject).collect()
    }

    /// Re-reads the accusations in `fingerprint`'s state (it changed, or the
    /// node is gone).
    pub(crate) fn reread_accusations(&mut self, fingerprint: Fingerprint) {
        let accused =
            self.membership.get(&fingerprint).map(|entry| accusations_in(&entry.state)).unwrap_or_default();
        self.accusations.replace(fingerprint, accused);
    }

    /// Once a round: accuses the subjects whose phi crossed the threshold,
    /// withdraws accusations that a heartbeat or an answer refuted or whose
    /// node is forgotten, refutes accusations of this node, then declares dead
    /// the nodes a quorum accuses, those this node alone accuses that did not
    /// refute within [`REFUTATION_ROUNDS`], and the `forsaken` ones (see
    /// [`ClusterState::is_forsaken`]).
    ///
    /// A node alone in accusing a subject declares it dead once the subject
    /// had [`REFUTATION_ROUNDS`] gossip intervals to refute and did not: an
    /// alive subject that gossip reaches hears of the accusation within a few
    /// rounds and refutes it, so one that did not is dead or cut off from the
    /// cluster, even if its other observers do not know it (they may not track
    /// it at all, say after a pause of this node).
    pub(crate) fn judge(&mut self, now: Timestamp, forsaken: Vec<Fingerprint>) {
        let interval = self.config.gossip_interval;
        let threshold = self.config.phi_threshold;
        let self_fingerprint = self.self_fingerprint();
        let patience = interval * REFUTATION_ROUNDS;
        // What this node accuses, by its own records.
        let mut own: HashMap<Fingerprint, u64> =
            accusations_in(&self.self_entry().state).into_iter().collect();
        let mut changes: Vec<(Fingerprint, Option<u64>)> = Vec::new();
        for (accused, heartbeat) in &own {
            match self.membership.get(accused) {
                // Kept while the removal is remembered: a node that wakes from
                // a pause, or joins, learns the verdict from it.
                None if !self.membership.removed().contains(accused) => changes.push((*accused, None)),
                Some(entry) if entry.state.heartbeat() > *heartbeat => changes.push((*accused, None)),
                _ => {}
            }
        }
        let mut unrefuted = Vec::new();
        for (subject, probe) in &mut self.subjects {
            let subject = *subject;
            let Some(entry) = self.membership.get(&subject) else { continue };
            let heartbeat = entry.state.heartbeat();
            match (own.get(&subject), probe.accused_at) {
                (Some(accused), _) if *accused < heartbeat => {
                    // It refuted this node's accusation: it gets a full
                    // detection period before the next one.
                    *probe = ProbeWindow::new(now);
                }
                (Some(_), Some(accused_at)) if probe.last_answer() > accused_at => {
                    // It answered since: the silence was loss, not death.
                    probe.accused_at = None;
                    changes.push((subject, None));
                }
                (Some(_), Some(accused_at)) if now.saturating_duration_since(accused_at) >= patience => {
                    unrefuted.push(subject)
                }
                (Some(_), None) => probe.accused_at = Some(now),
                (Some(_), Some(_)) => {}
                (None, _) if probe.phi(now, interval) > threshold => {
                    probe.accused_at = Some(now);
                    changes.push((subject, Some(heartbeat)));
                    self.metrics.accusations += 1;
                }
                (None, _) => {}
            }
        }
        if !changes.is_empty() {
            let state = &mut self.membership.self_entry_mut().state;
            for (accused, heartbeat) in changes {
                let key = accusation_key(accused);
                match heartbeat {
                    Some(heartbeat) => {
                        state.set_own(&key, &heartbeat.to_string(), ValueStatus::Set, now);
                        own.insert(accused, heartbeat);
                    }
                    None => {
                        state.set_own(&key, "", ValueStatus::Deleted, now);
                        own.remove(&accused);
                    }
                }
            }
            self.accusations.replace(self_fingerprint, own.into_iter().collect());
        }
        self.refute_accusations();
        unrefuted.extend(forsaken);
        self.declare_dead(now, unrefuted);
    }

    /// Whether this node is within [`REFUTATION_ROUNDS`] gossip intervals
    /// after waking from a pause: the nodes not confirmed since it woke are
    /// declared dead when that time is over (see [`Self::is_forsaken`]).
    pub(crate) fn confirming(&self, now: Timestamp) -> bool {
        let woke = self.doubtful_until;
        woke != Timestamp::ZERO
            && now.saturating_duration_since(woke) < self.config.gossip_interval * REFUTATION_ROUNDS
    }

    /// Whether `entry` is a live node nobody will accuse, dead after
    /// [`REFUTATION_ROUNDS`] gossip intervals: after a pause of this node,
    /// one no peer confirmed since it woke (the cluster may have removed it
    /// meanwhile, and its observers, who forgot it, will not accuse it
    /// again); or a rumor, a node only heard of from senders that proved
    /// nothing (nobody watches it).
    pub(crate) fn is_forsaken(&self, entry: &NodeEntry, now: Timestamp) -> bool {
        let patience = self.config.gossip_interval * REFUTATION_ROUNDS;
        let woke = self.doubtful_until;
        entry.status == NodeStatus::Live
            && ((woke != Timestamp::ZERO && !self.confirming(now) && !entry.confirmed())
                || (!entry.vouched() && now.saturating_duration_since(entry.status_since()) >= patience))
    }

    /// Checks that the subjects (each with its probe window) are tracked,
    /// distinct and at most `observers`, and that the accusation index says what the
    /// tracked states hold, and that every row of the table summarizes its
    /// entry.
    #[cfg_attr(not(feature = "sim"), allow(dead_code))]
    pub(crate) fn check_liveness(&self) -> Result<(), String> {
        self.membership.check_summaries()?;
        for (subject, _) in &self.subjects {
            if !self.membership.contains(subject) {
                return Err(format!("a probe window for {subject:?}, which is not tracked"));
            }
            if self.subjects.iter().filter(|(other, _)| other == subject).count() > 1 {
                return Err(format!("two probe windows for {subject:?}"));
            }
        }
        for (fingerprint, entry) in self.membership.iter() {
            let mut held = accusations_in(&entry.state);
            held.sort_unstable();
            let mut indexed: Vec<(Fingerprint, u64)> = self
                .accusations
                .by
                .get(fingerprint)
                .into_iter()
                .flatten()
                .map(|accused| {
                    let heartbeat = self
                        .accusations
                        .against
                        .get(accused)
                        .and_then(|by| by.iter().find(|(by, _)| by == fingerprint))
                        .map_or(u64::MAX, |(_, heartbeat)| *heartbeat);
                    (*accused, heartbeat)
                })
                .collect();
            indexed.sort_unstable();
            if held != indexed {
                return Err(format!(
                    "the accusations of {} are indexed as {indexed:?}, held as {held:?}",
                    entry.state.id()
                ));
            }
        }
        if let Some(stray) = self.accusations.by.keys().find(|accuser| !self.membership.contains(accuser)) {
            return Err(format!("accusations indexed for {stray:?}, which is not tracked"));
        }
        if self.subjects.len() > self.config.observers {
            return Err(format!("{} subjects", self.subjects.len()));
        }
        Ok(())
    }

    /// Raises this node's heartbeat past any accusation of it.
    fn refute_accusations(&mut self) {
        let self_fingerprint = self.self_fingerprint();
        let Some(highest) = self.accusations.highest(self_fingerprint) else { return };
        let state = &mut self.membership.self_entry_mut().state;
        if highest >= state.heartbeat() && highest < crate::wire::MAX_COUNTER - 1 {
            state.set_heartbeat(highest + 1);
            self.metrics.accusations_refuted += 1;
        }
    }

    /// Declares dead the live nodes that a quorum accuses at their heartbeat,
    /// and `also`.
    fn declare_dead(&mut self, now: Timestamp, also: Vec<Fingerprint>) {
        let self_fingerprint = self.self_fingerprint();
        let mut newly_dead = Vec::new();
        for fingerprint in also {
            if let Some(entry) = self.membership.get(&fingerprint)
                && entry.status == NodeStatus::Live
            {
                newly_dead.push(fingerprint);
            }
        }
        for accused in self.accusations.accused() {
            if accused == self_fingerprint {
                continue;
            }
            let Some(entry) = self.membership.get(&accused) else { continue };
            if entry.status != NodeStatus::Live {
                continue;
            }
            let heartbeat = entry.state.heartbeat();
            let accusers = self.accusations.accusers(accused, heartbeat).count();
            if accusers > 0 && accusers >= self.quorum(accused) {
                newly_dead.push(accused);
            }
        }
        for fingerprint in newly_dead {
            let Some(mut entry) = self.membership.get_mut(&fingerprint) else { continue };
            if entry.status != NodeStatus::Live {
                continue;
            }
            entry.status = NodeStatus::Dead;
            entry.set_status_since(now);
            self.subjects.retain(|(subject, _)| *subject != fingerprint);
            if entry.vouched() {
                self.events.push(Event::NodeDead(entry.state.id().clone()));
            }
            drop(entry);
            self.update_ready(fingerprint);
            self.peers_changed();
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn accusations_round_trip_through_keys_and_values() {
        let accused = Fingerprint(0x0123_4567_89ab_cdef);
        let key = accusation_key(accused);
        assert_eq!(key, "\0dead:0123456789abcdef");
        assert_eq!(parse_accusation(&key, "42"), Some((accused, 42)));
        assert_eq!(parse_accusation(&key, "-1"), None);
        assert_eq!(parse_accusation("\0dead:0123", "1"), None);
        assert_eq!(parse_accusation("\0dead:0123456789abcdeg", "1"), None);
        assert_eq!(parse_accusation("\0alive", "1"), None);
    }

    #[test]
    fn the_index_follows_each_accusers_latest_list() {
        let (a, b, x, y) = (Fingerprint(1), Fingerprint(2), Fingerprint(10), Fingerprint(11));
        let mut index = Accusations::default();
        index.replace(a, vec![(x, 3), (y, 1)]);
        index.replace(b, vec![(x, 2)]);
        assert_eq!(index.accusers(x, 2).count(), 2);
        assert_eq!(index.accusers(x, 3).collect::<Vec<_>>(), vec![a]);
        assert_eq!(index.highest(x), Some(3));
        index.replace(a, vec![(y, 1)]);
        assert_eq!(index.accusers(x, 0).collect::<Vec<_>>(), vec![b]);
        index.replace(b, Vec::new());
        index.replace(a, Vec::new());
        assert_eq!(index.accused().count(), 0);
        assert!(index.by.is_empty());
    }
}
