//! RTP from audio: each channel of a WAV file becomes one G.711 stream of
//! 20 ms packets, optionally impaired (loss, reordering, duplicates) with a
//! seeded generator, then sent over UDP in real time or written to a pcap.
//! What was injected is counted so receivers can be checked against it.

use std::net::SocketAddrV4;
use std::path::Path;

use serde::Serialize;

use super::rtp::{self, RtpPacket};
use crate::audio::g711::{linear_to_alaw, linear_to_mulaw};
use crate::audio::resample::LegResampler;
use crate::audio::wav::WavSource;

/// Samples per 20 ms packet at 8 kHz.
pub const PACKET_SAMPLES: usize = 160;
/// Packet interval, µs.
pub const PACKET_US: u64 = 20_000;

/// Impairments, as probabilities per packet.
#[derive(Debug, Clone, Copy, Default, PartialEq)]
pub struct Impairment {
    /// Drop a packet (never the first or last of a stream).
    pub loss: f64,
    /// Swap a packet with the next one (it arrives one interval late).
    pub reorder: f64,
    /// Send a packet twice.
    pub duplicate: f64,
    /// Generator seed.
    pub seed: u64,
}

/// What was done to one stream.
#[derive(Debug, Clone, Default, PartialEq, Serialize)]
pub struct Injected {
    /// Packets made from the audio.
    pub packets: u64,
    /// Datagrams sent (duplicates included, drops excluded).
    pub sent: u64,
    /// Packets dropped.
    pub dropped: u64,
    /// Packets sent after their successor.
    pub reordered: u64,
    /// Packets sent twice.
    pub duplicated: u64,
}

/// SplitMix64: small, seeded, reproducible.
pub struct Rng(u64);

impl Rng {
    /// A generator from a seed.
    pub fn new(seed: u64) -> Self {
        Rng(seed)
    }
    /// Next 64 random bits.
    pub fn next_u64(&mut self) -> u64 {
        self.0 = self.0.wrapping_add(0x9E37_79B9_7F4A_7C15);
        let mut z = self.0;
        z = (z ^ (z >> 30)).wrapping_mul(0xBF58_476D_1CE4_E5B9);
        z = (z ^ (z >> 27)).wrapping_mul(0x94D0_49BB_1331_11EB);
        z ^ (z >> 31)
    }
    /// Uniform in [0, 1).
    pub fn unit(&mut self) -> f64 {
        (self.next_u64() >> 11) as f64 / (1u64 << 53) as f64
    }
}

/// Read a WAV file as 8 kHz legs (one per channel).
pub fn read_legs_8k(path: &Path) -> Result<Vec<Vec<f32>>, String> {
    let mut src = WavSource::open(path).map_err(|e| e.to_string())?;
    let info = src.info();
    let ch = info.channels as usize;
    let mut rs: Vec<LegResampler> = (0..ch)
        .map(|_| LegResampler::to_rate(info.sample_rate, 8000))
        .collect::<Result<_, _>>()
        .map_err(|e| e.to_string())?;
    let mut out = vec![Vec::new(); ch];
    let mut legs = Vec::new();
    loop {
        let n = src.read_chunk(8192, &mut legs).map_err(|e| e.to_string())?;
        if n == 0 {
            break;
        }
        for (i, l) in legs.iter().enumerate() {
            rs[i].push(l, &mut out[i]).map_err(|e| e.to_string())?;
        }
    }
    for (i, r) in rs.iter_mut().enumerate() {
        r.finish(&mut out[i]).map_err(|e| e.to_string())?;
    }
    Ok(out)
}

/// One stream's packets: (send time µs from the start, datagram).
pub type Timed = Vec<(u64, Vec<u8>)>;

