//! Test harness shared by the integration tests: a real relay process started from the built binary on a
//! free port, a real mock provider on 127.0.0.1 (plain or TLS with the committed test CA) that records
//! what it receives, token minting with the library, and a tiny raw HTTP/1.1 client.
#![allow(dead_code)]

use std::io::{BufRead, BufReader};
use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use relayapi::token::format::{self, Claims};
use relayapi::token::rai;
use relayapi::token::secret::{SecretKey, SecretString};
use serde_json::{json, Value};
use tokio::io::{AsyncRead, AsyncReadExt, AsyncWrite, AsyncWriteExt};
use tokio::net::{TcpListener, TcpStream};
use tokio::sync::Semaphore;

pub const CERTS: &str = concat!(env!("CARGO_MANIFEST_DIR"), "/tests/certs");
pub const FAKE_KEY: &str = "test-provider-key-0001";

// ---------------------------------------------------------------------------------------------------
// Mock provider
// ---------------------------------------------------------------------------------------------------

#[derive(Debug, Clone)]
pub struct Recorded {
    pub method: String,
    pub target: String,
    pub headers: Vec<(String, String)>,
    pub body: Vec<u8>,
}

impl Recorded {
    pub fn header(&self, name: &str) -> Option<&str> {
        self.headers
            .iter()
            .find(|(n, _)| n.eq_ignore_ascii_case(name))
            .map(|(_, v)| v.as_str())
    }
    pub fn json(&self) -> Value {
        serde_json::from_slice(&self.body).unwrap_or(Value::Null)
    }
}

/// A local provider speaking just enough of the OpenAI and Anthropic APIs. Behaviour by path suffix:
/// - `/chat/completions`: JSON answer, or SSE when the body says `"stream": true`; each SSE event after
///   the first waits for a `release()` when the request has the header `x-test-gated: 1`.
/// - `/v1/messages`: Anthropic messages (JSON or SSE).
/// - `/embeddings`, `/images/generations`, `/models`: small JSON answers.
/// - `/hang`: reads the request and never answers (to test timeouts and client aborts).
/// - `/echo-key`: answers with the received auth headers echoed in response headers, and a cookie.
/// - `/close-delimited`: answers without Content-Length and closes.
/// - `/echo-key-partial`: 200 whose reason phrase and `x-debug-*` headers carry pieces of the received
///   key (first 12 bytes, last 9, the middle), plus a harmless `x-safe`.
/// - `/error-echo-auth`: 401 whose JSON body quotes the received auth header whole and in part, the
///   way gateways and debug pages do; `?framing=chunked` sends it chunked with the key split across
///   chunks, `?framing=close` without a length, ending by closing; `?size=N` pads the message to N
///   bytes; `?coding=gzip` labels the body `content-encoding: gzip`.
/// - `/error-plain`: 404 with a JSON body that holds no key (error answers still pass).
pub struct MockUpstream {
    pub addr: SocketAddr,
    pub requests: Arc<Mutex<Vec<Recorded>>>,
    pub gate: Arc<Semaphore>,
    /// Connections accepted and connections that ended (EOF or error seen by the mock).
    pub accepted: Arc<AtomicUsize>,
    pub closed: Arc<AtomicUsize>,
    pub tls: bool,
}

impl MockUpstream {
    pub async fn start(tls: bool) -> MockUpstream {
        let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
        let addr = listener.local_addr().unwrap();
        let m = MockUpstream {
            addr,
            requests: Arc::default(),
            gate: Arc::new(Semaphore::new(0)),
            accepted: Arc::default(),
            closed: Arc::default(),
            tls,
        };
        let acceptor = tls.then(tls_acceptor);
        let (reqs, gate, accepted, closed) = (
            m.requests.clone(),
            m.gate.clone(),
            m.accepted.clone(),
            m.closed.clone(),
        );
        tokio::spawn(async move {
            loop {
                let Ok((sock, _)) = listener.accept().await else {
                    continue;
                };
                accepted.fetch_add(1, Ordering::SeqCst);
                let (reqs, gate, closed, acceptor) =
                    (reqs.clone(), gate.clone(), closed.clone(), acceptor.clone());
                tokio::spawn(async move {
                    match acceptor {
                        Some(a) => {
                            if let Ok(s) = a.accept(sock).await {
                                serve_mock(s, reqs, gate).await;
                            }
                        }
                        None => serve_mock(sock, reqs, gate).await,
                    }
                    closed.fetch_add(1, Ordering::SeqCst);
                });
            }
        });
        m
    }

