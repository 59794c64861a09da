//! Structured JSON logs shaped like upstream's zap output, so existing log queries keep working.
//!
//! Each line is one JSON object: `level` (`DEBUG`, `INFO`, `WARN`, `ERROR`), `time` (RFC 3339,
//! UTC, milliseconds), `logger` (the innermost span's name, `controller` outside any span),
//! `message`, `caller` at debug level, then every field of the enclosing spans (outermost first)
//! and of the event at top level. Fields named after a Kubernetes kind (`NodeClaim`, `NodePool`,
//! `Node`, `EC2NodeClass`, `Pod`) become `{"name": …}` objects (`Pod` as `{"namespace","name"}`
//! from `ns/name`), matching upstream's log shape.
//!
//! As with zap, every line goes to each `LOG_OUTPUT_PATHS` sink; `LOG_ERROR_OUTPUT_PATHS` receives
//! the logger's own failures (a sink that cannot be written).

use std::fs::{File, OpenOptions};
use std::io::Write;
use std::sync::{Arc, Mutex};

use serde_json::{Map, Value};
use tracing::field::{Field, Visit};
use tracing::span::{Attributes, Id, Record};
use tracing::{Event, Level, Subscriber};
use tracing_subscriber::EnvFilter;
use tracing_subscriber::layer::{Context, Layer, SubscriberExt};
use tracing_subscriber::registry::LookupSpan;
use tracing_subscriber::util::SubscriberInitExt;

use crate::options::{LogConfig, LogLevel, LogSink};

/// Field names rendered as `{"name": value}` objects, as upstream logs object references.
const KIND_FIELDS: &[&str] = &["NodeClaim", "NodePool", "Node", "EC2NodeClass"];

/// One place log lines are written.
#[derive(Debug, Clone)]
pub enum Target {
    /// Standard output.
    Stdout,
    /// Standard error.
    Stderr,
    /// An open file (appended).
    File(Arc<Mutex<File>>),
    /// An in-memory buffer (tests).
    #[cfg(test)]
    Buffer(Arc<Mutex<Vec<u8>>>),
}

impl Target {
    fn open(sink: &LogSink) -> std::io::Result<Self> {
        Ok(match sink {
            LogSink::Stdout => Target::Stdout,
            LogSink::Stderr => Target::Stderr,
            LogSink::File(path) => Target::File(Arc::new(Mutex::new(
                OpenOptions::new().create(true).append(true).open(path)?,
            ))),
        })
    }

    fn write_line(&self, line: &[u8]) -> std::io::Result<()> {
        match self {
            Target::Stdout => std::io::stdout().lock().write_all(line),
            Target::Stderr => std::io::stderr().lock().write_all(line),
            Target::File(f) => f.lock().unwrap_or_else(|p| p.into_inner()).write_all(line),
            #[cfg(test)]
            Target::Buffer(b) => {
                b.lock()
                    .unwrap_or_else(|p| p.into_inner())
                    .extend_from_slice(line);
                Ok(())
            }
        }
    }
}

/// The span fields we keep, stored in the span's extensions.
#[derive(Debug, Default)]
struct SpanFields(Map<String, Value>);

/// Collects tracing fields into a JSON map.
struct JsonVisitor<'a> {
    fields: &'a mut Map<String, Value>,
    message: Option<String>,
}

impl JsonVisitor<'_> {
    fn put(&mut self, field: &Field, value: Value) {
        if field.name() == "message" {
            self.message = Some(match value {
                Value::String(s) => s,
                other => other.to_string(),
            });
            return;
        }
        let name = field.name().trim_start_matches("r#");
        let value = match (&value, name) {
            (Value::String(s), "Pod") => match s.split_once('/') {
                Some((ns, n)) => serde_json::json!({"namespace": ns, "name": n}),
                None => serde_json::json!({"name": s}),
            },
            (Value::String(s), k) if KIND_FIELDS.contains(&k) => serde_json::json!({"name": s}),
            _ => value,
        };
        self.fields.insert(name.to_string(), value);
    }
}

impl Visit for JsonVisitor<'_> {
    fn record_f64(&mut self, field: &Field, value: f64) {
        self.put(
            field,
            serde_json::Number::from_f64(value).map_or(Value::Null, Value::Number),
        );
    }
    fn record_i64(&mut self, field: &Field, value: i64) {
        self.put(field, Value::from(value));
    }
    fn record_u64(&mut self, field: &Field, value: u64) {
        self.put(field, Value::from(value));
    }
    fn record_bool(&mut self, field: &Field, value: bool) {
        self.put(field, Value::from(value));
    }
    fn record_str(&mut self, field: &Field, value: &str) {
        self.put(field, Value::from(value));
    }
    fn record_error(&mut self, field: &Field, value: &(dyn std::error::Error + 'static)) {
        self.put(field, Value::from(value.to_string()));
    }
    fn record_debug(&mut self, field: &Field, value: &dyn std::fmt::Debug) {
        self.put(field, Value::from(format!("{value:?}")));
    }
}

