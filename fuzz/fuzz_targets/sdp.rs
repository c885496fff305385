//! SDP parsing, codec choice and the answer built from an offer.
#![no_main]

use callpulse::telephony::sdp::{self, AnswerMedia};
use callpulse::telephony::ua::roles_for;
use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    let text = String::from_utf8_lossy(data);
    let Ok(s) = sdp::parse(&text) else { return };
    assert!(s.media.len() <= sdp::MAX_MEDIA);
    let mut answer = Vec::new();
    let mut labels = Vec::new();
    for m in &s.media {
        let _ = m.address(&s);
        match m.g711() {
            Some(pt) if labels.len() < 2 => {
                labels.push(m.label.as_deref());
                answer.push(AnswerMedia {
                    port: 40000,
                    payload_type: pt,
                    label: m.label.clone(),
                    kind: m.kind.clone(),
                    proto: m.proto.clone(),
                })
            }
            _ => answer.push(AnswerMedia {
                port: 0,
                payload_type: 0,
                label: None,
                kind: m.kind.clone(),
                proto: m.proto.clone(),
            }),
        }
    }
    if !labels.is_empty() {
        let roles = roles_for(&labels, callpulse::event::Role::Customer);
        assert_eq!(roles.len(), labels.len());
    }
    // Labels and kinds come from the offer; a label with a line break would
    // inject SDP lines, so the answer must still parse to as many lines.
    let a = sdp::answer(1, "127.0.0.1".parse().unwrap(), &answer);
    if let Ok(back) = sdp::parse(&a) {
        assert!(back.media.len() >= answer.len().min(sdp::MAX_MEDIA));
    }
});
