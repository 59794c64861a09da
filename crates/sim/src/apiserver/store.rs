//! The object store: apiserver storage semantics independent of HTTP.
//!
//! One lock guards every table so a write, its resourceVersion and its watch event are one
//! atomic step (what etcd's single revision counter gives the real server). Objects are held as
//! `Arc<StoredObject>`: serialized once at write time, plus a small index (see [`super::stored`]),
//! so lists, watch history and watchers share the same bytes and nobody serializes on read;
//! writers parse the current object back into a tree outside the lock. Watchers receive events
//! through a per-table broadcast channel: a writer never waits for a reader, and a reader that
//! falls behind is cut off (the client re-watches from its last resourceVersion, or relists after
//! 410 when that is out of the history window).

use std::collections::{BTreeMap, BTreeSet, HashMap, VecDeque};
use std::sync::{Arc, Mutex, MutexGuard};

use chrono::Duration;
use serde_json::{Map, Value, json};
use tokio::sync::broadcast;

use super::error::{ApiError, QualifiedResource, StatusCause};
use super::object::{
    self, Rng, SharedClock, at, finalizers, format_time, is_deleting, metadata_mut, parse_time,
    set_meta, str_at,
};
use super::stored::{StoredMeta, StoredObject};

/// (namespace, name); namespace is "" for cluster-scoped objects.
pub type Key = (String, String);

/// The finalizer foreground deletion puts on an owner until its dependents are gone.
pub const FOREGROUND_FINALIZER: &str = "foregroundDeletion";
/// The finalizer orphan deletion uses (handled at once here).
pub const ORPHAN_FINALIZER: &str = "orphan";

/// Resource-specific storage behaviour.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Special {
    /// Plain object.
    None,
    /// Pods: graceful deletion.
    Pod,
    /// Namespaces: deleting one deletes its content.
    Namespace,
}

/// What the store knows about one stored resource.
#[derive(Debug, Clone)]
pub struct TableMeta {
    /// Storage key, e.g. `pods` or `nodepools.karpenter.sh`.
    pub storage: String,
    /// Resource for messages.
    pub qualified: QualifiedResource,
    /// Kind of the stored objects.
    pub kind: String,
    /// Whether objects live in namespaces.
    pub namespaced: bool,
    /// Whether there is a `status` subresource (main updates then leave status alone).
    pub has_status: bool,
    /// Extra behaviour.
    pub special: Special,
}

/// How pods that were deleted with a grace period go away.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum PodTermination {
    /// Removed when `deletionTimestamp` (now + grace) passes, or at once on a grace-0 delete.
    #[default]
    GraceExpiry,
    /// Stay until a kubelet deletes them with `gracePeriodSeconds=0`.
    KubeletConfirms,
    /// Every pod delete is immediate.
    Immediate,
}

/// Store tuning.
#[derive(Debug, Clone)]
pub struct StoreConfig {
    /// Watch events kept per resource for resuming watches.
    pub watch_history: usize,
    /// Events buffered per watcher before it is cut off.
    pub watcher_buffer: usize,
    /// Seed for uids and generated names.
    pub seed: u64,
    /// Pod termination behaviour.
    pub pod_termination: PodTermination,
}

impl Default for StoreConfig {
    fn default() -> Self {
        StoreConfig {
            watch_history: 10_000,
            watcher_buffer: 16_384,
            seed: 1,
            pod_termination: PodTermination::GraceExpiry,
        }
    }
}

/// Watch event type.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum EventType {
    /// Created.
    Added,
    /// Changed.
    Modified,
    /// Removed.
    Deleted,
}

impl EventType {
    /// The wire name.
    pub fn as_str(self) -> &'static str {
        match self {
            EventType::Added => "ADDED",
            EventType::Modified => "MODIFIED",
            EventType::Deleted => "DELETED",
        }
    }
}

/// One change, as recorded in the history and broadcast to watchers.
#[derive(Debug, Clone)]
pub struct StoreEvent {
    /// What happened.
    pub kind: EventType,
    /// The object after the change (the last state for deletions).
    pub object: Arc<StoredObject>,
    /// The object before the change (for selector transitions).
    pub prev: Option<Arc<StoredObject>>,
    /// The revision of this change.
    pub rv: u64,
}

/// Where a watch starts.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum WatchFrom {
    /// Everything after this resourceVersion.
    Rv(u64),
    /// The current state as synthetic ADDED events, then changes.
    Snapshot,
}

/// What a watch needs to start without gaps or duplicates.
#[derive(Debug)]
pub struct WatchStart {
    /// Current objects (for `WatchFrom::Snapshot`).
    pub snapshot: Vec<Arc<StoredObject>>,
    /// History events after the requested revision.
    pub backlog: Vec<Arc<StoreEvent>>,
    /// Live events after `rv`.
    pub rx: broadcast::Receiver<Arc<StoreEvent>>,
    /// The revision the snapshot/backlog is complete up to.
    pub rv: u64,
}

/// Which part of an object an update may change.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum UpdateTarget {
    /// The main resource: status is kept from the stored object when there is a status subresource.
    Main,
    /// The status subresource: only `.status` (and managedFields) change.
    Status,
    /// Everything (server-internal writers).
    All,
}

/// Options shared by writes.
#[derive(Debug, Clone, Default)]
pub struct WriteOptions {
    /// Validate and compute, do not persist.
    pub dry_run: bool,
}

/// Deletion propagation policy.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum Propagation {
    /// Owner goes now, dependents are collected after.
    #[default]
    Background,
    /// Dependents go first; the owner waits with the `foregroundDeletion` finalizer.
    Foreground,
    /// Dependents lose their owner reference and stay.
    Orphan,
}

/// Options of a delete.
#[derive(Debug, Clone, Default)]
pub struct DeleteOptions {
    /// `gracePeriodSeconds`.
    pub grace_period_seconds: Option<i64>,
    /// `propagationPolicy`.
    pub propagation: Option<Propagation>,
    /// `preconditions.uid`.
    pub precondition_uid: Option<String>,
    /// `preconditions.resourceVersion`.
    pub precondition_rv: Option<String>,
    /// `dryRun=All`.
    pub dry_run: bool,
}

/// The result of a delete.
#[derive(Debug, Clone)]
pub struct DeleteOutcome {
    /// The object as deleted, or as it now stands while finalizers/grace hold it.
    pub object: Arc<Value>,
    /// Whether the object is gone.
    pub removed: bool,
}

/// A page of a list.
#[derive(Debug)]
pub struct ListPage {
    /// Objects in key order.
    pub items: Vec<Arc<StoredObject>>,
    /// The store revision at the time of the read.
    pub rv: u64,
    /// Objects after this page (only counted by [`Store::list_limited`]).
    pub remaining: usize,
}

struct Table {
    meta: TableMeta,
    objects: BTreeMap<Key, Arc<StoredObject>>,
    history: VecDeque<Arc<StoreEvent>>,
    /// Watches from revisions below this cannot be served.
    compacted_rv: u64,
    /// Created on the first watch: tokio's broadcast ring allocates every slot up front, which for
    /// dozens of mostly unwatched tables is tens of MiB at a large `watcher_buffer`.
    tx: Option<broadcast::Sender<Arc<StoreEvent>>>,
}

struct Inner {
    rv: u64,
    tables: HashMap<String, Table>,
    rng: Rng,
    by_uid: HashMap<String, (String, Key)>,
    dependents: HashMap<String, BTreeSet<(String, Key)>>,
}

enum Work {
    Delete(String, Key, Propagation, Option<i64>),
    ReleaseForeground(String),
}

