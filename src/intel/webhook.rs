//! The webhook sink: each alert is POSTed as JSON to a configured URL
//! (`http://` or `https://`, IPv4, IPv6 literals or names), with a bounded
//! DNS, connect and total time per attempt and retries with backoff, on its
//! own thread so a slow receiver never holds up the pipeline. HTTPS is
//! verified against the bundled web PKI roots, or against the certificates
//! of `escalation.webhook_ca` (PEM) for a private CA. Alerts that do not fit
//! in the queue are dropped and counted.

use std::path::Path;
use std::sync::atomic::{AtomicU32, Ordering};
use std::sync::Arc;
use std::time::Duration;

use crossbeam_channel::{bounded, Sender};
use ureq::tls::{Certificate, PemItem, RootCerts, TlsConfig};

/// Alerts waiting for delivery before new ones are dropped.
pub const QUEUE: usize = 256;

/// A checked webhook URL.
#[derive(Debug, Clone, PartialEq)]
pub struct Url {
    /// The URL as given.
    pub url: String,
    /// `http` or `https`.
    pub scheme: &'static str,
    /// Host name, IPv4 address, or IPv6 literal in brackets.
    pub host: String,
    /// Port (80 or 443 by default).
    pub port: u16,
    /// Path and query, starting with `/`.
    pub path: String,
}

/// Parse and check a webhook URL.
pub fn parse_url(u: &str) -> Result<Url, String> {
    let (scheme, rest, default_port) = if let Some(r) = u.strip_prefix("http://") {
        ("http", r, 80)
    } else if let Some(r) = u.strip_prefix("https://") {
        ("https", r, 443)
    } else {
        return Err("the URL must start with http:// or https://".into());
    };
    let (hostport, path) = match rest.find(['/', '?']) {
        Some(i) if rest.as_bytes()[i] == b'/' => (&rest[..i], rest[i..].to_string()),
        Some(i) => (&rest[..i], format!("/{}", &rest[i..])),
        None => (rest, "/".to_string()),
    };
    if hostport.is_empty() || hostport.contains('@') {
        return Err("no host (user names in the URL are not supported)".into());
    }
    let (host, port) = if let Some(v6) = hostport.strip_prefix('[') {
        let (addr, after) = v6
            .split_once(']')
            .ok_or("unclosed '[' in an IPv6 address")?;
        addr.parse::<std::net::Ipv6Addr>()
            .map_err(|_| format!("'{addr}' is not an IPv6 address"))?;
        let port = match after.strip_prefix(':') {
            Some(p) => p.parse::<u16>().map_err(|_| format!("bad port '{p}'"))?,
            None if after.is_empty() => default_port,
            None => return Err(format!("unexpected '{after}' after the IPv6 address")),
        };
        (format!("[{addr}]"), port)
    } else {
        match hostport.rsplit_once(':') {
            Some((h, p)) => (
                h.to_string(),
                p.parse::<u16>().map_err(|_| format!("bad port '{p}'"))?,
            ),
            None => (hostport.to_string(), default_port),
        }
    };
    let bad = |c: char| c.is_control() || c == ' ';
    if host.is_empty() || host.chars().any(bad) || path.chars().any(bad) || port == 0 {
        return Err("malformed URL".into());
    }
    Ok(Url {
        url: format!("{scheme}://{host}:{port}{path}"),
        scheme,
        host,
        port,
        path,
    })
}

/// How the webhook is reached.
#[derive(Debug, Clone)]
pub struct WebhookOptions {
    /// Time allowed for one attempt: name resolution, connection, TLS,
    /// request and response together; resolution and connection each get
    /// at most this too.
    pub timeout: Duration,
    /// Attempts after the first.
    pub retries: u32,
    /// PEM file of CA certificates to trust instead of the bundled roots.
    pub ca_file: Option<std::path::PathBuf>,
}

fn load_ca(path: &Path) -> Result<RootCerts, String> {
    let pem = std::fs::read(path)
        .map_err(|e| format!("cannot read the webhook CA file {}: {e}", path.display()))?;
    let mut certs: Vec<Certificate<'static>> = Vec::new();
    for item in ureq::tls::parse_pem(&pem) {
        match item {
            Ok(PemItem::Certificate(c)) => certs.push(c),
            Ok(_) => {}
            Err(e) => return Err(format!("{}: not valid PEM: {e}", path.display())),
        }
    }
    if certs.is_empty() {
        return Err(format!("{}: no certificate in it", path.display()));
    }
    Ok(RootCerts::new_with_certs(&certs))
}

/// An HTTP client for the webhook.
#[derive(Clone)]
pub struct Client {
    agent: ureq::Agent,
    url: Url,
    retries: u32,
}

impl Client {
    /// A client for `url`.
    pub fn new(url: &str, opts: &WebhookOptions) -> Result<Self, String> {
        let url = parse_url(url)?;
        let mut tls = TlsConfig::builder();
        if let Some(ca) = &opts.ca_file {
            tls = tls.root_certs(load_ca(ca)?);
        }
        let config = ureq::config::Config::builder()
            .timeout_global(Some(opts.timeout))
            .timeout_resolve(Some(opts.timeout))
            .timeout_connect(Some(opts.timeout))
            .http_status_as_error(false)
            .max_redirects(0)
            .user_agent(format!("callpulse/{}", env!("CARGO_PKG_VERSION")))
            .tls_config(tls.build())
            .build();
        Ok(Client {
            agent: ureq::Agent::new_with_config(config),
            url,
            retries: opts.retries,
        })
    }

