//! The outbound HTTP allow-list of a task type (`http = [...]` in
//! `wasq.toml`): parsing each entry and deciding whether a request, and the
//! address its host resolved to, may go out. A leaf: it imports nothing of
//! wasq's.
//!
//! An entry is `scheme://host[:port]`:
//! - scheme `http` or `https`;
//! - host an exact name (`hooks.example.com`), a subdomain wildcard
//!   (`*.stripe.com`: any name under it, not the name itself), `localhost`,
//!   an IP address (`127.0.0.1`, `[::1]`) or a CIDR block (`10.0.0.0/8`);
//! - port the scheme's default when left out, a number, or `*` for any.
//!
//! Names are checked before any connection, and the addresses they resolve
//! to after: an address in a loopback, private, link-local or otherwise
//! non-public range is refused unless the list names it literally (the IP
//! itself, a CIDR block holding it, or `localhost` for a loopback address)
//! for the request's scheme and port, so a public name that resolves to
//! `127.0.0.1` or `169.254.169.254` does not get in.
//!
//! ```
//! use wasq::http_grant::HttpGrant;
//!
//! let grants: Vec<HttpGrant> = ["https://*.stripe.com", "http://localhost:*"]
//!     .iter()
//!     .map(|entry| entry.parse().unwrap())
//!     .collect();
//! assert!(HttpGrant::allows_request(&grants, "https", "api.stripe.com", 443));
//! assert!(!HttpGrant::allows_request(&grants, "https", "stripe.com", 443));
//! assert!(HttpGrant::allows_request(&grants, "http", "localhost", 8080));
//! assert!("https://example.com/path".parse::<HttpGrant>().is_err());
//! ```

use std::fmt;
use std::net::IpAddr;
use std::str::FromStr;

/// `http` or `https`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Scheme {
    /// Plain HTTP.
    Http,
    /// HTTP over TLS.
    Https,
}

impl Scheme {
    /// The port a URL of this scheme means when it names none.
    pub fn default_port(self) -> u16 {
        match self {
            Scheme::Http => 80,
            Scheme::Https => 443,
        }
    }

    fn parse(text: &str) -> Option<Scheme> {
        match text.to_ascii_lowercase().as_str() {
            "http" => Some(Scheme::Http),
            "https" => Some(Scheme::Https),
            _ => None,
        }
    }
}

/// Which hosts an entry admits.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum HostPattern {
    /// One name, compared without regard to case.
    Name(String),
    /// Every name under this suffix (stored with its leading dot).
    Subdomains(String),
    /// One address, written literally.
    Ip(IpAddr),
    /// A block of addresses, written literally.
    Cidr(IpAddr, u8),
}

/// Which ports an entry admits.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum PortPattern {
    /// The scheme's default port.
    Default,
    /// This port.
    Exact(u16),
    /// Any port.
    Any,
}

/// One entry of an `http` allow-list.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct HttpGrant {
    /// The scheme.
    pub scheme: Scheme,
    /// The hosts.
    pub host: HostPattern,
    /// The ports.
    pub port: PortPattern,
    text: String,
}

impl fmt::Display for HttpGrant {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.text)
    }
}

impl FromStr for HttpGrant {
    type Err = String;

