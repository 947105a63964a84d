//! The server's opening handshake as one sans-IO object, shaped like rustls'
//! `Acceptor` -> `Accepted` -> `into_connection`: read the request with an [`Acceptor`],
//! look at it in the [`Accepted`] it yields, then either accept it (a ready
//! [`Connection`] whose output starts with the 101) or answer it over HTTP (a [`Reply`]).
//!
//! ```
//! use std::time::Instant;
//! use ws6455_core::accept::{Acceptor, Choices};
//! use ws6455_core::Config;
//!
//! let now = Instant::now();
//! let mut acceptor = Acceptor::new(Config::default(), now);
//! let request = b"GET /chat HTTP/1.1\r\nHost: example.com\r\nUpgrade: websocket\r\n\
//!     Connection: Upgrade\r\nSec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==\r\n\
//!     Sec-WebSocket-Version: 13\r\n\r\n";
//! let accepted = acceptor.receive_data(now, request).unwrap().expect("a whole request");
//! assert_eq!(accepted.request().path(), "/chat");
//! let connection = accepted.accept(&Choices::default(), now).unwrap();
//! assert!(connection.pending_output().starts_with(b"HTTP/1.1 101 Switching Protocols\r\n"));
//! ```

use std::sync::Arc;
use std::time::Instant;

use crate::config::Config;
use crate::connection::Connection;
use crate::deflate::DeflateParams;
use crate::handshake::{
    accept_response, reject_response, switching_headers, validate_upgrade, HandshakeError, Request,
    ServerHandshake,
};

/// Reads a handshake request, within [`Config::handshake_timeout`] and
/// [`Config::max_handshake_size`].
#[derive(Debug)]
pub struct Acceptor {
    parser: ServerHandshake,
    config: Arc<Config>,
    deadline: Instant,
    /// The request was returned: later input is ignored.
    done: bool,
    /// A plain HTTP request whose body (this many bytes) is still arriving.
    waiting_body: Option<(Request, usize)>,
}

impl Acceptor {
    /// An acceptor for a connection that started at `now`.
    pub fn new(config: impl Into<Arc<Config>>, now: Instant) -> Self {
        let config = config.into();
        Acceptor {
            parser: ServerHandshake::new(config.max_handshake_size),
            deadline: now + config.handshake_timeout,
            config,
            done: false,
            waiting_body: None,
        }
    }

    /// Takes bytes from the client. Returns the request once it is complete (bytes after
    /// it are kept for the connection), `Ok(None)` while it is not. An invalid request
    /// (malformed, too large, a broken WebSocket upgrade) is refused with the HTTP answer
    /// to send. A plain HTTP request (no upgrade) is returned like an upgrade, for the
    /// application to answer. After a request was returned, input is ignored.
    pub fn receive_data(&mut self, now: Instant, data: &[u8]) -> Result<Option<Accepted>, Refused> {
        if self.done {
            return Ok(None);
        }
        let (mut request, body_len) = match self.waiting_body.take() {
            Some((request, len)) => {
                // The head is parsed: the parser only keeps what follows it.
                let _ = self.parser.receive_data(data);
                (request, Some(len))
            }
            None => {
                let request = match self.parser.receive_data(data) {
                    Ok(None) => return Ok(None),
                    Ok(Some(request)) => request,
                    Err(error) => return Err(self.refuse(error, now)),
                };
                match validate_upgrade(&request) {
                    Ok(()) => (request, None),
                    Err(HandshakeError::NotUpgrade) => {
                        match announced_body_len(&request, self.config.max_http_body) {
                            Ok(len) => (request, Some(len)),
                            Err(error) => return Err(self.refuse(error, now)),
                        }
                    }
                    Err(error) => return Err(self.refuse(error, now)),
                }
            }
        };
        let mut early_input = self.parser.leftover();
        if let Some(len) = body_len {
            if early_input.len() < len {
                self.waiting_body = Some((request, len));
                return Ok(None);
            }
            request.set_body(early_input[..len].to_vec());
            early_input = &early_input[len..];
        }
        self.done = true;
        Ok(Some(Accepted {
            websocket: body_len.is_none(),
            request,
            early_input: early_input.to_vec(),
            config: self.config.clone(),
        }))
    }

