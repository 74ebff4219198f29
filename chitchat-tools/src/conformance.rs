//! The conformance suite: one set of scenarios every runtime adapter passes, over
//! real UDP on 127.0.0.1 (port 0).
//!
//! Each scenario is an `async fn` taking the adapter's [`Runtime`]; an adapter's
//! `tests/conformance.rs` instantiates them all with
//! [`conformance_tests!`](crate::conformance_tests):
//!
//! ```ignore
//! fn block_on<F: std::future::Future>(future: F) -> F::Output {
//!     smol::block_on(future)
//! }
//! chitchat_tools::conformance_tests!(chitchat_smol::runtime(), block_on);
//! ```
//!
//! Scenarios poll for their conditions with generous timeouts instead of sleeping
//! fixed times, and stop every node they start (a failing scenario drops its
//! handles, which stops the nodes too).

use std::collections::BTreeSet;
use std::future::{Future, poll_fn};
use std::io;
use std::net::SocketAddr;
use std::pin::Pin;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicU32, Ordering};
use std::task::{Context, Poll};
use std::time::{Duration, Instant};

use chitchat_core::testing::datagrams;
use chitchat_core::wire::Message;
use chitchat_core::{Config, Event, Keyring, KeyringError, NodeId, NodeStatus, SecretKey, wire};
use futures_lite::{FutureExt, StreamExt};

use chitchat_driver::{BoxFuture, Runtime, TcpListener, TcpStream, Timer, UdpSocket, sleep};
use chitchat_driver::{
    ChitchatHandle, CommandError, KeyChange, Lagged, NodeConfig, ReadyChange, StopReason, Subscription,
};

/// How long a scenario waits for a condition before it fails.
pub const TIMEOUT: Duration = Duration::from_secs(30);
/// How often a condition is checked.
const POLL_INTERVAL: Duration = Duration::from_millis(50);
/// The suite's cluster id.
const CLUSTER_ID: &str = "conformance";

/// Instantiates every scenario of the suite as a `#[test]`, for the runtime that
/// `$runtime` evaluates to (inside `$block_on`) and the function `$block_on`
/// that runs a future to completion on it.
#[macro_export]
macro_rules! conformance_tests {
    ($runtime:expr, $block_on:expr) => {
        $crate::conformance_tests!(@each $runtime, $block_on, [
            five_nodes_converge,
            key_changes_reach_prefix_subscriptions,
            node_shut_down_without_leaving_is_seen_dead,
            restarted_node_is_live_again_and_old_generation_removed,
            leave_is_seen_as_left,
            seed_given_as_localhost_works,
            hostile_datagrams_are_counted_and_change_nothing,
            slow_subscriber_is_told_it_lagged,
            socket_errors_are_survived_and_a_closed_socket_is_reported,
            keyed_nodes_form_a_cluster_that_strangers_never_join,
            keyed_nodes_rotate_their_key_through_the_handle,
            ready_predicate_decides_which_nodes_are_ready,
            with_chitchat_runs_a_closure_on_the_core,
            subscription_with_current_values_misses_nothing,
            five_nodes_subscribed_as_the_cli_does_see_every_key,
            large_state_catches_up_on_a_stream,
            hostile_stream_is_closed_and_counted,
        ]);
    };
    (@each $runtime:expr, $block_on:expr, [$($scenario:ident),* $(,)?]) => {
        $(
            #[test]
            fn $scenario() {
                ($block_on)(async { $crate::conformance::$scenario($runtime).await });
            }
        )*
    };
}

/// The suite's protocol settings: `Config::local_test()` (100 ms gossip) with
/// 3-second grace periods, so that removals happen quickly.
pub fn test_config() -> Config {
    Config {
        cluster_id: CLUSTER_ID.to_string(),
        dead_node_grace_period: Duration::from_secs(3),
        deletion_grace_period: Duration::from_secs(3),
        ..Config::local_test()
    }
}

/// A node of the suite: `name` on 127.0.0.1 port 0, with `seeds`.
pub fn node_config(name: &str, seeds: &[String]) -> NodeConfig {
    let mut config = NodeConfig::new(name, "127.0.0.1:0".parse().expect("a valid address"), test_config());
    config.seeds = seeds.to_vec();
    config
}

/// Starts a node, panicking on error.
pub async fn start(runtime: &Arc<dyn Runtime>, config: NodeConfig) -> ChitchatHandle {
    let name = config.name.clone();
    chitchat_driver::spawn(runtime.clone(), config)
        .await
        .unwrap_or_else(|error| panic!("cannot start {name}: {error}"))
}

/// Starts `count` nodes named `node-0`... on `runtime`, all seeded with the first.
pub async fn start_cluster(runtime: &Arc<dyn Runtime>, count: usize) -> Vec<ChitchatHandle> {
    let first = start(runtime, node_config("node-0", &[])).await;
    let seeds = vec![first.local_addr().to_string()];
    let mut nodes = vec![first];
    for i in 1..count {
        nodes.push(start(runtime, node_config(&format!("node-{i}"), &seeds)).await);
    }
    nodes
}

