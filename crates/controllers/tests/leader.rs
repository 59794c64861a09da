//! Leader election against the embedded API server: one leader among candidates, takeover after
//! a crash only once the lease expires, and immediate takeover after a graceful release.

#![allow(clippy::unwrap_used, clippy::expect_used)] // test fixtures: a failure should panic loudly

use std::sync::Arc;
use std::time::Duration;

use k8s_openapi::api::coordination::v1::Lease;
use karpenter_cloudprovider::SystemClock;
use karpenter_controllers::leader::{ElectionConfig, LeaderElection, LeaderElector};
use karpenter_sim::apiserver::{ApiServer, ApiServerConfig, ApiServerHandle};
use kube::{Api, Client};
use prometheus::IntGauge;

const NS: &str = "kube-system";
const LEASE: &str = "karpenter-leader-election";

async fn server() -> (ApiServerHandle, Client) {
    let server = ApiServer::start(ApiServerConfig::default()).await.unwrap();
    let config = kube::Config::new(server.url().parse().unwrap());
    let client = Client::try_from(config).unwrap();
    (server, client)
}

fn config(identity: &str, lease_secs: u64, renew_ms: u64) -> ElectionConfig {
    ElectionConfig {
        lease_duration: Duration::from_secs(lease_secs),
        renew_deadline: Duration::from_millis(renew_ms),
        retry_period: Duration::from_millis(100),
        ..ElectionConfig::new(LEASE, NS, identity)
    }
}

fn candidate(client: &Client, config: ElectionConfig) -> (LeaderElection, IntGauge) {
    let gauge = IntGauge::new("leader_election_master_status", "test").unwrap();
    let elector = LeaderElector::new(
        client.clone(),
        config,
        Arc::new(SystemClock),
        Some(gauge.clone()),
    )
    .unwrap();
    (elector.spawn(), gauge)
}

