use std::net::SocketAddr;

use super::size::{
    digest_entry_len, encoded_len, guaranteed_delta_room, record_len_of, varint_len,
    worst_case_key_section_len,
};
use super::*;
use crate::config::Config;
use crate::identity::{Fingerprint, NodeId};

fn addr(text: &str) -> SocketAddr {
    text.parse().unwrap()
}

fn hex(bytes: &[u8]) -> String {
    bytes.iter().map(|byte| format!("{byte:02x}")).collect()
}

fn syn() -> Packet {
    Packet {
        token: Some(Token(*b"tok-syn!")),
        echo: None,
        cluster_id: "prod".into(),
        message: Message::Syn {
            digest: Digest {
                range: RingRange::FULL,
                entries: vec![
                    DigestEntry {
                        fingerprint: Fingerprint(1),
                        heartbeat: 300,
                        last_gc_version: 0,
                        max_version: 5,
                    },
                    DigestEntry {
                        fingerprint: Fingerprint(u64::MAX),
                        heartbeat: 2,
                        last_gc_version: 1,
                        max_version: 200,
                    },
                ],
                unknown: vec![],
                sender: None,
                ..Digest::default()
            },
        },
    }
}

fn section(from_version: u64, max_version: u64, versions: &[u64]) -> NodeDelta {
    NodeDelta {
        node: NodeRef::Known(Fingerprint(7)),
        heartbeat: 1,
        reset: false,
        from_version,
        last_gc_version: 0,
        max_version,
        left: false,
        key_values: versions
            .iter()
            .map(|version| KeyValueUpdate {
                key: format!("k{version}").into(),
                version: *version,
                value: ValueUpdate::Set("v".into()),
            })
            .collect(),
    }
}

fn syn_ack() -> Packet {
    Packet {
        token: Some(Token(*b"tok-sack")),
        echo: Some(Token(*b"tok-syn!")),
        cluster_id: "prod".into(),
        message: Message::SynAck {
            digest: Digest {
                range: RingRange { start: Fingerprint(0x10), end: Fingerprint(0x20) },
                entries: vec![DigestEntry {
                    fingerprint: Fingerprint(0x11),
                    heartbeat: 1,
                    last_gc_version: 0,
                    max_version: 0,
                }],
                unknown: vec![Fingerprint(0x99)],
                sender: Some(DigestEntry {
                    fingerprint: Fingerprint(0x30),
                    heartbeat: 5,
                    last_gc_version: 0,
                    max_version: 2,
                }),
                ..Digest::default()
            },
            delta: Delta {
                nodes: vec![NodeDelta {
                    node: NodeRef::Full(NodeId::new("né", 3, addr("10.0.0.1:7000"))),
                    heartbeat: 9,
                    reset: true,
                    from_version: 0,
                    last_gc_version: 1,
                    max_version: 4,
                    left: false,
                    key_values: vec![
                        KeyValueUpdate { key: "a".into(), version: 2, value: ValueUpdate::Set("x".into()) },
                        KeyValueUpdate { key: "é".into(), version: 3, value: ValueUpdate::Deleted },
                        KeyValueUpdate {
                            key: "t".into(),
                            version: 4,
                            value: ValueUpdate::SetWithTtl("y".into()),
                        },
                    ],
                }],
                more: true,
            },
        },
    }
}

// Golden vectors: an accidental change of the wire format fails here. A deliberate
// one bumps PROTOCOL_VERSION and updates these.
#[test]
fn golden_syn() {
    // "CCT" 04 | token "tok-syn!" | no echo | "prod" | Syn | range 0..0 (whole ring) | 24 bytes of
    // entries (2 × 12) | no unknown | no sender entry (the range covers everything) | no rumors |
    // no hashes (start 0, no segment)
    assert_eq!(
        hex(&encode(&syn())),
        "43435404\
         01746f6b2d73796e21\
         00\
         0470726f6400\
         00000000000000000000000000000000\
         18\
         0100000000000000ac020005\
         ffffffffffffffff0201c801\
         00\
         00\
         00\
         000000000000000000"
    );
}

