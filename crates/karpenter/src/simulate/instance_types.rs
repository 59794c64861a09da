//! The embedded EC2 catalog as the solver's instance types, derived per EC2NodeClass.
//!
//! The type conversion itself is the simulated EC2's (`karpenter_sim::ec2::catalog`); this
//! module adds what a scenario's EC2NodeClass and zones change.

use std::collections::{BTreeMap, BTreeSet};

use anyhow::{anyhow, bail};
use karpenter_apis::ec2nodeclass::{AmiFamily as ApiAmiFamily, EC2NodeClass, InstanceStorePolicy};
use karpenter_catalog::{AmiFamily, Catalog, CatalogInstanceType, DerivationOptions, PriceSource};
use karpenter_scheduling::InstanceType;
use karpenter_scheduling::quantity::parse_resource;

/// The device a family's AMIs mount the kubelet root on when no mapping says `rootVolume`.
fn default_root_device(family: ApiAmiFamily) -> &'static str {
    match family {
        ApiAmiFamily::Bottlerocket => "/dev/xvdb",
        ApiAmiFamily::Windows2019 | ApiAmiFamily::Windows2022 | ApiAmiFamily::Windows2025 => {
            "/dev/sda1"
        }
        _ => "/dev/xvda",
    }
}

/// The catalog settings an EC2NodeClass implies.
pub fn derivation_options(class: &EC2NodeClass) -> anyhow::Result<DerivationOptions> {
    let family = class.resolved_ami_family();
    let ami_family = match family {
        ApiAmiFamily::AL2 => AmiFamily::Al2,
        ApiAmiFamily::AL2023 => AmiFamily::Al2023,
        ApiAmiFamily::Bottlerocket => AmiFamily::Bottlerocket,
        ApiAmiFamily::Custom => AmiFamily::Custom,
        ApiAmiFamily::Windows2019 => AmiFamily::Windows2019,
        ApiAmiFamily::Windows2022 => AmiFamily::Windows2022,
        ApiAmiFamily::Windows2025 => AmiFamily::Windows2025,
    };
    let kubelet = class.spec.kubelet.as_ref();
    let mappings = &class.spec.block_device_mappings;
    let root = mappings
        .iter()
        .enumerate()
        .find(|(_, m)| m.root_volume)
        .or_else(|| {
            mappings
                .iter()
                .enumerate()
                .find(|(_, m)| m.device_name.as_deref() == Some(default_root_device(family)))
        });
    let ephemeral_storage_bytes = match root {
        Some((i, m)) => match m.ebs.as_ref().and_then(|e| e.volume_size.as_ref()) {
            Some(size) => Some(
                parse_resource("ephemeral-storage", &size.0)
                    .map_err(|e| anyhow!("spec.blockDeviceMappings[{i}].ebs.volumeSize: {e}"))?,
            ),
            None => None,
        },
        None => None,
    };
    Ok(DerivationOptions {
        ami_family,
        max_pods: kubelet.and_then(|k| k.max_pods).map(i64::from),
        pods_per_core: kubelet.and_then(|k| k.pods_per_core).map(i64::from),
        ephemeral_storage_bytes,
        instance_store_raid0: class.spec.instance_store_policy == Some(InstanceStorePolicy::RAID0),
        ..DerivationOptions::default()
    })
}

/// Resources the kubelet reserves, parsed (`pid` and unknown names are not resources pods
/// request, so they are skipped).
fn reserved(map: &BTreeMap<String, String>, field: &str) -> anyhow::Result<BTreeMap<String, i64>> {
    map.iter()
        .filter(|(k, _)| matches!(k.as_str(), "cpu" | "memory" | "ephemeral-storage"))
        .map(|(k, v)| {
            parse_resource(k, v)
                .map(|amount| (k.clone(), amount))
                .map_err(|e| anyhow!("spec.kubelet.{field}.{k}: {e}"))
        })
        .collect()
}

/// An eviction threshold: an absolute quantity or a percentage of `capacity`.
fn threshold(value: &str, resource: &str, capacity: i64) -> Option<i64> {
    match value.strip_suffix('%') {
        Some(pct) => {
            let pct: f64 = pct.trim().parse().ok()?;
            Some((capacity as f64 * pct / 100.0).ceil() as i64)
        }
        None => parse_resource(resource, value).ok(),
    }
}

