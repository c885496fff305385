use std::path::Path;
use std::sync::Arc;

use serde::{Deserialize, Serialize};
use whisper_rs::{
    FullParams, SamplingStrategy, WhisperContext, WhisperContextParameters, WhisperState,
};

use super::{repetition_filter, Asr, AsrError, AsrWord, Transcript};

/// Recogniser settings (config section `[asr]`).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct AsrConfig {
    /// Decoder threads (0 = number of CPU cores).
    pub threads: u32,
    /// Beam width; 0 or 1 decodes greedily (fastest), the default. Measured
    /// on 22 real recordings (16 min, 16 kHz and 8 kHz, tiny.en): greedy
    /// 16.0% WER at RTF 0.063, beam 5 14.9% at RTF 0.075. Greedy stays the
    /// default for live finals and capacity; use 5 for offline archives.
    pub beam_size: u32,
    /// Shorten the encoder window to fit the turn (about twice its length):
    /// much faster on short turns. A turn whose output repeats is decoded again
    /// with the full 30 s window.
    pub adaptive_audio_ctx: bool,
    /// Language code for multilingual models ("en", "de", ... or "auto").
    pub language: String,
    /// Segments whose no-speech probability exceeds this and whose tokens are
    /// unsure are dropped (hallucination guard).
    pub no_speech_threshold: f32,
    /// Decode on the GPU in a build with the `cuda` feature (false: CPU).
    pub use_gpu: bool,
    /// Turns longer than this (seconds) are cut at their longest pauses and
    /// decoded in pieces, so no turn needs Whisper's full 30 s window; 0 =
    /// never, the default: measured on the real recordings with tiny.en, 12 s
    /// pieces raised WER from 16.0% to 16.8% (Whisper reads better with the
    /// whole turn as context, and the cut words were misread).
    pub max_window_s: f32,
    /// When a temperature-0 decode fails whisper.cpp's checks (mean token
    /// log-probability below -1, or a text that compresses more than 2.4x),
    /// decode again with temperature fallback and keep that only if it
    /// passes. false: temperature 0 only.
    pub temperature_fallback: bool,
    /// Offline scoring decodes consecutive finished turns together, laid
    /// end to end with 1 s of silence between them in one window of at most
    /// this many seconds, and gives each turn its words back by their
    /// times; 0 = every turn alone. Each decode pays a whole
    /// encoder pass, so short turns cost much less packed. Live calls never
    /// pack (a turn's final does not wait for the next turn). Off by
    /// default: the words' times inside a packed turn are whisper.cpp's
    /// guesses re-anchored on the turn (see [`super::reanchor`]), less sure
    /// than a turn decoded alone, and audio redaction mutes words by them.
    pub pack_s: f32,
}

impl Default for AsrConfig {
    fn default() -> Self {
        AsrConfig {
            threads: 0,
            beam_size: 0,
            adaptive_audio_ctx: true,
            language: "en".into(),
            no_speech_threshold: 0.6,
            use_gpu: true,
            max_window_s: 0.0,
            temperature_fallback: true,
            pack_s: 0.0,
        }
    }
}

impl AsrConfig {
    /// Check ranges.
    pub fn validate(&self) -> Result<(), String> {
        if self.beam_size > 16 {
            return Err("asr.beam_size must be at most 16".into());
        }
        if self.max_window_s != 0.0 && !(2.0..=30.0).contains(&self.max_window_s) {
            return Err("asr.max_window_s must be 0 or between 2 and 30 seconds".into());
        }
        if self.pack_s != 0.0 && !(5.0..=29.0).contains(&self.pack_s) {
            return Err("asr.pack_s must be 0 or between 5 and 29 seconds".into());
        }
        if !(0.0..=1.0).contains(&self.no_speech_threshold) {
            return Err("asr.no_speech_threshold must be in [0, 1]".into());
        }
        validate_language(&self.language).map_err(|e| format!("asr.language: {e}"))
    }

    fn n_threads(&self) -> i32 {
        if self.threads == 0 {
            std::thread::available_parallelism()
                .map(|n| n.get() as i32)
                .unwrap_or(2)
        } else {
            self.threads as i32
        }
    }
}

/// One decode at a time in the whole process. whisper.cpp's worker threads
/// spin while they wait, so two decodes that each use every core slow each
/// other down many times over (measured with `bench capacity`: ASR time per
/// second of audio went from 65 ms to over 1 s with two calls). Serialised,
/// each decode gets all the cores and concurrent calls take turns.
static DECODE_GATE: std::sync::Mutex<()> = std::sync::Mutex::new(());

/// Hold the cores for a burst of other model work (VAD, speaker and text
/// encoders) in offline scoring, where those stages run beside the
/// recogniser: they wait for a decode to end instead of taking a core from
/// it. whisper.cpp's threads spin at every step while one of them is
/// descheduled, so sharing 2 cores with a 1-thread ONNX model slowed
/// whisper.cpp's own CLI from 1.0 s to 1.7 s on an 11 s file; taking turns
/// costs only the other model's own time.
pub fn exclusive() -> std::sync::MutexGuard<'static, ()> {
    DECODE_GATE.lock().unwrap_or_else(|e| e.into_inner())
}

