//! The server over TLS on 127.0.0.1, driven by an independent WebSocket client
//! (tungstenite over a blocking rustls stream) and by raw TCP for clients that stall or
//! do not speak TLS at all.

use std::io::{Read, Write};
use std::net::TcpStream;
use std::sync::Arc;
use std::time::{Duration, Instant};

use tungstenite::Message;
use ws6455_server::rustls::{self, pki_types::ServerName};
use ws6455_server::*;

#[path = "support/pki.rs"]
mod pki;

const WAIT: Duration = Duration::from_secs(5);

struct Echo;

impl ConnectionHandler for Echo {
    fn on_message(&self, ws: &WebSocketConnection, event: MessageEvent) {
        ws.send(event.data).unwrap();
    }
}

/// Echoes; records the server's errors.
#[derive(Default)]
struct EchoServer {
    errors: std::sync::Mutex<Vec<String>>,
}

/// The handler given to the server: a handle on the shared [`EchoServer`].
struct EchoServerRef(Arc<EchoServer>);

impl ServerHandler for EchoServerRef {
    fn on_error(&self, _: &WebSocketServer, event: ErrorEvent) {
        let mut errors = self.0.errors.lock().unwrap();
        errors.extend(event.errors.iter().map(|e| e.to_string()));
    }

    fn on_connection(
        &self,
        _: &WebSocketServer,
        _: &ConnectionEvent,
    ) -> Option<Arc<dyn ConnectionHandler>> {
        Some(Arc::new(Echo))
    }

    fn on_http_request(&self, _: &WebSocketServer, request: &Request) -> Option<HttpResponse> {
        (request.path() == "/health").then(|| HttpResponse::ok("text/plain", "ok\n"))
    }
}

/// A TLS echo server on a free port of 127.0.0.1 with a certificate for `localhost` and
/// 127.0.0.1 signed by a fresh CA; returns the server, that CA and the server's errors.
fn start(handshake_timeout: Duration) -> (WebSocketServer, pki::Ca, Arc<EchoServer>) {
    let ca = pki::Ca::new();
    let leaf = ca.issue(&["localhost", "127.0.0.1"], false);
    let mut options = ServerOptions {
        listen: "127.0.0.1:0".parse().unwrap(),
        tls: Some(leaf.server_config()),
        ..ServerOptions::default()
    };
    options.limits.protocol.handshake_timeout = handshake_timeout;
    let record = Arc::new(EchoServer::default());
    let server = WebSocketServer::new(EchoServerRef(record.clone()), options).unwrap();
    (server, ca, record)
}

type TlsStream = rustls::StreamOwned<rustls::ClientConnection, TcpStream>;

/// A blocking TLS connection to the server, trusting `ca`, with SNI `name`.
fn tls_connect(server: &WebSocketServer, ca: &pki::Ca, name: &str) -> TlsStream {
    let socket = TcpStream::connect(server.local_addr()).unwrap();
    socket.set_read_timeout(Some(WAIT)).unwrap();
    let name = ServerName::try_from(name.to_owned()).unwrap();
    let session = rustls::ClientConnection::new(ca.client_config(), name).unwrap();
    rustls::StreamOwned::new(session, socket)
}

#[test]
fn independent_client_echoes_over_tls() {
    let (server, ca, _) = start(Duration::from_secs(10));
    let url = format!("wss://localhost:{}/", server.local_addr().port());
    let (mut ws, response) = tungstenite::client(url, tls_connect(&server, &ca, "localhost"))
        .expect("TLS + WebSocket handshake");
    assert_eq!(response.status(), 101);
    assert_eq!(
        ws.get_ref().conn.alpn_protocol(),
        Some(&b"http/1.1"[..]),
        "the server agrees on HTTP/1.1 by ALPN"
    );
    // Sizes around the TLS record size (16 KiB) and far beyond it.
    for size in [0usize, 1, 125, 16 << 10, (16 << 10) + 1, 1 << 20] {
        let payload: Vec<u8> = (0..size).map(|i| (i * 7 % 251) as u8).collect();
        ws.send(Message::binary(payload.clone())).unwrap();
        match ws.read().unwrap() {
            Message::Binary(echo) => assert!(echo[..] == payload[..], "size {size}"),
            other => panic!("size {size}: {other:?}"),
        }
    }
    ws.send(Message::text("héllo wss")).unwrap();
    assert_eq!(ws.read().unwrap(), Message::text("héllo wss"));
    ws.close(None).unwrap();
    let deadline = Instant::now() + WAIT;
    loop {
        match ws.read() {
            Ok(Message::Close(_)) | Ok(_) => {}
            Err(tungstenite::Error::ConnectionClosed) => break,
            Err(e) => panic!("after close: {e}"),
        }
        assert!(Instant::now() < deadline);
    }
    // The server ended the TLS session with close_notify (rustls reads a clean end as
    // Ok(0); a bare FIN would be an UnexpectedEof error).
    let mut rest = [0u8; 16];
    assert_eq!(ws.get_mut().read(&mut rest).unwrap(), 0);
    server.terminate();
}