    pub fn base_url(&self, prefix: &str) -> String {
        format!(
            "{}://{}{prefix}",
            if self.tls { "https" } else { "http" },
            self.addr
        )
    }

    pub fn requests(&self) -> Vec<Recorded> {
        self.requests.lock().unwrap().clone()
    }

    pub fn count(&self) -> usize {
        self.requests.lock().unwrap().len()
    }

    /// Let one gated SSE event go.
    pub fn release(&self) {
        self.gate.add_permits(1);
    }
}

fn tls_acceptor() -> tokio_rustls::TlsAcceptor {
    let certs: Vec<_> = rustls_pemfile::certs(&mut BufReader::new(
        std::fs::File::open(format!("{CERTS}/server.pem")).unwrap(),
    ))
    .map(|c| c.unwrap())
    .collect();
    let key = rustls_pemfile::private_key(&mut BufReader::new(
        std::fs::File::open(format!("{CERTS}/server.key")).unwrap(),
    ))
    .unwrap()
    .unwrap();
    let provider = Arc::new(rustls::crypto::ring::default_provider());
    let cfg = rustls::ServerConfig::builder_with_provider(provider)
        .with_safe_default_protocol_versions()
        .unwrap()
        .with_no_client_auth()
        .with_single_cert(certs, key)
        .unwrap();
    tokio_rustls::TlsAcceptor::from(Arc::new(cfg))
}

async fn serve_mock<S: AsyncRead + AsyncWrite + Unpin>(
    mut s: S,
    reqs: Arc<Mutex<Vec<Recorded>>>,
    gate: Arc<Semaphore>,
) {
    let mut buf = Vec::new();
    loop {
        let Some(rec) = read_request(&mut s, &mut buf).await else {
            return;
        };
        reqs.lock().unwrap().push(rec.clone());
        if !respond_mock(&mut s, &rec, &gate).await {
            return;
        }
    }
}

async fn read_request<S: AsyncRead + Unpin>(s: &mut S, buf: &mut Vec<u8>) -> Option<Recorded> {
    loop {
        let mut headers = [httparse::EMPTY_HEADER; 128];
        let mut req = httparse::Request::new(&mut headers);
        if let Ok(httparse::Status::Complete(n)) = req.parse(buf) {
            let hs: Vec<(String, String)> = req
                .headers
                .iter()
                .map(|h| {
                    (
                        h.name.to_ascii_lowercase(),
                        String::from_utf8_lossy(h.value).into_owned(),
                    )
                })
                .collect();
            let len: usize = hs
                .iter()
                .find(|(n, _)| n == "content-length")
                .map(|(_, v)| v.parse().unwrap())
                .unwrap_or(0);
            let method = req.method.unwrap().to_string();
            let target = req.path.unwrap().to_string();
            let chunked = hs
                .iter()
                .any(|(n, v)| n == "transfer-encoding" && v.eq_ignore_ascii_case("chunked"));
            let (body, end) = if chunked {
                read_chunked(s, buf, n).await?
            } else {
                fill_to(s, buf, n + len).await?;
                (buf[n..n + len].to_vec(), n + len)
            };
            buf.drain(..end);
            return Some(Recorded {
                method,
                target,
                headers: hs,
                body,
            });
        }
        let mut tmp = [0u8; 8192];
        let k = s.read(&mut tmp).await.ok()?;
        if k == 0 {
            return None;
        }
        buf.extend_from_slice(&tmp[..k]);
    }
}

/// Read from `s` until `buf` holds at least `want` bytes; `None` when the peer closes first.
async fn fill_to<S: AsyncRead + Unpin>(s: &mut S, buf: &mut Vec<u8>, want: usize) -> Option<()> {
    while buf.len() < want {
        let mut tmp = [0u8; 64 * 1024];
        let k = s.read(&mut tmp).await.ok()?;
        if k == 0 {
            return None;
        }
        buf.extend_from_slice(&tmp[..k]);
    }
    Some(())
}

