//! Simulated streams: reliable, ordered byte pipes between two nodes (what
//! TCP gives the catch-up path), with the link's latency, a bandwidth per
//! stream, and no loss. A partition, a crash or a restart breaks them.

use std::cmp::Reverse;
use std::collections::{BTreeMap, BinaryHeap};

use super::Simulation;
use crate::stream::{StreamId, StreamSend};
use crate::time::Timestamp;

/// What travels on a simulated stream.
pub(super) enum StreamFlight {
    /// A connection from `from`'s stream `initiator` reaches its target.
    Connect { from: usize, initiator: StreamId },
    /// Bytes for the receiver's stream `id`.
    Data { id: StreamId, bytes: Vec<u8> },
    /// The other end closed the receiver's stream `id` (or could not open it).
    Close { id: StreamId },
}

/// The simulated streams in flight and connected.
#[derive(Default)]
pub(super) struct SimStreams {
    /// (arrival, sequence, receiver) → flight in `flights`.
    queue: BinaryHeap<Reverse<(Timestamp, u64, usize)>>,
    flights: BTreeMap<u64, StreamFlight>,
    next_sequence: u64,
    /// (node, its stream) → (peer, the peer's stream), both ways.
    links: BTreeMap<(usize, StreamId), (usize, StreamId)>,
    /// When each direction of a link has sent everything queued on it.
    busy_until: BTreeMap<(usize, StreamId), Timestamp>,
}

impl SimStreams {
    pub(super) fn next_arrival(&self) -> Option<Timestamp> {
        self.queue.peek().map(|Reverse((at, ..))| *at)
    }

    fn push(&mut self, at: Timestamp, to: usize, flight: StreamFlight) {
        let sequence = self.next_sequence;
        self.next_sequence += 1;
        self.flights.insert(sequence, flight);
        self.queue.push(Reverse((at, sequence, to)));
    }

    fn unlink(&mut self, node: usize, id: StreamId) -> Option<(usize, StreamId)> {
        self.busy_until.remove(&(node, id));
        let peer = self.links.remove(&(node, id))?;
        self.links.remove(&peer);
        self.busy_until.remove(&peer);
        Some(peer)
    }
}

impl Simulation {
    /// Delivers the stream flights due at `self.now`; returns the nodes touched.
    pub(super) fn deliver_stream_flights(&mut self, touched: &mut std::collections::BTreeSet<usize>) {
        while let Some(&Reverse((due, sequence, to))) = self.streams.queue.peek() {
            if due > self.now {
                break;
            }
            self.streams.queue.pop();
            let Some(flight) = self.streams.flights.remove(&sequence) else { continue };
            let node = &self.nodes[to];
            if !node.up {
                continue;
            }
            if let Some(until) = node.stalled_until.filter(|until| *until > self.now) {
                // A stalled process reads its sockets when it resumes.
                self.streams.push(until, to, flight);
                continue;
            }
            let now = self.node_time(to);
            match flight {
                StreamFlight::Connect { from, initiator } => {
                    let from_addr = self.nodes[from].addr;
                    match self.nodes[to].chitchat.accept_stream(now, from_addr) {
                        Some(accepted) => {
                            self.streams.links.insert((to, accepted), (from, initiator));
                            self.streams.links.insert((from, initiator), (to, accepted));
                            touched.insert(from);
                        }
                        None => {
                            let at = self.now + self.network.latency(to, from);
                            self.streams.push(at, from, StreamFlight::Close { id: initiator });
                        }
                    }
                }
                StreamFlight::Data { id, bytes } => {
                    if !self.streams.links.contains_key(&(to, id)) {
                        continue;
                    }
                    if self.nodes[to].chitchat.handle_stream_data(now, id, &bytes).is_err() {
                        self.stats.streams_refused += 1;
                        self.break_stream(to, id);
                    }
                }
                StreamFlight::Close { id } => {
                    self.streams.links.remove(&(to, id));
                    self.streams.busy_until.remove(&(to, id));
                    self.nodes[to].chitchat.stream_closed(now, id);
                }
            }
            touched.insert(to);
        }
    }

