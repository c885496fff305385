//! Who spoke when on one channel: speaker diarisation of mono calls.
//!
//! ```text
//!  speech region (VAD) ─▶ fbank (Kaldi log mel, 80 bins, 10 ms)
//!        │
//!        ▼
//!  1.5 s windows every ≤ 0.75 s ─▶ SpeakerEmbedder (CAM++ via ort) ─▶ 192-d
//!        │
//!        ▼
//!  change detection (adjacent windows unlike) ─▶ speaker-homogeneous pieces
//!        │
//!        ▼
//!  clustering core (average-linkage AHC on cosine, count fixed or estimated
//!  in 1..=max, then centroid reassignment of every window)
//!        │
//!        ▼
//!  10 ms frames scored against each speaker's centroid by the windows that
//!  cover them ─▶ short runs smoothed away ─▶ Segment { start, end, speaker }
//! ```
//!
//! [`diarize`] does a whole recording at once. [`OnlineDiarizer`] takes
//! speech regions as they finish (live calls): each call re-runs the same
//! clustering core over everything so far, keeps speaker numbers stable by
//! matching the new clusters to the old, and reports the stretches whose
//! speaker changed ([`Relabel`]). [`roles`] tells the agent from the
//! customer by the opening script; [`der`] scores a result against a
//! reference RTTM.

pub mod cluster;
pub mod der;
pub mod embed;
pub mod fbank;
mod online;
pub mod regions;
pub mod roles;
mod track;

use serde::{Deserialize, Serialize};

pub use embed::{SpeakerEmbedder, SpeakerModel, SpectralEmbedder};
pub use online::{OnlineDiarizer, OnlineUpdate, Relabel};
pub use track::Tracker;

use crate::runtime::RuntimeError;

/// Seconds per output frame (10 ms).
pub const FRAME_S: f64 = 0.01;
/// Audio samples per output frame at 16 kHz.
pub const FRAME_SAMPLES: usize = 160;

