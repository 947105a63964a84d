//! The client side of the opening handshake: build the request, validate the answer.

use std::fmt;

use base64::engine::general_purpose::STANDARD as BASE64;
use base64::Engine;

use super::headers::{write_header, Headers, InvalidHeader};
use super::{accept_key, find_header_end, has_token, split_list};
use crate::random::RandomSource;

/// Header fields beyond this count make a response "too large".
const MAX_HEADERS: usize = 100;

/// What a client asks for in its opening handshake.
#[derive(Clone, Debug, Default)]
pub struct ClientRequest<'a> {
    /// The `Host` header value: `host` or `host:port` (IPv6 literals in brackets).
    pub host: &'a str,
    /// Path and query, e.g. `/chat?room=1` (`/` when empty).
    pub resource: &'a str,
    /// Subprotocols offered, in order of preference.
    pub subprotocols: &'a [&'a str],
    /// Extension offers, e.g. `permessage-deflate; client_max_window_bits`.
    pub extensions: &'a [&'a str],
    /// Extra header fields; a name may repeat (each becomes its own line). Cookies go in
    /// one `Cookie` field: `a=1; b=2`.
    pub headers: &'a [(&'a str, &'a str)],
}

/// The server's 101 answer, validated.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Response {
    /// The status code (always 101 here).
    pub status: u16,
    /// The header fields, repeats kept.
    pub headers: Headers,
    /// The subprotocol the server chose, one of ours.
    pub subprotocol: Option<String>,
    /// The extensions the server accepted, each one we offered.
    pub extensions: Vec<String>,
}

/// Why the server's answer does not complete the handshake.
#[derive(Clone, Debug, PartialEq, Eq)]
#[non_exhaustive]
pub enum ClientHandshakeError {
    /// The server answered with another status than 101.
    Rejected {
        /// The HTTP status code.
        status: u16,
        /// The reason phrase of the status line.
        reason: String,
    },
    /// Not a parseable HTTP/1.1 response.
    Malformed(String),
    /// The response headers exceeded the size limit.
    ResponseTooLarge {
        /// The limit in bytes.
        limit: usize,
    },
    /// `Upgrade: websocket` missing from the 101 answer.
    MissingUpgrade,
    /// `Connection: Upgrade` missing from the 101 answer.
    MissingConnectionUpgrade,
    /// `Sec-WebSocket-Accept` missing or not derived from our key.
    InvalidAccept,
    /// The server chose a subprotocol we did not offer (or several).
    UnofferedSubprotocol(String),
    /// The server accepted an extension we did not offer.
    UnofferedExtension(String),
    /// The server's permessage-deflate answer is one we cannot use.
    Extension(crate::deflate::DeflateResponseError),
}

impl fmt::Display for ClientHandshakeError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            ClientHandshakeError::Rejected { status, reason } => {
                write!(f, "server refused the upgrade: {status} {reason}")
            }
            ClientHandshakeError::Malformed(why) => write!(f, "malformed HTTP response: {why}"),
            ClientHandshakeError::ResponseTooLarge { limit } => {
                write!(f, "handshake response larger than {limit} bytes")
            }
            ClientHandshakeError::MissingUpgrade => {
                f.write_str("response lacks Upgrade: websocket")
            }
            ClientHandshakeError::MissingConnectionUpgrade => {
                f.write_str("response lacks Connection: Upgrade")
            }
            ClientHandshakeError::InvalidAccept => {
                f.write_str("Sec-WebSocket-Accept missing or does not match our key")
            }
            ClientHandshakeError::UnofferedSubprotocol(p) => {
                write!(f, "server chose subprotocol {p:?}, which was not offered")
            }
            ClientHandshakeError::UnofferedExtension(e) => {
                write!(f, "server accepted extension {e:?}, which was not offered")
            }
            ClientHandshakeError::Extension(e) => write!(f, "permessage-deflate: {e}"),
        }
    }
}

impl std::error::Error for ClientHandshakeError {}

