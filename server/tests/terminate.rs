//! `WebSocketServer::terminate` to the letter of the contract, seen from raw TCP peers:
//! without a timeout it waits for the peer's Close however long past the close timeout,
//! then ends TCP with a FIN; with a timeout it destroys what is left at that time (a
//! reset), also past the close timeout; with zero it resets at once, no Close frame.

use std::io::{ErrorKind, Read, Write};
use std::net::TcpStream;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use ws6455_core::encoder::encode_frame;
use ws6455_core::frame::OpCode;
use ws6455_server::*;

const WAIT: Duration = Duration::from_secs(10);
#[allow(dead_code)]
#[path = "support/raw.rs"]
mod raw;
use raw::{read_head, UPGRADE};

/// Records how each connection ended: (code, was_clean).
#[derive(Clone, Default)]
struct Ends(Arc<Mutex<Vec<(u16, bool)>>>);

impl ConnectionHandler for Ends {
    fn on_message(&self, _: &WebSocketConnection, _: MessageEvent) {}

    fn on_terminate(&self, _: &WebSocketConnection, event: TerminateEvent) {
        self.0.lock().unwrap().push((event.code, event.was_clean));
    }
}

impl ServerHandler for Ends {
    fn on_connection(
        &self,
        _: &WebSocketServer,
        _: &ConnectionEvent,
    ) -> Option<Arc<dyn ConnectionHandler>> {
        Some(Arc::new(self.clone()))
    }
}

/// A server whose close timeout is short (200 ms), so that outlasting it is quick.
fn server(ends: &Ends) -> WebSocketServer {
    let options = ServerOptions {
        listen: "127.0.0.1:0".parse().unwrap(),
        limits: LoopConfig {
            protocol: ProtocolConfig {
                close_timeout: Duration::from_millis(200),
                ..ProtocolConfig::default()
            },
            ..LoopConfig::default()
        },
        ..ServerOptions::default()
    };
    WebSocketServer::new(ends.clone(), options).unwrap()
}

fn open(server: &WebSocketServer) -> TcpStream {
    let mut stream = TcpStream::connect(server.local_addr()).unwrap();
    stream.set_read_timeout(Some(WAIT)).unwrap();
    stream.write_all(UPGRADE).unwrap();
    assert!(read_head(&mut stream).starts_with(b"HTTP/1.1 101"));
    let deadline = Instant::now() + WAIT;
    while server.connections().is_empty() {
        assert!(Instant::now() < deadline);
        std::thread::sleep(Duration::from_millis(5));
    }
    stream
}

/// Reads the server's Close frame (2 header bytes, then the code); returns the code.
fn read_close(stream: &mut TcpStream) -> u16 {
    let mut frame = [0u8; 4];
    stream.read_exact(&mut frame).unwrap();
    assert_eq!(frame[0], 0x88, "a Close frame");
    let len = (frame[1] & 0x7f) as usize;
    let mut rest = vec![0u8; len - 2];
    stream.read_exact(&mut rest).unwrap();
    u16::from_be_bytes([frame[2], frame[3]])
}

/// How the stream ends: `Ok(())` for a FIN (read returns 0), or the read error.
fn end_of(stream: &mut TcpStream) -> Result<(), ErrorKind> {
    let mut sink = [0u8; 256];
    loop {
        match stream.read(&mut sink) {
            Ok(0) => return Ok(()),
            Ok(_) => continue,
            Err(e) => return Err(e.kind()),
        }
    }
}

#[test]
fn terminate_waits_for_the_peers_close_past_the_close_timeout_then_sends_a_fin() {
    let ends = Ends::default();
    let server = server(&ends);
    let mut stream = open(&server);
    server.terminate();
    assert_eq!(read_close(&mut stream), 1001);
    // Five close timeouts later the server still waits for our answer.
    std::thread::sleep(Duration::from_secs(1));
    assert!(
        ends.0.lock().unwrap().is_empty(),
        "given up at the close timeout"
    );
    let mut close = Vec::new();
    encode_frame(
        &mut close,
        true,
        OpCode::Close,
        &1000u16.to_be_bytes(),
        Some([1, 2, 3, 4]),
    );
    stream.write_all(&close).unwrap();
    assert_eq!(end_of(&mut stream), Ok(()), "a clean FIN");
    assert!(server.wait(Some(WAIT)));
    assert_eq!(*ends.0.lock().unwrap(), [(1000, true)]);
}

#[test]
fn terminate_with_a_timeout_longer_than_the_close_timeout_resets_at_that_timeout() {
    let ends = Ends::default();
    let server = server(&ends);
    let mut stream = open(&server);
    let started = Instant::now();
    server.terminate_with_timeout(Duration::from_millis(1200));
    assert_eq!(read_close(&mut stream), 1001);
    // We never answer: the server forces the socket at 1.2 s, not at 200 ms.
    assert_eq!(end_of(&mut stream), Err(ErrorKind::ConnectionReset));
    let took = started.elapsed();
    assert!(took >= Duration::from_millis(1100), "forced after {took:?}");
    assert!(took < Duration::from_secs(5), "forced after {took:?}");
    assert!(server.wait(Some(WAIT)));
    assert_eq!(*ends.0.lock().unwrap(), [(1006, false)]);
}

#[test]
fn terminate_with_zero_resets_at_once_without_a_close_frame() {
    let ends = Ends::default();
    let server = server(&ends);
    let mut stream = open(&server);
    server.terminate_with_timeout(Duration::ZERO);
    // The first thing the peer sees is the reset: no Close frame, no FIN.
    let mut byte = [0u8];
    match stream.read(&mut byte) {
        Err(e) => assert_eq!(e.kind(), ErrorKind::ConnectionReset),
        Ok(n) => panic!("read {n} bytes ({byte:?}) instead of a reset"),
    }
    assert!(server.wait(Some(WAIT)));
    assert_eq!(*ends.0.lock().unwrap(), [(1006, false)]);
}