/// The object store.
pub struct Store {
    inner: Mutex<Inner>,
    config: StoreConfig,
    clock: SharedClock,
}

impl std::fmt::Debug for Store {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Store")
            .field("config", &self.config)
            .finish()
    }
}

fn missing_table(storage: &str) -> ApiError {
    ApiError::internal(format!("resource {storage} is not registered in the store"))
}

impl Store {
    /// An empty store.
    pub fn new(config: StoreConfig, clock: SharedClock) -> Self {
        Store {
            inner: Mutex::new(Inner {
                rv: 1,
                tables: HashMap::new(),
                rng: Rng::new(config.seed),
                by_uid: HashMap::new(),
                dependents: HashMap::new(),
            }),
            config,
            clock,
        }
    }

    /// The clock the store stamps times with.
    pub fn clock(&self) -> &SharedClock {
        &self.clock
    }

    /// The store configuration.
    pub fn config(&self) -> &StoreConfig {
        &self.config
    }

    fn lock(&self) -> MutexGuard<'_, Inner> {
        // A poisoned lock means a panic mid-write elsewhere; the data is still structurally sound
        // (every write is completed before any call that could panic), so keep serving.
        self.inner.lock().unwrap_or_else(|p| p.into_inner())
    }

    /// Adds a table (idempotent: an existing table keeps its objects, its meta is refreshed).
    pub fn register_table(&self, meta: TableMeta) {
        let mut inner = self.lock();
        let compacted = inner.rv;
        if let Some(t) = inner.tables.get_mut(&meta.storage) {
            t.meta = meta;
            return;
        }
        inner.tables.insert(
            meta.storage.clone(),
            Table {
                meta,
                objects: BTreeMap::new(),
                history: VecDeque::new(),
                compacted_rv: compacted,
                tx: None,
            },
        );
    }

    /// Removes a table and all its objects (a CRD was deleted), telling watchers.
    pub fn unregister_table(&self, storage: &str) {
        let mut inner = self.lock();
        let keys: Vec<Key> = inner
            .tables
            .get(storage)
            .map(|t| t.objects.keys().cloned().collect())
            .unwrap_or_default();
        let mut work: Vec<Work> = keys
            .into_iter()
            .map(|k| Work::Delete(storage.to_string(), k, Propagation::Background, Some(0)))
            .collect();
        // Finalizers of instances cannot hold a vanished resource: drop them.
        for w in &work {
            if let Work::Delete(s, k, _, _) = w
                && let Some(t) = inner.tables.get_mut(s)
                && let Some(obj) = t.objects.get_mut(k)
                && !obj.meta().finalizers.is_empty()
            {
                let stripped = obj.value().and_then(|mut v| {
                    set_meta(&mut v, "finalizers", None);
                    StoredObject::new(s, &v)
                });
                match stripped {
                    Ok(v) => *obj = Arc::new(v),
                    Err(e) => tracing::error!(error = %e, "dropping finalizers failed"),
                }
            }
        }
        let now = self.clock.now();
        self.run_work(&mut inner, &mut work, now);
        inner.tables.remove(storage);
    }

    /// Whether a table exists.
    pub fn has_table(&self, storage: &str) -> bool {
        self.lock().tables.contains_key(storage)
    }

    /// The latest revision.
    pub fn current_rv(&self) -> u64 {
        self.lock().rv
    }

    /// The oldest revision a watch or continue token on this table can resume from.
    pub fn compacted_rv(&self, storage: &str) -> u64 {
        self.lock()
            .tables
            .get(storage)
            .map(|t| t.compacted_rv)
            .unwrap_or(0)
    }

    /// Drops the watch history of every table so resuming from any older revision gets 410.
    pub fn compact(&self) {
        let mut inner = self.lock();
        let rv = inner.rv;
        for t in inner.tables.values_mut() {
            t.history.clear();
            t.compacted_rv = rv;
        }
    }

    /// One object, parsed.
    pub fn get(&self, storage: &str, ns: &str, name: &str) -> Result<Arc<Value>, ApiError> {
        Ok(Arc::new(self.get_stored(storage, ns, name)?.value()?))
    }

    /// One object as stored.
    pub fn get_stored(
        &self,
        storage: &str,
        ns: &str,
        name: &str,
    ) -> Result<Arc<StoredObject>, ApiError> {
        let inner = self.lock();
        let t = inner
            .tables
            .get(storage)
            .ok_or_else(|| missing_table(storage))?;
        t.objects
            .get(&(ns.to_string(), name.to_string()))
            .cloned()
            .ok_or_else(|| ApiError::not_found(&t.meta.qualified, name))
    }

    /// Objects in key order, optionally within one namespace and after a key.
    pub fn list(
        &self,
        storage: &str,
        ns: Option<&str>,
        after: Option<&Key>,
    ) -> Result<ListPage, ApiError> {
        let inner = self.lock();
        let t = inner
            .tables
            .get(storage)
            .ok_or_else(|| missing_table(storage))?;
        let items: Vec<Arc<StoredObject>> = match (ns, after) {
            (Some(ns), after) => {
                let start = match after {
                    Some(k) if k.0.as_str() == ns => {
                        std::ops::Bound::Excluded((ns.to_string(), k.1.clone()))
                    }
                    _ => std::ops::Bound::Included((ns.to_string(), String::new())),
                };
                t.objects
                    .range((start, std::ops::Bound::Unbounded))
                    .take_while(|(k, _)| k.0 == ns)
                    .map(|(_, v)| v.clone())
                    .collect()
            }
            (None, Some(k)) => t
                .objects
                .range((
                    std::ops::Bound::Excluded(k.clone()),
                    std::ops::Bound::Unbounded,
                ))
                .map(|(_, v)| v.clone())
                .collect(),
            (None, None) => t.objects.values().cloned().collect(),
        };
        Ok(ListPage {
            items,
            rv: inner.rv,
            remaining: 0,
        })
    }

    /// Like [`Store::list`] without selectors: at most `limit` objects, plus how many follow.
    /// Only `limit` values are cloned under the lock, so paging through a large table stays
    /// linear.
    pub fn list_limited(
        &self,
        storage: &str,
        ns: Option<&str>,
        after: Option<&Key>,
        limit: usize,
    ) -> Result<ListPage, ApiError> {
        let inner = self.lock();
        let t = inner
            .tables
            .get(storage)
            .ok_or_else(|| missing_table(storage))?;
        let start = match (ns, after) {
            (Some(ns), Some(k)) if k.0.as_str() == ns => {
                std::ops::Bound::Excluded((ns.to_string(), k.1.clone()))
            }
            (Some(ns), _) => std::ops::Bound::Included((ns.to_string(), String::new())),
            (None, Some(k)) => std::ops::Bound::Excluded(k.clone()),
            (None, None) => std::ops::Bound::Unbounded,
        };
        let mut range = t
            .objects
            .range((start, std::ops::Bound::Unbounded))
            .take_while(|(k, _)| ns.is_none_or(|ns| k.0 == ns));
        let items: Vec<Arc<StoredObject>> =
            range.by_ref().take(limit).map(|(_, v)| v.clone()).collect();
        let remaining = range.count();
        Ok(ListPage {
            items,
            rv: inner.rv,
            remaining,
        })
    }

    /// Subscribes to a table's changes from a revision or from a snapshot of its state.
    pub fn watch(&self, storage: &str, from: WatchFrom) -> Result<WatchStart, ApiError> {
        let mut inner = self.lock();
        let buffer = self.config.watcher_buffer.max(16);
        let current_rv = inner.rv;
        let t = inner
            .tables
            .get_mut(storage)
            .ok_or_else(|| missing_table(storage))?;
        let rx =
            t.tx.get_or_insert_with(|| broadcast::channel(buffer).0)
                .subscribe();
        let t = &*t;
        match from {
            WatchFrom::Snapshot => Ok(WatchStart {
                snapshot: t.objects.values().cloned().collect(),
                backlog: Vec::new(),
                rx,
                rv: current_rv,
            }),
            WatchFrom::Rv(rv) => {
                if rv < t.compacted_rv {
                    return Err(ApiError::expired(format!(
                        "too old resource version: {rv} ({})",
                        t.compacted_rv
                    )));
                }
                let start = t.history.partition_point(|e| e.rv <= rv);
                Ok(WatchStart {
                    snapshot: Vec::new(),
                    backlog: t.history.iter().skip(start).cloned().collect(),
                    rx,
                    rv: current_rv,
                })
            }
        }
    }

    /// Creates an object. `obj` must carry `metadata.name` or `metadata.generateName`.
    pub fn create(
        &self,
        storage: &str,
        ns: &str,
        obj: Value,
        opts: &WriteOptions,
    ) -> Result<Arc<Value>, ApiError> {
        self.create_stored(storage, ns, obj, opts)
            .map(|(created, _)| created)
    }

    /// Like [`Store::create`], also returning the stored form (none on a dry run), whose bytes
    /// a response can send as they are instead of serializing the object again.
    pub fn create_stored(
        &self,
        storage: &str,
        ns: &str,
        mut obj: Value,
        opts: &WriteOptions,
    ) -> Result<(Arc<Value>, Option<Arc<StoredObject>>), ApiError> {
        let now = self.clock.now();
        let mut inner = self.lock();
        let meta = inner
            .tables
            .get(storage)
            .map(|t| t.meta.clone())
            .ok_or_else(|| missing_table(storage))?;
        if !obj.is_object() {
            return Err(ApiError::bad_request("the object is not a JSON object"));
        }
        let ns = if meta.namespaced { ns } else { "" };
        if meta.namespaced {
            let given = object::name(&obj).to_string();
            check_namespace_writable(&inner, ns, &meta, &given)?;
        }
        let mut name = object::name(&obj).to_string();
        if name.is_empty() {
            let prefix = str_at(&obj, &["metadata", "generateName"])
                .unwrap_or("")
                .to_string();
            if prefix.is_empty() {
                return Err(ApiError::invalid(
                    &meta.qualified.group,
                    &meta.kind,
                    "",
                    vec![StatusCause {
                        reason: "FieldValueRequired".into(),
                        message: "Required value: name or generateName is required".into(),
                        field: "metadata.name".into(),
                    }],
                ));
            }
            let mut candidate = String::new();
            for _ in 0..16 {
                candidate = format!("{prefix}{}", inner.rng.name_suffix());
                let taken = inner
                    .tables
                    .get(storage)
                    .is_some_and(|t| t.objects.contains_key(&(ns.to_string(), candidate.clone())));
                if !taken {
                    break;
                }
            }
            name = candidate;
        }
        let key = (ns.to_string(), name.clone());
        if inner
            .tables
            .get(storage)
            .is_some_and(|t| t.objects.contains_key(&key))
        {
            return Err(ApiError::already_exists(&meta.qualified, &name));
        }
        let uid = inner.rng.uuid();
        let rv = inner.rv + 1;
        if let Some(m) = metadata_mut(&mut obj) {
            m.insert("name".into(), json!(name));
            if meta.namespaced {
                m.insert("namespace".into(), json!(ns));
            } else {
                m.remove("namespace");
            }
            m.insert("uid".into(), json!(uid));
            m.insert("resourceVersion".into(), json!(rv.to_string()));
            m.insert("creationTimestamp".into(), json!(format_time(now)));
            m.insert("generation".into(), json!(1));
            m.remove("deletionTimestamp");
            m.remove("deletionGracePeriodSeconds");
            m.remove("selfLink");
        }
        if opts.dry_run {
            return Ok((Arc::new(obj), None));
        }
        let stored = Arc::new(StoredObject::new(storage, &obj)?);
        inner.rv = rv;
        self.insert(&mut inner, storage, key, stored.clone(), None);
        Ok((Arc::new(obj), Some(stored)))
    }

    /// Reads the current object, lets `f` compute its replacement outside the lock, and commits
    /// it if nothing changed meanwhile (retrying otherwise): apiserver's GuaranteedUpdate.
    ///
    /// A non-empty `metadata.resourceVersion` in what `f` returns is a precondition.
    pub fn update_with<F>(
        &self,
        storage: &str,
        ns: &str,
        name: &str,
        target: UpdateTarget,
        opts: &WriteOptions,
        mut f: F,
    ) -> Result<Arc<Value>, ApiError>
    where
        F: FnMut(&Arc<Value>) -> Result<Value, ApiError>,
    {
        for _ in 0..32 {
            let stored = self.get_stored(storage, ns, name)?;
            let current = Arc::new(stored.value()?);
            let proposed = f(&current)?;
            let now = self.clock.now();
            let mut inner = self.lock();
            let meta = inner
                .tables
                .get(storage)
                .map(|t| t.meta.clone())
                .ok_or_else(|| missing_table(storage))?;
            let key = (ns.to_string(), name.to_string());
            let Some(latest) = inner.tables.get(storage).and_then(|t| t.objects.get(&key)) else {
                return Err(ApiError::not_found(&meta.qualified, name));
            };
            if !Arc::ptr_eq(latest, &stored) {
                continue;
            }
            let wanted_rv = object::resource_version(&proposed);
            if !wanted_rv.is_empty() && wanted_rv != object::resource_version(&current) {
                return Err(ApiError::conflict_modified(&meta.qualified, name));
            }
            let prepared = prepare_update(&meta, &current, proposed, target)?;
            if same_ignoring_rv(&prepared, &current) {
                return Ok(current);
            }
            if opts.dry_run {
                return Ok(Arc::new(prepared));
            }
            return self.commit_update(&mut inner, &meta, key, stored, prepared, now);
        }
        Err(ApiError::internal(format!(
            "too many concurrent writers on {storage} {ns}/{name}"
        )))
    }

    /// Stamps the next revision on `prepared` and stores it in place of `current`.
    fn commit_update(
        &self,
        inner: &mut Inner,
        meta: &TableMeta,
        key: Key,
        current: Arc<StoredObject>,
        mut prepared: Value,
        now: chrono::DateTime<chrono::Utc>,
    ) -> Result<Arc<Value>, ApiError> {
        let rv = inner.rv + 1;
        set_meta(
            &mut prepared,
            "resourceVersion",
            Some(json!(rv.to_string())),
        );
        let stored = Arc::new(StoredObject::new(&meta.storage, &prepared)?);
        inner.rv = rv;
        let sm = stored.meta();
        let releasable = sm.is_deleting()
            && meta.special != Special::Namespace
            && sm.finalizers.is_empty()
            && (meta.special != Special::Pod
                || pod_grace_over(sm, now, self.config.pod_termination));
        if releasable {
            let mut work = vec![];
            self.remove(inner, &meta.storage, &key, stored, &mut work);
            self.run_work(inner, &mut work, now);
        } else {
            let foreground = sm.is_deleting() && sm.has_finalizer(FOREGROUND_FINALIZER);
            let uid = sm.uid.to_string();
            self.insert(inner, &meta.storage, key, stored, Some(current));
            if foreground {
                let mut work = vec![Work::ReleaseForeground(uid)];
                self.run_work(inner, &mut work, now);
            }
        }
        Ok(Arc::new(prepared))
    }

    /// Deletes an object following finalizers, grace periods and propagation.
    pub fn delete(
        &self,
        storage: &str,
        ns: &str,
        name: &str,
        opts: &DeleteOptions,
    ) -> Result<DeleteOutcome, ApiError> {
        let now = self.clock.now();
        let mut inner = self.lock();
        let meta = inner
            .tables
            .get(storage)
            .map(|t| t.meta.clone())
            .ok_or_else(|| missing_table(storage))?;
        let key = (ns.to_string(), name.to_string());
        let current = inner
            .tables
            .get(storage)
            .and_then(|t| t.objects.get(&key))
            .cloned()
            .ok_or_else(|| ApiError::not_found(&meta.qualified, name))?;
        if let Some(uid) = &opts.precondition_uid
            && uid != &*current.meta().uid
        {
            return Err(ApiError::conflict(
                &meta.qualified,
                name,
                &format!(
                    "Precondition failed: UID in precondition: {uid}, UID in object meta: {}",
                    current.meta().uid
                ),
            ));
        }
        if let Some(rv) = &opts.precondition_rv
            && rv != &*current.meta().resource_version
        {
            return Err(ApiError::conflict(
                &meta.qualified,
                name,
                &format!(
                    "Precondition failed: ResourceVersion in precondition: {rv}, ResourceVersion in object meta: {}",
                    current.meta().resource_version
                ),
            ));
        }
        let propagation = opts.propagation.unwrap_or_default();
        if opts.dry_run {
            return Ok(DeleteOutcome {
                object: Arc::new(current.value()?),
                removed: false,
            });
        }
        self.delete_locked(&mut inner, &meta, key, current, opts, propagation, now)
    }

    #[allow(clippy::too_many_arguments)]
    fn delete_locked(
        &self,
        inner: &mut Inner,
        meta: &TableMeta,
        key: Key,
        current: Arc<StoredObject>,
        opts: &DeleteOptions,
        propagation: Propagation,
        now: chrono::DateTime<chrono::Utc>,
    ) -> Result<DeleteOutcome, ApiError> {
        let mut work = Vec::new();
        let uid = current.meta().uid.to_string();
        if propagation == Propagation::Orphan {
            self.orphan_dependents(inner, &uid);
        }
        let original = current.value()?;
        let mut next = original.clone();
        if meta.special == Special::Pod {
            let grace = pod_grace(
                &original,
                opts.grace_period_seconds,
                self.config.pod_termination,
            );
            let deadline = now + Duration::seconds(grace);
            let existing = current
                .meta()
                .deletion_timestamp
                .as_deref()
                .and_then(parse_time);
            let shorten = existing.is_none_or(|t| deadline < t);
            if grace > 0 {
                if shorten {
                    set_meta(
                        &mut next,
                        "deletionTimestamp",
                        Some(json!(format_time(deadline))),
                    );
                    set_meta(&mut next, "deletionGracePeriodSeconds", Some(json!(grace)));
                    let obj = self.commit_update(inner, meta, key, current, next, now)?;
                    return Ok(DeleteOutcome {
                        removed: false,
                        object: obj,
                    });
                }
                return Ok(DeleteOutcome {
                    object: Arc::new(original),
                    removed: false,
                });
            }
            if existing.is_none() || shorten {
                set_meta(
                    &mut next,
                    "deletionTimestamp",
                    Some(json!(format_time(now))),
                );
            }
            set_meta(&mut next, "deletionGracePeriodSeconds", Some(json!(0)));
        }
        let mut fins = finalizers(&next);
        if propagation == Propagation::Foreground && !fins.iter().any(|f| f == FOREGROUND_FINALIZER)
        {
            fins.push(FOREGROUND_FINALIZER.to_string());
            set_meta(&mut next, "finalizers", Some(json!(fins)));
        }
        if meta.special == Special::Namespace {
            if let Some(obj) = next.as_object_mut() {
                let status = obj.entry("status").or_insert_with(|| json!({}));
                if let Some(s) = status.as_object_mut() {
                    s.insert("phase".into(), json!("Terminating"));
                }
            }
            if !is_deleting(&next) {
                set_meta(
                    &mut next,
                    "deletionTimestamp",
                    Some(json!(format_time(now))),
                );
                set_meta(&mut next, "deletionGracePeriodSeconds", Some(json!(0)));
            }
            let obj = self.commit_update(inner, meta, key.clone(), current, next, now)?;
            self.purge_namespace(inner, &key.1, now);
            let removed = !inner
                .tables
                .get(&meta.storage)
                .is_some_and(|t| t.objects.contains_key(&key));
            return Ok(DeleteOutcome {
                object: obj,
                removed,
            });
        }
        if !fins.is_empty() {
            if !is_deleting(&next) {
                set_meta(
                    &mut next,
                    "deletionTimestamp",
                    Some(json!(format_time(now))),
                );
                set_meta(&mut next, "deletionGracePeriodSeconds", Some(json!(0)));
            }
            let obj = if same_ignoring_rv(&next, &original) {
                Arc::new(original)
            } else {
                self.commit_update(inner, meta, key, current, next, now)?
            };
            if propagation == Propagation::Foreground {
                self.queue_dependents(inner, &uid, &mut work);
                work.push(Work::ReleaseForeground(uid));
                self.run_work(inner, &mut work, now);
            }
            return Ok(DeleteOutcome {
                object: obj,
                removed: false,
            });
        }
        let rv = inner.rv + 1;
        set_meta(&mut next, "resourceVersion", Some(json!(rv.to_string())));
        let stored = Arc::new(StoredObject::new(&meta.storage, &next)?);
        inner.rv = rv;
        self.remove(inner, &meta.storage, &key, stored, &mut work);
        self.run_work(inner, &mut work, now);
        Ok(DeleteOutcome {
            object: Arc::new(next),
            removed: true,
        })
    }

    /// Time-driven cleanup: expired pod grace periods, terminating namespaces, foreground owners.
    /// The server runs it periodically; a simulator on virtual time calls it after advancing.
    pub fn sweep(&self) {
        let now = self.clock.now();
        let mut inner = self.lock();
        let mut work = Vec::new();
        if self.config.pod_termination != PodTermination::KubeletConfirms {
            for t in inner.tables.values() {
                if t.meta.special != Special::Pod {
                    continue;
                }
                for (k, v) in &t.objects {
                    let m = v.meta();
                    if m.is_deleting()
                        && m.finalizers.is_empty()
                        && pod_grace_over(m, now, self.config.pod_termination)
                    {
                        work.push(Work::Delete(
                            t.meta.storage.clone(),
                            k.clone(),
                            Propagation::Background,
                            Some(0),
                        ));
                    }
                }
            }
        }
        let terminating: Vec<String> = inner
            .tables
            .values()
            .filter(|t| t.meta.special == Special::Namespace)
            .flat_map(|t| {
                t.objects
                    .values()
                    .filter(|v| v.meta().is_deleting())
                    .map(|v| v.meta().name.to_string())
            })
            .collect();
        let foreground: Vec<String> = inner
            .tables
            .values()
            .flat_map(|t| {
                t.objects.values().filter(|v| {
                    v.meta().is_deleting() && v.meta().has_finalizer(FOREGROUND_FINALIZER)
                })
            })
            .map(|v| v.meta().uid.to_string())
            .collect();
        work.extend(foreground.into_iter().map(Work::ReleaseForeground));
        self.run_work(&mut inner, &mut work, now);
        for ns in terminating {
            self.purge_namespace(&mut inner, &ns, now);
        }
    }

    fn purge_namespace(&self, inner: &mut Inner, ns: &str, now: chrono::DateTime<chrono::Utc>) {
        let mut work: Vec<Work> = Vec::new();
        let mut remaining = 0usize;
        for t in inner.tables.values() {
            if !t.meta.namespaced {
                continue;
            }
            for (k, v) in t
                .objects
                .range((ns.to_string(), String::new())..)
                .take_while(|(k, _)| k.0 == ns)
            {
                remaining += 1;
                if !v.meta().is_deleting() {
                    work.push(Work::Delete(
                        t.meta.storage.clone(),
                        k.clone(),
                        Propagation::Background,
                        None,
                    ));
                }
            }
        }
        self.run_work(inner, &mut work, now);
        if remaining > 0 {
            let still: usize = inner
                .tables
                .values()
                .filter(|t| t.meta.namespaced)
                .map(|t| {
                    t.objects
                        .range((ns.to_string(), String::new())..)
                        .take_while(|(k, _)| k.0 == ns)
                        .count()
                })
                .sum();
            if still > 0 {
                return;
            }
        }
        let ns_table = inner
            .tables
            .values()
            .find(|t| t.meta.special == Special::Namespace)
            .map(|t| t.meta.storage.clone());
        if let Some(storage) = ns_table {
            let key = (String::new(), ns.to_string());
            let current = inner
                .tables
                .get(&storage)
                .and_then(|t| t.objects.get(&key))
                .cloned();
            if let Some(current) = current
                && current.meta().is_deleting()
                && current.meta().finalizers.is_empty()
            {
                let rv = inner.rv + 1;
                let removed = current.value().and_then(|mut v| {
                    set_meta(&mut v, "resourceVersion", Some(json!(rv.to_string())));
                    StoredObject::new(&storage, &v)
                });
                match removed {
                    Ok(v) => {
                        inner.rv = rv;
                        let mut w = Vec::new();
                        self.remove(inner, &storage, &key, Arc::new(v), &mut w);
                        self.run_work(inner, &mut w, now);
                    }
                    Err(e) => tracing::error!(error = %e, ns, "removing a namespace failed"),
                }
            }
        }
    }

    fn orphan_dependents(&self, inner: &mut Inner, owner_uid: &str) {
        let deps: Vec<(String, Key)> = inner
            .dependents
            .get(owner_uid)
            .map(|s| s.iter().cloned().collect())
            .unwrap_or_default();
        for (storage, key) in deps {
            let Some(current) = inner
                .tables
                .get(&storage)
                .and_then(|t| t.objects.get(&key))
                .cloned()
            else {
                continue;
            };
            let rv = inner.rv + 1;
            let orphaned = current.value().and_then(|mut v| {
                if let Some(m) = metadata_mut(&mut v)
                    && let Some(refs) = m.get_mut("ownerReferences").and_then(Value::as_array_mut)
                {
                    refs.retain(|r| r.get("uid").and_then(Value::as_str) != Some(owner_uid));
                    if refs.is_empty() {
                        m.remove("ownerReferences");
                    }
                }
                set_meta(&mut v, "resourceVersion", Some(json!(rv.to_string())));
                StoredObject::new(&storage, &v)
            });
            match orphaned {
                Ok(v) => {
                    inner.rv = rv;
                    self.insert(inner, &storage, key, Arc::new(v), Some(current));
                }
                Err(e) => tracing::error!(error = %e, "orphaning a dependent failed"),
            }
        }
    }

    fn queue_dependents(&self, inner: &Inner, owner_uid: &str, work: &mut Vec<Work>) {
        if let Some(deps) = inner.dependents.get(owner_uid) {
            for (storage, key) in deps {
                work.push(Work::Delete(
                    storage.clone(),
                    key.clone(),
                    Propagation::Background,
                    None,
                ));
            }
        }
    }

    fn run_work(
        &self,
        inner: &mut Inner,
        work: &mut Vec<Work>,
        now: chrono::DateTime<chrono::Utc>,
    ) {
        let mut budget = 10_000_000usize;
        while let Some(item) = work.pop() {
            budget = budget.saturating_sub(1);
            if budget == 0 {
                tracing::error!("garbage collection did not converge; stopping this pass");
                return;
            }
            match item {
                Work::Delete(storage, key, propagation, grace) => {
                    let Some(meta) = inner.tables.get(&storage).map(|t| t.meta.clone()) else {
                        continue;
                    };
                    let Some(current) = inner
                        .tables
                        .get(&storage)
                        .and_then(|t| t.objects.get(&key))
                        .cloned()
                    else {
                        continue;
                    };
                    let opts = DeleteOptions {
                        propagation: Some(propagation),
                        grace_period_seconds: grace,
                        ..DeleteOptions::default()
                    };
                    // Nested deletes run their own work lists; the depth is bounded by ownership chains.
                    if let Err(e) =
                        self.delete_locked(inner, &meta, key, current, &opts, propagation, now)
                    {
                        tracing::error!(error = %e, "garbage-collecting an object failed");
                    }
                }
                Work::ReleaseForeground(uid) => {
                    let Some((storage, key)) = inner.by_uid.get(&uid).cloned() else {
                        continue;
                    };
                    let has_deps = inner.dependents.get(&uid).is_some_and(|d| {
                        d.iter().any(|(s, k)| {
                            inner
                                .tables
                                .get(s)
                                .is_some_and(|t| t.objects.contains_key(k))
                        })
                    });
                    if has_deps {
                        continue;
                    }
                    let Some(meta) = inner.tables.get(&storage).map(|t| t.meta.clone()) else {
                        continue;
                    };
                    let Some(current) = inner
                        .tables
                        .get(&storage)
                        .and_then(|t| t.objects.get(&key))
                        .cloned()
                    else {
                        continue;
                    };
                    if !current.meta().has_finalizer(FOREGROUND_FINALIZER) {
                        continue;
                    }
                    let mut next = match current.value() {
                        Ok(v) => v,
                        Err(e) => {
                            tracing::error!(error = %e, "releasing a foreground owner failed");
                            continue;
                        }
                    };
                    let kept: Vec<String> = current
                        .meta()
                        .finalizers
                        .iter()
                        .filter(|f| &***f != FOREGROUND_FINALIZER)
                        .map(|f| f.to_string())
                        .collect();
                    set_meta(
                        &mut next,
                        "finalizers",
                        if kept.is_empty() {
                            None
                        } else {
                            Some(json!(kept))
                        },
                    );
                    if let Err(e) = self.commit_update(inner, &meta, key, current, next, now) {
                        tracing::error!(error = %e, "releasing a foreground owner failed");
                    }
                }
            }
        }
    }

    fn insert(
        &self,
        inner: &mut Inner,
        storage: &str,
        key: Key,
        obj: Arc<StoredObject>,
        prev: Option<Arc<StoredObject>>,
    ) {
        let rv = inner.rv;
        if let Some(prev) = &prev {
            unindex(inner, prev.meta(), storage, &key);
        }
        index(inner, obj.meta(), storage, &key);
        let kind = if prev.is_some() {
            EventType::Modified
        } else {
            EventType::Added
        };
        let Some(t) = inner.tables.get_mut(storage) else {
            tracing::error!(storage, "insert into a missing table");
            return;
        };
        t.objects.insert(key, obj.clone());
        push_event(
            t,
            StoreEvent {
                kind,
                object: obj,
                prev,
                rv,
            },
            self.config.watch_history,
        );
    }

    /// Removes an object (already stamped with the deletion revision) and queues garbage collection.
    fn remove(
        &self,
        inner: &mut Inner,
        storage: &str,
        key: &Key,
        final_obj: Arc<StoredObject>,
        work: &mut Vec<Work>,
    ) {
        let rv = inner.rv;
        let prev = inner
            .tables
            .get_mut(storage)
            .and_then(|t| t.objects.remove(key));
        let Some(prev) = prev else {
            return;
        };
        unindex(inner, prev.meta(), storage, key);
        if let Some(t) = inner.tables.get_mut(storage) {
            push_event(
                t,
                StoreEvent {
                    kind: EventType::Deleted,
                    object: final_obj,
                    prev: Some(prev.clone()),
                    rv,
                },
                self.config.watch_history,
            );
        }
        let uid = prev.meta().uid.to_string();
        // Dependents whose every owner is now gone are collected.
        if let Some(deps) = inner.dependents.get(&uid) {
            for (s, k) in deps {
                let Some(dep) = inner.tables.get(s).and_then(|t| t.objects.get(k)) else {
                    continue;
                };
                let alive = dep
                    .meta()
                    .owner_uids
                    .iter()
                    .any(|o| inner.by_uid.contains_key(&**o));
                if !alive {
                    work.push(Work::Delete(
                        s.clone(),
                        k.clone(),
                        Propagation::Background,
                        None,
                    ));
                }
            }
        }
        // Owners waiting in foreground deletion may now be free.
        for owner in prev.meta().owner_uids.iter() {
            work.push(Work::ReleaseForeground(owner.to_string()));
        }
    }

    /// All objects of a table, parsed (for small tables; lists serve large ones as stored).
    pub fn all(&self, storage: &str) -> Vec<Arc<Value>> {
        let stored: Vec<Arc<StoredObject>> = self
            .lock()
            .tables
            .get(storage)
            .map(|t| t.objects.values().cloned().collect())
            .unwrap_or_default();
        stored
            .iter()
            .filter_map(|s| s.value().ok())
            .map(Arc::new)
            .collect()
    }

    /// Number of objects in a table.
    pub fn count(&self, storage: &str) -> usize {
        self.lock()
            .tables
            .get(storage)
            .map(|t| t.objects.len())
            .unwrap_or(0)
    }
}

