//! FieldsV1 encoding and apply-notation paths.
#![allow(clippy::unwrap_used, clippy::expect_used)] // helpers of a test binary may panic

use karpenter_apimachinery::fields::{FieldSet, PathElement, canonical_json, display_path};
use serde_json::json;

fn f(name: &str) -> PathElement {
    PathElement::Field(name.to_string())
}

fn k(key: serde_json::Value) -> PathElement {
    PathElement::Key(canonical_json(&key))
}

fn v(value: serde_json::Value) -> PathElement {
    PathElement::Value(canonical_json(&value))
}

#[test]
fn paths_render_like_apply_conflicts() {
    let cases: Vec<(Vec<PathElement>, &str)> = vec![
        (vec![f("spec"), f("replicas")], ".spec.replicas"),
        (
            vec![
                f("spec"),
                f("containers"),
                k(json!({"name": "nginx"})),
                f("image"),
            ],
            ".spec.containers[name=\"nginx\"].image",
        ),
        (
            vec![
                f("spec"),
                f("ports"),
                k(json!({"protocol": "TCP", "containerPort": 80})),
            ],
            ".spec.ports[containerPort=80,protocol=\"TCP\"]",
        ),
        (
            vec![f("metadata"), f("finalizers"), v(json!("a/b"))],
            ".metadata.finalizers[=\"a/b\"]",
        ),
        (
            vec![f("spec"), f("args"), PathElement::Index(2)],
            ".spec.args[2]",
        ),
    ];
    for (path, want) in cases {
        assert_eq!(display_path(&path), want);
    }
}

#[test]
fn fields_v1_round_trip() {
    let set: FieldSet = vec![
        vec![f("metadata"), f("labels"), f("app")],
        vec![f("metadata"), f("finalizers")],
        vec![f("metadata"), f("finalizers"), v(json!("x"))],
        vec![f("spec"), f("containers"), k(json!({"name": "c"}))],
        vec![
            f("spec"),
            f("containers"),
            k(json!({"name": "c"})),
            f("image"),
        ],
        vec![f("spec"), f("args"), PathElement::Index(0)],
        vec![f("spec"), f("empty")],
    ]
    .into_iter()
    .collect();
    let encoded = set.to_fields_v1();
    assert_eq!(
        encoded,
        json!({
            "f:metadata": {
                "f:finalizers": {".": {}, "v:\"x\"": {}},
                "f:labels": {"f:app": {}}
            },
            "f:spec": {
                "f:args": {"i:0": {}},
                "f:containers": {"k:{\"name\":\"c\"}": {".": {}, "f:image": {}}},
                "f:empty": {}
            }
        })
    );
    assert_eq!(FieldSet::from_fields_v1(&encoded), set);
}

#[test]
fn fields_v1_decoding_is_lenient_and_canonical() {
    // Key objects are canonicalised, unknown prefixes skipped.
    let decoded = FieldSet::from_fields_v1(&json!({
        "f:spec": {
            "f:taints": {"k:{\"key\":\"a\",\"effect\":\"NoSchedule\"}": {".": {}}},
            "x:bogus": {}
        }
    }));
    let want: FieldSet = vec![vec![
        f("spec"),
        f("taints"),
        k(json!({"effect": "NoSchedule", "key": "a"})),
    ]]
    .into_iter()
    .collect();
    assert_eq!(decoded, want);
    assert_eq!(
        canonical_json(&json!({"b": [1, {"d": 1, "c": 2}], "a": null})),
        r#"{"a":null,"b":[1,{"c":2,"d":1}]}"#
    );
}

#[test]
fn set_algebra() {
    let a: FieldSet = vec![vec![f("a")], vec![f("b"), f("c")]]
        .into_iter()
        .collect();
    let b: FieldSet = vec![vec![f("b"), f("c")], vec![f("d")]]
        .into_iter()
        .collect();
    assert_eq!(a.union(&b).len(), 3);
    assert_eq!(a.intersection(&b).len(), 1);
    assert_eq!(
        a.difference(&b).iter().collect::<Vec<_>>(),
        vec![&vec![f("a")]]
    );
    assert!(a.has_descendant_of(&[f("b")]));
    assert!(!a.has_descendant_of(&[f("a")]));
    assert!(!a.has_descendant_of(&[f("b"), f("c")]));
    assert!(FieldSet::new().is_empty());
}
