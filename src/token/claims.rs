//! The claims of a token (`docs/token-format.md` §5): their types and every §5 rule the types do not
//! already enforce; the spend limits `bud` and `uq` are `token/spend_claims.rs`'s. Reading claims from
//! JSON is `token/claims_json.rs`'s job, writing them `token/canonical.rs`'s, sealing and opening
//! `token/seal.rs`'s. The character and host rules come from `text/`.

use std::fmt;
use std::net::{IpAddr, Ipv6Addr};

use crate::text::grammar::{
    check_percent_encoded, is_key_name, is_printable_ascii, is_provider_name, is_tenant_id,
    is_uri_char,
};
use crate::text::host::{is_reg_label, is_reg_name, parse_port, split_authority};
use crate::text::ipnet::{canonical_ip_text, IpNet};
use crate::token::secret::SecretString;
use crate::token::spend_claims::validate_spend;
pub use crate::token::spend_claims::{Budget, UserQuota, Window};

/// Every integer claim is below 2^53 so that JavaScript minters and verifiers see exact values (§5).
pub const MAX_INT: u64 = (1 << 53) - 1;
/// `jti` length: 128 random bits as lower-case hex (§5.1.5).
const JTI_LEN: usize = 32;
/// Upper bound of both `rate.n` and `rate.s`: one year of seconds (§5).
const MAX_RATE: u64 = 86_400 * 365;
/// Most concurrent streams a token may ask for (§5.1.12).
const MAX_CONC: u64 = 10_000;
/// Most `models` entries (§5.1.13).
const MAX_MODELS: usize = 64;
/// `key` length in bytes of printable ASCII (§5.1.8).
const MAX_KEY_LEN: usize = 1024;
/// `ext.rep_m` and `models` entry length in Unicode scalar values (§5.1.3).
const MAX_TEXT_CHARS: usize = 256;
/// `url` length in bytes; a base URL longer than this is a mistake, not a deployment.
const MAX_URL_LEN: usize = 2048;
/// `uid` length in bytes of printable ASCII (§5.1.18).
const MAX_UID_LEN: usize = 128;
/// Longest session a token may allow with `ssec`: one day of seconds (§5.1.22). Providers end their own
/// realtime sessions far sooner (OpenAI after 60 minutes), so a longer cap would limit nothing.
pub const MAX_SESSION_SECONDS: u64 = 86_400;

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
    pub bud: Option<Budget>,
    pub uq: Option<Vec<UserQuota>>,
    /// Seconds a realtime (WebSocket) session of this token may stay open (§5.1.22).
    pub ssec: Option<u64>,
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

pub(crate) fn claim_err(member: &'static str, expected: &'static str) -> ClaimError {
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
            bud: None,
            uq: None,
            ssec: None,
        }
    }

    /// Checks every §5 rule that the types do not already enforce, except that `tid` names the tenant
    /// of the verifying key (only the verifier knows the key).
    pub fn validate(&self) -> Result<(), ClaimError> {
        if !(self.jti.len() == JTI_LEN
            && self
                .jti
                .bytes()
                .all(|b| matches!(b, b'0'..=b'9' | b'a'..=b'f')))
        {
            return Err(claim_err("jti", "32 lowercase hex characters"));
        }
        if !is_tenant_id(&self.tid) {
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
        if !is_provider_name(&self.prv) {
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
                if !is_key_name(kref) {
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
        if matches!(self.ssec, Some(s) if !(1..=MAX_SESSION_SECONDS).contains(&s)) {
            return Err(claim_err("ssec", "an integer from 1 to 86400 (seconds)"));
        }
        validate_spend(self.bud.as_ref(), self.uq.as_deref(), self.uid.as_deref())
            .map_err(|(member, expected)| claim_err(member, expected))
    }
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
    let Some((host, port)) = split_authority(rest) else {
        return false;
    };
    let host_ok = if rest.starts_with('[') {
        host.parse::<Ipv6Addr>()
            .is_ok_and(|a| canonical_ip_text(IpAddr::V6(a)) == host)
    } else {
        // Labels only: §5.1.15 sets no total length.
        host.split('.')
            .all(|l| is_reg_label(l) && !l.bytes().any(|b| b.is_ascii_uppercase()))
    };
    let port_ok = port
        .is_none_or(|p| !p.starts_with('0') && parse_port(p).is_some_and(|n| n != default_port));
    host_ok && port_ok
}

/// §5.1.10: an RFC 3986 `absolute-URI` (so no fragment, §4.3) with scheme `https`, a non-empty host and
/// no user info. User info is refused because credentials belong in `key`, and an `@` in the authority
/// is the classic way to make a URL look like it points somewhere it does not. The relay only uses a
/// `url` that `config.json` lists, so anything odd that passes here still goes nowhere.
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
    let Some((host, port)) = split_authority(authority) else {
        return false;
    };
    let host_ok = if authority.starts_with('[') {
        host.parse::<Ipv6Addr>().is_ok()
    } else {
        is_reg_name(host)
    };
    // The path and query may only use percent-escapes that are complete.
    host_ok
        && port.is_none_or(|p| parse_port(p).is_some())
        && check_percent_encoded(tail.as_bytes(), |_| true).is_ok()
}
