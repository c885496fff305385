//! Jitter buffer and leg mixer: RTP packets in, aligned multi-leg audio out.
//!
//! Every leg writes its packets onto one shared timeline (samples at 8 kHz
//! since the call started). A stream is anchored where its first packet
//! arrived; after that each packet lands at its RTP timestamp relative to
//! the anchor, so reordered packets fall into place and lost ones leave
//! silence of exactly their length. The mixer releases the timeline up to
//! `now - window`: a packet that arrives after its place was released is
//! *late* and dropped. The same code runs live (arrival = wall clock) and
//! offline on packet captures (arrival = capture time), so both give the
//! same audio for the same packets.
//!
//! Per stream it tracks extended sequence numbers (wrap-around safe),
//! duplicates, reordering and loss (RFC 3550 style: expected − received).
//! A new SSRC restarts the leg's stream (anchored afresh); a timestamp jump
//! (position more than `jump_ms` away from the arrival time) or a sequence
//! jump of more than 3000 re-anchors it.

use std::collections::VecDeque;

use super::rtp::{g711_codec, RtpPacket};
use crate::event::Role;

/// Jitter buffer settings.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct JitterConfig {
    /// Playout delay: packets may arrive this late (reordered or delayed)
    /// and still be placed. ms.
    pub window_ms: u32,
    /// A timestamp this far from the arrival time is a jump (re-anchor). ms.
    pub jump_ms: u32,
    /// Longest silence released at once when nothing is buffered, ms: a
    /// longer gap in the timeline (a packet stamped a day late, a capture
    /// clock that leaps) is shortened to this and counted in `gaps_capped`.
    pub max_gap_ms: u32,
}

/// Default longest silent gap, ms (30 s: a live call without RTP for that
/// long ends by default).
pub const MAX_GAP_MS: u32 = 30_000;

impl Default for JitterConfig {
    fn default() -> Self {
        JitterConfig {
            window_ms: 100,
            jump_ms: 1000,
            max_gap_ms: MAX_GAP_MS,
        }
    }
}

/// G.711 sample rate.
pub const RATE: u32 = 8000;
/// Largest sequence jump still taken as loss or reordering.
const MAX_SEQ_JUMP: i64 = 3000;
/// Remembered sequence numbers for duplicate detection.
const SEEN: usize = 1024;
/// Most audio buffered ahead of the playout point, samples (60 s).
pub const MAX_AHEAD: i64 = 60 * RATE as i64;

pub use crate::event::RtpLegStats as LegStats;

struct Stream {
    ssrc: u32,
    base: i64,
    max: i64,
    received: u64,
    last_ts: u32,
    last_ts_ext: i64,
    ref_ts_ext: i64,
    anchor: i64,
    seen: Vec<i64>,
}

impl Stream {
    fn new(p: &RtpPacket<'_>, arrival: i64) -> Self {
        Stream {
            ssrc: p.ssrc,
            base: p.seq as i64,
            max: p.seq as i64,
            received: 0,
            last_ts: p.timestamp,
            last_ts_ext: p.timestamp as i64,
            ref_ts_ext: p.timestamp as i64,
            anchor: arrival,
            seen: vec![-1; SEEN],
        }
    }

    fn expected(&self) -> u64 {
        (self.max - self.base + 1).max(0) as u64
    }

    fn lost(&self) -> u64 {
        self.expected().saturating_sub(self.received)
    }
}

struct Leg {
    stats: LegStats,
    stream: Option<Stream>,
    prev_ssrc: Option<u32>,
    closed_lost: u64,
    buf: VecDeque<f32>,
}

/// Aligns the legs of one call on a shared timeline.
pub struct Mixer {
    cfg: JitterConfig,
    legs: Vec<Leg>,
    cursor: i64,
    scratch: Vec<f32>,
}

impl Mixer {
    /// A mixer for legs with these roles.
    pub fn new(cfg: JitterConfig, roles: &[Role]) -> Self {
        Mixer {
            cfg,
            legs: roles
                .iter()
                .map(|&role| Leg {
                    stats: LegStats {
                        role,
                        ..Default::default()
                    },
                    stream: None,
                    prev_ssrc: None,
                    closed_lost: 0,
                    buf: VecDeque::new(),
                })
                .collect(),
            cursor: 0,
            scratch: Vec::with_capacity(480),
        }
    }

    /// Number of legs.
    pub fn legs(&self) -> usize {
        self.legs.len()
    }

    /// Samples released so far (the playout point).
    pub fn cursor(&self) -> i64 {
        self.cursor
    }

    /// The playout delay in samples.
    pub fn window(&self) -> i64 {
        self.cfg.window_ms as i64 * RATE as i64 / 1000
    }

