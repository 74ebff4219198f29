//! Building, checking and applying deltas.
//!
//! A delta answers a peer's digest with what the peer lacks over the digest's
//! range: first the nodes it does not know (in random order), then the nodes it is
//! most behind on (largest version gap first, ties in random order). Each node
//! section carries its records in increasing version order, and the delta is cut
//! to its byte budget using the encoder's own sizes; a section cut in the middle
//! says so by lowering its `max_version` to that of its last record, so the
//! receiver advances exactly as far as it received.

use std::collections::{HashMap, HashSet};
use std::net::SocketAddr;

use compact_str::CompactString;
use serde::Serialize;
use serde::ser::SerializeSeq;

use crate::cluster::ClusterState;
use crate::error::Violation;
use crate::events::{Event, EventQueue, IdRef, KeyChange};
use crate::identity::{Fingerprint, NodeId};
use crate::membership::{NodeEntry, NodeStatus};
use crate::node_state::{NodeState, RESERVED_PREFIX, RecordLimits, Skipped, VersionedValue};
use crate::time::Timestamp;
use crate::wire::size::{encoded_len, varint_len};
use crate::wire::{
    Delta, DeltaOut, Digest, DigestEntry, KeyValueOut, NodeDelta, NodeDeltaOut, NodeRef, NodeRefOut,
    ValueUpdate,
};

/// A node the peer lacks something of. Ordered by need: unknown nodes
/// first, then the largest gap, then a random tiebreak.
struct Candidate<'a> {
    fingerprint: Fingerprint,
    state: &'a NodeState,
    /// The peer does not know the node: name it in full.
    unknown: bool,
    reset: bool,
    from_version: u64,
    gap: u64,
    tiebreak: u64,
}

impl Ord for Candidate<'_> {
    /// The most needed is the greatest.
    fn cmp(&self, other: &Self) -> std::cmp::Ordering {
        self.unknown
            .cmp(&other.unknown)
            .then(self.gap.cmp(&other.gap))
            .then(other.tiebreak.cmp(&self.tiebreak))
            .then(other.fingerprint.cmp(&self.fingerprint))
    }
}

impl PartialEq for Candidate<'_> {
    fn eq(&self, other: &Self) -> bool {
        self.cmp(other).is_eq()
    }
}

impl Eq for Candidate<'_> {}

impl PartialOrd for Candidate<'_> {
    fn partial_cmp(&self, other: &Self) -> Option<std::cmp::Ordering> {
        Some(self.cmp(other))
    }
}

/// A delta chosen for a peer ([`ClusterState::build_delta`]): which records
/// of which states it carries. They are read in place when the delta is
/// written ([`OutgoingDelta::writer`]), so that a delta of thousands of records
/// costs no copy of each; the states it borrows do not change in between.
#[derive(Debug, Default)]
pub(crate) struct OutgoingDelta<'a> {
    sections: Vec<OutgoingSection<'a>>,
    /// The sender had more for the peer than fit (see [`Delta::more`]).
    pub(crate) more: bool,
}

/// One node's section of an [`OutgoingDelta`]: the first `records` records
/// above `from_version`.
#[derive(Debug)]
struct OutgoingSection<'a> {
    fingerprint: Fingerprint,
    state: &'a NodeState,
    /// The peer does not know the node: name it in full.
    full: bool,
    reset: bool,
    from_version: u64,
    /// The node's max version, or its last record's when the section was cut.
    max_version: u64,
    records: usize,
}

impl<'a> OutgoingSection<'a> {
    /// The section as it is written, with `key_values` for its records.
    fn header<R>(&self, key_values: R) -> NodeDeltaOut<'a, R> {
        let state = self.state;
        NodeDeltaOut {
            node: if self.full { NodeRefOut::Full(state.id()) } else { NodeRefOut::Known(self.fingerprint) },
            heartbeat: state.heartbeat(),
            reset: self.reset,
            from_version: self.from_version,
            last_gc_version: state.last_gc_version(),
            max_version: self.max_version,
            left: state.has_left(),
            key_values,
        }
    }
}

impl<'a> OutgoingDelta<'a> {
    /// Whether the delta names no node.
    pub(crate) fn is_empty(&self) -> bool {
        self.sections.is_empty()
    }

    /// Drops every section (`more` stays).
    pub(crate) fn clear(&mut self) {
        self.sections.clear();
    }

