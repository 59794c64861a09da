//! Request routing and the REST verbs.

use std::collections::HashMap;
use std::sync::Arc;

use axum::body::{Body, Bytes};
use axum::extract::{Request, State};
use axum::http::{HeaderMap, HeaderValue, Method, StatusCode, header};
use axum::response::{IntoResponse, Response};
use futures_util::StreamExt;
use serde_json::{Value, json};

use super::error::{ApiError, success_status};
use super::faults::Verb;
use super::filter::{ObjectFilter, present, present_json, to_storage};
use super::object::{self, str_at};
use super::registry::ResourceInfo;
use super::store::{
    DeleteOptions, Key, Propagation, UpdateTarget, WatchFrom, WriteOptions, prepare_update,
};
use super::stored::StoredObject;
use super::{Server, builtin, custom, discovery, subresource, table, watch};

const MAX_BODY: usize = 64 * 1024 * 1024;

pub(crate) fn router(server: Arc<Server>) -> axum::Router {
    axum::Router::new().fallback(handle).with_state(server)
}

/// What a request carries, parsed once.
pub(crate) struct Ctx {
    pub method: Method,
    pub segments: Vec<String>,
    pub query: HashMap<String, String>,
    pub headers: HeaderMap,
    pub body: Bytes,
}

impl Ctx {
    pub fn q(&self, key: &str) -> Option<&str> {
        self.query.get(key).map(String::as_str)
    }

    pub fn accept(&self) -> &str {
        self.headers
            .get(header::ACCEPT)
            .and_then(|v| v.to_str().ok())
            .unwrap_or("")
    }

    pub fn content_type(&self) -> &str {
        self.headers
            .get(header::CONTENT_TYPE)
            .and_then(|v| v.to_str().ok())
            .unwrap_or("application/json")
    }

    pub fn dry_run(&self) -> bool {
        self.q("dryRun").is_some_and(|v| v == "All")
    }

    pub fn wants_table(&self) -> bool {
        self.accept()
            .split(',')
            .any(|part| part.contains("as=Table"))
    }
}

async fn handle(State(server): State<Arc<Server>>, req: Request) -> Response {
    let (parts, body) = req.into_parts();
    let body = match axum::body::to_bytes(body, MAX_BODY).await {
        Ok(b) => b,
        Err(e) => return error_response(&ApiError::bad_request(format!("reading body: {e}"))),
    };
    let segments: Vec<String> = parts
        .uri
        .path()
        .split('/')
        .filter(|s| !s.is_empty())
        .map(percent_decode)
        .collect();
    let query: HashMap<String, String> = parts
        .uri
        .query()
        .map(|q| form_urlencoded::parse(q.as_bytes()).into_owned().collect())
        .unwrap_or_default();
    let ctx = Ctx {
        method: parts.method,
        segments,
        query,
        headers: parts.headers,
        body,
    };
    let latency = server.faults.latency();
    if !latency.is_zero() {
        tokio::time::sleep(latency).await;
    }
    let path = parts.uri.path().to_string();
    match dispatch(&server, &ctx).await {
        Ok(resp) => resp,
        Err(e) => {
            tracing::debug!(method = %ctx.method, path, code = e.code, reason = %e.reason, "request failed");
            error_response(&e)
        }
    }
}

fn percent_decode(s: &str) -> String {
    if !s.contains('%') {
        return s.to_string();
    }
    let bytes = s.as_bytes();
    let mut out = Vec::with_capacity(bytes.len());
    let mut i = 0;
    while i < bytes.len() {
        if bytes.get(i) == Some(&b'%')
            && let (Some(h), Some(l)) = (bytes.get(i + 1), bytes.get(i + 2))
            && let (Some(h), Some(l)) = ((*h as char).to_digit(16), (*l as char).to_digit(16))
        {
            out.push((h * 16 + l) as u8);
            i += 3;
            continue;
        }
        out.push(bytes.get(i).copied().unwrap_or(b'%'));
        i += 1;
    }
    String::from_utf8_lossy(&out).into_owned()
}

pub(crate) fn json_response(code: StatusCode, value: &Value) -> Response {
    match serde_json::to_vec(value) {
        Ok(bytes) => (code, [(header::CONTENT_TYPE, "application/json")], bytes).into_response(),
        Err(e) => {
            tracing::error!(error = %e, "serializing a response failed");
            (StatusCode::INTERNAL_SERVER_ERROR, "serialization failed").into_response()
        }
    }
}

pub(crate) fn error_response(e: &ApiError) -> Response {
    let code = StatusCode::from_u16(e.code).unwrap_or(StatusCode::INTERNAL_SERVER_ERROR);
    let mut resp = json_response(code, &e.to_status());
    if let Some(secs) = e.details.retry_after_seconds
        && let Ok(v) = HeaderValue::from_str(&secs.to_string())
    {
        resp.headers_mut().insert(header::RETRY_AFTER, v);
    }
    resp
}

