//! Subresources and server-side apply: `pods/binding`, `pods/eviction` (with
//! PodDisruptionBudgets), `scale`, and the PodDisruptionBudget status the eviction path reads.

use std::collections::BTreeMap;
use std::sync::Arc;

use axum::http::StatusCode;
use axum::response::Response;
use karpenter_apimachinery::apply::ApplyError;
use karpenter_apimachinery::patch::{BuiltinSchema, CrdSchema, NoSchema, PatchSchema};
use karpenter_apimachinery::selector::LabelSelector;
use serde_json::{Value, json};

use super::Server;
use super::error::{ApiError, QualifiedResource, success_status};
use super::filter::{present, to_storage};
use super::http::{
    Ctx, FieldValidation, PatchKind, ScaleChange, admit, apply_patch, create_object, json_response,
};
use super::object::{self, at, format_time, parse_time, set_at, str_at};
use super::registry::ResourceInfo;
use super::store::{DeleteOptions, UpdateTarget, WriteOptions, prepare_update};
use super::stored::StoredObject;
use super::table::jsonpath;

const PODS: &str = "pods";
const PDBS: &str = "poddisruptionbudgets.policy";

/// The merge schema for patches and apply on a resource.
pub(crate) fn schema_for(res: &ResourceInfo) -> Arc<dyn PatchSchema + Send + Sync> {
    res.patch_schema.get_or_build(|| {
        if let Some(s) = BuiltinSchema::for_kind(&res.group, &res.version, &res.kind) {
            return Arc::new(s);
        }
        if let Some(s) = super::custom::version_schema(res) {
            return Arc::new(CrdSchema::from_openapi(&s));
        }
        Arc::new(NoSchema)
    })
}

fn apply_error(res: &ResourceInfo, name: &str, e: ApplyError) -> ApiError {
    match e {
        ApplyError::Conflicts(conflicts) => {
            let mut err = ApiError::custom(
                409,
                "Conflict",
                ApplyError::Conflicts(conflicts.clone()).to_string(),
            );
            err.details.name = Some(name.to_string());
            if !res.group.is_empty() {
                err.details.group = Some(res.group.clone());
            }
            err.details.kind = Some(res.plural.clone());
            for c in conflicts {
                err = err.with_cause("FieldManagerConflict", &c.cause_message(), &c.field_path);
            }
            err
        }
        other => match other.http_status() {
            400 => ApiError::bad_request(other.to_string()),
            code => ApiError::custom(code, "Invalid", other.to_string()),
        },
    }
}

/// Records a non-apply write in managedFields.
pub(crate) fn track_managed_fields(
    server: &Server,
    ctx: &Ctx,
    res: &ResourceInfo,
    old: Option<&Value>,
    new: Value,
    subresource: Option<&str>,
) -> Result<Value, ApiError> {
    let manager = field_manager(ctx);
    let now = format_time(server.config.clock.now());
    let schema = schema_for(res);
    karpenter_apimachinery::apply::update_managed_fields(
        old,
        &new,
        &manager,
        schema.as_ref(),
        &now,
        subresource,
    )
    .map_err(|e| apply_error(res, object::name(&new), e))
}

/// The manager a write is recorded under: `fieldManager`, else the user agent's program name.
pub(crate) fn field_manager(ctx: &Ctx) -> String {
    if let Some(m) = ctx.q("fieldManager").filter(|m| !m.is_empty()) {
        return m.to_string();
    }
    let ua = ctx
        .headers
        .get(axum::http::header::USER_AGENT)
        .and_then(|v| v.to_str().ok())
        .unwrap_or("unknown");
    ua.split('/').next().unwrap_or("unknown").to_string()
}

