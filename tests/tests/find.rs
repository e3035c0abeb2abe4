//! Finding objects (issue 11) through a real three-node cluster: cone search and `where`
//! queries asked of every node, each answered from every partition (a node hosts two of the
//! three, so one partition's part is always forwarded), compared with an independent reference
//! (`tests/py/find.py`: fastavro, its own summary, its own filter-language evaluator and plain
//! spherical distances). Then bad requests, and a query while two nodes are down: a 503 naming
//! the partitions that cannot answer, or, with `partial=true`, the answer and the list of what
//! is missing.

use lightkeeper_storage::partitioner::partition_for;
use lightkeeper_tests::cluster::Cluster;
use lightkeeper_tests::load::{finish, producer, wait_cluster_input};
use lightkeeper_tests::*;
use serde_json::{json, Value};
use std::collections::{BTreeMap, BTreeSet};
use std::path::{Path, PathBuf};
use std::time::Duration;

const WAIT: Duration = Duration::from_secs(120);
/// How long objects take to appear once their input is consumed (the state is written with it).
const SETTLE: Duration = Duration::from_secs(20);
/// Distances within this of a cone's radius are not compared: two float implementations may
/// put such an object on either side.
const EDGE_ARCSEC: f64 = 1e-6;

/// A deterministic generator (xorshift), so the data set is the same on every run.
struct Rng(u64);
impl Rng {
    fn unit(&mut self) -> f64 {
        self.0 ^= self.0 << 13;
        self.0 ^= self.0 >> 7;
        self.0 ^= self.0 << 17;
        (self.0 >> 11) as f64 / (1u64 << 53) as f64
    }
}

/// Where synthetic object `i` is: a quarter anywhere on the sky, a quarter within 1° of
/// RA 0/360 on the equator, a quarter in the north polar cap, a quarter in a dense 0.5° field.
fn position(i: usize, rng: &mut Rng) -> (f64, f64) {
    match i % 4 {
        0 => (rng.unit() * 360.0, (rng.unit() * 2.0 - 1.0).asin().to_degrees()),
        1 => (((rng.unit() - 0.5) * 2.0).rem_euclid(360.0), (rng.unit() - 0.5) * 2.0),
        2 => (rng.unit() * 360.0, 88.5 + 1.5 * rng.unit()),
        _ => (150.0 + (rng.unit() - 0.5), 2.0 + (rng.unit() - 0.5)),
    }
}

/// Real packets of every ZTF directory with a varied content (bands, forced photometry,
/// asteroids), the LSST wire-format packets, and `n` synthetic objects re-issued from the ZTF
/// ones at chosen positions; every fifth has a second alert, elsewhere, from another template.
fn dataset(dir: &Path, n: usize) -> Vec<PathBuf> {
    let ztf = shared_data().join("ztf/alerts");
    let dirs = [
        "fink-alert-simulator/datasim_20181129",
        "pitt-google-broker/lightcurve_ZTF21abiuvdk",
        "pitt-google-broker/alerts-for-testing_20210901",
        "pittgoogle-client",
        "boom",
    ];
    let mut real: Vec<PathBuf> = dirs.iter().flat_map(|d| avro_files(&ztf.join(d))).collect();
    let templates: Vec<synth::Template> = dirs.iter().flat_map(|d| synth::load_templates(&ztf.join(d), 40)).collect();
    real.extend(avro_files(&shared_data().join("lsst/alerts/pittgoogle-client_wire")));
    real.extend(avro_files(&shared_data().join("lsst/alerts/boom")));
    std::fs::create_dir_all(dir).unwrap();
    let mut rng = Rng(0x2545_f491_4f6c_dd1d);
    let mut files = real;
    for i in 0..n {
        let (ra, dec) = position(i, &mut rng);
        let id = synth::object_id(i);
        let mut write = |k: usize, t: usize, ra: f64, dec: f64| {
            let path = dir.join(format!("find-{i:05}-{k}.avro"));
            let candid = 7_000_000_000_000_000_000 + (i * 2 + k) as i64;
            std::fs::write(&path, synth::reissue_at(&templates[t % templates.len()], &id, candid, ra, dec)).unwrap();
            files.push(path);
        };
        write(0, i, ra, dec);
        if i % 5 == 0 {
            write(1, i * 7 + 3, (ra + 0.01).rem_euclid(360.0), (dec - 0.01).max(-90.0));
        }
    }
    files
}

