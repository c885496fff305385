//! Criterion benchmarks of callpulse's non-ASR stages.
//!
//! Everything a stage needs (models, detectors, resamplers, audio) is built
//! once, outside `b.iter`, so each measurement is the steady-state cost of
//! one call. Where it makes sense the throughput is one element per 20 ms of
//! audio (`elem/s` in criterion's output = 20 ms frames per second; one
//! element's cost = time / elements).
//!
//! Run with `cargo bench --bench stages` (models from `models/store`, or the
//! `CALLPULSE_MODELS_DIR` / `CALLPULSE_ORT_LIB` overrides). Without the models
//! the bench fails and says to run `cargo run --release -- models fetch`.

use std::hint::black_box;
use std::path::PathBuf;

use criterion::{BatchSize, Criterion, Throughput};

use callpulse::audio::resample::LegResampler;
use callpulse::config::Config;
use callpulse::event::Role;
use callpulse::models::ModelPaths;
use callpulse::prosody;
use callpulse::segment::{
    EnergyVad, SegmentConfig, SileroModel, SileroVad, TurnSegmenter, VoiceDetector, FRAME,
};
use callpulse::sentiment::{E5Encoder, PolarityHead, TextEncoder};

/// Sample rate the stages after resampling run at.
const RATE: usize = 16_000;
/// 20 ms at 16 kHz.
const FRAME_20MS: usize = RATE / 50;
/// Real speech: `SPEECH_SECS` of the first customer turn (channel 1) of this
/// fixture that is long enough, from `LEAD_IN_S` after its start (at the time
/// of writing turn 5, "Four days offline and you charged me twice. This is
/// absolutely ridiculous!", so about 17.2 s - 20.2 s). Times come from the
/// fixture's script so a regenerated fixture keeps working.
const FIXTURE: &str = "audio-fixtures/call_escalation";
const SPEECH_CHANNEL: u64 = 1;
const SPEECH_SECS: f64 = 3.0;
const LEAD_IN_S: f64 = 0.05;
/// A 15-word customer sentence for the sentence encoder.
const SENTENCE: &str =
    "I have called three times this week and my internet is still not working properly";

/// Fail the bench (not skip it) with a message saying what to do.
fn fail(what: &str) -> ! {
    eprintln!(
        "error: {what}\n\
         The stage benchmarks need the installed models: run \
         `cargo run --release -- models fetch` (or point CALLPULSE_MODELS_DIR / \
         CALLPULSE_ORT_LIB at them) and rerun the bench."
    );
    std::process::exit(1);
}

/// Models, loaded once.
struct Models {
    silero: SileroModel,
    /// multilingual-e5-small, one intra-op thread.
    e5: E5Encoder,
    head: PolarityHead,
}

fn load_models() -> Models {
    let paths = ModelPaths::resolve(&Config::default());
    let missing: Vec<String> = [
        ("ONNX Runtime", &paths.ort_lib),
        ("Silero VAD", &paths.silero),
        ("e5-small encoder", &paths.encoder),
        ("e5-small tokenizer", &paths.tokenizer),
    ]
    .iter()
    .filter(|(_, p)| !p.is_file())
    .map(|(name, p)| format!("  {name}: {}", p.display()))
    .collect();
    if !missing.is_empty() {
        fail(&format!("models not installed:\n{}", missing.join("\n")));
    }
    let silero = SileroModel::load(&paths.ort_lib, &paths.silero)
        .unwrap_or_else(|e| fail(&format!("cannot load the Silero VAD: {e}")));
    let e5 = E5Encoder::open(&paths)
        .unwrap_or_else(|e| fail(&format!("cannot load the e5-small encoder: {e}")));
    let head = PolarityHead::bundled()
        .unwrap_or_else(|e| fail(&format!("cannot load the bundled polarity head: {e}")));
    Models { silero, e5, head }
}

/// Real speech at 16 kHz from the fixture's customer channel, with the word
/// count and word span (seconds) whisper's word times would give for it.
struct Speech {
    samples: Vec<f32>,
    words: (usize, f64),
    start_s: f64,
}