/// `PATCH` with `application/apply-patch+yaml`.
#[allow(clippy::too_many_arguments)]
pub(crate) fn server_side_apply(
    server: &Arc<Server>,
    ctx: &Ctx,
    res: &Arc<ResourceInfo>,
    ns: &str,
    name: &str,
    target: UpdateTarget,
    applied: Value,
    mode: FieldValidation,
) -> Result<Response, ApiError> {
    let Some(manager) = ctx.q("fieldManager").filter(|m| !m.is_empty()) else {
        return Err(ApiError::bad_request(
            "PATCH, application/apply-patch+yaml requires fieldManager",
        ));
    };
    if object::name(&applied) != name {
        return Err(ApiError::bad_request(format!(
            "the name of the object ({}) does not match the name on the URL ({name})",
            object::name(&applied)
        )));
    }
    let force = ctx.q("force").is_some_and(|f| f == "true");
    let sub = match target {
        UpdateTarget::Status => Some("status"),
        _ => None,
    };
    let schema = schema_for(res);
    let dry_run = ctx.dry_run();
    for _ in 0..8 {
        let now = format_time(server.config.clock.now());
        match server.store.get(&res.storage, ns, name) {
            Err(e) if e.code == 404 => {
                if target == UpdateTarget::Status {
                    return Err(e);
                }
                let obj = karpenter_apimachinery::apply::server_side_apply(
                    None,
                    &applied,
                    manager,
                    force,
                    schema.as_ref(),
                    &now,
                    sub,
                )
                .map_err(|e| apply_error(res, name, e))?;
                let mut obj = obj;
                if res.namespaced
                    && let Some(m) = object::metadata_mut(&mut obj)
                {
                    m.insert("namespace".into(), json!(ns));
                }
                match create_object(server, res, ns, obj, mode, dry_run, None) {
                    Ok((created, warnings)) => {
                        let _ = warnings;
                        return Ok(super::http::created_response(res, &created));
                    }
                    Err(e) if e.code == 409 && e.reason == "AlreadyExists" => continue,
                    Err(e) => return Err(e),
                }
            }
            Err(e) => return Err(e),
            Ok(_) => {
                let updated = server.store.update_with(
                    &res.storage,
                    ns,
                    name,
                    target,
                    &WriteOptions { dry_run },
                    |current| {
                        let shown = present(res, current);
                        let merged = karpenter_apimachinery::apply::server_side_apply(
                            Some(&shown),
                            &applied,
                            manager,
                            force,
                            schema.as_ref(),
                            &now,
                            sub,
                        )
                        .map_err(|e| apply_error(res, name, e))?;
                        let merged = to_storage(res, merged);
                        let mut merged =
                            prepare_update(&res.table_meta(), current, merged, target)?;
                        object::set_meta(&mut merged, "resourceVersion", None);
                        admit(server, res, &mut merged, Some(current), mode)?;
                        Ok(merged)
                    },
                );
                match updated {
                    Ok(u) => {
                        if !dry_run {
                            super::custom::after_write(server, res, &u)?;
                        }
                        return Ok(json_response(StatusCode::OK, &present(res, &u)));
                    }
                    Err(e) if e.code == 404 => continue,
                    Err(e) => return Err(e),
                }
            }
        }
    }
    Err(ApiError::internal("server-side apply did not converge"))
}

// ----------------------------------------------------------------------------------------------
// Binding
// ----------------------------------------------------------------------------------------------

