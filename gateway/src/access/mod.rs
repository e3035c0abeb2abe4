//! Who may call what: tokens with scopes, anonymous reads and ingest, rate limits, and the
//! origins a browser may open WebSockets from (API.md, "Access").
//!
//! One middleware ([`enforce`]) sits in front of every route, so no handler checks credentials
//! itself and no route can be added without a rule: [`need`] maps a route to what it needs,
//! from its path alone, and the OpenAPI document is annotated from the same table.
//!
//! - **Tokens** come from configuration (`access.tokens`), each with scopes (`read`, `ingest`,
//!   `admin`). Only their SHA-256 is configured and kept: a leaked config file or heap dump
//!   gives no token. Tokens are random 256-bit strings (`lightkeeper token` makes one), so an
//!   unsalted fast hash is enough — there is no dictionary to try — and a lookup by hash needs no
//!   constant-time comparison: the time taken can only reveal a hash, not a token.
//! - **The cluster token** (`cluster.admin_token`) is the nodes' own credential: it is what a
//!   node sends when it forwards a read, relays a WebSocket, scatters a query or calls Raft, and
//!   it is the only credential the internal routes (`/v1/internal/*`) accept. It holds every
//!   scope and is not rate limited (the node that forwarded the call has already counted it).
//! - **Anonymous** callers may read when `access.anonymous_reads` is on and ingest when
//!   `access.anonymous_ingest` is on (both are, in the embedded default on loopback).
//! - **Rate limits** are GCRA buckets (governor): per token, and per client address for callers
//!   without a valid token — including failed token checks, which is what makes guessing slow.
//!   Over the rate: 429 with `Retry-After`.
//! - **WebSocket origins**: a browser page can open a WebSocket to any origin (the same-origin
//!   policy does not apply to them), so an upgrade that carries an `Origin` must come from this
//!   node's own origin or one listed in `http.cors_allow_origins` (the list CORS uses too).
//!   "Own" is judged from the `Host` header only where a page cannot have chosen it: an IP
//!   literal, `localhost`, or the host of the node's advertised URL (`cluster.advertise_url`).
//!   A page on a domain its owner points at this node's address (DNS rebinding) sends that
//!   domain as both `Host` and `Origin`, so trusting any matching pair would let it in.
//!
//! Answers: 401 `unauthorized` (no token where one is needed, or an unknown one), 403
//! `forbidden` (a token without the scope, or a WebSocket from a foreign origin), 409
//! `admin_disabled` (an admin route on a node where no credential has the admin scope), 429
//! `rate_limited`.

mod rate;

use crate::config::{Access as AccessConfig, TokenConfig};
use crate::error::ApiError;
use crate::state::AppState;
use axum::extract::{ConnectInfo, MatchedPath, Request, State};
use axum::http::header::{AUTHORIZATION, CONNECTION, CONTENT_LENGTH, HOST, ORIGIN, TRANSFER_ENCODING};
use axum::http::{HeaderMap, HeaderValue, Method};
use axum::middleware::Next;
use axum::response::{IntoResponse, Response};
use prometheus_client::metrics::counter::Counter;
use prometheus_client::metrics::family::Family;
use rate::Limiter;
use serde::{Deserialize, Serialize};
use std::collections::HashMap;
use std::net::{IpAddr, Ipv4Addr, SocketAddr};

/// What a token may do.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Scope {
    /// REST reads and WebSocket subscriptions.
    Read,
    /// `POST /v1/alerts`.
    Ingest,
    /// `/v1/admin/*`, pipelines, watch lists, registering schemas.
    Admin,
}

impl Scope {
    pub fn as_str(self) -> &'static str {
        match self {
            Scope::Read => "read",
            Scope::Ingest => "ingest",
            Scope::Admin => "admin",
        }
    }
}

/// What a route needs.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Need {
    /// Anyone: health, the OpenAPI document, the dashboard's files, unknown routes (a 404).
    Open,
    /// A caller with this scope.
    Scope(Scope),
    /// Another node of the cluster (the cluster token).
    Node,
}

