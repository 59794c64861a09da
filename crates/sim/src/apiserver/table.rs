//! Server-side printing: `meta.k8s.io/v1` Tables for `kubectl get`, with kubectl's familiar
//! columns for built-ins and each CRD's `additionalPrinterColumns`.

use std::sync::Arc;

use chrono::{DateTime, Utc};
use serde_json::{Map, Value, json};

use super::filter::present;
use super::object::{self, at, parse_time, str_at};
use super::registry::{PrinterColumn, ResourceInfo};

/// The `includeObject` parameter.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum IncludeObject {
    /// No object per row.
    None,
    /// `PartialObjectMetadata` per row (the default).
    Metadata,
    /// The full object per row.
    Object,
}

impl IncludeObject {
    /// Parses the query value.
    pub fn parse(v: Option<&str>) -> Self {
        match v {
            Some("None") => IncludeObject::None,
            Some("Object") => IncludeObject::Object,
            _ => IncludeObject::Metadata,
        }
    }
}

/// Kubernetes' `HumanDuration`: "45s", "3m20s", "5h", "2d3h", "3y".
pub fn human_duration(d: chrono::Duration) -> String {
    let seconds = d.num_seconds();
    if seconds < -1 {
        return "<invalid>".into();
    }
    if seconds < 0 {
        return "0s".into();
    }
    if seconds < 60 * 2 {
        return format!("{seconds}s");
    }
    let minutes = seconds / 60;
    if minutes < 10 {
        let s = seconds % 60;
        return if s == 0 {
            format!("{minutes}m")
        } else {
            format!("{minutes}m{s}s")
        };
    }
    if minutes < 60 * 3 {
        return format!("{minutes}m");
    }
    let hours = minutes / 60;
    if hours < 8 {
        let m = minutes % 60;
        return if m == 0 {
            format!("{hours}h")
        } else {
            format!("{hours}h{m}m")
        };
    }
    if hours < 48 {
        return format!("{hours}h");
    }
    if hours < 24 * 8 {
        let h = hours % 24;
        return if h == 0 {
            format!("{}d", hours / 24)
        } else {
            format!("{}d{h}h", hours / 24)
        };
    }
    if hours < 24 * 365 * 2 {
        return format!("{}d", hours / 24);
    }
    if hours < 24 * 365 * 8 {
        let dy = (hours / 24) % 365;
        return if dy == 0 {
            format!("{}y", hours / 24 / 365)
        } else {
            format!("{}y{dy}d", hours / 24 / 365)
        };
    }
    format!("{}y", hours / 24 / 365)
}

fn age(obj: &Value, path: &[&str], now: DateTime<Utc>) -> Value {
    match str_at(obj, path).and_then(parse_time) {
        Some(t) => json!(human_duration(now - t)),
        None => json!("<unknown>"),
    }
}

struct Col {
    name: &'static str,
    type_: &'static str,
    format: &'static str,
    priority: i64,
}

const fn col(name: &'static str, type_: &'static str, priority: i64) -> Col {
    Col {
        name,
        type_,
        format: "",
        priority,
    }
}

const NAME: Col = Col {
    name: "Name",
    type_: "string",
    format: "name",
    priority: 0,
};
const AGE: Col = col("Age", "string", 0);

fn none_if_empty(s: &str) -> Value {
    if s.is_empty() {
        json!("<none>")
    } else {
        json!(s)
    }
}

fn int_at(obj: &Value, path: &[&str]) -> i64 {
    object::i64_at(obj, path).unwrap_or(0)
}

fn containers_images(obj: &Value) -> (String, String) {
    let cs = at(obj, &["spec", "template", "spec", "containers"])
        .and_then(Value::as_array)
        .cloned()
        .unwrap_or_default();
    let names: Vec<&str> = cs.iter().filter_map(|c| str_at(c, &["name"])).collect();
    let images: Vec<&str> = cs.iter().filter_map(|c| str_at(c, &["image"])).collect();
    (names.join(","), images.join(","))
}

fn selector_string(obj: &Value) -> String {
    let m = object::string_map(at(obj, &["spec", "selector", "matchLabels"]));
    m.iter()
        .map(|(k, v)| format!("{k}={v}"))
        .collect::<Vec<_>>()
        .join(",")
}

