//! The cluster demo behind `cargo run --release -p chitchat-tokio --example cluster`:
//! N nodes (default 5) over real UDP on loopback, in one process.
//!
//! It shows membership converging as a live table, sets a key on one node and
//! shows it arriving on every node, stops one node without leaving and shows the
//! others detect it dead, then exits 0 (1 if a step does not happen within
//! [`STEP_TIMEOUT`]).

use std::collections::BTreeSet;
use std::process::ExitCode;
use std::sync::Arc;
use std::time::{Duration, Instant};

use chitchat_core::Config;
use futures_lite::StreamExt;
use futures_lite::future::poll_once;

use chitchat_driver::{ChitchatHandle, KeyChange, NodeConfig, Runtime, sleep};
use clap::Parser;

/// The longest any step of the demo may take.
pub const STEP_TIMEOUT: Duration = Duration::from_secs(30);
/// How often the demo looks at its nodes.
const TICK: Duration = Duration::from_millis(100);
/// Above this many nodes, the table shows a summary instead of one column per node.
const MAX_COLUMNS: usize = 10;
/// The key the demo sets.
const KEY: &str = "demo/greeting";

/// The demo's command line.
#[derive(Clone, Debug, PartialEq, Eq, Parser)]
#[command(
    name = "cluster",
    about = "Starts N nodes over UDP on 127.0.0.1 in this process, shows them converge, \
             spreads a key, stops one node and shows it detected dead."
)]
pub struct Options {
    /// How many nodes (at least 2).
    #[arg(long, default_value_t = 5, value_parser = clap::value_parser!(u16).range(2..))]
    pub nodes: u16,
}

/// Runs the demo on `runtime`.
pub async fn run(runtime: Arc<dyn Runtime>, args: impl IntoIterator<Item = String>) -> ExitCode {
    let count = match Options::try_parse_from(std::iter::once("cluster".to_string()).chain(args)) {
        Ok(options) => usize::from(options.nodes),
        Err(error) => {
            // `--help` lands here too, printed to stdout with exit code 0.
            let _ = error.print();
            return ExitCode::from(error.exit_code().clamp(0, 255) as u8);
        }
    };
    match demo(&runtime, count).await {
        Ok(()) => ExitCode::SUCCESS,
        Err(message) => {
            eprintln!("error: {message}");
            ExitCode::FAILURE
        }
    }
}

async fn demo(runtime: &Arc<dyn Runtime>, count: usize) -> Result<(), String> {
    let start = Instant::now();
    let config = |name: String, seeds: Vec<String>| {
        let chitchat = Config { cluster_id: "demo".to_string(), ..Config::local_test() };
        let mut config = NodeConfig::new(name, ([127, 0, 0, 1], 0).into(), chitchat);
        config.seeds = seeds;
        config
    };
    let mut nodes: Vec<ChitchatHandle> = Vec::with_capacity(count);
    for i in 0..count {
        let seeds = nodes.first().map(|first| first.local_addr().to_string()).into_iter().collect();
        let node = chitchat_driver::spawn(runtime.clone(), config(format!("node-{i}"), seeds))
            .await
            .map_err(|error| format!("cannot start node-{i}: {error}"))?;
        nodes.push(node);
    }
    println!(
        "started {count} nodes on 127.0.0.1 (gossip every 100 ms), all seeded with node-0 at {}",
        nodes[0].local_addr()
    );

    println!("\n1. membership converges: how many live nodes each node sees");
    let converged = show_membership(runtime, &nodes, start).await?;
    println!("   converged: every node sees {count} live nodes, after {converged:.2?}");

    println!("\n2. a key spreads: node-{} sets {KEY}", count - 1);
    spread_key(runtime, &nodes).await?;

    let victim = nodes.pop().ok_or("no node")?;
    let victim_id = victim.self_id().clone();
    println!("\n3. failure detection: {} stops without leaving", victim_id.name());
    victim.shutdown().await.map_err(|error| format!("stopping {}: {error}", victim_id.name()))?;
    let stopped = Instant::now();
    let mut detected = BTreeSet::new();
    while detected.len() < nodes.len() {
        for node in &nodes {
            if !node.live_nodes().contains(&victim_id) && detected.insert(node.self_id().name().to_string()) {
                println!(
                    "   {:<10} sees {} dead after {:.2?}",
                    node.self_id().name(),
                    victim_id.name(),
                    stopped.elapsed()
                );
            }
        }
        if stopped.elapsed() > STEP_TIMEOUT {
            return Err(format!("{} was not detected dead by every node", victim_id.name()));
        }
        sleep(runtime, TICK).await;
    }

    for node in &nodes {
        node.shutdown().await.map_err(|error| format!("stopping {}: {error}", node.self_id().name()))?;
    }
    println!("\ndone in {:.2?}: {} nodes stopped", start.elapsed(), nodes.len());
    Ok(())
}

