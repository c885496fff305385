//! The accept loop: a connection limit, a small send buffer, a header
//! read timeout (slow clients are dropped), WebSocket upgrades.

use std::sync::atomic::Ordering;
use std::sync::Arc;
use std::time::Duration;

use axum::body::Body;

use super::{routes, App, Peer};

/// Serve HTTP until `stop` resolves.
pub async fn serve(
    app: Arc<App>,
    listener: tokio::net::TcpListener,
    stop: impl std::future::Future<Output = ()>,
) -> std::io::Result<()> {
    use hyper_util::rt::{TokioIo, TokioTimer};
    use tower::ServiceExt;
    let router = routes::router(app.clone());
    let limit = Arc::new(tokio::sync::Semaphore::new(app.cfg.max_connections));
    tokio::pin!(stop);
    loop {
        let (stream, peer) = tokio::select! {
            r = listener.accept() => match r {
                Ok(x) => x,
                Err(e) => {
                    tracing::warn!("accept: {e}");
                    tokio::time::sleep(Duration::from_millis(50)).await;
                    continue;
                }
            },
            _ = &mut stop => return Ok(()),
        };
        // A small send buffer: a subscriber that stops reading blocks its
        // sender soon, falls behind the broadcast and is cut off, instead
        // of megabytes piling up in the kernel for it.
        let _ = socket2::SockRef::from(&stream).set_send_buffer_size(64 * 1024);
        let Ok(permit) = limit.clone().try_acquire_owned() else {
            app.hub.metrics.reject("connections");
            drop(stream);
            continue;
        };
        let router = router.clone();
        let conns = app.conns.clone();
        let header_timeout = app.cfg.header_timeout;
        tokio::spawn(async move {
            conns.fetch_add(1, Ordering::Relaxed);
            let svc = hyper::service::service_fn(
                move |mut req: hyper::Request<hyper::body::Incoming>| {
                    req.extensions_mut().insert(Peer(peer));
                    router.clone().oneshot(req.map(Body::new))
                },
            );
            let conn = hyper::server::conn::http1::Builder::new()
                .timer(TokioTimer::new())
                .header_read_timeout(header_timeout)
                .max_buf_size(64 * 1024)
                .serve_connection(TokioIo::new(stream), svc)
                .with_upgrades();
            if let Err(e) = conn.await {
                tracing::debug!("connection from {peer}: {e}");
            }
            conns.fetch_sub(1, Ordering::Relaxed);
            drop(permit);
        });
    }
}
