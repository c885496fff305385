//! Who spoke when on a leg that carries several people (a mono recording,
//! or a conference leg), inside the segment stage.
//!
//! Offline, a first pass over the file ([`prescan`]) diarises the whole leg
//! (streamed: VAD regions → speaker embeddings; only the embeddings are
//! kept), and the segment stage splits each turn at the speaker changes of
//! that segmentation and labels the pieces. Live, an [`OnlineDiarizer`] is
//! fed each finished turn; its labels so far split and label the turn, and
//! at the end, speech whose speaker changed after its turn went out is
//! reported in the summary.

use std::path::Path;
use std::sync::Arc;

use super::EngineError;
use crate::audio::resample::LegResampler;
use crate::audio::wav::WavSource;
use crate::diarize::regions::{RegionOptions, RegionStream};
use crate::diarize::{
    DiarizeError, DiarizeOptions, OnlineDiarizer, Relabel, Segment, SpeakerEmbedder, Tracker,
    FRAME_SAMPLES,
};
use crate::segment::{TurnAudio, VadModel, FRAME};

/// A shared speaker embedder.
pub(crate) type Embedder = Arc<dyn SpeakerEmbedder>;

/// Runs of one speaker shorter than this inside a turn stay with their
/// neighbour (a turn is not split for a back-channel's worth of audio).
const MIN_PIECE_S: f64 = 0.5;

/// How one leg's speakers are known.
pub(crate) enum LegSpeakers {
    /// The whole leg's segmentation, from a first pass.
    Known(Arc<Vec<Segment>>),
    /// Live: labels so far, from everything heard until now.
    Online(Box<OnlineDiarizer<Embedder>>),
}

impl LegSpeakers {
    /// Label `turn`: split at speaker changes, the pieces labelled.
    pub fn label(&mut self, turn: TurnAudio) -> Result<Vec<TurnAudio>, EngineError> {
        let diar = |e: DiarizeError| EngineError::Intel(format!("diarisation: {e}"));
        match self {
            LegSpeakers::Known(segs) => Ok(split_by_speaker(turn, segs)),
            LegSpeakers::Online(d) => {
                let s = (turn.start - turn.audio_start) as usize;
                let e = ((turn.end - turn.audio_start) as usize).min(turn.samples.len());
                let update = d
                    .push(turn.start as usize, &turn.samples[s.min(e)..e])
                    .map_err(diar)?;
                Ok(split_by_speaker(turn, &update.segments))
            }
        }
    }
}

impl LegSpeakers {
    /// At the end of the leg: speech whose speaker changed after its turn
    /// went out (live only).
    pub fn relabelled(&self) -> Vec<Relabel> {
        match self {
            LegSpeakers::Known(_) => Vec::new(),
            LegSpeakers::Online(d) => d.net_relabels(MIN_RELABEL_FRAMES),
        }
    }
}

/// Changed stretches shorter than this (10 ms frames) are not reported: a
/// boundary between two speakers that moved by a few frames.
const MIN_RELABEL_FRAMES: usize = 20;

/// Runs of (first sample, end sample, speaker) of `segs` inside
/// `[start, end)`, short runs merged into the previous (or next) one.
fn runs(segs: &[Segment], start: u64, end: u64) -> Vec<(u64, u64, usize)> {
    let mut out: Vec<(u64, u64, usize)> = Vec::new();
    for s in segs {
        let a = (s.start * FRAME_SAMPLES) as u64;
        let b = (s.end * FRAME_SAMPLES) as u64;
        let (a, b) = (a.max(start), b.min(end));
        if a >= b {
            continue;
        }
        match out.last_mut() {
            Some(l) if l.2 == s.speaker => l.1 = b,
            _ => out.push((a, b, s.speaker)),
        }
    }
    let min = (MIN_PIECE_S * 16_000.0) as u64;
    let mut merged: Vec<(u64, u64, usize)> = Vec::new();
    for r in out {
        match merged.last_mut() {
            Some(l) if r.1 - r.0 < min || l.2 == r.2 => l.1 = r.1,
            Some(l) if l.1 - l.0 < min => *l = (l.0, r.1, r.2),
            _ => merged.push(r),
        }
    }
    // The pieces cover the whole turn.
    if let Some(f) = merged.first_mut() {
        f.0 = start;
    }
    if let Some(l) = merged.last_mut() {
        l.1 = end;
    }
    for i in 1..merged.len() {
        merged[i].0 = merged[i - 1].1;
    }
    merged
}

/// Split `turn` at the speaker changes of `segs` (10 ms frames from the leg
/// start) and label each piece; a turn with one speaker (or none known)
/// comes back whole, labelled when possible.
pub(crate) fn split_by_speaker(mut turn: TurnAudio, segs: &[Segment]) -> Vec<TurnAudio> {
    let pieces = runs(segs, turn.start, turn.end);
    if pieces.len() <= 1 {
        turn.speaker = pieces.first().map(|p| p.2 as u32);
        return vec![turn];
    }
    let audio_end = turn.audio_start + turn.samples.len() as u64;
    let lead = turn.start - turn.audio_start;
    let tail = audio_end.saturating_sub(turn.end);
    let last = pieces.len() - 1;
    pieces
        .iter()
        .enumerate()
        .map(|(i, &(a, b, speaker))| {
            // Inner boundaries get no padding: the other speaker is there.
            let from = if i == 0 { a - lead } else { a };
            let to = if i == last { b + tail } else { b };
            let (fi, fj) = (
                (a - turn.start) as usize / FRAME,
                (b - turn.start) as usize / FRAME,
            );
            TurnAudio {
                leg: turn.leg,
                start: a,
                end: b,
                audio_start: from,
                samples: turn.samples
                    [(from - turn.audio_start) as usize..(to - turn.audio_start) as usize]
                    .to_vec(),
                frame_speech: turn
                    .frame_speech
                    .get(fi.min(turn.frame_speech.len())..fj.min(turn.frame_speech.len()))
                    .unwrap_or(&[])
                    .to_vec(),
                forced_split: turn.forced_split && i == last,
                speaker: Some(speaker as u32),
                seq: turn.seq,
            }
        })
        .collect()
}

