use serde::{Deserialize, Serialize};

use super::vad::{VadError, VoiceDetector, FRAME};

/// Turn segmentation settings (config section `[segment]`).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct SegmentConfig {
    /// Speech probability that opens a turn.
    pub threshold: f32,
    /// Probability below which a frame inside a turn counts as silence.
    pub neg_threshold: f32,
    /// Turns with less speech than this are dropped (clicks, coughs), ms.
    pub min_speech_ms: u32,
    /// Silence that ends a turn, ms.
    pub min_silence_ms: u32,
    /// Audio kept before and after the speech for the recogniser, ms.
    pub pad_ms: u32,
    /// A turn longer than this is cut and continued as a new turn, seconds:
    /// at its quietest moment in the last few seconds, not mid-word.
    pub max_turn_s: f32,
}

impl Default for SegmentConfig {
    fn default() -> Self {
        SegmentConfig {
            threshold: 0.5,
            neg_threshold: 0.35,
            min_speech_ms: 150,
            min_silence_ms: 600,
            pad_ms: 200,
            max_turn_s: 20.0,
        }
    }
}

impl SegmentConfig {
    /// Check ranges; the message names the key.
    pub fn validate(&self) -> Result<(), String> {
        if !(0.0..=1.0).contains(&self.threshold) || !(0.0..=1.0).contains(&self.neg_threshold) {
            return Err("segment.threshold and segment.neg_threshold must be in [0, 1]".into());
        }
        if self.neg_threshold > self.threshold {
            return Err("segment.neg_threshold must not exceed segment.threshold".into());
        }
        if !(1.0..=120.0).contains(&self.max_turn_s) {
            return Err("segment.max_turn_s must be between 1 and 120 seconds".into());
        }
        if self.min_silence_ms < 100 || self.min_silence_ms > 10_000 {
            return Err("segment.min_silence_ms must be between 100 and 10000".into());
        }
        if self.pad_ms > 1000 {
            return Err("segment.pad_ms must be at most 1000".into());
        }
        Ok(())
    }
}

/// One speech turn's audio, cut from a leg.
#[derive(Debug, Clone)]
pub struct TurnAudio {
    /// Leg index.
    pub leg: u8,
    /// First speech sample (16 kHz index from the leg start).
    pub start: u64,
    /// One past the last speech sample.
    pub end: u64,
    /// Index of `samples[0]` (`start` minus the leading pad).
    pub audio_start: u64,
    /// The turn's audio with padding.
    pub samples: Vec<f32>,
    /// Speech flag per 32 ms frame from `start` to `end`.
    pub frame_speech: Vec<bool>,
    /// True when the turn was cut at the maximum length and continues.
    pub forced_split: bool,
    /// Speaker number on a diarised leg (0 = `S1`).
    pub speaker: Option<u32>,
    /// Turn number on this leg, from 0 (shared with the partials of the open turn).
    pub seq: u32,
}

/// A view of the turn being spoken now (for partial results).
#[derive(Debug)]
pub struct OpenTurn<'a> {
    /// Turn number on this leg (the final turn will carry the same).
    pub seq: u32,
    /// Index of `samples[0]`.
    pub audio_start: u64,
    /// First speech sample.
    pub speech_start: u64,
    /// One past the last speech sample so far.
    pub last_speech_end: u64,
    /// Silence since the last speech, samples.
    pub silence: usize,
    /// Enough speech for the turn to be kept if it ended now.
    pub long_enough: bool,
    /// The audio so far, with the leading pad.
    pub samples: &'a [f32],
}

impl OpenTurn<'_> {
    /// The audio the final turn will carry if no more speech comes:
    /// up to the last speech plus the pad, once that much silence has passed.
    pub fn settled_audio(&self, pad: usize) -> Option<&[f32]> {
        if self.silence < pad || !self.long_enough {
            return None;
        }
        let n = (self.last_speech_end + pad as u64 - self.audio_start) as usize;
        self.samples.get(..n)
    }
}

/// Cuts one leg's 16 kHz stream into turns.
pub struct TurnSegmenter<V: VoiceDetector> {
    vad: V,
    cfg: SegmentConfig,
    leg: u8,
    pending: Vec<f32>,
    pos: u64,
    preroll: Vec<f32>,
    in_turn: bool,
    buf: Vec<f32>,
    audio_start: u64,
    speech_start: u64,
    last_speech_end: u64,
    silence_run: usize,
    speech_frames: usize,
    /// Speech probability per frame of the open turn, from `speech_start`
    /// (a frame is speech at `neg_threshold` and above).
    probs: Vec<f32>,
    last_turn_end: u64,
    seq: u32,
}

