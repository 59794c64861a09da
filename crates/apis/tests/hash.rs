//! Drift hashes: what they cover, what they ignore, and a pinned encoding.

#![allow(clippy::unwrap_used, clippy::expect_used)] // test helpers may panic

use karpenter_apis::ec2nodeclass::{AmiFamily, EC2NodeClass};
use karpenter_apis::hash::{
    EC2NODECLASS_HASH_VERSION_VALUE, NODEPOOL_HASH_VERSION_VALUE, ec2nodeclass_hash,
    ec2nodeclass_spec_hash, ec2nodeclass_spec_hash_with_ca_bundle, nodepool_hash,
};
use karpenter_apis::nodepool::NodePool;
use serde_json::{Value, json};

const FULL_NODEPOOL: &str = include_str!("data/full_nodepool.yaml");
const FULL_EC2NODECLASS: &str = include_str!("data/full_ec2nodeclass.yaml");

fn base(yaml: &str) -> Value {
    serde_yaml_ng::from_str(yaml).expect("fixture is YAML")
}

/// Sets (or with `Value::Null`, removes) the value at a `/`-separated path.
fn edit(mut value: Value, path: &str, new: Value) -> Value {
    let mut parts: Vec<&str> = path.split('/').collect();
    let last = parts.pop().expect("non-empty path");
    let mut cursor = &mut value;
    for part in parts {
        cursor = match part.parse::<usize>() {
            Ok(i) => &mut cursor[i],
            Err(_) => &mut cursor[part],
        };
    }
    match (cursor, last.parse::<usize>()) {
        (Value::Array(items), Ok(i)) => items[i] = new,
        (Value::Object(map), _) if new.is_null() => {
            map.remove(last);
        }
        (Value::Object(map), _) => {
            map.insert(last.to_string(), new);
        }
        (other, _) => panic!("cannot edit {path} in {other}"),
    }
    value
}

fn np_hash(value: &Value) -> String {
    let nodepool: NodePool = serde_json::from_value(value.clone()).expect("NodePool decodes");
    nodepool_hash(&nodepool)
}

fn nc_hash(value: &Value) -> String {
    let nodeclass: EC2NodeClass =
        serde_json::from_value(value.clone()).expect("EC2NodeClass decodes");
    ec2nodeclass_hash(&nodeclass)
}

/// Each case edits the fixture at a path; `changes` says whether the hash must move.
fn check(hash: fn(&Value) -> String, fixture: &str, cases: &[(&str, Value, bool)]) {
    let original = base(fixture);
    let before = hash(&original);
    for (path, new, changes) in cases {
        let after = hash(&edit(original.clone(), path, new.clone()));
        assert_eq!(
            before != after,
            *changes,
            "editing {path} to {new} should {}change the hash",
            if *changes { "" } else { "not " }
        );
    }
}

const T: &str = "spec/template/spec";

#[test]
fn nodepool_hash_covers_template_fields() {
    let cases: Vec<(String, Value, bool)> = vec![
        // Covered.
        (
            "spec/template/metadata/labels/team".into(),
            json!("other"),
            true,
        ),
        (
            "spec/template/metadata/annotations/x".into(),
            json!("y"),
            true,
        ),
        (format!("{T}/taints/0/value"), json!("cpu"), true),
        (format!("{T}/taints/0/effect"), json!("NoExecute"), true),
        (format!("{T}/startupTaints"), Value::Null, true),
        (format!("{T}/nodeClassRef/name"), json!("other"), true),
        (format!("{T}/nodeClassRef/group"), json!("other"), true),
        (format!("{T}/nodeClassRef/kind"), json!("Other"), true),
        (format!("{T}/terminationGracePeriod"), json!("24h"), true),
        (format!("{T}/terminationGracePeriod"), Value::Null, true),
        (format!("{T}/expireAfter"), json!("24h"), true),
        (format!("{T}/expireAfter"), Value::Null, true),
        // Equivalent spellings and ignored fields.
        (
            format!("{T}/terminationGracePeriod"),
            json!("48h0m0s"),
            false,
        ),
        (format!("{T}/terminationGracePeriod"), json!("2880m"), false),
        (format!("{T}/requirements"), json!([]), false),
        (
            "spec/disruption".into(),
            json!({"consolidateAfter": "Never"}),
            false,
        ),
        ("spec/limits".into(), Value::Null, false),
        ("spec/weight".into(), json!(1), false),
        ("spec/replicas".into(), Value::Null, false),
        ("status".into(), Value::Null, false),
        ("metadata/name".into(), json!("renamed"), false),
    ];
    let cases: Vec<(&str, Value, bool)> = cases
        .iter()
        .map(|(p, v, c)| (p.as_str(), v.clone(), *c))
        .collect();
    check(np_hash, FULL_NODEPOOL, &cases);
}

#[test]
fn nodepool_hash_ignores_order_and_empties() {
    let original = base(FULL_NODEPOOL);
    let taint_a = json!({"key": "a", "effect": "NoSchedule"});
    let taint_b = json!({"key": "b", "value": "v", "effect": "NoExecute"});
    let forward = edit(
        original.clone(),
        &format!("{T}/taints"),
        json!([taint_a, taint_b]),
    );
    let backward = edit(
        original.clone(),
        &format!("{T}/taints"),
        json!([taint_b, taint_a]),
    );
    assert_eq!(np_hash(&forward), np_hash(&backward));
    let labels_ab = edit(
        original.clone(),
        "spec/template/metadata/labels",
        json!({"a": "1", "b": "2"}),
    );
    let labels_ba = edit(
        original.clone(),
        "spec/template/metadata/labels",
        json!({"b": "2", "a": "1"}),
    );
    assert_eq!(np_hash(&labels_ab), np_hash(&labels_ba));
    let no_labels = edit(
        original.clone(),
        "spec/template/metadata/labels",
        Value::Null,
    );
    let empty_labels = edit(original.clone(), "spec/template/metadata/labels", json!({}));
    assert_eq!(np_hash(&no_labels), np_hash(&empty_labels));
    // An absent expireAfter is the CRD default.
    let absent = edit(original.clone(), &format!("{T}/expireAfter"), Value::Null);
    let default = edit(original, &format!("{T}/expireAfter"), json!("720h"));
    assert_eq!(np_hash(&absent), np_hash(&default));
}

