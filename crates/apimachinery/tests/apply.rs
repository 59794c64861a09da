//! Server-side apply and managedFields bookkeeping, as sequences of writes by several managers.
#![allow(clippy::unwrap_used, clippy::expect_used)] // helpers of a test binary may panic

use karpenter_apimachinery::apply::{
    ApplyError, Operation, managed_field_sets, server_side_apply, update_managed_fields,
};
use karpenter_apimachinery::patch::{BuiltinSchema, CrdSchema, merge_patch};
use serde_json::{Value, json};

/// One write in a scenario.
enum Step {
    Apply {
        manager: &'static str,
        config: Value,
        force: bool,
        subresource: Option<&'static str>,
    },
    /// A non-apply write: the merge patch turns the current object into the new one.
    Update { manager: &'static str, patch: Value },
}

fn apply(manager: &'static str, config: Value) -> Step {
    Step::Apply {
        manager,
        config,
        force: false,
        subresource: None,
    }
}

fn force_apply(manager: &'static str, config: Value) -> Step {
    Step::Apply {
        manager,
        config,
        force: true,
        subresource: None,
    }
}

fn apply_status(manager: &'static str, config: Value) -> Step {
    Step::Apply {
        manager,
        config,
        force: false,
        subresource: Some("status"),
    }
}

fn update(manager: &'static str, patch: Value) -> Step {
    Step::Update { manager, patch }
}

/// What the scenario must end with.
#[derive(Default)]
struct Expect {
    object: Option<Value>,
    owners: Vec<(&'static str, Vec<&'static str>)>,
    error: Option<&'static str>,
}

fn expect() -> Expect {
    Expect::default()
}

impl Expect {
    fn object(mut self, object: Value) -> Self {
        self.object = Some(object);
        self
    }
    fn owner(mut self, manager: &'static str, fields: &[&'static str]) -> Self {
        self.owners.push((manager, fields.to_vec()));
        self
    }
    fn error(mut self, message: &'static str) -> Self {
        self.error = Some(message);
        self
    }
}

fn deployment_schema() -> BuiltinSchema {
    BuiltinSchema::for_kind("apps", "v1", "Deployment").expect("deployment schema")
}

fn strip_managed_fields(object: &Value) -> Value {
    let mut copy = object.clone();
    copy["metadata"]
        .as_object_mut()
        .map(|m| m.remove("managedFields"));
    copy
}

/// Runs the steps in order (each at a later time) and checks the outcome. When an error is
/// expected it must come from the last step, with everything before succeeding.
fn check(
    name: &str,
    schema: &dyn karpenter_apimachinery::patch::PatchSchema,
    steps: Vec<Step>,
    want: Expect,
) {
    let mut object: Option<Value> = None;
    let count = steps.len();
    for (i, step) in steps.into_iter().enumerate() {
        let now = format!("2026-01-01T00:00:{i:02}Z");
        let result = match step {
            Step::Apply {
                manager,
                config,
                force,
                subresource,
            } => server_side_apply(
                object.as_ref(),
                &config,
                manager,
                force,
                schema,
                &now,
                subresource,
            ),
            Step::Update { manager, patch } => {
                let current = object.clone().unwrap_or(json!({}));
                let new = merge_patch(&current, &patch);
                update_managed_fields(object.as_ref(), &new, manager, schema, &now, None)
            }
        };
        match result {
            Ok(next) => object = Some(next),
            Err(e) if i + 1 == count && want.error.is_some() => {
                assert_eq!(Some(e.to_string().as_str()), want.error, "{name}");
                return;
            }
            Err(e) => panic!("{name}: step {i} failed: {e}"),
        }
    }
    assert!(
        want.error.is_none(),
        "{name}: expected error {:?}",
        want.error
    );
    let object = object.expect("some step ran");
    if let Some(expected) = want.object {
        assert_eq!(strip_managed_fields(&object), expected, "{name}: object");
    }
    if !want.owners.is_empty() {
        let sets = managed_field_sets(&object).expect("managed fields decode");
        let got: Vec<(String, Vec<String>)> =
            sets.into_iter().map(|s| (s.manager, s.fields)).collect();
        let want_owners: Vec<(String, Vec<String>)> = want
            .owners
            .iter()
            .map(|(m, f)| (m.to_string(), f.iter().map(|s| s.to_string()).collect()))
            .collect();
        assert_eq!(got, want_owners, "{name}: owners");
    }
}

