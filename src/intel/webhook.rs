//! The webhook sink: each alert is POSTed as JSON to a configured URL, with
//! a timeout per attempt and retries with backoff, on its own thread so a
//! slow receiver never holds up the pipeline. Plain `http://` only (put a
//! TLS-terminating relay in front for `https`).

use std::io::{Read, Write};
use std::net::{TcpStream, ToSocketAddrs};
use std::time::Duration;

use crossbeam_channel::{bounded, Sender, TrySendError};

/// A parsed `http://host:port/path` URL.
#[derive(Debug, Clone, PartialEq)]
pub struct Url {
    /// Host name or address.
    pub host: String,
    /// Port (80 by default).
    pub port: u16,
    /// Path and query, starting with `/`.
    pub path: String,
}

/// Parse a webhook URL.
pub fn parse_url(u: &str) -> Result<Url, String> {
    let rest = u
        .strip_prefix("http://")
        .ok_or("only http:// URLs are supported (use a local relay for https)")?;
    let (hostport, path) = match rest.find('/') {
        Some(i) => (&rest[..i], &rest[i..]),
        None => (rest, "/"),
    };
    if hostport.is_empty() {
        return Err("no host".into());
    }
    let (host, port) = match hostport.rsplit_once(':') {
        Some((h, p)) if !h.ends_with(']') || h.starts_with('[') => (
            h.to_string(),
            p.parse::<u16>().map_err(|_| format!("bad port '{p}'"))?,
        ),
        _ => (hostport.to_string(), 80),
    };
    if host.is_empty() || path.chars().any(|c| c.is_control() || c == ' ') {
        return Err("malformed URL".into());
    }
    Ok(Url {
        host,
        port,
        path: path.to_string(),
    })
}

/// One POST attempt; Ok on a 2xx answer.
pub fn post_once(url: &Url, body: &[u8], timeout: Duration) -> Result<u16, String> {
    let addr = (url.host.as_str(), url.port)
        .to_socket_addrs()
        .map_err(|e| format!("cannot resolve {}: {e}", url.host))?
        .next()
        .ok_or_else(|| format!("no address for {}", url.host))?;
    let mut s = TcpStream::connect_timeout(&addr, timeout).map_err(|e| e.to_string())?;
    s.set_read_timeout(Some(timeout))
        .map_err(|e| e.to_string())?;
    s.set_write_timeout(Some(timeout))
        .map_err(|e| e.to_string())?;
    let head = format!(
        "POST {} HTTP/1.1\r\nHost: {}:{}\r\nContent-Type: application/json\r\nContent-Length: {}\r\nUser-Agent: callpulse/{}\r\nConnection: close\r\n\r\n",
        url.path,
        url.host,
        url.port,
        body.len(),
        env!("CARGO_PKG_VERSION")
    );
    s.write_all(head.as_bytes())
        .and_then(|_| s.write_all(body))
        .map_err(|e| e.to_string())?;
    let mut buf = [0u8; 64];
    let mut got = 0;
    while got < 12 {
        let n = s.read(&mut buf[got..]).map_err(|e| e.to_string())?;
        if n == 0 {
            break;
        }
        got += n;
    }
    let line = String::from_utf8_lossy(&buf[..got]);
    let code: u16 = line
        .split_whitespace()
        .nth(1)
        .and_then(|c| c.parse().ok())
        .ok_or_else(|| format!("not an HTTP answer: {line:?}"))?;
    if (200..300).contains(&code) {
        Ok(code)
    } else {
        Err(format!("HTTP {code}"))
    }
}

/// POST with retries: waits 200 ms, 400 ms, ... between attempts.
pub fn post(url: &Url, body: &[u8], timeout: Duration, retries: u32) -> Result<u32, String> {
    let mut last = String::new();
    for attempt in 0..=retries {
        if attempt > 0 {
            std::thread::sleep(Duration::from_millis(200u64 << (attempt - 1).min(5)));
        }
        match post_once(url, body, timeout) {
            Ok(_) => return Ok(attempt + 1),
            Err(e) => last = e,
        }
    }
    Err(last)
}

/// A background sender: `send` never blocks; the thread POSTs in order.
pub struct Webhook {
    tx: Option<Sender<Vec<u8>>>,
    thread: Option<std::thread::JoinHandle<(u32, u32)>>,
}

