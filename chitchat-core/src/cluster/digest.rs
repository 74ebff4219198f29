//! Building and reading digests.
//!
//! A **listing** names, for a contiguous range of the fingerprint ring, every
//! node the sender tracks there. Because the range is explicit, a receiver never
//! mistakes a node outside it for a node the sender does not know. A small
//! cluster's `Syn` lists the whole ring. A larger one's `Syn` lists nothing:
//! it carries the **hashes** of consecutive ranges of [`SEGMENT_NODES`] nodes
//! (rotating over the ring, [`SEGMENTS_PER_SYN`] a `Syn`) and its sender's
//! **rumors**, the entries of the nodes whose state changed lately in its
//! eyes. The answer lists the ranges whose hash differs (a listing of one range of
//! [`SEGMENT_NODES`] nodes fits any datagram), names its own entry for the
//! rumors it is behind on, and adds its own rumors. So two nodes that agree
//! exchange a few hundred bytes whatever the size of the cluster, news
//! spreads as rumors (each pushed for [`rumor_rounds`] rounds), and whatever
//! rumors missed is found by the hashes.

use crate::cluster::ClusterState;
use crate::cluster::liveness::grow_heartbeat;
use crate::identity::Fingerprint;
use crate::time::Timestamp;
use crate::wire::size::{MIN_DIGEST_ENTRY_LEN, digest_entry_len, empty_digest_len, encoded_len, varint_len};
use crate::wire::{Digest, DigestEntry, RangeHash, RangeHashes, RingRange, Segment};

/// Nodes per hashed range: the listing of one fits half of the smallest
/// datagram's payload.
pub(crate) const SEGMENT_NODES: usize = 24;

/// Hashed ranges per `Syn` (16 bytes each).
pub(crate) const SEGMENTS_PER_SYN: usize = 16;

/// A `Syn` lists the whole ring, rather than hashing it, when the listing
/// takes at most this many bytes.
pub(crate) const LISTING_ROOM: usize = 512;

/// The most bytes of rumors a digest carries, whatever the datagram: news
/// spreads by many small pushes, and a datagram of 64 KB must not carry a
/// cluster's worth of rumors (after a cold start, every node is news).
pub(crate) const RUMOR_ROOM: usize = 512;

/// Gossip rounds a node spreads a rumor for: `2 + ⌈log10(n + 1)⌉` for `n`
/// tracked nodes (6 at 1,000, 7 at 10,000). Pushed to `gossip_fanout` peers a
/// round, a rumor reaches every node with high probability; the hashes find
/// the rare node it missed.
pub(crate) fn rumor_rounds(nodes: usize) -> u32 {
    2 + (nodes as f64 + 1.0).log10().ceil() as u32
}

impl ClusterState {
    /// A digest of at most `budget` bytes starting at `start`, listing first the
    /// `unknown` fingerprints asked for (up to half the budget). Returns the digest
    /// and its encoded length.
    pub(crate) fn build_digest(
        &self,
        now: Timestamp,
        start: Fingerprint,
        unknown: Vec<Fingerprint>,
        budget: usize,
    ) -> (Digest, usize) {
        self.build_listing(now, start, None, unknown, budget)
    }