/// A loaded whisper.cpp model, shared by every recogniser.
#[derive(Clone)]
pub struct WhisperModel {
    ctx: Arc<WhisperContext>,
    cfg: AsrConfig,
    /// A multilingual model that identifies the language of calls decoded
    /// by an English-only one.
    /// Its one decoding state, shared by every call: language ID runs
    /// under the decode gate anyway, and a state per call would cost each
    /// concurrent call Whisper base's buffers.
    lid: Option<Arc<std::sync::Mutex<WhisperState>>>,
}

/// Language-ID passes per call before its language is settled.
const LID_VOTES: usize = 3;
/// A call is in another language than English when English's mean
/// language-ID probability over its first turns is below this (accented
/// English and the telephone band measured 0.5 and above; espeak-ng French,
/// German and Spanish and real Swedish 0.16 and below).
const LID_MAX_EN_P: f32 = 0.2;
/// Turns shorter than this are not used for language ID (seconds).
const LID_MIN_S: f64 = 1.5;
/// Language ID looks at the first 3.84 s of a turn with the encoder over
/// 256 frames (5.12 s) instead of Whisper's 30 s window of 1500 (the full
/// window made language ID cost twice the decoding of a call; 512 frames
/// still cost Whisper base about 0.5 s per call here). The window keeps
/// 1.28 s of silence after the audio: a turn cut exactly at the end of a
/// 256-frame window was read as Latvian three times in 28 files, a shorter
/// turn never. Measured on the 56 corpus files and the 11 espeak-ng
/// fixtures: 320 frames over 5.12 s and 256 over 3.84 s decide English or
/// not the same on every file, in four fifths of the time (about 0.23 s a
/// pass here); 192 over 2.56 s also did, but misread single passes more
/// (Latvian and Latin for German).
const LID_AUDIO_CTX: i32 = 256;
/// Seconds of a turn that language ID reads.
const LID_WINDOW_S: f64 = 3.84;

/// The language of a call decoded by an English-only model, from the mean
/// of a few language-ID passes of a multilingual model over its first turns.
#[derive(Default)]
struct LanguageId {
    sum: Vec<f32>,
    passes: usize,
}

impl LanguageId {
    /// No more passes are needed: all votes are in, or English already
    /// has enough probability that the mean over all votes cannot fall
    /// below [`LID_MAX_EN_P`] whatever the rest say (the same answer, without
    /// the remaining passes: an English call usually settles on one).
    fn settled(&self) -> bool {
        let en = whisper_rs::get_lang_id("en").unwrap_or(0) as usize;
        let sum_en = self.sum.get(en).copied().unwrap_or(0.0);
        self.passes >= LID_VOTES || sum_en >= LID_MAX_EN_P * LID_VOTES as f32
    }

    fn add(&mut self, probs: &[f32]) {
        if self.sum.len() < probs.len() {
            self.sum.resize(probs.len(), 0.0);
        }
        for (s, p) in self.sum.iter_mut().zip(probs) {
            *s += p;
        }
        self.passes += 1;
    }

    /// English unless the mean probability of English is low; then the most
    /// probable language.
    fn language(&self) -> Option<String> {
        if self.passes == 0 {
            return None;
        }
        let en = whisper_rs::get_lang_id("en").unwrap_or(0) as usize;
        let mean_en = self.sum.get(en).copied().unwrap_or(0.0) / self.passes as f32;
        if mean_en >= LID_MAX_EN_P {
            return Some("en".into());
        }
        let top = (0..self.sum.len()).max_by(|a, b| self.sum[*a].total_cmp(&self.sum[*b]))?;
        lang_code(top as i32)
    }
}

/// The languages decoded so far in a call (`language = "auto"`).
#[derive(Default)]
struct LanguageVotes {
    /// Each language with its count, in order of first vote.
    counts: Vec<(String, usize)>,
}

impl LanguageVotes {
    fn push(&mut self, lang: &str) {
        match self.counts.iter_mut().find(|(l, _)| l == lang) {
            Some((_, n)) => *n += 1,
            None => self.counts.push((lang.to_string(), 1)),
        }
    }

    /// The most frequent vote (the earliest on a tie) and its count.
    fn leader(&self) -> Option<(&str, usize)> {
        let mut best: Option<(&str, usize)> = None;
        for (l, n) in &self.counts {
            if best.is_none_or(|(_, b)| *n > b) {
                best = Some((l, *n));
            }
        }
        best
    }
}

/// A turn detected in another language than the call's is decoded again in
/// the call's language, and that reading is kept unless the other one's mean
/// word probability is higher by more than this (short turns of accented
/// speech are often misidentified, and decoded confidently).
const CALL_LANGUAGE_MARGIN: f32 = 0.1;

fn mean_probability(t: &Transcript) -> f32 {
    if t.words.is_empty() {
        return 0.0;
    }
    t.words.iter().map(|w| w.probability).sum::<f32>() / t.words.len() as f32
}

/// Whisper's language code for an id.
fn lang_code(id: i32) -> Option<String> {
    whisper_rs::get_lang_str(id).map(str::to_string)
}

