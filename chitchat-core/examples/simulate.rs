//! Simulates a cluster in virtual time and measures the protocol against the
//! limits of epidemic gossip.
//!
//! ```text
//! cargo run --release -p chitchat-core --features sim --example simulate -- --nodes 1000 --seed 1
//! cargo run --release -p chitchat-core --features sim --example simulate -- --nodes 1000 --loss 0.05 --json
//! ```
//!
//! Phases, each measured in gossip rounds (one round = one gossip interval):
//! 1. cold start: every node knows only the seed node (node 0); rounds until every
//!    node sees every node live (`membership_rounds`);
//! 2. steady state: once every node holds every key, 20 rounds for the cold
//!    start's last rumors to die out, then the bytes sent per node per round
//!    over 10 rounds (`bytes_per_node_round`);
//! 3. a key set on one node: rounds until every node holds it (`key_spread_rounds`);
//! 4. with `--crash`: one node crashes; rounds until every node sees it dead
//!    (`detection_rounds`);
//! 5. optionally one node stalls (`--stall-rounds R`) or the network drops
//!    everything (`--blackout-rounds R`) for a few rounds, then `--soak-rounds N`
//!    more rounds of steady state (e.g. to count false deads under loss).
//!
//! `false_dead` counts, over the whole run, the times a node saw a running node
//! dead. Everything but `wall_seconds` and `sim_rounds_per_sec` is identical
//! across runs with the same arguments.

use std::process::ExitCode;
use std::time::{Duration, Instant};

use chitchat_core::sim::{GilbertElliott, NetworkConfig, NodeIndex, Simulation};
use chitchat_core::{Config, NodeStatus};

struct Args {
    nodes: usize,
    seed: u64,
    loss: f64,
    burst: Option<GilbertElliott>,
    latency_ms: u64,
    jitter_ms: u64,
    fanout: usize,
    gossip_interval_ms: u64,
    max_datagram: usize,
    keys_per_node: usize,
    crash: bool,
    soak_rounds: u64,
    stall_rounds: u64,
    blackout_rounds: u64,
    phi_threshold: f64,
    max_rounds: u64,
    json: bool,
    check_invariants: bool,
    streams: bool,
    progress: bool,
}

const USAGE: &str = "simulate [--nodes N] [--seed S] [--loss P] [--bursty-loss P_GOOD_TO_BAD,P_BAD_TO_GOOD]
         [--latency-ms MS] [--jitter-ms MS] [--fanout F] [--gossip-interval-ms MS]
         [--max-datagram BYTES] [--keys-per-node K] [--crash|--no-crash] [--soak-rounds R]
         [--stall-rounds R] [--blackout-rounds R] [--phi-threshold PHI]
         [--max-rounds R] [--check-invariants] [--no-streams] [--progress] [--json]";

