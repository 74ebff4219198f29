//! The node task: one loop that feeds the core and drains it.
//!
//! Each turn: take the handles' commands, receive datagrams (each stamped with
//! its arrival time), move the catch-up streams' bytes ([`Connections`]), fire
//! the core's deadline, take in seed re-resolutions, send what the core emits,
//! publish its events, and re-arm the single timer to
//! [`Chitchat::poll_timeout`]. No protocol decision is made here.

use std::cell::RefCell;
use std::collections::BTreeSet;
use std::convert::Infallible;
use std::future::poll_fn;
use std::io;
use std::pin::Pin;
use std::sync::atomic::AtomicU64;
use std::sync::{Arc, Mutex};
use std::task::{Context, Poll};
use std::time::Instant;

use chitchat_core::{Chitchat, Config, NodeId, Timestamp, Transmit};
use futures_lite::Stream;

use crate::config::{NodeConfig, generation_from_clock};
use crate::connections::Connections;
use crate::error::{StartError, StopReason};
use crate::handle::{ChitchatHandle, Command, DriverCounters, Reply, Shared};
use crate::publish::{publish_events, subscribe_keys_with_current, subscribe_ready};
use crate::runtime::{BoxFuture, Runtime, Timer, UdpSocket};
use crate::seeds::{Resolution, Seeds};
use crate::streams::Watch;

/// Datagrams received per turn before the other sources get a look.
const RECV_BATCH: usize = 64;
/// Turns per poll before the task yields to its executor.
const TURNS_PER_POLL: usize = 16;
/// Events waiting in the core after which a turn hands them out (and
/// republishes the live and ready sets) at once, rather than at the end of
/// the poll: far below the core's bound on pending events.
const PUBLISH_BACKLOG: usize = 4_096;
/// Commands waiting for the task, per node; a caller beyond them waits its
/// turn. The queue's room is allocated up front (about 90 bytes a command):
/// 32 of them, twice the turns the task takes per poll.
const COMMAND_QUEUE: usize = 2 * TURNS_PER_POLL;
/// A socket that fails this many receives in a row, without one success, is
/// considered closed (it would otherwise spin).
const MAX_CONSECUTIVE_RECV_ERRORS: u32 = 1_000;

thread_local! {
    /// Room for the largest datagram, allocated once per thread and shared by the
    /// nodes that run on it: a datagram is handed to the core (which copies what
    /// it keeps) before the buffer is used again, so one node costs no 64 KiB.
    static RECEIVE_BUFFER: RefCell<Vec<u8>> = RefCell::new(vec![0; Config::MAX_DATAGRAM_SIZE]);
}

