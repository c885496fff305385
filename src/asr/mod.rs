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
    out.text = words_text(&out.words);
    out
}

/// A transcript's text: its words joined by spaces.
pub fn words_text(words: &[AsrWord]) -> String {
    words
        .iter()
        .map(|w| w.word.as_str())
        .collect::<Vec<_>>()
        .join(" ")
}

/// Silence between clips packed into one decode window, seconds: long
/// enough that Whisper ends a segment there (with 1 s it often ran one
/// segment across two turns, and then guessed the word times inside it a
/// second and more off), so a word's time says which clip it came from.
pub const PACK_GAP_S: f64 = 1.5;
/// [`PACK_GAP_S`] in samples at 16 kHz.
pub const PACK_GAP: usize = (PACK_GAP_S * 16_000.0) as usize;

/// Which packed clips lie under a segment that runs across a gap: from
/// well before one clip's end to well after the next clip's start. Word
/// times inside such a segment are not to be trusted to tell the clips
/// apart. "Well": by a third of the gap, because whisper.cpp starts a
/// segment where the previous one ended, in the silence before its speech.
pub fn crossed_gaps(segments: &[(f64, f64)], spans: &[(f64, f64)]) -> Vec<bool> {
    let tol = PACK_GAP_S / 3.0;
    let mut crossed = vec![false; spans.len()];
    for &(t0, t1) in segments {
        let runs_across = spans
            .windows(2)
            .any(|w| t0 < w[0].1 - tol && t1 > w[1].0 + tol);
        if runs_across {
            for (c, &(a, b)) in crossed.iter_mut().zip(spans) {
                *c |= t1.min(b) - t0.max(a) > tol.min((b - a) / 2.0);
            }
        }
    }
    crossed
}

/// Lay 16 kHz `clips` end to end with `gap` samples of silence between
/// them. Returns the window and each clip's span in it, in seconds.
pub fn pack(clips: &[&[f32]], gap: usize) -> (Vec<f32>, Vec<(f64, f64)>) {
    const SR: f64 = 16_000.0;
    let total = clips.iter().map(|c| c.len()).sum::<usize>() + gap * clips.len().saturating_sub(1);
    let mut window = Vec::with_capacity(total);
    let mut spans = Vec::with_capacity(clips.len());
    for (i, c) in clips.iter().enumerate() {
        if i > 0 {
            window.resize(window.len() + gap, 0.0);
        }
        let start = window.len();
        window.extend_from_slice(c);
        spans.push((start as f64 / SR, window.len() as f64 / SR));
    }
    (window, spans)
}

/// The clip each segment of a packed window belongs to: the one its span
/// overlaps most (None: none). Whole segments, not word times, tell the
/// clips apart: whisper.cpp guesses the times of the words inside a
/// segment, and puts the first ones early, in the silence before them.
pub fn segment_clips(segments: &[(f64, f64)], spans: &[(f64, f64)]) -> Vec<Option<usize>> {
    segments
        .iter()
        .map(|&(t0, t1)| {
            spans
                .iter()
                .map(|&(a, b)| (t1.min(b) - t0.max(a)).max(0.0))
                .enumerate()
                .filter(|(_, overlap)| *overlap > 0.0)
                .max_by(|a, b| a.1.total_cmp(&b.1))
                .map(|(i, _)| i)
        })
        .collect()
}

/// Re-anchor the word times of each segment that starts before its clip
/// (in the silence after the previous one, as whisper.cpp's segments do):
/// the segment's span is mapped linearly onto the part from the clip's
/// start, so its first words are not all bunched at the clip's start. A
/// turn decoded alone has its segment start at the turn's start; this
/// gives a packed turn the same anchor.
pub fn reanchor(
    mut t: Transcript,
    segments: &[(f64, f64)],
    word_segment: &[usize],
    spans: &[(f64, f64)],
    owner: &[Option<usize>],
) -> Transcript {
    for (w, &s) in t.words.iter_mut().zip(word_segment) {
        let (Some(&(t0, t1)), Some(Some(i))) = (segments.get(s), owner.get(s)) else {
            continue;
        };
        let a = spans[*i].0;
        if t0 < a && t1 > a {
            let map = |x: f64| a + (x - t0).max(0.0) * (t1 - a) / (t1 - t0);
            w.start = map(w.start);
            w.end = map(w.end).max(w.start);
        }
    }
    t
}