#[test]
fn golden_syn_ack() {
    // token "tok-sack" | echo "tok-syn!" | SynAck | range 0x10..0x20 | 11 bytes of entries | 1 unknown | sender entry | 1 section: Full("né", 3,
    // 10.0.0.1:7000), heartbeat 9, reset, from 0, gc 1, max 4, not left, 3 records | more. No rumors, no
    // hashes.
    assert_eq!(
        hex(&encode(&syn_ack())),
        concat!(
            "43435404",
            "01746f6b2d7361636b",
            "01746f6b2d73796e21",
            "0470726f6401",
            "10000000000000002000000000000000",
            "0b11000000000000000100",
            "00",
            "019900000000000000",
            "013000000000000000050002",
            "00",
            "000000000000000000",
            "01",
            "01036ec3a903000a000001d836",
            "0901000104",
            "00",
            "03016102000178",
            "02c3a9030201",
            "7404010179",
            "01",
        )
    );
}

#[test]
fn golden_ack_and_bad_cluster() {
    let ack = Packet {
        echo: Some(Token(*b"tok-sack")),
        ..Packet::new("c", Message::Ack { delta: Delta { nodes: vec![section(0, 1, &[1])], more: false } })
    };
    assert_eq!(
        hex(&encode(&ack)),
        "434354040001746f6b2d7361636b0163020100070000000000000001000000010001026b310100017600"
    );
    let bad = Packet::new("c", Message::BadCluster);
    assert_eq!(hex(&encode(&bad)), "434354040000016303");
}

#[test]
fn golden_syn_with_rumors_and_hashes() {
    // A Syn that lists nothing (range 0x10..0x11, naming no node) | sender entry 0x30 | one rumor:
    // 0x40, heartbeat 2, gc 0, max 7 | hashes from 0x10: 0x10..0x80 hash 0x0102030405060708, then
    // 0x80..0x10 (closing the ring) hash 0xff.
    let digest = Digest {
        range: RingRange { start: Fingerprint(0x10), end: Fingerprint(0x11) },
        sender: Some(DigestEntry {
            fingerprint: Fingerprint(0x30),
            heartbeat: 0,
            last_gc_version: 0,
            max_version: 1,
        }),
        rumors: vec![DigestEntry {
            fingerprint: Fingerprint(0x40),
            heartbeat: 2,
            last_gc_version: 0,
            max_version: 7,
        }],
        hashes: RangeHashes {
            start: Fingerprint(0x10),
            segments: vec![
                Segment { end: Fingerprint(0x80), hash: RangeHash(0x0102_0304_0506_0708) },
                Segment { end: Fingerprint(0x10), hash: RangeHash(0xff) },
            ],
        },
        ..Digest::default()
    };
    let packet = Packet::new("c", Message::Syn { digest });
    assert_eq!(
        hex(&encode(&packet)),
        concat!(
            "43435404",
            "0000",
            "0163",
            "00",
            "1000000000000000",
            "1100000000000000",
            "00",
            "00",
            "01",
            "3000000000000000000001",
            "0b",
            "4000000000000000020007",
            "1000000000000000",
            "02",
            "8000000000000000",
            "0807060504030201",
            "1000000000000000",
            "ff00000000000000",
        )
    );
    assert_eq!(decode(&encode(&packet)).unwrap(), packet);
}

