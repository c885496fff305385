//! `callpulse rtp`: bare RTP streams on UDP ports, scored live as calls.
//!
//! Datagrams map to legs by SSRC (`ssrc:0x1a2b=customer`) or by the port
//! they arrive on (`40000=agent`); the legs are the distinct roles. The
//! first packet starts a call; `idle` without packets ends it, and the next
//! packet starts a new one. One call at a time.

use std::collections::HashMap;
use std::net::{IpAddr, SocketAddr};
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use crossbeam_channel::{bounded, Receiver, RecvTimeoutError, Sender};
use serde::Serialize;

use super::call::{Packet, RtpSource, PACKET_QUEUE};
use super::jitter::JitterConfig;
use super::spawner::Spawner;
use super::ua::safe_call_id;
use crate::event::Role;

/// Most ports one listener binds.
pub const MAX_PORTS: usize = 64;

/// Why the listener cannot start.
#[derive(Debug, thiserror::Error)]
pub enum ListenError {
    /// A bad `--listen`, `--map` or other setting.
    #[error("{0}")]
    Invalid(String),
    /// A socket or thread could not be opened.
    #[error("{0}")]
    Io(String),
}

/// A port range `LOW-HIGH` (or one port), with 0 < LOW <= HIGH.
pub fn parse_ports(s: &str) -> Result<(u16, u16), String> {
    let (a, b) = s.split_once('-').unwrap_or((s, s));
    let a: u16 = a.trim().parse().map_err(|_| format!("bad port '{a}'"))?;
    let b: u16 = b.trim().parse().map_err(|_| format!("bad port '{b}'"))?;
    if a == 0 || b < a {
        return Err(format!(
            "bad port range '{s}': expected LOW-HIGH with 0 < LOW <= HIGH"
        ));
    }
    Ok((a, b))
}

/// What a `--map` entry keys on.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum MapKey {
    /// The port a datagram arrives on.
    Port(u16),
    /// The stream's SSRC (wins over the port).
    Ssrc(u32),
}

/// Parse `PORT=ROLE` or `ssrc:ID=ROLE` (ID decimal or 0x hex).
pub fn parse_map(s: &str) -> Result<(MapKey, Role), String> {
    let (k, r) = s
        .split_once('=')
        .ok_or_else(|| format!("--map '{s}': expected KEY=ROLE"))?;
    let role: Role = r.parse()?;
    let key = if let Some(x) = k.strip_prefix("ssrc:") {
        let v = match x.strip_prefix("0x").or_else(|| x.strip_prefix("0X")) {
            Some(h) => u32::from_str_radix(h, 16),
            None => x.parse(),
        };
        MapKey::Ssrc(v.map_err(|_| format!("--map '{s}': bad SSRC"))?)
    } else {
        MapKey::Port(k.parse().map_err(|_| format!("--map '{s}': bad port"))?)
    };
    Ok((key, role))
}

/// The listener's settings.
#[derive(Debug, Clone)]
pub struct RtpListenConfig {
    /// Address to bind.
    pub ip: IpAddr,
    /// Ports to bind.
    pub ports: Vec<u16>,
    /// Role per port.
    pub port_roles: HashMap<u16, Role>,
    /// Role per SSRC.
    pub ssrc_roles: HashMap<u32, Role>,
    /// The legs: distinct roles, in the order agent, customer, unknown.
    pub roles: Vec<Role>,
    /// A call ends after this long without packets.
    pub idle: Duration,
    /// Stop after this many calls (0 = never).
    pub max_calls: u32,
    /// Jitter buffer.
    pub jitter: JitterConfig,
    /// Calls are `PREFIX-1`, `PREFIX-2`, ... (made file-name safe).
    pub call_id: String,
}

