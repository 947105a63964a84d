//! What the engine logs through the `log` facade: a panicking handler at `error`, a
//! refused handshake at `debug`, and nothing below the level set. One process-wide
//! logger, so one test in this file.

use std::io::{Read, Write};
use std::net::TcpStream;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use ws6455_server::*;

/// Keeps every record it is given.
struct Capture(Mutex<Vec<(log::Level, String)>>);

impl log::Log for Capture {
    fn enabled(&self, metadata: &log::Metadata<'_>) -> bool {
        metadata.level() <= log::max_level()
    }

    fn log(&self, record: &log::Record<'_>) {
        let line = record.args().to_string();
        self.0.lock().unwrap().push((record.level(), line));
    }

    fn flush(&self) {}
}

static CAPTURE: Capture = Capture(Mutex::new(Vec::new()));

struct Panicky;

impl ConnectionHandler for Panicky {
    fn on_message(&self, _: &WebSocketConnection, _: MessageEvent) {
        panic!("the handler's own bug");
    }
}

struct Server;

impl ServerHandler for Server {
    fn on_connection(
        &self,
        _: &WebSocketServer,
        _: &ConnectionEvent,
    ) -> Option<Arc<dyn ConnectionHandler>> {
        Some(Arc::new(Panicky))
    }
}

fn records() -> Vec<(log::Level, String)> {
    CAPTURE.0.lock().unwrap().clone()
}

fn wait_for(level: log::Level, text: &str) {
    let deadline = Instant::now() + Duration::from_secs(5);
    while !records()
        .iter()
        .any(|(l, m)| *l == level && m.contains(text))
    {
        assert!(
            Instant::now() < deadline,
            "no {level} {text:?} in {:?}",
            records()
        );
        std::thread::sleep(Duration::from_millis(5));
    }
}

#[test]
fn panics_are_errors_refusals_debug_and_the_level_filters() {
    log::set_logger(&CAPTURE).unwrap();
    log::set_max_level(log::LevelFilter::Debug);
    let options = ServerOptions {
        listen: "127.0.0.1:0".parse().unwrap(),
        ..ServerOptions::default()
    };
    let server = WebSocketServer::new(Server, options).unwrap();
    let addr = server.local_addr();

    let mut bad = TcpStream::connect(addr).unwrap();
    bad.write_all(b"GET / HTTP/1.1\r\nHost: h\r\nUpgrade: websocket\r\nConnection: Upgrade\r\nSec-WebSocket-Version: 13\r\n\r\n")
        .unwrap();
    wait_for(log::Level::Debug, "refused 400");

    let mut good = TcpStream::connect(addr).unwrap();
    good.set_read_timeout(Some(Duration::from_secs(5))).unwrap();
    good.write_all(b"GET / HTTP/1.1\r\nHost: h\r\nUpgrade: websocket\r\nConnection: Upgrade\r\nSec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==\r\nSec-WebSocket-Version: 13\r\n\r\n")
        .unwrap();
    let mut answer = [0u8; 512];
    let n = good.read(&mut answer).unwrap();
    assert!(answer[..n].starts_with(b"HTTP/1.1 101"));
    // A masked "hi": the handler panics on it.
    good.write_all(&[0x81, 0x82, 0, 0, 0, 0, b'h', b'i'])
        .unwrap();
    wait_for(log::Level::Error, "the handler's own bug");

    // At `warn`, the same refusal leaves no record.
    log::set_max_level(log::LevelFilter::Warn);
    let before = records().len();
    let mut bad = TcpStream::connect(addr).unwrap();
    bad.write_all(b"GET / HTTP/1.0\r\n\r\n").unwrap();
    let mut rest = Vec::new();
    bad.set_read_timeout(Some(Duration::from_secs(5))).unwrap();
    let _ = bad.read_to_end(&mut rest);
    assert!(rest.starts_with(b"HTTP/1.1 400"));
    assert_eq!(records().len(), before, "{:?}", &records()[before..]);
    server.terminate_with_timeout(Duration::ZERO);
}
