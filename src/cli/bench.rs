use std::path::PathBuf;

use anyhow::Result;
use clap::{Args, ValueEnum};

use callpulse::bench::{self as b, FinalTurn, LatencyReport, Percentiles, RssSampler, Trend};
use callpulse::capture::PacedWav;
use callpulse::config::Config;
use callpulse::event::WorkMs;
use callpulse::models::{self, Component};
use callpulse::pipeline::{Engine, RunOptions};

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
    /// Latency percentiles are over all final turns; a second figure over
    /// turns up to this long (seconds) is printed beside it, labelled. [live, capacity]
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
    /// A step is sustained while final-turn p95 latency over all turns stays within this. [capacity]
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
    match a.what {
        What::Score => score(cfg, a),
        What::Live => live(cfg, a),
        What::Capacity => capacity(cfg, a),
    }
}

fn load(cfg: &Config) -> Result<(Engine, f64)> {
    let paths = models::ensure(cfg, &Component::for_scoring(cfg), false)?;
    let t = std::time::Instant::now();
    let engine = Engine::load(cfg, &paths)?;
    Ok((engine, t.elapsed().as_secs_f64()))
}

fn model_name(cfg: &Config) -> String {
    cfg.models
        .whisper_model
        .as_ref()
        .map(|p| p.display().to_string())
        .unwrap_or_else(|| format!("{:?}", cfg.models.asr))
}

fn work_line(w: &WorkMs) -> String {
    format!(
        "resample {:.0} | vad {:.0} | asr {:.0} (final {:.0}, partial {:.0}, speculative {:.0} of which unused {:.0}, empty turns {:.0}) | prosody {:.0} | sentiment {:.0} (+{:.0} partials) | total {:.0}",
        w.resample, w.vad, w.asr, w.asr_final, w.asr_partial, w.asr_speculative,
        w.asr_speculative_unused, w.asr_empty, w.prosody, w.sentiment, w.sentiment_partial, w.total
    )
}

fn score(cfg: Config, a: BenchArgs) -> Result<i32> {
    callpulse::audio::wav::WavSource::open(&a.file)?;
    let (engine, load_s) = load(&cfg)?;
    let r = b::score(&engine, &a.file, a.runs)?;
    let threads = std::thread::available_parallelism().map_or(1, |n| n.get());
    if a.json {
        let mut v = serde_json::to_value(&r)?;
        v["model"] = model_name(&cfg).into();
        v["device"] = serde_json::to_value(engine.devices())?;
        v["cpu_threads"] = threads.into();
        v["model_load_s"] = ((load_s * 1000.0).round() / 1000.0).into();
        println!("{}", serde_json::to_string_pretty(&v)?);
        return Ok(0);
    }
    let d = engine.devices();
    println!("file          {}", a.file.display());
    println!(
        "model         {} ({threads} CPU threads; asr on {}, encoder on {}, vad on {}); load {load_s:.2} s",
        model_name(&cfg),
        d.asr,
        d.encoder,
        d.vad
    );
    println!("runs          {} (+1 warm-up); the median run:", r.runs);
    println!("audio         {:.2} s, {} turns", r.audio_s, r.turns);
    println!("wall          {:.3} s (model load excluded)", r.wall_s);
    println!("RTF           {:.3}", r.rtf);
    println!("work, ms      {}", work_line(&r.work_ms));
    println!(
        "non-ASR share {:.1}% of wall",
        100.0 * r.non_asr_share_of_wall
    );
    Ok(0)
}

fn pct_line(p: &Percentiles) -> String {
    let f = |v: Option<f64>| v.map_or("-".into(), |x| format!("{x:.0}"));
    format!(
        "p50 {} ms  p95 {} ms  p99 {} ms  max {} ms  ({} turns)",
        f(p.p50),
        f(p.p95),
        f(p.p99),
        f(p.max),
        p.n
    )
}

