//! The stages and their queue policies, driven by small deterministic fakes
//! (an energy VAD, a recogniser that names tone blocks, a hashing encoder)
//! so that no model is needed.

use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use rtrb::Producer;

use super::analysis::TextModels;
use super::engine::{EngineError, RunOptions};
use super::run::{run_call, Models};
use crate::asr::{Asr, AsrError, AsrModel, AsrWord, Transcript};
use crate::capture::{self, Capture, CaptureError, CaptureShared, RingWriter, Source, SourceInfo};
use crate::config::Config;
use crate::event::{Devices, Event, SummaryEvent, TurnEvent};
use crate::intel::emotion::EmotionHead;
use crate::segment::{EnergyVad, VadModel};
use crate::sentiment::{EncoderError, PolarityHead, TextEncoder, EMBED_DIM};

/// Recognises one word per 400 ms block of loud audio; counts its calls,
/// can be slowed down, and can fail on its n-th call.
#[derive(Clone, Default)]
struct FakeAsrModel {
    delay: Duration,
    calls: Arc<AtomicUsize>,
    fail_on_call: Option<usize>,
    /// Language-ID passes.
    lid_calls: Arc<AtomicUsize>,
    /// Each packed call: its clips' lengths in samples.
    packs: Arc<std::sync::Mutex<Vec<Vec<usize>>>>,
}

struct FakeAsr(FakeAsrModel);

impl Asr for FakeAsr {
    fn transcribe(&mut self, audio: &[f32]) -> Result<Transcript, AsrError> {
        let n = self.0.calls.fetch_add(1, Ordering::SeqCst) + 1;
        if self.0.fail_on_call == Some(n) {
            return Err(AsrError::Decode("fake recogniser failure".into()));
        }
        std::thread::sleep(self.0.delay);
        let block = 6400;
        let words: Vec<AsrWord> = audio
            .chunks(block)
            .enumerate()
            .filter(|(_, c)| c.iter().map(|v| v * v).sum::<f32>() / c.len() as f32 > 0.01)
            .map(|(i, c)| AsrWord {
                word: "tone".into(),
                start: (i * block) as f64 / 16_000.0,
                end: (i * block + c.len()) as f64 / 16_000.0,
                probability: 0.9,
            })
            .collect();
        Ok(Transcript {
            text: vec!["tone"; words.len()].join(" "),
            words,
            retried: false,
            ..Default::default()
        })
    }

    fn transcribe_packed(&mut self, clips: &[&[f32]]) -> Result<Vec<Transcript>, AsrError> {
        self.0
            .packs
            .lock()
            .unwrap()
            .push(clips.iter().map(|c| c.len()).collect());
        clips.iter().map(|c| self.transcribe(c)).collect()
    }

    fn identify_language(&mut self, _audio: &[f32], t: &mut Transcript) -> Result<(), AsrError> {
        self.0.lid_calls.fetch_add(1, Ordering::SeqCst);
        t.language = Some("en".into());
        Ok(())
    }
}

impl AsrModel for FakeAsrModel {
    type Recognizer = FakeAsr;
    fn recognizer(&self) -> Result<FakeAsr, AsrError> {
        Ok(FakeAsr(self.clone()))
    }
}

struct FakeVad;

impl VadModel for FakeVad {
    type Detector = EnergyVad;
    fn detector(&self) -> EnergyVad {
        EnergyVad { threshold: 0.05 }
    }
}

/// A deterministic unit vector per text.
#[derive(Clone)]
struct HashEncoder;

impl TextEncoder for HashEncoder {
    fn embed(&self, texts: &[&str]) -> Result<Vec<Vec<f32>>, EncoderError> {
        Ok(texts
            .iter()
            .map(|t| {
                let mut v: Vec<f32> = (0..EMBED_DIM)
                    .map(|i| (((i * 31 + t.len() * 17) % 97) as f32 - 48.0) / 48.0)
                    .collect();
                let n = v.iter().map(|x| x * x).sum::<f32>().sqrt();
                v.iter_mut().for_each(|x| *x /= n);
                v
            })
            .collect())
    }
}

