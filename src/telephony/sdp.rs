//! SDP (RFC 4566) offers and answers, as far as audio calls need them.

use std::net::IpAddr;

/// A parsed session description.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct Sdp {
    /// Session-level connection address (`c=`).
    pub connection: Option<IpAddr>,
    /// Media descriptions in order.
    pub media: Vec<Media>,
}

/// One `m=` section.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct Media {
    /// `audio`, `video`, ...
    pub kind: String,
    /// Transport port (0 = rejected stream).
    pub port: u16,
    /// Transport protocol (`RTP/AVP`).
    pub proto: String,
    /// Format list (payload types for RTP).
    pub formats: Vec<String>,
    /// Media-level connection address.
    pub connection: Option<IpAddr>,
    /// `a=rtpmap`: payload type → (encoding, clock rate).
    pub rtpmap: Vec<(u8, String, u32)>,
    /// `a=label` (RFC 4574), used by SIPREC to name the party.
    pub label: Option<String>,
    /// `sendrecv`, `sendonly`, `recvonly` or `inactive`.
    pub direction: Option<String>,
}

/// Why a body is not a usable SDP.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum SdpError {
    /// A line that is not `<letter>=<value>`.
    #[error("SDP line {0}: not of the form x=value")]
    Line(usize),
    /// A malformed `c=` or `m=` line.
    #[error("SDP line {line}: bad {what}")]
    Field {
        /// 1-based line number.
        line: usize,
        /// Which field.
        what: &'static str,
    },
    /// More than [`MAX_MEDIA`] media sections.
    #[error("SDP has more than {MAX_MEDIA} media sections")]
    TooManyMedia,
    /// No `v=0` first line.
    #[error("SDP does not start with v=0")]
    Version,
}

/// Most media sections accepted.
pub const MAX_MEDIA: usize = 16;

fn parse_conn(v: &str) -> Option<IpAddr> {
    let mut it = v.split_whitespace();
    let (net, _ty, addr) = (it.next()?, it.next()?, it.next()?);
    if net != "IN" {
        return None;
    }
    // Multicast forms carry "/ttl" suffixes.
    addr.split('/').next()?.parse().ok()
}

/// Parse an SDP body.
pub fn parse(body: &str) -> Result<Sdp, SdpError> {
    let mut sdp = Sdp::default();
    let mut first = true;
    for (i, raw) in body.lines().enumerate() {
        let line = raw.trim_end_matches('\r');
        if line.is_empty() {
            continue;
        }
        let n = i + 1;
        let b = line.as_bytes();
        if b.len() < 2 || b[1] != b'=' || !b[0].is_ascii_lowercase() {
            return Err(SdpError::Line(n));
        }
        let val = &line[2..];
        if first {
            if b[0] != b'v' || val.trim() != "0" {
                return Err(SdpError::Version);
            }
            first = false;
            continue;
        }
        match b[0] {
            b'c' => {
                let addr = parse_conn(val).ok_or(SdpError::Field {
                    line: n,
                    what: "connection (c=)",
                })?;
                match sdp.media.last_mut() {
                    Some(m) => m.connection = Some(addr),
                    None => sdp.connection = Some(addr),
                }
            }
            b'm' => {
                if sdp.media.len() >= MAX_MEDIA {
                    return Err(SdpError::TooManyMedia);
                }
                let bad = SdpError::Field {
                    line: n,
                    what: "media (m=)",
                };
                let mut it = val.split_whitespace();
                let kind = it.next().ok_or(bad.clone())?;
                let port = it.next().ok_or(bad.clone())?;
                // "port/count" is allowed; the count is ignored.
                let port: u16 = port
                    .split('/')
                    .next()
                    .and_then(|p| p.parse().ok())
                    .ok_or(bad.clone())?;
                let proto = it.next().ok_or(bad)?;
                sdp.media.push(Media {
                    kind: kind.into(),
                    port,
                    proto: proto.into(),
                    formats: it.map(String::from).collect(),
                    ..Default::default()
                });
            }
            b'a' => {
                let Some(m) = sdp.media.last_mut() else {
                    continue;
                };
                let (name, value) = match val.split_once(':') {
                    Some((a, b)) => (a, Some(b)),
                    None => (val, None),
                };
                match (name, value) {
                    ("rtpmap", Some(v)) => {
                        let mut it = v.split_whitespace();
                        let pt = it.next().and_then(|p| p.parse::<u8>().ok());
                        let enc = it.next();
                        if let (Some(pt), Some(enc)) = (pt, enc) {
                            let mut parts = enc.split('/');
                            let name = parts.next().unwrap_or("").to_string();
                            let rate = parts.next().and_then(|r| r.parse().ok()).unwrap_or(0);
                            m.rtpmap.push((pt, name, rate));
                        }
                    }
                    ("label", Some(v)) => m.label = Some(v.trim().to_string()),
                    ("sendrecv" | "sendonly" | "recvonly" | "inactive", None) => {
                        m.direction = Some(name.to_string())
                    }
                    _ => {}
                }
            }
            _ => {}
        }
    }
    if first {
        return Err(SdpError::Version);
    }
    Ok(sdp)
}

impl Media {
    /// Where this stream's receiver listens (media or session `c=`).
    pub fn address(&self, sdp: &Sdp) -> Option<IpAddr> {
        self.connection.or(sdp.connection)
    }