fn deploy(spec: Value) -> Value {
    json!({"apiVersion": "apps/v1", "kind": "Deployment", "metadata": {"name": "web", "namespace": "default"}, "spec": spec})
}

#[test]
fn server_side_apply_scenarios() {
    let schema = deployment_schema();
    let s = &schema;

    check(
        "create",
        s,
        vec![apply("kubectl", deploy(json!({"replicas": 2, "template": {"spec": {"containers": [{"name": "nginx", "image": "nginx:1"}]}}})))],
        expect()
            .object(deploy(json!({"replicas": 2, "template": {"spec": {"containers": [{"name": "nginx", "image": "nginx:1"}]}}})))
            .owner("kubectl", &[
                ".spec.replicas",
                ".spec.template.spec.containers[name=\"nginx\"]",
                ".spec.template.spec.containers[name=\"nginx\"].image",
                ".spec.template.spec.containers[name=\"nginx\"].name",
            ]),
    );
    check(
        "removing a field from the configuration removes it from the object",
        s,
        vec![
            apply("kubectl", deploy(json!({"replicas": 2, "paused": true}))),
            apply("kubectl", deploy(json!({"replicas": 2}))),
        ],
        expect()
            .object(deploy(json!({"replicas": 2})))
            .owner("kubectl", &[".spec.replicas"]),
    );
    check(
        "removing the last label drops the emptied labels map",
        s,
        vec![
            apply("kubectl", json!({"apiVersion": "apps/v1", "kind": "Deployment", "metadata": {"name": "web", "labels": {"a": "1"}}, "spec": {"replicas": 1}})),
            apply("kubectl", json!({"apiVersion": "apps/v1", "kind": "Deployment", "metadata": {"name": "web"}, "spec": {"replicas": 1}})),
        ],
        expect().object(json!({"apiVersion": "apps/v1", "kind": "Deployment", "metadata": {"name": "web"}, "spec": {"replicas": 1}})),
    );
    check(
        "two managers share a field applied with the same value",
        s,
        vec![
            apply("a", deploy(json!({"replicas": 3}))),
            apply("b", deploy(json!({"replicas": 3, "paused": false}))),
        ],
        expect()
            .object(deploy(json!({"replicas": 3, "paused": false})))
            .owner("a", &[".spec.replicas"])
            .owner("b", &[".spec.paused", ".spec.replicas"]),
    );
    check(
        "a shared field survives when one sharer stops applying it",
        s,
        vec![
            apply("a", deploy(json!({"replicas": 3, "paused": true}))),
            apply("b", deploy(json!({"replicas": 3}))),
            apply("a", deploy(json!({"paused": true}))),
        ],
        expect()
            .object(deploy(json!({"replicas": 3, "paused": true})))
            // Entries sort by time: b's apply is now older than a's.
            .owner("b", &[".spec.replicas"])
            .owner("a", &[".spec.paused"]),
    );
    check(
        "conflict with another applier",
        s,
        vec![
            apply("a", deploy(json!({"replicas": 3}))),
            apply("b", deploy(json!({"replicas": 5}))),
        ],
        expect().error("Apply failed with 1 conflict: conflict with \"a\": .spec.replicas"),
    );
    check(
        "conflict with an updater names its API version",
        s,
        vec![
            update("kubectl-client-side-apply", deploy(json!({"replicas": 1}))),
            apply("kubectl", deploy(json!({"replicas": 2}))),
        ],
        expect().error(
            "Apply failed with 1 conflict: conflict with \"kubectl-client-side-apply\" using apps/v1: .spec.replicas",
        ),
    );
    check(
        "several conflicts are grouped by manager",
        s,
        vec![
            apply("a", deploy(json!({"replicas": 3, "paused": true}))),
            update("hpa", json!({"spec": {"minReadySeconds": 5}})),
            apply("b", deploy(json!({"replicas": 5, "paused": false, "minReadySeconds": 6}))),
        ],
        expect().error(
            "Apply failed with 3 conflicts: conflicts with \"a\":\n- .spec.paused\n- .spec.replicas\nconflicts with \"hpa\" using apps/v1:\n- .spec.minReadySeconds",
        ),
    );
    check(
        "force takes ownership",
        s,
        vec![
            apply("a", deploy(json!({"replicas": 3, "paused": true}))),
            force_apply("b", deploy(json!({"replicas": 5}))),
        ],
        expect()
            .object(deploy(json!({"replicas": 5, "paused": true})))
            .owner("a", &[".spec.paused"])
            .owner("b", &[".spec.replicas"]),
    );
    check(
        "after a forced takeover the old owner no longer prunes the field",
        s,
        vec![
            apply("a", deploy(json!({"replicas": 3, "paused": true}))),
            force_apply("b", deploy(json!({"replicas": 5}))),
            apply("a", deploy(json!({"paused": true}))),
        ],
        expect().object(deploy(json!({"replicas": 5, "paused": true}))),
    );
    check(
        "map-list items are owned by key",
        s,
        vec![
            apply(
                "a",
                deploy(
                    json!({"template": {"spec": {"containers": [{"name": "app", "image": "app:1"}]}}}),
                ),
            ),
            apply(
                "b",
                deploy(
                    json!({"template": {"spec": {"containers": [{"name": "sidecar", "image": "proxy:1"}]}}}),
                ),
            ),
        ],
        expect()
            .object(deploy(json!({"template": {"spec": {"containers": [
                {"name": "app", "image": "app:1"},
                {"name": "sidecar", "image": "proxy:1"}
            ]}}})))
            .owner(
                "a",
                &[
                    ".spec.template.spec.containers[name=\"app\"]",
                    ".spec.template.spec.containers[name=\"app\"].image",
                    ".spec.template.spec.containers[name=\"app\"].name",
                ],
            )
            .owner(
                "b",
                &[
                    ".spec.template.spec.containers[name=\"sidecar\"]",
                    ".spec.template.spec.containers[name=\"sidecar\"].image",
                    ".spec.template.spec.containers[name=\"sidecar\"].name",
                ],
            ),
    );
    check(
        "dropping an owned map-list item removes only that item",
        s,
        vec![
            apply(
                "a",
                deploy(
                    json!({"template": {"spec": {"containers": [{"name": "app", "image": "app:1"}, {"name": "debug", "image": "busybox"}]}}}),
                ),
            ),
            apply(
                "b",
                deploy(
                    json!({"template": {"spec": {"containers": [{"name": "sidecar", "image": "proxy:1"}]}}}),
                ),
            ),
            apply(
                "a",
                deploy(
                    json!({"template": {"spec": {"containers": [{"name": "app", "image": "app:2"}]}}}),
                ),
            ),
        ],
        expect().object(deploy(json!({"template": {"spec": {"containers": [
            {"name": "app", "image": "app:2"},
            {"name": "sidecar", "image": "proxy:1"}
        ]}}}))),
    );
    check(
        "a field inside another manager's item conflicts by its full path",
        s,
        vec![
            apply("a", deploy(json!({"template": {"spec": {"containers": [{"name": "app", "image": "app:1"}]}}}))),
            apply("b", deploy(json!({"template": {"spec": {"containers": [{"name": "app", "image": "app:2"}]}}}))),
        ],
        expect().error(
            "Apply failed with 1 conflict: conflict with \"a\": .spec.template.spec.containers[name=\"app\"].image",
        ),
    );
    check(
        "set lists merge by value and prune by value",
        s,
        vec![
            apply("a", json!({"apiVersion": "apps/v1", "kind": "Deployment", "metadata": {"name": "web", "finalizers": ["x", "shared"]}})),
            apply("b", json!({"apiVersion": "apps/v1", "kind": "Deployment", "metadata": {"name": "web", "finalizers": ["y", "shared"]}})),
            apply("a", json!({"apiVersion": "apps/v1", "kind": "Deployment", "metadata": {"name": "web", "finalizers": []}})),
        ],
        expect()
            .object(json!({"apiVersion": "apps/v1", "kind": "Deployment", "metadata": {"name": "web", "finalizers": ["y", "shared"]}}))
            .owner("b", &[".metadata.finalizers[=\"shared\"]", ".metadata.finalizers[=\"y\"]"]),
    );
    check(
        "atomic lists are owned as a unit and conflict as a unit",
        s,
        vec![
            apply(
                "a",
                deploy(json!({"template": {"spec": {"tolerations": [{"key": "a"}]}}})),
            ),
            apply(
                "b",
                deploy(json!({"template": {"spec": {"tolerations": [{"key": "b"}]}}})),
            ),
        ],
        expect().error(
            "Apply failed with 1 conflict: conflict with \"a\": .spec.template.spec.tolerations",
        ),
    );
    check(
        "an atomic struct (label selector) is one field",
        s,
        vec![apply(
            "a",
            deploy(json!({"selector": {"matchLabels": {"app": "web"}}})),
        )],
        expect().owner("a", &[".spec.selector"]),
    );
    check(
        "an update takes changed fields from the applier",
        s,
        vec![
            apply("kubectl", deploy(json!({"replicas": 3, "paused": false}))),
            update("hpa", json!({"spec": {"replicas": 7}})),
        ],
        expect()
            .object(deploy(json!({"replicas": 7, "paused": false})))
            .owner("kubectl", &[".spec.paused"])
            .owner("hpa", &[".spec.replicas"]),
    );
    check(
        "an applier re-applying a field an updater took conflicts",
        s,
        vec![
            apply("kubectl", deploy(json!({"replicas": 3}))),
            update("hpa", json!({"spec": {"replicas": 7}})),
            apply("kubectl", deploy(json!({"replicas": 3}))),
        ],
        expect().error(
            "Apply failed with 1 conflict: conflict with \"hpa\" using apps/v1: .spec.replicas",
        ),
    );
    check(
        "an update that deletes a field removes it from every owner",
        s,
        vec![
            apply("kubectl", deploy(json!({"replicas": 3, "paused": true}))),
            update("janitor", json!({"spec": {"paused": null}})),
        ],
        expect()
            .object(deploy(json!({"replicas": 3})))
            .owner("kubectl", &[".spec.replicas"]),
    );
    check(
        "applying the live value of an updater's field shares it",
        s,
        vec![
            update("kubectl-create", deploy(json!({"replicas": 1}))),
            apply("kubectl", deploy(json!({"replicas": 1}))),
        ],
        expect()
            .owner("kubectl", &[".spec.replicas"])
            .owner("kubectl-create", &[".spec.replicas"]),
    );
    check(
        "an updater's co-ownership does not stop the applier pruning a field",
        s,
        vec![
            update(
                "kubectl-create",
                deploy(json!({"replicas": 1, "paused": true})),
            ),
            apply("kubectl", deploy(json!({"replicas": 1, "paused": true}))),
            apply("kubectl", deploy(json!({"paused": true}))),
        ],
        expect()
            .object(deploy(json!({"paused": true})))
            .owner("kubectl", &[".spec.paused"])
            .owner("kubectl-create", &[".spec.paused"]),
    );
    check(
        "main-resource apply ignores status; status apply only touches status",
        s,
        vec![
            apply("kubectl", json!({"apiVersion": "apps/v1", "kind": "Deployment", "metadata": {"name": "web"}, "spec": {"replicas": 1}, "status": {"replicas": 99}})),
            apply_status("controller", json!({"apiVersion": "apps/v1", "kind": "Deployment", "metadata": {"name": "web"}, "spec": {"replicas": 50}, "status": {"replicas": 1}})),
        ],
        expect()
            .object(json!({"apiVersion": "apps/v1", "kind": "Deployment", "metadata": {"name": "web"}, "spec": {"replicas": 1}, "status": {"replicas": 1}}))
            .owner("kubectl", &[".spec.replicas"])
            .owner("controller", &[".status.replicas"]),
    );
    check(
        "managedFields in an applied configuration are rejected",
        s,
        vec![apply(
            "a",
            json!({"apiVersion": "apps/v1", "kind": "Deployment", "metadata": {"name": "web", "managedFields": [{"manager": "x"}]}}),
        )],
        expect().error("metadata.managedFields must be nil"),
    );
    check(
        "a keyed item without its key is rejected",
        s,
        vec![apply(
            "a",
            deploy(json!({"template": {"spec": {"containers": [{"image": "x"}]}}})),
        )],
        expect().error(
            ".spec.template.spec.containers: associative list item omits key field \"name\"",
        ),
    );
    check(
        "duplicate keys are rejected",
        s,
        vec![apply(
            "a",
            deploy(json!({"template": {"spec": {"containers": [{"name": "x"}, {"name": "x"}]}}})),
        )],
        expect().error(".spec.template.spec.containers[name=\"x\"]: duplicate entries for key"),
    );
    check(
        "apiVersion and kind are required",
        s,
        vec![apply("a", json!({"metadata": {"name": "x"}}))],
        expect().error("the applied configuration: apiVersion must be set"),
    );
}