/// Binds the socket, creates the core, resolves the seeds once and spawns the
/// node's task on `runtime`. Must be called from within that runtime.
pub async fn spawn(runtime: Arc<dyn Runtime>, config: NodeConfig) -> Result<ChitchatHandle, StartError> {
    let start = Instant::now();
    let socket = runtime
        .bind(config.listen_addr)
        .map_err(|source| StartError::Bind { addr: config.listen_addr, source })?;
    let local_addr =
        socket.local_addr().map_err(|source| StartError::Bind { addr: config.listen_addr, source })?;
    // Peers pull large states from this node over TCP, on the same address.
    // Without a listener the node still gossips and pulls; its peers then
    // catch up from others, or by datagrams alone.
    let listener = match runtime.listen(local_addr) {
        Ok(listener) => Some(listener),
        Err(error) => {
            tracing::warn!(%local_addr, %error, "no TCP listener for catch-up streams");
            None
        }
    };
    let gossip_addr = config.advertise_addr.unwrap_or(local_addr);
    if gossip_addr.ip().is_unspecified() {
        tracing::warn!(%gossip_addr, "advertising an unspecified address: set advertise_addr");
    }
    let generation = config.generation.unwrap_or_else(generation_from_clock);
    let self_id = NodeId::new(config.name, generation, gossip_addr);
    let mut chitchat_config = config.chitchat;
    if chitchat_config.rng_seed == 0 {
        chitchat_config.rng_seed = fastrand::u64(1..);
    }
    let now = Timestamp::from_elapsed(start.elapsed());
    let mut chitchat = Chitchat::new(chitchat_config, self_id.clone(), config.initial_key_values, now)?;
    if let Some(keyring) = config.keyring {
        // A fresh salt per start keeps nonces unique across restarts.
        let mut salt = [0; 16];
        getrandom::fill(&mut salt).map_err(|error| StartError::Entropy(error.to_string()))?;
        chitchat.set_encryption(config.encryption_mode, keyring, salt)?;
    } else {
        chitchat.set_encryption_mode(config.encryption_mode)?;
    }
    if let Some(predicate) = config.ready_predicate {
        chitchat.set_ready_predicate(move |state| predicate(state));
    }

    let live: BTreeSet<NodeId> = chitchat.live_nodes().cloned().collect();
    let ready: BTreeSet<NodeId> = chitchat.ready_nodes().cloned().collect();
    let shared = Arc::new(Shared {
        live: Watch::new(live),
        ready: Watch::new(ready),
        key_subscribers: Mutex::default(),
        ready_subscribers: Mutex::default(),
        event_subscribers: Mutex::default(),
        counters: DriverCounters::default(),
        stop_reason: Mutex::default(),
        subscription_capacity: config.subscription_capacity,
        events_dropped: AtomicU64::new(0),
    });

    let mut seeds = Seeds::new(config.seeds, local_addr.is_ipv4(), config.seed_refresh_interval);
    let (addrs, next_resolution) = seeds.absorb(seeds.resolve(&runtime).await, &shared);
    chitchat.set_seed_addrs(addrs);
    let seed_timer = seeds.needs_refresh().then(|| runtime.new_timer(Instant::now() + next_resolution));

    #[cfg(feature = "metrics")]
    let exporter =
        crate::metrics_facade::Exporter::new(self_id.name().to_string(), chitchat.config().gossip_interval);
    let (commands, command_receiver) = async_channel::bounded(COMMAND_QUEUE);
    let (alive, stopped) = async_channel::bounded::<Infallible>(1);
    let linger = chitchat.config().stream_timeout;
    let driver = Driver {
        connections: Connections::new(listener, linger, runtime.clone()),
        chitchat,
        socket,
        start,
        timer: runtime.new_timer(start),
        timer_deadline: None,
        commands: Box::pin(command_receiver),
        unsent: None,
        seeds,
        seed_timer,
        resolution: None,
        leave_replies: Vec::new(),
        consecutive_recv_errors: 0,
        shared: shared.clone(),
        runtime: runtime.clone(),
        #[cfg(feature = "metrics")]
        exporter,
    };
    tracing::info!(node = %self_id, %local_addr, "node started");
    runtime.spawn(Box::pin(run(driver, alive)));
    Ok(ChitchatHandle::new(self_id, local_addr, commands, stopped, shared))
}

/// The task: drives the node until it stops, then closes everything.
async fn run(mut driver: Driver, alive: async_channel::Sender<Infallible>) {
    let reason = poll_fn(|cx| driver.poll(cx)).await;
    #[cfg(feature = "metrics")]
    driver.exporter.export(&driver.chitchat, &driver.shared.counters.get());
    tracing::info!(node = %driver.chitchat.self_id(), %reason, "node stopped");
    let shared = driver.shared.clone();
    // Closes the socket before anyone hears that the task stopped.
    drop(driver);
    shared.stop(reason);
    drop(alive);
}

struct Driver {
    chitchat: Chitchat,
    socket: Box<dyn UdpSocket>,
    /// The catch-up streams' TCP listener and connections.
    connections: Connections,
    /// The epoch of the node's timestamps.
    start: Instant,
    /// The single timer, armed at the core's next deadline.
    timer: Pin<Box<dyn Timer>>,
    timer_deadline: Option<Instant>,
    commands: Pin<Box<async_channel::Receiver<Command>>>,
    /// A datagram polled from the core that the socket could not take yet.
    unsent: Option<Transmit>,
    seeds: Seeds,
    /// When to resolve the seeds again (`None` if they are all IP addresses).
    seed_timer: Option<Pin<Box<dyn Timer>>>,
    resolution: Option<BoxFuture<Resolution>>,
    leave_replies: Vec<Reply<()>>,
    consecutive_recv_errors: u32,
    shared: Arc<Shared>,
    runtime: Arc<dyn Runtime>,
    #[cfg(feature = "metrics")]
    exporter: crate::metrics_facade::Exporter,
}

impl Driver {
    fn now(&self) -> Timestamp {
        Timestamp::from_elapsed(self.start.elapsed())
    }

