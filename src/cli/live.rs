//! `stream`, `listen` and `devices`: live calls through the staged pipeline.

use std::fs::File;
use std::io::{BufWriter, Write};
use std::path::PathBuf;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;

use anyhow::{bail, Context, Result};
use clap::Args;

use callpulse::audio::g711::Encoding;
use callpulse::capture::{mic, PacedWav, Source, Stdin};
use callpulse::config::Config;
use callpulse::event::Event;
use callpulse::models::{self, Component};
use callpulse::pipeline::{Engine, RunOptions};
use callpulse::sink::{EventWriter, Format};

use super::{CallArgs, ModelArgs};

/// Output and pipeline flags shared by `stream` and `listen`.
#[derive(Args, Debug)]
pub struct LiveArgs {
    /// Output format: jsonl (one event per line, flushed as it happens) or table.
    #[arg(short, long, value_enum, default_value_t = Format::Jsonl)]
    format: Format,
    /// Write events here instead of stdout.
    #[arg(short, long, value_name = "FILE")]
    out: Option<PathBuf>,
    /// Call id written in every event (default: the file name, `stdin` or `mic`).
    #[arg(long)]
    call_id: Option<String>,
    /// Partial results every N ms of a turn; 0 = none. [config: live.partial_interval_ms]
    #[arg(long, value_name = "MS")]
    partial_interval_ms: Option<u32>,
    /// Stop after this many seconds of audio (then finish the open turns and exit 0).
    #[arg(long, value_name = "S")]
    seconds: Option<f64>,
    #[command(flatten)]
    call: CallArgs,
    #[command(flatten)]
    models: ModelArgs,
}

#[derive(Args, Debug)]
pub struct StreamArgs {
    /// WAV file to replay (one or two channels). Omit with --stdin.
    #[arg(value_name = "FILE", required_unless_present = "stdin")]
    file: Option<PathBuf>,
    /// Replay speed: 1 = real time, 4 = four times faster.
    #[arg(long, default_value_t = 1.0)]
    speed: f64,
    /// Capture buffer size: audio is released in buffers of this many ms.
    #[arg(long, default_value_t = 20, value_name = "MS")]
    buffer_ms: u32,
    /// Play the file this many times back to back (one call).
    #[arg(long = "loop", default_value_t = 1, value_name = "N")]
    loops: u32,
    /// Read raw audio from standard input instead of a file (needs --rate and --encoding).
    #[arg(long, conflicts_with_all = ["file", "speed", "loops"])]
    stdin: bool,
    /// Sample rate of the raw input, Hz.
    #[arg(long, requires = "stdin")]
    rate: Option<u32>,
    /// Encoding of the raw input.
    #[arg(long, value_enum, requires = "stdin")]
    encoding: Option<Encoding>,
    /// Channels of the raw input (interleaved): 1, or 2 for agent and customer.
    #[arg(long, default_value_t = 1, value_parser = clap::value_parser!(u16).range(1..=2))]
    channels: u16,
    #[command(flatten)]
    live: LiveArgs,
}

#[derive(Args, Debug)]
pub struct ListenArgs {
    /// Input device id or name (see `callpulse devices`); default: the system default.
    #[arg(long, value_name = "NAME")]
    device: Option<String>,
    /// Channels to capture: 1, or 2 for agent and customer on separate channels.
    #[arg(long, default_value_t = 1, value_parser = clap::value_parser!(u16).range(1..=2))]
    channels: u16,
    /// Capture rate, Hz (default 16000 when the device supports it).
    #[arg(long)]
    rate: Option<u32>,
    #[command(flatten)]
    live: LiveArgs,
}

/// Install SIGINT/SIGTERM handlers: the first asks for a graceful stop, a
/// second one exits at once (status 130).
pub fn stop_on_signals() -> Result<Arc<AtomicBool>> {
    use signal_hook::consts::{SIGINT, SIGTERM};
    let stop = Arc::new(AtomicBool::new(false));
    for sig in [SIGINT, SIGTERM] {
        signal_hook::flag::register_conditional_shutdown(sig, 130, stop.clone())
            .context("cannot install signal handler")?;
        signal_hook::flag::register(sig, stop.clone()).context("cannot install signal handler")?;
    }
    Ok(stop)
}

