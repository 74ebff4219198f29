//! Catch-up of a large state after a restart, in the simulator: the workloads
//! of the large-state issue, so that anyone can rerun them.
//!
//! ```text
//! cargo run --release -p chitchat-core --features sim --example catchup -- --keys 1000 --value-bytes 1000
//! cargo run --release -p chitchat-core --features sim --example catchup -- --keys 10000 --value-bytes 100 --max-datagram 1400 --json
//! ```
//!
//! `--nodes` nodes (10) each set `--keys` keys of `--value-bytes` bytes (random
//! letters, or JSON-like text with `--compressible`) and converge. Then the
//! last node restarts with a new generation and sets its keys again: it must
//! receive every other node's keys, and they its new incarnation's. Measured
//! from the restart, in rounds (one gossip interval, 1 s, fanout 3):
//!
//! - `first_keys_rounds`: until the restarted node holds the first key of
//!   every other node;
//! - `full_state_rounds`: until every node holds every node's state at the
//!   owner's max version;
//! - `bytes_ratio`: bytes all nodes sent meanwhile, over the key and value
//!   bytes that must move (every other node's state to the restarted node, and
//!   its state to every other node).
//!
//! Bytes count datagrams and streams (`CATCHUP_DEBUG=1` prints every node's
//! stream counters). `--no-streams` turns streams off (the
//! datagram path alone, as before the bulk path); a configuration the node
//! then refuses (a value too large for half a datagram) is reported as such.

use std::process::ExitCode;
use std::time::Duration;

use chitchat_core::sim::{NodeIndex, Simulation};
use chitchat_core::testing::workload::{key, value};
use chitchat_core::{Config, NodeId};

struct Args {
    nodes: usize,
    keys: usize,
    value_bytes: usize,
    compressible: bool,
    max_datagram: usize,
    seed: u64,
    max_rounds: u64,
    json: bool,
    streams: bool,
}

const USAGE: &str = "catchup [--nodes N] [--keys K] [--value-bytes B] [--compressible]
        [--max-datagram BYTES] [--seed S] [--max-rounds R] [--no-streams] [--json]";

fn parse() -> Result<Args, String> {
    let mut args = Args {
        nodes: 10,
        keys: 100,
        value_bytes: 100,
        compressible: false,
        max_datagram: Config::MAX_DATAGRAM_SIZE,
        seed: 1,
        max_rounds: 5_000,
        json: false,
        streams: true,
    };
    let mut words = std::env::args().skip(1);
    while let Some(word) = words.next() {
        let mut value = || words.next().ok_or(format!("{word} needs a value"));
        let number = |text: String| text.parse::<u64>().map_err(|_| format!("{word}: not a number: {text}"));
        match word.as_str() {
            "--nodes" => args.nodes = number(value()?)? as usize,
            "--keys" => args.keys = number(value()?)? as usize,
            "--value-bytes" => args.value_bytes = number(value()?)? as usize,
            "--compressible" => args.compressible = true,
            "--max-datagram" => args.max_datagram = number(value()?)? as usize,
            "--seed" => args.seed = number(value()?)?,
            "--max-rounds" => args.max_rounds = number(value()?)?,
            "--json" => args.json = true,
            "--no-streams" => args.streams = false,
            _ => return Err(format!("unknown argument {word}")),
        }
    }
    if args.nodes < 2 || args.keys == 0 {
        return Err("at least 2 nodes and 1 key".into());
    }
    Ok(args)
}

/// Whether every running node holds every node's state at its owner's max
/// version.
fn caught_up(sim: &Simulation, nodes: &[NodeIndex]) -> bool {
    nodes.iter().all(|owner| {
        let id = sim.node_id(*owner);
        let max = sim.node(*owner).self_node_state().max_version();
        nodes.iter().all(|observer| {
            observer == owner
                || sim.node(*observer).node_state(id).is_some_and(|state| state.max_version() == max)
        })
    })
}

/// Whether `node` holds the first key of every other node.
fn has_first_keys(sim: &Simulation, node: NodeIndex, others: &[NodeId]) -> bool {
    others.iter().all(|id| sim.node(node).node_state(id).is_some_and(|state| state.get(&key(0)).is_some()))
}

