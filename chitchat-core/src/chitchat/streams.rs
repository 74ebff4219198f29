//! The stream calls of [`Chitchat`]: opening, accepting, feeding and draining
//! the catch-up streams of [`crate::stream`].

use std::net::SocketAddr;

use super::Chitchat;
use crate::error::{DatagramError, Violation};
use crate::identity::Fingerprint;
use crate::leave::Phase;
use crate::stream::{Ending, StreamError, StreamId, StreamOpen, StreamSend};
use crate::time::Timestamp;
use crate::wire::{self, Digest, DigestEntry, Message};

/// Room for the delta of a stream's first `Records` frame.
const FIRST_FRAME_BUDGET: usize = 64 * 1_024;
/// Room for the delta of the next `Records` frames (a record too large for
/// it gets the frame limit's). Larger frames carried no faster, and each one
/// cost several short-lived buffers of its size at both ends (encoded,
/// deflated, framed, received, inflated): freed, buffers of a megabyte made
/// glibc serve the states' large strings from its heap, which they
/// fragmented (see BENCHMARKS.md, "Transfer path").
const FRAME_BUDGET: usize = 128 * 1_024;

impl Chitchat {
    // ---- inputs ----------------------------------------------------------

    /// A peer connected a stream from `from` (to the TCP listener on this
    /// node's gossip address). Returns the stream's id, or `None` if the node
    /// refuses it (then close the connection): [`crate::Config::max_streams`]
    /// are open, streams are off, or the node is not running.
    pub fn accept_stream(&mut self, now: Timestamp, from: SocketAddr) -> Option<StreamId> {
        let now = self.clock.advance(now);
        let config = self.cluster.config();
        let (max_streams, timeout) = (config.max_streams, config.stream_timeout);
        if self.phase != Phase::Running || self.streams.len() >= max_streams {
            self.cluster.metrics_mut().streams.refused += 1;
            return None;
        }
        self.cluster.metrics_mut().streams.accepted += 1;
        Some(self.streams.start(from, false, timeout, now))
    }

    /// Bytes received on stream `id`, in any split. On `Err` the stream is over
    /// (a frame was refused, or the stream is unknown): close it. What the
    /// frames before the refused one carried was applied.
    pub fn handle_stream_data(
        &mut self,
        now: Timestamp,
        id: StreamId,
        bytes: &[u8],
    ) -> Result<(), StreamError> {
        let now = self.clock.advance(now);
        if self.phase != Phase::Running {
            self.end_stream(id, Ending::Failed, now);
            return Err(StreamError::UnknownStream);
        }
        let Some(session) = self.streams.get_mut(id) else { return Err(StreamError::UnknownStream) };
        session.last_progress = now;
        self.cluster.metrics_mut().streams.bytes_received += bytes.len() as u64;
        let mut input = bytes;
        while !input.is_empty() {
            let Some(session) = self.streams.get_mut(id) else { return Err(StreamError::UnknownStream) };
            let frame = match session.take_frame(&mut input) {
                Ok(Some(frame)) => frame,
                Ok(None) => break,
                Err(error) => return Err(self.refuse_frame(id, error, now)),
            };
            if let Err(error) = self.handle_frame(now, id, &frame) {
                return Err(self.refuse_frame(id, error, now));
            }
        }
        Ok(())
    }

    /// Stream `id` was closed by the peer, or failed (or could not be opened):
    /// the node forgets it. A stream whose exchange was not over counts as
    /// failed, and a failed pull keeps this node from pulling from that peer
    /// for one [`crate::Config::stream_timeout`].
    pub fn stream_closed(&mut self, now: Timestamp, id: StreamId) {
        let now = self.clock.advance(now);
        let complete = self.streams.get_mut(id).is_some_and(|session| session.is_complete());
        let ending = if complete { Ending::Completed } else { Ending::Failed };
        self.end_stream(id, ending, now);
    }

    // ---- outputs ---------------------------------------------------------

    /// The next stream this node wants opened: a TCP connection to
    /// [`StreamOpen::to`]. Once connected, drive it with
    /// [`Chitchat::handle_stream_data`] and [`Chitchat::poll_stream_send`]; if
    /// the connection fails, call [`Chitchat::stream_closed`].
    pub fn poll_stream_open(&mut self) -> Option<StreamOpen> {
        self.streams.pop_open()
    }

