//! Serde helpers for decoding hostile input: sequences that never trust a
//! claimed length, and digest entries packed into one byte string.

use std::fmt;
use std::marker::PhantomData;

use serde::Deserialize;
use serde::de::{Deserializer, SeqAccess, Visitor};

/// Deserializes a sequence without trusting its claimed length: memory grows with
/// the elements actually decoded, each of which consumed at least one byte.
///
/// A sequence that claims [`PRESIZE_FROM`] elements or more gets room for
/// them at once, up to [`PRESIZE_AT_MOST`] (a section of 20 records is not
/// grown four times). Postcard yields exactly the elements a sequence
/// claims or fails, so a sequence decoded holds at most twice the room its
/// elements take (the doubling past [`PRESIZE_AT_MOST`]), and a lie (a
/// sequence cut short) costs at most [`PRESIZE_AT_MOST`] elements of room
/// until the error drops it.
pub(crate) fn bounded_vec<'de, D, T>(deserializer: D) -> Result<Vec<T>, D::Error>
where
    D: Deserializer<'de>,
    T: Deserialize<'de>,
{
    struct BoundedVec<T>(PhantomData<T>);

    impl<'de, T: Deserialize<'de>> Visitor<'de> for BoundedVec<T> {
        type Value = Vec<T>;

        fn expecting(&self, formatter: &mut fmt::Formatter) -> fmt::Result {
            formatter.write_str("a sequence")
        }

        fn visit_seq<A: SeqAccess<'de>>(self, mut seq: A) -> Result<Vec<T>, A::Error> {
            let claimed = seq.size_hint().unwrap_or(0);
            let mut items = if claimed >= PRESIZE_FROM {
                Vec::with_capacity(claimed.min(PRESIZE_AT_MOST))
            } else {
                Vec::new()
            };
            while let Some(item) = seq.next_element()? {
                items.push(item);
            }
            Ok(items)
        }
    }

    deserializer.deserialize_seq(BoundedVec(PhantomData))
}

/// The fewest elements a sequence must claim to get room for them at once
/// (see [`bounded_vec`]).
const PRESIZE_FROM: usize = 8;

/// The most elements a sequence gets room for before it decoded them.
const PRESIZE_AT_MOST: usize = 32;

/// Digest entries packed into one byte string (see the module docs).
pub(crate) mod entries {
    use std::fmt;

    use serde::de::{Deserializer, Error, Visitor};
    use serde::ser::Serializer;

    use crate::identity::Fingerprint;
    use crate::wire::message::DigestEntry;
    use crate::wire::size::MIN_DIGEST_ENTRY_LEN;

    pub(crate) fn serialize<S: Serializer>(
        entries: &[DigestEntry],
        serializer: S,
    ) -> Result<S::Ok, S::Error> {
        let mut bytes = Vec::with_capacity(entries.len() * 14);
        for entry in entries {
            bytes.extend_from_slice(&entry.fingerprint.0.to_le_bytes());
            for value in [entry.heartbeat, entry.last_gc_version, entry.max_version] {
                put_varint(&mut bytes, value);
            }
        }
        serializer.serialize_bytes(&bytes)
    }

    pub(crate) fn deserialize<'de, D: Deserializer<'de>>(
        deserializer: D,
    ) -> Result<Vec<DigestEntry>, D::Error> {
        deserializer.deserialize_bytes(EntriesVisitor)
    }

    struct EntriesVisitor;

    impl<'de> Visitor<'de> for EntriesVisitor {
        type Value = Vec<DigestEntry>;

        fn expecting(&self, formatter: &mut fmt::Formatter) -> fmt::Result {
            formatter.write_str("packed digest entries")
        }

