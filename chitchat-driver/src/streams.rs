//! What a handle subscribes to: watches of node sets, key changes by prefix, and
//! every event. All are bounded: a subscriber that does not keep up loses the
//! oldest items (and is told so), and never slows the node down.

use std::collections::BTreeSet;
use std::fmt;
use std::pin::Pin;
use std::sync::{Arc, Mutex, PoisonError};
use std::task::{Context, Poll};

use async_broadcast::{InactiveReceiver, Receiver, RecvError, Sender};
use chitchat_core::{CompactString, Event, NodeId, NodeStatus};
use futures_lite::Stream;
use thiserror::Error;

/// A set of nodes, ordered by name, then generation, then address.
pub type NodeSet = BTreeSet<NodeId>;

/// A subscriber did not keep up: this many items were dropped before the next one.
#[derive(Debug, Error, Clone, Copy, PartialEq, Eq)]
#[error("the subscriber lagged: {0} items were dropped")]
pub struct Lagged(pub u64);

/// A change of a key of some node, from [`crate::ChitchatHandle::subscribe_key_changes`]
/// (or a current value, from
/// [`crate::ChitchatHandle::subscribe_key_changes_with_current`]).
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum KeyChange {
    /// The key was set, or its value changed, or it got a time to live (or, at
    /// the start of a subscription with current values, the key holds this value).
    Set {
        /// The key's owner.
        node: NodeId,
        /// The key.
        key: CompactString,
        /// Its new value.
        value: CompactString,
        /// The owner's version of it.
        version: u64,
    },
    /// The key was deleted.
    Deleted {
        /// The key's owner.
        node: NodeId,
        /// The key.
        key: CompactString,
    },
    /// The key's time to live ran out.
    Expired {
        /// The key's owner.
        node: NodeId,
        /// The key.
        key: CompactString,
    },
}

impl KeyChange {
    /// The key change an event describes, if it describes one.
    pub fn from_event(event: &Event) -> Option<KeyChange> {
        Some(match event.clone() {
            Event::KeySet { node, key, value, version } => KeyChange::Set { node, key, value, version },
            Event::KeyDeleted { node, key } => KeyChange::Deleted { node, key },
            Event::KeyExpired { node, key } => KeyChange::Expired { node, key },
            _ => return None,
        })
    }

    /// The key that changed.
    pub fn key(&self) -> &str {
        match self {
            KeyChange::Set { key, .. } | KeyChange::Deleted { key, .. } | KeyChange::Expired { key, .. } => {
                key
            }
        }
    }

    /// The node whose key changed.
    pub fn node(&self) -> &NodeId {
        match self {
            KeyChange::Set { node, .. }
            | KeyChange::Deleted { node, .. }
            | KeyChange::Expired { node, .. } => node,
        }
    }
}

/// A change of a node's readiness, from
/// [`crate::ChitchatHandle::subscribe_ready_changes`], with what the node held when
/// the change was published: no second lookup needed.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct ReadyChange {
    /// The node.
    pub node: NodeId,
    /// Whether it is now ready (live and passing the ready predicate).
    pub ready: bool,
    /// Its status, or `None` if it is no longer tracked (it was removed).
    pub status: Option<NodeStatus>,
    /// Its highest version (0 if no longer tracked).
    pub max_version: u64,
    /// Its visible keys and values, in key order (empty if no longer tracked).
    pub key_values: Vec<(String, String)>,
}

/// A bounded stream of items that reports the items a slow subscriber lost as
/// `Err(Lagged(n))` and goes on. It ends when the node stops.
pub struct Subscription<T> {
    inner: Pin<Box<dyn Stream<Item = Result<T, Lagged>> + Send>>,
}

impl<T: Clone + Send + 'static> Subscription<T> {
    pub(crate) fn new(receiver: Receiver<T>) -> Self {
        let inner = futures_lite::stream::unfold(receiver, |mut receiver| async move {
            match receiver.recv().await {
                Ok(item) => Some((Ok(item), receiver)),
                Err(RecvError::Overflowed(missed)) => Some((Err(Lagged(missed)), receiver)),
                Err(RecvError::Closed) => None,
            }
        });
        Subscription { inner: Box::pin(inner) }
    }
}

impl<T> Stream for Subscription<T> {
    type Item = Result<T, Lagged>;

    fn poll_next(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Option<Self::Item>> {
        self.inner.as_mut().poll_next(cx)
    }
}

impl<T> fmt::Debug for Subscription<T> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Subscription").finish_non_exhaustive()
    }
}

/// A bounded subscription channel: its publishing side, and its receiving side.
pub(crate) fn subscription_channel<T: Clone>(capacity: usize) -> (Sender<T>, Receiver<T>) {
    let (mut sender, receiver) = async_broadcast::broadcast(capacity.max(1));
    sender.set_overflow(true);
    (sender, receiver)
}

/// A value that changes over time, observed by any number of [`WatchStream`]s.
#[derive(Debug)]
pub(crate) struct Watch {
    current: Mutex<Arc<NodeSet>>,
    sender: Sender<Arc<NodeSet>>,
    /// Keeps the channel open while no stream watches.
    _inactive: InactiveReceiver<Arc<NodeSet>>,
}

impl Watch {
    pub(crate) fn new(initial: NodeSet) -> Self {
        let (sender, receiver) = subscription_channel(1);
        Watch { current: Mutex::new(Arc::new(initial)), sender, _inactive: receiver.deactivate() }
    }

    pub(crate) fn get(&self) -> Arc<NodeSet> {
        self.current.lock().unwrap_or_else(PoisonError::into_inner).clone()
    }