fn with_warnings(mut resp: Response, warnings: &[String]) -> Response {
    for w in warnings {
        let text = format!("299 - {}", serde_json::Value::String(w.clone()));
        if let Ok(v) = HeaderValue::from_str(&text) {
            resp.headers_mut().append(header::WARNING, v);
        }
    }
    resp
}

/// A resolved resource path.
struct Target {
    res: Arc<ResourceInfo>,
    namespace: Option<String>,
    name: Option<String>,
    sub: Option<String>,
    watch_path: bool,
}

async fn dispatch(server: &Arc<Server>, ctx: &Ctx) -> Result<Response, ApiError> {
    let seg: Vec<&str> = ctx.segments.iter().map(String::as_str).collect();
    match seg.as_slice() {
        ["version"] => return Ok(json_response(StatusCode::OK, &discovery::version(server))),
        ["healthz"] | ["livez"] | ["readyz"] => {
            return Ok(
                (StatusCode::OK, [(header::CONTENT_TYPE, "text/plain")], "ok").into_response(),
            );
        }
        ["api"] => return Ok(json_response(StatusCode::OK, &discovery::api_versions())),
        ["apis"] => {
            return Ok(json_response(
                StatusCode::OK,
                &discovery::api_group_list(server),
            ));
        }
        ["api", "v1"] => {
            return discovery::resource_list(server, "", "v1")
                .map(|v| json_response(StatusCode::OK, &v));
        }
        ["apis", group] => {
            return discovery::api_group(server, group).map(|v| json_response(StatusCode::OK, &v));
        }
        ["apis", group, version] => {
            return discovery::resource_list(server, group, version)
                .map(|v| json_response(StatusCode::OK, &v));
        }
        ["openapi", "v2"] => return Err(ApiError::not_found_path()),
        ["openapi", "v3"] => {
            return Ok(json_response(
                StatusCode::OK,
                &discovery::openapi_v3_root(server),
            ));
        }
        ["openapi", "v3", rest @ ..] => {
            return discovery::openapi_v3_doc(server, rest)
                .map(|v| json_response(StatusCode::OK, &v));
        }
        _ => {}
    }
    let target = resolve(server, &seg)?;
    let verb = verb_of(&ctx.method, ctx, &target)?;
    if let Some(err) = server
        .faults
        .check(verb, &target.res.plural, target.sub.as_deref())
    {
        return Err(err);
    }
    match verb {
        Verb::Watch => watch_request(server, ctx, &target),
        Verb::List => list(server, ctx, &target),
        Verb::Get => get(server, ctx, &target),
        Verb::Create => create(server, ctx, &target),
        Verb::Update => update(server, ctx, &target),
        Verb::Patch => patch(server, ctx, &target),
        Verb::Delete => delete(server, ctx, &target),
        Verb::DeleteCollection => delete_collection(server, ctx, &target),
    }
}

fn verb_of(method: &Method, ctx: &Ctx, t: &Target) -> Result<Verb, ApiError> {
    let watch_q = ctx.q("watch").is_some_and(|v| v == "true" || v == "1");
    let verb = match (method.as_str(), t.name.is_some(), t.sub.as_deref()) {
        ("GET", _, _) if t.watch_path || watch_q => Verb::Watch,
        ("GET", false, None) => Verb::List,
        ("GET", true, _) => Verb::Get,
        ("POST", false, None) => Verb::Create,
        ("POST", true, Some("binding" | "eviction")) => Verb::Create,
        ("PUT", true, _) => Verb::Update,
        ("PATCH", true, _) => Verb::Patch,
        ("DELETE", true, None) => Verb::Delete,
        ("DELETE", false, None) => Verb::DeleteCollection,
        (m, _, _) => {
            return Err(ApiError::method_not_allowed(format!(
                "the server does not allow this method on the requested resource ({m})"
            )));
        }
    };
    Ok(verb)
}

