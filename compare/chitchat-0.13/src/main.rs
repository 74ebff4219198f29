//! Measures the original `chitchat` crate (0.13) the way
//! `chitchat-tokio/examples/loopback_bench.rs` measures ours, so the two can be
//! put side by side. Written against chitchat 0.13's public API only.
//!
//! ```text
//! cargo run --release -- cluster --nodes 100 --steady-secs 10 [--crash] [--v1]
//! cargo run --release -- digest --sizes 100,1000,1284,1285,2000,5000 [--v1]
//! cargo run --release -- catchup --nodes 10 --keys 100 --value-bytes 100 [--compressible] [--v1]
//! ```
//!
//! `cluster`: N nodes in one tokio process (2 worker threads) on 127.0.0.1, each
//! with 20 keys, gossip every 100 ms, every other setting at chitchat 0.13's
//! defaults (phi threshold 8, sampling window 1,000, initial interval 5 s, max
//! interval 10 s, protocol V0). Reports the same figures as our bench; bytes are
//! counted by a `Socket` wrapper around chitchat's own `UdpSocket`. With
//! `--crash`, one node's task is aborted after the steady window (no goodbye: its
//! socket is dropped with the task) and the time until every other node has it
//! out of `live_nodes()` is measured.
//!
//! `digest`: one node is made to know n nodes through the public
//! `Chitchat::reset_node_state_if_update` (names `node-00042`, loopback
//! addresses, distinct generation ids), then the Syns its own gossip loop sends
//! are captured at the counting socket: their size, or the error when one
//! cannot be sent.
//!
//! `catchup`: the large state catch-up after a restart, the same workload as
//! our `catchup_bench` example. N nodes (default 10, named `n00`…) on
//! 127.0.0.1, cluster id `catchup`, all seeded with node 0, gossip every 100 ms,
//! dead-node grace period 24 h (the default) and tombstone grace period 1 h
//! (nothing is GCed during a run), protocol V0 unless `--v1`. chitchat 0.13 has
//! no fanout setting: it gossips with `GOSSIP_COUNT` = 3 random live peers per
//! round (a constant in its `server.rs`), plus now and then a dead node or a
//! seed. Each node starts with K keys (default 100) `key-00000`, `key-00001`, …
//! whose values are V bytes (default 100) of random alphanumerics from
//! `fastrand` seeded with 1, or with `--compressible` JSON-like text (see
//! `value`). Once every node holds every other node's keys, the last node is
//! restarted: its instance is shut down and a new one is spawned with the same
//! name and address, generation 2 instead of 1 and K fresh values (drawn from
//! the same RNG, continuing). From that moment it measures the time until the
//! restarted node holds `key-00000` of every other node, the time until every
//! node holds every node's K current values (the restarted node's under its new
//! generation), and the bytes sent and the process CPU time until then.
//! `bytes_to_move` is what has to cross the network at the very least:
//! 2 × (N − 1) × K × (9 + V) (the others' keys to the restarted node and its
//! keys to each other; 9 is the key length). `--timeout-secs` bounds the
//! initial convergence and the catch-up, each. Also printed: datagrams the
//! kernel dropped at the nodes' sockets (`/proc/net/udp`), and how much of its
//! previous generation the restarted node was sent.
//!
//! Linux only (reads `/proc/self` and `/proc/net`).

use std::collections::BTreeSet;
use std::net::SocketAddr;
use std::process::ExitCode;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use async_trait::async_trait;
use chitchat::transport::{RecvOutcome, SendOutcome, Socket, Transport, UdpSocket};
use chitchat::{
    spawn_chitchat, ChitchatConfig, ChitchatEnvelope, ChitchatHandle, ChitchatId, ChitchatMessage,
    FailureDetectorConfig, NodeState, ProtocolVersion,
};

const USER_HZ: f64 = 100.0;
const GOSSIP_INTERVAL: Duration = Duration::from_millis(100);

/// What the counting sockets saw (one per node for `digest`, shared for `cluster`).
#[derive(Default)]
struct Stats {
    bytes_sent: AtomicU64,
    datagrams_sent: AtomicU64,
    syns_sent: AtomicU64,
    max_syn: AtomicU64,
    max_datagram: AtomicU64,
    send_errors: AtomicU64,
    last_error: Mutex<Option<String>>,
}

struct CountingTransport {
    stats: Arc<Stats>,
}

#[async_trait]
impl Transport for CountingTransport {
    async fn open(&self, listen_addr: SocketAddr) -> anyhow::Result<Box<dyn Socket>> {
        let inner = UdpSocket::open(listen_addr).await?;
        Ok(Box::new(CountingSocket { inner, stats: self.stats.clone() }))
    }
}

