//! What a hostile datagram can make one node send and spend, measured.
//!
//! ```text
//! cargo run --release -p chitchat-core --features testing --example hostile_costs
//! ```
//!
//! - Reflection: bytes a node answers to a minimal `Syn` and to an unsolicited
//!   `SynAck` from a spoofed source, for a node tracking 30 nodes of one key
//!   and 1,000 nodes of 20 keys.
//! - CPU: the time to handle one reset whose records all lie below records
//!   the node holds (the worst order for its log), against the same records
//!   arriving in order at a fresh node; and the worst datagram of each message
//!   type we built for a node tracking 1,000 nodes of 20 keys, from a validated
//!   peer (so that its answer is a full datagram), answer included. Medians of
//!   11 runs.
//! - Blind spoofing: what a spoofed `Syn`, `Ack` and `Syn` from a victim's
//!   address make a node send the victim.
//! - Memory: what a node holds under a flood of records.
//! - Flood (`-- --flood`): cluster traffic while one node of 31 receives
//!   100,000 introductions of fresh identities, against a calm run.

use std::net::SocketAddr;
use std::time::{Duration, Instant};

use chitchat_core::sim::Simulation;
use chitchat_core::testing::datagrams::{ack, datagram, empty_digest, full, known, syn};
use chitchat_core::testing::{track_nodes, validate_peer};
use chitchat_core::wire::{
    Delta, Digest, DigestEntry, KeyValueUpdate, Message, NodeDelta, NodeRef, ValueUpdate,
};
use chitchat_core::{Chitchat, Config, Fingerprint, NodeId, Timestamp};

const CLUSTER: &str = "c";
const T0: Timestamp = Timestamp::ZERO;

fn addr(port: u16) -> SocketAddr {
    SocketAddr::from(([127, 0, 0, 1], port))
}

fn victim() -> Chitchat {
    let config = Config { cluster_id: CLUSTER.into(), ..Config::default() };
    Chitchat::new(config, NodeId::new("victim", 1, addr(7000)), [("own", "key")], T0).expect("a valid node")
}

fn drain(node: &mut Chitchat) -> usize {
    while node.poll_event().is_some() {}
    std::iter::from_fn(|| node.poll_transmit()).map(|transmit| transmit.bytes.len()).sum()
}

fn reflection(count: u16, keys: usize) {
    let mut node = victim();
    track_nodes(&mut node, T0, count, keys);
    drain(&mut node);
    let syn = syn(CLUSTER, empty_digest());
    node.handle_datagram(T0, addr(40_000), &syn).expect("accepted");
    let to_syn = drain(&mut node);
    let syn_ack = datagram(CLUSTER, Message::SynAck { digest: empty_digest(), delta: Delta::default() });
    node.handle_datagram(T0, addr(40_001), &syn_ack).expect("accepted");
    let to_syn_ack = drain(&mut node);
    println!(
        "reflection, {count} nodes x {keys} keys: Syn {} B -> {to_syn} B (x{:.2}); unsolicited SynAck {} B -> {to_syn_ack} B (x{:.2})",
        syn.len(),
        to_syn as f64 / syn.len() as f64,
        syn_ack.len(),
        to_syn_ack as f64 / syn_ack.len() as f64,
    );
}

fn records(versions: std::ops::RangeInclusive<u64>, prefix: &str) -> Vec<KeyValueUpdate> {
    versions
        .map(|version| KeyValueUpdate {
            key: format!("{prefix}{version}").into(),
            version,
            value: ValueUpdate::Deleted,
        })
        .collect()
}

/// `records`, set to an empty value (a reset drops the tombstones below
/// its watermark, which the owner collected).
fn set_records(versions: std::ops::RangeInclusive<u64>) -> Vec<KeyValueUpdate> {
    records(versions, "")
        .into_iter()
        .map(|record| KeyValueUpdate { value: ValueUpdate::Set("".into()), ..record })
        .collect()
}

fn median(mut samples: Vec<Duration>) -> Duration {
    samples.sort();
    samples[samples.len() / 2]
}

