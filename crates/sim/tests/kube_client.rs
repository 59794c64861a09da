//! Conformance tests: the real kube-rs client and kube-runtime watchers against the embedded server.
#![allow(clippy::unwrap_used, clippy::expect_used)]

mod common;

use common::*;
use futures::StreamExt;
use k8s_openapi::api::apps::v1::Deployment;
use k8s_openapi::api::core::v1::{ConfigMap, Pod};
use k8s_openapi::api::policy::v1::PodDisruptionBudget;
use k8s_openapi::apiextensions_apiserver::pkg::apis::apiextensions::v1::CustomResourceDefinition;
use karpenter_sim::apiserver::{ApiServerConfig, FaultRule, PodTermination, StoreConfig, Verb};
use kube::api::{
    Api, DeleteParams, DynamicObject, EvictParams, ListParams, Patch, PatchParams, PostParams,
};
use kube::core::{ApiResource, GroupVersionKind};
use kube::runtime::{WatchStreamExt, reflector, watcher};
use serde_json::json;

fn api_error<T: std::fmt::Debug>(r: Result<T, kube::Error>) -> Box<kube::core::Status> {
    match r {
        Err(kube::Error::Api(s)) => s,
        other => panic!("expected an API error, got {other:?}"),
    }
}

fn cm(name: &str) -> ConfigMap {
    serde_json::from_value(json!({"metadata": {"name": name}, "data": {"k": "v"}})).unwrap()
}

#[tokio::test]
async fn crud_generate_name_and_optimistic_concurrency() {
    let env = start().await;
    let cms: Api<ConfigMap> = Api::default_namespaced(env.client.clone());
    let created = cms.create(&PostParams::default(), &cm("a")).await.unwrap();
    let rv = created.metadata.resource_version.clone().unwrap();
    assert!(created.metadata.uid.is_some() && created.metadata.creation_timestamp.is_some());
    let mut changed = created.clone();
    changed.data = Some([("k".to_string(), "w".to_string())].into());
    let updated = cms
        .replace("a", &PostParams::default(), &changed)
        .await
        .unwrap();
    assert_ne!(updated.metadata.resource_version.unwrap(), rv);
    // Stale resourceVersion.
    let err = api_error(cms.replace("a", &PostParams::default(), &changed).await);
    assert_eq!(err.code, 409);
    assert_eq!(err.reason, "Conflict");
    assert_eq!(
        err.message,
        "Operation cannot be fulfilled on configmaps \"a\": the object has been modified; please apply your changes to the latest version and try again"
    );
    assert_eq!(
        api_error(cms.create(&PostParams::default(), &cm("a")).await).reason,
        "AlreadyExists"
    );
    let mut gen_cm = cm("");
    gen_cm.metadata.name = None;
    gen_cm.metadata.generate_name = Some("gen-".into());
    let generated = cms.create(&PostParams::default(), &gen_cm).await.unwrap();
    let name = generated.metadata.name.unwrap();
    assert!(name.starts_with("gen-") && name.len() == 9, "{name}");
    let nf = api_error(cms.get("missing").await);
    assert_eq!(
        (nf.code, nf.reason.as_str(), nf.message.as_str()),
        (404, "NotFound", "configmaps \"missing\" not found")
    );
    let other_ns: Api<ConfigMap> = Api::namespaced(env.client.clone(), "nope");
    let err = api_error(other_ns.create(&PostParams::default(), &cm("x")).await);
    assert_eq!(
        (err.code, err.message.as_str()),
        (404, "namespaces \"nope\" not found")
    );
    let deleted = cms.delete("a", &DeleteParams::default()).await.unwrap();
    assert!(
        deleted.is_right(),
        "built-ins answer an immediate delete with a Status"
    );
    assert_eq!(
        cms.list(&ListParams::default()).await.unwrap().items.len(),
        1
    );
    // dryRun: validated, not persisted.
    let dry = cms
        .create(
            &PostParams {
                dry_run: true,
                ..Default::default()
            },
            &cm("dry"),
        )
        .await
        .unwrap();
    assert_eq!(dry.metadata.name.as_deref(), Some("dry"));
    assert_eq!(api_error(cms.get("dry").await).code, 404);
    env.server.shutdown().await;
}

