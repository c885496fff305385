//! Call history in SQLite, written by its own thread: the pipeline hands
//! events over a bounded queue and never waits for the disk (a full queue
//! drops the write and counts it). Reads go through one connection opened
//! at start (callers on the async runtime run them on a blocking thread).
//! Every committed batch is acknowledged, so [`History::drain`] waits for
//! the commit itself.

use std::path::Path;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Condvar, Mutex};
use std::time::{Duration, Instant};

use crossbeam_channel::{bounded, Receiver, Sender, TrySendError};
use rusqlite::{params, Connection, OptionalExtension};

/// What the writer thread does.
pub enum Write {
    /// A call's event (JSON) with its sequence number.
    Event {
        /// Call id.
        call_id: String,
        /// Order within the call.
        seq: u64,
        /// Event type.
        kind: String,
        /// The event as JSON.
        json: String,
        /// Wall time, ms since the epoch.
        at_ms: u64,
    },
    /// Delete calls that ended before this time (ms since the epoch).
    Prune(u64),
}

/// A finished or active call as stored.
#[derive(Debug, Clone, serde::Serialize)]
pub struct StoredCall {
    /// Call id.
    pub call_id: String,
    /// First event, ms since the epoch.
    pub started_ms: u64,
    /// Summary time, if the call ended.
    pub ended_ms: Option<u64>,
    /// The summary event.
    pub summary: Option<serde_json::Value>,
}

/// Writes queued and committed, counted in one sequence.
#[derive(Default)]
struct Progress {
    committed: Mutex<u64>,
    cv: Condvar,
}

/// The history store.
pub struct History {
    tx: Sender<Write>,
    /// Writes dropped because the queue was full.
    pub dropped: Arc<AtomicU64>,
    sent: AtomicU64,
    progress: Arc<Progress>,
    reader: Mutex<Connection>,
}

/// Queue between the pipeline and the writer.
pub const QUEUE: usize = 8192;

fn open(path: &Path) -> rusqlite::Result<Connection> {
    let c = Connection::open(path)?;
    c.busy_timeout(Duration::from_secs(10))?;
    c.execute_batch(
        "PRAGMA journal_mode=WAL;
         PRAGMA synchronous=NORMAL;
         CREATE TABLE IF NOT EXISTS calls (
            call_id TEXT PRIMARY KEY,
            started_ms INTEGER NOT NULL,
            ended_ms INTEGER,
            summary TEXT
         );
         CREATE TABLE IF NOT EXISTS events (
            call_id TEXT NOT NULL,
            seq INTEGER NOT NULL,
            kind TEXT NOT NULL,
            json TEXT NOT NULL,
            PRIMARY KEY (call_id, seq)
         );",
    )?;
    Ok(c)
}

impl History {
    /// Open (or create) the database and start the writer thread.
    pub fn open(path: &Path) -> Result<Self, String> {
        let err = |e: rusqlite::Error| format!("{}: {e}", path.display());
        let conn = open(path).map_err(err)?;
        let reader = Connection::open(path).map_err(err)?;
        reader.busy_timeout(Duration::from_secs(10)).map_err(err)?;
        let (tx, rx) = bounded(QUEUE);
        let progress = Arc::new(Progress::default());
        let p = progress.clone();
        std::thread::Builder::new()
            .name("history".into())
            .spawn(move || writer(conn, rx, &p))
            .map_err(|e| e.to_string())?;
        Ok(History {
            tx,
            dropped: Arc::new(AtomicU64::new(0)),
            sent: AtomicU64::new(0),
            progress,
            reader: Mutex::new(reader),
        })
    }

    /// Queue a write; never blocks. Returns its place in the write sequence
    /// (see [`History::committed`]), or None if it was dropped.
    pub fn write(&self, w: Write) -> Option<u64> {
        // Counted before sending, so the writer never acknowledges more
        // than was counted.
        let n = self.sent.fetch_add(1, Ordering::SeqCst) + 1;
        match self.tx.try_send(w) {
            Ok(()) => Some(n),
            Err(e) => {
                if let TrySendError::Full(_) = e {
                    self.dropped.fetch_add(1, Ordering::Relaxed);
                }
                // Dropped: count it as done so waiters do not wait for it.
                self.ack(1);
                None
            }
        }
    }

    fn ack(&self, n: u64) {
        let mut c = self
            .progress
            .committed
            .lock()
            .unwrap_or_else(|p| p.into_inner());
        *c += n;
        self.progress.cv.notify_all();
    }

    /// Writes waiting.
    pub fn queued(&self) -> usize {
        self.tx.len()
    }

