//! Publishing a node's counters through the `metrics` facade (feature
//! `metrics`): the node task hands the core's [`Metrics`], the driver's
//! counters and the sizes of the node sets to whatever recorder the application
//! installed (a Prometheus exporter, StatsD, ...), once a gossip interval and
//! once more when it stops. Every metric has the label `node` (the node's
//! name). The names are listed in the crate docs and the README.
//!
//! The core stays free of it: it only counts, in [`Metrics`].

use std::time::{Duration, Instant};

use chitchat_core::{Chitchat, Metrics};
use metrics::{counter, describe_counter, describe_gauge, gauge};

use crate::handle::DriverMetrics;

/// A counter: its name, its description, and how to read it.
type CounterSource = (&'static str, &'static str, fn(&Metrics, &DriverMetrics) -> u64);

/// Every counter, in the order of the documentation's table.
pub(crate) const COUNTERS: &[CounterSource] = &[
    ("chitchat_datagrams_received_total", "Datagrams received.", |m, _| m.datagrams_received),
    ("chitchat_bytes_received_total", "Bytes of datagrams received.", |m, _| m.bytes_received),
    ("chitchat_datagrams_sent_total", "Datagrams sent.", |m, _| m.datagrams_sent),
    ("chitchat_bytes_sent_total", "Bytes of datagrams sent.", |m, _| m.bytes_sent),
    ("chitchat_syns_received_total", "Syn messages received.", |m, _| m.syns_received),
    ("chitchat_syn_acks_received_total", "SynAck messages received.", |m, _| m.syn_acks_received),
    ("chitchat_acks_received_total", "Ack messages received.", |m, _| m.acks_received),
    ("chitchat_bad_cluster_received_total", "BadCluster answers received.", |m, _| m.bad_cluster_received),
    ("chitchat_bad_cluster_sent_total", "BadCluster answers sent.", |m, _| m.bad_cluster_sent),
    ("chitchat_gossip_rounds_total", "Gossip rounds run.", |m, _| m.gossip_rounds),
    ("chitchat_quiet_rounds_total", "Gossip rounds without news (one handshake).", |m, _| m.quiet_rounds),
    ("chitchat_pings_sent_total", "Pings sent to this node's subjects.", |m, _| m.pings_sent),
    ("chitchat_pongs_received_total", "Pongs that answered the last Ping to a subject.", |m, _| {
        m.pongs_received
    }),
    ("chitchat_pongs_sent_total", "Pings answered with a Pong.", |m, _| m.pongs_sent),
    ("chitchat_probes_ignored_total", "Pings for another identity, Pongs answering nothing.", |m, _| {
        m.probes_ignored
    }),
    ("chitchat_accusations_total", "Subjects this node accused.", |m, _| m.accusations),
    ("chitchat_accusations_refuted_total", "Times this node refuted an accusation of it.", |m, _| {
        m.accusations_refuted
    }),
    ("chitchat_datagrams_rejected_total", "Datagrams refused, all reasons.", |m, _| m.rejected.total),
    ("chitchat_sections_ignored_total", "Delta sections ignored.", |m, _| m.sections_ignored),
    ("chitchat_sections_over_limit_total", "Delta sections refused: node name too long.", |m, _| {
        m.sections_over_limit
    }),
    ("chitchat_records_over_limit_total", "Records skipped: over a local limit.", |m, _| {
        m.records_over_limit
    }),
    ("chitchat_records_over_budget_total", "Records skipped: over the remote state budget.", |m, _| {
        m.records_over_budget
    }),
    ("chitchat_sections_unproven_total", "Delta sections from unproven senders: heartbeat only.", |m, _| {
        m.sections_unproven
    }),
    ("chitchat_nodes_refused_total", "Nodes refused (max_nodes reached).", |m, _| m.nodes_refused),
    (
        "chitchat_nodes_evicted_total",
        "Nodes not vouched for (or only heard of), evicted for one vouched for.",
        |m, _| m.nodes_evicted,
    ),
    ("chitchat_fingerprint_collisions_total", "Identities refused for a fingerprint collision.", |m, _| {
        m.fingerprint_collisions
    }),
    ("chitchat_stale_sections_total", "Delta sections older than what is held.", |m, _| m.stale_sections),
    ("chitchat_events_dropped_total", "Events dropped from a full queue.", |m, _| m.events_dropped),
    ("chitchat_transmits_dropped_total", "Datagrams dropped from a full queue.", |m, _| m.transmits_dropped),
    ("chitchat_partial_digests_sent_total", "Digests covering part of the ring.", |m, _| {
        m.partial_digests_sent
    }),
    ("chitchat_deltas_truncated_total", "Deltas cut to fit a datagram.", |m, _| m.deltas_truncated),
    ("chitchat_resets_applied_total", "Peers' states replaced wholesale.", |m, _| m.resets_applied),
    ("chitchat_pauses_total", "Pauses of this node noticed.", |m, _| m.pauses),
    ("chitchat_unvalidated_answers_total", "Answers sent to addresses not validated.", |m, _| {
        m.unvalidated_answers
    }),
    ("chitchat_unvalidated_bytes_sent_total", "Bytes of answers to addresses not validated.", |m, _| {
        m.unvalidated_bytes_sent
    }),
    ("chitchat_unvalidated_answers_dropped_total", "Answers to addresses not validated not sent.", |m, _| {
        m.unvalidated_answers_dropped
    }),
    ("chitchat_unsolicited_syn_acks_total", "SynAcks that answered no Syn of this node.", |m, _| {
        m.unsolicited_syn_acks
    }),
    ("chitchat_refutations_total", "Claims about this node refuted.", |m, _| m.refutations),
    (
        "chitchat_unrefutable_claims_total",
        "Claims about this node too close to the limit to refute.",
        |m, _| m.unrefutable_claims,
    ),
    ("chitchat_streams_opened_total", "Catch-up streams this node pulled on.", |m, _| m.streams.opened),
    ("chitchat_streams_accepted_total", "Catch-up streams peers opened, taken.", |m, _| m.streams.accepted),
    ("chitchat_streams_refused_total", "Catch-up streams refused (max_streams open).", |m, _| {
        m.streams.refused
    }),
    ("chitchat_streams_completed_total", "Catch-up streams whose exchange ended.", |m, _| {
        m.streams.completed
    }),
    ("chitchat_streams_failed_total", "Catch-up streams that ended early.", |m, _| m.streams.failed),
    ("chitchat_streams_timed_out_total", "Catch-up streams past their deadline or idle.", |m, _| {
        m.streams.timed_out
    }),
    ("chitchat_stream_frames_rejected_total", "Stream frames refused (the stream ends).", |m, _| {
        m.streams.frames_rejected
    }),
    ("chitchat_stream_frames_sent_total", "Stream frames sent.", |m, _| m.streams.frames_sent),
    ("chitchat_stream_frames_received_total", "Stream frames received and accepted.", |m, _| {
        m.streams.frames_received
    }),
    ("chitchat_stream_bytes_sent_total", "Bytes sent on streams.", |m, _| m.streams.bytes_sent),
    ("chitchat_stream_bytes_received_total", "Bytes received on streams.", |m, _| m.streams.bytes_received),
    ("chitchat_send_errors_total", "Failed sends (driver).", |_, d| d.send_errors),
    ("chitchat_recv_errors_total", "Transient receive errors (driver).", |_, d| d.recv_errors),
    ("chitchat_seed_resolution_failures_total", "Failed DNS resolutions of seeds (driver).", |_, d| {
        d.seed_resolution_failures
    }),
];

