//! Counters and histograms, rendered in the Prometheus text format.

use std::collections::HashMap;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Mutex;
use std::time::Instant;

use super::hub::Hub;
use crate::event::Event;

/// Fixed-bucket histogram.
struct Histogram {
    bounds: &'static [f64],
    counts: Vec<AtomicU64>,
    sum_milli: AtomicU64,
    count: AtomicU64,
}

impl Histogram {
    fn new(bounds: &'static [f64]) -> Self {
        Histogram {
            bounds,
            counts: (0..bounds.len()).map(|_| AtomicU64::new(0)).collect(),
            sum_milli: AtomicU64::new(0),
            count: AtomicU64::new(0),
        }
    }

    fn observe(&self, v: f64) {
        for (i, b) in self.bounds.iter().enumerate() {
            if v <= *b {
                self.counts[i].fetch_add(1, Ordering::Relaxed);
            }
        }
        self.sum_milli
            .fetch_add((v * 1000.0) as u64, Ordering::Relaxed);
        self.count.fetch_add(1, Ordering::Relaxed);
    }

    fn render(&self, name: &str, labels: &str, out: &mut String) {
        let sep = if labels.is_empty() { "" } else { "," };
        for (i, b) in self.bounds.iter().enumerate() {
            out.push_str(&format!(
                "{name}_bucket{{{labels}{sep}le=\"{b}\"}} {}\n",
                self.counts[i].load(Ordering::Relaxed)
            ));
        }
        let n = self.count.load(Ordering::Relaxed);
        out.push_str(&format!("{name}_bucket{{{labels}{sep}le=\"+Inf\"}} {n}\n"));
        let open = if labels.is_empty() {
            String::new()
        } else {
            format!("{{{labels}}}")
        };
        out.push_str(&format!(
            "{name}_sum{open} {}\n{name}_count{open} {n}\n",
            self.sum_milli.load(Ordering::Relaxed) as f64 / 1000.0
        ));
    }
}

const LATENCY_S: &[f64] = &[0.25, 0.5, 0.75, 1.0, 1.5, 2.0, 3.0, 5.0, 10.0];
const STAGE_MS: &[f64] = &[
    1.0, 5.0, 10.0, 25.0, 50.0, 100.0, 250.0, 500.0, 1000.0, 2500.0,
];