fn resolve(server: &Server, seg: &[&str]) -> Result<Target, ApiError> {
    let (group, version, rest) = match seg {
        ["api", version, rest @ ..] => ("", *version, rest),
        ["apis", group, version, rest @ ..] => (*group, *version, rest),
        _ => return Err(ApiError::not_found_path()),
    };
    let (watch_path, rest) = match rest {
        ["watch", rest @ ..] => (true, rest),
        _ => (false, rest),
    };
    let lookup = |plural: &str| {
        server
            .registry
            .get(group, version, plural)
            .ok_or_else(ApiError::not_found_path)
    };
    let namespaced_target = |ns: &str,
                             plural: &str,
                             name: Option<&str>,
                             sub: Option<&str>|
     -> Result<Target, ApiError> {
        let res = lookup(plural)?;
        if !res.namespaced {
            return Err(ApiError::not_found_path());
        }
        Ok(Target {
            res,
            namespace: Some(ns.to_string()),
            name: name.map(str::to_string),
            sub: sub.map(str::to_string),
            watch_path,
        })
    };
    let cluster_target =
        |plural: &str, name: Option<&str>, sub: Option<&str>| -> Result<Target, ApiError> {
            let res = lookup(plural)?;
            if res.namespaced && name.is_some() {
                return Err(ApiError::not_found_path());
            }
            Ok(Target {
                res,
                namespace: None,
                name: name.map(str::to_string),
                sub: sub.map(str::to_string),
                watch_path,
            })
        };
    let target = match rest {
        [plural] => cluster_target(plural, None, None)?,
        ["namespaces", ns, sub @ ("status" | "finalize")] => {
            cluster_target("namespaces", Some(ns), Some(sub))?
        }
        ["namespaces", ns, plural] => namespaced_target(ns, plural, None, None)?,
        ["namespaces", ns, plural, name] => namespaced_target(ns, plural, Some(name), None)?,
        ["namespaces", ns, plural, name, sub] => {
            namespaced_target(ns, plural, Some(name), Some(sub))?
        }
        [plural, name] => cluster_target(plural, Some(name), None)?,
        [plural, name, sub] => cluster_target(plural, Some(name), Some(sub))?,
        _ => return Err(ApiError::not_found_path()),
    };
    if let Some(sub) = &target.sub
        && !target.res.subresources.iter().any(|s| s.name() == sub)
    {
        return Err(ApiError::not_found_path());
    }
    Ok(target)
}

fn ns_of(t: &Target) -> &str {
    t.namespace.as_deref().unwrap_or("")
}

fn filter_for(t: &Target, ctx: &Ctx) -> Result<ObjectFilter, ApiError> {
    let mut fs = ctx.q("fieldSelector").unwrap_or("").to_string();
    if let Some(name) = &t.name {
        // `/watch/.../<name>` is a watch with a name field selector.
        let term = format!("metadata.name={name}");
        fs = if fs.is_empty() {
            term
        } else {
            format!("{fs},{term}")
        };
    }
    ObjectFilter::new(
        t.res.clone(),
        t.namespace.clone(),
        ctx.q("labelSelector"),
        Some(&fs),
    )
}

fn parse_rv(s: &str) -> Result<u64, ApiError> {
    s.parse::<u64>()
        .map_err(|_| ApiError::bad_request(format!("invalid resource version: {s:?}")))
}

// ----------------------------------------------------------------------------------------------
// Reads
// ----------------------------------------------------------------------------------------------

fn get(server: &Arc<Server>, ctx: &Ctx, t: &Target) -> Result<Response, ApiError> {
    let name = t.name.as_deref().unwrap_or("");
    let stored = server.store.get_stored(&t.res.storage, ns_of(t), name)?;
    if t.sub.as_deref() == Some("scale") {
        return Ok(json_response(
            StatusCode::OK,
            &subresource::scale_of(&t.res, &stored.value()?)?,
        ));
    }
    if ctx.wants_table() {
        let tbl = table::render(
            &t.res,
            &[Arc::new(stored.value()?)],
            table::IncludeObject::parse(ctx.q("includeObject")),
            server.config.clock.now(),
            None,
        );
        return Ok(json_response(StatusCode::OK, &tbl));
    }
    Ok(bytes_response(
        StatusCode::OK,
        present_json(&t.res, &stored)?,
    ))
}

#[derive(Debug, serde::Serialize, serde::Deserialize)]
struct ContinueToken {
    rv: u64,
    ns: String,
    name: String,
}

fn encode_continue(tok: &ContinueToken) -> String {
    let raw = serde_json::to_string(tok).unwrap_or_default();
    raw.bytes().map(|b| format!("{b:02x}")).collect()
}

fn decode_continue(s: &str) -> Result<ContinueToken, ApiError> {
    let bad = || ApiError::bad_request(format!("invalid continue token: {s:?}"));
    if !s.len().is_multiple_of(2) {
        return Err(bad());
    }
    let bytes: Result<Vec<u8>, _> = (0..s.len())
        .step_by(2)
        .map(|i| u8::from_str_radix(s.get(i..i + 2).unwrap_or("zz"), 16))
        .collect();
    let bytes = bytes.map_err(|_| bad())?;
    serde_json::from_slice(&bytes).map_err(|_| bad())
}