/// Every gauge: the number of nodes this node sees in each state.
pub(crate) const GAUGES: &[(&str, &str)] = &[
    ("chitchat_live_nodes", "Nodes seen live, this one included."),
    ("chitchat_ready_nodes", "Nodes seen ready."),
    ("chitchat_dead_nodes", "Nodes seen dead."),
    ("chitchat_tracked_nodes", "Nodes tracked, whatever their status."),
];

/// Publishes a node's metrics once an interval.
#[derive(Debug)]
pub(crate) struct Exporter {
    node: String,
    interval: Duration,
    next: Instant,
}

impl Exporter {
    /// An exporter for the node named `node`; describes every metric to the
    /// installed recorder.
    pub(crate) fn new(node: String, interval: Duration) -> Self {
        for &(name, description, _) in COUNTERS {
            describe_counter!(name, description);
        }
        for &(name, description) in GAUGES {
            describe_gauge!(name, description);
        }
        Exporter { node, interval, next: Instant::now() }
    }

    /// Publishes if an interval passed since the last time.
    pub(crate) fn export_if_due(&mut self, chitchat: &Chitchat, driver: &DriverMetrics) {
        let now = Instant::now();
        if now >= self.next {
            self.next = now + self.interval;
            self.export(chitchat, driver);
        }
    }