/// A chunked request body starting at `buf[start..]`, the way a provider reads one: the decoded
/// payload and where the body ends. Anything off-grammar from the relay fails the test.
async fn read_chunked<S: AsyncRead + Unpin>(
    s: &mut S,
    buf: &mut Vec<u8>,
    start: usize,
) -> Option<(Vec<u8>, usize)> {
    let mut body = Vec::new();
    let mut pos = start;
    loop {
        match httparse::parse_chunk_size(&buf[pos..]).expect("a valid chunk size line") {
            httparse::Status::Complete((line, 0)) => {
                // The relay sends no trailer fields: the last chunk is followed by CRLF.
                fill_to(s, buf, pos + line + 2).await?;
                assert_eq!(&buf[pos + line..pos + line + 2], b"\r\n", "no trailers");
                return Some((body, pos + line + 2));
            }
            httparse::Status::Complete((line, size)) => {
                let data = pos + line;
                let end = data + size as usize;
                fill_to(s, buf, end + 2).await?;
                assert_eq!(&buf[end..end + 2], b"\r\n", "CRLF after chunk data");
                body.extend_from_slice(&buf[data..end]);
                pos = end + 2;
            }
            httparse::Status::Partial => {
                let have = buf.len();
                fill_to(s, buf, have + 1).await?;
            }
        }
    }
}

async fn write_json<S: AsyncWrite + Unpin>(s: &mut S, status: u16, v: Value, extra: &str) -> bool {
    let body = v.to_string();
    let head = format!(
        "HTTP/1.1 {status} X\r\ncontent-type: application/json\r\ncontent-length: {}\r\nx-request-id: mock-1\r\n{extra}\r\n",
        body.len()
    );
    s.write_all(format!("{head}{body}").as_bytes())
        .await
        .is_ok()
}

/// Bodies larger than this are recorded but not parsed by the mock (see `respond_mock`).
const MOCK_PARSE_LIMIT: usize = 1 << 20;

/// The provider key the relay sent, whatever the auth style.
fn received_key(r: &Recorded) -> String {
    let v = r
        .header("authorization")
        .map(|v| v.strip_prefix("Bearer ").unwrap_or(v))
        .or(r.header("x-api-key"))
        .or(r.header("x-goog-api-key"))
        .or(r.header("api-key"))
        .unwrap_or("");
    v.to_string()
}

