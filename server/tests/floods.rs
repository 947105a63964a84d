//! Peers that cost the server without sending useful data, over real sockets: many
//! half-sent handshakes, a message in one-byte fragments, a Close from a peer that then
//! neither reads nor closes. Each is bounded per connection, and the server goes on
//! serving others. (The Ping flood from a peer that never reads is in limits.rs.)

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
use raw::{read_head, UPGRADE};
const MASK: Option<[u8; 4]> = Some([9, 8, 7, 6]);

/// Echoes, and records how connections ended.
#[derive(Clone, Default)]
struct Echo(Arc<Mutex<Vec<u16>>>);

impl ConnectionHandler for Echo {
    fn on_message(&self, ws: &WebSocketConnection, event: MessageEvent) {
        let _ = ws.send(event.data);
    }

    fn on_terminate(&self, _: &WebSocketConnection, event: TerminateEvent) {
        self.0.lock().unwrap().push(event.code);
    }
}

impl ServerHandler for Echo {
    fn on_connection(
        &self,
        _: &WebSocketServer,
        _: &ConnectionEvent,
    ) -> Option<Arc<dyn ConnectionHandler>> {
        Some(Arc::new(self.clone()))
    }
}

fn server(echo: &Echo, protocol: ProtocolConfig) -> WebSocketServer {
    let options = ServerOptions {
        listen: "127.0.0.1:0".parse().unwrap(),
        data_type: DataType::Blob,
        limits: LoopConfig {
            protocol,
            ..LoopConfig::default()
        },
        ..ServerOptions::default()
    };
    WebSocketServer::new(echo.clone(), options).unwrap()
}

/// An upgraded raw connection.
fn open(server: &WebSocketServer) -> TcpStream {
    let mut stream = TcpStream::connect(server.local_addr()).unwrap();
    stream.set_read_timeout(Some(WAIT)).unwrap();
    stream.write_all(UPGRADE).unwrap();
    assert!(read_head(&mut stream).starts_with(b"HTTP/1.1 101"));
    stream
}

/// Reads one unmasked server frame: (opcode byte, payload).
fn read_frame(stream: &mut TcpStream) -> (u8, Vec<u8>) {
    let mut head = [0u8; 2];
    stream.read_exact(&mut head).unwrap();
    let len = match head[1] & 0x7f {
        126 => {
            let mut ext = [0u8; 2];
            stream.read_exact(&mut ext).unwrap();
            u16::from_be_bytes(ext) as usize
        }
        127 => {
            let mut ext = [0u8; 8];
            stream.read_exact(&mut ext).unwrap();
            u64::from_be_bytes(ext) as usize
        }
        n => n as usize,
    };
    let mut payload = vec![0; len];
    stream.read_exact(&mut payload).unwrap();
    (head[0], payload)
}

/// `message` as one-byte fragments: a Binary frame, then Continuations, FIN on the last.
fn one_byte_fragments(message: &[u8]) -> Vec<u8> {
    let mut out = Vec::new();
    for (i, byte) in message.iter().enumerate() {
        let opcode = if i == 0 {
            OpCode::Binary
        } else {
            OpCode::Continuation
        };
        encode_frame(&mut out, i + 1 == message.len(), opcode, &[*byte], MASK);
    }
    out
}

fn wait_for_ends(echo: &Echo, count: usize) -> Vec<u16> {
    let deadline = Instant::now() + WAIT;
    loop {
        let ends = echo.0.lock().unwrap().clone();
        if ends.len() >= count {
            return ends;
        }
        assert!(
            Instant::now() < deadline,
            "ended: {ends:?}, expected {count}"
        );
        std::thread::sleep(Duration::from_millis(10));
    }
}

#[test]
fn many_half_sent_handshakes_are_cut_off_while_others_are_served() {
    let echo = Echo::default();
    let protocol = ProtocolConfig {
        handshake_timeout: Duration::from_millis(500),
        ..ProtocolConfig::default()
    };
    let server = server(&echo, protocol);
    let mut slow: Vec<TcpStream> = (0..200)
        .map(|_| {
            let mut s = TcpStream::connect(server.local_addr()).unwrap();
            s.write_all(b"GET / HTTP/1.1\r\nHost: slow\r\n").unwrap();
            s
        })
        .collect();
    // Meanwhile a client that completes its handshake is served at once.
    let mut good = open(&server);
    let mut frame = Vec::new();
    encode_frame(&mut frame, true, OpCode::Binary, b"still here", MASK);
    good.write_all(&frame).unwrap();
    assert_eq!(read_frame(&mut good), (0x82, b"still here".to_vec()));
    // Every half-sent one is closed (no answer: it never finished asking).
    let started = Instant::now();
    for stream in &mut slow {
        stream.set_read_timeout(Some(WAIT)).unwrap();
        let mut buf = [0u8; 16];
        assert_eq!(
            stream.read(&mut buf).unwrap_or(0),
            0,
            "closed by the server"
        );
    }
    assert!(started.elapsed() < Duration::from_secs(4));
    server.terminate_with_timeout(Duration::ZERO);
}