    /// What the peer holds of each node once it applied the delta.
    pub(crate) fn entries(&self) -> impl Iterator<Item = DigestEntry> + '_ {
        self.sections.iter().map(|section| DigestEntry {
            fingerprint: section.fingerprint,
            heartbeat: section.state.heartbeat(),
            last_gc_version: section.state.last_gc_version(),
            max_version: section.max_version,
        })
    }

    /// What writes the delta as a [`Delta`], its records read in place.
    pub(crate) fn writer(&self) -> DeltaOut<SectionsOut<'_, 'a>> {
        DeltaOut { nodes: SectionsOut(&self.sections), more: self.more }
    }

    /// The delta as a [`Delta`] (a copy of each record).
    #[cfg(test)]
    pub(crate) fn to_delta(&self) -> Delta {
        let bytes = postcard::to_stdvec(&self.writer()).expect("a delta encodes");
        postcard::from_bytes(&bytes).expect("a delta decodes")
    }
}

/// Writes an [`OutgoingDelta`]'s sections as a sequence of [`NodeDelta`]s.
pub(crate) struct SectionsOut<'s, 'a>(&'s [OutgoingSection<'a>]);

impl Serialize for SectionsOut<'_, '_> {
    fn serialize<S: serde::Serializer>(&self, serializer: S) -> Result<S::Ok, S::Error> {
        let mut sequence = serializer.serialize_seq(Some(self.0.len()))?;
        for section in self.0 {
            let records = RecordsOut {
                state: section.state,
                from_version: section.from_version,
                count: section.records,
            };
            sequence.serialize_element(&section.header(records))?;
        }
        sequence.end()
    }
}

/// Writes the first `count` records of `state` above `from_version` as a
/// sequence of [`crate::wire::KeyValueUpdate`]s.
struct RecordsOut<'a> {
    state: &'a NodeState,
    from_version: u64,
    count: usize,
}

impl Serialize for RecordsOut<'_> {
    fn serialize<S: serde::Serializer>(&self, serializer: S) -> Result<S::Ok, S::Error> {
        let mut sequence = serializer.serialize_seq(Some(self.count))?;
        for record in self.state.records_since(self.from_version).take(self.count) {
            sequence.serialize_element(&record)?;
        }
        sequence.end()
    }
}

