//! Token format v1 (`docs/token-format.md`): the claims, their canonical JSON, minting and verification.
//!
//! Pure code: no I/O, no clock, no global randomness. Time (`now`) and randomness (`rng`) come from the
//! caller so that the shared vectors in `tests/vectors/` are reproducible. Every way a token can fail
//! before it is known to be authentic and well-formed (§7 steps 1-6) is the one opaque [`InvalidToken`]:
//! the relay must not become an oracle that tells an attacker which byte was wrong. The time checks that
//! follow (steps 7-8) have their own errors in [`TimeError`]; revocation and call counting belong to the
//! relay's store, and the key ring and `.rai` loading to `token/rai.rs`.

use std::fmt;
use std::net::{IpAddr, Ipv4Addr, Ipv6Addr};

use aes_gcm::aead::{Aead, KeyInit, Payload};
use aes_gcm::{Aes256Gcm, Nonce};
use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use base64::Engine as _;
use hkdf::Hkdf;
use serde::de::{IgnoredAny, MapAccess, Visitor};
use serde::{Deserialize, Deserializer};
use sha2::Sha256;
use zeroize::Zeroizing;

use crate::token::rai::{is_valid_key_id, is_valid_tenant_id, Keyring};
use crate::token::secret::SecretKey;
pub use crate::token::secret::SecretString;

/// Longest token text, in bytes (§3; a token is ASCII, so bytes and characters agree). Verifiers check it
/// before any decoding so that an attacker cannot make the relay base64-decode or allocate for
/// arbitrarily long input; minters refuse to produce a longer token (§6 step 8).
pub const MAX_TOKEN_LEN: usize = 4096;

/// Most levels of nested arrays and objects in a claims document (§7.1 J6; the top-level object is level
/// 1). Claims need 2; the same limit holds in both SDKs and for `.rai` files, and it is checked by a flat
/// scan before serde_json (whose own limit is 128) sees the text.
pub const MAX_JSON_DEPTH: usize = 16;

/// Every token text starts with this (§3).
pub const PREFIX: &str = "rt1.";

const VERSION: u8 = 0x01;
const MODE_SYMMETRIC: u8 = 0x01;
/// Bytes of version, mode and kid_len.
const FIXED_HEADER_LEN: usize = 3;
pub const SALT_LEN: usize = 16;
const TAG_LEN: usize = 16;
const MAX_KID_LEN: usize = 32;
/// HKDF info string (§4).
const HKDF_INFO: &[u8] = b"relayapi token v1";
/// AES-256 key plus 96-bit GCM nonce (§4).
const OKM_LEN: usize = 32 + 12;

/// Every integer claim is below 2^53 so that JavaScript minters and verifiers see exact values (§5).
pub const MAX_INT: u64 = (1 << 53) - 1;
/// Upper bound of both `rate.n` and `rate.s`: one year of seconds (§5).
const MAX_RATE: u64 = 86_400 * 365;
const MAX_CONC: u64 = 10_000;
const MAX_MODELS: usize = 64;
const MAX_KEY_LEN: usize = 1024;
const MAX_PRV_LEN: usize = 32;
/// `ext.rep_m` and `models` entry length in Unicode scalar values (§5.1.3).
const MAX_TEXT_CHARS: usize = 256;
/// `kref` length in bytes (§5.1.9, the `config.json` `api_keys` naming rule).
const MAX_KREF_LEN: usize = 64;
/// `url` length in bytes; a base URL longer than this is a mistake, not a deployment.
const MAX_URL_LEN: usize = 2048;
/// `uid` length in bytes of printable ASCII (§5.1.18).
const MAX_UID_LEN: usize = 128;

/// The authenticated contents of a token (§5). Field order is the canonical member order.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Claims {
    pub jti: String,
    pub tid: String,
    pub iat: u64,
    pub exp: u64,
    pub prv: String,
    pub key: Option<SecretString>,
    pub kref: Option<String>,
    pub url: Option<String>,
    pub max: Option<u64>,
    pub ext: Option<Ext>,
    pub rate: Option<Rate>,
    pub conc: Option<u32>,
    pub models: Option<Vec<String>>,
    pub paths: Option<Vec<String>>,
    pub origins: Option<Vec<String>>,
    pub ips: Option<Vec<IpNet>>,
    pub mtok: Option<u64>,
    pub mtok_mode: Option<MtokMode>,
    pub uid: Option<String>,
}

/// Extension info carried over from the original format.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct Ext {
    /// Forced model, written over the `model` of JSON request bodies.
    pub rep_m: Option<String>,
}

/// At most `n` calls in any window of `s` seconds.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Rate {
    pub n: u64,
    pub s: u64,
}

/// What the relay does with a request whose token ceiling (`mtok`) is exceeded.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum MtokMode {
    /// Lower the request's value to the ceiling.
    #[default]
    Clamp,
    /// Refuse the request (403).
    Reject,
}

impl MtokMode {
    pub fn as_str(self) -> &'static str {
        match self {
            MtokMode::Clamp => "clamp",
            MtokMode::Reject => "reject",
        }
    }
}

/// An IP range in CIDR form, e.g. `203.0.113.0/24` or `2001:db8::/32`.
///
/// Two parsers: [`IpNet::parse_canonical`] for the `ips` claim, where only the one §5.1.16 spelling of
/// each range is accepted, and the lenient [`IpNet::parse`] for `config.json` lists, where host bits are
/// ignored when matching. `Display` always writes the canonical address text.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub struct IpNet {
    addr: IpAddr,
    prefix: u8,
}

impl IpNet {
    /// `None` unless `addr` and `prefix` form a valid range (prefix at most 32 for IPv4, 128 for IPv6).
    pub fn new(addr: IpAddr, prefix: u8) -> Option<Self> {
        let max = if addr.is_ipv4() { 32 } else { 128 };
        (prefix <= max).then_some(IpNet { addr, prefix })
    }

    /// Parses `address/prefix` leniently, for `config.json`: the prefix is plain decimal digits without
    /// sign or leading zeros; the address is what `std::net` accepts (dotted quad without leading zeros,
    /// or RFC 4291 IPv6 without zone); host bits are allowed. A bare address is refused.
    pub fn parse(text: &str) -> Option<Self> {
        let (addr, prefix) = text.split_once('/')?;
        let addr: IpAddr = addr.parse().ok()?;
        let canonical_digits = !prefix.is_empty()
            && prefix.len() <= 3
            && prefix.bytes().all(|b| b.is_ascii_digit())
            && (prefix == "0" || !prefix.starts_with('0'));
        if !canonical_digits {
            return None;
        }
        IpNet::new(addr, prefix.parse().ok()?)
    }

    /// Parses an `ips` entry (§5.1.16): only the canonical spelling, which is exactly what `Display`
    /// writes. A zone id, brackets, leading zeros, upper-case hex, an uncompressed or embedded-IPv4 IPv6
    /// spelling, set host bits and IPv4-mapped addresses are all refused.
    pub fn parse_canonical(text: &str) -> Option<Self> {
        let net = IpNet::parse(text)?;
        (net.is_canonical() && net.to_string() == text).then_some(net)
    }

    /// No address bit set after the prefix, and not an IPv4-mapped IPv6 address (§5.1.16 items 4-5).
    pub fn is_canonical(&self) -> bool {
        let prefix = u32::from(self.prefix);
        match self.addr {
            IpAddr::V4(v4) => u32::from(v4).checked_shl(prefix).unwrap_or(0) == 0,
            IpAddr::V6(v6) => {
                v6.to_ipv4_mapped().is_none()
                    && u128::from(v6).checked_shl(prefix).unwrap_or(0) == 0
            }
        }
    }

