//! The RocksDB state store on a real RocksDB: atomic batches, progress, history, and the
//! format checks that keep a build from misreading a layout it does not know.

use lightkeeper_storage::model::Survey;
use lightkeeper_storage::object::ObjectState;
use lightkeeper_storage::state::{HistoryEntry, PartitionProgress, RocksStore, StateBatch, StateStore, StoreOptions};
use lightkeeper_storage::stats::{Counts, StatsBucket, StatsStep};
use std::sync::Arc;

fn object(key: &str, version: u64) -> ObjectState {
    ObjectState {
        key: key.into(),
        survey: Survey::Ztf,
        object_id: key.trim_start_matches("ztf:").into(),
        version,
        ra: Some(1.0),
        dec: Some(2.0),
        solar_system: None,
        points: vec![],
        alerts: vec![],
        updated_at_ms: 7,
        attributes: Default::default(),
        watchlists: Vec::new(),
    }
}

#[test]
fn batches_progress_and_history_survive_reopen() {
    let dir = tempfile::tempdir().unwrap();
    let progress = PartitionProgress { epoch: 3, input_next: 10, changelog_next: 12, master: "node-b".into() };
    {
        let store = RocksStore::open(dir.path(), &StoreOptions::default()).unwrap();
        assert_eq!(store.progress(1).unwrap(), PartitionProgress::default());
        let history = (1..=2)
            .map(|v| {
                let o = object("ztf:ZTF1", v);
                Arc::new(HistoryEntry { version: v, summary: o.summary(), new_points: vec![] })
            })
            .collect();
        store
            .apply(StateBatch {
                partition: 1,
                progress: progress.clone(),
                objects: vec![object("ztf:ZTF1", 2)],
                history,
                stats: vec![minute(0, 7), minute(60_000, 1)],
            })
            .unwrap();
    }
    let store = RocksStore::open(dir.path(), &StoreOptions::default()).unwrap();
    assert_eq!(store.progress(1).unwrap(), progress);
    assert_eq!(store.stats_bucket(1, StatsStep::Minute, 0).unwrap(), Some(minute(0, 7)), "statistics persist");
    assert_eq!(store.stats_bucket(0, StatsStep::Minute, 0).unwrap(), None, "per partition");
    assert_eq!(store.stats_range(1, StatsStep::Minute, 0, 60_000).unwrap(), vec![minute(0, 7)], "until is exclusive");
    assert_eq!(store.stats_range(1, StatsStep::Hour, 0, i64::MAX).unwrap(), vec![]);
    // A minute bucket two days and more after the first expires it.
    let later = lightkeeper_storage::state::MINUTE_STATS_KEPT_MS + 60_000;
    store
        .apply(StateBatch {
            partition: 1,
            progress: progress.clone(),
            stats: vec![minute(later, 2)],
            ..Default::default()
        })
        .unwrap();
    let kept = store.stats_range(1, StatsStep::Minute, 0, i64::MAX).unwrap();
    assert_eq!(kept, vec![minute(60_000, 1), minute(later, 2)], "minute buckets are kept two days");
    assert_eq!(store.get("ztf:ZTF1").unwrap().unwrap().version, 2);
    let h = store.history_after("ztf:ZTF1", 0, 2).unwrap().unwrap();
    assert_eq!(h.iter().map(|e| e.version).collect::<Vec<_>>(), vec![1, 2]);
}

#[test]
fn a_store_with_an_unknown_key_format_is_refused_with_a_clear_error() {
    let dir = tempfile::tempdir().unwrap();
    drop(RocksStore::open(dir.path(), &StoreOptions::default()).unwrap());
    {
        // Simulate a store written by a future build with a different key layout.
        set_key_format(dir.path(), 9);
    }
    let err = RocksStore::open(dir.path(), &StoreOptions::default()).err().expect("refused").to_string();
    assert!(err.contains("key format") && err.contains("rebuild"), "{err}");
}

fn set_key_format(dir: &std::path::Path, format: u8) {
    let cfs = rocksdb::DB::list_cf(&rocksdb::Options::default(), dir).unwrap();
    let db = rocksdb::DB::open_cf(&rocksdb::Options::default(), dir, cfs).unwrap();
    db.put_cf(db.cf_handle("progress").unwrap(), b"key-format", [format]).unwrap();
}

#[test]
fn a_store_of_an_older_key_format_is_rebuilt_empty() {
    let dir = tempfile::tempdir().unwrap();
    {
        let store = RocksStore::open(dir.path(), &StoreOptions::default()).unwrap();
        let progress = PartitionProgress { epoch: 1, input_next: 5, changelog_next: 9, master: "a".into() };
        store
            .apply(StateBatch {
                partition: 0,
                progress,
                objects: vec![object("ztf:ZTF1", 1)],
                history: vec![],
                stats: vec![],
            })
            .unwrap();
    }
    set_key_format(dir.path(), 1);
    let store = RocksStore::open(dir.path(), &StoreOptions::default()).unwrap();
    assert!(store.get("ztf:ZTF1").unwrap().is_none(), "the old layout's objects are gone");
    assert_eq!(store.progress(0).unwrap(), PartitionProgress::default(), "so the changelog is read from the start");
}

#[test]
fn purging_a_partition_deletes_its_objects_history_and_progress_only() {
    let dir = tempfile::tempdir().unwrap();
    let store = RocksStore::open(dir.path(), &StoreOptions::default()).unwrap();
    let keys: Vec<String> = (0..300).map(|i| format!("ztf:ZTF{i:05}")).collect();
    let partition_of = |k: &str| u32::from(k.ends_with(['1', '3', '5', '7', '9']));
    for p in 0..2u32 {
        let mine: Vec<&String> = keys.iter().filter(|k| partition_of(k) == p).collect();
        let history = mine
            .iter()
            .flat_map(|k| {
                (1..=3)
                    .map(|v| Arc::new(HistoryEntry { version: v, summary: object(k, v).summary(), new_points: vec![] }))
            })
            .collect();
        let progress = PartitionProgress { epoch: 1, input_next: 5, changelog_next: 9, master: "a".into() };
        let objects = mine.iter().map(|k| object(k, 3)).collect();
        store.apply(StateBatch { partition: p, progress, objects, history, stats: vec![] }).unwrap();
    }
    let deleted = store.purge_partition(1, &|k| partition_of(k) == 1).unwrap();
    assert_eq!(deleted, 150);
    for k in &keys {
        let gone = partition_of(k) == 1;
        assert_eq!(store.get(k).unwrap().is_none(), gone, "{k}");
        let history = store.history_after(k, 0, 3).unwrap();
        assert_eq!(history.is_none(), gone, "{k}: history goes with the object");
    }
    assert_eq!(store.progress(1).unwrap(), PartitionProgress::default(), "a new replica restores from scratch");
    assert_eq!(store.progress(0).unwrap().changelog_next, 9, "the other partition is untouched");
    // A neighbouring key that extends a purged one keeps its history.
    assert!(store.history_after("ztf:ZTF00010", 0, 3).unwrap().is_some());
}

fn minute(start_ms: i64, alerts: u64) -> StatsBucket {
    let mut b = StatsBucket::new(StatsStep::Minute, start_ms);
    let counts = Counts { alerts, ..Default::default() };
    b.add(Some(lightkeeper_storage::model::Survey::Ztf), Some(lightkeeper_storage::model::Band::G), &counts);
    b
}
