//! Calls in a packet capture (`callpulse pcap`).
//!
//! Pass 1 reads the capture for SIP dialogs (INVITE offer, 2xx or ACK
//! answer, BYE) and RTP flows. Each SDP audio line names where its sender
//! receives media, so a flow to that address carries the *other* party's
//! voice; SIPREC-style offers (two audio lines) name the party per line
//! (`a=label`, else order). Flows no dialog claims are grouped by the RTP
//! heuristics: a flow and its reverse (same two endpoints) form one call,
//! the one that starts first being the caller; a lone flow is a one-leg
//! call. Pass 2 decodes every call's packets through the same jitter buffer
//! as live calls, timed by the capture clock.

use std::collections::{BTreeMap, HashMap};
use std::fs::File;
use std::io::BufReader;
use std::net::SocketAddr;
use std::path::Path;

use serde::Serialize;

use super::jitter::{JitterConfig, LegStats, Mixer, RATE};
use super::pcap::{self, PcapError, Reader};
use super::rtp::{self, RtpError};
use super::sdp::{self, Sdp};
use super::sip::{self, StartLine};
use super::ua::{roles_for, safe_call_id, sdp_body};
use crate::event::Role;

/// How calls are found and decoded.
#[derive(Debug, Clone)]
pub struct CaptureOptions {
    /// Jitter buffer (placement window for late packets).
    pub jitter: JitterConfig,
    /// Role of the calling party.
    pub caller_role: Role,
    /// A flow needs this many G.711 packets to count as audio.
    pub min_packets: u64,
}

impl Default for CaptureOptions {
    fn default() -> Self {
        CaptureOptions {
            jitter: JitterConfig {
                window_ms: 200,
                jump_ms: 1000,
            },
            caller_role: Role::Customer,
            min_packets: 25,
        }
    }
}

/// What the capture held and what was used.
#[derive(Debug, Clone, Default, Serialize)]
pub struct CaptureReport {
    /// Frames read.
    pub frames: u64,
    /// UDP datagrams among them.
    pub udp: u64,
    /// SIP messages parsed.
    pub sip_messages: u64,
    /// UDP payloads that looked like SIP but did not parse.
    pub sip_malformed: u64,
    /// SIP dialogs with an INVITE.
    pub dialogs: usize,
    /// RTP packets seen.
    pub rtp_packets: u64,
    /// RTP packets decoded into calls.
    pub rtp_used: u64,
    /// RTCP packets (not used).
    pub rtcp_packets: u64,
    /// Frames skipped, by reason.
    pub skipped: BTreeMap<String, u64>,
    /// Calls found.
    pub calls: usize,
    /// Of those, calls found through SIP.
    pub calls_with_sip: usize,
    /// The capture ended in an error after these counts (truncated, corrupt).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub error: Option<String>,
}

impl CaptureReport {
    fn skip(&mut self, why: &str) {
        *self.skipped.entry(why.into()).or_insert(0) += 1;
    }
}

type Flow = (SocketAddr, SocketAddr);

#[derive(Debug, Default)]
struct FlowInfo {
    packets: u64,
    g711: u64,
    first_ns: i128,
    last_ns: i128,
}

#[derive(Debug, Default)]
struct Dialog {
    first_ns: i128,
    last_ns: i128,
    ended: bool,
    order: usize,
    /// SDP and whether the caller sent it.
    offer: Option<(Sdp, bool)>,
    answer: Option<(Sdp, bool)>,
}

/// A call found in the capture.
#[derive(Debug, Clone)]
pub struct FoundCall {
    /// Call id for events (Call-ID, or the flow endpoints).
    pub call_id: String,
    /// Found through SIP.
    pub sip: bool,
    /// Role per leg.
    pub roles: Vec<Role>,
    /// Flows and their leg.
    pub flows: Vec<(Flow, usize)>,
    /// Capture time of its first RTP packet (timeline zero), ns.
    pub t0_ns: i128,
    /// Packets outside this time range belong to another call. ns.
    pub window: (i128, i128),
}