#[test]
fn reapplying_the_same_configuration_is_a_no_op() {
    let schema = deployment_schema();
    let config = deploy(
        json!({"replicas": 2, "template": {"spec": {"containers": [{"name": "nginx", "image": "nginx:1"}]}}}),
    );
    let first = server_side_apply(
        None,
        &config,
        "kubectl",
        false,
        &schema,
        "2026-01-01T00:00:00Z",
        None,
    )
    .unwrap();
    let second = server_side_apply(
        Some(&first),
        &config,
        "kubectl",
        false,
        &schema,
        "2026-01-01T01:00:00Z",
        None,
    )
    .unwrap();
    assert_eq!(first, second, "byte-identical, old timestamp kept");
    let third = server_side_apply(Some(&second), &deploy(json!({"replicas": 3, "template": {"spec": {"containers": [{"name": "nginx", "image": "nginx:1"}]}}})), "kubectl", false, &schema, "2026-01-01T02:00:00Z", None).unwrap();
    assert_eq!(
        third["metadata"]["managedFields"][0]["time"],
        "2026-01-01T02:00:00Z"
    );
}

#[test]
fn managed_fields_golden_encoding() {
    let schema = deployment_schema();
    let config = json!({
        "apiVersion": "apps/v1",
        "kind": "Deployment",
        "metadata": {"name": "web", "namespace": "default", "labels": {"app": "web"}},
        "spec": {
            "replicas": 2,
            "selector": {"matchLabels": {"app": "web"}},
            "template": {
                "metadata": {"labels": {"app": "web"}},
                "spec": {"containers": [{"name": "nginx", "image": "nginx:1", "ports": [{"containerPort": 80}]}]}
            }
        }
    });
    let out = server_side_apply(
        None,
        &config,
        "kubectl",
        false,
        &schema,
        "2026-01-01T00:00:00Z",
        None,
    )
    .unwrap();
    let want = json!([{
        "manager": "kubectl",
        "operation": "Apply",
        "apiVersion": "apps/v1",
        "time": "2026-01-01T00:00:00Z",
        "fieldsType": "FieldsV1",
        "fieldsV1": {
            "f:metadata": {"f:labels": {"f:app": {}}},
            "f:spec": {
                "f:replicas": {},
                "f:selector": {},
                "f:template": {
                    "f:metadata": {"f:labels": {"f:app": {}}},
                    "f:spec": {"f:containers": {"k:{\"name\":\"nginx\"}": {
                        ".": {},
                        "f:image": {},
                        "f:name": {},
                        "f:ports": {"k:{\"containerPort\":80}": {".": {}, "f:containerPort": {}}}
                    }}}
                }
            }
        }
    }]);
    assert_eq!(out["metadata"]["managedFields"], want);
    assert_eq!(strip_managed_fields(&out), config);

    // The encoding reads back to the same ownership.
    let sets = managed_field_sets(&out).unwrap();
    assert_eq!(sets.len(), 1);
    assert_eq!(sets[0].operation, Operation::Apply);
    assert!(sets[0].fields.contains(
        &".spec.template.spec.containers[name=\"nginx\"].ports[containerPort=80]".to_string()
    ));
}

