//! The simulated EC2: the one [`CloudProvider`] fake, used by every test and by
//! `karpenter simulate`.
//!
//! It answers as the AWS provider would, on the real us-west-2 catalog
//! ([`karpenter_catalog::Catalog::embedded`]; prices as described in [`catalog`]):
//!
//! - **Launch** ([`CloudProvider::create`]) chooses like upstream's CreateFleet path: among the
//!   instance types and offerings the NodeClaim allows whose allocatable fits its requests, the
//!   capacity type is `reserved` if any such offering is available (never, here: no
//!   reservations are modelled), else `spot`, else `on-demand`; then the cheapest offering of
//!   that capacity type. Offerings are tried cheapest first, as a fleet tries its overrides:
//!   one whose capacity limit ([`SimEc2Config::offering_capacity`]) is exhausted fails with
//!   insufficient capacity, is marked unavailable for three minutes (upstream's ICE cache
//!   TTL) and the next one is tried; if every one fails the call returns
//!   [`CloudProviderError::InsufficientCapacity`] naming them. An exhausted limit is invisible
//!   until a launch hits it, as on EC2.
//! - **Instances** are `pending` for [`SimEc2Config::launch_delay`], then `running`. Delete makes
//!   them `shutting-down` and, after [`SimEc2Config::termination_delay`], `terminated`; delete
//!   and get then answer [`CloudProviderError::NodeClaimNotFound`]. Terminated instances are
//!   forgotten an hour (injected clock) later, as EC2 does.
//! - **Nodes** register through the Kubernetes API when a registrar is attached
//!   ([`SimulatedEc2::with_node_registrar`]), and are deleted through it when the instance
//!   terminates. Each Node carries its instance record, so a restarted simulation adopts the
//!   instances it registered ([`SimulatedEc2::adopt_registered_nodes`], see [`adoption`]).
//! - **Interruptions** ([`SimulatedEc2::interrupt_spot`] and friends) are broadcast as
//!   [`InterruptionEvent`]s shaped after upstream's EventBridge messages.
//! - **Scripting** for tests: queued errors per method, a create-call budget, recorded calls,
//!   capacity limits, drift.
//!
//! Not modelled: capacity reservations, placement groups, subnets and IP exhaustion, launch
//! templates, AMI selection (one fixed AMI per architecture), NodeClass readiness (every
//! EC2NodeClass is treated as Ready, since nothing resolves NodeClasses yet), NodeClass-specific
//! instance-type derivation (kubelet/maxPods settings), spot price movement, API throttling,
//! the exotic-type and expensive-spot launch filters, stop/start.
//!
//! Time: timestamps and TTLs use the injected [`karpenter_cloudprovider::Clock`]; delays
//! (launch, boot, termination, the two-minute spot warning) use `tokio::time`, so tests pause
//! tokio's clock and step the injected one alongside.

pub mod adoption;
pub mod catalog;
pub mod events;
pub mod node;

use std::collections::{BTreeMap, VecDeque};
use std::sync::{Arc, Mutex, MutexGuard};
use std::time::Duration;

use async_trait::async_trait;
use chrono::{DateTime, Utc};
use k8s_openapi::api::core::v1::Taint;
use k8s_openapi::apimachinery::pkg::apis::meta::v1::{ObjectMeta, Time};
use karpenter_apis::common::NodeClassReference;
use karpenter_apis::labels;
use karpenter_apis::nodeclaim::{NodeClaim, NodeClaimSpec, NodeClaimStatus};
use karpenter_apis::nodepool::NodePool;
use karpenter_catalog::{Catalog, CatalogError, PriceSource};
use karpenter_cloudprovider::{
    CloudProvider, CloudProviderError, DriftReason, InstanceType, Method, NodeClassKind,
    OfferingKey, RepairPolicy, Requirements, Resources, SharedClock, node_claim_requirements,
    parse_resource_list, resource_list,
};
use tokio::sync::broadcast;
use tracing::Instrument;

pub use events::{InstanceState, InterruptionEvent, InterruptionKind};

/// The AWS provider's name: the simulation answers as that provider would, so metrics from a
/// simulation line up with production dashboards.
pub const PROVIDER_NAME: &str = "aws";

/// The first private IPv4 address handed out (10.0.0.10); launch `n` gets this plus `n`.
const FIRST_PRIVATE_IP: u32 = 0x0A00_000A;

/// The AMI every amd64 instance is launched from.
pub const IMAGE_ID_AMD64: &str = "ami-0f3c4a1b2d5e6f708";
/// The AMI every arm64 instance is launched from.
pub const IMAGE_ID_ARM64: &str = "ami-0a7b8c9d0e1f2a3b4";

/// How the simulated EC2 behaves.
#[derive(Debug, Clone)]
pub struct SimEc2Config {
    /// Region; must be the embedded catalog's (`us-west-2`).
    pub region: String,
    /// From launch until the instance is `running`.
    pub launch_delay: Duration,
    /// From `shutting-down` until `terminated`.
    pub termination_delay: Duration,
    /// From a spot interruption warning until the instance is reclaimed (EC2: two minutes).
    pub spot_interruption_warning: Duration,
    /// How long an offering that failed with insufficient capacity is reported unavailable
    /// (upstream's ICE cache: three minutes).
    pub unavailable_offering_ttl: Duration,
    /// How many more instances each listed offering can launch; unlisted offerings are
    /// unlimited.
    pub offering_capacity: BTreeMap<OfferingKey, u32>,
    /// Seed for instance IDs.
    pub seed: u64,
    /// How many recorded calls are kept (oldest dropped first).
    pub max_recorded_calls: usize,
    /// How long terminated instances stay visible to [`SimulatedEc2::instances`].
    pub terminated_retention: Duration,
    /// `status.nodeInfo.kubeletVersion` of registered Nodes.
    pub kubelet_version: String,
    /// Account ID used in interruption message ARNs.
    pub account_id: String,
}