/// The route rules, by method and route pattern (axum's `MatchedPath`, e.g.
/// `/v1/objects/{key}`). The one table: [`enforce`] applies it and `routes::openapi` documents it.
pub fn need(method: &Method, route: Option<&str>) -> Need {
    let Some(route) = route else { return Need::Open };
    match route {
        "/healthz" | "/readyz" | "/openapi.json" | "/" | "/js/lightkeeper.js" => Need::Open,
        r if r.starts_with("/dashboard/") => Need::Open,
        r if r.starts_with(crate::routes::INTERNAL_PREFIX) => Need::Node,
        "/v1/alerts" if method == Method::POST => Need::Scope(Scope::Ingest),
        r if r.starts_with("/v1/admin/") || r.starts_with("/v1/pipelines") || r.starts_with("/v1/watchlists") => {
            Need::Scope(Scope::Admin)
        }
        r if r.starts_with("/subjects/") && method == Method::POST => Need::Scope(Scope::Admin),
        _ => Need::Scope(Scope::Read),
    }
}

/// Who is calling, once the credential is checked.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Caller {
    Anonymous,
    /// A configured token, by name.
    Token {
        name: String,
        scopes: Vec<Scope>,
    },
    /// Another node (the cluster token).
    Node,
}

/// Denials by reason, for `lightkeeper_access_denied_total`.
pub type DeniedFamily = Family<Vec<(String, String)>, Counter>;

/// The access rules of one node, built once from its configuration.
pub struct Guard {
    anonymous_reads: bool,
    anonymous_ingest: bool,
    /// SHA-256 of the token → the token's name and scopes.
    tokens: HashMap<[u8; 32], (String, Vec<Scope>)>,
    cluster: [u8; 32],
    /// The node's own credential, sent on its calls to other nodes (and to itself).
    node_token: String,
    /// Whether any credential holds the admin scope (else admin routes answer 409).
    admin_possible: bool,
    per_token: Option<Limiter<String>>,
    per_address: Option<Limiter<IpAddr>>,
    /// Origins allowed to open WebSockets besides the node's own; `*` for any.
    ws_origins: Vec<String>,
    /// Host names, besides IP literals and `localhost`, that name this node (its advertised
    /// URL's), lower-case.
    own_hosts: Vec<String>,
    denied: DeniedFamily,
}

/// The SHA-256 of a token, as configured (lower-case hex).
pub fn token_hash(token: &str) -> String {
    hex(ring::digest::digest(&ring::digest::SHA256, token.as_bytes()).as_ref())
}

fn digest(token: &str) -> [u8; 32] {
    let mut out = [0; 32];
    out.copy_from_slice(ring::digest::digest(&ring::digest::SHA256, token.as_bytes()).as_ref());
    out
}

fn hex(bytes: &[u8]) -> String {
    bytes.iter().map(|b| format!("{b:02x}")).collect()
}

fn unhex(text: &str) -> Option<[u8; 32]> {
    let mut out = [0; 32];
    if text.len() != 64 {
        return None;
    }
    for (i, byte) in out.iter_mut().enumerate() {
        *byte = u8::from_str_radix(text.get(2 * i..2 * i + 2)?, 16).ok()?;
    }
    Some(out)
}

/// A new random token: 32 bytes from the system's CSPRNG, URL-safe base64 (43 characters), safe
/// in a header and in a query string.
pub fn new_token() -> anyhow::Result<String> {
    use base64::Engine;
    use ring::rand::SecureRandom;
    let mut bytes = [0u8; 32];
    ring::rand::SystemRandom::new()
        .fill(&mut bytes)
        .map_err(|_| anyhow::anyhow!("the system's random source failed"))?;
    Ok(base64::engine::general_purpose::URL_SAFE_NO_PAD.encode(bytes))
}