fn pod_status(pod: &Value) -> String {
    let mut reason = str_at(pod, &["status", "reason"])
        .or_else(|| str_at(pod, &["status", "phase"]))
        .unwrap_or("Pending")
        .to_string();
    if let Some(statuses) = at(pod, &["status", "containerStatuses"]).and_then(Value::as_array) {
        for cs in statuses.iter().rev() {
            if let Some(r) = str_at(cs, &["state", "waiting", "reason"]).filter(|r| !r.is_empty()) {
                reason = r.to_string();
            } else if let Some(r) =
                str_at(cs, &["state", "terminated", "reason"]).filter(|r| !r.is_empty())
            {
                reason = r.to_string();
            }
        }
    }
    if object::is_deleting(pod) {
        reason = "Terminating".into();
    }
    reason
}

fn node_status(node: &Value) -> String {
    let ready = at(node, &["status", "conditions"])
        .and_then(Value::as_array)
        .and_then(|cs| cs.iter().find(|c| str_at(c, &["type"]) == Some("Ready")))
        .and_then(|c| str_at(c, &["status"]).map(str::to_string));
    let mut s = match ready.as_deref() {
        Some("True") => "Ready".to_string(),
        Some("False") => "NotReady".to_string(),
        _ => "Unknown".to_string(),
    };
    if at(node, &["spec", "unschedulable"]).and_then(Value::as_bool) == Some(true) {
        s.push_str(",SchedulingDisabled");
    }
    s
}

fn node_roles(node: &Value) -> String {
    let mut roles: Vec<String> = object::labels(node)
        .iter()
        .filter_map(|(k, v)| {
            if let Some(role) = k.strip_prefix("node-role.kubernetes.io/") {
                Some(role.to_string())
            } else if k == "kubernetes.io/role" {
                Some(v.clone())
            } else {
                None
            }
        })
        .filter(|r| !r.is_empty())
        .collect();
    roles.sort();
    roles.dedup();
    if roles.is_empty() {
        "<none>".into()
    } else {
        roles.join(",")
    }
}

fn node_address(node: &Value, kind: &str) -> Value {
    let addr = at(node, &["status", "addresses"])
        .and_then(Value::as_array)
        .and_then(|a| a.iter().find(|x| str_at(x, &["type"]) == Some(kind)))
        .and_then(|x| str_at(x, &["address"]))
        .unwrap_or("");
    none_if_empty(addr)
}

