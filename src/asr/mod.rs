//! Speech recognition per turn.
//!
//! [`Asr`] is the stage boundary; [`WhisperAsr`] runs whisper.cpp through
//! whisper-rs. The model ([`WhisperModel`], an `Arc` around the context) is
//! loaded once and shared; each worker gets its own decoding state.

pub mod whisper;

pub use whisper::{AsrConfig, WhisperAsr, WhisperModel};

/// A recognised word, times in seconds relative to the start of the audio passed in.
#[derive(Debug, Clone, PartialEq)]
pub struct AsrWord {
    /// The word, trimmed.
    pub word: String,
    /// Start, seconds from the audio start.
    pub start: f64,
    /// End, seconds from the audio start.
    pub end: f64,
    /// Mean token probability.
    pub probability: f32,
}

/// The recogniser's output for one stretch of audio.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct Transcript {
    /// Full text, trimmed.
    pub text: String,
    /// Words with times.
    pub words: Vec<AsrWord>,
    /// The spoken language (ISO 639-1): decoded by a multilingual model, or
    /// identified by the language-ID pass of an English-only model; None
    /// when nobody checked.
    pub language: Option<String>,
    /// An English-only model heard another language: the text is not what
    /// was said and must not be scored.
    pub foreign: bool,
    /// True when the first pass repeated itself and the audio was decoded again
    /// with the full encoder window.
    pub retried: bool,
}

/// Where to cut `audio` (16 kHz) so that no piece is longer than `max`
/// samples: each cut is in the middle of the longest pause between 40% and
/// 100% of `max` after the previous cut (a pause: 200 ms windows within 6 dB
/// of the quietest one there), so words are not split when there is any
/// pause to cut at. Returns the cut positions, ascending.
pub fn pause_cuts(audio: &[f32], max: usize) -> Vec<usize> {
    const HOP: usize = 160; // 10 ms
    const WIN: usize = 20; // 200 ms of hops
    let mut cuts = Vec::new();
    if max < 10 * HOP || audio.len() <= max {
        return cuts;
    }
    let energy: Vec<f32> = audio
        .chunks(HOP)
        .map(|c| c.iter().map(|x| x * x).sum::<f32>() / c.len() as f32)
        .collect();
    // Energy summed over the window starting at each hop.
    let mut win = vec![0.0f32; energy.len()];
    let mut acc: f32 = energy.iter().take(WIN).sum();
    for i in 0..energy.len() {
        win[i] = acc;
        acc -= energy[i];
        if let Some(e) = energy.get(i + WIN) {
            acc += e;
        }
    }
    let mut at = 0usize;
    while audio.len() - at > max {
        let lo = (at + max * 2 / 5) / HOP;
        // The loop runs while `at + max` is inside the audio, so `lo..hi`
        // indexes `win`.
        let hi = ((at + max) / HOP).saturating_sub(WIN).max(lo + 1);
        let floor = (lo..hi).map(|i| win[i]).fold(f32::INFINITY, f32::min);
        // The longest run of windows near the quietest one (latest on a tie).
        let quiet = |i: usize| win[i] <= floor * 4.0 + 1e-9;
        let (mut best, mut best_len, mut i) = (lo, 0, lo);
        while i < hi {
            if quiet(i) {
                let start = i;
                while i < hi && quiet(i) {
                    i += 1;
                }
                if i - start >= best_len {
                    best = (start + i - 1) / 2;
                    best_len = i - start;
                }
            } else {
                i += 1;
            }
        }
        let cut = ((best + WIN / 2) * HOP).clamp(at + 1, at + max);
        cuts.push(cut);
        at = cut;
    }
    cuts
}

