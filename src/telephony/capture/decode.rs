//! Pass 2: one call's packets, read from the capture and streamed through
//! the jitter buffer. The audio leaves in chunks of at most about a second
//! plus one capped gap (see [`JitterConfig::max_gap_ms`]), so neither a long
//! capture nor a hostile timestamp makes it hold more.

use std::collections::HashMap;
use std::io::{BufWriter, Read};
use std::path::{Path, PathBuf};
use std::sync::atomic::AtomicBool;
use std::sync::Arc;
use std::time::Duration;

use rtrb::Producer;

use super::{open, Flow, FoundCall};
use crate::capture::{spawn, Capture, CaptureError, CaptureShared, RingWriter, Source, SourceInfo};
use crate::event::RtpLegStats;
use crate::telephony::jitter::{JitterConfig, Mixer, RATE};
use crate::telephony::pcap::{self, Datagram, PcapError, Reader};
use crate::telephony::rtp;

/// Audio is handed on once this many samples (all legs) are waiting.
const CHUNK: usize = 8000;
/// Timeline positions are kept within ± this many samples (about 17,800
/// years at 8 kHz), so no arithmetic on them can overflow.
const MAX_POSITION: i128 = 1 << 52;

/// Turns one call's captured packets into aligned legs.
pub struct CallDecoder {
    call: FoundCall,
    legs: HashMap<Flow, usize>,
    /// Windows of calls listed before this one that share a flow: their
    /// packets are theirs.
    earlier: Vec<(Flow, (i128, i128))>,
    mixer: Mixer,
    seen: Vec<bool>,
    jump: i64,
    /// Added to capture-clock positions after the clock stepped back.
    rebase: i64,
    latest: i64,
    used: u64,
}

impl CallDecoder {
    /// A decoder for `call`; the calls found `earlier` own the packets of
    /// a shared flow within their windows.
    pub fn new(call: &FoundCall, earlier: &[FoundCall], jitter: JitterConfig) -> Self {
        let call = call.clone();
        let legs: HashMap<Flow, usize> = call.flows.iter().copied().collect();
        let earlier = earlier
            .iter()
            .flat_map(|c| {
                c.flows
                    .iter()
                    .filter(|(f, _)| legs.contains_key(f))
                    .map(move |(f, _)| (*f, c.window))
            })
            .collect();
        CallDecoder {
            mixer: Mixer::new(jitter, &call.roles),
            seen: vec![false; call.roles.len()],
            jump: jitter.jump_ms as i64 * RATE as i64 / 1000,
            call,
            legs,
            earlier,
            rebase: 0,
            latest: i64::MIN,
            used: 0,
        }
    }

    /// The call.
    pub fn call(&self) -> &FoundCall {
        &self.call
    }

    /// RTP packets placed so far.
    pub fn used(&self) -> u64 {
        self.used
    }

    /// Take one captured datagram: if it is one of the call's packets, place
    /// it, appending the audio it releases to `out` (interleaved legs).
    pub fn datagram(&mut self, ts_ns: i128, d: &Datagram<'_>, out: &mut Vec<f32>) {
        let flow = (d.src, d.dst);
        let Some(&leg) = self.legs.get(&flow) else {
            return;
        };
        let (lo, hi) = self.call.window;
        let theirs = self
            .earlier
            .iter()
            .any(|(f, w)| *f == flow && ts_ns >= w.0 && ts_ns <= w.1);
        if ts_ns < lo || ts_ns > hi || theirs {
            return;
        }
        let Ok(p) = rtp::parse(d.payload) else {
            self.mixer.malformed(leg);
            return;
        };
        if !self.seen[leg] {
            self.seen[leg] = true;
            self.mixer
                .set_source(leg, format!("{} -> {}", d.src, d.dst));
        }
        self.used += 1;
        let raw = ((ts_ns - self.call.t0_ns) * RATE as i128 / 1_000_000_000)
            .clamp(-MAX_POSITION, MAX_POSITION) as i64;
        let mut arrival = raw + self.rebase;
        if arrival < self.latest.saturating_sub(self.jump) {
            // The capture clock stepped back (after a packet stamped far
            // ahead): carry on from where the timeline is.
            self.rebase += self.latest - arrival;
            arrival = self.latest;
        }
        self.latest = self.latest.max(arrival);
        let w = self.mixer.window();
        self.mixer.drain_to(arrival - w, out);
        self.mixer.push(leg, &p, arrival);
    }

    /// Release what is still buffered.
    pub fn finish(&mut self, out: &mut Vec<f32>) {
        let end = self.mixer.end();
        self.mixer.drain_to(end, out);
    }

    /// Transport counters per leg.
    pub fn stats(&self) -> Vec<RtpLegStats> {
        self.mixer.stats()
    }
}

