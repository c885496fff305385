//! The tests' HTTP/1.1 and WebSocket client (loopback only): one request
//! per connection; the body is read by `Content-Length`, de-chunked, or read
//! to the end, so it serves callpulse and Chromium's DevTools alike.

use std::io::{Read, Write};
use std::net::TcpStream;
use std::time::Duration;

/// A response: status (0 if none came) and body.
pub struct Reply {
    pub code: u16,
    pub head: String,
    pub body: String,
}

fn find(hay: &[u8], needle: &[u8]) -> Option<usize> {
    hay.windows(needle.len()).position(|w| w == needle)
}

fn header_value(head: &str, name: &str) -> Option<String> {
    head.lines().skip(1).find_map(|l| {
        let (k, v) = l.split_once(':')?;
        k.trim()
            .eq_ignore_ascii_case(name)
            .then(|| v.trim().to_string())
    })
}

fn dechunk(mut raw: &[u8]) -> Vec<u8> {
    let mut out = Vec::new();
    while let Some(i) = find(raw, b"\r\n") {
        let size = std::str::from_utf8(&raw[..i])
            .ok()
            .and_then(|s| usize::from_str_radix(s.split(';').next()?.trim(), 16).ok())
            .unwrap_or(0);
        if size == 0 || raw.len() < i + 2 + size {
            break;
        }
        out.extend_from_slice(&raw[i + 2..i + 2 + size]);
        raw = &raw[(i + 4 + size).min(raw.len())..];
    }
    out
}

/// Send `raw` over a fresh connection and read the response.
pub fn request(addr: &str, raw: &[u8]) -> Reply {
    let mut s = TcpStream::connect(addr).unwrap();
    s.set_read_timeout(Some(Duration::from_secs(120))).unwrap();
    // A refused request may be answered before the whole body is sent.
    let _ = s.write_all(raw);
    let mut buf = Vec::new();
    let mut chunk = [0u8; 16384];
    let mut head_end = None;
    loop {
        if let Some(h) = head_end {
            let head = String::from_utf8_lossy(&buf[..h]).to_string();
            if let Some(n) =
                header_value(&head, "content-length").and_then(|v| v.parse::<usize>().ok())
            {
                if buf.len() >= h + 4 + n {
                    break;
                }
            }
            if header_value(&head, "transfer-encoding").is_some_and(|v| v.contains("chunked"))
                && buf.ends_with(b"0\r\n\r\n")
            {
                break;
            }
        }
        match s.read(&mut chunk) {
            Ok(0) | Err(_) => break,
            Ok(n) => buf.extend_from_slice(&chunk[..n]),
        }
        if head_end.is_none() {
            head_end = find(&buf, b"\r\n\r\n");
        }
    }
    let h = head_end.unwrap_or(buf.len());
    let head = String::from_utf8_lossy(&buf[..h]).to_string();
    let mut body = buf[(h + 4).min(buf.len())..].to_vec();
    if header_value(&head, "transfer-encoding").is_some_and(|v| v.contains("chunked")) {
        body = dechunk(&body);
    }
    let code = head
        .split(' ')
        .nth(1)
        .and_then(|c| c.parse().ok())
        .unwrap_or(0);
    Reply {
        code,
        head,
        body: String::from_utf8_lossy(&body).to_string(),
    }
}

/// GET with extra header lines (each ending in CRLF); (status, body).
pub fn get(addr: &str, path: &str, extra: &str) -> (u16, String) {
    let r = request(
        addr,
        format!("GET {path} HTTP/1.1\r\nHost: {addr}\r\nConnection: close\r\n{extra}\r\n")
            .as_bytes(),
    );
    (r.code, r.body)
}

