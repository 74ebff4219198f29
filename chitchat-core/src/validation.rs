//! Address validation and the amplification limit: what a forged source
//! address can make this node send.
//!
//! UDP source addresses are not authenticated, so a datagram "from" an address
//! may come from anyone, and an answer to it goes to whoever owns the address.
//! A node therefore never sends an address that has not shown it takes part
//! more than [`AMPLIFICATION`] times what it received from it:
//!
//! - an address is **validated** once a peer there answers a `Syn` or a
//!   `SynAck` this node sent it (with a `SynAck` or an `Ack` that echoes the
//!   [`Token`] it carried: it received what was sent there), for as long as it
//!   stays a tracked, live node's address. Tokens are drawn from a keystream
//!   (ChaCha20 under a key drawn once from the node's seeded generator): a
//!   blind spoofer, who never sees what is sent to the address it forges,
//!   cannot guess them;
//! - a `Syn` from an address that is not validated is answered with a `SynAck`
//!   of at most [`AMPLIFICATION`] times the `Syn`'s size (a newcomer's first
//!   `Syn` gets a short answer that asks for its identity; its `Ack` answers
//!   that `SynAck`, and validates it, so its next `Syn` gets a full answer);
//! - a `SynAck` that answers no `Syn` of this node (unsolicited) gets an `Ack`
//!   no larger than itself;
//! - everything sent to addresses that are not validated draws on one budget
//!   of bytes per second ([`crate::Config::max_unvalidated_bytes_per_sec`]);
//!   an answer the budget cannot pay for is not sent.
//!
//! Gossip rounds talk only to tracked nodes and seeds, which this node chose;
//! they are not answers and are not limited here. Everything is counted in
//! [`crate::Metrics`].

use std::collections::{HashMap, VecDeque};
use std::net::SocketAddr;
use std::time::Duration;

use chacha20::ChaCha20;
use chacha20::cipher::{KeyIvInit, StreamCipher};

use crate::time::Timestamp;
use crate::wire::Token;

/// An address that is not validated receives at most this many times the
/// bytes it sent.
pub(crate) const AMPLIFICATION: usize = 3;

/// How long after a `Syn` is sent its answer counts as solicited, in gossip
/// intervals (or in this node's own rounds, if those took longer). A seed
/// that falls behind when a whole cluster starts at once answers seconds
/// late; an answer it still sends must count, or the newcomer asks again
/// and the seed falls further behind. At least as long as a node with no
/// live peer waits to ask a seed again ([`crate::peers::MAX_SEED_WAIT`]).
const SOLICITATION_ROUNDS: u32 = 8;
const _: () = assert!(SOLICITATION_ROUNDS as u64 >= crate::peers::MAX_SEED_WAIT);

/// Questions remembered per address and kind: the last ones sent there, so
/// that an answer still counts after a later question left for the same
/// address (a round trip longer than the gossip interval, or a seed asked
/// while its answer is on the way).
const SOLICITATIONS_PER_ADDRESS: usize = 4;

/// The last questions of one kind sent to one address, newest first: when
/// each left and the token it carried (`None` once answered).
type Sent = [Option<(Timestamp, Token)>; SOLICITATIONS_PER_ADDRESS];

/// What this node sent that solicits an answer: a `Syn` (answered by a
/// `SynAck`, or a `BadCluster`), or a `SynAck` (answered by an `Ack`).
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub(crate) enum Question {
    Syn,
    SynAck,
}

/// How an answer to a datagram of `received` bytes from an address is limited.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) enum AnswerLimit {
    /// The address is validated: a full datagram.
    Validated,
    /// At most this many bytes, drawn on the budget for unvalidated addresses.
    Bytes(usize),
}

/// The `Syn`s this node sent recently, and the budget for bytes to addresses
/// that are not validated.
#[derive(Debug)]
pub(crate) struct AddressValidation {
    /// (Address, what was sent there) → the last [`SOLICITATIONS_PER_ADDRESS`]
    /// of them: when each left, and the token it carried. At most `bound`
    /// entries; entries whose questions all left before the solicitation
    /// window are dropped when room is needed, then the one sent to last
    /// longest ago.
    solicited: HashMap<(SocketAddr, Question), Sent>,
    bound: usize,
    window: Duration,
    /// When this node's last [`SOLICITATION_ROUNDS`] gossip rounds ran
    /// (oldest first): an answer also counts while the question is within
    /// that many of the node's own rounds, so that a node whose event loop
    /// runs late does not refuse answers for its own slowness.
    rounds: VecDeque<Timestamp>,
    budget: TokenBucket,
    tokens: TokenSource,
}

