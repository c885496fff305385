//! A whole capture: its calls found, then each one decoded through the
//! jitter buffer as `callpulse pcap` does. Whatever the timestamps, the
//! audio comes out in whole frames, within a bound per packet, and every
//! placed packet is counted.
#![no_main]

use callpulse::telephony::capture::{decode_call_in, find_calls_in, CallDecoder, CaptureOptions};
use callpulse::telephony::jitter::{JitterConfig, MAX_AHEAD, RATE};
use callpulse::telephony::pcap::Reader;
use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    let Ok(rd) = Reader::new(data) else { return };
    // A short maximum gap keeps each run quick; the code path is the same.
    let jitter = JitterConfig {
        window_ms: 200,
        jump_ms: 1000,
        max_gap_ms: 100,
    };
    let opts = CaptureOptions {
        jitter,
        min_packets: 1,
        ..Default::default()
    };
    let Ok((calls, rep)) = find_calls_in(rd, &opts) else {
        return;
    };
    assert_eq!(calls.len(), rep.calls);
    for (k, call) in calls.iter().enumerate().take(8) {
        let legs = call.roles.len();
        assert!(legs == 1 || legs == 2, "{legs} legs");
        let Ok(rd) = Reader::new(data) else { return };
        let mut dec = CallDecoder::new(call, &calls[..k], jitter);
        let mut samples = 0u64;
        decode_call_in(rd, &mut dec, &mut |chunk| {
            assert_eq!(chunk.len() % legs, 0, "whole frames");
            assert!(chunk.iter().all(|v| v.is_finite() && v.abs() <= 1.0));
            samples += chunk.len() as u64;
            true
        });
        let placed: u64 = dec.stats().iter().map(|s| s.packets).sum();
        assert_eq!(placed, dec.used());
        // A packet releases at most what fits ahead of the playout point,
        // one capped gap and the window.
        let per_packet = (MAX_AHEAD + 800 + RATE as i64) as u64;
        assert!(samples / legs as u64 <= (dec.used() + 1) * per_packet);
    }
});