    fn from_str(entry: &str) -> Result<Self, String> {
        let bad = |why: &str| Err(format!("{entry:?} is not an http grant: {why}"));
        let Some((scheme, rest)) = entry.split_once("://") else {
            return bad("write it as scheme://host[:port], e.g. \"https://hooks.example.com\"");
        };
        let Some(scheme) = Scheme::parse(scheme) else {
            return bad("the scheme must be http or https");
        };
        let (authority, path) = match rest.find('/') {
            Some(at) => (&rest[..at], &rest[at..]),
            None => (rest, ""),
        };
        // `10.0.0.0/8` and `10.0.0.0/8:*`: the path part is a prefix length.
        if let Some(cidr) = path.strip_prefix('/').filter(|p| {
            p.split(':')
                .next()
                .is_some_and(|bits| !bits.is_empty() && bits.chars().all(|c| c.is_ascii_digit()))
        }) {
            let (bits, port) = match cidr.split_once(':') {
                Some((bits, port)) => (bits, Some(port)),
                None => (cidr, None),
            };
            let Ok(ip) = authority.trim_matches(['[', ']']).parse::<IpAddr>() else {
                return bad("a prefix length (/8) follows only an IP address");
            };
            let max = if ip.is_ipv4() { 32 } else { 128 };
            let bits: u8 = match bits.parse() {
                Ok(bits) if bits <= max => bits,
                _ => return bad("the prefix length is too long for the address"),
            };
            let port = match port {
                None => PortPattern::Default,
                Some(port) => parse_port(port).map_err(|why| format!("{entry:?}: {why}"))?,
            };
            return Ok(HttpGrant {
                scheme,
                host: HostPattern::Cidr(ip, bits),
                port,
                text: entry.to_owned(),
            });
        }
        if !path.is_empty() && path != "/" {
            return bad(
                "an entry names a host, not a path: drop the path (a grant admits every path of its host)",
            );
        }
        if authority.contains('@') {
            return bad("an entry may not carry a user or password");
        }
        let (host, port) = split_host_port(authority);
        let port = match port {
            None => PortPattern::Default,
            Some(port) => parse_port(port).map_err(|why| format!("{entry:?}: {why}"))?,
        };
        let host = if host == "*" {
            return bad(
                "a bare `*` would admit every host on the internet; list the hosts, with `*.example.com` for the subdomains of one",
            );
        } else if let Some(suffix) = host.strip_prefix("*.") {
            if suffix.is_empty() || suffix.contains('*') || !valid_name(suffix) {
                return bad("a wildcard is `*.` followed by a domain name");
            }
            HostPattern::Subdomains(format!(".{}", suffix.to_ascii_lowercase()))
        } else if let Ok(ip) = host.trim_matches(['[', ']']).parse::<IpAddr>() {
            HostPattern::Ip(ip)
        } else if valid_name(host) {
            HostPattern::Name(host.to_ascii_lowercase())
        } else {
            return bad("the host is not a domain name, `*.domain`, an IP address or a CIDR block");
        };
        Ok(HttpGrant {
            scheme,
            host,
            port,
            text: entry.to_owned(),
        })
    }
}

impl HttpGrant {
    /// Whether this entry admits a request to `host:port` over `scheme`
    /// (`host` as in the URL: a name or an IP literal, brackets allowed).
    pub fn matches(&self, scheme: &str, host: &str, port: u16) -> bool {
        if Scheme::parse(scheme) != Some(self.scheme) {
            return false;
        }
        let port_ok = match self.port {
            PortPattern::Default => port == self.scheme.default_port(),
            PortPattern::Exact(p) => port == p,
            PortPattern::Any => true,
        };
        if !port_ok {
            return false;
        }
        let host = host.trim_matches(['[', ']']).trim_end_matches('.');
        let ip = host.parse::<IpAddr>().ok();
        match (&self.host, ip) {
            (HostPattern::Name(name), None) => host.eq_ignore_ascii_case(name),
            (HostPattern::Subdomains(suffix), None) => {
                let host = host.to_ascii_lowercase();
                host.ends_with(suffix.as_str()) && host.len() > suffix.len()
            }
            (HostPattern::Ip(granted), Some(ip)) => *granted == ip,
            (HostPattern::Cidr(net, bits), Some(ip)) => in_block(ip, *net, *bits),
            _ => false,
        }
    }

    /// Whether any of `grants` admits the request.
    pub fn allows_request(grants: &[HttpGrant], scheme: &str, host: &str, port: u16) -> bool {
        grants.iter().any(|g| g.matches(scheme, host, port))
    }