#[test]
fn update_records_created_maps_with_a_dot() {
    let schema = BuiltinSchema::for_kind("", "v1", "Pod").unwrap();
    let pod = json!({
        "apiVersion": "v1", "kind": "Pod",
        "metadata": {"name": "p", "labels": {"app": "web"}, "finalizers": ["f"]},
        "spec": {"containers": [{"name": "c", "image": "i"}], "nodeName": "n1"}
    });
    let out = update_managed_fields(
        None,
        &pod,
        "kubectl-create",
        &schema,
        "2026-01-01T00:00:00Z",
        None,
    )
    .unwrap();
    assert_eq!(
        out["metadata"]["managedFields"],
        json!([{
            "manager": "kubectl-create",
            "operation": "Update",
            "apiVersion": "v1",
            "time": "2026-01-01T00:00:00Z",
            "fieldsType": "FieldsV1",
            "fieldsV1": {
                "f:metadata": {"f:finalizers": {".": {}, "v:\"f\"": {}}, "f:labels": {".": {}, "f:app": {}}},
                "f:spec": {
                    // The server shows no "." here only because Go serialises an empty
                    // PodSpec with `containers: null`; we record the list as created.
                    "f:containers": {".": {}, "k:{\"name\":\"c\"}": {".": {}, "f:image": {}, "f:name": {}}},
                    "f:nodeName": {}
                }
            }
        }])
    );
    // An update that changes nothing records nothing new.
    let again = update_managed_fields(
        Some(&out),
        &out,
        "other",
        &schema,
        "2026-01-01T00:01:00Z",
        None,
    )
    .unwrap();
    assert_eq!(again, out);
    // `[{}]` clears managedFields.
    let mut reset = out.clone();
    reset["metadata"]["managedFields"] = json!([{}]);
    let cleared = update_managed_fields(
        Some(&out),
        &reset,
        "x",
        &schema,
        "2026-01-01T00:02:00Z",
        None,
    )
    .unwrap();
    assert!(cleared["metadata"].get("managedFields").is_none());
    // Undecodable client-sent entries fall back to the stored ones.
    let mut garbage = out.clone();
    garbage["metadata"]["managedFields"] = json!([{"manager": "x", "operation": "Frob"}]);
    let kept = update_managed_fields(
        Some(&out),
        &garbage,
        "x",
        &schema,
        "2026-01-01T00:02:30Z",
        None,
    )
    .unwrap();
    assert_eq!(
        kept["metadata"]["managedFields"],
        out["metadata"]["managedFields"]
    );
    // Client-sent entries that decode replace the stored ones.
    let mut replaced = out.clone();
    replaced["metadata"]["managedFields"] = json!([{"manager": "other", "operation": "Update", "apiVersion": "v1", "fieldsType": "FieldsV1", "fieldsV1": {"f:spec": {"f:nodeName": {}}}}]);
    let taken = update_managed_fields(
        Some(&out),
        &replaced,
        "x",
        &schema,
        "2026-01-01T00:02:40Z",
        None,
    )
    .unwrap();
    assert_eq!(managed_field_sets(&taken).unwrap().len(), 1);
    assert_eq!(managed_field_sets(&taken).unwrap()[0].manager, "other");
    // An empty list is not a reset: the old entries stay.
    let mut empty = out.clone();
    empty["metadata"]["managedFields"] = json!([]);
    let kept = update_managed_fields(
        Some(&out),
        &empty,
        "x",
        &schema,
        "2026-01-01T00:03:00Z",
        None,
    )
    .unwrap();
    assert_eq!(
        kept["metadata"]["managedFields"],
        out["metadata"]["managedFields"]
    );
}

