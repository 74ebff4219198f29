//! Peer selection: whom a gossip round talks to.
//!
//! A round talks to `gossip_fanout` random live peers; sometimes also to a dead
//! node (more often the more of the cluster is dead), so that a partition heals;
//! and to the seeds when no peer is live, or now and then otherwise, so that
//! newcomers join and split clusters find each other.
//!
//! A node with no live peer asks its seeds with a **backoff**: a seed asked
//! in vain is asked again 1 round later, then every [`MAX_SEED_WAIT`]
//! rounds, until some peer is live. When a whole cluster starts at once,
//! every newcomer asks the same few seeds; asking every round piles `Syn`s
//! on them faster than they answer, their answers come too late to count as
//! solicited ([`crate::validation`]), and the newcomers ask again: a
//! collapse the backoff prevents. The wait stays short because a lost
//! datagram looks the same as a seed behind: at 20 % loss a third of the
//! attempts fail, a few of 1,000 newcomers need seven, and waits growing to
//! 8 rounds put the seventh at round 31 (membership took 45 rounds instead
//! of 13); capped at 2 they put it at round 11.
//!
//! A **quiet** round, one in which the node has no news (no rumor to name, no
//! node to ask for, no change of its own state in the last rumor rounds: see
//! [`crate::cluster`]), talks to [`QUIET_FANOUT`] live peer instead of
//! `gossip_fanout`. News travels from the nodes that have it, which push it at
//! the full fanout for as long as it is a rumor, and every node that learns it
//! has news in turn; a quiet round only has to check, by the digest's hashes,
//! that nothing was missed, and one random peer a round does that. Once a
//! cluster has settled, this cuts its handshakes, and their bytes and CPU, by
//! the fanout.

use std::net::SocketAddr;

/// Live peers a quiet round (one without news) talks to.
pub(crate) const QUIET_FANOUT: usize = 1;

/// The most rounds a node with no live peer waits before asking a seed again.
pub(crate) const MAX_SEED_WAIT: u64 = 2;
const _: () = assert!(MAX_SEED_WAIT >= 1);

/// The seeds, and the choice of a round's targets.
#[derive(Debug, Default)]
pub(crate) struct PeerSelector {
    /// Sorted, without duplicates.
    seeds: Vec<SocketAddr>,
    /// For each seed (same order), the backoff while no peer is live.
    backoff: Vec<Backoff>,
    /// Rounds chosen so far.
    round: u64,
}

/// How a seed is asked while no peer is live.
#[derive(Clone, Copy, Debug, Default)]
struct Backoff {
    /// Times asked since a peer was last live.
    asked: u32,
    /// The first round it may be asked again.
    next_round: u64,
}

impl Backoff {
    /// Whether the seed may be asked in `round`; if so, notes that it is.
    fn ask(&mut self, round: u64) -> bool {
        if round < self.next_round {
            return false;
        }
        let wait = 1u64.checked_shl(self.asked).unwrap_or(u64::MAX).min(MAX_SEED_WAIT);
        self.asked = self.asked.saturating_add(1);
        self.next_round = round + wait;
        true
    }
}

impl PeerSelector {
    /// Replaces the seed addresses (and forgets their backoff).
    pub(crate) fn set_seeds(&mut self, seeds: impl IntoIterator<Item = SocketAddr>) {
        self.seeds = seeds.into_iter().collect();
        self.seeds.sort_unstable();
        self.seeds.dedup();
        self.backoff = vec![Backoff::default(); self.seeds.len()];
    }

    pub(crate) fn seeds(&self) -> &[SocketAddr] {
        &self.seeds
    }