/// The names of the nodes `node` sees live.
pub fn live_names(node: &ChitchatHandle) -> BTreeSet<String> {
    node.live_nodes().iter().map(|id| id.name().to_string()).collect()
}

/// Waits until every node sees exactly `names` live.
pub async fn wait_converged(runtime: &Arc<dyn Runtime>, nodes: &[ChitchatHandle]) {
    let names: BTreeSet<String> = nodes.iter().map(|node| node.self_id().name().to_string()).collect();
    wait_until(runtime, "every node sees every node live", || {
        nodes.iter().all(|node| live_names(node) == names)
    })
    .await;
}

/// Polls `condition` until it holds; panics after [`TIMEOUT`].
pub async fn wait_until(runtime: &Arc<dyn Runtime>, what: &str, mut condition: impl FnMut() -> bool) {
    let deadline = Instant::now() + TIMEOUT;
    while !condition() {
        assert!(Instant::now() < deadline, "timed out after {TIMEOUT:?} waiting until {what}");
        sleep(runtime, POLL_INTERVAL).await;
    }
}

/// Runs `future`, or panics after [`TIMEOUT`].
pub async fn within<T>(runtime: &Arc<dyn Runtime>, what: &str, future: impl Future<Output = T>) -> T {
    let timeout = async {
        sleep(runtime, TIMEOUT).await;
        None
    };
    match async { Some(future.await) }.or(timeout).await {
        Some(output) => output,
        None => panic!("timed out after {TIMEOUT:?} waiting for {what}"),
    }
}

/// Waits for an event matching `wanted` on a subscription.
pub async fn wait_for_event(
    runtime: &Arc<dyn Runtime>,
    events: &mut Subscription<Event>,
    what: &str,
    mut wanted: impl FnMut(&Event) -> bool,
) {
    within(runtime, what, async {
        while let Some(event) = events.next().await {
            if event.is_ok_and(|event| wanted(&event)) {
                return;
            }
        }
        panic!("the node stopped before {what}");
    })
    .await
}

/// Shuts every node down.
pub async fn shutdown_all(nodes: &[ChitchatHandle]) {
    for node in nodes {
        node.shutdown().await.expect("a clean shutdown");
    }
}

/// Five nodes seeded with the first all see each other live.
pub async fn five_nodes_converge(runtime: Arc<dyn Runtime>) {
    let nodes = start_cluster(&runtime, 5).await;
    wait_converged(&runtime, &nodes).await;
    for node in &nodes {
        assert_eq!(node.ready_nodes().len(), 5, "every live node is ready by default");
    }
    shutdown_all(&nodes).await;
}

/// A test on a key change.
type ChangeFilter = fn(&KeyChange) -> bool;

/// Sets, deletes and expiries of keys under a prefix reach the subscriptions of
/// every node (the owner's included); other keys do not.
pub async fn key_changes_reach_prefix_subscriptions(runtime: Arc<dyn Runtime>) {
    let nodes = start_cluster(&runtime, 3).await;
    wait_converged(&runtime, &nodes).await;
    let mut subscriptions: Vec<_> = nodes.iter().map(|node| node.subscribe_key_changes("app/")).collect();
    let owner = nodes[0].self_id().clone();
    let steps: [(&str, ChangeFilter); 3] = [
        (
            "the set of app/color",
            |change| matches!(change, KeyChange::Set { key, value, .. } if key == "app/color" && value == "blue"),
        ),
        (
            "the delete of app/color",
            |change| matches!(change, KeyChange::Deleted { key, .. } if key == "app/color"),
        ),
        (
            "the expiry of app/lease",
            |change| matches!(change, KeyChange::Expired { key, .. } if key == "app/lease"),
        ),
    ];
    for (step, (what, wanted)) in steps.into_iter().enumerate() {
        match step {
            0 => {
                nodes[0].set("other/ignored", "1").await.expect("set");
                nodes[0].set("app/color", "blue").await.expect("set");
            }
            1 => nodes[0].delete("app/color").await.expect("delete"),
            _ => {
                nodes[0].set("app/lease", "held").await.expect("set");
                nodes[0].delete_after_ttl("app/lease").await.expect("delete after ttl");
            }
        }
        for subscription in &mut subscriptions {
            within(&runtime, what, async {
                loop {
                    let change = subscription.next().await.expect("the node runs").expect("no lag");
                    assert!(change.key().starts_with("app/"), "unexpected key {}", change.key());
                    assert_eq!(change.node(), &owner);
                    if wanted(&change) {
                        break;
                    }
                }
            })
            .await;
        }
    }
    shutdown_all(&nodes).await;
}

/// A node stopped without leaving is seen dead by the others.
pub async fn node_shut_down_without_leaving_is_seen_dead(runtime: Arc<dyn Runtime>) {
    let nodes = start_cluster(&runtime, 3).await;
    wait_converged(&runtime, &nodes).await;
    let mut events = nodes[0].subscribe_events();
    let victim = nodes[2].self_id().clone();
    nodes[2].shutdown().await.expect("a clean shutdown");
    wait_for_event(&runtime, &mut events, "the stopped node is seen dead", |event| {
        *event == Event::NodeDead(victim.clone())
    })
    .await;
    wait_until(&runtime, "both survivors drop it from their live sets", || {
        nodes[..2].iter().all(|node| !node.live_nodes().contains(&victim))
    })
    .await;
    shutdown_all(&nodes[..2]).await;
}

