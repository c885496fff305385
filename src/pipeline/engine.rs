use std::path::Path;
use std::sync::atomic::{AtomicI64, Ordering};
use std::sync::Arc;
use std::time::Instant;

use crossbeam_channel::{bounded, Receiver, Sender};

use super::{CHUNK_FRAMES, QUEUE_CHUNKS, QUEUE_TURNS};
use crate::asr::{Asr, AsrError, Transcript, WhisperModel};
use crate::audio::resample::{LegResampler, ResampleError};
use crate::audio::wav::{WavError, WavSource};
use crate::config::Config;
use crate::event::{
    now_unix_ms, Event, PipelineStats, SpeakerSummary, StageMs, SummaryEvent, Timings, TurnEvent,
    TurnRef, Word, SCHEMA_VERSION,
};
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

/// Wall time per stage, accumulated by the pipeline threads (ms).
#[derive(Debug, Default, Clone)]
pub struct StageClock {
    /// Per-stage totals.
    pub ms: StageMs,
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

/// What the pipeline threads hand back: turns, input error, stage totals,
/// ASR retries, empty turns.
type Collected = (Vec<TurnEvent>, Option<String>, StageMs, u32, u32);

struct AsrDone {
    turn: TurnAudio,
    transcript: Transcript,
    frontend_ms: f32,
    asr_ms: f32,
}

fn elapsed_ms(t: Instant) -> f32 {
    t.elapsed().as_secs_f32() * 1000.0
}

impl Engine {
    /// Load every model once.
    pub fn load(cfg: &Config, paths: &ModelPaths) -> Result<Self, EngineError> {
        let whisper = WhisperModel::load(&paths.whisper, cfg.asr.clone())?;
        let vad = SileroModel::load(&paths.ort_lib, &paths.silero)?;
        let encoder = OnnxEncoder::load(&paths.ort_lib, &paths.encoder, &paths.tokenizer, 1)?;
        let head = PolarityHead::bundled()?;
        Ok(Engine {
            cfg: cfg.clone(),
            whisper,
            vad,
            encoder,
            head: Arc::new(head),
        })
    }

    /// The text encoder (for training and evaluation).
    pub fn encoder(&self) -> &OnnxEncoder {
        &self.encoder
    }