impl std::fmt::Debug for TokenSource {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("TokenSource").field("issued", &self.issued).finish_non_exhaustive()
    }
}

/// Unguessable tokens: consecutive 8-byte pieces of the ChaCha20 keystream
/// under a secret key (8 tokens a 64-byte block; the stream cipher alone, with
/// no authentication tag to compute).
struct TokenSource {
    cipher: ChaCha20,
    issued: u64,
}

impl TokenSource {
    fn new(secret: [u8; 32]) -> Self {
        TokenSource { cipher: ChaCha20::new(&secret.into(), &[0; 12].into()), issued: 0 }
    }

    fn next(&mut self) -> Token {
        self.issued += 1;
        if self.issued.is_multiple_of(REKEY_EVERY) {
            // Long before the keystream's 2^32 blocks run out, its next 32
            // bytes key the next one.
            let mut key = [0; 32];
            self.cipher.apply_keystream(&mut key);
            self.cipher = ChaCha20::new(&key.into(), &[0; 12].into());
        }
        let mut token = [0; 8];
        // The keystream XORed into zeros.
        self.cipher.apply_keystream(&mut token);
        Token(token)
    }
}

/// Tokens drawn from one keystream before the next key (2^30 of the 2^35 it
/// holds).
const REKEY_EVERY: u64 = 1 << 30;

impl AddressValidation {
    /// `gossip_interval` sets how long an answer counts as solicited;
    /// `bytes_per_sec` the budget for unvalidated addresses; `bound` how many
    /// solicitations are remembered; `secret` keys the tokens (it must be
    /// unpredictable for them to be).
    pub(crate) fn new(
        gossip_interval: Duration,
        bytes_per_sec: usize,
        bound: usize,
        secret: [u8; 32],
        now: Timestamp,
    ) -> Self {
        AddressValidation {
            solicited: HashMap::new(),
            bound: bound.max(1),
            window: gossip_interval * SOLICITATION_ROUNDS,
            rounds: VecDeque::with_capacity(SOLICITATION_ROUNDS as usize),
            budget: TokenBucket::new(bytes_per_sec, now),
            tokens: TokenSource::new(secret),
        }
    }

    /// A fresh token, for a question about to be sent.
    pub(crate) fn issue(&mut self) -> Token {
        self.tokens.next()
    }

    /// This node sent `question`, carrying `token`, to `to` at `now`: one
    /// answer from there that echoes the token is solicited.
    pub(crate) fn note_sent(&mut self, to: SocketAddr, question: Question, token: Token, now: Timestamp) {
        let key = (to, question);
        if self.solicited.len() >= self.bound && !self.solicited.contains_key(&key) {
            self.forget_expired(now);
            if self.solicited.len() >= self.bound
                && let Some(oldest) =
                    self.solicited.iter().min_by_key(|(_, sent)| last_sent(sent)).map(|(addr, _)| *addr)
            {
                self.solicited.remove(&oldest);
            }
        }
        let sent = self.solicited.entry(key).or_default();
        sent.rotate_right(1);
        sent[0] = Some((now, token));
    }

    /// Whether a question sent at `sent` is still within the solicitation
    /// window at `now`: [`SOLICITATION_ROUNDS`] gossip intervals, or as many
    /// of this node's own rounds if they took longer.
    fn within_window(&self, sent: Timestamp, now: Timestamp) -> bool {
        in_window(self.window, self.oldest_round(), sent, now)
    }

    /// When the first of this node's last [`SOLICITATION_ROUNDS`] gossip
    /// rounds ran (`None` before it has run that many).
    fn oldest_round(&self) -> Option<Timestamp> {
        self.rounds.front().copied().filter(|_| self.rounds.len() == SOLICITATION_ROUNDS as usize)
    }

    /// A gossip round runs at `now` (only a round counts in the window:
    /// nothing a peer sends moves it): notes it, then forgets the questions
    /// whose answers would no longer count.
    pub(crate) fn note_round(&mut self, now: Timestamp) {
        if self.rounds.len() == SOLICITATION_ROUNDS as usize {
            self.rounds.pop_front();
        }
        self.rounds.push_back(now);
        self.forget_expired(now);
    }

