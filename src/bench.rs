//! Measurement harnesses behind `callpulse bench`: offline real-time factor
//! and where the time goes, live final-turn latency, and concurrent-call
//! capacity; plus the statistics they share (percentiles, trend slope,
//! process RSS and CPU time). The CLI only prints what these return.
//!
//! Latency percentiles are given over **all** final turns; the figure over
//! turns up to a length bound (long turns wait for their whole audio before
//! decoding starts) is reported beside it and labelled as such. Work per
//! stage comes from the summary's `work_ms`, which counts every decode
//! (partial, speculative used or not, empty turns) and the resampling.

use std::collections::HashMap;
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use serde::Serialize;

use crate::capture::PacedWav;
use crate::event::{Event, SummaryEvent, WorkMs};
use crate::pipeline::{Engine, EngineError, RunOptions};

/// The value at percentile `p` (0-100) of `sorted` (nearest rank).
pub fn percentile(sorted: &[f64], p: f64) -> Option<f64> {
    if sorted.is_empty() {
        return None;
    }
    let i = ((p / 100.0) * (sorted.len() - 1) as f64).round() as usize;
    Some(sorted[i.min(sorted.len() - 1)])
}

/// Least-squares slope of y over x (None under three points or no spread).
pub fn slope(xy: &[(f64, f64)]) -> Option<f64> {
    if xy.len() < 3 {
        return None;
    }
    let n = xy.len() as f64;
    let mx = xy.iter().map(|p| p.0).sum::<f64>() / n;
    let my = xy.iter().map(|p| p.1).sum::<f64>() / n;
    let sxx: f64 = xy.iter().map(|p| (p.0 - mx).powi(2)).sum();
    let sxy: f64 = xy.iter().map(|p| (p.0 - mx) * (p.1 - my)).sum();
    (sxx > 0.0).then(|| sxy / sxx)
}

/// Resident set size of this process, MB (Linux).
pub fn rss_mb() -> Option<f64> {
    let s = std::fs::read_to_string("/proc/self/status").ok()?;
    let line = s.lines().find(|l| l.starts_with("VmRSS:"))?;
    let kb: f64 = line.split_whitespace().nth(1)?.parse().ok()?;
    Some(kb / 1024.0)
}

/// Process CPU seconds (user + system) so far (Linux).
pub fn cpu_seconds() -> Option<f64> {
    let s = std::fs::read_to_string("/proc/self/stat").ok()?;
    // Fields after the command name (which may contain spaces).
    let rest = &s[s.rfind(')')? + 2..];
    let f: Vec<&str> = rest.split_whitespace().collect();
    let ticks = f.get(11)?.parse::<f64>().ok()? + f.get(12)?.parse::<f64>().ok()?;
    Some(ticks / 100.0)
}

fn r1(v: Option<f64>) -> Option<f64> {
    v.map(|x| (x * 10.0).round() / 10.0)
}
fn r3(v: f64) -> f64 {
    (v * 1000.0).round() / 1000.0
}

/// Percentiles of a set of latencies, ms.
#[derive(Debug, Clone, Default, Serialize, PartialEq)]
pub struct Percentiles {
    /// How many values.
    pub n: usize,
    /// Median.
    pub p50: Option<f64>,
    /// 95th percentile.
    pub p95: Option<f64>,
    /// 99th percentile.
    pub p99: Option<f64>,
    /// Largest.
    pub max: Option<f64>,
}

impl Percentiles {
    /// Of `values` (any order).
    pub fn of(values: impl IntoIterator<Item = f64>) -> Self {
        let mut v: Vec<f64> = values.into_iter().filter(|x| x.is_finite()).collect();
        v.sort_by(f64::total_cmp);
        Percentiles {
            n: v.len(),
            p50: r1(percentile(&v, 50.0)),
            p95: r1(percentile(&v, 95.0)),
            p99: r1(percentile(&v, 99.0)),
            max: r1(v.last().copied()),
        }
    }
}

/// One final turn as the latency statistics see it.
#[derive(Debug, Clone, Copy)]
pub struct FinalTurn {
    /// Audio time of the turn's end, s.
    pub end_s: f64,
    /// Turn length, s.
    pub length_s: f64,
    /// Latency from the end of speech to emission, ms.
    pub latency_ms: f64,
    /// Served by a speculative decode.
    pub speculative: bool,
}