/// The reference's answers to `queries`, over `files`.
fn reference(files: &[PathBuf], queries: &[Value], tmp: &Path) -> Vec<Value> {
    let qpath = tmp.join("queries.json");
    std::fs::write(&qpath, serde_json::to_vec(queries).unwrap()).unwrap();
    let mut args = vec![lsst_schemas().display().to_string(), qpath.display().to_string()];
    args.extend(files.iter().map(|f| f.display().to_string()));
    serde_json::from_str(&python("find.py", &args).expect("find.py")).expect("reference JSON")
}

async fn get(url: &str) -> (u16, Value) {
    let resp = reqwest::get(url).await.unwrap_or_else(|e| panic!("GET {url}: {e}"));
    let status = resp.status().as_u16();
    (status, resp.json().await.unwrap_or(Value::Null))
}

fn q(s: &str) -> String {
    form_urlencoded::byte_serialize(s.as_bytes()).collect()
}

/// A cone answer equals the reference's: the same objects (up to those within
/// [`EDGE_ARCSEC`] of the radius), the same distances, nearest first.
fn check_cone(what: &str, got: &Value, want: &Value, radius: f64) {
    let got: Vec<(String, f64)> = got["objects"]
        .as_array()
        .unwrap_or_else(|| panic!("{what}: {got}"))
        .iter()
        .map(|o| (o["key"].as_str().unwrap().to_owned(), o["distance_arcsec"].as_f64().unwrap()))
        .collect();
    assert!(got.windows(2).all(|w| w[0].1 <= w[1].1), "{what}: not nearest first");
    let want: BTreeMap<String, f64> =
        want.as_array().unwrap().iter().map(|p| (p[0].as_str().unwrap().to_owned(), p[1].as_f64().unwrap())).collect();
    let got_map: BTreeMap<String, f64> = got.iter().cloned().collect();
    assert_eq!(got_map.len(), got.len(), "{what}: an object twice");
    for (k, d) in &want {
        match got_map.get(k) {
            Some(g) => assert!((g - d).abs() < 1e-6, "{what}: {k} at {g}″, reference {d}″"),
            None => assert!((radius - d).abs() < EDGE_ARCSEC, "{what}: {k} at {d}″ is missing"),
        }
    }
    for (k, g) in &got_map {
        assert!(
            want.contains_key(k) || (radius - g).abs() < EDGE_ARCSEC,
            "{what}: {k} at {g}″ is not in the reference"
        );
    }
}

/// Every page of `where`/`order` from `base`, following cursors; the keys in order.
async fn all_pages(base: &str, filter: Option<&str>, order: Option<&str>, limit: usize) -> Vec<String> {
    let mut keys = Vec::new();
    let mut cursor: Option<String> = None;
    for _ in 0..10_000 {
        let mut url = format!("{base}/v1/objects?limit={limit}");
        if let Some(f) = filter {
            url.push_str(&format!("&where={}", q(f)));
        }
        if let Some(o) = order {
            url.push_str(&format!("&order={}", q(o)));
        }
        if let Some(c) = &cursor {
            url.push_str(&format!("&cursor={}", q(c)));
        }
        let (status, page) = get(&url).await;
        assert_eq!(status, 200, "{url}: {page}");
        let objects = page["objects"].as_array().unwrap();
        assert!(objects.len() <= limit);
        keys.extend(objects.iter().map(|o| o["key"].as_str().unwrap().to_owned()));
        match page["next_cursor"].as_str() {
            Some(c) => cursor = Some(c.to_owned()),
            None => return keys,
        }
    }
    panic!("{filter:?} {order:?}: pages never end");
}

const FILTERS: [&str; 16] = [
    "n_detections >= 3 and mag_g < 18 and solar_system is null",
    "survey = 'lsst'",
    "isdiffpos = true and drb > 0.9",
    "rb >= 0.5 or sgscore1 < 0.2",
    "not (mag_g < 19)",
    "mag_g < mag_r",
    "solar_system is not null",
    "key in ('ztf:ZTF21abiuvdk', 'ztf:ZTF18acsbtem', 'ztf:nothing')",
    "ndethist > 5 and nbad = 0 and fwhm < 3",
    "distpsnr1 < 2 and sgscore1 > 0.5",
    "n_detections_r > 0 and first_mjd_g < 58450",
    "dec > 88.5 OR (ra < 1 or ra > 359) and n_alerts >= 1",
    "reliability is null",
    "n_upper_limits > 10 and n_forced = 0",
    "n_forced > 0 or survey != 'ztf'",
    "last_mjd >= 59000 and not (n_detections_g = 0)",
];

