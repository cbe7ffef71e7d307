//! HTTPS served by the relay binary itself (issue 6): real sockets on 127.0.0.1, the committed test CA
//! (`tests/certs`), and the relay started through the shared harness with a `tls` section. Covers ECDSA
//! and RSA certificates, the minimum version, certificate reload on file change and on SIGHUP while
//! an open connection keeps working, a bad new certificate keeping the old one, the plain-to-HTTPS
//! redirect, the handshake timeout, session resumption and start-up errors naming file and field.

mod common;

use std::io::{BufRead, BufReader};
use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::sync::Arc;
use std::time::{Duration, Instant};

use common::{read_response, test_config, MockUpstream, Relay, Resp, CERTS};
use rustls::pki_types::ServerName;
use serde_json::{json, Value};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;
use tokio_rustls::client::TlsStream;
use tokio_rustls::TlsConnector;

const CHAT: &str = r#"{"model":"gpt-4o-mini","messages":[{"role":"user","content":"hi"}]}"#;
/// Longest wait for a reload to show; the tests poll the files every second.
const RELOAD_WAIT: Duration = Duration::from_secs(15);

/// A directory holding `cert.pem` and `key.pem`, copied from one of the committed test pairs.
struct CertDir {
    dir: tempfile::TempDir,
}

impl CertDir {
    fn new(pair: &str) -> CertDir {
        let c = CertDir {
            dir: tempfile::tempdir().unwrap(),
        };
        c.install(pair);
        c
    }
    fn cert(&self) -> PathBuf {
        self.dir.path().join("cert.pem")
    }
    fn key(&self) -> PathBuf {
        self.dir.path().join("key.pem")
    }
    /// Replace one file at once (write aside, rename over), so a poll never sees it half-written.
    fn replace(&self, to: &Path, bytes: &[u8]) {
        let tmp = self.dir.path().join("replacement.tmp");
        std::fs::write(&tmp, bytes).unwrap();
        std::fs::rename(&tmp, to).unwrap();
    }
    /// Replace both files the way renewal tools do: write aside, then rename over (key first, so a
    /// poll between the two renames sees a mismatched pair, which must be refused, not served).
    fn install(&self, pair: &str) {
        for (ext, to) in [("key", self.key()), ("pem", self.cert())] {
            let tmp = self.dir.path().join(format!("new.{ext}"));
            std::fs::copy(format!("{CERTS}/{pair}.{ext}"), &tmp).unwrap();
            std::fs::rename(&tmp, to).unwrap();
        }
    }
}

/// The test config with a `tls` section over `certs`; `extra` overrides `tls` fields.
fn tls_config(up: &MockUpstream, certs: &CertDir, extra: Value) -> Value {
    let mut cfg = test_config(up);
    let mut tls = json!({
        "cert_file": certs.cert(),
        "key_file": certs.key(),
        "reload_interval": 1,
        "handshake_timeout": 5,
    });
    for (k, v) in extra.as_object().unwrap() {
        tls[k] = v.clone();
    }
    cfg["tls"] = tls;
    cfg
}

async fn start(certs: &CertDir, extra: Value) -> (MockUpstream, Relay) {
    let up = MockUpstream::start(false).await;
    let relay = Relay::start(tls_config(&up, certs, extra));
    (up, relay)
}

fn read_cert_file(name: &str) -> Vec<u8> {
    std::fs::read(format!("{CERTS}/{name}")).unwrap()
}

fn ca_roots() -> rustls::RootCertStore {
    let mut roots = rustls::RootCertStore::empty();
    let pem = read_cert_file("ca.pem");
    for c in rustls_pemfile::certs(&mut pem.as_slice()) {
        roots.add(c.unwrap()).unwrap();
    }
    roots
}

