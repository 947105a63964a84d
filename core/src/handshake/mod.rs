//! The opening handshake (RFC 6455 section 4): HTTP/1.1 Upgrade request and 101 response,
//! for both roles. Parsing is incremental (bytes may arrive one at a time) and bounded.

mod client;
mod headers;
mod origin;
mod server;

pub use client::{ClientHandshake, ClientHandshakeError, ClientRequest, Response};
pub use headers::{Headers, InvalidHeader};
pub use origin::OriginPolicy;
pub use server::{
    accept_response, reason_phrase, reject_response, switching_headers, validate_upgrade,
    HandshakeError, Request, ServerHandshake, DEFAULT_MAX_REQUEST_SIZE,
};

use base64::engine::general_purpose::STANDARD as BASE64;
use base64::Engine;
use sha1::{Digest, Sha1};

/// The GUID of RFC 6455 section 1.3, appended to the key before hashing.
pub const WEBSOCKET_GUID: &str = "258EAFA5-E914-47DA-95CA-C5AB0DC85B11";

/// `Sec-WebSocket-Accept` for a `Sec-WebSocket-Key`: base64(SHA-1(key + GUID)).
pub fn accept_key(key: &str) -> String {
    let mut sha = Sha1::new();
    sha.update(key.trim().as_bytes());
    sha.update(WEBSOCKET_GUID.as_bytes());
    BASE64.encode(sha.finalize())
}

/// The items of a comma-separated header value (RFC 9110 section 5.6.1), trimmed, empty
/// items skipped. Commas inside quoted strings do not split.
pub fn split_list(value: &str) -> impl Iterator<Item = &str> {
    let mut rest = value;
    std::iter::from_fn(move || loop {
        if rest.is_empty() {
            return None;
        }
        let mut quoted = false;
        let mut end = rest.len();
        for (i, c) in rest.char_indices() {
            match c {
                '"' => quoted = !quoted,
                ',' if !quoted => {
                    end = i;
                    break;
                }
                _ => {}
            }
        }
        let item = rest[..end].trim();
        rest = rest.get(end + 1..).unwrap_or("");
        if !item.is_empty() {
            return Some(item);
        }
    })
}

/// True when any of `values` lists `token` (compared case-insensitively).
fn has_token<'a>(mut values: impl Iterator<Item = &'a str>, token: &str) -> bool {
    values.any(|value| split_list(value).any(|item| item.eq_ignore_ascii_case(token)))
}

/// Where the header block of an HTTP message ends (the index after "\r\n\r\n"), searching
/// from `from` onwards.
fn find_header_end(buf: &[u8], from: usize) -> Option<usize> {
    let start = from.saturating_sub(3);
    buf.get(start..)?
        .windows(4)
        .position(|w| w == b"\r\n\r\n")
        .map(|at| start + at + 4)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn rfc_accept_key_example() {
        // RFC 6455 section 1.3.
        assert_eq!(
            accept_key("dGhlIHNhbXBsZSBub25jZQ=="),
            "s3pPLMBiTxaQ9kYGzzhZRbK+xOo="
        );
    }

    #[test]
    fn lists_split_on_commas_outside_quotes() {
        let items: Vec<_> = split_list(" a, ,b;x=\"1,2\" ,c ").collect();
        assert_eq!(items, ["a", "b;x=\"1,2\"", "c"]);
        assert!(has_token(["keep-alive, Upgrade"].into_iter(), "upgrade"));
        assert!(!has_token(["keep-alive"].into_iter(), "upgrade"));
    }

    #[test]
    fn header_end_found_across_calls() {
        let buf = b"GET / HTTP/1.1\r\n\r\nrest";
        for from in 0..buf.len() {
            let found = find_header_end(buf, from);
            // `from` is how much was searched before: up to 17 the marker is still ahead.
            if from <= 17 {
                assert_eq!(found, Some(18), "from {from}");
            }
        }
        assert_eq!(find_header_end(b"GET / HTTP/1.1\r\n\r", 0), None);
    }
}
