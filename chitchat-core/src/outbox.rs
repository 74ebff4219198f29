//! The outbox: datagrams waiting for [`crate::Chitchat::poll_transmit`],
//! sealed as they leave.

use std::collections::VecDeque;
use std::net::SocketAddr;

use crate::crypto::Encryption;

/// A datagram to send, pulled with [`crate::Chitchat::poll_transmit`].
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Transmit {
    /// Where to send it.
    pub to: SocketAddr,
    /// The datagram, at most [`crate::Config::max_datagram_size`] bytes.
    pub bytes: Vec<u8>,
}

/// A datagram waiting to be sent, not yet sealed.
#[derive(Debug)]
struct Queued {
    to: SocketAddr,
    plain: Vec<u8>,
    farewell: bool,
}

/// Plaintext datagrams waiting to leave, at most `bound`.
#[derive(Debug)]
pub(crate) struct Outbox {
    queue: VecDeque<Queued>,
    bound: usize,
}

/// A datagram taken out of the outbox.
#[derive(Debug)]
pub(crate) struct Departure {
    /// What to send, or `None` if it was dropped as it left.
    pub transmit: Option<Transmit>,
    /// Whether it was one of this node's farewells.
    pub farewell: bool,
}

impl Outbox {
    pub(crate) fn new(bound: usize) -> Self {
        Outbox { queue: VecDeque::new(), bound }
    }

    pub(crate) fn len(&self) -> usize {
        self.queue.len()
    }

    /// Queues an encoded datagram. Returns whether it was queued: not if the
    /// outbox is full, nor if it could not fit `max_datagram_size` once sealed
    /// with `seal_overhead` bytes (sizes come from the encoder, so that is a
    /// bug; it is never sent).
    pub(crate) fn push(
        &mut self,
        to: SocketAddr,
        plain: Vec<u8>,
        farewell: bool,
        seal_overhead: usize,
        max_datagram_size: usize,
    ) -> bool {
        if self.queue.len() >= self.bound {
            return false;
        }
        if plain.len() + seal_overhead > max_datagram_size {
            debug_assert!(false, "datagram of {} bytes exceeds the maximum", plain.len());
            return false;
        }
        self.queue.push_back(Queued { to, plain, farewell });
        true
    }

    /// Takes the next datagram out and seals it under the encryption in force
    /// (not the one in force when it was queued: a datagram queued before
    /// encryption was turned on never leaves in plaintext). Each destination
    /// gets its own sealing, so its own nonce, even when plaintexts are shared.
    pub(crate) fn pop(
        &mut self,
        encryption: &mut Encryption,
        cluster_id: &str,
        max_datagram_size: usize,
    ) -> Option<Departure> {
        let queued = self.queue.pop_front()?;
        let farewell = queued.farewell;
        // `None`: the nonce counter is exhausted (never reuse a nonce).
        let transmit = encryption
            .seal(queued.plain, cluster_id)
            // Too large: queued in plaintext at full size, before encryption was on.
            .filter(|bytes| bytes.len() <= max_datagram_size)
            .map(|bytes| Transmit { to: queued.to, bytes });
        Some(Departure { transmit, farewell })
    }
}
