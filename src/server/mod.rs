//! `callpulse serve`: the live monitoring server.
//!
//! - `GET /` the dashboard (embedded; nothing is fetched from elsewhere);
//! - `GET /v1/events` (WebSocket) and `GET /v1/events/sse` (server-sent
//!   events): every event of every call, or of one with `?call=ID`;
//! - `POST /v1/score`: a WAV upload (raw body or multipart), streamed to
//!   disk under a size limit, scored like `callpulse score`; the events come
//!   back as a JSON array;
//! - `GET /v1/calls`, `GET /v1/calls/{id}`: active and recent calls, one
//!   call's events (from memory, else from the history database);
//! - `GET /healthz`, `GET /metrics` (Prometheus text format).
//!
//! Security: 127.0.0.1 by default; any other address needs a token
//! (`Authorization: Bearer`, or `?token=` for WebSocket and SSE). Limits on
//! connections, request rate per client, header read time (slow clients),
//! upload size and idle upload time. See `docs/server.md`.

pub mod history;

use std::collections::{HashMap, VecDeque};
use std::net::{IpAddr, SocketAddr};
use std::path::PathBuf;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use axum::body::Body;
use axum::extract::ws::{Message, WebSocket, WebSocketUpgrade};
use axum::extract::{Path, Query, Request, State};
use axum::http::{header, HeaderMap, StatusCode};
use axum::middleware::Next;
use axum::response::sse::{Event as SseEvent, KeepAlive, Sse};
use axum::response::{Html, IntoResponse, Response};
use axum::routing::{get, post};
use axum::Router;
use tokio::sync::broadcast;

use crate::event::Event;
use crate::pipeline::Engine;
use history::{History, Write};

/// Server settings.
#[derive(Debug, Clone)]
pub struct ServeConfig {
    /// HTTP address.
    pub listen: SocketAddr,
    /// Bearer token (required off loopback).
    pub token: Option<String>,
    /// Largest upload, bytes.
    pub max_upload: u64,
    /// Most open connections.
    pub max_connections: usize,
    /// Requests per second per client address (burst = 2×).
    pub rate_per_s: f64,
    /// A client must send its request headers within this time.
    pub header_timeout: Duration,
    /// An upload may stall this long between chunks.
    pub body_idle_timeout: Duration,
    /// History database (None = memory only).
    pub db: Option<PathBuf>,
    /// Keep finished calls this many days in the database.
    pub retention_days: u32,
    /// Events kept in memory per call.
    pub events_per_call: usize,
}

/// Why the server refuses to start.
pub fn check_bind(cfg: &ServeConfig) -> Result<(), String> {
    if !cfg.listen.ip().is_loopback() && cfg.token.as_deref().is_none_or(str::is_empty) {
        return Err(format!(
            "refusing to listen on {} without a token: set --token or CALLPULSE_TOKEN (clients send `Authorization: Bearer TOKEN`)",
            cfg.listen
        ));
    }
    Ok(())
}

struct CallEntry {
    active: bool,
    started_ms: u64,
    ended_ms: Option<u64>,
    summary: Option<serde_json::Value>,
    events: VecDeque<Arc<str>>,
    seq: u64,
}

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

