//! The validation engine on small synthetic CRDs: one case per keyword, defaulting, pruning,
//! list types, CEL (transition rules, fieldPath, messageExpression, reasons, evaluation errors,
//! the Kubernetes library functions) and the apiserver's message shapes.

#![allow(clippy::unwrap_used, clippy::expect_used)] // helpers of a test binary may panic

use k8s_openapi::apiextensions_apiserver::pkg::apis::apiextensions::v1::CustomResourceDefinition;
use karpenter_apis::validation::{CrdValidator, RULES_NOT_CHECKED};
use serde_json::{Value, json};

/// A CRD `widgets.example.com` (kind Widget, cluster-scoped, version v1) whose `spec` has
/// `spec_schema`.
fn crd(spec_schema: Value) -> CustomResourceDefinition {
    serde_json::from_value(json!({
        "apiVersion": "apiextensions.k8s.io/v1",
        "kind": "CustomResourceDefinition",
        "metadata": {"name": "widgets.example.com"},
        "spec": {
            "group": "example.com",
            "names": {"kind": "Widget", "plural": "widgets", "singular": "widget", "listKind": "WidgetList"},
            "scope": "Cluster",
            "versions": [{
                "name": "v1", "served": true, "storage": true,
                "schema": {"openAPIV3Schema": {
                    "type": "object",
                    "properties": {
                        "apiVersion": {"type": "string"},
                        "kind": {"type": "string"},
                        "metadata": {"type": "object"},
                        "spec": spec_schema,
                    }
                }}
            }]
        }
    }))
    .expect("test CRD decodes")
}

fn object(spec: Value) -> Value {
    json!({"apiVersion": "example.com/v1", "kind": "Widget", "metadata": {"name": "w"}, "spec": spec})
}

#[derive(Default)]
struct Case {
    name: &'static str,
    schema: Value,
    object: Option<Value>,
    spec: Value,
    old_spec: Option<Value>,
    errors: Vec<(String, String)>,
    defaults: Vec<(String, Value)>,
    pruned: Option<Vec<String>>,
    schema_error: Option<String>,
    absent: Vec<String>,
}

fn case(name: &'static str) -> Case {
    Case {
        name,
        ..Case::default()
    }
}

impl Case {
    fn schema(mut self, schema: Value) -> Self {
        self.schema = schema;
        self
    }
    /// The spec of the object admitted.
    fn spec(mut self, spec: Value) -> Self {
        self.spec = spec;
        self
    }
    /// A whole object, replacing the default envelope.
    fn whole(mut self, object: Value) -> Self {
        self.object = Some(object);
        self
    }
    /// Makes the admission an update from an object with this spec.
    fn old(mut self, spec: Value) -> Self {
        self.old_spec = Some(spec);
        self
    }
    /// Expects an error whose path renders as `path` and whose message contains `fragment`.
    fn error(mut self, path: &str, fragment: &str) -> Self {
        self.errors.push((path.to_owned(), fragment.to_owned()));
        self
    }
    /// Expects the admitted object to hold `value` at JSON pointer `pointer`.
    fn defaulted(mut self, pointer: &str, value: Value) -> Self {
        self.defaults.push((pointer.to_owned(), value));
        self
    }
    /// Expects nothing at JSON pointer `pointer` after admission.
    fn absent(mut self, pointer: &str) -> Self {
        self.absent.push(pointer.to_owned());
        self
    }
    /// Expects exactly these unknown-field paths to be pruned.
    fn pruned(mut self, paths: &[&str]) -> Self {
        self.pruned = Some(paths.iter().map(|p| (*p).to_owned()).collect());
        self
    }
    /// Expects `CrdValidator::new` to fail with a message containing `fragment`.
    fn bad_schema(mut self, fragment: &str) -> Self {
        self.schema_error = Some(fragment.to_owned());
        self
    }
}

/// Admits the case's object and checks every expectation. With no expected errors, the
/// object must be accepted; with some, it must be rejected with exactly those errors.
fn check(case: Case) {
    let name = case.name;
    let validator = CrdValidator::new(&crd(case.schema.clone()));
    if let Some(fragment) = &case.schema_error {
        let err = validator.expect_err(name);
        assert!(
            err.to_string().contains(fragment.as_str()),
            "{name}: schema error {err} lacks {fragment:?}"
        );
        return;
    }
    let validator = validator.unwrap_or_else(|e| panic!("{name}: {e}"));
    let obj = case
        .object
        .clone()
        .unwrap_or_else(|| object(case.spec.clone()));
    let old = case.old_spec.clone().map(object);
    let result = validator.admit("v1", &obj, old.as_ref());
    if case.errors.is_empty() {
        let admitted = result.unwrap_or_else(|e| panic!("{name}: expected acceptance, got {e}"));
        for (pointer, expected) in &case.defaults {
            assert_eq!(
                admitted.object.pointer(pointer),
                Some(expected),
                "{name}: {pointer} in {}",
                admitted.object
            );
        }
        for pointer in &case.absent {
            assert_eq!(
                admitted.object.pointer(pointer),
                None,
                "{name}: {pointer} should be absent"
            );
        }
        if let Some(pruned) = &case.pruned {
            assert_eq!(&admitted.unknown_fields, pruned, "{name}: pruned fields");
        }
    } else {
        let errors = match result {
            Ok(admitted) => panic!("{name}: expected rejection, accepted {}", admitted.object),
            Err(errors) => errors,
        };
        for (path, fragment) in &case.errors {
            assert!(
                errors.contains(path, fragment),
                "{name}: no error at {path} containing {fragment:?}; got: {errors}"
            );
        }
        assert_eq!(
            errors.len(),
            case.errors.len(),
            "{name}: unexpected extra errors: {errors}"
        );
    }
}