    fn refuse(&mut self, error: HandshakeError, now: Instant) -> Refused {
        self.waiting_body = None;
        self.done = true;
        let reply = Reply::new(error.status(), error.response(), now, &self.config);
        Refused { error, reply }
    }

    /// The handshake deadline, until the request is complete.
    pub fn poll_timeout(&self) -> Option<Instant> {
        (!self.done).then_some(self.deadline)
    }

    /// True when the request did not arrive in time: the driver closes the transport
    /// (no answer: a client that sends nothing reads nothing either).
    pub fn handle_timeout(&mut self, now: Instant) -> bool {
        !self.done && now >= self.deadline
    }
}

/// The body's length as a plain HTTP request announces it: `Content-Length`, 0 without
/// one. Refused: a chunked body (411), an invalid or ambiguous length (400), one over
/// `limit` (413).
fn announced_body_len(request: &Request, limit: usize) -> Result<usize, HandshakeError> {
    let headers = request.headers();
    if headers.get("transfer-encoding").is_some() {
        return Err(HandshakeError::LengthRequired);
    }
    let mut lengths = headers.get_all("content-length");
    let Some(first) = lengths.next() else {
        return Ok(0);
    };
    let digits = !first.is_empty() && first.bytes().all(|b| b.is_ascii_digit());
    if !digits || lengths.any(|other| other != first) {
        return Err(HandshakeError::Malformed("invalid Content-Length".into()));
    }
    // Only digits: a parse failure is an overflow, too large as well.
    match first.parse::<usize>() {
        Ok(len) if len <= limit => Ok(len),
        _ => Err(HandshakeError::BodyTooLarge { limit }),
    }
}

/// What the application chooses when it accepts an upgrade.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct Choices {
    /// One of the subprotocols the client offered, or none.
    pub subprotocol: Option<String>,
    /// Extra response headers (e.g. `Set-Cookie`).
    pub headers: Vec<(String, String)>,
}

/// A complete request: accept it, reject it, or answer it as plain HTTP.
#[derive(Debug)]
pub struct Accepted {
    request: Request,
    websocket: bool,
    early_input: Vec<u8>,
    config: Arc<Config>,
}

impl Accepted {
    /// The request: method, target, headers, offered subprotocols and extensions.
    pub fn request(&self) -> &Request {
        &self.request
    }

    /// True for a valid WebSocket upgrade request; false for a plain HTTP request, which
    /// [`respond`](Self::respond) answers (or `accept` refuses with 426).
    pub fn is_websocket(&self) -> bool {
        self.websocket
    }

    /// An upgrade request parsed by another HTTP layer (hyper, say), to answer with
    /// [`accept_upgrade`](Self::accept_upgrade). Refused when it is not a valid
    /// WebSocket upgrade (a plain HTTP request too: [`HandshakeError::NotUpgrade`]); the
    /// error's status and message are the answer to give.
    pub fn from_request(
        request: Request,
        config: impl Into<Arc<Config>>,
    ) -> Result<Accepted, HandshakeError> {
        validate_upgrade(&request)?;
        Ok(Accepted {
            request,
            websocket: true,
            early_input: Vec::new(),
            config: config.into(),
        })
    }

    /// Upgrades: the connection's output starts with the 101 (with the chosen
    /// subprotocol, permessage-deflate when [`Config::deflate`] allows one of the client's
    /// offers, and the extra headers), its timers start at `now`, and the bytes that came
    /// after the request are decoded by its first [`Connection::receive`]. Refused with an
    /// HTTP answer when this is not an upgrade request (426), or when the choices would
    /// break the handshake (500: a subprotocol the client did not offer, a header with
    /// CR/LF).
    pub fn accept(self, choices: &Choices, now: Instant) -> Result<Connection, Reply> {
        if !self.websocket {
            let error = HandshakeError::NotUpgrade;
            return Err(self.reply(error.status(), error.response(), now));
        }
        let agreed = match self.negotiate(choices) {
            Ok(agreed) => agreed,
            Err(refusal) => return Err(self.reject(refusal.status, &refusal.reason, now)),
        };
        let mut response = Vec::new();
        let written = accept_response(
            &self.request,
            choices.subprotocol.as_deref(),
            agreed.deflate_answer.as_deref(),
            &extra_headers(choices),
            &mut response,
        );
        if written.is_err() {
            return Err(self.reject(500, INVALID_HEADER, now));
        }
        Ok(self.into_connection(agreed, response, now))
    }

