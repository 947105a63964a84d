//! The server in a hostile world, over real sockets: pages of other sites refused (403),
//! a connection limit answered with 503, a port already in use refused even with
//! SO_REUSEPORT, and a process out of file descriptors (under `prlimit`) that neither
//! stalls nor spins.

use std::io::{Read, Write};
use std::net::{SocketAddr, TcpStream};
use std::process::{Child, Command, Stdio};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use ws6455_server::*;

const WAIT: Duration = Duration::from_secs(5);
#[allow(dead_code)]
#[path = "support/raw.rs"]
mod raw;
use raw::{write_until_stalled, UPGRADE};

/// Accepts everyone, records the server's errors.
#[derive(Clone, Default)]
struct Open {
    errors: Arc<Mutex<Vec<(u16, String)>>>,
}

struct Quiet;
impl ConnectionHandler for Quiet {
    fn on_message(&self, _: &WebSocketConnection, _: MessageEvent) {}
}

impl ServerHandler for Open {
    fn on_connection(
        &self,
        _: &WebSocketServer,
        _: &ConnectionEvent,
    ) -> Option<Arc<dyn ConnectionHandler>> {
        Some(Arc::new(Quiet))
    }

    fn on_error(&self, _: &WebSocketServer, event: ErrorEvent) {
        let mut errors = self.errors.lock().unwrap();
        for error in event.errors {
            errors.push((error.code, error.message));
        }
    }
}

/// Sends the upgrade request and returns the start of the answer (empty when none came
/// within `wait`).
fn upgrade(stream: &mut TcpStream, wait: Duration) -> String {
    stream.set_read_timeout(Some(wait)).unwrap();
    stream.write_all(UPGRADE).unwrap();
    read_answer(stream)
}

fn read_answer(stream: &mut TcpStream) -> String {
    let mut answer = [0u8; 1024];
    match stream.read(&mut answer) {
        Ok(n) => String::from_utf8_lossy(&answer[..n]).into_owned(),
        Err(_) => String::new(),
    }
}

/// Records how connections ended.
#[derive(Clone, Default)]
struct Ends(Arc<Mutex<Vec<u16>>>);

impl ConnectionHandler for Ends {
    fn on_message(&self, _: &WebSocketConnection, _: MessageEvent) {}

