use std::path::PathBuf;

use anyhow::Result;
use clap::{Args, ValueEnum};

use callpulse::config::Config;
use callpulse::event::Event;
use callpulse::models::{self, Component};
use callpulse::pipeline::Engine;

use super::ModelArgs;

#[derive(Debug, Clone, Copy, ValueEnum, PartialEq)]
pub enum What {
    /// Offline scoring of a file: real-time factor and time per stage.
    Score,
    /// Live replay at `--speed`: latency of final turns after the end of
    /// speech (p50/p95/p99), partial cadence, latency trend, overload counters.
    Live,
    /// Concurrent live calls (the two-channel FILE replayed at 1x per call,
    /// staggered): 1, 2, 3, ... calls until final-turn p95 latency passes
    /// `--p95-ms`; where the time goes at each step.
    Capacity,
}

#[derive(Args, Debug)]
pub struct BenchArgs {
    /// What to measure.
    #[arg(value_enum)]
    what: What,
    /// WAV file (one or two channels).
    file: PathBuf,
    /// Timed runs (after one warm-up run). [score]
    #[arg(long, default_value_t = 3)]
    runs: u32,
    /// Replay speed (1 = real time). [live]
    #[arg(long, default_value_t = 1.0)]
    speed: f64,
    /// Loop the file until this many minutes of audio have played. [live]
    #[arg(long, value_name = "MIN")]
    minutes: Option<f64>,
    /// Latency percentiles count turns up to this long, seconds. [live]
    #[arg(long, default_value_t = 15.0)]
    max_turn_s: f64,
    /// Capture buffer, ms. [live]
    #[arg(long, default_value_t = 20)]
    buffer_ms: u32,
    /// Minutes of audio per call in each step. [capacity]
    #[arg(long, default_value_t = 2.0, value_name = "MIN")]
    step_minutes: f64,
    /// Most concurrent calls to try. [capacity]
    #[arg(long, default_value_t = 8)]
    max_calls: usize,
    /// A step is sustained while final-turn p95 latency stays within this. [capacity]
    #[arg(long, default_value_t = 2000.0, value_name = "MS")]
    p95_ms: f64,
    /// Partial results every N ms of a turn (0 = none) during the capacity steps. [capacity; config: live.partial_interval_ms]
    #[arg(long, value_name = "MS")]
    partial_interval_ms: Option<u32>,
    /// Print JSON instead of a table.
    #[arg(long)]
    json: bool,
    #[command(flatten)]
    models: ModelArgs,
}