impl<V: VoiceDetector> TurnSegmenter<V> {
    /// A segmenter for leg `leg` using `vad`.
    pub fn new(leg: u8, vad: V, cfg: SegmentConfig) -> Self {
        TurnSegmenter {
            vad,
            cfg,
            leg,
            pending: Vec::with_capacity(FRAME),
            pos: 0,
            preroll: Vec::new(),
            in_turn: false,
            buf: Vec::new(),
            audio_start: 0,
            speech_start: 0,
            last_speech_end: 0,
            silence_run: 0,
            speech_frames: 0,
            probs: Vec::new(),
            last_turn_end: 0,
            seq: 0,
        }
    }

    /// The pad kept after the speech, samples.
    pub fn pad(&self) -> usize {
        self.cfg.pad_ms as usize * 16
    }

    /// Samples held (pending frame, pre-roll and the open turn).
    pub fn buffered_samples(&self) -> usize {
        self.pending.len() + self.preroll.len() + self.buf.len()
    }

    /// The open turn, if someone is speaking (or pausing inside a turn).
    pub fn open_turn(&self) -> Option<OpenTurn<'_>> {
        if !self.in_turn {
            return None;
        }
        Some(OpenTurn {
            seq: self.seq,
            audio_start: self.audio_start,
            speech_start: self.speech_start,
            last_speech_end: self.last_speech_end,
            silence: self.silence_run,
            long_enough: self.speech_frames * FRAME >= self.cfg.min_speech_ms as usize * 16,
            samples: &self.buf,
        })
    }

    /// Samples consumed so far (the leg's audio clock at 16 kHz).
    pub fn position(&self) -> u64 {
        self.pos + self.pending.len() as u64
    }

    /// Feed 16 kHz samples; completed turns are appended to `out`.
    pub fn push(&mut self, mut samples: &[f32], out: &mut Vec<TurnAudio>) -> Result<(), VadError> {
        while !samples.is_empty() {
            let take = (FRAME - self.pending.len()).min(samples.len());
            self.pending.extend_from_slice(&samples[..take]);
            samples = &samples[take..];
            if self.pending.len() == FRAME {
                let frame = std::mem::take(&mut self.pending);
                self.frame(&frame, out)?;
                self.pending = frame;
                self.pending.clear();
            }
        }
        Ok(())
    }

    fn frame(&mut self, frame: &[f32], out: &mut Vec<TurnAudio>) -> Result<(), VadError> {
        let p = self.vad.speech_prob(frame)?;
        let frame_start = self.pos;
        self.pos += FRAME as u64;
        if !self.in_turn {
            if p >= self.cfg.threshold {
                self.in_turn = true;
                let keep = self
                    .preroll
                    .len()
                    .min((frame_start - self.last_turn_end.min(frame_start)) as usize);
                self.buf.clear();
                self.buf
                    .extend_from_slice(&self.preroll[self.preroll.len() - keep..]);
                self.buf.extend_from_slice(frame);
                self.preroll.clear();
                self.audio_start = frame_start - keep as u64;
                self.speech_start = frame_start;
                self.last_speech_end = self.pos;
                self.silence_run = 0;
                self.speech_frames = 1;
                self.probs.clear();
                self.probs.push(p);
            } else {
                self.preroll.extend_from_slice(frame);
                let pad = self.pad();
                if self.preroll.len() > pad {
                    let cut = self.preroll.len() - pad;
                    self.preroll.drain(..cut);
                }
            }
            return Ok(());
        }
        let speech = p >= self.cfg.neg_threshold;
        self.buf.extend_from_slice(frame);
        self.probs.push(p);
        if speech {
            self.last_speech_end = self.pos;
            self.silence_run = 0;
            self.speech_frames += 1;
        } else {
            self.silence_run += FRAME;
        }
        let min_silence = self.cfg.min_silence_ms as usize * 16;
        let max_len = (self.cfg.max_turn_s * 16_000.0) as u64;
        if self.silence_run >= min_silence {
            self.close(false, out);
        } else if self.pos - self.speech_start >= max_len {
            self.split(out);
        }
        Ok(())
    }

    /// A turn at its maximum length: cut at the quietest moment of its last
    /// few seconds (a breath or a pause, rarely inside a word) and go on
    /// with the rest as the next turn.
    fn split(&mut self, out: &mut Vec<TurnAudio>) {
        let n = self.probs.len();
        let k = quietest_frame(&self.probs, n.saturating_sub(SPLIT_LOOKBACK).max(n / 2));
        let cut = self.speech_start + (k * FRAME) as u64;
        let rest_audio = self.buf.split_off((cut - self.audio_start) as usize);
        let rest_probs = self.probs.split_off(k);
        let last_speech_end = self.last_speech_end;
        self.speech_frames = self.speech_frames_in(&self.probs);
        self.last_speech_end = cut;
        self.close(true, out);
        self.last_turn_end = cut;
        self.silence_run = 0;
        // The rest opens the next turn at its first speech frame, with the
        // pad before it (not reaching back past the cut); without speech it
        // is pre-roll, as after any turn.
        let neg = self.cfg.neg_threshold;
        let Some(first) = rest_probs.iter().position(|&p| p >= neg) else {
            self.keep_preroll(&rest_audio);
            return;
        };
        let speech_start = cut + (first * FRAME) as u64;
        let audio_start = speech_start.saturating_sub(self.pad() as u64).max(cut);
        self.in_turn = true;
        self.buf = rest_audio;
        self.buf.drain(..(audio_start - cut) as usize);
        self.audio_start = audio_start;
        self.speech_start = speech_start;
        self.probs = rest_probs[first..].to_vec();
        self.speech_frames = self.speech_frames_in(&self.probs);
        self.last_speech_end = last_speech_end.max(speech_start + FRAME as u64);
        self.silence_run = (self.pos - self.last_speech_end) as usize;
        self.preroll.clear();
    }

    fn close(&mut self, forced: bool, out: &mut Vec<TurnAudio>) {
        self.in_turn = false;
        let audio_end = (self.last_speech_end + self.pad() as u64).min(self.pos);
        let keep = (audio_end - self.audio_start) as usize;
        let tail: Vec<f32> = self.buf.get(keep..).map(|t| t.to_vec()).unwrap_or_default();
        self.buf.truncate(keep);
        let n_flags = ((self.last_speech_end - self.speech_start) as usize).div_ceil(FRAME);
        self.probs.truncate(n_flags);
        let min_speech = self.cfg.min_speech_ms as usize * 16;
        if self.speech_frames * FRAME >= min_speech {
            out.push(TurnAudio {
                leg: self.leg,
                start: self.speech_start,
                end: self.last_speech_end,
                audio_start: self.audio_start,
                samples: std::mem::take(&mut self.buf),
                frame_speech: self
                    .probs
                    .iter()
                    .map(|&p| p >= self.cfg.neg_threshold)
                    .collect(),
                forced_split: forced,
                speaker: None,
                seq: self.seq,
            });
            self.last_turn_end = audio_end;
        }
        self.seq += 1;
        self.buf.clear();
        self.probs.clear();
        self.keep_preroll(&tail);
    }

    /// After a turn: the last pad of `audio` becomes the pre-roll.
    fn keep_preroll(&mut self, audio: &[f32]) {
        self.preroll.clear();
        let from = audio.len().saturating_sub(self.pad());
        self.preroll.extend_from_slice(&audio[from..]);
    }

    /// Frames at `neg_threshold` and above.
    fn speech_frames_in(&self, probs: &[f32]) -> usize {
        probs
            .iter()
            .filter(|&&p| p >= self.cfg.neg_threshold)
            .count()
    }

    /// End of stream: close an open turn.
    pub fn finish(&mut self, out: &mut Vec<TurnAudio>) -> Result<(), VadError> {
        if !self.pending.is_empty() {
            let mut frame = std::mem::take(&mut self.pending);
            frame.resize(FRAME, 0.0);
            self.frame(&frame, out)?;
        }
        if self.in_turn {
            self.close(false, out);
        }
        self.vad.reset();
        Ok(())
    }
}

