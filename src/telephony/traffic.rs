//! Test traffic (`callpulse rtp-send`): the channels of a recording as
//! impaired G.711 streams between addresses, sent in real time over UDP or
//! written to a capture, optionally with the SIP dialog of a plain call.

use std::net::{Ipv4Addr, SocketAddrV4, UdpSocket};
use std::path::Path;
use std::time::{Duration, Instant};

use serde::Serialize;

use super::sender::{self, CaptureDatagram, Impairment, Injected, Rng};

/// Capture time of the first datagram in a written pcap, µs since the epoch.
pub const PCAP_START_US: u64 = 1_700_000_000_000_000;

/// How the streams are made and where they go.
#[derive(Debug, Clone, Default)]
pub struct SendOptions {
    /// 0 (PCMU) or 8 (PCMA).
    pub payload_type: u8,
    /// Loss, reordering, duplicates (probabilities) and the seed, which
    /// also draws each stream's SSRC, first sequence number and timestamp.
    pub impairment: Impairment,
    /// Destination per channel (default 127.0.0.1:6000, :6002, ...).
    pub to: Vec<SocketAddrV4>,
    /// Source per channel (default 127.0.0.1:7000, :7002, ...).
    pub from: Vec<SocketAddrV4>,
    /// Add the SIP dialog of a plain call in which this channel calls the
    /// other (pcap only; the media flow to the ports the SDP names).
    pub sip_caller: Option<usize>,
}

/// What one stream was.
#[derive(Debug, Clone, Serialize)]
pub struct StreamReport {
    /// Channel index.
    pub stream: usize,
    /// Source address.
    pub from: String,
    /// Destination address.
    pub to: String,
    /// SSRC, hex.
    pub ssrc: String,
    /// What was done to it.
    pub injected: Injected,
}

/// The datagrams of every stream, in send order.
pub struct Traffic {
    merged: Vec<(u64, usize, Vec<u8>)>,
    addrs: Vec<(SocketAddrV4, SocketAddrV4)>,
    sip: Vec<CaptureDatagram>,
    /// One entry per stream.
    pub streams: Vec<StreamReport>,
}

/// Check the percentages and the speed; the message names the flag.
pub fn check(
    loss_pct: f64,
    reorder_pct: f64,
    duplicate_pct: f64,
    speed: f64,
) -> Result<(), String> {
    for (name, v) in [
        ("--loss", loss_pct),
        ("--reorder", reorder_pct),
        ("--duplicate", duplicate_pct),
    ] {
        if !(0.0..=50.0).contains(&v) {
            return Err(format!("{name} must be a percentage between 0 and 50"));
        }
    }
    if !(speed.is_finite() && speed > 0.0 && speed <= 100.0) {
        return Err("--speed must be between 0 and 100".into());
    }
    Ok(())
}

fn default_addrs(n: usize, base: u16) -> Vec<SocketAddrV4> {
    (0..n)
        .map(|i| SocketAddrV4::new(Ipv4Addr::LOCALHOST, base + 2 * i as u16))
        .collect()
}

/// (source, destination) per channel.
fn addresses(n: usize, o: &SendOptions) -> Result<Vec<(SocketAddrV4, SocketAddrV4)>, String> {
    let ip = Ipv4Addr::LOCALHOST;
    if let Some(caller) = o.sip_caller {
        if n > 2 || caller >= n {
            return Err(format!(
                "--sip: {n} channel(s); --caller-channel {caller} does not exist"
            ));
        }
        let (caller_media, callee_media) =
            (SocketAddrV4::new(ip, 7000), SocketAddrV4::new(ip, 6000));
        return Ok((0..n)
            .map(|i| {
                if i == caller {
                    (caller_media, callee_media)
                } else {
                    (callee_media, caller_media)
                }
            })
            .collect());
    }
    let pick = |v: &[SocketAddrV4], base| {
        if v.is_empty() {
            default_addrs(n, base)
        } else {
            v.to_vec()
        }
    };
    let (to, from) = (pick(&o.to, 6000), pick(&o.from, 7000));
    if to.len() != n || from.len() != n {
        return Err(format!(
            "{n} channel(s): give {n} address(es) to --to (and --from, if used)"
        ));
    }
    Ok(from.into_iter().zip(to).collect())
}

