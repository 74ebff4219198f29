//! [`ChitchatHandle`]: the application's side of a running node.

use std::any::Any;
use std::convert::Infallible;
use std::fmt;
use std::net::SocketAddr;
use std::panic::{AssertUnwindSafe, catch_unwind, resume_unwind};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex, PoisonError};

use async_broadcast::{Receiver, Sender};
use chitchat_core::{
    Chitchat, ClusterSnapshot, EncryptionMode, Event, KeyId, KeyValueError, KeyringError, Metrics, NodeId,
    NodeSnapshot, NodeState, SecretKey, Timestamp,
};

use crate::error::{CommandError, StopReason};
use crate::streams::{
    KeyChange, NodeSet, ReadyChange, Subscription, Watch, WatchStream, subscription_channel,
};

/// A reply to one command.
pub(crate) type Reply<T> = async_channel::Sender<T>;

/// A closure run on the core by [`ChitchatHandle::with_chitchat`]; it sends its
/// own reply.
pub(crate) type CoreClosure = Box<dyn FnOnce(&mut Chitchat, Timestamp) + Send>;

/// What a handle asks of the node task.
pub(crate) enum Command {
    Set {
        key: String,
        value: String,
        reply: Reply<Result<(), KeyValueError>>,
    },
    SetWithTtl {
        key: String,
        value: String,
        reply: Reply<Result<(), KeyValueError>>,
    },
    Delete {
        key: String,
        reply: Reply<Result<(), KeyValueError>>,
    },
    DeleteAfterTtl {
        key: String,
        reply: Reply<Result<(), KeyValueError>>,
    },
    Snapshot {
        reply: Reply<ClusterSnapshot>,
    },
    Metrics {
        reply: Reply<Metrics>,
    },
    AddKey {
        key: SecretKey,
        reply: Reply<Result<KeyId, KeyringError>>,
    },
    SetPrimaryKey {
        id: KeyId,
        reply: Reply<Result<(), KeyringError>>,
    },
    RemoveKey {
        id: KeyId,
        reply: Reply<Result<(), KeyringError>>,
    },
    SetEncryptionMode {
        mode: EncryptionMode,
        reply: Reply<Result<(), KeyringError>>,
    },
    SubscribeKeysWithCurrent {
        prefix: String,
        reply: Reply<Receiver<KeyChange>>,
    },
    SubscribeReady {
        reply: Reply<Receiver<ReadyChange>>,
    },
    /// Runs a closure on the core; the closure replies itself.
    WithChitchat(CoreClosure),
    Leave {
        reply: Reply<()>,
    },
    Shutdown,
}

/// The counters of the driver itself, since the node started (the protocol's are
/// in [`Metrics`]).
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct DriverMetrics {
    /// Sends that failed (the datagram was dropped; gossip retries next round).
    pub send_errors: u64,
    /// Receives that failed with a transient error (connection refused by an
    /// earlier send's ICMP answer, no buffer space, ...), survived.
    pub recv_errors: u64,
    /// Seed host names that failed to resolve (each is retried).
    pub seed_resolution_failures: u64,
}

/// The core's counters and the driver's, from [`ChitchatHandle::metrics`].
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct NodeMetrics {
    /// The protocol's counters.
    pub core: Metrics,
    /// The socket's counters.
    pub driver: DriverMetrics,
}

/// The driver's counters, shared between the task and the handles.
#[derive(Debug, Default)]
pub(crate) struct DriverCounters {
    pub send_errors: AtomicU64,
    pub recv_errors: AtomicU64,
    pub seed_resolution_failures: AtomicU64,
}

impl DriverCounters {
    pub(crate) fn increment(counter: &AtomicU64) {
        counter.fetch_add(1, Ordering::Relaxed);
    }

    pub(crate) fn get(&self) -> DriverMetrics {
        DriverMetrics {
            send_errors: self.send_errors.load(Ordering::Relaxed),
            recv_errors: self.recv_errors.load(Ordering::Relaxed),
            seed_resolution_failures: self.seed_resolution_failures.load(Ordering::Relaxed),
        }
    }
}

/// A subscription to the changes of keys that start with `prefix`.
#[derive(Debug)]
pub(crate) struct KeySubscriber {
    pub prefix: String,
    pub sender: Sender<KeyChange>,
}

