//! Why a client connection could not be opened.

use std::fmt;
use std::io;
use std::net::SocketAddr;
use std::time::Duration;

use ws6455_core::handshake::ClientHandshakeError;

use ws6455_core::url::UrlError;

/// Why [`crate::WebSocket::new`] returned no connection. Each variant says what failed,
/// so that a tool can tell a typo from a refused upgrade.
#[derive(Debug)]
#[non_exhaustive]
pub enum ConnectError {
    /// The URL is malformed or its scheme is not `ws`/`wss`.
    Url(UrlError),
    /// The server's TLS certificate was refused: not signed by a trusted root
    /// (`UnknownIssuer`: add its CA with `ClientOptions::tls`), expired (`Expired`), or
    /// issued for another name (`NotValidForName`).
    Certificate {
        /// The host the certificate was checked against.
        host: String,
        /// What is wrong with it.
        reason: ws6455_mio::rustls::CertificateError,
    },
    /// The TLS handshake failed otherwise (no common protocol version or cipher suite, an
    /// alert from the server, a host that is not a valid TLS server name...).
    Tls(ws6455_mio::rustls::Error),
    /// The host name did not resolve.
    Dns {
        /// The name looked up.
        host: String,
        /// The resolver's error.
        error: io::Error,
    },
    /// No address of the host accepted the TCP connection (refused, unreachable...).
    Connect {
        /// The last address tried.
        addr: SocketAddr,
        /// Its error.
        error: io::Error,
    },
    /// Connecting and the opening handshake took longer than the connect timeout.
    Timeout(Duration),
    /// The server answered the upgrade with another status than 101.
    Refused {
        /// The HTTP status code (403, 404, 426...).
        status: u16,
        /// The reason phrase of its status line.
        reason: String,
    },
    /// The server's answer broke the handshake rules (accept key, upgrade headers,
    /// unoffered subprotocol...).
    Handshake(ClientHandshakeError),
    /// The server's permessage-deflate answer breaks RFC 7692 (unknown parameter, a window
    /// larger than offered...).
    Extension(ws6455_core::deflate::DeflateResponseError),
    /// An extra header cannot be sent: it would corrupt the request (a newline in a
    /// value, a bad name) or is one the handshake writes itself (Host, Upgrade,
    /// Connection, Sec-WebSocket-*). Nothing was sent.
    InvalidHeader(ws6455_core::handshake::InvalidHeader),
    /// The connection failed during the handshake (reset, closed early...).
    Io(io::Error),
    /// The event loop that was to drive the connection has stopped.
    LoopGone,
}

impl ConnectError {
    /// The HTTP status of a refused upgrade.
    pub fn status(&self) -> Option<u16> {
        match self {
            ConnectError::Refused { status, .. } => Some(*status),
            _ => None,
        }
    }
}

impl fmt::Display for ConnectError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            ConnectError::Url(e) => e.fmt(f),
            ConnectError::Certificate { host, reason } => {
                let why = ws6455_mio::tls::certificate_problem(reason);
                write!(f, "the TLS certificate of {host:?} {why}")
            }
            ConnectError::Tls(e) => write!(f, "TLS handshake failed: {e}"),
            ConnectError::Dns { host, error } => write!(f, "cannot resolve {host:?}: {error}"),
            ConnectError::Connect { addr, error } => write!(f, "cannot connect to {addr}: {error}"),
            ConnectError::Timeout(t) => write!(f, "no WebSocket connection within {t:?}"),
            ConnectError::Refused { status, reason } => {
                write!(f, "server refused the upgrade: {status} {reason}")
            }
            ConnectError::Handshake(e) => write!(f, "invalid handshake response: {e}"),
            ConnectError::InvalidHeader(e) => e.fmt(f),
            ConnectError::Io(e) => write!(f, "connection failed during the handshake: {e}"),
            ConnectError::Extension(e) => write!(f, "invalid extension answer: {e}"),
            ConnectError::LoopGone => f.write_str("the client event loop has stopped"),
        }
    }
}

impl std::error::Error for ConnectError {
    fn source(&self) -> Option<&(dyn std::error::Error + 'static)> {
        match self {
            ConnectError::Url(e) => Some(e),
            ConnectError::Dns { error, .. } | ConnectError::Connect { error, .. } => Some(error),
            ConnectError::Handshake(e) => Some(e),
            ConnectError::Tls(e) => Some(e),
            ConnectError::Extension(e) => Some(e),
            ConnectError::Io(e) => Some(e),
            _ => None,
        }
    }
}

impl From<UrlError> for ConnectError {
    fn from(e: UrlError) -> Self {
        ConnectError::Url(e)
    }
}
