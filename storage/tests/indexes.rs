//! The secondary indexes on a real RocksDB: written with the objects, moved when an object
//! moves, scanned in order with cursors, found by cone, and purged with their partition.

use lightkeeper_storage::model::Survey;
use lightkeeper_storage::model::{Band, LightPoint, PointKind, TimeScale};
use lightkeeper_storage::object::ObjectState;
use lightkeeper_storage::state::index::distance_deg;
use lightkeeper_storage::state::{
    ConeCandidate, PartitionProgress, RocksStore, SkyCone, StateBatch, StateStore, StoreOptions,
};

fn object(key: &str, version: u64, ra: f64, dec: f64, mjd: f64) -> ObjectState {
    let point = LightPoint {
        mjd,
        time_scale: TimeScale::Utc,
        band: Band::G,
        kind: PointKind::Detection,
        flux_njy: Some(1000.0),
        flux_err_njy: None,
        mag: Some(19.0),
        mag_err: None,
        limiting_mag: None,
        source_id: Some(version as i64),
        is_negative: Some(false),
        reliability: None,
        alert_id: version as i64,
    };
    ObjectState {
        key: key.into(),
        survey: Survey::Ztf,
        object_id: key.trim_start_matches("ztf:").into(),
        version,
        ra: Some(ra),
        dec: Some(dec),
        solar_system: None,
        points: vec![point],
        alerts: vec![],
        updated_at_ms: 7,
        attributes: Default::default(),
        watchlists: Vec::new(),
    }
}

fn write(store: &RocksStore, partition: u32, objects: Vec<ObjectState>) {
    let progress = PartitionProgress { epoch: 1, input_next: 1, changelog_next: 1, master: "a".into() };
    store.apply(StateBatch { partition, progress, objects, history: vec![], stats: vec![] }).unwrap();
}

/// A deterministic spread of positions: a third anywhere, a third within 1° of RA 0/360 on the
/// equator, a third within 1° of the north pole.
/// One partition's part of a cone.
fn cone(store: &RocksStore, partition: u32, ra: f64, dec: f64, radius_deg: f64) -> Vec<ConeCandidate> {
    store.cone(&[partition], &SkyCone::new(ra, dec, radius_deg)).unwrap().remove(0)
}

fn positions(n: usize) -> Vec<(f64, f64)> {
    let mut x: u64 = 0x9e37_79b9_7f4a_7c15;
    let mut next = move || {
        x ^= x << 13;
        x ^= x >> 7;
        x ^= x << 17;
        (x >> 11) as f64 / (1u64 << 53) as f64
    };
    (0..n)
        .map(|i| match i % 3 {
            0 => (next() * 360.0, (next() * 2.0 - 1.0).asin().to_degrees()),
            1 => (((next() - 0.5) * 2.0).rem_euclid(360.0), (next() - 0.5) * 2.0),
            _ => (next() * 360.0, 89.0 + next()),
        })
        .collect()
}

#[test]
fn cone_finds_exactly_the_objects_within_the_radius() {
    let dir = tempfile::tempdir().unwrap();
    let store = RocksStore::open(dir.path(), &StoreOptions::default()).unwrap();
    let pos = positions(3000);
    let objects: Vec<ObjectState> =
        pos.iter().enumerate().map(|(i, &(ra, dec))| object(&format!("ztf:ZTF{i:05}"), 1, ra, dec, 60000.0)).collect();
    // Two partitions: even and odd objects.
    let (even, odd): (Vec<_>, Vec<_>) = objects.into_iter().enumerate().partition(|(i, _)| i % 2 == 0);
    write(&store, 0, even.into_iter().map(|(_, o)| o).collect());
    write(&store, 1, odd.into_iter().map(|(_, o)| o).collect());
    let centres = [(0.0, 0.0), (359.9, 0.3), (0.2, -0.5), (120.0, 89.9), (45.0, 89.5), (200.0, -30.0), (10.0, 90.0)];
    for (ra, dec) in centres {
        for radius in [1.0 / 3600.0, 1.0 / 60.0, 0.3, 1.0] {
            let mut want: Vec<String> = pos
                .iter()
                .enumerate()
                .filter(|(_, &(r, d))| distance_deg(ra, dec, r, d) <= radius)
                .map(|(i, _)| format!("ztf:ZTF{i:05}"))
                .collect();
            want.sort();
            let mut got: Vec<String> = Vec::new();
            // Both partitions in one read, asked in reverse order: each list is its partition's.
            let parts = store.cone(&[1, 0], &SkyCone::new(ra, dec, radius)).unwrap();
            for (p, part) in [1u32, 0].into_iter().zip(parts) {
                for c in part {
                    assert!(c.distance_deg <= radius);
                    let i: usize = c.summary.key[7..].parse().unwrap();
                    assert_eq!(i % 2, p as usize, "partition {p} answers only for its own objects");
                    got.push(c.summary.key);
                }
            }
            got.sort();
            assert_eq!(got, want, "cone ({ra}, {dec}) r={radius}");
        }
    }
}

