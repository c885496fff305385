//! Starting calls: one pipeline per call, each on its own thread, with its
//! own sink and an id no other call has. The same spawner serves `sip`,
//! `rtp` and `serve`. Finished threads are joined as new calls start, so a
//! long-running listener holds handles only for the calls still running.

use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::thread::JoinHandle;
use std::time::{Duration, Instant};

use crate::capture::Source;
use crate::event::{Event, Role};
use crate::pipeline::{CallOutcome, Engine, RunOptions};
use crate::sink::calls::CallSinks;

/// Runs one call to its end (the [`Engine`], or a fake in tests).
pub trait CallRunner: Send + Sync + 'static {
    /// Score `source`, sending events to `sink`.
    fn run_call(
        &self,
        source: Box<dyn Source>,
        opts: &RunOptions,
        sink: &mut dyn FnMut(Event),
    ) -> Result<CallOutcome, String>;
}

impl CallRunner for Engine {
    fn run_call(
        &self,
        source: Box<dyn Source>,
        opts: &RunOptions,
        sink: &mut dyn FnMut(Event),
    ) -> Result<CallOutcome, String> {
        self.run(source, opts, sink, &|_, _| {})
            .map_err(|e| e.to_string())
    }
}

/// What happened to a call, for the caller's log.
pub enum CallNote<'a> {
    /// The call got its id and its pipeline started.
    Started {
        /// Its id.
        id: &'a str,
    },
    /// It ended normally.
    Ended {
        /// Its id.
        id: &'a str,
        /// The outcome.
        outcome: &'a CallOutcome,
        /// Wall time it took.
        wall: Duration,
    },
    /// It could not start, or failed.
    Failed {
        /// Its id (the base id if none was claimed).
        id: &'a str,
        /// Why.
        error: &'a str,
    },
}