#[test]
fn plain_http_answers_are_served_over_tls_too() {
    let (server, ca, _) = start(Duration::from_secs(10));
    let mut stream = tls_connect(&server, &ca, "127.0.0.1");
    stream
        .write_all(b"GET /health HTTP/1.1\r\nHost: 127.0.0.1\r\n\r\n")
        .unwrap();
    let mut answer = Vec::new();
    // The server closes after its answer, with close_notify: a clean end of stream.
    stream.read_to_end(&mut answer).unwrap();
    let answer = String::from_utf8(answer).unwrap();
    assert!(answer.starts_with("HTTP/1.1 200"), "{answer}");
    assert!(answer.ends_with("ok\n"), "{answer}");
    server.terminate();
}

/// Reads from `socket` until the server closes it; returns the time it took and the
/// bytes received.
fn read_until_closed(mut socket: TcpStream) -> (Duration, Vec<u8>) {
    let started = Instant::now();
    socket.set_read_timeout(Some(WAIT)).unwrap();
    let mut received = Vec::new();
    let mut buf = [0u8; 4096];
    loop {
        match socket.read(&mut buf) {
            Ok(0) => break,
            Ok(n) => received.extend_from_slice(&buf[..n]),
            Err(e) if e.kind() == std::io::ErrorKind::ConnectionReset => break,
            Err(e) => panic!("the server kept the connection open: {e}"),
        }
    }
    (started.elapsed(), received)
}

#[test]
fn a_client_stalling_in_the_tls_handshake_is_cut_off() {
    let (server, ca, _) = start(Duration::from_millis(300));
    // Silent after connecting.
    let silent = TcpStream::connect(server.local_addr()).unwrap();
    // Half a ClientHello: a real one, cut short.
    let mut half = TcpStream::connect(server.local_addr()).unwrap();
    let name = ServerName::try_from("localhost").unwrap();
    let mut session = rustls::ClientConnection::new(ca.client_config(), name).unwrap();
    let mut hello = Vec::new();
    session.write_tls(&mut hello).unwrap();
    half.write_all(&hello[..hello.len() / 2]).unwrap();
    for socket in [silent, half] {
        let (took, _) = read_until_closed(socket);
        assert!(took < Duration::from_secs(3), "cut off after {took:?}");
    }
    // The server itself is fine.
    let (mut ws, _) = tungstenite::client(
        format!("wss://localhost:{}/", server.local_addr().port()),
        tls_connect(&server, &ca, "localhost"),
    )
    .unwrap();
    ws.send(Message::text("still here")).unwrap();
    assert_eq!(ws.read().unwrap(), Message::text("still here"));
    server.terminate();
}

#[test]
fn plaintext_on_the_tls_port_is_refused_at_once() {
    let (server, _ca, record) = start(Duration::from_secs(10));
    let mut socket = TcpStream::connect(server.local_addr()).unwrap();
    socket
        .write_all(b"GET / HTTP/1.1\r\nHost: h\r\nUpgrade: websocket\r\n\r\n")
        .unwrap();
    let (took, received) = read_until_closed(socket);
    // Not left to the 10 s handshake timeout; a TLS alert record (type 21) says why.
    assert!(took < Duration::from_secs(3), "closed after {took:?}");
    assert_eq!(received.first(), Some(&21), "{received:?}");
    // The server's on_error hears of it with RFC 6455's code for a failed TLS handshake.
    let errors = record.errors.lock().unwrap().clone();
    assert_eq!(errors.len(), 1, "{errors:?}");
    assert!(errors[0].starts_with("[tls] 127.0.0.1:"), "{errors:?}");
    assert!(errors[0].ends_with("(1015)"), "{errors:?}");
    server.terminate();
}

#[test]
fn close_notify_from_a_client_that_keeps_tcp_open_ends_the_connection() {
    // Regression: a close_notify that arrived with no application bytes before it was
    // swallowed, and the connection lingered until the handshake timeout.
    let (server, ca, _) = start(Duration::from_secs(10));
    let mut stream = tls_connect(&server, &ca, "localhost");
    while stream.conn.is_handshaking() {
        stream.conn.complete_io(&mut stream.sock).unwrap();
    }
    stream.conn.send_close_notify();
    stream.conn.complete_io(&mut stream.sock).unwrap();
    let started = Instant::now();
    let mut rest = Vec::new();
    // The server answers with its own close_notify and closes: a clean end of stream.
    stream.read_to_end(&mut rest).unwrap();
    assert!(rest.is_empty(), "{rest:?}");
    assert!(
        started.elapsed() < Duration::from_secs(3),
        "{:?}",
        started.elapsed()
    );
    server.terminate();
}
