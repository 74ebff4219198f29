//! Structure-aware: a sequence of syntactically valid but semantically hostile
//! messages (built with `arbitrary` over mirrors of the message types: known
//! fingerprints, other incarnations, the receiver's own identity, versions at
//! the edges, multi-byte and oversized strings, unusual addresses) reaches a
//! node that knows a cluster, from chosen senders at chosen times. Every
//! encoding round-trips; every refusal changes nothing; every acceptance keeps
//! the invariants; gossip rounds in between keep them too.
//!
//! And what each message makes the node send (`Watch::feed`): nothing if it
//! was refused; answers to the sender only; nothing for an `Ack` or a
//! `BadCluster`; an `Ack` to an unsolicited `SynAck` no larger than it; per
//! address that is not validated, answers totalling at most three times what
//! it sent; all answers to such addresses within the budget of bytes per
//! second (time only moves forward here). Answers to
//! a `SynAck` that answers the node's own `Syn` (sent in a gossip round, to a
//! peer it chose) are not limited, nor are those rounds.
//!
//! CPU per input: `fuzz/run.sh` runs this target with libFuzzer's `-timeout`
//! (a node built and at most 32 messages); no deterministic proxy fits.

#![no_main]

use std::time::Duration;

use arbitrary::Arbitrary;
use chitchat_core::wire;
use chitchat_fuzz::cluster::{self, READY_AT};
use chitchat_fuzz::hostile::{ArbPacket, Context, check_round_trip};
use chitchat_fuzz::watch::Watch;
use libfuzzer_sys::fuzz_target;

#[derive(Arbitrary, Debug)]
struct Step {
    packet: ArbPacket,
    /// Who sends it: a peer, the receiver's own address, or `[::]:0`.
    from: u8,
    /// Milliseconds to wait before it arrives (a gossip round runs if due).
    wait: u16,
}

fuzz_target!(|steps: Vec<Step>| {
    let mut node = cluster::known_node();
    let mut watch = Watch::new(&node);
    let mut cx = Context {
        cluster_id: cluster::CLUSTER.into(),
        self_id: cluster::self_id(),
        known: cluster::peer_ids(),
        tokens: Vec::new(),
    };
    let mut now = READY_AT;
    for step in steps.iter().take(32) {
        cx.tokens = watch.tokens().to_vec();
        let packet = step.packet.get(&cx);
        let bytes = wire::encode(&packet);
        check_round_trip(&packet, &bytes);
        let from = match step.from % 3 {
            0 => cx.known[usize::from(step.from) % cx.known.len()].gossip_addr(),
            1 => cx.self_id.gossip_addr(),
            _ => "[::]:0".parse().expect("an address"),
        };
        now += Duration::from_millis(u64::from(step.wait % 2_000));
        node.handle_timeout(now);
        watch.settle(&mut node);
        // On `Ok`, the outputs are drained and the invariants checked.
        let _ = watch.feed(&mut node, now, from, &bytes);
    }
});
