//! The Node object a booted instance registers, written through the Kubernetes API like a real
//! kubelet (so the same path works in-process, from another process or against a real cluster).

use std::collections::BTreeMap;
use std::time::Duration;

use chrono::{DateTime, Utc};
use k8s_openapi::api::core::v1::{
    Node, NodeAddress, NodeCondition, NodeSpec, NodeStatus, NodeSystemInfo, Taint,
};
use k8s_openapi::apimachinery::pkg::apis::meta::v1::ObjectMeta;
use karpenter_apis::labels;
use karpenter_cloudprovider::resource_list;
use kube::api::{Api, DeleteParams, ListParams, PostParams};

use super::SimInstance;

/// How registration reaches the API server.
#[derive(Clone)]
pub(crate) struct Registrar {
    pub(crate) client: kube::Client,
    pub(crate) boot_delay: Duration,
}

impl std::fmt::Debug for Registrar {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Registrar")
            .field("boot_delay", &self.boot_delay)
            .finish_non_exhaustive()
    }
}

/// Attempts per API call before giving up (with doubling backoff from 100ms).
const ATTEMPTS: u32 = 6;

impl Registrar {
    /// Creates the Node; an existing Node of that name counts as success.
    pub(crate) async fn create(&self, node: &Node) -> Result<(), kube::Error> {
        let api: Api<Node> = Api::all(self.client.clone());
        let mut backoff = Duration::from_millis(100);
        let mut attempt = 1;
        loop {
            match api.create(&PostParams::default(), node).await {
                Ok(_) => return Ok(()),
                Err(kube::Error::Api(s)) if s.code == 409 => return Ok(()),
                Err(e) if attempt >= ATTEMPTS => return Err(e),
                Err(e) => {
                    tracing::warn!(error = %e, attempt, "creating node failed, retrying");
                }
            }
            tokio::time::sleep(backoff).await;
            backoff *= 2;
            attempt += 1;
        }
    }

    /// Every Node carrying `label` (any value), all pages.
    pub(crate) async fn list_labelled(&self, label: &str) -> Result<Vec<Node>, kube::Error> {
        let api: Api<Node> = Api::all(self.client.clone());
        let mut params = ListParams::default().labels(label).limit(500);
        let mut nodes = Vec::new();
        loop {
            let page = api.list(&params).await?;
            nodes.extend(page.items);
            match page.metadata.continue_.filter(|c| !c.is_empty()) {
                Some(token) => params = params.continue_token(&token),
                None => return Ok(nodes),
            }
        }
    }

    /// Deletes the Node (finalizers hold it until Karpenter's termination releases it); an
    /// already-deleted Node counts as success.
    pub(crate) async fn delete(&self, name: &str) -> Result<(), kube::Error> {
        let api: Api<Node> = Api::all(self.client.clone());
        let mut backoff = Duration::from_millis(100);
        let mut attempt = 1;
        loop {
            match api.delete(name, &DeleteParams::default()).await {
                Ok(_) => return Ok(()),
                Err(kube::Error::Api(s)) if s.code == 404 => return Ok(()),
                Err(e) if attempt >= ATTEMPTS => return Err(e),
                Err(e) => {
                    tracing::warn!(error = %e, attempt, "deleting node failed, retrying");
                }
            }
            tokio::time::sleep(backoff).await;
            backoff *= 2;
            attempt += 1;
        }
    }
}

