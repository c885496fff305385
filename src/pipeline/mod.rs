//! The staged pipeline: one thread per stage, joined by a lock-free ring and
//! bounded crossbeam channels.
//!
//! ```text
//! capture ─ring─▶ resample ─chunks─▶ segment (per leg: VAD → turns) ─finals──▶ ASR ─▶ analysis ─events─▶ sink
//!                                                               └──partials─┘      (prosody + sentiment)
//! ```
//!
//! Policies when a queue is full:
//!
//! | queue | capacity | when full |
//! |---|---|---|
//! | capture ring | `live.ring_ms` of audio (2 s offline) | live sources drop the frames and count them (`frames_dropped`); files and stdin wait |
//! | resampled chunks, per leg | [`QUEUE_CHUNKS`] | the resample stage waits (the ring absorbs it) |
//! | finished turns | `live.final_queue` ([`QUEUE_TURNS`] offline) | the segmenter waits: turns are never dropped; the wait backs up into the ring |
//! | partial requests | 2 per leg | skipped and counted (`partials_skipped`); the ASR stage also keeps only the newest per leg and drops those of turns already final |
//! | ASR results, events | [`QUEUE_TURNS`], [`QUEUE_EVENTS`] | the producer waits: events are never dropped |
//!
//! So under overload, partials go first; final turns queue; only when the
//! turn queue is full does live capture lose audio, and then it is counted.
//! Memory is bounded by these capacities (at most `final_queue` turns of up
//! to `segment.max_turn_s` each).
//!
//! Offline (`score`): the same stages, with backpressure everywhere, no
//! partials, output sorted by start time.
//!
//! ## The stages
//!
//! Each stage is a struct with its input and output types, run on its own
//! thread by [`run`]'s small topology (the sink runs on the caller's thread):
//!
//! | stage | in | out | file |
//! |---|---|---|---|
//! | capture ([`crate::capture::Source`]) | device, file, socket | interleaved `f32` frames in the ring | `capture/` |
//! | resample | ring | 16 kHz chunks per leg | `resample.rs` |
//! | segment (one per leg) | 16 kHz chunks | finished turns; partial/speculative requests | `segment.rs` |
//! | asr | turns and requests | transcripts | `asr.rs` |
//! | analysis | transcripts | turn and partial events | `analysis.rs` |
//! | sink | events | the caller's sink: ordered turns, conversation events, summary | `sink.rs` |
//!
//! The models enter through traits ([`crate::asr::AsrModel`],
//! [`crate::segment::VadModel`], [`crate::sentiment::TextEncoder`]), so the
//! queue policies are unit-tested with deterministic fakes (`tests.rs`).

mod agreement;
mod analysis;
mod asr;
mod engine;
mod messages;
mod resample;
mod run;
mod segment;
mod sink;
mod speakers;
mod stats;
#[cfg(test)]
mod tests;
mod text;

pub use agreement::Agreement;
pub use engine::{CallOutcome, Engine, EngineError, RunOptions};

/// Capacity of each resample → segment queue, in chunks.
pub const QUEUE_CHUNKS: usize = 8;
/// Capacity of the turn queues offline (segment → ASR → analysis).
pub const QUEUE_TURNS: usize = 4;
/// Capacity of the analysis → sink queue.
pub const QUEUE_EVENTS: usize = 64;
/// Most frames taken from the ring at once.
pub const CHUNK_FRAMES: usize = 4096;
