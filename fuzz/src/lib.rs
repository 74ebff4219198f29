//! Shared pieces of the fuzz targets: a node that already knows a cluster,
//! `Arbitrary`-driven builders of hostile messages, and the checks every target
//! runs after feeding a node (state unchanged on `Err`, invariants on `Ok`).

pub mod cluster;
pub mod hostile;
pub mod probe;
