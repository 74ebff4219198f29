//! The sockets, timer and DNS resolution on [`async_io`], written once for the two
//! runtimes that sit on it: smol and async-std. [`AsyncIoRuntime`] is the whole
//! [`Runtime`] but for spawning, which each adapter supplies
//! through [`Spawn`].

use std::fmt;
use std::io::{self, Read, Write};
use std::net::{Shutdown, SocketAddr, ToSocketAddrs};
use std::pin::Pin;
use std::task::{Context, Poll, ready};
use std::time::Instant;

use async_io::Async;

use crate::runtime::{BoxFuture, Runtime, TcpListener, TcpStream, Timer, UdpSocket};

/// How an async-io based runtime spawns the node's task.
pub trait Spawn: std::fmt::Debug + Send + Sync + 'static {
    /// Runs `future` to completion in the background.
    fn spawn(&self, future: BoxFuture<()>);
}

/// A [`Runtime`] on async-io's socket, timer and resolver, spawning with `S`.
#[derive(Clone, Copy, Debug, Default)]
pub struct AsyncIoRuntime<S>(pub S);

impl<S: Spawn> Runtime for AsyncIoRuntime<S> {
    fn bind(&self, addr: SocketAddr) -> io::Result<Box<dyn UdpSocket>> {
        bind(addr)
    }

    fn listen(&self, addr: SocketAddr) -> io::Result<Box<dyn TcpListener>> {
        listen(addr)
    }

    fn connect(&self, addr: SocketAddr) -> BoxFuture<io::Result<Box<dyn TcpStream>>> {
        connect(addr)
    }

    fn new_timer(&self, deadline: Instant) -> Pin<Box<dyn Timer>> {
        new_timer(deadline)
    }

    fn spawn(&self, future: BoxFuture<()>) {
        self.0.spawn(future);
    }

    fn resolve(&self, host_and_port: String) -> BoxFuture<io::Result<Vec<SocketAddr>>> {
        resolve(host_and_port)
    }
}

/// Binds a UDP socket registered with async-io's reactor.
pub fn bind(addr: SocketAddr) -> io::Result<Box<dyn UdpSocket>> {
    Ok(Box::new(AsyncIoSocket(Async::<std::net::UdpSocket>::bind(addr)?)))
}

/// Binds a TCP listener registered with async-io's reactor.
pub fn listen(addr: SocketAddr) -> io::Result<Box<dyn TcpListener>> {
    Ok(Box::new(AsyncIoListener(Async::<std::net::TcpListener>::bind(addr)?)))
}

/// Opens a TCP connection on async-io's reactor.
pub fn connect(addr: SocketAddr) -> BoxFuture<io::Result<Box<dyn TcpStream>>> {
    Box::pin(async move {
        let stream = Async::<std::net::TcpStream>::connect(addr).await?;
        Ok(Box::new(AsyncIoStream(stream)) as Box<dyn TcpStream>)
    })
}

/// An async-io timer that fires at `deadline`.
pub fn new_timer(deadline: Instant) -> Pin<Box<dyn Timer>> {
    Box::pin(AsyncIoTimer(async_io::Timer::at(deadline)))
}

/// Resolves `host:port` on the `blocking` thread pool (the system resolver blocks).
pub fn resolve(host_and_port: String) -> BoxFuture<io::Result<Vec<SocketAddr>>> {
    Box::pin(blocking::unblock(move || host_and_port.to_socket_addrs().map(Iterator::collect)))
}

/// A UDP socket on async-io.
struct AsyncIoSocket(Async<std::net::UdpSocket>);

impl fmt::Debug for AsyncIoSocket {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_tuple("AsyncIoSocket").field(self.0.get_ref()).finish()
    }
}

impl UdpSocket for AsyncIoSocket {
    fn poll_recv_from(
        &self,
        cx: &mut Context<'_>,
        buffer: &mut [u8],
    ) -> Poll<io::Result<(usize, SocketAddr)>> {
        loop {
            match self.0.get_ref().recv_from(buffer) {
                Err(error) if error.kind() == io::ErrorKind::WouldBlock => {}
                result => return Poll::Ready(result),
            }
            ready!(self.0.poll_readable(cx))?;
        }
    }

    fn poll_send_to(&self, cx: &mut Context<'_>, bytes: &[u8], to: SocketAddr) -> Poll<io::Result<usize>> {
        loop {
            match self.0.get_ref().send_to(bytes, to) {
                Err(error) if error.kind() == io::ErrorKind::WouldBlock => {}
                result => return Poll::Ready(result),
            }
            ready!(self.0.poll_writable(cx))?;
        }
    }

    fn local_addr(&self) -> io::Result<SocketAddr> {
        self.0.get_ref().local_addr()
    }
}

/// A TCP listener on async-io.
#[derive(Debug)]
struct AsyncIoListener(Async<std::net::TcpListener>);

impl TcpListener for AsyncIoListener {
    fn poll_accept(&self, cx: &mut Context<'_>) -> Poll<io::Result<(Box<dyn TcpStream>, SocketAddr)>> {
        loop {
            match self.0.get_ref().accept() {
                Err(error) if error.kind() == io::ErrorKind::WouldBlock => {}
                Err(error) => return Poll::Ready(Err(error)),
                Ok((stream, from)) => {
                    let stream = Async::new(stream)?;
                    return Poll::Ready(Ok((Box::new(AsyncIoStream(stream)), from)));
                }
            }
            ready!(self.0.poll_readable(cx))?;
        }
    }
}

/// A TCP stream on async-io.
#[derive(Debug)]
struct AsyncIoStream(Async<std::net::TcpStream>);

impl TcpStream for AsyncIoStream {
    fn poll_read(&mut self, cx: &mut Context<'_>, buffer: &mut [u8]) -> Poll<io::Result<usize>> {
        loop {
            match self.0.get_ref().read(buffer) {
                Err(error) if error.kind() == io::ErrorKind::WouldBlock => {}
                result => return Poll::Ready(result),
            }
            ready!(self.0.poll_readable(cx))?;
        }
    }

    fn poll_write(&mut self, cx: &mut Context<'_>, bytes: &[u8]) -> Poll<io::Result<usize>> {
        loop {
            match self.0.get_ref().write(bytes) {
                Err(error) if error.kind() == io::ErrorKind::WouldBlock => {}
                result => return Poll::Ready(result),
            }
            ready!(self.0.poll_writable(cx))?;
        }
    }

    fn poll_close(&mut self, _cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        // Writes go straight to the socket: nothing to flush.
        Poll::Ready(self.0.get_ref().shutdown(Shutdown::Write))
    }
}

/// A timer on async-io.
#[derive(Debug)]
struct AsyncIoTimer(async_io::Timer);

impl Timer for AsyncIoTimer {
    fn reset(mut self: Pin<&mut Self>, deadline: Instant) {
        self.0.set_at(deadline);
    }

    fn poll(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<()> {
        Pin::new(&mut self.0).poll(cx).map(|_| ())
    }
}
