//! `sip`, `rtp`, `pcap` and `rtp-send`: telephony in and out.

use std::collections::HashMap;
use std::fs::File;
use std::io::{BufWriter, Write};
use std::net::{IpAddr, SocketAddr, SocketAddrV4};
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use anyhow::{bail, Context, Result};
use clap::{Args, ValueEnum};

use callpulse::capture::{Memory, Source};
use callpulse::config::Config;
use callpulse::event::{Event, Role};
use callpulse::models::{self, Component};
use callpulse::pipeline::{Engine, RunOptions};
use callpulse::sink::{EventWriter, Format};
use callpulse::telephony::call::{Packet, RtpSource, PACKET_QUEUE};
use callpulse::telephony::capture::{self, CaptureOptions};
use callpulse::telephony::jitter::JitterConfig;
use callpulse::telephony::sender::{self, Impairment, Rng};
use callpulse::telephony::ua::{UaConfig, UserAgent};

use super::live::stop_on_signals;
use super::ModelArgs;

/// Output flags shared by the telephony commands.
#[derive(Args, Debug, Clone)]
pub struct CallOut {
    /// Output format: jsonl (one event per line, all calls interleaved; every event carries its call_id) or table.
    #[arg(short, long, value_enum, default_value_t = Format::Jsonl)]
    format: Format,
    /// Write events here instead of stdout.
    #[arg(short, long, value_name = "FILE")]
    out: Option<PathBuf>,
    /// Also write each call's events to DIR/<call-id>.jsonl.
    #[arg(long, value_name = "DIR")]
    out_dir: Option<PathBuf>,
    /// Role of the calling party: customer (inbound support lines) or agent (outbound campaigns).
    #[arg(long, default_value = "customer", value_name = "ROLE")]
    caller_role: Role,
    /// Redact card/phone numbers, e-mail addresses and other identifiers. [config: privacy.redact]
    #[arg(long)]
    redact: bool,
    #[command(flatten)]
    models: ModelArgs,
}

type SharedWriter = Arc<Mutex<EventWriter<Box<dyn Write + Send>>>>;

struct Output {
    all: SharedWriter,
    dir: Option<PathBuf>,
}

impl Output {
    fn open(o: &CallOut, live: bool) -> Result<Self> {
        let ok = if live {
            matches!(o.format, Format::Jsonl | Format::Table)
        } else {
            true
        };
        if !ok {
            bail!("live output is jsonl or table");
        }
        let w: Box<dyn Write + Send> = match &o.out {
            Some(p) => Box::new(BufWriter::new(
                File::create(p).with_context(|| format!("cannot create {}", p.display()))?,
            )),
            None => Box::new(BufWriter::new(std::io::stdout())),
        };
        if let Some(d) = &o.out_dir {
            std::fs::create_dir_all(d).with_context(|| format!("cannot create {}", d.display()))?;
        }
        Ok(Output {
            all: Arc::new(Mutex::new(EventWriter::new(w, o.format))),
            dir: o.out_dir.clone(),
        })
    }

    /// A sink for one call: every event to the shared writer (flushed) and
    /// to the call's own file.
    fn call_sink(&self, call_id: &str) -> Result<impl FnMut(Event) + Send> {
        let mut own = match &self.dir {
            Some(d) => {
                let p = d.join(format!("{call_id}.jsonl"));
                Some(BufWriter::new(
                    File::create(&p).with_context(|| format!("cannot create {}", p.display()))?,
                ))
            }
            None => None,
        };
        let all = self.all.clone();
        let mut failed = false;
        Ok(move |e: Event| {
            if let Some(f) = own.as_mut() {
                let line = serde_json::to_string(&e).unwrap_or_default();
                let _ = writeln!(f, "{line}").and_then(|_| f.flush());
            }
            if let Ok(mut w) = all.lock() {
                if let Err(err) = w.write(&e).and_then(|_| w.flush()) {
                    if !failed {
                        eprintln!("callpulse: cannot write events: {err}");
                        failed = true;
                    }
                }
            }
        })
    }

    fn finish(&self) -> Result<()> {
        if let Ok(mut w) = self.all.lock() {
            w.flush().context("cannot flush events")?;
        }
        Ok(())
    }
}

fn prepare(cfg: &mut Config, o: &CallOut) -> Result<Engine> {
    o.models.apply(cfg);
    if o.redact {
        cfg.privacy.redact = true;
    }
    cfg.validate()?;
    let paths = models::ensure(cfg, &Component::for_scoring(cfg), false)?;
    Ok(Engine::load(cfg, &paths)?)
}

