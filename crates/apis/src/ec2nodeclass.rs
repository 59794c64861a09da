//! `karpenter.k8s.aws/v1` EC2NodeClass: how the AWS provider launches instances (AMIs, subnets,
//! security groups, IAM, user data, kubelet settings, block devices, IMDS, networking).

use std::collections::BTreeMap;
use std::fmt;

use k8s_openapi::api::core::v1::NodeSelectorRequirement;
use k8s_openapi::apimachinery::pkg::api::resource::Quantity;
use k8s_openapi::apimachinery::pkg::apis::meta::v1::{ObjectMeta, Time};
use serde::{Deserialize, Serialize};

use crate::common::{Condition, custom_resource, is_empty_map};
use crate::duration::Duration;

/// An EC2NodeClass: AWS-specific launch configuration referenced by NodePools.
#[derive(Clone, Debug, PartialEq)]
pub struct EC2NodeClass {
    /// Standard object metadata.
    pub metadata: ObjectMeta,
    /// Desired state.
    pub spec: EC2NodeClassSpec,
    /// Resolved state; absent until the nodeclass controller writes it.
    pub status: Option<EC2NodeClassStatus>,
}

// Upstream declares `spec` with omitempty and does not require it at the top level, so an
// object without one decodes to an empty spec (which then fails the spec's own validation
// wherever that runs).
custom_resource!(
    EC2NodeClass, "EC2NodeClassList", "karpenter.k8s.aws", "ec2nodeclasses",
    spec: EC2NodeClassSpec, status: EC2NodeClassStatus,
    missing_spec: EC2NodeClassSpec::default()
);

/// `spec` of an EC2NodeClass.
#[derive(Serialize, Deserialize, Clone, Debug, PartialEq, Default)]
#[serde(rename_all = "camelCase")]
pub struct EC2NodeClassSpec {
    /// Subnet selector terms (ORed).
    #[serde(default)]
    pub subnet_selector_terms: Vec<SubnetSelectorTerm>,
    /// Security group selector terms (ORed).
    #[serde(default)]
    pub security_group_selector_terms: Vec<SecurityGroupSelectorTerm>,
    /// Capacity reservation selector terms (ORed).
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub capacity_reservation_selector_terms: Vec<CapacityReservationSelectorTerm>,
    /// Placement group to launch into.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub placement_group_selector: Option<PlacementGroupSelector>,
    /// Whether instances get a public IP; unset follows the subnet's setting.
    #[serde(
        default,
        rename = "associatePublicIPAddress",
        skip_serializing_if = "Option::is_none"
    )]
    pub associate_public_ip_address: Option<bool>,
    /// Number of IP prefixes assigned to the primary network interface.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub ip_prefix_count: Option<i32>,
    /// AMI selector terms (ORed).
    #[serde(default)]
    pub ami_selector_terms: Vec<AmiSelectorTerm>,
    /// AMI family (user data format, default block devices); inferred from an alias if unset.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub ami_family: Option<AmiFamily>,
    /// User data merged with Karpenter's bootstrap configuration.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub user_data: Option<String>,
    /// IAM role name; Karpenter manages an instance profile for it.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub role: Option<String>,
    /// Pre-existing instance profile name (instead of `role`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub instance_profile: Option<String>,
    /// Tags for instances, volumes, launch templates and instance profiles.
    #[serde(default, skip_serializing_if = "is_empty_map")]
    pub tags: BTreeMap<String, String>,
    /// Kubelet settings.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub kubelet: Option<KubeletConfiguration>,
    /// Block device mappings; empty means the AMI family's defaults.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub block_device_mappings: Vec<BlockDeviceMapping>,
    /// How to use instance-store disks.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub instance_store_policy: Option<InstanceStorePolicy>,
    /// Network interfaces to attach at launch.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub network_interfaces: Vec<NetworkInterface>,
    /// Whether detailed CloudWatch monitoring is on.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub detailed_monitoring: Option<bool>,
    /// Instance metadata service options; the API server defaults them.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub metadata_options: Option<MetadataOptions>,
    /// Connection tracking timeouts of the primary interface.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub connection_tracking: Option<ConnectionTracking>,
    /// EC2 Fleet `Context` (reserved field).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub context: Option<String>,
    /// CPU options.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub cpu_options: Option<CpuOptions>,
}

