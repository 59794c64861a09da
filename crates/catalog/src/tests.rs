//! Unit tests of the derivations, driven by a raw-instance-type builder.

use std::collections::BTreeMap;

use karpenter_apis::labels;

use crate::derive::{self, GIB, MIB};
use crate::raw::{
    RawAccelerator, RawGpu, RawInstanceStorage, RawNetwork, RawNetworkCard, RawNeuronDevice,
};
use crate::{
    AmiFamily, CatalogError, CatalogInstanceType, CatalogZone, DerivationOptions, PriceSource,
    RawInstanceType,
};

const REGION: &str = "us-west-2";

/// (input, settings, expected allocatable per resource)
type AllocatableCase<'a> = (&'a Raw, DerivationOptions, Vec<(&'static str, i64)>);
/// (input, settings, expected label values; `None` = absent)
type LabelCase = (
    Raw,
    DerivationOptions,
    Vec<(&'static str, Option<&'static str>)>,
);
/// (input, settings, expected capacity per resource; `None` = absent)
type CapacityCase = (Raw, DerivationOptions, Vec<(&'static str, Option<i64>)>);

/// Builder for raw instance types; defaults describe an m5.large-like nitro type.
#[derive(Clone)]
struct Raw(RawInstanceType);

fn raw(name: &str) -> Raw {
    Raw(RawInstanceType {
        name: name.to_string(),
        vcpus: 2,
        memory_mib: 8192,
        architectures: vec!["x86_64".to_string()],
        cpu_manufacturer: "Intel".to_string(),
        sustained_clock_ghz: Some(3.1),
        hypervisor: Some("nitro".to_string()),
        bare_metal: false,
        usage_classes: vec!["on-demand".to_string(), "spot".to_string()],
        ebs_optimized_support: "default".to_string(),
        ebs_max_bandwidth_mbps: Some(4750),
        instance_storage: None,
        gpus: vec![],
        inference_accelerators: vec![],
        neuron_devices: vec![],
        network: RawNetwork {
            default_card_index: 0,
            max_enis: 3,
            ipv4_per_eni: 10,
            cards: vec![RawNetworkCard {
                index: 0,
                max_enis: 3,
                baseline_gbps: Some(0.75),
            }],
            efa_max_interfaces: 0,
            encryption_in_transit: false,
            performance: "Up to 10 Gigabit".to_string(),
        },
        zones: vec!["us-west-2a".to_string(), "us-west-2b".to_string()],
        on_demand_price: 0.096,
        on_demand_price_source: PriceSource::AwsOnDemandList,
        spot_prices: BTreeMap::from([
            ("us-west-2a".to_string(), 0.03),
            ("us-west-2b".to_string(), 0.04),
            ("us-west-2c".to_string(), 0.05),
        ]),
    })
}

impl Raw {
    fn vcpus(mut self, vcpus: i64) -> Self {
        self.0.vcpus = vcpus;
        self
    }
    fn memory_mib(mut self, mib: i64) -> Self {
        self.0.memory_mib = mib;
        self
    }
    fn arch(mut self, archs: &[&str]) -> Self {
        self.0.architectures = archs.iter().map(|a| a.to_string()).collect();
        self
    }
    fn enis(mut self, enis: i64, ipv4_per_eni: i64) -> Self {
        self.0.network.max_enis = enis;
        self.0.network.ipv4_per_eni = ipv4_per_eni;
        if let Some(card) = self.0.network.cards.first_mut() {
            card.max_enis = enis;
        }
        self
    }
    fn metal(mut self) -> Self {
        self.0.bare_metal = true;
        self.0.hypervisor = None;
        self
    }
    fn gpu(mut self, name: &str, manufacturer: &str, count: i64, memory_mib: i64) -> Self {
        self.0.gpus.push(RawGpu {
            name: name.to_string(),
            manufacturer: manufacturer.to_string(),
            count,
            memory_mib,
        });
        self
    }
    fn accelerator(mut self, name: &str, count: i64) -> Self {
        self.0.inference_accelerators.push(RawAccelerator {
            name: name.to_string(),
            manufacturer: "AWS".to_string(),
            count,
        });
        self
    }
    fn neuron(mut self, name: &str, count: i64, cores: i64) -> Self {
        self.0.neuron_devices.push(RawNeuronDevice {
            name: name.to_string(),
            count,
            cores,
        });
        self
    }
    fn nvme(mut self, total_gb: i64, support: &str) -> Self {
        self.0.instance_storage = Some(RawInstanceStorage {
            total_gb,
            nvme_support: support.to_string(),
        });
        self
    }
    fn efa(mut self, interfaces: i64) -> Self {
        self.0.network.efa_max_interfaces = interfaces;
        self
    }
    fn ebs(mut self, support: &str, mbps: Option<i64>) -> Self {
        self.0.ebs_optimized_support = support.to_string();
        self.0.ebs_max_bandwidth_mbps = mbps;
        self
    }
    /// Replaces the network cards: (max ENIs, baseline Gbit/s) per card, indexed from 0.
    fn cards(mut self, cards: &[(i64, f64)], default_card_index: i64) -> Self {
        self.0.network.cards = cards
            .iter()
            .zip(0..)
            .map(|(&(max_enis, gbps), index)| RawNetworkCard {
                index,
                max_enis,
                baseline_gbps: Some(gbps),
            })
            .collect();
        self.0.network.max_enis = cards.iter().map(|c| c.0).sum();
        self.0.network.default_card_index = default_card_index;
        self
    }
    fn network_performance(mut self, performance: &str) -> Self {
        self.0.network.performance = performance.to_string();
        self
    }
    fn on_demand_only(mut self) -> Self {
        self.0.usage_classes = vec!["on-demand".to_string()];
        self.0.spot_prices.clear();
        self
    }
    fn derive(&self, options: &DerivationOptions) -> Result<CatalogInstanceType, CatalogError> {
        CatalogInstanceType::derive(&self.0, REGION, &zones(), options)
    }
}

fn zones() -> Vec<CatalogZone> {
    [
        ("us-west-2a", "usw2-az2"),
        ("us-west-2b", "usw2-az1"),
        ("us-west-2c", "usw2-az3"),
    ]
    .iter()
    .map(|(name, id)| CatalogZone {
        name: name.to_string(),
        zone_id: id.to_string(),
    })
    .collect()
}

fn opts() -> DerivationOptions {
    DerivationOptions::default()
}

fn family(ami_family: AmiFamily) -> DerivationOptions {
    DerivationOptions {
        ami_family,
        ..opts()
    }
}

/// Quantities the tests name in human units.
fn mi(n: i64) -> i64 {
    n * MIB
}
fn gi(n: i64) -> i64 {
    n * GIB
}

// ---- allocatable ---------------------------------------------------------------------------

/// Checks the listed allocatable resources (others are not compared).
fn check_allocatable(input: &Raw, options: &DerivationOptions, expected: &[(&str, i64)]) {
    let it = input.derive(options).expect("derives");
    let allocatable = it.allocatable();
    for (name, value) in expected {
        assert_eq!(
            allocatable.get(*name),
            Some(value),
            "{} allocatable {name} (capacity {:?}, overhead {:?})",
            input.0.name,
            it.capacity,
            it.overhead
        );
    }
}

#[test]
fn allocatable_matches_upstream_worked_examples() {
    let m5_large = raw("m5.large");
    let g4dn_xlarge = raw("g4dn.xlarge")
        .vcpus(4)
        .memory_mib(16384)
        .gpu("T4", "NVIDIA", 1, 16384)
        .nvme(125, "required");
    let m6g_large = raw("m6g.large").arch(&["arm64"]);
    let cases: Vec<AllocatableCase> = vec![
        (
            &m5_large,
            opts(),
            vec![
                ("cpu", 1930),
                ("memory", mi(6903)),
                ("ephemeral-storage", gi(17)),
                ("pods", 29),
            ],
        ),
        (
            &g4dn_xlarge,
            opts(),
            vec![("cpu", 3920), ("memory", mi(14481)), ("nvidia.com/gpu", 1)],
        ),
        // arm64: 8192 − 64 = 8128; − ceil(609.6) = 7518; − 574 − 100 = 6844.
        (&m6g_large, opts(), vec![("memory", mi(6844))]),
        // No VM overhead: 8192 − 574 − 100.
        (
            &m5_large,
            DerivationOptions {
                vm_memory_overhead_percent: 0.0,
                ..opts()
            },
            vec![("memory", mi(7518))],
        ),
        // A 100 GiB root volume: 100 − 1 − 10.
        (
            &m5_large,
            DerivationOptions {
                ephemeral_storage_bytes: Some(gi(100)),
                ..opts()
            },
            vec![("ephemeral-storage", gi(89))],
        ),
    ];
    for (input, options, expected) in &cases {
        check_allocatable(input, options, expected);
    }
}

#[test]
fn kube_reserved_cpu_follows_upstream_tiers() {
    let table = [
        (1, 60),
        (2, 70),
        (4, 80),
        (8, 90),
        (16, 110),
        (32, 150),
        (48, 190),
        (64, 230),
        (96, 310),
    ];
    for (vcpus, millis) in table {
        assert_eq!(
            derive::kube_reserved_cpu_millis(vcpus),
            millis,
            "{vcpus} vCPUs"
        );
    }
}

#[test]
fn memory_capacity_formula() {
    let cases = [
        (raw("m5.large"), 7577),
        (raw("g4dn.xlarge").memory_mib(16384), 15155),
        (raw("m6g.large").arch(&["arm64"]), 7518),
        // i386 listed first still maps to amd64, so no arm64 carve-out.
        (
            raw("t2.micro").arch(&["i386", "x86_64"]).memory_mib(1024),
            1024 - 77,
        ),
    ];
    for (input, expected_mib) in cases {
        assert_eq!(
            derive::memory_capacity_mib(&input.0, 0.075),
            expected_mib,
            "{}",
            input.0.name
        );
    }
}

// ---- pods ----------------------------------------------------------------------------------

#[test]
fn pods_capacity_and_kube_reserved_memory() {
    // (input, options, pods capacity, kube-reserved memory MiB)
    let cases: Vec<(Raw, DerivationOptions, i64, i64)> = vec![
        (raw("m5.large"), opts(), 29, 574),
        (
            raw("m5.large"),
            DerivationOptions {
                reserved_enis: 1,
                ..opts()
            },
            20,
            574,
        ),
        (
            raw("m5.large"),
            DerivationOptions {
                reserved_enis: 3,
                ..opts()
            },
            0,
            574,
        ),
        // maxPods wins for capacity; AL2023 still sizes kube-reserved by the ENI limit.
        (
            raw("m5.large"),
            DerivationOptions {
                max_pods: Some(110),
                ..opts()
            },
            110,
            574,
        ),
        // Bottlerocket sizes kube-reserved by the configured pods.
        (
            raw("m5.large"),
            DerivationOptions {
                max_pods: Some(110),
                ..family(AmiFamily::Bottlerocket)
            },
            110,
            11 * 110 + 255,
        ),
        (
            raw("m5.large"),
            DerivationOptions {
                pods_per_core: Some(4),
                ..opts()
            },
            8,
            574,
        ),
        (
            raw("m5.large"),
            DerivationOptions {
                pods_per_core: Some(4),
                ..family(AmiFamily::Bottlerocket)
            },
            29,
            574,
        ),
        (
            raw("m5.large"),
            family(AmiFamily::Windows2022),
            110,
            11 * 110 + 255,
        ),
        (raw("c5.18xlarge").vcpus(72).enis(15, 50), opts(), 737, 8362),
        // Only the default card's ENIs count: 4 × 9 + 2.
        (
            raw("p4d.24xlarge").cards(&[(2, 100.0), (4, 100.0)], 1),
            opts(),
            38,
            673,
        ),
    ];
    for (input, options, pods, reserved_mib) in cases {
        let it = input.derive(&options).expect("derives");
        assert_eq!(
            it.capacity.get("pods"),
            Some(&pods),
            "{} {options:?}",
            input.0.name
        );
        assert_eq!(
            it.overhead.kube_reserved.get("memory"),
            Some(&mi(reserved_mib)),
            "{} {options:?}",
            input.0.name
        );
    }
}

// ---- labels --------------------------------------------------------------------------------

/// Checks the listed labels; `None` means the label must be absent.
fn check_labels(input: &Raw, options: &DerivationOptions, expected: &[(&str, Option<&str>)]) {
    let it = input.derive(options).expect("derives");
    for (key, value) in expected {
        assert_eq!(
            it.labels.get(*key).map(String::as_str),
            *value,
            "{} label {key}",
            input.0.name
        );
    }
}

#[test]
fn m5_large_labels_are_exactly_upstreams() {
    let it = raw("m5.large").derive(&opts()).expect("derives");
    let expected: BTreeMap<String, String> = [
        (labels::INSTANCE_TYPE, "m5.large"),
        (labels::REGION, "us-west-2"),
        (labels::ARCH, "amd64"),
        (labels::OS, "linux"),
        (labels::AWS_INSTANCE_FAMILY, "m5"),
        (labels::AWS_INSTANCE_SIZE, "large"),
        (labels::AWS_INSTANCE_CATEGORY, "m"),
        (labels::AWS_INSTANCE_GENERATION, "5"),
        (labels::AWS_INSTANCE_CAPABILITY_FLEX, "false"),
        (labels::AWS_INSTANCE_CPU, "2"),
        (labels::AWS_INSTANCE_CPU_MANUFACTURER, "intel"),
        (labels::AWS_INSTANCE_CPU_SUSTAINED_CLOCK_SPEED_MHZ, "3100"),
        (labels::AWS_INSTANCE_MEMORY, "8192"),
        (labels::AWS_INSTANCE_EBS_BANDWIDTH, "4750"),
        (labels::AWS_INSTANCE_NETWORK_BANDWIDTH, "750"),
        (labels::AWS_INSTANCE_HYPERVISOR, "nitro"),
        (
            labels::AWS_INSTANCE_ENCRYPTION_IN_TRANSIT_SUPPORTED,
            "false",
        ),
    ]
    .iter()
    .map(|(k, v)| (k.to_string(), v.to_string()))
    .collect();
    assert_eq!(it.labels, expected);
}

#[test]
fn labels_by_feature() {
    let cases: Vec<LabelCase> = vec![
        (
            raw("g4dn.xlarge").gpu("T4", "NVIDIA", 1, 16384),
            opts(),
            vec![
                (labels::AWS_INSTANCE_GPU_NAME, Some("t4")),
                (labels::AWS_INSTANCE_GPU_MANUFACTURER, Some("nvidia")),
                (labels::AWS_INSTANCE_GPU_COUNT, Some("1")),
                (labels::AWS_INSTANCE_GPU_MEMORY, Some("16384")),
            ],
        ),
        // Two GPU models: ambiguous, no GPU labels.
        (
            raw("x.large")
                .gpu("A10G", "NVIDIA", 1, 24576)
                .gpu("Radeon Pro V520", "AMD", 1, 8192),
            opts(),
            vec![
                (labels::AWS_INSTANCE_GPU_NAME, None),
                (labels::AWS_INSTANCE_GPU_COUNT, None),
            ],
        ),
        (
            raw("g4ad.xlarge").gpu("Radeon Pro V520", "AMD", 1, 8192),
            opts(),
            vec![
                (labels::AWS_INSTANCE_GPU_NAME, Some("radeon-pro-v520")),
                (labels::AWS_INSTANCE_GPU_MANUFACTURER, Some("amd")),
            ],
        ),
        (
            raw("inf2.xlarge").neuron("Inferentia2", 1, 2),
            opts(),
            vec![
                (labels::AWS_INSTANCE_ACCELERATOR_NAME, Some("inferentia2")),
                (labels::AWS_INSTANCE_ACCELERATOR_MANUFACTURER, Some("aws")),
                (labels::AWS_INSTANCE_ACCELERATOR_COUNT, Some("1")),
            ],
        ),
        // First-generation Inferentia without Neuron info uses the accelerator entry.
        (
            raw("inf1.6xlarge").accelerator("Inferentia", 4),
            opts(),
            vec![
                (labels::AWS_INSTANCE_ACCELERATOR_NAME, Some("inferentia")),
                (labels::AWS_INSTANCE_ACCELERATOR_COUNT, Some("4")),
            ],
        ),
        // With both, Neuron info wins.
        (
            raw("inf1.24xlarge")
                .accelerator("Inferentia", 16)
                .neuron("Inferentia", 16, 4),
            opts(),
            vec![(labels::AWS_INSTANCE_ACCELERATOR_COUNT, Some("16"))],
        ),
        (
            raw("m5d.large").nvme(75, "required"),
            opts(),
            vec![(labels::AWS_INSTANCE_LOCAL_NVME, Some("75"))],
        ),
        (
            raw("m3.medium").nvme(4, "unsupported"),
            opts(),
            vec![(labels::AWS_INSTANCE_LOCAL_NVME, None)],
        ),
        (
            raw("t2.micro").ebs("unsupported", None),
            opts(),
            vec![(labels::AWS_INSTANCE_EBS_BANDWIDTH, None)],
        ),
        (
            raw("c4.large").ebs("supported", Some(500)),
            opts(),
            vec![(labels::AWS_INSTANCE_EBS_BANDWIDTH, None)],
        ),
        // Several cards: bandwidths add up.
        (
            raw("p5.48xlarge").cards(&[(2, 100.0), (2, 100.0), (2, 100.0)], 0),
            opts(),
            vec![(labels::AWS_INSTANCE_NETWORK_BANDWIDTH, Some("300000"))],
        ),
        // Vaguely described bandwidth: no label even with a stated baseline (as upstream).
        (
            raw("m4.large").network_performance("Moderate"),
            opts(),
            vec![(labels::AWS_INSTANCE_NETWORK_BANDWIDTH, None)],
        ),
        (
            raw("m5.metal").metal(),
            opts(),
            vec![(labels::AWS_INSTANCE_HYPERVISOR, Some(""))],
        ),
        (
            raw("c7i-flex.large"),
            opts(),
            vec![
                (labels::AWS_INSTANCE_CAPABILITY_FLEX, Some("true")),
                (labels::AWS_INSTANCE_FAMILY, Some("c7i-flex")),
                (labels::AWS_INSTANCE_CATEGORY, Some("c")),
                (labels::AWS_INSTANCE_GENERATION, Some("7")),
            ],
        ),
        (
            raw("m6g.large").arch(&["arm64"]),
            opts(),
            vec![(labels::ARCH, Some("arm64")), (labels::OS, Some("linux"))],
        ),
        (
            raw("t2.micro").arch(&["i386", "x86_64"]),
            opts(),
            vec![(labels::ARCH, Some("amd64"))],
        ),
        (
            raw("m5.large"),
            family(AmiFamily::Windows2022),
            vec![
                (labels::OS, Some("windows")),
                (labels::WINDOWS_BUILD, Some("10.0.20348")),
            ],
        ),
        (
            raw("m6g.large").arch(&["arm64"]),
            family(AmiFamily::Windows2019),
            vec![(labels::OS, None), (labels::WINDOWS_BUILD, None)],
        ),
        (raw("m5.large"), opts(), vec![(labels::WINDOWS_BUILD, None)]),
    ];
    for (input, options, expected) in &cases {
        check_labels(input, options, expected);
    }
}

#[test]
fn category_and_generation_follow_upstream_pattern() {
    let cases = [
        ("m5.large", Some(("m", "5"))),
        ("c7i-flex.large", Some(("c", "7"))),
        ("u-6tb1.56xlarge", Some(("u", "1"))),
        ("u-12tb1.112xlarge", Some(("u", "1"))),
        ("u7i-12tb.224xlarge", Some(("u", "7"))),
        ("u7in-16tb.224xlarge", Some(("u", "7"))),
        ("p6-b300.48xlarge", Some(("p", "6"))),
        ("dl2q.24xlarge", Some(("dl", "2"))),
        ("hpc7g.4xlarge", Some(("hpc", "7"))),
        ("x2iedn.xlarge", Some(("x", "2"))),
        ("trn1n.32xlarge", Some(("trn", "1"))),
        ("m5", None),
        ("5m.large", None),
        ("u-tb1.large", None),
        ("metal.large", None),
    ];
    for (name, expected) in cases {
        assert_eq!(derive::category_and_generation(name), expected, "{name}");
    }
}

// ---- capacity ------------------------------------------------------------------------------

/// Checks the listed capacity entries; `None` means the resource must be absent.
fn check_capacity(input: &Raw, options: &DerivationOptions, expected: &[(&str, Option<i64>)]) {
    let it = input.derive(options).expect("derives");
    for (name, value) in expected {
        assert_eq!(
            it.capacity.get(*name).copied(),
            *value,
            "{} capacity {name}",
            input.0.name
        );
    }
}

#[test]
fn capacity_extended_resources_and_storage() {
    let cases: Vec<CapacityCase> = vec![
        (
            raw("m5.large"),
            opts(),
            vec![
                ("cpu", Some(2000)),
                ("memory", Some(mi(7577))),
                ("ephemeral-storage", Some(gi(20))),
                ("nvidia.com/gpu", None),
                ("vpc.amazonaws.com/efa", None),
            ],
        ),
        (
            raw("p5.48xlarge")
                .vcpus(192)
                .gpu("H100", "NVIDIA", 8, 81920)
                .efa(32),
            opts(),
            vec![
                ("nvidia.com/gpu", Some(8)),
                ("vpc.amazonaws.com/efa", Some(32)),
            ],
        ),
        (
            raw("g4ad.xlarge").gpu("Radeon Pro V520", "AMD", 1, 8192),
            opts(),
            vec![("amd.com/gpu", Some(1)), ("nvidia.com/gpu", None)],
        ),
        (
            raw("dl1.24xlarge").gpu("Gaudi HL-205", "Habana", 8, 32768),
            opts(),
            vec![("habana.ai/gaudi", Some(8))],
        ),
        (
            raw("inf2.24xlarge").neuron("Inferentia2", 6, 2),
            opts(),
            vec![
                ("aws.amazon.com/neuron", Some(6)),
                ("aws.amazon.com/neuroncore", Some(12)),
            ],
        ),
        // RAID0 instance store: decimal gigabytes.
        (
            raw("m5d.large").nvme(75, "required"),
            DerivationOptions {
                instance_store_raid0: true,
                ..opts()
            },
            vec![("ephemeral-storage", Some(75_000_000_000))],
        ),
        // RAID0 without instance store: the root volume.
        (
            raw("m5.large"),
            DerivationOptions {
                instance_store_raid0: true,
                ..opts()
            },
            vec![("ephemeral-storage", Some(gi(20)))],
        ),
        (
            raw("m5.large"),
            family(AmiFamily::Windows2025),
            vec![("ephemeral-storage", Some(gi(50)))],
        ),
    ];
    for (input, options, expected) in &cases {
        check_capacity(input, options, expected);
    }
}

#[test]
fn eviction_threshold_is_100mi_and_ten_percent_of_ephemeral() {
    let it = raw("m5.large")
        .derive(&DerivationOptions {
            ephemeral_storage_bytes: Some(1001),
            ..opts()
        })
        .expect("derives");
    assert_eq!(
        it.overhead.eviction_threshold,
        BTreeMap::from([
            ("memory".to_string(), mi(100)),
            ("ephemeral-storage".to_string(), 101),
        ])
    );
    assert!(it.overhead.system_reserved.is_empty());
}

// ---- offerings -----------------------------------------------------------------------------

/// (zone, capacity type, available, price source) of every offering.
type OfferingSummary = (String, String, bool, PriceSource);

fn check_offerings(input: &Raw, options: &DerivationOptions, expected: &[(&str, &str, bool)]) {
    let it = input.derive(options).expect("derives");
    let got: Vec<OfferingSummary> = it
        .offerings
        .iter()
        .map(|o| {
            (
                o.zone.clone(),
                o.capacity_type.clone(),
                o.available,
                o.price_source,
            )
        })
        .collect();
    let want: Vec<OfferingSummary> = expected
        .iter()
        .map(|(zone, ct, available)| {
            let source = if *ct == "spot" {
                PriceSource::Estimate
            } else {
                input.0.on_demand_price_source
            };
            (zone.to_string(), ct.to_string(), *available, source)
        })
        .collect();
    assert_eq!(got, want, "{}", input.0.name);
}

#[test]
fn offerings_cover_every_zone_and_capacity_type() {
    let all = [
        ("us-west-2a", "on-demand", true),
        ("us-west-2a", "spot", true),
        ("us-west-2b", "on-demand", true),
        ("us-west-2b", "spot", true),
        ("us-west-2c", "on-demand", false),
        ("us-west-2c", "spot", false),
    ];
    check_offerings(&raw("m5.large"), &opts(), &all);
    check_offerings(
        &raw("m5.large").on_demand_only(),
        &opts(),
        &[
            ("us-west-2a", "on-demand", true),
            ("us-west-2b", "on-demand", true),
            ("us-west-2c", "on-demand", false),
        ],
    );
    // AL2023 cannot run a1; AL2 can.
    let a1 = raw("a1.large").arch(&["arm64"]);
    check_offerings(&a1, &opts(), &all.map(|(zone, ct, _)| (zone, ct, false)));
    check_offerings(&a1, &family(AmiFamily::Al2), &all);

    let it = raw("m5.large").derive(&opts()).expect("derives");
    let prices: Vec<(String, f64)> = it
        .offerings
        .iter()
        .map(|o| (format!("{}/{}", o.zone, o.capacity_type), o.price))
        .collect();
    assert_eq!(
        prices,
        vec![
            ("us-west-2a/on-demand".to_string(), 0.096),
            ("us-west-2a/spot".to_string(), 0.03),
            ("us-west-2b/on-demand".to_string(), 0.096),
            ("us-west-2b/spot".to_string(), 0.04),
            ("us-west-2c/on-demand".to_string(), 0.096),
            ("us-west-2c/spot".to_string(), 0.05),
        ]
    );
    assert_eq!(
        it.offerings.first().map(|o| o.zone_id.as_str()),
        Some("usw2-az2")
    );
    assert_eq!(
        it.cheapest_available_offering().map(|o| o.price),
        Some(0.03)
    );
}

// ---- errors --------------------------------------------------------------------------------

#[test]
fn invalid_raw_data_names_the_field() {
    let mut missing_spot = raw("m5.large");
    missing_spot.0.spot_prices.remove("us-west-2c");
    let mut negative_spot = raw("m5.large");
    negative_spot
        .0
        .spot_prices
        .insert("us-west-2a".to_string(), -1.0);
    let mut zero_price = raw("m5.large");
    zero_price.0.on_demand_price = 0.0;
    let cases = [
        (raw("m5.large").vcpus(0), "vcpus"),
        (raw("m5.large").memory_mib(64), "memory_mib"),
        (raw("m5.large").enis(3, 0), "network.ipv4_per_eni"),
        (zero_price, "on_demand_price"),
        (missing_spot, "spot_prices"),
        (negative_spot, "spot_prices"),
    ];
    for (input, field) in cases {
        match input.derive(&opts()) {
            Err(CatalogError::InvalidField {
                field: got,
                instance_type,
                ..
            }) => {
                assert_eq!(got, field);
                assert_eq!(instance_type, "m5.large");
            }
            other => panic!("{field}: expected InvalidField, got {other:?}"),
        }
    }
}

#[test]
fn unparsable_catalog_is_a_parse_error() {
    let err = serde_json::from_str::<crate::RawCatalog>("{\"region\": 1}")
        .map_err(CatalogError::from)
        .expect_err("must fail");
    assert_eq!(err.category(), "parse");
    let invalid = raw("m5.large")
        .vcpus(-1)
        .derive(&opts())
        .expect_err("must fail");
    assert_eq!(invalid.category(), "invalid_field");
    assert!(invalid.to_string().contains("field vcpus"), "{invalid}");
}

#[test]
fn a_bad_type_fails_the_whole_catalog() {
    let good = raw("m5.large").0;
    let bad = raw("m5.xlarge").vcpus(0).0;
    let catalog = crate::RawCatalog {
        region: REGION.to_string(),
        source: BTreeMap::new(),
        zones: vec![],
        instance_types: vec![good, bad],
    };
    assert!(crate::Catalog::from_raw(&catalog, &opts()).is_err());
}