    /// What to write next on stream `id`: a frame, nothing yet, or the end
    /// (flush and close). Poll it after the stream's input and whenever the
    /// node was driven, until it is `Idle` or `Finished`. A frame is built
    /// when polled, so a stream holds at most one frame in memory.
    pub fn poll_stream_send(&mut self, now: Timestamp, id: StreamId) -> StreamSend {
        let now = self.clock.advance(now);
        if self.phase != Phase::Running {
            self.end_stream(id, Ending::Failed, now);
            return StreamSend::Finished;
        }
        let full = self.records_budget();
        let send_cap = self.stream_send_cap();
        let Some(session) = self.streams.get_mut(id) else { return StreamSend::Finished };
        let message = if session.is_complete() {
            self.end_stream(id, Ending::Completed, now);
            return StreamSend::Finished;
        } else if session.outgoing && !session.sent_pull {
            // The puller says what it holds.
            session.sent_pull = true;
            let (digest, _) = self.cluster.build_digest(now, Fingerprint(0), Vec::new(), full);
            Message::Pull { digest }
        } else if let Some(mut digest) = session.peer_digest.take() {
            // The pulled sends what the puller lacks, a frame at a time. The
            // first frame is small: the first records of every node (frames
            // are fair) arrive after building, sending and applying 64 KiB.
            let small = if session.records_sent == 0 { FIRST_FRAME_BUDGET } else { FRAME_BUDGET };
            let budget = full.min(small);
            session.records_sent += 1;
            let over_cap = session.records_bytes >= send_cap;
            let (mut delta, _) = self.cluster.build_delta(now, &digest, budget, true, &mut self.rng);
            if delta.is_empty() && budget < full {
                // A record larger than the small frame: a whole frame's room.
                delta = self.cluster.build_delta(now, &digest, full, true, &mut self.rng).0;
            }
            if over_cap {
                // Each record goes once per stream, so this is never reached
                // but by a fault: whatever happens, one `Pull` makes the node
                // send at most about twice what it holds.
                delta.clear();
            }
            let Some(session) = self.streams.get_mut(id) else { return StreamSend::Finished };
            if delta.is_empty() {
                session.sent_done = true;
                Message::Done
            } else {
                note_sent(&mut digest, delta.entries());
                session.peer_digest = Some(digest);
                Message::Records { records: wire::deflate_body(&delta.writer()) }
            }
        } else {
            return StreamSend::Idle;
        };
        let plain = self.encode(message);
        let Some(envelope) = self.encryption.seal(plain, &self.cluster.config().cluster_id) else {
            // The nonces are exhausted: nothing more can be sent.
            self.end_stream(id, Ending::Failed, now);
            return StreamSend::Finished;
        };
        let frame = wire::frame(&envelope);
        if let Some(session) = self.streams.get_mut(id) {
            session.last_progress = now;
            session.records_bytes += frame.len();
        }
        let counts = &mut self.cluster.metrics_mut().streams;
        counts.frames_sent += 1;
        counts.bytes_sent += frame.len() as u64;
        StreamSend::Bytes(frame)
    }

    /// Whether the node still runs stream `id`: once it does not (the
    /// exchange ended, failed or timed out), its caller drops the connection,
    /// whatever it was doing with it (connecting, or waiting to write).
    pub fn is_stream_open(&self, id: StreamId) -> bool {
        self.streams.contains(id)
    }

    // ---- internals -------------------------------------------------------

    /// Starts a pull from `peer`, whose delta said it had more for this node,
    /// unless one is running, streams are full or off, or `peer` failed lately.
    pub(super) fn want_pull(&mut self, now: Timestamp, peer: SocketAddr) {
        let config = self.cluster.config();
        let (max_streams, timeout) = (config.max_streams, config.stream_timeout);
        if peer == self.self_id().gossip_addr() || !self.streams.may_pull(peer, max_streams, now) {
            return;
        }
        self.streams.start(peer, true, timeout, now);
        self.cluster.metrics_mut().streams.opened += 1;
    }

