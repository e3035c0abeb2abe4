//! Cutouts and original packets (issue 12) against real nodes: the FITS a node serves is
//! byte-identical to the packet's own image (ZTF's gunzipped with an independent Avro reader;
//! LSST's found verbatim in the packet), PNGs decode to the stamp's size with real contrast,
//! the packet comes back byte for byte, and on a Kafka cluster a standby serves them and so
//! does the new master after the old one is killed — stamps live in the input log, which every
//! replica can read.

use apache_avro::types::Value;
use lightkeeper_clients::api::cluster::Role;
use lightkeeper_clients::api::model::CutoutKind;
use lightkeeper_clients::api::stats::StatsStep;
use lightkeeper_storage::partitioner::partition_for;
use lightkeeper_tests::cluster::{partitions, Cluster, TOKEN};
use lightkeeper_tests::load::{finish, producer};
use lightkeeper_tests::*;
use std::io::Read;
use std::path::PathBuf;
use std::time::Duration;

const WAIT: Duration = Duration::from_secs(120);
const KINDS: [&str; 3] = ["science", "template", "difference"];

fn ztf_file() -> PathBuf {
    shared_data().join("ztf/alerts/boom/2695378462115010012.avro")
}
const ZTF_KEY: &str = "ztf:ZTF18abudxnw";
const ZTF_ALERT: &str = "2695378462115010012";

/// Rubin v7.1 on HSC precursor images: three raw FITS stamps of 34,560 bytes.
fn lsst_file() -> PathBuf {
    shared_data().join("lsst/alerts/boom/25409136044802067.avro")
}
const LSST_KEY: &str = "lsst:25401295582003262";
const LSST_ALERT: &str = "25409136044802067";

/// The ZTF packet's stamp of `kind`, gunzipped, read with apache-avro's container reader (not
/// the node's codec).
fn ztf_stamp(kind: &str) -> Vec<u8> {
    let field = match kind {
        "science" => "cutoutScience",
        "template" => "cutoutTemplate",
        _ => "cutoutDifference",
    };
    let bytes = std::fs::read(ztf_file()).unwrap();
    let mut reader = apache_avro::Reader::new(&bytes[..]).unwrap();
    let Value::Record(fields) = reader.next().unwrap().unwrap() else { panic!("not a record") };
    let mut v = &fields.iter().find(|(n, _)| n == field).unwrap().1;
    if let Value::Union(_, inner) = v {
        v = inner;
    }
    let Value::Record(stamp) = v else { panic!("{field} is not a record") };
    let Value::Bytes(gz) = &stamp.iter().find(|(n, _)| n == "stampData").unwrap().1 else { panic!("stampData") };
    let mut out = Vec::new();
    flate2::read::GzDecoder::new(&gz[..]).read_to_end(&mut out).unwrap();
    out
}

/// NAXIS1 and NAXIS2 of the first header with both.
fn fits_shape(fits: &[u8]) -> (u32, u32) {
    let card = |name: &str| -> Option<u32> {
        fits.chunks(80).find(|c| c.starts_with(name.as_bytes()))?[10..30].escape_ascii().to_string().trim().parse().ok()
    };
    (card("NAXIS1 ").unwrap(), card("NAXIS2 ").unwrap())
}

fn decode_png(png: &[u8]) -> (u32, u32, Vec<u8>) {
    let mut reader = ::png::Decoder::new(std::io::Cursor::new(png)).read_info().unwrap();
    let mut buf = vec![0; reader.output_buffer_size()];
    let info = reader.next_frame(&mut buf).unwrap();
    buf.truncate(info.buffer_size());
    (info.width, info.height, buf)
}

struct Got {
    status: u16,
    content_type: String,
    etag: Option<String>,
    served: (String, String),
    body: Vec<u8>,
}

async fn get(http: &reqwest::Client, url: &str) -> Got {
    let r = http.get(url).send().await.unwrap_or_else(|e| panic!("GET {url}: {e}"));
    let h = |n: &str| r.headers().get(n).map(|v| v.to_str().unwrap().to_owned());
    let (status, content_type, etag) = (r.status().as_u16(), h("content-type").unwrap_or_default(), h("etag"));
    let served = (h("x-lightkeeper-served-by").unwrap_or_default(), h("x-lightkeeper-role").unwrap_or_default());
    Got { status, content_type, etag, served, body: r.bytes().await.unwrap().to_vec() }
}

fn error_code(body: &[u8]) -> String {
    let v: serde_json::Value = serde_json::from_slice(body).unwrap();
    v["error"]["code"].as_str().unwrap().to_owned()
}

