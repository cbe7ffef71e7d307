//! Upstream base URLs (`config.json` `providers.*.base_url`, `upstream.allowed_base_urls`, the token's
//! `url` claim once allowed): `scheme://host[:port][/prefix]` parsed once into a [`BaseUrl`], so the
//! registry and the transport never read the text again. The host is a registered name
//! (`text/host.rs`: `_` allowed, it is only looked up) or a bracketed IPv6 address.

use std::fmt;
use std::net::Ipv6Addr;
use std::sync::Arc;

use crate::text::host::{is_reg_name, parse_port, split_authority};

/// A parsed upstream base URL: `scheme://host[:port][/prefix]`, no query, no userinfo. Made only by
/// [`parse_base_url`] (the private field sees to that) and never changed afterwards.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct BaseUrl {
    /// `https` (true) or `http`.
    pub tls: bool,
    /// Host name (lower case) or IP literal (IPv6 without brackets). Shared: every request's pool key
    /// (`upstream/client.rs`) holds it, without a copy.
    pub host: Arc<str>,
    pub port: u16,
    /// Path prefix without a trailing slash ("" or "/v1").
    pub prefix: String,
    /// The `Host` value, spelled once here: every forwarded request sends it.
    authority: String,
}

impl BaseUrl {
    pub fn scheme(&self) -> &'static str {
        if self.tls {
            "https"
        } else {
            "http"
        }
    }

    /// The `Host` header value to send upstream: the host (an IPv6 address in brackets) and the port
    /// unless it is the scheme's default.
    pub fn authority(&self) -> &str {
        &self.authority
    }
}

/// See [`BaseUrl::authority`].
fn spell_authority(tls: bool, host: &str, port: u16) -> String {
    let host = if host.contains(':') {
        format!("[{host}]")
    } else {
        host.to_string()
    };
    let default = if tls { 443 } else { 80 };
    if port == default {
        host
    } else {
        format!("{host}:{port}")
    }
}

/// The URL in its normalised spelling: lower-case host, no default port, no trailing slash.
impl fmt::Display for BaseUrl {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}://{}{}", self.scheme(), self.authority(), self.prefix)
    }
}

/// What a valid base URL looks like, the one message for every way one can be wrong.
const EXPECTED: &str =
    "expected an absolute URL like \"https://api.example.com/v1\" (http or https, no query)";

/// Parses an upstream base URL.
///
/// # Errors
/// A sentence saying what a valid one looks like: a scheme other than `http`/`https`, user info, a
/// query or fragment, spaces, backslashes, control or non-ASCII bytes, a host that is neither a
/// registered name nor a bracketed IPv6 address, a port outside 1..=65535, or a `.`/`..` segment.
pub fn parse_base_url(s: &str) -> Result<BaseUrl, String> {
    let (tls, rest) = if let Some(r) = s.strip_prefix("https://") {
        (true, r)
    } else if let Some(r) = s.strip_prefix("http://") {
        (false, r)
    } else {
        return Err(EXPECTED.into());
    };
    if rest.contains(['?', '#', '@', ' ', '\\'])
        || rest.bytes().any(|b| b.is_ascii_control() || b >= 0x80)
    {
        return Err(EXPECTED.into());
    }
    let (authority, path) = match rest.find('/') {
        Some(i) => (&rest[..i], &rest[i..]),
        None => (rest, ""),
    };
    let (host, port) = split_authority(authority).ok_or(EXPECTED)?;
    let host_ok = if authority.starts_with('[') {
        host.parse::<Ipv6Addr>().is_ok()
    } else {
        is_reg_name(host)
    };
    if !host_ok {
        return Err(EXPECTED.into());
    }
    let port = match port {
        Some(p) => parse_port(p).ok_or(EXPECTED)?,
        None if tls => 443,
        None => 80,
    };
    let prefix = path.trim_end_matches('/').to_string();
    if prefix.split('/').any(|seg| seg == "." || seg == "..") {
        return Err(EXPECTED.into());
    }
    let host: Arc<str> = host.to_ascii_lowercase().into();
    Ok(BaseUrl {
        authority: spell_authority(tls, &host, port),
        tls,
        host,
        port,
        prefix,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn base_urls_parse_into_parts() {
        let b = parse_base_url("https://API.example.com/v1/").unwrap();
        assert_eq!(
            (b.tls, &*b.host, b.port, b.prefix.as_str()),
            (true, "api.example.com", 443, "/v1")
        );
        assert_eq!(b.to_string(), "https://api.example.com/v1");
        let b = parse_base_url("http://127.0.0.1:8080").unwrap();
        assert_eq!(
            (b.port, b.prefix.as_str(), b.authority()),
            (8080, "", "127.0.0.1:8080")
        );
        let b = parse_base_url("http://[::1]:9000/x").unwrap();
        assert_eq!((&*b.host, b.authority()), ("::1", "[::1]:9000"));
        assert_eq!(b.to_string(), "http://[::1]:9000/x");
        assert_eq!(
            &*parse_base_url("https://my_llm.internal/v1").unwrap().host,
            "my_llm.internal"
        );
        for bad in [
            "ftp://x",
            "https://",
            "https://a..b",
            "https://u@a.example",
            "https://a.example?q",
            "https://a.example:0",
            "https://a.example:+80",
            "https://a.example:65536",
            "http://::1:80",
            "https://[::1",
            "https://a.example/../x",
            "https://a b",
            "https://é.example",
        ] {
            assert_eq!(parse_base_url(bad), Err(EXPECTED.to_string()), "{bad}");
        }
    }
}