/// Frames of a turn's end searched for the place to cut it (4 s).
const SPLIT_LOOKBACK: usize = 125;

/// The frame from `from` on whose neighbourhood (160 ms) is least likely
/// speech; the latest of equals, so the first part keeps what it can.
fn quietest_frame(probs: &[f32], from: usize) -> usize {
    let smooth = |i: usize| {
        let w = &probs[i.saturating_sub(2)..(i + 3).min(probs.len())];
        w.iter().sum::<f32>() / w.len() as f32
    };
    let from = from.min(probs.len().saturating_sub(1));
    let mut best = (from, f32::INFINITY);
    for i in from..probs.len() {
        let p = smooth(i);
        if p <= best.1 {
            best = (i, p);
        }
    }
    best.0
}

#[cfg(test)]
mod tests {
    use super::super::EnergyVad;
    use super::*;

    fn signal(spans: &[(f32, f32)], total_s: f32) -> Vec<f32> {
        let n = (total_s * 16_000.0) as usize;
        (0..n)
            .map(|i| {
                let t = i as f32 / 16_000.0;
                if spans.iter().any(|&(a, b)| t >= a && t < b) {
                    (i as f32 * 0.3).sin() * 0.3
                } else {
                    0.0
                }
            })
            .collect()
    }

    fn segment(sig: &[f32], chunk: usize) -> Vec<TurnAudio> {
        let mut seg =
            TurnSegmenter::new(0, EnergyVad { threshold: 0.01 }, SegmentConfig::default());
        let mut out = Vec::new();
        for c in sig.chunks(chunk) {
            seg.push(c, &mut out).unwrap();
        }
        seg.finish(&mut out).unwrap();
        out
    }

