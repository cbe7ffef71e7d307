//! HTTPS served by the relay itself: the rustls server configuration built from the operator's PEM
//! files, the handshake (bounded by `tls.handshake_timeout`), and certificate reloads on SIGHUP or when
//! the files change, without dropping a connection. Accepting sockets stays in `server/accept.rs` and HTTP in
//! `request/conn.rs`; this file hands `conn::serve` a stream that behaves like a socket.
//!
//! Choices, each deliberate:
//! - One `ServerConfig` for the process's life. The certificate lives behind a resolver whose
//!   `CertifiedKey` is swapped under a lock, so a reload changes what the *next* handshake presents
//!   while open connections keep the session they negotiated, and the session cache and ticket keys
//!   survive reloads (resumption keeps working across certificate renewals).
//! - Session resumption is on: rustls' in-memory session cache for TLS 1.2 session ids and its
//!   rotating ticketer (ChaCha20-Poly1305 keys, rotated every 6 hours) for tickets. 0-RTT early data
//!   stays off (rustls' default), since a replayed early request would spend a token's calls.
//! - No renegotiation: rustls never renegotiates and refuses a client's request to, so there is no
//!   setting for it.
//! - ALPN offers `http/1.1` (and `http/1.0` after it, for old clients that ask for it); a client that
//!   offers only `h2` is refused during the handshake rather than sent HTTP/1.1 it cannot read.
//! - A bad new certificate (unreadable, bad PEM, key not matching) is logged and the one in force
//!   stays; the files are hashed, so the same bad pair is reported once, not at every poll.

use std::fmt;
use std::io;
use std::path::{Path, PathBuf};
use std::pin::Pin;
use std::sync::{Arc, Mutex, RwLock};
use std::task::{Context, Poll};
use std::time::Duration;

use rustls::crypto::CryptoProvider;
use rustls::pki_types::{CertificateDer, PrivateKeyDer};
use rustls::server::{ClientHello, ResolvesServerCert, ServerSessionMemoryCache};
use rustls::sign::CertifiedKey;
use rustls::{InconsistentKeys, ServerConfig};
use serde_json::json;
use sha2::{Digest, Sha256};
use tokio::io::{AsyncRead, AsyncWrite, ReadBuf};
use tokio::sync::mpsc;
use tokio_rustls::server::TlsStream;
use tokio_rustls::TlsAcceptor;

use crate::config::{TlsConfig, TlsVersion};
use crate::log::Logger;

/// TLS 1.2 sessions remembered for resumption by session id. Each entry is a few hundred bytes, so
/// the cache stays under a few MB; clients that offer tickets (all current ones) do not use it.
const SESSION_CACHE_ENTRIES: usize = 4096;
/// Protocols offered in ALPN, in the server's order of preference.
const ALPN: [&[u8]; 2] = [b"http/1.1", b"http/1.0"];

/// Why the certificate or key could not be used. Names the config field and the file, so the operator
/// knows which of the two to fix; at start-up `main.rs` puts the config file's path in front.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct TlsError {
    /// `tls.cert_file` or `tls.key_file`; empty for a problem with neither file (TLS set-up itself).
    pub field: &'static str,
    pub path: PathBuf,
    pub problem: String,
}

impl fmt::Display for TlsError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        if self.field.is_empty() {
            write!(f, "TLS set-up: {}", self.problem)
        } else {
            write!(
                f,
                "field `{}`: {}: {}",
                self.field,
                self.path.display(),
                self.problem
            )
        }
    }
}

impl std::error::Error for TlsError {}

/// The certificate and key files' contents, as bytes: what a reload compares and parses.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PemPair {
    pub cert: Vec<u8>,
    pub key: Vec<u8>,
}

impl PemPair {
    /// Read both files. Errors name the file that could not be read.
    pub fn read(cert_file: &Path, key_file: &Path) -> Result<PemPair, TlsError> {
        let read = |field, path: &Path| {
            std::fs::read(path).map_err(|e| TlsError {
                field,
                path: path.to_path_buf(),
                problem: format!("cannot read the file: {e}"),
            })
        };
        Ok(PemPair {
            cert: read("tls.cert_file", cert_file)?,
            key: read("tls.key_file", key_file)?,
        })
    }