/// Applies the EC2NodeClass's kubelet `kubeReserved` (per resource, replacing the computed
/// value), `systemReserved` and `evictionHard` (`memory.available`, `nodefs.available`) to every
/// instance type's overhead.
fn apply_kubelet(catalog: &mut Catalog, class: &EC2NodeClass) -> anyhow::Result<()> {
    let Some(kubelet) = class.spec.kubelet.as_ref() else {
        return Ok(());
    };
    let kube_reserved = reserved(&kubelet.kube_reserved, "kubeReserved")?;
    let system_reserved = reserved(&kubelet.system_reserved, "systemReserved")?;
    for (signal, resource) in [
        ("memory.available", "memory"),
        ("nodefs.available", "ephemeral-storage"),
    ] {
        if let Some(v) = kubelet.eviction_hard.get(signal)
            && threshold(v, resource, 1 << 40).is_none()
        {
            bail!(
                "spec.kubelet.evictionHard.{signal}: {v:?} is neither a quantity nor a percentage"
            );
        }
    }
    for t in &mut catalog.instance_types {
        t.overhead.kube_reserved.extend(kube_reserved.clone());
        t.overhead.system_reserved.extend(system_reserved.clone());
        for (signal, resource) in [
            ("memory.available", "memory"),
            ("nodefs.available", "ephemeral-storage"),
        ] {
            let capacity = t.capacity.get(resource).copied().unwrap_or(0);
            if let Some(v) = kubelet
                .eviction_hard
                .get(signal)
                .and_then(|v| threshold(v, resource, capacity))
            {
                t.overhead
                    .eviction_threshold
                    .insert(resource.to_string(), v);
            }
        }
    }
    Ok(())
}

/// One catalog instance type as the solver sees it (the simulated EC2's conversion, so the
/// simulator and the simulated cloud agree); offerings outside `zones` (when given) are
/// dropped, as if no subnet existed there.
pub fn instance_type(t: &CatalogInstanceType, zones: Option<&BTreeSet<String>>) -> InstanceType {
    let mut it = karpenter_sim::ec2::catalog::instance_type(t);
    if let Some(zones) = zones {
        it.offerings.retain(|o| zones.contains(&o.zone));
    }
    it
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
        let mut catalog = Catalog::embedded_with(&derivation_options(class)?)?;
        apply_kubelet(&mut catalog, class)?;
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
    use karpenter_apis::labels;

    fn class(spec: serde_json::Value) -> EC2NodeClass {
        serde_json::from_value(serde_json::json!({
            "apiVersion": "karpenter.k8s.aws/v1", "kind": "EC2NodeClass",
            "metadata": {"name": "c"}, "spec": spec
        }))
        .unwrap()
    }

    fn m5_large(spec: serde_json::Value) -> InstanceType {
        let c = ClassCatalog::for_class(&class(spec), None).unwrap();
        c.instance_types
            .into_iter()
            .find(|t| t.name == "m5.large")
            .unwrap()
    }

    #[test]
    fn nodeclass_settings_change_capacity_and_overhead() {
        let base = m5_large(serde_json::json!({"amiSelectorTerms": [{"alias": "al2023@latest"}]}));
        let tuned = m5_large(serde_json::json!({
            "amiSelectorTerms": [{"alias": "al2023@latest"}],
            "kubelet": {"maxPods": 20, "kubeReserved": {"cpu": "500m", "pid": "100"},
                        "systemReserved": {"memory": "1Gi"},
                        "evictionHard": {"memory.available": "5%", "nodefs.available": "1Gi"}},
            "blockDeviceMappings": [{"deviceName": "/dev/xvda", "rootVolume": true,
                                     "ebs": {"volumeSize": "100Gi"}}]
        }));
        assert_eq!(tuned.capacity.pods, 20);
        assert_eq!(tuned.capacity.ephemeral_storage, 100 << 30);
        assert_ne!(
            base.capacity.ephemeral_storage,
            tuned.capacity.ephemeral_storage
        );
        assert_eq!(tuned.overhead.kube_reserved.cpu, 500);
        assert_eq!(tuned.overhead.system_reserved.memory, 1 << 30);
        let five_percent = (tuned.capacity.memory as f64 * 0.05).ceil() as i64;
        assert_eq!(tuned.overhead.eviction_threshold.memory, five_percent);
        assert_eq!(tuned.overhead.eviction_threshold.ephemeral_storage, 1 << 30);
        assert!(tuned.allocatable().memory < base.allocatable().memory);
    }

    #[test]
    fn bad_nodeclass_quantities_name_the_field() {
        for (spec, field) in [
            (
                serde_json::json!({"kubelet": {"kubeReserved": {"cpu": "lots"}}}),
                "spec.kubelet.kubeReserved.cpu",
            ),
            (
                serde_json::json!({"kubelet": {"evictionHard": {"memory.available": "x%"}}}),
                "spec.kubelet.evictionHard.memory.available",
            ),
            (
                serde_json::json!({"blockDeviceMappings": [{"rootVolume": true, "ebs": {"volumeSize": "big"}}]}),
                "spec.blockDeviceMappings[0].ebs.volumeSize",
            ),
        ] {
            let err = ClassCatalog::for_class(&class(spec), None).unwrap_err();
            assert!(err.to_string().contains(field), "{err}");
        }
    }

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