/// Start one live call's pipeline on its own thread.
fn spawn_call(
    engine: &Engine,
    cfg: &Config,
    out: &Output,
    source: Box<dyn Source>,
    call_id: String,
    roles: Vec<Role>,
    stop: Arc<AtomicBool>,
) -> Result<std::thread::JoinHandle<()>> {
    let engine = engine.clone();
    let mut opts = RunOptions::live(&call_id, cfg, stop);
    opts.roles = Some(roles);
    let mut sink = out.call_sink(&call_id)?;
    let h = std::thread::Builder::new()
        .name(format!("call-{}", &call_id[..call_id.len().min(10)]))
        .spawn(move || {
            let t = Instant::now();
            match engine.run(source, &opts, &mut sink, &|_, _| {}) {
                Ok(o) => eprintln!(
                    "callpulse: call {call_id} ended ({}): {:.1} s of audio, {} turns, {:.1} s wall",
                    o.summary.stats.ended,
                    o.summary.duration,
                    o.summary.turns,
                    t.elapsed().as_secs_f64()
                ),
                Err(e) => eprintln!("callpulse: call {call_id} failed: {e}"),
            }
        })
        .context("cannot start a call thread")?;
    Ok(h)
}

pub(super) fn parse_ports(s: &str) -> Result<(u16, u16), String> {
    let (a, b) = match s.split_once('-') {
        Some((a, b)) => (a, b),
        None => (s, s),
    };
    let a: u16 = a.trim().parse().map_err(|_| format!("bad port '{a}'"))?;
    let b: u16 = b.trim().parse().map_err(|_| format!("bad port '{b}'"))?;
    if a == 0 || b < a {
        return Err(format!(
            "bad port range '{s}': expected LOW-HIGH with 0 < LOW <= HIGH"
        ));
    }
    Ok((a, b))
}

fn runtime() -> Result<tokio::runtime::Runtime> {
    tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .context("cannot start the network runtime")
}

// ---------------------------------------------------------------- sip

#[derive(Args, Debug)]
pub struct SipArgs {
    /// SIP address to listen on (UDP). Use 0.0.0.0:5060 to take calls from other hosts.
    #[arg(long, default_value = "127.0.0.1:5060", value_name = "ADDR:PORT")]
    listen: SocketAddr,
    /// RTP ports to allocate from (two consecutive even ports per two-party call).
    #[arg(long, default_value = "40000-40999", value_parser = parse_ports, value_name = "LOW-HIGH")]
    rtp_ports: (u16, u16),
    /// Address written in SDP answers and bound for RTP (default: the listen address).
    #[arg(long, value_name = "IP")]
    media_ip: Option<IpAddr>,
    /// Jitter buffer: packets may arrive this late and still be placed, ms.
    #[arg(long, default_value_t = 100, value_name = "MS")]
    jitter_ms: u32,
    /// Ring this long before answering (CANCEL can end the call meanwhile), ms.
    #[arg(long, default_value_t = 0, value_name = "MS")]
    answer_delay_ms: u64,
    /// End a call when no RTP arrived for this long, seconds.
    #[arg(long, default_value_t = 30.0, value_name = "S")]
    rtp_timeout_s: f64,
    /// Most concurrent calls (more get 486 Busy Here).
    #[arg(long, default_value_t = 16)]
    max_calls: usize,
    /// Partial results every N ms of a turn; 0 = none. [config: live.partial_interval_ms]
    #[arg(long, value_name = "MS")]
    partial_interval_ms: Option<u32>,
    /// Stop after this many seconds (end the calls, write their summaries).
    #[arg(long, value_name = "S")]
    seconds: Option<f64>,
    #[command(flatten)]
    out: CallOut,
}