    /// Runs turns until nothing is left to do (or the poll's share is used),
    /// then hands the turns' events to the subscribers: the live and ready
    /// sets are rebuilt once a poll, not once a turn (a cold start changes
    /// membership at nearly every datagram, and each rebuild costs a copy of
    /// the sets).
    fn poll(&mut self, cx: &mut Context<'_>) -> Poll<StopReason> {
        let result = self.poll_turns(cx);
        if result.is_pending() {
            publish_events(&mut self.chitchat, &self.shared);
        }
        result
    }

    fn poll_turns(&mut self, cx: &mut Context<'_>) -> Poll<StopReason> {
        for _ in 0..TURNS_PER_POLL {
            let mut progress = false;
            match self.poll_commands(cx) {
                Poll::Ready(reason) => return Poll::Ready(reason),
                Poll::Pending => {}
            }
            match self.poll_socket(cx) {
                Ok(received) => progress |= received,
                Err(error) => return Poll::Ready(StopReason::SocketClosed(Arc::new(error))),
            }
            progress |= self.poll_connections(cx);
            if self.timer_deadline.is_some() && self.timer.as_mut().poll(cx).is_ready() {
                self.timer_deadline = None;
                self.chitchat.handle_timeout(self.now());
                #[cfg(feature = "metrics")]
                self.exporter.export_if_due(&self.chitchat, &self.shared.counters.get());
                progress = true;
            }
            progress |= self.poll_seeds(cx);
            self.send(cx);
            if self.chitchat.pending_events() > PUBLISH_BACKLOG {
                publish_events(&mut self.chitchat, &self.shared);
            }
            if self.chitchat.has_left() {
                for reply in self.leave_replies.drain(..) {
                    let _ = reply.try_send(());
                }
            }
            // Re-arm the timer; a moved timer must be polled once to register.
            let deadline =
                self.chitchat.poll_timeout().map(|deadline| self.start + deadline.elapsed_since_epoch());
            if deadline != self.timer_deadline {
                if let Some(deadline) = deadline {
                    self.timer.as_mut().reset(deadline);
                    progress = true;
                }
                self.timer_deadline = deadline;
            }
            if !progress {
                return Poll::Pending;
            }
        }
        // Plenty to do: let the executor run other tasks, then come back.
        cx.waker().wake_by_ref();
        Poll::Pending
    }

    /// Runs every queued command; `Ready` if one stops the task.
    fn poll_commands(&mut self, cx: &mut Context<'_>) -> Poll<StopReason> {
        loop {
            let command = match self.commands.as_mut().poll_next(cx) {
                Poll::Ready(Some(command)) => command,
                Poll::Ready(None) => return Poll::Ready(StopReason::HandlesDropped),
                Poll::Pending => return Poll::Pending,
            };
            let now = self.now();
            let chitchat = &mut self.chitchat;
            // A reply nobody waits for any more is dropped.
            match command {
                Command::Set { key, value, reply } => drop(reply.try_send(chitchat.set(now, &key, &value))),
                Command::SetWithTtl { key, value, reply } => {
                    drop(reply.try_send(chitchat.set_with_ttl(now, &key, &value)))
                }
                Command::Delete { key, reply } => drop(reply.try_send(chitchat.delete(now, &key))),
                Command::DeleteAfterTtl { key, reply } => {
                    drop(reply.try_send(chitchat.delete_after_ttl(now, &key)))
                }
                Command::Snapshot { reply } => drop(reply.try_send(chitchat.snapshot())),
                Command::Metrics { reply } => drop(reply.try_send(chitchat.metrics())),
                Command::AddKey { key, reply } => {
                    let _ = reply.try_send(chitchat.add_key(key));
                }
                Command::SetPrimaryKey { id, reply } => {
                    let _ = reply.try_send(chitchat.set_primary_key(id));
                }
                Command::RemoveKey { id, reply } => {
                    let _ = reply.try_send(chitchat.remove_key(id));
                }
                Command::SetEncryptionMode { mode, reply } => {
                    let _ = reply.try_send(chitchat.set_encryption_mode(mode));
                }
                Command::SubscribeKeysWithCurrent { prefix, reply } => {
                    let _ = reply.try_send(subscribe_keys_with_current(chitchat, &self.shared, prefix));
                }
                Command::SubscribeReady { reply } => {
                    let _ = reply.try_send(subscribe_ready(chitchat, &self.shared));
                }
                Command::WithChitchat(f) => f(chitchat, now),
                Command::Leave { reply } => {
                    chitchat.leave(now);
                    self.leave_replies.push(reply);
                }
                Command::Shutdown => return Poll::Ready(StopReason::Shutdown),
            }
        }
    }