/// Selects subnets by tags or ID.
#[derive(Serialize, Deserialize, Clone, Debug, PartialEq, Default)]
pub struct SubnetSelectorTerm {
    /// Tags to match; value `*` matches any value of the key.
    #[serde(default, skip_serializing_if = "is_empty_map")]
    pub tags: BTreeMap<String, String>,
    /// Subnet ID.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub id: Option<String>,
}

/// Selects security groups by tags, ID or group name.
#[derive(Serialize, Deserialize, Clone, Debug, PartialEq, Default)]
pub struct SecurityGroupSelectorTerm {
    /// Tags to match; value `*` matches any value of the key.
    #[serde(default, skip_serializing_if = "is_empty_map")]
    pub tags: BTreeMap<String, String>,
    /// Security group ID.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub id: Option<String>,
    /// Security group name (the GroupName, not the Name tag).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub name: Option<String>,
}

/// Selects capacity reservations.
#[derive(Serialize, Deserialize, Clone, Debug, PartialEq, Default)]
#[serde(rename_all = "camelCase")]
pub struct CapacityReservationSelectorTerm {
    /// Tags to match; value `*` matches any value of the key.
    #[serde(default, skip_serializing_if = "is_empty_map")]
    pub tags: BTreeMap<String, String>,
    /// Capacity reservation ID.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub id: Option<String>,
    /// Owning account ID.
    #[serde(default, rename = "ownerID", skip_serializing_if = "Option::is_none")]
    pub owner_id: Option<String>,
    /// `open` or `targeted`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub instance_match_criteria: Option<String>,
}

/// Selects a placement group by name or ID.
#[derive(Serialize, Deserialize, Clone, Debug, PartialEq, Default)]
pub struct PlacementGroupSelector {
    /// Placement group name.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub name: Option<String>,
    /// Placement group ID.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub id: Option<String>,
}

/// Selects AMIs by alias, tags, ID, name/owner or SSM parameter.
#[derive(Serialize, Deserialize, Clone, Debug, PartialEq, Default)]
#[serde(rename_all = "camelCase")]
pub struct AmiSelectorTerm {
    /// EKS-optimized AMI alias `family@version`, e.g. `al2023@latest`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub alias: Option<String>,
    /// Tags to match; value `*` matches any value of the key.
    #[serde(default, skip_serializing_if = "is_empty_map")]
    pub tags: BTreeMap<String, String>,
    /// AMI ID.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub id: Option<String>,
    /// Image name (EC2 `name` filter; wildcards allowed).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub name: Option<String>,
    /// Owner account ID, `self`, `amazon` or `aws-marketplace`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub owner: Option<String>,
    /// SSM parameter whose value is an AMI ID.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub ssm_parameter: Option<String>,
}

/// AMI family: decides the user data format and default block devices.
#[derive(Serialize, Deserialize, Clone, Copy, Debug, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum AmiFamily {
    /// Amazon Linux 2.
    AL2,
    /// Amazon Linux 2023.
    AL2023,
    /// Bottlerocket.
    Bottlerocket,
    /// User-supplied AMI and user data; Karpenter adds nothing.
    Custom,
    /// Windows Server 2019.
    Windows2019,
    /// Windows Server 2022.
    Windows2022,
    /// Windows Server 2025.
    Windows2025,
}

impl AmiFamily {
    /// Every family, in CRD enum order.
    pub const ALL: [Self; 7] = [
        Self::AL2,
        Self::AL2023,
        Self::Bottlerocket,
        Self::Custom,
        Self::Windows2019,
        Self::Windows2022,
        Self::Windows2025,
    ];

