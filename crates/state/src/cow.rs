//! A sharded copy-on-write map: cloning it (taking a snapshot) copies one `Arc` per shard, and a
//! write after a snapshot copies only the shard it touches, so snapshots stay cheap while the
//! live state keeps changing.

use std::collections::BTreeMap;
use std::sync::Arc;

/// Keys are shared strings: a shard copy clones pointers, not text.
pub type Key = Arc<str>;

/// Shard count for the large maps (pods, nodes, NodeClaims, usage). A write after a snapshot
/// copies about `len / LARGE` entries.
pub(crate) const LARGE: usize = 256;
/// Shard count for the small maps (NodePools, DaemonSets, StorageClasses…).
pub(crate) const SMALL: usize = 4;

/// A map from [`Key`] to `V`, split into shards by a fixed hash of the key.
#[derive(Debug)]
pub(crate) struct CowMap<V> {
    shards: Vec<Arc<BTreeMap<Key, V>>>,
    len: usize,
}

impl<V> Clone for CowMap<V> {
    fn clone(&self) -> Self {
        CowMap {
            shards: self.shards.clone(),
            len: self.len,
        }
    }
}

/// FNV-1a: fixed across runs, so iteration order is deterministic.
fn shard_of(key: &str, shards: usize) -> usize {
    let mut h: u64 = 0xcbf2_9ce4_8422_2325;
    for b in key.as_bytes() {
        h ^= u64::from(*b);
        h = h.wrapping_mul(0x0100_0000_01b3);
    }
    (h % shards.max(1) as u64) as usize
}

impl<V: Clone> CowMap<V> {
    /// An empty map with `shards` shards.
    pub(crate) fn new(shards: usize) -> Self {
        CowMap {
            shards: (0..shards.max(1))
                .map(|_| Arc::new(BTreeMap::new()))
                .collect(),
            len: 0,
        }
    }

    fn shard(&self, key: &str) -> Option<&BTreeMap<Key, V>> {
        self.shards
            .get(shard_of(key, self.shards.len()))
            .map(|s| &**s)
    }

    fn shard_mut(&mut self, key: &str) -> Option<&mut BTreeMap<Key, V>> {
        let i = shard_of(key, self.shards.len());
        self.shards.get_mut(i).map(Arc::make_mut)
    }

    /// The value under `key`.
    pub(crate) fn get(&self, key: &str) -> Option<&V> {
        self.shard(key).and_then(|s| s.get(key))
    }

    /// Whether `key` is present.
    pub(crate) fn contains_key(&self, key: &str) -> bool {
        self.get(key).is_some()
    }

    /// The stored key equal to `key` (to share its allocation).
    pub(crate) fn key(&self, key: &str) -> Option<&Key> {
        self.shard(key)
            .and_then(|s| s.get_key_value(key))
            .map(|(k, _)| k)
    }

    /// Mutable access; copies the shard first if a snapshot still shares it.
    pub(crate) fn get_mut(&mut self, key: &str) -> Option<&mut V> {
        // Look first so a miss never copies a shared shard.
        if !self.contains_key(key) {
            return None;
        }
        self.shard_mut(key).and_then(|s| s.get_mut(key))
    }

    /// Inserts, returning the previous value.
    pub(crate) fn insert(&mut self, key: Key, value: V) -> Option<V> {
        let old = self.shard_mut(&key).and_then(|s| s.insert(key, value));
        if old.is_none() {
            self.len += 1;
        }
        old
    }

    /// Removes, returning the value.
    pub(crate) fn remove(&mut self, key: &str) -> Option<V> {
        if !self.contains_key(key) {
            return None;
        }
        let old = self.shard_mut(key).and_then(|s| s.remove(key));
        if old.is_some() {
            self.len -= 1;
        }
        old
    }

    /// Number of entries.
    pub(crate) fn len(&self) -> usize {
        self.len
    }

    /// Every entry: shard by shard, key order within a shard (deterministic, not sorted).
    pub(crate) fn iter(&self) -> impl Iterator<Item = (&Key, &V)> {
        self.shards.iter().flat_map(|s| s.iter())
    }

    /// Every value (same order as [`CowMap::iter`]).
    pub(crate) fn values(&self) -> impl Iterator<Item = &V> {
        self.iter().map(|(_, v)| v)
    }

    /// Every key (same order as [`CowMap::iter`]).
    pub(crate) fn keys(&self) -> impl Iterator<Item = &Key> {
        self.iter().map(|(k, _)| k)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn snapshot_is_unaffected_by_later_writes_and_copies_one_shard() {
        let mut live: CowMap<i32> = CowMap::new(8);
        for i in 0..100 {
            live.insert(Key::from(format!("k{i}")), i);
        }
        let snap = live.clone();
        live.insert(Key::from("k1"), -1);
        live.remove("k2");
        live.insert(Key::from("new"), 7);
        assert_eq!(snap.get("k1"), Some(&1));
        assert_eq!(snap.get("k2"), Some(&2));
        assert_eq!(snap.get("new"), None);
        assert_eq!(snap.len(), 100);
        assert_eq!(live.get("k1"), Some(&-1));
        assert_eq!(live.len(), 100);
        let shared = live
            .shards
            .iter()
            .zip(&snap.shards)
            .filter(|(a, b)| Arc::ptr_eq(a, b))
            .count();
        assert!(
            shared >= 5,
            "only touched shards were copied: {shared} of 8 shared"
        );
        // A miss must not copy a shared shard.
        let snap2 = live.clone();
        assert_eq!(live.get_mut("absent"), None);
        assert_eq!(live.remove("absent"), None);
        assert!(
            live.shards
                .iter()
                .zip(&snap2.shards)
                .all(|(a, b)| Arc::ptr_eq(a, b))
        );
    }

    #[test]
    fn iteration_order_is_deterministic() {
        let build = || {
            let mut m: CowMap<()> = CowMap::new(16);
            for i in (0..50).rev() {
                m.insert(Key::from(format!("x{i}")), ());
            }
            m.keys().map(|k| k.to_string()).collect::<Vec<_>>()
        };
        assert_eq!(build(), build());
    }
}