#[tokio::test]
async fn finalizers_hold_deletion_until_the_last_is_removed() {
    let env = start().await;
    let cms: Api<ConfigMap> = Api::default_namespaced(env.client.clone());
    let mut obj = cm("f");
    obj.metadata.finalizers = Some(vec!["example.com/hold".into()]);
    cms.create(&PostParams::default(), &obj).await.unwrap();
    let pending = cms.delete("f", &DeleteParams::default()).await.unwrap();
    let pending = pending
        .left()
        .expect("object returned while finalizers remain");
    assert!(pending.metadata.deletion_timestamp.is_some());
    let err = api_error(
        cms.patch(
            "f",
            &PatchParams::default(),
            &Patch::Merge(
                json!({"metadata": {"finalizers": ["example.com/hold", "example.com/new"]}}),
            ),
        )
        .await,
    );
    assert_eq!(err.code, 422);
    cms.patch(
        "f",
        &PatchParams::default(),
        &Patch::Merge(json!({"metadata": {"finalizers": null}})),
    )
    .await
    .unwrap();
    assert_eq!(api_error(cms.get("f").await).code, 404);
    env.server.shutdown().await;
}

#[tokio::test]
async fn bound_pods_terminate_gracefully_until_the_kubelet_confirms() {
    let env = start_with(ApiServerConfig {
        store: StoreConfig {
            pod_termination: PodTermination::KubeletConfirms,
            ..StoreConfig::default()
        },
        ..ApiServerConfig::default()
    })
    .await;
    let pods: Api<Pod> = Api::default_namespaced(env.client.clone());
    pods.create(&PostParams::default(), &pod("bound", json!({}), Some("n1")))
        .await
        .unwrap();
    pods.create(&PostParams::default(), &pod("pending", json!({}), None))
        .await
        .unwrap();
    pods.delete("pending", &DeleteParams::default())
        .await
        .unwrap();
    assert_eq!(
        api_error(pods.get("pending").await).code,
        404,
        "unbound pods go at once"
    );
    let terminating = pods
        .delete("bound", &DeleteParams::default())
        .await
        .unwrap()
        .left()
        .unwrap();
    assert_eq!(terminating.metadata.deletion_grace_period_seconds, Some(30));
    env.server.sweep();
    assert!(pods.get("bound").await.is_ok());
    pods.delete(
        "bound",
        &DeleteParams {
            grace_period_seconds: Some(0),
            ..Default::default()
        },
    )
    .await
    .unwrap();
    assert_eq!(api_error(pods.get("bound").await).code, 404);
    env.server.shutdown().await;
}

