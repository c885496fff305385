//! `POST /v1/score`: an upload streamed to a temporary file (written off
//! the runtime), checked, then scored on a blocking thread. The scoring
//! permit is taken only once the whole upload has arrived, so slow
//! uploads cannot hold the scoring slots; the upload as a whole must
//! arrive within `upload_timeout`, and may not stall longer than
//! `body_idle_timeout` between chunks.

use std::io::Write as _;
use std::sync::Arc;

use axum::body::Body;
use axum::extract::{Query, State};
use axum::http::{header, HeaderMap, StatusCode};
use axum::response::{IntoResponse, Response};
use http_body_util::BodyExt;

use super::hub::HubSinks;
use super::{problem, valid_id, App};
use crate::sink::calls::CallSinks;

/// Bytes gathered before a write to the temporary file.
const WRITE_BATCH: usize = 256 * 1024;

/// A temporary file written on blocking threads.
struct Spool {
    file: Option<tempfile::NamedTempFile>,
    buf: Vec<u8>,
    written: u64,
    limit: u64,
}

type Refusal = (StatusCode, &'static str, String);

impl Spool {
    fn new(limit: u64) -> Result<Self, Refusal> {
        let file = tempfile::NamedTempFile::new().map_err(|e| {
            (
                StatusCode::INTERNAL_SERVER_ERROR,
                "",
                format!("temporary file: {e}"),
            )
        })?;
        Ok(Spool {
            file: Some(file),
            buf: Vec::with_capacity(WRITE_BATCH),
            written: 0,
            limit,
        })
    }

    async fn push(&mut self, bytes: &[u8]) -> Result<(), Refusal> {
        self.written += bytes.len() as u64;
        if self.written > self.limit {
            return Err((
                StatusCode::PAYLOAD_TOO_LARGE,
                "too_large",
                format!("upload over the limit of {} bytes", self.limit),
            ));
        }
        self.buf.extend_from_slice(bytes);
        if self.buf.len() >= WRITE_BATCH {
            self.flush().await?;
        }
        Ok(())
    }

    async fn flush(&mut self) -> Result<(), Refusal> {
        let (Some(mut f), buf) = (self.file.take(), std::mem::take(&mut self.buf)) else {
            return Ok(());
        };
        let r = tokio::task::spawn_blocking(move || {
            let r = f.write_all(&buf).and_then(|_| f.flush());
            (f, r)
        })
        .await;
        let fail = |e: String| {
            (
                StatusCode::INTERNAL_SERVER_ERROR,
                "",
                format!("temporary file: {e}"),
            )
        };
        let (f, r) = r.map_err(|e| fail(e.to_string()))?;
        r.map_err(|e| fail(e.to_string()))?;
        self.file = Some(f);
        Ok(())
    }

    /// Flush, then check the RIFF/WAVE header (unless `wav` is false: a
    /// JSON conversation).
    async fn finish(mut self, wav: bool) -> Result<tempfile::NamedTempFile, Refusal> {
        self.flush().await?;
        let Some(f) = self.file.take() else {
            return Err((
                StatusCode::INTERNAL_SERVER_ERROR,
                "",
                "temporary file lost".into(),
            ));
        };
        let checked = tokio::task::spawn_blocking(move || {
            use std::io::Read as _;
            let mut head = [0u8; 12];
            let n = std::fs::File::open(f.path())
                .and_then(|mut r| r.read(&mut head))
                .unwrap_or(0);
            let ok = !wav || (n >= 12 && &head[0..4] == b"RIFF" && &head[8..12] == b"WAVE");
            (f, ok)
        })
        .await;
        match checked {
            Ok((f, true)) => Ok(f),
            Ok((_, false)) => Err((
                StatusCode::UNSUPPORTED_MEDIA_TYPE,
                "not_wav",
                "the upload is not a WAV file (RIFF/WAVE header expected)".into(),
            )),
            Err(e) => Err((StatusCode::INTERNAL_SERVER_ERROR, "", e.to_string())),
        }
    }
}

fn stalled() -> Refusal {
    (
        StatusCode::REQUEST_TIMEOUT,
        "stalled",
        "upload stalled".into(),
    )
}

/// Read the body (raw, or the first part of a multipart form) into `spool`.
async fn receive(app: &App, ct: &str, body: Body, spool: &mut Spool) -> Result<(), Refusal> {
    let idle = app.cfg.body_idle_timeout;
    if ct.starts_with("multipart/form-data") {
        let bad = |e: multer::Error| {
            (
                StatusCode::BAD_REQUEST,
                "bad_multipart",
                format!("multipart: {e}"),
            )
        };
        let boundary = multer::parse_boundary(ct).map_err(bad)?;
        let mut mp = multer::Multipart::new(body.into_data_stream(), boundary);
        let field = tokio::time::timeout(idle, mp.next_field())
            .await
            .map_err(|_| stalled())?
            .map_err(bad)?;
        let Some(mut field) = field else {
            return Err((
                StatusCode::BAD_REQUEST,
                "bad_multipart",
                "multipart body has no file part".into(),
            ));
        };
        while let Some(c) = tokio::time::timeout(idle, field.chunk())
            .await
            .map_err(|_| stalled())?
            .map_err(bad)?
        {
            spool.push(&c).await?;
        }
        return Ok(());
    }
    let mut body = body;
    while let Some(frame) = tokio::time::timeout(idle, body.frame())
        .await
        .map_err(|_| stalled())?
    {
        let f = frame.map_err(|e| {
            (
                StatusCode::BAD_REQUEST,
                "bad_body",
                format!("upload broken off: {e}"),
            )
        })?;
        if let Ok(d) = f.into_data() {
            spool.push(&d).await?;
        }
    }
    Ok(())
}

/// Stream the body to a temporary file under the size limit, the idle
/// timeout and the total deadline.
async fn save_upload(
    app: &App,
    headers: &HeaderMap,
    body: Body,
) -> Result<tempfile::NamedTempFile, Refusal> {
    let limit = app.cfg.max_upload;
    if let Some(len) = headers
        .get(header::CONTENT_LENGTH)
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.parse::<u64>().ok())
    {
        if len > limit {
            return Err((
                StatusCode::PAYLOAD_TOO_LARGE,
                "too_large",
                format!("upload of {len} bytes is over the limit of {limit}"),
            ));
        }
    }
    let ct = headers
        .get(header::CONTENT_TYPE)
        .and_then(|v| v.to_str().ok())
        .unwrap_or("")
        .to_string();
    let mut spool = Spool::new(limit)?;
    let deadline = app.cfg.upload_timeout;
    match tokio::time::timeout(deadline, receive(app, &ct, body, &mut spool)).await {
        Ok(r) => r?,
        Err(_) => {
            return Err((
                StatusCode::REQUEST_TIMEOUT,
                "upload_timeout",
                format!("upload took longer than {} s", deadline.as_secs_f64()),
            ))
        }
    }
    spool
        .finish(!ct.to_ascii_lowercase().starts_with("application/json"))
        .await
}

