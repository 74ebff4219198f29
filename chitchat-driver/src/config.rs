//! What a node is started with.

use std::fmt;
use std::net::SocketAddr;
use std::sync::Arc;
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use chitchat_core::{Config, EncryptionMode, Keyring, NodeState};

/// A ready predicate that a [`NodeConfig`] can be cloned with.
type SharedReadyPredicate = Arc<dyn Fn(&NodeState) -> bool + Send + Sync>;

/// Everything needed to start a node: the protocol settings and the node's
/// identity, address, seeds and initial keys.
#[derive(Clone)]
pub struct NodeConfig {
    /// The protocol settings, validated at start.
    ///
    /// An `rng_seed` of 0 (the default) is replaced at start by a random seed, so
    /// that nodes started together do not pick their peers in lockstep; any other
    /// value is kept, for runs that must replay.
    pub chitchat: Config,
    /// The node's name, unique in the cluster.
    pub name: String,
    /// The node's generation; it must grow from one start of the node to the
    /// next. `None` means milliseconds since the Unix epoch at start.
    pub generation: Option<u64>,
    /// Where to bind the UDP socket. Port 0 picks a free port; the bound address
    /// is reported by [`crate::ChitchatHandle::local_addr`].
    pub listen_addr: SocketAddr,
    /// The address peers should gossip to, if not the bound one (behind NAT, or
    /// when listening on an unspecified address such as `0.0.0.0`).
    pub advertise_addr: Option<SocketAddr>,
    /// Seed nodes as `host:port` (or `ip:port`). Host names are resolved by DNS at
    /// start and again every [`NodeConfig::seed_refresh_interval`]; a failed
    /// resolution is logged and retried, and keeps the seed's previous addresses.
    pub seeds: Vec<String>,
    /// How often seed host names are resolved again (default: 60 s).
    pub seed_refresh_interval: Duration,
    /// The node's keys at start.
    pub initial_key_values: Vec<(String, String)>,
    /// How many items a subscription buffers for a slow subscriber before the
    /// oldest are dropped and the subscriber is told it lagged (default: 1,024).
    pub subscription_capacity: usize,
    /// The cluster keys, if datagrams are to be authenticated and encrypted (see
    /// [`chitchat_core::crypto`]). A fresh nonce salt is drawn from the operating
    /// system at each start.
    pub keyring: Option<Keyring>,
    /// What the node sends and accepts; a mode other than `Off` needs a keyring.
    /// [`NodeConfig::with_keyring`] sets it to `Required`.
    pub encryption_mode: EncryptionMode,
    /// Which live nodes are ready (see [`NodeConfig::with_ready_predicate`]).
    pub(crate) ready_predicate: Option<SharedReadyPredicate>,
}

impl fmt::Debug for NodeConfig {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("NodeConfig")
            .field("chitchat", &self.chitchat)
            .field("name", &self.name)
            .field("generation", &self.generation)
            .field("listen_addr", &self.listen_addr)
            .field("advertise_addr", &self.advertise_addr)
            .field("seeds", &self.seeds)
            .field("seed_refresh_interval", &self.seed_refresh_interval)
            .field("initial_key_values", &self.initial_key_values)
            .field("subscription_capacity", &self.subscription_capacity)
            .field("keyring", &self.keyring)
            .field("encryption_mode", &self.encryption_mode)
            .field("ready_predicate", &self.ready_predicate.as_ref().map(|_| "Fn(&NodeState) -> bool"))
            .finish()
    }
}

impl NodeConfig {
    /// The default seed re-resolution interval.
    pub const DEFAULT_SEED_REFRESH_INTERVAL: Duration = Duration::from_secs(60);
    /// The default subscription buffer.
    pub const DEFAULT_SUBSCRIPTION_CAPACITY: usize = 1_024;

    /// A node named `name` listening on `listen_addr`, with the given protocol
    /// settings, no seeds and no keys.
    pub fn new(name: impl Into<String>, listen_addr: SocketAddr, chitchat: Config) -> Self {
        NodeConfig {
            chitchat,
            name: name.into(),
            generation: None,
            listen_addr,
            advertise_addr: None,
            seeds: Vec::new(),
            seed_refresh_interval: Self::DEFAULT_SEED_REFRESH_INTERVAL,
            initial_key_values: Vec::new(),
            subscription_capacity: Self::DEFAULT_SUBSCRIPTION_CAPACITY,
            keyring: None,
            encryption_mode: EncryptionMode::Off,
            ready_predicate: None,
        }
    }

    /// Adds a seed (`host:port`).
    pub fn with_seed(mut self, seed: impl Into<String>) -> Self {
        self.seeds.push(seed.into());
        self
    }

    /// Adds an initial key-value.
    pub fn with_key_value(mut self, key: impl Into<String>, value: impl Into<String>) -> Self {
        self.initial_key_values.push((key.into(), value.into()));
        self
    }

    /// Authenticates and encrypts every datagram with these keys, and refuses
    /// plaintext (`EncryptionMode::Required`; change
    /// [`NodeConfig::encryption_mode`] to migrate a plaintext cluster).
    pub fn with_keyring(mut self, keyring: Keyring) -> Self {
        self.keyring = Some(keyring);
        self.encryption_mode = EncryptionMode::Required;
        self
    }

    /// Decides which live nodes are ready: those whose state passes `predicate`
    /// (by default every live node is). It is judged again whenever a node's
    /// state or status changes; [`crate::ChitchatHandle::watch_ready_nodes`],
    /// [`crate::ChitchatHandle::ready_nodes`] and
    /// [`crate::ChitchatHandle::subscribe_ready_changes`] follow it. Keep it
    /// cheap: it runs in the node's task. For example, to drain a node, set a key
    /// it checks:
    ///
    /// ```
    /// # use chitchat_driver::NodeConfig;
    /// # let config = NodeConfig::new("n", "127.0.0.1:0".parse().unwrap(), chitchat_core::Config::lan());
    /// let config = config.with_ready_predicate(|state| state.get("draining") != Some("true"));
    /// ```
    pub fn with_ready_predicate(
        mut self,
        predicate: impl Fn(&NodeState) -> bool + Send + Sync + 'static,
    ) -> Self {
        self.ready_predicate = Some(Arc::new(predicate));
        self
    }

    /// Sets the generation.
    pub fn with_generation(mut self, generation: u64) -> Self {
        self.generation = Some(generation);
        self
    }
}

/// Milliseconds since the Unix epoch: a generation that grows from one start of a
/// node to the next.
pub fn generation_from_clock() -> u64 {
    SystemTime::now().duration_since(UNIX_EPOCH).map_or(0, |elapsed| elapsed.as_millis() as u64)
}