impl Guard {
    /// `node_token` is the cluster token (`cluster.admin_token`; a single node without one makes
    /// up its own, and `admin_configured` is then false: it does not open admin routes).
    /// `own_url`: the node's advertised URL, if configured (its host counts as the node's own
    /// for WebSocket origins).
    pub fn new(
        config: &AccessConfig,
        node_token: &str,
        admin_configured: bool,
        ws_origins: &[String],
        own_url: Option<&str>,
        denied: DeniedFamily,
    ) -> Guard {
        let tokens: HashMap<[u8; 32], (String, Vec<Scope>)> = config
            .tokens
            .iter()
            .filter_map(|TokenConfig { name, sha256, scopes }| Some((unhex(sha256)?, (name.clone(), scopes.clone()))))
            .collect();
        let admin_possible = admin_configured || tokens.values().any(|(_, s)| s.contains(&Scope::Admin));
        Guard {
            anonymous_reads: config.anonymous_reads,
            anonymous_ingest: config.anonymous_ingest,
            tokens,
            cluster: digest(node_token),
            node_token: node_token.to_owned(),
            admin_possible,
            per_token: Limiter::new(config.per_token_per_sec, config.burst),
            per_address: Limiter::new(config.per_address_per_sec, config.burst),
            ws_origins: ws_origins.iter().map(|o| o.trim_end_matches('/').to_owned()).collect(),
            own_hosts: own_url
                .and_then(|u| reqwest::Url::parse(u).ok())
                .and_then(|u| u.host_str().map(str::to_ascii_lowercase))
                .into_iter()
                .collect(),
            denied,
        }
    }

    /// The credential this node sends to other nodes.
    pub fn node_token(&self) -> &str {
        &self.node_token
    }

    /// Who presents `token` (`None`: no token given). An unknown token is an error, even on a
    /// route anonymous callers may use: a client that sends a wrong token should learn it.
    pub fn caller(&self, token: Option<&str>) -> Result<Caller, ApiError> {
        let Some(token) = token else { return Ok(Caller::Anonymous) };
        let hash = digest(token);
        if self.cluster == hash {
            return Ok(Caller::Node);
        }
        match self.tokens.get(&hash) {
            Some((name, scopes)) => Ok(Caller::Token { name: name.clone(), scopes: scopes.clone() }),
            None => Err(ApiError::Unauthorized("the token is not known to this node".into())),
        }
    }

    /// Whether `caller` may do what `need` asks.
    pub fn permit(&self, caller: &Caller, need: Need) -> Result<(), ApiError> {
        let scope = match need {
            Need::Open => return Ok(()),
            Need::Node => {
                return match caller {
                    Caller::Node => Ok(()),
                    Caller::Anonymous => {
                        Err(ApiError::Unauthorized("node-to-node routes need the cluster's token".into()))
                    }
                    Caller::Token { .. } => {
                        Err(ApiError::Forbidden("node-to-node routes take only the cluster's token".into()))
                    }
                }
            }
            Need::Scope(s) => s,
        };
        match caller {
            Caller::Node => Ok(()),
            Caller::Token { scopes, .. } if scopes.contains(&scope) => Ok(()),
            Caller::Token { name, .. } => {
                Err(ApiError::Forbidden(format!("token {name:?} does not have the `{}` scope", scope.as_str())))
            }
            Caller::Anonymous => match scope {
                Scope::Read if self.anonymous_reads => Ok(()),
                Scope::Ingest if self.anonymous_ingest => Ok(()),
                Scope::Admin if !self.admin_possible => Err(ApiError::Conflict {
                    code: "admin_disabled",
                    message: "admin calls are disabled: no cluster.admin_token nor any token with the admin scope is configured"
                        .into(),
                }),
                _ => Err(ApiError::Unauthorized(format!(
                    "this needs a token with the `{}` scope: send `Authorization: Bearer <token>`",
                    scope.as_str()
                ))),
            },
        }
    }

