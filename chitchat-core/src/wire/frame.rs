//! Frames: how stream messages travel on a byte stream (a TCP connection).
//!
//! ```text
//! offset  size  field
//! 0       4     length of what follows, big-endian: 4 ..= MAX_FRAME_LEN
//! 4       ..    a datagram's envelope and packet (plain or sealed, as in
//!               `wire`), whose message is `Pull`, `Records` or `Done`
//! ```
//!
//! A `Records` message carries a [`Delta`] encoded as in datagrams, then
//! compressed with raw deflate (RFC 1951). Its declared length is checked
//! against [`MAX_FRAME_LEN`] and against deflate's largest expansion of the
//! bytes actually received before the output is allocated, and the deflate
//! stream must produce exactly that many bytes.

use miniz_oxide::inflate::TINFLStatus;
use miniz_oxide::inflate::core::{DecompressorOxide, decompress, inflate_flags};

use crate::error::{DatagramError, Violation};
use crate::wire::message::{Compressed, Delta, Packet};
use crate::wire::{HEADER_LEN, check_delta, decode_limited, take_whole};

/// Bytes of a frame's length prefix.
pub const FRAME_HEADER_LEN: usize = 4;
/// The largest frame body (envelope and packet), and the largest delta a
/// `Records` frame inflates to: 1 MiB.
pub const MAX_FRAME_LEN: usize = 1 << 20;
/// Deflate's largest ratio of output to input (a length-258 match costs at
/// least two bits): no honest stream inflates further.
const MAX_INFLATE_RATIO: usize = 1_032;
/// The deflate level frames are compressed at: the fastest, which already
/// takes most of what deflate can take from keys and values (see BENCHMARKS.md).
const DEFLATE_LEVEL: u8 = 1;

/// Room a `Records` frame leaves its delta before compression: the frame
/// limit, less the envelope, the packet's fields and deflate's worst case on
/// incompressible input (5 bytes per 64 KiB stored block).
pub fn records_budget(cluster_id: &str, seal_overhead: usize) -> usize {
    MAX_FRAME_LEN - seal_overhead - HEADER_LEN - cluster_id.len() - 256
}

/// The length a frame's 4-byte prefix announces, if it is one a node accepts.
pub fn frame_len(prefix: [u8; FRAME_HEADER_LEN]) -> Result<usize, DatagramError> {
    let len = u32::from_be_bytes(prefix) as usize;
    if len > MAX_FRAME_LEN {
        return Err(DatagramError::TooLarge { len, max: MAX_FRAME_LEN });
    }
    if len < HEADER_LEN {
        return Err(DatagramError::TooShort);
    }
    Ok(len)
}

/// Prefixes an envelope (plain or sealed) with its length: a frame.
pub fn frame(envelope: &[u8]) -> Vec<u8> {
    let mut framed = Vec::with_capacity(FRAME_HEADER_LEN + envelope.len());
    framed.extend_from_slice(&(envelope.len() as u32).to_be_bytes());
    framed.extend_from_slice(envelope);
    framed
}

/// Decodes a frame's plaintext envelope and packet, and checks the rules that
/// need no state. A datagram message is refused ([`Violation::WrongTransport`]).
pub fn decode_frame(bytes: &[u8]) -> Result<Packet, DatagramError> {
    let packet = decode_limited(bytes, MAX_FRAME_LEN)?;
    if !packet.message.is_stream_message() {
        return Err(Violation::WrongTransport.into());
    }
    Ok(packet)
}

/// Encodes and compresses a delta for a `Records` frame.
pub fn deflate(delta: &Delta) -> Compressed {
    deflate_body(delta)
}

/// Encodes and compresses what writes as a [`Delta`] (one, or a
/// [`crate::wire::DeltaOut`] of records read in place).
pub(crate) fn deflate_body<T: serde::Serialize + ?Sized>(delta: &T) -> Compressed {
    compress(&postcard::to_stdvec(delta).unwrap_or_default())
}