/// Prints a table row whenever the live counts change, until every node sees
/// every node live. Returns how long that took.
async fn show_membership(
    runtime: &Arc<dyn Runtime>,
    nodes: &[ChitchatHandle],
    start: Instant,
) -> Result<Duration, String> {
    let count = nodes.len();
    if count <= MAX_COLUMNS {
        let header: String = (0..count).map(|i| format!(" n{i:<3}")).collect();
        println!("   {:>7} |{header}", "time");
    } else {
        println!("   {:>7} | {:>4} {:>4} {:>4} | nodes that see all {count}", "time", "min", "med", "max");
    }
    let mut previous = Vec::new();
    loop {
        let counts: Vec<usize> = nodes.iter().map(|node| node.live_nodes().len()).collect();
        if counts != previous {
            let time = format!("{:.2}s", start.elapsed().as_secs_f64());
            if count <= MAX_COLUMNS {
                let row: String = counts.iter().map(|live| format!(" {live:<4}")).collect();
                println!("   {time:>7} |{row}");
            } else {
                let mut sorted = counts.clone();
                sorted.sort_unstable();
                let done = counts.iter().filter(|&&live| live == count).count();
                println!(
                    "   {time:>7} | {:>4} {:>4} {:>4} | {done}",
                    sorted[0],
                    sorted[count / 2],
                    sorted[count - 1]
                );
            }
            previous = counts;
        }
        if previous.iter().all(|&live| live == count) {
            return Ok(start.elapsed());
        }
        if start.elapsed() > STEP_TIMEOUT {
            return Err("membership did not converge".to_string());
        }
        sleep(runtime, Duration::from_millis(10)).await;
    }
}

/// Sets the demo key on the last node and prints when each node receives it.
async fn spread_key(runtime: &Arc<dyn Runtime>, nodes: &[ChitchatHandle]) -> Result<(), String> {
    let mut subscriptions: Vec<_> = nodes.iter().map(|node| node.subscribe_key_changes(KEY)).collect();
    let writer = nodes.last().ok_or("no node")?;
    let value = format!("hello from {}", writer.self_id().name());
    let set_at = Instant::now();
    writer.set(KEY, value.clone()).await.map_err(|error| format!("set: {error}"))?;
    let mut received = vec![false; nodes.len()];
    while received.iter().any(|received| !received) {
        for ((node, subscription), received) in nodes.iter().zip(&mut subscriptions).zip(&mut received) {
            while let Some(Some(change)) = poll_once(subscription.next()).await {
                if matches!(&change, Ok(KeyChange::Set { value: v, .. }) if *v == value) && !*received {
                    *received = true;
                    println!(
                        "   {:<10} has {KEY} = {value:?} after {:.2?}",
                        node.self_id().name(),
                        set_at.elapsed()
                    );
                }
            }
        }
        if set_at.elapsed() > STEP_TIMEOUT {
            return Err(format!("{KEY} did not reach every node"));
        }
        sleep(runtime, Duration::from_millis(20)).await;
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn nodes(line: &str) -> Result<u16, clap::Error> {
        Options::try_parse_from(std::iter::once("cluster").chain(line.split_whitespace())).map(|o| o.nodes)
    }

    #[test]
    fn nodes_option() {
        assert_eq!(nodes("").unwrap(), 5);
        assert_eq!(nodes("--nodes 12").unwrap(), 12);
        assert_eq!(nodes("--help").unwrap_err().kind(), clap::error::ErrorKind::DisplayHelp);
        assert!(nodes("--nodes 1").is_err());
        assert!(nodes("--nodes").is_err());
    }
}
