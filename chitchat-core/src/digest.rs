//! Building and reading digests.
//!
//! A digest lists, for a contiguous range of the fingerprint ring, every node the
//! sender tracks there. When every node fits the datagram the range is the whole
//! ring; otherwise the range stops before the first node that does not fit, and
//! the sender's next digest starts there, so successive digests rotate over the
//! ring and cover every node. Because the range is explicit, a receiver never
//! mistakes a node outside it for a node the sender does not know.

use crate::cluster::ClusterState;
use crate::identity::Fingerprint;
use crate::message::{Digest, DigestEntry, RingRange};
use crate::time::Timestamp;
use crate::wire::{digest_entry_len, empty_digest_len, varint_len};

impl ClusterState {
    /// A digest of at most `budget` bytes starting at `start`, listing first the
    /// `unknown` fingerprints asked for (up to half the budget). Returns the digest
    /// and its encoded length.
    pub fn build_digest(
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

        let ring = self.nodes.range(start..).chain(self.nodes.range(..start));
        let mut entries = Vec::new();
        let mut end = None;
        for (fingerprint, entry) in ring {
            if self.is_retired(entry, now) {
                continue;
            }
            let digest_entry = DigestEntry {
                fingerprint: *fingerprint,
                heartbeat: entry.state.heartbeat(),
                last_gc_version: entry.state.last_gc_version(),
                max_version: entry.state.max_version(),
            };
            let next = digest_entry_len(&digest_entry) + varint_len(entries.len() as u64 + 1)
                - varint_len(entries.len() as u64);
            if len + next > budget {
                end = Some(*fingerprint);
                break;
            }
            len += next;
            entries.push(digest_entry);
        }
        let range = match end {
            Some(end) => RingRange { start, end },
            None => {
                // Everything fits: the whole ring, in plain order.
                entries.sort_unstable_by_key(|entry| entry.fingerprint);
                RingRange::FULL
            }
        };
        (Digest { range, entries, unknown }, len)
    }

    /// Takes the heartbeats a peer's digest reports.
    pub fn absorb_digest(&mut self, digest: &Digest, now: Timestamp) {
        for entry in &digest.entries {
            self.report_heartbeat(entry.fingerprint, entry.heartbeat, now);
        }
    }

    /// Nodes a peer's digest names that this node neither tracks nor removed.
    pub fn unknown_in(&self, digest: &Digest) -> Vec<Fingerprint> {
        digest
            .entries
            .iter()
            .map(|entry| entry.fingerprint)
            .filter(|fingerprint| {
                !self.nodes.contains_key(fingerprint) && !self.removed.contains(fingerprint)
            })
            .collect()
    }
}