    pub fn addr(&self) -> IpAddr {
        self.addr
    }

    pub fn prefix(&self) -> u8 {
        self.prefix
    }

    /// Whether `ip` lies in the range. IPv4-mapped IPv6 addresses (`::ffff:a.b.c.d`, what a dual-stack
    /// socket reports for IPv4 clients) match IPv4 ranges and vice versa, so one range covers a client
    /// however the listener sees it.
    pub fn contains(&self, ip: IpAddr) -> bool {
        match (unmap(self.addr, self.prefix), unmap_ip(ip)) {
            ((IpAddr::V4(net), prefix), IpAddr::V4(ip)) => {
                let mask = u32::MAX.checked_shl(32 - u32::from(prefix)).unwrap_or(0);
                u32::from(net) & mask == u32::from(ip) & mask
            }
            ((IpAddr::V6(net), prefix), IpAddr::V6(ip)) => {
                let mask = u128::MAX.checked_shl(128 - u32::from(prefix)).unwrap_or(0);
                u128::from(net) & mask == u128::from(ip) & mask
            }
            _ => false,
        }
    }
}

/// An IPv4-mapped IPv6 range with a prefix covering the mapping is the matching IPv4 range.
fn unmap(addr: IpAddr, prefix: u8) -> (IpAddr, u8) {
    match addr {
        IpAddr::V6(v6) if prefix >= 96 => match v6.to_ipv4_mapped() {
            Some(v4) => (IpAddr::V4(v4), prefix - 96),
            None => (addr, prefix),
        },
        _ => (addr, prefix),
    }
}

fn unmap_ip(ip: IpAddr) -> IpAddr {
    match ip {
        IpAddr::V6(v6) => v6.to_ipv4_mapped().map_or(ip, IpAddr::V4),
        IpAddr::V4(_) => ip,
    }
}

impl fmt::Display for IpNet {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}/{}", canonical_ip_text(self.addr), self.prefix)
    }
}

/// The §5.1.16 text of an address: dotted quad for IPv4; for IPv6 RFC 5952 §4 (lower-case hex without
/// leading zeros, the first longest run of two or more zero groups as `::`) and never a dotted quad.
/// Written out rather than left to `Ipv6Addr`'s `Display`, whose embedded-IPv4 forms are not part of the
/// contract.
pub fn canonical_ip_text(addr: IpAddr) -> String {
    let v6 = match addr {
        IpAddr::V4(v4) => return v4.to_string(),
        IpAddr::V6(v6) => v6,
    };
    let groups = v6.segments();
    // (start, len) of the first longest run of zero groups, if it is at least two long.
    let mut best: Option<(usize, usize)> = None;
    let mut i = 0;
    while i < groups.len() {
        if groups[i] == 0 {
            let start = i;
            while i < groups.len() && groups[i] == 0 {
                i += 1;
            }
            let len = i - start;
            if len >= 2 && best.is_none_or(|(_, l)| len > l) {
                best = Some((start, len));
            }
        } else {
            i += 1;
        }
    }
    let hex = |gs: &[u16]| {
        gs.iter()
            .map(|g| format!("{g:x}"))
            .collect::<Vec<_>>()
            .join(":")
    };
    match best {
        None => hex(&groups),
        Some((start, len)) => format!("{}::{}", hex(&groups[..start]), hex(&groups[start + len..])),
    }
}

/// The one error of token verification steps 1-6. Deliberately carries no detail.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct InvalidToken;

impl fmt::Display for InvalidToken {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("invalid token")
    }
}

impl std::error::Error for InvalidToken {}

/// The time checks of §7 steps 7-8; each has its own documented error code.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum TimeError {
    NotYetValid,
    Expired,
    LifetimeTooLong,
}

impl TimeError {
    /// The error code the relay answers with (§7).
    pub fn code(self) -> &'static str {
        match self {
            TimeError::NotYetValid => "token_not_yet_valid",
            TimeError::Expired => "token_expired",
            TimeError::LifetimeTooLong => "token_lifetime_too_long",
        }
    }
}

impl fmt::Display for TimeError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.code())
    }
}

impl std::error::Error for TimeError {}

/// Why claims break §5: for minters and tools, never for the relay's clients (verification maps it to
/// [`InvalidToken`]). Names the member and what a valid value looks like, never the value itself (it may
/// be an API key).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct ClaimError {
    pub member: &'static str,
    pub expected: &'static str,
}

impl fmt::Display for ClaimError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "claim `{}`: expected {}", self.member, self.expected)
    }
}

impl std::error::Error for ClaimError {}

fn claim_err(member: &'static str, expected: &'static str) -> ClaimError {
    ClaimError { member, expected }
}

impl Claims {
    /// Claims with the required members only: no key yet, unlimited calls, no limits. Fill in the rest
    /// with struct update syntax (`Claims { key, max, ..Claims::new(...) }`).
    pub fn new(jti: String, tid: String, iat: u64, exp: u64, prv: String) -> Claims {
        Claims {
            jti,
            tid,
            iat,
            exp,
            prv,
            key: None,
            kref: None,
            url: None,
            max: None,
            ext: None,
            rate: None,
            conc: None,
            models: None,
            paths: None,
            origins: None,
            ips: None,
            mtok: None,
            mtok_mode: None,
            uid: None,
        }
    }