impl Default for SimEc2Config {
    fn default() -> Self {
        SimEc2Config {
            region: "us-west-2".to_string(),
            launch_delay: Duration::from_secs(5),
            termination_delay: Duration::from_secs(30),
            spot_interruption_warning: Duration::from_secs(120),
            unavailable_offering_ttl: Duration::from_secs(180),
            offering_capacity: BTreeMap::new(),
            seed: 1,
            max_recorded_calls: 10_000,
            terminated_retention: Duration::from_secs(3600),
            kubelet_version: "v1.34.1".to_string(),
            account_id: "123456789012".to_string(),
        }
    }
}

/// Errors of the simulation's own controls (not cloud-provider answers).
#[derive(Debug, thiserror::Error)]
pub enum SimEc2Error {
    /// The embedded catalog did not load.
    #[error("loading the embedded catalog: {0}")]
    Catalog(#[from] CatalogError),
    /// A configuration field is invalid.
    #[error("invalid sim-ec2 config: {field}: {reason}")]
    InvalidConfig {
        /// The field.
        field: &'static str,
        /// Why.
        reason: String,
    },
    /// No live instance has this ID.
    #[error("instance {instance_id} does not exist or is terminated")]
    UnknownInstance {
        /// The ID asked for.
        instance_id: String,
    },
    /// Adoption needs a node registrar ([`SimulatedEc2::with_node_registrar`]).
    #[error("adopting registered nodes needs a node registrar")]
    NoRegistrar,
    /// Listing the Nodes to adopt failed.
    #[error("listing nodes labelled {label}: {source}")]
    ListNodes {
        /// The label selected on.
        label: &'static str,
        /// The API error.
        source: kube::Error,
    },
    /// The operation needs a spot instance.
    #[error("instance {instance_id} is {capacity_type}, not spot")]
    NotSpot {
        /// The instance.
        instance_id: String,
        /// Its capacity type.
        capacity_type: String,
    },
}

impl SimEc2Error {
    /// A stable, low-cardinality name for metrics and logs.
    pub fn category(&self) -> &'static str {
        match self {
            SimEc2Error::Catalog(_) => "catalog",
            SimEc2Error::InvalidConfig { .. } => "invalid_config",
            SimEc2Error::UnknownInstance { .. } => "unknown_instance",
            SimEc2Error::NotSpot { .. } => "not_spot",
            SimEc2Error::NoRegistrar => "no_registrar",
            SimEc2Error::ListNodes { .. } => "list_nodes",
        }
    }
}

/// One simulated instance, as tests inspect it.
#[derive(Debug, Clone, PartialEq)]
pub struct SimInstance {
    /// `i-` followed by 17 hex digits.
    pub instance_id: String,
    /// `aws:///<zone>/<instance-id>`.
    pub provider_id: String,
    /// Instance type name.
    pub instance_type: String,
    /// Zone.
    pub zone: String,
    /// Zone ID.
    pub zone_id: String,
    /// `spot` or `on-demand`.
    pub capacity_type: String,
    /// USD per hour of the offering it was launched on.
    pub price: f64,
    /// Where that price comes from.
    pub price_source: Option<PriceSource>,
    /// AMI.
    pub image_id: String,
    /// `amd64` or `arm64`.
    pub arch: String,
    /// `linux` or `windows`.
    pub os: String,
    /// Private IPv4 address.
    pub private_ip: String,
    /// Private DNS name, which is also the Node name.
    pub node_name: String,
    /// State.
    pub state: InstanceState,
    /// Launch time (injected clock).
    pub launch_time: DateTime<Utc>,
    /// When termination started (`shutting-down`).
    pub termination_started_at: Option<DateTime<Utc>>,
    /// When it reached `terminated`.
    pub terminated_at: Option<DateTime<Utc>>,
    /// Name of the NodeClaim it was launched for.
    pub node_claim: String,
    /// The NodeClaim's `karpenter.sh/nodepool` label.
    pub node_pool: Option<String>,
    /// The NodeClaim's NodeClass label key (`karpenter.k8s.aws/ec2nodeclass`).
    pub node_class_label_key: String,
    /// The NodeClass name.
    pub node_class_name: String,
    /// NodeClass reference, for NodeClaim views.
    pub node_class_ref: NodeClassReference,
    /// Resolved labels (NodeClaim labels plus instance-type, offering and tenancy labels).
    pub labels: BTreeMap<String, String>,
    /// Taints from the NodeClaim.
    pub taints: Vec<Taint>,
    /// Startup taints from the NodeClaim.
    pub startup_taints: Vec<Taint>,
    /// Capacity.
    pub capacity: Resources,
    /// Allocatable.
    pub allocatable: Resources,
    /// A spot interruption warning was sent.
    pub interrupted: bool,
    /// A Node was (being) registered for it.
    pub node_registered: bool,
}

impl SimInstance {
    /// The NodeClaim view get/list return: labels, provider ID, image, capacity; a deletion
    /// timestamp once shutting down.
    pub fn to_node_claim(&self) -> NodeClaim {
        NodeClaim {
            metadata: ObjectMeta {
                name: Some(self.node_claim.clone()),
                labels: Some(self.labels.clone()),
                creation_timestamp: Some(k8s_time(self.launch_time)),
                deletion_timestamp: self.termination_started_at.map(k8s_time),
                ..Default::default()
            },
            spec: NodeClaimSpec {
                taints: self.taints.clone(),
                startup_taints: self.startup_taints.clone(),
                requirements: vec![],
                resources: Default::default(),
                node_class_ref: self.node_class_ref.clone(),
                termination_grace_period: None,
                expire_after: None,
            },
            status: Some(NodeClaimStatus {
                provider_id: Some(self.provider_id.clone()),
                image_id: Some(self.image_id.clone()),
                capacity: resource_list(&self.capacity),
                allocatable: resource_list(&self.allocatable),
                ..Default::default()
            }),
        }
    }
}

