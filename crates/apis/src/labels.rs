//! Well-known label keys, annotations, taints and finalizers, named exactly as upstream
//! Karpenter v1 (core `pkg/apis/v1/labels.go` and the AWS provider's `labels.go`).
//!
//! Users' manifests, dashboards and other tooling key on these strings, so they are constants
//! here and nowhere else.

/// API group of NodePool and NodeClaim.
pub const GROUP: &str = "karpenter.sh";
/// API group of EC2NodeClass.
pub const AWS_GROUP: &str = "karpenter.k8s.aws";

// ---- Kubernetes well-known labels -------------------------------------------------------

/// Zone of a node (`topology.kubernetes.io/zone`).
pub const ZONE: &str = "topology.kubernetes.io/zone";
/// Region of a node.
pub const REGION: &str = "topology.kubernetes.io/region";
/// Instance type of a node.
pub const INSTANCE_TYPE: &str = "node.kubernetes.io/instance-type";
/// CPU architecture (`amd64`, `arm64`).
pub const ARCH: &str = "kubernetes.io/arch";
/// Operating system (`linux`, `windows`).
pub const OS: &str = "kubernetes.io/os";
/// Windows build number, only on Windows nodes.
pub const WINDOWS_BUILD: &str = "node.kubernetes.io/windows-build";
/// Hostname of a node; restricted for users.
pub const HOSTNAME: &str = "kubernetes.io/hostname";
/// Added to a node when it starts terminating, so load balancers stop routing to it.
pub const EXCLUDE_FROM_EXTERNAL_LOAD_BALANCERS: &str =
    "node.kubernetes.io/exclude-from-external-load-balancers";

// ---- Karpenter core labels ----------------------------------------------------------------

/// The NodePool that owns a NodeClaim / Node.
pub const NODEPOOL: &str = "karpenter.sh/nodepool";
/// Capacity type of a node: `on-demand`, `spot` or `reserved`.
pub const CAPACITY_TYPE: &str = "karpenter.sh/capacity-type";
/// `"true"` once a NodeClaim's Node has been synced.
pub const REGISTERED: &str = "karpenter.sh/registered";
/// `"true"` once a node is Ready, its startup taints are gone and extended resources registered.
pub const INITIALIZED: &str = "karpenter.sh/initialized";
/// `"true"` on a Node means registration does not merge NodeClaim taints onto it.
pub const DO_NOT_SYNC_TAINTS: &str = "karpenter.sh/do-not-sync-taints";

/// Capacity type value for on-demand capacity.
pub const CAPACITY_TYPE_ON_DEMAND: &str = "on-demand";
/// Capacity type value for spot capacity.
pub const CAPACITY_TYPE_SPOT: &str = "spot";
/// Capacity type value for reserved (capacity reservation) capacity.
pub const CAPACITY_TYPE_RESERVED: &str = "reserved";
/// Every capacity type Karpenter knows.
pub const CAPACITY_TYPES: [&str; 3] = [
    CAPACITY_TYPE_ON_DEMAND,
    CAPACITY_TYPE_SPOT,
    CAPACITY_TYPE_RESERVED,
];

// ---- AWS provider labels ------------------------------------------------------------------