/// The regions a leg is diarised over: finer than turns (a pause of a few
/// hundred ms ends one), since a speaker change usually sits in a pause.
fn region_options() -> RegionOptions {
    RegionOptions::default()
}

/// First pass over a file: the segmentation of each leg in `legs` (None for
/// the others), streamed so that only speaker embeddings are held.
pub(crate) fn prescan<V: VadModel>(
    path: &Path,
    legs: &[bool],
    vad: &V,
    embedder: &Embedder,
    opts: &DiarizeOptions,
) -> Result<Vec<Option<Vec<Segment>>>, EngineError> {
    let diar = |e: DiarizeError| EngineError::Intel(format!("diarisation: {e}"));
    let mut src = WavSource::open(path)?;
    let info = src.info();
    let n = info.channels as usize;
    let mut state = Vec::new();
    for l in 0..n {
        if legs.get(l).copied().unwrap_or(false) {
            state.push(Some((
                LegResampler::new(info.sample_rate)?,
                RegionStream::new(vad.detector(), region_options()),
                Tracker::new(opts.clone()).map_err(diar)?,
            )));
        } else {
            state.push(None);
        }
    }
    let mut chunk = Vec::new();
    let mut out16 = Vec::new();
    let mut regions = Vec::new();
    loop {
        let got = src.read_chunk(16_384, &mut chunk)?;
        for (leg, st) in state.iter_mut().enumerate() {
            let Some((rs, stream, tracker)) = st else {
                continue;
            };
            out16.clear();
            if got == 0 {
                rs.finish(&mut out16)?;
                stream.push(&out16, &mut regions)?;
                stream.finish(&mut regions)?;
            } else {
                rs.push(&chunk[leg], &mut out16)?;
                stream.push(&out16, &mut regions)?;
            }
            for (start, audio) in regions.drain(..) {
                tracker.push_region(embedder, start, &audio).map_err(diar)?;
            }
        }
        if got == 0 {
            break;
        }
    }
    Ok(state
        .into_iter()
        .map(|st| {
            st.map(|(_, _, mut t)| {
                t.recluster();
                t.segments()
            })
        })
        .collect())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn turn(start: u64, end: u64, pad: u64) -> TurnAudio {
        let audio_start = start - pad;
        let n = (end + pad - audio_start) as usize;
        TurnAudio {
            leg: 0,
            start,
            end,
            audio_start,
            samples: (0..n).map(|i| (audio_start as usize + i) as f32).collect(),
            frame_speech: vec![true; (end - start) as usize / FRAME],
            forced_split: false,
            speaker: None,
            seq: 7,
        }
    }

    fn seg(start_s: f64, end_s: f64, speaker: usize) -> Segment {
        Segment {
            start: (start_s * 100.0) as usize,
            end: (end_s * 100.0) as usize,
            speaker,
        }
    }

    #[test]
    fn one_speaker_labels_the_whole_turn() {
        let t = split_by_speaker(turn(16_000, 48_000, 3_200), &[seg(0.5, 3.5, 1)]);
        assert_eq!(t.len(), 1);
        assert_eq!(t[0].speaker, Some(1));
        assert_eq!((t[0].start, t[0].end), (16_000, 48_000));
        // Nothing known: the turn comes back unlabelled.
        let t = split_by_speaker(turn(16_000, 48_000, 3_200), &[]);
        assert_eq!(t[0].speaker, None);
    }

    #[test]
    fn a_speaker_change_splits_the_turn_without_losing_audio() {
        // 1 s .. 5 s: S1 until 2.5 s, S2 after; a 0.2 s blip of S1 at 4 s
        // stays with S2.
        let segs = [
            seg(1.0, 2.5, 0),
            seg(2.5, 4.0, 1),
            seg(4.0, 4.2, 0),
            seg(4.2, 5.0, 1),
        ];
        let t = split_by_speaker(turn(16_000, 80_000, 3_200), &segs);
        assert_eq!(t.len(), 2);
        assert_eq!(
            (t[0].start, t[0].end, t[0].speaker),
            (16_000, 40_000, Some(0))
        );
        assert_eq!(
            (t[1].start, t[1].end, t[1].speaker),
            (40_000, 80_000, Some(1))
        );
        // The outer pads stay, the inner boundary has none, and every sample
        // is in exactly one piece.
        assert_eq!(t[0].audio_start, 16_000 - 3_200);
        assert_eq!(t[1].audio_start, 40_000);
        let all: Vec<f32> = t.iter().flat_map(|p| p.samples.iter().copied()).collect();
        assert_eq!(all, turn(16_000, 80_000, 3_200).samples);
        assert!(t.iter().all(|p| p.seq == 7));
        assert_eq!(
            t[0].frame_speech.len() + t[1].frame_speech.len(),
            (80_000 - 16_000) / FRAME
        );
    }
}
