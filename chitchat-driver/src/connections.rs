//! The node's catch-up streams over TCP: accepting the connections peers open
//! to the gossip address, opening the ones the core asks for, and moving bytes
//! between them and the core. The core decides everything (which streams,
//! what bytes, when they end); this only pumps.
//!
//! Bounds: the core takes at most `max_streams` streams and the others are
//! closed at once; each open stream holds at most one frame the core built
//! (the core holds at most one frame it received); a stream the core has
//! ended is dropped on the next turn, and one that the core finished but the
//! peer does not read is dropped after `stream_timeout`.

use std::collections::BTreeMap;
use std::sync::Arc;
use std::task::{Context, Poll};
use std::time::{Duration, Instant};

use chitchat_core::{Chitchat, StreamId, StreamSend, Timestamp};

use crate::runtime::{BoxFuture, Runtime, TcpListener, TcpStream};

/// Reads per stream per turn, before the other sources get a look.
const READS_PER_TURN: usize = 16;

type Connecting = BoxFuture<std::io::Result<Box<dyn TcpStream>>>;

/// One connected stream.
#[derive(Debug)]
struct Connection {
    stream: Box<dyn TcpStream>,
    /// The frame being written, and how much of it is.
    out: Vec<u8>,
    written: usize,
    /// The core is done with the stream: flush, close, drop (by this time).
    closing: Option<Instant>,
}

/// The node's streams.
pub(crate) struct Connections {
    listener: Option<Box<dyn TcpListener>>,
    connecting: BTreeMap<StreamId, Connecting>,
    open: BTreeMap<StreamId, Connection>,
    /// How long a finished stream may take to flush.
    linger: Duration,
    runtime: Arc<dyn Runtime>,
}

impl std::fmt::Debug for Connections {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Connections")
            .field("listening", &self.listener.is_some())
            .field("connecting", &self.connecting.len())
            .field("open", &self.open.len())
            .finish()
    }
}

impl Connections {
    pub(crate) fn new(
        listener: Option<Box<dyn TcpListener>>,
        linger: Duration,
        runtime: Arc<dyn Runtime>,
    ) -> Self {
        Connections { listener, connecting: BTreeMap::new(), open: BTreeMap::new(), linger, runtime }
    }

    /// One turn: accepts, connects, reads into the core and writes what it
    /// sends. `now` reads the node's clock. `buffer` is scratch room for reads.
    /// Returns whether anything moved.
    pub(crate) fn poll(
        &mut self,
        cx: &mut Context<'_>,
        chitchat: &mut Chitchat,
        now: impl Fn() -> Timestamp,
        buffer: &mut [u8],
    ) -> bool {
        let mut progress = self.accept(cx, chitchat, &now);
        while let Some(open) = chitchat.poll_stream_open() {
            self.connecting.insert(open.id, self.runtime.connect(open.to));
            progress = true;
        }
        self.connecting.retain(|id, connecting| {
            if !chitchat.is_stream_open(*id) {
                return false; // ended (timed out) before it connected
            }
            match connecting.as_mut().poll(cx) {
                Poll::Pending => true,
                Poll::Ready(Ok(stream)) => {
                    let connection = Connection { stream, out: Vec::new(), written: 0, closing: None };
                    self.open.insert(*id, connection);
                    progress = true;
                    false
                }
                Poll::Ready(Err(error)) => {
                    tracing::debug!(%id, %error, "stream connection failed");
                    chitchat.stream_closed(now(), *id);
                    progress = true;
                    false
                }
            }
        });
        let linger = self.linger;
        self.open.retain(|id, connection| match connection.pump(cx, *id, chitchat, &now, buffer, linger) {
            Pump::Idle => true,
            Pump::Moved => {
                progress = true;
                true
            }
            Pump::Gone => {
                progress = true;
                false
            }
        });
        progress
    }

    /// Takes the connections waiting on the listener; the core refuses those
    /// beyond its limit, which are closed at once.
    fn accept(
        &mut self,
        cx: &mut Context<'_>,
        chitchat: &mut Chitchat,
        now: &impl Fn() -> Timestamp,
    ) -> bool {
        let Some(listener) = &self.listener else { return false };
        let mut progress = false;
        while let Poll::Ready(accepted) = listener.poll_accept(cx) {
            progress = true;
            match accepted {
                Ok((stream, from)) => {
                    if let Some(id) = chitchat.accept_stream(now(), from) {
                        self.open
                            .insert(id, Connection { stream, out: Vec::new(), written: 0, closing: None });
                    }
                }
                Err(error) => {
                    // Out of descriptors, a connection reset before it was taken...
                    tracing::debug!(%error, "accepting a stream failed");
                    break;
                }
            }
        }
        progress
    }
}

/// What a turn did with one connection.
enum Pump {
    Idle,
    Moved,
    Gone,
}

impl Connection {
    fn pump(
        &mut self,
        cx: &mut Context<'_>,
        id: StreamId,
        chitchat: &mut Chitchat,
        now: &impl Fn() -> Timestamp,
        buffer: &mut [u8],
        linger: Duration,
    ) -> Pump {
        let mut moved = false;
        if self.closing.is_none() && !chitchat.is_stream_open(id) {
            // The core ended it (a timeout, a refused frame, the node left).
            return Pump::Gone;
        }
        // Reads first: they may let the core answer.
        if self.closing.is_none() {
            for _ in 0..READS_PER_TURN {
                match self.stream.poll_read(cx, buffer) {
                    Poll::Pending => break,
                    Poll::Ready(Ok(0)) => {
                        chitchat.stream_closed(now(), id);
                        return Pump::Gone;
                    }
                    Poll::Ready(Ok(len)) => {
                        moved = true;
                        if let Err(error) = chitchat.handle_stream_data(now(), id, &buffer[..len]) {
                            tracing::debug!(%id, %error, "stream refused");
                            return Pump::Gone;
                        }
                    }
                    Poll::Ready(Err(error)) => {
                        tracing::debug!(%id, %error, "stream read failed");
                        chitchat.stream_closed(now(), id);
                        return Pump::Gone;
                    }
                }
            }
        }
        loop {
            if self.written == self.out.len() {
                if self.closing.is_some() {
                    return match self.stream.poll_close(cx) {
                        Poll::Pending => self.linger_or_gone(moved),
                        Poll::Ready(_) => Pump::Gone,
                    };
                }
                match chitchat.poll_stream_send(now(), id) {
                    StreamSend::Bytes(bytes) => {
                        self.out = bytes;
                        self.written = 0;
                    }
                    StreamSend::Idle => break,
                    StreamSend::Finished => {
                        self.out = Vec::new();
                        self.written = 0;
                        self.closing = Some(Instant::now() + linger);
                        continue;
                    }
                }
            }
            match self.stream.poll_write(cx, &self.out[self.written..]) {
                Poll::Pending => return self.linger_or_gone(moved),
                Poll::Ready(Ok(0)) | Poll::Ready(Err(_)) => {
                    if self.closing.is_none() {
                        chitchat.stream_closed(now(), id);
                    }
                    return Pump::Gone;
                }
                Poll::Ready(Ok(len)) => {
                    self.written += len;
                    moved = true;
                }
            }
        }
        if moved { Pump::Moved } else { Pump::Idle }
    }

    /// A finished stream still flushing is dropped once its time is up.
    fn linger_or_gone(&self, moved: bool) -> Pump {
        match self.closing {
            Some(deadline) if Instant::now() >= deadline => Pump::Gone,
            _ if moved => Pump::Moved,
            _ => Pump::Idle,
        }
    }
}
