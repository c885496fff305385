use std::collections::VecDeque;
use std::path::Path;
use std::sync::atomic::{AtomicBool, AtomicI64, AtomicU32, AtomicUsize, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use crossbeam_channel::{bounded, never, select, Receiver, Sender, TryRecvError, TrySendError};

use super::agreement::{join, Agreement};
use super::{CHUNK_FRAMES, QUEUE_CHUNKS, QUEUE_EVENTS, QUEUE_TURNS};
use crate::asr::{Asr, AsrError, AsrWord, Transcript, WhisperModel};
use crate::audio::resample::{LegResampler, ResampleError};
use crate::audio::wav::WavError;
use crate::capture::{CaptureError, CaptureShared, Source, WavFile};
use crate::config::Config;
use crate::event::{
    now_unix_ms, Devices, Event, PartialEvent, PipelineStats, QueueStats, StageMs, SummaryEvent,
    Timings, TurnEvent, Word, SCHEMA_VERSION,
};
use crate::intel::emotion::EmotionHead;
use crate::intel::rules::Rule;
use crate::intel::webhook::Webhook;
use crate::intel::{Conversation, TurnAnalyser};
use crate::models::ModelPaths;
use crate::prosody::{self, Baseline};
use crate::segment::{SileroModel, TurnAudio, TurnSegmenter, VadError};
use crate::sentiment::{self, EncoderError, HeadError, OnnxEncoder, PolarityHead, TextEncoder};

/// Why a call could not be scored.
#[derive(Debug, thiserror::Error)]
pub enum EngineError {
    /// Input file problem.
    #[error(transparent)]
    Wav(#[from] WavError),
    /// Source problem (device, stdin parameters).
    #[error(transparent)]
    Capture(#[from] CaptureError),
    /// The input failed before any audio was read.
    #[error("{0}")]
    Input(String),
    /// Resampler.
    #[error(transparent)]
    Resample(#[from] ResampleError),
    /// Voice activity.
    #[error(transparent)]
    Vad(#[from] VadError),
    /// Recognition.
    #[error(transparent)]
    Asr(#[from] AsrError),
    /// Text encoder.
    #[error(transparent)]
    Encoder(#[from] EncoderError),
    /// Polarity head.
    #[error(transparent)]
    Head(#[from] HeadError),
    /// Emotion head or rules.
    #[error("{0}")]
    Intel(String),
    /// A pipeline thread died (a bug; reported instead of hanging).
    #[error("internal pipeline error: {0}")]
    Internal(String),
}

/// The loaded models, shared by every call scored with them.
#[derive(Clone)]
pub struct Engine {
    cfg: Config,
    whisper: WhisperModel,
    vad: SileroModel,
    encoder: OnnxEncoder,
    head: Arc<PolarityHead>,
    emotion: Arc<EmotionHead>,
    rules: Vec<Rule>,
}

/// The result of scoring one call.
#[derive(Debug, Clone)]
pub struct CallOutcome {
    /// The summary event (also sent to the sink).
    pub summary: SummaryEvent,
    /// Set when the input ended in an error after some good audio: the turns
    /// before it were scored and written, but the run should fail.
    pub input_error: Option<String>,
}

/// How one run behaves.
#[derive(Debug, Clone)]
pub struct RunOptions {
    /// Call id written in every event.
    pub call_id: String,
    /// Live: emit each event as soon as it is ready (turn ids in emission
    /// order) with latency timings. Offline: turns sorted by start time at
    /// the end.
    pub live: bool,
    /// Partial cadence (None = no partials).
    pub partial_interval: Option<Duration>,
    /// Minimum turn length before the first partial.
    pub partial_min: Duration,
    /// Decode settled turns speculatively.
    pub speculate: bool,
    /// Stop after this much audio (seconds).
    pub max_seconds: Option<f64>,
    /// Set to end capture gracefully (SIGINT/SIGTERM).
    pub stop: Arc<AtomicBool>,
    /// Capture ring capacity, seconds of audio.
    pub ring_seconds: f64,
    /// Capacity of the finished-turn queue.
    pub final_queue: usize,
    /// Role of each leg, overriding `[roles]` (telephony legs know theirs).
    pub roles: Option<Vec<crate::event::Role>>,
}

impl RunOptions {
    /// Offline scoring: no partials, ordered output.
    pub fn offline(call_id: &str) -> Self {
        RunOptions {
            call_id: call_id.into(),
            live: false,
            partial_interval: None,
            partial_min: Duration::from_millis(1500),
            speculate: false,
            max_seconds: None,
            stop: Arc::new(AtomicBool::new(false)),
            ring_seconds: 2.0,
            final_queue: QUEUE_TURNS,
            roles: None,
        }
    }

    /// Live streaming with the `[live]` settings of `cfg`.
    pub fn live(call_id: &str, cfg: &Config, stop: Arc<AtomicBool>) -> Self {
        let l = &cfg.live;
        RunOptions {
            call_id: call_id.into(),
            live: true,
            partial_interval: (l.partial_interval_ms > 0)
                .then(|| Duration::from_millis(l.partial_interval_ms as u64)),
            partial_min: Duration::from_millis(l.partial_min_ms as u64),
            speculate: l.speculate,
            max_seconds: None,
            stop,
            ring_seconds: l.ring_ms as f64 / 1000.0,
            final_queue: l.final_queue,
            roles: None,
        }
    }
}

struct Gauge {
    now: AtomicI64,
    peak: AtomicI64,
}

impl Gauge {
    /// `us` = microseconds of audio.
    fn add(&self, us: i64) {
        let v = self.now.fetch_add(us, Ordering::Relaxed) + us;
        self.peak.fetch_max(v, Ordering::Relaxed);
    }
    fn sub(&self, us: i64) {
        self.now.fetch_sub(us, Ordering::Relaxed);
    }
}

fn samples_us(n: usize, rate: u32) -> i64 {
    (n as f64 * 1e6 / rate as f64) as i64
}

/// High-water marks and counters shared by the stages.
#[derive(Default)]
struct Counters {
    ring_peak: AtomicUsize,
    chunks_peak: AtomicUsize,
    finals_peak: AtomicUsize,
    partials_peak: AtomicUsize,
    events_peak: AtomicUsize,
    partials_skipped: AtomicU32,
    speculative_hits: AtomicU32,
    asr_retries: AtomicU32,
    empty_turns: AtomicU32,
}

fn high_water<T>(mark: &AtomicUsize, tx: &Sender<T>) {
    mark.fetch_max(tx.len(), Ordering::Relaxed);
}

/// 16 kHz audio of one leg and when it entered the pipeline.
struct Chunk16 {
    samples: Vec<f32>,
    seen: Instant,
}

/// A finished turn for ASR.
struct FinalJob {
    turn: TurnAudio,
    /// When the chunk holding the end of speech entered the pipeline.
    seen: Instant,
    frontend_ms: f32,
}

/// The open turn's audio so far, for a partial (or speculative) decoding.
struct PartialJob {
    leg: u8,
    seq: u32,
    speech_start: u64,
    audio_start: u64,
    samples: Vec<f32>,
    seen: Instant,
    /// The samples are exactly what the final turn will hold if no more speech comes.
    speculative: bool,
}

enum AsrOut {
    Final {
        job: FinalJob,
        transcript: Transcript,
        asr_ms: f32,
        speculative: bool,
    },
    Partial {
        job: PartialJob,
        committed: Vec<AsrWord>,
        tentative: Vec<AsrWord>,
        asr_ms: f32,
    },
}

/// An event with the instant its awaited audio entered the pipeline.
struct Ready {
    event: Event,
    seen: Instant,
}

fn elapsed_ms(t: Instant) -> f32 {
    t.elapsed().as_secs_f32() * 1000.0
}

fn join_err(what: &str) -> EngineError {
    EngineError::Internal(format!("{what} thread panicked"))
}

impl Engine {
    /// Load every model once.
    pub fn load(cfg: &Config, paths: &ModelPaths) -> Result<Self, EngineError> {
        let whisper = WhisperModel::load(&paths.whisper, cfg.asr.clone())?;
        let vad = SileroModel::load(&paths.ort_lib, &paths.silero)?;
        let encoder = OnnxEncoder::load(
            &paths.ort_lib,
            &paths.encoder,
            &paths.tokenizer,
            1,
            cfg!(feature = "ort-cuda"),
        )?;
        let head = PolarityHead::bundled()?;
        let emotion = EmotionHead::bundled().map_err(EngineError::Intel)?;
        let rules = cfg
            .escalation
            .effective_rules()
            .map_err(EngineError::Intel)?;
        Ok(Engine {
            cfg: cfg.clone(),
            whisper,
            vad,
            encoder,
            head: Arc::new(head),
            emotion: Arc::new(emotion),
            rules,
        })
    }

    /// The text encoder (for training and evaluation).
    pub fn encoder(&self) -> &OnnxEncoder {
        &self.encoder
    }

    /// The configuration the engine was loaded with.
    pub fn config(&self) -> &Config {
        &self.cfg
    }

    /// Where each model runs.
    pub fn devices(&self) -> Devices {
        Devices {
            asr: self.whisper.device().into(),
            encoder: self.encoder.device().into(),
            vad: "cpu".into(),
        }
    }

    /// Score a WAV file offline. Events go to `sink` in call order (turns
    /// sorted by start time, then the summary); `progress` gets the audio
    /// seconds read and the total.
    pub fn score_file(
        &self,
        path: &Path,
        call_id: &str,
        sink: &mut dyn FnMut(Event),
        progress: &(dyn Fn(f64, f64) + Sync),
    ) -> Result<CallOutcome, EngineError> {
        let src = WavFile::open(path)?;
        let opts = RunOptions::offline(call_id);
        let prog = |done: f64, total: Option<f64>| progress(done, total.unwrap_or(0.0));
        self.run(Box::new(src), &opts, sink, &prog)
            .map_err(|e| match e {
                EngineError::Input(reason) => EngineError::Wav(WavError::Read {
                    path: path.to_path_buf(),
                    frame: 0,
                    reason,
                }),
                e => e,
            })
    }

    /// Run one call from `source` through the staged pipeline:
    ///
    /// capture → ring → resample → per leg: VAD + turns → ASR → prosody +
    /// sentiment → `sink` (on the calling thread).
    pub fn run(
        &self,
        source: Box<dyn Source>,
        opts: &RunOptions,
        sink: &mut dyn FnMut(Event),
        progress: &(dyn Fn(f64, Option<f64>) + Sync),
    ) -> Result<CallOutcome, EngineError> {
        let wall = Instant::now();
        let info = source.info();
        let legs = info.channels as usize;
        let rate = info.rate;
        let ring_len = ((opts.ring_seconds * rate as f64) as usize).max(CHUNK_FRAMES) * legs;
        let (producer, mut consumer) = rtrb::RingBuffer::<f32>::new(ring_len);
        let shared = Arc::new(CaptureShared::default());
        let capture = source.start(producer, shared.clone(), opts.stop.clone())?;
        let gauge = Gauge {
            now: AtomicI64::new(0),
            peak: AtomicI64::new(0),
        };
        let counters = Counters::default();
        let max_frames = opts.max_seconds.map(|s| (s * rate as f64) as u64);

        let (final_tx, final_rx) = bounded::<FinalJob>(opts.final_queue.max(1));
        let (partial_tx, partial_rx) = bounded::<PartialJob>(2 * legs);
        let (asr_tx, asr_rx) = bounded::<AsrOut>(QUEUE_TURNS);
        let (ev_tx, ev_rx) = bounded::<Ready>(QUEUE_EVENTS);
        let mut leg_txs: Vec<Sender<Chunk16>> = Vec::new();
        let mut leg_rxs: Vec<Receiver<Chunk16>> = Vec::new();
        for _ in 0..legs {
            let (tx, rx) = bounded::<Chunk16>(QUEUE_CHUNKS);
            leg_txs.push(tx);
            leg_rxs.push(rx);
        }

        let mut turns_out: Vec<TurnEvent> = Vec::new();
        let roles: Vec<crate::event::Role> = (0..legs)
            .map(|l| match &opts.roles {
                Some(r) => r.get(l).copied().unwrap_or_default(),
                None if legs == 1 => self.cfg.roles.mono,
                None => self.cfg.roles.role(l, legs),
            })
            .collect();
        let mut conv = Conversation::new(
            &opts.call_id,
            roles.clone(),
            self.cfg.dynamics.clone(),
            self.rules.clone(),
        );
        let webhook = match &self.cfg.escalation.webhook {
            Some(url) => Some(
                Webhook::start(
                    url,
                    Duration::from_millis(self.cfg.escalation.webhook_timeout_ms),
                    self.cfg.escalation.webhook_retries,
                )
                .map_err(EngineError::Intel)?,
            ),
            None => None,
        };
        let mut totals = StageMs::default();
        let mut partials_emitted = 0u32;
        let mut next_turn_id = 0u32;
        // Emit a final turn and what it causes (shifts, recoveries, alerts).
        let mut emit_turn = |mut t: TurnEvent, sink: &mut dyn FnMut(Event)| {
            totals.frontend += t.timings.stage_ms.frontend;
            totals.asr += t.timings.stage_ms.asr;
            totals.prosody += t.timings.stage_ms.prosody;
            totals.sentiment += t.timings.stage_ms.sentiment;
            let extra = conv.on_turn(&mut t);
            t.timings.emitted_unix_ms = now_unix_ms();
            sink(Event::Turn(t));
            forward_events(extra, webhook.as_ref(), sink);
        };

        let result = std::thread::scope(|s| -> Result<(&'static str, u64), EngineError> {
            // Resample: drain the ring, split legs, resample to 16 kHz.
            let stop = &opts.stop;
            let gauge_r = &gauge;
            let counters_r = &counters;
            let resample = s.spawn(move || -> Result<(&'static str, u64), EngineError> {
                let mut rss = (0..legs)
                    .map(|_| LegResampler::new(rate))
                    .collect::<Result<Vec<_>, _>>()?;
                let mut split: Vec<Vec<f32>> = vec![Vec::with_capacity(CHUNK_FRAMES); legs];
                let mut frames: u64 = 0;
                let send = |leg: usize, samples: Vec<f32>, seen: Instant| -> bool {
                    gauge_r.add(samples_us(samples.len(), 16_000));
                    let ok = leg_txs[leg].send(Chunk16 { samples, seen }).is_ok();
                    high_water(&counters_r.chunks_peak, &leg_txs[leg]);
                    ok
                };
                let ended = loop {
                    let abandoned = consumer.is_abandoned();
                    let avail = consumer.slots();
                    counters_r
                        .ring_peak
                        .fetch_max(avail / legs, Ordering::Relaxed);
                    let mut n = avail.min(CHUNK_FRAMES * legs) / legs * legs;
                    if let Some(m) = max_frames {
                        n = n.min(((m - frames) as usize) * legs);
                    }
                    if n == 0 {
                        if max_frames.is_some_and(|m| frames >= m) {
                            break "limit";
                        }
                        if abandoned {
                            break "eof";
                        }
                        if stop.load(Ordering::Relaxed) {
                            break "signal";
                        }
                        std::thread::sleep(Duration::from_millis(2));
                        continue;
                    }
                    let seen = Instant::now();
                    if let Ok(chunk) = consumer.read_chunk(n) {
                        let (a, b) = chunk.as_slices();
                        for l in split.iter_mut() {
                            l.clear();
                        }
                        for (i, v) in a.iter().chain(b.iter()).enumerate() {
                            split[i % legs].push(*v);
                        }
                        chunk.commit_all();
                    }
                    frames += (n / legs) as u64;
                    for (leg, rs) in rss.iter_mut().enumerate() {
                        let mut out =
                            Vec::with_capacity(split[leg].len() * 16_000 / rate as usize + 64);
                        rs.push(&split[leg], &mut out)?;
                        if !send(leg, out, seen) {
                            return Ok(("error", frames));
                        }
                    }
                    progress(frames as f64 / rate as f64, info.duration_s);
                    if stop.load(Ordering::Relaxed) && consumer.slots() == 0 {
                        break "signal";
                    }
                };
                // Let go of the ring: a live source stops writing.
                drop(consumer);
                let seen = Instant::now();
                for (leg, rs) in rss.iter_mut().enumerate() {
                    let mut out = Vec::new();
                    rs.finish(&mut out)?;
                    send(leg, out, seen);
                }
                Ok((ended, frames))
            });

            // Voice activity and turns, one thread per leg.
            let mut segs = Vec::new();
            for (leg, rx) in leg_rxs.into_iter().enumerate() {
                let final_tx = final_tx.clone();
                let partial_tx = partial_tx.clone();
                let vad = self.vad.detector();
                let seg_cfg = self.cfg.segment.clone();
                let gauge_s = &gauge;
                let counters_s = &counters;
                let opts_s = opts;
                segs.push(s.spawn(move || -> Result<(), EngineError> {
                    let mut seg = TurnSegmenter::new(leg as u8, vad, seg_cfg);
                    let pad = seg.pad();
                    let mut turns = Vec::new();
                    let mut ms = 0.0f32;
                    let mut held = 0i64;
                    // (16 kHz position after a chunk, when it arrived), recent first-to-last.
                    let mut marks: VecDeque<(u64, Instant)> = VecDeque::new();
                    let cadence = opts_s
                        .partial_interval
                        .map(|d| (d.as_secs_f64() * 16_000.0) as u64);
                    let min_partial = (opts_s.partial_min.as_secs_f64() * 16_000.0) as u64;
                    let mut next_partial: Option<(u32, u64)> = None;
                    let mut last_spec: Option<(u32, u64)> = None;
                    let seen_at = |marks: &VecDeque<(u64, Instant)>, pos: u64| -> Instant {
                        marks
                            .iter()
                            .find(|(p, _)| *p >= pos)
                            .or(marks.back())
                            .map(|m| m.1)
                            .unwrap_or_else(Instant::now)
                    };
                    let forward = |turns: &mut Vec<TurnAudio>,
                                   ms: &mut f32,
                                   marks: &VecDeque<(u64, Instant)>|
                     -> bool {
                        for t in turns.drain(..) {
                            gauge_s.add(samples_us(t.samples.len(), 16_000));
                            let seen = seen_at(marks, t.end);
                            let job = FinalJob {
                                turn: t,
                                seen,
                                frontend_ms: *ms,
                            };
                            // Policy: finished turns are never dropped; a full
                            // queue blocks here and backs up into the ring.
                            if final_tx.send(job).is_err() {
                                return false;
                            }
                            high_water(&counters_s.finals_peak, &final_tx);
                            *ms = 0.0;
                        }
                        true
                    };
                    for chunk in rx.iter() {
                        let t0 = Instant::now();
                        seg.push(&chunk.samples, &mut turns)?;
                        ms += elapsed_ms(t0);
                        gauge_s.sub(samples_us(chunk.samples.len(), 16_000));
                        let now_held = samples_us(seg.buffered_samples(), 16_000);
                        gauge_s.add(now_held - held);
                        held = now_held;
                        let pos = seg.position();
                        marks.push_back((pos, chunk.seen));
                        let keep_from = seg
                            .open_turn()
                            .map(|o| o.last_speech_end)
                            .unwrap_or(pos)
                            .saturating_sub(16_000);
                        while marks.len() > 1 && marks[1].0 < keep_from {
                            marks.pop_front();
                        }
                        if !forward(&mut turns, &mut ms, &marks) {
                            return Ok(());
                        }
                        let Some(open) = seg.open_turn() else {
                            continue;
                        };
                        let mut job = None;
                        if opts_s.speculate {
                            if let Some(audio) = open.settled_audio(pad) {
                                let key = (open.seq, open.last_speech_end);
                                if last_spec != Some(key) {
                                    last_spec = Some(key);
                                    job = Some((audio.to_vec(), true));
                                }
                            }
                        }
                        if let (None, Some(cad)) = (&job, cadence) {
                            let due = match next_partial {
                                Some((seq, at)) if seq == open.seq => at,
                                _ => {
                                    let at = open.speech_start + min_partial.max(cad);
                                    next_partial = Some((open.seq, at));
                                    at
                                }
                            };
                            if pos >= due && open.silence < pad {
                                next_partial = Some((open.seq, pos + cad));
                                job = Some((open.samples.to_vec(), false));
                            }
                        }
                        if let Some((samples, speculative)) = job {
                            let pj = PartialJob {
                                leg: leg as u8,
                                seq: open.seq,
                                speech_start: open.speech_start,
                                audio_start: open.audio_start,
                                samples,
                                seen: chunk.seen,
                                speculative,
                            };
                            // Policy: partials are best effort; a full queue skips them.
                            match partial_tx.try_send(pj) {
                                Ok(()) => high_water(&counters_s.partials_peak, &partial_tx),
                                Err(TrySendError::Full(_)) => {
                                    counters_s.partials_skipped.fetch_add(1, Ordering::Relaxed);
                                }
                                Err(TrySendError::Disconnected(_)) => return Ok(()),
                            }
                        }
                    }
                    let t0 = Instant::now();
                    seg.finish(&mut turns)?;
                    ms += elapsed_ms(t0);
                    gauge_s.sub(held);
                    forward(&mut turns, &mut ms, &marks);
                    Ok(())
                }));
            }
            drop(final_tx);
            drop(partial_tx);

            // ASR: finished turns first; partials when nothing else waits.
            let whisper = self.whisper.clone();
            let counters_a = &counters;
            let asr = s.spawn(move || -> Result<(), EngineError> {
                let mut w = AsrWorker::new(whisper.recognizer()?, legs, counters_a);
                w.emit_partials = opts.partial_interval.is_some();
                let mut partial_rx = partial_rx;
                loop {
                    loop {
                        match partial_rx.try_recv() {
                            Ok(p) => w.stash(p),
                            Err(TryRecvError::Empty) => break,
                            Err(TryRecvError::Disconnected) => {
                                partial_rx = never();
                                break;
                            }
                        }
                    }
                    let next = match final_rx.try_recv() {
                        Ok(f) => Next::Final(f),
                        Err(TryRecvError::Disconnected) => break,
                        Err(TryRecvError::Empty) => match w.take_partial() {
                            Some(p) => Next::Partial(p),
                            None => select! {
                                recv(final_rx) -> f => f.map(Next::Final).unwrap_or(Next::End),
                                recv(partial_rx) -> p => p.map(Next::Stash).unwrap_or(Next::PartialsClosed),
                            },
                        },
                    };
                    let out = match next {
                        Next::Final(f) => w.final_turn(f)?,
                        Next::Partial(p) => match w.partial(p)? {
                            Some(out) => out,
                            None => continue,
                        },
                        Next::Stash(p) => {
                            w.stash(p);
                            continue;
                        }
                        Next::PartialsClosed => {
                            partial_rx = never();
                            continue;
                        }
                        Next::End => break,
                    };
                    if asr_tx.send(out).is_err() {
                        break;
                    }
                }
                Ok(())
            });

            // Analysis: prosody + sentiment.
            let leg_roles = roles.clone();
            let encoder = self.encoder.clone();
            let head = self.head.clone();
            let call = opts.call_id.clone();
            let gauge_a = &gauge;
            let counters_n = &counters;
            let redact = self.cfg.privacy.redact;
            let mut analyser = TurnAnalyser::new((*self.emotion).clone(), legs);
            let analysis = s.spawn(move || -> Result<(), EngineError> {
                let mut baselines: Vec<Baseline> = vec![Baseline::default(); legs];
                let role = |leg: usize| leg_roles[leg];
                for out in asr_rx.iter() {
                    let ready = match out {
                        AsrOut::Final {
                            job,
                            transcript,
                            asr_ms,
                            speculative,
                        } => {
                            gauge_a.sub(samples_us(job.turn.samples.len(), 16_000));
                            if transcript.words.is_empty() {
                                counters_n.empty_turns.fetch_add(1, Ordering::Relaxed);
                                continue;
                            }
                            let (mut ev, emb) = analyse(
                                &call,
                                &job.turn,
                                transcript,
                                role(job.turn.leg as usize),
                                &mut baselines,
                                &encoder,
                                &head,
                                redact,
                            )?;
                            let t2 = Instant::now();
                            analyser.enrich(&mut ev, &emb, &encoder, &head)?;
                            ev.timings.stage_ms.sentiment += round1(elapsed_ms(t2));
                            ev.timings.stage_ms.frontend = round1(job.frontend_ms);
                            ev.timings.stage_ms.asr = round1(asr_ms);
                            ev.timings.speculative = speculative;
                            Ready {
                                event: Event::Turn(ev),
                                seen: job.seen,
                            }
                        }
                        AsrOut::Partial {
                            job,
                            committed,
                            tentative,
                            asr_ms,
                        } => {
                            let mut all = committed.clone();
                            all.extend(tentative.iter().cloned());
                            let mut text = join(&all);
                            let (mut committed_text, mut tentative_text) =
                                (join(&committed), join(&tentative));
                            if redact {
                                text = crate::intel::pii::redact(&text).0;
                                committed_text = crate::intel::pii::redact(&committed_text).0;
                                tentative_text = crate::intel::pii::redact(&tentative_text).0;
                            }
                            if text.is_empty() {
                                continue;
                            }
                            let t1 = Instant::now();
                            let emb = encoder.embed(&[text.as_str()])?;
                            let polarity =
                                head.polarity(emb.first().map(|v| v.as_slice()).unwrap_or(&[]));
                            let sentiment_ms = elapsed_ms(t1);
                            let audio_end =
                                (job.audio_start + job.samples.len() as u64) as f64 / 16_000.0;
                            Ready {
                                event: Event::Partial(PartialEvent {
                                    schema: SCHEMA_VERSION.into(),
                                    call_id: call.clone(),
                                    leg: job.leg,
                                    role: role(job.leg as usize),
                                    seq: job.seq,
                                    start: round3(job.speech_start as f64 / 16_000.0),
                                    text,
                                    committed: committed_text,
                                    tentative: tentative_text,
                                    polarity,
                                    timings: Timings {
                                        audio_end: round3(audio_end),
                                        emitted_unix_ms: 0,
                                        stage_ms: StageMs {
                                            frontend: 0.0,
                                            asr: round1(asr_ms),
                                            prosody: 0.0,
                                            sentiment: round1(sentiment_ms),
                                        },
                                        latency_ms: None,
                                        speculative: job.speculative,
                                    },
                                }),
                                seen: job.seen,
                            }
                        }
                    };
                    if ev_tx.send(ready).is_err() {
                        break;
                    }
                    high_water(&counters_n.events_peak, &ev_tx);
                }
                Ok(())
            });

            // Sink, on this thread: live events go out as they come.
            for ready in ev_rx.iter() {
                let Ready { event, seen } = ready;
                match event {
                    Event::Turn(mut t) => {
                        if opts.live {
                            t.turn_id = next_turn_id;
                            next_turn_id += 1;
                            t.timings.latency_ms = Some(round1(elapsed_ms(seen)));
                            emit_turn(t, sink);
                        } else {
                            turns_out.push(t);
                        }
                    }
                    Event::Partial(mut p) => {
                        p.timings.emitted_unix_ms = now_unix_ms();
                        p.timings.latency_ms = Some(round1(elapsed_ms(seen)));
                        partials_emitted += 1;
                        sink(Event::Partial(p));
                    }
                    _ => {}
                }
            }
            let ended = resample.join().map_err(|_| join_err("resample"))??;
            for sg in segs {
                sg.join().map_err(|_| join_err("segmentation"))??;
            }
            asr.join().map_err(|_| join_err("ASR"))??;
            analysis.join().map_err(|_| join_err("analysis"))??;
            Ok(ended)
        });
        drop(capture);
        let (mut ended, frames) = result?;
        let input_error = shared.error.lock().ok().and_then(|g| g.clone());
        if input_error.is_some() {
            ended = "error";
        }
        // An input that failed before any audio is an error for the whole call.
        if let Some(e) = &input_error {
            if frames == 0 {
                return Err(EngineError::Input(e.clone()));
            }
        }
        if !opts.live {
            turns_out.sort_by(|a, b| a.start.total_cmp(&b.start).then(a.leg.cmp(&b.leg)));
            for (i, mut t) in turns_out.drain(..).enumerate() {
                t.turn_id = i as u32;
                emit_turn(t, sink);
            }
        }
        let duration = frames as f64 / rate as f64;
        let (extra, speakers, conversation, score_5) = conv.finish(duration);
        forward_events(extra, webhook.as_ref(), sink);
        let (alerts_posted, alerts_post_failed) = webhook.map(|w| w.finish()).unwrap_or((0, 0));
        let n_turns = speakers.iter().map(|s| s.turns).sum();
        let c = &counters;
        let summary = SummaryEvent {
            schema: SCHEMA_VERSION.into(),
            call_id: opts.call_id.clone(),
            duration: round3(duration),
            turns: n_turns,
            speakers,
            score_5,
            conversation,
            stats: PipelineStats {
                wall_seconds: round3(wall.elapsed().as_secs_f64()),
                stage_ms: StageMs {
                    frontend: round1(totals.frontend),
                    asr: round1(totals.asr),
                    prosody: round1(totals.prosody),
                    sentiment: round1(totals.sentiment),
                },
                peak_buffered_audio_s: round3(gauge.peak.load(Ordering::Relaxed) as f64 / 1e6),
                empty_turns: c.empty_turns.load(Ordering::Relaxed),
                asr_retries: c.asr_retries.load(Ordering::Relaxed),
                input_error: input_error.clone(),
                ended: ended.into(),
                frames_captured: shared.frames.load(Ordering::Relaxed),
                frames_dropped: shared.dropped.load(Ordering::Relaxed),
                partials_emitted,
                partials_skipped: c.partials_skipped.load(Ordering::Relaxed),
                speculative_hits: c.speculative_hits.load(Ordering::Relaxed),
                queues: QueueStats {
                    ring_capacity_s: round3((ring_len / legs) as f64 / rate as f64),
                    ring_peak_s: round3(c.ring_peak.load(Ordering::Relaxed) as f64 / rate as f64),
                    chunks_peak: c.chunks_peak.load(Ordering::Relaxed),
                    finals_peak: c.finals_peak.load(Ordering::Relaxed),
                    partials_peak: c.partials_peak.load(Ordering::Relaxed),
                    events_peak: c.events_peak.load(Ordering::Relaxed),
                },
                devices: self.devices(),
                alerts_posted,
                alerts_post_failed,
                rtp: shared.rtp.lock().ok().and_then(|g| g.clone()),
            },
        };
        sink(Event::Summary(summary.clone()));
        Ok(CallOutcome {
            summary,
            input_error,
        })
    }
}

/// Hand conversation events to the sink; alerts also go to the webhook.
fn forward_events(events: Vec<Event>, webhook: Option<&Webhook>, sink: &mut dyn FnMut(Event)) {
    for e in events {
        if let (Event::Alert(_), Some(w)) = (&e, webhook) {
            if let Ok(body) = serde_json::to_vec(&e) {
                w.send(body);
            }
        }
        sink(e);
    }
}

enum Next {
    Final(FinalJob),
    Partial(PartialJob),
    Stash(PartialJob),
    PartialsClosed,
    End,
}

/// A speculative decoding kept until its turn is final: (seq, audio start,
/// sample count, transcript, ms).
type Speculation = (u32, u64, usize, Transcript, f32);

/// The ASR stage's state: one recogniser, per-leg partial slots, agreement
/// and speculation.
struct AsrWorker<'a, A: Asr> {
    rec: A,
    pending: Vec<Option<PartialJob>>,
    done_seq: Vec<Option<u32>>,
    agreements: Vec<Agreement>,
    spec: Vec<Option<Speculation>>,
    counters: &'a Counters,
    /// Emit partial results (speculative decodings are kept either way).
    emit_partials: bool,
}

impl<'a, A: Asr> AsrWorker<'a, A> {
    fn new(rec: A, legs: usize, counters: &'a Counters) -> Self {
        AsrWorker {
            rec,
            pending: (0..legs).map(|_| None).collect(),
            done_seq: vec![None; legs],
            agreements: vec![Agreement::default(); legs],
            spec: (0..legs).map(|_| None).collect(),
            counters,
            emit_partials: true,
        }
    }

    fn skip(&self) {
        self.counters
            .partials_skipped
            .fetch_add(1, Ordering::Relaxed);
    }

    /// Keep the newest request per leg; a speculative one is not displaced by
    /// a plain partial of the same turn.
    fn stash(&mut self, p: PartialJob) {
        let slot = &mut self.pending[p.leg as usize];
        let keep_old = slot
            .as_ref()
            .is_some_and(|o| o.speculative && !p.speculative && o.seq == p.seq);
        let had = slot.is_some();
        if !keep_old {
            *slot = Some(p);
        }
        if had {
            self.skip();
        }
    }

    /// The request that has waited longest, dropping stale ones.
    fn take_partial(&mut self) -> Option<PartialJob> {
        loop {
            let leg = self
                .pending
                .iter()
                .enumerate()
                .filter_map(|(i, p)| p.as_ref().map(|p| (i, p.seen)))
                .min_by_key(|x| x.1)?
                .0;
            let p = self.pending[leg].take()?;
            if self.done_seq[leg].is_some_and(|d| p.seq <= d) {
                self.skip();
                continue;
            }
            return Some(p);
        }
    }

    fn final_turn(&mut self, job: FinalJob) -> Result<AsrOut, EngineError> {
        let leg = job.turn.leg as usize;
        let t0 = Instant::now();
        let cached = self.spec[leg].take().filter(|c| {
            c.0 == job.turn.seq && c.1 == job.turn.audio_start && c.2 == job.turn.samples.len()
        });
        let (transcript, asr_ms, speculative) = match cached {
            Some(c) => {
                self.counters
                    .speculative_hits
                    .fetch_add(1, Ordering::Relaxed);
                (c.3, c.4, true)
            }
            None => {
                let t = self.rec.transcribe(&job.turn.samples)?;
                (t, elapsed_ms(t0), false)
            }
        };
        if transcript.retried {
            self.counters.asr_retries.fetch_add(1, Ordering::Relaxed);
        }
        self.done_seq[leg] = Some(job.turn.seq);
        if self.pending[leg]
            .as_ref()
            .is_some_and(|p| p.seq <= job.turn.seq)
        {
            self.pending[leg] = None;
            self.skip();
        }
        Ok(AsrOut::Final {
            job,
            transcript,
            asr_ms,
            speculative,
        })
    }

    fn partial(&mut self, p: PartialJob) -> Result<Option<AsrOut>, EngineError> {
        let leg = p.leg as usize;
        let t0 = Instant::now();
        let t = self.rec.transcribe(&p.samples)?;
        let asr_ms = elapsed_ms(t0);
        let (committed, tentative) = self.agreements[leg].update(p.seq, &t.words);
        if p.speculative {
            self.spec[leg] = Some((p.seq, p.audio_start, p.samples.len(), t, asr_ms));
        }
        if !self.emit_partials {
            return Ok(None);
        }
        Ok(Some(AsrOut::Partial {
            job: p,
            committed,
            tentative,
            asr_ms,
        }))
    }
}

#[allow(clippy::too_many_arguments)]
fn analyse(
    call: &str,
    turn: &TurnAudio,
    transcript: Transcript,
    role: crate::event::Role,
    baselines: &mut [Baseline],
    encoder: &OnnxEncoder,
    head: &PolarityHead,
    redact: bool,
) -> Result<(TurnEvent, Vec<f32>), EngineError> {
    let off = turn.audio_start as f64 / 16_000.0;
    let audio_end = off + turn.samples.len() as f64 / 16_000.0;
    let mut words: Vec<Word> = transcript
        .words
        .iter()
        .map(|w| Word {
            word: w.word.clone(),
            start: round3(off + w.start),
            end: round3((off + w.end).min(audio_end)),
            probability: round3f(w.probability),
        })
        .collect();
    let t0 = Instant::now();
    let s = (turn.start - turn.audio_start) as usize;
    let e = ((turn.end - turn.audio_start) as usize).min(turn.samples.len());
    let span = match (words.first(), words.last()) {
        (Some(a), Some(b)) if words.len() >= 2 => Some((words.len(), b.end - a.start)),
        _ => None,
    };
    let mut pros = prosody::features(&turn.samples[s.min(e)..e], &turn.frame_speech, span);
    let leg = turn.leg as usize;
    if let Some(b) = baselines.get_mut(leg) {
        b.score_and_update(&mut pros);
    }
    let prosody_ms = elapsed_ms(t0);
    let mut text = transcript.text;
    let redacted = if redact {
        crate::intel::redact_turn(&mut text, &mut words)
    } else {
        Vec::new()
    };
    let t1 = Instant::now();
    let emb = encoder
        .embed(&[text.as_str()])?
        .into_iter()
        .next()
        .unwrap_or_default();
    let polarity = head.polarity(&emb);
    let intensity = sentiment::intensity(&polarity, &pros.z);
    let sentiment_ms = elapsed_ms(t1);
    let ev = TurnEvent {
        schema: SCHEMA_VERSION.into(),
        call_id: call.into(),
        turn_id: 0,
        leg: turn.leg,
        seq: turn.seq,
        role,
        start: round3(turn.start as f64 / 16_000.0),
        end: round3(turn.end as f64 / 16_000.0),
        text,
        words,
        polarity,
        score_5: 0.0,
        intensity,
        intensity_band: String::new(),
        emotion: None,
        indicators: None,
        spans: Vec::new(),
        trend: None,
        redacted,
        prosody: pros,
        timings: Timings {
            audio_end: round3(turn.end as f64 / 16_000.0),
            emitted_unix_ms: 0,
            stage_ms: StageMs {
                frontend: 0.0,
                asr: 0.0,
                prosody: round1(prosody_ms),
                sentiment: round1(sentiment_ms),
            },
            latency_ms: None,
            speculative: false,
        },
    };
    Ok((ev, emb))
}

fn round1(v: f32) -> f32 {
    (v * 10.0).round() / 10.0
}
fn round3(v: f64) -> f64 {
    (v * 1000.0).round() / 1000.0
}
fn round3f(v: f32) -> f32 {
    (v * 1000.0).round() / 1000.0
}
