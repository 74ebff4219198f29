//! Searching and growing the membership's sorted vectors: the table's rows
//! (by fingerprint) and the indexes' slots (by the hash of a name or an
//! address). Both are ordered by 64-bit hashes, spread evenly over their
//! range.

/// The fewest elements a sorted vector grows by when full.
const MIN_GROWTH: usize = 16;

/// The position of the first of `len` ascending keys (`key_at(i)`) that is
/// not below `key`: where `key` is, or would go.
///
/// The keys are hashes, spread evenly, so `key` sits close to `key / 2^64`
/// of the way through: the search starts there and gallops outwards until
/// it brackets the position, then bisects the bracket. A few probes, in
/// neighbouring elements (one or two cache lines), where a bisection of the
/// whole vector costs `log2(len)` probes far apart; and never more than
/// twice a bisection, however the keys bunch (an attacker can grind
/// identities into one corner of the ring).
pub(super) fn lower_bound(len: usize, key: u64, key_at: impl Fn(usize) -> u64) -> usize {
    // Every key before `low` is below `key`; every key from `high` on is not.
    let (mut low, mut high) = (0, len);
    if len >= 16 {
        let guess = ((u128::from(key) * len as u128) >> 64) as usize;
        let mut step = 1;
        if key_at(guess) < key {
            low = guess + 1;
            while let Some(probe) = guess.checked_add(step).filter(|probe| *probe < len) {
                if key_at(probe) >= key {
                    high = probe;
                    break;
                }
                low = probe + 1;
                step *= 2;
            }
        } else {
            high = guess;
            while let Some(probe) = guess.checked_sub(step) {
                if key_at(probe) < key {
                    low = probe + 1;
                    break;
                }
                high = probe;
                step *= 2;
            }
        }
    }
    while low < high {
        let middle = low + (high - low) / 2;
        if key_at(middle) < key {
            low = middle + 1;
        } else {
            high = middle;
        }
    }
    low
}

/// Inserts `element` at `index`, growing a full vector by an eighth rather
/// than doubling it: a vector of 10,000 in room for 16,384 would waste most
/// of what a tracked node costs. An insertion shifts the elements after it
/// anyway, so a copy of them all every eighth of growth costs little.
pub(super) fn insert_at<T>(vector: &mut Vec<T>, index: usize, element: T) {
    if vector.len() == vector.capacity() {
        vector.reserve_exact((vector.len() / 8).max(MIN_GROWTH));
    }
    vector.insert(index, element);
}

#[cfg(test)]
mod tests {
    use super::*;

    /// The search finds what a bisection finds, in vectors of every size,
    /// spread or bunched into a corner, for keys held, missing, repeated and
    /// at the ends of the range.
    #[test]
    fn the_search_agrees_with_a_bisection() {
        let mut state = 0x9e37_79b9_7f4a_7c15_u64;
        let mut next = || {
            state ^= state << 13;
            state ^= state >> 7;
            state ^= state << 17;
            state
        };
        for (len, bunched, repeats) in [
            (0, false, false),
            (5, false, false),
            (16, false, true),
            (300, false, false),
            (300, true, true),
            (2_000, false, true),
        ] {
            let mut keys: Vec<u64> = (0..len)
                .map(|_| next())
                .map(|raw| if bunched { u64::MAX - (raw >> 40) } else { raw })
                .collect();
            if repeats {
                let copies: Vec<u64> = keys.iter().step_by(7).copied().collect();
                keys.extend(copies);
            }
            keys.sort_unstable();
            let mut probes: Vec<u64> = keys.clone();
            probes.extend((0..500).map(|_| next()));
            probes.extend([0, 1, u64::MAX, u64::MAX - 1]);
            probes.extend(keys.iter().map(|key| key.wrapping_add(1)));
            for probe in probes {
                let expected = keys.partition_point(|key| *key < probe);
                assert_eq!(
                    lower_bound(keys.len(), probe, |i| keys[i]),
                    expected,
                    "{len} keys, probe {probe}"
                );
            }
        }
    }

    /// A full vector grows by an eighth of its length, by 16 at least.
    #[test]
    fn a_full_vector_grows_by_an_eighth() {
        let mut vector: Vec<u32> = Vec::new();
        for i in 0..1_000 {
            insert_at(&mut vector, 0, i);
            assert!(vector.capacity() <= vector.len() + (vector.len() / 8).max(16), "{}", vector.capacity());
        }
        assert!(vector.iter().rev().copied().eq(0..1_000));
    }
}
