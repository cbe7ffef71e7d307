//! The upstream leg's transport: DNS (pure Rust, so a static binary needs no NSS), TCP with
//! `TCP_NODELAY`, rustls with the webpki roots plus an optional extra CA, and a bounded pool of idle
//! keep-alive connections per upstream. It leaves HTTP itself to `request/exchange.rs` and the retry of a
//! stale pooled connection to `upstream/retry.rs`; a connection goes back to the pool only when
//! `request/exchange.rs` says the exchange ended cleanly. A provider that cannot be reached comes
//! back as an [`Unreachable`] naming the cause (DNS, refused, TLS, timeout), for the log and `/metrics`.

use std::collections::HashMap;
use std::io;
use std::net::{IpAddr, SocketAddr};
use std::path::Path;
use std::pin::Pin;
use std::sync::{Arc, Mutex};
use std::task::{Context, Poll};
use std::time::{Duration, Instant};

use hickory_resolver::TokioAsyncResolver;
use rustls::pki_types::ServerName;
use tokio::io::{AsyncRead, AsyncWrite, ReadBuf};
use tokio::net::TcpStream;
use tokio_rustls::client::TlsStream;
use tokio_rustls::TlsConnector;

use crate::config::UpstreamConfig;
use crate::error::Error;
use crate::upstream::provider::BaseUrl;

/// Why a provider could not be reached. A fixed set, so it can be a `/metrics` label.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Cause {
    /// The host name did not resolve (or no resolver is configured).
    Dns,
    /// Every address refused the TCP connection, or the network is unreachable.
    Refused,
    /// The TLS handshake failed (certificate, name, protocol).
    Tls,
    /// Resolving, connecting or the handshake took longer than its `upstream` timeout.
    Timeout,
}

impl Cause {
    /// The label value in `relayapi_upstream_unreachable_total{cause=...}` and the log's `cause`.
    pub fn label(self) -> &'static str {
        match self {
            Cause::Dns => "dns",
            Cause::Refused => "refused",
            Cause::Tls => "tls",
            Cause::Timeout => "timeout",
        }
    }
}

/// A provider that could not be reached: the cause and the system's own words for it. The detail comes
/// from the resolver, the socket or rustls, which never see the API key.
#[derive(Debug, Clone)]
pub struct Unreachable {
    pub cause: Cause,
    pub detail: String,
}

impl Unreachable {
    fn new(cause: Cause, detail: impl std::fmt::Display) -> Unreachable {
        Unreachable {
            cause,
            detail: detail.to_string(),
        }
    }

    /// The client-facing error (502, or 504 for a timeout).
    pub fn error(&self) -> Error {
        match self.cause {
            Cause::Dns | Cause::Refused => Error::UpstreamConnect,
            Cause::Tls => Error::UpstreamTls,
            Cause::Timeout => Error::UpstreamTimeout,
        }
    }
}

/// A byte stream to a provider, plain or TLS.
pub enum Stream {
    Plain(TcpStream),
    Tls(Box<TlsStream<TcpStream>>),
}

impl Stream {
    fn tcp(&self) -> &TcpStream {
        match self {
            Stream::Plain(s) => s,
            Stream::Tls(s) => s.get_ref().0,
        }
    }
}

impl AsyncRead for Stream {
    fn poll_read(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &mut ReadBuf<'_>,
    ) -> Poll<io::Result<()>> {
        match self.get_mut() {
            Stream::Plain(s) => Pin::new(s).poll_read(cx, buf),
            Stream::Tls(s) => Pin::new(s.as_mut()).poll_read(cx, buf),
        }
    }
}

impl AsyncWrite for Stream {
    fn poll_write(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &[u8],
    ) -> Poll<io::Result<usize>> {
        match self.get_mut() {
            Stream::Plain(s) => Pin::new(s).poll_write(cx, buf),
            Stream::Tls(s) => Pin::new(s.as_mut()).poll_write(cx, buf),
        }
    }
    fn poll_flush(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        match self.get_mut() {
            Stream::Plain(s) => Pin::new(s).poll_flush(cx),
            Stream::Tls(s) => Pin::new(s.as_mut()).poll_flush(cx),
        }
    }
    fn poll_shutdown(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        match self.get_mut() {
            Stream::Plain(s) => Pin::new(s).poll_shutdown(cx),
            Stream::Tls(s) => Pin::new(s.as_mut()).poll_shutdown(cx),
        }
    }
}

/// Pool key: one pool per scheme, host and port.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub struct PoolKey {
    pub tls: bool,
    /// The base URL's host, shared rather than copied for every checkout.
    pub host: Arc<str>,
    pub port: u16,
}

