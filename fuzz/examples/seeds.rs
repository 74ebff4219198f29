//! Writes the committed seed corpus into `fuzz/seeds/<target>/`:
//! `cargo run --manifest-path fuzz/Cargo.toml --example seeds` (no nightly needed).
//! The structure-aware targets (`hostile_messages`, `protocol_ops`,
//! `sealed_datagram`) read their seeds through `arbitrary`, so theirs are plain
//! byte patterns.

use std::path::Path;

use chitchat_core::wire::{Delta, Digest, DigestEntry, Message, NodeDelta, NodeRef, RingRange};
use chitchat_core::wire;
use chitchat_fuzz::cluster::{self, datagram};

fn main() -> std::io::Result<()> {
    let root = Path::new(env!("CARGO_MANIFEST_DIR")).join("seeds");
    let peers = cluster::peer_ids();
    let full = Digest { range: RingRange::FULL, entries: Vec::new(), unknown: Vec::new(), sender: None };
    let mut entries: Vec<DigestEntry> = std::iter::once(cluster::self_id())
        .chain(peers.iter().cloned())
        .map(|id| DigestEntry {
            fingerprint: id.fingerprint(),
            heartbeat: 40,
            last_gc_version: 0,
            max_version: 2,
        })
        .collect();
    entries.sort_by_key(|entry| entry.fingerprint);
    let known = |i: usize, from: u64, max: u64| NodeDelta {
        node: NodeRef::Known(peers[i].fingerprint()),
        heartbeat: 99,
        reset: false,
        from_version: from,
        last_gc_version: 0,
        max_version: max,
        left: false,
        key_values: vec![chitchat_core::wire::KeyValueUpdate {
            key: "é-new".into(),
            version: max,
            value: chitchat_core::wire::ValueUpdate::Set("🦀".into()),
        }],
    };
    let fresh = NodeDelta {
        node: NodeRef::Full(chitchat_core::NodeId::new("fresh", 1, "[::1]:0".parse().expect("an address"))),
        heartbeat: 1,
        reset: false,
        from_version: 0,
        last_gc_version: 0,
        max_version: 0,
        left: false,
        key_values: Vec::new(),
    };
    let datagrams: Vec<(&str, Vec<u8>)> = vec![
        ("syn-empty", datagram(Message::Syn { digest: full.clone() })),
        ("syn-full", datagram(Message::Syn { digest: Digest { entries: entries.clone(), ..full.clone() } })),
        (
            "synack",
            datagram(Message::SynAck {
                digest: Digest { entries, ..full.clone() },
                delta: Delta { nodes: vec![known(3, 3, 4)] },
            }),
        ),
        (
            "ack-known",
            datagram(Message::Ack { delta: Delta { nodes: vec![known(0, 3, 7), known(1, 2, 5)] } }),
        ),
        ("ack-fresh", datagram(Message::Ack { delta: Delta { nodes: vec![fresh] } })),
        ("bad-cluster", datagram(Message::BadCluster)),
        (
            "other-cluster-syn",
            wire::encode(&chitchat_core::wire::Packet {
                cluster_id: "other".into(),
                message: Message::Syn { digest: full },
            }),
        ),
    ];
    for (name, bytes) in &datagrams {
        write(&root.join("decode"), name, bytes)?;
        for selector in [0u8, 1, 3] {
            let mut with_sender = vec![selector];
            with_sender.extend_from_slice(bytes);
            write(&root.join("handle_datagram"), &format!("{name}-{selector}"), &with_sender)?;
        }
    }
    for target in ["hostile_messages", "protocol_ops", "sealed_datagram"] {
        for (i, pattern) in [[0u8; 64], [1u8; 64], [7u8; 64], [0xffu8; 64]].iter().enumerate() {
            let mut bytes = pattern.to_vec();
            bytes.extend((0..=255u8).map(|b| b.wrapping_mul(37).wrapping_add(i as u8)));
            write(&root.join(target), &format!("pattern-{i}"), &bytes)?;
        }
    }
    Ok(())
}

fn write(dir: &Path, name: &str, bytes: &[u8]) -> std::io::Result<()> {
    std::fs::create_dir_all(dir)?;
    std::fs::write(dir.join(name), bytes)
}