fn parse() -> Result<Args, String> {
    let mut args = Args {
        nodes: 100,
        seed: 1,
        loss: 0.0,
        burst: None,
        latency_ms: 1,
        jitter_ms: 0,
        fanout: 3,
        gossip_interval_ms: 1_000,
        max_datagram: Config::default().max_datagram_size,
        keys_per_node: 0,
        crash: true,
        soak_rounds: 0,
        stall_rounds: 0,
        blackout_rounds: 0,
        phi_threshold: Config::default().phi_threshold,
        max_rounds: 200,
        json: false,
        check_invariants: false,
        streams: true,
        progress: false,
    };
    let mut iter = std::env::args().skip(1);
    while let Some(flag) = iter.next() {
        let mut value = || iter.next().ok_or(format!("{flag} needs a value"));
        let number = |text: String| text.parse::<f64>().map_err(|error| format!("{flag}: {error}"));
        match flag.as_str() {
            "--nodes" => args.nodes = number(value()?)? as usize,
            "--seed" => args.seed = number(value()?)? as u64,
            "--loss" => args.loss = number(value()?)?,
            "--bursty-loss" => {
                let text = value()?;
                let (good_to_bad, bad_to_good) = text.split_once(',').ok_or("--bursty-loss P,Q")?;
                args.burst = Some(GilbertElliott {
                    good_to_bad: number(good_to_bad.to_string())?,
                    bad_to_good: number(bad_to_good.to_string())?,
                    loss_in_bad: 1.0,
                });
            }
            "--latency-ms" => args.latency_ms = number(value()?)? as u64,
            "--jitter-ms" => args.jitter_ms = number(value()?)? as u64,
            "--fanout" => args.fanout = number(value()?)? as usize,
            "--gossip-interval-ms" => args.gossip_interval_ms = number(value()?)? as u64,
            "--max-datagram" => args.max_datagram = number(value()?)? as usize,
            "--keys-per-node" => args.keys_per_node = number(value()?)? as usize,
            "--crash" => args.crash = true,
            "--no-crash" => args.crash = false,
            "--soak-rounds" => args.soak_rounds = number(value()?)? as u64,
            "--stall-rounds" => args.stall_rounds = number(value()?)? as u64,
            "--blackout-rounds" => args.blackout_rounds = number(value()?)? as u64,
            "--phi-threshold" => args.phi_threshold = number(value()?)?,
            "--max-rounds" => args.max_rounds = number(value()?)? as u64,
            "--check-invariants" => args.check_invariants = true,
            "--no-streams" => args.streams = false,
            "--progress" => args.progress = true,
            "--json" => args.json = true,
            "--help" | "-h" => return Err(USAGE.to_string()),
            other => return Err(format!("unknown option {other}\n{USAGE}")),
        }
    }
    if args.nodes < 2 {
        return Err("--nodes must be at least 2".into());
    }
    Ok(args)
}

fn config(args: &Args) -> Config {
    let interval = Duration::from_millis(args.gossip_interval_ms);
    let mut config = Config {
        gossip_interval: interval,
        gossip_fanout: args.fanout,
        max_datagram_size: args.max_datagram,
        dead_node_grace_period: interval * 3_600,
        deletion_grace_period: interval * 3_600,
        max_nodes: (args.nodes * 2).max(100),
        phi_threshold: args.phi_threshold,
        max_streams: if args.streams { Config::default().max_streams } else { 0 },
        ..Config::default()
    };
    if args.max_datagram < 4_096 {
        config = Config {
            max_key_len: 64,
            max_value_len: 256,
            max_node_name_len: 64,
            max_cluster_id_len: 64,
            ..config
        };
    }
    config
}

fn sim_network(args: &Args) -> NetworkConfig {
    NetworkConfig {
        latency: Duration::from_millis(args.latency_ms),
        jitter: Duration::from_millis(args.jitter_ms),
        loss: args.loss,
        burst: args.burst,
        ..NetworkConfig::default()
    }
}

/// A measured phase: rounds until the condition held, or `None` if it never did.
type Rounds = Option<f64>;

struct Report {
    /// Live heap bytes per node once settled, 20 rounds after convergence (all nodes' state, the network's
    /// datagrams in flight included).
    memory_per_node: Option<u64>,
    membership_rounds: Rounds,
    key_spread_rounds: Rounds,
    detection_rounds: Rounds,
    bytes_per_node_round: f64,
    rounds_simulated: f64,
}