/// `POST pods/<name>/binding`.
pub(crate) fn bind(
    server: &Arc<Server>,
    ctx: &Ctx,
    _res: &ResourceInfo,
    ns: &str,
    name: &str,
) -> Result<Response, ApiError> {
    let body: Value = serde_json::from_slice(&ctx.body)
        .map_err(|e| ApiError::bad_request(format!("decoding Binding: {e}")))?;
    let node = str_at(&body, &["target", "name"]).unwrap_or("").to_string();
    if node.is_empty() {
        return Err(ApiError::invalid(
            "",
            "Binding",
            name,
            vec![super::error::StatusCause {
                reason: "FieldValueRequired".into(),
                message: "Required value".into(),
                field: "target.name".into(),
            }],
        ));
    }
    let binding_qr = QualifiedResource::new("", "pods/binding");
    let now = format_time(server.config.clock.now());
    server.store.update_with(PODS, ns, name, UpdateTarget::All, &WriteOptions { dry_run: ctx.dry_run() }, |cur| {
        if let Some(uid) = str_at(&body, &["metadata", "uid"]).filter(|u| !u.is_empty())
            && uid != object::uid(cur)
        {
            return Err(ApiError::conflict(&binding_qr, name, "the UID in the binding does not match the pod"));
        }
        if object::is_deleting(cur) {
            return Err(ApiError::conflict(&binding_qr, name, &format!("pod {name} is being deleted, cannot be assigned to a host")));
        }
        if let Some(existing) = str_at(cur, &["spec", "nodeName"]).filter(|n| !n.is_empty()) {
            return Err(ApiError::conflict(&binding_qr, name, &format!("pod {name} is already assigned to node {existing:?}")));
        }
        let mut pod = (**cur).clone();
        set_at(&mut pod, &["spec", "nodeName"], json!(node));
        let mut conditions: Vec<Value> = at(&pod, &["status", "conditions"]).and_then(Value::as_array).cloned().unwrap_or_default();
        conditions.retain(|c| str_at(c, &["type"]) != Some("PodScheduled"));
        conditions.push(json!({"type": "PodScheduled", "status": "True", "lastProbeTime": null, "lastTransitionTime": now}));
        set_at(&mut pod, &["status", "conditions"], Value::Array(conditions));
        object::set_meta(&mut pod, "resourceVersion", None);
        Ok(pod)
    })?;
    Ok(json_response(StatusCode::CREATED, &success_status(None)))
}

// ----------------------------------------------------------------------------------------------
// Scale
// ----------------------------------------------------------------------------------------------

fn path_keys(p: &str) -> Vec<&str> {
    p.trim_start_matches('.')
        .split('.')
        .filter(|s| !s.is_empty())
        .collect()
}

/// The autoscaling/v1 Scale view of an object.
pub(crate) fn scale_of(res: &ResourceInfo, obj: &Value) -> Result<Value, ApiError> {
    let paths = res.scale().ok_or_else(ApiError::not_found_path)?;
    let spec = jsonpath(&paths.spec_replicas, obj)
        .into_iter()
        .next()
        .and_then(|v| v.as_i64())
        .unwrap_or(0);
    let status = jsonpath(&paths.status_replicas, obj)
        .into_iter()
        .next()
        .and_then(|v| v.as_i64())
        .unwrap_or(0);
    let selector = if res.is_custom() {
        paths
            .label_selector
            .as_deref()
            .and_then(|p| jsonpath(p, obj).into_iter().next())
            .and_then(|v| v.as_str().map(str::to_string))
    } else {
        at(obj, &["spec", "selector"])
            .and_then(|s| {
                serde_json::from_value::<
                    k8s_openapi::apimachinery::pkg::apis::meta::v1::LabelSelector,
                >(s.clone())
                .ok()
            })
            .and_then(|s| LabelSelector::from_k8s(&s).ok())
            .map(|s| s.to_string())
    };
    let mut meta = serde_json::Map::new();
    for k in [
        "name",
        "namespace",
        "uid",
        "resourceVersion",
        "creationTimestamp",
    ] {
        if let Some(v) = at(obj, &["metadata", k]) {
            meta.insert(k.into(), v.clone());
        }
    }
    let mut status_obj = json!({"replicas": status});
    if let Some(sel) = selector
        && let Some(m) = status_obj.as_object_mut()
    {
        m.insert("selector".into(), json!(sel));
    }
    Ok(
        json!({"kind": "Scale", "apiVersion": "autoscaling/v1", "metadata": meta, "spec": {"replicas": spec}, "status": status_obj}),
    )
}