pub fn run(mut cfg: Config, a: BenchArgs) -> Result<i32> {
    a.models.apply(&mut cfg);
    if a.what == What::Live {
        return live(cfg, a);
    }
    if a.what == What::Capacity {
        return capacity(cfg, a);
    }
    callpulse::audio::wav::WavSource::open(&a.file)?;
    let paths = models::ensure(&cfg, &Component::for_scoring(&cfg), false)?;
    let t_load = std::time::Instant::now();
    let engine = Engine::load(&cfg, &paths)?;
    let load_s = t_load.elapsed().as_secs_f64();
    let mut rows = Vec::new();
    for run in 0..=a.runs {
        let t = std::time::Instant::now();
        let mut turns = 0;
        let out = engine.score_file(
            &a.file,
            "bench",
            &mut |e| {
                if matches!(e, Event::Turn(_)) {
                    turns += 1;
                }
            },
            &|_, _| {},
        )?;
        let wall = t.elapsed().as_secs_f64();
        if run == 0 {
            continue;
        }
        let st = &out.summary.stats.stage_ms;
        rows.push((out.summary.duration, wall, turns, st.clone()));
    }
    let n = rows.len().max(1) as f64;
    let audio = rows.first().map(|r| r.0).unwrap_or(0.0);
    let wall = rows.iter().map(|r| r.1).sum::<f64>() / n;
    let mean = |f: &dyn Fn(&callpulse::event::StageMs) -> f32| {
        rows.iter().map(|r| f(&r.3) as f64).sum::<f64>() / n / 1000.0
    };
    let frontend = mean(&|s| s.frontend);
    let asr = mean(&|s| s.asr);
    let prosody = mean(&|s| s.prosody);
    let sentiment = mean(&|s| s.sentiment);
    let non_asr = frontend + prosody + sentiment;
    let model = cfg
        .models
        .whisper_model
        .as_ref()
        .map(|p| p.display().to_string())
        .unwrap_or_else(|| format!("{:?}", cfg.models.asr));
    let threads = std::thread::available_parallelism()
        .map(|n| n.get())
        .unwrap_or(1);
    let report = serde_json::json!({
        "file": a.file,
        "model": model,
        "device": engine.devices(),
        "cpu_threads": threads,
        "runs": rows.len(),
        "model_load_s": round3(load_s),
        "audio_s": round3(audio),
        "wall_s": round3(wall),
        "rtf": round3(wall / audio.max(1e-9)),
        "turns": rows.first().map(|r| r.2).unwrap_or(0),
        "stage_s": {"frontend": round3(frontend), "asr": round3(asr), "prosody": round3(prosody), "sentiment": round3(sentiment)},
        "non_asr_share_of_wall": round3(non_asr / wall.max(1e-9)),
    });
    if a.json {
        println!("{}", serde_json::to_string_pretty(&report)?);
    } else {
        println!("file          {}", a.file.display());
        let d = engine.devices();
        println!(
            "model         {model} ({threads} CPU threads; asr on {}, encoder on {}, vad on {})",
            d.asr, d.encoder, d.vad
        );
        println!("runs          {} (+1 warm-up)", rows.len());
        println!("audio         {audio:.2} s");
        println!("wall          {wall:.3} s");
        println!("RTF           {:.3}", wall / audio.max(1e-9));
        println!("stage time    frontend {frontend:.3} s | asr {asr:.3} s | prosody {prosody:.3} s | sentiment {sentiment:.3} s");
        println!(
            "non-ASR share {:.1}% of wall",
            100.0 * non_asr / wall.max(1e-9)
        );
    }
    Ok(0)
}

/// Resident set size of this process, MB (Linux).
fn rss_mb() -> Option<f64> {
    let s = std::fs::read_to_string("/proc/self/status").ok()?;
    let line = s.lines().find(|l| l.starts_with("VmRSS:"))?;
    let kb: f64 = line.split_whitespace().nth(1)?.parse().ok()?;
    Some(kb / 1024.0)
}

fn percentile(sorted: &[f64], p: f64) -> Option<f64> {
    if sorted.is_empty() {
        return None;
    }
    let i = ((p / 100.0) * (sorted.len() - 1) as f64).round() as usize;
    Some(sorted[i.min(sorted.len() - 1)])
}

