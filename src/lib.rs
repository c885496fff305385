//! # callpulse
//!
//! Listens to customer-support calls and tells, per speaker turn, what was
//! said, how it was said and how the speaker felt.
//!
//! ## Data flow
//!
//! ```text
//!  capture: WAV file (audio::wav) · microphone (capture::mic) · stdin PCM
//!           · SIP/RTP calls and pcap files (telephony: G.711 → audio::g711)
//!                              │ frames per leg
//!                              ▼
//!  resample ─ pipeline::resample (audio::resample, rubato → 16 kHz)
//!                              │
//!                              ▼
//!  segment ── pipeline::segment (segment: Silero VAD → turns; partial and
//!             speculative requests while a turn runs; pipeline::speakers
//!             with diarize: who spoke when on a mono leg)
//!                              │
//!                              ▼
//!  asr ────── pipeline::asr (asr::whisper: whisper.cpp text + word times;
//!             language ID with Whisper base for an English-only model)
//!                              │
//!                              ▼
//!  analysis ─ pipeline::analysis: prosody (energy, F0, rate, pauses)
//!             ⊕ sentiment (e5-small encoder → polarity and emotion heads)
//!             → intel (indicators, spans, PII redaction, shifts, rules)
//!                              │ events (event: the versioned schema)
//!                              ▼
//!  sink ───── pipeline::sink → sink (jsonl, json, csv, table), server hub,
//!             webhook (intel::webhook), report (HTML, Markdown)
//! ```
//!
//! Each stage runs on its own thread, joined by bounded crossbeam channels
//! ([`pipeline`], whose `run` wires them). Models load once
//! ([`pipeline::Engine`]) and are shared by every call; per-call and
//! per-leg state is separate.
//!
//! ## Modules
//! - [`audio`]: WAV decoding (PCM, float, μ-law, A-law), G.711, resampling.
//! - [`capture`]: where live audio enters: microphone (cpal), stdin PCM.
//! - [`segment`]: voice activity (`vad`) and turn segmentation (`turns`).
//! - [`diarize`]: who spoke when on one channel: filterbank, CAM++
//!   embeddings, clustering, online tracking, roles, DER.
//! - [`asr`]: speech recognition (`whisper`), language ID and checks.
//! - [`prosody`]: prosodic features (`pitch`: YIN) and speaker baselines.
//! - [`sentiment`]: text `encoder` (e5-small through ONNX Runtime) and the
//!   polarity and emotion `head`s.
//! - [`intel`]: conversation intelligence: `indicators` (frustration,
//!   sarcasm), `emotion`, `spans`, `dynamics` (shifts), `rules` (alerts),
//!   `pii` (redaction: tokens, e-mail, IBAN, digit runs), `webhook`.
//! - [`pipeline`]: the named stages (`resample`, `segment`, `asr`,
//!   `analysis`, `speakers`, `sink`), their `messages`, queue policies and
//!   `stats`; `engine` loads models, `run` wires the stages.
//! - [`event`]: the output schema and the types it owns.
//! - [`sink`]: output formats and per-call output files (`calls`).
//! - [`report`]: HTML and Markdown reports of a scored call.
//! - [`telephony`]: `sip` parsing, the user agent (`ua`), `sdp`, `rtp`,
//!   the `jitter` buffer, `pcap` reading and the `capture` decoder, the RTP
//!   `listener`, `sender` and pcap writer, the call `spawner`, `traffic`.
//! - [`server`]: `serve`: `accept`, `auth`, `routes`, `uploads`, the live
//!   `hub`, SQLite `history`, `metrics`, the dashboard.
//! - [`models`]: provisioning (`provision`), the Whisper CTranslate2 → ggml
//!   converter (`convert`), the e5 converter (`e5`), the CAM++ converter
//!   (`campplus`, reading PyTorch pickles with `torch`), and the ONNX
//!   writer (`onnx`).
//! - [`runtime`]: the ONNX Runtime library, loaded once.
//! - [`train`]: training and evaluating the text heads.
//! - [`eval`]: word error rate, transcripts, RTTM references.
//! - [`corpus`]: the real-speech test corpus and the built two-speaker calls.
//! - [`bench`]: the measurement harnesses behind `callpulse bench`.
//! - [`config`]: the TOML configuration.

pub mod annotate;
pub mod asr;
pub mod audio;
pub mod bench;
pub mod capture;
pub mod chat;
pub mod cluster;
pub mod config;
pub mod corpus;
pub mod diarize;
pub mod eval;
pub mod event;
pub mod insights;
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
