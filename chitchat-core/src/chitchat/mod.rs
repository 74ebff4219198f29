//! [`Chitchat`]: one node of the protocol, driven by its caller. It ties the
//! parts together: the clock, the cluster state, the timers, peer selection,
//! encryption and the outbox. User input (keys, leave) is in [`keys`], views in
//! [`views`], the encryption calls in [`encryption`].

mod encryption;
mod keys;
mod streams;
mod views;

use std::net::SocketAddr;

use crate::clock::NodeClock;
use crate::cluster::ClusterState;
use crate::config::{Config, ConfigError};
use crate::crypto::Encryption;
use crate::error::DatagramError;
use crate::events::Event;
use crate::identity::{Fingerprint, NodeId};
use crate::leave::Phase;
use crate::node_state::NodeState;
use crate::outbox::{Outbox, Transmit};
use crate::peers::{PeerSelector, QUIET_FANOUT};
use crate::stream::Streams;
use crate::time::Timestamp;
use crate::timers::{Timer, TimerTable};
use crate::validation::{AMPLIFICATION, AddressValidation, AnswerLimit, Question};
use crate::wire::{self, DeltaMessage, Digest, Message, Packet, PacketOut, Token};

/// Mixed into the seed of the generator that draws the key of the
/// address-validation tokens ("tokens" in ASCII).
const TOKEN_KEY_SALT: u64 = 0x746f_6b65_6e73;

/// One node of a chitchat cluster: the whole protocol as a state machine.
///
/// The caller owns the socket, the clock and the timer. It feeds received
/// datagrams to [`Chitchat::handle_datagram`] and expired deadlines to
/// [`Chitchat::handle_timeout`], then drains [`Chitchat::poll_transmit`] and
/// [`Chitchat::poll_event`] until they return `None`, and sleeps until
/// [`Chitchat::poll_timeout`] or the next datagram. Outputs may be drained in
/// any order. Every input takes the current [`Timestamp`]; time never has to be
/// read anywhere else.
///
/// Memory is bounded by the [`Config`]: at most `max_nodes` nodes of at most
/// `max_keys_per_node` records each, `max_pending_events` events and
/// `max_pending_transmits` datagrams.
pub struct Chitchat {
    cluster: ClusterState,
    clock: NodeClock,
    timers: TimerTable,
    outbox: Outbox,
    rng: fastrand::Rng,
    peers: PeerSelector,
    /// Where the next partial digest starts.
    digest_cursor: Fingerprint,
    phase: Phase,
    /// Keyring, mode and nonces of authenticated encryption (off by default).
    encryption: Encryption,
    /// The `Syn`s sent recently and the budget for answers to unvalidated
    /// addresses.
    validation: AddressValidation,
    /// The catch-up streams open (see [`crate::stream`]).
    streams: Streams,
}

impl std::fmt::Debug for Chitchat {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Chitchat")
            .field("self_id", self.self_id())
            .field("phase", &self.phase)
            .field("cluster", &self.cluster)
            .field("clock", &self.clock)
            .field("pending_transmits", &self.outbox.len())
            .field("seeds", &self.peers.seeds())
            .field("encryption_mode", &self.encryption.mode())
            .finish_non_exhaustive()
    }
}

