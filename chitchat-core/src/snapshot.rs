//! A serializable copy of what a node knows.

use std::net::SocketAddr;

use serde::{Deserialize, Serialize};

use crate::identity::NodeId;
use crate::membership::NodeStatus;
use crate::node_state::VersionedValue;

/// Everything a node knows of its cluster, from [`crate::Chitchat::snapshot`].
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct ClusterSnapshot {
    /// The cluster's id.
    pub cluster_id: String,
    /// The node that took the snapshot.
    pub self_id: NodeId,
    /// Its seed addresses.
    pub seed_addrs: Vec<SocketAddr>,
    /// Every tracked node, in fingerprint order.
    pub nodes: Vec<NodeSnapshot>,
}

/// One node in a [`ClusterSnapshot`].
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct NodeSnapshot {
    /// Its identity.
    pub id: NodeId,
    /// Its liveness as the snapshot's node sees it.
    pub status: NodeStatus,
    /// Whether it is ready.
    pub ready: bool,
    /// Its heartbeat.
    pub heartbeat: u64,
    /// The highest version held.
    pub max_version: u64,
    /// The highest version garbage-collected.
    pub last_gc_version: u64,
    /// Whether it announced it leaves.
    pub has_left: bool,
    /// Its records (tombstones included), by key.
    pub key_values: Vec<(String, VersionedValue)>,
}

impl ClusterSnapshot {
    /// The snapshot of one node.
    pub fn node(&self, name: &str) -> Option<&NodeSnapshot> {
        self.nodes.iter().find(|node| node.id.name() == name)
    }
}