/// Interleaved samples written into the ring: as fast as the pipeline takes
/// them (backpressure), or paced at `speed`× real time without waiting.
struct MemorySource {
    samples: Arc<Vec<f32>>,
    rate: u32,
    channels: u16,
    /// Live pacing (`speed`× real time); None = backpressure.
    speed: Option<f64>,
    /// Play the samples this many times (live tests that are stopped by a signal).
    loops: u32,
}

impl Source for MemorySource {
    fn info(&self) -> SourceInfo {
        SourceInfo {
            rate: self.rate,
            channels: self.channels,
            duration_s: Some(self.samples.len() as f64 / self.channels as f64 / self.rate as f64),
            live: self.speed.is_some(),
            label: "memory".into(),
        }
    }

    fn start(
        self: Box<Self>,
        ring: Producer<f32>,
        shared: Arc<CaptureShared>,
        stop: Arc<AtomicBool>,
    ) -> Result<Capture, CaptureError> {
        let ch = self.channels as usize;
        capture::spawn("capture-memory", move || {
            let mut w = RingWriter::new(ring, shared, stop, ch, self.speed.is_none());
            let per_buf = (self.rate as usize / 50) * ch; // 20 ms
            let t0 = Instant::now();
            let mut sent = 0usize;
            for _ in 0..self.loops {
                for buf in self.samples.chunks(per_buf) {
                    if let Some(speed) = self.speed {
                        sent += buf.len() / ch;
                        let due =
                            t0 + Duration::from_secs_f64(sent as f64 / self.rate as f64 / speed);
                        if let Some(wait) = due.checked_duration_since(Instant::now()) {
                            std::thread::sleep(wait);
                        }
                    }
                    if !w.write(buf) {
                        return;
                    }
                }
            }
        })
    }
}

/// `n` bursts of a 220 Hz tone of `on` seconds, each followed by `off`
/// seconds of silence, at 16 kHz.
fn bursts(n: usize, on: f64, off: f64) -> Vec<f32> {
    let mut v = Vec::new();
    for _ in 0..n {
        let k = (on * 16_000.0) as usize;
        v.extend((0..k).map(|i| 0.4 * (i as f32 * 220.0 * std::f32::consts::TAU / 16_000.0).sin()));
        v.extend(std::iter::repeat_n(0.0, (off * 16_000.0) as usize));
    }
    v
}

struct Run {
    turns: Vec<TurnEvent>,
    partials: usize,
    summary: SummaryEvent,
}

fn run_with(
    asr: &FakeAsrModel,
    source: MemorySource,
    opts: &RunOptions,
) -> Result<Run, EngineError> {
    run_with_cfg(asr, source, opts, Config::default())
}

fn run_with_cfg(
    asr: &FakeAsrModel,
    source: MemorySource,
    opts: &RunOptions,
    cfg: Config,
) -> Result<Run, EngineError> {
    let rules = cfg.escalation.effective_rules().unwrap();
    let hints = cfg.assist.effective_rules().unwrap();
    let models = Models {
        cfg: &cfg,
        asr,
        vad: &FakeVad,
        text: TextModels {
            encoder: HashEncoder,
            head: Arc::new(PolarityHead::bundled().unwrap()),
            emotion: Arc::new(EmotionHead::bundled().unwrap()),
            intent: Arc::new(crate::intel::intent::IntentHead::bundled().unwrap()),
            empathy: Arc::new(crate::intel::empathy::EmpathyModel::from_embeddings(vec![])),
        },
        speaker: None,
        rules: &rules,
        hints: &hints,
        devices: Devices::default(),
    };
    let mut turns = Vec::new();
    let mut partials = 0;
    let mut summary = None;
    run_call(
        &models,
        Box::new(source),
        opts,
        &mut |e| match e {
            Event::Turn(t) => turns.push(t),
            Event::Partial(_) => partials += 1,
            Event::Summary(s) => summary = Some(s),
            _ => {}
        },
        &|_, _| {},
    )?;
    Ok(Run {
        turns,
        partials,
        summary: summary.expect("a summary is always written"),
    })
}

fn mono(samples: Vec<f32>, speed: Option<f64>) -> MemorySource {
    MemorySource {
        samples: Arc::new(samples),
        rate: 16_000,
        channels: 1,
        speed,
        loops: 1,
    }
}