#[test]
fn crd_apply_uses_list_map_keys() {
    let schema = CrdSchema::from_openapi(&json!({
        "type": "object",
        "properties": {"spec": {"type": "object", "properties": {
            "taints": {"type": "array", "x-kubernetes-list-type": "map", "x-kubernetes-list-map-keys": ["key", "effect"]},
            "requirements": {"type": "array"}
        }}}
    }));
    let np = |spec: Value| json!({"apiVersion": "karpenter.sh/v1", "kind": "NodePool", "metadata": {"name": "default"}, "spec": spec});
    check(
        "CRD map-list with compound keys",
        &schema,
        vec![
            apply("a", np(json!({"taints": [{"key": "k", "effect": "NoSchedule"}], "requirements": [{"key": "x"}]}))),
            apply("b", np(json!({"taints": [{"key": "k", "effect": "NoExecute"}]}))),
        ],
        expect()
            .object(np(json!({"taints": [{"key": "k", "effect": "NoSchedule"}, {"key": "k", "effect": "NoExecute"}], "requirements": [{"key": "x"}]})))
            .owner("a", &[
                ".spec.requirements",
                ".spec.taints[effect=\"NoSchedule\",key=\"k\"]",
                ".spec.taints[effect=\"NoSchedule\",key=\"k\"].effect",
                ".spec.taints[effect=\"NoSchedule\",key=\"k\"].key",
            ])
            .owner("b", &[
                ".spec.taints[effect=\"NoExecute\",key=\"k\"]",
                ".spec.taints[effect=\"NoExecute\",key=\"k\"].effect",
                ".spec.taints[effect=\"NoExecute\",key=\"k\"].key",
            ]),
    );
    check(
        "CRD atomic list conflicts as a whole",
        &schema,
        vec![
            apply("a", np(json!({"requirements": [{"key": "x"}]}))),
            apply(
                "b",
                np(json!({"requirements": [{"key": "x"}, {"key": "y"}]})),
            ),
        ],
        expect().error("Apply failed with 1 conflict: conflict with \"a\": .spec.requirements"),
    );
}