/// The Node a freshly booted instance registers: the NodeClaim's resolved labels plus the
/// kubelet's hostname label, the NodeClaim's taints and startup taints plus Karpenter's
/// `unregistered` taint, the provider ID, capacity/allocatable, node info, addresses and a
/// not-yet-Ready condition (the simulated kubelet makes it Ready).
pub fn node_object(instance: &SimInstance, kubelet_version: &str, now: DateTime<Utc>) -> Node {
    let mut node_labels: BTreeMap<String, String> = instance.labels.clone();
    node_labels.insert(labels::HOSTNAME.to_string(), instance.node_name.clone());
    if let Some(pool) = &instance.node_pool {
        node_labels.insert(labels::NODEPOOL.to_string(), pool.clone());
    }
    node_labels.insert(
        instance.node_class_label_key.clone(),
        instance.node_class_name.clone(),
    );
    node_labels.insert(
        super::adoption::INSTANCE_ID_LABEL.to_string(),
        instance.instance_id.clone(),
    );

    let mut taints: Vec<Taint> = Vec::new();
    let unregistered = Taint {
        key: labels::TAINT_UNREGISTERED.to_string(),
        effect: labels::TAINT_UNREGISTERED_EFFECT.to_string(),
        value: None,
        time_added: None,
    };
    for t in instance
        .taints
        .iter()
        .chain(&instance.startup_taints)
        .chain(std::iter::once(&unregistered))
    {
        if !taints
            .iter()
            .any(|x| x.key == t.key && x.effect == t.effect)
        {
            taints.push(t.clone());
        }
    }

    let time = super::k8s_time(now);
    let condition = |type_: &str, status: &str, reason: &str, message: &str| NodeCondition {
        type_: type_.to_string(),
        status: status.to_string(),
        reason: Some(reason.to_string()),
        message: Some(message.to_string()),
        last_heartbeat_time: Some(time.clone()),
        last_transition_time: Some(time.clone()),
    };
    let arch = instance.arch.as_str();
    let kernel_arch = if arch == "arm64" { "aarch64" } else { "x86_64" };
    let machine_id: String = instance
        .instance_id
        .trim_start_matches("i-")
        .chars()
        .chain(std::iter::repeat('0'))
        .take(32)
        .collect();
    Node {
        metadata: ObjectMeta {
            name: Some(instance.node_name.clone()),
            labels: Some(node_labels),
            annotations: Some(node_annotations(instance)),
            ..Default::default()
        },
        spec: Some(NodeSpec {
            provider_id: Some(instance.provider_id.clone()),
            taints: Some(taints),
            ..Default::default()
        }),
        status: Some(NodeStatus {
            capacity: Some(resource_list(&instance.capacity)),
            allocatable: Some(resource_list(&instance.allocatable)),
            conditions: Some(vec![
                condition(
                    "MemoryPressure",
                    "False",
                    "KubeletHasSufficientMemory",
                    "kubelet has sufficient memory available",
                ),
                condition(
                    "DiskPressure",
                    "False",
                    "KubeletHasNoDiskPressure",
                    "kubelet has no disk pressure",
                ),
                condition(
                    "PIDPressure",
                    "False",
                    "KubeletHasSufficientPID",
                    "kubelet has sufficient PID available",
                ),
                condition(
                    "Ready",
                    "False",
                    "KubeletNotReady",
                    "container runtime network not ready: NetworkReady=false reason:NetworkPluginNotReady message:cni plugin not initialized",
                ),
            ]),
            addresses: Some(vec![
                NodeAddress {
                    type_: "InternalIP".into(),
                    address: instance.private_ip.clone(),
                },
                NodeAddress {
                    type_: "InternalDNS".into(),
                    address: instance.node_name.clone(),
                },
                NodeAddress {
                    type_: "Hostname".into(),
                    address: instance.node_name.clone(),
                },
            ]),
            node_info: Some(NodeSystemInfo {
                architecture: arch.to_string(),
                boot_id: machine_id.clone(),
                container_runtime_version: "containerd://2.1.4".to_string(),
                kernel_version: format!("6.12.40-64.114.amzn2023.{kernel_arch}"),
                kube_proxy_version: kubelet_version.to_string(),
                kubelet_version: kubelet_version.to_string(),
                machine_id: machine_id.clone(),
                operating_system: instance.os.clone(),
                os_image: "Amazon Linux 2023.8.20250818".to_string(),
                system_uuid: format!("ec2{}", machine_id.get(3..).unwrap_or_default()),
                ..Default::default()
            }),
            phase: None,
            ..Default::default()
        }),
    }
}

/// The Node's annotations. The NodeClaim's startup taints are announced to the simulated kubelet
/// (`crate::cluster` node agent) through [`crate::cluster::STARTUP_TAINTS_ANNOTATION`], the way a
/// real node's own agents know which taints they will remove once they are up.
fn node_annotations(instance: &SimInstance) -> BTreeMap<String, String> {
    let mut annotations = BTreeMap::from([(
        "alpha.kubernetes.io/provided-node-ip".to_string(),
        instance.private_ip.clone(),
    )]);
    if !instance.startup_taints.is_empty()
        && let Ok(json) = serde_json::to_string(&instance.startup_taints)
    {
        annotations.insert(crate::cluster::STARTUP_TAINTS_ANNOTATION.to_string(), json);
    }
    match serde_json::to_string(&super::adoption::InstanceRecord::of(instance)) {
        Ok(json) => {
            annotations.insert(super::adoption::INSTANCE_ANNOTATION.to_string(), json);
        }
        // Only a restart would notice (the Node is not adopted); say so now.
        Err(e) => {
            tracing::error!(error = %e, node = %instance.node_name, "encoding the instance record failed")
        }
    }
    annotations
}