fn list(server: &Arc<Server>, ctx: &Ctx, t: &Target) -> Result<Response, ApiError> {
    let filter = filter_for(t, ctx)?;
    let limit: Option<usize> = ctx
        .q("limit")
        .map(|l| {
            l.parse::<usize>()
                .map_err(|_| ApiError::bad_request(format!("invalid limit: {l}")))
        })
        .transpose()?
        .filter(|l| *l > 0);
    let store = &server.store;
    let (after, list_rv) = match ctx.q("continue").filter(|c| !c.is_empty()) {
        Some(c) => {
            let tok = decode_continue(c)?;
            if tok.rv < store.compacted_rv(&t.res.storage) {
                return Err(ApiError::expired(
                    "The provided continue parameter is too old to display a consistent list result. You can start a new list without the continue parameter, or use the continue token in this response to retrieve the remainder of the results. Continuing with the provided token results in an inconsistent list - objects that were created, modified, or deleted between the time the first chunk was returned and now may show up in the list.",
                ));
            }
            (Some((tok.ns, tok.name)), Some(tok.rv))
        }
        None => (None, None),
    };
    if list_rv.is_none()
        && let Some(rv) = ctx
            .q("resourceVersion")
            .filter(|r| !r.is_empty() && *r != "0")
    {
        let rv = parse_rv(rv)?;
        let current = store.current_rv();
        match ctx.q("resourceVersionMatch") {
            Some("Exact") if rv != current => {
                return Err(ApiError::expired(format!(
                    "too old resource version: {rv} ({current})"
                )));
            }
            _ if rv > current => {
                return Err(ApiError::timeout(format!(
                    "Too large resource version: {rv}, current: {current}"
                )));
            }
            _ => {}
        }
    }
    let (items, rv, remaining) = match limit {
        Some(limit) if filter.selects_all_in_namespace() => {
            let page = store.list_limited(
                &t.res.storage,
                t.namespace.as_deref(),
                after.as_ref(),
                limit,
            )?;
            (page.items, list_rv.unwrap_or(page.rv), page.remaining)
        }
        _ => {
            let page = store.list(&t.res.storage, t.namespace.as_deref(), after.as_ref())?;
            let mut items: Vec<Arc<StoredObject>> = Vec::new();
            let mut remaining = 0usize;
            for obj in page.items {
                if !filter.matches(&obj) {
                    continue;
                }
                if let Some(limit) = limit
                    && items.len() >= limit
                {
                    remaining += 1;
                    continue;
                }
                items.push(obj);
            }
            (items, list_rv.unwrap_or(page.rv), remaining)
        }
    };
    let mut next: Option<Key> = None;
    if remaining > 0
        && let Some(last) = items.last()
    {
        next = Some((
            last.meta().namespace.to_string(),
            last.meta().name.to_string(),
        ));
    }
    let mut meta = serde_json::Map::new();
    meta.insert("resourceVersion".into(), json!(rv.to_string()));
    if let Some((ns, name)) = next {
        meta.insert(
            "continue".into(),
            json!(encode_continue(&ContinueToken { rv, ns, name })),
        );
        meta.insert("remainingItemCount".into(), json!(remaining));
    }
    if ctx.wants_table() {
        let values = items
            .iter()
            .map(|i| i.value().map(Arc::new))
            .collect::<Result<Vec<_>, _>>()?;
        let tbl = table::render(
            &t.res,
            &values,
            table::IncludeObject::parse(ctx.q("includeObject")),
            server.config.clock.now(),
            Some(Value::Object(meta)),
        );
        return Ok(json_response(StatusCode::OK, &tbl));
    }
    // The body is the stored bytes concatenated, streamed in bounded chunks: no serializing, and
    // no second copy of a 100+ MiB list held in memory while it is sent.
    let mut head: Vec<u8> = Vec::with_capacity(256);
    head.extend_from_slice(b"{\"kind\":");
    push_json(&mut head, &json!(format!("{}List", t.res.kind)))?;
    head.extend_from_slice(b",\"apiVersion\":");
    push_json(&mut head, &json!(t.res.api_version()))?;
    head.extend_from_slice(b",\"metadata\":");
    push_json(&mut head, &Value::Object(meta))?;
    head.extend_from_slice(b",\"items\":[");
    let chunks = ListChunks {
        res: t.res.clone(),
        items: items.into_iter(),
        pending: head,
        first: true,
        done: false,
    };
    let stream = futures_util::stream::iter(chunks).map(Ok::<Bytes, std::convert::Infallible>);
    Ok(body_response(StatusCode::OK, Body::from_stream(stream)))
}

/// Bytes per chunk of a streamed list body.
const LIST_CHUNK: usize = 256 * 1024;

/// The chunks of a list body: the head, the items' JSON separated by commas, the tail.
struct ListChunks {
    res: Arc<ResourceInfo>,
    items: std::vec::IntoIter<Arc<StoredObject>>,
    pending: Vec<u8>,
    first: bool,
    done: bool,
}

impl Iterator for ListChunks {
    type Item = Bytes;

    fn next(&mut self) -> Option<Bytes> {
        if self.done {
            return None;
        }
        while self.pending.len() < LIST_CHUNK {
            let Some(item) = self.items.next() else {
                self.pending.extend_from_slice(b"]}");
                self.done = true;
                break;
            };
            match present_json(&self.res, &item) {
                Ok(json) => {
                    if !self.first {
                        self.pending.push(b',');
                    }
                    self.first = false;
                    self.pending.extend_from_slice(&json);
                }
                Err(e) => {
                    // The status line is gone; a truncated body makes the client fail the list.
                    tracing::error!(error = %e, "encoding a list item failed; ending the body");
                    self.done = true;
                    break;
                }
            }
        }
        Some(Bytes::from(std::mem::replace(
            &mut self.pending,
            Vec::with_capacity(LIST_CHUNK + 4096),
        )))
    }
}

