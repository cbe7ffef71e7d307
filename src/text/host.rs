//! Host names and IP literals: the two name rules the relay uses, and the host forms built on them.
//!
//! **The rule, and why there are two.** A *host name* the relay publishes for clients to connect to
//! (`.rai` `server.host`, `tls.redirect_host`) follows RFC 1123 §2.1 (RFC 952 as amended): labels of
//! letters, digits and `-`, neither starting nor ending with `-`, and a last label that is not all digits
//! (RFC 3696 §2, so `1.2.3` is never taken for a name). `_` is refused there: it is not part of the host
//! name syntax, public CAs may not put it in a certificate (CA/Browser Forum ballot SC-12), and every SDK
//! and browser must accept the name as it is. A *registered name* the relay only compares or looks up
//! (the token's `url` and `origins` claims, upstream base URLs in `config.json`, a request's `Origin`)
//! follows the RFC 3986 §3.2.2 `reg-name` as URL parsers take it: labels of letters, digits, `-` and `_`,
//! because real internal names (container and service names) carry `_`, WHATWG URL parsers accept it,
//! and the token format (`docs/token-format.md` §5.1.10, §5.1.15, pinned by `tests/vectors/`) already
//! does. Both rules share the lengths of RFC 1035 §2.3.4: labels of 1 to 63 bytes, at most 253 in all, no
//! empty label, no trailing dot.

use std::net::{IpAddr, Ipv4Addr, Ipv6Addr};

/// Longest DNS name in text form (RFC 1035 §2.3.4: 255 octets on the wire, 253 characters written).
pub const MAX_HOST_NAME_LEN: usize = 253;
/// Longest DNS label (RFC 1035 §2.3.4).
pub const MAX_LABEL_LEN: usize = 63;

fn labels_ok(name: &str, label_ok: impl Fn(&str) -> bool) -> bool {
    !name.is_empty()
        && name.len() <= MAX_HOST_NAME_LEN
        && name
            .split('.')
            .all(|l| (1..=MAX_LABEL_LEN).contains(&l.len()) && label_ok(l))
}

/// An RFC 1123 host name (see the module text): `relay.example.com`, `xn--bcher-kva.example`. Any case.
pub fn is_dns_name(name: &str) -> bool {
    let numeric_last = name
        .rsplit('.')
        .next()
        .is_some_and(|l| !l.is_empty() && l.bytes().all(|b| b.is_ascii_digit()));
    !numeric_last
        && labels_ok(name, |l| {
            l.bytes().all(|b| b.is_ascii_alphanumeric() || b == b'-')
                && !l.starts_with('-')
                && !l.ends_with('-')
        })
}

/// A registered name as URL parsers take it (see the module text): labels of `A-Z a-z 0-9 - _`. A
/// dotted-quad IPv4 address is one too.
pub fn is_reg_name(name: &str) -> bool {
    labels_ok(name, is_reg_label)
}

/// One label of a registered name: 1 to 63 bytes of `A-Z a-z 0-9 - _`.
pub fn is_reg_label(label: &str) -> bool {
    (1..=MAX_LABEL_LEN).contains(&label.len())
        && label
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || b == b'-' || b == b'_')
}

/// A host the relay can publish: an RFC 1123 name, a dotted-quad IPv4 address (no leading zeros), or an
/// IPv6 address in RFC 4291 text without brackets or zone id (docs/client-config.md rule 3).
pub fn is_public_host(host: &str) -> bool {
    host.parse::<Ipv4Addr>().is_ok() || host.parse::<Ipv6Addr>().is_ok() || is_dns_name(host)
}

/// A host as it appears in a URL's authority: an IPv6 literal comes in brackets.
pub fn bracketed(host: &str) -> String {
    if host.parse::<Ipv6Addr>().is_ok() {
        format!("[{host}]")
    } else {
        host.to_owned()
    }
}

/// An authority `host[:port]` or `[v6][:port]` split into its host (brackets removed) and the port text
/// after `:`, if any. `None` when brackets do not close or something other than `:port` follows them.
/// Nothing about the host's characters or the port's digits is checked here.
pub fn split_authority(authority: &str) -> Option<(&str, Option<&str>)> {
    if let Some(v6) = authority.strip_prefix('[') {
        let (inside, after) = v6.split_once(']')?;
        match after {
            "" => Some((inside, None)),
            p => p.strip_prefix(':').map(|p| (inside, Some(p))),
        }
    } else {
        Some(match authority.split_once(':') {
            Some((h, p)) => (h, Some(p)),
            None => (authority, None),
        })
    }
}

/// A port written as 1 to 5 decimal digits with a value from 1 to 65535 (leading zeros allowed).
pub fn parse_port(text: &str) -> Option<u16> {
    let digits = (1..=5).contains(&text.len()) && text.bytes().all(|b| b.is_ascii_digit());
    digits
        .then(|| text.parse::<u16>().ok())
        .flatten()
        .filter(|p| *p != 0)
}

