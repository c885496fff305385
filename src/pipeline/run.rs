//! The topology: one call's stages, each on its own thread, joined by
//! bounded queues (see the table in [`super`]); the sink runs on the
//! caller's thread. Generic over the models so the queue logic can be
//! driven by small deterministic fakes in the unit tests.

use std::sync::atomic::Ordering;
use std::sync::Arc;
use std::thread::ScopedJoinHandle;
use std::time::Instant;

use crossbeam_channel::{bounded, Receiver, Sender};

use super::analysis::{AnalysisStage, TextModels};
use super::asr::AsrStage;
use super::engine::{CallOutcome, EngineError, RunOptions};
use super::messages::{AsrOut, Chunk16, FinalJob, PartialJob, Ready};
use super::resample::{Ended, ResampleStage};
use super::segment::{PartialPolicy, SegmentStage};
use super::sink::{Closing, SinkStage};
use super::speakers::{Embedder, LegSpeakers};
use super::stats::{round3, Counters, Shared};
use super::{CHUNK_FRAMES, QUEUE_CHUNKS, QUEUE_EVENTS, QUEUE_TURNS};
use crate::asr::AsrModel;
use crate::capture::{CaptureShared, Source};
use crate::config::Config;
use crate::diarize::{speaker_label, OnlineDiarizer, FRAME_S};
use crate::event::{
    Devices, Event, PipelineStats, QueueStats, Relabelled, Role, SummaryEvent, SCHEMA_VERSION,
};
use crate::intel::rules::Rule;
use crate::intel::webhook::Webhook;
use crate::intel::Conversation;
use crate::segment::{TurnSegmenter, VadModel};
use crate::sentiment::TextEncoder;

/// Everything a call needs from the loaded models.
pub(crate) struct Models<'m, A, V, E: TextEncoder> {
    pub cfg: &'m Config,
    pub asr: &'m A,
    pub vad: &'m V,
    pub text: TextModels<E>,
    /// The speaker model, when diarisation is on.
    pub speaker: Option<Embedder>,
    pub rules: &'m [Rule],
    pub hints: &'m [crate::intel::assist::HintRule],
    pub devices: Devices,
}

/// How leg `leg` of `legs` learns who spoke when: from the first pass when
/// there was one, else live; None on legs that are not diarised.
fn leg_speakers<A, V, E: TextEncoder>(
    m: &Models<'_, A, V, E>,
    opts: &RunOptions,
    leg: usize,
    legs: usize,
) -> Result<Option<LegSpeakers>, EngineError> {
    let (Some(embedder), true) = (&m.speaker, m.cfg.diarize.applies(legs)) else {
        return Ok(None);
    };
    if let Some(known) = opts
        .speaker_segments
        .as_ref()
        .and_then(|k| k.get(leg).cloned())
    {
        return Ok(known.map(|s| LegSpeakers::Known(Arc::new(s))));
    }
    let d = OnlineDiarizer::new(embedder.clone(), m.cfg.diarize.options.clone())
        .map_err(|e| EngineError::Intel(format!("diarisation: {e}")))?;
    Ok(Some(LegSpeakers::Online(Box::new(d))))
}

fn join_err(what: &str) -> EngineError {
    EngineError::Internal(format!("{what} thread panicked"))
}

fn joined<T>(
    h: ScopedJoinHandle<'_, Result<T, EngineError>>,
    what: &str,
) -> Result<T, EngineError> {
    h.join().map_err(|_| join_err(what))?
}

/// The role of each leg: the run's own, or the config's.
fn leg_roles(cfg: &Config, opts: &RunOptions, legs: usize) -> Vec<Role> {
    (0..legs)
        .map(|l| match &opts.roles {
            Some(r) => r.get(l).copied().unwrap_or_default(),
            None if legs == 1 => cfg.roles.mono,
            None => cfg.roles.role(l, legs),
        })
        .collect()
}

pub(super) fn webhook(cfg: &Config) -> Result<Option<Webhook>, EngineError> {
    let e = &cfg.escalation;
    match &e.webhook {
        Some(url) => Webhook::start(url, &e.webhook_options())
            .map(Some)
            .map_err(EngineError::Intel),
        None => Ok(None),
    }
}

/// The queues between the stages.
struct Queues {
    legs_tx: Vec<Sender<Chunk16>>,
    legs_rx: Vec<Receiver<Chunk16>>,
    finals: (Sender<FinalJob>, Receiver<FinalJob>),
    partials: (Sender<PartialJob>, Receiver<PartialJob>),
    asr: (Sender<AsrOut>, Receiver<AsrOut>),
    events: (Sender<Ready>, Receiver<Ready>),
}