fn push_json(buf: &mut Vec<u8>, v: &Value) -> Result<(), ApiError> {
    serde_json::to_writer(buf, v).map_err(|e| ApiError::internal(format!("serializing: {e}")))
}

fn watch_request(server: &Arc<Server>, ctx: &Ctx, t: &Target) -> Result<Response, ApiError> {
    let filter = filter_for(t, ctx)?;
    let send_initial = ctx.q("sendInitialEvents").is_some_and(|v| v == "true");
    let bookmarks = ctx.q("allowWatchBookmarks").is_some_and(|v| v == "true");
    if send_initial && ctx.q("resourceVersionMatch") != Some("NotOlderThan") {
        return Err(ApiError::invalid(
            "meta.k8s.io",
            "ListOptions",
            "",
            vec![super::error::StatusCause {
                reason: "FieldValueForbidden".into(),
                message: "Forbidden: sendInitialEvents is forbidden for watch unless resourceVersionMatch is set to NotOlderThan".into(),
                field: "resourceVersionMatch".into(),
            }],
        ));
    }
    let rv = ctx.q("resourceVersion").unwrap_or("");
    let from = if send_initial || rv.is_empty() || rv == "0" {
        WatchFrom::Snapshot
    } else {
        WatchFrom::Rv(parse_rv(rv)?)
    };
    let timeout = ctx
        .q("timeoutSeconds")
        .and_then(|s| s.parse::<u64>().ok())
        .map(std::time::Duration::from_secs)
        .unwrap_or(server.config.default_watch_timeout);
    let params = watch::WatchParams {
        min_rv: match from {
            WatchFrom::Rv(n) => n,
            WatchFrom::Snapshot => 0,
        },
        from,
        send_initial_events: send_initial,
        bookmarks,
        timeout,
        table: ctx.wants_table(),
    };
    Ok(watch::serve(server.clone(), t.res.clone(), filter, params))
}

// ----------------------------------------------------------------------------------------------
// Writes
// ----------------------------------------------------------------------------------------------

/// `fieldValidation` modes.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum FieldValidation {
    Strict,
    Warn,
    Ignore,
}

fn field_validation(ctx: &Ctx) -> Result<FieldValidation, ApiError> {
    match ctx.q("fieldValidation") {
        None | Some("") | Some("Warn") => Ok(FieldValidation::Warn),
        Some("Strict") => Ok(FieldValidation::Strict),
        Some("Ignore") => Ok(FieldValidation::Ignore),
        Some(other) => Err(ApiError::bad_request(format!(
            "fieldValidation: Unsupported value: {other:?}: supported values: \"Ignore\", \"Strict\", \"Warn\""
        ))),
    }
}

fn parse_body(ctx: &Ctx) -> Result<Value, ApiError> {
    let ct = ctx.content_type();
    let value: Value = if ct.contains("protobuf") {
        super::protobuf::decode(&ctx.body)?
    } else if ct.contains("yaml") {
        let text = std::str::from_utf8(&ctx.body)
            .map_err(|e| ApiError::bad_request(format!("body is not UTF-8: {e}")))?;
        serde_yaml_ng::from_str(text)
            .map_err(|e| ApiError::bad_request(format!("error decoding YAML: {e}")))?
    } else {
        serde_json::from_slice(&ctx.body).map_err(|e| {
            ApiError::bad_request(format!("couldn't get version/kind; json parse error: {e}"))
        })?
    };
    if !value.is_object() {
        return Err(ApiError::bad_request("the body must be a JSON object"));
    }
    Ok(value)
}

/// Checks apiVersion/kind/namespace of a body against the URL and fills them in.
fn check_type_and_namespace(t: &Target, obj: &mut Value) -> Result<(), ApiError> {
    let api_version = t.res.api_version();
    if let Some(v) = str_at(obj, &["apiVersion"])
        && v != api_version
    {
        return Err(ApiError::bad_request(format!(
            "the API version in the data ({v}) does not match the expected API version ({api_version})"
        )));
    }
    if let Some(k) = str_at(obj, &["kind"])
        && k != t.res.kind
    {
        return Err(ApiError::bad_request(format!(
            "the kind in the data ({k}) does not match the expected kind ({})",
            t.res.kind
        )));
    }
    if let Some(m) = obj.as_object_mut() {
        m.insert("apiVersion".into(), json!(api_version));
        m.insert("kind".into(), json!(t.res.kind));
    }
    if t.res.namespaced {
        let ns = ns_of(t);
        let body_ns = object::namespace(obj);
        if !body_ns.is_empty() && body_ns != ns {
            return Err(ApiError::bad_request(
                "the namespace of the provided object does not match the namespace sent on the request",
            ));
        }
    }
    Ok(())
}

