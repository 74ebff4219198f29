//! Embeds the sans-IO core in a plain `std` event loop: no async runtime, no
//! extra dependency.
//!
//! The whole adapter is [`Node::turn`]: send what [`Chitchat::poll_transmit`]
//! hands out, print what [`Chitchat::poll_event`] reports, then block on a
//! [`UdpSocket`] whose read timeout is the time left until
//! [`Chitchat::poll_timeout`]. A datagram goes to [`Chitchat::handle_datagram`],
//! an expired deadline to [`Chitchat::handle_timeout`]. Then [`Node::pump_streams`]
//! moves the catch-up streams' bytes over non-blocking TCP (a state too large
//! for datagrams is pulled on them): it accepts connections on the gossip
//! address ([`Chitchat::accept_stream`]), opens the ones the core asks for
//! ([`Chitchat::poll_stream_open`]), and shuttles bytes between the sockets
//! and [`Chitchat::handle_stream_data`] / [`Chitchat::poll_stream_send`].
//! Time is read in one place, [`Node::now`]:
//! `Timestamp::from_elapsed(start.elapsed())` for an [`Instant`] taken when
//! the program starts.
//!
//! Three nodes in one process, exiting 0 once they all see each other live and
//! share a key (1 after 20 s otherwise):
//!
//! ```text
//! cargo run -p chitchat-core --example std_event_loop -- --demo
//! ```
//!
//! One node per process, in three terminals:
//!
//! ```text
//! cargo run -p chitchat-core --example std_event_loop -- --listen 127.0.0.1:7001
//! cargo run -p chitchat-core --example std_event_loop -- --listen 127.0.0.1:7002 --seed 127.0.0.1:7001
//! cargo run -p chitchat-core --example std_event_loop -- --listen 127.0.0.1:7003 --seed 127.0.0.1:7001 \
//!     --set role=indexer --duration-secs 5
//! ```
//!
//! The last one leaves after 5 seconds: the others report it left at once,
//! without waiting for the failure detector. Run with `--help` for every option.

use std::collections::BTreeMap;
use std::error::Error;
use std::io::{self, Read, Write};
use std::net::{Shutdown, SocketAddr, TcpListener, TcpStream, ToSocketAddrs, UdpSocket};
use std::process::ExitCode;
use std::sync::atomic::{AtomicBool, Ordering};
use std::thread;
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use chitchat_core::{Chitchat, Config, Event, NodeId, StreamId, StreamSend, Timestamp};

/// The command-line help.
const USAGE: &str = "\
usage: std_event_loop [OPTIONS]
       std_event_loop --demo [--cluster-id ID]

