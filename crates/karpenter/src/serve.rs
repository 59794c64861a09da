//! The two HTTP servers upstream's chart probes and scrapes: `/metrics` on the metrics port and
//! `/healthz` + `/readyz` on the health-probe port.
//!
//! `/healthz` answers 200 whenever the process serves at all (a liveness ping). `/readyz`
//! answers 200 only when every registered readiness check passes, else 503, listing checks as
//! Kubernetes' own endpoints do (`[+]name ok` / `[-]name not ready`). Readiness deliberately does
//! not require leadership: a standby replica must be Ready or the chart's rolling update
//! (2 replicas, maxUnavailable 1) would never finish.

use std::collections::BTreeMap;
use std::net::SocketAddr;
use std::sync::{Arc, Mutex};

use axum::Router;
use axum::extract::State;
use axum::http::{StatusCode, header};
use axum::response::{IntoResponse, Response};
use axum::routing::get;
use prometheus::{Encoder, Registry, TextEncoder};
use tokio::net::TcpListener;
use tokio::task::JoinHandle;
use tokio_util::sync::CancellationToken;
use tracing::{Instrument, error, info_span};

/// Named readiness checks; ready when at least one is registered and all pass.
#[derive(Debug, Clone, Default)]
pub struct Readiness {
    checks: Arc<Mutex<BTreeMap<String, bool>>>,
}

impl Readiness {
    /// Registers (or updates) check `name`.
    pub fn set(&self, name: &str, ready: bool) {
        self.lock().insert(name.to_string(), ready);
    }

    fn report(&self) -> (bool, String) {
        let checks = self.lock();
        let ready = !checks.is_empty() && checks.values().all(|ok| *ok);
        let mut body: String = checks
            .iter()
            .map(|(name, ok)| {
                if *ok {
                    format!("[+]{name} ok\n")
                } else {
                    format!("[-]{name} not ready\n")
                }
            })
            .collect();
        body.push_str(if ready {
            "readyz check passed\n"
        } else {
            "readyz check failed\n"
        });
        (ready, body)
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, BTreeMap<String, bool>> {
        self.checks.lock().unwrap_or_else(|p| p.into_inner())
    }
}

/// The content type of the Prometheus text exposition format 0.0.4.
pub const METRICS_CONTENT_TYPE: &str = "text/plain; version=0.0.4; charset=utf-8";

async fn metrics(State(registry): State<Registry>) -> Response {
    let mut body = Vec::new();
    match TextEncoder::new().encode(&registry.gather(), &mut body) {
        Ok(()) => ([(header::CONTENT_TYPE, METRICS_CONTENT_TYPE)], body).into_response(),
        Err(e) => {
            error!(error = %e, "encoding metrics");
            (
                StatusCode::INTERNAL_SERVER_ERROR,
                "encoding metrics failed\n",
            )
                .into_response()
        }
    }
}

async fn healthz() -> &'static str {
    "ok"
}

async fn readyz(State(readiness): State<Readiness>) -> Response {
    let (ready, body) = readiness.report();
    let status = if ready {
        StatusCode::OK
    } else {
        StatusCode::SERVICE_UNAVAILABLE
    };
    (status, body).into_response()
}

/// The running servers.
#[derive(Debug)]
pub struct Servers {
    /// Where `/metrics` listens.
    pub metrics_addr: SocketAddr,
    /// Where `/healthz` and `/readyz` listen.
    pub health_addr: SocketAddr,
    tasks: Vec<JoinHandle<std::io::Result<()>>>,
}

