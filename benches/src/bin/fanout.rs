//! Local fan-out: one message to many subscribers of one loop (not in CI).
//!
//!     fanout [--subscribers 10000] [--messages 20] [--size 64] [--reps 3]
//!
//! Runs a ws6455 server (one loop thread) in a child process, connects `--subscribers`
//! clients to it, and has the server send `--messages` messages of `--size` bytes to every
//! client three ways, interleaved `--reps` times:
//! - `publish`: `WebSocketServer::publish` to a topic every client holds (one encoded
//!   frame, one fan-out command per loop);
//! - `broadcast`: `WebSocketServer::broadcast` (one encoded frame, one queued command
//!   per connection);
//! - `send loop`: `ws.send` for each of `wss.connections()`, the seeds' chat broadcast
//!   (one copy and one command per connection; the baseline).
//!
//! For each it reports the wall time per delivered message (until every client has all
//! of them), the server's CPU time per delivered message (from /proc), and its system
//! calls per delivered message (`perf stat -e raw_syscalls:sys_enter`, when perf works),
//! then the ratios to the send loop. Only 127.0.0.1; every wait is bounded.

use std::io::{BufRead, BufReader, Read, Write};
use std::net::SocketAddr;
use std::process::{Child, Command, Stdio};
use std::sync::Arc;
use std::time::{Duration, Instant};

use mio::net::TcpStream;
use mio::{Events, Interest, Poll, Token};
use ws6455_server::{
    ConnectionEvent, ConnectionHandler, Data, MessageEvent, ServerHandler, ServerOptions,
    WebSocketConnection, WebSocketServer,
};

const TOPIC: &str = "fan";
const UPGRADE: &str = "GET / HTTP/1.1\r\nHost: 127.0.0.1\r\nUpgrade: websocket\r\nConnection: Upgrade\r\nSec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==\r\nSec-WebSocket-Version: 13\r\n\r\n";

struct Args {
    subscribers: usize,
    messages: usize,
    size: usize,
    reps: usize,
}

fn parse_args() -> Result<Args, String> {
    let mut args = Args {
        subscribers: 10_000,
        messages: 20,
        size: 64,
        reps: 3,
    };
    let mut it = std::env::args().skip(1);
    while let Some(flag) = it.next() {
        if flag == "--serve" {
            serve();
        }
        let value: usize = it
            .next()
            .and_then(|v| v.parse().ok())
            .ok_or_else(|| format!("{flag} needs a number"))?;
        match flag.as_str() {
            "--subscribers" => args.subscribers = value.max(1),
            "--messages" => args.messages = value.max(1),
            "--size" => args.size = value,
            "--reps" => args.reps = value.max(1),
            other => return Err(format!("unknown argument {other}")),
        }
    }
    Ok(args)
}

/// The server side (child process): every connection joins the topic; a text command
/// `WAY COUNT SIZE` from any client sends COUNT messages of SIZE bytes to everyone.
struct Subscriber;

impl ConnectionHandler for Subscriber {
    fn on_open(&self, ws: &WebSocketConnection) {
        let _ = ws.subscribe(TOPIC);
    }

    fn on_message(&self, ws: &WebSocketConnection, event: MessageEvent) {
        let Data::Text(command) = event.data else {
            return;
        };
        let words: Vec<&str> = command.split(' ').collect();
        let [way, count, size] = words[..] else {
            return;
        };
        let (Ok(count), Ok(size)) = (count.parse::<usize>(), size.parse::<usize>()) else {
            return;
        };
        let server = ws.wss();
        let payload = "x".repeat(size);
        for _ in 0..count {
            match way {
                "publish" => {
                    server.publish(TOPIC, payload.as_str());
                }
                "broadcast" => {
                    server.broadcast(payload.as_str(), None);
                }
                _ => {
                    for member in server.connections() {
                        let _ = member.send(payload.as_str());
                    }
                }
            }
        }
    }
}

struct Server;

impl ServerHandler for Server {
    fn on_connection(
        &self,
        _: &WebSocketServer,
        _: &ConnectionEvent,
    ) -> Option<Arc<dyn ConnectionHandler>> {
        Some(Arc::new(Subscriber))
    }
}

