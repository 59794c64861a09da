//! The simulated EC2 as a CloudProvider: offering choice, insufficient capacity and the ICE
//! cache, termination, scripting, interruptions and the metrics decorator.
#![allow(clippy::unwrap_used, clippy::expect_used)] // helpers of a test binary may panic

use std::sync::{Arc, OnceLock};
use std::time::Duration;

use k8s_openapi::api::core::v1::Taint;
use karpenter_apis::common::{
    NodeClassReference, NodeSelectorOperator, NodeSelectorRequirementWithMinValues,
};
use karpenter_apis::labels;
use karpenter_apis::nodeclaim::{NodeClaim, NodeClaimSpec};
use karpenter_apis::nodepool::NodePool;
use karpenter_catalog::Catalog;
use karpenter_cloudprovider::metrics::{ERRORS_TOTAL, read_sample};
use karpenter_cloudprovider::{
    CloudProvider, CloudProviderError, CloudProviderMetrics, ManualClock, Method,
    MetricsCloudProvider, OfferingKey, SystemClock,
};
use karpenter_sim::ec2::{
    InstanceState, InterruptionKind, RecordedCall, SimEc2Config, SimEc2Error, SimulatedEc2,
};

const A: &str = "us-west-2a";
const B: &str = "us-west-2b";
const C: &str = "us-west-2c";
const SPOT: &str = "spot";
const OD: &str = "on-demand";

// ---- builders ------------------------------------------------------------------------------

struct Claim(NodeClaim);

fn claim(name: &str) -> Claim {
    let mut c = NodeClaim::new(
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
    );
    c.metadata.labels = Some([(labels::NODEPOOL.to_string(), "default".to_string())].into());
    Claim(c)
}

impl Claim {
    fn req(mut self, key: &str, op: NodeSelectorOperator, values: &[&str]) -> Self {
        self.0
            .spec
            .requirements
            .push(NodeSelectorRequirementWithMinValues::new(
                key,
                op,
                values.iter().copied(),
            ));
        self
    }
    fn types(self, types: &[&str]) -> Self {
        self.req(labels::INSTANCE_TYPE, NodeSelectorOperator::In, types)
    }
    fn zones(self, zones: &[&str]) -> Self {
        self.req(labels::ZONE, NodeSelectorOperator::In, zones)
    }
    fn capacity_types(self, cts: &[&str]) -> Self {
        self.req(labels::CAPACITY_TYPE, NodeSelectorOperator::In, cts)
    }
    fn request(mut self, name: &str, quantity: &str) -> Self {
        self.0.spec.resources.requests.insert(
            name.to_string(),
            k8s_openapi::apimachinery::pkg::api::resource::Quantity(quantity.to_string()),
        );
        self
    }
    fn taint(mut self, key: &str, effect: &str) -> Self {
        self.0.spec.taints.push(Taint {
            key: key.into(),
            effect: effect.into(),
            value: None,
            time_added: None,
        });
        self
    }
    fn build(self) -> NodeClaim {
        self.0
    }
}

/// The embedded catalog, loaded once per test binary (slow in debug builds).
fn catalog() -> Catalog {
    static CATALOG: OnceLock<Catalog> = OnceLock::new();
    CATALOG.get_or_init(|| Catalog::embedded().unwrap()).clone()
}

fn ec2_with(config: SimEc2Config) -> SimulatedEc2 {
    SimulatedEc2::from_catalog(config, Arc::new(SystemClock), catalog()).unwrap()
}

