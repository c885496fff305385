//! Scaling past one machine on NATS JetStream (issue 16): scoring jobs in a
//! work-queue stream, recordings and results in object stores, events on
//! `callpulse.events.<call_id>`, poison jobs in a dead-letter stream.
//!
//! - [`Names`]: the streams, consumer, buckets and subjects (one place).
//! - [`setup`]: creates what is missing (idempotent; every process runs it).
//! - [`worker`]: `callpulse worker`, which consumes jobs.
//! - [`submit`]: `callpulse submit`, which uploads recordings and enqueues jobs.
//!
//! Exactly once, as a consumer sees it: a job's result is one object,
//! `<job_id>.jsonl` in the results bucket, written before the job is
//! acknowledged. A job redelivered after a crash finds its result already
//! stored and is acknowledged without scoring again; one redelivered before
//! the result was stored is scored again and its result replaces nothing
//! (the object did not exist). Events on `callpulse.events.<call_id>` are at
//! least once: a job scored twice publishes its events twice.

pub mod submit;
pub mod worker;

use std::time::Duration;

use async_nats::jetstream::{self, consumer, object_store, stream};
use serde::{Deserialize, Serialize};

/// Names of everything callpulse keeps in NATS.
pub mod names {
    /// The work-queue stream of scoring jobs.
    pub const JOBS_STREAM: &str = "CALLPULSE_JOBS";
    /// Its subject.
    pub const JOBS_SUBJECT: &str = "callpulse.jobs.score";
    /// The durable pull consumer every worker shares.
    pub const CONSUMER: &str = "workers";
    /// Jobs that failed every attempt, with the error.
    pub const DEAD_STREAM: &str = "CALLPULSE_DEAD";
    /// Their subject.
    pub const DEAD_SUBJECT: &str = "callpulse.dead.score";
    /// Uploaded recordings.
    pub const RECORDINGS: &str = "callpulse-recordings";
    /// Results: `<call_id>.jsonl`, the events `score` would write.
    pub const RESULTS: &str = "callpulse-results";
    /// Live events: `callpulse.events.<call_id>`.
    pub const EVENTS_PREFIX: &str = "callpulse.events.";
    /// Workers' heartbeats: `callpulse.workers.<name>`.
    pub const WORKERS_PREFIX: &str = "callpulse.workers.";
}

/// `[cluster]`: the NATS settings.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct ClusterConfig {
    /// NATS server URL (`--nats`); no NATS when absent.
    pub nats: Option<String>,
    /// A job not acknowledged (or reported in progress) within this long is
    /// redelivered to another worker, seconds.
    pub ack_wait_s: f64,
    /// Attempts before a job goes to the dead letters.
    pub max_attempts: u32,
    /// Wait before a failed job is retried, seconds.
    pub retry_delay_s: f64,
    /// Jobs and results are kept this long, hours.
    pub retention_hours: f64,
}

impl Default for ClusterConfig {
    fn default() -> Self {
        ClusterConfig {
            nats: None,
            ack_wait_s: 30.0,
            max_attempts: 3,
            retry_delay_s: 5.0,
            retention_hours: 72.0,
        }
    }
}

impl ClusterConfig {
    /// Check ranges; messages name the key.
    pub fn validate(&self) -> Result<(), String> {
        if !(2.0..=3600.0).contains(&self.ack_wait_s) {
            return Err("cluster.ack_wait_s must be between 2 and 3600".into());
        }
        if !(1..=100).contains(&self.max_attempts) {
            return Err("cluster.max_attempts must be between 1 and 100".into());
        }
        if !(0.0..=3600.0).contains(&self.retry_delay_s) {
            return Err("cluster.retry_delay_s must be between 0 and 3600".into());
        }
        if !(0.1..=24.0 * 365.0).contains(&self.retention_hours) {
            return Err("cluster.retention_hours must be between 0.1 and 8760".into());
        }
        if let Some(u) = &self.nats {
            if u.trim().is_empty() {
                return Err("cluster.nats is empty".into());
            }
        }
        Ok(())
    }
}

