//! RTP parsing and the jitter buffer: any datagram, any sequence of them.
#![no_main]

use callpulse::event::Role;
use callpulse::telephony::jitter::{JitterConfig, Mixer};
use callpulse::telephony::rtp;
use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    // One packet: parse, rebuild, parse again.
    if let Ok(p) = rtp::parse(data) {
        assert!(p.payload.len() <= data.len() - rtp::HEADER);
        let again = rtp::build(&p);
        let q = rtp::parse(&again).expect("a built packet parses");
        assert_eq!(
            (q.seq, q.timestamp, q.ssrc, q.payload_type, q.payload),
            (p.seq, p.timestamp, p.ssrc, p.payload_type, p.payload)
        );
    }
    // A stream: records of [leg, arrival delta (x 16 samples), length, bytes...]
    // pushed through a two-leg mixer that is drained as time goes on.
    let mut m = Mixer::new(JitterConfig::default(), &[Role::Agent, Role::Customer]);
    let mut out = Vec::new();
    let mut rest = data;
    let mut now: i64 = 0;
    while rest.len() >= 3 {
        let leg = (rest[0] & 1) as usize;
        now += rest[1] as i64 * 16;
        let len = (rest[2] as usize).min(rest.len() - 3);
        let pkt = &rest[3..3 + len];
        rest = &rest[3 + len..];
        if let Ok(p) = rtp::parse(pkt) {
            m.push(leg, &p, now);
        } else {
            m.malformed(leg);
        }
        m.drain_to(now - m.window(), &mut out);
        assert!(out.len() % 2 == 0);
        out.clear();
    }
    let end = m.end();
    m.drain_to(end, &mut out);
    let _ = m.stats();
});
