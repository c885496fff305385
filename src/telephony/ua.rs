//! `callpulse sip`: a SIP user agent server over UDP that answers calls,
//! receives their RTP and hands each call to the pipeline as its own
//! session.
//!
//! Per request:
//! - **INVITE** with an SDP offer (plain, or the SDP part of a SIPREC
//!   `multipart/mixed` body): `100 Trying`, then `200 OK` with an answer
//!   that takes PCMU or PCMA on a port pair we allocate (one per offered
//!   audio stream, at most two, on consecutive even ports). Offers without
//!   G.711 get `488`; over the call limit, `486`. A retransmitted INVITE gets
//!   the same answer again; a re-INVITE keeps the media.
//! - **ACK** stops the `200 OK` retransmissions (RFC 3261 §13.3.1.4).
//! - **BYE** ends the call (`200 OK`; the pipeline finishes the open turns
//!   and writes the summary); unknown dialogs get `481`.
//! - **CANCEL** before the answer (see `answer_delay`): `200 OK` and `487`
//!   for the INVITE.
//! - **OPTIONS**: `200 OK` with `Allow`. Other methods: `405`.
//! - Malformed requests get `400` when they carry enough to answer (Via,
//!   Call-ID, CSeq), otherwise they are dropped; both are counted.
//!
//! Roles: with two audio streams (SIPREC style), `a=label` names the party
//! (`agent`, or `customer`/`caller`), else the first stream is the caller's.
//! With one stream, it carries the caller. The caller's role is
//! `caller_role` (customer by default: inbound support lines).

use std::collections::HashMap;
use std::net::{IpAddr, SocketAddr};
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use serde::Serialize;
use tokio::net::UdpSocket;
use tokio::task::JoinHandle;

use super::call::{Packet, RtpSource, PACKET_QUEUE};
use super::jitter::JitterConfig;
use super::sdp::{self, AnswerMedia, Sdp};
use super::sip::{self, Message, StartLine};
use crate::event::Role;

/// How the user agent behaves.
#[derive(Debug, Clone)]
pub struct UaConfig {
    /// SIP address to listen on (UDP).
    pub listen: SocketAddr,
    /// Address written in SDP answers and bound for RTP (default: the
    /// listen address, or 127.0.0.1 when that is unspecified).
    pub media_ip: Option<IpAddr>,
    /// RTP port range, inclusive.
    pub rtp_ports: (u16, u16),
    /// Jitter buffer.
    pub jitter: JitterConfig,
    /// Role of the calling party.
    pub caller_role: Role,
    /// The header that names the agent (see `SipConfig::agent_id_header`).
    pub agent_id_header: String,
    /// Wait this long before answering (a ringing phase; CANCEL works in it).
    pub answer_delay: Duration,
    /// End a call when no RTP arrived for this long.
    pub rtp_timeout: Duration,
    /// Most calls at once.
    pub max_calls: usize,
    /// Calls whose pipelines still run (see `Spawner::gauge`): an ended
    /// call counts until its summary is written, so calls that end faster
    /// than they are scored cannot pile up pipelines.
    pub pipelines: Option<Arc<std::sync::atomic::AtomicUsize>>,
}

impl UaConfig {
    /// The agent as `[sip]` configures it, listening on `listen`.
    pub fn from_config(s: &crate::config::SipConfig, listen: SocketAddr) -> Result<Self, String> {
        Ok(UaConfig {
            listen,
            media_ip: s.media_ip,
            rtp_ports: s.ports()?,
            jitter: JitterConfig {
                window_ms: s.jitter_ms,
                ..Default::default()
            },
            caller_role: s.caller_role,
            agent_id_header: s.agent_id_header.clone(),
            answer_delay: Duration::from_millis(s.answer_delay_ms),
            rtp_timeout: crate::config::seconds("sip.rtp_timeout_s", s.rtp_timeout_s)?,
            max_calls: s.max_calls,
            pipelines: None,
        })
    }
}

/// A call handed to the pipeline.
pub struct NewCall {
    /// Call id for events (from the SIP Call-ID, made file-name safe).
    pub call_id: String,
    /// The RTP legs as a live source.
    pub source: RtpSource,
    /// Role of each leg.
    pub roles: Vec<Role>,
    /// The agent, from the INVITE (see [`agent_id`]).
    pub agent_id: Option<String>,
}

/// The agent of a call: the `header`'s value when the INVITE carries it,
/// else the user part of the agent's URI (To when the caller is the
/// customer, From when the caller is the agent).
pub fn agent_id(invite: &Message, header: &str, caller_role: Role) -> Option<String> {
    let clean = |v: &str| {
        let v: String = v
            .trim()
            .chars()
            .filter(|c| c.is_ascii_alphanumeric() || "-_.@+".contains(*c))
            .take(64)
            .collect();
        (!v.is_empty()).then_some(v)
    };
    if !header.is_empty() {
        if let Some(v) = invite.header(header).and_then(clean) {
            return Some(v);
        }
    }
    let side = if caller_role == Role::Agent {
        "From"
    } else {
        "To"
    };
    let uri = invite.header(side)?;
    let after = uri
        .split_once("sip:")
        .or_else(|| uri.split_once("sips:"))?
        .1;
    let user = after.split_once('@')?.0;
    clean(user.split(';').next().unwrap_or(""))
}

