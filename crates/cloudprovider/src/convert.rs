//! Conversions every provider needs between the API types (NodeClaim requirements and resource
//! lists) and the scheduling model.

use k8s_openapi::apimachinery::pkg::api::resource::Quantity;
use karpenter_apis::common::ResourceList;
use karpenter_apis::nodeclaim::NodeClaim;
use karpenter_scheduling::quantity::{QuantityError, format_resource};
use karpenter_scheduling::requirements::RequirementError;

use crate::{Operator, RequirementSpec, Requirements, Resources};

/// A NodeClaim's `spec.requirements` as a requirement set (keys normalised, minValues kept).
pub fn node_claim_requirements(node_claim: &NodeClaim) -> Result<Requirements, RequirementError> {
    let specs: Vec<RequirementSpec> = node_claim
        .spec
        .requirements
        .iter()
        .map(|r| {
            Ok(RequirementSpec {
                key: r.key.clone(),
                operator: Operator::parse(r.operator.as_str()).ok_or_else(|| {
                    RequirementError::UnsupportedOperator {
                        key: r.key.clone(),
                        operator: r.operator.as_str().to_string(),
                    }
                })?,
                values: r.values.clone(),
                min_values: r.min_values,
            })
        })
        .collect::<Result<_, RequirementError>>()?;
    Requirements::from_specs(&specs)
}

/// A resource list as integer resources (cpu in millicores).
pub fn parse_resource_list(list: &ResourceList) -> Result<Resources, QuantityError> {
    Resources::parse(list.iter().map(|(k, v)| (k.as_str(), v.0.as_str())))
}

/// Integer resources written as a Kubernetes resource list (`1500m`, `7Gi`, `110`).
pub fn resource_list(resources: &Resources) -> ResourceList {
    resources
        .iter()
        .map(|(name, amount)| (name.to_string(), Quantity(format_resource(name, amount))))
        .collect()
}

#[cfg(test)]
mod tests {
    use karpenter_apis::common::{
        NodeClassReference, NodeSelectorOperator, NodeSelectorRequirementWithMinValues,
    };
    use karpenter_apis::nodeclaim::NodeClaimSpec;

    use super::*;

    #[test]
    fn resource_lists_round_trip() {
        let list: ResourceList = [("cpu", "1500m"), ("memory", "7Gi"), ("pods", "110")]
            .into_iter()
            .map(|(k, v)| (k.to_string(), Quantity(v.to_string())))
            .collect();
        let resources = parse_resource_list(&list).unwrap();
        assert_eq!(resources.cpu, 1500);
        assert_eq!(resources.memory, 7 << 30);
        assert_eq!(resource_list(&resources), list);
        let bad: ResourceList = [("cpu".to_string(), Quantity("lots".to_string()))].into();
        assert!(parse_resource_list(&bad).unwrap_err().input.contains("cpu"));
    }

    #[test]
    fn node_claim_requirements_keep_operators_and_min_values() {
        let mut req = NodeSelectorRequirementWithMinValues::new(
            "node.kubernetes.io/instance-type",
            NodeSelectorOperator::In,
            ["m5.large", "m5.xlarge"],
        );
        req.min_values = Some(2);
        let claim = NodeClaim::new(
            "a",
            NodeClaimSpec {
                taints: vec![],
                startup_taints: vec![],
                requirements: vec![
                    req,
                    NodeSelectorRequirementWithMinValues::new(
                        "karpenter.k8s.aws/instance-cpu",
                        NodeSelectorOperator::Gt,
                        ["3"],
                    ),
                ],
                resources: Default::default(),
                node_class_ref: NodeClassReference::ec2_node_class("default"),
                termination_grace_period: None,
                expire_after: None,
            },
        );
        let reqs = node_claim_requirements(&claim).unwrap();
        let it = reqs.get("node.kubernetes.io/instance-type").unwrap();
        assert!(it.has("m5.xlarge") && !it.has("c5.large"));
        assert_eq!(it.min_values, Some(2));
        let cpu = reqs.get("karpenter.k8s.aws/instance-cpu").unwrap();
        assert!(cpu.has("4") && !cpu.has("3"));
    }
}
