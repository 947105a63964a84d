//! The server side of the opening handshake: read and validate the client's request,
//! answer with 101 Switching Protocols or an HTTP error that names the problem.

use std::fmt;

use base64::engine::general_purpose::STANDARD as BASE64;
use base64::Engine;

use super::headers::{check_header, write_header, Headers, InvalidHeader};
use super::{accept_key, find_header_end, has_token, split_list};

/// The default limit on the size of a handshake request (16 KiB).
pub const DEFAULT_MAX_REQUEST_SIZE: usize = 16 << 10;

/// Header fields beyond this count make the request "too large" (431).
const MAX_HEADERS: usize = 100;

/// An HTTP request as received: the request line and the header fields.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Request {
    method: String,
    target: String,
    headers: Headers,
    body: Vec<u8>,
}

impl Request {
    /// A request parsed by another HTTP layer (hyper, say): the method, the target as in
    /// the request line (`/chat?room=1`) and the header fields. Check it with
    /// [`validate_upgrade`] (or [`crate::accept::Accepted::from_request`]) before
    /// answering it. The HTTP version is the caller's to check (1.1 or later).
    pub fn new(method: impl Into<String>, target: impl Into<String>, headers: Headers) -> Self {
        Request {
            method: method.into(),
            target: target.into(),
            headers,
            body: Vec::new(),
        }
    }

    /// The body of a plain HTTP request (a POST's form, say), read up to
    /// [`Config::max_http_body`](crate::Config::max_http_body); empty for an upgrade.
    pub fn body(&self) -> &[u8] {
        &self.body
    }

    pub(crate) fn set_body(&mut self, body: Vec<u8>) {
        self.body = body;
    }

    /// The method (`GET` for a WebSocket handshake).
    pub fn method(&self) -> &str {
        &self.method
    }

    /// The request target exactly as in the request line (`/chat?room=1`).
    pub fn url(&self) -> &str {
        &self.target
    }

    /// The path part of the target, before any `?` (not percent-decoded).
    pub fn path(&self) -> &str {
        self.target.split('?').next().unwrap_or("")
    }

    /// The raw query string after the `?`, if any.
    pub fn query_string(&self) -> Option<&str> {
        self.target.split_once('?').map(|(_, q)| q)
    }

    /// The query parameters in order, percent-decoded (`+` read as a space, as in HTML
    /// forms). A key without `=` has an empty value; repeated keys are all kept.
    pub fn query(&self) -> Vec<(String, String)> {
        let Some(query) = self.query_string() else {
            return Vec::new();
        };
        query
            .split('&')
            .filter(|pair| !pair.is_empty())
            .map(|pair| {
                let (k, v) = pair.split_once('=').unwrap_or((pair, ""));
                (percent_decode(k), percent_decode(v))
            })
            .collect()
    }

    /// The header fields, repeats kept.
    pub fn headers(&self) -> &Headers {
        &self.headers
    }

    /// The subprotocols the client offered (`Sec-WebSocket-Protocol`), in its order of
    /// preference.
    pub fn subprotocols(&self) -> Vec<&str> {
        self.headers
            .get_all("sec-websocket-protocol")
            .flat_map(split_list)
            .collect()
    }

    /// The extension offers (`Sec-WebSocket-Extensions`), one item per offer with its
    /// parameters, e.g. `permessage-deflate; client_max_window_bits`.
    pub fn extensions(&self) -> Vec<&str> {
        self.headers
            .get_all("sec-websocket-extensions")
            .flat_map(split_list)
            .collect()
    }

    /// The client's `Sec-WebSocket-Key`.
    pub fn websocket_key(&self) -> Option<&str> {
        self.headers.get("sec-websocket-key")
    }

    /// True when the request asks for a WebSocket upgrade at all (an `Upgrade` header
    /// naming `websocket`), as opposed to a plain HTTP request on the same port.
    pub fn is_websocket_upgrade(&self) -> bool {
        has_token(self.headers.get_all("upgrade"), "websocket")
    }
}