    /// SHA-256 over both files, length-prefixed so that moving bytes from one file to the other
    /// changes it too.
    fn digest(&self) -> [u8; 32] {
        let mut h = Sha256::new();
        for part in [&self.cert, &self.key] {
            h.update((part.len() as u64).to_be_bytes());
            h.update(part);
        }
        h.finalize().into()
    }
}

/// Parse a PEM certificate chain and private key and check that they belong together. Pure: bytes in,
/// a key rustls can serve or an error naming the file at fault. `cert_file` and `key_file` are only
/// used in error messages.
pub fn certified_key(
    pem: &PemPair,
    cert_file: &Path,
    key_file: &Path,
    provider: &CryptoProvider,
) -> Result<CertifiedKey, TlsError> {
    let cert_err = |problem: String| TlsError {
        field: "tls.cert_file",
        path: cert_file.to_path_buf(),
        problem,
    };
    let key_err = |problem: String| TlsError {
        field: "tls.key_file",
        path: key_file.to_path_buf(),
        problem,
    };
    let chain: Vec<CertificateDer<'static>> = rustls_pemfile::certs(&mut pem.cert.as_slice())
        .collect::<Result<_, _>>()
        .map_err(|e| cert_err(format!("bad PEM: {e}")))?;
    if chain.is_empty() {
        return Err(cert_err(
            "no PEM certificate found; expected \"-----BEGIN CERTIFICATE-----\" blocks, the server's \
             certificate first, then its intermediates (certbot: fullchain.pem)"
                .into(),
        ));
    }
    let key = parse_key(&pem.key).map_err(key_err)?;
    let signing_key = provider
        .key_provider
        .load_private_key(key)
        .map_err(|e| key_err(format!("unusable private key: {e}")))?;
    let ck = CertifiedKey::new(chain, signing_key);
    match ck.keys_match() {
        // Unknown: the key type cannot report its public key; rustls' own loader accepts that too.
        Ok(()) | Err(rustls::Error::InconsistentKeys(InconsistentKeys::Unknown)) => Ok(ck),
        Err(rustls::Error::InconsistentKeys(_)) => Err(key_err(format!(
            "this private key does not match the first certificate in {} (a key from another \
             certificate, or a chain whose first certificate is not the server's own)",
            cert_file.display()
        ))),
        Err(e) => Err(cert_err(format!(
            "the first certificate cannot be parsed: {e}"
        ))),
    }
}

fn parse_key(pem: &[u8]) -> Result<PrivateKeyDer<'static>, String> {
    match rustls_pemfile::private_key(&mut &pem[..]) {
        Ok(Some(k)) => Ok(k),
        Ok(None) if contains(pem, b"ENCRYPTED PRIVATE KEY") || contains(pem, b"Proc-Type: 4,ENCRYPTED") => {
            Err("the private key is encrypted; the relay cannot ask for a passphrase. Store it \
                 decrypted, readable by the relay's user only (`openssl pkey -in enc.key -out key.pem`)"
                .into())
        }
        Ok(None) => Err("no PEM private key found; expected \"-----BEGIN PRIVATE KEY-----\", \
                         \"-----BEGIN EC PRIVATE KEY-----\" or \"-----BEGIN RSA PRIVATE KEY-----\""
            .into()),
        Err(e) => Err(format!("bad PEM: {e}")),
    }
}

fn contains(hay: &[u8], needle: &[u8]) -> bool {
    hay.windows(needle.len()).any(|w| w == needle)
}

/// Hex SHA-256 of the leaf certificate (what `openssl x509 -fingerprint -sha256` shows, without the
/// colons): how logs say which certificate is in force.
pub fn leaf_sha256(ck: &CertifiedKey) -> String {
    let leaf = ck.cert.first().map(|c| c.as_ref()).unwrap_or_default();
    Sha256::digest(leaf)
        .iter()
        .map(|b| format!("{b:02x}"))
        .collect()
}

/// The certificate presented to the next handshake; swapped by a reload.
#[derive(Debug)]
struct CurrentCert(RwLock<Arc<CertifiedKey>>);

