//! Drift hashes of the NodePool template and the EC2NodeClass spec.
//!
//! Upstream hashes Go structs with `hashstructure/v2`, which we deliberately do not reproduce:
//! we stamp our own hash-version strings instead. When Karpenter sees a version it did not
//! write, its hash controllers re-stamp NodeClaims with the new hash rather than marking them
//! drifted, so taking over a cluster from upstream causes no mass replacement.
//!
//! Encoding: the hashed fields are put into a JSON-like tree and written in a canonical byte
//! form — object keys sorted, absent/empty values left out (so adding an optional field later
//! does not change existing hashes), lists treated as sets (upstream's `SlicesAsSets`), and
//! durations as nanoseconds (so `720h` and `720h0m0s` hash alike). The bytes are hashed with
//! 64-bit FNV-1a and printed as a decimal `u64`, like upstream.

use std::collections::BTreeSet;

use k8s_openapi::api::core::v1::Taint;
use serde_json::{Map, Value, json};

use crate::ec2nodeclass::{AmiFamily, EC2NodeClass, EC2NodeClassSpec};
use crate::nodepool::{NodeClaimTemplate, NodePool};

/// Value of `karpenter.sh/nodepool-hash-version` written by this implementation.
pub const NODEPOOL_HASH_VERSION_VALUE: &str = "rs-v1";
/// Value of `karpenter.k8s.aws/ec2nodeclass-hash-version` written by this implementation.
pub const EC2NODECLASS_HASH_VERSION_VALUE: &str = "rs-v1";

/// Hash of a NodePool's `spec.template`: labels, annotations, taints, startupTaints,
/// nodeClassRef, terminationGracePeriod and expireAfter (defaulted to 720h when absent).
/// Requirements, budgets and other spec fields are excluded: changing them does not drift
/// nodes by hash.
pub fn nodepool_hash(nodepool: &NodePool) -> String {
    nodeclaim_template_hash(&nodepool.spec.template)
}

/// Hash of a NodeClaim template (see [`nodepool_hash`]).
pub fn nodeclaim_template_hash(template: &NodeClaimTemplate) -> String {
    let spec = &template.spec;
    let expire_after = match spec.expire_after_or_default().as_duration() {
        Some(d) => json!(d.as_nanos().to_string()),
        None => json!("Never"),
    };
    let tree = json!({
        "labels": template.metadata.labels,
        "annotations": template.metadata.annotations,
        "taints": spec.taints.iter().map(taint_value).collect::<Vec<_>>(),
        "startupTaints": spec.startup_taints.iter().map(taint_value).collect::<Vec<_>>(),
        "nodeClassRef": {
            "group": spec.node_class_ref.group,
            "kind": spec.node_class_ref.kind,
            "name": spec.node_class_ref.name,
        },
        "terminationGracePeriod": spec
            .termination_grace_period
            .as_ref()
            .map(|d| d.as_std().as_nanos().to_string()),
        "expireAfter": expire_after,
    });
    hash_tree(&tree)
}

fn taint_value(taint: &Taint) -> Value {
    json!({
        "key": taint.key,
        "value": taint.value.as_deref().unwrap_or(""),
        "effect": taint.effect,
        "timeAdded": taint.time_added.as_ref().map(|t| t.0.as_second()),
    })
}

/// Hash of an EC2NodeClass with its AMI family resolved from the object itself.
pub fn ec2nodeclass_hash(nodeclass: &EC2NodeClass) -> String {
    ec2nodeclass_spec_hash(&nodeclass.spec, nodeclass.resolved_ami_family())
}

/// Hash of an EC2NodeClass spec: every field except the subnet, security-group,
/// capacity-reservation and AMI selector terms, `ipPrefixCount` and the literal `amiFamily`;
/// the resolved AMI family is hashed instead, so setting `amiFamily` to what an alias already
/// implies does not drift nodes. `metadataOptions` is hashed with its CRD defaults applied.
pub fn ec2nodeclass_spec_hash(spec: &EC2NodeClassSpec, resolved_ami_family: AmiFamily) -> String {
    ec2nodeclass_spec_hash_with_ca_bundle(spec, resolved_ami_family, None)
}