/// Check a `--language` value: `auto` or a code Whisper knows.
pub fn validate_language(s: &str) -> Result<(), String> {
    if s == "auto" || whisper_rs::get_lang_id(s).is_some() {
        Ok(())
    } else {
        Err(format!(
            "unknown language '{s}': expected auto or a Whisper language code (en, es, de, fr, pt, it, ...)"
        ))
    }
}

impl WhisperModel {
    /// Load a ggml model file.
    pub fn load(path: &Path, cfg: AsrConfig) -> Result<Self, AsrError> {
        whisper_rs::install_logging_hooks();
        let load_err = |reason: String| AsrError::Load {
            path: path.to_path_buf(),
            reason,
        };
        let meta = std::fs::metadata(path).map_err(|e| load_err(e.to_string()))?;
        if meta.len() < 1024 {
            return Err(load_err(format!("file is only {} bytes", meta.len())));
        }
        let params = WhisperContextParameters {
            use_gpu: cfg!(feature = "cuda") && cfg.use_gpu,
            ..Default::default()
        };
        let ctx = WhisperContext::new_with_params(path, params)
            .map_err(|e| load_err(format!("whisper.cpp refused it ({e})")))?;
        Ok(WhisperModel {
            ctx: Arc::new(ctx),
            cfg,
            lid: None,
        })
    }

    /// Identify the language of calls with this multilingual model when the
    /// recogniser is English-only (a no-op for a multilingual recogniser).
    pub fn with_language_id(mut self, lid: &WhisperModel) -> Result<Self, AsrError> {
        if !self.is_multilingual() && lid.is_multilingual() {
            let err = |e: whisper_rs::WhisperError| {
                AsrError::Decode(format!("cannot create language-ID state: {e}"))
            };
            let mut state = lid.ctx.create_state().map_err(err)?;
            // whisper.cpp's language detection encodes with the state's
            // audio context, which only a full decode sets: one short decode
            // of silence narrows it for every later pass.
            let mut p = quiet_params(SamplingStrategy::Greedy { best_of: 1 }, &self.cfg);
            p.set_language(Some("en"));
            p.set_audio_ctx(LID_AUDIO_CTX);
            p.set_max_tokens(1);
            p.set_single_segment(true);
            state.full(p, &[0.0; 24_000]).map_err(err)?;
            self.lid = Some(Arc::new(std::sync::Mutex::new(state)));
        }
        Ok(self)
    }

    /// True when calls are checked for their language: a multilingual
    /// model, or an English-only one with a language-ID model.
    pub fn checks_language(&self) -> bool {
        self.is_multilingual() || self.lid.is_some()
    }

    /// Where decoding runs: `cuda` in a build with the `cuda` feature
    /// (whisper.cpp falls back to the CPU, and logs it, when no GPU is found).
    pub fn device(&self) -> &'static str {
        if cfg!(feature = "cuda") && self.cfg.use_gpu {
            "cuda"
        } else {
            "cpu"
        }
    }

    /// True for a multilingual model.
    pub fn is_multilingual(&self) -> bool {
        self.ctx.is_multilingual()
    }

    /// A recogniser with its own decoding state.
    pub fn recognizer(&self) -> Result<WhisperAsr, AsrError> {
        let state = self
            .ctx
            .create_state()
            .map_err(|e| AsrError::Decode(format!("cannot create decoder state: {e}")))?;
        Ok(WhisperAsr {
            model: self.clone(),
            state,
            lid_state: self.lid.clone(),
            lid: LanguageId::default(),
            decoded: LanguageVotes::default(),
            force_language: None,
        })
    }
}

impl super::AsrModel for WhisperModel {
    type Recognizer = WhisperAsr;
    fn recognizer(&self) -> Result<WhisperAsr, AsrError> {
        WhisperModel::recognizer(self)
    }
}

/// One decoding state over a shared [`WhisperModel`].
pub struct WhisperAsr {
    model: WhisperModel,
    state: WhisperState,
    lid_state: Option<Arc<std::sync::Mutex<WhisperState>>>,
    lid: LanguageId,
    /// `language = "auto"` on a multilingual model: the languages decoded so far.
    decoded: LanguageVotes,
    /// Decode in this language instead of the configured one.
    force_language: Option<String>,
}

/// Where a decode's segments lie, and which one each word it returned
/// came from (packed decodes give turns their words by segment).
struct Segments {
    /// Start and end of each segment kept, seconds.
    spans: Vec<(f64, f64)>,
    /// The segment of each returned word.
    of_word: Vec<usize>,
}

/// Decoding parameters every decode starts from: the configured threads,
/// no context carried from earlier decodes, nothing printed.
fn quiet_params(strategy: SamplingStrategy, cfg: &AsrConfig) -> FullParams<'static, 'static> {
    let mut p = FullParams::new(strategy);
    p.set_n_threads(cfg.n_threads());
    p.set_no_context(true);
    p.set_print_progress(false);
    p.set_print_realtime(false);
    p.set_print_special(false);
    p.set_print_timestamps(false);
    p
}