impl Chitchat {
    /// A node with identity `self_id` and initial keys, starting at `now`.
    ///
    /// Fails if the configuration is inconsistent, the name too long, or an
    /// initial key-value refused. The first gossip round is due at once.
    pub fn new<K, V>(
        config: Config,
        self_id: NodeId,
        initial_key_values: impl IntoIterator<Item = (K, V)>,
        now: Timestamp,
    ) -> Result<Self, ConfigError>
    where
        K: AsRef<str>,
        V: AsRef<str>,
    {
        config.validate()?;
        if self_id.name().is_empty() {
            return Err(ConfigError::EmptyNodeName);
        }
        if self_id.name().len() > config.max_node_name_len {
            return Err(ConfigError::NodeNameTooLong {
                len: self_id.name().len(),
                max: config.max_node_name_len,
            });
        }
        // Mixing in the identity keeps nodes that share a configuration (and so a
        // seed) from choosing peers in lockstep; one seed still replays one run.
        let rng = fastrand::Rng::with_seed(config.rng_seed ^ self_id.fingerprint().0);
        // The tokens' key comes from a generator of its own, so that drawing it
        // leaves the main sequence (peer choice, jitter) as it was.
        let mut secret_rng =
            fastrand::Rng::with_seed(config.rng_seed ^ self_id.fingerprint().0 ^ TOKEN_KEY_SALT);
        let mut secret = [0; 32];
        secret.fill_with(|| secret_rng.u8(..));
        let validation = AddressValidation::new(
            config.gossip_interval,
            config.max_unvalidated_bytes_per_sec,
            config.max_pending_transmits,
            secret,
            now,
        );
        let mut chitchat = Chitchat {
            validation,
            outbox: Outbox::new(config.max_pending_transmits),
            cluster: ClusterState::new(config, NodeState::new(self_id), now),
            clock: NodeClock::new(now),
            timers: TimerTable::default(),
            rng,
            peers: PeerSelector::default(),
            digest_cursor: Fingerprint(0),
            phase: Phase::Running,
            encryption: Encryption::default(),
            streams: Streams::default(),
        };
        for (key, value) in initial_key_values {
            chitchat.set(now, key.as_ref(), value.as_ref())?;
        }
        chitchat.timers.set(Timer::Gossip, now);
        Ok(chitchat)
    }

    // ---- inputs ----------------------------------------------------------

    /// Handles a datagram received from `from` at `now`.
    ///
    /// On `Err` the datagram changed nothing (no state, output or event) and was
    /// counted in [`crate::Metrics::rejected`]. A `Syn` from another cluster is
    /// answered with `BadCluster` and returns `Ok`.
    pub fn handle_datagram(
        &mut self,
        now: Timestamp,
        from: SocketAddr,
        bytes: &[u8],
    ) -> Result<(), DatagramError> {
        // The node's clock moves only if the datagram is accepted: a refused one
        // changes nothing.
        let reading = self.clock.read(now);
        let metrics = self.cluster.metrics_mut();
        metrics.datagrams_received += 1;
        metrics.bytes_received += bytes.len() as u64;
        let result = self.handle_packet(reading.now, from, bytes);
        match &result {
            Ok(()) => self.clock.commit(reading),
            Err(error) => {
                self.cluster.metrics_mut().rejected.count(error);
                tracing::debug!(%from, %error, "datagram rejected");
            }
        }
        result
    }

    fn handle_packet(&mut self, now: Timestamp, from: SocketAddr, bytes: &[u8]) -> Result<(), DatagramError> {
        if self.phase != Phase::Running {
            return Err(DatagramError::NotRunning);
        }
        let (plaintext, accepted) =
            self.encryption.open(bytes, &self.cluster.config().cluster_id, wire::MAX_DATAGRAM_SIZE)?;
        let mut packet = wire::decode(plaintext)?;
        self.cluster.note_sender(from);
        if packet.cluster_id != self.config().cluster_id {
            if matches!(packet.message, Message::Syn { .. }) {
                // Answered, so accepted: a replay of it is refused.
                self.encryption.note_accepted(accepted);
                let limit = self.answer_limit(from, bytes.len());
                let answer = Packet {
                    echo: packet.token,
                    ..Packet::new(self.config().cluster_id.clone(), Message::BadCluster)
                };
                if self.queue_answer(now, from, wire::encode(&answer), limit) {
                    self.cluster.metrics_mut().bad_cluster_sent += 1;
                }
                return Ok(());
            }
            if matches!(packet.message, Message::BadCluster)
                && self.validation.take_answer(from, Question::Syn, packet.echo, now)
            {
                // The answer of another cluster's node to a Syn of ours (it
                // carries its own cluster id): a misconfigured seed, say.
                self.encryption.note_accepted(accepted);
                self.cluster.metrics_mut().bad_cluster_received += 1;
                tracing::warn!(%from, cluster_id = %packet.cluster_id, "peer belongs to another cluster");
                return Ok(());
            }
            return Err(DatagramError::WrongCluster);
        }
        // Every check comes before the first change.
        if let Message::SynAck { delta, .. } | Message::Ack { delta } = &packet.message {
            self.cluster.check_delta(delta)?;
        }
        self.drive(now, None);
        self.cluster.pardon_sender(from, &packet.message, now);
        self.dispatch(now, from, &mut packet, bytes.len());
        self.cluster.confirm_sender(from, &packet.message, now);
        self.encryption.note_accepted(accepted);
        Ok(())
    }