/// Zone ID (e.g. `usw2-az1`).
pub const AWS_ZONE_ID: &str = "topology.k8s.aws/zone-id";
/// The EC2NodeClass a node was launched from (`<group>/<lowercase kind>` of the nodeClassRef).
pub const AWS_EC2NODECLASS: &str = "karpenter.k8s.aws/ec2nodeclass";
/// Instance category (`m` in `m5.large`).
pub const AWS_INSTANCE_CATEGORY: &str = "karpenter.k8s.aws/instance-category";
/// Instance generation (`5` in `m5.large`).
pub const AWS_INSTANCE_GENERATION: &str = "karpenter.k8s.aws/instance-generation";
/// Instance family (`m5` in `m5.large`).
pub const AWS_INSTANCE_FAMILY: &str = "karpenter.k8s.aws/instance-family";
/// Instance size (`large` in `m5.large`).
pub const AWS_INSTANCE_SIZE: &str = "karpenter.k8s.aws/instance-size";
/// `"true"` for `-flex` families.
pub const AWS_INSTANCE_CAPABILITY_FLEX: &str = "karpenter.k8s.aws/instance-capability-flex";
/// Default vCPUs.
pub const AWS_INSTANCE_CPU: &str = "karpenter.k8s.aws/instance-cpu";
/// CPU manufacturer (`intel`, `amd`, `aws`).
pub const AWS_INSTANCE_CPU_MANUFACTURER: &str = "karpenter.k8s.aws/instance-cpu-manufacturer";
/// Sustained clock speed in MHz.
pub const AWS_INSTANCE_CPU_SUSTAINED_CLOCK_SPEED_MHZ: &str =
    "karpenter.k8s.aws/instance-cpu-sustained-clock-speed-mhz";
/// Memory in MiB as EC2 reports it.
pub const AWS_INSTANCE_MEMORY: &str = "karpenter.k8s.aws/instance-memory";
/// EBS bandwidth in Mbps.
pub const AWS_INSTANCE_EBS_BANDWIDTH: &str = "karpenter.k8s.aws/instance-ebs-bandwidth";
/// Baseline network bandwidth in Mbit/s.
pub const AWS_INSTANCE_NETWORK_BANDWIDTH: &str = "karpenter.k8s.aws/instance-network-bandwidth";
/// Local NVMe storage in GB.
pub const AWS_INSTANCE_LOCAL_NVME: &str = "karpenter.k8s.aws/instance-local-nvme";
/// Hypervisor (`nitro`, `xen`, empty for metal).
pub const AWS_INSTANCE_HYPERVISOR: &str = "karpenter.k8s.aws/instance-hypervisor";
/// Whether encryption in transit is supported.
pub const AWS_INSTANCE_ENCRYPTION_IN_TRANSIT_SUPPORTED: &str =
    "karpenter.k8s.aws/instance-encryption-in-transit-supported";
/// GPU name.
pub const AWS_INSTANCE_GPU_NAME: &str = "karpenter.k8s.aws/instance-gpu-name";
/// GPU manufacturer.
pub const AWS_INSTANCE_GPU_MANUFACTURER: &str = "karpenter.k8s.aws/instance-gpu-manufacturer";
/// GPU count.
pub const AWS_INSTANCE_GPU_COUNT: &str = "karpenter.k8s.aws/instance-gpu-count";
/// Per-GPU memory in MiB.
pub const AWS_INSTANCE_GPU_MEMORY: &str = "karpenter.k8s.aws/instance-gpu-memory";
/// Accelerator name (Inferentia / Trainium).
pub const AWS_INSTANCE_ACCELERATOR_NAME: &str = "karpenter.k8s.aws/instance-accelerator-name";
/// Accelerator manufacturer.
pub const AWS_INSTANCE_ACCELERATOR_MANUFACTURER: &str =
    "karpenter.k8s.aws/instance-accelerator-manufacturer";
/// Accelerator count.
pub const AWS_INSTANCE_ACCELERATOR_COUNT: &str = "karpenter.k8s.aws/instance-accelerator-count";
/// Tenancy (`default`, `dedicated`).
pub const AWS_INSTANCE_TENANCY: &str = "karpenter.k8s.aws/instance-tenancy";
/// Capacity reservation ID, on reserved offerings and nodes.
pub const AWS_CAPACITY_RESERVATION_ID: &str = "karpenter.k8s.aws/capacity-reservation-id";
/// Capacity reservation type (`default`, `capacity-block`).
pub const AWS_CAPACITY_RESERVATION_TYPE: &str = "karpenter.k8s.aws/capacity-reservation-type";
/// Whether the capacity reservation is interruptible.
pub const AWS_CAPACITY_RESERVATION_INTERRUPTIBLE: &str =
    "karpenter.k8s.aws/capacity-reservation-interruptible";
