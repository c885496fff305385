//! Audio in: WAV decoding into per-leg `f32` streams, and resampling to 16 kHz.
//!
//! Audio inside callpulse is `f32` mono per leg in [-1, 1]; time is a sample
//! index at a known rate (16 kHz after [`resample`]).

pub mod g711;
pub mod resample;
pub mod wav;

/// The sample rate every stage after resampling works at.
pub const MODEL_RATE: u32 = 16_000;

/// Lowest input sample rate accepted.
pub const MIN_RATE: u32 = 8_000;
/// Highest input sample rate accepted.
pub const MAX_RATE: u32 = 48_000;