    fn on_terminate(&self, _: &WebSocketConnection, event: TerminateEvent) {
        self.0.lock().unwrap().push(event.code);
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

/// A peer that sends Pings and never reads what the server answers: the server stops
/// reading once its output is at the cap (TCP then stalls the peer: memory bounded), and
/// the keepalive, which gets no answer, ends the connection (time bounded).
#[test]
fn a_ping_flood_from_a_peer_that_never_reads_is_bounded_then_dropped() {
    const CAP: usize = 64 << 10;
    let ends = Ends::default();
    let options = ServerOptions {
        listen: "127.0.0.1:0".parse().unwrap(),
        limits: LoopConfig {
            max_buffered: CAP,
            protocol: ProtocolConfig {
                ping_interval: Some(Duration::from_millis(300)),
                pong_timeout: Duration::from_millis(300),
                ..ProtocolConfig::default()
            },
            ..LoopConfig::default()
        },
        ..ServerOptions::default()
    };
    let server = WebSocketServer::new(ends.clone(), options).unwrap();
    let mut stream = TcpStream::connect(server.local_addr()).unwrap();
    assert!(upgrade(&mut stream, WAIT).starts_with("HTTP/1.1 101"));
    let mut ping = Vec::new();
    ws6455_core::encoder::encode_frame(
        &mut ping,
        true,
        ws6455_core::frame::OpCode::Ping,
        &[7u8; 125],
        Some([1, 2, 3, 4]),
    );
    let pings: Vec<u8> = ping.repeat(512);
    // Kernel buffers on both sides hold some megabytes: far less than this. (A failed
    // write: the keepalive may already have dropped the connection.)
    write_until_stalled(&mut stream, &pings, 256 << 20);
    let deadline = Instant::now() + WAIT;
    while ends.0.lock().unwrap().is_empty() {
        assert!(
            Instant::now() < deadline,
            "the silent flooder was never dropped"
        );
        std::thread::sleep(Duration::from_millis(10));
    }
    assert_eq!(ends.0.lock().unwrap()[0], 1006);
    server.terminate_with_timeout(Duration::ZERO);
}

/// The upgrade request from a page of `origin` (none: a client that is not a browser).
fn upgrade_from(addr: SocketAddr, origin: Option<&str>) -> String {
    let mut stream = TcpStream::connect(addr).unwrap();
    stream.set_read_timeout(Some(WAIT)).unwrap();
    let origin = origin
        .map(|o| format!("Origin: {o}\r\n"))
        .unwrap_or_default();
    let request = format!(
        "GET / HTTP/1.1\r\nHost: {addr}\r\n{origin}Upgrade: websocket\r\nConnection: Upgrade\r\n\
         Sec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==\r\nSec-WebSocket-Version: 13\r\n\r\n"
    );
    stream.write_all(request.as_bytes()).unwrap();
    read_answer(&mut stream)
}

#[test]
fn pages_of_other_sites_are_refused_by_default() {
    let handler = Open::default();
    let listen: SocketAddr = "127.0.0.1:0".parse().unwrap();
    let server = WebSocketServer::new(
        handler.clone(),
        ServerOptions {
            listen,
            ..ServerOptions::default()
        },
    )
    .unwrap();
    let addr = server.local_addr();
    assert!(upgrade_from(addr, None).starts_with("HTTP/1.1 101"));
    assert!(upgrade_from(addr, Some(&format!("http://{addr}"))).starts_with("HTTP/1.1 101"));
    let evil = upgrade_from(addr, Some("https://evil.example"));
    assert!(evil.starts_with("HTTP/1.1 403"), "{evil}");
    assert!(evil.contains("origin"), "{evil}");
    let errors = handler.errors.lock().unwrap().clone();
    assert!(
        errors
            .iter()
            .any(|(code, m)| *code == 403 && m.contains("evil.example")),
        "{errors:?}"
    );
    server.terminate_with_timeout(Duration::ZERO);

    for (policy, evil_allowed) in [
        (
            OriginPolicy::SameHostAnd(vec!["https://evil.example".into()]),
            true,
        ),
        (
            OriginPolicy::SameHostAnd(vec!["https://other.example".into()]),
            false,
        ),
        (OriginPolicy::Any, true),
    ] {
        let options = ServerOptions {
            listen,
            allowed_origins: policy.clone(),
            ..ServerOptions::default()
        };
        let server = WebSocketServer::new(Open::default(), options).unwrap();
        let addr = server.local_addr();
        let answer = upgrade_from(addr, Some("https://evil.example"));
        assert_eq!(
            answer.starts_with("HTTP/1.1 101"),
            evil_allowed,
            "{policy:?}: {answer}"
        );
        assert!(upgrade_from(addr, Some(&format!("http://{addr}"))).starts_with("HTTP/1.1 101"));
        server.terminate_with_timeout(Duration::ZERO);
    }
}

#[test]
fn connections_beyond_the_limit_get_503_and_are_reported() {
    let handler = Open::default();
    let options = ServerOptions {
        listen: "127.0.0.1:0".parse().unwrap(),
        limits: LoopConfig {
            max_connections: 2,
            ..LoopConfig::default()
        },
        ..ServerOptions::default()
    };
    let server = WebSocketServer::new(handler.clone(), options).unwrap();
    let addr = server.local_addr();
    let mut first = TcpStream::connect(addr).unwrap();
    let mut second = TcpStream::connect(addr).unwrap();
    assert!(upgrade(&mut first, WAIT).starts_with("HTTP/1.1 101"));
    assert!(upgrade(&mut second, WAIT).starts_with("HTTP/1.1 101"));

    let mut third = TcpStream::connect(addr).unwrap();
    let refused = upgrade(&mut third, WAIT);
    assert!(refused.starts_with("HTTP/1.1 503"), "{refused}");
    assert!(refused.contains("connection limit"), "{refused}");
    let errors = handler.errors.lock().unwrap().clone();
    assert!(
        errors
            .iter()
            .any(|(code, m)| *code == 503 && m.contains("2 connections")),
        "{errors:?}"
    );

    // A slot freed is a slot to take.
    drop(first);
    let deadline = Instant::now() + WAIT;
    loop {
        let mut again = TcpStream::connect(addr).unwrap();
        let answer = upgrade(&mut again, WAIT);
        if answer.starts_with("HTTP/1.1 101") {
            break;
        }
        assert!(Instant::now() < deadline, "still refused: {answer}");
        std::thread::sleep(Duration::from_millis(20));
    }
    server.terminate_with_timeout(Duration::ZERO);
}

#[test]
fn a_port_in_use_is_refused_even_with_several_threads() {
    let options = |listen: SocketAddr, threads: usize| ServerOptions {
        listen,
        threads,
        ..ServerOptions::default()
    };
    let first =
        WebSocketServer::new(Open::default(), options("127.0.0.1:0".parse().unwrap(), 2)).unwrap();
    let taken = first.local_addr();
    for threads in [1, 2, 3] {
        match WebSocketServer::new(Open::default(), options(taken, threads)) {
            Err(e) => assert_eq!(e.kind(), std::io::ErrorKind::AddrInUse, "{e}"),
            Ok(second) => panic!(
                "a second server shares {} ({threads} threads)",
                second.local_addr()
            ),
        }
    }
    // The first one still serves.
    let mut stream = TcpStream::connect(taken).unwrap();
    assert!(upgrade(&mut stream, WAIT).starts_with("HTTP/1.1 101"));
    first.terminate_with_timeout(Duration::ZERO);
}

/// A child process killed when the test ends, passed or failed.
struct Killed(Child);

impl Drop for Killed {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

/// The server binary under a limit of `nofile` descriptors, on a free port.
fn server_with_few_descriptors(nofile: u32) -> (Killed, SocketAddr) {
    let addr = std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap();
    let child = Command::new("prlimit")
        .arg(format!("--nofile={nofile}:{nofile}"))
        .arg(env!("CARGO_BIN_EXE_ws6455-server"))
        .args([
            "--mode",
            "echo",
            "--log",
            "warn",
            "--listen",
            &addr.to_string(),
        ])
        .stdin(Stdio::null())
        .stderr(Stdio::piped())
        .spawn()
        .expect("prlimit (util-linux) runs the server");
    let child = Killed(child);
    let deadline = Instant::now() + WAIT;
    while TcpStream::connect(addr).is_err() {
        assert!(Instant::now() < deadline, "the server did not start");
        std::thread::sleep(Duration::from_millis(20));
    }
    (child, addr)
}

/// CPU time (user + system) the process has used so far, in clock ticks.
fn cpu_ticks(pid: u32) -> u64 {
    let stat = std::fs::read_to_string(format!("/proc/{pid}/stat")).unwrap();
    // After the command's ")" the fields start at 3 (state); utime and stime are 14, 15.
    let fields: Vec<&str> = stat
        .rsplit_once(')')
        .unwrap()
        .1
        .split_whitespace()
        .collect();
    fields[11].parse::<u64>().unwrap() + fields[12].parse::<u64>().unwrap()
}

#[test]
fn out_of_descriptors_the_listener_neither_stalls_nor_spins() {
    const LIMIT: u32 = 32;
    let (child, addr) = server_with_few_descriptors(LIMIT);
    // More clients than the process has descriptors: the last ones wait in the backlog.
    let mut clients: Vec<TcpStream> = (0..LIMIT)
        .map(|_| TcpStream::connect(addr).unwrap())
        .collect();
    let answers: Vec<String> = clients
        .iter_mut()
        .map(|c| upgrade(c, Duration::from_millis(500)))
        .collect();
    let served: Vec<usize> = (0..clients.len())
        .filter(|&i| answers[i].starts_with("HTTP/1.1 101"))
        .collect();
    let waiting: Vec<usize> = (0..clients.len()).filter(|i| !served.contains(i)).collect();
    assert!(
        !waiting.is_empty(),
        "all {LIMIT} served under a limit of {LIMIT}"
    );
    assert!(
        served.len() >= waiting.len(),
        "served {} of {LIMIT}",
        served.len()
    );

    // Paused, not spinning: well under half a core while the backlog waits.
    let before = cpu_ticks(child.0.id());
    std::thread::sleep(Duration::from_secs(1));
    let spent = cpu_ticks(child.0.id()) - before;
    assert!(
        spent < 50,
        "{spent} ticks of CPU in one second while out of descriptors"
    );

    // Descriptors freed: the clients still in the backlog are served, with no new
    // connection to wake the listener.
    let mut waiting_clients: Vec<TcpStream> = Vec::new();
    for (i, client) in clients.into_iter().enumerate() {
        if waiting.contains(&i) {
            waiting_clients.push(client);
        }
    }
    for client in &mut waiting_clients {
        client.set_read_timeout(Some(WAIT)).unwrap();
        let answer = read_answer(client);
        assert!(answer.starts_with("HTTP/1.1 101"), "{answer:?}");
    }
    let mut child = child;
    let _ = child.0.kill();
    let _ = child.0.wait();
    let mut log = String::new();
    let _ = child.0.stderr.take().unwrap().read_to_string(&mut log);
    assert!(log.contains("cannot accept connections"), "{log}");
}

/// A peer still sending when the server fails its connection (here a message over
/// `max_message_size`, announced by its header) reads the Close with 1009. Closing with
/// unread input would answer the peer's next bytes with a reset, and a peer that stops at
/// its first failed write (Twisted, for one) never reads the Close waiting for it: the
/// server shuts its side down and drains what keeps coming for a while instead.
#[test]
fn a_peer_still_sending_an_oversized_message_reads_its_1009() {
    let options = ServerOptions {
        listen: "127.0.0.1:0".parse().unwrap(),
        limits: LoopConfig {
            protocol: ProtocolConfig {
                max_message_size: 1024,
                ..ProtocolConfig::default()
            },
            ..LoopConfig::default()
        },
        ..ServerOptions::default()
    };
    let server = WebSocketServer::new(Ends::default(), options).unwrap();
    // Without lingering, about one round in three lost its Close.
    for round in 0..10 {
        let close = raw::send_oversized_until_close(server.local_addr())
            .unwrap_or_else(|e| panic!("round {round}: {e}"));
        assert_eq!(close[2..4], [0x03, 0xF1], "round {round}: {close:?}");
    }
    server.terminate_with_timeout(Duration::ZERO);
}
