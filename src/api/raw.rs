//! Whole responses, as bytes, for the connection layer (`server`) to write where no route
//! runs: a connection refused for want of a slot, and hyper's own refusals of requests it
//! could not parse (400, 414, 431), which hyper writes bare and which the connection layer
//! replaces with these. Each carries the failure envelope and `Connection: close`: the
//! connection ends after it.

use super::envelope;
use super::errors::ApiError;

/// Why the connection layer refuses a connection before any request is read.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ConnectionRefusal {
    /// `server.max_connections` connections are open.
    Total(usize),
    /// `server.max_connections_per_address` connections are open from this client.
    PerAddress(usize),
}

/// The 503 `too_many_connections` for a connection refused at accept.
pub fn connection_refusal(refusal: ConnectionRefusal) -> Vec<u8> {
    let error = match refusal {
        ConnectionRefusal::Total(limit) => ApiError::TooManyConnections {
            field: "server.max_connections",
            limit,
        },
        ConnectionRefusal::PerAddress(limit) => ApiError::TooManyConnections {
            field: "server.max_connections_per_address",
            limit,
        },
    };
    response(&error)
}

/// Our envelope in place of hyper's bare refusal with `status`, or `None` when hyper does
/// not refuse with that status (only 400, 414 and 431 come from its parser).
pub fn parse_refusal(status: u16) -> Option<Vec<u8>> {
    let error = match status {
        400 => ApiError::BadRequest {
            message: "malformed request: the request line, a header or the body's framing \
                      is invalid",
            field: None,
        },
        414 => ApiError::UriTooLong,
        431 => ApiError::HeaderFieldsTooLarge,
        _ => return None,
    };
    Some(response(&error))
}

fn response(error: &ApiError) -> Vec<u8> {
    let status = error.status();
    let body = envelope::failure_body(error).unwrap_or_else(|serialize_error| {
        tracing::error!(%serialize_error, "cannot serialize an error envelope");
        envelope::INTERNAL_ERROR_BODY.to_vec()
    });
    let mut head = format!(
        "HTTP/1.1 {} {}\r\ncontent-type: application/json\r\ncontent-length: {}\r\n",
        status.as_u16(),
        status.canonical_reason().unwrap_or_default(),
        body.len()
    );
    for (name, value) in error.headers() {
        if name != warp::http::header::CONNECTION {
            if let Ok(value) = value.to_str() {
                head.push_str(&format!("{name}: {value}\r\n"));
            }
        }
    }
    head.push_str("connection: close\r\n\r\n");
    let mut bytes = head.into_bytes();
    bytes.extend_from_slice(&body);
    bytes
}

#[cfg(test)]
mod tests {
    use super::*;

    fn split(bytes: &[u8]) -> (String, serde_json::Value) {
        let text = String::from_utf8(bytes.to_vec()).unwrap();
        let (head, body) = text.split_once("\r\n\r\n").unwrap();
        let length: usize = head
            .lines()
            .find_map(|line| line.strip_prefix("content-length: "))
            .unwrap()
            .parse()
            .unwrap();
        assert_eq!(length, body.len());
        (head.to_owned(), serde_json::from_str(body).unwrap())
    }

    #[test]
    fn a_parse_refusal_is_a_whole_response_with_the_envelope() {
        for (status, code) in [
            (400, "bad_request"),
            (414, "uri_too_long"),
            (431, "request_header_fields_too_large"),
        ] {
            let (head, body) = split(&parse_refusal(status).unwrap());
            assert!(head.starts_with(&format!("HTTP/1.1 {status} ")), "{head}");
            assert!(head.contains("\r\nconnection: close"), "{head}");
            assert_eq!(body["success"], false);
            assert!(body["timestamp"].is_f64());
            assert_eq!(body["error_code"], code);
        }
        assert!(parse_refusal(500).is_none());
    }

    #[test]
    fn a_connection_refusal_names_the_limit() {
        let (head, body) = split(&connection_refusal(ConnectionRefusal::PerAddress(3)));
        assert!(
            head.starts_with("HTTP/1.1 503 Service Unavailable\r\n"),
            "{head}"
        );
        assert!(head.contains("\r\nretry-after: 1"), "{head}");
        assert_eq!(body["error_code"], "too_many_connections");
        assert_eq!(
            body["details"]["field"],
            "server.max_connections_per_address"
        );
        assert_eq!(body["details"]["limit"], 3);
    }
}