    /// Handles an accepted message of `received` bytes (as it came, sealed or
    /// not) from `from`. The records of its delta are moved out into the
    /// events they cause (keys and values are left empty).
    fn dispatch(&mut self, now: Timestamp, from: SocketAddr, packet: &mut Packet, received: usize) {
        match &mut packet.message {
            Message::Syn { digest } => {
                self.cluster.metrics_mut().syns_received += 1;
                self.cluster.absorb_digest(digest, now);
                let limit = self.answer_limit(from, received);
                self.answer_syn(now, from, digest, packet.token, limit);
            }
            Message::SynAck { digest, delta } => {
                self.cluster.metrics_mut().syn_acks_received += 1;
                let solicited = self.validation.take_answer(from, Question::Syn, packet.echo, now);
                let vouched = solicited || self.cluster.is_validated(&from);
                self.cluster.apply_delta(delta, from, vouched, now);
                self.cluster.absorb_digest(digest, now);
                // More unknown nodes than a hashed range holds: this node is far
                // behind (it joins, or comes back from a partition), and pulls
                // the peer's state rather than ask for it a few at a time.
                let unknown = if vouched { self.cluster.note_wants(digest) } else { 0 };
                if (delta.more || unknown > crate::cluster::SEGMENT_NODES) && vouched {
                    self.want_pull(now, from);
                }
                let limit = if solicited {
                    // The peer there answered this node's own Syn.
                    self.cluster.validate_address(&from);
                    AnswerLimit::Validated
                } else {
                    // Whoever the address is, an answer to nothing of ours is
                    // no larger than what it answers.
                    self.cluster.metrics_mut().unsolicited_syn_acks += 1;
                    AnswerLimit::Bytes(received)
                };
                let Some(budget) = self.answer_payload_budget(limit, usize::from(packet.token.is_some()))
                else {
                    self.cluster.metrics_mut().unvalidated_answers_dropped += 1;
                    return;
                };
                let (delta, _) = self.cluster.build_delta(now, digest, budget, false, &mut self.rng);
                let truncated = delta.more;
                // An answer to our own Syn is acknowledged even when empty, so
                // that its echo proves this node's address to the peer too
                // (its farewells and its news then count there).
                let ack = (!delta.is_empty() || (solicited && packet.token.is_some())).then(|| {
                    self.encode_answer(None, packet.token, DeltaMessage::Ack { delta: delta.writer() })
                });
                self.count_truncated(truncated);
                if let Some(ack) = ack {
                    self.queue_answer(now, from, ack, limit);
                }
            }
            Message::Ack { delta } => {
                self.cluster.metrics_mut().acks_received += 1;
                let answers = self.validation.take_answer(from, Question::SynAck, packet.echo, now);
                let vouched = answers || self.cluster.is_validated(&from);
                // Applied first, so that the Ack may introduce the node its
                // address validates.
                self.cluster.apply_delta(delta, from, vouched, now);
                if answers {
                    // The peer there answered the SynAck this node sent it.
                    self.cluster.validate_address(&from);
                }
                if delta.more && vouched {
                    self.want_pull(now, from);
                }
            }
            Message::BadCluster => {
                self.cluster.metrics_mut().bad_cluster_received += 1;
                tracing::warn!(%from, "peer belongs to another cluster");
            }
            Message::Ping { target } => {
                if *target != self.cluster.self_fingerprint() || packet.token.is_none() {
                    self.cluster.metrics_mut().probes_ignored += 1;
                    return;
                }
                // No larger than the Ping, so within any limit.
                let pong = self.packet(None, packet.token, Message::Pong);
                let limit = self.answer_limit(from, received);
                if self.queue_answer(now, from, wire::encode(&pong), limit) {
                    self.cluster.metrics_mut().pongs_sent += 1;
                }
            }
            Message::Pong => {
                self.cluster.take_pong(from, packet.echo, now);
            }
            // `wire::decode` refuses stream messages in datagrams.
            Message::Pull { .. } | Message::Records { .. } | Message::Done => {}
        }
    }