    /// Publishes now.
    pub(crate) fn export(&self, chitchat: &Chitchat, driver: &DriverMetrics) {
        let core = chitchat.metrics();
        for &(name, _, read) in COUNTERS {
            counter!(name, "node" => self.node.clone()).absolute(read(&core, driver));
        }
        let counts = [
            chitchat.live_nodes().count(),
            chitchat.ready_nodes().count(),
            chitchat.dead_nodes().count(),
            chitchat.node_states().count(),
        ];
        for (&(name, _), count) in GAUGES.iter().zip(counts) {
            gauge!(name, "node" => self.node.clone()).set(count as f64);
        }
    }
}

#[cfg(test)]
mod tests {
    use std::collections::BTreeMap;
    use std::sync::atomic::{AtomicU64, Ordering};
    use std::sync::{Arc, Mutex};

    use chitchat_core::{Config, NodeId, Timestamp};
    use metrics::{
        Counter, CounterFn, Gauge, GaugeFn, Histogram, Key, KeyName, Metadata, Recorder, SharedString, Unit,
    };

    use super::*;

    /// Values by name and `node` label, as a recorder sees them.
    #[derive(Debug, Default)]
    struct Recorded {
        values: Mutex<BTreeMap<(String, String), Arc<Cell>>>,
        described: Mutex<Vec<String>>,
    }

    #[derive(Debug, Default)]
    struct Cell(AtomicU64);

    impl CounterFn for Cell {
        fn increment(&self, value: u64) {
            self.0.fetch_add(value, Ordering::Relaxed);
        }
        fn absolute(&self, value: u64) {
            self.0.fetch_max(value, Ordering::Relaxed);
        }
    }

    impl GaugeFn for Cell {
        fn increment(&self, _: f64) {}
        fn decrement(&self, _: f64) {}
        fn set(&self, value: f64) {
            self.0.store(value as u64, Ordering::Relaxed);
        }
    }

    impl Recorded {
        fn cell(&self, key: &Key) -> Arc<Cell> {
            let node =
                key.labels().find(|label| label.key() == "node").map(|label| label.value().to_string());
            let id = (key.name().to_string(), node.unwrap_or_default());
            self.values.lock().unwrap().entry(id).or_default().clone()
        }

        fn get(&self, name: &str, node: &str) -> Option<u64> {
            let values = self.values.lock().unwrap();
            values.get(&(name.to_string(), node.to_string())).map(|cell| cell.0.load(Ordering::Relaxed))
        }
    }

    impl Recorder for Recorded {
        fn describe_counter(&self, key: KeyName, _: Option<Unit>, _: SharedString) {
            self.described.lock().unwrap().push(key.as_str().to_string());
        }
        fn describe_gauge(&self, key: KeyName, _: Option<Unit>, _: SharedString) {
            self.described.lock().unwrap().push(key.as_str().to_string());
        }
        fn describe_histogram(&self, _: KeyName, _: Option<Unit>, _: SharedString) {}
        fn register_counter(&self, key: &Key, _: &Metadata<'_>) -> Counter {
            Counter::from_arc(self.cell(key))
        }
        fn register_gauge(&self, key: &Key, _: &Metadata<'_>) -> Gauge {
            Gauge::from_arc(self.cell(key))
        }
        fn register_histogram(&self, _: &Key, _: &Metadata<'_>) -> Histogram {
            Histogram::noop()
        }
    }

