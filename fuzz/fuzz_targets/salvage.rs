//! Salvaging a malformed SIP request for a 400: whatever it keeps must
//! survive being copied into our response. No bare CR or LF (a header
//! split), and the 400 parses back with the same headers.
#![no_main]

use callpulse::telephony::sip;
use callpulse::telephony::ua::salvage;
use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    let Some(m) = salvage(data) else { return };
    let r = m.response(400, "Bad Request", None, &[("Warning", "399 callpulse \"x\"")], None);
    for (i, &b) in r.iter().enumerate() {
        if b == b'\r' {
            assert_eq!(r.get(i + 1), Some(&b'\n'), "bare CR in {r:?}");
        }
        if b == b'\n' {
            assert!(i > 0 && r[i - 1] == b'\r', "bare LF in {r:?}");
        }
    }
    if r.len() <= sip::MAX_MESSAGE {
        let back = sip::parse(&r).expect("our 400 parses");
        // Every Via is copied; of the others, the first (a request with two
        // To headers gets a 400 with one).
        assert_eq!(back.headers_named("Via").count(), m.headers_named("Via").count());
        for name in ["Via", "From", "To", "Call-ID", "CSeq"] {
            assert_eq!(back.header(name), m.header(name), "{name}");
            assert!(back.headers_named(name).count() <= m.headers_named(name).count());
        }
    }
});