/// A call's decoded audio.
pub struct DecodedCall {
    /// The call.
    pub call: FoundCall,
    /// Interleaved 8 kHz legs.
    pub audio: Vec<f32>,
    /// Transport counters per leg.
    pub stats: Vec<LegStats>,
}

fn looks_like_sip(p: &[u8]) -> bool {
    let head = &p[..p.len().min(16)];
    head.starts_with(b"SIP/2.0 ")
        || [
            "INVITE ",
            "ACK ",
            "BYE ",
            "CANCEL ",
            "OPTIONS ",
            "REGISTER ",
            "PRACK ",
            "UPDATE ",
            "INFO ",
            "NOTIFY ",
            "SUBSCRIBE ",
            "REFER ",
            "MESSAGE ",
        ]
        .iter()
        .any(|m| head.starts_with(m.as_bytes()))
}

fn open(path: &Path) -> Result<Reader<BufReader<File>>, PcapError> {
    let f = File::open(path).map_err(|e| PcapError::Io(format!("{}: {e}", path.display())))?;
    Reader::new(BufReader::with_capacity(1 << 20, f))
}

/// Pass 1: find the calls.
pub fn find_calls(
    path: &Path,
    opts: &CaptureOptions,
) -> Result<(Vec<FoundCall>, CaptureReport), PcapError> {
    let mut rd = open(path)?;
    let mut rep = CaptureReport::default();
    let mut flows: HashMap<Flow, FlowInfo> = HashMap::new();
    let mut dialogs: HashMap<String, Dialog> = HashMap::new();
    loop {
        let frame = match rd.next_frame() {
            Ok(Some(f)) => f,
            Ok(None) => break,
            Err(e) => {
                rep.error = Some(e.to_string());
                break;
            }
        };
        rep.frames += 1;
        let d = match pcap::udp_of(frame.linktype, &frame.data) {
            Ok(d) => d,
            Err(why) => {
                rep.skip(why.as_str());
                continue;
            }
        };
        rep.udp += 1;
        if looks_like_sip(d.payload) {
            match sip::parse(d.payload) {
                Ok(m) => {
                    rep.sip_messages += 1;
                    on_sip(&mut dialogs, &m, frame.ts_ns);
                }
                Err(_) => {
                    rep.sip_malformed += 1;
                    rep.skip("malformed SIP");
                }
            }
            continue;
        }
        match rtp::parse(d.payload) {
            Ok(p) => {
                rep.rtp_packets += 1;
                let f = flows.entry((d.src, d.dst)).or_insert(FlowInfo {
                    first_ns: frame.ts_ns,
                    ..Default::default()
                });
                f.packets += 1;
                if rtp::g711_codec(p.payload_type).is_some() && !p.payload.is_empty() {
                    f.g711 += 1;
                }
                f.last_ns = frame.ts_ns;
            }
            Err(RtpError::Rtcp(_)) => {
                rep.rtcp_packets += 1;
                rep.skip("RTCP");
            }
            Err(_) => rep.skip("other UDP"),
        }
    }
    rep.dialogs = dialogs
        .values()
        .filter(|d| d.offer.is_some() || d.answer.is_some())
        .count();
    let mut calls = Vec::new();
    let audio: HashMap<Flow, &FlowInfo> = flows
        .iter()
        .filter(|(_, f)| f.g711 >= opts.min_packets)
        .map(|(k, v)| (*k, v))
        .collect();
    let mut claimed: HashMap<Flow, Vec<(i128, i128)>> = HashMap::new();
    let mut ds: Vec<(&String, &Dialog)> = dialogs.iter().collect();
    ds.sort_by_key(|(_, d)| (d.first_ns, d.order));
    for (id, d) in ds {
        let (Some((offer, offer_by_caller)), Some((answer, _))) = (&d.offer, &d.answer) else {
            continue;
        };
        let (caller_sdp, callee_sdp) = if *offer_by_caller {
            (offer, answer)
        } else {
            (answer, offer)
        };
        let lo = d.first_ns - 1_000_000_000;
        let hi = if d.ended {
            d.last_ns + 2_000_000_000
        } else {
            i128::MAX
        };
        let in_time = |f: &FlowInfo| f.first_ns >= lo && f.first_ns <= hi;
        let audio_lines = |s: &Sdp| -> Vec<(Option<SocketAddr>, Option<String>)> {
            s.media
                .iter()
                .filter(|m| m.kind == "audio" && m.port != 0)
                .take(2)
                .map(|m| {
                    (
                        m.address(s).map(|ip| SocketAddr::new(ip, m.port)),
                        m.label.clone(),
                    )
                })
                .collect()
        };
        let matches = |ep: &Option<SocketAddr>, dst: &SocketAddr| match ep {
            Some(a) => a.port() == dst.port() && (a.ip() == dst.ip() || a.ip().is_unspecified()),
            None => false,
        };
        let offer_lines = audio_lines(offer);
        let (roles, targets): (Vec<Role>, Vec<(Option<SocketAddr>, usize)>) = if offer_lines.len()
            >= 2
        {
            // SIPREC: the recorder receives one stream per party.
            let labels: Vec<Option<&str>> = offer_lines.iter().map(|(_, l)| l.as_deref()).collect();
            let roles = roles_for(&labels, opts.caller_role);
            let ans = audio_lines(answer);
            (
                roles,
                ans.into_iter()
                    .enumerate()
                    .map(|(i, (ep, _))| (ep, i))
                    .collect(),
            )
        } else {
            let roles = roles_for(&[None, None], opts.caller_role);
            // Flows to the callee carry the caller (leg 0), and back.
            let mut t: Vec<(Option<SocketAddr>, usize)> = audio_lines(callee_sdp)
                .into_iter()
                .map(|(ep, _)| (ep, 0))
                .collect();
            t.extend(audio_lines(caller_sdp).into_iter().map(|(ep, _)| (ep, 1)));
            (roles, t)
        };
        let mut call_flows = Vec::new();
        for (flow, f) in &audio {
            if !in_time(f) {
                continue;
            }
            if let Some((_, leg)) = targets.iter().find(|(ep, _)| matches(ep, &flow.1)) {
                call_flows.push((*flow, *leg));
            }
        }
        if call_flows.is_empty() {
            continue;
        }
        call_flows.sort_by_key(|(f, leg)| (*leg, audio[f].first_ns));
        for (f, _) in &call_flows {
            claimed.entry(*f).or_default().push((lo, hi));
        }
        let t0 = call_flows
            .iter()
            .map(|(f, _)| audio[f].first_ns)
            .min()
            .unwrap_or(0);
        calls.push(FoundCall {
            call_id: safe_call_id(id),
            sip: true,
            roles,
            flows: call_flows,
            t0_ns: t0,
            window: (lo, hi),
        });
    }
    rep.calls_with_sip = calls.len();
    // RTP heuristics for what no dialog claimed.
    let mut rest: Vec<(&Flow, &&FlowInfo)> = audio
        .iter()
        .filter(|(f, _)| !claimed.contains_key(*f))
        .collect();
    rest.sort_by_key(|(f, i)| (i.first_ns, f.0, f.1));
    let mut used: Vec<Flow> = Vec::new();
    for (flow, info) in &rest {
        if used.contains(flow) {
            continue;
        }
        used.push(**flow);
        let back = (flow.1, flow.0);
        let id = format!("rtp-{}-{}", flow.0, flow.1).replace([':', '[', ']'], "_");
        if let Some((_, bi)) = rest.iter().find(|(f, _)| **f == back) {
            used.push(back);
            calls.push(FoundCall {
                call_id: safe_call_id(&id),
                sip: false,
                roles: roles_for(&[None, None], opts.caller_role),
                flows: vec![(**flow, 0), (back, 1)],
                t0_ns: info.first_ns.min(bi.first_ns),
                window: (i128::MIN, i128::MAX),
            });
        } else {
            calls.push(FoundCall {
                call_id: safe_call_id(&id),
                sip: false,
                roles: vec![Role::Unknown],
                flows: vec![(**flow, 0)],
                t0_ns: info.first_ns,
                window: (i128::MIN, i128::MAX),
            });
        }
    }
    calls.sort_by_key(|c| c.t0_ns);
    rep.calls = calls.len();
    Ok((calls, rep))
}

