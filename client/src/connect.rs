//! Opening a client connection on the caller's thread: resolve, connect, handshake, all
//! within one deadline. The upgraded socket is then handed to an event loop.

use std::io::{self, Read, Write};
use std::net::{SocketAddr, TcpStream, ToSocketAddrs};
use std::time::{Duration, Instant};

use ws6455_core::handshake::{ClientHandshake, ClientHandshakeError, ClientRequest, Response};
use ws6455_core::OsRandom;

use crate::error::ConnectError;
use crate::url::WsUrl;

/// The largest handshake response accepted.
const MAX_RESPONSE_SIZE: usize = 16 << 10;

/// What the handshake needs besides the URL.
pub(crate) struct Offer<'a> {
    pub(crate) subprotocols: &'a [&'a str],
    pub(crate) headers: &'a [(&'a str, &'a str)],
}

/// A connected, upgraded socket (blocking mode, no timeouts left set).
pub(crate) struct Upgraded {
    pub(crate) socket: TcpStream,
    pub(crate) response: Response,
    /// Frames the server sent right after its response.
    pub(crate) leftover: Vec<u8>,
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

/// Connects to `url` and runs the opening handshake, all within `timeout`.
pub(crate) fn open(
    url: &WsUrl,
    offer: &Offer<'_>,
    timeout: Duration,
) -> Result<Upgraded, ConnectError> {
    let deadline = Instant::now() + timeout;
    let host = url.host_header();
    let mut request = Vec::new();
    let mut handshake = ClientHandshake::new(
        &ClientRequest {
            host: &host,
            resource: &url.resource,
            subprotocols: offer.subprotocols,
            extensions: &[],
            headers: offer.headers,
        },
        &mut OsRandom::new(),
        MAX_RESPONSE_SIZE,
        &mut request,
    )
    .map_err(|e| ConnectError::InvalidHeader(e.name))?;
    let mut socket = connect_tcp(url, deadline, timeout)?;
    let io_error = |e: io::Error| {
        if is_timeout(&e) {
            ConnectError::Timeout(timeout)
        } else {
            ConnectError::Io(e)
        }
    };
    let _ = socket.set_nodelay(true);
    socket
        .set_write_timeout(Some(time_left(deadline, timeout)?))
        .map_err(io_error)?;
    socket.write_all(&request).map_err(io_error)?;
    let mut buf = [0u8; 4096];
    let response = loop {
        socket
            .set_read_timeout(Some(time_left(deadline, timeout)?))
            .map_err(io_error)?;
        let n = match socket.read(&mut buf) {
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
        match handshake.receive_data(&buf[..n]) {
            Ok(Some(response)) => break response,
            Ok(None) => {}
            Err(ClientHandshakeError::Rejected { status, reason }) => {
                return Err(ConnectError::Refused { status, reason })
            }
            Err(e) => return Err(ConnectError::Handshake(e)),
        }
    };
    socket.set_read_timeout(None).map_err(ConnectError::Io)?;
    socket.set_write_timeout(None).map_err(ConnectError::Io)?;
    Ok(Upgraded {
        socket,
        response,
        leftover: handshake.leftover().to_vec(),
    })
}
