//! Runtime validation of a NodePool (`ValidationSucceeded`): what the CRD's schema and CEL
//! cannot catch, or what an older CRD installed in the cluster did not check. Pure.

use std::collections::BTreeSet;

use karpenter_apis::common::NodeSelectorOperator;
use karpenter_apis::labels;
use karpenter_apis::nodepool::NodePool;

/// Reason of a False `ValidationSucceeded`.
pub const REASON_VALIDATION_FAILED: &str = "NodePoolValidationFailed";

const TAINT_EFFECTS: [&str; 3] = ["NoSchedule", "PreferNoSchedule", "NoExecute"];

/// A label value as Kubernetes allows it: at most 63 characters, alphanumerics with `-_.`
/// inside, starting and ending alphanumeric (empty allowed).
pub fn valid_label_value(v: &str) -> bool {
    let bytes = v.as_bytes();
    v.len() <= 63
        && bytes
            .iter()
            .all(|b| b.is_ascii_alphanumeric() || matches!(b, b'-' | b'_' | b'.'))
        && bytes.first().is_none_or(|b| b.is_ascii_alphanumeric())
        && bytes.last().is_none_or(|b| b.is_ascii_alphanumeric())
}

/// The first problem with `nodepool`, as the condition message.
pub fn validate(nodepool: &NodePool) -> Result<(), String> {
    let template = &nodepool.spec.template;
    for (key, value) in &template.metadata.labels {
        if let Some(reason) = labels::restricted_label_reason(key, true) {
            return Err(format!("invalid label key {key:?}: {reason}"));
        }
        if !valid_label_value(value) {
            return Err(format!("invalid value {value:?} for label {key:?}"));
        }
    }
    let mut seen: BTreeSet<(&str, &str)> = BTreeSet::new();
    for taint in template
        .spec
        .taints
        .iter()
        .chain(template.spec.startup_taints.iter())
    {
        if taint.key.is_empty() {
            return Err("taint key is empty".to_string());
        }
        if !TAINT_EFFECTS.contains(&taint.effect.as_str()) {
            return Err(format!(
                "invalid effect {:?} for taint {:?}",
                taint.effect, taint.key
            ));
        }
        if !seen.insert((taint.key.as_str(), taint.effect.as_str())) {
            return Err(format!(
                "duplicate taint Key/Effect pair {}={}",
                taint.key, taint.effect
            ));
        }
    }
    for r in &template.spec.requirements {
        let key = labels::normalize_label_key(&r.key);
        if let Some(reason) = labels::restricted_label_reason(key, true) {
            return Err(format!("invalid requirement key {:?}: {reason}", r.key));
        }
        if let Some(v) = r.values.iter().find(|v| !valid_label_value(v)) {
            return Err(format!("invalid value {v:?} for requirement {:?}", r.key));
        }
        match r.operator {
            NodeSelectorOperator::In if r.values.is_empty() => {
                return Err(format!(
                    "requirement {:?} with operator 'In' must have a value defined",
                    r.key
                ));
            }
            NodeSelectorOperator::Gt
            | NodeSelectorOperator::Lt
            | NodeSelectorOperator::Gte
            | NodeSelectorOperator::Lte => {
                let single_int = matches!(r.values.as_slice(), [v] if v.parse::<u64>().is_ok());
                if !single_int {
                    return Err(format!(
                        "requirement {:?} with operator {} must have a single positive integer value",
                        r.key, r.operator
                    ));
                }
            }
            _ => {}
        }
        if r.operator == NodeSelectorOperator::In
            && let Some(min) = r.min_values
            && (r.values.len() as u64) < u64::from(min)
        {
            return Err(format!(
                "requirement {:?} has minValues {min} but only {} values",
                r.key,
                r.values.len()
            ));
        }
        if key == labels::CAPACITY_TYPE
            && r.operator == NodeSelectorOperator::In
            && let Some(v) = r
                .values
                .iter()
                .find(|v| !labels::CAPACITY_TYPES.contains(&v.as_str()))
        {
            return Err(format!(
                "invalid value {v:?} for requirement {:?}, expected one of {}",
                r.key,
                labels::CAPACITY_TYPES.join(", ")
            ));
        }
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;
    use k8s_openapi::api::core::v1::Taint;
    use karpenter_apis::common::{NodeClassReference, NodeSelectorRequirementWithMinValues};
    use karpenter_apis::nodepool::{NodeClaimTemplate, NodeClaimTemplateSpec, NodePoolSpec};

    struct Pool(NodePool);

    fn pool() -> Pool {
        Pool(NodePool::new(
            "p",
            NodePoolSpec {
                template: NodeClaimTemplate {
                    metadata: Default::default(),
                    spec: NodeClaimTemplateSpec {
                        taints: vec![],
                        startup_taints: vec![],
                        requirements: vec![],
                        node_class_ref: NodeClassReference::ec2_node_class("default"),
                        termination_grace_period: None,
                        expire_after: None,
                    },
                },
                disruption: Default::default(),
                limits: Default::default(),
                weight: None,
                replicas: None,
            },
        ))
    }

    fn taint(key: &str, effect: &str) -> Taint {
        Taint {
            key: key.into(),
            effect: effect.into(),
            ..Taint::default()
        }
    }

    impl Pool {
        fn label(mut self, k: &str, v: &str) -> Pool {
            self.0
                .spec
                .template
                .metadata
                .labels
                .insert(k.into(), v.into());
            self
        }
        fn taint(mut self, k: &str, e: &str) -> Pool {
            self.0.spec.template.spec.taints.push(taint(k, e));
            self
        }
        fn startup_taint(mut self, k: &str, e: &str) -> Pool {
            self.0.spec.template.spec.startup_taints.push(taint(k, e));
            self
        }
        fn req(mut self, k: &str, op: NodeSelectorOperator, values: &[&str]) -> Pool {
            self.0
                .spec
                .template
                .spec
                .requirements
                .push(NodeSelectorRequirementWithMinValues::new(
                    k,
                    op,
                    values.iter().copied(),
                ));
            self
        }
        fn min_values(mut self, n: u32) -> Pool {
            if let Some(r) = self.0.spec.template.spec.requirements.last_mut() {
                r.min_values = Some(n);
            }
            self
        }
    }

    /// `expected`: `None` = valid, `Some(fragment)` = invalid with a message containing it.
    fn check(input: Pool, expected: Option<&str>) {
        match (validate(&input.0), expected) {
            (Ok(()), None) => {}
            (Err(m), Some(fragment)) => assert!(m.contains(fragment), "{m:?} lacks {fragment:?}"),
            (got, want) => panic!("got {got:?}, want {want:?}"),
        }
    }

    #[test]
    fn validation_cases() {
        use NodeSelectorOperator::*;
        check(pool(), None);
        check(
            pool().label("team", "a").taint("dedicated", "NoSchedule"),
            None,
        );
        check(
            pool().label("karpenter.sh/nodepool", "x"),
            Some("restricted"),
        );
        check(
            pool().label("kubernetes.io/hostname", "x"),
            Some("restricted"),
        );
        check(pool().label("team", "-bad-"), Some("invalid value"));
        check(
            pool().taint("a", "NoSchedule").taint("a", "NoSchedule"),
            Some("duplicate taint"),
        );
        check(
            pool()
                .taint("a", "NoSchedule")
                .startup_taint("a", "NoSchedule"),
            Some("duplicate taint"),
        );
        check(
            pool().taint("a", "NoSchedule").taint("a", "NoExecute"),
            None,
        );
        check(pool().taint("a", "Sometimes"), Some("invalid effect"));
        check(
            pool().req("karpenter.sh/nodepool", In, &["x"]),
            Some("restricted"),
        );
        check(
            pool().req("karpenter.sh/other", Exists, &[]),
            Some("restricted"),
        );
        check(pool().req(labels::ARCH, In, &[]), Some("must have a value"));
        check(
            pool().req("cpu", Gt, &["x"]),
            Some("single positive integer"),
        );
        check(
            pool().req("cpu", Gt, &["1", "2"]),
            Some("single positive integer"),
        );
        check(pool().req("cpu", Lt, &["4"]), None);
        check(
            pool().req(labels::CAPACITY_TYPE, In, &["cheap"]),
            Some("expected one of"),
        );
        check(
            pool().req(labels::CAPACITY_TYPE, In, &["spot", "on-demand"]),
            None,
        );
        check(
            pool()
                .req(labels::INSTANCE_TYPE, In, &["a", "b"])
                .min_values(3),
            Some("minValues 3"),
        );
        check(
            pool().req(labels::ZONE, In, &["us west"]),
            Some("invalid value"),
        );
    }
}
