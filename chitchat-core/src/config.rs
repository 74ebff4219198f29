//! Settings of a node, validated once at construction.

use std::time::Duration;

use thiserror::Error;

use crate::wire::{self, size};

/// Everything a node can be tuned by. Build one with [`Config::default`],
/// [`Config::lan`] or [`Config::local_test`], adjust fields, and hand it to
/// [`crate::Chitchat::new`], which validates it.
#[derive(Clone, Debug, PartialEq)]
pub struct Config {
    /// Nodes only talk to nodes with the same cluster id (at most
    /// [`Config::max_cluster_id_len`] bytes).
    pub cluster_id: String,
    /// Time between two gossip rounds. Each round is jittered by up to 10 %
    /// (earlier only), so that nodes started together drift apart.
    pub gossip_interval: Duration,
    /// How many random live peers a round talks to while the node has news
    /// to spread: a node's state that changed in its eyes in the last few
    /// rounds (its own included), or nodes it heard of and does not know. A
    /// round without news (a settled cluster's) talks to one live peer, enough
    /// to check by the digest's hashes that nothing was missed.
    pub gossip_fanout: usize,
    /// The largest datagram the node sends, in bytes, envelope included. Every
    /// Syn, SynAck and Ack fits, whatever the cluster size. At least
    /// [`Config::MIN_DATAGRAM_SIZE`], at most [`Config::MAX_DATAGRAM_SIZE`].
    pub max_datagram_size: usize,
    /// How many nodes watch each node: every node probes this many subjects
    /// (the nodes after it on the fingerprint ring) once a gossip round, and a
    /// node is declared dead when a majority of its watchers accuse it. At
    /// least 1, at most 16; 3 tolerates one watcher that cannot reach it (a
    /// broken link) and one that crashed with it.
    pub observers: usize,
    /// The phi value above which a node accuses a subject. Phi is
    /// `-log10(P(silence this long | alive))` under a model where each probe is
    /// lost independently with the rate measured over the window (taken
    /// between 10 % and 50 %): with at most one probe in ten lost, phi grows
    /// by 1 per silent gossip interval after the first, so 8 means "accused
    /// after about nine silent rounds"; at 36 % loss (20 % each way), after
    /// about twenty.
    pub phi_threshold: f64,
    /// How many probes of each subject the failure detector remembers (a
    /// bit each, at most 64).
    pub phi_sampling_window: usize,
    /// A dead (or left) node stops being gossiped after half of this, and is
    /// forgotten after all of it; its identity and last heartbeat are then
    /// remembered for twice as long, so that stale gossip cannot bring it back
    /// (news of it with a higher heartbeat, or from the node itself, can).
    pub dead_node_grace_period: Duration,
    /// A deleted key (tombstone) and a key set with a time to live are removed
    /// this long after the node learned of the deletion or of the time to live.
    pub deletion_grace_period: Duration,
    /// The longest key, in bytes of UTF-8.
    pub max_key_len: usize,
    /// The longest value, in bytes of UTF-8. A record too large for half a
    /// datagram travels only on streams (see [`Config::max_streams`]): it must
    /// then fit a stream frame (1 MiB), and streams must be on.
    pub max_value_len: usize,
    /// The most keys (tombstones included) a node may hold in its own state; a
    /// remote node's section that would exceed it is refused and counted.
    pub max_keys_per_node: usize,
    /// The most bytes of other nodes' records this node holds, counted as each
    /// record's key and value bytes plus [`crate::RECORD_OVERHEAD`] (tombstones
    /// included; identities and liveness are bounded by `max_nodes`). A record
    /// that would grow the total past it is refused and counted in
    /// [`crate::Metrics::records_over_budget`]; the node's later versions still
    /// flow. It bounds what a flood of forged records can make a node hold,
    /// whatever `max_nodes × max_keys_per_node × max_value_len` allows.
    pub max_remote_state_bytes: usize,
    /// The most nodes tracked, this one included. When full, a new node is refused
    /// (first come, kept) and counted; room comes back as dead nodes are removed.
    /// At most [`MAX_NODES_LIMIT`] (2^24, 16,777,216).
    pub max_nodes: usize,
    /// The longest node name, in bytes.
    pub max_node_name_len: usize,
    /// The longest cluster id, in bytes.
    pub max_cluster_id_len: usize,
    /// Events not yet polled are kept up to this many; beyond it the oldest are
    /// dropped and counted in [`crate::Metrics::events_dropped`].
    pub max_pending_events: usize,
    /// Datagrams not yet polled are kept up to this many; beyond it new ones are
    /// dropped and counted in [`crate::Metrics::transmits_dropped`].
    pub max_pending_transmits: usize,
    /// Bytes per second this node may send, in all, to addresses it has not
    /// validated (that have not answered a `Syn` of its own): answers to
    /// `Syn`s of newcomers, or of forged sources. Each such answer is also at
    /// most three times the datagram it answers (see the crate docs on
    /// amplification). An answer the budget cannot pay for is not sent, and
    /// is counted in [`crate::Metrics::unvalidated_answers_dropped`].
    pub max_unvalidated_bytes_per_sec: usize,
    /// The most streams open at once, pulled and accepted together; 0 turns
    /// streams off. A node whose delta from a peer was cut to fit the datagram
    /// pulls the rest from that peer on a stream (a TCP connection its caller
    /// opens; see [`crate::Chitchat::poll_stream_open`]), at most one pull at a
    /// time; beyond this many, streams are refused. Each holds at most one
    /// frame (1 MiB) in memory.
    pub max_streams: usize,
    /// A stream is closed this long after it opened, whatever it still had to
    /// do, and after a quarter of it (at least two gossip intervals) without a
    /// byte either way.
    pub stream_timeout: Duration,
    /// Seeds the node's random generator (peer choice, jitter): one seed, one
    /// run. It also seeds the key of the node's address-validation tokens
    /// (see the crate docs on amplification), which a blind spoofer must not
    /// be able to guess: outside tests and simulations it should be
    /// unpredictable (the adapters replace 0 with a random seed).
    pub rng_seed: u64,
}