    /// Answers a `Syn` (that carried `echo`) with a `SynAck` under `limit`.
    fn answer_syn(
        &mut self,
        now: Timestamp,
        from: SocketAddr,
        syn_digest: &Digest,
        echo: Option<Token>,
        limit: AnswerLimit,
    ) {
        // The peer's `Ack` echoes a token to prove its address; one proven
        // already has nothing to prove: no token, and no empty `Ack` (a
        // datagram less in a settled cluster's every handshake).
        let proven = self.cluster.is_validated(&from);
        let tokens = usize::from(!proven) + usize::from(echo.is_some());
        let Some(payload) = self.answer_payload_budget(limit, tokens) else {
            self.cluster.metrics_mut().unvalidated_answers_dropped += 1;
            return;
        };
        let start = if syn_digest.range.is_full() { self.digest_cursor } else { syn_digest.range.start };
        let unknown = self.cluster.unknown_in(syn_digest);
        // A Syn that hashes is answered with the listing of the ranges whose
        // hash differs, and this node's rumors.
        let hashed = !syn_digest.hashes.segments.is_empty();
        let mismatch = if hashed { self.cluster.mismatches(now, &syn_digest.hashes) } else { None };
        let rumors = if hashed { self.cluster.current_rumors() } else { Vec::new() };
        let build = |cluster: &ClusterState, unknown: Vec<Fingerprint>, budget: usize| {
            if hashed {
                cluster.build_answer_digest(now, syn_digest, mismatch, unknown, &rumors, budget)
            } else {
                cluster.build_digest(now, start, unknown, budget)
            }
        };
        // The delta gets at least half of the room; the digest what the delta leaves.
        let (full_digest, full_len) = build(&self.cluster, unknown.clone(), payload);
        let delta_budget = payload - full_len.min(payload / 2);
        let (delta, delta_len) =
            self.cluster.build_delta(now, syn_digest, delta_budget, false, &mut self.rng);
        let digest = if full_len + delta_len <= payload {
            full_digest
        } else {
            build(&self.cluster, unknown, payload - delta_len).0
        };
        let partial = !digest.range.is_full() && !hashed;
        if partial && syn_digest.range.is_full() {
            self.digest_cursor = digest.range.end;
        }
        let token = (!proven).then(|| self.validation.issue());
        let syn_ack =
            self.encode_answer(token, echo, DeltaMessage::SynAck { digest: &digest, delta: delta.writer() });
        self.count_truncated(delta.more);
        if partial {
            self.cluster.metrics_mut().partial_digests_sent += 1;
        }
        if self.queue_answer(now, from, syn_ack, limit)
            && let Some(token) = token
        {
            self.validation.note_sent(from, Question::SynAck, token, now);
        }
    }

