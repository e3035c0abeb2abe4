//! RocksDB engine of the state store.
//!
//! Column families (key encoding format 1 — never changed in place; a new layout gets a new
//! format byte and a migration; the value formats are in [`super::values`]):
//! - `objects`:  object key → `1` + postcard(ObjectState)
//! - `history`:  object key `\0` version:u64be → `1` + postcard(HistoryEntry), the last
//!   [`HISTORY_PER_OBJECT`] versions per object
//! - `progress`: partition:u32be → `2` + postcard(PartitionProgress) (`1`: the layout before
//!   `master` was added, still read); and the key
//!   [`KEY_FORMAT_KEY`] → the key-encoding format ([`KEY_FORMAT`]) the store was created with,
//!   checked at open so a build never misreads a layout it does not know.
//! - `summaries`, `sky`, `recency`: the per-partition secondary indexes (see [`super::index`]),
//!   written in the same batch as the objects they point at.
//! - `stats`: partition:u32be step:u8 start_ms:u64be → `1` + postcard(StatsBucket), the stream
//!   statistics (see [`crate::stats`]); minute buckets older than [`MINUTE_STATS_KEPT_MS`]
//!   before the newest one written are deleted as new ones arrive (created empty when a store
//!   of the same key format predates it).
//!
//! Key format 2 added the indexes. A store of an older format is rebuilt at open: it is deleted
//! and the replicas restore it from the changelog (the durable copy), which writes the indexes
//! as it goes. A store of a newer format is refused.
//!
//! Memory: one LRU block cache shared by every column family, and a write-buffer manager that
//! charges memtables to the same cache, so the configured budget bounds both (the usual cause of
//! unbounded RocksDB memory in Kafka Streams deployments is per-store caches and memtables).

use super::index::{self, IndexKeys};
use super::values::{decode, decode_progress, encode, encode_progress};
use super::{ConeCandidate, HistoryEntry, PartitionProgress, SkyCone, StateBatch, StateStore, StoreError};
use crate::object::{ObjectState, ObjectSummary};
use crate::stats::{StatsBucket, StatsStep};
use rocksdb::{BlockBasedOptions, Cache, ColumnFamilyDescriptor, Options, WriteBatch, WriteBufferManager, DB};
use std::collections::HashMap;
use std::ops::Range;
use std::path::Path;
use tracing::warn;

/// Version of the store's layout: the key layout above, and (from 3) the object and summary
/// value layouts too — format 3 added `watchlists` to both. A store of an older format is
/// deleted and rebuilt from the changelog, which reads every older record format.
pub const KEY_FORMAT: u8 = 3;
/// Where the key format is recorded (not a valid partition key: those are 4 bytes).
pub const KEY_FORMAT_KEY: &[u8] = b"key-format";
const CF_OBJECTS: &str = "objects";
const CF_HISTORY: &str = "history";
const CF_PROGRESS: &str = "progress";
const CF_SUMMARIES: &str = "summaries";
const CF_SKY: &str = "sky";
const CF_RECENCY: &str = "recency";
const CF_STATS: &str = "stats";
const ALL_CFS: [&str; 7] = [CF_OBJECTS, CF_HISTORY, CF_PROGRESS, CF_SUMMARIES, CF_SKY, CF_RECENCY, CF_STATS];
/// How long minute buckets of the stream statistics are kept (hours and nights are kept):
/// 2,880 buckets of a few hundred bytes per partition.
pub const MINUTE_STATS_KEPT_MS: i64 = 2 * 86_400_000;
/// Versions of update history kept per object for subscription resume.
pub const HISTORY_PER_OBJECT: u64 = 64;

#[derive(Debug, Clone)]
pub struct StoreOptions {
    /// Total bytes for block cache and write buffers together.
    pub memory_budget_bytes: usize,
    /// Write and sync the WAL on every batch. Off by default: the changelog, not a local WAL,
    /// is the durable copy. Without a WAL, column families are flushed atomically, so what
    /// survives a crash is always a consistent state with the progress that produced it, and
    /// the tail lost with the memtables is re-read from the changelog on restart (what Kafka
    /// Streams does with its stores). The WAL's checksumming was a quarter of restore time.
    pub sync_writes: bool,
}

