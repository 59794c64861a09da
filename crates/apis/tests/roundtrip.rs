//! Serialization round trips of the three kinds, schema coverage of the hand-written CRDs, and
//! the seed manifests users actually apply.

#![allow(clippy::unwrap_used, clippy::expect_used)] // test helpers may panic

use std::collections::BTreeSet;
use std::fmt::Debug;

use karpenter_apis::crd;
use karpenter_apis::ec2nodeclass::{AmiFamily, EC2NodeClass};
use karpenter_apis::nodeclaim::NodeClaim;
use karpenter_apis::nodepool::{ConsolidationPolicy, NodePool};
use serde::Serialize;
use serde::de::DeserializeOwned;
use serde_json::Value;

const FULL_NODEPOOL: &str = include_str!("data/full_nodepool.yaml");
const FULL_NODECLAIM: &str = include_str!("data/full_nodeclaim.yaml");
const FULL_EC2NODECLASS: &str = include_str!("data/full_ec2nodeclass.yaml");
const SEED_000: &str = include_str!("data/seed_000_eksdemo.yaml");
const SEED_001: &str = include_str!("data/seed_001_getting_started.yaml");
/// What the README's walkthrough applies.
const EXAMPLE_SEED_000: &str = include_str!("../../../examples/seed-000.yaml");

/// Parses `yaml` as `K` and checks: the serialized form equals the input tree (every field
/// survives, nothing is added); JSON and YAML re-parses give back the same object.
fn check_roundtrip<K>(yaml: &str) -> K
where
    K: Serialize + DeserializeOwned + PartialEq + Debug,
{
    let input: Value = serde_yaml_ng::from_str(yaml).expect("input is YAML");
    let object: K = serde_yaml_ng::from_str(yaml).expect("input decodes");
    let as_json = serde_json::to_value(&object).expect("encodes as JSON");
    assert_eq!(as_json, input, "serialized form differs from the input");
    let from_json: K = serde_json::from_value(as_json.clone()).expect("JSON decodes");
    assert_eq!(from_json, object);
    let as_yaml = serde_yaml_ng::to_string(&object).expect("encodes as YAML");
    let from_yaml: K = serde_yaml_ng::from_str(&as_yaml).expect("YAML decodes");
    assert_eq!(from_yaml, object);
    assert_eq!(
        serde_json::to_value(&from_yaml).expect("re-encodes"),
        as_json
    );
    object
}

/// The `openAPIV3Schema` of a CRD built by `crd`.
fn schema_of(crd_json: Value) -> Value {
    crd_json["spec"]["versions"][0]["schema"]["openAPIV3Schema"].clone()
}

/// Walks `value` along `schema`. Returns schema properties absent from the value (for lists,
/// absent from every element) and adds keys the schema does not know to `unknown`.
fn coverage(
    schema: &Value,
    value: &Value,
    path: &str,
    unknown: &mut Vec<String>,
) -> BTreeSet<String> {
    let mut missing = BTreeSet::new();
    if let Some(props) = schema.get("properties").and_then(Value::as_object) {
        let Some(object) = value.as_object() else {
            missing.insert(format!("{path} (not an object)"));
            return missing;
        };
        for key in object.keys() {
            if !props.contains_key(key) {
                unknown.push(format!("{path}.{key}"));
            }
        }
        for (key, prop_schema) in props {
            let child = format!("{path}.{key}");
            match object.get(key) {
                Some(v) => missing.extend(coverage(prop_schema, v, &child, unknown)),
                None => {
                    missing.insert(child);
                }
            }
        }
    } else if let Some(values) = schema.get("additionalProperties") {
        if let Some(object) = value.as_object() {
            for (key, v) in object {
                missing.extend(coverage(values, v, &format!("{path}[{key}]"), unknown));
            }
        }
    } else if let Some(items) = schema.get("items") {
        let elements = value.as_array().cloned().unwrap_or_default();
        if elements.is_empty() {
            missing.insert(format!("{path}[]"));
        }
        let mut common: Option<BTreeSet<String>> = None;
        for element in &elements {
            let m = coverage(items, element, &format!("{path}[]"), unknown);
            common = Some(match common {
                None => m,
                Some(c) => c.intersection(&m).cloned().collect(),
            });
        }
        missing.extend(common.unwrap_or_default());
    }
    missing
}