/// PUT/PATCH on `scale`.
pub(crate) fn update_scale(
    server: &Arc<Server>,
    res: &Arc<ResourceInfo>,
    ns: &str,
    name: &str,
    change: ScaleChange,
    dry_run: bool,
) -> Result<Response, ApiError> {
    let paths = res.scale().cloned().ok_or_else(ApiError::not_found_path)?;
    let scale_qr = QualifiedResource::new(&res.group, &res.plural);
    let updated = server.store.update_with(
        &res.storage,
        ns,
        name,
        UpdateTarget::Main,
        &WriteOptions { dry_run },
        |cur| {
            let scale = scale_of(res, cur)?;
            let new_scale = match &change {
                ScaleChange::Replace(b) => b.clone(),
                ScaleChange::Patch(PatchKind::Json, p) => {
                    apply_patch(res, &scale, PatchKind::Json, p)?
                }
                ScaleChange::Patch(_, p) => karpenter_apimachinery::patch::merge_patch(&scale, p),
            };
            let rv = str_at(&new_scale, &["metadata", "resourceVersion"]).unwrap_or("");
            if !rv.is_empty() && rv != object::resource_version(cur) {
                return Err(ApiError::conflict_modified(&scale_qr, name));
            }
            let replicas = at(&new_scale, &["spec", "replicas"])
                .and_then(Value::as_i64)
                .unwrap_or(0);
            if replicas < 0 {
                return Err(ApiError::invalid(
                    "autoscaling",
                    "Scale",
                    name,
                    vec![super::error::StatusCause {
                        reason: "FieldValueInvalid".into(),
                        message: format!(
                            "Invalid value: {replicas}: must be greater than or equal to 0"
                        ),
                        field: "spec.replicas".into(),
                    }],
                ));
            }
            let mut obj = (**cur).clone();
            set_at(&mut obj, &path_keys(&paths.spec_replicas), json!(replicas));
            Ok(obj)
        },
    )?;
    Ok(json_response(StatusCode::OK, &scale_of(res, &updated)?))
}

// ----------------------------------------------------------------------------------------------
// Eviction and PodDisruptionBudgets
// ----------------------------------------------------------------------------------------------

fn pod_ready(pod: &Value) -> bool {
    at(pod, &["status", "conditions"])
        .and_then(Value::as_array)
        .is_some_and(|cs| {
            cs.iter().any(|c| {
                str_at(c, &["type"]) == Some("Ready") && str_at(c, &["status"]) == Some("True")
            })
        })
}

fn pdb_selector(pdb: &Value) -> LabelSelector {
    match at(pdb, &["spec", "selector"]) {
        None | Some(Value::Null) => LabelSelector::nothing(),
        Some(s) => serde_json::from_value::<
            k8s_openapi::apimachinery::pkg::apis::meta::v1::LabelSelector,
        >(s.clone())
        .ok()
        .and_then(|s| LabelSelector::from_k8s(&s).ok())
        .unwrap_or_else(LabelSelector::nothing),
    }
}

fn scaled(v: &Value, total: i64, round_up: bool) -> Option<i64> {
    match v {
        Value::Number(n) => n.as_i64(),
        Value::String(s) => {
            let pct: i64 = s.strip_suffix('%')?.parse().ok()?;
            let raw = pct * total;
            Some(if round_up {
                (raw + 99) / 100
            } else {
                raw / 100
            })
        }
        _ => None,
    }
}

fn expected_count(store: &super::store::Store, pods: &[&Arc<Value>]) -> i64 {
    let mut controllers: BTreeMap<(String, String), i64> = BTreeMap::new();
    let mut uncontrolled = 0i64;
    for pod in pods {
        let ctrl = at(pod, &["metadata", "ownerReferences"])
            .and_then(Value::as_array)
            .and_then(|refs| {
                refs.iter()
                    .find(|r| r.get("controller").and_then(Value::as_bool) == Some(true))
            });
        let Some(ctrl) = ctrl else {
            uncontrolled += 1;
            continue;
        };
        let kind = str_at(ctrl, &["kind"]).unwrap_or("");
        let name = str_at(ctrl, &["name"]).unwrap_or("").to_string();
        let storage = match kind {
            "ReplicaSet" => "replicasets.apps",
            "StatefulSet" => "statefulsets.apps",
            "Deployment" => "deployments.apps",
            _ => {
                uncontrolled += 1;
                continue;
            }
        };
        let key = (storage.to_string(), name.clone());
        if controllers.contains_key(&key) {
            continue;
        }
        let replicas = store
            .get(storage, object::namespace(pod), &name)
            .ok()
            .and_then(|o| object::i64_at(&o, &["spec", "replicas"]))
            .unwrap_or(1);
        controllers.insert(key, replicas);
    }
    controllers.values().sum::<i64>() + uncontrolled
}