/// Admission: decoding checks, defaults and validation, for built-ins and custom resources.
/// Returns warnings.
pub(crate) fn admit(
    server: &Server,
    res: &ResourceInfo,
    obj: &mut Value,
    old: Option<&Value>,
    mode: FieldValidation,
) -> Result<Vec<String>, ApiError> {
    let unknown = if res.is_custom() {
        custom::admit(server, res, obj, old)?
    } else {
        builtin::admit(res, obj, old)?
    };
    let mut warnings = Vec::new();
    if !unknown.is_empty() {
        match mode {
            FieldValidation::Strict => {
                let list: Vec<String> = unknown
                    .iter()
                    .map(|f| format!("unknown field \"{f}\""))
                    .collect();
                return Err(ApiError::bad_request(format!(
                    "strict decoding error: {}",
                    list.join(", ")
                )));
            }
            FieldValidation::Warn => {
                warnings.extend(unknown.iter().map(|f| format!("unknown field \"{f}\"")));
            }
            FieldValidation::Ignore => {}
        }
    }
    Ok(warnings)
}

fn create(server: &Arc<Server>, ctx: &Ctx, t: &Target) -> Result<Response, ApiError> {
    match t.sub.as_deref() {
        Some("binding") => {
            return subresource::bind(
                server,
                ctx,
                &t.res,
                ns_of(t),
                t.name.as_deref().unwrap_or(""),
            );
        }
        Some("eviction") => {
            return subresource::evict(
                server,
                ctx,
                &t.res,
                ns_of(t),
                t.name.as_deref().unwrap_or(""),
            );
        }
        _ => {}
    }
    let mode = field_validation(ctx)?;
    let mut obj = parse_body(ctx)?;
    check_type_and_namespace(t, &mut obj)?;
    let (created, warnings) = create_object(
        server,
        &t.res,
        ns_of(t),
        obj,
        mode,
        ctx.dry_run(),
        Some(ctx),
    )?;
    Ok(with_warnings(created_response(&t.res, &created), &warnings))
}

/// The `201 Created` answer: the stored bytes when the object was stored in the version asked
/// for (what serializing it again would give), else the object converted.
pub(crate) fn created_response(res: &ResourceInfo, created: &Created) -> Response {
    if let Some(stored) = &created.stored
        && let Ok(bytes) = present_json(res, stored)
    {
        return bytes_response(StatusCode::CREATED, bytes);
    }
    json_response(StatusCode::CREATED, &present(res, &created.value))
}

/// A created object: as a tree, and as stored (absent on a dry run).
pub(crate) struct Created {
    /// The object as created.
    pub value: Arc<Value>,
    /// Its stored form.
    pub stored: Option<Arc<StoredObject>>,
}

/// Admits and stores a new object (also used by server-side apply on a missing object).
pub(crate) fn create_object(
    server: &Server,
    res: &ResourceInfo,
    ns: &str,
    obj: Value,
    mode: FieldValidation,
    dry_run: bool,
    track: Option<&Ctx>,
) -> Result<(Created, Vec<String>), ApiError> {
    let mut obj = to_storage(res, obj);
    let warnings = admit(server, res, &mut obj, None, mode)?;
    if let Some(ctx) = track {
        obj = subresource::track_managed_fields(server, ctx, res, None, obj, None)?;
    }
    let (value, stored) =
        server
            .store
            .create_stored(&res.storage, ns, obj, &WriteOptions { dry_run })?;
    if !dry_run {
        custom::after_write(server, res, &value)?;
    }
    Ok((Created { value, stored }, warnings))
}

fn target_of(t: &Target) -> UpdateTarget {
    match t.sub.as_deref() {
        Some("status") => UpdateTarget::Status,
        _ => UpdateTarget::Main,
    }
}

fn update(server: &Arc<Server>, ctx: &Ctx, t: &Target) -> Result<Response, ApiError> {
    let name = t.name.clone().unwrap_or_default();
    if t.sub.as_deref() == Some("scale") {
        let body = parse_body(ctx)?;
        return subresource::update_scale(
            server,
            &t.res,
            ns_of(t),
            &name,
            ScaleChange::Replace(body),
            ctx.dry_run(),
        );
    }
    let mode = field_validation(ctx)?;
    let mut body = parse_body(ctx)?;
    check_type_and_namespace(t, &mut body)?;
    let body_name = object::name(&body);
    if body_name != name {
        return Err(ApiError::bad_request(format!(
            "the name of the object ({body_name}) does not match the name on the URL ({name})"
        )));
    }
    let body = to_storage(&t.res, body);
    let target = target_of(t);
    let mut warnings = Vec::new();
    let res = t.res.clone();
    let updated = server.store.update_with(
        &t.res.storage,
        ns_of(t),
        &name,
        target,
        &WriteOptions {
            dry_run: ctx.dry_run(),
        },
        |current| {
            let mut merged = prepare_update(&res.table_meta(), current, body.clone(), target)?;
            let rv = object::resource_version(&body).to_string();
            object::set_meta(
                &mut merged,
                "resourceVersion",
                if rv.is_empty() { None } else { Some(json!(rv)) },
            );
            warnings = admit(server, &res, &mut merged, Some(current), mode)?;
            subresource::track_managed_fields(
                server,
                ctx,
                &res,
                Some(current),
                merged,
                t.sub.as_deref(),
            )
        },
    )?;
    if !ctx.dry_run() {
        custom::after_write(server, &t.res, &updated)?;
    }
    Ok(with_warnings(
        json_response(StatusCode::OK, &present(&t.res, &updated)),
        &warnings,
    ))
}

