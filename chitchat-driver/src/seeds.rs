//! Seed addresses: `host:port` strings resolved at start and again from time to
//! time. A failed resolution is logged, counted and retried (sooner than the
//! regular refresh); the seed keeps the addresses it last resolved to.

use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;

use crate::handle::{DriverCounters, Shared};
use crate::runtime::{BoxFuture, Runtime};

/// The first retry of a failed resolution comes after this; each further failure
/// doubles it, up to the refresh interval.
const FIRST_RETRY: Duration = Duration::from_secs(1);

/// The seeds of one node and what they last resolved to.
#[derive(Debug)]
pub(crate) struct Seeds {
    specs: Vec<String>,
    /// The last successful resolution of each spec.
    resolved: Vec<Vec<SocketAddr>>,
    /// Only addresses of this family can be reached from the node's socket.
    ipv4: bool,
    refresh_interval: Duration,
    /// Consecutive resolutions that had a failure.
    failed_rounds: u32,
}

/// The outcome of resolving every seed once, in spec order.
pub(crate) type Resolution = Vec<Result<Vec<SocketAddr>, String>>;

impl Seeds {
    pub(crate) fn new(specs: Vec<String>, ipv4: bool, refresh_interval: Duration) -> Self {
        let resolved = vec![Vec::new(); specs.len()];
        Seeds { specs, resolved, ipv4, refresh_interval, failed_rounds: 0 }
    }

    /// Whether any seed is a host name, so that resolving again may change it.
    pub(crate) fn needs_refresh(&self) -> bool {
        self.specs.iter().any(|spec| spec.parse::<SocketAddr>().is_err())
    }

    /// Resolves every seed once.
    pub(crate) fn resolve(&self, runtime: &Arc<dyn Runtime>) -> BoxFuture<Resolution> {
        let specs = self.specs.clone();
        let runtime = runtime.clone();
        Box::pin(async move {
            let mut resolution = Vec::with_capacity(specs.len());
            for spec in specs {
                let result = match spec.parse::<SocketAddr>() {
                    Ok(addr) => Ok(vec![addr]),
                    Err(_) => runtime.resolve(spec.clone()).await.map_err(|error| error.to_string()),
                };
                resolution.push(result);
            }
            resolution
        })
    }

    /// Takes in a resolution: returns the seed addresses to give the core, and
    /// how long to wait before resolving again.
    pub(crate) fn absorb(&mut self, resolution: Resolution, shared: &Shared) -> (Vec<SocketAddr>, Duration) {
        let mut failed = false;
        for ((spec, resolved), result) in self.specs.iter().zip(&mut self.resolved).zip(resolution) {
            let addrs: Result<Vec<SocketAddr>, String> = result.and_then(|addrs| {
                let reachable: Vec<SocketAddr> =
                    addrs.into_iter().filter(|addr| addr.is_ipv4() == self.ipv4).collect();
                match reachable.is_empty() {
                    true => Err("no address of the socket's IP version".to_string()),
                    false => Ok(reachable),
                }
            });
            match addrs {
                Ok(addrs) => *resolved = addrs,
                Err(error) => {
                    failed = true;
                    DriverCounters::increment(&shared.counters.seed_resolution_failures);
                    tracing::warn!(seed = %spec, %error, "cannot resolve seed; will retry");
                }
            }
        }
        self.failed_rounds = if failed { self.failed_rounds.saturating_add(1) } else { 0 };
        let next = match self.failed_rounds {
            0 => self.refresh_interval,
            n => FIRST_RETRY.saturating_mul(1 << (n - 1).min(16)).min(self.refresh_interval),
        };
        (self.resolved.iter().flatten().copied().collect(), next)
    }
}
