//! The application side of a loop: what it is told, and what it decides.

use std::fmt;
use std::net::SocketAddr;
use std::sync::Arc;

use ws6455_core::accept::Choices;
use ws6455_core::handshake::{HandshakeError, Request};
use ws6455_core::{CloseCode, CloseStatus, Message, ProtocolError};

use crate::handle::ConnShared;

/// What to do with a complete handshake request.
#[derive(Debug)]
pub enum Decision<C> {
    /// Upgrade: answer 101 (with the chosen subprotocol and extra headers) and open the
    /// connection with `conn` as its application state.
    Accept {
        /// The application's per-connection state.
        conn: C,
        /// The subprotocol and extra response headers.
        choices: Choices,
    },
    /// Answer with these bytes (a complete HTTP response) and close.
    Respond(Vec<u8>),
}

/// Why a connection failed. Reported once, through [`ConnHandler::on_error`], before
/// [`ConnHandler::on_close`].
#[derive(Debug, Clone, PartialEq, Eq)]
#[non_exhaustive]
pub enum ConnError {
    /// The peer broke the protocol; the close code says how.
    Protocol(ProtocolError),
    /// A message could not be converted to the connection's data type (1007).
    InvalidData(String),
    /// An application callback panicked (1011).
    HandlerPanic(String),
    /// The transport failed (reset, broken pipe...).
    Io(String),
    /// A timer expired: closing handshake, pong, or handshake.
    Timeout(&'static str),
}

impl ConnError {
    /// The close code sent to the peer for this error, if one is sent at all. The loop's
    /// only mapping from errors to codes; protocol errors defer to the core's.
    pub fn close_code(&self) -> Option<CloseCode> {
        match self {
            ConnError::Protocol(e) => Some(e.close_code()),
            ConnError::InvalidData(_) => Some(CloseCode::INVALID_PAYLOAD),
            ConnError::HandlerPanic(_) => Some(CloseCode::INTERNAL_ERROR),
            ConnError::Io(_) | ConnError::Timeout(_) => None,
        }
    }

    /// A stable numeric code for error reports: the close code, or 1006 when none is sent.
    pub fn code(&self) -> u16 {
        self.close_code().unwrap_or(CloseCode::ABNORMAL).0
    }
}

impl fmt::Display for ConnError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            ConnError::Protocol(e) => write!(f, "protocol error: {e}"),
            ConnError::InvalidData(why) => write!(f, "invalid message data: {why}"),
            ConnError::HandlerPanic(why) => write!(f, "handler panicked: {why}"),
            ConnError::Io(why) => write!(f, "transport error: {why}"),
            ConnError::Timeout(what) => write!(f, "{what} timed out"),
        }
    }
}

impl std::error::Error for ConnError {}

/// Why the listener did not take a connection in as usual.
#[derive(Debug)]
#[non_exhaustive]
pub enum AcceptProblem<'a> {
    /// `accept` failed for want of file descriptors (EMFILE, ENFILE) or memory.
    /// Accepting pauses for 100 ms and resumes; waiting connections stay in the
    /// backlog. Reported once per pause.
    Failed(&'a std::io::Error),
    /// The loop holds [`LoopConfig::max_connections`](crate::LoopConfig::max_connections)
    /// connections: this one is answered 503.
    AtLimit {
        /// Who connected.
        remote: SocketAddr,
        /// The limit.
        limit: usize,
    },
}

/// The application glue of a loop, owned by the loop's thread: what to do with requests,
/// and the per-connection state ([`ConnHandler`]) each accepted connection gets.
pub trait Handler: Send + 'static {
    /// Per-connection application state, which receives that connection's callbacks.
    type Conn: ConnHandler;

    /// A valid WebSocket handshake request arrived: accept it or answer with HTTP. The
    /// default refuses (403): right for a loop that only drives client connections.
    fn on_request(
        &mut self,
        request: &Request,
        remote: SocketAddr,
        shared: &Arc<ConnShared>,
    ) -> Decision<Self::Conn> {
        let _ = (request, remote, shared);
        Decision::Respond(
            ws6455_core::handshake::reject_response(403, "this loop accepts no connections", &[])
                .unwrap_or_default(),
        )
    }

    /// A plain HTTP request (no upgrade) arrived: return the whole HTTP response.
    /// The default answers 426 Upgrade Required.
    fn on_http_request(&mut self, request: &Request, remote: SocketAddr) -> Vec<u8> {
        let _ = (request, remote);
        HandshakeError::NotUpgrade.response()
    }

    /// A handshake was refused because the request was invalid; the loop answers with
    /// the error's status. For logging.
    fn on_bad_request(&mut self, error: &HandshakeError, remote: SocketAddr) {
        let _ = (error, remote);
    }

    /// A TLS handshake with `remote` failed (no common version or cipher, a certificate
    /// the client refused, plaintext on a TLS port...); the connection is closed. For
    /// logging: nothing reached the WebSocket layer.
    fn on_tls_error(&mut self, error: &rustls::Error, remote: SocketAddr) {
        let _ = (error, remote);
    }

    /// The listener could not take a connection in. For logging and alerts: the loop
    /// already did what it does (paused accepting for a moment, or answered 503).
    fn on_accept_problem(&mut self, problem: AcceptProblem<'_>) {
        let _ = problem;
    }

    /// The loop has stopped (after every connection's `on_close`).
    fn on_loop_exit(&mut self) {}
}

/// The callbacks of one connection, on its loop's thread.
///
/// The loop guarantees the order: [`on_open`](Self::on_open) once, then
/// [`on_message`](Self::on_message) any number of times, then at most one
/// [`on_error`](Self::on_error), then [`on_close`](Self::on_close) exactly once. A panic
/// in any callback is caught: it fails that connection (1011), nothing else.
pub trait ConnHandler: Send + 'static {
    /// The connection is open.
    fn on_open(&mut self);

    /// A whole message arrived (its text validated by the core: take the `String` as it
    /// is). Returning an error fails the connection with the error's close code (e.g.
    /// [`ConnError::InvalidData`]: 1007).
    fn on_message(&mut self, message: Message) -> Result<(), ConnError>;

    /// The connection failed; at most once, before `on_close`.
    fn on_error(&mut self, error: &ConnError);

    /// The connection is over; exactly once, last.
    fn on_close(self, status: &CloseStatus);
}