/// Joins the transcripts of consecutive pieces of one turn, each given with
/// its piece's start in seconds.
pub fn join_transcripts(parts: Vec<(f64, Transcript)>) -> Transcript {
    let mut out = Transcript::default();
    for (offset, t) in parts {
        out.words.extend(t.words.into_iter().map(|mut w| {
            w.start += offset;
            w.end += offset;
            w
        }));
        out.retried |= t.retried;
        out.foreign |= t.foreign;
        if out.language.is_none() {
            out.language = t.language;
        }
    }
    out.text = out
        .words
        .iter()
        .map(|w| w.word.as_str())
        .collect::<Vec<_>>()
        .join(" ");
    out
}

/// Recognition errors.
#[derive(Debug, thiserror::Error)]
pub enum AsrError {
    /// The model file is missing or unreadable.
    #[error("cannot load Whisper model '{path}': {reason}. Run `callpulse models fetch`, or set CALLPULSE_WHISPER_MODEL / models.whisper_model to a whisper.cpp ggml file")]
    Load {
        /// Model path.
        path: std::path::PathBuf,
        /// Cause.
        reason: String,
    },
    /// Decoding failed.
    #[error("speech recognition failed: {0}")]
    Decode(String),
}

/// Speech to text for one turn's 16 kHz mono audio.
pub trait Asr: Send {
    /// Transcribe `audio` (16 kHz mono f32).
    fn transcribe(&mut self, audio: &[f32]) -> Result<Transcript, AsrError>;

    /// Give a transcript the call's language when the recogniser cannot
    /// tell it itself (an English-only model with a language-ID model). The
    /// ASR stage calls it on partial and speculative decodes while a turn
    /// runs, and on a final unless its reused speculative decode was checked.
    fn identify_language(&mut self, _audio: &[f32], _t: &mut Transcript) -> Result<(), AsrError> {
        Ok(())
    }
}

/// A loaded recogniser model, shared by every call: hands out recognisers
/// with their own decoding state.
pub trait AsrModel: Sync {
    /// The per-call recogniser.
    type Recognizer: Asr;
    /// A recogniser with fresh state.
    fn recognizer(&self) -> Result<Self::Recognizer, AsrError>;
}

/// Digits and digit words ("4111", "one", "oh", "double") repeat for real in
/// card, account and phone numbers: such phrases are never collapsed.
fn is_numeral(w: &str) -> bool {
    !w.is_empty()
        && (w.chars().all(|c| c.is_ascii_digit())
            || matches!(
                w,
                "zero"
                    | "oh"
                    | "o"
                    | "one"
                    | "two"
                    | "three"
                    | "four"
                    | "five"
                    | "six"
                    | "seven"
                    | "eight"
                    | "nine"
                    | "double"
                    | "triple"
            ))
}