/// Counters printed when the agent stops.
#[derive(Debug, Clone, Default, Serialize)]
pub struct UaStats {
    /// Calls answered.
    pub calls: u64,
    /// Calls ended by BYE.
    pub ended_bye: u64,
    /// Calls ended because RTP stopped.
    pub ended_rtp_timeout: u64,
    /// Calls still up when the agent stopped.
    pub ended_shutdown: u64,
    /// INVITEs cancelled before the answer.
    pub cancelled: u64,
    /// INVITEs refused (no G.711, bad SDP, call limit, no ports).
    pub rejected: u64,
    /// Requests answered with 400.
    pub bad_requests: u64,
    /// Datagrams dropped as unparseable.
    pub malformed_dropped: u64,
    /// OPTIONS answered.
    pub options: u64,
    /// 200 OK retransmissions (no ACK yet).
    pub retransmissions: u64,
    /// RTP datagrams dropped because a call's queue was full.
    pub rtp_queue_full: u64,
}

struct Media {
    tasks: Vec<JoinHandle<()>>,
    last_packet_ms: Arc<AtomicU64>,
}

struct CallState {
    invite: Message,
    invite_cseq: u32,
    to_tag: String,
    peer: SocketAddr,
    answer_sdp: String,
    roles: Vec<Role>,
    response: Option<Vec<u8>>,
    answer_due: Instant,
    answered_at: Option<Instant>,
    acked: bool,
    retrans_at: Instant,
    retrans_every: Duration,
    media: Option<Media>,
    rx: Option<crossbeam_channel::Receiver<Packet>>,
    ended_at: Option<Instant>,
    safe_id: String,
}

/// The agent.
pub struct UserAgent {
    cfg: UaConfig,
    start: Instant,
    calls: HashMap<String, CallState>,
    next_port: u16,
    stats: UaStats,
    queue_full: Arc<AtomicU64>,
    handler: Box<dyn FnMut(NewCall) + Send>,
    seq: u64,
}

const T1: Duration = Duration::from_millis(500);
const LINGER: Duration = Duration::from_secs(32);

/// A Call-ID made safe for file names and logs.
pub fn safe_call_id(id: &str) -> String {
    let s: String = id
        .chars()
        .map(|c| {
            if c.is_ascii_alphanumeric() || "._@-".contains(c) {
                c
            } else {
                '_'
            }
        })
        .take(96)
        .collect();
    if s.is_empty() {
        "call".into()
    } else {
        s
    }
}

/// Role named by an SDP label, if any.
fn role_of_label(label: &str) -> Option<Role> {
    let l = label.to_ascii_lowercase();
    if l.contains("agent") {
        Some(Role::Agent)
    } else if l.contains("customer") || l.contains("caller") || l.contains("client") {
        Some(Role::Customer)
    } else {
        None
    }
}

fn other(r: Role) -> Role {
    match r {
        Role::Agent => Role::Customer,
        Role::Customer => Role::Agent,
        Role::Unknown => Role::Unknown,
    }
}

/// Roles for the accepted audio streams of an offer, in order.
pub fn roles_for(labels: &[Option<&str>], caller_role: Role) -> Vec<Role> {
    if labels.len() == 1 {
        return vec![caller_role];
    }
    let by_label: Vec<Option<Role>> = labels.iter().map(|l| l.and_then(role_of_label)).collect();
    match (by_label[0], by_label[1]) {
        (Some(a), Some(b)) if a != b => vec![a, b],
        (Some(a), None) => vec![a, other(a)],
        (None, Some(b)) => vec![other(b), b],
        _ => vec![caller_role, other(caller_role)],
    }
}

/// The SDP in a request body: `application/sdp`, or its part in a
/// `multipart/mixed` body (SIPREC).
pub fn sdp_body(m: &Message) -> Result<Option<String>, String> {
    if m.body.is_empty() {
        return Ok(None);
    }
    let ct = m.header("Content-Type").unwrap_or("").to_ascii_lowercase();
    let body = String::from_utf8_lossy(&m.body);
    if ct.starts_with("application/sdp") {
        return Ok(Some(body.into_owned()));
    }
    if ct.starts_with("multipart/") {
        let orig = m.header("Content-Type").unwrap_or("");
        let boundary = orig
            .split(';')
            .skip(1)
            .find_map(|p| {
                let (k, v) = p.split_once('=')?;
                k.trim()
                    .eq_ignore_ascii_case("boundary")
                    .then(|| v.trim().trim_matches('"').to_string())
            })
            .ok_or("multipart body without a boundary")?;
        let delim = format!("--{boundary}");
        for part in body.split(delim.as_str()).skip(1) {
            let part = part.trim_start_matches("\r\n").trim_start_matches('\n');
            let (head, content) = match part.split_once("\r\n\r\n") {
                Some(x) => x,
                None => match part.split_once("\n\n") {
                    Some(x) => x,
                    None => continue,
                },
            };
            if head.to_ascii_lowercase().contains("application/sdp") {
                return Ok(Some(content.trim_end_matches("\r\n").to_string()));
            }
        }
        return Err("multipart body has no application/sdp part".into());
    }
    Err(format!("unsupported body type '{ct}'"))
}