/// Encode one leg as 20 ms G.711 packets (`payload_type` 0 or 8).
pub fn packetise(samples: &[f32], payload_type: u8, ssrc: u32, seq0: u16, ts0: u32) -> Timed {
    let mut out = Vec::with_capacity(samples.len() / PACKET_SAMPLES + 1);
    for (i, chunk) in samples.chunks(PACKET_SAMPLES).enumerate() {
        let payload: Vec<u8> = chunk
            .iter()
            .map(|&v| {
                let s = (v.clamp(-1.0, 1.0) * 32767.0).round() as i16;
                if payload_type == 8 {
                    linear_to_alaw(s)
                } else {
                    linear_to_mulaw(s)
                }
            })
            .collect();
        let bytes = rtp::build(&RtpPacket {
            marker: i == 0,
            payload_type,
            seq: seq0.wrapping_add(i as u16),
            timestamp: ts0.wrapping_add((i * PACKET_SAMPLES) as u32),
            ssrc,
            payload: &payload,
        });
        out.push((i as u64 * PACKET_US, bytes));
    }
    out
}

/// Apply impairments; send times stay on the 20 ms grid (a swapped pair
/// trades slots; a duplicate follows its original by 1 ms).
pub fn impair(packets: Timed, imp: &Impairment, rng: &mut Rng) -> (Timed, Injected) {
    let n = packets.len();
    let mut inj = Injected {
        packets: n as u64,
        ..Default::default()
    };
    let mut kept: Vec<(u64, Vec<u8>)> = Vec::with_capacity(n);
    for (i, p) in packets.into_iter().enumerate() {
        if i > 0 && i + 1 < n && rng.unit() < imp.loss {
            inj.dropped += 1;
            continue;
        }
        kept.push(p);
    }
    let mut i = 0;
    while i + 1 < kept.len() {
        if rng.unit() < imp.reorder {
            kept.swap(i, i + 1);
            inj.reordered += 1;
            i += 2;
        } else {
            i += 1;
        }
    }
    // Send times: the kept packets' original slots, in order.
    let mut times: Vec<u64> = kept.iter().map(|p| p.0).collect();
    times.sort_unstable();
    let mut out = Vec::with_capacity(kept.len());
    for (k, (_, bytes)) in kept.into_iter().enumerate() {
        let t = times[k];
        if rng.unit() < imp.duplicate {
            inj.duplicated += 1;
            out.push((t, bytes.clone()));
            out.push((t + 1000, bytes));
        } else {
            out.push((t, bytes));
        }
    }
    inj.sent = out.len() as u64;
    (out, inj)
}

/// Merge streams by send time: (time µs, stream index, datagram).
pub fn merge(streams: Vec<Timed>) -> Vec<(u64, usize, Vec<u8>)> {
    let mut all: Vec<(u64, usize, Vec<u8>)> = streams
        .into_iter()
        .enumerate()
        .flat_map(|(k, s)| s.into_iter().map(move |(t, b)| (t, k, b)))
        .collect();
    all.sort_by_key(|(t, k, _)| (*t, *k));
    all
}

/// One datagram for a capture: (time µs, source, destination, payload).
pub type CaptureDatagram = (u64, SocketAddrV4, SocketAddrV4, Vec<u8>);

/// Write datagrams (sorted by time) to a pcap (Ethernet/IPv4/UDP), times
/// offset by `start_us`.
pub fn write_pcap(
    path: &Path,
    datagrams: &[CaptureDatagram],
    start_us: u64,
) -> std::io::Result<()> {
    let f = std::io::BufWriter::new(std::fs::File::create(path)?);
    let mut w = super::pcap::Writer::new(f)?;
    for (t, src, dst, b) in datagrams {
        w.udp(start_us + t, *src, *dst, b)?;
    }
    w.finish()?;
    Ok(())
}