    /// Score a WAV file. Events go to `sink` in call order (turns sorted by
    /// start time, then the summary); `progress` gets the audio seconds read.
    pub fn score_file(
        &self,
        path: &Path,
        call_id: &str,
        sink: &mut dyn FnMut(Event),
        progress: &(dyn Fn(f64, f64) + Sync),
    ) -> Result<CallOutcome, EngineError> {
        let wall = Instant::now();
        let mut src = WavSource::open(path)?;
        let info = src.info();
        let legs = info.channels as usize;
        let rate = info.sample_rate;
        let gauge = Gauge {
            now: AtomicI64::new(0),
            peak: AtomicI64::new(0),
        };
        let total_s = info.duration_s();

        let (turn_tx, turn_rx) = bounded::<(TurnAudio, f32)>(QUEUE_TURNS);
        let (asr_tx, asr_rx) = bounded::<AsrDone>(QUEUE_TURNS);
        let (ev_tx, ev_rx) = bounded::<TurnEvent>(QUEUE_TURNS);
        let mut leg_txs: Vec<Sender<Vec<f32>>> = Vec::new();
        let mut leg_rxs: Vec<Receiver<Vec<f32>>> = Vec::new();
        for _ in 0..legs {
            let (tx, rx) = bounded::<Vec<f32>>(QUEUE_CHUNKS);
            leg_txs.push(tx);
            leg_rxs.push(rx);
        }

        let result = std::thread::scope(|s| -> Result<Collected, EngineError> {
            // Reader.
            let gauge_r = &gauge;
            let reader = s.spawn(move || -> Option<String> {
                let mut bufs: Vec<Vec<f32>> = Vec::new();
                loop {
                    match src.read_chunk(CHUNK_FRAMES, &mut bufs) {
                        Ok(0) => return None,
                        Ok(n) => {
                            for (tx, b) in leg_txs.iter().zip(bufs.iter()) {
                                gauge_r.add(samples_us(n, rate));
                                if tx.send(b.clone()).is_err() {
                                    return None;
                                }
                            }
                            progress(src.frames_read() as f64 / rate as f64, total_s);
                        }
                        Err(e) => return Some(e.to_string()),
                    }
                }
            });

            // Frontends, one per leg.
            let mut fronts = Vec::new();
            for (leg, rx) in leg_rxs.into_iter().enumerate() {
                let tx = turn_tx.clone();
                let vad = self.vad.detector();
                let seg_cfg = self.cfg.segment.clone();
                let gauge_f = &gauge;
                fronts.push(s.spawn(move || -> Result<(), EngineError> {
                    let mut rs = LegResampler::new(rate)?;
                    let mut seg = TurnSegmenter::new(leg as u8, vad, seg_cfg);
                    let mut buf16 = Vec::with_capacity(CHUNK_FRAMES * 8);
                    let mut turns = Vec::new();
                    let mut ms = 0.0f32;
                    let mut held = 0i64;
                    let forward = |turns: &mut Vec<TurnAudio>, ms: &mut f32| -> bool {
                        for t in turns.drain(..) {
                            gauge_f.add(samples_us(t.samples.len(), 16_000));
                            if tx.send((t, *ms)).is_err() {
                                return false;
                            }
                            *ms = 0.0;
                        }
                        true
                    };
                    for chunk in rx.iter() {
                        let t0 = Instant::now();
                        buf16.clear();
                        rs.push(&chunk, &mut buf16)?;
                        seg.push(&buf16, &mut turns)?;
                        ms += elapsed_ms(t0);
                        gauge_f.sub(samples_us(chunk.len(), rate));
                        let now_held = samples_us(seg.buffered_samples(), 16_000);
                        gauge_f.add(now_held - held);
                        held = now_held;
                        if !forward(&mut turns, &mut ms) {
                            return Ok(());
                        }
                    }
                    let t0 = Instant::now();
                    buf16.clear();
                    rs.finish(&mut buf16)?;
                    seg.push(&buf16, &mut turns)?;
                    seg.finish(&mut turns)?;
                    ms += elapsed_ms(t0);
                    gauge_f.sub(held);
                    forward(&mut turns, &mut ms);
                    Ok(())
                }));
            }
            drop(turn_tx);

            // ASR.
            let whisper = self.whisper.clone();
            let asr = s.spawn(move || -> Result<u32, EngineError> {
                let mut rec = whisper.recognizer()?;
                let mut retries = 0;
                for (turn, frontend_ms) in turn_rx.iter() {
                    let t0 = Instant::now();
                    let transcript = rec.transcribe(&turn.samples)?;
                    if transcript.retried {
                        retries += 1;
                    }
                    let done = AsrDone {
                        turn,
                        transcript,
                        frontend_ms,
                        asr_ms: elapsed_ms(t0),
                    };
                    if asr_tx.send(done).is_err() {
                        break;
                    }
                }
                Ok(retries)
            });

            // Analysis: prosody + sentiment.
            let roles = self.cfg.roles.clone();
            let encoder = self.encoder.clone();
            let head = self.head.clone();
            let call = call_id.to_string();
            let gauge_a = &gauge;
            let analysis = s.spawn(move || -> Result<u32, EngineError> {
                let mut baselines: Vec<Baseline> = vec![Baseline::default(); legs];
                let mut empty = 0;
                for done in asr_rx.iter() {
                    let AsrDone {
                        turn,
                        transcript,
                        frontend_ms,
                        asr_ms,
                    } = done;
                    gauge_a.sub(samples_us(turn.samples.len(), 16_000));
                    if transcript.words.is_empty() {
                        empty += 1;
                        continue;
                    }
                    let mut ev = analyse(
                        &call,
                        &turn,
                        transcript,
                        &roles,
                        legs,
                        &mut baselines,
                        &encoder,
                        &head,
                    )?;
                    ev.timings.stage_ms.frontend = round1(frontend_ms);
                    ev.timings.stage_ms.asr = round1(asr_ms);
                    if ev_tx.send(ev).is_err() {
                        break;
                    }
                }
                Ok(empty)
            });

            let mut events: Vec<TurnEvent> = ev_rx.iter().collect();
            let input_error = reader
                .join()
                .map_err(|_| EngineError::Internal("reader thread panicked".into()))?;
            for f in fronts {
                f.join()
                    .map_err(|_| EngineError::Internal("frontend thread panicked".into()))??;
            }
            let retries = asr
                .join()
                .map_err(|_| EngineError::Internal("ASR thread panicked".into()))??;
            let empty = analysis
                .join()
                .map_err(|_| EngineError::Internal("analysis thread panicked".into()))??;
            events.sort_by(|a, b| a.start.total_cmp(&b.start).then(a.leg.cmp(&b.leg)));
            let mut totals = StageMs::default();
            for (i, e) in events.iter_mut().enumerate() {
                e.turn_id = i as u32;
                totals.frontend += e.timings.stage_ms.frontend;
                totals.asr += e.timings.stage_ms.asr;
                totals.prosody += e.timings.stage_ms.prosody;
                totals.sentiment += e.timings.stage_ms.sentiment;
            }
            Ok((events, input_error, totals, retries, empty))
        });
        let (events, input_error, totals, retries, empty) = result?;
        // An input that failed before any audio is an error for the whole call.
        if let Some(e) = &input_error {
            if events.is_empty() && gauge.peak.load(Ordering::Relaxed) == 0 {
                return Err(EngineError::Wav(WavError::Read {
                    path: path.to_path_buf(),
                    frame: 0,
                    reason: e.clone(),
                }));
            }
        }
        let duration = info.duration_s();
        let mut speakers = Vec::new();
        for leg in 0..legs {
            let mine: Vec<&TurnEvent> = events.iter().filter(|e| e.leg as usize == leg).collect();
            let scores: Vec<f32> = mine.iter().map(|e| e.polarity.score).collect();
            speakers.push(SpeakerSummary {
                leg: leg as u8,
                role: self.cfg.roles.role(leg, legs),
                turns: mine.len() as u32,
                talk_time: round3(mine.iter().map(|e| e.end - e.start).sum::<f64>() + 0.0),
                mean_sentiment: if scores.is_empty() {
                    None
                } else {
                    Some(round3f(scores.iter().sum::<f32>() / scores.len() as f32))
                },
                last_sentiment: scores.last().copied(),
                most_negative_turn: mine
                    .iter()
                    .min_by(|a, b| a.polarity.score.total_cmp(&b.polarity.score))
                    .map(|e| TurnRef {
                        turn_id: e.turn_id,
                        score: e.polarity.score,
                        start: e.start,
                    }),
            });
        }
        let n_turns = events.len() as u32;
        for e in events {
            let mut e = e;
            e.timings.emitted_unix_ms = now_unix_ms();
            sink(Event::Turn(e));
        }
        let summary = SummaryEvent {
            schema: SCHEMA_VERSION.into(),
            call_id: call_id.into(),
            duration: round3(duration),
            turns: n_turns,
            speakers,
            stats: PipelineStats {
                wall_seconds: round3(wall.elapsed().as_secs_f64()),
                stage_ms: StageMs {
                    frontend: round1(totals.frontend),
                    asr: round1(totals.asr),
                    prosody: round1(totals.prosody),
                    sentiment: round1(totals.sentiment),
                },
                peak_buffered_audio_s: round3(gauge.peak.load(Ordering::Relaxed) as f64 / 1e6),
                empty_turns: empty,
                asr_retries: retries,
                input_error: input_error.clone(),
            },
        };
        sink(Event::Summary(summary.clone()));
        Ok(CallOutcome {
            summary,
            input_error,
        })
    }
}

#[allow(clippy::too_many_arguments)]
fn analyse(
    call: &str,
    turn: &TurnAudio,
    transcript: Transcript,
    roles: &crate::config::RolesConfig,
    legs: usize,
    baselines: &mut [Baseline],
    encoder: &OnnxEncoder,
    head: &PolarityHead,
) -> Result<TurnEvent, EngineError> {
    let off = turn.audio_start as f64 / 16_000.0;
    let audio_end = off + turn.samples.len() as f64 / 16_000.0;
    let words: Vec<Word> = transcript
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
    let t1 = Instant::now();
    let emb = encoder.embed(&[transcript.text.as_str()])?;
    let polarity = head.polarity(emb.first().map(|v| v.as_slice()).unwrap_or(&[]));
    let intensity = sentiment::intensity(&polarity, &pros.z);
    let sentiment_ms = elapsed_ms(t1);
    Ok(TurnEvent {
        schema: SCHEMA_VERSION.into(),
        call_id: call.into(),
        turn_id: 0,
        leg: turn.leg,
        role: if legs == 1 {
            roles.mono
        } else {
            roles.role(leg, legs)
        },
        start: round3(turn.start as f64 / 16_000.0),
        end: round3(turn.end as f64 / 16_000.0),
        text: transcript.text,
        words,
        polarity,
        intensity,
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
        },
    })
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
