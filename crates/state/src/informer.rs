//! Feeds a [`ClusterState`] from the API server: one kube-runtime watcher per kind, each event
//! converted to its compact view and applied. Watchers relist after disconnects or `410 Gone`;
//! a relist removes whatever the new list no longer holds.

use std::collections::HashSet;
use std::fmt::Debug;
use std::sync::Arc;
use std::time::Duration;

use futures::{Stream, StreamExt};
use k8s_openapi::api::apps::v1::DaemonSet;
use k8s_openapi::api::core::v1::{Namespace, Node, PersistentVolume, PersistentVolumeClaim, Pod};
use k8s_openapi::api::policy::v1::PodDisruptionBudget;
use k8s_openapi::api::storage::v1::{CSINode, StorageClass, VolumeAttachment};
use karpenter_apis::ec2nodeclass::EC2NodeClass;
use karpenter_apis::nodeclaim::NodeClaim;
use karpenter_apis::nodepool::NodePool;
use kube::api::{Api, ListParams};
use kube::runtime::WatchStreamExt;
use kube::runtime::watcher::{self, Event};
use kube::{Client, Resource};
use serde::de::DeserializeOwned;
use tokio::task::JoinHandle;
use tracing::Instrument;

use crate::cow::Key;
use crate::state::{ClusterState, Tracked};

/// How often the gauges are refreshed (upstream's node metrics period).
const METRICS_PERIOD: Duration = Duration::from_secs(5);
/// How often the API listing is compared with state until state has synced.
const CONFIRM_PERIOD: Duration = Duration::from_secs(1);

/// The running watchers. Dropping it stops them.
#[derive(Debug)]
pub struct Informers {
    tasks: Vec<JoinHandle<()>>,
}

impl Informers {
    /// Starts a watcher per kind against `client`, feeding `state`, plus the task that
    /// confirms the initial sync against the API and refreshes the gauges.
    pub fn start(client: Client, state: Arc<ClusterState>) -> Informers {
        let tasks = vec![
            spawn::<Pod>(Api::all(client.clone()), &state),
            spawn::<Node>(Api::all(client.clone()), &state),
            spawn::<NodeClaim>(Api::all(client.clone()), &state),
            spawn::<NodePool>(Api::all(client.clone()), &state),
            spawn::<EC2NodeClass>(Api::all(client.clone()), &state),
            spawn::<DaemonSet>(Api::all(client.clone()), &state),
            spawn::<PodDisruptionBudget>(Api::all(client.clone()), &state),
            spawn::<PersistentVolumeClaim>(Api::all(client.clone()), &state),
            spawn::<PersistentVolume>(Api::all(client.clone()), &state),
            spawn::<StorageClass>(Api::all(client.clone()), &state),
            spawn::<CSINode>(Api::all(client.clone()), &state),
            spawn::<VolumeAttachment>(Api::all(client.clone()), &state),
            spawn::<Namespace>(Api::all(client.clone()), &state),
            tokio::spawn(
                confirm_and_refresh(client, state.clone())
                    .instrument(tracing::info_span!("state.sync")),
            ),
        ];
        Informers { tasks }
    }

    /// Stops every watcher.
    pub fn stop(&self) {
        for t in &self.tasks {
            t.abort();
        }
    }
}

impl Drop for Informers {
    fn drop(&mut self) {
        self.stop();
    }
}

fn spawn<K>(api: Api<K>, state: &Arc<ClusterState>) -> JoinHandle<()>
where
    K: Tracked + Resource + Clone + DeserializeOwned + Debug + Send + Sync + 'static,
{
    let stream = watcher::watcher(api, watcher::Config::default()).default_backoff();
    tokio::spawn(
        drive(stream, state.clone())
            .instrument(tracing::info_span!("state", kind = K::KIND.as_str())),
    )
}

/// Applies a watcher's events to state until the stream ends.
pub async fn drive<K, S>(stream: S, state: Arc<ClusterState>)
where
    K: Tracked,
    S: Stream<Item = Result<Event<K>, watcher::Error>>,
{
    let mut stream = std::pin::pin!(stream);
    let mut seen: HashSet<Key> = HashSet::new();
    while let Some(event) = stream.next().await {
        match event {
            Ok(Event::Init) => seen.clear(),
            Ok(Event::InitApply(obj)) => {
                seen.insert(obj.state_key());
                state.apply(&obj);
            }
            Ok(Event::InitDone) => {
                state.retain(K::KIND, &seen);
                seen = HashSet::new();
                state.mark_listed(K::KIND);
            }
            Ok(Event::Apply(obj)) => state.apply(&obj),
            Ok(Event::Delete(obj)) => state.delete(K::KIND, &obj.state_key()),
            // The backoff wrapper retries; state keeps its last view meanwhile.
            Err(error) => tracing::warn!(kind = K::KIND.as_str(), %error, "watch failed; retrying"),
        }
    }
}

async fn names<K>(api: &Api<K>) -> Result<Vec<String>, kube::Error>
where
    K: Resource + Clone + DeserializeOwned + Debug,
{
    Ok(api
        .list_metadata(&ListParams::default())
        .await?
        .items
        .into_iter()
        .filter_map(|m| m.metadata.name)
        .collect())
}

async fn confirm_and_refresh(client: Client, state: Arc<ClusterState>) {
    let nodeclaims: Api<NodeClaim> = Api::all(client.clone());
    let nodes: Api<Node> = Api::all(client);
    loop {
        if state.all_listed() {
            match (names(&nodeclaims).await, names(&nodes).await) {
                (Ok(ncs), Ok(ns)) => {
                    if state.confirm_api_names(&ncs, &ns) {
                        break;
                    }
                }
                (Err(error), _) | (_, Err(error)) => {
                    tracing::warn!(%error, "listing NodeClaims and Nodes to confirm sync failed");
                }
            }
        }
        state.refresh_metrics();
        tokio::time::sleep(CONFIRM_PERIOD).await;
    }
    loop {
        state.refresh_metrics();
        tokio::time::sleep(METRICS_PERIOD).await;
    }
}
