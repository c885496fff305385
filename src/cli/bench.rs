use std::path::PathBuf;

use anyhow::Result;
use clap::{Args, ValueEnum};

use callpulse::config::Config;
use callpulse::event::Event;
use callpulse::models::{self, Component};
use callpulse::pipeline::Engine;

use super::ModelArgs;

#[derive(Debug, Clone, Copy, ValueEnum)]
pub enum What {
    /// Offline scoring of a file.
    Score,
}

#[derive(Args, Debug)]
pub struct BenchArgs {
    /// What to measure.
    #[arg(value_enum)]
    what: What,
    /// WAV file.
    file: PathBuf,
    /// Timed runs (after one warm-up run).
    #[arg(long, default_value_t = 3)]
    runs: u32,
    /// Print JSON instead of a table.
    #[arg(long)]
    json: bool,
    #[command(flatten)]
    models: ModelArgs,
}

pub fn run(mut cfg: Config, a: BenchArgs) -> Result<i32> {
    a.models.apply(&mut cfg);
    let What::Score = a.what;
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
        "device": {"asr": if cfg!(feature = "cuda") {"cuda"} else {"cpu"}, "encoder": "cpu", "vad": "cpu"},
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
        println!(
            "model         {model} ({threads} CPU threads; asr on {})",
            if cfg!(feature = "cuda") {
                "cuda"
            } else {
                "cpu"
            }
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

fn round3(v: f64) -> f64 {
    (v * 1000.0).round() / 1000.0
}