options:
  --listen ADDR         address to bind and to advertise to peers (default 127.0.0.1:0)
  --seed ADDR           a seed node's address; repeatable
  --name NAME           node name (default node-PORT)
  --set KEY=VALUE       an initial key of this node; repeatable
  --cluster-id ID       only talk to nodes of this cluster (default: Config's)
  --duration-secs N     leave the cluster after N seconds and exit (default: run until killed)
  --demo                run three nodes in this process until they converge
  -h, --help            print this help";

/// The longest a loop sleeps without checking its exit condition.
const MAX_WAIT: Duration = Duration::from_millis(50);
/// The longest a loop sleeps while a stream is open (they are polled, not
/// waited on: this example keeps to one blocking socket).
const STREAM_WAIT: Duration = Duration::from_millis(1);
/// How long opening a stream may block the loop.
const CONNECT_TIMEOUT: Duration = Duration::from_millis(500);

/// The key the demo sets on its third node and waits for on every node.
const DEMO_KEY: &str = "greeting";
/// The demo key's value.
const DEMO_VALUE: &str = "hello from node-3";
/// How many nodes the demo runs.
const DEMO_NODES: usize = 3;
/// How long the demo waits for convergence before giving up.
const DEMO_TIMEOUT: Duration = Duration::from_secs(20);

fn main() -> ExitCode {
    let command = match Command::parse(std::env::args().skip(1)) {
        Ok(command) => command,
        Err(message) => {
            eprintln!("error: {message}\n\n{USAGE}");
            return ExitCode::from(2);
        }
    };
    let result = match command {
        Command::Help => {
            println!("{USAGE}");
            return ExitCode::SUCCESS;
        }
        Command::Run(options) => run(options),
        Command::Demo { cluster_id } => demo(cluster_id),
    };
    match result {
        Ok(code) => code,
        Err(error) => {
            eprintln!("error: {error}");
            ExitCode::FAILURE
        }
    }
}

/// What the command line asks for.
enum Command {
    /// Print the usage.
    Help,
    /// Run one node.
    Run(Options),
    /// Run the three-node demo.
    Demo {
        /// The cluster id, if given.
        cluster_id: Option<String>,
    },
}

/// The options of a single node.
struct Options {
    /// Where to bind (also the address peers gossip to).
    listen: String,
    /// Seed addresses, resolved once at start.
    seeds: Vec<String>,
    /// The node name, if given.
    name: Option<String>,
    /// Initial keys.
    key_values: Vec<(String, String)>,
    /// The cluster id, if given.
    cluster_id: Option<String>,
    /// How long to run before leaving, if given.
    duration: Option<Duration>,
}

impl Command {
    /// Parses the arguments (without the program name).
    fn parse(mut args: impl Iterator<Item = String>) -> Result<Command, String> {
        let mut options = Options {
            listen: "127.0.0.1:0".to_string(),
            seeds: Vec::new(),
            name: None,
            key_values: Vec::new(),
            cluster_id: None,
            duration: None,
        };
        let mut demo = false;
        let mut single_node_option = None;
        while let Some(arg) = args.next() {
            let mut value = || args.next().ok_or_else(|| format!("{arg} needs a value"));
            match arg.as_str() {
                "-h" | "--help" => return Ok(Command::Help),
                "--demo" => demo = true,
                "--cluster-id" => options.cluster_id = Some(value()?),
                "--listen" => options.listen = value()?,
                "--seed" => options.seeds.push(value()?),
                "--name" => options.name = Some(value()?),
                "--set" => {
                    let pair = value()?;
                    let (key, value) = pair
                        .split_once('=')
                        .ok_or_else(|| format!("--set expects KEY=VALUE, got {pair:?}"))?;
                    options.key_values.push((key.to_string(), value.to_string()));
                }
                "--duration-secs" => {
                    let secs = value()?;
                    let secs: u64 =
                        secs.parse().map_err(|_| format!("--duration-secs expects seconds, got {secs:?}"))?;
                    options.duration = Some(Duration::from_secs(secs));
                }
                _ => return Err(format!("unknown argument {arg:?}")),
            }
            if !matches!(arg.as_str(), "--demo" | "--cluster-id") {
                single_node_option = Some(arg);
            }
        }
        match (demo, single_node_option) {
            (true, Some(arg)) => Err(format!("{arg} cannot be combined with --demo")),
            (true, None) => Ok(Command::Demo { cluster_id: options.cluster_id }),
            (false, _) => Ok(Command::Run(options)),
        }
    }
}

/// The configuration both modes use: the local-test preset with a cluster id.
fn config(cluster_id: Option<String>, rng_seed: u64) -> Config {
    let mut config = Config::local_test();
    if let Some(cluster_id) = cluster_id {
        config.cluster_id = cluster_id;
    }
    // The core has no global random generator: the caller seeds it, so that nodes
    // started together do not pick the same peers and jitter in lockstep.
    config.rng_seed = rng_seed;
    config
}

/// One node and the sockets it owns: the whole adapter.
struct Node {
    /// The protocol state machine.
    chitchat: Chitchat,
    /// The socket the node gossips on.
    socket: UdpSocket,
    /// Where peers open catch-up streams: the gossip address, over TCP.
    listener: TcpListener,
    /// The open streams.
    streams: BTreeMap<StreamId, Connection>,
    /// The epoch of the node's timestamps.
    start: Instant,
    /// Room for the largest datagram.
    buffer: Vec<u8>,
}

impl Node {
    /// Creates the node on a bound socket, whose address is the one advertised
    /// to peers.
    fn new(
        socket: UdpSocket,
        name: Option<String>,
        config: Config,
        key_values: &[(String, String)],
        seeds: Vec<SocketAddr>,
        start: Instant,
    ) -> Result<Node, Box<dyn Error>> {
        let addr = socket.local_addr()?;
        if addr.ip().is_unspecified() {
            eprintln!("warning: listening on {addr}: peers on other hosts cannot reach that address");
        }
        let name = name.unwrap_or_else(|| format!("node-{}", addr.port()));
        // A restarted node needs a higher generation than before: the start time
        // in milliseconds since the Unix epoch grows from one run to the next.
        let generation =
            SystemTime::now().duration_since(UNIX_EPOCH).map_or(0, |elapsed| elapsed.as_millis() as u64);
        let self_id = NodeId::new(name, generation, addr);
        let now = Timestamp::from_elapsed(start.elapsed());
        let initial = key_values.iter().map(|(key, value)| (key.as_str(), value.as_str()));
        let mut chitchat = Chitchat::new(config, self_id, initial, now)?;
        chitchat.set_seed_addrs(seeds);
        let listener = TcpListener::bind(addr)?;
        listener.set_nonblocking(true)?;
        let streams = BTreeMap::new();
        Ok(Node { chitchat, socket, listener, streams, start, buffer: vec![0; Config::MAX_DATAGRAM_SIZE] })
    }

    /// The current time, on the node's clock.
    fn now(&self) -> Timestamp {
        Timestamp::from_elapsed(self.start.elapsed())
    }

    /// One turn of the event loop: send, report, then wait for a datagram or the
    /// next deadline, at most `max_wait`, and hand what happened to the core.
    fn turn(&mut self, max_wait: Duration) -> io::Result<()> {
        self.send_all();
        self.print_events();

        let max_wait = if self.streams.is_empty() { max_wait } else { max_wait.min(STREAM_WAIT) };
        let wait = match self.chitchat.poll_timeout() {
            Some(deadline) => deadline.saturating_duration_since(self.now()).min(max_wait),
            None => max_wait,
        };
        // A zero read timeout is refused by std, so a due deadline waits 1 ms.
        self.socket.set_read_timeout(Some(wait.max(Duration::from_millis(1))))?;
        match self.socket.recv_from(&mut self.buffer) {
            Ok((len, from)) => {
                let now = self.now();
                if let Err(error) = self.chitchat.handle_datagram(now, from, &self.buffer[..len]) {
                    // The datagram changed nothing; the core counted it in its metrics.
                    self.say(&format!("rejected a datagram from {from}: {error}"));
                }
            }
            // Timed out (WouldBlock on Unix, TimedOut on Windows), or an ICMP
            // "port unreachable" from an earlier send (Windows): nothing to read.
            Err(error)
                if matches!(
                    error.kind(),
                    io::ErrorKind::WouldBlock
                        | io::ErrorKind::TimedOut
                        | io::ErrorKind::ConnectionReset
                        | io::ErrorKind::ConnectionRefused
                ) => {}
            Err(error) => return Err(error),
        }

        let now = self.now();
        if self.chitchat.poll_timeout().is_some_and(|deadline| deadline <= now) {
            self.chitchat.handle_timeout(now);
        }
        self.pump_streams();
        Ok(())
    }

    /// Accepts and opens streams, and moves their bytes as far as the sockets
    /// allow without blocking. A failing stream is dropped (and reported to
    /// the core); the core ends streams on its own deadlines.
    fn pump_streams(&mut self) {
        loop {
            match self.listener.accept() {
                Ok((stream, from)) => {
                    let now = self.now();
                    if let Some(id) = self.chitchat.accept_stream(now, from) {
                        if stream.set_nonblocking(true).is_ok() {
                            self.streams.insert(id, Connection::new(stream));
                        } else {
                            self.chitchat.stream_closed(now, id);
                        }
                    }
                }
                Err(error) if error.kind() == io::ErrorKind::WouldBlock => break,
                Err(error) => {
                    self.say(&format!("accepting a stream failed: {error}"));
                    break;
                }
            }
        }
        while let Some(open) = self.chitchat.poll_stream_open() {
            // A blocking connect, bounded: the simplest choice for an example.
            let connected = TcpStream::connect_timeout(&open.to, CONNECT_TIMEOUT)
                .and_then(|stream| stream.set_nonblocking(true).map(|()| stream));
            match connected {
                Ok(stream) => drop(self.streams.insert(open.id, Connection::new(stream))),
                Err(error) => {
                    self.say(&format!("could not open a stream to {}: {error}", open.to));
                    self.chitchat.stream_closed(self.now(), open.id);
                }
            }
        }
        let ids: Vec<StreamId> = self.streams.keys().copied().collect();
        for id in ids {
            let Some(mut connection) = self.streams.remove(&id) else { continue };
            if connection.pump(&mut self.chitchat, id, self.start, &mut self.buffer) {
                self.streams.insert(id, connection);
            }
        }
    }

    /// Sends every queued datagram. UDP is lossy anyway, and gossip retries every
    /// round, so a failed send is only reported.
    fn send_all(&mut self) {
        while let Some(transmit) = self.chitchat.poll_transmit() {
            if let Err(error) = self.socket.send_to(&transmit.bytes, transmit.to) {
                self.say(&format!("could not send to {}: {error}", transmit.to));
            }
        }
    }

    /// Leaves the cluster: queues the farewells, sends them, and reports the
    /// node's own `left` event.
    fn leave(&mut self) {
        self.chitchat.leave(self.now());
        self.send_all();
        self.print_events();
    }

    /// Prints every pending event, then the live nodes if membership changed.
    fn print_events(&mut self) {
        let mut membership_changed = false;
        while let Some(event) = self.chitchat.poll_event() {
            membership_changed |=
                !matches!(event, Event::KeySet { .. } | Event::KeyDeleted { .. } | Event::KeyExpired { .. });
            self.say(&describe(&event));
        }
        if membership_changed {
            let live = self.live_names();
            let live = if live.is_empty() { "(none)".to_string() } else { live.join(", ") };
            self.say(&format!("live nodes: {live}"));
        }
    }

    /// The names of the nodes this node sees live, sorted.
    fn live_names(&self) -> Vec<&str> {
        let mut names: Vec<&str> = self.chitchat.live_nodes().map(|id| id.name()).collect();
        names.sort_unstable();
        names
    }

    /// Prints one line, prefixed with the time and the node's name.
    fn say(&self, line: &str) {
        let elapsed = self.start.elapsed().as_secs_f64();
        println!("[{elapsed:7.3}s {}] {line}", self.chitchat.self_id().name());
    }
}

/// One catch-up stream: a non-blocking TCP connection and the frame being
/// written on it.
struct Connection {
    stream: TcpStream,
    out: Vec<u8>,
    written: usize,
}

impl Connection {
    fn new(stream: TcpStream) -> Self {
        Connection { stream, out: Vec::new(), written: 0 }
    }

    /// Reads what arrived into the core, then writes what the core sends.
    /// Returns whether the stream stays open.
    fn pump(&mut self, chitchat: &mut Chitchat, id: StreamId, start: Instant, buffer: &mut [u8]) -> bool {
        let now = || Timestamp::from_elapsed(start.elapsed());
        if !chitchat.is_stream_open(id) {
            return false; // the core ended it (a timeout, say)
        }
        loop {
            match self.stream.read(buffer) {
                Ok(0) => {
                    chitchat.stream_closed(now(), id);
                    return false;
                }
                Ok(len) => {
                    if chitchat.handle_stream_data(now(), id, &buffer[..len]).is_err() {
                        return false; // refused: the core forgot the stream
                    }
                }
                Err(error) if error.kind() == io::ErrorKind::WouldBlock => break,
                Err(_) => {
                    chitchat.stream_closed(now(), id);
                    return false;
                }
            }
        }
        loop {
            if self.written == self.out.len() {
                match chitchat.poll_stream_send(now(), id) {
                    StreamSend::Bytes(bytes) => (self.out, self.written) = (bytes, 0),
                    StreamSend::Idle => return true,
                    StreamSend::Finished => {
                        // The last frame was written out above: close the
                        // writing half so that the peer reads the end.
                        let _ = self.stream.shutdown(Shutdown::Write);
                        return false;
                    }
                }
            }
            match self.stream.write(&self.out[self.written..]) {
                Ok(len) => self.written += len,
                Err(error) if error.kind() == io::ErrorKind::WouldBlock => return true,
                Err(_) => {
                    chitchat.stream_closed(now(), id);
                    return false;
                }
            }
        }
    }
}

/// One event as a line of text.
fn describe(event: &Event) -> String {
    match event {
        Event::NodeJoined(id) => format!("joined      {id}"),
        Event::NodeLive(id) => format!("live        {id}"),
        Event::NodeDead(id) => format!("dead        {id}"),
        Event::NodeLeft(id) => format!("left        {id}"),
        Event::NodeRemoved(id) => format!("removed     {id}"),
        Event::NodeRestarted { previous, current } => format!("restarted   {previous} -> {current}"),
        Event::NodeReset(id) => format!("reset       {id} (state replaced wholesale)"),
        Event::ReadyChanged { node, ready: true } => format!("ready       {node}"),
        Event::ReadyChanged { node, ready: false } => format!("not ready   {node}"),
        Event::KeySet { node, key, value, version } => {
            format!("key set     {}: {key} = {value:?} (version {version})", node.name())
        }
        Event::KeyDeleted { node, key } => format!("key deleted {}: {key}", node.name()),
        Event::KeyExpired { node, key } => format!("key expired {}: {key}", node.name()),
        other => format!("{other:?}"),
    }
}

/// Runs one node until killed, or for `--duration-secs` and then leaves.
fn run(options: Options) -> Result<ExitCode, Box<dyn Error>> {
    let start = Instant::now();
    let mut seeds = Vec::new();
    for seed in &options.seeds {
        // Resolved once; a long-running adapter would resolve again from time to time.
        let addr = seed.to_socket_addrs()?.next().ok_or_else(|| format!("{seed} resolves to nothing"))?;
        seeds.push(addr);
    }
    let socket = UdpSocket::bind(&options.listen)?;
    let rng_seed =
        SystemTime::now().duration_since(UNIX_EPOCH).map_or(0, |elapsed| elapsed.as_nanos() as u64);
    let config = config(options.cluster_id, rng_seed);
    let mut node = Node::new(socket, options.name, config, &options.key_values, seeds.clone(), start)?;
    node.say(&format!(
        "started as {} in cluster {:?}, seeds {seeds:?}",
        node.chitchat.self_id(),
        node.chitchat.config().cluster_id
    ));

    let stop_at = options.duration.map(|duration| start + duration);
    loop {
        let max_wait = match stop_at {
            Some(stop_at) if Instant::now() >= stop_at => break,
            Some(stop_at) => stop_at.saturating_duration_since(Instant::now()).min(MAX_WAIT),
            None => MAX_WAIT,
        };
        node.turn(max_wait)?;
    }
    node.leave();
    let code = if node.chitchat.has_left() { ExitCode::SUCCESS } else { ExitCode::FAILURE };
    Ok(code)
}

/// Runs three nodes, one thread each, until every node sees three live nodes and
/// the key set on the third, or [`DEMO_TIMEOUT`] passes.
fn demo(cluster_id: Option<String>) -> Result<ExitCode, Box<dyn Error>> {
    let start = Instant::now();
    let cluster_id = cluster_id.unwrap_or_else(|| "demo".to_string());
    let sockets = (0..DEMO_NODES).map(|_| UdpSocket::bind("127.0.0.1:0")).collect::<io::Result<Vec<_>>>()?;
    let seed = sockets[0].local_addr()?;
    let mut nodes = Vec::new();
    for (i, socket) in sockets.into_iter().enumerate() {
        let config = config(Some(cluster_id.clone()), i as u64 + 1);
        let name = format!("node-{}", i + 1);
        // Every node is seeded with the first; the first ignores itself as a seed.
        nodes.push(Node::new(socket, Some(name), config, &[], vec![seed], start)?);
    }
    nodes[DEMO_NODES - 1].chitchat.set(Timestamp::from_elapsed(start.elapsed()), DEMO_KEY, DEMO_VALUE)?;
    for node in &nodes {
        node.say(&format!("started as {}", node.chitchat.self_id()));
    }

    let done: Vec<AtomicBool> = (0..DEMO_NODES).map(|_| AtomicBool::new(false)).collect();
    let stop = AtomicBool::new(false);
    let (converged, nodes) = thread::scope(|scope| {
        let threads: Vec<_> = nodes
            .into_iter()
            .zip(&done)
            .map(|(node, done)| {
                let stop = &stop;
                scope.spawn(move || run_demo_node(node, done, stop))
            })
            .collect();
        let converged = loop {
            if done.iter().all(|done| done.load(Ordering::Relaxed)) {
                break true;
            }
            if start.elapsed() > DEMO_TIMEOUT || threads.iter().any(|thread| thread.is_finished()) {
                break false;
            }
            thread::sleep(Duration::from_millis(10));
        };
        stop.store(true, Ordering::Relaxed);
        let nodes: Vec<io::Result<Node>> =
            threads.into_iter().map(|thread| thread.join().expect("a demo node panicked")).collect();
        (converged, nodes)
    });
    let nodes = nodes.into_iter().collect::<io::Result<Vec<Node>>>()?;

    for node in &nodes {
        let greeting =
            node.chitchat.node_states().find_map(|state| state.get(DEMO_KEY)).unwrap_or("(missing)");
        node.say(&format!("sees live [{}], {DEMO_KEY} = {greeting:?}", node.live_names().join(", ")));
    }
    if converged {
        println!(
            "converged in {:.3}s: {DEMO_NODES} live nodes and {DEMO_KEY:?} everywhere",
            start.elapsed().as_secs_f64()
        );
        Ok(ExitCode::SUCCESS)
    } else {
        println!("did not converge within {DEMO_TIMEOUT:?}");
        Ok(ExitCode::FAILURE)
    }
}

/// The loop of one demo node: turns until `stop`, keeping `done` up to date.
fn run_demo_node(mut node: Node, done: &AtomicBool, stop: &AtomicBool) -> io::Result<Node> {
    while !stop.load(Ordering::Relaxed) {
        node.turn(MAX_WAIT)?;
        let sees_all = node.chitchat.live_nodes().count() == DEMO_NODES;
        let has_key = node.chitchat.node_states().any(|state| state.get(DEMO_KEY) == Some(DEMO_VALUE));
        done.store(sees_all && has_key, Ordering::Relaxed);
    }
    Ok(node)
}