#[test]
fn rumors_and_hashed_ranges_follow_their_rules() {
    let entry = |fingerprint: u64| DigestEntry {
        fingerprint: Fingerprint(fingerprint),
        heartbeat: 0,
        last_gc_version: 0,
        max_version: 1,
    };
    let check = |digest: Digest| decode(&encode(&Packet::new("c", Message::Syn { digest })));
    let listing = RingRange { start: Fingerprint(0x10), end: Fingerprint(0x20) };
    let with_rumors = |rumors: Vec<DigestEntry>| Digest { range: listing, rumors, ..Digest::default() };
    assert!(check(with_rumors(vec![entry(0x30), entry(0x40)])).is_ok());
    let rumor_order = Err(DatagramError::Invalid(Violation::RumorOrder));
    assert_eq!(check(with_rumors(vec![entry(0x40), entry(0x30)])), rumor_order, "decreasing");
    assert_eq!(check(with_rumors(vec![entry(0x30), entry(0x30)])), rumor_order, "repeated");
    assert_eq!(check(with_rumors(vec![entry(0x15)])), rumor_order, "inside the listing");
    let named = Digest { sender: Some(entry(0x30)), ..with_rumors(vec![entry(0x30)]) };
    assert_eq!(check(named), rumor_order, "the sender");
    let hashed = |start: u64, ends: &[u64]| Digest {
        range: listing,
        hashes: RangeHashes {
            start: Fingerprint(start),
            segments: ends.iter().map(|end| Segment { end: Fingerprint(*end), hash: RangeHash(1) }).collect(),
        },
        ..Digest::default()
    };
    assert!(check(hashed(0x80, &[0x90, 0x10, 0x80])).is_ok(), "round the ring, closing at the start");
    assert!(check(hashed(0x80, &[u64::MAX, 0, 0x7f])).is_ok());
    let order = Err(DatagramError::Invalid(Violation::RangeHashOrder));
    assert_eq!(check(hashed(0x80, &[0x90, 0x85])), order, "backwards");
    assert_eq!(check(hashed(0x80, &[0x90, 0x90])), order, "empty range");
    assert_eq!(check(hashed(0x80, &[0x80, 0x90])), order, "past the start");
    assert_eq!(check(hashed(0x80, &[0x10, 0x90])), order, "past the start, the long way");
}

#[test]
fn golden_ping_and_pong() {
    // token "tok-ping" | no echo | "c" | Ping | target 0x0123456789abcdef (8 bytes, little-endian)
    let ping = Packet {
        token: Some(Token(*b"tok-ping")),
        ..Packet::new("c", Message::Ping { target: Fingerprint(0x0123_4567_89ab_cdef) })
    };
    assert_eq!(hex(&encode(&ping)), "4343540401746f6b2d70696e6700016307efcdab8967452301");
    // no token | echo "tok-ping" | "c" | Pong
    let pong = Packet { echo: Some(Token(*b"tok-ping")), ..Packet::new("c", Message::Pong) };
    assert_eq!(hex(&encode(&pong)), "434354040001746f6b2d70696e67016308");
    assert_eq!(decode(&encode(&ping)).unwrap(), ping);
    assert_eq!(decode(&encode(&pong)).unwrap(), pong);
}

#[test]
fn every_message_round_trips() {
    for packet in [syn(), syn_ack()] {
        assert_eq!(decode(&encode(&packet)).unwrap(), packet);
    }
}

#[test]
fn digest_entry_len_matches_the_encoder() {
    for value in [0, 1, 127, 128, 16_383, 16_384, u32::MAX as u64, u64::MAX] {
        let entry = DigestEntry {
            fingerprint: Fingerprint(value),
            heartbeat: value,
            last_gc_version: 3,
            max_version: value / 2,
        };
        assert_eq!(digest_entry_len(&entry), encoded_len(&entry), "{value}");
        assert_eq!(varint_len(value), encoded_len(&value), "{value}");
    }
}

#[test]
fn record_len_matches_the_encoder() {
    let long = "k".repeat(200);
    for key in ["a", "service-01", long.as_str()] {
        for version in [0, 127, 128, u64::MAX] {
            for value in [
                ValueUpdate::Set("".into()),
                ValueUpdate::Set(long.as_str().into()),
                ValueUpdate::SetWithTtl("10.0.0.1:7000".into()),
                ValueUpdate::Deleted,
            ] {
                let value_len = match &value {
                    ValueUpdate::Set(value) | ValueUpdate::SetWithTtl(value) => Some(value.len()),
                    ValueUpdate::Deleted => None,
                };
                let record = KeyValueUpdate { key: key.into(), version, value };
                assert_eq!(record_len_of(key.len(), version, value_len), encoded_len(&record), "{record:?}");
                assert_eq!(postcard::to_stdvec(&record.as_out()), postcard::to_stdvec(&record));
            }
        }
    }
}

#[test]
fn a_steady_state_digest_entry_takes_12_to_14_bytes() {
    let entry = |heartbeat, max_version| {
        digest_entry_len(&DigestEntry {
            fingerprint: Fingerprint(u64::MAX),
            heartbeat,
            last_gc_version: 0,
            max_version,
        })
    };
    assert_eq!(entry(100, 20), 11);
    assert_eq!(entry(10_000, 100), 12);
    assert_eq!(entry(1_000_000, 1_000), 14);
}