const ORDERS: [Option<&str>; 6] =
    [None, Some("last_mjd desc"), Some("last_mjd"), Some("mag_g asc"), Some("ndethist desc"), Some("ra desc")];

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn cone_and_where_across_every_partition_equal_an_independent_reference() {
    let tmp = tempfile::tempdir().unwrap();
    let files = dataset(&tmp.path().join("packets"), 900);
    let mut c = Cluster::new("find", &["a", "b", "c"], 3, tmp.path());
    // Partition p on the two nodes from position p: 0 → [a, b], 1 → [b, c], 2 → [c, a]; every
    // node must forward one partition's part of every query.
    c.replication_factor = Some(2);
    let mut nodes = c.start_all(WAIT).await;
    let urls = c.urls();
    finish(producer(&c.topics.input, &files, None)).await;
    wait_cluster_input(&urls, files.len() as u64, WAIT).await;

    // The queries, and the reference's answers.
    let mut rng = Rng(7);
    let mut cones: Vec<(f64, f64, f64, Option<&str>)> = vec![
        (0.0, 0.0, 3600.0, None),
        (359.95, 0.2, 1800.0, None),
        (0.05, -0.3, 600.0, Some("n_detections >= 1")),
        (10.0, 89.8, 3600.0, None),
        (180.0, 89.99, 1200.0, None),
        (0.0, 90.0, 3600.0, Some("mag_g < 19 or mag_r < 19")),
        (150.0, 2.0, 60.0, None),
        (150.0, 2.0, 2.0, None),
        (150.1, 2.1, 900.0, Some("drb > 0.5")),
        (150.0, 2.0, 3600.0, None),
    ];
    for _ in 0..20 {
        let (ra, dec) = position((rng.unit() * 4.0) as usize, &mut rng);
        cones.push((ra, dec, 1.0 + rng.unit() * 3599.0, None));
    }
    let mut queries: Vec<Value> = cones
        .iter()
        .map(|(ra, dec, r, w)| json!({"kind": "cone", "ra": ra, "dec": dec, "radius_arcsec": r, "where": w}))
        .collect();
    for f in FILTERS {
        for o in ORDERS {
            queries.push(json!({"kind": "where", "where": f, "order": o}));
        }
    }
    queries.push(json!({"kind": "where"}));
    let want = reference(&files, &queries, tmp.path());
    let all_keys: Vec<String> = serde_json::from_value(want.last().unwrap().clone()).unwrap();
    assert!(all_keys.len() > 900, "{} objects in the reference", all_keys.len());

    // Every object is materialized (pages of the whole set, through node a).
    let materialized = eventually(SETTLE, "every object to be materialized", || async {
        let got = all_pages(&urls[0], None, None, 1000).await;
        (got == all_keys).then_some(())
    })
    .await;
    if let Err(e) = materialized {
        let got = all_pages(&urls[0], None, None, 1000).await;
        let (g, w): (BTreeSet<&String>, BTreeSet<&String>) = (got.iter().collect(), all_keys.iter().collect());
        panic!(
            "{e}: {} objects, {} expected; not expected: {:?}; missing: {:?}",
            got.len(),
            all_keys.len(),
            g.difference(&w).take(10).collect::<Vec<_>>(),
            w.difference(&g).take(10).collect::<Vec<_>>()
        );
    }

    // Cones: each asked of another node.
    for (i, (ra, dec, r, w)) in cones.iter().enumerate() {
        let mut url = format!("{}/v1/cone?ra={ra}&dec={dec}&radius_arcsec={r}&limit=10000", urls[i % 3]);
        if let Some(w) = w {
            url.push_str(&format!("&where={}", q(w)));
        }
        let (status, got) = get(&url).await;
        assert_eq!(status, 200, "{url}: {got}");
        assert_eq!(got["missing_partitions"], json!([]));
        check_cone(&url, &got, &want[i], *r);
    }
    // A real object, found where it is; a small limit keeps the nearest.
    let (status, z) = get(&format!("{}/v1/objects/ztf:ZTF21abiuvdk", urls[1])).await;
    assert_eq!(status, 200);
    let (ra, dec) = (z["ra"].as_f64().unwrap(), z["dec"].as_f64().unwrap());
    let (_, near) = get(&format!("{}/v1/cone?ra={ra}&dec={dec}&radius_arcsec=2", urls[2])).await;
    assert_eq!(near["objects"][0]["key"], "ztf:ZTF21abiuvdk", "{near}");
    assert!(near["objects"][0]["distance_arcsec"].as_f64().unwrap() < 1e-6);
    let (_, five) = get(&format!("{}/v1/cone?ra=150&dec=2&radius_arcsec=3600&limit=5", urls[0])).await;
    let (_, all) = get(&format!("{}/v1/cone?ra=150&dec=2&radius_arcsec=3600&limit=10000", urls[0])).await;
    assert_eq!(five["objects"].as_array().unwrap()[..], all["objects"].as_array().unwrap()[..5]);

    // Where: every filter in every order, paged with cursors from a different node each time;
    // each object exactly once, in the reference's order.
    let mut n = 0;
    for f in FILTERS {
        for o in ORDERS {
            let expected: Vec<String> = serde_json::from_value(want[cones.len() + n].clone())
                .unwrap_or_else(|_| panic!("reference for {f:?} {o:?}: {}", want[cones.len() + n]));
            let got = all_pages(&urls[n % 3], Some(f), o, 37).await;
            let unique: BTreeSet<&String> = got.iter().collect();
            assert_eq!(unique.len(), got.len(), "{f:?} {o:?}: an object on two pages");
            assert_eq!(got, expected, "{f:?} order {o:?}");
            n += 1;
        }
    }

    // Bad requests: a 400 saying what was wrong.
    let base = &urls[1];
    for (path, code, says) in [
        ("/v1/cone?ra=400&dec=0&radius_arcsec=1", "invalid_query", "ra must be between 0 and 360"),
        ("/v1/cone?ra=10&dec=-91&radius_arcsec=1", "invalid_query", "dec must be between -90 and 90"),
        ("/v1/cone?ra=10&dec=0&radius_arcsec=3601", "invalid_query", "at most 3600"),
        ("/v1/cone?ra=10&dec=0&radius_arcsec=1&limit=100001", "invalid_query", "limit must be"),
        ("/v1/objects?where=mag_q%20%3C%201", "bad_filter", "unknown field 'mag_q'"),
        ("/v1/objects?where=survey%20%3D%2018", "bad_filter", "type mismatch"),
        ("/v1/objects?where=mag_g%20%3C", "bad_filter", "at position"),
        ("/v1/objects?limit=0", "invalid_query", "limit must be"),
        ("/v1/objects?order=isdiffpos", "invalid_query", "order"),
        ("/v1/objects?cursor=not-a-cursor", "invalid_cursor", "cursor"),
    ] {
        let (status, body) = get(&format!("{base}{path}")).await;
        assert_eq!(status, 400, "{path}: {body}");
        assert_eq!(body["error"]["code"], code, "{path}: {body}");
        let message = body["error"]["message"].as_str().unwrap();
        assert!(message.contains(says), "{path}: {message:?} should say {says:?}");
    }
    let (status, fields) = get(&format!("{base}/v1/fields")).await;
    assert_eq!(status, 200);
    let names: BTreeSet<&str> =
        fields["fields"].as_array().unwrap().iter().map(|f| f["name"].as_str().unwrap()).collect();
    for name in ["survey", "ra", "mag_g", "n_detections", "solar_system", "drb", "sgscore1", "isdiffpos", "psfFlux"] {
        assert!(names.contains(name), "/v1/fields lists {name}");
    }

    // Two nodes down: partition 1 (on b and c) has no replica left; partition 2 (on c and a)
    // has none serving until a fails over to it. Never a silently partial answer: a 503 naming
    // what cannot answer, or, asked for, the rest and the list of what is missing.
    nodes[1].kill();
    nodes[2].kill();
    let cone_all = "ra=150&dec=2&radius_arcsec=3600&limit=10000";
    let (status, body) = get(&format!("{}/v1/cone?{cone_all}", urls[0])).await;
    assert_eq!(status, 503, "{body}");
    let message = body["error"]["message"].as_str().unwrap();
    assert!(
        message.contains("partitions [1] did not answer") || message.contains("partitions [1, 2] did not answer"),
        "{message}"
    );
    assert!(message.contains("partial=true"), "{message}");
    let (status, part) = get(&format!("{}/v1/cone?{cone_all}&partial=true", urls[0])).await;
    assert_eq!(status, 200, "{part}");
    let gone: Vec<u32> = serde_json::from_value(part["missing_partitions"].clone()).unwrap();
    assert!(gone == [1] || gone == [1, 2], "{gone:?}");
    let answered: Vec<&Value> = all["objects"]
        .as_array()
        .unwrap()
        .iter()
        .filter(|o| !gone.contains(&partition_for(o["key"].as_str().unwrap().as_bytes(), 3)))
        .collect();
    assert_eq!(part["objects"].as_array().unwrap().iter().collect::<Vec<_>>(), answered);
    // A standby may answer when the client allows it: only partition 1 is missing then.
    let (status, lagged) = get(&format!("{}/v1/objects?partial=true&max_lag=1000000", urls[0])).await;
    assert_eq!(status, 200, "{lagged}");
    assert_eq!(lagged["missing_partitions"], json!([1]));
}