/// The status of a GET whose body never ends (an event stream).
pub fn get_status(addr: &str, path: &str) -> u16 {
    let mut s = TcpStream::connect(addr).unwrap();
    s.set_read_timeout(Some(Duration::from_secs(30))).unwrap();
    s.write_all(format!("GET {path} HTTP/1.1\r\nHost: {addr}\r\n\r\n").as_bytes())
        .unwrap();
    let mut head = Vec::new();
    let mut b = [0u8; 1];
    while !head.ends_with(b"\r\n") && s.read_exact(&mut b).is_ok() {
        head.push(b[0]);
    }
    String::from_utf8_lossy(&head)
        .split(' ')
        .nth(1)
        .and_then(|c| c.parse().ok())
        .unwrap_or(0)
}

/// POST a body; (status, body).
pub fn post(addr: &str, path: &str, ctype: &str, body: &[u8]) -> (u16, String) {
    let mut req = format!(
        "POST {path} HTTP/1.1\r\nHost: {addr}\r\nConnection: close\r\nContent-Type: {ctype}\r\nContent-Length: {}\r\n\r\n",
        body.len()
    )
    .into_bytes();
    req.extend_from_slice(body);
    let r = request(addr, &req);
    (r.code, r.body)
}

/// A body as JSON; the test fails, quoting it, if it is not.
pub fn json_of(body: &str) -> serde_json::Value {
    serde_json::from_str(body.trim()).unwrap_or_else(|e| panic!("not JSON ({e}): {body}"))
}

/// Minimal WebSocket client: handshake, masked text frames out, text
/// frames in.
pub struct Ws(pub TcpStream);

impl Ws {
    pub fn connect(addr: &str, path: &str) -> Ws {
        Ws::upgrade(TcpStream::connect(addr).unwrap(), addr, path)
    }

    /// Upgrade an open connection.
    pub fn upgrade(mut s: TcpStream, addr: &str, path: &str) -> Ws {
        s.write_all(
            format!(
                "GET {path} HTTP/1.1\r\nHost: {addr}\r\nUpgrade: websocket\r\nConnection: Upgrade\r\nSec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==\r\nSec-WebSocket-Version: 13\r\n\r\n"
            )
            .as_bytes(),
        )
        .unwrap();
        s.set_read_timeout(Some(Duration::from_secs(10))).unwrap();
        let mut head = Vec::new();
        let mut b = [0u8; 1];
        while !head.ends_with(b"\r\n\r\n") {
            s.read_exact(&mut b).unwrap();
            head.push(b[0]);
        }
        let h = String::from_utf8_lossy(&head);
        assert!(h.starts_with("HTTP/1.1 101"), "{h}");
        Ws(s)
    }

    /// Send a masked text frame (clients must mask).
    pub fn send_text(&mut self, text: &str) {
        let p = text.as_bytes();
        let mut f = vec![0x81u8];
        if p.len() < 126 {
            f.push(0x80 | p.len() as u8);
        } else {
            f.push(0x80 | 126);
            f.extend_from_slice(&(p.len() as u16).to_be_bytes());
        }
        let key = [0x37u8, 0xfa, 0x21, 0x3d];
        f.extend_from_slice(&key);
        f.extend(p.iter().enumerate().map(|(i, b)| b ^ key[i % 4]));
        self.0.write_all(&f).unwrap();
    }

    /// The next text frame; None on close, error or timeout.
    pub fn next_text(&mut self, timeout: Duration) -> Option<String> {
        self.0.set_read_timeout(Some(timeout)).unwrap();
        let mut h = [0u8; 2];
        self.0.read_exact(&mut h).ok()?;
        let op = h[0] & 0x0F;
        let mut len = (h[1] & 0x7F) as u64;
        if len == 126 {
            let mut l = [0u8; 2];
            self.0.read_exact(&mut l).ok()?;
            len = u16::from_be_bytes(l) as u64;
        } else if len == 127 {
            let mut l = [0u8; 8];
            self.0.read_exact(&mut l).ok()?;
            len = u64::from_be_bytes(l);
        }
        let mut p = vec![0u8; len as usize];
        self.0.read_exact(&mut p).ok()?;
        match op {
            1 => Some(String::from_utf8_lossy(&p).to_string()),
            8 => None,
            _ => self.next_text(timeout),
        }
    }
}