/// The client's opening handshake: [`new`](Self::new) writes the request, then
/// [`receive_data`](Self::receive_data) reads the answer until it returns the validated
/// [`Response`]; [`leftover`](Self::leftover) holds frames the server sent right after it.
#[derive(Clone, Debug)]
pub struct ClientHandshake {
    expected_accept: String,
    subprotocols: Vec<String>,
    extensions: Vec<String>,
    buf: Vec<u8>,
    max_size: usize,
    end: Option<usize>,
}

/// Why an extra header may not be given: the handshake writes it itself (a second copy
/// would make the request invalid or ambiguous), or validates the answer against it.
fn reserved_header(name: &str) -> Option<&'static str> {
    const WRITTEN: [&str; 5] = [
        "host",
        "upgrade",
        "connection",
        "sec-websocket-key",
        "sec-websocket-version",
    ];
    if WRITTEN.iter().any(|h| name.eq_ignore_ascii_case(h)) {
        return Some("the handshake writes this header itself");
    }
    if name.eq_ignore_ascii_case("sec-websocket-protocol") {
        return Some("give subprotocols in the subprotocol list, which checks the answer");
    }
    if name.eq_ignore_ascii_case("sec-websocket-extensions") {
        return Some("extensions are negotiated by the engine (permessage-deflate options)");
    }
    None
}

impl ClientHandshake {
    /// Writes the request to `out` with a fresh key from `random`. Fails (writing nothing)
    /// when an extra header would break the request (CR/LF in a value, bad name) or is
    /// one the handshake owns (Host, Upgrade, Connection, Sec-WebSocket-Key, -Version,
    /// -Protocol, -Extensions, in any case).
    pub fn new(
        request: &ClientRequest<'_>,
        random: &mut dyn RandomSource,
        max_response_size: usize,
        out: &mut Vec<u8>,
    ) -> Result<Self, InvalidHeader> {
        let mut nonce = [0u8; 16];
        random.fill(&mut nonce);
        let key = BASE64.encode(nonce);
        let resource = if request.resource.is_empty() {
            "/"
        } else {
            request.resource
        };
        let mut text = Vec::with_capacity(256);
        if resource.bytes().any(|b| b <= b' ' || b == 0x7f) {
            return Err(InvalidHeader {
                name: "request target".into(),
                reason: "a space or control character in the request target",
            });
        }
        text.extend_from_slice(format!("GET {resource} HTTP/1.1\r\n").as_bytes());
        write_header(&mut text, "Host", request.host)?;
        write_header(&mut text, "Upgrade", "websocket")?;
        write_header(&mut text, "Connection", "Upgrade")?;
        write_header(&mut text, "Sec-WebSocket-Key", &key)?;
        write_header(&mut text, "Sec-WebSocket-Version", "13")?;
        if !request.subprotocols.is_empty() {
            write_header(
                &mut text,
                "Sec-WebSocket-Protocol",
                &request.subprotocols.join(", "),
            )?;
        }
        if !request.extensions.is_empty() {
            write_header(
                &mut text,
                "Sec-WebSocket-Extensions",
                &request.extensions.join(", "),
            )?;
        }
        for (name, value) in request.headers {
            if let Some(reason) = reserved_header(name) {
                return Err(InvalidHeader {
                    name: (*name).to_owned(),
                    reason,
                });
            }
            write_header(&mut text, name, value)?;
        }
        text.extend_from_slice(b"\r\n");
        out.extend_from_slice(&text);
        Ok(ClientHandshake {
            expected_accept: accept_key(&key),
            subprotocols: request.subprotocols.iter().map(|s| s.to_string()).collect(),
            extensions: request.extensions.iter().map(|s| s.to_string()).collect(),
            buf: Vec::new(),
            max_size: max_response_size,
            end: None,
        })
    }