fn reset_cost() {
    let writer = NodeId::new("writer", 1, addr(7001));
    // The reset comes from a third node, which relays the writer's state.
    let relay = NodeId::new("relay", 1, addr(7002));
    let mut below = Vec::new();
    let mut in_order = Vec::new();
    let mut bytes_len = 0;
    for _ in 0..11 {
        // Held: 3,000 records above the reset's watermark; the reset brings
        // 7,000 records below all of them.
        let mut node = victim();
        // Sections count only from proven senders.
        validate_peer(&mut node, T0, &writer);
        validate_peer(&mut node, T0, &relay);
        let mut held = full(writer.clone(), 1, &[]);
        held.max_version = 13_000;
        held.key_values = records(10_001..=13_000, "b");
        node.handle_datagram(T0, writer.gossip_addr(), &ack(CLUSTER, vec![held])).expect("accepted");
        let reset = NodeDelta {
            node: NodeRef::Known(writer.fingerprint()),
            heartbeat: 3,
            reset: true,
            from_version: 0,
            last_gc_version: 7_000,
            max_version: 7_000,
            left: false,
            key_values: set_records(1..=7_000),
        };
        let bytes = ack(CLUSTER, vec![reset]);
        bytes_len = bytes.len();
        let start = Instant::now();
        node.handle_datagram(T0, addr(7002), &bytes).expect("accepted");
        below.push(start.elapsed());
        assert_eq!(node.node_state(&writer).map(|state| state.num_records()), Some(10_000));
        // The same records, in order, introducing a node to a fresh one.
        let mut fresh = victim();
        validate_peer(&mut fresh, T0, &relay);
        let mut intro = full(writer.clone(), 1, &[]);
        intro.max_version = 7_000;
        intro.key_values = set_records(1..=7_000);
        let bytes = ack(CLUSTER, vec![intro]);
        let start = Instant::now();
        fresh.handle_datagram(T0, addr(7002), &bytes).expect("accepted");
        in_order.push(start.elapsed());
    }
    println!(
        "reset of 7,000 records below 3,000 held ({bytes_len} B): {:?}; the same records in order into a fresh node: {:?} (median of 11)",
        median(below),
        median(in_order)
    );
}

/// A node tracking 1,000 nodes of 20 keys, with a validated peer at
/// `addr(7001)` (so that its answers there are full datagrams: the most work).
fn loaded_node() -> (Chitchat, NodeId) {
    let mut node = victim();
    track_nodes(&mut node, T0, 1_000, 20);
    let peer = NodeId::new("peer", 1, addr(7001));
    validate_peer(&mut node, T0, &peer);
    (node, peer)
}

/// The median time to handle `bytes` from the validated peer and drain the
/// answer, each time on a fresh copy of the loaded node.
fn time_datagram(bytes: &[u8], solicited: bool) -> Duration {
    let samples = (0..11)
        .map(|_| {
            let (mut node, peer) = loaded_node();
            let bytes = if solicited {
                // The SynAck answers a Syn of the node, echoing its token: its
                // Ack is a full datagram.
                node.gossip_with(T0, peer.gossip_addr());
                let syn = node.poll_transmit().expect("a Syn");
                drain(&mut node);
                let mut packet = chitchat_core::wire::decode(bytes).expect("it decodes");
                packet.echo = chitchat_core::wire::decode(&syn.bytes).expect("it decodes").token;
                chitchat_core::wire::encode(&packet)
            } else {
                bytes.to_vec()
            };
            let start = Instant::now();
            let _ = node.handle_datagram(T0, peer.gossip_addr(), &bytes);
            drain(&mut node);
            start.elapsed()
        })
        .collect();
    median(samples)
}

