//! `callpulse serve`: the live monitoring server.
//!
//! - `GET /` the dashboard (embedded; nothing is fetched from elsewhere);
//! - `GET /v1/events` (WebSocket) and `GET /v1/events/sse` (server-sent
//!   events): every event of every call, or of one with `?call=ID`;
//! - `POST /v1/score`: a WAV upload (raw body or multipart), streamed to
//!   disk under a size limit and a deadline, scored like `callpulse score`;
//!   the events come back as a JSON array (and go to the history);
//! - `GET /v1/calls`, `GET /v1/calls/{id}`: active and recent calls, one
//!   call's events (from memory, else from the history database);
//! - `GET /healthz`, `GET /metrics` (Prometheus text format).
//!
//! The code, by concern:
//! - [`hub`]: calls in memory (bounded), unique ids, publishing;
//! - [`history`]: the SQLite history;
//! - [`metrics`]: counters and histograms;
//! - [`auth`]: token and rate limit;
//! - [`routes`]: the handlers; [`uploads`]: `POST /v1/score`;
//! - [`accept`]: the accept loop and its limits.
//!
//! Security: 127.0.0.1 by default; any other address needs a token
//! (`Authorization: Bearer`, or `?token=` on the WebSocket and SSE routes
//! only). Limits on connections, request rate per client, header read time
//! (slow clients), upload size, idle upload time and total upload time.
//! See `docs/server.md`.

pub mod accept;
pub mod auth;
pub mod history;
pub mod hub;
pub mod metrics;
pub mod routes;
pub mod uploads;

use std::net::SocketAddr;
use std::path::PathBuf;
use std::sync::atomic::AtomicU64;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use axum::http::{header, StatusCode};
use axum::response::{IntoResponse, Response};

use crate::pipeline::Engine;

pub use accept::serve;
pub use hub::{Hub, HubLimits, HubSinks, SUBSCRIBER_BUFFER};
pub use routes::router;

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
    /// A whole upload must arrive within this time.
    pub upload_timeout: Duration,
    /// Uploads scored at once.
    pub scoring_slots: usize,
    /// History database (None = memory only).
    pub db: Option<PathBuf>,
    /// Keep finished calls this many days in the database.
    pub retention_days: u32,
    /// Memory limits of the call hub.
    pub limits: HubLimits,
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

/// Everything the handlers share.
pub struct App {
    /// Calls and subscribers.
    pub hub: Arc<Hub>,
    engine: Engine,
    cfg: ServeConfig,
    conns: Arc<AtomicU64>,
    buckets: Mutex<auth::Buckets>,
    scoring: Arc<tokio::sync::Semaphore>,
}

/// The client's address, set by the accept loop.
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

/// A call id as the telephony side makes them (file-name safe), not hidden.
fn valid_id(id: &str) -> bool {
    !id.starts_with('.') && crate::telephony::ua::safe_call_id(id) == id
}

/// Build the shared state.
pub fn app(engine: Engine, hub: Arc<Hub>, cfg: ServeConfig) -> Arc<App> {
    Arc::new(App {
        hub,
        engine,
        buckets: Mutex::new(auth::Buckets::new(cfg.rate_per_s)),
        scoring: Arc::new(tokio::sync::Semaphore::new(cfg.scoring_slots.max(1))),
        cfg,
        conns: Arc::new(AtomicU64::new(0)),
    })
}