/// A call the simulation received.
#[derive(Debug, Clone, PartialEq)]
pub enum RecordedCall {
    /// `create` with the NodeClaim as given.
    Create(Box<NodeClaim>),
    /// `delete` of the NodeClaim with this provider ID (empty when it had none).
    Delete {
        /// Provider ID.
        provider_id: String,
    },
    /// `get`.
    Get {
        /// Provider ID.
        provider_id: String,
    },
    /// `list`.
    List,
    /// `get_instance_types` for a NodePool.
    GetInstanceTypes {
        /// NodePool name.
        node_pool: String,
    },
    /// `is_drifted`.
    IsDrifted {
        /// Provider ID.
        provider_id: String,
    },
}

impl RecordedCall {
    /// The method called.
    pub fn method(&self) -> Method {
        match self {
            RecordedCall::Create(_) => Method::Create,
            RecordedCall::Delete { .. } => Method::Delete,
            RecordedCall::Get { .. } => Method::Get,
            RecordedCall::List => Method::List,
            RecordedCall::GetInstanceTypes { .. } => Method::GetInstanceTypes,
            RecordedCall::IsDrifted { .. } => Method::IsDrifted,
        }
    }
}

/// The simulated EC2 (see the module docs). Share it with `Arc`; `Arc<SimulatedEc2>` is a
/// [`CloudProvider`] too.
#[derive(Debug)]
pub struct SimulatedEc2 {
    inner: Arc<Inner>,
}

#[derive(Debug)]
struct Inner {
    config: SimEc2Config,
    clock: SharedClock,
    catalog: Catalog,
    types: Arc<[InstanceType]>,
    state: Mutex<State>,
    events: broadcast::Sender<InterruptionEvent>,
    registrar: Mutex<Option<node::Registrar>>,
}

#[derive(Debug)]
struct State {
    instances: BTreeMap<String, SimInstance>,
    /// Offerings that failed with insufficient capacity → when they become available again.
    unavailable: BTreeMap<OfferingKey, DateTime<Utc>>,
    capacity: BTreeMap<OfferingKey, u32>,
    next_errors: BTreeMap<Method, VecDeque<CloudProviderError>>,
    create_budget: Option<usize>,
    calls: VecDeque<RecordedCall>,
    drift: BTreeMap<String, DriftReason>,
    /// Terminated instances in termination order, so forgetting them costs nothing per call.
    terminated: VecDeque<(DateTime<Utc>, String)>,
    rng: SplitMix64,
    launched: u32,
    /// Instance types with the unavailable set they were computed for.
    types_cache: Option<(Vec<OfferingKey>, Arc<[InstanceType]>)>,
}

/// A small seedable generator (SplitMix64) so instance IDs are reproducible from the seed.
#[derive(Debug)]
struct SplitMix64(u64);

impl SplitMix64 {
    fn next(&mut self) -> u64 {
        self.0 = self.0.wrapping_add(0x9E37_79B9_7F4A_7C15);
        let mut z = self.0;
        z = (z ^ (z >> 30)).wrapping_mul(0xBF58_476D_1CE4_E5B9);
        z = (z ^ (z >> 27)).wrapping_mul(0x94D0_49BB_1331_11EB);
        z ^ (z >> 31)
    }
}

fn lock<T>(m: &Mutex<T>) -> MutexGuard<'_, T> {
    // The state stays consistent between statements, so a panic elsewhere leaves it usable.
    m.lock().unwrap_or_else(|p| p.into_inner())
}

/// A Kubernetes timestamp (second precision, as `metav1.Time` serializes).
pub fn k8s_time(t: DateTime<Utc>) -> Time {
    Time(k8s_openapi::jiff::Timestamp::from_second(t.timestamp()).unwrap_or_default())
}

fn to_chrono(d: Duration) -> chrono::Duration {
    chrono::Duration::from_std(d).unwrap_or(chrono::Duration::MAX)
}

/// Splits `aws:///<zone>/<instance-id>`.
pub fn parse_provider_id(provider_id: &str) -> Option<(&str, &str)> {
    let rest = provider_id.strip_prefix("aws:///")?;
    let (zone, id) = rest.split_once('/')?;
    (!zone.is_empty() && id.starts_with("i-") && !id.contains('/')).then_some((zone, id))
}

impl SimulatedEc2 {
    /// A simulated EC2 on the embedded catalog.
    pub fn new(config: SimEc2Config, clock: SharedClock) -> Result<Self, SimEc2Error> {
        Self::from_catalog(config, clock, Catalog::embedded()?)
    }

    /// A simulated EC2 on an already loaded catalog (loading the embedded one takes a while in
    /// debug builds; tests load it once and clone it).
    pub fn from_catalog(
        config: SimEc2Config,
        clock: SharedClock,
        catalog: Catalog,
    ) -> Result<Self, SimEc2Error> {
        if config.region != catalog.region {
            return Err(SimEc2Error::InvalidConfig {
                field: "region",
                reason: format!(
                    "the embedded catalog covers {}, not {}",
                    catalog.region, config.region
                ),
            });
        }
        if let Some(key) = config
            .offering_capacity
            .keys()
            .find(|k| catalog.get(&k.instance_type).is_none())
        {
            return Err(SimEc2Error::InvalidConfig {
                field: "offering_capacity",
                reason: format!("unknown instance type {}", key.instance_type),
            });
        }
        let types: Arc<[InstanceType]> = catalog::instance_types(&catalog).into();
        let (events, _) = broadcast::channel(1024);
        let state = State {
            instances: BTreeMap::new(),
            unavailable: BTreeMap::new(),
            capacity: config.offering_capacity.clone(),
            next_errors: BTreeMap::new(),
            create_budget: None,
            calls: VecDeque::new(),
            drift: BTreeMap::new(),
            terminated: VecDeque::new(),
            rng: SplitMix64(config.seed),
            launched: 0,
            types_cache: None,
        };
        Ok(SimulatedEc2 {
            inner: Arc::new(Inner {
                config,
                clock,
                catalog,
                types,
                state: Mutex::new(state),
                events,
                registrar: Mutex::new(None),
            }),
        })
    }

