//! Graceful leave: the node's phase, and the farewells that let peers mark it
//! left at once instead of waiting for the failure detector.

use crate::node_state::NodeState;
use crate::wire::{Delta, Message, NodeDelta, NodeRef};

/// Farewells are sent to at most this many live peers; the others learn of the
/// leave by gossip.
pub(crate) const MAX_FAREWELLS: usize = 16;

/// Where the node is in its life.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) enum Phase {
    Running,
    /// Farewells are queued; `NodeLeft` follows once they are all polled.
    Leaving {
        farewells_left: usize,
    },
    Left,
}

impl Phase {
    /// One farewell left the outbox (sent or dropped). Returns whether that
    /// was the last: the node has now left.
    pub(crate) fn farewell_gone(&mut self) -> bool {
        if let Phase::Leaving { farewells_left } = self {
            *farewells_left = farewells_left.saturating_sub(1);
        }
        self.finish_if_done()
    }

    /// If no farewell is left to send, the node has left. Returns whether this
    /// call made it so.
    pub(crate) fn finish_if_done(&mut self) -> bool {
        if *self == (Phase::Leaving { farewells_left: 0 }) {
            *self = Phase::Left;
            return true;
        }
        false
    }
}

/// The farewell of a node that leaves: its identity and heartbeat, marked left.
pub(crate) fn farewell(state: &NodeState) -> Message {
    let section = NodeDelta {
        node: NodeRef::Full(state.id().clone()),
        heartbeat: state.heartbeat(),
        reset: false,
        from_version: 0,
        last_gc_version: 0,
        max_version: 0,
        left: true,
        key_values: Vec::new(),
    };
    Message::Ack { delta: Delta { nodes: vec![section], more: false } }
}
