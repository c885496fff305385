//! Calls in a packet capture (`callpulse pcap`).
//!
//! Pass 1 ([`find_calls`]) reads the capture for SIP dialogs (INVITE offer,
//! 2xx or ACK answer, BYE) and RTP flows, and pairs them into calls
//! ([`pair`]): each SDP audio line names where its sender receives media,
//! so a flow to that address carries the *other* party's voice; SIPREC-style
//! offers (two audio lines) name the party per line (`a=label`, else
//! order). Flows no dialog claims are grouped by the RTP heuristics: a flow
//! and its reverse (same two endpoints) form one call, the one that starts
//! first being the caller; a lone flow is a one-leg call.
//!
//! Pass 2 ([`decode`]) reads the capture again for one call at a time and
//! streams its packets through the same jitter buffer as live calls, timed
//! by the capture clock: audio leaves in small chunks, so a capture of any
//! length, or with any timestamps, is decoded in bounded memory.

mod decode;
mod pair;

use std::collections::{BTreeMap, HashMap};
use std::fs::File;
use std::io::{BufReader, Read};
use std::net::SocketAddr;
use std::path::Path;

use serde::Serialize;

use super::jitter::JitterConfig;
use super::pcap::{self, PcapError, Reader};
use super::rtp::{self, RtpError};
use super::sdp::{self, Sdp};
use super::sip::{self, StartLine};
use super::ua::sdp_body;
use crate::event::Role;

pub use decode::{decode_call, decode_call_in, drain, CallDecoder, Decoded, PcapCall};

/// How calls are found and decoded.
#[derive(Debug, Clone)]
pub struct CaptureOptions {
    /// Jitter buffer (placement window for late packets, longest gap).
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
                ..Default::default()
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
    /// Flow/dialog candidates examined while pairing (grows with the number
    /// of flows, not with its square).
    #[serde(skip)]
    pub pairing_checks: u64,
}

impl CaptureReport {
    fn skip(&mut self, why: &str) {
        *self.skipped.entry(why.into()).or_insert(0) += 1;
    }
}

/// A flow: (source, destination).
pub type Flow = (SocketAddr, SocketAddr);

#[derive(Debug, Default)]
struct FlowInfo {
    packets: u64,
    g711: u64,
    first_ns: i128,
    last_ns: i128,
    /// Frame numbers (1-based) of its first and last packet.
    first_frame: u64,
    last_frame: u64,
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
    /// Frame numbers (1-based, inclusive) between which its packets lie:
    /// pass 2 reads no further.
    pub frames: (u64, u64),
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

/// Pass 1 on a file: find the calls.
pub fn find_calls(
    path: &Path,
    opts: &CaptureOptions,
) -> Result<(Vec<FoundCall>, CaptureReport), PcapError> {
    find_calls_in(open(path)?, opts)
}

/// Pass 1 on any reader of a capture.
pub fn find_calls_in<R: Read>(
    mut rd: Reader<R>,
    opts: &CaptureOptions,
) -> Result<(Vec<FoundCall>, CaptureReport), PcapError> {
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
                    first_frame: rep.frames,
                    ..Default::default()
                });
                f.packets += 1;
                if rtp::g711_codec(p.payload_type).is_some() && !p.payload.is_empty() {
                    f.g711 += 1;
                }
                f.last_ns = frame.ts_ns;
                f.last_frame = rep.frames;
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
    let calls = pair::pair(&flows, &dialogs, opts, &mut rep);
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