    /// Registers a Node through `client` for every instance, `boot_delay` after it is running,
    /// and deletes it when the instance terminates.
    pub fn with_node_registrar(self, client: kube::Client, boot_delay: Duration) -> Self {
        *lock(&self.inner.registrar) = Some(node::Registrar { client, boot_delay });
        self
    }

    /// Rebuilds the instance table from the Nodes this simulation (in this or an earlier
    /// process) registered, so `get`, `list` and `delete` by provider ID keep working across a
    /// controller restart. Adopted instances are `running` with their Node registered;
    /// instances already known are left alone. Later launches get instance IDs and addresses
    /// (hence Node names) no adopted instance uses. Call it before the controllers start, and
    /// again whenever this process takes over from another one (leader election).
    pub async fn adopt_registered_nodes(&self) -> Result<adoption::Adoption, SimEc2Error> {
        let registrar = lock(&self.inner.registrar)
            .clone()
            .ok_or(SimEc2Error::NoRegistrar)?;
        let nodes = registrar
            .list_labelled(adoption::INSTANCE_ID_LABEL)
            .await
            .map_err(|source| SimEc2Error::ListNodes {
                label: adoption::INSTANCE_ID_LABEL,
                source,
            })?;
        let mut result = adoption::Adoption::default();
        let mut found = Vec::new();
        for node in nodes {
            let name = node.metadata.name.clone().unwrap_or_default();
            match adoption::record_of(&node).and_then(|record| {
                adoption::instance_from_record(
                    record,
                    name.clone(),
                    &self.inner.types,
                    &self.inner.catalog,
                )
            }) {
                Ok(instance) => found.push(instance),
                Err(reason) => result.skipped.push((name, reason)),
            }
        }
        result.skipped.sort_by(|a, b| a.0.cmp(&b.0));
        let now = self.inner.clock.now();
        let mut st = lock(&self.inner.state);
        for instance in found {
            if let Some(seq) = adoption::launch_sequence(&instance.private_ip) {
                st.launched = st.launched.max(seq.saturating_add(1));
            }
            if st.instances.contains_key(&instance.instance_id) {
                result.already_known += 1;
                continue;
            }
            result.adopted.push(instance.instance_id.clone());
            st.instances.insert(instance.instance_id.clone(), instance);
        }
        result.adopted.sort();
        if !result.adopted.is_empty() {
            // The seed's ID sequence was used by the earlier process, including for instances
            // that never registered (lost with it); a NodeClaim may still name one of those, so
            // continue from a point that process did not reach.
            let salt = u64::try_from(now.timestamp_nanos_opt().unwrap_or_default()).unwrap_or(0);
            st.rng.0 ^= salt.rotate_left(29);
        }
        Ok(result)
    }

    /// The configuration.
    pub fn config(&self) -> &SimEc2Config {
        &self.inner.config
    }

    /// The catalog the instance types come from.
    pub fn catalog(&self) -> &Catalog {
        &self.inner.catalog
    }

    // ---- scripting ------------------------------------------------------------------------

    /// Makes the next call of `method` fail with `error` (queued per method, first in first out).
    pub fn next_error(&self, method: Method, error: CloudProviderError) {
        lock(&self.inner.state)
            .next_errors
            .entry(method)
            .or_default()
            .push_back(error);
    }

    /// Allows `budget` more create calls; later ones fail. `None` removes the limit.
    pub fn set_create_budget(&self, budget: Option<usize>) {
        lock(&self.inner.state).create_budget = budget;
    }

    /// Every call received so far (up to [`SimEc2Config::max_recorded_calls`], oldest first).
    pub fn calls(&self) -> Vec<RecordedCall> {
        lock(&self.inner.state).calls.iter().cloned().collect()
    }

    /// Forgets the recorded calls.
    pub fn clear_calls(&self) {
        lock(&self.inner.state).calls.clear();
    }

    /// Limits how many more instances an offering can launch (`None`: unlimited).
    pub fn set_offering_capacity(&self, key: OfferingKey, remaining: Option<u32>) {
        let mut st = lock(&self.inner.state);
        match remaining {
            Some(n) => st.capacity.insert(key, n),
            None => st.capacity.remove(&key),
        };
    }

    /// Marks an offering unavailable for the ICE TTL, as the AWS provider does on an
    /// insufficient-capacity error or a spot interruption.
    pub fn mark_unavailable(&self, key: OfferingKey) {
        let until = self.inner.clock.now() + to_chrono(self.inner.config.unavailable_offering_ttl);
        lock(&self.inner.state).unavailable.insert(key, until);
    }

    /// Makes `is_drifted` report `reason` for the instance with this provider ID (`None`
    /// clears it).
    pub fn set_drifted(&self, provider_id: &str, reason: Option<DriftReason>) {
        let mut st = lock(&self.inner.state);
        match reason {
            Some(r) => st.drift.insert(provider_id.to_string(), r),
            None => st.drift.remove(provider_id),
        };
    }

    /// Every instance still remembered (live ones and recently terminated ones), by ID.
    pub fn instances(&self) -> Vec<SimInstance> {
        lock(&self.inner.state)
            .instances
            .values()
            .cloned()
            .collect()
    }

    /// One instance by ID.
    pub fn instance(&self, instance_id: &str) -> Option<SimInstance> {
        lock(&self.inner.state).instances.get(instance_id).cloned()
    }

    /// Subscribes to interruption and state-change events from now on.
    pub fn interruptions(&self) -> broadcast::Receiver<InterruptionEvent> {
        self.inner.events.subscribe()
    }