/// A layer writing one JSON object per event.
#[derive(Debug)]
pub struct JsonLayer {
    outputs: Vec<Target>,
    error_outputs: Vec<Target>,
    with_caller: bool,
}

impl JsonLayer {
    /// Writes to `outputs`; reports its own write failures to `error_outputs`.
    pub fn new(outputs: Vec<Target>, error_outputs: Vec<Target>, with_caller: bool) -> Self {
        JsonLayer {
            outputs,
            error_outputs,
            with_caller,
        }
    }

    fn level_name(level: &Level) -> &'static str {
        match *level {
            Level::TRACE | Level::DEBUG => "DEBUG",
            Level::INFO => "INFO",
            Level::WARN => "WARN",
            Level::ERROR => "ERROR",
        }
    }
}

impl<S> Layer<S> for JsonLayer
where
    S: Subscriber + for<'a> LookupSpan<'a>,
{
    fn on_new_span(&self, attrs: &Attributes<'_>, id: &Id, ctx: Context<'_, S>) {
        let Some(span) = ctx.span(id) else { return };
        let mut fields = Map::new();
        attrs.record(&mut JsonVisitor {
            fields: &mut fields,
            message: None,
        });
        span.extensions_mut().insert(SpanFields(fields));
    }

    fn on_record(&self, id: &Id, values: &Record<'_>, ctx: Context<'_, S>) {
        let Some(span) = ctx.span(id) else { return };
        let mut extensions = span.extensions_mut();
        if let Some(SpanFields(fields)) = extensions.get_mut::<SpanFields>() {
            values.record(&mut JsonVisitor {
                fields,
                message: None,
            });
        }
    }

    fn on_event(&self, event: &Event<'_>, ctx: Context<'_, S>) {
        let metadata = event.metadata();
        // Fixed keys first and in zap's order (a serde_json map would sort them), then fields.
        let mut head: Vec<(&str, Value)> = vec![
            ("level", Value::from(Self::level_name(metadata.level()))),
            (
                "time",
                Value::from(
                    chrono::Utc::now()
                        .format("%Y-%m-%dT%H:%M:%S%.3fZ")
                        .to_string(),
                ),
            ),
        ];
        let mut logger = "controller".to_string();
        let mut fields = Map::new();
        if let Some(scope) = ctx.event_scope(event) {
            for span in scope.from_root() {
                logger = span.name().to_string();
                if let Some(SpanFields(span_fields)) = span.extensions().get::<SpanFields>() {
                    fields.extend(span_fields.clone());
                }
            }
        }
        head.push(("logger", Value::from(logger)));
        if self.with_caller
            && let (Some(file), Some(n)) = (metadata.file(), metadata.line())
        {
            head.push(("caller", Value::from(format!("{file}:{n}"))));
        }
        let mut visitor = JsonVisitor {
            fields: &mut fields,
            message: None,
        };
        event.record(&mut visitor);
        let message = visitor.message.take().unwrap_or_default();
        head.push(("message", Value::from(message)));
        let mut line = String::from("{");
        let mut first = true;
        let mut push = |key: &str, value: &Value| {
            if !first {
                line.push(',');
            }
            first = false;
            line.push_str(&Value::from(key).to_string());
            line.push(':');
            line.push_str(&value.to_string());
        };
        for (key, value) in &head {
            push(key, value);
        }
        for (key, value) in &fields {
            // The fixed keys stay authoritative if a field reuses their name.
            if !head.iter().any(|(k, _)| k == key) {
                push(key, value);
            }
        }
        line.push_str("}\n");
        let bytes = line.into_bytes();
        for target in &self.outputs {
            if let Err(e) = target.write_line(&bytes) {
                let report =
                    format!("{{\"level\":\"ERROR\",\"message\":\"writing log line: {e}\"}}\n");
                for err_target in &self.error_outputs {
                    // Nowhere left to report a failure of the error sink itself.
                    let _ = err_target.write_line(report.as_bytes());
                }
            }
        }
    }
}

/// The level filter for `level`: our crates at that level; chatty HTTP/TLS internals capped at
/// info so `debug` shows Karpenter's own decisions rather than connection churn.
pub fn filter_for(level: LogLevel) -> EnvFilter {
    let directives = match level {
        LogLevel::Debug => "debug,hyper=info,hyper_util=info,h2=info,rustls=info,tower=info",
        LogLevel::Info => "info",
        LogLevel::Warn => "warn",
        LogLevel::Error => "error",
    };
    EnvFilter::new(directives)
}