/// [`ec2nodeclass_spec_hash`] that also covers the cluster CA bundle, as upstream v1.14.1 does
/// (a rotated CA then drifts nodes). `None` hashes exactly like [`ec2nodeclass_spec_hash`].
pub fn ec2nodeclass_spec_hash_with_ca_bundle(
    spec: &EC2NodeClassSpec,
    resolved_ami_family: AmiFamily,
    ca_bundle: Option<&str>,
) -> String {
    let mut spec = spec.clone();
    spec.subnet_selector_terms.clear();
    spec.security_group_selector_terms.clear();
    spec.capacity_reservation_selector_terms.clear();
    spec.ami_selector_terms.clear();
    spec.ip_prefix_count = None;
    spec.ami_family = None;
    let metadata = spec.metadata_options.get_or_insert_with(Default::default);
    metadata
        .http_endpoint
        .get_or_insert_with(|| "enabled".to_string());
    metadata
        .http_protocol_ipv6
        .get_or_insert_with(|| "disabled".to_string());
    metadata.http_put_response_hop_limit.get_or_insert(1);
    metadata
        .http_tokens
        .get_or_insert_with(|| "required".to_string());
    let mut spec_value = serde_json::to_value(&spec).unwrap_or(Value::Null);
    if let Some(kubelet) = spec_value.get_mut("kubelet").and_then(Value::as_object_mut) {
        // Only the first clusterDNS entry is used by most families, so its order matters: hash
        // it as an indexed object rather than as a set.
        if let Some(Value::Array(dns)) = kubelet.remove("clusterDNS") {
            let indexed: Map<String, Value> = dns
                .into_iter()
                .enumerate()
                .map(|(i, v)| (format!("{i:06}"), v))
                .collect();
            kubelet.insert("clusterDNS".into(), Value::Object(indexed));
        }
        if let Some(Value::Object(grace)) = kubelet.get_mut("evictionSoftGracePeriod") {
            for value in grace.values_mut() {
                if let Some(nanos) = value
                    .as_str()
                    .and_then(|raw| crate::duration::parse_go_duration(raw).ok())
                    .map(|d| d.as_nanos().to_string())
                {
                    *value = Value::String(nanos);
                }
            }
        }
    }
    let tree = json!({
        "spec": spec_value,
        "amiFamily": resolved_ami_family.as_str(),
        "caBundle": ca_bundle,
    });
    hash_tree(&tree)
}

/// Hash of an arbitrary tree in the canonical encoding; exposed for tests and tooling.
pub fn hash_tree(tree: &Value) -> String {
    let mut bytes = Vec::new();
    encode(tree, &mut bytes);
    fnv1a64(&bytes).to_string()
}

/// Whether a value carries no information (and is therefore left out of its parent).
fn is_empty(value: &Value) -> bool {
    match value {
        Value::Null => true,
        Value::Array(items) => items.iter().all(is_empty),
        Value::Object(map) => map.values().all(is_empty),
        _ => false,
    }
}

fn write_len(len: usize, out: &mut Vec<u8>) {
    out.extend_from_slice(&(len as u64).to_le_bytes());
}

fn write_bytes(tag: u8, bytes: &[u8], out: &mut Vec<u8>) {
    out.push(tag);
    write_len(bytes.len(), out);
    out.extend_from_slice(bytes);
}

fn encode(value: &Value, out: &mut Vec<u8>) {
    match value {
        Value::Null => out.push(b'z'),
        Value::Bool(b) => write_bytes(b'b', &[u8::from(*b)], out),
        Value::Number(n) => write_bytes(b'n', n.to_string().as_bytes(), out),
        Value::String(s) => write_bytes(b's', s.as_bytes(), out),
        Value::Array(items) => {
            // A set: encode each element, then sort and dedupe the encodings.
            let elements: BTreeSet<Vec<u8>> = items
                .iter()
                .filter(|v| !is_empty(v))
                .map(|v| {
                    let mut e = Vec::new();
                    encode(v, &mut e);
                    e
                })
                .collect();
            out.push(b'a');
            write_len(elements.len(), out);
            for element in elements {
                write_len(element.len(), out);
                out.extend_from_slice(&element);
            }
        }
        Value::Object(map) => {
            let mut entries: Vec<(&String, &Value)> =
                map.iter().filter(|(_, v)| !is_empty(v)).collect();
            entries.sort_by(|a, b| a.0.cmp(b.0));
            out.push(b'o');
            write_len(entries.len(), out);
            for (key, v) in entries {
                write_bytes(b'k', key.as_bytes(), out);
                encode(v, out);
            }
        }
    }
}

/// 64-bit FNV-1a.
fn fnv1a64(bytes: &[u8]) -> u64 {
    const OFFSET: u64 = 0xcbf2_9ce4_8422_2325;
    const PRIME: u64 = 0x0000_0100_0000_01b3;
    bytes.iter().fold(OFFSET, |hash, byte| {
        (hash ^ u64::from(*byte)).wrapping_mul(PRIME)
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn fnv_known_vectors() {
        assert_eq!(fnv1a64(b""), 0xcbf2_9ce4_8422_2325);
        assert_eq!(fnv1a64(b"a"), 0xaf63_dc4c_8601_ec8c);
        assert_eq!(fnv1a64(b"foobar"), 0x85944171f73967e8);
    }

    #[test]
    fn empty_equals_absent() {
        let cases = [
            (json!({"a": null}), json!({})),
            (json!({"a": []}), json!({})),
            (json!({"a": {}}), json!({})),
            (json!({"a": [null, {}]}), json!({})),
            (json!({"a": [1, 2]}), json!({"a": [2, 1, 2]})),
        ];
        for (left, right) in cases {
            assert_eq!(hash_tree(&left), hash_tree(&right), "{left} vs {right}");
        }
        assert_ne!(hash_tree(&json!({"a": ""})), hash_tree(&json!({})));
        assert_ne!(hash_tree(&json!({"a": false})), hash_tree(&json!({})));
        assert_ne!(hash_tree(&json!({"a": "1"})), hash_tree(&json!({"a": 1})));
        assert_ne!(
            hash_tree(&json!({"ab": "c"})),
            hash_tree(&json!({"a": "bc"}))
        );
    }
}
