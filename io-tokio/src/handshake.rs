//! The opening handshakes over a tokio transport: the core's acceptor and connector do
//! the work; this reads and writes their bytes within their deadlines.

use std::fmt;
use std::io;
use std::sync::Arc;
use std::time::Instant;

use tokio::io::{AsyncRead, AsyncReadExt, AsyncWrite, AsyncWriteExt};
use ws6455_core::accept::{Acceptor, Choices, Reply};
use ws6455_core::connect::{Connected, Connector};
use ws6455_core::handshake::{
    ClientHandshakeError, ClientRequest, HandshakeError, Request, Response,
};
use ws6455_core::{Config, OsRandom};

use crate::stream::{now, WebSocketStream};
use crate::tls::{start_tls, MaybeTlsStream};

/// Options of a tokio WebSocket, either side.
#[derive(Clone, Debug)]
pub struct Options {
    /// The protocol: sizes, timeouts (handshake, close, idle, keepalive ping and pong
    /// deadline), auto-pong, permessage-deflate.
    pub protocol: Arc<Config>,
    /// The sink is not ready while this many bytes wait to be written (default 16 MiB).
    pub max_buffered: usize,
    /// TLS for `wss://` in [`connect`]: which roots to trust. `None` (the default)
    /// verifies servers against Mozilla's roots; for a private CA or a self-signed
    /// certificate use [`ws6455_tls::client_config_with_extra_roots`].
    pub tls: Option<Arc<ws6455_tls::rustls::ClientConfig>>,
}

impl Default for Options {
    fn default() -> Self {
        Options {
            protocol: Arc::new(Config::default()),
            max_buffered: 16 << 20,
            tls: None,
        }
    }
}

/// What the server application decides about a request.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Decision {
    /// Upgrade, with this subprotocol and these extra headers (`Choices::default()`:
    /// none).
    Accept(Choices),
    /// Refuse with this HTTP status and reason (e.g. 403, 404).
    Reject {
        /// The HTTP status.
        status: u16,
        /// The plain-text body.
        reason: String,
    },
}

/// Why a server handshake did not open a connection. The client got an HTTP answer
/// saying so, except on `Io` and `Timeout`.
#[derive(Debug)]
#[non_exhaustive]
pub enum AcceptError {
    /// The request was invalid (400, 405, 426, 431...).
    BadRequest(HandshakeError),
    /// A plain HTTP request: answered 426 Upgrade Required.
    NotWebSocket(Box<Request>),
    /// The application refused it (its status), or its choices would break the
    /// handshake (500).
    Refused(u16),
    /// No complete request within the handshake timeout.
    Timeout,
    /// The transport failed or closed.
    Io(io::Error),
}

impl fmt::Display for AcceptError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            AcceptError::BadRequest(e) => write!(f, "invalid handshake request: {e}"),
            AcceptError::NotWebSocket(r) => write!(f, "plain HTTP request for {}", r.url()),
            AcceptError::Refused(status) => write!(f, "refused with HTTP {status}"),
            AcceptError::Timeout => f.write_str("no handshake request in time"),
            AcceptError::Io(e) => write!(f, "transport error: {e}"),
        }
    }
}

impl std::error::Error for AcceptError {}

/// Why a client handshake failed.
#[derive(Debug)]
#[non_exhaustive]
pub enum ConnectError {
    /// The URL is not a valid `ws://` URL.
    Url(ws6455_core::url::UrlError),
    /// An extra header cannot be sent: it would break the request (a newline, a bad
    /// name) or is one the handshake writes itself (Host, Upgrade, Sec-WebSocket-*).
    InvalidHeader(ws6455_core::handshake::InvalidHeader),
    /// The server refused the upgrade with this HTTP status.
    Refused {
        /// The status code.
        status: u16,
        /// The reason phrase.
        reason: String,
    },
    /// The server's answer does not complete the handshake.
    Handshake(ClientHandshakeError),
    /// The server's certificate is not acceptable for `host`: untrusted, expired, for
    /// another name...
    Certificate {
        /// The host the certificate was checked against.
        host: String,
        /// What is wrong with it.
        reason: ws6455_tls::rustls::CertificateError,
    },
    /// The TLS handshake failed otherwise (no common version or cipher, an alert).
    Tls(ws6455_tls::rustls::Error),
    /// No answer within the handshake timeout.
    Timeout,
    /// The transport failed or closed.
    Io(io::Error),
}

