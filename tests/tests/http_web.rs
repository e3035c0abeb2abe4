//! HTTP as the web expects it, against a real node: compressed responses (the object reads
//! from the cache, the rest by the compression layer), ETags and 304s that follow the object's
//! version, CORS for a configured origin only, and light curves as VOTable with times as JD and
//! ISO UTC — checked against astropy, an independent reader and time library.

use futures::{SinkExt, StreamExt};
use lightkeeper_clients::api::ws::{ClientOp, ServerMsg};
use lightkeeper_clients::Client;
use lightkeeper_tests::*;
use reqwest::header::HeaderMap;
use reqwest::StatusCode;
use std::io::Read;
use std::time::Duration;
use tokio_tungstenite::tungstenite::client::IntoClientRequest;
use tokio_tungstenite::tungstenite::Message;

const WAIT: Duration = Duration::from_secs(60);
const ORIGIN: &str = "https://sky.example.org";

fn decode(encoding: &str, body: &[u8]) -> Vec<u8> {
    let mut out = Vec::new();
    match encoding {
        "gzip" => flate2::read::GzDecoder::new(body).read_to_end(&mut out).unwrap(),
        "br" => brotli::Decompressor::new(body, 4096).read_to_end(&mut out).unwrap(),
        other => panic!("unexpected content-encoding {other}"),
    };
    out
}

async fn get(http: &reqwest::Client, url: &str, headers: &[(&str, &str)]) -> (StatusCode, HeaderMap, Vec<u8>) {
    let mut req = http.get(url);
    for (k, v) in headers {
        req = req.header(*k, *v);
    }
    let resp = req.send().await.unwrap();
    let (status, headers) = (resp.status(), resp.headers().clone());
    (status, headers, resp.bytes().await.unwrap().to_vec())
}