async fn respond_mock<S: AsyncWrite + AsyncRead + Unpin>(
    s: &mut S,
    r: &Recorded,
    gate: &Semaphore,
) -> bool {
    let path = r.target.split('?').next().unwrap().to_string();
    // Memory tests send bodies of many MiB: parsing those into a tree would cost the test process a GB.
    let body = if r.body.len() > MOCK_PARSE_LIMIT {
        Value::Null
    } else {
        r.json()
    };
    let model = body.get("model").cloned().unwrap_or(json!("unset"));
    let stream = body.get("stream").and_then(Value::as_bool).unwrap_or(false);
    let gated = r.header("x-test-gated") == Some("1");
    if path.ends_with("/hang") {
        // Hold the request until the relay closes the connection.
        let mut tmp = [0u8; 1024];
        while let Ok(n) = s.read(&mut tmp).await {
            if n == 0 {
                break;
            }
        }
        return false;
    }
    if path.ends_with("/echo-key") {
        let extra = format!(
            "set-cookie: session=abc\r\nx-echo: {}\r\nx-safe: yes\r\naccess-control-allow-origin: https://evil.example\r\n",
            r.header("authorization").or(r.header("x-api-key")).unwrap_or("")
        );
        return write_json(s, 200, json!({"ok": true}), &extra).await;
    }
    if path.ends_with("/echo-key-partial") {
        let key = received_key(r);
        let n = key.len();
        let head = format!(
            "HTTP/1.1 200 OK {}\r\ncontent-type: application/json\r\ncontent-length: 2\r\nx-debug-partial: {}\r\nx-debug-tail: ...{}\r\nx-debug-mid: key={}...\r\nx-safe: yes\r\n\r\n{{}}",
            &key[..12.min(n)],
            &key[..12.min(n)],
            &key[n.saturating_sub(9)..],
            &key[n / 3..(n / 3 + 10).min(n)],
        );
        return s.write_all(head.as_bytes()).await.is_ok();
    }
    if path.ends_with("/error-echo-auth") {
        let key = received_key(r);
        let auth = r
            .header("authorization")
            .or(r.header("x-api-key"))
            .or(r.header("x-goog-api-key"))
            .unwrap_or("");
        let query = r.target.split_once('?').map(|(_, q)| q).unwrap_or("");
        let param = |name: &str| {
            query
                .split('&')
                .find_map(|p| p.strip_prefix(name).and_then(|v| v.strip_prefix('=')))
        };
        let mut message = format!(
            "Incorrect API key provided: {}****{}. You sent: {auth}",
            &key[..12.min(key.len())],
            &key[key.len().saturating_sub(8)..]
        );
        if let Some(size) = param("size").and_then(|v| v.parse::<usize>().ok()) {
            while message.len() < size {
                message.push_str(" padding");
            }
        }
        let body = json!({"error": {"message": message, "type": "invalid_request_error",
                                    "code": "invalid_api_key", "echo": {"authorization": auth}}})
        .to_string();
        let coding = param("coding")
            .map(|c| format!("content-encoding: {c}\r\n"))
            .unwrap_or_default();
        let head = |framing: &str| {
            format!("HTTP/1.1 401 Unauthorized\r\ncontent-type: application/json\r\n{coding}{framing}\r\n")
        };
        return match param("framing") {
            Some("chunked") => {
                // Split inside the key, so a scrub that looks at one chunk at a time would miss it.
                let at = body
                    .find(&key)
                    .map(|i| i + key.len() / 2)
                    .unwrap_or(body.len() / 2);
                let (a, b) = body.split_at(at);
                let out = format!(
                    "{}{:x}\r\n{a}\r\n{:x}\r\n{b}\r\n0\r\n\r\n",
                    head("transfer-encoding: chunked\r\n"),
                    a.len(),
                    b.len()
                );
                s.write_all(out.as_bytes()).await.is_ok()
            }
            Some("close") => {
                let out = format!("{}{body}", head("connection: close\r\n"));
                let _ = s.write_all(out.as_bytes()).await;
                false
            }
            _ => {
                let out = format!(
                    "{}{body}",
                    head(&format!("content-length: {}\r\n", body.len()))
                );
                s.write_all(out.as_bytes()).await.is_ok()
            }
        };
    }
    if path.ends_with("/error-plain") {
        return write_json(
            s,
            404,
            json!({"error": {"message": "No such model: gpt-0", "type": "invalid_request_error"}}),
            "",
        )
        .await;
    }
    if path.ends_with("/close-delimited") {
        let _ = s.write_all(b"HTTP/1.1 200 OK\r\ncontent-type: text/plain\r\nconnection: close\r\n\r\nuntil-close-body").await;
        return false;
    }
    if path.ends_with("/chat/completions") && stream {
        let _ = s
            .write_all(b"HTTP/1.1 200 OK\r\ncontent-type: text/event-stream\r\ntransfer-encoding: chunked\r\n\r\n")
            .await;
        for i in 0..3 {
            if gated && i > 0 {
                gate.acquire().await.unwrap().forget();
            }
            let ev = format!(
                "data: {}\n\n",
                json!({"id": "chatcmpl-1", "object": "chat.completion.chunk", "created": 1, "model": model,
                       "choices": [{"index": 0, "delta": {"content": format!("part{i} ")}, "finish_reason": null}]})
            );
            if s.write_all(format!("{:x}\r\n{ev}\r\n", ev.len()).as_bytes())
                .await
                .is_err()
            {
                return false;
            }
        }
        // As OpenAI does: the usage-only chunk comes last, and only when the request asked for it.
        if body["stream_options"]["include_usage"] == json!(true) {
            let ev = format!(
                "data: {}\n\n",
                json!({"id": "chatcmpl-1", "object": "chat.completion.chunk", "created": 1, "model": model,
                       "choices": [], "usage": {"prompt_tokens": 1, "completion_tokens": 3, "total_tokens": 4}})
            );
            if s.write_all(format!("{:x}\r\n{ev}\r\n", ev.len()).as_bytes())
                .await
                .is_err()
            {
                return false;
            }
        }
        let done = "data: [DONE]\n\n";
        return s
            .write_all(format!("{:x}\r\n{done}\r\n0\r\n\r\n", done.len()).as_bytes())
            .await
            .is_ok();
    }
    if path.ends_with("/chat/completions") {
        return write_json(
            s,
            200,
            json!({"id": "chatcmpl-1", "object": "chat.completion", "created": 1, "model": model,
                   "choices": [{"index": 0, "message": {"role": "assistant", "content": "hello from mock"},
                                "finish_reason": "stop"}],
                   "usage": {"prompt_tokens": 1, "completion_tokens": 3, "total_tokens": 4}}),
            "",
        )
        .await;
    }
    if path.ends_with("/v1/messages") {
        return write_json(
            s,
            200,
            json!({"id": "msg_1", "type": "message", "role": "assistant", "model": model,
                   "content": [{"type": "text", "text": "hello from mock"}], "stop_reason": "end_turn",
                   "usage": {"input_tokens": 1, "output_tokens": 3}}),
            "",
        )
        .await;
    }
    write_json(
        s,
        200,
        json!({"object": "list", "path": path, "data": []}),
        "",
    )
    .await
}

