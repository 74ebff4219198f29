//! The node command line behind every adapter's `examples/node.rs`: one node per
//! process, printing one JSON object per line on stdout for each event.
//!
//! ```text
//! cargo run -p chitchat-tokio --example node -- --listen 127.0.0.1:7000 --name n0
//! cargo run -p chitchat-tokio --example node -- --listen 127.0.0.1:7001 --seed 127.0.0.1:7000 --name n1
//! ```
//!
//! Every line has an `"event"` field:
//!
//! - `started`: `node`, `generation`, `listen`, `cluster_id`, `keys` (its initial keys),
//!   `encryption` (the mode) and `key_ids` (the primary first);
//! - `live_nodes`: `nodes`, the sorted names of the live nodes (itself included),
//!   whenever that set changes;
//! - `key_changed`: `node`, `key`, `value` (`null` once deleted or expired) and
//!   `change` (`set`, `deleted` or `expired`), for every key change seen;
//! - `node_joined`, `node_live`, `node_dead`, `node_left`, `node_removed`,
//!   `node_restarted`, `node_reset`, `ready_changed`: `node`, `generation`, `addr`
//!   (and `ready`, or the `previous_generation` of a restart);
//! - `lagged`: `missed`, events this printer was too slow to see;
//! - `left`, then `stopped`, on SIGINT or SIGTERM: the node left the cluster and
//!   the process exits 0.
//!
//! `key_changed` lines start with the current value of every key the node
//! knows when it starts printing, then follow every change, so a key that
//! arrives between the start and the first line is printed too. Logs go to
//! stderr, filtered by `RUST_LOG` (default: `warn`).

use std::net::SocketAddr;
use std::path::PathBuf;
use std::process::ExitCode;
use std::sync::Arc;
use std::time::Duration;

use chitchat_core::{Config, EncryptionMode, Event, Keyring, NodeId};
use chitchat_driver::{ChitchatHandle, KeyChange, Lagged, NodeConfig, NodeSet, Runtime};
use clap::{Parser, ValueEnum};
use futures_lite::{Stream, StreamExt};
use serde_json::{Value, json};
use tracing_subscriber::EnvFilter;
use tracing_subscriber::filter::LevelFilter;

/// What the command line asks for.
#[derive(Clone, Debug, PartialEq, Eq, Parser)]
#[command(
    name = "node",
    about = "Runs one chitchat node and prints one JSON object per line for each event.",
    after_help = "Leaves the cluster and exits 0 on SIGINT or SIGTERM. Logs go to stderr, \
                  filtered by RUST_LOG (default: warn), e.g. RUST_LOG=chitchat_driver=debug."
)]
pub struct Options {
    /// Address to bind.
    #[arg(long, value_name = "ADDR", default_value = "127.0.0.1:0")]
    pub listen: SocketAddr,
    /// Address peers gossip to (default: the bound address).
    #[arg(long, value_name = "ADDR")]
    pub advertise: Option<SocketAddr>,
    /// A seed node, resolved by DNS if a host name; repeatable.
    #[arg(long = "seed", value_name = "HOST:PORT")]
    pub seeds: Vec<String>,
    /// Node name (default: node-PORT).
    #[arg(long)]
    pub name: Option<String>,
    /// Only talk to nodes of this cluster (default: default-cluster).
    #[arg(long, value_name = "ID")]
    pub cluster_id: Option<String>,
    /// Generation of this start (default: milliseconds since the Unix epoch).
    #[arg(long, value_name = "N")]
    pub generation: Option<u64>,
    /// Time between gossip rounds, in milliseconds (default: 1000).
    #[arg(long = "gossip-interval-ms", value_name = "MS", value_parser = parse_millis)]
    pub gossip_interval: Option<Duration>,
    /// An initial key of this node; repeatable.
    #[arg(long = "set", value_name = "KEY=VALUE", value_parser = parse_key_value)]
    pub key_values: Vec<(String, String)>,
    /// The cluster key that seals datagrams: 32 bytes as 64 hex digits or base64
    /// (e.g. `openssl rand -hex 32 > PATH`). Turns on authenticated encryption,
    /// required unless --encryption-mode says otherwise.
    #[arg(long, value_name = "PATH")]
    pub secret_key_file: Option<PathBuf>,
    /// A further key that only opens datagrams (key rotation); repeatable.
    #[arg(long = "extra-key-file", value_name = "PATH", requires = "secret_key_file")]
    pub extra_key_files: Vec<PathBuf>,
    /// What the node sends and accepts (default: required with a key, off
    /// without).
    #[arg(long, value_name = "MODE")]
    pub encryption_mode: Option<Mode>,
}

