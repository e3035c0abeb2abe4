//! HTTP as the web expects it: compression, conditional requests, CORS, and panics answered
//! as JSON.
//!
//! - **Compression.** Every response is compressed with brotli or gzip when the client accepts
//!   it (`tower-http`'s compression layer). Object reads do better: their renderings are
//!   compressed once, when first asked for in that encoding, and kept compressed in the
//!   response cache next to the plain ones ([`Encoding`], used by `routes::objects`), so a hot
//!   light curve costs no compression per request. The layer leaves a response that already has
//!   a `Content-Encoding` alone. Node-to-node reads ask for no encoding (the forwarding node
//!   compresses for its client).
//! - **Conditional requests.** Object reads carry a weak `ETag` made from the object's version
//!   (the same on every replica at that version); a `GET` whose `If-None-Match` names it is
//!   answered `304 Not Modified` without a body, whichever node rendered it ([`conditional`]).
//! - **CORS**, for pages on other origins: off unless `http.cors_allow_origins` lists them.
//! - **Panics** in a handler are answered with the usual JSON error body (500 `internal`),
//!   counted in `lightkeeper_http_panics_total` and logged, instead of a dropped connection.

use crate::config::Http;
use crate::error::ApiError;
use axum::extract::Request;
use axum::http::header::{
    ACCEPT, ACCEPT_ENCODING, AUTHORIZATION, CACHE_CONTROL, CONTENT_TYPE, ETAG, IF_NONE_MATCH, VARY,
};
use axum::http::{Extensions, HeaderMap, HeaderName, HeaderValue, Method, StatusCode, Version};
use axum::middleware::{self, Next};
use axum::response::{IntoResponse, Response};
use axum::Router;
use bytes::Bytes;
use prometheus_client::metrics::counter::Counter;
use std::io::Write;
use std::time::Duration;
use tower_http::catch_panic::CatchPanicLayer;
use tower_http::compression::predicate::{DefaultPredicate, Predicate};
use tower_http::compression::CompressionLayer;
use tower_http::cors::{AllowOrigin, CorsLayer};

/// Bodies smaller than this are sent as they are: compressing them saves less than it costs.
pub const MIN_COMPRESSED: usize = 512;

/// A content coding this node produces.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Encoding {
    Identity,
    Gzip,
    Brotli,
}

impl Encoding {
    /// The coding to send for an `Accept-Encoding` header: brotli or gzip, whichever the client
    /// ranks higher (brotli on a tie), when it accepts either; otherwise none.
    pub fn negotiate(accept: Option<&HeaderValue>) -> Encoding {
        let Some(text) = accept.and_then(|v| v.to_str().ok()) else { return Encoding::Identity };
        let (mut br, mut gzip, mut any) = (None, None, None);
        for item in text.split(',') {
            let mut parts = item.split(';');
            let name = parts.next().unwrap_or_default().trim().to_ascii_lowercase();
            let q = parts
                .find_map(|p| p.trim().strip_prefix("q=").and_then(|q| q.trim().parse::<f32>().ok()))
                .unwrap_or(1.0);
            match name.as_str() {
                "br" => br = Some(q),
                "gzip" | "x-gzip" => gzip = Some(q),
                "*" => any = Some(q),
                _ => {}
            }
        }
        let (br, gzip) = (br.or(any).unwrap_or(0.0), gzip.or(any).unwrap_or(0.0));
        if br > 0.0 && br >= gzip {
            Encoding::Brotli
        } else if gzip > 0.0 {
            Encoding::Gzip
        } else {
            Encoding::Identity
        }
    }

    /// The `Content-Encoding` token (`None` for identity).
    pub fn token(self) -> Option<&'static str> {
        match self {
            Encoding::Identity => None,
            Encoding::Gzip => Some("gzip"),
            Encoding::Brotli => Some("br"),
        }
    }

    /// `body` in this coding. Blocking CPU work (milliseconds for a large light curve): call it
    /// off the async runtime.
    pub fn encode(self, body: &[u8]) -> Result<Bytes, ApiError> {
        let mut out = Vec::with_capacity(body.len() / 4 + 64);
        match self {
            Encoding::Identity => return Ok(Bytes::copy_from_slice(body)),
            Encoding::Gzip => {
                let mut w = flate2::write::GzEncoder::new(&mut out, flate2::Compression::default());
                w.write_all(body).map_err(ApiError::internal)?;
                w.finish().map_err(ApiError::internal)?;
            }
            Encoding::Brotli => {
                // Quality 5 of 11: most of the ratio at a fraction of the time of the maximum.
                let mut w = brotli::CompressorWriter::new(&mut out, 64 << 10, 5, 22);
                w.write_all(body).map_err(ApiError::internal)?;
                w.flush().map_err(ApiError::internal)?;
            }
        }
        Ok(out.into())
    }
}

