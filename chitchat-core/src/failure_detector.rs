//! Phi-accrual failure detection over first-hand probes.
//!
//! A node watches a few other nodes, its *subjects* (see
//! [`crate::cluster`]): once a gossip round it sends each a `Ping` that
//! carries an unguessable token, and the subject answers with a `Pong` that
//! echoes it. The detector of one subject remembers when it last answered and
//! which of its recent probes went unanswered. An answer counts even if it
//! comes after later probes left (up to [`LATE_PROBES`] of them): a round
//! trip longer than the gossip interval (a distant peer, a busy host) is
//! slowness, not loss. Under a model where each probe
//! is lost independently with the probability `p` measured over the window,
//! the probability that an alive subject stays silent for `k` probe intervals
//! is `p^k`, and
//!
//! `phi = -log10(p^k) = k * -log10(p)`,
//!
//! with `k` the silence since the last answer in gossip intervals, less the
//! one interval an answer normally takes. `p` is taken at least
//! [`MIN_LOSS`] (a window with no loss says little about the next minutes)
//! and at most [`MAX_LOSS`] (phi must keep growing on a subject that never
//! answers), and is measured over the probes before the current silence, so
//! that a dead subject's own silence does not excuse it. A subject whose phi
//! exceeds [`crate::Config::phi_threshold`] is accused (see
//! [`crate::cluster`]); with the default threshold of 8 that is nine silent
//! rounds when at most one probe in ten is lost.

use std::time::Duration;

use crate::time::Timestamp;
use crate::wire::Token;

/// The lowest probability of losing a probe the detector assumes.
pub(crate) const MIN_LOSS: f64 = 0.1;

/// The highest probability of losing a probe the detector assumes.
pub(crate) const MAX_LOSS: f64 = 0.5;

/// The largest [`crate::Config::phi_sampling_window`]: outcomes are bits of a
/// `u64`.
pub(crate) const MAX_WINDOW: usize = 64;

/// An answer counts if its probe is one of the last this many: a round trip
/// of up to this many gossip intervals is slowness, not loss.
pub(crate) const LATE_PROBES: usize = 8;

/// The probes of one subject. Memory: 112 bytes, whatever the window.
#[derive(Clone, Debug)]
pub(crate) struct ProbeWindow {
    /// When the subject last answered (or became a subject).
    last_answer: Timestamp,
    /// The tokens of the last [`LATE_PROBES`] probes still unanswered, the
    /// newest first (the `i`-th left `i` probes ago).
    tokens: [Option<Token>; LATE_PROBES],
    /// The outcomes of the last `probes` probes, newest in bit 0: 1 for
    /// answered, 0 for unanswered so far.
    outcomes: u64,
    probes: u32,
    /// When this node accused the subject, if it stands.
    pub(crate) accused_at: Option<Timestamp>,
}

impl ProbeWindow {
    /// A subject first watched at `now`: its silence counts from then.
    pub(crate) fn new(now: Timestamp) -> Self {
        ProbeWindow {
            last_answer: now,
            tokens: [None; LATE_PROBES],
            outcomes: 0,
            probes: 0,
            accused_at: None,
        }
    }

    /// A probe carrying `token` leaves now: unanswered until its `Pong`
    /// comes (the window holds the last `window` probes).
    pub(crate) fn probe(&mut self, token: Token, window: usize) {
        self.tokens.rotate_right(1);
        self.tokens[0] = Some(token);
        self.outcomes <<= 1;
        self.probes = (self.probes + 1).min(window.min(MAX_WINDOW) as u32);
    }

    /// A `Pong` echoing `echo` arrived at `now`. Returns whether it answers
    /// one of the last [`LATE_PROBES`] probes, not answered before (an
    /// older, repeated or forged echo changes nothing).
    pub(crate) fn answer(&mut self, echo: Token, now: Timestamp) -> bool {
        let Some(age) = self.tokens.iter().position(|token| *token == Some(echo)) else {
            return false;
        };
        self.tokens[age] = None;
        self.outcomes |= 1 << age;
        self.last_answer = self.last_answer.max(now);
        true
    }

    /// Forgives `pause`, a stretch in which this node handled nothing: the
    /// silence it caused is not the subject's, so its last answer moves
    /// forward by as much (never past `now`).
    pub(crate) fn forgive(&mut self, pause: Duration, now: Timestamp) {
        self.last_answer = (self.last_answer + pause).min(now).max(self.last_answer);
    }

    /// When the subject last answered (or became a subject).
    pub(crate) fn last_answer(&self) -> Timestamp {
        self.last_answer
    }

    /// The probability of losing a probe, measured over the probes before the
    /// current silence, within [`MIN_LOSS`, `MAX_LOSS`].
    pub(crate) fn loss(&self) -> f64 {
        let mask = if self.probes >= 64 { u64::MAX } else { (1u64 << self.probes) - 1 };
        let outcomes = self.outcomes & mask;
        // The current silence: the unanswered probes since the last answer.
        let silent = outcomes.trailing_zeros().min(self.probes);
        let before = self.probes - silent;
        if before == 0 {
            return MIN_LOSS;
        }
        let answered = outcomes.count_ones();
        let lost = before - answered;
        (f64::from(lost) / f64::from(before)).clamp(MIN_LOSS, MAX_LOSS)
    }