impl Traffic {
    /// Packetise and impair `legs` (8 kHz, one per channel).
    pub fn new(legs: &[Vec<f32>], o: &SendOptions) -> Result<Self, String> {
        let addrs = addresses(legs.len(), o)?;
        let mut rng = Rng::new(o.impairment.seed);
        let mut streams = Vec::new();
        let mut timed = Vec::new();
        for (i, l) in legs.iter().enumerate() {
            let ssrc = rng.next_u64() as u32;
            let seq0 = rng.next_u64() as u16;
            let ts0 = rng.next_u64() as u32;
            let pk = sender::packetise(l, o.payload_type, ssrc, seq0, ts0);
            let (t, injected) = sender::impair(pk, &o.impairment, &mut rng);
            streams.push(StreamReport {
                stream: i,
                from: addrs[i].0.to_string(),
                to: addrs[i].1.to_string(),
                ssrc: format!("{ssrc:#010x}"),
                injected,
            });
            timed.push(t);
        }
        let merged = sender::merge(timed);
        let sip = match o.sip_caller {
            Some(c) => {
                let ip = Ipv4Addr::LOCALHOST;
                let end = MEDIA_AFTER_SIP_US + merged.last().map_or(0, |m| m.0) + 200_000;
                sender::sip_dialog(
                    &format!("{}@callpulse.test", o.impairment.seed),
                    SocketAddrV4::new(ip, 5062),
                    SocketAddrV4::new(ip, 5060),
                    addrs[c].0,
                    addrs[c].1,
                    o.payload_type,
                    end,
                )
            }
            None => Vec::new(),
        };
        Ok(Traffic {
            merged,
            addrs,
            sip,
            streams,
        })
    }

    /// Write a capture: the SIP dialog first (if any), the media 160 ms
    /// later, timed as if sent in real time.
    pub fn write_pcap(&self, path: &Path) -> std::io::Result<()> {
        let media_at = if self.sip.is_empty() {
            0
        } else {
            MEDIA_AFTER_SIP_US
        };
        let mut dg: Vec<CaptureDatagram> = self
            .merged
            .iter()
            .map(|(t, k, b)| (media_at + t, self.addrs[*k].0, self.addrs[*k].1, b.clone()))
            .collect();
        dg.extend(self.sip.iter().cloned());
        dg.sort_by_key(|d| d.0);
        sender::write_pcap(path, &dg, PCAP_START_US)
    }

    /// Send over UDP at `speed` × real time (from each stream's source
    /// address when it can be bound). A refused datagram is not fatal.
    pub fn send(&self, speed: f64) -> std::io::Result<()> {
        let socks: Vec<UdpSocket> = self
            .addrs
            .iter()
            .map(|(from, to)| {
                UdpSocket::bind(from).or_else(|_| UdpSocket::bind(SocketAddrV4::new(*to.ip(), 0)))
            })
            .collect::<Result<_, _>>()?;
        let start = Instant::now();
        for (t, k, b) in &self.merged {
            let due = start + Duration::from_secs_f64(*t as f64 / 1e6 / speed);
            let now = Instant::now();
            if due > now {
                std::thread::sleep(due - now);
            }
            let _ = socks[*k].send_to(b, self.addrs[*k].1);
        }
        Ok(())
    }
}

/// The media of a call with SIP starts this long after the INVITE, µs.
const MEDIA_AFTER_SIP_US: u64 = 160_000;

#[cfg(test)]
mod tests {
    use super::*;
    use crate::event::Role;
    use crate::telephony::capture::{find_calls, CaptureOptions};

    #[test]
    fn a_written_call_is_found_with_its_roles() {
        let d = tempfile::tempdir().unwrap();
        let p = d.path().join("c.pcap");
        let legs = vec![vec![0.2f32; 8000], vec![-0.2f32; 8000]];
        let o = SendOptions {
            payload_type: 8,
            sip_caller: Some(1),
            impairment: Impairment {
                loss: 0.05,
                seed: 3,
                ..Default::default()
            },
            ..Default::default()
        };
        let t = Traffic::new(&legs, &o).unwrap();
        t.write_pcap(&p).unwrap();
        let (calls, rep) = find_calls(&p, &CaptureOptions::default()).unwrap();
        assert_eq!((rep.calls, rep.calls_with_sip, rep.sip_messages), (1, 1, 6));
        // Leg 0 is the caller (channel 1), the customer.
        assert_eq!(calls[0].roles, vec![Role::Customer, Role::Agent]);
        assert_eq!(calls[0].flows[0].0 .0.to_string(), t.streams[1].from);
        let sent: u64 = t.streams.iter().map(|s| s.injected.sent).sum();
        assert_eq!(rep.rtp_packets, sent);
    }

    #[test]
    fn bad_addresses_and_options_are_named() {
        let legs = vec![vec![0.0f32; 800]; 2];
        let o = SendOptions {
            to: default_addrs(1, 6000),
            ..Default::default()
        };
        let e = Traffic::new(&legs, &o).err().unwrap();
        assert!(e.contains("give 2 address(es)"), "{e}");
        let o = SendOptions {
            sip_caller: Some(2),
            ..Default::default()
        };
        assert!(Traffic::new(&legs, &o)
            .err()
            .unwrap()
            .contains("--caller-channel 2"));
        assert!(check(60.0, 0.0, 0.0, 1.0).unwrap_err().contains("--loss"));
        assert!(check(1.0, 0.0, 0.0, 0.0).unwrap_err().contains("--speed"));
    }
}
