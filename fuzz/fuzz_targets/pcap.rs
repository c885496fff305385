//! pcap/pcapng reading down to UDP datagrams.
#![no_main]

use callpulse::telephony::pcap::{udp_of, Reader};
use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    let Ok(mut r) = Reader::new(data) else { return };
    for _ in 0..10_000 {
        match r.next_frame() {
            Ok(Some(f)) => {
                if let Ok(d) = udp_of(f.linktype, &f.data) {
                    assert!(d.payload.len() <= f.data.len());
                }
            }
            Ok(None) | Err(_) => break,
        }
    }
});