#[tokio::test]
async fn label_and_field_selectors_and_pagination() {
    let env = start().await;
    let pods: Api<Pod> = Api::default_namespaced(env.client.clone());
    for i in 0..7 {
        let node = if i % 2 == 0 { Some("n1") } else { None };
        let tier = if i < 4 { "web" } else { "db" };
        pods.create(
            &PostParams::default(),
            &pod(&format!("p{i}"), json!({"tier": tier}), node),
        )
        .await
        .unwrap();
    }
    let names = |l: kube::core::ObjectList<Pod>| {
        l.items
            .into_iter()
            .map(|p| p.metadata.name.unwrap())
            .collect::<Vec<_>>()
    };
    assert_eq!(
        names(
            pods.list(&ListParams::default().labels("tier=web"))
                .await
                .unwrap()
        ),
        vec!["p0", "p1", "p2", "p3"]
    );
    assert_eq!(
        names(
            pods.list(&ListParams::default().labels("tier in (db),tier!=web"))
                .await
                .unwrap()
        ),
        vec!["p4", "p5", "p6"]
    );
    assert_eq!(
        names(
            pods.list(&ListParams::default().fields("spec.nodeName=n1"))
                .await
                .unwrap()
        ),
        vec!["p0", "p2", "p4", "p6"]
    );
    assert_eq!(
        names(
            pods.list(&ListParams::default().fields("spec.nodeName=,metadata.name!=p1"))
                .await
                .unwrap()
        ),
        vec!["p3", "p5"]
    );
    let err = api_error(
        pods.list(&ListParams::default().fields("spec.bogus=x"))
            .await,
    );
    assert_eq!(
        (err.code, err.message.as_str()),
        (400, "field label not supported: spec.bogus")
    );
    let all_ns: Api<Pod> = Api::all(env.client.clone());
    assert_eq!(
        all_ns
            .list(&ListParams::default())
            .await
            .unwrap()
            .items
            .len(),
        7
    );
    // Pages of 3 with continue tokens.
    let mut seen = Vec::new();
    let mut lp = ListParams::default().limit(3);
    loop {
        let page = pods.list(&lp).await.unwrap();
        assert!(page.items.len() <= 3);
        seen.extend(page.items.iter().map(|p| p.metadata.name.clone().unwrap()));
        match page.metadata.continue_.filter(|c| !c.is_empty()) {
            Some(c) => lp = lp.continue_token(&c),
            None => break,
        }
    }
    assert_eq!(seen, vec!["p0", "p1", "p2", "p3", "p4", "p5", "p6"]);
    // A continue token older than the history window is 410 Expired.
    let page = pods.list(&ListParams::default().limit(2)).await.unwrap();
    pods.create(&PostParams::default(), &pod("late", json!({}), None))
        .await
        .unwrap();
    env.server.faults().compact_history();
    let err = api_error(
        pods.list(
            &ListParams::default()
                .limit(2)
                .continue_token(&page.metadata.continue_.unwrap()),
        )
        .await,
    );
    assert_eq!((err.code, err.reason.as_str()), (410, "Expired"));
    env.server.shutdown().await;
}

async fn reflector_on(api: Api<Pod>, config: watcher::Config) -> reflector::Store<Pod> {
    let (reader, writer) = reflector::store();
    let stream = reflector(writer, watcher(api, config))
        .default_backoff()
        .applied_objects();
    tokio::spawn(async move {
        let mut stream = std::pin::pin!(stream);
        while stream.next().await.is_some() {}
    });
    reader.wait_until_ready().await.unwrap();
    reader
}

fn store_names(store: &reflector::Store<Pod>) -> Vec<String> {
    let mut v: Vec<String> = store
        .state()
        .iter()
        .filter_map(|p| p.metadata.name.clone())
        .collect();
    v.sort();
    v
}

#[tokio::test]
async fn reflectors_converge_through_disconnects_and_410() {
    let env = start().await;
    let pods: Api<Pod> = Api::default_namespaced(env.client.clone());
    pods.create(&PostParams::default(), &pod("a", json!({"app": "x"}), None))
        .await
        .unwrap();
    let list_watch = reflector_on(pods.clone(), watcher::Config::default()).await;
    let streaming = reflector_on(pods.clone(), watcher::Config::default().streaming_lists()).await;
    let selected = reflector_on(pods.clone(), watcher::Config::default().labels("app=x")).await;
    for s in [&list_watch, &streaming, &selected] {
        assert_eq!(store_names(s), vec!["a"]);
    }
    pods.create(&PostParams::default(), &pod("b", json!({"app": "x"}), None))
        .await
        .unwrap();
    // Relabelling `a` makes it leave the selected watcher's view (MODIFIED → DELETED).
    pods.patch(
        "a",
        &PatchParams::default(),
        &Patch::Merge(json!({"metadata": {"labels": {"app": "y"}}})),
    )
    .await
    .unwrap();
    eventually("reflectors see b", || async {
        store_names(&list_watch) == ["a", "b"]
            && store_names(&streaming) == ["a", "b"]
            && store_names(&selected) == ["b"]
    })
    .await;
    // Forced disconnect: watchers resume from their last resourceVersion.
    env.server.faults().drop_watches();
    pods.create(&PostParams::default(), &pod("c", json!({"app": "x"}), None))
        .await
        .unwrap();
    pods.delete("b", &DeleteParams::default()).await.unwrap();
    eventually("reflectors converge after a disconnect", || async {
        store_names(&list_watch) == ["a", "c"]
            && store_names(&selected) == ["c"]
            && store_names(&streaming) == ["a", "c"]
    })
    .await;
    // Compaction then disconnect: resuming gets 410 and the watchers relist.
    env.server.faults().compact_history();
    pods.create(&PostParams::default(), &pod("d", json!({"app": "x"}), None))
        .await
        .unwrap();
    env.server.faults().compact_history();
    env.server.faults().drop_watches();
    pods.delete("a", &DeleteParams::default()).await.unwrap();
    eventually("reflectors converge after 410", || async {
        store_names(&list_watch) == ["c", "d"]
            && store_names(&selected) == ["c", "d"]
            && store_names(&streaming) == ["c", "d"]
    })
    .await;
    env.server.shutdown().await;
}

