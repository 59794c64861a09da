//! Properties of the embedded us-west-2 catalog itself.

use std::collections::BTreeMap;

use karpenter_apis::labels;
use karpenter_catalog::{Catalog, CatalogInstanceType, PriceSource};

fn catalog() -> Catalog {
    Catalog::embedded().unwrap_or_else(|err| panic!("embedded catalog must parse: {err}"))
}

fn get<'a>(catalog: &'a Catalog, name: &str) -> &'a CatalogInstanceType {
    catalog
        .get(name)
        .unwrap_or_else(|| panic!("{name} is in the catalog"))
}

#[test]
fn size_and_zones() {
    let catalog = catalog();
    let listed = catalog
        .instance_types
        .iter()
        .filter(|t| {
            t.offerings
                .iter()
                .any(|o| o.price_source == PriceSource::AwsOnDemandList)
        })
        .count();
    println!(
        "embedded catalog: {} instance types ({} with a listed on-demand price), {} zones",
        catalog.instance_types.len(),
        listed,
        catalog.zones.len()
    );
    assert_eq!(catalog.region, "us-west-2");
    assert_eq!(catalog.instance_types.len(), 1345);
    assert_eq!(listed, 1122);
    let zones: Vec<(&str, &str)> = catalog
        .zones
        .iter()
        .map(|z| (z.name.as_str(), z.zone_id.as_str()))
        .collect();
    assert_eq!(
        zones,
        vec![
            ("us-west-2a", "usw2-az2"),
            ("us-west-2b", "usw2-az1"),
            ("us-west-2c", "usw2-az3"),
            ("us-west-2d", "usw2-az4"),
        ]
    );
}

#[test]
fn every_type_is_sorted_offered_and_priced() {
    let catalog = catalog();
    let names: Vec<&str> = catalog
        .instance_types
        .iter()
        .map(|t| t.name.as_str())
        .collect();
    let mut sorted = names.clone();
    sorted.sort_unstable();
    sorted.dedup();
    assert_eq!(names, sorted, "instance types are sorted and unique");
    for it in &catalog.instance_types {
        assert!(!it.offerings.is_empty(), "{} has offerings", it.name);
        // AL2023 (the default AMI family) cannot run a1; everything else runs somewhere.
        assert_eq!(
            it.offerings.iter().any(|o| o.available),
            !it.name.starts_with("a1."),
            "{} availability",
            it.name
        );
        for offering in &it.offerings {
            assert!(
                offering.price.is_finite() && offering.price > 0.0,
                "{} {}/{} price {}",
                it.name,
                offering.zone,
                offering.capacity_type,
                offering.price
            );
            if offering.capacity_type == "spot" {
                assert_eq!(offering.price_source, PriceSource::Estimate);
                let on_demand = it
                    .offerings
                    .iter()
                    .find(|o| o.zone == offering.zone && o.capacity_type == "on-demand")
                    .map(|o| o.price)
                    .unwrap_or(f64::NAN);
                let ratio = offering.price / on_demand;
                assert!(
                    (0.249..=0.501).contains(&ratio),
                    "{} spot/on-demand ratio {ratio} in {}",
                    it.name,
                    offering.zone
                );
            }
        }
        for key in [
            labels::INSTANCE_TYPE,
            labels::ARCH,
            labels::OS,
            labels::AWS_INSTANCE_CPU,
        ] {
            assert!(it.labels.contains_key(key), "{} has label {key}", it.name);
        }
        let allocatable = it.allocatable();
        for resource in ["cpu", "memory", "ephemeral-storage"] {
            assert!(
                allocatable.get(resource).copied().unwrap_or(0) > 0,
                "{} allocatable {resource} is positive",
                it.name
            );
        }
    }
}

