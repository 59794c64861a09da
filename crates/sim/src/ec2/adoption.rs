//! Restart safety: the instance table of a simulated EC2 lives in its process, so a restarted
//! controller would see every Node it registered earlier as an orphan (no instance behind the
//! provider ID) and garbage-collect it. Each Node the simulation registers therefore carries
//! its instance record ([`INSTANCE_ANNOTATION`], found through [`INSTANCE_ID_LABEL`]), and
//! [`super::SimulatedEc2::adopt_registered_nodes`] rebuilds the table from those Nodes.
//!
//! What cannot be recovered: instances that were launched but had not registered their Node
//! when the process died. Their state existed only in that process, so after a restart they
//! are gone, as if EC2 had lost them; the controllers treat their NodeClaims like any claim
//! whose instance vanished.

use std::collections::BTreeMap;

use chrono::{DateTime, Utc};
use k8s_openapi::api::core::v1::{Node, Taint};
use karpenter_apis::common::NodeClassReference;
use serde::{Deserialize, Serialize};

use super::{InstanceState, SimInstance};

/// Label on every Node the simulated EC2 registers; its value is the instance ID. A label (not
/// only the annotation) so a restarted simulation lists just its own Nodes with a selector.
pub const INSTANCE_ID_LABEL: &str = "sim.karpenter.sh/instance-id";

/// Annotation carrying the instance record (JSON, [`InstanceRecord`]) a restarted simulation
/// adopts.
pub const INSTANCE_ANNOTATION: &str = "sim.karpenter.sh/instance";

/// What a registered Node remembers about its instance: the fields that are neither derivable
/// from the catalog (capacity, price, zone ID) nor from the provider ID.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct InstanceRecord {
    /// Instance ID.
    pub instance_id: String,
    /// Instance type name.
    pub instance_type: String,
    /// Zone.
    pub zone: String,
    /// `spot` or `on-demand`.
    pub capacity_type: String,
    /// AMI.
    pub image_id: String,
    /// `amd64` or `arm64`.
    pub arch: String,
    /// `linux` or `windows`.
    pub os: String,
    /// Private IPv4 address (also orders launches: see [`launch_sequence`]).
    pub private_ip: String,
    /// Launch time.
    pub launch_time: DateTime<Utc>,
    /// The NodeClaim it was launched for.
    pub node_claim: String,
    /// The NodeClaim's NodePool, if labelled.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub node_pool: Option<String>,
    /// The NodeClaim's NodeClass reference.
    pub node_class_ref: NodeClassReference,
    /// Resolved labels of the instance (before the kubelet's own).
    #[serde(default)]
    pub labels: BTreeMap<String, String>,
    /// The NodeClaim's taints.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub taints: Vec<Taint>,
    /// The NodeClaim's startup taints.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub startup_taints: Vec<Taint>,
}

impl InstanceRecord {
    /// The record of an instance.
    pub fn of(instance: &SimInstance) -> InstanceRecord {
        InstanceRecord {
            instance_id: instance.instance_id.clone(),
            instance_type: instance.instance_type.clone(),
            zone: instance.zone.clone(),
            capacity_type: instance.capacity_type.clone(),
            image_id: instance.image_id.clone(),
            arch: instance.arch.clone(),
            os: instance.os.clone(),
            private_ip: instance.private_ip.clone(),
            launch_time: instance.launch_time,
            node_claim: instance.node_claim.clone(),
            node_pool: instance.node_pool.clone(),
            node_class_ref: instance.node_class_ref.clone(),
            labels: instance.labels.clone(),
            taints: instance.taints.clone(),
            startup_taints: instance.startup_taints.clone(),
        }
    }
}

/// Why a Node carrying [`INSTANCE_ID_LABEL`] was not adopted.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum SkipReason {
    /// No [`INSTANCE_ANNOTATION`].
    #[error("no {INSTANCE_ANNOTATION} annotation")]
    NoRecord,
    /// The annotation is not a valid record.
    #[error("{INSTANCE_ANNOTATION}: {0}")]
    BadRecord(String),
    /// The label, record and provider ID disagree about the instance.
    #[error("instance {record} in the record, but label {label:?} and providerID {provider_id:?}")]
    Mismatch {
        /// The record's instance ID.
        record: String,
        /// The label's value.
        label: String,
        /// The Node's provider ID.
        provider_id: String,
    },
    /// The instance type is not in this simulation's catalog.
    #[error("instance type {0} is not in the catalog")]
    UnknownType(String),
}