    /// Handles one frame of stream `id`.
    fn handle_frame(&mut self, now: Timestamp, id: StreamId, frame: &[u8]) -> Result<(), DatagramError> {
        let cluster_id = &self.cluster.config().cluster_id;
        let (plaintext, accepted) = self.encryption.open(frame, cluster_id, wire::MAX_FRAME_LEN)?;
        let packet = wire::decode_frame(plaintext)?;
        if packet.cluster_id != self.cluster.config().cluster_id {
            return Err(DatagramError::WrongCluster);
        }
        let session = self.streams.get_mut(id).ok_or(DatagramError::NotRunning)?;
        // The puller sends one `Pull`; the pulled, `Records` then `Done`.
        match packet.message {
            Message::Pull { digest }
                if !session.outgoing && session.peer_digest.is_none() && !session.sent_done =>
            {
                session.peer_digest = Some(digest);
            }
            Message::Records { records } if session.outgoing && !session.received_done => {
                let peer = session.peer;
                let mut delta = wire::inflate(&records)?;
                self.cluster.drop_sections_from_future(&mut delta);
                // A TCP connection proves its peer's address as an echoed
                // token does: what it brings is vouched for.
                self.cluster.apply_delta(&mut delta, peer, true, now);
            }
            Message::Done if session.outgoing && !session.received_done => session.received_done = true,
            _ => return Err(Violation::OutOfOrder.into()),
        }
        self.encryption.note_accepted(accepted);
        self.cluster.metrics_mut().streams.frames_received += 1;
        Ok(())
    }

    /// Ends stream `id` after a refused frame: counted, forgotten.
    fn refuse_frame(&mut self, id: StreamId, error: DatagramError, now: Timestamp) -> StreamError {
        tracing::debug!(%id, %error, "stream frame refused");
        self.cluster.metrics_mut().streams.frames_rejected += 1;
        self.end_stream(id, Ending::Failed, now);
        StreamError::Frame(error)
    }

    /// Forgets stream `id`, counting how it ended.
    pub(super) fn end_stream(&mut self, id: StreamId, ending: Ending, now: Timestamp) {
        let cooldown = self.cluster.config().stream_timeout;
        if self.streams.end(id, ending, cooldown, now).is_some() {
            let counts = &mut self.cluster.metrics_mut().streams;
            match ending {
                Ending::Completed => counts.completed += 1,
                Ending::Failed => counts.failed += 1,
            }
        }
    }

    /// Ends the streams past their deadline or idle too long.
    pub(super) fn expire_streams(&mut self, now: Timestamp) {
        for id in self.streams.expired(self.stream_idle_timeout(), now) {
            self.cluster.metrics_mut().streams.timed_out += 1;
            self.end_stream(id, Ending::Failed, now);
        }
    }

    /// A stream with no byte either way for this long is over: a quarter of
    /// `stream_timeout`, at least two gossip intervals (a busy peer may take
    /// a while to build, or to read, a frame of a megabyte).
    pub(super) fn stream_idle_timeout(&self) -> std::time::Duration {
        let config = self.cluster.config();
        (config.stream_timeout / 4).max(config.gossip_interval * 2).min(config.stream_timeout)
    }

    /// The most bytes of frames a stream this node accepted sends (it then
    /// sends `Done`): twice the records it holds, counted as for the memory
    /// budget (key, value and [`crate::RECORD_OVERHEAD`] each), plus 512
    /// bytes a tracked node (its identity) and one frame.
    pub fn stream_send_cap(&self) -> usize {
        let held = self.cluster.remote_bytes() + self.cluster.self_entry().state.held_bytes();
        let nodes = self.cluster.membership().len();
        2 * held + 512 * nodes + wire::FRAME_HEADER_LEN + wire::MAX_FRAME_LEN
    }

    /// Room for a frame's delta or digest before compression.
    fn records_budget(&self) -> usize {
        wire::records_budget(&self.cluster.config().cluster_id, self.encryption.overhead())
    }
}

/// Advances what a peer holds (its `Pull`'s digest) past a delta sent to it
/// (what the peer holds of each node the delta names, once applied), so that
/// the next frame carries what follows.
fn note_sent(digest: &mut Digest, sent: impl Iterator<Item = DigestEntry>) {
    let range = digest.range;
    for entry in sent {
        let fingerprint = entry.fingerprint;
        if !range.contains(fingerprint) {
            // Asked for outside the range: named once, not followed further.
            digest.unknown.retain(|asked| *asked != fingerprint);
            continue;
        }
        let offset = range.offset(fingerprint);
        match digest.entries.binary_search_by_key(&offset, |entry| range.offset(entry.fingerprint)) {
            Ok(index) => {
                let held = &mut digest.entries[index];
                held.max_version = entry.max_version;
                held.last_gc_version = held.last_gc_version.max(entry.last_gc_version);
            }
            Err(index) => digest.entries.insert(index, entry),
        }
    }
}
