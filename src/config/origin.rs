//! Web origins and host names: the one parser behind `server.allowed_origins` (checked here at
//! start-up) and behind the `Origin` and `Host` checks of `api::security`, so a configured
//! origin is accepted exactly when the guard can understand it.
//!
//! Names are compared lower-case without a trailing dot, addresses as parsed addresses
//! (`[0:0::1]` is `[::1]`), and an origin's default port is implied (`http://x:80` is
//! `http://x`), as browsers serialise origins.

use std::net::{IpAddr, Ipv4Addr, Ipv6Addr};

/// A host as named in `Host` or an origin: an address or a normalised DNS name.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum HostName {
    /// An IPv4 address, or an IPv6 one written in brackets.
    Ip(IpAddr),
    /// A DNS name, lower-cased, without its trailing dot.
    Name(String),
}

impl HostName {
    /// `host` as a URL authority writes it (brackets around IPv6); `None` when it is neither
    /// an address nor a name of letters, digits, `.`, `-` and `_`.
    pub fn parse(host: &str) -> Option<HostName> {
        if let Some(v6) = host.strip_prefix('[').and_then(|h| h.strip_suffix(']')) {
            return v6
                .parse::<Ipv6Addr>()
                .ok()
                .map(|ip| HostName::Ip(ip.into()));
        }
        if let Ok(ip) = host.parse::<Ipv4Addr>() {
            return Some(HostName::Ip(ip.into()));
        }
        let name = host.strip_suffix('.').unwrap_or(host).to_ascii_lowercase();
        let valid = !name.is_empty()
            && name
                .bytes()
                .all(|b| b.is_ascii_alphanumeric() || matches!(b, b'.' | b'-' | b'_'));
        valid.then_some(HostName::Name(name))
    }

    /// `localhost`, `127.0.0.1` or `[::1]` — not any 127/8 address nor `*.localhost`, which
    /// are loopback only by convention.
    pub fn is_loopback(&self) -> bool {
        match self {
            HostName::Ip(ip) => {
                *ip == IpAddr::V4(Ipv4Addr::LOCALHOST) || *ip == Ipv6Addr::LOCALHOST
            }
            HostName::Name(name) => name == "localhost",
        }
    }
}

/// A web origin, normalised: scheme, host and the port with the scheme's default made explicit.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Origin {
    /// `https`.
    pub secure: bool,
    /// The host.
    pub host: HostName,
    /// The port, 80 or 443 when the origin names none.
    pub port: u16,
}

impl Origin {
    /// `http(s)://host[:port]` with nothing after it, the scheme in any case; `None` for
    /// anything else, `null` (sandboxed frames, files) included. The port is decimal digits
    /// only (no sign) and fits in 16 bits.
    pub fn parse(text: &str) -> Option<Origin> {
        let lower = text.to_ascii_lowercase();
        let (secure, authority) = match lower.split_once("://")? {
            ("http", authority) => (false, authority),
            ("https", authority) => (true, authority),
            _ => return None,
        };
        if authority.is_empty() || authority.contains(['@', '/', '?', '#']) {
            return None;
        }
        let (host, port) = split_port(authority)?;
        let port = match port {
            None if secure => 443,
            None => 80,
            Some(port) => parse_port(port)?,
        };
        Some(Origin {
            secure,
            host: HostName::parse(host)?,
            port,
        })
    }
}

/// `host[:port]` or `[v6][:port]` into the host and the port's text, if any.
fn split_port(authority: &str) -> Option<(&str, Option<&str>)> {
    if authority.starts_with('[') {
        let end = authority.find(']')? + 1;
        let (host, rest) = authority.split_at(end);
        return match rest {
            "" => Some((host, None)),
            rest => Some((host, Some(rest.strip_prefix(':')?))),
        };
    }
    Some(match authority.split_once(':') {
        Some((host, port)) => (host, Some(port)),
        None => (authority, None),
    })
}

/// Decimal digits that fit in 16 bits: `u16::from_str` alone would take `+80`.
fn parse_port(text: &str) -> Option<u16> {
    if text.is_empty() || !text.bytes().all(|b| b.is_ascii_digit()) {
        return None;
    }
    text.parse().ok()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn origins_are_normalised() {
        let origin = Origin::parse("HTTPS://Example.COM.").unwrap();
        assert_eq!(
            origin,
            Origin {
                secure: true,
                host: HostName::Name("example.com".to_owned()),
                port: 443,
            }
        );
        assert_eq!(
            Origin::parse("http://[0:0::1]:80"),
            Origin::parse("http://[::1]")
        );
        assert_eq!(Origin::parse("http://127.0.0.1:0080").unwrap().port, 80);
    }

    #[test]
    fn anything_but_scheme_host_and_port_is_not_an_origin() {
        for text in [
            "",
            "null",
            "http://",
            "http://a:99999",
            "http://a:b:c",
            "http://*",
            "http://a:",
            "http://a:+80",
            "http://a:-1",
            "ftp://a",
            "http://[::1",
            "http://[::1]x",
            "http://[nope]:80",
            "http://a/path",
            "http://a?q",
            "http://a#f",
            "http://user@a",
            "http://a b",
        ] {
            assert_eq!(Origin::parse(text), None, "{text:?}");
        }
    }

    #[test]
    fn loopback_is_only_the_three_usual_names() {
        for host in ["localhost", "LOCALHOST.", "127.0.0.1", "[::1]", "[0:0::1]"] {
            assert!(HostName::parse(host).unwrap().is_loopback(), "{host}");
        }
        for host in ["127.0.0.2", "a.localhost", "[::2]"] {
            assert!(!HostName::parse(host).unwrap().is_loopback(), "{host}");
        }
    }
}