/// Installs the JSON logger as the process-wide subscriber.
pub fn init(config: &LogConfig) -> anyhow::Result<()> {
    let open = |sinks: &[LogSink]| -> anyhow::Result<Vec<Target>> {
        sinks
            .iter()
            .map(|s| Target::open(s).map_err(|e| anyhow::anyhow!("opening log output {s:?}: {e}")))
            .collect()
    };
    let layer = JsonLayer::new(
        open(&config.output)?,
        open(&config.error_output)?,
        config.level == LogLevel::Debug,
    );
    tracing_subscriber::registry()
        .with(filter_for(config.level))
        .with(layer)
        .try_init()
        .map_err(|e| anyhow::anyhow!("installing the logger: {e}"))
}

#[cfg(test)]
mod tests {
    use super::*;
    use tracing::{info, info_span, warn};

    fn capture(level: LogLevel, f: impl FnOnce()) -> Vec<Value> {
        capture_text(level, f)
            .lines()
            .map(|l| serde_json::from_str(l).unwrap_or_else(|e| panic!("{l}: {e}")))
            .collect()
    }

    fn capture_text(level: LogLevel, f: impl FnOnce()) -> String {
        let buffer = Arc::new(Mutex::new(Vec::new()));
        let layer = JsonLayer::new(
            vec![Target::Buffer(buffer.clone())],
            vec![],
            level == LogLevel::Debug,
        );
        let subscriber = tracing_subscriber::registry()
            .with(filter_for(level))
            .with(layer);
        tracing::subscriber::with_default(subscriber, f);
        String::from_utf8(buffer.lock().unwrap().clone()).unwrap()
    }

    #[test]
    fn fixed_keys_come_first_in_zap_order() {
        let text = capture_text(LogLevel::Info, || {
            let _g = info_span!("provisioner").entered();
            info!(zeta = 1, alpha = "a", "hello");
        });
        let rest = text
            .strip_prefix("{\"level\":\"INFO\",\"time\":\"")
            .unwrap();
        let (_, rest) = rest.split_once('"').unwrap();
        assert_eq!(
            rest,
            ",\"logger\":\"provisioner\",\"message\":\"hello\",\"alpha\":\"a\",\"zeta\":1}\n"
        );
    }

    #[test]
    fn lines_are_json_with_upstream_keys_and_top_level_fields() {
        let lines = capture(LogLevel::Info, || {
            let span = info_span!(
                "nodeclaim.lifecycle",
                controller = "nodeclaim.lifecycle",
                NodeClaim = "default-abc"
            );
            let _guard = span.enter();
            info!(
                NodePool = "default",
                Pod = "kube-system/coredns",
                count = 3,
                "launched nodeclaim"
            );
        });
        assert_eq!(lines.len(), 1);
        let line = &lines[0];
        assert_eq!(line["level"], "INFO");
        assert_eq!(line["logger"], "nodeclaim.lifecycle");
        assert_eq!(line["message"], "launched nodeclaim");
        assert_eq!(line["controller"], "nodeclaim.lifecycle");
        assert_eq!(
            line["NodeClaim"],
            serde_json::json!({"name": "default-abc"})
        );
        assert_eq!(line["NodePool"], serde_json::json!({"name": "default"}));
        assert_eq!(
            line["Pod"],
            serde_json::json!({"namespace": "kube-system", "name": "coredns"})
        );
        assert_eq!(line["count"], 3);
        assert!(line.get("caller").is_none(), "caller only at debug");
        let time = line["time"].as_str().unwrap();
        let parsed = chrono::DateTime::parse_from_rfc3339(time).unwrap();
        assert_eq!(parsed.offset().local_minus_utc(), 0);
        assert_eq!(time.len(), "2026-01-01T00:00:00.000Z".len(), "{time}");
    }

    #[test]
    fn level_filters_and_debug_caller() {
        let lines = capture(LogLevel::Error, || {
            info!("hidden");
            warn!("hidden too");
            tracing::error!(error = "boom", "shown");
        });
        assert_eq!(lines.len(), 1);
        assert_eq!(
            (lines[0]["level"].as_str(), lines[0]["logger"].as_str()),
            (Some("ERROR"), Some("controller"))
        );
        assert_eq!(lines[0]["error"], "boom");
        let lines = capture(LogLevel::Debug, || tracing::debug!("details"));
        assert_eq!(lines[0]["level"], "DEBUG");
        assert!(
            lines[0]["caller"]
                .as_str()
                .unwrap()
                .contains("telemetry.rs:")
        );
    }
}