/// Placement group ID.
pub const AWS_PLACEMENT_GROUP_ID: &str = "karpenter.k8s.aws/placement-group-id";
/// Placement group partition.
pub const AWS_PLACEMENT_GROUP_PARTITION: &str = "karpenter.k8s.aws/placement-group-partition";

/// Core well-known labels (upstream `WellKnownLabels` before providers append theirs).
pub const CORE_WELL_KNOWN_LABELS: &[&str] = &[
    NODEPOOL,
    ZONE,
    REGION,
    INSTANCE_TYPE,
    ARCH,
    OS,
    CAPACITY_TYPE,
    WINDOWS_BUILD,
];

/// Labels the AWS provider registers as well-known on top of the core set.
pub const AWS_WELL_KNOWN_LABELS: &[&str] = &[
    AWS_ZONE_ID,
    AWS_EC2NODECLASS,
    AWS_INSTANCE_CATEGORY,
    AWS_INSTANCE_GENERATION,
    AWS_INSTANCE_FAMILY,
    AWS_INSTANCE_SIZE,
    AWS_INSTANCE_CAPABILITY_FLEX,
    AWS_INSTANCE_CPU,
    AWS_INSTANCE_CPU_MANUFACTURER,
    AWS_INSTANCE_CPU_SUSTAINED_CLOCK_SPEED_MHZ,
    AWS_INSTANCE_MEMORY,
    AWS_INSTANCE_EBS_BANDWIDTH,
    AWS_INSTANCE_NETWORK_BANDWIDTH,
    AWS_INSTANCE_LOCAL_NVME,
    AWS_INSTANCE_HYPERVISOR,
    AWS_INSTANCE_ENCRYPTION_IN_TRANSIT_SUPPORTED,
    AWS_INSTANCE_GPU_NAME,
    AWS_INSTANCE_GPU_MANUFACTURER,
    AWS_INSTANCE_GPU_COUNT,
    AWS_INSTANCE_GPU_MEMORY,
    AWS_INSTANCE_ACCELERATOR_NAME,
    AWS_INSTANCE_ACCELERATOR_MANUFACTURER,
    AWS_INSTANCE_ACCELERATOR_COUNT,
    AWS_INSTANCE_TENANCY,
    AWS_CAPACITY_RESERVATION_ID,
    AWS_CAPACITY_RESERVATION_TYPE,
    AWS_CAPACITY_RESERVATION_INTERRUPTIBLE,
    AWS_PLACEMENT_GROUP_ID,
    AWS_PLACEMENT_GROUP_PARTITION,
];

/// Whether `key` is well-known (core or AWS). A well-known key an instance type does not define
/// counts as "undefined, therefore allowed" in compatibility checks; a custom key a pod requires
/// must be defined by the NodePool.
pub fn is_well_known(key: &str) -> bool {
    CORE_WELL_KNOWN_LABELS.contains(&key) || AWS_WELL_KNOWN_LABELS.contains(&key)
}

/// Deprecated label keys that pods may still use; scheduling rewrites them to the current key.
pub const NORMALIZED_LABELS: &[(&str, &str)] = &[
    ("failure-domain.beta.kubernetes.io/zone", ZONE),
    ("failure-domain.beta.kubernetes.io/region", REGION),
    ("beta.kubernetes.io/arch", ARCH),
    ("beta.kubernetes.io/os", OS),
    ("beta.kubernetes.io/instance-type", INSTANCE_TYPE),
    ("topology.ebs.csi.aws.com/zone", ZONE),
];

/// The current key for a possibly deprecated alias.
pub fn normalize_label_key(key: &str) -> &str {
    NORMALIZED_LABELS
        .iter()
        .find(|(old, _)| *old == key)
        .map_or(key, |(_, new)| new)
}

/// Label domains in which users may not set arbitrary keys (upstream main, since v1.9): the
/// core `karpenter.sh` domain and the provider's `karpenter.k8s.aws` domain, including
/// subdomains.
pub const RESTRICTED_LABEL_DOMAINS: &[&str] = &[GROUP, AWS_GROUP];

