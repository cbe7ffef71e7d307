//! Issue 11 §3, "the first hour": what a new user meets through the real binary. Per-subcommand help,
//! unknown options named as such, `mint` refusing an unknown provider, a start line that says which
//! files and keys are in use, config errors in user words, a 404 without a template placeholder, and a
//! provider that cannot be reached named in the log and in `/metrics` by cause (never with the key).

mod common;

use std::process::{Command, Output};

use common::*;
use serde_json::{json, Value};
use tokio::io::AsyncWriteExt;
use tokio::net::TcpListener;

const CHAT: &str = r#"{"model":"gpt-4o-mini","messages":[{"role":"user","content":"hi"}]}"#;

fn relayapi(args: &[&str], dir: &std::path::Path) -> Output {
    Command::new(env!("CARGO_BIN_EXE_relayapi"))
        .args(args)
        .current_dir(dir)
        .env("TEST_PROVIDER_KEY", "sk-test-0000")
        .output()
        .unwrap()
}

fn text(b: &[u8]) -> String {
    String::from_utf8_lossy(b).into_owned()
}

#[test]
fn each_subcommand_prints_its_own_help() {
    let dir = tempfile::tempdir().unwrap();
    let out = relayapi(&["gen-rai", "--help"], dir.path());
    assert!(out.status.success());
    let help = text(&out.stdout);
    assert!(help.starts_with("relayapi gen-rai"), "{help}");
    assert!(help.contains("--key-id") && help.contains("key-<Unix seconds now>"));
    assert!(!help.contains("--key-env"), "{help}");

    let out = relayapi(&["mint", "--help"], dir.path());
    assert!(out.status.success());
    let help = text(&out.stdout);
    assert!(help.starts_with("relayapi mint"), "{help}");
    assert!(
        help.contains("--key-env") && !help.contains("--scheme"),
        "{help}"
    );
}

#[test]
fn an_unknown_option_is_called_unknown() {
    let dir = tempfile::tempdir().unwrap();
    let out = relayapi(&["gen-rai", "--bogus"], dir.path());
    assert_eq!(out.status.code(), Some(2));
    let err = text(&out.stderr);
    assert!(err.contains("unknown option `--bogus`"), "{err}");
    assert!(!err.contains("needs a value"), "{err}");
}

#[test]
fn the_default_key_id_is_unix_seconds_as_documented() {
    let dir = tempfile::tempdir().unwrap();
    let out = relayapi(&["gen-rai"], dir.path());
    assert!(out.status.success());
    let rai: Value = serde_json::from_slice(&out.stdout).unwrap();
    let kid = rai["crypto"]["key_id"].as_str().unwrap();
    let secs: u64 = kid.strip_prefix("key-").unwrap().parse().unwrap();
    assert!(secs > 1_700_000_000, "{kid}");
}

#[test]
fn mint_refuses_an_unknown_provider_and_knows_config_json_ones() {
    let dir = tempfile::tempdir().unwrap();
    let gen = relayapi(&["gen-rai", "--out", "t.rai"], dir.path());
    assert!(gen.status.success(), "{}", text(&gen.stderr));
    let mint = |provider: &str, extra: &[&str]| {
        let mut args = vec![
            "mint",
            "--rai",
            "t.rai",
            "--provider",
            provider,
            "--key-env",
            "TEST_PROVIDER_KEY",
        ];
        args.extend_from_slice(extra);
        relayapi(&args, dir.path())
    };
    let out = mint("opnai", &[]);
    assert_eq!(out.status.code(), Some(1));
    let err = text(&out.stderr);
    assert!(err.contains("unknown provider `opnai`"), "{err}");
    assert!(err.contains("did you mean `openai`?"), "{err}");
    assert!(text(&out.stdout).is_empty());

    let out = mint("openai", &[]);
    assert!(out.status.success(), "{}", text(&out.stderr));
    assert!(text(&out.stdout).starts_with("rt1."));

    // A provider the operator defined in config.json: unknown without it, known with it.
    assert_eq!(mint("mine", &[]).status.code(), Some(1));
    std::fs::write(
        dir.path().join("relay.json"),
        r#"{"providers": {"mine": {"base_url": "https://llm.example.com/v1", "auth": "bearer"}}}"#,
    )
    .unwrap();
    let out = mint("mine", &["--config", "relay.json"]);
    assert!(out.status.success(), "{}", text(&out.stderr));
    // ./config.json is read when present.
    std::fs::copy(
        dir.path().join("relay.json"),
        dir.path().join("config.json"),
    )
    .unwrap();
    assert!(mint("mine", &[]).status.success());
}