/// Compresses an encoded delta (or, in tests and fuzzers, any bytes).
pub fn compress(encoded: &[u8]) -> Compressed {
    Compressed {
        len: encoded.len() as u32,
        deflated: miniz_oxide::deflate::compress_to_vec(encoded, DEFLATE_LEVEL),
    }
}

/// Inflates and decodes a `Records` frame's delta, and checks it as a
/// datagram's delta is checked. Allocates at most the declared length, which
/// must be within the frame limit and what the compressed bytes can produce.
pub fn inflate(compressed: &Compressed) -> Result<Delta, DatagramError> {
    let len = compressed.len as usize;
    if len > MAX_FRAME_LEN || len > compressed.deflated.len().saturating_mul(MAX_INFLATE_RATIO) {
        return Err(Violation::BadCompression.into());
    }
    let mut out = vec![0; len];
    let mut decompressor = DecompressorOxide::new();
    let flags = inflate_flags::TINFL_FLAG_USING_NON_WRAPPING_OUTPUT_BUF;
    let (status, consumed, written) = decompress(&mut decompressor, &compressed.deflated, &mut out, 0, flags);
    if status != TINFLStatus::Done || consumed != compressed.deflated.len() || written != len {
        return Err(Violation::BadCompression.into());
    }
    let delta: Delta = take_whole(&out)?;
    check_delta(&delta)?;
    Ok(delta)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::identity::Fingerprint;
    use crate::wire::message::{KeyValueUpdate, NodeDelta, NodeRef, ValueUpdate};

    fn delta(values: usize, len: usize) -> Delta {
        Delta {
            nodes: vec![NodeDelta {
                node: NodeRef::Known(Fingerprint(7)),
                heartbeat: 3,
                reset: false,
                from_version: 0,
                last_gc_version: 0,
                max_version: values as u64,
                left: false,
                key_values: (1..=values)
                    .map(|version| KeyValueUpdate {
                        key: format!("key-{version}").into(),
                        version: version as u64,
                        value: ValueUpdate::Set("v".repeat(len).into()),
                    })
                    .collect(),
            }],
            more: false,
        }
    }

    #[test]
    fn a_delta_survives_deflate_and_inflate() {
        let delta = delta(100, 200);
        let compressed = deflate(&delta);
        assert!(compressed.deflated.len() * 10 < compressed.len as usize, "repetitive values compress");
        assert_eq!(inflate(&compressed).unwrap(), delta);
    }

    #[test]
    fn a_declared_length_is_checked_before_allocating() {
        let compressed = deflate(&delta(10, 10));
        for len in [compressed.len - 1, compressed.len + 1, u32::MAX, MAX_FRAME_LEN as u32 + 1] {
            let lie = Compressed { len, ..compressed.clone() };
            assert_eq!(inflate(&lie), Err(Violation::BadCompression.into()), "{len}");
        }
        // 10 bytes of input cannot justify more than 10,320 bytes of output.
        let bomb = Compressed { len: 1 << 20, deflated: vec![0; 10] };
        assert_eq!(inflate(&bomb), Err(Violation::BadCompression.into()));
        let garbage = Compressed { len: 100, deflated: vec![0xff; 100] };
        assert_eq!(inflate(&garbage), Err(Violation::BadCompression.into()));
    }

    #[test]
    fn an_inflated_delta_is_checked_like_a_datagram_s() {
        let mut bad = delta(3, 1);
        bad.nodes[0].key_values.swap(0, 1);
        assert_eq!(inflate(&deflate(&bad)), Err(Violation::VersionsNotIncreasing.into()));
    }

    #[test]
    fn frame_lengths_are_bounded() {
        assert_eq!(frame_len((MAX_FRAME_LEN as u32).to_be_bytes()), Ok(MAX_FRAME_LEN));
        assert!(matches!(
            frame_len((MAX_FRAME_LEN as u32 + 1).to_be_bytes()),
            Err(DatagramError::TooLarge { .. })
        ));
        assert_eq!(frame_len(3u32.to_be_bytes()), Err(DatagramError::TooShort));
        assert_eq!(&frame(b"CCT\x03")[..4], &4u32.to_be_bytes());
    }
}
