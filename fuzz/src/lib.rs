//! Shared pieces of the fuzz targets: a node that already knows a cluster,
//! `Arbitrary`-driven builders of hostile messages, and the checks every target
//! runs after a node accepted a datagram (invariants on `Ok`). The check that a
//! refusal changed nothing, and the datagram builders, are the core's
//! (`chitchat_core::testing`), shared with its tests.

pub mod cluster;
pub mod hostile;
pub mod watch;
