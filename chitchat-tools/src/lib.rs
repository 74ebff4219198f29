//! chitchat's tooling, kept out of the published crates (`publish = false`):
//!
//! - [`cli`]: the node command line behind every adapter's `examples/node.rs`;
//! - [`demo`]: the in-process cluster demo behind `examples/cluster.rs`;
//! - [`conformance`]: the suite every adapter's `tests/conformance.rs` runs,
//!   instantiated with [`conformance_tests!`];
//! - [`process`]: CPU time and resident memory, for the benchmarks;
//! - [`alloc`]: a counting global allocator, for the benchmarks' heap figures.
//!
//! Each takes the adapter's [`chitchat_driver::Runtime`], so the three adapters
//! share one copy. The adapters depend on this crate only as a
//! dev-dependency: a library user never builds it.

// Unsafe code is denied except in `alloc` (a global allocator cannot be written without it).
#![deny(unsafe_code)]
#![warn(missing_docs, unreachable_pub, missing_debug_implementations)]

pub mod alloc;
pub mod cli;
pub mod conformance;
pub mod demo;
pub mod process;
