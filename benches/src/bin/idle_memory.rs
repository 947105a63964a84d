//! Load test: the server's memory per idle WebSocket connection.
//!
//!     cargo build --release -p ws6455-server -p ws6455-benches
//!     target/release/idle_memory [CONNECTIONS] [SERVER_BINARY] [--tls] [--deflate | --deflate-no-context] [--message-size BYTES]
//!
//! Starts `ws6455-server --mode echo` on a free port of 127.0.0.1 as a child process, opens
//! CONNECTIONS WebSocket connections to it (plain blocking sockets, so the client's memory
//! is not the server's), and reads the server's resident memory (VmRSS, Linux) at three
//! points: before any connection; with every connection open and idle after its
//! handshake; and again after every connection echoed one 64 KiB message (or
//! `--message-size` bytes) and the connections were quiet for the core's release delay
//! (`RELEASE_AFTER`, 1 s) and half a second more (to show that buffers kept for reuse are
//! released once a connection is quiet). Needs `ulimit -n` above
//! CONNECTIONS + 100 for both processes. Kernel socket buffers are not counted: VmRSS is
//! the process's own memory. With `--tls` the server serves wss:// with a self-signed
//! certificate made here, and every connection is TLS (rustls on the client side too).
//! With `--deflate` the server runs with `--deflate` and every connection negotiates
//! permessage-deflate (context takeover both ways; the echoed messages are compressed both
//! ways, so both zlib streams exist); `--deflate-no-context` also asks for
//! `server_no_context_takeover` and `client_no_context_takeover`, which lets an idle
//! connection drop its zlib state.

use std::io::{Read, Write};
use std::net::{SocketAddr, TcpListener, TcpStream};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use ws6455_core::encoder::encode_frame;
use ws6455_core::frame::OpCode;

const REQUEST: &[u8] = b"GET / HTTP/1.1\r\nHost: 127.0.0.1\r\nUpgrade: websocket\r\nConnection: Upgrade\r\nSec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==\r\nSec-WebSocket-Version: 13\r\n\r\n";
const MESSAGE_SIZE: usize = 64 * 1024;

/// Kills the server when the test ends, however it ends.
struct Server(Child);