    /// Forgets the questions sent before the solicitation window (their
    /// answers would no longer count), and the room they took.
    fn forget_expired(&mut self, now: Timestamp) {
        let (window, oldest) = (self.window, self.oldest_round());
        self.solicited.retain(|_, sent| in_window(window, oldest, last_sent(sent), now));
        if self.solicited.capacity() > 4 * self.solicited.len() + 16 {
            self.solicited.shrink_to_fit();
        }
    }

    /// How many addresses and kinds of question are remembered.
    #[cfg(test)]
    pub(crate) fn remembered(&self) -> usize {
        self.solicited.len()
    }

    /// Which of the questions sent to `from` a datagram echoing `echo` at
    /// `now` answers, if any.
    fn answered(
        &self,
        from: SocketAddr,
        question: Question,
        echo: Option<Token>,
        now: Timestamp,
    ) -> Option<usize> {
        let sent = self.solicited.get(&(from, question))?;
        sent.iter().position(|sent| {
            sent.is_some_and(|(sent, token)| Some(token) == echo && self.within_window(sent, now))
        })
    }

    /// Whether a datagram from `from` at `now` echoing `echo` would answer
    /// the `question` this node sent there (nothing changes).
    #[cfg(test)]
    pub(crate) fn is_answer(
        &self,
        from: SocketAddr,
        question: Question,
        echo: Option<Token>,
        now: Timestamp,
    ) -> bool {
        self.answered(from, question, echo, now).is_some()
    }

    /// Whether a datagram from `from` at `now` echoing `echo` answers the
    /// `question` this node sent there; if so, the solicitation is used up
    /// (one answer each). A wrong echo uses up nothing: a spoofer cannot
    /// cancel a real peer's answer.
    pub(crate) fn take_answer(
        &mut self,
        from: SocketAddr,
        question: Question,
        echo: Option<Token>,
        now: Timestamp,
    ) -> bool {
        let Some(index) = self.answered(from, question, echo, now) else { return false };
        let key = (from, question);
        if let Some(sent) = self.solicited.get_mut(&key) {
            sent[index] = None;
            if sent.iter().all(Option::is_none) {
                self.solicited.remove(&key);
            }
        }
        true
    }

    /// Draws `bytes` sent to an unvalidated address on the budget at `now`;
    /// returns whether the budget could pay for them (if not, nothing is drawn
    /// and they must not be sent).
    pub(crate) fn spend(&mut self, bytes: usize, now: Timestamp) -> bool {
        self.budget.take(bytes, now)
    }
}

/// When the last question of `sent` still unanswered left.
fn last_sent(sent: &Sent) -> Timestamp {
    sent.iter().flatten().map(|(sent, _)| *sent).max().unwrap_or(Timestamp::ZERO)
}

/// Bytes per second, with one second of burst. Fractions of a byte carry
/// over, so that frequent small refills add up at any rate.
#[derive(Debug)]
struct TokenBucket {
    rate: f64,
    tokens: f64,
    refilled_at: Timestamp,
}

impl TokenBucket {
    fn new(rate: usize, now: Timestamp) -> Self {
        TokenBucket { rate: rate as f64, tokens: rate as f64, refilled_at: now }
    }

    fn take(&mut self, bytes: usize, now: Timestamp) -> bool {
        let elapsed = now.saturating_duration_since(self.refilled_at);
        self.tokens = (self.tokens + elapsed.as_secs_f64() * self.rate).min(self.rate);
        self.refilled_at = self.refilled_at.max(now);
        if bytes as f64 > self.tokens {
            return false;
        }
        self.tokens -= bytes as f64;
        true
    }
}