fn builtin_columns(res: &ResourceInfo) -> Vec<Col> {
    match (res.group.as_str(), res.kind.as_str()) {
        ("", "Pod") => vec![
            NAME,
            col("Ready", "string", 0),
            col("Status", "string", 0),
            col("Restarts", "string", 0),
            AGE,
            col("IP", "string", 1),
            col("Node", "string", 1),
            col("Nominated Node", "string", 1),
            col("Readiness Gates", "string", 1),
        ],
        ("", "Node") => vec![
            NAME,
            col("Status", "string", 0),
            col("Roles", "string", 0),
            AGE,
            col("Version", "string", 0),
            col("Internal-IP", "string", 1),
            col("External-IP", "string", 1),
            col("OS-Image", "string", 1),
            col("Kernel-Version", "string", 1),
            col("Container-Runtime", "string", 1),
        ],
        ("apps", "Deployment") => vec![
            NAME,
            col("Ready", "string", 0),
            col("Up-to-date", "integer", 0),
            col("Available", "integer", 0),
            AGE,
            col("Containers", "string", 1),
            col("Images", "string", 1),
            col("Selector", "string", 1),
        ],
        ("apps", "ReplicaSet") => vec![
            NAME,
            col("Desired", "integer", 0),
            col("Current", "integer", 0),
            col("Ready", "integer", 0),
            AGE,
            col("Containers", "string", 1),
            col("Images", "string", 1),
            col("Selector", "string", 1),
        ],
        ("apps", "DaemonSet") => vec![
            NAME,
            col("Desired", "integer", 0),
            col("Current", "integer", 0),
            col("Ready", "integer", 0),
            col("Up-to-date", "integer", 0),
            col("Available", "integer", 0),
            col("Node Selector", "string", 0),
            AGE,
        ],
        ("apps", "StatefulSet") => vec![NAME, col("Ready", "string", 0), AGE],
        ("", "Namespace") => vec![NAME, col("Status", "string", 0), AGE],
        ("", "Event") => vec![
            col("Last Seen", "string", 0),
            col("Type", "string", 0),
            col("Reason", "string", 0),
            col("Object", "string", 0),
            col("Subobject", "string", 1),
            col("Source", "string", 1),
            col("Message", "string", 0),
            col("First Seen", "string", 1),
            col("Count", "string", 1),
            NAME,
        ],
        ("policy", "PodDisruptionBudget") => vec![
            NAME,
            col("Min Available", "string", 0),
            col("Max Unavailable", "string", 0),
            col("Allowed Disruptions", "integer", 0),
            AGE,
        ],
        ("coordination.k8s.io", "Lease") => vec![NAME, col("Holder", "string", 0), AGE],
        ("", "ConfigMap") => vec![NAME, col("Data", "integer", 0), AGE],
        ("", "Secret") => vec![
            NAME,
            col("Type", "string", 0),
            col("Data", "integer", 0),
            AGE,
        ],
        ("apiextensions.k8s.io", "CustomResourceDefinition") => {
            vec![NAME, col("Created At", "date", 0)]
        }
        ("storage.k8s.io", "StorageClass") => vec![NAME, col("Provisioner", "string", 0), AGE],
        ("scheduling.k8s.io", "PriorityClass") => vec![
            NAME,
            col("Value", "integer", 0),
            col("Global-Default", "boolean", 0),
            AGE,
        ],
        ("", "PersistentVolumeClaim") => vec![
            NAME,
            col("Status", "string", 0),
            col("Volume", "string", 0),
            col("StorageClass", "string", 0),
            AGE,
        ],
        ("", "PersistentVolume") => vec![
            NAME,
            col("Status", "string", 0),
            col("Claim", "string", 0),
            col("StorageClass", "string", 0),
            AGE,
        ],
        _ => vec![NAME, AGE],
    }
}