/// Best-effort reading of a message that failed to parse, for a 400: the
/// request line and the headers a response must copy. None when those are
/// missing, or when one of them holds a control character (a bare CR would
/// split it into two headers once copied into the response).
pub fn salvage(data: &[u8]) -> Option<Message> {
    let text = String::from_utf8_lossy(&data[..data.len().min(sip::MAX_MESSAGE)]);
    let head = text.split("\r\n\r\n").next().unwrap_or(&text);
    let mut lines = head.lines();
    let first = lines.next()?.trim();
    let mut parts = first.split(' ');
    let method = parts.next()?;
    let _uri = parts.next()?;
    if parts.next()? != "SIP/2.0"
        || method.is_empty()
        || !method.bytes().all(|b| b.is_ascii_uppercase())
    {
        return None;
    }
    let mut headers = Vec::new();
    for l in lines.take(sip::MAX_HEADERS) {
        if let Some((k, v)) = l.split_once(':') {
            let k = k.trim();
            for (short, long) in [
                ("via", "Via"),
                ("v", "Via"),
                ("from", "From"),
                ("f", "From"),
                ("to", "To"),
                ("t", "To"),
                ("call-id", "Call-ID"),
                ("i", "Call-ID"),
                ("cseq", "CSeq"),
            ] {
                if k.eq_ignore_ascii_case(short) {
                    let v = v.trim();
                    if v.chars().any(|c| c.is_control() && c != '\t') {
                        return None;
                    }
                    headers.push((long.to_string(), v.to_string()));
                }
            }
        }
    }
    if headers.iter().filter(|(k, _)| k == "Via").count() > sip::MAX_VIAS {
        return None; // a response copying them would not be valid either
    }
    let m = Message {
        start: StartLine::Request {
            method: method.into(),
            uri: "sip:x".into(),
        },
        headers,
        body: Vec::new(),
    };
    (m.header("Via").is_some() && m.call_id().is_some() && m.header("CSeq").is_some()).then_some(m)
}

impl UserAgent {
    /// An agent that hands each answered call to `handler` (which starts
    /// the pipeline on its own thread).
    pub fn new(cfg: UaConfig, handler: Box<dyn FnMut(NewCall) + Send>) -> Self {
        let first = first_even(cfg.rtp_ports.0, cfg.rtp_ports.1).unwrap_or(cfg.rtp_ports.0);
        UserAgent {
            cfg,
            start: Instant::now(),
            calls: HashMap::new(),
            next_port: first,
            stats: UaStats::default(),
            queue_full: Arc::new(AtomicU64::new(0)),
            handler,
            seq: 0,
        }
    }

    fn media_ip(&self) -> IpAddr {
        self.cfg.media_ip.unwrap_or_else(|| {
            let ip = self.cfg.listen.ip();
            if ip.is_unspecified() {
                IpAddr::from([127, 0, 0, 1])
            } else {
                ip
            }
        })
    }

    fn active(&self) -> usize {
        self.calls.values().filter(|c| c.ended_at.is_none()).count()
    }

    /// Serve until `stop` is set. `ready` gets the bound SIP address.
    pub async fn run(
        mut self,
        stop: Arc<AtomicBool>,
        ready: impl FnOnce(SocketAddr),
    ) -> std::io::Result<UaStats> {
        let sock = UdpSocket::bind(self.cfg.listen).await?;
        ready(sock.local_addr()?);
        let mut buf = vec![0u8; 65_536];
        let mut tick = tokio::time::interval(Duration::from_millis(20));
        loop {
            tokio::select! {
                r = sock.recv_from(&mut buf) => {
                    match r {
                        Ok((n, peer)) => {
                            let data = buf[..n].to_vec();
                            self.handle(&sock, &data, peer).await;
                        }
                        // ICMP errors from earlier sends surface here on Linux.
                        Err(e) if e.kind() == std::io::ErrorKind::ConnectionRefused => {}
                        Err(e) => return Err(e),
                    }
                }
                _ = tick.tick() => {
                    if stop.load(Ordering::Relaxed) {
                        break;
                    }
                    self.timers(&sock).await;
                }
            }
        }
        let ids: Vec<String> = self
            .calls
            .iter()
            .filter(|(_, c)| c.ended_at.is_none() && c.answered_at.is_some())
            .map(|(k, _)| k.clone())
            .collect();
        for id in ids {
            self.end_call(&id);
            self.stats.ended_shutdown += 1;
        }
        self.stats.rtp_queue_full = self.queue_full.load(Ordering::Relaxed);
        Ok(self.stats)
    }