// ---------------------------------------------------------------------------------------------------
// The relay process
// ---------------------------------------------------------------------------------------------------

pub struct Relay {
    pub child: Child,
    pub addr: SocketAddr,
    pub dir: tempfile::TempDir,
    pub kid: String,
    pub tenant: String,
    pub key: SecretKey,
    pub stdout: Arc<Mutex<Vec<String>>>,
    pub stderr: Arc<Mutex<Vec<String>>>,
}

/// A config for tests: port 0, limiters off unless a test sets them, fast timeouts, in-memory usage.
/// Most tests stand for many clients on 127.0.0.1, so the per-address connection cap is lifted to
/// `max_connections` unless a test is about it.
pub fn test_config(upstream: &MockUpstream) -> Value {
    json!({
        "server": {"host": "127.0.0.1", "port": 0, "read_timeout": 5, "idle_timeout": 5, "shutdown_grace": 5,
                   "max_connections_per_ip": 4096},
        "rate_limit": {"requests_per_second": 0, "burst": 0, "ip_limit": {"requests_per_second": 0, "burst": 0}},
        "providers": {
            "openai": {"base_url": upstream.base_url("/v1")},
            "anthropic": {"base_url": upstream.base_url("")},
            "gemini": {"base_url": upstream.base_url("")},
            "azure": {"base_url": upstream.base_url("/openai")},
        },
        "upstream": {"extra_ca_file": format!("{CERTS}/ca.pem"), "response_header_timeout": 10, "read_idle_timeout": 10,
                     // The mock's test switch is not a provider header: forwarding it is the operator's
                     // choice (`upstream/forward_headers.rs`), made here.
                     "forward_headers": ["x-test-gated"]},
        // Counters in memory unless a test is about a store (the default is a sqlite file).
        "store": {"type": "memory"},
    })
}

impl Relay {
    pub fn start(config: Value) -> Relay {
        Self::start_with_env(config, &[])
    }

    pub fn start_with_env(config: Value, env: &[(&str, &str)]) -> Relay {
        let dir = tempfile::tempdir().unwrap();
        let cfg_path = dir.path().join("config.json");
        std::fs::write(&cfg_path, serde_json::to_vec_pretty(&config).unwrap()).unwrap();
        let mut seed = 7u8;
        let mut rng = |b: &mut [u8]| {
            for x in b.iter_mut() {
                seed = seed.wrapping_mul(31).wrapping_add(17);
                *x = seed;
            }
        };
        let r = rai::generate_rai("http", "127.0.0.1", 8080, "acme", "test-key", &mut rng);
        let rai_path = dir.path().join("test.rai");
        std::fs::write(&rai_path, rai::to_json_pretty(&r)).unwrap();
        Self::spawn(dir, &cfg_path, &rai_path, r, env, &[])
    }

