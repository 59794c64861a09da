//! JSON patch (RFC 6902 appendix A), JSON merge patch (RFC 7386 appendix A) and strategic
//! merge patch against the built-in and CRD schemas.
#![allow(clippy::unwrap_used, clippy::expect_used)] // helpers of a test binary may panic

use karpenter_apimachinery::patch::{
    BuiltinSchema, CrdSchema, ListStrategy, NoSchema, PatchSchema, json_patch, merge_patch,
    strategic_merge_patch,
};
use serde_json::{Value, json};

/// Expected outcome of a patch: the resulting document, or an error containing a fragment.
enum Want {
    Doc(Value),
    Error(&'static str),
}

fn doc(v: Value) -> Want {
    Want::Doc(v)
}

fn fails(fragment: &'static str) -> Want {
    Want::Error(fragment)
}

fn check_result<E: std::fmt::Display>(name: &str, got: Result<Value, E>, want: Want) {
    match (got, want) {
        (Ok(got), Want::Doc(want)) => assert_eq!(got, want, "{name}"),
        (Err(e), Want::Error(fragment)) => {
            assert!(
                e.to_string().contains(fragment),
                "{name}: {e} lacks {fragment:?}"
            )
        }
        (Ok(got), Want::Error(fragment)) => panic!("{name}: want error {fragment:?}, got {got}"),
        (Err(e), Want::Doc(want)) => panic!("{name}: want {want}, got error {e}"),
    }
}

fn check_json_patch(name: &str, target: Value, patch: Value, want: Want) {
    let before = target.clone();
    check_result(name, json_patch(&target, &patch), want);
    assert_eq!(target, before, "{name}: input untouched");
}

#[test]
fn rfc6902_appendix_a() {
    check_json_patch(
        "A.1 add object member",
        json!({"foo": "bar"}),
        json!([{"op": "add", "path": "/baz", "value": "qux"}]),
        doc(json!({"baz": "qux", "foo": "bar"})),
    );
    check_json_patch(
        "A.2 add array element",
        json!({"foo": ["bar", "baz"]}),
        json!([{"op": "add", "path": "/foo/1", "value": "qux"}]),
        doc(json!({"foo": ["bar", "qux", "baz"]})),
    );
    check_json_patch(
        "A.3 remove object member",
        json!({"baz": "qux", "foo": "bar"}),
        json!([{"op": "remove", "path": "/baz"}]),
        doc(json!({"foo": "bar"})),
    );
    check_json_patch(
        "A.4 remove array element",
        json!({"foo": ["bar", "qux", "baz"]}),
        json!([{"op": "remove", "path": "/foo/1"}]),
        doc(json!({"foo": ["bar", "baz"]})),
    );
    check_json_patch(
        "A.5 replace a value",
        json!({"baz": "qux", "foo": "bar"}),
        json!([{"op": "replace", "path": "/baz", "value": "boo"}]),
        doc(json!({"baz": "boo", "foo": "bar"})),
    );
    check_json_patch(
        "A.6 move a value",
        json!({"foo": {"bar": "baz", "waldo": "fred"}, "qux": {"corge": "grault"}}),
        json!([{"op": "move", "from": "/foo/waldo", "path": "/qux/thud"}]),
        doc(json!({"foo": {"bar": "baz"}, "qux": {"corge": "grault", "thud": "fred"}})),
    );
    check_json_patch(
        "A.7 move an array element",
        json!({"foo": ["all", "grass", "cows", "eat"]}),
        json!([{"op": "move", "from": "/foo/1", "path": "/foo/3"}]),
        doc(json!({"foo": ["all", "cows", "eat", "grass"]})),
    );
    check_json_patch(
        "A.8 test a value: success",
        json!({"baz": "qux", "foo": ["a", 2, "c"]}),
        json!([
            {"op": "test", "path": "/baz", "value": "qux"},
            {"op": "test", "path": "/foo/1", "value": 2}
        ]),
        doc(json!({"baz": "qux", "foo": ["a", 2, "c"]})),
    );
    check_json_patch(
        "A.9 test a value: error",
        json!({"baz": "qux"}),
        json!([{"op": "test", "path": "/baz", "value": "bar"}]),
        fails("test operation failed"),
    );
    check_json_patch(
        "A.10 add a nested member object",
        json!({"foo": "bar"}),
        json!([{"op": "add", "path": "/child", "value": {"grandchild": {}}}]),
        doc(json!({"foo": "bar", "child": {"grandchild": {}}})),
    );
    check_json_patch(
        "A.11 ignore unrecognized elements",
        json!({"foo": "bar"}),
        json!([{"op": "add", "path": "/baz", "value": "qux", "xyz": 123}]),
        doc(json!({"foo": "bar", "baz": "qux"})),
    );
    check_json_patch(
        "A.12 add to a nonexistent target",
        json!({"foo": "bar"}),
        json!([{"op": "add", "path": "/baz/bat", "value": "qux"}]),
        fails("missing path"),
    );
    check_json_patch(
        "A.14 ~ escape ordering",
        json!({"/": 9, "~1": 10}),
        json!([{"op": "test", "path": "/~01", "value": 10}]),
        doc(json!({"/": 9, "~1": 10})),
    );
    check_json_patch(
        "A.15 comparing strings and numbers",
        json!({"/": 9, "~1": 10}),
        json!([{"op": "test", "path": "/~01", "value": "10"}]),
        fails("test operation failed"),
    );
    check_json_patch(
        "A.16 add an array value",
        json!({"foo": ["bar"]}),
        json!([{"op": "add", "path": "/foo/-", "value": ["abc", "def"]}]),
        doc(json!({"foo": ["bar", ["abc", "def"]]})),
    );
}

#[test]
fn json_patch_edges() {
    check_json_patch(
        "atomic: a later failure discards earlier operations",
        json!({"a": 1}),
        json!([
            {"op": "add", "path": "/b", "value": 2},
            {"op": "remove", "path": "/zzz"}
        ]),
        fails("remove operation does not apply"),
    );
    check_json_patch(
        "slash escape in key",
        json!({"metadata": {"labels": {"karpenter.sh/nodepool": "a"}}}),
        json!([{"op": "replace", "path": "/metadata/labels/karpenter.sh~1nodepool", "value": "b"}]),
        doc(json!({"metadata": {"labels": {"karpenter.sh/nodepool": "b"}}})),
    );
    check_json_patch(
        "replace missing key fails",
        json!({"a": 1}),
        json!([{"op": "replace", "path": "/b", "value": 2}]),
        fails("replace operation does not apply"),
    );
    check_json_patch(
        "copy",
        json!({"a": {"x": 1}}),
        json!([{"op": "copy", "from": "/a", "path": "/b"}]),
        doc(json!({"a": {"x": 1}, "b": {"x": 1}})),
    );
    check_json_patch(
        "move into own child",
        json!({"a": {"b": {}}}),
        json!([{"op": "move", "from": "/a", "path": "/a/b/c"}]),
        fails("own child"),
    );
    check_json_patch(
        "index past end",
        json!({"a": [1]}),
        json!([{"op": "add", "path": "/a/5", "value": 2}]),
        fails("missing path"),
    );
    check_json_patch(
        "leading zero index",
        json!({"a": [1, 2]}),
        json!([{"op": "remove", "path": "/a/01"}]),
        fails("missing path"),
    );
    check_json_patch(
        "bad pointer",
        json!({}),
        json!([{"op": "add", "path": "a", "value": 1}]),
        fails("must be empty or start with '/'"),
    );
    check_json_patch(
        "bad escape",
        json!({}),
        json!([{"op": "add", "path": "/a~2", "value": 1}]),
        fails("'~' must be followed"),
    );
    check_json_patch(
        "unknown op",
        json!({}),
        json!([{"op": "frob", "path": "/a"}]),
        fails("unknown operation"),
    );
    check_json_patch(
        "not an array",
        json!({}),
        json!({"op": "add"}),
        fails("array"),
    );
    check_json_patch(
        "replace root",
        json!({"a": 1}),
        json!([{"op": "replace", "path": "", "value": {"b": 2}}]),
        doc(json!({"b": 2})),
    );
    check_json_patch(
        "test numbers by value",
        json!({"a": 1}),
        json!([{"op": "test", "path": "/a", "value": 1.0}]),
        doc(json!({"a": 1})),
    );
}

#[test]
fn rfc7386_appendix_a() {
    let cases = [
        (json!({"a": "b"}), json!({"a": "c"}), json!({"a": "c"})),
        (
            json!({"a": "b"}),
            json!({"b": "c"}),
            json!({"a": "b", "b": "c"}),
        ),
        (json!({"a": "b"}), json!({"a": null}), json!({})),
        (
            json!({"a": "b", "b": "c"}),
            json!({"a": null}),
            json!({"b": "c"}),
        ),
        (json!({"a": ["b"]}), json!({"a": "c"}), json!({"a": "c"})),
        (json!({"a": "c"}), json!({"a": ["b"]}), json!({"a": ["b"]})),
        (
            json!({"a": {"b": "c"}}),
            json!({"a": {"b": "d", "c": null}}),
            json!({"a": {"b": "d"}}),
        ),
        (
            json!({"a": [{"b": "c"}]}),
            json!({"a": [1]}),
            json!({"a": [1]}),
        ),
        (json!(["a", "b"]), json!(["c", "d"]), json!(["c", "d"])),
        (json!({"a": "b"}), json!(["c"]), json!(["c"])),
        (json!({"a": "foo"}), json!(null), json!(null)),
        (json!({"a": "foo"}), json!("bar"), json!("bar")),
        (
            json!({"e": null}),
            json!({"a": 1}),
            json!({"e": null, "a": 1}),
        ),
        (
            json!([1, 2]),
            json!({"a": "b", "c": null}),
            json!({"a": "b"}),
        ),
        (
            json!({}),
            json!({"a": {"bb": {"ccc": null}}}),
            json!({"a": {"bb": {}}}),
        ),
    ];
    for (target, patch, want) in cases {
        assert_eq!(merge_patch(&target, &patch), want, "{target} + {patch}");
    }
}

fn pod_schema() -> BuiltinSchema {
    BuiltinSchema::for_kind("", "v1", "Pod").expect("pod schema")
}

fn check_smp(name: &str, target: Value, patch: Value, schema: &dyn PatchSchema, want: Want) {
    let before = target.clone();
    check_result(name, strategic_merge_patch(&target, &patch, schema), want);
    assert_eq!(target, before, "{name}: input untouched");
}

#[test]
fn strategic_merge_patch_lists_and_maps() {
    let pod = pod_schema();
    let node = BuiltinSchema::for_kind("", "v1", "Node").expect("node schema");
    let deploy = BuiltinSchema::for_kind("apps", "v1", "Deployment").expect("deployment schema");

    check_smp(
        "containers merge by name",
        json!({"spec": {"containers": [
            {"name": "a", "image": "a:1", "env": [{"name": "X", "value": "1"}]},
            {"name": "b", "image": "b:1"}
        ]}}),
        json!({"spec": {"containers": [
            {"name": "b", "image": "b:2"},
            {"name": "c", "image": "c:1"},
            {"name": "a", "env": [{"name": "Y", "value": "2"}]}
        ]}}),
        &pod,
        doc(json!({"spec": {"containers": [
            {"name": "a", "image": "a:1", "env": [{"name": "X", "value": "1"}, {"name": "Y", "value": "2"}]},
            {"name": "b", "image": "b:2"},
            {"name": "c", "image": "c:1"}
        ]}})),
    );
    check_smp(
        "deployment template containers merge by name",
        json!({"spec": {"replicas": 1, "template": {"spec": {"containers": [{"name": "a", "image": "a:1"}]}}}}),
        json!({"spec": {"replicas": 3, "template": {"spec": {"containers": [{"name": "a", "image": "a:2"}]}}}}),
        &deploy,
        doc(
            json!({"spec": {"replicas": 3, "template": {"spec": {"containers": [{"name": "a", "image": "a:2"}]}}}}),
        ),
    );
    check_smp(
        "finalizers merge as a set",
        json!({"metadata": {"finalizers": ["a", "b"]}}),
        json!({"metadata": {"finalizers": ["b", "c"]}}),
        &pod,
        doc(json!({"metadata": {"finalizers": ["a", "b", "c"]}})),
    );
    check_smp(
        "$deleteFromPrimitiveList removes finalizers",
        json!({"metadata": {"finalizers": ["karpenter.sh/termination", "other"]}}),
        json!({"metadata": {"$deleteFromPrimitiveList/finalizers": ["karpenter.sh/termination"]}}),
        &pod,
        doc(json!({"metadata": {"finalizers": ["other"]}})),
    );
    check_smp(
        "node taints are atomic upstream: replaced",
        json!({"spec": {"taints": [
            {"key": "a", "effect": "NoSchedule"},
            {"key": "b", "effect": "NoSchedule"}
        ]}}),
        json!({"spec": {"taints": [{"key": "c", "effect": "NoExecute"}]}}),
        &node,
        doc(json!({"spec": {"taints": [{"key": "c", "effect": "NoExecute"}]}})),
    );
    check_smp(
        "node conditions merge by type",
        json!({"status": {"conditions": [
            {"type": "Ready", "status": "False"},
            {"type": "DiskPressure", "status": "False"}
        ]}}),
        json!({"status": {"conditions": [{"type": "Ready", "status": "True"}]}}),
        &node,
        doc(json!({"status": {"conditions": [
            {"type": "Ready", "status": "True"},
            {"type": "DiskPressure", "status": "False"}
        ]}})),
    );
    check_smp(
        "tolerations are atomic",
        json!({"spec": {"tolerations": [{"key": "a"}, {"key": "b"}]}}),
        json!({"spec": {"tolerations": [{"key": "c"}]}}),
        &pod,
        doc(json!({"spec": {"tolerations": [{"key": "c"}]}})),
    );
    check_smp(
        "$patch: delete removes a list item by key",
        json!({"spec": {"containers": [{"name": "a"}, {"name": "b"}]}}),
        json!({"spec": {"containers": [{"name": "a", "$patch": "delete"}]}}),
        &pod,
        doc(json!({"spec": {"containers": [{"name": "b"}]}})),
    );
    check_smp(
        "$patch: replace on a list",
        json!({"spec": {"containers": [{"name": "a", "image": "x"}, {"name": "b"}]}}),
        json!({"spec": {"containers": [{"$patch": "replace"}, {"name": "c"}]}}),
        &pod,
        doc(json!({"spec": {"containers": [{"name": "c"}]}})),
    );
    check_smp(
        "$patch: replace on a map",
        json!({"metadata": {"labels": {"a": "1", "b": "2"}}}),
        json!({"metadata": {"labels": {"$patch": "replace", "c": "3"}}}),
        &pod,
        doc(json!({"metadata": {"labels": {"c": "3"}}})),
    );
    check_smp(
        "$patch: delete on a map empties it",
        json!({"metadata": {"labels": {"a": "1"}}, "spec": {}}),
        json!({"metadata": {"labels": {"$patch": "delete"}}}),
        &pod,
        doc(json!({"metadata": {"labels": {}}, "spec": {}})),
    );
    check_smp(
        "$patch: replace on a list item",
        json!({"spec": {"containers": [{"name": "a", "image": "x", "args": ["1"]}]}}),
        json!({"spec": {"containers": [{"name": "a", "image": "y", "$patch": "replace"}]}}),
        &pod,
        doc(json!({"spec": {"containers": [{"name": "a", "image": "y"}]}})),
    );
    check_smp(
        "$retainKeys drops keys not listed",
        json!({"spec": {"volumes": [{"name": "v", "hostPath": {"path": "/x"}}]}}),
        json!({"spec": {"volumes": [{"name": "v", "emptyDir": {}, "$retainKeys": ["emptyDir", "name"]}]}}),
        &pod,
        doc(json!({"spec": {"volumes": [{"name": "v", "emptyDir": {}}]}})),
    );
    check_smp(
        "$retainKeys must list every patched key",
        json!({"spec": {}}),
        json!({"spec": {"a": 1, "$retainKeys": ["b"]}}),
        &pod,
        fails("must be listed in $retainKeys"),
    );
    check_smp(
        "$setElementOrder orders merged items",
        json!({"spec": {"containers": [{"name": "a"}, {"name": "b"}, {"name": "c"}]}}),
        json!({"spec": {
            "$setElementOrder/containers": [{"name": "c"}, {"name": "a"}, {"name": "b"}],
            "containers": [{"name": "c", "image": "c:2"}]
        }}),
        &pod,
        doc(
            json!({"spec": {"containers": [{"name": "c", "image": "c:2"}, {"name": "a"}, {"name": "b"}]}}),
        ),
    );
    check_smp(
        "$setElementOrder must agree with the patch list's order",
        json!({"spec": {"containers": [{"name": "a"}, {"name": "b"}]}}),
        json!({"spec": {
            "$setElementOrder/containers": [{"name": "a"}, {"name": "b"}],
            "containers": [{"name": "b", "image": "1"}, {"name": "a", "image": "2"}]
        }}),
        &pod,
        fails("doesn't match the $setElementOrder list"),
    );
    check_smp(
        "$setElementOrder on a set orders new and old values",
        json!({"metadata": {"finalizers": ["a", "b"]}}),
        json!({"metadata": {"$setElementOrder/finalizers": ["c", "b", "a"], "finalizers": ["c"]}}),
        &pod,
        doc(json!({"metadata": {"finalizers": ["c", "b", "a"]}})),
    );
    check_smp(
        "$setElementOrder without list change",
        json!({"metadata": {"finalizers": ["a", "b"]}}),
        json!({"metadata": {"$setElementOrder/finalizers": ["b", "a"]}}),
        &pod,
        doc(json!({"metadata": {"finalizers": ["b", "a"]}})),
    );
    check_smp(
        "$setElementOrder keeps server-only items in place",
        json!({"spec": {"containers": [{"name": "a"}, {"name": "s"}, {"name": "b"}]}}),
        json!({"spec": {
            "$setElementOrder/containers": [{"name": "b"}, {"name": "a"}],
            "containers": [{"name": "a", "image": "1"}]
        }}),
        &pod,
        doc(
            json!({"spec": {"containers": [{"name": "s"}, {"name": "b"}, {"name": "a", "image": "1"}]}}),
        ),
    );
    check_smp(
        "null deletes a field, nested nulls in new fields are dropped",
        json!({"metadata": {"labels": {"a": "1", "b": "2"}}}),
        json!({"metadata": {"labels": {"a": null}, "annotations": {"x": "1", "y": null}}}),
        &pod,
        doc(json!({"metadata": {"labels": {"b": "2"}, "annotations": {"x": "1"}}})),
    );
    check_smp(
        "owner references merge by uid",
        json!({"metadata": {"ownerReferences": [{"uid": "1", "name": "a"}]}}),
        json!({"metadata": {"ownerReferences": [{"uid": "2", "name": "b"}]}}),
        &pod,
        doc(
            json!({"metadata": {"ownerReferences": [{"uid": "1", "name": "a"}, {"uid": "2", "name": "b"}]}}),
        ),
    );
    check_smp(
        "container ports merge by containerPort",
        json!({"spec": {"containers": [{"name": "a", "ports": [{"containerPort": 80}, {"containerPort": 443}]}]}}),
        json!({"spec": {"containers": [{"name": "a", "ports": [{"containerPort": 443, "name": "https"}]}]}}),
        &pod,
        doc(
            json!({"spec": {"containers": [{"name": "a", "ports": [{"containerPort": 80}, {"containerPort": 443, "name": "https"}]}]}}),
        ),
    );
    check_smp(
        "missing merge key",
        json!({"spec": {"containers": [{"name": "a"}]}}),
        json!({"spec": {"containers": [{"image": "x"}]}}),
        &pod,
        fails("merge key \"name\""),
    );
    check_smp(
        "unknown directive",
        json!({}),
        json!({"metadata": {"$patch": "frob"}}),
        &pod,
        fails("unknown patch type"),
    );
    check_smp(
        "nulls in new items are dropped",
        json!({"spec": {}}),
        json!({"spec": {"containers": [{"name": "a", "env": [{"name": "X", "value": null}]}]}}),
        &pod,
        doc(json!({"spec": {"containers": [{"name": "a", "env": [{"name": "X"}]}]}})),
    );
    check_smp(
        "$patch: merge is not a map directive apimachinery accepts",
        json!({"spec": {}}),
        json!({"spec": {"containers": [{"name": "a", "$patch": "merge"}]}}),
        &pod,
        fails("unknown patch type"),
    );
    check_smp(
        "$retainKeys ignores keys being deleted",
        json!({"spec": {"volumes": [{"name": "v", "hostPath": {"path": "/x"}}]}}),
        json!({"spec": {"volumes": [{"name": "v", "hostPath": null, "emptyDir": {}, "$retainKeys": ["emptyDir", "name"]}]}}),
        &pod,
        doc(json!({"spec": {"volumes": [{"name": "v", "emptyDir": {}}]}})),
    );
    check_smp(
        "unknown list without schema is replaced",
        json!({"spec": {"things": [1, 2]}}),
        json!({"spec": {"things": [3]}}),
        &NoSchema,
        doc(json!({"spec": {"things": [3]}})),
    );
    check_smp(
        "selector match labels merge in SMP even though SSA treats it atomic",
        json!({"spec": {"selector": {"matchLabels": {"a": "1"}}}}),
        json!({"spec": {"selector": {"matchLabels": {"b": "2"}}}}),
        &deploy,
        doc(json!({"spec": {"selector": {"matchLabels": {"a": "1", "b": "2"}}}})),
    );
}

fn nodepool_like_schema() -> CrdSchema {
    CrdSchema::from_openapi(&json!({
        "type": "object",
        "properties": {
            "spec": {
                "type": "object",
                "properties": {
                    "requirements": {"type": "array", "items": {"type": "object"}},
                    "taints": {
                        "type": "array",
                        "x-kubernetes-list-type": "map",
                        "x-kubernetes-list-map-keys": ["key", "effect"],
                        "items": {"type": "object", "properties": {"key": {"type": "string"}}}
                    },
                    "tags": {"type": "array", "x-kubernetes-list-type": "set", "items": {"type": "string"}},
                    "template": {
                        "type": "object",
                        "x-kubernetes-map-type": "atomic",
                        "properties": {
                            "nested": {"type": "array", "x-kubernetes-list-type": "set"}
                        }
                    },
                    "byName": {
                        "type": "object",
                        "additionalProperties": {
                            "type": "object",
                            "properties": {
                                "items": {
                                    "type": "array",
                                    "x-kubernetes-list-type": "map",
                                    "x-kubernetes-list-map-keys": ["id"]
                                }
                            }
                        }
                    }
                }
            }
        }
    }))
}

#[test]
fn crd_schema_from_openapi() {
    let s = nodepool_like_schema();
    let cases: Vec<(&[&str], ListStrategy)> = vec![
        (&["spec", "requirements"], ListStrategy::Atomic),
        (
            &["spec", "taints"],
            ListStrategy::MergeByKey(vec!["key".into(), "effect".into()]),
        ),
        (&["spec", "tags"], ListStrategy::MergePrimitives),
        (
            &["spec", "template", "nested"],
            ListStrategy::MergePrimitives,
        ),
        (
            &["spec", "byName", "anything", "items"],
            ListStrategy::MergeByKey(vec!["id".into()]),
        ),
        (&["metadata", "finalizers"], ListStrategy::MergePrimitives),
        (
            &["metadata", "ownerReferences"],
            ListStrategy::MergeByKey(vec!["uid".into()]),
        ),
        (&["spec", "unknown"], ListStrategy::Atomic),
    ];
    for (path, want) in cases {
        assert_eq!(s.list_strategy(path), want, "{path:?}");
    }
    assert!(s.is_atomic_map(&["spec", "template"]));
    assert!(!s.is_atomic_map(&["spec"]));

    check_smp(
        "CRD atomic list is replaced",
        json!({"spec": {"requirements": [{"key": "a"}, {"key": "b"}]}}),
        json!({"spec": {"requirements": [{"key": "c"}]}}),
        &s,
        doc(json!({"spec": {"requirements": [{"key": "c"}]}})),
    );
    check_smp(
        "CRD map list merges by compound key",
        json!({"spec": {"taints": [{"key": "a", "effect": "NoSchedule", "value": "1"}]}}),
        json!({"spec": {"taints": [
            {"key": "a", "effect": "NoExecute"},
            {"key": "a", "effect": "NoSchedule", "value": "2"}
        ]}}),
        &s,
        doc(json!({"spec": {"taints": [
            {"key": "a", "effect": "NoSchedule", "value": "2"},
            {"key": "a", "effect": "NoExecute"}
        ]}})),
    );
}

#[test]
fn builtin_schema_coverage() {
    let strategy = |g: &str, k: &str, path: &[&str]| {
        BuiltinSchema::for_kind(g, "v1", k)
            .unwrap_or_else(|| panic!("{g}/{k}"))
            .list_strategy(path)
    };
    let by = |k: &str| ListStrategy::MergeByKey(vec![k.to_string()]);
    let cases: Vec<(&str, &str, &[&str], ListStrategy)> = vec![
        ("", "Pod", &["spec", "containers"], by("name")),
        ("", "Pod", &["spec", "initContainers"], by("name")),
        ("", "Pod", &["spec", "ephemeralContainers"], by("name")),
        (
            "",
            "Pod",
            &["spec", "containers", "ports"],
            by("containerPort"),
        ),
        ("", "Pod", &["spec", "containers", "env"], by("name")),
        (
            "",
            "Pod",
            &["spec", "containers", "volumeMounts"],
            by("mountPath"),
        ),
        (
            "",
            "Pod",
            &["spec", "containers", "args"],
            ListStrategy::Atomic,
        ),
        ("", "Pod", &["spec", "volumes"], by("name")),
        ("", "Pod", &["spec", "imagePullSecrets"], by("name")),
        ("", "Pod", &["spec", "tolerations"], ListStrategy::Atomic),
        ("", "Pod", &["status", "conditions"], by("type")),
        (
            "",
            "Pod",
            &["status", "containerStatuses"],
            ListStrategy::Atomic,
        ),
        (
            "",
            "Pod",
            &["metadata", "finalizers"],
            ListStrategy::MergePrimitives,
        ),
        ("", "Pod", &["metadata", "ownerReferences"], by("uid")),
        ("", "Node", &["spec", "taints"], ListStrategy::Atomic),
        ("", "Node", &["status", "conditions"], by("type")),
        ("", "Node", &["status", "addresses"], by("type")),
        ("", "Node", &["status", "images"], ListStrategy::Atomic),
        (
            "apps",
            "Deployment",
            &["spec", "template", "spec", "containers"],
            by("name"),
        ),
        (
            "apps",
            "DaemonSet",
            &["spec", "template", "spec", "volumes"],
            by("name"),
        ),
        ("apps", "ReplicaSet", &["status", "conditions"], by("type")),
        (
            "policy",
            "PodDisruptionBudget",
            &["status", "conditions"],
            by("type"),
        ),
        ("", "Namespace", &["status", "conditions"], by("type")),
        (
            "",
            "Namespace",
            &["spec", "finalizers"],
            ListStrategy::Atomic,
        ),
        (
            "coordination.k8s.io",
            "Lease",
            &["metadata", "finalizers"],
            ListStrategy::MergePrimitives,
        ),
        ("", "ConfigMap", &["data"], ListStrategy::Atomic),
        ("", "Service", &["spec", "ports"], by("port")),
        ("", "ServiceAccount", &["secrets"], by("name")),
        (
            "",
            "PersistentVolumeClaim",
            &["status", "conditions"],
            by("type"),
        ),
        (
            "storage.k8s.io",
            "CSINode",
            &["spec", "drivers"],
            by("name"),
        ),
        (
            "batch",
            "CronJob",
            &[
                "spec",
                "jobTemplate",
                "spec",
                "template",
                "spec",
                "containers",
            ],
            by("name"),
        ),
        (
            "batch",
            "Job",
            &["spec", "template", "spec", "initContainers", "env"],
            by("name"),
        ),
        (
            "apps",
            "StatefulSet",
            &["spec", "template", "metadata", "finalizers"],
            ListStrategy::MergePrimitives,
        ),
    ];
    for (g, k, path, want) in cases {
        assert_eq!(strategy(g, k, path), want, "{g}/{k} {path:?}");
    }
    assert!(BuiltinSchema::for_kind("", "v1", "Frobnicator").is_none());
    assert!(BuiltinSchema::for_kind("apps", "v2", "Deployment").is_none());
    let generic = BuiltinSchema::object_meta_only();
    assert_eq!(
        generic.list_strategy(&["metadata", "finalizers"]),
        ListStrategy::MergePrimitives
    );
    assert_eq!(
        generic.list_strategy(&["spec", "containers"]),
        ListStrategy::Atomic
    );
    assert!(
        BuiltinSchema::for_kind("apps", "v1", "Deployment")
            .expect("deployment")
            .is_atomic_map(&["spec", "selector"])
    );
}

#[test]
fn strategic_merge_without_schema_agrees_with_merge_patch() {
    // Without list strategies and directives, a strategic merge patch is a JSON merge patch.
    let cases = [
        (json!({"a": "b"}), json!({"a": "c"})),
        (json!({"a": "b", "b": "c"}), json!({"a": null})),
        (json!({"a": ["b"]}), json!({"a": "c"})),
        (
            json!({"a": {"b": "c"}}),
            json!({"a": {"b": "d", "c": null}}),
        ),
        (json!({"a": [{"b": "c"}]}), json!({"a": [1]})),
        (json!({"e": null}), json!({"a": 1})),
        (json!({}), json!({"a": {"bb": {"ccc": null}}})),
        (
            json!({"spec": {"x": [1, 2], "y": {"z": 1}}}),
            json!({"spec": {"x": [3], "y": {"w": 2}}}),
        ),
    ];
    for (target, patch) in cases {
        assert_eq!(
            strategic_merge_patch(&target, &patch, &NoSchema).unwrap(),
            merge_patch(&target, &patch),
            "{target} + {patch}"
        );
    }
}