/// Shared state: calls, subscribers, metrics, history.
pub struct Hub {
    tx: broadcast::Sender<(String, Arc<str>)>,
    calls: Mutex<HashMap<String, CallEntry>>,
    history: Option<History>,
    events_per_call: usize,
    started: Instant,
    turns: AtomicU64,
    events: AtomicU64,
    alerts: AtomicU64,
    frames_dropped: AtomicU64,
    lagged: AtomicU64,
    rejected: Mutex<HashMap<&'static str, u64>>,
    latency: Histogram,
    stages: [(&'static str, Histogram); 4],
}

/// Default broadcast capacity: a subscriber this many events behind is cut off.
pub const SUBSCRIBER_BUFFER: usize = 1024;

impl Hub {
    /// A hub with an optional history database; a subscriber `buffer`
    /// events behind is cut off.
    pub fn new(history: Option<History>, events_per_call: usize, buffer: usize) -> Arc<Self> {
        let (tx, _) = broadcast::channel(buffer.max(1));
        Arc::new(Hub {
            tx,
            calls: Mutex::new(HashMap::new()),
            history,
            events_per_call,
            started: Instant::now(),
            turns: AtomicU64::new(0),
            events: AtomicU64::new(0),
            alerts: AtomicU64::new(0),
            frames_dropped: AtomicU64::new(0),
            lagged: AtomicU64::new(0),
            rejected: Mutex::new(HashMap::new()),
            latency: Histogram::new(LATENCY_S),
            stages: [
                ("frontend", Histogram::new(STAGE_MS)),
                ("asr", Histogram::new(STAGE_MS)),
                ("prosody", Histogram::new(STAGE_MS)),
                ("sentiment", Histogram::new(STAGE_MS)),
            ],
        })
    }

    /// Publish one event of a live call: to subscribers, memory and history.
    pub fn publish(&self, e: &Event) {
        let json: Arc<str> = match serde_json::to_string(e) {
            Ok(s) => s.into(),
            Err(_) => return,
        };
        let id = e.call_id().to_string();
        let now = crate::event::now_unix_ms();
        let kind = match e {
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
            Event::Summary(s) => {
                self.frames_dropped
                    .fetch_add(s.stats.frames_dropped, Ordering::Relaxed);
                "summary"
            }
        };
        self.events.fetch_add(1, Ordering::Relaxed);
        let seq = {
            let mut calls = self.calls.lock().unwrap_or_else(|p| p.into_inner());
            let c = calls.entry(id.clone()).or_insert_with(|| CallEntry {
                active: true,
                started_ms: now,
                ended_ms: None,
                summary: None,
                events: VecDeque::new(),
                seq: 0,
            });
            if kind == "summary" {
                c.active = false;
                c.ended_ms = Some(now);
                c.summary = serde_json::from_str(&json).ok();
            }
            // Partials are superseded by the turn: keep them out of the replay.
            if kind != "partial" {
                if c.events.len() >= self.events_per_call {
                    c.events.pop_front();
                }
                c.events.push_back(json.clone());
            }
            c.seq += 1;
            c.seq
        };
        if kind != "partial" {
            if let Some(h) = &self.history {
                h.write(Write::Event {
                    call_id: id.clone(),
                    seq,
                    kind: kind.into(),
                    json: json.to_string(),
                    at_ms: now,
                });
            }
        }
        let _ = self.tx.send((id, json));
    }

    /// Wait for the history writes to be committed (at shutdown).
    pub fn flush(&self, timeout: Duration) {
        if let Some(h) = &self.history {
            h.drain(timeout);
        }
    }

    fn reject(&self, why: &'static str) {
        *self
            .rejected
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .entry(why)
            .or_insert(0) += 1;
    }

    fn active_ids(&self) -> Vec<String> {
        let calls = self.calls.lock().unwrap_or_else(|p| p.into_inner());
        let mut v: Vec<String> = calls
            .iter()
            .filter(|(_, c)| c.active)
            .map(|(k, _)| k.clone())
            .collect();
        v.sort();
        v
    }

    fn metrics(&self, conns: usize) -> String {
        let mut o = String::new();
        let active = self.active_ids().len();
        let up = self.started.elapsed().as_secs_f64();
        let turns = self.turns.load(Ordering::Relaxed);
        let line = |o: &mut String, name: &str, kind: &str, help: &str, v: String| {
            o.push_str(&format!(
                "# HELP {name} {help}\n# TYPE {name} {kind}\n{name} {v}\n"
            ));
        };
        line(
            &mut o,
            "callpulse_active_calls",
            "gauge",
            "Calls being scored now.",
            active.to_string(),
        );
        line(
            &mut o,
            "callpulse_turns_total",
            "counter",
            "Final turns emitted.",
            turns.to_string(),
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
            self.events.load(Ordering::Relaxed).to_string(),
        );
        line(
            &mut o,
            "callpulse_alerts_total",
            "counter",
            "Escalation alerts.",
            self.alerts.load(Ordering::Relaxed).to_string(),
        );
        line(
            &mut o,
            "callpulse_frames_dropped_total",
            "counter",
            "Audio frames dropped because a pipeline fell behind (finished calls).",
            self.frames_dropped.load(Ordering::Relaxed).to_string(),
        );
        line(
            &mut o,
            "callpulse_subscribers",
            "gauge",
            "WebSocket and SSE subscribers.",
            self.tx.receiver_count().to_string(),
        );
        line(
            &mut o,
            "callpulse_subscriber_queue_depth",
            "gauge",
            "Events waiting for the slowest subscriber.",
            self.tx.len().to_string(),
        );
        line(
            &mut o,
            "callpulse_subscribers_cut_total",
            "counter",
            "Subscribers cut off for falling behind.",
            self.lagged.load(Ordering::Relaxed).to_string(),
        );
        if let Some(h) = &self.history {
            line(
                &mut o,
                "callpulse_history_queue_depth",
                "gauge",
                "History writes waiting.",
                h.queued().to_string(),
            );
            line(
                &mut o,
                "callpulse_history_dropped_total",
                "counter",
                "History writes dropped (queue full).",
                h.dropped.load(Ordering::Relaxed).to_string(),
            );
        }
        line(
            &mut o,
            "callpulse_http_connections",
            "gauge",
            "Open HTTP connections.",
            conns.to_string(),
        );
        o.push_str("# HELP callpulse_http_rejected_total Requests refused, by reason.\n# TYPE callpulse_http_rejected_total counter\n");
        for (k, v) in self
            .rejected
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .iter()
        {
            o.push_str(&format!(
                "callpulse_http_rejected_total{{reason=\"{k}\"}} {v}\n"
            ));
        }
        o.push_str("# HELP callpulse_turn_latency_seconds Final-turn latency after the end of speech.\n# TYPE callpulse_turn_latency_seconds histogram\n");
        self.latency
            .render("callpulse_turn_latency_seconds", "", &mut o);
        o.push_str("# HELP callpulse_stage_ms Time per turn in each pipeline stage, ms.\n# TYPE callpulse_stage_ms histogram\n");
        for (stage, h) in &self.stages {
            h.render("callpulse_stage_ms", &format!("stage=\"{stage}\""), &mut o);
        }
        o
    }
}

/// Everything the handlers share.
pub struct App {
    /// Calls and subscribers.
    pub hub: Arc<Hub>,
    engine: Engine,
    cfg: ServeConfig,
    conns: Arc<AtomicU64>,
    buckets: Mutex<HashMap<IpAddr, (f64, Instant)>>,
    scoring: tokio::sync::Semaphore,
}

#[derive(Clone, Copy)]
struct Peer(SocketAddr);

fn problem(code: StatusCode, msg: &str) -> Response {
    (
        code,
        [(header::CONTENT_TYPE, "application/json")],
        serde_json::json!({ "error": msg }).to_string(),
    )
        .into_response()
}

fn token_ok(app: &App, headers: &HeaderMap, query: Option<&str>) -> bool {
    let Some(want) = app.cfg.token.as_deref() else {
        return true;
    };
    let eq = |got: &str| {
        // Constant-time comparison.
        got.len() == want.len()
            && got
                .bytes()
                .zip(want.bytes())
                .fold(0u8, |a, (x, y)| a | (x ^ y))
                == 0
    };
    if let Some(v) = headers
        .get(header::AUTHORIZATION)
        .and_then(|v| v.to_str().ok())
    {
        if let Some(t) = v.strip_prefix("Bearer ") {
            return eq(t.trim());
        }
    }
    query
        .unwrap_or("")
        .split('&')
        .filter_map(|kv| kv.split_once('='))
        .any(|(k, v)| k == "token" && eq(v))
}

async fn guard(State(app): State<Arc<App>>, req: Request, next: Next) -> Response {
    let path = req.uri().path().to_string();
    // Rate limit per client address (token bucket, burst 2 s worth).
    if let Some(Peer(peer)) = req.extensions().get::<Peer>().copied() {
        let rate = app.cfg.rate_per_s;
        let mut b = app.buckets.lock().unwrap_or_else(|p| p.into_inner());
        if b.len() > 10_000 {
            b.clear();
        }
        let now = Instant::now();
        let e = b.entry(peer.ip()).or_insert((2.0 * rate, now));
        e.0 = (e.0 + now.duration_since(e.1).as_secs_f64() * rate).min(2.0 * rate);
        e.1 = now;
        if e.0 < 1.0 {
            drop(b);
            app.hub.reject("rate");
            return problem(
                StatusCode::TOO_MANY_REQUESTS,
                "too many requests: slow down",
            );
        }
        e.0 -= 1.0;
    }
    if path != "/healthz" && !token_ok(&app, req.headers(), req.uri().query()) {
        app.hub.reject("auth");
        return problem(
            StatusCode::UNAUTHORIZED,
            "missing or wrong token (Authorization: Bearer TOKEN)",
        );
    }
    next.run(req).await
}

/// The router (also used by tests in-process).
pub fn router(app: Arc<App>) -> Router {
    Router::new()
        .route("/", get(dashboard))
        .route("/healthz", get(healthz))
        .route("/metrics", get(metrics))
        .route("/v1/calls", get(list_calls))
        .route("/v1/calls/{id}", get(call_events))
        .route("/v1/events", get(ws_events))
        .route("/v1/events/sse", get(sse_events))
        .route("/v1/score", post(score))
        .fallback(|| async { problem(StatusCode::NOT_FOUND, "no such endpoint") })
        .layer(axum::middleware::from_fn_with_state(app.clone(), guard))
        .layer(axum::extract::DefaultBodyLimit::disable())
        .with_state(app)
}

async fn dashboard() -> Html<&'static str> {
    Html(include_str!("dashboard.html"))
}

async fn healthz(State(app): State<Arc<App>>) -> Response {
    axum::Json(serde_json::json!({
        "status": "ok",
        "version": env!("CARGO_PKG_VERSION"),
        "schema": crate::event::SCHEMA_VERSION,
        "active_calls": app.hub.active_ids().len(),
        "uptime_s": app.hub.started.elapsed().as_secs(),
    }))
    .into_response()
}

async fn metrics(State(app): State<Arc<App>>) -> Response {
    (
        [(header::CONTENT_TYPE, "text/plain; version=0.0.4")],
        app.hub.metrics(app.conns.load(Ordering::Relaxed) as usize),
    )
        .into_response()
}

#[derive(serde::Serialize)]
struct CallView {
    call_id: String,
    active: bool,
    started_ms: u64,
    ended_ms: Option<u64>,
    summary: Option<serde_json::Value>,
}

async fn list_calls(State(app): State<Arc<App>>) -> Response {
    let mut active = Vec::new();
    let mut recent = Vec::new();
    {
        let calls = app.hub.calls.lock().unwrap_or_else(|p| p.into_inner());
        for (id, c) in calls.iter() {
            let v = CallView {
                call_id: id.clone(),
                active: c.active,
                started_ms: c.started_ms,
                ended_ms: c.ended_ms,
                summary: c.summary.clone(),
            };
            if c.active {
                active.push(v);
            } else {
                recent.push(v);
            }
        }
    }
    if let Some(h) = &app.hub.history {
        if let Ok(stored) = h.recent(200) {
            for s in stored {
                if !active
                    .iter()
                    .chain(recent.iter())
                    .any(|c| c.call_id == s.call_id)
                {
                    recent.push(CallView {
                        call_id: s.call_id,
                        active: false,
                        started_ms: s.started_ms,
                        ended_ms: s.ended_ms,
                        summary: s.summary,
                    });
                }
            }
        }
    }
    active.sort_by_key(|c| std::cmp::Reverse(c.started_ms));
    recent.sort_by_key(|c| std::cmp::Reverse(c.started_ms));
    recent.truncate(200);
    axum::Json(serde_json::json!({ "active": active, "recent": recent })).into_response()
}

/// A call id as the telephony side makes them (file-name safe), not hidden.
fn valid_id(id: &str) -> bool {
    !id.starts_with('.') && crate::telephony::ua::safe_call_id(id) == id
}

async fn call_events(State(app): State<Arc<App>>, Path(id): Path<String>) -> Response {
    if !valid_id(&id) {
        app.hub.reject("bad_id");
        return problem(
            StatusCode::BAD_REQUEST,
            "bad call id: letters, digits and . _ @ - only",
        );
    }
    let mem: Option<(bool, Vec<Arc<str>>)> = {
        let calls = app.hub.calls.lock().unwrap_or_else(|p| p.into_inner());
        calls
            .get(&id)
            .map(|c| (c.active, c.events.iter().cloned().collect()))
    };
    let (active, events): (bool, Vec<String>) = match mem {
        Some((a, e)) => (a, e.iter().map(|s| s.to_string()).collect()),
        None => match app.hub.history.as_ref().map(|h| h.events(&id)) {
            Some(Ok(Some(e))) => (false, e),
            Some(Err(e)) => {
                return problem(StatusCode::INTERNAL_SERVER_ERROR, &format!("history: {e}"))
            }
            _ => return problem(StatusCode::NOT_FOUND, "no such call"),
        },
    };
    let body = format!(
        "{{\"call_id\":{},\"active\":{active},\"events\":[{}]}}",
        serde_json::Value::String(id),
        events.join(",")
    );
    ([(header::CONTENT_TYPE, "application/json")], body).into_response()
}

#[derive(serde::Deserialize)]
struct Filter {
    call: Option<String>,
}

async fn ws_events(
    State(app): State<Arc<App>>,
    Query(f): Query<Filter>,
    ws: WebSocketUpgrade,
) -> Response {
    if f.call.as_deref().is_some_and(|c| !valid_id(c)) {
        return problem(StatusCode::BAD_REQUEST, "bad call id");
    }
    let rx = app.hub.tx.subscribe();
    ws.max_message_size(64 * 1024)
        .on_upgrade(move |socket| ws_loop(app, socket, rx, f.call))
}

async fn ws_loop(
    app: Arc<App>,
    mut socket: WebSocket,
    mut rx: broadcast::Receiver<(String, Arc<str>)>,
    call: Option<String>,
) {
    let hello = serde_json::json!({
        "type": "hello",
        "schema": crate::event::SCHEMA_VERSION,
        "active_calls": app.hub.active_ids(),
    });
    if socket
        .send(Message::Text(hello.to_string().into()))
        .await
        .is_err()
    {
        return;
    }
    loop {
        tokio::select! {
            m = rx.recv() => match m {
                Ok((id, json)) => {
                    if call.as_deref().is_some_and(|c| c != id) {
                        continue;
                    }
                    let send = socket.send(Message::Text(json.to_string().into()));
                    match tokio::time::timeout(Duration::from_secs(10), send).await {
                        Ok(Ok(())) => {}
                        Ok(Err(_)) => break,
                        Err(_) => {
                            // Not reading at all: its socket is full. Cut off.
                            app.hub.lagged.fetch_add(1, Ordering::Relaxed);
                            break;
                        }
                    }
                }
                Err(broadcast::error::RecvError::Lagged(n)) => {
                    // Too slow: say so and cut it off; the others go on.
                    app.hub.lagged.fetch_add(1, Ordering::Relaxed);
                    let msg = serde_json::json!({"type": "lagged", "missed": n});
                    let _ = socket.send(Message::Text(msg.to_string().into())).await;
                    let _ = socket.send(Message::Close(None)).await;
                    break;
                }
                Err(broadcast::error::RecvError::Closed) => break,
            },
            m = socket.recv() => match m {
                Some(Ok(Message::Close(_))) | None | Some(Err(_)) => break,
                _ => {} // pings are answered by the library; text is ignored
            }
        }
    }
}

async fn sse_events(State(app): State<Arc<App>>, Query(f): Query<Filter>) -> Response {
    if f.call.as_deref().is_some_and(|c| !valid_id(c)) {
        return problem(StatusCode::BAD_REQUEST, "bad call id");
    }
    let rx = app.hub.tx.subscribe();
    let stream = futures_util::stream::unfold(
        (rx, f.call, app, false),
        |(mut rx, call, app, done)| async move {
            if done {
                return None;
            }
            loop {
                match rx.recv().await {
                    Ok((id, json)) => {
                        if call.as_deref().is_some_and(|c| c != id) {
                            continue;
                        }
                        let ev = SseEvent::default().data(&*json);
                        return Some((
                            Ok::<_, std::convert::Infallible>(ev),
                            (rx, call, app, false),
                        ));
                    }
                    Err(broadcast::error::RecvError::Lagged(n)) => {
                        app.hub.lagged.fetch_add(1, Ordering::Relaxed);
                        let ev = SseEvent::default()
                            .event("lagged")
                            .data(serde_json::json!({"type": "lagged", "missed": n}).to_string());
                        return Some((Ok(ev), (rx, call, app, true)));
                    }
                    Err(broadcast::error::RecvError::Closed) => return None,
                }
            }
        },
    );
    Sse::new(stream)
        .keep_alive(KeepAlive::default())
        .into_response()
}

#[derive(serde::Deserialize)]
struct ScoreQuery {
    call_id: Option<String>,
}

/// Stream the body to a temporary file, refusing past the limit or on a stall.
async fn save_upload(
    app: &App,
    headers: &HeaderMap,
    body: Body,
) -> Result<tempfile::NamedTempFile, Response> {
    use http_body_util::BodyExt;
    use std::io::Write as _;
    let limit = app.cfg.max_upload;
    if let Some(len) = headers
        .get(header::CONTENT_LENGTH)
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.parse::<u64>().ok())
    {
        if len > limit {
            app.hub.reject("too_large");
            return Err(problem(
                StatusCode::PAYLOAD_TOO_LARGE,
                &format!("upload of {len} bytes is over the limit of {limit}"),
            ));
        }
    }
    let ct = headers
        .get(header::CONTENT_TYPE)
        .and_then(|v| v.to_str().ok())
        .unwrap_or("")
        .to_string();
    let mut file = tempfile::NamedTempFile::new().map_err(|e| {
        problem(
            StatusCode::INTERNAL_SERVER_ERROR,
            &format!("temporary file: {e}"),
        )
    })?;
    let mut written: u64 = 0;
    let idle = app.cfg.body_idle_timeout;
    let mut push = |bytes: &[u8], written: &mut u64| -> Result<(), (StatusCode, String)> {
        *written += bytes.len() as u64;
        if *written > limit {
            app.hub.reject("too_large");
            return Err((
                StatusCode::PAYLOAD_TOO_LARGE,
                format!("upload over the limit of {limit} bytes"),
            ));
        }
        file.write_all(bytes).map_err(|e| {
            (
                StatusCode::INTERNAL_SERVER_ERROR,
                format!("temporary file: {e}"),
            )
        })
    };
    let fail = |(c, m): (StatusCode, String)| problem(c, &m);
    if ct.starts_with("multipart/form-data") {
        let boundary = multer::parse_boundary(&ct).map_err(|e| {
            app.hub.reject("bad_multipart");
            problem(StatusCode::BAD_REQUEST, &format!("multipart: {e}"))
        })?;
        let mut mp = multer::Multipart::new(body.into_data_stream(), boundary);
        let bad = |e: multer::Error| {
            app.hub.reject("bad_multipart");
            problem(StatusCode::BAD_REQUEST, &format!("multipart: {e}"))
        };
        let field = tokio::time::timeout(idle, mp.next_field())
            .await
            .map_err(|_| problem(StatusCode::REQUEST_TIMEOUT, "upload stalled"))?
            .map_err(bad)?;
        let Some(mut field) = field else {
            return Err(problem(
                StatusCode::BAD_REQUEST,
                "multipart body has no file part",
            ));
        };
        loop {
            let chunk = tokio::time::timeout(idle, field.chunk())
                .await
                .map_err(|_| problem(StatusCode::REQUEST_TIMEOUT, "upload stalled"))?
                .map_err(bad)?;
            match chunk {
                Some(c) => push(&c, &mut written).map_err(fail)?,
                None => break,
            }
        }
    } else {
        let mut body = body;
        loop {
            let frame = tokio::time::timeout(idle, body.frame())
                .await
                .map_err(|_| problem(StatusCode::REQUEST_TIMEOUT, "upload stalled"))?;
            match frame {
                None => break,
                Some(Err(e)) => {
                    app.hub.reject("bad_body");
                    return Err(problem(
                        StatusCode::BAD_REQUEST,
                        &format!("upload broken off: {e}"),
                    ));
                }
                Some(Ok(f)) => {
                    if let Ok(d) = f.into_data() {
                        push(&d, &mut written).map_err(fail)?;
                    }
                }
            }
        }
    }
    file.flush().map_err(|e| {
        problem(
            StatusCode::INTERNAL_SERVER_ERROR,
            &format!("temporary file: {e}"),
        )
    })?;
    // A WAV file starts with RIFF....WAVE.
    let mut head = [0u8; 12];
    use std::io::{Read as _, Seek as _};
    let f = file.as_file_mut();
    let _ = f.rewind();
    let n = f.read(&mut head).unwrap_or(0);
    if n < 12 || &head[0..4] != b"RIFF" || &head[8..12] != b"WAVE" {
        app.hub.reject("not_wav");
        return Err(problem(
            StatusCode::UNSUPPORTED_MEDIA_TYPE,
            "the upload is not a WAV file (RIFF/WAVE header expected)",
        ));
    }
    Ok(file)
}