/// Where a job's audio is.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case", tag = "kind")]
pub enum Recording {
    /// An object in the recordings bucket.
    Object { name: String },
    /// A path every worker can read (a shared file system).
    Path { path: String },
    /// An http(s) URL every worker can fetch (at most 2 GiB).
    Url { url: String },
}

/// Fetch a recording over HTTP(S) on a blocking thread.
pub fn download(url: &str) -> Result<Vec<u8>, String> {
    let agent = ureq::Agent::new_with_config(
        ureq::config::Config::builder()
            .timeout_global(Some(Duration::from_secs(600)))
            .user_agent(format!("callpulse/{}", env!("CARGO_PKG_VERSION")))
            .build(),
    );
    let mut resp = agent
        .get(url)
        .call()
        .map_err(|e| format!("cannot fetch {url}: {e}"))?;
    resp.body_mut()
        .with_config()
        .limit(2 << 30)
        .read_to_vec()
        .map_err(|e| format!("cannot read {url}: {e}"))
}

/// One scoring job.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Job {
    /// Unique per submission of a recording (also the message id, so a
    /// repeated submit within the duplicate window is stored once).
    pub job_id: String,
    /// The call id of its events and the name of its result.
    pub call_id: String,
    /// The audio.
    pub recording: Recording,
    /// The agent, for insights.
    #[serde(default)]
    pub agent_id: Option<String>,
    /// When the call started (ms since the epoch), for insights.
    #[serde(default)]
    pub started_unix_ms: Option<u64>,
}

/// A job that failed every attempt.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct DeadLetter {
    /// The job (or, when it was not a job, its raw text).
    pub job: serde_json::Value,
    /// The last error.
    pub error: String,
    /// Attempts made.
    pub attempts: u64,
    /// The worker that gave up.
    pub worker: String,
    /// When, ms since the epoch.
    pub at_unix_ms: u64,
}

/// The result object's name for a job: `<job_id>.jsonl` (the job id is
/// the call id and a hash of the audio, so a new recording under an old
/// call id gets its own result).
pub fn result_name(job_id: &str) -> String {
    format!("{job_id}.jsonl")
}

/// Connect, with a client name; errors say what to do.
pub async fn connect(url: &str, name: &str) -> Result<async_nats::Client, String> {
    async_nats::ConnectOptions::new()
        .name(name)
        .connection_timeout(Duration::from_secs(5))
        .connect(url)
        .await
        .map_err(|e| {
            format!("cannot connect to NATS at {url}: {e} (is `nats-server -js` running there?)")
        })
}

/// What every process works with.
pub struct Cluster {
    pub client: async_nats::Client,
    pub js: jetstream::Context,
    pub jobs: stream::Stream,
    pub consumer: consumer::PullConsumer,
    pub recordings: object_store::ObjectStore,
    pub results: object_store::ObjectStore,
    /// The consumer's settings as the server holds them (set when it was
    /// first created; a later `setup` with other values does not change
    /// them): how long a job may go unreported, and the deliveries allowed.
    pub ack_wait: Duration,
    pub max_deliver: i64,
}

async fn bucket(
    js: &jetstream::Context,
    name: &str,
    max_age: Duration,
) -> Result<object_store::ObjectStore, String> {
    if let Ok(s) = js.get_object_store(name).await {
        return Ok(s);
    }
    js.create_object_store(object_store::Config {
        bucket: name.into(),
        max_age,
        ..Default::default()
    })
    .await
    .map_err(|e| format!("cannot create the object store {name}: {e}"))
}

/// Create (or find) the streams, the consumer and the buckets. Processes
/// that start together race to create them: a loser finds them on a retry.
pub async fn setup(client: async_nats::Client, cfg: &ClusterConfig) -> Result<Cluster, String> {
    let mut tries = 0;
    loop {
        match setup_once(client.clone(), cfg).await {
            Ok(c) => return Ok(c),
            Err(e) if tries >= 5 => return Err(e),
            Err(_) => {
                tries += 1;
                tokio::time::sleep(Duration::from_millis(200 * tries)).await;
            }
        }
    }
}

