use std::collections::HashSet;

use super::*;
use crate::keyring::{KEY_LEN, SecretKey};
use crate::wire::{self, Delta, Message, Packet, SEALED_FLAG, SEALED_HEADER_LEN, TAG_LEN};

const CLUSTER: &str = "crypto-test";

fn key(byte: u8) -> SecretKey {
    SecretKey::from_bytes([byte; KEY_LEN])
}

fn encryption(mode: EncryptionMode, keyring: Keyring, salt: u8) -> Encryption {
    let mut encryption = Encryption::default();
    encryption.install(mode, keyring, [salt; NONCE_PREFIX_LEN], 1, 42, 64);
    encryption
}

fn plaintext() -> Vec<u8> {
    wire::encode(&Packet::new(CLUSTER, Message::Ack { delta: Delta::default() }))
}

#[test]
fn sealed_datagrams_open_with_the_key_and_carry_the_overhead() {
    let mut sender = encryption(EncryptionMode::Required, Keyring::new(key(1)), 7);
    let mut receiver = encryption(EncryptionMode::Required, Keyring::new(key(1)), 8);
    let plain = plaintext();
    let sealed = sender.seal(plain.clone(), CLUSTER).unwrap();
    assert_eq!(sealed.len(), plain.len() + SEAL_OVERHEAD);
    assert_eq!(sealed[3], SEALED_FLAG | wire::PROTOCOL_VERSION);
    assert_ne!(&sealed[SEALED_HEADER_LEN..sealed.len() - TAG_LEN], &plain[wire::HEADER_LEN..]);
    let (opened_bytes, opened) = receiver.open(&sealed, CLUSTER, crate::wire::MAX_DATAGRAM_SIZE).unwrap();
    assert_eq!(opened_bytes, &plain[..]);
    assert!(opened.is_some());
}

#[test]
fn every_tampered_byte_and_every_truncation_fails() {
    let mut sender = encryption(EncryptionMode::Required, Keyring::new(key(1)), 7);
    let mut receiver = encryption(EncryptionMode::Required, Keyring::new(key(1)), 8);
    let sealed = sender.seal(plaintext(), CLUSTER).unwrap();
    for position in 0..sealed.len() {
        for flip in [0x01, 0x80, 0xff] {
            let mut tampered = sealed.clone();
            tampered[position] ^= flip;
            assert!(
                receiver.open(&tampered, CLUSTER, crate::wire::MAX_DATAGRAM_SIZE).is_err(),
                "byte {position} ^ {flip:#x} went through"
            );
        }
    }
    for len in 0..sealed.len() {
        assert!(
            receiver.open(&sealed[..len], CLUSTER, crate::wire::MAX_DATAGRAM_SIZE).is_err(),
            "truncated to {len} went through"
        );
    }
    let mut longer = sealed.clone();
    longer.push(0);
    assert_eq!(
        receiver.open(&longer, CLUSTER, crate::wire::MAX_DATAGRAM_SIZE).unwrap_err(),
        DatagramError::Unauthenticated
    );
    assert!(
        receiver.open(&sealed, CLUSTER, crate::wire::MAX_DATAGRAM_SIZE).is_ok(),
        "the untouched datagram opens"
    );
}

#[test]
fn wrong_key_other_cluster_and_plaintext_are_refused() {
    let mut sender = encryption(EncryptionMode::Required, Keyring::new(key(2)), 7);
    let mut receiver = encryption(EncryptionMode::Required, Keyring::new(key(1)), 8);
    let sealed = sender.seal(plaintext(), CLUSTER).unwrap();
    assert_eq!(
        receiver.open(&sealed, CLUSTER, crate::wire::MAX_DATAGRAM_SIZE).unwrap_err(),
        DatagramError::UnknownKey(key(2).id())
    );
    // Sealed under another key but naming the receiver's key.
    let mut relabeled = sealed.clone();
    relabeled[4..8].copy_from_slice(&key(1).id().0.to_be_bytes());
    assert_eq!(
        receiver.open(&relabeled, CLUSTER, crate::wire::MAX_DATAGRAM_SIZE).unwrap_err(),
        DatagramError::Unauthenticated
    );
    // Same key, another cluster id.
    let mut other_cluster = encryption(EncryptionMode::Required, Keyring::new(key(1)), 9);
    let sealed = other_cluster.seal(plaintext(), "other").unwrap();
    assert_eq!(
        receiver.open(&sealed, CLUSTER, crate::wire::MAX_DATAGRAM_SIZE).unwrap_err(),
        DatagramError::Unauthenticated
    );
    // Plaintext.
    assert_eq!(
        receiver.open(&plaintext(), CLUSTER, crate::wire::MAX_DATAGRAM_SIZE).unwrap_err(),
        DatagramError::PlaintextRefused
    );
    receiver.set_mode(EncryptionMode::EncryptAcceptPlaintext).unwrap();
    assert!(receiver.open(&plaintext(), CLUSTER, crate::wire::MAX_DATAGRAM_SIZE).is_ok());
    // No keyring at all.
    let mut bare = Encryption::default();
    let sealed = sender.seal(plaintext(), CLUSTER).unwrap();
    assert_eq!(
        bare.open(&sealed, CLUSTER, crate::wire::MAX_DATAGRAM_SIZE).unwrap_err(),
        DatagramError::UnknownKey(key(2).id())
    );
}