    /// Whether `addr`, which the request's host resolved to, may be
    /// connected to: any public address, and a non-public one only when a
    /// request made straight to it would be allowed by an entry that names
    /// it literally (its IP, a CIDR block holding it, or `localhost` for a
    /// loopback address) with the request's scheme and port.
    pub fn allows_address(
        grants: &[HttpGrant],
        scheme: &str,
        _host: &str,
        port: u16,
        addr: IpAddr,
    ) -> bool {
        if is_public(addr) {
            return true;
        }
        grants.iter().any(|g| match &g.host {
            HostPattern::Ip(_) | HostPattern::Cidr(..) => {
                g.matches(scheme, &addr.to_string(), port)
            }
            HostPattern::Name(name) => {
                name == "localhost" && addr.is_loopback() && g.matches(scheme, "localhost", port)
            }
            HostPattern::Subdomains(_) => false,
        })
    }
}

/// Whether an address is reachable on the public internet: not loopback,
/// private, link-local (cloud metadata lives there), carrier-grade NAT,
/// unique-local, multicast, documentation, benchmarking or unspecified.
pub fn is_public(addr: IpAddr) -> bool {
    match addr {
        IpAddr::V4(v4) => {
            let [a, b, c, _] = v4.octets();
            !(v4.is_loopback()
                || v4.is_private()
                || v4.is_link_local()
                || v4.is_unspecified()
                || v4.is_broadcast()
                || v4.is_multicast()
                || v4.is_documentation()
                || a == 0
                || (a == 100 && (64..128).contains(&b))
                || (a == 192 && b == 0 && c == 0)
                || (a == 198 && (18..20).contains(&b))
                || a >= 240)
        }
        IpAddr::V6(v6) => {
            if let Some(v4) = v6.to_ipv4_mapped() {
                return is_public(IpAddr::V4(v4));
            }
            let first = v6.segments()[0];
            !(v6.is_loopback()
                || v6.is_unspecified()
                || v6.is_multicast()
                || (first & 0xfe00) == 0xfc00
                || (first & 0xffc0) == 0xfe80
                || first == 0x2001 && v6.segments()[1] == 0x0db8
                || first == 0x0064 && v6.segments()[1] == 0xff9b)
        }
    }
}

fn in_block(ip: IpAddr, net: IpAddr, bits: u8) -> bool {
    match (ip, net) {
        (IpAddr::V4(ip), IpAddr::V4(net)) => {
            let mask = u32::MAX.checked_shl(32 - u32::from(bits)).unwrap_or(0);
            u32::from(ip) & mask == u32::from(net) & mask
        }
        (IpAddr::V6(ip), IpAddr::V6(net)) => {
            let mask = u128::MAX.checked_shl(128 - u32::from(bits)).unwrap_or(0);
            u128::from(ip) & mask == u128::from(net) & mask
        }
        _ => false,
    }
}

/// `host:port`, `[v6]:port`, `host`, `[v6]`.
fn split_host_port(authority: &str) -> (&str, Option<&str>) {
    if let Some(rest) = authority.strip_prefix('[') {
        return match rest.split_once(']') {
            Some((host, tail)) => (host, tail.strip_prefix(':')),
            None => (authority, None),
        };
    }
    match authority.rsplit_once(':') {
        Some((host, port)) if !host.contains(':') => (host, Some(port)),
        _ => (authority, None),
    }
}

fn parse_port(port: &str) -> Result<PortPattern, String> {
    if port == "*" {
        return Ok(PortPattern::Any);
    }
    match port.parse::<u16>() {
        Ok(p) if p > 0 => Ok(PortPattern::Exact(p)),
        _ => Err(format!("the port must be 1-65535 or `*`, not {port:?}")),
    }
}