    /// A relay whose `test.rai` (in `cfg_dir()`) is `r`, started with the extra command-line `args`.
    /// `kid`, `tenant` and `key` are `r`'s current key.
    pub fn start_with_rai(config: Value, r: rai::RaiConfig, args: &[&str]) -> Relay {
        let dir = tempfile::tempdir().unwrap();
        let cfg_path = dir.path().join("config.json");
        std::fs::write(&cfg_path, serde_json::to_vec_pretty(&config).unwrap()).unwrap();
        let rai_path = dir.path().join("test.rai");
        std::fs::write(&rai_path, rai::to_json_pretty(&r)).unwrap();
        Self::spawn(dir, &cfg_path, &rai_path, r, &[], args)
    }

    /// A relay started with a directory of `.rai` files: `test.rai` is `r` (the relay's `kid`, `tenant`
    /// and `key`), and each `(name, text)` of `extra` is written next to it.
    pub fn start_with_rai_dir(config: Value, r: rai::RaiConfig, extra: &[(&str, String)]) -> Relay {
        let dir = tempfile::tempdir().unwrap();
        let cfg_path = dir.path().join("config.json");
        std::fs::write(&cfg_path, serde_json::to_vec_pretty(&config).unwrap()).unwrap();
        let rai_dir = dir.path().join("rai.d");
        std::fs::create_dir(&rai_dir).unwrap();
        std::fs::write(rai_dir.join("test.rai"), rai::to_json_pretty(&r)).unwrap();
        for (name, text) in extra {
            std::fs::write(rai_dir.join(name), text).unwrap();
        }
        Self::spawn(dir, &cfg_path, &rai_dir, r, &[], &[])
    }

    fn spawn(
        dir: tempfile::TempDir,
        cfg: &Path,
        rai_path: &Path,
        r: rai::RaiConfig,
        env: &[(&str, &str)],
        args: &[&str],
    ) -> Relay {
        let mut cmd = Command::new(env!("CARGO_BIN_EXE_relayapi"));
        cmd.arg("--config")
            .arg(cfg)
            .arg("--rai")
            .arg(rai_path)
            .args(args)
            .stdout(Stdio::piped())
            .stderr(Stdio::piped());
        for (k, v) in env {
            cmd.env(k, v);
        }
        let mut child = cmd.spawn().unwrap();
        let stdout = Arc::new(Mutex::new(Vec::new()));
        let stderr = Arc::new(Mutex::new(Vec::new()));
        let (tx, rx) = std::sync::mpsc::channel();
        {
            let lines = stderr.clone();
            let err = child.stderr.take().unwrap();
            std::thread::spawn(move || {
                for line in BufReader::new(err).lines().map_while(Result::ok) {
                    if let Ok(v) = serde_json::from_str::<Value>(&line) {
                        if v["msg"] == "listening" {
                            let _ = tx.send(v["addr"].as_str().unwrap().to_string());
                        }
                    }
                    lines.lock().unwrap().push(line);
                }
            });
        }
        {
            let lines = stdout.clone();
            let out = child.stdout.take().unwrap();
            std::thread::spawn(move || {
                for line in BufReader::new(out).lines().map_while(Result::ok) {
                    lines.lock().unwrap().push(line);
                }
            });
        }
        let addr = match rx.recv_timeout(Duration::from_secs(20)) {
            Ok(a) => a.parse().unwrap(),
            Err(_) => {
                let _ = child.kill();
                panic!("relay did not start: {:?}", stderr.lock().unwrap());
            }
        };
        Relay {
            child,
            addr,
            dir,
            kid: r.crypto.key_id.clone(),
            tenant: r.crypto.tenant_id.clone(),
            key: r.crypto.key.clone(),
            stdout,
            stderr,
        }
    }

    pub fn url(&self, path: &str) -> String {
        format!("http://{}{path}", self.addr)
    }