#[tokio::test]
async fn raw_watch_sends_bookmarks_and_expired_errors() {
    let env = start().await;
    let cms: Api<ConfigMap> = Api::default_namespaced(env.client.clone());
    let first = cms.create(&PostParams::default(), &cm("w")).await.unwrap();
    let rv = first.metadata.resource_version.clone().unwrap();
    let wp = kube::api::WatchParams::default().timeout(2);
    let mut stream = cms.watch(&wp, "0").await.unwrap().boxed();
    let mut added = 0;
    let mut bookmarks = 0;
    while let Some(ev) = stream.next().await {
        match ev.unwrap() {
            kube::core::WatchEvent::Added(_) => added += 1,
            kube::core::WatchEvent::Bookmark(_) => bookmarks += 1,
            other => panic!("unexpected {other:?}"),
        }
    }
    assert_eq!(added, 1);
    assert!(bookmarks >= 1, "bookmarks requested by default must arrive");
    cms.create(&PostParams::default(), &cm("w2")).await.unwrap();
    env.server.faults().compact_history();
    let mut stream = cms.watch(&wp, &rv).await.unwrap().boxed();
    match stream.next().await.unwrap().unwrap() {
        kube::core::WatchEvent::Error(e) => {
            assert_eq!((e.code, e.reason.as_str()), (410, "Expired"))
        }
        other => panic!("expected 410, got {other:?}"),
    }
    env.server.shutdown().await;
}

