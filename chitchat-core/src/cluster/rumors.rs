//! Rumors: the nodes whose state changed lately in this node's eyes, which its
//! `Syn`s name for a few rounds so that the change spreads (see
//! [`super::digest`]), and the nodes peers named that it does not know, which
//! its `Syn`s ask for. Rumors, asks and a recent change of this node's own
//! state are its **news**: a round without news is quiet (one handshake, see
//! [`crate::peers`]).

use std::collections::VecDeque;

use crate::identity::Fingerprint;

/// The most nodes asked for at once (a newcomer to a large cluster learns
/// of many at once; a `Syn` carries as many as a quarter of it holds).
const MAX_ASKS: usize = 2_048;

/// The most rumors named at once: more than a digest has room for
/// ([`super::digest::RUMOR_ROOM`] bytes, about 40 entries).
const MAX_NAMED: usize = 64;

/// Rumors and asks. Bounded: each round's rumors are deduplicated once
/// they double, so at most twice the tracked nodes (`max_nodes`) for each
/// of the few rounds a rumor lasts, and twice [`MAX_ASKS`] asks
/// (duplicates included) until they are taken.
#[derive(Debug, Default)]
pub(crate) struct Rumors {
    /// The rumors by rounds left to name them: the first bucket's for one
    /// more round, the next's for two, and so on (a node noted again is in
    /// several, and counts by the last). 8 bytes a rumor: a cold start
    /// makes the whole cluster news in every node at once, which a map of
    /// rounds left would hold at about 28.
    buckets: VecDeque<Bucket>,
    /// As peers named them, duplicates included (a newcomer's first
    /// `SynAck`s name hundreds of nodes, each several times): sorted and
    /// deduplicated when full and when taken, which costs less than a set
    /// that would grow from empty every round.
    asks: Vec<Fingerprint>,
    /// This node's own (heartbeat, max version, last GC version) as the last
    /// round saw it (`None` before the first round).
    own_seen: Option<(u64, u64, u64)>,
    /// Rounds left during which this node's own change is news.
    own_rounds_left: u32,
    /// The rumors to name, as [`Rumors::current`] last chose them (at most
    /// [`MAX_NAMED`]), and whether the buckets changed since: choosing
    /// looks at every rumor (a cold start's are the whole cluster), and
    /// every `Syn` sent or answered names them.
    named: Vec<Fingerprint>,
    named_stale: bool,
}

/// The rumors with the same rounds left, in the order noted, duplicates
/// included until the bucket doubles since it was last deduplicated.
#[derive(Debug, Default)]
struct Bucket {
    rumors: Vec<Fingerprint>,
    /// Its length when last deduplicated.
    distinct: usize,
}

impl Bucket {
    fn push(&mut self, fingerprint: Fingerprint) {
        if self.rumors.last() == Some(&fingerprint) {
            return;
        }
        if self.rumors.len() >= 2 * self.distinct + 64 {
            self.dedup();
        }
        self.rumors.push(fingerprint);
    }

    /// Sorted by fingerprint, each once.
    fn dedup(&mut self) {
        self.rumors.sort_unstable();
        self.rumors.dedup();
        self.distinct = self.rumors.len();
    }
}

impl Rumors {
    /// `fingerprint` has news: name it for `rounds` more rounds.
    pub(crate) fn note(&mut self, fingerprint: Fingerprint, rounds: u32) {
        let Some(index) = (rounds as usize).checked_sub(1) else { return };
        if self.buckets.len() <= index {
            self.buckets.resize_with(index + 1, Bucket::default);
        }
        self.buckets[index].push(fingerprint);
        self.named_stale = true;
    }

    /// A peer named `fingerprint`, which this node does not know.
    pub(crate) fn ask(&mut self, fingerprint: Fingerprint) {
        if self.asks.len() == 2 * MAX_ASKS {
            self.compact_asks();
        }
        self.asks.push(fingerprint);
    }

