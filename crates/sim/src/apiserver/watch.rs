//! Watch streams: newline-delimited `WatchEvent` JSON over a chunked response.

use std::convert::Infallible;
use std::sync::Arc;
use std::time::Duration;

use axum::body::{Body, Bytes};
use axum::http::StatusCode;
use axum::response::Response;
use serde_json::{Value, json};
use tokio::sync::{broadcast, mpsc};
use tracing::Instrument;

use super::Server;
use super::error::ApiError;
use super::filter::{ObjectFilter, present_json};
use super::http::body_response;
use super::registry::ResourceInfo;
use super::store::{EventType, StoreEvent, WatchFrom};
use super::stored::StoredObject;
use super::table;

/// The annotation marking the end of a streaming list's initial events.
pub const INITIAL_EVENTS_END: &str = "k8s.io/initial-events-end";

pub(crate) struct WatchParams {
    pub from: WatchFrom,
    /// Events at or below this revision were already seen by the client.
    pub min_rv: u64,
    pub send_initial_events: bool,
    pub bookmarks: bool,
    pub timeout: Duration,
    pub table: bool,
}

struct Encoder {
    server: Arc<Server>,
    res: Arc<ResourceInfo>,
    table: bool,
}

impl Encoder {
    fn event(&self, kind: &str, obj: &StoredObject) -> Option<Bytes> {
        let encoded = if self.table {
            obj.value().map(|v| {
                let tbl = table::render(
                    &self.res,
                    &[Arc::new(v)],
                    table::IncludeObject::Object,
                    self.server.config.clock.now(),
                    None,
                );
                self.line(&json!({"type": kind, "object": tbl}))
            })
        } else {
            // The object's stored bytes go out as they are: one copy per watcher, no serializing.
            present_json(&self.res, obj).map(|json| {
                let mut line = Vec::with_capacity(json.len() + 32);
                line.extend_from_slice(b"{\"type\":\"");
                line.extend_from_slice(kind.as_bytes());
                line.extend_from_slice(b"\",\"object\":");
                line.extend_from_slice(&json);
                line.extend_from_slice(b"}\n");
                Some(Bytes::from(line))
            })
        };
        match encoded {
            Ok(line) => line,
            Err(e) => {
                tracing::error!(error = %e, "encoding a watch event failed");
                None
            }
        }
    }

    fn bookmark(&self, rv: u64, initial_end: bool) -> Option<Bytes> {
        let mut meta = serde_json::Map::new();
        meta.insert("resourceVersion".into(), json!(rv.to_string()));
        meta.insert("creationTimestamp".into(), Value::Null);
        if initial_end {
            meta.insert("annotations".into(), json!({INITIAL_EVENTS_END: "true"}));
        }
        let object =
            json!({"kind": self.res.kind, "apiVersion": self.res.api_version(), "metadata": meta});
        self.line(&json!({"type": "BOOKMARK", "object": object}))
    }

    fn error(&self, err: &ApiError) -> Option<Bytes> {
        self.line(&json!({"type": "ERROR", "object": err.to_status()}))
    }

    fn line(&self, v: &Value) -> Option<Bytes> {
        match serde_json::to_vec(v) {
            Ok(mut bytes) => {
                bytes.push(b'\n');
                Some(Bytes::from(bytes))
            }
            Err(e) => {
                tracing::error!(error = %e, "serializing a watch event failed");
                None
            }
        }
    }
}

/// What a store event looks like to a watcher with this filter.
fn transition(filter: &ObjectFilter, ev: &StoreEvent) -> Option<&'static str> {
    let now = filter.matches(&ev.object);
    match ev.kind {
        EventType::Added => now.then_some("ADDED"),
        EventType::Deleted => {
            let before = ev.prev.as_ref().map(|p| filter.matches(p)).unwrap_or(now);
            (before || now).then_some("DELETED")
        }
        EventType::Modified => {
            let before = ev.prev.as_ref().map(|p| filter.matches(p)).unwrap_or(false);
            match (before, now) {
                (true, true) => Some("MODIFIED"),
                (false, true) => Some("ADDED"),
                (true, false) => Some("DELETED"),
                (false, false) => None,
            }
        }
    }
}