/// The weak entity tag of an object's renderings at `version`.
pub fn etag(version: u64) -> HeaderValue {
    HeaderValue::from_str(&format!("W/\"v{version}\"")).expect("ASCII")
}

/// Whether an `If-None-Match` value names `tag` (weak comparison, as RFC 9110 asks for it).
fn none_match(if_none_match: &[u8], tag: &[u8]) -> bool {
    let opaque = |t: &[u8]| -> Vec<u8> { t.strip_prefix(b"W/").unwrap_or(t).to_vec() };
    let tag = opaque(tag.trim_ascii());
    if_none_match.trim_ascii() == b"*"
        || if_none_match.split(|b| *b == b',').any(|t| !t.trim_ascii().is_empty() && opaque(t.trim_ascii()) == tag)
}

/// Answers `304 Not Modified` to a `GET` or `HEAD` whose `If-None-Match` names the `ETag` of
/// the `200` it would get (rendered here or by the node that served it).
pub async fn conditional(req: Request, next: Next) -> Response {
    let asked = matches!(*req.method(), Method::GET | Method::HEAD)
        .then(|| req.headers().get(IF_NONE_MATCH).cloned())
        .flatten();
    let resp = next.run(req).await;
    let Some(asked) = asked else { return resp };
    let matched = resp.status() == StatusCode::OK
        && resp.headers().get(ETAG).is_some_and(|tag| none_match(asked.as_bytes(), tag.as_bytes()));
    if !matched {
        return resp;
    }
    let mut not_modified = StatusCode::NOT_MODIFIED.into_response();
    for (name, value) in resp.headers() {
        // What a 304 keeps: the validators and caching headers, and who answered.
        if name == ETAG || name == CACHE_CONTROL || name == VARY || name.as_str().starts_with("x-lightkeeper-") {
            not_modified.headers_mut().append(name.clone(), value.clone());
        }
    }
    not_modified
}

/// The panic layer: a JSON 500 instead of a dropped connection, counted and logged.
pub fn catch_panics(panics: Counter) -> CatchPanicLayer<impl Fn(Box<dyn std::any::Any + Send>) -> Response + Clone> {
    CatchPanicLayer::custom(move |payload: Box<dyn std::any::Any + Send>| {
        panics.inc();
        let what = lightkeeper_api::error::panic_message(payload.as_ref()).unwrap_or("(no message)");
        tracing::error!(panic = what, "a request handler panicked");
        ApiError::internal("the request's handler failed unexpectedly").into_response()
    })
}

/// The headers a browser page on another origin may read.
const EXPOSED: [&str; 5] =
    ["x-lightkeeper-served-by", "x-lightkeeper-role", "x-lightkeeper-lag", "x-lightkeeper-partition", "etag"];

/// The CORS layer for `origins` (`"*"` for any), or `None` when none is configured.
pub fn cors(origins: &[String]) -> Option<CorsLayer> {
    if origins.is_empty() {
        return None;
    }
    let allow = if origins.iter().any(|o| o == "*") {
        AllowOrigin::any()
    } else {
        AllowOrigin::list(origins.iter().filter_map(|o| HeaderValue::from_str(o.trim_end_matches('/')).ok()))
    };
    Some(
        CorsLayer::new()
            .allow_origin(allow)
            .allow_methods([Method::GET, Method::HEAD, Method::POST, Method::OPTIONS])
            .allow_headers([ACCEPT, CONTENT_TYPE, AUTHORIZATION, IF_NONE_MATCH])
            .expose_headers(EXPOSED.map(HeaderName::from_static))
            .max_age(Duration::from_secs(3600)),
    )
}

/// Wraps the whole router: conditional requests inside compression inside CORS (a preflight
/// is answered before anything else runs).
pub fn wrap<S: Clone + Send + Sync + 'static>(router: Router<S>, http: &Http) -> Router<S> {
    let mut router = router.layer(middleware::from_fn(conditional));
    if http.compression {
        // Never a WebSocket upgrade nor a body-less answer (the default predicate would take a
        // 101's unknown body size as large enough).
        let has_body = |status: StatusCode, _: Version, _: &HeaderMap, _: &Extensions| {
            !status.is_informational() && status != StatusCode::NO_CONTENT && status != StatusCode::NOT_MODIFIED
        };
        router = router.layer(CompressionLayer::new().compress_when(DefaultPredicate::new().and(has_body)));
    }
    if let Some(cors) = cors(&http.cors_allow_origins) {
        router = router.layer(cors);
    }
    router
}