    /// Sends a spot interruption warning for a spot instance, marks its offering unavailable
    /// (as the AWS provider does on that message) and reclaims the instance after
    /// [`SimEc2Config::spot_interruption_warning`].
    pub fn interrupt_spot(&self, instance_id: &str) -> Result<(), SimEc2Error> {
        let key = {
            let mut st = lock(&self.inner.state);
            let instance = live_instance(&mut st, instance_id)?;
            if instance.capacity_type != labels::CAPACITY_TYPE_SPOT {
                return Err(SimEc2Error::NotSpot {
                    instance_id: instance_id.to_string(),
                    capacity_type: instance.capacity_type.clone(),
                });
            }
            instance.interrupted = true;
            let key = OfferingKey::new(
                &instance.instance_type,
                &instance.zone,
                &instance.capacity_type,
            );
            self.inner
                .emit(instance, InterruptionKind::SpotInterruption);
            key
        };
        self.mark_unavailable(key);
        let inner = self.inner.clone();
        let id = instance_id.to_string();
        tokio::spawn(
            async move {
                tokio::time::sleep(inner.config.spot_interruption_warning).await;
                Inner::begin_termination(&inner, &id);
            }
            .instrument(tracing::info_span!("sim-ec2-spot-reclaim", instance_id)),
        );
        Ok(())
    }

    /// Sends a rebalance recommendation for an instance (nothing else happens).
    pub fn recommend_rebalance(&self, instance_id: &str) -> Result<(), SimEc2Error> {
        let mut st = lock(&self.inner.state);
        let instance = live_instance(&mut st, instance_id)?;
        self.inner
            .emit(instance, InterruptionKind::RebalanceRecommendation);
        Ok(())
    }

    /// Sends an AWS Health scheduled-change event for an instance (it keeps running).
    pub fn schedule_maintenance(&self, instance_id: &str) -> Result<(), SimEc2Error> {
        let mut st = lock(&self.inner.state);
        let instance = live_instance(&mut st, instance_id)?;
        self.inner.emit(instance, InterruptionKind::ScheduledChange);
        Ok(())
    }

    /// Terminates an instance as if from outside Karpenter (console, ASG, spot reclaim).
    pub fn terminate_instance(&self, instance_id: &str) -> Result<(), SimEc2Error> {
        {
            let mut st = lock(&self.inner.state);
            live_instance(&mut st, instance_id)?;
        }
        Inner::begin_termination(&self.inner, instance_id);
        Ok(())
    }
}

fn live_instance<'a>(
    st: &'a mut State,
    instance_id: &str,
) -> Result<&'a mut SimInstance, SimEc2Error> {
    st.instances
        .get_mut(instance_id)
        .filter(|i| i.state.is_live())
        .ok_or_else(|| SimEc2Error::UnknownInstance {
            instance_id: instance_id.to_string(),
        })
}

impl State {
    fn record(&mut self, call: RecordedCall, max: usize) {
        if max == 0 {
            return;
        }
        while self.calls.len() >= max {
            self.calls.pop_front();
        }
        self.calls.push_back(call);
    }

    fn scripted_error(&mut self, method: Method) -> Option<CloudProviderError> {
        self.next_errors.get_mut(&method)?.pop_front()
    }

    fn expire(&mut self, now: DateTime<Utc>, retention: chrono::Duration) {
        self.unavailable.retain(|_, until| *until > now);
        while let Some((at, _)) = self.terminated.front() {
            if at.checked_add_signed(retention).is_none_or(|end| end > now) {
                break;
            }
            if let Some((_, id)) = self.terminated.pop_front() {
                self.instances.remove(&id);
            }
        }
    }

    fn is_unavailable(&self, key: &OfferingKey) -> bool {
        self.unavailable.contains_key(key)
    }
}

/// Whether every key both sides define overlaps (what `Requirements::intersects` decides,
/// without building an explanation for the many types that do not match).
fn type_compatible(t: &InstanceType, reqs: &Requirements) -> bool {
    reqs.iter().all(|(key, wanted)| {
        t.requirements
            .get(key)
            .is_none_or(|have| wanted.compatible_with(have))
    })
}

/// Keys an offering (rather than its type) defines in this simulation.
fn is_offering_key(key: &str) -> bool {
    key == labels::AWS_ZONE_ID
}

/// One launchable (type, offering) pair.
struct Candidate<'a> {
    instance_type: &'a InstanceType,
    offering: &'a karpenter_cloudprovider::Offering,
}

impl Inner {
    fn emit(&self, instance: &SimInstance, kind: InterruptionKind) {
        // Nobody listening is fine: events are advisory.
        let _ = self.events.send(InterruptionEvent {
            kind,
            instance_id: instance.instance_id.clone(),
            provider_id: instance.provider_id.clone(),
            instance_type: instance.instance_type.clone(),
            zone: instance.zone.clone(),
            capacity_type: instance.capacity_type.clone(),
            time: self.clock.now(),
        });
    }