#[test]
fn conflict_error_parts() {
    let schema = deployment_schema();
    let live = server_side_apply(
        None,
        &deploy(json!({"replicas": 1})),
        "kubelet",
        false,
        &schema,
        "t",
        Some("status"),
    )
    .unwrap();
    let live = update_managed_fields(
        Some(&live),
        &merge_patch(&live, &json!({"spec": {"replicas": 2}})),
        "ctl",
        &schema,
        "t",
        None,
    )
    .unwrap();
    let err = server_side_apply(
        Some(&live),
        &deploy(json!({"replicas": 3})),
        "me",
        false,
        &schema,
        "t",
        None,
    )
    .unwrap_err();
    let ApplyError::Conflicts(conflicts) = &err else {
        panic!("want conflicts, got {err}");
    };
    assert_eq!(conflicts.len(), 1);
    assert_eq!(
        conflicts[0].cause_message(),
        "conflict with \"ctl\" using apps/v1"
    );
    assert_eq!(conflicts[0].field_path, ".spec.replicas");
    assert_eq!(err.category(), "conflict");
    let status_owner = karpenter_apimachinery::apply::Conflict {
        manager: "kubelet".into(),
        operation: Operation::Update,
        api_version: "v1".into(),
        subresource: Some("status".into()),
        field_path: ".status.phase".into(),
    };
    assert_eq!(
        status_owner.manager_display(),
        "\"kubelet\" with subresource \"status\" using v1"
    );
}

#[test]
fn error_statuses() {
    let schema = deployment_schema();
    let with_managed_fields = json!({"apiVersion": "apps/v1", "kind": "Deployment", "metadata": {"name": "w", "managedFields": []}});
    let cases: Vec<(Value, &str, u16, &str)> = vec![
        (
            with_managed_fields,
            "m",
            400,
            "metadata.managedFields must be nil",
        ),
        (deploy(json!({})), "", 400, "requires a fieldManager"),
        (
            deploy(json!({"template": {"spec": {"containers": [{"image": "x"}]}}})),
            "m",
            422,
            "omits key field",
        ),
    ];
    for (config, manager, status, fragment) in cases {
        let err = server_side_apply(None, &config, manager, false, &schema, "t", None).unwrap_err();
        assert_eq!(err.http_status(), status, "{err}");
        assert!(err.to_string().contains(fragment), "{err}");
    }
    let conflict = ApplyError::Conflicts(vec![]);
    assert_eq!(conflict.http_status(), 409);
}
