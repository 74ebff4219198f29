//! Run a [chitchat](chitchat_core) node on tokio.
//!
//! The node owns a UDP socket, a TCP listener on the same address (peers pull
//! large states from it, see `Chitchat::poll_stream_open`), a timer and one task on the current tokio runtime;
//! the application talks to it through a cloneable [`ChitchatHandle`]. The
//! protocol lives in `chitchat-core` and the node task in `chitchat-driver`: this
//! crate only plugs tokio's socket, timer, spawn and DNS resolver in
//! ([`TokioRuntime`]). `chitchat-smol` and `chitchat-async-std` offer the same API.
//!
//! Needs tokio's `net`, `time` and `rt` features, and a runtime with time and I/O
//! enabled (`Builder::enable_all`, or `#[tokio::main]`).
//!
//! ```no_run
//! use chitchat_tokio::{Config, NodeConfig};
//! use chitchat_tokio::futures_lite::StreamExt;
//!
//! # async fn example() -> Result<(), Box<dyn std::error::Error>> {
//! let config = NodeConfig::new("node-1", "127.0.0.1:7001".parse()?, Config::lan())
//!     .with_seed("seed.example.com:7000")
//!     .with_key_value("role", "indexer");
//! let node = chitchat_tokio::spawn(config).await?;
//! let mut live = node.watch_live_nodes();
//! while let Some(nodes) = live.next().await {
//!     println!("{} live nodes", nodes.len());
//!     # break;
//! }
//! node.set("status", "serving").await?;
//! node.leave().await?;
//! node.shutdown().await?;
//! # Ok(())
//! # }
//! ```

#![forbid(unsafe_code)]
#![warn(missing_docs, unreachable_pub, missing_debug_implementations)]

use std::fmt;
use std::io;
use std::net::SocketAddr;
use std::pin::Pin;
use std::sync::Arc;
use std::task::{Context, Poll, ready};
use std::time::Instant;

use chitchat_driver::{BoxFuture, TcpListener, TcpStream, Timer, UdpSocket};
use tokio::io::{AsyncRead, AsyncWrite, ReadBuf};
use tokio::runtime::Handle;

/// The adapters' common API: the core's and the driver's types, flat
/// (`Config`, `NodeConfig`, `ChitchatHandle`, `NodeStatus`, ...), the `keys`
/// module, and the `chitchat_core` and `futures_lite` crates.
pub use chitchat_driver::api::*;

/// Starts a node on the current tokio runtime: binds its socket, resolves its
/// seeds and spawns its task.
///
/// # Panics
///
/// Outside a tokio runtime, like `tokio::spawn`.
pub async fn spawn(config: NodeConfig) -> Result<ChitchatHandle, StartError> {
    chitchat_driver::spawn(runtime(), config).await
}

/// The current tokio runtime as a [`Runtime`], for `chitchat_driver`'s functions.
///
/// # Panics
///
/// Outside a tokio runtime.
pub fn runtime() -> Arc<dyn Runtime> {
    Arc::new(TokioRuntime::current())
}

/// Tokio's sockets, timer, spawn and DNS resolver.
#[derive(Clone, Debug)]
pub struct TokioRuntime {
    handle: Handle,
}

impl TokioRuntime {
    /// The runtime this is called from.
    ///
    /// # Panics
    ///
    /// Outside a tokio runtime.
    pub fn current() -> Self {
        TokioRuntime { handle: Handle::current() }
    }

    /// A given runtime.
    pub fn from_handle(handle: Handle) -> Self {
        TokioRuntime { handle }
    }
}

impl Runtime for TokioRuntime {
    fn bind(&self, addr: SocketAddr) -> io::Result<Box<dyn UdpSocket>> {
        let socket = std::net::UdpSocket::bind(addr)?;
        socket.set_nonblocking(true)?;
        let _runtime = self.handle.enter();
        Ok(Box::new(TokioSocket(tokio::net::UdpSocket::from_std(socket)?)))
    }