    /// Begins a call: records it, expires TTLs, and answers a scripted error if one is queued.
    fn begin_call(&self, call: RecordedCall) -> Result<MutexGuard<'_, State>, CloudProviderError> {
        let method = call.method();
        let mut st = lock(&self.state);
        st.record(call, self.config.max_recorded_calls);
        st.expire(
            self.clock.now(),
            to_chrono(self.config.terminated_retention),
        );
        if method == Method::Create
            && let Some(budget) = st.create_budget.as_mut()
        {
            if *budget == 0 {
                return Err(CloudProviderError::other(
                    "create call budget exhausted (scripted)",
                ));
            }
            *budget -= 1;
        }
        match st.scripted_error(method) {
            Some(e) => Err(e),
            None => Ok(st),
        }
    }

    /// `pending`/`running` → `shutting-down`, then `terminated` after the delay (Node deleted).
    fn begin_termination(inner: &Arc<Inner>, instance_id: &str) {
        {
            let mut st = lock(&inner.state);
            let Some(instance) = st.instances.get_mut(instance_id) else {
                return;
            };
            if !matches!(
                instance.state,
                InstanceState::Pending | InstanceState::Running
            ) {
                return;
            }
            instance.state = InstanceState::ShuttingDown;
            instance.termination_started_at = Some(inner.clock.now());
            inner.emit(
                instance,
                InterruptionKind::StateChange(InstanceState::ShuttingDown),
            );
        }
        let inner = inner.clone();
        let id = instance_id.to_string();
        tokio::spawn(
            async move {
                tokio::time::sleep(inner.config.termination_delay).await;
                let node_to_delete = {
                    let mut st = lock(&inner.state);
                    let Some(instance) = st.instances.get_mut(&id) else {
                        return;
                    };
                    instance.state = InstanceState::Terminated;
                    let now = inner.clock.now();
                    instance.terminated_at = Some(now);
                    inner.emit(
                        instance,
                        InterruptionKind::StateChange(InstanceState::Terminated),
                    );
                    let node = instance
                        .node_registered
                        .then(|| instance.node_name.clone());
                    st.terminated.push_back((now, id.clone()));
                    node
                };
                let registrar = lock(&inner.registrar).clone();
                if let (Some(name), Some(registrar)) = (node_to_delete, registrar)
                    && let Err(e) = registrar.delete(&name).await
                {
                        tracing::error!(error = %e, node = %name, "deleting the node of a terminated instance failed");
                }
            }
            .instrument(tracing::info_span!("sim-ec2-terminate", instance_id)),
        );
    }

    /// `pending` → `running` after the launch delay; then, with a registrar, the Node after the
    /// boot delay.
    async fn run_instance(inner: Arc<Inner>, id: String) {
        tokio::time::sleep(inner.config.launch_delay).await;
        {
            let mut st = lock(&inner.state);
            match st.instances.get_mut(&id) {
                Some(i) if i.state == InstanceState::Pending => i.state = InstanceState::Running,
                _ => return,
            }
        }
        let Some(registrar) = lock(&inner.registrar).clone() else {
            return;
        };
        tokio::time::sleep(registrar.boot_delay).await;
        let node = {
            let mut st = lock(&inner.state);
            let Some(instance) = st.instances.get_mut(&id) else {
                return;
            };
            if instance.state != InstanceState::Running {
                return;
            }
            // Set before the API call so a termination racing it deletes the Node.
            instance.node_registered = true;
            node::node_object(instance, &inner.config.kubelet_version, inner.clock.now())
        };
        let name = node.metadata.name.clone().unwrap_or_default();
        if let Err(e) = registrar.create(&node).await {
            tracing::error!(error = %e, node = %name, "registering the node failed");
            return;
        }
        // Terminated while the create was in flight: the termination's delete may have run
        // before the Node existed.
        let terminated = lock(&inner.state)
            .instances
            .get(&id)
            .is_none_or(|i| i.state == InstanceState::Terminated);
        if terminated && let Err(e) = registrar.delete(&name).await {
            tracing::error!(error = %e, node = %name, "deleting the node of a terminated instance failed");
        }
    }

    /// Chooses an offering and launches, under the state lock.
    fn launch(&self, st: &mut State, claim: &NodeClaim) -> Result<SimInstance, CloudProviderError> {
        let now = self.clock.now();
        let name = claim.metadata.name.clone().unwrap_or_default();
        let reqs = node_claim_requirements(claim).map_err(|e| CloudProviderError::Create {
            condition_reason: "InvalidRequirements".to_string(),
            condition_message: format!("nodeclaim {name}: spec.requirements: {e}"),
        })?;
        let requests = parse_resource_list(&claim.spec.resources.requests).map_err(|e| {
            CloudProviderError::Create {
                condition_reason: "InvalidRequests".to_string(),
                condition_message: format!("nodeclaim {name}: spec.resources.requests: {e}"),
            }
        })?;

        // Resolved once: checking ~10k offerings through map lookups dominated launch time.
        let zone_req = reqs.get(labels::ZONE);
        let capacity_type_req = reqs.get(labels::CAPACITY_TYPE);
        let other_offering_keys = reqs
            .iter()
            .any(|(k, _)| k != labels::ZONE && k != labels::CAPACITY_TYPE && is_offering_key(k));
        let offering_allowed = |o: &karpenter_cloudprovider::Offering| {
            zone_req.is_none_or(|r| r.has(&o.zone))
                && capacity_type_req.is_none_or(|r| r.has(&o.capacity_type))
                && (!other_offering_keys || o.compatible(&reqs))
        };
        let mut compatible_types = 0usize;
        let mut fitting_types = 0usize;
        let mut candidates: Vec<Candidate<'_>> = Vec::new();
        for t in self.types.iter() {
            if !type_compatible(t, &reqs) {
                continue;
            }
            compatible_types += 1;
            let type_fits = t.allocatable().fits(&requests);
            let mut fits = false;
            for o in &t.offerings {
                let offering_fits = if o.capacity.is_none() && o.overhead.is_none() {
                    type_fits
                } else {
                    t.allocatable_for(o).fits(&requests)
                };
                if !offering_fits || !offering_allowed(o) {
                    continue;
                }
                fits = true;
                if o.available
                    && (st.unavailable.is_empty()
                        || !st.is_unavailable(&OfferingKey::new(
                            &t.name,
                            &o.zone,
                            &o.capacity_type,
                        )))
                {
                    candidates.push(Candidate {
                        instance_type: t,
                        offering: o,
                    });
                }
            }
            fitting_types += usize::from(fits);
        }
        let capacity_type = [labels::CAPACITY_TYPE_RESERVED, labels::CAPACITY_TYPE_SPOT]
            .into_iter()
            .find(|ct| candidates.iter().any(|c| c.offering.capacity_type == *ct))
            .unwrap_or(labels::CAPACITY_TYPE_ON_DEMAND);
        let mut chosen: Vec<&Candidate<'_>> = candidates
            .iter()
            .filter(|c| c.offering.capacity_type == capacity_type)
            .collect();
        if chosen.is_empty() {
            return Err(CloudProviderError::insufficient_capacity(
                format!(
                    "nodeclaim {name}: no available offering: {compatible_types} instance types match the requirements, {fitting_types} of them fit requests {requests} in an allowed zone and capacity type, none available now",
                ),
                vec![],
            ));
        }
        chosen.sort_by(|a, b| {
            a.offering
                .price
                .total_cmp(&b.offering.price)
                .then_with(|| a.instance_type.name.cmp(&b.instance_type.name))
                .then_with(|| a.offering.zone.cmp(&b.offering.zone))
        });

        let ttl = to_chrono(self.config.unavailable_offering_ttl);
        let mut tried = Vec::new();
        let mut launched = None;
        for c in chosen {
            let key = OfferingKey::new(&c.instance_type.name, &c.offering.zone, capacity_type);
            match st.capacity.get_mut(&key) {
                Some(0) => {
                    st.unavailable.insert(key.clone(), now + ttl);
                    tried.push(key);
                }
                Some(remaining) => {
                    *remaining -= 1;
                    launched = Some(c);
                    break;
                }
                None => {
                    launched = Some(c);
                    break;
                }
            }
        }
        let Some(c) = launched else {
            let names: Vec<String> = tried.iter().map(ToString::to_string).collect();
            return Err(CloudProviderError::insufficient_capacity(
                format!(
                    "nodeclaim {name}: InsufficientInstanceCapacity for every {capacity_type} offering tried: {}",
                    names.join(", ")
                ),
                tried,
            ));
        };

        let t = c.instance_type;
        let o = c.offering;
        let mut instance_id = format!("i-0{:016x}", st.rng.next());
        // Only adopted instances can collide (their IDs came from an earlier process).
        while st.instances.contains_key(&instance_id) {
            instance_id = format!("i-0{:016x}", st.rng.next());
        }
        let n = st.launched;
        st.launched = st.launched.wrapping_add(1);
        // 10.0.0.0/8 from 10.0.0.10 upwards: unique and stable for a seed.
        let ip_number = FIRST_PRIVATE_IP.wrapping_add(n);
        let octets = ip_number.to_be_bytes();
        let private_ip = format!("{}.{}.{}.{}", octets[0], octets[1], octets[2], octets[3]);
        let node_name = format!(
            "ip-{}-{}-{}-{}.{}.compute.internal",
            octets[0], octets[1], octets[2], octets[3], self.config.region
        );
        let zone_id = o
            .labels
            .get(labels::AWS_ZONE_ID)
            .cloned()
            .unwrap_or_default();
        let type_labels = t.requirements.single_valued_labels();
        let arch = type_labels
            .get(labels::ARCH)
            .cloned()
            .unwrap_or_else(|| "amd64".to_string());
        let os = type_labels
            .get(labels::OS)
            .cloned()
            .unwrap_or_else(|| "linux".to_string());
        let tenancy = match reqs.get(labels::AWS_INSTANCE_TENANCY) {
            Some(r) if !r.has("default") && r.has("dedicated") => "dedicated",
            _ => "default",
        };
        let mut resolved = claim.metadata.labels.clone().unwrap_or_default();
        resolved.extend(
            type_labels
                .into_iter()
                .filter(|(k, _)| !k.starts_with("karpenter.k8s.aws/capacity-reservation")),
        );
        resolved.insert(labels::ZONE.to_string(), o.zone.clone());
        if !zone_id.is_empty() {
            resolved.insert(labels::AWS_ZONE_ID.to_string(), zone_id.clone());
        }
        resolved.insert(labels::CAPACITY_TYPE.to_string(), capacity_type.to_string());
        resolved.insert(
            labels::AWS_INSTANCE_TENANCY.to_string(),
            tenancy.to_string(),
        );
        let node_class_ref = claim.spec.node_class_ref.clone();
        resolved.insert(node_class_ref.label_key(), node_class_ref.name.clone());

        let instance = SimInstance {
            provider_id: format!("aws:///{}/{}", o.zone, instance_id),
            instance_id: instance_id.clone(),
            instance_type: t.name.clone(),
            zone: o.zone.clone(),
            zone_id,
            capacity_type: capacity_type.to_string(),
            price: o.price,
            price_source: catalog::price_source(&self.catalog, &t.name, &o.zone, capacity_type),
            image_id: if arch == "arm64" {
                IMAGE_ID_ARM64
            } else {
                IMAGE_ID_AMD64
            }
            .to_string(),
            arch,
            os,
            private_ip,
            node_name,
            state: InstanceState::Pending,
            launch_time: now,
            termination_started_at: None,
            terminated_at: None,
            node_claim: name,
            node_pool: resolved.get(labels::NODEPOOL).cloned(),
            node_class_label_key: node_class_ref.label_key(),
            node_class_name: node_class_ref.name.clone(),
            node_class_ref,
            labels: resolved,
            taints: claim.spec.taints.clone(),
            startup_taints: claim.spec.startup_taints.clone(),
            capacity: t.capacity_for(o).clone(),
            allocatable: t.allocatable_for(o),
            interrupted: false,
            node_registered: false,
        };
        st.instances.insert(instance_id, instance.clone());
        Ok(instance)
    }

    fn instance_types(&self, st: &mut State) -> Arc<[InstanceType]> {
        let unavailable: Vec<OfferingKey> = st.unavailable.keys().cloned().collect();
        if unavailable.is_empty() {
            return self.types.clone();
        }
        if let Some((key, types)) = &st.types_cache
            && *key == unavailable
        {
            return types.clone();
        }
        let mut types: Vec<InstanceType> = self.types.to_vec();
        for t in &mut types {
            for o in &mut t.offerings {
                if o.available
                    && st.is_unavailable(&OfferingKey::new(&t.name, &o.zone, &o.capacity_type))
                {
                    o.available = false;
                }
            }
        }
        let types: Arc<[InstanceType]> = types.into();
        st.types_cache = Some((unavailable, types.clone()));
        types
    }
}