fn ec2() -> SimulatedEc2 {
    ec2_with(SimEc2Config::default())
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

/// The cheapest available catalog offering among `types` in `zones` × `capacity_types`
/// (read straight from the catalog, as an oracle independent of the launch code).
fn cheapest(
    types: &[&str],
    zones: &[&str],
    capacity_types: &[&str],
) -> (String, String, String, f64) {
    let catalog = catalog();
    let mut best: Option<(String, String, String, f64)> = None;
    for t in types {
        for o in &catalog.get(t).unwrap().offerings {
            if o.available
                && zones.contains(&o.zone.as_str())
                && capacity_types.contains(&o.capacity_type.as_str())
                && best.as_ref().is_none_or(|b| o.price < b.3)
            {
                best = Some((
                    t.to_string(),
                    o.zone.clone(),
                    o.capacity_type.clone(),
                    o.price,
                ));
            }
        }
    }
    best.unwrap()
}

fn label<'a>(c: &'a NodeClaim, key: &str) -> Option<&'a str> {
    c.metadata.labels.as_ref()?.get(key).map(String::as_str)
}

fn provider_id(c: &NodeClaim) -> String {
    c.status.as_ref().unwrap().provider_id.clone().unwrap()
}

/// Launches `claim` and checks where it landed.
async fn check(
    ec2: &SimulatedEc2,
    claim: NodeClaim,
    instance_type: &str,
    zone: &str,
    capacity_type: &str,
) -> NodeClaim {
    let created = ec2.create(&claim).await.unwrap();
    assert_eq!(
        (
            label(&created, labels::INSTANCE_TYPE),
            label(&created, labels::ZONE),
            label(&created, labels::CAPACITY_TYPE)
        ),
        (Some(instance_type), Some(zone), Some(capacity_type)),
        "claim {:?}",
        claim.metadata.name
    );
    created
}

// ---- offering choice -----------------------------------------------------------------------

const GENERAL: &[&str] = &[
    "m5.large",
    "m5.xlarge",
    "c5.large",
    "c6g.large",
    "m6i.large",
];
const ALL_ZONES: &[&str] = &[A, B, C, "us-west-2d"];

#[tokio::test]
async fn launch_picks_the_cheapest_spot_offering_when_spot_is_allowed() {
    let ec2 = ec2();
    let (t, z, ct, price) = cheapest(GENERAL, ALL_ZONES, &[SPOT]);
    let created = check(
        &ec2,
        claim("a")
            .types(GENERAL)
            .capacity_types(&[SPOT, OD])
            .build(),
        &t,
        &z,
        &ct,
    )
    .await;
    assert_eq!(ec2.instances()[0].price, price);
    // Spot wins over on-demand even when no capacity-type requirement is given.
    check(&ec2, claim("b").types(GENERAL).build(), &t, &z, SPOT).await;
    assert_eq!(created.metadata.name.as_deref(), Some("a"));
}

#[tokio::test]
async fn launch_picks_on_demand_when_spot_is_not_allowed() {
    let ec2 = ec2();
    let (t, z, _, price) = cheapest(GENERAL, ALL_ZONES, &[OD]);
    check(
        &ec2,
        claim("a").types(GENERAL).capacity_types(&[OD]).build(),
        &t,
        &z,
        OD,
    )
    .await;
    let instance = &ec2.instances()[0];
    assert_eq!(instance.price, price);
    assert_eq!(
        instance.price_source,
        Some(karpenter_catalog::PriceSource::AwsOnDemandList)
    );
}

#[tokio::test]
async fn launch_honours_zone_restrictions_and_requests() {
    let ec2 = ec2();
    let (t, _, _, _) = cheapest(GENERAL, &[C], &[SPOT]);
    check(
        &ec2,
        claim("zone").types(GENERAL).zones(&[C]).build(),
        &t,
        C,
        SPOT,
    )
    .await;
    // m5.large has 2 vCPUs: 3 CPUs need the xlarge.
    let (_, z, _, _) = cheapest(&["m5.xlarge"], &[A, B], &[OD]);
    check(
        &ec2,
        claim("fit")
            .types(&["m5.large", "m5.xlarge"])
            .zones(&[A, B])
            .capacity_types(&[OD])
            .request("cpu", "3")
            .build(),
        "m5.xlarge",
        &z,
        OD,
    )
    .await;
    // Requirements on instance-type labels narrow the choice like any other key.
    let created = ec2
        .create(
            &claim("arm")
                .types(GENERAL)
                .req(labels::ARCH, NodeSelectorOperator::In, &["arm64"])
                .build(),
        )
        .await
        .unwrap();
    assert_eq!(label(&created, labels::INSTANCE_TYPE), Some("c6g.large"));
    assert_eq!(label(&created, labels::ARCH), Some("arm64"));
}