    /// Checks every §5 rule that the types do not already enforce, except that `tid` names the tenant
    /// of the verifying key (only the verifier knows the key).
    pub fn validate(&self) -> Result<(), ClaimError> {
        if !(self.jti.len() == 32
            && self
                .jti
                .bytes()
                .all(|b| matches!(b, b'0'..=b'9' | b'a'..=b'f')))
        {
            return Err(claim_err("jti", "32 lowercase hex characters"));
        }
        if !is_valid_tenant_id(&self.tid) {
            return Err(claim_err(
                "tid",
                "1 to 64 characters from A-Z a-z 0-9 . _ -",
            ));
        }
        if self.iat > MAX_INT {
            return Err(claim_err("iat", "an integer below 2^53"));
        }
        if self.exp > MAX_INT || self.exp <= self.iat {
            return Err(claim_err("exp", "an integer below 2^53, greater than iat"));
        }
        let prv_ok = (1..=MAX_PRV_LEN).contains(&self.prv.len())
            && self
                .prv
                .bytes()
                .all(|b| matches!(b, b'a'..=b'z' | b'0'..=b'9' | b'_' | b'-'));
        if !prv_ok {
            return Err(claim_err("prv", "1 to 32 characters from a-z 0-9 _ -"));
        }
        match (&self.key, &self.kref) {
            (Some(key), None) => {
                let key = key.expose();
                if !((1..=MAX_KEY_LEN).contains(&key.len()) && key.bytes().all(is_printable_ascii))
                {
                    return Err(claim_err("key", "1 to 1024 printable ASCII characters"));
                }
            }
            (None, Some(kref)) => {
                let ok = (1..=MAX_KREF_LEN).contains(&kref.len())
                    && kref
                        .bytes()
                        .all(|b| b.is_ascii_alphanumeric() || matches!(b, b'.' | b'_' | b'-'));
                if !ok {
                    return Err(claim_err(
                        "kref",
                        "a key name of 1 to 64 characters from A-Z a-z 0-9 . _ -",
                    ));
                }
            }
            _ => return Err(claim_err("key", "exactly one of `key` and `kref`")),
        }
        if let Some(url) = &self.url {
            if !is_https_base_url(url) {
                return Err(claim_err(
                    "url",
                    "an absolute https:// URL with a host, without credentials or fragment",
                ));
            }
        }
        if let Some(max) = self.max {
            if !(1..=MAX_INT).contains(&max) {
                return Err(claim_err("max", "an integer from 1 to 2^53-1"));
            }
        }
        if let Some(ext) = &self.ext {
            // `"ext":{}` would be a second spelling of "no extension" (§5.1.11).
            if !ext.rep_m.as_deref().is_some_and(is_text) {
                return Err(claim_err(
                    "ext.rep_m",
                    "present, 1 to 256 characters without control characters",
                ));
            }
        }
        if let Some(rate) = self.rate {
            if !(1..=MAX_RATE).contains(&rate.n) || !(1..=MAX_RATE).contains(&rate.s) {
                return Err(claim_err(
                    "rate",
                    "n and s both integers from 1 to 31536000",
                ));
            }
        }
        if let Some(conc) = self.conc {
            if !(1..=MAX_CONC).contains(&u64::from(conc)) {
                return Err(claim_err("conc", "an integer from 1 to 10000"));
            }
        }
        // §5.1.13-15: one format per entry, for minters and verifiers alike.
        if matches!(&self.models, Some(m) if !(1..=MAX_MODELS).contains(&m.len())
            || !m.iter().all(|e| is_text(e)))
        {
            return Err(claim_err(
                "models",
                "an array of 1 to 64 names of 1 to 256 characters without control characters",
            ));
        }
        if matches!(&self.paths, Some(p) if p.is_empty() || !p.iter().all(|e| is_path(e))) {
            return Err(claim_err(
                "paths",
                "a non-empty array of paths such as \"/chat/completions\" (no query or fragment)",
            ));
        }
        if matches!(&self.origins, Some(o) if o.is_empty() || !o.iter().all(|e| is_origin(e))) {
            return Err(claim_err(
                "origins",
                "a non-empty array of origins such as \"https://app.example.com\" (lower case, no default port, no path)",
            ));
        }
        if matches!(&self.ips, Some(i) if i.is_empty() || !i.iter().all(IpNet::is_canonical)) {
            return Err(claim_err(
                "ips",
                "a non-empty array of canonical CIDR ranges without host bits, such as 203.0.113.0/24",
            ));
        }
        if matches!(self.mtok, Some(m) if !(1..=MAX_INT).contains(&m)) {
            return Err(claim_err("mtok", "an integer from 1 to 2^53-1"));
        }
        if self.mtok_mode.is_some() && self.mtok.is_none() {
            return Err(claim_err("mtok_mode", "only together with `mtok`"));
        }
        if let Some(uid) = &self.uid {
            // Printable ASCII (§5.1.18): the uid is written into access logs.
            if !((1..=MAX_UID_LEN).contains(&uid.len()) && uid.bytes().all(is_printable_ascii)) {
                return Err(claim_err("uid", "1 to 128 printable ASCII characters"));
            }
        }
        Ok(())
    }

    /// Parses and checks a claims JSON object (§5; members in any order) without the tenant check that
    /// needs the key. Used by verification and by tools that hold claims as JSON.
    pub fn from_json(text: &str) -> Result<Claims, ClaimError> {
        let not_json = || claim_err("(claims)", "a JSON object following §5 and §7.1");
        if !json_within_rules(text) {
            return Err(not_json());
        }
        serde_json::from_str::<ObjectShape>(text).map_err(|_| not_json())?;
        let raw: RawClaims = serde_json::from_str(text).map_err(|_| not_json())?;
        let claims = raw.into_claims()?;
        claims.validate()?;
        Ok(claims)
    }
}

fn is_printable_ascii(b: u8) -> bool {
    (0x20..=0x7e).contains(&b)
}

/// §5.1.3 text of 1 to 256 Unicode scalar values with no C0, DEL or C1 control character.
fn is_text(s: &str) -> bool {
    (1..=MAX_TEXT_CHARS).contains(&s.chars().count()) && !s.chars().any(char::is_control)
}

/// §5.1.14: `/` then visible ASCII except `?` and `#`.
fn is_path(p: &str) -> bool {
    p.starts_with('/')
        && p.bytes()
            .all(|b| (0x21..=0x7e).contains(&b) && b != b'?' && b != b'#')
}

/// §5.1.15: an origin exactly as browsers serialise it: `http` or `https`, a lower-case host (or a
/// canonical bracketed IPv6 address), and a port only when it is not the scheme's default.
fn is_origin(o: &str) -> bool {
    let (rest, default_port) = if let Some(r) = o.strip_prefix("https://") {
        (r, 443)
    } else if let Some(r) = o.strip_prefix("http://") {
        (r, 80)
    } else {
        return false;
    };
    let (host_ok, port) = if let Some(v6) = rest.strip_prefix('[') {
        let Some((inside, after)) = v6.split_once(']') else {
            return false;
        };
        let canonical = inside
            .parse::<Ipv6Addr>()
            .is_ok_and(|a| canonical_ip_text(IpAddr::V6(a)) == inside);
        match after {
            "" => (canonical, None),
            p => match p.strip_prefix(':') {
                Some(p) => (canonical, Some(p)),
                None => return false,
            },
        }
    } else {
        let (host, port) = match rest.split_once(':') {
            Some((h, p)) => (h, Some(p)),
            None => (rest, None),
        };
        let host_ok = host.split('.').all(|label| {
            (1..=63).contains(&label.len())
                && label
                    .bytes()
                    .all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || b == b'-' || b == b'_')
        });
        (host_ok, port)
    };
    let port_ok = port.is_none_or(|p| {
        (1..=5).contains(&p.len())
            && p.bytes().all(|b| b.is_ascii_digit())
            && !p.starts_with('0')
            && p.parse::<u32>()
                .is_ok_and(|n| n <= 65535 && n != default_port)
    });
    host_ok && port_ok
}

/// The §7.1 rules that serde_json does not apply itself: no byte-order mark (J1) and at most
/// [`MAX_JSON_DEPTH`] levels of nesting (J6), found by one flat scan that tracks strings and escapes.
/// serde_json refuses the rest: duplicates via the derive (J3, names compared after unescaping), lone
/// surrogates (J4), and signs, fractions and exponents for the `u64` members (J5).
pub fn json_within_rules(text: &str) -> bool {
    if text.starts_with('\u{feff}') {
        return false;
    }
    let mut depth = 0usize;
    let mut in_string = false;
    let mut escaped = false;
    for b in text.bytes() {
        if in_string {
            match b {
                _ if escaped => escaped = false,
                b'\\' => escaped = true,
                b'"' => in_string = false,
                _ => {}
            }
        } else {
            match b {
                b'"' => in_string = true,
                b'[' | b'{' => {
                    depth += 1;
                    if depth > MAX_JSON_DEPTH {
                        return false;
                    }
                }
                b']' | b'}' => depth = depth.saturating_sub(1),
                _ => {}
            }
        }
    }
    true
}

