//! A node that knows a cluster runs one catch-up stream, pulled from it (it
//! accepted the stream) or pulling (a validated peer's `Ack` said it had
//! more), and receives arbitrary bytes on it, in arbitrary pieces: raw bytes,
//! frames around an arbitrary packet, and `Records` frames around an
//! arbitrary (deflated) delta encoding.
//!
//! It never panics; every frame it sends is within the frame limit, and all
//! it sends on the stream within `Chitchat::stream_send_cap` (about twice
//! what it holds, whatever the `Pull` says); once it refuses the stream's
//! bytes it has forgotten the stream (`Finished`, not open); what it holds
//! stays within its budgets; and it goes on gossiping.
//! CPU per input is bounded by libFuzzer's `-timeout` (`fuzz/run.sh`).

#![no_main]

use std::time::Duration;

use chitchat_core::testing::datagrams;
use chitchat_core::wire::{self, Delta, Message, Packet};
use chitchat_core::{StreamSend, Timestamp};
use chitchat_fuzz::cluster::{self, CLUSTER, READY_AT};
use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    let Some((&selector, mut rest)) = data.split_first() else { return };
    let mut node = cluster::known_node();
    let peer = cluster::addr(10_000);
    let mut now = READY_AT;
    let id = if selector & 1 == 0 {
        node.accept_stream(now, peer).expect("room for a stream")
    } else {
        let more = Message::Ack { delta: Delta { nodes: Vec::new(), more: true } };
        node.handle_datagram(now, peer, &datagrams::datagram(CLUSTER, more))
            .expect("an Ack from a validated peer");
        node.poll_stream_open().expect("a pull from the peer that has more").id
    };
    let cap = node.stream_send_cap();
    let mut sent = 0;
    while let [op, len, tail @ ..] = rest {
        let (chunk, tail) = tail.split_at(usize::from(*len).min(tail.len()));
        rest = tail;
        now += Duration::from_millis(u64::from(op >> 4));
        let bytes = match op & 3 {
            0 => chunk.to_vec(),
            1 => {
                let mut envelope = wire::MAGIC.to_vec();
                envelope.push(wire::PROTOCOL_VERSION);
                envelope.extend_from_slice(chunk);
                wire::frame(&envelope)
            }
            2 => {
                let records = Message::Records { records: wire::compress(chunk) };
                wire::frame(&wire::encode(&Packet::new(CLUSTER, records)))
            }
            _ => wire::frame(&wire::encode(&Packet::new(CLUSTER, Message::Done))),
        };
        let refused = node.handle_stream_data(now, id, &bytes).is_err();
        sent += drain(&mut node, now, id);
        assert!(sent <= cap, "{sent} bytes sent on one stream, more than {cap}");
        if refused {
            assert!(!node.is_stream_open(id));
            assert_eq!(node.poll_stream_send(now, id), StreamSend::Finished);
            break;
        }
    }
    let config = node.config().clone();
    assert!(node.remote_state_bytes() <= config.max_remote_state_bytes);
    assert!(node.node_states().count() <= config.max_nodes);
    node.handle_timeout(now + Duration::from_millis(200));
    while node.poll_transmit().is_some() {}
    // The stream ends by the deadline whatever it was waiting for.
    node.handle_timeout(now + config.stream_timeout + Duration::from_secs(1));
    assert!(!node.is_stream_open(id));
});

/// Takes what the node sends on the stream, every frame within the limit;
/// returns how many bytes.
fn drain(node: &mut chitchat_core::Chitchat, now: Timestamp, id: chitchat_core::StreamId) -> usize {
    let mut sent = 0;
    loop {
        match node.poll_stream_send(now, id) {
            StreamSend::Bytes(bytes) => {
                assert!(bytes.len() <= wire::FRAME_HEADER_LEN + wire::MAX_FRAME_LEN);
                sent += bytes.len();
            }
            StreamSend::Idle => return sent,
            StreamSend::Finished => {
                assert!(!node.is_stream_open(id));
                return sent;
            }
        }
    }
}