impl ClusterState {
    /// The updates `peer` lacks over what its digest covers, in at most `budget`
    /// bytes. Returns the delta and its encoded length.
    ///
    /// With `fair`, each node's section gets an equal share of the budget and
    /// the delta goes on past a section cut to its share (a stream frame: the
    /// first records of every node come in the first frame, whatever each
    /// node holds); without, most needed first, and the delta ends at the
    /// first cut (a datagram).
    pub(crate) fn build_delta(
        &self,
        now: Timestamp,
        peer: &Digest,
        budget: usize,
        fair: bool,
        rng: &mut fastrand::Rng,
    ) -> (OutgoingDelta<'_>, usize) {
        let mut candidates = Vec::new();
        let range = peer.range;
        // Our nodes in the peer's range and the peer's entries are both in ring
        // order: one merged walk pairs them.
        let theirs = &peer.entries;
        let mut cursor = 0;
        for row in self.nodes_in(range) {
            let fingerprint = row.fingerprint();
            let offset = range.offset(fingerprint);
            while cursor < theirs.len() && range.offset(theirs[cursor].fingerprint) < offset {
                cursor += 1;
            }
            let known = theirs.get(cursor).filter(|theirs| theirs.fingerprint == fingerprint);
            candidates.extend(self.candidate(now, fingerprint, row.entry(), known));
        }
        // Rumors, outside the range by the rules of a digest (a hostile list
        // may repeat; they are compared once each).
        let mut named: Vec<&DigestEntry> =
            peer.rumors.iter().filter(|r| !range.contains(r.fingerprint)).collect();
        named.sort_unstable_by_key(|rumor| rumor.fingerprint);
        named.dedup_by_key(|rumor| rumor.fingerprint);
        for rumor in named {
            if let Some(entry) = self.membership.get(&rumor.fingerprint) {
                candidates.extend(self.candidate(now, rumor.fingerprint, entry, Some(rumor)));
            }
        }
        // Asked-for nodes outside the range, once each (a hostile list may repeat).
        // A digest may name a node both as a rumor and as unknown (a `Syn`
        // asking for a node its sender learned since): one section each.
        let mut asked: Vec<Fingerprint> = peer
            .unknown
            .iter()
            .copied()
            .filter(|fingerprint| !range.contains(*fingerprint))
            .filter(|fingerprint| {
                peer.rumors.binary_search_by_key(fingerprint, |rumor| rumor.fingerprint).is_err()
            })
            .collect();
        asked.sort_unstable();
        asked.dedup();
        for fingerprint in asked {
            if let Some(entry) = self.membership.get(&fingerprint) {
                candidates.extend(self.candidate(now, fingerprint, entry, None));
            }
        }
        for candidate in &mut candidates {
            candidate.tiebreak = rng.u64(..);
        }
        let share = if fair { budget / candidates.len().max(1) } else { usize::MAX };
        // Most needed first, from a heap: a datagram stops at the first cut,
        // after a few of many (a hundred of a thousand unknown nodes fill
        // 64 KB), and orders only those it takes.
        let mut heap = std::collections::BinaryHeap::from(candidates);
        let candidates = std::iter::from_fn(|| heap.pop());
        let mut delta = OutgoingDelta::default();
        // The section count, and the `more` flag.
        let mut len = varint_len(0) + 1;
        let mut truncated = false;
        for candidate in candidates {
            let state = candidate.state;
            let mut section = OutgoingSection {
                fingerprint: candidate.fingerprint,
                state,
                full: candidate.unknown,
                reset: candidate.reset,
                from_version: candidate.from_version,
                max_version: state.max_version(),
                records: 0,
            };
            let count_growth =
                varint_len(delta.sections.len() as u64 + 1) - varint_len(delta.sections.len() as u64);
            let header_len = encoded_len(&section.header(&[] as &[KeyValueOut]));
            if len + count_growth + header_len > budget {
                truncated = true;
                break;
            }
            let mut section_len = header_len;
            let mut cut = false;
            let mut at_share = false;
            let mut last = section.from_version;
            for (version, record_len) in state.record_lens_since(candidate.from_version) {
                let records = section.records as u64;
                let growth = varint_len(records + 1) - varint_len(records);
                if len + count_growth + section_len + growth + record_len > budget {
                    cut = true;
                    break;
                }
                if records > 0 && section_len + growth + record_len > share {
                    (cut, at_share) = (true, true);
                    break;
                }
                section_len += growth + record_len;
                section.records += 1;
                last = version;
            }
            if cut {
                truncated = true;
                if last == section.from_version && !candidate.unknown && !state.has_left() {
                    break; // nothing of it fits: no progress to send
                }
                section.max_version = last;
                section_len = section_len - header_len + encoded_len(&section.header(&[] as &[KeyValueOut]));
                len += count_growth + section_len;
                delta.sections.push(section);
                if at_share {
                    continue; // the other nodes get their share too
                }
                break;
            }
            len += count_growth + section_len;
            delta.sections.push(section);
        }
        // The flag takes one byte whatever its value: counted from the start.
        delta.more = truncated;
        (delta, len)
    }