impl Queues {
    fn new(legs: usize, final_queue: usize) -> Self {
        let (legs_tx, legs_rx) = (0..legs).map(|_| bounded(QUEUE_CHUNKS)).unzip();
        Queues {
            legs_tx,
            legs_rx,
            finals: bounded(final_queue.max(1)),
            partials: bounded(2 * legs),
            asr: bounded(QUEUE_TURNS),
            events: bounded(QUEUE_EVENTS),
        }
    }
}

/// Run one call from `source` through the stages; events go to `sink`.
pub(crate) fn run_call<A, V, E>(
    m: &Models<'_, A, V, E>,
    source: Box<dyn Source>,
    opts: &RunOptions,
    sink: &mut dyn FnMut(Event),
    progress: &(dyn Fn(f64, Option<f64>) + Sync),
) -> Result<CallOutcome, EngineError>
where
    A: AsrModel,
    V: VadModel,
    E: TextEncoder + Clone,
{
    let wall = Instant::now();
    let info = source.info();
    let (legs, rate) = (info.channels as usize, info.rate);
    let ring_len = ((opts.ring_seconds * rate as f64) as usize).max(CHUNK_FRAMES) * legs;
    let (producer, consumer) = rtrb::RingBuffer::<f32>::new(ring_len);
    let capture_shared = Arc::new(CaptureShared::default());
    let capture = source.start(producer, capture_shared.clone(), opts.stop.clone())?;
    let shared = Shared {
        serial: !opts.live,
        ..Default::default()
    };
    let roles = leg_roles(m.cfg, opts, legs);
    let conv = Conversation::new(
        &opts.call_id,
        roles.clone(),
        m.cfg.dynamics.clone(),
        m.rules.to_vec(),
    )
    .with_assist(m.hints.to_vec(), false);
    let mut out = SinkStage::new(opts.live, conv, webhook(m.cfg)?, sink);
    let q = Queues::new(legs, opts.final_queue);
    let policy = PartialPolicy::new(opts.partial_interval, opts.partial_min, opts.speculate);

    let result = std::thread::scope(|s| -> Result<(Ended, u64), EngineError> {
        let shared = &shared;
        let resample = ResampleStage {
            rate,
            legs,
            max_frames: opts.max_seconds.map(|x| (x * rate as f64) as u64),
            stop: &opts.stop,
            out: q.legs_tx,
            shared,
        };
        let resample = s.spawn(move || resample.run(consumer, info.duration_s, progress));
        let mut segs = Vec::new();
        for (leg, rx) in q.legs_rx.into_iter().enumerate() {
            let seg = TurnSegmenter::new(leg as u8, m.vad.detector(), m.cfg.segment.clone());
            let (f, p) = (q.finals.0.clone(), q.partials.0.clone());
            let stage = SegmentStage::new(leg as u8, seg, policy, f, p, shared)
                .with_speakers(leg_speakers(m, opts, leg, legs)?);
            segs.push(s.spawn(move || stage.run(rx)));
        }
        drop((q.finals.0, q.partials.0));
        let (finals, partials, asr_tx) = (q.finals.1, q.partials.1, q.asr.0);
        let asr = s.spawn(move || -> Result<(), EngineError> {
            let rec = m.asr.recognizer()?;
            // Offline, finished turns that wait are decoded together.
            let pack_s = if opts.live {
                0.0
            } else {
                m.cfg.asr.pack_s as f64
            };
            AsrStage::new(rec, legs, shared, opts.partial_interval.is_some(), pack_s)
                .run(finals, partials, asr_tx)
        });
        let analysis = AnalysisStage::new(
            &opts.call_id,
            roles,
            m.cfg.diarize.roles.clone(),
            m.text.clone(),
            m.cfg.privacy.redact,
            shared,
        );
        let (asr_rx, ev_tx) = (q.asr.1, q.events.0);
        let analysis = s.spawn(move || analysis.run(asr_rx, ev_tx));
        for ready in q.events.1.iter() {
            out.accept(ready);
        }
        let ended = joined(resample, "resample")?;
        for sg in segs {
            joined(sg, "segmentation")?;
        }
        joined(asr, "ASR")?;
        joined(analysis, "analysis")?;
        Ok(ended)
    });
    drop(capture);
    let (mut ended, frames) = result?;
    let input_error = capture_shared.error.lock().ok().and_then(|g| g.clone());
    if let Some(e) = &input_error {
        ended = Ended::Error;
        // An input that failed before any audio is an error for the whole call.
        if frames == 0 {
            return Err(EngineError::Input(e.clone()));
        }
    }
    let duration = frames as f64 / rate as f64;
    let (closing, sink) = out.close(duration);
    let run = RunFacts {
        call_id: &opts.call_id,
        duration,
        wall_s: wall.elapsed().as_secs_f64(),
        ended,
        ring: (ring_len / legs, rate),
        input_error: input_error.clone(),
        devices: m.devices.clone(),
        meta: opts.meta.clone(),
    };
    let summary = summary(run, closing, &shared, &capture_shared);
    sink(Event::Summary(summary.clone()));
    Ok(CallOutcome {
        summary,
        input_error,
    })
}