/// An RFC 3986 `absolute-URI` (so no fragment, §4.3) with scheme `https`, a non-empty host and no user
/// info. User info is refused because credentials belong in `key`, and an `@` in the authority is the
/// classic way to make a URL look like it points somewhere it does not. The relay only uses a `url` that
/// `config.json` lists, so anything odd that passes here still goes nowhere.
fn is_https_base_url(url: &str) -> bool {
    if url.len() > MAX_URL_LEN {
        return false;
    }
    let Some(rest) = url.strip_prefix("https://") else {
        return false;
    };
    if !rest.bytes().all(|b| is_uri_char(b) && b != b'#') {
        return false;
    }
    let authority_end = rest.find(['/', '?']).unwrap_or(rest.len());
    let (authority, tail) = rest.split_at(authority_end);
    if authority.contains('@') {
        return false;
    }
    let (host, port) = if let Some(v6) = authority.strip_prefix('[') {
        let Some((inside, after)) = v6.split_once(']') else {
            return false;
        };
        if inside.parse::<Ipv6Addr>().is_err() {
            return false;
        }
        match after {
            "" => (inside, None),
            p => match p.strip_prefix(':') {
                Some(p) => (inside, Some(p)),
                None => return false,
            },
        }
    } else {
        match authority.split_once(':') {
            Some((h, p)) => (h, Some(p)),
            None => (authority, None),
        }
    };
    if !authority.starts_with('[') && !is_host_name(host) {
        return false;
    }
    if let Some(port) = port {
        let digits =
            !port.is_empty() && port.len() <= 5 && port.bytes().all(|b| b.is_ascii_digit());
        if !digits || !matches!(port.parse::<u32>(), Ok(1..=65535)) {
            return false;
        }
    }
    // The path and query may only use percent-escapes that are complete.
    let bytes = tail.as_bytes();
    bytes.iter().enumerate().all(|(i, &b)| {
        b != b'%'
            || (bytes.get(i + 1).is_some_and(u8::is_ascii_hexdigit)
                && bytes.get(i + 2).is_some_and(u8::is_ascii_hexdigit))
    })
}

/// RFC 3986 unreserved, reserved and `%`.
fn is_uri_char(b: u8) -> bool {
    b.is_ascii_alphanumeric() || b"-._~:/?#[]@!$&'()*+,;=%".contains(&b)
}

/// A DNS name or dotted-quad IPv4 address: non-empty labels of letters, digits, `-` and `_` (URL
/// parsers accept `_`, and so do the SDKs).
fn is_host_name(host: &str) -> bool {
    if host.parse::<Ipv4Addr>().is_ok() {
        return true;
    }
    !host.is_empty()
        && host.len() <= 253
        && host.split('.').all(|label| {
            (1..=63).contains(&label.len())
                && label
                    .bytes()
                    .all(|b| b.is_ascii_alphanumeric() || b == b'-' || b == b'_')
        })
}

/// Claims as they appear on the wire. Serde's derive refuses unknown and duplicate members; `strict`
/// refuses `null` for optional members (absent is not the same as null in §5).
#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct RawClaims {
    jti: String,
    tid: String,
    iat: u64,
    exp: u64,
    prv: String,
    #[serde(default, deserialize_with = "strict_secret")]
    key: Option<SecretString>,
    #[serde(default, deserialize_with = "strict")]
    kref: Option<String>,
    #[serde(default, deserialize_with = "strict")]
    url: Option<String>,
    #[serde(default, deserialize_with = "strict")]
    max: Option<u64>,
    #[serde(default, deserialize_with = "strict")]
    ext: Option<RawExt>,
    #[serde(default, deserialize_with = "strict")]
    rate: Option<RawRate>,
    #[serde(default, deserialize_with = "strict")]
    conc: Option<u64>,
    #[serde(default, deserialize_with = "strict")]
    models: Option<Vec<String>>,
    #[serde(default, deserialize_with = "strict")]
    paths: Option<Vec<String>>,
    #[serde(default, deserialize_with = "strict")]
    origins: Option<Vec<String>>,
    #[serde(default, deserialize_with = "strict")]
    ips: Option<Vec<String>>,
    #[serde(default, deserialize_with = "strict")]
    mtok: Option<u64>,
    #[serde(default, deserialize_with = "strict")]
    mtok_mode: Option<String>,
    #[serde(default, deserialize_with = "strict")]
    uid: Option<String>,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct RawExt {
    #[serde(default, deserialize_with = "strict")]
    rep_m: Option<String>,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct RawRate {
    n: u64,
    s: u64,
}

/// Serde's derived structs also accept the sequence form (`"rate":[10,60]` as `{"n":10,"s":60}`, a whole
/// claims array as positional members). §5 only knows objects, so this pass refuses arrays where the
/// claims, `ext` or `rate` belong, before the derive sees them. It visits without keeping any values.
struct ObjectShape;

impl<'de> Deserialize<'de> for ObjectShape {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        d.deserialize_map(ClaimsShapeVisitor)
    }
}

struct ClaimsShapeVisitor;

impl<'de> Visitor<'de> for ClaimsShapeVisitor {
    type Value = ObjectShape;

    fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("a JSON object")
    }

    fn visit_map<A: MapAccess<'de>>(self, mut map: A) -> Result<ObjectShape, A::Error> {
        while let Some(name) = map.next_key::<std::borrow::Cow<'de, str>>()? {
            if name == "ext" || name == "rate" {
                map.next_value::<AnyObject>()?;
            } else {
                map.next_value::<IgnoredAny>()?;
            }
        }
        Ok(ObjectShape)
    }
}

/// Any JSON object, contents ignored; every other JSON type is an error.
struct AnyObject;

impl<'de> Deserialize<'de> for AnyObject {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        d.deserialize_map(AnyObjectVisitor)
    }
}

struct AnyObjectVisitor;

impl<'de> Visitor<'de> for AnyObjectVisitor {
    type Value = AnyObject;

    fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("a JSON object")
    }

    fn visit_map<A: MapAccess<'de>>(self, mut map: A) -> Result<AnyObject, A::Error> {
        while map.next_entry::<IgnoredAny, IgnoredAny>()?.is_some() {}
        Ok(AnyObject)
    }
}

/// A present member must hold a value of its type; `null` is a wrong type, not "absent".
fn strict<'de, D: Deserializer<'de>, T: Deserialize<'de>>(d: D) -> Result<Option<T>, D::Error> {
    T::deserialize(d).map(Some)
}

/// `strict` for the API key, moved straight into its redacting, zeroizing wrapper.
fn strict_secret<'de, D: Deserializer<'de>>(d: D) -> Result<Option<SecretString>, D::Error> {
    String::deserialize(d).map(|s| Some(SecretString::from(s)))
}

impl RawClaims {
    fn into_claims(self) -> Result<Claims, ClaimError> {
        let conc = match self.conc {
            Some(c) => Some(
                u32::try_from(c).map_err(|_| claim_err("conc", "an integer from 1 to 10000"))?,
            ),
            None => None,
        };
        let ips = match self.ips {
            Some(list) => Some(
                list.iter()
                    .map(|s| IpNet::parse_canonical(s))
                    .collect::<Option<Vec<_>>>()
                    .ok_or(claim_err(
                        "ips",
                        "CIDR ranges such as 203.0.113.0/24 or 2001:db8::/32",
                    ))?,
            ),
            None => None,
        };
        let mtok_mode = match self.mtok_mode.as_deref() {
            None => None,
            Some("clamp") => Some(MtokMode::Clamp),
            Some("reject") => Some(MtokMode::Reject),
            Some(_) => return Err(claim_err("mtok_mode", "\"clamp\" or \"reject\"")),
        };
        Ok(Claims {
            jti: self.jti,
            tid: self.tid,
            iat: self.iat,
            exp: self.exp,
            prv: self.prv,
            key: self.key,
            kref: self.kref,
            url: self.url,
            max: self.max,
            ext: self.ext.map(|e| Ext { rep_m: e.rep_m }),
            rate: self.rate.map(|r| Rate { n: r.n, s: r.s }),
            conc,
            models: self.models,
            paths: self.paths,
            origins: self.origins,
            ips,
            mtok: self.mtok,
            mtok_mode,
            uid: self.uid,
        })
    }
}

