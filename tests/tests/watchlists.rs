//! Watch lists on real nodes (embedded: real RocksDB, real processes): a list built from real
//! object positions (read independently, with fastavro) plus decoys gives exactly the matches
//! an independent cross-match gives; a list put after the alerts (as a VOTable, run over the
//! stored objects) gives the same annotations as one put before them (as CSV, run live); the
//! `watchlist` filter field finds the matched objects; subscribers (to an object, to the filter)
//! are pushed the re-annotation; deleting the list removes the matches.

use lightkeeper_clients::api::ws::ServerMsg;
use lightkeeper_clients::Client;
use lightkeeper_tests::{avro_files, consumed, eventually, python, separation_arcsec, shared_data, NodeProcess};
use serde_json::Value;
use std::collections::{BTreeMap, BTreeSet};
use std::time::Duration;

const TOKEN: &str = "watch-admin";
const WAIT: Duration = Duration::from_secs(60);

struct Started {
    node: NodeProcess,
    client: Client,
    url: String,
}

async fn start(dir: &std::path::Path) -> Started {
    let env = [("LIGHTKEEPER_CLUSTER__ADMIN_TOKEN", TOKEN.to_owned())];
    let node = NodeProcess::start(dir, &[], &env).unwrap();
    node.wait_ready(WAIT).await.unwrap();
    let client = Client::new(&node.url).unwrap();
    let url = node.url.clone();
    Started { node, client, url }
}

async fn ingest(s: &Started, files: &[std::path::PathBuf]) {
    let http = reqwest::Client::new();
    for f in files {
        let r = http.post(format!("{}/v1/alerts", s.url)).body(std::fs::read(f).unwrap()).send().await.unwrap();
        assert_eq!(r.status(), 202);
    }
    let n = files.len() as u64;
    eventually(WAIT, "every alert applied", || async { (consumed(&s.client).await? >= n).then_some(()) })
        .await
        .unwrap();
}

/// The CSV catalog as a VOTable (TABLEDATA), with the columns' UCDs.
fn votable(csv: &str) -> String {
    let mut rows = String::new();
    for line in csv.lines().skip(1) {
        let cells: String = line.split(',').map(|c| format!("<TD>{c}</TD>")).collect();
        rows.push_str(&format!("<TR>{cells}</TR>\n"));
    }
    format!(
        r#"<?xml version="1.0" encoding="UTF-8"?>
<VOTABLE version="1.4" xmlns="http://www.ivoa.net/xml/VOTable/v1.3"><RESOURCE><TABLE>
<FIELD name="name" datatype="char" arraysize="*" ucd="meta.id;meta.main"/>
<FIELD name="ra" datatype="double" unit="deg" ucd="pos.eq.ra;meta.main"/>
<FIELD name="dec" datatype="double" unit="deg" ucd="pos.eq.dec;meta.main"/>
<FIELD name="radius" datatype="double" unit="arcsec"/>
<DATA><TABLEDATA>
{rows}</TABLEDATA></DATA></TABLE></RESOURCE></VOTABLE>"#
    )
}

async fn put_list(url: &str, csv: &str) {
    let r = reqwest::Client::new()
        .put(format!("{url}/v1/watchlists/mine"))
        .bearer_auth(TOKEN)
        .header("content-type", "text/csv")
        .body(csv.to_owned())
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 200, "{}", r.text().await.unwrap());
}

