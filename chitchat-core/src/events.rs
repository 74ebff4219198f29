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
///
/// Events wait in a compact form: the identity they name is kept once for a
/// run of events about the same node (a delta's key events come a node at a
/// time) and referred to by a 4-byte number, so that a waiting key event
/// costs 64 bytes, not [`Event`]'s 96; [`EventQueue::pop`] gives it back
/// whole. A catch-up queues thousands of events at once.
#[derive(Debug)]
pub(crate) struct EventQueue {
    events: VecDeque<Queued>,
    /// The identities `events` name, in the order they were queued: the
    /// first is number `first_id` (wrapping), the next `first_id + 1`, and
    /// so on. At most one for each queued event.
    ids: VecDeque<NodeId>,
    first_id: u32,
    /// Within `u32`, so that the identities' numbers never wrap onto one
    /// still held.
    bound: usize,
    pub dropped: u64,
}

/// What happened to a key, for [`EventQueue::push_key`].
#[derive(Debug)]
pub(crate) enum KeyChange {
    /// [`Event::KeySet`].
    Set { value: CompactString, version: u64 },
    /// [`Event::KeyDeleted`].
    Deleted,
}

/// The number of an identity in [`EventQueue::ids`].
pub(crate) type IdRef = u32;

/// An [`Event`] waiting in the queue, its identities by number.
#[derive(Debug)]
enum Queued {
    Joined(IdRef),
    Live(IdRef),
    Dead(IdRef),
    Left(IdRef),
    Removed(IdRef),
    Reset(IdRef),
    Restarted { previous: IdRef, current: IdRef },
    Ready { node: IdRef, ready: bool },
    KeySet { node: IdRef, key: CompactString, value: CompactString, version: u64 },
    KeyDeleted { node: IdRef, key: CompactString },
    KeyExpired { node: IdRef, key: CompactString },
}

impl Queued {
    /// The lowest identity number it names (a restart names its previous
    /// incarnation first).
    fn first_id(&self) -> IdRef {
        match self {
            Queued::Joined(node)
            | Queued::Live(node)
            | Queued::Dead(node)
            | Queued::Left(node)
            | Queued::Removed(node)
            | Queued::Reset(node)
            | Queued::Ready { node, .. }
            | Queued::KeySet { node, .. }
            | Queued::KeyDeleted { node, .. }
            | Queued::KeyExpired { node, .. } => *node,
            Queued::Restarted { previous, .. } => *previous,
        }
    }
}

/// The events a drained queue keeps room for.
const IDLE_CAPACITY: usize = 4;

impl EventQueue {
    pub(crate) fn new(bound: usize) -> Self {
        EventQueue {
            events: VecDeque::new(),
            ids: VecDeque::new(),
            first_id: 0,
            bound: bound.min(u32::MAX as usize),
            dropped: 0,
        }
    }

    /// The number of `id`, queued after the others unless it is the last
    /// one queued (cloned only then).
    fn intern(&mut self, id: &NodeId) -> IdRef {
        let last = self.first_id.wrapping_add(self.ids.len() as u32);
        if self.ids.back() == Some(id) {
            return last.wrapping_sub(1);
        }
        self.ids.push_back(id.clone());
        last
    }

    fn id(&self, id: IdRef) -> NodeId {
        self.ids[id.wrapping_sub(self.first_id) as usize].clone()
    }

    pub(crate) fn push(&mut self, event: Event) {
        self.make_room();
        let queued = match event {
            Event::NodeJoined(node) => Queued::Joined(self.intern(&node)),
            Event::NodeLive(node) => Queued::Live(self.intern(&node)),
            Event::NodeDead(node) => Queued::Dead(self.intern(&node)),
            Event::NodeLeft(node) => Queued::Left(self.intern(&node)),
            Event::NodeRemoved(node) => Queued::Removed(self.intern(&node)),
            Event::NodeReset(node) => Queued::Reset(self.intern(&node)),
            Event::NodeRestarted { previous, current } => {
                Queued::Restarted { previous: self.intern(&previous), current: self.intern(&current) }
            }
            Event::ReadyChanged { node, ready } => Queued::Ready { node: self.intern(&node), ready },
            Event::KeySet { node, key, value, version } => {
                Queued::KeySet { node: self.intern(&node), key, value, version }
            }
            Event::KeyDeleted { node, key } => Queued::KeyDeleted { node: self.intern(&node), key },
            Event::KeyExpired { node, key } => Queued::KeyExpired { node: self.intern(&node), key },
        };
        self.events.push_back(queued);
    }

