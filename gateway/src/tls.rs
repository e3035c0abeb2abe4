//! TLS with rustls (the ring provider, as everywhere else in the binary): the node's HTTPS and
//! WSS listener, and the trust its calls to other nodes use.
//!
//! The listener is an `axum::serve::Listener`, so TLS changes nothing else about serving:
//! graceful shutdown, per-connection addresses (`ConnectInfo`, for per-address rate limits) and
//! `TCP_NODELAY` are the plain listener's. Handshakes run in their own tasks — a client that
//! stalls mid-handshake holds one slot for at most [`HANDSHAKE_TIMEOUT`], never the accept
//! loop — and at most [`MAX_HANDSHAKES`] run at once; connections beyond them are closed.
//!
//! Only HTTP/1.1 is offered by ALPN: WebSockets need it, and the server is built for it.
//!
//! Calls to other nodes (forwarded reads, relays, scatter-gather, Raft, drains) trust exactly
//! the certificates of `tls.ca_file`: a cluster's CA, not the public web's.

use crate::config::Tls;
use anyhow::Context;
use rustls::pki_types::pem::PemObject;
use rustls::pki_types::{CertificateDer, PrivateKeyDer};
use rustls::server::{ClientHello, ResolvesServerCert};
use rustls::sign::CertifiedKey;
use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::{Duration, SystemTime};
use tokio::net::{TcpListener, TcpStream};
use tokio::sync::{mpsc, Semaphore};
use tokio_rustls::server::TlsStream;
use tokio_rustls::TlsAcceptor;

/// Longest a client may take to complete its handshake.
pub const HANDSHAKE_TIMEOUT: Duration = Duration::from_secs(5);
/// Handshakes in progress at once (a few kB each). A connection beyond them is closed at once
/// rather than left in the backlog: stalled handshakes must not keep new clients out.
pub const MAX_HANDSHAKES: usize = 1024;

fn provider() -> Arc<rustls::crypto::CryptoProvider> {
    Arc::new(rustls::crypto::ring::default_provider())
}

/// The server side: `tls.cert_file` and `tls.key_file`, HTTP/1.1 by ALPN. The certificate is
/// served through the returned [`Certificate`], which [`Certificate::reload`] replaces without a
/// restart (certificates are renewed every few months, some every few days).
pub fn server_config(tls: &Tls) -> anyhow::Result<(Arc<rustls::ServerConfig>, Arc<Certificate>)> {
    let certificate = Arc::new(Certificate::load(tls)?);
    let mut config = rustls::ServerConfig::builder_with_provider(provider())
        .with_safe_default_protocol_versions()?
        .with_no_client_auth()
        .with_cert_resolver(certificate.clone());
    config.alpn_protocols = vec![b"http/1.1".to_vec()];
    Ok((Arc::new(config), certificate))
}

/// The certificate and key the listener presents, replaceable while it serves: every new
/// handshake takes the current one; connections already open keep theirs.
#[derive(Debug)]
pub struct Certificate {
    cert_file: PathBuf,
    key_file: PathBuf,
    current: parking_lot::RwLock<Arc<CertifiedKey>>,
    /// The files' modification times when last read, to notice a renewal without a signal.
    read_at: parking_lot::Mutex<Option<(SystemTime, SystemTime)>>,
}

impl Certificate {
    fn load(tls: &Tls) -> anyhow::Result<Certificate> {
        let (Some(cert), Some(key)) = (&tls.cert_file, &tls.key_file) else {
            anyhow::bail!("tls.cert_file and tls.key_file are both needed to serve TLS");
        };
        let c = Certificate {
            cert_file: cert.clone(),
            key_file: key.clone(),
            current: parking_lot::RwLock::new(Arc::new(certified_key(cert, key)?)),
            read_at: parking_lot::Mutex::new(None),
        };
        *c.read_at.lock() = c.modified();
        Ok(c)
    }

    fn modified(&self) -> Option<(SystemTime, SystemTime)> {
        let at = |p: &Path| std::fs::metadata(p).and_then(|m| m.modified()).ok();
        Some((at(&self.cert_file)?, at(&self.key_file)?))
    }