pub fn sip(mut cfg: Config, a: SipArgs) -> Result<i32> {
    if let Some(ms) = a.partial_interval_ms {
        cfg.live.partial_interval_ms = ms;
    }
    if !(a.rtp_timeout_s.is_finite() && a.rtp_timeout_s > 0.0) {
        bail!("--rtp-timeout-s must be a positive number");
    }
    if a.max_calls == 0 {
        bail!("--max-calls must be at least 1");
    }
    let stop = stop_on_signals()?;
    let engine = prepare(&mut cfg, &a.out)?;
    let out = Arc::new(Output::open(&a.out, true)?);
    let ua_cfg = UaConfig {
        listen: a.listen,
        media_ip: a.media_ip,
        rtp_ports: a.rtp_ports,
        jitter: JitterConfig {
            window_ms: a.jitter_ms,
            ..Default::default()
        },
        caller_role: a.out.caller_role,
        answer_delay: Duration::from_millis(a.answer_delay_ms),
        rtp_timeout: Duration::from_secs_f64(a.rtp_timeout_s),
        max_calls: a.max_calls,
    };
    let threads: Arc<Mutex<Vec<std::thread::JoinHandle<()>>>> = Arc::default();
    let call_stop = Arc::new(AtomicBool::new(false));
    let handler = {
        let (engine, cfg, out, threads, call_stop) = (
            engine.clone(),
            cfg.clone(),
            out.clone(),
            threads.clone(),
            call_stop.clone(),
        );
        Box::new(move |c: callpulse::telephony::ua::NewCall| {
            eprintln!(
                "callpulse: call {} answered ({})",
                c.call_id,
                c.roles
                    .iter()
                    .map(|r| r.as_str())
                    .collect::<Vec<_>>()
                    .join(" + ")
            );
            match spawn_call(
                &engine,
                &cfg,
                &out,
                Box::new(c.source),
                c.call_id,
                c.roles,
                call_stop.clone(),
            ) {
                Ok(h) => threads.lock().expect("threads").push(h),
                Err(e) => eprintln!("callpulse: {e:#}"),
            }
        })
    };
    if let Some(s) = a.seconds {
        let stop = stop.clone();
        std::thread::spawn(move || {
            std::thread::sleep(Duration::from_secs_f64(s));
            stop.store(true, Ordering::Relaxed);
        });
    }
    let ua = UserAgent::new(ua_cfg, handler);
    let rt = runtime()?;
    let stats = rt
        .block_on(ua.run(stop.clone(), |addr| {
            eprintln!(
                "callpulse: SIP on udp {addr}, RTP ports {}-{}; Ctrl-C stops",
                a.rtp_ports.0, a.rtp_ports.1
            )
        }))
        .with_context(|| format!("SIP listener on {}", a.listen))?;
    // The calls' media are closed: each pipeline drains and writes its summary.
    let hs: Vec<_> = std::mem::take(&mut *threads.lock().expect("threads"));
    for h in hs {
        let _ = h.join();
    }
    drop(rt);
    out.finish()?;
    eprintln!("callpulse: sip stats {}", serde_json::to_string(&stats)?);
    Ok(0)
}

// ---------------------------------------------------------------- rtp

#[derive(Args, Debug)]
pub struct RtpArgs {
    /// Where to receive RTP: IP:PORT or IP:LOW-HIGH. In a range, the even ports carry RTP (odd ones are RTCP by convention and are not bound).
    #[arg(long, value_name = "IP:PORT[-PORT]")]
    listen: String,
    /// Map a port or an SSRC to a role: `40000=agent`, `ssrc:0x1a2b=customer`. Repeatable. Default: one port = one leg (role from --mono-role); two ports = agent, customer in port order.
    #[arg(long = "map", value_name = "KEY=ROLE")]
    maps: Vec<String>,
    /// Role of a single unmapped port.
    #[arg(long, default_value = "unknown", value_name = "ROLE")]
    mono_role: Role,
    /// A call ends after this long without packets, seconds; the next packet starts a new call.
    #[arg(long, default_value_t = 5.0, value_name = "S")]
    idle_s: f64,
    /// Exit after this many calls (0 = keep listening).
    #[arg(long, default_value_t = 0)]
    max_calls: u32,
    /// Jitter buffer: packets may arrive this late and still be placed, ms.
    #[arg(long, default_value_t = 100, value_name = "MS")]
    jitter_ms: u32,
    /// Call id prefix (calls are PREFIX-1, PREFIX-2, ...).
    #[arg(long, default_value = "rtp")]
    call_id: String,
    /// Partial results every N ms of a turn; 0 = none. [config: live.partial_interval_ms]
    #[arg(long, value_name = "MS")]
    partial_interval_ms: Option<u32>,
    #[command(flatten)]
    out: CallOut,
}

#[derive(Debug, Clone, PartialEq)]
enum MapKey {
    Port(u16),
    Ssrc(u32),
}