fn real_speech() -> Speech {
    let base = PathBuf::from(env!("CARGO_MANIFEST_DIR")).join(FIXTURE);
    let script_path = base.with_extension("script.json");
    let script: serde_json::Value = std::fs::read_to_string(&script_path)
        .ok()
        .and_then(|s| serde_json::from_str(&s).ok())
        .unwrap_or_else(|| panic!("cannot read {}", script_path.display()));
    let turn = script["turns"]
        .as_array()
        .into_iter()
        .flatten()
        .find(|t| {
            let (a, b) = (t["start"].as_f64(), t["end"].as_f64());
            t["channel"].as_u64() == Some(SPEECH_CHANNEL)
                && matches!((a, b), (Some(a), Some(b)) if b - a >= SPEECH_SECS + 2.0 * LEAD_IN_S)
        })
        .unwrap_or_else(|| {
            panic!(
                "{} has no channel-{SPEECH_CHANNEL} turn of {SPEECH_SECS} s",
                script_path.display()
            )
        });
    let (t0, t1) = (
        turn["start"].as_f64().unwrap(),
        turn["end"].as_f64().unwrap(),
    );
    let n_words = turn["text"]
        .as_str()
        .unwrap_or("")
        .split_whitespace()
        .count();
    // The words that fall in the stretch, spoken over all but its edges.
    let words = (
        (n_words as f64 * SPEECH_SECS / (t1 - t0)).round() as usize,
        SPEECH_SECS - 2.0 * LEAD_IN_S,
    );
    let start_s = t0 + LEAD_IN_S;

    let path = base.with_extension("wav");
    let mut reader = hound::WavReader::open(&path)
        .unwrap_or_else(|e| panic!("cannot open {}: {e}", path.display()));
    let spec = reader.spec();
    assert_eq!(
        (spec.sample_rate, spec.bits_per_sample, spec.channels),
        (RATE as u32, 16, 2),
        "{} is not 16 kHz 16-bit stereo",
        path.display()
    );
    let start = (start_s * RATE as f64).round() as usize;
    let len = (SPEECH_SECS * RATE as f64).round() as usize;
    let speech: Vec<f32> = reader
        .samples::<i16>()
        .skip(2 * start + SPEECH_CHANNEL as usize)
        .step_by(2)
        .take(len)
        .map(|s| s.expect("fixture decodes") as f32 / 32_768.0)
        .collect();
    assert_eq!(speech.len(), len, "{} is too short", path.display());
    Speech {
        samples: speech,
        words,
        start_s,
    }
}

/// Deterministic test signal at `rate`: a harmonic-rich 150 Hz voice-like tone
/// under a small LCG noise floor.
fn synthetic(rate: usize, secs: f64) -> Vec<f32> {
    let mut seed = 0x1234_5678u32;
    (0..(secs * rate as f64) as usize)
        .map(|i| {
            seed = seed.wrapping_mul(1_664_525).wrapping_add(1_013_904_223);
            let noise = (seed >> 8) as f32 / (1u32 << 24) as f32 - 0.5;
            let t = i as f32 / rate as f32;
            let w = 2.0 * std::f32::consts::PI * 150.0 * t;
            0.2 * (w.sin() + 0.5 * (2.0 * w).sin() + 0.25 * (3.0 * w).sin()) + 0.002 * noise
        })
        .collect()
}

/// Per-frame speech flags from Silero, as the segmenter would record them.
fn silero_flags(vad: &mut SileroVad, audio: &[f32]) -> Vec<bool> {
    let neg = SegmentConfig::default().neg_threshold;
    let flags: Vec<bool> = audio
        .chunks_exact(FRAME)
        .map(|f| vad.speech_prob(f).expect("Silero runs") >= neg)
        .collect();
    vad.reset();
    flags
}

/// `LegResampler::push` of one 20 ms frame in steady state.
fn bench_resample(c: &mut Criterion) {
    let mut g = c.benchmark_group("resample");
    // One push = one 20 ms frame.
    g.throughput(Throughput::Elements(1));
    for rate in [8_000usize, 48_000] {
        let frame_len = rate / 50; // 160 / 960 samples
        let input = synthetic(rate, 1.0);
        let frames: Vec<&[f32]> = input.chunks_exact(frame_len).collect();
        let mut rs = LegResampler::new(rate as u32).expect("resampler builds");
        let mut out = Vec::with_capacity(4 * RATE);
        // Warm the resampler's buffers past its filter delay.
        for f in &frames {
            rs.push(f, &mut out).expect("resampler runs");
        }
        let mut next = frames.iter().cycle();
        g.bench_function(format!("{}k_to_16k_push_20ms", rate / 1000), |b| {
            b.iter(|| {
                out.clear();
                rs.push(black_box(next.next().unwrap()), &mut out)
                    .expect("resampler runs");
                black_box(out.len())
            })
        });
    }
    g.finish();
}