    /// Reads the files again and serves what they hold from the next handshake on. `force`:
    /// even if their modification times have not changed (an operator's SIGHUP). A pair that
    /// does not load (half-written, a key that does not fit) is refused and the current one
    /// kept. Returns whether the certificate was replaced.
    pub fn reload(&self, force: bool) -> anyhow::Result<bool> {
        let modified = self.modified();
        if !force && modified == *self.read_at.lock() {
            return Ok(false);
        }
        let fresh = certified_key(&self.cert_file, &self.key_file)?;
        *self.read_at.lock() = modified;
        let mut current = self.current.write();
        if current.cert == fresh.cert {
            return Ok(false);
        }
        *current = Arc::new(fresh);
        Ok(true)
    }
}

impl ResolvesServerCert for Certificate {
    fn resolve(&self, _: ClientHello<'_>) -> Option<Arc<CertifiedKey>> {
        Some(self.current.read().clone())
    }
}

/// The chain of `cert` and the key of `key`, checked to fit each other.
fn certified_key(cert: &Path, key: &Path) -> anyhow::Result<CertifiedKey> {
    let chain: Vec<CertificateDer<'static>> = CertificateDer::pem_file_iter(cert)
        .and_then(|certs| certs.collect::<Result<_, _>>())
        .with_context(|| format!("configuration field `tls.cert_file`: reading {}", cert.display()))?;
    anyhow::ensure!(!chain.is_empty(), "configuration field `tls.cert_file`: {} holds no certificate", cert.display());
    let key = PrivateKeyDer::from_pem_file(key)
        .with_context(|| format!("configuration field `tls.key_file`: reading a private key from {}", key.display()))?;
    CertifiedKey::from_der(chain, key, &provider())
        .context("configuration fields `tls.cert_file`/`tls.key_file`: the key does not fit the certificate")
}

/// How often the certificate files are checked for a renewal (a SIGHUP reloads at once).
pub const RELOAD_CHECK_EVERY: Duration = Duration::from_secs(60);

/// Reloads `certificate` on SIGHUP and whenever its files change, until `stop`.
pub async fn keep_certificate_fresh(certificate: Arc<Certificate>, stop: tokio_util::sync::CancellationToken) {
    let mut hangup = match tokio::signal::unix::signal(tokio::signal::unix::SignalKind::hangup()) {
        Ok(s) => Some(s),
        Err(e) => {
            tracing::warn!(error = %e, "cannot listen for SIGHUP; the TLS certificate is reloaded when its files change");
            None
        }
    };
    let mut every = tokio::time::interval(RELOAD_CHECK_EVERY);
    every.tick().await;
    loop {
        let force = tokio::select! {
            () = stop.cancelled() => return,
            _ = every.tick() => false,
            Some(()) = async { match hangup.as_mut() { Some(h) => h.recv().await, None => std::future::pending().await } } => true,
        };
        let c = certificate.clone();
        match tokio::task::spawn_blocking(move || c.reload(force)).await {
            Ok(Ok(true)) => {
                tracing::info!(file = %certificate.cert_file.display(), "TLS certificate reloaded; new connections get it")
            }
            Ok(Ok(false)) => {
                if force {
                    tracing::info!("SIGHUP: the TLS certificate files hold the certificate already served");
                }
            }
            Ok(Err(e)) => {
                tracing::error!(error = %format!("{e:#}"), "the TLS certificate could not be reloaded; the current one is kept")
            }
            Err(e) => tracing::warn!(error = %e, "the TLS certificate reload task failed"),
        }
    }
}

/// The certificates of `tls.ca_file`, which calls to other nodes trust (`None` without one).
pub fn peer_roots(tls: &Tls) -> anyhow::Result<Option<Vec<CertificateDer<'static>>>> {
    let Some(ca) = &tls.ca_file else { return Ok(None) };
    let certs: Vec<CertificateDer<'static>> = CertificateDer::pem_file_iter(ca)
        .and_then(|certs| certs.collect::<Result<_, _>>())
        .with_context(|| format!("configuration field `tls.ca_file`: reading {}", ca.display()))?;
    anyhow::ensure!(!certs.is_empty(), "configuration field `tls.ca_file`: {} holds no certificate", ca.display());
    Ok(Some(certs))
}

