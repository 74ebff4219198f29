//! Streams: the catch-up path for state too large for a datagram.
//!
//! A node whose delta from a peer came with `more` set (the peer had more for
//! it than fit the datagram) asks its caller to open a stream (a TCP
//! connection) to that peer's gossip address, and pulls: it sends
//! `Pull(digest)` with what it holds, and the peer answers with `Records`
//! frames (deltas, deflated, at most 1 MiB each) of what the digest lacks,
//! then `Done`. Frames are length-prefixed and sealed like datagrams. Records
//! from a stream are applied as from a proven sender (a TCP connection cannot
//! be opened from a spoofed address).
//!
//! Pulls go one way, and a node runs one at a time: each node receives each
//! record once, from the one peer it pulls from, rather than from every peer
//! that noticed it lagging. A peer that lags behind the puller pulls in turn.
//!
//! This module keeps the streams' bookkeeping: which are open, what each has
//! buffered and sent, and when each must end. The frames themselves are built
//! and applied by [`crate::Chitchat`] (`chitchat/streams.rs`).
//!
//! # Bounds
//!
//! At most [`crate::Config::max_streams`] streams at once, of which one pull;
//! each buffers at most one frame ([`crate::wire::MAX_FRAME_LEN`] bytes plus
//! the 4-byte prefix) and ends at [`crate::Config::stream_timeout`] after it
//! opened, or a quarter of that (at least two gossip intervals) after its last
//! byte either way. Failed
//! pulls cool their peer down for one `stream_timeout`: at most one entry per
//! pull started within that time.

use std::collections::{BTreeMap, VecDeque};
use std::fmt;
use std::net::SocketAddr;
use std::time::Duration;

use crate::error::DatagramError;
use crate::time::Timestamp;
use crate::wire::{Digest, FRAME_HEADER_LEN, frame_len};

/// Names one stream of a node, from [`crate::Chitchat::poll_stream_open`] or
/// [`crate::Chitchat::accept_stream`] until the stream ends.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct StreamId(pub u64);

impl fmt::Display for StreamId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "stream {}", self.0)
    }
}

/// A stream the node wants opened: connect to `to` (the peer's gossip address,
/// over TCP), then exchange bytes through [`crate::Chitchat::handle_stream_data`]
/// and [`crate::Chitchat::poll_stream_send`].
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct StreamOpen {
    /// The stream.
    pub id: StreamId,
    /// Where to connect.
    pub to: SocketAddr,
}

/// What to do next on a stream, from [`crate::Chitchat::poll_stream_send`].
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum StreamSend {
    /// Write these bytes (one frame), then poll again.
    Bytes(Vec<u8>),
    /// Nothing to write now: poll again after the stream's next input.
    Idle,
    /// The stream is over (the exchange ended, failed or timed out, or the
    /// node does not know it): flush what was written and close it.
    Finished,
}