/// Decodes `%XX` escapes and `+`; invalid escapes are kept as they are, and bytes that do
/// not form UTF-8 are replaced.
fn percent_decode(s: &str) -> String {
    let bytes = s.as_bytes();
    let mut out = Vec::with_capacity(bytes.len());
    let mut i = 0;
    while i < bytes.len() {
        match bytes[i] {
            b'%' if i + 2 < bytes.len() => {
                // Exactly two hex digits (`from_str_radix` would take a sign: `%+F`).
                let digit = |b: u8| (b as char).to_digit(16);
                match (digit(bytes[i + 1]), digit(bytes[i + 2])) {
                    (Some(high), Some(low)) => {
                        out.push((high * 16 + low) as u8);
                        i += 3;
                        continue;
                    }
                    _ => out.push(b'%'),
                }
            }
            b'+' => out.push(b' '),
            b => out.push(b),
        }
        i += 1;
    }
    String::from_utf8_lossy(&out).into_owned()
}

/// Why a handshake request was refused. [`HandshakeError::status`] gives the HTTP status
/// and [`HandshakeError::response`] the whole answer to send before closing.
#[derive(Clone, Debug, PartialEq, Eq)]
#[non_exhaustive]
pub enum HandshakeError {
    /// The request (or its header count) exceeded the configured limit: 431.
    RequestTooLarge {
        /// The limit in bytes.
        limit: usize,
    },
    /// Not parseable as HTTP/1.1: 400.
    Malformed(String),
    /// A method other than GET: 405.
    MethodNotAllowed(String),
    /// HTTP/1.0: a WebSocket handshake needs HTTP/1.1 or later: 400.
    UnsupportedHttpVersion,
    /// No `Host` header: 400.
    MissingHost,
    /// A plain HTTP request with no WebSocket upgrade: 426.
    NotUpgrade,
    /// `Upgrade` does not name `websocket`: 400.
    InvalidUpgradeHeader,
    /// `Connection` does not list `Upgrade`: 400.
    MissingConnectionUpgrade,
    /// `Sec-WebSocket-Version` is missing or not 13: 426 with `Sec-WebSocket-Version: 13`.
    UnsupportedVersion(Option<String>),
    /// `Sec-WebSocket-Key` missing, repeated, or not base64 of 16 bytes: 400.
    InvalidKey,
    /// A plain HTTP request with a chunked body: 411 (a `Content-Length` is needed).
    LengthRequired,
    /// A plain HTTP request's body is larger than the limit: 413.
    BodyTooLarge {
        /// The limit in bytes.
        limit: usize,
    },
}

impl HandshakeError {
    /// The HTTP status code of the answer.
    pub fn status(&self) -> u16 {
        match self {
            HandshakeError::RequestTooLarge { .. } => 431,
            HandshakeError::MethodNotAllowed(_) => 405,
            HandshakeError::NotUpgrade | HandshakeError::UnsupportedVersion(_) => 426,
            HandshakeError::Malformed(_)
            | HandshakeError::UnsupportedHttpVersion
            | HandshakeError::MissingHost
            | HandshakeError::InvalidUpgradeHeader
            | HandshakeError::MissingConnectionUpgrade
            | HandshakeError::InvalidKey => 400,
            HandshakeError::LengthRequired => 411,
            HandshakeError::BodyTooLarge { .. } => 413,
        }
    }

    /// The complete HTTP answer: status line, the headers the status requires, and the
    /// error message as a plain-text body.
    pub fn response(&self) -> Vec<u8> {
        let message = self.to_string();
        // The headers are constants: they cannot be invalid.
        reject_response(self.status(), &message, self.required_headers()).unwrap_or_default()
    }