/// Final-turn latency: over all turns, and over turns up to a length.
#[derive(Debug, Clone, Default, Serialize, PartialEq)]
pub struct LatencyReport {
    /// Every final turn.
    pub all_turns: Percentiles,
    /// Only turns up to `max_turn_s` long (labelled: a filtered figure).
    pub turns_up_to_max_turn_s: Percentiles,
    /// The length bound of the filtered figure, s.
    pub max_turn_s: f64,
    /// Share of final turns served by a speculative decode.
    pub speculative_share: f64,
}

impl LatencyReport {
    /// From the final turns of one or more calls.
    pub fn of(turns: &[FinalTurn], max_turn_s: f64) -> Self {
        LatencyReport {
            all_turns: Percentiles::of(turns.iter().map(|t| t.latency_ms)),
            turns_up_to_max_turn_s: Percentiles::of(
                turns
                    .iter()
                    .filter(|t| t.length_s <= max_turn_s)
                    .map(|t| t.latency_ms),
            ),
            max_turn_s,
            speculative_share: r3(
                turns.iter().filter(|t| t.speculative).count() as f64 / turns.len().max(1) as f64
            ),
        }
    }
}

/// Sum of several calls' work, ms.
pub fn add_work(a: &mut WorkMs, b: &WorkMs) {
    a.resample += b.resample;
    a.vad += b.vad;
    a.diarize += b.diarize;
    a.asr += b.asr;
    a.asr_final += b.asr_final;
    a.asr_partial += b.asr_partial;
    a.asr_speculative += b.asr_speculative;
    a.asr_speculative_unused += b.asr_speculative_unused;
    a.asr_empty += b.asr_empty;
    a.prosody += b.prosody;
    a.sentiment += b.sentiment;
    a.sentiment_partial += b.sentiment_partial;
    a.total += b.total;
}

/// Work per second of audio, ms.
pub fn work_per_audio_s(w: &WorkMs, audio_s: f64) -> WorkMs {
    let k = 1.0 / audio_s.max(1e-9) as f32;
    let r = |v: f32| (v * k * 1000.0).round() / 1000.0;
    WorkMs {
        resample: r(w.resample),
        vad: r(w.vad),
        diarize: r(w.diarize),
        asr: r(w.asr),
        asr_final: r(w.asr_final),
        asr_partial: r(w.asr_partial),
        asr_speculative: r(w.asr_speculative),
        asr_speculative_unused: r(w.asr_speculative_unused),
        asr_empty: r(w.asr_empty),
        prosody: r(w.prosody),
        sentiment: r(w.sentiment),
        sentiment_partial: r(w.sentiment_partial),
        total: r(w.total),
    }
}

/// RSS sampled every `every` on a thread of its own.
pub struct RssSampler {
    done: Arc<AtomicBool>,
    thread: std::thread::JoinHandle<Vec<(f64, f64)>>,
}

impl RssSampler {
    /// Start sampling.
    pub fn start(every: Duration) -> Self {
        let done = Arc::new(AtomicBool::new(false));
        let d = done.clone();
        let thread = std::thread::spawn(move || {
            let mut v = Vec::new();
            let t0 = Instant::now();
            while !d.load(Ordering::Relaxed) {
                if let Some(r) = rss_mb() {
                    v.push((t0.elapsed().as_secs_f64(), r));
                }
                std::thread::sleep(every);
            }
            v
        });
        RssSampler { done, thread }
    }

    /// Stop and summarise.
    pub fn finish(self) -> MemoryReport {
        self.done.store(true, Ordering::Relaxed);
        let rss = self.thread.join().unwrap_or_default();
        let round = |x: f64| (x * 10.0).round() / 10.0;
        MemoryReport {
            first_mb: rss.first().map(|r| round(r.1)),
            peak_mb: rss.iter().map(|r| r.1).reduce(f64::max).map(round),
            last_mb: rss.last().map(|r| round(r.1)),
            samples: rss.len(),
            by_tenth_mb: (1..=10)
                .filter_map(|k| {
                    rss.get((rss.len() * k / 10).saturating_sub(1))
                        .map(|r| round(r.1))
                })
                .collect(),
        }
    }
}

