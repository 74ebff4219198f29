//! Counters of what a node did, read with [`crate::Chitchat::metrics`].

use serde::{Deserialize, Serialize};

use crate::error::DatagramError;

/// Monotonic counters since the node started.
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct Metrics {
    /// Datagrams handed to `handle_datagram`.
    pub datagrams_received: u64,
    /// Bytes handed to `handle_datagram`.
    pub bytes_received: u64,
    /// Datagrams handed out by `poll_transmit`.
    pub datagrams_sent: u64,
    /// Bytes handed out by `poll_transmit`.
    pub bytes_sent: u64,
    /// Syns received from this cluster.
    pub syns_received: u64,
    /// SynAcks received.
    pub syn_acks_received: u64,
    /// Acks received (farewells included).
    pub acks_received: u64,
    /// `BadCluster` answers received.
    pub bad_cluster_received: u64,
    /// `BadCluster` answers sent to Syns of another cluster.
    pub bad_cluster_sent: u64,
    /// Gossip rounds run.
    pub gossip_rounds: u64,
    /// Gossip rounds without news, which talked to one live peer instead of
    /// `gossip_fanout` (see [`crate::Config::gossip_fanout`]).
    pub quiet_rounds: u64,
    /// `Ping`s sent to this node's subjects (see [`crate::Config::observers`]).
    pub pings_sent: u64,
    /// `Pong`s received that answered the last `Ping` to a subject.
    pub pongs_received: u64,
    /// `Ping`s answered with a `Pong`.
    pub pongs_sent: u64,
    /// `Ping`s and `Pong`s that answered or asked for nothing: a `Ping` for
    /// another identity than this node's, a `Pong` whose echo matches no
    /// outstanding `Ping`.
    pub probes_ignored: u64,
    /// Subjects this node accused (their phi crossed the threshold).
    pub accusations: u64,
    /// Times this node raised its heartbeat to refute an accusation of it.
    pub accusations_refuted: u64,
    /// Datagrams refused, by reason.
    pub rejected: RejectedCounts,
    /// Node sections skipped because they name this node, a removed node, an
    /// older incarnation, or a node unknown by fingerprint, or (in a stream's
    /// frame) start past the versions held.
    pub sections_ignored: u64,
    /// Node sections refused because their node's name is longer than
    /// [`crate::Config::max_node_name_len`]: that node cannot be tracked.
    pub sections_over_limit: u64,
    /// Records skipped because this node cannot hold them: a key or value
    /// longer than its limits, or a new key past `max_keys_per_node`. The rest
    /// of the section applies, and the node's later versions still flow.
    pub records_over_limit: u64,
    /// Records skipped because holding them would take the other nodes'
    /// state past [`crate::Config::max_remote_state_bytes`]. As for records
    /// over a limit, the node's later versions still flow.
    pub records_over_budget: u64,
    /// Sections about a node vouched for, in a datagram whose sender proved
    /// nothing (no answer to a token of this node, not from a validated
    /// address): only their heartbeat is taken.
    pub sections_unproven: u64,
    /// New nodes refused because [`crate::Config::max_nodes`] were tracked.
    pub nodes_refused: u64,
    /// Nodes forgotten to make room, when the table was full, for a node
    /// vouched for: nodes not vouched for first, then (for a newcomer that
    /// introduced itself) nodes only ever heard of, never heard from.
    pub nodes_evicted: u64,
    /// New identities refused because their fingerprint was taken.
    pub fingerprint_collisions: u64,
    /// Events dropped because the queue was full.
    pub events_dropped: u64,
    /// Datagrams dropped because the transmit queue was full.
    pub transmits_dropped: u64,
    /// Digests sent that covered only part of the ring.
    pub partial_digests_sent: u64,
    /// Deltas sent that had to be cut to fit the datagram.
    pub deltas_truncated: u64,
    /// Node sections skipped because their sender had garbage-collected less of
    /// the node than this node (its records could resurrect deleted keys).
    pub stale_sections: u64,
    /// Times a peer's state was replaced wholesale (reset) here.
    pub resets_applied: u64,
    /// Pauses of this node: it was not driven for longer than a quarter of
    /// the shorter grace period, and at least two gossip intervals (see
    /// [`crate::Chitchat::handle_timeout`]).
    pub pauses: u64,
    /// Answers sent to addresses not validated (each at most three times the
    /// datagram it answered; see [`crate::Config::max_unvalidated_bytes_per_sec`]).
    pub unvalidated_answers: u64,
    /// Bytes of those answers.
    pub unvalidated_bytes_sent: u64,
    /// Answers to addresses not validated that were not sent: the budget of
    /// bytes per second was spent, or not even an empty answer fit the limit.
    pub unvalidated_answers_dropped: u64,
    /// `SynAck`s that answered no `Syn` of this node (their `Ack` is no larger
    /// than they are).
    pub unsolicited_syn_acks: u64,
    /// Times this node refuted a claim about itself it never made: a heartbeat,
    /// versions or a GC watermark above its own (see the crate docs).
    pub refutations: u64,
    /// Claims about this node so close to the counters' limit (2^62) that it
    /// could not go past them: only a restart (a new generation) clears them.
    pub unrefutable_claims: u64,
    /// The catch-up streams (see [`crate::Chitchat::poll_stream_open`]).
    pub streams: StreamCounts,
}