    /// Claims for a fresh token: provider `prv`, the fake key, 1 hour, `max` calls.
    pub fn claims(&self, prv: &str, max: Option<u64>) -> Claims {
        let now = std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .unwrap()
            .as_secs();
        let mut rng = format::os_rng();
        Claims {
            key: Some(SecretString::new(FAKE_KEY)),
            max,
            ..Claims::new(
                format::new_token_id(&mut rng),
                self.tenant.clone(),
                now,
                now + 3600,
                prv.into(),
            )
        }
    }

    pub fn mint(&self, c: &Claims) -> String {
        format::mint(c, &self.kid, &self.key, &mut format::os_rng())
    }

    pub fn token(&self, prv: &str, max: Option<u64>) -> String {
        self.mint(&self.claims(prv, max))
    }

    /// An admin API call signed with this relay's tenant key (docs/admin-api.md), as a backend makes it.
    pub async fn admin(&self, method: &str, target: &str, body: &str) -> Resp {
        let now = std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .unwrap()
            .as_secs();
        let auth = relayapi::admin::signing::sign_request(
            &self.kid,
            &self.key,
            method,
            target,
            body.as_bytes(),
            now,
        );
        request(self.addr, method, target, &[("authorization", &auth)], body).await
    }

    pub fn all_logs(&self) -> String {
        let mut s = self.stdout.lock().unwrap().join("\n");
        s.push('\n');
        s.push_str(&self.stderr.lock().unwrap().join("\n"));
        s
    }

    pub fn terminate(&mut self) -> std::process::ExitStatus {
        let _ = Command::new("kill")
            .arg("-TERM")
            .arg(self.child.id().to_string())
            .status();
        self.child.wait().unwrap()
    }

    pub fn cfg_dir(&self) -> PathBuf {
        self.dir.path().to_path_buf()
    }
}