#[tokio::test]
async fn requests_that_fit_no_type_are_insufficient_capacity() {
    let ec2 = ec2();
    let err = ec2
        .create(&claim("huge").types(GENERAL).request("cpu", "1000").build())
        .await
        .unwrap_err();
    match &err {
        CloudProviderError::InsufficientCapacity { message, offerings } => {
            assert!(offerings.is_empty());
            assert!(message.contains("5 instance types match"), "{message}");
            assert!(message.contains("0 of them fit"), "{message}");
        }
        other => panic!("expected insufficient capacity, got {other:?}"),
    }
    assert_eq!(err.category(), "InsufficientCapacityError");
    let err = ec2
        .create(
            &claim("reserved")
                .types(GENERAL)
                .capacity_types(&["reserved"])
                .build(),
        )
        .await
        .unwrap_err();
    assert!(err.is_insufficient_capacity(), "{err:?}");
    assert!(ec2.instances().is_empty());
}

#[tokio::test]
async fn created_node_claims_carry_resolved_labels_and_status() {
    let ec2 = ec2();
    let created = check(
        &ec2,
        claim("a")
            .types(&["m5.large"])
            .zones(&[B])
            .capacity_types(&[OD])
            .build(),
        "m5.large",
        B,
        OD,
    )
    .await;
    let catalog = catalog();
    let m5 = catalog.get("m5.large").unwrap();
    for (k, v) in &m5.labels {
        assert_eq!(label(&created, k), Some(v.as_str()), "{k}");
    }
    let zone_id = &catalog.zones.iter().find(|z| z.name == B).unwrap().zone_id;
    assert_eq!(label(&created, labels::AWS_ZONE_ID), Some(zone_id.as_str()));
    assert_eq!(label(&created, labels::NODEPOOL), Some("default"));
    assert_eq!(
        label(&created, labels::AWS_INSTANCE_TENANCY),
        Some("default")
    );
    assert_eq!(label(&created, labels::AWS_EC2NODECLASS), Some("default"));
    let status = created.status.as_ref().unwrap();
    let pid = status.provider_id.as_deref().unwrap();
    let id = pid.strip_prefix(&format!("aws:///{B}/")).unwrap();
    assert!(id.starts_with("i-") && id.len() == 19, "{id}");
    assert!(status.image_id.as_deref().unwrap().starts_with("ami-"));
    assert_eq!(status.capacity["cpu"].0, "2");
    assert_eq!(status.capacity["pods"].0, m5.capacity["pods"].to_string());
    assert_eq!(status.allocatable["cpu"].0, "1930m");

    // get and list answer the same view.
    let got = ec2.get(pid).await.unwrap();
    assert_eq!(got.metadata.labels, created.metadata.labels);
    assert_eq!(got.status.as_ref().unwrap().capacity, status.capacity);
    assert_eq!(ec2.list().await.unwrap().len(), 1);
    assert!(
        ec2.get(&format!("aws:///{B}/i-00000000000000000"))
            .await
            .unwrap_err()
            .is_not_found()
    );
    assert!(
        !ec2.get("not-a-provider-id")
            .await
            .unwrap_err()
            .is_not_found()
    );
}

#[tokio::test]
async fn instance_ids_are_reproducible_from_the_seed() {
    let ids = |seed: u64| async move {
        let ec2 = ec2_with(SimEc2Config {
            seed,
            ..Default::default()
        });
        let mut out = vec![];
        for n in 0..3 {
            out.push(provider_id(
                &ec2.create(&claim(&format!("c{n}")).types(GENERAL).build())
                    .await
                    .unwrap(),
            ));
        }
        out
    };
    assert_eq!(ids(7).await, ids(7).await);
    assert_ne!(ids(7).await, ids(8).await);
}

