//! Discovery (`/version`, `/api`, `/apis`, APIResourceLists) and the OpenAPI v3 documents
//! kubectl consults to learn which query parameters (`fieldValidation`, `dryRun`) a kind supports.
//!
//! Only the legacy discovery format is served: kubectl asks for aggregated discovery first and
//! falls back when the answer comes back as plain `application/json`.

use serde_json::{Map, Value, json};

use super::Server;
use super::error::ApiError;
use super::registry::{ResourceInfo, Subresource};

/// `/version`.
pub(crate) fn version(server: &Server) -> Value {
    let gv = &server.config.git_version;
    let minor = gv.split('.').nth(1).unwrap_or("34");
    json!({
        "major": "1",
        "minor": minor,
        "emulationMajor": "1",
        "emulationMinor": minor,
        "minCompatibilityMajor": "1",
        "minCompatibilityMinor": minor,
        "gitVersion": gv,
        "gitCommit": "0000000000000000000000000000000000000000",
        "gitTreeState": "clean",
        "buildDate": "2026-01-01T00:00:00Z",
        "goVersion": "go1.24.0",
        "compiler": "gc",
        "platform": "linux/amd64"
    })
}

/// `/api`.
pub(crate) fn api_versions() -> Value {
    json!({
        "kind": "APIVersions",
        "versions": ["v1"],
        "serverAddressByClientCIDRs": [{"clientCIDR": "0.0.0.0/0", "serverAddress": "127.0.0.1"}]
    })
}

fn group_json(name: &str, versions: &[String]) -> Value {
    let vs: Vec<Value> = versions
        .iter()
        .map(|v| json!({"groupVersion": format!("{name}/{v}"), "version": v}))
        .collect();
    let preferred = vs.first().cloned().unwrap_or(Value::Null);
    json!({"name": name, "versions": vs, "preferredVersion": preferred})
}

/// `/apis`.
pub(crate) fn api_group_list(server: &Server) -> Value {
    let groups: Vec<Value> = server
        .registry
        .groups()
        .iter()
        .filter(|(g, _)| !g.is_empty())
        .map(|(g, vs)| group_json(g, vs))
        .collect();
    json!({"kind": "APIGroupList", "apiVersion": "v1", "groups": groups})
}

/// `/apis/<group>`.
pub(crate) fn api_group(server: &Server, group: &str) -> Result<Value, ApiError> {
    let groups = server.registry.groups();
    let versions = groups.get(group).ok_or_else(ApiError::not_found_path)?;
    let mut g = group_json(group, versions);
    if let Some(m) = g.as_object_mut() {
        m.insert("kind".into(), json!("APIGroup"));
        m.insert("apiVersion".into(), json!("v1"));
    }
    Ok(g)
}

fn resource_json(r: &ResourceInfo) -> Vec<Value> {
    let mut main = Map::new();
    main.insert("name".into(), json!(r.plural));
    main.insert("singularName".into(), json!(r.singular));
    main.insert("namespaced".into(), json!(r.namespaced));
    main.insert("kind".into(), json!(r.kind));
    main.insert("verbs".into(), json!(r.verbs));
    if !r.short_names.is_empty() {
        main.insert("shortNames".into(), json!(r.short_names));
    }
    if !r.categories.is_empty() {
        main.insert("categories".into(), json!(r.categories));
    }
    main.insert("storageVersionHash".into(), json!(storage_hash(&r.storage)));
    let mut out = vec![Value::Object(main)];
    for sub in &r.subresources {
        let name = format!("{}/{}", r.plural, sub.name());
        let entry = match sub {
            Subresource::Status => {
                json!({"name": name, "singularName": "", "namespaced": r.namespaced, "kind": r.kind, "verbs": ["get", "patch", "update"]})
            }
            Subresource::Scale(_) => {
                json!({"name": name, "singularName": "", "namespaced": r.namespaced, "group": "autoscaling", "version": "v1", "kind": "Scale", "verbs": ["get", "patch", "update"]})
            }
            Subresource::Binding => {
                json!({"name": name, "singularName": "", "namespaced": true, "kind": "Binding", "verbs": ["create"]})
            }
            Subresource::Eviction => {
                json!({"name": name, "singularName": "", "namespaced": true, "group": "policy", "version": "v1", "kind": "Eviction", "verbs": ["create"]})
            }
        };
        out.push(entry);
    }
    out
}

fn storage_hash(s: &str) -> String {
    let h = fnv(s.as_bytes());
    format!("{:x}", h).chars().take(11).collect()
}

fn fnv(bytes: &[u8]) -> u64 {
    let mut h: u64 = 0xcbf2_9ce4_8422_2325;
    for b in bytes {
        h ^= u64::from(*b);
        h = h.wrapping_mul(0x0100_0000_01b3);
    }
    h
}

