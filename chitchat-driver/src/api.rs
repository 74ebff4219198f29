//! The one flat list of names every runtime adapter re-exports
//! (`pub use chitchat_driver::api::*;`), so that applications write
//! `chitchat_tokio::Config` or `chitchat_smol::NodeStatus`, whichever adapter
//! they use. Written once here, never copied into the adapters.
//!
//! It holds the core's types an application meets (configuration, identities,
//! states, events, keys, metrics, snapshots, time), the driver's (node
//! configuration, handle, subscriptions, errors), the `keys` module for key
//! files, and the `chitchat_core` and `futures_lite` crates themselves. Each
//! adapter adds its own `spawn` and `runtime`.

pub use chitchat_core::{
    Chitchat, ClusterSnapshot, Config, ConfigError, DatagramError, EncryptionMode, Event, KEY_LEN, KeyId,
    KeyValueError, Keyring, KeyringError, Metrics, NodeId, NodeSnapshot, NodeState, NodeStatus,
    RejectedCounts, SecretKey, SecretKeyParseError, Timestamp, ValueStatus, VersionedValue,
};

pub use crate::{
    ChitchatHandle, CommandError, DriverMetrics, KeyChange, Lagged, NodeConfig, NodeMetrics, NodeSet,
    ReadyChange, Runtime, StartError, StopReason, Subscription, WatchStream, chitchat_core, futures_lite,
    generation_from_clock, keys,
};