    /// Fires the timers due at `now`. Calling it early is harmless.
    ///
    /// Call it at [`Chitchat::poll_timeout`]. A node driven neither by its timer
    /// nor by an accepted datagram for longer than a quarter of the shorter
    /// grace period ([`crate::Config::dead_node_grace_period`],
    /// [`crate::Config::deletion_grace_period`]; at least two gossip intervals)
    /// takes the gap as a pause of its own (a stopped process, a long garbage
    /// collection, a suspended machine): it does not blame its peers' silence
    /// during the pause on them, and for one gossip interval it doubts what
    /// arrives, which may have waited in the socket since before the pause
    /// (counted in [`crate::Metrics::pauses`]). A shorter gap cannot hide the
    /// removal of a node, so it is only lateness. Short of a pause, a gossip round that runs
    /// late (the caller's event loop was busy or starved) forgives its lateness
    /// the same way: liveness is judged in the node's own rounds, and an
    /// overloaded node does not blame its peers for its own slowness.
    pub fn handle_timeout(&mut self, now: Timestamp) {
        let now = self.clock.advance(now);
        if self.phase != Phase::Running {
            return;
        }
        let round_due = self.timers.next_deadline().filter(|due| *due <= now);
        self.drive(now, round_due);
        self.expire_streams(now);
        for timer in self.timers.take_expired(now) {
            match timer {
                Timer::Gossip => {
                    self.gossip_round(now);
                    let interval = self.config().gossip_interval;
                    let jitter = interval.mul_f64(self.rng.f64() * 0.1);
                    self.timers.set(Timer::Gossip, now + (interval - jitter));
                }
            }
        }
    }

    fn gossip_round(&mut self, now: Timestamp) {
        self.cluster.metrics_mut().gossip_rounds += 1;
        // Liveness, removals and garbage collection are judged once a round, right
        // before targets are chosen, so that they are chosen on fresh liveness
        // (after a stall, say).
        self.cluster.maintain(now);
        self.validation.note_round(now);
        self.cluster.refute_claims(now);
        self.cluster.choose_subjects(now);
        self.probe_subjects();
        let self_addr = self.self_id().gossip_addr();
        let fanout = if self.cluster.round_has_news() {
            self.config().gossip_fanout
        } else {
            self.cluster.metrics_mut().quiet_rounds += 1;
            self.config().gossip_fanout.min(QUIET_FANOUT)
        };
        self.cluster.refresh_peers();
        let (live, dead) = self.cluster.peers();
        let address = |peer| self.cluster.gossip_addr(peer);
        let targets = self.peers.choose(&mut self.rng, live, dead, address, self_addr, fanout);
        // A listing of the whole ring is the same for every target: built and
        // encoded once. Hashes rotate: the next ranges for each target.
        let asks = self.cluster.take_asks();
        let mut whole_ring: Option<Vec<u8>> = None;
        for target in targets {
            if let Some(bytes) = &whole_ring {
                let bytes = bytes.clone();
                self.queue_syn(now, target, bytes);
                continue;
            }
            let digest = self.next_digest(now, asks.clone());
            let full = digest.range.is_full();
            let bytes = self.encode_syn(digest);
            if full {
                whole_ring = Some(bytes.clone());
            }
            self.queue_syn(now, target, bytes);
        }
        self.cluster.end_rumor_round();
    }

    /// Sends each subject its `Ping` of the round.
    fn probe_subjects(&mut self) {
        for subject in self.cluster.subjects() {
            let token = self.validation.issue();
            let Some(addr) = self.cluster.note_ping(subject, token) else { continue };
            let ping = self.packet(Some(token), None, Message::Ping { target: subject });
            let bytes = wire::encode(&ping);
            self.queue_bytes(addr, bytes, false);
        }
    }

    /// The digest this node opens a handshake with (asking for `asks`): the
    /// whole ring listed if that is short, else the next hashed ranges of the
    /// rotation and this node's rumors.
    fn next_digest(&mut self, now: Timestamp, asks: Vec<Fingerprint>) -> Digest {
        let budget = self.payload_budget(1);
        let rumors = self.cluster.current_rumors();
        let (digest, next) = self.cluster.build_syn_digest(now, budget, self.digest_cursor, &rumors, asks);
        if !digest.range.is_full() {
            self.cluster.metrics_mut().partial_digests_sent += 1;
            self.digest_cursor = next;
        }
        digest
    }

