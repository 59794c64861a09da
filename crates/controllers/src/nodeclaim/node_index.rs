//! Nodes by name and by provider ID, fed by one watch: registration looks a NodeClaim's Node up
//! by provider ID without listing the API server, and sees every Node sharing that ID (so it
//! can report `MultipleNodesFound`).

use std::collections::{BTreeSet, HashMap};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex, RwLock};

use futures::StreamExt;
use k8s_openapi::api::core::v1::Node;
use kube::api::Api;
use kube::runtime::WatchStreamExt;
use kube::runtime::watcher::{self, Event};
use tokio::task::JoinHandle;
use tracing::Instrument;

#[derive(Debug, Default)]
struct Inner {
    by_name: HashMap<String, Arc<Node>>,
    by_provider: HashMap<String, BTreeSet<String>>,
}

impl Inner {
    fn insert(&mut self, node: Node) {
        let name = node.metadata.name.clone().unwrap_or_default();
        self.remove(&name);
        if let Some(pid) = provider_id(&node) {
            self.by_provider
                .entry(pid.to_string())
                .or_default()
                .insert(name.clone());
        }
        self.by_name.insert(name, Arc::new(node));
    }

    fn remove(&mut self, name: &str) {
        let Some(old) = self.by_name.remove(name) else {
            return;
        };
        if let Some(pid) = provider_id(&old)
            && let Some(names) = self.by_provider.get_mut(pid)
        {
            names.remove(name);
            if names.is_empty() {
                self.by_provider.remove(pid);
            }
        }
    }
}

/// `spec.providerID`, if set and non-empty.
pub fn provider_id(node: &Node) -> Option<&str> {
    node.spec
        .as_ref()
        .and_then(|s| s.provider_id.as_deref())
        .filter(|p| !p.is_empty())
}

/// The watch-fed Node index.
#[derive(Debug, Default)]
pub struct NodeIndex {
    inner: RwLock<Inner>,
    listed: AtomicBool,
    task: Mutex<Option<JoinHandle<()>>>,
}

impl NodeIndex {
    /// Starts watching Nodes through `client`.
    pub fn start(client: kube::Client) -> Arc<NodeIndex> {
        let index = Arc::new(NodeIndex::default());
        let feeder = index.clone();
        let api: Api<Node> = Api::all(client);
        let task = tokio::spawn(
            async move {
                let stream = watcher::watcher(api, watcher::Config::default()).default_backoff();
                let mut stream = std::pin::pin!(stream);
                let mut staging = Inner::default();
                while let Some(event) = stream.next().await {
                    match event {
                        Ok(Event::Init) => staging = Inner::default(),
                        Ok(Event::InitApply(node)) => staging.insert(node),
                        Ok(Event::InitDone) => {
                            let fresh = std::mem::take(&mut staging);
                            *feeder.write() = fresh;
                            feeder.listed.store(true, Ordering::Release);
                        }
                        Ok(Event::Apply(node)) => feeder.write().insert(node),
                        Ok(Event::Delete(node)) => {
                            feeder
                                .write()
                                .remove(node.metadata.name.as_deref().unwrap_or_default());
                        }
                        Err(error) => tracing::warn!(%error, "node index watch failed; retrying"),
                    }
                }
            }
            .instrument(tracing::info_span!("nodeclaim.node_index")),
        );
        *index.task.lock().unwrap_or_else(|p| p.into_inner()) = Some(task);
        index
    }

    /// An index filled by hand (for tests of code that reads it).
    pub fn from_nodes(nodes: impl IntoIterator<Item = Node>) -> NodeIndex {
        let index = NodeIndex::default();
        {
            let mut inner = index.write();
            for n in nodes {
                inner.insert(n);
            }
        }
        index.listed.store(true, Ordering::Release);
        index
    }

    fn write(&self) -> std::sync::RwLockWriteGuard<'_, Inner> {
        self.inner.write().unwrap_or_else(|p| p.into_inner())
    }

    fn read(&self) -> std::sync::RwLockReadGuard<'_, Inner> {
        self.inner.read().unwrap_or_else(|p| p.into_inner())
    }

    /// Whether the initial list has been seen (before that, "no Node" means "not known yet").
    pub fn listed(&self) -> bool {
        self.listed.load(Ordering::Acquire)
    }

    /// Every Node with this provider ID, ordered by name.
    pub fn by_provider_id(&self, provider_id: &str) -> Vec<Arc<Node>> {
        let inner = self.read();
        inner
            .by_provider
            .get(provider_id)
            .map(|names| {
                names
                    .iter()
                    .filter_map(|n| inner.by_name.get(n).cloned())
                    .collect()
            })
            .unwrap_or_default()
    }

    /// A Node by name.
    pub fn get(&self, name: &str) -> Option<Arc<Node>> {
        self.read().by_name.get(name).cloned()
    }

    /// Stops the watch.
    pub fn stop(&self) {
        if let Some(t) = self.task.lock().unwrap_or_else(|p| p.into_inner()).take() {
            t.abort();
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use k8s_openapi::api::core::v1::NodeSpec;

    fn node(name: &str, pid: &str) -> Node {
        Node {
            metadata: kube::api::ObjectMeta {
                name: Some(name.into()),
                ..Default::default()
            },
            spec: Some(NodeSpec {
                provider_id: Some(pid.into()),
                ..Default::default()
            }),
            status: None,
        }
    }

    #[test]
    fn indexes_by_provider_id_and_follows_changes() {
        let index = NodeIndex::from_nodes([node("a", "p1"), node("b", "p1"), node("c", "p2")]);
        let names = |pid: &str| -> Vec<String> {
            index
                .by_provider_id(pid)
                .iter()
                .map(|n| n.metadata.name.clone().unwrap())
                .collect()
        };
        assert_eq!(names("p1"), ["a", "b"]);
        index.write().insert(node("b", "p2"));
        assert_eq!(names("p1"), ["a"]);
        assert_eq!(names("p2"), ["b", "c"]);
        index.write().remove("a");
        assert!(names("p1").is_empty());
        assert!(index.get("a").is_none());
    }
}
