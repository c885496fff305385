//! `serve`: the live monitoring server (HTTP API, WebSocket/SSE events,
//! dashboard, history) with the SIP listener feeding it calls.

use std::net::SocketAddr;
use std::path::PathBuf;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use anyhow::{bail, Context, Result};
use clap::Args;

use callpulse::config::Config;
use callpulse::event::{Event, Role};
use callpulse::models::{self, Component};
use callpulse::pipeline::{Engine, RunOptions};
use callpulse::server::history::{History, Write};
use callpulse::server::{self, Hub, ServeConfig};
use callpulse::telephony::jitter::JitterConfig;
use callpulse::telephony::ua::{NewCall, UaConfig, UserAgent};

use super::live::stop_on_signals;
use super::ModelArgs;

#[derive(Args, Debug)]
pub struct ServeArgs {
    /// HTTP address. Any address but loopback needs --token.
    #[arg(long, default_value = "127.0.0.1:8080", value_name = "ADDR:PORT")]
    listen: SocketAddr,
    /// Bearer token clients must send (`Authorization: Bearer TOKEN`, or `?token=` for WebSocket/SSE).
    #[arg(long, env = "CALLPULSE_TOKEN", hide_env_values = true)]
    token: Option<String>,
    /// Also answer SIP calls here (UDP) and score them live, e.g. 127.0.0.1:5060.
    #[arg(long, value_name = "ADDR:PORT")]
    sip: Option<SocketAddr>,
    /// RTP ports for SIP calls.
    #[arg(long, default_value = "40000-40999", value_parser = super::telephony::parse_ports, value_name = "LOW-HIGH")]
    rtp_ports: (u16, u16),
    /// Role of the calling party on SIP calls.
    #[arg(long, default_value = "customer", value_name = "ROLE")]
    caller_role: Role,
    /// Call history database (SQLite; created if missing).
    #[arg(long, default_value = "callpulse-history.sqlite", value_name = "FILE")]
    db: PathBuf,
    /// Keep no history (memory only: a restart forgets the calls).
    #[arg(long)]
    no_history: bool,
    /// Delete finished calls older than this many days from the history.
    #[arg(long, default_value_t = 30)]
    retention_days: u32,
    /// Largest WAV upload to POST /v1/score, MB.
    #[arg(long, default_value_t = 100)]
    max_upload_mb: u64,
    /// Most open HTTP connections (more are refused).
    #[arg(long, default_value_t = 256)]
    max_connections: usize,
    /// Requests per second per client address (bursts of twice that).
    #[arg(long, default_value_t = 50.0)]
    rate: f64,
    /// A client must send its request headers within this time, seconds (slow clients are dropped).
    #[arg(long, default_value_t = 10.0, value_name = "S")]
    header_timeout_s: f64,
    /// An upload may stall this long between chunks, seconds.
    #[arg(long, default_value_t = 30.0, value_name = "S")]
    body_idle_timeout_s: f64,
    /// Also replay this WAV file as a live call (real time, or --stream-speed times faster), e.g. to try the dashboard. Repeat for several calls at once.
    #[arg(long, value_name = "FILE")]
    stream: Vec<PathBuf>,
    /// Replay speed for --stream.
    #[arg(long, default_value_t = 1.0)]
    stream_speed: f64,
    /// Play each --stream file this many times back to back (one call).
    #[arg(long, default_value_t = 1, value_name = "N")]
    stream_loop: u32,
    /// A WebSocket/SSE subscriber this many events behind is told it lagged and cut off.
    #[arg(long, default_value_t = server::SUBSCRIBER_BUFFER, value_name = "EVENTS")]
    subscriber_buffer: usize,
    /// Also score live audio from this input device (see `callpulse devices`; one channel).
    #[arg(long, value_name = "DEVICE")]
    mic: Option<String>,
    /// Do not redact card/phone numbers and e-mail addresses (the server redacts by default).
    #[arg(long)]
    no_redact: bool,
    #[command(flatten)]
    models: ModelArgs,
}

