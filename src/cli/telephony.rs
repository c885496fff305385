//! `sip`, `rtp`, `pcap` and `rtp-send`: parse the flags into the config,
//! then hand over to the library (`callpulse::telephony`).

use std::fs::File;
use std::io::{BufWriter, Write};
use std::net::{IpAddr, SocketAddr, SocketAddrV4};
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;

use anyhow::{Context, Result};
use clap::{Args, ValueEnum};

use callpulse::config::{seconds, Config};
use callpulse::event::Role;
use callpulse::models::{self, Component};
use callpulse::pipeline::{CallOutcome, Engine, RunOptions};
use callpulse::sink::calls::{CallOutput, CallSinks};
use callpulse::sink::Format;
use callpulse::telephony::capture::{self, CallDecoder, CaptureOptions, PcapCall};
use callpulse::telephony::jitter::JitterConfig;
use callpulse::telephony::listener::{self, parse_ports, RtpListenConfig};
use callpulse::telephony::sender::{self, Impairment};
use callpulse::telephony::spawner::{CallNote, Notify, Spawner};
use callpulse::telephony::traffic::{self, SendOptions, Traffic};
use callpulse::telephony::ua::{NewCall, UaConfig, UserAgent};

use super::live::stop_on_signals;
use super::ModelArgs;

/// Flags that were given (`Some`) over the config's values:
/// `set_some!(cfg.sip, jitter_ms, max_calls from args)`.
macro_rules! set_some {
    ($dst:expr, $($field:ident),+ from $src:expr) => {
        $(if let Some(v) = $src.$field.clone() { $dst.$field = v; })+
    };
}
pub(super) use set_some;

/// Output flags shared by the telephony commands.
#[derive(Args, Debug, Clone)]
pub struct CallOut {
    /// Output format: jsonl (one event per line, all calls interleaved; every event carries its call_id) or table. [config: sip.format / rtp.format; default jsonl]
    #[arg(short, long, value_enum)]
    format: Option<Format>,
    /// Write events here instead of stdout. [config: sip.out / rtp.out]
    #[arg(short, long, value_name = "FILE")]
    out: Option<PathBuf>,
    /// Also write each call's events to DIR/<call-id>.jsonl (a repeated id gets a suffix: -2, -3, ...). [config: sip.out_dir / rtp.out_dir]
    #[arg(long, value_name = "DIR")]
    out_dir: Option<PathBuf>,
    /// Role of the calling party: customer (inbound support lines) or agent (outbound campaigns). [config: sip.caller_role; default customer]
    #[arg(long, value_name = "ROLE")]
    caller_role: Option<Role>,
    /// Redact card/phone numbers, e-mail addresses and other identifiers. [config: privacy.redact]
    #[arg(long)]
    redact: bool,
    #[command(flatten)]
    models: ModelArgs,
}

/// Where the events of a command go.
struct Outputs {
    format: Format,
    out: Option<PathBuf>,
    out_dir: Option<PathBuf>,
}

impl CallOut {
    fn apply(&self, cfg: &mut Config) {
        self.models.apply(cfg);
        if self.redact {
            cfg.privacy.redact = true;
        }
        if let Some(r) = self.caller_role {
            cfg.sip.caller_role = r;
        }
    }

    /// The flags over the configured (or default) outputs.
    fn outputs(&self, format: Format, out: &Option<PathBuf>, dir: &Option<PathBuf>) -> Outputs {
        Outputs {
            format: self.format.unwrap_or(format),
            out: self.out.clone().or_else(|| out.clone()),
            out_dir: self.out_dir.clone().or_else(|| dir.clone()),
        }
    }
}

fn open_output(o: &Outputs) -> Result<CallOutput> {
    let w: Box<dyn Write + Send> = match &o.out {
        Some(p) => Box::new(BufWriter::new(
            File::create(p).with_context(|| format!("cannot create {}", p.display()))?,
        )),
        None => Box::new(BufWriter::new(std::io::stdout())),
    };
    Ok(CallOutput::new(w, o.format, o.out_dir.as_deref())?)
}

pub(super) fn load_engine(cfg: &Config) -> Result<Engine> {
    let paths = models::ensure(cfg, &Component::for_scoring(cfg), false)?;
    Ok(Engine::load(cfg, &paths)?)
}

