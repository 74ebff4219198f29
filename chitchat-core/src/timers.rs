//! The core's timers: one fixed table, of which only the earliest deadline
//! leaves the core (through [`crate::Chitchat::poll_timeout`]).

use crate::time::Timestamp;

/// What a timer is for.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) enum Timer {
    /// Start the next gossip round.
    Gossip = 0,
    /// Judge liveness and collect garbage.
    Maintenance = 1,
}

const TIMER_COUNT: usize = 2;

/// One deadline per [`Timer`], unset or set.
#[derive(Clone, Debug, Default)]
pub(crate) struct TimerTable {
    deadlines: [Option<Timestamp>; TIMER_COUNT],
}

impl TimerTable {
    pub fn set(&mut self, timer: Timer, deadline: Timestamp) {
        self.deadlines[timer as usize] = Some(deadline);
    }

    pub fn stop_all(&mut self) {
        self.deadlines = [None; TIMER_COUNT];
    }

    /// The earliest deadline.
    pub fn next_deadline(&self) -> Option<Timestamp> {
        self.deadlines.iter().flatten().min().copied()
    }

    /// Unsets and returns the timer due at `now` with the earliest deadline.
    pub fn pop_expired(&mut self, now: Timestamp) -> Option<Timer> {
        let (index, _) = self
            .deadlines
            .iter()
            .enumerate()
            .filter_map(|(index, deadline)| deadline.filter(|deadline| *deadline <= now).map(|d| (index, d)))
            .min_by_key(|(_, deadline)| *deadline)?;
        self.deadlines[index] = None;
        Some(if index == Timer::Gossip as usize { Timer::Gossip } else { Timer::Maintenance })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn only_due_timers_fire_earliest_first() {
        let mut timers = TimerTable::default();
        timers.set(Timer::Maintenance, Timestamp::from_millis(5));
        timers.set(Timer::Gossip, Timestamp::from_millis(10));
        assert_eq!(timers.next_deadline(), Some(Timestamp::from_millis(5)));
        assert_eq!(timers.pop_expired(Timestamp::from_millis(4)), None);
        assert_eq!(timers.pop_expired(Timestamp::from_millis(20)), Some(Timer::Maintenance));
        assert_eq!(timers.pop_expired(Timestamp::from_millis(20)), Some(Timer::Gossip));
        assert_eq!(timers.pop_expired(Timestamp::from_millis(20)), None);
        assert_eq!(timers.next_deadline(), None);
    }
}