fn run(args: &Args, sim: &mut Simulation) -> Result<Report, String> {
    let interval = Duration::from_millis(args.gossip_interval_ms);
    let round = |sim: &Simulation, since: chitchat_core::Timestamp| {
        sim.now().saturating_duration_since(since).as_secs_f64() / interval.as_secs_f64()
    };
    let limit = interval * args.max_rounds as u32;
    let err = |error: chitchat_core::sim::InvariantViolation| {
        format!(
            "{error}\nreplay: cargo run --release -p chitchat-core --features sim --example simulate -- {} --check-invariants",
            std::env::args().skip(1).collect::<Vec<_>>().join(" ")
        )
    };

    // With `--progress`, each phase's end on stderr: a run of thousands of
    // nodes takes long.
    let wall = std::time::Instant::now();
    let progress = |sim: &Simulation, phase: &str| {
        if args.progress {
            eprintln!(
                "{phase}: round {:.1}, {:.0} s, heap {:.2} GB (at most {:.2} GB since the last line)",
                round(sim, chitchat_core::Timestamp::ZERO),
                wall.elapsed().as_secs_f64(),
                resident_bytes().unwrap_or(0) as f64 / 1e9,
                alloc::take_peak_heap_bytes() as f64 / 1e9,
            );
        }
    };
    let rss_before = resident_bytes();
    let nodes: Vec<NodeIndex> =
        (0..args.nodes).map(|i| sim.add_node(&format!("node-{i:05}"), config(args))).collect();
    sim.set_seeds_all(&[nodes[0]]);
    for (i, node) in nodes.iter().enumerate() {
        for k in 0..args.keys_per_node {
            sim.with_node(*node, |node, now| {
                node.set(now, &format!("key-{k:02}"), &format!("value-{i}-{k}"))
            })
            .map_err(|e| e.to_string())?;
        }
    }

    let start = sim.now();
    // The cold start of thousands takes most of such a run: a line every
    // 10 rounds of it.
    let mut next_line = 10.0;
    let converged = sim
        .run_until(limit, |sim| {
            if round(sim, start) >= next_line {
                next_line += 10.0;
                progress(sim, "cold start");
            }
            sim.all_see_all_live()
        })
        .map_err(err)?;
    let membership_rounds = converged.then(|| round(sim, start));
    progress(sim, "membership");
    if !converged {
        return Ok(Report {
            memory_per_node: None,
            membership_rounds,
            key_spread_rounds: None,
            detection_rounds: None,
            bytes_per_node_round: 0.0,
            rounds_simulated: round(sim, chitchat_core::Timestamp::ZERO),
        });
    }
    // Let the initial keys settle, then measure a steady window.
    sim.run_until(limit, |sim| sim.converged()).map_err(err)?;
    // Settled: the cold start's rumors have run out (they last
    // `2 + ⌈log10(n + 1)⌉` rounds, 7 at 10,000 nodes), and what they held
    // went back.
    sim.run_for(interval * 20).map_err(err)?;
    progress(sim, "settled");
    let memory_per_node = rss_before
        .zip(resident_bytes())
        .map(|(before, after)| after.saturating_sub(before) / args.nodes as u64);
    let steady_rounds = 10;
    // Datagrams and streams (a laggard's pulls) alike.
    let sent = |sim: &Simulation| sim.stats().bytes_sent + sim.stats().stream_bytes;
    let bytes_before = sent(sim);
    sim.restart_window();
    sim.run_for(interval * steady_rounds).map_err(err)?;
    let bytes_per_node_round = (sent(sim) - bytes_before) as f64 / (args.nodes as f64 * steady_rounds as f64);

    let writer = nodes[args.nodes / 2];
    let owner = sim.node_id(writer).clone();
    sim.with_node(writer, |node, now| node.set(now, "spread-me", "now")).map_err(|e| e.to_string())?;
    let start = sim.now();
    let spread = sim.run_until(limit, |sim| sim.all_have_key(&owner, "spread-me", "now")).map_err(err)?;
    let key_spread_rounds = spread.then(|| round(sim, start));
    progress(sim, "spread");

    let mut detection_rounds = None;
    if args.crash {
        let victim = nodes[args.nodes - 1];
        let victim_id = sim.node_id(victim).clone();
        sim.crash(victim);
        let start = sim.now();
        let detected = sim.run_until(limit, |sim| sim.all_see(&victim_id, NodeStatus::Dead)).map_err(err)?;
        detection_rounds = detected.then(|| round(sim, start));
        progress(sim, "detection");
    }
    // Faults that must not make anyone see a live node dead: one node stalls, or
    // the whole network drops everything, for a few rounds; then the soak.
    if args.stall_rounds > 0 {
        sim.stall(nodes[args.nodes / 3], interval * args.stall_rounds as u32);
    }
    if args.blackout_rounds > 0 {
        let network = sim_network(args);
        sim.set_network(NetworkConfig { loss: 1.0, ..network.clone() });
        sim.run_for(interval * args.blackout_rounds as u32).map_err(err)?;
        sim.set_network(network);
    }
    let mut soak_left = args.soak_rounds;
    while soak_left > 0 {
        let rounds = soak_left.min(50);
        sim.run_for(interval * rounds as u32).map_err(err)?;
        soak_left -= rounds;
        progress(sim, "soak");
    }
    Ok(Report {
        memory_per_node,
        membership_rounds,
        key_spread_rounds,
        detection_rounds,
        bytes_per_node_round,
        rounds_simulated: round(sim, chitchat_core::Timestamp::ZERO),
    })
}