// ---- insufficient capacity and the ICE cache -----------------------------------------------

fn offering_available(types: &[karpenter_cloudprovider::InstanceType], key: &OfferingKey) -> bool {
    types
        .iter()
        .find(|t| t.name == key.instance_type)
        .unwrap()
        .offerings
        .iter()
        .find(|o| o.zone == key.zone && o.capacity_type == key.capacity_type)
        .unwrap()
        .available
}

#[tokio::test(start_paused = true)]
async fn exhausted_capacity_is_ice_then_the_offering_is_unavailable_for_three_minutes() {
    let clock = Arc::new(ManualClock::at_epoch_2026());
    let key = OfferingKey::new("m5.large", A, SPOT);
    let ec2 = SimulatedEc2::from_catalog(
        SimEc2Config {
            offering_capacity: [(key.clone(), 1)].into(),
            ..Default::default()
        },
        clock.clone(),
        catalog(),
    )
    .unwrap();
    let only_a = || {
        claim("a")
            .types(&["m5.large"])
            .zones(&[A])
            .capacity_types(&[SPOT])
            .build()
    };

    check(&ec2, only_a(), "m5.large", A, SPOT).await;
    let err = ec2.create(&only_a()).await.unwrap_err();
    assert_eq!(
        err,
        CloudProviderError::InsufficientCapacity {
            message: "nodeclaim a: InsufficientInstanceCapacity for every spot offering tried: spot:m5.large:us-west-2a".into(),
            offerings: vec![key.clone()],
        }
    );
    let types = ec2.get_instance_types(&node_pool()).await.unwrap();
    assert!(!offering_available(&types, &key));
    assert!(offering_available(
        &types,
        &OfferingKey::new("m5.large", B, SPOT)
    ));

    // The next launch avoids the exhausted offering.
    check(
        &ec2,
        claim("b")
            .types(&["m5.large"])
            .zones(&[A, B])
            .capacity_types(&[SPOT])
            .build(),
        "m5.large",
        B,
        SPOT,
    )
    .await;
    // With only that offering allowed, nothing is eligible while it is cached as unavailable.
    let err = ec2.create(&only_a()).await.unwrap_err();
    assert_eq!(err.category(), "InsufficientCapacityError");
    assert!(
        matches!(&err, CloudProviderError::InsufficientCapacity { offerings, .. } if offerings.is_empty())
    );

    clock.advance(Duration::from_secs(179));
    assert!(!offering_available(
        &ec2.get_instance_types(&node_pool()).await.unwrap(),
        &key
    ));
    clock.advance(Duration::from_secs(1));
    assert!(offering_available(
        &ec2.get_instance_types(&node_pool()).await.unwrap(),
        &key
    ));

    // Capacity came back: the launch succeeds again.
    ec2.set_offering_capacity(key.clone(), Some(1));
    check(&ec2, only_a(), "m5.large", A, SPOT).await;
}

#[tokio::test]
async fn a_launch_falls_through_exhausted_offerings_like_a_fleet() {
    let (t, z, _, _) = cheapest(GENERAL, ALL_ZONES, &[SPOT]);
    let exhausted = OfferingKey::new(&t, &z, SPOT);
    let ec2 = ec2();
    ec2.set_offering_capacity(exhausted.clone(), Some(0));
    let created = ec2
        .create(&claim("a").types(GENERAL).build())
        .await
        .unwrap();
    assert_eq!(label(&created, labels::CAPACITY_TYPE), Some(SPOT));
    assert_ne!(
        (
            label(&created, labels::INSTANCE_TYPE),
            label(&created, labels::ZONE)
        ),
        (Some(t.as_str()), Some(z.as_str()))
    );
    let types = ec2.get_instance_types(&node_pool()).await.unwrap();
    assert!(!offering_available(&types, &exhausted));
    // All types are returned, also those without available offerings.
    assert_eq!(types.len(), ec2.catalog().instance_types.len());
}