fn worst_per_message_type() {
    let (node, _) = loaded_node();
    // Syn: a full datagram of digest entries naming tracked nodes as far
    // behind (every one needs a section) and unknown ones (every one is
    // asked about), so that absorbing it, and building the answer, both walk
    // everything.
    let tracked: Vec<_> = node.node_states().map(|state| state.id().fingerprint()).collect();
    let mut entries: Vec<DigestEntry> = tracked
        .iter()
        .map(|fingerprint| DigestEntry {
            fingerprint: *fingerprint,
            heartbeat: 1 << 40,
            last_gc_version: 0,
            max_version: 0,
        })
        .collect();
    let mut next = 1u64;
    while entries.len() < 4_600 {
        let fingerprint = Fingerprint::from_u64(next.wrapping_mul(0x9e37_79b9_7f4a_7c15));
        next += 1;
        if !tracked.contains(&fingerprint) {
            entries.push(DigestEntry { fingerprint, heartbeat: 1, last_gc_version: 0, max_version: 0 });
        }
    }
    entries.sort_by_key(|entry| entry.fingerprint);
    let syn = syn(CLUSTER, Digest { entries: entries.clone(), ..empty_digest() });
    // SynAck: a datagram of new records for 48 of the tracked nodes (the node
    // applies them all and emits an event each), a digest of 1,000 entries,
    // and a full Ack to build in answer.
    let sections: Vec<NodeDelta> = node
        .node_states()
        .filter(|state| state.id().name().starts_with("node-"))
        .take(48)
        .map(|state| {
            let records: Vec<(String, String, u64)> =
                (21..=60).map(|v| (format!("new-{v}"), "x".repeat(12), v)).collect();
            let records: Vec<(&str, &str, u64)> =
                records.iter().map(|(k, v, n)| (k.as_str(), v.as_str(), *n)).collect();
            known(state.id(), 20, 60, &records)
        })
        .collect();
    let syn_ack = datagram(
        CLUSTER,
        Message::SynAck {
            digest: Digest { entries: entries[..1_000].to_vec(), ..empty_digest() },
            delta: Delta { nodes: sections.clone(), more: false },
        },
    );
    let ack_bytes = ack(CLUSTER, sections);
    for (name, bytes, solicited) in
        [("Syn", &syn, false), ("SynAck", &syn_ack, true), ("Ack", &ack_bytes, false)]
    {
        assert!(bytes.len() <= Config::MAX_DATAGRAM_SIZE, "{name}: {} bytes", bytes.len());
        println!(
            "worst {name} at a node tracking 1,000 nodes x 20 keys ({} B): {:?} (median of 11, answer included)",
            bytes.len(),
            time_datagram(bytes, solicited)
        );
    }
}

/// Cluster traffic under a flood: a 31-node cluster (default configuration,
/// 1 s rounds) in the simulator; one node receives 100,000 tiny `Ack`s over
/// 30 s, each introducing a fresh identity from that identity's own (spoofed)
/// address. Bytes the cluster's nodes send per second, before, during and
/// after, against the same windows without the flood.
fn flood_traffic() {
    let run = |flood: bool| -> ([f64; 3], usize) {
        let mut sim = Simulation::new(1);
        let config = Config { cluster_id: CLUSTER.into(), ..Config::default() };
        let nodes: Vec<_> = (0..31).map(|i| sim.add_node(&format!("n{i:02}"), config.clone())).collect();
        sim.set_seeds_all(&[nodes[0]]);
        sim.run_for(Duration::from_secs(60)).expect("invariants hold");
        let mut rates = [0.0; 3];
        let mut fresh: u32 = 0;
        for (window, rate) in rates.iter_mut().enumerate() {
            let before = sim.stats().bytes_sent;
            for _ in 0..3_000 {
                if flood && window == 1 {
                    for _ in 0..33 {
                        let [_, a, b, c] = fresh.to_be_bytes();
                        fresh += 1;
                        let id = NodeId::new(
                            format!("fake-{fresh:06}"),
                            1,
                            SocketAddr::from(([10, a, b, c], 7000)),
                        );
                        let from = id.gossip_addr();
                        let bytes = ack(CLUSTER, vec![full(id, 1, &[])]);
                        sim.note_injected(&chitchat_core::wire::decode(&bytes).expect("decodes"));
                        sim.with_node(nodes[1], |node, now| {
                            let _ = node.handle_datagram(now, from, &bytes);
                        });
                    }
                }
                sim.run_for(Duration::from_millis(10)).expect("invariants hold");
            }
            *rate = (sim.stats().bytes_sent - before) as f64 / 30.0;
        }
        (rates, sim.node(nodes[1]).node_states().count())
    };
    let (calm, _) = run(false);
    let (flooded, tracked) = run(true);
    println!(
        "flood: 100,000 Acks of fresh identities at one node of 31 over 30 s (3,333/s); it tracks {tracked} nodes after"
    );
    for (window, name) in ["before", "during", "after"].iter().enumerate() {
        println!(
            "  {name:>6}: {:>10.0} B/s cluster traffic (calm run {:>10.0} B/s): x{:.2}",
            flooded[window],
            calm[window],
            flooded[window] / calm[window]
        );
    }
}