#[test]
fn envelope_errors() {
    let good = encode(&syn());
    assert_eq!(decode(&[]), Err(DatagramError::TooShort));
    assert_eq!(decode(&good[..3]), Err(DatagramError::TooShort));
    let mut bad_magic = good.clone();
    bad_magic[0] = b'X';
    assert_eq!(decode(&bad_magic), Err(DatagramError::BadMagic));
    let mut bad_version = good.clone();
    bad_version[3] = 1;
    assert_eq!(decode(&bad_version), Err(DatagramError::UnsupportedVersion(1)), "the version before tokens");
    let mut trailing = good.clone();
    trailing.extend_from_slice(&[0, 0]);
    assert_eq!(decode(&trailing), Err(DatagramError::TrailingBytes(2)));
    let huge = vec![0; Config::MAX_DATAGRAM_SIZE + 1];
    assert!(matches!(decode(&huge), Err(DatagramError::TooLarge { .. })));
}

#[test]
fn every_truncation_is_an_error() {
    for packet in [syn(), syn_ack()] {
        let bytes = encode(&packet);
        for len in 0..bytes.len() {
            let error = decode(&bytes[..len]).unwrap_err();
            assert!(matches!(error, DatagramError::TooShort | DatagramError::Truncated), "{len}: {error:?}");
        }
    }
}

#[test]
fn a_length_pointing_past_the_end_allocates_nothing_for_it() {
    // A Syn whose entry count claims 2^63 entries, in a 30-byte datagram.
    let mut bytes = encode(&Packet {
        token: None,
        echo: None,
        cluster_id: "c".into(),
        message: Message::Syn {
            digest: Digest {
                range: RingRange::FULL,
                entries: vec![],
                unknown: vec![],
                sender: None,
                ..Digest::default()
            },
        },
    });
    bytes.truncate(bytes.len() - 2);
    bytes.extend_from_slice(&[0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0x7f]);
    assert_eq!(decode(&bytes), Err(DatagramError::Truncated));
    // The same for a string length.
    let mut bytes = MAGIC.to_vec();
    bytes.push(PROTOCOL_VERSION);
    bytes.extend_from_slice(&[0, 0, 0xff, 0xff, 0xff, 0xff, 0x0f, b'a']); // no token, no echo, then the id
    assert_eq!(decode(&bytes), Err(DatagramError::Truncated));
}

#[test]
fn invalid_utf8_is_refused() {
    let mut bytes = encode(&Packet::new("ab", Message::BadCluster));
    bytes[7] = 0xff; // no token, no echo, length 2, then the id
    assert_eq!(decode(&bytes), Err(DatagramError::InvalidUtf8));
}

#[test]
fn an_unknown_message_tag_is_malformed() {
    let mut bytes = encode(&Packet::new("c", Message::BadCluster));
    *bytes.last_mut().unwrap() = 9;
    assert_eq!(decode(&bytes), Err(DatagramError::Malformed));
}

fn ack_of(sections: Vec<NodeDelta>) -> Vec<u8> {
    encode(&Packet::new("c", Message::Ack { delta: Delta { nodes: sections, more: false } }))
}

#[test]
fn protocol_violations_are_refused() {
    let violation = |sections| match decode(&ack_of(sections)) {
        Err(DatagramError::Invalid(violation)) => violation,
        other => panic!("expected a violation, got {other:?}"),
    };
    assert_eq!(violation(vec![section(0, 5, &[3, 2])]), Violation::VersionsNotIncreasing);
    assert_eq!(violation(vec![section(0, 2, &[1, 3])]), Violation::VersionOutsideSection, "max below a key");
    assert_eq!(violation(vec![section(2, 5, &[2])]), Violation::VersionOutsideSection, "key at from_version");
    assert_eq!(violation(vec![section(6, 5, &[])]), Violation::InconsistentBounds);
    assert_eq!(violation(vec![section(0, 5, &[1]), section(1, 5, &[2])]), Violation::DuplicateNodeSection);
    let mut reset = section(1, 5, &[2]);
    reset.reset = true;
    assert_eq!(violation(vec![reset]), Violation::ResetNotFromZero);
    let mut repeated = section(0, 5, &[1, 2]);
    repeated.key_values[1].key = "k1".into();
    assert_eq!(violation(vec![repeated]), Violation::DuplicateKey);
    // A Full and a Known reference to the same node are duplicates too.
    let node = NodeId::new("n", 1, addr("127.0.0.1:1"));
    let mut full = section(0, 1, &[1]);
    full.node = NodeRef::Full(node.clone());
    let mut known = section(0, 1, &[1]);
    known.node = NodeRef::Known(node.fingerprint());
    assert_eq!(violation(vec![full, known]), Violation::DuplicateNodeSection);
}