#[tokio::test]
async fn patch_types_and_server_side_apply_conflicts() {
    let env = start().await;
    let deploys: Api<Deployment> = Api::default_namespaced(env.client.clone());
    deploys
        .create(&PostParams::default(), &deployment("web", 1))
        .await
        .unwrap();
    let p = deploys
        .patch("web", &PatchParams::default(), &Patch::Strategic(json!({"spec": {"template": {"spec": {"containers": [{"name": "c", "image": "nginx:2"}, {"name": "side", "image": "envoy"}]}}}})))
        .await
        .unwrap();
    let images: Vec<String> = p
        .spec
        .as_ref()
        .unwrap()
        .template
        .spec
        .as_ref()
        .unwrap()
        .containers
        .iter()
        .map(|c| c.image.clone().unwrap())
        .collect();
    assert_eq!(
        images,
        vec!["nginx:2", "envoy"],
        "strategic merge by container name"
    );
    let p = deploys
        .patch(
            "web",
            &PatchParams::default(),
            &Patch::Merge(json!({"metadata": {"labels": {"a": "b"}}})),
        )
        .await
        .unwrap();
    assert_eq!(p.metadata.labels.unwrap()["a"], "b");
    assert_eq!(
        p.metadata.generation,
        Some(2),
        "label changes do not bump generation"
    );
    let jp: json_patch::Patch =
        serde_json::from_value(json!([{"op": "replace", "path": "/spec/replicas", "value": 3}]))
            .unwrap();
    let p = deploys
        .patch("web", &PatchParams::default(), &Patch::<()>::Json(jp))
        .await
        .unwrap();
    assert_eq!(p.spec.unwrap().replicas, Some(3));
    assert_eq!(p.metadata.generation, Some(3));
    let bad: json_patch::Patch =
        serde_json::from_value(json!([{"op": "test", "path": "/spec/replicas", "value": 9}]))
            .unwrap();
    assert_eq!(
        api_error(
            deploys
                .patch("web", &PatchParams::default(), &Patch::<()>::Json(bad))
                .await
        )
        .code,
        422
    );
    // Server-side apply: create, then a second manager conflicts on replicas until forced.
    let applied = json!({"apiVersion": "apps/v1", "kind": "Deployment", "metadata": {"name": "ssa"},
        "spec": {"replicas": 2, "selector": {"matchLabels": {"app": "ssa"}}, "template": {"metadata": {"labels": {"app": "ssa"}}, "spec": {"containers": [{"name": "c", "image": "nginx"}]}}}});
    let created = deploys
        .patch("ssa", &PatchParams::apply("alice"), &Patch::Apply(&applied))
        .await
        .unwrap();
    assert_eq!(created.spec.as_ref().unwrap().replicas, Some(2));
    assert!(
        created
            .metadata
            .managed_fields
            .unwrap()
            .iter()
            .any(|m| m.manager.as_deref() == Some("alice"))
    );
    let bob = json!({"apiVersion": "apps/v1", "kind": "Deployment", "metadata": {"name": "ssa"}, "spec": {"replicas": 5}});
    let err = api_error(
        deploys
            .patch("ssa", &PatchParams::apply("bob"), &Patch::Apply(&bob))
            .await,
    );
    assert_eq!((err.code, err.reason.as_str()), (409, "Conflict"));
    assert!(
        err.message.contains("conflict with \"alice\""),
        "{}",
        err.message
    );
    let forced = deploys
        .patch(
            "ssa",
            &PatchParams::apply("bob").force(),
            &Patch::Apply(&bob),
        )
        .await
        .unwrap();
    assert_eq!(forced.spec.unwrap().replicas, Some(5));
    env.server.shutdown().await;
}

#[tokio::test]
async fn status_subresource_is_isolated_and_scale_works() {
    let env = start().await;
    let deploys: Api<Deployment> = Api::default_namespaced(env.client.clone());
    deploys
        .create(&PostParams::default(), &deployment("d", 2))
        .await
        .unwrap();
    let st = deploys
        .patch_status(
            "d",
            &PatchParams::default(),
            &Patch::Merge(
                json!({"spec": {"replicas": 9}, "status": {"replicas": 2, "readyReplicas": 1}}),
            ),
        )
        .await
        .unwrap();
    assert_eq!(
        st.spec.as_ref().unwrap().replicas,
        Some(2),
        "status writes leave spec alone"
    );
    assert_eq!(st.status.as_ref().unwrap().ready_replicas, Some(1));
    let main = deploys
        .patch(
            "d",
            &PatchParams::default(),
            &Patch::Merge(json!({"status": {"readyReplicas": 7}})),
        )
        .await
        .unwrap();
    assert_eq!(
        main.status.unwrap().ready_replicas,
        Some(1),
        "main writes leave status alone"
    );
    let scale = deploys.get_scale("d").await.unwrap();
    assert_eq!(scale.spec.unwrap().replicas, Some(2));
    assert_eq!(scale.status.unwrap().selector.as_deref(), Some("app=d"));
    deploys
        .patch_scale(
            "d",
            &PatchParams::default(),
            &Patch::Merge(json!({"spec": {"replicas": 4}})),
        )
        .await
        .unwrap();
    assert_eq!(
        deploys.get("d").await.unwrap().spec.unwrap().replicas,
        Some(4)
    );
    // fieldValidation=Strict rejects unknown fields; the default warns and drops them.
    let mut raw = serde_json::to_value(deployment("strict", 1)).unwrap();
    raw["spec"]["bogus"] = json!(1);
    let dynamic: Api<DynamicObject> = Api::default_namespaced_with(
        env.client.clone(),
        &ApiResource::from_gvk(&GroupVersionKind::gvk("apps", "v1", "Deployment")),
    );
    let obj: DynamicObject = serde_json::from_value(raw).unwrap();
    let req =
        http::Request::post("/apis/apps/v1/namespaces/default/deployments?fieldValidation=Strict")
            .header("content-type", "application/json")
            .body(serde_json::to_vec(&obj).unwrap())
            .unwrap();
    let err = api_error(env.client.request::<DynamicObject>(req).await);
    assert_eq!(
        (err.code, err.message.as_str()),
        (400, "strict decoding error: unknown field \"spec.bogus\"")
    );
    let lax = dynamic.create(&PostParams::default(), &obj).await.unwrap();
    assert!(lax.data["spec"].get("bogus").is_none());
    env.server.shutdown().await;
}