fn push_event(t: &mut Table, event: StoreEvent, cap: usize) {
    let event = Arc::new(event);
    t.history.push_back(event.clone());
    while t.history.len() > cap.max(1) {
        if let Some(old) = t.history.pop_front() {
            t.compacted_rv = t.compacted_rv.max(old.rv);
        }
    }
    // No receivers is fine: nobody is watching.
    if let Some(tx) = &t.tx {
        let _ = tx.send(event);
    }
}

fn index(inner: &mut Inner, obj: &StoredMeta, storage: &str, key: &Key) {
    let uid = &*obj.uid;
    if !uid.is_empty() {
        inner
            .by_uid
            .insert(uid.to_string(), (storage.to_string(), key.clone()));
    }
    for owner in obj.owner_uids.iter() {
        inner
            .dependents
            .entry(owner.to_string())
            .or_default()
            .insert((storage.to_string(), key.clone()));
    }
}

fn unindex(inner: &mut Inner, obj: &StoredMeta, storage: &str, key: &Key) {
    let uid = &*obj.uid;
    if inner
        .by_uid
        .get(uid)
        .is_some_and(|(s, k)| s == storage && k == key)
    {
        inner.by_uid.remove(uid);
    }
    for owner in obj.owner_uids.iter() {
        if let Some(set) = inner.dependents.get_mut(&**owner) {
            set.remove(&(storage.to_string(), key.clone()));
            if set.is_empty() {
                inner.dependents.remove(&**owner);
            }
        }
    }
}