    async fn send(&self, sock: &UdpSocket, bytes: &[u8], to: SocketAddr) {
        if let Err(e) = sock.send_to(bytes, to).await {
            tracing::warn!("cannot send SIP to {to}: {e}");
        }
    }

    async fn handle(&mut self, sock: &UdpSocket, data: &[u8], peer: SocketAddr) {
        if data.iter().all(|b| b.is_ascii_whitespace()) {
            return; // keep-alive
        }
        let msg = match sip::parse(data) {
            Ok(m) => m,
            Err(e) => {
                match salvage(data) {
                    Some(m) if m.method() != Some("ACK") => {
                        self.bad_request(sock, &m, peer, &e.to_string()).await
                    }
                    _ => {
                        self.stats.malformed_dropped += 1;
                        tracing::debug!("dropped malformed SIP from {peer}: {e}");
                    }
                }
                return;
            }
        };
        let Some(method) = msg.method().map(str::to_string) else {
            return; // responses: we send no requests
        };
        if let Err(e) = msg.validate_request() {
            if msg.header("Via").is_some() && method != "ACK" {
                self.bad_request(sock, &msg, peer, &e.to_string()).await;
            } else {
                self.stats.malformed_dropped += 1;
            }
            return;
        }
        let call_id = msg.call_id().unwrap_or_default().to_string();
        match method.as_str() {
            "INVITE" => self.invite(sock, msg, call_id, peer).await,
            "ACK" => {
                if let Some(c) = self.calls.get_mut(&call_id) {
                    c.acked = true;
                }
            }
            "BYE" => {
                let known = self
                    .calls
                    .get(&call_id)
                    .is_some_and(|c| c.ended_at.is_none());
                if known {
                    let tag = self.calls[&call_id].to_tag.clone();
                    let r = msg.response(200, "OK", Some(&tag), &[], None);
                    self.send(sock, &r, peer).await;
                    if self.calls[&call_id].answered_at.is_some() {
                        self.stats.ended_bye += 1;
                    }
                    self.end_call(&call_id);
                } else if self.calls.contains_key(&call_id) {
                    // Retransmitted BYE for a call already ended.
                    let tag = self.calls[&call_id].to_tag.clone();
                    let r = msg.response(200, "OK", Some(&tag), &[], None);
                    self.send(sock, &r, peer).await;
                } else {
                    let r = msg.response(481, "Call/Transaction Does Not Exist", None, &[], None);
                    self.send(sock, &r, peer).await;
                }
            }
            "CANCEL" => {
                let Some(c) = self.calls.get(&call_id) else {
                    let r = msg.response(481, "Call/Transaction Does Not Exist", None, &[], None);
                    self.send(sock, &r, peer).await;
                    return;
                };
                let tag = c.to_tag.clone();
                let r = msg.response(200, "OK", Some(&tag), &[], None);
                self.send(sock, &r, peer).await;
                if c.answered_at.is_none() && c.ended_at.is_none() {
                    let r = c
                        .invite
                        .response(487, "Request Terminated", Some(&tag), &[], None);
                    let to = c.peer;
                    self.send(sock, &r, to).await;
                    self.stats.cancelled += 1;
                    self.end_call(&call_id);
                }
            }
            "OPTIONS" => {
                self.stats.options += 1;
                let r = msg.response(
                    200,
                    "OK",
                    None,
                    &[
                        ("Allow", "INVITE, ACK, BYE, CANCEL, OPTIONS"),
                        ("Accept", "application/sdp, multipart/mixed"),
                        ("Server", "callpulse"),
                    ],
                    None,
                );
                self.send(sock, &r, peer).await;
            }
            _ => {
                let r = msg.response(
                    405,
                    "Method Not Allowed",
                    None,
                    &[("Allow", "INVITE, ACK, BYE, CANCEL, OPTIONS")],
                    None,
                );
                self.send(sock, &r, peer).await;
            }
        }
    }

    async fn bad_request(&mut self, sock: &UdpSocket, m: &Message, peer: SocketAddr, why: &str) {
        self.stats.bad_requests += 1;
        let warning = format!("399 callpulse \"{}\"", why.replace('"', "'"));
        let r = m.response(400, "Bad Request", None, &[("Warning", &warning)], None);
        self.send(sock, &r, peer).await;
    }