async fn ready_pod(pods: &Api<Pod>, name: &str, labels: serde_json::Value) {
    pods.create(&PostParams::default(), &pod(name, labels, Some("n1")))
        .await
        .unwrap();
    pods.patch_status(name, &PatchParams::default(), &Patch::Merge(json!({"status": {"phase": "Running", "conditions": [{"type": "Ready", "status": "True"}]}})))
        .await
        .unwrap();
}

#[tokio::test]
async fn eviction_honours_pod_disruption_budgets() {
    let env = start().await;
    let pods: Api<Pod> = Api::default_namespaced(env.client.clone());
    let pdbs: Api<PodDisruptionBudget> = Api::default_namespaced(env.client.clone());
    ready_pod(&pods, "guarded-1", json!({"app": "g"})).await;
    ready_pod(&pods, "guarded-2", json!({"app": "g"})).await;
    ready_pod(&pods, "free", json!({"app": "f"})).await;
    let pdb: PodDisruptionBudget = serde_json::from_value(json!({"metadata": {"name": "g"}, "spec": {"minAvailable": 2, "selector": {"matchLabels": {"app": "g"}}}})).unwrap();
    pdbs.create(&PostParams::default(), &pdb).await.unwrap();
    let err = api_error(pods.evict("guarded-1", &EvictParams::default()).await);
    assert_eq!((err.code, err.reason.as_str()), (429, "TooManyRequests"));
    assert_eq!(
        err.message,
        "Cannot evict pod as it would violate the pod's disruption budget."
    );
    assert_eq!(err.details.unwrap().causes[0].reason, "DisruptionBudget");
    pdbs.patch(
        "g",
        &PatchParams::default(),
        &Patch::Merge(json!({"spec": {"minAvailable": 1}})),
    )
    .await
    .unwrap();
    pods.evict("guarded-1", &EvictParams::default())
        .await
        .unwrap();
    let evicted = pods.get("guarded-1").await.unwrap();
    assert!(
        evicted.metadata.deletion_timestamp.is_some(),
        "eviction deletes gracefully"
    );
    assert_eq!(
        api_error(pods.evict("guarded-2", &EvictParams::default()).await).code,
        429,
        "budget used up"
    );
    pods.evict("free", &EvictParams::default()).await.unwrap();
    // Two budgets on one pod: the eviction subresource refuses with 500.
    ready_pod(&pods, "double", json!({"app": "d", "tier": "t"})).await;
    for (name, key, value) in [("d1", "app", "d"), ("d2", "tier", "t")] {
        let pdb: PodDisruptionBudget = serde_json::from_value(json!({"metadata": {"name": name}, "spec": {"maxUnavailable": 1, "selector": {"matchLabels": {key: value}}}})).unwrap();
        pdbs.create(&PostParams::default(), &pdb).await.unwrap();
    }
    let err = api_error(pods.evict("double", &EvictParams::default()).await);
    assert_eq!(err.code, 500);
    assert!(err.message.contains("This pod has more than one PodDisruptionBudget, which the eviction subresource does not support."));
    env.server.shutdown().await;
}