impl RtpListenConfig {
    /// From `IP:PORT` or `IP:LOW-HIGH` (the even ports of a range) and the
    /// maps; without maps one port is one leg (`mono`), two ports are
    /// `pair` in port order.
    pub fn new(
        listen: &str,
        maps: &[String],
        mono: Role,
        pair: (Role, Role),
    ) -> Result<Self, ListenError> {
        let bad = |m: String| ListenError::Invalid(m);
        let (ip, range) = listen
            .rsplit_once(':')
            .ok_or_else(|| bad("--listen: expected IP:PORT or IP:LOW-HIGH".into()))?;
        let ip: IpAddr = ip
            .trim_matches(['[', ']'])
            .parse()
            .map_err(|_| bad(format!("--listen: bad address '{ip}'")))?;
        let (lo, hi) = parse_ports(range).map_err(bad)?;
        let ports: Vec<u16> = if lo == hi {
            vec![lo]
        } else {
            (lo..=hi).filter(|p| p % 2 == 0).collect()
        };
        if ports.is_empty() || ports.len() > MAX_PORTS {
            return Err(bad(format!(
                "--listen: {} RTP ports in the range; give 1 to {MAX_PORTS}",
                ports.len()
            )));
        }
        let mut port_roles: HashMap<u16, Role> = HashMap::new();
        let mut ssrc_roles: HashMap<u32, Role> = HashMap::new();
        for m in maps {
            match parse_map(m).map_err(bad)? {
                (MapKey::Port(p), r) if ports.contains(&p) => {
                    port_roles.insert(p, r);
                }
                (MapKey::Port(p), _) => {
                    return Err(bad(format!(
                        "--map {p}=...: port {p} is not among the listened ports {ports:?}"
                    )))
                }
                (MapKey::Ssrc(s), r) => {
                    ssrc_roles.insert(s, r);
                }
            }
        }
        if maps.is_empty() {
            match ports.as_slice() {
                [p] => {
                    port_roles.insert(*p, mono);
                }
                [a, b] => {
                    port_roles.insert(*a, pair.0);
                    port_roles.insert(*b, pair.1);
                }
                _ => {
                    return Err(bad(format!(
                        "{} RTP ports: say which party each carries with --map PORT=ROLE",
                        ports.len()
                    )))
                }
            }
        }
        let roles: Vec<Role> = [Role::Agent, Role::Customer, Role::Unknown]
            .into_iter()
            .filter(|r| {
                port_roles
                    .values()
                    .chain(ssrc_roles.values())
                    .any(|x| x == r)
            })
            .collect();
        if roles.len() > 2 {
            return Err(bad(
                "--map: at most two parties (agent and customer) per call".into(),
            ));
        }
        Ok(RtpListenConfig {
            ip,
            ports,
            port_roles,
            ssrc_roles,
            roles,
            idle: Duration::from_secs(5),
            max_calls: 0,
            jitter: JitterConfig::default(),
            call_id: "rtp".into(),
        })
    }

    /// The leg of a datagram that arrived on `port`, if it is mapped.
    pub fn leg_of(&self, port: u16, data: &[u8]) -> Option<usize> {
        let ssrc = data
            .get(8..12)
            .map(|b| u32::from_be_bytes([b[0], b[1], b[2], b[3]]));
        let role = ssrc
            .and_then(|s| self.ssrc_roles.get(&s))
            .or_else(|| self.port_roles.get(&port))?;
        self.roles.iter().position(|r| r == role)
    }
}

/// Counters printed when the listener stops.
#[derive(Debug, Clone, Default, Serialize)]
pub struct ListenStats {
    /// Calls started.
    pub calls: u32,
    /// Datagrams no `--map` entry matched (ignored).
    pub unmapped: u64,
    /// Datagrams dropped because the pipeline fell behind.
    pub dropped: u64,
}

/// Datagrams with the port they arrived on.
type Inbox = Receiver<(u16, Packet)>;

