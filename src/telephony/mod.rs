//! Telephony ingest: SIP calls and their RTP (G.711), and packet captures
//! of them, turned into per-party legs for the pipeline.
//!
//! - [`rtp`], [`sip`], [`sdp`], [`pcap`]: parsers (fuzzed; see `fuzz/`).
//! - [`jitter`]: the jitter buffer that aligns legs on one timeline.
//! - [`call`]: a live call as a pipeline source.
//! - [`spawner`]: one pipeline thread per call, ids kept unique (`sip`,
//!   `rtp` and `serve` start their calls through it).
//! - [`ua`]: the SIP user agent server (`callpulse sip`).
//! - [`listener`]: bare RTP streams on UDP ports (`callpulse rtp`).
//! - [`capture`]: calls found in a packet capture, decoded one at a time
//!   (`callpulse pcap`).
//! - [`sender`], [`traffic`]: RTP from audio files, with impairments, sent
//!   or written to a capture (`callpulse rtp-send`).

pub mod call;
pub mod capture;
pub mod jitter;
pub mod listener;
pub mod pcap;
pub mod rtp;
pub mod sdp;
pub mod sender;
pub mod sip;
pub mod spawner;
pub mod traffic;
pub mod ua;
