//! What the stages count while a call runs: queue high-water marks, the
//! audio held in the pipeline, skipped work and the time every stage spent,
//! shared by the stage threads through atomics.

use std::sync::atomic::{AtomicI64, AtomicU32, AtomicU64, AtomicUsize, Ordering};
use std::time::Instant;

use crossbeam_channel::Sender;

use crate::diarize::Relabel;
use crate::event::WorkMs;

/// Audio held in the pipeline, in microseconds of audio, and its peak.
#[derive(Default)]
pub(crate) struct Gauge {
    now: AtomicI64,
    peak: AtomicI64,
}

impl Gauge {
    /// `us` microseconds of audio entered.
    pub fn add(&self, us: i64) {
        let v = self.now.fetch_add(us, Ordering::Relaxed) + us;
        self.peak.fetch_max(v, Ordering::Relaxed);
    }
    /// `us` microseconds of audio left.
    pub fn sub(&self, us: i64) {
        self.now.fetch_sub(us, Ordering::Relaxed);
    }
    /// The most audio held at once, seconds.
    pub fn peak_s(&self) -> f64 {
        self.peak.load(Ordering::Relaxed) as f64 / 1e6
    }
}

/// Microseconds of audio in `n` samples at `rate`.
pub(crate) fn samples_us(n: usize, rate: u32) -> i64 {
    (n as f64 * 1e6 / rate as f64) as i64
}

/// Milliseconds since `t`.
pub(crate) fn elapsed_ms(t: Instant) -> f32 {
    t.elapsed().as_secs_f32() * 1000.0
}

/// Time spent per kind of work, microseconds.
#[derive(Default)]
pub(crate) struct Work {
    pub resample: AtomicU64,
    pub vad: AtomicU64,
    pub diarize: AtomicU64,
    pub asr_final: AtomicU64,
    pub asr_partial: AtomicU64,
    pub asr_speculative: AtomicU64,
    pub asr_speculative_used: AtomicU64,
    pub asr_empty: AtomicU64,
    pub prosody: AtomicU64,
    pub sentiment: AtomicU64,
    pub sentiment_partial: AtomicU64,
}

impl Work {
    /// Add `ms` milliseconds to `slot`.
    pub fn add(slot: &AtomicU64, ms: f32) {
        slot.fetch_add((ms.max(0.0) * 1000.0) as u64, Ordering::Relaxed);
    }

    /// The totals in milliseconds.
    pub fn report(&self) -> WorkMs {
        let ms = |a: &AtomicU64| round1(a.load(Ordering::Relaxed) as f32 / 1000.0);
        let spec = ms(&self.asr_speculative);
        let unused = round1((spec - ms(&self.asr_speculative_used)).max(0.0));
        let asr = round1(ms(&self.asr_final) + ms(&self.asr_partial) + spec);
        let (resample, vad, diarize, prosody, sentiment, partial) = (
            ms(&self.resample),
            ms(&self.vad),
            ms(&self.diarize),
            ms(&self.prosody),
            ms(&self.sentiment),
            ms(&self.sentiment_partial),
        );
        WorkMs {
            resample,
            vad,
            diarize,
            asr,
            asr_final: ms(&self.asr_final),
            asr_partial: ms(&self.asr_partial),
            asr_speculative: spec,
            asr_speculative_unused: unused,
            asr_empty: ms(&self.asr_empty),
            prosody,
            sentiment,
            sentiment_partial: partial,
            total: round1(resample + vad + diarize + asr + prosody + sentiment + partial),
        }
    }
}

/// High-water marks and counters shared by the stages.
#[derive(Default)]
pub(crate) struct Counters {
    pub ring_peak: AtomicUsize,
    pub chunks_peak: AtomicUsize,
    pub finals_peak: AtomicUsize,
    pub partials_peak: AtomicUsize,
    pub events_peak: AtomicUsize,
    pub partials_skipped: AtomicU32,
    pub speculative_hits: AtomicU32,
    pub asr_retries: AtomicU32,
    pub empty_turns: AtomicU32,
    /// Speech live diarisation gave to another speaker after its turn went
    /// out: (leg, stretch), merged, at most [`MAX_RELABELS`] kept.
    pub relabels: std::sync::Mutex<Vec<(u8, Relabel)>>,
    /// Frames (10 ms) relabelled in all, kept or not.
    pub relabelled_frames: AtomicUsize,
    pub work: Work,
}

/// Relabelled stretches kept for the summary (a call that keeps changing
/// its mind is reported by its first stretches and the total).
pub(crate) const MAX_RELABELS: usize = 64;