    /// Phi at `now`, for probes every `interval`.
    pub(crate) fn phi(&self, now: Timestamp, interval: Duration) -> f64 {
        let silence = now.saturating_duration_since(self.last_answer).as_secs_f64();
        let intervals = (silence / interval.as_secs_f64().max(1e-9) - 1.0).max(0.0);
        intervals * -self.loss().log10()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const SECOND: Duration = Duration::from_secs(1);
    const WINDOW: usize = 32;

    fn at(seconds: u64) -> Timestamp {
        Timestamp::from_millis(seconds * 1_000)
    }

    /// A subject probed once a second from 0 to `until`, answering those for
    /// which `answers` holds.
    fn probed(until: u64, answers: impl Fn(u64) -> bool) -> ProbeWindow {
        let mut window = ProbeWindow::new(at(0));
        for second in 0..until {
            let token = Token(second.to_le_bytes());
            window.probe(token, WINDOW);
            if answers(second) {
                assert!(window.answer(token, at(second)));
            }
        }
        window
    }

    #[test]
    fn phi_grows_by_one_a_silent_round_without_loss() {
        let window = probed(10, |_| true);
        assert_eq!(window.loss(), MIN_LOSS);
        assert_eq!(window.phi(at(9), SECOND), 0.0);
        assert_eq!(window.phi(at(10), SECOND), 0.0, "one interval is an answer's normal delay");
        assert!((window.phi(at(14), SECOND) - 4.0).abs() < 1e-9);
        assert!(window.phi(at(18), SECOND) <= 8.0 && window.phi(at(19), SECOND) > 8.0);
    }

    #[test]
    fn loss_slows_phi_down() {
        // Every third probe is lost: a third of the window.
        let window = probed(30, |second| second % 3 != 2);
        let loss = window.loss();
        assert!((loss - 1.0 / 3.0).abs() < 0.05, "{loss}");
        let slow = window.phi(at(19), SECOND);
        assert!(slow < 5.0, "{slow}");
    }

    #[test]
    fn a_subject_that_never_answers_still_grows_phi() {
        let window = probed(40, |_| false);
        assert_eq!(window.loss(), MIN_LOSS, "its own silence does not excuse it");
        assert!(window.phi(at(40), SECOND) > 8.0);
        let lossy = probed(40, |second| second < 20 && second % 3 == 0);
        assert_eq!(lossy.loss(), MAX_LOSS);
        assert!(lossy.phi(at(60), SECOND) > 8.0);
    }

    #[test]
    fn old_repeated_and_forged_echoes_are_no_answer() {
        let mut window = ProbeWindow::new(at(0));
        for probe in 1..=LATE_PROBES as u8 + 1 {
            window.probe(Token([probe; 8]), WINDOW);
        }
        assert!(!window.answer(Token([1; 8]), at(1)), "older than the last {LATE_PROBES} probes");
        assert!(!window.answer(Token([99; 8]), at(1)), "never sent");
        assert_eq!(window.last_answer(), at(0));
        assert!(window.answer(Token([2; 8]), at(2)), "late, but one of the last {LATE_PROBES}");
        assert!(!window.answer(Token([2; 8]), at(3)), "answered once");
        assert_eq!(window.last_answer(), at(2));
        assert!(window.answer(Token([9; 8]), at(3)));
        assert_eq!(window.outcomes & 0xff, 0b1000_0001, "the two answered probes, by age (newest in bit 0)");
    }

    /// Answers that come a probe late, every time (a round trip longer than
    /// the gossip interval), keep phi low and count no probe lost.
    #[test]
    fn answers_a_round_late_are_answers() {
        let mut window = ProbeWindow::new(at(0));
        for second in 0..40_u64 {
            window.probe(Token(second.to_le_bytes()), WINDOW);
            if second > 0 {
                let late = Token((second - 1).to_le_bytes());
                assert!(window.answer(late, at(second) + Duration::from_millis(200)));
            }
            assert!(window.phi(at(second) + Duration::from_millis(900), SECOND) < 1.0);
        }
        assert_eq!(window.loss(), MIN_LOSS);
    }

    #[test]
    fn a_forgiven_pause_does_not_count_as_silence() {
        let mut window = probed(10, |_| true);
        let woke = at(40);
        assert!(window.phi(woke, SECOND) > 8.0);
        window.forgive(Duration::from_secs(30), woke);
        assert_eq!(window.last_answer(), at(39));
        assert_eq!(window.phi(woke, SECOND), 0.0);
        // Never past now, never backwards.
        window.forgive(Duration::from_secs(3_600), woke);
        assert_eq!(window.last_answer(), woke);
        window.forgive(Duration::ZERO, Timestamp::ZERO);
        assert_eq!(window.last_answer(), woke);
    }

    #[test]
    fn the_window_is_bounded() {
        let mut window = probed(200, |second| second < 100);
        assert_eq!(window.probes, WINDOW as u32);
        // The last 32 probes were all lost, and they are the current silence.
        assert_eq!(window.loss(), MIN_LOSS);
        window.probe(Token([7; 8]), 100);
        assert!(window.probes <= MAX_WINDOW as u32);
    }
}