    /// The first G.711 payload type offered (0 = PCMU, 8 = PCMA), static or
    /// by `rtpmap` name at 8000 Hz.
    pub fn g711(&self) -> Option<u8> {
        if self.kind != "audio" || !self.proto.starts_with("RTP/") {
            return None;
        }
        for f in &self.formats {
            let Ok(pt) = f.parse::<u8>() else { continue };
            let mapped = self.rtpmap.iter().find(|(p, _, _)| *p == pt);
            let name = match mapped {
                Some((_, name, rate)) if *rate == 8000 || *rate == 0 => name.to_ascii_uppercase(),
                Some(_) => continue,
                None if pt == 0 => "PCMU".into(),
                None if pt == 8 => "PCMA".into(),
                None => continue,
            };
            match name.as_str() {
                "PCMU" => return Some(0),
                "PCMA" => return Some(8),
                _ => {}
            }
        }
        None
    }
}

/// One answered media line.
#[derive(Debug, Clone, PartialEq)]
pub struct AnswerMedia {
    /// Our port, or 0 to reject the stream.
    pub port: u16,
    /// Chosen payload type (0 or 8); ignored when rejected.
    pub payload_type: u8,
    /// Echo the offer's label.
    pub label: Option<String>,
    /// The offer's media kind and protocol (for rejected lines).
    pub kind: String,
    /// Protocol to answer with.
    pub proto: String,
}

/// Keep only characters that cannot break an SDP line or field.
fn token(s: &str) -> String {
    s.chars()
        .filter(|c| c.is_ascii_alphanumeric() || "/._-+:@".contains(*c))
        .take(64)
        .collect()
}

/// Write an answer: we only receive, so accepted lines are `recvonly`.
/// Values echoed from the offer (labels, media kinds) are sanitised.
pub fn answer(session_id: u64, addr: IpAddr, media: &[AnswerMedia]) -> String {
    let ipv = if addr.is_ipv4() { "IP4" } else { "IP6" };
    let mut s = format!(
        "v=0\r\no=callpulse {session_id} {session_id} IN {ipv} {addr}\r\ns=callpulse\r\nc=IN {ipv} {addr}\r\nt=0 0\r\n"
    );
    for m in media {
        if m.port == 0 {
            s.push_str(&format!("m={} 0 {} 0\r\n", token(&m.kind), token(&m.proto)));
            continue;
        }
        let name = if m.payload_type == 0 { "PCMU" } else { "PCMA" };
        s.push_str(&format!(
            "m=audio {} RTP/AVP {pt}\r\na=rtpmap:{pt} {name}/8000\r\n",
            m.port,
            pt = m.payload_type
        ));
        if let Some(l) = m.label.as_deref().map(token).filter(|l| !l.is_empty()) {
            s.push_str(&format!("a=label:{l}\r\n"));
        }
        s.push_str("a=recvonly\r\n");
    }
    s
}

#[cfg(test)]
mod tests {
    use super::*;

    const SIPREC: &str = "v=0\r\no=- 1 1 IN IP4 127.0.0.1\r\ns=-\r\nc=IN IP4 127.0.0.1\r\nt=0 0\r\n\
m=audio 6000 RTP/AVP 8 0 101\r\na=rtpmap:101 telephone-event/8000\r\na=label:customer\r\na=sendonly\r\n\
m=audio 6002 RTP/AVP 96\r\nc=IN IP4 127.0.0.2\r\na=rtpmap:96 pcmu/8000\r\na=label:agent\r\na=sendonly\r\n\
m=video 6004 RTP/AVP 97\r\n";

    #[test]
    fn parses_siprec_offer() {
        let s = parse(SIPREC).unwrap();
        assert_eq!(s.media.len(), 3);
        let (a, b) = (&s.media[0], &s.media[1]);
        assert_eq!(
            (a.port, a.g711(), a.label.as_deref()),
            (6000, Some(8), Some("customer"))
        );
        assert_eq!(
            (b.port, b.g711(), b.label.as_deref()),
            (6002, Some(0), Some("agent"))
        );
        assert_eq!(a.address(&s), Some("127.0.0.1".parse().unwrap()));
        assert_eq!(b.address(&s), Some("127.0.0.2".parse().unwrap()));
        assert_eq!(a.direction.as_deref(), Some("sendonly"));
        assert_eq!(s.media[2].g711(), None);
    }

    #[test]
    fn answer_round_trips() {
        let ans = answer(
            42,
            "127.0.0.1".parse().unwrap(),
            &[
                AnswerMedia {
                    port: 40000,
                    payload_type: 8,
                    label: Some("customer".into()),
                    kind: "audio".into(),
                    proto: "RTP/AVP".into(),
                },
                AnswerMedia {
                    port: 0,
                    payload_type: 0,
                    label: None,
                    kind: "video".into(),
                    proto: "RTP/AVP".into(),
                },
            ],
        );
        let s = parse(&ans).unwrap();
        assert_eq!(s.media[0].port, 40000);
        assert_eq!(s.media[0].g711(), Some(8));
        assert_eq!(s.media[1].port, 0);
    }

    #[test]
    fn rejects_malformed() {
        assert_eq!(parse(""), Err(SdpError::Version));
        assert_eq!(parse("o=x\r\n"), Err(SdpError::Version));
        assert_eq!(parse("v=0\r\ngarbage\r\n"), Err(SdpError::Line(2)));
        assert!(matches!(
            parse("v=0\r\nm=audio notaport RTP/AVP 0\r\n"),
            Err(SdpError::Field { line: 2, .. })
        ));
        assert!(matches!(
            parse("v=0\r\nc=IN IP4 999.1.1.1\r\n"),
            Err(SdpError::Field { line: 2, .. })
        ));
        let many = format!("v=0\r\n{}", "m=audio 1 RTP/AVP 0\r\n".repeat(17));
        assert_eq!(parse(&many), Err(SdpError::TooManyMedia));
    }
}