pub fn run(mut cfg: Config, a: ServeArgs) -> Result<i32> {
    a.models.apply(&mut cfg);
    cfg.privacy.redact = !a.no_redact;
    cfg.validate()?;
    for (name, v) in [
        ("--header-timeout-s", a.header_timeout_s),
        ("--body-idle-timeout-s", a.body_idle_timeout_s),
        ("--rate", a.rate),
    ] {
        if !(v.is_finite() && v > 0.0) {
            bail!("{name} must be a positive number");
        }
    }
    if a.max_connections == 0 || a.max_upload_mb == 0 {
        bail!("--max-connections and --max-upload-mb must be at least 1");
    }
    let scfg = ServeConfig {
        listen: a.listen,
        token: a.token.clone().filter(|t| !t.is_empty()),
        max_upload: a.max_upload_mb * 1024 * 1024,
        max_connections: a.max_connections,
        rate_per_s: a.rate,
        header_timeout: Duration::from_secs_f64(a.header_timeout_s),
        body_idle_timeout: Duration::from_secs_f64(a.body_idle_timeout_s),
        db: (!a.no_history).then(|| a.db.clone()),
        retention_days: a.retention_days,
        events_per_call: 20_000,
    };
    server::check_bind(&scfg).map_err(anyhow::Error::msg)?;
    let rtp_ports = a.rtp_ports;
    let stop = stop_on_signals()?;
    let paths = models::ensure(&cfg, &Component::for_scoring(&cfg), false)?;
    let engine = Engine::load(&cfg, &paths)?;
    let history = match &scfg.db {
        Some(p) => Some(History::open(p).map_err(|e| anyhow::anyhow!("history database {e}"))?),
        None => None,
    };
    if let Some(h) = &history {
        let keep_ms = scfg.retention_days as u64 * 86_400_000;
        h.write(Write::Prune(
            callpulse::event::now_unix_ms().saturating_sub(keep_ms),
        ));
    }
    let hub = Hub::new(history, scfg.events_per_call, a.subscriber_buffer);
    let app = server::app(engine.clone(), hub.clone(), scfg.clone());
    let rt = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .context("cannot start the network runtime")?;
    let listener = rt
        .block_on(tokio::net::TcpListener::bind(scfg.listen))
        .with_context(|| format!("cannot listen on {}", scfg.listen))?;
    eprintln!(
        "callpulse: serving on http://{}/ (dashboard), API under /v1; history {}; Ctrl-C stops",
        listener.local_addr()?,
        scfg.db
            .as_ref()
            .map(|p| p.display().to_string())
            .unwrap_or_else(|| "off".into())
    );
    let threads: Arc<Mutex<Vec<std::thread::JoinHandle<()>>>> = Arc::default();
    if let Some(sip) = a.sip {
        let ua_cfg = UaConfig {
            listen: sip,
            media_ip: None,
            rtp_ports,
            jitter: JitterConfig::default(),
            caller_role: a.caller_role,
            answer_delay: Duration::ZERO,
            rtp_timeout: Duration::from_secs(30),
            max_calls: 16,
        };
        let (engine, cfg, hub, call_threads) =
            (engine.clone(), cfg.clone(), hub.clone(), threads.clone());
        let handler = Box::new(move |c: NewCall| {
            let engine = engine.clone();
            let hub = hub.clone();
            let mut opts = RunOptions::live(&c.call_id, &cfg, Arc::new(AtomicBool::new(false)));
            opts.roles = Some(c.roles.clone());
            let id = c.call_id.clone();
            let h = std::thread::Builder::new()
                .name("call".into())
                .spawn(move || {
                    let r = engine.run(
                        Box::new(c.source),
                        &opts,
                        &mut |e: Event| hub.publish(&e),
                        &|_, _| {},
                    );
                    if let Err(e) = r {
                        eprintln!("callpulse: call {id} failed: {e}");
                    }
                });
            match h {
                Ok(h) => call_threads.lock().expect("threads").push(h),
                Err(e) => eprintln!("callpulse: cannot start a call thread: {e}"),
            }
        });
        let ua = UserAgent::new(ua_cfg, handler);
        let stop2 = stop.clone();
        // The agent runs on a runtime of its own (its call handler is not Sync).
        let ua_thread = std::thread::Builder::new()
            .name("sip".into())
            .spawn(move || {
                let rt = match tokio::runtime::Builder::new_current_thread()
                    .enable_all()
                    .build()
                {
                    Ok(rt) => rt,
                    Err(e) => return eprintln!("callpulse: SIP runtime: {e}"),
                };
                if let Err(e) =
                    rt.block_on(ua.run(stop2, |addr| eprintln!("callpulse: SIP on udp {addr}")))
                {
                    eprintln!("callpulse: SIP listener on {sip} failed: {e}");
                }
            })?;
        threads.lock().expect("threads").push(ua_thread);
    }
    // Local sources: a replayed file, a microphone.
    let mut local: Vec<(String, Box<dyn callpulse::capture::Source>)> = Vec::new();
    for (i, f) in a.stream.iter().enumerate() {
        let stem = f
            .file_stem()
            .map(|s| s.to_string_lossy().to_string())
            .unwrap_or_else(|| "stream".into());
        let id = if a.stream.len() > 1 {
            format!("{stem}-{}", i + 1)
        } else {
            stem
        };
        local.push((
            callpulse::telephony::ua::safe_call_id(&id),
            Box::new(callpulse::capture::PacedWav::open(
                f,
                a.stream_speed,
                20,
                a.stream_loop.max(1),
            )?),
        ));
    }
    if let Some(dev) = &a.mic {
        let dev = (dev != "default").then_some(dev.as_str());
        local.push((
            "mic".into(),
            Box::new(callpulse::capture::mic::Mic::open(dev, Some(1), None)?),
        ));
    }
    for (id, src) in local {
        let engine = engine.clone();
        let hub = hub.clone();
        let opts = RunOptions::live(&id, &cfg, stop.clone());
        let h = std::thread::Builder::new()
            .name("local".into())
            .spawn(move || {
                eprintln!("callpulse: call {id} started");
                if let Err(e) = engine.run(src, &opts, &mut |e: Event| hub.publish(&e), &|_, _| {})
                {
                    eprintln!("callpulse: call {id} failed: {e}");
                }
            })?;
        threads.lock().expect("threads").push(h);
    }
    let stop2 = stop.clone();
    let stopped = async move {
        while !stop2.load(Ordering::Relaxed) {
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
    };
    rt.block_on(server::serve(app, listener, stopped))?;
    // The SIP agent ends its calls on the same stop flag; wait for it and
    // for the calls' summaries (the agent's thread is first in the list,
    // the calls it started come after it).
    loop {
        let next = {
            let mut t = threads.lock().expect("threads");
            if t.is_empty() {
                break;
            }
            t.remove(0)
        };
        let _ = next.join();
    }
    drop(rt);
    hub.flush(Duration::from_secs(5));
    Ok(0)
}
