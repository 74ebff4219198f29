//! Phi-accrual failure detection over heartbeat arrival times.
//!
//! For each remote node the detector remembers when its heartbeat last grew and
//! the recent times between such arrivals. Under an exponential model of
//! arrivals with that mean, the probability that the next one is later than
//! `t` after the last is `exp(-t / mean)`, and
//! `phi = -log10(exp(-t / mean)) = t / (mean * ln 10)`. A node whose phi exceeds
//! [`crate::Config::phi_threshold`] is considered dead.

use std::collections::VecDeque;
use std::time::Duration;

use crate::time::Timestamp;

/// Arrival history of one node's heartbeat. Memory: at most
/// `phi_sampling_window` intervals of 4 bytes (microseconds; an interval is
/// capped at `phi_max_interval` anyway).
#[derive(Clone, Debug)]
pub(crate) struct ArrivalWindow {
    last_arrival: Timestamp,
    intervals: VecDeque<u32>,
    sum_micros: u64,
}

/// The detector's settings, copied from [`crate::Config`].
#[derive(Clone, Copy, Debug)]
pub(crate) struct DetectorSettings {
    pub window: usize,
    pub initial_interval: Duration,
    pub max_interval: Duration,
    /// The mean is never taken below this: a heartbeat grows once a gossip
    /// round, so news of it arriving faster (from several relays in a burst)
    /// says nothing about how soon the next growth is due.
    pub min_mean: Duration,
}

impl ArrivalWindow {
    /// A node first heard of at `now` counts as a heartbeat arrival then.
    pub(crate) fn new(now: Timestamp) -> Self {
        ArrivalWindow { last_arrival: now, intervals: VecDeque::new(), sum_micros: 0 }
    }

    /// The node's heartbeat grew at `now`.
    pub(crate) fn report_heartbeat(&mut self, now: Timestamp, settings: &DetectorSettings) {
        let interval = now.saturating_duration_since(self.last_arrival).min(settings.max_interval);
        self.last_arrival = self.last_arrival.max(now);
        let micros = u32::try_from(interval.as_micros()).unwrap_or(u32::MAX);
        if micros == 0 {
            return;
        }
        if self.intervals.len() >= settings.window
            && let Some(oldest) = self.intervals.pop_front()
        {
            self.sum_micros -= u64::from(oldest);
        }
        self.intervals.push_back(micros);
        self.sum_micros += u64::from(micros);
    }

    /// Forgives `pause`, a stretch in which this node handled nothing: the
    /// silence it caused is not the node's, so its last arrival moves forward by
    /// as much (never past `now`).
    pub(crate) fn forgive(&mut self, pause: Duration, now: Timestamp) {
        self.last_arrival = (self.last_arrival + pause).min(now).max(self.last_arrival);
    }

    /// When the node's heartbeat last grew (or it was first heard of).
    pub(crate) fn last_arrival(&self) -> Timestamp {
        self.last_arrival
    }

    /// The mean interval: measured intervals plus the initial interval counted as
    /// one sample.
    pub(crate) fn mean(&self, settings: &DetectorSettings) -> Duration {
        let samples = self.intervals.len() as u64 + 1;
        let mean =
            Duration::from_micros((self.sum_micros + settings.initial_interval.as_micros() as u64) / samples);
        mean.max(settings.min_mean)
    }

    /// Phi at `now`.
    pub(crate) fn phi(&self, now: Timestamp, settings: &DetectorSettings) -> f64 {
        let elapsed = now.saturating_duration_since(self.last_arrival).as_secs_f64();
        let mean = self.mean(settings).as_secs_f64().max(1e-9);
        elapsed / (mean * std::f64::consts::LN_10)
    }

    /// How many intervals are remembered.
    #[cfg(test)]
    pub(crate) fn len(&self) -> usize {
        self.intervals.len()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const SETTINGS: DetectorSettings = DetectorSettings {
        window: 4,
        initial_interval: Duration::from_secs(1),
        max_interval: Duration::from_secs(10),
        min_mean: Duration::from_millis(500),
    };

    #[test]
    fn bursts_of_news_do_not_shrink_the_mean_below_the_floor() {
        let mut window = ArrivalWindow::new(Timestamp::ZERO);
        for tick in 1..=50 {
            window.report_heartbeat(Timestamp::from_millis(tick * 10), &SETTINGS);
        }
        assert_eq!(window.mean(&SETTINGS), Duration::from_millis(500));
    }

    #[test]
    fn a_forgiven_pause_does_not_count_as_silence() {
        let mut window = ArrivalWindow::new(Timestamp::ZERO);
        for second in 1..=10 {
            window.report_heartbeat(Timestamp::from_millis(second * 1_000), &SETTINGS);
        }
        let woke = Timestamp::from_millis(40_000);
        assert!(window.phi(woke, &SETTINGS) > 3.5);
        window.forgive(Duration::from_secs(29), woke);
        assert_eq!(window.last_arrival(), Timestamp::from_millis(39_000));
        assert!(window.phi(woke, &SETTINGS) < 1.0);
        // Never past now, never backwards.
        window.forgive(Duration::from_secs(3_600), woke);
        assert_eq!(window.last_arrival(), woke);
        window.forgive(Duration::ZERO, Timestamp::ZERO);
        assert_eq!(window.last_arrival(), woke);
    }

    #[test]
    fn phi_grows_with_silence_and_drops_on_arrival() {
        let mut window = ArrivalWindow::new(Timestamp::ZERO);
        for second in 1..=10 {
            window.report_heartbeat(Timestamp::from_millis(second * 1_000), &SETTINGS);
        }
        let at = |ms| window.phi(Timestamp::from_millis(ms), &SETTINGS);
        assert_eq!(at(10_000), 0.0);
        // One mean interval of silence: phi = 1 / ln 10.
        assert!((at(11_000) - 1.0 / std::f64::consts::LN_10).abs() < 1e-9);
        assert!(at(20_000) > 3.5, "ten silent intervals exceed the default threshold");
        assert!(at(17_000) < 3.5);
    }

    #[test]
    fn window_is_bounded_and_long_pauses_are_capped() {
        let mut window = ArrivalWindow::new(Timestamp::ZERO);
        window.report_heartbeat(Timestamp::from_millis(100_000), &SETTINGS);
        assert_eq!(window.mean(&SETTINGS), Duration::from_millis(5_500), "(10 s capped + 1 s prior) / 2");
        for second in 101..200 {
            window.report_heartbeat(Timestamp::from_millis(second * 1_000), &SETTINGS);
        }
        assert_eq!(window.len(), 4);
        assert_eq!(window.mean(&SETTINGS), Duration::from_secs(1));
    }

    #[test]
    fn time_going_backwards_is_harmless() {
        let mut window = ArrivalWindow::new(Timestamp::from_millis(5_000));
        window.report_heartbeat(Timestamp::from_millis(1_000), &SETTINGS);
        assert_eq!(window.len(), 0);
        assert_eq!(window.phi(Timestamp::from_millis(1_000), &SETTINGS), 0.0);
    }
}
