//! A node that already knows a cluster (30 peers with keys; live, dead and left
//! ones; outputs queued) receives arbitrary bytes. It never panics; on `Err` its
//! state, queued outputs, timers, failure detector and counters (but the
//! rejection's) are exactly as before; on `Ok` the invariants hold, and so they
//! do after the next gossip round.
//!
//! The first byte picks the sender (a peer, the node's own address, a stranger)
//! and when the datagram arrives; the rest is the datagram.
//!
//! What the datagram makes the node send is checked by `Watch::feed`: nothing
//! if it was refused (the datagrams queued before it still leave, first);
//! answers go to the sender only; an `Ack` to an unsolicited `SynAck` is no
//! larger than it; an address that is not validated is sent at most three
//! times what it sent; all answers to such addresses stay within the budget
//! of bytes per second.
//!
//! CPU per datagram: no deterministic proxy fits (the core counts no work), so
//! `fuzz/run.sh` runs this target with libFuzzer's `-timeout` (seconds per
//! input, a node built and one datagram handled): an input that takes longer
//! is a crash.

#![no_main]

use std::sync::OnceLock;
use std::time::Duration;

use chitchat_core::DatagramError;
use chitchat_core::testing::Probe;
use chitchat_fuzz::cluster::{self, READY_AT};
use chitchat_fuzz::watch::Watch;
use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    let Some((&selector, bytes)) = data.split_first() else { return };
    let from = match selector % 4 {
        0 => cluster::addr(10_000 + u16::from(selector / 4) % cluster::PEERS),
        1 => cluster::self_id().gossip_addr(),
        2 => "[2001:db8::1]:0".parse().expect("an address"),
        _ => cluster::addr(20_000 + u16::from(selector)),
    };
    let now = READY_AT + Duration::from_millis(u64::from(selector / 64) * 150);
    let mut node = cluster::known_node();
    // The known node is deterministic: check it once against itself.
    static SAME: OnceLock<()> = OnceLock::new();
    SAME.get_or_init(|| {
        cluster::assert_known_node_shape(&node);
        assert_eq!(Probe::of(&node, now), Probe::of(&cluster::known_node(), now));
    });
    let mut watch = Watch::new(&node);
    match watch.feed(&mut node, now, from, bytes) {
        Ok(()) | Err(DatagramError::Invalid(_)) => {}
        Err(_) => return,
    }
    node.handle_timeout(now + Duration::from_millis(200));
    watch.settle(&mut node);
});
