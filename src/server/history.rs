//! Call history in SQLite, written by its own thread: the pipeline hands
//! events over a bounded queue and never waits for the disk (a full queue
//! drops the write and counts it).

use std::path::Path;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;

use crossbeam_channel::{bounded, Receiver, Sender, TrySendError};
use rusqlite::{params, Connection};

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

/// The history store.
pub struct History {
    tx: Sender<Write>,
    /// Writes dropped because the queue was full.
    pub dropped: Arc<AtomicU64>,
    path: std::path::PathBuf,
}

/// Queue between the pipeline and the writer.
pub const QUEUE: usize = 8192;

fn open(path: &Path) -> rusqlite::Result<Connection> {
    let c = Connection::open(path)?;
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
        let conn = open(path).map_err(|e| format!("{}: {e}", path.display()))?;
        let (tx, rx) = bounded(QUEUE);
        std::thread::Builder::new()
            .name("history".into())
            .spawn(move || writer(conn, rx))
            .map_err(|e| e.to_string())?;
        Ok(History {
            tx,
            dropped: Arc::new(AtomicU64::new(0)),
            path: path.to_path_buf(),
        })
    }

    /// Queue a write; never blocks.
    pub fn write(&self, w: Write) {
        if let Err(TrySendError::Full(_)) = self.tx.try_send(w) {
            self.dropped.fetch_add(1, Ordering::Relaxed);
        }
    }

    /// Writes waiting.
    pub fn queued(&self) -> usize {
        self.tx.len()
    }

    /// Wait (up to `timeout`) until the queued writes are committed.
    pub fn drain(&self, timeout: std::time::Duration) {
        let t = std::time::Instant::now();
        while !self.tx.is_empty() && t.elapsed() < timeout {
            std::thread::sleep(std::time::Duration::from_millis(10));
        }
        // The last batch's transaction.
        std::thread::sleep(std::time::Duration::from_millis(150));
    }

    /// Recent calls, newest first (reads on a connection of their own).
    pub fn recent(&self, limit: usize) -> Result<Vec<StoredCall>, String> {
        let c = open(&self.path).map_err(|e| e.to_string())?;
        let mut st = c
            .prepare("SELECT call_id, started_ms, ended_ms, summary FROM calls ORDER BY started_ms DESC LIMIT ?1")
            .map_err(|e| e.to_string())?;
        let rows = st
            .query_map(params![limit as i64], |r| {
                let summary: Option<String> = r.get(3)?;
                Ok(StoredCall {
                    call_id: r.get(0)?,
                    started_ms: r.get::<_, i64>(1)? as u64,
                    ended_ms: r.get::<_, Option<i64>>(2)?.map(|v| v as u64),
                    summary: summary.and_then(|s| serde_json::from_str(&s).ok()),
                })
            })
            .map_err(|e| e.to_string())?;
        rows.collect::<Result<Vec<_>, _>>()
            .map_err(|e| e.to_string())
    }

    /// One call's events in order, or None if unknown.
    pub fn events(&self, call_id: &str) -> Result<Option<Vec<String>>, String> {
        let c = open(&self.path).map_err(|e| e.to_string())?;
        let mut st = c
            .prepare("SELECT json FROM events WHERE call_id = ?1 ORDER BY seq")
            .map_err(|e| e.to_string())?;
        let rows: Vec<String> = st
            .query_map(params![call_id], |r| r.get(0))
            .map_err(|e| e.to_string())?
            .collect::<Result<_, _>>()
            .map_err(|e| e.to_string())?;
        Ok((!rows.is_empty()).then_some(rows))
    }
}

fn writer(mut conn: Connection, rx: Receiver<Write>) {
    // Batch what is queued into one transaction.
    while let Ok(first) = rx.recv() {
        let mut batch = vec![first];
        while let Ok(w) = rx.try_recv() {
            batch.push(w);
            if batch.len() >= 512 {
                break;
            }
        }
        let tx = match conn.transaction() {
            Ok(t) => t,
            Err(e) => {
                tracing::warn!("history: {e}");
                continue;
            }
        };
        for w in batch {
            let r = match w {
                Write::Event {
                    call_id,
                    seq,
                    kind,
                    json,
                    at_ms,
                } => tx
                    .execute(
                        "INSERT OR IGNORE INTO calls (call_id, started_ms) VALUES (?1, ?2)",
                        params![call_id, at_ms as i64],
                    )
                    .and_then(|_| {
                        tx.execute(
                            "INSERT OR REPLACE INTO events (call_id, seq, kind, json) VALUES (?1, ?2, ?3, ?4)",
                            params![call_id, seq as i64, kind, json],
                        )
                    })
                    .and_then(|n| {
                        if kind == "summary" {
                            tx.execute(
                                "UPDATE calls SET ended_ms = ?2, summary = ?3 WHERE call_id = ?1",
                                params![call_id, at_ms as i64, json],
                            )
                        } else {
                            Ok(n)
                        }
                    }),
                Write::Prune(before) => tx
                    .execute(
                        "DELETE FROM events WHERE call_id IN (SELECT call_id FROM calls WHERE ended_ms < ?1)",
                        params![before as i64],
                    )
                    .and_then(|_| {
                        tx.execute("DELETE FROM calls WHERE ended_ms < ?1", params![before as i64])
                    }),
            };
            if let Err(e) = r {
                tracing::warn!("history write failed: {e}");
            }
        }
        if let Err(e) = tx.commit() {
            tracing::warn!("history commit failed: {e}");
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn stores_calls_and_prunes() {
        let d = tempfile::tempdir().unwrap();
        let h = History::open(&d.path().join("h.sqlite")).unwrap();
        for (i, kind) in ["turn", "turn", "summary"].iter().enumerate() {
            h.write(Write::Event {
                call_id: "a".into(),
                seq: i as u64,
                kind: kind.to_string(),
                json: format!("{{\"type\":\"{kind}\",\"i\":{i}}}"),
                at_ms: 1000 + i as u64,
            });
        }
        let t = std::time::Instant::now();
        while h
            .recent(10)
            .unwrap()
            .first()
            .and_then(|c| c.ended_ms)
            .is_none()
        {
            assert!(t.elapsed().as_secs() < 5);
            std::thread::sleep(std::time::Duration::from_millis(20));
        }
        let calls = h.recent(10).unwrap();
        assert_eq!(calls[0].call_id, "a");
        assert_eq!(calls[0].summary.as_ref().unwrap()["i"], 2);
        assert_eq!(h.events("a").unwrap().unwrap().len(), 3);
        assert_eq!(h.events("b").unwrap(), None);
        h.write(Write::Prune(5000));
        let t = std::time::Instant::now();
        while !h.recent(10).unwrap().is_empty() {
            assert!(t.elapsed().as_secs() < 5);
            std::thread::sleep(std::time::Duration::from_millis(20));
        }
        assert_eq!(h.events("a").unwrap(), None);
    }
}
