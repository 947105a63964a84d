//! Raw TCP for the server tests that send what a well-behaved client would not: the
//! upgrade request, reading the answer's head, writing until TCP stalls. Shared by the
//! server's test files (`#[path]`-included).

use std::io::{self, Read, Write};
use std::net::{SocketAddr, TcpStream};
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

/// Connects to `addr`, upgrades, and sends a masked binary frame announcing 4 MiB with
/// its payload (256 KiB at once, more than one read of a server takes, then 64 KiB
/// between looks at what came back, as a busy event loop would) until a whole Close
/// frame came back, which it returns. A write or read that fails before the Close is the
/// error (as it would end a peer that stops at its first failed write); bounded by 5 s.
pub(crate) fn send_oversized_until_close(addr: SocketAddr) -> Result<Vec<u8>, String> {
    let mut stream = TcpStream::connect(addr).map_err(|e| e.to_string())?;
    stream.write_all(UPGRADE).map_err(|e| e.to_string())?;
    read_head(&mut stream);
    let mut head = vec![0x82, 0x80 | 127];
    head.extend_from_slice(&(4u64 << 20).to_be_bytes());
    head.extend_from_slice(&[1, 2, 3, 4]);
    head.resize(head.len() + (256 << 10), 0x55);
    stream.write_all(&head).map_err(|e| e.to_string())?;
    stream
        .set_write_timeout(Some(Duration::from_secs(5)))
        .unwrap();
    stream
        .set_read_timeout(Some(Duration::from_millis(1)))
        .unwrap();
    let chunk = [0x55u8; 4 << 10];
    let (mut received, mut buf) = (Vec::new(), [0u8; 4096]);
    let (mut sent, deadline) = (head.len(), Instant::now() + Duration::from_secs(5));
    loop {
        if received.len() >= 2 && received[0] == 0x88 && received.len() >= 2 + received[1] as usize
        {
            return Ok(received);
        }
        if Instant::now() >= deadline {
            return Err(format!("no Close in 5 s ({received:?})"));
        }
        for _ in 0..16 {
            if sent < 4 << 20 {
                stream.write_all(&chunk).map_err(|e| {
                    format!("{e} after {sent} bytes, before the Close ({received:?})")
                })?;
                sent += chunk.len();
            }
        }
        match stream.read(&mut buf) {
            Ok(n) => received.extend_from_slice(&buf[..n]),
            Err(e)
                if matches!(
                    e.kind(),
                    io::ErrorKind::WouldBlock | io::ErrorKind::TimedOut
                ) => {}
            Err(e) => return Err(format!("{e} before the Close ({received:?})")),
        }
    }
}