#[tokio::test]
async fn bad_config_is_rejected_naming_the_field() {
    let err = SimulatedEc2::new(
        SimEc2Config {
            region: "eu-west-1".into(),
            ..Default::default()
        },
        Arc::new(SystemClock),
    )
    .unwrap_err();
    assert!(
        matches!(
            err,
            SimEc2Error::InvalidConfig {
                field: "region",
                ..
            }
        ),
        "{err}"
    );
    let err = SimulatedEc2::from_catalog(
        SimEc2Config {
            offering_capacity: [(OfferingKey::new("m99.huge", A, SPOT), 1)].into(),
            ..Default::default()
        },
        Arc::new(SystemClock),
        catalog(),
    )
    .unwrap_err();
    assert_eq!(err.category(), "invalid_config");
    assert!(err.to_string().contains("m99.huge"));
}

// ---- termination ---------------------------------------------------------------------------

#[tokio::test(start_paused = true)]
async fn delete_terminates_and_then_answers_not_found() {
    let ec2 = ec2_with(SimEc2Config {
        launch_delay: Duration::from_secs(5),
        termination_delay: Duration::from_secs(30),
        ..Default::default()
    });
    let created = ec2
        .create(&claim("a").types(GENERAL).build())
        .await
        .unwrap();
    let pid = provider_id(&created);
    assert_eq!(ec2.instances()[0].state, InstanceState::Pending);
    tokio::time::sleep(Duration::from_secs(6)).await;
    assert_eq!(ec2.instances()[0].state, InstanceState::Running);

    ec2.delete(&created).await.unwrap();
    assert_eq!(ec2.instances()[0].state, InstanceState::ShuttingDown);
    // Still visible while shutting down, marked as deleting; deleting again is fine.
    assert!(
        ec2.get(&pid)
            .await
            .unwrap()
            .metadata
            .deletion_timestamp
            .is_some()
    );
    ec2.delete(&created).await.unwrap();

    tokio::time::sleep(Duration::from_secs(31)).await;
    assert_eq!(ec2.instances()[0].state, InstanceState::Terminated);
    assert!(ec2.delete(&created).await.unwrap_err().is_not_found());
    assert!(ec2.get(&pid).await.unwrap_err().is_not_found());
    assert!(ec2.list().await.unwrap().is_empty());
    // A NodeClaim that never launched has no instance.
    assert!(
        ec2.delete(&claim("never").build())
            .await
            .unwrap_err()
            .is_not_found()
    );
}

#[tokio::test(start_paused = true)]
async fn terminated_instances_are_forgotten_after_the_retention() {
    let clock = Arc::new(ManualClock::at_epoch_2026());
    let ec2 =
        SimulatedEc2::from_catalog(SimEc2Config::default(), clock.clone(), catalog()).unwrap();
    let first = ec2
        .create(&claim("a").types(GENERAL).build())
        .await
        .unwrap();
    ec2.create(&claim("b").types(GENERAL).build())
        .await
        .unwrap();
    ec2.delete(&first).await.unwrap();
    tokio::time::sleep(ec2.config().termination_delay + Duration::from_secs(1)).await;
    let states = |ec2: &SimulatedEc2| ec2.instances().iter().map(|i| i.state).collect::<Vec<_>>();
    assert_eq!(states(&ec2).len(), 2);
    clock.advance(ec2.config().terminated_retention - Duration::from_secs(1));
    ec2.list().await.unwrap();
    assert!(states(&ec2).contains(&InstanceState::Terminated));
    clock.advance(Duration::from_secs(1));
    ec2.list().await.unwrap();
    assert_eq!(states(&ec2), vec![InstanceState::Running]);
}

#[tokio::test(start_paused = true)]
async fn an_instance_deleted_while_pending_never_runs() {
    let ec2 = ec2();
    let created = ec2
        .create(&claim("a").types(GENERAL).build())
        .await
        .unwrap();
    ec2.delete(&created).await.unwrap();
    tokio::time::sleep(ec2.config().launch_delay + ec2.config().termination_delay).await;
    tokio::time::sleep(Duration::from_secs(1)).await;
    assert_eq!(ec2.instances()[0].state, InstanceState::Terminated);
}

