//! WebSocket sessions through the relay binary (issue 14 §1): a browser-style upgrade carrying the
//! relay token as the `openai-insecure-api-key.` subprotocol entry, the provider's handshake made with
//! the real key and without that entry, frames both ways (fragmented, with control frames between
//! fragments), the provider's `response.done` usage charged to the token, a budget that closes the
//! session with 1008 after the response that used it up, and refusals (a broken upgrade, a provider
//! that refuses, a used-up token) that reach nothing or count nothing. The provider is a small
//! WebSocket server written here over a real socket.

mod common;

use std::sync::{Arc, Mutex};
use std::time::Duration;

use common::*;
use relayapi::token::format::{Budget, Claims};
use relayapi::ws::handshake::accept_for;
use serde_json::{json, Value};
use tokio::io::{AsyncRead, AsyncReadExt, AsyncWriteExt};
use tokio::net::{TcpListener, TcpStream};

/// What the provider saw of each handshake.
type Seen = Arc<Mutex<Vec<String>>>;

/// A realtime provider: answers the upgrade (101 with `realtime` chosen, or `status` when set), then
/// echoes every text message and answers `{"type":"response.create"}` with a `response.done` event
/// reporting 10 input and 5 output tokens.
async fn provider(refuse: Option<u16>) -> (String, Seen) {
    let l = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = l.local_addr().unwrap();
    let seen: Seen = Arc::default();
    let seen2 = Arc::clone(&seen);
    tokio::spawn(async move {
        while let Ok((s, _)) = l.accept().await {
            tokio::spawn(serve(s, refuse, Arc::clone(&seen2)));
        }
    });
    (format!("http://{addr}/v1"), seen)
}

