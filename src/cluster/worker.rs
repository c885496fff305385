//! `callpulse worker`: take scoring jobs from the work queue, one per slot
//! (`--jobs`), score them with the loaded engine, publish their events,
//! store the result, then acknowledge. While a job is scored the worker
//! reports it in progress every third of `ack_wait`, so a long call is not
//! redelivered; a worker that dies stops reporting and the job goes to
//! another worker once `ack_wait` has passed. A job that fails
//! `max_attempts` times goes to the dead letters with its error.

use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::Arc;
use std::time::Duration;

use async_nats::jetstream::{self, object_store::ObjectMetadata, AckKind};
use futures_util::StreamExt;
use serde::Serialize;

use super::{
    exists, names, read_object, result_name, Cluster, ClusterConfig, DeadLetter, Job, Recording,
};
use crate::event::{now_unix_ms, CallMeta, Event};
use crate::pipeline::Engine;

/// How a worker runs.
#[derive(Debug, Clone)]
pub struct WorkerOptions {
    /// Its name (in logs, heartbeats and results).
    pub name: String,
    /// Jobs scored at once.
    pub jobs: usize,
    /// Timings and attempts.
    pub cfg: ClusterConfig,
    /// Set to drain: finish the jobs in hand, take no more.
    pub stop: Arc<AtomicBool>,
    /// Jobs may name files under these directories (none: no path jobs).
    pub allow_paths: Vec<std::path::PathBuf>,
    /// Jobs may name http(s) URLs for the worker to fetch.
    pub allow_urls: bool,
}

/// What a worker did.
#[derive(Debug, Default, Serialize)]
pub struct WorkerStats {
    /// Jobs scored and stored.
    pub done: AtomicU64,
    /// Jobs whose result was already stored (redelivered after a crash).
    pub already_stored: AtomicU64,
    /// Attempts that failed and were handed back for a retry.
    pub retried: AtomicU64,
    /// Jobs sent to the dead letters.
    pub dead: AtomicU64,
    /// Jobs in hand now.
    pub in_hand: AtomicU64,
}

/// The worker's heartbeat on `callpulse.workers.<name>`.
#[derive(Debug, Serialize, serde::Deserialize, Clone, PartialEq)]
pub struct Heartbeat {
    pub worker: String,
    pub slots: usize,
    pub in_hand: u64,
    pub done: u64,
    pub dead: u64,
    pub at_unix_ms: u64,
}

fn err(e: impl std::fmt::Display) -> String {
    e.to_string()
}

/// Run until `stop` is set (then drain) or NATS fails for good.
pub async fn run(
    engine: Engine,
    c: Arc<Cluster>,
    o: WorkerOptions,
) -> Result<Arc<WorkerStats>, String> {
    let stats = Arc::new(WorkerStats::default());
    let beat = {
        let (client, stats, o) = (c.client.clone(), stats.clone(), o.clone());
        tokio::spawn(async move {
            while !o.stop.load(Ordering::SeqCst) {
                let hb = Heartbeat {
                    worker: o.name.clone(),
                    slots: o.jobs,
                    in_hand: stats.in_hand.load(Ordering::SeqCst),
                    done: stats.done.load(Ordering::SeqCst),
                    dead: stats.dead.load(Ordering::SeqCst),
                    at_unix_ms: now_unix_ms(),
                };
                if let Ok(b) = serde_json::to_vec(&hb) {
                    let _ = client
                        .publish(format!("{}{}", names::WORKERS_PREFIX, o.name), b.into())
                        .await;
                }
                tokio::time::sleep(Duration::from_secs(2)).await;
            }
        })
    };
    let mut slots = Vec::new();
    for slot in 0..o.jobs.max(1) {
        let (engine, c, o, stats) = (engine.clone(), c.clone(), o.clone(), stats.clone());
        slots.push(tokio::spawn(async move {
            slot_loop(slot, engine, c, o, stats).await
        }));
    }
    let mut first_err = None;
    for s in slots {
        match s.await {
            Ok(Ok(())) => {}
            Ok(Err(e)) => {
                first_err.get_or_insert(e);
            }
            Err(e) => {
                first_err.get_or_insert(e.to_string());
            }
        }
    }
    o.stop.store(true, Ordering::SeqCst);
    let _ = beat.await;
    let _ = c.client.flush().await;
    match first_err {
        Some(e) => Err(e),
        None => Ok(stats),
    }
}