/// Process memory over a run.
#[derive(Debug, Clone, Default, Serialize, PartialEq)]
pub struct MemoryReport {
    /// First sample, MB.
    pub first_mb: Option<f64>,
    /// Largest sample, MB.
    pub peak_mb: Option<f64>,
    /// Last sample, MB.
    pub last_mb: Option<f64>,
    /// Samples taken.
    pub samples: usize,
    /// RSS at each tenth of the run: a plateau means bounded memory.
    pub by_tenth_mb: Vec<f64>,
}

/// `bench score`: offline runs of one file.
#[derive(Debug, Clone, Serialize)]
pub struct ScoreReport {
    /// The file.
    pub file: PathBuf,
    /// Timed runs (after one warm-up).
    pub runs: usize,
    /// Audio length, s.
    pub audio_s: f64,
    /// Median wall time of a run (model load excluded), s.
    pub wall_s: f64,
    /// wall_s / audio_s.
    pub rtf: f64,
    /// Final turns.
    pub turns: u32,
    /// Work per stage of the median run, ms (every decode and the resampling).
    pub work_ms: WorkMs,
    /// Share of the wall time not spent in the recogniser (the stages
    /// overlap on several cores, so shares can add up to more than 1).
    pub non_asr_share_of_wall: f64,
}

/// Score `file` once to warm up, then `runs` times; report the median run.
pub fn score(engine: &Engine, file: &Path, runs: u32) -> Result<ScoreReport, EngineError> {
    let mut rows: Vec<(f64, SummaryEvent)> = Vec::new();
    for run in 0..=runs.max(1) {
        let t = Instant::now();
        let out = engine.score_file(file, "bench", &mut |_| {}, &|_, _| {})?;
        if run > 0 {
            rows.push((t.elapsed().as_secs_f64(), out.summary));
        }
    }
    rows.sort_by(|a, b| a.0.total_cmp(&b.0));
    let (wall, s) = rows[rows.len() / 2].clone();
    let w = s.stats.work_ms.clone();
    let non_asr = (w.total - w.asr) as f64 / 1000.0;
    Ok(ScoreReport {
        file: file.to_path_buf(),
        runs: rows.len(),
        audio_s: r3(s.duration),
        wall_s: r3(wall),
        rtf: r3(wall / s.duration.max(1e-9)),
        turns: s.turns,
        work_ms: w,
        non_asr_share_of_wall: r3(non_asr / wall.max(1e-9)),
    })
}

/// What one live call's run produced, for the statistics.
#[derive(Debug, Default)]
pub struct LiveCall {
    /// Final turns.
    pub finals: Vec<FinalTurn>,
    /// Wall-clock gaps between successive partials of the same turn, ms.
    pub partial_gaps_ms: Vec<f64>,
    /// Partial latencies, ms.
    pub partial_latency_ms: Vec<f64>,
    /// The summary.
    pub summary: Option<SummaryEvent>,
}

/// Run one live call and collect its latencies; `on_turn` sees each final turn.
pub fn live_call(
    engine: &Engine,
    source: PacedWav,
    opts: &RunOptions,
    on_turn: &mut dyn FnMut(&FinalTurn, usize),
) -> Result<LiveCall, EngineError> {
    let mut c = LiveCall::default();
    let mut partial_times: HashMap<(u8, u32), Instant> = HashMap::new();
    let out = engine.run(
        Box::new(source),
        opts,
        &mut |e| match e {
            Event::Turn(t) => {
                let f = FinalTurn {
                    end_s: t.end,
                    length_s: t.end - t.start,
                    latency_ms: t.timings.latency_ms.unwrap_or(0.0) as f64,
                    speculative: t.timings.speculative,
                };
                c.finals.push(f);
                on_turn(&f, c.finals.len());
            }
            Event::Partial(p) => {
                let now = Instant::now();
                if let Some(prev) = partial_times.insert((p.leg, p.seq), now) {
                    c.partial_gaps_ms.push((now - prev).as_secs_f64() * 1000.0);
                }
                c.partial_latency_ms
                    .push(p.timings.latency_ms.unwrap_or(0.0) as f64);
            }
            _ => {}
        },
        &|_, _| {},
    )?;
    c.summary = Some(out.summary);
    Ok(c)
}

