//! `serve`: the live monitoring server (HTTP API, WebSocket/SSE events,
//! dashboard, history) with the SIP listener feeding it calls. The flags
//! fill `[serve]` (and `[sip]` for the SIP listener); `callpulse::server`
//! does the rest.

use std::net::SocketAddr;
use std::path::PathBuf;
use std::sync::atomic::Ordering;
use std::sync::Arc;
use std::time::Duration;

use anyhow::{Context, Result};
use clap::Args;

use callpulse::config::{seconds, Config};
use callpulse::event::Role;
use callpulse::server::history::{History, Write};
use callpulse::server::{self, Hub, HubLimits, HubSinks, ServeConfig};
use callpulse::telephony::spawner::Spawner;
use callpulse::telephony::ua::{safe_call_id, UaConfig, UserAgent};

use super::live::stop_on_signals;
use super::telephony::{live_spawner, set_some, sip_handler};
use super::ModelArgs;

#[derive(Args, Debug)]
pub struct ServeArgs {
    /// HTTP address. Any address but loopback needs --token. [config: serve.listen; default 127.0.0.1:8080]
    #[arg(long, value_name = "ADDR:PORT")]
    listen: Option<SocketAddr>,
    /// Bearer token clients must send (`Authorization: Bearer TOKEN`, or `?token=` on the WebSocket/SSE routes). [config: serve.token]
    #[arg(long, env = "CALLPULSE_TOKEN", hide_env_values = true)]
    token: Option<String>,
    /// Also answer SIP calls here (UDP) and score them live, e.g. 127.0.0.1:5060; the other SIP settings come from [sip]. [config: serve.sip]
    #[arg(long, value_name = "ADDR:PORT")]
    sip: Option<SocketAddr>,
    /// RTP ports for SIP calls. [config: sip.rtp_ports; default 40000-40999]
    #[arg(long, value_parser = callpulse::telephony::listener::parse_ports, value_name = "LOW-HIGH")]
    rtp_ports: Option<(u16, u16)>,
    /// Role of the calling party on SIP calls. [config: sip.caller_role; default customer]
    #[arg(long, value_name = "ROLE")]
    caller_role: Option<Role>,
    /// Most concurrent SIP calls (more get 486 Busy Here). [config: sip.max_calls; default 16]
    #[arg(long)]
    max_calls: Option<usize>,
    /// End a SIP call when no RTP arrived for this long, seconds. [config: sip.rtp_timeout_s; default 30]
    #[arg(long, value_name = "S")]
    rtp_timeout_s: Option<f64>,
    /// Jitter buffer of SIP calls, ms. [config: sip.jitter_ms; default 100]
    #[arg(long, value_name = "MS")]
    jitter_ms: Option<u32>,
    /// Call history database (SQLite; created if missing). [config: serve.db; default callpulse-history.sqlite]
    #[arg(long, value_name = "FILE")]
    db: Option<PathBuf>,
    /// Keep no history (memory only: a restart forgets the calls, and finished calls past --max-finished-calls are gone). [config: serve.history = false]
    #[arg(long)]
    no_history: bool,
    /// Delete finished calls older than this many days from the history. [config: serve.retention_days; default 30]
    #[arg(long)]
    retention_days: Option<u32>,
    /// Largest WAV upload to POST /v1/score, MB. [config: serve.max_upload_mb; default 100]
    #[arg(long)]
    max_upload_mb: Option<u64>,
    /// A whole upload must arrive within this time, seconds. [config: serve.upload_timeout_s; default 300]
    #[arg(long, value_name = "S")]
    upload_timeout_s: Option<f64>,
    /// Uploads scored at once (more get 503). [config: serve.scoring_slots; default 2]
    #[arg(long)]
    scoring_slots: Option<usize>,
    /// Most open HTTP connections (more are refused). [config: serve.max_connections; default 256]
    #[arg(long)]
    max_connections: Option<usize>,
    /// Requests per second per client address (bursts of twice that). [config: serve.rate; default 50]
    #[arg(long)]
    rate: Option<f64>,
    /// A client must send its request headers within this time, seconds (slow clients are dropped). [config: serve.header_timeout_s; default 10]
    #[arg(long, value_name = "S")]
    header_timeout_s: Option<f64>,
    /// An upload may stall this long between chunks, seconds. [config: serve.body_idle_timeout_s; default 30]
    #[arg(long, value_name = "S")]
    body_idle_timeout_s: Option<f64>,
    /// Finished calls kept in memory; older ones are served from the history. [config: serve.max_finished_calls; default 256]
    #[arg(long, value_name = "N")]
    max_finished_calls: Option<usize>,
    /// A finished call leaves memory after this long, seconds. [config: serve.finished_ttl_s; default 600]
    #[arg(long, value_name = "S")]
    finished_ttl_s: Option<f64>,
    /// Events kept in memory per call. [config: serve.events_per_call; default 20000]
    #[arg(long, value_name = "N")]
    events_per_call: Option<usize>,
    /// Also replay this WAV file as a live call (real time, or --stream-speed times faster), e.g. to try the dashboard. Repeat for several calls at once. [config: serve.stream]
    #[arg(long, value_name = "FILE")]
    stream: Vec<PathBuf>,
    /// Replay speed for --stream. [config: serve.stream_speed; default 1]
    #[arg(long)]
    stream_speed: Option<f64>,
    /// Play each --stream file this many times back to back (one call). [config: serve.stream_loop; default 1]
    #[arg(long, value_name = "N")]
    stream_loop: Option<u32>,
    /// A WebSocket/SSE subscriber this many events behind is told it lagged and cut off. [config: serve.subscriber_buffer; default 1024]
    #[arg(long, value_name = "EVENTS")]
    subscriber_buffer: Option<usize>,
    /// Also score live audio from this input device (see `callpulse devices`; one channel). [config: serve.mic]
    #[arg(long, value_name = "DEVICE")]
    mic: Option<String>,
    /// Do not redact card/phone numbers and e-mail addresses (the server redacts by default). [config: serve.redact = false]
    #[arg(long)]
    no_redact: bool,
    /// Also show every worker's calls: follow `callpulse.events.>` on this
    /// NATS server (workers: `sip --nats`, `worker`), with the job queue in
    /// /metrics and /healthz. [config: cluster.nats]
    #[arg(long, value_name = "URL", env = "CALLPULSE_NATS")]
    nats: Option<String>,
    #[command(flatten)]
    models: ModelArgs,
}

