//! What the targets check after a node accepted a datagram: the core's
//! invariants hold, versions only grow, and what it sends fits and decodes.
//! (That a refused datagram changed nothing is checked by
//! [`chitchat_core::testing::feed`].)
//!
//! [`Watch::feed`] also checks what a datagram makes the node send (see
//! [`Ledger`]):
//!
//! - **a refused datagram sends nothing**: no datagram is queued as a result
//!   of a datagram that `handle_datagram` refused;
//! - **answers go to the sender only**, and an `Ack` or a `BadCluster` is
//!   answered with nothing;
//! - **the amplification limit** (PROTOCOL.md §5.16): an `Ack` to an
//!   unsolicited `SynAck` is no larger than that `SynAck`; per address that is
//!   not validated, the answers sent there total at most three times
//!   ([`AMPLIFICATION`]) the datagrams they answered (and each answer at most
//!   three times its datagram); what all those answers (and the `Acks` to
//!   unsolicited `SynAck`s) sent totals at most one second's worth of
//!   `max_unvalidated_bytes_per_sec` plus its refill since the first of them.

use std::collections::{BTreeMap, HashMap};
use std::net::SocketAddr;

use chitchat_core::testing::{DatagramSealer, is_validated, queue_lengths};
use chitchat_core::{Chitchat, DatagramError, Event, Fingerprint, Metrics, Timestamp, wire};

/// An address that is not validated receives at most this many times what it
/// sent (the core's constant, restated: PROTOCOL.md §5.16 fixes it at 3).
pub const AMPLIFICATION: u64 = 3;

/// Remembers what a node showed, to check that it only moves forward.
#[derive(Default)]
pub struct Watch {
    /// Highest max version seen per tracked node, forgotten on reset or removal.
    versions: BTreeMap<Fingerprint, u64>,
    /// Events the node had dropped when last drained.
    events_dropped: u64,
    /// Opens what the node seals, if it seals.
    opener: Option<DatagramSealer>,
    /// What the node sent to addresses that are not validated.
    ledger: Ledger,
    /// The tokens of the last datagrams the node sent (at most
    /// [`TOKENS_KEPT`]), for inputs to echo.
    tokens: Vec<wire::Token>,
}

/// How many of the node's latest tokens a [`Watch`] keeps.
pub const TOKENS_KEPT: usize = 8;

/// What a node sent, in answer to datagrams fed with [`Watch::feed`], to
/// addresses that are not validated, and what those addresses sent it.
///
/// The rule (PROTOCOL.md §5.16, `chitchat-core/src/validation.rs`) is per
/// answer: an answer to a datagram from an address that is not validated, when
/// the answer is built, is at most [`AMPLIFICATION`] times that datagram, seal
/// included; an `Ack` to an unsolicited `SynAck` at most the `SynAck`,
/// validated or not; every such answer draws on one budget of bytes per second.
/// Not limited, so not counted: answers to addresses validated before or after
/// the datagram (validation is a flag of the tracked live node at the address,
/// and a datagram may revive a dead one), the `Ack` to a `SynAck` that answers
/// a `Syn` of the node (it validates the address, or, at an untracked address
/// such as a seed, is an answer to the node's own choice), and what the node
/// sends on its own (gossip rounds, `gossip_with`, farewells: to addresses it
/// chose; datagrams queued before the fed one are told apart by their place in
/// the queue). The core keeps no per-address ledger: the account here is the
/// sum of the per-answer rule, never reset (validation only exempts datagrams
/// from counting).
#[derive(Default)]
pub struct Ledger {
    accounts: HashMap<SocketAddr, Account>,
    /// Bytes of every answer that draws on the budget, all addresses together.
    limited: u64,
    /// When the first of those answers was sent.
    since: Option<Timestamp>,
}

/// Bytes from and to one address, counting only datagrams whose answers are
/// limited.
#[derive(Default, Debug)]
struct Account {
    received: u64,
    sent: u64,
}

/// A datagram the node sent, and its place among the datagrams queued at the
/// time of the drain (0: the first).
struct Sent {
    place: usize,
    to: SocketAddr,
    len: usize,
}