    #[test]
    fn finds_turns_at_their_times() {
        let spans = [(0.5, 2.0), (3.0, 3.1), (4.0, 6.5)];
        let turns = segment(&signal(&spans, 8.0), 1000);
        // The 100 ms blip is shorter than min_speech and is dropped.
        assert_eq!(turns.len(), 2);
        for (t, (a, b)) in turns.iter().zip([(0.5, 2.0), (4.0, 6.5)]) {
            assert!(
                (t.start as f32 / 16_000.0 - a).abs() < 0.04,
                "start {}",
                t.start
            );
            assert!((t.end as f32 / 16_000.0 - b).abs() < 0.04, "end {}", t.end);
            assert_eq!(t.samples.len() as u64, t.end + 3200 - t.audio_start);
            assert_eq!(t.audio_start, t.start - 3200);
        }
    }

    #[test]
    fn short_pauses_stay_inside_a_turn_and_long_turns_are_split() {
        let turns = segment(&signal(&[(0.5, 1.5), (1.8, 3.0)], 4.0), 512);
        assert_eq!(turns.len(), 1);
        assert!(turns[0].frame_speech.iter().any(|s| !s));
        let long = segment(&signal(&[(0.0, 45.0)], 46.0), 4096);
        assert_eq!(long.len(), 3);
        assert!(long[0].forced_split && long[1].forced_split && !long[2].forced_split);
    }

    #[test]
    fn a_long_turn_is_cut_in_its_pause_not_at_the_limit() {
        // 30 s of speech with a 300 ms breath at 17.5 s (too short to end
        // the turn): the cut at the 20 s limit goes back to the breath.
        let turns = segment(&signal(&[(1.0, 17.5), (17.8, 31.0)], 32.0), 4096);
        assert_eq!(
            turns.len(),
            2,
            "{:?}",
            turns.iter().map(|t| (t.start, t.end)).collect::<Vec<_>>()
        );
        let (a, b) = (&turns[0], &turns[1]);
        assert!(a.forced_split && !b.forced_split);
        let secs = |x: u64| x as f32 / 16_000.0;
        assert!(
            (17.45..=17.85).contains(&secs(a.end)),
            "first turn ends at {}",
            secs(a.end)
        );
        assert_eq!(a.audio_start + a.samples.len() as u64, a.end);
        assert!(
            (secs(b.start) - 17.8).abs() < 0.04,
            "second turn starts at {}",
            secs(b.start)
        );
        // The second turn's audio starts at the cut: nothing between is lost.
        assert_eq!(b.audio_start, a.end);
        assert_eq!(b.samples.len() as u64, b.end + 3200 - b.audio_start);
        assert_eq!(
            b.frame_speech.len(),
            (b.end - b.start).div_ceil(512) as usize
        );
        assert_eq!(
            a.frame_speech.len(),
            (a.end - a.start).div_ceil(512) as usize
        );
    }

    #[test]
    fn chunk_size_does_not_change_turns() {
        let sig = signal(&[(0.3, 1.0), (2.0, 2.9), (5.0, 5.6)], 6.0);
        let a = segment(&sig, 160);
        let b = segment(&sig, 7919);
        assert_eq!(a.len(), b.len());
        for (x, y) in a.iter().zip(&b) {
            assert_eq!(
                (x.start, x.end, x.samples.len()),
                (y.start, y.end, y.samples.len())
            );
        }
    }
}
