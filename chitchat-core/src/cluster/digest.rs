//! Building and reading digests.
//!
//! A digest lists, for a contiguous range of the fingerprint ring, every node the
//! sender tracks there. When every node fits the datagram the range is the whole
//! ring; otherwise the range stops before the first node that does not fit, and
//! the sender's next digest starts there, so successive digests rotate over the
//! ring and cover every node. Because the range is explicit, a receiver never
//! mistakes a node outside it for a node the sender does not know.

use std::ops::Bound;

use crate::cluster::ClusterState;
use crate::cluster::liveness::grow_heartbeat;
use crate::identity::Fingerprint;
use crate::time::Timestamp;
use crate::wire::size::{digest_entry_len, empty_digest_len, varint_len};
use crate::wire::{Digest, DigestEntry, RingRange};

impl ClusterState {
    /// A digest of at most `budget` bytes starting at `start`, listing first the
    /// `unknown` fingerprints asked for (up to half the budget). Returns the digest
    /// and its encoded length.
    pub(crate) fn build_digest(
        &self,
        now: Timestamp,
        start: Fingerprint,
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
        let ring = self
            .membership
            .range((Bound::Included(start), Bound::Unbounded))
            .iter()
            .chain(self.membership.range((Bound::Unbounded, Bound::Excluded(start))));
        let mut entries = Vec::new();
        let mut packed = 0;
        let mut end = None;
        for (fingerprint, entry) in ring {
            if !self.is_relayed(entry, now) {
                continue;
            }
            let digest_entry = DigestEntry {
                fingerprint: *fingerprint,
                heartbeat: entry.state.heartbeat(),
                last_gc_version: entry.state.last_gc_version(),
                max_version: entry.state.max_version(),
            };
            // The entries are one byte string: its length prefix may grow too.
            let entry_len = digest_entry_len(&digest_entry);
            let next = entry_len + varint_len((packed + entry_len) as u64) - varint_len(packed as u64);
            if len + next > budget {
                end = Some(*fingerprint);
                break;
            }
            len += next;
            packed += entry_len;
            entries.push(digest_entry);
        }
        let range = match end {
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
                // Everything fits: the whole ring, in plain order.
                entries.sort_unstable_by_key(|entry| entry.fingerprint);
                RingRange::FULL
            }
        };
        let sender = (!range.contains(own.fingerprint)).then_some(own);
        if sender.is_some() {
            len += own_len;
        }
        (Digest { range, entries, unknown, sender }, len)
    }

    fn own_digest_entry(&self) -> DigestEntry {
        let state = &self.self_entry().state;
        DigestEntry {
            fingerprint: self.self_fingerprint(),
            heartbeat: state.heartbeat(),
            last_gc_version: state.last_gc_version(),
            max_version: state.max_version(),
        }
    }

    /// Takes the heartbeats a peer's digest reports. Both the digest and the node
    /// map are in ring order, so one merged walk does it.
    pub(crate) fn absorb_digest(&mut self, digest: &Digest, now: Timestamp) {
        let mut entries = digest.entries.iter().peekable();
        let mut revived = Vec::new();
        let range = digest.range;
        let fresh = self.is_fresh(now);
        let self_fingerprint = self.self_fingerprint();
        let mut claims_about_self = None;
        for bounds in Self::ring_bounds(range) {
            for (fingerprint, node) in self.membership.range_mut(bounds).iter_mut() {
                let offset = range.offset(*fingerprint);
                while entries.next_if(|entry| range.offset(entry.fingerprint) < offset).is_some() {}
                let Some(entry) = entries.next_if(|entry| entry.fingerprint == *fingerprint) else {
                    continue;
                };
                if *fingerprint == self_fingerprint {
                    claims_about_self = Some(*entry);
                }
                if *fingerprint != self_fingerprint
                    && grow_heartbeat(node, entry.heartbeat, now, fresh, &self.detector)
                {
                    revived.push(*fingerprint);
                }
            }
        }
        for fingerprint in revived {
            self.revive(fingerprint, now);
        }
        if let Some(sender) = digest.sender {
            if sender.fingerprint == self_fingerprint {
                claims_about_self = Some(sender);
            }
            self.report_heartbeat(sender.fingerprint, sender.heartbeat, now);
        }
        if let Some(claim) = claims_about_self {
            self.note_claim_about_self(claim.heartbeat, claim.max_version, claim.last_gc_version);
        }
    }

    /// Nodes a peer's digest names that this node neither tracks nor removed.
    /// (A removed node is asked for again only if its heartbeat grew since.)
    pub(crate) fn unknown_in(&self, digest: &Digest) -> Vec<Fingerprint> {
        digest
            .sender
            .iter()
            .chain(&digest.entries)
            .filter(|entry| {
                !self.membership.contains(&entry.fingerprint)
                    && self.membership.removed().admits(entry.fingerprint, entry.heartbeat)
            })
            .map(|entry| entry.fingerprint)
            .collect()
    }
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
}