/// The benchmarks' counting allocator (in `chitchat-tools`, which depends
/// on this crate: shared by path, not by a dependency).
#[path = "../../chitchat-tools/src/alloc.rs"]
mod alloc;

#[global_allocator]
static ALLOCATOR: alloc::CountingAllocator = alloc::CountingAllocator;

/// Live heap bytes now.
fn resident_bytes() -> Option<u64> {
    Some(alloc::live_heap_bytes() as u64)
}

fn main() -> ExitCode {
    let args = match parse() {
        Ok(args) => args,
        Err(message) => {
            eprintln!("{message}");
            return ExitCode::from(2);
        }
    };
    let mut sim = Simulation::new(args.seed);
    sim.set_record_events(false);
    // Conditions are checked every tenth of a round: the resolution of the figures.
    sim.set_condition_interval(Duration::from_millis(args.gossip_interval_ms) / 10);
    sim.set_check_invariants(args.check_invariants);
    sim.set_network(sim_network(&args));
    let wall = Instant::now();
    let report = match run(&args, &mut sim) {
        Ok(report) => report,
        Err(message) => {
            eprintln!("{message}");
            return ExitCode::FAILURE;
        }
    };
    let wall_seconds = wall.elapsed().as_secs_f64();
    let stats = sim.stats();
    let json_rounds = |rounds: Rounds| rounds.map_or("null".to_string(), |rounds| format!("{rounds:.1}"));
    if args.json {
        println!(
            "{{\"nodes\":{},\"seed\":{},\"loss\":{},\"fanout\":{},\"max_datagram\":{},\"keys_per_node\":{},\
             \"membership_rounds\":{},\"key_spread_rounds\":{},\"detection_rounds\":{},\"false_dead\":{},\
             \"bytes_per_node_round\":{:.0},\"max_datagram_bytes\":{},\"steady_max_datagram_bytes\":{},\
             \"memory_per_node_bytes\":{},\
             \"rounds_simulated\":{:.1},\"streams_opened\":{},\"stream_bytes\":{},\
             \"wall_seconds\":{:.2},\"sim_rounds_per_sec\":{:.2}}}",
            args.nodes,
            args.seed,
            args.loss,
            args.fanout,
            args.max_datagram,
            args.keys_per_node,
            json_rounds(report.membership_rounds),
            json_rounds(report.key_spread_rounds),
            json_rounds(report.detection_rounds),
            stats.false_dead,
            report.bytes_per_node_round,
            stats.max_datagram,
            stats.window_max_datagram,
            report.memory_per_node.map_or("null".to_string(), |bytes| bytes.to_string()),
            report.rounds_simulated,
            stats.streams_opened,
            stats.stream_bytes,
            wall_seconds,
            report.rounds_simulated / wall_seconds,
        );
    } else {
        let rounds = |rounds: Rounds| rounds.map_or("never".to_string(), |rounds| format!("{rounds:.1}"));
        println!("nodes                 {}", args.nodes);
        println!("seed                  {}", args.seed);
        println!("loss                  {}", args.loss);
        println!("membership rounds     {}", rounds(report.membership_rounds));
        println!("key spread rounds     {}", rounds(report.key_spread_rounds));
        println!("detection rounds      {}", rounds(report.detection_rounds));
        println!("false dead            {}", stats.false_dead);
        println!("bytes / node / round  {:.0}", report.bytes_per_node_round);
        println!(
            "max datagram bytes    {} (after convergence: {})",
            stats.max_datagram, stats.window_max_datagram
        );
        if let Some(bytes) = report.memory_per_node {
            println!("memory / node         {:.1} KiB", bytes as f64 / 1024.0);
        }
        println!("rounds simulated      {:.1}", report.rounds_simulated);
        println!("streams opened        {} ({} bytes)", stats.streams_opened, stats.stream_bytes);
        println!("wall seconds          {wall_seconds:.2}");
        println!("sim rounds / second   {:.2}", report.rounds_simulated / wall_seconds);
    }
    ExitCode::SUCCESS
}