/// A node restarted on its address with a higher generation is live again, and
/// its old generation is forgotten after the grace period.
pub async fn restarted_node_is_live_again_and_old_generation_removed(runtime: Arc<dyn Runtime>) {
    let mut nodes = start_cluster(&runtime, 3).await;
    wait_converged(&runtime, &nodes).await;
    let old = nodes[2].self_id().clone();
    nodes[2].shutdown().await.expect("a clean shutdown");
    let mut config = node_config(old.name(), &[nodes[0].local_addr().to_string()]);
    config.listen_addr = old.gossip_addr();
    config.generation = Some(old.generation() + 1);
    nodes[2] = start(&runtime, config).await;
    let new = nodes[2].self_id().clone();
    wait_until(&runtime, "the survivors see the new generation live", || {
        nodes[..2].iter().all(|node| node.live_nodes().contains(&new))
    })
    .await;
    wait_converged(&runtime, &nodes).await;
    let deadline = Instant::now() + TIMEOUT;
    for node in &nodes[..2] {
        loop {
            let snapshot = node.snapshot().await.expect("running");
            if !snapshot.nodes.iter().any(|state| state.id == old) {
                break;
            }
            assert!(Instant::now() < deadline, "the old generation was never removed");
            sleep(&runtime, POLL_INTERVAL).await;
        }
    }
    shutdown_all(&nodes).await;
}

/// A node that leaves is seen left by the others without waiting for the failure
/// detector.
pub async fn leave_is_seen_as_left(runtime: Arc<dyn Runtime>) {
    let nodes = start_cluster(&runtime, 3).await;
    wait_converged(&runtime, &nodes).await;
    let mut events: Vec<_> = nodes[..2].iter().map(ChitchatHandle::subscribe_events).collect();
    let leaver = nodes[2].self_id().clone();
    nodes[2].leave().await.expect("leave");
    for (node, events) in nodes[..2].iter().zip(&mut events) {
        wait_for_event(&runtime, events, "the leaver is seen left", |event| {
            *event == Event::NodeLeft(leaver.clone())
        })
        .await;
        let snapshot = node.snapshot().await.expect("running");
        let status = snapshot.nodes.iter().find(|state| state.id == leaver).map(|state| state.status);
        assert!(matches!(status, Some(NodeStatus::Left) | None), "status of the leaver: {status:?}");
        assert!(!node.live_nodes().contains(&leaver));
    }
    assert!(matches!(nodes[2].set("late", "write").await, Err(CommandError::KeyValue(_))));
    shutdown_all(&nodes).await;
}

/// A seed given as `localhost:PORT` is resolved by DNS and works.
pub async fn seed_given_as_localhost_works(runtime: Arc<dyn Runtime>) {
    let first = start(&runtime, node_config("node-0", &[])).await;
    let seed = format!("localhost:{}", first.local_addr().port());
    let second = start(&runtime, node_config("node-1", &[seed])).await;
    let nodes = [first, second];
    wait_converged(&runtime, &nodes).await;
    shutdown_all(&nodes).await;
}

/// Garbage, datagrams of another cluster and of another protocol version are
/// counted, change nothing, and the cluster keeps working.
pub async fn hostile_datagrams_are_counted_and_change_nothing(runtime: Arc<dyn Runtime>) {
    let nodes = start_cluster(&runtime, 3).await;
    wait_converged(&runtime, &nodes).await;
    let target = &nodes[0];
    let before = target.metrics().await.expect("running").core;
    let tracked_before: Vec<NodeId> =
        target.snapshot().await.expect("running").nodes.into_iter().map(|node| node.id).collect();

    // The probe uses the runtime's socket: a blocking one would stall a
    // single-threaded runtime.
    let probe = runtime.bind("127.0.0.1:0".parse().expect("an address")).expect("bind the probe");
    let mut other_version = datagrams::syn(CLUSTER_ID, datagrams::empty_digest());
    other_version[wire::MAGIC.len()] = wire::PROTOCOL_VERSION.wrapping_add(1);
    let mut truncated = datagrams::ack(CLUSTER_ID, Vec::new());
    truncated.truncate(wire::HEADER_LEN + 2);
    let datagrams: Vec<Vec<u8>> = vec![
        b"definitely not gossip".to_vec(),
        vec![0xff; 3],
        truncated,
        other_version,
        datagrams::ack("another-cluster", Vec::new()),
        datagrams::syn("another-cluster", datagrams::empty_digest()),
    ];
    for datagram in &datagrams {
        poll_fn(|cx| probe.poll_send_to(cx, datagram, target.local_addr()))
            .await
            .expect("send to the target");
    }
    // The Syn of another cluster is answered BadCluster.
    let mut buffer = vec![0; Config::MAX_DATAGRAM_SIZE];
    let (len, _) =
        within(&runtime, "a BadCluster answer", poll_fn(|cx| probe.poll_recv_from(cx, &mut buffer)))
            .await
            .expect("receive the answer");
    let answer = wire::decode(&buffer[..len]).expect("a valid answer");
    assert_eq!(answer.message, Message::BadCluster);
    assert_eq!(answer.cluster_id, CLUSTER_ID);

    let deadline = Instant::now() + TIMEOUT;
    loop {
        let after = target.metrics().await.expect("running").core;
        let rejected = &after.rejected;
        let counted = rejected.envelope >= before.rejected.envelope + 3
            && rejected.decode > before.rejected.decode
            && rejected.wrong_cluster > before.rejected.wrong_cluster
            && after.bad_cluster_sent > before.bad_cluster_sent
            && rejected.total >= before.rejected.total + 5;
        if counted {
            break;
        }
        assert!(Instant::now() < deadline, "hostile datagrams not counted: {after:?}");
        sleep(&runtime, POLL_INTERVAL).await;
    }
    // The cluster keeps working, and the target tracks the same nodes.
    nodes[1].set("after", "attack").await.expect("set");
    let writer = nodes[1].self_id().clone();
    let deadline = Instant::now() + TIMEOUT;
    loop {
        let snapshot = target.snapshot().await.expect("running");
        let arrived = snapshot.nodes.iter().any(|node| {
            node.id == writer
                && node.key_values.iter().any(|(key, value)| key == "after" && value.value == "attack")
        });
        if arrived {
            let tracked: Vec<NodeId> = snapshot.nodes.into_iter().map(|node| node.id).collect();
            assert_eq!(tracked, tracked_before, "hostile datagrams changed the tracked nodes");
            break;
        }
        assert!(Instant::now() < deadline, "the cluster stopped working");
        sleep(&runtime, POLL_INTERVAL).await;
    }
    wait_converged(&runtime, &nodes).await;
    shutdown_all(&nodes).await;
}

