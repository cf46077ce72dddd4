//! The bearer token: where a request may carry it and how it is compared.
//!
//! Both sides are hashed to a SHA-256 digest before a constant-time comparison, so the time
//! taken depends on the length of what the client sent, never on the configured token (its
//! length included) or on how many leading bytes matched.

use sha2::{Digest, Sha256};
use subtle::ConstantTimeEq;
use warp::http::header::{AUTHORIZATION, SEC_WEBSOCKET_PROTOCOL, UPGRADE};
use warp::http::HeaderMap;

/// The WebSocket subprotocol a browser offers, followed by the token, to authenticate an
/// upgrade (`Sec-WebSocket-Protocol: bearer, <token>`): browsers cannot set `Authorization`
/// on a WebSocket, and a token in the URL would end up in logs and histories.
pub(crate) const BEARER_PROTOCOL: &str = "bearer";

/// The configured token, kept only as its digest.
#[derive(Clone)]
pub(crate) struct ExpectedToken {
    digest: [u8; 32],
}

impl ExpectedToken {
    pub(crate) fn new(token: &str) -> ExpectedToken {
        ExpectedToken {
            digest: digest(token),
        }
    }

    /// Whether `presented` is the token, in time independent of the token.
    pub(crate) fn matches(&self, presented: &str) -> bool {
        bool::from(digest(presented).ct_eq(&self.digest))
    }

    /// Whether the request carries the token: in `Authorization: Bearer`, or, for a
    /// WebSocket upgrade only, in `Sec-WebSocket-Protocol` after `bearer`. Every candidate is
    /// compared, so which one matched does not show in the timing either.
    pub(crate) fn admits(&self, headers: &HeaderMap) -> bool {
        let from_header = bearer_credentials(headers).map(|token| self.matches(token));
        let from_protocol = is_websocket_upgrade(headers)
            .then(|| protocol_credentials(headers))
            .flatten()
            .map(|token| self.matches(&token));
        from_header.unwrap_or(false) | from_protocol.unwrap_or(false)
    }
}

fn digest(text: &str) -> [u8; 32] {
    Sha256::digest(text.as_bytes()).into()
}

/// The token of an `Authorization: Bearer <token>` header (the scheme in any case, RFC 9110
/// §11.1); `None` when there is no such header, more than one, or it holds another scheme.
fn bearer_credentials(headers: &HeaderMap) -> Option<&str> {
    let mut all = headers.get_all(AUTHORIZATION).iter();
    let value = all.next()?.to_str().ok()?;
    if all.next().is_some() {
        return None;
    }
    let (scheme, token) = value.split_once(' ')?;
    scheme
        .eq_ignore_ascii_case("bearer")
        .then(|| token.trim_matches(' '))
}

/// The value after `bearer` in the offered subprotocols (over every header line).
fn protocol_credentials(headers: &HeaderMap) -> Option<String> {
    let offered = offered_protocols(headers);
    let position = offered.iter().position(|p| p == BEARER_PROTOCOL)?;
    offered.into_iter().nth(position + 1)
}

/// Whether the client offered the `bearer` subprotocol, so a 101 must select it.
pub(crate) fn offers_bearer_protocol(headers: &HeaderMap) -> bool {
    offered_protocols(headers)
        .iter()
        .any(|protocol| protocol == BEARER_PROTOCOL)
}

fn offered_protocols(headers: &HeaderMap) -> Vec<String> {
    headers
        .get_all(SEC_WEBSOCKET_PROTOCOL)
        .iter()
        .filter_map(|value| value.to_str().ok())
        .flat_map(|line| line.split(','))
        .map(|protocol| protocol.trim().to_owned())
        .filter(|protocol| !protocol.is_empty())
        .collect()
}

fn is_websocket_upgrade(headers: &HeaderMap) -> bool {
    headers
        .get(UPGRADE)
        .and_then(|value| value.to_str().ok())
        .is_some_and(|value| value.trim().eq_ignore_ascii_case("websocket"))
}

#[cfg(test)]
mod tests {
    use super::*;
    use warp::http::HeaderValue;

    fn headers(pairs: &[(&'static str, &str)]) -> HeaderMap {
        let mut map = HeaderMap::new();
        for (name, value) in pairs {
            map.append(*name, HeaderValue::from_str(value).unwrap());
        }
        map
    }

    #[test]
    fn only_the_exact_token_matches() {
        let expected = ExpectedToken::new("s3cret-token");
        assert!(expected.matches("s3cret-token"));
        for wrong in [
            "",
            "s3cret-tokeN",
            "s3cret-tokem", // same length, last byte differs
            "x3cret-token", // same length, first byte differs
            "s3cret-token ",
            "s3cret",
            "s3cret-token-and-more",
        ] {
            assert!(!expected.matches(wrong), "{wrong:?} matched");
        }
    }

    #[test]
    fn the_token_is_kept_only_as_a_digest() {
        let expected = ExpectedToken::new("s3cret-token");
        assert_eq!(expected.digest, digest("s3cret-token"));
        assert_ne!(expected.digest, digest("s3cret-tokem"));
        assert!(!expected.digest.windows(6).any(|w| w == b"s3cret"));
    }

    #[test]
    fn authorization_header_takes_the_bearer_scheme_in_any_case() {
        let expected = ExpectedToken::new("t0k");
        for value in ["Bearer t0k", "bearer t0k", "BEARER  t0k"] {
            assert!(
                expected.admits(&headers(&[("authorization", value)])),
                "{value}"
            );
        }
        for value in ["Basic t0k", "Bearer", "Bearer t0", "t0k", "Bearer t0k t0k"] {
            assert!(
                !expected.admits(&headers(&[("authorization", value)])),
                "{value}"
            );
        }
        assert!(!expected.admits(&HeaderMap::new()));
    }

    #[test]
    fn the_subprotocol_carries_the_token_on_upgrades_only() {
        let expected = ExpectedToken::new("t0k");
        let upgrade = [("upgrade", "websocket")];
        let with = |protocols: &[&str]| {
            let mut pairs = upgrade.to_vec();
            pairs.extend(protocols.iter().map(|p| ("sec-websocket-protocol", *p)));
            headers(&pairs)
        };
        assert!(expected.admits(&with(&["bearer, t0k"])));
        assert!(expected.admits(&with(&["bearer,t0k"])));
        assert!(expected.admits(&with(&["bearer", "t0k"])), "over two lines");
        assert!(expected.admits(&with(&["v1.events, bearer, t0k"])));
        assert!(!expected.admits(&with(&["bearer, wrong"])));
        assert!(!expected.admits(&with(&["t0k"])), "no bearer marker");
        assert!(
            !expected.admits(&with(&["t0k, bearer"])),
            "token before the marker"
        );
        assert!(!expected.admits(&with(&["bearer"])));
        // Not an upgrade: the subprotocol header means nothing.
        assert!(!expected.admits(&headers(&[("sec-websocket-protocol", "bearer, t0k")])));
    }

    #[test]
    fn a_bearer_offer_is_seen_in_any_position() {
        assert!(offers_bearer_protocol(&headers(&[(
            "sec-websocket-protocol",
            "chat, bearer, x"
        )])));
        assert!(!offers_bearer_protocol(&headers(&[(
            "sec-websocket-protocol",
            "chat, bearerx"
        )])));
        assert!(!offers_bearer_protocol(&HeaderMap::new()));
    }
}