fn builtin_cells(res: &ResourceInfo, o: &Value, now: DateTime<Utc>) -> Vec<Value> {
    let name = json!(object::name(o));
    let created = age(o, &["metadata", "creationTimestamp"], now);
    match (res.group.as_str(), res.kind.as_str()) {
        ("", "Pod") => {
            let total = at(o, &["spec", "containers"])
                .and_then(Value::as_array)
                .map(Vec::len)
                .unwrap_or(0);
            let statuses = at(o, &["status", "containerStatuses"])
                .and_then(Value::as_array)
                .cloned()
                .unwrap_or_default();
            let ready = statuses
                .iter()
                .filter(|c| c.get("ready").and_then(Value::as_bool) == Some(true))
                .count();
            let restarts: i64 = statuses
                .iter()
                .filter_map(|c| c.get("restartCount").and_then(Value::as_i64))
                .sum();
            vec![
                name,
                json!(format!("{ready}/{total}")),
                json!(pod_status(o)),
                json!(restarts.to_string()),
                created,
                none_if_empty(str_at(o, &["status", "podIP"]).unwrap_or("")),
                none_if_empty(str_at(o, &["spec", "nodeName"]).unwrap_or("")),
                none_if_empty(str_at(o, &["status", "nominatedNodeName"]).unwrap_or("")),
                json!("<none>"),
            ]
        }
        ("", "Node") => vec![
            name,
            json!(node_status(o)),
            json!(node_roles(o)),
            created,
            json!(str_at(o, &["status", "nodeInfo", "kubeletVersion"]).unwrap_or("")),
            node_address(o, "InternalIP"),
            node_address(o, "ExternalIP"),
            none_if_empty(str_at(o, &["status", "nodeInfo", "osImage"]).unwrap_or("")),
            none_if_empty(str_at(o, &["status", "nodeInfo", "kernelVersion"]).unwrap_or("")),
            none_if_empty(
                str_at(o, &["status", "nodeInfo", "containerRuntimeVersion"]).unwrap_or(""),
            ),
        ],
        ("apps", "Deployment") => {
            let (cs, images) = containers_images(o);
            vec![
                name,
                json!(format!(
                    "{}/{}",
                    int_at(o, &["status", "readyReplicas"]),
                    int_at(o, &["spec", "replicas"])
                )),
                json!(int_at(o, &["status", "updatedReplicas"])),
                json!(int_at(o, &["status", "availableReplicas"])),
                created,
                json!(cs),
                json!(images),
                json!(selector_string(o)),
            ]
        }
        ("apps", "ReplicaSet") => {
            let (cs, images) = containers_images(o);
            vec![
                name,
                json!(int_at(o, &["spec", "replicas"])),
                json!(int_at(o, &["status", "replicas"])),
                json!(int_at(o, &["status", "readyReplicas"])),
                created,
                json!(cs),
                json!(images),
                json!(selector_string(o)),
            ]
        }
        ("apps", "DaemonSet") => {
            let sel = object::string_map(at(o, &["spec", "template", "spec", "nodeSelector"]));
            let sel = sel
                .iter()
                .map(|(k, v)| format!("{k}={v}"))
                .collect::<Vec<_>>()
                .join(",");
            vec![
                name,
                json!(int_at(o, &["status", "desiredNumberScheduled"])),
                json!(int_at(o, &["status", "currentNumberScheduled"])),
                json!(int_at(o, &["status", "numberReady"])),
                json!(int_at(o, &["status", "updatedNumberScheduled"])),
                json!(int_at(o, &["status", "numberAvailable"])),
                none_if_empty(&sel),
                created,
            ]
        }
        ("apps", "StatefulSet") => vec![
            name,
            json!(format!(
                "{}/{}",
                int_at(o, &["status", "readyReplicas"]),
                int_at(o, &["spec", "replicas"])
            )),
            created,
        ],
        ("", "Namespace") => vec![
            name,
            json!(str_at(o, &["status", "phase"]).unwrap_or("Active")),
            created,
        ],
        ("", "Event") => {
            let last = ["lastTimestamp", "eventTime", "firstTimestamp"]
                .iter()
                .find_map(|k| str_at(o, &[k]).and_then(parse_time))
                .or_else(|| str_at(o, &["metadata", "creationTimestamp"]).and_then(parse_time));
            let last_seen = last
                .map(|t| human_duration(now - t))
                .unwrap_or_else(|| "<unknown>".into());
            let first = str_at(o, &["firstTimestamp"])
                .and_then(parse_time)
                .map(|t| human_duration(now - t))
                .unwrap_or_else(|| "<unknown>".into());
            let kind = str_at(o, &["involvedObject", "kind"])
                .unwrap_or("")
                .to_lowercase();
            let obj_name = str_at(o, &["involvedObject", "name"]).unwrap_or("");
            let source = str_at(o, &["source", "component"])
                .or_else(|| str_at(o, &["reportingComponent"]))
                .unwrap_or("");
            vec![
                json!(last_seen),
                json!(str_at(o, &["type"]).unwrap_or("")),
                json!(str_at(o, &["reason"]).unwrap_or("")),
                json!(format!("{kind}/{obj_name}")),
                json!(str_at(o, &["involvedObject", "fieldPath"]).unwrap_or("")),
                json!(source),
                json!(str_at(o, &["message"]).unwrap_or("").trim()),
                json!(first),
                json!(object::i64_at(o, &["count"]).unwrap_or(1).to_string()),
                name,
            ]
        }
        ("policy", "PodDisruptionBudget") => {
            let show = |k: &str| match at(o, &["spec", k]) {
                Some(Value::String(s)) => json!(s),
                Some(Value::Number(n)) => json!(n.to_string()),
                _ => json!("N/A"),
            };
            vec![
                name,
                show("minAvailable"),
                show("maxUnavailable"),
                json!(int_at(o, &["status", "disruptionsAllowed"])),
                created,
            ]
        }
        ("coordination.k8s.io", "Lease") => vec![
            name,
            none_if_empty(str_at(o, &["spec", "holderIdentity"]).unwrap_or("")),
            created,
        ],
        ("", "ConfigMap") => {
            let n = ["data", "binaryData"]
                .iter()
                .filter_map(|k| o.get(*k).and_then(Value::as_object))
                .map(Map::len)
                .sum::<usize>();
            vec![name, json!(n), created]
        }
        ("", "Secret") => {
            let n = o
                .get("data")
                .and_then(Value::as_object)
                .map(Map::len)
                .unwrap_or(0);
            vec![
                name,
                json!(str_at(o, &["type"]).unwrap_or("Opaque")),
                json!(n),
                created,
            ]
        }
        ("apiextensions.k8s.io", "CustomResourceDefinition") => {
            vec![
                name,
                json!(str_at(o, &["metadata", "creationTimestamp"]).unwrap_or("")),
            ]
        }
        ("storage.k8s.io", "StorageClass") => vec![
            name,
            json!(str_at(o, &["provisioner"]).unwrap_or("")),
            created,
        ],
        ("scheduling.k8s.io", "PriorityClass") => vec![
            name,
            json!(int_at(o, &["value"])),
            json!(
                o.get("globalDefault")
                    .and_then(Value::as_bool)
                    .unwrap_or(false)
            ),
            created,
        ],
        ("", "PersistentVolumeClaim") => vec![
            name,
            json!(str_at(o, &["status", "phase"]).unwrap_or("Pending")),
            json!(str_at(o, &["spec", "volumeName"]).unwrap_or("")),
            none_if_empty(str_at(o, &["spec", "storageClassName"]).unwrap_or("")),
            created,
        ],
        ("", "PersistentVolume") => {
            let claim = match (
                str_at(o, &["spec", "claimRef", "namespace"]),
                str_at(o, &["spec", "claimRef", "name"]),
            ) {
                (Some(ns), Some(n)) => format!("{ns}/{n}"),
                _ => String::new(),
            };
            vec![
                name,
                json!(str_at(o, &["status", "phase"]).unwrap_or("Pending")),
                json!(claim),
                json!(str_at(o, &["spec", "storageClassName"]).unwrap_or("")),
                created,
            ]
        }
        _ => vec![name, created],
    }
}