    /// Upgrades for an HTTP layer that writes the 101 itself: the header fields to send
    /// with status 101 (as [`accept`](Self::accept) would write them) and the
    /// connection, with nothing queued, its timers started at `now`. Refused with the
    /// status and reason to answer (500) when the choices would break the handshake.
    pub fn accept_upgrade(self, choices: &Choices, now: Instant) -> Result<Upgrade, Refusal> {
        if !self.websocket {
            let error = HandshakeError::NotUpgrade;
            return Err(Refusal {
                status: error.status(),
                reason: error.to_string(),
            });
        }
        let agreed = self.negotiate(choices)?;
        let headers = switching_headers(
            &self.request,
            choices.subprotocol.as_deref(),
            agreed.deflate_answer.as_deref(),
            &extra_headers(choices),
        )
        .map_err(|_| Refusal {
            status: 500,
            reason: INVALID_HEADER.to_owned(),
        })?;
        let connection = self.into_connection(agreed, Vec::new(), now);
        Ok(Upgrade {
            headers,
            connection,
        })
    }

    /// Checks the application's choices against the request and agrees on the
    /// extensions.
    fn negotiate(&self, choices: &Choices) -> Result<Agreed, Refusal> {
        if let Some(chosen) = choices.subprotocol.as_deref() {
            if !self.request.subprotocols().contains(&chosen) {
                return Err(Refusal {
                    status: 500,
                    reason: "the server chose a subprotocol the client did not offer".into(),
                });
            }
        }
        let (deflate, deflate_answer) = self
            .config
            .deflate
            .as_ref()
            .and_then(|ours| ours.accept_offers(&self.request.extensions()))
            .unzip();
        Ok(Agreed {
            deflate,
            deflate_answer,
        })
    }

    fn into_connection(self, agreed: Agreed, response: Vec<u8>, now: Instant) -> Connection {
        let mut connection = Connection::server(self.config.clone());
        if let (Some(params), Some(ours)) = (&agreed.deflate, &self.config.deflate) {
            connection.enable_deflate(params, ours);
        }
        connection.after_handshake(response, self.early_input, now);
        connection
    }

    /// Refuses the upgrade (or the request) with `status` and `reason` as a plain-text
    /// body, e.g. 403 or 404.
    pub fn reject(self, status: u16, reason: &str, now: Instant) -> Reply {
        let bytes = reject_response(status, reason, &[]).unwrap_or_default();
        self.reply(status, bytes, now)
    }

    /// Answers with `response`, a whole HTTP response the application wrote (a page, a
    /// health check), then the connection closes.
    pub fn respond(self, response: Vec<u8>, now: Instant) -> Reply {
        let status = status_of(&response);
        self.reply(status, response, now)
    }

    fn reply(&self, status: u16, bytes: Vec<u8>, now: Instant) -> Reply {
        Reply::new(status, bytes, now, &self.config)
    }
}

const INVALID_HEADER: &str = "the server gave an invalid response header";

fn extra_headers(choices: &Choices) -> Vec<(&str, &str)> {
    choices
        .headers
        .iter()
        .map(|(name, value)| (name.as_str(), value.as_str()))
        .collect()
}

/// What [`Accepted::negotiate`] agreed on.
struct Agreed {
    deflate: Option<DeflateParams>,
    /// The `Sec-WebSocket-Extensions` answer for `deflate`.
    deflate_answer: Option<String>,
}

/// The 101 for an HTTP layer that writes the response itself
/// ([`Accepted::accept_upgrade`]).
#[derive(Debug)]
pub struct Upgrade {
    /// The header fields of the 101, in order.
    pub headers: Vec<(String, String)>,
    /// The connection, to drive once the 101 is written.
    pub connection: Connection,
}

/// An upgrade the server cannot answer with a 101: the HTTP status and the reason to
/// send instead.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Refusal {
    /// The HTTP status (500 for the server's own mistakes).
    pub status: u16,
    /// Why, as a plain-text body.
    pub reason: String,
}