impl fmt::Display for ConnectError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            ConnectError::Url(e) => e.fmt(f),
            ConnectError::InvalidHeader(e) => e.fmt(f),
            ConnectError::Refused { status, reason } => {
                write!(f, "the server refused the upgrade: {status} {reason}")
            }
            ConnectError::Handshake(e) => e.fmt(f),
            ConnectError::Certificate { host, reason } => {
                let why = ws6455_tls::certificate_problem(reason);
                write!(f, "the TLS certificate of {host:?} {why}")
            }
            ConnectError::Tls(e) => write!(f, "TLS handshake failed: {e}"),
            ConnectError::Timeout => f.write_str("no handshake response in time"),
            ConnectError::Io(e) => write!(f, "transport error: {e}"),
        }
    }
}

impl std::error::Error for ConnectError {}

/// Why a handshake read got no bytes.
enum ReadEnd {
    /// The deadline passed.
    TimedOut,
    /// The transport failed or ended (an end is `UnexpectedEof`).
    Io(io::Error),
}

impl From<ReadEnd> for AcceptError {
    fn from(end: ReadEnd) -> Self {
        match end {
            ReadEnd::TimedOut => AcceptError::Timeout,
            ReadEnd::Io(e) => AcceptError::Io(e),
        }
    }
}

impl From<ReadEnd> for ConnectError {
    fn from(end: ReadEnd) -> Self {
        match end {
            ReadEnd::TimedOut => ConnectError::Timeout,
            ReadEnd::Io(e) => ConnectError::Io(e),
        }
    }
}

/// Reads some bytes within `deadline`; the end of the stream is an error here (the
/// handshake is not done).
async fn read_within<S: AsyncRead + Unpin>(
    io: &mut S,
    buf: &mut [u8],
    deadline: Option<Instant>,
) -> Result<usize, ReadEnd> {
    let read = match deadline {
        None => io.read(buf).await,
        Some(at) => {
            let at = tokio::time::Instant::from_std(at);
            match tokio::time::timeout_at(at, io.read(buf)).await {
                Ok(read) => read,
                Err(_) => return Err(ReadEnd::TimedOut),
            }
        }
    };
    match read {
        Ok(0) => Err(ReadEnd::Io(io::ErrorKind::UnexpectedEof.into())),
        Ok(n) => Ok(n),
        Err(e) => Err(ReadEnd::Io(e)),
    }
}

/// Writes an HTTP answer within its deadline, then shuts the transport down.
async fn send_reply<S: AsyncWrite + Unpin>(io: &mut S, reply: Reply) {
    let write = async {
        io.write_all(reply.pending_output()).await?;
        io.shutdown().await
    };
    match reply.poll_timeout() {
        Some(at) => {
            let _ = tokio::time::timeout_at(tokio::time::Instant::from_std(at), write).await;
        }
        None => {
            let _ = write.await;
        }
    }
}

/// Accepts a WebSocket on `io` (a TCP stream, a TLS stream...): reads the request, lets
/// `decide` look at it (path, query, headers, offered subprotocols) and upgrades or
/// refuses with an HTTP status. Invalid requests are answered with their status.
pub async fn accept_with<S, F>(
    io: S,
    options: &Options,
    decide: F,
) -> Result<(WebSocketStream<S>, Request), AcceptError>
where
    S: AsyncRead + AsyncWrite + Unpin,
    F: FnOnce(&Request) -> Decision,
{
    // The handshake's state lives on the heap while it runs, then is freed: a task that
    // serves one connection is not sized for it for the connection's whole life
    // (measured: 3.1 -> 1.6 KiB per idle connection of the echo server).
    Box::pin(accept_inner(io, options, decide)).await
}