/// Read the call's packets from a capture, handing its audio to `emit` in
/// chunks (interleaved legs); `emit` returns false to stop early. A read
/// error ends the call quietly (pass 1 reported it).
pub fn decode_call_in<R: Read>(
    mut rd: Reader<R>,
    dec: &mut CallDecoder,
    emit: &mut dyn FnMut(&[f32]) -> bool,
) {
    let (first, last) = dec.call.frames;
    let mut out: Vec<f32> = Vec::with_capacity(2 * CHUNK);
    while let Ok(Some(frame)) = rd.next_frame() {
        let n = rd.packets();
        if n < first {
            continue;
        }
        if n > last {
            break;
        }
        if let Ok(d) = pcap::udp_of(frame.linktype, &frame.data) {
            dec.datagram(frame.ts_ns, &d, &mut out);
        }
        if out.len() >= CHUNK {
            if !emit(&out) {
                return;
            }
            out.clear();
        }
    }
    dec.finish(&mut out);
    if !out.is_empty() {
        emit(&out);
    }
}

/// [`decode_call_in`] on a capture file.
pub fn decode_call(
    path: &Path,
    dec: &mut CallDecoder,
    emit: &mut dyn FnMut(&[f32]) -> bool,
) -> Result<(), PcapError> {
    decode_call_in(open(path)?, dec, emit);
    Ok(())
}

type WavOut = hound::WavWriter<BufWriter<std::fs::File>>;

/// One call of a capture as a pipeline source: decoded while the pipeline
/// reads it (backpressure), optionally also written to a WAV file. Its
/// transport counters go to the call summary.
pub struct PcapCall {
    path: PathBuf,
    dec: CallDecoder,
    wav: Option<PathBuf>,
}

impl PcapCall {
    /// A call of the capture at `path` (see [`CallDecoder::new`]); `wav`:
    /// also write the decoded audio there (8 kHz, 16-bit, one channel per
    /// leg).
    pub fn new(path: &Path, dec: CallDecoder, wav: Option<PathBuf>) -> Self {
        PcapCall {
            path: path.to_path_buf(),
            dec,
            wav,
        }
    }

    fn create_wav(&self) -> Result<Option<WavOut>, CaptureError> {
        let Some(p) = &self.wav else { return Ok(None) };
        let spec = hound::WavSpec {
            channels: self.dec.call.roles.len() as u16,
            sample_rate: RATE,
            bits_per_sample: 16,
            sample_format: hound::SampleFormat::Int,
        };
        hound::WavWriter::create(p, spec)
            .map(Some)
            .map_err(|e| CaptureError::Invalid(format!("cannot create {}: {e}", p.display())))
    }
}

fn write_wav(w: &mut WavOut, samples: &[f32]) -> Result<(), hound::Error> {
    for &v in samples {
        w.write_sample((v * 32768.0).round().clamp(-32768.0, 32767.0) as i16)?;
    }
    Ok(())
}

impl Source for PcapCall {
    fn info(&self) -> SourceInfo {
        SourceInfo {
            rate: RATE,
            channels: self.dec.call.roles.len() as u16,
            duration_s: None,
            live: false,
            label: self.dec.call.call_id.clone(),
        }
    }

    fn start(
        self: Box<Self>,
        ring: Producer<f32>,
        shared: Arc<CaptureShared>,
        stop: Arc<AtomicBool>,
    ) -> Result<Capture, CaptureError> {
        let mut wav = self.create_wav()?;
        let rd = open(&self.path).map_err(|e| CaptureError::Invalid(e.to_string()))?;
        let mut dec = self.dec;
        let legs = dec.call.roles.len();
        let wav_path = self.wav;
        spawn("capture-pcap", move || {
            let mut w = RingWriter::new(ring, shared.clone(), stop, legs, true);
            let mut emit = |chunk: &[f32]| {
                if let Some(f) = wav.as_mut() {
                    if let Err(e) = write_wav(f, chunk) {
                        let p = wav_path.as_deref().unwrap_or(Path::new("?"));
                        shared.fail(format!("cannot write {}: {e}", p.display()));
                        return false;
                    }
                }
                w.write(chunk)
            };
            decode_call_in(rd, &mut dec, &mut emit);
            if let Some(f) = wav {
                if let Err(e) = f.finalize() {
                    shared.fail(format!("cannot write the WAV file: {e}"));
                }
            }
            // The counters go to the summary before the ring is let go.
            if let Ok(mut g) = shared.rtp.lock() {
                *g = Some(dec.stats());
            }
        })
    }
}

/// What a source delivered when drained without scoring.
#[derive(Debug, Clone)]
pub struct Decoded {
    /// Frames (one sample per leg each).
    pub frames: u64,
    /// Frames per second.
    pub rate: u32,
    /// Transport counters, for telephony sources.
    pub rtp: Option<Vec<RtpLegStats>>,
    /// The error that ended the input, if any.
    pub error: Option<String>,
}