/// Receives the notes.
pub type Notify = Arc<dyn Fn(CallNote<'_>) + Send + Sync>;

/// Starts calls and keeps track of the running ones.
pub struct Spawner {
    runner: Arc<dyn CallRunner>,
    sinks: Arc<dyn CallSinks>,
    template: RunOptions,
    notify: Notify,
    running: Mutex<Vec<JoinHandle<()>>>,
    gauge: Arc<AtomicUsize>,
}

/// Counts a call as running until its thread ends.
struct Running(Arc<AtomicUsize>);

impl Drop for Running {
    fn drop(&mut self) {
        self.0.fetch_sub(1, Ordering::SeqCst);
    }
}

/// Why a call could not be started.
#[derive(Debug, thiserror::Error)]
#[error("cannot start a call thread: {0}")]
pub struct SpawnError(String);

/// A thread name for a call: `call-` and the first characters of its id.
pub fn thread_name(id: &str) -> String {
    format!("call-{}", id.chars().take(10).collect::<String>())
}

impl Spawner {
    /// Calls run by `runner` with the options of `template` (live or
    /// offline; its stop flag is shared by every call), their events to
    /// the sinks `sinks` opens.
    pub fn new(
        runner: Arc<dyn CallRunner>,
        sinks: Arc<dyn CallSinks>,
        template: RunOptions,
        notify: Notify,
    ) -> Self {
        Spawner {
            runner,
            sinks,
            template,
            notify,
            running: Mutex::new(Vec::new()),
            gauge: Arc::new(AtomicUsize::new(0)),
        }
    }

    /// The number of calls whose pipelines are running (from `spawn` until
    /// the summary is written): what admission control should count.
    pub fn gauge(&self) -> Arc<AtomicUsize> {
        self.gauge.clone()
    }

    /// The options calls run with (their stop flag ends every call).
    pub fn stop_flag(&self) -> Arc<AtomicBool> {
        self.template.stop.clone()
    }

    /// Start a call on its own thread. Its id is `base` or, if another call
    /// has that one, a variant of it (see [`CallSinks::open`]); `roles`
    /// override the configured ones.
    pub fn spawn(
        &self,
        base: &str,
        source: Box<dyn Source>,
        roles: Option<Vec<Role>>,
        agent_id: Option<String>,
    ) -> Result<(), SpawnError> {
        let runner = self.runner.clone();
        let sinks = self.sinks.clone();
        let notify = self.notify.clone();
        let mut opts = self.template.clone();
        opts.roles = roles;
        if agent_id.is_some() {
            opts.meta.agent_id = agent_id;
        }
        opts.meta.started_unix_ms = Some(crate::event::now_unix_ms());
        let base = base.to_string();
        self.gauge.fetch_add(1, Ordering::SeqCst);
        let running = Running(self.gauge.clone());
        let h = std::thread::Builder::new()
            .name(thread_name(&base))
            .spawn(move || {
                let _running = running;
                let (id, mut sink) = match sinks.open(&base) {
                    Ok(x) => x,
                    Err(e) => {
                        return notify(CallNote::Failed {
                            id: &base,
                            error: &e.to_string(),
                        })
                    }
                };
                opts.call_id = id.clone();
                notify(CallNote::Started { id: &id });
                let t = Instant::now();
                match runner.run_call(source, &opts, &mut sink) {
                    Ok(o) => notify(CallNote::Ended {
                        id: &id,
                        outcome: &o,
                        wall: t.elapsed(),
                    }),
                    Err(e) => notify(CallNote::Failed { id: &id, error: &e }),
                }
            })
            .map_err(|e| SpawnError(e.to_string()))?;
        let mut running = self.running.lock().unwrap_or_else(|p| p.into_inner());
        reap(&mut running);
        running.push(h);
        Ok(())
    }

    /// Calls still running (finished ones are joined).
    pub fn running(&self) -> usize {
        let mut running = self.running.lock().unwrap_or_else(|p| p.into_inner());
        reap(&mut running);
        running.len()
    }

    /// Wait for every running call to end.
    pub fn join(&self) {
        loop {
            let next = {
                let mut running = self.running.lock().unwrap_or_else(|p| p.into_inner());
                running.pop()
            };
            match next {
                Some(h) => {
                    let _ = h.join();
                }
                None => return,
            }
        }
    }
}

/// Join the threads that have finished.
fn reap(running: &mut Vec<JoinHandle<()>>) {
    let mut i = 0;
    while i < running.len() {
        if running[i].is_finished() {
            let _ = running.swap_remove(i).join();
        } else {
            i += 1;
        }
    }
}

#[cfg(test)]
pub(crate) mod tests {
    use super::*;
    use crate::capture::{Memory, SourceInfo};
    use crate::sink::calls::{empty_summary, CallOutput};
    use std::sync::atomic::{AtomicU64, Ordering};

    /// Drains the source without models; the summary carries the frames
    /// read as its duration and the source's RTP counters.
    pub(crate) struct FakeRunner {
        pub frames: AtomicU64,
    }

    impl CallRunner for FakeRunner {
        fn run_call(
            &self,
            source: Box<dyn Source>,
            opts: &RunOptions,
            sink: &mut dyn FnMut(Event),
        ) -> Result<CallOutcome, String> {
            let info: SourceInfo = source.info();
            let d = super::super::capture::drain(source).map_err(|e| e.to_string())?;
            self.frames.fetch_add(d.frames, Ordering::Relaxed);
            let Event::Summary(mut s) = empty_summary(&opts.call_id) else {
                return Err("not a summary".into());
            };
            s.duration = d.frames as f64 / info.rate as f64;
            s.stats.rtp = d.rtp;
            sink(Event::Summary(s.clone()));
            Ok(CallOutcome {
                summary: s,
                input_error: d.error,
            })
        }
    }

    fn spawner(notes: Arc<Mutex<Vec<String>>>) -> (Spawner, Arc<FakeRunner>) {
        let runner = Arc::new(FakeRunner {
            frames: AtomicU64::new(0),
        });
        let out =
            CallOutput::new(Box::new(std::io::sink()), crate::sink::Format::Jsonl, None).unwrap();
        let notify: Notify = Arc::new(move |n| {
            let line = match n {
                CallNote::Started { id } => format!("started {id}"),
                CallNote::Ended { id, .. } => format!("ended {id}"),
                CallNote::Failed { id, error } => format!("failed {id}: {error}"),
            };
            notes.lock().unwrap().push(line);
        });
        let s = Spawner::new(
            runner.clone(),
            Arc::new(out),
            RunOptions::offline("x"),
            notify,
        );
        (s, runner)
    }

    fn memory(frames: usize) -> Box<dyn Source> {
        Box::new(Memory::new(8000, 1, vec![0.1; frames], "m".into()))
    }

    /// Defect 6: the thread name sliced the id at byte 10, inside a
    /// multi-byte character.
    #[test]
    fn regression_non_ascii_call_id_names_its_thread() {
        assert_eq!(thread_name("€€€€€€€€€€€€"), "call-€€€€€€€€€€");
        let notes = Arc::default();
        let (s, _) = spawner(Arc::clone(&notes));
        s.spawn("€€€€-ventas", memory(100), None, None).unwrap();
        s.join();
        assert_eq!(
            *notes.lock().unwrap(),
            ["started €€€€-ventas", "ended €€€€-ventas"]
        );
    }

    /// Defect 2: every call's JoinHandle was kept until the process ended.
    #[test]
    fn regression_finished_call_threads_are_joined() {
        let notes: Arc<Mutex<Vec<String>>> = Arc::default();
        let (s, runner) = spawner(notes.clone());
        for i in 0..200 {
            s.spawn(&format!("c{i}"), memory(800), None, None).unwrap();
        }
        let ended = || {
            notes
                .lock()
                .unwrap()
                .iter()
                .filter(|n| n.starts_with("ended"))
                .count()
        };
        let t = Instant::now();
        while ended() < 200 {
            assert!(t.elapsed() < Duration::from_secs(60), "calls did not end");
            std::thread::sleep(Duration::from_millis(5));
        }
        assert_eq!(runner.frames.load(Ordering::Relaxed), 200 * 800);
        // Their threads return right after the note.
        let t = Instant::now();
        while s.running() > 0 {
            assert!(
                t.elapsed() < Duration::from_secs(10),
                "{} handles of finished calls kept",
                s.running.lock().unwrap().len()
            );
            std::thread::sleep(Duration::from_millis(5));
        }
    }

    #[test]
    fn concurrent_calls_with_one_id_get_distinct_ids() {
        use crate::telephony::call::RtpSource;
        let notes: Arc<Mutex<Vec<String>>> = Arc::default();
        let (s, _) = spawner(notes.clone());
        // Live sources that end when the sender goes: all three overlap.
        let (tx, rx) = crossbeam_channel::bounded(1);
        for _ in 0..3 {
            let src = RtpSource::new(
                rx.clone(),
                vec![Role::Agent],
                Default::default(),
                Instant::now(),
                "live".into(),
            );
            s.spawn("same", Box::new(src), None, None).unwrap();
        }
        let started = || {
            let mut v: Vec<String> = notes
                .lock()
                .unwrap()
                .iter()
                .filter_map(|n| n.strip_prefix("started ").map(str::to_string))
                .collect();
            v.sort();
            v
        };
        let t = Instant::now();
        while started().len() < 3 {
            assert!(
                t.elapsed() < Duration::from_secs(30),
                "{:?}",
                notes.lock().unwrap()
            );
            std::thread::sleep(Duration::from_millis(5));
        }
        assert_eq!(s.gauge().load(Ordering::SeqCst), 3, "three pipelines run");
        drop((tx, rx));
        s.join();
        assert_eq!(started(), ["same", "same-2", "same-3"]);
        assert_eq!(s.gauge().load(Ordering::SeqCst), 0);
    }
}