/// What the summary says about the run itself.
pub(super) struct RunFacts<'a> {
    pub call_id: &'a str,
    pub duration: f64,
    pub wall_s: f64,
    pub ended: Ended,
    /// Ring capacity in frames, and the input rate.
    pub ring: (usize, u32),
    pub input_error: Option<String>,
    pub devices: Devices,
    /// Agent, start time and channel.
    pub meta: crate::event::CallMeta,
}

/// The stretches live diarisation gave to another speaker, in seconds.
fn relabelled(c: &Counters) -> Vec<Relabelled> {
    let kept = c.relabels.lock().unwrap_or_else(|e| e.into_inner());
    kept.iter()
        .map(|(leg, r)| Relabelled {
            leg: *leg,
            start: round3(r.start as f64 * FRAME_S),
            end: round3(r.end as f64 * FRAME_S),
            from: speaker_label(r.from),
            to: speaker_label(r.to),
        })
        .collect()
}

pub(super) fn summary(
    run: RunFacts,
    closing: Closing,
    shared: &Shared,
    capture: &CaptureShared,
) -> SummaryEvent {
    let c = &shared.counters;
    let (ring_frames, rate) = run.ring;
    let n_turns = closing.speakers.iter().map(|s| s.turns).sum();
    let language = closing.language();
    SummaryEvent {
        schema: SCHEMA_VERSION.into(),
        call_id: run.call_id.into(),
        duration: round3(run.duration),
        turns: n_turns,
        speakers: closing.speakers,
        score_5: closing.score_5,
        meta: run.meta,
        conduct: closing.conduct,
        language,
        languages: closing.languages,
        topics: crate::intel::intent::topics(&closing.intents),
        warnings: closing.warnings,
        relabelled: relabelled(c),
        conversation: closing.conversation,
        stats: PipelineStats {
            wall_seconds: round3(run.wall_s),
            stage_ms: closing.stage_ms,
            peak_buffered_audio_s: round3(shared.gauge.peak_s()),
            empty_turns: c.empty_turns.load(Ordering::Relaxed),
            asr_retries: c.asr_retries.load(Ordering::Relaxed),
            relabelled_s: round3(c.relabelled_frames.load(Ordering::Relaxed) as f64 * FRAME_S),
            input_error: run.input_error,
            ended: run.ended.as_str().into(),
            frames_captured: capture.frames.load(Ordering::Relaxed),
            frames_dropped: capture.dropped.load(Ordering::Relaxed),
            partials_emitted: closing.partials_emitted,
            partials_skipped: c.partials_skipped.load(Ordering::Relaxed),
            speculative_hits: c.speculative_hits.load(Ordering::Relaxed),
            queues: QueueStats {
                ring_capacity_s: round3(ring_frames as f64 / rate as f64),
                ring_peak_s: round3(c.ring_peak.load(Ordering::Relaxed) as f64 / rate as f64),
                chunks_peak: c.chunks_peak.load(Ordering::Relaxed),
                finals_peak: c.finals_peak.load(Ordering::Relaxed),
                partials_peak: c.partials_peak.load(Ordering::Relaxed),
                events_peak: c.events_peak.load(Ordering::Relaxed),
            },
            devices: run.devices,
            alerts_posted: closing.webhook.posted,
            alerts_post_failed: closing.webhook.failed,
            alerts_dropped: closing.webhook.dropped,
            rtp: capture.rtp.lock().ok().and_then(|g| g.clone()),
            work_ms: c.work.report(),
        },
    }
}
