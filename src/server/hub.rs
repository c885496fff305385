//! The hub: every call's events go out to subscribers, into memory (for
//! `GET /v1/calls/{id}`) and into the history. Memory is bounded: a call
//! keeps at most `events_per_call` events, and finished calls leave memory
//! when more than `max_finished` have ended or `finished_ttl` has passed
//! (then they are served from the history). Ids are unique across memory
//! and the history: a repeated id gets a suffix.

use std::collections::{HashMap, VecDeque};
use std::sync::{Arc, Mutex, MutexGuard};
use std::time::Duration;

use tokio::sync::broadcast;

use super::history::{History, Write};
use super::metrics::Metrics;
use crate::event::{now_unix_ms, Event};
use crate::sink::calls::{id_variant, CallSink, CallSinks, SinkError, MAX_VARIANTS};

/// Memory limits of the hub.
#[derive(Debug, Clone, Copy)]
pub struct HubLimits {
    /// Events kept in memory per call.
    pub events_per_call: usize,
    /// Finished calls kept in memory.
    pub max_finished: usize,
    /// A finished call leaves memory after this long.
    pub finished_ttl: Duration,
}

impl Default for HubLimits {
    fn default() -> Self {
        HubLimits {
            events_per_call: 20_000,
            max_finished: 256,
            finished_ttl: Duration::from_secs(600),
        }
    }
}

pub(super) struct CallEntry {
    pub active: bool,
    pub started_ms: u64,
    pub ended_ms: Option<u64>,
    pub summary: Option<serde_json::Value>,
    pub events: VecDeque<Arc<str>>,
    seq: u64,
    /// Place of its last history write: it leaves memory once committed.
    last_write: u64,
}

#[derive(Default)]
pub(super) struct Calls {
    pub map: HashMap<String, CallEntry>,
    /// Finished calls, oldest end first.
    finished: VecDeque<(String, u64)>,
}

/// Shared state: calls, subscribers, metrics, history.
pub struct Hub {
    pub(super) tx: broadcast::Sender<(String, Arc<str>)>,
    calls: Mutex<Calls>,
    pub(super) history: Option<History>,
    limits: HubLimits,
    pub(super) metrics: Metrics,
}

/// Default broadcast capacity: a subscriber this many events behind is cut off.
pub const SUBSCRIBER_BUFFER: usize = 1024;

impl Hub {
    /// A hub with an optional history database; a subscriber `buffer`
    /// events behind is cut off.
    pub fn new(history: Option<History>, limits: HubLimits, buffer: usize) -> Arc<Self> {
        let (tx, _) = broadcast::channel(buffer.max(1));
        Arc::new(Hub {
            tx,
            calls: Mutex::new(Calls::default()),
            history,
            limits,
            metrics: Metrics::new(),
        })
    }

    pub(super) fn calls(&self) -> MutexGuard<'_, Calls> {
        self.calls.lock().unwrap_or_else(|p| p.into_inner())
    }

    /// Claim an id based on `base` that no call in memory or in the
    /// history has, and hold it (as an active call) until it ends.
    pub fn claim(&self, base: &str) -> Result<String, SinkError> {
        let mut calls = self.calls();
        for n in 1..=MAX_VARIANTS {
            let id = id_variant(base, n);
            if calls.map.contains_key(&id) {
                continue;
            }
            if let Some(h) = &self.history {
                if h.exists(&id).map_err(SinkError::Store)? {
                    continue;
                }
            }
            calls.map.insert(id.clone(), CallEntry::new(now_unix_ms()));
            return Ok(id);
        }
        Err(SinkError::Exhausted(base.to_string()))
    }

    /// Publish one event: to subscribers, memory and history.
    pub fn publish(&self, e: &Event) {
        let json: Arc<str> = match serde_json::to_string(e) {
            Ok(s) => s.into(),
            Err(_) => return,
        };
        let id = e.call_id().to_string();
        let now = now_unix_ms();
        let kind = self.metrics.count(e);
        let keep = kind != "partial";
        {
            let mut calls = self.calls();
            let c = calls
                .map
                .entry(id.clone())
                .or_insert_with(|| CallEntry::new(now));
            c.seq += 1;
            // Partials are superseded by the turn: keep them out of the
            // replay and the history.
            if keep {
                if c.events.len() >= self.limits.events_per_call {
                    c.events.pop_front();
                }
                c.events.push_back(json.clone());
                if let Some(h) = &self.history {
                    // Never blocks: a full queue drops the write (counted).
                    let place = h.write(Write::Event {
                        call_id: id.clone(),
                        seq: c.seq,
                        kind: kind.into(),
                        json: json.to_string(),
                        at_ms: now,
                    });
                    c.last_write = c.last_write.max(place.unwrap_or(0));
                }
            }
        }
        if kind == "summary" {
            self.end(&id, serde_json::from_str(&json).ok());
        }
        let _ = self.tx.send((id, json));
        self.prune();
    }

    /// Mark a call finished (with its summary, or without one if it failed).
    pub fn end(&self, id: &str, summary: Option<serde_json::Value>) {
        let now = now_unix_ms();
        let mut calls = self.calls();
        let Some(c) = calls.map.get_mut(id) else {
            return;
        };
        if !c.active {
            return;
        }
        c.active = false;
        c.ended_ms = Some(now);
        c.summary = summary;
        calls.finished.push_back((id.to_string(), now));
    }

    /// Let finished calls go from memory past the limits, once their
    /// history writes are committed (without a history, they are gone).
    fn prune(&self) {
        let committed = self.history.as_ref().map_or(u64::MAX, |h| h.committed());
        let ttl = self.limits.finished_ttl.as_millis() as u64;
        let now = now_unix_ms();
        let mut calls = self.calls();
        while let Some((id, ended)) = calls.finished.front().cloned() {
            let over =
                calls.finished.len() > self.limits.max_finished || now.saturating_sub(ended) > ttl;
            let stored = calls.map.get(&id).is_none_or(|c| c.last_write <= committed);
            if !(over && stored) {
                break;
            }
            calls.finished.pop_front();
            calls.map.remove(&id);
        }
    }

    /// Calls in memory (active and recently finished).
    pub fn in_memory(&self) -> usize {
        self.calls().map.len()
    }

    /// Wait for the history writes to be committed (at shutdown).
    pub fn flush(&self, timeout: Duration) -> bool {
        self.history.as_ref().is_none_or(|h| h.drain(timeout))
    }

    pub(super) fn active_ids(&self) -> Vec<String> {
        let calls = self.calls();
        let mut v: Vec<String> = calls
            .map
            .iter()
            .filter(|(_, c)| c.active)
            .map(|(k, _)| k.clone())
            .collect();
        v.sort();
        v
    }
}

