//! Run a [chitchat](chitchat_core) node on smol.
//!
//! The node owns a UDP socket, a TCP listener on the same address (peers pull
//! large states from it, see `Chitchat::poll_stream_open`), a timer and one task on smol's global executor;
//! the application talks to it through a cloneable [`ChitchatHandle`]. The socket,
//! timer and DNS resolution are `chitchat-driver`'s async-io path, shared with
//! `chitchat-async-std`; this crate only spawns on smol ([`SmolRuntime`]).
//! `chitchat-tokio` offers the same API.
//!
//! ```no_run
//! use chitchat_smol::{Config, NodeConfig};
//!
//! # fn main() -> Result<(), Box<dyn std::error::Error>> {
//! smol::block_on(async {
//!     let config = NodeConfig::new("node-1", "127.0.0.1:7001".parse()?, Config::lan())
//!         .with_seed("127.0.0.1:7000");
//!     let node = chitchat_smol::spawn(config).await?;
//!     node.set("role", "indexer").await?;
//!     node.leave().await?;
//!     node.shutdown().await?;
//!     Ok(())
//! })
//! # }
//! ```

#![forbid(unsafe_code)]
#![warn(missing_docs, unreachable_pub, missing_debug_implementations)]

use std::sync::Arc;

use chitchat_driver::{BoxFuture, async_io};

/// The adapters' common API: the core's and the driver's types, flat
/// (`Config`, `NodeConfig`, `ChitchatHandle`, `NodeStatus`, ...), the `keys`
/// module, and the `chitchat_core` and `futures_lite` crates.
pub use chitchat_driver::api::*;

/// Starts a node on smol: binds its socket, resolves its seeds and spawns its
/// task on smol's global executor.
pub async fn spawn(config: NodeConfig) -> Result<ChitchatHandle, StartError> {
    chitchat_driver::spawn(runtime(), config).await
}

/// smol as a [`Runtime`], for `chitchat_driver`'s functions.
pub fn runtime() -> Arc<dyn Runtime> {
    Arc::new(async_io::AsyncIoRuntime(SmolSpawner))
}

/// async-io's socket, timer and resolver (shared with the other async-io
/// adapter, in `chitchat_driver::async_io`), and smol's global executor.
pub type SmolRuntime = async_io::AsyncIoRuntime<SmolSpawner>;

/// Spawns on smol's global executor.
#[derive(Clone, Copy, Debug, Default)]
pub struct SmolSpawner;

impl async_io::Spawn for SmolSpawner {
    fn spawn(&self, future: BoxFuture<()>) {
        smol::spawn(future).detach();
    }
}
