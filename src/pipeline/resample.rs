//! Stage 1: drain the capture ring, split the interleaved frames into legs
//! and resample each leg to 16 kHz.

use std::sync::atomic::{AtomicBool, Ordering};
use std::time::{Duration, Instant};

use crossbeam_channel::Sender;
use rtrb::Consumer;

use super::messages::Chunk16;
use super::stats::{elapsed_ms, high_water, samples_us, Shared, Work};
use super::{EngineError, CHUNK_FRAMES};
use crate::audio::resample::LegResampler;

/// Why the input ended.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Ended {
    /// The source ran out.
    Eof,
    /// SIGINT/SIGTERM (the stop flag).
    Signal,
    /// `max_seconds` reached.
    Limit,
    /// The next stage went away (an error downstream).
    Error,
}

impl Ended {
    pub fn as_str(self) -> &'static str {
        match self {
            Ended::Eof => "eof",
            Ended::Signal => "signal",
            Ended::Limit => "limit",
            Ended::Error => "error",
        }
    }
}

/// Ring → per-leg 16 kHz chunks.
pub(crate) struct ResampleStage<'a> {
    pub rate: u32,
    pub legs: usize,
    /// Stop after this many frames.
    pub max_frames: Option<u64>,
    pub stop: &'a AtomicBool,
    pub out: Vec<Sender<Chunk16>>,
    pub shared: &'a Shared,
}

impl ResampleStage<'_> {
    fn send(&self, leg: usize, samples: Vec<f32>, seen: Instant) -> bool {
        self.shared.gauge.add(samples_us(samples.len(), 16_000));
        let ok = self.out[leg].send(Chunk16 { samples, seen }).is_ok();
        high_water(&self.shared.counters.chunks_peak, &self.out[leg]);
        ok
    }

    /// How many samples to take from the ring now (whole frames), or why to stop.
    fn next_take(&self, ring: &Consumer<f32>, frames: u64) -> Result<usize, Option<Ended>> {
        let legs = self.legs;
        let abandoned = ring.is_abandoned();
        let avail = ring.slots();
        self.shared
            .counters
            .ring_peak
            .fetch_max(avail / legs, Ordering::Relaxed);
        let mut n = avail.min(CHUNK_FRAMES * legs) / legs * legs;
        if let Some(m) = self.max_frames {
            n = n.min((m.saturating_sub(frames) as usize) * legs);
        }
        if n > 0 {
            return Ok(n);
        }
        if self.max_frames.is_some_and(|m| frames >= m) {
            return Err(Some(Ended::Limit));
        }
        if abandoned {
            return Err(Some(Ended::Eof));
        }
        if self.stop.load(Ordering::Relaxed) {
            return Err(Some(Ended::Signal));
        }
        Err(None)
    }

    /// Run until the input ends; returns why and the frames read per leg.
    pub fn run(
        self,
        mut ring: Consumer<f32>,
        duration_s: Option<f64>,
        progress: &(dyn Fn(f64, Option<f64>) + Sync),
    ) -> Result<(Ended, u64), EngineError> {
        let legs = self.legs;
        let mut rss = (0..legs)
            .map(|_| LegResampler::new(self.rate))
            .collect::<Result<Vec<_>, _>>()?;
        let mut split: Vec<Vec<f32>> = vec![Vec::with_capacity(CHUNK_FRAMES); legs];
        let mut frames: u64 = 0;
        let work = &self.shared.counters.work;
        let ended = loop {
            let n = match self.next_take(&ring, frames) {
                Ok(n) => n,
                Err(Some(why)) => break why,
                Err(None) => {
                    std::thread::sleep(Duration::from_millis(2));
                    continue;
                }
            };
            let seen = Instant::now();
            if let Ok(chunk) = ring.read_chunk(n) {
                let (a, b) = chunk.as_slices();
                split.iter_mut().for_each(Vec::clear);
                for (i, v) in a.iter().chain(b.iter()).enumerate() {
                    split[i % legs].push(*v);
                }
                chunk.commit_all();
            }
            frames += (n / legs) as u64;
            for (leg, rs) in rss.iter_mut().enumerate() {
                let t0 = Instant::now();
                let mut out =
                    Vec::with_capacity(split[leg].len() * 16_000 / self.rate as usize + 64);
                rs.push(&split[leg], &mut out)?;
                Work::add(&work.resample, elapsed_ms(t0));
                if !self.send(leg, out, seen) {
                    return Ok((Ended::Error, frames));
                }
            }
            progress(frames as f64 / self.rate as f64, duration_s);
            if self.stop.load(Ordering::Relaxed) && ring.slots() == 0 {
                break Ended::Signal;
            }
        };
        // Let go of the ring: a live source stops writing.
        drop(ring);
        let seen = Instant::now();
        for (leg, rs) in rss.iter_mut().enumerate() {
            let mut out = Vec::new();
            rs.finish(&mut out)?;
            self.send(leg, out, seen);
        }
        Ok((ended, frames))
    }
}