/// The server's counters.
pub struct Metrics {
    pub(super) started: Instant,
    turns: AtomicU64,
    events: AtomicU64,
    alerts: AtomicU64,
    hints: AtomicU64,
    frames_dropped: AtomicU64,
    pub(super) lagged: AtomicU64,
    rejected: Mutex<HashMap<&'static str, u64>>,
    latency: Histogram,
    stages: [(&'static str, Histogram); 4],
    /// `serve --nats`: the connection, the queue and the workers.
    pub nats: Mutex<Option<NatsState>>,
}

/// What `serve --nats` knows of the cluster.
#[derive(Debug, Default, Clone)]
pub struct NatsState {
    /// Connected now.
    pub connected: bool,
    /// The job queue, polled every few seconds.
    pub queue: crate::cluster::QueueState,
    /// Each worker's last heartbeat and when it came.
    pub workers: std::collections::BTreeMap<String, (crate::cluster::worker::Heartbeat, Instant)>,
}

impl Metrics {
    pub(super) fn new() -> Self {
        Metrics {
            started: Instant::now(),
            turns: AtomicU64::new(0),
            events: AtomicU64::new(0),
            alerts: AtomicU64::new(0),
            hints: AtomicU64::new(0),
            frames_dropped: AtomicU64::new(0),
            lagged: AtomicU64::new(0),
            rejected: Mutex::new(HashMap::new()),
            latency: Histogram::new(LATENCY_S),
            nats: Mutex::new(None),
            stages: [
                ("frontend", Histogram::new(STAGE_MS)),
                ("asr", Histogram::new(STAGE_MS)),
                ("prosody", Histogram::new(STAGE_MS)),
                ("sentiment", Histogram::new(STAGE_MS)),
            ],
        }
    }

    /// Count an event; returns its type.
    pub(super) fn count(&self, e: &Event) -> &'static str {
        self.events.fetch_add(1, Ordering::Relaxed);
        match e {
            Event::Turn(t) => {
                self.turns.fetch_add(1, Ordering::Relaxed);
                if let Some(l) = t.timings.latency_ms {
                    self.latency.observe(l as f64 / 1000.0);
                }
                let st = &t.timings.stage_ms;
                for (h, v) in
                    self.stages
                        .iter()
                        .zip([st.frontend, st.asr, st.prosody, st.sentiment])
                {
                    h.1.observe(v as f64);
                }
                "turn"
            }
            Event::Partial(_) => "partial",
            Event::Shift(_) => "shift",
            Event::Recovered(_) => "recovered",
            Event::Alert(_) => {
                self.alerts.fetch_add(1, Ordering::Relaxed);
                "alert"
            }
            Event::Assist(_) => {
                self.hints.fetch_add(1, Ordering::Relaxed);
                "assist"
            }
            Event::Summary(s) => {
                self.frames_dropped
                    .fetch_add(s.stats.frames_dropped, Ordering::Relaxed);
                "summary"
            }
        }
    }

    /// Count a refused request.
    pub(super) fn reject(&self, why: &'static str) {
        *self
            .rejected
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .entry(why)
            .or_insert(0) += 1;
    }
}

/// A Prometheus label value: backslash, quote and newline escaped.
fn label(v: &str) -> String {
    v.replace('\\', "\\\\")
        .replace('"', "\\\"")
        .replace('\n', "\\n")
}

fn line(o: &mut String, name: &str, kind: &str, help: &str, v: impl std::fmt::Display) {
    o.push_str(&format!(
        "# HELP {name} {help}\n# TYPE {name} {kind}\n{name} {v}\n"
    ));
}

impl Hub {
    /// Read or change what the hub knows of the NATS cluster (`serve --nats`).
    pub fn with_nats<R>(&self, f: impl FnOnce(&mut Option<NatsState>) -> R) -> R {
        f(&mut self.metrics.nats.lock().unwrap_or_else(|p| p.into_inner()))
    }