#[test]
fn digests_out_of_ring_order_are_refused() {
    let digest = |range, fingerprints: &[u64]| {
        encode(&Packet {
            token: None,
            echo: None,
            cluster_id: "c".into(),
            message: Message::Syn {
                digest: Digest {
                    range,
                    entries: fingerprints
                        .iter()
                        .map(|fingerprint| DigestEntry {
                            fingerprint: Fingerprint(*fingerprint),
                            heartbeat: 1,
                            last_gc_version: 0,
                            max_version: 0,
                        })
                        .collect(),
                    unknown: vec![],
                    sender: None,
                    ..Digest::default()
                },
            },
        })
    };
    let order = Err(DatagramError::Invalid(Violation::DigestOrder));
    assert!(decode(&digest(RingRange::FULL, &[1, 2, 3])).is_ok());
    assert_eq!(decode(&digest(RingRange::FULL, &[1, 3, 2])), order);
    assert_eq!(decode(&digest(RingRange::FULL, &[1, 1])), order);
    let wrapping = RingRange { start: Fingerprint(u64::MAX - 1), end: Fingerprint(5) };
    assert!(decode(&digest(wrapping, &[u64::MAX - 1, u64::MAX, 0, 4])).is_ok());
    assert_eq!(decode(&digest(wrapping, &[u64::MAX, 6])), order, "outside the range");
    assert_eq!(decode(&digest(wrapping, &[0, u64::MAX])), order, "not in ring order");
}

#[test]
fn multi_byte_keys_and_values_round_trip() {
    let mut record = section(0, 1, &[1]);
    record.key_values[0].key = "éclair/🦀".into();
    record.key_values[0].value = ValueUpdate::Set("naïve ☃".into());
    let bytes = ack_of(vec![record.clone()]);
    let Message::Ack { delta } = decode(&bytes).unwrap().message else { panic!() };
    assert_eq!(delta.nodes, vec![record]);
}

#[test]
fn the_worst_case_key_section_fits_the_guaranteed_room() {
    // Half a datagram with the presets for 64 KB datagrams; a stream frame
    // with `lan()`'s 1,400 bytes, whose large values travel on streams.
    for config in [Config::default(), Config::local_test()] {
        let worst =
            worst_case_key_section_len(config.max_node_name_len, config.max_key_len, config.max_value_len);
        assert!(worst + 4 <= guaranteed_delta_room(config.max_datagram_size, 0, config.max_cluster_id_len));
    }
    let lan = Config::lan();
    let worst = worst_case_key_section_len(lan.max_node_name_len, lan.max_key_len, lan.max_value_len);
    assert!(worst + 4 <= records_budget(&"c".repeat(lan.max_cluster_id_len), SEAL_OVERHEAD));
}