    /// The wire name.
    pub fn as_str(self) -> &'static str {
        match self {
            Self::AL2 => "AL2",
            Self::AL2023 => "AL2023",
            Self::Bottlerocket => "Bottlerocket",
            Self::Custom => "Custom",
            Self::Windows2019 => "Windows2019",
            Self::Windows2022 => "Windows2022",
            Self::Windows2025 => "Windows2025",
        }
    }

    /// The family an alias prefix names (`al2023` → AL2023); `Custom` has no alias.
    pub fn from_alias_family(family: &str) -> Option<Self> {
        Self::ALL
            .into_iter()
            .filter(|f| *f != Self::Custom)
            .find(|f| f.as_str().eq_ignore_ascii_case(family))
    }

    /// Lowercase alias prefix of the family, if it has one.
    pub fn alias_family(self) -> Option<String> {
        (self != Self::Custom).then(|| self.as_str().to_ascii_lowercase())
    }

    /// Whether this is a Windows family.
    pub fn is_windows(self) -> bool {
        matches!(
            self,
            Self::Windows2019 | Self::Windows2022 | Self::Windows2025
        )
    }
}

impl fmt::Display for AmiFamily {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

/// Kubelet settings (typed as in upstream v1.14.1).
#[derive(Serialize, Deserialize, Clone, Debug, PartialEq, Default)]
#[serde(rename_all = "camelCase")]
pub struct KubeletConfiguration {
    /// Cluster DNS server IPs (most families use only the first).
    #[serde(default, rename = "clusterDNS", skip_serializing_if = "Vec::is_empty")]
    pub cluster_dns: Vec<String>,
    /// Maximum pods per node.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub max_pods: Option<i32>,
    /// Maximum pods per vCPU.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub pods_per_core: Option<i32>,
    /// Resources reserved for the OS (cpu, memory, ephemeral-storage, pid).
    #[serde(default, skip_serializing_if = "is_empty_map")]
    pub system_reserved: BTreeMap<String, String>,
    /// Resources reserved for Kubernetes daemons (cpu, memory, ephemeral-storage, pid).
    #[serde(default, skip_serializing_if = "is_empty_map")]
    pub kube_reserved: BTreeMap<String, String>,
    /// Hard eviction thresholds by signal.
    #[serde(default, skip_serializing_if = "is_empty_map")]
    pub eviction_hard: BTreeMap<String, String>,
    /// Soft eviction thresholds by signal.
    #[serde(default, skip_serializing_if = "is_empty_map")]
    pub eviction_soft: BTreeMap<String, String>,
    /// Grace period per soft eviction signal.
    #[serde(default, skip_serializing_if = "is_empty_map")]
    pub eviction_soft_grace_period: BTreeMap<String, Duration>,
    /// Maximum pod grace period (seconds) for soft evictions.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub eviction_max_pod_grace_period: Option<i32>,
    /// Disk usage percent above which image GC always runs.
    #[serde(
        default,
        rename = "imageGCHighThresholdPercent",
        skip_serializing_if = "Option::is_none"
    )]
    pub image_gc_high_threshold_percent: Option<i32>,
    /// Disk usage percent image GC frees down to.
    #[serde(
        default,
        rename = "imageGCLowThresholdPercent",
        skip_serializing_if = "Option::is_none"
    )]
    pub image_gc_low_threshold_percent: Option<i32>,
    /// CPU CFS quota enforcement for containers with CPU limits.
    #[serde(
        default,
        rename = "cpuCFSQuota",
        skip_serializing_if = "Option::is_none"
    )]
    pub cpu_cfs_quota: Option<bool>,
}

/// A block device mapping of the launch template.
#[derive(Serialize, Deserialize, Clone, Debug, PartialEq, Default)]
#[serde(rename_all = "camelCase")]
pub struct BlockDeviceMapping {
    /// Device name, e.g. `/dev/xvda`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub device_name: Option<String>,
    /// EBS volume settings.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub ebs: Option<BlockDevice>,
    /// Whether this volume holds the kubelet root directory (sizes ephemeral-storage).
    #[serde(default, skip_serializing_if = "std::ops::Not::not")]
    pub root_volume: bool,
}