/// The status the disruption controller would write for a PDB given the pods in its namespace.
pub fn compute_pdb_status(
    store: &super::store::Store,
    pdb: &Value,
    pods: &[Arc<StoredObject>],
    now: chrono::DateTime<chrono::Utc>,
) -> Value {
    let selector = pdb_selector(pdb);
    // Select on the stored index, then parse only the selected pods.
    let selected: Vec<Arc<Value>> = pods
        .iter()
        .filter(|p| selector.matches(&p.meta().label_map()))
        .filter_map(|p| p.value().ok())
        .map(Arc::new)
        .collect();
    let selected: Vec<&Arc<Value>> = selected.iter().collect();
    let min_available = at(pdb, &["spec", "minAvailable"]);
    let max_unavailable = at(pdb, &["spec", "maxUnavailable"]);
    let (expected, desired) = match (min_available, max_unavailable) {
        (Some(Value::Number(n)), _) => (selected.len() as i64, n.as_i64().unwrap_or(0)),
        (Some(v @ Value::String(_)), _) => {
            let expected = expected_count(store, &selected);
            (expected, scaled(v, expected, true).unwrap_or(0))
        }
        (_, Some(v)) => {
            let expected = expected_count(store, &selected);
            let mu = scaled(v, expected, true).unwrap_or(0);
            (expected, (expected - mu).max(0))
        }
        _ => (selected.len() as i64, 1),
    };
    let window = chrono::Duration::minutes(2);
    let disrupted: serde_json::Map<String, Value> = at(pdb, &["status", "disruptedPods"])
        .and_then(Value::as_object)
        .map(|m| {
            m.iter()
                .filter(|(name, t)| {
                    let recent = t
                        .as_str()
                        .and_then(parse_time)
                        .is_some_and(|t| now - t < window);
                    let still_there = selected
                        .iter()
                        .any(|p| object::name(p) == name.as_str() && !object::is_deleting(p));
                    recent && still_there
                })
                .map(|(k, v)| (k.clone(), v.clone()))
                .collect()
        })
        .unwrap_or_default();
    let healthy = selected
        .iter()
        .filter(|p| {
            pod_ready(p) && !object::is_deleting(p) && !disrupted.contains_key(object::name(p))
        })
        .count() as i64;
    let allowed = (healthy - desired).max(0);
    let generation = object::i64_at(pdb, &["metadata", "generation"]).unwrap_or(1);
    let previous_condition = at(pdb, &["status", "conditions"])
        .and_then(Value::as_array)
        .and_then(|cs| {
            cs.iter()
                .find(|c| str_at(c, &["type"]) == Some("DisruptionAllowed"))
                .cloned()
        });
    let (cstatus, reason) = if allowed > 0 {
        ("True", "SufficientPods")
    } else {
        ("False", "InsufficientPods")
    };
    let transition = match &previous_condition {
        Some(c) if str_at(c, &["status"]) == Some(cstatus) => c
            .get("lastTransitionTime")
            .cloned()
            .unwrap_or(json!(format_time(now))),
        _ => json!(format_time(now)),
    };
    let mut status = json!({
        "observedGeneration": generation,
        "disruptionsAllowed": allowed,
        "currentHealthy": healthy,
        "desiredHealthy": desired,
        "expectedPods": expected,
        "conditions": [{"type": "DisruptionAllowed", "status": cstatus, "reason": reason, "message": "", "observedGeneration": generation, "lastTransitionTime": transition}]
    });
    if !disrupted.is_empty()
        && let Some(m) = status.as_object_mut()
    {
        m.insert("disruptedPods".into(), Value::Object(disrupted));
    }
    status
}

fn write_pdb_status(
    server: &Server,
    pdb: &Arc<Value>,
    status: Value,
) -> Result<Arc<Value>, ApiError> {
    let rv = object::resource_version(pdb).to_string();
    server.store.update_with(
        PDBS,
        object::namespace(pdb),
        object::name(pdb),
        UpdateTarget::Status,
        &WriteOptions::default(),
        |cur| {
            let mut v = (**cur).clone();
            set_at(&mut v, &["status"], status.clone());
            object::set_meta(&mut v, "resourceVersion", Some(json!(rv)));
            Ok(v)
        },
    )
}

