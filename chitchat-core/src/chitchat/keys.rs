//! User input: this node's keys, and leaving the cluster.

use crate::chitchat::Chitchat;
use crate::error::KeyValueError;
use crate::events::Event;
use crate::leave::{self, MAX_FAREWELLS, Phase};
use crate::membership::NodeStatus;
use crate::node_state::{MAX_STATE_BYTES, RESERVED_PREFIX, ValueStatus};
use crate::time::Timestamp;

impl Chitchat {
    /// Sets a key of this node at `now`. Setting the value it already has
    /// changes nothing.
    ///
    /// Fails, and changes nothing, if the key is empty, starts with
    /// [`crate::RESERVED_PREFIX`] or is longer than `max_key_len`, the value longer than `max_value_len`, the node would
    /// hold more than `max_keys_per_node` keys, or the node has left.
    pub fn set(&mut self, now: Timestamp, key: &str, value: &str) -> Result<(), KeyValueError> {
        let now = self.clock.advance(now);
        self.set_own(key, value, ValueStatus::Set, now)
    }

    /// Sets a key that expires on every node a deletion grace period after that
    /// node learns of it. Fails as [`Chitchat::set`] does.
    pub fn set_with_ttl(&mut self, now: Timestamp, key: &str, value: &str) -> Result<(), KeyValueError> {
        let now = self.clock.advance(now);
        self.set_own(key, value, ValueStatus::SetWithTtl, now)
    }

    /// Deletes a key, leaving a tombstone that is collected after the deletion
    /// grace period. Deleting an absent key does nothing.
    pub fn delete(&mut self, now: Timestamp, key: &str) -> Result<(), KeyValueError> {
        let now = self.clock.advance(now);
        if self.get(key).is_none() {
            self.check_running()?;
            return Ok(());
        }
        self.set_own(key, "", ValueStatus::Deleted, now)
    }

    /// Gives an existing key a time to live: it expires a deletion grace period
    /// from now (on each node, from when it learns of it). Absent keys are ignored.
    pub fn delete_after_ttl(&mut self, now: Timestamp, key: &str) -> Result<(), KeyValueError> {
        let now = self.clock.advance(now);
        let Some(value) = self.get(key).map(str::to_string) else {
            self.check_running()?;
            return Ok(());
        };
        self.set_own(key, &value, ValueStatus::SetWithTtl, now)
    }

    fn check_running(&self) -> Result<(), KeyValueError> {
        match self.phase {
            Phase::Running => Ok(()),
            _ => Err(KeyValueError::NotRunning),
        }
    }

    fn set_own(
        &mut self,
        key: &str,
        value: &str,
        status: ValueStatus,
        now: Timestamp,
    ) -> Result<(), KeyValueError> {
        self.check_running()?;
        let config = self.config();
        if key.is_empty() {
            return Err(KeyValueError::EmptyKey);
        }
        if key.starts_with(RESERVED_PREFIX) {
            return Err(KeyValueError::ReservedKey);
        }
        if key.len() > config.max_key_len {
            return Err(KeyValueError::KeyTooLong { len: key.len(), max: config.max_key_len });
        }
        if value.len() > config.max_value_len {
            return Err(KeyValueError::ValueTooLong { len: value.len(), max: config.max_value_len });
        }
        let max_keys = config.max_keys_per_node;
        let state = &self.cluster.self_entry().state;
        if !state.contains_key(key) && state.num_records() >= max_keys {
            return Err(KeyValueError::TooManyKeys { max: max_keys });
        }
        if !state.has_room_for(key, value.len()) {
            return Err(KeyValueError::StateTooLarge { max: MAX_STATE_BYTES });
        }
        self.cluster.change_own_state(|state| {
            if !state.set_own(key, value, status, now) {
                return None;
            }
            let node = state.id().clone();
            Some(match status {
                ValueStatus::Deleted => Event::KeyDeleted { node, key: key.into() },
                _ => {
                    Event::KeySet { node, key: key.into(), value: value.into(), version: state.max_version() }
                }
            })
        });
        Ok(())
    }

    /// Leaves the cluster: farewells go to up to 16 live peers, those that
    /// answered this node (whose own answers proved this node's address to
    /// them) first, which mark this node as left at once (the rest learn it
    /// by gossip). Once the farewells have
    /// been polled, [`Event::NodeLeft`] for this node is emitted and the node stops:
    /// no more timers, datagrams are refused, own state is frozen.
    pub fn leave(&mut self, now: Timestamp) {
        let now = self.clock.advance(now);
        if self.phase != Phase::Running {
            return;
        }
        self.cluster.leave(now);
        let farewell = leave::farewell(&self.cluster.self_entry().state);
        let mut peers: Vec<_> = self
            .cluster
            .membership()
            .entries()
            .filter(|entry| entry.status == NodeStatus::Live && entry.vouched())
            .map(|entry| (!entry.address_validated(), entry.state.id().gossip_addr()))
            .collect();
        self.rng.shuffle(&mut peers);
        peers.sort_by_key(|(unvalidated, _)| *unvalidated);
        let peers: Vec<_> = peers.into_iter().take(MAX_FAREWELLS).map(|(_, addr)| addr).collect();
        self.timers.stop_all();
        let streams = self.streams.clear() as u64;
        self.cluster.metrics_mut().streams.failed += streams;
        self.phase = Phase::Leaving { farewells_left: 0 };
        let mut queued = 0;
        for peer in peers {
            if self.queue(peer, farewell.clone(), true) {
                queued += 1;
            }
        }
        self.phase = Phase::Leaving { farewells_left: queued };
        if self.phase.finish_if_done() {
            self.cluster.report_self_left();
        }
    }
}
