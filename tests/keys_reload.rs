//! Issue 13 §2 through the relay binary: keys reloaded on SIGHUP and on a file change without a restart,
//! a broken file keeping the keys in force, streams in flight surviving a reload, key validity windows
//! on the token and admin paths, and the published development key refused without `--dev`.

mod common;

use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::{Duration, Instant};

use common::*;
use relayapi::admin::signing::sign_request;
use relayapi::server::key_reload::KEY_POLL_INTERVAL;
use relayapi::token::format::{self, Claims};
use relayapi::token::rai::{self, KeyWindow, RaiConfig, RaiKey};
use relayapi::token::secret::{SecretKey, SecretString};
use serde_json::Value;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;

const CHAT: &str = r#"{"model":"m","messages":[]}"#;

fn now() -> u64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap()
        .as_secs()
}

/// A `.rai` for tenant `acme` whose current key is `kid` (bytes all `fill`).
fn rai_with(kid: &str, fill: u8) -> RaiConfig {
    rai::generate_rai("http", "127.0.0.1", 8080, "acme", kid, &mut |b| {
        b.fill(fill)
    })
}

fn previous(kid: &str, fill: u8, window: KeyWindow) -> RaiKey {
    RaiKey {
        key_id: kid.into(),
        key: SecretKey::from_bytes([fill; 32]),
        window,
    }
}

fn rai_path(relay: &Relay) -> PathBuf {
    relay.cfg_dir().join("test.rai")
}

/// Replaces the file the way deploy tools do (write aside, rename over), so a poll never reads half.
fn replace_file(path: &Path, text: &str) {
    let tmp = path.with_extension("tmp");
    std::fs::write(&tmp, text).unwrap();
    std::fs::rename(&tmp, path).unwrap();
}

fn sighup(relay: &Relay) {
    let ok = Command::new("kill")
        .arg("-HUP")
        .arg(relay.child.id().to_string())
        .status()
        .unwrap()
        .success();
    assert!(ok);
}

/// Log lines with message `msg`, parsed.
fn lines(relay: &Relay, msg: &str) -> Vec<Value> {
    relay
        .stderr
        .lock()
        .unwrap()
        .iter()
        .filter_map(|l| serde_json::from_str::<Value>(l).ok())
        .filter(|v| v["msg"] == msg)
        .collect()
}

/// Waits (up to 10 s) for the `n`-th line with message `msg` and returns it.
fn wait_line(relay: &Relay, msg: &str, n: usize) -> Value {
    let deadline = Instant::now() + Duration::from_secs(10);
    loop {
        if let Some(v) = lines(relay, msg).get(n - 1) {
            return v.clone();
        }
        assert!(
            Instant::now() < deadline,
            "no line {n} {msg:?}: {}",
            relay.all_logs()
        );
        std::thread::sleep(Duration::from_millis(20));
    }
}

fn claims(tenant: &str) -> Claims {
    let t = now();
    Claims {
        key: Some(SecretString::new(FAKE_KEY)),
        ..Claims::new(
            format::new_token_id(&mut format::os_rng()),
            tenant.into(),
            t,
            t + 3600,
            "openai".into(),
        )
    }
}

fn token(kid: &str, fill: u8) -> String {
    format::mint(
        &claims("acme"),
        kid,
        &SecretKey::from_bytes([fill; 32]),
        &mut format::os_rng(),
    )
}

async fn call(relay: &Relay, token: &str) -> u16 {
    let target = format!("/relayapi/{token}/chat/completions");
    request(relay.addr, "POST", &target, &[], CHAT).await.status
}

/// A signed admin call with key `kid` (bytes all `fill`): the status.
async fn admin_as(relay: &Relay, kid: &str, fill: u8) -> u16 {
    let target = "/admin/v1/users/u1/usage";
    let auth = sign_request(
        kid,
        &SecretKey::from_bytes([fill; 32]),
        "GET",
        target,
        b"",
        now(),
    );
    request(relay.addr, "GET", target, &[("authorization", &auth)], "")
        .await
        .status
}