/// Why a stream ended early. The node has forgotten the stream; its caller
/// closes it.
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum StreamError {
    /// The node does not know (or no longer knows) this stream.
    #[error("unknown stream")]
    UnknownStream,
    /// A frame was refused: its length, envelope, authentication, encoding,
    /// cluster or content (as a datagram would be).
    #[error("frame refused: {0}")]
    Frame(#[from] DatagramError),
}

/// One open stream.
#[derive(Debug)]
pub(crate) struct Session {
    /// The peer: the address connected to, or the one that connected.
    pub peer: SocketAddr,
    /// This node opened the stream (it pulls).
    pub outgoing: bool,
    /// The stream ends at this time, whatever is left.
    pub deadline: Timestamp,
    /// The last byte either way.
    pub last_progress: Timestamp,
    /// Bytes of an incomplete frame (prefix included).
    inbound: Vec<u8>,
    /// What the puller holds: its `Pull`, advanced as records are sent to it
    /// (on a stream this node accepted).
    pub peer_digest: Option<Digest>,
    /// This node sent its `Pull` (on its own pull).
    pub sent_pull: bool,
    /// This node sent `Done` (on a stream it accepted).
    pub sent_done: bool,
    /// `Records` frames this node sent (on a stream it accepted).
    pub records_sent: u32,
    /// Bytes of frames this node sent on the stream.
    pub records_bytes: usize,
    /// The peer sent `Done` (on this node's pull).
    pub received_done: bool,
}

impl Session {
    /// Takes bytes from `input` until a frame is complete (returned, without
    /// its prefix) or `input` is exhausted. Never buffers more than one frame.
    pub(crate) fn take_frame(&mut self, input: &mut &[u8]) -> Result<Option<Vec<u8>>, DatagramError> {
        if self.inbound.len() < FRAME_HEADER_LEN {
            let wanted = (FRAME_HEADER_LEN - self.inbound.len()).min(input.len());
            let (head, rest) = input.split_at(wanted);
            self.inbound.extend_from_slice(head);
            *input = rest;
            if self.inbound.len() < FRAME_HEADER_LEN {
                return Ok(None);
            }
        }
        let mut prefix = [0; FRAME_HEADER_LEN];
        prefix.copy_from_slice(&self.inbound[..FRAME_HEADER_LEN]);
        let len = frame_len(prefix)?;
        let missing = FRAME_HEADER_LEN + len - self.inbound.len();
        let take = missing.min(input.len());
        let (head, rest) = input.split_at(take);
        self.inbound.extend_from_slice(head);
        *input = rest;
        if take < missing {
            return Ok(None);
        }
        let mut frame = std::mem::take(&mut self.inbound);
        frame.drain(..FRAME_HEADER_LEN);
        Ok(Some(frame))
    }

    /// Whether the exchange is over: the pulled sent `Done`, or the puller
    /// received it.
    pub(crate) fn is_complete(&self) -> bool {
        match self.outgoing {
            true => self.received_done,
            false => self.sent_done,
        }
    }
}

/// How a stream ended, for the counters.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) enum Ending {
    Completed,
    Failed,
}

/// The open streams of a node.
#[derive(Debug, Default)]
pub(crate) struct Streams {
    /// In the order they started (by id), at most `max_streams` (a few): a
    /// vector searched in full, released once the last stream ends. (A
    /// B-tree kept its first node, room for 11 sessions of some 250 bytes,
    /// for the node's lifetime after its first stream.)
    sessions: Vec<(StreamId, Session)>,
    next_id: u64,
    /// Streams to open, not yet polled by the caller.
    opens: VecDeque<StreamOpen>,
    /// Peers not to pull from before these times (a pull from them failed).
    cooldown: BTreeMap<SocketAddr, Timestamp>,
}

impl Streams {
    pub(crate) fn len(&self) -> usize {
        self.sessions.len()
    }

    fn position(&self, id: StreamId) -> Option<usize> {
        self.sessions.iter().position(|(held, _)| *held == id)
    }

    pub(crate) fn contains(&self, id: StreamId) -> bool {
        self.position(id).is_some()
    }

    pub(crate) fn get_mut(&mut self, id: StreamId) -> Option<&mut Session> {
        let position = self.position(id)?;
        Some(&mut self.sessions[position].1)
    }

    fn remove(&mut self, id: StreamId) -> Option<Session> {
        let position = self.position(id)?;
        let (_, session) = self.sessions.remove(position);
        if self.sessions.is_empty() {
            self.sessions = Vec::new();
        }
        Some(session)
    }

    /// Whether a pull from `peer` may start now, under `max_streams`.
    pub(crate) fn may_pull(&self, peer: SocketAddr, max_streams: usize, now: Timestamp) -> bool {
        self.sessions.len() < max_streams
            && !self.sessions.iter().any(|(_, session)| session.outgoing)
            && self.cooldown.get(&peer).is_none_or(|until| *until <= now)
    }

    /// Starts a stream: a pull to `peer` (`outgoing`), or one `peer` opened.
    pub(crate) fn start(
        &mut self,
        peer: SocketAddr,
        outgoing: bool,
        timeout: Duration,
        now: Timestamp,
    ) -> StreamId {
        let id = StreamId(self.next_id);
        self.next_id += 1;
        let session = Session {
            peer,
            outgoing,
            deadline: now + timeout,
            last_progress: now,
            inbound: Vec::new(),
            peer_digest: None,
            sent_pull: false,
            sent_done: false,
            records_sent: 0,
            records_bytes: 0,
            received_done: false,
        };
        self.sessions.push((id, session));
        if outgoing {
            self.opens.push_back(StreamOpen { id, to: peer });
        }
        id
    }

