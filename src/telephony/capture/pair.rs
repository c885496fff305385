//! Pairing flows with dialogs, and the rest with each other, into calls.

use std::collections::{HashMap, HashSet};
use std::net::SocketAddr;

use super::{CaptureOptions, CaptureReport, Dialog, Flow, FlowInfo, FoundCall};
use crate::event::Role;
use crate::telephony::sdp::Sdp;
use crate::telephony::ua::{roles_for, safe_call_id};

/// Audio flows indexed by where they go: exact address, and port alone
/// (for SDP lines with an unspecified address).
struct Index<'a> {
    audio: HashMap<Flow, &'a FlowInfo>,
    by_dst: HashMap<SocketAddr, Vec<Flow>>,
    by_port: HashMap<u16, Vec<Flow>>,
}

impl<'a> Index<'a> {
    fn new(flows: &'a HashMap<Flow, FlowInfo>, min_packets: u64) -> Self {
        let audio: HashMap<Flow, &FlowInfo> = flows
            .iter()
            .filter(|(_, f)| f.g711 >= min_packets)
            .map(|(k, v)| (*k, v))
            .collect();
        let mut by_dst: HashMap<SocketAddr, Vec<Flow>> = HashMap::new();
        let mut by_port: HashMap<u16, Vec<Flow>> = HashMap::new();
        for f in audio.keys() {
            by_dst.entry(f.1).or_default().push(*f);
            by_port.entry(f.1.port()).or_default().push(*f);
        }
        Index {
            audio,
            by_dst,
            by_port,
        }
    }

    /// Flows to `ep` (any address when its address is unspecified).
    fn to(&self, ep: SocketAddr) -> &[Flow] {
        let v = if ep.ip().is_unspecified() {
            self.by_port.get(&ep.port())
        } else {
            self.by_dst.get(&ep)
        };
        v.map_or(&[], |v| v.as_slice())
    }
}

/// Audio lines of an SDP (at most two): where each receives, and its label.
fn audio_lines(s: &Sdp) -> Vec<(Option<SocketAddr>, Option<String>)> {
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
}

/// Roles of a dialog's legs and the receiving address of each leg's flows.
/// Roles of the legs, and which address each leg's flows go to.
type Legs = (Vec<Role>, Vec<(SocketAddr, usize)>);

fn legs_of(d: &Dialog, caller_role: Role) -> Option<Legs> {
    let (Some((offer, offer_by_caller)), Some((answer, _))) = (&d.offer, &d.answer) else {
        return None;
    };
    let (caller_sdp, callee_sdp) = if *offer_by_caller {
        (offer, answer)
    } else {
        (answer, offer)
    };
    let offer_lines = audio_lines(offer);
    let (roles, targets): (Vec<Role>, Vec<(Option<SocketAddr>, usize)>) = if offer_lines.len() >= 2
    {
        // SIPREC: the recorder receives one stream per party.
        let labels: Vec<Option<&str>> = offer_lines.iter().map(|(_, l)| l.as_deref()).collect();
        let targets = audio_lines(answer)
            .into_iter()
            .enumerate()
            .map(|(i, (ep, _))| (ep, i))
            .collect();
        (roles_for(&labels, caller_role), targets)
    } else {
        // Flows to the callee carry the caller (leg 0), and back.
        let mut t: Vec<(Option<SocketAddr>, usize)> = audio_lines(callee_sdp)
            .into_iter()
            .map(|(ep, _)| (ep, 0))
            .collect();
        t.extend(audio_lines(caller_sdp).into_iter().map(|(ep, _)| (ep, 1)));
        (roles_for(&[None, None], caller_role), t)
    };
    let targets = targets
        .into_iter()
        .filter_map(|(ep, leg)| Some((ep?, leg)))
        .collect();
    Some((roles, targets))
}

