//! The client's address: the socket's peer, or, when that peer is a proxy listed in
//! `TRUSTED_PROXIES`, the nearest address in `X-Forwarded-For` that is not a trusted proxy.

use std::net::IpAddr;

/// An address range: an address and how many leading bits of it count.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct IpRange {
    addr: IpAddr,
    prefix: u8,
}

impl IpRange {
    /// `10.0.0.1`, `10.0.0.0/8`, `::1`, `fd00::/8`.
    pub fn parse(s: &str) -> Option<Self> {
        let (addr, prefix) = match s.split_once('/') {
            Some((a, p)) => (
                a.trim().parse::<IpAddr>().ok()?,
                Some(p.trim().parse::<u8>().ok()?),
            ),
            None => (s.trim().parse::<IpAddr>().ok()?, None),
        };
        let max = if addr.is_ipv4() { 32 } else { 128 };
        let prefix = prefix.unwrap_or(max);
        (prefix <= max).then_some(Self { addr, prefix })
    }

    pub fn contains(&self, ip: IpAddr) -> bool {
        fn bits(ip: IpAddr) -> (u128, u8) {
            match ip {
                IpAddr::V4(v4) => (u128::from(u32::from(v4)), 32),
                IpAddr::V6(v6) => match v6.to_ipv4_mapped() {
                    Some(v4) => (u128::from(u32::from(v4)), 32),
                    None => (u128::from(v6), 128),
                },
            }
        }
        let ((net, width), (candidate, candidate_width)) = (bits(self.addr), bits(ip));
        if width != candidate_width {
            return false;
        }
        let prefix = u32::from(self.prefix.min(width));
        let shift = u32::from(width) - prefix;
        prefix == 0 || (net >> shift) == (candidate >> shift)
    }
}

/// Parses a comma-separated list of addresses and ranges.
pub fn parse_ranges(list: &str) -> Option<Vec<IpRange>> {
    list.split(',')
        .map(str::trim)
        .filter(|s| !s.is_empty())
        .map(IpRange::parse)
        .collect()
}

/// The client of a request that came from `peer` with these `X-Forwarded-For` values.
pub fn client_ip<'a>(
    peer: IpAddr,
    forwarded_for: impl DoubleEndedIterator<Item = &'a str>,
    trusted: &[IpRange],
) -> IpAddr {
    let is_trusted = |ip: IpAddr| trusted.iter().any(|r| r.contains(ip));
    if !is_trusted(peer) {
        return peer;
    }
    // The right-most entries were added by our own proxies; the first one that is not
    // ours is the client as our nearest proxy saw it. Entries left of it are the
    // client's own claim and are not believed.
    let mut client = peer;
    for hop in forwarded_for.rev().flat_map(|v| v.rsplit(',')) {
        match hop.trim().parse::<IpAddr>() {
            Ok(ip) if is_trusted(ip) => client = ip,
            Ok(ip) => return ip,
            Err(_) => return client,
        }
    }
    client
}

#[cfg(test)]
mod tests {
    use super::*;

    fn ip(s: &str) -> IpAddr {
        s.parse().unwrap()
    }

    #[test]
    fn ranges_match_their_prefix() {
        let r = IpRange::parse("10.1.0.0/16").unwrap();
        assert!(r.contains(ip("10.1.200.3")));
        assert!(!r.contains(ip("10.2.0.1")));
        assert!(!r.contains(ip("::1")));
        assert!(IpRange::parse("::1").unwrap().contains(ip("::1")));
        assert!(
            IpRange::parse("127.0.0.1")
                .unwrap()
                .contains(ip("::ffff:127.0.0.1"))
        );
        assert!(IpRange::parse("0.0.0.0/0").unwrap().contains(ip("8.8.8.8")));
        assert_eq!(IpRange::parse("10.0.0.0/33"), None);
        assert_eq!(IpRange::parse("proxy"), None);
        assert_eq!(parse_ranges("127.0.0.1, 10.0.0.0/8").unwrap().len(), 2);
        assert_eq!(parse_ranges("127.0.0.1, nonsense"), None);
    }

    #[test]
    fn forwarded_for_counts_only_behind_a_trusted_proxy() {
        let proxies = parse_ranges("10.0.0.0/8").unwrap();
        let xff = ["6.6.6.6, 1.2.3.4, 10.0.0.7"];
        // straight from the internet: the header is the client's own claim
        assert_eq!(
            client_ip(ip("5.5.5.5"), xff.into_iter(), &proxies),
            ip("5.5.5.5")
        );
        // through our proxies: the first address they did not add
        assert_eq!(
            client_ip(ip("10.0.0.2"), xff.into_iter(), &proxies),
            ip("1.2.3.4")
        );
        assert_eq!(
            client_ip(ip("10.0.0.2"), ["6.6.6.6", "1.2.3.4"].into_iter(), &proxies),
            ip("1.2.3.4"),
            "one header per hop"
        );
        assert_eq!(
            client_ip(ip("10.0.0.2"), [].into_iter(), &proxies),
            ip("10.0.0.2")
        );
        assert_eq!(
            client_ip(ip("10.0.0.2"), ["garbage, 10.0.0.9"].into_iter(), &proxies),
            ip("10.0.0.9")
        );
        assert_eq!(
            client_ip(ip("10.0.0.2"), xff.into_iter(), &[]),
            ip("10.0.0.2")
        );
    }
}