pub fn stream(mut cfg: Config, a: StreamArgs) -> Result<i32> {
    let (source, default_id): (Box<dyn Source>, String) = if a.stdin {
        let (Some(rate), Some(enc)) = (a.rate, a.encoding) else {
            bail!("--stdin needs --rate and --encoding");
        };
        (Box::new(Stdin::new(rate, a.channels, enc)?), "stdin".into())
    } else {
        let Some(file) = &a.file else {
            bail!("give a WAV file, or --stdin");
        };
        let id = file
            .file_stem()
            .map(|s| s.to_string_lossy().to_string())
            .unwrap_or_else(|| "call".into());
        (
            Box::new(PacedWav::open(file, a.speed, a.buffer_ms, a.loops)?),
            id,
        )
    };
    run_live(&mut cfg, source, &a.live, default_id)
}

pub fn listen(mut cfg: Config, a: ListenArgs) -> Result<i32> {
    let src = mic::Mic::open(a.device.as_deref(), Some(a.channels), a.rate)?;
    run_live(&mut cfg, Box::new(src), &a.live, "mic".into())
}

pub fn devices() -> Result<i32> {
    let list = mic::list_inputs()?;
    if list.is_empty() {
        println!("no input devices found");
        return Ok(0);
    }
    for d in list {
        let mark = if d.is_default { " (default)" } else { "" };
        println!("{}{mark}", d.id);
        if d.name != d.id {
            println!("    name: {}", d.name);
        }
        match d.configs {
            Ok(c) if c.is_empty() => println!("    no input configurations"),
            Ok(c) => {
                for c in c {
                    println!("    {c}");
                }
            }
            Err(e) => println!("    configurations unavailable: {e}"),
        }
    }
    Ok(0)
}

fn run_live(
    cfg: &mut Config,
    source: Box<dyn Source>,
    a: &LiveArgs,
    default_id: String,
) -> Result<i32> {
    a.models.apply(cfg);
    a.call.apply(cfg)?;
    if let Some(ms) = a.partial_interval_ms {
        cfg.live.partial_interval_ms = ms;
    }
    cfg.validate()?;
    if !matches!(a.format, Format::Jsonl | Format::Table) {
        bail!("live output is jsonl or table (csv and json need the whole call: use `score`)");
    }
    if let Some(s) = a.seconds {
        if !(s.is_finite() && s > 0.0) {
            bail!("--seconds must be a positive number");
        }
    }
    let stop = stop_on_signals()?;
    let paths = models::ensure(cfg, &Component::for_scoring(cfg), false)?;
    let engine = Engine::load(cfg, &paths)?;
    let out: Box<dyn Write> = match &a.out {
        Some(p) => Box::new(BufWriter::new(
            File::create(p).with_context(|| format!("cannot create {}", p.display()))?,
        )),
        None => Box::new(BufWriter::new(std::io::stdout().lock())),
    };
    let mut writer = EventWriter::new(out, a.format);
    let mut opts = RunOptions::live(
        a.call_id.as_deref().unwrap_or(&default_id),
        cfg,
        stop.clone(),
    );
    opts.max_seconds = a.seconds;
    let info = source.info();
    if super::stderr_is_tty() {
        eprintln!(
            "callpulse: live from {} ({} leg{}, {} Hz); Ctrl-C stops and writes the summary",
            info.label,
            info.channels,
            if info.channels == 1 { "" } else { "s" },
            info.rate
        );
    }
    let mut write_err: Option<std::io::Error> = None;
    let outcome = engine.run(
        source,
        &opts,
        &mut |e: Event| {
            if write_err.is_some() {
                return;
            }
            if let Err(err) = writer.write(&e).and_then(|_| writer.flush()) {
                // The reader went away: stop capturing, keep the exit honest.
                stop.store(true, Ordering::Relaxed);
                write_err = Some(err);
            }
        },
        &|_, _| {},
    )?;
    if let Some(e) = write_err {
        bail!("cannot write events: {e}");
    }
    writer.finish().context("cannot flush events")?;
    if let Some(e) = outcome.input_error {
        eprintln!("callpulse: input ended with an error: {e}");
        return Ok(1);
    }
    Ok(0)
}
