//! Across nodes through Redis (not in CI): publish on node A, receive on node B.
//!
//!     relay [--messages 20000] [--size 64] [--latency-messages 2000]
//!
//! Starts `redis-server` on a free port, two ws6455 servers in this process (each its own
//! backplane to that Redis), and one WebSocket client on node B subscribed to a topic.
//! Then:
//! - latency: `--latency-messages` publishes on node A, one every 500 us, each carrying
//!   its send time; p50 and p99 of publish-to-client-read;
//! - rate: `--messages` publishes with at most 4096 in flight (so nothing is dropped);
//!   messages per second received by the client.
//!
//! The baseline, measured in the same run: the same two figures for Redis alone (a
//! pipelined PUBLISH client and a SUBSCRIBE client of the `redis` crate), so the ratios
//! say what the WebSocket hop and the backplane's threads add. Only 127.0.0.1.

use std::io::{Read, Write};
use std::net::{SocketAddr, TcpListener, TcpStream};
use std::process::{Child, Command, Stdio};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use ws6455_server::{
    Backplane, ConnectionEvent, ConnectionHandler, MessageEvent, ServerHandler, ServerOptions,
    WebSocketConnection, WebSocketServer,
};

const TOPIC: &str = "bench";
const WINDOW: u64 = 4096;
const UPGRADE: &str = "GET / HTTP/1.1\r\nHost: 127.0.0.1\r\nUpgrade: websocket\r\nConnection: Upgrade\r\nSec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==\r\nSec-WebSocket-Version: 13\r\n\r\n";

struct Args {
    messages: u64,
    size: usize,
    latency_messages: u64,
}

fn parse_args() -> Args {
    let mut args = Args {
        messages: 20_000,
        size: 64,
        latency_messages: 2000,
    };
    let mut it = std::env::args().skip(1);
    while let Some(flag) = it.next() {
        let value: u64 = it.next().and_then(|v| v.parse().ok()).unwrap_or_else(|| {
            eprintln!("relay: {flag} needs a number");
            std::process::exit(2)
        });
        match flag.as_str() {
            "--messages" => args.messages = value.max(1),
            "--size" => args.size = (value as usize).max(16),
            "--latency-messages" => args.latency_messages = value.max(1),
            other => {
                eprintln!("relay: unknown argument {other}");
                std::process::exit(2)
            }
        }
    }
    args
}

struct Redis(Child);

impl Drop for Redis {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

fn start_redis() -> (Redis, u16) {
    let port = TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port();
    let child = Command::new("redis-server")
        .args(["--port", &port.to_string(), "--bind", "127.0.0.1"])
        .args(["--save", "", "--appendonly", "no"])
        .stdout(Stdio::null())
        .spawn()
        .expect("redis-server (Debian package redis-server)");
    let deadline = Instant::now() + Duration::from_secs(10);
    while TcpStream::connect(("127.0.0.1", port)).is_err() {
        assert!(Instant::now() < deadline, "redis-server did not start");
        std::thread::sleep(Duration::from_millis(20));
    }
    (Redis(child), port)
}

struct Joins;

impl ConnectionHandler for Joins {
    fn on_open(&self, ws: &WebSocketConnection) {
        ws.subscribe(TOPIC).expect("subscribe");
    }