    /// One POST attempt; Ok with the status on a 2xx answer.
    pub fn post_once(&self, body: &[u8]) -> Result<u16, String> {
        let resp = self
            .agent
            .post(&self.url.url)
            .header("Content-Type", "application/json")
            .send(body)
            .map_err(|e| e.to_string())?;
        let status = resp.status().as_u16();
        if (200..300).contains(&status) {
            Ok(status)
        } else {
            Err(format!("HTTP {status}"))
        }
    }

    /// POST with retries (waits 200 ms, 400 ms, ... between attempts);
    /// Ok with the number of attempts.
    pub fn post(&self, body: &[u8]) -> Result<u32, String> {
        let mut last = String::new();
        for attempt in 0..=self.retries {
            if attempt > 0 {
                std::thread::sleep(Duration::from_millis(200u64 << (attempt - 1).min(5)));
            }
            match self.post_once(body) {
                Ok(_) => return Ok(attempt + 1),
                Err(e) => last = e,
            }
        }
        Err(last)
    }
}

/// What happened to the alerts of a call.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct WebhookStats {
    /// Delivered (2xx).
    pub posted: u32,
    /// Not delivered after every retry.
    pub failed: u32,
    /// Not queued: the queue was full.
    pub dropped: u32,
}

/// A background sender: `send` never blocks; the thread POSTs in order.
pub struct Webhook {
    tx: Option<Sender<Vec<u8>>>,
    dropped: Arc<AtomicU32>,
    thread: Option<std::thread::JoinHandle<(u32, u32)>>,
}

impl Webhook {
    /// Start the sender thread.
    pub fn start(url: &str, opts: &WebhookOptions) -> Result<Self, String> {
        Self::with_queue(url, opts, QUEUE)
    }

    /// Start the sender thread with a queue of `queue` alerts.
    pub fn with_queue(url: &str, opts: &WebhookOptions, queue: usize) -> Result<Self, String> {
        let client = Client::new(url, opts)?;
        let (tx, rx) = bounded::<Vec<u8>>(queue.max(1));
        let thread = std::thread::Builder::new()
            .name("webhook".into())
            .spawn(move || {
                let (mut ok, mut failed) = (0, 0);
                for body in rx.iter() {
                    match client.post(&body) {
                        Ok(_) => ok += 1,
                        Err(e) => {
                            failed += 1;
                            tracing::warn!(
                                "webhook {} failed after {} attempts: {e}",
                                client.url.url,
                                client.retries + 1
                            );
                        }
                    }
                }
                (ok, failed)
            })
            .map_err(|e| e.to_string())?;
        Ok(Webhook {
            tx: Some(tx),
            dropped: Arc::new(AtomicU32::new(0)),
            thread: Some(thread),
        })
    }

    /// Queue one JSON body; false (and counted) when the queue is full.
    pub fn send(&self, body: Vec<u8>) -> bool {
        let queued = self.tx.as_ref().is_some_and(|t| t.try_send(body).is_ok());
        if !queued {
            self.dropped.fetch_add(1, Ordering::Relaxed);
            tracing::warn!("webhook queue full: alert dropped");
        }
        queued
    }

