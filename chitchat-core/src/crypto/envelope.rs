//! Sealing and opening one datagram, bytes to bytes, with XChaCha20-Poly1305.
//! The layout of the sealed envelope is [`crate::wire`]'s.

use chacha20poly1305::aead::AeadInOut;
use chacha20poly1305::{Tag, XNonce};

use crate::error::DatagramError;
use crate::keyring::SecretKey;
use crate::wire::{self, NONCE_LEN, NONCE_PREFIX_LEN, SEAL_OVERHEAD, SEALED_HEADER_LEN, SealedParts};

/// Nonces of one incarnation: a per-incarnation prefix, then a counter that
/// grows by one per sealed datagram and is never reset.
#[derive(Debug, Default)]
pub(super) struct NonceSequence {
    prefix: [u8; NONCE_PREFIX_LEN],
    /// The counter of the next sealed datagram.
    next_counter: u64,
    exhausted: bool,
}

impl NonceSequence {
    /// Sets the prefix: the salt XORed with the node's generation and identity.
    pub(super) fn set_prefix(&mut self, salt: [u8; NONCE_PREFIX_LEN], generation: u64, fingerprint: u64) {
        let mut identity = [0; NONCE_PREFIX_LEN];
        identity[..8].copy_from_slice(&generation.to_be_bytes());
        identity[8..].copy_from_slice(&fingerprint.to_be_bytes());
        for (prefix, (salt, identity)) in self.prefix.iter_mut().zip(salt.iter().zip(identity)) {
            *prefix = salt ^ identity;
        }
    }

    /// A sequence whose next counter is `counter`.
    #[cfg(test)]
    pub(super) fn starting_at(counter: u64) -> Self {
        NonceSequence { next_counter: counter, ..NonceSequence::default() }
    }

    /// The next nonce, or `None` once the counter is exhausted: a nonce is
    /// never reused.
    pub(super) fn next(&mut self) -> Option<[u8; NONCE_LEN]> {
        if self.exhausted {
            return None;
        }
        let counter = self.next_counter;
        match counter.checked_add(1) {
            Some(next) => self.next_counter = next,
            None => self.exhausted = true,
        }
        let mut nonce = [0; NONCE_LEN];
        nonce[..NONCE_PREFIX_LEN].copy_from_slice(&self.prefix);
        nonce[NONCE_PREFIX_LEN..].copy_from_slice(&counter.to_be_bytes());
        Some(nonce)
    }
}

/// Buffers reused across datagrams, so that opening allocates nothing in
/// steady state.
#[derive(Debug, Default)]
pub(super) struct Buffers {
    opened: Vec<u8>,
    associated_data: Vec<u8>,
}

/// Seals a plaintext datagram under `key` with `nonce`. The associated data is
/// the sealed header followed by the cluster id. `None` if the plaintext is not
/// a datagram.
pub(super) fn seal(
    key: &SecretKey,
    nonce: &[u8; NONCE_LEN],
    plaintext: &[u8],
    cluster_id: &str,
    buffers: &mut Buffers,
) -> Option<Vec<u8>> {
    let (version, body) = wire::plain_parts(plaintext)?;
    let mut sealed = Vec::with_capacity(plaintext.len() + SEAL_OVERHEAD);
    wire::write_sealed_header(&mut sealed, version, key.id().0, nonce);
    buffers.associated_data.clear();
    buffers.associated_data.extend_from_slice(&sealed);
    buffers.associated_data.extend_from_slice(cluster_id.as_bytes());
    sealed.extend_from_slice(body);
    let tag = key
        .cipher()
        .encrypt_inout_detached(
            &XNonce::from(*nonce),
            &buffers.associated_data,
            (&mut sealed[SEALED_HEADER_LEN..]).into(),
        )
        .ok()?;
    sealed.extend_from_slice(&tag);
    Some(sealed)
}

/// Authenticates and decrypts a sealed datagram under `key`; returns the
/// plaintext datagram, rebuilt in `buffers` (header, then the body decrypted in
/// place once the tag checks).
pub(super) fn open<'a>(
    key: &SecretKey,
    sealed: &SealedParts<'_>,
    cluster_id: &str,
    buffers: &'a mut Buffers,
) -> Result<&'a [u8], DatagramError> {
    buffers.associated_data.clear();
    buffers.associated_data.extend_from_slice(sealed.header);
    buffers.associated_data.extend_from_slice(cluster_id.as_bytes());
    buffers.opened.clear();
    wire::write_plain_header(&mut buffers.opened, sealed.version);
    let body_start = buffers.opened.len();
    buffers.opened.extend_from_slice(sealed.ciphertext);
    key.cipher()
        .decrypt_inout_detached(
            &XNonce::from(*sealed.nonce),
            &buffers.associated_data,
            (&mut buffers.opened[body_start..]).into(),
            &Tag::from(*sealed.tag),
        )
        .map_err(|_| DatagramError::Unauthenticated)?;
    Ok(&buffers.opened)
}