/// A subscriber that does not read loses the oldest changes, is told how many,
/// and never holds gossip up.
pub async fn slow_subscriber_is_told_it_lagged(runtime: Arc<dyn Runtime>) {
    let mut config = node_config("node-0", &[]);
    config.subscription_capacity = 4;
    let first = start(&runtime, config).await;
    let second = start(&runtime, node_config("node-1", &[first.local_addr().to_string()])).await;
    let nodes = [first, second];
    wait_converged(&runtime, &nodes).await;
    let mut slow = nodes[0].subscribe_key_changes("k/");
    for i in 0..50 {
        nodes[0].set(format!("k/{i:02}"), "v").await.expect("set");
    }
    let owner = nodes[0].self_id().clone();
    let deadline = Instant::now() + TIMEOUT;
    loop {
        let snapshot = nodes[1].snapshot().await.expect("running");
        let keys =
            snapshot.nodes.iter().find(|node| node.id == owner).map_or(0, |node| node.key_values.len());
        if keys == 50 {
            break;
        }
        assert!(Instant::now() < deadline, "gossip stalled behind a slow subscriber");
        sleep(&runtime, POLL_INTERVAL).await;
    }
    let first_item = within(&runtime, "the lag report", slow.next()).await.expect("the node runs");
    assert_eq!(first_item, Err(Lagged(46)));
    let next = within(&runtime, "the next change", slow.next()).await.expect("the node runs");
    assert!(matches!(next, Ok(KeyChange::Set { key, .. }) if key == "k/46"));
    shutdown_all(&nodes).await;
}

/// Transient receive errors are counted and survived; a socket that fails for good
/// stops the task, and the handle reports it.
pub async fn socket_errors_are_survived_and_a_closed_socket_is_reported(runtime: Arc<dyn Runtime>) {
    let faults = Arc::new(Faults::default());
    let faulty: Arc<dyn Runtime> = Arc::new(FaultyRuntime { inner: runtime.clone(), faults: faults.clone() });
    let first = start(&faulty, node_config("node-0", &[])).await;
    let second = start(&runtime, node_config("node-1", &[first.local_addr().to_string()])).await;
    let nodes = [first, second];
    wait_converged(&runtime, &nodes).await;

    faults.transient_errors.store(20, Ordering::SeqCst);
    wait_until(&runtime, "the transient errors are counted", || nodes[0].driver_metrics().recv_errors >= 20)
        .await;
    let writer = nodes[1].self_id().clone();
    let mut changes = nodes[0].subscribe_key_changes("still");
    nodes[1].set("still", "gossiping").await.expect("set");
    within(&runtime, "gossip after transient errors", async {
        while let Some(change) = changes.next().await {
            if change.is_ok_and(|change| change.node() == &writer) {
                return;
            }
        }
    })
    .await;
    assert!(nodes[0].stop_reason().is_none());

    faults.closed.store(true, Ordering::SeqCst);
    let reason = within(&runtime, "the task to stop", nodes[0].stopped()).await;
    assert!(matches!(reason, StopReason::SocketClosed(_)), "stopped because {reason}");
    assert!(matches!(nodes[0].shutdown().await, Err(StopReason::SocketClosed(_))));
    assert_eq!(nodes[0].set("k", "v").await, Err(CommandError::Stopped));
    nodes[1].shutdown().await.expect("a clean shutdown");
}

