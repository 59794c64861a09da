//! Client-side request rate limiting for the Kubernetes client (`KUBE_CLIENT_QPS` /
//! `KUBE_CLIENT_BURST`), which kube-rs does not provide itself.
//!
//! A token bucket like client-go's: it starts full with `burst` tokens and refills at `qps`
//! tokens per second; each request takes one token and waits when none is left. The limit is
//! a tower layer added to kube's client stack, so every request through that client (lists,
//! watches, writes) shares it; the leader-election client is built without it, as upstream
//! gives leader election its own unthrottled configuration.

use std::future::Future;
use std::pin::Pin;
use std::sync::{Arc, Mutex};
use std::task::{Context, Poll};
use std::time::Duration;

use tokio::time::{Instant, Sleep};
use tower::{Layer, Service};

/// The shared bucket.
#[derive(Debug)]
struct Bucket {
    tokens: f64,
    capacity: f64,
    per_second: f64,
    last: Instant,
}

impl Bucket {
    /// Takes a token, or says how long until one is available.
    fn try_take(&mut self, now: Instant) -> Result<(), Duration> {
        let elapsed = now.saturating_duration_since(self.last).as_secs_f64();
        self.tokens = (self.tokens + elapsed * self.per_second).min(self.capacity);
        self.last = now;
        // A hair of tolerance so float rounding never adds a nanosecond wait.
        if self.tokens >= 1.0 - 1e-9 {
            self.tokens = (self.tokens - 1.0).max(0.0);
            Ok(())
        } else {
            let missing = 1.0 - self.tokens;
            Err(Duration::from_secs_f64(missing / self.per_second))
        }
    }
}

/// Adds a shared token bucket in front of a service.
#[derive(Debug, Clone)]
pub struct RateLimitLayer {
    bucket: Arc<Mutex<Bucket>>,
}

impl RateLimitLayer {
    /// `qps` sustained requests per second with bursts of up to `burst` (both at least 1).
    pub fn new(qps: u32, burst: u32) -> Self {
        let capacity = f64::from(burst.max(1));
        RateLimitLayer {
            bucket: Arc::new(Mutex::new(Bucket {
                tokens: capacity,
                capacity,
                per_second: f64::from(qps.max(1)),
                last: Instant::now(),
            })),
        }
    }
}

impl<S> Layer<S> for RateLimitLayer {
    type Service = RateLimit<S>;

    fn layer(&self, inner: S) -> Self::Service {
        RateLimit {
            inner,
            bucket: self.bucket.clone(),
            sleep: None,
            permit: false,
        }
    }
}

/// A service that waits for a token before each request.
#[derive(Debug)]
pub struct RateLimit<S> {
    inner: S,
    bucket: Arc<Mutex<Bucket>>,
    sleep: Option<Pin<Box<Sleep>>>,
    /// A token already taken for the next call (so a pending inner service does not take more).
    permit: bool,
}

impl<S, R> Service<R> for RateLimit<S>
where
    S: Service<R>,
{
    type Response = S::Response;
    type Error = S::Error;
    type Future = S::Future;

    fn poll_ready(&mut self, cx: &mut Context<'_>) -> Poll<Result<(), Self::Error>> {
        while !self.permit {
            if let Some(sleep) = self.sleep.as_mut() {
                if sleep.as_mut().poll(cx).is_pending() {
                    return Poll::Pending;
                }
                self.sleep = None;
            }
            let taken = self
                .bucket
                .lock()
                .unwrap_or_else(|p| p.into_inner())
                .try_take(Instant::now());
            match taken {
                Ok(()) => self.permit = true,
                Err(wait) => self.sleep = Some(Box::pin(tokio::time::sleep(wait))),
            }
        }
        self.inner.poll_ready(cx)
    }

    fn call(&mut self, request: R) -> Self::Future {
        self.permit = false;
        self.inner.call(request)
    }
}

#[cfg(test)]
mod tests {
    use std::future::{Ready, ready};

    use super::*;

    #[derive(Debug, Default)]
    struct Echo;

    impl Service<u32> for Echo {
        type Response = u32;
        type Error = std::convert::Infallible;
        type Future = Ready<Result<u32, Self::Error>>;

        fn poll_ready(&mut self, _: &mut Context<'_>) -> Poll<Result<(), Self::Error>> {
            Poll::Ready(Ok(()))
        }

        fn call(&mut self, request: u32) -> Self::Future {
            ready(Ok(request))
        }
    }

    async fn send(service: &mut RateLimit<Echo>, n: u32) -> u32 {
        std::future::poll_fn(|cx| service.poll_ready(cx))
            .await
            .unwrap();
        service.call(n).await.unwrap()
    }

    #[tokio::test(start_paused = true)]
    async fn burst_then_qps() {
        let layer = RateLimitLayer::new(10, 3);
        let mut a = layer.layer(Echo);
        let mut b = layer.layer(Echo);
        let start = Instant::now();
        // The burst goes through at once, shared between services of one layer.
        assert_eq!(send(&mut a, 1).await, 1);
        assert_eq!(send(&mut b, 2).await, 2);
        assert_eq!(send(&mut a, 3).await, 3);
        assert_eq!(Instant::now(), start);
        // Then one request per 1/qps (paused time: exact, not wall-clock).
        send(&mut b, 4).await;
        assert_eq!(Instant::now() - start, Duration::from_millis(100));
        send(&mut a, 5).await;
        assert_eq!(Instant::now() - start, Duration::from_millis(200));
        // Idle time refills the bucket up to the burst, no further.
        tokio::time::sleep(Duration::from_secs(60)).await;
        let refilled = Instant::now();
        for n in 0..3 {
            send(&mut a, n).await;
        }
        assert_eq!(Instant::now(), refilled);
        send(&mut a, 9).await;
        assert_eq!(Instant::now() - refilled, Duration::from_millis(100));
    }
}