/// Recomputes every PodDisruptionBudget's status (the disruption controller's job).
pub(crate) fn refresh_pdb_statuses(server: &Server) {
    let pdbs = server.store.all(PDBS);
    if pdbs.is_empty() {
        return;
    }
    let now = server.config.clock.now();
    let mut by_ns: BTreeMap<String, Vec<Arc<StoredObject>>> = BTreeMap::new();
    for pdb in pdbs {
        let ns = object::namespace(&pdb).to_string();
        let pods = by_ns.entry(ns.clone()).or_insert_with(|| {
            server
                .store
                .list(PODS, Some(&ns), None)
                .map(|p| p.items)
                .unwrap_or_default()
        });
        let status = compute_pdb_status(&server.store, &pdb, pods, now);
        if !same_status(pdb.get("status"), &status)
            && let Err(e) = write_pdb_status(server, &pdb, status)
            && e.code != 409
            && e.code != 404
        {
            tracing::warn!(error = %e, pdb = object::name(&pdb), "updating PodDisruptionBudget status failed");
        }
    }
}

fn same_status(old: Option<&Value>, new: &Value) -> bool {
    let strip = |v: &Value| {
        let mut v = v.clone();
        if let Some(cs) = v.get_mut("conditions").and_then(Value::as_array_mut) {
            for c in cs {
                if let Some(m) = c.as_object_mut() {
                    m.remove("lastTransitionTime");
                }
            }
        }
        v
    };
    old.map(strip) == Some(strip(new))
}

fn delete_pod(server: &Server, ns: &str, name: &str, opts: &DeleteOptions) -> Result<(), ApiError> {
    server.store.delete(PODS, ns, name, opts).map(|_| ())
}