        fn visit_bytes<E: Error>(self, mut bytes: &[u8]) -> Result<Vec<DigestEntry>, E> {
            // The bytes are really there: reserving for them is bounded by the datagram.
            let mut entries = Vec::with_capacity(bytes.len() / MIN_DIGEST_ENTRY_LEN);
            while !bytes.is_empty() {
                let (fingerprint, rest) =
                    bytes.split_first_chunk::<8>().ok_or_else(|| E::custom("short entry"))?;
                bytes = rest;
                let mut next = || take_varint(&mut bytes).ok_or_else(|| E::custom("bad varint"));
                entries.push(DigestEntry {
                    fingerprint: Fingerprint(u64::from_le_bytes(*fingerprint)),
                    heartbeat: next()?,
                    last_gc_version: next()?,
                    max_version: next()?,
                });
            }
            Ok(entries)
        }
    }

    fn put_varint(bytes: &mut Vec<u8>, mut value: u64) {
        while value >= 0x80 {
            bytes.push(value as u8 | 0x80);
            value >>= 7;
        }
        bytes.push(value as u8);
    }

    /// Reads a LEB128 varint of at most 10 bytes whose value fits a `u64`.
    fn take_varint(bytes: &mut &[u8]) -> Option<u64> {
        let mut value = 0u64;
        for (index, byte) in bytes.iter().enumerate().take(10) {
            let bits = u64::from(byte & 0x7f);
            if index == 9 && *byte > 1 {
                return None; // more than 64 bits
            }
            value |= bits << (7 * index);
            if byte & 0x80 == 0 {
                *bytes = &bytes[index + 1..];
                return Some(value);
            }
        }
        None
    }
}

/// A byte string, decoded in one piece from bytes that are really there.
pub(crate) mod bytes {
    use std::fmt;

    use serde::de::{Deserializer, Error, Visitor};
    use serde::ser::Serializer;

    pub(crate) fn serialize<S: Serializer>(bytes: &[u8], serializer: S) -> Result<S::Ok, S::Error> {
        serializer.serialize_bytes(bytes)
    }

    pub(crate) fn deserialize<'de, D: Deserializer<'de>>(deserializer: D) -> Result<Vec<u8>, D::Error> {
        deserializer.deserialize_bytes(BytesVisitor)
    }

    struct BytesVisitor;

    impl<'de> Visitor<'de> for BytesVisitor {
        type Value = Vec<u8>;

        fn expecting(&self, formatter: &mut fmt::Formatter) -> fmt::Result {
            formatter.write_str("a byte string")
        }

        fn visit_bytes<E: Error>(self, bytes: &[u8]) -> Result<Vec<u8>, E> {
            Ok(bytes.to_vec())
        }
    }
}

#[cfg(test)]
mod tests {
    use serde::Deserialize;

    use super::{PRESIZE_AT_MOST, bounded_vec};

    #[derive(Deserialize)]
    struct Items(#[serde(deserialize_with = "bounded_vec")] Vec<u64>);

    fn encoded(claimed: u8, items: u8) -> Vec<u8> {
        std::iter::once(claimed).chain(1..=items).collect()
    }

    /// Room is made at once for an honest claim, bounded for a large one,
    /// and a lie (a sequence cut short) is an error, not a reservation kept.
    #[test]
    fn sequences_get_room_for_what_they_claim_within_bounds() {
        let Items(small) = postcard::from_bytes(&encoded(3, 3)).unwrap();
        assert_eq!(small, [1, 2, 3]);
        let Items(section) = postcard::from_bytes(&encoded(20, 20)).unwrap();
        assert_eq!((section.len(), section.capacity()), (20, 20));
        let Items(large) = postcard::from_bytes(&encoded(100, 100)).unwrap();
        assert_eq!(large.len(), 100);
        assert!(large.capacity() <= 2 * 100, "{}", large.capacity());
        assert!(postcard::from_bytes::<Items>(&encoded(100, 1)).is_err());
        assert!(PRESIZE_AT_MOST * std::mem::size_of::<crate::wire::KeyValueUpdate>() <= 4_096);
    }
}