    /// How far the write sequence is committed (or dropped).
    pub fn committed(&self) -> u64 {
        *self
            .progress
            .committed
            .lock()
            .unwrap_or_else(|p| p.into_inner())
    }

    /// Wait (up to `timeout`) until every write queued so far is committed.
    /// Returns whether it was.
    pub fn drain(&self, timeout: Duration) -> bool {
        let target = self.sent.load(Ordering::SeqCst);
        let deadline = Instant::now() + timeout;
        let mut c = self
            .progress
            .committed
            .lock()
            .unwrap_or_else(|p| p.into_inner());
        while *c < target {
            let left = deadline.saturating_duration_since(Instant::now());
            if left.is_zero() {
                return false;
            }
            c = match self.progress.cv.wait_timeout(c, left) {
                Ok((g, _)) => g,
                Err(p) => p.into_inner().0,
            };
        }
        true
    }

    fn read<T>(&self, f: impl FnOnce(&Connection) -> rusqlite::Result<T>) -> Result<T, String> {
        let c = self.reader.lock().unwrap_or_else(|p| p.into_inner());
        f(&c).map_err(|e| e.to_string())
    }

    /// Recent calls, newest first.
    pub fn recent(&self, limit: usize) -> Result<Vec<StoredCall>, String> {
        self.read(|c| {
            let mut st = c.prepare_cached(
                "SELECT call_id, started_ms, ended_ms, summary FROM calls ORDER BY started_ms DESC LIMIT ?1",
            )?;
            let rows = st.query_map(params![limit as i64], |r| {
                let summary: Option<String> = r.get(3)?;
                Ok(StoredCall {
                    call_id: r.get(0)?,
                    started_ms: r.get::<_, i64>(1)? as u64,
                    ended_ms: r.get::<_, Option<i64>>(2)?.map(|v| v as u64),
                    summary: summary.and_then(|s| serde_json::from_str(&s).ok()),
                })
            })?;
            rows.collect()
        })
    }

    /// One call's events in order, or None if unknown.
    pub fn events(&self, call_id: &str) -> Result<Option<Vec<String>>, String> {
        let rows: Vec<String> = self.read(|c| {
            let mut st =
                c.prepare_cached("SELECT json FROM events WHERE call_id = ?1 ORDER BY seq")?;
            let rows = st.query_map(params![call_id], |r| r.get(0))?;
            rows.collect()
        })?;
        Ok((!rows.is_empty()).then_some(rows))
    }

    /// Finished calls' summaries (call id, start, summary JSON), newest
    /// first, those that started in `since_ms..until_ms`, at most `limit`.
    pub fn summaries(
        &self,
        limit: usize,
        since_ms: u64,
        until_ms: u64,
    ) -> Result<Vec<(String, u64, String)>, String> {
        let clamp = |v: u64| v.min(i64::MAX as u64) as i64;
        self.read(|c| {
            let mut st = c.prepare_cached(
                "SELECT call_id, started_ms, summary FROM calls WHERE summary IS NOT NULL \
                 AND started_ms >= ?2 AND started_ms < ?3 ORDER BY started_ms DESC LIMIT ?1",
            )?;
            let rows = st.query_map(
                params![limit as i64, clamp(since_ms), clamp(until_ms)],
                |r| {
                    Ok((
                        r.get::<_, String>(0)?,
                        r.get::<_, i64>(1)? as u64,
                        r.get::<_, String>(2)?,
                    ))
                },
            )?;
            rows.collect()
        })
    }

    /// Whether a call is stored.
    pub fn exists(&self, call_id: &str) -> Result<bool, String> {
        self.read(|c| {
            c.prepare_cached("SELECT 1 FROM calls WHERE call_id = ?1")?
                .query_row(params![call_id], |_| Ok(()))
                .optional()
                .map(|r| r.is_some())
        })
    }
}

fn apply(tx: &rusqlite::Transaction<'_>, w: Write) -> rusqlite::Result<usize> {
    match w {
        Write::Event {
            call_id,
            seq,
            kind,
            json,
            at_ms,
        } => {
            tx.execute(
                "INSERT OR IGNORE INTO calls (call_id, started_ms) VALUES (?1, ?2)",
                params![call_id, at_ms as i64],
            )?;
            // Ids are unique per call (the hub sees to it): a clash is an
            // error, never an overwrite of another call's event.
            let n = tx.execute(
                "INSERT INTO events (call_id, seq, kind, json) VALUES (?1, ?2, ?3, ?4)",
                params![call_id, seq as i64, kind, json],
            )?;
            if kind == "summary" {
                tx.execute(
                    "UPDATE calls SET ended_ms = ?2, summary = ?3 WHERE call_id = ?1",
                    params![call_id, at_ms as i64, json],
                )?;
            }
            Ok(n)
        }
        Write::Prune(before) => {
            tx.execute(
                "DELETE FROM events WHERE call_id IN (SELECT call_id FROM calls WHERE ended_ms < ?1)",
                params![before as i64],
            )?;
            tx.execute(
                "DELETE FROM calls WHERE ended_ms < ?1",
                params![before as i64],
            )
        }
    }
}