async fn slot_loop(
    slot: usize,
    engine: Engine,
    c: Arc<Cluster>,
    o: WorkerOptions,
    stats: Arc<WorkerStats>,
) -> Result<(), String> {
    let mut failures = 0u32;
    while !o.stop.load(Ordering::SeqCst) {
        let batch = c
            .consumer
            .fetch()
            .max_messages(1)
            .expires(Duration::from_secs(2))
            .messages()
            .await;
        let mut batch = match batch {
            Ok(b) => {
                failures = 0;
                b
            }
            Err(e) => {
                // NATS away: keep trying for a while (the client reconnects).
                failures += 1;
                if failures > 30 {
                    return Err(format!("cannot fetch jobs: {e}"));
                }
                tokio::time::sleep(Duration::from_secs(1)).await;
                continue;
            }
        };
        while let Some(m) = batch.next().await {
            let Ok(m) = m else { continue };
            stats.in_hand.fetch_add(1, Ordering::SeqCst);
            let r = handle(slot, &engine, &c, &o, &stats, m).await;
            stats.in_hand.fetch_sub(1, Ordering::SeqCst);
            if let Err(e) = r {
                eprintln!("callpulse worker {}: {e}", o.name);
            }
        }
    }
    Ok(())
}

/// Score one job's audio on a blocking thread: its events, or the error.
async fn score(
    engine: &Engine,
    c: &Cluster,
    o: &WorkerOptions,
    job: &Job,
) -> Result<Vec<Event>, String> {
    let (path, _tmp) = match &job.recording {
        Recording::Path { path } => {
            // Only under the directories this worker was told to read.
            let p = std::fs::canonicalize(path).map_err(|e| format!("{path}: {e}"))?;
            if !o.allow_paths.iter().any(|d| p.starts_with(d)) {
                return Err(format!(
                    "{path}: this worker reads no files outside its --allow-path directories"
                ));
            }
            (p, None)
        }
        Recording::Object { .. } | Recording::Url { .. } => {
            let bytes = match &job.recording {
                Recording::Object { name } => read_object(&c.recordings, name).await?,
                Recording::Url { url } if o.allow_urls => {
                    let url = url.clone();
                    tokio::task::spawn_blocking(move || super::download(&url))
                        .await
                        .map_err(|e| format!("download thread: {e}"))??
                }
                Recording::Url { url } => {
                    return Err(format!(
                        "{url}: this worker fetches no URLs (start it with --allow-urls)"
                    ))
                }
                Recording::Path { .. } => unreachable!("handled above"),
            };
            let tmp = tempfile::Builder::new()
                .suffix(".wav")
                .tempfile()
                .map_err(|e| format!("temporary file: {e}"))?;
            let at = tmp.path().to_path_buf();
            tokio::task::spawn_blocking(move || std::fs::write(&at, &bytes))
                .await
                .map_err(|e| format!("temporary file: {e}"))?
                .map_err(|e| format!("temporary file: {e}"))?;
            (tmp.path().to_path_buf(), Some(tmp))
        }
    };
    let (engine, call_id) = (engine.clone(), job.call_id.clone());
    let meta = CallMeta {
        agent_id: job.agent_id.clone(),
        started_unix_ms: job.started_unix_ms,
        channel: None,
    };
    tokio::task::spawn_blocking(move || {
        let mut events = Vec::new();
        engine
            .score_file_with(&path, &call_id, meta, &mut |e| events.push(e), &|_, _| {})
            .map(|_| events)
            .map_err(|e| e.to_string())
    })
    .await
    .map_err(|e| format!("scoring thread: {e}"))?
}