impl Default for StoreOptions {
    fn default() -> Self {
        StoreOptions { memory_budget_bytes: 256 << 20, sync_writes: false }
    }
}

pub struct RocksStore {
    db: DB,
    sync: bool,
}

enum Opened {
    Current(RocksStore),
    /// The store's key format, older than [`KEY_FORMAT`].
    Older(RocksStore, u8),
}

fn stats_key(partition: u32, step: StatsStep, start_ms: i64) -> Vec<u8> {
    let mut k = Vec::with_capacity(13);
    k.extend_from_slice(&partition.to_be_bytes());
    k.push(step.code());
    // Log timestamps are after 1970: clamped, a negative one cannot reorder the keys.
    k.extend_from_slice(&(start_ms.max(0) as u64).to_be_bytes());
    k
}

fn history_key(key: &str, version: u64) -> Vec<u8> {
    let mut k = Vec::with_capacity(key.len() + 9);
    k.extend_from_slice(key.as_bytes());
    k.push(0);
    k.extend_from_slice(&version.to_be_bytes());
    k
}

impl RocksStore {
    /// Opens (or creates) the store in `dir`. A store of an older key format is deleted and
    /// created empty (its replicas then restore from the changelog); a newer one is refused.
    pub fn open(dir: &Path, options: &StoreOptions) -> Result<RocksStore, StoreError> {
        match Self::open_as_is(dir, options)? {
            Opened::Current(store) => Ok(store),
            Opened::Older(store, format) => {
                drop(store);
                warn!(
                    dir = %dir.display(),
                    format, current = KEY_FORMAT,
                    "state store has an older key format; deleting it to rebuild from the changelog"
                );
                DB::destroy(&Options::default(), dir)?;
                match Self::open_as_is(dir, options)? {
                    Opened::Current(store) => Ok(store),
                    Opened::Older(..) => unreachable!("a new store is created with the current format"),
                }
            }
        }
    }

    fn open_as_is(dir: &Path, options: &StoreOptions) -> Result<Opened, StoreError> {
        let cache = Cache::new_lru_cache(options.memory_budget_bytes);
        // Memtables may use half the budget; their memory is charged to the shared cache.
        let wbm = WriteBufferManager::new_write_buffer_manager_with_cache(
            options.memory_budget_bytes / 2,
            false,
            cache.clone(),
        );
        let mut table = BlockBasedOptions::default();
        table.set_block_cache(&cache);
        table.set_bloom_filter(10.0, false);
        table.set_cache_index_and_filter_blocks(true);
        let cf_opts = || {
            let mut o = Options::default();
            o.set_block_based_table_factory(&table);
            o.set_compression_type(rocksdb::DBCompressionType::Lz4);
            o.set_write_buffer_size((options.memory_budget_bytes / 8).max(4 << 20));
            o
        };
        let mut db_opts = cf_opts();
        db_opts.create_if_missing(true);
        db_opts.create_missing_column_families(true);
        db_opts.set_write_buffer_manager(&wbm);
        // Objects, history and progress are written in one batch; without a WAL they must also
        // reach disk together, or a crash could keep progress without the state it describes.
        db_opts.set_atomic_flush(true);
        let cfs = ALL_CFS.map(|n| ColumnFamilyDescriptor::new(n, cf_opts()));
        let db = DB::open_cf_descriptors(&db_opts, dir, cfs)?;
        let store = RocksStore { db, sync: options.sync_writes };
        let cf = store.cf(CF_PROGRESS);
        match store.db.get_cf(cf, KEY_FORMAT_KEY)? {
            None => store.db.put_cf(cf, KEY_FORMAT_KEY, [KEY_FORMAT])?,
            Some(v) if v.as_slice() == [KEY_FORMAT] => {}
            Some(v) if v.len() == 1 && v[0] < KEY_FORMAT => return Ok(Opened::Older(store, v[0])),
            Some(v) => {
                return Err(StoreError::Corrupt {
                    what: format!("state store in {}", dir.display()),
                    reason: format!(
                        "key format {v:?} is not the format {KEY_FORMAT} this build reads; \
                         delete the directory to rebuild it from the changelog"
                    ),
                })
            }
        }
        Ok(Opened::Current(store))
    }