fn live_opts(stop: Arc<AtomicBool>) -> RunOptions {
    let mut cfg = Config::default();
    cfg.live.partial_interval_ms = 300;
    cfg.live.partial_min_ms = 300;
    RunOptions::live("fake", &cfg, stop)
}

#[test]
fn offline_every_turn_is_scored_in_order_and_nothing_is_dropped() {
    let asr = FakeAsrModel {
        delay: Duration::from_millis(20),
        ..Default::default()
    };
    // 8 kHz input, so the resampler has work to do.
    let at8k: Vec<f32> = bursts(6, 1.0, 1.0).into_iter().step_by(2).collect();
    let src = MemorySource {
        rate: 8000,
        ..mono(at8k, None)
    };
    let r = run_with(&asr, src, &RunOptions::offline("c")).unwrap();
    assert_eq!(r.turns.len(), 6);
    assert!(r.turns.windows(2).all(|w| w[0].start < w[1].start));
    assert!(r
        .turns
        .iter()
        .enumerate()
        .all(|(i, t)| t.turn_id == i as u32));
    for (i, t) in r.turns.iter().enumerate() {
        // Each burst starts every 2 s; the VAD finds it within a frame or two.
        assert!(
            (t.start - 2.0 * i as f64).abs() < 0.1,
            "turn {i} at {}",
            t.start
        );
        assert!(t.text.starts_with("tone"), "{}", t.text);
    }
    let st = &r.summary.stats;
    assert_eq!(st.frames_dropped, 0);
    assert_eq!(st.frames_captured, 8000 * 12);
    assert_eq!(st.ended, "eof");
    assert_eq!(r.partials, 0);
    assert_eq!(asr.calls.load(Ordering::SeqCst), 6);
    assert!(st.work_ms.asr_final >= 6.0 * 20.0, "{:?}", st.work_ms);
    assert_eq!(st.work_ms.asr_partial, 0.0);
    assert!(st.work_ms.resample > 0.0 && st.work_ms.vad > 0.0);
}

#[test]
fn offline_packing_decodes_consecutive_turns_together_in_order() {
    let asr = FakeAsrModel::default();
    let mut cfg = Config::default();
    cfg.asr.pack_s = 6.0;
    let r = run_with_cfg(
        &asr,
        mono(bursts(10, 0.8, 0.8), None),
        &RunOptions::offline("c"),
        cfg,
    )
    .unwrap();
    // Every turn once, in order, with its words.
    assert_eq!(r.turns.len(), 10);
    assert!(r.turns.windows(2).all(|w| w[0].start < w[1].start));
    assert!(r.turns.iter().all(|t| t.text.contains("tone")));
    let packs = asr.packs.lock().unwrap().clone();
    assert_eq!(
        packs.iter().map(|p| p.len()).sum::<usize>(),
        10,
        "{packs:?}"
    );
    assert!(packs.iter().any(|p| p.len() > 1), "{packs:?}");
    // Each window, with 1.5 s between its turns, fits in 6 s.
    let gap = crate::asr::PACK_GAP;
    for p in &packs {
        let window = p.iter().sum::<usize>() + gap * (p.len() - 1);
        assert!(window <= 6 * 16_000, "{packs:?}");
    }
    // Live calls never pack.
    let live = FakeAsrModel::default();
    let mut cfg = Config::default();
    cfg.asr.pack_s = 6.0;
    let stop = Arc::new(AtomicBool::new(false));
    let opts = RunOptions::live("l", &cfg, stop);
    let r = run_with_cfg(&live, mono(bursts(4, 0.8, 0.8), Some(8.0)), &opts, cfg).unwrap();
    assert_eq!(r.turns.len(), 4);
    assert!(live.packs.lock().unwrap().is_empty());
}

#[test]
fn offline_a_slow_recogniser_backs_up_without_loss() {
    // Backpressure: a recogniser much slower than the reader holds the file
    // back; nothing is dropped and the held audio stays bounded.
    let asr = FakeAsrModel {
        delay: Duration::from_millis(150),
        ..Default::default()
    };
    let r = run_with(
        &asr,
        mono(bursts(10, 0.8, 0.8), None),
        &RunOptions::offline("c"),
    )
    .unwrap();
    assert_eq!(r.turns.len(), 10);
    assert_eq!(r.summary.stats.frames_dropped, 0);
    // At most the turn queue, the chunk queue and the ring are held.
    assert!(r.summary.stats.peak_buffered_audio_s < 12.0);
}