fn check_namespace_writable(
    inner: &Inner,
    ns: &str,
    meta: &TableMeta,
    name: &str,
) -> Result<(), ApiError> {
    if ns.is_empty() {
        return Err(ApiError::bad_request(
            "the server could not find the requested resource: a namespace is required",
        ));
    }
    let ns_obj = inner
        .tables
        .values()
        .find(|t| t.meta.special == Special::Namespace)
        .and_then(|t| t.objects.get(&(String::new(), ns.to_string())));
    match ns_obj {
        None => Err(ApiError::not_found(
            &QualifiedResource::new("", "namespaces"),
            ns,
        )),
        Some(n) if n.meta().is_deleting() => Err(ApiError::forbidden(
            &meta.qualified,
            name,
            &format!(
                "unable to create new content in namespace {ns} because it is being terminated"
            ),
        )),
        Some(_) => Ok(()),
    }
}

/// The grace period a pod delete gets: explicit, else the pod's, else 30s; 0 for pods that never
/// ran on a node or already finished.
fn pod_grace(pod: &Value, requested: Option<i64>, mode: PodTermination) -> i64 {
    if mode == PodTermination::Immediate {
        return 0;
    }
    let bound = str_at(pod, &["spec", "nodeName"]).is_some_and(|n| !n.is_empty());
    let phase = str_at(pod, &["status", "phase"]).unwrap_or("");
    if !bound || phase == "Succeeded" || phase == "Failed" {
        return 0;
    }
    requested
        .or_else(|| object::i64_at(pod, &["spec", "terminationGracePeriodSeconds"]))
        .unwrap_or(30)
        .max(0)
}