/// A decode whose mean token log-probability is below this failed
/// (whisper.cpp's and OpenAI's default).
const LOGPROB_THRESHOLD: f32 = -1.0;
/// A decode whose text compresses better than this (zlib, bytes in over
/// bytes out) repeats itself and failed (OpenAI's default).
const COMPRESSION_THRESHOLD: f32 = 2.4;
/// whisper.cpp's own repetition check inside a decode: token entropy below this.
const ENTROPY_THRESHOLD: f32 = 2.4;
/// Where the fallback decode starts; whisper.cpp steps up by 0.2 from there.
const FALLBACK_TEMPERATURE: f32 = 0.2;

/// The words of one `whisper_full` run and what its checks need.
#[derive(Debug, Default)]
struct Pass {
    /// (word, start, end, summed token probability, tokens)
    words: Vec<(String, f64, f64, f32, u32)>,
    /// Mean log-probability over the decoded tokens.
    logprob: f32,
    /// zlib compression ratio of the text.
    compression: f32,
    /// Every segment looked like no speech.
    silent: bool,
    language: Option<String>,
    /// Start and end (seconds) of each segment kept.
    segments: Vec<(f64, f64)>,
    /// The segment of each word.
    word_segment: Vec<usize>,
    /// The decode stopped at its token bound, not at the end of the text.
    truncated: bool,
}

impl Pass {
    /// The checks whisper.cpp and OpenAI's decoder use for falling back: a
    /// repetitive text, or unsure tokens over audio that seemed to hold speech.
    fn failed(&self) -> bool {
        self.compression > COMPRESSION_THRESHOLD
            || (self.logprob < LOGPROB_THRESHOLD && !self.silent)
    }
}

/// The temperature-0 pass failed: the fallback replaces it only when it
/// passes the checks itself; a fallback that fails too is worse (sampled, so
/// more likely invented) and the temperature-0 words stay.
fn choose(first: Pass, fallback: Pass) -> Pass {
    if fallback.failed() {
        first
    } else {
        fallback
    }
}

/// Bytes of `text` over bytes of its zlib compression (0 for no text).
fn compression_ratio(text: &str) -> f32 {
    use std::io::Write;
    if text.is_empty() {
        return 0.0;
    }
    let mut z = flate2::write::ZlibEncoder::new(Vec::new(), flate2::Compression::default());
    if z.write_all(text.as_bytes()).is_err() {
        return 0.0;
    }
    match z.finish() {
        Ok(out) if !out.is_empty() => text.len() as f32 / out.len() as f32,
        _ => 0.0,
    }
}

/// Encoder frames per second of audio (whisper: 1500 per 30 s).
const CTX_PER_SECOND: f64 = 50.0;

/// Whisper's whole encoder window, 30 s.
const FULL_CTX: i32 = 1500;

/// A turn at least this long (seconds, pads included) that a shortened
/// window decodes to nothing is decoded again with the whole window.
const EMPTY_RETRY_S: f64 = 2.0;

/// Encoder frames of silence kept after the audio in a shortened window.
const CTX_MARGIN: f64 = 128.0;

/// The smallest shortened window.
const MIN_CTX: i32 = 256;

fn audio_ctx_for(seconds: f64) -> i32 {
    // The audio plus 2.56 s of silence, rounded up to 64 frames. Measured on
    // the corpus (18 real recordings and 4 built calls, tiny.en): twice the
    // audio plus 128 frames gave 10.6% and 17.4% WER, the audio plus 128
    // gave 10.3% and 15.9% at three quarters of the encoder time; the audio
    // plus 64 (and 192 at least) looped more and gave 10.6% and 17.9%.
    // Whisper's own loop on a 3.5 s clip came at 256 frames: 81 of silence.
    let frames = (seconds * CTX_PER_SECOND + CTX_MARGIN).ceil() as i32;
    (((frames + 63) / 64) * 64).clamp(MIN_CTX, FULL_CTX)
}

impl WhisperAsr {
    /// One decode: the transcript, whether repeats were removed from it,
    /// and its segments.
    fn decode(
        &mut self,
        audio: &[f32],
        audio_ctx: Option<i32>,
    ) -> Result<(Transcript, bool, Segments), AsrError> {
        let seconds = audio.len() as f64 / 16_000.0;
        // whisper.cpp needs at least ~1 s; pad short turns with silence.
        let padded;
        let input = if audio.len() < 17_600 {
            let mut v = audio.to_vec();
            v.resize(17_600, 0.0);
            padded = v;
            &padded[..]
        } else {
            audio
        };
        // Temperature 0 alone first. whisper.cpp's own fallback keeps the
        // hottest decode when every temperature fails its checks, which is
        // where invented text comes from; here a fallback is tried only when
        // the first pass fails, and kept only when it passes.
        let first = self.pass(input, audio_ctx, seconds, 0.0, None)?;
        let pass =
            if first.failed() && self.model.cfg.temperature_fallback {
                // The fallback decodes in the language the first pass found: a
                // second detection inside whisper_full can differ (it runs with
                // the encoder window the previous decode left), and the
                // fallback is about the words, not the language.
                let lang = first.language.clone();
                let second = self.pass(input, audio_ctx, seconds, FALLBACK_TEMPERATURE, lang)?;
                tracing::debug!(
                "temperature fallback over {seconds:.1} s: t=0 logprob {:.2} compression {:.2}; \
                 t>0 logprob {:.2} compression {:.2}; keeping {}",
                first.logprob,
                first.compression,
                second.logprob,
                second.compression,
                if second.failed() { "t=0" } else { "the fallback" }
            );
                choose(first, second)
            } else {
                first
            };
        let raw = pass.words;
        let texts: Vec<String> = raw.iter().map(|w| w.0.clone()).collect();
        let (keep, repeated) = repetition_filter(&texts, pass.truncated);
        let segments = Segments {
            spans: pass.segments,
            of_word: keep
                .iter()
                .filter_map(|&i| pass.word_segment.get(i).copied())
                .collect(),
        };
        let words: Vec<AsrWord> = keep
            .into_iter()
            .filter_map(|i| raw.get(i))
            .map(|(w, s, e, p, n)| AsrWord {
                word: w.clone(),
                start: s.min(seconds),
                end: e.min(seconds).max(s.min(seconds)),
                probability: (p / (*n).max(1) as f32).clamp(0.0, 1.0),
            })
            .collect();
        Ok((
            Transcript {
                text: super::words_text(&words),
                words,
                retried: false,
                language: pass.language,
                foreign: false,
            },
            repeated,
            segments,
        ))
    }

