//! Who may ask: the bearer token, and the request rate per client address.

use std::collections::HashMap;
use std::net::IpAddr;
use std::sync::Arc;
use std::time::Instant;

use axum::extract::{Request, State};
use axum::http::{header, HeaderMap, StatusCode};
use axum::middleware::Next;
use axum::response::Response;

use super::{problem, App, Peer};

/// Routes that take the token as `?token=` (browsers cannot set headers on
/// WebSocket and EventSource); every other route needs the header.
pub const QUERY_TOKEN_ROUTES: [&str; 2] = ["/v1/events", "/v1/events/sse"];
/// Routes open without a token: the health check and the dashboard page
/// (static; the data it shows comes from routes that need the token).
pub const OPEN_ROUTES: [&str; 2] = ["/healthz", "/"];

fn same(got: &str, want: &str) -> bool {
    // Constant-time comparison.
    got.len() == want.len()
        && got
            .bytes()
            .zip(want.bytes())
            .fold(0u8, |a, (x, y)| a | (x ^ y))
            == 0
}

/// Whether a request to `path` carries the token `want` (None: no token
/// set, everything passes).
pub fn authorized(
    want: Option<&str>,
    path: &str,
    headers: &HeaderMap,
    query: Option<&str>,
) -> bool {
    let Some(want) = want else {
        return true;
    };
    if OPEN_ROUTES.contains(&path) {
        return true;
    }
    if let Some(v) = headers
        .get(header::AUTHORIZATION)
        .and_then(|v| v.to_str().ok())
    {
        if let Some(t) = v.strip_prefix("Bearer ") {
            return same(t.trim(), want);
        }
    }
    QUERY_TOKEN_ROUTES.contains(&path)
        && query
            .unwrap_or("")
            .split('&')
            .filter_map(|kv| kv.split_once('='))
            .any(|(k, v)| k == "token" && same(v, want))
}

/// Most client addresses tracked before idle ones are evicted.
pub const MAX_CLIENTS: usize = 10_000;

/// Token buckets per client address: `rate` per second, bursts of twice
/// that. At [`MAX_CLIENTS`] addresses, the buckets that are full again
/// (idle clients: forgetting them changes nothing) are evicted, then, if
/// need be, the tenth that are fullest: a client being limited keeps its
/// empty bucket.
pub struct Buckets {
    rate: f64,
    map: HashMap<IpAddr, (f64, Instant)>,
}

impl Buckets {
    /// Buckets refilling at `rate` per second.
    pub fn new(rate: f64) -> Self {
        Buckets {
            rate,
            map: HashMap::new(),
        }
    }

    /// Take one request for `ip`; false when its bucket is empty.
    pub fn take(&mut self, ip: IpAddr, now: Instant) -> bool {
        if !self.map.contains_key(&ip) && self.map.len() >= MAX_CLIENTS {
            self.evict(now);
        }
        let full = 2.0 * self.rate;
        let b = *self.map.get(&ip).unwrap_or(&(full, now));
        let level = (b.0 + now.duration_since(b.1).as_secs_f64() * self.rate).min(full);
        let ok = level >= 1.0;
        self.map
            .insert(ip, (if ok { level - 1.0 } else { level }, now));
        ok
    }

    fn evict(&mut self, now: Instant) {
        // Forgetting a bucket refills it: forget those that are (nearly)
        // full, which loses the least.
        let (rate, full) = (self.rate, 2.0 * self.rate);
        let level =
            |b: &(f64, Instant)| (b.0 + now.duration_since(b.1).as_secs_f64() * rate).min(full);
        self.map.retain(|_, b| level(b) < full);
        if self.map.len() >= MAX_CLIENTS {
            let mut l: Vec<f64> = self.map.values().map(level).collect();
            l.sort_unstable_by(|a, b| b.total_cmp(a));
            let cut = l[l.len() / 10];
            self.map.retain(|_, b| level(b) < cut);
        }
    }

    /// Addresses tracked.
    pub fn len(&self) -> usize {
        self.map.len()
    }

    /// Whether none are tracked.
    pub fn is_empty(&self) -> bool {
        self.map.is_empty()
    }
}

/// The middleware: rate limit, then the token.
pub(super) async fn guard(State(app): State<Arc<App>>, req: Request, next: Next) -> Response {
    if let Some(Peer(peer)) = req.extensions().get::<Peer>().copied() {
        let ok = app
            .buckets
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .take(peer.ip(), Instant::now());
        if !ok {
            app.hub.metrics.reject("rate");
            return problem(
                StatusCode::TOO_MANY_REQUESTS,
                "too many requests: slow down",
            );
        }
    }
    let path = req.uri().path();
    if !authorized(
        app.cfg.token.as_deref(),
        path,
        req.headers(),
        req.uri().query(),
    ) {
        app.hub.metrics.reject("auth");
        let how = if QUERY_TOKEN_ROUTES.contains(&path) {
            "missing or wrong token (Authorization: Bearer TOKEN, or ?token=TOKEN)"
        } else {
            "missing or wrong token (Authorization: Bearer TOKEN)"
        };
        return problem(StatusCode::UNAUTHORIZED, how);
    }
    next.run(req).await
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::time::Duration;

    /// Defect 9: `?token=` was taken on every route, so the token ended
    /// up in logs and histories of ordinary API URLs.
    #[test]
    fn regression_query_token_only_on_event_streams() {
        let none = HeaderMap::new();
        let mut bearer = HeaderMap::new();
        bearer.insert(header::AUTHORIZATION, "Bearer s3cret".parse().unwrap());
        let t = Some("s3cret");
        assert!(!authorized(t, "/v1/calls", &none, Some("token=s3cret")));
        assert!(!authorized(t, "/metrics", &none, Some("token=s3cret")));
        assert!(authorized(
            t,
            "/v1/events",
            &none,
            Some("call=a&token=s3cret")
        ));
        assert!(authorized(t, "/v1/events/sse", &none, Some("token=s3cret")));
        assert!(!authorized(t, "/v1/events", &none, Some("token=wrong")));
        assert!(authorized(t, "/v1/calls", &bearer, None));
        assert!(authorized(t, "/healthz", &none, None));
        assert!(authorized(t, "/", &none, None));
        assert!(authorized(None, "/v1/calls", &none, None));
    }

    /// Defect 9: at 10,000 addresses the limiter cleared every bucket, so a
    /// client being limited was let through again.
    #[test]
    fn regression_many_addresses_do_not_reset_a_limited_client() {
        let mut b = Buckets::new(2.0);
        let t0 = Instant::now();
        let busy: IpAddr = "192.0.2.1".parse().unwrap();
        let taken = (0..10).filter(|_| b.take(busy, t0)).count();
        assert_eq!(taken, 4, "a burst of twice the rate");
        // Ten thousand other clients, each seen once, over 1 s of requests.
        for i in 0..(MAX_CLIENTS as u32 + 5) {
            let ip = IpAddr::from((0x0A00_0000u32 + i).to_be_bytes());
            let now = t0 + Duration::from_micros(i as u64 / 20);
            b.take(ip, now);
        }
        assert!(b.len() <= MAX_CLIENTS);
        // The busy client has earned about one request back since, no more.
        let now = t0 + Duration::from_millis(600);
        let again = (0..10).filter(|_| b.take(busy, now)).count();
        assert!(again <= 1, "{again} requests passed after the eviction");
    }
}