    #[test]
    fn every_counter_and_gauge_is_published_with_the_node_label() {
        let id = NodeId::new("n1", 1, "127.0.0.1:7001".parse().unwrap());
        let mut chitchat = Chitchat::new(Config::local_test(), id, [("k", "v")], Timestamp::ZERO).unwrap();
        chitchat.set_seed_addrs(["127.0.0.1:7002".parse().unwrap()]);
        chitchat.handle_timeout(Timestamp::ZERO + Duration::from_secs(1));
        let sent = std::iter::from_fn(|| chitchat.poll_transmit()).count() as u64;
        assert!(sent > 0);
        let driver = DriverMetrics { send_errors: 3, recv_errors: 4, seed_resolution_failures: 5 };
        let recorder = Recorded::default();
        metrics::with_local_recorder(&recorder, || {
            let mut exporter = Exporter::new("n1".into(), Duration::from_secs(1));
            exporter.export_if_due(&chitchat, &driver);
        });
        assert_eq!(recorder.described.lock().unwrap().len(), COUNTERS.len() + GAUGES.len());
        for &(name, _, _) in COUNTERS {
            assert!(recorder.get(name, "n1").is_some(), "{name} not published");
        }
        assert_eq!(
            recorder.get("chitchat_datagrams_sent_total", "n1"),
            Some(chitchat.metrics().datagrams_sent)
        );
        assert!(recorder.get("chitchat_gossip_rounds_total", "n1") >= Some(1));
        assert_eq!(recorder.get("chitchat_send_errors_total", "n1"), Some(3));
        assert_eq!(recorder.get("chitchat_recv_errors_total", "n1"), Some(4));
        assert_eq!(recorder.get("chitchat_seed_resolution_failures_total", "n1"), Some(5));
        assert_eq!(recorder.get("chitchat_live_nodes", "n1"), Some(1));
        assert_eq!(recorder.get("chitchat_tracked_nodes", "n1"), Some(1));
    }

    /// The top-level field names of a struct's `Debug` output.
    fn field_names(debug: &str, type_name: &str) -> Vec<String> {
        let fields = debug.trim_start_matches(type_name).trim_start_matches(" {").trim_end_matches('}');
        let mut depth = 0;
        let mut names = Vec::new();
        for part in fields.split(", ") {
            if depth == 0 {
                names.push(part.split(':').next().unwrap_or_default().trim().to_string());
            }
            depth += part.matches('{').count() as i32 - part.matches('}').count() as i32;
        }
        names
    }

    /// A counter the core adds shows up here as a failing test, not as a gap.
    #[test]
    fn every_core_counter_is_published() {
        let names = field_names(&format!("{:?}", Metrics::default()), "Metrics");
        assert!(names.len() > 20, "{names:?}");
        let stream_names =
            field_names(&format!("{:?}", chitchat_core::StreamCounts::default()), "StreamCounts");
        assert!(stream_names.len() > 5, "{stream_names:?}");
        let stream_names = stream_names.into_iter().map(|name| {
            match name.starts_with("frames_") || name.starts_with("bytes_") {
                true => format!("stream_{name}"),
                false => format!("streams_{name}"),
            }
        });
        for name in names.into_iter().filter(|name| name != "streams").chain(stream_names) {
            let published = match name.as_str() {
                "rejected" => "chitchat_datagrams_rejected_total".to_string(),
                name => format!("chitchat_{name}_total"),
            };
            assert!(
                COUNTERS.iter().any(|&(counter, _, _)| counter == published),
                "{published} is not published"
            );
        }
    }

    #[test]
    fn every_metric_is_documented() {
        let docs = [include_str!("lib.rs"), include_str!("../../README.md")];
        let names = COUNTERS.iter().map(|&(name, _, _)| name).chain(GAUGES.iter().map(|&(name, _)| name));
        for name in names {
            for doc in docs {
                assert!(doc.contains(&format!("`{name}`")), "{name} is missing from a table");
            }
        }
    }
}