async fn handle(
    slot: usize,
    engine: &Engine,
    c: &Cluster,
    o: &WorkerOptions,
    stats: &WorkerStats,
    m: jetstream::Message,
) -> Result<(), String> {
    let attempt = m.info().map(|i| i.delivered).unwrap_or(1).max(1) as u64;
    let job: Job = match serde_json::from_slice(&m.payload) {
        Ok(j) => j,
        Err(e) => {
            let raw = String::from_utf8_lossy(&m.payload).to_string();
            dead_letter(
                c,
                o,
                serde_json::Value::String(raw),
                &format!("not a job: {e}"),
                attempt,
                None,
            )
            .await?;
            stats.dead.fetch_add(1, Ordering::SeqCst);
            return m.ack_with(AckKind::Term).await.map_err(err);
        }
    };
    // A job delivered more often than its attempts allow: the workers
    // that held it died (a crash, the OOM killer) before reporting a result.
    let max_attempts = effective_attempts(c, o);
    if attempt > max_attempts {
        let v = serde_json::to_value(&job).unwrap_or_default();
        let e = format!(
            "delivered {attempt} times: the workers holding it stopped before finishing (crashed or killed?)"
        );
        dead_letter(c, o, v, &e, attempt, Some(&job.job_id)).await?;
        stats.dead.fetch_add(1, Ordering::SeqCst);
        eprintln!(
            "callpulse worker {}: job {} {e}, to the dead letters",
            o.name, job.job_id
        );
        return m.ack_with(AckKind::Term).await.map_err(err);
    }
    eprintln!(
        "callpulse worker {} slot {slot}: job {} (call {}) attempt {attempt} started",
        o.name, job.job_id, job.call_id
    );
    let name = result_name(&job.job_id);
    if exists(&c.results, &name).await? {
        // Stored by an attempt that died before its acknowledgement.
        stats.already_stored.fetch_add(1, Ordering::SeqCst);
        eprintln!(
            "callpulse worker {}: job {} already has its result, acknowledged",
            o.name, job.job_id
        );
        return m.double_ack().await.map_err(err);
    }
    let m = Arc::new(m);
    let done = Arc::new(AtomicBool::new(false));
    let progress = {
        let (m, done) = (m.clone(), done.clone());
        // The server's ack_wait, which may differ from this worker's config.
        let every = (c.ack_wait / 3).max(Duration::from_millis(500));
        tokio::spawn(async move {
            loop {
                tokio::time::sleep(every).await;
                if done.load(Ordering::SeqCst) {
                    break;
                }
                let _ = m.ack_with(AckKind::Progress).await;
            }
        })
    };
    let outcome = score(engine, c, o, &job).await;
    let r = match outcome {
        Ok(events) => store(c, o, &job, attempt, &events).await,
        Err(e) => Err(e),
    };
    done.store(true, Ordering::SeqCst);
    progress.abort();
    match r {
        Ok(()) => {
            m.double_ack().await.map_err(err)?;
            stats.done.fetch_add(1, Ordering::SeqCst);
            eprintln!(
                "callpulse worker {}: job {} (call {}) done",
                o.name, job.job_id, job.call_id
            );
            Ok(())
        }
        Err(e) if attempt >= max_attempts => {
            let v = serde_json::to_value(&job).unwrap_or_default();
            dead_letter(c, o, v, &e, attempt, Some(&job.job_id)).await?;
            stats.dead.fetch_add(1, Ordering::SeqCst);
            eprintln!(
                "callpulse worker {}: job {} failed {attempt} times, to the dead letters: {e}",
                o.name, job.job_id
            );
            m.ack_with(AckKind::Term).await.map_err(err)
        }
        Err(e) => {
            stats.retried.fetch_add(1, Ordering::SeqCst);
            eprintln!(
                "callpulse worker {}: job {} attempt {attempt} failed, retried: {e}",
                o.name, job.job_id
            );
            let delay = Duration::from_secs_f64(o.cfg.retry_delay_s);
            m.ack_with(AckKind::Nak(Some(delay))).await.map_err(err)
        }
    }
}

/// Attempts before the dead letters: the configured number, within what
/// the server's consumer delivers (its `max_deliver`, set when it was
/// created, leaves one delivery for the dead-letter step).
fn effective_attempts(c: &Cluster, o: &WorkerOptions) -> u64 {
    let mut n = o.cfg.max_attempts as u64;
    if c.max_deliver > 1 {
        n = n.min(c.max_deliver as u64 - 1);
    }
    n.max(1)
}

/// Publish the events, then store the result: the events as JSON lines.
async fn store(
    c: &Cluster,
    o: &WorkerOptions,
    job: &Job,
    attempt: u64,
    events: &[Event],
) -> Result<(), String> {
    let subject = format!("{}{}", names::EVENTS_PREFIX, job.call_id);
    let mut body = Vec::new();
    for e in events {
        let line = serde_json::to_vec(e).map_err(err)?;
        c.client
            .publish(subject.clone(), line.clone().into())
            .await
            .map_err(|e| format!("cannot publish events: {e}"))?;
        body.extend_from_slice(&line);
        body.push(b'\n');
    }
    c.client
        .flush()
        .await
        .map_err(|e| format!("cannot publish events: {e}"))?;
    let meta = ObjectMetadata {
        name: result_name(&job.job_id),
        description: Some(
            serde_json::json!({"job_id": job.job_id, "worker": o.name, "attempt": attempt})
                .to_string(),
        ),
        ..Default::default()
    };
    let mut r: &[u8] = &body;
    c.results
        .put(meta, &mut r)
        .await
        .map_err(|e| format!("cannot store the result: {e}"))?;
    Ok(())
}

async fn dead_letter(
    c: &Cluster,
    o: &WorkerOptions,
    job: serde_json::Value,
    error: &str,
    attempts: u64,
    id: Option<&str>,
) -> Result<(), String> {
    let d = DeadLetter {
        job,
        error: error.to_string(),
        attempts,
        worker: o.name.clone(),
        at_unix_ms: now_unix_ms(),
    };
    let body = serde_json::to_vec(&d).map_err(err)?;
    let mut p = jetstream::message::PublishMessage::build().payload(body.into());
    if let Some(id) = id {
        p = p.message_id(id);
    }
    c.js.send_publish(names::DEAD_SUBJECT, p)
        .await
        .map_err(|e| format!("cannot publish a dead letter: {e}"))?
        .await
        .map_err(|e| format!("cannot publish a dead letter: {e}"))?;
    Ok(())
}
