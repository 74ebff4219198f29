//! Cluster membership and shared per-node key-value state, by gossip.
//!
//! `chitchat-core` is the whole protocol as one sans-IO state machine,
//! [`Chitchat`]: it consumes datagrams and timestamps and produces datagrams,
//! deadlines and [`Event`]s. It does no I/O, reads no clock and spawns nothing, so
//! it runs in any event loop, under any async runtime, or in the deterministic
//! simulator (feature `sim`).
//!
//! Nodes reconcile by Scuttlebutt: a `Syn` carries a digest of what the sender
//! knows, the `SynAck` answers with what the sender lacks and a digest of its own,
//! and the `Ack` closes with what the responder lacks. Liveness comes from a
//! phi-accrual failure detector over heartbeat arrival times. Digests name nodes
//! by 8-byte [`Fingerprint`]s and rotate over a ring when the cluster is too large
//! for one datagram, so every message fits [`Config::max_datagram_size`] at any
//! cluster size. `PROTOCOL.md` in the repository specifies the protocol.
//!
//! # Driving a node
//!
//! ```
//! use std::net::UdpSocket;
//! use std::time::{Duration, Instant};
//! use chitchat_core::{Chitchat, Config, Event, NodeId, Timestamp};
//!
//! # fn main() -> Result<(), Box<dyn std::error::Error>> {
//! let socket = UdpSocket::bind("127.0.0.1:0")?;
//! let start = Instant::now();
//! let now = || Timestamp::from_elapsed(start.elapsed());
//!
//! let self_id = NodeId::new("node-1", 1, socket.local_addr()?);
//! let mut node = Chitchat::new(Config::local_test(), self_id, [("role", "indexer")], now())?;
//! node.set_seed_addrs(["127.0.0.1:7000".parse()?]);
//!
//! let mut buffer = vec![0; Config::MAX_DATAGRAM_SIZE];
//! # let deadline = Instant::now() + Duration::from_millis(300);
//! # while Instant::now() < deadline {
//! // One turn of the loop: send, report, sleep until a datagram or the deadline.
//! while let Some(transmit) = node.poll_transmit() {
//!     let _ = socket.send_to(&transmit.bytes, transmit.to);
//! }
//! while let Some(event) = node.poll_event() {
//!     if let Event::NodeLive(id) = event { println!("{id} is live"); }
//! }
//! let wait = node.poll_timeout().map(|deadline| deadline.saturating_duration_since(now()));
//! socket.set_read_timeout(Some(wait.unwrap_or(Duration::from_secs(1)).max(Duration::from_millis(1))))?;
//! match socket.recv_from(&mut buffer) {
//!     Ok((len, from)) => { let _ = node.handle_datagram(now(), from, &buffer[..len]); }
//!     Err(_) => node.handle_timeout(now()),
//! }
//! # }
//! # Ok(())
//! # }
//! ```
//!
//! This loop leaves out the catch-up streams, which a node opens (over TCP,
//! to a peer's gossip address) when it lags by more than a datagram, and
//! which peers open to it: see [`Chitchat::poll_stream_open`],
//! [`Chitchat::accept_stream`] and the [`stream`] module, or
//! `examples/std_event_loop.rs`. A loop that does not serve them sets
//! [`Config::max_streams`] to 0.
//!
//! # Time, lateness and pauses
//!
//! Time comes in as [`Timestamp`]s from the caller's monotonic clock. If the
//! clock steps back, the node counts the step as no time and carries on.
//! Liveness is judged in the node's own rounds: when a gossip round runs late
//! (the event loop was busy or starved), peers' silence during the lateness is
//! forgiven. A node not driven for longer than a quarter of the shorter grace
//! period (its process was stopped, garbage collection ran long, the machine
//! slept, the clock jumped) takes the gap as its own pause: peers' silence during it is
//! forgiven, and for one gossip interval news that may have waited in the
//! socket since before the pause revives no dead node, brings in no new node,
//! and vouches for no node to peers. See [`Chitchat::handle_timeout`].
//!
//! # Hostile networks
//!
//! Datagrams are untrusted. Decoding never panics; a refused datagram changes
//! nothing and is counted. Answers are limited by what their address has
//! shown (amplification): an address that has not answered a `Syn` of this
//! node, echoing the unguessable token it carried, gets at most three times
//! what it sent, an unsolicited `SynAck` gets an `Ack` no larger than itself,
//! and all of it draws on [`Config::max_unvalidated_bytes_per_sec`]. What a
//! node holds of other nodes' records is bounded by
//! [`Config::max_remote_state_bytes`]. Only a sender that proved its address
//! (it echoed a token, or answered from a validated address) changes what a
//! node holds of a node peers vouched for, and a node relays only nodes
//! vouched for by such senders, and shows its application only those: a
//! blind spoofer's forgeries stay where they land, unseen, and mostly do not
//! land at all. A node refutes claims about
//! itself it never made (a heartbeat, versions or a watermark above its own)
//! from its own state. `PROTOCOL.md` in the repository specifies all of it,
//! and lists what an attacker without the key can still do.
//!
//! # Modules
//!
//! One concept, one module, importing one way: `config`, `time`, `identity`,
//! `keyring` and `error` are leaves; `wire` (messages, envelope layout,
//! codec, size model) touches bytes and nothing else does; `crypto` seals and
//! opens envelopes; `node_state` holds one node's records; `membership` the
//! table of nodes with its indexes and the memory of removed identities;
//! `cluster` what a node knows and how it changes (reconciliation, liveness,
//! refutation); `clock`, `peers`, `outbox`, `leave`, `validation` and `timers`
//! one concern each; [`Chitchat`] ties them together.
//!
//! # Bounds
//!
//! Every map and queue is bounded by a [`Config`] setting: tracked nodes by
//! `max_nodes`, each node's records by `max_keys_per_node`, pending events by
//! `max_pending_events`, pending datagrams by `max_pending_transmits`, removed
//! identities by `max_nodes`, failure-detector windows by `phi_sampling_window`.

