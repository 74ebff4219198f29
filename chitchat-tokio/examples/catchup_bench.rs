//! Catch-up of a large state after a restart, over loopback UDP and TCP in one
//! process: the workloads of the large-state issue, side by side with
//! chitchat 0.13 (`compare/chitchat-0.13`, subcommand `catchup`, same flags).
//!
//! ```text
//! cargo run --release -p chitchat-tokio --example catchup_bench -- --keys 1000 --value-bytes 1000
//! ```
//!
//! `--nodes` nodes (10) gossip every 100 ms with fanout 3, each sets `--keys`
//! keys (`key-00000`...) of `--value-bytes` bytes (random letters, or
//! JSON-like text with `--compressible`) and they converge. Then the last node
//! stops and starts again on the same address with a new generation, and sets
//! its keys again (new values). Measured from the restart:
//!
//! - `first_keys_rounds`: until the restarted node holds `key-00000` of every
//!   other node, in 100 ms rounds;
//! - `rounds`: until every node holds every node's state at the owner's max
//!   version;
//! - `bytes_sent`: datagram and stream bytes all nodes sent meanwhile, against
//!   `bytes_to_move` (every other node's keys to the restarted node, and its
//!   keys to every other node: 2 × (N − 1) × K × (9 + V));
//! - `cpu_secs`: the process's user and system CPU time meanwhile;
//! - `rss_over_raw`: before the restart, how much the process's resident
//!   memory grew over the key and value bytes all nodes hold (N × N × K ×
//!   (9 + V));
//! - `heap_over_raw`: the same for the heap bytes the process holds (counted
//!   by a counting global allocator): what the nodes keep alive, without the
//!   allocator's slack and the freed pages it retains.
//!
//! `--max-datagram B` sets `Config::max_datagram_size` (default 65,507). With
//! `CATCHUP_DEBUG=1` in the environment, every node's stream counters are printed.
//! `--json` prints one JSON line after the text. Linux only (`/proc/self`).

use std::process::ExitCode;
use std::time::{Duration, Instant};

use chitchat_tokio::chitchat_core::testing::workload::{key, value};
use chitchat_tokio::{ChitchatHandle, Config, NodeConfig, NodeId};
use chitchat_tools::alloc::{CountingAllocator, live_heap_bytes};
use chitchat_tools::process::{cpu_seconds, rss_kib};

#[global_allocator]
static ALLOCATOR: CountingAllocator = CountingAllocator;

/// One gossip round.
const ROUND: Duration = Duration::from_millis(100);

struct Options {
    nodes: usize,
    keys: usize,
    value_bytes: usize,
    compressible: bool,
    max_datagram: usize,
    timeout: Duration,
    json: bool,
}