/// Why a label key is restricted, if it is. `in_nodepool` applies the NodePool rule, which also
/// forbids `karpenter.sh/nodepool` (NodeClaims may carry it).
pub fn restricted_label_reason(key: &str, in_nodepool: bool) -> Option<&'static str> {
    if key == HOSTNAME {
        return Some("label kubernetes.io/hostname is restricted");
    }
    if in_nodepool && key == NODEPOOL {
        return Some("label karpenter.sh/nodepool is restricted");
    }
    if is_well_known(key) {
        return None;
    }
    let domain = key.split_once('/').map(|(d, _)| d)?;
    RESTRICTED_LABEL_DOMAINS
        .iter()
        .any(|r| domain == *r || domain.ends_with(&format!(".{r}")))
        .then_some("label domain is restricted")
}

// ---- Annotations --------------------------------------------------------------------------

/// Blocks voluntary disruption (`"true"`, or a duration on pods since v1.12).
pub const DO_NOT_DISRUPT: &str = "karpenter.sh/do-not-disrupt";
/// Hash of the NodePool template, on NodePools and NodeClaims.
pub const NODEPOOL_HASH: &str = "karpenter.sh/nodepool-hash";
/// Version of the NodePool hash algorithm; drift by hash only compares equal versions.
pub const NODEPOOL_HASH_VERSION: &str = "karpenter.sh/nodepool-hash-version";
/// Deadline for a terminating NodeClaim (deletionTimestamp + terminationGracePeriod).
pub const NODECLAIM_TERMINATION_TIMESTAMP: &str = "karpenter.sh/nodeclaim-termination-timestamp";
/// `"true"` when BestEffort minValues policy lowered a minValues.
pub const NODECLAIM_MIN_VALUES_RELAXED: &str = "karpenter.sh/nodeclaim-min-values-relaxed";
/// Hash of the EC2NodeClass spec, on EC2NodeClasses and NodeClaims.
pub const EC2NODECLASS_HASH: &str = "karpenter.k8s.aws/ec2nodeclass-hash";
/// Version of the EC2NodeClass hash algorithm.
pub const EC2NODECLASS_HASH_VERSION: &str = "karpenter.k8s.aws/ec2nodeclass-hash-version";
/// Instance profile a NodeClaim was launched with.
pub const AWS_INSTANCE_PROFILE_NAME: &str = "karpenter.k8s.aws/instance-profile-name";
/// Kubernetes pod deletion cost, read for disruption cost.
pub const POD_DELETION_COST: &str = "controller.kubernetes.io/pod-deletion-cost";

// ---- Taints -------------------------------------------------------------------------------

/// Cordon taint put on nodes being disrupted (effect NoSchedule).
pub const TAINT_DISRUPTED: &str = "karpenter.sh/disrupted";
/// Taint nodes register with until Karpenter syncs them (effect NoExecute).
pub const TAINT_UNREGISTERED: &str = "karpenter.sh/unregistered";
/// Taint effect of [`TAINT_DISRUPTED`].
pub const TAINT_DISRUPTED_EFFECT: &str = "NoSchedule";
/// Taint effect of [`TAINT_UNREGISTERED`].
pub const TAINT_UNREGISTERED_EFFECT: &str = "NoExecute";
/// Kubernetes' not-ready taint key.
pub const TAINT_NODE_NOT_READY: &str = "node.kubernetes.io/not-ready";
/// Kubernetes' unreachable taint key.
pub const TAINT_NODE_UNREACHABLE: &str = "node.kubernetes.io/unreachable";
/// Cloud controller manager's uninitialized taint key.
pub const TAINT_EXTERNAL_CLOUD_PROVIDER: &str = "node.cloudprovider.kubernetes.io/uninitialized";
/// Prefix of Node Readiness Controller taints, treated as ephemeral.
pub const TAINT_READINESS_PREFIX: &str = "readiness.k8s.io/";

