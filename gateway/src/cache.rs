//! Rendered-response cache for object reads.
//!
//! A hot object (a dashboard everyone watches, a bright transient) is read far more often than
//! it changes; rendering a 1,000-point light curve means decoding the stored state and writing
//! ~350 kB of JSON. The cache keeps the rendered bytes per (object, route and query), bounded in
//! bytes (LRU by object), and drops an object's entries when the hub publishes a change to it.
//!
//! A miss is made once: concurrent requests for the same rendering that is not cached yet wait
//! for the first one to make it ([`Flights`]) instead of each decoding, rendering and
//! compressing the same object — what a hot object's readers would all do right after each of
//! its updates.
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
use std::sync::Arc;

const STRIPES: usize = 1024;

#[derive(Clone)]
pub struct Cached {
    pub content_type: &'static str,
    pub body: Bytes,
    /// The object's version the rendering was made from (its entity tag).
    pub version: u64,
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
    /// Renderings being made now (a miss is made once).
    pub flights: Flights,
    inner: Mutex<Inner>,
    max_bytes: usize,
    generations: Box<[AtomicU64]>,
    hasher: RandomState,
}

impl ResponseCache {
    pub fn new(max_bytes: usize) -> ResponseCache {
        ResponseCache {
            flights: Flights::default(),
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

/// Renderings being made, by (object key, variant): the first request that misses leads, the
/// others wait for it and then look in the cache again.
#[derive(Default)]
pub struct Flights {
    leading: Mutex<HashMap<(String, String), Arc<tokio::sync::Notify>>>,
}

/// What [`Flights::join`] makes of a request.
pub enum Flight<'a> {
    /// Make the rendering; followers are woken when this is dropped.
    Lead(Leader<'a>),
    /// Another request was making it and has finished (or given up): look again.
    Followed,
}

/// The request making a rendering; dropping it (done, failed or cancelled) wakes the followers.
pub struct Leader<'a> {
    flights: &'a Flights,
    id: (String, String),
    notify: Arc<tokio::sync::Notify>,
}

impl Drop for Leader<'_> {
    fn drop(&mut self) {
        self.flights.leading.lock().remove(&self.id);
        self.notify.notify_waiters();
    }
}

impl Flights {
    /// Leads the making of (`key`, `variant`), or waits for the request already leading it.
    pub async fn join(&self, key: &str, variant: &str) -> Flight<'_> {
        let id = (key.to_owned(), variant.to_owned());
        let notify = {
            let mut leading = self.leading.lock();
            match leading.get(&id) {
                Some(n) => n.clone(),
                None => {
                    let notify = Arc::new(tokio::sync::Notify::new());
                    leading.insert(id.clone(), notify.clone());
                    return Flight::Lead(Leader { flights: self, id, notify });
                }
            }
        };
        let notified = notify.notified();
        tokio::pin!(notified);
        // Registered before the leader can finish: it removes itself under the lock, then
        // notifies, so either it is still leading now or this is woken.
        notified.as_mut().enable();
        if self.leading.lock().get(&id).is_some_and(|n| Arc::ptr_eq(n, &notify)) {
            notified.await;
        }
        Flight::Followed
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn body(n: usize) -> Cached {
        Cached { content_type: "application/json", body: Bytes::from(vec![b'x'; n]), version: 1 }
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

    #[tokio::test(flavor = "multi_thread", worker_threads = 4)]
    async fn concurrent_misses_make_a_rendering_once() {
        let flights = Arc::new(Flights::default());
        let made = Arc::new(AtomicU64::new(0));
        let cache = Arc::new(ResponseCache::new(1 << 20));
        let tasks: Vec<_> = (0..16)
            .map(|_| {
                let (flights, made, cache) = (flights.clone(), made.clone(), cache.clone());
                tokio::spawn(async move {
                    loop {
                        if cache.get("k", "v").is_some() {
                            return;
                        }
                        let g = cache.generation("k");
                        match flights.join("k", "v").await {
                            Flight::Lead(_leader) => {
                                made.fetch_add(1, Ordering::SeqCst);
                                tokio::time::sleep(std::time::Duration::from_millis(50)).await;
                                cache.insert("k", "v", g, body(10));
                                return;
                            }
                            Flight::Followed => continue,
                        }
                    }
                })
            })
            .collect();
        for t in tasks {
            t.await.unwrap();
        }
        assert_eq!(made.load(Ordering::SeqCst), 1, "one leader made it; the others waited and hit the cache");
    }
}
