//! SIP (RFC 3261) messages: parsing and building, as a user agent server
//! needs them. Limits keep hostile input cheap: 64 KiB per message, 128
//! headers, and a body that must match `Content-Length` when given.

/// Largest message accepted.
pub const MAX_MESSAGE: usize = 64 * 1024;
/// Most header fields accepted.
pub const MAX_HEADERS: usize = 128;
/// Most Via headers accepted: a request never crosses more proxies than
/// Max-Forwards allows (70 by default), and every response copies them.
pub const MAX_VIAS: usize = 70;

/// First line of a message.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum StartLine {
    /// A request: method and Request-URI.
    Request {
        /// INVITE, ACK, BYE, ...
        method: String,
        /// Request-URI.
        uri: String,
    },
    /// A response: status code and reason.
    Response {
        /// Status code.
        code: u16,
        /// Reason phrase.
        reason: String,
    },
}

/// A parsed SIP message.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Message {
    /// Request or status line.
    pub start: StartLine,
    /// Header fields in order, names in canonical long form.
    pub headers: Vec<(String, String)>,
    /// Body bytes.
    pub body: Vec<u8>,
}

/// Why bytes are not a usable SIP message.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum SipError {
    /// Larger than [`MAX_MESSAGE`].
    #[error("SIP message larger than {MAX_MESSAGE} bytes")]
    TooLarge,
    /// No blank line ending the headers.
    #[error("SIP headers not terminated by a blank line")]
    Unterminated,
    /// Headers are not UTF-8.
    #[error("SIP headers are not valid UTF-8")]
    Encoding,
    /// A bad request or status line.
    #[error("bad SIP start line")]
    StartLine,
    /// A header line without a colon, or with an invalid name.
    #[error("bad SIP header line {0}")]
    Header(usize),
    /// More than [`MAX_HEADERS`] header fields.
    #[error("too many SIP headers")]
    TooManyHeaders,
    /// More than [`MAX_VIAS`] Via headers.
    #[error("more than {MAX_VIAS} Via headers")]
    TooManyVias,
    /// Content-Length is not a number or exceeds the bytes received.
    #[error("bad Content-Length: {0}")]
    ContentLength(String),
    /// A mandatory header is missing or malformed.
    #[error("missing or bad {0} header")]
    Missing(&'static str),
}

fn canonical(name: &str) -> String {
    let lower = name.to_ascii_lowercase();
    let long = match lower.as_str() {
        "i" | "call-id" => "Call-ID",
        "f" | "from" => "From",
        "t" | "to" => "To",
        "v" | "via" => "Via",
        "m" | "contact" => "Contact",
        "l" | "content-length" => "Content-Length",
        "c" | "content-type" => "Content-Type",
        "cseq" => "CSeq",
        "max-forwards" => "Max-Forwards",
        "k" | "supported" => "Supported",
        "s" | "subject" => "Subject",
        _ => return name.to_string(),
    };
    long.to_string()
}

fn is_token(s: &str) -> bool {
    !s.is_empty()
        && s.bytes()
            .all(|b| b.is_ascii_alphanumeric() || b"-.!%*_+`'~".contains(&b))
}