fn parse_map(s: &str) -> Result<(MapKey, Role)> {
    let (k, r) = s
        .split_once('=')
        .with_context(|| format!("--map '{s}': expected KEY=ROLE"))?;
    let role: Role = r.parse().map_err(anyhow::Error::msg)?;
    let key = if let Some(x) = k.strip_prefix("ssrc:") {
        let v = match x.strip_prefix("0x").or_else(|| x.strip_prefix("0X")) {
            Some(h) => u32::from_str_radix(h, 16),
            None => x.parse(),
        };
        MapKey::Ssrc(v.with_context(|| format!("--map '{s}': bad SSRC"))?)
    } else {
        MapKey::Port(
            k.parse()
                .with_context(|| format!("--map '{s}': bad port"))?,
        )
    };
    Ok((key, role))
}

pub fn rtp(mut cfg: Config, a: RtpArgs) -> Result<i32> {
    if let Some(ms) = a.partial_interval_ms {
        cfg.live.partial_interval_ms = ms;
    }
    let (ip, ports) = a
        .listen
        .rsplit_once(':')
        .context("--listen: expected IP:PORT or IP:LOW-HIGH")?;
    let ip: IpAddr = ip
        .trim_matches(['[', ']'])
        .parse()
        .with_context(|| format!("--listen: bad address '{ip}'"))?;
    let (lo, hi) = parse_ports(ports).map_err(anyhow::Error::msg)?;
    let ports: Vec<u16> = if lo == hi {
        vec![lo]
    } else {
        (lo..=hi).filter(|p| p % 2 == 0).collect()
    };
    if ports.is_empty() || ports.len() > 64 {
        bail!(
            "--listen: {} RTP ports in the range; give 1 to 64",
            ports.len()
        );
    }
    if !(a.idle_s.is_finite() && a.idle_s > 0.0) {
        bail!("--idle-s must be a positive number");
    }
    let maps: Vec<(MapKey, Role)> = a.maps.iter().map(|m| parse_map(m)).collect::<Result<_>>()?;
    // Role per port and per SSRC; legs are the distinct roles.
    let mut port_role: HashMap<u16, Role> = HashMap::new();
    let mut ssrc_role: HashMap<u32, Role> = HashMap::new();
    for (k, r) in &maps {
        match k {
            MapKey::Port(p) => {
                if !ports.contains(p) {
                    bail!("--map {p}=...: port {p} is not among the listened ports {ports:?}");
                }
                port_role.insert(*p, *r);
            }
            MapKey::Ssrc(s) => {
                ssrc_role.insert(*s, *r);
            }
        }
    }
    if maps.is_empty() {
        match ports.len() {
            1 => {
                port_role.insert(ports[0], a.mono_role);
            }
            2 => {
                port_role.insert(ports[0], cfg.roles.channel0);
                port_role.insert(ports[1], cfg.roles.channel1);
            }
            n => bail!("{n} RTP ports: say which party each carries with --map PORT=ROLE"),
        }
    }
    let mut roles: Vec<Role> = Vec::new();
    for r in [Role::Agent, Role::Customer, Role::Unknown] {
        if port_role
            .values()
            .chain(ssrc_role.values())
            .any(|x| *x == r)
        {
            roles.push(r);
        }
    }
    if roles.len() > 2 {
        bail!("--map: at most two parties (agent and customer) per call");
    }
    let leg_of_role: HashMap<Role, usize> =
        roles.iter().enumerate().map(|(i, r)| (*r, i)).collect();

    let stop = stop_on_signals()?;
    let engine = prepare(&mut cfg, &a.out)?;
    let out = Output::open(&a.out, true)?;
    let rt = runtime()?;
    let (inbox_tx, inbox) = crossbeam_channel::bounded::<(u16, Packet)>(4 * PACKET_QUEUE);
    let mut socks = Vec::new();
    for p in &ports {
        let addr = SocketAddr::new(ip, *p);
        let s =
            std::net::UdpSocket::bind(addr).with_context(|| format!("cannot bind udp {addr}"))?;
        s.set_nonblocking(true)?;
        socks.push((*p, s));
    }
    let dropped = Arc::new(std::sync::atomic::AtomicU64::new(0));
    for (port, s) in socks {
        let tx = inbox_tx.clone();
        let dropped = dropped.clone();
        rt.spawn(async move {
            let Ok(s) = tokio::net::UdpSocket::from_std(s) else {
                return;
            };
            let local = s
                .local_addr()
                .unwrap_or_else(|_| SocketAddr::from(([0, 0, 0, 0], 0)));
            let mut buf = vec![0u8; 2048];
            while let Ok((n, from)) = s.recv_from(&mut buf).await {
                let p = Packet {
                    leg: 0,
                    data: buf[..n].to_vec(),
                    at: Instant::now(),
                    from,
                    to: local,
                };
                if tx.try_send((port, p)).is_err() {
                    dropped.fetch_add(1, Ordering::Relaxed);
                }
            }
        });
    }
    drop(inbox_tx);
    // The runtime serves the sockets from a thread of its own.
    let rt_stop = Arc::new(AtomicBool::new(false));
    let rt_thread = {
        let rt_stop = rt_stop.clone();
        std::thread::spawn(move || {
            rt.block_on(async move {
                while !rt_stop.load(Ordering::Relaxed) {
                    tokio::time::sleep(Duration::from_millis(50)).await;
                }
            })
        })
    };
    eprintln!(
        "callpulse: RTP on udp {ip} ports {ports:?}; legs {}; Ctrl-C stops",
        roles
            .iter()
            .map(|r| r.as_str())
            .collect::<Vec<_>>()
            .join(" + ")
    );
    let idle = Duration::from_secs_f64(a.idle_s);
    let mut current: Option<(
        crossbeam_channel::Sender<Packet>,
        std::thread::JoinHandle<()>,
        Instant,
    )> = None;
    let mut calls = 0u32;
    let mut unmapped = 0u64;
    let call_stop = Arc::new(AtomicBool::new(false));
    loop {
        match inbox.recv_timeout(Duration::from_millis(50)) {
            Ok((port, mut p)) => {
                let ssrc = (p.data.len() >= 12)
                    .then(|| u32::from_be_bytes([p.data[8], p.data[9], p.data[10], p.data[11]]));
                let role = ssrc
                    .and_then(|s| ssrc_role.get(&s))
                    .or_else(|| port_role.get(&port));
                let Some(leg) = role.and_then(|r| leg_of_role.get(r)).copied() else {
                    unmapped += 1;
                    continue;
                };
                p.leg = leg;
                if current.is_none() {
                    calls += 1;
                    let id = format!("{}-{calls}", a.call_id);
                    let (tx, rx) = crossbeam_channel::bounded::<Packet>(PACKET_QUEUE);
                    let src = RtpSource::new(
                        rx,
                        roles.clone(),
                        JitterConfig {
                            window_ms: a.jitter_ms,
                            ..Default::default()
                        },
                        p.at,
                        id.clone(),
                    );
                    eprintln!("callpulse: call {id} started");
                    let h = spawn_call(
                        &engine,
                        &cfg,
                        &out,
                        Box::new(src),
                        id,
                        roles.clone(),
                        call_stop.clone(),
                    )?;
                    current = Some((tx, h, Instant::now()));
                }
                if let Some((tx, _, last)) = current.as_mut() {
                    *last = Instant::now();
                    if tx.try_send(p).is_err() {
                        dropped.fetch_add(1, Ordering::Relaxed);
                    }
                }
            }
            Err(crossbeam_channel::RecvTimeoutError::Timeout) => {}
            Err(crossbeam_channel::RecvTimeoutError::Disconnected) => break,
        }
        let stopping = stop.load(Ordering::Relaxed);
        if current
            .as_ref()
            .is_some_and(|c| stopping || c.2.elapsed() > idle)
        {
            let (tx, h, _) = current.take().expect("checked");
            drop(tx);
            let _ = h.join();
            if a.max_calls > 0 && calls >= a.max_calls {
                break;
            }
        }
        if stopping {
            break;
        }
    }
    rt_stop.store(true, Ordering::Relaxed);
    let _ = rt_thread.join();
    out.finish()?;
    if unmapped > 0 {
        eprintln!("callpulse: {unmapped} packets matched no --map entry and were ignored");
    }
    let d = dropped.load(Ordering::Relaxed);
    if d > 0 {
        eprintln!("callpulse: {d} packets dropped because the pipeline fell behind");
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
    #[command(flatten)]
    out: CallOut,
}

pub fn pcap(mut cfg: Config, a: PcapArgs) -> Result<i32> {
    let opts = CaptureOptions {
        jitter: JitterConfig {
            window_ms: a.jitter_ms,
            ..Default::default()
        },
        caller_role: a.out.caller_role,
        min_packets: a.min_packets.max(1),
    };
    let (calls, mut rep) = capture::find_calls(&a.file, &opts)
        .with_context(|| format!("cannot read {}", a.file.display()))?;
    let n_calls = calls.len();
    let decoded = capture::decode_calls(&a.file, calls, &opts, &mut rep)
        .with_context(|| format!("cannot read {}", a.file.display()))?;
    let skipped: u64 = rep.skipped.values().sum();
    eprintln!(
        "callpulse: {}: {} frames, {} UDP, {} SIP messages, {} RTP packets ({} used), {} skipped{}; {} call{} found ({} through SIP)",
        a.file.display(),
        rep.frames,
        rep.udp,
        rep.sip_messages,
        rep.rtp_packets,
        rep.rtp_used,
        skipped,
        if rep.skipped.is_empty() {
            String::new()
        } else {
            format!(
                " ({})",
                rep.skipped.iter().map(|(k, v)| format!("{k}: {v}")).collect::<Vec<_>>().join(", ")
            )
        },
        n_calls,
        if n_calls == 1 { "" } else { "s" },
        rep.calls_with_sip
    );
    if let Some(p) = &a.report {
        std::fs::write(p, serde_json::to_string_pretty(&rep)?)
            .with_context(|| format!("cannot write {}", p.display()))?;
    }
    if let Some(e) = &rep.error {
        eprintln!("callpulse: the capture ends in an error: {e}; the calls before it are scored");
    }
    if n_calls == 0 {
        eprintln!(
            "callpulse: no calls found (no G.711 RTP flow of {} packets or more)",
            opts.min_packets
        );
        return Ok(1);
    }
    if let Some(d) = &a.wav_dir {
        std::fs::create_dir_all(d).with_context(|| format!("cannot create {}", d.display()))?;
        for c in &decoded {
            write_wav(
                &d.join(format!("{}.wav", c.call.call_id)),
                &c.audio,
                c.call.roles.len() as u16,
            )?;
        }
    }
    let engine = prepare(&mut cfg, &a.out)?;
    let out = Output::open(&a.out, false)?;
    let mut failed = rep.error.is_some();
    for c in decoded {
        let id = c.call.call_id.clone();
        let src =
            Memory::new(8000, c.call.roles.len() as u16, c.audio, id.clone()).with_rtp(c.stats);
        let mut opts = RunOptions::offline(&id);
        opts.roles = Some(c.call.roles.clone());
        let mut sink = out.call_sink(&id)?;
        match engine.run(Box::new(src), &opts, &mut sink, &|_, _| {}) {
            Ok(o) => eprintln!(
                "callpulse: call {id}: {} leg{} ({}), {:.1} s, {} turns",
                c.call.roles.len(),
                if c.call.roles.len() == 1 { "" } else { "s" },
                c.call
                    .roles
                    .iter()
                    .map(|r| r.as_str())
                    .collect::<Vec<_>>()
                    .join(" + "),
                o.summary.duration,
                o.summary.turns
            ),
            Err(e) => {
                eprintln!("callpulse: call {id} failed: {e}");
                failed = true;
            }
        }
    }
    out.finish()?;
    Ok(if failed { 1 } else { 0 })
}

fn write_wav(path: &Path, interleaved: &[f32], channels: u16) -> Result<()> {
    let spec = hound::WavSpec {
        channels,
        sample_rate: 8000,
        bits_per_sample: 16,
        sample_format: hound::SampleFormat::Int,
    };
    let mut w = hound::WavWriter::create(path, spec)
        .with_context(|| format!("cannot create {}", path.display()))?;
    for &v in interleaved {
        w.write_sample((v * 32768.0).round().clamp(-32768.0, 32767.0) as i16)?;
    }
    w.finalize()?;
    Ok(())
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
    for (name, v) in [
        ("--loss", a.loss),
        ("--reorder", a.reorder),
        ("--duplicate", a.duplicate),
    ] {
        if !(0.0..=50.0).contains(&v) {
            bail!("{name} must be a percentage between 0 and 50");
        }
    }
    if !(a.speed.is_finite() && a.speed > 0.0 && a.speed <= 100.0) {
        bail!("--speed must be between 0 and 100");
    }
    let legs =
        sender::read_legs_8k(&a.file).map_err(|e| anyhow::anyhow!("{}: {e}", a.file.display()))?;
    let ip = std::net::Ipv4Addr::LOCALHOST;
    let caller_media = SocketAddrV4::new(ip, 7000);
    let callee_media = SocketAddrV4::new(ip, 6000);
    if a.sip && (legs.len() > 2 || a.caller_channel >= legs.len()) {
        bail!(
            "--sip: {} has {} channel(s); --caller-channel {} does not exist",
            a.file.display(),
            legs.len(),
            a.caller_channel
        );
    }
    // (source, destination) per channel.
    let addrs: Vec<(SocketAddrV4, SocketAddrV4)> = if a.sip {
        (0..legs.len())
            .map(|i| {
                if i == a.caller_channel {
                    (caller_media, callee_media)
                } else {
                    (callee_media, caller_media)
                }
            })
            .collect()
    } else {
        let to: Vec<SocketAddrV4> = if a.to.is_empty() {
            (0..legs.len())
                .map(|i| SocketAddrV4::new(ip, 6000 + 2 * i as u16))
                .collect()
        } else {
            a.to.clone()
        };
        let from: Vec<SocketAddrV4> = if a.from.is_empty() {
            (0..legs.len())
                .map(|i| SocketAddrV4::new(ip, 7000 + 2 * i as u16))
                .collect()
        } else {
            a.from.clone()
        };
        if to.len() != legs.len() || from.len() != legs.len() {
            bail!(
                "{} has {} channel(s): give {} address(es) to --to (and --from, if used)",
                a.file.display(),
                legs.len(),
                legs.len()
            );
        }
        from.into_iter().zip(to).collect()
    };
    let pt = if a.codec == Codec::Pcma { 8 } else { 0 };
    let imp = Impairment {
        loss: a.loss / 100.0,
        reorder: a.reorder / 100.0,
        duplicate: a.duplicate / 100.0,
        seed: a.seed,
    };
    let mut rng = Rng::new(a.seed);
    let mut streams = Vec::new();
    let mut report = Vec::new();
    for (i, l) in legs.iter().enumerate() {
        let ssrc = rng.next_u64() as u32;
        let seq0 = rng.next_u64() as u16;
        let ts0 = rng.next_u64() as u32;
        let pk = sender::packetise(l, pt, ssrc, seq0, ts0);
        let (timed, inj) = sender::impair(pk, &imp, &mut rng);
        report.push(serde_json::json!({
            "stream": i, "from": addrs[i].0.to_string(), "to": addrs[i].1.to_string(),
            "ssrc": format!("{ssrc:#010x}"), "injected": inj
        }));
        streams.push(timed);
    }
    let merged = sender::merge(streams);
    if let Some(p) = &a.pcap {
        // SIP first (if any), the media 100 ms after the ACK.
        let media_at = if a.sip { 160_000 } else { 0 };
        let mut dg: Vec<sender::CaptureDatagram> = merged
            .iter()
            .map(|(t, k, b)| (media_at + t, addrs[*k].0, addrs[*k].1, b.clone()))
            .collect();
        if a.sip {
            let end = media_at + merged.last().map_or(0, |m| m.0) + 200_000;
            dg.extend(sender::sip_dialog(
                &format!("{}@callpulse.test", a.seed),
                SocketAddrV4::new(ip, 5062),
                SocketAddrV4::new(ip, 5060),
                caller_media,
                callee_media,
                pt,
                end,
            ));
            dg.sort_by_key(|d| d.0);
        }
        sender::write_pcap(p, &dg, 1_700_000_000_000_000)
            .with_context(|| format!("cannot write {}", p.display()))?;
    } else {
        let socks: Vec<std::net::UdpSocket> = addrs
            .iter()
            .map(|(from, to)| {
                std::net::UdpSocket::bind(from)
                    .or_else(|_| std::net::UdpSocket::bind(SocketAddrV4::new(*to.ip(), 0)))
                    .with_context(|| format!("cannot open a UDP socket for {to}"))
            })
            .collect::<Result<_>>()?;
        let start = Instant::now();
        for (t, k, b) in &merged {
            let due = start + Duration::from_secs_f64(*t as f64 / 1e6 / a.speed);
            let now = Instant::now();
            if due > now {
                std::thread::sleep(due - now);
            }
            // A refused datagram (nobody listening yet) is not fatal.
            let _ = socks[*k].send_to(b, addrs[*k].1);
        }
    }
    println!(
        "{}",
        serde_json::to_string(&serde_json::json!({ "streams": report }))?
    );
    Ok(0)
}
