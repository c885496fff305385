//! Telephony ingest: SIP calls and their RTP (G.711), and packet captures
//! of them, turned into per-party legs for the pipeline.
//!
//! - [`rtp`], [`sip`], [`sdp`], [`pcap`]: parsers (fuzzed; see `fuzz/`).
//! - [`jitter`]: the jitter buffer that aligns legs on one timeline.
//! - [`call`]: a live call as a pipeline source.
//! - [`ua`]: the SIP user agent server (`callpulse sip`).
//! - [`capture`]: calls found in a packet capture (`callpulse pcap`).
//! - [`sender`]: RTP from audio files, with impairments (`callpulse rtp-send`).

pub mod call;
pub mod capture;
pub mod jitter;
pub mod pcap;
pub mod rtp;
pub mod sdp;
pub mod sender;
pub mod sip;
pub mod ua;
