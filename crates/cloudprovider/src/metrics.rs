//! The metrics decorator: times every cloud call and counts failures by kind, under upstream's
//! metric names and labels so upstream dashboards work unchanged.

use std::collections::BTreeMap;
use std::sync::Arc;

use async_trait::async_trait;
use karpenter_apis::nodeclaim::NodeClaim;
use karpenter_apis::nodepool::NodePool;
use prometheus::{HistogramOpts, HistogramTimer, HistogramVec, IntCounterVec, Opts, Registry};

use crate::{
    CloudProvider, DriftReason, InstanceType, Method, NodeClassKind, RepairPolicy, Result,
};

/// `karpenter_cloudprovider_duration_seconds`.
pub const DURATION_SECONDS: &str = "karpenter_cloudprovider_duration_seconds";
/// `karpenter_cloudprovider_errors_total`.
pub const ERRORS_TOTAL: &str = "karpenter_cloudprovider_errors_total";

/// The two cloud-provider metric families, registered once on the process registry and shared
/// by every decorator.
#[derive(Debug, Clone)]
pub struct CloudProviderMetrics {
    duration: HistogramVec,
    errors: IntCounterVec,
}

impl CloudProviderMetrics {
    /// Creates both families and registers them on `registry`.
    pub fn register(registry: &Registry) -> std::result::Result<Self, prometheus::Error> {
        // Upstream uses Prometheus' default buckets here, not the extended duration buckets.
        let duration = HistogramVec::new(
            HistogramOpts::new(
                DURATION_SECONDS,
                "Time spent in a cloud provider call, by calling controller and method.",
            ),
            &["controller", "method", "provider"],
        )?;
        let errors = IntCounterVec::new(
            Opts::new(
                ERRORS_TOTAL,
                "Failed cloud provider calls, by calling controller, method and error kind.",
            ),
            &["controller", "method", "provider", "error"],
        )?;
        registry.register(Box::new(duration.clone()))?;
        registry.register(Box::new(errors.clone()))?;
        Ok(CloudProviderMetrics { duration, errors })
    }
}

/// Wraps a provider so each call is timed and each failure counted. One per calling controller
/// (the `controller` label); wrap an `Arc` of the provider to share it.
#[derive(Debug, Clone)]
pub struct MetricsCloudProvider<P> {
    inner: P,
    metrics: CloudProviderMetrics,
    controller: &'static str,
}

impl<P: CloudProvider> MetricsCloudProvider<P> {
    /// Decorates `inner` for calls made by `controller`.
    pub fn new(inner: P, metrics: &CloudProviderMetrics, controller: &'static str) -> Self {
        MetricsCloudProvider {
            inner,
            metrics: metrics.clone(),
            controller,
        }
    }

    /// The decorated provider.
    pub fn inner(&self) -> &P {
        &self.inner
    }

    /// Starts timing `method`; the duration is observed when the guard drops, so a cancelled
    /// call is still measured.
    fn timer(&self, method: Method) -> HistogramTimer {
        self.metrics
            .duration
            .with_label_values(&[self.controller, method.as_str(), self.inner.name()])
            .start_timer()
    }

    fn count<T>(&self, method: Method, result: &Result<T>) {
        if let Err(e) = result {
            self.metrics
                .errors
                .with_label_values(&[
                    self.controller,
                    method.as_str(),
                    self.inner.name(),
                    e.category(),
                ])
                .inc();
        }
    }
}

#[async_trait]
impl<P: CloudProvider> CloudProvider for MetricsCloudProvider<P> {
    async fn create(&self, node_claim: &NodeClaim) -> Result<NodeClaim> {
        let _timer = self.timer(Method::Create);
        let result = self.inner.create(node_claim).await;
        self.count(Method::Create, &result);
        result
    }

    async fn delete(&self, node_claim: &NodeClaim) -> Result<()> {
        let _timer = self.timer(Method::Delete);
        let result = self.inner.delete(node_claim).await;
        self.count(Method::Delete, &result);
        result
    }

