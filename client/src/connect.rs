//! Opening a client connection on the caller's thread: resolve, connect, TLS handshake
//! (`wss://`), WebSocket handshake, all within one deadline. The upgraded stream is then
//! handed to an event loop, which drives TLS from there on without blocking.

use std::io::{self, Read, Write};
use std::net::{SocketAddr, TcpStream, ToSocketAddrs};
use std::sync::Arc;
use std::time::{Duration, Instant};

use ws6455_mio::rustls::{self, pki_types::ServerName, ClientConfig, ClientConnection};
use ws6455_mio::tls::HandshakeFailure;
use ws6455_mio::ClientStream;

use ws6455_core::connect::{Connected, Connector};
use ws6455_core::handshake::{ClientHandshakeError, ClientRequest};
use ws6455_core::{Config, OsRandom};

use crate::error::ConnectError;
use ws6455_core::url::WsUrl;

/// What the handshake needs besides the URL.
pub(crate) struct Offer<'a> {
    pub(crate) subprotocols: &'a [&'a str],
    pub(crate) headers: &'a [(&'a str, &'a str)],
    /// The protocol configuration (its deflate preferences make the offer).
    pub(crate) config: Arc<Config>,
}

/// A connected, upgraded stream (blocking mode, no timeouts left set) and the open
/// connection the handshake made.
pub(crate) struct Upgraded {
    pub(crate) stream: ClientStream,
    pub(crate) connected: Connected,
}

fn time_left(deadline: Instant, timeout: Duration) -> Result<Duration, ConnectError> {
    deadline
        .checked_duration_since(Instant::now())
        .filter(|left| !left.is_zero())
        .ok_or(ConnectError::Timeout(timeout))
}

fn is_timeout(e: &io::Error) -> bool {
    matches!(
        e.kind(),
        io::ErrorKind::TimedOut | io::ErrorKind::WouldBlock
    )
}

/// Resolves `url`'s host within the deadline. The system resolver has no timeout of its
/// own, so a name lookup runs on a helper thread that is abandoned when time is up.
fn resolve(
    url: &WsUrl,
    deadline: Instant,
    timeout: Duration,
) -> Result<Vec<SocketAddr>, ConnectError> {
    let dns_error = |error| ConnectError::Dns {
        host: url.host.clone(),
        error,
    };
    if let Ok(ip) = url.host.parse::<std::net::IpAddr>() {
        return Ok(vec![SocketAddr::new(ip, url.port)]);
    }
    let (sender, receiver) = std::sync::mpsc::channel();
    let (host, port) = (url.host.clone(), url.port);
    std::thread::Builder::new()
        .name("ws6455-resolve".into())
        .spawn(move || {
            let found = (host.as_str(), port)
                .to_socket_addrs()
                .map(|addrs| addrs.collect::<Vec<_>>());
            let _ = sender.send(found);
        })
        .map_err(ConnectError::Io)?;
    match receiver.recv_timeout(time_left(deadline, timeout)?) {
        Ok(found) => found.map_err(dns_error),
        Err(_) => Err(ConnectError::Timeout(timeout)),
    }
}

/// Resolves `url`'s host and connects to the first address that answers.
fn connect_tcp(
    url: &WsUrl,
    deadline: Instant,
    timeout: Duration,
) -> Result<TcpStream, ConnectError> {
    let addrs = resolve(url, deadline, timeout)?;
    let mut last = None;
    for addr in addrs {
        let left = time_left(deadline, timeout)?;
        match TcpStream::connect_timeout(&addr, left) {
            Ok(socket) => return Ok(socket),
            Err(e) if is_timeout(&e) => return Err(ConnectError::Timeout(timeout)),
            Err(error) => last = Some(ConnectError::Connect { addr, error }),
        }
    }
    Err(last.unwrap_or_else(|| ConnectError::Dns {
        host: url.host.clone(),
        error: io::Error::new(io::ErrorKind::NotFound, "no address"),
    }))
}

/// The socket during the handshakes: every read and write gets the time left until the
/// deadline, so that a server trickling bytes cannot stretch the connect timeout (rustls
/// reads in a loop inside one call, and a socket timeout restarts with every read).
struct DeadlineSocket {
    socket: TcpStream,
    deadline: Instant,
}

impl DeadlineSocket {
    fn time_left(&self) -> io::Result<Duration> {
        self.deadline
            .checked_duration_since(Instant::now())
            .filter(|left| !left.is_zero())
            .ok_or_else(|| io::ErrorKind::TimedOut.into())
    }
}

impl Read for DeadlineSocket {
    fn read(&mut self, buf: &mut [u8]) -> io::Result<usize> {
        self.socket.set_read_timeout(Some(self.time_left()?))?;
        self.socket.read(buf)
    }
}

impl Write for DeadlineSocket {
    fn write(&mut self, buf: &[u8]) -> io::Result<usize> {
        self.socket.set_write_timeout(Some(self.time_left()?))?;
        self.socket.write(buf)
    }

    fn flush(&mut self) -> io::Result<()> {
        self.socket.flush()
    }
}

/// The stream the opening handshake runs over.
enum HandshakeStream {
    Tcp(DeadlineSocket),
    Tls(Box<rustls::StreamOwned<ClientConnection, DeadlineSocket>>),
}

impl HandshakeStream {
    fn stream(&mut self) -> &mut dyn ReadWrite {
        match self {
            HandshakeStream::Tcp(socket) => socket,
            HandshakeStream::Tls(stream) => &mut **stream,
        }
    }

