//! The simulated network: delay, loss (random and bursty), duplication,
//! reordering, a maximum datagram size, and partitions.

use std::collections::HashMap;
use std::time::Duration;

/// How a link (or every link) treats datagrams.
#[derive(Clone, Debug, PartialEq)]
pub struct NetworkConfig {
    /// One-way delay of every datagram.
    pub latency: Duration,
    /// A uniformly random extra delay in `[0, jitter)`; datagrams overtake each
    /// other when it exceeds the time between them.
    pub jitter: Duration,
    /// Probability that a datagram is lost, independently of the others.
    pub loss: f64,
    /// Bursty loss on top of `loss`, per directed link.
    pub burst: Option<GilbertElliott>,
    /// Probability that a delivered datagram is delivered twice.
    pub duplicate: f64,
    /// Datagrams larger than this are dropped (a path MTU).
    pub max_datagram_size: Option<usize>,
    /// Bytes per second one stream carries (streams lose nothing: TCP
    /// retransmits; loss, duplication and the MTU apply to datagrams only).
    pub stream_bandwidth: u64,
}

impl Default for NetworkConfig {
    /// A perfect LAN: 1 ms, no jitter, no loss.
    fn default() -> Self {
        NetworkConfig {
            latency: Duration::from_millis(1),
            jitter: Duration::ZERO,
            loss: 0.0,
            burst: None,
            duplicate: 0.0,
            max_datagram_size: None,
            // 1 Gbit/s.
            stream_bandwidth: 125_000_000,
        }
    }
}

/// The Gilbert-Elliott model of bursty loss: each directed link is in a good or
/// a bad state, and switches state before each datagram with these
/// probabilities. In the bad state datagrams are lost with `loss_in_bad`.
#[derive(Clone, Copy, Debug, PartialEq)]
pub struct GilbertElliott {
    /// Probability of going from good to bad.
    pub good_to_bad: f64,
    /// Probability of going from bad to good.
    pub bad_to_good: f64,
    /// Loss probability while bad.
    pub loss_in_bad: f64,
}

/// What the network decided for one datagram.
pub(crate) enum Fate {
    /// Lost; the reason is counted.
    Dropped(DropReason),
    /// Delivered after these delays (two for a duplicate).
    Delivered(Vec<Duration>),
}

/// Why a datagram was lost.
pub(crate) enum DropReason {
    Loss,
    Partition,
    TooLarge,
}

/// The network's state: per-link overrides and the bursty-loss state of links.
#[derive(Default)]
pub(crate) struct Network {
    pub default: NetworkConfig,
    pub links: HashMap<(usize, usize), NetworkConfig>,
    bad_links: HashMap<(usize, usize), bool>,
    /// Node → partition group, when partitioned.
    pub groups: Option<HashMap<usize, usize>>,
}

impl Network {
    fn link(&self, from: usize, to: usize) -> &NetworkConfig {
        self.links.get(&(from, to)).unwrap_or(&self.default)
    }

    /// Whether a partition keeps `from` from reaching `to`.
    pub(super) fn reachable(&self, from: usize, to: usize) -> bool {
        match &self.groups {
            Some(groups) => groups.get(&from).is_some_and(|group| groups.get(&to) == Some(group)),
            None => true,
        }
    }

    /// The one-way latency of the link (its jitter left out: a stream keeps order).
    pub(super) fn latency(&self, from: usize, to: usize) -> Duration {
        self.link(from, to).latency
    }

    /// Bytes per second of one stream on the link.
    pub(super) fn stream_bandwidth(&self, from: usize, to: usize) -> u64 {
        self.link(from, to).stream_bandwidth
    }

    pub(super) fn fate(&mut self, from: usize, to: usize, len: usize, rng: &mut fastrand::Rng) -> Fate {
        if let Some(groups) = &self.groups {
            let (a, b) = (groups.get(&from), groups.get(&to));
            if a.is_none() || a != b {
                return Fate::Dropped(DropReason::Partition);
            }
        }
        let link = self.links.get(&(from, to)).unwrap_or(&self.default);
        if link.max_datagram_size.is_some_and(|max| len > max) {
            return Fate::Dropped(DropReason::TooLarge);
        }
        if let Some(burst) = link.burst {
            let bad = self.bad_links.entry((from, to)).or_insert(false);
            let switch = if *bad { burst.bad_to_good } else { burst.good_to_bad };
            if rng.f64() < switch {
                *bad = !*bad;
            }
            if *bad && rng.f64() < burst.loss_in_bad {
                return Fate::Dropped(DropReason::Loss);
            }
        }
        if link.loss > 0.0 && rng.f64() < link.loss {
            return Fate::Dropped(DropReason::Loss);
        }
        let mut delays = vec![delay(link, rng)];
        if link.duplicate > 0.0 && rng.f64() < link.duplicate {
            delays.push(delay(link, rng));
        }
        Fate::Delivered(delays)
    }
}

fn delay(link: &NetworkConfig, rng: &mut fastrand::Rng) -> Duration {
    let jitter = if link.jitter.is_zero() { Duration::ZERO } else { link.jitter.mul_f64(rng.f64()) };
    link.latency + jitter
}