/// The largest [`Config::max_nodes`]: a node's table numbers its entries
/// in 24 bits (its indexes keep 8 bits of a hash beside each number).
pub const MAX_NODES_LIMIT: usize = 1 << 24;

impl Config {
    /// The smallest accepted [`Config::max_datagram_size`].
    pub const MIN_DATAGRAM_SIZE: usize = 512;
    /// The largest accepted [`Config::max_datagram_size`]: the largest UDP payload
    /// over IPv4.
    pub const MAX_DATAGRAM_SIZE: usize = wire::MAX_DATAGRAM_SIZE;

    /// Settings for a LAN whose path MTU is 1,500 bytes: every datagram fits one
    /// Ethernet frame, so none is ever fragmented.
    pub fn lan() -> Self {
        Config {
            max_datagram_size: 1_400,
            max_key_len: 64,
            // Values too large for a datagram travel on streams.
            max_value_len: 16 * 1_024,
            max_node_name_len: 64,
            max_cluster_id_len: 64,
            max_unvalidated_bytes_per_sec: 64 * 1_024,
            ..Config::default()
        }
    }

    /// Settings for a cluster of processes on one machine in tests: a 100 ms gossip
    /// interval and short grace periods.
    pub fn local_test() -> Self {
        Config {
            gossip_interval: Duration::from_millis(100),
            dead_node_grace_period: Duration::from_secs(5),
            deletion_grace_period: Duration::from_secs(5),
            stream_timeout: Duration::from_secs(5),
            ..Config::default()
        }
    }

