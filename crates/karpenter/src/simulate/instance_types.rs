//! The embedded EC2 catalog as the solver's instance types, derived per EC2NodeClass.
//!
//! This is a private copy of `karpenter_sim::ec2::catalog::instance_type` (same rules) plus a
//! zone filter: the binary does not depend on `karpenter-sim` yet. Unify when it does.

use std::collections::{BTreeMap, BTreeSet};

use karpenter_apis::ec2nodeclass::{AmiFamily as ApiAmiFamily, EC2NodeClass};
use karpenter_apis::labels;
use karpenter_catalog::{
    AmiFamily, Catalog, CatalogInstanceType, CatalogOverhead, DerivationOptions, PriceSource,
};
use karpenter_scheduling::model::Overhead;
use karpenter_scheduling::{InstanceType, Offering, Requirement, Requirements, Resources};

/// Keys an instance type never defines itself: they vary per offering (zone, capacity type,
/// zone ID), come from the NodePool/NodeClass, or are resolved at launch (tenancy, which gets
/// its own two-valued requirement). Same rule as `karpenter_sim::ec2::catalog`.
const NOT_INSTANCE_TYPE_KEYS: &[&str] = &[
    labels::ZONE,
    labels::CAPACITY_TYPE,
    labels::NODEPOOL,
    labels::AWS_ZONE_ID,
    labels::AWS_EC2NODECLASS,
    labels::AWS_INSTANCE_TENANCY,
];

/// Tenancies an instance can be launched with.
const TENANCIES: [&str; 2] = ["default", "dedicated"];

/// The catalog settings an EC2NodeClass implies.
pub fn derivation_options(class: &EC2NodeClass) -> DerivationOptions {
    let ami_family = match class.resolved_ami_family() {
        ApiAmiFamily::AL2 => AmiFamily::Al2,
        ApiAmiFamily::AL2023 => AmiFamily::Al2023,
        ApiAmiFamily::Bottlerocket => AmiFamily::Bottlerocket,
        ApiAmiFamily::Custom => AmiFamily::Custom,
        ApiAmiFamily::Windows2019 => AmiFamily::Windows2019,
        ApiAmiFamily::Windows2022 => AmiFamily::Windows2022,
        ApiAmiFamily::Windows2025 => AmiFamily::Windows2025,
    };
    let kubelet = class.spec.kubelet.as_ref();
    DerivationOptions {
        ami_family,
        max_pods: kubelet.and_then(|k| k.max_pods).map(i64::from),
        pods_per_core: kubelet.and_then(|k| k.pods_per_core).map(i64::from),
        ..DerivationOptions::default()
    }
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

/// One catalog instance type as the solver sees it; offerings outside `zones` (when given)
/// are dropped, as if no subnet existed there.
pub fn instance_type(t: &CatalogInstanceType, zones: Option<&BTreeSet<String>>) -> InstanceType {
    let mut requirements = Requirements::new();
    for (key, value) in &t.labels {
        requirements.add(key, Requirement::in_values([value.clone()]));
    }
    // A well-known label the type lacks is `DoesNotExist`, so `Exists` selectors (e.g. a GPU
    // count) only match types that have it.
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
    let offerings = t
        .offerings
        .iter()
        .filter(|o| zones.is_none_or(|z| z.contains(&o.zone)))
        .map(|o| {
            let mut offering = Offering::new(&o.zone, &o.capacity_type, o.price);
            offering.available = o.available;
            offering
                .labels
                .insert(labels::AWS_ZONE_ID.to_string(), o.zone_id.clone());
            offering
        })
        .collect();
    InstanceType {
        name: t.name.clone(),
        requirements,
        capacity: resources(&t.capacity),
        overhead: overhead(&t.overhead),
        offerings,
    }
}

/// The catalog derived for one EC2NodeClass, in both shapes: catalog (for price sources) and
/// solver instance types.
#[derive(Debug, Clone)]
pub struct ClassCatalog {
    /// The catalog under this class's settings.
    pub catalog: Catalog,
    /// The same types for the solver.
    pub instance_types: Vec<InstanceType>,
}

impl ClassCatalog {
    /// Derives the embedded catalog for `class`.
    pub fn for_class(
        class: &EC2NodeClass,
        zones: Option<&BTreeSet<String>>,
    ) -> anyhow::Result<ClassCatalog> {
        let catalog = Catalog::embedded_with(&derivation_options(class))?;
        let instance_types = catalog
            .instance_types
            .iter()
            .map(|t| instance_type(t, zones))
            .collect();
        Ok(ClassCatalog {
            catalog,
            instance_types,
        })
    }

    /// Where the price of an offering comes from.
    pub fn price_source(
        &self,
        instance_type: &str,
        zone: &str,
        capacity_type: &str,
    ) -> Option<PriceSource> {
        self.catalog
            .get(instance_type)?
            .offerings
            .iter()
            .find(|o| o.zone == zone && o.capacity_type == capacity_type)
            .map(|o| o.price_source)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn labels_become_requirements_and_absent_shape_labels_do_not_exist() {
        let catalog = Catalog::embedded().unwrap();
        let m5 = instance_type(catalog.get("m5.large").unwrap(), None);
        assert!(
            m5.requirements
                .get(labels::AWS_INSTANCE_CATEGORY)
                .unwrap()
                .has("m")
        );
        let gpu = m5.requirements.get(labels::AWS_INSTANCE_GPU_COUNT).unwrap();
        assert!(gpu.allows_absent() && !gpu.has("1"));
        assert_eq!(m5.capacity.cpu, 2000);
        assert!(m5.allocatable().cpu < 2000, "kube-reserved is taken out");
        let zones: BTreeSet<String> = ["us-west-2a".to_string()].into();
        let only_a = instance_type(catalog.get("m5.large").unwrap(), Some(&zones));
        assert!(only_a.offerings.iter().all(|o| o.zone == "us-west-2a"));
        assert!(!only_a.offerings.is_empty());
    }
}