impl PoolKey {
    pub fn of(base: &BaseUrl) -> PoolKey {
        PoolKey {
            tls: base.tls,
            host: base.host.clone(),
            port: base.port,
        }
    }
}

/// A checked-out upstream connection.
pub struct Conn {
    pub stream: Stream,
    pub key: PoolKey,
    /// True when it came from the pool: the provider may have closed it meanwhile, which earns the
    /// request one retry on a fresh connection (`upstream/retry.rs`).
    pub reused: bool,
}

struct Idle {
    stream: Stream,
    since: Instant,
}

pub struct Upstream {
    tls: TlsConnector,
    resolver: Option<TokioAsyncResolver>,
    /// Keyed by configured upstreams only, so the fast hasher (see Cargo.toml).
    idle: Mutex<HashMap<PoolKey, Vec<Idle>, foldhash::fast::RandomState>>,
    max_idle_per_host: usize,
    pool_idle_timeout: Duration,
    connect_timeout: Duration,
    handshake_timeout: Duration,
}

impl Upstream {
    /// Build the TLS client and the resolver. Fails (at start-up) when the extra CA file is unusable.
    pub fn new(cfg: &UpstreamConfig) -> Result<Upstream, String> {
        let mut roots = rustls::RootCertStore::empty();
        roots.extend(webpki_roots::TLS_SERVER_ROOTS.iter().cloned());
        if let Some(path) = &cfg.extra_ca_file {
            add_pem_roots(&mut roots, path)?;
        }
        let provider = Arc::new(rustls::crypto::ring::default_provider());
        let mut tls = rustls::ClientConfig::builder_with_provider(provider)
            .with_safe_default_protocol_versions()
            .map_err(|e| format!("TLS setup: {e}"))?
            .with_root_certificates(roots)
            .with_no_client_auth();
        // We speak HTTP/1.1 upstream; say so, so an h2-preferring server does not pick h2.
        tls.alpn_protocols = vec![b"http/1.1".to_vec()];
        // A missing /etc/resolv.conf (minimal containers) leaves only IP-literal upstreams usable; the
        // error then surfaces per request as a connect failure instead of refusing to start.
        let resolver = TokioAsyncResolver::tokio_from_system_conf().ok();
        Ok(Upstream {
            tls: TlsConnector::from(Arc::new(tls)),
            resolver,
            idle: Mutex::new(HashMap::default()),
            max_idle_per_host: cfg.pool_max_idle_per_host,
            pool_idle_timeout: cfg.pool_idle_timeout,
            connect_timeout: cfg.connect_timeout,
            handshake_timeout: cfg.handshake_timeout,
        })
    }

    /// A pooled connection that still looks healthy, or a fresh one.
    pub async fn checkout(&self, base: &BaseUrl) -> Result<Conn, Unreachable> {
        let key = PoolKey::of(base);
        if let Some(stream) = self.take_idle(&key) {
            return Ok(Conn {
                stream,
                key,
                reused: true,
            });
        }
        let stream = self.connect(&key).await?;
        Ok(Conn {
            stream,
            key,
            reused: false,
        })
    }

    /// A new connection, never one from the pool: the retry after a pooled one went stale
    /// (`upstream/retry.rs`).
    pub async fn connect_fresh(&self, key: &PoolKey) -> Result<Conn, Unreachable> {
        Ok(Conn {
            stream: Box::pin(self.connect(key)).await?,
            key: key.clone(),
            reused: false,
        })
    }

    /// Return a connection whose last exchange ended cleanly (response fully read, keep-alive).
    pub fn release(&self, conn: Conn) {
        if self.max_idle_per_host == 0 {
            return;
        }
        let mut idle = self.idle.lock().unwrap_or_else(|p| p.into_inner());
        let list = idle.entry(conn.key).or_default();
        if list.len() >= self.max_idle_per_host {
            // Evict the oldest: the newest connections are the least likely to be closed by the peer.
            list.remove(0);
        }
        list.push(Idle {
            stream: conn.stream,
            since: Instant::now(),
        });
    }

    /// Drop idle connections past the idle timeout (called periodically by the server).
    pub fn sweep(&self) {
        let mut idle = self.idle.lock().unwrap_or_else(|p| p.into_inner());
        let timeout = self.pool_idle_timeout;
        idle.retain(|_, list| {
            list.retain(|i| i.since.elapsed() < timeout);
            !list.is_empty()
        });
    }