/// Share a packed window's transcript out to its clips: word k goes to
/// clip `clip_of_word[k]` (dropped when None or missing); its times become
/// relative to that clip and are kept inside it. Every clip gets the
/// window's language and flags.
pub fn unpack(
    t: Transcript,
    spans: &[(f64, f64)],
    clip_of_word: &[Option<usize>],
) -> Vec<Transcript> {
    let mut out: Vec<Transcript> = spans
        .iter()
        .map(|_| Transcript {
            language: t.language.clone(),
            foreign: t.foreign,
            retried: t.retried,
            ..Default::default()
        })
        .collect();
    for (k, w) in t.words.into_iter().enumerate() {
        let Some(i) = clip_of_word
            .get(k)
            .copied()
            .flatten()
            .filter(|&i| i < out.len())
        else {
            continue;
        };
        let (o, n) = (spans[i].0, spans[i].1 - spans[i].0);
        let start = (w.start - o).clamp(0.0, n);
        out[i].words.push(AsrWord {
            start,
            end: (w.end - o).clamp(start, n),
            ..w
        });
    }
    for c in &mut out {
        c.text = words_text(&c.words);
    }
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

    /// Transcribe several finished turns, in one decode where that is
    /// cheaper (offline scoring packs short turns into a shared window).
    /// One transcript per clip, in order, times relative to each clip. The
    /// default decodes each clip alone.
    fn transcribe_packed(&mut self, clips: &[&[f32]]) -> Result<Vec<Transcript>, AsrError> {
        clips.iter().map(|c| self.transcribe(c)).collect()
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

/// Hesitations people repeat for real ("uh, uh, uh").
fn is_filler(w: &str) -> bool {
    matches!(w, "uh" | "um" | "er" | "ah" | "mm" | "hmm" | "mhm")
}

/// Single words repeat for real ("words, words, words, words", "no, no, no"):
/// a run of one word is a Whisper loop only from this many times, or when the
/// decode stopped at its token bound inside it.
const WORD_LOOP_REPS: usize = 5;

/// Collapse runs where the same 1-8 word phrase repeats more than twice in a row
/// (a Whisper failure mode), keeping the first two occurrences. A single word
/// is a loop only from [`WORD_LOOP_REPS`] times, or when it ends a decode
/// that was `truncated` (stopped at its token bound); hesitations and phrases
/// made only of numerals (digit strings of card or phone numbers) are kept.
/// Returns the kept word indices and whether anything was removed.
pub fn repetition_filter(words: &[String], truncated: bool) -> (Vec<usize>, bool) {
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
            let phrase = &norm[i..i + n];
            let loops = if n == 1 {
                // The run ends the transcript when at most one word (the
                // cut-off next repeat) follows it.
                let ends = i + reps + 1 >= norm.len();
                reps >= WORD_LOOP_REPS || (reps > 2 && ends && truncated)
            } else {
                reps > 2
            };
            if loops
                && phrase.iter().any(|w| !w.is_empty())
                && !phrase.iter().all(|w| is_numeral(w) || is_filler(w))
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

    fn w(word: &str, start: f64, end: f64) -> AsrWord {
        AsrWord {
            word: word.into(),
            start,
            end,
            probability: 0.9,
        }
    }

    #[test]
    fn packed_clips_get_their_own_words_back() {
        let (a, b, c) = (
            vec![0.1f32; 32_000],
            vec![0.2f32; 8_000],
            vec![0.3f32; 48_000],
        );
        let gap = 16_000;
        let (window, spans) = pack(&[&a, &b, &c], gap);
        assert_eq!(window.len(), 32_000 + 8_000 + 48_000 + 2 * gap);
        assert_eq!(spans, vec![(0.0, 2.0), (3.0, 3.5), (4.5, 7.5)]);
        assert_eq!(window[47_999], 0.0);
        assert_eq!(window[48_000], 0.2);
        assert_eq!(window[72_000], 0.3);
        // Clip 0 spans 0-2 s, clip 1 3-3.5 s, clip 2 4.5-7.5 s. Each
        // segment starts where the previous one ended, as whisper.cpp's do.
        let segments = [(0.0, 2.2), (2.2, 3.6), (3.6, 7.5), (7.5, 8.0), (9.0, 9.5)];
        let owner = segment_clips(&segments, &spans);
        // The last one overlaps no clip.
        assert_eq!(owner, vec![Some(0), Some(1), Some(2), None, None]);
        let t = Transcript {
            text: String::new(),
            words: vec![
                w("hello", 0.1, 0.6),
                w("there", 1.9, 2.4), // ends after clip 0: clamped to 2 s
                w("yes", 2.2, 3.3),   // guessed early, in the gap: clamped to 0
                w("no", 3.4, 3.6),
                w("fine", 3.6, 5.0), // clip 2 from its segment, start clamped
                w("late", 7.4, 8.2), // end clamped to 3 s
                w("stray", 9.0, 9.5),
            ],
            language: Some("en".into()),
            foreign: false,
            retried: true,
        };
        let seg_of_word = [0, 0, 1, 1, 2, 2, 4];
        let clip_of_word: Vec<Option<usize>> = seg_of_word.iter().map(|&s| owner[s]).collect();
        let out = unpack(t, &spans, &clip_of_word);
        assert_eq!(out.len(), 3);
        assert_eq!(out[0].text, "hello there");
        assert_eq!(out[1].text, "yes no");
        assert_eq!(out[2].text, "fine late");
        assert!((out[0].words[1].start - 1.9).abs() < 1e-9);
        assert!((out[0].words[1].end - 2.0).abs() < 1e-9);
        assert_eq!(out[1].words[0].start, 0.0);
        assert!((out[1].words[0].end - 0.3).abs() < 1e-9);
        assert!((out[1].words[1].end - 0.5).abs() < 1e-9);
        assert_eq!(out[2].words[0].start, 0.0);
        assert!((out[2].words[0].end - 0.5).abs() < 1e-9);
        assert!((out[2].words[1].end - 3.0).abs() < 1e-9);
        for t in &out {
            assert_eq!(t.language.as_deref(), Some("en"));
            assert!(t.retried);
            for x in &t.words {
                assert!(x.start <= x.end);
            }
        }
    }

    #[test]
    fn a_segment_that_starts_in_the_gap_is_reanchored_on_its_clip() {
        // Clip 0 at 0-2 s, clip 1 at 3.5-6 s; segment 1 starts where
        // segment 0 ended (2.0 s), 1.5 s before clip 1.
        let spans = [(0.0, 2.0), (3.5, 6.0)];
        let segments = [(0.0, 2.0), (2.0, 6.0)];
        let owner = [Some(0), Some(1)];
        let t = Transcript {
            words: vec![w("hi", 0.2, 0.6), w("my", 2.0, 2.4), w("line", 5.0, 6.0)],
            ..Default::default()
        };
        let t = reanchor(t, &segments, &[0, 1, 1], &spans, &owner);
        // Word 0 lies in a segment that starts at its clip: unchanged.
        assert_eq!((t.words[0].start, t.words[0].end), (0.2, 0.6));
        // Segment 1's 2.0-6.0 s maps onto 3.5-6.0 s.
        assert!((t.words[1].start - 3.5).abs() < 1e-9, "{:?}", t.words[1]);
        assert!((t.words[1].end - 3.75).abs() < 1e-9, "{:?}", t.words[1]);
        assert!((t.words[2].start - 5.375).abs() < 1e-9, "{:?}", t.words[2]);
        assert!((t.words[2].end - 6.0).abs() < 1e-9, "{:?}", t.words[2]);
    }

    #[test]
    fn a_segment_across_a_gap_marks_the_clips_under_it() {
        // Clips at 0-2 s, 3-3.5 s, 4.5-7.5 s and 8.5-9 s.
        let spans = [(0.0, 2.0), (3.0, 3.5), (4.5, 7.5), (8.5, 9.0)];
        // Each segment inside its clip (times a little loose, each starting
        // where the previous one ended): nothing crossed.
        let fine = [(0.0, 2.3), (2.3, 3.6), (3.6, 7.6), (7.6, 9.0)];
        assert_eq!(crossed_gaps(&fine, &spans), vec![false; 4]);
        // One segment from clip 1 into clip 2.
        let merged = [(0.0, 2.0), (2.0, 6.0), (6.0, 7.5), (7.5, 9.0)];
        assert_eq!(
            crossed_gaps(&merged, &spans),
            vec![false, true, true, false]
        );
        // One segment over everything.
        assert_eq!(crossed_gaps(&[(0.0, 9.0)], &spans), vec![true; 4]);
        assert_eq!(crossed_gaps(&[], &spans), vec![false; 4]);
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
        let (keep, removed) = repetition_filter(&w, false);
        assert!(removed);
        assert_eq!(keep, (0..10).chain([15]).collect::<Vec<_>>());
        let w = s("hello hello hello hello hello there");
        let (keep, removed) = repetition_filter(&w, false);
        assert!(removed);
        assert_eq!(keep, vec![0, 1, 5]);
        // A word repeated three times where the decode ran out of tokens,
        // but not where the speaker stopped.
        let w = s("so it is the same same same");
        let (keep, removed) = repetition_filter(&w, true);
        assert!(removed);
        assert_eq!(keep, vec![0, 1, 2, 3, 4, 5]);
        assert!(!repetition_filter(&w, false).1);
        // A word said four times mid-sentence, and hesitations, are speech
        // (mfa-acoustic: "here are some more words, words, words, words, and
        // that should be all").
        let w = s("some more words, words, words, words, and that should be all");
        assert!(!repetition_filter(&w, false).1);
        let w = s("Montreal, uh, uh, uh,");
        assert!(!repetition_filter(&w, false).1);
        let w = s("thank you. thank you. thank you. bye");
        let (keep, removed) = repetition_filter(&w, false);
        assert!(removed);
        assert_eq!(keep, vec![0, 1, 2, 3, 6]);
        let w = s("I said no, no, I really do not");
        assert!(!repetition_filter(&w, false).1);
        // Card and phone numbers repeat digits for real.
        let w = s("it is 4111 1111 1111 1111 thanks");
        assert!(!repetition_filter(&w, false).1);
        let w = s("four one one one, one one one one, one one one one");
        assert!(!repetition_filter(&w, false).1);
    }
}