    /// A digest listing at most up to `end` (the whole way round if `None`).
    fn build_listing(
        &self,
        now: Timestamp,
        start: Fingerprint,
        end: Option<Fingerprint>,
        mut unknown: Vec<Fingerprint>,
        budget: usize,
    ) -> (Digest, usize) {
        let mut len = empty_digest_len();
        let unknown_room = budget.saturating_sub(len) / 2;
        let mut unknown_len = 0;
        let mut kept = 0;
        for _ in &unknown {
            let next = 8 + varint_len(kept as u64 + 1) - varint_len(kept as u64);
            if unknown_len + next > unknown_room {
                break;
            }
            unknown_len += next;
            kept += 1;
        }
        unknown.truncate(kept);
        len += unknown_len;

        // Room for our own entry, sent apart when the range ends up not covering it.
        let own = self.own_digest_entry();
        let own_len = digest_entry_len(&own);
        let budget = budget.saturating_sub(own_len);
        let mut entries = Vec::new();
        let mut packed = 0;
        let limit = end;
        let mut end = None;
        let mut bounded = false;
        for row in self.ring_from(start) {
            let fingerprint = row.fingerprint();
            if let Some(limit) = limit
                && limit != start
                && fingerprint.0.wrapping_sub(start.0) >= limit.0.wrapping_sub(start.0)
            {
                bounded = true;
                break;
            }
            if !self.relays(row, now) {
                continue;
            }
            let digest_entry = row.entry().digest_entry(fingerprint);
            // The entries are one byte string: its length prefix may grow too.
            let entry_len = digest_entry_len(&digest_entry);
            let next = entry_len + varint_len((packed + entry_len) as u64) - varint_len(packed as u64);
            if len + next > budget {
                end = Some(fingerprint);
                break;
            }
            len += next;
            packed += entry_len;
            entries.push(digest_entry);
        }
        let range = match end {
            None if bounded => RingRange { start, end: limit.expect("bounded by the limit") },
            Some(end) if end == start => {
                // Not even one entry fits, and `start..start` would read as the
                // whole ring: a range of one fingerprint no tracked node has.
                let mut alone = Fingerprint(start.0.wrapping_sub(1));
                while self.membership.contains(&alone) {
                    alone = Fingerprint(alone.0.wrapping_sub(1));
                }
                RingRange { start: alone, end: Fingerprint(alone.0.wrapping_add(1)) }
            }
            Some(end) => RingRange { start, end },
            None => {
                // Everything fits: the whole ring, in plain order. The walk
                // went from `start` to the top of the ring, then from its
                // bottom up to `start`: two sorted runs, swapped.
                let wrap = entries.partition_point(|entry| entry.fingerprint >= start);
                entries.rotate_left(wrap);
                debug_assert!(entries.is_sorted_by_key(|entry| entry.fingerprint));
                RingRange::FULL
            }
        };
        let sender = (!range.contains(own.fingerprint)).then_some(own);
        if sender.is_some() {
            len += own_len;
        }
        (Digest { range, entries, unknown, sender, ..Digest::default() }, len)
    }

    fn own_digest_entry(&self) -> DigestEntry {
        self.self_entry().digest_entry(self.self_fingerprint())
    }

    /// A range naming no tracked node: the listing of a digest that lists
    /// nothing.
    fn empty_range(&self) -> RingRange {
        let mut alone = Fingerprint(self.self_fingerprint().0.wrapping_sub(1));
        while self.membership.contains(&alone) {
            alone = Fingerprint(alone.0.wrapping_sub(1));
        }
        RingRange { start: alone, end: Fingerprint(alone.0.wrapping_add(1)) }
    }