fn header<'a>(h: &'a HeaderMap, name: &str) -> Option<&'a str> {
    h.get(name).map(|v| v.to_str().unwrap())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn compression_etags_cors_and_votable() {
    let tmp = tempfile::tempdir().unwrap();
    let config = tmp.path().join("node.toml");
    std::fs::write(&config, format!("[http]\ncors_allow_origins = [\"{ORIGIN}\"]\n")).unwrap();
    let node = NodeProcess::start(&tmp.path().join("node"), &["--config", config.to_str().unwrap()], &[]).unwrap();
    node.wait_ready(WAIT).await.unwrap();
    let client = Client::new(&node.url).unwrap();
    // reqwest as built here neither asks for nor decodes compressed bodies: what it gets is
    // what the node sent.
    let http = reqwest::Client::new();

    let mut files = avro_files(&shared_data().join("ztf/alerts/pitt-google-broker/lightcurve_ZTF21abiuvdk"));
    let last = files.pop().unwrap();
    for f in &files {
        client.ingest(std::fs::read(f).unwrap()).await.unwrap();
    }
    let key = "ztf:ZTF21abiuvdk";
    let n = files.len();
    eventually(WAIT, "the light curve", || async { client.object(key).await.ok().filter(|o| o["n_alerts"] == n) })
        .await
        .unwrap();
    let lc_url = format!("{}/v1/objects/{key}/lightcurve", node.url);

    // Compression: the same bytes, whichever coding; the coded ones served again identically.
    let (status, plain_headers, plain) = get(&http, &lc_url, &[]).await;
    assert_eq!(status, StatusCode::OK);
    assert_eq!(header(&plain_headers, "content-encoding"), None);
    assert_eq!(header(&plain_headers, "vary"), Some("accept-encoding"));
    for (accept, coding) in [("gzip, deflate, br", "br"), ("gzip", "gzip"), ("br;q=0.1, gzip;q=0.9", "gzip")] {
        let (status, h, body) = get(&http, &lc_url, &[("accept-encoding", accept)]).await;
        assert_eq!(status, StatusCode::OK);
        assert_eq!(header(&h, "content-encoding"), Some(coding), "{accept}");
        assert!(body.len() * 3 < plain.len(), "{coding}: {} bytes of {}", body.len(), plain.len());
        assert_eq!(decode(coding, &body), plain, "{coding} decodes to the plain body");
        let (_, _, again) = get(&http, &lc_url, &[("accept-encoding", accept)]).await;
        assert_eq!(again, body, "the cached {coding} rendering");
    }
    // Other routes through the compression layer.
    let cone = format!("{}/v1/cone?ra=0&dec=0&radius_arcsec=10", node.url);
    let (status, h, body) = get(&http, &format!("{}/openapi.json", node.url), &[("accept-encoding", "gzip")]).await;
    assert_eq!((status, header(&h, "content-encoding")), (StatusCode::OK, Some("gzip")));
    let spec: serde_json::Value = serde_json::from_slice(&decode("gzip", &body)).unwrap();
    assert!(spec["paths"]["/v1/objects/{key}/lightcurve"].is_object());
    let (status, _, _) = get(&http, &cone, &[("accept-encoding", "br")]).await;
    assert_eq!(status, StatusCode::OK);

    // ETag from the version: 304 while unchanged, a new tag once the object changes.
    let etag = header(&plain_headers, "etag").expect("an ETag").to_owned();
    let version = client.object(key).await.unwrap()["version"].as_u64().unwrap();
    assert_eq!(etag, format!("W/\"v{version}\""));
    let (status, h, body) = get(&http, &lc_url, &[("if-none-match", &etag), ("accept-encoding", "br")]).await;
    assert_eq!(status, StatusCode::NOT_MODIFIED);
    assert!(body.is_empty());
    assert_eq!(header(&h, "etag"), Some(etag.as_str()));
    let summary_url = format!("{}/v1/objects/{key}", node.url);
    let (status, _, _) = get(&http, &summary_url, &[("if-none-match", &etag)]).await;
    assert_eq!(status, StatusCode::NOT_MODIFIED, "the summary shares the version's tag");
    client.ingest(std::fs::read(&last).unwrap()).await.unwrap();
    eventually(WAIT, "the last alert", || async { client.object(key).await.ok().filter(|o| o["n_alerts"] == n + 1) })
        .await
        .unwrap();
    let (status, h, body) = get(&http, &lc_url, &[("if-none-match", &etag)]).await;
    assert_eq!(status, StatusCode::OK, "changed since the tag");
    assert_ne!(header(&h, "etag"), Some(etag.as_str()));
    assert!(body.len() > plain.len());

    // CORS: the configured origin may read, with the headers it needs; another may not.
    let preflight = http
        .request(reqwest::Method::OPTIONS, &lc_url)
        .header("origin", ORIGIN)
        .header("access-control-request-method", "GET")
        .header("access-control-request-headers", "if-none-match")
        .send()
        .await
        .unwrap();
    assert!(preflight.status().is_success(), "{}", preflight.status());
    assert_eq!(header(preflight.headers(), "access-control-allow-origin"), Some(ORIGIN));
    let (_, h, _) = get(&http, &lc_url, &[("origin", ORIGIN)]).await;
    assert_eq!(header(&h, "access-control-allow-origin"), Some(ORIGIN));
    assert!(header(&h, "access-control-expose-headers").is_some_and(|v| v.contains("etag")));
    let (_, h, _) = get(&http, &lc_url, &[("origin", "https://elsewhere.example")]).await;
    assert_eq!(header(&h, "access-control-allow-origin"), None);

    // VOTable and the extra times, for ZTF (UTC) and LSST (TAI) points, checked by astropy.
    let lsst = client
        .ingest(std::fs::read(shared_data().join("lsst/alerts/boom/25409136044802067.avro")).unwrap())
        .await
        .unwrap();
    eventually(WAIT, "the LSST object", || async { client.object(&lsst.key).await.ok() }).await.unwrap();
    for key in [key, lsst.key.as_str()] {
        let url = format!("{}/v1/objects/{key}/lightcurve", node.url);
        let (status, h, votable) = get(&http, &format!("{url}?format=votable&times=jd,iso"), &[]).await;
        assert_eq!(status, StatusCode::OK);
        assert_eq!(header(&h, "content-type"), Some("application/x-votable+xml"));
        let (_, _, json) = get(&http, &format!("{url}?times=jd,iso"), &[]).await;
        let (v_path, j_path) = (tmp.path().join("lc.votable"), tmp.path().join("lc.json"));
        std::fs::write(&v_path, &votable).unwrap();
        std::fs::write(&j_path, &json).unwrap();
        let out = std::process::Command::new("python3")
            .arg(workspace().join("tests/py/check_votable.py"))
            .args([&v_path, &j_path])
            .output()
            .unwrap();
        assert!(out.status.success(), "{key}: {}", String::from_utf8_lossy(&out.stderr));
        let summary: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
        assert!(summary["rows"].as_u64().unwrap() > 0, "{key}: {summary}");
        assert_eq!(summary["units"]["flux_njy"], "nJy", "{summary}");
    }

    // A WebSocket upgrade from a client that accepts compression (browsers do) is not encoded.
    let mut req = format!("{}/v1/ws", node.url.replacen("http", "ws", 1)).into_client_request().unwrap();
    req.headers_mut().insert("accept-encoding", "gzip, deflate, br".parse().unwrap());
    let (mut ws, resp) = tokio_tungstenite::connect_async(req).await.unwrap();
    assert_eq!(header(resp.headers(), "content-encoding"), None);
    let op = ClientOp::subscribe_objects("s", vec![key.into()], None);
    ws.send(Message::Text(op.to_text().into())).await.unwrap();
    let first = loop {
        match tokio::time::timeout(WAIT, ws.next()).await.unwrap().unwrap().unwrap() {
            Message::Text(t) => break serde_json::from_str::<ServerMsg>(&t).unwrap(),
            _ => continue,
        }
    };
    assert!(matches!(&first, ServerMsg::Snapshot { key: k, .. } if k == key), "{first:?}");

    // Bad values are 400s that say what was wrong.
    for bad in ["format=fits", "times=gps"] {
        let (status, _, body) = get(&http, &format!("{lc_url}?{bad}"), &[]).await;
        assert_eq!(status, StatusCode::BAD_REQUEST, "{bad}");
        let e: serde_json::Value = serde_json::from_slice(&body).unwrap();
        assert_eq!(e["error"]["code"], "invalid_query", "{bad}: {e}");
    }
}
