//! Pure derivations from raw EC2 facts to what Karpenter advertises for an instance type:
//! well-known labels, capacity and overhead (kube-reserved, system-reserved, eviction
//! threshold). They follow upstream Karpenter's AWS provider (v1.14) so that allocatable
//! figures match what upstream would compute for the same type and settings.

use std::collections::BTreeMap;

use karpenter_apis::labels;

use crate::raw::RawInstanceType;

/// 2^20: bytes per MiB.
pub const MIB: i64 = 1 << 20;
/// 2^30: bytes per GiB.
pub const GIB: i64 = 1 << 30;

/// Resource name of CPU (values in millicores).
pub const RESOURCE_CPU: &str = "cpu";
/// Resource name of memory (values in bytes).
pub const RESOURCE_MEMORY: &str = "memory";
/// Resource name of the pod count.
pub const RESOURCE_PODS: &str = "pods";
/// Resource name of node-local ephemeral storage (values in bytes).
pub const RESOURCE_EPHEMERAL_STORAGE: &str = "ephemeral-storage";
/// NVIDIA GPUs.
pub const RESOURCE_NVIDIA_GPU: &str = "nvidia.com/gpu";
/// AMD GPUs.
pub const RESOURCE_AMD_GPU: &str = "amd.com/gpu";
/// Habana Gaudi accelerators.
pub const RESOURCE_HABANA_GAUDI: &str = "habana.ai/gaudi";
/// AWS Neuron devices.
pub const RESOURCE_AWS_NEURON: &str = "aws.amazon.com/neuron";
/// AWS Neuron cores.
pub const RESOURCE_AWS_NEURON_CORE: &str = "aws.amazon.com/neuroncore";
/// Elastic Fabric Adapter interfaces.
pub const RESOURCE_EFA: &str = "vpc.amazonaws.com/efa";

/// Upstream's default `VM_MEMORY_OVERHEAD_PERCENT`.
pub const DEFAULT_VM_MEMORY_OVERHEAD_PERCENT: f64 = 0.075;
/// Pod limit when density is not ENI-limited (Windows) and no maxPods is set.
pub const DEFAULT_MAX_PODS: i64 = 110;

/// AMI family of an EC2NodeClass; decides pod density, overhead rules and defaults.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, Default)]
pub enum AmiFamily {
    /// Amazon Linux 2.
    Al2,
    /// Amazon Linux 2023 (upstream's default and the catalog's).
    #[default]
    Al2023,
    /// Bottlerocket.
    Bottlerocket,
    /// Windows Server 2019.
    Windows2019,
    /// Windows Server 2022.
    Windows2022,
    /// Windows Server 2025.
    Windows2025,
    /// User-supplied AMI and user data.
    Custom,
}

impl AmiFamily {
    /// Whether kube-reserved memory is computed from ENI-limited pods (ignoring maxPods).
    pub fn eni_limited_memory_overhead(self) -> bool {
        matches!(self, Self::Al2 | Self::Al2023 | Self::Custom)
    }

    /// Whether pod density defaults to the ENI/IP limit (else [`DEFAULT_MAX_PODS`]).
    pub fn eni_limited_density(self) -> bool {
        !self.is_windows()
    }

    /// Whether the kubelet `podsPerCore` setting is honoured.
    pub fn supports_pods_per_core(self) -> bool {
        self != Self::Bottlerocket
    }

    /// Whether this is a Windows family.
    pub fn is_windows(self) -> bool {
        matches!(
            self,
            Self::Windows2019 | Self::Windows2022 | Self::Windows2025
        )
    }

    /// The `node.kubernetes.io/windows-build` value of a Windows family.
    pub fn windows_build(self) -> Option<&'static str> {
        match self {
            Self::Windows2019 => Some("10.0.17763"),
            Self::Windows2022 => Some("10.0.20348"),
            Self::Windows2025 => Some("10.0.26100"),
            _ => None,
        }
    }

    /// Root volume size the family's default block device mapping gives, in bytes.
    pub fn default_ephemeral_storage_bytes(self) -> i64 {
        if self.is_windows() {
            50 * GIB
        } else {
            20 * GIB
        }
    }
}