/// The §5 serialisation: members in table order, absent members left out, no whitespace, minimal
/// escaping. serde_json escapes strings exactly as §5 asks (short forms for `\b \f \n \r \t`, `\u00xx`
/// with lowercase hex for other control characters, everything else as UTF-8), so strings go through it.
pub fn canonical_json(c: &Claims) -> String {
    let mut w = JsonWriter::default();
    w.string("jti", &c.jti);
    w.string("tid", &c.tid);
    w.int("iat", c.iat);
    w.int("exp", c.exp);
    w.string("prv", &c.prv);
    if let Some(key) = &c.key {
        w.string("key", key.expose());
    }
    if let Some(kref) = &c.kref {
        w.string("kref", kref);
    }
    if let Some(url) = &c.url {
        w.string("url", url);
    }
    if let Some(max) = c.max {
        w.int("max", max);
    }
    if let Some(ext) = &c.ext {
        w.open("ext");
        if let Some(m) = &ext.rep_m {
            w.string("rep_m", m);
        }
        w.close();
    }
    if let Some(rate) = c.rate {
        w.open("rate");
        w.int("n", rate.n);
        w.int("s", rate.s);
        w.close();
    }
    if let Some(conc) = c.conc {
        w.int("conc", u64::from(conc));
    }
    if let Some(models) = &c.models {
        w.strings("models", models.iter().map(String::as_str));
    }
    if let Some(paths) = &c.paths {
        w.strings("paths", paths.iter().map(String::as_str));
    }
    if let Some(origins) = &c.origins {
        w.strings("origins", origins.iter().map(String::as_str));
    }
    if let Some(ips) = &c.ips {
        let texts: Vec<String> = ips.iter().map(IpNet::to_string).collect();
        w.strings("ips", texts.iter().map(String::as_str));
    }
    if let Some(mtok) = c.mtok {
        w.int("mtok", mtok);
    }
    if let Some(mode) = c.mtok_mode {
        w.string("mtok_mode", mode.as_str());
    }
    if let Some(uid) = &c.uid {
        w.string("uid", uid);
    }
    w.finish()
}

/// Writes one JSON object member by member, tracking where commas go.
struct JsonWriter {
    out: String,
    first: bool,
}

impl Default for JsonWriter {
    fn default() -> Self {
        JsonWriter {
            out: String::from("{"),
            first: true,
        }
    }
}

impl JsonWriter {
    fn name(&mut self, name: &str) {
        if !self.first {
            self.out.push(',');
        }
        self.first = false;
        self.push_json_string(name);
        self.out.push(':');
    }

    fn push_json_string(&mut self, s: &str) {
        // Serialising a &str cannot fail: there is no map key or non-finite float involved.
        let quoted = Zeroizing::new(serde_json::to_string(s).unwrap_or_default());
        self.out.push_str(&quoted);
    }

    fn string(&mut self, name: &str, value: &str) {
        self.name(name);
        self.push_json_string(value);
    }

    fn int(&mut self, name: &str, value: u64) {
        self.name(name);
        self.out.push_str(&value.to_string());
    }

    fn strings<'a>(&mut self, name: &str, values: impl Iterator<Item = &'a str>) {
        self.name(name);
        self.out.push('[');
        for (i, v) in values.enumerate() {
            if i > 0 {
                self.out.push(',');
            }
            self.push_json_string(v);
        }
        self.out.push(']');
    }

    fn open(&mut self, name: &str) {
        self.name(name);
        self.out.push('{');
        self.first = true;
    }

    fn close(&mut self) {
        self.out.push('}');
        self.first = false;
    }

    fn finish(mut self) -> String {
        self.out.push('}');
        std::mem::take(&mut self.out)
    }
}

/// Per-token AES key and nonce (§4), wiped after use.
fn derive(key: &SecretKey, salt: &[u8]) -> Zeroizing<[u8; OKM_LEN]> {
    let mut okm = Zeroizing::new([0u8; OKM_LEN]);
    // 44 bytes is far below HKDF-SHA256's 255*32 limit, so expand cannot fail.
    let expanded = Hkdf::<Sha256>::new(Some(salt), key.expose()).expand(HKDF_INFO, okm.as_mut());
    debug_assert!(expanded.is_ok());
    okm
}

fn cipher(okm: &[u8; OKM_LEN]) -> Aes256Gcm {
    // A 32-byte slice is always a valid AES-256 key.
    Aes256Gcm::new(okm[..32].into())
}

/// Seals an arbitrary plaintext (§6 steps 4-7) without looking at it. `mint_with` is the checked entry
/// point; tests use this directly to build authentic tokens with broken claims.
fn seal(kid: &str, key: &SecretKey, salt: [u8; SALT_LEN], plaintext: &[u8]) -> String {
    assert!(
        is_valid_key_id(kid),
        "key id must be 1 to 32 characters from A-Z a-z 0-9 . _ -"
    );
    let mut blob =
        Vec::with_capacity(FIXED_HEADER_LEN + kid.len() + SALT_LEN + plaintext.len() + TAG_LEN);
    // The length fits: is_valid_key_id caps it at 32.
    blob.extend_from_slice(&[VERSION, MODE_SYMMETRIC, kid.len() as u8]);
    blob.extend_from_slice(kid.as_bytes());
    blob.extend_from_slice(&salt);
    let okm = derive(key, &salt);
    let sealed = cipher(&okm)
        .encrypt(
            Nonce::from_slice(&okm[32..]),
            Payload {
                msg: plaintext,
                aad: &blob,
            },
        )
        // AES-GCM only fails for plaintexts beyond 64 GiB.
        .expect("AES-GCM encryption of a token cannot fail");
    blob.extend_from_slice(&sealed);
    let mut text = String::with_capacity(PREFIX.len() + blob.len().div_ceil(3) * 4);
    text.push_str(PREFIX);
    URL_SAFE_NO_PAD.encode_string(&blob, &mut text);
    text
}

/// Length in bytes of the token for a `kid_len`-byte kid and `claims_len` bytes of claims JSON (§6 step 8).
pub fn token_len(kid_len: usize, claims_len: usize) -> usize {
    let blob = FIXED_HEADER_LEN + kid_len + SALT_LEN + claims_len + TAG_LEN;
    PREFIX.len() + (4 * blob).div_ceil(3)
}

impl Claims {
    /// Everything [`mint_with`] requires: [`Claims::validate`], then that the token under `kid` stays
    /// within [`MAX_TOKEN_LEN`] (§6 step 8). Callers holding untrusted input call this first to report a
    /// readable error instead of reaching the panic.
    pub fn check_mintable(&self, kid: &str) -> Result<(), ClaimError> {
        self.validate()?;
        if token_len(kid.len(), canonical_json(self).len()) > MAX_TOKEN_LEN {
            return Err(claim_err(
                "(claims)",
                "claims small enough for a token of at most 4096 bytes (fewer or shorter list entries)",
            ));
        }
        Ok(())
    }
}

/// Mints a token with the given salt (§6 steps 3-8). Deterministic, for the vectors and tests; real
/// tokens come from [`mint`], which draws the salt.
///
/// Panics if [`Claims::check_mintable`] fails (claims that break §5, or a token over 4096 bytes) or `kid`
/// is not a valid key id: both are caller bugs, and a token that every verifier would refuse must not
/// leave the minter.
pub fn mint_with(c: &Claims, kid: &str, key: &SecretKey, salt: [u8; SALT_LEN]) -> String {
    if let Err(e) = c.check_mintable(kid) {
        panic!("refusing to mint invalid claims: {e}");
    }
    let plaintext = Zeroizing::new(canonical_json(c));
    seal(kid, key, salt, plaintext.as_bytes())
}

/// Mints a token with a fresh salt drawn from `rng` (use [`os_rng`] outside tests). The caller sets
/// `jti` (see [`new_token_id`]), `iat` and `exp`. Panics like [`mint_with`].
pub fn mint(c: &Claims, kid: &str, key: &SecretKey, rng: &mut dyn FnMut(&mut [u8])) -> String {
    let mut salt = [0u8; SALT_LEN];
    rng(&mut salt);
    mint_with(c, kid, key, salt)
}

