//! What happened, for the application: membership and key changes.

use std::collections::VecDeque;

use compact_str::CompactString;
use serde::{Deserialize, Serialize};

use crate::identity::NodeId;

/// Something the application may want to react to, pulled with
/// [`crate::Chitchat::poll_event`]. Key events are emitted for this node's own keys
/// as well as for remote ones.
///
/// Keys and values are [`CompactString`]s: held inline up to 24 bytes, so
/// that the thousands of key events of a catch-up mostly allocate nothing.
/// They read as `&str` and compare with strings; `to_string()` or
/// `String::from` gives a `String`.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[non_exhaustive]
pub enum Event {
    /// A node was vouched for: heard of from a sender that proved its address
    /// (it echoed a token of this node, or wrote from a validated address),
    /// or heard at its own address once validated. A node heard of only from
    /// senders that proved nothing (a blind spoofer can name anything) is in
    /// no view and raises no event until then; its status event and its keys
    /// follow this one.
    NodeJoined(NodeId),
    /// A node became live: right after it joined, or when a node seen dead
    /// talked to this node again (hearsay does not revive the dead).
    NodeLive(NodeId),
    /// A node's phi crossed the threshold.
    NodeDead(NodeId),
    /// A node announced that it leaves. For this node itself, emitted once its
    /// farewell datagrams have all been polled: it then takes no further part.
    NodeLeft(NodeId),
    /// A node was forgotten (dead or left for the grace period, or superseded).
    NodeRemoved(NodeId),
    /// A node restarted: `current` supersedes `previous`, which was removed.
    NodeRestarted {
        /// The old incarnation.
        previous: NodeId,
        /// The new one.
        current: NodeId,
    },
    /// This node's view of a peer was older than that peer's garbage collection,
    /// so it was replaced wholesale. Key events describing the difference follow.
    NodeReset(NodeId),
    /// A node's readiness (live and passing the ready predicate) changed.
    ReadyChanged {
        /// The node.
        node: NodeId,
        /// Whether it is now ready.
        ready: bool,
    },
    /// A key was set (or its value changed, or it got a time to live).
    KeySet {
        /// The key's owner.
        node: NodeId,
        /// The key.
        key: CompactString,
        /// Its new value.
        value: CompactString,
        /// The owner's version of it.
        version: u64,
    },
    /// A key was deleted.
    KeyDeleted {
        /// The key's owner.
        node: NodeId,
        /// The key.
        key: CompactString,
    },
    /// A key set with a time to live expired.
    KeyExpired {
        /// The key's owner.
        node: NodeId,
        /// The key.
        key: CompactString,
    },
}

impl Event {
    /// How this event changes [`crate::Chitchat::live_nodes`]: the node it
    /// adds (`true`: `NodeLive`) or removes (`false`: `NodeDead`, `NodeLeft`,
    /// `NodeRemoved`). A node's events, folded in order from its start, give
    /// its live set, unless some were dropped (`Metrics::events_dropped`).
    pub fn live_change(&self) -> Option<(&NodeId, bool)> {
        match self {
            Event::NodeLive(node) => Some((node, true)),
            Event::NodeDead(node) | Event::NodeLeft(node) | Event::NodeRemoved(node) => Some((node, false)),
            _ => None,
        }
    }

    /// How this event changes [`crate::Chitchat::ready_nodes`], as
    /// [`Event::live_change`] does the live set (`ReadyChanged`).
    pub fn ready_change(&self) -> Option<(&NodeId, bool)> {
        match self {
            Event::ReadyChanged { node, ready } => Some((node, *ready)),
            _ => None,
        }
    }
}

/// Events not yet polled, bounded by [`crate::Config::max_pending_events`]: past
/// the bound the oldest is dropped and counted.
#[derive(Debug)]
pub(crate) struct EventQueue {
    events: VecDeque<Event>,
    bound: usize,
    pub dropped: u64,
}

/// The events a drained queue keeps room for.
const IDLE_CAPACITY: usize = 4;

impl EventQueue {
    pub(crate) fn new(bound: usize) -> Self {
        EventQueue { events: VecDeque::new(), bound, dropped: 0 }
    }

    pub(crate) fn push(&mut self, event: Event) {
        if self.events.len() >= self.bound {
            self.events.pop_front();
            self.dropped += 1;
        }
        self.events.push_back(event);
    }

    /// Makes room for `additional` events (within the bound).
    pub(crate) fn reserve(&mut self, additional: usize) {
        self.events.reserve(additional.min(self.bound.saturating_sub(self.events.len())));
    }

    pub(crate) fn pop(&mut self) -> Option<Event> {
        let event = self.events.pop_front();
        // A burst (a big delta is thousands of key events) must not pin its
        // memory once drained, nor a cold start's: an idle node keeps room
        // for a few events (a settled cluster has none most rounds), not 64
        // (8 KB a node, 3 % of a node of a 1,000-node cluster).
        if self.events.is_empty() && self.events.capacity() > IDLE_CAPACITY {
            self.events.shrink_to(IDLE_CAPACITY);
        }
        event
    }

    pub(crate) fn len(&self) -> usize {
        self.events.len()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn queue_drops_the_oldest_past_its_bound() {
        let mut queue = EventQueue::new(2);
        let node = |n: u64| NodeId::new("a", n, "127.0.0.1:1".parse().unwrap());
        for generation in 0..5 {
            queue.push(Event::NodeJoined(node(generation)));
        }
        assert_eq!(queue.len(), 2);
        assert_eq!(queue.dropped, 3);
        assert_eq!(queue.pop(), Some(Event::NodeJoined(node(3))));
    }
}
