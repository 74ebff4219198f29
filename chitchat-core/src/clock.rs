//! The node's own clock: the caller's time made safe to run on, and the gaps
//! in which the node was not driven.
//!
//! Time comes in from the caller's monotonic clock with every input. If that
//! clock steps back, the node counts the step as no time and carries on at the
//! clock's pace from where it was (rather than waiting, frozen, until the clock
//! catches up): the total of the steps back is a skew added to every reading,
//! and deadlines handed out are converted back to the caller's clock.
//!
//! A node not driven (a timer fired, or a datagram accepted) for longer than
//! its pause threshold was paused: a stopped process, a long garbage
//! collection, a suspended machine, a clock jump. The threshold is a quarter
//! of the shorter grace period, and at least two gossip intervals: within it
//! the cluster cannot have stopped gossiping a node this one still holds, so
//! nothing that arrives is more than late. Short of that,
//! a gossip round that runs after it was due ran late (an overloaded process
//! whose rounds all run late is late, not paused). Either way its peers'
//! silence in that time is the node's own doing, which [`NodeClock::drive`]
//! reports as a [`Forgiveness`].

use std::time::Duration;

use crate::time::Timestamp;

/// Silence of this node's own making, to forgive its peers (see
/// [`NodeClock::drive`]).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) enum Forgiveness {
    /// The node was not driven for this long: a pause of its own.
    Pause(Duration),
    /// The node's gossip round ran this late.
    Lateness(Duration),
}

/// The node's time and the last time it was driven.
#[derive(Debug)]
pub(crate) struct NodeClock {
    /// The node's own time: the latest caller's time passed in, plus `skew`.
    now: Timestamp,
    /// How far the node's time is ahead of the caller's clock: the total of the
    /// caller's clock's steps back.
    skew: Duration,
    /// The last time this node was driven: a timer fired or a datagram was
    /// accepted.
    driven_at: Timestamp,
}

impl NodeClock {
    /// A clock that starts at the caller's `now`.
    pub(crate) fn new(now: Timestamp) -> Self {
        NodeClock { now, skew: Duration::ZERO, driven_at: now }
    }

    /// The node's time at the caller's `now`, without moving the clock (for an
    /// input that may yet be refused, and for views).
    pub(crate) fn read(&self, now: Timestamp) -> Reading {
        let own = now + self.skew;
        if own < self.now {
            Reading { now: self.now, skew: self.skew + self.now.saturating_duration_since(own) }
        } else {
            Reading { now: own, skew: self.skew }
        }
    }

    /// Moves the clock to a reading taken with [`NodeClock::read`], once its
    /// input is accepted.
    pub(crate) fn commit(&mut self, reading: Reading) {
        (self.now, self.skew) = (reading.now, reading.skew);
    }

    /// Moves the clock to the caller's `now`; returns the node's time.
    pub(crate) fn advance(&mut self, now: Timestamp) -> Timestamp {
        let reading = self.read(now);
        self.commit(reading);
        reading.now
    }

    /// The node is driven at its time `now`, by its gossip round due at
    /// `round_due` or by a datagram (`None`). Returns the silence to forgive:
    /// the gap since it was last driven beyond one gossip interval, if the gap
    /// exceeds `pause_threshold` (a pause); otherwise the round's lateness, if
    /// it ran late.
    pub(crate) fn drive(
        &mut self,
        now: Timestamp,
        round_due: Option<Timestamp>,
        gossip_interval: Duration,
        pause_threshold: Duration,
    ) -> Option<Forgiveness> {
        let gap = now.saturating_duration_since(self.driven_at);
        self.driven_at = self.driven_at.max(now);
        if gap > pause_threshold {
            Some(Forgiveness::Pause(gap - gossip_interval))
        } else {
            let due = round_due?;
            (now > due).then(|| Forgiveness::Lateness(now.saturating_duration_since(due)))
        }
    }

    /// A deadline on the node's clock, on the caller's clock.
    pub(crate) fn to_caller(&self, deadline: Timestamp) -> Timestamp {
        let skew = u64::try_from(self.skew.as_nanos()).unwrap_or(u64::MAX);
        Timestamp::from_nanos(deadline.as_nanos().saturating_sub(skew))
    }
}

/// The node's time at one of the caller's readings.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) struct Reading {
    /// The node's time.
    pub now: Timestamp,
    skew: Duration,
}

#[cfg(test)]
mod tests {
    use super::*;

    const INTERVAL: Duration = Duration::from_secs(1);

    #[test]
    fn a_step_back_counts_as_no_time_and_deadlines_follow_the_callers_clock() {
        let mut clock = NodeClock::new(Timestamp::from_millis(10_000));
        assert_eq!(clock.advance(Timestamp::from_millis(4_000)), Timestamp::from_millis(10_000));
        assert_eq!(clock.advance(Timestamp::from_millis(5_000)), Timestamp::from_millis(11_000));
        assert_eq!(clock.to_caller(Timestamp::from_millis(12_000)), Timestamp::from_millis(6_000));
    }

    #[test]
    fn a_reading_moves_nothing_until_committed() {
        let mut clock = NodeClock::new(Timestamp::from_millis(10_000));
        let reading = clock.read(Timestamp::from_millis(1_000));
        assert_eq!(reading.now, Timestamp::from_millis(10_000));
        assert_eq!(clock.read(Timestamp::from_millis(11_000)).now, Timestamp::from_millis(11_000));
        clock.commit(reading);
        assert_eq!(clock.read(Timestamp::from_millis(11_000)).now, Timestamp::from_millis(20_000));
    }

    #[test]
    fn long_gaps_are_pauses_and_late_rounds_are_lateness() {
        let mut clock = NodeClock::new(Timestamp::ZERO);
        let at = Timestamp::from_millis;
        let threshold = INTERVAL * 3;
        assert_eq!(clock.drive(at(1_000), Some(at(1_000)), INTERVAL, threshold), None);
        assert_eq!(
            clock.drive(at(2_300), Some(at(2_000)), INTERVAL, threshold),
            Some(Forgiveness::Lateness(Duration::from_millis(300)))
        );
        assert_eq!(clock.drive(at(2_400), None, INTERVAL, threshold), None);
        // A gap of 2.5 intervals is within the threshold: the round was late.
        assert_eq!(
            clock.drive(at(4_900), Some(at(3_400)), INTERVAL, threshold),
            Some(Forgiveness::Lateness(Duration::from_millis(1_500)))
        );
        assert_eq!(
            clock.drive(at(9_900), Some(at(5_900)), INTERVAL, threshold),
            Some(Forgiveness::Pause(Duration::from_secs(4)))
        );
    }
}