fn valid_name(name: &str) -> bool {
    !name.is_empty()
        && name.len() <= 253
        && name.split('.').all(|label| {
            !label.is_empty()
                && label.len() <= 63
                && label
                    .chars()
                    .all(|c| c.is_ascii_alphanumeric() || c == '-' || c == '_')
        })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn grants(entries: &[&str]) -> Vec<HttpGrant> {
        entries.iter().map(|e| e.parse().unwrap()).collect()
    }

    #[test]
    fn entries_are_parsed_or_refused_with_the_reason() {
        let g: HttpGrant = "https://Hooks.Example.com".parse().unwrap();
        assert_eq!(g.host, HostPattern::Name("hooks.example.com".into()));
        assert_eq!(g.port, PortPattern::Default);
        let g: HttpGrant = "http://127.0.0.1:8080".parse().unwrap();
        assert_eq!(g.port, PortPattern::Exact(8080));
        let g: HttpGrant = "http://[::1]:*".parse().unwrap();
        assert_eq!(g.host, HostPattern::Ip("::1".parse().unwrap()));
        assert_eq!(g.port, PortPattern::Any);
        let g: HttpGrant = "http://10.0.0.0/8:*".parse().unwrap();
        assert_eq!(g.host, HostPattern::Cidr("10.0.0.0".parse().unwrap(), 8));
        for (entry, why) in [
            ("ftp://example.com", "scheme"),
            ("example.com", "scheme://host"),
            ("https://example.com/hooks", "path"),
            ("https://*", "bare `*`"),
            ("https://a.*.com", "not a domain name"),
            ("https://example.com:0", "port"),
            ("https://example.com:http", "port"),
            ("https://u:p@example.com", "user"),
            ("http://10.0.0.0/33", "prefix length"),
        ] {
            let error = entry.parse::<HttpGrant>().unwrap_err();
            assert!(error.contains(why), "{entry}: {error}");
        }
    }

    #[test]
    fn requests_match_scheme_host_and_port() {
        let g = grants(&[
            "https://hooks.example.com",
            "https://*.stripe.com",
            "http://127.0.0.1:8080",
            "http://localhost:*",
        ]);
        let ok = |s, h, p| HttpGrant::allows_request(&g, s, h, p);
        assert!(ok("https", "hooks.example.com", 443));
        assert!(ok("https", "HOOKS.example.com.", 443));
        assert!(!ok("http", "hooks.example.com", 80), "scheme");
        assert!(!ok("https", "hooks.example.com", 8443), "port");
        assert!(!ok("https", "evil.com", 443));
        assert!(ok("https", "api.stripe.com", 443));
        assert!(ok("https", "a.b.stripe.com", 443));
        assert!(
            !ok("https", "stripe.com", 443),
            "the apex is not a subdomain"
        );
        assert!(!ok("https", "notstripe.com", 443));
        assert!(ok("http", "127.0.0.1", 8080));
        assert!(!ok("http", "127.0.0.1", 8081));
        assert!(ok("http", "localhost", 1234));
    }

    #[test]
    fn non_public_addresses_need_a_literal_entry() {
        let g = grants(&["http://*.example.test:*", "http://10.1.0.0/16:*"]);
        let loopback: IpAddr = "127.0.0.1".parse().unwrap();
        let metadata: IpAddr = "169.254.169.254".parse().unwrap();
        let public: IpAddr = "93.184.216.34".parse().unwrap();
        let addr =
            |g: &[HttpGrant], ip| HttpGrant::allows_address(g, "http", "api.example.test", 80, ip);
        assert!(!addr(&g, loopback), "wildcard to loopback");
        assert!(!addr(&g, metadata));
        assert!(addr(&g, public));
        assert!(
            addr(&g, "10.1.2.3".parse().unwrap()),
            "inside a listed block"
        );
        // Listing loopback literally lets the name reach it, on the listed ports.
        let with_lo = grants(&["http://*.example.test:*", "http://127.0.0.1:80"]);
        assert!(addr(&with_lo, loopback));
        assert!(!HttpGrant::allows_address(
            &with_lo,
            "http",
            "api.example.test",
            8080,
            loopback
        ));
        let localhost = grants(&["http://localhost:*"]);
        assert!(addr(&localhost, loopback));
        assert!(!addr(&localhost, metadata));
        assert!(!is_public("::ffff:127.0.0.1".parse().unwrap()));
        assert!(!is_public("fd00::1".parse().unwrap()));
        assert!(!is_public("100.64.0.1".parse().unwrap()));
        assert!(is_public("2606:4700::1111".parse().unwrap()));
    }
}