    /// Queues a key event about `node` (cloned only if the last event queued
    /// is not about it: a section's key events come a node at a time, and
    /// this spares each one building an [`Event`] around a clone).
    /// `numbered`: the number the previous call about `node` returned, if
    /// any. Returns the number the event names `node` by.
    pub(crate) fn push_key(
        &mut self,
        node: &NodeId,
        numbered: Option<IdRef>,
        key: CompactString,
        change: KeyChange,
    ) -> IdRef {
        self.make_room();
        let node = match numbered {
            // Still the last identity queued: the event names it without
            // comparing identities (a section's records are one node's).
            Some(number) if self.is_last_id(number) => number,
            _ => self.intern(node),
        };
        self.events.push_back(match change {
            KeyChange::Set { value, version } => Queued::KeySet { node, key, value, version },
            KeyChange::Deleted => Queued::KeyDeleted { node, key },
        });
        node
    }

    /// Whether `number` is that of the last identity queued.
    fn is_last_id(&self, number: IdRef) -> bool {
        !self.ids.is_empty() && number == self.first_id.wrapping_add(self.ids.len() as u32 - 1)
    }

    /// Drops the oldest event if the queue is at its bound.
    fn make_room(&mut self) {
        if self.events.len() >= self.bound {
            self.events.pop_front();
            self.forget_unnamed_ids();
            self.dropped += 1;
        }
    }

    /// Makes room for `additional` events (within the bound).
    pub(crate) fn reserve(&mut self, additional: usize) {
        self.events.reserve(additional.min(self.bound.saturating_sub(self.events.len())));
    }

    /// Forgets the identities queued before the first event's: no event
    /// names them any more (events name identities in the order queued).
    fn forget_unnamed_ids(&mut self) {
        let named_from = self.events.front().map(Queued::first_id);
        while !self.ids.is_empty() && named_from.is_none_or(|first| first != self.first_id) {
            self.ids.pop_front();
            self.first_id = self.first_id.wrapping_add(1);
        }
    }

    /// The event `queued` stands for.
    fn event(&self, queued: Queued) -> Event {
        match queued {
            Queued::Joined(node) => Event::NodeJoined(self.id(node)),
            Queued::Live(node) => Event::NodeLive(self.id(node)),
            Queued::Dead(node) => Event::NodeDead(self.id(node)),
            Queued::Left(node) => Event::NodeLeft(self.id(node)),
            Queued::Removed(node) => Event::NodeRemoved(self.id(node)),
            Queued::Reset(node) => Event::NodeReset(self.id(node)),
            Queued::Restarted { previous, current } => {
                Event::NodeRestarted { previous: self.id(previous), current: self.id(current) }
            }
            Queued::Ready { node, ready } => Event::ReadyChanged { node: self.id(node), ready },
            Queued::KeySet { node, key, value, version } => {
                Event::KeySet { node: self.id(node), key, value, version }
            }
            Queued::KeyDeleted { node, key } => Event::KeyDeleted { node: self.id(node), key },
            Queued::KeyExpired { node, key } => Event::KeyExpired { node: self.id(node), key },
        }
    }