#[tokio::test]
async fn binding_assigns_a_node_once() {
    let env = start().await;
    let pods: Api<Pod> = Api::default_namespaced(env.client.clone());
    pods.create(&PostParams::default(), &pod("p", json!({}), None))
        .await
        .unwrap();
    let binding = json!({"apiVersion": "v1", "kind": "Binding", "metadata": {"name": "p"}, "target": {"apiVersion": "v1", "kind": "Node", "name": "n1"}});
    let _: serde_json::Value = pods
        .create_subresource("binding", "p", &PostParams::default(), &binding)
        .await
        .unwrap();
    let bound = pods.get("p").await.unwrap();
    assert_eq!(bound.spec.unwrap().node_name.as_deref(), Some("n1"));
    let err = api_error(
        pods.create_subresource::<_, serde_json::Value>(
            "binding",
            "p",
            &PostParams::default(),
            &binding,
        )
        .await,
    );
    assert_eq!(err.code, 409);
    assert!(
        err.message.contains("already assigned to node \"n1\""),
        "{}",
        err.message
    );
    env.server.shutdown().await;
}

#[tokio::test]
async fn crds_are_served_at_once_and_validate_with_cel() {
    let env = start().await;
    let crds: Api<CustomResourceDefinition> = Api::all(env.client.clone());
    for file in [
        "karpenter.sh_nodepools.yaml",
        "karpenter.sh_nodeclaims.yaml",
        "karpenter.k8s.aws_ec2nodeclasses.yaml",
    ] {
        crds.create(&PostParams::default(), &crd(file))
            .await
            .unwrap();
    }
    let np = crds.get("nodepools.karpenter.sh").await.unwrap();
    let conditions = np.status.unwrap().conditions.unwrap();
    assert!(
        conditions
            .iter()
            .any(|c| c.type_ == "Established" && c.status == "True")
    );
    let gvk = GroupVersionKind::gvk("karpenter.sh", "v1", "NodePool");
    let (ar, _caps) = kube::discovery::pinned_kind(&env.client, &gvk)
        .await
        .unwrap();
    let nodepools: Api<DynamicObject> = Api::all_with(env.client.clone(), &ar);
    let good: DynamicObject = serde_json::from_value(json!({
        "apiVersion": "karpenter.sh/v1", "kind": "NodePool", "metadata": {"name": "default"},
        "spec": {"template": {"spec": {"requirements": [{"key": "kubernetes.io/arch", "operator": "In", "values": ["amd64"]}],
                 "nodeClassRef": {"group": "karpenter.k8s.aws", "kind": "EC2NodeClass", "name": "default"}}}}
    }))
    .unwrap();
    let created = nodepools
        .create(&PostParams::default(), &good)
        .await
        .unwrap();
    assert_eq!(
        created.data["spec"]["disruption"]["consolidateAfter"], "0s",
        "schema defaults applied"
    );
    let mut bad = good.clone();
    bad.metadata.name = Some("bad".into());
    bad.data["spec"]["template"]["spec"]["requirements"] =
        json!([{"key": "karpenter.sh/nodepool", "operator": "In", "values": ["x"]}]);
    let err = api_error(nodepools.create(&PostParams::default(), &bad).await);
    assert_eq!((err.code, err.reason.as_str()), (422, "Invalid"));
    let causes = err.details.unwrap().causes;
    assert!(
        causes
            .iter()
            .any(|c| c.field.starts_with("spec.template.spec.requirements")),
        "{causes:?}"
    );
    // Strategic merge patch is refused for custom resources.
    let err = api_error(
        nodepools
            .patch(
                "default",
                &PatchParams::default(),
                &Patch::Strategic(json!({"spec": {"weight": 3}})),
            )
            .await,
    );
    assert_eq!(err.code, 415);
    // Deleting the CRD stops serving it.
    crds.delete("nodepools.karpenter.sh", &DeleteParams::default())
        .await
        .unwrap();
    assert_eq!(
        api_error(nodepools.list(&ListParams::default()).await).code,
        404
    );
    env.server.shutdown().await;
}