impl CurrentCert {
    fn get(&self) -> Arc<CertifiedKey> {
        self.0.read().unwrap_or_else(|p| p.into_inner()).clone()
    }
    fn set(&self, ck: Arc<CertifiedKey>) {
        *self.0.write().unwrap_or_else(|p| p.into_inner()) = ck;
    }
}

impl ResolvesServerCert for CurrentCert {
    fn resolve(&self, _hello: ClientHello<'_>) -> Option<Arc<CertifiedKey>> {
        Some(self.get())
    }
}

/// What set off a reload, for the log line.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Trigger {
    /// SIGHUP: the operator asked, so the files are read and reported on even if they did not change.
    Signal,
    /// The periodic check: acts only when the files' contents differ from the last ones looked at.
    Poll,
}

impl Trigger {
    fn as_str(self) -> &'static str {
        match self {
            Trigger::Signal => "sighup",
            Trigger::Poll => "file_change",
        }
    }
}

/// The result of a reload attempt.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Reload {
    /// The files are the ones in force (or, on a poll, the same bad ones already reported).
    Unchanged,
    /// A new certificate is in force; its leaf's SHA-256.
    Reloaded { sha256: String },
    /// The new files are unusable; the previous certificate stays in force.
    Failed(TlsError),
}

/// What the last look at the files found, so a poll acts only on a change.
#[derive(Debug, Clone, PartialEq, Eq)]
enum Seen {
    Contents([u8; 32]),
    Unreadable(String),
}

struct ReloadState {
    /// Digest of the files behind the certificate in force.
    in_force: [u8; 32],
    last_seen: Seen,
}

/// The relay's TLS server side: the acceptor for handshakes and the reloadable certificate.
pub struct ServerTls {
    acceptor: TlsAcceptor,
    current: Arc<CurrentCert>,
    provider: Arc<CryptoProvider>,
    cert_file: PathBuf,
    key_file: PathBuf,
    handshake_timeout: Duration,
    state: Mutex<ReloadState>,
}

/// Why a connection never got to HTTP.
#[derive(Debug)]
pub enum HandshakeError {
    /// The client did not finish the handshake within `tls.handshake_timeout`.
    Timeout,
    /// Not TLS, no common version, cipher suite or ALPN protocol, or the client went away.
    Failed(io::Error),
}

impl ServerTls {
    /// Load the certificate and key named in `cfg` and build the server configuration. Every error
    /// names the field and the file.
    pub fn load(cfg: &TlsConfig) -> Result<ServerTls, TlsError> {
        let setup = |problem: String| TlsError {
            field: "",
            path: PathBuf::new(),
            problem,
        };
        let provider = Arc::new(rustls::crypto::ring::default_provider());
        let pem = PemPair::read(&cfg.cert_file, &cfg.key_file)?;
        let ck = certified_key(&pem, &cfg.cert_file, &cfg.key_file, &provider)?;
        let current = Arc::new(CurrentCert(RwLock::new(Arc::new(ck))));
        let versions: &[&rustls::SupportedProtocolVersion] = match cfg.min_version {
            TlsVersion::Tls13 => &[&rustls::version::TLS13],
            TlsVersion::Tls12 => &[&rustls::version::TLS13, &rustls::version::TLS12],
        };
        let mut sc = ServerConfig::builder_with_provider(provider.clone())
            .with_protocol_versions(versions)
            .map_err(|e| setup(e.to_string()))?
            .with_no_client_auth()
            .with_cert_resolver(current.clone());
        sc.alpn_protocols = ALPN.iter().map(|p| p.to_vec()).collect();
        sc.session_storage = ServerSessionMemoryCache::new(SESSION_CACHE_ENTRIES);
        sc.ticketer = rustls::crypto::ring::Ticketer::new().map_err(|e| setup(e.to_string()))?;
        Ok(ServerTls {
            acceptor: TlsAcceptor::from(Arc::new(sc)),
            current,
            provider,
            cert_file: cfg.cert_file.clone(),
            key_file: cfg.key_file.clone(),
            handshake_timeout: cfg.handshake_timeout,
            state: Mutex::new(ReloadState {
                in_force: pem.digest(),
                last_seen: Seen::Contents(pem.digest()),
            }),
        })
    }

