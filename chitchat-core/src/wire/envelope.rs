//! The envelope around every datagram: magic, version and, when sealed, the
//! key id, nonce and tag (see [`crate::crypto`] for what they mean). Every byte
//! offset of the format is written here and nowhere else.

use crate::error::DatagramError;

/// The first three bytes of every datagram.
pub const MAGIC: [u8; 3] = *b"CCT";
/// The protocol version this crate speaks.
pub const PROTOCOL_VERSION: u8 = 4;
/// Length of the envelope header (magic and version).
pub const HEADER_LEN: usize = MAGIC.len() + 1;
/// The largest datagram any node sends or accepts: the largest UDP payload over
/// IPv4.
pub const MAX_DATAGRAM_SIZE: usize = 65_507;

/// Set in the version byte of a sealed datagram.
pub const SEALED_FLAG: u8 = 0x80;
/// Bytes of a key id in a sealed envelope.
pub const KEY_ID_LEN: usize = 4;
/// Bytes of a nonce.
pub const NONCE_LEN: usize = 24;
/// Bytes of the nonce's per-incarnation prefix (the rest is an 8-byte counter).
pub const NONCE_PREFIX_LEN: usize = 16;
/// Bytes of the Poly1305 tag.
pub const TAG_LEN: usize = 16;
/// Bytes before the ciphertext of a sealed datagram: magic, version byte, key
/// id, nonce.
pub const SEALED_HEADER_LEN: usize = HEADER_LEN + KEY_ID_LEN + NONCE_LEN;
/// How much longer a sealed datagram is than its plaintext.
pub const SEAL_OVERHEAD: usize = KEY_ID_LEN + NONCE_LEN + TAG_LEN;

/// What the envelope of a received datagram says.
#[derive(Debug)]
pub(crate) enum Envelope<'a> {
    /// A plaintext datagram (still to decode).
    Plain,
    /// A sealed datagram, split into its parts.
    Sealed(SealedParts<'a>),
}

/// The parts of a sealed datagram.
#[derive(Debug)]
pub(crate) struct SealedParts<'a> {
    /// The bytes before the ciphertext (authenticated as associated data).
    pub header: &'a [u8],
    /// The protocol version of the plaintext inside.
    pub version: u8,
    /// The id of the key it claims to be sealed under.
    pub key_id: u32,
    /// Its nonce: a per-incarnation prefix, then a counter.
    pub nonce: &'a [u8; NONCE_LEN],
    /// The encrypted body of the plaintext datagram.
    pub ciphertext: &'a [u8],
    /// The Poly1305 tag.
    pub tag: &'a [u8; TAG_LEN],
}

impl SealedParts<'_> {
    /// The nonce's per-incarnation prefix.
    pub(crate) fn nonce_prefix(&self) -> [u8; NONCE_PREFIX_LEN] {
        let mut prefix = [0; NONCE_PREFIX_LEN];
        prefix.copy_from_slice(&self.nonce[..NONCE_PREFIX_LEN]);
        prefix
    }

    /// The nonce's counter.
    pub(crate) fn nonce_counter(&self) -> u64 {
        let mut counter = [0; 8];
        counter.copy_from_slice(&self.nonce[NONCE_PREFIX_LEN..]);
        u64::from_be_bytes(counter)
    }
}

/// Reads the envelope of a received datagram (or frame) of at most `max`
/// bytes. Checks no cryptography; a sealed datagram too short to hold a header
/// and a tag is `Unauthenticated`.
pub(crate) fn read_envelope(bytes: &[u8], max: usize) -> Result<Envelope<'_>, DatagramError> {
    let version = match bytes.get(MAGIC.len()) {
        Some(&version) if bytes[..MAGIC.len()] == MAGIC => version,
        // Not even an envelope: the decoder says why.
        _ => return Err(super::decode_limited(bytes, max).err().unwrap_or(DatagramError::BadMagic)),
    };
    if version & SEALED_FLAG == 0 {
        return Ok(Envelope::Plain);
    }
    if version & !SEALED_FLAG != PROTOCOL_VERSION {
        return Err(DatagramError::UnsupportedVersion(version));
    }
    if bytes.len() > max {
        return Err(DatagramError::TooLarge { len: bytes.len(), max });
    }
    if bytes.len() < SEALED_HEADER_LEN + TAG_LEN {
        return Err(DatagramError::Unauthenticated);
    }
    let (header, rest) = bytes.split_at(SEALED_HEADER_LEN);
    let (ciphertext, tag) = rest.split_at(rest.len() - TAG_LEN);
    let (_, key_and_nonce) = header.split_at(HEADER_LEN);
    let (key_id, nonce) = key_and_nonce.split_at(KEY_ID_LEN);
    let key_id = u32::from_be_bytes(key_id.try_into().map_err(|_| DatagramError::Unauthenticated)?);
    Ok(Envelope::Sealed(SealedParts {
        header,
        version: version & !SEALED_FLAG,
        key_id,
        nonce: nonce.try_into().map_err(|_| DatagramError::Unauthenticated)?,
        ciphertext,
        tag: tag.try_into().map_err(|_| DatagramError::Unauthenticated)?,
    }))
}

/// The protocol version and body of a plaintext datagram built by
/// [`super::encode`] (`None` if it is shorter than a header).
pub(crate) fn plain_parts(plaintext: &[u8]) -> Option<(u8, &[u8])> {
    let version = *plaintext.get(MAGIC.len())?;
    Some((version, plaintext.get(HEADER_LEN..)?))
}

/// Writes the header of a plaintext datagram of `version` into `out`.
pub(crate) fn write_plain_header(out: &mut Vec<u8>, version: u8) {
    out.extend_from_slice(&MAGIC);
    out.push(version);
}

/// Writes the header of a sealed datagram into `out`: magic, `version` with the
/// sealed flag, key id, nonce.
pub(crate) fn write_sealed_header(out: &mut Vec<u8>, version: u8, key_id: u32, nonce: &[u8; NONCE_LEN]) {
    out.extend_from_slice(&MAGIC);
    out.push(SEALED_FLAG | version);
    out.extend_from_slice(&key_id.to_be_bytes());
    out.extend_from_slice(nonce);
}
