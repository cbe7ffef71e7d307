//! The WebSocket opening handshake (RFC 6455 §4), as pure functions over heads: whether a client's
//! request is a well-formed upgrade (GET, HTTP/1.1, `Upgrade: websocket`, `Connection: upgrade`,
//! version 13, a key of 16 base64 bytes, no body), the relay token a browser carries as a subprotocol
//! entry (`openai-insecure-api-key.<token>`, what the official `openai` browser client sends with the
//! relay token as its API key; removed before the provider sees the list), the upgrade headers of the
//! relay's own request to the provider (a fresh key, no extensions, so every frame stays readable), and
//! the check of the provider's 101 (its `Sec-WebSocket-Accept` proven, no extension, a subprotocol the
//! client offered) before the client gets its own 101.

use base64::engine::general_purpose::STANDARD;
use base64::Engine as _;
use sha1::{Digest, Sha1};

use crate::http::head::{trim_ows, RequestHead, ResponseHead, Version};

/// The GUID of §1.3 appended to a key before hashing.
const GUID: &str = "258EAFA5-E914-47DA-95CA-C5AB0DC85B11";
/// The subprotocol prefix under which browser clients carry an API key (and so the relay token).
pub const KEY_PROTOCOL_PREFIX: &str = "openai-insecure-api-key.";

/// Why an upgrade is refused; the client gets 400 (426 for a version other than 13).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum HandshakeError {
    NotGet,
    NotHttp11,
    UpgradeHeader,
    ConnectionHeader,
    /// `Sec-WebSocket-Version` missing or not 13.
    Version,
    /// `Sec-WebSocket-Key` missing, repeated, or not 16 bytes in base64.
    Key,
    /// A subprotocol list that is not comma-separated tokens.
    Protocols,
    /// The request has a body.
    Body,
}

impl HandshakeError {
    pub fn why(self) -> &'static str {
        match self {
            HandshakeError::NotGet => "a WebSocket upgrade must be a GET",
            HandshakeError::NotHttp11 => "a WebSocket upgrade needs HTTP/1.1",
            HandshakeError::UpgradeHeader => "`Upgrade` must name websocket",
            HandshakeError::ConnectionHeader => "`Connection` must include upgrade",
            HandshakeError::Version => "`Sec-WebSocket-Version` must be 13",
            HandshakeError::Key => "`Sec-WebSocket-Key` must be 16 bytes in base64, sent once",
            HandshakeError::Protocols => "`Sec-WebSocket-Protocol` must be a list of tokens",
            HandshakeError::Body => "a WebSocket upgrade carries no body",
        }
    }
}

/// Does this request ask for a WebSocket (any `Upgrade` naming websocket)? Whether it asks well is
/// [`check_request`]'s business.
pub fn wants_websocket(head: &RequestHead) -> bool {
    head.headers_named("upgrade")
        .any(|v| has_token(v, "websocket"))
}

/// A client's upgrade request, checked.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Upgrade {
    /// The client's key, for its `Sec-WebSocket-Accept`.
    pub key: String,
    /// The subprotocols the client offered, the relay token's entry removed.
    pub protocols: Vec<String>,
}

