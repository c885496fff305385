//! SIP parsing, request validation, responses and SDP bodies.
#![no_main]

use callpulse::telephony::{sdp, sip, ua};
use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    let Ok(m) = sip::parse(data) else { return };
    let _ = m.validate_request();
    let _ = m.cseq();
    let _ = m.call_id();
    if let Some(f) = m.header("From") {
        let _ = sip::Message::tag_of(f);
    }
    // Any request can be answered, and the answer parses.
    let r = m.response(
        400,
        "Bad Request",
        Some("t1"),
        &[("Warning", "399 x \"y\"")],
        None,
    );
    if r.len() > sip::MAX_MESSAGE {
        return; // too big for a datagram anyway; the agent logs the send error
    }
    let p = sip::parse(&r).expect("our response parses");
    assert_eq!(
        p.call_id(),
        m.call_id()
            .map(str::trim)
            .filter(|s| !s.is_empty())
            .and(p.call_id())
    );
    if let Ok(Some(body)) = ua::sdp_body(&m) {
        let _ = sdp::parse(&body);
    }
});