    /// Counts the request against the caller's rate: its token's, or its address's when it has
    /// no valid token (see [`rate_key`]). Nodes are not limited.
    fn admit(&self, caller: Option<&Caller>, address: IpAddr) -> Result<(), ApiError> {
        let wait = match caller {
            Some(Caller::Node) => None,
            Some(Caller::Token { name, .. }) => self.per_token.as_ref().and_then(|l| l.check(name)),
            Some(Caller::Anonymous) | None => self.per_address.as_ref().and_then(|l| l.check(&rate_key(address))),
        };
        match wait {
            None => Ok(()),
            Some(wait) => {
                let who = match caller {
                    Some(Caller::Token { name, .. }) => format!("token {name:?}"),
                    _ => match rate_key(address) {
                        IpAddr::V6(block) => format!("address block {block}/64"),
                        v4 => format!("address {v4}"),
                    },
                };
                Err(ApiError::RateLimited {
                    retry_after_secs: wait.as_secs_f64().ceil().max(1.0) as u64,
                    message: format!("{who} is over its request rate"),
                })
            }
        }
    }

    /// Whether a WebSocket upgrade from `origin` may proceed: no `Origin` (not a browser), the
    /// node's own origin (`Host`, when it names the node in a way a page cannot choose: see the
    /// module doc), or a listed one.
    fn origin_allowed(&self, headers: &HeaderMap) -> bool {
        let Some(origin) = headers.get(ORIGIN).and_then(|v| v.to_str().ok()) else { return true };
        let origin = origin.trim_end_matches('/');
        let own = headers.get(HOST).and_then(|h| h.to_str().ok()).is_some_and(|host| {
            self.names_this_node(host)
                && origin.split_once("://").is_some_and(|(_, authority)| authority.eq_ignore_ascii_case(host))
        });
        own || self.ws_origins.iter().any(|o| o == "*" || o.eq_ignore_ascii_case(origin))
    }

    /// Whether a `Host` header (`name[:port]`) names this node in a way no web page chose: an
    /// IP literal, `localhost`, or the advertised URL's host.
    fn names_this_node(&self, host: &str) -> bool {
        if host.starts_with('[') {
            return true; // an IPv6 literal
        }
        let name = match host.rsplit_once(':') {
            Some((name, port)) if port.bytes().all(|b| b.is_ascii_digit()) => name,
            _ => host,
        };
        name.parse::<Ipv4Addr>().is_ok()
            || name.eq_ignore_ascii_case("localhost")
            || self.own_hosts.iter().any(|h| h.eq_ignore_ascii_case(name))
    }

    /// Counts and answers a denial, in the registry's error format on its routes.
    fn deny(&self, e: ApiError, route: Option<&str>) -> Response {
        self.denied.get_or_create(&vec![("reason".to_owned(), e.code().to_owned())]).inc();
        if route.is_some_and(|r| r.starts_with("/subjects") || r.starts_with("/schemas/")) {
            crate::routes::registry_denial(e)
        } else {
            e.into_response()
        }
    }
}

/// The bearer token of a request: the `Authorization` header, or for a WebSocket upgrade the
/// `access_token` query parameter (browsers cannot set headers on a WebSocket).
fn bearer(req: &Request, websocket: bool) -> Result<Option<String>, ApiError> {
    if let Some(value) = req.headers().get(AUTHORIZATION) {
        let text = value.to_str().unwrap_or_default();
        let token = text
            .split_once(' ')
            .filter(|(scheme, _)| scheme.eq_ignore_ascii_case("bearer"))
            .map(|(_, t)| t.trim())
            .filter(|t| !t.is_empty());
        return match token {
            Some(t) => Ok(Some(t.to_owned())),
            None => Err(ApiError::Unauthorized("the Authorization header must be `Bearer <token>`".into())),
        };
    }
    if websocket {
        let query = req.uri().query().unwrap_or_default();
        if let Some((_, t)) = form_urlencoded::parse(query.as_bytes()).find(|(k, _)| k == "access_token") {
            return Ok(Some(t.into_owned()));
        }
    }
    Ok(None)
}