/// Least-squares slope of y over x.
fn slope(xy: &[(f64, f64)]) -> Option<f64> {
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

fn live(cfg: Config, a: BenchArgs) -> Result<i32> {
    use callpulse::capture::PacedWav;
    use callpulse::pipeline::RunOptions;
    use std::collections::HashMap;
    use std::time::{Duration, Instant};

    let one = callpulse::audio::wav::WavSource::open(&a.file)?
        .info()
        .duration_s();
    let loops = a
        .minutes
        .map(|m| ((m * 60.0) / one.max(0.1)).ceil() as u32)
        .unwrap_or(1)
        .max(1);
    let src = PacedWav::open(&a.file, a.speed, a.buffer_ms, loops)?;
    let paths = models::ensure(&cfg, &Component::for_scoring(&cfg), false)?;
    let engine = Engine::load(&cfg, &paths)?;
    let stop = super::live::stop_on_signals()?;
    let mut opts = RunOptions::live("bench", &cfg, stop.clone());
    opts.max_seconds = a.minutes.map(|m| m * 60.0);
    let expected = opts.max_seconds.unwrap_or(one * loops as f64);
    eprintln!(
        "bench live: {} at {}x, {:.0} s of audio ({:.1} min of wall time); Ctrl-C ends early",
        a.file.display(),
        a.speed,
        expected,
        expected / a.speed / 60.0
    );
    // Memory, sampled every 2 s.
    let done = std::sync::Arc::new(std::sync::atomic::AtomicBool::new(false));
    let done2 = done.clone();
    let sampler = std::thread::spawn(move || {
        let mut v = Vec::new();
        let t0 = Instant::now();
        while !done2.load(std::sync::atomic::Ordering::Relaxed) {
            if let Some(r) = rss_mb() {
                v.push((t0.elapsed().as_secs_f64(), r));
            }
            std::thread::sleep(Duration::from_secs(2));
        }
        v
    });
    let mut finals: Vec<(f64, f64, f64, bool)> = Vec::new(); // (audio end, latency ms, turn length, speculative)
    let mut partial_times: HashMap<(u8, u32), Vec<Instant>> = HashMap::new();
    let mut partial_latency: Vec<f64> = Vec::new();
    let t_run = Instant::now();
    let mut last_report = Instant::now();
    let out = engine.run(
        Box::new(src),
        &opts,
        &mut |e| match e {
            Event::Turn(t) => {
                finals.push((
                    t.end,
                    t.timings.latency_ms.unwrap_or(0.0) as f64,
                    t.end - t.start,
                    t.timings.speculative,
                ));
                if last_report.elapsed() > Duration::from_secs(30) {
                    last_report = Instant::now();
                    eprintln!(
                        "  {:>6.0} s audio, {} turns, last latency {:.0} ms",
                        t.end,
                        finals.len(),
                        t.timings.latency_ms.unwrap_or(0.0)
                    );
                }
            }
            Event::Partial(p) => {
                partial_times
                    .entry((p.leg, p.seq))
                    .or_default()
                    .push(Instant::now());
                partial_latency.push(p.timings.latency_ms.unwrap_or(0.0) as f64);
            }
            _ => {}
        },
        &|_, _| {},
    )?;
    let wall = t_run.elapsed().as_secs_f64();
    done.store(true, std::sync::atomic::Ordering::Relaxed);
    let rss = sampler.join().unwrap_or_default();
    let st = &out.summary.stats;

    let mut lat: Vec<f64> = finals
        .iter()
        .filter(|f| f.2 <= a.max_turn_s)
        .map(|f| f.1)
        .collect();
    lat.sort_by(f64::total_cmp);
    let mut lat_all: Vec<f64> = finals.iter().map(|f| f.1).collect();
    lat_all.sort_by(f64::total_cmp);
    let mut gaps: Vec<f64> = partial_times
        .values()
        .flat_map(|v| v.windows(2).map(|w| (w[1] - w[0]).as_secs_f64() * 1000.0))
        .collect();
    gaps.sort_by(f64::total_cmp);
    partial_latency.sort_by(f64::total_cmp);
    // Trend: ms of latency per minute of call, and first vs last fifth.
    let xy: Vec<(f64, f64)> = finals.iter().map(|f| (f.0 / 60.0, f.1)).collect();
    let fifth = (finals.len() / 5).max(1);
    let median = |v: &[(f64, f64, f64, bool)]| {
        let mut l: Vec<f64> = v.iter().map(|f| f.1).collect();
        l.sort_by(f64::total_cmp);
        percentile(&l, 50.0)
    };
    let r1 = |v: Option<f64>| v.map(|x| (x * 10.0).round() / 10.0);
    let report = serde_json::json!({
        "file": a.file,
        "speed": a.speed,
        "audio_s": st.frames_captured as f64 / callpulse::audio::wav::WavSource::open(&a.file)?.info().sample_rate as f64,
        "wall_s": round3(wall),
        "device": engine.devices(),
        "turns": finals.len(),
        "final_latency_ms": {
            "turns_counted": lat.len(),
            "max_turn_s": a.max_turn_s,
            "p50": r1(percentile(&lat, 50.0)),
            "p95": r1(percentile(&lat, 95.0)),
            "p99": r1(percentile(&lat, 99.0)),
            "max": r1(lat.last().copied()),
            "all_turns_p95": r1(percentile(&lat_all, 95.0)),
            "speculative_share": round3(finals.iter().filter(|f| f.3).count() as f64 / finals.len().max(1) as f64),
        },
        "partials": {
            "emitted": st.partials_emitted,
            "skipped": st.partials_skipped,
            "interval_ms_p50": r1(percentile(&gaps, 50.0)),
            "interval_ms_p95": r1(percentile(&gaps, 95.0)),
            "latency_ms_p50": r1(percentile(&partial_latency, 50.0)),
            "latency_ms_p95": r1(percentile(&partial_latency, 95.0)),
        },
        "trend": {
            "latency_slope_ms_per_min": r1(slope(&xy)),
            "median_first_fifth_ms": r1(median(&finals[..fifth.min(finals.len())])),
            "median_last_fifth_ms": r1(median(&finals[finals.len().saturating_sub(fifth)..])),
        },
        "overload": {
            "frames_captured": st.frames_captured,
            "frames_dropped": st.frames_dropped,
            "partials_skipped": st.partials_skipped,
            "queues": st.queues,
            "peak_buffered_audio_s": st.peak_buffered_audio_s,
        },
        "memory_mb": {
            "first": rss.first().map(|r| (r.1 * 10.0).round() / 10.0),
            "peak": rss.iter().map(|r| r.1).fold(None, |m: Option<f64>, x| Some(m.map_or(x, |m| m.max(x)))).map(|x| (x * 10.0).round() / 10.0),
            "last": rss.last().map(|r| (r.1 * 10.0).round() / 10.0),
            "samples": rss.len(),
            // RSS at each tenth of the run: a plateau means bounded memory.
            "by_tenth": (1..=10)
                .filter_map(|k| rss.get((rss.len() * k / 10).saturating_sub(1)).map(|r| (r.1 * 10.0).round() / 10.0))
                .collect::<Vec<f64>>(),
        },
        "ended": st.ended,
    });
    if a.json {
        println!("{}", serde_json::to_string_pretty(&report)?);
    } else {
        let f = |v: &serde_json::Value| match v.as_f64() {
            Some(x) => format!("{x:.0}"),
            None => "-".into(),
        };
        let l = &report["final_latency_ms"];
        let p = &report["partials"];
        let t = &report["trend"];
        let m = &report["memory_mb"];
        println!("file            {} at {}x", a.file.display(), a.speed);
        println!(
            "audio / wall    {:.1} s / {wall:.1} s ({} turns)",
            report["audio_s"].as_f64().unwrap_or(0.0),
            finals.len()
        );
        println!(
            "devices         asr {}, encoder {}, vad {}",
            st.devices.asr, st.devices.encoder, st.devices.vad
        );
        println!(
            "final latency   p50 {} ms  p95 {} ms  p99 {} ms  max {} ms  (turns <= {} s: {})",
            f(&l["p50"]),
            f(&l["p95"]),
            f(&l["p99"]),
            f(&l["max"]),
            a.max_turn_s,
            lat.len()
        );
        println!(
            "partials        {} emitted, {} skipped; interval p50 {} ms p95 {} ms; latency p50 {} ms",
            st.partials_emitted,
            st.partials_skipped,
            f(&p["interval_ms_p50"]),
            f(&p["interval_ms_p95"]),
            f(&p["latency_ms_p50"])
        );
        println!(
            "trend           {} ms/min; median first fifth {} ms, last fifth {} ms",
            t["latency_slope_ms_per_min"]
                .as_f64()
                .map(|x| format!("{x:+.1}"))
                .unwrap_or("-".into()),
            f(&t["median_first_fifth_ms"]),
            f(&t["median_last_fifth_ms"])
        );
        println!(
            "overload        frames dropped {}/{}; peak queues: ring {:.2} s, finals {}, partials {}, events {}",
            st.frames_dropped,
            st.frames_captured,
            st.queues.ring_peak_s,
            st.queues.finals_peak,
            st.queues.partials_peak,
            st.queues.events_peak
        );
        println!(
            "memory (RSS)    first {} MB, peak {} MB, last {} MB; by tenth of the run: {}",
            f(&m["first"]),
            f(&m["peak"]),
            f(&m["last"]),
            m["by_tenth"]
        );
    }
    Ok(0)
}

fn round3(v: f64) -> f64 {
    (v * 1000.0).round() / 1000.0
}

/// One capacity call: (turn length, final latency ms) per turn, and its summary.
type CallRun = (Vec<(f64, f64)>, callpulse::event::SummaryEvent);

/// Process CPU seconds (user + system) so far.
fn cpu_seconds() -> Option<f64> {
    let s = std::fs::read_to_string("/proc/self/stat").ok()?;
    // Fields after the command name (which may contain spaces).
    let rest = &s[s.rfind(')')? + 2..];
    let f: Vec<&str> = rest.split_whitespace().collect();
    let ticks = f.get(11)?.parse::<f64>().ok()? + f.get(12)?.parse::<f64>().ok()?;
    Some(ticks / 100.0)
}

fn capacity(mut cfg: Config, a: BenchArgs) -> Result<i32> {
    use callpulse::capture::PacedWav;
    use callpulse::pipeline::RunOptions;
    use std::time::{Duration, Instant};

    if let Some(ms) = a.partial_interval_ms {
        cfg.live.partial_interval_ms = ms;
    }
    cfg.validate()?;
    let info = callpulse::audio::wav::WavSource::open(&a.file)?.info();
    if info.channels != 2 {
        anyhow::bail!("bench capacity needs a two-channel (agent + customer) WAV file");
    }
    let one = info.duration_s();
    let per_call = a.step_minutes * 60.0;
    if !(per_call.is_finite() && per_call >= one.min(30.0)) {
        anyhow::bail!(
            "--step-minutes must cover at least {:.1} s of audio",
            one.min(30.0)
        );
    }
    let loops = (per_call / one).ceil() as u32;
    let paths = models::ensure(&cfg, &Component::for_scoring(&cfg), false)?;
    let engine = Engine::load(&cfg, &paths)?;
    let stop = super::live::stop_on_signals()?;
    let cores = std::thread::available_parallelism().map_or(1, |n| n.get());
    eprintln!(
        "bench capacity: {} per call, {:.1} min per step, {} cores, ASR {} thread(s) per call, partials every {} ms",
        a.file.display(),
        a.step_minutes,
        cores,
        cfg.asr.threads,
        cfg.live.partial_interval_ms
    );
    let mut steps = Vec::new();
    let mut sustained = 0usize;
    for n in 1..=a.max_calls.max(1) {
        if stop.load(std::sync::atomic::Ordering::Relaxed) {
            break;
        }
        let cpu0 = cpu_seconds();
        let t0 = Instant::now();
        let results: Vec<Result<CallRun>> = std::thread::scope(|s| {
            let hs: Vec<_> = (0..n)
                .map(|i| {
                    let engine = engine.clone();
                    let cfg = &cfg;
                    let stop = stop.clone();
                    let file = &a.file;
                    s.spawn(move || -> Result<_> {
                        // Stagger the calls so their turns do not line up.
                        std::thread::sleep(Duration::from_secs_f64(
                            one * i as f64 / n as f64 / 2.0,
                        ));
                        let src = PacedWav::open(file, 1.0, 20, loops)?;
                        let mut opts = RunOptions::live(&format!("call-{i}"), cfg, stop);
                        opts.max_seconds = Some(per_call);
                        let mut lat = Vec::new();
                        let out = engine.run(
                            Box::new(src),
                            &opts,
                            &mut |e| {
                                if let Event::Turn(t) = e {
                                    lat.push((
                                        t.end - t.start,
                                        t.timings.latency_ms.unwrap_or(0.0) as f64,
                                    ));
                                }
                            },
                            &|_, _| {},
                        )?;
                        Ok((lat, out.summary))
                    })
                })
                .collect();
            hs.into_iter()
                .map(|h| {
                    h.join()
                        .unwrap_or_else(|_| Err(anyhow::anyhow!("call thread panicked")))
                })
                .collect()
        });
        let wall = t0.elapsed().as_secs_f64();
        let cpu = match (cpu0, cpu_seconds()) {
            (Some(a), Some(b)) => Some(b - a),
            _ => None,
        };
        let mut lat: Vec<f64> = Vec::new();
        let (mut dropped, mut p_emit, mut p_skip, mut turns) = (0u64, 0u32, 0u32, 0u32);
        let mut stage = [0.0f64; 4];
        for r in results {
            let (l, sm) = r?;
            lat.extend(l.iter().filter(|x| x.0 <= a.max_turn_s).map(|x| x.1));
            let st = &sm.stats;
            dropped += st.frames_dropped;
            p_emit += st.partials_emitted;
            p_skip += st.partials_skipped;
            turns += sm.turns;
            stage[0] += st.stage_ms.frontend as f64;
            stage[1] += st.stage_ms.asr as f64;
            stage[2] += st.stage_ms.prosody as f64;
            stage[3] += st.stage_ms.sentiment as f64;
        }
        lat.sort_by(f64::total_cmp);
        let p50 = percentile(&lat, 50.0).unwrap_or(0.0);
        let p95 = percentile(&lat, 95.0).unwrap_or(0.0);
        let max = lat.last().copied().unwrap_or(0.0);
        let ok = p95 <= a.p95_ms && dropped == 0 && !lat.is_empty();
        let total_stage: f64 = stage.iter().sum::<f64>().max(1e-9);
        let step = serde_json::json!({
            "calls": n,
            "turns": turns,
            "latency_ms": {"p50": p50.round(), "p95": p95.round(), "max": max.round()},
            "frames_dropped": dropped,
            "partials_emitted": p_emit,
            "partials_skipped": p_skip,
            "wall_s": round3(wall),
            "cpu_s": cpu.map(round3),
            "cpu_utilisation": cpu.map(|c| round3(c / wall / cores as f64)),
            "stage_share": {
                "frontend": round3(stage[0] / total_stage),
                "asr": round3(stage[1] / total_stage),
                "prosody": round3(stage[2] / total_stage),
                "sentiment": round3(stage[3] / total_stage),
            },
            "stage_ms_per_audio_s": {
                "frontend": round3(stage[0] / (per_call * n as f64)),
                "asr": round3(stage[1] / (per_call * n as f64)),
                "prosody": round3(stage[2] / (per_call * n as f64)),
                "sentiment": round3(stage[3] / (per_call * n as f64)),
            },
            "sustained": ok,
        });
        if !a.json {
            eprintln!(
                "  {n} call(s): {turns} turns, final latency p50 {p50:.0} / p95 {p95:.0} / max {max:.0} ms, CPU {:.0}%, dropped {dropped}, partials {p_emit} (+{p_skip} skipped), ASR {:.0}% of stage time -> {}",
                cpu.map_or(0.0, |c| 100.0 * c / wall / cores as f64),
                100.0 * stage[1] / total_stage,
                if ok { "sustained" } else { "NOT sustained" }
            );
        }
        steps.push(step);
        if ok {
            sustained = n;
        } else {
            break;
        }
    }
    let report = serde_json::json!({
        "file": a.file.display().to_string(),
        "cores": cores,
        "asr_threads_per_call": cfg.asr.threads,
        "partial_interval_ms": cfg.live.partial_interval_ms,
        "p95_limit_ms": a.p95_ms,
        "sustained_calls": sustained,
        "steps": steps,
    });
    if a.json {
        println!("{}", serde_json::to_string_pretty(&report)?);
    } else {
        println!(
            "{sustained} concurrent call(s) sustained with final-turn p95 <= {:.0} ms",
            a.p95_ms
        );
    }
    Ok(0)
}