fn roles_text(roles: &[Role]) -> String {
    roles
        .iter()
        .map(|r| r.as_str())
        .collect::<Vec<_>>()
        .join(" + ")
}

/// Calls' starts and ends on stderr.
pub(super) fn print_notes() -> Notify {
    Arc::new(|n| match n {
        CallNote::Started { id } => eprintln!("callpulse: call {id} started"),
        CallNote::Ended { id, outcome, wall } => eprintln!(
            "callpulse: call {id} ended ({}): {:.1} s of audio, {} turns, {:.1} s wall",
            outcome.summary.stats.ended,
            outcome.summary.duration,
            outcome.summary.turns,
            wall.as_secs_f64()
        ),
        CallNote::Failed { id, error } => eprintln!("callpulse: call {id} failed: {error}"),
    })
}

/// A spawner of live calls whose pipelines stop only when their media ends.
pub(super) fn live_spawner(
    engine: &Engine,
    cfg: &Config,
    sinks: Arc<dyn CallSinks>,
    stop: Arc<AtomicBool>,
) -> Arc<Spawner> {
    let template = RunOptions::live("call", cfg, stop);
    Arc::new(Spawner::new(
        Arc::new(engine.clone()),
        sinks,
        template,
        print_notes(),
    ))
}

/// The SIP user agent's handler: each answered call to the spawner.
pub(super) fn sip_handler(spawner: Arc<Spawner>) -> Box<dyn FnMut(NewCall) + Send> {
    Box::new(move |c: NewCall| {
        eprintln!(
            "callpulse: call {} answered ({})",
            c.call_id,
            roles_text(&c.roles)
        );
        if let Err(e) = spawner.spawn(&c.call_id, Box::new(c.source), Some(c.roles), c.agent_id) {
            eprintln!("callpulse: call {}: {e}", c.call_id);
        }
    })
}

fn ports_arg(s: &str) -> Result<String, String> {
    parse_ports(s).map(|(a, b)| format!("{a}-{b}"))
}

// ---------------------------------------------------------------- sip

#[derive(Args, Debug)]
pub struct SipArgs {
    /// SIP address to listen on (UDP). Use 0.0.0.0:5060 to take calls from other hosts. [config: sip.listen; default 127.0.0.1:5060]
    #[arg(long, value_name = "ADDR:PORT")]
    listen: Option<SocketAddr>,
    /// RTP ports to allocate from (two consecutive even ports per two-party call). [config: sip.rtp_ports; default 40000-40999]
    #[arg(long, value_parser = ports_arg, value_name = "LOW-HIGH")]
    rtp_ports: Option<String>,
    /// Address written in SDP answers and bound for RTP (default: the listen address). [config: sip.media_ip]
    #[arg(long, value_name = "IP")]
    media_ip: Option<IpAddr>,
    /// Jitter buffer: packets may arrive this late and still be placed, ms. [config: sip.jitter_ms; default 100]
    #[arg(long, value_name = "MS")]
    jitter_ms: Option<u32>,
    /// Ring this long before answering (CANCEL can end the call meanwhile), ms. [config: sip.answer_delay_ms; default 0]
    #[arg(long, value_name = "MS")]
    answer_delay_ms: Option<u64>,
    /// End a call when no RTP arrived for this long, seconds. [config: sip.rtp_timeout_s; default 30]
    #[arg(long, value_name = "S")]
    rtp_timeout_s: Option<f64>,
    /// Most concurrent calls (more get 486 Busy Here). [config: sip.max_calls; default 16]
    #[arg(long)]
    max_calls: Option<usize>,
    /// Partial results every N ms of a turn; 0 = none. [config: live.partial_interval_ms]
    #[arg(long, value_name = "MS")]
    partial_interval_ms: Option<u32>,
    /// Stop after this many seconds (end the calls, write their summaries). [config: sip.seconds]
    #[arg(long, value_name = "S")]
    seconds: Option<f64>,
    /// Also publish every call's events on NATS (`callpulse.events.<call_id>`)
    /// for `serve --nats`. [config: cluster.nats]
    #[arg(long, value_name = "URL", env = "CALLPULSE_NATS")]
    nats: Option<String>,
    #[command(flatten)]
    out: CallOut,
}