    /// The longest silent gap in samples.
    fn max_gap(&self) -> i64 {
        self.cfg.max_gap_ms as i64 * RATE as i64 / 1000
    }

    /// Note where a leg's packets come from.
    pub fn set_source(&mut self, leg: usize, source: String) {
        if let Some(l) = self.legs.get_mut(leg) {
            l.stats.source.get_or_insert(source);
        }
    }

    /// Count a datagram that was not RTP.
    pub fn malformed(&mut self, leg: usize) {
        if let Some(l) = self.legs.get_mut(leg) {
            l.stats.malformed += 1;
        }
    }

    /// Take one packet for `leg`, arrived at timeline position `arrival`
    /// (samples since the call started).
    pub fn push(&mut self, leg: usize, p: &RtpPacket<'_>, arrival: i64) {
        let jump = self.cfg.jump_ms as i64 * RATE as i64 / 1000;
        let cursor = self.cursor;
        let Some(l) = self.legs.get_mut(leg) else {
            return;
        };
        l.stats.packets += 1;
        let Some(codec) = g711_codec(p.payload_type) else {
            l.stats.other_payload += 1;
            return;
        };
        // New stream, or a change of SSRC: restart the leg's stream.
        match &l.stream {
            Some(s) if s.ssrc == p.ssrc => {}
            Some(_) if l.prev_ssrc == Some(p.ssrc) => {
                // A straggler from the stream that was replaced.
                l.stats.late += 1;
                return;
            }
            other => {
                if let Some(old) = other {
                    l.stats.ssrc_changes += 1;
                    l.closed_lost += old.lost();
                    l.prev_ssrc = Some(old.ssrc);
                }
                l.stream = Some(Stream::new(p, arrival.max(cursor)));
            }
        }
        let s = l.stream.as_mut().expect("stream set above");
        // Extend the sequence number around the highest seen.
        let delta = p.seq.wrapping_sub(s.max as u16) as i16 as i64;
        let mut ext = s.max + delta;
        if delta.abs() > MAX_SEQ_JUMP {
            // A sequence discontinuity: count what was lost so far and
            // start counting afresh, anchored at the arrival.
            l.closed_lost += s.lost();
            *s = Stream::new(p, arrival.max(cursor));
            l.stats.jumps += 1;
            ext = s.max;
        }
        if ext <= s.max - SEEN as i64 {
            l.stats.late += 1;
            return;
        }
        let slot = ext.rem_euclid(SEEN as i64) as usize;
        if s.seen[slot] == ext {
            l.stats.duplicates += 1;
            return;
        }
        s.seen[slot] = ext;
        s.received += 1;
        // Extended timestamp, relative to the last in-order packet.
        let ts_ext = s.last_ts_ext + p.timestamp.wrapping_sub(s.last_ts) as i32 as i64;
        if ext < s.max {
            l.stats.reordered += 1;
            if ext < s.base {
                s.base = ext;
            }
        } else {
            s.max = ext;
            s.last_ts = p.timestamp;
            s.last_ts_ext = ts_ext;
        }
        let mut pos = s.anchor + (ts_ext - s.ref_ts_ext);
        if (pos - arrival).abs() > jump && ext >= s.max {
            // The timestamp jumped (or the sender's clock did): re-anchor.
            s.ref_ts_ext = ts_ext;
            s.anchor = arrival.max(cursor);
            pos = s.anchor;
            l.stats.jumps += 1;
        }
        self.scratch.clear();
        codec.decode(p.payload, &mut self.scratch);
        l.stats.codec = Some(
            match p.payload_type {
                0 => "PCMU",
                _ => "PCMA",
            }
            .into(),
        );
        let n = self.scratch.len() as i64;
        if pos + n <= cursor {
            l.stats.late += 1;
            return;
        }
        let skip = (cursor - pos).max(0);
        if skip > 0 {
            l.stats.late += 1;
        }
        let start = pos + skip - cursor;
        let end = pos + n - cursor;
        if end > MAX_AHEAD {
            l.stats.late += 1;
            return;
        }
        if (l.buf.len() as i64) < end {
            l.buf.resize(end as usize, 0.0);
        }
        for (i, &v) in self.scratch[skip as usize..].iter().enumerate() {
            l.buf[start as usize + i] = v;
        }
    }