// ---- scripting -----------------------------------------------------------------------------

#[tokio::test]
async fn scripted_errors_and_the_create_budget() {
    let ec2 = ec2();
    ec2.next_error(
        Method::Create,
        CloudProviderError::NodeClassNotReady {
            message: "scripted".into(),
        },
    );
    ec2.next_error(Method::List, CloudProviderError::other("throttled"));
    let c = claim("a").types(GENERAL).build();
    assert_eq!(
        ec2.create(&c).await.unwrap_err().category(),
        "NodeClassNotReadyError"
    );
    ec2.create(&c).await.unwrap();
    assert_eq!(
        ec2.list().await.unwrap_err(),
        CloudProviderError::other("throttled")
    );
    assert_eq!(ec2.list().await.unwrap().len(), 1);

    ec2.set_create_budget(Some(1));
    ec2.create(&c).await.unwrap();
    let err = ec2.create(&c).await.unwrap_err();
    assert!(err.to_string().contains("budget"), "{err}");
    assert_eq!(ec2.instances().len(), 2);
    ec2.set_create_budget(None);
    ec2.create(&c).await.unwrap();

    let methods: Vec<Method> = ec2.calls().iter().map(RecordedCall::method).collect();
    use Method::*;
    assert_eq!(
        methods,
        vec![Create, Create, List, List, Create, Create, Create]
    );
    match &ec2.calls()[0] {
        RecordedCall::Create(recorded) => assert_eq!(**recorded, c),
        other => panic!("{other:?}"),
    }
    ec2.clear_calls();
    assert!(ec2.calls().is_empty());
}

#[tokio::test]
async fn drift_and_static_answers() {
    let ec2 = ec2();
    let created = ec2
        .create(&claim("a").types(GENERAL).build())
        .await
        .unwrap();
    assert_eq!(ec2.is_drifted(&created).await.unwrap(), None);
    let reason = karpenter_cloudprovider::DriftReason("AMIDrift".into());
    ec2.set_drifted(&provider_id(&created), Some(reason.clone()));
    assert_eq!(ec2.is_drifted(&created).await.unwrap(), Some(reason));
    assert_eq!(ec2.name(), "aws");
    assert_eq!(ec2.supported_node_classes()[0].kind, "EC2NodeClass");
    assert!(
        ec2.repair_policies()
            .iter()
            .any(|p| p.condition_type == "Ready" && p.condition_status == "Unknown")
    );
}

// ---- interruptions -------------------------------------------------------------------------

#[tokio::test(start_paused = true)]
async fn spot_interruption_warns_then_reclaims_after_two_minutes() {
    let ec2 = ec2();
    let mut events = ec2.interruptions();
    let created = ec2
        .create(&claim("a").types(GENERAL).capacity_types(&[SPOT]).build())
        .await
        .unwrap();
    let instance = ec2.instances().remove(0);
    ec2.interrupt_spot(&instance.instance_id).unwrap();

    let warning = events.recv().await.unwrap();
    assert_eq!(warning.kind, InterruptionKind::SpotInterruption);
    assert_eq!(warning.instance_id, instance.instance_id);
    assert_eq!(
        warning.to_eventbridge("us-west-2", "1")["detail-type"],
        "EC2 Spot Instance Interruption Warning"
    );
    assert!(ec2.instances()[0].interrupted);
    // The interrupted spot offering is unavailable, as the AWS provider marks it.
    let key = OfferingKey::new(&instance.instance_type, &instance.zone, SPOT);
    assert!(!offering_available(
        &ec2.get_instance_types(&node_pool()).await.unwrap(),
        &key
    ));

    tokio::time::sleep(Duration::from_secs(119)).await;
    assert!(ec2.get(&provider_id(&created)).await.is_ok());
    let shutting = events.recv().await.unwrap();
    assert_eq!(
        shutting.kind,
        InterruptionKind::StateChange(InstanceState::ShuttingDown)
    );
    let terminated = events.recv().await.unwrap();
    assert_eq!(
        terminated.kind,
        InterruptionKind::StateChange(InstanceState::Terminated)
    );
    assert!(
        ec2.get(&provider_id(&created))
            .await
            .unwrap_err()
            .is_not_found()
    );
}

