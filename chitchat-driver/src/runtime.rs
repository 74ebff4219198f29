//! The tiny trait an async runtime implements to run a node: a UDP socket, a
//! TCP listener and connections (the catch-up streams), a timer, a way to
//! spawn a task and a DNS resolver.
//!
//! Modelled on quinn's `Runtime`: each adapter crate implements it in about a
//! hundred lines, and everything else (the node task, the handle, the streams) is
//! written once, in this crate.

use std::fmt;
use std::future::Future;
use std::io;
use std::net::SocketAddr;
use std::pin::Pin;
use std::sync::Arc;
use std::task::{Context, Poll};
use std::time::{Duration, Instant};

/// A boxed, sendable future.
pub type BoxFuture<T> = Pin<Box<dyn Future<Output = T> + Send + 'static>>;

/// What the node task needs from an async runtime.
pub trait Runtime: Send + Sync + fmt::Debug + 'static {
    /// Binds a non-blocking UDP socket registered with the runtime's reactor.
    /// Called from within the runtime (inside an `async` function).
    fn bind(&self, addr: SocketAddr) -> io::Result<Box<dyn UdpSocket>>;

    /// Binds a non-blocking TCP listener registered with the runtime's reactor:
    /// where peers open streams to pull state from this node.
    fn listen(&self, addr: SocketAddr) -> io::Result<Box<dyn TcpListener>>;

    /// Opens a TCP connection to `addr`.
    fn connect(&self, addr: SocketAddr) -> BoxFuture<io::Result<Box<dyn TcpStream>>>;

    /// A timer that fires at `deadline`, and can be moved to another deadline.
    fn new_timer(&self, deadline: Instant) -> Pin<Box<dyn Timer>>;

    /// Runs `future` to completion in the background (detached).
    fn spawn(&self, future: BoxFuture<()>);

    /// Resolves `host:port` by DNS, without blocking the runtime's threads.
    fn resolve(&self, host_and_port: String) -> BoxFuture<io::Result<Vec<SocketAddr>>>;
}

/// A bound, non-blocking UDP socket.
pub trait UdpSocket: Send + Sync + fmt::Debug {
    /// Receives one datagram into `buffer`: its length and sender. A datagram
    /// longer than `buffer` is truncated.
    fn poll_recv_from(
        &self,
        cx: &mut Context<'_>,
        buffer: &mut [u8],
    ) -> Poll<io::Result<(usize, SocketAddr)>>;

    /// Sends one datagram to `to`; `Pending` while the socket's send buffer is full.
    fn poll_send_to(&self, cx: &mut Context<'_>, bytes: &[u8], to: SocketAddr) -> Poll<io::Result<usize>>;

    /// The address the socket is bound to (with the port the system chose for port 0).
    fn local_addr(&self) -> io::Result<SocketAddr>;
}

/// A bound, non-blocking TCP listener.
pub trait TcpListener: Send + Sync + fmt::Debug {
    /// Accepts one connection: the stream and the peer's address.
    fn poll_accept(&self, cx: &mut Context<'_>) -> Poll<io::Result<(Box<dyn TcpStream>, SocketAddr)>>;
}

/// A connected, non-blocking TCP stream.
pub trait TcpStream: Send + fmt::Debug {
    /// Reads into `buffer`; `Ok(0)` at the end of the stream.
    fn poll_read(&mut self, cx: &mut Context<'_>, buffer: &mut [u8]) -> Poll<io::Result<usize>>;

    /// Writes some of `bytes`; returns how many.
    fn poll_write(&mut self, cx: &mut Context<'_>, bytes: &[u8]) -> Poll<io::Result<usize>>;

    /// Flushes and shuts the writing half down (the peer reads the end of the stream).
    fn poll_close(&mut self, cx: &mut Context<'_>) -> Poll<io::Result<()>>;
}

/// A resettable timer, polled by the node task.
pub trait Timer: Send + fmt::Debug {
    /// Moves the deadline (earlier or later).
    fn reset(self: Pin<&mut Self>, deadline: Instant);

    /// `Ready` once the deadline has passed.
    fn poll(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<()>;
}

/// Sleeps for `duration` on `runtime`'s timer.
pub async fn sleep(runtime: &Arc<dyn Runtime>, duration: Duration) {
    let mut timer = runtime.new_timer(Instant::now() + duration);
    std::future::poll_fn(|cx| timer.as_mut().poll(cx)).await
}