    /// Release the timeline up to `pos` (exclusive) as interleaved frames
    /// appended to `out`; positions nothing was written to are silence.
    /// Silence beyond the buffered audio is released for at most
    /// `max_gap_ms`: the rest of a longer gap is skipped (the timeline moves
    /// on without it) and counted as a capped gap on every leg.
    pub fn drain_to(&mut self, pos: i64, out: &mut Vec<f32>) {
        if pos <= self.cursor {
            return;
        }
        let buffered = self.end() - self.cursor;
        let mut n = pos - self.cursor;
        if n > buffered + self.max_gap() {
            n = buffered + self.max_gap();
            for l in self.legs.iter_mut() {
                l.stats.gaps_capped += 1;
            }
        }
        let n = n as usize;
        out.reserve(n * self.legs.len());
        for _ in 0..n {
            for l in self.legs.iter_mut() {
                out.push(l.buf.pop_front().unwrap_or(0.0));
            }
        }
        self.cursor = pos;
    }

    /// End of the buffered audio (the furthest position any leg wrote).
    pub fn end(&self) -> i64 {
        self.cursor + self.legs.iter().map(|l| l.buf.len()).max().unwrap_or(0) as i64
    }

    /// Counters per leg (loss includes the open streams).
    pub fn stats(&self) -> Vec<LegStats> {
        self.legs
            .iter()
            .map(|l| {
                let mut s = l.stats.clone();
                s.lost = l.closed_lost + l.stream.as_ref().map_or(0, |s| s.lost());
                s
            })
            .collect()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::audio::g711::linear_to_mulaw;

    fn pkt(seq: u16, ts: u32, ssrc: u32, level: i16) -> Vec<u8> {
        let payload = vec![linear_to_mulaw(level); 160];
        super::super::rtp::build(&RtpPacket {
            marker: false,
            payload_type: 0,
            seq,
            timestamp: ts,
            ssrc,
            payload: &payload,
        })
    }

    fn push(m: &mut Mixer, leg: usize, bytes: &[u8], arrival: i64) {
        let p = super::super::rtp::parse(bytes).unwrap();
        m.push(leg, &p, arrival);
    }

    fn mono() -> Mixer {
        Mixer::new(JitterConfig::default(), &[Role::Customer])
    }

    /// Packet i's level is distinct so positions can be checked.
    fn level(i: usize) -> i16 {
        1000 + 200 * i as i16
    }

    fn blocks(out: &[f32]) -> Vec<i32> {
        out.chunks(160)
            .map(|c| (c[80] * 32768.0).round() as i32)
            .collect()
    }

    #[test]
    fn reorders_within_window_and_conceals_loss() {
        let mut m = mono();
        // Packets 0..10, 20 ms apart; 3 and 4 swapped, 6 lost, 8 duplicated.
        let order = [0usize, 1, 2, 4, 3, 5, 7, 8, 8, 9];
        for (k, &i) in order.iter().enumerate() {
            let bytes = pkt(100 + i as u16, 5000 + 160 * i as u32, 7, level(i));
            push(&mut m, 0, &bytes, 160 * k as i64);
        }
        let mut out = Vec::new();
        let end = m.end();
        m.drain_to(end, &mut out);
        assert_eq!(out.len(), 1600);
        let b = blocks(&out);
        for (i, &v) in b.iter().enumerate() {
            if i == 6 {
                assert_eq!(v, 0, "lost packet is silence");
            } else {
                let want = crate::audio::g711::mulaw_to_linear(linear_to_mulaw(level(i))) as i32;
                assert_eq!(v, want, "packet {i} in place");
            }
        }
        let s = &m.stats()[0];
        assert_eq!(
            (s.packets, s.lost, s.duplicates, s.reordered, s.late),
            (10, 1, 1, 1, 0)
        );
    }

    #[test]
    fn late_packet_is_dropped_and_counted() {
        let mut m = mono();
        let mut out = Vec::new();
        push(&mut m, 0, &pkt(1, 0, 7, 500), 0);
        push(&mut m, 0, &pkt(3, 320, 7, 500), 320);
        m.drain_to(320 + 160, &mut out);
        // Packet 2 arrives after its place was played out.
        push(&mut m, 0, &pkt(2, 160, 7, 500), 1000);
        let s = &m.stats()[0];
        assert_eq!((s.late, s.lost, s.reordered), (1, 0, 1));
        assert_eq!(blocks(&out)[1], 0);
    }

    #[test]
    fn sequence_and_timestamp_wrap() {
        let mut m = mono();
        for i in 0..6u32 {
            let seq = 65533u16.wrapping_add(i as u16);
            let ts = (u32::MAX - 300).wrapping_add(160 * i);
            push(&mut m, 0, &pkt(seq, ts, 9, 800), 160 * i as i64);
        }
        let mut out = Vec::new();
        m.drain_to(m.end(), &mut out);
        assert_eq!(out.len(), 960);
        assert!(out.iter().all(|&v| v > 0.0), "no gap at the wrap");
        let s = &m.stats()[0];
        assert_eq!((s.lost, s.jumps, s.reordered), (0, 0, 0));
    }

    #[test]
    fn ssrc_change_restarts_the_leg() {
        let mut m = mono();
        for i in 0..5u32 {
            push(&mut m, 0, &pkt(i as u16, 160 * i, 1, 800), 160 * i as i64);
        }
        // A new source, random sequence and timestamp, right after.
        for i in 0..5u32 {
            let arrival = 800 + 160 * i as i64;
            push(
                &mut m,
                0,
                &pkt(40000 + i as u16, 9_999_999 + 160 * i, 2, 800),
                arrival,
            );
        }
        let mut out = Vec::new();
        m.drain_to(m.end(), &mut out);
        assert_eq!(out.len(), 1600, "the new stream continues the timeline");
        assert!(out.iter().all(|&v| v > 0.0));
        let s = &m.stats()[0];
        assert_eq!((s.ssrc_changes, s.lost, s.jumps), (1, 0, 0));
    }

    #[test]
    fn timestamp_jump_reanchors() {
        let mut m = mono();
        for i in 0..3u32 {
            push(&mut m, 0, &pkt(i as u16, 160 * i, 1, 800), 160 * i as i64);
        }
        // The timestamp leaps an hour ahead; the packets keep arriving in time.
        for i in 3..6u32 {
            push(
                &mut m,
                0,
                &pkt(i as u16, 28_800_000 + 160 * i, 1, 800),
                160 * i as i64,
            );
        }
        let mut out = Vec::new();
        m.drain_to(m.end(), &mut out);
        assert_eq!(out.len(), 960);
        assert_eq!(m.stats()[0].jumps, 1);
    }

    #[test]
    fn two_legs_align_on_arrival() {
        let mut m = Mixer::new(JitterConfig::default(), &[Role::Agent, Role::Customer]);
        // Leg 1 starts 1 s later than leg 0.
        push(&mut m, 0, &pkt(0, 0, 1, 1000), 0);
        push(&mut m, 1, &pkt(77, 123_456, 2, 2000), 8000);
        let mut out = Vec::new();
        m.drain_to(m.end(), &mut out);
        assert_eq!(out.len(), 2 * 8160);
        assert!(out[0] > 0.0 && out[1] == 0.0);
        assert!(out[2 * 8000] == 0.0 && out[2 * 8000 + 1] > 0.0);
    }

    /// Defect 1: one packet stamped hours late made `drain_to` zero-fill
    /// the whole gap at once (a day: 5.5 GB for two legs).
    #[test]
    fn regression_late_timestamp_gap_is_capped() {
        let mut m = Mixer::new(JitterConfig::default(), &[Role::Agent, Role::Customer]);
        let mut out = Vec::new();
        for i in 0..5u32 {
            push(&mut m, 0, &pkt(i as u16, 160 * i, 1, 800), 160 * i as i64);
        }
        // Two hours later (a day, or the end of time, behaves the same).
        for (k, late) in [2 * 3600 * 8000i64, 86_400 * 8000, i64::MAX / 4]
            .into_iter()
            .enumerate()
        {
            push(&mut m, 1, &pkt(9 + k as u16, 0, 2, 800), late);
            m.drain_to(late - m.window(), &mut out);
        }
        m.drain_to(m.end(), &mut out);
        let max = 2 * (5 * 160 + 3 * MAX_GAP_MS as usize * 8 + 160);
        assert!(out.len() <= max, "{} samples released", out.len());
        let s = m.stats();
        assert_eq!((s[0].gaps_capped, s[1].gaps_capped), (3, 3));
        // The audio before the gap is all there.
        assert!(out[..2 * 800].chunks(2).all(|f| f[0] > 0.0));
    }

    #[test]
    fn gap_within_the_limit_is_kept_whole() {
        let mut m = mono();
        let mut out = Vec::new();
        push(&mut m, 0, &pkt(0, 0, 1, 800), 0);
        let t = 20 * 8000; // 20 s of silence, then the next packet
        push(&mut m, 0, &pkt(1, t as u32, 1, 800), t);
        m.drain_to(m.end(), &mut out);
        assert_eq!(out.len(), t as usize + 160);
        assert_eq!(m.stats()[0].gaps_capped, 0);
    }

    #[test]
    fn other_payload_types_are_ignored() {
        let mut m = mono();
        let bytes = super::super::rtp::build(&RtpPacket {
            marker: false,
            payload_type: 101,
            seq: 1,
            timestamp: 0,
            ssrc: 1,
            payload: &[1, 2, 3, 4],
        });
        push(&mut m, 0, &bytes, 0);
        assert_eq!(m.stats()[0].other_payload, 1);
        assert_eq!(m.end(), 0);
    }
}