/// Evaluates a printer-column cell.
fn printer_cell(col: &PrinterColumn, obj: &Value, now: DateTime<Utc>) -> Value {
    let results = jsonpath(&col.json_path, obj);
    let Some(first) = results.into_iter().next() else {
        return Value::Null;
    };
    match col.type_.as_str() {
        "date" => match first.as_str().and_then(parse_time) {
            Some(t) => json!(human_duration(now - t)),
            None => json!("<invalid>"),
        },
        "integer" => first
            .as_i64()
            .map(|i| json!(i))
            .or_else(|| first.as_f64().map(|f| json!(f as i64)))
            .unwrap_or(Value::Null),
        "number" => first.as_f64().map(|f| json!(f)).unwrap_or(Value::Null),
        "boolean" => first.as_bool().map(|b| json!(b)).unwrap_or(Value::Null),
        _ => match first {
            Value::String(s) => json!(s),
            Value::Null => Value::Null,
            other => json!(other.to_string()),
        },
    }
}

/// Renders a Table.
pub fn render(
    res: &ResourceInfo,
    items: &[Arc<Value>],
    include: IncludeObject,
    now: DateTime<Utc>,
    list_meta: Option<Value>,
) -> Value {
    let mut column_defs: Vec<Value> = Vec::new();
    let custom = res.is_custom();
    let printer: Vec<PrinterColumn> = if custom {
        if res.printer_columns.is_empty() {
            vec![PrinterColumn {
                name: "Age".into(),
                type_: "date".into(),
                format: String::new(),
                description: String::new(),
                priority: 0,
                json_path: ".metadata.creationTimestamp".into(),
            }]
        } else {
            res.printer_columns.clone()
        }
    } else {
        Vec::new()
    };
    if custom {
        column_defs.push(json!({"name": "Name", "type": "string", "format": "name", "description": "Name must be unique within a namespace.", "priority": 0}));
        for c in &printer {
            column_defs.push(json!({"name": c.name, "type": c.type_, "format": c.format, "description": c.description, "priority": c.priority}));
        }
    } else {
        for c in builtin_columns(res) {
            column_defs.push(json!({"name": c.name, "type": c.type_, "format": c.format, "description": "", "priority": c.priority}));
        }
    }
    let rows: Vec<Value> = items
        .iter()
        .map(|item| {
            let shown = present(res, item);
            let cells: Vec<Value> = if custom {
                std::iter::once(json!(object::name(&shown)))
                    .chain(printer.iter().map(|c| printer_cell(c, &shown, now)))
                    .collect()
            } else {
                builtin_cells(res, &shown, now)
            };
            let mut row = Map::new();
            row.insert("cells".into(), Value::Array(cells));
            match include {
                IncludeObject::None => {}
                IncludeObject::Metadata => {
                    let meta = shown.get("metadata").cloned().unwrap_or_else(|| json!({}));
                    row.insert("object".into(), json!({"kind": "PartialObjectMetadata", "apiVersion": "meta.k8s.io/v1", "metadata": meta}));
                }
                IncludeObject::Object => {
                    row.insert("object".into(), shown.into_owned());
                }
            }
            Value::Object(row)
        })
        .collect();
    json!({
        "kind": "Table",
        "apiVersion": "meta.k8s.io/v1",
        "metadata": list_meta.unwrap_or_else(|| json!({})),
        "columnDefinitions": column_defs,
        "rows": rows,
    })
}