    /// Checks every setting and the relations between them.
    pub fn validate(&self) -> Result<(), ConfigError> {
        use ConfigError::*;
        if self.cluster_id.len() > self.max_cluster_id_len {
            return Err(ClusterIdTooLong { len: self.cluster_id.len(), max: self.max_cluster_id_len });
        }
        if self.gossip_interval.is_zero() {
            return Err(ZeroGossipInterval);
        }
        if self.gossip_fanout == 0 {
            return Err(ZeroFanout);
        }
        if !(Self::MIN_DATAGRAM_SIZE..=Self::MAX_DATAGRAM_SIZE).contains(&self.max_datagram_size) {
            return Err(DatagramSizeOutOfRange {
                size: self.max_datagram_size,
                min: Self::MIN_DATAGRAM_SIZE,
                max: Self::MAX_DATAGRAM_SIZE,
            });
        }
        if !(self.phi_threshold.is_finite() && self.phi_threshold > 0.0) {
            return Err(InvalidPhiThreshold(self.phi_threshold));
        }
        if !(2..=crate::failure_detector::MAX_WINDOW).contains(&self.phi_sampling_window) {
            return Err(SamplingWindowOutOfRange(self.phi_sampling_window));
        }
        if !(1..=16).contains(&self.observers) {
            return Err(ObserversOutOfRange(self.observers));
        }
        let min_grace = self.gossip_interval * 4;
        for (name, period) in [
            ("dead_node_grace_period", self.dead_node_grace_period),
            ("deletion_grace_period", self.deletion_grace_period),
        ] {
            if period < min_grace {
                return Err(GracePeriodTooShort { name, period, min: min_grace });
            }
        }
        if self.max_key_len == 0 {
            return Err(ZeroMaxKeyLen);
        }
        if self.max_nodes < 2 {
            return Err(MaxNodesTooSmall(self.max_nodes));
        }
        if self.max_nodes > MAX_NODES_LIMIT {
            return Err(MaxNodesTooLarge(self.max_nodes));
        }
        if self.max_keys_per_node == 0 {
            return Err(ZeroMaxKeysPerNode);
        }
        if self.max_pending_events == 0 || self.max_pending_transmits == 0 {
            return Err(ZeroQueueBound);
        }
        if self.stream_timeout < self.gossip_interval {
            return Err(StreamTimeoutTooShort { timeout: self.stream_timeout, min: self.gossip_interval });
        }
        // The largest key-value section must fit in half a datagram, because a
        // SynAck gives at least half of its room to the delta.
        self.check_one_key_fits(0)
    }
}

impl Config {
    /// How long a node may go without being driven before the gap counts as
    /// a pause of its own (PROTOCOL.md §5.15): a quarter of the shorter grace
    /// period, and at least two gossip intervals. Within it, the cluster
    /// cannot have stopped gossiping a node this one still holds (that waits
    /// half a grace period), so what arrives after the gap is late, not stale;
    /// an overloaded process whose rounds all run late is not paused.
    pub(crate) fn pause_threshold(&self) -> Duration {
        (self.dead_node_grace_period.min(self.deletion_grace_period) / 4).max(self.gossip_interval * 2)
    }

    /// Checks that the largest key-value section still fits in half a datagram
    /// once the sealed envelope's overhead is reserved: run when encryption is
    /// installed.
    pub(crate) fn validate_sealed(&self) -> Result<(), ConfigError> {
        self.check_one_key_fits(wire::SEAL_OVERHEAD)
    }

    /// Checks that the largest key-value section fits in half a datagram that
    /// loses `seal_overhead` bytes to sealing (a SynAck gives at least half of
    /// its room to the delta), or, with streams on, in a stream frame.
    fn check_one_key_fits(&self, seal_overhead: usize) -> Result<(), ConfigError> {
        let needed =
            size::worst_case_key_section_len(self.max_node_name_len, self.max_key_len, self.max_value_len)
                + 4;
        let room =
            size::guaranteed_delta_room(self.max_datagram_size, seal_overhead, self.max_cluster_id_len);
        if needed <= room {
            return Ok(());
        }
        if self.max_streams == 0 {
            return Err(ConfigError::DatagramTooSmallForOneKey { needed, room });
        }
        let frame_room = wire::records_budget(&"x".repeat(self.max_cluster_id_len), wire::SEAL_OVERHEAD);
        if needed > frame_room {
            return Err(ConfigError::FrameTooSmallForOneKey { needed, room: frame_room });
        }
        Ok(())
    }
}