    /// What the peer lacks of one node, given its digest entry (`None`: it does
    /// not know the node).
    fn candidate<'a>(
        &self,
        now: Timestamp,
        fingerprint: Fingerprint,
        entry: &'a NodeEntry,
        theirs: Option<&DigestEntry>,
    ) -> Option<Candidate<'a>> {
        if !self.is_relayed(entry, now) {
            return None;
        }
        let state = &entry.state;
        let candidate = |unknown, reset, from_version, gap| Candidate {
            fingerprint,
            state,
            unknown,
            reset,
            from_version,
            gap,
            tiebreak: 0,
        };
        match theirs {
            Some(theirs) => {
                let gc = state.last_gc_version();
                if theirs.last_gc_version > gc && theirs.max_version < theirs.last_gc_version {
                    None // they are mid-reset from a fresher source: we cannot help
                } else if theirs.max_version < gc && theirs.last_gc_version < gc {
                    Some(candidate(false, true, 0, u64::MAX))
                } else if theirs.max_version < state.max_version() {
                    Some(candidate(
                        false,
                        false,
                        theirs.max_version,
                        state.max_version() - theirs.max_version,
                    ))
                } else {
                    None
                }
            }
            // Only live nodes are introduced: a dead node is not news.
            None if self.is_live_now(entry) => Some(candidate(true, false, 0, u64::MAX)),
            None => None,
        }
    }

    /// Checks the rules that depend on this node's state, before anything changes.
    pub(crate) fn check_delta(&self, delta: &Delta) -> Result<(), Violation> {
        for section in &delta.nodes {
            let fingerprint = section_fingerprint(section);
            let held = self.membership.get(&fingerprint).map_or(0, |entry| entry.state.max_version());
            if !section.reset && section.from_version > held {
                return Err(Violation::DeltaFromFuture);
            }
        }
        Ok(())
    }

    /// Drops the sections that start past what this node holds, and counts
    /// them as ignored. A stream's frames follow the digest its puller sent
    /// when it opened; datagrams meanwhile may have replaced a node (a
    /// restart) or its state (a reset), so that a later frame's section no
    /// longer follows: it is skipped, not a reason to refuse the frame.
    pub(crate) fn drop_sections_from_future(&mut self, delta: &mut Delta) {
        let before = delta.nodes.len();
        delta.nodes.retain(|section| {
            let held = self
                .membership
                .get(&section_fingerprint(section))
                .map_or(0, |entry| entry.state.max_version());
            section.reset || section.from_version <= held
        });
        self.metrics.sections_ignored += (before - delta.nodes.len()) as u64;
    }

    /// Applies a delta that passed [`ClusterState::check_delta`].
    /// `from` is where the delta came from: a section introducing the node at
    /// that address comes first-hand. `vouched`: the sender proved its address
    /// (see [`NodeEntry::vouched`]), so the nodes the delta names are relayed.
    ///
    /// The keys and values of the records it takes move into the events they
    /// cause: they are left empty in `delta`. (Freeing each section's records
    /// once applied, for the next states to reuse, made the full-datagram
    /// handshake 15 % slower with glibc's allocator: they are freed with the
    /// delta.)
    pub(crate) fn apply_delta(&mut self, delta: &mut Delta, from: SocketAddr, vouched: bool, now: Timestamp) {
        // An event a record at most, and a few a section (a new node joins
        // and is live, its readiness changes): room for them at once, not by
        // doubling, which copies a large delta's events several times.
        self.events.reserve(delta.nodes.iter().map(|section| section.key_values.len() + 3).sum());
        for section in &mut delta.nodes {
            self.apply_section(section, from, vouched, now);
        }
    }

    fn apply_section(&mut self, section: &mut NodeDelta, from: SocketAddr, vouched: bool, now: Timestamp) {
        let fingerprint = match self.resolve_section(section, from, vouched, now) {
            Ok(fingerprint) => fingerprint,
            Err(Skip::Ignored) => return self.metrics.sections_ignored += 1,
            Err(Skip::OverLimit) => return self.metrics.sections_over_limit += 1,
            Err(Skip::Refused) => return,
        };
        // An unproven state dropped when the node is vouched for (it may
        // have held accusations).
        let mut dropped_unproven = false;
        let fresh = self.is_fresh(now);
        let mut entry = self.membership.get_mut(&fingerprint).expect("resolved nodes are tracked");
        let before = (entry.state.max_version(), entry.state.last_gc_version(), entry.state.has_left());
        if vouched && fresh {
            entry.set_confirmed(true);
        }
        // A node not vouched for yet is vouched for by a whole section only
        // (from version 0, as peers send to a node whose digests lack it): one
        // from further on would leave a gap once the unproven state is dropped.
        let vouched = vouched && (entry.vouched() || section.from_version == 0);
        if entry.vouched() && !vouched {
            // A datagram whose sender proved nothing changes nothing a peer
            // vouched for but its heartbeat (which the node refutes if false):
            // no records, no farewell.
            self.metrics.sections_unproven += 1;
            let own_farewell =
                section.left && entry.state.id().gossip_addr() == from && entry.status != NodeStatus::Left;
            drop(entry);
            self.report_heartbeat(fingerprint, section.heartbeat, now);
            if own_farewell {
                // The node's own farewell, from an address it has not proved
                // (it never answered this node): taken here, not relayed, and
                // revoked if the node beats on.
                self.mark_left(fingerprint, now);
                if let Some(mut entry) = self.membership.get_mut(&fingerprint) {
                    entry.set_provisional_left(true);
                }
            }
            return;
        }
        if vouched && !entry.vouched() {
            // The first news of the node from a proven sender: what unproven
            // ones said of it is dropped, and this section (from version 0:
            // peers saw the node missing from this node's digests) is taken
            // from scratch; the application hears of the node, then of the
            // section's keys.
            let dropped = super::vouch_for(&mut entry, &mut self.events);
            self.remote_bytes -= dropped.held_bytes();
            dropped_unproven = dropped.max_version() > 0;
            self.peer_tally = None;
        }
        // What the application hears of the node: nothing until it is
        // vouched for.
        let visible = entry.vouched();
        let state = &mut entry.state;
        let held_before = state.held_bytes();
        let held_by_others = self.remote_bytes - held_before;
        let limits = RecordLimits {
            max_key_len: self.config.max_key_len,
            max_value_len: self.config.max_value_len,
            max_keys: self.config.max_keys_per_node,
            max_bytes: self.config.max_remote_state_bytes.saturating_sub(held_by_others),
        };
        let node_id = state.id().clone();
        let mut events = SectionEvents { queue: &mut self.events, visible, numbered: None };
        let (max, gc) = (state.max_version(), state.last_gc_version());
        // Only a proven sender's farewell is written into the copy (and relayed).
        let left = section.left && vouched;
        // A reset replaces the records that the sender's garbage collection may
        // have made stale in our copy, so only a sender that collected more than
        // we did has one to give. A section from version 0 that introduces the
        // node (sent to a peer believed not to know it, for instance because it
        // stopped listing a node it saw dead) is one too when the sender
        // collected past everything we hold.
        let newer_gc = section.last_gc_version > gc;
        let reset =
            newer_gc && (section.reset || (section.from_version == 0 && section.last_gc_version > max));
        // A sender that collected less than we did may hold records deleted and
        // collected since: its reset is stale, and while our own reset is still
        // incomplete (we lack versions below our watermark) its records cannot
        // fill the gap safely.
        if !reset && section.last_gc_version < gc && (section.reset || max < gc) {
            self.metrics.stale_sections += 1;
            state.finish_section(0, 0, left);
            drop(entry);
            self.report_heartbeat(fingerprint, section.heartbeat, now);
            if left {
                self.mark_left(fingerprint, now);
            }
            return;
        }
        let mut skipped = Skipped::default();
        // Read before the records' keys move into events.
        let reserved_records =
            section.key_values.iter().any(|update| update.key.starts_with(RESERVED_PREFIX));
        if reset {
            // Records below the watermark that were expiring or deleted are
            // gone at the owner, which marks its records in version order and
            // collects them after one grace period: a sender that learned of
            // one later may still hold it, and this node, having expired it
            // already, would take it back.
            let watermark = section.last_gc_version;
            section
                .key_values
                .retain(|update| update.version > watermark || matches!(update.value, ValueUpdate::Set(_)));
            let dropped = state.take_records_up_to(section.last_gc_version);
            skipped = state.apply_reset_records(&section.key_values, now, &limits);
            // Complete up to the section's end; beyond it too if the section was
            // whole (it reaches the sender's watermark) and we held more.
            let complete = section.max_version >= section.last_gc_version;
            let new_max = if complete { section.max_version.max(max) } else { section.max_version };
            state.set_versions(new_max, section.last_gc_version);
            events.push(Event::NodeReset(node_id.clone()));
            let touched = section.key_values.iter().map(|update| update.key.as_str());
            let keys = dropped.iter().map(|(key, _)| key.as_str()).chain(touched);
            reset_events(&node_id, &dropped, keys, state, &mut events);
            self.metrics.resets_applied += 1;
            state.finish_section(0, 0, left);
        } else {
            // Everything up to our max version is accounted for (held, superseded
            // or collected): a record at or below it could only resurrect a key.
            state.reserve(&section.key_values, max, &limits);
            // A state without records (a node just met) holds none of the
            // section's keys, which are distinct: no lookup for them.
            let absent = !state.holds_records();
            for update in section.key_values.iter_mut().filter(|update| update.version > max) {
                let previous = match state.apply_record_within(update, now, &limits, absent) {
                    Ok(Some(previous)) => previous,
                    Ok(None) => continue, // old news
                    Err(refusal) => {
                        // Skipped, counted, and the node's later versions still
                        // flow: the section's max version is taken all the same.
                        skipped.count(refusal);
                        if state
                            .drop_older(&update.key, update.version)
                            .is_some_and(|dropped| dropped.is_visible())
                        {
                            events.push_key(&node_id, update.key.clone(), KeyChange::Deleted);
                        }
                        continue;
                    }
                };
                // The record is held: its strings move into the event.
                let key = std::mem::take(&mut update.key);
                match &mut update.value {
                    ValueUpdate::Set(value) | ValueUpdate::SetWithTtl(value) => {
                        let change = KeyChange::Set { value: std::mem::take(value), version: update.version };
                        events.push_key(&node_id, key, change)
                    }
                    ValueUpdate::Deleted if previous.is_some_and(|previous| previous.is_visible()) => {
                        events.push_key(&node_id, key, KeyChange::Deleted)
                    }
                    ValueUpdate::Deleted => {}
                }
            }
            state.finish_section(section.max_version, section.last_gc_version, left);
        }
        self.metrics.records_over_limit += skipped.over_limit;
        self.metrics.records_over_budget += skipped.over_budget;
        self.remote_bytes = held_by_others + state.held_bytes();
        let has_left = state.has_left();
        let state_versions = (state.max_version(), state.last_gc_version());
        drop(entry);
        if reset || dropped_unproven || reserved_records {
            self.reread_accusations(fingerprint);
        }
        if before != (state_versions.0, state_versions.1, has_left) {
            self.note_news(fingerprint);
        }
        self.report_heartbeat(fingerprint, section.heartbeat, now);
        if has_left {
            self.mark_left(fingerprint, now);
        }
        self.update_ready(fingerprint);
    }

    /// The tracked node a section updates, adding (or superseding) it if the
    /// section introduces it.
    fn resolve_section(
        &mut self,
        section: &NodeDelta,
        from: SocketAddr,
        vouched: bool,
        now: Timestamp,
    ) -> Result<Fingerprint, Skip> {
        let fingerprint = section_fingerprint(section);
        if fingerprint == self.self_fingerprint() {
            // Nobody speaks for this node; what they say of it may need refuting.
            let claimed_max = section
                .key_values
                .last()
                .map_or(section.max_version, |record| record.version.max(section.max_version));
            self.note_claim_about_self(section.heartbeat, claimed_max, section.last_gc_version);
            return Err(Skip::Ignored);
        }
        if !self.membership.removed().admits(fingerprint, section.heartbeat) {
            return Err(Skip::Ignored);
        }
        // Removed, but it beat since: a partition healed.
        self.membership.removed_mut().forget(fingerprint);
        if let NodeRef::Full(node_id) = &section.node
            && node_id.name().len() > self.config.max_node_name_len
        {
            // A node this node cannot track; its records never flow here.
            return Err(Skip::OverLimit);
        }
        if let Some(tracked) = self.membership.get(&fingerprint) {
            if let NodeRef::Full(node_id) = &section.node
                && node_id != tracked.state.id()
            {
                // Another identity with a tracked one's fingerprint (crafted: the
                // fingerprint is no cryptographic hash): the first one stays.
                self.metrics.fingerprint_collisions += 1;
                return Err(Skip::Ignored);
            }
            return Ok(fingerprint);
        }
        // Unknown by fingerprint (removed and forgotten since): nothing to do.
        let NodeRef::Full(node_id) = &section.node else { return Err(Skip::Ignored) };
        // A farewell of a node never met, or (right after a pause of this node)
        // news that may be older than the pause.
        if section.left || !self.is_fresh(now) {
            return Err(Skip::Ignored);
        }
        // Another identity at our own address cannot be running beside us: it is
        // forged, or ran here before us. Tracking it would make our own gossip,
        // which comes from that address, vouch for it first-hand at every peer.
        if node_id.gossip_addr() == self.self_entry().state.id().gossip_addr() {
            return Err(Skip::Ignored);
        }
        // First-hand: the section came from the node's own gossip address, and
        // no other node is tracked there (one datagram, or one address, makes
        // at most one first-hand node, however many identities it names).
        let first_hand = node_id.gossip_addr() == from && self.membership.at_addr(&from).is_none();
        let superseded = match self.membership.by_name(node_id.name()) {
            Some(current) => {
                let current_generation =
                    self.membership.get(&current).expect("indexed nodes are tracked").state.id().generation();
                if current == self.self_fingerprint() || node_id.generation() <= current_generation {
                    return Err(Skip::Ignored); // our own name, or an older incarnation
                }
                if !vouched && self.membership.get(&current).is_some_and(|entry| entry.vouched()) {
                    // Only a proven sender retires an incarnation peers vouched for.
                    self.metrics.sections_unproven += 1;
                    return Err(Skip::Refused);
                }
                Some(current)
            }
            None => None,
        };
        match superseded {
            Some(previous) => {
                // The new incarnation takes the old one's place.
                let was_visible = self.membership.get(&previous).is_some_and(|entry| entry.vouched());
                let previous = self.remove_node(previous, now).ok_or(Skip::Ignored)?;
                if !self.add_node(node_id.clone(), fingerprint, section.heartbeat, first_hand, vouched, now) {
                    return Err(Skip::Refused);
                }
                if was_visible && vouched {
                    self.events.push(Event::NodeRestarted { previous, current: node_id.clone() });
                }
            }
            None if !self.add_node(
                node_id.clone(),
                fingerprint,
                section.heartbeat,
                first_hand,
                vouched,
                now,
            ) =>
            {
                return Err(Skip::Refused);
            }
            None => {}
        }
        Ok(fingerprint)
    }
}

