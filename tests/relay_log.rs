//! Issue 10, item 6: the access log never blocks a request. The relay runs with its stdout a pipe that
//! nobody reads (a stalled log collector): requests keep being answered, the lines that do not fit the
//! log's queue are dropped and counted in `/metrics`, and the lines queued when a graceful shutdown
//! begins are still written once the pipe moves again.

mod common;

use std::io::{BufRead, BufReader, Read};
use std::net::SocketAddr;
use std::process::{Child, ChildStdout, Command, Stdio};
use std::time::Duration;

use common::*;
use relayapi::token::format::{self, Claims};
use relayapi::token::rai;
use relayapi::token::secret::SecretString;
use serde_json::Value;

const CHAT: &str = r#"{"model":"gpt-4o-mini","messages":[]}"#;
/// A long query makes each access line about 700 bytes, so few calls fill the pipe and the queue.
const PAD: usize = 450;

/// A relay whose stdout is handed to the test, unread, instead of being drained by the harness.
struct QuietRelay {
    child: Child,
    stdout: Option<ChildStdout>,
    addr: SocketAddr,
    token: String,
    _dir: tempfile::TempDir,
}

impl QuietRelay {
    fn start(up: &MockUpstream) -> QuietRelay {
        let dir = tempfile::tempdir().unwrap();
        let cfg = dir.path().join("config.json");
        std::fs::write(&cfg, serde_json::to_vec(&test_config(up)).unwrap()).unwrap();
        let r = rai::generate_rai(
            "http",
            "127.0.0.1",
            8080,
            "acme",
            "log-key",
            &mut format::os_rng(),
        );
        let rai_path = dir.path().join("test.rai");
        std::fs::write(&rai_path, rai::to_json_pretty(&r)).unwrap();
        let mut child = Command::new(env!("CARGO_BIN_EXE_relayapi"))
            .arg("--config")
            .arg(&cfg)
            .arg("--rai")
            .arg(&rai_path)
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .spawn()
            .unwrap();
        let stdout = child.stdout.take();
        // Operational events are read (and thrown away) so only stdout is the stalled stream.
        let (tx, rx) = std::sync::mpsc::channel();
        let err = child.stderr.take().unwrap();
        std::thread::spawn(move || {
            for line in BufReader::new(err).lines().map_while(Result::ok) {
                if let Ok(v) = serde_json::from_str::<Value>(&line) {
                    if v["msg"] == "listening" {
                        let _ = tx.send(v["addr"].as_str().unwrap().to_string());
                    }
                }
            }
        });
        let addr = rx
            .recv_timeout(Duration::from_secs(20))
            .expect("relay did not start")
            .parse()
            .unwrap();
        let now = std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .unwrap()
            .as_secs();
        let mut rng = format::os_rng();
        let claims = Claims {
            key: Some(SecretString::new(FAKE_KEY)),
            ..Claims::new(
                format::new_token_id(&mut rng),
                r.crypto.tenant_id.clone(),
                now,
                now + 3600,
                "openai".into(),
            )
        };
        let token = format::mint(&claims, &r.crypto.key_id, &r.crypto.key, &mut rng);
        QuietRelay {
            child,
            stdout,
            addr,
            token,
            _dir: dir,
        }
    }

    /// `calls` proxied calls over `conns` keep-alive connections; answers each call's request id.
    async fn calls(&self, conns: usize, calls: usize) -> Vec<String> {
        let target = format!("/relayapi/chat/completions?pad={}", "p".repeat(PAD));
        let auth = format!("Bearer {}", self.token);
        let mut tasks = Vec::new();
        for c in 0..conns {
            let (addr, target, auth) = (self.addr, target.clone(), auth.clone());
            let n = calls / conns + usize::from(c < calls % conns);
            tasks.push(tokio::spawn(async move {
                let mut s = connect_from([127, 0, 0, 2], addr).await;
                let mut buf = Vec::new();
                let mut rids = Vec::new();
                for _ in 0..n {
                    let r = send_on(
                        &mut s,
                        &mut buf,
                        "POST",
                        &target,
                        &[("authorization", &auth)],
                        CHAT,
                    )
                    .await
                    .expect("an answer while the log is stalled");
                    assert_eq!(r.status, 200, "{}", r.text());
                    let rid = r.headers.iter().rev().find(|(n, _)| n == "x-request-id");
                    rids.push(rid.unwrap().1.clone());
                }
                rids
            }));
        }
        let mut rids = Vec::new();
        for t in tasks {
            rids.extend(t.await.unwrap());
        }
        rids
    }

    async fn dropped_lines(&self) -> u64 {
        let body = request(self.addr, "GET", "/metrics", &[], "").await.text();
        body.lines()
            .find_map(|l| l.strip_prefix("relayapi_log_lines_dropped_total "))
            .expect("the dropped-lines counter")
            .parse()
            .unwrap()
    }
}

impl Drop for QuietRelay {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn a_stalled_access_log_never_stalls_requests() {
    let up = MockUpstream::start(false).await;
    let relay = QuietRelay::start(&up);
    assert_eq!(relay.dropped_lines().await, 0);
    // 4,000 lines of ~700 bytes: about 40 times a 64 KiB pipe buffer and twice the log's queue. Had a
    // worker written to the pipe itself, the calls would stop once the pipe filled.
    let rids = relay.calls(8, 4000).await;
    assert_eq!(rids.len(), 4000);
    assert_eq!(up.count(), 4000);
    let dropped = relay.dropped_lines().await;
    assert!(dropped > 0, "nothing dropped although nobody reads stdout");
    assert!(dropped < 4000, "{dropped}: the queue held nothing");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn lines_queued_before_a_graceful_shutdown_are_written() {
    let up = MockUpstream::start(false).await;
    let mut relay = QuietRelay::start(&up);
    // ~200 KiB of lines: more than the pipe holds, less than the queue. The rest waits in the queue.
    let rids = relay.calls(4, 300).await;
    assert_eq!(relay.dropped_lines().await, 0);
    let _ = Command::new("kill")
        .arg("-TERM")
        .arg(relay.child.id().to_string())
        .status();
    // The collector comes back: everything the relay queued arrives before stdout closes.
    let mut out = String::new();
    relay
        .stdout
        .take()
        .unwrap()
        .read_to_string(&mut out)
        .unwrap();
    assert!(relay.child.wait().unwrap().success());
    let logged: Vec<Value> = out
        .lines()
        .map(|l| serde_json::from_str(l).expect("whole JSON lines"))
        .collect();
    for rid in &rids {
        assert!(
            logged.iter().any(|l| l["rid"] == rid.as_str()),
            "{rid} not written"
        );
    }
}