impl Watch {
    /// A watch that starts from what `node` holds now.
    pub fn new(node: &Chitchat) -> Self {
        let mut watch = Watch { events_dropped: node.metrics().events_dropped, ..Watch::default() };
        watch.check(node);
        watch
    }

    /// Opens the node's sealed datagrams with `opener` (holding the node's
    /// primary key) before checking them.
    pub fn with_opener(mut self, opener: DatagramSealer) -> Self {
        self.opener = Some(opener);
        self
    }

    /// Checks the bounds, that versions only grow, and that every queued
    /// datagram fits and decodes. Drains nothing.
    pub fn check(&mut self, node: &Chitchat) {
        let config = node.config();
        let (transmits, events, removed) = chitchat_core::testing::queue_lengths(node);
        assert!(transmits <= config.max_pending_transmits, "{transmits} datagrams queued");
        assert!(events <= config.max_pending_events, "{events} events queued");
        assert!(removed <= config.max_nodes, "{removed} removed identities remembered");
        let tracked = node.node_states().count();
        assert!(tracked <= config.max_nodes, "{tracked} nodes tracked, max_nodes is {}", config.max_nodes);
        for state in node.node_states() {
            assert!(
                state.num_records() <= config.max_keys_per_node,
                "{} holds {} records, max_keys_per_node is {}",
                state.id(),
                state.num_records(),
                config.max_keys_per_node
            );
            let seen = self.versions.entry(state.id().fingerprint()).or_insert(0);
            assert!(
                state.max_version() >= *seen,
                "{}'s max version went back from {} to {}",
                state.id(),
                seen,
                state.max_version()
            );
            *seen = state.max_version();
        }
    }

    /// The tokens of the last datagrams the node sent, oldest first.
    pub fn tokens(&self) -> &[wire::Token] {
        &self.tokens
    }

    /// Drains the node's outputs (checking them), then checks the invariants.
    pub fn settle(&mut self, node: &mut Chitchat) {
        self.drain(node);
        self.check(node);
    }

    /// Takes note of an event: a reset or removal lets a node's versions restart.
    pub fn note(&mut self, event: &Event) {
        if let Event::NodeReset(node) | Event::NodeRemoved(node) = event {
            self.versions.remove(&node.fingerprint());
        }
    }

    /// Drains the node's outputs, checking each: datagrams fit the maximum and
    /// decode to what re-encodes to the same bytes.
    pub fn drain(&mut self, node: &mut Chitchat) {
        self.drain_sent(node);
    }

    /// [`Watch::drain`], returning what was sent, each with its place in the
    /// queue (a datagram the node drops as it pops it, unsealable, takes a
    /// place and is not returned).
    fn drain_sent(&mut self, node: &mut Chitchat) -> Vec<Sent> {
        let max = node.config().max_datagram_size;
        let mut sent = Vec::new();
        let mut popped = 0;
        loop {
            let queued = queue_lengths(node).0;
            let Some(transmit) = node.poll_transmit() else { break };
            popped += queued - queue_lengths(node).0;
            sent.push(Sent { place: popped - 1, to: transmit.to, len: transmit.bytes.len() });
            assert!(transmit.bytes.len() <= max, "a {}-byte datagram exceeds {max}", transmit.bytes.len());
            let bytes = match &mut self.opener {
                Some(opener) => opener
                    .open(&transmit.bytes, &node.config().cluster_id)
                    .unwrap_or_else(|error| panic!("the node sent a datagram its peers cannot open: {error}"))
                    .to_vec(),
                None => transmit.bytes,
            };
            let packet = wire::decode(&bytes)
                .unwrap_or_else(|error| panic!("the node sent a datagram it cannot decode: {error}"));
            assert_eq!(wire::encode(&packet), bytes, "a sent datagram does not re-encode the same");
            if let Some(token) = packet.token {
                if self.tokens.len() == TOKENS_KEPT {
                    self.tokens.remove(0);
                }
                self.tokens.push(token);
            }
        }
        while let Some(event) = node.poll_event() {
            self.note(&event);
        }
        let dropped = node.metrics().events_dropped;
        if dropped > self.events_dropped {
            // A reset or removal may be among the lost events.
            self.versions.clear();
            self.events_dropped = dropped;
        }
        sent
    }