fn section_fingerprint(section: &NodeDelta) -> Fingerprint {
    match &section.node {
        NodeRef::Known(fingerprint) => *fingerprint,
        NodeRef::Full(node_id) => node_id.fingerprint(),
    }
}

/// Key events for a reset: `dropped` are the records taken out, `keys` every
/// key the reset touched; each is compared with what `state` holds now.
/// Keys are borrowed and the records read in place: a reset of thousands of
/// records costs no allocation a key beyond its event.
fn reset_events<'a>(
    node_id: &NodeId,
    dropped: &'a [(String, VersionedValue)],
    keys: impl Iterator<Item = &'a str>,
    state: &NodeState,
    events: &mut SectionEvents<'_>,
) {
    let before: HashMap<&str, &VersionedValue> =
        dropped.iter().map(|(key, record)| (key.as_str(), record)).collect();
    let mut seen: HashSet<&str> = HashSet::with_capacity(keys.size_hint().0);
    for key in keys {
        if !seen.insert(key) {
            continue;
        }
        let old = before.get(key).filter(|record| record.is_visible());
        match state.visible_record(key) {
            Some((value, status, version))
                if old.is_none_or(|old| old.value != value || old.status != status) =>
            {
                events.push_key(node_id, key.into(), KeyChange::Set { value: value.into(), version })
            }
            None if old.is_some() => events.push_key(node_id, key.into(), KeyChange::Deleted),
            _ => {}
        }
    }
}