impl SipArgs {
    fn apply(&self, cfg: &mut Config) {
        self.out.apply(cfg);
        if self.nats.is_some() {
            cfg.cluster.nats = self.nats.clone();
        }
        let s = &mut cfg.sip;
        set_some!(s, listen, rtp_ports, jitter_ms, answer_delay_ms, rtp_timeout_s, max_calls from self);
        if self.media_ip.is_some() {
            s.media_ip = self.media_ip;
        }
        if self.seconds.is_some() {
            s.seconds = self.seconds;
        }
        if let Some(ms) = self.partial_interval_ms {
            cfg.live.partial_interval_ms = ms;
        }
    }
}

pub fn sip(mut cfg: Config, a: SipArgs) -> Result<i32> {
    a.apply(&mut cfg);
    cfg.validate()?;
    let mut ua_cfg = UaConfig::from_config(&cfg.sip, cfg.sip.listen).map_err(anyhow::Error::msg)?;
    let outputs = a
        .out
        .outputs(cfg.sip.format, &cfg.sip.out, &cfg.sip.out_dir);
    let stop = stop_on_signals()?;
    // NATS first: a wrong URL fails before the models load.
    let nats_rt = match &cfg.cluster.nats {
        Some(url) => {
            let rt = tokio::runtime::Builder::new_multi_thread()
                .worker_threads(1)
                .enable_all()
                .build()
                .context("cannot start the NATS runtime")?;
            let client = rt
                .block_on(callpulse::cluster::connect(url, "callpulse-sip"))
                .map_err(anyhow::Error::msg)?;
            eprintln!("callpulse: publishing call events on {url}");
            Some((rt, client))
        }
        None => None,
    };
    let engine = load_engine(&cfg)?;
    let out = Arc::new(open_output(&outputs)?);
    let sinks: Arc<dyn CallSinks> = match &nats_rt {
        Some((rt, client)) => Arc::new(callpulse::cluster::NatsSinks {
            inner: out.clone(),
            client: client.clone(),
            handle: rt.handle().clone(),
        }),
        None => out.clone(),
    };
    // The agent ends each call's media; the pipelines then finish.
    let spawner = live_spawner(&engine, &cfg, sinks, Arc::default());
    if let Some(s) = cfg.sip.seconds {
        let d = seconds("sip.seconds", s).map_err(anyhow::Error::msg)?;
        let stop = stop.clone();
        std::thread::spawn(move || {
            std::thread::sleep(d);
            stop.store(true, Ordering::Relaxed);
        });
    }
    ua_cfg.pipelines = Some(spawner.gauge());
    let ports = ua_cfg.rtp_ports;
    let ua = UserAgent::new(ua_cfg, sip_handler(spawner.clone()));
    let rt = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .context("cannot start the network runtime")?;
    let stats = rt
        .block_on(ua.run(stop.clone(), |addr| {
            eprintln!(
                "callpulse: SIP on udp {addr}, RTP ports {}-{}; Ctrl-C stops",
                ports.0, ports.1
            )
        }))
        .with_context(|| format!("SIP listener on {}", cfg.sip.listen))?;
    // The calls' media are closed: each pipeline drains and writes its summary.
    spawner.join();
    drop(rt);
    out.finish().context("cannot flush events")?;
    if let Some((rt, client)) = nats_rt {
        let _ = rt.block_on(tokio::time::timeout(
            std::time::Duration::from_secs(5),
            client.flush(),
        ));
    }
    eprintln!("callpulse: sip stats {}", serde_json::to_string(&stats)?);
    Ok(0)
}

// ---------------------------------------------------------------- rtp

