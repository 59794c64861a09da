//! The raw EC2 facts of one instance type, as `hack/gen-catalog.py` writes them from
//! DescribeInstanceTypes / DescribeInstanceTypeOfferings data. Nothing here is derived.

use std::collections::BTreeMap;

use serde::{Deserialize, Serialize};

use crate::PriceSource;

/// The committed catalog file: region, zones and raw instance types.
#[derive(Debug, Clone, PartialEq, Deserialize, Serialize)]
pub struct RawCatalog {
    /// AWS region the offerings belong to, e.g. `us-west-2`.
    pub region: String,
    /// Where the data came from (free text per input, for humans).
    #[serde(default)]
    pub source: BTreeMap<String, String>,
    /// Every availability zone of the region, with its zone ID.
    pub zones: Vec<RawZone>,
    /// Instance types sorted by name.
    pub instance_types: Vec<RawInstanceType>,
}

/// One availability zone.
#[derive(Debug, Clone, PartialEq, Eq, Deserialize, Serialize)]
pub struct RawZone {
    /// Zone name, e.g. `us-west-2a` (account-specific mapping).
    pub name: String,
    /// Zone ID, e.g. `usw2-az2` (stable across accounts).
    pub zone_id: String,
}

/// Raw facts about one instance type.
#[derive(Debug, Clone, PartialEq, Deserialize, Serialize)]
pub struct RawInstanceType {
    /// Instance type name, e.g. `m5.large`.
    pub name: String,
    /// `VCpuInfo.DefaultVCpus`.
    pub vcpus: i64,
    /// `MemoryInfo.SizeInMiB`.
    pub memory_mib: i64,
    /// `ProcessorInfo.SupportedArchitectures` in EC2's order (e.g. `x86_64`, `arm64`, `i386`).
    pub architectures: Vec<String>,
    /// `ProcessorInfo.Manufacturer` (e.g. `Intel`, `AMD`, `AWS`); empty when unknown.
    #[serde(default)]
    pub cpu_manufacturer: String,
    /// `ProcessorInfo.SustainedClockSpeedInGhz`.
    #[serde(default)]
    pub sustained_clock_ghz: Option<f64>,
    /// `Hypervisor` (`nitro`, `xen`); absent for bare metal.
    #[serde(default)]
    pub hypervisor: Option<String>,
    /// `BareMetal`.
    #[serde(default)]
    pub bare_metal: bool,
    /// `SupportedUsageClasses` restricted to `on-demand` and `spot`.
    pub usage_classes: Vec<String>,
    /// `EbsInfo.EbsOptimizedSupport` (`default`, `supported`, `unsupported`).
    #[serde(default)]
    pub ebs_optimized_support: String,
    /// `EbsInfo.EbsOptimizedInfo.MaximumBandwidthInMbps`.
    #[serde(default)]
    pub ebs_max_bandwidth_mbps: Option<i64>,
    /// `InstanceStorageInfo`, when the type has instance store volumes.
    #[serde(default)]
    pub instance_storage: Option<RawInstanceStorage>,
    /// `GpuInfo.Gpus`.
    #[serde(default)]
    pub gpus: Vec<RawGpu>,
    /// `InferenceAcceleratorInfo.Accelerators` (first-generation Inferentia).
    #[serde(default)]
    pub inference_accelerators: Vec<RawAccelerator>,
    /// `NeuronInfo.NeuronDevices` (Inferentia, Trainium).
    #[serde(default)]
    pub neuron_devices: Vec<RawNeuronDevice>,
    /// `NetworkInfo`.
    pub network: RawNetwork,
    /// Zones of the region where the type is offered, sorted.
    pub zones: Vec<String>,
    /// On-demand USD per hour.
    pub on_demand_price: f64,
    /// Whether [`Self::on_demand_price`] is a list price or an estimate.
    pub on_demand_price_source: PriceSource,
    /// Spot USD per hour by zone (always estimates); empty when spot is not supported.
    #[serde(default)]
    pub spot_prices: BTreeMap<String, f64>,
}

/// Instance store facts.
#[derive(Debug, Clone, PartialEq, Eq, Deserialize, Serialize)]
pub struct RawInstanceStorage {
    /// `TotalSizeInGB` (decimal gigabytes).
    pub total_gb: i64,
    /// `NvmeSupport` (`required`, `supported`, `unsupported`).
    pub nvme_support: String,
}

/// One GPU model entry.
#[derive(Debug, Clone, PartialEq, Eq, Deserialize, Serialize)]
pub struct RawGpu {
    /// GPU model, e.g. `T4`.
    pub name: String,
    /// Vendor, e.g. `NVIDIA`.
    pub manufacturer: String,
    /// Number of GPUs of this model.
    pub count: i64,
    /// Memory per GPU in MiB.
    pub memory_mib: i64,
}

/// One inference accelerator entry.
#[derive(Debug, Clone, PartialEq, Eq, Deserialize, Serialize)]
pub struct RawAccelerator {
    /// Accelerator model, e.g. `Inferentia`.
    pub name: String,
    /// Vendor, e.g. `AWS`.
    pub manufacturer: String,
    /// Number of accelerators.
    pub count: i64,
}

/// One Neuron device entry.
#[derive(Debug, Clone, PartialEq, Eq, Deserialize, Serialize)]
pub struct RawNeuronDevice {
    /// Device model, e.g. `Inferentia2`, `Trainium`.
    pub name: String,
    /// Number of devices.
    pub count: i64,
    /// Neuron cores per device.
    pub cores: i64,
}

/// Network facts.
#[derive(Debug, Clone, PartialEq, Deserialize, Serialize)]
pub struct RawNetwork {
    /// `DefaultNetworkCardIndex`.
    #[serde(default)]
    pub default_card_index: i64,
    /// `MaximumNetworkInterfaces` across all cards.
    pub max_enis: i64,
    /// `Ipv4AddressesPerInterface`.
    pub ipv4_per_eni: i64,
    /// `NetworkCards`, sorted by index.
    #[serde(default)]
    pub cards: Vec<RawNetworkCard>,
    /// `EfaInfo.MaximumEfaInterfaces` (0 without EFA).
    #[serde(default)]
    pub efa_max_interfaces: i64,
    /// `EncryptionInTransitSupported`.
    #[serde(default)]
    pub encryption_in_transit: bool,
    /// `NetworkPerformance`, e.g. `Up to 10 Gigabit` or the vague `Moderate`.
    #[serde(default)]
    pub performance: String,
}

/// One network card.
#[derive(Debug, Clone, PartialEq, Deserialize, Serialize)]
pub struct RawNetworkCard {
    /// `NetworkCardIndex`.
    pub index: i64,
    /// `MaximumNetworkInterfaces` on this card.
    pub max_enis: i64,
    /// `BaselineBandwidthInGbps`, when EC2 states one.
    #[serde(default)]
    pub baseline_gbps: Option<f64>,
}
