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
    /// Beam width; 0 or 1 decodes greedily (fastest).
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
        }
    }
}

impl AsrConfig {
    /// Check ranges.
    pub fn validate(&self) -> Result<(), String> {
        if self.beam_size > 16 {
            return Err("asr.beam_size must be at most 16".into());
        }
        if !(0.0..=1.0).contains(&self.no_speech_threshold) {
            return Err("asr.no_speech_threshold must be in [0, 1]".into());
        }
        Ok(())
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

/// A loaded whisper.cpp model, shared by every recogniser.
#[derive(Clone)]
pub struct WhisperModel {
    ctx: Arc<WhisperContext>,
    cfg: AsrConfig,
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
        })
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
}

/// Encoder frames per second of audio (whisper: 1500 per 30 s).
const CTX_PER_SECOND: f64 = 50.0;

fn audio_ctx_for(seconds: f64) -> i32 {
    // About twice the audio plus a margin, rounded up to 64: shorter windows
    // loop (measured: 256 frames looped on a 3.5 s clip, 384 did not).
    let frames = (seconds * CTX_PER_SECOND * 2.0 + 128.0).ceil() as i32;
    (((frames + 63) / 64) * 64).clamp(384, 1500)
}

impl WhisperAsr {
    fn decode(
        &mut self,
        audio: &[f32],
        audio_ctx: Option<i32>,
    ) -> Result<(Transcript, bool), AsrError> {
        let cfg = &self.model.cfg;
        let strategy = if cfg.beam_size > 1 {
            SamplingStrategy::BeamSearch {
                beam_size: cfg.beam_size as i32,
                patience: -1.0,
            }
        } else {
            SamplingStrategy::Greedy { best_of: 1 }
        };
        let mut p = FullParams::new(strategy);
        p.set_n_threads(self.model.cfg.n_threads());
        p.set_no_context(true);
        p.set_print_progress(false);
        p.set_print_realtime(false);
        p.set_print_special(false);
        p.set_print_timestamps(false);
        p.set_token_timestamps(true);
        p.set_suppress_blank(true);
        p.set_suppress_nst(true);
        p.set_no_speech_thold(cfg.no_speech_threshold);
        p.set_temperature(0.0);
        p.set_temperature_inc(0.2);
        p.set_entropy_thold(2.4);
        p.set_logprob_thold(-1.0);
        let seconds = audio.len() as f64 / 16_000.0;
        if self.model.is_multilingual() {
            let lang = cfg.language.as_str();
            p.set_language(Some(if lang == "auto" { "auto" } else { lang }));
        } else {
            p.set_language(Some("en"));
        }
        if let Some(ctx) = audio_ctx {
            p.set_audio_ctx(ctx);
            // Bound the output by the audio length: ~4 words/s at most, ~1.5 tokens a word.
            p.set_max_tokens((12.0 + seconds * 8.0) as i32);
            p.set_single_segment(true);
        }
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
        {
            let _gate = DECODE_GATE.lock().unwrap_or_else(|e| e.into_inner());
            self.state
                .full(p, input)
                .map_err(|e| AsrError::Decode(e.to_string()))?;
        }
        let eot = self.model.ctx.token_eot();
        let mut raw: Vec<(String, f64, f64, f32, u32)> = Vec::new();
        for seg in self.state.as_iter() {
            let n = seg.n_tokens();
            let no_speech = seg.no_speech_probability();
            let mut seg_words: Vec<(String, f64, f64, f32, u32)> = Vec::new();
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
                let bytes = tok.to_bytes().unwrap_or(&[]);
                let piece = String::from_utf8_lossy(bytes).to_string();
                psum += data.p;
                pcount += 1;
                let t0 = data.t0.max(0) as f64 / 100.0;
                let t1 = data.t1.max(data.t0).max(0) as f64 / 100.0;
                let starts_word = piece.starts_with(' ') || seg_words.is_empty();
                let is_punct = piece.trim().chars().all(|c| c.is_ascii_punctuation());
                match seg_words.last_mut() {
                    Some(last) if !starts_word || (is_punct && !piece.trim().is_empty()) => {
                        last.0.push_str(piece.trim_start());
                        if !is_punct {
                            last.2 = t1;
                        }
                        last.3 += data.p;
                        last.4 += 1;
                    }
                    _ => seg_words.push((piece.trim().to_string(), t0, t1, data.p, 1)),
                }
            }
            let mean_p = if pcount > 0 {
                psum / pcount as f32
            } else {
                0.0
            };
            if no_speech > cfg.no_speech_threshold && mean_p < 0.5 {
                continue;
            }
            raw.extend(seg_words.into_iter().filter(|w| !w.0.is_empty()));
        }
        let texts: Vec<String> = raw.iter().map(|w| w.0.clone()).collect();
        let (keep, repeated) = repetition_filter(&texts);
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
        let text = words
            .iter()
            .map(|w| w.word.as_str())
            .collect::<Vec<_>>()
            .join(" ");
        Ok((
            Transcript {
                text,
                words,
                retried: false,
            },
            repeated,
        ))
    }
}

impl Asr for WhisperAsr {
    fn transcribe(&mut self, audio: &[f32]) -> Result<Transcript, AsrError> {
        let seconds = audio.len() as f64 / 16_000.0;
        if self.model.cfg.adaptive_audio_ctx && seconds < 14.0 {
            let ctx = audio_ctx_for(seconds);
            let (t, repeated) = self.decode(audio, Some(ctx))?;
            let words_per_s = t.words.len() as f64 / seconds.max(0.5);
            if !repeated && words_per_s < 6.0 {
                return Ok(t);
            }
            let (mut t, _) = self.decode(audio, None)?;
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
    fn audio_ctx_keeps_a_margin() {
        assert_eq!(audio_ctx_for(0.5), 384);
        assert_eq!(audio_ctx_for(3.5), 512);
        assert!(audio_ctx_for(5.0) as f64 >= 5.0 * 50.0 * 2.0);
        assert_eq!(audio_ctx_for(20.0), 1500);
    }
}