async fn score(
    State(app): State<Arc<App>>,
    Query(q): Query<ScoreQuery>,
    headers: HeaderMap,
    body: Body,
) -> Response {
    let call_id = q.call_id.unwrap_or_else(|| "upload".into());
    if !valid_id(&call_id) {
        return problem(StatusCode::BAD_REQUEST, "bad call_id");
    }
    let Ok(_permit) = app.scoring.try_acquire() else {
        app.hub.reject("busy");
        return problem(
            StatusCode::SERVICE_UNAVAILABLE,
            "scoring capacity in use: retry later",
        );
    };
    let file = match save_upload(&app, &headers, body).await {
        Ok(f) => f,
        Err(r) => return r,
    };
    let engine = app.engine.clone();
    let res = tokio::task::spawn_blocking(move || {
        let mut events = Vec::new();
        let r = engine.score_file(file.path(), &call_id, &mut |e| events.push(e), &|_, _| {});
        (r, events)
    })
    .await;
    match res {
        Ok((Ok(_), events)) => axum::Json(events).into_response(),
        Ok((Err(e), _)) => problem(StatusCode::UNPROCESSABLE_ENTITY, &e.to_string()),
        Err(_) => problem(StatusCode::INTERNAL_SERVER_ERROR, "scoring failed"),
    }
}