#[test]
fn an_object_that_moves_or_changes_is_reindexed() {
    let dir = tempfile::tempdir().unwrap();
    let store = RocksStore::open(dir.path(), &StoreOptions::default()).unwrap();
    write(&store, 0, vec![object("ztf:A", 1, 10.0, 10.0, 60000.0)]);
    write(&store, 0, vec![object("ztf:A", 2, 20.0, -10.0, 60001.0)]);
    assert!(cone(&store, 0, 10.0, 10.0, 0.1).is_empty(), "the old position is no longer indexed");
    assert_eq!(cone(&store, 0, 20.0, -10.0, 0.1)[0].summary.version, 2);
    let mut recent = Vec::new();
    store
        .scan_recent(0, false, None, &mut |s| {
            recent.push((s.key, s.last_mjd));
            true
        })
        .unwrap();
    assert_eq!(recent, vec![("ztf:A".to_owned(), Some(60001.0))], "one recency entry, at the new time");
}

#[test]
fn scans_are_ordered_resume_after_a_cursor_and_stay_in_their_partition() {
    let dir = tempfile::tempdir().unwrap();
    let store = RocksStore::open(dir.path(), &StoreOptions::default()).unwrap();
    // Ties on last_mjd are broken by key.
    let objects: Vec<ObjectState> =
        (0..50).map(|i| object(&format!("ztf:K{i:02}"), 1, 1.0, 1.0, 60000.0 + f64::from(i / 2))).collect();
    write(&store, 2, objects);
    write(&store, 3, vec![object("ztf:other", 1, 1.0, 1.0, 70000.0)]);
    let collect = |desc: bool, after: Option<(f64, &str)>, limit: usize| {
        let mut out = Vec::new();
        store
            .scan_recent(2, desc, after, &mut |s| {
                out.push((s.last_mjd.unwrap(), s.key));
                out.len() < limit
            })
            .unwrap();
        out
    };
    let all_asc = collect(false, None, usize::MAX);
    assert_eq!(all_asc.len(), 50);
    assert!(all_asc.windows(2).all(|w| (w[0].0, &w[0].1) < (w[1].0, &w[1].1)));
    let all_desc = collect(true, None, usize::MAX);
    assert_eq!(all_desc, all_asc.iter().rev().cloned().collect::<Vec<_>>());
    // Pages of 7 in both directions, each resuming strictly after the last one seen.
    for desc in [false, true] {
        let mut pages = Vec::new();
        let mut cursor: Option<(f64, String)> = None;
        loop {
            let page = collect(desc, cursor.as_ref().map(|(m, k)| (*m, k.as_str())), 7);
            if page.is_empty() {
                break;
            }
            cursor = page.last().cloned();
            pages.extend(page);
        }
        assert_eq!(pages, if desc { all_desc.clone() } else { all_asc.clone() });
    }
    let mut keys = Vec::new();
    store
        .scan_summaries(2, Some("ztf:K09"), &mut |s| {
            keys.push(s.key);
            keys.len() < 3
        })
        .unwrap();
    assert_eq!(keys, ["ztf:K10", "ztf:K11", "ztf:K12"]);
    let mut n = 0;
    store
        .scan_summaries(3, None, &mut |_| {
            n += 1;
            true
        })
        .unwrap();
    assert_eq!(n, 1);
}

#[test]
fn purging_a_partition_purges_its_indexes() {
    let dir = tempfile::tempdir().unwrap();
    let store = RocksStore::open(dir.path(), &StoreOptions::default()).unwrap();
    write(&store, 0, vec![object("ztf:A", 1, 10.0, 10.0, 60000.0)]);
    write(&store, 1, vec![object("ztf:B", 1, 10.0, 10.0, 60000.0)]);
    store.purge_partition(0, &|k| k == "ztf:A").unwrap();
    assert!(cone(&store, 0, 10.0, 10.0, 1.0).is_empty());
    assert_eq!(cone(&store, 1, 10.0, 10.0, 1.0).len(), 1);
    let mut n = 0;
    store
        .scan_recent(0, true, None, &mut |_| {
            n += 1;
            true
        })
        .unwrap();
    store
        .scan_summaries(0, None, &mut |_| {
            n += 1;
            true
        })
        .unwrap();
    assert_eq!(n, 0);
}