pub(crate) fn serve(
    server: Arc<Server>,
    res: Arc<ResourceInfo>,
    filter: ObjectFilter,
    params: WatchParams,
) -> Response {
    let (tx, rx) = mpsc::channel::<Bytes>(256);
    let enc = Encoder {
        server: server.clone(),
        res: res.clone(),
        table: params.table,
    };
    let start = server.store.watch(&res.storage, params.from);
    let span = tracing::debug_span!("watch", resource = %res.plural);
    tokio::spawn(
        async move {
            let start = match start {
                Ok(s) => s,
                Err(err) => {
                    // Like the watch cache: the stream opens, then carries one ERROR event.
                    if let Some(line) = enc.error(&err) {
                        let _ = tx.send(line).await;
                    }
                    return;
                }
            };
            run(server, enc, filter, params, start, tx).await;
        }
        .instrument(span),
    );
    let stream = futures_util::stream::unfold(rx, |mut rx| async move {
        rx.recv().await.map(|b| (Ok::<Bytes, Infallible>(b), rx))
    });
    body_response(StatusCode::OK, Body::from_stream(stream))
}

async fn run(
    server: Arc<Server>,
    enc: Encoder,
    filter: ObjectFilter,
    params: WatchParams,
    start: super::store::WatchStart,
    tx: mpsc::Sender<Bytes>,
) {
    let mut last_rv = start.rv;
    for obj in &start.snapshot {
        if filter.matches(obj)
            && let Some(line) = enc.event("ADDED", obj)
            && tx.send(line).await.is_err()
        {
            return;
        }
    }
    if params.send_initial_events
        && let Some(line) = enc.bookmark(start.rv, true)
        && tx.send(line).await.is_err()
    {
        return;
    }
    for ev in &start.backlog {
        if let Some(kind) = transition(&filter, ev)
            && let Some(line) = enc.event(kind, &ev.object)
            && tx.send(line).await.is_err()
        {
            return;
        }
    }
    let mut rx = start.rx;
    let mut drop_signal = server.faults.drop_signal();
    drop_signal.borrow_and_update();
    let mut shutdown = server.shutdown.clone();
    let deadline = tokio::time::sleep(params.timeout);
    tokio::pin!(deadline);
    let mut bookmark_tick = tokio::time::interval(server.config.bookmark_interval);
    bookmark_tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    bookmark_tick.tick().await;
    loop {
        let step = tokio::select! {
            received = rx.recv() => Step::Event(received),
            _ = bookmark_tick.tick(), if params.bookmarks => Step::Bookmark,
            _ = &mut deadline => Step::Deadline,
            _ = drop_signal.changed() => Step::Stop,
            _ = shutdown.wait_for(|s| *s) => Step::Stop,
            _ = tx.closed() => Step::Stop,
        };
        match step {
            Step::Event(Ok(ev)) => {
                if ev.rv <= start.rv.max(params.min_rv) {
                    continue;
                }
                last_rv = ev.rv;
                if let Some(kind) = transition(&filter, &ev)
                    && let Some(line) = enc.event(kind, &ev.object)
                    && tx.send(line).await.is_err()
                {
                    return;
                }
            }
            Step::Event(Err(broadcast::error::RecvError::Lagged(n))) => {
                // Too slow: end the stream so the client re-watches from its last revision.
                tracing::debug!(skipped = n, "watcher fell behind; closing its stream");
                return;
            }
            Step::Event(Err(broadcast::error::RecvError::Closed)) | Step::Stop => return,
            Step::Bookmark => {
                if let Some(line) = enc.bookmark(last_rv, false)
                    && tx.send(line).await.is_err()
                {
                    return;
                }
            }
            Step::Deadline => {
                if params.bookmarks
                    && let Some(line) = enc.bookmark(last_rv, false)
                {
                    let _ = tx.send(line).await;
                }
                return;
            }
        }
    }
}

enum Step {
    Event(Result<Arc<StoreEvent>, broadcast::error::RecvError>),
    Bookmark,
    Deadline,
    Stop,
}