/// NodeClass-level settings that change derived capacity and overhead.
#[derive(Debug, Clone, PartialEq)]
pub struct DerivationOptions {
    /// Fraction of memory assumed lost to the hypervisor and kernel (`VM_MEMORY_OVERHEAD_PERCENT`).
    pub vm_memory_overhead_percent: f64,
    /// ENIs kept back from pod networking (`RESERVED_ENIS`).
    pub reserved_enis: i64,
    /// kubelet `maxPods`, overriding the ENI-limited density.
    pub max_pods: Option<i64>,
    /// kubelet `podsPerCore`; caps pods at `podsPerCore × vCPUs` where the family allows it.
    pub pods_per_core: Option<i64>,
    /// The NodeClass AMI family.
    pub ami_family: AmiFamily,
    /// Root/ephemeral volume size from the NodeClass block device mappings, in bytes
    /// (`None` = the family default).
    pub ephemeral_storage_bytes: Option<i64>,
    /// `instanceStorePolicy: RAID0`: ephemeral storage is the instance store when there is one.
    pub instance_store_raid0: bool,
}

impl Default for DerivationOptions {
    fn default() -> Self {
        Self {
            vm_memory_overhead_percent: DEFAULT_VM_MEMORY_OVERHEAD_PERCENT,
            reserved_enis: 0,
            max_pods: None,
            pods_per_core: None,
            ami_family: AmiFamily::default(),
            ephemeral_storage_bytes: None,
            instance_store_raid0: false,
        }
    }
}

/// Lowercase with spaces turned into dashes, as upstream normalises EC2 names into label values.
pub fn lower_kebab(value: &str) -> String {
    value.to_lowercase().replace(' ', "-")
}

/// `kubernetes.io/arch` value: the first supported architecture Kubernetes knows.
pub fn kubernetes_arch(architectures: &[String]) -> Option<&'static str> {
    architectures.iter().find_map(|arch| match arch.as_str() {
        "x86_64" => Some("amd64"),
        "arm64" => Some("arm64"),
        _ => None,
    })
}

/// Instance category and generation from a type name, per upstream's pattern
/// `^([a-z]+)(-[0-9]+tb)?([0-9]+).*\.` (e.g. `m5.large` → (`m`, `5`), `u-6tb1.56xlarge` →
/// (`u`, `1`), `u7i-12tb.224xlarge` → (`u`, `7`)). `None` when the name does not match.
pub fn category_and_generation(name: &str) -> Option<(&str, &str)> {
    let letters_end = name
        .find(|c: char| !c.is_ascii_lowercase())
        .unwrap_or(name.len());
    if letters_end == 0 {
        return None;
    }
    let category = name.get(..letters_end)?;
    let rest = name.get(letters_end..)?;
    let digits_in = |s: &str| s.find(|c: char| !c.is_ascii_digit()).unwrap_or(s.len());
    // The optional `-<n>tb` group only counts when digits follow it (otherwise the regex
    // backtracks to not taking it, and then fails on the dash anyway).
    let after_tb = rest.strip_prefix('-').and_then(|s| {
        let n = digits_in(s);
        if n == 0 {
            return None;
        }
        s.get(n..)?.strip_prefix("tb")
    });
    let generation_part = match after_tb {
        Some(s) if digits_in(s) > 0 => s,
        _ => rest,
    };
    let generation_len = digits_in(generation_part);
    if generation_len == 0 {
        return None;
    }
    let generation = generation_part.get(..generation_len)?;
    // `.*\.`: a dot must follow somewhere.
    if !generation_part.get(generation_len..)?.contains('.') {
        return None;
    }
    Some((category, generation))
}

