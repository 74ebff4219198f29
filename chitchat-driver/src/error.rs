//! The driver's errors, one enum per boundary: starting a node, commanding it,
//! and why it stopped.

use std::io;
use std::net::SocketAddr;
use std::sync::Arc;

use chitchat_core::{ConfigError, KeyValueError, KeyringError};
use thiserror::Error;

/// Why a node could not start. Nothing was left running.
#[derive(Debug, Error)]
#[non_exhaustive]
pub enum StartError {
    /// The protocol settings, the name or an initial key-value were refused.
    #[error("invalid configuration: {0}")]
    Config(#[from] ConfigError),
    /// The UDP socket could not be bound.
    #[error("cannot bind UDP socket on {addr}: {source}")]
    Bind {
        /// The address asked for.
        addr: SocketAddr,
        /// The system's error.
        source: io::Error,
    },
    /// The encryption settings were refused (a mode that seals, without keys).
    #[error("invalid encryption settings: {0}")]
    Keyring(#[from] KeyringError),
    /// No nonce salt could be drawn from the operating system's random source.
    #[error("cannot draw random bytes from the operating system: {0}")]
    Entropy(String),
}

/// Why a command sent through a [`crate::ChitchatHandle`] failed.
#[derive(Debug, Error, Clone, PartialEq, Eq)]
#[non_exhaustive]
pub enum CommandError {
    /// The core refused the key or value; the node's state did not change.
    #[error(transparent)]
    KeyValue(#[from] KeyValueError),
    /// The core refused a change of keys or encryption mode; nothing changed.
    #[error(transparent)]
    Keyring(#[from] KeyringError),
    /// The node's task has stopped (see [`crate::ChitchatHandle::stop_reason`]).
    #[error("the node has stopped")]
    Stopped,
}

/// Why a node's task stopped.
#[derive(Debug, Error, Clone)]
#[non_exhaustive]
pub enum StopReason {
    /// [`crate::ChitchatHandle::shutdown`] was called.
    #[error("shut down")]
    Shutdown,
    /// Every handle was dropped.
    #[error("every handle was dropped")]
    HandlesDropped,
    /// The socket failed for good (closed, or nothing but errors).
    #[error("the UDP socket failed: {0}")]
    SocketClosed(Arc<io::Error>),
}
