//! One blocking `GET` to the server's JSON API, for what `attach` needs before the WebSocket
//! (the session a name stands for). The CLI has no HTTP client and needs no more than this:
//! HTTP/1.1 over loopback, `Connection: close`, the answer read to its end, a chunked body
//! decoded.

use std::io::{Read, Write};
use std::net::TcpStream;
use std::time::Duration;

use serde_json::Value;

use super::{AttachError, Server};

/// How long connecting, sending and each read of the answer may take.
pub(super) const TIMEOUT: Duration = Duration::from_secs(10);

/// Largest answer read: a full page of sessions is far below it.
const MAX_ANSWER_BYTES: u64 = 64 * 1024 * 1024;

/// `GET path` → (status, JSON body; `Null` when the body is not JSON).
pub(super) fn get_json(server: &Server, path: &str) -> Result<(u16, Value), AttachError> {
    let unreachable = |source| AttachError::Unreachable {
        url: server.url.clone(),
        source,
    };
    let mut stream = server.connect().map_err(unreachable)?;
    stream
        .set_read_timeout(Some(TIMEOUT))
        .map_err(unreachable)?;
    stream
        .set_write_timeout(Some(TIMEOUT))
        .map_err(unreachable)?;
    let mut head = format!(
        "GET {path} HTTP/1.1\r\nHost: {}\r\nAccept: application/json\r\nConnection: close\r\n",
        server.authority
    );
    if let Some(token) = &server.token {
        head.push_str(&format!("Authorization: Bearer {token}\r\n"));
    }
    head.push_str("\r\n");
    stream.write_all(head.as_bytes()).map_err(unreachable)?;
    let mut answer = Vec::new();
    read_answer(stream, &mut answer).map_err(unreachable)?;
    let (status, body) = parse(&answer).ok_or_else(|| AttachError::NotHttp {
        url: server.url.clone(),
    })?;
    Ok((status, serde_json::from_slice(&body).unwrap_or(Value::Null)))
}

fn read_answer(stream: TcpStream, answer: &mut Vec<u8>) -> std::io::Result<()> {
    stream.take(MAX_ANSWER_BYTES).read_to_end(answer)?;
    Ok(())
}

/// The status and the (de-chunked) body of a whole HTTP/1.1 answer.
fn parse(answer: &[u8]) -> Option<(u16, Vec<u8>)> {
    let mut headers = [httparse::EMPTY_HEADER; 64];
    let mut response = httparse::Response::new(&mut headers);
    let httparse::Status::Complete(head_len) = response.parse(answer).ok()? else {
        return None;
    };
    let status = response.code?;
    let chunked = response.headers.iter().any(|h| {
        h.name.eq_ignore_ascii_case("transfer-encoding")
            && String::from_utf8_lossy(h.value)
                .to_ascii_lowercase()
                .contains("chunked")
    });
    let body = &answer[head_len..];
    let body = if chunked {
        dechunk(body)?
    } else {
        body.to_vec()
    };
    Some((status, body))
}

/// The data of a chunked body (extensions and trailers ignored).
fn dechunk(mut body: &[u8]) -> Option<Vec<u8>> {
    let mut data = Vec::new();
    loop {
        let line_end = body.windows(2).position(|w| w == b"\r\n")?;
        let size_text = std::str::from_utf8(&body[..line_end]).ok()?;
        let size_text = size_text.split(';').next()?.trim();
        let size = usize::from_str_radix(size_text, 16).ok()?;
        body = &body[line_end + 2..];
        if size == 0 {
            return Some(data);
        }
        data.extend_from_slice(body.get(..size)?);
        body = body.get(size + 2..)?;
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_plain_and_a_chunked_answer_give_the_same_body() {
        let plain = b"HTTP/1.1 200 OK\r\nContent-Length: 7\r\n\r\n{\"a\":1}";
        assert_eq!(parse(plain), Some((200, b"{\"a\":1}".to_vec())));
        let chunked = b"HTTP/1.1 404 Not Found\r\nTransfer-Encoding: chunked\r\n\r\n\
                        3\r\n{\"a\r\n4;ext=1\r\n\":1}\r\n0\r\n\r\n";
        assert_eq!(parse(chunked), Some((404, b"{\"a\":1}".to_vec())));
    }

    #[test]
    fn a_truncated_or_foreign_answer_is_none() {
        assert_eq!(parse(b"SSH-2.0-OpenSSH\r\n"), None);
        assert_eq!(parse(b"HTTP/1.1 200 OK\r\nContent-"), None);
        let cut = b"HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\nff\r\nabc";
        assert_eq!(parse(cut), None);
    }
}