    /// Opens a handshake with `addr` now, outside the gossip rounds (to reach a
    /// node at once, say, after a configuration change). Its heartbeat is not
    /// bumped: that belongs to rounds.
    pub fn gossip_with(&mut self, now: Timestamp, addr: SocketAddr) {
        let now = self.clock.advance(now);
        if self.phase != Phase::Running {
            return;
        }
        let digest = self.next_digest(now, Vec::new());
        let bytes = self.encode_syn(digest);
        self.queue_syn(now, addr, bytes);
    }

    /// Replaces the seed addresses: contacted when no peer is live, and now and
    /// then otherwise, so that newcomers join and partitions heal.
    pub fn set_seed_addrs(&mut self, seeds: impl IntoIterator<Item = SocketAddr>) {
        self.peers.set_seeds(seeds);
    }

    /// Sets the predicate that says which live nodes are ready (default: all live
    /// nodes are). Readiness is re-evaluated for a node whenever its state or
    /// liveness changes, and for all nodes now.
    pub fn set_ready_predicate(&mut self, predicate: impl Fn(&NodeState) -> bool + Send + Sync + 'static) {
        self.cluster.set_ready_predicate(Box::new(predicate));
    }

    // ---- outputs ---------------------------------------------------------

    /// The next datagram to send.
    pub fn poll_transmit(&mut self) -> Option<Transmit> {
        loop {
            let config = self.cluster.config();
            let departure =
                self.outbox.pop(&mut self.encryption, &config.cluster_id, config.max_datagram_size)?;
            if departure.farewell && self.phase.farewell_gone() {
                self.cluster.report_self_left();
            }
            let metrics = self.cluster.metrics_mut();
            match departure.transmit {
                Some(transmit) => {
                    metrics.datagrams_sent += 1;
                    metrics.bytes_sent += transmit.bytes.len() as u64;
                    return Some(transmit);
                }
                None => metrics.transmits_dropped += 1,
            }
        }
    }

    /// The next deadline at which [`Chitchat::handle_timeout`] must be called;
    /// `None` once the node has left.
    pub fn poll_timeout(&self) -> Option<Timestamp> {
        let timers = self.timers.next_deadline();
        let streams = self.streams.next_deadline(self.stream_idle_timeout());
        let next = [timers, streams].into_iter().flatten().min()?;
        Some(self.clock.to_caller(next))
    }

    /// The next event.
    pub fn poll_event(&mut self) -> Option<Event> {
        self.cluster.pop_event()
    }

    // ---- internals -------------------------------------------------------

    /// Counts a datagram's delta that had to be cut.
    fn count_truncated(&mut self, truncated: bool) {
        if truncated {
            self.cluster.metrics_mut().deltas_truncated += 1;
        }
    }

    /// The node is driven at `now`, by its gossip round due at `round_due` or
    /// by a datagram: forgives its peers the silence of its own making.
    fn drive(&mut self, now: Timestamp, round_due: Option<Timestamp>) {
        let (interval, threshold) = (self.config().gossip_interval, self.config().pause_threshold());
        if let Some(forgiveness) = self.clock.drive(now, round_due, interval, threshold) {
            self.cluster.forgive(forgiveness, now);
        }
    }

    /// Room for a message's payload in one datagram whose packet carries
    /// `tokens` tokens (its token, its echo, or both).
    fn payload_budget(&self, tokens: usize) -> usize {
        self.config().max_datagram_size
            - wire::size::packet_overhead(&self.config().cluster_id, tokens)
            - self.encryption.overhead()
    }

    /// How an answer to `received` bytes from `from` is limited: not at all if
    /// `from` is validated, else to three times ([`AMPLIFICATION`]) what it sent.
    fn answer_limit(&self, from: SocketAddr, received: usize) -> AnswerLimit {
        match self.cluster.is_validated(&from) {
            true => AnswerLimit::Validated,
            false => AnswerLimit::Bytes(received.saturating_mul(AMPLIFICATION)),
        }
    }