fn props(properties: Value) -> Value {
    json!({"type": "object", "properties": properties})
}

fn string_rule(rule: &str) -> Value {
    props(json!({"s": {"type": "string", "x-kubernetes-validations": [{"rule": rule}]}}))
}

#[test]
fn schema_keywords() {
    let cases = vec![
        case("type mismatch").schema(props(json!({"count": {"type": "integer"}}))).spec(json!({"count": "3"})).error(
            "spec.count",
            r#"spec.count: Invalid value: "string": spec.count in body must be of type integer: "string""#,
        ),
        case("integral float is an integer").schema(props(json!({"count": {"type": "integer"}}))).spec(json!({"count": 3.0})),
        case("null item in a non-nullable list")
            .schema(props(json!({"list": {"type": "array", "items": {"type": "string"}}})))
            .spec(json!({"list": ["a", null]}))
            .error("spec.list[1]", r#"must be of type string: "null""#),
        case("nullable item accepted")
            .schema(props(json!({"list": {"type": "array", "items": {"type": "string", "nullable": true}}})))
            .spec(json!({"list": ["a", null]})),
        case("null non-nullable field is dropped, then required")
            .schema(json!({"type": "object", "required": ["a"], "properties": {"a": {"type": "string"}}}))
            .spec(json!({"a": null}))
            .error("spec.a", "spec.a: Required value"),
        case("nullable field keeps null")
            .schema(props(json!({"a": {"type": "string", "nullable": true}})))
            .spec(json!({"a": null}))
            .defaulted("/spec/a", Value::Null),
        case("enum").schema(props(json!({"op": {"type": "string", "enum": ["In", "NotIn"]}}))).spec(json!({"op": "Inn"})).error(
            "spec.op",
            r#"spec.op: Unsupported value: "Inn": supported values: "In", "NotIn""#,
        ),
        case("pattern").schema(props(json!({"n": {"type": "string", "pattern": "^[a-z]+$"}}))).spec(json!({"n": "Bad"})).error(
            "spec.n",
            r#"spec.n: Invalid value: "Bad": spec.n in body should match '^[a-z]+$'"#,
        ),
        case("date-time format").schema(props(json!({"t": {"type": "string", "format": "date-time"}}))).spec(json!({"t": "yesterday"})).error(
            "spec.t",
            r#"spec.t: Invalid value: "yesterday": spec.t in body must be of type date-time: "yesterday""#,
        ),
        case("date-time accepted").schema(props(json!({"t": {"type": "string", "format": "date-time"}}))).spec(json!({"t": "2024-08-17T17:45:41Z"})),
        case("int-or-string integer").schema(int_or_string()).spec(json!({"q": 5})),
        case("int-or-string string").schema(int_or_string()).spec(json!({"q": "5Gi"})),
        case("int-or-string pattern applies to strings")
            .schema(int_or_string())
            .spec(json!({"q": "lots"}))
            .error("spec.q", "spec.q in body should match"),
        case("int-or-string rejects a boolean")
            .schema(int_or_string())
            .spec(json!({"q": true}))
            .error("spec.q", "must validate at least one schema (anyOf)")
            .error("spec.q", r#"must be of type integer: "boolean""#),
        case("minimum").schema(props(json!({"w": {"type": "integer", "minimum": 1, "maximum": 100}}))).spec(json!({"w": 0})).error(
            "spec.w",
            "spec.w: Invalid value: 0: spec.w in body should be greater than or equal to 1",
        ),
        case("maximum").schema(props(json!({"w": {"type": "integer", "minimum": 1, "maximum": 100}}))).spec(json!({"w": 101})).error(
            "spec.w",
            "spec.w: Invalid value: 101: spec.w in body should be less than or equal to 100",
        ),
        case("exclusive minimum")
            .schema(props(json!({"w": {"type": "number", "minimum": 0, "exclusiveMinimum": true}})))
            .spec(json!({"w": 0}))
            .error("spec.w", "should be greater than 0"),
        case("exclusive maximum")
            .schema(props(json!({"w": {"type": "number", "maximum": 1.5, "exclusiveMaximum": true}})))
            .spec(json!({"w": 1.5}))
            .error("spec.w", "should be less than 1.5"),
        case("maxLength counts characters").schema(props(json!({"s": {"type": "string", "maxLength": 3}}))).spec(json!({"s": "ééé"})),
        case("maxLength").schema(props(json!({"s": {"type": "string", "maxLength": 3}}))).spec(json!({"s": "éééé"})).error(
            "spec.s",
            "spec.s: Too long: may not be more than 3 bytes",
        ),
        case("minLength").schema(props(json!({"s": {"type": "string", "minLength": 1}}))).spec(json!({"s": ""})).error(
            "spec.s",
            r#"spec.s: Invalid value: "": spec.s in body should be at least 1 chars long"#,
        ),
        case("maxItems").schema(props(json!({"l": {"type": "array", "maxItems": 2, "items": {"type": "string"}}}))).spec(json!({"l": ["a", "b", "c"]})).error(
            "spec.l",
            "spec.l: Too many: 3: must have at most 2 items",
        ),
        case("minItems").schema(props(json!({"l": {"type": "array", "minItems": 1, "items": {"type": "string"}}}))).spec(json!({"l": []})).error(
            "spec.l",
            "spec.l: Invalid value: 0: spec.l in body should have at least 1 items",
        ),
        case("maxProperties")
            .schema(props(json!({"m": {"type": "object", "maxProperties": 1, "additionalProperties": {"type": "string"}}})))
            .spec(json!({"m": {"a": "1", "b": "2"}}))
            .error("spec.m", "spec.m: Too many: 2: must have at most 1 item"),
        case("minProperties")
            .schema(props(json!({"m": {"type": "object", "minProperties": 1, "additionalProperties": {"type": "string"}}})))
            .spec(json!({"m": {}}))
            .error("spec.m", "spec.m in body should have at least 1 properties"),
        case("required").schema(json!({"type": "object", "required": ["a", "b"], "properties": {"a": {"type": "string"}, "b": {"type": "string"}}})).spec(json!({"b": "x"})).error(
            "spec.a",
            "spec.a: Required value",
        ),
        case("additionalProperties values are validated, named with a dot")
            .schema(props(json!({"labels": {"type": "object", "additionalProperties": {"type": "string", "maxLength": 2}}})))
            .spec(json!({"labels": {"foo": "toolong"}}))
            .error("spec.labels.foo", "Too long: may not be more than 2 bytes"),
        case("set duplicates")
            .schema(props(json!({"l": {"type": "array", "x-kubernetes-list-type": "set", "items": {"type": "string"}}})))
            .spec(json!({"l": ["a", "b", "a"]}))
            .error("spec.l[2]", r#"spec.l[2]: Duplicate value: "a""#),
        case("map duplicates name their keys")
            .schema(props(json!({"l": {
                "type": "array", "x-kubernetes-list-type": "map", "x-kubernetes-list-map-keys": ["name"],
                "items": {"type": "object", "required": ["name"], "properties": {"name": {"type": "string"}, "v": {"type": "integer"}}}
            }})))
            .spec(json!({"l": [{"name": "a", "v": 1}, {"name": "b"}, {"name": "a", "v": 2}]}))
            .error("spec.l[2]", r#"spec.l[2]: Duplicate value: map[string]interface {}{"name":"a"}"#),
        case("atomic lists may repeat")
            .schema(props(json!({"l": {"type": "array", "items": {"type": "string"}}})))
            .spec(json!({"l": ["a", "a"]})),
        case("embedded resource needs kind and apiVersion")
            .schema(props(json!({"r": {"type": "object", "x-kubernetes-embedded-resource": true, "x-kubernetes-preserve-unknown-fields": true}})))
            .spec(json!({"r": {"apiVersion": "v1", "metadata": {"name": "Bad_Name"}}}))
            .error("spec.r.kind", "spec.r.kind: Required value: must not be empty")
            .error("spec.r.metadata.name", "a lowercase RFC 1123 subdomain"),
        case("several errors are all reported")
            .schema(props(json!({"a": {"type": "integer", "minimum": 1}, "b": {"type": "string", "enum": ["x"]}})))
            .spec(json!({"a": 0, "b": "y"}))
            .error("spec.a", "greater than or equal to 1")
            .error("spec.b", "Unsupported value"),
    ];
    for c in cases {
        check(c);
    }
}

fn int_or_string() -> Value {
    props(json!({"q": {
        "anyOf": [{"type": "integer"}, {"type": "string"}],
        "x-kubernetes-int-or-string": true,
        "pattern": "^[0-9]+(Gi|Mi)?$"
    }}))
}

#[test]
fn defaulting() {
    let nested = json!({"type": "object", "properties": {
        "opts": {
            "type": "object",
            "default": {"endpoint": "enabled"},
            "properties": {
                "endpoint": {"type": "string", "default": "enabled"},
                "hops": {"type": "integer", "default": 1},
                "tokens": {"type": "string", "default": "required"}
            }
        },
        "budgets": {
            "type": "array",
            "default": [{"nodes": "10%"}],
            "items": {"type": "object", "properties": {
                "nodes": {"type": "string", "default": "10%"},
                "reasons": {"type": "array", "items": {"type": "string"}}
            }}
        },
        "byName": {"type": "object", "additionalProperties": {
            "type": "object", "properties": {"weight": {"type": "integer", "default": 5}}
        }},
        "keep": {"type": "string", "default": "x"}
    }});
    let cases = vec![
        case("object default, then nested defaults inside it")
            .schema(nested.clone())
            .spec(json!({}))
            .defaulted(
                "/spec/opts",
                json!({"endpoint": "enabled", "hops": 1, "tokens": "required"}),
            ),
        case("nested defaults fill a partial object")
            .schema(nested.clone())
            .spec(json!({"opts": {"hops": 3}}))
            .defaulted(
                "/spec/opts",
                json!({"endpoint": "enabled", "hops": 3, "tokens": "required"}),
            ),
        case("list default")
            .schema(nested.clone())
            .spec(json!({}))
            .defaulted("/spec/budgets", json!([{"nodes": "10%"}])),
        case("defaults inside list items")
            .schema(nested.clone())
            .spec(json!({"budgets": [{"reasons": ["Empty"]}, {"nodes": "5"}]}))
            .defaulted(
                "/spec/budgets",
                json!([{"nodes": "10%", "reasons": ["Empty"]}, {"nodes": "5"}]),
            ),
        case("defaults inside additionalProperties values")
            .schema(nested.clone())
            .spec(json!({"byName": {"a": {}, "b": {"weight": 1}}}))
            .defaulted(
                "/spec/byName",
                json!({"a": {"weight": 5}, "b": {"weight": 1}}),
            ),
        case("explicit values are kept")
            .schema(nested.clone())
            .spec(json!({"keep": "y"}))
            .defaulted("/spec/keep", json!("y")),
        case("null is replaced by the default")
            .schema(nested.clone())
            .spec(json!({"keep": null}))
            .defaulted("/spec/keep", json!("x")),
        case("null without a default is dropped")
            .schema(props(json!({"a": {"type": "string"}})))
            .spec(json!({"a": null}))
            .absent("/spec/a"),
        case("defaults are validated")
            .schema(props(
                json!({"a": {"type": "string", "default": "UPPER", "pattern": "^[a-z]+$"}}),
            ))
            .spec(json!({}))
            .error("spec.a", "should match"),
    ];
    for c in cases {
        check(c);
    }
}

#[test]
fn defaults_are_deep_copies() {
    let validator = CrdValidator::new(&crd(props(json!({
        "a": {"type": "object", "default": {"x": "1"}, "properties": {"x": {"type": "string"}}},
        "b": {"type": "object", "default": {"x": "1"}, "properties": {"x": {"type": "string"}}}
    }))))
    .expect("compiles");
    let mut first = object(json!({}));
    validator.default("v1", &mut first);
    if let Some(x) = first.pointer_mut("/spec/a/x") {
        *x = json!("changed");
    }
    let mut second = object(json!({}));
    validator.default("v1", &mut second);
    assert_eq!(second.pointer("/spec/a/x"), Some(&json!("1")));
    assert_eq!(first.pointer("/spec/b/x"), Some(&json!("1")));
}

#[test]
fn pruning() {
    let schema = json!({"type": "object", "properties": {
        "known": {"type": "string"},
        "items": {"type": "array", "items": {"type": "object", "properties": {"a": {"type": "string"}}}},
        "free": {"type": "object", "x-kubernetes-preserve-unknown-fields": true, "properties": {
            "inner": {"type": "object", "properties": {"b": {"type": "string"}}}
        }},
        "map": {"type": "object", "additionalProperties": {"type": "object", "properties": {"c": {"type": "string"}}}}
    }});
    let cases = vec![
        case("unknown spec field")
            .schema(schema.clone())
            .spec(json!({"known": "k", "extra": 1}))
            .pruned(&["spec.extra"])
            .absent("/spec/extra"),
        case("unknown field inside list items")
            .schema(schema.clone())
            .spec(json!({"items": [{"a": "x"}, {"a": "y", "zzz": true}]}))
            .pruned(&["spec.items[1].zzz"]),
        case("preserve-unknown-fields keeps unknowns but prunes inside known properties")
            .schema(schema.clone())
            .spec(json!({"free": {"anything": {"goes": 1}, "inner": {"b": "1", "drop": 2}}}))
            .pruned(&["spec.free.inner.drop"])
            .defaulted("/spec/free/anything", json!({"goes": 1})),
        case("unknown field inside a map value")
            .schema(schema.clone())
            .spec(json!({"map": {"k": {"c": "1", "d": "2"}}}))
            .pruned(&["spec.map[k].d"]),
        case("unknown top-level and metadata fields; ObjectMeta fields kept")
            .schema(schema.clone())
            .whole(json!({
                "apiVersion": "example.com/v1", "kind": "Widget",
                "metadata": {"name": "w", "labels": {"a": "b"}, "finalizers": ["f"], "bogus": 1},
                "spec": {}, "extra": true
            }))
            .pruned(&["extra", "metadata.bogus"])
            .defaulted("/metadata/labels", json!({"a": "b"}))
            .defaulted("/metadata/finalizers", json!(["f"])),
    ];
    for c in cases {
        check(c);
    }
}

#[test]
fn object_meta_and_type_meta() {
    let schema = props(json!({}));
    let cases = vec![
        case("name must be a DNS subdomain")
            .schema(schema.clone())
            .whole(json!({"apiVersion": "example.com/v1", "kind": "Widget", "metadata": {"name": "Default"}}))
            .error("metadata.name", r#"metadata.name: Invalid value: "Default": a lowercase RFC 1123 subdomain must consist of"#),
        case("name too long")
            .schema(schema.clone())
            .whole(json!({"apiVersion": "example.com/v1", "kind": "Widget", "metadata": {"name": "a".repeat(254)}}))
            .error("metadata.name", "must be no more than 253 characters"),
        case("name or generateName required")
            .schema(schema.clone())
            .whole(json!({"apiVersion": "example.com/v1", "kind": "Widget", "metadata": {}}))
            .error("metadata.name", "metadata.name: Required value: name or generateName is required"),
        case("generateName alone is fine")
            .schema(schema.clone())
            .whole(json!({"apiVersion": "example.com/v1", "kind": "Widget", "metadata": {"generateName": "default-"}})),
        case("namespace forbidden on a cluster-scoped kind")
            .schema(schema.clone())
            .whole(json!({"apiVersion": "example.com/v1", "kind": "Widget", "metadata": {"name": "w", "namespace": "x"}}))
            .error("metadata.namespace", "Forbidden: not allowed on this type"),
        case("bad label value")
            .schema(schema.clone())
            .whole(json!({"apiVersion": "example.com/v1", "kind": "Widget", "metadata": {"name": "w", "labels": {"a": "-x"}}}))
            .error("metadata.labels[a]", "a valid label must be an empty string"),
        case("bad label key")
            .schema(schema.clone())
            .whole(json!({"apiVersion": "example.com/v1", "kind": "Widget", "metadata": {"name": "w", "labels": {"a/b/c": "x"}}}))
            .error("metadata.labels", "a qualified name must consist of"),
        case("wrong apiVersion")
            .schema(schema.clone())
            .whole(json!({"apiVersion": "example.com/v2", "kind": "Widget", "metadata": {"name": "w"}}))
            .error("apiVersion", "must be example.com/v1"),
        case("wrong kind")
            .schema(schema.clone())
            .whole(json!({"apiVersion": "example.com/v1", "kind": "Gadget", "metadata": {"name": "w"}}))
            .error("kind", r#"kind: Invalid value: "Gadget": must be Widget"#),
    ];
    for c in cases {
        check(c);
    }
}

#[test]
fn cel_rules() {
    let cases = vec![
        case("rule with message")
            .schema(json!({"type": "object", "properties": {"a": {"type": "integer"}},
                "x-kubernetes-validations": [{"rule": "self.a > 1", "message": "a must exceed one"}]}))
            .spec(json!({"a": 1}))
            .error("spec", r#"spec: Invalid value: "object": a must exceed one"#),
        case("rule without message")
            .schema(json!({"type": "object", "properties": {"a": {"type": "integer"}},
                "x-kubernetes-validations": [{"rule": "self.a > 1"}]}))
            .spec(json!({"a": 1}))
            .error("spec", r#"spec: Invalid value: "object": failed rule: self.a > 1"#),
        case("passing rule").schema(json!({"type": "object", "properties": {"a": {"type": "integer"}},
            "x-kubernetes-validations": [{"rule": "self.a > 1"}]})).spec(json!({"a": 2})),
        case("value printed is the schema type")
            .schema(string_rule("self != 'x'"))
            .spec(json!({"s": "x"}))
            .error("spec.s", r#"spec.s: Invalid value: "string": failed rule: self != 'x'"#),
        case("messageExpression")
            .schema(json!({"type": "object", "properties": {"a": {"type": "integer"}},
                "x-kubernetes-validations": [{"rule": "self.a > 1", "message": "static", "messageExpression": "'a is ' + string(self.a)"}]}))
            .spec(json!({"a": 1}))
            .error("spec", "a is 1"),
        case("messageExpression that errors falls back to message")
            .schema(json!({"type": "object", "properties": {"a": {"type": "integer"}},
                "x-kubernetes-validations": [{"rule": "self.a > 1", "message": "static", "messageExpression": "self.missing"}]}))
            .spec(json!({"a": 1}))
            .error("spec", r#"Invalid value: "object": static"#),
        case("fieldPath moves the error")
            .schema(json!({"type": "object", "properties": {"a": {"type": "object", "properties": {"b": {"type": "string"}}}},
                "x-kubernetes-validations": [{"rule": "self.a.b != 'x'", "message": "no x", "fieldPath": ".a.b"}]}))
            .spec(json!({"a": {"b": "x"}}))
            .error("spec.a.b", "spec.a.b: Invalid value: \"object\": no x"),
        case("fieldPath into a map uses a key")
            .schema(json!({"type": "object", "properties": {"m": {"type": "object", "additionalProperties": {"type": "string"}}},
                "x-kubernetes-validations": [{"rule": "!('k' in self.m)", "message": "no k", "fieldPath": ".m['k']"}]}))
            .spec(json!({"m": {"k": "v"}}))
            .error("spec.m[k]", "no k"),
        case("reason Forbidden")
            .schema(json!({"type": "object", "x-kubernetes-preserve-unknown-fields": true,
                "x-kubernetes-validations": [{"rule": "!has(self.x)", "message": "x is not allowed", "reason": "FieldValueForbidden"}]}))
            .spec(json!({"x": 1}))
            .error("spec", "spec: Forbidden: x is not allowed"),
        case("reason Required")
            .schema(json!({"type": "object", "properties": {"x": {"type": "string"}},
                "x-kubernetes-validations": [{"rule": "has(self.x)", "message": "x is needed", "reason": "FieldValueRequired"}]}))
            .spec(json!({}))
            .error("spec", "spec: Required value: x is needed"),
        case("reason Duplicate")
            .schema(json!({"type": "object", "properties": {"x": {"type": "string"}},
                "x-kubernetes-validations": [{"rule": "has(self.x)", "reason": "FieldValueDuplicate"}]}))
            .spec(json!({}))
            .error("spec", r#"spec: Duplicate value: "object""#),
        case("rules on absent properties do not run")
            .schema(props(json!({"a": {"type": "string", "x-kubernetes-validations": [{"rule": "self == 'never'"}]}})))
            .spec(json!({})),
        case("rules on list items report the index")
            .schema(props(json!({"l": {"type": "array", "items": {"type": "string", "x-kubernetes-validations": [{"rule": "self.size() < 3", "message": "short"}]}}})))
            .spec(json!({"l": ["ok", "toolong"]}))
            .error("spec.l[1]", r#"spec.l[1]: Invalid value: "string": short"#),
        case("rules on map values report the key in brackets")
            .schema(props(json!({"m": {"type": "object", "additionalProperties": {"type": "string", "x-kubernetes-validations": [{"rule": "self != ''", "message": "empty"}]}}})))
            .spec(json!({"m": {"k": ""}}))
            .error("spec.m[k]", "empty"),
        case("evaluation error: int of a non-number")
            .schema(string_rule("int(self) > 0"))
            .spec(json!({"s": "abc"}))
            .error(
                "spec.s",
                r#"spec.s: Invalid value: "string": type conversion error from 'string' to 'int' evaluating rule: int(self) > 0"#,
            ),
        case("evaluation error: missing key")
            .schema(json!({"type": "object", "properties": {"a": {"type": "string"}}, "x-kubernetes-validations": [{"rule": "self.a == 'x'"}]}))
            .spec(json!({}))
            .error("spec", "no such key: a evaluating rule: self.a == 'x'"),
        case("evaluation error: no such overload")
            .schema(json!({"type": "object", "properties": {"a": {"type": "string"}}, "x-kubernetes-validations": [{"rule": "self.a > 1"}]}))
            .spec(json!({"a": "x"}))
            .error("spec", "'no such overload': call arguments did not match a supported operator, function or macro signature for rule: self.a > 1"),
        case("schema errors keep rules from running")
            .schema(json!({"type": "object", "required": ["a"], "properties": {"a": {"type": "string"}},
                "x-kubernetes-validations": [{"rule": "false"}]}))
            .spec(json!({}))
            .error("spec.a", "Required value")
            .error("<nil>", RULES_NOT_CHECKED),
        case("non-blocking schema errors let rules run")
            .schema(json!({"type": "object", "properties": {"a": {"type": "string", "pattern": "^a$"}},
                "x-kubernetes-validations": [{"rule": "false", "message": "ran"}]}))
            .spec(json!({"a": "b"}))
            .error("spec.a", "should match")
            .error("spec", "ran"),
        case("numbers compare across int and double")
            .schema(json!({"type": "object", "properties": {"w": {"type": "number"}, "i": {"type": "integer"}},
                "x-kubernetes-validations": [{"rule": "self.w > 1 && self.i < 2.5 && self.w != self.i", "message": "numeric"}]}))
            .spec(json!({"w": 1.5, "i": 2})),
        case("a number field holding an integer is a double")
            .schema(json!({"type": "object", "properties": {"w": {"type": "number"}},
                "x-kubernetes-validations": [{"rule": "self.w == 2.0 && type(self.w) == double", "message": "double"}]}))
            .spec(json!({"w": 2})),
        case("property names are escaped for rules")
            .schema(json!({"type": "object",
                "properties": {"x-y": {"type": "string"}, "namespace": {"type": "string"}, "a.b": {"type": "string"}},
                "x-kubernetes-validations": [{"rule": "self.x__dash__y == 'ok' && self.__namespace__ == 'n' && self.a__dot__b == 'd'", "message": "escaped"}]}))
            .spec(json!({"x-y": "no", "namespace": "n", "a.b": "d"}))
            .error("spec", "escaped"),
        case("escaped property names resolve")
            .schema(json!({"type": "object",
                "properties": {"x-y": {"type": "string"}, "namespace": {"type": "string"}},
                "x-kubernetes-validations": [{"rule": "self.x__dash__y == 'ok' && self.__namespace__ == 'n'"}]}))
            .spec(json!({"x-y": "ok", "namespace": "n"})),
    ];
    for c in cases {
        check(c);
    }
}

#[test]
fn root_rules_see_only_name_and_generate_name_of_metadata() {
    let mut definition = crd(props(json!({})));
    let root = definition.spec.versions[0]
        .schema
        .as_mut()
        .and_then(|s| s.open_api_v3_schema.as_mut())
        .expect("root schema");
    root.x_kubernetes_validations = Some(vec![serde_json::from_value(json!({
        "rule": "self.metadata.name.startsWith('w') && !has(self.metadata.labels) && self.kind == 'Widget'",
        "message": "root rule failed"
    }))
    .expect("rule")]);
    let validator = CrdValidator::new(&definition).expect("compiles");
    let mut named = object(json!({}));
    named["metadata"]["labels"] = json!({"a": "b"});
    assert!(validator.admit("v1", &named, None).is_ok());
    named["metadata"]["name"] = json!("x");
    let errors = validator.admit("v1", &named, None).expect_err("rule fails");
    assert!(
        errors.contains(
            "<nil>",
            r#"<nil>: Invalid value: "object": root rule failed"#
        ),
        "{errors}"
    );
}

#[test]
fn transition_rules() {
    let immutable = json!({"type": "object", "properties": {"a": {"type": "string"}, "b": {"type": "string"}},
        "x-kubernetes-validations": [{"rule": "self == oldSelf", "message": "spec is immutable"}]});
    let field_immutable = props(json!({
        "ref": {"type": "object", "properties": {"group": {"type": "string"}, "name": {"type": "string"}},
            "x-kubernetes-validations": [{"rule": "self.group == oldSelf.group", "message": "group is immutable"}]}
    }));
    let keyed = props(json!({"l": {
        "type": "array", "x-kubernetes-list-type": "map", "x-kubernetes-list-map-keys": ["name"],
        "items": {"type": "object", "properties": {"name": {"type": "string"}, "v": {"type": "integer",
            "x-kubernetes-validations": [{"rule": "self >= oldSelf", "message": "may only grow"}]}}}
    }}));
    let cases = vec![
        case("skipped on create")
            .schema(immutable.clone())
            .spec(json!({"a": "1"})),
        case("unchanged update")
            .schema(immutable.clone())
            .spec(json!({"a": "1"}))
            .old(json!({"a": "1"})),
        case("changed update rejected")
            .schema(immutable.clone())
            .spec(json!({"a": "2"}))
            .old(json!({"a": "1"}))
            .error(
                "spec",
                r#"spec: Invalid value: "object": spec is immutable"#,
            ),
        case("group change rejected")
            .schema(field_immutable.clone())
            .spec(json!({"ref": {"group": "b", "name": "x"}}))
            .old(json!({"ref": {"group": "a", "name": "x"}}))
            .error("spec.ref", "group is immutable"),
        case("name change accepted")
            .schema(field_immutable.clone())
            .spec(json!({"ref": {"group": "a", "name": "y"}}))
            .old(json!({"ref": {"group": "a", "name": "x"}})),
        case("field absent in old: rule skipped")
            .schema(field_immutable.clone())
            .spec(json!({"ref": {"group": "b"}}))
            .old(json!({})),
        case("list-map items correlate by key")
            .schema(keyed.clone())
            .spec(json!({"l": [{"name": "b", "v": 1}, {"name": "a", "v": 1}]}))
            .old(json!({"l": [{"name": "a", "v": 2}, {"name": "b", "v": 1}]}))
            .error("spec.l[1].v", "may only grow"),
        case("optionalOldSelf rules run on create")
            .schema(props(json!({"a": {"type": "string", "x-kubernetes-validations": [
                {"rule": "oldSelf.hasValue() || self == 'init'", "message": "must start at init", "optionalOldSelf": true}
            ]}})))
            .spec(json!({"a": "other"}))
            .error("spec.a", "must start at init"),
        case("optionalOldSelf rules see the old value on update")
            .schema(props(json!({"a": {"type": "string", "x-kubernetes-validations": [
                {"rule": "!oldSelf.hasValue() || oldSelf.value() == self", "message": "frozen", "optionalOldSelf": true}
            ]}})))
            .spec(json!({"a": "other"}))
            .old(json!({"a": "init"}))
            .error("spec.a", "frozen"),
        case("new list-map items have no oldSelf")
            .schema(keyed.clone())
            .spec(json!({"l": [{"name": "c", "v": 0}]}))
            .old(json!({"l": [{"name": "a", "v": 2}]})),
    ];
    for c in cases {
        check(c);
    }
}

#[test]
fn ratcheting_unchanged_values() {
    let schema = props(json!({
        "a": {"type": "string", "pattern": "^[a-z]+$"},
        "b": {"type": "string", "x-kubernetes-validations": [{"rule": "self != 'bad'", "message": "bad b"}]},
        "c": {"type": "string"}
    }));
    let cases = vec![
        case("unchanged invalid values are tolerated")
            .schema(schema.clone())
            .spec(json!({"a": "BAD", "b": "bad", "c": "new"}))
            .old(json!({"a": "BAD", "b": "bad", "c": "old"})),
        case("changed invalid values are not")
            .schema(schema.clone())
            .spec(json!({"a": "WORSE", "b": "bad"}))
            .old(json!({"a": "BAD", "b": "good"}))
            .error("spec.a", "should match")
            .error("spec.b", "bad b"),
    ];
    for c in cases {
        check(c);
    }
}

#[test]
fn kubernetes_cel_functions() {
    // (rule, value of a string field, whether the rule holds)
    let table: &[(&str, &str, bool)] = &[
        ("self.find('[0-9]+') == '123'", "abc123def", true),
        ("self.find('[0-9]+') == ''", "abc", true),
        ("self.findAll('[0-9]') == ['1', '2']", "a1b2", true),
        ("self.findAll('[0-9]', 1) == ['1']", "a1b2", true),
        ("self.split('@')[0] == 'al2023'", "al2023@latest", true),
        ("self.split('/').size() == 3", "a/b/c", true),
        ("self.lowerAscii() == 'abc'", "AbC", true),
        ("self.upperAscii() == 'ABC'", "abc", true),
        ("self.indexOf('b') == 1", "abc", true),
        ("self.lastIndexOf('a') == 2", "aba", true),
        ("self.trim() == 'x'", "  x ", true),
        ("self.replace('-', '_') == 'a_b_c'", "a-b-c", true),
        ("self.substring(1) == 'bc'", "abc", true),
        ("self.matches('^ami-[0-9a-z]+$')", "ami-0123abc", true),
        ("self.matches('^ami-[0-9a-z]+$')", "sg-1", false),
        (
            "self.startsWith('kubernetes.io/cluster')",
            "kubernetes.io/cluster/foo",
            true,
        ),
        ("self.split(',').isSorted()", "a,b,c", true),
        ("self.split(',').isSorted()", "b,a", false),
        (
            "[1, 2, 3].sum() == 6 && [3, 1].min() == 1 && [3, 1].max() == 3",
            "",
            true,
        ),
        (
            "self.split(',').indexOf('b') == 1 && self.split(',').lastIndexOf('a') == 2",
            "a,b,a",
            true,
        ),
        (
            "sets.contains(self.split(','), ['a']) && sets.intersects(['z', 'b'], self.split(','))",
            "a,b",
            true,
        ),
        (
            "self.split(',').filter(x, x == 'a').size() == 1",
            "a,b",
            true,
        ),
        ("self.split(',').exists_one(x, x == 'a')", "a,a", false),
        ("self.split(',').map(x, x + x) == ['aa', 'bb']", "a,b", true),
        ("self.split(',').all(x, x.size() == 1)", "a,bb", false),
        ("int(self) >= 0", "42", true),
    ];
    for (rule, value, holds) in table {
        let name: &'static str = Box::leak(format!("{rule} on {value:?}").into_boxed_str());
        let c = case(name)
            .schema(string_rule(rule))
            .spec(json!({"s": value}));
        check(if *holds {
            c
        } else {
            c.error("spec.s", "failed rule")
        });
    }
}

#[test]
fn uncompilable_rules_fail_at_construction() {
    let cases = vec![
        case("syntax error").schema(string_rule("self ==")).bad_schema("does not compile"),
        case("unknown function").schema(string_rule("self.frobnicate()")).bad_schema("unsupported function \"frobnicate\""),
        case("bad fieldPath")
            .schema(json!({"type": "object", "properties": {"a": {"type": "string"}},
                "x-kubernetes-validations": [{"rule": "true", "fieldPath": ".b"}]}))
            .bad_schema("fieldPath \".b\" is invalid"),
        case("bad reason")
            .schema(json!({"type": "object", "x-kubernetes-validations": [{"rule": "true", "reason": "Nope"}]}))
            .bad_schema("unsupported rule reason"),
        case("bad pattern").schema(props(json!({"a": {"type": "string", "pattern": "(["}}))).bad_schema("invalid pattern"),
    ];
    for c in cases {
        check(c);
    }
}

#[test]
fn invalid_message_and_status_shape() {
    let validator = CrdValidator::new(&crd(props(json!({
        "a": {"type": "integer", "minimum": 1},
        "b": {"type": "string", "enum": ["x", "y"]}
    }))))
    .expect("compiles");
    let one = validator
        .admit("v1", &object(json!({"a": 0})), None)
        .expect_err("invalid");
    assert_eq!(
        validator.invalid_message("w", &one),
        r#"Widget.example.com "w" is invalid: spec.a: Invalid value: 0: spec.a in body should be greater than or equal to 1"#
    );
    let two = validator
        .admit("v1", &object(json!({"a": 0, "b": "z"})), None)
        .expect_err("invalid");
    assert_eq!(
        validator.invalid_message("w", &two),
        r#"Widget.example.com "w" is invalid: [spec.a: Invalid value: 0: spec.a in body should be greater than or equal to 1, spec.b: Unsupported value: "z": supported values: "x", "y"]"#
    );
    let status = validator.invalid_status("w", &two);
    assert_eq!(status.code, Some(422));
    assert_eq!(status.reason.as_deref(), Some("Invalid"));
    assert_eq!(status.status.as_deref(), Some("Failure"));
    let details = status.details.expect("details");
    assert_eq!(details.kind.as_deref(), Some("Widget"));
    assert_eq!(details.group.as_deref(), Some("example.com"));
    assert_eq!(details.name.as_deref(), Some("w"));
    let causes: Vec<(String, String, String)> = details
        .causes
        .expect("causes")
        .into_iter()
        .map(|c| {
            (
                c.reason.unwrap_or_default(),
                c.field.unwrap_or_default(),
                c.message.unwrap_or_default(),
            )
        })
        .collect();
    assert_eq!(
        causes,
        vec![
            (
                "FieldValueInvalid".to_owned(),
                "spec.a".to_owned(),
                "Invalid value: 0: spec.a in body should be greater than or equal to 1".to_owned()
            ),
            (
                "FieldValueNotSupported".to_owned(),
                "spec.b".to_owned(),
                r#"Unsupported value: "z": supported values: "x", "y""#.to_owned()
            ),
        ]
    );
}

#[test]
fn validator_is_shareable_across_threads() {
    fn assert_send_sync<T: Send + Sync>() {}
    assert_send_sync::<CrdValidator>();
}