/// `Vary` for responses whose body depends on `Accept-Encoding`.
pub fn vary_encoding() -> (HeaderName, HeaderValue) {
    (VARY, HeaderValue::from_name(ACCEPT_ENCODING))
}

#[cfg(test)]
mod tests {
    use super::*;
    use axum::body::Body;
    use axum::routing::get;
    use tower::ServiceExt;

    #[test]
    fn negotiation_follows_the_clients_ranking() {
        let n = |s: &str| Encoding::negotiate(Some(&HeaderValue::from_str(s).unwrap()));
        assert_eq!(Encoding::negotiate(None), Encoding::Identity);
        assert_eq!(n("gzip, deflate, br"), Encoding::Brotli);
        assert_eq!(n("gzip"), Encoding::Gzip);
        assert_eq!(n("br;q=0.5, gzip;q=0.9"), Encoding::Gzip);
        assert_eq!(n("br;q=0, gzip;q=0"), Encoding::Identity);
        assert_eq!(n("identity"), Encoding::Identity);
        assert_eq!(n("*"), Encoding::Brotli);
        assert_eq!(n("*;q=0.1, br;q=0"), Encoding::Gzip);
        assert_eq!(n("deflate"), Encoding::Identity);
    }

    #[test]
    fn encodings_round_trip() {
        let body = br#"{"points":[{"mjd":60000.1,"band":"g"}]}"#.repeat(100);
        let gz = Encoding::Gzip.encode(&body).unwrap();
        let mut plain = Vec::new();
        std::io::Read::read_to_end(&mut flate2::read::GzDecoder::new(&gz[..]), &mut plain).unwrap();
        assert_eq!(plain, body);
        let br = Encoding::Brotli.encode(&body).unwrap();
        let mut plain = Vec::new();
        std::io::Read::read_to_end(&mut brotli::Decompressor::new(&br[..], 4096), &mut plain).unwrap();
        assert_eq!(plain, body);
        assert!(br.len() < body.len() / 10 && gz.len() < body.len() / 10);
    }

    #[test]
    fn if_none_match_compares_weakly() {
        assert!(none_match(b"W/\"v3\"", b"W/\"v3\""));
        assert!(none_match(b"\"v3\"", b"W/\"v3\""));
        assert!(none_match(b"\"v1\", W/\"v3\"", b"W/\"v3\""));
        assert!(none_match(b"*", b"W/\"v3\""));
        assert!(!none_match(b"W/\"v2\"", b"W/\"v3\""));
        assert!(!none_match(b"", b"W/\"v3\""));
    }

    #[tokio::test]
    async fn a_panicking_handler_answers_a_json_500_and_is_counted() {
        let panics = Counter::default();
        let app = Router::new()
            .route(
                "/boom",
                get(|| async {
                    if true {
                        panic!("kaboom");
                    }
                    "unreachable"
                }),
            )
            .layer(catch_panics(panics.clone()));
        let resp = app.oneshot(Request::get("/boom").body(Body::empty()).unwrap()).await.unwrap();
        assert_eq!(resp.status(), StatusCode::INTERNAL_SERVER_ERROR);
        let body = axum::body::to_bytes(resp.into_body(), 1 << 16).await.unwrap();
        let v: serde_json::Value = serde_json::from_slice(&body).unwrap();
        assert_eq!(v["error"]["code"], "internal", "{v}");
        assert_eq!(panics.get(), 1);
    }

    #[tokio::test]
    async fn a_matching_if_none_match_gets_304_without_a_body() {
        let app = Router::new()
            .route(
                "/o",
                get(|| async { ([(ETAG, etag(7)), (CACHE_CONTROL, HeaderValue::from_static("no-cache"))], "{}") }),
            )
            .layer(middleware::from_fn(conditional));
        let ask = |tag: &'static str| Request::get("/o").header(IF_NONE_MATCH, tag).body(Body::empty()).unwrap();
        let resp = app.clone().oneshot(ask("W/\"v7\"")).await.unwrap();
        assert_eq!(resp.status(), StatusCode::NOT_MODIFIED);
        assert_eq!(resp.headers()[ETAG], "W/\"v7\"");
        assert!(axum::body::to_bytes(resp.into_body(), 1024).await.unwrap().is_empty());
        let resp = app.oneshot(ask("W/\"v6\"")).await.unwrap();
        assert_eq!(resp.status(), StatusCode::OK);
    }
}