fn pod_grace_over(
    pod: &StoredMeta,
    now: chrono::DateTime<chrono::Utc>,
    mode: PodTermination,
) -> bool {
    if pod.deletion_grace_period_seconds == Some(0) {
        return true;
    }
    match mode {
        PodTermination::KubeletConfirms => false,
        PodTermination::Immediate => true,
        PodTermination::GraceExpiry => pod
            .deletion_timestamp
            .as_deref()
            .and_then(parse_time)
            .is_some_and(|t| t <= now),
    }
}

/// Compares two objects ignoring `metadata.resourceVersion`.
fn same_ignoring_rv(a: &Value, b: &Value) -> bool {
    let (Some(ao), Some(bo)) = (a.as_object(), b.as_object()) else {
        return a == b;
    };
    if ao.len() != bo.len() {
        return false;
    }
    for (k, av) in ao {
        let Some(bv) = bo.get(k) else {
            return false;
        };
        if k == "metadata" {
            let (Some(am), Some(bm)) = (av.as_object(), bv.as_object()) else {
                if av != bv {
                    return false;
                }
                continue;
            };
            let strip = |m: &Map<String, Value>| -> Vec<(String, Value)> {
                m.iter()
                    .filter(|(k, _)| k.as_str() != "resourceVersion")
                    .map(|(k, v)| (k.clone(), v.clone()))
                    .collect()
            };
            if strip(am) != strip(bm) {
                return false;
            }
        } else if av != bv {
            return false;
        }
    }
    true
}