/// What the task and the handles share.
#[derive(Debug)]
pub(crate) struct Shared {
    pub live: Watch,
    pub ready: Watch,
    pub key_subscribers: Mutex<Vec<KeySubscriber>>,
    pub ready_subscribers: Mutex<Vec<Sender<ReadyChange>>>,
    pub event_subscribers: Mutex<Vec<Sender<Event>>>,
    pub counters: DriverCounters,
    pub stop_reason: Mutex<Option<StopReason>>,
    pub subscription_capacity: usize,
    /// The core's count of dropped events when the sets were last published
    /// (see [`crate::publish::publish_events`]).
    pub events_dropped: AtomicU64,
}

impl Shared {
    /// Records why the task stopped and ends every stream.
    pub(crate) fn stop(&self, reason: StopReason) {
        *self.stop_reason.lock().unwrap_or_else(PoisonError::into_inner) = Some(reason);
        self.live.close();
        self.ready.close();
        for subscriber in self.key_subscribers.lock().unwrap_or_else(PoisonError::into_inner).drain(..) {
            subscriber.sender.close();
        }
        for sender in self.ready_subscribers.lock().unwrap_or_else(PoisonError::into_inner).drain(..) {
            sender.close();
        }
        for sender in self.event_subscribers.lock().unwrap_or_else(PoisonError::into_inner).drain(..) {
            sender.close();
        }
    }
}

/// A cloneable handle on a running node.
///
/// Commands go to the node's task through a bounded queue; reads of the node set
/// watches are immediate. The node runs until [`ChitchatHandle::shutdown`], until
/// its socket fails, or until every handle is dropped.
#[derive(Clone)]
pub struct ChitchatHandle {
    inner: Arc<Inner>,
}

struct Inner {
    self_id: NodeId,
    local_addr: SocketAddr,
    commands: async_channel::Sender<Command>,
    /// Closed when the task has stopped (its only sender is dropped then).
    stopped: async_channel::Receiver<Infallible>,
    shared: Arc<Shared>,
}

impl fmt::Debug for ChitchatHandle {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("ChitchatHandle")
            .field("self_id", &self.inner.self_id)
            .field("local_addr", &self.inner.local_addr)
            .finish_non_exhaustive()
    }
}

impl ChitchatHandle {
    pub(crate) fn new(
        self_id: NodeId,
        local_addr: SocketAddr,
        commands: async_channel::Sender<Command>,
        stopped: async_channel::Receiver<Infallible>,
        shared: Arc<Shared>,
    ) -> Self {
        ChitchatHandle { inner: Arc::new(Inner { self_id, local_addr, commands, stopped, shared }) }
    }

    /// The node's identity: name, generation and advertised gossip address.
    pub fn self_id(&self) -> &NodeId {
        &self.inner.self_id
    }

    /// The address the node's socket is bound to (the actual port for port 0).
    pub fn local_addr(&self) -> SocketAddr {
        self.inner.local_addr
    }

    async fn request<T>(&self, command: impl FnOnce(Reply<T>) -> Command) -> Result<T, CommandError> {
        let (reply, response) = async_channel::bounded(1);
        self.inner.commands.send(command(reply)).await.map_err(|_| CommandError::Stopped)?;
        response.recv().await.map_err(|_| CommandError::Stopped)
    }

    /// Sets one of this node's keys.
    pub async fn set(&self, key: impl Into<String>, value: impl Into<String>) -> Result<(), CommandError> {
        let (key, value) = (key.into(), value.into());
        Ok(self.request(|reply| Command::Set { key, value, reply }).await??)
    }

    /// Sets a key that expires on every node a deletion grace period after that
    /// node learns of it.
    pub async fn set_with_ttl(
        &self,
        key: impl Into<String>,
        value: impl Into<String>,
    ) -> Result<(), CommandError> {
        let (key, value) = (key.into(), value.into());
        Ok(self.request(|reply| Command::SetWithTtl { key, value, reply }).await??)
    }

    /// Deletes one of this node's keys (absent keys are ignored).
    pub async fn delete(&self, key: impl Into<String>) -> Result<(), CommandError> {
        let key = key.into();
        Ok(self.request(|reply| Command::Delete { key, reply }).await??)
    }

    /// Gives an existing key of this node a time to live (absent keys are ignored).
    pub async fn delete_after_ttl(&self, key: impl Into<String>) -> Result<(), CommandError> {
        let key = key.into();
        Ok(self.request(|reply| Command::DeleteAfterTtl { key, reply }).await??)
    }

    /// A copy of everything the node knows.
    pub async fn snapshot(&self) -> Result<ClusterSnapshot, CommandError> {
        self.request(|reply| Command::Snapshot { reply }).await
    }