/// A change to a scale subresource.
pub(crate) enum ScaleChange {
    /// A full Scale object (PUT).
    Replace(Value),
    /// A patch to the Scale object.
    Patch(PatchKind, Value),
}

/// The PATCH content types.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum PatchKind {
    Json,
    Merge,
    Strategic,
    Apply,
}

fn patch_kind(ct: &str) -> Result<PatchKind, ApiError> {
    let base = ct.split(';').next().unwrap_or("").trim();
    match base {
        "application/json-patch+json" => Ok(PatchKind::Json),
        "application/merge-patch+json" => Ok(PatchKind::Merge),
        "application/strategic-merge-patch+json" => Ok(PatchKind::Strategic),
        "application/apply-patch+yaml" | "application/apply-patch+cbor" => Ok(PatchKind::Apply),
        other => Err(ApiError::unsupported_media_type(other)),
    }
}

/// Applies a non-apply patch to a document.
pub(crate) fn apply_patch(
    res: &ResourceInfo,
    doc: &Value,
    kind: PatchKind,
    patch: &Value,
) -> Result<Value, ApiError> {
    use karpenter_apimachinery::patch::{json_patch, merge_patch, strategic_merge_patch};
    let bad = |e: karpenter_apimachinery::patch::PatchError| {
        ApiError::custom(422, "Invalid", e.to_string())
    };
    match kind {
        PatchKind::Json => json_patch(doc, patch).map_err(bad),
        PatchKind::Merge => Ok(merge_patch(doc, patch)),
        PatchKind::Strategic => {
            strategic_merge_patch(doc, patch, subresource::schema_for(res).as_ref()).map_err(bad)
        }
        PatchKind::Apply => Err(ApiError::internal("apply patches are not plain patches")),
    }
}

fn parse_patch_body(ctx: &Ctx, kind: PatchKind) -> Result<Value, ApiError> {
    if kind == PatchKind::Apply {
        let text = std::str::from_utf8(&ctx.body)
            .map_err(|e| ApiError::bad_request(format!("body is not UTF-8: {e}")))?;
        return serde_yaml_ng::from_str(text)
            .map_err(|e| ApiError::bad_request(format!("error decoding YAML: {e}")));
    }
    serde_json::from_slice(&ctx.body)
        .map_err(|e| ApiError::bad_request(format!("error decoding patch: {e}")))
}

fn patch(server: &Arc<Server>, ctx: &Ctx, t: &Target) -> Result<Response, ApiError> {
    let kind = patch_kind(ctx.content_type())?;
    if kind == PatchKind::Strategic && t.res.is_custom() {
        return Err(ApiError::unsupported_media_type(ctx.content_type()));
    }
    let name = t.name.clone().unwrap_or_default();
    let body = parse_patch_body(ctx, kind)?;
    if t.sub.as_deref() == Some("scale") {
        return subresource::update_scale(
            server,
            &t.res,
            ns_of(t),
            &name,
            ScaleChange::Patch(kind, body),
            ctx.dry_run(),
        );
    }
    let mode = field_validation(ctx)?;
    let target = target_of(t);
    if kind == PatchKind::Apply {
        return subresource::server_side_apply(
            server,
            ctx,
            &t.res,
            ns_of(t),
            &name,
            target,
            body,
            mode,
        );
    }
    let res = t.res.clone();
    let mut warnings = Vec::new();
    let updated = server.store.update_with(
        &t.res.storage,
        ns_of(t),
        &name,
        target,
        &WriteOptions {
            dry_run: ctx.dry_run(),
        },
        |current| {
            let shown = present(&res, current);
            let patched = apply_patch(&res, &shown, kind, &body)?;
            let patched = to_storage(&res, patched);
            if object::name(&patched) != name {
                return Err(ApiError::bad_request(format!(
                    "the name of the object ({}) does not match the name on the URL ({name})",
                    object::name(&patched)
                )));
            }
            let mut merged = prepare_update(&res.table_meta(), current, patched, target)?;
            warnings = admit(server, &res, &mut merged, Some(current), mode)?;
            subresource::track_managed_fields(
                server,
                ctx,
                &res,
                Some(current),
                merged,
                t.sub.as_deref(),
            )
        },
    )?;
    if !ctx.dry_run() {
        custom::after_write(server, &t.res, &updated)?;
    }
    Ok(with_warnings(
        json_response(StatusCode::OK, &present(&t.res, &updated)),
        &warnings,
    ))
}