impl ServeArgs {
    fn apply(&self, cfg: &mut Config) {
        self.models.apply(cfg);
        let s = &mut cfg.serve;
        set_some!(s, listen, retention_days, max_upload_mb, upload_timeout_s, scoring_slots,
            max_connections, rate, header_timeout_s, body_idle_timeout_s, max_finished_calls,
            finished_ttl_s, events_per_call, stream_speed, stream_loop, subscriber_buffer,
            db from self);
        if self.token.is_some() {
            s.token = self.token.clone();
        }
        if self.sip.is_some() {
            s.sip = self.sip;
        }
        if self.mic.is_some() {
            s.mic = self.mic.clone();
        }
        if !self.stream.is_empty() {
            s.stream = self.stream.clone();
        }
        s.history &= !self.no_history;
        s.redact &= !self.no_redact;
        if self.nats.is_some() {
            cfg.cluster.nats = self.nats.clone();
        }
        let p = &mut cfg.sip;
        set_some!(p, caller_role, max_calls, rtp_timeout_s, jitter_ms from self);
        if let Some((lo, hi)) = self.rtp_ports {
            p.rtp_ports = format!("{lo}-{hi}");
        }
        // The server redacts unless told not to.
        cfg.privacy.redact = cfg.serve.redact;
    }
}

fn serve_config(cfg: &Config) -> Result<ServeConfig> {
    let s = &cfg.serve;
    let secs = |name: &str, v: f64| seconds(name, v).map_err(anyhow::Error::msg);
    Ok(ServeConfig {
        listen: s.listen,
        token: s.token.clone().filter(|t| !t.is_empty()),
        max_upload: s.max_upload_mb * 1024 * 1024,
        max_connections: s.max_connections,
        rate_per_s: s.rate,
        header_timeout: secs("serve.header_timeout_s", s.header_timeout_s)?,
        body_idle_timeout: secs("serve.body_idle_timeout_s", s.body_idle_timeout_s)?,
        upload_timeout: secs("serve.upload_timeout_s", s.upload_timeout_s)?,
        scoring_slots: s.scoring_slots,
        db: s.history.then(|| s.db.clone()),
        retention_days: s.retention_days,
        limits: HubLimits {
            events_per_call: s.events_per_call,
            max_finished: s.max_finished_calls,
            finished_ttl: secs("serve.finished_ttl_s", s.finished_ttl_s)?,
        },
    })
}

/// The history database, pruned of calls past the retention.
fn open_history(scfg: &ServeConfig) -> Result<Option<History>> {
    let Some(p) = &scfg.db else { return Ok(None) };
    let h = History::open(p).map_err(|e| anyhow::anyhow!("history database {e}"))?;
    let keep_ms = scfg.retention_days as u64 * 86_400_000;
    h.write(Write::Prune(
        callpulse::event::now_unix_ms().saturating_sub(keep_ms),
    ));
    Ok(Some(h))
}

/// The SIP agent on a thread and runtime of its own (its handler is not Sync).
fn start_sip(
    cfg: &Config,
    addr: SocketAddr,
    spawner: Arc<Spawner>,
    stop: Arc<std::sync::atomic::AtomicBool>,
) -> Result<std::thread::JoinHandle<()>> {
    let mut ua_cfg = UaConfig::from_config(&cfg.sip, addr).map_err(anyhow::Error::msg)?;
    ua_cfg.pipelines = Some(spawner.gauge());
    let ua = UserAgent::new(ua_cfg, sip_handler(spawner));
    let t = std::thread::Builder::new()
        .name("sip".into())
        .spawn(move || {
            let rt = match tokio::runtime::Builder::new_current_thread()
                .enable_all()
                .build()
            {
                Ok(rt) => rt,
                Err(e) => return eprintln!("callpulse: SIP runtime: {e}"),
            };
            if let Err(e) = rt.block_on(ua.run(stop, |a| eprintln!("callpulse: SIP on udp {a}"))) {
                eprintln!("callpulse: SIP listener on {addr} failed: {e}");
            }
        })?;
    Ok(t)
}