/// Single-valued well-known labels of an instance type (no zone, capacity type or zone ID,
/// which vary per offering).
pub fn derive_labels(
    raw: &RawInstanceType,
    region: &str,
    options: &DerivationOptions,
) -> BTreeMap<String, String> {
    let mut out = BTreeMap::new();
    let mut put = |key: &str, value: String| {
        out.insert(key.to_string(), value);
    };
    put(labels::INSTANCE_TYPE, raw.name.clone());
    put(labels::REGION, region.to_string());
    let arch = kubernetes_arch(&raw.architectures);
    if let Some(arch) = arch {
        put(labels::ARCH, arch.to_string());
    }
    if options.ami_family.is_windows() {
        // Windows AMIs exist for amd64 only; other architectures get no OS and so match nothing.
        if arch == Some("amd64") {
            put(labels::OS, "windows".to_string());
            if let Some(build) = options.ami_family.windows_build() {
                put(labels::WINDOWS_BUILD, build.to_string());
            }
        }
    } else {
        put(labels::OS, "linux".to_string());
    }

    let (family, size) = raw.name.split_once('.').unwrap_or((raw.name.as_str(), ""));
    put(labels::AWS_INSTANCE_FAMILY, family.to_string());
    put(labels::AWS_INSTANCE_SIZE, size.to_string());
    put(
        labels::AWS_INSTANCE_CAPABILITY_FLEX,
        family.contains("-flex").to_string(),
    );
    if let Some((category, generation)) = category_and_generation(&raw.name) {
        put(labels::AWS_INSTANCE_CATEGORY, category.to_string());
        put(labels::AWS_INSTANCE_GENERATION, generation.to_string());
    }
    put(labels::AWS_INSTANCE_CPU, raw.vcpus.to_string());
    put(
        labels::AWS_INSTANCE_CPU_MANUFACTURER,
        lower_kebab(&raw.cpu_manufacturer),
    );
    if let Some(ghz) = raw.sustained_clock_ghz {
        put(
            labels::AWS_INSTANCE_CPU_SUSTAINED_CLOCK_SPEED_MHZ,
            format!("{}", (ghz * 1000.0).round() as i64),
        );
    }
    put(labels::AWS_INSTANCE_MEMORY, raw.memory_mib.to_string());
    if raw.ebs_optimized_support == "default"
        && let Some(mbps) = raw.ebs_max_bandwidth_mbps
    {
        put(labels::AWS_INSTANCE_EBS_BANDWIDTH, mbps.to_string());
    }
    if let Some(mbps) = network_bandwidth_mbps(raw) {
        put(labels::AWS_INSTANCE_NETWORK_BANDWIDTH, mbps.to_string());
    }
    if let Some(storage) = &raw.instance_storage
        && storage.nvme_support != "unsupported"
    {
        put(
            labels::AWS_INSTANCE_LOCAL_NVME,
            storage.total_gb.to_string(),
        );
    }
    // Bare metal has no hypervisor; upstream still writes the (empty) value.
    put(
        labels::AWS_INSTANCE_HYPERVISOR,
        raw.hypervisor.clone().unwrap_or_default(),
    );
    put(
        labels::AWS_INSTANCE_ENCRYPTION_IN_TRANSIT_SUPPORTED,
        raw.network.encryption_in_transit.to_string(),
    );
    // GPU labels are only unambiguous with a single GPU model.
    if let [gpu] = raw.gpus.as_slice() {
        put(labels::AWS_INSTANCE_GPU_NAME, lower_kebab(&gpu.name));
        put(
            labels::AWS_INSTANCE_GPU_MANUFACTURER,
            lower_kebab(&gpu.manufacturer),
        );
        put(labels::AWS_INSTANCE_GPU_COUNT, gpu.count.to_string());
        put(labels::AWS_INSTANCE_GPU_MEMORY, gpu.memory_mib.to_string());
    }
    match (
        raw.inference_accelerators.as_slice(),
        raw.neuron_devices.as_slice(),
    ) {
        ([accelerator], []) => {
            put(
                labels::AWS_INSTANCE_ACCELERATOR_NAME,
                lower_kebab(&accelerator.name),
            );
            put(
                labels::AWS_INSTANCE_ACCELERATOR_MANUFACTURER,
                lower_kebab(&accelerator.manufacturer),
            );
            put(
                labels::AWS_INSTANCE_ACCELERATOR_COUNT,
                accelerator.count.to_string(),
            );
        }
        (_, [device]) => {
            put(
                labels::AWS_INSTANCE_ACCELERATOR_NAME,
                lower_kebab(&device.name),
            );
            put(
                labels::AWS_INSTANCE_ACCELERATOR_MANUFACTURER,
                "aws".to_string(),
            );
            put(
                labels::AWS_INSTANCE_ACCELERATOR_COUNT,
                device.count.to_string(),
            );
        }
        _ => {}
    }
    out
}

/// Baseline network bandwidth in Mbit/s: the sum of the cards' stated baselines.
///
/// Upstream reads a table scraped from AWS's instance-type documentation; EC2 now states the
/// same baselines per card in DescribeInstanceTypes (e.g. m5.large 0.75 Gbit/s → 750), which is
/// what the catalog has. Upstream's table leaves out types whose performance is only described
/// vaguely ("Moderate", "High", "Low to Moderate"), so those get no label here either even
/// though EC2 now states a baseline for them.
pub fn network_bandwidth_mbps(raw: &RawInstanceType) -> Option<i64> {
    if !raw.network.performance.contains("Gigabit") {
        return None;
    }
    let baselines: Vec<f64> = raw
        .network
        .cards
        .iter()
        .filter_map(|c| c.baseline_gbps)
        .collect();
    if baselines.is_empty() {
        return None;
    }
    Some((baselines.iter().sum::<f64>() * 1000.0).round() as i64)
}