#[test]
fn live_partials_go_first_then_audio_is_dropped_and_counted() {
    // A recogniser far slower than real time at 8x: partials are skipped,
    // finished turns queue (never dropped) until the one-slot turn queue is
    // full; only then does capture lose frames, and it counts them.
    let asr = FakeAsrModel {
        delay: Duration::from_millis(400),
        ..Default::default()
    };
    let stop = Arc::new(AtomicBool::new(false));
    let mut opts = live_opts(stop);
    opts.final_queue = 1;
    opts.ring_seconds = 0.5;
    let audio = bursts(24, 1.5, 0.7);
    let total = audio.len() as u64;
    let r = run_with(&asr, mono(audio, Some(8.0)), &opts).unwrap();
    let st = &r.summary.stats;
    assert!(st.partials_skipped > 0, "{st:?}");
    assert!(st.frames_dropped > 0, "{st:?}");
    assert_eq!(st.frames_captured + st.frames_dropped, total);
    assert!(!r.turns.is_empty());
}

#[test]
fn live_a_settled_turn_reuses_its_speculative_decode() {
    let asr = FakeAsrModel::default();
    let stop = Arc::new(AtomicBool::new(false));
    let opts = live_opts(stop);
    let r = run_with(&asr, mono(bursts(5, 1.0, 1.2), Some(4.0)), &opts).unwrap();
    let st = &r.summary.stats;
    assert_eq!(r.turns.len(), 5);
    assert!(st.speculative_hits >= 3, "{st:?}");
    assert_eq!(
        st.speculative_hits as usize,
        r.turns.iter().filter(|t| t.timings.speculative).count()
    );
    assert!(st.work_ms.asr_speculative >= st.work_ms.asr_speculative_unused);
    // Every final carries the language its check gave, whether the check
    // ran on the speculative decode or on the final.
    assert!(asr.lid_calls.load(Ordering::SeqCst) >= 1);
    assert!(r.turns.iter().all(|t| t.language.as_deref() == Some("en")));
    // Turn ids follow emission order, every final turn has a latency.
    assert!(r.turns.iter().all(|t| t.timings.latency_ms.is_some()));
    assert!(r.partials > 0);
}

#[test]
fn live_sigint_finishes_the_open_turn_and_writes_the_summary() {
    let asr = FakeAsrModel::default();
    let stop = Arc::new(AtomicBool::new(false));
    let opts = live_opts(stop.clone());
    // A long call: one 3 s burst then silence, looped; stopped mid-burst.
    let mut src = mono(bursts(1, 3.0, 1.0), Some(2.0));
    src.loops = 1000;
    let stopper = std::thread::spawn(move || {
        // 4.5 s of audio at 2x: the second burst is being spoken.
        std::thread::sleep(Duration::from_millis(2750));
        stop.store(true, Ordering::SeqCst);
    });
    let t0 = Instant::now();
    let r = run_with(&asr, src, &opts).unwrap();
    stopper.join().unwrap();
    assert!(t0.elapsed() < Duration::from_secs(10));
    assert_eq!(r.summary.stats.ended, "signal");
    // The finished first burst and the open second one, cut at the signal.
    assert_eq!(
        r.turns.len(),
        2,
        "{:?}",
        r.turns.iter().map(|t| (t.start, t.end)).collect::<Vec<_>>()
    );
    assert!(r.turns[1].start > 3.5 && r.turns[1].end > r.turns[1].start);
}

#[test]
fn a_recogniser_error_ends_the_call_with_that_error() {
    let asr = FakeAsrModel {
        fail_on_call: Some(3),
        ..Default::default()
    };
    let t0 = Instant::now();
    let e = run_with(
        &asr,
        mono(bursts(8, 1.0, 1.0), None),
        &RunOptions::offline("c"),
    )
    .err()
    .expect("the run fails");
    assert!(matches!(e, EngineError::Asr(_)), "{e}");
    assert!(t0.elapsed() < Duration::from_secs(10));
}