/// Parse one message (one UDP datagram, or one framed TCP message).
pub fn parse(buf: &[u8]) -> Result<Message, SipError> {
    if buf.len() > MAX_MESSAGE {
        return Err(SipError::TooLarge);
    }
    // Tolerate leading CRLF keep-alives.
    let start = buf
        .iter()
        .position(|&b| b != b'\r' && b != b'\n')
        .unwrap_or(buf.len());
    let buf = &buf[start..];
    let head_end = find(buf, b"\r\n\r\n")
        .map(|i| (i, i + 4))
        .or_else(|| find(buf, b"\n\n").map(|i| (i, i + 2)))
        .ok_or(SipError::Unterminated)?;
    let head = std::str::from_utf8(&buf[..head_end.0]).map_err(|_| SipError::Encoding)?;
    let mut lines = head.split('\n').map(|l| l.trim_end_matches('\r'));
    let first = lines.next().ok_or(SipError::StartLine)?;
    let start = parse_start(first)?;
    let mut headers: Vec<(String, String)> = Vec::new();
    for (i, line) in lines.enumerate() {
        // Control characters (a bare CR above all) could split a header
        // when it is copied into a response.
        if line.bytes().any(|b| (b < 0x20 && b != b'\t') || b == 0x7F) {
            return Err(SipError::Header(i + 2));
        }
        if line.starts_with(' ') || line.starts_with('\t') {
            // Folded continuation of the previous header.
            let Some(last) = headers.last_mut() else {
                return Err(SipError::Header(i + 2));
            };
            last.1.push(' ');
            last.1.push_str(line.trim());
            continue;
        }
        let (name, value) = line.split_once(':').ok_or(SipError::Header(i + 2))?;
        let name = name.trim_end();
        if !is_token(name) {
            return Err(SipError::Header(i + 2));
        }
        if headers.len() >= MAX_HEADERS {
            return Err(SipError::TooManyHeaders);
        }
        headers.push((canonical(name), value.trim().to_string()));
    }
    if headers.iter().filter(|(n, _)| n == "Via").count() > MAX_VIAS {
        return Err(SipError::TooManyVias);
    }
    let rest = &buf[head_end.1..];
    let mut msg = Message {
        start,
        headers,
        body: Vec::new(),
    };
    let body = match msg.header("Content-Length") {
        Some(v) => {
            let n: usize = v
                .parse()
                .map_err(|_| SipError::ContentLength(v.to_string()))?;
            if n > rest.len() {
                return Err(SipError::ContentLength(format!(
                    "{n} declared, {} received",
                    rest.len()
                )));
            }
            &rest[..n]
        }
        None => rest,
    };
    msg.body = body.to_vec();
    Ok(msg)
}

fn find(hay: &[u8], needle: &[u8]) -> Option<usize> {
    hay.windows(needle.len()).position(|w| w == needle)
}

fn parse_start(line: &str) -> Result<StartLine, SipError> {
    if line.bytes().any(|b| b < 0x20 || b == 0x7F) {
        return Err(SipError::StartLine);
    }
    let mut parts = line.splitn(3, ' ');
    let a = parts.next().ok_or(SipError::StartLine)?;
    let b = parts.next().ok_or(SipError::StartLine)?;
    let c = parts.next().ok_or(SipError::StartLine)?;
    if a == "SIP/2.0" {
        let code: u16 = b.parse().map_err(|_| SipError::StartLine)?;
        if !(100..=699).contains(&code) {
            return Err(SipError::StartLine);
        }
        return Ok(StartLine::Response {
            code,
            reason: c.to_string(),
        });
    }
    if c != "SIP/2.0" || !is_token(a) || b.is_empty() || b.contains(char::is_whitespace) {
        return Err(SipError::StartLine);
    }
    Ok(StartLine::Request {
        method: a.to_string(),
        uri: b.to_string(),
    })
}

impl Message {
    /// First value of a header (canonical name, case-insensitive).
    pub fn header(&self, name: &str) -> Option<&str> {
        self.headers
            .iter()
            .find(|(n, _)| n.eq_ignore_ascii_case(name))
            .map(|(_, v)| v.as_str())
    }