/// Where a section's events go: straight to the queue (not through a
/// vector of the section's own), but for a node the application does not
/// hear of yet, and for the protocol's records (none of its business).
struct SectionEvents<'a> {
    queue: &'a mut EventQueue,
    visible: bool,
    /// The number the queue gave the section's node at its last key event.
    numbered: Option<IdRef>,
}

impl SectionEvents<'_> {
    fn push(&mut self, event: Event) {
        if self.visible {
            self.queue.push(event);
        }
    }

    /// A key event about `node` (the section's), unless the key is the
    /// protocol's.
    fn push_key(&mut self, node: &NodeId, key: CompactString, change: KeyChange) {
        if self.visible && !key.starts_with(RESERVED_PREFIX) {
            self.numbered = Some(self.queue.push_key(node, self.numbered, key, change));
        }
    }
}

/// Why a node section is skipped (the rest of the delta still applies).
enum Skip {
    /// It names this node, a removed node, an older incarnation, or a node known
    /// only by a fingerprint this node does not track.
    Ignored,
    /// It exceeds a local limit.
    OverLimit,
    /// Its node could not be added (counted by `add_node`).
    Refused,
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::config::Config;
    use crate::wire::{KeyValueUpdate, RingRange};

    const T0: Timestamp = Timestamp::ZERO;