/// Whether anything outside `metadata` (and `status` when it is a subresource) differs.
fn spec_changed(old: &Value, new: &Value, has_status: bool) -> bool {
    let empty = Map::new();
    let o = old.as_object().unwrap_or(&empty);
    let n = new.as_object().unwrap_or(&empty);
    let skip = |k: &str| {
        k == "metadata" || k == "apiVersion" || k == "kind" || (has_status && k == "status")
    };
    let keys: BTreeSet<&String> = o.keys().chain(n.keys()).filter(|k| !skip(k)).collect();
    keys.into_iter().any(|k| o.get(k) != n.get(k))
}

/// Applies the server's update rules to a proposed object: immutable metadata, status/spec
/// isolation, generation, and no new finalizers on a deleting object.
pub fn prepare_update(
    meta: &TableMeta,
    old: &Value,
    proposed: Value,
    target: UpdateTarget,
) -> Result<Value, ApiError> {
    if !proposed.is_object() {
        return Err(ApiError::bad_request("the object is not a JSON object"));
    }
    let mut new = match target {
        UpdateTarget::Status => {
            let mut v = old.clone();
            let status = proposed.get("status").cloned();
            let managed = at(&proposed, &["metadata", "managedFields"]).cloned();
            if let Some(obj) = v.as_object_mut() {
                match status {
                    Some(s) => {
                        obj.insert("status".into(), s);
                    }
                    None => {
                        obj.remove("status");
                    }
                }
            }
            if managed.is_some() {
                set_meta(&mut v, "managedFields", managed);
            }
            v
        }
        UpdateTarget::Main | UpdateTarget::All => proposed,
    };
    if target == UpdateTarget::Main
        && meta.has_status
        && let Some(obj) = new.as_object_mut()
    {
        match old.get("status") {
            Some(s) => {
                obj.insert("status".into(), s.clone());
            }
            None => {
                obj.remove("status");
            }
        }
    }
    for key in [
        "name",
        "namespace",
        "uid",
        "creationTimestamp",
        "deletionTimestamp",
        "deletionGracePeriodSeconds",
        "generation",
    ] {
        let v = at(old, &["metadata", key]).cloned();
        set_meta(&mut new, key, v);
    }
    if target != UpdateTarget::Status && spec_changed(old, &new, meta.has_status) {
        let generation = object::i64_at(old, &["metadata", "generation"]).unwrap_or(0) + 1;
        set_meta(&mut new, "generation", Some(json!(generation)));
    }
    if is_deleting(old) {
        let before: BTreeSet<String> = finalizers(old).into_iter().collect();
        let added: Vec<String> = finalizers(&new)
            .into_iter()
            .filter(|f| !before.contains(f))
            .collect();
        if !added.is_empty() {
            let list = added
                .iter()
                .map(|f| format!("{f:?}"))
                .collect::<Vec<_>>()
                .join(", ");
            return Err(ApiError::invalid(
                &meta.qualified.group,
                &meta.kind,
                object::name(old),
                vec![StatusCause {
                    reason: "FieldValueForbidden".into(),
                    message: format!(
                        "Forbidden: no new finalizers can be added if the object is being deleted, found new finalizers []string{{{list}}}"
                    ),
                    field: "metadata.finalizers".into(),
                }],
            ));
        }
    }
    if let Some(m) = metadata_mut(&mut new)
        && m.get("finalizers")
            .and_then(Value::as_array)
            .is_some_and(|a| a.is_empty())
    {
        m.remove("finalizers");
    }
    Ok(new)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::apiserver::object::Clock;
    use std::sync::Mutex as StdMutex;

    #[derive(Debug)]
    struct TestClock(StdMutex<chrono::DateTime<chrono::Utc>>);
    impl Clock for TestClock {
        fn now(&self) -> chrono::DateTime<chrono::Utc> {
            *self.0.lock().unwrap()
        }
    }
    impl TestClock {
        fn advance(&self, secs: i64) {
            let mut t = self.0.lock().unwrap();
            *t += Duration::seconds(secs);
        }
    }

    fn table(
        storage: &str,
        kind: &str,
        namespaced: bool,
        has_status: bool,
        special: Special,
    ) -> TableMeta {
        TableMeta {
            storage: storage.into(),
            qualified: QualifiedResource::new("", storage),
            kind: kind.into(),
            namespaced,
            has_status,
            special,
        }
    }

    fn store_with(mode: PodTermination) -> (Store, Arc<TestClock>) {
        let clock = Arc::new(TestClock(StdMutex::new(
            chrono::DateTime::parse_from_rfc3339("2026-01-01T00:00:00Z")
                .unwrap()
                .with_timezone(&chrono::Utc),
        )));
        let store = Store::new(
            StoreConfig {
                pod_termination: mode,
                watch_history: 4,
                ..StoreConfig::default()
            },
            clock.clone(),
        );
        store.register_table(table(
            "namespaces",
            "Namespace",
            false,
            true,
            Special::Namespace,
        ));
        store.register_table(table("pods", "Pod", true, true, Special::Pod));
        store.register_table(table("configmaps", "ConfigMap", true, false, Special::None));
        store.register_table(table(
            "replicasets",
            "ReplicaSet",
            true,
            true,
            Special::None,
        ));
        store
            .create(
                "namespaces",
                "",
                json!({"metadata": {"name": "default"}}),
                &WriteOptions::default(),
            )
            .unwrap();
        (store, clock)
    }

    fn w() -> WriteOptions {
        WriteOptions::default()
    }

    #[test]
    fn create_fills_metadata_and_rejects_duplicates() {
        let (s, _) = store_with(PodTermination::GraceExpiry);
        let cm = s
            .create(
                "configmaps",
                "default",
                json!({"metadata": {"name": "a"}, "data": {}}),
                &w(),
            )
            .unwrap();
        assert_eq!(cm["metadata"]["generation"], 1);
        assert_eq!(cm["metadata"]["namespace"], "default");
        assert_eq!(cm["metadata"]["creationTimestamp"], "2026-01-01T00:00:00Z");
        assert!(!object::uid(&cm).is_empty());
        let err = s
            .create(
                "configmaps",
                "default",
                json!({"metadata": {"name": "a"}}),
                &w(),
            )
            .unwrap_err();
        assert_eq!((err.code, err.reason.as_str()), (409, "AlreadyExists"));
        let err = s
            .create(
                "configmaps",
                "nope",
                json!({"metadata": {"name": "a"}}),
                &w(),
            )
            .unwrap_err();
        assert_eq!(err.message, "namespaces \"nope\" not found");
        let generated = s
            .create(
                "configmaps",
                "default",
                json!({"metadata": {"generateName": "x-"}}),
                &w(),
            )
            .unwrap();
        assert!(object::name(&generated).starts_with("x-") && object::name(&generated).len() == 7);
    }

    #[test]
    fn update_conflicts_bumps_generation_and_isolates_status() {
        let (s, _) = store_with(PodTermination::GraceExpiry);
        let rs = s
            .create("replicasets", "default", json!({"metadata": {"name": "r"}, "spec": {"replicas": 1}, "status": {"replicas": 0}}), &w())
            .unwrap();
        let stale = object::resource_version(&rs).to_string();
        let upd = s
            .update_with(
                "replicasets",
                "default",
                "r",
                UpdateTarget::Main,
                &w(),
                |cur| {
                    let mut v = (**cur).clone();
                    v["spec"]["replicas"] = json!(2);
                    v["status"]["replicas"] = json!(9);
                    Ok(v)
                },
            )
            .unwrap();
        assert_eq!(upd["metadata"]["generation"], 2);
        assert_eq!(upd["status"]["replicas"], 0);
        let err = s
            .update_with(
                "replicasets",
                "default",
                "r",
                UpdateTarget::Main,
                &w(),
                |cur| {
                    let mut v = (**cur).clone();
                    v["metadata"]["resourceVersion"] = json!(stale.clone());
                    Ok(v)
                },
            )
            .unwrap_err();
        assert_eq!(err.code, 409);
        let st = s
            .update_with(
                "replicasets",
                "default",
                "r",
                UpdateTarget::Status,
                &w(),
                |cur| {
                    let mut v = (**cur).clone();
                    v["spec"]["replicas"] = json!(5);
                    v["status"]["replicas"] = json!(2);
                    Ok(v)
                },
            )
            .unwrap();
        assert_eq!(
            (
                st["spec"]["replicas"].clone(),
                st["status"]["replicas"].clone()
            ),
            (json!(2), json!(2))
        );
        assert_eq!(st["metadata"]["generation"], 2);
        // A no-op update keeps the revision.
        let same = s
            .update_with(
                "replicasets",
                "default",
                "r",
                UpdateTarget::Main,
                &w(),
                |cur| Ok((**cur).clone()),
            )
            .unwrap();
        assert_eq!(
            object::resource_version(&same),
            object::resource_version(&st)
        );
    }

    #[test]
    fn finalizers_hold_deletion_until_removed() {
        let (s, _) = store_with(PodTermination::GraceExpiry);
        s.create(
            "configmaps",
            "default",
            json!({"metadata": {"name": "f", "finalizers": ["a"]}}),
            &w(),
        )
        .unwrap();
        let out = s
            .delete("configmaps", "default", "f", &DeleteOptions::default())
            .unwrap();
        assert!(!out.removed);
        assert!(is_deleting(&out.object));
        let err = s
            .update_with(
                "configmaps",
                "default",
                "f",
                UpdateTarget::Main,
                &w(),
                |cur| {
                    let mut v = (**cur).clone();
                    v["metadata"]["finalizers"] = json!(["a", "b"]);
                    Ok(v)
                },
            )
            .unwrap_err();
        assert_eq!(err.code, 422);
        s.update_with(
            "configmaps",
            "default",
            "f",
            UpdateTarget::Main,
            &w(),
            |cur| {
                let mut v = (**cur).clone();
                v["metadata"]["finalizers"] = json!([]);
                Ok(v)
            },
        )
        .unwrap();
        assert_eq!(s.get("configmaps", "default", "f").unwrap_err().code, 404);
    }

    #[test]
    fn bound_pods_terminate_gracefully() {
        let (s, clock) = store_with(PodTermination::GraceExpiry);
        s.create("pods", "default", json!({"metadata": {"name": "bound"}, "spec": {"nodeName": "n1", "terminationGracePeriodSeconds": 10}}), &w()).unwrap();
        s.create(
            "pods",
            "default",
            json!({"metadata": {"name": "pending"}, "spec": {}}),
            &w(),
        )
        .unwrap();
        assert!(
            s.delete("pods", "default", "pending", &DeleteOptions::default())
                .unwrap()
                .removed
        );
        let out = s
            .delete("pods", "default", "bound", &DeleteOptions::default())
            .unwrap();
        assert!(!out.removed);
        assert_eq!(out.object["metadata"]["deletionGracePeriodSeconds"], 10);
        s.sweep();
        assert!(s.get("pods", "default", "bound").is_ok());
        clock.advance(11);
        s.sweep();
        assert_eq!(s.get("pods", "default", "bound").unwrap_err().code, 404);
    }

    #[test]
    fn kubelet_confirms_with_zero_grace() {
        let (s, clock) = store_with(PodTermination::KubeletConfirms);
        s.create(
            "pods",
            "default",
            json!({"metadata": {"name": "p"}, "spec": {"nodeName": "n1"}}),
            &w(),
        )
        .unwrap();
        s.delete("pods", "default", "p", &DeleteOptions::default())
            .unwrap();
        clock.advance(100);
        s.sweep();
        assert!(s.get("pods", "default", "p").is_ok());
        let out = s
            .delete(
                "pods",
                "default",
                "p",
                &DeleteOptions {
                    grace_period_seconds: Some(0),
                    ..Default::default()
                },
            )
            .unwrap();
        assert!(out.removed);
    }

    #[test]
    fn owner_deletion_collects_dependents() {
        let (s, _) = store_with(PodTermination::Immediate);
        let rs = s
            .create(
                "replicasets",
                "default",
                json!({"metadata": {"name": "r"}}),
                &w(),
            )
            .unwrap();
        let owner = json!([{"apiVersion": "apps/v1", "kind": "ReplicaSet", "name": "r", "uid": object::uid(&rs), "controller": true}]);
        s.create(
            "pods",
            "default",
            json!({"metadata": {"name": "p1", "ownerReferences": owner}}),
            &w(),
        )
        .unwrap();
        s.create(
            "pods",
            "default",
            json!({"metadata": {"name": "p2", "ownerReferences": owner}}),
            &w(),
        )
        .unwrap();
        s.delete("replicasets", "default", "r", &DeleteOptions::default())
            .unwrap();
        assert_eq!(s.count("pods"), 0);
        let rs = s
            .create(
                "replicasets",
                "default",
                json!({"metadata": {"name": "r"}}),
                &w(),
            )
            .unwrap();
        let owner = json!([{"apiVersion": "apps/v1", "kind": "ReplicaSet", "name": "r", "uid": object::uid(&rs)}]);
        s.create(
            "pods",
            "default",
            json!({"metadata": {"name": "p1", "ownerReferences": owner}}),
            &w(),
        )
        .unwrap();
        s.delete(
            "replicasets",
            "default",
            "r",
            &DeleteOptions {
                propagation: Some(Propagation::Orphan),
                ..Default::default()
            },
        )
        .unwrap();
        let p = s.get("pods", "default", "p1").unwrap();
        assert!(p["metadata"].get("ownerReferences").is_none());
        // Foreground: owner disappears only after dependents.
        let rs = s
            .create(
                "replicasets",
                "default",
                json!({"metadata": {"name": "f"}}),
                &w(),
            )
            .unwrap();
        let owner = json!([{"apiVersion": "apps/v1", "kind": "ReplicaSet", "name": "f", "uid": object::uid(&rs)}]);
        s.create(
            "pods",
            "default",
            json!({"metadata": {"name": "fp", "ownerReferences": owner}}),
            &w(),
        )
        .unwrap();
        let out = s
            .delete(
                "replicasets",
                "default",
                "f",
                &DeleteOptions {
                    propagation: Some(Propagation::Foreground),
                    ..Default::default()
                },
            )
            .unwrap();
        assert!(!out.removed);
        assert_eq!(s.get("pods", "default", "fp").unwrap_err().code, 404);
        assert_eq!(s.get("replicasets", "default", "f").unwrap_err().code, 404);
    }

    #[test]
    fn watch_history_window_and_backlog() {
        let (s, _) = store_with(PodTermination::Immediate);
        let start = s.current_rv();
        for i in 0..3 {
            s.create(
                "configmaps",
                "default",
                json!({"metadata": {"name": format!("c{i}")}}),
                &w(),
            )
            .unwrap();
        }
        let ws = s.watch("configmaps", WatchFrom::Rv(start)).unwrap();
        assert_eq!(ws.backlog.len(), 3);
        for i in 3..10 {
            s.create(
                "configmaps",
                "default",
                json!({"metadata": {"name": format!("c{i}")}}),
                &w(),
            )
            .unwrap();
        }
        let err = s.watch("configmaps", WatchFrom::Rv(start)).unwrap_err();
        assert_eq!(err.code, 410);
        s.compact();
        let rv = s.current_rv();
        assert!(s.watch("configmaps", WatchFrom::Rv(rv)).is_ok());
        assert_eq!(
            s.watch("configmaps", WatchFrom::Rv(rv - 1))
                .unwrap_err()
                .code,
            410
        );
    }

    #[test]
    fn namespace_deletion_purges_content() {
        let (s, _) = store_with(PodTermination::Immediate);
        s.create("namespaces", "", json!({"metadata": {"name": "tmp"}}), &w())
            .unwrap();
        s.create(
            "configmaps",
            "tmp",
            json!({"metadata": {"name": "a"}}),
            &w(),
        )
        .unwrap();
        let out = s
            .delete("namespaces", "", "tmp", &DeleteOptions::default())
            .unwrap();
        assert!(out.removed);
        assert_eq!(s.count("configmaps"), 0);
    }
}