/// The status code of an HTTP response's status line (0 when there is none).
fn status_of(response: &[u8]) -> u16 {
    let line = response.split(|&b| b == b'\r').next().unwrap_or_default();
    std::str::from_utf8(line)
        .ok()
        .and_then(|line| line.split(' ').nth(1))
        .and_then(|code| code.parse().ok())
        .unwrap_or(0)
}

/// An invalid request: why, and the answer that says so.
#[derive(Debug)]
pub struct Refused {
    /// What was wrong with the request.
    pub error: HandshakeError,
    /// The HTTP answer to write before closing.
    pub reply: Reply,
}

/// An HTTP answer to write, then close the transport: within
/// [`Config::close_timeout`], after which the transport closes anyway.
#[derive(Debug)]
pub struct Reply {
    status: u16,
    bytes: Vec<u8>,
    sent: usize,
    deadline: Instant,
    expired: bool,
}

impl Reply {
    fn new(status: u16, bytes: Vec<u8>, since: Instant, config: &Config) -> Reply {
        Reply {
            status,
            bytes,
            sent: 0,
            deadline: since + config.close_timeout,
            expired: false,
        }
    }

    /// The HTTP status answered.
    pub fn status(&self) -> u16 {
        self.status
    }

    /// The bytes still to write.
    pub fn pending_output(&self) -> &[u8] {
        &self.bytes[self.sent..]
    }

    /// Records that the transport took `n` more bytes.
    pub fn consume_output(&mut self, n: usize) {
        self.sent = (self.sent + n).min(self.bytes.len());
    }

    /// When the transport closes whether the answer was written or not.
    pub fn poll_timeout(&self) -> Option<Instant> {
        (!self.should_close_transport()).then_some(self.deadline)
    }

    /// Runs the deadline; true when it passed.
    pub fn handle_timeout(&mut self, now: Instant) -> bool {
        self.expired |= now >= self.deadline;
        self.expired
    }