    /// Processes received bytes; returns the validated response once complete.
    pub fn receive_data(&mut self, data: &[u8]) -> Result<Option<Response>, ClientHandshakeError> {
        if self.end.is_some() {
            self.buf.extend_from_slice(data);
            return Ok(None);
        }
        let searched = self.buf.len();
        self.buf.extend_from_slice(data);
        let Some(end) = find_header_end(&self.buf, searched) else {
            if self.buf.len() > self.max_size {
                return Err(ClientHandshakeError::ResponseTooLarge {
                    limit: self.max_size,
                });
            }
            return Ok(None);
        };
        if end > self.max_size {
            return Err(ClientHandshakeError::ResponseTooLarge {
                limit: self.max_size,
            });
        }
        self.end = Some(end);
        let mut headers = [httparse::EMPTY_HEADER; MAX_HEADERS];
        let mut parsed = httparse::Response::new(&mut headers);
        match parsed.parse(&self.buf[..end]) {
            Ok(httparse::Status::Complete(_)) => {}
            Ok(httparse::Status::Partial) => {
                return Err(ClientHandshakeError::Malformed(
                    "incomplete response".into(),
                ))
            }
            Err(httparse::Error::TooManyHeaders) => {
                return Err(ClientHandshakeError::ResponseTooLarge {
                    limit: self.max_size,
                })
            }
            Err(e) => return Err(ClientHandshakeError::Malformed(e.to_string())),
        }
        let status = parsed.code.unwrap_or_default();
        if status != 101 {
            return Err(ClientHandshakeError::Rejected {
                status,
                reason: parsed.reason.unwrap_or_default().to_owned(),
            });
        }
        let headers = Headers::from_httparse(parsed.headers);
        self.validate(headers).map(Some)
    }

    fn validate(&self, headers: Headers) -> Result<Response, ClientHandshakeError> {
        if !has_token(headers.get_all("upgrade"), "websocket") {
            return Err(ClientHandshakeError::MissingUpgrade);
        }
        if !has_token(headers.get_all("connection"), "upgrade") {
            return Err(ClientHandshakeError::MissingConnectionUpgrade);
        }
        let accepts: Vec<&str> = headers.get_all("sec-websocket-accept").collect();
        if accepts != [self.expected_accept.as_str()] {
            return Err(ClientHandshakeError::InvalidAccept);
        }
        let chosen: Vec<&str> = headers
            .get_all("sec-websocket-protocol")
            .flat_map(split_list)
            .collect();
        let subprotocol = match chosen.as_slice() {
            [] => None,
            [one] if self.subprotocols.iter().any(|p| p == one) => Some(one.to_string()),
            _ => {
                return Err(ClientHandshakeError::UnofferedSubprotocol(
                    chosen.join(", "),
                ))
            }
        };
        let mut extensions = Vec::new();
        for accepted in headers
            .get_all("sec-websocket-extensions")
            .flat_map(split_list)
        {
            let name = extension_name(accepted);
            if !self
                .extensions
                .iter()
                .any(|offer| extension_name(offer) == name)
            {
                return Err(ClientHandshakeError::UnofferedExtension(
                    accepted.to_owned(),
                ));
            }
            extensions.push(accepted.to_owned());
        }
        Ok(Response {
            status: 101,
            headers,
            subprotocol,
            extensions,
        })
    }

    /// Bytes received after the response (frames the server sent at once), once complete.
    pub fn leftover(&self) -> &[u8] {
        match self.end {
            Some(end) => &self.buf[end..],
            None => &[],
        }
    }
}