#[test]
fn config_errors_are_in_user_words() {
    let dir = tempfile::tempdir().unwrap();
    for (config, want) in [
        (
            r#"{"server": {"port": "8080"}}"#,
            "field `server.port`: expected a whole number from 0 to 65535, got the string \"8080\"",
        ),
        (
            r#"{"server": {"read_timeout": 2.5}}"#,
            "field `server.read_timeout`: expected a whole number, 0 or more, got 2.5 (a fraction)",
        ),
        (
            "{\"server\": {\"port\": 8080,}}",
            "not valid JSON: a comma before `}` or `]`",
        ),
    ] {
        std::fs::write(dir.path().join("config.json"), config).unwrap();
        let out = relayapi(&["--config", "config.json"], dir.path());
        assert_eq!(out.status.code(), Some(1), "{config}");
        let err = text(&out.stderr);
        assert!(err.contains(want), "{config}: {err}");
        for serde in ["u16", "u64", "server.?"] {
            assert!(!err.contains(serde), "{config}: {err}");
        }
    }
}

/// The `listening` line of a relay's stderr. The harness learns the address from that line just before
/// it stores the line, so wait for it to be stored.
fn listening(relay: &Relay) -> Value {
    for _ in 0..500 {
        let found = relay
            .stderr
            .lock()
            .unwrap()
            .iter()
            .filter_map(|l| serde_json::from_str::<Value>(l).ok())
            .find(|v| v["msg"] == "listening");
        if let Some(v) = found {
            return v;
        }
        std::thread::sleep(std::time::Duration::from_millis(10));
    }
    panic!("no listening line: {}", relay.all_logs());
}

#[tokio::test]
async fn the_start_line_names_files_keys_and_provider_overrides() {
    let up = MockUpstream::start(false).await;
    let relay = Relay::start(test_config(&up));
    let line = listening(&relay);
    assert!(
        line["config"].as_str().unwrap().ends_with("config.json"),
        "{line}"
    );
    assert!(
        line["rai"].as_str().unwrap().ends_with("test.rai"),
        "{line}"
    );
    assert_eq!(line["published_dev_key"], false, "{line}");
    assert_eq!(
        line["provider_overrides"]["openai"],
        json!(up.base_url("/v1")),
        "{line}"
    );

    // The repository's default.rai with --dev: the published key, said so on the start line and in a
    // warning.
    let dir = tempfile::tempdir().unwrap();
    let cfg = dir.path().join("config.json");
    std::fs::write(&cfg, test_config(&up).to_string()).unwrap();
    let default_rai = concat!(env!("CARGO_MANIFEST_DIR"), "/default.rai");
    let mut child = Command::new(env!("CARGO_BIN_EXE_relayapi"))
        .args([
            "--config",
            cfg.to_str().unwrap(),
            "--rai",
            default_rai,
            "--dev",
        ])
        .stderr(std::process::Stdio::piped())
        .spawn()
        .unwrap();
    let stderr = child.stderr.take().unwrap();
    let mut lines = Vec::new();
    for line in std::io::BufRead::lines(std::io::BufReader::new(stderr)).map_while(Result::ok) {
        let v: Value = serde_json::from_str(&line).unwrap();
        let done = v["msg"] == "listening";
        lines.push(v);
        if done {
            break;
        }
    }
    let _ = child.kill();
    let _ = child.wait();
    let line = lines.last().unwrap();
    assert_eq!(line["msg"], "listening", "{lines:?}");
    assert_eq!(line["published_dev_key"], true, "{line}");
    assert!(lines.iter().any(|v| v["level"] == "warn"
        && v["msg"]
            .as_str()
            .unwrap()
            .contains("published development key")));
}

#[tokio::test]
async fn not_found_shows_no_template_placeholder() {
    let up = MockUpstream::start(false).await;
    let relay = Relay::start(test_config(&up));
    let r = request(relay.addr, "GET", "/nothing-here", &[], "").await;
    assert_eq!(r.status, 404);
    let body = r.text();
    assert!(!body.contains("{base_path}"), "{body}");
    assert!(!body.contains("{token}"), "{body}");
    assert!(body.contains("/relayapi/"), "{body}");
}