#![forbid(unsafe_code)]
#![warn(missing_docs, unreachable_pub, missing_debug_implementations)]
#![cfg_attr(docsrs, feature(doc_cfg))]

mod chitchat;
mod clock;
mod cluster;
mod config;
pub mod crypto;
mod error;
mod events;
mod failure_detector;
mod identity;
mod keyring;
mod leave;
mod membership;
mod metrics;
mod node_state;
mod outbox;
mod peers;
#[cfg(feature = "sim")]
#[cfg_attr(docsrs, doc(cfg(feature = "sim")))]
pub mod sim;
mod snapshot;
pub mod stream;
#[cfg(feature = "testing")]
#[cfg_attr(docsrs, doc(cfg(feature = "testing")))]
pub mod testing;
mod time;
mod timers;
mod validation;
// The wire format is public only for tests and fuzzers (feature `testing`):
// it is not part of the stable API.
#[cfg(feature = "testing")]
#[cfg_attr(docsrs, doc(cfg(feature = "testing")))]
pub mod wire;
#[cfg(not(feature = "testing"))]
#[allow(unreachable_pub)]
mod wire;

pub use chitchat::Chitchat;
pub use cluster::ReadyPredicate;
/// The string of [`Event`]'s keys and values: inline up to 24 bytes (from
/// the `compact_str` crate).
pub use compact_str::CompactString;
pub use config::{Config, ConfigError, MAX_NODES_LIMIT};
pub use crypto::EncryptionMode;
pub use error::{DatagramError, KeyValueError, Violation};
pub use events::Event;
pub use identity::{Fingerprint, NodeId};
pub use keyring::{KEY_LEN, KeyId, Keyring, KeyringError, SecretKey, SecretKeyParseError};
pub use membership::NodeStatus;
pub use metrics::{Metrics, RejectedCounts, StreamCounts};
pub use node_state::{NodeState, RECORD_OVERHEAD, RESERVED_PREFIX, ValueStatus, VersionedValue};
pub use outbox::Transmit;
pub use snapshot::{ClusterSnapshot, NodeSnapshot};
pub use stream::{StreamError, StreamId, StreamOpen, StreamSend};
pub use time::Timestamp;