    async fn reject(
        &mut self,
        sock: &UdpSocket,
        m: &Message,
        peer: SocketAddr,
        code: u16,
        reason: &str,
        why: &str,
    ) {
        self.stats.rejected += 1;
        let warning = format!("399 callpulse \"{}\"", why.replace('"', "'"));
        let tag = format!("cp{:x}", self.seq);
        let r = m.response(code, reason, Some(&tag), &[("Warning", &warning)], None);
        self.send(sock, &r, peer).await;
    }

    async fn invite(&mut self, sock: &UdpSocket, msg: Message, call_id: String, peer: SocketAddr) {
        let cseq = msg.cseq().map(|c| c.0).unwrap_or(0);
        let media_ip = self.media_ip();
        if let Some(c) = self.calls.get_mut(&call_id) {
            // Retransmission or re-INVITE: answer with the same media.
            if c.ended_at.is_some() {
                let r = msg.response(481, "Call/Transaction Does Not Exist", None, &[], None);
                self.send(sock, &r, peer).await;
                return;
            }
            if cseq != c.invite_cseq {
                c.invite = msg;
                c.invite_cseq = cseq;
                c.acked = false;
                let r = Self::ok(c, media_ip);
                c.response = Some(r.clone());
                c.retrans_at = Instant::now() + T1;
                c.retrans_every = T1;
                self.send(sock, &r, peer).await;
            } else if let Some(r) = c.response.clone() {
                self.send(sock, &r, peer).await;
            } else {
                let r = msg.response(100, "Trying", None, &[], None);
                self.send(sock, &r, peer).await;
            }
            return;
        }
        self.seq += 1;
        let offer = match sdp_body(&msg) {
            Ok(Some(b)) => b,
            Ok(None) => {
                return self
                    .reject(
                        sock,
                        &msg,
                        peer,
                        488,
                        "Not Acceptable Here",
                        "an SDP offer is required",
                    )
                    .await
            }
            Err(e) => {
                return self
                    .reject(sock, &msg, peer, 415, "Unsupported Media Type", &e)
                    .await
            }
        };
        let offer: Sdp = match sdp::parse(&offer) {
            Ok(s) => s,
            Err(e) => return self.bad_request(sock, &msg, peer, &e.to_string()).await,
        };
        let scoring = self
            .cfg
            .pipelines
            .as_ref()
            .map_or(0, |g| g.load(Ordering::SeqCst));
        if self.active().max(scoring) >= self.cfg.max_calls {
            return self
                .reject(sock, &msg, peer, 486, "Busy Here", "call limit reached")
                .await;
        }
        // Accept up to two G.711 audio streams; reject the other lines.
        let mut accepted: Vec<(usize, u8)> = Vec::new();
        for (i, m) in offer.media.iter().enumerate() {
            if accepted.len() < 2 && m.port != 0 && m.direction.as_deref() != Some("recvonly") {
                if let Some(pt) = m.g711() {
                    accepted.push((i, pt));
                }
            }
        }
        if accepted.is_empty() {
            return self
                .reject(
                    sock,
                    &msg,
                    peer,
                    488,
                    "Not Acceptable Here",
                    "no PCMU/PCMA audio stream offered",
                )
                .await;
        }
        let Some(sockets) = self.allocate(accepted.len()) else {
            return self
                .reject(
                    sock,
                    &msg,
                    peer,
                    503,
                    "Service Unavailable",
                    "no free RTP ports",
                )
                .await;
        };
        let answer_media = answer_media(&offer, &accepted, &sockets);
        let labels: Vec<Option<&str>> = accepted
            .iter()
            .map(|(i, _)| offer.media[*i].label.as_deref())
            .collect();
        let roles = roles_for(&labels, self.cfg.caller_role);
        let answer_sdp = sdp::answer(self.seq, self.media_ip(), &answer_media);
        // Media tasks start now, so no packet is lost around the answer.
        let (media, rx) = self.start_media(sockets);
        let trying = msg.response(100, "Trying", None, &[], None);
        self.send(sock, &trying, peer).await;
        let now = Instant::now();
        let state = CallState {
            invite: msg,
            invite_cseq: cseq,
            to_tag: format!(
                "cp{:x}{:x}",
                self.seq,
                self.start.elapsed().as_micros() & 0xFFFF
            ),
            peer,
            answer_sdp,
            roles,
            response: None,
            answer_due: now + self.cfg.answer_delay,
            answered_at: None,
            acked: false,
            retrans_at: now,
            retrans_every: T1,
            media: Some(media),
            rx: Some(rx),
            ended_at: None,
            safe_id: safe_call_id(&call_id),
        };
        self.calls.insert(call_id.clone(), state);
        if self.cfg.answer_delay.is_zero() {
            self.answer(sock, &call_id).await;
        }
    }