/// EBS volume settings.
#[derive(Serialize, Deserialize, Clone, Debug, PartialEq, Default)]
#[serde(rename_all = "camelCase")]
pub struct BlockDevice {
    /// Delete the volume when the instance terminates.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub delete_on_termination: Option<bool>,
    /// Encrypt the volume.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub encrypted: Option<bool>,
    /// Provisioned IOPS.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub iops: Option<i64>,
    /// KMS key for encryption.
    #[serde(default, rename = "kmsKeyID", skip_serializing_if = "Option::is_none")]
    pub kms_key_id: Option<String>,
    /// Snapshot to create the volume from.
    #[serde(
        default,
        rename = "snapshotID",
        skip_serializing_if = "Option::is_none"
    )]
    pub snapshot_id: Option<String>,
    /// Provisioned throughput (MiB/s, gp3).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub throughput: Option<i64>,
    /// Snapshot initialization rate in MiB/s.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub volume_initialization_rate: Option<i32>,
    /// Volume size (`Gi`, `G`, `Ti`, `T`); rounded up to GiB for EC2.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub volume_size: Option<Quantity>,
    /// Volume type (`gp3`, `io2`, …).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub volume_type: Option<String>,
}

/// How instance-store disks are used.
#[derive(Serialize, Deserialize, Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum InstanceStorePolicy {
    /// RAID-0 all local NVMe disks and put containerd/kubelet state on the array.
    RAID0,
}

/// A network interface to attach at launch.
#[derive(Serialize, Deserialize, Clone, Debug, PartialEq, Eq, Hash, Default)]
#[serde(rename_all = "camelCase")]
pub struct NetworkInterface {
    /// Network card index.
    pub network_card_index: i32,
    /// Device index on the card.
    pub device_index: i32,
    /// `interface` or `efa-only`.
    pub interface_type: String,
}

/// Instance metadata service (IMDS) options.
#[derive(Serialize, Deserialize, Clone, Debug, PartialEq, Default)]
#[serde(rename_all = "camelCase")]
pub struct MetadataOptions {
    /// `enabled` or `disabled`.
    #[serde(
        default,
        rename = "httpEndpoint",
        skip_serializing_if = "Option::is_none"
    )]
    pub http_endpoint: Option<String>,
    /// `enabled` or `disabled`.
    #[serde(
        default,
        rename = "httpProtocolIPv6",
        skip_serializing_if = "Option::is_none"
    )]
    pub http_protocol_ipv6: Option<String>,
    /// PUT response hop limit, 1–64.
    #[serde(
        default,
        rename = "httpPutResponseHopLimit",
        skip_serializing_if = "Option::is_none"
    )]
    pub http_put_response_hop_limit: Option<i64>,
    /// `required` (IMDSv2) or `optional`.
    #[serde(
        default,
        rename = "httpTokens",
        skip_serializing_if = "Option::is_none"
    )]
    pub http_tokens: Option<String>,
}

/// Connection tracking timeouts, in seconds.
#[derive(Serialize, Deserialize, Clone, Debug, PartialEq, Default)]
#[serde(rename_all = "camelCase")]
pub struct ConnectionTracking {
    /// Idle timeout of established TCP connections (60–432000).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub tcp_established_timeout: Option<i32>,
    /// Timeout of UDP flows seen in both directions (60–180).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub udp_stream_timeout: Option<i32>,
    /// Timeout of one-directional UDP flows (30–60).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub udp_timeout: Option<i32>,
}

/// CPU options.
#[derive(Serialize, Deserialize, Clone, Debug, PartialEq, Default)]
#[serde(rename_all = "camelCase")]
pub struct CpuOptions {
    /// `enabled` restricts to types supporting nested virtualization; or `disabled`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub nested_virtualization: Option<String>,
}