    /// The header fields the status requires (`Allow` with 405; `Upgrade` and
    /// `Sec-WebSocket-Version` with 426), for an HTTP layer that writes the answer itself.
    pub fn required_headers(&self) -> &'static [(&'static str, &'static str)] {
        match self {
            HandshakeError::MethodNotAllowed(_) => &[("Allow", "GET")],
            HandshakeError::NotUpgrade | HandshakeError::UnsupportedVersion(_) => {
                &[("Upgrade", "websocket"), ("Sec-WebSocket-Version", "13")]
            }
            _ => &[],
        }
    }
}

impl fmt::Display for HandshakeError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            HandshakeError::RequestTooLarge { limit } => {
                write!(f, "handshake request larger than {limit} bytes")
            }
            HandshakeError::Malformed(why) => write!(f, "malformed HTTP request: {why}"),
            HandshakeError::MethodNotAllowed(m) => write!(f, "method {m} not allowed, use GET"),
            HandshakeError::UnsupportedHttpVersion => f.write_str("HTTP/1.1 or later required"),
            HandshakeError::MissingHost => f.write_str("missing Host header"),
            HandshakeError::NotUpgrade => {
                f.write_str("this endpoint speaks WebSocket: upgrade required")
            }
            HandshakeError::InvalidUpgradeHeader => {
                f.write_str("Upgrade header does not name websocket")
            }
            HandshakeError::MissingConnectionUpgrade => {
                f.write_str("Connection header does not list Upgrade")
            }
            HandshakeError::UnsupportedVersion(Some(v)) => {
                write!(
                    f,
                    "unsupported Sec-WebSocket-Version {v:?}, only 13 is supported"
                )
            }
            HandshakeError::UnsupportedVersion(None) => {
                f.write_str("missing Sec-WebSocket-Version, only 13 is supported")
            }
            HandshakeError::InvalidKey => {
                f.write_str("Sec-WebSocket-Key must be base64 of 16 bytes, given once")
            }
            HandshakeError::LengthRequired => {
                f.write_str("a request body needs a Content-Length (chunked is not read)")
            }
            HandshakeError::BodyTooLarge { limit } => {
                write!(f, "request body larger than {limit} bytes")
            }
        }
    }
}

impl std::error::Error for HandshakeError {}

/// Checks that a complete request is a valid RFC 6455 opening handshake (section 4.2.1).
///
/// A request without an `Upgrade` header, whatever its method, is plain HTTP
/// ([`HandshakeError::NotUpgrade`]: a page, a HEAD, a POST), for the application to answer
/// or refuse with 426; an upgrade with another method than GET is refused with 405.
pub fn validate_upgrade(request: &Request) -> Result<(), HandshakeError> {
    let headers = &request.headers;
    if headers.get("upgrade").is_none() {
        return Err(HandshakeError::NotUpgrade);
    }
    if request.method != "GET" {
        return Err(HandshakeError::MethodNotAllowed(request.method.clone()));
    }
    if headers.get("host").is_none_or(str::is_empty) {
        return Err(HandshakeError::MissingHost);
    }
    if !request.is_websocket_upgrade() {
        return Err(HandshakeError::InvalidUpgradeHeader);
    }
    if !has_token(headers.get_all("connection"), "upgrade") {
        return Err(HandshakeError::MissingConnectionUpgrade);
    }
    let versions: Vec<&str> = headers.get_all("sec-websocket-version").collect();
    if versions != ["13"] {
        return Err(HandshakeError::UnsupportedVersion(
            (!versions.is_empty()).then(|| versions.join(", ")),
        ));
    }
    let mut keys = headers.get_all("sec-websocket-key");
    let key = keys.next().ok_or(HandshakeError::InvalidKey)?;
    let decoded = BASE64.decode(key).map_err(|_| HandshakeError::InvalidKey)?;
    if decoded.len() != 16 || keys.next().is_some() {
        return Err(HandshakeError::InvalidKey);
    }
    Ok(())
}