struct CountingSocket {
    inner: UdpSocket,
    stats: Arc<Stats>,
}

#[async_trait]
impl Socket for CountingSocket {
    fn local_addr(&self) -> anyhow::Result<SocketAddr> {
        self.inner.local_addr()
    }

    async fn send(&mut self, to: SocketAddr, envelope: ChitchatEnvelope) -> anyhow::Result<SendOutcome> {
        let is_syn = matches!(envelope.message, ChitchatMessage::Syn { .. });
        match self.inner.send(to, envelope).await {
            Ok(outcome) => {
                let bytes = outcome.num_bytes_sent as u64;
                self.stats.bytes_sent.fetch_add(bytes, Ordering::Relaxed);
                self.stats.datagrams_sent.fetch_add(1, Ordering::Relaxed);
                self.stats.max_datagram.fetch_max(bytes, Ordering::Relaxed);
                if is_syn {
                    self.stats.syns_sent.fetch_add(1, Ordering::Relaxed);
                    self.stats.max_syn.fetch_max(bytes, Ordering::Relaxed);
                }
                Ok(outcome)
            }
            Err(error) => {
                self.stats.send_errors.fetch_add(1, Ordering::Relaxed);
                let kind = if is_syn { "Syn" } else { "reply" };
                *self.stats.last_error.lock().unwrap() = Some(format!("{kind}: {error:#}"));
                Err(error)
            }
        }
    }

    async fn recv(&mut self) -> anyhow::Result<RecvOutcome> {
        self.inner.recv().await
    }
}

struct Options {
    command: String,
    nodes: usize,
    keys: usize,
    value_bytes: usize,
    compressible: bool,
    steady: Duration,
    timeout: Duration,
    crash: bool,
    v1: bool,
    sizes: Vec<usize>,
}

fn parse() -> Result<Options, String> {
    let mut args = std::env::args().skip(1);
    let command = args.next().ok_or("usage: cluster|digest|catchup [options]")?;
    // `catchup` has its own defaults (those of our `catchup_bench`).
    let catchup = command == "catchup";
    let mut options = Options {
        command,
        nodes: if catchup { 10 } else { 100 },
        keys: if catchup { 100 } else { 20 },
        value_bytes: 100,
        compressible: false,
        steady: Duration::from_secs(10),
        timeout: Duration::from_secs(300),
        crash: false,
        v1: false,
        sizes: vec![100, 1000, 2000, 5000],
    };
    while let Some(arg) = args.next() {
        match arg.as_str() {
            "--crash" => options.crash = true,
            "--v1" => options.v1 = true,
            "--compressible" => options.compressible = true,
            "--sizes" => {
                let value = args.next().ok_or("--sizes needs a list")?;
                options.sizes = value
                    .split(',')
                    .map(|size| size.parse().map_err(|_| format!("bad size {size:?}")))
                    .collect::<Result<_, _>>()?;
            }
            _ => {
                let value: u64 = args
                    .next()
                    .and_then(|value| value.parse().ok())
                    .ok_or_else(|| format!("{arg} needs a number"))?;
                match arg.as_str() {
                    "--nodes" => options.nodes = value as usize,
                    "--keys" => options.keys = value as usize,
                    "--value-bytes" => options.value_bytes = value as usize,
                    "--steady-secs" => options.steady = Duration::from_secs(value),
                    "--timeout-secs" => options.timeout = Duration::from_secs(value),
                    _ => return Err(format!("unknown argument {arg:?}")),
                }
            }
        }
    }
    Ok(options)
}

fn main() -> ExitCode {
    let options = match parse() {
        Ok(options) => options,
        Err(message) => {
            eprintln!("error: {message}");
            return ExitCode::from(2);
        }
    };
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .expect("a tokio runtime");
    match options.command.as_str() {
        "cluster" => runtime.block_on(cluster(options)),
        "digest" => runtime.block_on(digest(options)),
        "catchup" => runtime.block_on(catchup(options)),
        other => {
            eprintln!("error: unknown command {other:?} (cluster, digest, catchup)");
            ExitCode::from(2)
        }
    }
}

fn protocol(v1: bool) -> ProtocolVersion {
    if v1 {
        ProtocolVersion::V1
    } else {
        ProtocolVersion::V0
    }
}

fn config(chitchat_id: ChitchatId, seeds: Vec<String>, v1: bool) -> ChitchatConfig {
    ChitchatConfig {
        listen_addr: chitchat_id.gossip_advertise_addr,
        chitchat_id,
        cluster_id: "bench".to_string(),
        gossip_interval: GOSSIP_INTERVAL,
        seed_nodes: seeds,
        failure_detector_config: FailureDetectorConfig::default(),
        marked_for_deletion_grace_period: Duration::from_secs(3600),
        catchup_callback: None,
        extra_liveness_predicate: None,
        protocol_version: protocol(v1),
    }
}