    /// The state of every node the node tracks (itself included).
    pub async fn node_states(&self) -> Result<Vec<NodeSnapshot>, CommandError> {
        Ok(self.snapshot().await?.nodes)
    }

    /// The nodes seen live now (this one included, until it leaves): the
    /// set the node published last, shared, not copied (`(*set).clone()`
    /// gives a copy to keep or change).
    pub fn live_nodes(&self) -> Arc<NodeSet> {
        self.inner.shared.live.get()
    }

    /// The nodes seen ready now, shared as [`ChitchatHandle::live_nodes`].
    pub fn ready_nodes(&self) -> Arc<NodeSet> {
        self.inner.shared.ready.get()
    }

    /// The live nodes now, then after each change.
    pub fn watch_live_nodes(&self) -> WatchStream {
        self.inner.shared.live.watch()
    }

    /// The ready nodes now, then after each change.
    pub fn watch_ready_nodes(&self) -> WatchStream {
        self.inner.shared.ready.watch()
    }

    /// Every change (set, delete, expiry) of a key starting with `prefix`, of any
    /// node, this one included, from now on. `""` matches every key.
    ///
    /// Keys that arrived before the call are not reported: to learn them too,
    /// without a gap, use [`ChitchatHandle::subscribe_key_changes_with_current`].
    pub fn subscribe_key_changes(&self, prefix: impl Into<String>) -> Subscription<KeyChange> {
        let shared = &self.inner.shared;
        let (sender, receiver) = subscription_channel(shared.subscription_capacity);
        let mut subscribers = shared.key_subscribers.lock().unwrap_or_else(PoisonError::into_inner);
        if self.stop_reason().is_none() {
            subscribers.push(KeySubscriber { prefix: prefix.into(), sender });
        }
        Subscription::new(receiver)
    }

    /// The current value of every key starting with `prefix`, of every node the
    /// node tracks (this one included), as [`KeyChange::Set`] items in node then
    /// key order; then every change of such a key, as
    /// [`ChitchatHandle::subscribe_key_changes`] reports them.
    ///
    /// The current values are read and the subscription registered at one point
    /// of the node's task, between two inputs to the core, so no change falls in
    /// a gap between the two and none is reported twice. The subscription buffers
    /// the current values on top of [`NodeConfig::subscription_capacity`]. `""`
    /// matches every key.
    ///
    /// [`NodeConfig::subscription_capacity`]: crate::NodeConfig::subscription_capacity
    pub async fn subscribe_key_changes_with_current(
        &self,
        prefix: impl Into<String>,
    ) -> Result<Subscription<KeyChange>, CommandError> {
        let prefix = prefix.into();
        let receiver = self.request(|reply| Command::SubscribeKeysWithCurrent { prefix, reply }).await?;
        Ok(Subscription::new(receiver))
    }

    /// Every node ready now (as a [`ReadyChange`] with `ready: true`, in node
    /// order), then every change of readiness, each with the node's status and
    /// keys at that moment. Taken in the node's task, like
    /// [`ChitchatHandle::subscribe_key_changes_with_current`], so nothing falls
    /// in a gap.
    pub async fn subscribe_ready_changes(&self) -> Result<Subscription<ReadyChange>, CommandError> {
        let receiver = self.request(|reply| Command::SubscribeReady { reply }).await?;
        Ok(Subscription::new(receiver))
    }