/// Blind spoofing of a victim's address: a `Syn` spoofed from the victim (its
/// short answer goes to the victim, unseen), an `Ack` spoofed from the victim
/// introducing a node there, then `Syn`s spoofed from the victim, ten times
/// over, at a node tracking 1,000 nodes of 20 keys. Bytes sent to the victim
/// against bytes spoofed.
fn blind_spoofing() {
    let mut node = victim();
    track_nodes(&mut node, T0, 1_000, 20);
    drain(&mut node);
    let victim_addr = addr(40_020);
    let (mut spoofed, mut reflected) = (0, 0);
    for round in 0..10u64 {
        let now = T0 + Duration::from_millis(100 * round);
        let syn = syn(CLUSTER, empty_digest());
        let forged = ack(CLUSTER, vec![full(NodeId::new("victim-node", 1, victim_addr), 1, &[])]);
        for bytes in [&syn, &forged, &syn] {
            let _ = node.handle_datagram(now, victim_addr, bytes);
            spoofed += bytes.len();
            while node.poll_event().is_some() {}
            reflected += std::iter::from_fn(|| node.poll_transmit())
                .filter(|transmit| transmit.to == victim_addr)
                .map(|transmit| transmit.bytes.len())
                .sum::<usize>();
        }
    }
    println!(
        "blind spoofing of a victim's address: {spoofed} B spoofed -> {reflected} B to the victim (x{:.2})",
        reflected as f64 / spoofed as f64
    );
}

/// Resident memory of this process, in KiB (Linux only).
fn rss_kib() -> Option<u64> {
    let status = std::fs::read_to_string("/proc/self/status").ok()?;
    let line = status.lines().find(|line| line.starts_with("VmRSS:"))?;
    line.split_whitespace().nth(1)?.parse().ok()
}

/// Memory under a flood of records: 20,000 made-up identities, each with 10
/// records of 1,000-byte values (about 200 MB), at a node with the default
/// configuration (`max_remote_state_bytes` 64 MiB). What the node holds of
/// other nodes' records, and how its resident memory grew.
fn memory_under_flood() {
    let mut node = victim();
    let relay = NodeId::new("relay", 1, addr(9_999));
    validate_peer(&mut node, T0, &relay);
    let rss_before = rss_kib();
    let value = "x".repeat(1_000);
    let mut sent = 0;
    for i in 0..20_000u32 {
        let [_, a, b, c] = i.to_be_bytes();
        let id = NodeId::new(format!("fake-{i:05}"), 1, SocketAddr::from(([10, a, b, c], 7000)));
        let keys: Vec<String> = (1..=10).map(|k| format!("key-{k:02}")).collect();
        let records: Vec<(&str, &str, u64)> =
            keys.iter().enumerate().map(|(k, key)| (key.as_str(), value.as_str(), k as u64 + 1)).collect();
        // From a validated member: the worst case (a blind spoofer's would
        // not even be relayed).
        let bytes = ack(CLUSTER, vec![full(id, 1, &records)]);
        sent += bytes.len();
        let _ = node.handle_datagram(T0, relay.gossip_addr(), &bytes);
        drain(&mut node);
    }
    let metrics = node.metrics();
    println!(
        "memory under a flood of {} MB of records from a validated member: remote state {} MiB held \
         (budget 64 MiB), {} records over budget, resident memory +{} MiB",
        sent / 1_000_000,
        node.remote_state_bytes() / (1 << 20),
        metrics.records_over_budget,
        match (rss_before, rss_kib()) {
            (Some(before), Some(after)) => (after.saturating_sub(before) / 1_024).to_string(),
            _ => "?".into(),
        }
    );
}

fn main() {
    if std::env::args().any(|arg| arg == "--flood") {
        return flood_traffic();
    }
    reflection(30, 1);
    reflection(1_000, 20);
    blind_spoofing();
    memory_under_flood();
    reset_cost();
    worst_per_message_type();
}