    /// Feeds `bytes` from `from` at `now` with [`chitchat_core::testing::feed`]
    /// (a refusal changes nothing), drains the node's outputs (checking them)
    /// and checks what the datagram made it send: nothing if refused, and
    /// within the amplification limit (see [`Ledger`]). On `Ok` the invariants
    /// are checked too, as [`Watch::settle`] does.
    ///
    /// Times fed to a node must not go back (the node's clock then keeps its
    /// offset to the caller's, and the budget's refill is reckoned in the
    /// caller's time).
    pub fn feed(
        &mut self,
        node: &mut Chitchat,
        now: Timestamp,
        from: SocketAddr,
        bytes: &[u8],
    ) -> Result<(), DatagramError> {
        let queued = queue_lengths(node).0;
        let validated_before = is_validated(node, &from);
        let before = node.metrics();
        let result = chitchat_core::testing::feed(node, now, from, bytes);
        let after = node.metrics();
        let validated_after = is_validated(node, &from);
        // The datagrams queued before this one come out first.
        let answers: Vec<Sent> =
            self.drain_sent(node).into_iter().filter(|sent| sent.place >= queued).collect();
        if let Err(error) = &result {
            assert!(answers.is_empty(), "a refused datagram ({error}) queued {} datagrams", answers.len());
            return result;
        }
        self.check(node);
        for answer in &answers {
            assert_eq!(answer.to, from, "a datagram from {from} made the node send to {}", answer.to);
        }
        let answered: u64 = answers.iter().map(|answer| answer.len as u64).sum();
        let received = bytes.len() as u64;
        let delta = |count: fn(&Metrics) -> u64| count(&after) - count(&before);
        if delta(|m| m.acks_received) + delta(|m| m.bad_cluster_received) > 0 {
            assert_eq!(answered, 0, "an Ack or a BadCluster was answered");
            return result;
        }
        let syn_ack = delta(|m| m.syn_acks_received) > 0;
        let unsolicited = delta(|m| m.unsolicited_syn_acks) > 0;
        if syn_ack && !unsolicited {
            // It answered a Syn of the node: its Ack is not limited.
            return result;
        }
        if unsolicited {
            assert!(
                answered <= received,
                "{answered} bytes answered an unsolicited {received}-byte SynAck from {from}"
            );
        }
        let validated = validated_before || validated_after;
        if !validated {
            self.ledger.count(from, received, answered);
        }
        if unsolicited || !validated {
            // The budget holds at most one second's worth when the first of
            // these answers is built, and refills at its rate from then on.
            let since = *self.ledger.since.get_or_insert(now);
            self.ledger.limited += answered;
            let rate = node.config().max_unvalidated_bytes_per_sec as f64;
            let elapsed = now.saturating_duration_since(since).as_secs_f64();
            let budget = (rate * (1.0 + elapsed)).ceil() as u64;
            assert!(
                self.ledger.limited <= budget,
                "{} bytes of limited answers in {elapsed} s, over the budget of {budget}",
                self.ledger.limited
            );
        }
        result
    }
}

impl Ledger {
    /// An answer of `answered` bytes to a datagram of `received` bytes from
    /// `from`, not validated: checks it and the account of `from`.
    fn count(&mut self, from: SocketAddr, received: u64, answered: u64) {
        assert!(
            answered <= AMPLIFICATION * received,
            "{answered} bytes answered a {received}-byte datagram from {from}, not validated"
        );
        let account = self.accounts.entry(from).or_default();
        account.received += received;
        account.sent += answered;
        assert!(
            account.sent <= AMPLIFICATION * account.received,
            "{from}, not validated, was sent more than {AMPLIFICATION} times what it sent: {account:?}"
        );
    }
}