/// Bind the ports; the datagrams come out of the returned channel, tagged
/// with the port they arrived on. The sockets are served by a runtime on a
/// thread of its own, which ends when `done` is set.
fn bind(
    cfg: &RtpListenConfig,
    dropped: Arc<AtomicU64>,
    done: Arc<AtomicBool>,
) -> Result<(Inbox, std::thread::JoinHandle<()>), ListenError> {
    let io = |e: std::io::Error, what: String| ListenError::Io(format!("{what}: {e}"));
    let rt = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .map_err(|e| io(e, "cannot start the network runtime".into()))?;
    let (tx, rx) = bounded::<(u16, Packet)>(4 * PACKET_QUEUE);
    for &port in &cfg.ports {
        let addr = SocketAddr::new(cfg.ip, port);
        let s = std::net::UdpSocket::bind(addr)
            .map_err(|e| io(e, format!("cannot bind udp {addr}")))?;
        s.set_nonblocking(true)
            .map_err(|e| io(e, format!("udp {addr}")))?;
        let (tx, dropped) = (tx.clone(), dropped.clone());
        rt.spawn(async move {
            let Ok(s) = tokio::net::UdpSocket::from_std(s) else {
                return;
            };
            let local = s.local_addr().unwrap_or(addr);
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
    let t = std::thread::Builder::new()
        .name("rtp-io".into())
        .spawn(move || {
            rt.block_on(async move {
                while !done.load(Ordering::Relaxed) {
                    tokio::time::sleep(Duration::from_millis(50)).await;
                }
            })
        })
        .map_err(|e| io(e, "cannot start the network thread".into()))?;
    Ok((rx, t))
}

/// Receive until `stop` is set or `max_calls` calls have ended. `ready` is
/// called once the ports are bound.
pub fn listen(
    cfg: &RtpListenConfig,
    spawner: &Spawner,
    stop: &AtomicBool,
    ready: impl FnOnce(),
) -> Result<ListenStats, ListenError> {
    let dropped = Arc::new(AtomicU64::new(0));
    let done = Arc::new(AtomicBool::new(false));
    let (inbox, io_thread) = bind(cfg, dropped.clone(), done.clone())?;
    ready();
    let prefix = safe_call_id(&cfg.call_id);
    let mut stats = ListenStats::default();
    let mut current: Option<(Sender<Packet>, Instant)> = None;
    loop {
        match inbox.recv_timeout(Duration::from_millis(50)) {
            Ok((port, mut p)) => {
                let Some(leg) = cfg.leg_of(port, &p.data) else {
                    stats.unmapped += 1;
                    continue;
                };
                p.leg = leg;
                if current.is_none() {
                    stats.calls += 1;
                    let id = format!("{prefix}-{}", stats.calls);
                    let (tx, rx) = bounded::<Packet>(PACKET_QUEUE);
                    let src = RtpSource::new(rx, cfg.roles.clone(), cfg.jitter, p.at, id.clone());
                    spawner
                        .spawn(&id, Box::new(src), Some(cfg.roles.clone()), None)
                        .map_err(|e| ListenError::Io(e.to_string()))?;
                    current = Some((tx, Instant::now()));
                }
                if let Some((tx, last)) = current.as_mut() {
                    *last = Instant::now();
                    if tx.try_send(p).is_err() {
                        dropped.fetch_add(1, Ordering::Relaxed);
                    }
                }
            }
            Err(RecvTimeoutError::Timeout) => {}
            Err(RecvTimeoutError::Disconnected) => break,
        }
        let stopping = stop.load(Ordering::Relaxed);
        if current
            .as_ref()
            .is_some_and(|c| stopping || c.1.elapsed() > cfg.idle)
        {
            // The source ends when its sender goes; wait for the summary.
            current = None;
            spawner.join();
            if cfg.max_calls > 0 && stats.calls >= cfg.max_calls {
                break;
            }
        }
        if stopping {
            break;
        }
    }
    done.store(true, Ordering::Relaxed);
    let _ = io_thread.join();
    stats.dropped = dropped.load(Ordering::Relaxed);
    Ok(stats)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::pipeline::RunOptions;
    use crate::sink::calls::CallOutput;
    use crate::telephony::rtp::{build, RtpPacket};
    use crate::telephony::spawner::tests::FakeRunner;
    use crate::telephony::spawner::Notify;
    use std::net::UdpSocket;
    use std::sync::Mutex;

    #[test]
    fn listen_and_map_are_checked_and_named() {
        let c = RtpListenConfig::new(
            "127.0.0.1:41000-41002",
            &[],
            Role::Unknown,
            (Role::Agent, Role::Customer),
        )
        .unwrap();
        assert_eq!(c.ports, vec![41000, 41002]);
        assert_eq!(c.roles, vec![Role::Agent, Role::Customer]);
        let m = |maps: &[&str]| {
            let maps: Vec<String> = maps.iter().map(|s| s.to_string()).collect();
            RtpListenConfig::new(
                "127.0.0.1:41000-41004",
                &maps,
                Role::Unknown,
                (Role::Agent, Role::Customer),
            )
        };
        let e = m(&[]).unwrap_err().to_string();
        assert!(e.contains("--map PORT=ROLE"), "{e}");
        let e = m(&["41006=agent"]).unwrap_err().to_string();
        assert!(e.contains("not among the listened ports"), "{e}");
        let c = m(&["41000=agent", "ssrc:0x10=customer"]).unwrap();
        let mut pkt = vec![0x80, 0, 0, 1, 0, 0, 0, 0, 0, 0, 0, 0x10];
        assert_eq!(
            c.leg_of(41002, &pkt),
            Some(1),
            "the SSRC wins over the port"
        );
        pkt[11] = 0x11;
        assert_eq!(c.leg_of(41000, &pkt), Some(0));
        assert_eq!(c.leg_of(41002, &pkt), None);
        assert!(parse_map("41000=boss").is_err());
        assert!(RtpListenConfig::new(
            "127.0.0.1:0-0",
            &[],
            Role::Unknown,
            (Role::Agent, Role::Customer)
        )
        .is_err());
    }

    /// Two streams on two ports, a pause longer than the idle time, then a
    /// second call: two calls, every packet in its call's counters.
    #[test]
    fn idle_time_splits_calls_and_packets_reach_their_legs() {
        let sock = UdpSocket::bind("127.0.0.1:0").unwrap();
        let probe = |p| UdpSocket::bind(("127.0.0.1", p)).is_ok();
        let base = (42_000u16..42_900)
            .step_by(4)
            .find(|&p| probe(p) && probe(p + 2))
            .unwrap();
        let addr = format!("127.0.0.1:{base}-{}", base + 2);
        let mut cfg =
            RtpListenConfig::new(&addr, &[], Role::Unknown, (Role::Agent, Role::Customer)).unwrap();
        cfg.idle = Duration::from_millis(300);
        cfg.max_calls = 2;
        cfg.call_id = "t€st".into();
        let runner = Arc::new(FakeRunner {
            frames: AtomicU64::new(0),
        });
        let out =
            CallOutput::new(Box::new(std::io::sink()), crate::sink::Format::Jsonl, None).unwrap();
        let notes: Arc<Mutex<Vec<String>>> = Arc::default();
        let n2 = notes.clone();
        let notify: Notify = Arc::new(move |n| {
            if let crate::telephony::spawner::CallNote::Ended { id, outcome, .. } = n {
                let rtp = outcome.summary.stats.rtp.clone().unwrap_or_default();
                let packets: Vec<u64> = rtp.iter().map(|l| l.packets).collect();
                n2.lock().unwrap().push(format!("{id} {packets:?}"));
            }
        });
        let spawner = Spawner::new(runner, Arc::new(out), RunOptions::offline("x"), notify);
        let stop = AtomicBool::new(false);
        let (ready_tx, ready_rx) = std::sync::mpsc::channel();
        let send = std::thread::spawn(move || {
            ready_rx.recv().unwrap();
            for call in 0..2u32 {
                for i in 0..30u16 {
                    for (k, port) in [base, base + 2].into_iter().enumerate() {
                        let p = build(&RtpPacket {
                            marker: false,
                            payload_type: 0,
                            seq: i,
                            timestamp: 160 * i as u32,
                            ssrc: 100 * call + k as u32,
                            payload: &[0x20; 160],
                        });
                        sock.send_to(&p, ("127.0.0.1", port)).unwrap();
                    }
                    std::thread::sleep(Duration::from_millis(5));
                }
                std::thread::sleep(Duration::from_millis(800));
            }
        });
        let stats = listen(&cfg, &spawner, &stop, || ready_tx.send(()).unwrap()).unwrap();
        send.join().unwrap();
        assert_eq!((stats.calls, stats.unmapped, stats.dropped), (2, 0, 0));
        assert_eq!(
            *notes.lock().unwrap(),
            ["t_st-1 [30, 30]", "t_st-2 [30, 30]"]
        );
    }
}