/// One node per runtime, in one cluster: they converge and share keys.
pub async fn mixed_runtimes_form_one_cluster(runtimes: Vec<Arc<dyn Runtime>>) {
    let mut nodes: Vec<ChitchatHandle> = Vec::new();
    for (i, runtime) in runtimes.iter().enumerate() {
        let seeds: Vec<String> =
            nodes.first().map(|first| first.local_addr().to_string()).into_iter().collect();
        let node = start(runtime, node_config(&format!("node-{i}"), &seeds)).await;
        nodes.push(node);
    }
    let runtime = &runtimes[0];
    wait_converged(runtime, &nodes).await;
    for node in &nodes {
        node.set("runtime", node.self_id().name().to_string()).await.expect("set");
    }
    let deadline = Instant::now() + TIMEOUT;
    for node in &nodes {
        loop {
            let snapshot = node.snapshot().await.expect("running");
            let with_key = snapshot
                .nodes
                .iter()
                .filter(|state| state.key_values.iter().any(|(key, _)| key == "runtime"));
            if with_key.count() == nodes.len() {
                break;
            }
            assert!(Instant::now() < deadline, "keys did not spread across runtimes");
            sleep(runtime, POLL_INTERVAL).await;
        }
    }
    shutdown_all(&nodes).await;
}

/// Faults injected into a [`FaultyRuntime`]'s sockets.
#[derive(Debug, Default)]
struct Faults {
    /// Receives that fail with `ConnectionRefused` before the next real one.
    transient_errors: AtomicU32,
    /// Every receive fails with `BrokenPipe`, as on a closed socket.
    closed: AtomicBool,
}

/// A runtime whose sockets fail on demand.
#[derive(Debug)]
struct FaultyRuntime {
    inner: Arc<dyn Runtime>,
    faults: Arc<Faults>,
}

impl Runtime for FaultyRuntime {
    fn bind(&self, addr: SocketAddr) -> io::Result<Box<dyn UdpSocket>> {
        Ok(Box::new(FaultySocket { inner: self.inner.bind(addr)?, faults: self.faults.clone() }))
    }

    fn listen(&self, addr: SocketAddr) -> io::Result<Box<dyn TcpListener>> {
        self.inner.listen(addr)
    }

    fn connect(&self, addr: SocketAddr) -> BoxFuture<io::Result<Box<dyn TcpStream>>> {
        self.inner.connect(addr)
    }

    fn new_timer(&self, deadline: Instant) -> Pin<Box<dyn Timer>> {
        self.inner.new_timer(deadline)
    }

    fn spawn(&self, future: BoxFuture<()>) {
        self.inner.spawn(future)
    }

    fn resolve(&self, host_and_port: String) -> BoxFuture<io::Result<Vec<SocketAddr>>> {
        self.inner.resolve(host_and_port)
    }
}

#[derive(Debug)]
struct FaultySocket {
    inner: Box<dyn UdpSocket>,
    faults: Arc<Faults>,
}

impl UdpSocket for FaultySocket {
    fn poll_recv_from(
        &self,
        cx: &mut Context<'_>,
        buffer: &mut [u8],
    ) -> Poll<io::Result<(usize, SocketAddr)>> {
        if self.faults.closed.load(Ordering::SeqCst) {
            return Poll::Ready(Err(io::ErrorKind::BrokenPipe.into()));
        }
        let injected = self
            .faults
            .transient_errors
            .fetch_update(Ordering::SeqCst, Ordering::SeqCst, |n| n.checked_sub(1));
        if injected.is_ok() {
            return Poll::Ready(Err(io::ErrorKind::ConnectionRefused.into()));
        }
        self.inner.poll_recv_from(cx, buffer)
    }

    fn poll_send_to(&self, cx: &mut Context<'_>, bytes: &[u8], to: SocketAddr) -> Poll<io::Result<usize>> {
        self.inner.poll_send_to(cx, bytes, to)
    }

    fn local_addr(&self) -> io::Result<SocketAddr> {
        self.inner.local_addr()
    }
}

/// The node config of a keyed node of the suite.
fn keyed_config(name: &str, seeds: &[String], key: Option<u8>) -> NodeConfig {
    let config = node_config(name, seeds);
    match key {
        Some(byte) => config.with_keyring(Keyring::new(SecretKey::from_bytes([byte; 32]))),
        None => config,
    }
}

