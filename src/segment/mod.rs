//! Voice activity and turn segmentation: each leg's 16 kHz audio is cut into
//! speech turns so the recogniser never decodes long silence.
//!
//! [`VoiceDetector`] gives a speech probability per 32 ms frame ([`SileroVad`]
//! is the real one; [`EnergyVad`] is a small deterministic stand-in for unit
//! tests). [`TurnSegmenter`] turns those probabilities into turns with
//! hysteresis, minimum speech and silence durations and a maximum turn length.

mod turns;
mod vad;

pub use turns::{OpenTurn, SegmentConfig, TurnAudio, TurnSegmenter};
pub use vad::{EnergyVad, SileroModel, SileroVad, VadError, VadModel, VoiceDetector, FRAME};
