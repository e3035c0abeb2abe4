//! Rendered-response cache for object reads.
//!
//! A hot object (a dashboard everyone watches, a bright transient) is read far more often than
//! it changes; rendering a 1,000-point light curve means decoding the stored state and writing
//! ~350 kB of JSON. The cache keeps the rendered bytes per (object, route and query), bounded in
//! bytes (LRU by object), and drops an object's entries when the hub publishes a change to it.
//!
//! Correctness under concurrent updates: every object key maps to one of [`STRIPES`] generation
//! counters, bumped on each invalidation. A reader notes the generation before it reads the
//! state and inserts its rendering only if the generation is unchanged afterwards, so a
//! rendering of an older version can never be cached after the update that replaced it.

use bytes::Bytes;
use lru::LruCache;
use parking_lot::Mutex;
use std::collections::HashMap;
use std::hash::{BuildHasher, RandomState};
use std::sync::atomic::{AtomicU64, Ordering};

const STRIPES: usize = 1024;

#[derive(Clone)]
pub struct Cached {
    pub content_type: &'static str,
    pub body: Bytes,
}

struct Variants {
    map: HashMap<String, Cached>,
    bytes: usize,
}

struct Inner {
    lru: LruCache<String, Variants>,
    bytes: usize,
}

pub struct ResponseCache {
    inner: Mutex<Inner>,
    max_bytes: usize,
    generations: Box<[AtomicU64]>,
    hasher: RandomState,
}

impl ResponseCache {
    pub fn new(max_bytes: usize) -> ResponseCache {
        ResponseCache {
            inner: Mutex::new(Inner { lru: LruCache::unbounded(), bytes: 0 }),
            max_bytes,
            generations: (0..STRIPES).map(|_| AtomicU64::new(0)).collect(),
            hasher: RandomState::new(),
        }
    }

    fn stripe(&self, key: &str) -> &AtomicU64 {
        &self.generations[(self.hasher.hash_one(key) as usize) % STRIPES]
    }

    /// Note this before reading the state a rendering will come from.
    pub fn generation(&self, key: &str) -> u64 {
        self.stripe(key).load(Ordering::Acquire)
    }

    pub fn get(&self, key: &str, variant: &str) -> Option<Cached> {
        if self.max_bytes == 0 {
            return None;
        }
        self.inner.lock().lru.get(key).and_then(|v| v.map.get(variant).cloned())
    }

    /// Caches a rendering made from state read after `generation(key)` returned `generation`.
    pub fn insert(&self, key: &str, variant: &str, generation: u64, value: Cached) {
        let size = value.body.len() + variant.len() + key.len();
        if size > self.max_bytes / 4 {
            return; // one response may not crowd out the rest
        }
        let mut inner = self.inner.lock();
        // Checked under the lock: `invalidate` bumps the generation before taking it.
        if self.generation(key) != generation {
            return;
        }
        let entry = inner.lru.get_or_insert_mut(key.to_owned(), || Variants { map: HashMap::new(), bytes: 0 });
        if let Some(old) = entry.map.insert(variant.to_owned(), value) {
            entry.bytes -= old.body.len() + variant.len() + key.len();
            inner.bytes -= old.body.len() + variant.len() + key.len();
        }
        let entry = inner.lru.get_mut(key).expect("just inserted");
        entry.bytes += size;
        inner.bytes += size;
        while inner.bytes > self.max_bytes {
            match inner.lru.pop_lru() {
                Some((_, v)) => inner.bytes -= v.bytes,
                None => break,
            }
        }
    }

    /// Drops every rendering of `key` (the object changed).
    pub fn invalidate(&self, key: &str) {
        self.stripe(key).fetch_add(1, Ordering::AcqRel);
        let mut inner = self.inner.lock();
        if let Some(v) = inner.lru.pop(key) {
            inner.bytes -= v.bytes;
        }
    }

    /// Drops every rendering (a partition stopped or started being hosted here: renderings of
    /// its objects could outlive the updates this node no longer sees).
    pub fn clear(&self) {
        for g in self.generations.iter() {
            g.fetch_add(1, Ordering::AcqRel);
        }
        let mut inner = self.inner.lock();
        inner.lru.clear();
        inner.bytes = 0;
    }

    pub fn bytes(&self) -> usize {
        self.inner.lock().bytes
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn body(n: usize) -> Cached {
        Cached { content_type: "application/json", body: Bytes::from(vec![b'x'; n]) }
    }

    #[test]
    fn hit_miss_invalidate() {
        let c = ResponseCache::new(1 << 20);
        let g = c.generation("ztf:A");
        c.insert("ztf:A", "lc?", g, body(10));
        assert_eq!(c.get("ztf:A", "lc?").unwrap().body.len(), 10);
        assert!(c.get("ztf:A", "lc?band=g").is_none());
        c.invalidate("ztf:A");
        assert!(c.get("ztf:A", "lc?").is_none());
        assert_eq!(c.bytes(), 0);
    }

    #[test]
    fn a_rendering_that_raced_an_update_is_not_cached() {
        let c = ResponseCache::new(1 << 20);
        let g = c.generation("ztf:A");
        // ...the reader reads version v; meanwhile v+1 is applied and published:
        c.invalidate("ztf:A");
        c.insert("ztf:A", "lc?", g, body(10));
        assert!(c.get("ztf:A", "lc?").is_none());
    }

    #[test]
    fn bounded_in_bytes_least_recent_object_first() {
        let c = ResponseCache::new(4000);
        for k in ["a", "b", "c", "d", "e"] {
            let g = c.generation(k);
            c.insert(k, "v", g, body(900));
        }
        assert!(c.bytes() <= 4000);
        assert!(c.get("a", "v").is_none(), "oldest evicted");
        assert!(c.get("e", "v").is_some());
        let g = c.generation("big");
        c.insert("big", "v", g, body(2000));
        assert!(c.get("big", "v").is_none(), "a response over a quarter of the budget is not cached");
    }
}