    /// The rumors to name now, freshest first (most rounds left, then by
    /// fingerprint): at most [`MAX_NAMED`] of them. Chosen again only when
    /// rumors changed.
    pub(crate) fn current(&mut self) -> &[Fingerprint] {
        if self.named_stale {
            self.named_stale = false;
            self.named.clear();
            for bucket in self.buckets.iter_mut().rev() {
                if self.named.len() == MAX_NAMED {
                    break;
                }
                bucket.dedup();
                for fingerprint in &bucket.rumors {
                    if self.named.len() == MAX_NAMED {
                        break;
                    }
                    // A node in a fresher bucket is named there.
                    if !self.named.contains(fingerprint) {
                        self.named.push(*fingerprint);
                    }
                }
            }
            if self.named.is_empty() {
                self.named.shrink_to_fit();
            }
        }
        &self.named
    }

    /// The nodes to ask for (they are asked once: a peer that knows them
    /// introduces them, and a node still unknown is named again by others).
    pub(crate) fn take_asks(&mut self) -> Vec<Fingerprint> {
        self.compact_asks();
        std::mem::take(&mut self.asks)
    }

    /// Each ask once, at most [`MAX_ASKS`] of them (in fingerprint order).
    fn compact_asks(&mut self) {
        self.asks.sort_unstable();
        self.asks.dedup();
        self.asks.truncate(MAX_ASKS);
    }

    /// This node's own state is `own` (heartbeat, max version, last GC
    /// version) this round: if it changed since the last round, it is news for
    /// `rounds` rounds.
    pub(crate) fn note_own(&mut self, own: (u64, u64, u64), rounds: u32) {
        if self.own_seen != Some(own) {
            self.own_seen = Some(own);
            self.own_rounds_left = rounds;
        }
    }

    /// Whether there is anything to spread or to ask for: rumors, asks, or a
    /// recent change of this node's own state.
    pub(crate) fn has_news(&self) -> bool {
        self.buckets.iter().any(|bucket| !bucket.rumors.is_empty())
            || !self.asks.is_empty()
            || self.own_rounds_left > 0
    }

    /// A round named the current rumors once more: those of the first
    /// bucket are named no more (their memory goes back at once).
    pub(crate) fn end_round(&mut self) {
        self.own_rounds_left = self.own_rounds_left.saturating_sub(1);
        if let Some(spent) = self.buckets.pop_front() {
            self.named_stale |= !spent.rumors.is_empty();
        }
    }