    /// The addresses of a round's targets, sorted and distinct, among the
    /// `live` and `dead` peers (named by whatever `address` turns into an
    /// address; one it cannot is skipped) and the seeds (never `self_addr`).
    /// Called once a round: it counts the rounds of the seeds' backoff.
    pub(crate) fn choose<P: Copy>(
        &mut self,
        rng: &mut fastrand::Rng,
        live: &[P],
        dead: &[P],
        address: impl Fn(P) -> Option<SocketAddr>,
        self_addr: SocketAddr,
        fanout: usize,
    ) -> Vec<SocketAddr> {
        let mut targets: Vec<SocketAddr> = Vec::with_capacity(fanout + 2);
        if fanout * 2 >= live.len() {
            // A partial Fisher-Yates shuffle picks `fanout` distinct live peers.
            let mut live = live.to_vec();
            for i in 0..fanout.min(live.len()) {
                let j = rng.usize(i..live.len());
                live.swap(i, j);
                targets.extend(address(live[i]));
            }
        } else {
            // Few among many: distinct draws, without copying the list.
            let mut picked: Vec<usize> = Vec::with_capacity(fanout);
            while picked.len() < fanout {
                let index = rng.usize(..live.len());
                if !picked.contains(&index) {
                    picked.push(index);
                    targets.extend(address(live[index]));
                }
            }
        }
        if !dead.is_empty() && rng.f64() < dead.len() as f64 / (live.len() + 1) as f64 {
            targets.extend(address(dead[rng.usize(..dead.len())]));
        }
        let round = self.round;
        self.round += 1;
        if live.is_empty() {
            for (seed, backoff) in self.seeds.iter().zip(&mut self.backoff) {
                if *seed != self_addr && backoff.ask(round) {
                    targets.push(*seed);
                }
            }
            targets.sort_unstable();
            targets.dedup();
            return targets;
        }
        self.backoff.fill(Backoff::default());
        let seeds: Vec<SocketAddr> = self.seeds.iter().copied().filter(|seed| *seed != self_addr).collect();
        if !seeds.is_empty()
            && !targets.iter().any(|target| seeds.contains(target))
            && rng.f64() < seeds.len() as f64 / (live.len() + seeds.len()) as f64
        {
            targets.push(seeds[rng.usize(..seeds.len())]);
        }
        targets.sort_unstable();
        targets.dedup();
        targets
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn addr(port: u16) -> SocketAddr {
        SocketAddr::from(([127, 0, 0, 1], port))
    }

    #[test]
    fn a_round_talks_to_fanout_distinct_live_peers() {
        let mut selector = PeerSelector::default();
        let mut rng = fastrand::Rng::with_seed(7);
        let live: Vec<SocketAddr> = (1..=10).map(addr).collect();
        for _ in 0..100 {
            let targets = selector.choose(&mut rng, &live, &[], Some, addr(0), 3);
            assert_eq!(targets.len(), 3);
            assert!(targets.iter().all(|target| live.contains(target)));
        }
    }

    /// Peers are named by anything that turns into an address: one that does
    /// not (a node gone meanwhile) is never a target.
    #[test]
    fn peers_without_an_address_are_skipped() {
        let mut selector = PeerSelector::default();
        let mut rng = fastrand::Rng::with_seed(5);
        let live: Vec<u16> = (1..=10).collect();
        let address = |port: u16| (port != 4).then(|| addr(port));
        for _ in 0..100 {
            let targets = selector.choose(&mut rng, &live, &[], address, addr(0), 9);
            assert!(!targets.contains(&addr(4)));
            assert!(targets.len() >= 8, "{targets:?}");
        }
    }

    #[test]
    fn with_no_live_peer_every_seed_but_itself_is_contacted() {
        let mut selector = PeerSelector::default();
        selector.set_seeds([addr(9), addr(1), addr(9), addr(2)]);
        assert_eq!(selector.seeds(), [addr(1), addr(2), addr(9)]);
        let targets =
            selector.choose::<SocketAddr>(&mut fastrand::Rng::with_seed(1), &[], &[], Some, addr(2), 3);
        assert_eq!(targets, [addr(1), addr(9)]);
    }

    /// Seeds asked in vain are asked again after 1, then every
    /// `MAX_SEED_WAIT` rounds; once a peer is live, the backoff starts over.
    #[test]
    fn seeds_are_asked_with_a_backoff_while_no_peer_is_live() {
        let mut selector = PeerSelector::default();
        selector.set_seeds([addr(1)]);
        let mut rng = fastrand::Rng::with_seed(1);
        let mut asked = Vec::new();
        for round in 0..40 {
            if !selector.choose::<SocketAddr>(&mut rng, &[], &[], Some, addr(0), 3).is_empty() {
                asked.push(round);
            }
        }
        assert_eq!(asked, [0, 1, 3, 5, 7, 9, 11, 13, 15, 17, 19, 21, 23, 25, 27, 29, 31, 33, 35, 37, 39]);
        // A live peer resets the backoff: lonely rounds ask again at once,
        // then after 1 round, then after 2.
        selector.choose(&mut rng, &[addr(5)], &[], Some, addr(0), 3);
        let asked: Vec<bool> = (0..4)
            .map(|_| !selector.choose::<SocketAddr>(&mut rng, &[], &[], Some, addr(0), 3).is_empty())
            .collect();
        assert_eq!(asked, [true, true, false, true]);
    }

    #[test]
    fn dead_nodes_and_seeds_are_contacted_now_and_then() {
        let mut selector = PeerSelector::default();
        selector.set_seeds([addr(100)]);
        let mut rng = fastrand::Rng::with_seed(3);
        let live: Vec<SocketAddr> = (1..=4).map(addr).collect();
        let (mut dead_contacted, mut seed_contacted) = (0, 0);
        for _ in 0..1_000 {
            let targets = selector.choose(&mut rng, &live, &[addr(50)], Some, addr(0), 2);
            dead_contacted += targets.contains(&addr(50)) as u32;
            seed_contacted += targets.contains(&addr(100)) as u32;
        }
        // One dead of four live: about 1/5 of rounds; one seed: about 1/5 too.
        assert!((100..300).contains(&dead_contacted), "{dead_contacted}");
        assert!((100..300).contains(&seed_contacted), "{seed_contacted}");
    }
}