/// Silero `speech_prob` on one 512-sample (32 ms) frame of real speech.
///
/// No throughput is set: a 32 ms frame is 1.6 frames of 20 ms, so the cost per
/// 20 ms of audio is the reported time x 20/32 = x 0.625. Measured on the 2-core
/// dev box (1 ONNX Runtime thread, machine shared with a concurrent build):
/// about 100 us per 512-sample frame, so about 63 us per 20 ms of audio.
fn bench_vad(c: &mut Criterion, models: &Models, speech: &[f32]) {
    let mut g = c.benchmark_group("vad");
    let mut vad = models.silero.detector();
    let frames: Vec<&[f32]> = speech.chunks_exact(FRAME).collect();
    // Successive frames of the stretch, so the recurrent state sees a real stream.
    let mut next = frames.iter().cycle();
    g.bench_function("silero_speech_prob_512", |b| {
        b.iter(|| black_box(vad.speech_prob(black_box(next.next().unwrap())).unwrap()))
    });
    g.finish();
}

/// `TurnSegmenter` with the energy detector over 10 s of synthetic audio: the
/// turn logic alone, fed in 20 ms chunks as the resampler emits them.
fn bench_segment(c: &mut Criterion) {
    const SECS: f64 = 10.0;
    let voiced = synthetic(RATE, SECS);
    // Speech spans with a short pause (stays in the turn), a blip (dropped) and
    // long silences (close turns); silence is a -60 dBFS noise floor.
    let spans = [(0.5, 2.0), (2.3, 4.0), (5.0, 5.1), (6.0, 9.2)];
    let audio: Vec<f32> = voiced
        .iter()
        .enumerate()
        .map(|(i, &v)| {
            let t = i as f64 / RATE as f64;
            if spans.iter().any(|&(a, b)| t >= a && t < b) {
                v
            } else {
                v * 0.005
            }
        })
        .collect();
    let cfg = SegmentConfig::default();
    let new_segmenter = || TurnSegmenter::new(1, EnergyVad { threshold: 0.01 }, cfg.clone());
    // Check the input does exercise the logic.
    let mut turns = Vec::new();
    let mut seg = new_segmenter();
    seg.push(&audio, &mut turns).unwrap();
    seg.finish(&mut turns).unwrap();
    assert_eq!(turns.len(), 2, "synthetic audio should give two turns");

    let mut g = c.benchmark_group("segment");
    g.throughput(Throughput::Elements((SECS * 50.0) as u64));
    g.bench_function("energy_vad_turns_10s", |b| {
        b.iter_batched(
            || (new_segmenter(), Vec::with_capacity(4)),
            |(mut seg, mut out)| {
                for chunk in audio.chunks(FRAME_20MS) {
                    seg.push(black_box(chunk), &mut out).unwrap();
                }
                seg.finish(&mut out).unwrap();
                out
            },
            BatchSize::SmallInput,
        )
    });
    g.finish();
}

/// Prosody of a 3 s turn of real speech.
fn bench_prosody(c: &mut Criterion, speech: &[f32], flags: &[bool], words: (usize, f64)) {
    let mut g = c.benchmark_group("prosody");
    g.throughput(Throughput::Elements(
        (speech.len() / FRAME_20MS) as u64, // 150 frames of 20 ms
    ));
    g.bench_function("features_3s", |b| {
        b.iter(|| prosody::features(black_box(speech), black_box(flags), black_box(Some(words))))
    });
    // YIN with the floor `features` uses: 25 dB below the loudest 20 ms frame.
    let max_db = speech
        .chunks_exact(FRAME_20MS)
        .map(|c| {
            10.0 * (c.iter().map(|v| v * v).sum::<f32>() / c.len() as f32)
                .max(1e-10)
                .log10()
        })
        .fold(f32::MIN, f32::max);
    g.bench_function("yin_f0_3s", |b| {
        b.iter(|| prosody::yin_f0(black_box(speech), black_box(max_db - 25.0)))
    });
    g.finish();
}