#[derive(Args, Debug)]
pub struct RtpArgs {
    /// Where to receive RTP: IP:PORT or IP:LOW-HIGH. In a range, the even ports carry RTP (odd ones are RTCP by convention and are not bound). [config: rtp.listen]
    #[arg(long, value_name = "IP:PORT[-PORT]")]
    listen: Option<String>,
    /// Map a port or an SSRC to a role: `40000=agent`, `ssrc:0x1a2b=customer`. Repeatable. Default: one port = one leg (role from --mono-role); two ports = agent, customer in port order. [config: rtp.map]
    #[arg(long = "map", value_name = "KEY=ROLE")]
    maps: Vec<String>,
    /// Role of a single unmapped port. [config: rtp.mono_role; default unknown]
    #[arg(long, value_name = "ROLE")]
    mono_role: Option<Role>,
    /// A call ends after this long without packets, seconds; the next packet starts a new call. [config: rtp.idle_s; default 5]
    #[arg(long, value_name = "S")]
    idle_s: Option<f64>,
    /// Exit after this many calls (0 = keep listening). [config: rtp.max_calls; default 0]
    #[arg(long)]
    max_calls: Option<u32>,
    /// Jitter buffer: packets may arrive this late and still be placed, ms. [config: rtp.jitter_ms; default 100]
    #[arg(long, value_name = "MS")]
    jitter_ms: Option<u32>,
    /// Call id prefix (calls are PREFIX-1, PREFIX-2, ...). [config: rtp.call_id; default rtp]
    #[arg(long)]
    call_id: Option<String>,
    /// Partial results every N ms of a turn; 0 = none. [config: live.partial_interval_ms]
    #[arg(long, value_name = "MS")]
    partial_interval_ms: Option<u32>,
    #[command(flatten)]
    out: CallOut,
}

impl RtpArgs {
    fn apply(&self, cfg: &mut Config) {
        self.out.apply(cfg);
        let r = &mut cfg.rtp;
        set_some!(r, mono_role, idle_s, max_calls, jitter_ms, call_id from self);
        if self.listen.is_some() {
            r.listen = self.listen.clone();
        }
        if !self.maps.is_empty() {
            r.map = self.maps.clone();
        }
        if let Some(ms) = self.partial_interval_ms {
            cfg.live.partial_interval_ms = ms;
        }
    }
}

pub fn rtp(mut cfg: Config, a: RtpArgs) -> Result<i32> {
    a.apply(&mut cfg);
    cfg.validate()?;
    let r = &cfg.rtp;
    let listen = r
        .listen
        .as_deref()
        .context("--listen IP:PORT (or rtp.listen in the config) is required")?;
    let pair = (cfg.roles.channel0, cfg.roles.channel1);
    let mut lc = RtpListenConfig::new(listen, &r.map, r.mono_role, pair)?;
    lc.idle = seconds("rtp.idle_s", r.idle_s).map_err(anyhow::Error::msg)?;
    lc.max_calls = r.max_calls;
    lc.jitter.window_ms = r.jitter_ms;
    lc.call_id = r.call_id.clone();
    let outputs = a.out.outputs(r.format, &r.out, &r.out_dir);
    let stop = stop_on_signals()?;
    let engine = load_engine(&cfg)?;
    let out = Arc::new(open_output(&outputs)?);
    let spawner = live_spawner(&engine, &cfg, out.clone(), Arc::default());
    let stats = listener::listen(&lc, &spawner, &stop, || {
        eprintln!(
            "callpulse: RTP on udp {} ports {:?}; legs {}; Ctrl-C stops",
            lc.ip,
            lc.ports,
            roles_text(&lc.roles)
        )
    })?;
    out.finish().context("cannot flush events")?;
    if stats.unmapped > 0 {
        eprintln!(
            "callpulse: {} packets matched no --map entry and were ignored",
            stats.unmapped
        );
    }
    if stats.dropped > 0 {
        eprintln!(
            "callpulse: {} packets dropped because the pipeline fell behind",
            stats.dropped
        );
    }
    Ok(0)
}

// ---------------------------------------------------------------- pcap

#[derive(Args, Debug)]
pub struct PcapArgs {
    /// Capture file (pcap or pcapng).
    #[arg(value_name = "FILE")]
    file: PathBuf,
    /// Also write each call's decoded audio to DIR/<call-id>.wav (8 kHz, one channel per leg).
    #[arg(long, value_name = "DIR")]
    wav_dir: Option<PathBuf>,
    /// A flow needs this many G.711 packets to count as a call leg.
    #[arg(long, default_value_t = 25)]
    min_packets: u64,
    /// Jitter buffer: packets may arrive this late (capture time) and still be placed, ms.
    #[arg(long, default_value_t = 200, value_name = "MS")]
    jitter_ms: u32,
    /// Write the capture report (calls found, packets used and skipped) as JSON here.
    #[arg(long, value_name = "FILE")]
    report: Option<PathBuf>,
    /// Find and decode the calls (with --wav-dir, --report) but do not score them: one JSON line per call (legs, duration, transport counters). Needs no models.
    #[arg(long)]
    decode_only: bool,
    #[command(flatten)]
    out: CallOut,
}