/// `--encryption-mode`: the core's [`EncryptionMode`] on the command line.
#[derive(Clone, Copy, Debug, PartialEq, Eq, ValueEnum)]
pub enum Mode {
    /// Send plaintext; open sealed datagrams if a keyring is installed.
    Off,
    /// Seal; accept plaintext too (migration).
    EncryptAcceptPlaintext,
    /// Seal; refuse plaintext.
    Required,
}

impl From<Mode> for EncryptionMode {
    fn from(mode: Mode) -> Self {
        match mode {
            Mode::Off => EncryptionMode::Off,
            Mode::EncryptAcceptPlaintext => EncryptionMode::EncryptAcceptPlaintext,
            Mode::Required => EncryptionMode::Required,
        }
    }
}

fn parse_millis(text: &str) -> Result<Duration, String> {
    text.parse().map(Duration::from_millis).map_err(|error| format!("{error}"))
}

fn parse_key_value(pair: &str) -> Result<(String, String), String> {
    let (key, value) = pair.split_once('=').ok_or_else(|| format!("expected KEY=VALUE, got {pair:?}"))?;
    Ok((key.to_string(), value.to_string()))
}

impl Options {
    /// The node configuration these options describe: [`Config::lan`] with the
    /// given cluster id and gossip interval.
    pub fn node_config(&self) -> NodeConfig {
        let mut chitchat = Config::lan();
        if let Some(cluster_id) = &self.cluster_id {
            chitchat.cluster_id = cluster_id.clone();
        }
        if let Some(interval) = self.gossip_interval {
            chitchat.gossip_interval = interval;
        }
        let name = self.name.clone().unwrap_or_else(|| match self.listen.port() {
            0 => format!("node-{}", std::process::id()),
            port => format!("node-{port}"),
        });
        let mut config = NodeConfig::new(name, self.listen, chitchat);
        config.advertise_addr = self.advertise;
        config.seeds = self.seeds.clone();
        config.generation = self.generation;
        config.initial_key_values = self.key_values.clone();
        config.encryption_mode = match (self.encryption_mode, &self.secret_key_file) {
            (Some(mode), _) => mode.into(),
            (None, Some(_)) => EncryptionMode::Required,
            (None, None) => EncryptionMode::Off,
        };
        config
    }

    /// The keyring of `--secret-key-file` and `--extra-key-file`, read from the
    /// files; `None` without `--secret-key-file`. The error names the file.
    pub fn keyring(&self) -> Result<Option<Keyring>, String> {
        let Some(primary) = &self.secret_key_file else { return Ok(None) };
        let read =
            |path: &PathBuf| chitchat_driver::keys::read_key_file(path).map_err(|error| error.to_string());
        let extras = self.extra_key_files.iter().map(read).collect::<Result<Vec<_>, _>>()?;
        let keyring = Keyring::with_extra_keys(read(primary)?, extras).map_err(|error| error.to_string())?;
        Ok(Some(keyring))
    }
}

/// Logs to stderr, filtered by `RUST_LOG` (default: `warn`). Does nothing if
/// the process already has a subscriber.
pub fn init_logging() {
    use std::io::IsTerminal;
    let filter = EnvFilter::builder().with_default_directive(LevelFilter::WARN.into()).from_env_lossy();
    let _ = tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_writer(std::io::stderr)
        .with_ansi(std::io::stderr().is_terminal())
        .try_init();
}

