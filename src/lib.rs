//! # callpulse
//!
//! Listens to customer-support calls and tells, per speaker turn, what was
//! said, how it was said and how the speaker felt.
//!
//! ## Data flow
//!
//! ```text
//!  WAV file ─▶ audio::wav ─▶ audio::resample (16 kHz, per leg)
//!                              │
//!                              ▼
//!                 segment (Silero VAD → turns, per leg)
//!                              │
//!                              ▼
//!                 asr (whisper.cpp: text + word times)
//!                              │
//!              ┌───────────────┴───────────────┐
//!              ▼                               ▼
//!     prosody (energy, F0,              sentiment (MiniLM → polarity
//!      rate, pauses, z-scores)           head; intensity = text ⊕ arousal)
//!              └───────────────┬───────────────┘
//!                              ▼
//!                 event (versioned schema) ─▶ sink (jsonl, json, csv, table)
//! ```
//!
//! Each stage runs on its own thread, joined by bounded crossbeam channels
//! ([`pipeline`]). Models load once ([`pipeline::Engine`]) and are shared by
//! every call; per-call and per-leg state is separate.
//!
//! ## Modules
//! - [`audio`]: WAV decoding, resampling.
//! - [`segment`]: voice activity and turn segmentation.
//! - [`diarize`]: who spoke when on one channel (speaker embeddings, clustering, DER).
//! - [`asr`]: speech recognition.
//! - [`prosody`]: prosodic features and speaker baselines.
//! - [`sentiment`]: text encoder, polarity head, intensity fusion.
//! - [`pipeline`]: the staged threads.
//! - [`event`]: the output schema.
//! - [`sink`]: output formats.
//! - [`models`]: provisioning and the Whisper converter.
//! - [`train`]: training and evaluating the polarity head.
//! - [`eval`]: word error rate, transcripts and RTTM references.
//! - [`corpus`]: the real-speech test corpus and the built two-speaker calls.
//! - [`config`]: the TOML configuration.

pub mod asr;
pub mod audio;
pub mod bench;
pub mod capture;
pub mod config;
pub mod corpus;
pub mod diarize;
pub mod eval;
pub mod event;
pub mod intel;
pub mod models;
pub mod pipeline;
pub mod prosody;
pub mod report;
pub mod runtime;
pub mod segment;
pub mod sentiment;
pub mod server;
pub mod sink;
pub mod telephony;
pub mod train;