/// How final-turn latency moves over a long call.
#[derive(Debug, Clone, Default, Serialize, PartialEq)]
pub struct Trend {
    /// Least-squares slope, ms of latency per minute of call.
    pub latency_slope_ms_per_min: Option<f64>,
    /// Median latency over the first fifth of the turns, ms.
    pub median_first_fifth_ms: Option<f64>,
    /// Median latency over the last fifth, ms.
    pub median_last_fifth_ms: Option<f64>,
}

impl Trend {
    /// Of the final turns in call order.
    pub fn of(finals: &[FinalTurn]) -> Self {
        let xy: Vec<(f64, f64)> = finals
            .iter()
            .map(|f| (f.end_s / 60.0, f.latency_ms))
            .collect();
        let fifth = (finals.len() / 5).max(1).min(finals.len());
        let med = |v: &[FinalTurn]| Percentiles::of(v.iter().map(|f| f.latency_ms)).p50;
        Trend {
            latency_slope_ms_per_min: r1(slope(&xy)),
            median_first_fifth_ms: med(&finals[..fifth]),
            median_last_fifth_ms: med(&finals[finals.len() - fifth..]),
        }
    }
}

/// One step of `bench capacity`: `calls` concurrent live calls.
#[derive(Debug, Clone, Serialize)]
pub struct CapacityStep {
    /// Concurrent calls.
    pub calls: usize,
    /// Final turns over all calls.
    pub turns: usize,
    /// Final-turn latency over all calls.
    pub latency_ms: LatencyReport,
    /// Audio frames dropped by live capture.
    pub frames_dropped: u64,
    /// Partials emitted.
    pub partials_emitted: u32,
    /// Partials skipped.
    pub partials_skipped: u32,
    /// Wall time of the step, s.
    pub wall_s: f64,
    /// Process CPU time of the step, s.
    pub cpu_s: Option<f64>,
    /// CPU time / (wall × cores).
    pub cpu_utilisation: Option<f64>,
    /// Work per second of audio, ms, summed over the calls.
    pub work_ms_per_audio_s: WorkMs,
    /// p95 over all turns within the limit, nothing dropped.
    pub sustained: bool,
}

