//! A live telephony call as a pipeline source: RTP datagrams in (from the
//! network tasks, over a bounded channel), aligned legs out into the
//! capture ring, released every 20 ms behind the jitter window.

use std::net::SocketAddr;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use crossbeam_channel::{Receiver, RecvTimeoutError};
use rtrb::Producer;

use super::jitter::{JitterConfig, Mixer, RATE};
use super::rtp;
use crate::capture::{Capture, CaptureError, CaptureShared, RingWriter, Source, SourceInfo};
use crate::event::Role;

/// One received datagram for a call.
#[derive(Debug, Clone)]
pub struct Packet {
    /// Which leg it belongs to.
    pub leg: usize,
    /// The datagram.
    pub data: Vec<u8>,
    /// When it arrived.
    pub at: Instant,
    /// Sender and receiver.
    pub from: SocketAddr,
    /// Local address it arrived on.
    pub to: SocketAddr,
}

/// Capacity of a call's packet queue (about 10 s of two legs).
pub const PACKET_QUEUE: usize = 1024;

/// A call's RTP legs as a live source. The call ends when every sender of
/// the packet channel is gone (BYE, idle timeout) or the stop flag is set;
/// then the buffered audio is released and the transport counters are
/// handed to the pipeline's summary.
pub struct RtpSource {
    rx: Receiver<Packet>,
    roles: Vec<Role>,
    jitter: JitterConfig,
    t0: Instant,
    label: String,
}

impl RtpSource {
    /// A source for legs with `roles`; timeline zero is `t0`.
    pub fn new(
        rx: Receiver<Packet>,
        roles: Vec<Role>,
        jitter: JitterConfig,
        t0: Instant,
        label: String,
    ) -> Self {
        RtpSource {
            rx,
            roles,
            jitter,
            t0,
            label,
        }
    }
}

const TICK: Duration = Duration::from_millis(20);

impl Source for RtpSource {
    fn info(&self) -> SourceInfo {
        SourceInfo {
            rate: RATE,
            channels: self.roles.len() as u16,
            duration_s: None,
            live: true,
            label: self.label.clone(),
        }
    }

    fn start(
        self: Box<Self>,
        ring: Producer<f32>,
        shared: Arc<CaptureShared>,
        stop: Arc<AtomicBool>,
    ) -> Result<Capture, CaptureError> {
        let legs = self.roles.len();
        let this = *self;
        crate::capture::spawn("capture-rtp", move || {
            let mut mixer = Mixer::new(this.jitter, &this.roles);
            let mut w = RingWriter::new(ring, shared.clone(), stop.clone(), legs, false);
            let pos_of = |t: Instant| {
                (t.saturating_duration_since(this.t0).as_secs_f64() * RATE as f64) as i64
            };
            let mut out: Vec<f32> = Vec::with_capacity(2 * 160 * legs);
            let mut next_tick = Instant::now() + TICK;
            let mut seen = vec![false; legs];
            loop {
                let wait = next_tick.saturating_duration_since(Instant::now());
                match this.rx.recv_timeout(wait) {
                    Ok(p) => {
                        if p.leg < legs && !seen[p.leg] {
                            seen[p.leg] = true;
                            mixer.set_source(p.leg, format!("{} -> {}", p.from, p.to));
                        }
                        match rtp::parse(&p.data) {
                            Ok(pkt) => mixer.push(p.leg, &pkt, pos_of(p.at)),
                            Err(_) => mixer.malformed(p.leg),
                        }
                    }
                    Err(RecvTimeoutError::Timeout) => {}
                    Err(RecvTimeoutError::Disconnected) => break,
                }
                let now = Instant::now();
                if now >= next_tick {
                    mixer.drain_to(pos_of(now) - mixer.window(), &mut out);
                    next_tick += TICK;
                    if next_tick < now {
                        next_tick = now + TICK;
                    }
                    if !out.is_empty() {
                        let ok = w.write(&out);
                        out.clear();
                        if !ok {
                            break;
                        }
                    }
                }
                if stop.load(Ordering::Relaxed) {
                    break;
                }
            }
            // Release what is buffered, then report the counters before the
            // ring is let go (the pipeline reads them after it drains).
            let end = mixer.end();
            mixer.drain_to(end, &mut out);
            if !out.is_empty() {
                w.write(&out);
            }
            if let Ok(mut g) = shared.rtp.lock() {
                *g = Some(mixer.stats());
            }
        })
    }
}
