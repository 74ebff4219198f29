//! Refutation: what a node does with claims about itself that it never made.
//!
//! Only a node raises its own heartbeat, versions and garbage-collection
//! watermark, so a peer's digest entry or section that says this node is
//! further along than it is was forged (or comes from an earlier incarnation
//! that ran under the same identity). Left alone, such a claim spreads and
//! lasts: peers would take none of the node's real updates (versions below the
//! claim look old), and its real heartbeats would look like silence. The node
//! refutes it at its next gossip round, from its own authoritative state:
//!
//! - a heartbeat above its own: it jumps its heartbeat past the claim;
//! - versions or a watermark above its own: it re-publishes its whole state
//!   above the claim (every record moves to a new version, and the watermark
//!   rises to just below them), so that every peer resets its copy of the node
//!   from the node's own, dropping whatever was forged there. At most once in
//!   [`REPUBLISH_ROUNDS`] gossip intervals, so that a stream of forged claims
//!   costs the cluster at most one transfer of the node's state per that
//!   many rounds.
//!
//! Claims are bounded by the wire format: counters of 2^62 or more are refused.
//! A claim so close to that limit that going past it would leave the node too
//! little room cannot be refuted without a restart (a new generation starts
//! its counters afresh); it is counted in
//! [`crate::Metrics::unrefutable_claims`]. Without encryption, a forger who
//! keeps making such claims can keep a node's updates from spreading; with it,
//! nobody without the key makes claims at all.

use crate::cluster::ClusterState;
use crate::time::Timestamp;
use crate::wire::MAX_COUNTER;

/// Re-publications of this node's state are at least this many gossip
/// intervals apart.
pub(crate) const REPUBLISH_ROUNDS: u32 = 4;

/// A node refutes a claim only if going past it leaves this much room below
/// [`MAX_COUNTER`] (2^40: 35,000 years of heartbeats at one a second, a
/// trillion writes), so that its own counters stay valid on the wire.
const HEADROOM: u64 = 1 << 40;

/// The highest claims about this node heard since it last refuted (0: none).
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub(crate) struct Claims {
    heartbeat: u64,
    max_version: u64,
    last_gc_version: u64,
}

impl ClusterState {
    /// A peer says this node's heartbeat, max version and GC watermark are
    /// these: notes what goes past its own.
    pub(crate) fn note_claim_about_self(&mut self, heartbeat: u64, max_version: u64, last_gc_version: u64) {
        let state = &self.membership.self_entry().state;
        if heartbeat > state.heartbeat() {
            self.claims.heartbeat = self.claims.heartbeat.max(heartbeat);
        }
        if max_version > state.max_version() || last_gc_version > state.last_gc_version() {
            self.claims.max_version = self.claims.max_version.max(max_version);
            self.claims.last_gc_version = self.claims.last_gc_version.max(last_gc_version);
        }
    }

    /// Refutes, at a gossip round, the claims noted since the last one.
    pub(crate) fn refute_claims(&mut self, now: Timestamp) {
        let claims = self.claims;
        let mut refuted = false;
        let mut unrefutable = false;
        let mut entry = self.membership.self_entry_mut();
        let state = &mut entry.state;
        if claims.heartbeat > state.heartbeat() {
            if claims.heartbeat < MAX_COUNTER - HEADROOM {
                state.set_heartbeat(claims.heartbeat + 1);
                refuted = true;
            } else {
                unrefutable = true;
            }
        }
        self.claims.heartbeat = 0;
        let still_claimed =
            claims.max_version > state.max_version() || claims.last_gc_version > state.last_gc_version();
        if !still_claimed {
            self.claims.max_version = 0;
            self.claims.last_gc_version = 0;
        } else if now >= self.next_republish_at {
            let above = claims.max_version.max(claims.last_gc_version).max(state.max_version()) + 1;
            if above >= MAX_COUNTER - HEADROOM - state.num_records() as u64 {
                // Going past the claim would leave no room to count on: only a
                // new generation (a restart) starts afresh.
                unrefutable = true;
                self.claims.max_version = 0;
                self.claims.last_gc_version = 0;
                drop(entry);
                self.count_refutation(refuted, unrefutable);
                return;
            }
            state.republish_above(above);
            self.next_republish_at = now + self.config.gossip_interval * REPUBLISH_ROUNDS;
            self.claims.max_version = 0;
            self.claims.last_gc_version = 0;
            refuted = true;
        }
        drop(entry);
        self.count_refutation(refuted, unrefutable);
    }

    fn count_refutation(&mut self, refuted: bool, unrefutable: bool) {
        if refuted {
            self.metrics.refutations += 1;
        }
        if unrefutable {
            self.metrics.unrefutable_claims += 1;
            tracing::warn!(
                "a claim about this node is too close to the counters' limit to refute; restart it"
            );
        }
    }
}