/// Check a client's upgrade request (`has_body`: its framing announced a body).
pub fn check_request(head: &RequestHead, has_body: bool) -> Result<Upgrade, HandshakeError> {
    if head.method() != "GET" {
        return Err(HandshakeError::NotGet);
    }
    if head.version != Version::Http11 {
        return Err(HandshakeError::NotHttp11);
    }
    if has_body {
        return Err(HandshakeError::Body);
    }
    if !wants_websocket(head) {
        return Err(HandshakeError::UpgradeHeader);
    }
    if !head
        .headers_named("connection")
        .any(|v| has_token(v, "upgrade"))
    {
        return Err(HandshakeError::ConnectionHeader);
    }
    let mut versions = head.headers_named("sec-websocket-version");
    match (versions.next().map(trim_ows), versions.next()) {
        (Some(b"13"), None) => {}
        _ => return Err(HandshakeError::Version),
    }
    let mut keys = head.headers_named("sec-websocket-key");
    let key = match (keys.next().map(trim_ows), keys.next()) {
        (Some(k), None) => k,
        _ => return Err(HandshakeError::Key),
    };
    let key = std::str::from_utf8(key).map_err(|_| HandshakeError::Key)?;
    if key.len() != 24 || STANDARD.decode(key).map(|k| k.len()) != Ok(16) {
        return Err(HandshakeError::Key);
    }
    let protocols = offered_protocols(head)?
        .into_iter()
        .filter(|p| !p.starts_with(KEY_PROTOCOL_PREFIX))
        .collect();
    Ok(Upgrade {
        key: key.to_string(),
        protocols,
    })
}

/// Every subprotocol entry the client offered, in order, over all `Sec-WebSocket-Protocol` fields.
fn offered_protocols(head: &RequestHead) -> Result<Vec<String>, HandshakeError> {
    let mut out = Vec::new();
    for v in head.headers_named("sec-websocket-protocol") {
        let v = std::str::from_utf8(v).map_err(|_| HandshakeError::Protocols)?;
        for p in v.split(',').map(|p| p.trim_matches([' ', '\t'])) {
            if p.is_empty() || !p.bytes().all(is_tchar) {
                return Err(HandshakeError::Protocols);
            }
            out.push(p.to_string());
        }
    }
    Ok(out)
}

/// The relay token carried as a subprotocol entry, if any.
pub fn token_in_protocols(head: &RequestHead) -> Option<&str> {
    head.headers_named("sec-websocket-protocol")
        .filter_map(|v| std::str::from_utf8(v).ok())
        .flat_map(|v| v.split(','))
        .filter_map(|p| {
            p.trim_matches([' ', '\t'])
                .strip_prefix(KEY_PROTOCOL_PREFIX)
        })
        .next()
}

/// RFC 9110 token characters (a subprotocol is a token, RFC 6455 §4.1).
fn is_tchar(b: u8) -> bool {
    b.is_ascii_alphanumeric() || b"!#$%&'*+-.^_`|~".contains(&b)
}

/// Whether a comma-separated header value holds `token`, compared case-insensitively.
fn has_token(value: &[u8], token: &str) -> bool {
    value
        .split(|&b| b == b',')
        .any(|t| trim_ows(t).eq_ignore_ascii_case(token.as_bytes()))
}

/// `Sec-WebSocket-Accept` for a key (§4.2.2).
pub fn accept_for(key: &str) -> String {
    let mut h = Sha1::new();
    h.update(key.as_bytes());
    h.update(GUID.as_bytes());
    STANDARD.encode(h.finalize())
}

/// A fresh key for the relay's own handshake with the provider, from 16 random bytes.
pub fn new_key(random: [u8; 16]) -> String {
    STANDARD.encode(random)
}

/// The upgrade fields of the relay's request to the provider (the rest of the head, credentials
/// included, is the ordinary forwarded request's). No `Sec-WebSocket-Extensions`: compressed frames
/// could not be metered.
pub fn upstream_fields(key: &str, protocols: &[String]) -> String {
    let mut out = format!(
        "upgrade: websocket\r\nconnection: Upgrade\r\nsec-websocket-version: 13\r\nsec-websocket-key: {key}\r\n"
    );
    if !protocols.is_empty() {
        out.push_str("sec-websocket-protocol: ");
        out.push_str(&protocols.join(", "));
        out.push_str("\r\n");
    }
    out
}

/// Why the provider's answer to the upgrade is not a usable WebSocket.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum UpstreamHandshakeError {
    /// Not 101 (the caller passes other answers on as errors).
    NotSwitching,
    Headers,
    /// `Sec-WebSocket-Accept` does not prove the key.
    Accept,
    /// The provider chose an extension the relay did not offer.
    Extension,
    /// The provider chose a subprotocol the client did not offer.
    Protocol,
}

