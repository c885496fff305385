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

    /// Give a finished turn's transcript the call's language when the
    /// recogniser cannot tell it itself (an English-only model with a
    /// language-ID model). Only final turns pay for it, never partials.
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