/// Runs the node command line on `runtime` until SIGINT or SIGTERM.
pub async fn run(runtime: Arc<dyn Runtime>, args: impl IntoIterator<Item = String>) -> ExitCode {
    let options = match Options::try_parse_from(std::iter::once("node".to_string()).chain(args)) {
        Ok(options) => options,
        Err(error) => {
            // `--help` lands here too, printed to stdout with exit code 0.
            let _ = error.print();
            return ExitCode::from(error.exit_code().clamp(0, 255) as u8);
        }
    };
    init_logging();
    let (signal_sender, signals) = async_channel::bounded::<()>(1);
    if let Err(error) = ctrlc::set_handler(move || {
        let _ = signal_sender.try_send(());
    }) {
        eprintln!("error: cannot handle SIGINT and SIGTERM: {error}");
        return ExitCode::FAILURE;
    }
    let mut config = options.node_config();
    config.keyring = match options.keyring() {
        Ok(keyring) => keyring,
        Err(message) => {
            eprintln!("error: {message}");
            return ExitCode::from(2);
        }
    };
    let key_ids: Vec<String> =
        config.keyring.iter().flat_map(Keyring::key_ids).map(|id| id.to_string()).collect();
    let encryption = format!("{:?}", config.encryption_mode);
    let keys: serde_json::Map<String, Value> =
        config.initial_key_values.iter().map(|(key, value)| (key.clone(), json!(value))).collect();
    let cluster_id = config.chitchat.cluster_id.clone();
    let node = match chitchat_driver::spawn(runtime, config).await {
        Ok(node) => node,
        Err(error) => {
            eprintln!("error: {error}");
            return ExitCode::FAILURE;
        }
    };
    let id = node.self_id();
    print_json(json!({
        "event": "started", "node": id.name(), "generation": id.generation(),
        "listen": node.local_addr().to_string(), "cluster_id": cluster_id, "keys": keys,
        "encryption": encryption, "key_ids": key_ids,
    }));
    match print_until_signal(&node, signals).await {
        true => {
            let _ = node.leave().await;
            print_json(json!({"event": "left", "node": node.self_id().name()}));
            let result = node.shutdown().await;
            print_json(json!({"event": "stopped", "node": node.self_id().name()}));
            if result.is_ok() { ExitCode::SUCCESS } else { ExitCode::FAILURE }
        }
        false => {
            let reason = node.stopped().await;
            eprintln!("error: the node stopped: {reason}");
            ExitCode::FAILURE
        }
    }
}

/// What the printer waits for.
enum Output {
    Live(Arc<NodeSet>),
    KeyChange(Result<KeyChange, Lagged>),
    Event(Result<Event, Lagged>),
    Signal,
}

/// Prints events until a signal (`true`) or until the node stops (`false`).
async fn print_until_signal(node: &ChitchatHandle, signals: async_channel::Receiver<()>) -> bool {
    let live = node.watch_live_nodes().map(Output::Live);
    // Current values first, then changes: keys that arrived between the start
    // and this subscription are printed too.
    let Ok(keys) = node.subscribe_key_changes_with_current("").await else { return false };
    let keys = keys.map(Output::KeyChange);
    let events = node.subscribe_events().map(Output::Event);
    let signals = signals.map(|()| Output::Signal);
    let mut outputs: std::pin::Pin<Box<dyn Stream<Item = Output> + Send>> =
        Box::pin(signals.or(live).or(keys).or(events));
    while let Some(output) = outputs.next().await {
        match output {
            Output::Signal => return true,
            Output::Live(nodes) => {
                let names: Vec<&str> = nodes.iter().map(|id| id.name()).collect();
                print_json(json!({"event": "live_nodes", "nodes": names}));
            }
            Output::KeyChange(Ok(change)) => print_json(key_change_json(&change)),
            Output::Event(Ok(event)) => {
                if let Some(line) = event_json(&event) {
                    print_json(line);
                }
            }
            Output::KeyChange(Err(Lagged(missed))) | Output::Event(Err(Lagged(missed))) => {
                print_json(json!({"event": "lagged", "missed": missed}));
            }
        }
    }
    false
}

/// A key change as a `key_changed` line.
pub fn key_change_json(change: &KeyChange) -> Value {
    let (value, kind) = match change {
        KeyChange::Set { value, .. } => (json!(value), "set"),
        KeyChange::Deleted { .. } => (Value::Null, "deleted"),
        KeyChange::Expired { .. } => (Value::Null, "expired"),
    };
    json!({
        "event": "key_changed", "node": change.node().name(), "key": change.key(),
        "value": value, "change": kind,
    })
}

/// A membership event as a line; `None` for key events (see [`key_change_json`]).
pub fn event_json(event: &Event) -> Option<Value> {
    let line = |name: &str, id: &NodeId| json!({"event": name, "node": id.name(), "generation": id.generation(), "addr": id.gossip_addr().to_string()});
    Some(match event {
        Event::NodeJoined(id) => line("node_joined", id),
        Event::NodeLive(id) => line("node_live", id),
        Event::NodeDead(id) => line("node_dead", id),
        Event::NodeLeft(id) => line("node_left", id),
        Event::NodeRemoved(id) => line("node_removed", id),
        Event::NodeReset(id) => line("node_reset", id),
        Event::NodeRestarted { previous, current } => {
            let mut value = line("node_restarted", current);
            value["previous_generation"] = json!(previous.generation());
            value
        }
        Event::ReadyChanged { node, ready } => {
            let mut value = line("ready_changed", node);
            value["ready"] = json!(ready);
            value
        }
        // Key events, and events this CLI does not know yet.
        _ => return None,
    })
}