impl CallEntry {
    fn new(now: u64) -> Self {
        CallEntry {
            active: true,
            started_ms: now,
            ended_ms: None,
            summary: None,
            events: VecDeque::new(),
            seq: 0,
            last_write: 0,
        }
    }
}

/// The hub as the sink of calls: ids claimed through it, events published
/// to it. A call whose sink goes without a summary is marked ended.
pub struct HubSinks(pub Arc<Hub>);

struct EndGuard {
    hub: Arc<Hub>,
    id: String,
}

impl Drop for EndGuard {
    fn drop(&mut self) {
        self.hub.end(&self.id, None);
    }
}

impl CallSinks for HubSinks {
    fn open(&self, base: &str) -> Result<(String, CallSink), SinkError> {
        let id = self.0.claim(base)?;
        let guard = EndGuard {
            hub: self.0.clone(),
            id: id.clone(),
        };
        let sink = move |e: Event| guard.hub.publish(&e);
        Ok((id, Box::new(sink)))
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::sink::calls::empty_summary;

    fn limits(max_finished: usize) -> HubLimits {
        HubLimits {
            events_per_call: 100,
            max_finished,
            finished_ttl: Duration::from_secs(3600),
        }
    }

    /// Defect 2: every call stayed in `Hub.calls` (with up to 20,000
    /// events each) for the life of the server.
    #[test]
    fn regression_finished_calls_leave_memory_and_stay_in_history() {
        let d = tempfile::tempdir().unwrap();
        let h = History::open(&d.path().join("h.sqlite")).unwrap();
        let hub = Hub::new(Some(h), limits(10), 16);
        let sinks = HubSinks(hub.clone());
        for _ in 0..100 {
            let (id, mut sink) = sinks.open("call").unwrap();
            sink(empty_summary(&id));
            // Writes are committed now and then, as in a running server.
            hub.flush(Duration::from_secs(10));
        }
        assert!(hub.in_memory() <= 11, "{} calls in memory", hub.in_memory());
        let h = hub.history.as_ref().unwrap();
        let stored = h.recent(1000).unwrap();
        assert_eq!(stored.len(), 100, "every call is in the history");
        assert!(h.events("call").unwrap().is_some() && h.events("call-100").unwrap().is_some());
    }

    /// Defect 5: a repeated id (a second `mic` call, a second replay of a
    /// file) shared the first call's rows.
    #[test]
    fn regression_repeated_ids_get_suffixes_across_memory_and_history() {
        let d = tempfile::tempdir().unwrap();
        let path = d.path().join("h.sqlite");
        let h = History::open(&path).unwrap();
        let hub = Hub::new(Some(h), limits(0), 16);
        let sinks = HubSinks(hub.clone());
        let (a, mut sa) = sinks.open("mic").unwrap();
        let (b, sb) = sinks.open("mic").unwrap();
        assert_eq!((a.as_str(), b.as_str()), ("mic", "mic-2"));
        sa(empty_summary(&a));
        drop((sa, sb));
        assert!(hub.flush(Duration::from_secs(10)));
        // A restarted server (a new hub on the same database) knows "mic".
        let hub2 = Hub::new(Some(History::open(&path).unwrap()), limits(0), 16);
        assert_eq!(
            hub2.claim("mic").unwrap(),
            "mic-2",
            "mic-2 never wrote, so it is free"
        );
        assert_eq!(hub2.claim("mic").unwrap(), "mic-3");
    }

    #[test]
    fn a_call_without_summary_is_ended_when_its_sink_goes() {
        let hub = Hub::new(None, limits(0), 16);
        let (id, sink) = HubSinks(hub.clone()).open("x").unwrap();
        assert_eq!(hub.active_ids(), [id]);
        drop(sink);
        assert!(hub.active_ids().is_empty());
    }
}
