//! The hostile-input catalogue's flood: one million valid-looking datagrams, each
//! introducing a fresh node id, at one node. Tracked nodes, queues and memory
//! stay within their bounds. Alone in its test binary: the memory it measures
//! (live heap, through a counting allocator, and resident memory) is the whole
//! process's, so no other test may run beside it.

use std::alloc::{GlobalAlloc, Layout, System};
use std::net::SocketAddr;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::{Duration, Instant};

use chitchat_core::testing::Tracked;
use chitchat_core::testing::datagrams::{ack, full};
use chitchat_core::{Chitchat, Config, NodeId, Timestamp};

/// Counts live heap bytes.
struct Counting;

static LIVE: AtomicUsize = AtomicUsize::new(0);

// SAFETY: delegates to the system allocator and only counts.
unsafe impl GlobalAlloc for Counting {
    unsafe fn alloc(&self, layout: Layout) -> *mut u8 {
        // SAFETY: the caller upholds `GlobalAlloc::alloc`'s contract.
        let ptr = unsafe { System.alloc(layout) };
        if !ptr.is_null() {
            LIVE.fetch_add(layout.size(), Ordering::Relaxed);
        }
        ptr
    }

    unsafe fn dealloc(&self, ptr: *mut u8, layout: Layout) {
        // SAFETY: the caller upholds `GlobalAlloc::dealloc`'s contract.
        unsafe { System.dealloc(ptr, layout) };
        LIVE.fetch_sub(layout.size(), Ordering::Relaxed);
    }
}

#[global_allocator]
static ALLOCATOR: Counting = Counting;

const CLUSTER: &str = "hostile";

/// Resident memory of this process, in KiB (Linux only).
fn rss_kib() -> Option<u64> {
    let status = std::fs::read_to_string("/proc/self/status").ok()?;
    let line = status.lines().find(|line| line.starts_with("VmRSS:"))?;
    line.split_whitespace().nth(1)?.parse().ok()
}

/// About 4 s in the test profile (opt-level 1). Over ten seconds of virtual
/// time, so flooded nodes also die and are removed.
#[test]
fn a_flood_of_one_million_datagrams_with_fresh_node_ids_stays_bounded() {
    let count: u32 = 1_000_000;
    let config = Config {
        cluster_id: CLUSTER.into(),
        max_nodes: 1_000,
        max_pending_events: 1_000,
        ..Config::local_test()
    };
    let self_id = NodeId::new("self", 5, SocketAddr::from(([127, 0, 0, 1], 7000)));
    let mut node = Chitchat::new(config.clone(), self_id, [("k", "v")], Timestamp::ZERO).unwrap();
    let (heap_before, rss_before) = (LIVE.load(Ordering::Relaxed), rss_kib());
    let started = Instant::now();
    let step = Duration::from_secs(10) / (count / 1_000);
    let mut now = Timestamp::ZERO;
    let mut heap_peak = 0;
    for i in 0..count {
        let [_, a, b, c] = i.to_be_bytes();
        let id = NodeId::new(format!("flood-{i:07}"), 1, SocketAddr::from(([10, a, b, c], 7000)));
        let from = id.gossip_addr();
        node.handle_datagram(now, from, &ack(CLUSTER, vec![full(id, 1, &[("k", "v", 1)])])).unwrap();
        if i % 1_000 == 999 {
            now += step;
            node.handle_timeout(now);
            // The driver polls datagrams but never events: those stay bounded too.
            while node.poll_transmit().is_some() {}
            let (transmits, events, removed) = chitchat_core::testing::queue_lengths(&node);
            assert!(events <= config.max_pending_events && removed <= config.max_nodes && transmits == 0);
            assert!(node.tracked_states().count() <= config.max_nodes);
            heap_peak = heap_peak.max(LIVE.load(Ordering::Relaxed).saturating_sub(heap_before));
        }
    }
    let metrics = node.metrics();
    assert!(metrics.nodes_refused + metrics.nodes_evicted > 0);
    // Made up and never vouched for, they reach no view and raise no event.
    assert_eq!((metrics.events_dropped, node.live_nodes().count()), (0, 1));
    assert!(node.tracked_states().count() <= config.max_nodes);
    // 1,000 tracked nodes, 1,000 remembered removals and 1,000 queued events:
    // a few kilobytes each at most.
    assert!(heap_peak < 8 << 20, "the live heap grew by up to {heap_peak} bytes");
    if let (Some(before), Some(after)) = (rss_before, rss_kib()) {
        let growth = after.saturating_sub(before);
        assert!(growth < 64 * 1_024, "resident memory grew by {growth} KiB over {count} datagrams");
    }
    eprintln!(
        "{count} datagrams in {:?}; live heap grew by up to {} KiB",
        started.elapsed(),
        heap_peak / 1_024
    );
}
