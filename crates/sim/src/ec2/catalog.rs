//! The embedded EC2 catalog as the scheduling model's instance types.
//!
//! Prices are the catalog's: on-demand offerings carry AWS's public us-west-2 list price where
//! AWS lists the type ([`PriceSource::AwsOnDemandList`]) and a documented estimate otherwise;
//! every spot price is an estimate ([`PriceSource::Estimate`]), because spot prices change
//! constantly and no public snapshot can be embedded honestly.

use std::collections::BTreeMap;

use karpenter_apis::labels;
use karpenter_catalog::{Catalog, CatalogInstanceType, CatalogOverhead, PriceSource};
use karpenter_cloudprovider::{
    InstanceType, Offering, Overhead, Requirement, Requirements, Resources,
};

/// Keys the instance type itself never defines: they vary per offering (zone, capacity type,
/// zone ID), come from the NodePool/NodeClass (nodepool, nodeclass), or are resolved at launch
/// (tenancy, which gets its own two-valued requirement).
const NOT_INSTANCE_TYPE_KEYS: &[&str] = &[
    labels::ZONE,
    labels::CAPACITY_TYPE,
    labels::NODEPOOL,
    labels::AWS_ZONE_ID,
    labels::AWS_EC2NODECLASS,
    labels::AWS_INSTANCE_TENANCY,
];

/// Tenancies an instance can be launched with (upstream's requirement on every type).
pub const TENANCIES: [&str; 2] = ["default", "dedicated"];

/// Every catalog type converted, in catalog (name) order.
pub fn instance_types(catalog: &Catalog) -> Vec<InstanceType> {
    catalog.instance_types.iter().map(instance_type).collect()
}

/// One catalog type as the solver sees it: its labels as single-valued `In` requirements,
/// `DoesNotExist` for every well-known label it lacks (so `Exists` selectors such as
/// `instance-gpu-count Exists` only match types that have it), tenancy `In [default,
/// dedicated]`, capacity, overhead, and one offering per zone × capacity type with its price,
/// availability and zone ID.
pub fn instance_type(t: &CatalogInstanceType) -> InstanceType {
    let mut requirements = Requirements::new();
    for (key, value) in &t.labels {
        requirements.add(key, Requirement::in_values([value.clone()]));
    }
    for key in labels::CORE_WELL_KNOWN_LABELS
        .iter()
        .chain(labels::AWS_WELL_KNOWN_LABELS)
    {
        if !t.labels.contains_key(*key) && !NOT_INSTANCE_TYPE_KEYS.contains(key) {
            requirements.add(key, Requirement::does_not_exist());
        }
    }
    requirements.add(
        labels::AWS_INSTANCE_TENANCY,
        Requirement::in_values(TENANCIES),
    );
    InstanceType {
        name: t.name.clone(),
        requirements,
        capacity: resources(&t.capacity),
        overhead: overhead(&t.overhead),
        offerings: t
            .offerings
            .iter()
            .map(|o| {
                let mut offering = Offering::new(&o.zone, &o.capacity_type, o.price);
                offering.available = o.available;
                offering
                    .labels
                    .insert(labels::AWS_ZONE_ID.to_string(), o.zone_id.clone());
                offering
            })
            .collect(),
    }
}

/// Where the price of one offering comes from, if the catalog has the offering.
pub fn price_source(
    catalog: &Catalog,
    instance_type: &str,
    zone: &str,
    capacity_type: &str,
) -> Option<PriceSource> {
    catalog
        .get(instance_type)?
        .offerings
        .iter()
        .find(|o| o.zone == zone && o.capacity_type == capacity_type)
        .map(|o| o.price_source)
}

fn resources(map: &BTreeMap<String, i64>) -> Resources {
    let mut r = Resources::new();
    for (name, amount) in map {
        r.set(name, *amount);
    }
    r
}

fn overhead(o: &CatalogOverhead) -> Overhead {
    Overhead {
        kube_reserved: resources(&o.kube_reserved),
        system_reserved: resources(&o.system_reserved),
        eviction_threshold: resources(&o.eviction_threshold),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn catalog() -> Catalog {
        Catalog::embedded().unwrap()
    }

    #[test]
    fn labels_become_single_value_requirements_and_missing_well_known_keys_do_not_exist() {
        let catalog = catalog();
        let types = instance_types(&catalog);
        assert_eq!(types.len(), catalog.instance_types.len());
        let m5 = types.iter().find(|t| t.name == "m5.large").unwrap();
        let single = m5.requirements.single_valued_labels();
        assert_eq!(
            single.get(labels::INSTANCE_TYPE).map(String::as_str),
            Some("m5.large")
        );
        assert_eq!(single.get(labels::ARCH).map(String::as_str), Some("amd64"));
        assert_eq!(
            single.get(labels::AWS_INSTANCE_CPU).map(String::as_str),
            Some("2")
        );
        let gpu = m5.requirements.get(labels::AWS_INSTANCE_GPU_COUNT).unwrap();
        assert!(gpu.allows_absent() && !gpu.has("1"));
        assert!(!m5.requirements.has(labels::ZONE));
        assert!(!m5.requirements.has(labels::AWS_ZONE_ID));
        let tenancy = m5.requirements.get(labels::AWS_INSTANCE_TENANCY).unwrap();
        assert!(tenancy.has("default") && tenancy.has("dedicated"));
    }

    #[test]
    fn capacity_overhead_and_offerings_carry_over() {
        let catalog = catalog();
        let raw = catalog.get("m5.large").unwrap();
        let t = instance_type(raw);
        assert_eq!(t.capacity.cpu, 2000);
        assert_eq!(t.capacity.memory, raw.capacity["memory"]);
        let allocatable = t.allocatable();
        for (name, amount) in raw.allocatable() {
            assert_eq!(allocatable.get(&name), amount, "{name}");
        }
        assert_eq!(t.offerings.len(), raw.offerings.len());
        for (o, r) in t.offerings.iter().zip(&raw.offerings) {
            assert_eq!(
                (o.zone.as_str(), o.capacity_type.as_str()),
                (r.zone.as_str(), r.capacity_type.as_str())
            );
            assert_eq!(o.price, r.price);
            assert_eq!(o.available, r.available);
            assert_eq!(o.labels.get(labels::AWS_ZONE_ID), Some(&r.zone_id));
        }
        assert_eq!(
            price_source(&catalog, "m5.large", &raw.offerings[0].zone, "spot"),
            Some(PriceSource::Estimate)
        );
        assert_eq!(
            price_source(&catalog, "nope.large", "us-west-2a", "spot"),
            None
        );
    }
}