fn on_sip(dialogs: &mut HashMap<String, Dialog>, m: &sip::Message, ts: i128) {
    let Some(id) = m.call_id() else { return };
    let n = dialogs.len();
    let is_invite = m.method() == Some("INVITE");
    if !dialogs.contains_key(id) && !is_invite {
        return;
    }
    if dialogs.len() >= 100_000 && !dialogs.contains_key(id) {
        return;
    }
    let d = dialogs.entry(id.to_string()).or_insert_with(|| Dialog {
        first_ns: ts,
        order: n,
        ..Default::default()
    });
    d.last_ns = ts;
    let sdp = sdp_body(m).ok().flatten().and_then(|b| sdp::parse(&b).ok());
    match &m.start {
        StartLine::Request { method, .. } => match method.as_str() {
            "INVITE" => {
                if let (Some(s), None) = (sdp, &d.offer) {
                    d.offer = Some((s, true));
                }
            }
            "ACK" => {
                if let (Some(s), Some((_, false)), None) = (sdp, &d.offer, &d.answer) {
                    d.answer = Some((s, true));
                }
            }
            "BYE" | "CANCEL" => d.ended = true,
            _ => {}
        },
        StartLine::Response { code, .. } => {
            let invite = m.cseq().is_some_and(|(_, meth)| meth == "INVITE");
            if invite && (200..300).contains(code) {
                if let Some(s) = sdp {
                    match (&d.offer, &d.answer) {
                        (Some(_), None) => d.answer = Some((s, false)),
                        (None, _) => d.offer = Some((s, false)),
                        _ => {}
                    }
                }
            }
        }
    }
}