/// Check the provider's 101 against the relay's `key` and the client's offered `protocols`; returns
/// the subprotocol it chose, to pass on to the client.
pub fn check_response(
    resp: &ResponseHead,
    key: &str,
    protocols: &[String],
) -> Result<Option<String>, UpstreamHandshakeError> {
    if resp.status != 101 {
        return Err(UpstreamHandshakeError::NotSwitching);
    }
    let named = |name: &str, token: &str| resp.headers_named(name).any(|v| has_token(v, token));
    if !named("upgrade", "websocket") || !named("connection", "upgrade") {
        return Err(UpstreamHandshakeError::Headers);
    }
    let mut accepts = resp.headers_named("sec-websocket-accept");
    match (accepts.next().map(trim_ows), accepts.next()) {
        (Some(a), None) if a == accept_for(key).as_bytes() => {}
        _ => return Err(UpstreamHandshakeError::Accept),
    }
    if resp
        .headers_named("sec-websocket-extensions")
        .next()
        .is_some()
    {
        return Err(UpstreamHandshakeError::Extension);
    }
    let mut chosen = resp.headers_named("sec-websocket-protocol");
    match (chosen.next().map(trim_ows), chosen.next()) {
        (None, _) => Ok(None),
        (Some(p), None) => {
            let p = std::str::from_utf8(p).map_err(|_| UpstreamHandshakeError::Protocol)?;
            if protocols.iter().any(|o| o == p) {
                Ok(Some(p.to_string()))
            } else {
                Err(UpstreamHandshakeError::Protocol)
            }
        }
        _ => Err(UpstreamHandshakeError::Protocol),
    }
}