/// `status` of an EC2NodeClass.
#[derive(Serialize, Deserialize, Clone, Debug, PartialEq, Default)]
#[serde(rename_all = "camelCase")]
pub struct EC2NodeClassStatus {
    /// Resolved subnets.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub subnets: Vec<Subnet>,
    /// Resolved security groups.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub security_groups: Vec<SecurityGroup>,
    /// Resolved capacity reservations.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub capacity_reservations: Vec<CapacityReservation>,
    /// Resolved AMIs with the requirements each satisfies.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub amis: Vec<Ami>,
    /// Resolved or created instance profile name.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub instance_profile: Option<String>,
    /// Status conditions.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub conditions: Vec<Condition>,
}

/// A resolved subnet.
#[derive(Serialize, Deserialize, Clone, Debug, PartialEq, Default)]
pub struct Subnet {
    /// Subnet ID.
    pub id: String,
    /// Availability zone name.
    pub zone: String,
    /// Availability zone ID.
    #[serde(default, rename = "zoneID", skip_serializing_if = "Option::is_none")]
    pub zone_id: Option<String>,
}

/// A resolved security group.
#[derive(Serialize, Deserialize, Clone, Debug, PartialEq, Default)]
pub struct SecurityGroup {
    /// Security group ID.
    pub id: String,
    /// Group name.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub name: Option<String>,
}

/// A resolved capacity reservation.
#[derive(Serialize, Deserialize, Clone, Debug, PartialEq, Default)]
#[serde(rename_all = "camelCase")]
pub struct CapacityReservation {
    /// Zone of the reservation.
    pub availability_zone: String,
    /// When the reservation ends, if it does.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub end_time: Option<Time>,
    /// Reservation ID.
    pub id: String,
    /// `open` or `targeted`.
    pub instance_match_criteria: String,
    /// Instance type reserved.
    pub instance_type: String,
    /// Owning account ID.
    #[serde(rename = "ownerID")]
    pub owner_id: String,
    /// `default` or `capacity-block` (CRD default `default`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub reservation_type: Option<String>,
    /// Whether the reservation can be interrupted.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub interruptible: Option<bool>,
    /// `active` or `expiring` (CRD default `active`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub state: Option<String>,
}

/// A resolved AMI.
#[derive(Serialize, Deserialize, Clone, Debug, PartialEq, Default)]
pub struct Ami {
    /// AMI ID.
    pub id: String,
    /// Image name.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub name: Option<String>,
    /// Whether the image is deprecated.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub deprecated: Option<bool>,
    /// Requirements an instance type must meet to use this AMI (arch, GPU, …).
    #[serde(default)]
    pub requirements: Vec<NodeSelectorRequirement>,
}

/// A parsed `family@version` alias.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Alias {
    /// The family.
    pub family: AmiFamily,
    /// The version (`latest` or a pinned release).
    pub version: String,
}

impl EC2NodeClass {
    /// The alias of the (only) alias term, if any and well-formed.
    pub fn alias(&self) -> Option<Alias> {
        let alias = self
            .spec
            .ami_selector_terms
            .iter()
            .find_map(|term| term.alias.as_deref())?;
        let (family, version) = alias.split_once('@')?;
        Some(Alias {
            family: AmiFamily::from_alias_family(family)?,
            version: version.to_string(),
        })
    }

    /// The AMI family in effect: `spec.amiFamily`, else the alias' family, else `Custom`.
    pub fn resolved_ami_family(&self) -> AmiFamily {
        self.spec
            .ami_family
            .or_else(|| self.alias().map(|a| a.family))
            .unwrap_or(AmiFamily::Custom)
    }
}

impl CapacityReservation {
    /// `reservationType`, defaulting to `default`.
    pub fn reservation_type_or_default(&self) -> &str {
        self.reservation_type.as_deref().unwrap_or("default")
    }

    /// `state`, defaulting to `active`.
    pub fn state_or_default(&self) -> &str {
        self.state.as_deref().unwrap_or("active")
    }
}