    /// `fingerprint` is no longer tracked.
    pub(crate) fn forget(&mut self, fingerprint: Fingerprint) {
        for bucket in &mut self.buckets {
            let before = bucket.rumors.len();
            bucket.rumors.retain(|rumor| *rumor != fingerprint);
            bucket.distinct = bucket.distinct.min(bucket.rumors.len());
            self.named_stale |= bucket.rumors.len() < before;
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn rumors_last_their_rounds_freshest_first() {
        let mut rumors = Rumors::default();
        rumors.note(Fingerprint(1), 2);
        rumors.note(Fingerprint(2), 3);
        rumors.note(Fingerprint(1), 1);
        assert_eq!(rumors.current(), vec![Fingerprint(2), Fingerprint(1)]);
        rumors.end_round();
        rumors.end_round();
        assert_eq!(rumors.current(), vec![Fingerprint(2)]);
        rumors.end_round();
        assert!(rumors.current().is_empty());
        rumors.note(Fingerprint(4), 2);
        rumors.note(Fingerprint(5), 2);
        assert_eq!(rumors.current(), vec![Fingerprint(4), Fingerprint(5)]);
        rumors.forget(Fingerprint(4));
        assert_eq!(rumors.current(), vec![Fingerprint(5)], "a forgotten node is named no more");
        rumors.note(Fingerprint(6), 3);
        assert_eq!(rumors.current(), vec![Fingerprint(6), Fingerprint(5)], "a fresher rumor comes first");
    }

    #[test]
    fn news_is_rumors_asks_or_an_own_change_for_its_rounds() {
        let mut rumors = Rumors::default();
        assert!(!rumors.has_news());
        rumors.note_own((0, 0, 0), 2);
        assert!(rumors.has_news(), "the first round sees this node's state as new");
        rumors.end_round();
        rumors.note_own((0, 0, 0), 2);
        assert!(rumors.has_news());
        rumors.end_round();
        rumors.note_own((0, 0, 0), 2);
        assert!(!rumors.has_news(), "an unchanged state is news for its rounds only");
        rumors.note_own((0, 1, 0), 2);
        assert!(rumors.has_news(), "a new version is news");
        rumors.end_round();
        rumors.end_round();
        assert!(!rumors.has_news());
        rumors.ask(Fingerprint(9));
        assert!(rumors.has_news(), "a node to ask for is news");
        rumors.take_asks();
        assert!(!rumors.has_news());
        rumors.note(Fingerprint(3), 1);
        assert!(rumors.has_news(), "a rumor is news");
        rumors.end_round();
        assert!(!rumors.has_news());
    }

    /// What the buckets replaced: a map of rounds left, kept as the
    /// reference.
    #[derive(Default)]
    struct Model(std::collections::HashMap<Fingerprint, u32>);

    impl Model {
        fn note(&mut self, fingerprint: Fingerprint, rounds: u32) {
            let left = self.0.entry(fingerprint).or_default();
            *left = (*left).max(rounds);
            self.0.retain(|_, left| *left > 0);
        }

        fn end_round(&mut self) {
            self.0.retain(|_, left| {
                *left -= 1;
                *left > 0
            });
        }

        /// Most rounds left first, then by fingerprint, at most `MAX_NAMED`.
        fn current(&self) -> Vec<Fingerprint> {
            let mut rumors: Vec<(Fingerprint, u32)> = self.0.iter().map(|(f, left)| (*f, *left)).collect();
            rumors.sort_by(|a, b| b.1.cmp(&a.1).then(a.0.cmp(&b.0)));
            rumors.into_iter().take(MAX_NAMED).map(|(fingerprint, _)| fingerprint).collect()
        }
    }

    #[derive(Clone, Debug)]
    enum Op {
        Note(u64, u32),
        EndRound,
        Forget(u64),
        Current,
    }

    fn op() -> impl proptest::strategy::Strategy<Value = Op> {
        use proptest::prelude::*;
        // Few fingerprints, so that nodes are noted again and forgotten;
        // up to 8 rounds, as a cluster of 10^6 nodes names a rumor.
        prop_oneof![
            4 => (0..200u64, 0..9u32).prop_map(|(f, rounds)| Op::Note(f, rounds)),
            2 => Just(Op::EndRound),
            1 => (0..200u64).prop_map(Op::Forget),
            2 => Just(Op::Current),
        ]
    }

    proptest::proptest! {
        /// The buckets name the rumors a map of rounds left names, in the
        /// same order, and have news exactly when it does.
        #[test]
        fn buckets_name_what_a_map_of_rounds_left_names(ops in proptest::collection::vec(op(), 0..400)) {
            let (mut rumors, mut model) = (Rumors::default(), Model::default());
            for op in ops {
                match op {
                    Op::Note(f, rounds) => {
                        rumors.note(Fingerprint(f), rounds);
                        model.note(Fingerprint(f), rounds);
                    }
                    Op::EndRound => {
                        rumors.end_round();
                        model.end_round();
                    }
                    Op::Forget(f) => {
                        rumors.forget(Fingerprint(f));
                        model.0.remove(&Fingerprint(f));
                    }
                    Op::Current => proptest::prop_assert_eq!(rumors.current().to_vec(), model.current()),
                }
                proptest::prop_assert_eq!(rumors.has_news(), !model.0.is_empty());
            }
            proptest::prop_assert_eq!(rumors.current().to_vec(), model.current());
        }
    }

    #[test]
    fn asks_are_bounded_and_taken_once() {
        let mut rumors = Rumors::default();
        for i in 0..10_000 {
            rumors.ask(Fingerprint(i % 3_000));
        }
        let asks = rumors.take_asks();
        assert_eq!(asks.len(), MAX_ASKS);
        assert!(asks.windows(2).all(|pair| pair[0] < pair[1]), "each asked once");
        assert!(rumors.take_asks().is_empty());
        rumors.ask(Fingerprint(1));
        assert_eq!(rumors.take_asks(), vec![Fingerprint(1)], "asked again once taken");
    }
}