/// The header fields of the 101 Switching Protocols answer to a validated `request`, for
/// an HTTP layer that writes the status line itself (hyper): `Upgrade`, `Connection`,
/// `Sec-WebSocket-Accept`, the chosen subprotocol and extension answer, if any, then the
/// extra headers, each checked (an HTTP token name, no CR/LF/NUL in the value).
pub fn switching_headers(
    request: &Request,
    subprotocol: Option<&str>,
    extensions: Option<&str>,
    extra_headers: &[(&str, &str)],
) -> Result<Vec<(String, String)>, InvalidHeader> {
    let mut fields = Vec::new();
    for_each_switching_header(request, subprotocol, extensions, extra_headers, |n, v| {
        fields.push((n.to_owned(), v.to_owned()));
    })?;
    Ok(fields)
}

/// Hands each field of [`switching_headers`] to `field`, in order, once every one was
/// checked (nothing is handed over when one is invalid).
fn for_each_switching_header(
    request: &Request,
    subprotocol: Option<&str>,
    extensions: Option<&str>,
    extra_headers: &[(&str, &str)],
    mut field: impl FnMut(&str, &str),
) -> Result<(), InvalidHeader> {
    let chosen = [
        ("Sec-WebSocket-Protocol", subprotocol),
        ("Sec-WebSocket-Extensions", extensions),
    ];
    let given = || {
        chosen
            .into_iter()
            .filter_map(|(name, value)| Some((name, value?)))
            .chain(extra_headers.iter().copied())
    };
    for (name, value) in given() {
        check_header(name, value)?;
    }
    let key = request.websocket_key().unwrap_or_default();
    field("Upgrade", "websocket");
    field("Connection", "Upgrade");
    field("Sec-WebSocket-Accept", &accept_key(key));
    for (name, value) in given() {
        field(name, value);
    }
    Ok(())
}

/// Appends the 101 Switching Protocols answer to a validated `request` to `out`: the
/// fields of [`switching_headers`] after the status line. Nothing is written when a
/// header is invalid.
pub fn accept_response(
    request: &Request,
    subprotocol: Option<&str>,
    extensions: Option<&str>,
    extra_headers: &[(&str, &str)],
    out: &mut Vec<u8>,
) -> Result<(), InvalidHeader> {
    let start = out.len();
    out.extend_from_slice(b"HTTP/1.1 101 Switching Protocols\r\n");
    let written =
        for_each_switching_header(request, subprotocol, extensions, extra_headers, |n, v| {
            for part in [n.as_bytes(), b": ", v.as_bytes(), b"\r\n"] {
                out.extend_from_slice(part);
            }
        });
    if written.is_err() {
        out.truncate(start);
        return written;
    }
    out.extend_from_slice(b"\r\n");
    Ok(())
}

/// An HTTP error answer (e.g. 403 or 404) with `message` as a plain-text body and
/// `Connection: close`.
pub fn reject_response(
    status: u16,
    message: &str,
    extra_headers: &[(&str, &str)],
) -> Result<Vec<u8>, InvalidHeader> {
    let mut out = format!("HTTP/1.1 {status} {}\r\n", reason_phrase(status)).into_bytes();
    write_header(&mut out, "Content-Type", "text/plain; charset=utf-8")?;
    write_header(&mut out, "Content-Length", &(message.len() + 1).to_string())?;
    write_header(&mut out, "Connection", "close")?;
    for (name, value) in extra_headers {
        write_header(&mut out, name, value)?;
    }
    out.extend_from_slice(b"\r\n");
    out.extend_from_slice(message.as_bytes());
    out.push(b'\n');
    Ok(out)
}

/// The standard reason phrase of an HTTP status (those a WebSocket endpoint answers
/// with; "Error" or "OK" for others).
pub fn reason_phrase(status: u16) -> &'static str {
    match status {
        101 => "Switching Protocols",
        204 => "No Content",
        301 => "Moved Permanently",
        302 => "Found",
        304 => "Not Modified",
        400 => "Bad Request",
        401 => "Unauthorized",
        403 => "Forbidden",
        404 => "Not Found",
        405 => "Method Not Allowed",
        411 => "Length Required",
        413 => "Content Too Large",
        426 => "Upgrade Required",
        429 => "Too Many Requests",
        431 => "Request Header Fields Too Large",
        500 => "Internal Server Error",
        503 => "Service Unavailable",
        200..=299 => "OK",
        _ => "Error",
    }
}

