//! A WebSocket client that stops reading is told so — an error message, then a close with code
//! 4008 — never dropped silently (API.md; contract rule 4).

use futures::{SinkExt, StreamExt};
use lightkeeper_clients::api::ws::{ClientOp, ServerMsg};
use lightkeeper_clients::Client;
use lightkeeper_tests::synth::{load_templates, reissue_with_fresh_history};
use lightkeeper_tests::*;
use std::time::Duration;
use tokio_tungstenite::tungstenite::protocol::frame::coding::CloseCode;
use tokio_tungstenite::tungstenite::Message;

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn a_client_that_stops_reading_gets_an_error_and_close_4008() {
    let tmp = tempfile::tempdir().unwrap();
    let env = [
        ("LIGHTKEEPER_LIMITS__WS_SEND_QUEUE", "4".to_owned()),
        ("LIGHTKEEPER_LIMITS__MAX_SUBSCRIPTIONS_PER_CONNECTION", "2".to_owned()),
    ];
    let node = NodeProcess::start(&tmp.path().join("node"), &[], &env).unwrap();
    node.wait_ready(Duration::from_secs(60)).await.unwrap();
    let client = Client::new(&node.url).unwrap();

    // A socket with a tiny receive buffer, so unread data backs up into the server quickly.
    let addr = node.url.trim_start_matches("http://").parse().unwrap();
    let socket = tokio::net::TcpSocket::new_v4().unwrap();
    socket.set_recv_buffer_size(4096).unwrap();
    let stream = socket.connect(addr).await.unwrap();
    let (mut ws, _) = tokio_tungstenite::client_async(format!("ws://{addr}/v1/ws"), stream).await.unwrap();
    let key = "ztf:ZTF99slowpoke";
    let op = ClientOp::subscribe_objects("s", vec![key.to_owned()], None);
    ws.send(Message::Text(op.to_text().into())).await.unwrap();

    // Two thousand large updates (each alert brings its whole history as new points, ~5 kB per
    // message): ~10 MB, well over what the kernel's socket buffers (4 MiB send buffer at most
    // here) can hold for a client that reads nothing. (With 1,000 the margin was thin: a run
    // on a loaded machine once drained everything into the buffers.)
    let template = load_templates(&shared_data().join("ztf/alerts/fink-alert-simulator/datasim_20181129"), 1);
    let n = 2000;
    for i in 0..n {
        let packet = reissue_with_fresh_history(
            &template[0],
            "ZTF99slowpoke",
            6_000_000_000_000_000_000 + i,
            7_000_000_000_000_000_000 + i * 100,
        );
        client.ingest(packet).await.unwrap();
    }
    eventually(Duration::from_secs(60), "all updates applied", || async {
        client.object(key).await.ok().filter(|o| o["version"] == n)
    })
    .await
    .unwrap();

    // Now read: some updates, then the error, then the close — nothing after it.
    let mut last_version = 0;
    let mut error = None;
    let close = loop {
        match tokio::time::timeout(Duration::from_secs(30), ws.next()).await.expect("the server closes the socket") {
            Some(Ok(Message::Text(t))) => {
                let (snapshot, v) = match serde_json::from_str::<ServerMsg>(&t).unwrap() {
                    ServerMsg::Snapshot { version, .. } => (true, version),
                    ServerMsg::Update { version, .. } => (false, version),
                    ServerMsg::Error { error: e, .. } => {
                        error = Some(e);
                        continue;
                    }
                    other => panic!("an object subscription gets no filter messages: {other:?}"),
                };
                assert!(error.is_none(), "no update after the error");
                assert!(snapshot || v == last_version + 1, "no gap before the close: {last_version} → {v}");
                last_version = v;
            }
            Some(Ok(Message::Close(frame))) => break frame,
            Some(Ok(_)) => continue,
            other => panic!("socket ended without a close frame: {other:?}"),
        }
    };
    let error = error.expect("an error message before the close");
    assert_eq!(error.code, "slow_consumer");
    assert_eq!(close.expect("a close frame").code, CloseCode::from(4008));
    assert!(last_version < n as u64, "the client was cut off before the end ({last_version})");
    let metrics = reqwest::get(format!("{}/metrics", node.url)).await.unwrap().text().await.unwrap();
    assert!(
        metrics.lines().any(|l| l.starts_with("lightkeeper_ws_slow_closed_total") && !l.ends_with(" 0")),
        "{metrics}"
    );
}