/// Run a source to its end without a pipeline, counting what it delivers
/// through the same ring and backpressure as scoring (`pcap --decode-only`).
pub fn drain(source: Box<dyn Source>) -> Result<Decoded, CaptureError> {
    let info = source.info();
    let legs = (info.channels as usize).max(1);
    let (ring, mut rx) = rtrb::RingBuffer::<f32>::new(CHUNK * 4 * legs);
    let shared = Arc::new(CaptureShared::default());
    let capture = source.start(ring, shared.clone(), Arc::new(AtomicBool::new(false)))?;
    let mut samples = 0u64;
    loop {
        let done = rx.is_abandoned();
        let n = rx.slots();
        if n > 0 {
            if let Ok(c) = rx.read_chunk(n) {
                c.commit_all();
            }
            samples += n as u64;
        } else if done {
            break;
        } else {
            std::thread::sleep(Duration::from_millis(1));
        }
    }
    drop(capture);
    Ok(Decoded {
        frames: samples / legs as u64,
        rate: info.rate,
        rtp: shared.rtp.lock().ok().and_then(|mut g| g.take()),
        error: shared.error.lock().ok().and_then(|mut g| g.take()),
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::telephony::capture::{find_calls_in, CaptureOptions};
    use crate::telephony::pcap::Writer;
    use crate::telephony::rtp::{build, RtpPacket};
    use std::net::SocketAddrV4;

    fn capture(packets: &[(u64, u16, u32)]) -> Vec<u8> {
        let (a, b): (SocketAddrV4, SocketAddrV4) = (
            "127.0.0.1:7000".parse().unwrap(),
            "127.0.0.1:6000".parse().unwrap(),
        );
        let mut w = Writer::new(Vec::new()).unwrap();
        for &(t_us, seq, ts) in packets {
            let p = build(&RtpPacket {
                marker: false,
                payload_type: 0,
                seq,
                timestamp: ts,
                ssrc: 5,
                payload: &[0x10; 160],
            });
            w.udp(t_us, a, b, &p).unwrap();
        }
        w.finish().unwrap()
    }

    fn decode(bytes: &[u8]) -> (u64, Vec<RtpLegStats>, usize) {
        let opts = CaptureOptions {
            min_packets: 1,
            ..Default::default()
        };
        let (calls, _) = find_calls_in(Reader::new(bytes).unwrap(), &opts).unwrap();
        let mut dec = CallDecoder::new(&calls[0], &[], opts.jitter);
        let (mut n, mut biggest) = (0u64, 0usize);
        decode_call_in(Reader::new(bytes).unwrap(), &mut dec, &mut |c| {
            n += c.len() as u64;
            biggest = biggest.max(c.len());
            true
        });
        (n, dec.stats(), biggest)
    }

    /// Defect 1: a packet stamped a day late (or at the end of the pcap
    /// clock) made the decoder zero-fill the whole gap in one allocation.
    #[test]
    fn regression_day_late_packet_in_a_capture() {
        let t0 = 1_700_000_000_000_000u64;
        let mut pk: Vec<(u64, u16, u32)> = (0..100u16)
            .map(|i| (t0 + 20_000 * i as u64, i, 160 * i as u32))
            .collect();
        // One packet a day late, then the call goes on; then one at the end of time.
        pk.push((t0 + 86_400_000_000, 100, 16_000));
        pk.extend((101..200u16).map(|i| (t0 + 20_000 * i as u64, i, 160 * i as u32)));
        pk.push((u32::MAX as u64 * 1_000_000, 200, 32_000));
        let (n, stats, biggest) = decode(&capture(&pk));
        let secs = n as f64 / 8000.0;
        // 4 s of audio plus two capped gaps of 30 s at most.
        assert!((4.0..=65.0).contains(&secs), "{secs} s decoded");
        assert!(biggest <= 8000 * 95, "a chunk of {biggest} samples");
        assert_eq!(stats[0].gaps_capped, 2, "{stats:?}");
        assert_eq!(stats[0].packets, 201);
        assert_eq!(stats[0].late, 0, "the packets after the leap are kept");
    }

    #[test]
    fn streams_in_bounded_chunks_and_counts_every_packet() {
        let t0 = 1_700_000_000_000_000u64;
        let pk: Vec<(u64, u16, u32)> = (0..3000u16)
            .map(|i| (t0 + 20_000 * i as u64, i, 160 * i as u32))
            .collect();
        let (n, stats, biggest) = decode(&capture(&pk));
        assert_eq!(n, 3000 * 160);
        assert!(biggest < 2 * CHUNK, "{biggest}");
        assert_eq!(
            (stats[0].packets, stats[0].lost, stats[0].gaps_capped),
            (3000, 0, 0)
        );
    }
}