fn check_coverage(kind: &str, crd_json: Value, yaml: &str) {
    let schema = schema_of(crd_json);
    let value: Value = serde_yaml_ng::from_str(yaml).expect("YAML");
    let mut unknown = Vec::new();
    let missing: Vec<String> = coverage(&schema, &value, "", &mut unknown)
        .into_iter()
        // The metadata schema is an open object; the fixture need not set every Go field.
        .filter(|p| !p.starts_with(".metadata"))
        .collect();
    assert!(
        unknown.is_empty(),
        "{kind}: fields unknown to the schema: {unknown:?}"
    );
    assert!(
        missing.is_empty(),
        "{kind}: schema fields the full fixture lacks: {missing:?}"
    );
}

#[test]
fn full_objects_roundtrip() {
    let nodepool: NodePool = check_roundtrip(FULL_NODEPOOL);
    assert_eq!(
        nodepool.spec.disruption.consolidation_policy,
        Some(ConsolidationPolicy::Balanced)
    );
    assert!(
        nodepool
            .spec
            .template
            .spec
            .expire_after
            .as_ref()
            .is_some_and(|e| e.is_never())
    );
    let nodeclaim: NodeClaim = check_roundtrip(FULL_NODECLAIM);
    assert_eq!(
        nodeclaim
            .status
            .as_ref()
            .and_then(|s| s.provider_id.as_deref()),
        Some("aws:///us-west-2a/i-0123456789abcdef0")
    );
    let nodeclass: EC2NodeClass = check_roundtrip(FULL_EC2NODECLASS);
    assert_eq!(nodeclass.resolved_ami_family(), AmiFamily::AL2023);
}

#[test]
fn full_objects_cover_their_schemas() {
    check_coverage("NodePool", crd::nodepool_crd_json(), FULL_NODEPOOL);
    check_coverage("NodeClaim", crd::nodeclaim_crd_json(), FULL_NODECLAIM);
    check_coverage(
        "EC2NodeClass",
        crd::ec2nodeclass_crd_json(),
        FULL_EC2NODECLASS,
    );
}

#[test]
fn absent_stays_absent() {
    let minimal = r#"
apiVersion: karpenter.sh/v1
kind: NodePool
metadata:
  name: minimal
spec:
  template:
    spec:
      requirements: []
      nodeClassRef: {group: karpenter.k8s.aws, kind: EC2NodeClass, name: default}
"#;
    let nodepool: NodePool = check_roundtrip(minimal);
    let disruption = &nodepool.spec.disruption;
    assert_eq!(disruption.consolidate_after_or_default().raw(), "0s");
    assert_eq!(
        disruption.consolidation_policy_or_default(),
        ConsolidationPolicy::WhenEmptyOrUnderutilized
    );
    assert_eq!(disruption.budgets_or_default()[0].nodes, "10%");
    assert_eq!(
        nodepool.spec.template.spec.expire_after_or_default().raw(),
        "720h"
    );
    let nodeclass: EC2NodeClass = check_roundtrip(
        "apiVersion: karpenter.k8s.aws/v1\nkind: EC2NodeClass\nmetadata:\n  name: x\nspec:\n  subnetSelectorTerms: []\n  securityGroupSelectorTerms: []\n  amiSelectorTerms:\n  - alias: bottlerocket@latest\n",
    );
    assert_eq!(nodeclass.resolved_ami_family(), AmiFamily::Bottlerocket);
}

#[test]
fn bad_values_fail_naming_the_problem() {
    let cases = [
        ("expireAfter: 5d", "unknown unit"),
        ("expireAfter: never", "invalid duration"),
        ("terminationGracePeriod: Never", "invalid duration"),
    ];
    for (line, want) in cases {
        let yaml = format!(
            "apiVersion: karpenter.sh/v1\nkind: NodePool\nmetadata: {{name: x}}\nspec:\n  template:\n    spec:\n      requirements: []\n      nodeClassRef: {{group: g, kind: k, name: n}}\n      {line}\n"
        );
        let err = serde_yaml_ng::from_str::<NodePool>(&yaml)
            .unwrap_err()
            .to_string();
        assert!(err.contains(want), "{line}: {err}");
    }
    let err = serde_yaml_ng::from_str::<NodePool>("metadata: {name: x}\n")
        .unwrap_err()
        .to_string();
    assert!(err.contains("spec"), "{err}");
}