async fn serve(mut s: TcpStream, refuse: Option<u16>, seen: Seen) {
    let mut buf = Vec::new();
    let head = loop {
        let mut tmp = [0u8; 4096];
        let n = s.read(&mut tmp).await.unwrap_or(0);
        if n == 0 {
            return;
        }
        buf.extend_from_slice(&tmp[..n]);
        if let Some(i) = buf.windows(4).position(|w| w == b"\r\n\r\n") {
            let head = String::from_utf8_lossy(&buf[..i + 4]).to_string();
            buf.drain(..i + 4);
            break head;
        }
    };
    seen.lock().unwrap().push(head.clone());
    if let Some(status) = refuse {
        let body = r#"{"error":{"message":"model not found"}}"#;
        let _ = s
            .write_all(
                format!(
                    "HTTP/1.1 {status} No\r\ncontent-length: {}\r\n\r\n{body}",
                    body.len()
                )
                .as_bytes(),
            )
            .await;
        return;
    }
    let key = head
        .lines()
        .find_map(|l| l.strip_prefix("sec-websocket-key: "))
        .unwrap()
        .trim()
        .to_string();
    let hello = format!(
        "HTTP/1.1 101 Switching Protocols\r\nUpgrade: websocket\r\nConnection: Upgrade\r\n\
         Sec-WebSocket-Accept: {}\r\nSec-WebSocket-Protocol: realtime\r\n\r\n",
        accept_for(&key)
    );
    s.write_all(hello.as_bytes()).await.unwrap();
    // A first event right away, as OpenAI sends `session.created`.
    s.write_all(&server_frame(0x1, br#"{"type":"session.created"}"#))
        .await
        .unwrap();
    let mut reader = MessageReader::default();
    loop {
        let Some(msg) = reader.next(&mut s, &mut buf, true).await else {
            return;
        };
        match msg {
            Msg::Text(t) if t.contains("response.create") => {
                let done = json!({"type": "response.done", "response": {"status": "completed",
                    "usage": {"total_tokens": 15, "input_tokens": 10, "output_tokens": 5}}});
                s.write_all(&server_frame(0x1, done.to_string().as_bytes()))
                    .await
                    .unwrap();
            }
            Msg::Text(t) => {
                seen.lock().unwrap().push(format!("text {t}"));
                s.write_all(&server_frame(0x1, t.as_bytes())).await.unwrap();
            }
            Msg::Close(code) => {
                seen.lock().unwrap().push(format!("close {code}"));
                let mut f = vec![0x88, 2];
                f.extend_from_slice(&code.to_be_bytes());
                let _ = s.write_all(&f).await;
                return;
            }
        }
    }
}

fn server_frame(op: u8, payload: &[u8]) -> Vec<u8> {
    frame(true, op, payload, None)
}

fn frame(fin: bool, op: u8, payload: &[u8], mask: Option<[u8; 4]>) -> Vec<u8> {
    let mut out = vec![(u8::from(fin) << 7) | op];
    let m = if mask.is_some() { 0x80 } else { 0 };
    if payload.len() < 126 {
        out.push(m | payload.len() as u8);
    } else {
        out.push(m | 126);
        out.extend_from_slice(&(payload.len() as u16).to_be_bytes());
    }
    match mask {
        None => out.extend_from_slice(payload),
        Some(k) => {
            out.extend_from_slice(&k);
            out.extend(payload.iter().enumerate().map(|(i, b)| b ^ k[i % 4]));
        }
    }
    out
}

fn client_frame(fin: bool, op: u8, payload: &[u8]) -> Vec<u8> {
    frame(fin, op, payload, Some([1, 2, 3, 4]))
}

#[derive(Debug, PartialEq)]
enum Msg {
    Text(String),
    Close(u16),
}

/// Reads whole messages (joining fragments, skipping pings) from either side.
#[derive(Default)]
struct MessageReader {
    parts: Vec<u8>,
}

impl MessageReader {
    async fn next<S: AsyncRead + Unpin>(
        &mut self,
        s: &mut S,
        buf: &mut Vec<u8>,
        masked: bool,
    ) -> Option<Msg> {
        loop {
            if let Some((fin, op, payload, used)) = parse(buf, masked) {
                buf.drain(..used);
                match op {
                    0x8 => {
                        let code = payload
                            .get(..2)
                            .map_or(1005, |c| u16::from_be_bytes([c[0], c[1]]));
                        return Some(Msg::Close(code));
                    }
                    0x9 | 0xA => continue,
                    _ => {
                        self.parts.extend_from_slice(&payload);
                        if fin {
                            let t = String::from_utf8(std::mem::take(&mut self.parts)).unwrap();
                            return Some(Msg::Text(t));
                        }
                        continue;
                    }
                }
            }
            let mut tmp = [0u8; 4096];
            let n = tokio::time::timeout(Duration::from_secs(5), s.read(&mut tmp))
                .await
                .ok()?
                .ok()?;
            if n == 0 {
                return None;
            }
            buf.extend_from_slice(&tmp[..n]);
        }
    }
}

/// One frame from the front of `b`: (fin, opcode, unmasked payload, bytes used).
fn parse(b: &[u8], masked: bool) -> Option<(bool, u8, Vec<u8>, usize)> {
    if b.len() < 2 {
        return None;
    }
    assert_eq!(b[1] & 0x80 != 0, masked, "masking of {b:?}");
    let (len, mut at) = match b[1] & 0x7F {
        126 => (u16::from_be_bytes([*b.get(2)?, *b.get(3)?]) as usize, 4),
        127 => panic!("no test frame is that long"),
        n => (n as usize, 2),
    };
    let mask = if masked {
        let m: [u8; 4] = b.get(at..at + 4)?.try_into().unwrap();
        at += 4;
        Some(m)
    } else {
        None
    };
    let payload = b.get(at..at + len)?;
    let payload = match mask {
        Some(m) => payload
            .iter()
            .enumerate()
            .map(|(i, x)| x ^ m[i % 4])
            .collect(),
        None => payload.to_vec(),
    };
    Some((b[0] & 0x80 != 0, b[0] & 0x0F, payload, at + len))
}

fn config(base: &str) -> Value {
    json!({
        "server": {"host": "127.0.0.1", "port": 0, "read_timeout": 5, "idle_timeout": 5, "shutdown_grace": 5,
                   "max_connections_per_ip": 4096},
        "rate_limit": {"requests_per_second": 0, "burst": 0, "ip_limit": {"requests_per_second": 0, "burst": 0}},
        "providers": {"openai": {"base_url": base}},
        "upstream": {"response_header_timeout": 5, "read_idle_timeout": 5},
        "store": {"type": "memory"},
    })
}

/// Open a session the way the official browser client does; returns the socket after the 101 and
/// the 101's head.
async fn open(relay: &Relay, token: &str, extra: &str) -> (TcpStream, String, Vec<u8>) {
    let mut s = TcpStream::connect(relay.addr).await.unwrap();
    let req = format!(
        "GET /relayapi/realtime?model=gpt-realtime HTTP/1.1\r\nhost: x\r\nupgrade: websocket\r\n\
         connection: Upgrade\r\nsec-websocket-version: 13\r\nsec-websocket-key: dGhlIHNhbXBsZSBub25jZQ==\r\n\
         sec-websocket-protocol: realtime, openai-insecure-api-key.{token}\r\n{extra}\r\n"
    );
    s.write_all(req.as_bytes()).await.unwrap();
    let mut buf = Vec::new();
    loop {
        let mut tmp = [0u8; 4096];
        let n = s.read(&mut tmp).await.unwrap();
        assert!(n > 0, "closed: {}", String::from_utf8_lossy(&buf));
        buf.extend_from_slice(&tmp[..n]);
        if let Some(i) = buf.windows(4).position(|w| w == b"\r\n\r\n") {
            let head = String::from_utf8_lossy(&buf[..i + 4]).to_string();
            buf.drain(..i + 4);
            return (s, head, buf);
        }
    }
}

#[tokio::test]
async fn a_browser_session_flows_both_ways_with_the_real_key_and_is_metered() {
    let (base, seen) = provider(None).await;
    let relay = Relay::start(config(&base));
    let c = relay.claims("openai", Some(5));
    let token = relay.mint(&c);
    let (mut s, head, mut buf) = open(&relay, &token, "").await;
    assert!(head.starts_with("HTTP/1.1 101"), "{head}");
    assert!(
        head.contains("sec-websocket-accept: s3pPLMBiTxaQ9kYGzzhZRbK+xOo="),
        "{head}"
    );
    assert!(head.contains("sec-websocket-protocol: realtime"), "{head}");
    // The provider saw the real key, the path and query, and none of the token.
    let up = seen.lock().unwrap()[0].clone();
    assert!(
        up.starts_with("GET /v1/realtime?model=gpt-realtime HTTP/1.1"),
        "{up}"
    );
    assert!(
        up.contains(&format!("authorization: Bearer {FAKE_KEY}")),
        "{up}"
    );
    assert!(up.contains("sec-websocket-protocol: realtime\r\n"), "{up}");
    assert!(!up.contains("rt1.") && !up.contains("insecure"), "{up}");
    assert!(!up.to_lowercase().contains("extensions"), "{up}");
    let mut r = MessageReader::default();
    assert_eq!(
        r.next(&mut s, &mut buf, false).await,
        Some(Msg::Text(r#"{"type":"session.created"}"#.into()))
    );
    // A fragmented message with a ping between its fragments, cut into single bytes on the wire.
    let mut msg = client_frame(false, 0x1, br#"{"type":"conversation.item.create","#);
    msg.extend(client_frame(true, 0x9, b"p"));
    msg.extend(client_frame(true, 0x0, br#""n":1}"#));
    for b in msg {
        s.write_all(&[b]).await.unwrap();
    }
    assert_eq!(
        r.next(&mut s, &mut buf, false).await,
        Some(Msg::Text(
            r#"{"type":"conversation.item.create","n":1}"#.into()
        ))
    );
    for _ in 0..2 {
        s.write_all(&client_frame(true, 0x1, br#"{"type":"response.create"}"#))
            .await
            .unwrap();
        let Some(Msg::Text(done)) = r.next(&mut s, &mut buf, false).await else {
            panic!("no response.done");
        };
        assert!(done.contains("response.done"));
    }
    // The client closes; the provider answers; the relay passes both on.
    let mut close = vec![0x88, 0x82, 1, 2, 3, 4];
    close.extend([0x03 ^ 1, 0xe8 ^ 2]);
    s.write_all(&close).await.unwrap();
    assert_eq!(
        r.next(&mut s, &mut buf, false).await,
        Some(Msg::Close(1000))
    );
    // Both responses were charged to the token: 20 in, 10 out, one call.
    let mut doc = Value::Null;
    for _ in 0..100 {
        doc = relay
            .admin("GET", &format!("/admin/v1/tokens/{}", c.jti), "")
            .await
            .json();
        if doc["tokens"]["output"] == 10 {
            break;
        }
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    assert_eq!(doc["calls_used"], 1, "{doc}");
    assert_eq!(doc["tokens"]["input"], 20, "{doc}");
    assert_eq!(doc["tokens"]["output"], 10, "{doc}");
}

#[tokio::test]
async fn a_budget_closes_the_session_after_the_response_that_used_it_up() {
    let (base, _) = provider(None).await;
    let relay = Relay::start(config(&base));
    // 15 tokens per response: the second one reaches 30 and uses the budget of 25 up.
    let c = Claims {
        bud: Some(Budget {
            tok: Some(25),
            cost: None,
        }),
        ..relay.claims("openai", None)
    };
    let token = relay.mint(&c);
    let (mut s, head, mut buf) = open(&relay, &token, "").await;
    assert!(head.starts_with("HTTP/1.1 101"), "{head}");
    let mut r = MessageReader::default();
    r.next(&mut s, &mut buf, false).await; // session.created
    let create = client_frame(true, 0x1, br#"{"type":"response.create"}"#);
    s.write_all(&create).await.unwrap();
    assert!(matches!(
        r.next(&mut s, &mut buf, false).await,
        Some(Msg::Text(_))
    ));
    s.write_all(&create).await.unwrap();
    assert!(matches!(
        r.next(&mut s, &mut buf, false).await,
        Some(Msg::Text(_))
    ));
    assert_eq!(
        r.next(&mut s, &mut buf, false).await,
        Some(Msg::Close(1008))
    );
    // A new session of the used-up token is refused before the provider is contacted.
    let mut s = TcpStream::connect(relay.addr).await.unwrap();
    let req = format!(
        "GET /relayapi/{token}/realtime?model=m HTTP/1.1\r\nhost: x\r\nupgrade: websocket\r\nconnection: Upgrade\r\n\
         sec-websocket-version: 13\r\nsec-websocket-key: dGhlIHNhbXBsZSBub25jZQ==\r\n\r\n"
    );
    s.write_all(req.as_bytes()).await.unwrap();
    let resp = read_response(&mut s, &mut Vec::new(), false).await.unwrap();
    assert_eq!(resp.status, 429, "{}", resp.text());
    assert_eq!(resp.json()["error"]["code"], "budget_exhausted");
}

/// The next close frame the client reads (skipping data frames): its code and reason.
async fn client_reads_close(s: &mut TcpStream, buf: &mut Vec<u8>) -> (u16, String) {
    loop {
        if let Some((_, op, payload, used)) = parse(buf, false) {
            buf.drain(..used);
            if op == 0x8 {
                let code = u16::from_be_bytes([payload[0], payload[1]]);
                return (code, String::from_utf8(payload[2..].to_vec()).unwrap());
            }
            continue;
        }
        let mut tmp = [0u8; 4096];
        let n = s.read(&mut tmp).await.unwrap();
        assert!(n > 0, "the relay closed without a close frame");
        buf.extend_from_slice(&tmp[..n]);
    }
}

#[tokio::test]
async fn a_session_is_closed_with_1008_on_both_legs_when_its_seconds_run_out() {
    let (base, seen) = provider(None).await;
    let relay = Relay::start(config(&base));
    let c = Claims {
        ssec: Some(1),
        ..relay.claims("openai", Some(5))
    };
    let token = relay.mint(&c);
    let (mut s, head, mut buf) = open(&relay, &token, "").await;
    assert!(head.starts_with("HTTP/1.1 101"), "{head}");
    // The session works until the cap: an event goes through and comes back.
    let mut r = MessageReader::default();
    r.next(&mut s, &mut buf, false).await; // session.created
    s.write_all(&client_frame(true, 0x1, br#"{"type":"ping"}"#))
        .await
        .unwrap();
    assert_eq!(
        r.next(&mut s, &mut buf, false).await,
        Some(Msg::Text(r#"{"type":"ping"}"#.into()))
    );
    // Then the relay closes it: 1008 with a reason that names the limit and nothing of the token.
    let (code, reason) = client_reads_close(&mut s, &mut buf).await;
    assert_eq!(
        (code, reason.as_str()),
        (1008, "session time limit reached")
    );
    // The client's connection ends after the close frame.
    let mut rest = Vec::new();
    s.read_to_end(&mut rest).await.unwrap();
    // The provider was told with the same close frame (masked, as a client's must be), and the
    // session counted as the one call it is.
    let mut told = false;
    for _ in 0..250 {
        told = seen.lock().unwrap().iter().any(|l| l == "close 1008");
        if told {
            break;
        }
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    assert!(told, "{:?}", seen.lock().unwrap());
    let doc = relay
        .admin("GET", &format!("/admin/v1/tokens/{}", c.jti), "")
        .await
        .json();
    assert_eq!(doc["calls_used"], 1, "{doc}");
    // A provider secret or a WebRTC call would escape the cap: refused, nothing reaches the provider.
    for path in ["realtime/client_secrets", "realtime/calls"] {
        let c = Claims {
            ssec: Some(60),
            paths: Some(vec![format!("/{path}")]),
            ..relay.claims("openai", None)
        };
        let r = request(
            relay.addr,
            "POST",
            &format!("/relayapi/{}/{path}", relay.mint(&c)),
            &[("content-type", "application/json")],
            "{}",
        )
        .await;
        assert_eq!(r.status, 403, "{}", r.text());
        assert_eq!(r.json()["error"]["code"], "limit_not_enforceable");
    }
    assert_eq!(
        seen.lock()
            .unwrap()
            .iter()
            .filter(|l| l.starts_with("POST"))
            .count(),
        0
    );
}

/// Open a session with the token in the path, at `target` (relative to the relay URL), offering the
/// `realtime` subprotocol the mock provider chooses.
async fn open_path(relay: &Relay, token: &str, target: &str) -> (TcpStream, String, Vec<u8>) {
    let mut s = TcpStream::connect(relay.addr).await.unwrap();
    let req = format!(
        "GET /relayapi/{token}/{target} HTTP/1.1\r\nhost: x\r\nupgrade: websocket\r\n\
         connection: Upgrade\r\nsec-websocket-version: 13\r\nsec-websocket-key: dGhlIHNhbXBsZSBub25jZQ==\r\n\
         sec-websocket-protocol: realtime\r\n\r\n"
    );
    s.write_all(req.as_bytes()).await.unwrap();
    let mut buf = Vec::new();
    loop {
        let mut tmp = [0u8; 4096];
        let n = s.read(&mut tmp).await.unwrap();
        assert!(n > 0, "closed: {}", String::from_utf8_lossy(&buf));
        buf.extend_from_slice(&tmp[..n]);
        if let Some(i) = buf.windows(4).position(|w| w == b"\r\n\r\n") {
            let head = String::from_utf8_lossy(&buf[..i + 4]).to_string();
            buf.drain(..i + 4);
            return (s, head, buf);
        }
    }
}

/// Wait until the provider has seen `line` (it records handshakes, text messages and close codes).
async fn provider_saw(seen: &Seen, line: &str) -> bool {
    for _ in 0..250 {
        if seen.lock().unwrap().iter().any(|l| l == line) {
            return true;
        }
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    false
}

#[tokio::test]
async fn a_session_update_to_a_model_outside_the_token_closes_the_session_before_it_arrives() {
    let (base, seen) = provider(None).await;
    let relay = Relay::start(config(&base));
    let c = Claims {
        models: Some(vec!["gpt-realtime".into()]),
        ..relay.claims("openai", Some(5))
    };
    let token = relay.mint(&c);
    let (mut s, head, mut buf) = open(&relay, &token, "").await;
    assert!(head.starts_with("HTTP/1.1 101"), "{head}");
    let mut r = MessageReader::default();
    r.next(&mut s, &mut buf, false).await; // session.created
                                           // An allowed model (spelled with an escape) passes, as does every other event.
    let allowed =
        r#"{"type":"session.update","session":{"model":"gpt\u002drealtime","voice":"alloy"}}"#;
    s.write_all(&client_frame(true, 0x1, allowed.as_bytes()))
        .await
        .unwrap();
    assert_eq!(
        r.next(&mut s, &mut buf, false).await,
        Some(Msg::Text(allowed.into()))
    );
    // Another model, in a message fragmented so that its name ends in the second fragment, with a
    // ping between: the first fragment passes, the second never reaches the provider.
    let first = br#"{"type":"session.update","session":{"model":"gpt-4o-realtime"#;
    s.write_all(&client_frame(false, 0x1, first)).await.unwrap();
    s.write_all(&client_frame(true, 0x9, b"p")).await.unwrap();
    s.write_all(&client_frame(true, 0x0, br#"-preview"}}"#))
        .await
        .unwrap();
    let (code, reason) = client_reads_close(&mut s, &mut buf).await;
    assert_eq!(
        (code, reason.as_str()),
        (1008, "model not allowed by the token")
    );
    assert!(
        provider_saw(&seen, "close 1008").await,
        "{:?}",
        seen.lock().unwrap()
    );
    let texts: Vec<String> = seen
        .lock()
        .unwrap()
        .iter()
        .filter(|l| l.starts_with("text "))
        .cloned()
        .collect();
    assert_eq!(
        texts,
        vec![format!("text {allowed}")],
        "only the allowed event arrived"
    );
}

#[tokio::test]
async fn a_gemini_live_setup_is_held_to_the_token_models() {
    let (base, seen) = provider(None).await;
    let mut cfg = config(&base);
    cfg["providers"]["gemini"] = json!({"base_url": base});
    let relay = Relay::start(cfg);
    let live = "ws/google.ai.generativelanguage.v1beta.GenerativeService.BidiGenerateContent";
    let c = Claims {
        models: Some(vec!["gemini-live-test".into()]),
        ..relay.claims("gemini", Some(5))
    };
    let token = relay.mint(&c);
    let setup = |m: &str| format!(r#"{{"setup":{{"model":"{m}"}}}}"#);
    let (mut s, head, mut buf) = open_path(&relay, &token, live).await;
    assert!(head.starts_with("HTTP/1.1 101"), "{head}");
    let mut r = MessageReader::default();
    r.next(&mut s, &mut buf, false).await; // the mock's first event
    let ok = setup("models/gemini-live-test");
    s.write_all(&client_frame(true, 0x1, ok.as_bytes()))
        .await
        .unwrap();
    assert_eq!(r.next(&mut s, &mut buf, false).await, Some(Msg::Text(ok)));
    let (mut s, head, mut buf) = open_path(&relay, &token, live).await;
    assert!(head.starts_with("HTTP/1.1 101"), "{head}");
    let bad = setup("models/gemini-2.5-pro");
    s.write_all(&client_frame(true, 0x1, bad.as_bytes()))
        .await
        .unwrap();
    let (code, reason) = client_reads_close(&mut s, &mut buf).await;
    assert_eq!(
        (code, reason.as_str()),
        (1008, "model not allowed by the token")
    );
    assert!(provider_saw(&seen, "close 1008").await);
    assert!(!seen
        .lock()
        .unwrap()
        .iter()
        .any(|l| l.contains("gemini-2.5-pro")));
}

#[tokio::test]
async fn a_client_secret_is_minted_only_for_a_session_model_the_token_allows() {
    let up = MockUpstream::start(false).await;
    let relay = Relay::start(test_config(&up));
    let post = |token: String, body: &'static str| {
        let addr = relay.addr;
        async move {
            request(
                addr,
                "POST",
                &format!("/relayapi/{token}/realtime/client_secrets"),
                &[("content-type", "application/json")],
                body,
            )
            .await
        }
    };
    let paths = Some(vec!["/realtime/client_secrets".to_string()]);
    let limited = Claims {
        models: Some(vec!["gpt-realtime".into()]),
        paths: paths.clone(),
        ..relay.claims("openai", None)
    };
    let token = relay.mint(&limited);
    let r = post(
        token.clone(),
        r#"{"session":{"type":"realtime","model":"gpt-realtime"}}"#,
    )
    .await;
    assert_eq!(r.status, 200, "{}", r.text());
    let sent = up.requests().pop().unwrap().json();
    assert_eq!(sent["session"]["model"], "gpt-realtime", "{sent}");
    for body in [
        r#"{"session":{"type":"realtime","model":"gpt-4o-realtime-preview"}}"#,
        r#"{"session":{"type":"realtime"}}"#,
    ] {
        let r = post(token.clone(), body).await;
        assert_eq!(r.status, 403, "{}", r.text());
        assert_eq!(r.json()["error"]["code"], "model_not_allowed");
    }
    let r = post(
        token,
        r#"{"session":{"model":"gpt-realtime","model":"gpt-4o"}}"#,
    )
    .await;
    assert_eq!(r.status, 400, "{}", r.text());
    assert_eq!(up.count(), 1, "refused requests reach nothing");
    // A forced model is what the secret's sessions use, whatever the page asked for.
    let forced = Claims {
        ext: Some(relayapi::token::format::Ext {
            rep_m: Some("gpt-realtime-mini".into()),
        }),
        paths,
        ..relay.claims("openai", None)
    };
    let r = post(
        relay.mint(&forced),
        r#"{"session":{"type":"realtime","model":"gpt-realtime"}}"#,
    )
    .await;
    assert_eq!(r.status, 200, "{}", r.text());
    let sent = up.requests().pop().unwrap().json();
    assert_eq!(sent["session"]["model"], "gpt-realtime-mini", "{sent}");
    assert!(
        sent["expires_after"]["seconds"].as_u64().is_some(),
        "{sent}"
    );
}

#[tokio::test]
async fn broken_upgrades_and_refused_sessions_cost_nothing() {
    let (base, seen) = provider(Some(400)).await;
    let relay = Relay::start(config(&base));
    let c = relay.claims("openai", Some(1));
    let token = relay.mint(&c);
    // Version 8 is not RFC 6455: refused before the provider is asked.
    let mut s = TcpStream::connect(relay.addr).await.unwrap();
    let req = format!(
        "GET /relayapi/{token}/realtime HTTP/1.1\r\nhost: x\r\nupgrade: websocket\r\nconnection: Upgrade\r\n\
         sec-websocket-version: 8\r\nsec-websocket-key: dGhlIHNhbXBsZSBub25jZQ==\r\n\r\n"
    );
    s.write_all(req.as_bytes()).await.unwrap();
    let resp = read_response(&mut s, &mut Vec::new(), false).await.unwrap();
    assert_eq!(resp.status, 400, "{}", resp.text());
    assert!(seen.lock().unwrap().is_empty());
    // The provider refuses the session: its 4xx comes back and the call is given back.
    let mut s = TcpStream::connect(relay.addr).await.unwrap();
    let req = format!(
        "GET /relayapi/{token}/realtime HTTP/1.1\r\nhost: x\r\nupgrade: websocket\r\nconnection: Upgrade\r\n\
         sec-websocket-version: 13\r\nsec-websocket-key: dGhlIHNhbXBsZSBub25jZQ==\r\n\r\n"
    );
    s.write_all(req.as_bytes()).await.unwrap();
    let resp = read_response(&mut s, &mut Vec::new(), false).await.unwrap();
    assert_eq!(resp.status, 400, "{}", resp.text());
    assert_eq!(resp.json()["error"]["code"], "upstream_refused_upgrade");
    assert_eq!(seen.lock().unwrap().len(), 1);
    let doc = relay
        .admin("GET", &format!("/admin/v1/tokens/{}", c.jti), "")
        .await
        .json();
    assert_eq!(doc["calls_used"], 0, "{doc}");
}

#[tokio::test]
async fn a_relay_that_shuts_down_closes_its_sessions_with_going_away() {
    let (base, _) = provider(None).await;
    let mut relay = Relay::start(config(&base));
    let token = relay.token("openai", None);
    let (mut s, head, mut buf) = open(&relay, &token, "").await;
    assert!(head.starts_with("HTTP/1.1 101"), "{head}");
    let mut r = MessageReader::default();
    r.next(&mut s, &mut buf, false).await; // session.created
    let status = tokio::task::spawn_blocking(move || relay.terminate());
    // The client is told to go elsewhere at once, not cut when the grace period ends.
    assert_eq!(
        r.next(&mut s, &mut buf, false).await,
        Some(Msg::Close(1001))
    );
    assert!(status.await.unwrap().success());
}

#[tokio::test]
async fn provider_secrets_need_an_explicit_path_and_never_outlive_the_token() {
    let up = MockUpstream::start(false).await;
    let relay = Relay::start(test_config(&up));
    let post = |token: String, body: &'static str| {
        let addr = relay.addr;
        async move {
            request(
                addr,
                "POST",
                &format!("/relayapi/{token}/realtime/client_secrets"),
                &[("content-type", "application/json")],
                body,
            )
            .await
        }
    };
    let body =
        r#"{"expires_after":{"anchor":"created_at","seconds":7200},"session":{"type":"realtime"}}"#;
    // A token that does not name the endpoint cannot hand out a provider key.
    let r = post(relay.token("openai", None), body).await;
    assert_eq!(r.status, 403, "{}", r.text());
    assert_eq!(r.json()["error"]["code"], "endpoint_not_allowed");
    assert_eq!(up.count(), 0);
    // One that does gets a secret that expires with it (an hour of life left at most).
    let c = Claims {
        paths: Some(vec!["/realtime/client_secrets".into()]),
        ..relay.claims("openai", None)
    };
    let r = post(relay.mint(&c), body).await;
    assert_eq!(r.status, 200, "{}", r.text());
    let sent = up.requests().pop().unwrap().json();
    let seconds = sent["expires_after"]["seconds"].as_u64().unwrap();
    assert!((3590..=3600).contains(&seconds), "{sent}");
    // A spend limit cannot follow a provider key: refused even when the path is named.
    let b = Claims {
        bud: Some(Budget {
            tok: Some(1000),
            cost: None,
        }),
        ..c.clone()
    };
    let b = Claims {
        jti: relay.claims("openai", None).jti,
        ..b
    };
    let r = post(relay.mint(&b), body).await;
    assert_eq!(r.status, 403, "{}", r.text());
    assert_eq!(r.json()["error"]["code"], "limit_not_enforceable");
}

#[tokio::test]
async fn a_webrtc_offer_passes_the_model_limits_where_the_provider_reads_the_model() {
    let up = MockUpstream::start(false).await;
    let relay = Relay::start(test_config(&up));
    let c = Claims {
        models: Some(vec!["gpt-realtime".into()]),
        ..relay.claims("openai", None)
    };
    let token = relay.mint(&c);
    let offer = "v=0\r\no=- 1 2 IN IP4 127.0.0.1\r\ns=-\r\n";
    let call = |query: &str, ct: &'static str, body: String| {
        let target = format!("/relayapi/{token}/realtime/calls{query}");
        let addr = relay.addr;
        async move { request(addr, "POST", &target, &[("content-type", ct)], &body).await }
    };
    let r = call("?model=gpt-realtime", "application/sdp", offer.into()).await;
    assert_eq!(r.status, 200, "{}", r.text());
    let got = up.requests().pop().unwrap();
    assert_eq!(
        got.body,
        offer.as_bytes(),
        "the offer is forwarded untouched"
    );
    assert_eq!(
        got.header("authorization"),
        Some(&*format!("Bearer {FAKE_KEY}"))
    );
    let r = call("?model=gpt-4o-realtime", "application/sdp", offer.into()).await;
    assert_eq!(
        (r.status, r.json()["error"]["code"].clone()),
        (403, json!("model_not_allowed"))
    );
    let form = |model: &str| {
        format!(
            "--B\r\nContent-Disposition: form-data; name=\"sdp\"\r\n\r\n{offer}\r\n--B\r\n\
             Content-Disposition: form-data; name=\"session\"\r\n\r\n{{\"type\":\"realtime\",\"model\":\"{model}\"}}\r\n--B--\r\n"
        )
    };
    let r = call("", "multipart/form-data; boundary=B", form("gpt-realtime")).await;
    assert_eq!(r.status, 200, "{}", r.text());
    let r = call("", "multipart/form-data; boundary=B", form("gpt-4o")).await;
    assert_eq!(r.status, 403, "{}", r.text());
    assert_eq!(up.count(), 2, "refused offers reach nothing");
    // A spend limit cannot follow media that bypasses the relay.
    let b = Claims {
        bud: Some(Budget {
            tok: Some(1000),
            cost: None,
        }),
        ..relay.claims("openai", None)
    };
    let target = format!("/relayapi/{}/realtime/calls", relay.mint(&b));
    let r = request(
        relay.addr,
        "POST",
        &target,
        &[("content-type", "application/sdp")],
        offer,
    )
    .await;
    assert_eq!(
        r.json()["error"]["code"],
        "limit_not_enforceable",
        "{}",
        r.text()
    );
}
