use chitchat_core::testing::datagrams::{ack, full, known};
use chitchat_core::wire::{KeyValueUpdate, NodeDelta, NodeRef, ValueUpdate};
use chitchat_core::{Chitchat, Config, NodeId, Timestamp};
use std::net::SocketAddr;
use std::time::Instant;

fn main() {
    let addr = |p: u16| SocketAddr::from(([127, 0, 0, 1], p));
    let config = Config { cluster_id: "c".into(), ..Config::default() };
    let mut node =
        Chitchat::new(config, NodeId::new("victim", 1, addr(7000)), [("k", "v")], Timestamp::ZERO).unwrap();
    let x = NodeId::new("x", 1, addr(7001));
    let recs = |range: std::ops::RangeInclusive<u64>, prefix: &str| -> Vec<KeyValueUpdate> {
        range
            .map(|v| KeyValueUpdate { key: format!("{prefix}{v}"), version: v, value: ValueUpdate::Deleted })
            .collect()
    };
    let mut first = full(x.clone(), 1, &[]);
    first.max_version = 13_000;
    first.key_values = recs(10_001..=13_000, "b");
    node.handle_datagram(Timestamp::ZERO, addr(7001), &ack("c", vec![first])).unwrap();

    println!("held {}", node.node_state(&x).unwrap().num_records());
    let attack = NodeDelta {
        node: NodeRef::Known(x.fingerprint()),
        heartbeat: 3,
        reset: true,
        from_version: 0,
        last_gc_version: 7_000,
        max_version: 7_000,
        left: false,
        key_values: recs(1..=7_000, ""),
    };
    let bytes = ack("c", vec![attack]);
    println!("attack {} bytes", bytes.len());
    let start = Instant::now();
    let r = node.handle_datagram(Timestamp::ZERO, addr(7002), &bytes);
    println!("{r:?} {:?} held {}", start.elapsed(), node.node_state(&x).unwrap().num_records());
    let mut inorder = known(&x, 13_000, 20_000, &[]);
    inorder.key_values = recs(13_001..=20_000, "");
    let bytes = ack("c", vec![inorder]);
    let y = NodeId::new("y", 1, addr(7003));
    let mut node2 = Chitchat::new(
        Config { cluster_id: "c".into(), ..Config::default() },
        NodeId::new("v2", 1, addr(7004)),
        [("k", "v")],
        Timestamp::ZERO,
    )
    .unwrap();
    let mut intro = full(y.clone(), 1, &[]);
    intro.max_version = 7_000;
    intro.key_values = recs(1..=7_000, "");
    let bytes2 = ack("c", vec![intro]);
    let start = Instant::now();
    let r = node2.handle_datagram(Timestamp::ZERO, addr(7003), &bytes2);
    println!("in order, fresh node: {r:?} {:?} ({} bytes)", start.elapsed(), bytes2.len());
    let start = Instant::now();
    let r = node.handle_datagram(Timestamp::ZERO, addr(7001), &bytes);
    println!("in order, after: {r:?} {:?}", start.elapsed());
}
#[allow(dead_code)]
fn unused() {}