/// Reads a handshake request incrementally.
///
/// Feed bytes with [`receive_data`](Self::receive_data) until it returns the request;
/// then [`validate_upgrade`] it (or serve it as plain HTTP), answer with
/// [`accept_response`] or an error, and pass [`leftover`](Self::leftover) (frames the
/// client pipelined after its request) to the [`crate::Connection`].
#[derive(Clone, Debug)]
pub struct ServerHandshake {
    buf: Vec<u8>,
    max_size: usize,
    /// Where the header block ends, once complete.
    end: Option<usize>,
}

impl ServerHandshake {
    /// A reader refusing requests larger than `max_size` bytes with 431.
    pub fn new(max_size: usize) -> Self {
        ServerHandshake {
            buf: Vec::new(),
            max_size,
            end: None,
        }
    }

    /// Processes received bytes. Returns the request once its header block is complete;
    /// bytes after it are kept as [`leftover`](Self::leftover). Errors are final.
    pub fn receive_data(&mut self, data: &[u8]) -> Result<Option<Request>, HandshakeError> {
        if self.end.is_some() {
            self.buf.extend_from_slice(data);
            return Ok(None);
        }
        let searched = self.buf.len();
        // Never hold more than the limit plus one read's worth of pipelined bytes.
        let room = (self.max_size + 4).saturating_sub(self.buf.len());
        let (now, later) = data.split_at(room.min(data.len()));
        self.buf.extend_from_slice(now);
        let Some(end) = find_header_end(&self.buf, searched) else {
            if self.buf.len() > self.max_size {
                return Err(HandshakeError::RequestTooLarge {
                    limit: self.max_size,
                });
            }
            // Fail fast on bytes that are not HTTP, before the limit or the handshake
            // timeout would. Parsing the whole buffer on every call keeps the verdict
            // independent of how the input was split (a fuzzed property).
            let mut headers = [httparse::EMPTY_HEADER; MAX_HEADERS];
            if let Err(e) = httparse::Request::new(&mut headers).parse(&self.buf) {
                return Err(parse_error(e, self.max_size));
            }
            return Ok(None);
        };
        if end > self.max_size {
            return Err(HandshakeError::RequestTooLarge {
                limit: self.max_size,
            });
        }
        self.end = Some(end);
        self.buf.extend_from_slice(later);
        let mut headers = [httparse::EMPTY_HEADER; MAX_HEADERS];
        let mut parsed = httparse::Request::new(&mut headers);
        match parsed.parse(&self.buf[..end]) {
            Ok(httparse::Status::Complete(_)) => {}
            Ok(httparse::Status::Partial) => {
                return Err(HandshakeError::Malformed("incomplete request".into()))
            }
            Err(e) => return Err(parse_error(e, self.max_size)),
        }
        if parsed.version != Some(1) {
            return Err(HandshakeError::UnsupportedHttpVersion);
        }
        Ok(Some(Request {
            method: parsed.method.unwrap_or_default().to_owned(),
            target: parsed.path.unwrap_or_default().to_owned(),
            headers: Headers::from_httparse(parsed.headers),
            body: Vec::new(),
        }))
    }

    /// Bytes received after the request (pipelined frames), once it is complete.
    pub fn leftover(&self) -> &[u8] {
        match self.end {
            Some(end) => &self.buf[end..],
            None => &[],
        }
    }
}

