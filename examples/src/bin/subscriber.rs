//! Subscribes to objects and prints every update, resuming from the last version on reconnect.
//!
//! `cargo run -p lightkeeper-examples --bin subscriber -- http://127.0.0.1:8080 ztf:ZTF21abiuvdk`

use lightkeeper_clients::api::ws::{ClientOp, ServerMsg};
use lightkeeper_clients::Client;
use std::collections::HashMap;
use std::time::Duration;

#[tokio::main]
async fn main() -> anyhow::Result<()> {
    let mut args = std::env::args().skip(1);
    let url = args.next().unwrap_or_else(|| "http://127.0.0.1:8080".into());
    let keys: Vec<String> = args.collect();
    anyhow::ensure!(!keys.is_empty(), "usage: subscriber URL KEY...");
    let client = Client::new(&url)?;
    let mut last: HashMap<String, u64> = HashMap::new();
    loop {
        // One subscription per key so each can resume from its own version.
        let first = &keys[0];
        let mut sub = client.subscribe("k0", &[first.as_str()], last.get(first).copied()).await?;
        for (i, k) in keys.iter().enumerate().skip(1) {
            let op = ClientOp::subscribe_objects(format!("k{i}"), vec![k.clone()], last.get(k).copied());
            sub.send(&op).await?;
        }
        while let Some(m) = sub.next(Duration::from_secs(3600)).await? {
            match m {
                ServerMsg::Snapshot { key, version, .. } => {
                    println!("{key}: snapshot at version {version}");
                    last.insert(key, version);
                }
                ServerMsg::Update { key, version, new_points, .. } => {
                    let prev = last.get(&key).copied().unwrap_or(0);
                    let gap = if version != prev + 1 { " (GAP!)" } else { "" };
                    println!("{key}: version {version}, {} new points{gap}", new_points.len());
                    last.insert(key, version);
                }
                // An error (a refused subscription, or `slow_consumer` before a close): shown as sent.
                other => println!("{}", other.to_text()),
            }
        }
        eprintln!("connection closed; resuming in 1 s");
        tokio::time::sleep(Duration::from_secs(1)).await;
    }
}
