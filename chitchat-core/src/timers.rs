//! The core's timers: one fixed table, of which only the earliest deadline
//! leaves the core (through [`crate::Chitchat::poll_timeout`]).

use crate::time::Timestamp;

/// What a timer is for. (Liveness, removals and garbage collection run at the
/// start of each gossip round, so one timer does today; the table is the place
/// for any other.)
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) enum Timer {
    /// Start the next gossip round.
    Gossip = 0,
}

const TIMER_COUNT: usize = 1;

impl Timer {
    /// Every timer, by its index in the table.
    const ALL: [Timer; TIMER_COUNT] = [Timer::Gossip];
}

/// One deadline per [`Timer`], unset or set.
#[derive(Clone, Debug, Default)]
pub(crate) struct TimerTable {
    deadlines: [Option<Timestamp>; TIMER_COUNT],
}

impl TimerTable {
    pub(crate) fn set(&mut self, timer: Timer, deadline: Timestamp) {
        self.deadlines[timer as usize] = Some(deadline);
    }

    pub(crate) fn stop_all(&mut self) {
        self.deadlines = [None; TIMER_COUNT];
    }

    /// The earliest deadline.
    pub(crate) fn next_deadline(&self) -> Option<Timestamp> {
        self.deadlines.iter().flatten().min().copied()
    }

    /// Unsets and returns the timers due at `now`, earliest deadline first.
    /// Each fires once per call: one re-armed while they are handled waits for
    /// the next call, even at a deadline already past (the clock at
    /// [`Timestamp::MAX`] saturates every deadline to it), so a call always
    /// returns.
    pub(crate) fn take_expired(&mut self, now: Timestamp) -> impl Iterator<Item = Timer> + use<> {
        let mut expired: [Option<(Timestamp, Timer)>; TIMER_COUNT] = [None; TIMER_COUNT];
        for (index, deadline) in self.deadlines.iter_mut().enumerate() {
            if let Some(due) = deadline.filter(|due| *due <= now) {
                *deadline = None;
                expired[index] = Some((due, Timer::ALL[index]));
            }
        }
        expired.sort_unstable_by_key(|entry| entry.map(|(due, _)| due));
        expired.into_iter().flatten().map(|(_, timer)| timer)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn only_due_timers_fire() {
        let mut timers = TimerTable::default();
        timers.set(Timer::Gossip, Timestamp::from_millis(10));
        assert_eq!(timers.next_deadline(), Some(Timestamp::from_millis(10)));
        assert_eq!(timers.take_expired(Timestamp::from_millis(4)).count(), 0);
        assert_eq!(timers.take_expired(Timestamp::from_millis(20)).collect::<Vec<_>>(), [Timer::Gossip]);
        assert_eq!(timers.take_expired(Timestamp::from_millis(20)).count(), 0);
        assert_eq!(timers.next_deadline(), None);
        // Re-armed at a deadline already past while being handled: fires on
        // the next call, not in a loop within this one.
        for timer in timers.take_expired(Timestamp::MAX) {
            timers.set(timer, Timestamp::MAX);
        }
        timers.set(Timer::Gossip, Timestamp::MAX);
        assert_eq!(timers.take_expired(Timestamp::MAX).count(), 1);
        timers.set(Timer::Gossip, Timestamp::from_millis(30));
        timers.stop_all();
        assert_eq!(timers.next_deadline(), None);
    }
}
