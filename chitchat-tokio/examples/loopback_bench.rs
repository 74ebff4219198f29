//! Measures a cluster of N tokio nodes in one process over loopback UDP.
//!
//! ```text
//! cargo run --release -p chitchat-tokio --example loopback_bench -- --nodes 100
//! ```
//!
//! Every node gossips every 100 ms (`Config::local_test()`; `--interval-ms`
//! sets another interval, with grace periods of 50 intervals as there) and
//! holds 20 keys. The
//! bench reports:
//!
//! - time to converge: from the first node's start until every node sees N live
//!   nodes and all N × 20 keys;
//! - CPU per node per round: user + system CPU time of the process over a
//!   steady-state window, divided by the gossip rounds all nodes ran in it;
//! - resident memory per node: VmRSS after convergence minus VmRSS before the
//!   first node started, divided by N;
//! - heap per node: the heap bytes the process holds after the steady window
//!   (counted by a counting global allocator) less those before the first
//!   node started, divided by N: what the nodes keep alive, without the
//!   allocator's slack and retained free pages that VmRSS includes (which vary
//!   from run to run by tens of KiB a node);
//! - false deads: nodes that dropped out of some node's live set (no node is ever
//!   stopped or leaves, so every one is wrong).
//!
//! `--phi-window N` sets `Config::phi_sampling_window` (default 1,000), whose
//! per-peer history dominates memory once a cluster has run for a while.
//!
//! The nodes share a tokio runtime of 2 worker threads; `--workers N` sets
//! another number, `--workers 0` a current-thread runtime (one thread: no
//! wake-ups of one worker by another).
//!
//! `--progress` prints the spread of the live counts every 5 s until every
//! node sees every other (for cold starts that take a while).
//!
//! `--crash` then stops the last node after the steady window (a shutdown
//! without leave: its task ends and its socket closes, no farewell is sent) and
//! measures how long until no other node has it in its live set. False deads
//! are counted before that. `--json` also prints the results as one JSON line,
//! for the side-by-side comparison with chitchat 0.13 (`compare/chitchat-0.13`).
//!
//! Linux only (it reads `/proc/self`).

use std::process::ExitCode;
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{Duration, Instant};

use chitchat_tokio::Config;
use chitchat_tokio::futures_lite::StreamExt;
use chitchat_tokio::{ChitchatHandle, NodeConfig, NodeSet};
use chitchat_tools::alloc::{CountingAllocator, live_heap_bytes, take_peak_heap_bytes};
use chitchat_tools::process::{cpu_seconds, rss_kib};

#[global_allocator]
static ALLOCATOR: CountingAllocator = CountingAllocator;

struct Options {
    nodes: usize,
    keys: usize,
    steady: Duration,
    timeout: Duration,
    phi_window: Option<usize>,
    interval: Duration,
    /// Worker threads of the tokio runtime (0: a current-thread runtime).
    workers: usize,
    crash: bool,
    json: bool,
    /// Print the live counts every 5 s until convergence.
    progress: bool,
}

fn parse(args: impl Iterator<Item = String>) -> Result<Options, String> {
    let mut options = Options {
        nodes: 100,
        keys: 20,
        steady: Duration::from_secs(10),
        timeout: Duration::from_secs(300),
        phi_window: None,
        interval: Config::local_test().gossip_interval,
        workers: 2,
        crash: false,
        json: false,
        progress: false,
    };
    let mut args = args.into_iter();
    while let Some(arg) = args.next() {
        match arg.as_str() {
            "--crash" => {
                options.crash = true;
                continue;
            }
            "--json" => {
                options.json = true;
                continue;
            }
            "--progress" => {
                options.progress = true;
                continue;
            }
            _ => {}
        }
        let value: u64 = args
            .next()
            .and_then(|value| value.parse().ok())
            .ok_or_else(|| format!("{arg} needs a number"))?;
        match arg.as_str() {
            "--nodes" => options.nodes = value as usize,
            "--keys" => options.keys = value as usize,
            "--steady-secs" => options.steady = Duration::from_secs(value),
            "--timeout-secs" => options.timeout = Duration::from_secs(value),
            "--phi-window" => options.phi_window = Some(value as usize),
            "--interval-ms" => options.interval = Duration::from_millis(value),
            "--workers" => options.workers = value as usize,
            _ => {
                return Err(format!(
                    "unknown argument {arg:?} (--nodes, --keys, --steady-secs, --timeout-secs, --phi-window, \
                     --interval-ms, --workers, --crash, --json, --progress)"
                ));
            }
        }
    }
    Ok(options)
}