/// The result of [`super::SimulatedEc2::adopt_registered_nodes`].
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Adoption {
    /// Instance IDs adopted, sorted.
    pub adopted: Vec<String>,
    /// Nodes carrying the label that were not adopted, with why (sorted by Node name).
    pub skipped: Vec<(String, SkipReason)>,
    /// Instances already known to this simulation (left as they are).
    pub already_known: usize,
}

/// The launch number encoded in a private IP (10.0.0.10 is launch 0), so a restarted
/// simulation hands out addresses, and therefore Node names, no earlier launch used.
pub fn launch_sequence(private_ip: &str) -> Option<u32> {
    let octets: Vec<u8> = private_ip
        .split('.')
        .map(|o| o.parse::<u8>().ok())
        .collect::<Option<Vec<u8>>>()?;
    let bytes: [u8; 4] = octets.try_into().ok()?;
    u32::from_be_bytes(bytes).checked_sub(super::FIRST_PRIVATE_IP)
}

/// Reads the record of a Node and checks it against the Node's label and provider ID.
pub fn record_of(node: &Node) -> Result<InstanceRecord, SkipReason> {
    let raw = node
        .metadata
        .annotations
        .as_ref()
        .and_then(|a| a.get(INSTANCE_ANNOTATION))
        .ok_or(SkipReason::NoRecord)?;
    let record: InstanceRecord =
        serde_json::from_str(raw).map_err(|e| SkipReason::BadRecord(e.to_string()))?;
    let label = node
        .metadata
        .labels
        .as_ref()
        .and_then(|l| l.get(INSTANCE_ID_LABEL))
        .cloned()
        .unwrap_or_default();
    let provider_id = node
        .spec
        .as_ref()
        .and_then(|s| s.provider_id.clone())
        .unwrap_or_default();
    let matches = label == record.instance_id
        && super::parse_provider_id(&provider_id)
            == Some((record.zone.as_str(), record.instance_id.as_str()));
    if !matches {
        return Err(SkipReason::Mismatch {
            record: record.instance_id,
            label,
            provider_id,
        });
    }
    Ok(record)
}

/// The running instance a record describes; capacity, price and zone ID come from the catalog
/// as they did at launch.
pub(crate) fn instance_from_record(
    record: InstanceRecord,
    node_name: String,
    types: &[karpenter_cloudprovider::InstanceType],
    catalog: &karpenter_catalog::Catalog,
) -> Result<SimInstance, SkipReason> {
    let t = types
        .iter()
        .find(|t| t.name == record.instance_type)
        .ok_or_else(|| SkipReason::UnknownType(record.instance_type.clone()))?;
    let offering = t
        .offerings
        .iter()
        .find(|o| o.zone == record.zone && o.capacity_type == record.capacity_type);
    let (capacity, allocatable, price, zone_id) = match offering {
        Some(o) => (
            t.capacity_for(o).clone(),
            t.allocatable_for(o),
            o.price,
            o.labels
                .get(karpenter_apis::labels::AWS_ZONE_ID)
                .cloned()
                .unwrap_or_default(),
        ),
        // An offering the catalog no longer lists: the type's figures, no price.
        None => (t.capacity.clone(), t.allocatable(), 0.0, String::new()),
    };
    let price_source = super::catalog::price_source(
        catalog,
        &record.instance_type,
        &record.zone,
        &record.capacity_type,
    );
    Ok(SimInstance {
        provider_id: format!("aws:///{}/{}", record.zone, record.instance_id),
        instance_id: record.instance_id,
        instance_type: record.instance_type,
        zone: record.zone,
        zone_id,
        capacity_type: record.capacity_type,
        price,
        price_source,
        image_id: record.image_id,
        arch: record.arch,
        os: record.os,
        private_ip: record.private_ip,
        node_name,
        state: InstanceState::Running,
        launch_time: record.launch_time,
        termination_started_at: None,
        terminated_at: None,
        node_claim: record.node_claim,
        node_pool: record.node_pool,
        node_class_label_key: record.node_class_ref.label_key(),
        node_class_name: record.node_class_ref.name.clone(),
        node_class_ref: record.node_class_ref,
        labels: record.labels,
        taints: record.taints,
        startup_taints: record.startup_taints,
        capacity,
        allocatable,
        interrupted: false,
        node_registered: true,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn launch_sequence_inverts_the_address_plan() {
        let table = [
            ("10.0.0.10", Some(0)),
            ("10.0.0.11", Some(1)),
            ("10.0.1.10", Some(256)),
            ("10.0.0.9", None),
            ("10.0.0", None),
            ("10.0.0.300", None),
            ("x", None),
        ];
        for (ip, want) in table {
            assert_eq!(launch_sequence(ip), want, "{ip}");
        }
    }
}
