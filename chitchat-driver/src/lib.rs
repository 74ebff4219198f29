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

#![forbid(unsafe_code)]
#![warn(missing_docs, unreachable_pub, missing_debug_implementations)]

pub mod api;
#[cfg(feature = "async-io")]
pub mod async_io;
mod config;
mod error;
mod handle;
pub mod keys;
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
pub use runtime::{BoxFuture, Runtime, Timer, UdpSocket, sleep};
pub use streams::{KeyChange, Lagged, NodeSet, ReadyChange, Subscription, WatchStream};