async fn setup_once(client: async_nats::Client, cfg: &ClusterConfig) -> Result<Cluster, String> {
    let js = jetstream::new(client.clone());
    let max_age = Duration::from_secs_f64(cfg.retention_hours * 3600.0);
    let jobs = js
        .get_or_create_stream(stream::Config {
            name: names::JOBS_STREAM.into(),
            subjects: vec![names::JOBS_SUBJECT.into()],
            retention: stream::RetentionPolicy::WorkQueue,
            max_age,
            duplicate_window: Duration::from_secs(120),
            ..Default::default()
        })
        .await
        .map_err(|e| {
            format!(
                "cannot create the job stream {}: {e} (is JetStream on? start the server with -js)",
                names::JOBS_STREAM
            )
        })?;
    js.get_or_create_stream(stream::Config {
        name: names::DEAD_STREAM.into(),
        subjects: vec![names::DEAD_SUBJECT.into()],
        max_age,
        duplicate_window: Duration::from_secs(120),
        ..Default::default()
    })
    .await
    .map_err(|e| format!("cannot create the dead-letter stream: {e}"))?;
    let consumer = jobs
        .get_or_create_consumer(
            names::CONSUMER,
            consumer::pull::Config {
                durable_name: Some(names::CONSUMER.into()),
                ack_policy: consumer::AckPolicy::Explicit,
                ack_wait: Duration::from_secs_f64(cfg.ack_wait_s),
                // Attempts are counted by the workers (dead letters with the
                // error); the server's limit is a backstop above them.
                max_deliver: (cfg.max_attempts as i64) + 2,
                ..Default::default()
            },
        )
        .await
        .map_err(|e| format!("cannot create the consumer {}: {e}", names::CONSUMER))?;
    let recordings = bucket(&js, names::RECORDINGS, max_age).await?;
    let results = bucket(&js, names::RESULTS, max_age).await?;
    let info = consumer
        .get_info()
        .await
        .map_err(|e| format!("cannot read the consumer {}: {e}", names::CONSUMER))?;
    Ok(Cluster {
        client,
        js,
        jobs,
        consumer,
        recordings,
        results,
        ack_wait: info.config.ack_wait,
        max_deliver: info.config.max_deliver,
    })
}

/// Whether an object exists (and is not deleted).
pub async fn exists(store: &object_store::ObjectStore, name: &str) -> Result<bool, String> {
    match store.info(name).await {
        Ok(i) => Ok(!i.deleted),
        Err(e) if e.kind() == object_store::InfoErrorKind::NotFound => Ok(false),
        Err(e) => Err(format!("object store: {e}")),
    }
}

/// Read a whole object.
pub async fn read_object(store: &object_store::ObjectStore, name: &str) -> Result<Vec<u8>, String> {
    use tokio::io::AsyncReadExt;
    let mut o = store
        .get(name)
        .await
        .map_err(|e| format!("cannot get {name}: {e}"))?;
    let mut buf = Vec::new();
    o.read_to_end(&mut buf)
        .await
        .map_err(|e| format!("cannot read {name}: {e}"))?;
    Ok(buf)
}

/// Queue figures for metrics and progress.
#[derive(Debug, Clone, Default, Serialize)]
pub struct QueueState {
    /// Jobs waiting for a worker.
    pub pending: u64,
    /// Jobs a worker holds.
    pub in_progress: u64,
    /// Held jobs that were delivered more than once.
    pub redelivered: u64,
    /// Jobs in the dead letters.
    pub dead_letters: u64,
}

/// The queue as the server sees it now.
pub async fn queue_state(c: &Cluster) -> Result<QueueState, String> {
    let ci = c
        .consumer
        .get_info()
        .await
        .map_err(|e| format!("consumer info: {e}"))?;
    let dead =
        c.js.get_stream(names::DEAD_STREAM)
            .await
            .map_err(|e| format!("dead letters: {e}"))?
            .get_info()
            .await
            .map_err(|e| format!("dead letters: {e}"))?;
    Ok(QueueState {
        pending: ci.num_pending,
        in_progress: ci.num_ack_pending as u64,
        redelivered: ci.num_redelivered as u64,
        dead_letters: dead.state.messages,
    })
}