    pub fn idle_count(&self) -> usize {
        self.idle
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .values()
            .map(Vec::len)
            .sum()
    }

    fn take_idle(&self, key: &PoolKey) -> Option<Stream> {
        let mut idle = self.idle.lock().unwrap_or_else(|p| p.into_inner());
        let list = idle.get_mut(key)?;
        while let Some(i) = list.pop() {
            if i.since.elapsed() >= self.pool_idle_timeout {
                continue;
            }
            // An idle HTTP/1.1 connection must have nothing to read. EOF means the provider closed it;
            // stray bytes mean it is out of sync. Either way it is not reusable.
            let mut probe = [0u8; 1];
            match i.stream.tcp().try_read(&mut probe) {
                Err(e) if e.kind() == io::ErrorKind::WouldBlock => return Some(i.stream),
                _ => continue,
            }
        }
        None
    }

    /// Resolve, connect and (for `https`) shake hands: ~1.3 KiB of state (the resolver's lookup, the
    /// handshake). [`Upstream::checkout`] awaits it in place, before the exchange, whose state is
    /// larger; [`Upstream::connect_fresh`] boxes it, since it runs inside the exchange's write (the
    /// retry after a stale pooled connection), where it would add to the largest state of every
    /// connection's task for the life of the connection.
    async fn connect(&self, key: &PoolKey) -> Result<Stream, Unreachable> {
        let addrs = self.resolve(&key.host, key.port).await?;
        let tcp = tokio::time::timeout(self.connect_timeout, connect_any(&addrs))
            .await
            .map_err(|_| Unreachable::new(Cause::Timeout, "TCP connect timed out"))?
            .map_err(|e| Unreachable::new(Cause::Refused, e))?;
        tcp.set_nodelay(true).ok();
        if !key.tls {
            return Ok(Stream::Plain(tcp));
        }
        let name = ServerName::try_from(key.host.to_string())
            .map_err(|e| Unreachable::new(Cause::Tls, e))?;
        let tls = tokio::time::timeout(self.handshake_timeout, self.tls.connect(name, tcp))
            .await
            .map_err(|_| Unreachable::new(Cause::Timeout, "TLS handshake timed out"))?
            .map_err(|e| Unreachable::new(Cause::Tls, e))?;
        Ok(Stream::Tls(Box::new(tls)))
    }

    async fn resolve(&self, host: &str, port: u16) -> Result<Vec<SocketAddr>, Unreachable> {
        if let Ok(ip) = host.parse::<IpAddr>() {
            return Ok(vec![SocketAddr::new(ip, port)]);
        }
        let resolver = self.resolver.as_ref().ok_or_else(|| {
            Unreachable::new(Cause::Dns, "no DNS resolver (missing /etc/resolv.conf)")
        })?;
        let lookup = tokio::time::timeout(self.connect_timeout, resolver.lookup_ip(host))
            .await
            .map_err(|_| Unreachable::new(Cause::Timeout, "DNS lookup timed out"))?
            .map_err(|e| Unreachable::new(Cause::Dns, e))?;
        let addrs: Vec<SocketAddr> = lookup.iter().map(|ip| SocketAddr::new(ip, port)).collect();
        if addrs.is_empty() {
            return Err(Unreachable::new(Cause::Dns, "no address for the host"));
        }
        Ok(addrs)
    }
}

/// Try each address in turn (the resolver's order), returning the first that connects.
async fn connect_any(addrs: &[SocketAddr]) -> io::Result<TcpStream> {
    let mut last = io::Error::new(io::ErrorKind::NotFound, "no address");
    for a in addrs {
        match TcpStream::connect(a).await {
            Ok(s) => return Ok(s),
            Err(e) => last = e,
        }
    }
    Err(last)
}

fn add_pem_roots(roots: &mut rustls::RootCertStore, path: &Path) -> Result<(), String> {
    let data = std::fs::read(path)
        .map_err(|e| format!("upstream.extra_ca_file {}: {e}", path.display()))?;
    let mut n = 0;
    for cert in rustls_pemfile::certs(&mut data.as_slice()) {
        let cert =
            cert.map_err(|e| format!("upstream.extra_ca_file {}: bad PEM: {e}", path.display()))?;
        roots.add(cert).map_err(|e| {
            format!(
                "upstream.extra_ca_file {}: unusable certificate: {e}",
                path.display()
            )
        })?;
        n += 1;
    }
    if n == 0 {
        return Err(format!(
            "upstream.extra_ca_file {}: no PEM certificates found",
            path.display()
        ));
    }
    Ok(())
}