/// A client trusting only the test CA. Each call makes a fresh session cache, so no resumption
/// crosses from one test step to the next unless a test shares the connector on purpose.
fn connector(versions: &[&'static rustls::SupportedProtocolVersion]) -> TlsConnector {
    let provider = Arc::new(rustls::crypto::ring::default_provider());
    let mut c = rustls::ClientConfig::builder_with_provider(provider)
        .with_protocol_versions(versions)
        .unwrap()
        .with_root_certificates(ca_roots())
        .with_no_client_auth();
    c.alpn_protocols = vec![b"h2".to_vec(), b"http/1.1".to_vec()];
    TlsConnector::from(Arc::new(c))
}

fn any_version() -> TlsConnector {
    connector(rustls::ALL_VERSIONS)
}

async fn tls_connect(addr: SocketAddr, c: &TlsConnector) -> std::io::Result<TlsStream<TcpStream>> {
    let tcp = TcpStream::connect(addr).await?;
    let name = ServerName::try_from("localhost").unwrap();
    tokio::time::timeout(Duration::from_secs(10), c.connect(name, tcp))
        .await
        .map_err(|_| std::io::Error::new(std::io::ErrorKind::TimedOut, "handshake"))?
}

/// The serial number of the certificate the server presented (a small DER walk: Certificate ->
/// tbsCertificate -> optional [0] version -> serialNumber).
fn serial(s: &TlsStream<TcpStream>) -> u64 {
    let der = s.get_ref().1.peer_certificates().unwrap()[0]
        .as_ref()
        .to_vec();
    fn header(b: &[u8]) -> (u8, usize, usize) {
        let (tag, first) = (b[0], b[1] as usize);
        if first < 0x80 {
            return (tag, 2, first);
        }
        let n = first & 0x7f;
        let len = b[2..2 + n].iter().fold(0usize, |a, &x| a << 8 | x as usize);
        (tag, 2 + n, len)
    }
    let (_, h, _) = header(&der); // Certificate SEQUENCE
    let tbs = &der[h..];
    let (_, h, _) = header(tbs); // tbsCertificate SEQUENCE
    let mut rest = &tbs[h..];
    let (tag, h, len) = header(rest);
    if tag == 0xa0 {
        rest = &rest[h + len..];
    }
    let (tag, h, len) = header(rest);
    assert_eq!(tag, 0x02, "serialNumber is an INTEGER");
    rest[h..h + len]
        .iter()
        .fold(0u64, |a, &x| a << 8 | x as u64)
}

/// Serial of the certificate a fresh connection is given.
async fn served_serial(addr: SocketAddr) -> u64 {
    serial(&tls_connect(addr, &any_version()).await.unwrap())
}

/// Wait until fresh connections are given `want`, or fail after `RELOAD_WAIT`.
async fn wait_for_serial(relay: &Relay, want: u64) {
    let deadline = Instant::now() + RELOAD_WAIT;
    loop {
        let got = served_serial(relay.addr).await;
        if got == want {
            return;
        }
        assert!(
            Instant::now() < deadline,
            "still serving {got}, expected {want}; logs:\n{}",
            relay.all_logs()
        );
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
}

async fn wait_for_log(relay: &Relay, needle: &str, count: usize) {
    let deadline = Instant::now() + RELOAD_WAIT;
    while relay.all_logs().matches(needle).count() < count {
        assert!(
            Instant::now() < deadline,
            "no {needle:?} (x{count}) in logs:\n{}",
            relay.all_logs()
        );
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
}

/// One request on an open stream; `buf` keeps bytes that arrived after the response.
async fn send(
    s: &mut TlsStream<TcpStream>,
    buf: &mut Vec<u8>,
    method: &str,
    target: &str,
    body: &str,
) -> Resp {
    let req = format!(
        "{method} {target} HTTP/1.1\r\nhost: localhost\r\ncontent-type: application/json\r\ncontent-length: {}\r\n\r\n{body}",
        body.len()
    );
    s.write_all(req.as_bytes()).await.unwrap();
    read_response(s, buf, method == "HEAD")
        .await
        .expect("a response")
}

fn signal(relay: &Relay, sig: &str) {
    let ok = Command::new("kill")
        .arg(format!("-{sig}"))
        .arg(relay.child.id().to_string())
        .status()
        .unwrap()
        .success();
    assert!(ok, "kill -{sig}");
}

fn still_running(relay: &mut Relay) -> bool {
    relay.child.try_wait().unwrap().is_none()
}

#[tokio::test]
async fn ecdsa_certificate_serves_health_proxy_and_streams_over_one_connection() {
    let certs = CertDir::new("server");
    let (up, relay) = start(&certs, json!({})).await;
    let mut s = tls_connect(relay.addr, &any_version()).await.unwrap();
    assert_eq!(serial(&s), 1001);
    let conn = s.get_ref().1;
    assert_eq!(conn.alpn_protocol(), Some(&b"http/1.1"[..]));
    assert_eq!(
        conn.negotiated_cipher_suite().unwrap().version().version,
        rustls::ProtocolVersion::TLSv1_3
    );

    let mut buf = Vec::new();
    let health = send(&mut s, &mut buf, "GET", "/health", "").await;
    assert_eq!(health.status, 200, "{}", health.text());

    // Keep-alive on the same TLS connection: a proxied call, then a streamed one.
    let t = relay.token("openai", None);
    let r = send(
        &mut s,
        &mut buf,
        "POST",
        &format!("/relayapi/{t}/chat/completions"),
        CHAT,
    )
    .await;
    assert_eq!(r.status, 200, "{}", r.text());
    assert_eq!(
        r.json()["choices"][0]["message"]["content"],
        "hello from mock"
    );
    let stream_body = r#"{"model":"gpt-4o-mini","stream":true,"messages":[]}"#;
    let r = send(
        &mut s,
        &mut buf,
        "POST",
        &format!("/relayapi/{t}/chat/completions"),
        stream_body,
    )
    .await;
    assert_eq!(r.status, 200);
    let text = r.text();
    for part in ["part0", "part1", "part2", "data: [DONE]"] {
        assert!(text.contains(part), "{part} missing in {text}");
    }
    assert_eq!(up.count(), 2);
    // The real key went upstream, over the relay's own leg.
    assert_eq!(
        up.requests()[0].header("authorization"),
        Some(format!("Bearer {}", common::FAKE_KEY).as_str())
    );
}

#[tokio::test]
async fn rsa_certificate_and_tls12_clients() {
    let certs = CertDir::new("server-rsa");
    let (_up, relay) = start(&certs, json!({})).await;
    let mut s = tls_connect(relay.addr, &connector(&[&rustls::version::TLS12]))
        .await
        .unwrap();
    assert_eq!(serial(&s), 1002);
    assert_eq!(
        s.get_ref().1.protocol_version(),
        Some(rustls::ProtocolVersion::TLSv1_2)
    );
    let mut buf = Vec::new();
    assert_eq!(
        send(&mut s, &mut buf, "GET", "/health", "").await.status,
        200
    );
}

#[tokio::test]
async fn min_version_13_refuses_tls12_clients() {
    let certs = CertDir::new("server");
    let (_up, relay) = start(&certs, json!({"min_version": "1.3"})).await;
    assert!(
        tls_connect(relay.addr, &connector(&[&rustls::version::TLS12]))
            .await
            .is_err(),
        "a TLS 1.2-only client must be refused"
    );
    let s = tls_connect(relay.addr, &connector(&[&rustls::version::TLS13]))
        .await
        .unwrap();
    assert_eq!(
        s.get_ref().1.protocol_version(),
        Some(rustls::ProtocolVersion::TLSv1_3)
    );
}

#[tokio::test]
async fn sessions_resume_on_the_relay() {
    let certs = CertDir::new("server");
    let (_up, relay) = start(&certs, json!({})).await;
    for versions in [
        &[&rustls::version::TLS12][..],
        &[&rustls::version::TLS13][..],
    ] {
        let c = connector(versions);
        let mut kinds = Vec::new();
        for _ in 0..2 {
            let mut s = tls_connect(relay.addr, &c).await.unwrap();
            kinds.push(s.get_ref().1.handshake_kind());
            // A full exchange, so TLS 1.3 tickets (sent after the handshake) reach the client.
            let mut buf = Vec::new();
            assert_eq!(
                send(&mut s, &mut buf, "GET", "/health", "").await.status,
                200
            );
        }
        assert_eq!(
            kinds,
            [
                Some(rustls::HandshakeKind::Full),
                Some(rustls::HandshakeKind::Resumed)
            ],
            "{versions:?}"
        );
    }
}

#[tokio::test]
async fn changed_files_reload_without_restart_while_an_open_connection_keeps_working() {
    let certs = CertDir::new("server");
    let (_up, mut relay) = start(&certs, json!({"reload_interval": 1})).await;
    let mut open = tls_connect(relay.addr, &any_version()).await.unwrap();
    assert_eq!(serial(&open), 1001);
    let mut buf = Vec::new();
    assert_eq!(
        send(&mut open, &mut buf, "GET", "/health", "").await.status,
        200
    );

    certs.install("server2");
    wait_for_serial(&relay, 1003).await;
    wait_for_log(&relay, "\"trigger\":\"file_change\"", 1).await;
    assert!(relay.all_logs().contains("TLS certificate reloaded"));

    // The connection opened before the reload still works, on the session it negotiated.
    let r = send(&mut open, &mut buf, "GET", "/health", "").await;
    assert_eq!(r.status, 200);
    assert_eq!(serial(&open), 1001);
    assert!(still_running(&mut relay), "the relay restarted");
}

#[tokio::test]
async fn sighup_reloads_the_certificate() {
    let certs = CertDir::new("server");
    // Polling off: only the signal can cause the reload.
    let (_up, mut relay) = start(&certs, json!({"reload_interval": 0})).await;
    let mut open = tls_connect(relay.addr, &any_version()).await.unwrap();
    certs.install("server2");
    tokio::time::sleep(Duration::from_millis(1500)).await;
    assert_eq!(
        served_serial(relay.addr).await,
        1001,
        "reloaded without SIGHUP"
    );

    signal(&relay, "HUP");
    wait_for_serial(&relay, 1003).await;
    wait_for_log(&relay, "\"trigger\":\"sighup\"", 1).await;
    let mut buf = Vec::new();
    assert_eq!(
        send(&mut open, &mut buf, "GET", "/health", "").await.status,
        200
    );
    // A second SIGHUP with nothing new says so and changes nothing.
    signal(&relay, "HUP");
    wait_for_log(&relay, "TLS certificate unchanged", 1).await;
    assert_eq!(served_serial(relay.addr).await, 1003);
    assert!(still_running(&mut relay));
}

#[tokio::test]
async fn a_bad_new_certificate_is_reported_and_the_old_one_stays() {
    let certs = CertDir::new("server");
    let (_up, mut relay) = start(&certs, json!({"reload_interval": 1})).await;
    let failed = "TLS certificate reload failed";

    certs.replace(&certs.cert(), b"-----BEGIN CERTIFICATE-----\nnot base64!\n");
    wait_for_log(&relay, failed, 1).await;
    assert!(
        relay.all_logs().contains("field `tls.cert_file`"),
        "{}",
        relay.all_logs()
    );
    assert_eq!(served_serial(relay.addr).await, 1001);

    // A certificate whose key is not the one in key.pem.
    certs.replace(&certs.cert(), &read_cert_file("server2.pem"));
    wait_for_log(&relay, failed, 2).await;
    assert!(
        relay.all_logs().contains("does not match"),
        "{}",
        relay.all_logs()
    );
    assert_eq!(served_serial(relay.addr).await, 1001);
    // Reported once per bad pair, not at every poll.
    tokio::time::sleep(Duration::from_millis(2500)).await;
    assert_eq!(relay.all_logs().matches(failed).count(), 2);

    // SIGHUP with the same bad files: reported again (the operator asked), still the old one.
    signal(&relay, "HUP");
    wait_for_log(&relay, failed, 3).await;
    assert_eq!(served_serial(relay.addr).await, 1001);

    // The matching key arrives: the new pair goes into force.
    certs.replace(&certs.key(), &read_cert_file("server2.key"));
    wait_for_serial(&relay, 1003).await;
    assert!(still_running(&mut relay));
}

#[tokio::test]
async fn a_client_stalling_in_the_handshake_is_cut_off() {
    let certs = CertDir::new("server");
    let (_up, relay) = start(&certs, json!({"handshake_timeout": 1})).await;
    // Silent after connecting, and stuck half-way through a ClientHello record header.
    for first_bytes in [&b""[..], &[0x16, 0x03, 0x01, 0x02, 0x00, 0x01][..]] {
        let mut s = TcpStream::connect(relay.addr).await.unwrap();
        s.write_all(first_bytes).await.unwrap();
        let started = Instant::now();
        let mut tmp = [0u8; 64];
        let r = tokio::time::timeout(Duration::from_secs(10), s.read(&mut tmp))
            .await
            .expect("the relay must close a stalled handshake");
        assert!(matches!(r, Ok(0) | Err(_)), "{r:?}");
        let waited = started.elapsed();
        assert!(
            waited >= Duration::from_millis(800) && waited < Duration::from_secs(5),
            "cut off after {waited:?}"
        );
    }
    // Others are served meanwhile and afterwards.
    assert_eq!(served_serial(relay.addr).await, 1001);
}

#[tokio::test]
async fn plain_http_on_the_https_port_gets_no_http_answer() {
    let certs = CertDir::new("server");
    let (_up, relay) = start(&certs, json!({})).await;
    let mut s = TcpStream::connect(relay.addr).await.unwrap();
    s.write_all(b"GET /health HTTP/1.1\r\nHost: x\r\n\r\n")
        .await
        .unwrap();
    let mut got = Vec::new();
    let _ = tokio::time::timeout(Duration::from_secs(10), s.read_to_end(&mut got)).await;
    assert!(!got.starts_with(b"HTTP/"), "{got:?}");
}

/// The address the redirect listener logged.
async fn redirect_addr(relay: &Relay) -> SocketAddr {
    wait_for_log(relay, "redirect listening", 1).await;
    let logs = relay.stderr.lock().unwrap().clone();
    let line = logs
        .iter()
        .find(|l| l.contains("redirect listening"))
        .unwrap();
    let v: Value = serde_json::from_str(line).unwrap();
    v["addr"].as_str().unwrap().parse().unwrap()
}

#[tokio::test]
async fn plain_port_redirects_every_request_to_https() {
    let certs = CertDir::new("server");
    let (up, relay) = start(&certs, json!({"redirect_http_port": 0})).await;
    let plain = redirect_addr(&relay).await;
    let https_port = relay.addr.port();

    let mut s = TcpStream::connect(plain).await.unwrap();
    s.write_all(
        b"GET /relayapi/x/chat/completions?a=1 HTTP/1.1\r\nHost: relay.example.com\r\n\r\n",
    )
    .await
    .unwrap();
    let mut buf = Vec::new();
    let r = read_response(&mut s, &mut buf, false).await.unwrap();
    assert_eq!(r.status, 308);
    // The configured name (here server.host, as no tls.redirect_host is set), never the client's Host.
    assert_eq!(
        r.header("location"),
        Some(format!("https://127.0.0.1:{https_port}/relayapi/x/chat/completions?a=1").as_str())
    );
    assert_eq!(r.header("connection"), Some("close"));
    assert!(common::closed_by_peer(&mut s).await);

    // A POST with a body gets its 308 (method and body kept by the client), never reaching upstream.
    let t = relay.token("openai", None);
    let post = format!(
        "POST /relayapi/{t}/chat/completions HTTP/1.1\r\nHost: 127.0.0.1:80\r\ncontent-length: {}\r\n\r\n{CHAT}",
        CHAT.len()
    );
    let r = common::raw(plain, post.as_bytes()).await.unwrap();
    assert_eq!(r.status, 308);
    let location = r.header("location").unwrap().to_string();
    assert_eq!(
        location,
        format!("https://127.0.0.1:{https_port}/relayapi/{t}/chat/completions")
    );
    assert_eq!(up.count(), 0);

    // Following it to the HTTPS listener works.
    let mut s = tls_connect(relay.addr, &any_version()).await.unwrap();
    let mut buf = Vec::new();
    let r = send(
        &mut s,
        &mut buf,
        "POST",
        location
            .strip_prefix(&format!("https://127.0.0.1:{https_port}"))
            .unwrap(),
        CHAT,
    )
    .await;
    assert_eq!(r.status, 200);

    // Heads are parsed as strictly as on the main listener; refusals are 400 and close.
    for bad in [
        &b"GET / HTTP/1.1\nHost: relay.example.com\n\n"[..],
        b"GET / HTTP/1.1\r\nHost: a\r\nHost: b\r\n\r\n",
        b"OPTIONS * HTTP/1.1\r\nHost: relay.example.com\r\n\r\n",
    ] {
        let mut s = TcpStream::connect(plain).await.unwrap();
        s.write_all(bad).await.unwrap();
        let mut buf = Vec::new();
        let r = read_response(&mut s, &mut buf, false).await.unwrap();
        assert_eq!(r.status, 400, "{:?}", String::from_utf8_lossy(bad));
        assert!(r.header("location").is_none());
        assert!(common::closed_by_peer(&mut s).await);
    }
}

/// Issue 9, finding 13: the redirect listener puts the configured name in `Location`, whatever `Host`
/// the client sends (a reflected Host makes the relay an open redirector).
#[tokio::test]
async fn redirect_location_uses_the_configured_name_never_the_host_header() {
    let certs = CertDir::new("server");
    let (_up, relay) = start(
        &certs,
        json!({"redirect_http_port": 0, "redirect_host": "relay.example.com"}),
    )
    .await;
    let plain = redirect_addr(&relay).await;
    let https_port = relay.addr.port();
    for req in [
        &b"GET /health HTTP/1.1\r\nHost: evil.example\r\n\r\n"[..],
        b"GET /health HTTP/1.1\r\nHost: evil.example:443\r\n\r\n",
        b"GET /health HTTP/1.1\r\nHost: 203.0.113.66\r\n\r\n",
        b"GET /health HTTP/1.0\r\n\r\n",
    ] {
        let r = common::raw(plain, req).await.unwrap();
        assert_eq!(r.status, 308, "{:?}", String::from_utf8_lossy(req));
        assert_eq!(
            r.header("location"),
            Some(format!("https://relay.example.com:{https_port}/health").as_str())
        );
    }
}

#[tokio::test]
async fn sighup_without_tls_reloads_the_keys_and_is_not_fatal() {
    let up = MockUpstream::start(false).await;
    let mut relay = Relay::start(test_config(&up));
    signal(&relay, "HUP");
    // Keys reload on SIGHUP whether or not TLS is set (tests/keys_reload.rs has the rest).
    wait_for_log(&relay, "\"msg\":\"keys reloaded\"", 1).await;
    assert!(still_running(&mut relay));
    let r = common::request(relay.addr, "GET", "/health", &[], "").await;
    assert_eq!(r.status, 200);
}

/// Start the binary on `config` in `dir` (with a fresh .rai) and return its exit status and stderr if
/// it exits, or `None` once it says it is listening (it is then killed).
fn run_binary(dir: &Path, config: &Value) -> Option<(i32, String)> {
    let cfg_path = dir.join("config.json");
    std::fs::write(&cfg_path, serde_json::to_vec_pretty(config).unwrap()).unwrap();
    let mut rng = relayapi::token::format::os_rng();
    let r = relayapi::token::rai::generate_rai("https", "127.0.0.1", 443, "acme", "k1", &mut rng);
    let rai_path = dir.join("test.rai");
    std::fs::write(&rai_path, relayapi::token::rai::to_json_pretty(&r)).unwrap();
    // Started from another directory, so relative paths can only work if taken from config.json's.
    let mut child = Command::new(env!("CARGO_BIN_EXE_relayapi"))
        .current_dir(std::env::temp_dir())
        .arg("--config")
        .arg(&cfg_path)
        .arg("--rai")
        .arg(&rai_path)
        .stdout(Stdio::null())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    let mut err = String::new();
    for line in BufReader::new(child.stderr.take().unwrap())
        .lines()
        .map_while(Result::ok)
    {
        if line.contains("\"msg\":\"listening\"") {
            let _ = child.kill();
            let _ = child.wait();
            return None;
        }
        err.push_str(&line);
        err.push('\n');
    }
    let status = child.wait().unwrap();
    Some((status.code().unwrap_or(-1), err))
}

#[tokio::test]
async fn start_up_errors_name_the_config_file_the_field_and_the_pem_file() {
    let up = MockUpstream::start(false).await;
    let dir = tempfile::tempdir().unwrap();
    let d = dir.path();
    std::fs::copy(format!("{CERTS}/server.pem"), d.join("good.pem")).unwrap();
    std::fs::copy(format!("{CERTS}/server.key"), d.join("good.key")).unwrap();
    std::fs::copy(format!("{CERTS}/server-rsa.key"), d.join("other.key")).unwrap();
    std::fs::write(d.join("garbage.pem"), "hello\n").unwrap();
    let cfg_file = d.join("config.json").display().to_string();

    for (cert, key, field, file, words) in [
        (
            "garbage.pem",
            "good.key",
            "tls.cert_file",
            "garbage.pem",
            "no PEM certificate",
        ),
        (
            "good.pem",
            "other.key",
            "tls.key_file",
            "other.key",
            "does not match",
        ),
        (
            "good.pem",
            "missing.key",
            "tls.key_file",
            "missing.key",
            "cannot read",
        ),
        (
            "good.key",
            "good.key",
            "tls.cert_file",
            "good.key",
            "no PEM certificate",
        ),
    ] {
        let mut cfg = test_config(&up);
        cfg["tls"] = json!({"cert_file": cert, "key_file": key});
        let (code, err) = run_binary(d, &cfg).expect("the relay must refuse to start");
        assert_eq!(code, 1, "{err}");
        let expected = format!("{cfg_file}: field `{field}`: ");
        assert!(err.contains(&expected), "{expected:?} not in {err}");
        assert!(err.contains(&d.join(file).display().to_string()), "{err}");
        assert!(err.contains(words), "{words:?} not in {err}");
    }

    // Relative paths resolve next to config.json, whatever the working directory.
    let mut cfg = test_config(&up);
    cfg["tls"] = json!({"cert_file": "good.pem", "key_file": "good.key"});
    assert_eq!(run_binary(d, &cfg), None, "the relay should start");

    // The redirect port must differ from the HTTPS one.
    let mut cfg = test_config(&up);
    cfg["server"]["port"] = json!(8443);
    cfg["tls"] =
        json!({"cert_file": "good.pem", "key_file": "good.key", "redirect_http_port": 8443});
    let (code, err) = run_binary(d, &cfg).unwrap();
    assert_eq!(code, 1);
    assert!(err.contains("field `tls.redirect_http_port`"), "{err}");
}