/// The middleware: rate, credential, scope and (for WebSockets) origin, in front of every route.
pub async fn enforce(State(state): State<AppState>, req: Request, next: Next) -> Response {
    let guard = &state.access;
    let route = req.extensions().get::<MatchedPath>().map(|m| m.as_str().to_owned());
    let need = need(req.method(), route.as_deref());
    if need == Need::Open {
        return next.run(req).await;
    }
    let websocket = route.as_deref() == Some("/v1/ws");
    // Without the socket's address (a router driven in-process by tests), all such callers
    // share one bucket.
    let address = req
        .extensions()
        .get::<ConnectInfo<SocketAddr>>()
        .map_or(IpAddr::V4(Ipv4Addr::UNSPECIFIED), |ConnectInfo(a)| a.ip());
    // A refusal is answered before the body is read; the client must then not reuse the
    // connection (hyper closes it, and a pooled client would send its next request into it).
    let unread_body = req.headers().get(CONTENT_LENGTH).is_some_and(|v| v.as_bytes() != b"0")
        || req.headers().contains_key(TRANSFER_ENCODING);
    let deny = |e: ApiError| {
        let mut resp = guard.deny(e, route.as_deref());
        if unread_body {
            resp.headers_mut().insert(CONNECTION, HeaderValue::from_static("close"));
        }
        resp
    };
    let caller = bearer(&req, websocket).and_then(|t| guard.caller(t.as_deref()));
    if let Err(e) = guard.admit(caller.as_ref().ok(), address) {
        return deny(e);
    }
    let caller = match caller {
        Ok(c) => c,
        Err(e) => {
            tracing::debug!(%address, route = route.as_deref().unwrap_or_default(), "refused: {e}");
            return deny(e);
        }
    };
    if let Err(e) = guard.permit(&caller, need) {
        return deny(e);
    }
    if websocket && !guard.origin_allowed(req.headers()) {
        let origin = req.headers().get(ORIGIN).and_then(|v| v.to_str().ok()).unwrap_or_default().to_owned();
        let e = ApiError::Forbidden(format!(
            "WebSockets from origin {origin:?} are not allowed here (http.cors_allow_origins)"
        ));
        return deny(e);
    }
    next.run(req).await
}