/// Calls the relay with a fresh openai token until it answers; returns the status, the relay's logs
/// after the call and its `/metrics` text.
async fn call_unreachable(base_url: &str, extra: Value) -> (u16, String, String) {
    let up = MockUpstream::start(false).await;
    let mut cfg = test_config(&up);
    cfg["providers"]["openai"]["base_url"] = json!(base_url);
    if let Value::Object(m) = extra {
        for (k, v) in m {
            cfg["upstream"][k] = v;
        }
    }
    let relay = Relay::start(cfg);
    let token = relay.token("openai", Some(5));
    let path = format!("/relayapi/{token}/chat/completions");
    let status = request(relay.addr, "POST", &path, &[], CHAT).await.status;
    // The relay counts before it answers; its log line is written before the answer too, but reaches
    // `all_logs` through the harness's reader thread, so wait for that thread to have seen it.
    let metrics = request(relay.addr, "GET", "/metrics", &[], "").await.text();
    for _ in 0..500 {
        if relay.all_logs().contains("\"provider unreachable\"") {
            break;
        }
        tokio::time::sleep(std::time::Duration::from_millis(10)).await;
    }
    (status, relay.all_logs(), metrics)
}

fn unreachable_line(logs: &str) -> Value {
    logs.lines()
        .filter_map(|l| serde_json::from_str::<Value>(l).ok())
        .find(|v| v["msg"] == "provider unreachable")
        .unwrap_or_else(|| panic!("no `provider unreachable` line in {logs}"))
}

#[tokio::test]
async fn a_refused_connection_is_logged_and_counted_by_cause() {
    // A port nothing listens on: bound, read, dropped.
    let port = std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port();
    let (status, logs, metrics) =
        call_unreachable(&format!("http://127.0.0.1:{port}/v1"), json!({})).await;
    assert_eq!(status, 502);
    let line = unreachable_line(&logs);
    assert_eq!(line["cause"], "refused", "{line}");
    assert_eq!(line["provider"], "openai", "{line}");
    assert_eq!(line["host"], format!("127.0.0.1:{port}"), "{line}");
    assert!(!line["error"].as_str().unwrap().is_empty(), "{line}");
    assert!(
        metrics.contains("relayapi_upstream_unreachable_total{cause=\"refused\"} 1"),
        "{metrics}"
    );
    assert!(!logs.contains(FAKE_KEY), "the key reached the log");
}

#[tokio::test]
async fn a_failed_tls_handshake_is_logged_as_tls() {
    // Something that is not a TLS server: answers the ClientHello with plain text and closes.
    let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let port = listener.local_addr().unwrap().port();
    tokio::spawn(async move {
        while let Ok((mut s, _)) = listener.accept().await {
            let _ = s.write_all(b"HTTP/1.1 400 Bad Request\r\n\r\n").await;
        }
    });
    let (status, logs, metrics) =
        call_unreachable(&format!("https://127.0.0.1:{port}/v1"), json!({})).await;
    assert_eq!(status, 502);
    assert_eq!(unreachable_line(&logs)["cause"], "tls");
    assert!(metrics.contains("relayapi_upstream_unreachable_total{cause=\"tls\"} 1"));
    assert!(!logs.contains(FAKE_KEY));
}

#[tokio::test]
async fn a_silent_provider_is_logged_as_timeout() {
    // Accepts and never answers the handshake.
    let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let port = listener.local_addr().unwrap().port();
    tokio::spawn(async move {
        let mut held = Vec::new();
        while let Ok((s, _)) = listener.accept().await {
            held.push(s);
        }
    });
    let (status, logs, metrics) = call_unreachable(
        &format!("https://127.0.0.1:{port}/v1"),
        json!({"handshake_timeout": 1}),
    )
    .await;
    assert_eq!(status, 504);
    assert_eq!(unreachable_line(&logs)["cause"], "timeout");
    assert!(metrics.contains("relayapi_upstream_unreachable_total{cause=\"timeout\"} 1"));
}

#[tokio::test]
async fn a_name_that_does_not_resolve_is_logged_as_dns() {
    // `.invalid` never resolves (RFC 6761). Without a resolver configuration the cause is DNS too; a
    // resolver that cannot reach its servers within connect_timeout reports a timeout.
    let (status, logs, _) = call_unreachable(
        "https://relay-test.invalid/v1",
        json!({"connect_timeout": 3}),
    )
    .await;
    assert!(status == 502 || status == 504, "{status}");
    let line = unreachable_line(&logs);
    let cause = line["cause"].as_str().unwrap();
    assert!(cause == "dns" || cause == "timeout", "{line}");
    assert_eq!(line["host"], "relay-test.invalid", "{line}");
}
