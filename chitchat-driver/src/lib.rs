//! The runtime-agnostic driver shared by chitchat's runtime adapters.
//!
//! [`chitchat_core`] is the protocol as a sans-IO state machine. This crate runs
//! one node of it on any async runtime that implements the small [`Runtime`]
//! trait (a UDP socket, a timer, spawn, DNS resolution): [`spawn`] binds the
//! socket, resolves the seeds and starts one task that feeds the core with
//! datagrams (stamped with their arrival time) and deadlines, sends what it emits
//! and publishes its events; a cloneable [`ChitchatHandle`] sets keys, reads
//! snapshots, watches the live and ready nodes and subscribes to key changes.
//!
//! Applications use an adapter crate, which plugs its runtime in and re-exports
//! this API: `chitchat-tokio`, `chitchat-smol` or `chitchat-async-std`.
//!
//! # Features
//!
//! - `async-io`: the socket, timer and DNS resolution on `async-io`, shared by
//!   the smol and async-std adapters ([`async_io`]).
//! - `metrics`: publishes each node's counters and gauges through the
//!   [`metrics`](https://docs.rs/metrics) facade, to whatever recorder the
//!   application installed (a Prometheus exporter, ...). Each adapter forwards
//!   a feature of the same name.
//!
//! # Metrics
//!
//! With the `metrics` feature, the node task publishes these once a gossip
//! interval, and once more when it stops, each with the label `node` (the
//! node's name). Counters are absolute (the totals since the node started).
//! Without the feature, the same numbers are read with
//! [`ChitchatHandle::metrics`].
//!
//! | name | kind | what |
//! |---|---|---|
//! | `chitchat_datagrams_received_total` | counter | datagrams received |
//! | `chitchat_bytes_received_total` | counter | bytes of datagrams received |
//! | `chitchat_datagrams_sent_total` | counter | datagrams sent |
//! | `chitchat_bytes_sent_total` | counter | bytes of datagrams sent |
//! | `chitchat_syns_received_total` | counter | `Syn` messages received |
//! | `chitchat_syn_acks_received_total` | counter | `SynAck` messages received |
//! | `chitchat_acks_received_total` | counter | `Ack` messages received |
//! | `chitchat_bad_cluster_received_total` | counter | `BadCluster` answers received |
//! | `chitchat_bad_cluster_sent_total` | counter | `BadCluster` answers sent |
//! | `chitchat_gossip_rounds_total` | counter | gossip rounds run |
//! | `chitchat_quiet_rounds_total` | counter | gossip rounds without news (one handshake) |
//! | `chitchat_pings_sent_total` | counter | pings sent to this node's subjects |
//! | `chitchat_pongs_received_total` | counter | pongs that answered the last Ping to a subject |
//! | `chitchat_pongs_sent_total` | counter | pings answered with a Pong |
//! | `chitchat_probes_ignored_total` | counter | pings for another identity, Pongs answering nothing |
//! | `chitchat_accusations_total` | counter | subjects this node accused |
//! | `chitchat_accusations_refuted_total` | counter | times this node refuted an accusation of it |
//! | `chitchat_datagrams_rejected_total` | counter | datagrams refused, all reasons (per reason: `metrics().core.rejected`) |
//! | `chitchat_sections_ignored_total` | counter | delta sections ignored |
//! | `chitchat_sections_over_limit_total` | counter | delta sections refused: their node name is too long |
//! | `chitchat_records_over_limit_total` | counter | records skipped: a key or value over its limit, or past `max_keys_per_node` |
//! | `chitchat_records_over_budget_total` | counter | records skipped: the other nodes' state would exceed `max_remote_state_bytes` |
//! | `chitchat_sections_unproven_total` | counter | delta sections about a node vouched for, from a sender that proved nothing: only the heartbeat taken |
//! | `chitchat_nodes_refused_total` | counter | nodes refused (`max_nodes` reached) |
//! | `chitchat_nodes_evicted_total` | counter | nodes not vouched for (or only heard of, never from), forgotten when the table was full to make room for one vouched for |
//! | `chitchat_fingerprint_collisions_total` | counter | identities refused for a fingerprint collision |
//! | `chitchat_stale_sections_total` | counter | delta sections older than what is held |
//! | `chitchat_events_dropped_total` | counter | events dropped from a full queue |
//! | `chitchat_transmits_dropped_total` | counter | datagrams dropped from a full queue |
//! | `chitchat_partial_digests_sent_total` | counter | digests covering part of the ring |
//! | `chitchat_deltas_truncated_total` | counter | deltas cut to fit a datagram |
//! | `chitchat_resets_applied_total` | counter | peers' states replaced wholesale |
//! | `chitchat_pauses_total` | counter | pauses of this node noticed |
//! | `chitchat_unvalidated_answers_total` | counter | answers sent to addresses not validated |
//! | `chitchat_unvalidated_bytes_sent_total` | counter | bytes of those answers |
//! | `chitchat_unvalidated_answers_dropped_total` | counter | answers to addresses not validated not sent (budget spent) |
//! | `chitchat_unsolicited_syn_acks_total` | counter | `SynAck`s that answered no `Syn` of this node |
//! | `chitchat_refutations_total` | counter | claims about this node it never made, refuted (a heartbeat, versions or a watermark above its own) |
//! | `chitchat_unrefutable_claims_total` | counter | such claims too close to the counters' limit (2⁶²) to refute: restart the node |
//! | `chitchat_streams_opened_total` | counter | streams this node opened to pull what did not fit a datagram |
//! | `chitchat_streams_accepted_total` | counter | streams peers opened to pull from this node, taken |
//! | `chitchat_streams_refused_total` | counter | streams refused (`max_streams` open, streams off, node not running) |
//! | `chitchat_streams_completed_total` | counter | streams whose exchange ended (`Done`) |
//! | `chitchat_streams_failed_total` | counter | streams that ended early: a refused frame, a timeout, a close |
//! | `chitchat_streams_timed_out_total` | counter | streams ended by their deadline or idleness (also failed) |
//! | `chitchat_stream_frames_rejected_total` | counter | stream frames refused: the stream ends (also failed) |
//! | `chitchat_stream_frames_sent_total` | counter | stream frames sent |
//! | `chitchat_stream_frames_received_total` | counter | stream frames received and accepted |
//! | `chitchat_stream_bytes_sent_total` | counter | bytes sent on streams |
//! | `chitchat_stream_bytes_received_total` | counter | bytes received on streams |
//! | `chitchat_send_errors_total` | counter | failed sends (driver) |
//! | `chitchat_recv_errors_total` | counter | transient receive errors (driver) |
//! | `chitchat_seed_resolution_failures_total` | counter | failed DNS resolutions of seeds (driver) |
//! | `chitchat_live_nodes` | gauge | nodes seen live, this one included |
//! | `chitchat_ready_nodes` | gauge | nodes seen ready |
//! | `chitchat_dead_nodes` | gauge | nodes seen dead |
//! | `chitchat_tracked_nodes` | gauge | nodes tracked, whatever their status |

#![forbid(unsafe_code)]
#![warn(missing_docs, unreachable_pub, missing_debug_implementations)]
#![cfg_attr(docsrs, feature(doc_cfg))]

pub mod api;
#[cfg(feature = "async-io")]
#[cfg_attr(docsrs, doc(cfg(feature = "async-io")))]
pub mod async_io;
mod config;
mod connections;
mod error;
mod handle;
pub mod keys;
#[cfg(feature = "metrics")]
mod metrics_facade;
mod node;
mod publish;
mod runtime;
mod seeds;
mod streams;

pub use chitchat_core;
pub use config::{NodeConfig, generation_from_clock};
pub use error::{CommandError, StartError, StopReason};
pub use futures_lite;
pub use handle::{ChitchatHandle, DriverMetrics, NodeMetrics};
pub use node::spawn;
pub use runtime::{BoxFuture, Runtime, TcpListener, TcpStream, Timer, UdpSocket, sleep};
pub use streams::{KeyChange, Lagged, NodeSet, ReadyChange, Subscription, WatchStream};