/// `/api/v1` and `/apis/<group>/<version>`.
pub(crate) fn resource_list(
    server: &Server,
    group: &str,
    version: &str,
) -> Result<Value, ApiError> {
    let resources = server.registry.in_group_version(group, version);
    if resources.is_empty() {
        return Err(ApiError::not_found_path());
    }
    let gv = if group.is_empty() {
        version.to_string()
    } else {
        format!("{group}/{version}")
    };
    let list: Vec<Value> = resources.iter().flat_map(|r| resource_json(r)).collect();
    Ok(
        json!({"kind": "APIResourceList", "apiVersion": "v1", "groupVersion": gv, "resources": list}),
    )
}

fn gv_path(group: &str, version: &str) -> String {
    if group.is_empty() {
        format!("api/{version}")
    } else {
        format!("apis/{group}/{version}")
    }
}

/// `/openapi/v3`: one entry per group/version.
pub(crate) fn openapi_v3_root(server: &Server) -> Value {
    let mut paths = Map::new();
    for (group, versions) in server.registry.groups() {
        for version in versions {
            let path = gv_path(&group, &version);
            let doc = openapi_doc(server, &group, &version);
            let hash = format!("{:016X}", fnv(doc.to_string().as_bytes()));
            paths.insert(
                path.clone(),
                json!({"serverRelativeURL": format!("/openapi/v3/{path}?hash={hash}")}),
            );
        }
    }
    json!({"paths": paths})
}

/// `/openapi/v3/<api|apis>/...`.
pub(crate) fn openapi_v3_doc(server: &Server, rest: &[&str]) -> Result<Value, ApiError> {
    let (group, version) = match rest {
        ["api", version] => ("", *version),
        ["apis", group, version] => (*group, *version),
        _ => return Err(ApiError::not_found_path()),
    };
    if server.registry.in_group_version(group, version).is_empty() {
        return Err(ApiError::not_found_path());
    }
    Ok(openapi_doc(server, group, version))
}

fn query_param(name: &str, ty: &str) -> Value {
    json!({"name": name, "in": "query", "schema": {"type": ty, "uniqueItems": true}})
}

fn openapi_doc(server: &Server, group: &str, version: &str) -> Value {
    let mut paths = Map::new();
    let mut schemas = Map::new();
    for r in server.registry.in_group_version(group, version) {
        let gvk = json!({"group": r.group, "version": r.version, "kind": r.kind});
        let prefix = if group.is_empty() {
            format!("/api/{version}")
        } else {
            format!("/apis/{group}/{version}")
        };
        let item_path = if r.namespaced {
            format!("{prefix}/namespaces/{{namespace}}/{}/{{name}}", r.plural)
        } else {
            format!("{prefix}/{}/{{name}}", r.plural)
        };
        // No strategic-merge content type: kubectl then builds strategic patches for built-ins from
        // its compiled-in types and merge patches for custom resources, as with a real server.
        let patch_types = [
            "application/json-patch+json",
            "application/merge-patch+json",
            "application/apply-patch+yaml",
        ];
        let content: Map<String, Value> = patch_types
            .iter()
            .map(|t| (t.to_string(), json!({"schema": {"type": "object"}})))
            .collect();
        let write_params = json!([
            query_param("dryRun", "string"),
            query_param("fieldManager", "string"),
            query_param("fieldValidation", "string"),
            query_param("force", "boolean"),
            query_param("pretty", "string"),
        ]);
        paths.insert(
            item_path,
            json!({
                "get": {"x-kubernetes-group-version-kind": gvk, "x-kubernetes-action": "get", "responses": {"200": {"description": "OK"}}},
                "put": {"x-kubernetes-group-version-kind": gvk, "x-kubernetes-action": "put", "parameters": write_params, "responses": {"200": {"description": "OK"}}},
                "patch": {"x-kubernetes-group-version-kind": gvk, "x-kubernetes-action": "patch", "parameters": write_params, "requestBody": {"content": content}, "responses": {"200": {"description": "OK"}}},
                "delete": {"x-kubernetes-group-version-kind": gvk, "x-kubernetes-action": "delete", "parameters": [query_param("dryRun", "string")], "responses": {"200": {"description": "OK"}}}
            }),
        );
        if let Some(schema) = super::custom::version_schema(&r) {
            let mut schema = schema;
            if let Some(m) = schema.as_object_mut() {
                m.insert("x-kubernetes-group-version-kind".into(), json!([gvk]));
            }
            let reversed: Vec<&str> = r.group.split('.').rev().collect();
            schemas.insert(
                format!("{}.{}.{}", reversed.join("."), r.version, r.kind),
                schema,
            );
        }
    }
    json!({
        "openapi": "3.0.0",
        "info": {"title": "Kubernetes", "version": server.config.git_version},
        "paths": paths,
        "components": {"schemas": schemas}
    })
}