    /// Run the server side of the handshake on `io`, giving up after the handshake timeout. The
    /// returned stream is what `conn::serve` reads requests from.
    pub async fn accept<IO>(&self, io: IO) -> Result<TlsIo<TlsStream<IO>>, HandshakeError>
    where
        IO: AsyncRead + AsyncWrite + Unpin,
    {
        match tokio::time::timeout(self.handshake_timeout, self.acceptor.accept(io)).await {
            Ok(Ok(s)) => Ok(TlsIo(s)),
            Ok(Err(e)) => Err(HandshakeError::Failed(e)),
            Err(_) => Err(HandshakeError::Timeout),
        }
    }

    /// SHA-256 of the leaf certificate in force.
    pub fn cert_sha256(&self) -> String {
        leaf_sha256(&self.current.get())
    }

    pub fn cert_file(&self) -> &Path {
        &self.cert_file
    }

    /// Re-read the files and, if they hold a new valid pair, put it in force for the next handshakes.
    /// Blocking (small file reads): call it from `spawn_blocking` inside the runtime.
    pub fn reload(&self, trigger: Trigger) -> Reload {
        let mut state = self.state.lock().unwrap_or_else(|p| p.into_inner());
        let pem = match PemPair::read(&self.cert_file, &self.key_file) {
            Ok(p) => p,
            Err(e) => {
                // Renewal tools replace files one at a time; a missing file is worth one report,
                // and the next poll after it reappears tries again.
                let seen = Seen::Unreadable(e.to_string());
                let repeat = state.last_seen == seen;
                state.last_seen = seen;
                return if repeat && trigger == Trigger::Poll {
                    Reload::Unchanged
                } else {
                    Reload::Failed(e)
                };
            }
        };
        let digest = pem.digest();
        let seen = Seen::Contents(digest);
        if trigger == Trigger::Poll && state.last_seen == seen {
            return Reload::Unchanged;
        }
        state.last_seen = seen;
        if digest == state.in_force {
            return Reload::Unchanged;
        }
        match certified_key(&pem, &self.cert_file, &self.key_file, &self.provider) {
            Ok(ck) => {
                let sha256 = leaf_sha256(&ck);
                self.current.set(Arc::new(ck));
                state.in_force = digest;
                Reload::Reloaded { sha256 }
            }
            Err(e) => Reload::Failed(e),
        }
    }
}

/// Reload the certificate on each message from `hup` (SIGHUP, forwarded by `main.rs`) and, when
/// `interval` is set, whenever the files change. Runs until `hup` is closed.
pub async fn watch(
    tls: Arc<ServerTls>,
    log: Logger,
    interval: Option<Duration>,
    mut hup: mpsc::Receiver<()>,
) {
    // With polling off, the tick never fires; a far-off interval keeps one select! for both cases.
    let period = interval.unwrap_or(Duration::from_secs(365 * 86_400));
    let mut tick = tokio::time::interval_at(tokio::time::Instant::now() + period, period);
    tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    loop {
        let trigger = tokio::select! {
            m = hup.recv() => match m {
                Some(()) => Trigger::Signal,
                None => return,
            },
            _ = tick.tick(), if interval.is_some() => Trigger::Poll,
        };
        let t = tls.clone();
        let outcome = match tokio::task::spawn_blocking(move || t.reload(trigger)).await {
            Ok(o) => o,
            Err(_) => continue,
        };
        report(&log, &tls, trigger, &outcome);
    }
}

fn report(log: &Logger, tls: &ServerTls, trigger: Trigger, outcome: &Reload) {
    match outcome {
        Reload::Unchanged if trigger == Trigger::Signal => log.info(
            "TLS certificate unchanged",
            json!({"trigger": trigger.as_str(), "cert_sha256": tls.cert_sha256()}),
        ),
        Reload::Unchanged => {}
        Reload::Reloaded { sha256 } => log.info(
            "TLS certificate reloaded",
            json!({"trigger": trigger.as_str(), "cert_file": tls.cert_file().display().to_string(),
                   "cert_sha256": sha256}),
        ),
        Reload::Failed(e) => log.warn(
            "TLS certificate reload failed; the previous certificate stays in force",
            json!({"trigger": trigger.as_str(), "error": e.to_string(), "cert_sha256": tls.cert_sha256()}),
        ),
    }
}