/// Each object's matches as (entry name, distance) in the node's order.
async fn annotations(s: &Started, keys: &BTreeSet<String>) -> BTreeMap<String, (Vec<(String, f64)>, u64)> {
    let mut out = BTreeMap::new();
    for k in keys {
        let v = s.client.get_json(&format!("/v1/objects/{k}")).await.unwrap();
        let m = v["watchlists"]
            .as_array()
            .unwrap()
            .iter()
            .map(|m| {
                assert_eq!(m["watchlist"], "mine");
                (m["name"].as_str().unwrap().to_owned(), m["distance_arcsec"].as_f64().unwrap())
            })
            .collect();
        out.insert(k.clone(), (m, v["version"].as_u64().unwrap()));
    }
    out
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn watch_lists_match_like_an_independent_cross_match_live_and_over_stored_objects() {
    let files = avro_files(&shared_data().join("ztf/alerts/fink-alert-simulator/datasim_20181129"));
    let args: Vec<String> =
        std::iter::once("solar".to_owned()).chain(files.iter().map(|f| f.display().to_string())).collect();
    let alerts: Vec<Value> = serde_json::from_str(&python("alerts.py", &args).unwrap()).unwrap();
    // Each object's position: its newest alert's (by time, then candid), as the node keeps it.
    let mut position: BTreeMap<String, (f64, i64, f64, f64)> = BTreeMap::new();
    for a in &alerts {
        let key = a["key"].as_str().unwrap().to_owned();
        let t = (a["jd"].as_f64().unwrap(), a["candid"].as_str().unwrap().parse::<i64>().unwrap());
        let p = (t.0, t.1, a["ra"].as_f64().unwrap(), a["dec"].as_f64().unwrap());
        let e = position.entry(key).or_insert(p);
        if (t.0, t.1) > (e.0, e.1) {
            *e = p;
        }
    }
    let keys: BTreeSet<String> = position.keys().cloned().collect();

    // The catalog: entries a few arcsec off 20 real objects (some inside their radius, some
    // just outside), a wide one, and decoys where no object is.
    let mut csv = String::from("name,ra,dec,radius\n");
    for (i, (_, (_, _, ra, dec))) in position.iter().take(20).enumerate() {
        let offset = 1.0 + (i % 5) as f64 * 1.5; // 1 to 7 arcsec north
        csv.push_str(&format!("near{i},{ra},{},4.7\n", dec + offset / 3600.0));
    }
    let (_, _, ra0, dec0) = position.values().nth(25).copied().unwrap();
    csv.push_str(&format!("wide,{ra0},{dec0},1800\n"));
    for i in 0..10 {
        csv.push_str(&format!("decoy{i},{},{},30\n", 5.0 + i as f64 * 0.7, -80.0 + i as f64));
    }
    // The independent cross-match.
    let mut expected: BTreeMap<String, BTreeSet<String>> = BTreeMap::new();
    let mut rd = csv::Reader::from_reader(csv.as_bytes());
    for row in rd.records() {
        let row = row.unwrap();
        let (name, ra, dec, r): (&str, f64, f64, f64) =
            (&row[0], row[1].parse().unwrap(), row[2].parse().unwrap(), row[3].parse().unwrap());
        for (key, (_, _, ora, odec)) in &position {
            if separation_arcsec(ra, dec, *ora, *odec) <= r {
                expected.entry(key.clone()).or_default().insert(name.to_owned());
            }
        }
    }
    let matched: BTreeSet<String> = expected.keys().cloned().collect();
    assert!(matched.len() >= 10, "the catalog matches real objects: {expected:?}");
    assert!(matched.len() < keys.len(), "and not all of them");

    let tmp = tempfile::tempdir().unwrap();
    // Live: the list first, then the alerts.
    let live = start(&tmp.path().join("live")).await;
    let r = reqwest::Client::new()
        .put(format!("{}/v1/watchlists/mine", live.url))
        .bearer_auth(TOKEN)
        .body("name,ra,dec,radius\nbad,1,95,3\n")
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 400);
    let e: Value = r.json().await.unwrap();
    assert!(e["error"]["message"].as_str().unwrap().contains("line 2"), "{e}");
    put_list(&live.url, &csv).await;
    ingest(&live, &files).await;
    let live_view = annotations(&live, &keys).await;
    for k in &keys {
        let got: BTreeSet<String> = live_view[k].0.iter().map(|(n, _)| n.clone()).collect();
        assert_eq!(got, expected.get(k).cloned().unwrap_or_default(), "{k}: live matches");
        for (name, d) in &live_view[k].0 {
            let row = csv.lines().find(|l| l.starts_with(&format!("{name},"))).unwrap();
            let f: Vec<f64> = row.split(',').skip(1).map(|x| x.parse().unwrap()).collect();
            let (_, _, ra, dec) = position[k];
            assert!((separation_arcsec(f[0], f[1], ra, dec) - d).abs() < 1e-6, "{k} {name}: distance {d}");
        }
    }

    // The filter language sees the annotation.
    let found = live.client.get_json("/v1/objects?where=watchlist%20%3D%20%27mine%27&limit=1000").await.unwrap();
    let found: BTreeSet<String> =
        found["objects"].as_array().unwrap().iter().map(|o| o["key"].as_str().unwrap().to_owned()).collect();
    assert_eq!(found, matched, "where watchlist = 'mine'");

    // Stored: the alerts first, then the list (the same catalog, as a VOTable this time); the
    // same annotations, each a new version.
    let stored = start(&tmp.path().join("stored")).await;
    ingest(&stored, &files).await;
    let before = annotations(&stored, &keys).await;
    assert!(before.values().all(|(m, _)| m.is_empty()));
    // Subscribers are pushed the re-annotation like any change: one following a matched
    // object, one following the filter `watchlist = 'mine'`.
    let watched = matched.iter().next().unwrap().clone();
    let mut object_sub = stored.client.subscribe("o", &[&watched], None).await.unwrap();
    let mut filter_sub = stored.client.subscribe_filter("f", "watchlist = 'mine'", None, false).await.unwrap();
    assert!(matches!(filter_sub.next(WAIT).await.unwrap(), Some(ServerMsg::Subscribed { .. })));
    put_list(&stored.url, &votable(&csv)).await;
    let pushed = loop {
        match object_sub.next(WAIT).await.unwrap() {
            Some(ServerMsg::Update { key, version, object, .. }) => break (key, version, object),
            Some(_) => continue,
            None => panic!("no update pushed for {watched}"),
        }
    };
    assert_eq!(pushed.0, watched);
    assert_eq!(pushed.1, before[&watched].1 + 1);
    assert!(pushed.2.watchlists.iter().any(|m| m.watchlist == "mine"), "{:?}", pushed.2.watchlists);
    let mut entered = BTreeSet::new();
    while entered.len() < matched.len() {
        match filter_sub.next(WAIT).await.unwrap() {
            Some(ServerMsg::Update { key, .. }) => {
                entered.insert(key);
            }
            Some(_) => {}
            None => break,
        }
    }
    assert_eq!(entered, matched, "the filter subscription is pushed every re-annotated object");
    let after = eventually(WAIT, "the stored objects re-annotated", || async {
        let view = annotations(&stored, &keys).await;
        matched.iter().all(|k| !view[k].0.is_empty()).then_some(view)
    })
    .await
    .unwrap();
    for k in &keys {
        assert_eq!(after[k].0, live_view[k].0, "{k}: over stored objects = live");
        let bump = u64::from(matched.contains(k));
        assert_eq!(after[k].1, before[k].1 + bump, "{k}: a re-annotation is one change");
    }

    // Deleted: the matches go.
    let r = reqwest::Client::new()
        .delete(format!("{}/v1/watchlists/mine", stored.url))
        .bearer_auth(TOKEN)
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 204);
    eventually(WAIT, "the matches removed", || async {
        let view = annotations(&stored, &keys).await;
        view.values().all(|(m, _)| m.is_empty()).then_some(())
    })
    .await
    .unwrap();
    drop(live.node);
    drop(stored.node);
}