    fn cf(&self, name: &str) -> &rocksdb::ColumnFamily {
        self.db.cf_handle(name).expect("column families are created at open")
    }

    /// Stages `summary` and its index entries, replacing the ones of the stored summary.
    fn index(&self, wb: &mut WriteBatch, partition: u32, summary: &ObjectSummary) -> Result<(), StoreError> {
        let key = index::summary_key(partition, &summary.key);
        let new = IndexKeys::of(partition, summary);
        if let Some(old) = self.db.get_pinned_cf(self.cf(CF_SUMMARIES), &key)? {
            let old = IndexKeys::of(partition, &decode::<ObjectSummary>(&summary.key, &old)?);
            if let Some((k, _)) = old.sky.filter(|o| Some(&o.0) != new.sky.as_ref().map(|n| &n.0)) {
                wb.delete_cf(self.cf(CF_SKY), k);
            }
            if let Some(k) = old.recency.filter(|o| Some(o) != new.recency.as_ref()) {
                wb.delete_cf(self.cf(CF_RECENCY), k);
            }
        }
        wb.put_cf(self.cf(CF_SUMMARIES), key, encode(summary));
        if let Some((k, v)) = new.sky {
            wb.put_cf(self.cf(CF_SKY), k, v);
        }
        if let Some(k) = new.recency {
            wb.put_cf(self.cf(CF_RECENCY), k, []);
        }
        Ok(())
    }

    fn summaries_of(&self, partition: u32, keys: &[String]) -> Result<Vec<Option<ObjectSummary>>, StoreError> {
        let cf = self.cf(CF_SUMMARIES);
        let ks: Vec<Vec<u8>> = keys.iter().map(|k| index::summary_key(partition, k)).collect();
        let mut out = Vec::with_capacity(keys.len());
        for (v, k) in self.db.batched_multi_get_cf(cf, &ks, false).into_iter().zip(keys) {
            out.push(match v? {
                Some(bytes) => Some(decode::<ObjectSummary>(k, &bytes)?),
                None => None,
            });
        }
        Ok(out)
    }
}

impl StateStore for RocksStore {
    fn get(&self, key: &str) -> Result<Option<ObjectState>, StoreError> {
        match self.db.get_pinned_cf(self.cf(CF_OBJECTS), key.as_bytes())? {
            Some(v) => decode(key, &v).map(Some),
            None => Ok(None),
        }
    }

    fn progress(&self, partition: u32) -> Result<PartitionProgress, StoreError> {
        match self.db.get_pinned_cf(self.cf(CF_PROGRESS), partition.to_be_bytes())? {
            Some(v) => decode_progress(&v),
            None => Ok(PartitionProgress::default()),
        }
    }