#[derive(serde::Deserialize)]
pub(super) struct ScoreQuery {
    call_id: Option<String>,
    agent_id: Option<String>,
}

/// A written conversation in an `application/json` body: an array of
/// {role, text, ts?}, or {"messages": [...]}.
fn text_messages(raw: &str) -> Result<Vec<crate::chat::Message>, String> {
    use crate::chat::{parse, TextFormat};
    let v: serde_json::Value =
        serde_json::from_str(raw).map_err(|e| format!("body is not JSON: {e}"))?;
    let list = match &v {
        serde_json::Value::Array(a) => a,
        serde_json::Value::Object(o) => match o.get("messages") {
            Some(serde_json::Value::Array(a)) => a,
            _ => {
                return Err(
                    "expected an array of {role, text, ts?} or {\"messages\": [...]}".into(),
                )
            }
        },
        _ => return Err("expected an array of {role, text, ts?} or {\"messages\": [...]}".into()),
    };
    let lines: Vec<String> = list.iter().map(|m| m.to_string()).collect();
    parse(&lines.join("\n"), TextFormat::Jsonl, &[]).map_err(|e| format!("message {e}"))
}

pub(super) async fn score(
    State(app): State<Arc<App>>,
    Query(q): Query<ScoreQuery>,
    headers: HeaderMap,
    body: Body,
) -> Response {
    let base = q.call_id.unwrap_or_else(|| "upload".into());
    if !valid_id(&base) {
        app.hub.metrics.reject("bad_id");
        return problem(StatusCode::BAD_REQUEST, "bad call_id");
    }
    let ct = headers
        .get(header::CONTENT_TYPE)
        .and_then(|v| v.to_str().ok())
        .unwrap_or("")
        .to_ascii_lowercase();
    let text = ct.starts_with("application/json");
    let agent_id = q.agent_id.filter(|a| valid_id(a));
    let file = match save_upload(&app, &headers, body).await {
        Ok(f) => f,
        Err((code, why, msg)) => {
            if !why.is_empty() {
                app.hub.metrics.reject(why);
            }
            return problem(code, &msg);
        }
    };
    // The upload is here: only now does it need a scoring slot.
    let Ok(permit) = app.scoring.clone().try_acquire_owned() else {
        app.hub.metrics.reject("busy");
        return problem(
            StatusCode::SERVICE_UNAVAILABLE,
            "scoring capacity in use: retry later",
        );
    };
    let (engine, hub) = (app.engine.clone(), app.hub.clone());
    let res = tokio::task::spawn_blocking(move || {
        let _permit = permit;
        let messages = if text {
            let raw = std::fs::read_to_string(file.path())
                .map_err(|e| format!("body is not UTF-8 text: {e}"))?;
            Some(text_messages(&raw)?)
        } else {
            None
        };
        let (id, mut publish) = HubSinks(hub).open(&base).map_err(|e| e.to_string())?;
        let mut events = Vec::new();
        let meta = crate::event::CallMeta {
            agent_id,
            // Chat: the first message's time, when it has one.
            started_unix_ms: (!text).then(crate::event::now_unix_ms),
            channel: None,
        };
        let mut sink = |e: crate::event::Event| {
            publish(e.clone());
            events.push(e)
        };
        let r = match &messages {
            Some(m) => engine
                .score_text(m, &id, meta, &mut sink)
                .map(|_| ())
                .map_err(|e| e.to_string()),
            None => engine
                .score_file_with(file.path(), &id, meta, &mut sink, &|_, _| {})
                .map(|_| ())
                .map_err(|e| e.to_string()),
        };
        r.map(|_| events)
    })
    .await;
    match res {
        Ok(Ok(events)) => axum::Json(events).into_response(),
        Ok(Err(e)) => problem(StatusCode::UNPROCESSABLE_ENTITY, &e),
        Err(_) => problem(StatusCode::INTERNAL_SERVER_ERROR, "scoring failed"),
    }
}