fn parse_error(e: httparse::Error, limit: usize) -> HandshakeError {
    match e {
        httparse::Error::TooManyHeaders => HandshakeError::RequestTooLarge { limit },
        other => HandshakeError::Malformed(other.to_string()),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const RFC_REQUEST: &str = "GET /chat?room=a%20b&x=1+2&flag HTTP/1.1\r\n\
        Host: server.example.com\r\n\
        Upgrade: websocket\r\n\
        Connection: keep-alive, Upgrade\r\n\
        Sec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==\r\n\
        Origin: http://example.com\r\n\
        Sec-WebSocket-Protocol: chat, superchat\r\n\
        Sec-WebSocket-Protocol: v3\r\n\
        Sec-WebSocket-Version: 13\r\n\r\n";

    fn parse(text: &str) -> Result<Option<Request>, HandshakeError> {
        ServerHandshake::new(DEFAULT_MAX_REQUEST_SIZE).receive_data(text.as_bytes())
    }

    fn with_header(name: &str, value: Option<&str>) -> String {
        let mut out = String::new();
        for line in RFC_REQUEST.split("\r\n") {
            if line
                .to_ascii_lowercase()
                .starts_with(&format!("{}:", name.to_ascii_lowercase()))
            {
                continue;
            }
            if line.is_empty() {
                if let Some(value) = value {
                    out.push_str(&format!("{name}: {value}\r\n"));
                }
                out.push_str("\r\n");
                break;
            }
            out.push_str(line);
            out.push_str("\r\n");
        }
        out
    }

    #[test]
    fn parses_rfc_request_one_byte_at_a_time_and_keeps_pipelined_bytes() {
        let mut hs = ServerHandshake::new(DEFAULT_MAX_REQUEST_SIZE);
        let mut input = RFC_REQUEST.as_bytes().to_vec();
        input.extend_from_slice(&[0x81, 0x80]);
        let mut request = None;
        for byte in &input {
            if let Some(r) = hs.receive_data(std::slice::from_ref(byte)).unwrap() {
                request = Some(r);
            }
        }
        let request = request.unwrap();
        assert_eq!(hs.leftover(), &[0x81, 0x80]);
        assert_eq!(request.method(), "GET");
        assert_eq!(request.url(), "/chat?room=a%20b&x=1+2&flag");
        assert_eq!(request.path(), "/chat");
        let query = request.query();
        assert_eq!(
            query,
            [
                ("room".into(), "a b".into()),
                ("x".into(), "1 2".into()),
                ("flag".into(), String::new())
            ]
        );
        assert_eq!(request.subprotocols(), ["chat", "superchat", "v3"]);
        assert_eq!(
            request.headers().get_all("sec-websocket-protocol").count(),
            2
        );
        assert!(validate_upgrade(&request).is_ok());

        let mut out = Vec::new();
        accept_response(
            &request,
            Some("chat"),
            None,
            &[("Set-Cookie", "a=b")],
            &mut out,
        )
        .unwrap();
        let text = String::from_utf8(out).unwrap();
        assert!(text.starts_with("HTTP/1.1 101 Switching Protocols\r\n"));
        assert!(text.contains("Sec-WebSocket-Accept: s3pPLMBiTxaQ9kYGzzhZRbK+xOo=\r\n"));
        assert!(text.contains("Sec-WebSocket-Protocol: chat\r\n"));
        assert!(text.contains("Set-Cookie: a=b\r\n"));
        assert!(text.ends_with("\r\n\r\n"));
    }

    #[test]
    fn each_invalid_request_gets_its_status() {
        let check = |text: &str| validate_upgrade(&parse(text).unwrap().unwrap()).unwrap_err();
        let post = RFC_REQUEST.replacen("GET", "POST", 1);
        assert_eq!(check(&post).status(), 405);
        // Without an upgrade, any method is plain HTTP, for the application.
        assert_eq!(
            check("HEAD /page HTTP/1.1\r\nHost: h\r\n\r\n"),
            HandshakeError::NotUpgrade
        );
        assert_eq!(
            check("POST /form HTTP/1.1\r\nHost: h\r\nContent-Length: 0\r\n\r\n"),
            HandshakeError::NotUpgrade
        );
        assert_eq!(
            check(&with_header("Host", None)),
            HandshakeError::MissingHost
        );
        assert_eq!(
            check(&with_header("Upgrade", None)),
            HandshakeError::NotUpgrade
        );
        assert_eq!(check(&with_header("Upgrade", None)).status(), 426);
        assert_eq!(
            check(&with_header("Upgrade", Some("h2c"))),
            HandshakeError::InvalidUpgradeHeader
        );
        assert_eq!(
            check(&with_header("Connection", Some("keep-alive"))),
            HandshakeError::MissingConnectionUpgrade
        );
        let v8 = check(&with_header("Sec-WebSocket-Version", Some("8")));
        assert_eq!(v8.status(), 426);
        let response = String::from_utf8(v8.response()).unwrap();
        assert!(response.starts_with("HTTP/1.1 426 Upgrade Required\r\n"));
        assert!(response.contains("Sec-WebSocket-Version: 13\r\n"));
        assert_eq!(
            check(&with_header("Sec-WebSocket-Key", Some("c2hvcnQ="))),
            HandshakeError::InvalidKey
        );
        assert_eq!(
            check(&with_header("Sec-WebSocket-Key", None)),
            HandshakeError::InvalidKey
        );
        // Case-insensitive tokens are accepted.
        let shouting = with_header("Upgrade", Some("WebSocket"));
        assert!(validate_upgrade(&parse(&shouting).unwrap().unwrap()).is_ok());
    }

    #[test]
    fn http_1_0_and_garbage_are_refused() {
        let old = RFC_REQUEST.replacen("HTTP/1.1", "HTTP/1.0", 1);
        assert_eq!(parse(&old), Err(HandshakeError::UnsupportedHttpVersion));
        let garbage = parse("\x16\x03\x01 not http\r\n");
        assert_eq!(garbage.unwrap_err().status(), 400);
    }

    #[test]
    fn verdict_does_not_depend_on_splitting() {
        // Regression (found by the server_handshake fuzz target): a request line that
        // turns invalid after an earlier chunk looked fine was only caught when whole.
        let mut hs = ServerHandshake::new(DEFAULT_MAX_REQUEST_SIZE);
        assert_eq!(hs.receive_data(b"\n"), Ok(None));
        assert!(hs.receive_data(b"=\n").is_err());
        assert!(parse("\n=\n").is_err());
    }

    #[test]
    fn oversized_request_gets_431() {
        let mut hs = ServerHandshake::new(256);
        let big = format!("GET / HTTP/1.1\r\nX-Pad: {}\r\n", "a".repeat(300));
        let err = hs.receive_data(big.as_bytes()).unwrap_err();
        assert_eq!(err.status(), 431);
        let mut headers = String::from("GET / HTTP/1.1\r\n");
        for i in 0..150 {
            headers.push_str(&format!("X-{i}: v\r\n"));
        }
        headers.push_str("\r\n");
        let err = ServerHandshake::new(DEFAULT_MAX_REQUEST_SIZE)
            .receive_data(headers.as_bytes())
            .unwrap_err();
        assert_eq!(err.status(), 431);
    }

    #[test]
    fn rejection_carries_reason_and_length() {
        let bytes = reject_response(403, "go away", &[]).unwrap();
        let text = String::from_utf8(bytes).unwrap();
        assert!(text.starts_with("HTTP/1.1 403 Forbidden\r\n"));
        assert!(text.contains("Content-Length: 8\r\n"));
        assert!(text.ends_with("\r\n\r\ngo away\n"));
    }

    #[test]
    fn percent_decoding_edge_cases() {
        assert_eq!(percent_decode("%41%zz%"), "A%zz%");
        assert_eq!(percent_decode("%e2%9c%93"), "✓");
        assert_eq!(percent_decode("%ff"), "\u{fffd}");
        // Regression: a sign is not a hex digit.
        assert_eq!(percent_decode("%+F%-1"), "% F%-1");
    }
}
