//! IP ranges in CIDR form and the canonical text of an address: the strict parser of the token's `ips`
//! claim (`docs/token-format.md` §5.1.16), the lenient one of `config.json` lists (`trusted_proxies`,
//! `metrics.allowed_ips`), and matching that treats an IPv4-mapped IPv6 client as the IPv4 one.

use std::fmt;
use std::net::IpAddr;

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

/// A `config.json` list entry: a CIDR range or a single address (taken as a /32 or /128).
pub fn parse_net(s: &str) -> Option<IpNet> {
    if s.contains('/') {
        IpNet::parse(s)
    } else {
        let ip: IpAddr = s.parse().ok()?;
        IpNet::new(ip, if ip.is_ipv4() { 32 } else { 128 })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

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
    fn a_single_address_is_a_full_length_range() {
        let one = parse_net("127.0.0.1").unwrap();
        assert!(one.contains("127.0.0.1".parse().unwrap()));
        assert!(!one.contains("127.0.0.2".parse().unwrap()));
        assert_eq!(parse_net("::1").unwrap().prefix(), 128);
        assert_eq!(parse_net("10.0.0.0/33"), None);
        assert_eq!(parse_net("localhost"), None);
    }
}