/// A fresh token id: 128 random bits as 32 lowercase hex characters.
pub fn new_token_id(rng: &mut dyn FnMut(&mut [u8])) -> String {
    let mut bytes = [0u8; 16];
    rng(&mut bytes);
    bytes.iter().map(|b| format!("{b:02x}")).collect()
}

/// The operating system's CSPRNG. Panics if it fails: there is no safe way to mint without randomness.
pub fn os_rng() -> impl FnMut(&mut [u8]) {
    |buf: &mut [u8]| {
        getrandom::getrandom(buf).expect("the operating system's random number generator failed")
    }
}

/// §7 steps 1-6: decodes, authenticates and checks a token. Every failure is [`InvalidToken`]. Never
/// panics, whatever the input; text over [`MAX_TOKEN_LEN`] bytes is refused before decoding.
pub fn verify(text: &str, keyring: &Keyring) -> Result<Claims, InvalidToken> {
    // Step 1.
    if text.len() > MAX_TOKEN_LEN {
        return Err(InvalidToken);
    }
    let encoded = text.strip_prefix(PREFIX).ok_or(InvalidToken)?;
    // Step 2: the engine refuses padding, other alphabets and set unused bits.
    let blob = URL_SAFE_NO_PAD.decode(encoded).map_err(|_| InvalidToken)?;
    // Step 3.
    if blob.len() < FIXED_HEADER_LEN + 1 + SALT_LEN + TAG_LEN
        || blob[0] != VERSION
        || blob[1] != MODE_SYMMETRIC
    {
        return Err(InvalidToken);
    }
    let kid_len = usize::from(blob[2]);
    if !(1..=MAX_KID_LEN).contains(&kid_len) {
        return Err(InvalidToken);
    }
    let header_len = FIXED_HEADER_LEN + kid_len + SALT_LEN;
    if blob.len() < header_len + TAG_LEN {
        return Err(InvalidToken);
    }
    let (header, sealed) = blob.split_at(header_len);
    // Step 4.
    let kid = std::str::from_utf8(&header[FIXED_HEADER_LEN..FIXED_HEADER_LEN + kid_len])
        .map_err(|_| InvalidToken)?;
    let (tenant, key) = keyring.get(kid).ok_or(InvalidToken)?;
    // Step 5.
    let okm = derive(key, &header[FIXED_HEADER_LEN + kid_len..]);
    let plaintext = Zeroizing::new(
        cipher(&okm)
            .decrypt(
                Nonce::from_slice(&okm[32..]),
                Payload {
                    msg: sealed,
                    aad: header,
                },
            )
            .map_err(|_| InvalidToken)?,
    );
    // Step 6.
    let json = std::str::from_utf8(&plaintext).map_err(|_| InvalidToken)?;
    let claims = Claims::from_json(json).map_err(|_| InvalidToken)?;
    if claims.tid != tenant {
        return Err(InvalidToken);
    }
    Ok(claims)
}