fn writer(mut conn: Connection, rx: Receiver<Write>, progress: &Progress) {
    // Batch what is queued into one transaction.
    while let Ok(first) = rx.recv() {
        let mut batch = vec![first];
        while let Ok(w) = rx.try_recv() {
            batch.push(w);
            if batch.len() >= 512 {
                break;
            }
        }
        let n = batch.len() as u64;
        match conn.transaction() {
            Ok(tx) => {
                for w in batch {
                    if let Err(e) = apply(&tx, w) {
                        tracing::warn!("history write failed: {e}");
                    }
                }
                if let Err(e) = tx.commit() {
                    tracing::warn!("history commit failed: {e}");
                }
            }
            Err(e) => tracing::warn!("history: {e}"),
        }
        let mut c = progress.committed.lock().unwrap_or_else(|p| p.into_inner());
        *c += n;
        progress.cv.notify_all();
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn event(id: &str, seq: u64, kind: &str) -> Write {
        Write::Event {
            call_id: id.into(),
            seq,
            kind: kind.into(),
            json: format!("{{\"type\":\"{kind}\",\"i\":{seq}}}"),
            at_ms: 1000 + seq,
        }
    }

    #[test]
    fn stores_calls_and_prunes() {
        let d = tempfile::tempdir().unwrap();
        let h = History::open(&d.path().join("h.sqlite")).unwrap();
        for (i, kind) in ["turn", "turn", "summary"].iter().enumerate() {
            h.write(event("a", i as u64, kind));
        }
        assert!(h.drain(Duration::from_secs(10)));
        let calls = h.recent(10).unwrap();
        assert_eq!(calls[0].call_id, "a");
        assert_eq!(calls[0].summary.as_ref().unwrap()["i"], 2);
        assert_eq!(h.events("a").unwrap().unwrap().len(), 3);
        assert_eq!(h.events("b").unwrap(), None);
        assert!(h.exists("a").unwrap() && !h.exists("b").unwrap());
        h.write(Write::Prune(5000));
        assert!(h.drain(Duration::from_secs(10)));
        assert!(h.recent(10).unwrap().is_empty());
        assert_eq!(h.events("a").unwrap(), None);
    }

    /// Defect 3: `drain` slept 150 ms after the queue emptied, whether or
    /// not the writer had committed; a slow commit was lost at shutdown.
    #[test]
    fn regression_drain_waits_for_the_commit() {
        let d = tempfile::tempdir().unwrap();
        let path = d.path().join("h.sqlite");
        let h = History::open(&path).unwrap();
        // Another connection holds the write lock for a while: the writer's
        // commit waits for it.
        let blocker = Connection::open(&path).unwrap();
        blocker.execute_batch("BEGIN EXCLUSIVE").unwrap();
        for i in 0..100 {
            h.write(event("slow", i, "turn"));
        }
        let release = std::thread::spawn(move || {
            std::thread::sleep(Duration::from_millis(800));
            blocker.execute_batch("COMMIT").unwrap();
        });
        assert!(h.drain(Duration::from_secs(20)));
        assert_eq!(h.events("slow").unwrap().map(|e| e.len()), Some(100));
        release.join().unwrap();
    }

    /// Defect 5: INSERT OR REPLACE let a second call with the same id
    /// overwrite the first call's events.
    #[test]
    fn regression_a_repeated_id_does_not_overwrite_events() {
        let d = tempfile::tempdir().unwrap();
        let h = History::open(&d.path().join("h.sqlite")).unwrap();
        h.write(event("x", 0, "turn"));
        h.write(Write::Event {
            call_id: "x".into(),
            seq: 0,
            kind: "turn".into(),
            json: "{\"other\":true}".into(),
            at_ms: 5,
        });
        assert!(h.drain(Duration::from_secs(10)));
        assert_eq!(
            h.events("x").unwrap().unwrap(),
            ["{\"type\":\"turn\",\"i\":0}"]
        );
    }
}