#[test]
fn ec2nodeclass_hash_covers_launch_fields() {
    let cases: &[(&str, Value, bool)] = &[
        // Covered.
        ("spec/userData", json!("other"), true),
        ("spec/tags/team", json!("other"), true),
        ("spec/kubelet/maxPods", json!(29), true),
        (
            "spec/kubelet/clusterDNS",
            json!(["10.100.0.11", "10.100.0.10"]),
            true,
        ),
        (
            "spec/kubelet/evictionSoftGracePeriod/nodefs.available",
            json!("2m"),
            true,
        ),
        (
            "spec/blockDeviceMappings/0/ebs/volumeSize",
            json!("200Gi"),
            true,
        ),
        (
            "spec/metadataOptions/httpPutResponseHopLimit",
            json!(1),
            true,
        ),
        ("spec/role", json!("other"), true),
        ("spec/instanceProfile", Value::Null, true),
        ("spec/context", json!("other"), true),
        ("spec/networkInterfaces", Value::Null, true),
        ("spec/detailedMonitoring", json!(false), true),
        ("spec/associatePublicIPAddress", json!(true), true),
        ("spec/instanceStorePolicy", Value::Null, true),
        ("spec/placementGroupSelector/name", json!("other"), true),
        ("spec/connectionTracking/udpTimeout", json!(60), true),
        (
            "spec/cpuOptions/nestedVirtualization",
            json!("disabled"),
            true,
        ),
        ("spec/amiFamily", json!("Custom"), true),
        // Ignored.
        (
            "spec/subnetSelectorTerms",
            json!([{"id": "subnet-1"}]),
            false,
        ),
        (
            "spec/securityGroupSelectorTerms",
            json!([{"id": "sg-1"}]),
            false,
        ),
        ("spec/capacityReservationSelectorTerms", Value::Null, false),
        (
            "spec/amiSelectorTerms",
            json!([{"alias": "al2023@latest"}]),
            false,
        ),
        ("spec/ipPrefixCount", json!(7), false),
        (
            "spec/kubelet/evictionSoftGracePeriod/nodefs.available",
            json!("90s"),
            false,
        ),
        ("status", Value::Null, false),
        ("metadata/name", json!("renamed"), false),
        // Literal amiFamily equal to the alias family is the same resolved family.
        ("spec/amiFamily", Value::Null, false),
    ];
    check(nc_hash, FULL_EC2NODECLASS, cases);
}

#[test]
fn ec2nodeclass_hash_defaults_metadata_options() {
    let original = base(FULL_EC2NODECLASS);
    let default_options = json!({
        "httpEndpoint": "enabled",
        "httpProtocolIPv6": "disabled",
        "httpPutResponseHopLimit": 1,
        "httpTokens": "required",
    });
    let absent = edit(original.clone(), "spec/metadataOptions", Value::Null);
    let explicit = edit(original.clone(), "spec/metadataOptions", default_options);
    let partial = edit(
        original,
        "spec/metadataOptions",
        json!({"httpTokens": "required"}),
    );
    assert_eq!(nc_hash(&absent), nc_hash(&explicit));
    assert_eq!(nc_hash(&absent), nc_hash(&partial));
}

#[test]
fn ec2nodeclass_hash_covers_ca_bundle() {
    let nodeclass: EC2NodeClass = serde_yaml_ng::from_str(FULL_EC2NODECLASS).expect("EC2NodeClass");
    let family = nodeclass.resolved_ami_family();
    let plain = ec2nodeclass_spec_hash(&nodeclass.spec, family);
    let none = ec2nodeclass_spec_hash_with_ca_bundle(&nodeclass.spec, family, None);
    let ca1 = ec2nodeclass_spec_hash_with_ca_bundle(&nodeclass.spec, family, Some("CA1"));
    let ca2 = ec2nodeclass_spec_hash_with_ca_bundle(&nodeclass.spec, family, Some("CA2"));
    assert_eq!(plain, none);
    assert_ne!(plain, ca1);
    assert_ne!(ca1, ca2);
}

#[test]
fn golden_values_pin_the_encoding() {
    // If these change, every node would drift on upgrade: bump the *_HASH_VERSION_VALUE
    // constants together with the encoding. (Editing the full_* fixtures also moves them.)
    assert_eq!(NODEPOOL_HASH_VERSION_VALUE, "rs-v1");
    assert_eq!(EC2NODECLASS_HASH_VERSION_VALUE, "rs-v1");
    let nodepool: NodePool = serde_yaml_ng::from_str(FULL_NODEPOOL).expect("NodePool");
    let nodeclass: EC2NodeClass = serde_yaml_ng::from_str(FULL_EC2NODECLASS).expect("EC2NodeClass");
    let np = nodepool_hash(&nodepool);
    let nc = ec2nodeclass_spec_hash(&nodeclass.spec, AmiFamily::AL2023);
    assert!(np.parse::<u64>().is_ok() && nc.parse::<u64>().is_ok());
    assert_eq!(
        (np.as_str(), nc.as_str()),
        ("837209588381656345", "792687502120101458")
    );
}