#[test]
fn packed_digest_entries_refuse_short_entries_and_oversized_varints() {
    let digest_with_blob = |blob: &[u8]| {
        let mut bytes = MAGIC.to_vec();
        bytes.push(PROTOCOL_VERSION);
        bytes.extend_from_slice(&[0, 0, 1, b'c', 0]); // no token, no echo, cluster id "c", Syn
        bytes.extend_from_slice(&[0; 16]); // whole ring
        bytes.push(blob.len() as u8);
        bytes.extend_from_slice(blob);
        bytes.extend_from_slice(&[0, 0, 0]); // no unknown, no sender, no rumors
        bytes.extend_from_slice(&[0; 9]); // no hashes
        decode(&bytes)
    };
    let fingerprint = [7u8; 8];
    let entry = |varints: &[u8]| [&fingerprint[..], varints].concat();
    assert!(digest_with_blob(&entry(&[1, 0, 1])).is_ok());
    assert_eq!(digest_with_blob(&fingerprint[..5]), Err(DatagramError::Malformed), "short fingerprint");
    assert_eq!(digest_with_blob(&entry(&[1, 0])), Err(DatagramError::Malformed), "a varint missing");
    assert_eq!(digest_with_blob(&entry(&[0x80, 0, 1])), Err(DatagramError::Malformed), "unterminated varint");
    let too_wide = [0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0x02, 0, 1];
    assert_eq!(digest_with_blob(&entry(&too_wide)), Err(DatagramError::Malformed), "more than 64 bits");
    // 64 bits decode, but a counter of 2^62 or more breaks a rule.
    let widest = [0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0x01, 0, 1];
    assert_eq!(digest_with_blob(&entry(&widest)), Err(DatagramError::Invalid(Violation::ImplausibleCounter)));
    let largest = [0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0x3f, 0, 1];
    let Ok(Packet { message: Message::Syn { digest }, .. }) = digest_with_blob(&entry(&largest)) else {
        panic!()
    };
    assert_eq!(digest.entries[0].heartbeat, MAX_COUNTER - 1);
}

#[test]
fn a_whole_ring_range_must_start_at_zero() {
    // Found by the stream_frames fuzzer: a whole ring "starting" elsewhere
    // ordered its entries from there while the node walks its own from 0, so
    // a pulled node kept sending the same nodes as unknown, frame after frame.
    let digest = Digest {
        range: RingRange { start: Fingerprint(42), end: Fingerprint(42) },
        entries: Vec::new(),
        unknown: Vec::new(),
        sender: None,
        ..Digest::default()
    };
    let syn = encode(&Packet::new("c", Message::Syn { digest }));
    assert_eq!(decode(&syn), Err(DatagramError::Invalid(Violation::NonCanonicalRange)));
}

/// `delta` written through the sender's mirror types, its records borrowed.
fn delta_out(delta: &Delta) -> DeltaOut<Vec<NodeDeltaOut<'_, Vec<KeyValueOut<'_>>>>> {
    let nodes = delta
        .nodes
        .iter()
        .map(|section| NodeDeltaOut {
            node: match &section.node {
                NodeRef::Known(fingerprint) => NodeRefOut::Known(*fingerprint),
                NodeRef::Full(node_id) => NodeRefOut::Full(node_id),
            },
            heartbeat: section.heartbeat,
            reset: section.reset,
            from_version: section.from_version,
            last_gc_version: section.last_gc_version,
            max_version: section.max_version,
            left: section.left,
            key_values: section.key_values.iter().map(KeyValueUpdate::as_out).collect(),
        })
        .collect();
    DeltaOut { nodes, more: delta.more }
}

/// What a sender writes from borrowed parts (`PacketOut`, `DeltaMessage` and
/// the delta's mirrors) is byte for byte the `Packet` it stands for: a
/// `SynAck` (the golden one: a full identity, a reset, every kind of value)
/// and an `Ack` (known nodes, a farewell, versions past a byte).
#[test]
fn answers_written_from_borrowed_parts_encode_as_their_packets() {
    let golden = syn_ack();
    let Message::SynAck { digest, delta } = &golden.message else { unreachable!() };
    let written = PacketOut {
        token: golden.token,
        echo: golden.echo,
        cluster_id: &golden.cluster_id,
        message: DeltaMessage::SynAck { digest, delta: delta_out(delta) },
    };
    assert_eq!(encode_body(&written), encode(&golden));

    let mut farewell = section(200, 300, &[250, 300]);
    farewell.left = true;
    let delta = Delta { nodes: vec![section(0, 2, &[1, 2]), farewell], more: false };
    let ack = Packet {
        token: None,
        echo: Some(Token(*b"tok-sack")),
        cluster_id: "prod".into(),
        message: Message::Ack { delta: delta.clone() },
    };
    let written = PacketOut {
        token: None,
        echo: Some(Token(*b"tok-sack")),
        cluster_id: "prod",
        message: DeltaMessage::Ack { delta: delta_out(&delta) },
    };
    assert_eq!(encode_body(&written), encode(&ack));
    assert_eq!(postcard::to_stdvec(&delta_out(&delta)), postcard::to_stdvec(&delta));
}