/// Memory capacity in MiB after the arm64 carve-out and the VM overhead.
///
/// Graviton kernels reserve 64 MiB for the contiguous memory allocator; the rest loses
/// `ceil(bytes × overhead / 2^20)` MiB. Computed in the same order upstream does so float
/// rounding lands identically.
pub fn memory_capacity_mib(raw: &RawInstanceType, vm_memory_overhead_percent: f64) -> i64 {
    let mut mib = raw.memory_mib;
    // Upstream looks at the first listed architecture only.
    if raw.architectures.first().map(String::as_str) == Some("arm64") {
        mib -= 64;
    }
    let bytes = (mib * MIB) as f64;
    let overhead_mib = (bytes * vm_memory_overhead_percent / 1024.0 / 1024.0).ceil() as i64;
    mib - overhead_mib
}

/// Pods the VPC CNI can address: `usable ENIs × (IPv4 per ENI − 1) + 2`, where usable ENIs are
/// those on the default network card minus `reserved_enis`. Zero when no ENI is left.
pub fn eni_limited_pods(raw: &RawInstanceType, reserved_enis: i64) -> i64 {
    let card_enis = raw
        .network
        .cards
        .iter()
        .find(|card| card.index == raw.network.default_card_index)
        .map_or(raw.network.max_enis, |card| card.max_enis);
    let usable = (card_enis - reserved_enis).max(0);
    if usable == 0 {
        0
    } else {
        usable * (raw.network.ipv4_per_eni - 1) + 2
    }
}

/// The `pods` capacity under the given settings.
pub fn pods_capacity(raw: &RawInstanceType, options: &DerivationOptions) -> i64 {
    let mut pods = match options.max_pods {
        Some(max_pods) => max_pods,
        None if options.ami_family.eni_limited_density() => {
            eni_limited_pods(raw, options.reserved_enis)
        }
        None => DEFAULT_MAX_PODS,
    };
    if let Some(per_core) = options.pods_per_core
        && per_core > 0
        && options.ami_family.supports_pods_per_core()
    {
        pods = pods.min(per_core * raw.vcpus);
    }
    pods
}

/// Ephemeral storage capacity in bytes.
pub fn ephemeral_storage_bytes(raw: &RawInstanceType, options: &DerivationOptions) -> i64 {
    if options.instance_store_raid0
        && let Some(storage) = &raw.instance_storage
    {
        // Instance store sizes are decimal gigabytes.
        return storage.total_gb * 1_000_000_000;
    }
    options
        .ephemeral_storage_bytes
        .unwrap_or_else(|| options.ami_family.default_ephemeral_storage_bytes())
}

/// Capacity in base units: cpu in millicores, memory and ephemeral-storage in bytes, the rest
/// as counts. Extended resources with a zero count are left out.
pub fn derive_capacity(
    raw: &RawInstanceType,
    options: &DerivationOptions,
) -> BTreeMap<String, i64> {
    let mut out = BTreeMap::new();
    out.insert(RESOURCE_CPU.to_string(), raw.vcpus * 1000);
    out.insert(
        RESOURCE_MEMORY.to_string(),
        memory_capacity_mib(raw, options.vm_memory_overhead_percent) * MIB,
    );
    out.insert(RESOURCE_PODS.to_string(), pods_capacity(raw, options));
    out.insert(
        RESOURCE_EPHEMERAL_STORAGE.to_string(),
        ephemeral_storage_bytes(raw, options),
    );
    let gpus_by = |vendor: &str| -> i64 {
        raw.gpus
            .iter()
            .filter(|gpu| gpu.manufacturer == vendor)
            .map(|gpu| gpu.count)
            .sum()
    };
    let neuron_devices: i64 = raw.neuron_devices.iter().map(|d| d.count).sum();
    let neuron_cores = raw.neuron_devices.first().map_or(0, |d| d.count * d.cores);
    let extended = [
        (RESOURCE_NVIDIA_GPU, gpus_by("NVIDIA")),
        (RESOURCE_AMD_GPU, gpus_by("AMD")),
        (RESOURCE_HABANA_GAUDI, gpus_by("Habana")),
        (RESOURCE_AWS_NEURON, neuron_devices),
        (RESOURCE_AWS_NEURON_CORE, neuron_cores),
        (RESOURCE_EFA, raw.network.efa_max_interfaces),
    ];
    for (name, count) in extended {
        if count > 0 {
            out.insert(name.to_string(), count);
        }
    }
    out
}