#[tokio::test]
async fn injected_faults_and_garbage_collection() {
    let env = start().await;
    let pods: Api<Pod> = Api::default_namespaced(env.client.clone());
    env.server
        .faults()
        .add_rule(FaultRule::next(Some(Verb::Create), Some("pods"), 500, 1));
    assert_eq!(
        api_error(
            pods.create(&PostParams::default(), &pod("x", json!({}), None))
                .await
        )
        .code,
        500
    );
    pods.create(&PostParams::default(), &pod("x", json!({}), None))
        .await
        .unwrap();
    env.server
        .faults()
        .add_rule(FaultRule::next(Some(Verb::List), None, 429, 1));
    assert_eq!(api_error(pods.list(&ListParams::default()).await).code, 429);
    // Background propagation removes dependents whose owner is gone.
    let deploys: Api<Deployment> = Api::default_namespaced(env.client.clone());
    let owner = deploys
        .create(&PostParams::default(), &deployment("own", 1))
        .await
        .unwrap();
    let mut dependent = pod("dep", json!({}), None);
    dependent.metadata.owner_references = Some(vec![
        k8s_openapi::apimachinery::pkg::apis::meta::v1::OwnerReference {
            api_version: "apps/v1".into(),
            kind: "Deployment".into(),
            name: "own".into(),
            uid: owner.metadata.uid.unwrap(),
            controller: Some(true),
            block_owner_deletion: Some(true),
        },
    ]);
    pods.create(&PostParams::default(), &dependent)
        .await
        .unwrap();
    deploys
        .delete("own", &DeleteParams::foreground())
        .await
        .unwrap();
    assert_eq!(api_error(pods.get("dep").await).code, 404);
    eventually("owner gone after its dependents", || async {
        deploys.get("own").await.is_err()
    })
    .await;
    env.server.shutdown().await;
}

#[tokio::test]
async fn events_k8s_io_recorder_events_are_core_events_too() {
    use kube::Resource;
    use kube::runtime::events::{Event, EventType, Recorder, Reporter};
    let env = start().await;
    let pods: Api<Pod> = Api::default_namespaced(env.client.clone());
    let p = pods
        .create(&PostParams::default(), &pod("ev", json!({}), None))
        .await
        .unwrap();
    let recorder = Recorder::new(
        env.client.clone(),
        Reporter {
            controller: "karpenter".into(),
            instance: None,
        },
    );
    let ev = Event {
        type_: EventType::Warning,
        reason: "FailedScheduling".into(),
        note: Some("no capacity".into()),
        action: "Scheduling".into(),
        secondary: None,
    };
    recorder.publish(&ev, &p.object_ref(&())).await.unwrap();
    recorder.publish(&ev, &p.object_ref(&())).await.unwrap();
    let core: Api<k8s_openapi::api::core::v1::Event> = Api::default_namespaced(env.client.clone());
    let listed = core
        .list(&ListParams::default().fields("involvedObject.name=ev,involvedObject.kind=Pod"))
        .await
        .unwrap();
    assert_eq!(listed.items.len(), 1);
    let e = &listed.items[0];
    assert_eq!(
        (
            e.reason.as_deref(),
            e.message.as_deref(),
            e.type_.as_deref()
        ),
        (
            Some("FailedScheduling"),
            Some("no capacity"),
            Some("Warning")
        )
    );
    assert_eq!(
        e.count,
        Some(2),
        "the recorder's series patch counts repeats"
    );
    let v1: Api<k8s_openapi::api::events::v1::Event> = Api::default_namespaced(env.client.clone());
    let back = v1.list(&ListParams::default()).await.unwrap();
    assert_eq!(back.items[0].note.as_deref(), Some("no capacity"));
    assert_eq!(
        back.items[0]
            .regarding
            .as_ref()
            .and_then(|r| r.name.as_deref()),
        Some("ev")
    );
    env.server.shutdown().await;
}