/// Collapse runs where the same 1-8 word phrase repeats more than twice in a row
/// (a Whisper failure mode), keeping the first two occurrences. Phrases made
/// only of numerals (digit strings of card or phone numbers) are kept. Returns
/// the kept word indices and whether anything was removed.
pub fn repetition_filter(words: &[String]) -> (Vec<usize>, bool) {
    let norm: Vec<String> = words
        .iter()
        .map(|w| {
            w.chars()
                .filter(|c| c.is_alphanumeric() || *c == '\'')
                .collect::<String>()
                .to_lowercase()
        })
        .collect();
    let mut keep = Vec::with_capacity(words.len());
    let mut i = 0;
    let mut removed = false;
    'outer: while i < norm.len() {
        for n in 1..=8 {
            if i + 3 * n > norm.len() {
                break;
            }
            let reps = (1..)
                .take_while(|k| {
                    i + (k + 1) * n <= norm.len()
                        && norm[i..i + n] == norm[i + k * n..i + (k + 1) * n]
                })
                .count()
                + 1;
            if reps > 2
                && norm[i..i + n].iter().any(|w| !w.is_empty())
                && !norm[i..i + n].iter().all(|w| is_numeral(w))
            {
                keep.extend(i..i + 2 * n);
                i += reps * n;
                removed = true;
                continue 'outer;
            }
        }
        keep.push(i);
        i += 1;
    }
    (keep, removed)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn s(v: &str) -> Vec<String> {
        v.split_whitespace().map(String::from).collect()
    }

    /// Noise bursts of `loud` seconds with pauses of `quiet` seconds.
    fn speech_like(pattern: &[(f64, bool)]) -> Vec<f32> {
        let mut v = Vec::new();
        let mut k = 0u32;
        for (secs, loud) in pattern {
            for _ in 0..(secs * 16_000.0) as usize {
                k = k.wrapping_mul(1_664_525).wrapping_add(1_013_904_223);
                let x = (k >> 8) as f32 / (1u32 << 24) as f32 - 0.5;
                v.push(if *loud { x * 0.5 } else { x * 0.002 });
            }
        }
        v
    }

    #[test]
    fn long_audio_is_cut_at_its_deepest_pauses() {
        let max = 10 * 16_000;
        // 25 s of speech with pauses at 6.0-6.4 s, 9.0-9.6 s and 17.0-17.5 s.
        let a = speech_like(&[
            (6.0, true),
            (0.4, false),
            (2.6, true),
            (0.6, false),
            (7.4, true),
            (0.5, false),
            (8.0, true),
        ]);
        let cuts = pause_cuts(&a, max);
        let secs: Vec<f64> = cuts.iter().map(|c| *c as f64 / 16_000.0).collect();
        // The deepest pause within 4-10 s is 9.0-9.6 s; then within 13.3-19.3 s, 17.0-17.5 s.
        assert_eq!(cuts.len(), 2, "{secs:?}");
        assert!((9.0..9.6).contains(&secs[0]), "{secs:?}");
        assert!((17.0..17.5).contains(&secs[1]), "{secs:?}");
        let mut at = 0;
        for c in cuts.iter().chain([&a.len()]) {
            assert!(c - at <= max);
            at = *c;
        }
        // Short audio is not cut; unbroken speech is cut within the bound.
        assert!(pause_cuts(&a[..max], max).is_empty());
        let b = speech_like(&[(31.0, true)]);
        let cuts = pause_cuts(&b, max);
        assert!(cuts.len() >= 3 && cuts.windows(2).all(|w| w[1] - w[0] <= max));
    }

    #[test]
    fn joined_pieces_keep_their_times() {
        let w = |word: &str, start: f64| AsrWord {
            word: word.into(),
            start,
            end: start + 0.3,
            probability: 0.9,
        };
        let t = join_transcripts(vec![
            (
                0.0,
                Transcript {
                    words: vec![w("hello", 0.1)],
                    ..Default::default()
                },
            ),
            (
                9.5,
                Transcript {
                    words: vec![w("there", 0.2)],
                    retried: true,
                    ..Default::default()
                },
            ),
        ]);
        assert_eq!(t.text, "hello there");
        assert!((t.words[1].start - 9.7).abs() < 1e-9);
        assert!(t.retried);
    }

    #[test]
    fn repeated_phrases_are_collapsed() {
        let w = s(
            "and so my fellow Americans and so my fellow Americans and so my fellow Americans ask",
        );
        let (keep, removed) = repetition_filter(&w);
        assert!(removed);
        assert_eq!(keep, (0..10).chain([15]).collect::<Vec<_>>());
        let w = s("hello hello hello hello there");
        let (keep, removed) = repetition_filter(&w);
        assert!(removed);
        assert_eq!(keep, vec![0, 1, 4]);
        let w = s("thank you. thank you. thank you. bye");
        let (keep, removed) = repetition_filter(&w);
        assert!(removed);
        assert_eq!(keep, vec![0, 1, 2, 3, 6]);
        let w = s("I said no, no, I really do not");
        assert!(!repetition_filter(&w).1);
        // Card and phone numbers repeat digits for real.
        let w = s("it is 4111 1111 1111 1111 thanks");
        assert!(!repetition_filter(&w).1);
        let w = s("four one one one, one one one one, one one one one");
        assert!(!repetition_filter(&w).1);
    }
}
