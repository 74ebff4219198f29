use chitchat_core::testing::datagrams::{ack, datagram, empty_digest, full, syn};
use chitchat_core::wire::{Delta, Message};
use chitchat_core::{Chitchat, Config, NodeId, Timestamp};
use std::net::SocketAddr;
fn addr(p: u16) -> SocketAddr {
    SocketAddr::from(([127, 0, 0, 1], p))
}
fn main() {
    for (count, keys) in [(30u16, 1usize), (1000, 20)] {
        let config = Config { cluster_id: "c".into(), ..Config::default() };
        let mut node =
            Chitchat::new(config, NodeId::new("victim", 1, addr(7000)), [("own", "key")], Timestamp::ZERO)
                .unwrap();
        for i in 0..count {
            let recs: Vec<(String, String, u64)> =
                (0..keys).map(|k| (format!("key-{k:02}"), format!("value-{i}-{k}"), k as u64 + 1)).collect();
            let recs: Vec<(&str, &str, u64)> =
                recs.iter().map(|(k, v, n)| (k.as_str(), v.as_str(), *n)).collect();
            let id = NodeId::new(format!("node-{i:04}"), 1, addr(10_000 + i));
            node.handle_datagram(Timestamp::ZERO, id.gossip_addr, &ack("c", vec![full(id, 100, &recs)]))
                .unwrap();
        }
        while node.poll_event().is_some() {}
        while node.poll_transmit().is_some() {}
        let s = syn("c", empty_digest());
        node.handle_datagram(Timestamp::ZERO, addr(40000), &s).unwrap();
        let out: usize = std::iter::from_fn(|| node.poll_transmit()).map(|t| t.bytes.len()).sum();
        let sa = datagram("c", Message::SynAck { digest: empty_digest(), delta: Delta::default() });
        node.handle_datagram(Timestamp::ZERO, addr(40001), &sa).unwrap();
        let out2: usize = std::iter::from_fn(|| node.poll_transmit()).map(|t| t.bytes.len()).sum();
        println!(
            "{count} nodes x {keys} keys: Syn {} B -> {out} B (x{:.2}); unsolicited SynAck {} B -> {out2} B (x{:.2})",
            s.len(),
            out as f64 / s.len() as f64,
            sa.len(),
            out2 as f64 / sa.len() as f64
        );
    }
}