    /// Room for the payload of an answer under `limit`, carrying `tokens`
    /// tokens; `None` if not even the envelope fits.
    fn answer_payload_budget(&self, limit: AnswerLimit, tokens: usize) -> Option<usize> {
        let full = self.payload_budget(tokens);
        match limit {
            AnswerLimit::Validated => Some(full),
            AnswerLimit::Bytes(bytes) => {
                let overhead = self.config().max_datagram_size - full;
                bytes.checked_sub(overhead).map(|room| room.min(full))
            }
        }
    }

    /// Queues an answer under `limit`: one to an unvalidated address that
    /// exceeds the limit once sealed, or that the budget for such addresses
    /// cannot pay for, is dropped and counted. Returns whether it was queued.
    fn queue_answer(&mut self, now: Timestamp, to: SocketAddr, plain: Vec<u8>, limit: AnswerLimit) -> bool {
        if let AnswerLimit::Bytes(bytes) = limit {
            let len = plain.len() + self.encryption.overhead();
            if len > bytes || !self.validation.spend(len, now) {
                self.cluster.metrics_mut().unvalidated_answers_dropped += 1;
                return false;
            }
            let metrics = self.cluster.metrics_mut();
            metrics.unvalidated_answers += 1;
            metrics.unvalidated_bytes_sent += len as u64;
        }
        self.queue_bytes(to, plain, false)
    }

    /// Queues a `Syn` this node opens a handshake with (encoded by
    /// [`Chitchat::encode_syn`]), with a fresh token: its answer will be
    /// solicited if it echoes it.
    fn queue_syn(&mut self, now: Timestamp, to: SocketAddr, mut plain: Vec<u8>) {
        let token = self.validation.issue();
        let stamped = wire::stamp_token(&mut plain, token);
        debug_assert!(stamped, "a Syn carries a token");
        if self.queue_bytes(to, plain, false) {
            self.validation.note_sent(to, Question::Syn, token, now);
        }
    }

    /// Encodes a `Syn` with room for a token, which [`Chitchat::queue_syn`]
    /// stamps per receiver.
    fn encode_syn(&self, digest: Digest) -> Vec<u8> {
        wire::encode(&self.packet(Some(Token([0; 8])), None, Message::Syn { digest }))
    }

    /// Encodes and queues a datagram. Returns whether it was queued.
    fn queue(&mut self, to: SocketAddr, message: Message, farewell: bool) -> bool {
        let plain = self.encode(message);
        self.queue_bytes(to, plain, farewell)
    }

    /// Encodes a message that asks for no echo and answers none into a
    /// plaintext datagram.
    fn encode(&self, message: Message) -> Vec<u8> {
        wire::encode(&self.packet(None, None, message))
    }

    /// Encodes a `SynAck` or an `Ack` (its delta's records read in place)
    /// into a plaintext datagram.
    fn encode_answer<D: serde::Serialize>(
        &self,
        token: Option<Token>,
        echo: Option<Token>,
        message: DeltaMessage<'_, D>,
    ) -> Vec<u8> {
        wire::encode_body(&PacketOut { token, echo, cluster_id: &self.config().cluster_id, message })
    }

    /// A packet of this node's cluster.
    fn packet(&self, token: Option<Token>, echo: Option<Token>, message: Message) -> Packet {
        Packet { token, echo, cluster_id: self.config().cluster_id.clone(), message }
    }

    /// Queues an encoded datagram. Returns whether it was queued.
    fn queue_bytes(&mut self, to: SocketAddr, plain: Vec<u8>, farewell: bool) -> bool {
        let overhead = self.encryption.overhead();
        let max_datagram_size = self.config().max_datagram_size;
        let queued = self.outbox.push(to, plain, farewell, overhead, max_datagram_size);
        if !queued {
            self.cluster.metrics_mut().transmits_dropped += 1;
        }
        queued
    }
}
