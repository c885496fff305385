//! `callpulse submit`: upload recordings to the recordings bucket and
//! enqueue one job each; with `--wait`, collect the results (or the dead
//! letters) as they come.

use std::collections::{BTreeMap, HashSet};
use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

use async_nats::jetstream;
use futures_util::StreamExt;
use sha2::{Digest, Sha256};

use super::{exists, names, read_object, result_name, Cluster, DeadLetter, Job, Recording};

/// One recording to submit.
#[derive(Debug, Clone)]
pub struct Upload {
    /// A local file, or an http(s) URL the workers fetch themselves.
    pub path: PathBuf,
    /// Queue the path itself (a file system every worker shares) instead
    /// of uploading the audio.
    pub shared: bool,
    pub call_id: String,
    pub agent_id: Option<String>,
    pub started_unix_ms: Option<u64>,
}

/// What happened to a submitted job.
#[derive(Debug, Clone, PartialEq)]
pub enum Outcome {
    /// Its result, as JSON lines.
    Done(Vec<u8>),
    /// It failed every attempt.
    Dead(String),
}

/// Check that a file is a WAV recording (its RIFF/WAVE header).
pub fn check_wav(path: &Path) -> Result<Vec<u8>, String> {
    let bytes = std::fs::read(path).map_err(|e| format!("{}: {e}", path.display()))?;
    if bytes.len() < 12 || &bytes[0..4] != b"RIFF" || &bytes[8..12] != b"WAVE" {
        return Err(format!(
            "{}: not a WAV file (RIFF/WAVE header expected)",
            path.display()
        ));
    }
    Ok(bytes)
}

/// Upload and enqueue; `progress` gets each job as it is queued (and
/// whether it was a duplicate of a submission within the last 2 minutes).
pub async fn submit(
    c: &Cluster,
    uploads: &[Upload],
    progress: &(dyn Fn(&Job, bool) + Sync),
) -> Result<Vec<Job>, String> {
    let mut jobs = Vec::new();
    for u in uploads {
        let text = u.path.to_string_lossy().to_string();
        let url = text.starts_with("http://") || text.starts_with("https://");
        let bytes = if url {
            text.clone().into_bytes()
        } else {
            check_wav(&u.path)?
        };
        let hash = Sha256::digest(&bytes);
        let hex: String = hash[..6].iter().map(|b| format!("{b:02x}")).collect();
        let job_id = format!("{}-{hex}", u.call_id);
        let recording = if url {
            Recording::Url { url: text }
        } else if u.shared {
            let abs =
                std::fs::canonicalize(&u.path).map_err(|e| format!("{}: {e}", u.path.display()))?;
            Recording::Path {
                path: abs.to_string_lossy().to_string(),
            }
        } else {
            let object = format!("{job_id}.wav");
            let mut r: &[u8] = &bytes;
            c.recordings
                .put(object.as_str(), &mut r)
                .await
                .map_err(|e| format!("cannot upload {}: {e}", u.path.display()))?;
            Recording::Object { name: object }
        };
        let job = Job {
            job_id: job_id.clone(),
            call_id: u.call_id.clone(),
            recording,
            agent_id: u.agent_id.clone(),
            started_unix_ms: u.started_unix_ms,
        };
        let body = serde_json::to_vec(&job).map_err(|e| e.to_string())?;
        let ack =
            c.js.send_publish(
                names::JOBS_SUBJECT,
                jetstream::message::PublishMessage::build()
                    .payload(body.into())
                    .message_id(&job_id),
            )
            .await
            .map_err(|e| format!("cannot enqueue {job_id}: {e}"))?
            .await
            .map_err(|e| format!("cannot enqueue {job_id}: {e}"))?;
        progress(&job, ack.duplicate);
        jobs.push(job);
    }
    Ok(jobs)
}

/// Wait for every job's result or dead letter (at most `timeout`);
/// `progress` gets each call id as it settles. Dead letters from before
/// `since_ms` (an earlier submission of the same audio) are not this
/// submission's. Returns what settled and how many jobs did not.
pub async fn wait(
    c: &Cluster,
    jobs: &[Job],
    timeout: Duration,
    since_ms: u64,
    progress: &(dyn Fn(&str, &Outcome) + Sync),
) -> Result<(BTreeMap<String, Outcome>, usize), String> {
    let t = Instant::now();
    let mut out = BTreeMap::new();
    let wanted: HashSet<&str> = jobs.iter().map(|j| j.job_id.as_str()).collect();
    // Dead letters: read the stream from the start with an ordered consumer.
    let dead =
        c.js.get_stream(names::DEAD_STREAM)
            .await
            .map_err(|e| format!("dead letters: {e}"))?;
    let mut dead_seen: BTreeMap<String, String> = BTreeMap::new();
    let mut dead_msgs = dead
        .create_consumer(jetstream::consumer::push::OrderedConfig {
            deliver_subject: c.client.new_inbox(),
            ..Default::default()
        })
        .await
        .map_err(|e| format!("dead letters: {e}"))?
        .messages()
        .await
        .map_err(|e| format!("dead letters: {e}"))?;
    while out.len() < jobs.len() {
        for j in jobs {
            if out.contains_key(&j.call_id) {
                continue;
            }
            if exists(&c.results, &result_name(&j.job_id)).await? {
                let body = read_object(&c.results, &result_name(&j.job_id)).await?;
                let o = Outcome::Done(body);
                progress(&j.call_id, &o);
                out.insert(j.call_id.clone(), o);
            } else if let Some(e) = dead_seen.get(&j.job_id) {
                let o = Outcome::Dead(e.clone());
                progress(&j.call_id, &o);
                out.insert(j.call_id.clone(), o);
            }
        }
        if out.len() == jobs.len() {
            break;
        }
        if t.elapsed() > timeout {
            break;
        }
        // Take the dead letters that arrived, for up to half a second.
        let until = tokio::time::sleep(Duration::from_millis(500));
        tokio::pin!(until);
        loop {
            tokio::select! {
                _ = &mut until => break,
                m = dead_msgs.next() => {
                    let Some(Ok(m)) = m else { break };
                    if let Ok(d) = serde_json::from_slice::<DeadLetter>(&m.payload) {
                        if d.at_unix_ms < since_ms {
                            continue;
                        }
                        if let Some(id) = d.job.get("job_id").and_then(|v| v.as_str()) {
                            if wanted.contains(id) {
                                dead_seen.insert(id.to_string(), d.error.clone());
                            }
                        }
                    }
                }
            }
        }
    }
    let missing = jobs.len() - out.len();
    Ok((out, missing))
}