#[test]
fn m5_large_matches_upstream() {
    let catalog = catalog();
    let m5 = get(&catalog, "m5.large");
    let expected_labels: BTreeMap<&str, &str> = [
        (labels::INSTANCE_TYPE, "m5.large"),
        (labels::ARCH, "amd64"),
        (labels::OS, "linux"),
        (labels::REGION, "us-west-2"),
        (labels::AWS_INSTANCE_CATEGORY, "m"),
        (labels::AWS_INSTANCE_GENERATION, "5"),
        (labels::AWS_INSTANCE_FAMILY, "m5"),
        (labels::AWS_INSTANCE_SIZE, "large"),
        (labels::AWS_INSTANCE_CPU, "2"),
        (labels::AWS_INSTANCE_CPU_MANUFACTURER, "intel"),
        (labels::AWS_INSTANCE_MEMORY, "8192"),
        (labels::AWS_INSTANCE_HYPERVISOR, "nitro"),
        (labels::AWS_INSTANCE_EBS_BANDWIDTH, "4750"),
        (labels::AWS_INSTANCE_NETWORK_BANDWIDTH, "750"),
        (
            labels::AWS_INSTANCE_ENCRYPTION_IN_TRANSIT_SUPPORTED,
            "false",
        ),
        (labels::AWS_INSTANCE_CAPABILITY_FLEX, "false"),
    ]
    .into_iter()
    .collect();
    for (key, value) in &expected_labels {
        assert_eq!(
            m5.labels.get(*key).map(String::as_str),
            Some(*value),
            "label {key}"
        );
    }
    let allocatable = m5.allocatable();
    let mi = |n: i64| n << 20;
    let gi = |n: i64| n << 30;
    assert_eq!(allocatable.get("cpu"), Some(&1930));
    assert_eq!(allocatable.get("memory"), Some(&mi(6903)));
    assert_eq!(allocatable.get("ephemeral-storage"), Some(&gi(17)));
    assert_eq!(allocatable.get("pods"), Some(&29));
    let on_demand: Vec<(&str, f64, PriceSource, bool)> = m5
        .offerings
        .iter()
        .filter(|o| o.capacity_type == "on-demand")
        .map(|o| (o.zone.as_str(), o.price, o.price_source, o.available))
        .collect();
    assert_eq!(on_demand.len(), 4);
    for (zone, price, source, available) in on_demand {
        assert_eq!(
            (price, source, available),
            (0.096, PriceSource::AwsOnDemandList, true),
            "{zone}"
        );
    }
}

#[test]
fn g4dn_xlarge_matches_upstream() {
    let catalog = catalog();
    let g4dn = get(&catalog, "g4dn.xlarge");
    let allocatable = g4dn.allocatable();
    assert_eq!(allocatable.get("cpu"), Some(&3920));
    assert_eq!(allocatable.get("memory"), Some(&(14481 << 20)));
    assert_eq!(allocatable.get("nvidia.com/gpu"), Some(&1));
    assert_eq!(
        g4dn.labels
            .get(labels::AWS_INSTANCE_GPU_NAME)
            .map(String::as_str),
        Some("t4")
    );
    assert_eq!(
        g4dn.labels
            .get(labels::AWS_INSTANCE_LOCAL_NVME)
            .map(String::as_str),
        Some("125")
    );
}

#[test]
fn graviton_and_accelerated_types() {
    let catalog = catalog();
    let m6g = get(&catalog, "m6g.large");
    assert_eq!(
        m6g.labels.get(labels::ARCH).map(String::as_str),
        Some("arm64")
    );
    // 8192 − 64 − ceil(8128 × 0.075) = 7518 MiB.
    assert_eq!(m6g.capacity.get("memory"), Some(&(7518 << 20)));
    let inf2 = get(&catalog, "inf2.24xlarge");
    assert_eq!(inf2.capacity.get("aws.amazon.com/neuron"), Some(&6));
    assert_eq!(inf2.capacity.get("aws.amazon.com/neuroncore"), Some(&12));
    assert_eq!(
        inf2.labels
            .get(labels::AWS_INSTANCE_ACCELERATOR_NAME)
            .map(String::as_str),
        Some("inferentia2")
    );
    // a1 cannot run AL2023, the catalog's default AMI family.
    let a1 = get(&catalog, "a1.large");
    assert!(a1.offerings.iter().all(|o| !o.available));
}