impl Webhook {
    /// Start the sender thread.
    pub fn start(url: &str, timeout: Duration, retries: u32) -> Result<Self, String> {
        let url = parse_url(url)?;
        let (tx, rx) = bounded::<Vec<u8>>(256);
        let thread = std::thread::Builder::new()
            .name("webhook".into())
            .spawn(move || {
                let (mut ok, mut failed) = (0, 0);
                for body in rx.iter() {
                    match post(&url, &body, timeout, retries) {
                        Ok(_) => ok += 1,
                        Err(e) => {
                            failed += 1;
                            tracing::warn!(
                                "webhook {}:{}{} failed after {} attempts: {e}",
                                url.host,
                                url.port,
                                url.path,
                                retries + 1
                            );
                        }
                    }
                }
                (ok, failed)
            })
            .map_err(|e| e.to_string())?;
        Ok(Webhook {
            tx: Some(tx),
            thread: Some(thread),
        })
    }

    /// Queue one JSON body; false when the queue is full (dropped).
    pub fn send(&self, body: Vec<u8>) -> bool {
        match self.tx.as_ref().map(|t| t.try_send(body)) {
            Some(Ok(())) => true,
            Some(Err(TrySendError::Full(_))) | Some(Err(TrySendError::Disconnected(_))) | None => {
                false
            }
        }
    }

    /// Deliver what is queued and stop; returns (delivered, failed).
    pub fn finish(mut self) -> (u32, u32) {
        self.tx.take();
        self.thread
            .take()
            .and_then(|t| t.join().ok())
            .unwrap_or((0, 0))
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::net::TcpListener;

    #[test]
    fn urls_are_checked() {
        let u = parse_url("http://127.0.0.1:9000/hooks/alert?x=1").unwrap();
        assert_eq!(
            (u.host.as_str(), u.port, u.path.as_str()),
            ("127.0.0.1", 9000, "/hooks/alert?x=1")
        );
        assert_eq!(parse_url("http://localhost").unwrap().port, 80);
        assert!(parse_url("https://x").unwrap_err().contains("http://"));
        assert!(parse_url("http://:80/").is_err());
        assert!(parse_url("http://h:99999/").is_err());
    }

    /// A local server that answers 500 to the first `fail` requests, then 204.
    fn server(fail: usize) -> (u16, std::thread::JoinHandle<Vec<String>>) {
        let l = TcpListener::bind("127.0.0.1:0").unwrap();
        let port = l.local_addr().unwrap().port();
        let t = std::thread::spawn(move || {
            let mut bodies = Vec::new();
            for (i, c) in l.incoming().enumerate() {
                let mut c = c.unwrap();
                c.set_read_timeout(Some(Duration::from_secs(2))).unwrap();
                let mut req = Vec::new();
                let mut buf = [0u8; 4096];
                loop {
                    let n = c.read(&mut buf).unwrap_or(0);
                    if n == 0 {
                        break;
                    }
                    req.extend_from_slice(&buf[..n]);
                    let text = String::from_utf8_lossy(&req).to_string();
                    if let Some(h) = text.find("\r\n\r\n") {
                        let len: usize = text
                            .lines()
                            .find_map(|l| l.strip_prefix("Content-Length: "))
                            .and_then(|v| v.trim().parse().ok())
                            .unwrap_or(0);
                        if req.len() >= h + 4 + len {
                            bodies.push(text[h + 4..].to_string());
                            break;
                        }
                    }
                }
                let status = if i < fail {
                    "500 Oops"
                } else {
                    "204 No Content"
                };
                let _ = c.write_all(
                    format!("HTTP/1.1 {status}\r\nContent-Length: 0\r\n\r\n").as_bytes(),
                );
                if i >= fail {
                    return bodies;
                }
            }
            bodies
        });
        (port, t)
    }

    #[test]
    fn posts_json_and_retries_on_errors() {
        let (port, t) = server(2);
        let url = parse_url(&format!("http://127.0.0.1:{port}/alerts")).unwrap();
        let attempts = post(&url, br#"{"type":"alert"}"#, Duration::from_secs(2), 3).unwrap();
        assert_eq!(attempts, 3);
        let bodies = t.join().unwrap();
        assert_eq!(bodies.len(), 3);
        assert!(bodies.iter().all(|b| b == r#"{"type":"alert"}"#));
    }

    #[test]
    fn a_dead_or_silent_receiver_times_out() {
        // Nothing listens on this port once the listener is dropped.
        let port = TcpListener::bind("127.0.0.1:0")
            .unwrap()
            .local_addr()
            .unwrap()
            .port();
        let url = parse_url(&format!("http://127.0.0.1:{port}/")).unwrap();
        assert!(post(&url, b"{}", Duration::from_millis(200), 1).is_err());
        // A server that accepts and never answers: the read times out.
        let l = TcpListener::bind("127.0.0.1:0").unwrap();
        let url = parse_url(&format!(
            "http://127.0.0.1:{}/",
            l.local_addr().unwrap().port()
        ))
        .unwrap();
        let t0 = std::time::Instant::now();
        assert!(post_once(&url, b"{}", Duration::from_millis(300)).is_err());
        assert!(t0.elapsed() < Duration::from_secs(3));
        drop(l);
    }
}