/// Every stamp of both alerts as FITS (checked against the packets) and PNG, from `url`
/// with `query`; returns who served the last one.
async fn check_stamps(http: &reqwest::Client, url: &str, query: &str) -> (String, String) {
    let lsst_packet = std::fs::read(lsst_file()).unwrap();
    let mut served = Default::default();
    for kind in KINDS {
        let fits = get(http, &format!("{url}/v1/objects/{ZTF_KEY}/cutouts/{ZTF_ALERT}/{kind}{query}")).await;
        assert_eq!((fits.status, fits.content_type.as_str()), (200, "application/fits"), "{kind}");
        assert_eq!(fits.body, ztf_stamp(kind), "ZTF {kind}: the packet's FITS, gunzipped, byte for byte");

        let lsst = get(http, &format!("{url}/v1/objects/{LSST_KEY}/cutouts/{LSST_ALERT}/{kind}{query}")).await;
        assert_eq!(lsst.status, 200, "LSST {kind}: {}", String::from_utf8_lossy(&lsst.body));
        assert_eq!(lsst.body.len(), 34_560, "LSST {kind} stamp size");
        assert!(lsst.body.starts_with(b"SIMPLE  ="), "LSST {kind} is FITS");
        assert!(
            lsst_packet.windows(lsst.body.len()).any(|w| w == lsst.body),
            "LSST {kind}: the bytes are the packet's own stamp"
        );

        for (key, alert, fits) in [(ZTF_KEY, ZTF_ALERT, &fits.body), (LSST_KEY, LSST_ALERT, &lsst.body)] {
            let sep = if query.is_empty() { '?' } else { '&' };
            let png = get(http, &format!("{url}/v1/objects/{key}/cutouts/{alert}/{kind}{query}{sep}format=png")).await;
            assert_eq!((png.status, png.content_type.as_str()), (200, "image/png"), "{key} {kind}");
            let (w, h, px) = decode_png(&png.body);
            let (nx, ny) = fits_shape(fits);
            // Rubin stamps keep the image in an extension; its shape is the last NAXISn pair.
            if key == ZTF_KEY {
                assert_eq!((w, h), (nx, ny), "{key} {kind}: PNG is the stamp's size");
            }
            assert!(w >= 30 && h >= 30, "{key} {kind}: {w}×{h}");
            let grey: Vec<u8> = px.chunks(2).filter(|p| p[1] == 255).map(|p| p[0]).collect();
            let (lo, hi) = (grey.iter().min().copied().unwrap_or(0), grey.iter().max().copied().unwrap_or(0));
            assert!(grey.len() > (w * h / 2) as usize && hi - lo > 100, "{key} {kind}: a stretched image ({lo}..{hi})");
        }
        served = fits.served;
    }
    served
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn stamps_are_the_packets_images_and_render_for_a_browser() {
    let tmp = tempfile::tempdir().unwrap();
    let node = NodeProcess::start(&tmp.path().join("node"), &[], &[]).unwrap();
    node.wait_ready(Duration::from_secs(60)).await.unwrap();
    let client = lightkeeper_clients::Client::new(&node.url).unwrap();
    let lsst_negative = shared_data().join("lsst/alerts/boom/7912941781254298.avro");
    for f in [ztf_file(), lsst_file(), lsst_negative] {
        client.ingest(std::fs::read(f).unwrap()).await.unwrap();
    }
    eventually(WAIT, "the three alerts applied", || async {
        let mut n = 0;
        for k in [ZTF_KEY, LSST_KEY, "lsst:7912941781254298"] {
            n += usize::from(client.object(k).await.is_ok());
        }
        (n == 3).then_some(())
    })
    .await
    .unwrap();
    let http = reqwest::Client::new();
    let url = &node.url;

    let list = get(&http, &format!("{url}/v1/objects/{ZTF_KEY}/cutouts")).await;
    assert_eq!(list.status, 200);
    let list: serde_json::Value = serde_json::from_slice(&list.body).unwrap();
    assert_eq!(list["alerts"][0]["alert_id"], ZTF_ALERT);
    assert_eq!(list["alerts"][0]["kinds"], serde_json::json!(KINDS));
    assert_eq!(list["version"], 1);

    check_stamps(&http, url, "").await;

    // The original packet, byte for byte.
    let packet = get(&http, &format!("{url}/v1/objects/{ZTF_KEY}/alerts/{ZTF_ALERT}/packet")).await;
    assert_eq!(packet.status, 200);
    assert_eq!(packet.body, std::fs::read(ztf_file()).unwrap());
    let packet = get(&http, &format!("{url}/v1/objects/{LSST_KEY}/alerts/{LSST_ALERT}/packet")).await;
    assert_eq!(packet.body, std::fs::read(lsst_file()).unwrap());

    // Revalidation: the ETag of an unchanged object answers 304.
    let stamp = format!("{url}/v1/objects/{ZTF_KEY}/cutouts/{ZTF_ALERT}/science?format=png");
    let etag = get(&http, &stamp).await.etag.expect("an ETag");
    let again = http.get(&stamp).header("if-none-match", &etag).send().await.unwrap();
    assert_eq!(again.status(), 304);

    // The Rust client's typed methods over the same routes.
    let alert: i64 = ZTF_ALERT.parse().unwrap();
    let listed = client.cutouts(ZTF_KEY).await.unwrap();
    assert_eq!((listed.alerts.len(), listed.alerts[0].alert_id), (1, alert));
    assert_eq!(listed.alerts[0].kinds, CutoutKind::ALL.to_vec());
    for kind in CutoutKind::ALL {
        assert_eq!(client.cutout(ZTF_KEY, alert, kind, false).await.unwrap(), ztf_stamp(kind.as_str()));
    }
    assert!(client.cutout(ZTF_KEY, alert, CutoutKind::Science, true).await.unwrap().starts_with(b"\x89PNG"));
    assert_eq!(client.packet(ZTF_KEY, alert).await.unwrap(), std::fs::read(ztf_file()).unwrap());
    match client.cutout(ZTF_KEY, 1, CutoutKind::Science, false).await {
        Err(lightkeeper_clients::ClientError::Api { status: 404, code, .. }) => assert_eq!(code, "alert_not_found"),
        other => panic!("expected a 404 alert_not_found, got {other:?}"),
    }
    assert_eq!(client.alert_history(ZTF_KEY).await.unwrap().alerts[0].alert_id, alert);
    assert_eq!(client.light_curve(ZTF_KEY, "kind=detection").await.unwrap().version, 1);
    let stats = client.stats(StatsStep::Hour, None, None).await.unwrap();
    assert_eq!((stats.total.alerts, stats.total.new_objects), (3, 3), "{stats:?}");
    assert!(client.fields().await.unwrap().fields.iter().any(|f| f.name == "n_detections"));
    assert_eq!(client.healthz().await.unwrap().status, "ok");
    assert_eq!(client.readyz().await.unwrap().status, "ready");
    assert!(client.metrics().await.unwrap().contains("lightkeeper_"));
    assert!(client.openapi().await.unwrap()["paths"]["/v1/stats"].is_object());

    // Clear errors.
    for (path, status, code) in [
        (format!("/v1/objects/{ZTF_KEY}/cutouts/1/science"), 404, "alert_not_found"),
        (format!("/v1/objects/{ZTF_KEY}/alerts/1/packet"), 404, "alert_not_found"),
        ("/v1/objects/ztf:ZTF99nothere/cutouts".to_owned(), 404, "object_not_found"),
        (format!("/v1/objects/{ZTF_KEY}/cutouts/{ZTF_ALERT}/bias"), 400, "invalid_path"),
        (format!("/v1/objects/{ZTF_KEY}/cutouts/x/science"), 400, "invalid_path"),
        (format!("/v1/objects/{ZTF_KEY}/cutouts/{ZTF_ALERT}/science?format=jpeg"), 400, "invalid_query"),
    ] {
        let got = get(&http, &format!("{url}{path}")).await;
        assert_eq!((got.status, error_code(&got.body).as_str()), (status, code), "{path}");
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn a_standby_serves_stamps_and_so_does_the_new_master_after_a_kill() {
    let tmp = tempfile::tempdir().unwrap();
    let c = Cluster::new("cutouts", &["a", "b"], 2, tmp.path()).fixed_masters();
    let mut a = c.start("a");
    let b = c.start("b");
    a.wait_ready(WAIT).await.unwrap();
    b.wait_ready(WAIT).await.unwrap();
    finish(producer(&c.topics.input, &[ztf_file(), lsst_file()], None)).await;
    let http = reqwest::Client::new();
    // Both objects replicated to b (a standby answers reads within max_lag).
    eventually(WAIT, "b's replicas hold both objects", || async {
        let mut n = 0;
        for k in [ZTF_KEY, LSST_KEY] {
            n += usize::from(get(&http, &format!("{}/v1/objects/{k}?max_lag=0", b.url)).await.status == 200);
        }
        (n == 2).then_some(())
    })
    .await
    .unwrap();
    let served = check_stamps(&http, &b.url, "?max_lag=0").await;
    assert_eq!(served, ("b".to_owned(), "standby".to_owned()), "the standby served the stamps itself");

    a.kill();
    let parts: Vec<u32> = [ZTF_KEY, LSST_KEY].iter().map(|k| partition_for(k.as_bytes(), 2)).collect();
    let admin = lightkeeper_clients::Client::new(&b.url).unwrap();
    for p in 0..2 {
        let report = admin.promote(p, TOKEN, true).await.unwrap();
        assert_eq!(report.promoted.previous_master, "a", "{report:?}");
    }
    eventually(WAIT, "b masters both partitions", || async {
        let ps = partitions(&b.url).await.ok()?;
        ps.iter().filter(|p| parts.contains(&p.partition)).all(|p| p.role == Role::Master && p.ready).then_some(())
    })
    .await
    .unwrap();
    let served = check_stamps(&http, &b.url, "").await;
    assert_eq!(served, ("b".to_owned(), "master".to_owned()), "the new master serves the stamps");
    let packet = get(&http, &format!("{}/v1/objects/{ZTF_KEY}/alerts/{ZTF_ALERT}/packet", b.url)).await;
    assert_eq!(packet.body, std::fs::read(ztf_file()).unwrap());
}