    /// The digest a `Syn` opens a handshake with, in at most `budget` bytes:
    /// the whole ring listed if that takes at most [`LISTING_ROOM`] bytes;
    /// else the hashes of up to [`SEGMENTS_PER_SYN`] ranges from `cursor`,
    /// the `rumors` (up to half the budget) and the `asks` (nodes named by
    /// peers that this node does not know, up to a quarter). Returns the
    /// digest and where the next one's hashes start.
    pub(crate) fn build_syn_digest(
        &self,
        now: Timestamp,
        budget: usize,
        cursor: Fingerprint,
        rumors: &[Fingerprint],
        mut asks: Vec<Fingerprint>,
    ) -> (Digest, Fingerprint) {
        let room = budget.min(LISTING_ROOM);
        // Every entry takes at least `MIN_DIGEST_ENTRY_LEN` bytes: past that many
        // relayed nodes, the listing cannot fit and is not tried.
        let relayed = self.membership.rows().iter().filter(|row| self.relays(*row, now));
        if relayed.take(room / MIN_DIGEST_ENTRY_LEN + 1).count() <= room / MIN_DIGEST_ENTRY_LEN {
            let (listing, _) = self.build_digest(now, Fingerprint(0), asks.clone(), room);
            if listing.range.is_full() {
                return (listing, cursor);
            }
        }
        asks.retain(|fingerprint| !self.membership.contains(fingerprint));
        asks.truncate(budget / 4 / 8);
        let mut rumor_entries: Vec<DigestEntry> = rumors
            .iter()
            .filter(|fingerprint| **fingerprint != self.self_fingerprint())
            .filter_map(|fingerprint| {
                let entry = self.membership.get(fingerprint)?;
                self.is_relayed(entry, now).then(|| entry.digest_entry(*fingerprint))
            })
            .collect();
        keep_within(&mut rumor_entries, (budget / 2).min(RUMOR_ROOM));
        rumor_entries.sort_unstable_by_key(|entry| entry.fingerprint);
        let (hashes, next) = self.range_hashes(now, cursor);
        let digest = Digest {
            range: self.empty_range(),
            entries: Vec::new(),
            unknown: asks,
            sender: Some(self.own_digest_entry()),
            rumors: rumor_entries,
            hashes,
        };
        (digest, next)
    }

    /// The hashes of up to [`SEGMENTS_PER_SYN`] consecutive ranges of
    /// [`SEGMENT_NODES`] relayed nodes each, from `cursor`; and where the next
    /// ones start (the ring closes at `cursor` if they went all the way round).
    fn range_hashes(&self, now: Timestamp, cursor: Fingerprint) -> (RangeHashes, Fingerprint) {
        let mut segments = Vec::with_capacity(SEGMENTS_PER_SYN);
        let mut hash = RangeHash::default();
        let mut in_segment = 0;
        for row in self.ring_from(cursor) {
            if !self.relays(row, now) {
                continue;
            }
            if in_segment == SEGMENT_NODES {
                segments.push(Segment { end: row.fingerprint(), hash });
                if segments.len() == SEGMENTS_PER_SYN {
                    return (RangeHashes { start: cursor, segments }, row.fingerprint());
                }
                (hash, in_segment) = (RangeHash::default(), 0);
            }
            hash = hash + row.summary().hash;
            in_segment += 1;
        }
        // Round the whole ring: the last range closes it where the first began.
        segments.push(Segment { end: cursor, hash });
        (RangeHashes { start: cursor, segments }, cursor)
    }

    /// Where a peer's hashed ranges differ from this node's: from the start
    /// of the first that differs to the end of the last (one range when one
    /// differs; a newcomer's, which differ everywhere, span its whole view).
    /// The ranges go clockwise from their start (a rule of the wire), so one
    /// walk of the ring hashes them all.
    pub(crate) fn mismatches(&self, now: Timestamp, hashes: &RangeHashes) -> Option<RingRange> {
        let (mut first, mut last) = (None, None);
        self.compare_ranges(now, hashes, |range, agree| {
            if !agree {
                first.get_or_insert(range);
                last = Some(range);
            }
        });
        Some(RingRange { start: first?.start, end: last?.end })
    }

    /// Calls `visit` with each of a peer's hashed ranges and whether this
    /// node's hash of it is the same, in one walk (the ranges go clockwise).
    fn compare_ranges(&self, now: Timestamp, hashes: &RangeHashes, mut visit: impl FnMut(RingRange, bool)) {
        let mut rows = self.ring_from(hashes.start).peekable();
        for (range, theirs) in hashes.ranges() {
            let mut mine = RangeHash::default();
            while let Some(row) = rows.next_if(|row| range.contains(row.fingerprint())) {
                if self.relays(row, now) {
                    mine = mine + row.summary().hash;
                }
            }
            visit(range, mine == theirs);
        }
    }