/// Sentence embedding and the polarity head (per turn, so no throughput).
fn bench_sentiment(c: &mut Criterion, models: &Models) {
    let mut g = c.benchmark_group("sentiment");
    // "query: " + the sentence is 20 tokens with <s> and </s> (checked in main).
    g.bench_function("e5_embed_20_tokens", |b| {
        b.iter(|| models.e5.embed(black_box(&[SENTENCE])).unwrap())
    });
    let embedding = models
        .e5
        .embed(&[SENTENCE])
        .expect("encoder runs")
        .pop()
        .expect("one embedding");
    g.bench_function("polarity_head", |b| {
        b.iter(|| models.head.polarity(black_box(&embedding), Role::Customer))
    });
    g.finish();
}

/// Agent-assist hints: every built-in rule checked on one turn of a
/// 40-turn call (alternating agent and customer, the customer turning
/// angry halfway), so the figure is the cost per turn in the analysis.
fn bench_assist(c: &mut Criterion) {
    use callpulse::intel::assist::{default_rules, Assistant, TurnFacts};
    let facts: Vec<TurnFacts> = (0..40u32)
        .map(|i| {
            let customer = i % 2 == 1;
            let angry = customer && i > 20;
            TurnFacts {
                role: if customer {
                    Role::Customer
                } else {
                    Role::Agent
                },
                turn_id: i,
                start: i as f64 * 4.0,
                end: i as f64 * 4.0 + 3.2,
                gap: (i > 0).then_some(0.8),
                frustration: if angry { 0.7 } else { 0.1 },
                anger: if angry { 0.6 } else { 0.05 },
                negative: angry,
                topic: Some(if angry { "billing" } else { "technical_fault" }),
                p_escalation_request: if i == 31 { 0.8 } else { 0.02 },
                p_cancellation: 0.03,
                rate: Some(2.6 + (i % 3) as f32 * 0.2),
                words: 10,
                agent_interruptions: i / 10,
                recovered: (i == 39).then_some(0.5),
                agent_leg: Some(0),
            }
        })
        .collect();
    let mut g = c.benchmark_group("assist");
    g.bench_function("hints_40_turn_call", |b| {
        b.iter_batched(
            || Assistant::new("bench", default_rules(), false),
            |mut a| {
                let mut n = 0;
                for f in &facts {
                    n += a.on_turn(black_box(f)).len();
                }
                n
            },
            criterion::BatchSize::SmallInput,
        )
    });
    g.finish();
}

fn main() {
    let mut c = Criterion::default().configure_from_args();
    if std::env::args().any(|a| a == "assist") {
        // `cargo bench --bench stages -- assist`: no models needed.
        bench_assist(&mut c);
        c.final_summary();
        return;
    }
    let models = load_models();
    let speech = real_speech();
    let flags = silero_flags(&mut models.silero.detector(), &speech.samples);
    assert!(
        flags.iter().filter(|s| **s).count() * 2 > flags.len(),
        "{FIXTURE} channel {SPEECH_CHANNEL} from {:.2} s is not mostly speech: {flags:?}",
        speech.start_s
    );
    eprintln!(
        "real speech: {FIXTURE}.wav channel {SPEECH_CHANNEL}, {:.2} s - {:.2} s, \
         {}/{} Silero frames speech, {} words",
        speech.start_s,
        speech.start_s + SPEECH_SECS,
        flags.iter().filter(|s| **s).count(),
        flags.len(),
        speech.words.0
    );

    let e5_tokens = models.e5.token_ids(SENTENCE).map(|t| t.len()).unwrap_or(0);
    eprintln!("e5 sentence: {e5_tokens} tokens with the prefix, <s> and </s>");
    assert_eq!(e5_tokens, 20, "the e5 bench sentence should be 20 tokens");

    bench_resample(&mut c);
    bench_vad(&mut c, &models, &speech.samples);
    bench_segment(&mut c);
    bench_prosody(&mut c, &speech.samples, &flags, speech.words);
    bench_sentiment(&mut c, &models);
    bench_assist(&mut c);

    c.final_summary();
}