impl Servers {
    /// Binds both ports and serves until `shutdown` is cancelled.
    pub async fn start(
        metrics_addr: SocketAddr,
        health_addr: SocketAddr,
        registry: Registry,
        readiness: Readiness,
        shutdown: CancellationToken,
    ) -> anyhow::Result<Self> {
        let metrics_listener = TcpListener::bind(metrics_addr)
            .await
            .map_err(|e| anyhow::anyhow!("binding metrics port {metrics_addr}: {e}"))?;
        let health_listener = TcpListener::bind(health_addr)
            .await
            .map_err(|e| anyhow::anyhow!("binding health probe port {health_addr}: {e}"))?;
        let metrics_addr = metrics_listener.local_addr()?;
        let health_addr = health_listener.local_addr()?;
        let metrics_app = Router::new()
            .route("/metrics", get(metrics))
            .with_state(registry);
        let health_app = Router::new()
            .route("/healthz", get(healthz))
            .route("/readyz", get(readyz))
            .with_state(readiness);
        let serve = |listener: TcpListener, app: Router, name: &'static str| {
            let token = shutdown.clone();
            tokio::spawn(
                async move {
                    axum::serve(listener, app)
                        .with_graceful_shutdown(token.cancelled_owned())
                        .await
                }
                .instrument(info_span!("server", server = name)),
            )
        };
        let tasks = vec![
            serve(metrics_listener, metrics_app, "metrics"),
            serve(health_listener, health_app, "health"),
        ];
        Ok(Servers {
            metrics_addr,
            health_addr,
            tasks,
        })
    }

    /// Waits for both servers to finish (after the shutdown token is cancelled).
    pub async fn wait(self) -> anyhow::Result<()> {
        for task in self.tasks {
            task.await
                .map_err(|e| anyhow::anyhow!("server task: {e}"))?
                .map_err(|e| anyhow::anyhow!("server: {e}"))?;
        }
        Ok(())
    }
}

/// A minimal HTTP/1.1 GET for tests: returns the status code and body.
#[cfg(test)]
pub(crate) async fn http_get(addr: SocketAddr, path: &str) -> (u16, String, String) {
    use tokio::io::{AsyncReadExt, AsyncWriteExt};
    let mut stream = tokio::net::TcpStream::connect(addr).await.unwrap();
    let request = format!("GET {path} HTTP/1.1\r\nHost: {addr}\r\nConnection: close\r\n\r\n");
    stream.write_all(request.as_bytes()).await.unwrap();
    let mut response = Vec::new();
    stream.read_to_end(&mut response).await.unwrap();
    let text = String::from_utf8(response).unwrap();
    let (head, body) = text.split_once("\r\n\r\n").unwrap();
    let status: u16 = head.split(' ').nth(1).unwrap().parse().unwrap();
    (status, head.to_string(), body.to_string())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test]
    async fn metrics_health_and_readiness_then_graceful_shutdown() {
        let registry = Registry::new();
        let counter = prometheus::IntCounter::new("test_requests_total", "test").unwrap();
        registry.register(Box::new(counter.clone())).unwrap();
        counter.inc_by(3);
        let readiness = Readiness::default();
        let token = CancellationToken::new();
        let local: SocketAddr = "127.0.0.1:0".parse().unwrap();
        let servers = Servers::start(local, local, registry, readiness.clone(), token.clone())
            .await
            .unwrap();
        assert_ne!(servers.metrics_addr.port(), servers.health_addr.port());

        let (status, head, body) = http_get(servers.metrics_addr, "/metrics").await;
        assert_eq!(status, 200);
        assert!(
            head.to_ascii_lowercase()
                .contains("content-type: text/plain; version=0.0.4"),
            "{head}"
        );
        assert!(
            body.contains("# TYPE test_requests_total counter\ntest_requests_total 3\n"),
            "{body}"
        );
        assert_eq!(
            http_get(servers.metrics_addr, "/healthz").await.0,
            404,
            "probes live on their own port"
        );

        assert_eq!(http_get(servers.health_addr, "/healthz").await.0, 200);
        let (status, _, body) = http_get(servers.health_addr, "/readyz").await;
        assert_eq!(
            (status, body.as_str()),
            (503, "readyz check failed\n"),
            "no checks yet: not ready"
        );
        readiness.set("caches", false);
        readiness.set("crds", true);
        let (status, _, body) = http_get(servers.health_addr, "/readyz").await;
        assert_eq!(
            (status, body.as_str()),
            (
                503,
                "[-]caches not ready\n[+]crds ok\nreadyz check failed\n"
            )
        );
        readiness.set("caches", true);
        assert_eq!(http_get(servers.health_addr, "/readyz").await.0, 200);

        token.cancel();
        servers.wait().await.unwrap();
    }
}