    /// After a pause of this node, the nodes it relays in the ranges whose
    /// hash a peer's `Syn` shares are confirmed: the peer holds them as this
    /// node does, so the cluster did not remove them meanwhile. (A `Syn` of a
    /// large cluster lists nobody: without this, a node would be confirmed
    /// only by the few peers that talk to it or name it, and after a pause
    /// most of a large cluster would be declared dead for want of it.)
    fn confirm_agreeing(&mut self, hashes: &RangeHashes, now: Timestamp) {
        let mut agreeing = Vec::new();
        self.compare_ranges(now, hashes, |range, agree| {
            if agree {
                agreeing.push(range);
            }
        });
        let unconfirmed: Vec<Fingerprint> = agreeing
            .into_iter()
            .flat_map(|range| self.nodes_in(range))
            .filter(|row| self.relays(*row, now) && !row.entry().confirmed())
            .map(|row| row.fingerprint())
            .collect();
        for fingerprint in unconfirmed {
            if let Some(mut node) = self.membership.get_mut(&fingerprint) {
                node.set_confirmed(true);
            }
        }
    }

    /// The digest answering a `Syn` that hashed instead of listing, in at most
    /// `budget` bytes: the listing of `mismatch` (from the first range whose
    /// hash differs to the last, as far as it fits), this node's entries for the peer's
    /// rumors it is behind on and for its own `rumors` (up to a third of the
    /// budget), and the `unknown` nodes it asks for.
    pub(crate) fn build_answer_digest(
        &self,
        now: Timestamp,
        syn: &Digest,
        mismatch: Option<RingRange>,
        unknown: Vec<Fingerprint>,
        rumors: &[Fingerprint],
        budget: usize,
    ) -> (Digest, usize) {
        let mut wanted: Vec<DigestEntry> = Vec::new();
        for theirs in &syn.rumors {
            if let Some(entry) = self.membership.get(&theirs.fingerprint) {
                let mine = entry.digest_entry(theirs.fingerprint);
                if is_behind(&mine, theirs) {
                    wanted.push(mine);
                }
            }
        }
        for fingerprint in rumors {
            // The Syn's rumors are sorted (a rule of the wire).
            let named = syn.rumors.binary_search_by_key(fingerprint, |rumor| rumor.fingerprint).is_ok();
            if *fingerprint == self.self_fingerprint() || named {
                continue;
            }
            if let Some(entry) = self.membership.get(fingerprint)
                && self.is_relayed(entry, now)
            {
                wanted.push(entry.digest_entry(*fingerprint));
            }
        }
        keep_within(&mut wanted, (budget / 3).min(RUMOR_ROOM));
        let rumors_len: usize = wanted.iter().map(digest_entry_len).sum::<usize>() + 2;
        let listing_budget = budget.saturating_sub(rumors_len);
        let mut digest = match mismatch {
            Some(range) => self.build_listing(now, range.start, Some(range.end), unknown, listing_budget).0,
            None => {
                let mut unknown = unknown;
                unknown.truncate(listing_budget / 2 / 8);
                Digest {
                    range: self.empty_range(),
                    unknown,
                    sender: Some(self.own_digest_entry()),
                    ..Digest::default()
                }
            }
        };
        let range = digest.range;
        let sender = digest.sender.map(|sender| sender.fingerprint);
        wanted.retain(|entry| !range.contains(entry.fingerprint) && Some(entry.fingerprint) != sender);
        wanted.sort_unstable_by_key(|entry| entry.fingerprint);
        wanted.dedup_by_key(|entry| entry.fingerprint);
        digest.rumors = wanted;
        let len = encoded_len(&digest);
        (digest, len)
    }