    fn on_message(&self, _: &WebSocketConnection, _: MessageEvent) {}
}

struct Node;

impl ServerHandler for Node {
    fn on_connection(
        &self,
        _: &WebSocketServer,
        _: &ConnectionEvent,
    ) -> Option<Arc<dyn ConnectionHandler>> {
        Some(Arc::new(Joins))
    }
}

fn node(redis_port: u16) -> WebSocketServer {
    let mut options = ServerOptions {
        listen: "127.0.0.1:0".parse().unwrap(),
        ..ServerOptions::default()
    };
    options.topics.backplane = Some(Backplane::redis(format!("redis://127.0.0.1:{redis_port}")));
    WebSocketServer::new(Node, options).expect("node")
}

/// What the receiving side saw: a count and the latency of each timed message.
#[derive(Default)]
struct Received {
    count: AtomicU64,
    latencies: Mutex<Vec<u64>>,
}

impl Received {
    /// A payload starts with the send time in nanoseconds since `base` (16 hex digits);
    /// `0` marks an untimed message.
    fn record(&self, payload: &[u8], base: Instant) {
        if let Some(sent) = std::str::from_utf8(&payload[..16.min(payload.len())])
            .ok()
            .and_then(|t| u64::from_str_radix(t, 16).ok())
            .filter(|&t| t > 0)
        {
            let now = base.elapsed().as_nanos() as u64;
            self.latencies
                .lock()
                .unwrap()
                .push(now.saturating_sub(sent));
        }
        self.count.fetch_add(1, Ordering::Release);
    }
}

fn payload(base: Instant, timed: bool, size: usize) -> String {
    let stamp = if timed {
        base.elapsed().as_nanos() as u64
    } else {
        0
    };
    let mut text = format!("{stamp:016x}");
    text.extend(std::iter::repeat_n('x', size.saturating_sub(16)));
    text
}

/// Opens a WebSocket client on node B (handshake done on return) and reads its server
/// frames (unmasked) on a thread.
fn websocket_reader(addr: SocketAddr, received: Arc<Received>, base: Instant) {
    let mut stream = TcpStream::connect(addr).unwrap();
    stream.write_all(UPGRADE.as_bytes()).unwrap();
    let mut head = Vec::new();
    let mut byte = [0];
    while !head.ends_with(b"\r\n\r\n") {
        stream.read_exact(&mut byte).unwrap();
        head.push(byte[0]);
    }
    assert!(head.starts_with(b"HTTP/1.1 101"));
    std::thread::spawn(move || {
        let mut buf = Vec::new();
        let mut chunk = vec![0; 64 << 10];
        loop {
            let n = match stream.read(&mut chunk) {
                Ok(0) | Err(_) => return,
                Ok(n) => n,
            };
            buf.extend_from_slice(&chunk[..n]);
            let at = ws6455_benches::server_frames(&buf, |payload| received.record(payload, base));
            buf.drain(..at);
        }
    });
}

/// Publishes `count` messages through `publish`, paced either by time (`every`) or by
/// the receiver (at most [`WINDOW`] in flight); returns the elapsed time once all have
/// arrived.
fn drive(
    count: u64,
    every: Option<Duration>,
    received: &Received,
    mut publish: impl FnMut(bool),
) -> Duration {
    let start = Instant::now();
    let deadline = start + Duration::from_secs(120);
    for sent in 0..count {
        match every {
            Some(every) => {
                let at = start + every * sent as u32;
                while Instant::now() < at {
                    std::hint::spin_loop();
                }
                publish(true);
            }
            None => {
                while sent - received.count.load(Ordering::Acquire).min(sent) >= WINDOW {
                    assert!(Instant::now() < deadline, "messages stopped arriving");
                    std::thread::yield_now();
                }
                publish(false);
            }
        }
    }
    while received.count.load(Ordering::Acquire) < count {
        assert!(
            Instant::now() < deadline,
            "{} of {count} arrived",
            received.count.load(Ordering::Acquire)
        );
        std::thread::sleep(Duration::from_micros(200));
    }
    start.elapsed()
}

struct Figures {
    p50_us: f64,
    p99_us: f64,
    rate: f64,
}

fn percentiles(received: &Received) -> (f64, f64) {
    let mut latencies = std::mem::take(&mut *received.latencies.lock().unwrap());
    latencies.sort_unstable();
    let at = |q: f64| latencies[((latencies.len() - 1) as f64 * q) as usize] as f64 / 1000.0;
    (at(0.5), at(0.99))
}

fn through_nodes(args: &Args, redis_port: u16, base: Instant) -> Figures {
    let a = node(redis_port);
    let b = node(redis_port);
    let received = Arc::new(Received::default());
    websocket_reader(b.local_addr(), received.clone(), base);
    // Node B's Redis subscription follows its topics within milliseconds.
    let deadline = Instant::now() + Duration::from_secs(10);
    while b.subscriber_count(TOPIC) == 0 {
        assert!(Instant::now() < deadline, "the client did not join");
        std::thread::sleep(Duration::from_millis(5));
    }
    std::thread::sleep(Duration::from_millis(200));
    let every = Some(Duration::from_micros(500));
    drive(args.latency_messages, every, &received, |timed| {
        a.publish(TOPIC, payload(base, timed, args.size));
    });
    let (p50_us, p99_us) = percentiles(&received);
    received.count.store(0, Ordering::Release);
    let took = drive(args.messages, None, &received, |timed| {
        a.publish(TOPIC, payload(base, timed, args.size));
    });
    let lost = a.topic_stats().relay_lost + b.topic_stats().relay_lost;
    assert_eq!(lost, 0, "messages lost on the way");
    a.terminate_with_timeout(Duration::ZERO);
    b.terminate_with_timeout(Duration::ZERO);
    Figures {
        p50_us,
        p99_us,
        rate: args.messages as f64 / took.as_secs_f64(),
    }
}

fn redis_alone(args: &Args, redis_port: u16, base: Instant) -> Figures {
    let client = redis::Client::open(format!("redis://127.0.0.1:{redis_port}")).unwrap();
    let received = Arc::new(Received::default());
    let mut subscriber = client.get_connection().unwrap();
    let ready = Arc::new(AtomicU64::new(0));
    {
        let (received, ready) = (received.clone(), ready.clone());
        std::thread::spawn(move || {
            let mut pubsub = subscriber.as_pubsub();
            pubsub.subscribe("baseline").unwrap();
            ready.store(1, Ordering::Release);
            while let Ok(message) = pubsub.get_message() {
                received.record(message.get_payload_bytes(), base);
            }
        });
    }
    while ready.load(Ordering::Acquire) == 0 {
        std::thread::sleep(Duration::from_millis(5));
    }
    // Publishes leave in batches, as the backplane's publisher sends them.
    let (tx, rx) = std::sync::mpsc::sync_channel::<String>(8192);
    let mut publisher = client.get_connection().unwrap();
    std::thread::spawn(move || {
        while let Ok(first) = rx.recv() {
            let mut pipe = redis::pipe();
            pipe.cmd("PUBLISH").arg("baseline").arg(first).ignore();
            for more in rx.try_iter().take(255) {
                pipe.cmd("PUBLISH").arg("baseline").arg(more).ignore();
            }
            pipe.query::<()>(&mut publisher).unwrap();
        }
    });
    let every = Some(Duration::from_micros(500));
    drive(args.latency_messages, every, &received, |timed| {
        tx.send(payload(base, timed, args.size)).unwrap();
    });
    let (p50_us, p99_us) = percentiles(&received);
    received.count.store(0, Ordering::Release);
    let took = drive(args.messages, None, &received, |timed| {
        tx.send(payload(base, timed, args.size)).unwrap();
    });
    Figures {
        p50_us,
        p99_us,
        rate: args.messages as f64 / took.as_secs_f64(),
    }
}

fn main() {
    let args = parse_args();
    let (_redis, port) = start_redis();
    let base = Instant::now();
    let baseline = redis_alone(&args, port, base);
    let nodes = through_nodes(&args, port, base);
    println!(
        "{} B messages; latency over {} publishes (one per 500 us), rate over {} (4096 in flight):",
        args.size, args.latency_messages, args.messages
    );
    println!("| path | p50 us | p99 us | messages/s |");
    println!("| --- | --- | --- | --- |");
    for (name, f) in [
        ("Redis alone (redis crate, PUBLISH -> SUBSCRIBE)", &baseline),
        (
            "node A publish -> Redis -> node B -> WebSocket client",
            &nodes,
        ),
    ] {
        println!(
            "| {name} | {:.0} | {:.0} | {:.0} |",
            f.p50_us, f.p99_us, f.rate
        );
    }
    println!(
        "nodes / Redis alone: p50 {:.2}x, p99 {:.2}x, rate {:.2}x",
        nodes.p50_us / baseline.p50_us,
        nodes.p99_us / baseline.p99_us,
        nodes.rate / baseline.rate
    );
}