/// Diarisation errors.
#[derive(Debug, thiserror::Error)]
pub enum DiarizeError {
    /// The model or runtime could not be loaded.
    #[error(transparent)]
    Runtime(#[from] RuntimeError),
    /// The speaker model failed on an input.
    #[error("speaker model failed: {0}")]
    Inference(String),
    /// The audio or regions handed in are not usable.
    #[error("diarisation input: {0}")]
    Input(String),
    /// An option is out of range.
    #[error("diarisation option {0}")]
    Options(String),
    /// The audio file cannot be read.
    #[error(transparent)]
    Wav(#[from] crate::audio::wav::WavError),
    /// The audio cannot be resampled to 16 kHz.
    #[error(transparent)]
    Resample(#[from] crate::audio::resample::ResampleError),
}

/// Read channel `leg` of a WAV file as 16 kHz samples in [-1, 1].
pub fn read_leg(path: &std::path::Path, leg: usize) -> Result<Vec<f32>, DiarizeError> {
    let mut src = crate::audio::wav::WavSource::open(path)?;
    let info = src.info();
    if leg >= info.channels as usize {
        return Err(DiarizeError::Input(format!(
            "{} has {} channel(s); there is no leg {leg}",
            path.display(),
            info.channels
        )));
    }
    let mut rs = crate::audio::resample::LegResampler::new(info.sample_rate)?;
    let (mut legs, mut out) = (Vec::new(), Vec::new());
    while src.read_chunk(16_000, &mut legs)? > 0 {
        rs.push(&legs[leg], &mut out)?;
    }
    rs.finish(&mut out)?;
    Ok(out)
}

/// How to diarise. Defaults are what was measured best (see
/// `docs/diarization.md`).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct DiarizeOptions {
    /// The number of speakers when known; estimated when `None`.
    pub speakers: Option<usize>,
    /// Most speakers the estimate may give.
    pub max_speakers: usize,
    /// Embedding window, seconds.
    pub window_s: f32,
    /// Largest step between windows, seconds.
    pub hop_s: f32,
    /// Average-linkage cosine similarity below which clusters stay apart
    /// (estimated count only).
    pub cluster_threshold: f32,
    /// Cosine similarity of two speakers' centroids above which they are
    /// one speaker (estimated count only).
    pub centroid_threshold: f32,
    /// Cosine similarity of adjacent windows below which a speaker change
    /// is assumed between them.
    pub change_threshold: f32,
    /// Speech regions shorter than this are not embedded; they take the
    /// speaker nearest in time. Seconds.
    pub min_region_s: f32,
    /// Runs of one speaker shorter than this inside a region are merged
    /// into a neighbour. Seconds.
    pub min_turn_s: f32,
    /// Pauses up to this long between two stretches of the same speaker are
    /// filled (the speaker holds the turn through them). Seconds.
    pub fill_gap_s: f32,
    /// An estimated speaker with less speech than this is merged into the
    /// nearest other. Seconds.
    pub min_speaker_s: f32,
    /// Windows per model call.
    pub batch: usize,
}

impl Default for DiarizeOptions {
    fn default() -> Self {
        DiarizeOptions {
            speakers: None,
            max_speakers: 4,
            window_s: 1.5,
            hop_s: 0.75,
            cluster_threshold: 0.4,
            centroid_threshold: 0.6,
            change_threshold: 0.35,
            min_region_s: 0.3,
            min_turn_s: 0.3,
            min_speaker_s: 2.0,
            fill_gap_s: 0.5,
            batch: 8,
        }
    }
}

impl DiarizeOptions {
    /// Check ranges.
    pub fn validate(&self) -> Result<(), DiarizeError> {
        let bad = |m: String| Err(DiarizeError::Options(m));
        if let Some(n) = self.speakers {
            if n == 0 || n > 16 {
                return bad(format!("speakers = {n}: expected 1 to 16"));
            }
        }
        if self.max_speakers == 0 || self.max_speakers > 16 {
            return bad(format!(
                "max_speakers = {}: expected 1 to 16",
                self.max_speakers
            ));
        }
        if !(0.3..=10.0).contains(&self.window_s) {
            return bad(format!("window_s = {}: expected 0.3 to 10", self.window_s));
        }
        if !(0.05..=10.0).contains(&self.hop_s) || self.hop_s > self.window_s {
            return bad(format!(
                "hop_s = {}: expected 0.05 s up to window_s",
                self.hop_s
            ));
        }
        for (name, v) in [
            ("cluster_threshold", self.cluster_threshold),
            ("change_threshold", self.change_threshold),
            ("centroid_threshold", self.centroid_threshold),
        ] {
            if !(-1.0..=1.0).contains(&v) {
                return bad(format!("{name} = {v}: expected -1 to 1"));
            }
        }
        for (name, v) in [
            ("min_region_s", self.min_region_s),
            ("min_turn_s", self.min_turn_s),
            ("min_speaker_s", self.min_speaker_s),
            ("fill_gap_s", self.fill_gap_s),
        ] {
            if !(0.0..=60.0).contains(&v) {
                return bad(format!("{name} = {v}: expected 0 to 60 seconds"));
            }
        }
        if self.batch == 0 || self.batch > 256 {
            return bad(format!("batch = {}: expected 1 to 256", self.batch));
        }
        Ok(())
    }
}

/// `[diarize]`: who spoke when on legs that carry more than one person.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct DiarizeConfig {
    /// Diarise mono recordings and mono live legs (two people on one
    /// channel): turns are split at speaker changes and carry `speaker`.
    pub enabled: bool,
    /// Also diarise each leg of a two-channel call (a conference leg that
    /// carries several people).
    pub split_channel_speakers: bool,
    /// Clustering and window settings.
    pub options: DiarizeOptions,
    /// How the agent is told from the customer on a diarised leg.
    pub roles: roles::RoleConfig,
}

impl Default for DiarizeConfig {
    fn default() -> Self {
        DiarizeConfig {
            enabled: true,
            split_channel_speakers: false,
            options: DiarizeOptions::default(),
            roles: roles::RoleConfig::default(),
        }
    }
}

impl DiarizeConfig {
    /// Whether a call with `channels` channels has its legs diarised.
    pub fn applies(&self, channels: usize) -> bool {
        self.enabled && (channels == 1 || self.split_channel_speakers)
    }
}

/// One speaker's stretch of speech, in 10 ms frames from the start of the
/// audio (`end` exclusive). Speakers are numbered from 0 in order of first
/// appearance.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
pub struct Segment {
    /// First frame.
    pub start: usize,
    /// Frame after the last.
    pub end: usize,
    /// Speaker number.
    pub speaker: usize,
}

impl Segment {
    /// Start, seconds.
    pub fn start_s(&self) -> f64 {
        self.start as f64 * FRAME_S
    }
    /// End, seconds.
    pub fn end_s(&self) -> f64 {
        self.end as f64 * FRAME_S
    }
    /// The label used in events and RTTM: `S1`, `S2`, ...
    pub fn label(&self) -> String {
        speaker_label(self.speaker)
    }
}

/// `S1` for speaker 0, and so on.
pub fn speaker_label(speaker: usize) -> String {
    format!("S{}", speaker + 1)
}

/// Diarise a whole recording: `audio` at 16 kHz in [-1, 1], speech
/// `regions` as sample ranges (from a VAD; see [`regions::speech_regions`]).
/// Returns segments in time order, at 10 ms resolution.
pub fn diarize<E: SpeakerEmbedder>(
    embedder: &E,
    audio: &[f32],
    regions: &[(usize, usize)],
    opts: &DiarizeOptions,
) -> Result<Vec<Segment>, DiarizeError> {
    let mut t = Tracker::new(opts.clone())?;
    for &(a, b) in regions {
        let (a, b) = (a.min(audio.len()), b.min(audio.len()));
        if a < b {
            t.push_region(embedder, a, &audio[a..b])?;
        }
    }
    t.recluster();
    Ok(t.segments())
}

/// The speaker who talks most within `[start, end)` seconds, if any.
pub fn speaker_at(segments: &[Segment], start: f64, end: f64) -> Option<usize> {
    let (a, b) = (
        (start / FRAME_S).round() as usize,
        (end / FRAME_S).round() as usize,
    );
    let mut talk: Vec<usize> = Vec::new();
    for s in segments {
        let o = s.end.min(b).saturating_sub(s.start.max(a));
        if o > 0 {
            if talk.len() <= s.speaker {
                talk.resize(s.speaker + 1, 0);
            }
            talk[s.speaker] += o;
        }
    }
    talk.iter()
        .enumerate()
        .filter(|(_, &v)| v > 0)
        .max_by_key(|(_, &v)| v)
        .map(|(i, _)| i)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn options_are_validated() {
        assert!(DiarizeOptions::default().validate().is_ok());
        let o = DiarizeOptions {
            speakers: Some(0),
            ..Default::default()
        };
        assert!(o.validate().unwrap_err().to_string().contains("speakers"));
        let o = DiarizeOptions {
            hop_s: 2.0,
            ..Default::default()
        };
        assert!(o.validate().is_err());
    }

    #[test]
    fn speaker_at_takes_the_majority() {
        let s = [
            Segment {
                start: 0,
                end: 100,
                speaker: 0,
            },
            Segment {
                start: 100,
                end: 400,
                speaker: 1,
            },
        ];
        assert_eq!(speaker_at(&s, 0.5, 3.0), Some(1));
        assert_eq!(speaker_at(&s, 0.0, 1.2), Some(0));
        assert_eq!(speaker_at(&s, 5.0, 6.0), None);
        assert_eq!(s[1].label(), "S2");
    }
}