#[tokio::test(start_paused = true)]
async fn other_interruption_kinds_and_external_termination() {
    let ec2 = ec2();
    let mut events = ec2.interruptions();
    ec2.create(&claim("a").types(GENERAL).capacity_types(&[OD]).build())
        .await
        .unwrap();
    let id = ec2.instances()[0].instance_id.clone();
    assert!(matches!(
        ec2.interrupt_spot(&id),
        Err(SimEc2Error::NotSpot { .. })
    ));
    ec2.recommend_rebalance(&id).unwrap();
    ec2.schedule_maintenance(&id).unwrap();
    ec2.terminate_instance(&id).unwrap();
    let kinds: Vec<InterruptionKind> = vec![
        events.recv().await.unwrap().kind,
        events.recv().await.unwrap().kind,
        events.recv().await.unwrap().kind,
        events.recv().await.unwrap().kind,
    ];
    assert_eq!(
        kinds,
        vec![
            InterruptionKind::RebalanceRecommendation,
            InterruptionKind::ScheduledChange,
            InterruptionKind::StateChange(InstanceState::ShuttingDown),
            InterruptionKind::StateChange(InstanceState::Terminated),
        ]
    );
    assert!(matches!(
        ec2.terminate_instance(&id),
        Err(SimEc2Error::UnknownInstance { .. })
    ));
    assert!(matches!(
        ec2.interrupt_spot("i-nope"),
        Err(SimEc2Error::UnknownInstance { .. })
    ));
}

// ---- metrics decorator ---------------------------------------------------------------------

#[tokio::test]
async fn the_metrics_decorator_counts_an_ice_under_its_category() {
    let registry = prometheus::Registry::new();
    let metrics = CloudProviderMetrics::register(&registry).unwrap();
    let ec2 = Arc::new(ec2());
    ec2.set_offering_capacity(OfferingKey::new("m5.large", A, SPOT), Some(0));
    let provisioner = MetricsCloudProvider::new(ec2.clone(), &metrics, "provisioner");
    let c = claim("a")
        .types(&["m5.large"])
        .zones(&[A])
        .capacity_types(&[SPOT])
        .build();
    assert!(
        provisioner
            .create(&c)
            .await
            .unwrap_err()
            .is_insufficient_capacity()
    );
    let ok = claim("b").types(&["m5.large"]).zones(&[B]).build();
    provisioner.create(&ok).await.unwrap();
    let sample = |error: &str| {
        read_sample(
            &registry,
            ERRORS_TOTAL,
            &[
                ("controller", "provisioner"),
                ("method", "Create"),
                ("provider", "aws"),
                ("error", error),
            ],
        )
    };
    assert_eq!(sample("InsufficientCapacityError"), Some(1.0));
    assert_eq!(sample(""), None);
    assert_eq!(
        read_sample(
            &registry,
            "karpenter_cloudprovider_duration_seconds_count",
            &[
                ("controller", "provisioner"),
                ("method", "Create"),
                ("provider", "aws")
            ],
        ),
        Some(2.0)
    );
    assert_eq!(ec2.calls().len(), 2);
}

#[tokio::test]
async fn taints_are_kept_on_the_created_claim_and_instance() {
    let ec2 = ec2();
    let created = ec2
        .create(
            &claim("a")
                .types(GENERAL)
                .taint("dedicated", "NoSchedule")
                .build(),
        )
        .await
        .unwrap();
    assert_eq!(created.spec.taints.len(), 1);
    assert_eq!(ec2.instances()[0].taints[0].key, "dedicated");
}
