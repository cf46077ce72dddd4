//! The bearer token: where a request may carry it and how it is compared.
//!
//! Both sides are hashed to a SHA-256 digest before a constant-time comparison, so the time
//! taken depends on the length of what the client sent, never on the configured token (its
//! length included) or on how many leading bytes matched.

use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use base64::Engine as _;
use sha2::{Digest, Sha256};
use subtle::ConstantTimeEq;
use warp::http::header::{AUTHORIZATION, SEC_WEBSOCKET_PROTOCOL, UPGRADE};
use warp::http::HeaderMap;

/// The WebSocket subprotocol a client offers, followed by the token, to authenticate an
/// upgrade (`Sec-WebSocket-Protocol: bearer, <token>`): browsers cannot set `Authorization`
/// on a WebSocket, and a token in the URL would end up in logs and histories.
pub(crate) const BEARER_PROTOCOL: &str = "bearer";

/// The same, followed by the unpadded base64url encoding of the token's UTF-8 bytes
/// (`Sec-WebSocket-Protocol: bearer.base64url, <encoded>`): a subprotocol must be an RFC 7230
/// token, so a token with `/`, `=`, `+` or a space cannot be offered as it is (the browser's
/// `new WebSocket` throws), while its encoding always can. The dashboard always sends this one.
pub(crate) const BEARER_BASE64URL_PROTOCOL: &str = "bearer.base64url";

/// The configured token, kept only as its digest.
#[derive(Clone)]
pub(crate) struct ExpectedToken {
    digest: [u8; 32],
}

impl ExpectedToken {
    pub(crate) fn new(token: &str) -> ExpectedToken {
        ExpectedToken {
            digest: digest(token.as_bytes()),
        }
    }

    /// Whether `presented` is the token, in time independent of the token.
    pub(crate) fn matches(&self, presented: &str) -> bool {
        self.matches_bytes(presented.as_bytes())
    }

    fn matches_bytes(&self, presented: &[u8]) -> bool {
        bool::from(digest(presented).ct_eq(&self.digest))
    }

    /// Whether the request carries the token: in `Authorization: Bearer`, or, for a
    /// WebSocket upgrade only, in `Sec-WebSocket-Protocol` after `bearer` (as it is) or after
    /// `bearer.base64url` (encoded). Every candidate is compared, so which one matched does
    /// not show in the timing either.
    pub(crate) fn admits(&self, headers: &HeaderMap) -> bool {
        let from_header = bearer_credentials(headers).map(|token| self.matches(token));
        let mut admitted = from_header.unwrap_or(false);
        if is_websocket_upgrade(headers) {
            for candidate in protocol_credentials(headers) {
                admitted |= self.matches_bytes(&candidate);
            }
        }
        admitted
    }
}

fn digest(bytes: &[u8]) -> [u8; 32] {
    Sha256::digest(bytes).into()
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

/// The tokens offered in the subprotocols (over every header line): the value after the
/// first `bearer`, and the decoding of the value after the first `bearer.base64url` (none
/// when it is not unpadded base64url: no credential).
fn protocol_credentials(headers: &HeaderMap) -> Vec<Vec<u8>> {
    let offered = offered_protocols(headers);
    let after = |marker: &str| {
        let position = offered.iter().position(|p| p == marker)?;
        offered.get(position + 1)
    };
    let plain = after(BEARER_PROTOCOL).map(|token| token.as_bytes().to_vec());
    let encoded =
        after(BEARER_BASE64URL_PROTOCOL).and_then(|token| URL_SAFE_NO_PAD.decode(token).ok());
    plain.into_iter().chain(encoded).collect()
}

/// The bearer marker the client offered first (`bearer` or `bearer.base64url`), which a 101
/// must select; `None` when it offered neither.
pub(crate) fn offered_bearer_protocol(headers: &HeaderMap) -> Option<&'static str> {
    offered_protocols(headers)
        .iter()
        .find_map(|protocol| match protocol.as_str() {
            BEARER_PROTOCOL => Some(BEARER_PROTOCOL),
            BEARER_BASE64URL_PROTOCOL => Some(BEARER_BASE64URL_PROTOCOL),
            _ => None,
        })
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
        assert_eq!(expected.digest, digest(b"s3cret-token"));
        assert_ne!(expected.digest, digest(b"s3cret-tokem"));
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
    fn the_subprotocol_may_carry_the_token_base64url_encoded() {
        // A token `openssl rand -base64 32` could give: `/`, `+`, `=` are no subprotocol chars.
        let token = "a/b+c=d e~~?!";
        let expected = ExpectedToken::new(token);
        let encoded = URL_SAFE_NO_PAD.encode(token);
        assert_eq!(encoded, "YS9iK2M9ZCBlfn4_IQ");
        let with = |protocols: &str| {
            headers(&[
                ("upgrade", "websocket"),
                ("sec-websocket-protocol", protocols),
            ])
        };
        assert!(expected.admits(&with(&format!("bearer.base64url, {encoded}"))));
        assert!(expected.admits(&with(&format!("chat, bearer.base64url,{encoded}"))));
        // The plain form still works wherever the token is a valid subprotocol.
        let plain = ExpectedToken::new("t0k");
        assert!(plain.admits(&with("bearer, t0k")));
        assert!(plain.admits(&with(&format!(
            "bearer.base64url, {}",
            URL_SAFE_NO_PAD.encode("t0k")
        ))));
        // Either marker wins on its own: a wrong value under the other does not hide it.
        assert!(expected.admits(&with(&format!(
            "bearer, wrong, bearer.base64url, {encoded}"
        ))));
        assert!(plain.admits(&with("bearer.base64url, !!, bearer, t0k")));

        for refused in [
            // A wrong token, encoded.
            format!(
                "bearer.base64url, {}",
                URL_SAFE_NO_PAD.encode("a/b+c=d e~~?")
            ),
            // The token as it is after the base64url marker.
            "bearer.base64url, t0k-not-encoded".to_owned(),
            // Not base64url: padded, the standard alphabet, a character outside both.
            format!("bearer.base64url, {encoded}=="),
            format!(
                "bearer.base64url, {}",
                base64::engine::general_purpose::STANDARD_NO_PAD.encode(token)
            ),
            "bearer.base64url, YS9i*2M9".to_owned(),
            // The encoding after the plain marker is compared as it is.
            format!("bearer, {encoded}"),
            // No value after the marker, or the marker after the value.
            "bearer.base64url".to_owned(),
            format!("{encoded}, bearer.base64url"),
        ] {
            assert!(!expected.admits(&with(&refused)), "{refused}");
        }
        assert!(
            !plain.admits(&with("bearer.base64url, t0k")),
            "t0k decodes to other bytes"
        );
        // Not an upgrade: the subprotocol header means nothing.
        let not_upgrade = headers(&[(
            "sec-websocket-protocol",
            &format!("bearer.base64url, {encoded}"),
        )]);
        assert!(!expected.admits(&not_upgrade));
    }

    #[test]
    fn the_first_bearer_marker_offered_is_the_one_to_select() {
        let offered =
            |value: &str| offered_bearer_protocol(&headers(&[("sec-websocket-protocol", value)]));
        assert_eq!(offered("chat, bearer, x"), Some("bearer"));
        assert_eq!(offered("bearer.base64url, eA"), Some("bearer.base64url"));
        assert_eq!(
            offered("chat, bearer.base64url, eA, bearer, x"),
            Some("bearer.base64url")
        );
        assert_eq!(offered("chat, bearerx, bearer.base64"), None);
        assert_eq!(offered_bearer_protocol(&HeaderMap::new()), None);
    }
}