/// A server TLS stream that never leaves encrypted bytes behind.
///
/// tokio-rustls reports a write as done once rustls has taken the plaintext, even when the socket was
/// full and part of the ciphertext is still buffered; that rest leaves only on a later write or flush.
/// `request/client/` and `request/exchange.rs` never flush (a socket needs no flush), so the tail of a
/// response to a slow reader could sit in the buffer while the relay waits for the client's next
/// request or the provider's next event. This wrapper flushes what is pending before accepting new bytes, after each
/// write, and whenever the connection task polls for reading, which it does while idle and while
/// streaming.
pub struct TlsIo<S>(pub S);

impl<S> TlsIo<S> {
    pub fn get_ref(&self) -> &S {
        &self.0
    }
}

impl<S: AsyncRead + AsyncWrite + Unpin> AsyncRead for TlsIo<S> {
    fn poll_read(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &mut ReadBuf<'_>,
    ) -> Poll<io::Result<()>> {
        let inner = &mut self.get_mut().0;
        // Pending here registers interest in writability, so the task wakes to finish the flush; a
        // write error will show on the next read or write.
        let _ = Pin::new(&mut *inner).poll_flush(cx);
        Pin::new(inner).poll_read(cx, buf)
    }
}

impl<S: AsyncRead + AsyncWrite + Unpin> AsyncWrite for TlsIo<S> {
    fn poll_write(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &[u8],
    ) -> Poll<io::Result<usize>> {
        let inner = &mut self.get_mut().0;
        // Backpressure: take nothing new while earlier ciphertext is still waiting for the socket.
        std::task::ready!(Pin::new(&mut *inner).poll_flush(cx))?;
        let n = std::task::ready!(Pin::new(&mut *inner).poll_write(cx, buf))?;
        let _ = Pin::new(inner).poll_flush(cx);
        Poll::Ready(Ok(n))
    }

    fn poll_flush(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        Pin::new(&mut self.get_mut().0).poll_flush(cx)
    }