    pub(crate) fn pop(&mut self) -> Option<Event> {
        let event = self.events.pop_front().map(|queued| self.event(queued));
        self.forget_unnamed_ids();
        // A burst (a big delta is thousands of key events) must not pin its
        // memory once drained, nor a cold start's, nor room reserved for a
        // delta whose records were all old news: an idle node keeps room for
        // a few events (a settled cluster has none most rounds), not 64 (8 KB
        // a node, 3 % of a node of a 1,000-node cluster).
        if self.events.is_empty() {
            if self.events.capacity() > IDLE_CAPACITY {
                self.events.shrink_to(IDLE_CAPACITY);
            }
            if self.ids.capacity() > IDLE_CAPACITY {
                self.ids.shrink_to(IDLE_CAPACITY);
            }
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

    /// Room reserved for events that never came (a delta of old news) is
    /// released when the application finds the queue empty.
    #[test]
    fn reserved_room_is_released_once_polled_empty() {
        let mut queue = EventQueue::new(1_000);
        queue.reserve(500);
        assert!(queue.events.capacity() >= 500);
        assert_eq!(queue.pop(), None);
        assert!(queue.events.capacity() <= IDLE_CAPACITY);
    }

    /// A waiting key event is 64 bytes, as the queue's documentation says.
    #[test]
    fn a_queued_key_event_is_64_bytes() {
        assert_eq!(std::mem::size_of::<Queued>(), 64);
        assert_eq!(std::mem::size_of::<Event>(), 96);
    }

    fn event(kind: u8, node: u8, other: u8) -> Event {
        let id = |n: u8| NodeId::new(format!("node-{n}"), u64::from(n % 3), "127.0.0.1:1".parse().unwrap());
        let key = CompactString::from(format!("key-{other}"));
        match kind % 11 {
            0 => Event::NodeJoined(id(node)),
            1 => Event::NodeLive(id(node)),
            2 => Event::NodeDead(id(node)),
            3 => Event::NodeLeft(id(node)),
            4 => Event::NodeRemoved(id(node)),
            5 => Event::NodeReset(id(node)),
            6 => Event::NodeRestarted { previous: id(node), current: id(other) },
            7 => Event::ReadyChanged { node: id(node), ready: other.is_multiple_of(2) },
            8 => Event::KeySet {
                node: id(node),
                key,
                value: "v".repeat(usize::from(other)).into(),
                version: 7,
            },
            9 => Event::KeyDeleted { node: id(node), key },
            _ => Event::KeyExpired { node: id(node), key },
        }
    }

    proptest::proptest! {
        /// The queue gives back what a plain queue of events would, in the
        /// same order, whatever the mix of pushes (of events, or of key
        /// changes by [`EventQueue::push_key`]), pops and drops past the
        /// bound; and it holds no identity once drained.
        #[test]
        fn the_queue_gives_back_what_was_pushed(
            bound in 1usize..8,
            steps in proptest::collection::vec((0u8..4, 0u8..11, 0u8..4, 0u8..40), 0..200),
        ) {
            let mut queue = EventQueue::new(bound);
            let mut model = VecDeque::new();
            let mut dropped = 0;
            let mut numbered: Option<(NodeId, IdRef)> = None;
            for (action, kind, node, other) in steps {
                if action == 0 {
                    proptest::prop_assert_eq!(queue.pop(), model.pop_front());
                } else {
                    let event = event(kind, node, other);
                    if model.len() == bound {
                        model.pop_front();
                        dropped += 1;
                    }
                    model.push_back(event.clone());
                    // A key change names its node by the number the last
                    // one about the same node returned, if there was one.
                    let number = |node: &NodeId| numbered.as_ref().filter(|(last, _)| last == node).map(|(_, id)| *id);
                    match event {
                        Event::KeySet { node, key, value, version } if action == 1 => {
                            let id = queue.push_key(&node, number(&node), key, KeyChange::Set { value, version });
                            numbered = Some((node, id));
                        }
                        Event::KeyDeleted { node, key } if action == 1 => {
                            let id = queue.push_key(&node, number(&node), key, KeyChange::Deleted);
                            numbered = Some((node, id));
                        }
                        event => queue.push(event),
                    }
                }
                proptest::prop_assert_eq!(queue.len(), model.len());
                proptest::prop_assert!(queue.ids.len() <= 2 * queue.len());
                proptest::prop_assert_eq!(queue.dropped, dropped);
            }
            while let Some(event) = model.pop_front() {
                proptest::prop_assert_eq!(queue.pop(), Some(event));
            }
            proptest::prop_assert_eq!(queue.pop(), None);
            proptest::prop_assert!(queue.ids.is_empty());
        }
    }
}