/// The name to put in a redirect's `Location`: `configured` (`tls.redirect_host`) when set, else
/// `server_host` when it is a specific address. IPv6 addresses come back bracketed.
///
/// # Errors
/// A sentence for the operator: the configured name is not a host name or IP address, or there is none
/// and `server_host` is a wildcard (0.0.0.0, ::) that names no server.
pub fn public_name(configured: Option<&str>, server_host: IpAddr) -> Result<String, &'static str> {
    let name = match configured {
        Some(n) => n.to_owned(),
        None if server_host.is_unspecified() => {
            return Err(
                "set the relay's public DNS name (e.g. \"relay.example.com\") for the redirect's Location",
            )
        }
        None => server_host.to_string(),
    };
    // An IPv6 address may also be configured as it appears in a URL, in brackets.
    let bare = match name.strip_prefix('[').and_then(|n| n.strip_suffix(']')) {
        Some(inside) if inside.parse::<Ipv6Addr>().is_ok() => inside,
        _ => &name,
    };
    if !is_public_host(bare) {
        return Err("expected a DNS name (e.g. \"relay.example.com\") or an IP address, without scheme, port or path");
    }
    Ok(bracketed(bare))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn host_names_follow_rfc_1123() {
        for ok in [
            "relay.example.com",
            "Relay.Example.com",
            "xn--bcher-kva.example",
            "a",
            "a1-b.c",
        ] {
            assert!(is_dns_name(ok), "{ok}");
        }
        for bad in [
            "",
            "relay_1.example.com",
            "relay..example.com",
            "relay.example.com.",
            "-relay.example",
            "relay-.example",
            "1.2.3",
            "010.0.0.1",
            "a b",
            "relay.example.com:443",
        ] {
            assert!(!is_dns_name(bad), "{bad}");
        }
        assert!(!is_dns_name(&format!("{}.example", "a".repeat(64))));
        assert!(!is_dns_name(&format!("{}.a", "a.".repeat(126))));
    }

    #[test]
    fn registered_names_take_underscores() {
        for ok in ["my_host.example.com", "10.0.0.1", "-odd-.example", "x"] {
            assert!(is_reg_name(ok), "{ok}");
        }
        for bad in ["", "a..b", "a.", "a:b", "a~b", "a%41"] {
            assert!(!is_reg_name(bad), "{bad}");
        }
    }

    #[test]
    fn public_hosts() {
        for ok in ["10.0.0.1", "2001:db8::1", "relay.example.com"] {
            assert!(is_public_host(ok), "{ok}");
        }
        for bad in [
            "[2001:db8::1]",
            "fe80::1%eth0",
            "010.0.0.1",
            "1.2.3",
            "a_b.example",
        ] {
            assert!(!is_public_host(bad), "{bad}");
        }
    }

    #[test]
    fn authorities_and_ports() {
        assert_eq!(
            split_authority("a.example:8443"),
            Some(("a.example", Some("8443")))
        );
        assert_eq!(split_authority("[::1]:80"), Some(("::1", Some("80"))));
        assert_eq!(split_authority("[::1]"), Some(("::1", None)));
        assert_eq!(split_authority("[::1"), None);
        assert_eq!(split_authority("[::1]x"), None);
        assert_eq!(parse_port("08443"), Some(8443));
        for bad in ["", "0", "65536", "123456", "+80", "8a"] {
            assert_eq!(parse_port(bad), None, "{bad}");
        }
    }

    #[test]
    fn the_public_name_is_configured_or_the_listening_address() {
        let ip = |s: &str| s.parse::<IpAddr>().unwrap();
        assert_eq!(
            public_name(Some("relay.example.com"), ip("0.0.0.0")).unwrap(),
            "relay.example.com"
        );
        assert_eq!(public_name(None, ip("127.0.0.1")).unwrap(), "127.0.0.1");
        assert_eq!(public_name(None, ip("::1")).unwrap(), "[::1]");
        assert_eq!(
            public_name(Some("2001:db8::1"), ip("::")).unwrap(),
            "[2001:db8::1]"
        );
        assert_eq!(
            public_name(Some("203.0.113.9"), ip("::")).unwrap(),
            "203.0.113.9"
        );
        for wildcard in ["0.0.0.0", "::"] {
            assert!(public_name(None, ip(wildcard)).is_err(), "{wildcard}");
        }
        for bad in [
            "",
            "a..b",
            "relay.example.com:443",
            "https://relay.example.com",
            "relay.example.com/x",
            "evil.example!$&",
            "%65vil.example",
            "[fe80::1%25eth0]",
        ] {
            assert!(public_name(Some(bad), ip("127.0.0.1")).is_err(), "{bad:?}");
        }
        // RFC 1123: no `_`, and a last label of digits only is never a name.
        for bad in ["relay_1.example.com", "1.2.3"] {
            assert!(public_name(Some(bad), ip("127.0.0.1")).is_err(), "{bad:?}");
        }
        assert_eq!(
            public_name(Some("[2001:db8::1]"), ip("::")).unwrap(),
            "[2001:db8::1]"
        );
        let long = format!("{}.example", "a".repeat(64));
        assert!(public_name(Some(&long), ip("127.0.0.1")).is_err());
    }
}
