//! The staged pipeline: threads joined by bounded crossbeam channels.
//!
//! ```text
//! reader ──chunks──▶ frontend (per leg: resample → VAD → turns) ──turns──▶ ASR ──▶ analysis (prosody + sentiment) ──▶ collector ──▶ sink
//! ```
//!
//! Offline scoring uses blocking backpressure on every queue: a full queue
//! stalls the stage before it, so nothing is dropped and memory stays bounded
//! by the queue capacities (see [`QUEUE_CHUNKS`], [`QUEUE_TURNS`]).

mod engine;

pub use engine::{CallOutcome, Engine, EngineError, StageClock};

/// Capacity of each reader → frontend queue, in chunks of [`CHUNK_FRAMES`].
/// Full: the reader blocks (offline).
pub const QUEUE_CHUNKS: usize = 8;
/// Capacity of the turn queues (frontend → ASR → analysis). Full: the
/// upstream stage blocks (offline).
pub const QUEUE_TURNS: usize = 4;
/// Frames read from the source per chunk.
pub const CHUNK_FRAMES: usize = 4096;