    /// One task per RTP socket, feeding the call's packet queue.
    fn start_media(&self, sockets: Vec<UdpSocket>) -> (Media, crossbeam_channel::Receiver<Packet>) {
        let (tx, rx) = crossbeam_channel::bounded::<Packet>(PACKET_QUEUE);
        let last = Arc::new(AtomicU64::new(0));
        let mut tasks = Vec::new();
        for (leg, s) in sockets.into_iter().enumerate() {
            let tx = tx.clone();
            let last = last.clone();
            let full = self.queue_full.clone();
            let start = self.start;
            tasks.push(tokio::spawn(async move {
                let local = s
                    .local_addr()
                    .unwrap_or_else(|_| SocketAddr::from(([0, 0, 0, 0], 0)));
                let mut buf = vec![0u8; 2048];
                loop {
                    match s.recv_from(&mut buf).await {
                        Ok((n, from)) => {
                            let at = Instant::now();
                            last.store(
                                at.duration_since(start).as_millis() as u64,
                                Ordering::Relaxed,
                            );
                            let p = Packet {
                                leg,
                                data: buf[..n].to_vec(),
                                at,
                                from,
                                to: local,
                            };
                            if let Err(crossbeam_channel::TrySendError::Full(_)) = tx.try_send(p) {
                                full.fetch_add(1, Ordering::Relaxed);
                            }
                        }
                        Err(e) if e.kind() == std::io::ErrorKind::ConnectionRefused => {}
                        Err(_) => break,
                    }
                }
            }));
        }
        let media = Media {
            tasks,
            last_packet_ms: last,
        };
        (media, rx)
    }

    fn ok(c: &CallState, media_ip: IpAddr) -> Vec<u8> {
        let contact = format!("<sip:callpulse@{}>", SocketAddr::new(media_ip, 0).ip());
        c.invite.response(
            200,
            "OK",
            Some(&c.to_tag),
            &[
                ("Contact", &contact),
                ("Allow", "INVITE, ACK, BYE, CANCEL, OPTIONS"),
                ("Server", "callpulse"),
            ],
            Some(("application/sdp", c.answer_sdp.as_bytes())),
        )
    }

    async fn answer(&mut self, sock: &UdpSocket, call_id: &str) {
        let media_ip = self.media_ip();
        let start = self.start;
        let Some(c) = self.calls.get_mut(call_id) else {
            return;
        };
        let r = Self::ok(c, media_ip);
        let now = Instant::now();
        c.response = Some(r.clone());
        c.answered_at = Some(now);
        c.retrans_at = now + T1;
        c.retrans_every = T1;
        if let Some(m) = &c.media {
            m.last_packet_ms.store(
                now.duration_since(start).as_millis() as u64,
                Ordering::Relaxed,
            );
        }
        let peer = c.peer;
        let call = NewCall {
            call_id: c.safe_id.clone(),
            source: RtpSource::new(
                c.rx.take().expect("answered once"),
                c.roles.clone(),
                self.cfg.jitter,
                now,
                c.safe_id.clone(),
            ),
            roles: c.roles.clone(),
            agent_id: agent_id(&c.invite, &self.cfg.agent_id_header, self.cfg.caller_role),
        };
        self.stats.calls += 1;
        self.send(sock, &r, peer).await;
        (self.handler)(call);
    }

    /// Stop a call's media: the source drains, the pipeline writes the summary.
    fn end_call(&mut self, call_id: &str) {
        if let Some(c) = self.calls.get_mut(call_id) {
            if let Some(m) = c.media.take() {
                for t in m.tasks {
                    t.abort();
                }
            }
            c.rx = None;
            c.ended_at = Some(Instant::now());
        }
    }

    async fn timers(&mut self, sock: &UdpSocket) {
        let now = Instant::now();
        let due: Vec<String> = self
            .calls
            .iter()
            .filter(|(_, c)| c.ended_at.is_none() && c.answered_at.is_none() && now >= c.answer_due)
            .map(|(k, _)| k.clone())
            .collect();
        for id in due {
            self.answer(sock, &id).await;
        }
        let since_start = now.duration_since(self.start).as_millis() as u64;
        let mut timed_out = Vec::new();
        let mut resend = Vec::new();
        for (id, c) in self.calls.iter_mut() {
            if c.ended_at.is_some() || c.answered_at.is_none() {
                continue;
            }
            if !c.acked && now >= c.retrans_at {
                if let Some(r) = &c.response {
                    resend.push((r.clone(), c.peer));
                }
                c.retrans_every = (c.retrans_every * 2).min(Duration::from_secs(4));
                c.retrans_at = now + c.retrans_every;
                if now.duration_since(c.answered_at.unwrap_or(now)) > 64 * T1 {
                    c.acked = true; // give up retransmitting (RFC: the call would end)
                }
            }
            if let Some(m) = &c.media {
                let last = m.last_packet_ms.load(Ordering::Relaxed);
                if since_start.saturating_sub(last) > self.cfg.rtp_timeout.as_millis() as u64 {
                    timed_out.push(id.clone());
                }
            }
        }
        for (r, to) in resend {
            self.stats.retransmissions += 1;
            self.send(sock, &r, to).await;
        }
        for id in timed_out {
            tracing::info!(
                "call {id}: no RTP for {:?}, ending it",
                self.cfg.rtp_timeout
            );
            self.stats.ended_rtp_timeout += 1;
            self.end_call(&id);
        }
        self.calls
            .retain(|_, c| c.ended_at.is_none_or(|t| now.duration_since(t) < LINGER));
    }