#[tokio::test]
async fn sighup_puts_new_keys_in_force_and_a_removed_key_verifies_nothing_at_once() {
    let up = MockUpstream::start(false).await;
    let relay = Relay::start_with_rai(test_config(&up), rai_with("old", 1), &[]);
    let old = token("old", 1);
    assert_eq!(call(&relay, &old).await, 200);
    assert_eq!(admin_as(&relay, "old", 1).await, 200);
    assert_eq!(call(&relay, &token("new", 2)).await, 401);

    replace_file(&rai_path(&relay), &rai::to_json_pretty(&rai_with("new", 2)));
    sighup(&relay);
    let line = wait_line(&relay, "keys reloaded", 1);
    assert_eq!(line["trigger"], "sighup", "{line}");
    assert_eq!(line["key_ids"], serde_json::json!(["new"]), "{line}");
    assert!(
        line["files"][0].as_str().unwrap().ends_with("test.rai"),
        "{line}"
    );

    // The old token was proven and cached before: it is refused all the same, as is the old admin key.
    let r = request(
        relay.addr,
        "POST",
        &format!("/relayapi/{old}/chat/completions"),
        &[],
        CHAT,
    )
    .await;
    assert_eq!(r.status, 401);
    assert_eq!(r.json()["error"]["code"], "invalid_token", "{}", r.text());
    assert_eq!(admin_as(&relay, "old", 1).await, 401);
    assert_eq!(call(&relay, &token("new", 2)).await, 200);
    assert_eq!(admin_as(&relay, "new", 2).await, 200);
    // Key ids in the log, never key bytes.
    let logs = relay.all_logs();
    for fill in [1u8, 2] {
        let key = SecretKey::from_bytes([fill; 32]).to_base64url();
        assert!(!logs.contains(key.as_str()), "a key in the logs");
    }
    // The relay never restarted: one listening line.
    assert_eq!(lines(&relay, "listening").len(), 1);
}

#[tokio::test]
async fn a_broken_file_keeps_the_keys_in_force_and_names_file_and_field() {
    let up = MockUpstream::start(false).await;
    let relay = Relay::start_with_rai(test_config(&up), rai_with("old", 1), &[]);
    let old = token("old", 1);
    assert_eq!(call(&relay, &old).await, 200);
    let broken = rai::to_json_pretty(&rai_with("new", 2)).replace("8080", "0");
    replace_file(&rai_path(&relay), &broken);
    sighup(&relay);
    let line = wait_line(
        &relay,
        "keys reload failed; the keys in force stay in force",
        1,
    );
    assert_eq!(line["level"], "error", "{line}");
    assert_eq!(line["field"], "server.port", "{line}");
    assert!(
        line["file"].as_str().unwrap().ends_with("test.rai"),
        "{line}"
    );
    assert!(
        line["error"].as_str().unwrap().contains("test.rai"),
        "{line}"
    );
    assert_eq!(call(&relay, &old).await, 200);
    assert_eq!(call(&relay, &token("old", 1)).await, 200);
    assert_eq!(admin_as(&relay, "old", 1).await, 200);
    assert_eq!(call(&relay, &token("new", 2)).await, 401);
    // A bad file is reported once, not at every look.
    std::thread::sleep(KEY_POLL_INTERVAL * 2 + Duration::from_millis(500));
    assert_eq!(
        lines(
            &relay,
            "keys reload failed; the keys in force stay in force"
        )
        .len(),
        1
    );
    // Fixed, it is picked up without a signal.
    replace_file(&rai_path(&relay), &rai::to_json_pretty(&rai_with("new", 2)));
    let line = wait_line(&relay, "keys reloaded", 1);
    assert_eq!(line["trigger"], "file_change", "{line}");
    assert_eq!(call(&relay, &token("new", 2)).await, 200);
    assert_eq!(call(&relay, &old).await, 401);
}