/// Run `calls` concurrent paced replays of `file` (each `per_call_s` long,
/// staggered) and judge whether p95 over all final turns stays within
/// `p95_limit_ms` with nothing dropped.
pub fn capacity_step(
    engine: &Engine,
    file: &Path,
    calls: usize,
    per_call_s: f64,
    limits: (f64, f64),
    stop: &Arc<AtomicBool>,
) -> Result<CapacityStep, EngineError> {
    let (p95_limit_ms, max_turn_s) = limits;
    let one = crate::audio::wav::WavSource::open(file)?
        .info()
        .duration_s();
    let loops = (per_call_s / one.max(0.1)).ceil() as u32;
    let cores = std::thread::available_parallelism().map_or(1, |n| n.get());
    let cpu0 = cpu_seconds();
    let t0 = Instant::now();
    let results: Vec<Result<LiveCall, EngineError>> = std::thread::scope(|s| {
        let hs: Vec<_> = (0..calls)
            .map(|i| {
                s.spawn(move || -> Result<LiveCall, EngineError> {
                    // Stagger the calls so their turns do not line up.
                    std::thread::sleep(Duration::from_secs_f64(
                        one * i as f64 / calls as f64 / 2.0,
                    ));
                    let src = PacedWav::open(file, 1.0, 20, loops)?;
                    let mut opts =
                        RunOptions::live(&format!("call-{i}"), engine.config(), stop.clone());
                    opts.max_seconds = Some(per_call_s);
                    live_call(engine, src, &opts, &mut |_, _| {})
                })
            })
            .collect();
        hs.into_iter()
            .map(|h| {
                h.join()
                    .unwrap_or_else(|_| Err(EngineError::Internal("call thread panicked".into())))
            })
            .collect()
    });
    let wall = t0.elapsed().as_secs_f64();
    let cpu = cpu0.zip(cpu_seconds()).map(|(a, b)| b - a);
    let mut finals = Vec::new();
    let (mut dropped, mut emitted, mut skipped) = (0u64, 0u32, 0u32);
    let mut work = WorkMs::default();
    for r in results {
        let c = r?;
        finals.extend(c.finals);
        if let Some(sm) = &c.summary {
            let st = &sm.stats;
            dropped += st.frames_dropped;
            emitted += st.partials_emitted;
            skipped += st.partials_skipped;
            add_work(&mut work, &st.work_ms);
        }
    }
    let latency = LatencyReport::of(&finals, max_turn_s);
    let sustained = latency.all_turns.p95.is_some_and(|p| p <= p95_limit_ms) && dropped == 0;
    Ok(CapacityStep {
        calls,
        turns: finals.len(),
        latency_ms: latency,
        frames_dropped: dropped,
        partials_emitted: emitted,
        partials_skipped: skipped,
        wall_s: r3(wall),
        cpu_s: cpu.map(r3),
        cpu_utilisation: cpu.map(|c| r3(c / wall / cores as f64)),
        work_ms_per_audio_s: work_per_audio_s(&work, per_call_s * calls as f64),
        sustained,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn turn(length_s: f64, latency_ms: f64) -> FinalTurn {
        FinalTurn {
            end_s: 0.0,
            length_s,
            latency_ms,
            speculative: false,
        }
    }

    #[test]
    fn percentiles_use_the_nearest_rank() {
        let v: Vec<f64> = (1..=100).map(f64::from).collect();
        assert_eq!(percentile(&v, 50.0), Some(51.0));
        assert_eq!(percentile(&v, 95.0), Some(95.0));
        assert_eq!(percentile(&v, 100.0), Some(100.0));
        assert_eq!(percentile(&[], 50.0), None);
        let p = Percentiles::of([3.0, 1.0, 2.0, f64::NAN]);
        assert_eq!((p.n, p.p50, p.max), (3, Some(2.0), Some(3.0)));
    }

    #[test]
    fn the_filtered_latency_leaves_out_long_turns_and_says_so() {
        // Regression: p95 was over short turns only, which hid the long ones.
        let mut turns: Vec<FinalTurn> = (0..19).map(|_| turn(3.0, 500.0)).collect();
        turns.push(turn(25.0, 9000.0));
        let r = LatencyReport::of(&turns, 15.0);
        assert_eq!(r.all_turns.n, 20);
        assert_eq!(r.all_turns.max, Some(9000.0));
        assert_eq!(r.turns_up_to_max_turn_s.n, 19);
        assert_eq!(r.turns_up_to_max_turn_s.max, Some(500.0));
        assert!(r.all_turns.p99.unwrap() > r.turns_up_to_max_turn_s.p99.unwrap());
    }

    #[test]
    fn slope_and_trend() {
        let xy: Vec<(f64, f64)> = (0..10).map(|i| (i as f64, 2.0 * i as f64 + 1.0)).collect();
        assert!((slope(&xy).unwrap() - 2.0).abs() < 1e-9);
        assert_eq!(slope(&xy[..2]), None);
        let finals: Vec<FinalTurn> = (0..10)
            .map(|i| FinalTurn {
                end_s: 60.0 * i as f64,
                length_s: 2.0,
                latency_ms: 100.0 + 10.0 * i as f64,
                speculative: i % 2 == 0,
            })
            .collect();
        let t = Trend::of(&finals);
        assert_eq!(t.latency_slope_ms_per_min, Some(10.0));
        assert_eq!(t.median_first_fifth_ms, Some(110.0));
        assert_eq!(t.median_last_fifth_ms, Some(190.0));
        assert_eq!(LatencyReport::of(&finals, 15.0).speculative_share, 0.5);
    }

    #[test]
    fn work_adds_up_and_scales_per_audio_second() {
        let w = WorkMs {
            asr: 100.0,
            total: 150.0,
            ..Default::default()
        };
        let mut sum = WorkMs::default();
        add_work(&mut sum, &w);
        add_work(&mut sum, &w);
        assert_eq!((sum.asr, sum.total), (200.0, 300.0));
        let per = work_per_audio_s(&sum, 10.0);
        assert_eq!((per.asr, per.total), (20.0, 30.0));
    }

    #[test]
    fn process_counters_read_on_linux() {
        assert!(rss_mb().is_some_and(|m| m > 0.0));
        assert!(cpu_seconds().is_some());
    }
}