    /// Bind `n` UDP sockets on consecutive even ports (P, P+2, ...).
    fn allocate(&mut self, n: usize) -> Option<Vec<UdpSocket>> {
        let (lo, hi) = (self.cfg.rtp_ports.0, self.cfg.rtp_ports.1 as u32);
        let lo = first_even(lo, hi as u16)? as u32;
        let n = n as u32;
        let span = (hi - lo) / 2 + 1;
        let ip = self.media_ip();
        for _ in 0..span {
            let p = self.next_port as u32;
            let next = p + 2 * n;
            self.next_port = if next > hi { lo as u16 } else { next as u16 };
            if p < lo || p + 2 * (n - 1) > hi {
                continue;
            }
            let mut socks = Vec::new();
            for k in 0..n {
                // p + 2k <= hi <= 65535: fits.
                match std::net::UdpSocket::bind(SocketAddr::new(ip, (p + 2 * k) as u16)) {
                    Ok(s) => socks.push(s),
                    Err(_) => break,
                }
            }
            if socks.len() == n as usize {
                let mut out = Vec::new();
                for s in socks {
                    s.set_nonblocking(true).ok()?;
                    out.push(UdpSocket::from_std(s).ok()?);
                }
                return Some(out);
            }
        }
        None
    }
}

/// The answer's media lines: the accepted streams on our ports, the others
/// refused (port 0).
fn answer_media(offer: &Sdp, accepted: &[(usize, u8)], sockets: &[UdpSocket]) -> Vec<AnswerMedia> {
    let mut ports = sockets
        .iter()
        .map(|s| s.local_addr().map(|a| a.port()).unwrap_or(0));
    offer
        .media
        .iter()
        .enumerate()
        .map(|(i, m)| match accepted.iter().find(|(j, _)| *j == i) {
            Some(&(_, pt)) => AnswerMedia {
                port: ports.next().unwrap_or(0),
                payload_type: pt,
                label: m.label.clone(),
                kind: m.kind.clone(),
                proto: m.proto.clone(),
            },
            None => AnswerMedia {
                port: 0,
                payload_type: 0,
                label: None,
                kind: m.kind.clone(),
                proto: m.proto.clone(),
            },
        })
        .collect()
}

