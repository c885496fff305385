//! What flows between the stages.

use std::time::Instant;

use crate::asr::{AsrWord, Transcript};
use crate::event::Event;
use crate::segment::TurnAudio;

/// 16 kHz audio of one leg and when it entered the pipeline
/// (resample → segment).
pub(crate) struct Chunk16 {
    pub samples: Vec<f32>,
    pub seen: Instant,
}

/// A finished turn for the recogniser (segment → ASR).
pub(crate) struct FinalJob {
    pub turn: TurnAudio,
    /// When the chunk holding the end of speech entered the pipeline.
    pub seen: Instant,
    /// Segmentation time spent since the previous final turn of the leg.
    pub frontend_ms: f32,
}

/// The open turn's audio so far, for a partial (or speculative) decoding
/// (segment → ASR).
pub(crate) struct PartialJob {
    pub leg: u8,
    pub seq: u32,
    pub speech_start: u64,
    pub audio_start: u64,
    pub samples: Vec<f32>,
    pub seen: Instant,
    /// The samples are exactly what the final turn will hold if no more speech comes.
    pub speculative: bool,
}

/// A recogniser result (ASR → analysis).
pub(crate) enum AsrOut {
    Final {
        job: FinalJob,
        transcript: Transcript,
        asr_ms: f32,
        speculative: bool,
    },
    Partial {
        job: PartialJob,
        committed: Vec<AsrWord>,
        tentative: Vec<AsrWord>,
        asr_ms: f32,
    },
}

/// An event with the instant its awaited audio entered the pipeline
/// (analysis → sink).
pub(crate) struct Ready {
    pub event: Event,
    pub seen: Instant,
}