    fn addr(port: u16) -> SocketAddr {
        SocketAddr::from(([127, 0, 0, 1], port))
    }

    /// A node that knows ten others, holding 3 to 30 records each: values set,
    /// set with a TTL and deleted, of lengths 0 to 200 (their lengths cross
    /// the varints' one-byte limit).
    fn cluster() -> ClusterState {
        let mut cluster =
            ClusterState::new(Config::default(), NodeState::new(NodeId::new("me", 1, addr(1))), T0);
        let nodes = (2..12)
            .map(|port| {
                let records = u64::from(port - 1) * 3;
                // Versions 10 apart: a cut section's max version may take a
                // byte less than the node's.
                let key_values = (1..=records)
                    .map(|index| {
                        let version = index * 10;
                        let value = "v".repeat((version * 7 % 201) as usize).into();
                        let value = match version % 3 {
                            0 => ValueUpdate::Set(value),
                            1 => ValueUpdate::SetWithTtl(value),
                            _ => ValueUpdate::Deleted,
                        };
                        KeyValueUpdate { key: format!("key-{version}").into(), version, value }
                    })
                    .collect();
                NodeDelta {
                    node: NodeRef::Full(NodeId::new(format!("node-{port}"), 1, addr(port))),
                    heartbeat: u64::from(port) * 100,
                    reset: false,
                    from_version: 0,
                    last_gc_version: 0,
                    max_version: records * 10,
                    left: false,
                    key_values,
                }
            })
            .collect();
        cluster.apply_delta(&mut Delta { nodes, more: false }, addr(2), true, T0);
        assert_eq!(cluster.membership.len(), 11);
        cluster
    }

