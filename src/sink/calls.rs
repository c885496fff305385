//! Outputs of concurrent calls: each call gets an id no other call has and
//! a sink of its own ([`CallSinks`]). [`CallOutput`] writes every call's
//! events to one shared stream (flushed per event, so calls interleave
//! line by line) and, optionally, each call to `DIR/<call-id>.jsonl`.

use std::collections::HashSet;
use std::fs::File;
use std::io::{self, BufWriter, Write};
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex};

use super::{EventWriter, Format};
use crate::event::Event;

/// A call's event sink.
pub type CallSink = Box<dyn FnMut(Event) + Send>;

/// Why a call's output could not be opened.
#[derive(Debug, thiserror::Error)]
pub enum SinkError {
    /// A file could not be created.
    #[error("cannot create {path}: {source}")]
    Create {
        /// The file.
        path: PathBuf,
        /// Cause.
        source: io::Error,
    },
    /// Every variant of the id is taken.
    #[error("call id '{0}': too many calls with this id")]
    Exhausted(String),
    /// The history or another store failed.
    #[error("{0}")]
    Store(String),
}

/// Opens the output of each call and keeps call ids unique.
pub trait CallSinks: Send + Sync {
    /// Claim an id based on `base` that no other call has (`base`, then
    /// `base-2`, `base-3`, ...; see [`id_variant`]) and open its sink.
    fn open(&self, base: &str) -> Result<(String, CallSink), SinkError>;
}

/// Longest call id (file-name safe ids are at most this long).
pub const MAX_ID: usize = 96;
/// Variants of one id tried before giving up.
pub const MAX_VARIANTS: u32 = 100_000;

/// The `n`-th variant of `base` (1 = `base` itself, then `base-n`), cut so
/// that it stays within [`MAX_ID`] bytes; `base` is ASCII (a safe call id).
pub fn id_variant(base: &str, n: u32) -> String {
    let suffix = if n <= 1 {
        String::new()
    } else {
        format!("-{n}")
    };
    let mut keep = base.len().min(MAX_ID - suffix.len());
    while !base.is_char_boundary(keep) {
        keep -= 1;
    }
    format!("{}{suffix}", &base[..keep])
}

type SharedWriter = Arc<Mutex<EventWriter<Box<dyn Write + Send>>>>;

/// Every call to one stream, and each call to its own file in `dir`.
pub struct CallOutput {
    all: SharedWriter,
    dir: Option<PathBuf>,
    live: Arc<Mutex<HashSet<String>>>,
}

/// Releases a call's id when its sink is dropped.
struct Claim {
    id: String,
    live: Arc<Mutex<HashSet<String>>>,
}

impl Drop for Claim {
    fn drop(&mut self) {
        if let Ok(mut l) = self.live.lock() {
            l.remove(&self.id);
        }
    }
}

/// A claimed id and the call's own file, if any.
type Claimed = (Claim, Option<BufWriter<File>>);

impl CallOutput {
    /// Events to `out` in `format`; with `dir` (created if missing), also
    /// each call's events as JSON lines to `dir/<call-id>.jsonl`. An id
    /// whose file already exists gets a suffix: no call overwrites another.
    pub fn new(
        out: Box<dyn Write + Send>,
        format: Format,
        dir: Option<&Path>,
    ) -> Result<Self, SinkError> {
        if let Some(d) = dir {
            std::fs::create_dir_all(d).map_err(|source| SinkError::Create {
                path: d.to_path_buf(),
                source,
            })?;
        }
        Ok(CallOutput {
            all: Arc::new(Mutex::new(EventWriter::new(out, format))),
            dir: dir.map(Path::to_path_buf),
            live: Arc::default(),
        })
    }

    /// Close the shared stream (ends a JSON array) when every call is done.
    pub fn finish(&self) -> io::Result<()> {
        match self.all.lock() {
            Ok(mut w) => w.close(),
            Err(_) => Ok(()),
        }
    }