#[test]
fn kinds_are_kube_resources() {
    use kube::Resource;
    let cases = [
        (
            NodePool::kind(&()),
            NodePool::api_version(&()),
            NodePool::url_path(&(), None),
        ),
        (
            NodeClaim::kind(&()),
            NodeClaim::api_version(&()),
            NodeClaim::url_path(&(), None),
        ),
        (
            EC2NodeClass::kind(&()),
            EC2NodeClass::api_version(&()),
            EC2NodeClass::url_path(&(), None),
        ),
    ];
    let got: Vec<(String, String, String)> = cases
        .into_iter()
        .map(|(k, v, p)| (k.into_owned(), v.into_owned(), p))
        .collect();
    let want = [
        (
            "NodePool",
            "karpenter.sh/v1",
            "/apis/karpenter.sh/v1/nodepools",
        ),
        (
            "NodeClaim",
            "karpenter.sh/v1",
            "/apis/karpenter.sh/v1/nodeclaims",
        ),
        (
            "EC2NodeClass",
            "karpenter.k8s.aws/v1",
            "/apis/karpenter.k8s.aws/v1/ec2nodeclasses",
        ),
    ];
    let want: Vec<(String, String, String)> = want
        .iter()
        .map(|(k, v, p)| (k.to_string(), v.to_string(), p.to_string()))
        .collect();
    assert_eq!(got, want);
    // A template becomes the NodeClaim spec it describes.
    let nodepool: NodePool = serde_yaml_ng::from_str(FULL_NODEPOOL).unwrap();
    let spec = nodepool.spec.template.to_nodeclaim_spec();
    assert_eq!(spec.requirements, nodepool.spec.template.spec.requirements);
    assert_eq!(spec.expire_after, nodepool.spec.template.spec.expire_after);
    let claim = NodeClaim::new("x", spec);
    let encoded = serde_json::to_value(&claim).unwrap();
    assert_eq!(encoded["apiVersion"], "karpenter.sh/v1");
    assert_eq!(encoded["kind"], "NodeClaim");
    assert!(encoded.get("status").is_none());
}

/// Splits a multi-document YAML file.
fn documents(text: &str) -> Vec<Value> {
    text.split("\n---")
        .filter(|doc| {
            doc.lines()
                .any(|l| !l.trim().is_empty() && !l.starts_with('#'))
        })
        .map(|doc| serde_yaml_ng::from_str(doc).expect("seed document is YAML"))
        .collect()
}

#[test]
fn seed_manifests_parse() {
    let mut kinds = Vec::new();
    for seed in [SEED_000, SEED_001] {
        for doc in documents(seed) {
            let kind = doc["kind"].as_str().unwrap_or_default().to_string();
            match kind.as_str() {
                "NodePool" => {
                    let np: NodePool = serde_json::from_value(doc.clone()).expect("NodePool");
                    assert_eq!(np.spec.template.spec.node_class_ref.kind, "EC2NodeClass");
                    assert_eq!(
                        np.spec
                            .disruption
                            .consolidate_after
                            .as_ref()
                            .and_then(|d| d.as_duration()),
                        Some(std::time::Duration::from_secs(60))
                    );
                    // Integer quantities (`cpu: 1000`) come back as strings, as from an API server.
                    let mut expected = doc.clone();
                    if let Some(limits) = expected["spec"]["limits"].as_object_mut() {
                        for v in limits.values_mut() {
                            if let Value::Number(n) = v {
                                *v = Value::String(n.to_string());
                            }
                        }
                    }
                    assert_eq!(serde_json::to_value(&np).expect("encodes"), expected);
                }
                "EC2NodeClass" => {
                    let nc: EC2NodeClass =
                        serde_json::from_value(doc.clone()).expect("EC2NodeClass");
                    assert_eq!(nc.resolved_ami_family(), AmiFamily::AL2);
                    assert_eq!(serde_json::to_value(&nc).expect("encodes"), doc);
                }
                other => panic!("unexpected kind {other}"),
            }
            kinds.push(kind);
        }
    }
    assert_eq!(
        kinds,
        ["NodePool", "EC2NodeClass", "NodePool", "EC2NodeClass"]
    );
}

/// The README's walkthrough applies `examples/seed-000.yaml`: its NodePool and EC2NodeClass
/// must stay exactly the seed's (checked above), followed by the seed's inflate app.
#[test]
fn readme_example_carries_the_seed_manifests() {
    let example = documents(EXAMPLE_SEED_000);
    let karpenter: Vec<Value> = example
        .iter()
        .filter(|d| {
            d["apiVersion"]
                .as_str()
                .is_some_and(|v| v.starts_with("karpenter."))
        })
        .cloned()
        .collect();
    assert_eq!(karpenter, documents(SEED_000));
    let kinds: Vec<&str> = example.iter().filter_map(|d| d["kind"].as_str()).collect();
    assert_eq!(
        kinds,
        ["NodePool", "EC2NodeClass", "Namespace", "Deployment"]
    );
    let deployment = &example[3];
    assert_eq!(deployment["metadata"]["name"], "inflate");
    assert_eq!(
        deployment["spec"]["template"]["spec"]["containers"][0]["resources"]["requests"]["cpu"],
        1
    );
}