    /// A digest of a peer that does not know every third node and holds half
    /// of the others' records.
    fn peer_digest(cluster: &ClusterState) -> Digest {
        let entries = cluster
            .membership
            .iter()
            .filter(|(fingerprint, _)| **fingerprint != cluster.self_fingerprint())
            .enumerate()
            .filter(|(index, _)| index % 3 != 0)
            .map(|(_, (fingerprint, entry))| DigestEntry {
                fingerprint: *fingerprint,
                heartbeat: entry.state.heartbeat(),
                last_gc_version: 0,
                max_version: entry.state.max_version() / 2,
            })
            .collect::<Vec<_>>();
        let mut entries = entries;
        entries.sort_unstable_by_key(|entry| entry.fingerprint);
        Digest {
            range: RingRange { start: Fingerprint(0), end: Fingerprint(0) },
            entries,
            ..Digest::default()
        }
    }

    /// An outgoing delta writes exactly as many bytes as its builder counted,
    /// within the budget, and carries each node's records in place: the first
    /// ones above what the peer holds, with the section's max version at its
    /// last record when cut.
    #[test]
    fn outgoing_deltas_write_the_records_they_counted() {
        let cluster = cluster();
        let digest = peer_digest(&cluster);
        let mut rng = fastrand::Rng::with_seed(7);
        let mut cut_seen = false;
        for fair in [false, true] {
            for budget in [0, 2, 20, 60, 100, 250, 700, 1_500, 4_000, 9_000, 100_000] {
                let (outgoing, len) = cluster.build_delta(T0, &digest, budget, fair, &mut rng);
                let bytes = postcard::to_stdvec(&outgoing.writer()).unwrap();
                assert_eq!(bytes.len(), len, "budget {budget}, fair {fair}");
                assert!(len <= budget.max(2), "budget {budget}, fair {fair}: {len}");
                let delta = outgoing.to_delta();
                assert_eq!(delta.more, outgoing.more);
                assert_eq!(delta.nodes.len(), outgoing.entries().count());
                for (section, sent) in delta.nodes.iter().zip(outgoing.entries()) {
                    let fingerprint = section_fingerprint(section);
                    assert_eq!(fingerprint, sent.fingerprint);
                    let state = &cluster.membership.get(&fingerprint).unwrap().state;
                    assert_eq!(
                        matches!(section.node, NodeRef::Full(_)),
                        digest.entries.iter().all(|e| e.fingerprint != fingerprint)
                    );
                    assert_eq!(
                        (section.heartbeat, section.last_gc_version, section.left),
                        (state.heartbeat(), state.last_gc_version(), state.has_left())
                    );
                    let held: Vec<KeyValueUpdate> = state
                        .records_since(section.from_version)
                        .take(section.key_values.len())
                        .map(|record| KeyValueUpdate {
                            key: record.key.into(),
                            version: record.version,
                            value: match record.value {
                                crate::wire::ValueOut::Set(value) => ValueUpdate::Set(value.into()),
                                crate::wire::ValueOut::SetWithTtl(value) => {
                                    ValueUpdate::SetWithTtl(value.into())
                                }
                                crate::wire::ValueOut::Deleted => ValueUpdate::Deleted,
                            },
                        })
                        .collect();
                    assert_eq!(section.key_values, held);
                    let whole = section.key_values.len() == state.records_since(section.from_version).count();
                    let last =
                        section.key_values.last().map_or(section.from_version, |record| record.version);
                    assert_eq!(section.max_version, if whole { state.max_version() } else { last });
                    assert_eq!(section.max_version, sent.max_version);
                    cut_seen |= !whole;
                }
            }
        }
        assert!(cut_seen, "some budget cuts a section");
    }
}