    /// Runs `f` on the node's core inside its task, with the current time, and
    /// returns what it returns: a read of one key of one peer without a full
    /// [`ChitchatHandle::snapshot`], or any call of [`Chitchat`]'s API the handle
    /// does not offer. Afterwards the task sends what the core emits and
    /// publishes its events, as after any input.
    ///
    /// `f` holds up the node's gossip while it runs: keep it short, and never
    /// block in it. If `f` panics, the panic is resumed in the caller and the
    /// node keeps running.
    ///
    /// ```no_run
    /// # async fn example(node: chitchat_driver::ChitchatHandle, peer: chitchat_core::NodeId)
    /// # -> Result<(), chitchat_driver::CommandError> {
    /// let role: Option<String> =
    ///     node.with_chitchat(move |chitchat, _now| chitchat.node_state(&peer)?.get("role").map(String::from)).await?;
    /// # Ok(()) }
    /// ```
    pub async fn with_chitchat<R: Send + 'static>(
        &self,
        f: impl FnOnce(&mut Chitchat, Timestamp) -> R + Send + 'static,
    ) -> Result<R, CommandError> {
        let outcome = self
            .request(|reply: Reply<Result<R, Box<dyn Any + Send>>>| {
                Command::WithChitchat(Box::new(move |chitchat, now| {
                    let _ = reply.try_send(catch_unwind(AssertUnwindSafe(|| f(chitchat, now))));
                }))
            })
            .await?;
        match outcome {
            Ok(output) => Ok(output),
            Err(panic) => resume_unwind(panic),
        }
    }

    /// Replaces the predicate that decides which live nodes are ready (see
    /// [`NodeConfig::with_ready_predicate`]); readiness is judged again for
    /// every node at once, and changes are published as usual.
    ///
    /// [`NodeConfig::with_ready_predicate`]: crate::NodeConfig::with_ready_predicate
    pub async fn set_ready_predicate(
        &self,
        predicate: impl Fn(&NodeState) -> bool + Send + Sync + 'static,
    ) -> Result<(), CommandError> {
        self.with_chitchat(move |chitchat, _| chitchat.set_ready_predicate(predicate)).await
    }

    /// Every event of the core (membership and keys), from now on.
    pub fn subscribe_events(&self) -> Subscription<Event> {
        let shared = &self.inner.shared;
        let (sender, receiver) = subscription_channel(shared.subscription_capacity);
        let mut subscribers = shared.event_subscribers.lock().unwrap_or_else(PoisonError::into_inner);
        if self.stop_reason().is_none() {
            subscribers.push(sender);
        }
        Subscription::new(receiver)
    }

    /// The core's counters and the driver's.
    pub async fn metrics(&self) -> Result<NodeMetrics, CommandError> {
        let core = self.request(|reply| Command::Metrics { reply }).await?;
        Ok(NodeMetrics { core, driver: self.driver_metrics() })
    }

    /// Key rotation, step 1 of 3: adds a key that opens datagrams. Finish this
    /// step on every node before the next. A key already held is accepted again.
    pub async fn add_key(&self, key: SecretKey) -> Result<KeyId, CommandError> {
        Ok(self.request(|reply| Command::AddKey { key, reply }).await??)
    }

    /// Key rotation, step 2 of 3: makes a held key the one that seals; the
    /// previous primary keeps opening.
    pub async fn set_primary_key(&self, id: KeyId) -> Result<(), CommandError> {
        Ok(self.request(|reply| Command::SetPrimaryKey { id, reply }).await??)
    }

    /// Key rotation, step 3 of 3: removes a key that is no longer primary
    /// anywhere.
    pub async fn remove_key(&self, id: KeyId) -> Result<(), CommandError> {
        Ok(self.request(|reply| Command::RemoveKey { id, reply }).await??)
    }

    /// Changes what the node sends and accepts (to migrate a plaintext cluster:
    /// `Off` with keys everywhere, then `EncryptAcceptPlaintext` everywhere, then
    /// `Required`). A mode that seals needs a keyring.
    pub async fn set_encryption_mode(&self, mode: EncryptionMode) -> Result<(), CommandError> {
        Ok(self.request(|reply| Command::SetEncryptionMode { mode, reply }).await??)
    }

    /// The driver's counters (readable after the node stopped, too).
    pub fn driver_metrics(&self) -> DriverMetrics {
        self.inner.shared.counters.get()
    }

    /// Leaves the cluster: returns once the farewells are sent. Peers then mark
    /// this node left at once; it takes no further part, but keeps running (and
    /// answering reads) until [`ChitchatHandle::shutdown`].
    pub async fn leave(&self) -> Result<(), CommandError> {
        self.request(|reply| Command::Leave { reply }).await
    }

    /// Stops the node's task and returns once it has stopped and its socket is
    /// closed. Without a [`ChitchatHandle::leave`] first, peers see the node dead
    /// after a while. Returns `Err` if the task had already stopped because its
    /// socket failed.
    pub async fn shutdown(&self) -> Result<(), StopReason> {
        let _ = self.inner.commands.send(Command::Shutdown).await;
        match self.stopped().await {
            StopReason::SocketClosed(error) => Err(StopReason::SocketClosed(error)),
            _ => Ok(()),
        }
    }

    /// Why the task stopped, or `None` while it runs.
    pub fn stop_reason(&self) -> Option<StopReason> {
        self.inner.shared.stop_reason.lock().unwrap_or_else(PoisonError::into_inner).clone()
    }

    /// Waits until the task stops, and says why.
    pub async fn stopped(&self) -> StopReason {
        // Nothing is ever sent: `recv` returns once the task drops its sender.
        let _ = self.inner.stopped.recv().await;
        self.stop_reason().unwrap_or(StopReason::Shutdown)
    }
}
