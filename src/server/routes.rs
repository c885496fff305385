//! The routes: dashboard, health, metrics, calls, event streams, scoring.
//! History reads run on blocking threads, never on the runtime's workers.

use std::sync::atomic::Ordering;
use std::sync::Arc;
use std::time::Duration;

use axum::extract::ws::{Message, WebSocket, WebSocketUpgrade};
use axum::extract::{Path, Query, State};
use axum::http::{header, StatusCode};
use axum::response::sse::{Event as SseEvent, KeepAlive, Sse};
use axum::response::{Html, IntoResponse, Response};
use axum::routing::{get, post};
use axum::Router;
use tokio::sync::broadcast;

use super::history::StoredCall;
use super::{auth, problem, uploads, valid_id, App};

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
        .route("/v1/score", post(uploads::score))
        .route("/v1/insights", get(insights))
        .fallback(|| async { problem(StatusCode::NOT_FOUND, "no such endpoint") })
        .layer(axum::middleware::from_fn_with_state(
            app.clone(),
            auth::guard,
        ))
        .layer(axum::extract::DefaultBodyLimit::disable())
        .with_state(app)
}

async fn dashboard() -> Html<&'static str> {
    Html(include_str!("dashboard.html"))
}

async fn healthz(State(app): State<Arc<App>>) -> Response {
    let mut v = serde_json::json!({
        "status": "ok",
        "version": env!("CARGO_PKG_VERSION"),
        "schema": crate::event::SCHEMA_VERSION,
        "active_calls": app.hub.active_ids().len(),
        "uptime_s": app.hub.metrics.started.elapsed().as_secs(),
    });
    // With --nats: whether it is connected (a server that lost NATS still
    // serves its own calls and the history, so the status stays ok).
    if let Some(n) = app
        .hub
        .metrics
        .nats
        .lock()
        .unwrap_or_else(|p| p.into_inner())
        .as_ref()
    {
        v["nats"] = serde_json::json!(if n.connected {
            "connected"
        } else {
            "disconnected"
        });
        v["queue"] = serde_json::to_value(&n.queue).unwrap_or_default();
    }
    axum::Json(v).into_response()
}

async fn metrics(State(app): State<Arc<App>>) -> Response {
    (
        [(header::CONTENT_TYPE, "text/plain; version=0.0.4")],
        app.hub
            .render_metrics(app.conns.load(Ordering::Relaxed) as usize),
    )
        .into_response()
}

/// Run a history read on a blocking thread.
async fn from_history<T: Send + 'static>(
    app: &Arc<App>,
    f: impl FnOnce(&super::history::History) -> Result<T, String> + Send + 'static,
) -> Option<Result<T, String>> {
    app.hub.history.as_ref()?;
    let hub = app.hub.clone();
    let r = tokio::task::spawn_blocking(move || hub.history.as_ref().map(f)).await;
    match r {
        Ok(x) => x,
        Err(e) => Some(Err(e.to_string())),
    }
}

/// Calls listed at most.
const LIST: usize = 200;