/// A rustls client configuration trusting `roots`, for the relay's WebSockets to other nodes.
pub fn client_config(roots: &[CertificateDer<'static>]) -> anyhow::Result<Arc<rustls::ClientConfig>> {
    let mut store = rustls::RootCertStore::empty();
    for cert in roots {
        store.add(cert.clone()).context("configuration field `tls.ca_file`: a certificate rustls refuses")?;
    }
    let config = rustls::ClientConfig::builder_with_provider(provider())
        .with_safe_default_protocol_versions()?
        .with_root_certificates(store)
        .with_no_client_auth();
    Ok(Arc::new(config))
}

/// Adds `roots` as the only trusted certificates of a reqwest client (when there are any).
pub fn trust(
    builder: reqwest::ClientBuilder,
    roots: Option<&[CertificateDer<'static>]>,
) -> anyhow::Result<reqwest::ClientBuilder> {
    let Some(roots) = roots else { return Ok(builder) };
    let mut builder = builder.use_rustls_tls().tls_built_in_root_certs(false);
    for cert in roots {
        builder = builder.add_root_certificate(reqwest::Certificate::from_der(cert.as_ref())?);
    }
    Ok(builder)
}

/// A listener that serves TLS: accepted connections, handshaken.
pub struct TlsListener {
    accepted: mpsc::Receiver<(TlsStream<TcpStream>, SocketAddr)>,
    local: SocketAddr,
}

impl TlsListener {
    /// Starts accepting on `listener`. The accept loop is a task that ends when this listener is
    /// dropped (the server stopped).
    pub fn new(listener: TcpListener, config: Arc<rustls::ServerConfig>) -> std::io::Result<TlsListener> {
        let local = listener.local_addr()?;
        let (tx, accepted) = mpsc::channel(64);
        let acceptor = TlsAcceptor::from(config);
        tokio::spawn(accept_loop(listener, acceptor, tx));
        Ok(TlsListener { accepted, local })
    }
}

async fn accept_loop(
    listener: TcpListener,
    acceptor: TlsAcceptor,
    tx: mpsc::Sender<(TlsStream<TcpStream>, SocketAddr)>,
) {
    let slots = Arc::new(Semaphore::new(MAX_HANDSHAKES));
    loop {
        let (tcp, peer) = tokio::select! {
            () = tx.closed() => return,
            accepted = listener.accept() => match accepted {
                Ok(a) => a,
                Err(e) => {
                    // Out of file descriptors and the like: wait rather than spin (as axum does).
                    tracing::warn!(error = %e, "accepting a connection failed");
                    tokio::time::sleep(Duration::from_millis(100)).await;
                    continue;
                }
            },
        };
        let Ok(slot) = slots.clone().try_acquire_owned() else {
            tracing::debug!(%peer, "too many TLS handshakes in progress; closing the connection");
            continue;
        };
        if let Err(e) = tcp.set_nodelay(true) {
            tracing::debug!(error = %e, "could not set TCP_NODELAY on an accepted connection");
        }
        let (acceptor, tx) = (acceptor.clone(), tx.clone());
        tokio::spawn(async move {
            let _slot = slot;
            match tokio::time::timeout(HANDSHAKE_TIMEOUT, acceptor.accept(tcp)).await {
                Ok(Ok(stream)) => {
                    let _ = tx.send((stream, peer)).await;
                }
                Ok(Err(e)) => tracing::debug!(%peer, error = %e, "TLS handshake failed"),
                Err(_) => tracing::debug!(%peer, "TLS handshake timed out"),
            }
        });
    }
}

impl axum::serve::Listener for TlsListener {
    type Io = TlsStream<TcpStream>;
    type Addr = SocketAddr;

    async fn accept(&mut self) -> (Self::Io, Self::Addr) {
        match self.accepted.recv().await {
            Some(conn) => conn,
            // The accept loop ends only once this receiver is gone.
            None => std::future::pending().await,
        }
    }

    fn local_addr(&self) -> std::io::Result<SocketAddr> {
        Ok(self.local)
    }
}