    async fn get(&self, provider_id: &str) -> Result<NodeClaim> {
        let _timer = self.timer(Method::Get);
        let result = self.inner.get(provider_id).await;
        self.count(Method::Get, &result);
        result
    }

    async fn list(&self) -> Result<Vec<NodeClaim>> {
        let _timer = self.timer(Method::List);
        let result = self.inner.list().await;
        self.count(Method::List, &result);
        result
    }

    async fn get_instance_types(&self, node_pool: &NodePool) -> Result<Arc<[InstanceType]>> {
        let _timer = self.timer(Method::GetInstanceTypes);
        let result = self.inner.get_instance_types(node_pool).await;
        self.count(Method::GetInstanceTypes, &result);
        result
    }

    async fn is_drifted(&self, node_claim: &NodeClaim) -> Result<Option<DriftReason>> {
        let _timer = self.timer(Method::IsDrifted);
        let result = self.inner.is_drifted(node_claim).await;
        self.count(Method::IsDrifted, &result);
        result
    }

    fn repair_policies(&self) -> Vec<RepairPolicy> {
        self.inner.repair_policies()
    }

    fn name(&self) -> &'static str {
        self.inner.name()
    }

    fn supported_node_classes(&self) -> Vec<NodeClassKind> {
        self.inner.supported_node_classes()
    }
}

/// Reads one sample back from a registry's text exposition: the value of the series `name`
/// whose labels include every pair in `labels` (e.g. `name_count` for a histogram's sample
/// count). For tests and diagnostics; `None` when no series matches.
pub fn read_sample(registry: &Registry, name: &str, labels: &[(&str, &str)]) -> Option<f64> {
    let mut text = String::new();
    for family in registry.gather() {
        let encoded = prometheus::TextEncoder::new().encode_to_string(&[family]);
        if let Ok(encoded) = encoded {
            text.push_str(&encoded);
        }
    }
    text.lines()
        .filter(|line| !line.starts_with('#'))
        .filter_map(parse_sample_line)
        .find(|(series, series_labels, _)| {
            series == name
                && labels
                    .iter()
                    .all(|(k, v)| series_labels.get(*k).map(String::as_str) == Some(*v))
        })
        .map(|(_, _, value)| value)
}

/// `name{k="v",...} value` → parts. Label values in our metrics hold no quotes or commas.
fn parse_sample_line(line: &str) -> Option<(String, BTreeMap<String, String>, f64)> {
    let (series, value) = line.rsplit_once(' ')?;
    let value: f64 = value.parse().ok()?;
    let (name, labels) = match series.split_once('{') {
        Some((name, rest)) => (name, rest.strip_suffix('}')?),
        None => (series, ""),
    };
    let labels = labels
        .split(',')
        .filter(|pair| !pair.is_empty())
        .filter_map(|pair| {
            let (k, v) = pair.split_once('=')?;
            Some((k.to_string(), v.trim_matches('"').to_string()))
        })
        .collect();
    Some((name.to_string(), labels, value))
}

#[cfg(test)]
mod tests {
    use std::sync::Mutex;

    use karpenter_apis::common::NodeClassReference;
    use karpenter_apis::nodeclaim::NodeClaimSpec;

    use super::*;
    use crate::CloudProviderError;

    /// A provider whose every call returns the next scripted outcome (Ok when none is left).
    #[derive(Default)]
    struct Scripted {
        errors: Mutex<Vec<CloudProviderError>>,
        calls: Mutex<Vec<Method>>,
    }

    impl Scripted {
        fn failing(errors: Vec<CloudProviderError>) -> Self {
            Scripted {
                errors: Mutex::new(errors.into_iter().rev().collect()),
                calls: Mutex::default(),
            }
        }

        fn next(&self, method: Method) -> Result<()> {
            self.calls.lock().unwrap().push(method);
            match self.errors.lock().unwrap().pop() {
                Some(e) => Err(e),
                None => Ok(()),
            }
        }
    }

