//! Raw TCP for the server tests that send what a well-behaved client would not: the
//! upgrade request, reading the answer's head, writing until TCP stalls. Shared by the
//! server's test files (`#[path]`-included).

use std::io::{self, Read, Write};
use std::net::TcpStream;
use std::time::{Duration, Instant};

/// A valid opening handshake request.
pub(crate) const UPGRADE: &[u8] = b"GET / HTTP/1.1\r\nHost: h\r\nUpgrade: websocket\r\nConnection: Upgrade\r\nSec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==\r\nSec-WebSocket-Version: 13\r\n\r\n";

/// Reads an HTTP answer's head, up to and including the blank line.
pub(crate) fn read_head(stream: &mut TcpStream) -> Vec<u8> {
    let mut head = Vec::new();
    let mut byte = [0u8];
    while !head.ends_with(b"\r\n\r\n") {
        stream.read_exact(&mut byte).unwrap();
        head.push(byte[0]);
    }
    head
}

/// Writes `bytes` over and over without reading until a write stalls for 300 ms (the
/// server stopped reading, the kernel buffers are full); fails past `limit` bytes or
/// 30 s. Returns what was written, and the error if the connection failed instead.
pub(crate) fn write_until_stalled(
    stream: &mut TcpStream,
    bytes: &[u8],
    limit: usize,
) -> (usize, Option<io::Error>) {
    stream
        .set_write_timeout(Some(Duration::from_millis(300)))
        .unwrap();
    let (mut written, deadline) = (0usize, Instant::now() + Duration::from_secs(30));
    loop {
        assert!(written < limit, "never stalled within {limit} bytes");
        assert!(Instant::now() < deadline, "no stall within 30 s");
        match stream.write(&bytes[written % bytes.len()..]) {
            Ok(n) => written += n,
            Err(e)
                if matches!(
                    e.kind(),
                    io::ErrorKind::WouldBlock | io::ErrorKind::TimedOut
                ) =>
            {
                return (written, None)
            }
            Err(e) => return (written, Some(e)),
        }
    }
}