/// Known ephemeral taints (key, value, effect): ignored on a managed node until it is
/// initialized, and they block initialization. Any key starting with
/// [`TAINT_READINESS_PREFIX`] is ephemeral too.
pub const EPHEMERAL_TAINTS: &[(&str, Option<&str>, &str)] = &[
    (TAINT_NODE_NOT_READY, None, "NoSchedule"),
    (TAINT_NODE_NOT_READY, None, "NoExecute"),
    (TAINT_NODE_UNREACHABLE, None, "NoSchedule"),
    (TAINT_EXTERNAL_CLOUD_PROVIDER, Some("true"), "NoSchedule"),
    (TAINT_UNREGISTERED, None, "NoExecute"),
];

/// Whether a taint is one of the known ephemeral taints.
pub fn is_ephemeral_taint(key: &str, value: Option<&str>, effect: &str) -> bool {
    key.starts_with(TAINT_READINESS_PREFIX)
        || EPHEMERAL_TAINTS
            .iter()
            .any(|(k, v, e)| *k == key && *e == effect && v.is_none_or(|v| Some(v) == value))
}

// ---- Finalizers ---------------------------------------------------------------------------

/// Finalizer on every managed NodeClaim and Node.
pub const TERMINATION_FINALIZER: &str = "karpenter.sh/termination";
/// Finalizer on EC2NodeClasses.
pub const AWS_TERMINATION_FINALIZER: &str = "karpenter.k8s.aws/termination";

// ---- Misc ---------------------------------------------------------------------------------

/// Well-known extended resources the AWS provider reports.
pub const WELL_KNOWN_EXTENDED_RESOURCES: &[&str] = &[
    "nvidia.com/gpu",
    "amd.com/gpu",
    "aws.amazon.com/neuron",
    "aws.amazon.com/neuroncore",
    "habana.ai/gaudi",
    "vpc.amazonaws.com/pod-eni",
    "vpc.amazonaws.com/efa",
    "vpc.amazonaws.com/PrivateIPv4Address",
    "eks.amazonaws.com/nip-slots",
];

/// Priority classes whose pods drain last.
pub const CRITICAL_PRIORITY_CLASSES: &[&str] = &["system-cluster-critical", "system-node-critical"];

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn restricted_keys() {
        let cases: &[(&str, bool, bool)] = &[
            // key, in nodepool, restricted
            ("kubernetes.io/hostname", false, true),
            ("karpenter.sh/nodepool", true, true),
            ("karpenter.sh/nodepool", false, false),
            ("karpenter.sh/capacity-type", true, false),
            ("karpenter.sh/custom", true, true),
            ("foo.karpenter.sh/custom", true, true),
            ("karpenter.k8s.aws/instance-family", true, false),
            ("karpenter.k8s.aws/anything-else", true, true),
            ("notkarpenter.sh/x", true, false),
            ("example.com/team", true, false),
            ("team", true, false),
            ("node.kubernetes.io/instance-type", true, false),
        ];
        for (key, np, want) in cases {
            assert_eq!(
                restricted_label_reason(key, *np).is_some(),
                *want,
                "key {key} in_nodepool={np}"
            );
        }
    }

    #[test]
    fn ephemeral() {
        assert!(is_ephemeral_taint(
            "node.kubernetes.io/not-ready",
            None,
            "NoExecute"
        ));
        assert!(is_ephemeral_taint("readiness.k8s.io/x", None, "NoSchedule"));
        assert!(is_ephemeral_taint(
            "node.cloudprovider.kubernetes.io/uninitialized",
            Some("true"),
            "NoSchedule"
        ));
        assert!(!is_ephemeral_taint("dedicated", None, "NoSchedule"));
    }

    #[test]
    fn normalize() {
        assert_eq!(normalize_label_key("beta.kubernetes.io/arch"), ARCH);
        assert_eq!(normalize_label_key("example.com/x"), "example.com/x");
    }
}