impl Drop for Server {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

fn rss_bytes(pid: u32) -> u64 {
    ws6455_benches::rss_bytes(pid).expect("VmRSS in /proc (Linux)")
}

/// A connection of the test: plain TCP or TLS.
trait Stream: Read + Write {}
impl<T: Read + Write> Stream for T {}

/// Reads until `needle` has arrived (bounded by the socket's read timeout).
fn read_until(stream: &mut dyn Stream, needle: &[u8], buf: &mut Vec<u8>) -> std::io::Result<()> {
    buf.clear();
    let mut chunk = [0u8; 4096];
    while !buf.windows(needle.len()).any(|w| w == needle) {
        let n = stream.read(&mut chunk)?;
        if n == 0 {
            return Err(std::io::ErrorKind::UnexpectedEof.into());
        }
        buf.extend_from_slice(&chunk[..n]);
    }
    Ok(())
}

/// Reads one unmasked frame from the server (header, then payload), compressed or not.
fn read_frame(stream: &mut dyn Stream) -> std::io::Result<()> {
    let mut head = [0u8; 2];
    stream.read_exact(&mut head)?;
    let len = match head[1] & 0x7f {
        126 => {
            let mut ext = [0u8; 2];
            stream.read_exact(&mut ext)?;
            u16::from_be_bytes(ext) as usize
        }
        127 => {
            let mut ext = [0u8; 8];
            stream.read_exact(&mut ext)?;
            u64::from_be_bytes(ext) as usize
        }
        n => n as usize,
    };
    read_exact_len(stream, len)
}

fn read_exact_len(stream: &mut dyn Stream, len: usize) -> std::io::Result<()> {
    let mut left = len;
    let mut chunk = vec![0u8; 64 * 1024];
    while left > 0 {
        let n = stream.read(&mut chunk[..left.min(64 * 1024)])?;
        if n == 0 {
            return Err(std::io::ErrorKind::UnexpectedEof.into());
        }
        left -= n;
    }
    Ok(())
}

fn wait_for_port(addr: SocketAddr) {
    let deadline = Instant::now() + Duration::from_secs(10);
    while TcpStream::connect(addr).is_err() {
        assert!(
            Instant::now() < deadline,
            "the server did not start on {addr}"
        );
        std::thread::sleep(Duration::from_millis(20));
    }
}

/// Lets the server settle (its connections release what they keep for reuse), then
/// samples its memory.
fn settled_rss(pid: u32) -> u64 {
    std::thread::sleep(ws6455_core::connection::RELEASE_AFTER + Duration::from_millis(500));
    rss_bytes(pid)
}

fn main() {
    let mut args = std::env::args().skip(1);
    let count: usize = args
        .next()
        .map_or(10_000, |n| n.parse().expect("CONNECTIONS"));
    let binary = args
        .next()
        .unwrap_or_else(|| "target/release/ws6455-server".into());
    let flags: Vec<String> = args.collect();
    let tls = flags.iter().any(|f| f == "--tls");
    let message_size = flags
        .iter()
        .position(|f| f == "--message-size")
        .map_or(MESSAGE_SIZE, |i| {
            flags
                .get(i + 1)
                .and_then(|n| n.parse().ok())
                .expect("--message-size BYTES")
        });
    let no_context = flags.iter().any(|f| f == "--deflate-no-context");
    let deflate = no_context || flags.iter().any(|f| f == "--deflate");
    let request = match (deflate, no_context) {
        (false, _) => REQUEST.to_vec(),
        (true, nct) => {
            let offer = if nct {
                "permessage-deflate; server_no_context_takeover; client_no_context_takeover; client_max_window_bits"
            } else {
                "permessage-deflate; client_max_window_bits"
            };
            let head = &REQUEST[..REQUEST.len() - 2];
            [
                head,
                format!("Sec-WebSocket-Extensions: {offer}\r\n\r\n").as_bytes(),
            ]
            .concat()
        }
    };
    let dir = std::env::temp_dir().join(format!("ws6455-idle-{}", std::process::id()));
    let mut tls_args = Vec::new();
    let mut client_config = None;
    if tls {
        let certified =
            rcgen::generate_simple_self_signed(vec!["localhost".to_owned()]).expect("certificate");
        std::fs::create_dir_all(&dir).expect("temp dir");
        std::fs::write(dir.join("cert.pem"), certified.cert.pem()).expect("write cert");
        std::fs::write(dir.join("key.pem"), certified.key_pair.serialize_pem()).expect("key");
        tls_args = vec![
            "--tls-cert".to_owned(),
            dir.join("cert.pem").display().to_string(),
            "--tls-key".to_owned(),
            dir.join("key.pem").display().to_string(),
        ];
        client_config = Some(
            ws6455_client::tls::client_config_with_extra_roots(certified.cert.pem().as_bytes())
                .expect("client config"),
        );
    }
    let port = TcpListener::bind("127.0.0.1:0")
        .and_then(|l| l.local_addr())
        .expect("a free port")
        .port();
    let addr: SocketAddr = ([127, 0, 0, 1], port).into();
    let server = Server(
        Command::new(&binary)
            .args([
                "--mode",
                "echo",
                "--listen",
                &addr.to_string(),
                "--log",
                "warn",
            ])
            .args(&tls_args)
            .args(deflate.then_some("--deflate"))
            .stdout(Stdio::null())
            .spawn()
            .unwrap_or_else(|e| panic!("cannot start {binary}: {e}")),
    );
    let pid = server.0.id();
    wait_for_port(addr);
    let before = settled_rss(pid);

    let started = Instant::now();
    let mut streams: Vec<Box<dyn Stream>> = Vec::with_capacity(count);
    let mut buf = Vec::new();
    for i in 0..count {
        let connected = TcpStream::connect(addr).and_then(|s| {
            s.set_read_timeout(Some(Duration::from_secs(10)))?;
            // Without it a TLS echo waited 40 ms for the delayed ACK (Nagle), and 2,000
            // TLS connections took longer than the server's keepalive allows an
            // unanswered Ping: connections were closed under the test (pong timeout).
            s.set_nodelay(true)?;
            let mut s: Box<dyn Stream> = match &client_config {
                None => Box::new(s),
                Some(config) => {
                    let name = "localhost".try_into().expect("server name");
                    let session =
                        ws6455_client::rustls::ClientConnection::new(config.clone(), name)
                            .map_err(std::io::Error::other)?;
                    Box::new(ws6455_client::rustls::StreamOwned::new(session, s))
                }
            };
            s.write_all(&request)?;
            read_until(&mut *s, b"\r\n\r\n", &mut buf)?;
            Ok(s)
        });
        match connected {
            Ok(stream) if buf.starts_with(b"HTTP/1.1 101") => streams.push(stream),
            Ok(_) => panic!("connection {i}: {}", String::from_utf8_lossy(&buf)),
            Err(e) => panic!("connection {i}: {e} (is `ulimit -n` above {count}?)"),
        }
    }
    let open_time = started.elapsed();
    let idle = settled_rss(pid);

    // What the server agreed to, to compress our messages the way it expects.
    let agreed = deflate.then(|| {
        let text = String::from_utf8_lossy(&buf).to_ascii_lowercase();
        let line = text
            .lines()
            .find_map(|l| l.strip_prefix("sec-websocket-extensions:"))
            .expect("the server accepted permessage-deflate")
            .trim()
            .to_owned();
        ws6455_core::DeflateConfig::default()
            .check_response(&[line])
            .expect("a valid answer")
            .expect("permessage-deflate")
    });
    let payload = vec![b'x'; message_size];
    let mut frame = Vec::new();
    encode_frame(
        &mut frame,
        true,
        OpCode::Binary,
        &payload,
        Some([1, 2, 3, 4]),
    );
    let mut small = Vec::new();
    encode_frame(
        &mut small,
        true,
        OpCode::Text,
        &[b'y'; 100],
        Some([5, 6, 7, 8]),
    );
    for stream in &mut streams {
        if let Some(params) = &agreed {
            // Compressed, by a client connection of our own per stream (each has its
            // own compression context).
            let mut client = ws6455_core::Connection::client(
                ws6455_core::Config::default(),
                Box::new(ws6455_core::FixedRandom::new(&[1, 2, 3, 4])),
            );
            client.enable_deflate(params, &ws6455_core::DeflateConfig::default());
            client.send_binary(&payload).expect("encode");
            client.send_text(&"y".repeat(100)).expect("encode");
            while client.wants_write() {
                let n = client.pending_output().len();
                stream.write_all(client.pending_output()).expect("send");
                client.consume_output(n);
            }
        } else {
            stream.write_all(&frame).expect("send");
            stream.write_all(&small).expect("send");
        }
        read_frame(&mut **stream).expect("echo");
        read_frame(&mut **stream).expect("echo");
    }
    let after_traffic = settled_rss(pid);

    let per = |rss: u64| (rss.saturating_sub(before)) as f64 / count as f64;
    let kind = match (tls, deflate, no_context) {
        (true, _, _) => "TLS",
        (_, true, true) => "deflate, no context takeover",
        (_, true, false) => "deflate",
        _ => "plain",
    };
    println!("connections:                        {count} {kind} (opened in {open_time:.2?})");
    println!("server RSS before:                  {} KiB", before / 1024);
    println!(
        "server RSS, all idle after handshake: {} KiB = {:.0} bytes per connection",
        idle / 1024,
        per(idle)
    );
    println!(
        "server RSS, idle after echoes:       {} KiB = {:.0} bytes per connection",
        after_traffic / 1024,
        per(after_traffic)
    );
    drop(streams);
    let _ = std::fs::remove_dir_all(&dir);
}