/// The first even port of `lo..=hi`, if any (RTP uses even ports).
pub fn first_even(lo: u16, hi: u16) -> Option<u16> {
    let p = lo as u32 + lo as u32 % 2;
    (p <= hi as u32).then_some(p as u16)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn roles_from_labels_and_order() {
        let c = Role::Customer;
        assert_eq!(roles_for(&[None], c), vec![Role::Customer]);
        assert_eq!(roles_for(&[None], Role::Agent), vec![Role::Agent]);
        assert_eq!(
            roles_for(&[Some("agent"), Some("customer")], c),
            vec![Role::Agent, Role::Customer]
        );
        assert_eq!(
            roles_for(&[Some("1"), Some("Agent-leg")], c),
            vec![Role::Customer, Role::Agent]
        );
        assert_eq!(
            roles_for(&[None, None], c),
            vec![Role::Customer, Role::Agent]
        );
        assert_eq!(
            roles_for(&[Some("agent"), Some("agent")], c),
            vec![Role::Customer, Role::Agent]
        );
    }

    #[test]
    fn the_agent_id_comes_from_a_header_or_the_agent_uri() {
        let m = |extra: &str| {
            crate::telephony::sip::parse(format!("INVITE sip:x SIP/2.0\r\nVia: SIP/2.0/UDP h\r\nFrom: \"Cust\" <sip:+4912345@pbx.example;user=phone>;tag=1\r\nTo: <sip:alice@pbx.example>\r\n{extra}Call-ID: c\r\nCSeq: 1 INVITE\r\n\r\n").as_bytes()).unwrap()
        };
        assert_eq!(
            agent_id(&m(""), "X-Agent-Id", Role::Customer).as_deref(),
            Some("alice")
        );
        assert_eq!(
            agent_id(&m(""), "X-Agent-Id", Role::Agent).as_deref(),
            Some("+4912345")
        );
        let h = m("X-Agent-Id: bob-7\r\n");
        assert_eq!(
            agent_id(&h, "X-Agent-Id", Role::Customer).as_deref(),
            Some("bob-7")
        );
        assert_eq!(agent_id(&h, "", Role::Customer).as_deref(), Some("alice"));
    }

    #[test]
    fn siprec_multipart_body() {
        let raw = "INVITE sip:srs@127.0.0.1 SIP/2.0\r\nVia: SIP/2.0/UDP h\r\nFrom: <sip:a>;tag=1\r\nTo: <sip:b>\r\nCall-ID: x\r\nCSeq: 1 INVITE\r\n\
Content-Type: multipart/mixed;boundary=\"XX\"\r\n\r\n\
--XX\r\nContent-Type: application/sdp\r\n\r\nv=0\r\nm=audio 6000 RTP/AVP 0\r\n\r\n\
--XX\r\nContent-Type: application/rs-metadata+xml\r\n\r\n<recording/>\r\n--XX--\r\n";
        let m = sip::parse(raw.as_bytes()).unwrap();
        let sdp = sdp_body(&m).unwrap().unwrap();
        assert_eq!(sdp::parse(&sdp).unwrap().media[0].port, 6000);
    }

    #[test]
    fn salvage_enough_for_400() {
        let bad = b"INVITE sip:x SIP/2.0\r\nVia: SIP/2.0/UDP h\r\nCall-ID: c\r\nCSeq: 1 INVITE\r\nContent-Length: 999\r\n\r\nv=0";
        assert!(sip::parse(bad).is_err());
        let m = salvage(bad).unwrap();
        assert_eq!(m.call_id(), Some("c"));
        assert!(salvage(b"\x00\x01garbage").is_none());
        assert!(salvage(b"INVITE sip:x SIP/2.0\r\nCall-ID: c\r\n\r\n").is_none());
    }

    /// Defect 7: a bare CR inside a copied header went into the 400 and
    /// split it, so a request could add headers to our response.
    #[test]
    fn regression_salvage_copies_no_bare_cr_into_a_400() {
        let bad = b"INVITE sip:x SIP/2.0\r\nVia: SIP/2.0/UDP h\rX-Injected: evil\r\nCall-ID: c\r\nCSeq: 1 INVITE\r\nContent-Length: 999\r\n\r\n";
        assert!(sip::parse(bad).is_err());
        if let Some(m) = salvage(bad) {
            let r = m.response(400, "Bad Request", None, &[], None);
            let bare = r
                .iter()
                .enumerate()
                .any(|(i, &b)| b == b'\r' && r.get(i + 1) != Some(&b'\n'));
            assert!(!bare, "{}", String::from_utf8_lossy(&r));
        }
        let tab = b"INVITE sip:x SIP/2.0\r\nVia: SIP/2.0/UDP\th\r\nCall-ID: c\r\nCSeq: 1 INVITE\r\nContent-Length: 9\r\n\r\n";
        assert!(
            salvage(tab).is_some(),
            "a tab is not a control character here"
        );
    }

    /// Found by the salvage fuzz target: a request with two To (and
    /// Call-ID) headers; the 400 copies the first of each, and parses.
    #[test]
    fn regression_fuzz_salvage_duplicate_to() {
        let found = include_bytes!("../../fuzz/regressions/salvage-duplicate-to.bin");
        assert!(sip::parse(found).is_err());
        let m = salvage(found).expect("enough to answer");
        assert_eq!(m.headers_named("To").count(), 2);
        let r = m.response(400, "Bad Request", None, &[], None);
        let back = sip::parse(&r).expect("our 400 parses");
        assert_eq!(back.headers_named("To").count(), 1);
        assert_eq!(back.header("To"), m.header("To"));
        assert_eq!(back.header("Call-ID"), Some("1@cam: <sip:customeag=c1"));
    }

    /// Defect 6: `lo + lo % 2` overflowed for `--rtp-ports 65535`.
    #[tokio::test]
    async fn regression_top_port_range_does_not_overflow() {
        let cfg = |ports| UaConfig {
            listen: "127.0.0.1:0".parse().unwrap(),
            media_ip: None,
            rtp_ports: ports,
            jitter: JitterConfig::default(),
            caller_role: Role::Customer,
            agent_id_header: String::new(),
            answer_delay: Duration::ZERO,
            rtp_timeout: Duration::from_secs(1),
            max_calls: 1,
            pipelines: None,
        };
        let mut ua = UserAgent::new(cfg((65535, 65535)), Box::new(|_| {}));
        assert!(ua.allocate(1).is_none(), "no even port in 65535-65535");
        let mut ua = UserAgent::new(cfg((65534, 65535)), Box::new(|_| {}));
        assert!(ua.allocate(2).is_none(), "65534 + 2 is past the range");
        assert_eq!(first_even(65535, 65535), None);
        assert_eq!(first_even(65533, 65535), Some(65534));
        assert_eq!(first_even(0, 0), Some(0));
    }

    #[test]
    fn call_ids_are_file_safe() {
        assert_eq!(safe_call_id("a/b@c..d e"), "a_b@c..d_e");
        assert_eq!(safe_call_id(""), "call");
        assert_eq!(safe_call_id(&"x".repeat(500)).len(), 96);
    }
}