#[tokio::test]
async fn a_change_without_a_signal_is_picked_up_within_the_poll_interval() {
    let up = MockUpstream::start(false).await;
    let relay = Relay::start_with_rai(test_config(&up), rai_with("old", 1), &[]);
    let (old, new) = (token("old", 1), token("new", 2));
    assert_eq!(call(&relay, &old).await, 200);
    let mut r = rai_with("new", 2);
    r.crypto
        .previous_keys
        .push(previous("old", 1, KeyWindow::default()));
    // An in-place write (as an editor does), not a rename.
    std::fs::write(rai_path(&relay), rai::to_json_pretty(&r)).unwrap();
    let written = Instant::now();
    while call(&relay, &new).await != 200 {
        assert!(
            written.elapsed() < KEY_POLL_INTERVAL + Duration::from_secs(3),
            "not picked up: {}",
            relay.all_logs()
        );
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    assert_eq!(
        wait_line(&relay, "keys reloaded", 1)["trigger"],
        "file_change"
    );
    // The old key is still a previous key: its tokens still pass.
    assert_eq!(call(&relay, &old).await, 200);
}

/// Reads from `s` until `want` has arrived (5 s at most).
async fn read_until(s: &mut TcpStream, got: &mut Vec<u8>, want: &str) {
    let deadline = tokio::time::Instant::now() + Duration::from_secs(5);
    while !String::from_utf8_lossy(got).contains(want) {
        let mut tmp = [0u8; 4096];
        let n = tokio::time::timeout_at(deadline, s.read(&mut tmp))
            .await
            .unwrap_or_else(|_| panic!("{want:?} did not arrive: {}", String::from_utf8_lossy(got)))
            .unwrap();
        assert!(n > 0, "closed before {want:?}");
        got.extend_from_slice(&tmp[..n]);
    }
}

#[tokio::test]
async fn a_stream_in_flight_survives_a_reload_that_removes_its_key() {
    let up = MockUpstream::start(false).await;
    let relay = Relay::start_with_rai(test_config(&up), rai_with("old", 1), &[]);
    let t = token("old", 1);
    let body = r#"{"model":"m","stream":true,"messages":[]}"#;
    let req = format!(
        "POST /relayapi/{t}/chat/completions HTTP/1.1\r\nhost: x\r\nx-test-gated: 1\r\ncontent-type: application/json\r\ncontent-length: {}\r\n\r\n{body}",
        body.len()
    );
    let mut s = TcpStream::connect(relay.addr).await.unwrap();
    s.write_all(req.as_bytes()).await.unwrap();
    let mut got = Vec::new();
    read_until(&mut s, &mut got, "part0 ").await;

    replace_file(&rai_path(&relay), &rai::to_json_pretty(&rai_with("new", 2)));
    sighup(&relay);
    wait_line(&relay, "keys reloaded", 1);
    assert_eq!(call(&relay, &t).await, 401, "new requests see the new keys");

    // The stream admitted under the old key carries on to its end on the same connection.
    up.release();
    read_until(&mut s, &mut got, "part1 ").await;
    up.release();
    read_until(&mut s, &mut got, "0\r\n\r\n").await;
    let text = String::from_utf8_lossy(&got);
    assert!(text.starts_with("HTTP/1.1 200"), "{text}");
    assert!(text.contains("part2 "), "{text}");
}

#[tokio::test]
async fn keys_outside_their_window_verify_nothing_on_either_path() {
    let up = MockUpstream::start(false).await;
    let t = now();
    let mut r = rai_with("current", 1);
    r.crypto.previous_keys = vec![
        previous(
            "retired",
            2,
            KeyWindow {
                not_before: None,
                not_after: Some(t - 1),
            },
        ),
        previous(
            "future",
            3,
            KeyWindow {
                not_before: Some(t + 3600),
                not_after: None,
            },
        ),
    ];
    let relay = Relay::start_with_rai(test_config(&up), r.clone(), &[]);
    let line = wait_line(&relay, "listening", 1);
    assert_eq!(line["tenants"], 3, "{line}");

    for (kid, fill) in [("retired", 2), ("future", 3)] {
        let resp = request(
            relay.addr,
            "POST",
            &format!("/relayapi/{}/chat/completions", token(kid, fill)),
            &[],
            CHAT,
        )
        .await;
        // The same 401 as a key never loaded: no oracle.
        assert_eq!(resp.status, 401, "{kid}");
        assert_eq!(resp.json()["error"]["code"], "invalid_token", "{kid}");
        assert_eq!(admin_as(&relay, kid, fill).await, 401, "{kid}");
    }
    let never = request(
        relay.addr,
        "POST",
        &format!("/relayapi/{}/chat/completions", token("never", 9)),
        &[],
        CHAT,
    )
    .await;
    assert_eq!(never.status, 401);

    // A window that ends while the relay runs: proven (and cached) before, refused after, with no
    // reload in between. Added by a reload, so a slow start cannot eat the window.
    let end = now() + 3;
    r.crypto.previous_keys.push(previous(
        "ending",
        4,
        KeyWindow {
            not_before: Some(t - 10),
            not_after: Some(end),
        },
    ));
    replace_file(&rai_path(&relay), &rai::to_json_pretty(&r));
    sighup(&relay);
    wait_line(&relay, "keys reloaded", 1);
    let ending = token("ending", 4);
    assert_eq!(call(&relay, &ending).await, 200);
    assert_eq!(admin_as(&relay, "ending", 4).await, 200);
    while now() < end {
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    assert_eq!(call(&relay, &ending).await, 401);
    assert_eq!(admin_as(&relay, "ending", 4).await, 401);

    // Retiring the current key: not_after in the past and a reload kill its tokens at once.
    let current = token("current", 1);
    assert_eq!(call(&relay, &current).await, 200);
    assert_eq!(admin_as(&relay, "current", 1).await, 200);
    r.crypto.window.not_after = Some(now() - 1);
    replace_file(&rai_path(&relay), &rai::to_json_pretty(&r));
    sighup(&relay);
    let line = wait_line(&relay, "keys reloaded", 2);
    let not_in_force: Vec<&str> = line["not_in_force"]
        .as_array()
        .unwrap()
        .iter()
        .map(|v| v.as_str().unwrap())
        .collect();
    assert_eq!(
        not_in_force,
        ["current", "ending", "future", "retired"],
        "{line}"
    );
    assert_eq!(call(&relay, &current).await, 401);
    assert_eq!(admin_as(&relay, "current", 1).await, 401);
}

/// Runs the relay with `args` until it says it listens or exits; returns (exit status if it exited,
/// stderr lines).
fn start_or_exit(args: &[&str], dir: &Path) -> (Option<std::process::ExitStatus>, Vec<String>) {
    let mut child = Command::new(env!("CARGO_BIN_EXE_relayapi"))
        .args(args)
        .current_dir(dir)
        .stdout(std::process::Stdio::null())
        .stderr(std::process::Stdio::piped())
        .spawn()
        .unwrap();
    let stderr = child.stderr.take().unwrap();
    let mut lines = Vec::new();
    for line in std::io::BufRead::lines(std::io::BufReader::new(stderr)).map_while(Result::ok) {
        let listening = line.contains("\"msg\":\"listening\"");
        lines.push(line);
        if listening {
            let _ = child.kill();
            let _ = child.wait();
            return (None, lines);
        }
    }
    (Some(child.wait().unwrap()), lines)
}

#[tokio::test]
async fn the_published_development_key_needs_dev_and_nobody_else_reaching_the_relay() {
    let up = MockUpstream::start(false).await;
    let dir = tempfile::tempdir().unwrap();
    let default_rai = concat!(env!("CARGO_MANIFEST_DIR"), "/default.rai");
    let write_cfg = |name: &str, cfg: &Value| {
        let p = dir.path().join(name);
        std::fs::write(&p, cfg.to_string()).unwrap();
        p.to_str().unwrap().to_owned()
    };
    let loopback = write_cfg("loopback.json", &test_config(&up));

    // Loopback alone is not enough: without --dev the relay does not start, and says how to fix it.
    let (status, err) = start_or_exit(&["--config", &loopback, "--rai", default_rai], dir.path());
    assert!(status.is_some_and(|s| !s.success()), "{err:?}");
    let err = err.join("\n");
    assert!(err.contains("relayapi gen-rai"), "{err}");
    assert!(err.contains("--dev"), "{err}");
    assert!(err.contains("crypto.key"), "{err}");

    // With --dev on loopback it starts, and says so.
    let (status, err) = start_or_exit(
        &["--config", &loopback, "--rai", default_rai, "--dev"],
        dir.path(),
    );
    assert!(status.is_none(), "{err:?}");
    let line: Value = serde_json::from_str(err.last().unwrap()).unwrap();
    assert_eq!(line["published_dev_key"], true, "{line}");

    // --dev does not open it to others: not on a public address, not behind a proxy.
    let mut public = test_config(&up);
    public["server"]["host"] = "0.0.0.0".into();
    let public = write_cfg("public.json", &public);
    let mut proxied = test_config(&up);
    proxied["trusted_proxies"] = serde_json::json!(["127.0.0.1"]);
    let proxied = write_cfg("proxied.json", &proxied);
    for (cfg, why) in [(&public, "0.0.0.0"), (&proxied, "trusted_proxies")] {
        let (status, err) = start_or_exit(
            &["--config", cfg, "--rai", default_rai, "--dev"],
            dir.path(),
        );
        assert!(status.is_some_and(|s| !s.success()), "{why}: {err:?}");
        let err = err.join("\n");
        assert!(err.contains(why) && err.contains("gen-rai"), "{err}");
    }

    // A reload cannot bring it in either: refused, the keys in force stay.
    let relay = Relay::start_with_rai(test_config(&up), rai_with("own", 1), &[]);
    let published = std::fs::read_to_string(default_rai).unwrap();
    replace_file(&rai_path(&relay), &published);
    sighup(&relay);
    let line = wait_line(
        &relay,
        "keys reload failed; the keys in force stay in force",
        1,
    );
    assert_eq!(line["field"], "crypto.key", "{line}");
    assert_eq!(call(&relay, &token("own", 1)).await, 200);
    let dev = rai::parse_rai(&published, Path::new("default.rai")).unwrap();
    let dev_token = format::mint(
        &claims("default"),
        &dev.crypto.key_id,
        &dev.crypto.key,
        &mut format::os_rng(),
    );
    assert_eq!(call(&relay, &dev_token).await, 401);
}

#[test]
fn relayapi_mint_refuses_a_key_outside_its_window() {
    let dir = tempfile::tempdir().unwrap();
    let file = dir.path().join("k.rai");
    let mint = |r: &RaiConfig| {
        std::fs::write(&file, rai::to_json_pretty(r)).unwrap();
        Command::new(env!("CARGO_BIN_EXE_relayapi"))
            .args([
                "mint",
                "--rai",
                file.to_str().unwrap(),
                "--provider",
                "openai",
            ])
            .args(["--key-ref", "main"])
            .current_dir(dir.path())
            .output()
            .unwrap()
    };
    let mut r = rai_with("k", 1);
    assert!(mint(&r).status.success());
    r.crypto.window.not_after = Some(now() - 1);
    let out = mint(&r);
    assert!(!out.status.success());
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(
        err.contains("crypto.not_after") && err.contains("`k`"),
        "{err}"
    );
    r.crypto.window = KeyWindow {
        not_before: Some(now() + 3600),
        not_after: None,
    };
    assert!(!mint(&r).status.success());
}