    /// Opens the streams node `index` asked for, and sends what its connected
    /// streams have to send.
    pub(super) fn collect_stream_outputs(&mut self, index: usize) {
        while let Some(open) = self.nodes[index].chitchat.poll_stream_open() {
            self.stats.streams_opened += 1;
            let target = self.by_addr.get(&open.to).copied();
            match target.filter(|&to| self.network.reachable(index, to)) {
                Some(to) => {
                    let at = self.now + self.network.latency(index, to);
                    self.streams.push(at, to, StreamFlight::Connect { from: index, initiator: open.id });
                }
                None => {
                    let at = self.now + self.network.latency(index, index);
                    self.streams.push(at, index, StreamFlight::Close { id: open.id });
                }
            }
        }
        let linked: Vec<(StreamId, (usize, StreamId))> = self
            .streams
            .links
            .range((index, StreamId(0))..=(index, StreamId(u64::MAX)))
            .map(|((_, id), peer)| (*id, *peer))
            .collect();
        for (id, (peer, peer_id)) in linked {
            if !self.network.reachable(index, peer) || !self.nodes[peer].up {
                self.break_stream(index, id);
                continue;
            }
            let latency = self.network.latency(index, peer);
            let bandwidth = self.network.stream_bandwidth(index, peer).max(1);
            loop {
                let now = self.node_time(index);
                match self.nodes[index].chitchat.poll_stream_send(now, id) {
                    StreamSend::Bytes(bytes) => {
                        self.stats.stream_bytes += bytes.len() as u64;
                        let busy = self.streams.busy_until.entry((index, id)).or_insert(self.now);
                        let start = (*busy).max(self.now);
                        let transfer =
                            std::time::Duration::from_secs_f64(bytes.len() as f64 / bandwidth as f64);
                        *busy = start + transfer;
                        let at = *busy + latency;
                        self.streams.push(at, peer, StreamFlight::Data { id: peer_id, bytes });
                    }
                    StreamSend::Idle => break,
                    StreamSend::Finished => {
                        let at = self
                            .streams
                            .busy_until
                            .get(&(index, id))
                            .copied()
                            .unwrap_or(self.now)
                            .max(self.now)
                            + latency;
                        // This end is closed; the other end's data still on
                        // its way arrives before the close, as TCP delivers it.
                        self.streams.links.remove(&(index, id));
                        self.streams.busy_until.remove(&(index, id));
                        self.streams.push(at, peer, StreamFlight::Close { id: peer_id });
                        break;
                    }
                }
            }
        }
    }

    /// Breaks a connected stream (refused data, a partition, a crash): both
    /// ends learn that it closed.
    pub(super) fn break_stream(&mut self, node: usize, id: StreamId) {
        if let Some((peer, peer_id)) = self.streams.unlink(node, id) {
            let at = self.now + self.network.latency(node, peer);
            self.streams.push(at, peer, StreamFlight::Close { id: peer_id });
        }
        let now = self.node_time(node);
        if self.nodes[node].up {
            self.nodes[node].chitchat.stream_closed(now, id);
        }
    }

    /// Breaks every stream of a node that crashed or restarted: its peers
    /// learn that they closed.
    pub(super) fn break_streams_of(&mut self, node: usize) {
        let ids: Vec<StreamId> = self
            .streams
            .links
            .range((node, StreamId(0))..=(node, StreamId(u64::MAX)))
            .map(|((_, id), _)| *id)
            .collect();
        for id in ids {
            if let Some((peer, peer_id)) = self.streams.unlink(node, id) {
                let at = self.now + self.network.latency(node, peer);
                self.streams.push(at, peer, StreamFlight::Close { id: peer_id });
            }
        }
        // What was on its way to the old process, and its connections not yet
        // accepted, die with it (the next incarnation reuses stream ids).
        let stale: Vec<u64> = self
            .streams
            .queue
            .iter()
            .filter(|Reverse((_, _, to))| *to == node)
            .map(|Reverse((_, sequence, _))| *sequence)
            .collect();
        for sequence in stale {
            self.streams.flights.remove(&sequence);
        }
        self.streams
            .flights
            .retain(|_, flight| !matches!(flight, StreamFlight::Connect { from, .. } if *from == node));
    }
}
