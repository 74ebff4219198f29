//! What the node task hands to the subscribers: the core's events, the live and
//! ready sets, and the current state a subscription with current values starts
//! from.
//!
//! Everything here runs inside the node task, between two inputs to the core, so
//! a subscription that starts with current values cannot miss a change nor see
//! one twice: pending events are handed to the existing subscribers first, then
//! the current state is read and the new subscriber registered, before the core
//! takes its next input.

use std::sync::PoisonError;
use std::sync::atomic::Ordering;

use async_broadcast::{Receiver, Sender};
use chitchat_core::{Chitchat, Event, NodeId};

use crate::handle::{KeySubscriber, Shared};
use crate::streams::{KeyChange, ReadyChange, subscription_channel};

/// Events handed over at a time: a catch-up queues tens of thousands, which
/// wait in the core's compact queue rather than all at once here (a batch
/// is 96 KB, which the allocator serves from memory it keeps rather than by
/// mapping and unmapping megabytes).
const BATCH: usize = 1_000;

/// Publishes the live and ready sets if membership changed, then hands the
/// core's pending events to the subscribers, a batch at a time.
///
/// The sets follow the events ([`Event::live_change`],
/// [`Event::ready_change`]): a batch of events changes them by what it names (a cold start
/// changes membership at nearly every datagram: rebuilding the sets from the
/// core each time cost a copy of every identity). If the core dropped events
/// (its queue was full), the sets are rebuilt from the core instead.
pub(crate) fn publish_events(chitchat: &mut Chitchat, shared: &Shared) {
    let mut events = Vec::new();
    loop {
        events.clear();
        events.extend(std::iter::from_fn(|| chitchat.poll_event()).take(BATCH));
        if events.is_empty() {
            break;
        }
        publish_batch(chitchat, shared, &events);
        debug_assert!(
            chitchat.pending_events() > 0
                || (shared.live.get().iter().eq(sorted(chitchat.live_nodes()))
                    && shared.ready.get().iter().eq(sorted(chitchat.ready_nodes()))),
            "the published sets follow the core's"
        );
    }
}

/// The sets, then the subscribers, for one batch of events.
fn publish_batch(chitchat: &Chitchat, shared: &Shared, events: &[Event]) {
    // The sets first: a subscriber that receives an item and then reads
    // `live_nodes` or `ready_nodes` finds them up to date with it.
    let dropped = chitchat.metrics().events_dropped;
    if shared.events_dropped.swap(dropped, Ordering::Relaxed) != dropped {
        shared.live.publish(chitchat.live_nodes().cloned().collect());
        shared.ready.publish(chitchat.ready_nodes().cloned().collect());
    } else {
        shared.live.apply(events.iter().filter_map(Event::live_change));
        shared.ready.apply(events.iter().filter_map(Event::ready_change));
    }
    // Every live node is ready in most clusters: one set, not two copies.
    shared.ready.share_if_equal(&shared.live);
    dispatch(chitchat, shared, events);
}

/// Nodes in the sets' order.
fn sorted<'a>(nodes: impl Iterator<Item = &'a NodeId>) -> impl Iterator<Item = &'a NodeId> {
    let mut nodes: Vec<&NodeId> = nodes.collect();
    nodes.sort_unstable();
    nodes.into_iter()
}

fn dispatch(chitchat: &Chitchat, shared: &Shared, events: &[Event]) {
    let mut key_subscribers = shared.key_subscribers.lock().unwrap_or_else(PoisonError::into_inner);
    key_subscribers.retain(|subscriber| subscriber.sender.receiver_count() > 0);
    if !key_subscribers.is_empty() {
        for change in events.iter().filter_map(KeyChange::from_event) {
            for KeySubscriber { prefix, sender } in key_subscribers.iter() {
                if change.key().starts_with(prefix.as_str()) {
                    // With overflow on, a full buffer drops its oldest item.
                    let _ = sender.try_broadcast(change.clone());
                }
            }
        }
    }
    drop(key_subscribers);

    let mut ready_subscribers = shared.ready_subscribers.lock().unwrap_or_else(PoisonError::into_inner);
    ready_subscribers.retain(|sender| sender.receiver_count() > 0);
    if !ready_subscribers.is_empty() {
        for event in events {
            if let Event::ReadyChanged { node, ready } = event {
                let change = ready_change(chitchat, node, *ready);
                for sender in ready_subscribers.iter() {
                    let _ = sender.try_broadcast(change.clone());
                }
            }
        }
    }
    drop(ready_subscribers);

    let mut event_subscribers = shared.event_subscribers.lock().unwrap_or_else(PoisonError::into_inner);
    event_subscribers.retain(|sender| sender.receiver_count() > 0);
    for sender in event_subscribers.iter() {
        for event in events {
            let _ = sender.try_broadcast(event.clone());
        }
    }
}

/// A readiness change of `node`, with what the core holds of it now.
fn ready_change(chitchat: &Chitchat, node: &NodeId, ready: bool) -> ReadyChange {
    let state = chitchat.node_state(node);
    ReadyChange {
        node: node.clone(),
        ready,
        status: chitchat.node_status(node),
        max_version: state.map_or(0, |state| state.max_version()),
        key_values: state
            .map(|state| {
                state.key_values().map(|(key, value)| (key.to_string(), value.to_string())).collect()
            })
            .unwrap_or_default(),
    }
}

/// A subscription to the keys starting with `prefix`: first the current value of
/// every such key of every tracked node (as [`KeyChange::Set`]), in node then key
/// order, then every change.
pub(crate) fn subscribe_keys_with_current(
    chitchat: &mut Chitchat,
    shared: &Shared,
    prefix: String,
) -> Receiver<KeyChange> {
    publish_events(chitchat, shared);
    let mut current = Vec::new();
    let mut states: Vec<_> = chitchat.node_states().collect();
    states.sort_by(|a, b| a.id().cmp(b.id()));
    for state in states {
        for (key, record) in state.records() {
            if record.is_visible() && key.starts_with(prefix.as_str()) {
                let (node, key, value) = (state.id().clone(), key.into(), record.value.into());
                current.push(KeyChange::Set { node, key, value, version: record.version });
            }
        }
    }
    let (sender, receiver) = prefilled_channel(shared, current);
    // The task is running: `Shared::stop` closes this subscriber when it stops.
    shared
        .key_subscribers
        .lock()
        .unwrap_or_else(PoisonError::into_inner)
        .push(KeySubscriber { prefix, sender });
    receiver
}

/// A subscription to readiness changes: first every node ready now (as
/// `ready: true`), in node order, then every change.
pub(crate) fn subscribe_ready(chitchat: &mut Chitchat, shared: &Shared) -> Receiver<ReadyChange> {
    publish_events(chitchat, shared);
    let mut ready: Vec<NodeId> = chitchat.ready_nodes().cloned().collect();
    ready.sort();
    let current = ready.iter().map(|node| ready_change(chitchat, node, true)).collect();
    let (sender, receiver) = prefilled_channel(shared, current);
    shared.ready_subscribers.lock().unwrap_or_else(PoisonError::into_inner).push(sender);
    receiver
}

/// A subscription channel holding `current`, with room for them and the usual
/// capacity for the changes that follow.
fn prefilled_channel<T: Clone>(shared: &Shared, current: Vec<T>) -> (Sender<T>, Receiver<T>) {
    let (sender, receiver) = subscription_channel(shared.subscription_capacity + current.len());
    for item in current {
        let _ = sender.try_broadcast(item);
    }
    (sender, receiver)
}