/// The address a caller without a token is rate-limited as. An IPv6 host is usually given a
/// whole /64 and can take a new address from it for every request, so IPv6 callers are counted
/// per /64 block; an IPv4-mapped IPv6 address counts as its IPv4 address.
fn rate_key(address: IpAddr) -> IpAddr {
    match address {
        IpAddr::V4(_) => address,
        IpAddr::V6(v6) => match v6.to_ipv4_mapped() {
            Some(v4) => IpAddr::V4(v4),
            None => IpAddr::V6(std::net::Ipv6Addr::from(u128::from(v6) & !((1u128 << 64) - 1))),
        },
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn guard(config: AccessConfig, cluster: Option<&str>) -> Guard {
        let node_token = cluster.unwrap_or("made-up-by-the-node");
        Guard::new(
            &config,
            node_token,
            cluster.is_some(),
            &["https://ok.example".into()],
            Some("https://node.example:8080"),
            DeniedFamily::default(),
        )
    }

    fn config(tokens: &[(&str, &str, &[Scope])]) -> AccessConfig {
        AccessConfig {
            tokens: tokens
                .iter()
                .map(|(name, token, scopes)| TokenConfig {
                    name: (*name).into(),
                    sha256: token_hash(token),
                    scopes: scopes.to_vec(),
                })
                .collect(),
            ..AccessConfig::default()
        }
    }

    #[test]
    fn the_route_table_covers_each_kind_of_route() {
        let get = Method::GET;
        let post = Method::POST;
        assert_eq!(need(&get, Some("/healthz")), Need::Open);
        assert_eq!(need(&get, Some("/dashboard/{*file}")), Need::Open);
        assert_eq!(need(&get, None), Need::Open);
        assert_eq!(need(&get, Some("/v1/objects/{key}")), Need::Scope(Scope::Read));
        assert_eq!(need(&get, Some("/v1/ws")), Need::Scope(Scope::Read));
        assert_eq!(need(&get, Some("/metrics")), Need::Scope(Scope::Read));
        assert_eq!(need(&post, Some("/v1/alerts")), Need::Scope(Scope::Ingest));
        assert_eq!(need(&get, Some("/v1/pipelines")), Need::Scope(Scope::Admin));
        assert_eq!(need(&post, Some("/v1/admin/nodes/{id}/drain")), Need::Scope(Scope::Admin));
        assert_eq!(need(&post, Some("/subjects/{subject}/versions")), Need::Scope(Scope::Admin));
        assert_eq!(need(&get, Some("/subjects/{subject}/versions")), Need::Scope(Scope::Read));
        assert_eq!(need(&post, Some("/v1/internal/raft/vote")), Need::Node);
    }

    #[test]
    fn tokens_are_known_by_their_hash_and_hold_only_their_scopes() {
        let g =
            guard(config(&[("alice", "secret-a", &[Scope::Read]), ("bot", "secret-b", &[Scope::Ingest])]), Some("c"));
        let alice = g.caller(Some("secret-a")).unwrap();
        assert_eq!(alice, Caller::Token { name: "alice".into(), scopes: vec![Scope::Read] });
        assert!(g.permit(&alice, Need::Scope(Scope::Read)).is_ok());
        let e = g.permit(&alice, Need::Scope(Scope::Ingest)).unwrap_err();
        assert_eq!((e.status().as_u16(), e.code()), (403, "forbidden"));
        assert!(e.to_string().contains("alice") && e.to_string().contains("ingest"), "{e}");
        assert_eq!(g.caller(Some("secret-x")).unwrap_err().status().as_u16(), 401);
        assert_eq!(g.caller(Some("c")).unwrap(), Caller::Node);
        assert!(g.permit(&Caller::Node, Need::Scope(Scope::Admin)).is_ok());
        assert_eq!(g.permit(&alice, Need::Node).unwrap_err().status().as_u16(), 403);
        assert_eq!(g.permit(&Caller::Anonymous, Need::Node).unwrap_err().status().as_u16(), 401);
        assert_eq!(token_hash("abc"), "ba7816bf8f01cfea414140de5dae2223b00361a396177a9cb410ff61f20015ad");
    }

    #[test]
    fn anonymous_callers_get_what_the_configuration_allows() {
        let mut c = config(&[]);
        let open = guard(c.clone(), None);
        assert!(open.permit(&Caller::Anonymous, Need::Scope(Scope::Read)).is_ok());
        assert!(open.permit(&Caller::Anonymous, Need::Scope(Scope::Ingest)).is_ok());
        let e = open.permit(&Caller::Anonymous, Need::Scope(Scope::Admin)).unwrap_err();
        assert_eq!(e.code(), "admin_disabled");
        c.anonymous_reads = false;
        c.anonymous_ingest = false;
        let closed = guard(c, Some("c"));
        for s in [Scope::Read, Scope::Ingest, Scope::Admin] {
            let e = closed.permit(&Caller::Anonymous, Need::Scope(s)).unwrap_err();
            assert_eq!(e.status().as_u16(), 401, "{s:?}");
            assert!(e.to_string().contains(s.as_str()));
        }
    }

    #[test]
    fn websocket_origins_are_the_nodes_own_or_listed() {
        let g = guard(config(&[]), None);
        let headers = |origin: Option<&str>| {
            let mut h = HeaderMap::new();
            h.insert(HOST, "node.example:8080".parse().unwrap());
            if let Some(o) = origin {
                h.insert(ORIGIN, o.parse().unwrap());
            }
            h
        };
        assert!(g.origin_allowed(&headers(None)));
        assert!(g.origin_allowed(&headers(Some("http://node.example:8080"))));
        assert!(g.origin_allowed(&headers(Some("https://ok.example"))));
        assert!(!g.origin_allowed(&headers(Some("https://evil.example"))));
        assert!(!g.origin_allowed(&headers(Some("http://node.example:8081"))));
        // Own origin by IP literal or localhost; a domain only when it is the advertised one:
        // a page on a rebound domain sends that domain as Host and Origin alike.
        let pair = |host: &str, origin: &str| {
            let mut h = HeaderMap::new();
            h.insert(HOST, host.parse().unwrap());
            h.insert(ORIGIN, origin.parse().unwrap());
            g.origin_allowed(&h)
        };
        assert!(pair("127.0.0.1:8080", "http://127.0.0.1:8080"));
        assert!(pair("[::1]:8080", "http://[::1]:8080"));
        assert!(pair("localhost:8080", "http://localhost:8080"));
        assert!(pair("192.0.2.7", "http://192.0.2.7"));
        assert!(!pair("rebound.evil.example:8080", "http://rebound.evil.example:8080"));
        assert!(!pair("127.0.0.1:8080", "http://127.0.0.1:9090"), "another port is another origin");
    }

    #[test]
    fn a_token_over_its_rate_is_told_when_to_retry() {
        let mut c = config(&[("alice", "secret-a", &[Scope::Read])]);
        c.per_token_per_sec = 1;
        c.burst = 2;
        let g = guard(c, None);
        let alice = g.caller(Some("secret-a")).unwrap();
        let here = IpAddr::V4(Ipv4Addr::LOCALHOST);
        assert!(g.admit(Some(&alice), here).is_ok());
        assert!(g.admit(Some(&alice), here).is_ok());
        let e = g.admit(Some(&alice), here).unwrap_err();
        assert_eq!((e.status().as_u16(), e.code()), (429, "rate_limited"));
        let ApiError::RateLimited { retry_after_secs, .. } = e else { unreachable!() };
        assert_eq!(retry_after_secs, 1);
        // Anonymous callers are unlimited here (per_address_per_sec = 0), nodes always.
        assert!((0..100).all(|_| g.admit(Some(&Caller::Anonymous), here).is_ok()));
        assert!((0..100).all(|_| g.admit(Some(&Caller::Node), here).is_ok()));
    }

    #[test]
    fn ipv6_callers_are_limited_per_64_block() {
        let ip = |s: &str| s.parse::<IpAddr>().unwrap();
        assert_eq!(rate_key(ip("192.0.2.7")), ip("192.0.2.7"));
        assert_eq!(rate_key(ip("::ffff:192.0.2.7")), ip("192.0.2.7"), "IPv4-mapped counts as IPv4");
        assert_eq!(rate_key(ip("2001:db8:1:2:aaaa:bbbb:cccc:dddd")), ip("2001:db8:1:2::"));
        assert_ne!(rate_key(ip("2001:db8:1:2::1")), rate_key(ip("2001:db8:1:3::1")), "another /64");

        let mut c = config(&[]);
        c.per_address_per_sec = 1;
        c.burst = 2;
        let g = guard(c, None);
        // Two requests from one /64, then a third from a fresh address in the same block: refused.
        assert!(g.admit(None, ip("2001:db8:1:2::1")).is_ok());
        assert!(g.admit(None, ip("2001:db8:1:2::2")).is_ok());
        let e = g.admit(None, ip("2001:db8:1:2::3")).unwrap_err();
        assert_eq!(e.status().as_u16(), 429);
        assert!(e.to_string().contains("2001:db8:1:2::/64"), "{e}");
        // Another block has its own budget.
        assert!(g.admit(None, ip("2001:db8:1:3::1")).is_ok());
    }
}