async fn accept_inner<S, F>(
    mut io: S,
    options: &Options,
    decide: F,
) -> Result<(WebSocketStream<S>, Request), AcceptError>
where
    S: AsyncRead + AsyncWrite + Unpin,
    F: FnOnce(&Request) -> Decision,
{
    let mut acceptor = Acceptor::new(options.protocol.clone(), now());
    let mut buf = vec![0u8; 4096];
    let accepted = loop {
        let n = read_within(&mut io, &mut buf, acceptor.poll_timeout()).await?;
        match acceptor.receive_data(now(), &buf[..n]) {
            Ok(Some(accepted)) => break accepted,
            Ok(None) => {}
            Err(refused) => {
                send_reply(&mut io, refused.reply).await;
                return Err(AcceptError::BadRequest(refused.error));
            }
        }
    };
    let request = accepted.request().clone();
    let now = now();
    if !accepted.is_websocket() {
        let reply = accepted.reject(426, "this endpoint speaks WebSocket: upgrade required", now);
        send_reply(&mut io, reply).await;
        return Err(AcceptError::NotWebSocket(Box::new(request)));
    }
    let choices = match decide(&request) {
        Decision::Accept(choices) => choices,
        Decision::Reject { status, reason } => {
            send_reply(&mut io, accepted.reject(status, &reason, now)).await;
            return Err(AcceptError::Refused(status));
        }
    };
    match accepted.accept(&choices, now) {
        Ok(conn) => {
            let mut stream = WebSocketStream::from_connection(io, conn, options.max_buffered);
            // The 101 goes out now: once `accept` returns, the client is upgraded.
            std::future::poll_fn(|cx| stream.poll_write_out(cx))
                .await
                .map_err(AcceptError::Io)?;
            Ok((stream, request))
        }
        Err(reply) => {
            let status = reply.status();
            send_reply(&mut io, reply).await;
            Err(AcceptError::Refused(status))
        }
    }
}

/// Accepts every valid WebSocket request on `io`, with no subprotocol.
pub async fn accept<S>(io: S, options: &Options) -> Result<WebSocketStream<S>, AcceptError>
where
    S: AsyncRead + AsyncWrite + Unpin,
{
    accept_with(io, options, |_| Decision::Accept(Choices::default()))
        .await
        .map(|(stream, _)| stream)
}

/// Runs the client handshake over `io`, a stream the caller opened (TCP, TLS, a pipe):
/// `request` names the host, resource, subprotocols and extra headers; deflate is
/// offered when the options ask for it.
pub async fn client<S>(
    io: S,
    request: &ClientRequest<'_>,
    options: &Options,
) -> Result<(WebSocketStream<S>, Response), ConnectError>
where
    S: AsyncRead + AsyncWrite + Unpin,
{
    // On the heap while it runs, as for `accept_with`.
    Box::pin(client_inner(io, request, options)).await
}

async fn client_inner<S>(
    mut io: S,
    request: &ClientRequest<'_>,
    options: &Options,
) -> Result<(WebSocketStream<S>, Response), ConnectError>
where
    S: AsyncRead + AsyncWrite + Unpin,
{
    let random = Box::new(OsRandom::new());
    let mut connector = Connector::new(request, options.protocol.clone(), random, now())
        .map_err(ConnectError::InvalidHeader)?;
    io.write_all(connector.pending_output())
        .await
        .map_err(ConnectError::Io)?;
    io.flush().await.map_err(ConnectError::Io)?;
    let sent = connector.pending_output().len();
    connector.consume_output(sent);
    let mut buf = vec![0u8; 4096];
    let Connected {
        connection,
        response,
    } = loop {
        let n = read_within(&mut io, &mut buf, connector.poll_timeout()).await?;
        match connector.receive_data(now(), &buf[..n]) {
            Ok(Some(connected)) => break connected,
            Ok(None) => {}
            Err(ClientHandshakeError::Rejected { status, reason }) => {
                return Err(ConnectError::Refused { status, reason })
            }
            Err(e) => return Err(ConnectError::Handshake(e)),
        }
    };
    let stream = WebSocketStream::from_connection(io, connection, options.max_buffered);
    Ok((stream, response))
}

/// Connects to a `ws://` or `wss://` URL: TCP, the TLS handshake for `wss://` (SNI and
/// certificate check against [`Options::tls`]), then the WebSocket handshake, all
/// within the handshake timeout.
pub async fn connect(
    url: &str,
    options: &Options,
) -> Result<(WebSocketStream<MaybeTlsStream>, Response), ConnectError> {
    let url = ws6455_core::url::WsUrl::parse(url).map_err(ConnectError::Url)?;
    let deadline = tokio::time::Instant::now() + options.protocol.handshake_timeout;
    let open = async {
        let tcp = tokio::net::TcpStream::connect((url.host.as_str(), url.port))
            .await
            .map_err(ConnectError::Io)?;
        tcp.set_nodelay(true).map_err(ConnectError::Io)?;
        let io = if url.secure {
            start_tls(tcp, &url.host, options.tls.clone()).await?
        } else {
            MaybeTlsStream::Plain(tcp)
        };
        let host = url.host_header();
        let request = ClientRequest {
            host: &host,
            resource: &url.resource,
            ..ClientRequest::default()
        };
        client(io, &request, options).await
    };
    tokio::time::timeout_at(deadline, open)
        .await
        .unwrap_or(Err(ConnectError::Timeout))
}