/// Two nodes with the cluster key form a cluster; a node with another key and a
/// node with none, both seeded with the first, never join, are never answered
/// and learn nothing; the keyed nodes count what they refused.
pub async fn keyed_nodes_form_a_cluster_that_strangers_never_join(runtime: Arc<dyn Runtime>) {
    let first = start(&runtime, keyed_config("keyed-0", &[], Some(1))).await;
    let seeds = vec![first.local_addr().to_string()];
    let second = start(&runtime, keyed_config("keyed-1", &seeds, Some(1))).await;
    let other_key = start(&runtime, keyed_config("other-key", &seeds, Some(2))).await;
    let no_key = start(&runtime, keyed_config("no-key", &seeds, None)).await;
    let keyed = [first.clone(), second.clone()];
    wait_converged(&runtime, &keyed).await;
    second.set("secret", "value").await.expect("set");
    let deadline = Instant::now() + TIMEOUT;
    loop {
        let rejected = first.metrics().await.expect("running").core.rejected;
        if rejected.unauthenticated > 0 && rejected.plaintext_refused > 0 {
            break;
        }
        assert!(Instant::now() < deadline, "the strangers' datagrams were not counted: {rejected:?}");
        sleep(&runtime, POLL_INTERVAL).await;
    }
    // Twenty more gossip rounds for anything to leak.
    sleep(&runtime, Duration::from_secs(2)).await;
    for stranger in [&other_key, &no_key] {
        let snapshot = stranger.snapshot().await.expect("running");
        assert_eq!(snapshot.nodes.len(), 1, "{} learned of other nodes", stranger.self_id().name());
        assert_eq!(live_names(stranger).len(), 1);
        let metrics = stranger.metrics().await.expect("running").core;
        assert_eq!(metrics.syn_acks_received + metrics.acks_received, 0, "a stranger was answered");
    }
    for node in &keyed {
        let names: Vec<String> = node
            .snapshot()
            .await
            .expect("running")
            .nodes
            .into_iter()
            .map(|node| node.id.name().to_string())
            .collect();
        assert_eq!(names.len(), 2, "a stranger joined: {names:?}");
    }
    shutdown_all(&[first, second, other_key, no_key]).await;
}

/// Three keyed nodes rotate to a new key in three steps through their handles,
/// and keep gossiping; removing the primary key is refused.
pub async fn keyed_nodes_rotate_their_key_through_the_handle(runtime: Arc<dyn Runtime>) {
    let first = start(&runtime, keyed_config("keyed-0", &[], Some(3))).await;
    let seeds = vec![first.local_addr().to_string()];
    let mut nodes = vec![first];
    for i in 1..3 {
        nodes.push(start(&runtime, keyed_config(&format!("keyed-{i}"), &seeds, Some(3))).await);
    }
    wait_converged(&runtime, &nodes).await;
    let (old, new) = (SecretKey::from_bytes([3; 32]), SecretKey::from_bytes([4; 32]));
    for node in &nodes {
        assert_eq!(node.add_key(new.clone()).await, Ok(new.id()));
    }
    for node in &nodes {
        node.set_primary_key(new.id()).await.expect("the new key is held");
    }
    assert_eq!(
        nodes[0].remove_key(new.id()).await,
        Err(CommandError::Keyring(KeyringError::RemovePrimary(new.id())))
    );
    for node in &nodes {
        node.remove_key(old.id()).await.expect("the old key is held");
    }
    nodes[2].set("rotated", "yes").await.expect("set");
    let writer = nodes[2].self_id().clone();
    let deadline = Instant::now() + TIMEOUT;
    for node in &nodes {
        loop {
            let snapshot = node.snapshot().await.expect("running");
            let arrived = snapshot.nodes.iter().any(|state| {
                state.id == writer
                    && state.key_values.iter().any(|(key, value)| key == "rotated" && value.value == "yes")
            });
            if arrived {
                break;
            }
            assert!(Instant::now() < deadline, "gossip stopped after the rotation");
            sleep(&runtime, POLL_INTERVAL).await;
        }
    }
    wait_converged(&runtime, &nodes).await;
    shutdown_all(&nodes).await;
}

/// A ready predicate set in the node config decides which live nodes are ready;
/// readiness items carry the node's status and keys; the handle replaces the
/// predicate at run time.
pub async fn ready_predicate_decides_which_nodes_are_ready(runtime: Arc<dyn Runtime>) {
    let not_draining = |state: &chitchat_core::NodeState| state.get("draining") != Some("true");
    let first = start(&runtime, node_config("node-0", &[]).with_ready_predicate(not_draining)).await;
    let seeds = vec![first.local_addr().to_string()];
    let mut nodes = vec![first];
    for i in 1..3 {
        let config = node_config(&format!("node-{i}"), &seeds).with_ready_predicate(not_draining);
        nodes.push(start(&runtime, config.with_key_value("role", "worker")).await);
    }
    wait_converged(&runtime, &nodes).await;
    wait_until(&runtime, "every node is ready", || nodes.iter().all(|node| node.ready_nodes().len() == 3))
        .await;
    let mut changes = nodes[0].subscribe_ready_changes().await.expect("running");
    let mut current = Vec::new();
    for _ in 0..3 {
        let change =
            within(&runtime, "the ready nodes", changes.next()).await.expect("running").expect("no lag");
        assert!(change.ready, "{change:?}");
        current.push(change.node);
    }
    let mut expected: Vec<NodeId> = nodes.iter().map(|node| node.self_id().clone()).collect();
    expected.sort();
    assert_eq!(current, expected, "the current ready nodes, in node order");

    let drained = nodes[2].self_id().clone();
    nodes[2].set("draining", "true").await.expect("set");
    let change: ReadyChange = within(&runtime, "the drained node's readiness change", changes.next())
        .await
        .expect("running")
        .expect("no lag");
    assert_eq!((&change.node, change.ready, change.status), (&drained, false, Some(NodeStatus::Live)));
    assert!(change.key_values.contains(&("draining".into(), "true".into())), "{change:?}");
    assert!(change.key_values.contains(&("role".into(), "worker".into())), "{change:?}");
    assert!(change.max_version >= 2);
    wait_until(&runtime, "every node sees it not ready, yet live", || {
        nodes.iter().all(|node| node.ready_nodes().len() == 2 && node.live_nodes().len() == 3)
    })
    .await;
    let mut ready = nodes[1].watch_ready_nodes();
    let set = within(&runtime, "the ready set", ready.next()).await.expect("running");
    assert!(!set.contains(&drained));

    nodes[0].set_ready_predicate(|_| true).await.expect("running");
    let change = within(&runtime, "ready again", changes.next()).await.expect("running").expect("no lag");
    assert_eq!((&change.node, change.ready), (&drained, true));
    assert_eq!(nodes[0].ready_nodes().len(), 3);
    assert_eq!(nodes[1].ready_nodes().len(), 2, "the other nodes keep their predicate");
    shutdown_all(&nodes).await;
}