    /// One `whisper_full` run at `temperature` (0: no fallback; above 0:
    /// whisper.cpp's own fallback steps up from there), in `language` when
    /// given (multilingual models).
    fn pass(
        &mut self,
        input: &[f32],
        audio_ctx: Option<i32>,
        seconds: f64,
        temperature: f32,
        language: Option<String>,
    ) -> Result<Pass, AsrError> {
        let cfg = &self.model.cfg;
        let strategy = if cfg.beam_size > 1 {
            SamplingStrategy::BeamSearch {
                beam_size: cfg.beam_size as i32,
                patience: -1.0,
            }
        } else {
            SamplingStrategy::Greedy { best_of: 1 }
        };
        let mut p = quiet_params(strategy, cfg);
        p.set_token_timestamps(true);
        p.set_suppress_blank(true);
        p.set_suppress_nst(true);
        p.set_no_speech_thold(cfg.no_speech_threshold);
        p.set_temperature(temperature);
        p.set_temperature_inc(if temperature > 0.0 { 0.2 } else { 0.0 });
        p.set_entropy_thold(ENTROPY_THRESHOLD);
        p.set_logprob_thold(LOGPROB_THRESHOLD);
        if self.model.is_multilingual() {
            let lang = language
                .as_deref()
                .or(self.force_language.as_deref())
                .unwrap_or(cfg.language.as_str());
            p.set_language(Some(lang));
        } else {
            p.set_language(Some("en"));
        }
        // Bound the output by the audio length: ~4 words/s at most, ~1.5 tokens a word.
        let max_tokens = (12.0 + seconds * 8.0) as i32;
        if let Some(ctx) = audio_ctx {
            p.set_audio_ctx(ctx);
            p.set_max_tokens(max_tokens);
            p.set_single_segment(true);
        }
        {
            let _gate = DECODE_GATE.lock().unwrap_or_else(|e| e.into_inner());
            let t0 = std::time::Instant::now();
            self.state
                .full(p, input)
                .map_err(|e| AsrError::Decode(e.to_string()))?;
            tracing::debug!(
                "whisper_full over {seconds:.1} s with {} encoder frames: {} ms",
                audio_ctx.unwrap_or(FULL_CTX),
                t0.elapsed().as_millis()
            );
        }
        let eot = self.model.ctx.token_eot();
        let mut pass = Pass::default();
        let mut logprob_sum = 0.0;
        let mut tokens = 0usize;
        let mut all_silent = true;
        for seg in self.state.as_iter() {
            let n = seg.n_tokens();
            // whisper.cpp ends a segment at `max_tokens` sampled tokens; the
            // segment's tokens also hold its start and end markers.
            pass.truncated |= audio_ctx.is_some() && n + 1 >= max_tokens;
            let no_speech = seg.no_speech_probability();
            // Words as raw bytes: a character outside ASCII may be split
            // across two tokens, so text is decoded once per word.
            let mut seg_words: Vec<(Vec<u8>, f64, f64, f32, u32)> = Vec::new();
            let mut psum = 0.0;
            let mut pcount = 0;
            for i in 0..n {
                let Some(tok) = seg.get_token(i) else {
                    continue;
                };
                if tok.token_id() >= eot {
                    continue;
                }
                let data = tok.token_data();
                let piece = tok.to_bytes().unwrap_or(&[]);
                psum += data.p;
                pcount += 1;
                logprob_sum += data.plog;
                tokens += 1;
                let t0 = data.t0.max(0) as f64 / 100.0;
                let t1 = data.t1.max(data.t0).max(0) as f64 / 100.0;
                let starts_word = piece.first() == Some(&b' ') || seg_words.is_empty();
                let trimmed = piece.trim_ascii();
                let is_punct = trimmed.iter().all(|c| c.is_ascii_punctuation());
                match seg_words.last_mut() {
                    Some(last) if !starts_word || (is_punct && !trimmed.is_empty()) => {
                        last.0.extend_from_slice(piece.trim_ascii_start());
                        if !is_punct {
                            last.2 = t1;
                        }
                        last.3 += data.p;
                        last.4 += 1;
                    }
                    _ => seg_words.push((trimmed.to_vec(), t0, t1, data.p, 1)),
                }
            }
            let mean_p = if pcount > 0 {
                psum / pcount as f32
            } else {
                0.0
            };
            all_silent &= no_speech > cfg.no_speech_threshold;
            if no_speech > cfg.no_speech_threshold && mean_p < 0.5 {
                tracing::debug!(
                    "segment of {pcount} tokens dropped as silence: no-speech {no_speech:.2}, \
                     mean token probability {mean_p:.2}"
                );
                continue;
            }
            pass.segments.push((
                seg.start_timestamp().max(0) as f64 / 100.0,
                seg.end_timestamp().max(0) as f64 / 100.0,
            ));
            let before = pass.words.len();
            pass.words.extend(
                seg_words
                    .into_iter()
                    .filter(|w| !w.0.is_empty())
                    .map(|(b, s, e, p, n)| (String::from_utf8_lossy(&b).into_owned(), s, e, p, n)),
            );
            let seg_index = pass.segments.len() - 1;
            pass.word_segment
                .extend(std::iter::repeat_n(seg_index, pass.words.len() - before));
        }
        if self.state.full_n_segments() == 0 {
            tracing::debug!(
                "whisper.cpp returned no segment over {seconds:.1} s (its no-speech check)"
            );
        }
        pass.logprob = if tokens > 0 {
            logprob_sum / tokens as f32
        } else {
            0.0
        };
        pass.silent = all_silent;
        let text: Vec<&str> = pass.words.iter().map(|w| w.0.as_str()).collect();
        pass.compression = compression_ratio(&text.join(" "));
        pass.language = if self.model.is_multilingual() {
            lang_code(self.state.full_lang_id_from_state())
        } else {
            None
        };
        Ok(pass)
    }

