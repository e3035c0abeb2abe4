//! The Confluent Schema Registry client against an in-process server that speaks the registry's
//! REST API (`/schemas/ids/{id}` with references, `/subjects/{subject}/versions/{version}`),
//! serving the real LSST schema files. The real wire packets must decode through it exactly as
//! through the embedded registry.

use axum::extract::{Path as UrlPath, State};
use axum::http::StatusCode;
use axum::routing::get;
use axum::{Json, Router};
use lightkeeper_storage::codec::{DecodeError, Decoder};
use lightkeeper_storage::registry::{ConfluentRegistry, EmbeddedRegistry};
use serde_json::{json, Value};
use std::collections::HashMap;
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::Duration;

fn shared() -> PathBuf {
    std::env::var_os("LIGHTKEEPER_SHARED_DATA")
        .map(PathBuf::from)
        .unwrap_or_else(|| Path::new(env!("CARGO_MANIFEST_DIR")).join("../../shared/data"))
}

/// id → (top-level schema, [(subject, schema)] of the named types it references).
type Catalog = HashMap<u32, (String, Vec<(String, String)>)>;

fn catalog() -> Catalog {
    let mut out = Catalog::new();
    for dir in std::fs::read_dir(shared().join("lsst/schema")).unwrap() {
        let dir = dir.unwrap().path();
        let name = dir.file_name().unwrap().to_string_lossy().into_owned();
        let (major, minor) = name.split_once('.').unwrap();
        let id = major.parse::<u32>().unwrap() * 100 + minor.parse::<u32>().unwrap();
        let top_name = format!("lsst.v{major}_{minor}.alert.avsc");
        let mut top = String::new();
        let mut refs = Vec::new();
        let mut files: Vec<_> = std::fs::read_dir(&dir).unwrap().map(|f| f.unwrap().path()).collect();
        files.sort();
        for f in files {
            let text = std::fs::read_to_string(&f).unwrap();
            let file = f.file_name().unwrap().to_string_lossy().into_owned();
            if file == top_name {
                top = text;
            } else {
                refs.push((file.trim_end_matches(".avsc").to_owned(), text));
            }
        }
        out.insert(id, (top, refs));
    }
    out
}

async fn by_id(
    State(c): State<Arc<Catalog>>,
    UrlPath(id): UrlPath<u32>,
) -> Result<Json<Value>, (StatusCode, Json<Value>)> {
    let (top, refs) =
        c.get(&id).ok_or((StatusCode::NOT_FOUND, Json(json!({"error_code": 40403, "message": "Schema not found"}))))?;
    let references: Vec<Value> = refs.iter().map(|(s, _)| json!({"name": s, "subject": s, "version": 1})).collect();
    Ok(Json(json!({"schema": top, "references": references})))
}

async fn by_subject(
    State(c): State<Arc<Catalog>>,
    UrlPath((subject, _v)): UrlPath<(String, u32)>,
) -> Result<Json<Value>, StatusCode> {
    for (_, refs) in c.values() {
        if let Some((_, text)) = refs.iter().find(|(s, _)| *s == subject) {
            return Ok(Json(json!({"subject": subject, "version": 1, "schema": text})));
        }
    }
    Err(StatusCode::NOT_FOUND)
}

#[tokio::test(flavor = "multi_thread")]
async fn wire_packets_decode_through_the_confluent_rest_client() {
    let app = Router::new()
        .route("/schemas/ids/{id}", get(by_id))
        .route("/subjects/{subject}/versions/{version}", get(by_subject))
        .with_state(Arc::new(catalog()));
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let url = format!("http://{}", listener.local_addr().unwrap());
    tokio::spawn(async move { axum::serve(listener, app).await.unwrap() });

    let result = tokio::task::spawn_blocking(move || {
        let remote = Decoder::new(Arc::new(ConfluentRegistry::new(&url, Duration::from_secs(5))));
        let local = Decoder::new(Arc::new(EmbeddedRegistry::from_dir(&shared().join("lsst/schema")).unwrap()));
        let mut n = 0;
        for dir in ["lsst/alerts/pittgoogle-client_wire", "lsst/alerts/boom"] {
            for f in std::fs::read_dir(shared().join(dir)).unwrap() {
                let bytes = std::fs::read(f.unwrap().path()).unwrap();
                assert_eq!(remote.decode(&bytes).unwrap(), local.decode(&bytes).unwrap());
                n += 1;
            }
        }
        let unknown = remote.decode(&[0, 0, 0, 0x03, 0xe7, 1, 2]).unwrap_err();
        (n, unknown, remote.registry().known_ids())
    })
    .await
    .unwrap();
    assert_eq!(result.0, 12);
    assert!(matches!(result.1, DecodeError::UnknownSchemaId(999)), "{}", result.1);
    assert!(result.2.contains(&1101) && result.2.contains(&701), "{:?}", result.2);
}

#[test]
fn an_unreachable_registry_is_a_registry_error_not_an_unknown_schema() {
    let d = Decoder::new(Arc::new(ConfluentRegistry::new("http://127.0.0.1:9", Duration::from_secs(2))));
    let err = d.decode(&[0, 0, 0, 2, 0xbd, 1, 2]).unwrap_err();
    assert!(matches!(err, DecodeError::Registry(_)), "{err}");
}