    fn listen(&self, addr: SocketAddr) -> io::Result<Box<dyn TcpListener>> {
        let listener = std::net::TcpListener::bind(addr)?;
        listener.set_nonblocking(true)?;
        let _runtime = self.handle.enter();
        Ok(Box::new(TokioListener(tokio::net::TcpListener::from_std(listener)?)))
    }

    fn connect(&self, addr: SocketAddr) -> BoxFuture<io::Result<Box<dyn TcpStream>>> {
        Box::pin(async move {
            let stream = tokio::net::TcpStream::connect(addr).await?;
            Ok(Box::new(TokioStream(stream)) as Box<dyn TcpStream>)
        })
    }

    fn new_timer(&self, deadline: Instant) -> Pin<Box<dyn Timer>> {
        let _runtime = self.handle.enter();
        Box::pin(TokioTimer(Box::pin(tokio::time::sleep_until(deadline.into()))))
    }

    fn spawn(&self, future: BoxFuture<()>) {
        drop(self.handle.spawn(future));
    }

    fn resolve(&self, host_and_port: String) -> BoxFuture<io::Result<Vec<SocketAddr>>> {
        Box::pin(async move { Ok(tokio::net::lookup_host(host_and_port).await?.collect()) })
    }
}

#[derive(Debug)]
struct TokioSocket(tokio::net::UdpSocket);

impl UdpSocket for TokioSocket {
    fn poll_recv_from(
        &self,
        cx: &mut Context<'_>,
        buffer: &mut [u8],
    ) -> Poll<io::Result<(usize, SocketAddr)>> {
        let mut buffer = ReadBuf::new(buffer);
        let from = ready!(self.0.poll_recv_from(cx, &mut buffer))?;
        Poll::Ready(Ok((buffer.filled().len(), from)))
    }

    fn poll_send_to(&self, cx: &mut Context<'_>, bytes: &[u8], to: SocketAddr) -> Poll<io::Result<usize>> {
        self.0.poll_send_to(cx, bytes, to)
    }

    fn local_addr(&self) -> io::Result<SocketAddr> {
        self.0.local_addr()
    }
}

#[derive(Debug)]
struct TokioListener(tokio::net::TcpListener);

impl TcpListener for TokioListener {
    fn poll_accept(&self, cx: &mut Context<'_>) -> Poll<io::Result<(Box<dyn TcpStream>, SocketAddr)>> {
        let (stream, from) = ready!(self.0.poll_accept(cx))?;
        Poll::Ready(Ok((Box::new(TokioStream(stream)), from)))
    }
}

#[derive(Debug)]
struct TokioStream(tokio::net::TcpStream);

impl TcpStream for TokioStream {
    fn poll_read(&mut self, cx: &mut Context<'_>, buffer: &mut [u8]) -> Poll<io::Result<usize>> {
        let mut buffer = ReadBuf::new(buffer);
        ready!(Pin::new(&mut self.0).poll_read(cx, &mut buffer))?;
        Poll::Ready(Ok(buffer.filled().len()))
    }

    fn poll_write(&mut self, cx: &mut Context<'_>, bytes: &[u8]) -> Poll<io::Result<usize>> {
        Pin::new(&mut self.0).poll_write(cx, bytes)
    }

    fn poll_close(&mut self, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        Pin::new(&mut self.0).poll_shutdown(cx)
    }
}

struct TokioTimer(Pin<Box<tokio::time::Sleep>>);

impl fmt::Debug for TokioTimer {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_tuple("TokioTimer").field(&self.0.deadline()).finish()
    }
}

impl Timer for TokioTimer {
    fn reset(mut self: Pin<&mut Self>, deadline: Instant) {
        self.0.as_mut().reset(deadline.into());
    }

    fn poll(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<()> {
        self.0.as_mut().poll(cx)
    }
}
