//! The memory of removed identities, so that stale gossip cannot bring them
//! back.

use std::collections::{HashMap, VecDeque};
use std::net::SocketAddr;
use std::time::Duration;

use crate::identity::{Fingerprint, NodeId};
use crate::time::Timestamp;

/// Identities removed recently, with their heartbeat then, so that stale gossip
/// cannot bring them back: a removed identity is taken back only with a higher
/// heartbeat (it beat after we removed it: a partition healed) or when it talks
/// to us itself. Bounded by [`Config::max_nodes`] entries: when full, the oldest
/// is forgotten first. Each is forgotten after twice the dead-node grace period.
#[derive(Debug, Default)]
pub(crate) struct RemovedNodes {
    entries: HashMap<Fingerprint, (Timestamp, SocketAddr, u64)>,
    by_addr: HashMap<SocketAddr, Fingerprint>,
    order: VecDeque<(Timestamp, Fingerprint)>,
}

impl RemovedNodes {
    pub(crate) fn insert(&mut self, node_id: &NodeId, heartbeat: u64, until: Timestamp, bound: usize) {
        while self.order.len() >= bound {
            self.pop_oldest();
        }
        let fingerprint = node_id.fingerprint();
        self.entries.insert(fingerprint, (until, node_id.gossip_addr(), heartbeat));
        self.by_addr.insert(node_id.gossip_addr(), fingerprint);
        self.order.push_back((until, fingerprint));
    }

    fn pop_oldest(&mut self) {
        if let Some((until, fingerprint)) = self.order.pop_front()
            && self.entries.get(&fingerprint).is_some_and(|(entry_until, ..)| *entry_until == until)
        {
            self.forget(fingerprint);
        }
    }

    /// Forgets an identity (its queue entry lingers and is skipped when popped).
    pub(crate) fn forget(&mut self, fingerprint: Fingerprint) {
        if let Some((_, addr, _)) = self.entries.remove(&fingerprint)
            && self.by_addr.get(&addr) == Some(&fingerprint)
        {
            self.by_addr.remove(&addr);
        }
    }

    /// Whether the removal of `fingerprint` is remembered.
    pub(crate) fn contains(&self, fingerprint: &Fingerprint) -> bool {
        self.entries.contains_key(fingerprint)
    }

    /// Whether news of `fingerprint` with `heartbeat` may be taken: it was not
    /// removed, or it beat since.
    pub(crate) fn admits(&self, fingerprint: Fingerprint, heartbeat: u64) -> bool {
        self.entries.get(&fingerprint).is_none_or(|(_, _, removed_at)| heartbeat > *removed_at)
    }

    /// The removed identity whose gossip address is `addr`.
    pub(crate) fn fingerprint_at(&self, addr: &SocketAddr) -> Option<Fingerprint> {
        self.by_addr.get(addr).copied()
    }

    /// Makes every identity remembered for `pause` longer.
    pub(crate) fn postpone(&mut self, pause: Duration) {
        for (until, ..) in self.entries.values_mut() {
            *until += pause;
        }
        for (until, _) in &mut self.order {
            *until += pause;
        }
    }

    pub(crate) fn expire(&mut self, now: Timestamp) {
        while self.order.front().is_some_and(|(until, _)| *until <= now) {
            self.pop_oldest();
        }
    }

    pub(crate) fn len(&self) -> usize {
        self.order.len()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn removed_nodes_are_bounded_and_expire() {
        let mut removed = RemovedNodes::default();
        let id = |n: u64| NodeId::new(format!("n{n}"), 1, SocketAddr::from(([127, 0, 0, 1], n as u16)));
        for n in 0..10 {
            removed.insert(&id(n), 10, Timestamp::from_millis(100 + n), 4);
        }
        assert_eq!(removed.len(), 4);
        assert!(!removed.contains(&id(0).fingerprint()));
        assert!(removed.contains(&id(9).fingerprint()));
        assert_eq!(removed.fingerprint_at(&id(9).gossip_addr()), Some(id(9).fingerprint()));
        removed.expire(Timestamp::from_millis(108));
        assert_eq!(removed.len(), 1);
        assert!(removed.contains(&id(9).fingerprint()));
        assert!(!removed.admits(id(9).fingerprint(), 10));
        assert!(removed.admits(id(9).fingerprint(), 11));
        removed.forget(id(9).fingerprint());
        assert!(!removed.contains(&id(9).fingerprint()));
        assert_eq!(removed.fingerprint_at(&id(9).gossip_addr()), None);
    }

    #[test]
    fn a_pause_postpones_the_memory_of_removals() {
        let mut removed = RemovedNodes::default();
        let id = |n: u64| NodeId::new(format!("n{n}"), 1, SocketAddr::from(([127, 0, 0, 1], n as u16)));
        removed.insert(&id(1), 10, Timestamp::from_millis(100), 4);
        removed.insert(&id(2), 10, Timestamp::from_millis(200), 4);
        removed.postpone(Duration::from_secs(60));
        removed.expire(Timestamp::from_millis(60_050));
        assert!(removed.contains(&id(1).fingerprint()), "remembered a minute longer");
        removed.expire(Timestamp::from_millis(60_100));
        assert!(!removed.contains(&id(1).fingerprint()));
        assert!(removed.contains(&id(2).fingerprint()));
        removed.expire(Timestamp::from_millis(60_200));
        assert_eq!(removed.len(), 0);
    }
}