    /// What a peer's digest shows this node lacks: the nodes it is behind on
    /// (as rumors to put in its next `Syn`s, so that a peer that holds more
    /// sends it), and those it does not know ([`ClusterState::unknown_in`]),
    /// in the digest's order. One lookup an entry.
    pub(crate) fn wants_in(&self, digest: &Digest) -> (Vec<Fingerprint>, Vec<Fingerprint>) {
        let (mut behind, mut unknown) = (Vec::new(), Vec::new());
        let self_fingerprint = self.self_fingerprint();
        if let Some(sender) = &digest.sender
            && self.is_unknown(sender)
        {
            unknown.push(sender.fingerprint);
        }
        for theirs in digest.entries.iter().chain(&digest.rumors) {
            match self.membership.get(&theirs.fingerprint) {
                Some(entry)
                    if theirs.fingerprint != self_fingerprint
                        && is_behind(&entry.digest_entry(theirs.fingerprint), theirs) =>
                {
                    behind.push(theirs.fingerprint);
                }
                Some(_) => {}
                None if self.membership.removed().admits(theirs.fingerprint, theirs.heartbeat) => {
                    unknown.push(theirs.fingerprint);
                }
                None => {}
            }
        }
        (behind, unknown)
    }

    /// Takes the heartbeats a peer's digest reports. The listing's entries
    /// are looked up one by one (in ring order, as the wire requires), not
    /// merged with a walk of the range's rows: a listing names at most what a
    /// datagram holds, a range may span every tracked node (a new node's
    /// digest lists the whole ring).
    pub(crate) fn absorb_digest(&mut self, digest: &Digest, now: Timestamp) {
        let mut revived = Vec::new();
        let mut grew = Vec::new();
        let fresh = self.is_fresh(now);
        let self_fingerprint = self.self_fingerprint();
        let mut claims_about_self = None;
        for entry in &digest.entries {
            let fingerprint = entry.fingerprint;
            let Some(mut node) = self.membership.get_mut(&fingerprint) else { continue };
            if fresh {
                node.set_confirmed(true);
            }
            if fingerprint == self_fingerprint {
                claims_about_self = Some(*entry);
                continue;
            }
            if entry.heartbeat > node.state.heartbeat() {
                grew.push(fingerprint);
            }
            if grow_heartbeat(&mut node, entry.heartbeat, fresh) {
                revived.push(fingerprint);
            }
        }
        for fingerprint in revived {
            self.revive(fingerprint, now);
        }
        for fingerprint in grew {
            self.note_news(fingerprint);
        }
        if let Some(sender) = digest.sender {
            if sender.fingerprint == self_fingerprint {
                claims_about_self = Some(sender);
            }
            self.report_heartbeat(sender.fingerprint, sender.heartbeat, now);
            if fresh && let Some(mut node) = self.membership.get_mut(&sender.fingerprint) {
                node.set_confirmed(true);
            }
        }
        for rumor in &digest.rumors {
            if rumor.fingerprint == self_fingerprint {
                claims_about_self = Some(*rumor);
                continue;
            }
            self.report_heartbeat(rumor.fingerprint, rumor.heartbeat, now);
            if fresh && let Some(mut node) = self.membership.get_mut(&rumor.fingerprint) {
                node.set_confirmed(true);
            }
        }
        if let Some(claim) = claims_about_self {
            self.note_claim_about_self(claim.heartbeat, claim.max_version, claim.last_gc_version);
        }
        if fresh && !digest.hashes.segments.is_empty() && self.confirming(now) {
            self.confirm_agreeing(&digest.hashes, now);
        }
    }

    /// Nodes a peer's digest names that this node neither tracks nor removed.
    /// (A removed node is asked for again only if its heartbeat grew since.)
    pub(crate) fn unknown_in(&self, digest: &Digest) -> Vec<Fingerprint> {
        digest
            .sender
            .iter()
            .chain(&digest.entries)
            .chain(&digest.rumors)
            .filter(|entry| self.is_unknown(entry))
            .map(|entry| entry.fingerprint)
            .collect()
    }

    /// Whether this node neither tracks nor removed the node of `entry`.
    fn is_unknown(&self, entry: &DigestEntry) -> bool {
        !self.membership.contains(&entry.fingerprint)
            && self.membership.removed().admits(entry.fingerprint, entry.heartbeat)
    }
}