/// Whether a question sent at `sent` is within the solicitation window at
/// `now`: less than `window` ago, or since `oldest_round`, the first of the
/// node's last [`SOLICITATION_ROUNDS`] rounds.
fn in_window(window: Duration, oldest_round: Option<Timestamp>, sent: Timestamp, now: Timestamp) -> bool {
    now.saturating_duration_since(sent) < window || oldest_round.is_some_and(|oldest| sent >= oldest)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn addr(port: u16) -> SocketAddr {
        SocketAddr::from(([127, 0, 0, 1], port))
    }

    const INTERVAL: Duration = Duration::from_secs(1);

    fn fresh(bytes_per_sec: usize) -> AddressValidation {
        AddressValidation::new(INTERVAL, bytes_per_sec, 8, [7; 32], Timestamp::ZERO)
    }

    #[test]
    fn only_an_answer_that_echoes_a_recent_syn_is_solicited_and_only_once() {
        let mut validation = fresh(1_000);
        let at = Timestamp::from_millis;
        let token = validation.issue();
        validation.note_sent(addr(1), Question::Syn, token, at(0));
        let echo = Some(token);
        assert!(!validation.take_answer(addr(2), Question::Syn, echo, at(10)), "never sent a Syn there");
        assert!(!validation.take_answer(addr(1), Question::SynAck, echo, at(10)), "sent a Syn, not a SynAck");
        assert!(!validation.take_answer(addr(1), Question::Syn, None, at(10)), "no echo");
        let guess = Some(Token(*b"guessed!"));
        assert!(!validation.take_answer(addr(1), Question::Syn, guess, at(10)), "a wrong echo");
        assert!(validation.is_answer(addr(1), Question::Syn, echo, at(10)), "a wrong echo used nothing up");
        assert!(validation.take_answer(addr(1), Question::Syn, echo, at(10)));
        assert!(!validation.take_answer(addr(1), Question::Syn, echo, at(20)), "one answer per Syn");
        let token = validation.issue();
        validation.note_sent(addr(1), Question::Syn, token, at(100));
        assert!(
            !validation.take_answer(
                addr(1),
                Question::Syn,
                Some(token),
                at(100) + INTERVAL * SOLICITATION_ROUNDS
            ),
            "too late"
        );
    }

    /// Questions asked of one address round after round: an answer to any
    /// of the last few counts once, even after later questions left; one
    /// older than those, or than the window, does not.
    #[test]
    fn an_answer_to_an_earlier_question_still_counts() {
        let mut validation = fresh(1_000);
        let at = Timestamp::from_millis;
        let tokens: Vec<Token> = (0..SOLICITATIONS_PER_ADDRESS as u64 + 1)
            .map(|round| {
                let token = validation.issue();
                validation.note_sent(addr(1), Question::Syn, token, at(round * 500));
                token
            })
            .collect();
        let now = at(2_600);
        assert!(
            !validation.take_answer(addr(1), Question::Syn, Some(tokens[0]), now),
            "no longer remembered"
        );
        assert!(validation.take_answer(addr(1), Question::Syn, Some(tokens[1]), now), "three questions late");
        assert!(!validation.take_answer(addr(1), Question::Syn, Some(tokens[1]), now), "once");
        assert!(validation.take_answer(addr(1), Question::Syn, Some(tokens[4]), now));
        assert!(validation.take_answer(addr(1), Question::Syn, Some(tokens[2]), now));
        assert!(
            !validation.take_answer(
                addr(1),
                Question::Syn,
                Some(tokens[3]),
                at(1_500) + INTERVAL * SOLICITATION_ROUNDS
            ),
            "too late"
        );
        assert!(validation.take_answer(addr(1), Question::Syn, Some(tokens[3]), now));
        assert!(validation.solicited.is_empty(), "every question answered: nothing held");
    }

    /// Questions left unanswered are forgotten once their answers could no
    /// longer count, and the room they took goes back.
    #[test]
    fn unanswered_questions_expire() {
        let mut validation = AddressValidation::new(INTERVAL, 1_000, 1_000, [7; 32], Timestamp::ZERO);
        for port in 0..500 {
            let token = validation.issue();
            validation.note_sent(addr(port), Question::Syn, token, Timestamp::ZERO);
        }
        let token = validation.issue();
        let late = Timestamp::ZERO + INTERVAL * SOLICITATION_ROUNDS;
        validation.note_sent(addr(1), Question::SynAck, token, late);
        validation.note_round(late);
        assert_eq!(validation.remembered(), 1);
        assert!(validation.solicited.capacity() < 64);
        assert!(validation.take_answer(addr(1), Question::SynAck, Some(token), late), "the recent one stays");
    }

    /// When the `rounds`-th round of a node running late (every 3 intervals) starts.
    fn at(rounds: u32) -> Timestamp {
        Timestamp::ZERO + INTERVAL * 3 * rounds
    }

    /// Runs the `rounds` of a node running late.
    fn late_rounds(validation: &mut AddressValidation, rounds: std::ops::Range<u32>) {
        for round in rounds {
            validation.note_round(at(round));
        }
    }

    /// A node whose rounds run late (its event loop is starved) still takes
    /// an answer that comes within as many of its own rounds as the window
    /// has intervals; past those, it does not.
    #[test]
    fn the_window_stretches_with_the_nodes_own_late_rounds() {
        let mut validation = fresh(1_000);
        late_rounds(&mut validation, 0..SOLICITATION_ROUNDS);
        let token = validation.issue();
        validation.note_sent(addr(1), Question::Syn, token, at(SOLICITATION_ROUNDS));
        late_rounds(&mut validation, SOLICITATION_ROUNDS..2 * SOLICITATION_ROUNDS);
        // `SOLICITATION_ROUNDS` of its rounds later, three times the window.
        let late = at(2 * SOLICITATION_ROUNDS);
        assert!(validation.is_answer(addr(1), Question::Syn, Some(token), late));
        validation.note_round(late);
        assert_eq!(validation.remembered(), 0, "one round more: forgotten");
        assert!(!validation.take_answer(addr(1), Question::Syn, Some(token), late));
    }

    /// Making room in a full table (which a flood of spoofed `Syn`s, each
    /// answered, can force) forgets expired questions but is not a round of
    /// this node: it does not shorten the window its late rounds stretched.
    #[test]
    fn only_a_round_moves_the_window() {
        let mut validation = fresh(2);
        late_rounds(&mut validation, 0..SOLICITATION_ROUNDS);
        let token = validation.issue();
        validation.note_sent(addr(1), Question::Syn, token, at(SOLICITATION_ROUNDS - 1));
        let late = at(SOLICITATION_ROUNDS + 2);
        for port in 2..100 {
            let flood = validation.issue();
            validation.note_sent(addr(port), Question::SynAck, flood, late);
        }
        assert_eq!(validation.oldest_round(), Some(at(0)), "no round was added");
        // The flood evicts the oldest entries when the table is full, but the
        // window itself did not move.
        assert!(validation.within_window(at(SOLICITATION_ROUNDS - 1), late));
    }

    /// Across a change of key, tokens still differ and still follow from
    /// the secret alone.
    #[test]
    fn tokens_go_on_past_a_change_of_key() {
        let source = || {
            let mut source = TokenSource::new([3; 32]);
            source.issued = REKEY_EVERY - 4;
            source
        };
        let mut one = source();
        let tokens: Vec<Token> = (0..64).map(|_| one.next()).collect();
        let distinct: std::collections::HashSet<&Token> = tokens.iter().collect();
        assert_eq!(distinct.len(), tokens.len());
        let mut again = source();
        assert!(tokens.iter().all(|token| *token == again.next()), "one secret, one sequence");
    }

    #[test]
    fn tokens_differ_and_depend_on_the_secret() {
        let mut one = fresh(1_000);
        let tokens: std::collections::HashSet<Token> = (0..1_000).map(|_| one.issue()).collect();
        assert_eq!(tokens.len(), 1_000);
        let first = fresh(1_000).issue();
        assert_eq!(first, fresh(1_000).issue(), "one secret, one sequence");
        let mut other = AddressValidation::new(INTERVAL, 1_000, 8, [8; 32], Timestamp::ZERO);
        assert_ne!(first, other.issue());
    }

    #[test]
    fn solicitations_are_bounded() {
        let mut validation = fresh(1_000);
        let token = validation.issue();
        for port in 0..100 {
            validation.note_sent(addr(port), Question::Syn, token, Timestamp::from_millis(u64::from(port)));
        }
        assert!(validation.solicited.len() <= 8);
        assert!(
            validation.take_answer(addr(99), Question::Syn, Some(token), Timestamp::from_millis(100)),
            "the newest is kept"
        );
    }

    #[test]
    fn answers_to_unvalidated_addresses_draw_on_the_budget() {
        let mut validation = fresh(1_000);
        assert!(validation.spend(900, Timestamp::ZERO));
        assert!(!validation.spend(200, Timestamp::ZERO), "over the budget");
        assert!(validation.spend(100, Timestamp::ZERO));
        assert!(validation.spend(500, Timestamp::from_millis(500)), "half a second refills half");
        assert!(!validation.spend(1, Timestamp::from_millis(500)));
        assert!(validation.spend(1_000, Timestamp::from_millis(100_000)), "refills to one second's worth");
        assert!(!validation.spend(1, Timestamp::from_millis(100_000)));
        // Frequent calls at a low rate still refill: fractions carry over.
        let mut slow = fresh(10);
        assert!(slow.spend(10, Timestamp::ZERO));
        let refilled = (1..=100).filter(|ms| slow.spend(1, Timestamp::from_millis(10 * ms))).count();
        assert!((9..=10).contains(&refilled), "about ten bytes a second over 10 ms calls: {refilled}");
    }
}