    /// Everything in the Prometheus text format; `conns` open connections.
    pub(super) fn render_metrics(&self, conns: usize) -> String {
        let m = &self.metrics;
        let mut o = String::new();
        let up = m.started.elapsed().as_secs_f64();
        let turns = m.turns.load(Ordering::Relaxed);
        let load = |a: &AtomicU64| a.load(Ordering::Relaxed);
        line(
            &mut o,
            "callpulse_active_calls",
            "gauge",
            "Calls being scored now.",
            self.active_ids().len(),
        );
        line(
            &mut o,
            "callpulse_calls_in_memory",
            "gauge",
            "Calls held in memory (active and recently finished).",
            self.in_memory(),
        );
        line(
            &mut o,
            "callpulse_turns_total",
            "counter",
            "Final turns emitted.",
            turns,
        );
        line(
            &mut o,
            "callpulse_turns_per_second",
            "gauge",
            "Final turns per second since the server started.",
            format!("{:.4}", turns as f64 / up.max(1e-9)),
        );
        line(
            &mut o,
            "callpulse_events_total",
            "counter",
            "Events published.",
            load(&m.events),
        );
        line(
            &mut o,
            "callpulse_alerts_total",
            "counter",
            "Escalation alerts.",
            load(&m.alerts),
        );
        line(
            &mut o,
            "callpulse_assist_hints_total",
            "counter",
            "Agent-assist hints.",
            load(&m.hints),
        );
        line(
            &mut o,
            "callpulse_frames_dropped_total",
            "counter",
            "Audio frames dropped because a pipeline fell behind (finished calls).",
            load(&m.frames_dropped),
        );
        line(
            &mut o,
            "callpulse_subscribers",
            "gauge",
            "WebSocket and SSE subscribers.",
            self.tx.receiver_count(),
        );
        line(
            &mut o,
            "callpulse_subscriber_queue_depth",
            "gauge",
            "Events waiting for the slowest subscriber.",
            self.tx.len(),
        );
        line(
            &mut o,
            "callpulse_subscribers_cut_total",
            "counter",
            "Subscribers cut off for falling behind.",
            load(&m.lagged),
        );
        if let Some(h) = &self.history {
            line(
                &mut o,
                "callpulse_history_queue_depth",
                "gauge",
                "History writes waiting.",
                h.queued(),
            );
            line(
                &mut o,
                "callpulse_history_dropped_total",
                "counter",
                "History writes dropped (queue full).",
                load(&h.dropped),
            );
        }
        line(
            &mut o,
            "callpulse_http_connections",
            "gauge",
            "Open HTTP connections.",
            conns,
        );
        o.push_str("# HELP callpulse_http_rejected_total Requests refused, by reason.\n# TYPE callpulse_http_rejected_total counter\n");
        for (k, v) in m.rejected.lock().unwrap_or_else(|p| p.into_inner()).iter() {
            o.push_str(&format!(
                "callpulse_http_rejected_total{{reason=\"{k}\"}} {v}\n"
            ));
        }
        o.push_str("# HELP callpulse_turn_latency_seconds Final-turn latency after the end of speech.\n# TYPE callpulse_turn_latency_seconds histogram\n");
        m.latency
            .render("callpulse_turn_latency_seconds", "", &mut o);
        o.push_str("# HELP callpulse_stage_ms Time per turn in each pipeline stage, ms.\n# TYPE callpulse_stage_ms histogram\n");
        for (stage, h) in &m.stages {
            h.render("callpulse_stage_ms", &format!("stage=\"{stage}\""), &mut o);
        }
        if let Some(n) = m.nats.lock().unwrap_or_else(|p| p.into_inner()).as_ref() {
            line(
                &mut o,
                "callpulse_nats_connected",
                "gauge",
                "1 when connected to NATS.",
                u8::from(n.connected),
            );
            line(
                &mut o,
                "callpulse_queue_pending",
                "gauge",
                "Scoring jobs waiting for a worker.",
                n.queue.pending,
            );
            line(
                &mut o,
                "callpulse_queue_in_progress",
                "gauge",
                "Scoring jobs a worker holds.",
                n.queue.in_progress,
            );
            line(
                &mut o,
                "callpulse_queue_redelivered",
                "gauge",
                "Held jobs delivered more than once.",
                n.queue.redelivered,
            );
            line(
                &mut o,
                "callpulse_dead_letters",
                "gauge",
                "Jobs in the dead letters.",
                n.queue.dead_letters,
            );
            o.push_str("# HELP callpulse_worker_jobs_in_hand Jobs each worker is scoring (heartbeats of the last 10 s).\n# TYPE callpulse_worker_jobs_in_hand gauge\n");
            let fresh = |t: &Instant| t.elapsed() < std::time::Duration::from_secs(10);
            for (w, (h, _)) in n.workers.iter().filter(|(_, (_, t))| fresh(t)) {
                o.push_str(&format!(
                    "callpulse_worker_jobs_in_hand{{worker=\"{}\",slots=\"{}\"}} {}\n",
                    label(w),
                    h.slots,
                    h.in_hand
                ));
            }
            o.push_str("# HELP callpulse_worker_jobs_done_total Jobs each worker finished.\n# TYPE callpulse_worker_jobs_done_total counter\n");
            for (w, (h, _)) in &n.workers {
                o.push_str(&format!(
                    "callpulse_worker_jobs_done_total{{worker=\"{}\"}} {}\n",
                    label(w),
                    h.done
                ));
            }
        }
        o
    }
}