    fn poll_shutdown(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        Pin::new(&mut self.get_mut().0).poll_shutdown(cx)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use rustls::pki_types::ServerName;
    use tokio::io::{AsyncReadExt, AsyncWriteExt};

    const CERTS: &str = concat!(env!("CARGO_MANIFEST_DIR"), "/tests/certs");

    fn pem(name: &str) -> Vec<u8> {
        std::fs::read(format!("{CERTS}/{name}")).unwrap()
    }

    fn pair(cert: &str, key: &str) -> PemPair {
        PemPair {
            cert: pem(cert),
            key: pem(key),
        }
    }

    fn check(p: &PemPair) -> Result<CertifiedKey, TlsError> {
        let provider = rustls::crypto::ring::default_provider();
        certified_key(p, Path::new("cert.pem"), Path::new("key.pem"), &provider)
    }

    /// A directory holding cert.pem/key.pem copied from the named test files, and a config naming them.
    fn dir_with(cert: &str, key: &str) -> (tempfile::TempDir, TlsConfig) {
        let dir = tempfile::tempdir().unwrap();
        std::fs::write(dir.path().join("cert.pem"), pem(cert)).unwrap();
        std::fs::write(dir.path().join("key.pem"), pem(key)).unwrap();
        let cfg = TlsConfig {
            cert_file: dir.path().join("cert.pem"),
            key_file: dir.path().join("key.pem"),
            min_version: TlsVersion::Tls12,
            handshake_timeout: Duration::from_secs(3),
            redirect: None,
            reload_interval: Some(Duration::from_secs(5)),
        };
        (dir, cfg)
    }

    fn client_config(
        versions: &[&'static rustls::SupportedProtocolVersion],
        alpn: &[&[u8]],
    ) -> Arc<rustls::ClientConfig> {
        let mut roots = rustls::RootCertStore::empty();
        for c in rustls_pemfile::certs(&mut pem("ca.pem").as_slice()) {
            roots.add(c.unwrap()).unwrap();
        }
        let mut c = rustls::ClientConfig::builder_with_provider(Arc::new(
            rustls::crypto::ring::default_provider(),
        ))
        .with_protocol_versions(versions)
        .unwrap()
        .with_root_certificates(roots)
        .with_no_client_auth();
        c.alpn_protocols = alpn.iter().map(|p| p.to_vec()).collect();
        Arc::new(c)
    }

    fn modern() -> Arc<rustls::ClientConfig> {
        client_config(rustls::ALL_VERSIONS, &[b"h2", b"http/1.1"])
    }

    type ClientStream = tokio_rustls::client::TlsStream<tokio::io::DuplexStream>;

    /// Handshake an in-memory client against `tls`; the server side is returned still wrapped.
    async fn connect(
        tls: &ServerTls,
        client: Arc<rustls::ClientConfig>,
        pipe_bytes: usize,
    ) -> Result<(ClientStream, TlsIo<TlsStream<tokio::io::DuplexStream>>), String> {
        let (c, s) = tokio::io::duplex(pipe_bytes);
        let connector = tokio_rustls::TlsConnector::from(client);
        let name = ServerName::try_from("localhost").unwrap();
        let (c, s) = tokio::join!(connector.connect(name, c), tls.accept(s));
        match (c, s) {
            (Ok(c), Ok(s)) => Ok((c, s)),
            (c, s) => Err(format!("client {:?} / server {:?}", c.err(), s.err())),
        }
    }

    #[test]
    fn ecdsa_and_rsa_pairs_load() {
        let ec = check(&pair("server.pem", "server.key")).unwrap();
        let rsa = check(&pair("server-rsa.pem", "server-rsa.key")).unwrap();
        assert_ne!(leaf_sha256(&ec), leaf_sha256(&rsa));
        assert_eq!(leaf_sha256(&ec).len(), 64);
    }

    #[test]
    fn mismatched_key_names_the_key_file() {
        let e = check(&pair("server2.pem", "server.key")).unwrap_err();
        assert_eq!(e.field, "tls.key_file");
        assert!(e.problem.contains("does not match"), "{e}");
        let e = check(&pair("server.pem", "server-rsa.key")).unwrap_err();
        assert_eq!(e.field, "tls.key_file", "{e}");
    }

    #[test]
    fn bad_pem_is_reported_per_file() {
        let good_key = pem("server.key");
        for (cert, key, field, words) in [
            (b"not a certificate".to_vec(), good_key.clone(), "tls.cert_file", "no PEM certificate"),
            (pem("server.pem"), b"".to_vec(), "tls.key_file", "no PEM private key"),
            // The key file given as the certificate and the other way round.
            (pem("server.key"), pem("server.pem"), "tls.cert_file", "no PEM certificate"),
            (
                pem("server.pem"),
                b"-----BEGIN ENCRYPTED PRIVATE KEY-----\nAAAA\n-----END ENCRYPTED PRIVATE KEY-----\n".to_vec(),
                "tls.key_file",
                "encrypted",
            ),
            (
                b"-----BEGIN CERTIFICATE-----\n!!!!\n-----END CERTIFICATE-----\n".to_vec(),
                good_key.clone(),
                "tls.cert_file",
                "bad PEM",
            ),
            (
                b"-----BEGIN CERTIFICATE-----\nAAECAwQF\n-----END CERTIFICATE-----\n".to_vec(),
                good_key.clone(),
                "tls.cert_file",
                "cannot be parsed",
            ),
        ] {
            let e = check(&PemPair { cert, key }).unwrap_err();
            assert_eq!(e.field, field, "{e}");
            assert!(e.problem.contains(words), "{e}");
            let shown = e.to_string();
            assert!(shown.starts_with(&format!("field `{field}`: ")), "{shown}");
        }
    }

    #[test]
    fn load_names_a_missing_file() {
        let (dir, mut cfg) = dir_with("server.pem", "server.key");
        cfg.key_file = dir.path().join("absent.key");
        let e = ServerTls::load(&cfg).err().unwrap();
        assert_eq!(e.field, "tls.key_file");
        assert!(e.to_string().contains("absent.key"), "{e}");
    }

    #[test]
    fn reload_swaps_good_pairs_and_keeps_the_old_one_on_bad_ones() {
        let (dir, cfg) = dir_with("server.pem", "server.key");
        let tls = ServerTls::load(&cfg).unwrap();
        let first = tls.cert_sha256();
        assert_eq!(tls.reload(Trigger::Poll), Reload::Unchanged);
        assert_eq!(tls.reload(Trigger::Signal), Reload::Unchanged);

        std::fs::write(&cfg.cert_file, pem("server2.pem")).unwrap();
        // Half-way through a renewal: new certificate, old key. Reported, and the old pair stays.
        let Reload::Failed(e) = tls.reload(Trigger::Poll) else {
            panic!("a mismatched pair must fail")
        };
        assert_eq!(e.field, "tls.key_file");
        assert_eq!(tls.cert_sha256(), first);
        // The same bad files are not reported again by the poll, but are when the operator asks.
        assert_eq!(tls.reload(Trigger::Poll), Reload::Unchanged);
        assert!(matches!(tls.reload(Trigger::Signal), Reload::Failed(_)));

        std::fs::write(&cfg.key_file, pem("server2.key")).unwrap();
        let Reload::Reloaded { sha256 } = tls.reload(Trigger::Poll) else {
            panic!("a good new pair must load")
        };
        assert_ne!(sha256, first);
        assert_eq!(tls.cert_sha256(), sha256);
        assert_eq!(tls.reload(Trigger::Poll), Reload::Unchanged);

        // A vanished file: reported once, the certificate in force stays.
        std::fs::remove_file(&cfg.cert_file).unwrap();
        assert!(matches!(tls.reload(Trigger::Poll), Reload::Failed(_)));
        assert_eq!(tls.reload(Trigger::Poll), Reload::Unchanged);
        assert_eq!(tls.cert_sha256(), sha256);

        // Switching key type on reload (ECDSA to RSA) is fine.
        std::fs::write(&cfg.cert_file, pem("server-rsa.pem")).unwrap();
        std::fs::write(&cfg.key_file, pem("server-rsa.key")).unwrap();
        assert!(matches!(tls.reload(Trigger::Poll), Reload::Reloaded { .. }));
        drop(dir);
    }

    #[tokio::test]
    async fn handshake_negotiates_http11_and_serves_the_current_cert() {
        let (_dir, cfg) = dir_with("server.pem", "server.key");
        let tls = ServerTls::load(&cfg).unwrap();
        let (c, _s) = connect(&tls, modern(), 64 * 1024).await.unwrap();
        assert_eq!(c.get_ref().1.alpn_protocol(), Some(&b"http/1.1"[..]));
        let leaf = c.get_ref().1.peer_certificates().unwrap()[0].clone();
        assert_eq!(leaf.as_ref(), tls.current.get().cert[0].as_ref());

        std::fs::write(&cfg.cert_file, pem("server2.pem")).unwrap();
        std::fs::write(&cfg.key_file, pem("server2.key")).unwrap();
        assert!(matches!(
            tls.reload(Trigger::Signal),
            Reload::Reloaded { .. }
        ));
        let (c2, _s2) = connect(&tls, modern(), 64 * 1024).await.unwrap();
        let leaf2 = c2.get_ref().1.peer_certificates().unwrap()[0].clone();
        assert_ne!(leaf2.as_ref(), leaf.as_ref());
    }

    #[tokio::test]
    async fn min_version_and_alpn_refusals() {
        let (_dir, mut cfg) = dir_with("server-rsa.pem", "server-rsa.key");
        let tls12_only = client_config(&[&rustls::version::TLS12], &[b"http/1.1"]);
        let tls = ServerTls::load(&cfg).unwrap();
        let (c, _s) = connect(&tls, tls12_only.clone(), 64 * 1024).await.unwrap();
        assert_eq!(
            c.get_ref().1.protocol_version(),
            Some(rustls::ProtocolVersion::TLSv1_2)
        );
        cfg.min_version = TlsVersion::Tls13;
        let tls13 = ServerTls::load(&cfg).unwrap();
        assert!(connect(&tls13, tls12_only, 64 * 1024).await.is_err());
        let (c, _s) = connect(&tls13, modern(), 64 * 1024).await.unwrap();
        assert_eq!(
            c.get_ref().1.protocol_version(),
            Some(rustls::ProtocolVersion::TLSv1_3)
        );
        // A client that can only speak h2 must not be handed HTTP/1.1.
        let h2_only = client_config(rustls::ALL_VERSIONS, &[b"h2"]);
        assert!(connect(&tls, h2_only, 64 * 1024).await.is_err());
        // No ALPN at all is fine: plenty of HTTP/1.1 clients never send it.
        let (c, _s) = connect(&tls, client_config(rustls::ALL_VERSIONS, &[]), 64 * 1024)
            .await
            .unwrap();
        assert_eq!(c.get_ref().1.alpn_protocol(), None);
    }

    #[tokio::test]
    async fn sessions_resume_with_tls12_and_tls13_across_a_reload() {
        use rustls::HandshakeKind;
        let (_dir, cfg) = dir_with("server.pem", "server.key");
        let tls = ServerTls::load(&cfg).unwrap();
        for versions in [
            &[&rustls::version::TLS12][..],
            &[&rustls::version::TLS13][..],
        ] {
            let client = client_config(versions, &[b"http/1.1"]);
            let mut kinds = Vec::new();
            for round in 0..3 {
                if round == 2 {
                    assert!(matches!(tls.reload(Trigger::Signal), Reload::Unchanged));
                }
                let (mut c, mut s) = connect(&tls, client.clone(), 64 * 1024).await.unwrap();
                kinds.push(c.get_ref().1.handshake_kind());
                // Exchange bytes so the TLS 1.3 tickets (sent after the handshake) reach the client.
                s.write_all(b"ping").await.unwrap();
                let mut b = [0u8; 4];
                c.read_exact(&mut b).await.unwrap();
            }
            assert_eq!(
                kinds,
                [
                    Some(HandshakeKind::Full),
                    Some(HandshakeKind::Resumed),
                    Some(HandshakeKind::Resumed)
                ],
                "{versions:?}"
            );
        }
    }

    #[tokio::test(start_paused = true)]
    async fn a_silent_client_is_cut_off_after_the_handshake_timeout() {
        let (_dir, cfg) = dir_with("server.pem", "server.key");
        let tls = ServerTls::load(&cfg).unwrap();
        let (_client, server) = tokio::io::duplex(1024);
        let started = tokio::time::Instant::now();
        let r = tls.accept(server).await;
        assert!(matches!(r, Err(HandshakeError::Timeout)), "{:?}", r.err());
        assert_eq!(started.elapsed(), Duration::from_secs(3));
    }

    #[tokio::test]
    async fn plain_http_on_the_tls_port_fails_the_handshake() {
        let (_dir, cfg) = dir_with("server.pem", "server.key");
        let tls = ServerTls::load(&cfg).unwrap();
        let (mut client, server) = tokio::io::duplex(4096);
        client
            .write_all(b"GET / HTTP/1.1\r\nhost: x\r\n\r\n")
            .await
            .unwrap();
        assert!(matches!(
            tls.accept(server).await,
            Err(HandshakeError::Failed(_))
        ));
    }

    /// The regression `TlsIo` exists for: a response larger than the socket can take at once, written
    /// while the client is slow, must arrive in full although the server only reads afterwards.
    #[tokio::test]
    async fn a_written_response_drains_while_the_server_waits_to_read() {
        let (_dir, cfg) = dir_with("server.pem", "server.key");
        let tls = ServerTls::load(&cfg).unwrap();
        // A 2 KiB pipe: far smaller than the response, like a full socket buffer.
        let (mut c, mut s) = connect(&tls, modern(), 2048).await.unwrap();
        let body = vec![b'x'; 200 * 1024];
        let server = tokio::spawn(async move {
            s.write_all(&body).await.unwrap();
            // Then wait for the next request, as the connection loop does after a response.
            let mut b = [0u8; 5];
            s.read_exact(&mut b).await.unwrap();
            b
        });
        let mut got = vec![0u8; 200 * 1024];
        tokio::time::timeout(Duration::from_secs(10), c.read_exact(&mut got))
            .await
            .expect("the whole response arrives")
            .unwrap();
        assert!(got.iter().all(|&b| b == b'x'));
        c.write_all(b"next!").await.unwrap();
        assert_eq!(&server.await.unwrap(), b"next!");
    }
}