    /// The stream for the event loop, with no timeouts left set on the socket.
    fn into_client_stream(self) -> io::Result<ClientStream> {
        let stream = match self {
            HandshakeStream::Tcp(socket) => ClientStream::Tcp(socket.socket),
            HandshakeStream::Tls(stream) => {
                let rustls::StreamOwned { conn, sock } = *stream;
                ClientStream::Tls(sock.socket, Box::new(conn))
            }
        };
        stream.socket().set_read_timeout(None)?;
        stream.socket().set_write_timeout(None)?;
        Ok(stream)
    }
}

trait ReadWrite: Read + Write {}
impl<T: Read + Write> ReadWrite for T {}

/// The rustls error inside an I/O error from a TLS stream, as a connect error: a
/// certificate problem gets its own variant, so that "untrusted", "expired" and "wrong
/// name" read as such.
fn tls_error(error: io::Error, host: &str, timeout: Duration) -> ConnectError {
    match ws6455_mio::tls::handshake_failure(&error) {
        Some(HandshakeFailure::Certificate(reason)) => ConnectError::Certificate {
            host: host.to_owned(),
            reason,
        },
        Some(HandshakeFailure::Tls(other)) => ConnectError::Tls(other),
        None if is_timeout(&error) => ConnectError::Timeout(timeout),
        None => ConnectError::Io(error),
    }
}

/// Runs the TLS handshake on `socket` to completion (blocking, within its deadline).
fn start_tls(
    socket: DeadlineSocket,
    url: &WsUrl,
    config: Arc<ClientConfig>,
    timeout: Duration,
) -> Result<HandshakeStream, ConnectError> {
    // SNI and certificate verification use the URL's host (a name or an IP literal).
    let name = ServerName::try_from(url.host.clone()).map_err(|_| {
        ConnectError::Tls(rustls::Error::General(format!(
            "{:?} is not a valid TLS server name",
            url.host
        )))
    })?;
    let session = ClientConnection::new(config, name).map_err(ConnectError::Tls)?;
    let mut stream = rustls::StreamOwned::new(session, socket);
    while stream.conn.is_handshaking() {
        match stream.conn.complete_io(&mut stream.sock) {
            Ok(_) => {}
            Err(e) if e.kind() == io::ErrorKind::Interrupted => {}
            Err(e) if e.kind() == io::ErrorKind::UnexpectedEof => {
                return Err(ConnectError::Io(io::Error::new(
                    io::ErrorKind::UnexpectedEof,
                    "the server closed the connection during the TLS handshake",
                )))
            }
            Err(e) => return Err(tls_error(e, &url.host, timeout)),
        }
    }
    Ok(HandshakeStream::Tls(Box::new(stream)))
}

/// Connects to `url` and runs the TLS handshake (for `wss://`, with `tls`) and the
/// opening handshake, all within `timeout`.
pub(crate) fn open(
    url: &WsUrl,
    offer: &Offer<'_>,
    tls: Option<Arc<ClientConfig>>,
    timeout: Duration,
) -> Result<Upgraded, ConnectError> {
    let deadline = Instant::now() + timeout;
    let host = url.host_header();
    let request = ClientRequest {
        host: &host,
        resource: &url.resource,
        subprotocols: offer.subprotocols,
        extensions: &[],
        headers: offer.headers,
    };
    let random = Box::new(OsRandom::new());
    let mut connector = Connector::new(&request, offer.config.clone(), random, Instant::now())
        .map_err(ConnectError::InvalidHeader)?;
    let socket = connect_tcp(url, deadline, timeout)?;
    let _ = socket.set_nodelay(true);
    let socket = DeadlineSocket { socket, deadline };
    let mut stream = if url.secure {
        let config = tls.unwrap_or_else(ws6455_mio::tls::default_client_config);
        start_tls(socket, url, config, timeout)?
    } else {
        HandshakeStream::Tcp(socket)
    };
    let io_error = |e: io::Error| tls_error(e, &url.host, timeout);
    stream
        .stream()
        .write_all(connector.pending_output())
        .map_err(io_error)?;
    let sent = connector.pending_output().len();
    connector.consume_output(sent);
    stream.stream().flush().map_err(io_error)?;
    let mut buf = [0u8; 4096];
    // The connect deadline bounds this loop (every read gets the time left).
    let connected = loop {
        let n = match stream.stream().read(&mut buf) {
            Ok(0) => {
                return Err(ConnectError::Io(io::Error::new(
                    io::ErrorKind::UnexpectedEof,
                    "the server closed the connection before answering the handshake",
                )))
            }
            Ok(n) => n,
            Err(e) if e.kind() == io::ErrorKind::Interrupted => continue,
            Err(e) => return Err(io_error(e)),
        };
        match connector.receive_data(Instant::now(), &buf[..n]) {
            Ok(Some(connected)) => break connected,
            Ok(None) => {}
            Err(ClientHandshakeError::Rejected { status, reason }) => {
                return Err(ConnectError::Refused { status, reason })
            }
            Err(ClientHandshakeError::Extension(e)) => return Err(ConnectError::Extension(e)),
            Err(e) => return Err(ConnectError::Handshake(e)),
        }
    };
    Ok(Upgraded {
        stream: stream.into_client_stream().map_err(ConnectError::Io)?,
        connected,
    })
}