/// Pass 2: decode the calls' packets. `rep` gains the packets used.
pub fn decode_calls(
    path: &Path,
    calls: Vec<FoundCall>,
    opts: &CaptureOptions,
    rep: &mut CaptureReport,
) -> Result<Vec<DecodedCall>, PcapError> {
    let mut rd = open(path)?;
    let mut index: HashMap<Flow, Vec<(usize, usize)>> = HashMap::new();
    for (ci, c) in calls.iter().enumerate() {
        for (f, leg) in &c.flows {
            index.entry(*f).or_default().push((ci, *leg));
        }
    }
    let mut mixers: Vec<Mixer> = calls
        .iter()
        .map(|c| Mixer::new(opts.jitter, &c.roles))
        .collect();
    let mut audio: Vec<Vec<f32>> = vec![Vec::new(); calls.len()];
    let mut seen_flow: Vec<Vec<bool>> = calls.iter().map(|c| vec![false; c.roles.len()]).collect();
    loop {
        let frame = match rd.next_frame() {
            Ok(Some(f)) => f,
            Ok(None) => break,
            Err(_) => break, // reported by pass 1
        };
        let Ok(d) = pcap::udp_of(frame.linktype, &frame.data) else {
            continue;
        };
        let Some(owners) = index.get(&(d.src, d.dst)) else {
            continue;
        };
        let Some(&(ci, leg)) = owners.iter().find(|(ci, _)| {
            let w = calls[*ci].window;
            frame.ts_ns >= w.0 && frame.ts_ns <= w.1
        }) else {
            continue;
        };
        let Ok(p) = rtp::parse(d.payload) else {
            mixers[ci].malformed(leg);
            continue;
        };
        if !seen_flow[ci][leg] {
            seen_flow[ci][leg] = true;
            mixers[ci].set_source(leg, format!("{} -> {}", d.src, d.dst));
        }
        rep.rtp_used += 1;
        let arrival = ((frame.ts_ns - calls[ci].t0_ns) * RATE as i128 / 1_000_000_000) as i64;
        let m = &mut mixers[ci];
        let w = m.window();
        m.drain_to(arrival - w, &mut audio[ci]);
        m.push(leg, &p, arrival);
    }
    let mut out = Vec::new();
    for ((call, mut m), mut a) in calls.into_iter().zip(mixers).zip(audio) {
        let end = m.end();
        m.drain_to(end, &mut a);
        out.push(DecodedCall {
            stats: m.stats(),
            call,
            audio: a,
        });
    }
    Ok(out)
}