fn print_json(value: Value) {
    println!("{value}");
}

#[cfg(test)]
mod tests {
    use super::*;

    fn parse(line: &str) -> Result<Options, clap::Error> {
        Options::try_parse_from(std::iter::once("node").chain(line.split_whitespace()))
    }

    #[test]
    fn options_parse_into_a_node_config() {
        let options = parse(
            "--listen 127.0.0.1:7001 --seed 127.0.0.1:7000 --seed localhost:7002 --name n1 \
             --cluster-id c --generation 7 --gossip-interval-ms 100 --set a=1 --set b=x=y",
        )
        .unwrap();
        let config = options.node_config();
        assert_eq!(config.name, "n1");
        assert_eq!(config.listen_addr, "127.0.0.1:7001".parse().unwrap());
        assert_eq!(config.seeds, ["127.0.0.1:7000", "localhost:7002"]);
        assert_eq!(config.generation, Some(7));
        assert_eq!(config.chitchat.cluster_id, "c");
        assert_eq!(config.chitchat.gossip_interval, Duration::from_millis(100));
        config.chitchat.validate().unwrap();
        assert_eq!(config.initial_key_values, [("a".into(), "1".into()), ("b".into(), "x=y".into())]);
        assert_eq!(parse("--help").unwrap_err().kind(), clap::error::ErrorKind::DisplayHelp);
        assert!(parse("--set novalue").is_err());
        assert!(parse("--listen").is_err());
        assert!(parse("--bogus").is_err());
        assert!(parse("--gossip-interval-ms soon").is_err());
    }

    #[test]
    fn key_files_make_a_keyring() {
        let dir = std::env::temp_dir().join(format!("chitchat-cli-keys-{}", std::process::id()));
        std::fs::create_dir_all(&dir).unwrap();
        let (primary, extra, bad) = (dir.join("primary.key"), dir.join("extra.key"), dir.join("bad.key"));
        std::fs::write(&primary, format!("{}\n", "ab".repeat(32))).unwrap();
        std::fs::write(&extra, "BSpPdJm+4wgtUnecweYLMFV6n8TpDjNYfaLH7BE2W4A=").unwrap();
        std::fs::write(&bad, "too short").unwrap();
        let line = format!("--secret-key-file {} --extra-key-file {}", primary.display(), extra.display());
        let options = parse(&line).unwrap();
        assert_eq!(options.node_config().encryption_mode, EncryptionMode::Required);
        let keyring = options.keyring().unwrap().unwrap();
        assert_eq!(keyring.key_ids().len(), 2);
        assert_eq!(keyring.primary_id(), chitchat_core::SecretKey::from_bytes([0xab; 32]).id());

        let line = format!("--secret-key-file {} --encryption-mode encrypt-accept-plaintext", bad.display());
        let options = parse(&line).unwrap();
        assert_eq!(options.node_config().encryption_mode, EncryptionMode::EncryptAcceptPlaintext);
        assert!(options.keyring().unwrap_err().contains("bad.key"));
        assert!(parse(&format!("--extra-key-file {}", extra.display())).is_err(), "needs --secret-key-file");
        assert_eq!(parse("").unwrap().node_config().encryption_mode, EncryptionMode::Off);
        assert!(parse("--encryption-mode sometimes").is_err());
        std::fs::remove_dir_all(&dir).unwrap();
    }

    #[test]
    fn default_name_follows_the_port() {
        assert_eq!(parse("--listen 127.0.0.1:7005").unwrap().node_config().name, "node-7005");
    }

    #[test]
    fn lines_always_have_an_event_field() {
        let id = NodeId::new("n1", 3, "127.0.0.1:7001".parse().unwrap());
        let change = KeyChange::Set { node: id.clone(), key: "k".into(), value: "v".into(), version: 1 };
        assert_eq!(
            key_change_json(&change),
            json!({"event": "key_changed", "node": "n1", "key": "k", "value": "v", "change": "set"})
        );
        let line = event_json(&Event::NodeDead(id.clone())).unwrap();
        assert_eq!(line["event"], "node_dead");
        assert_eq!(line["node"], "n1");
        assert!(event_json(&Event::KeyDeleted { node: id, key: "k".into() }).is_none());
    }

    #[test]
    fn the_command_line_is_well_formed() {
        use clap::CommandFactory;
        Options::command().debug_assert();
    }
}