fn serve() -> ! {
    let mut options = ServerOptions {
        listen: "127.0.0.1:0".parse().unwrap(),
        ..ServerOptions::default()
    };
    options.limits.protocol.ping_interval = None;
    let server = WebSocketServer::new(Server, options).expect("server");
    println!("{}", server.local_addr());
    std::io::stdout().flush().unwrap();
    // Ends with the parent (stdin closes).
    let _ = std::io::stdin().read(&mut [0]);
    std::process::exit(0);
}

/// A client connection and the bytes of a frame it has not finished reading.
struct Client {
    stream: TcpStream,
    pending: Vec<u8>,
    received: usize,
}

/// Counts whole frames in `data` (unmasked server frames); keeps the incomplete tail.
fn count_frames(client: &mut Client, data: &[u8]) {
    client.pending.extend_from_slice(data);
    let mut frames = 0;
    let used = ws6455_benches::server_frames(&client.pending, |_| frames += 1);
    client.received += frames;
    client.pending.drain(..used);
}

fn connect_all(addr: SocketAddr, count: usize, poll: &Poll) -> Vec<Client> {
    let mut clients = Vec::with_capacity(count);
    for i in 0..count {
        let mut std_stream = std::net::TcpStream::connect(addr).expect("connect");
        std_stream.write_all(UPGRADE.as_bytes()).unwrap();
        std_stream
            .set_read_timeout(Some(Duration::from_secs(10)))
            .unwrap();
        let mut head = Vec::new();
        let mut byte = [0];
        while !head.ends_with(b"\r\n\r\n") {
            std_stream.read_exact(&mut byte).expect("handshake answer");
            head.push(byte[0]);
            assert!(head.len() < 4096, "handshake answer too long");
        }
        assert!(head.starts_with(b"HTTP/1.1 101"), "refused");
        std_stream.set_nonblocking(true).unwrap();
        let mut stream = TcpStream::from_std(std_stream);
        poll.registry()
            .register(&mut stream, Token(i), Interest::READABLE)
            .unwrap();
        clients.push(Client {
            stream,
            pending: Vec::new(),
            received: 0,
        });
    }
    clients
}

fn cpu_ticks(pid: u32) -> u64 {
    let stat = std::fs::read_to_string(format!("/proc/{pid}/stat")).unwrap_or_default();
    let after = stat.rsplit(')').next().unwrap_or("");
    let fields: Vec<&str> = after.split_whitespace().collect();
    let field = |i: usize| {
        fields
            .get(i)
            .and_then(|f| f.parse::<u64>().ok())
            .unwrap_or(0)
    };
    // utime and stime: fields 14 and 15 of the line, 11 and 12 after the name.
    field(11) + field(12)
}

fn ticks_per_second() -> f64 {
    let out = Command::new("getconf").arg("CLK_TCK").output();
    out.ok()
        .and_then(|o| String::from_utf8(o.stdout).ok())
        .and_then(|s| s.trim().parse().ok())
        .unwrap_or(100.0)
}

/// `perf stat` counting the server's system calls, if perf works here.
struct SyscallCount(Option<Child>);

impl SyscallCount {
    fn start(pid: u32) -> Self {
        let child = Command::new("perf")
            .args(["stat", "-x,", "-e", "raw_syscalls:sys_enter", "-p"])
            .arg(pid.to_string())
            .stdout(Stdio::null())
            .stderr(Stdio::piped())
            .spawn()
            .ok();
        // perf needs a moment to attach.
        std::thread::sleep(Duration::from_millis(300));
        SyscallCount(child)
    }

    fn stop(self) -> Option<u64> {
        let child = self.0?;
        let _ = Command::new("kill")
            .args(["-INT", &child.id().to_string()])
            .status();
        let out = child.wait_with_output().ok()?;
        let text = String::from_utf8_lossy(&out.stderr);
        text.lines()
            .find(|l| l.contains("raw_syscalls:sys_enter"))
            .and_then(|l| l.split(',').next())
            .and_then(|n| n.trim().parse().ok())
    }
}

struct Figures {
    wall_ns: f64,
    cpu_ns: f64,
    syscalls: Option<f64>,
}