    /// One language-ID pass over `audio` with the multilingual model.
    fn identify(&mut self, audio: &[f32]) -> Result<(), AsrError> {
        let threads = self.model.cfg.n_threads().max(1) as usize;
        let Some(shared) = self.lid_state.as_ref() else {
            return Ok(());
        };
        let err = |e: whisper_rs::WhisperError| AsrError::Decode(format!("language ID: {e}"));
        let window = (LID_WINDOW_S * 16_000.0) as usize;
        let audio = &audio[..audio.len().min(window)];
        let t0 = std::time::Instant::now();
        let (id, probs) = {
            let _gate = DECODE_GATE.lock().unwrap_or_else(|e| e.into_inner());
            let mut state = shared.lock().unwrap_or_else(|e| e.into_inner());
            state.pcm_to_mel(audio, threads).map_err(err)?;
            state.lang_detect(0, threads).map_err(err)?
        };
        let en = whisper_rs::get_lang_id("en").unwrap_or(0) as usize;
        tracing::debug!(
            "language ID over {:.1} s in {} ms: {} {:.2}, en {:.2}",
            audio.len() as f64 / 16_000.0,
            t0.elapsed().as_millis(),
            lang_code(id).unwrap_or_default(),
            probs.get(id as usize).copied().unwrap_or(0.0),
            probs.get(en).copied().unwrap_or(0.0)
        );
        self.lid.add(&probs);
        Ok(())
    }

    /// Give an English-only model's transcript the call's language, running
    /// language ID on the first turns long enough for it.
    fn check_language(&mut self, audio: &[f32], t: &mut Transcript) -> Result<(), AsrError> {
        if self.lid_state.is_none() || self.model.is_multilingual() {
            return Ok(());
        }
        if !self.lid.settled() && audio.len() as f64 / 16_000.0 >= LID_MIN_S {
            self.identify(audio)?;
        }
        t.language = self.lid.language();
        t.foreign = t.language.as_deref().is_some_and(|l| l != "en");
        Ok(())
    }

    /// A turn longer than `max_window_s` is decoded in pieces cut at its
    /// pauses, the words put back on the turn's time line.
    fn transcribe_checked(&mut self, audio: &[f32]) -> Result<Transcript, AsrError> {
        let max = (self.model.cfg.max_window_s * 16_000.0) as usize;
        let cuts = super::pause_cuts(audio, max);
        if cuts.is_empty() {
            return self.transcribe_piece(audio);
        }
        let mut parts = Vec::with_capacity(cuts.len() + 1);
        let mut at = 0;
        for end in cuts.into_iter().chain([audio.len()]) {
            parts.push((
                at as f64 / 16_000.0,
                self.transcribe_piece(&audio[at..end])?,
            ));
            at = end;
        }
        Ok(super::join_transcripts(parts))
    }

    fn transcribe_piece(&mut self, audio: &[f32]) -> Result<Transcript, AsrError> {
        let mut t = self.transcribe_text(audio)?;
        if self.model.is_multilingual() && self.model.cfg.language == "auto" {
            t = self.second_opinion(audio, t)?;
        }
        Ok(t)
    }