/// Sinks that also publish every event on `callpulse.events.<call_id>`
/// (`sip --nats`): `serve --nats` on another machine then shows the calls.
pub struct NatsSinks<S: crate::sink::calls::CallSinks> {
    /// Where the events go on this machine (files, stdout).
    pub inner: std::sync::Arc<S>,
    /// The connection.
    pub client: async_nats::Client,
    /// The runtime the connection lives on (the sinks run on pipeline
    /// threads, outside it).
    pub handle: tokio::runtime::Handle,
}

impl<S: crate::sink::calls::CallSinks> crate::sink::calls::CallSinks for NatsSinks<S> {
    fn open(
        &self,
        base: &str,
    ) -> Result<(String, crate::sink::calls::CallSink), crate::sink::calls::SinkError> {
        let (id, mut inner) = self.inner.open(base)?;
        let (client, handle) = (self.client.clone(), self.handle.clone());
        let subject = format!("{}{id}", names::EVENTS_PREFIX);
        let sink = move |e: crate::event::Event| {
            if let Ok(b) = serde_json::to_vec(&e) {
                // Buffered by the client, so it returns at once; but never
                // let a NATS outage hold up the call: at most 2 s, then the
                // event goes to the local outputs only.
                let summary = matches!(e, crate::event::Event::Summary(_));
                handle.block_on(async {
                    let limit = Duration::from_secs(2);
                    let _ = tokio::time::timeout(limit, client.publish(subject.clone(), b.into()))
                        .await;
                    if summary {
                        let _ = tokio::time::timeout(limit, client.flush()).await;
                    }
                });
            }
            inner(e);
        };
        Ok((id, Box::new(sink)))
    }
}

/// `serve --nats`: every event on `callpulse.events.>` goes to `publish`
/// (the hub), and workers' heartbeats to `heartbeat`, until the connection
/// closes.
pub async fn follow_events(
    client: async_nats::Client,
    publish: impl Fn(crate::event::Event) + Send + 'static,
    heartbeat: impl Fn(worker::Heartbeat) + Send + 'static,
) -> Result<(), String> {
    use futures_util::StreamExt;
    let mut events = client
        .subscribe(format!("{}>", names::EVENTS_PREFIX))
        .await
        .map_err(|e| format!("cannot subscribe to events: {e}"))?;
    let mut beats = client
        .subscribe(format!("{}>", names::WORKERS_PREFIX))
        .await
        .map_err(|e| format!("cannot subscribe to heartbeats: {e}"))?;
    loop {
        tokio::select! {
            m = events.next() => {
                let Some(m) = m else { break };
                if let Ok(e) = serde_json::from_slice::<crate::event::Event>(&m.payload) {
                    publish(e);
                }
            }
            m = beats.next() => {
                let Some(m) = m else { break };
                if let Ok(h) = serde_json::from_slice::<worker::Heartbeat>(&m.payload) {
                    heartbeat(h);
                }
            }
        }
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn jobs_round_trip_and_config_is_checked() {
        let j = Job {
            job_id: "j1".into(),
            call_id: "c1".into(),
            recording: Recording::Object {
                name: "j1.wav".into(),
            },
            agent_id: Some("ana".into()),
            started_unix_ms: None,
        };
        let s = serde_json::to_string(&j).unwrap();
        assert!(s.contains("\"kind\":\"object\""), "{s}");
        assert_eq!(serde_json::from_str::<Job>(&s).unwrap(), j);
        assert!(ClusterConfig::default().validate().is_ok());
        let bad = ClusterConfig {
            ack_wait_s: 1.0,
            ..Default::default()
        };
        assert!(bad.validate().unwrap_err().contains("ack_wait_s"));
        assert_eq!(result_name("a"), "a.jsonl");
    }
}