/// Local sources: replayed files and a microphone, as live calls.
fn start_local(cfg: &Config, spawner: &Spawner) -> Result<()> {
    let s = &cfg.serve;
    for (i, f) in s.stream.iter().enumerate() {
        let stem = f
            .file_stem()
            .map(|s| s.to_string_lossy().to_string())
            .unwrap_or_else(|| "stream".into());
        let id = if s.stream.len() > 1 {
            format!("{stem}-{}", i + 1)
        } else {
            stem
        };
        let src = callpulse::capture::PacedWav::open(f, s.stream_speed, 20, s.stream_loop.max(1))?;
        spawner.spawn(&safe_call_id(&id), Box::new(src), None, None)?;
    }
    if let Some(dev) = &s.mic {
        let dev = (dev != "default").then_some(dev.as_str());
        let mic = callpulse::capture::mic::Mic::open(dev, Some(1), None)?;
        spawner.spawn("mic", Box::new(mic), None, None)?;
    }
    Ok(())
}

/// `--nats`: the workers' events into the hub, their heartbeats and the
/// queue into the metrics; the connection state into /healthz.
fn follow_nats(rt: &tokio::runtime::Runtime, url: &str, cfg: &Config, hub: Arc<Hub>) -> Result<()> {
    use callpulse::cluster;
    use callpulse::server::metrics::NatsState;
    let client = rt
        .block_on(cluster::connect(url, "callpulse-serve"))
        .map_err(anyhow::Error::msg)?;
    let c = rt
        .block_on(cluster::setup(client.clone(), &cfg.cluster))
        .map_err(anyhow::Error::msg)?;
    hub.with_nats(|n| {
        *n = Some(NatsState {
            connected: true,
            ..Default::default()
        })
    });
    let (h1, h2, h3) = (hub.clone(), hub.clone(), hub);
    rt.spawn(cluster::follow_events(
        client.clone(),
        move |e| h1.publish(&e),
        move |hb| {
            h2.with_nats(|n| {
                if let Some(n) = n.as_mut() {
                    n.workers
                        .insert(hb.worker.clone(), (hb, std::time::Instant::now()));
                    // Workers gone for 10 minutes leave the metrics.
                    n.workers
                        .retain(|_, (_, t)| t.elapsed() < Duration::from_secs(600));
                }
            })
        },
    ));
    rt.spawn(async move {
        loop {
            let q = cluster::queue_state(&c).await.ok();
            let up = client.connection_state() == async_nats::connection::State::Connected;
            h3.with_nats(|n| {
                if let Some(n) = n.as_mut() {
                    n.connected = up;
                    if let Some(q) = q {
                        n.queue = q;
                    }
                }
            });
            tokio::time::sleep(Duration::from_secs(2)).await;
        }
    });
    eprintln!("callpulse: following the calls of every worker on {url}");
    Ok(())
}

pub fn run(mut cfg: Config, a: ServeArgs) -> Result<i32> {
    a.apply(&mut cfg);
    cfg.validate()?;
    let scfg = serve_config(&cfg)?;
    server::check_bind(&scfg).map_err(anyhow::Error::msg)?;
    let stop = stop_on_signals()?;
    let engine = super::telephony::load_engine(&cfg)?;
    let hub = Hub::new(
        open_history(&scfg)?,
        scfg.limits,
        cfg.serve.subscriber_buffer,
    );
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
    if let Some(url) = cfg.cluster.nats.clone() {
        follow_nats(&rt, &url, &cfg, hub.clone())?;
    }
    let sinks = Arc::new(HubSinks(hub.clone()));
    // SIP calls end when the agent closes their media (it stops on the
    // signal); replayed files and the microphone stop on the signal.
    let sip_calls = live_spawner(&engine, &cfg, sinks.clone(), Arc::default());
    let local = live_spawner(&engine, &cfg, sinks, stop.clone());
    let ua = match cfg.serve.sip {
        Some(addr) => Some(start_sip(&cfg, addr, sip_calls.clone(), stop.clone())?),
        None => None,
    };
    start_local(&cfg, &local)?;
    let stop2 = stop.clone();
    let stopped = async move {
        while !stop2.load(Ordering::Relaxed) {
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
    };
    rt.block_on(server::serve(app, listener, stopped))?;
    // The agent ends its calls on the same stop flag; then their summaries.
    if let Some(t) = ua {
        let _ = t.join();
    }
    sip_calls.join();
    local.join();
    drop(rt);
    if !hub.flush(Duration::from_secs(10)) {
        eprintln!("callpulse: the history did not finish writing in 10 s");
    }
    Ok(0)
}