// ----------------------------------------------------------------------------------------------
// A JSONPath subset: `.a.b`, `.a\.b`, `['a']`, `[0]`, `[*]`, `[?(@.k=="v")]`, `[?(@.k!="v")]`.
// ----------------------------------------------------------------------------------------------

#[derive(Debug, Clone, PartialEq)]
enum Step {
    Key(String),
    Index(i64),
    All,
    Filter {
        path: Vec<String>,
        op: Option<(bool, Value)>,
    },
}

fn parse_path(expr: &str) -> Option<Vec<Step>> {
    let expr = expr.trim();
    let expr = expr
        .strip_prefix('{')
        .and_then(|e| e.strip_suffix('}'))
        .unwrap_or(expr);
    let expr = expr.strip_prefix('$').unwrap_or(expr);
    let chars: Vec<char> = expr.chars().collect();
    let mut i = 0;
    let mut steps = Vec::new();
    while i < chars.len() {
        match chars.get(i)? {
            '.' => {
                i += 1;
                let mut key = String::new();
                while let Some(c) = chars.get(i) {
                    match c {
                        '\\' => {
                            if let Some(n) = chars.get(i + 1) {
                                key.push(*n);
                            }
                            i += 2;
                        }
                        '.' | '[' => break,
                        c => {
                            key.push(*c);
                            i += 1;
                        }
                    }
                }
                if !key.is_empty() {
                    steps.push(Step::Key(key));
                }
            }
            '[' => {
                let close = find_close(&chars, i)?;
                let inner: String = chars.get(i + 1..close)?.iter().collect();
                let inner = inner.trim();
                if inner == "*" {
                    steps.push(Step::All);
                } else if let Some(f) = inner.strip_prefix("?(").and_then(|s| s.strip_suffix(')')) {
                    steps.push(parse_filter(f)?);
                } else if let Ok(n) = inner.parse::<i64>() {
                    steps.push(Step::Index(n));
                } else {
                    let key = inner.trim_matches(|c| c == '\'' || c == '"');
                    steps.push(Step::Key(key.to_string()));
                }
                i = close + 1;
            }
            _ => return None,
        }
    }
    Some(steps)
}

fn find_close(chars: &[char], open: usize) -> Option<usize> {
    let mut depth = 0;
    let mut quote: Option<char> = None;
    for (j, c) in chars.iter().enumerate().skip(open) {
        match (quote, c) {
            (Some(q), c) if *c == q => quote = None,
            (Some(_), _) => {}
            (None, '"' | '\'') => quote = Some(*c),
            (None, '[') => depth += 1,
            (None, ']') => {
                depth -= 1;
                if depth == 0 {
                    return Some(j);
                }
            }
            _ => {}
        }
    }
    None
}