/// `POST pods/<name>/eviction` (policy/v1 Eviction).
pub(crate) fn evict(
    server: &Arc<Server>,
    ctx: &Ctx,
    _res: &ResourceInfo,
    ns: &str,
    name: &str,
) -> Result<Response, ApiError> {
    let body: Value = serde_json::from_slice(&ctx.body)
        .map_err(|e| ApiError::bad_request(format!("decoding Eviction: {e}")))?;
    let body_name = object::name(&body);
    if !body_name.is_empty() && body_name != name {
        return Err(ApiError::bad_request(
            "name in URL does not match name in Eviction object",
        ));
    }
    let opts_json = body
        .get("deleteOptions")
        .cloned()
        .unwrap_or_else(|| json!({}));
    let dry_run = ctx.dry_run()
        || opts_json
            .get("dryRun")
            .and_then(Value::as_array)
            .is_some_and(|a| a.iter().any(|v| v == "All"));
    let opts = DeleteOptions {
        grace_period_seconds: opts_json.get("gracePeriodSeconds").and_then(Value::as_i64),
        propagation: None,
        precondition_uid: str_at(&opts_json, &["preconditions", "uid"]).map(str::to_string),
        precondition_rv: str_at(&opts_json, &["preconditions", "resourceVersion"])
            .map(str::to_string),
        dry_run,
    };
    let created = || Ok(json_response(StatusCode::CREATED, &success_status(None)));
    for _ in 0..8 {
        let pod = server.store.get(PODS, ns, name)?;
        if let Some(uid) = &opts.precondition_uid
            && uid != object::uid(&pod)
        {
            return Err(ApiError::conflict(
                &QualifiedResource::new("", "pods"),
                name,
                &format!(
                    "Precondition failed: UID in precondition: {uid}, UID in object meta: {}",
                    object::uid(&pod)
                ),
            ));
        }
        let phase = str_at(&pod, &["status", "phase"]).unwrap_or("");
        if matches!(phase, "Succeeded" | "Failed" | "Pending") || object::is_deleting(&pod) {
            delete_pod(server, ns, name, &opts)?;
            return created();
        }
        let labels = object::labels(&pod);
        let pdbs: Vec<Arc<Value>> = server
            .store
            .list(PDBS, Some(ns), None)?
            .items
            .iter()
            .map(|p| p.value().map(Arc::new))
            .collect::<Result<Vec<_>, _>>()?
            .into_iter()
            .filter(|p| pdb_selector(p).matches(&labels))
            .collect();
        if pdbs.len() > 1 {
            return Err(ApiError::internal(
                "This pod has more than one PodDisruptionBudget, which the eviction subresource does not support.",
            ));
        }
        let Some(mut pdb) = pdbs.into_iter().next() else {
            delete_pod(server, ns, name, &opts)?;
            return created();
        };
        let now = server.config.clock.now();
        if server.config.pdb_controller {
            let pods = server.store.list(PODS, Some(ns), None)?.items;
            let status = compute_pdb_status(&server.store, &pdb, &pods, now);
            if !same_status(pdb.get("status"), &status) {
                match write_pdb_status(server, &pdb, status) {
                    Ok(p) => pdb = p,
                    Err(e) if e.code == 409 => continue,
                    Err(e) => return Err(e),
                }
            }
        }
        let pdb_name = object::name(&pdb).to_string();
        let generation = object::i64_at(&pdb, &["metadata", "generation"]).unwrap_or(1);
        let observed = object::i64_at(&pdb, &["status", "observedGeneration"]).unwrap_or(0);
        let budget_error = |detail: String| {
            ApiError::too_many_requests(
                "Cannot evict pod as it would violate the pod's disruption budget.",
            )
            .with_cause("DisruptionBudget", &detail, "")
        };
        if observed < generation {
            return Err(budget_error(format!(
                "The disruption budget {pdb_name} is still being processed by the server."
            )));
        }
        let allowed = object::i64_at(&pdb, &["status", "disruptionsAllowed"]).unwrap_or(0);
        let qr = QualifiedResource::new("policy", "poddisruptionbudgets");
        if allowed < 0 {
            return Err(ApiError::forbidden(
                &qr,
                &pdb_name,
                "pdb disruptions allowed is negative",
            ));
        }
        let disrupted_len = at(&pdb, &["status", "disruptedPods"])
            .and_then(Value::as_object)
            .map(|m| m.len())
            .unwrap_or(0);
        if disrupted_len > 2000 {
            return Err(ApiError::forbidden(
                &qr,
                &pdb_name,
                "DisruptedPods map too big - too many evictions not confirmed by PDB controller",
            ));
        }
        if !pod_ready(&pod) {
            let policy =
                str_at(&pdb, &["spec", "unhealthyPodEvictionPolicy"]).unwrap_or("IfHealthyBudget");
            let current = object::i64_at(&pdb, &["status", "currentHealthy"]).unwrap_or(0);
            let desired = object::i64_at(&pdb, &["status", "desiredHealthy"]).unwrap_or(0);
            if policy == "AlwaysAllow" || (current >= desired && desired > 0) {
                delete_pod(server, ns, name, &opts)?;
                return created();
            }
        }
        if allowed == 0 {
            let current = object::i64_at(&pdb, &["status", "currentHealthy"]).unwrap_or(0);
            let desired = object::i64_at(&pdb, &["status", "desiredHealthy"]).unwrap_or(0);
            return Err(budget_error(format!(
                "The disruption budget {pdb_name} needs {desired} healthy pods and has {current} currently"
            )));
        }
        if dry_run {
            return created();
        }
        let mut status = pdb.get("status").cloned().unwrap_or_else(|| json!({}));
        set_at(&mut status, &["disruptionsAllowed"], json!(allowed - 1));
        set_at(
            &mut status,
            &["disruptedPods", name],
            json!(format_time(now)),
        );
        match write_pdb_status(server, &pdb, status) {
            Ok(_) => {}
            Err(e) if e.code == 409 => continue,
            Err(e) => return Err(e),
        }
        delete_pod(server, ns, name, &opts)?;
        return created();
    }
    Err(ApiError::too_many_requests(
        "too many concurrent evictions; please try again",
    ))
}