async fn list_calls(State(app): State<Arc<App>>) -> Response {
    let mut active = Vec::new();
    let mut recent = Vec::new();
    {
        let calls = app.hub.calls();
        for (id, c) in calls.map.iter() {
            let v = StoredCall {
                call_id: id.clone(),
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
    if let Some(Ok(stored)) = from_history(&app, |h| h.recent(LIST)).await {
        for s in stored {
            if !active
                .iter()
                .chain(recent.iter())
                .any(|c| c.call_id == s.call_id)
            {
                recent.push(s);
            }
        }
    }
    active.sort_by_key(|c| std::cmp::Reverse(c.started_ms));
    recent.sort_by_key(|c| std::cmp::Reverse(c.started_ms));
    recent.truncate(LIST);
    let view = |c: StoredCall, active: bool| {
        serde_json::json!({
            "call_id": c.call_id, "active": active, "started_ms": c.started_ms,
            "ended_ms": c.ended_ms, "summary": c.summary,
        })
    };
    let active: Vec<_> = active.into_iter().map(|c| view(c, true)).collect();
    let recent: Vec<_> = recent.into_iter().map(|c| view(c, false)).collect();
    axum::Json(serde_json::json!({ "active": active, "recent": recent })).into_response()
}

#[derive(serde::Deserialize)]
struct InsightsQuery {
    since: Option<String>,
    until: Option<String>,
    by: Option<String>,
    agent: Option<String>,
    /// `json` (default), `html` (the report page) or `fragment` (its body,
    /// for the dashboard).
    format: Option<String>,
}

/// Calls insights cover at most (the most recent).
const INSIGHTS_CALLS: usize = 100_000;

/// `GET /v1/insights`: the `insights` report over the finished calls in
/// memory and in the history.
async fn insights(State(app): State<Arc<App>>, Query(q): Query<InsightsQuery>) -> Response {
    use crate::insights::{self, time::parse_time, By, CallRecord, Filter};
    let bad = |m: String| problem(StatusCode::BAD_REQUEST, &m);
    let time = |s: &Option<String>, end: bool| -> Result<Option<u64>, String> {
        s.as_deref()
            .map(|v| {
                if end {
                    crate::insights::time::parse_until(v)
                } else {
                    parse_time(v)
                }
            })
            .transpose()
    };
    let (since_ms, until_ms) = match (time(&q.since, false), time(&q.until, true)) {
        (Ok(a), Ok(b)) => (a, b),
        (Err(e), _) | (_, Err(e)) => return bad(e),
    };
    let by = match q.by.as_deref().unwrap_or("day") {
        "agent" => By::Agent,
        "day" => By::Day,
        "week" => By::Week,
        "topic" => By::Topic,
        other => return bad(format!("by '{other}': expected agent, day, week or topic")),
    };
    let format = q.format.unwrap_or_else(|| "json".into());
    if !matches!(format.as_str(), "json" | "html" | "fragment") {
        return bad(format!(
            "format '{format}': expected json, html or fragment"
        ));
    }
    let filter = Filter {
        since_ms,
        until_ms,
        agent: q.agent.filter(|a| !a.is_empty()),
        by,
    };
    let mut seen = std::collections::HashSet::new();
    let mut records = Vec::new();
    {
        let calls = app.hub.calls();
        for (id, c) in calls.map.iter() {
            if let Some(s) = c
                .summary
                .as_ref()
                .and_then(|v| serde_json::from_value::<crate::event::SummaryEvent>(v.clone()).ok())
            {
                seen.insert(id.clone());
                records.push(CallRecord::from_summary(&s, Some(c.started_ms)));
            }
        }
    }
    // The calls' own start times may differ from when the server stored
    // them (uploads of old recordings): a day of slack here, the exact
    // filter in the report.
    const DAY: u64 = 86_400_000;
    let lo = since_ms.map_or(0, |t| t.saturating_sub(DAY));
    let hi = until_ms.map_or(u64::MAX, |t| t.saturating_add(DAY));
    match from_history(&app, move |h| h.summaries(INSIGHTS_CALLS, lo, hi)).await {
        Some(Ok(rows)) => {
            for (id, started, json) in rows {
                if seen.contains(&id) {
                    continue;
                }
                if let Ok(s) = serde_json::from_str::<crate::event::SummaryEvent>(&json) {
                    records.push(CallRecord::from_summary(&s, Some(started)));
                }
            }
        }
        Some(Err(e)) => {
            return problem(StatusCode::INTERNAL_SERVER_ERROR, &format!("history: {e}"))
        }
        None => {}
    }
    let r = insights::report(&records, &filter);
    match format.as_str() {
        "html" => Html(insights::html::render(&r)).into_response(),
        "fragment" => Html(insights::html::fragment(&r)).into_response(),
        _ => axum::Json(r).into_response(),
    }
}

async fn call_events(State(app): State<Arc<App>>, Path(id): Path<String>) -> Response {
    if !valid_id(&id) {
        app.hub.metrics.reject("bad_id");
        return problem(
            StatusCode::BAD_REQUEST,
            "bad call id: letters, digits and . _ @ - only",
        );
    }
    let mem: Option<(bool, Vec<Arc<str>>)> = app
        .hub
        .calls()
        .map
        .get(&id)
        .map(|c| (c.active, c.events.iter().cloned().collect()));
    let (active, events): (bool, Vec<String>) = match mem {
        Some((a, e)) => (a, e.iter().map(|s| s.to_string()).collect()),
        None => {
            let key = id.clone();
            match from_history(&app, move |h| h.events(&key)).await {
                Some(Ok(Some(e))) => (false, e),
                Some(Err(e)) => {
                    return problem(StatusCode::INTERNAL_SERVER_ERROR, &format!("history: {e}"))
                }
                _ => return problem(StatusCode::NOT_FOUND, "no such call"),
            }
        }
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
                            app.hub.metrics.lagged.fetch_add(1, Ordering::Relaxed);
                            break;
                        }
                    }
                }
                Err(broadcast::error::RecvError::Lagged(n)) => {
                    // Too slow: say so and cut it off; the others go on.
                    app.hub.metrics.lagged.fetch_add(1, Ordering::Relaxed);
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
                        app.hub.metrics.lagged.fetch_add(1, Ordering::Relaxed);
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