fn delete_options(ctx: &Ctx) -> Result<DeleteOptions, ApiError> {
    let body: Value = if ctx.body.is_empty() {
        json!({})
    } else {
        serde_json::from_slice(&ctx.body)
            .map_err(|e| ApiError::bad_request(format!("decoding DeleteOptions: {e}")))?
    };
    let grace = body
        .get("gracePeriodSeconds")
        .and_then(Value::as_i64)
        .or_else(|| ctx.q("gracePeriodSeconds").and_then(|s| s.parse().ok()));
    let propagation = body
        .get("propagationPolicy")
        .and_then(Value::as_str)
        .or(ctx.q("propagationPolicy"))
        .map(|p| match p {
            "Foreground" => Ok(Propagation::Foreground),
            "Background" => Ok(Propagation::Background),
            "Orphan" => Ok(Propagation::Orphan),
            other => Err(ApiError::bad_request(format!(
                "propagationPolicy: Unsupported value: {other:?}"
            ))),
        })
        .transpose()?;
    let propagation = match (
        propagation,
        body.get("orphanDependents").and_then(Value::as_bool),
    ) {
        (Some(p), _) => Some(p),
        (None, Some(true)) => Some(Propagation::Orphan),
        (None, _) => None,
    };
    let dry_run = ctx.dry_run()
        || body
            .get("dryRun")
            .and_then(Value::as_array)
            .is_some_and(|a| a.iter().any(|v| v == "All"));
    Ok(DeleteOptions {
        grace_period_seconds: grace,
        propagation,
        precondition_uid: str_at(&body, &["preconditions", "uid"]).map(str::to_string),
        precondition_rv: str_at(&body, &["preconditions", "resourceVersion"]).map(str::to_string),
        dry_run,
    })
}

fn delete(server: &Arc<Server>, ctx: &Ctx, t: &Target) -> Result<Response, ApiError> {
    let opts = delete_options(ctx)?;
    let name = t.name.clone().unwrap_or_default();
    let outcome = server
        .store
        .delete(&t.res.storage, ns_of(t), &name, &opts)?;
    if outcome.removed && !opts.dry_run {
        custom::after_delete(server, &t.res, &outcome.object);
    }
    if outcome.removed && !t.res.is_custom() {
        // Built-in storage answers an immediate deletion with a Success status, like apiserver.
        let mut details = serde_json::Map::new();
        details.insert("name".into(), json!(name));
        if !t.res.group.is_empty() {
            details.insert("group".into(), json!(t.res.group));
        }
        details.insert("kind".into(), json!(t.res.plural));
        details.insert("uid".into(), json!(object::uid(&outcome.object)));
        return Ok(json_response(
            StatusCode::OK,
            &success_status(Some(Value::Object(details))),
        ));
    }
    Ok(json_response(
        StatusCode::OK,
        &present(&t.res, &outcome.object),
    ))
}

fn delete_collection(server: &Arc<Server>, ctx: &Ctx, t: &Target) -> Result<Response, ApiError> {
    let filter = filter_for(t, ctx)?;
    let opts = delete_options(ctx)?;
    let page = server
        .store
        .list(&t.res.storage, t.namespace.as_deref(), None)?;
    let mut deleted = Vec::new();
    for obj in page.items.iter().filter(|o| filter.matches(o)) {
        match server.store.delete(
            &t.res.storage,
            &obj.meta().namespace,
            &obj.meta().name,
            &opts,
        ) {
            Ok(out) => {
                if out.removed && !opts.dry_run {
                    custom::after_delete(server, &t.res, &out.object);
                }
                deleted.push(present(&t.res, &out.object).into_owned());
            }
            Err(e) if e.code == 404 => {}
            Err(e) => return Err(e),
        }
    }
    let list = json!({
        "kind": format!("{}List", t.res.kind),
        "apiVersion": t.res.api_version(),
        "metadata": {"resourceVersion": server.store.current_rv().to_string()},
        "items": deleted,
    });
    Ok(json_response(StatusCode::OK, &list))
}

/// A JSON response from already serialized bytes.
pub(crate) fn bytes_response(code: StatusCode, bytes: Bytes) -> Response {
    (code, [(header::CONTENT_TYPE, "application/json")], bytes).into_response()
}

pub(crate) fn body_response(code: StatusCode, body: Body) -> Response {
    let mut resp = Response::new(body);
    *resp.status_mut() = code;
    resp.headers_mut().insert(
        header::CONTENT_TYPE,
        HeaderValue::from_static("application/json"),
    );
    resp
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn continue_tokens_round_trip() {
        let tok = ContinueToken {
            rv: 42,
            ns: "default".into(),
            name: "a".into(),
        };
        let s = encode_continue(&tok);
        let back = decode_continue(&s).unwrap();
        assert_eq!(
            (back.rv, back.ns.as_str(), back.name.as_str()),
            (42, "default", "a")
        );
        assert_eq!(decode_continue("zz").unwrap_err().code, 400);
    }

    #[test]
    fn percent_decoding() {
        assert_eq!(percent_decode("a%2Fb"), "a/b");
        assert_eq!(percent_decode("plain"), "plain");
    }
}
