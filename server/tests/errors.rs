//! The server's `on_error` hears of every server-level failure: a panic in each of the
//! server handler's callbacks (500 to the client where there is one, the loop going on),
//! besides the refused handshakes, TLS failures and listener problems tested elsewhere.

use std::io::{Read, Write};
use std::net::TcpStream;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use ws6455_server::*;

const WAIT: Duration = Duration::from_secs(5);

struct Quiet;
impl ConnectionHandler for Quiet {
    fn on_message(&self, ws: &WebSocketConnection, event: MessageEvent) {
        let _ = ws.send(event.data);
    }
}

/// What `on_error` saw: (code, component, message) of each error.
type Seen = Arc<Mutex<Vec<(u16, &'static str, String)>>>;

/// Panics in the callback named by the request (`?panic=on_connection`, a subprotocol
/// offer of `panic`, a GET of `/panic`), or in `on_open` / `on_terminate` when built so.
#[derive(Default)]
struct Fragile {
    errors: Seen,
    panic_on_open: bool,
    panic_on_terminate: bool,
}

impl ServerHandler for Fragile {
    fn on_connection(
        &self,
        _: &WebSocketServer,
        event: &ConnectionEvent,
    ) -> Option<Arc<dyn ConnectionHandler>> {
        if event.request.query_param("panic").is_some() {
            panic!("on_connection asked to panic");
        }
        Some(Arc::new(Quiet))
    }

    fn select_subprotocol(&self, _: &WebSocketServer, offered: &[&str]) -> Option<String> {
        if offered.contains(&"panic") {
            panic!("select_subprotocol asked to panic");
        }
        None
    }

    fn on_http_request(&self, _: &WebSocketServer, request: &Request) -> Option<HttpResponse> {
        if request.path() == "/panic" {
            panic!("on_http_request asked to panic");
        }
        None
    }

    fn on_open(&self, _: &WebSocketServer) {
        if self.panic_on_open {
            panic!("on_open asked to panic");
        }
    }

    fn on_terminate(&self, _: &WebSocketServer) {
        if self.panic_on_terminate {
            panic!("on_terminate asked to panic");
        }
    }

    fn on_error(&self, _: &WebSocketServer, event: ErrorEvent) {
        let mut errors = self.errors.lock().unwrap();
        for e in event.errors {
            errors.push((e.code, e.component, e.message));
        }
    }
}

fn start(handler: Fragile) -> WebSocketServer {
    let options = ServerOptions {
        listen: "127.0.0.1:0".parse().unwrap(),
        ..ServerOptions::default()
    };
    WebSocketServer::new(handler, options).unwrap()
}

/// Sends a raw request and returns the status line of the answer.
fn status_line(server: &WebSocketServer, request: &str) -> String {
    let mut stream = TcpStream::connect(server.local_addr()).unwrap();
    stream.set_read_timeout(Some(WAIT)).unwrap();
    stream.write_all(request.as_bytes()).unwrap();
    let mut line = Vec::new();
    let mut byte = [0u8];
    while !line.ends_with(b"\r\n") && stream.read_exact(&mut byte).is_ok() {
        line.push(byte[0]);
    }
    String::from_utf8_lossy(&line).trim_end().to_owned()
}

fn upgrade(target: &str, extra: &str) -> String {
    format!(
        "GET {target} HTTP/1.1\r\nHost: h\r\nUpgrade: websocket\r\nConnection: Upgrade\r\n\
         Sec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==\r\nSec-WebSocket-Version: 13\r\n{extra}\r\n"
    )
}

fn wait_errors(errors: &Seen, count: usize) -> Vec<String> {
    let deadline = Instant::now() + WAIT;
    loop {
        let seen = errors.lock().unwrap().clone();
        if seen.len() >= count {
            return seen
                .into_iter()
                .map(|(code, component, message)| format!("{code} {component} {message}"))
                .collect();
        }
        assert!(Instant::now() < deadline, "only {seen:?}");
        std::thread::sleep(Duration::from_millis(5));
    }
}

#[test]
fn a_panic_in_a_request_callback_is_a_500_and_an_error_and_the_server_goes_on() {
    let handler = Fragile::default();
    let errors = handler.errors.clone();
    let server = start(handler);
    assert_eq!(
        status_line(&server, &upgrade("/?panic=1", "")),
        "HTTP/1.1 500 Internal Server Error"
    );
    assert_eq!(
        status_line(&server, &upgrade("/", "Sec-WebSocket-Protocol: panic\r\n")),
        "HTTP/1.1 500 Internal Server Error"
    );
    assert_eq!(
        status_line(&server, "GET /panic HTTP/1.1\r\nHost: h\r\n\r\n"),
        "HTTP/1.1 500 Internal Server Error"
    );
    let seen = wait_errors(&errors, 3);
    assert!(
        seen[0].starts_with("500 server on_connection: handler panicked: on_connection asked"),
        "{seen:?}"
    );
    assert!(
        seen[1].starts_with("500 server select_subprotocol: "),
        "{seen:?}"
    );
    assert!(
        seen[2].starts_with("500 server on_http_request: "),
        "{seen:?}"
    );
    // The loop is unharmed: an ordinary upgrade works.
    assert!(status_line(&server, &upgrade("/", "")).starts_with("HTTP/1.1 101"));
}

#[test]
fn a_panic_in_on_open_or_on_terminate_is_reported_and_the_server_still_runs_and_ends() {
    let handler = Fragile {
        panic_on_open: true,
        panic_on_terminate: true,
        ..Fragile::default()
    };
    let errors = handler.errors.clone();
    let server = start(handler);
    assert!(status_line(&server, &upgrade("/", "")).starts_with("HTTP/1.1 101"));
    server.terminate();
    assert!(server.wait(Some(WAIT)));
    let seen = wait_errors(&errors, 2);
    assert!(seen[0].starts_with("500 server on_open: "), "{seen:?}");
    assert!(seen[1].starts_with("500 server on_terminate: "), "{seen:?}");
}