/// The extension token of an offer or answer (`permessage-deflate; x=1` gives
/// `permessage-deflate`), lower-cased for comparison.
fn extension_name(item: &str) -> String {
    item.split(';')
        .next()
        .unwrap_or("")
        .trim()
        .to_ascii_lowercase()
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::handshake::{accept_response, validate_upgrade, ServerHandshake};
    use crate::random::FixedRandom;

    fn start(request: &ClientRequest<'_>) -> (ClientHandshake, String) {
        let mut out = Vec::new();
        let hs =
            ClientHandshake::new(request, &mut FixedRandom::new(&[7]), 8192, &mut out).unwrap();
        (hs, String::from_utf8(out).unwrap())
    }

    #[test]
    fn request_round_trips_through_the_server_parser() {
        let request = ClientRequest {
            host: "[::1]:9001",
            resource: "/chat?x=%20y",
            subprotocols: &["chat", "v2"],
            extensions: &[],
            headers: &[("X-Multi", "1"), ("X-Multi", "2"), ("Cookie", "a=1; b=2")],
        };
        let (mut client, text) = start(&request);
        let mut server = ServerHandshake::new(16384);
        let parsed = server.receive_data(text.as_bytes()).unwrap().unwrap();
        validate_upgrade(&parsed).unwrap();
        assert_eq!(parsed.url(), "/chat?x=%20y");
        assert_eq!(parsed.headers().get("host"), Some("[::1]:9001"));
        assert_eq!(
            parsed.headers().get_all("x-multi").collect::<Vec<_>>(),
            ["1", "2"]
        );
        assert_eq!(parsed.headers().get("cookie"), Some("a=1; b=2"));
        assert_eq!(parsed.subprotocols(), ["chat", "v2"]);

        let mut answer = Vec::new();
        accept_response(&parsed, Some("v2"), None, &[], &mut answer).unwrap();
        answer.extend_from_slice(&[0x81, 0x00]);
        // Byte by byte: the response is found and the frame after it kept.
        let mut response = None;
        for byte in &answer {
            if let Some(r) = client.receive_data(std::slice::from_ref(byte)).unwrap() {
                response = Some(r);
            }
        }
        let response = response.unwrap();
        assert_eq!(response.subprotocol.as_deref(), Some("v2"));
        assert_eq!(client.leftover(), &[0x81, 0x00]);
    }

    #[test]
    fn response_errors_are_typed() {
        let request = ClientRequest {
            host: "h",
            resource: "/",
            subprotocols: &["a"],
            ..Default::default()
        };
        let accept = accept_key(&BASE64.encode([7u8; 16]));
        let check = |text: String| {
            let (mut hs, _) = start(&request);
            hs.receive_data(text.as_bytes()).unwrap_err()
        };
        let ok_head =
            "HTTP/1.1 101 Switching Protocols\r\nUpgrade: websocket\r\nConnection: upgrade\r\n";
        assert_eq!(
            check("HTTP/1.1 403 Forbidden\r\nContent-Length: 0\r\n\r\n".into()),
            ClientHandshakeError::Rejected {
                status: 403,
                reason: "Forbidden".into()
            }
        );
        assert_eq!(
            check(format!("{ok_head}Sec-WebSocket-Accept: nope\r\n\r\n")),
            ClientHandshakeError::InvalidAccept
        );
        assert_eq!(
            check(format!(
                "HTTP/1.1 101 X\r\nConnection: upgrade\r\nSec-WebSocket-Accept: {accept}\r\n\r\n"
            )),
            ClientHandshakeError::MissingUpgrade
        );
        assert_eq!(
            check(format!(
                "{ok_head}Sec-WebSocket-Accept: {accept}\r\nSec-WebSocket-Protocol: b\r\n\r\n"
            )),
            ClientHandshakeError::UnofferedSubprotocol("b".into())
        );
        assert_eq!(
            check(format!("{ok_head}Sec-WebSocket-Accept: {accept}\r\nSec-WebSocket-Extensions: permessage-deflate\r\n\r\n")),
            ClientHandshakeError::UnofferedExtension("permessage-deflate".into())
        );
        let (mut hs, _) = start(&request);
        let ok = format!("{ok_head}Sec-WebSocket-Accept: {accept}\r\n\r\n");
        assert!(hs.receive_data(ok.as_bytes()).unwrap().is_some());
    }

    #[test]
    fn header_injection_in_request_refused() {
        let request = ClientRequest {
            host: "h",
            headers: &[("X", "a\r\nEvil: 1")],
            ..Default::default()
        };
        let mut out = Vec::new();
        assert!(
            ClientHandshake::new(&request, &mut FixedRandom::new(&[1]), 8192, &mut out).is_err()
        );
        assert!(out.is_empty());
    }

    #[test]
    fn headers_the_handshake_owns_are_refused_in_any_case() {
        for name in [
            "Host",
            "upgrade",
            "CONNECTION",
            "Sec-WebSocket-Key",
            "sec-websocket-version",
            "Sec-WebSocket-Protocol",
            "Sec-WebSocket-Extensions",
        ] {
            let headers = [(name, "x")];
            let request = ClientRequest {
                host: "h",
                headers: &headers,
                ..Default::default()
            };
            let mut out = Vec::new();
            let error = ClientHandshake::new(&request, &mut FixedRandom::new(&[1]), 8192, &mut out)
                .unwrap_err();
            assert_eq!(error.name, name);
            assert!(error.to_string().contains(name), "{error}");
            assert!(out.is_empty(), "{name}: something was written");
        }
        // Other names, including ones that merely start alike, go through.
        let headers = [
            ("Sec-WebSocket-Keys", "x"),
            ("Hostname", "y"),
            ("Cookie", "a=1"),
        ];
        let request = ClientRequest {
            host: "h",
            headers: &headers,
            ..Default::default()
        };
        let mut out = Vec::new();
        ClientHandshake::new(&request, &mut FixedRandom::new(&[1]), 8192, &mut out).unwrap();
        assert!(out.windows(9).any(|w| w == b"Cookie: a"));
    }

    proptest::proptest! {
        /// Any request the client builds is parsed by the server as exactly what was asked,
        /// and the server's answer is accepted by the client, split at any byte.
        #[test]
        fn handshake_round_trips(
            host in "[a-z0-9.-]{1,20}(:[0-9]{1,5})?",
            resource in "/[a-zA-Z0-9/._~%-]{0,30}(\\?[a-z0-9=&%+]{0,20})?",
            protocols in proptest::collection::vec("[a-z][a-z0-9.-]{0,10}", 0..4),
            headers in proptest::collection::vec(("X-[A-Za-z0-9-]{1,10}", "[ -~]{0,30}"), 0..5),
            nonce in proptest::array::uniform16(proptest::prelude::any::<u8>()),
            split in 1usize..50,
        ) {
            let protocols: Vec<&str> = protocols.iter().map(String::as_str).collect();
            let headers: Vec<(&str, &str)> =
                headers.iter().map(|(n, v)| (n.as_str(), v.trim())).collect();
            let request = ClientRequest {
                host: &host,
                resource: &resource,
                subprotocols: &protocols,
                extensions: &[],
                headers: &headers,
            };
            let mut wire = Vec::new();
            let mut client =
                ClientHandshake::new(&request, &mut FixedRandom::new(&nonce), 8192, &mut wire).unwrap();
            let mut server = ServerHandshake::new(16384);
            let mut parsed = None;
            for piece in wire.chunks(split) {
                if let Some(r) = server.receive_data(piece).unwrap() {
                    parsed = Some(r);
                }
            }
            let parsed = parsed.unwrap();
            validate_upgrade(&parsed).unwrap();
            proptest::prop_assert_eq!(parsed.url(), resource.as_str());
            proptest::prop_assert_eq!(parsed.headers().get("host"), Some(host.as_str()));
            proptest::prop_assert_eq!(parsed.subprotocols(), protocols.clone());
            for (name, value) in &headers {
                proptest::prop_assert!(parsed.headers().get_all(name).any(|v| v == *value));
            }
            let chosen = protocols.first().copied();
            let mut answer = Vec::new();
            accept_response(&parsed, chosen, None, &[], &mut answer).unwrap();
            let mut response = None;
            for piece in answer.chunks(split) {
                if let Some(r) = client.receive_data(piece).unwrap() {
                    response = Some(r);
                }
            }
            let response = response.unwrap();
            proptest::prop_assert_eq!(response.subprotocol.as_deref(), chosen);
        }
    }
}
