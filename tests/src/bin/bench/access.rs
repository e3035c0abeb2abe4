//! `bench access`: what access control and TLS cost a read. Two embedded nodes holding the same
//! real object, one plain and one serving TLS (a throwaway CA), both accepting one token;
//! `GET /v1/objects/{key}` open loop at R requests/s for S seconds, read four ways:
//!
//! - anonymously, on the plain node — the baseline;
//! - with the token on the plain node: what the access middleware adds (a SHA-256 of the token
//!   and a lookup per request, and the per-token rate bucket, set high enough never to refuse);
//! - with the token on the TLS node, over kept-alive connections: what rustls adds per request;
//! - `/healthz` on the plain node: what the load generator and HTTP stack cost by themselves.
//!
//! The load comes from a separate process (`bench load`), as in `bench query`.

use crate::common::machine;
use crate::query::{load_in_child_as, Caller, LoadSummary};
use lightkeeper_clients::{Client, ClientOptions};
use lightkeeper_tests::tls::TestCa;
use lightkeeper_tests::{shared_data, NodeProcess};
use std::time::Duration;

pub async fn run(rate: u64, seconds: u64) -> anyhow::Result<()> {
    let tmp = tempfile::tempdir()?;
    let ca = TestCa::new(&tmp.path().join("tls"));
    // A rate no load here reaches: the bucket is charged on every request, never refuses.
    let made = lightkeeper_tests::make_token("bench", "read,ingest");
    let access = format!("[access]\nper_token_per_sec = 1000000\nburst = 1000000\n\n{}\n", made.entry);
    let token = made.token.as_str();
    let plain_config = tmp.path().join("plain.toml");
    std::fs::write(&plain_config, &access)?;
    let tls_config = tmp.path().join("tls.toml");
    std::fs::write(
        &tls_config,
        format!("{access}\n[tls]\ncert_file = {:?}\nkey_file = {:?}\n", ca.cert_pem, ca.key_pem),
    )?;
    let plain = NodeProcess::start(&tmp.path().join("plain"), &["--config", plain_config.to_str().unwrap()], &[])?;
    let tls = NodeProcess::start(&tmp.path().join("tls"), &["--config", tls_config.to_str().unwrap()], &[])?;
    plain.wait_ready(Duration::from_secs(60)).await?;
    tls.wait_ready(Duration::from_secs(60)).await?;

    let dir = shared_data().join("ztf/alerts/pitt-google-broker/lightcurve_ZTF21abiuvdk");
    let files = lightkeeper_tests::avro_files(&dir);
    let ca_pem = std::fs::read(&ca.ca_pem)?;
    let key = "ztf:ZTF21abiuvdk";
    for url in [&plain.url, &tls.url] {
        let client =
            Client::with_options(url, ClientOptions { token: Some(token.into()), ca_pem: Some(ca_pem.clone()) })?;
        for f in &files {
            client.ingest(std::fs::read(f)?).await?;
        }
        lightkeeper_tests::eventually(Duration::from_secs(60), "the object materialized", || async {
            client.summary(key).await.ok().filter(|o| o.n_alerts == files.len())
        })
        .await?;
    }

    let anonymous = Caller::default();
    let with_token = Caller { token: Some(token.into()), ca: None };
    let over_tls = Caller { token: Some(token.into()), ca: Some(ca.ca_pem.clone()) };
    let object = |base: &str| format!("{base}/v1/objects/{key}");
    let cases: [(&str, String, &Caller); 4] = [
        ("GET object, anonymous (baseline)", object(&plain.url), &anonymous),
        ("GET object, bearer token", object(&plain.url), &with_token),
        ("GET object, bearer token over TLS", object(&tls.url), &over_tls),
        ("GET /healthz (load generator + HTTP)", format!("{}/healthz", plain.url), &anonymous),
    ];
    let mut results: Vec<(&str, LoadSummary)> = Vec::new();
    for (name, url, caller) in &cases {
        results.push((name, load_in_child_as(url, rate, seconds, None, caller).await?));
    }
    println!("## access: GET /v1/objects/{{key}}, open loop {rate} req/s for {seconds} s — {}", machine());
    println!("| case | sent | errors | p50 ms | p99 ms | max ms | p50 / baseline | p99 / baseline |\n|---|---|---|---|---|---|---|---|");
    let base = &results[0].1;
    for (name, r) in &results {
        println!(
            "| {name} | {} | {} | {:.2} | {:.2} | {:.2} | {:.2}× | {:.2}× |",
            r.sent,
            r.errors,
            r.p50,
            r.p99,
            r.max,
            r.p50 / base.p50,
            r.p99 / base.p99
        );
    }
    Ok(())
}