/// Polls `check` until true or 30 s pass (a deadline against hangs, not a timing assertion).
async fn eventually(what: &str, mut check: impl FnMut() -> bool) {
    let deadline = tokio::time::Instant::now() + Duration::from_secs(30);
    while !check() {
        assert!(
            tokio::time::Instant::now() < deadline,
            "timed out waiting for: {what}"
        );
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
}

async fn lease(client: &Client) -> Lease {
    Api::<Lease>::namespaced(client.clone(), NS)
        .get(LEASE)
        .await
        .unwrap()
}

fn holder(lease: &Lease) -> Option<String> {
    lease.spec.as_ref().and_then(|s| s.holder_identity.clone())
}

/// Makes `holder` the Lease's holder with a read-modify-write, retrying while a renewal by
/// the current leader wins the race (409 Conflict).
async fn take_lease(api: &Api<Lease>, holder: &str) {
    for _ in 0..50 {
        let mut l = api.get(LEASE).await.unwrap();
        if let Some(spec) = l.spec.as_mut() {
            spec.holder_identity = Some(holder.into());
        }
        match api.replace(LEASE, &Default::default(), &l).await {
            Ok(_) => return,
            Err(kube::Error::Api(s)) if s.code == 409 => continue,
            Err(e) => panic!("replacing the Lease: {e}"),
        }
    }
    panic!("the Lease kept changing under 50 writes");
}

fn transitions(lease: &Lease) -> i32 {
    lease
        .spec
        .as_ref()
        .and_then(|s| s.lease_transitions)
        .unwrap_or(-1)
}

#[tokio::test]
async fn two_candidates_elect_exactly_one_leader() {
    let (server, client) = server().await;
    let (a, gauge_a) = candidate(&client, config("a", 10, 7_000));
    let (b, gauge_b) = candidate(&client, config("b", 10, 7_000));
    let (la, lb) = (a.is_leader(), b.is_leader());
    eventually("a leader", || *la.borrow() || *lb.borrow()).await;
    // Over many retry periods, never both, and the leader stays the Lease holder.
    for _ in 0..20 {
        let (is_a, is_b) = (*la.borrow(), *lb.borrow());
        assert!(is_a != is_b, "exactly one leader (a={is_a}, b={is_b})");
        assert_eq!(gauge_a.get() + gauge_b.get(), 1);
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    let leader = if *la.borrow() { "a" } else { "b" };
    let l = lease(&client).await;
    assert_eq!(holder(&l).as_deref(), Some(leader));
    assert_eq!(transitions(&l), 0, "creating the Lease is not a transition");
    let spec = l.spec.unwrap();
    assert_eq!(spec.lease_duration_seconds, Some(10));
    assert!(spec.acquire_time.is_some() && spec.renew_time.is_some());
    a.shutdown().await;
    b.shutdown().await;
    server.shutdown().await;
}

#[tokio::test]
async fn crashed_leader_is_replaced_only_after_the_lease_expires() {
    let (server, client) = server().await;
    let (first, _) = candidate(&client, config("first", 6, 4_000));
    let first_leads = first.is_leader();
    eventually("first leads", || *first_leads.borrow()).await;
    let (second, second_gauge) = candidate(&client, config("second", 6, 4_000));
    let second_leads = second.is_leader();
    // Let the follower observe the renewing leader for a while.
    tokio::time::sleep(Duration::from_millis(500)).await;
    assert!(!*second_leads.borrow(), "a live leader is never displaced");
    // Crash: stop renewing without releasing.
    drop(first);
    // Well inside the 6 s lease the follower must still wait (slowness only delays takeover).
    tokio::time::sleep(Duration::from_millis(1_000)).await;
    assert!(
        !*second_leads.borrow(),
        "took over before the lease expired"
    );
    assert_eq!(holder(&lease(&client).await).as_deref(), Some("first"));
    eventually("second takes over", || *second_leads.borrow()).await;
    let l = lease(&client).await;
    assert_eq!(holder(&l).as_deref(), Some("second"));
    assert_eq!(transitions(&l), 1);
    assert_eq!(second_gauge.get(), 1);
    second.shutdown().await;
    server.shutdown().await;
}

#[tokio::test]
async fn graceful_release_hands_over_immediately() {
    let (server, client) = server().await;
    // A 60 s lease: without the release the follower could not take over within the 30 s
    // deadline of `eventually`, so passing proves the handover did not wait for expiry.
    let (first, first_gauge) = candidate(&client, config("first", 60, 40_000));
    let first_leads = first.is_leader();
    eventually("first leads", || *first_leads.borrow()).await;
    let (second, _) = candidate(&client, config("second", 60, 40_000));
    let second_leads = second.is_leader();
    tokio::time::sleep(Duration::from_millis(300)).await;
    assert!(!*second_leads.borrow());
    first.shutdown().await;
    assert_eq!(first_gauge.get(), 0);
    eventually("second takes over after release", || *second_leads.borrow()).await;
    let l = lease(&client).await;
    assert_eq!(holder(&l).as_deref(), Some("second"));
    assert_eq!(transitions(&l), 1);
    assert_eq!(l.spec.unwrap().lease_duration_seconds, Some(60));
    second.shutdown().await;
    // The last leader's release leaves the Lease free.
    assert_eq!(holder(&lease(&client).await), None);
    server.shutdown().await;
}

#[tokio::test]
async fn leader_that_loses_the_lease_stops_leading() {
    let (server, client) = server().await;
    let (me, gauge) = candidate(&client, config("me", 60, 40_000));
    let leads = me.is_leader();
    eventually("leads", || *leads.borrow()).await;
    // Someone else forcibly takes the Lease (as an operator might with kubectl). The leader
    // renews every retry period, so a renewal can land between our read and our write:
    // retry on a write conflict, as kubectl edit would.
    let api = Api::<Lease>::namespaced(client.clone(), NS);
    take_lease(&api, "intruder").await;
    eventually("stops leading", || !*leads.borrow()).await;
    assert_eq!(gauge.get(), 0);
    me.shutdown().await;
    assert_eq!(
        holder(&lease(&client).await).as_deref(),
        Some("intruder"),
        "a non-holder's shutdown does not touch the Lease"
    );
    server.shutdown().await;
}
