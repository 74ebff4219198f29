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

/// The live peers a round's targets are drawn from, without a list of them
/// kept beside the table (8 bytes a node: at 10,000 nodes, 800 MB over the
/// cluster).
pub(crate) trait LivePeers {
    /// What names a peer.
    type Peer: Copy + PartialEq;

    /// How many there are.
    fn count(&self) -> usize;

    /// One of them, uniformly at random, or `None` for a draw that missed
    /// (the caller draws again). Only called while [`LivePeers::sparse`] is
    /// false.
    fn draw(&self, rng: &mut fastrand::Rng) -> Option<Self::Peer>;

    /// Whether draws miss so often that [`LivePeers::all`] is cheaper.
    fn sparse(&self) -> bool;

    /// All of them.
    fn all(&self) -> Vec<Self::Peer>;
}

/// A list of peers, each drawn by its index.
impl<P: Copy + PartialEq> LivePeers for &[P] {
    type Peer = P;

    fn count(&self) -> usize {
        self.len()
    }

    fn draw(&self, rng: &mut fastrand::Rng) -> Option<P> {
        (!self.is_empty()).then(|| self[rng.usize(..self.len())])
    }

    fn sparse(&self) -> bool {
        false
    }

    fn all(&self) -> Vec<P> {
        self.to_vec()
    }
}

/// Draws a round makes among many live peers before it lists them all
/// instead, for each target: only reached if the live peers' count was
/// wrong, as draws that miss are rare otherwise.
const DRAWS_PER_TARGET: usize = 64;

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
    pub(crate) fn choose<L: LivePeers>(
        &mut self,
        rng: &mut fastrand::Rng,
        live: L,
        dead: &[L::Peer],
        address: impl Fn(L::Peer) -> Option<SocketAddr>,
        self_addr: SocketAddr,
        fanout: usize,
    ) -> Vec<SocketAddr> {
        let mut targets: Vec<SocketAddr> = Vec::with_capacity(fanout + 2);
        let live_count = live.count();
        for peer in pick_distinct(rng, &live, fanout) {
            targets.extend(address(peer));
        }
        if !dead.is_empty() && rng.f64() < dead.len() as f64 / (live_count + 1) as f64 {
            targets.extend(address(dead[rng.usize(..dead.len())]));
        }
        let round = self.round;
        self.round += 1;
        if live_count == 0 {
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
            && rng.f64() < seeds.len() as f64 / (live_count + seeds.len()) as f64
        {
            targets.push(seeds[rng.usize(..seeds.len())]);
        }
        targets.sort_unstable();
        targets.dedup();
        targets
    }
}