    /// Deliver what is queued and stop.
    pub fn finish(mut self) -> WebhookStats {
        self.tx.take();
        let (posted, failed) = self
            .thread
            .take()
            .and_then(|t| t.join().ok())
            .unwrap_or((0, 0));
        WebhookStats {
            posted,
            failed,
            dropped: self.dropped.load(Ordering::Relaxed),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::io::{Read, Write};
    use std::net::TcpListener;

    fn opts(timeout_ms: u64, retries: u32) -> WebhookOptions {
        WebhookOptions {
            timeout: Duration::from_millis(timeout_ms),
            retries,
            ca_file: None,
        }
    }

    #[test]
    fn urls_are_checked() {
        let u = parse_url("http://127.0.0.1:9000/hooks/alert?x=1").unwrap();
        assert_eq!(
            (u.host.as_str(), u.port, u.path.as_str()),
            ("127.0.0.1", 9000, "/hooks/alert?x=1")
        );
        assert_eq!(parse_url("http://localhost").unwrap().port, 80);
        assert_eq!(parse_url("https://hooks.example").unwrap().port, 443);
        let v6 = parse_url("http://[::1]:8080/a").unwrap();
        assert_eq!((v6.host.as_str(), v6.port), ("[::1]", 8080));
        assert_eq!(parse_url("https://[2001:db8::1]/").unwrap().port, 443);
        assert!(parse_url("ftp://x").unwrap_err().contains("http://"));
        assert!(parse_url("http://:80/").is_err());
        assert!(parse_url("http://h:99999/").is_err());
        assert!(parse_url("http://[::1/").is_err());
        assert!(parse_url("http://[nope]:80/").is_err());
        assert!(parse_url("http://user:pw@host/").is_err());
        assert!(parse_url("http://h/a b").is_err());
    }

    /// A local server on `addr` that answers 500 to the first `fail`
    /// requests, then 204; returns the bodies it got.
    fn server_on(addr: &str, fail: usize) -> (u16, std::thread::JoinHandle<Vec<String>>) {
        let l = TcpListener::bind(addr).unwrap();
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
                            .find_map(|l| {
                                let (k, v) = l.split_once(':')?;
                                k.eq_ignore_ascii_case("content-length").then_some(v)
                            })
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
                    format!("HTTP/1.1 {status}\r\nContent-Length: 0\r\nConnection: close\r\n\r\n")
                        .as_bytes(),
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
        let (port, t) = server_on("127.0.0.1:0", 2);
        let c = Client::new(&format!("http://127.0.0.1:{port}/alerts"), &opts(2000, 3)).unwrap();
        assert_eq!(c.post(br#"{"type":"alert"}"#).unwrap(), 3);
        let bodies = t.join().unwrap();
        assert_eq!(bodies.len(), 3);
        assert!(bodies.iter().all(|b| b == r#"{"type":"alert"}"#));
    }

    #[test]
    fn ipv6_literal_urls_are_reached() {
        // Regression: `[::1]` was split at its last colon and never resolved.
        let Ok(probe) = TcpListener::bind("[::1]:0") else {
            panic!("this host has no IPv6 loopback; the test needs ::1");
        };
        drop(probe);
        let (port, t) = server_on("[::1]:0", 0);
        let c = Client::new(&format!("http://[::1]:{port}/v6"), &opts(2000, 0)).unwrap();
        assert_eq!(c.post(b"{}").unwrap(), 1);
        assert_eq!(t.join().unwrap(), vec!["{}".to_string()]);
    }

    #[test]
    fn a_dead_or_silent_receiver_times_out() {
        // Nothing listens on this port once the listener is dropped.
        let port = TcpListener::bind("127.0.0.1:0")
            .unwrap()
            .local_addr()
            .unwrap()
            .port();
        let c = Client::new(&format!("http://127.0.0.1:{port}/"), &opts(200, 1)).unwrap();
        assert!(c.post(b"{}").is_err());
        // A server that accepts and never answers: the whole attempt is bounded.
        let l = TcpListener::bind("127.0.0.1:0").unwrap();
        let url = format!("http://127.0.0.1:{}/", l.local_addr().unwrap().port());
        let c = Client::new(&url, &opts(300, 0)).unwrap();
        let t0 = std::time::Instant::now();
        assert!(c.post_once(b"{}").is_err());
        assert!(t0.elapsed() < Duration::from_secs(3), "{:?}", t0.elapsed());
        // A name that does not resolve fails within the bound too.
        let c = Client::new("http://no-such-host.invalid/", &opts(500, 0)).unwrap();
        let t0 = std::time::Instant::now();
        assert!(c.post_once(b"{}").is_err());
        assert!(t0.elapsed() < Duration::from_secs(5), "{:?}", t0.elapsed());
        drop(l);
    }

    #[test]
    fn https_is_spoken_and_verified() {
        // A plain HTTP server behind an https:// URL: the TLS handshake fails
        // (proof that the client speaks TLS and does not fall back).
        let (port, _t) = server_on("127.0.0.1:0", 0);
        let c = Client::new(&format!("https://127.0.0.1:{port}/"), &opts(1000, 0)).unwrap();
        let e = c.post_once(b"{}").unwrap_err();
        assert!(!e.is_empty());
        // A CA file that holds no certificate is refused up front.
        let d = tempfile::tempdir().unwrap();
        let ca = d.path().join("ca.pem");
        std::fs::write(&ca, "not a certificate\n").unwrap();
        let o = WebhookOptions {
            ca_file: Some(ca),
            ..opts(1000, 0)
        };
        let e = Client::new("https://127.0.0.1:1/", &o).err().unwrap();
        assert!(e.contains("no certificate"), "{e}");
    }

    #[test]
    fn alerts_beyond_the_queue_are_dropped_and_counted() {
        // Regression: a full queue lost alerts without a trace.
        let l = TcpListener::bind("127.0.0.1:0").unwrap();
        let url = format!("http://127.0.0.1:{}/", l.local_addr().unwrap().port());
        // The receiver accepts but never answers, so the first alert holds the
        // thread for the whole timeout while the queue of one fills.
        let w = Webhook::with_queue(&url, &opts(400, 0), 1).unwrap();
        let sent: Vec<bool> = (0..5).map(|_| w.send(b"{}".to_vec())).collect();
        let stats = w.finish();
        assert!(sent.iter().filter(|s| !**s).count() >= 3, "{sent:?}");
        assert_eq!(stats.dropped as usize, sent.iter().filter(|s| !**s).count());
        assert_eq!(stats.posted, 0);
        assert_eq!(
            (stats.failed + stats.dropped) as usize,
            5,
            "every alert is delivered, failed or dropped: {stats:?}"
        );
        drop(l);
    }
}
