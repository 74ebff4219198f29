//! The sealed-datagram path. A node that knows a cluster holds a keyring (a
//! primary key and an extra one) and requires encryption, or accepts plaintext
//! too (a migration). It receives a sequence of datagrams: hostile messages
//! (as in `hostile_messages`) sealed under its primary key, its extra key, a key
//! it does not hold, or not sealed at all; then maybe tampered with (a byte
//! flipped, cut short, bytes appended) and maybe delivered twice; or raw bytes.
//!
//! Never panics; every refusal changes nothing; every acceptance keeps the
//! invariants. And the guarantees of authenticated encryption hold: a datagram
//! sealed under a key the node does not hold, tampered with after sealing, or
//! delivered again after it was accepted is refused, and so is plaintext when
//! encryption is required.
//!
//! What each datagram makes the node send is checked by `Watch::feed`, seals
//! counted on both sides: nothing if it was refused; answers to the sender
//! only; the amplification limit for addresses that are not validated and
//! the budget of bytes per second (see `hostile_messages`).
//!
//! CPU per input: `fuzz/run.sh` runs this target with libFuzzer's `-timeout`.

#![no_main]

use std::time::Duration;

use arbitrary::Arbitrary;
use chitchat_core::testing::DatagramSealer;
use chitchat_core::{DatagramError, wire};
use chitchat_core::{EncryptionMode, Keyring, SecretKey};
use chitchat_fuzz::cluster::{self, READY_AT};
use chitchat_fuzz::hostile::{ArbPacket, Context, check_round_trip};
use chitchat_fuzz::watch::Watch;
use libfuzzer_sys::fuzz_target;

#[derive(Arbitrary, Debug, Clone, Copy, PartialEq, Eq)]
enum Seal {
    Primary,
    Extra,
    Unknown,
    Plaintext,
}

#[derive(Arbitrary, Debug)]
enum Tamper {
    Untouched,
    /// XORs the byte at `at` (modulo the length) with `mask` (never 0).
    Flip {
        at: u16,
        mask: u8,
    },
    /// Keeps the first `len` bytes (modulo the length).
    CutTo(u16),
    /// Appends bytes (at least one).
    Append(Vec<u8>),
}

#[derive(Arbitrary, Debug)]
enum Step {
    Message {
        packet: ArbPacket,
        seal: Seal,
        tamper: Tamper,
        /// Delivered a second time right after.
        twice: bool,
        /// Who sends it: a peer, the receiver's own address, or `[::]:0`.
        from: u8,
        /// Milliseconds to wait before it arrives (a gossip round runs if due).
        wait: u16,
    },
    Raw {
        bytes: Vec<u8>,
        from: u8,
    },
}

#[derive(Arbitrary, Debug)]
struct Input {
    /// Whether the node also accepts plaintext.
    accept_plaintext: bool,
    nonce_salt: [u8; 16],
    steps: Vec<Step>,
}

const PRIMARY: [u8; 32] = [0x11; 32];
const EXTRA: [u8; 32] = [0x22; 32];
const UNKNOWN: [u8; 32] = [0x33; 32];

fn sealer(key: [u8; 32], salt: u8) -> DatagramSealer {
    DatagramSealer::new(Keyring::new(SecretKey::from_bytes(key)), [salt; 16])
}

fuzz_target!(|input: Input| {
    let mode = if input.accept_plaintext {
        EncryptionMode::EncryptAcceptPlaintext
    } else {
        EncryptionMode::Required
    };
    let mut node = cluster::known_node();
    let mut keyring = Keyring::new(SecretKey::from_bytes(PRIMARY));
    keyring.add(SecretKey::from_bytes(EXTRA)).expect("two distinct keys");
    node.set_encryption(mode, keyring, input.nonce_salt).expect("the fuzz configuration allows sealing");
    // Peers seal under their own nonce prefixes.
    let mut primary = sealer(PRIMARY, 1);
    let mut extra = sealer(EXTRA, 2);
    let mut unknown = sealer(UNKNOWN, 3);
    let mut watch = Watch::new(&node).with_opener(sealer(PRIMARY, 9));
    let mut cx = Context {
        cluster_id: cluster::CLUSTER.into(),
        self_id: cluster::self_id(),
        known: cluster::peer_ids(),
        tokens: Vec::new(),
    };
    let (known, self_addr) = (cx.known.clone(), cx.self_id.gossip_addr());
    let pick = |from: u8| match from % 3 {
        0 => known[usize::from(from) % known.len()].gossip_addr(),
        1 => self_addr,
        _ => "[::]:0".parse().expect("an address"),
    };
    let mut now = READY_AT;
    for step in input.steps.iter().take(32) {
        cx.tokens = watch.tokens().to_vec();
        match step {
            Step::Message { packet, seal, tamper, twice, from, wait } => {
                let packet = packet.get(&cx);
                let plain = wire::encode(&packet);
                check_round_trip(&packet, &plain);
                let bytes = match seal {
                    Seal::Primary => primary.seal(plain, cluster::CLUSTER),
                    Seal::Extra => extra.seal(plain, cluster::CLUSTER),
                    Seal::Unknown => unknown.seal(plain, cluster::CLUSTER),
                    Seal::Plaintext => Some(plain),
                };
                let Some(mut bytes) = bytes else { continue };
                let sealed = *seal != Seal::Plaintext;
                // Whether a sealed datagram was altered where authentication
                // covers it. (A flipped header byte can turn it into what
                // reads as plaintext; that is only sure to fail when
                // plaintext is refused.)
                let altered = match tamper {
                    Tamper::Untouched => false,
                    Tamper::Flip { at, mask } => {
                        let at = usize::from(*at) % bytes.len();
                        bytes[at] ^= (*mask).max(1);
                        at >= wire::HEADER_LEN || mode == EncryptionMode::Required
                    }
                    Tamper::CutTo(len) => {
                        bytes.truncate(usize::from(*len) % bytes.len());
                        true
                    }
                    Tamper::Append(extra) => {
                        bytes.extend_from_slice(extra);
                        !extra.is_empty()
                    }
                };
                now += Duration::from_millis(u64::from(wait % 2_000));
                node.handle_timeout(now);
                watch.settle(&mut node);
                let from = pick(*from);
                let first = watch.feed(&mut node, now, from, &bytes);
                if sealed && altered {
                    assert!(
                        first.is_err(),
                        "a sealed datagram altered after sealing was accepted ({tamper:?})"
                    );
                }
                if *seal == Seal::Unknown
                    && matches!(tamper, Tamper::Untouched)
                    && bytes.len() <= chitchat_core::Config::MAX_DATAGRAM_SIZE
                {
                    assert!(
                        matches!(first, Err(DatagramError::UnknownKey(_))),
                        "sealed under a key the node lacks: {first:?}"
                    );
                }
                if !sealed && mode == EncryptionMode::Required && matches!(tamper, Tamper::Untouched) {
                    assert_eq!(
                        first,
                        Err(DatagramError::PlaintextRefused),
                        "plaintext while sealing is required"
                    );
                }
                if *twice {
                    let second = watch.feed(&mut node, now, from, &bytes);
                    if sealed && first.is_ok() {
                        assert_eq!(
                            second,
                            Err(DatagramError::Replayed),
                            "an accepted sealed datagram replayed"
                        );
                    }
                }
            }
            Step::Raw { bytes, from } => {
                let _ = watch.feed(&mut node, now, pick(*from), bytes);
            }
        }
    }
});