    /// Receives a batch of datagrams. `Ok(true)` if the batch was full (more may
    /// be waiting); `Err` if the socket failed for good.
    fn poll_socket(&mut self, cx: &mut Context<'_>) -> io::Result<bool> {
        RECEIVE_BUFFER.with_borrow_mut(|buffer| self.receive_batch(cx, buffer))
    }

    /// Moves the streams' bytes (after datagrams and timeouts that may have
    /// opened or ended streams, it runs again on the next turn).
    fn poll_connections(&mut self, cx: &mut Context<'_>) -> bool {
        let (start, chitchat) = (self.start, &mut self.chitchat);
        let now = || Timestamp::from_elapsed(start.elapsed());
        RECEIVE_BUFFER.with_borrow_mut(|buffer| self.connections.poll(cx, chitchat, now, buffer))
    }

    fn receive_batch(&mut self, cx: &mut Context<'_>, buffer: &mut [u8]) -> io::Result<bool> {
        for _ in 0..RECV_BATCH {
            match self.socket.poll_recv_from(cx, buffer) {
                Poll::Ready(Ok((len, from))) => {
                    // The arrival time is read as soon as the datagram is out of the
                    // socket: the failure detector measures heartbeat arrivals.
                    let now = self.now();
                    self.consecutive_recv_errors = 0;
                    // On Err the core changed nothing and counted the datagram.
                    let _ = self.chitchat.handle_datagram(now, from, &buffer[..len]);
                }
                Poll::Ready(Err(error)) => {
                    self.consecutive_recv_errors += 1;
                    if is_fatal(&error) || self.consecutive_recv_errors >= MAX_CONSECUTIVE_RECV_ERRORS {
                        return Err(error);
                    }
                    DriverCounters::increment(&self.shared.counters.recv_errors);
                    tracing::debug!(%error, "transient receive error");
                }
                Poll::Pending => return Ok(false),
            }
        }
        Ok(true)
    }

    /// Sends what the core emitted, until the socket's buffer is full.
    fn send(&mut self, cx: &mut Context<'_>) {
        while let Some(transmit) = self.unsent.take().or_else(|| self.chitchat.poll_transmit()) {
            match self.socket.poll_send_to(cx, &transmit.bytes, transmit.to) {
                Poll::Ready(Ok(_)) => {}
                Poll::Ready(Err(error)) => {
                    // UDP is lossy anyway: gossip retries next round.
                    count(&self.shared.counters.send_errors);
                    tracing::debug!(to = %transmit.to, %error, "send failed");
                }
                Poll::Pending => {
                    self.unsent = Some(transmit);
                    return;
                }
            }
        }
    }

    /// Starts and finishes seed re-resolutions. `true` if something changed.
    fn poll_seeds(&mut self, cx: &mut Context<'_>) -> bool {
        let Some(seed_timer) = &mut self.seed_timer else { return false };
        let mut progress = false;
        if self.resolution.is_none() && seed_timer.as_mut().poll(cx).is_ready() {
            self.resolution = Some(self.seeds.resolve(&self.runtime));
            progress = true;
        }
        if let Some(resolution) = &mut self.resolution
            && let Poll::Ready(resolution) = resolution.as_mut().poll(cx)
        {
            self.resolution = None;
            let (addrs, next) = self.seeds.absorb(resolution, &self.shared);
            self.chitchat.set_seed_addrs(addrs);
            seed_timer.as_mut().reset(Instant::now() + next);
            progress = true;
        }
        progress
    }
}

fn count(counter: &AtomicU64) {
    DriverCounters::increment(counter);
}

/// Whether a receive error means the socket is gone. Anything else (an ICMP
/// answer to an earlier send, no buffer space, an interrupted call) is counted
/// and survived.
fn is_fatal(error: &io::Error) -> bool {
    /// `EBADF` on every Unix.
    const BAD_DESCRIPTOR: i32 = 9;
    matches!(error.kind(), io::ErrorKind::NotConnected | io::ErrorKind::BrokenPipe)
        || (cfg!(unix) && error.raw_os_error() == Some(BAD_DESCRIPTOR))
}