    /// All values of a header, in order.
    pub fn headers_named<'a>(&'a self, name: &'a str) -> impl Iterator<Item = &'a str> + 'a {
        self.headers
            .iter()
            .filter(move |(n, _)| n.eq_ignore_ascii_case(name))
            .map(|(_, v)| v.as_str())
    }

    /// The request method, if a request.
    pub fn method(&self) -> Option<&str> {
        match &self.start {
            StartLine::Request { method, .. } => Some(method),
            StartLine::Response { .. } => None,
        }
    }

    /// Call-ID.
    pub fn call_id(&self) -> Option<&str> {
        self.header("Call-ID").filter(|v| !v.is_empty())
    }

    /// CSeq number and method.
    pub fn cseq(&self) -> Option<(u32, &str)> {
        let v = self.header("CSeq")?;
        let (n, m) = v.trim().split_once(char::is_whitespace)?;
        Some((n.parse().ok()?, m.trim()))
    }

    /// Check the headers every request must carry (RFC 3261 §8.1.1) and
    /// that CSeq names the request's method.
    pub fn validate_request(&self) -> Result<(), SipError> {
        let Some(method) = self.method() else {
            return Ok(());
        };
        if self.header("Via").is_none() {
            return Err(SipError::Missing("Via"));
        }
        if self.header("From").is_none() {
            return Err(SipError::Missing("From"));
        }
        if self.header("To").is_none() {
            return Err(SipError::Missing("To"));
        }
        if self.call_id().is_none() {
            return Err(SipError::Missing("Call-ID"));
        }
        match self.cseq() {
            Some((_, m)) if m == method => Ok(()),
            _ => Err(SipError::Missing("CSeq")),
        }
    }

    /// The `tag` parameter of a From/To value.
    pub fn tag_of(value: &str) -> Option<&str> {
        // Parameters after the closing '>' (or the whole value without one).
        let params = match value.rfind('>') {
            Some(i) => &value[i + 1..],
            None => value,
        };
        params.split(';').skip(1).find_map(|p| {
            let (k, v) = p.split_once('=')?;
            k.trim().eq_ignore_ascii_case("tag").then(|| v.trim())
        })
    }

    /// Build a response to this request: Via, From, To (with `to_tag` added
    /// when it has none), Call-ID and CSeq copied; then `extra` headers and
    /// the body with its Content-Length.
    pub fn response(
        &self,
        code: u16,
        reason: &str,
        to_tag: Option<&str>,
        extra: &[(&str, &str)],
        body: Option<(&str, &[u8])>,
    ) -> Vec<u8> {
        let mut s = format!("SIP/2.0 {code} {reason}\r\n");
        for v in self.headers_named("Via") {
            s.push_str(&format!("Via: {v}\r\n"));
        }
        if let Some(v) = self.header("From") {
            s.push_str(&format!("From: {v}\r\n"));
        }
        if let Some(v) = self.header("To") {
            match to_tag {
                Some(tag) if Self::tag_of(v).is_none() => {
                    s.push_str(&format!("To: {v};tag={tag}\r\n"))
                }
                _ => s.push_str(&format!("To: {v}\r\n")),
            }
        }
        if let Some(v) = self.header("Call-ID") {
            s.push_str(&format!("Call-ID: {v}\r\n"));
        }
        if let Some(v) = self.header("CSeq") {
            s.push_str(&format!("CSeq: {v}\r\n"));
        }
        for (k, v) in extra {
            s.push_str(&format!("{k}: {v}\r\n"));
        }
        let mut out = s.into_bytes();
        match body {
            Some((ty, b)) => {
                out.extend_from_slice(
                    format!("Content-Type: {ty}\r\nContent-Length: {}\r\n\r\n", b.len()).as_bytes(),
                );
                out.extend_from_slice(b);
            }
            None => out.extend_from_slice(b"Content-Length: 0\r\n\r\n"),
        }
        out
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const INVITE: &str = "INVITE sip:callpulse@127.0.0.1:5060 SIP/2.0\r\n\
Via: SIP/2.0/UDP 127.0.0.1:5061;branch=z9hG4bK-1\r\n\
v: SIP/2.0/UDP 10.0.0.1;branch=z9hG4bK-0\r\n\
f: <sip:caller@127.0.0.1>;tag=abc\r\n\
To: <sip:callpulse@127.0.0.1>\r\n\
i: call-1@127.0.0.1\r\n\
CSeq: 1 INVITE\r\n\
Subject: a folded\r\n value\r\n\
Content-Type: application/sdp\r\n\
l: 8\r\n\r\nv=0\r\nxyzEXTRA";

    #[test]
    fn parses_invite_with_compact_and_folded_headers() {
        let m = parse(INVITE.as_bytes()).unwrap();
        assert_eq!(m.method(), Some("INVITE"));
        assert_eq!(m.call_id(), Some("call-1@127.0.0.1"));
        assert_eq!(m.cseq(), Some((1, "INVITE")));
        assert_eq!(m.headers_named("Via").count(), 2);
        assert_eq!(m.header("subject"), Some("a folded value"));
        assert_eq!(m.body, b"v=0\r\nxyz");
        m.validate_request().unwrap();
        assert_eq!(Message::tag_of(m.header("From").unwrap()), Some("abc"));
        assert_eq!(Message::tag_of(m.header("To").unwrap()), None);
    }

    #[test]
    fn response_copies_dialog_headers() {
        let m = parse(INVITE.as_bytes()).unwrap();
        let r = m.response(
            200,
            "OK",
            Some("t1"),
            &[("Contact", "<sip:x>")],
            Some(("application/sdp", b"v=0\r\n")),
        );
        let p = parse(&r).unwrap();
        assert_eq!(
            p.start,
            StartLine::Response {
                code: 200,
                reason: "OK".into()
            }
        );
        assert_eq!(p.headers_named("Via").count(), 2);
        assert_eq!(Message::tag_of(p.header("To").unwrap()), Some("t1"));
        assert_eq!(p.call_id(), Some("call-1@127.0.0.1"));
        assert_eq!(p.body, b"v=0\r\n");
    }

    /// Found by `cargo fuzz run sip`: a request with 127 Via headers (and
    /// NUL bytes in its request line) got a response our own parser refused
    /// (too many headers once From/To/Call-ID/CSeq were added).
    #[test]
    fn regression_fuzz_sip_many_vias_response_parses() {
        let found = include_bytes!("../../fuzz/regressions/sip-many-vias-control-chars.bin");
        assert!(parse(found).is_err());
        let req = |vias: usize| {
            format!(
                "OPTIONS sip:x SIP/2.0\r\n{}From: <sip:a>;tag=1\r\nTo: <sip:b>\r\nCall-ID: c\r\nCSeq: 1 OPTIONS\r\n\r\n",
                "Via: SIP/2.0/UDP h;branch=z9hG4bK1\r\n".repeat(vias)
            )
        };
        assert_eq!(
            parse(req(MAX_VIAS + 1).as_bytes()),
            Err(SipError::TooManyVias)
        );
        let m = parse(req(MAX_VIAS).as_bytes()).unwrap();
        let r = m.response(
            200,
            "OK",
            Some("t"),
            &[("Allow", "INVITE"), ("Server", "x")],
            None,
        );
        assert_eq!(parse(&r).unwrap().headers_named("Via").count(), MAX_VIAS);
        // A bare CR inside a header would split it when copied.
        assert_eq!(
            parse(b"OPTIONS sip:x SIP/2.0\r\nVia: a\rInjected: 1\r\n\r\n"),
            Err(SipError::Header(2))
        );
    }

    #[test]
    fn rejects_malformed() {
        assert_eq!(
            parse(b"INVITE sip:x SIP/2.0\r\nVia: x\r\n"),
            Err(SipError::Unterminated)
        );
        assert_eq!(parse(b"HELLO\r\n\r\n"), Err(SipError::StartLine));
        assert_eq!(
            parse(b"INVITE sip:x HTTP/1.1\r\n\r\n"),
            Err(SipError::StartLine)
        );
        assert_eq!(parse(b"SIP/2.0 99 Nope\r\n\r\n"), Err(SipError::StartLine));
        assert_eq!(
            parse(b"BYE sip:x SIP/2.0\r\nNoColon\r\n\r\n"),
            Err(SipError::Header(2))
        );
        assert_eq!(
            parse(b"BYE sip:x SIP/2.0\r\n bad fold\r\n\r\n"),
            Err(SipError::Header(2))
        );
        assert!(matches!(
            parse(b"BYE sip:x SIP/2.0\r\nContent-Length: 10\r\n\r\nabc"),
            Err(SipError::ContentLength(_))
        ));
        assert!(matches!(
            parse(b"BYE sip:x SIP/2.0\r\nContent-Length: -1\r\n\r\n"),
            Err(SipError::ContentLength(_))
        ));
        assert_eq!(parse(&vec![b'A'; MAX_MESSAGE + 1]), Err(SipError::TooLarge));
        let many = format!("OPTIONS sip:x SIP/2.0\r\n{}\r\n", "X-A: 1\r\n".repeat(200));
        assert_eq!(parse(many.as_bytes()), Err(SipError::TooManyHeaders));
        assert_eq!(
            parse(b"BYE sip:x SIP/2.0\r\nVia: \xff\r\n\r\n"),
            Err(SipError::Encoding)
        );
        // Parses, but lacks what a request needs.
        let m = parse(b"BYE sip:x SIP/2.0\r\nVia: SIP/2.0/UDP h\r\n\r\n").unwrap();
        assert_eq!(m.validate_request(), Err(SipError::Missing("From")));
        let m = parse(b"BYE sip:x SIP/2.0\r\nVia: a\r\nFrom: a\r\nTo: b\r\nCall-ID: c\r\nCSeq: 1 INVITE\r\n\r\n").unwrap();
        assert_eq!(m.validate_request(), Err(SipError::Missing("CSeq")));
    }
}