/// `count` free loopback ports (bound together, then released), since a
/// chitchat 0.13 node must know its advertised address before it binds.
fn free_addrs(count: usize) -> Vec<SocketAddr> {
    let sockets: Vec<std::net::UdpSocket> =
        (0..count).map(|_| std::net::UdpSocket::bind("127.0.0.1:0").expect("bind")).collect();
    sockets.iter().map(|socket| socket.local_addr().expect("addr")).collect()
}

fn unix_millis() -> u64 {
    SystemTime::now().duration_since(UNIX_EPOCH).map_or(0, |since| since.as_millis() as u64)
}

async fn live_count(node: &ChitchatHandle) -> usize {
    node.with_chitchat(|chitchat| chitchat.live_nodes().count()).await
}

async fn cluster(options: Options) -> ExitCode {
    let Options { nodes: count, keys, steady, timeout, crash, v1, .. } = options;
    let stats = Arc::new(Stats::default());
    let transport = CountingTransport { stats: stats.clone() };
    let addrs = free_addrs(count);
    let generation = unix_millis();
    let rss_before = rss_kib();
    let false_deads = Arc::new(AtomicU64::new(0));
    let start = Instant::now();
    let mut nodes: Vec<ChitchatHandle> = Vec::with_capacity(count);
    for (i, addr) in addrs.iter().enumerate() {
        let id = ChitchatId::new(format!("node-{i:04}"), generation, *addr);
        let seeds = addrs[..i.min(3)].iter().map(|seed| seed.to_string()).collect();
        let key_values = (0..keys).map(|key| (format!("key-{key:02}"), format!("value-{i}-{key}"))).collect();
        let node = match spawn_chitchat(config(id, seeds, v1), key_values, &transport).await {
            Ok(node) => node,
            Err(error) => {
                println!("could not start node {i}: {error:#}");
                return ExitCode::FAILURE;
            }
        };
        // A node that leaves a live set is a false dead (nobody is stopped
        // before the crash measurement, which is counted apart).
        let mut live = node.chitchat().lock().await.live_nodes_watcher();
        let false_deads = false_deads.clone();
        tokio::spawn(async move {
            let mut previous: BTreeSet<ChitchatId> = BTreeSet::new();
            while live.changed().await.is_ok() {
                let current: BTreeSet<ChitchatId> = live.borrow_and_update().keys().cloned().collect();
                let lost = previous.difference(&current).count() as u64;
                false_deads.fetch_add(lost, Ordering::Relaxed);
                previous = current;
            }
        });
        nodes.push(node);
    }
    println!(
        "chitchat 0.13 ({:?}): started {count} nodes with {keys} keys each in {:.2?} (VmRSS {} KiB)",
        protocol(v1),
        start.elapsed(),
        rss_kib()
    );

    loop {
        let mut min = usize::MAX;
        for node in &nodes {
            min = min.min(live_count(node).await);
        }
        if min == count {
            break;
        }
        if start.elapsed() > timeout {
            println!("did not converge within {timeout:?}: min live = {min}");
            println!("send errors: {}", stats.send_errors.load(Ordering::Relaxed));
            return ExitCode::FAILURE;
        }
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    let live_converged = start.elapsed();
    let mut pending: Vec<&ChitchatHandle> = nodes.iter().collect();
    while !pending.is_empty() {
        let mut still = Vec::new();
        for node in pending {
            let complete = node
                .with_chitchat(|chitchat| {
                    let states = chitchat.node_states();
                    states.len() == count && states.values().all(|state| state.num_key_values() == keys)
                })
                .await;
            if !complete {
                still.push(node);
            }
        }
        pending = still;
        if start.elapsed() > timeout {
            println!("keys did not converge within {timeout:?}: {} nodes incomplete", pending.len());
            return ExitCode::FAILURE;
        }
        if !pending.is_empty() {
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
    }
    let converged = start.elapsed();
    println!("converged: all live after {live_converged:.2?}, all keys after {converged:.2?}");
    let rss_after = rss_kib();

    tokio::time::sleep(Duration::from_secs(2)).await;
    let false_deads_before = false_deads.load(Ordering::Relaxed);
    let bytes_before = stats.bytes_sent.load(Ordering::Relaxed);
    let syns_before = stats.syns_sent.load(Ordering::Relaxed);
    let cpu_before = cpu_seconds();
    let window_start = Instant::now();
    tokio::time::sleep(steady).await;
    let cpu = cpu_seconds() - cpu_before;
    let window = window_start.elapsed();
    let rss_steady = rss_kib();
    let bytes = stats.bytes_sent.load(Ordering::Relaxed) - bytes_before;
    let syns = stats.syns_sent.load(Ordering::Relaxed) - syns_before;
    // chitchat 0.13 counts no rounds: its loop ticks a tokio interval every
    // gossip interval (missed ticks are caught up), so the rounds are
    // nodes × window / interval.
    let rounds = count as f64 * window.as_secs_f64() / GOSSIP_INTERVAL.as_secs_f64();
    let cpu_per_round = cpu / rounds;
    let rss_per_node = rss_after.saturating_sub(rss_before) as f64 / count as f64;
    let steady_false_deads = false_deads.load(Ordering::Relaxed) - false_deads_before;
    let total_false_deads = false_deads.load(Ordering::Relaxed);
    println!(
        "steady state over {window:.2?}: {rounds:.0} rounds (nodes × window / interval), {cpu:.2} s CPU ({:.0}% of one core)",
        cpu / window.as_secs_f64() * 100.0
    );
    println!("CPU per node per round:   {:.1} µs", cpu_per_round * 1e6);
    println!("bytes sent per node per round: {:.0}", bytes as f64 / rounds);
    println!("Syns sent per node per round: {:.2}", syns as f64 / rounds);
    println!(
        "largest Syn: {} bytes, largest datagram: {} bytes",
        stats.max_syn.load(Ordering::Relaxed),
        stats.max_datagram.load(Ordering::Relaxed)
    );
    println!("resident memory per node: {rss_per_node:.0} KiB (VmRSS {rss_before} KiB before, {rss_after} KiB after)");
    println!(
        "resident memory per node after the steady window: {:.0} KiB",
        rss_steady.saturating_sub(rss_before) as f64 / count as f64
    );
    println!("false deads: {total_false_deads} ({steady_false_deads} in the steady window)");
    println!("send errors: {}", stats.send_errors.load(Ordering::Relaxed));

    let mut detection = None;
    if crash {
        detection = measure_crash(&nodes, timeout).await;
    }
    println!(
        "{{\"lib\":\"chitchat-0.13\",\"protocol\":\"{:?}\",\"nodes\":{count},\"keys\":{keys},\"all_live_s\":{:.3},\"all_keys_s\":{:.3},\"cpu_us_per_node_round\":{:.1},\"bytes_per_node_round\":{:.0},\"rss_kib_per_node\":{rss_per_node:.0},\"rss_kib_per_node_steady\":{:.0},\"false_deads\":{total_false_deads},\"false_deads_steady\":{steady_false_deads},\"detection_s\":{}}}",
        protocol(v1),
        live_converged.as_secs_f64(),
        converged.as_secs_f64(),
        cpu_per_round * 1e6,
        bytes as f64 / rounds,
        rss_steady.saturating_sub(rss_before) as f64 / count as f64,
        detection.map_or("null".to_string(), |(_, max)| format!("{max:.3}"))
    );
    for node in nodes {
        node.abort();
    }
    ExitCode::SUCCESS
}

/// Aborts the last node's task (its socket goes with it: no goodbye) and waits
/// until every other node has it out of `live_nodes()`. Returns the median and
/// the largest detection time, in seconds.
async fn measure_crash(nodes: &[ChitchatHandle], timeout: Duration) -> Option<(f64, f64)> {
    let (victim, observers) = nodes.split_last()?;
    let victim_id = victim.chitchat_id().clone();
    // The adaptive timeout the observers had for it just before (mean interval × phi threshold).
    let mut timeouts: Vec<f64> = Vec::new();
    for node in observers {
        let id = victim_id.clone();
        if let Some(timeout) = node.with_chitchat(|chitchat| chitchat.failure_detection_timeout(&id)).await {
            timeouts.push(timeout.as_secs_f64());
        }
    }
    timeouts.sort_by(f64::total_cmp);
    victim.abort();
    let crashed = Instant::now();
    let mut seen: Vec<Option<f64>> = vec![None; observers.len()];
    let mut in_dead = 0;
    while seen.iter().any(Option::is_none) {
        if crashed.elapsed() > timeout {
            let missing = seen.iter().filter(|seen| seen.is_none()).count();
            println!("crash not detected by {missing} nodes within {timeout:?}");
            return None;
        }
        for (node, seen) in observers.iter().zip(seen.iter_mut()) {
            if seen.is_some() {
                continue;
            }
            let id = victim_id.clone();
            let (live, dead) = node
                .with_chitchat(|chitchat| {
                    (
                        chitchat.live_nodes().any(|live| *live == id),
                        chitchat.dead_nodes().any(|dead| *dead == id),
                    )
                })
                .await;
            if !live {
                *seen = Some(crashed.elapsed().as_secs_f64());
                in_dead += usize::from(dead);
            }
        }
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
    let mut times: Vec<f64> = seen.into_iter().flatten().collect();
    times.sort_by(f64::total_cmp);
    let (first, median, last) = (times[0], times[times.len() / 2], times[times.len() - 1]);
    let interval = GOSSIP_INTERVAL.as_secs_f64();
    println!(
        "crash of {} detected by all {} others: first {first:.2} s, median {median:.2} s, all {last:.2} s ({:.1} / {:.1} / {:.1} rounds); {in_dead} of them list it in dead_nodes()",
        victim_id.node_id,
        times.len(),
        first / interval,
        median / interval,
        last / interval
    );
    if let (Some(low), Some(high)) = (timeouts.first(), timeouts.last()) {
        println!("observers' failure_detection_timeout for it before the crash: {low:.2}–{high:.2} s");
    }
    Some((median, last))
}

/// Builds one node that knows `n` nodes and captures the Syns its gossip loop sends.
async fn digest(options: Options) -> ExitCode {
    let v1 = options.v1;
    println!("chitchat 0.13, protocol {:?}: Syn size of a node that knows n nodes", protocol(v1));
    for &n in &options.sizes {
        let stats = Arc::new(Stats::default());
        let transport = CountingTransport { stats: stats.clone() };
        let addr = free_addrs(1)[0];
        // A seed that listens (and never answers), so the node has someone to gossip to.
        let sink = tokio::net::UdpSocket::bind("127.0.0.1:0").await.expect("bind the sink");
        let sink_addr = sink.local_addr().expect("sink addr");
        let generation = unix_millis();
        let self_id = ChitchatId::new("node-00000", generation, addr);
        let handle = spawn_chitchat(config(self_id, vec![sink_addr.to_string()], v1), Vec::new(), &transport)
            .await
            .expect("spawn");
        handle
            .with_chitchat(|chitchat| {
                for i in 1..n {
                    // Loopback addresses on distinct ports (nobody listens there);
                    // generation ids as Quickwit sets them: a start time in ms.
                    let port = 20_000 + (i % 40_000) as u16;
                    let ip = [127, 0, (i / 40_000) as u8, 1];
                    let id = ChitchatId::new(
                        format!("node-{i:05}"),
                        generation + 37 * i as u64,
                        (ip, port).into(),
                    );
                    chitchat.reset_node_state_if_update(&id, std::iter::empty(), 20 + (i as u64 % 7), 0);
                }
                chitchat.node_states().len()
            })
            .await;
        // Let a few gossip rounds go (the node sends Syns to up to 3 "peers" and the seed).
        tokio::time::sleep(Duration::from_millis(1_000)).await;
        let known = handle.with_chitchat(|chitchat| chitchat.node_states().len()).await;
        let syns = stats.syns_sent.load(Ordering::Relaxed);
        let max_syn = stats.max_syn.load(Ordering::Relaxed);
        let errors = stats.send_errors.load(Ordering::Relaxed);
        let last_error = stats.last_error.lock().unwrap().clone();
        let per_entry =
            if max_syn > 0 { format!("{:.2}", max_syn as f64 / n as f64) } else { "-".to_string() };
        println!(
            "n = {n:>6} (knows {known}): Syns sent {syns}, largest {max_syn} bytes ({per_entry} bytes per node), send errors {errors}{}",
            last_error.map_or(String::new(), |error| format!(", last error: {error}")),
        );
        println!(
            "{{\"lib\":\"chitchat-0.13\",\"protocol\":\"{:?}\",\"n\":{n},\"syns_sent\":{syns},\"max_syn_bytes\":{max_syn},\"send_errors\":{errors}}}",
            protocol(v1)
        );
        handle.abort();
        drop(sink);
    }
    ExitCode::SUCCESS
}

/// The value of key `k` of node `node`: `len` random alphanumerics, or with
/// `compressible` JSON-like text (split positions, the kind of state Quickwit's
/// indexers publish). A verbatim copy of `chitchat_core::testing::workload::value`,
/// which our `catchup_bench` uses, so both draw the same values from the same
/// RNG sequence. (The compressible text does not use the RNG: the restarted
/// node's "new" values are then the same text as before.)
fn value(rng: &mut fastrand::Rng, node: usize, k: usize, len: usize, compressible: bool) -> String {
    if !compressible {
        return std::iter::repeat_with(|| rng.alphanumeric()).take(len).collect();
    }
    let mut text = String::with_capacity(len + 128);
    let mut field = 0;
    text.push('{');
    while text.len() < len {
        text.push_str(&format!(
            "\"split-{field}\":{{\"index_uid\":\"index-{node:03}:01H\",\"source\":\"kafka\",\"position\":{}}},",
            k * 31 + field
        ));
        field += 1;
    }
    text.truncate(len.saturating_sub(1));
    text.push('}');
    text
}

/// `key-00042` (9 bytes for up to 100,000 keys).
fn key_name(k: usize) -> String {
    format!("key-{k:05}")
}

/// Whether `view` (a node's state of another node) holds all of the owner's
/// `values`: its max version first (cheap, so views still incomplete cost little
/// under the lock), then the key count and every value.
fn holds_all(view: Option<&NodeState>, values: &[String], max_version: u64) -> bool {
    let Some(view) = view else {
        return false;
    };
    view.max_version() >= max_version
        && view.num_key_values() == values.len()
        && values.iter().enumerate().all(|(k, value)| view.get(&key_name(k)) == Some(value.as_str()))
}

/// Removes from `pending` the (viewer, owner) pairs whose view is complete,
/// locking each viewer's state once (chitchat 0.13 keeps it behind a tokio
/// `Mutex` its gossip loop needs too).
async fn drop_complete(
    nodes: &[ChitchatHandle],
    ids: &[ChitchatId],
    values: &[Vec<String>],
    max_versions: &[u64],
    pending: &mut Vec<(usize, usize)>,
) {
    for (viewer, node) in nodes.iter().enumerate() {
        if !pending.iter().any(|&(pending_viewer, _)| pending_viewer == viewer) {
            continue;
        }
        let chitchat = node.chitchat();
        let chitchat = chitchat.lock().await;
        pending.retain(|&(pending_viewer, owner)| {
            pending_viewer != viewer
                || !holds_all(chitchat.node_state(&ids[owner]), &values[owner], max_versions[owner])
        });
    }
}

/// A node's own max version (the version of its last key set).
async fn own_max_version(node: &ChitchatHandle) -> u64 {
    node.with_chitchat(|chitchat| chitchat.self_node_state().max_version()).await
}

/// Starts N nodes with K keys each, waits until all know all, restarts the last
/// node under a new generation with fresh values and measures the catch-up.
async fn catchup(options: Options) -> ExitCode {
    let Options { nodes: count, keys, value_bytes, compressible, timeout, v1, .. } = options;
    if count < 2 || keys == 0 {
        println!("catchup needs at least 2 nodes and 1 key");
        return ExitCode::from(2);
    }
    let stats = Arc::new(Stats::default());
    let transport = CountingTransport { stats: stats.clone() };
    let addrs = free_addrs(count);
    // Names, generations, seeds and cluster id as our bench has them (they
    // travel in every digest and delta): `n00`…, generation 1 then 2 after the
    // restart, node 0 as the seed of all the others.
    let seeds = |i: usize| if i == 0 { Vec::new() } else { vec![addrs[0].to_string()] };
    let node_config = |id: ChitchatId, i: usize| ChitchatConfig {
        cluster_id: "catchup".to_string(),
        ..config(id, seeds(i), v1)
    };
    let mut ids: Vec<ChitchatId> =
        addrs.iter().enumerate().map(|(i, addr)| ChitchatId::new(format!("n{i:02}"), 1, *addr)).collect();
    // Every value up front (node by node, key by key, as our bench draws them),
    // so no value is generated while something is timed.
    let mut rng = fastrand::Rng::with_seed(1);
    let mut values: Vec<Vec<String>> = (0..count)
        .map(|node| (0..keys).map(|k| value(&mut rng, node, k, value_bytes, compressible)).collect())
        .collect();
    // A node's keys are set as its initial key-values, before its gossip loop runs.
    let key_values = |values: &[String]| {
        values.iter().enumerate().map(|(k, value)| (key_name(k), value.clone())).collect()
    };

    let start = Instant::now();
    let mut nodes: Vec<ChitchatHandle> = Vec::with_capacity(count);
    for (i, id) in ids.iter().enumerate() {
        match spawn_chitchat(node_config(id.clone(), i), key_values(&values[i]), &transport).await {
            Ok(node) => nodes.push(node),
            Err(error) => {
                println!("could not start node {i}: {error:#}");
                return ExitCode::FAILURE;
            }
        }
    }
    let mut max_versions = Vec::with_capacity(count);
    for node in &nodes {
        max_versions.push(own_max_version(node).await);
    }
    println!(
        "chitchat 0.13 ({:?}): started {count} nodes with {keys} keys of {value_bytes} bytes each ({}) in {:.2?}",
        protocol(v1),
        if compressible { "compressible" } else { "random" },
        start.elapsed()
    );

    // Every node's view of every other node, until all are complete.
    let mut pending: Vec<(usize, usize)> = (0..count)
        .flat_map(|viewer| (0..count).filter(move |&owner| owner != viewer).map(move |owner| (viewer, owner)))
        .collect();
    loop {
        drop_complete(&nodes, &ids, &values, &max_versions, &mut pending).await;
        if pending.is_empty() {
            break;
        }
        if start.elapsed() > timeout {
            println!("initial state did not converge within {timeout:?}: {} views incomplete", pending.len());
            return ExitCode::FAILURE;
        }
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
    println!("every node holds every node's keys after {:.2?} (VmRSS {} KiB)", start.elapsed(), rss_kib());

    // The restart: the last node's instance is shut down (its task ends and its
    // socket is dropped, no goodbye), then a new one is spawned with the same
    // name and address, the next generation and fresh values.
    let last = count - 1;
    let old = nodes.pop().expect("at least two nodes");
    if let Err(error) = old.shutdown().await {
        println!("could not shut down node {last}: {error:#}");
        return ExitCode::FAILURE;
    }
    ids[last] = ChitchatId::new(format!("n{last:02}"), 2, addrs[last]);
    values[last] = (0..keys).map(|k| value(&mut rng, last, k, value_bytes, compressible)).collect();
    let restart_key_values = key_values(&values[last]);
    stats.max_datagram.store(0, Ordering::Relaxed);
    let bytes_before = stats.bytes_sent.load(Ordering::Relaxed);
    let datagrams_before = stats.datagrams_sent.load(Ordering::Relaxed);
    let errors_before = stats.send_errors.load(Ordering::Relaxed);
    let udp_before = udp_errors();
    // The old instance's socket is gone, the new one will start from 0.
    let drops_before = socket_drops(&addrs);
    let cpu_before = cpu_seconds();
    let restarted = Instant::now();
    match spawn_chitchat(node_config(ids[last].clone(), last), restart_key_values, &transport).await {
        Ok(node) => nodes.push(node),
        Err(error) => {
            println!("could not restart node {last}: {error:#}");
            return ExitCode::FAILURE;
        }
    }
    max_versions[last] = own_max_version(&nodes[last]).await;

    // What is left to complete: the restarted node's views of every other node,
    // and every other node's view of the restarted node under its new
    // generation. The others' views of each other were complete before the
    // restart and nothing has changed them since.
    let mut pending: Vec<(usize, usize)> =
        (0..last).flat_map(|other| [(last, other), (other, last)]).collect();
    let mut first_keys: Option<Duration> = None;
    loop {
        if first_keys.is_none() {
            let others = &ids[..last];
            let holds_first = nodes[last]
                .with_chitchat(|chitchat| {
                    others
                        .iter()
                        .all(|id| chitchat.node_state(id).is_some_and(|view| view.get("key-00000").is_some()))
                })
                .await;
            if holds_first {
                first_keys = Some(restarted.elapsed());
            }
        }
        drop_complete(&nodes, &ids, &values, &max_versions, &mut pending).await;
        if pending.is_empty() {
            break;
        }
        if restarted.elapsed() > timeout {
            let restarted_views = pending.iter().filter(|&&(viewer, _)| viewer == last).count();
            println!(
                "catch-up did not complete within {timeout:?}: {} views incomplete ({restarted_views} of them the restarted node's), {} bytes sent",
                pending.len(),
                stats.bytes_sent.load(Ordering::Relaxed) - bytes_before
            );
            return ExitCode::FAILURE;
        }
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
    let full_state = restarted.elapsed();
    let cpu = cpu_seconds() - cpu_before;
    let udp_after = udp_errors();
    let drops = socket_drops(&addrs) - drops_before;
    let bytes = stats.bytes_sent.load(Ordering::Relaxed) - bytes_before;
    let datagrams = stats.datagrams_sent.load(Ordering::Relaxed) - datagrams_before;
    let send_errors = stats.send_errors.load(Ordering::Relaxed) - errors_before;
    // Both conditions may have become true between two polls.
    let first_keys = first_keys.unwrap_or(full_state);
    let interval = GOSSIP_INTERVAL.as_secs_f64();
    let (first_keys_rounds, rounds) =
        (first_keys.as_secs_f64() / interval, full_state.as_secs_f64() / interval);
    let bytes_to_move = 2 * (count as u64 - 1) * keys as u64 * (9 + value_bytes as u64);
    let bytes_ratio = bytes as f64 / bytes_to_move as f64;

    println!(
        "restart of n{last:02} (generation 2): it holds key-00000 of every other node after {first_keys:.2?} ({first_keys_rounds:.1} rounds), every node holds every node's current keys after {full_state:.2?} ({rounds:.1} rounds)"
    );
    println!(
        "sent {bytes} bytes in {datagrams} datagrams (largest {} bytes), {bytes_ratio:.2} × the {bytes_to_move} bytes to move; send errors: {send_errors}",
        stats.max_datagram.load(Ordering::Relaxed)
    );
    println!("CPU: {cpu:.2} s ({:.0}% of one core)", cpu / full_state.as_secs_f64() * 100.0);
    println!(
        "datagrams the kernel dropped at our sockets' full receive buffers: {drops} (system-wide counters: InErrors +{}, RcvbufErrors +{}, SndbufErrors +{})",
        udp_after[0] - udp_before[0],
        udp_after[1] - udp_before[1],
        udp_after[2] - udp_before[2]
    );
    // chitchat 0.13 keeps a node's previous generation as a node of its own
    // (until the failure detector's GC, 24 h after it is found dead), and
    // gossips it: the restarted node learns its own old state too.
    let new_id = ids[last].clone();
    let old_keys = nodes[last]
        .with_chitchat(|chitchat| {
            chitchat
                .node_states()
                .iter()
                .filter(|(id, _)| id.node_id == new_id.node_id && id.generation_id != new_id.generation_id)
                .map(|(_, view)| view.num_key_values())
                .sum::<usize>()
        })
        .await;
    println!("the restarted node also holds {old_keys} keys of its previous generation");
    println!(
        "{{\"impl\":\"chitchat-0.13\",\"nodes\":{count},\"keys\":{keys},\"value_bytes\":{value_bytes},\"compressible\":{compressible},\"v1\":{v1},\"first_keys_rounds\":{first_keys_rounds:.1},\"rounds\":{rounds:.1},\"bytes_sent\":{bytes},\"bytes_to_move\":{bytes_to_move},\"bytes_ratio\":{bytes_ratio:.2},\"cpu_secs\":{cpu:.2}}}"
    );
    for node in nodes {
        node.abort();
    }
    ExitCode::SUCCESS
}

fn rss_kib() -> u64 {
    let status = std::fs::read_to_string("/proc/self/status").unwrap_or_default();
    status
        .lines()
        .find_map(|line| line.strip_prefix("VmRSS:"))
        .and_then(|rest| rest.trim().trim_end_matches("kB").trim().parse().ok())
        .unwrap_or(0)
}

/// The kernel's UDP error counters from `/proc/net/snmp` (system-wide):
/// InErrors, RcvbufErrors, SndbufErrors. A datagram dropped because a receive
/// buffer was full counts in the first two.
fn udp_errors() -> [u64; 3] {
    let snmp = std::fs::read_to_string("/proc/net/snmp").unwrap_or_default();
    let mut lines = snmp.lines().filter(|line| line.starts_with("Udp:"));
    let (Some(names), Some(values)) = (lines.next(), lines.next()) else {
        return [0; 3];
    };
    let counter = |wanted: &str| {
        names
            .split_whitespace()
            .zip(values.split_whitespace())
            .find(|(name, _)| *name == wanted)
            .and_then(|(_, value)| value.parse().ok())
            .unwrap_or(0)
    };
    [counter("InErrors"), counter("RcvbufErrors"), counter("SndbufErrors")]
}

/// Datagrams the kernel dropped at the sockets bound to `addrs` (the `drops`
/// column of `/proc/net/udp`, counted per socket: a full receive buffer).
fn socket_drops(addrs: &[SocketAddr]) -> u64 {
    let table = std::fs::read_to_string("/proc/net/udp").unwrap_or_default();
    // Local addresses as the table spells them: 127.0.0.1:7280 is 0100007F:1C70.
    let wanted: Vec<String> = addrs
        .iter()
        .filter_map(|addr| match addr {
            SocketAddr::V4(addr) => {
                Some(format!("{:08X}:{:04X}", u32::from_le_bytes(addr.ip().octets()), addr.port()))
            }
            SocketAddr::V6(_) => None,
        })
        .collect();
    table
        .lines()
        .skip(1)
        .filter_map(|line| {
            let fields: Vec<&str> = line.split_whitespace().collect();
            let local = *fields.get(1)?;
            let drops = fields.last()?.parse::<u64>().ok()?;
            wanted.iter().any(|addr| addr == local).then_some(drops)
        })
        .sum()
}

fn cpu_seconds() -> f64 {
    let stat = std::fs::read_to_string("/proc/self/stat").unwrap_or_default();
    let after_name = stat.rsplit_once(')').map_or("", |(_, rest)| rest);
    let fields: Vec<&str> = after_name.split_whitespace().collect();
    let ticks = |index: usize| fields.get(index).and_then(|field| field.parse::<u64>().ok()).unwrap_or(0);
    (ticks(11) + ticks(12)) as f64 / USER_HZ
}