    fn apply(&self, batch: StateBatch) -> Result<(), StoreError> {
        let mut wb = WriteBatch::default();
        // The newest state of each object in the batch (an applier may stage one object twice).
        let mut newest: HashMap<&str, &ObjectState> = HashMap::with_capacity(batch.objects.len());
        for o in &batch.objects {
            wb.put_cf(self.cf(CF_OBJECTS), o.key.as_bytes(), encode(o));
            newest.insert(o.key.as_str(), o);
        }
        // Summaries were computed for the history entries; the last entry per key is the state.
        let mut summaries: HashMap<&str, &ObjectSummary> = HashMap::with_capacity(newest.len());
        for h in &batch.history {
            summaries.insert(h.summary.key.as_str(), &h.summary);
        }
        for (key, state) in newest {
            let computed;
            let summary = match summaries.get(key) {
                Some(s) if s.version == state.version => *s,
                _ => {
                    computed = state.summary();
                    &computed
                }
            };
            self.index(&mut wb, batch.partition, summary)?;
        }
        for h in &batch.history {
            wb.put_cf(self.cf(CF_HISTORY), history_key(&h.summary.key, h.version), encode(h.as_ref()));
            if h.version > HISTORY_PER_OBJECT {
                wb.delete_cf(self.cf(CF_HISTORY), history_key(&h.summary.key, h.version - HISTORY_PER_OBJECT));
            }
        }
        for b in &batch.stats {
            wb.put_cf(self.cf(CF_STATS), stats_key(batch.partition, b.step, b.start_ms), encode(b));
            if b.step == StatsStep::Minute {
                let expired = b.start_ms - MINUTE_STATS_KEPT_MS;
                if expired > 0 {
                    wb.delete_range_cf(
                        self.cf(CF_STATS),
                        stats_key(batch.partition, StatsStep::Minute, 0),
                        stats_key(batch.partition, StatsStep::Minute, expired),
                    );
                }
            }
        }
        wb.put_cf(self.cf(CF_PROGRESS), batch.partition.to_be_bytes(), encode_progress(&batch.progress));
        let mut wo = rocksdb::WriteOptions::default();
        wo.set_sync(self.sync);
        wo.disable_wal(!self.sync);
        self.db.write_opt(wb, &wo)?;
        Ok(())
    }

    fn purge_partition(&self, partition: u32, owned: &dyn Fn(&str) -> bool) -> Result<u64, StoreError> {
        // The indexes are partition-prefixed: one range delete each.
        let mut ix = WriteBatch::default();
        for cf in [CF_SUMMARIES, CF_SKY, CF_RECENCY, CF_STATS] {
            ix.delete_range_cf(
                self.cf(cf),
                index::partition_prefix(partition).to_vec(),
                index::partition_end(partition),
            );
        }
        // Without a WAL, writes reach disk in order (atomic flush of all column families), so
        // no flushed state has objects deleted but the progress that claims them still there.
        let wo = || {
            let mut wo = rocksdb::WriteOptions::default();
            wo.disable_wal(!self.sync);
            wo
        };
        self.db.delete_cf_opt(self.cf(CF_PROGRESS), partition.to_be_bytes(), &wo())?;
        self.db.write_opt(ix, &wo())?;
        let (objects, history) = (self.cf(CF_OBJECTS), self.cf(CF_HISTORY));
        let mut deleted = 0u64;
        let mut wb = WriteBatch::default();
        for item in self.db.iterator_cf(objects, rocksdb::IteratorMode::Start) {
            let (key, _) = item?;
            let Ok(k) = std::str::from_utf8(&key) else { continue };
            if !owned(k) {
                continue;
            }
            wb.delete_cf(objects, &key);
            // History keys are `key \0 version`: everything from `key \0` up to `key \1`.
            let (mut from, mut to) = (key.to_vec(), key.to_vec());
            from.push(0);
            to.push(1);
            wb.delete_range_cf(history, from, to);
            deleted += 1;
            if wb.len() >= 2048 {
                self.db.write_opt(std::mem::take(&mut wb), &wo())?;
            }
        }
        self.db.write_opt(wb, &wo())?;
        Ok(deleted)
    }

    fn stats_bucket(&self, partition: u32, step: StatsStep, start_ms: i64) -> Result<Option<StatsBucket>, StoreError> {
        match self.db.get_cf(self.cf(CF_STATS), stats_key(partition, step, start_ms))? {
            Some(v) => Ok(Some(decode("a statistics bucket", &v)?)),
            None => Ok(None),
        }
    }