impl Drop for Relay {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

// ---------------------------------------------------------------------------------------------------
// A raw HTTP/1.1 client
// ---------------------------------------------------------------------------------------------------

#[derive(Debug, Clone)]
pub struct Resp {
    pub status: u16,
    pub headers: Vec<(String, String)>,
    pub body: Vec<u8>,
}

impl Resp {
    pub fn header(&self, name: &str) -> Option<&str> {
        self.headers
            .iter()
            .find(|(n, _)| n.eq_ignore_ascii_case(name))
            .map(|(_, v)| v.as_str())
    }
    pub fn json(&self) -> Value {
        serde_json::from_slice(&self.body).unwrap_or(Value::Null)
    }
    pub fn text(&self) -> String {
        String::from_utf8_lossy(&self.body).into_owned()
    }
}

/// Read one response (Content-Length, chunked or until close) from `s`, keeping leftover bytes in `buf`.
pub async fn read_response<S: AsyncRead + Unpin>(
    s: &mut S,
    buf: &mut Vec<u8>,
    head_request: bool,
) -> Option<Resp> {
    let (status, headers, n) = loop {
        let mut hs = [httparse::EMPTY_HEADER; 64];
        let mut r = httparse::Response::new(&mut hs);
        if let Ok(httparse::Status::Complete(n)) = r.parse(buf) {
            let headers: Vec<(String, String)> = r
                .headers
                .iter()
                .map(|h| {
                    (
                        h.name.to_ascii_lowercase(),
                        String::from_utf8_lossy(h.value).into_owned(),
                    )
                })
                .collect();
            let status = r.code.unwrap();
            if (100..200).contains(&status) {
                buf.drain(..n);
                continue;
            }
            break (status, headers, n);
        }
        if !fill(s, buf).await {
            return None;
        }
    };
    buf.drain(..n);
    let get = |name: &str| {
        headers
            .iter()
            .find(|(k, _)| k == name)
            .map(|(_, v)| v.clone())
    };
    let mut body = Vec::new();
    if head_request || status == 204 || status == 304 {
    } else if let Some(len) = get("content-length") {
        let len: usize = len.parse().unwrap();
        while buf.len() < len {
            if !fill(s, buf).await {
                return None;
            }
        }
        body = buf.drain(..len).collect();
    } else if get("transfer-encoding").is_some_and(|v| v.contains("chunked")) {
        loop {
            let line_end = loop {
                if let Some(i) = buf.windows(2).position(|w| w == b"\r\n") {
                    break i;
                }
                if !fill(s, buf).await {
                    return None;
                }
            };
            let size = usize::from_str_radix(
                std::str::from_utf8(&buf[..line_end])
                    .unwrap()
                    .split(';')
                    .next()
                    .unwrap(),
                16,
            )
            .unwrap();
            buf.drain(..line_end + 2);
            while buf.len() < size + 2 {
                if !fill(s, buf).await {
                    return None;
                }
            }
            body.extend_from_slice(&buf[..size]);
            buf.drain(..size + 2);
            if size == 0 {
                break;
            }
        }
    } else {
        while fill(s, buf).await {}
        body = std::mem::take(buf);
    }
    Some(Resp {
        status,
        headers,
        body,
    })
}

async fn fill<S: AsyncRead + Unpin>(s: &mut S, buf: &mut Vec<u8>) -> bool {
    let mut tmp = [0u8; 8192];
    match tokio::time::timeout(Duration::from_secs(15), s.read(&mut tmp)).await {
        Ok(Ok(n)) if n > 0 => {
            buf.extend_from_slice(&tmp[..n]);
            true
        }
        _ => false,
    }
}

/// Send raw bytes on a new connection and read one response.
pub async fn raw(addr: SocketAddr, bytes: &[u8]) -> Option<Resp> {
    let mut s = TcpStream::connect(addr).await.unwrap();
    s.write_all(bytes).await.unwrap();
    let mut buf = Vec::new();
    read_response(&mut s, &mut buf, false).await
}

/// A simple request with a JSON body.
pub async fn request(
    addr: SocketAddr,
    method: &str,
    target: &str,
    headers: &[(&str, &str)],
    body: &str,
) -> Resp {
    let mut req = format!(
        "{method} {target} HTTP/1.1\r\nhost: relay.test\r\ncontent-length: {}\r\n",
        body.len()
    );
    for (n, v) in headers {
        req.push_str(&format!("{n}: {v}\r\n"));
    }
    req.push_str("\r\n");
    req.push_str(body);
    raw(addr, req.as_bytes()).await.expect("a response")
}

/// After a response, is the connection closed by the relay (EOF within the timeout)?
pub async fn closed_by_peer(s: &mut TcpStream) -> bool {
    let mut tmp = [0u8; 64];
    matches!(
        tokio::time::timeout(Duration::from_secs(5), s.read(&mut tmp)).await,
        Ok(Ok(0)) | Ok(Err(_))
    )
}

/// A connection from a chosen loopback source address: 127.0.0.x stands for a distinct client.
pub async fn connect_from(src: [u8; 4], addr: SocketAddr) -> TcpStream {
    let sock = tokio::net::TcpSocket::new_v4().unwrap();
    sock.bind(SocketAddr::from((src, 0))).unwrap();
    sock.connect(addr).await.unwrap()
}

/// One request on an open (keep-alive) connection; `None` if the connection ended first.
pub async fn send_on(
    s: &mut TcpStream,
    buf: &mut Vec<u8>,
    method: &str,
    target: &str,
    headers: &[(&str, &str)],
    body: &str,
) -> Option<Resp> {
    let mut req = format!("{method} {target} HTTP/1.1\r\nhost: relay.test\r\n");
    if !body.is_empty() || method == "POST" {
        req.push_str(&format!("content-length: {}\r\n", body.len()));
    }
    for (n, v) in headers {
        req.push_str(&format!("{n}: {v}\r\n"));
    }
    req.push_str("\r\n");
    req.push_str(body);
    s.write_all(req.as_bytes()).await.ok()?;
    read_response(s, buf, method == "HEAD").await
}

/// One request from source address `src` on a fresh connection.
pub async fn request_from(
    src: [u8; 4],
    addr: SocketAddr,
    method: &str,
    target: &str,
    headers: &[(&str, &str)],
    body: &str,
) -> Resp {
    let mut s = connect_from(src, addr).await;
    let mut buf = Vec::new();
    send_on(&mut s, &mut buf, method, target, headers, body)
        .await
        .expect("a response")
}
