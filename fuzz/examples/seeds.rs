//! Writes the committed seed corpus into `fuzz/seeds/<target>/`:
//! `cargo run --manifest-path fuzz/Cargo.toml --example seeds` (no nightly needed).
//! The structure-aware targets (`hostile_messages`, `protocol_ops`,
//! `sealed_datagram`) read their seeds through `arbitrary`, so theirs are plain
//! byte patterns.

use std::path::Path;

use chitchat_core::testing::datagrams::{ack, datagram, empty_digest, full, known, syn};
use chitchat_core::wire::{
    Delta, Digest, DigestEntry, Message, NodeDelta, Packet, RangeHash, RangeHashes, RingRange, Segment, Token,
};
use chitchat_fuzz::cluster::{self, CLUSTER};

fn main() -> std::io::Result<()> {
    let root = Path::new(env!("CARGO_MANIFEST_DIR")).join("seeds");
    let peers = cluster::peer_ids();
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
    let news = |i: usize, from: u64, max: u64| NodeDelta {
        heartbeat: 99,
        ..known(&peers[i], from, max, &[("é-new", "🦀", max)])
    };
    let fresh = full(chitchat_core::NodeId::new("fresh", 1, "[::1]:0".parse().expect("an address")), 1, &[]);
    // A Syn that lists nothing: rumors and hashed ranges round the ring.
    let mut rumors: Vec<DigestEntry> = entries.iter().skip(1).step_by(2).copied().collect();
    rumors.sort_by_key(|entry| entry.fingerprint);
    let lone = RingRange {
        start: chitchat_core::Fingerprint::from_u64(1),
        end: chitchat_core::Fingerprint::from_u64(2),
    };
    let hashed = Digest {
        range: lone,
        sender: None,
        rumors,
        hashes: RangeHashes {
            start: entries[0].fingerprint,
            segments: vec![
                Segment { end: entries[entries.len() / 2].fingerprint, hash: RangeHash(7) },
                Segment { end: entries[0].fingerprint, hash: RangeHash(0) },
            ],
        },
        ..empty_digest()
    };
    let ping = |target| {
        chitchat_core::wire::encode(&Packet {
            token: Some(Token(*b"ping-tok")),
            ..Packet::new(CLUSTER, Message::Ping { target })
        })
    };
    let datagrams: Vec<(&str, Vec<u8>)> = vec![
        ("syn-empty", syn(CLUSTER, empty_digest())),
        ("syn-full", syn(CLUSTER, Digest { entries: entries.clone(), ..empty_digest() })),
        (
            "synack",
            datagram(
                CLUSTER,
                Message::SynAck {
                    digest: Digest { entries, ..empty_digest() },
                    delta: Delta { nodes: vec![news(3, 3, 4)], more: true },
                },
            ),
        ),
        ("ack-known", ack(CLUSTER, vec![news(0, 3, 7), news(1, 2, 5)])),
        ("ack-fresh", ack(CLUSTER, vec![fresh])),
        ("bad-cluster", datagram(CLUSTER, Message::BadCluster)),
        ("syn-hashed", syn(CLUSTER, hashed.clone())),
        ("ping", ping(peers[0].fingerprint())),
        ("ping-self", ping(cluster::self_id().fingerprint())),
        (
            "pong",
            chitchat_core::wire::encode(&Packet {
                echo: Some(Token(*b"pong-tok")),
                ..Packet::new(CLUSTER, Message::Pong)
            }),
        ),
        ("other-cluster-syn", syn("other", empty_digest())),
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