    fn stats_range(
        &self,
        partition: u32,
        step: StatsStep,
        from_ms: i64,
        until_ms: i64,
    ) -> Result<Vec<StatsBucket>, StoreError> {
        let mut opts = rocksdb::ReadOptions::default();
        opts.set_iterate_upper_bound(stats_key(partition, step, until_ms));
        let from = stats_key(partition, step, from_ms);
        let mode = rocksdb::IteratorMode::From(&from, rocksdb::Direction::Forward);
        let mut out = Vec::new();
        for item in self.db.iterator_cf_opt(self.cf(CF_STATS), opts, mode) {
            let (_, v) = item?;
            out.push(decode("a statistics bucket", &v)?);
        }
        Ok(out)
    }

    fn flush(&self) -> Result<(), StoreError> {
        let cfs = ALL_CFS.map(|n| self.cf(n));
        self.db.flush_cfs_opt(&cfs, &rocksdb::FlushOptions::default())?;
        Ok(())
    }

    fn cone(&self, partitions: &[u32], cone: &SkyCone) -> Result<Vec<Vec<ConeCandidate>>, StoreError> {
        // Every partition's ranges in key order (partitions are key prefixes), read with one
        // iterator bounded by the last range's end.
        let mut order: Vec<usize> = (0..partitions.len()).collect();
        order.sort_by_key(|&i| partitions[i]);
        let ranges: Vec<(usize, Vec<Range<Vec<u8>>>)> =
            order.into_iter().map(|i| (i, cone.key_ranges(partitions[i]))).collect();
        let mut near: Vec<Vec<(f64, String)>> = vec![Vec::new(); partitions.len()];
        if let Some(last) = ranges.iter().rev().find_map(|(_, r)| r.last()) {
            let mut ro = rocksdb::ReadOptions::default();
            ro.set_iterate_upper_bound(last.end.clone());
            let mut it = self.db.raw_iterator_cf_opt(self.cf(CF_SKY), ro);
            let mut sought = false;
            // A range is sought only when the iterator is not already past its start: the
            // iterator sits on the first key after the previous range, so when that key is at
            // or beyond this range's start it is also this range's first key. In a sparse
            // region — most small cones — the first seek of a partition lands past all of its
            // ranges, and a cone costs one seek per partition instead of one per range.
            'ranges: for (i, partition_ranges) in &ranges {
                for range in partition_ranges {
                    if !sought || it.key().is_some_and(|k| k < range.start.as_slice()) {
                        it.seek(&range.start);
                        sought = true;
                    }
                    while let (Some(k), Some(v)) = (it.key(), it.value()) {
                        if k >= range.end.as_slice() {
                            break;
                        }
                        let (Some((ra, dec)), Some(key)) = (index::decode_sky_value(v), index::object_key_of(k, 12))
                        else {
                            return Err(StoreError::Corrupt {
                                what: "sky index entry".into(),
                                reason: format!("{k:?}"),
                            });
                        };
                        if let Some(d) = cone.distance_within(ra, dec) {
                            near[*i].push((d, key.to_owned()));
                        }
                        it.next();
                    }
                    it.status()?;
                    // Past the last range's end: no later range has anything.
                    if !it.valid() {
                        break 'ranges;
                    }
                }
            }
        }
        near.into_iter()
            .zip(partitions)
            .map(|(near, &partition)| {
                let keys: Vec<String> = near.iter().map(|(_, k)| k.clone()).collect();
                Ok(near
                    .into_iter()
                    .zip(self.summaries_of(partition, &keys)?)
                    .filter_map(|((distance_deg, _), s)| s.map(|summary| ConeCandidate { distance_deg, summary }))
                    .collect())
            })
            .collect()
    }

    fn scan_summaries(
        &self,
        partition: u32,
        after: Option<&str>,
        visit: &mut dyn FnMut(ObjectSummary) -> bool,
    ) -> Result<(), StoreError> {
        let mut ro = rocksdb::ReadOptions::default();
        ro.set_iterate_upper_bound(index::partition_end(partition));
        let mut it = self.db.raw_iterator_cf_opt(self.cf(CF_SUMMARIES), ro);
        match after {
            // The smallest key after `k`: keys are printable ASCII, so `k` then a 0 byte.
            Some(k) => {
                let mut from = index::summary_key(partition, k);
                from.push(0);
                it.seek(from);
            }
            None => it.seek(index::partition_prefix(partition)),
        }
        while let (Some(k), Some(v)) = (it.key(), it.value()) {
            let key = index::object_key_of(k, 4).unwrap_or("?");
            if !visit(decode::<ObjectSummary>(key, v)?) {
                return Ok(());
            }
            it.next();
        }
        it.status()?;
        Ok(())
    }

    fn scan_recent(
        &self,
        partition: u32,
        desc: bool,
        after: Option<(f64, &str)>,
        visit: &mut dyn FnMut(ObjectSummary) -> bool,
    ) -> Result<(), StoreError> {
        let mut ro = rocksdb::ReadOptions::default();
        ro.set_iterate_lower_bound(index::partition_prefix(partition).to_vec());
        ro.set_iterate_upper_bound(index::partition_end(partition));
        let mut it = self.db.raw_iterator_cf_opt(self.cf(CF_RECENCY), ro);
        match (after, desc) {
            (None, false) => it.seek_to_first(),
            (None, true) => it.seek_to_last(),
            (Some((mjd, key)), false) => {
                let mut from = index::recency_key(partition, mjd, key);
                from.push(0);
                it.seek(from);
            }
            (Some((mjd, key)), true) => {
                let at = index::recency_key(partition, mjd, key);
                it.seek_for_prev(&at);
                if it.key() == Some(at.as_slice()) {
                    it.prev();
                }
            }
        }
        // Summaries are fetched a page at a time: one multi-get instead of a seek per object.
        const PAGE: usize = 64;
        loop {
            let mut keys = Vec::with_capacity(PAGE);
            while keys.len() < PAGE {
                let Some(k) = it.key() else { break };
                keys.push(index::object_key_of(k, 12).unwrap_or("?").to_owned());
                if desc {
                    it.prev();
                } else {
                    it.next();
                }
            }
            it.status()?;
            if keys.is_empty() {
                return Ok(());
            }
            for s in self.summaries_of(partition, &keys)?.into_iter().flatten() {
                if !visit(s) {
                    return Ok(());
                }
            }
        }
    }

    fn snapshot_scan(
        &self,
        partition: u32,
        visit: &mut dyn FnMut(ObjectSummary) -> bool,
    ) -> Result<PartitionProgress, StoreError> {
        let snapshot = self.db.snapshot();
        let progress = match snapshot.get_cf(self.cf(CF_PROGRESS), partition.to_be_bytes())? {
            Some(v) => decode_progress(&v)?,
            None => PartitionProgress::default(),
        };
        let mut ro = rocksdb::ReadOptions::default();
        ro.set_snapshot(&snapshot);
        ro.set_iterate_upper_bound(index::partition_end(partition));
        let mut it = self.db.raw_iterator_cf_opt(self.cf(CF_SUMMARIES), ro);
        it.seek(index::partition_prefix(partition));
        while let (Some(k), Some(v)) = (it.key(), it.value()) {
            let key = index::object_key_of(k, 4).unwrap_or("?");
            if !visit(decode::<ObjectSummary>(key, v)?) {
                break;
            }
            it.next();
        }
        it.status()?;
        Ok(progress)
    }

    fn history_after(&self, key: &str, after: u64, current: u64) -> Result<Option<Vec<HistoryEntry>>, StoreError> {
        if after >= current {
            return Ok(Some(Vec::new()));
        }
        if current - after > HISTORY_PER_OBJECT {
            return Ok(None);
        }
        let keys: Vec<Vec<u8>> = (after + 1..=current).map(|v| history_key(key, v)).collect();
        let cf = self.cf(CF_HISTORY);
        let mut out = Vec::with_capacity(keys.len());
        for v in self.db.batched_multi_get_cf(cf, &keys, false) {
            match v? {
                Some(bytes) => out.push(decode::<HistoryEntry>(key, &bytes)?),
                None => return Ok(None),
            }
        }
        Ok(Some(out))
    }
}