/// Default kube-reserved CPU in millicores for `vcpus` cores: 6% of the first core, 1% of the
/// second, 0.5% of the third and fourth, 0.25% of every core above four.
pub fn kube_reserved_cpu_millis(vcpus: i64) -> i64 {
    // (start, end, rate) in millicores; end = None means unbounded.
    const TIERS: [(i64, Option<i64>, f64); 4] = [
        (0, Some(1000), 0.06),
        (1000, Some(2000), 0.01),
        (2000, Some(4000), 0.005),
        (4000, None, 0.0025),
    ];
    let millis = vcpus * 1000;
    TIERS
        .iter()
        .map(|&(start, end, rate)| {
            let top = end.map_or(millis, |end| millis.min(end));
            let in_tier = (top - start).max(0);
            (in_tier as f64 * rate).floor() as i64
        })
        .sum()
}

/// Default kube-reserved memory in MiB for a pod density of `pods`: `11 × pods + 255`.
pub fn kube_reserved_memory_mib(pods: i64) -> i64 {
    11 * pods + 255
}

/// Resources held back from pods: kube-reserved, system-reserved and the hard eviction
/// threshold, each in the same base units as capacity.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct CatalogOverhead {
    /// Reserved for Kubernetes system daemons (kubelet, container runtime).
    pub kube_reserved: BTreeMap<String, i64>,
    /// Reserved for OS daemons; empty unless the NodeClass sets it.
    pub system_reserved: BTreeMap<String, i64>,
    /// Kept free so the kubelet can evict before the node runs out.
    pub eviction_threshold: BTreeMap<String, i64>,
}

impl CatalogOverhead {
    /// Sum of the three maps per resource.
    pub fn total(&self) -> BTreeMap<String, i64> {
        let mut out = BTreeMap::new();
        for map in [
            &self.kube_reserved,
            &self.system_reserved,
            &self.eviction_threshold,
        ] {
            for (name, value) in map {
                *out.entry(name.clone()).or_insert(0) += value;
            }
        }
        out
    }
}

/// Default overhead for the type under the given settings.
pub fn derive_overhead(
    raw: &RawInstanceType,
    capacity: &BTreeMap<String, i64>,
    options: &DerivationOptions,
) -> CatalogOverhead {
    // AL2/AL2023/Custom size kube-reserved memory by the ENI limit with no ENIs reserved, even
    // when maxPods says otherwise; Bottlerocket and Windows use the pods actually configured.
    let pods_for_memory = if options.ami_family.eni_limited_memory_overhead() {
        eni_limited_pods(raw, 0)
    } else {
        capacity.get(RESOURCE_PODS).copied().unwrap_or(0)
    };
    let kube_reserved = BTreeMap::from([
        (
            RESOURCE_CPU.to_string(),
            kube_reserved_cpu_millis(raw.vcpus),
        ),
        (
            RESOURCE_MEMORY.to_string(),
            kube_reserved_memory_mib(pods_for_memory) * MIB,
        ),
        (RESOURCE_EPHEMERAL_STORAGE.to_string(), GIB),
    ]);
    let ephemeral = capacity
        .get(RESOURCE_EPHEMERAL_STORAGE)
        .copied()
        .unwrap_or(0);
    // ceil(10% of capacity) in integer arithmetic.
    let ephemeral_threshold = (ephemeral + 9) / 10;
    let eviction_threshold = BTreeMap::from([
        (RESOURCE_MEMORY.to_string(), 100 * MIB),
        (RESOURCE_EPHEMERAL_STORAGE.to_string(), ephemeral_threshold),
    ]);
    CatalogOverhead {
        kube_reserved,
        system_reserved: BTreeMap::new(),
        eviction_threshold,
    }
}

/// Capacity minus overhead per resource (never below zero); resources absent from capacity
/// are ignored.
pub fn allocatable(
    capacity: &BTreeMap<String, i64>,
    overhead: &CatalogOverhead,
) -> BTreeMap<String, i64> {
    let reserved = overhead.total();
    capacity
        .iter()
        .map(|(name, value)| {
            let minus = reserved.get(name).copied().unwrap_or(0);
            (name.clone(), (value - minus).max(0))
        })
        .collect()
}
