//! Run a [chitchat](chitchat_core) node on async-std.
//!
//! **async-std is discontinued upstream** (RUSTSEC-2025-0052) and gets no more
//! fixes; this adapter stays for applications that still use it. New code should
//! prefer `chitchat-smol` (same API, same I/O path) or `chitchat-tokio`.
//!
//! The node owns a UDP socket, a TCP listener on the same address (peers pull
//! large states from it, see `Chitchat::poll_stream_open`), a timer and one task spawned with
//! `async_std::task::spawn`; the application talks to it through a cloneable
//! [`ChitchatHandle`]. The socket, timer and DNS resolution are
//! `chitchat-driver`'s async-io path (the reactor async-std itself runs on),
//! shared with `chitchat-smol`: the two adapters differ only in how they spawn
//! ([`AsyncStdRuntime`]).
//!
//! ```no_run
//! use chitchat_async_std::{Config, NodeConfig};
//!
//! # fn main() -> Result<(), Box<dyn std::error::Error>> {
//! async_std::task::block_on(async {
//!     let config = NodeConfig::new("node-1", "127.0.0.1:7001".parse()?, Config::lan())
//!         .with_seed("127.0.0.1:7000");
//!     let node = chitchat_async_std::spawn(config).await?;
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

/// Starts a node on async-std: binds its socket, resolves its seeds and spawns its
/// task with `async_std::task::spawn`.
pub async fn spawn(config: NodeConfig) -> Result<ChitchatHandle, StartError> {
    chitchat_driver::spawn(runtime(), config).await
}

/// async-std as a [`Runtime`], for `chitchat_driver`'s functions.
pub fn runtime() -> Arc<dyn Runtime> {
    Arc::new(async_io::AsyncIoRuntime(AsyncStdSpawner))
}

/// async-io's socket, timer and resolver (shared with the other async-io
/// adapter, in `chitchat_driver::async_io`), and async-std's executor.
pub type AsyncStdRuntime = async_io::AsyncIoRuntime<AsyncStdSpawner>;

/// Spawns on async-std's executor.
#[derive(Clone, Copy, Debug, Default)]
pub struct AsyncStdSpawner;

impl async_io::Spawn for AsyncStdSpawner {
    fn spawn(&self, future: BoxFuture<()>) {
        drop(async_std::task::spawn(future));
    }
}