impl Default for Config {
    /// Settings close to chitchat's defaults: a one-second gossip interval, a
    /// fanout of 3, UDP's largest datagram, and grace periods of an hour.
    fn default() -> Self {
        Config {
            cluster_id: "default-cluster".to_string(),
            gossip_interval: Duration::from_secs(1),
            gossip_fanout: 3,
            max_datagram_size: Self::MAX_DATAGRAM_SIZE,
            observers: 3,
            phi_threshold: 8.0,
            phi_sampling_window: 32,
            dead_node_grace_period: Duration::from_secs(3_600),
            deletion_grace_period: Duration::from_secs(3_600),
            max_key_len: 256,
            max_value_len: 16 * 1_024,
            max_keys_per_node: 10_000,
            max_remote_state_bytes: 64 * 1_024 * 1_024,
            max_nodes: 20_000,
            max_node_name_len: 128,
            max_cluster_id_len: 128,
            max_pending_events: 100_000,
            max_pending_transmits: 1_024,
            max_unvalidated_bytes_per_sec: 1_024 * 1_024,
            max_streams: 4,
            stream_timeout: Duration::from_secs(30),
            rng_seed: 0,
        }
    }
}

/// A setting, or a relation between settings, that cannot work.
#[derive(Debug, Error, Clone, PartialEq)]
#[non_exhaustive]
pub enum ConfigError {
    /// `gossip_interval` is zero.
    #[error("gossip_interval must be greater than zero")]
    ZeroGossipInterval,
    /// `gossip_fanout` is zero.
    #[error("gossip_fanout must be at least 1")]
    ZeroFanout,
    /// `stream_timeout` is shorter than a gossip interval.
    #[error("stream_timeout {timeout:?} is shorter than the gossip interval {min:?}")]
    StreamTimeoutTooShort {
        /// The configured timeout.
        timeout: Duration,
        /// The gossip interval.
        min: Duration,
    },
    /// The largest key-value section does not fit a stream frame.
    #[error(
        "a key of max_key_len with a value of max_value_len needs a {needed}-byte section but a \
         stream frame has room for {room}: lower max_value_len"
    )]
    FrameTooSmallForOneKey {
        /// Bytes the largest section needs.
        needed: usize,
        /// Bytes a frame has for it.
        room: usize,
    },
    /// `max_datagram_size` is outside the accepted range.
    #[error("max_datagram_size {size} is outside {min}..={max}")]
    DatagramSizeOutOfRange {
        /// The configured size.
        size: usize,
        /// The smallest accepted.
        min: usize,
        /// The largest accepted.
        max: usize,
    },
    /// The largest key and value, with their node's identity and the envelope,
    /// do not fit in half a datagram.
    #[error(
        "a key of max_key_len with a value of max_value_len needs a {needed}-byte datagram \
         section but only {room} bytes (half of max_datagram_size) are guaranteed: \
         lower max_key_len, max_value_len or max_node_name_len, or raise max_datagram_size"
    )]
    DatagramTooSmallForOneKey {
        /// Bytes the worst-case single key needs.
        needed: usize,
        /// Bytes available to it.
        room: usize,
    },
    /// `phi_threshold` is not a positive finite number.
    #[error("phi_threshold must be a positive finite number, got {0}")]
    InvalidPhiThreshold(f64),
    /// `phi_sampling_window` is below 2 or above 64.
    #[error("phi_sampling_window must be within 2..=64, got {0}")]
    SamplingWindowOutOfRange(usize),
    /// `observers` is 0 or above 16.
    #[error("observers must be within 1..=16, got {0}")]
    ObserversOutOfRange(usize),
    /// A grace period is shorter than four gossip intervals: state would be
    /// collected before gossip could spread the news.
    #[error("{name} ({period:?}) must be at least four gossip intervals ({min:?})")]
    GracePeriodTooShort {
        /// The setting's name.
        name: &'static str,
        /// Its value.
        period: Duration,
        /// The shortest accepted.
        min: Duration,
    },
    /// `max_key_len` is zero.
    #[error("max_key_len must be at least 1")]
    ZeroMaxKeyLen,
    /// `max_nodes` is below 2.
    #[error("max_nodes must be at least 2, got {0}")]
    MaxNodesTooSmall(usize),
    /// `max_nodes` is above [`MAX_NODES_LIMIT`] (a table's slots are
    /// numbered in 24 bits).
    #[error("max_nodes must be at most 16777216, got {0}")]
    MaxNodesTooLarge(usize),
    /// `max_keys_per_node` is zero.
    #[error("max_keys_per_node must be at least 1")]
    ZeroMaxKeysPerNode,
    /// `max_pending_events` or `max_pending_transmits` is zero.
    #[error("max_pending_events and max_pending_transmits must be at least 1")]
    ZeroQueueBound,
    /// The cluster id is longer than `max_cluster_id_len`.
    #[error("cluster_id is {len} bytes, more than max_cluster_id_len ({max})")]
    ClusterIdTooLong {
        /// Its length.
        len: usize,
        /// The limit.
        max: usize,
    },
    /// The node's own name is longer than `max_node_name_len`.
    #[error("the node name is {len} bytes, more than max_node_name_len ({max})")]
    NodeNameTooLong {
        /// Its length.
        len: usize,
        /// The limit.
        max: usize,
    },
    /// The node's own name is empty: no peer would take its identity.
    #[error("the node name is empty")]
    EmptyNodeName,
    /// An initial key-value was refused.
    #[error("initial key-value refused: {0}")]
    InitialKeyValue(#[from] crate::KeyValueError),
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn presets_are_valid() {
        Config::default().validate().unwrap();
        Config::lan().validate().unwrap();
        Config::local_test().validate().unwrap();
    }

    #[test]
    fn bad_settings_are_refused_with_the_right_error() {
        let bad = |f: fn(&mut Config)| {
            let mut config = Config::default();
            f(&mut config);
            config.validate().unwrap_err()
        };
        assert_eq!(bad(|c| c.gossip_interval = Duration::ZERO), ConfigError::ZeroGossipInterval);
        assert_eq!(bad(|c| c.gossip_fanout = 0), ConfigError::ZeroFanout);
        assert!(matches!(bad(|c| c.max_datagram_size = 100), ConfigError::DatagramSizeOutOfRange { .. }));
        assert!(matches!(
            bad(|c| {
                c.max_datagram_size = 1_400;
                c.max_streams = 0;
            }),
            ConfigError::DatagramTooSmallForOneKey { .. }
        ));
        // With streams on, a value too large for a datagram travels on them,
        // up to what a frame holds.
        let mut config = Config { max_datagram_size: 1_400, ..Config::default() };
        config.validate().unwrap();
        config.max_value_len = 2 << 20;
        assert!(matches!(config.validate(), Err(ConfigError::FrameTooSmallForOneKey { .. })));
        assert!(matches!(
            bad(|c| c.stream_timeout = Duration::from_millis(10)),
            ConfigError::StreamTimeoutTooShort { .. }
        ));
        assert!(matches!(bad(|c| c.phi_threshold = f64::NAN), ConfigError::InvalidPhiThreshold(_)));
        assert!(matches!(
            bad(|c| c.dead_node_grace_period = Duration::from_secs(2)),
            ConfigError::GracePeriodTooShort { name: "dead_node_grace_period", .. }
        ));
        assert_eq!(bad(|c| c.phi_sampling_window = 65), ConfigError::SamplingWindowOutOfRange(65));
        assert_eq!(bad(|c| c.observers = 0), ConfigError::ObserversOutOfRange(0));
        assert_eq!(bad(|c| c.max_nodes = 1), ConfigError::MaxNodesTooSmall(1));
        assert_eq!(
            bad(|c| c.max_nodes = MAX_NODES_LIMIT + 1),
            ConfigError::MaxNodesTooLarge(MAX_NODES_LIMIT + 1)
        );
        assert!(Config { max_nodes: MAX_NODES_LIMIT, ..Config::default() }.validate().is_ok());
    }
}