#[async_trait]
impl CloudProvider for SimulatedEc2 {
    async fn create(&self, node_claim: &NodeClaim) -> karpenter_cloudprovider::Result<NodeClaim> {
        let instance = {
            let mut st = self
                .inner
                .begin_call(RecordedCall::Create(Box::new(node_claim.clone())))?;
            self.inner.launch(&mut st, node_claim)?
        };
        tokio::spawn(
            Inner::run_instance(self.inner.clone(), instance.instance_id.clone()).instrument(
                tracing::info_span!("sim-ec2-instance", instance_id = %instance.instance_id),
            ),
        );
        let mut created = node_claim.clone();
        created.metadata.labels = Some(instance.labels.clone());
        let status = created.status.get_or_insert_with(Default::default);
        status.provider_id = Some(instance.provider_id.clone());
        status.image_id = Some(instance.image_id.clone());
        status.capacity = resource_list(&instance.capacity);
        status.allocatable = resource_list(&instance.allocatable);
        Ok(created)
    }

    async fn delete(&self, node_claim: &NodeClaim) -> karpenter_cloudprovider::Result<()> {
        let provider_id = node_claim
            .status
            .as_ref()
            .and_then(|s| s.provider_id.clone())
            .unwrap_or_default();
        let instance_id = {
            let st = self.inner.begin_call(RecordedCall::Delete {
                provider_id: provider_id.clone(),
            })?;
            let Some((_, id)) = parse_provider_id(&provider_id) else {
                return Err(CloudProviderError::not_found(format!(
                    "nodeclaim {} has no instance (providerID {provider_id:?})",
                    node_claim.metadata.name.as_deref().unwrap_or_default()
                )));
            };
            match st.instances.get(id) {
                Some(i) if i.state.is_live() => id.to_string(),
                _ => {
                    return Err(CloudProviderError::not_found(format!(
                        "instance {id} not found"
                    )));
                }
            }
        };
        Inner::begin_termination(&self.inner, &instance_id);
        Ok(())
    }