fn main() -> ExitCode {
    let args = match parse() {
        Ok(args) => args,
        Err(error) => {
            eprintln!("{error}\nusage: {USAGE}");
            return ExitCode::from(2);
        }
    };
    let config = Config {
        max_datagram_size: args.max_datagram,
        // Short keys and names leave values the most room in a datagram.
        max_key_len: 16,
        max_node_name_len: 16,
        max_value_len: args.value_bytes.max(16),
        max_keys_per_node: args.keys.max(16),
        max_streams: if args.streams { Config::default().max_streams } else { 0 },
        ..Config::default()
    };
    if let Err(error) = config.validate() {
        let line = format!("configuration refused: {error}");
        if args.json {
            println!(
                "{{\"nodes\":{},\"keys\":{},\"value_bytes\":{},\"max_datagram\":{},\"error\":{:?}}}",
                args.nodes, args.keys, args.value_bytes, args.max_datagram, line
            );
        } else {
            println!("{line}");
        }
        return ExitCode::SUCCESS;
    }
    let mut rng = fastrand::Rng::with_seed(args.seed);
    let mut sim = Simulation::new(args.seed);
    sim.set_check_invariants(false);
    sim.set_record_events(false);
    let nodes: Vec<NodeIndex> =
        (0..args.nodes).map(|i| sim.add_node(&format!("n{i:02}"), config.clone())).collect();
    sim.set_seeds_all(&[nodes[0]]);
    let set_keys = |sim: &mut Simulation, rng: &mut fastrand::Rng, node: NodeIndex| {
        let values: Vec<String> =
            (0..args.keys).map(|k| value(rng, node.0, k, args.value_bytes, args.compressible)).collect();
        sim.with_node(node, |chitchat, now| {
            for (k, value) in values.iter().enumerate() {
                chitchat.set(now, &key(k), value).expect("within the limits");
            }
        });
    };
    for node in &nodes {
        set_keys(&mut sim, &mut rng, *node);
    }
    let round = Duration::from_secs(1);
    sim.set_condition_interval(round / 10);
    let limit = round * args.max_rounds as u32;
    let converged = sim.run_until(limit, |sim| caught_up(sim, &nodes)).expect("no invariants checked");
    if !converged {
        eprintln!("the cluster did not converge within {} rounds", args.max_rounds);
        return ExitCode::FAILURE;
    }
    let restarted = *nodes.last().expect("at least 2 nodes");
    sim.restart(restarted);
    set_keys(&mut sim, &mut rng, restarted);
    let others: Vec<NodeId> =
        nodes[..nodes.len() - 1].iter().map(|node| sim.node_id(*node).clone()).collect();
    let (start, bytes_before, stream_bytes_before) =
        (sim.now(), sim.stats().bytes_sent, sim.stats().stream_bytes);
    let rounds_since = |sim: &Simulation| sim.now().saturating_duration_since(start).as_secs_f64();
    let first = sim.run_until(limit, |sim| has_first_keys(sim, restarted, &others)).expect("unchecked");
    let first_keys_rounds = rounds_since(&sim);
    let full = first && sim.run_until(limit, |sim| caught_up(sim, &nodes)).expect("unchecked");
    let full_state_rounds = rounds_since(&sim);
    if std::env::var_os("CATCHUP_DEBUG").is_some() {
        for node in &nodes {
            eprintln!("{:?}: {:?}", node, sim.node(*node).metrics().streams);
        }
    }
    let datagram_bytes = sim.stats().bytes_sent - bytes_before;
    let stream_bytes = sim.stats().stream_bytes - stream_bytes_before;
    let sent = datagram_bytes + stream_bytes;
    let state_bytes = args.keys * (key(0).len() + args.value_bytes);
    let must_move = 2 * (args.nodes - 1) * state_bytes;
    let ratio = sent as f64 / must_move as f64;
    if args.json {
        println!(
            "{{\"nodes\":{},\"keys\":{},\"value_bytes\":{},\"compressible\":{},\"max_datagram\":{},\"seed\":{},\
             \"streams\":{},\"first_keys_rounds\":{},\"full_state_rounds\":{},\"bytes_sent\":{sent},\
             \"datagram_bytes\":{datagram_bytes},\"stream_bytes\":{stream_bytes},\"bytes_to_move\":{must_move},\
             \"bytes_ratio\":{ratio:.2}}}",
            args.nodes,
            args.keys,
            args.value_bytes,
            args.compressible,
            args.max_datagram,
            args.seed,
            args.streams,
            if first { format!("{first_keys_rounds:.1}") } else { "null".into() },
            if full { format!("{full_state_rounds:.1}") } else { "null".into() },
        );
    } else {
        println!(
            "{} nodes, {} keys x {} bytes{} each, {}-byte datagrams; one restarts:",
            args.nodes,
            args.keys,
            args.value_bytes,
            if args.compressible { " (compressible)" } else { "" },
            args.max_datagram
        );
        println!("  first key of every node at the restarted node: {first_keys_rounds:.1} rounds");
        match full {
            true => println!("  every node holds every node's state: {full_state_rounds:.1} rounds"),
            false => println!("  not caught up within {} rounds", args.max_rounds),
        }
        println!(
            "  {sent} bytes sent ({datagram_bytes} in datagrams, {stream_bytes} on streams) for {must_move} \
             bytes that must move (x{ratio:.2})"
        );
    }
    ExitCode::SUCCESS
}