    #[async_trait]
    impl CloudProvider for Scripted {
        async fn create(&self, node_claim: &NodeClaim) -> Result<NodeClaim> {
            self.next(Method::Create)?;
            let mut created = node_claim.clone();
            created.status = Some(Default::default());
            if let Some(s) = created.status.as_mut() {
                s.provider_id = Some("fake:///zone/i-1".into());
            }
            Ok(created)
        }
        async fn delete(&self, _: &NodeClaim) -> Result<()> {
            self.next(Method::Delete)
        }
        async fn get(&self, provider_id: &str) -> Result<NodeClaim> {
            self.next(Method::Get)?;
            Ok(node_claim(provider_id))
        }
        async fn list(&self) -> Result<Vec<NodeClaim>> {
            self.next(Method::List)?;
            Ok(vec![node_claim("a"), node_claim("b")])
        }
        async fn get_instance_types(&self, _: &NodePool) -> Result<Arc<[InstanceType]>> {
            self.next(Method::GetInstanceTypes)?;
            Ok(Arc::from(Vec::new()))
        }
        async fn is_drifted(&self, _: &NodeClaim) -> Result<Option<DriftReason>> {
            self.next(Method::IsDrifted)?;
            Ok(Some(DriftReason("AMIDrift".into())))
        }
        fn repair_policies(&self) -> Vec<RepairPolicy> {
            vec![RepairPolicy::new(
                "Ready",
                "False",
                std::time::Duration::from_secs(1800),
            )]
        }
        fn name(&self) -> &'static str {
            "fake"
        }
        fn supported_node_classes(&self) -> Vec<NodeClassKind> {
            vec![NodeClassKind::EC2_NODE_CLASS]
        }
    }

    fn node_claim(name: &str) -> NodeClaim {
        NodeClaim::new(
            name,
            NodeClaimSpec {
                taints: vec![],
                startup_taints: vec![],
                requirements: vec![],
                resources: Default::default(),
                node_class_ref: NodeClassReference::ec2_node_class("default"),
                termination_grace_period: None,
                expire_after: None,
            },
        )
    }

    fn node_pool() -> NodePool {
        serde_json::from_value(serde_json::json!({
            "apiVersion": "karpenter.sh/v1", "kind": "NodePool",
            "metadata": {"name": "default"},
            "spec": {"template": {"spec": {
                "nodeClassRef": {"group": "karpenter.k8s.aws", "kind": "EC2NodeClass", "name": "default"},
                "requirements": []
            }}}
        }))
        .unwrap()
    }

    fn errors(registry: &Registry, controller: &str, method: &str, error: &str) -> f64 {
        read_sample(
            registry,
            ERRORS_TOTAL,
            &[
                ("controller", controller),
                ("method", method),
                ("provider", "fake"),
                ("error", error),
            ],
        )
        .unwrap_or(0.0)
    }

    fn durations(registry: &Registry, controller: &str, method: &str) -> f64 {
        read_sample(
            registry,
            &format!("{DURATION_SECONDS}_count"),
            &[
                ("controller", controller),
                ("method", method),
                ("provider", "fake"),
            ],
        )
        .unwrap_or(0.0)
    }

    #[tokio::test]
    async fn counts_errors_by_category_and_times_every_call() {
        let registry = Registry::new();
        let metrics = CloudProviderMetrics::register(&registry).unwrap();
        let inner = Arc::new(Scripted::failing(vec![
            CloudProviderError::insufficient_capacity("no capacity", vec![]),
            CloudProviderError::insufficient_capacity("no capacity", vec![]),
            CloudProviderError::other("throttled"),
        ]));
        let provisioner = MetricsCloudProvider::new(inner.clone(), &metrics, "provisioner");
        let lifecycle = MetricsCloudProvider::new(inner.clone(), &metrics, "nodeclaim.lifecycle");

        let claim = node_claim("a");
        assert!(provisioner.create(&claim).await.is_err());
        assert!(provisioner.create(&claim).await.is_err());
        assert!(provisioner.create(&claim).await.is_err());
        assert!(provisioner.create(&claim).await.is_ok());
        assert!(lifecycle.delete(&claim).await.is_ok());

        assert_eq!(
            errors(
                &registry,
                "provisioner",
                "Create",
                "InsufficientCapacityError"
            ),
            2.0
        );
        assert_eq!(errors(&registry, "provisioner", "Create", ""), 1.0);
        assert_eq!(errors(&registry, "nodeclaim.lifecycle", "Delete", ""), 0.0);
        assert_eq!(durations(&registry, "provisioner", "Create"), 4.0);
        assert_eq!(durations(&registry, "nodeclaim.lifecycle", "Delete"), 1.0);
        assert_eq!(durations(&registry, "provisioner", "Delete"), 0.0);
    }

    #[tokio::test]
    async fn each_method_is_labelled_and_counted_under_its_name() {
        let registry = Registry::new();
        let metrics = CloudProviderMetrics::register(&registry).unwrap();
        let inner = Scripted::failing(vec![
            CloudProviderError::other("1"),
            CloudProviderError::not_found("2"),
            CloudProviderError::not_found("3"),
            CloudProviderError::other("4"),
            CloudProviderError::NodeClassNotReady {
                message: "5".into(),
            },
            CloudProviderError::other("6"),
        ]);
        let p = MetricsCloudProvider::new(inner, &metrics, "c");
        let claim = node_claim("a");
        assert!(p.create(&claim).await.is_err());
        assert!(p.delete(&claim).await.is_err());
        assert!(p.get("fake:///zone/i-1").await.is_err());
        assert!(p.list().await.is_err());
        assert!(p.get_instance_types(&node_pool()).await.is_err());
        assert!(p.is_drifted(&claim).await.is_err());
        let expected = [
            ("Create", ""),
            ("Delete", "NodeClaimNotFoundError"),
            ("Get", "NodeClaimNotFoundError"),
            ("List", ""),
            ("GetInstanceTypes", "NodeClassNotReadyError"),
            ("IsDrifted", ""),
        ];
        for (method, error) in expected {
            assert_eq!(errors(&registry, "c", method, error), 1.0, "{method}");
            assert_eq!(durations(&registry, "c", method), 1.0, "{method}");
        }
        assert_eq!(
            p.inner().calls.lock().unwrap().as_slice(),
            Method::ALL.as_slice()
        );
    }

    #[tokio::test]
    async fn forwards_results_and_static_answers_unchanged() {
        let registry = Registry::new();
        let metrics = CloudProviderMetrics::register(&registry).unwrap();
        let p = MetricsCloudProvider::new(Scripted::default(), &metrics, "c");
        let created = p.create(&node_claim("a")).await.unwrap();
        assert_eq!(
            created.status.unwrap().provider_id.as_deref(),
            Some("fake:///zone/i-1")
        );
        assert_eq!(
            p.get("fake:///zone/i-9")
                .await
                .unwrap()
                .metadata
                .name
                .as_deref(),
            Some("fake:///zone/i-9")
        );
        assert_eq!(p.list().await.unwrap().len(), 2);
        assert_eq!(
            p.is_drifted(&node_claim("a")).await.unwrap(),
            Some(DriftReason("AMIDrift".into()))
        );
        assert_eq!(p.name(), "fake");
        assert_eq!(p.repair_policies().len(), 1);
        assert_eq!(
            p.supported_node_classes(),
            vec![NodeClassKind::EC2_NODE_CLASS]
        );
        assert_eq!(errors(&registry, "c", "Create", ""), 0.0);
    }

    #[test]
    fn registering_twice_on_one_registry_fails() {
        let registry = Registry::new();
        assert!(CloudProviderMetrics::register(&registry).is_ok());
        assert!(CloudProviderMetrics::register(&registry).is_err());
    }

    #[test]
    fn sample_lines_parse() {
        let (name, labels, value) = parse_sample_line(r#"x_total{a="1",b=""} 3"#).unwrap();
        assert_eq!(name, "x_total");
        assert_eq!(labels.get("a").map(String::as_str), Some("1"));
        assert_eq!(labels.get("b").map(String::as_str), Some(""));
        assert_eq!(value, 3.0);
        assert_eq!(parse_sample_line("y 2.5").unwrap().2, 2.5);
    }
}
