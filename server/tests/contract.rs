//! Rows of `../shared/spec/api.md` not covered by the other files: the server's
//! `on_open` before any connection, `wss()`, the Closing status, 1005 in the terminate
//! event, an exact path, repeated query keys.

use std::io::{Read, Write};
use std::net::TcpStream;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use ws6455_core::encoder::encode_frame;
use ws6455_core::frame::OpCode;
use ws6455_server::*;

const WAIT: Duration = Duration::from_secs(5);
#[allow(dead_code)]
#[path = "support/raw.rs"]
mod raw;
use raw::read_head;

type Log = Arc<Mutex<Vec<String>>>;
/// Each request's query, as `on_connection` saw it.
type Queries = Arc<Mutex<Vec<Vec<(String, String)>>>>;

struct Conn(Log);

impl ConnectionHandler for Conn {
    fn on_open(&self, ws: &WebSocketConnection) {
        let server = ws.wss();
        let listed = server.connections().iter().any(|c| c.id() == ws.id());
        self.0.lock().unwrap().push(format!(
            "open wss={} listed={listed}",
            server.local_addr().port()
        ));
    }

    fn on_message(&self, _: &WebSocketConnection, _: MessageEvent) {}

    fn on_terminate(&self, _: &WebSocketConnection, event: TerminateEvent) {
        self.0
            .lock()
            .unwrap()
            .push(format!("terminate {} {:?}", event.code, event.reason));
    }
}

struct Server {
    log: Log,
    queries: Queries,
}

impl ServerHandler for Server {
    fn on_connection(
        &self,
        _: &WebSocketServer,
        event: &ConnectionEvent,
    ) -> Option<Arc<dyn ConnectionHandler>> {
        let request = &event.request;
        self.queries.lock().unwrap().push(request.query());
        self.log
            .lock()
            .unwrap()
            .push(format!("connection {:?}", request.query_param("k")));
        Some(Arc::new(Conn(self.log.clone())))
    }

    fn on_open(&self, server: &WebSocketServer) {
        self.log
            .lock()
            .unwrap()
            .push(format!("server open {}", server.connections().len()));
    }
}

fn start(path: Option<&str>) -> (WebSocketServer, Log, Queries) {
    let log = Log::default();
    let queries = Arc::default();
    let server = Server {
        log: log.clone(),
        queries: Arc::clone(&queries),
    };
    let options = ServerOptions {
        listen: "127.0.0.1:0".parse().unwrap(),
        path: path.map(str::to_owned),
        ..ServerOptions::default()
    };
    (WebSocketServer::new(server, options).unwrap(), log, queries)
}

/// Opens an upgraded raw connection to `target`; returns it and the status line.
fn upgrade(server: &WebSocketServer, target: &str) -> (TcpStream, String) {
    let mut stream = TcpStream::connect(server.local_addr()).unwrap();
    stream.set_read_timeout(Some(WAIT)).unwrap();
    let request = format!(
        "GET {target} HTTP/1.1\r\nHost: h\r\nUpgrade: websocket\r\nConnection: Upgrade\r\n\
         Sec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==\r\nSec-WebSocket-Version: 13\r\n\r\n"
    );
    stream.write_all(request.as_bytes()).unwrap();
    let head = String::from_utf8_lossy(&read_head(&mut stream)).into_owned();
    let status = head.lines().next().unwrap_or_default().to_owned();
    (stream, status)
}

fn wait_for(log: &Log, prefix: &str) -> Vec<String> {
    let deadline = Instant::now() + WAIT;
    loop {
        let entries = log.lock().unwrap().clone();
        if entries.iter().any(|e| e.starts_with(prefix)) {
            return entries;
        }
        assert!(Instant::now() < deadline, "no {prefix:?} in {entries:?}");
        std::thread::sleep(Duration::from_millis(5));
    }
}

#[test]
fn on_open_first_wss_an_exact_path_and_repeated_query_keys() {
    let (server, log, queries) = start(Some("/exact"));
    let port = server.local_addr().port();
    assert_eq!(upgrade(&server, "/exact/more").1, "HTTP/1.1 404 Not Found");
    assert_eq!(upgrade(&server, "/exac").1, "HTTP/1.1 404 Not Found");
    let (_stream, status) = upgrade(&server, "/exact?k=1&k=2&other=x");
    assert_eq!(status, "HTTP/1.1 101 Switching Protocols");
    let entries = wait_for(&log, "open");
    assert_eq!(
        entries,
        [
            "server open 0".to_owned(),
            "connection Some(\"1\")".to_owned(),
            format!("open wss={port} listed=true"),
        ]
    );
    assert_eq!(
        queries.lock().unwrap()[0],
        [
            ("k".to_owned(), "1".to_owned()),
            ("k".to_owned(), "2".to_owned()),
            ("other".to_owned(), "x".to_owned())
        ]
    );
}

#[test]
fn closing_status_then_1005_when_the_peers_close_has_no_code() {
    let (server, log, _) = start(None);
    let (mut stream, _) = upgrade(&server, "/");
    wait_for(&log, "open");
    let conn = server.connections().remove(0);
    conn.terminate(Some(4000), Some("bye")).unwrap();
    let deadline = Instant::now() + WAIT;
    while conn.status() != Status::Closing {
        assert!(Instant::now() < deadline, "status {:?}", conn.status());
        std::thread::sleep(Duration::from_millis(2));
    }
    // The server's Close arrives; we answer with a Close that carries no code.
    let mut close = [0u8; 2 + 2 + 3];
    stream.read_exact(&mut close).unwrap();
    assert_eq!(&close[..4], [0x88, 5, 0x0f, 0xa0]);
    let mut answer = Vec::new();
    encode_frame(&mut answer, true, OpCode::Close, &[], Some([1, 2, 3, 4]));
    stream.write_all(&answer).unwrap();
    let entries = wait_for(&log, "terminate");
    assert_eq!(entries.last().unwrap(), "terminate 1005 None");
    assert_eq!(conn.status(), Status::Closed);
}