    pub(crate) fn pop_open(&mut self) -> Option<StreamOpen> {
        // A stream that ended before its caller opened it is not opened.
        while let Some(open) = self.opens.pop_front() {
            if self.contains(open.id) {
                return Some(open);
            }
        }
        None
    }

    /// Forgets a stream; a failed pull cools its peer down for `cooldown`.
    pub(crate) fn end(
        &mut self,
        id: StreamId,
        ending: Ending,
        cooldown: Duration,
        now: Timestamp,
    ) -> Option<Session> {
        let session = self.remove(id)?;
        if session.outgoing && ending == Ending::Failed {
            self.cooldown.retain(|_, until| *until > now);
            self.cooldown.insert(session.peer, now + cooldown);
        }
        Some(session)
    }

    /// Streams past their deadline or idle for longer than `idle` at `now`.
    pub(crate) fn expired(&self, idle: Duration, now: Timestamp) -> Vec<StreamId> {
        self.sessions
            .iter()
            .filter(|(_, session)| session.deadline <= now || session.last_progress + idle <= now)
            .map(|(id, _)| *id)
            .collect()
    }

    /// The next time a stream expires.
    pub(crate) fn next_deadline(&self, idle: Duration) -> Option<Timestamp> {
        self.sessions.iter().map(|(_, session)| session.deadline.min(session.last_progress + idle)).min()
    }

    /// Forgets every stream (the node stopped taking part).
    pub(crate) fn clear(&mut self) -> usize {
        let open = self.sessions.len();
        self.sessions = Vec::new();
        self.opens.clear();
        open
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::wire::{MAX_FRAME_LEN, frame};

    fn session() -> Session {
        let mut streams = Streams::default();
        let id =
            streams.start("127.0.0.1:1".parse().unwrap(), false, Duration::from_secs(1), Timestamp::ZERO);
        streams.remove(id).unwrap()
    }

    /// Streams are found by id in any order of ending, and a node whose
    /// streams all ended holds no room for them.
    #[test]
    fn ended_streams_release_their_room() {
        let mut streams = Streams::default();
        let (peer, timeout) = ("127.0.0.1:1".parse().unwrap(), Duration::from_secs(1));
        let ids: Vec<StreamId> =
            (0..3).map(|i| streams.start(peer, i == 0, timeout, Timestamp::ZERO)).collect();
        assert_eq!(streams.pop_open().map(|open| open.id), Some(ids[0]));
        for (ended, id) in [ids[1], ids[0], ids[2]].into_iter().enumerate() {
            assert!(streams.get_mut(id).is_some());
            assert!(streams.end(id, Ending::Completed, timeout, Timestamp::ZERO).is_some());
            assert!(!streams.contains(id));
            assert_eq!(streams.len(), 2 - ended);
        }
        assert_eq!(streams.sessions.capacity(), 0);
        assert!(streams.end(ids[0], Ending::Completed, timeout, Timestamp::ZERO).is_none());
    }

    #[test]
    fn frames_are_reassembled_from_any_split() {
        let bytes: Vec<u8> = [frame(b"CCT\x03one"), frame(b"CCT\x03second")].concat();
        for split in 0..bytes.len() {
            let mut session = session();
            let mut frames = Vec::new();
            for mut chunk in [&bytes[..split], &bytes[split..]] {
                while let Some(frame) = session.take_frame(&mut chunk).unwrap() {
                    frames.push(frame);
                }
                assert!(chunk.is_empty());
            }
            assert_eq!(frames, [b"CCT\x03one".to_vec(), b"CCT\x03second".to_vec()], "split at {split}");
        }
    }

    #[test]
    fn a_frame_longer_than_the_limit_is_refused_before_it_is_buffered() {
        let mut session = session();
        let prefix = (MAX_FRAME_LEN as u32 + 1).to_be_bytes();
        let mut input = &prefix[..];
        assert!(matches!(session.take_frame(&mut input), Err(DatagramError::TooLarge { .. })));
        assert!(session.inbound.len() <= FRAME_HEADER_LEN);
    }
}
