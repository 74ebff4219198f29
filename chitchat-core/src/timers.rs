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

    /// Unsets and returns the timer due at `now` with the earliest deadline.
    pub(crate) fn pop_expired(&mut self, now: Timestamp) -> Option<Timer> {
        let (index, _) = self
            .deadlines
            .iter()
            .enumerate()
            .filter_map(|(index, deadline)| deadline.filter(|deadline| *deadline <= now).map(|d| (index, d)))
            .min_by_key(|(_, deadline)| *deadline)?;
        self.deadlines[index] = None;
        debug_assert_eq!(index, Timer::Gossip as usize);
        Some(Timer::Gossip)
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
        assert_eq!(timers.pop_expired(Timestamp::from_millis(4)), None);
        assert_eq!(timers.pop_expired(Timestamp::from_millis(20)), Some(Timer::Gossip));
        assert_eq!(timers.pop_expired(Timestamp::from_millis(20)), None);
        assert_eq!(timers.next_deadline(), None);
        timers.set(Timer::Gossip, Timestamp::from_millis(30));
        timers.stop_all();
        assert_eq!(timers.next_deadline(), None);
    }
}