/// §7 steps 7-8 for an authentic token. `leeway` is the allowed clock skew and `max_lifetime` the
/// relay's cap on `exp - iat`, both in seconds; `now` is UTC seconds.
pub fn check_time(c: &Claims, now: u64, leeway: u64, max_lifetime: u64) -> Result<(), TimeError> {
    if c.iat > now.saturating_add(leeway) {
        return Err(TimeError::NotYetValid);
    }
    if now >= c.exp.saturating_add(leeway) {
        return Err(TimeError::Expired);
    }
    if c.exp.saturating_sub(c.iat) > max_lifetime {
        return Err(TimeError::LifetimeTooLong);
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    const T0: u64 = 1_790_000_000;

    fn keyring() -> (Keyring, SecretKey) {
        let key = SecretKey::from_bytes([7; 32]);
        let mut ring = Keyring::new();
        ring.insert("k1", "acme", key.clone()).unwrap();
        ring.insert("other", "globex", SecretKey::from_bytes([9; 32]))
            .unwrap();
        (ring, key)
    }

    fn claims() -> Claims {
        Claims {
            jti: "0123456789abcdef0123456789abcdef".into(),
            tid: "acme".into(),
            iat: T0,
            exp: T0 + 3600,
            prv: "openai".into(),
            key: Some(SecretString::new("test-key-123")),
            kref: None,
            url: None,
            max: Some(10),
            ext: None,
            rate: None,
            conc: None,
            models: None,
            paths: None,
            origins: None,
            ips: None,
            mtok: None,
            mtok_mode: None,
            uid: None,
        }
    }

    /// Seals `json` as an authentic k1 token, bypassing the claims check.
    fn sealed(json: &str) -> String {
        seal(
            "k1",
            &SecretKey::from_bytes([7; 32]),
            [3; 16],
            json.as_bytes(),
        )
    }

    fn base_json() -> String {
        canonical_json(&claims())
    }

    /// `base_json()` with `,"member":value` spliced in before the closing brace.
    fn with_member(extra: &str) -> String {
        let base = base_json();
        format!("{},{extra}}}", &base[..base.len() - 1])
    }

    #[test]
    fn round_trip() {
        let (ring, key) = keyring();
        let token = mint_with(&claims(), "k1", &key, [1; 16]);
        assert!(token.starts_with("rt1."));
        assert_eq!(verify(&token, &ring), Ok(claims()));
    }

    #[test]
    fn sealed_helper_accepts_valid_claims() {
        // Guards the negative tests below: they fail for the member they change, not for the helper.
        let (ring, _) = keyring();
        assert_eq!(verify(&sealed(&base_json()), &ring), Ok(claims()));
        assert!(verify(&sealed(&with_member(r#""uid":"u1""#)), &ring).is_ok());
    }

    #[test]
    fn duplicate_members_are_rejected_by_serde_derive() {
        let (ring, _) = keyring();
        assert_eq!(
            verify(&sealed(&with_member(r#""max":1000"#)), &ring),
            Err(InvalidToken)
        );
        assert_eq!(
            verify(&sealed(&with_member(r#""tid":"acme""#)), &ring),
            Err(InvalidToken)
        );
        // Nested objects too.
        let dup_rate = with_member(r#""rate":{"n":1,"s":1,"n":2}"#);
        assert_eq!(verify(&sealed(&dup_rate), &ring), Err(InvalidToken));
        let dup_ext = with_member(r#""ext":{"rep_m":"a","rep_m":"b"}"#);
        assert_eq!(verify(&sealed(&dup_ext), &ring), Err(InvalidToken));
    }

    #[test]
    fn sequence_forms_of_objects_are_rejected() {
        let (ring, _) = keyring();
        let positional = r#"["0123456789abcdef0123456789abcdef","acme",1790000000,1790003600,"openai","test-key-123"]"#;
        assert_eq!(verify(&sealed(positional), &ring), Err(InvalidToken));
        assert_eq!(
            verify(&sealed(&with_member(r#""rate":[10,60]"#)), &ring),
            Err(InvalidToken)
        );
        assert!(verify(&sealed(&with_member(r#""rate":{"n":10,"s":60}"#)), &ring).is_ok());
    }

    #[test]
    fn wrong_types_and_ranges_are_rejected() {
        let (ring, _) = keyring();
        let bad = [
            r#""conc":null"#,
            r#""conc":0"#,
            r#""conc":10001"#,
            r#""conc":4294967297"#,
            r#""mtok":1e3"#,
            r#""mtok":0"#,
            r#""mtok":9007199254740992"#,
            r#""mtok":18446744073709551616"#,
            r#""rate":{"n":0,"s":60}"#,
            r#""rate":{"n":1,"s":31536001}"#,
            r#""rate":{"n":1}"#,
            r#""rate":{"n":1,"s":1,"x":1}"#,
            r#""ext":{"rep_m":""}"#,
            r#""ext":{"rep_m":null}"#,
            r#""ext":[]"#,
            r#""ext":["m"]"#,
            r#""rate":[10,60]"#,
            r#""models":["a",1]"#,
            r#""paths":[]"#,
            r#""origins":[]"#,
            r#""origins":"https://app.example.com""#,
            r#""ips":[]"#,
            r#""ips":["10.0.0.1"]"#,
            r#""ips":["10.0.0.0/33"]"#,
            r#""ips":["10.0.0.0/08"]"#,
            r#""ips":["10.0.0.0/+8"]"#,
            r#""ips":["2001:db8::/129"]"#,
            r#""mtok_mode":"Clamp""#,
            r#""mtok_mode":"clamp""#,
            r#""models":["", "any string"]"#,
            r#""models":["a\u0001"]"#,
            r#""paths":["chat/completions"]"#,
            r#""paths":["/x?y"]"#,
            r#""origins":["https://app.example.com/"]"#,
            r#""origins":["https://App.example.com"]"#,
            r#""origins":["https://app.example.com:443"]"#,
            r#""ext":{}"#,
            r#""ips":["203.0.113.7/24"]"#,
            r#""ips":["2001:DB8::/32"]"#,
            r#""ips":["::ffff:10.0.0.0/104"]"#,
            r#""uid":"a\nb""#,
            r#""uid":"é""#,
            r#""uid":"""#,
            r#""url":"https://""#,
            r#""url":"https://user@example.com/""#,
            r#""url":"https://example.com:0/""#,
            r#""url":"https://example.com:65536""#,
            r#""url":"https://example.com/v1#frag""#,
            r#""url":"https://exa mple.com""#,
            r#""url":"https://example.com/%zz""#,
            r#""url":"https://[::1""#,
            r#""url":"HTTPS://example.com""#,
            r#""url":"https:example.com""#,
        ];
        for extra in bad {
            assert_eq!(
                verify(&sealed(&with_member(extra)), &ring),
                Err(InvalidToken),
                "{extra}"
            );
        }
        let models: Vec<String> = (0..65).map(|i| format!("\"m{i}\"")).collect();
        let too_many = with_member(&format!(r#""models":[{}]"#, models.join(",")));
        assert_eq!(verify(&sealed(&too_many), &ring), Err(InvalidToken));
        let long_uid = with_member(&format!(r#""uid":"{}""#, "u".repeat(129)));
        assert_eq!(verify(&sealed(&long_uid), &ring), Err(InvalidToken));
    }

    #[test]
    fn valid_optional_members_are_accepted() {
        let (ring, _) = keyring();
        let good = [
            r#""conc":10000"#,
            r#""mtok":1"#,
            r#""paths":["/","/v1/chat/completions"]"#,
            r#""origins":["http://localhost:3000","https://[::1]:8443","https://app.example.com"]"#,
            r#""url":"https://my_host.example.com/v1/%2F""#,
            r#""url":"https://example.com/v1?api-version=2024-06-01""#,
            r#""models":["any string", "modèle 😀"]"#,
            r#""paths":["/chat/completions", "/x:y"]"#,
            r#""origins":["https://app.example.com"]"#,
            r#""ext":{"rep_m":"m"}"#,
            r#""rate":{"s":31536000,"n":1}"#,
            r#""ips":["0.0.0.0/0","::/0","203.0.113.0/24"]"#,
            r#""url":"https://example.com""#,
            r#""url":"https://example.com:8443/v1/""#,
            r#""url":"https://[2001:db8::1]:443/v1""#,
            r#""url":"https://10.0.0.1/""#,
            r#""mtok":5,"mtok_mode":"clamp""#,
        ];
        for extra in good {
            assert!(
                verify(&sealed(&with_member(extra)), &ring).is_ok(),
                "{extra}"
            );
        }
        let models: Vec<String> = (0..64).map(|i| format!("\"m{i}\"")).collect();
        let max_models = with_member(&format!(r#""models":[{}]"#, models.join(",")));
        assert!(verify(&sealed(&max_models), &ring).is_ok());
    }

    #[test]
    fn key_and_kref_rules() {
        let (ring, _) = keyring();
        let mut c = claims();
        c.key = None;
        c.kref = Some("main".into());
        assert!(verify(&sealed(&canonical_json(&c)), &ring).is_ok());
        c.kref = Some(String::new());
        assert_eq!(
            verify(&sealed(&canonical_json(&c)), &ring),
            Err(InvalidToken)
        );
        // §5.1.9: the config.json naming rule, nothing else.
        c.kref = Some("any name, even with spaces".into());
        assert_eq!(
            verify(&sealed(&canonical_json(&c)), &ring),
            Err(InvalidToken)
        );
        c.kref = Some("k".repeat(64));
        assert!(verify(&sealed(&canonical_json(&c)), &ring).is_ok());
        for key in [
            String::new(),
            "a\u{7f}b".into(),
            "a\nb".into(),
            "é".into(),
            "k".repeat(1025),
        ] {
            let mut c = claims();
            c.key = Some(SecretString::new(key));
            assert_eq!(
                verify(&sealed(&canonical_json(&c)), &ring),
                Err(InvalidToken)
            );
        }
        let mut c = claims();
        c.key = Some(SecretString::new("k".repeat(1024)));
        assert!(verify(&sealed(&canonical_json(&c)), &ring).is_ok());
    }

    #[test]
    fn tenant_must_match_the_key() {
        let (ring, _) = keyring();
        let mut c = claims();
        c.tid = "globex".into();
        // Authentic under k1 (tenant acme) but claiming globex.
        assert_eq!(
            verify(&sealed(&canonical_json(&c)), &ring),
            Err(InvalidToken)
        );
        let token = mint_with(&c, "other", &SecretKey::from_bytes([9; 32]), [0; 16]);
        assert!(verify(&token, &ring).is_ok());
    }

    #[test]
    fn verify_never_panics_on_short_or_odd_blobs() {
        let (ring, _) = keyring();
        for len in 0..80usize {
            for fill in [0u8, 1, 32, 255] {
                let mut blob = vec![fill; len];
                if len > 2 {
                    blob[0] = 1;
                    blob[1] = 1;
                }
                let text = format!("rt1.{}", URL_SAFE_NO_PAD.encode(&blob));
                assert_eq!(verify(&text, &ring), Err(InvalidToken));
            }
        }
        assert_eq!(verify("rt1.é", &ring), Err(InvalidToken));
        assert_eq!(verify(&"é".repeat(3000), &ring), Err(InvalidToken));
    }

    #[test]
    fn length_limit_is_exactly_4096() {
        let (ring, key) = keyring();
        let claims_with_model_len = |n: usize| {
            let mut c = claims();
            // Thirteen long entries bring the token near the limit; the last one fine-tunes it.
            let mut models = vec!["m".repeat(200); 13];
            models.push("m".repeat(n));
            c.models = Some(models);
            c
        };
        // Sealed without the minter's checks, so that the over-long token exists to be refused.
        let token_with_model_len = |n: usize| {
            seal(
                "k1",
                &key,
                [0; 16],
                canonical_json(&claims_with_model_len(n)).as_bytes(),
            )
        };
        for n in 1..=256 {
            let c = claims_with_model_len(n);
            let len = token_with_model_len(n).len();
            assert_eq!(token_len(2, canonical_json(&c).len()), len);
            // §6 step 8: the minter refuses exactly the tokens verifiers refuse for their length.
            assert_eq!(
                c.check_mintable("k1").is_ok(),
                len <= MAX_TOKEN_LEN,
                "{len}"
            );
        }
        // Base64 output lengths step by 1 or 2, so 4096 is reachable and 4097 is not; 4098 is the next.
        let at_limit = (1..=256)
            .map(token_with_model_len)
            .find(|t| t.len() == MAX_TOKEN_LEN)
            .unwrap();
        assert!(verify(&at_limit, &ring).is_ok());
        let over = (1..=256)
            .map(token_with_model_len)
            .find(|t| t.len() == MAX_TOKEN_LEN + 2)
            .unwrap();
        assert_eq!(verify(&over, &ring), Err(InvalidToken));
    }

    #[test]
    fn check_time_boundaries() {
        let c = claims();
        let life = 3600;
        assert_eq!(check_time(&c, T0, 0, life), Ok(()));
        assert_eq!(check_time(&c, T0 - 1, 0, life), Err(TimeError::NotYetValid));
        assert_eq!(check_time(&c, T0 - 60, 60, life), Ok(()));
        assert_eq!(
            check_time(&c, T0 - 61, 60, life),
            Err(TimeError::NotYetValid)
        );
        assert_eq!(check_time(&c, T0 + 3599, 0, life), Ok(()));
        assert_eq!(check_time(&c, T0 + 3600, 0, life), Err(TimeError::Expired));
        assert_eq!(check_time(&c, T0 + 3659, 60, life), Ok(()));
        assert_eq!(check_time(&c, T0 + 3660, 60, life), Err(TimeError::Expired));
        assert_eq!(
            check_time(&c, T0, 0, life - 1),
            Err(TimeError::LifetimeTooLong)
        );
        assert_eq!(
            check_time(&c, u64::MAX, u64::MAX, life),
            Err(TimeError::Expired)
        );
        assert_eq!(TimeError::Expired.code(), "token_expired");
    }

    #[test]
    fn ipnet_contains() {
        let v4 = IpNet::parse("203.0.113.0/24").unwrap();
        assert!(v4.contains("203.0.113.255".parse().unwrap()));
        assert!(!v4.contains("203.0.114.0".parse().unwrap()));
        assert!(v4.contains("::ffff:203.0.113.9".parse().unwrap()));
        assert!(!v4.contains("2001:db8::1".parse().unwrap()));
        assert_eq!(v4.to_string(), "203.0.113.0/24");
        let v6 = IpNet::parse("2001:db8::/32").unwrap();
        assert!(v6.contains("2001:db8:ffff::1".parse().unwrap()));
        assert!(!v6.contains("2001:db9::".parse().unwrap()));
        assert!(!v6.contains("203.0.113.1".parse().unwrap()));
        let all = IpNet::parse("0.0.0.0/0").unwrap();
        assert!(all.contains("1.2.3.4".parse().unwrap()));
        let one = IpNet::parse("10.0.0.1/32").unwrap();
        assert!(one.contains("10.0.0.1".parse().unwrap()));
        assert!(!one.contains("10.0.0.2".parse().unwrap()));
        let ten = IpNet::parse("10.0.0.0/8").unwrap();
        assert!(ten.contains("::ffff:10.1.2.3".parse().unwrap()));
        assert!(!ten.contains("::ffff:11.1.2.3".parse().unwrap()));
        // §5.1.16: one spelling per range; Display writes exactly what parses.
        for good in [
            "2001:db8:0:0:1::/80",
            "2001:db8::1:0:0:1/128",
            "::102:304/128",
            "::/0",
        ] {
            assert_eq!(IpNet::parse_canonical(good).unwrap().to_string(), good);
        }
        for bad in [
            "203.0.113.77/24",
            "::ffff:10.0.0.0/104",
            "::ffff:a00:0/104",
            "2001:DB8::/32",
            "2001:db8:0:0:1::1/128",
            "2001:db8::1:1:1:1:1/128",
            "::1.2.3.4/128",
        ] {
            assert_eq!(IpNet::parse_canonical(bad), None, "{bad}");
        }
        // config.json's lenient parser ignores host bits and keeps mapped ranges matching IPv4 clients.
        let host_bits = IpNet::parse("203.0.113.77/24").unwrap();
        assert!(host_bits.contains("203.0.113.1".parse().unwrap()));
        assert!(!host_bits.is_canonical());
        let mapped = IpNet::parse("::ffff:10.0.0.0/104").unwrap();
        assert!(mapped.contains("10.1.2.3".parse().unwrap()));
        assert!(!mapped.contains("11.1.2.3".parse().unwrap()));
        for bad in [
            "",
            "/8",
            "10.0.0.0/",
            "10.0.0.0/8/8",
            "010.0.0.0/8",
            "10.0.0.0/ 8",
            "fe80::1%eth0/64",
        ] {
            assert_eq!(IpNet::parse(bad), None, "{bad}");
        }
    }

    #[test]
    fn canonical_json_escapes_minimally() {
        let mut c = claims();
        c.uid = Some("a\"\\\u{8}\u{c}\n\r\t\u{1}\u{1f}\u{7f}/é😀".into());
        let json = canonical_json(&c);
        let expected = concat!(r#","uid":"a\"\\\b\f\n\r\t\u0001\u001f"#, "\u{7f}/é😀\"}");
        assert!(json.ends_with(expected), "{json}");
        // Written as §5 says, but no valid claim holds control characters or non-ASCII in uid (§5.1.18).
        assert!(Claims::from_json(&json).is_err());
        c.uid = None;
        c.ext = Some(Ext {
            rep_m: Some("a\"\\/é😀".into()),
        });
        let json = canonical_json(&c);
        assert!(json.ends_with(r#""ext":{"rep_m":"a\"\\/é😀"}}"#), "{json}");
        assert_eq!(Claims::from_json(&json), Ok(c));
    }

    #[test]
    fn canonical_json_orders_nested_members() {
        let mut c = claims();
        c.rate = Some(Rate { n: 5, s: 60 });
        c.ext = Some(Ext::default());
        c.mtok_mode = Some(MtokMode::Clamp);
        let json = canonical_json(&c);
        // Serialised faithfully, though `"ext":{}` and a mode without `mtok` are refused (§5.1.11, 17).
        assert!(c.validate().is_err());
        assert!(
            json.contains(r#""max":10,"ext":{},"rate":{"n":5,"s":60},"mtok_mode":"clamp"}"#),
            "{json}"
        );
    }

    #[test]
    #[should_panic(expected = "claim `max`")]
    fn minting_invalid_claims_panics() {
        let mut c = claims();
        c.max = Some(0);
        mint_with(&c, "k1", &SecretKey::from_bytes([7; 32]), [0; 16]);
    }

    #[test]
    fn claim_errors_do_not_echo_the_key() {
        let mut c = claims();
        c.key = Some(SecretString::new("test-key-\n-123"));
        let err = c.validate().unwrap_err();
        assert_eq!(err.member, "key");
        assert!(!err.to_string().contains("test-key"));
        assert!(!format!("{c:?}").contains("test-key"));
    }

    #[test]
    fn new_token_id_is_lowercase_hex() {
        let mut n = 0u8;
        let mut rng = |buf: &mut [u8]| {
            for b in buf {
                *b = n;
                n = n.wrapping_add(0x11);
            }
        };
        assert_eq!(new_token_id(&mut rng), "00112233445566778899aabbccddeeff");
        let mut os = os_rng();
        let a = new_token_id(&mut os);
        assert_eq!(a.len(), 32);
        assert_ne!(a, new_token_id(&mut os));
    }
}