/// Build the shared state.
pub fn app(engine: Engine, hub: Arc<Hub>, cfg: ServeConfig) -> Arc<App> {
    Arc::new(App {
        hub,
        engine,
        cfg,
        conns: Arc::new(AtomicU64::new(0)),
        buckets: Mutex::new(HashMap::new()),
        scoring: tokio::sync::Semaphore::new(2),
    })
}

/// Serve HTTP until `stop` resolves: a connection limit, a header read
/// timeout (slow clients are dropped), WebSocket upgrades.
pub async fn serve(
    app: Arc<App>,
    listener: tokio::net::TcpListener,
    stop: impl std::future::Future<Output = ()>,
) -> std::io::Result<()> {
    use hyper_util::rt::{TokioIo, TokioTimer};
    use tower::ServiceExt;
    let router = router(app.clone());
    let limit = Arc::new(tokio::sync::Semaphore::new(app.cfg.max_connections));
    tokio::pin!(stop);
    loop {
        let (stream, peer) = tokio::select! {
            r = listener.accept() => match r {
                Ok(x) => x,
                Err(e) => {
                    tracing::warn!("accept: {e}");
                    tokio::time::sleep(Duration::from_millis(50)).await;
                    continue;
                }
            },
            _ = &mut stop => return Ok(()),
        };
        // A small send buffer: a subscriber that stops reading blocks its
        // sender soon, falls behind the broadcast and is cut off, instead
        // of megabytes piling up in the kernel for it.
        let _ = socket2::SockRef::from(&stream).set_send_buffer_size(64 * 1024);
        let Ok(permit) = limit.clone().try_acquire_owned() else {
            app.hub.reject("connections");
            drop(stream);
            continue;
        };
        let router = router.clone();
        let conns = app.conns.clone();
        let header_timeout = app.cfg.header_timeout;
        tokio::spawn(async move {
            conns.fetch_add(1, Ordering::Relaxed);
            let svc = hyper::service::service_fn(
                move |mut req: hyper::Request<hyper::body::Incoming>| {
                    req.extensions_mut().insert(Peer(peer));
                    router.clone().oneshot(req.map(Body::new))
                },
            );
            let conn = hyper::server::conn::http1::Builder::new()
                .timer(TokioTimer::new())
                .header_read_timeout(header_timeout)
                .max_buf_size(64 * 1024)
                .serve_connection(TokioIo::new(stream), svc)
                .with_upgrades();
            if let Err(e) = conn.await {
                tracing::debug!("connection from {peer}: {e}");
            }
            conns.fetch_sub(1, Ordering::Relaxed);
            drop(permit);
        });
    }
}
