//! Arbitrary bytes into the wire decoder: it never panics, and whatever decodes
//! re-encodes to a datagram (no longer than the original) that decodes to the
//! same packet.

#![no_main]

use chitchat_core::wire;
use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    let Ok(packet) = wire::decode(data) else { return };
    let bytes = wire::encode(&packet);
    assert!(
        bytes.len() <= data.len(),
        "re-encoding grew the datagram from {} to {}",
        data.len(),
        bytes.len()
    );
    let again = wire::decode(&bytes).expect("a re-encoded packet decodes");
    assert_eq!(again, packet, "a packet changed through re-encoding");
    assert_eq!(wire::encode(&again), bytes, "encoding is not canonical");
});