fn live(cfg: Config, a: BenchArgs) -> Result<i32> {
    let one = callpulse::audio::wav::WavSource::open(&a.file)?
        .info()
        .duration_s();
    let loops = a
        .minutes
        .map(|m| ((m * 60.0) / one.max(0.1)).ceil() as u32)
        .unwrap_or(1)
        .max(1);
    let src = PacedWav::open(&a.file, a.speed, a.buffer_ms, loops)?;
    let (engine, _) = load(&cfg)?;
    let stop = super::live::stop_on_signals()?;
    let mut opts = RunOptions::live("bench", &cfg, stop);
    opts.max_seconds = a.minutes.map(|m| m * 60.0);
    let expected = opts.max_seconds.unwrap_or(one * loops as f64);
    eprintln!(
        "bench live: {} at {}x, {:.0} s of audio ({:.1} min of wall time); Ctrl-C ends early",
        a.file.display(),
        a.speed,
        expected,
        expected / a.speed / 60.0
    );
    let sampler = RssSampler::start(std::time::Duration::from_secs(2));
    let t_run = std::time::Instant::now();
    let mut last_report = std::time::Instant::now();
    let call = b::live_call(&engine, src, &opts, &mut |t: &FinalTurn, n| {
        if last_report.elapsed() > std::time::Duration::from_secs(30) {
            last_report = std::time::Instant::now();
            eprintln!(
                "  {:>6.0} s audio, {n} turns, last latency {:.0} ms",
                t.end_s, t.latency_ms
            );
        }
    })?;
    let wall = t_run.elapsed().as_secs_f64();
    let memory = sampler.finish();
    let st = call
        .summary
        .as_ref()
        .map(|s| s.stats.clone())
        .unwrap_or_default();
    let latency = LatencyReport::of(&call.finals, a.max_turn_s);
    let trend = Trend::of(&call.finals);
    let audio_s = call.summary.as_ref().map_or(0.0, |s| s.duration);
    let report = serde_json::json!({
        "file": a.file,
        "speed": a.speed,
        "audio_s": audio_s,
        "wall_s": (wall * 1000.0).round() / 1000.0,
        "device": engine.devices(),
        "turns": call.finals.len(),
        "final_latency_ms": latency,
        "partials": {
            "emitted": st.partials_emitted,
            "skipped": st.partials_skipped,
            "interval_ms": Percentiles::of(call.partial_gaps_ms.iter().copied()),
            "latency_ms": Percentiles::of(call.partial_latency_ms.iter().copied()),
        },
        "trend": trend,
        "work_ms_per_audio_s": b::work_per_audio_s(&st.work_ms, audio_s),
        "overload": {
            "frames_captured": st.frames_captured,
            "frames_dropped": st.frames_dropped,
            "partials_skipped": st.partials_skipped,
            "queues": st.queues,
            "peak_buffered_audio_s": st.peak_buffered_audio_s,
        },
        "memory": memory,
        "ended": st.ended,
    });
    if a.json {
        println!("{}", serde_json::to_string_pretty(&report)?);
        return Ok(0);
    }
    let f = |v: Option<f64>| v.map_or("-".into(), |x| format!("{x:.0}"));
    println!("file            {} at {}x", a.file.display(), a.speed);
    println!(
        "audio / wall    {audio_s:.1} s / {wall:.1} s ({} turns)",
        call.finals.len()
    );
    println!(
        "devices         asr {}, encoder {}, vad {}",
        st.devices.asr, st.devices.encoder, st.devices.vad
    );
    println!(
        "final latency   all turns: {}",
        pct_line(&latency.all_turns)
    );
    println!(
        "                turns <= {} s only (filtered): {}",
        a.max_turn_s,
        pct_line(&latency.turns_up_to_max_turn_s)
    );
    let gaps = Percentiles::of(call.partial_gaps_ms.iter().copied());
    let plat = Percentiles::of(call.partial_latency_ms.iter().copied());
    println!(
        "partials        {} emitted, {} skipped; interval p50 {} ms p95 {} ms; latency p50 {} ms",
        st.partials_emitted,
        st.partials_skipped,
        f(gaps.p50),
        f(gaps.p95),
        f(plat.p50)
    );
    println!(
        "trend           {} ms/min; median first fifth {} ms, last fifth {} ms",
        trend
            .latency_slope_ms_per_min
            .map_or("-".into(), |x| format!("{x:+.1}")),
        f(trend.median_first_fifth_ms),
        f(trend.median_last_fifth_ms)
    );
    println!(
        "work per audio s {}",
        work_line(&b::work_per_audio_s(&st.work_ms, audio_s))
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
        "memory (RSS)    first {} MB, peak {} MB, last {} MB; by tenth of the run: {:?}",
        f(memory.first_mb),
        f(memory.peak_mb),
        f(memory.last_mb),
        memory.by_tenth_mb
    );
    Ok(0)
}

fn capacity(mut cfg: Config, a: BenchArgs) -> Result<i32> {
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
    let (engine, _) = load(&cfg)?;
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
        let step = b::capacity_step(
            &engine,
            &a.file,
            n,
            per_call,
            (a.p95_ms, a.max_turn_s),
            &stop,
        )?;
        if !a.json {
            let w = &step.work_ms_per_audio_s;
            eprintln!(
                "  {n} call(s): {} turns; final latency, all turns: {}; turns <= {} s: p95 {} ms; CPU {:.0}%, dropped {}, partials {} (+{} skipped); ASR {:.0} of {:.0} ms work per audio s -> {}",
                step.turns,
                pct_line(&step.latency_ms.all_turns),
                a.max_turn_s,
                step.latency_ms.turns_up_to_max_turn_s.p95.map_or("-".into(), |x| format!("{x:.0}")),
                step.cpu_utilisation.map_or(0.0, |c| 100.0 * c),
                step.frames_dropped,
                step.partials_emitted,
                step.partials_skipped,
                w.asr,
                w.total,
                if step.sustained { "sustained" } else { "NOT sustained" }
            );
        }
        let ok = step.sustained;
        steps.push(step);
        if !ok {
            break;
        }
        sustained = n;
    }
    let report = serde_json::json!({
        "file": a.file.display().to_string(),
        "cores": cores,
        "asr_threads_per_call": cfg.asr.threads,
        "partial_interval_ms": cfg.live.partial_interval_ms,
        "p95_limit_ms": a.p95_ms,
        "p95_over": "all final turns",
        "sustained_calls": sustained,
        "steps": steps,
    });
    if a.json {
        println!("{}", serde_json::to_string_pretty(&report)?);
    } else {
        println!(
            "{sustained} concurrent call(s) sustained with final-turn p95 (all turns) <= {:.0} ms",
            a.p95_ms
        );
    }
    Ok(0)
}