/// `wanted` distinct live peers (all of them, if there are no more),
/// uniformly at random.
fn pick_distinct<L: LivePeers>(rng: &mut fastrand::Rng, live: &L, wanted: usize) -> Vec<L::Peer> {
    let count = live.count();
    if wanted * 2 < count && !live.sparse() {
        // Few among many: distinct draws, without a list of them all.
        let mut picked: Vec<L::Peer> = Vec::with_capacity(wanted);
        for _ in 0..wanted * DRAWS_PER_TARGET {
            if let Some(peer) = live.draw(rng).filter(|peer| !picked.contains(peer)) {
                picked.push(peer);
                if picked.len() == wanted {
                    return picked;
                }
            }
        }
    }
    // A partial Fisher-Yates shuffle of them all.
    let mut all = live.all();
    let wanted = wanted.min(all.len());
    for i in 0..wanted {
        let j = rng.usize(i..all.len());
        all.swap(i, j);
    }
    all.truncate(wanted);
    all
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
            let targets = selector.choose(&mut rng, live.as_slice(), &[], Some, addr(0), 3);
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
            let targets = selector.choose(&mut rng, live.as_slice(), &[], address, addr(0), 9);
            assert!(!targets.contains(&addr(4)));
            assert!(targets.len() >= 8, "{targets:?}");
        }
    }

    /// Live peers whose draws always miss, as a count gone wrong would
    /// make them: a round still finds its targets, by listing them all.
    struct Missing(Vec<u16>);

    impl LivePeers for &Missing {
        type Peer = u16;

        fn count(&self) -> usize {
            self.0.len()
        }

        fn draw(&self, _: &mut fastrand::Rng) -> Option<u16> {
            None
        }

        fn sparse(&self) -> bool {
            false
        }

        fn all(&self) -> Vec<u16> {
            self.0.clone()
        }
    }

    /// Live peers drawn from a table in which only some rows are live
    /// peers, as [`crate::cluster`]'s are: a draw of another row misses.
    struct Rows {
        rows: Vec<Option<u16>>,
    }

    impl LivePeers for &Rows {
        type Peer = u16;

        fn count(&self) -> usize {
            self.rows.iter().flatten().count()
        }

        fn draw(&self, rng: &mut fastrand::Rng) -> Option<u16> {
            self.rows[rng.usize(..self.rows.len())]
        }

        fn sparse(&self) -> bool {
            self.count() * 4 < self.rows.len()
        }

        fn all(&self) -> Vec<u16> {
            self.rows.iter().flatten().copied().collect()
        }
    }

    proptest::proptest! {
        /// Whatever the share of live peers among the rows, a round picks
        /// `wanted` distinct ones (all of them, if fewer), and only them.
        #[test]
        fn picks_are_distinct_live_peers(
            live in proptest::collection::vec(proptest::bool::ANY, 1..300),
            wanted in 0..8usize,
            seed in proptest::num::u64::ANY,
        ) {
            let rows = Rows {
                rows: live.iter().enumerate().map(|(i, live)| live.then_some(i as u16)).collect(),
            };
            let picked = pick_distinct(&mut fastrand::Rng::with_seed(seed), &&rows, wanted);
            let all = (&rows).all();
            proptest::prop_assert_eq!(picked.len(), wanted.min(all.len()));
            proptest::prop_assert!(picked.iter().all(|peer| all.contains(peer)));
            let mut distinct = picked.clone();
            distinct.sort_unstable();
            distinct.dedup();
            proptest::prop_assert_eq!(distinct.len(), picked.len());
        }
    }

    #[test]
    fn draws_that_keep_missing_fall_back_to_the_whole_list() {
        let mut selector = PeerSelector::default();
        let mut rng = fastrand::Rng::with_seed(11);
        let live = Missing((1..=50).collect());
        let mut seen = std::collections::BTreeSet::new();
        for _ in 0..100 {
            let targets = selector.choose(&mut rng, &live, &[], |port| Some(addr(port)), addr(0), 3);
            assert_eq!(targets.len(), 3);
            seen.extend(targets);
        }
        // Uniform over the list, not its first few.
        assert!(seen.len() > 40, "{}", seen.len());
    }

    #[test]
    fn with_no_live_peer_every_seed_but_itself_is_contacted() {
        let mut selector = PeerSelector::default();
        selector.set_seeds([addr(9), addr(1), addr(9), addr(2)]);
        assert_eq!(selector.seeds(), [addr(1), addr(2), addr(9)]);
        let targets =
            selector.choose::<&[SocketAddr]>(&mut fastrand::Rng::with_seed(1), &[], &[], Some, addr(2), 3);
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
            if !selector.choose::<&[SocketAddr]>(&mut rng, &[], &[], Some, addr(0), 3).is_empty() {
                asked.push(round);
            }
        }
        assert_eq!(asked, [0, 1, 3, 5, 7, 9, 11, 13, 15, 17, 19, 21, 23, 25, 27, 29, 31, 33, 35, 37, 39]);
        // A live peer resets the backoff: lonely rounds ask again at once,
        // then after 1 round, then after 2.
        selector.choose(&mut rng, [addr(5)].as_slice(), &[], Some, addr(0), 3);
        let asked: Vec<bool> = (0..4)
            .map(|_| !selector.choose::<&[SocketAddr]>(&mut rng, &[], &[], Some, addr(0), 3).is_empty())
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
            let targets = selector.choose(&mut rng, live.as_slice(), &[addr(50)], Some, addr(0), 2);
            dead_contacted += targets.contains(&addr(50)) as u32;
            seed_contacted += targets.contains(&addr(100)) as u32;
        }
        // One dead of four live: about 1/5 of rounds; one seed: about 1/5 too.
        assert!((100..300).contains(&dead_contacted), "{dead_contacted}");
        assert!((100..300).contains(&seed_contacted), "{seed_contacted}");
    }
}