fn main() -> ExitCode {
    let options = match parse(std::env::args().skip(1)) {
        Ok(options) => options,
        Err(message) => {
            eprintln!("error: {message}");
            return ExitCode::from(2);
        }
    };
    let mut builder = match options.workers {
        0 => tokio::runtime::Builder::new_current_thread(),
        workers => {
            let mut builder = tokio::runtime::Builder::new_multi_thread();
            builder.worker_threads(workers);
            builder
        }
    };
    let runtime = builder.enable_all().build().expect("a tokio runtime");
    runtime.block_on(bench(options))
}

/// The spread of the live counts the nodes see.
fn live_spread(nodes: &[ChitchatHandle]) -> String {
    let mut live: Vec<usize> = nodes.iter().map(|node| node.live_nodes().len()).collect();
    live.sort_unstable();
    format!(
        "min {} / 10th percentile {} / median {} / max {}",
        live[0],
        live[live.len() / 10],
        live[live.len() / 2],
        live[live.len() - 1]
    )
}

async fn bench(options: Options) -> ExitCode {
    let Options { nodes: count, keys, steady, timeout, phi_window, interval, crash, json, progress, .. } =
        options;
    let rss_before = rss_kib();
    let heap_before = live_heap_bytes();
    take_peak_heap_bytes();
    let false_deads = Arc::new(AtomicU64::new(0));
    let start = Instant::now();
    let mut nodes: Vec<ChitchatHandle> = Vec::with_capacity(count);
    for i in 0..count {
        // `local_test`'s grace periods are 50 of its intervals: so at any interval.
        let mut chitchat = Config {
            cluster_id: "bench".to_string(),
            gossip_interval: interval,
            dead_node_grace_period: interval * 50,
            deletion_grace_period: interval * 50,
            ..Config::local_test()
        };
        if let Some(window) = phi_window {
            chitchat.phi_sampling_window = window;
        }
        let mut config = NodeConfig::new(format!("node-{i:04}"), ([127, 0, 0, 1], 0).into(), chitchat);
        config.seeds = nodes.iter().take(3).map(|seed| seed.local_addr().to_string()).collect();
        config.initial_key_values =
            (0..keys).map(|key| (format!("key-{key:02}"), format!("value-{i}-{key}"))).collect();
        let node = chitchat_tokio::spawn(config).await.expect("start a node");
        // A watch (not an event subscription, whose buffer would weigh on the
        // memory measured): a node that leaves a live set is seen dead, since no
        // node is ever stopped or leaves.
        let mut live = node.watch_live_nodes();
        let false_deads = false_deads.clone();
        tokio::spawn(async move {
            let mut previous = Arc::new(NodeSet::new());
            while let Some(current) = live.next().await {
                let lost = previous.difference(&current).count() as u64;
                false_deads.fetch_add(lost, Ordering::Relaxed);
                previous = current;
            }
        });
        nodes.push(node);
    }
    let started = start.elapsed();
    println!("started {count} nodes with {keys} keys each in {started:.2?} (VmRSS {} KiB)", rss_kib());

    // Convergence: everyone live everywhere, then every key everywhere.
    let mut next_report = Duration::from_secs(5);
    while nodes.iter().any(|node| node.live_nodes().len() != count) {
        if start.elapsed() > timeout {
            println!("did not converge within {timeout:?}: live nodes seen, {}", live_spread(&nodes));
            println!("{}", liveness_counts(&nodes).await);
            return ExitCode::FAILURE;
        }
        if progress && start.elapsed() >= next_report {
            println!(
                "{:>5.1} s: live nodes seen, {}; CPU {:.1} s",
                start.elapsed().as_secs_f64(),
                live_spread(&nodes),
                cpu_seconds()
            );
            if let Some(lonely) = nodes.iter().find(|node| node.live_nodes().len() == 1) {
                let m = lonely.metrics().await.expect("running").core;
                println!(
                    "        a lonely node: {} rounds, {} sent, {} received, {} SynAcks ({} unsolicited), {} Syns, {} Acks, {} unproven, {} rejected, {} pauses",
                    m.gossip_rounds,
                    m.datagrams_sent,
                    m.datagrams_received,
                    m.syn_acks_received,
                    m.unsolicited_syn_acks,
                    m.syns_received,
                    m.acks_received,
                    m.sections_unproven,
                    m.rejected.total,
                    m.pauses
                );
            }
            next_report += Duration::from_secs(5);
        }
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    let live_converged = start.elapsed();
    let mut pending: Vec<&ChitchatHandle> = nodes.iter().collect();
    while !pending.is_empty() {
        let mut still = Vec::new();
        for node in pending {
            let states = node.node_states().await.expect("running");
            let complete = states.len() == count
                && states
                    .iter()
                    .all(|state| state.key_values.iter().filter(|(_, v)| v.is_visible()).count() == keys);
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
    let heap_peak_per_node =
        take_peak_heap_bytes().saturating_sub(heap_before) as f64 / 1_024.0 / count as f64;

    // Steady state: CPU over a window, per node and round.
    tokio::time::sleep(Duration::from_secs(2)).await;
    let rounds_before = total_rounds(&nodes).await;
    let bytes_before = total_bytes_sent(&nodes).await;
    let false_deads_before = false_deads.load(Ordering::Relaxed);
    let cpu_before = cpu_seconds();
    tokio::time::sleep(steady).await;
    let cpu = cpu_seconds() - cpu_before;
    let rss_steady = rss_kib();
    let heap_per_node = live_heap_bytes().saturating_sub(heap_before) as f64 / 1_024.0 / count as f64;
    let rounds = total_rounds(&nodes).await - rounds_before;
    let bytes = total_bytes_sent(&nodes).await - bytes_before;
    let cpu_per_round = cpu / rounds.max(1) as f64;
    let rss_per_node = (rss_after.saturating_sub(rss_before)) as f64 / count as f64;
    let mut driver_errors = 0;
    for node in &nodes {
        let metrics = node.driver_metrics();
        driver_errors += metrics.send_errors + metrics.recv_errors;
    }
    // Counted before any crash: the crashed node leaving live sets is expected.
    let false_deads = false_deads.load(Ordering::Relaxed);
    let steady_false_deads = false_deads - false_deads_before;
    let detection = if crash { measure_crash(&nodes, interval, timeout).await } else { None };
    // The crashed node (the last one) has already been shut down.
    let running = if crash { count - 1 } else { count };
    let liveness = liveness_counts(&nodes[..running]).await;
    for node in &nodes[..running] {
        node.shutdown().await.expect("a clean shutdown");
    }

    println!(
        "steady state over {steady:?}: {rounds} rounds, {cpu:.2} s CPU ({:.0}% of one core)",
        cpu / steady.as_secs_f64() * 100.0
    );
    println!("CPU per node per round:   {:.1} µs", cpu_per_round * 1e6);
    println!("bytes sent per node per round: {:.0}", bytes as f64 / rounds.max(1) as f64);
    println!(
        "resident memory per node: {rss_per_node:.0} KiB (VmRSS {rss_before} KiB before, {rss_after} KiB after)"
    );
    println!(
        "resident memory per node after the steady window: {:.0} KiB",
        rss_steady.saturating_sub(rss_before) as f64 / count as f64
    );
    println!(
        "heap per node after the steady window: {heap_per_node:.1} KiB (at most {heap_peak_per_node:.1} KiB until convergence)"
    );
    println!("false deads: {false_deads} ({steady_false_deads} in the steady window)");
    println!("socket errors: {driver_errors}");
    println!("{liveness}");
    println!(
        "| {count} | {:.2} s | {:.2} s | {:.1} µs | {rss_per_node:.0} KiB | {} |",
        live_converged.as_secs_f64(),
        converged.as_secs_f64(),
        cpu_per_round * 1e6,
        false_deads
    );
    if json {
        println!(
            "{{\"lib\":\"chitchat-tokio\",\"nodes\":{count},\"keys\":{keys},\"all_live_s\":{:.3},\"all_keys_s\":{:.3},\"cpu_us_per_node_round\":{:.1},\"bytes_per_node_round\":{:.0},\"rss_kib_per_node\":{rss_per_node:.0},\"rss_kib_per_node_steady\":{:.0},\"heap_kib_per_node\":{heap_per_node:.1},\"heap_peak_kib_per_node\":{heap_peak_per_node:.1},\"false_deads\":{false_deads},\"false_deads_steady\":{steady_false_deads},\"detection_s\":{}}}",
            live_converged.as_secs_f64(),
            converged.as_secs_f64(),
            cpu_per_round * 1e6,
            bytes as f64 / rounds.max(1) as f64,
            rss_steady.saturating_sub(rss_before) as f64 / count as f64,
            detection.map_or("null".to_string(), |(_, all)| format!("{all:.3}"))
        );
    }
    ExitCode::SUCCESS
}

/// Stops the last node without a leave and waits until no other node has it in
/// its live set. Returns the median and the largest detection time in seconds.
async fn measure_crash(
    nodes: &[ChitchatHandle],
    interval: Duration,
    timeout: Duration,
) -> Option<(f64, f64)> {
    let (victim, observers) = nodes.split_last()?;
    let victim_id = victim.self_id().clone();
    let interval = interval.as_secs_f64();
    victim.shutdown().await.expect("a clean shutdown");
    let crashed = Instant::now();
    let mut seen: Vec<Option<f64>> = vec![None; observers.len()];
    while seen.iter().any(Option::is_none) {
        if crashed.elapsed() > timeout {
            let missing = seen.iter().filter(|seen| seen.is_none()).count();
            println!("crash not detected by {missing} nodes within {timeout:?}");
            return None;
        }
        for (node, seen) in observers.iter().zip(seen.iter_mut()) {
            if seen.is_none() && !node.live_nodes().contains(&victim_id) {
                *seen = Some(crashed.elapsed().as_secs_f64());
            }
        }
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
    let mut times: Vec<f64> = seen.into_iter().flatten().collect();
    times.sort_by(f64::total_cmp);
    let (first, median, all) = (times[0], times[times.len() / 2], times[times.len() - 1]);
    println!(
        "crash of {} detected by all {} others: first {first:.2} s, median {median:.2} s, all {all:.2} s ({:.1} / {:.1} / {:.1} rounds)",
        victim_id.name(),
        times.len(),
        first / interval,
        median / interval,
        all / interval
    );
    Some((median, all))
}

async fn total_rounds(nodes: &[ChitchatHandle]) -> u64 {
    let mut total = 0;
    for node in nodes {
        total += node.metrics().await.expect("running").core.gossip_rounds;
    }
    total
}

async fn total_bytes_sent(nodes: &[ChitchatHandle]) -> u64 {
    let mut total = 0;
    for node in nodes {
        total += node.metrics().await.expect("running").core.bytes_sent;
    }
    total
}

/// What the nodes' liveness machinery and datagram path did over the whole
/// run (their sums): a false dead is explained by accusations, by pauses
/// (rounds that ran more than two intervals late), or by answers that came
/// too late to count; a cluster that does not form, by answers dropped or
/// refused.
async fn liveness_counts(nodes: &[ChitchatHandle]) -> String {
    let mut totals = chitchat_tokio::Metrics::default();
    let (mut socket_errors, mut rejected) = (0, 0);
    for node in nodes {
        let metrics = node.metrics().await.expect("running");
        let core = metrics.core;
        totals.accusations += core.accusations;
        totals.accusations_refuted += core.accusations_refuted;
        totals.pauses += core.pauses;
        totals.unsolicited_syn_acks += core.unsolicited_syn_acks;
        totals.gossip_rounds += core.gossip_rounds;
        totals.quiet_rounds += core.quiet_rounds;
        totals.datagrams_sent += core.datagrams_sent;
        totals.datagrams_received += core.datagrams_received;
        totals.transmits_dropped += core.transmits_dropped;
        totals.unvalidated_answers_dropped += core.unvalidated_answers_dropped;
        totals.sections_unproven += core.sections_unproven;
        rejected += core.rejected.total;
        socket_errors += metrics.driver.send_errors + metrics.driver.recv_errors;
    }
    format!(
        "liveness: {} accusations ({} refuted), {} pauses, {} unsolicited SynAcks, {} of {} rounds quiet\n\
         datagrams: {} sent, {} received, {} rejected, {} dropped from the outbox, {} answers to unvalidated \
         addresses dropped, {} sections unproven, {} socket errors",
        totals.accusations,
        totals.accusations_refuted,
        totals.pauses,
        totals.unsolicited_syn_acks,
        totals.quiet_rounds,
        totals.gossip_rounds,
        totals.datagrams_sent,
        totals.datagrams_received,
        rejected,
        totals.transmits_dropped,
        totals.unvalidated_answers_dropped,
        totals.sections_unproven,
        socket_errors,
    )
}
