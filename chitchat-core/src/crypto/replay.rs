//! The replay filter: per sender, which recent nonce counters were accepted.

use std::collections::HashMap;

use crate::wire::{NONCE_PREFIX_LEN, SealedParts};

/// Counters the replay filter remembers per sender.
const REPLAY_WINDOW: u64 = 128;

/// A sealed datagram that was opened, to be noted by the replay filter once the
/// core accepts it.
#[derive(Clone, Copy, Debug)]
pub(crate) struct Accepted {
    prefix: [u8; NONCE_PREFIX_LEN],
    counter: u64,
}

impl Accepted {
    /// The sender and counter of an opened datagram.
    pub(super) fn of(sealed: &SealedParts<'_>) -> Self {
        Accepted { prefix: sealed.nonce_prefix(), counter: sealed.nonce_counter() }
    }
}

/// Per sender prefix, the highest counter accepted and which of the
/// [`REPLAY_WINDOW`] counters below it were. Tracks at most `capacity` senders:
/// the least recently heard is forgotten first.
#[derive(Debug, Default)]
pub(super) struct ReplayFilter {
    senders: HashMap<[u8; NONCE_PREFIX_LEN], ReplayWindow>,
    capacity: usize,
    /// Ticks on every note, to forget the least recently heard sender first.
    clock: u64,
}

#[derive(Clone, Copy, Debug)]
struct ReplayWindow {
    highest: u64,
    /// Bit `i`: counter `highest - i` was accepted.
    seen: u128,
    last_heard: u64,
}

impl ReplayFilter {
    /// How many senders are tracked.
    #[cfg(test)]
    pub(super) fn len(&self) -> usize {
        self.senders.len()
    }

    pub(super) fn set_capacity(&mut self, capacity: usize) {
        self.capacity = capacity;
    }

    pub(super) fn is_replay(&self, opened: &Accepted) -> bool {
        let Some(window) = self.senders.get(&opened.prefix) else { return false };
        if opened.counter > window.highest {
            return false;
        }
        let age = window.highest - opened.counter;
        age >= REPLAY_WINDOW || window.seen >> age & 1 == 1
    }

    pub(super) fn note(&mut self, opened: &Accepted) {
        self.clock += 1;
        if !self.senders.contains_key(&opened.prefix) && self.senders.len() >= self.capacity.max(1) {
            let oldest =
                self.senders.iter().min_by_key(|(_, window)| window.last_heard).map(|(prefix, _)| *prefix);
            if let Some(oldest) = oldest {
                self.senders.remove(&oldest);
            }
        }
        let window = self.senders.entry(opened.prefix).or_insert(ReplayWindow {
            highest: opened.counter,
            seen: 0,
            last_heard: 0,
        });
        window.last_heard = self.clock;
        if opened.counter > window.highest {
            let shift = opened.counter - window.highest;
            window.seen = if shift >= REPLAY_WINDOW { 0 } else { window.seen << shift };
            window.highest = opened.counter;
        }
        let age = window.highest - opened.counter;
        if age < REPLAY_WINDOW {
            window.seen |= 1 << age;
        }
    }
}