    /// Auto-detected language: a turn detected in another language than the
    /// call's so far is decoded again in the call's language, which wins
    /// unless the first reading is clearly more confident.
    fn second_opinion(&mut self, audio: &[f32], t: Transcript) -> Result<Transcript, AsrError> {
        let (call, seen) = match self.decoded.leader() {
            Some((l, n)) => (Some(l.to_string()), n),
            None => (None, 0),
        };
        let t = match call {
            Some(call) if seen >= 2 && t.language.as_ref() != Some(&call) => {
                self.force_language = Some(call);
                let again = self.transcribe_text(audio);
                self.force_language = None;
                let again = again?;
                if mean_probability(&again) + CALL_LANGUAGE_MARGIN >= mean_probability(&t) {
                    again
                } else {
                    t
                }
            }
            _ => t,
        };
        if let Some(l) = &t.language {
            self.decoded.push(l);
        }
        Ok(t)
    }
}

impl Asr for WhisperAsr {
    fn transcribe(&mut self, audio: &[f32]) -> Result<Transcript, AsrError> {
        let t0 = std::time::Instant::now();
        let r = self.transcribe_checked(audio);
        tracing::debug!(
            "decoded {:.1} s alone: {} ms",
            audio.len() as f64 / 16_000.0,
            t0.elapsed().as_millis()
        );
        r
    }

    fn identify_language(&mut self, audio: &[f32], t: &mut Transcript) -> Result<(), AsrError> {
        self.check_language(audio, t)
    }

    /// Clips laid end to end in one full-window decode when that costs
    /// less encoder work than decoding each with its own shortened window;
    /// a clip the shared decode left without words is decoded alone.
    fn transcribe_packed(&mut self, clips: &[&[f32]]) -> Result<Vec<Transcript>, AsrError> {
        let alone: i32 = clips
            .iter()
            .map(|c| self.encoder_frames(c.len() as f64 / 16_000.0))
            .sum();
        // A multilingual model detecting the language per turn decodes
        // each turn alone (a window holds one language).
        let per_turn_language = self.model.is_multilingual() && self.model.cfg.language == "auto";
        if clips.len() < 2 || per_turn_language || alone <= FULL_CTX {
            return clips.iter().map(|c| self.transcribe(c)).collect();
        }
        let (window, spans) = super::pack(clips, super::PACK_GAP);
        let t0 = std::time::Instant::now();
        let (t, _, segments) = self.decode(&window, None)?;
        // A segment that runs across a gap has word times Whisper guessed
        // (off by a second and more): its turns are decoded alone.
        let crossed = super::crossed_gaps(&segments.spans, &spans);
        tracing::debug!(
            "packed {} turns, {:.1} s, into one decode ({} encoder frames alone): {} ms; {} turns \
             under a segment that crosses a gap",
            clips.len(),
            window.len() as f64 / 16_000.0,
            alone,
            t0.elapsed().as_millis(),
            crossed.iter().filter(|c| **c).count()
        );
        let owner = super::segment_clips(&segments.spans, &spans);
        let clip_of_word: Vec<Option<usize>> = segments
            .of_word
            .iter()
            .map(|&s| owner.get(s).copied().flatten())
            .collect();
        let t = super::reanchor(t, &segments.spans, &segments.of_word, &spans, &owner);
        let mut out = super::unpack(t, &spans, &clip_of_word);
        for ((t, clip), crossed) in out.iter_mut().zip(clips).zip(crossed) {
            if crossed || (t.words.is_empty() && clip.len() >= 16_000) {
                *t = self.transcribe(clip)?;
            }
        }
        Ok(out)
    }
}

impl WhisperAsr {
    /// The shortened encoder window a clip of `seconds` is decoded with
    /// first, if any.
    fn adaptive_ctx(&self, seconds: f64) -> Option<i32> {
        Some(audio_ctx_for(seconds))
            .filter(|&ctx| self.model.cfg.adaptive_audio_ctx && ctx < FULL_CTX)
    }

    /// Encoder frames a clip of `seconds` costs decoded alone.
    fn encoder_frames(&self, seconds: f64) -> i32 {
        self.adaptive_ctx(seconds).unwrap_or(FULL_CTX)
    }

