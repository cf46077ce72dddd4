//! Which `Host` and `Origin` values the server answers to.
//!
//! A DNS-rebinding page reaches a loopback server under the attacker's own host name, so a
//! request whose `Host` is not a name of this server is refused; a cross-site page (or
//! WebSocket) announces itself in `Origin`, so a request from an origin that is neither
//! loopback nor configured is refused. Names are compared lower-case without a trailing dot,
//! addresses as parsed addresses (`[0:0::1]` is `[::1]`), and an origin's default port is
//! implied (`http://x:80` is `http://x`), as browsers serialise origins. The parser is
//! `config::origin`'s, the one that checked `server.allowed_origins` at start-up.

use std::net::SocketAddr;

use warp::http::uri::Authority;

use crate::config::origin::{HostName, Origin};

/// The outcome of [`OriginPolicy::check_origin`].
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum OriginVerdict {
    /// No `Origin` header: not a cross-origin browser request (curl, scripts, agents).
    Absent,
    /// A loopback or configured origin; CORS headers may name it.
    Allowed,
    /// Anything else, unparsable included.
    Refused,
}

/// The hosts and origins of `server.allowed_origins`, the loopback ones and the bound address.
#[derive(Debug, Clone)]
pub(crate) struct OriginPolicy {
    allowed_origins: Vec<Origin>,
    /// The hosts a request may name besides loopback: the bound address and the hosts of
    /// the allowed origins.
    extra_hosts: Vec<HostName>,
    /// Bound to every interface (`0.0.0.0`, `::`), which only a token allows: any address
    /// of the machine is then a valid `Host`. An address is never a rebinding vector; a
    /// name has to be configured as an allowed origin.
    any_address: bool,
}

impl OriginPolicy {
    /// `allowed_origins` were checked by `config` with this same parser; one that does not
    /// parse all the same (settings built without `Settings::load`) is left out and logged,
    /// never widened.
    pub(crate) fn new(allowed_origins: &[String], bound: SocketAddr) -> OriginPolicy {
        let allowed_origins: Vec<Origin> = allowed_origins
            .iter()
            .filter_map(|text| {
                let origin = Origin::parse(text);
                if origin.is_none() {
                    tracing::warn!(origin = %text, "allowed origin ignored: not an origin");
                }
                origin
            })
            .collect();
        let mut extra_hosts = vec![HostName::Ip(bound.ip())];
        extra_hosts.extend(allowed_origins.iter().map(|origin| origin.host.clone()));
        OriginPolicy {
            allowed_origins,
            extra_hosts,
            any_address: bound.ip().is_unspecified(),
        }
    }

    /// Whether a request naming `authority` (its `Host`) is for this server.
    pub(crate) fn allows_host(&self, authority: &Authority) -> bool {
        HostName::parse(authority.host()).is_some_and(|host| {
            host.is_loopback()
                || self.extra_hosts.contains(&host)
                || (self.any_address && matches!(host, HostName::Ip(_)))
        })
    }

    /// Whether `origin` is the origin of a page this server served under `host` (the
    /// request's `Host`, already checked by [`OriginPolicy::allows_host`]): the dashboard's
    /// own requests. Same host and port, the scheme's default port implied — whatever the
    /// bind address, so a server bound to `10.1.2.3` accepts its own page's requests.
    pub(crate) fn is_same_origin(&self, origin: &str, host: &Authority) -> bool {
        let (Some(origin), Some(name)) = (Origin::parse(origin), HostName::parse(host.host()))
        else {
            return false;
        };
        let default_port = if origin.secure { 443 } else { 80 };
        origin.host == name && origin.port == host.port_u16().unwrap_or(default_port)
    }