#[test]
fn replays_are_refused_once_accepted() {
    let mut sender = encryption(EncryptionMode::Required, Keyring::new(key(1)), 7);
    let mut receiver = encryption(EncryptionMode::Required, Keyring::new(key(1)), 8);
    let datagrams: Vec<Vec<u8>> = (0..300).map(|_| sender.seal(plaintext(), CLUSTER).unwrap()).collect();
    // Delivered out of order: every one is accepted once.
    let mut order: Vec<usize> = (0..300).collect();
    order.swap(3, 40);
    order.swap(100, 190);
    for &index in &order[..250] {
        let (_, opened) = receiver.open(&datagrams[index], CLUSTER, crate::wire::MAX_DATAGRAM_SIZE).unwrap();
        receiver.note_accepted(opened);
        assert_eq!(
            receiver.open(&datagrams[index], CLUSTER, crate::wire::MAX_DATAGRAM_SIZE).unwrap_err(),
            DatagramError::Replayed
        );
    }
    // Older than the window: refused too.
    assert_eq!(
        receiver.open(&datagrams[0], CLUSTER, crate::wire::MAX_DATAGRAM_SIZE).unwrap_err(),
        DatagramError::Replayed
    );
    // Opened but not accepted by the core: not yet remembered.
    let (_, _) = receiver.open(&datagrams[299], CLUSTER, crate::wire::MAX_DATAGRAM_SIZE).unwrap();
    assert!(receiver.open(&datagrams[299], CLUSTER, crate::wire::MAX_DATAGRAM_SIZE).is_ok());
}

#[test]
fn replay_filter_is_bounded() {
    let mut receiver = encryption(EncryptionMode::Required, Keyring::new(key(1)), 8);
    receiver.replays.set_capacity(4);
    for salt in 0..10 {
        let mut sender = encryption(EncryptionMode::Required, Keyring::new(key(1)), salt);
        let (_, opened) = receiver
            .open(&sender.seal(plaintext(), CLUSTER).unwrap(), CLUSTER, crate::wire::MAX_DATAGRAM_SIZE)
            .unwrap();
        receiver.note_accepted(opened);
        assert!(receiver.replays.len() <= 4);
    }
}

#[test]
fn nonces_never_repeat_within_or_across_incarnations() {
    let mut seen = HashSet::new();
    // Two incarnations handed the same (bad) salt still get distinct prefixes.
    for generation in [1, 2] {
        let mut encryption = Encryption::default();
        encryption.install(
            EncryptionMode::Required,
            Keyring::new(key(1)),
            [0; NONCE_PREFIX_LEN],
            generation,
            42,
            64,
        );
        for _ in 0..1_000 {
            let sealed = encryption.seal(plaintext(), CLUSTER).unwrap();
            assert!(seen.insert(sealed[8..SEALED_HEADER_LEN].to_vec()), "a nonce repeated");
        }
        // A rotation does not reset the counter.
        encryption.keyring_mut().unwrap().add(key(2)).unwrap();
        encryption.keyring_mut().unwrap().set_primary(key(2).id()).unwrap();
        let sealed = encryption.seal(plaintext(), CLUSTER).unwrap();
        assert!(seen.insert(sealed[8..SEALED_HEADER_LEN].to_vec()));
    }
}

#[test]
fn an_exhausted_counter_stops_sealing() {
    let mut encryption = encryption(EncryptionMode::Required, Keyring::new(key(1)), 7);
    encryption.nonces = envelope::NonceSequence::starting_at(u64::MAX);
    assert!(encryption.seal(plaintext(), CLUSTER).is_some());
    assert!(encryption.seal(plaintext(), CLUSTER).is_none());
}

#[test]
fn keyring_changes_are_checked() {
    let mut keyring = Keyring::new(key(1));
    assert_eq!(keyring.add(key(2)), Ok(key(2).id()));
    assert_eq!(keyring.add(key(2)), Ok(key(2).id()), "adding again is harmless");
    assert_eq!(keyring.remove(key(1).id()), Err(KeyringError::RemovePrimary(key(1).id())));
    assert_eq!(keyring.set_primary(key(3).id()), Err(KeyringError::UnknownKey(key(3).id())));
    keyring.set_primary(key(2).id()).unwrap();
    assert_eq!(keyring.primary_id(), key(2).id());
    keyring.remove(key(1).id()).unwrap();
    assert_eq!(keyring.key_ids(), [key(2).id()]);
    assert_eq!(keyring.remove(key(1).id()), Err(KeyringError::UnknownKey(key(1).id())));
    assert_ne!(key(1).id(), key(2).id());
    assert!(!format!("{:?}", key(1)).contains("1, 1"), "Debug never shows key bytes");
    let mut encryption = Encryption::default();
    assert_eq!(encryption.set_mode(EncryptionMode::Required), Err(KeyringError::NoKeyring));
    assert_eq!(encryption.mode(), EncryptionMode::Off);
}