/// `with_chitchat` reads one key of one peer, changes the core (the change is
/// gossiped like any), and resumes a panic in the caller while the node runs on.
pub async fn with_chitchat_runs_a_closure_on_the_core(runtime: Arc<dyn Runtime>) {
    let nodes = start_cluster(&runtime, 2).await;
    wait_converged(&runtime, &nodes).await;
    nodes[1].set("role", "indexer").await.expect("set");
    let peer = nodes[1].self_id().clone();
    let deadline = Instant::now() + TIMEOUT;
    loop {
        let peer = peer.clone();
        let role = nodes[0]
            .with_chitchat(move |chitchat, _| chitchat.node_state(&peer)?.get("role").map(String::from))
            .await
            .expect("running");
        if role.as_deref() == Some("indexer") {
            break;
        }
        assert!(Instant::now() < deadline, "the peer's key never arrived");
        sleep(&runtime, POLL_INTERVAL).await;
    }
    let mut changes = nodes[1].subscribe_key_changes("direct");
    let set = nodes[0].with_chitchat(|chitchat, now| chitchat.set(now, "direct", "yes")).await;
    assert_eq!(set.expect("running"), Ok(()));
    let change = within(&runtime, "a key set through with_chitchat", changes.next()).await;
    assert!(
        matches!(change, Some(Ok(KeyChange::Set { key, value, .. })) if key == "direct" && value == "yes")
    );

    let panicked = std::panic::AssertUnwindSafe(nodes[0].with_chitchat(|_, _| panic!("a closure panicked")))
        .catch_unwind()
        .await;
    assert!(panicked.is_err(), "the panic reaches the caller");
    assert!(nodes[0].stop_reason().is_none());
    assert_eq!(nodes[0].with_chitchat(|chitchat, _| chitchat.live_nodes().count()).await, Ok(2));
    shutdown_all(&nodes).await;
    assert_eq!(nodes[0].with_chitchat(|_, _| ()).await, Err(CommandError::Stopped));
}

/// A subscription with current values, made while a peer writes, reports every
/// key's final value: what it reports folds into exactly the node's state.
pub async fn subscription_with_current_values_misses_nothing(runtime: Arc<dyn Runtime>) {
    let first = start(&runtime, node_config("node-0", &[]).with_key_value("app/own", "0")).await;
    let seeds = vec![first.local_addr().to_string()];
    let second = start(&runtime, node_config("node-1", &seeds)).await;
    let nodes = [first, second];
    wait_converged(&runtime, &nodes).await;
    const WRITES: usize = 200;
    let mut subscriptions = Vec::new();
    for i in 0..WRITES {
        nodes[1].set(format!("app/k{:02}", i % 40), i.to_string()).await.expect("set");
        nodes[1].set(format!("other/{i}"), "x").await.expect("set");
        if i % 50 == 25 {
            subscriptions.push(nodes[0].subscribe_key_changes_with_current("app/").await.expect("running"));
        }
        if i % 10 == 0 {
            sleep(&runtime, Duration::from_millis(20)).await;
        }
    }
    let writer = nodes[1].self_id().clone();
    let last = format!("{}", WRITES - 1);
    for (n, subscription) in subscriptions.iter_mut().enumerate() {
        let mut seen = std::collections::BTreeMap::new();
        within(&runtime, "the last write through a subscription with current values", async {
            while let Some(change) = subscription.next().await {
                let change = change.expect("no lag");
                assert!(change.key().starts_with("app/"), "{change:?}");
                if let KeyChange::Set { node, key, value, .. } = change {
                    let done = node == writer && value == last;
                    seen.insert((node.name().to_string(), key), value);
                    if done {
                        return;
                    }
                }
            }
            panic!("the node stopped");
        })
        .await;
        let snapshot = nodes[0].snapshot().await.expect("running");
        let mut expected = std::collections::BTreeMap::new();
        for node in snapshot.nodes {
            for (key, value) in node.key_values {
                if key.starts_with("app/") && value.is_visible() {
                    expected.insert((node.id.name().to_string(), key.into()), value.value.into());
                }
            }
        }
        assert_eq!(seen, expected, "subscription {n} missed a change");
    }
    shutdown_all(&nodes).await;
}