    async fn get(&self, provider_id: &str) -> karpenter_cloudprovider::Result<NodeClaim> {
        let st = self.inner.begin_call(RecordedCall::Get {
            provider_id: provider_id.to_string(),
        })?;
        let Some((_, id)) = parse_provider_id(provider_id) else {
            return Err(CloudProviderError::other(format!(
                "parsing providerID {provider_id:?}: expected aws:///<zone>/<instance-id>"
            )));
        };
        st.instances
            .get(id)
            .filter(|i| i.state.is_live())
            .map(SimInstance::to_node_claim)
            .ok_or_else(|| CloudProviderError::not_found(format!("instance {id} not found")))
    }

    async fn list(&self) -> karpenter_cloudprovider::Result<Vec<NodeClaim>> {
        let st = self.inner.begin_call(RecordedCall::List)?;
        Ok(st
            .instances
            .values()
            .filter(|i| i.state.is_live())
            .map(SimInstance::to_node_claim)
            .collect())
    }

    async fn get_instance_types(
        &self,
        node_pool: &NodePool,
    ) -> karpenter_cloudprovider::Result<Arc<[InstanceType]>> {
        let mut st = self.inner.begin_call(RecordedCall::GetInstanceTypes {
            node_pool: node_pool.metadata.name.clone().unwrap_or_default(),
        })?;
        Ok(self.inner.instance_types(&mut st))
    }

    async fn is_drifted(
        &self,
        node_claim: &NodeClaim,
    ) -> karpenter_cloudprovider::Result<Option<DriftReason>> {
        let provider_id = node_claim
            .status
            .as_ref()
            .and_then(|s| s.provider_id.clone())
            .unwrap_or_default();
        let st = self.inner.begin_call(RecordedCall::IsDrifted {
            provider_id: provider_id.clone(),
        })?;
        Ok(st.drift.get(&provider_id).cloned())
    }

    /// The AWS provider's policies.
    fn repair_policies(&self) -> Vec<RepairPolicy> {
        let min = |m: u64| Duration::from_secs(m * 60);
        vec![
            RepairPolicy::new("Ready", "False", min(30)),
            RepairPolicy::new("Ready", "Unknown", min(30)),
            RepairPolicy::new("AcceleratedHardwareReady", "False", min(10)),
            RepairPolicy::new("StorageReady", "False", min(30)),
            RepairPolicy::new("NetworkingReady", "False", min(30)),
            RepairPolicy::new("KernelReady", "False", min(30)),
            RepairPolicy::new("ContainerRuntimeReady", "False", min(30)),
        ]
    }

    fn name(&self) -> &'static str {
        PROVIDER_NAME
    }

    fn supported_node_classes(&self) -> Vec<NodeClassKind> {
        vec![NodeClassKind::EC2_NODE_CLASS]
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn provider_ids_parse_like_upstreams_pattern() {
        let table = [
            (
                "aws:///us-west-2a/i-0123456789abcdef0",
                Some(("us-west-2a", "i-0123456789abcdef0")),
            ),
            ("aws:///us-west-2a/", None),
            ("aws:///i-0123", None),
            ("kwok://node-1", None),
            ("aws://us-west-2a/i-1", None),
        ];
        for (input, expected) in table {
            assert_eq!(parse_provider_id(input), expected, "{input}");
        }
    }

    #[test]
    fn ids_are_reproducible_from_the_seed_and_look_like_ec2s() {
        let mut a = SplitMix64(7);
        let mut b = SplitMix64(7);
        let id = format!("i-0{:016x}", a.next());
        assert_eq!(id, format!("i-0{:016x}", b.next()));
        assert_eq!(id.len(), 19);
        assert!(id[2..].chars().all(|c| c.is_ascii_hexdigit()));
        assert_ne!(a.next(), SplitMix64(8).next());
    }
}