fn parse(args: impl Iterator<Item = String>) -> Result<Options, String> {
    let mut options = Options {
        nodes: 10,
        keys: 100,
        value_bytes: 100,
        compressible: false,
        max_datagram: Config::MAX_DATAGRAM_SIZE,
        timeout: Duration::from_secs(300),
        json: false,
    };
    let mut args = args.into_iter();
    while let Some(arg) = args.next() {
        match arg.as_str() {
            "--compressible" => options.compressible = true,
            "--json" => options.json = true,
            _ => {
                let value: u64 = args
                    .next()
                    .and_then(|value| value.parse().ok())
                    .ok_or_else(|| format!("{arg} needs a number"))?;
                match arg.as_str() {
                    "--nodes" => options.nodes = value as usize,
                    "--keys" => options.keys = value as usize,
                    "--value-bytes" => options.value_bytes = value as usize,
                    "--max-datagram" => options.max_datagram = value as usize,
                    "--timeout-secs" => options.timeout = Duration::from_secs(value),
                    _ => return Err(format!("unknown argument {arg:?}")),
                }
            }
        }
    }
    if options.nodes < 2 || options.keys == 0 {
        return Err("at least 2 nodes and 1 key".into());
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
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .expect("a tokio runtime");
    runtime.block_on(bench(options))
}

fn config(options: &Options) -> Config {
    Config {
        cluster_id: "catchup".to_string(),
        max_datagram_size: options.max_datagram,
        max_key_len: 16,
        max_node_name_len: 16,
        max_value_len: options.value_bytes.max(16),
        max_keys_per_node: options.keys.max(16),
        // Nothing is collected during a run.
        dead_node_grace_period: Duration::from_secs(600),
        deletion_grace_period: Duration::from_secs(600),
        ..Config::local_test()
    }
}

/// Starts node `i` with its keys (drawn from `rng`).
async fn start(
    options: &Options,
    i: usize,
    addr: std::net::SocketAddr,
    seeds: &[String],
    generation: u64,
    rng: &mut fastrand::Rng,
) -> ChitchatHandle {
    let mut node_config =
        NodeConfig::new(format!("n{i:02}"), addr, config(options)).with_generation(generation);
    node_config.seeds = seeds.to_vec();
    node_config.initial_key_values = (0..options.keys)
        .map(|k| (key(k), value(rng, i, k, options.value_bytes, options.compressible)))
        .collect();
    chitchat_tokio::spawn(node_config).await.expect("start a node")
}

/// Every node's view of every node's max version equals the owner's.
async fn caught_up(nodes: &[ChitchatHandle]) -> bool {
    let mut owners = Vec::with_capacity(nodes.len());
    for node in nodes {
        let id = node.self_id().clone();
        let max = node.with_chitchat(|chitchat, _| chitchat.self_node_state().max_version()).await;
        owners.push((id, max.expect("running")));
    }
    for node in nodes {
        let owners = owners.clone();
        let complete = node
            .with_chitchat(move |chitchat, _| {
                owners
                    .iter()
                    .all(|(id, max)| chitchat.node_state(id).is_some_and(|state| state.max_version() == *max))
            })
            .await
            .expect("running");
        if !complete {
            return false;
        }
    }
    true
}

/// Whether `node` holds the first key of every node of `others`.
async fn has_first_keys(node: &ChitchatHandle, others: &[NodeId]) -> bool {
    let others = others.to_vec();
    node.with_chitchat(move |chitchat, _| {
        others.iter().all(|id| chitchat.node_state(id).is_some_and(|state| state.get(&key(0)).is_some()))
    })
    .await
    .expect("running")
}

/// Datagram and stream bytes a node sent since it started.
async fn bytes_sent(node: &ChitchatHandle) -> u64 {
    let metrics = node.metrics().await.expect("running").core;
    metrics.bytes_sent + metrics.streams.bytes_sent
}

async fn bench(options: Options) -> ExitCode {
    let mut rng = fastrand::Rng::with_seed(1);
    let count = options.nodes;
    let rss_before = rss_kib();
    let heap_before = live_heap_bytes();
    let mut nodes: Vec<ChitchatHandle> = Vec::with_capacity(count);
    let mut seeds = Vec::new();
    for i in 0..count {
        let node = start(&options, i, ([127, 0, 0, 1], 0).into(), &seeds, 1, &mut rng).await;
        if seeds.is_empty() {
            seeds.push(node.local_addr().to_string());
        }
        nodes.push(node);
    }
    let start_time = Instant::now();
    while !caught_up(&nodes).await {
        if start_time.elapsed() > options.timeout {
            println!("the cluster did not converge within {:?}", options.timeout);
            return ExitCode::FAILURE;
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    // Memory: what the process grew by, over the key and value bytes all
    // nodes hold (each holds every node's state, its own included).
    let raw_held = (count * count * options.keys * (key(0).len() + options.value_bytes)) as f64;
    let rss_over_raw = (rss_kib().saturating_sub(rss_before) * 1_024) as f64 / raw_held;
    let heap_over_raw = live_heap_bytes().saturating_sub(heap_before) as f64 / raw_held;
    println!(
        "{count} nodes with {} keys of {} bytes converged in {:.2?}; memory {rss_over_raw:.2}x (heap \
         {heap_over_raw:.2}x) the key and value bytes held",
        options.keys,
        options.value_bytes,
        start_time.elapsed()
    );

    // The restart: same name and address, a new generation, new values.
    let last = nodes.pop().expect("at least 2 nodes");
    let addr = last.local_addr();
    let mut sent_before = 0;
    for node in &nodes {
        sent_before += bytes_sent(node).await;
    }
    last.shutdown().await.expect("the node stops");
    let cpu_before = cpu_seconds();
    let restarted_at = Instant::now();
    let restarted = start(&options, count - 1, addr, &seeds, 2, &mut rng).await;
    let others: Vec<NodeId> = nodes.iter().map(|node| node.self_id().clone()).collect();
    nodes.push(restarted);
    let mut first_keys = None;
    loop {
        let elapsed = restarted_at.elapsed();
        if first_keys.is_none() && has_first_keys(&nodes[count - 1], &others).await {
            first_keys = Some(elapsed);
        }
        if first_keys.is_some() && caught_up(&nodes).await {
            break;
        }
        if elapsed > options.timeout {
            println!("not caught up within {:?}", options.timeout);
            return ExitCode::FAILURE;
        }
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
    let full = restarted_at.elapsed();
    if std::env::var_os("CATCHUP_DEBUG").is_some() {
        for node in &nodes {
            let streams = node.metrics().await.expect("running").core.streams;
            eprintln!("{}: {streams:?}", node.self_id().name());
        }
    }
    let cpu = cpu_seconds() - cpu_before;
    let mut sent = 0;
    for node in &nodes {
        sent += bytes_sent(node).await;
    }
    let sent = sent - sent_before;
    let first_keys = first_keys.unwrap_or(full);
    let to_move = 2 * (count - 1) * options.keys * (key(0).len() + options.value_bytes);
    let ratio = sent as f64 / to_move as f64;
    let rounds = full.as_secs_f64() / ROUND.as_secs_f64();
    let first_rounds = first_keys.as_secs_f64() / ROUND.as_secs_f64();
    println!("first key of every node at the restarted node: {first_rounds:.1} rounds ({first_keys:.2?})");
    println!("every node holds every node's state: {rounds:.1} rounds ({full:.2?}), {cpu:.2} s of CPU");
    println!("{sent} bytes sent for {to_move} bytes that must move (x{ratio:.2})");
    if options.json {
        println!(
            "{{\"impl\":\"chitchat\",\"nodes\":{count},\"keys\":{},\"value_bytes\":{},\"compressible\":{},\
             \"max_datagram\":{},\"first_keys_rounds\":{first_rounds:.1},\"rounds\":{rounds:.1},\
             \"bytes_sent\":{sent},\"bytes_to_move\":{to_move},\"bytes_ratio\":{ratio:.2},\"cpu_secs\":{cpu:.2},\
             \"rss_over_raw\":{rss_over_raw:.2},\"heap_over_raw\":{heap_over_raw:.2}}}",
            options.keys, options.value_bytes, options.compressible, options.max_datagram
        );
    }
    for node in nodes {
        let _ = node.shutdown().await;
    }
    ExitCode::SUCCESS
}