/// Five nodes, each started with keys of its own and subscribed as the node CLI
/// does (current values, then changes) only once the cluster has converged:
/// each sees every node's keys.
pub async fn five_nodes_subscribed_as_the_cli_does_see_every_key(runtime: Arc<dyn Runtime>) {
    let mut nodes = Vec::new();
    for i in 0..5 {
        let seeds: Vec<String> =
            nodes.first().map(|first: &ChitchatHandle| first.local_addr().to_string()).into_iter().collect();
        let config = node_config(&format!("node-{i}"), &seeds)
            .with_key_value("index", i.to_string())
            .with_key_value("role", "member");
        nodes.push(start(&runtime, config).await);
    }
    wait_converged(&runtime, &nodes).await;
    let expected: BTreeSet<(String, String)> = (0..5)
        .flat_map(|i| [(format!("node-{i}"), "index".to_string()), (format!("node-{i}"), "role".to_string())])
        .collect();
    for node in &nodes {
        let mut subscription = node.subscribe_key_changes_with_current("").await.expect("running");
        let mut seen = BTreeSet::new();
        within(&runtime, "every node's keys", async {
            while seen != expected {
                match subscription.next().await.expect("running").expect("no lag") {
                    KeyChange::Set { node, key, .. } => {
                        seen.insert((node.name().to_string(), key.to_string()))
                    }
                    other => panic!("unexpected {other:?}"),
                };
            }
        })
        .await;
    }
    shutdown_all(&nodes).await;
}

/// A node that joins a cluster holding a megabyte of 1,000-byte values (too
/// large for its 1,400-byte datagrams) pulls it over a TCP stream, and holds
/// all of it within seconds.
pub async fn large_state_catches_up_on_a_stream(runtime: Arc<dyn Runtime>) {
    const KEYS: usize = 1_000;
    let large = |name: &str, seeds: &[String]| {
        let mut config = node_config(name, seeds);
        config.chitchat.max_datagram_size = 1_400;
        config.chitchat.max_value_len = 1_000;
        config.chitchat.max_keys_per_node = KEYS + 10;
        config
    };
    let holder = start(&runtime, large("holder", &[])).await;
    let max_version = holder
        .with_chitchat(|chitchat, now| {
            for k in 0..KEYS {
                let value: String = std::iter::repeat_n(char::from(b'a' + (k % 26) as u8), 1_000).collect();
                chitchat.set(now, &format!("key-{k:04}"), &value).expect("within the limits");
            }
            chitchat.self_node_state().max_version()
        })
        .await
        .expect("the node runs");
    let holder_id = holder.self_id().clone();
    let joiner = start(&runtime, large("joiner", &[holder.local_addr().to_string()])).await;
    let started = Instant::now();
    let caught_up = || {
        let holder_id = holder_id.clone();
        joiner.with_chitchat(move |chitchat, _| {
            chitchat.node_state(&holder_id).map_or(0, |state| state.max_version())
        })
    };
    loop {
        let held = within(&runtime, "the joiner answers", caught_up()).await.expect("the node runs");
        if held == max_version {
            break;
        }
        assert!(started.elapsed() < TIMEOUT, "the joiner holds version {held} of {max_version}");
        sleep(&runtime, POLL_INTERVAL).await;
    }
    let joiner_streams = joiner.metrics().await.expect("the node runs").core.streams;
    let holder_streams = holder.metrics().await.expect("the node runs").core.streams;
    assert!(joiner_streams.opened >= 1 && joiner_streams.bytes_received > 0, "{joiner_streams:?}");
    assert!(holder_streams.accepted >= 1 && holder_streams.bytes_sent > 0, "{holder_streams:?}");
    assert_eq!(joiner_streams.frames_rejected + holder_streams.frames_rejected, 0);
    shutdown_all(&[holder, joiner]).await;
}

/// A stranger that connects to a node's gossip address over TCP and announces
/// a frame longer than the limit is cut off: the node closes the connection
/// without reading further, and counts the refused frame.
pub async fn hostile_stream_is_closed_and_counted(runtime: Arc<dyn Runtime>) {
    let node = start(&runtime, node_config("target", &[])).await;
    let mut stream = within(&runtime, "connecting", runtime.connect(node.local_addr()))
        .await
        .expect("the node listens on its gossip address over TCP");
    let announce = (chitchat_core::wire::MAX_FRAME_LEN as u32 + 1).to_be_bytes();
    let mut written = 0;
    while written < announce.len() {
        written += within(&runtime, "writing", poll_fn(|cx| stream.poll_write(cx, &announce[written..])))
            .await
            .expect("the connection is open");
    }
    // The node closes its end: reads see the end of the stream (or a reset).
    let mut buffer = [0; 64];
    loop {
        match within(&runtime, "the node closing", poll_fn(|cx| stream.poll_read(cx, &mut buffer))).await {
            Ok(0) | Err(_) => break,
            Ok(_) => {}
        }
    }
    let streams = node.metrics().await.expect("the node runs").core.streams;
    assert_eq!((streams.accepted, streams.frames_rejected, streams.failed), (1, 1, 1), "{streams:?}");
    shutdown_all(&[node]).await;
}