    /// What to make of an `Origin` header (`None`: there is none, or it is not text).
    pub(crate) fn check_origin(&self, origin: Option<&str>) -> OriginVerdict {
        let Some(text) = origin else {
            return OriginVerdict::Absent;
        };
        match Origin::parse(text) {
            Some(origin) if origin.host.is_loopback() || self.allowed_origins.contains(&origin) => {
                OriginVerdict::Allowed
            }
            _ => OriginVerdict::Refused,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn policy(origins: &[&str], bound: &str) -> OriginPolicy {
        let origins: Vec<String> = origins.iter().map(|o| (*o).to_owned()).collect();
        OriginPolicy::new(&origins, bound.parse().unwrap())
    }

    fn host_ok(policy: &OriginPolicy, host: &str) -> bool {
        policy.allows_host(&host.parse().unwrap())
    }

    #[test]
    fn loopback_names_pass_with_any_port() {
        let policy = policy(&[], "127.0.0.1:8082");
        for host in [
            "localhost",
            "LOCALHOST:9",
            "localhost.:8082",
            "127.0.0.1",
            "127.0.0.1:1",
            "[::1]",
            "[::1]:8082",
            "[0:0:0:0:0:0:0:1]:80",
        ] {
            assert!(host_ok(&policy, host), "{host} refused");
        }
    }

    #[test]
    fn other_names_and_addresses_are_refused() {
        let policy = policy(&["http://app.example:3000"], "127.0.0.1:8082");
        for host in [
            "evil.example",
            "evil.example:8082",
            "localhost.evil.example",
            "sub.localhost",
            "127.0.0.2",
            "10.0.0.1:8082",
            "[::2]",
            "app.example.evil",
        ] {
            assert!(!host_ok(&policy, host), "{host} accepted");
        }
        assert!(host_ok(&policy, "app.example"), "an allowed origin's host");
        assert!(host_ok(&policy, "APP.example:8082"));
    }

    #[test]
    fn the_bound_address_passes_and_every_address_when_bound_to_all() {
        let bound = policy(&[], "10.1.2.3:8082");
        assert!(host_ok(&bound, "10.1.2.3:8082"));
        assert!(!host_ok(&bound, "10.1.2.4:8082"));
        assert!(!host_ok(&bound, "myhost:8082"));

        let all = policy(&[], "0.0.0.0:8082");
        assert!(host_ok(&all, "192.168.1.20:8082"));
        assert!(host_ok(&all, "[fe80::1]:8082"));
        assert!(!host_ok(&all, "myhost:8082"), "a name must be configured");
    }

    #[test]
    fn loopback_and_configured_origins_are_allowed() {
        let policy = policy(
            &["https://app.example", "http://Tools.Example:8080"],
            "127.0.0.1:8082",
        );
        for origin in [
            "http://localhost",
            "http://localhost:3000",
            "https://127.0.0.1:8443",
            "http://[::1]:5173",
            "https://app.example",
            "https://app.example:443",
            "http://tools.example:8080",
            "HTTP://TOOLS.EXAMPLE:8080",
        ] {
            assert_eq!(
                policy.check_origin(Some(origin)),
                OriginVerdict::Allowed,
                "{origin}"
            );
        }
        assert_eq!(policy.check_origin(None), OriginVerdict::Absent);
    }

    #[test]
    fn the_origin_of_the_host_asked_is_the_same_origin() {
        let policy = policy(&[], "10.1.2.3:8082");
        let host = |text: &str| -> Authority { text.parse().unwrap() };
        assert!(policy.is_same_origin("http://10.1.2.3:8082", &host("10.1.2.3:8082")));
        assert!(policy.is_same_origin("http://EXAMPLE.org", &host("example.org:80")));
        assert!(policy.is_same_origin("https://example.org", &host("example.org")));
        for (origin, asked) in [
            ("http://10.1.2.3:8083", "10.1.2.3:8082"),
            ("http://10.1.2.4:8082", "10.1.2.3:8082"),
            ("http://example.org", "example.org:8082"),
            ("http://evil.example", "example.org"),
            ("null", "10.1.2.3:8082"),
        ] {
            assert!(!policy.is_same_origin(origin, &host(asked)), "{origin}");
        }
    }

    #[test]
    fn every_other_origin_is_refused() {
        let policy = policy(&["https://app.example"], "127.0.0.1:8082");
        for origin in [
            "https://evil.example",
            "http://app.example",       // scheme differs
            "https://app.example:8443", // port differs
            "https://app.example.evil",
            "https://sub.app.example",
            "null",
            "",
            "file://",
            "ws://localhost",
            "http://localhost/path",
            "http://user@localhost",
            "http://localhost:99999",
            "http://127.0.0.2",
        ] {
            assert_eq!(
                policy.check_origin(Some(origin)),
                OriginVerdict::Refused,
                "{origin}"
            );
        }
    }
}