fn parse_filter(f: &str) -> Option<Step> {
    let f = f.trim();
    let (lhs, op) = if let Some((l, r)) = f.split_once("==") {
        (l.trim(), Some((false, r.trim())))
    } else if let Some((l, r)) = f.split_once("!=") {
        (l.trim(), Some((true, r.trim())))
    } else {
        (f, None)
    };
    let path: Vec<String> = lhs
        .strip_prefix('@')?
        .split('.')
        .filter(|s| !s.is_empty())
        .map(str::to_string)
        .collect();
    let op = match op {
        None => None,
        Some((neg, raw)) => {
            let v = if (raw.starts_with('"') && raw.ends_with('"'))
                || (raw.starts_with('\'') && raw.ends_with('\''))
            {
                json!(raw.get(1..raw.len().saturating_sub(1)).unwrap_or(""))
            } else {
                serde_json::from_str(raw).unwrap_or_else(|_| json!(raw))
            };
            Some((neg, v))
        }
    };
    Some(Step::Filter { path, op })
}

/// Evaluates a JSONPath expression, returning every match in order.
pub fn jsonpath(expr: &str, obj: &Value) -> Vec<Value> {
    let Some(steps) = parse_path(expr) else {
        return Vec::new();
    };
    let mut cur: Vec<&Value> = vec![obj];
    for step in &steps {
        let mut next = Vec::new();
        for v in cur {
            match step {
                Step::Key(k) => {
                    if let Some(x) = v.get(k.as_str()) {
                        next.push(x);
                    }
                }
                Step::Index(n) => {
                    if let Some(a) = v.as_array() {
                        let idx = if *n < 0 { a.len() as i64 + n } else { *n };
                        if let Some(x) = usize::try_from(idx).ok().and_then(|i| a.get(i)) {
                            next.push(x);
                        }
                    }
                }
                Step::All => match v {
                    Value::Array(a) => next.extend(a.iter()),
                    Value::Object(m) => next.extend(m.values()),
                    _ => {}
                },
                Step::Filter { path, op } => {
                    if let Some(a) = v.as_array() {
                        for item in a {
                            let mut target = Some(item);
                            for p in path {
                                target = target.and_then(|t| t.get(p.as_str()));
                            }
                            let keep = match (op, target) {
                                (None, t) => t.is_some_and(|t| !t.is_null()),
                                (Some((neg, want)), Some(t)) => (t == want) != *neg,
                                (Some((neg, _)), None) => *neg,
                            };
                            if keep {
                                next.push(item);
                            }
                        }
                    }
                }
            }
        }
        cur = next;
    }
    cur.into_iter().cloned().collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn human_durations() {
        let cases = [
            (5, "5s"),
            (119, "119s"),
            (200, "3m20s"),
            (600, "10m"),
            (3 * 3600 + 60, "3h1m"),
            (9 * 3600, "9h"),
            (50 * 3600, "2d2h"),
            (400 * 86400, "400d"),
        ];
        for (secs, want) in cases {
            assert_eq!(
                human_duration(chrono::Duration::seconds(secs)),
                want,
                "{secs}"
            );
        }
    }

    #[test]
    fn jsonpath_subset() {
        let obj = json!({"metadata": {"labels": {"karpenter.sh/nodepool": "default"}}, "status": {"conditions": [{"type": "Launched", "status": "True"}, {"type": "Ready", "status": "False"}]}, "spec": {"items": [1, 2]}});
        assert_eq!(
            jsonpath(r#".status.conditions[?(@.type=="Ready")].status"#, &obj),
            vec![json!("False")]
        );
        assert_eq!(
            jsonpath(r".metadata.labels.karpenter\.sh/nodepool", &obj),
            vec![json!("default")]
        );
        assert_eq!(jsonpath(".spec.items[1]", &obj), vec![json!(2)]);
        assert_eq!(jsonpath(".spec.items[*]", &obj).len(), 2);
        assert_eq!(
            jsonpath("{.metadata.labels['karpenter.sh/nodepool']}", &obj),
            vec![json!("default")]
        );
        assert!(jsonpath(".nope.deeper", &obj).is_empty());
    }
}