    /// True once the answer is written or its time is up: close the transport.
    pub fn should_close_transport(&self) -> bool {
        self.expired || self.sent == self.bytes.len()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::{DeflateConfig, Event};
    use std::time::Duration;

    const UPGRADE: &str = "GET /chat?room=1 HTTP/1.1\r\nHost: h\r\nUpgrade: websocket\r\n\
        Connection: Upgrade\r\nSec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==\r\n\
        Sec-WebSocket-Version: 13\r\nSec-WebSocket-Protocol: chat, superchat\r\n\
        Sec-WebSocket-Extensions: permessage-deflate\r\n\r\n";

    #[test]
    fn a_plain_request_body_is_read_up_to_its_content_length_across_reads() {
        let now = Instant::now();
        let mut acceptor = Acceptor::new(Config::default(), now);
        let head = b"POST /form HTTP/1.1\r\nHost: h\r\nContent-Length: 11\r\n\r\nhello";
        assert!(acceptor.receive_data(now, head).unwrap().is_none());
        assert!(acceptor.receive_data(now, b" wor").unwrap().is_none());
        let accepted = acceptor.receive_data(now, b"ldEXTRA").unwrap().unwrap();
        assert!(!accepted.is_websocket());
        assert_eq!(accepted.request().method(), "POST");
        assert_eq!(accepted.request().body(), b"hello world");
        // No body, no wait; an upgrade never has one.
        let mut acceptor = Acceptor::new(Config::default(), now);
        let get = b"GET / HTTP/1.1\r\nHost: h\r\n\r\n";
        let accepted = acceptor.receive_data(now, get).unwrap().unwrap();
        assert!(accepted.request().body().is_empty());
        let accepted = super::tests::accepted(Config::default(), UPGRADE.as_bytes());
        assert!(accepted.is_websocket() && accepted.request().body().is_empty());
    }

    #[test]
    fn plain_request_bodies_that_cannot_be_read_are_refused() {
        let now = Instant::now();
        let config = Config {
            max_http_body: 10,
            ..Config::default()
        };
        let status = |request: &str| {
            let mut acceptor = Acceptor::new(config.clone(), now);
            match acceptor.receive_data(now, request.as_bytes()) {
                Err(refused) => refused.error.status(),
                Ok(_) => 0,
            }
        };
        let post = |headers: &str| format!("POST / HTTP/1.1\r\nHost: h\r\n{headers}\r\n");
        assert_eq!(status(&post("Content-Length: 11\r\n")), 413);
        assert_eq!(
            status(&post("Content-Length: 99999999999999999999999\r\n")),
            413
        );
        assert_eq!(status(&post("Transfer-Encoding: chunked\r\n")), 411);
        assert_eq!(status(&post("Content-Length: ten\r\n")), 400);
        assert_eq!(
            status(&post("Content-Length: 1\r\nContent-Length: 2\r\n")),
            400
        );
        assert_eq!(status(&post("Content-Length: 10\r\n")), 0, "waits for it");
    }

    fn accepted(config: Config, request: &[u8]) -> Accepted {
        let now = Instant::now();
        let mut acceptor = Acceptor::new(config, now);
        acceptor
            .receive_data(now, request)
            .unwrap()
            .expect("complete")
    }

    #[test]
    fn accept_writes_the_101_and_keeps_the_frames_that_followed() {
        let now = Instant::now();
        let mut request = UPGRADE.as_bytes().to_vec();
        // A masked "Hi" right behind the request, as a pipelining client sends it.
        request.extend_from_slice(&[0x81, 0x82, 0, 0, 0, 0, b'H', b'i']);
        let config = Config {
            deflate: Some(DeflateConfig::default()),
            ..Config::default()
        };
        let accepted = accepted(config, &request);
        assert!(accepted.is_websocket());
        assert_eq!(accepted.request().subprotocols(), ["chat", "superchat"]);
        let choices = Choices {
            subprotocol: Some("superchat".into()),
            headers: vec![("Set-Cookie".into(), "a=1".into())],
        };
        let mut conn = accepted.accept(&choices, now).unwrap();
        let out = String::from_utf8(conn.pending_output().to_vec()).unwrap();
        assert!(
            out.starts_with("HTTP/1.1 101 Switching Protocols\r\n"),
            "{out}"
        );
        assert!(out.contains("Sec-WebSocket-Accept: s3pPLMBiTxaQ9kYGzzhZRbK+xOo=\r\n"));
        assert!(out.contains("Sec-WebSocket-Protocol: superchat\r\n"));
        assert!(out.contains("Sec-WebSocket-Extensions: permessage-deflate"));
        assert!(out.contains("Set-Cookie: a=1\r\n"));
        assert!(conn.deflate_params().is_some());
        assert!(conn.has_early_input());
        let mut none: &[u8] = &[];
        let event = conn.receive(now, &mut none).unwrap();
        assert_eq!(
            event,
            Some(Event::Message(crate::Message::Text("Hi".into())))
        );
        assert!(!conn.has_early_input());
    }

    #[test]
    fn choices_that_break_the_handshake_are_answered_with_500() {
        let now = Instant::now();
        let choices = Choices {
            subprotocol: Some("unoffered".into()),
            ..Choices::default()
        };
        let reply = accepted(Config::default(), UPGRADE.as_bytes())
            .accept(&choices, now)
            .unwrap_err();
        assert_eq!(reply.status(), 500);
        let choices = Choices {
            headers: vec![("X-Bad".into(), "a\r\nb".into())],
            ..Choices::default()
        };
        let reply = accepted(Config::default(), UPGRADE.as_bytes())
            .accept(&choices, now)
            .unwrap_err();
        assert_eq!(reply.status(), 500);
    }

    #[test]
    fn plain_http_comes_out_for_the_application_to_answer() {
        let now = Instant::now();
        let get = b"GET /health HTTP/1.1\r\nHost: h\r\n\r\n";
        let http = accepted(Config::default(), get);
        assert!(!http.is_websocket());
        let mut reply = http.respond(b"HTTP/1.1 204 No Content\r\n\r\n".to_vec(), now);
        assert_eq!(reply.status(), 204);
        assert!(!reply.should_close_transport());
        let n = reply.pending_output().len();
        reply.consume_output(n);
        assert!(reply.should_close_transport());
        let refused = accepted(Config::default(), get).accept(&Choices::default(), now);
        assert_eq!(refused.unwrap_err().status(), 426);
    }

    #[test]
    fn invalid_requests_are_refused_with_their_status() {
        let now = Instant::now();
        let mut acceptor = Acceptor::new(Config::default(), now);
        let bad = UPGRADE.replace("Version: 13", "Version: 8");
        let refused = acceptor.receive_data(now, bad.as_bytes()).unwrap_err();
        assert_eq!(refused.error.status(), 426);
        assert_eq!(refused.reply.status(), 426);
        assert!(refused.reply.pending_output().starts_with(b"HTTP/1.1 426"));
        assert!(acceptor
            .receive_data(now, b"more")
            .unwrap_or(None)
            .is_none());
    }

    #[test]
    fn slow_requests_time_out_and_slow_readers_too() {
        let t0 = Instant::now();
        let mut acceptor = Acceptor::new(Config::default(), t0);
        assert!(acceptor.receive_data(t0, b"GET / HT").unwrap().is_none());
        assert_eq!(acceptor.poll_timeout(), Some(t0 + Duration::from_secs(10)));
        assert!(!acceptor.handle_timeout(t0 + Duration::from_secs(9)));
        assert!(acceptor.handle_timeout(t0 + Duration::from_secs(10)));

        let mut reply = accepted(Config::default(), UPGRADE.as_bytes()).reject(403, "no", t0);
        assert_eq!(reply.poll_timeout(), Some(t0 + Duration::from_secs(5)));
        assert!(!reply.handle_timeout(t0 + Duration::from_secs(4)));
        assert!(reply.handle_timeout(t0 + Duration::from_secs(5)));
        assert!(reply.should_close_transport());
    }

    /// The request of `UPGRADE` as another HTTP layer hands it over.
    fn parsed_elsewhere(drop: &str) -> Request {
        let mut headers = crate::handshake::Headers::new();
        for line in UPGRADE.split("\r\n").skip(1).filter(|l| !l.is_empty()) {
            let (name, value) = line.split_once(": ").unwrap();
            if !name.eq_ignore_ascii_case(drop) {
                headers.push(name, value);
            }
        }
        Request::new("GET", "/chat?room=1", headers)
    }

    #[test]
    fn a_request_parsed_elsewhere_gets_the_same_101_as_fields() {
        let now = Instant::now();
        let config = Config {
            deflate: Some(DeflateConfig::default()),
            ..Config::default()
        };
        let choices = Choices {
            subprotocol: Some("chat".into()),
            headers: vec![("Set-Cookie".into(), "a=1".into())],
        };
        let written = accepted(config.clone(), UPGRADE.as_bytes())
            .accept(&choices, now)
            .unwrap();
        let upgrade = Accepted::from_request(parsed_elsewhere(""), config)
            .unwrap()
            .accept_upgrade(&choices, now)
            .unwrap();
        let mut as_bytes = String::from("HTTP/1.1 101 Switching Protocols\r\n");
        for (name, value) in &upgrade.headers {
            as_bytes += &format!("{name}: {value}\r\n");
        }
        as_bytes += "\r\n";
        assert_eq!(as_bytes.as_bytes(), written.pending_output());
        assert!(upgrade.connection.pending_output().is_empty());
        assert!(upgrade.connection.deflate_params().is_some());
        assert!(upgrade.connection.poll_timeout().is_none_or(|t| t > now));
    }

    #[test]
    fn a_bad_request_parsed_elsewhere_is_refused_with_its_status() {
        let missing_key =
            Accepted::from_request(parsed_elsewhere("Sec-WebSocket-Key"), Config::default());
        assert_eq!(missing_key.unwrap_err(), HandshakeError::InvalidKey);
        let plain = Accepted::from_request(parsed_elsewhere("Upgrade"), Config::default());
        assert_eq!(plain.unwrap_err().status(), 426);
        let unoffered = Choices {
            subprotocol: Some("mqtt".into()),
            ..Choices::default()
        };
        let refusal = Accepted::from_request(parsed_elsewhere(""), Config::default())
            .unwrap()
            .accept_upgrade(&unoffered, Instant::now())
            .unwrap_err();
        assert_eq!(refusal.status, 500);
        let injected = Choices {
            headers: vec![("X-A".into(), "1\r\nX-B: 2".into())],
            ..Choices::default()
        };
        let refusal = Accepted::from_request(parsed_elsewhere(""), Config::default())
            .unwrap()
            .accept_upgrade(&injected, Instant::now())
            .unwrap_err();
        assert_eq!(refusal.status, 500);
    }
}