    /// Applies `changes` in order (a node inserted, or removed) and publishes
    /// the result if any of them changes the set. The set is changed in place
    /// unless a reader or a watcher still holds the current one: a change
    /// costs its own insertions and removals, not a copy of the set.
    pub(crate) fn apply<'a, I>(&self, changes: I)
    where
        I: Iterator<Item = (&'a NodeId, bool)> + Clone,
    {
        let value = {
            let mut current = self.current.lock().unwrap_or_else(PoisonError::into_inner);
            if !changes.clone().any(|(node, insert)| current.contains(node) != insert) {
                return;
            }
            let set = Arc::make_mut(&mut current);
            for (node, insert) in changes {
                if insert {
                    set.insert(node.clone());
                } else {
                    set.remove(node);
                }
            }
            current.clone()
        };
        let _ = self.sender.try_broadcast(value);
    }

    /// Makes this watch hold `other`'s current set, shared rather than a copy,
    /// when the two are equal (the ready set is the live set in a cluster
    /// where every node is ready): one copy of the identities instead of two.
    /// Nothing is published: the value does not change. The next change of
    /// either copies the set first ([`Arc::make_mut`]).
    pub(crate) fn share_if_equal(&self, other: &Watch) {
        let theirs = other.get();
        let mut current = self.current.lock().unwrap_or_else(PoisonError::into_inner);
        if !Arc::ptr_eq(&current, &theirs) && current.len() == theirs.len() && **current == *theirs {
            *current = theirs;
        }
    }

    /// Publishes `value` if it differs from the current one.
    pub(crate) fn publish(&self, value: NodeSet) {
        let value = {
            let mut current = self.current.lock().unwrap_or_else(PoisonError::into_inner);
            if **current == value {
                return;
            }
            *current = Arc::new(value);
            current.clone()
        };
        // Full is impossible with overflow on; Inactive (no watcher) and Closed are fine.
        let _ = self.sender.try_broadcast(value);
    }

    pub(crate) fn close(&self) {
        self.sender.close();
    }

    pub(crate) fn watch(&self) -> WatchStream {
        // Subscribe first, then read: a change in between shows up twice at worst,
        // and the stream skips repeats.
        let receiver = self.sender.new_receiver();
        WatchStream { first: Some(self.get()), last: None, receiver }
    }
}

/// The current set of nodes, then each change of it: a watch. A slow watcher
/// skips intermediate values and sees the latest. It ends when the node stops.
/// Each item is the set the node published, shared, not copied.
#[derive(Debug)]
pub struct WatchStream {
    first: Option<Arc<NodeSet>>,
    last: Option<Arc<NodeSet>>,
    receiver: Receiver<Arc<NodeSet>>,
}

impl Stream for WatchStream {
    type Item = Arc<NodeSet>;

    fn poll_next(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Option<Arc<NodeSet>>> {
        let this = &mut *self;
        if let Some(first) = this.first.take() {
            this.last = Some(first.clone());
            return Poll::Ready(Some(first));
        }
        loop {
            match Pin::new(&mut this.receiver).poll_next(cx) {
                Poll::Ready(Some(value)) => {
                    if this.last.as_ref().is_some_and(|last| **last == *value) {
                        continue;
                    }
                    this.last = Some(value.clone());
                    return Poll::Ready(Some(value));
                }
                Poll::Ready(None) => return Poll::Ready(None),
                Poll::Pending => return Poll::Pending,
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use std::net::SocketAddr;

    use futures_lite::StreamExt;

    use super::*;

    fn node(port: u16) -> NodeId {
        NodeId::new(format!("n{port}"), 1, SocketAddr::from(([127, 0, 0, 1], port)))
    }

    /// Changes apply in order; a batch that changes nothing publishes
    /// nothing; a set a reader holds is never changed under it.
    #[test]
    fn a_watch_applies_changes_without_touching_what_readers_hold() {
        let watch = Watch::new(NodeSet::from([node(1)]));
        let mut stream = watch.watch();
        assert_eq!(futures_lite::future::block_on(stream.next()).as_deref(), Some(&NodeSet::from([node(1)])));
        let held = watch.get();
        let (two, one) = (node(2), node(1));
        watch.apply([(&two, true), (&one, false)].into_iter());
        assert_eq!(*held, NodeSet::from([node(1)]), "a reader's snapshot stays");
        assert_eq!(*watch.get(), NodeSet::from([node(2)]));
        assert_eq!(futures_lite::future::block_on(stream.next()).as_deref(), Some(&NodeSet::from([node(2)])));
        // Already so: nothing published.
        watch.apply([(&two, true), (&one, false)].into_iter());
        watch.apply([(&one, true)].into_iter());
        assert_eq!(
            futures_lite::future::block_on(stream.next()).as_deref(),
            Some(&NodeSet::from([node(1), node(2)]))
        );
        drop(held);
        watch.apply([(&one, true), (&one, false)].into_iter());
        assert_eq!(*watch.get(), NodeSet::from([node(2)]), "in order: inserted, then removed");
    }

    /// Two watches of equal sets share one; a change of either leaves the
    /// other as it was.
    #[test]
    fn equal_watches_share_their_set_until_one_changes() {
        let (one, two) = (node(1), node(2));
        let live = Watch::new(NodeSet::from([one.clone(), two.clone()]));
        let ready = Watch::new(NodeSet::from([one.clone()]));
        ready.share_if_equal(&live);
        assert!(!Arc::ptr_eq(&ready.get(), &live.get()), "not equal: not shared");
        ready.apply([(&two, true)].into_iter());
        ready.share_if_equal(&live);
        assert!(Arc::ptr_eq(&ready.get(), &live.get()));
        live.apply([(&two, false)].into_iter());
        assert_eq!(*live.get(), NodeSet::from([one.clone()]));
        assert_eq!(*ready.get(), NodeSet::from([one, two]));
    }
}