/// The SIP messages of a plain two-party call for a synthetic capture: the
/// caller (SIP `caller_sip`, media `caller_media`) calls the callee; INVITE
/// with the caller's offer, 100, 200 with the callee's answer, ACK at the
/// start; BYE and 200 at `end_us`. Times are µs, the first message at 0.
pub fn sip_dialog(
    call_id: &str,
    caller_sip: SocketAddrV4,
    callee_sip: SocketAddrV4,
    caller_media: SocketAddrV4,
    callee_media: SocketAddrV4,
    payload_type: u8,
    end_us: u64,
) -> Vec<CaptureDatagram> {
    let name = if payload_type == 8 { "PCMA" } else { "PCMU" };
    let sdp = |who: &str, m: SocketAddrV4| {
        format!(
            "v=0\r\no={who} 1 1 IN IP4 {ip}\r\ns=-\r\nc=IN IP4 {ip}\r\nt=0 0\r\nm=audio {port} RTP/AVP {payload_type}\r\na=rtpmap:{payload_type} {name}/8000\r\na=sendrecv\r\n",
            ip = m.ip(),
            port = m.port()
        )
    };
    let from = format!("<sip:customer@{caller_sip}>;tag=c1");
    let to = format!("<sip:support@{callee_sip}>");
    let to_tagged = format!("{to};tag=s1");
    let req = |method: &str, cseq: u32, to: &str, body: Option<String>| {
        let body = body.unwrap_or_default();
        let ct = if body.is_empty() {
            ""
        } else {
            "Content-Type: application/sdp\r\n"
        };
        format!(
            "{method} sip:support@{callee_sip} SIP/2.0\r\nVia: SIP/2.0/UDP {caller_sip};branch=z9hG4bK{cseq}{method}\r\nFrom: {from}\r\nTo: {to}\r\nCall-ID: {call_id}\r\nCSeq: {cseq} {method}\r\nMax-Forwards: 70\r\n{ct}Content-Length: {}\r\n\r\n{body}",
            body.len()
        )
        .into_bytes()
    };
    let resp = |code: &str, cseq: &str, method: &str, body: Option<String>| {
        let body = body.unwrap_or_default();
        let ct = if body.is_empty() {
            ""
        } else {
            "Content-Type: application/sdp\r\n"
        };
        format!(
            "SIP/2.0 {code}\r\nVia: SIP/2.0/UDP {caller_sip};branch=z9hG4bK{cseq}{method}\r\nFrom: {from}\r\nTo: {to_tagged}\r\nCall-ID: {call_id}\r\nCSeq: {cseq} {method}\r\n{ct}Content-Length: {}\r\n\r\n{body}",
            body.len()
        )
        .into_bytes()
    };
    vec![
        (
            0,
            caller_sip,
            callee_sip,
            req("INVITE", 1, &to, Some(sdp("customer", caller_media))),
        ),
        (
            2_000,
            callee_sip,
            caller_sip,
            resp("100 Trying", "1", "INVITE", None),
        ),
        (
            50_000,
            callee_sip,
            caller_sip,
            resp("200 OK", "1", "INVITE", Some(sdp("support", callee_media))),
        ),
        (
            60_000,
            caller_sip,
            callee_sip,
            req("ACK", 1, &to_tagged, None),
        ),
        (
            end_us,
            caller_sip,
            callee_sip,
            req("BYE", 2, &to_tagged, None),
        ),
        (
            end_us + 5_000,
            callee_sip,
            caller_sip,
            resp("200 OK", "2", "BYE", None),
        ),
    ]
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn impairment_counts_are_exact() {
        let samples = vec![0.1f32; 160 * 500];
        let pk = packetise(&samples, 0, 7, 65000, 1);
        assert_eq!(pk.len(), 500);
        let imp = Impairment {
            loss: 0.05,
            reorder: 0.03,
            duplicate: 0.02,
            seed: 3,
        };
        let (out, inj) = impair(pk, &imp, &mut Rng::new(3));
        assert!(
            inj.dropped > 10 && inj.reordered > 5 && inj.duplicated > 3,
            "{inj:?}"
        );
        assert_eq!(inj.sent as usize, out.len());
        assert_eq!(inj.sent, 500 - inj.dropped + inj.duplicated);
        // The receiver's jitter buffer counts exactly what was injected.
        let mut m =
            super::super::jitter::Mixer::new(Default::default(), &[crate::event::Role::Customer]);
        for (t, b) in &out {
            let p = rtp::parse(b).unwrap();
            m.push(0, &p, (*t * 8 / 1000) as i64);
        }
        let s = &m.stats()[0];
        assert_eq!(
            (s.lost, s.reordered, s.duplicates, s.late),
            (inj.dropped, inj.reordered, inj.duplicated, 0)
        );
    }

    #[test]
    fn seeded_and_reproducible() {
        let a: Vec<u64> = {
            let mut r = Rng::new(9);
            (0..4).map(|_| r.next_u64()).collect()
        };
        let mut r = Rng::new(9);
        assert_eq!(a, (0..4).map(|_| r.next_u64()).collect::<Vec<_>>());
    }
}