fn run_way(
    way: &str,
    args: &Args,
    clients: &mut [Client],
    poll: &mut Poll,
    server_pid: u32,
    tick_ns: f64,
) -> Figures {
    for client in clients.iter_mut() {
        client.received = 0;
    }
    let syscalls = SyscallCount::start(server_pid);
    let cpu_before = cpu_ticks(server_pid);
    let start = Instant::now();
    // A masked text frame with the command (mask of zeros: the payload as it is).
    let command = format!("{way} {} {}", args.messages, args.size);
    let mut frame = vec![0x81, 0x80 | command.len() as u8, 0, 0, 0, 0];
    frame.extend_from_slice(command.as_bytes());
    clients[0]
        .stream
        .write_all(&frame)
        .expect("send the command");
    let expected = args.messages;
    let mut done = 0;
    let mut events = Events::with_capacity(1024);
    let mut buf = vec![0u8; 64 << 10];
    let deadline = start + Duration::from_secs(120);
    // Edge-triggered: every socket is read until WouldBlock when it is reported.
    while done < clients.len() {
        assert!(
            Instant::now() < deadline,
            "{way}: {done} clients complete after 120 s"
        );
        poll.poll(&mut events, Some(Duration::from_millis(100)))
            .unwrap();
        for event in events.iter() {
            let client = &mut clients[event.token().0];
            let before = client.received;
            loop {
                match client.stream.read(&mut buf) {
                    Ok(0) => panic!("{way}: the server closed a connection"),
                    Ok(n) => count_frames(client, &buf[..n]),
                    Err(e) if e.kind() == std::io::ErrorKind::WouldBlock => break,
                    Err(e) => panic!("{way}: read failed: {e}"),
                }
            }
            if before < expected && client.received >= expected {
                done += 1;
            }
        }
    }
    let wall = start.elapsed();
    let cpu_ns = (cpu_ticks(server_pid) - cpu_before) as f64 * tick_ns;
    let delivered = (args.messages * clients.len()) as f64;
    Figures {
        wall_ns: wall.as_nanos() as f64 / delivered,
        cpu_ns: cpu_ns / delivered,
        syscalls: syscalls.stop().map(|n| n as f64 / delivered),
    }
}

fn median(mut values: Vec<f64>) -> f64 {
    values.sort_by(|a, b| a.total_cmp(b));
    values[values.len() / 2]
}

fn main() {
    let args = parse_args().unwrap_or_else(|e| {
        eprintln!("fanout: {e}");
        std::process::exit(2);
    });
    let mut child = Command::new(std::env::current_exe().unwrap())
        .arg("--serve")
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .spawn()
        .expect("start the server");
    let mut line = String::new();
    BufReader::new(child.stdout.take().unwrap())
        .read_line(&mut line)
        .unwrap();
    let addr: SocketAddr = line.trim().parse().expect("the server's address");
    let pid = child.id();
    let mut poll = Poll::new().unwrap();
    let mut clients = connect_all(addr, args.subscribers, &poll);
    // Every connection has joined the topic once its 101 is out (on_open runs first).
    let tick_ns = 1e9 / ticks_per_second();
    let ways = ["publish", "broadcast", "send-loop"];
    let mut results: Vec<Vec<Figures>> = ways.iter().map(|_| Vec::new()).collect();
    for _ in 0..args.reps {
        for (way, figures) in ways.iter().zip(results.iter_mut()) {
            figures.push(run_way(way, &args, &mut clients, &mut poll, pid, tick_ns));
        }
    }
    println!(
        "{} subscribers on one loop, {} messages of {} B each, {} reps (medians):",
        args.subscribers, args.messages, args.size, args.reps
    );
    println!("| way | wall ns/delivered | server CPU ns/delivered | syscalls/delivered |");
    println!("| --- | --- | --- | --- |");
    let summary: Vec<(f64, f64, Option<f64>)> = results
        .iter()
        .map(|f| {
            let syscalls: Vec<f64> = f.iter().filter_map(|f| f.syscalls).collect();
            (
                median(f.iter().map(|f| f.wall_ns).collect()),
                median(f.iter().map(|f| f.cpu_ns).collect()),
                (!syscalls.is_empty()).then(|| median(syscalls)),
            )
        })
        .collect();
    for (way, (wall, cpu, syscalls)) in ways.iter().zip(&summary) {
        let syscalls = syscalls.map_or("n/a".to_owned(), |s| format!("{s:.2}"));
        println!("| {way} | {wall:.0} | {cpu:.0} | {syscalls} |");
    }
    let base = summary[2];
    println!(
        "publish / send loop: wall {:.2}x, server CPU {:.2}x (lower is better)",
        summary[0].0 / base.0,
        summary[0].1 / base.1
    );
    drop(clients);
    drop(child.stdin.take());
    let _ = child.wait();
}