    fn transcribe_text(&mut self, audio: &[f32]) -> Result<Transcript, AsrError> {
        let seconds = audio.len() as f64 / 16_000.0;
        if let Some(ctx) = self.adaptive_ctx(seconds) {
            let (t, repeated, _) = self.decode(audio, Some(ctx))?;
            let words_per_s = t.words.len() as f64 / seconds.max(0.5);
            // A shortened window can also make Whisper take a turn of
            // speech for silence (seen on 8 kHz speech with a cold): a
            // turn of some length that the VAD found speech in and that
            // came back empty gets the whole window too.
            let empty = t.words.is_empty() && seconds >= EMPTY_RETRY_S;
            if !repeated && !empty && words_per_s < 6.0 {
                return Ok(t);
            }
            tracing::debug!(
                "{seconds:.1} s decoded with {ctx} encoder frames {}: {:?}; decoding it again with the whole window",
                if repeated {
                    "repeated itself"
                } else if empty {
                    "gave no words"
                } else {
                    "gave too many words"
                },
                t.text
            );
            let (mut t, _, _) = self.decode(audio, None)?;
            t.retried = true;
            return Ok(t);
        }
        Ok(self.decode(audio, None)?.0)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_call_language_is_the_most_frequent_vote() {
        let mut v = LanguageVotes::default();
        assert_eq!(v.leader(), None);
        v.push("es");
        v.push("en");
        assert_eq!(v.leader(), Some(("es", 1)));
        v.push("en");
        assert_eq!(v.leader(), Some(("en", 2)));
    }

    #[test]
    fn a_call_is_foreign_only_when_english_is_unlikely_on_average() {
        let n = (whisper_rs::get_lang_max_id() + 1) as usize;
        let id = |l: &str| whisper_rs::get_lang_id(l).unwrap() as usize;
        let probs = |pairs: &[(&str, f32)]| {
            let mut p = vec![0.0; n];
            for (l, v) in pairs {
                p[id(l)] = *v;
            }
            p
        };
        let mut lid = LanguageId::default();
        assert_eq!(lid.language(), None);
        lid.add(&probs(&[("fr", 0.3), ("en", 0.08)]));
        lid.add(&probs(&[("pl", 0.4), ("fr", 0.2), ("en", 0.01)]));
        assert_eq!(lid.language().as_deref(), Some("fr"));
        assert!(!lid.settled());
        lid.add(&probs(&[("en", 0.9)]));
        assert!(lid.settled());
        assert_eq!(lid.language().as_deref(), Some("en"));
        // Clearly English on the first pass: settled at once, since no two
        // later votes could take the mean below the bound.
        let mut lid = LanguageId::default();
        lid.add(&probs(&[("en", 0.55), ("de", 0.3)]));
        assert!(!lid.settled());
        lid.add(&probs(&[("en", 0.05), ("de", 0.9)]));
        assert!(lid.settled());
        assert_eq!(lid.language().as_deref(), Some("en"));
        let mut lid = LanguageId::default();
        lid.add(&probs(&[("en", 0.7)]));
        assert!(lid.settled());
        lid.add(&probs(&[("de", 1.0)]));
        lid.add(&probs(&[("de", 1.0)]));
        assert_eq!(
            lid.language().as_deref(),
            Some("en"),
            "the same answer all three votes give"
        );
    }

    #[test]
    fn languages_are_checked() {
        assert!(validate_language("auto").is_ok());
        assert!(validate_language("pt").is_ok());
        let e = validate_language("klingon").unwrap_err();
        assert!(e.contains("klingon") && e.contains("auto"), "{e}");
    }

    fn pass(logprob: f32, compression: f32, silent: bool, word: &str) -> Pass {
        Pass {
            words: vec![(word.into(), 0.0, 1.0, 0.5, 1)],
            logprob,
            compression,
            silent,
            language: None,
            segments: vec![(0.0, 1.0)],
            word_segment: vec![0],
            truncated: false,
        }
    }

    #[test]
    fn a_fallback_is_kept_only_when_it_passes_the_checks() {
        assert!(!pass(-0.4, 1.2, false, "a").failed());
        assert!(pass(-1.4, 1.2, false, "a").failed());
        assert!(pass(-0.4, 3.0, false, "a").failed());
        // Unsure tokens over what whisper calls no speech: not a failure.
        assert!(!pass(-1.4, 1.2, true, "a").failed());
        let kept = choose(pass(-1.4, 1.2, false, "t0"), pass(-0.6, 1.3, false, "t1"));
        assert_eq!(kept.words[0].0, "t1");
        // A sampled fallback that fails too is worse: temperature 0 stays,
        // even when its own log-probability is a little lower.
        let kept = choose(pass(-1.4, 1.2, false, "t0"), pass(-1.2, 1.3, false, "t1"));
        assert_eq!(kept.words[0].0, "t0");
        let kept = choose(pass(-0.5, 4.0, false, "t0"), pass(-0.5, 2.6, false, "t1"));
        assert_eq!(kept.words[0].0, "t0");
    }

    #[test]
    fn repetitive_text_compresses_past_the_threshold() {
        let loop_text = "I will call you back. ".repeat(12);
        assert!(compression_ratio(&loop_text) > COMPRESSION_THRESHOLD);
        let prose = "my internet keeps dropping every evening and I would like to find out why";
        assert!(compression_ratio(prose) < COMPRESSION_THRESHOLD);
        assert_eq!(compression_ratio(""), 0.0);
    }

    #[test]
    fn audio_ctx_keeps_a_margin() {
        assert_eq!(audio_ctx_for(0.5), 256);
        // 3.5 s: 175 frames of audio; 256 looped there, 320 keeps 145 of silence.
        assert_eq!(audio_ctx_for(3.5), 320);
        assert_eq!(audio_ctx_for(1.0), 256);
        for s in [2.6, 5.0, 9.9, 16.6, 27.0] {
            let ctx = audio_ctx_for(s) as f64;
            assert!(
                ctx >= s * 50.0 + 128.0 && ctx < s * 50.0 + 128.0 + 64.0,
                "{s}"
            );
        }
        assert_eq!(audio_ctx_for(28.0), 1500);
        assert_eq!(audio_ctx_for(40.0), 1500);
    }
}