impl Counters {
    /// Note stretches of leg `leg` that live diarisation gave to another
    /// speaker after they went out; a stretch that continues the previous
    /// one with the same change is merged into it.
    pub fn relabelled(&self, leg: u8, relabels: &[Relabel]) {
        if relabels.is_empty() {
            return;
        }
        let frames: usize = relabels.iter().map(|r| r.end - r.start).sum();
        self.relabelled_frames.fetch_add(frames, Ordering::Relaxed);
        let mut kept = self.relabels.lock().unwrap_or_else(|e| e.into_inner());
        for r in relabels {
            let full = kept.len() >= MAX_RELABELS;
            match kept.last_mut() {
                Some((l, last))
                    if *l == leg
                        && last.from == r.from
                        && last.to == r.to
                        && r.start <= last.end + 1 =>
                {
                    last.end = last.end.max(r.end);
                }
                _ if !full => kept.push((leg, *r)),
                _ => {}
            }
        }
    }

    /// Count one skipped partial.
    pub fn skip_partial(&self) {
        self.partials_skipped.fetch_add(1, Ordering::Relaxed);
    }
}

/// Note the length of `tx`'s queue in `mark` if it is the longest seen.
pub(crate) fn high_water<T>(mark: &AtomicUsize, tx: &Sender<T>) {
    mark.fetch_max(tx.len(), Ordering::Relaxed);
}

/// What the stages share while a call runs.
#[derive(Default)]
pub(crate) struct Shared {
    pub gauge: Gauge,
    pub counters: Counters,
    /// Offline: the stages' model work takes turns with the recogniser's
    /// decodes ([`crate::asr::whisper::exclusive`]) instead of running
    /// beside them.
    pub serial: bool,
}

impl Shared {
    /// Hold the cores for a burst of model work when the stages take turns.
    pub fn exclusive(&self) -> Option<std::sync::MutexGuard<'static, ()>> {
        self.serial.then(crate::asr::whisper::exclusive)
    }
}

pub(crate) fn round1(v: f32) -> f32 {
    (v * 10.0).round() / 10.0
}
pub(crate) fn round3(v: f64) -> f64 {
    (v * 1000.0).round() / 1000.0
}
pub(crate) fn round3f(v: f32) -> f32 {
    (v * 1000.0).round() / 1000.0
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn work_report_splits_speculative_time_and_sums_the_total() {
        let w = Work::default();
        Work::add(&w.resample, 1.0);
        Work::add(&w.vad, 2.0);
        Work::add(&w.asr_final, 10.0);
        Work::add(&w.asr_partial, 5.0);
        Work::add(&w.asr_speculative, 8.0);
        Work::add(&w.asr_speculative_used, 3.0);
        Work::add(&w.prosody, 0.5);
        Work::add(&w.sentiment, 4.0);
        Work::add(&w.sentiment_partial, 1.5);
        let r = w.report();
        assert_eq!(r.asr, 23.0);
        assert_eq!(r.asr_speculative_unused, 5.0);
        assert_eq!(r.total, 32.0);
    }

    fn relabel(start: usize, end: usize, from: usize, to: usize) -> Relabel {
        Relabel {
            start,
            end,
            from,
            to,
        }
    }

    #[test]
    fn relabels_merge_when_they_continue_and_stay_bounded() {
        let c = Counters::default();
        c.relabelled(0, &[relabel(10, 20, 0, 1), relabel(21, 30, 0, 1)]);
        c.relabelled(0, &[relabel(25, 40, 0, 1), relabel(50, 60, 1, 0)]);
        c.relabelled(1, &[relabel(60, 70, 1, 0)]);
        let kept = c.relabels.lock().unwrap().clone();
        assert_eq!(
            kept,
            vec![
                (0, relabel(10, 40, 0, 1)),
                (0, relabel(50, 60, 1, 0)),
                (1, relabel(60, 70, 1, 0))
            ]
        );
        assert_eq!(
            c.relabelled_frames.load(Ordering::Relaxed),
            10 + 9 + 15 + 10 + 10
        );
        for i in 0..200 {
            c.relabelled(
                0,
                &[relabel(1000 + i * 10, 1005 + i * 10, i % 2, 1 - i % 2)],
            );
        }
        assert_eq!(c.relabels.lock().unwrap().len(), MAX_RELABELS);
    }

    #[test]
    fn gauge_keeps_the_peak() {
        let g = Gauge::default();
        g.add(2_000_000);
        g.add(1_000_000);
        g.sub(2_500_000);
        g.add(100_000);
        assert_eq!(g.peak_s(), 3.0);
    }
}