/// The client's 101.
pub fn client_switching(key: &str, protocol: Option<&str>, rid: &str) -> Vec<u8> {
    let mut out = format!(
        "HTTP/1.1 101 Switching Protocols\r\nupgrade: websocket\r\nconnection: Upgrade\r\nsec-websocket-accept: {}\r\n",
        accept_for(key)
    );
    if let Some(p) = protocol {
        out.push_str(&format!("sec-websocket-protocol: {p}\r\n"));
    }
    out.push_str(&format!("x-request-id: {rid}\r\n\r\n"));
    out.into_bytes()
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::http::head::{parse_request_head, parse_response_head, HeadLimits};

    const LIMITS: HeadLimits = HeadLimits {
        max_head_bytes: 16 * 1024,
        max_headers: 64,
        max_uri_bytes: 8 * 1024,
    };

    fn req(extra: &str) -> RequestHead {
        let text = format!("GET /relayapi/realtime?model=m HTTP/1.1\r\nhost: x\r\n{extra}\r\n");
        parse_request_head(text.as_bytes(), &LIMITS)
            .unwrap()
            .unwrap()
    }

    const GOOD: &str = "upgrade: websocket\r\nconnection: keep-alive, Upgrade\r\nsec-websocket-version: 13\r\nsec-websocket-key: dGhlIHNhbXBsZSBub25jZQ==\r\n";

    #[test]
    fn the_rfc_example_accept() {
        assert_eq!(
            accept_for("dGhlIHNhbXBsZSBub25jZQ=="),
            "s3pPLMBiTxaQ9kYGzzhZRbK+xOo="
        );
    }

    #[test]
    fn a_browser_upgrade_with_the_token_as_a_subprotocol() {
        let h = req(&format!(
            "{GOOD}sec-websocket-protocol: realtime, openai-insecure-api-key.rt1.abc_-.x\r\n"
        ));
        assert!(wants_websocket(&h));
        assert_eq!(token_in_protocols(&h), Some("rt1.abc_-.x"));
        let u = check_request(&h, false).unwrap();
        assert_eq!(u.protocols, ["realtime"]);
        assert_eq!(u.key, "dGhlIHNhbXBsZSBub25jZQ==");
    }

    #[test]
    fn malformed_upgrades_are_refused() {
        let cases = [
            ("upgrade: websocket\r\nsec-websocket-version: 13\r\nsec-websocket-key: dGhlIHNhbXBsZSBub25jZQ==\r\n", HandshakeError::ConnectionHeader),
            ("upgrade: websocket\r\nconnection: upgrade\r\nsec-websocket-version: 8\r\nsec-websocket-key: dGhlIHNhbXBsZSBub25jZQ==\r\n", HandshakeError::Version),
            ("upgrade: websocket\r\nconnection: upgrade\r\nsec-websocket-version: 13\r\nsec-websocket-key: c2hvcnQ=\r\n", HandshakeError::Key),
            ("upgrade: websocket\r\nconnection: upgrade\r\nsec-websocket-version: 13\r\n", HandshakeError::Key),
            ("upgrade: h2c\r\nconnection: upgrade\r\nsec-websocket-version: 13\r\nsec-websocket-key: dGhlIHNhbXBsZSBub25jZQ==\r\n", HandshakeError::UpgradeHeader),
        ];
        for (extra, want) in cases {
            assert_eq!(check_request(&req(extra), false), Err(want), "{extra}");
        }
        let twice = format!("{GOOD}sec-websocket-key: dGhlIHNhbXBsZSBub25jZQ==\r\n");
        assert_eq!(check_request(&req(&twice), false), Err(HandshakeError::Key));
        let bad_list = format!("{GOOD}sec-websocket-protocol: a b\r\n");
        assert_eq!(
            check_request(&req(&bad_list), false),
            Err(HandshakeError::Protocols)
        );
        assert_eq!(check_request(&req(GOOD), true), Err(HandshakeError::Body));
    }

    fn resp(text: &str) -> ResponseHead {
        parse_response_head(text.as_bytes(), &LIMITS)
            .unwrap()
            .unwrap()
    }

    #[test]
    fn the_providers_101_is_proven() {
        let key = new_key([7; 16]);
        let offered = vec!["realtime".to_string()];
        let ok = format!(
            "HTTP/1.1 101 Switching Protocols\r\nUpgrade: websocket\r\nConnection: Upgrade\r\nSec-WebSocket-Accept: {}\r\nSec-WebSocket-Protocol: realtime\r\n\r\n",
            accept_for(&key)
        );
        assert_eq!(
            check_response(&resp(&ok), &key, &offered),
            Ok(Some("realtime".into()))
        );
        let wrong = ok.replace(&accept_for(&key), &accept_for("x"));
        assert_eq!(
            check_response(&resp(&wrong), &key, &offered),
            Err(UpstreamHandshakeError::Accept)
        );
        let ext = ok.replace(
            "\r\n\r\n",
            "\r\nSec-WebSocket-Extensions: permessage-deflate\r\n\r\n",
        );
        assert_eq!(
            check_response(&resp(&ext), &key, &offered),
            Err(UpstreamHandshakeError::Extension)
        );
        let other = ok.replace("Protocol: realtime", "Protocol: chat");
        assert_eq!(
            check_response(&resp(&other), &key, &offered),
            Err(UpstreamHandshakeError::Protocol)
        );
        let fields = upstream_fields(&key, &offered);
        assert!(fields.contains("sec-websocket-protocol: realtime\r\n"));
        assert!(!fields.contains("extensions"));
        let hello = String::from_utf8(client_switching(
            "dGhlIHNhbXBsZSBub25jZQ==",
            Some("realtime"),
            "r-1",
        ))
        .unwrap();
        assert!(hello.starts_with("HTTP/1.1 101 Switching Protocols\r\n"));
        assert!(hello.contains("sec-websocket-accept: s3pPLMBiTxaQ9kYGzzhZRbK+xOo=\r\n"));
    }
}