#[test]
fn one_byte_fragments_are_delivered_and_bounded_by_the_message_limit() {
    let echo = Echo::default();
    let protocol = ProtocolConfig {
        max_message_size: 20_000,
        ..ProtocolConfig::default()
    };
    let server = server(&echo, protocol);
    let mut stream = open(&server);
    let message: Vec<u8> = (0..10_000u32).map(|i| (i % 251) as u8).collect();
    stream.write_all(&one_byte_fragments(&message)).unwrap();
    assert_eq!(read_frame(&mut stream), (0x82, message));

    // Past the limit the connection is closed with 1009 as soon as the fragment that
    // crosses it arrives; the rest is never buffered.
    // One byte over: nothing is left unread when the server closes (no RST).
    let too_long = vec![1u8; 20_001];
    let _ = stream.write_all(&one_byte_fragments(&too_long));
    let (opcode, payload) = read_frame(&mut stream);
    assert_eq!(opcode, 0x88, "a Close");
    assert_eq!(u16::from_be_bytes([payload[0], payload[1]]), 1009);
    server.terminate_with_timeout(Duration::ZERO);
}

/// A peer that is owed megabytes it does not read, then sends a Close and goes quiet:
/// the server's answering Close cannot be written, and the close timeout ends the
/// connection.
#[test]
fn a_close_from_a_peer_that_then_neither_reads_nor_closes_ends_at_the_close_timeout() {
    let echo = Echo::default();
    let protocol = ProtocolConfig {
        close_timeout: Duration::from_millis(300),
        ..ProtocolConfig::default()
    };
    let server = server(&echo, protocol);
    let mut stream = open(&server);
    // 8 MiB echoed to a peer that does not read: most of it stays in the server's
    // output (under the 16 MiB cap, so the server goes on reading).
    let mut big = Vec::new();
    encode_frame(&mut big, true, OpCode::Binary, &vec![5u8; 8 << 20], MASK);
    stream.write_all(&big).unwrap();
    let mut close = Vec::new();
    encode_frame(
        &mut close,
        true,
        OpCode::Close,
        &1000u16.to_be_bytes(),
        MASK,
    );
    stream.write_all(&close).unwrap();
    let started = Instant::now();
    let ends = wait_for_ends(&echo, 1);
    assert!(
        started.elapsed() < Duration::from_secs(3),
        "{:?}",
        started.elapsed()
    );
    assert_eq!(ends.len(), 1);
    // The transport is gone: reading drains what the kernel held, then ends.
    let mut sink = vec![0u8; 1 << 16];
    let deadline = Instant::now() + WAIT;
    while let Ok(n) = stream.read(&mut sink) {
        if n == 0 {
            break;
        }
        assert!(
            Instant::now() < deadline,
            "the server kept the connection open"
        );
    }
    server.terminate_with_timeout(Duration::ZERO);
}

/// Regression: a connection leaves `connections()` when its status becomes Closed (the
/// close handshake is done), not when its output has drained or the close timeout ends
/// the transport seconds later.
#[test]
fn a_closed_connection_leaves_connections_before_its_output_drains() {
    let echo = Echo::default();
    let server = server(&echo, ProtocolConfig::default());
    let mut stream = open(&server);
    let deadline = Instant::now() + WAIT;
    while server.connections().is_empty() {
        assert!(Instant::now() < deadline, "never listed");
        std::thread::sleep(Duration::from_millis(5));
    }
    let conn = server.connections().remove(0);
    // 8 MiB echoed to a peer that does not read, then the peer's Close: the server's
    // answer waits behind the echo, and the transport with it (close timeout 5 s).
    let mut bytes = Vec::new();
    encode_frame(&mut bytes, true, OpCode::Binary, &vec![5u8; 8 << 20], MASK);
    encode_frame(
        &mut bytes,
        true,
        OpCode::Close,
        &1000u16.to_be_bytes(),
        MASK,
    );
    stream.write_all(&bytes).unwrap();
    let started = Instant::now();
    while conn.status() != Status::Closed {
        assert!(started.elapsed() < WAIT, "status {:?}", conn.status());
        std::thread::sleep(Duration::from_millis(5));
    }
    assert!(
        echo.0.lock().unwrap().is_empty(),
        "the transport ended already"
    );
    assert!(
        server.connections().is_empty(),
        "a Closed connection still listed"
    );
    drop(stream);
}