/// The calls of a capture: SIP dialogs with their flows, then the flows no
/// dialog claimed. Each candidate is found through the index, so the work
/// grows with the number of flows and dialogs, not their product.
pub(super) fn pair(
    flows: &HashMap<Flow, FlowInfo>,
    dialogs: &HashMap<String, Dialog>,
    opts: &CaptureOptions,
    rep: &mut CaptureReport,
) -> Vec<FoundCall> {
    let idx = Index::new(flows, opts.min_packets);
    let mut calls = Vec::new();
    let mut claimed: HashSet<Flow> = HashSet::new();
    let mut ds: Vec<(&String, &Dialog)> = dialogs.iter().collect();
    ds.sort_by_key(|(_, d)| (d.first_ns, d.order));
    for (id, d) in ds {
        let Some((roles, targets)) = legs_of(d, opts.caller_role) else {
            continue;
        };
        let lo = d.first_ns - 1_000_000_000;
        let hi = if d.ended {
            d.last_ns + 2_000_000_000
        } else {
            i128::MAX
        };
        // The first target a flow goes to names its leg.
        let mut call_flows: Vec<(Flow, usize)> = Vec::new();
        for (ep, leg) in &targets {
            for flow in idx.to(*ep) {
                rep.pairing_checks += 1;
                let f = idx.audio[flow];
                if f.first_ns >= lo && f.first_ns <= hi && !call_flows.iter().any(|c| c.0 == *flow)
                {
                    call_flows.push((*flow, *leg));
                }
            }
        }
        if call_flows.is_empty() {
            continue;
        }
        call_flows.sort_by_key(|(f, leg)| (*leg, idx.audio[f].first_ns, f.0, f.1));
        claimed.extend(call_flows.iter().map(|(f, _)| *f));
        calls.push(found(
            safe_call_id(id),
            true,
            roles,
            call_flows,
            &idx,
            (lo, hi),
        ));
    }
    rep.calls_with_sip = calls.len();
    // RTP heuristics for what no dialog claimed.
    let mut rest: Vec<(&Flow, &&FlowInfo)> = idx
        .audio
        .iter()
        .filter(|(f, _)| !claimed.contains(*f))
        .collect();
    rest.sort_by_key(|(f, i)| (i.first_ns, f.0, f.1));
    let mut used: HashSet<Flow> = HashSet::new();
    for (flow, _) in &rest {
        rep.pairing_checks += 1;
        if !used.insert(**flow) {
            continue;
        }
        let back = (flow.1, flow.0);
        let id = safe_call_id(&format!("rtp-{}-{}", flow.0, flow.1).replace([':', '[', ']'], "_"));
        let all = (i128::MIN, i128::MAX);
        if idx.audio.contains_key(&back) && !claimed.contains(&back) && used.insert(back) {
            let roles = roles_for(&[None, None], opts.caller_role);
            calls.push(found(
                id,
                false,
                roles,
                vec![(**flow, 0), (back, 1)],
                &idx,
                all,
            ));
        } else {
            calls.push(found(
                id,
                false,
                vec![Role::Unknown],
                vec![(**flow, 0)],
                &idx,
                all,
            ));
        }
    }
    calls.sort_by_key(|c| c.t0_ns);
    rep.calls = calls.len();
    calls
}

fn found(
    call_id: String,
    sip: bool,
    roles: Vec<Role>,
    flows: Vec<(Flow, usize)>,
    idx: &Index<'_>,
    window: (i128, i128),
) -> FoundCall {
    let infos = || flows.iter().map(|(f, _)| idx.audio[f]);
    FoundCall {
        call_id,
        sip,
        roles,
        t0_ns: infos().map(|f| f.first_ns).min().unwrap_or(0),
        window,
        frames: (
            infos().map(|f| f.first_frame).min().unwrap_or(0),
            infos().map(|f| f.last_frame).max().unwrap_or(u64::MAX),
        ),
        flows,
    }
}

#[cfg(test)]
mod tests {
    use super::super::{find_calls_in, CaptureOptions};
    use crate::telephony::pcap::{Reader, Writer};
    use crate::telephony::rtp::{build, RtpPacket};
    use crate::telephony::sender::sip_dialog;
    use std::net::{Ipv4Addr, SocketAddrV4};

    fn rtp(seq: u16) -> Vec<u8> {
        build(&RtpPacket {
            marker: false,
            payload_type: 0,
            seq,
            timestamp: 160 * seq as u32,
            ssrc: 1,
            payload: &[0xFF; 8],
        })
    }

    fn addr(host: u8, port: u16) -> SocketAddrV4 {
        SocketAddrV4::new(Ipv4Addr::new(10, 0, 0, host), port)
    }

    /// Defect 11: every dialog was compared with every flow, and every
    /// unclaimed flow with every other one.
    #[test]
    fn regression_pairing_is_not_quadratic() {
        let mut w = Writer::new(Vec::new()).unwrap();
        let mut t = 0u64;
        // 300 SIP calls, each with its two flows.
        for i in 0..300u16 {
            let (caller, callee) = (addr(1, 10_000 + 2 * i), addr(2, 20_000 + 2 * i));
            let dialog = sip_dialog(
                &format!("c{i}"),
                addr(1, 5060),
                addr(2, 5060),
                caller,
                callee,
                0,
                1_000_000,
            );
            for (dt, src, dst, b) in dialog {
                w.udp(t + dt, src, dst, &b).unwrap();
            }
            w.udp(t + 100_000, caller, callee, &rtp(1)).unwrap();
            w.udp(t + 100_000, callee, caller, &rtp(1)).unwrap();
            t += 2_000_000_000; // far apart: the windows do not overlap
        }
        // 3000 calls without signalling (a flow and its reverse), 600 lone flows.
        for i in 0..3000u16 {
            let (a, b) = (addr(3, 30_000 + i), addr(4, 30_000 + i));
            w.udp(t, a, b, &rtp(1)).unwrap();
            w.udp(t + 1, b, a, &rtp(1)).unwrap();
            t += 10;
        }
        for i in 0..600u16 {
            w.udp(t, addr(5, 1000 + i), addr(6, 1000), &rtp(1)).unwrap();
            t += 10;
        }
        let bytes = w.finish().unwrap();
        let opts = CaptureOptions {
            min_packets: 1,
            ..Default::default()
        };
        let (calls, rep) = find_calls_in(Reader::new(&bytes[..]).unwrap(), &opts).unwrap();
        assert_eq!(rep.calls_with_sip, 300);
        assert_eq!(calls.len(), 300 + 3000 + 600);
        assert!(calls[..300].iter().all(|c| c.sip && c.flows.len() == 2));
        assert_eq!(calls.iter().filter(|c| c.flows.len() == 1).count(), 600);
        let flows = 2 * 300 + 2 * 3000 + 600;
        assert!(
            rep.pairing_checks <= 4 * flows,
            "{} checks for {flows} flows",
            rep.pairing_checks
        );
    }
}