fn print_capture(path: &Path, rep: &capture::CaptureReport) {
    let skipped: u64 = rep.skipped.values().sum();
    let why = if rep.skipped.is_empty() {
        String::new()
    } else {
        let v: Vec<String> = rep
            .skipped
            .iter()
            .map(|(k, v)| format!("{k}: {v}"))
            .collect();
        format!(" ({})", v.join(", "))
    };
    eprintln!(
        "callpulse: {}: {} frames, {} UDP, {} SIP messages, {} RTP packets, {} skipped{why}; {} call{} found ({} through SIP)",
        path.display(),
        rep.frames,
        rep.udp,
        rep.sip_messages,
        rep.rtp_packets,
        skipped,
        rep.calls,
        if rep.calls == 1 { "" } else { "s" },
        rep.calls_with_sip
    );
}

fn packets_used(rtp: &Option<Vec<callpulse::event::RtpLegStats>>) -> u64 {
    rtp.iter().flatten().map(|l| l.packets).sum()
}

pub fn pcap(mut cfg: Config, a: PcapArgs) -> Result<i32> {
    a.out.apply(&mut cfg);
    let opts = CaptureOptions {
        jitter: JitterConfig {
            window_ms: a.jitter_ms,
            ..Default::default()
        },
        caller_role: a.out.caller_role.unwrap_or(Role::Customer),
        min_packets: a.min_packets.max(1),
    };
    let read_err = || format!("cannot read {}", a.file.display());
    let (calls, mut rep) = capture::find_calls(&a.file, &opts).with_context(read_err)?;
    print_capture(&a.file, &rep);
    if let Some(e) = &rep.error {
        eprintln!("callpulse: the capture ends in an error: {e}; the calls before it are scored");
    }
    let mut failed = rep.error.is_some();
    if calls.is_empty() {
        eprintln!(
            "callpulse: no calls found (no G.711 RTP flow of {} packets or more)",
            opts.min_packets
        );
        failed = true;
    }
    if let Some(d) = &a.wav_dir {
        std::fs::create_dir_all(d).with_context(|| format!("cannot create {}", d.display()))?;
    }
    // One call at a time, each decoded while it is scored.
    let source = |k: usize| {
        let dec = CallDecoder::new(&calls[k], &calls[..k], opts.jitter);
        let wav = a
            .wav_dir
            .as_ref()
            .map(|d| d.join(format!("{}.wav", calls[k].call_id)));
        PcapCall::new(&a.file, dec, wav)
    };
    if a.decode_only {
        for (k, c) in calls.iter().enumerate() {
            let d = capture::drain(Box::new(source(k)))?;
            rep.rtp_used += packets_used(&d.rtp);
            failed |= d.error.is_some();
            println!(
                "{}",
                serde_json::json!({
                    "call_id": c.call_id, "sip": c.sip, "roles": c.roles,
                    "duration_s": d.frames as f64 / d.rate as f64,
                    "rtp": d.rtp, "error": d.error,
                })
            );
        }
    } else if !calls.is_empty() {
        let engine = load_engine(&cfg)?;
        let outputs = a.out.outputs(Format::Jsonl, &None, &None);
        let out = open_output(&outputs)?;
        for (k, c) in calls.iter().enumerate() {
            let (id, mut sink) = out.open(&c.call_id)?;
            let mut ro = RunOptions::offline(&id);
            ro.roles = Some(c.roles.clone());
            match engine.run(Box::new(source(k)), &ro, &mut sink, &|_, _| {}) {
                Ok(o) => {
                    rep.rtp_used += packets_used(&o.summary.stats.rtp);
                    failed |= o.input_error.is_some();
                    print_scored(&id, &c.roles, &o);
                }
                Err(e) => {
                    eprintln!("callpulse: call {id} failed: {e}");
                    failed = true;
                }
            }
        }
        out.finish().context("cannot flush events")?;
    }
    eprintln!("callpulse: {} RTP packets used", rep.rtp_used);
    if let Some(p) = &a.report {
        std::fs::write(p, serde_json::to_string_pretty(&rep)?)
            .with_context(|| format!("cannot write {}", p.display()))?;
    }
    Ok(i32::from(failed))
}