/// Keeps the entries, in order, while their packed length stays within
/// `room` bytes.
fn keep_within(entries: &mut Vec<DigestEntry>, mut room: usize) {
    entries.retain(|entry| {
        let len = digest_entry_len(entry);
        let keep = len <= room;
        room = room.saturating_sub(len);
        keep
    });
}

/// Whether `mine` lacks something `theirs` has.
fn is_behind(mine: &DigestEntry, theirs: &DigestEntry) -> bool {
    theirs.max_version > mine.max_version
        || theirs.last_gc_version > mine.last_gc_version
        || theirs.heartbeat > mine.heartbeat
}

#[cfg(test)]
mod tests {
    use std::net::SocketAddr;

    use super::*;
    use crate::config::Config;
    use crate::identity::NodeId;
    use crate::node_state::NodeState;

    /// With room for not one entry, a digest covers one fingerprint no node
    /// has: `start..start` would read as "the whole ring, and I know nobody
    /// there".
    #[test]
    fn a_digest_without_room_for_one_entry_claims_no_node() {
        let addr = |port: u16| SocketAddr::from(([127, 0, 0, 1], port));
        let now = Timestamp::ZERO;
        let mut cluster =
            ClusterState::new(Config::default(), NodeState::new(NodeId::new("me", 1, addr(1))), now);
        let ids: Vec<NodeId> = (2..6).map(|port| NodeId::new(format!("n{port}"), 1, addr(port))).collect();
        for id in &ids {
            assert!(cluster.add_node(id.clone(), id.fingerprint(), 1, false, true, now));
        }
        let start = ids[0].fingerprint();
        let (digest, _) = cluster.build_digest(now, start, Vec::new(), empty_digest_len() + 2);
        assert!(digest.entries.is_empty());
        assert!(!digest.range.is_full(), "{digest:?}");
        assert!(cluster.membership.iter().all(|(fingerprint, _)| !digest.range.contains(*fingerprint)));
    }

    /// The one walk that compares a peer's hashed ranges finds the same
    /// differing span as hashing each range on its own, wherever the ranges
    /// start and whichever of them differ.
    #[test]
    fn mismatches_match_a_range_by_range_comparison() {
        let addr = |port: u16| SocketAddr::from(([127, 0, 0, 1], port));
        let now = Timestamp::ZERO;
        let ids: Vec<NodeId> = (2..202).map(|port| NodeId::new(format!("n{port}"), 1, addr(port))).collect();
        let cluster = |behind: &[usize]| {
            let mut cluster =
                ClusterState::new(Config::default(), NodeState::new(NodeId::new("me", 1, addr(1))), now);
            for (index, id) in ids.iter().enumerate() {
                let heartbeat = if behind.contains(&index) { 1 } else { 2 };
                assert!(cluster.add_node(id.clone(), id.fingerprint(), heartbeat, false, true, now));
            }
            cluster
        };
        let mine = cluster(&[]);
        let naive = |hashes: &RangeHashes| {
            let hash_of = |range: RingRange| {
                mine.nodes_in(range)
                    .filter(|row| mine.relays(*row, now))
                    .fold(RangeHash::default(), |hash, row| {
                        hash + RangeHash::of_entry(&row.entry().digest_entry(row.fingerprint()))
                    })
            };
            let differing: Vec<RingRange> = hashes
                .ranges()
                .filter(|(range, hash)| hash_of(*range) != *hash)
                .map(|(range, _)| range)
                .collect();
            Some(RingRange { start: differing.first()?.start, end: differing.last()?.end })
        };
        for (case, behind) in
            [vec![], vec![0], vec![7, 150], vec![199], (0..200).collect()].iter().enumerate()
        {
            let theirs = cluster(behind);
            for cursor in [Fingerprint(0), ids[case * 11].fingerprint(), Fingerprint(u64::MAX)] {
                let (hashes, _) = theirs.range_hashes(now, cursor);
                assert_eq!(
                    mine.mismatches(now, &hashes),
                    naive(&hashes),
                    "behind {behind:?}, from {cursor:?}"
                );
            }
        }
    }
}