    /// Claim `id` if no running call has it and its file can be created
    /// afresh; Ok(None) when it is taken.
    fn claim(&self, id: &str) -> Result<Option<Claimed>, SinkError> {
        let mut live = self.live.lock().unwrap_or_else(|p| p.into_inner());
        if live.contains(id) {
            return Ok(None);
        }
        let file = match &self.dir {
            Some(d) => {
                let path = d.join(format!("{id}.jsonl"));
                match File::options().write(true).create_new(true).open(&path) {
                    Ok(f) => Some(BufWriter::new(f)),
                    Err(e) if e.kind() == io::ErrorKind::AlreadyExists => return Ok(None),
                    Err(source) => return Err(SinkError::Create { path, source }),
                }
            }
            None => None,
        };
        live.insert(id.to_string());
        let claim = Claim {
            id: id.to_string(),
            live: self.live.clone(),
        };
        Ok(Some((claim, file)))
    }
}

impl CallSinks for CallOutput {
    fn open(&self, base: &str) -> Result<(String, CallSink), SinkError> {
        for n in 1..=MAX_VARIANTS {
            let id = id_variant(base, n);
            let Some((claim, mut own)) = self.claim(&id)? else {
                continue;
            };
            let all = self.all.clone();
            let mut failed = false;
            let sink = move |e: Event| {
                let _held = &claim;
                if let Some(f) = own.as_mut() {
                    let line = serde_json::to_string(&e).unwrap_or_default();
                    let _ = writeln!(f, "{line}").and_then(|_| f.flush());
                }
                if let Ok(mut w) = all.lock() {
                    if let Err(err) = w.write(&e).and_then(|_| w.flush()) {
                        if !failed {
                            tracing::error!("cannot write events: {err}");
                            failed = true;
                        }
                    }
                }
            };
            return Ok((id, Box::new(sink)));
        }
        Err(SinkError::Exhausted(base.to_string()))
    }
}

/// A summary event with nothing in it, for tests of the plumbing.
#[cfg(test)]
pub(crate) fn empty_summary(call_id: &str) -> Event {
    Event::Summary(crate::event::SummaryEvent {
        schema: crate::event::SCHEMA_VERSION.into(),
        call_id: call_id.into(),
        duration: 0.0,
        turns: 0,
        speakers: Vec::new(),
        meta: Default::default(),
        conduct: None,
        score_5: None,
        conversation: Default::default(),
        language: None,
        languages: Default::default(),
        topics: Vec::new(),
        warnings: Vec::new(),
        relabelled: Vec::new(),
        stats: Default::default(),
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn variants_stay_within_the_id_limit() {
        assert_eq!(id_variant("a", 1), "a");
        assert_eq!(id_variant("a", 2), "a-2");
        let long = "x".repeat(MAX_ID);
        assert_eq!(id_variant(&long, 1).len(), MAX_ID);
        let v = id_variant(&long, 12);
        assert_eq!(v.len(), MAX_ID);
        assert!(v.ends_with("x-12"));
        assert_eq!(id_variant("€€€", 1), "€€€");
    }

    /// Defect 5: a second call with the same id (or one that
    /// `safe_call_id` made equal) truncated the first call's file.
    #[test]
    fn regression_repeated_call_id_gets_its_own_file() {
        let d = tempfile::tempdir().unwrap();
        let out = CallOutput::new(Box::new(io::sink()), Format::Jsonl, Some(d.path())).unwrap();
        let (a, mut sa) = out.open("mic").unwrap();
        let (b, mut sb) = out.open("mic").unwrap();
        assert_eq!((a.as_str(), b.as_str()), ("mic", "mic-2"));
        sa(empty_summary(&a));
        sb(empty_summary(&b));
        drop((sa, sb));
        // Ended calls keep their files: a third call does not reuse them.
        let (c, _) = out.open("mic").unwrap();
        assert_eq!(c, "mic-3");
        for id in ["mic", "mic-2"] {
            let text = std::fs::read_to_string(d.path().join(format!("{id}.jsonl"))).unwrap();
            assert!(
                text.contains(&format!("\"call_id\":\"{id}\"")),
                "{id}: {text}"
            );
        }
    }

    #[test]
    fn without_a_directory_only_running_calls_hold_their_id() {
        let out = CallOutput::new(Box::new(io::sink()), Format::Jsonl, None).unwrap();
        let (a, sa) = out.open("x").unwrap();
        let (b, _sb) = out.open("x").unwrap();
        assert_eq!((a.as_str(), b.as_str()), ("x", "x-2"));
        drop(sa);
        assert_eq!(out.open("x").unwrap().0, "x");
    }
}