fn print_scored(id: &str, roles: &[Role], o: &CallOutcome) {
    eprintln!(
        "callpulse: call {id}: {} leg{} ({}), {:.1} s, {} turns",
        roles.len(),
        if roles.len() == 1 { "" } else { "s" },
        roles_text(roles),
        o.summary.duration,
        o.summary.turns
    );
}

// ---------------------------------------------------------------- rtp-send

#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum)]
pub enum Codec {
    /// G.711 mu-law (payload type 0).
    Pcmu,
    /// G.711 A-law (payload type 8).
    Pcma,
}

#[derive(Args, Debug)]
pub struct RtpSendArgs {
    /// WAV file: each channel becomes one RTP stream (resampled to 8 kHz).
    #[arg(value_name = "FILE")]
    file: PathBuf,
    /// Destinations, one per channel: `127.0.0.1:40000,127.0.0.1:40002`.
    #[arg(
        long,
        value_delimiter = ',',
        value_name = "ADDR:PORT,...",
        required_unless_present = "pcap"
    )]
    to: Vec<SocketAddrV4>,
    /// Write the packets to this pcap instead of sending them (timestamps as if sent in real time).
    #[arg(long, value_name = "OUT")]
    pcap: Option<PathBuf>,
    /// Codec.
    #[arg(long, value_enum, default_value_t = Codec::Pcmu)]
    codec: Codec,
    /// Sending speed: 1 = real time.
    #[arg(long, default_value_t = 1.0)]
    speed: f64,
    /// Drop this percentage of packets (never a stream's first or last).
    #[arg(long, default_value_t = 0.0, value_name = "PCT")]
    loss: f64,
    /// Swap this percentage of packets with their successor.
    #[arg(long, default_value_t = 0.0, value_name = "PCT")]
    reorder: f64,
    /// Send this percentage of packets twice.
    #[arg(long, default_value_t = 0.0, value_name = "PCT")]
    duplicate: f64,
    /// Seed for the impairments and the initial sequence numbers and timestamps.
    #[arg(long, default_value_t = 1)]
    seed: u64,
    /// Source addresses, one per channel (default 127.0.0.1:7000, :7002, ...).
    #[arg(long, value_delimiter = ',', value_name = "ADDR:PORT,...")]
    from: Vec<SocketAddrV4>,
    /// With --pcap: also write the SIP dialog of a plain call (INVITE/200/ACK ... BYE) in which
    /// channel --caller-channel calls the other, each party's RTP flowing to the port its SDP names.
    #[arg(long, requires = "pcap", conflicts_with_all = ["to", "from"])]
    sip: bool,
    /// With --sip: the channel that carries the caller.
    #[arg(long, default_value_t = 1, requires = "sip")]
    caller_channel: usize,
}

pub fn rtp_send(a: RtpSendArgs) -> Result<i32> {
    traffic::check(a.loss, a.reorder, a.duplicate, a.speed).map_err(anyhow::Error::msg)?;
    let legs =
        sender::read_legs_8k(&a.file).map_err(|e| anyhow::anyhow!("{}: {e}", a.file.display()))?;
    let o = SendOptions {
        payload_type: if a.codec == Codec::Pcma { 8 } else { 0 },
        impairment: Impairment {
            loss: a.loss / 100.0,
            reorder: a.reorder / 100.0,
            duplicate: a.duplicate / 100.0,
            seed: a.seed,
        },
        to: a.to.clone(),
        from: a.from.clone(),
        sip_caller: a.sip.then_some(a.caller_channel),
    };
    let t = Traffic::new(&legs, &o).map_err(|e| anyhow::anyhow!("{}: {e}", a.file.display()))?;
    match &a.pcap {
        Some(p) => t
            .write_pcap(p)
            .with_context(|| format!("cannot write {}", p.display()))?,
        None => t.send(a.speed).context("cannot open a UDP socket")?,
    }
    println!(
        "{}",
        serde_json::to_string(&serde_json::json!({ "streams": t.streams }))?
    );
    Ok(0)
}