/// What the node's streams did.
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct StreamCounts {
    /// Pulls this node asked its caller to open.
    pub opened: u64,
    /// Streams peers opened that this node took.
    pub accepted: u64,
    /// Streams peers opened that this node refused (`max_streams` open, or
    /// streams off, or the node not running).
    pub refused: u64,
    /// Streams whose exchange ended with `Done` both ways.
    pub completed: u64,
    /// Streams that ended otherwise: a refused frame, a timeout, a close
    /// before the end.
    pub failed: u64,
    /// Streams that ended because of their deadline or idleness (also
    /// counted in `failed`).
    pub timed_out: u64,
    /// Frames refused (also counted in `failed`; the stream ends).
    pub frames_rejected: u64,
    /// Frames sent.
    pub frames_sent: u64,
    /// Frames received and accepted.
    pub frames_received: u64,
    /// Bytes sent (frames and their prefixes).
    pub bytes_sent: u64,
    /// Bytes received.
    pub bytes_received: u64,
}

/// Refused datagrams, one counter per class of [`DatagramError`].
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct RejectedCounts {
    /// All refused datagrams.
    pub total: u64,
    /// Not a datagram of this protocol and version: too short, too large, bad
    /// magic, unsupported version.
    pub envelope: u64,
    /// The body does not decode: truncated, trailing bytes, invalid UTF-8,
    /// malformed.
    pub decode: u64,
    /// From another cluster.
    pub wrong_cluster: u64,
    /// Decodes, but breaks a rule of the protocol.
    pub invalid: u64,
    /// Arrived after this node left.
    pub not_running: u64,
    /// Sealed datagrams that failed authentication or named an unknown key.
    pub unauthenticated: u64,
    /// Plaintext datagrams refused because encryption is required.
    pub plaintext_refused: u64,
    /// Authentic sealed datagrams refused as replays.
    pub replayed: u64,
}

impl RejectedCounts {
    pub(crate) fn count(&mut self, error: &DatagramError) {
        self.total += 1;
        let counter = match error {
            DatagramError::TooShort
            | DatagramError::TooLarge { .. }
            | DatagramError::BadMagic
            | DatagramError::UnsupportedVersion(_) => &mut self.envelope,
            DatagramError::Truncated
            | DatagramError::TrailingBytes(_)
            | DatagramError::InvalidUtf8
            | DatagramError::Malformed => &mut self.decode,
            DatagramError::WrongCluster => &mut self.wrong_cluster,
            DatagramError::Invalid(_) => &mut self.invalid,
            DatagramError::NotRunning => &mut self.not_running,
            DatagramError::UnknownKey(_) | DatagramError::Unauthenticated => &mut self.unauthenticated,
            DatagramError::PlaintextRefused => &mut self.plaintext_refused,
            DatagramError::Replayed => &mut self.replayed,
        };
        *counter += 1;
    }
}
