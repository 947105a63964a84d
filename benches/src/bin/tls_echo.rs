//! Load test: echo throughput over TLS as a ratio to plain TCP, measured in the same run.
//!
//!     cargo build --release -p ws6455-server -p ws6455-benches
//!     taskset -c 1 target/release/tls_echo [SECONDS_PER_RUN] [SERVER_BINARY] [FILTER]
//!
//! Starts two `ws6455-server --mode echo` child processes on free ports of 127.0.0.1, one
//! plain and one with a self-signed certificate made here (pinned to CPU 0 with `taskset`
//! when it is installed), and drives each with the ws6455 client: N connections, each
//! keeping D messages of S bytes in flight (every echo is sent back at once). Runs
//! alternate plain / TLS, three of each per workload, and the medians are printed with
//! the TLS/plain ratios: throughput, and the server's CPU time per message (from
//! /proc/PID/task/*/schedstat). Both sides pay for TLS here (our client encrypts too), and
//! the one-thread client is usually the side that saturates first, so the server's CPU
//! time per message is the better measure of what TLS costs a server. FILTER keeps the workloads whose name contains it.

use std::process::{Child, Command, Stdio};
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use ws6455_client::{ClientHandler, ClientOptions, Data, DataType, MessageEvent, WebSocket};

/// CPU time used so far by every thread of process `pid`, in nanoseconds (Linux
/// schedstat: precise, unlike the 10 ms ticks of /proc/PID/stat).
fn cpu_ns(pid: u32) -> u64 {
    let Ok(tasks) = std::fs::read_dir(format!("/proc/{pid}/task")) else {
        return 0;
    };
    tasks
        .filter_map(|task| {
            let text = std::fs::read_to_string(task.ok()?.path().join("schedstat")).ok()?;
            text.split_whitespace().next()?.parse::<u64>().ok()
        })
        .sum()
}

/// Kills the server when the run ends, however it ends.
struct Server(Child);

impl Drop for Server {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

/// A free port on 127.0.0.1 (the listener is closed before the server binds it).
fn free_port() -> u16 {
    let listener = std::net::TcpListener::bind("127.0.0.1:0").expect("bind");
    listener.local_addr().expect("local addr").port()
}

fn start_server(binary: &str, port: u16, tls: Option<&std::path::Path>) -> Server {
    let pinned = Command::new("taskset").arg("-V").output().is_ok();
    let mut command = if pinned {
        let mut c = Command::new("taskset");
        c.args(["-c", "0", binary]);
        c
    } else {
        Command::new(binary)
    };
    command.args(["--mode", "echo", "--log", "error", "--listen"]);
    command.arg(format!("127.0.0.1:{port}"));
    if let Some(dir) = tls {
        command.arg("--tls-cert").arg(dir.join("cert.pem"));
        command.arg("--tls-key").arg(dir.join("key.pem"));
    }
    let child = command
        .stdout(Stdio::null())
        .spawn()
        .unwrap_or_else(|e| panic!("cannot start {binary}: {e}"));
    let server = Server(child);
    let deadline = Instant::now() + Duration::from_secs(5);
    while std::net::TcpStream::connect(("127.0.0.1", port)).is_err() {
        assert!(Instant::now() < deadline, "the server did not start");
        std::thread::sleep(Duration::from_millis(20));
    }
    server
}

/// Sends every echo straight back while the run lasts; counts messages and bytes.
struct Bouncer {
    messages: Arc<AtomicU64>,
    bytes: Arc<AtomicU64>,
    running: Arc<AtomicBool>,
}

impl ClientHandler for Bouncer {
    fn data_type(&self) -> DataType {
        DataType::Blob
    }

    fn on_message(&self, ws: &WebSocket, event: MessageEvent) {
        let Data::Blob(payload) = event.data else {
            return;
        };
        self.messages.fetch_add(1, Ordering::Relaxed);
        self.bytes
            .fetch_add(payload.len() as u64, Ordering::Relaxed);
        if self.running.load(Ordering::Relaxed) {
            let _ = ws.send(Data::Blob(payload));
        }
    }
}

struct Workload {
    name: &'static str,
    connections: usize,
    size: usize,
    in_flight: usize,
}

/// One measured run.
struct Measured {
    messages_per_s: f64,
    bytes_per_s: f64,
    /// The server's CPU time per echoed message.
    server_ns_per_message: f64,
}

/// Runs `work` against the server `pid` at `url`: after a warm-up, messages and bytes (one
/// way) per second over `seconds`, and the server's CPU time per message.
fn run(url: &str, pid: u32, options: &ClientOptions, work: &Workload, seconds: f64) -> Measured {
    let messages = Arc::new(AtomicU64::new(0));
    let bytes = Arc::new(AtomicU64::new(0));
    let running = Arc::new(AtomicBool::new(true));
    let payload: Vec<u8> = (0..work.size).map(|i| (i % 251) as u8).collect();
    let mut sockets = Vec::new();
    for _ in 0..work.connections {
        let handler = Bouncer {
            messages: messages.clone(),
            bytes: bytes.clone(),
            running: running.clone(),
        };
        let ws = WebSocket::with_options(url, handler, options.clone()).expect("connect");
        for _ in 0..work.in_flight {
            ws.send(Data::Blob(payload.clone())).expect("send");
        }
        sockets.push(ws);
    }
    std::thread::sleep(Duration::from_millis(500));
    let (m0, b0, c0, t0) = (
        messages.load(Ordering::Relaxed),
        bytes.load(Ordering::Relaxed),
        cpu_ns(pid),
        Instant::now(),
    );
    std::thread::sleep(Duration::from_secs_f64(seconds));
    let (m1, b1, c1, elapsed) = (
        messages.load(Ordering::Relaxed),
        bytes.load(Ordering::Relaxed),
        cpu_ns(pid),
        t0.elapsed().as_secs_f64(),
    );
    running.store(false, Ordering::Relaxed);
    for ws in &sockets {
        let _ = ws.terminate(None, None);
    }
    for ws in &sockets {
        let _ = ws.wait(Some(Duration::from_secs(10)));
    }
    Measured {
        messages_per_s: (m1 - m0) as f64 / elapsed,
        bytes_per_s: (b1 - b0) as f64 / elapsed,
        server_ns_per_message: (c1 - c0) as f64 / (m1 - m0).max(1) as f64,
    }
}

fn median(mut values: Vec<f64>) -> f64 {
    values.sort_by(f64::total_cmp);
    values[values.len() / 2]
}

fn main() {
    let mut args = std::env::args().skip(1);
    let seconds: f64 = args.next().and_then(|s| s.parse().ok()).unwrap_or(3.0);
    let binary = args
        .next()
        .unwrap_or_else(|| "target/release/ws6455-server".to_owned());
    let filter = args.next().unwrap_or_default();
    let dir = std::env::temp_dir().join(format!("ws6455-tls-echo-{}", std::process::id()));
    std::fs::create_dir_all(&dir).expect("temp dir");
    let certified = rcgen::generate_simple_self_signed(vec!["localhost".to_owned()])
        .expect("self-signed certificate");
    std::fs::write(dir.join("cert.pem"), certified.cert.pem()).expect("write cert");
    std::fs::write(dir.join("key.pem"), certified.key_pair.serialize_pem()).expect("write key");
    let tls_config =
        ws6455_client::tls::client_config_with_extra_roots(certified.cert.pem().as_bytes())
            .expect("client config");

    let (plain_port, tls_port) = (free_port(), free_port());
    let plain_server = start_server(&binary, plain_port, None);
    let tls_server = start_server(&binary, tls_port, Some(&dir));
    let (plain_pid, tls_pid) = (plain_server.0.id(), tls_server.0.id());
    let plain_url = format!("ws://127.0.0.1:{plain_port}/");
    let tls_url = format!("wss://localhost:{tls_port}/");
    let plain_options = ClientOptions::default();
    let tls_options = ClientOptions {
        tls: Some(tls_config),
        ..ClientOptions::default()
    };

    let workloads = [
        Workload {
            name: "100 conns x 64 B, 16 in flight",
            connections: 100,
            size: 64,
            in_flight: 16,
        },
        Workload {
            name: "10 conns x 16 KiB, 1 in flight",
            connections: 10,
            size: 16 << 10,
            in_flight: 1,
        },
        Workload {
            name: "2 conns x 1 MiB, 1 in flight",
            connections: 2,
            size: 1 << 20,
            in_flight: 1,
        },
    ];
    println!("echo over TLS vs plain TCP, {seconds} s per run, medians of 3 (alternating)");
    println!(
        "{:<32} {:>11} {:>11} {:>10} {:>9} {:>6} {:>12} {:>10} {:>6}",
        "workload",
        "plain msg/s",
        "tls msg/s",
        "plain MB/s",
        "tls MB/s",
        "ratio",
        "plain srv us",
        "tls srv us",
        "ratio"
    );
    for work in workloads.iter().filter(|w| w.name.contains(&filter)) {
        let (mut plain, mut tls) = (Vec::new(), Vec::new());
        for _ in 0..3 {
            plain.push(run(&plain_url, plain_pid, &plain_options, work, seconds));
            tls.push(run(&tls_url, tls_pid, &tls_options, work, seconds));
        }
        let med = |runs: &[Measured], f: fn(&Measured) -> f64| median(runs.iter().map(f).collect());
        let plain_msgs = med(&plain, |r| r.messages_per_s);
        let tls_msgs = med(&tls, |r| r.messages_per_s);
        let plain_mb = med(&plain, |r| r.bytes_per_s) / 1e6;
        let tls_mb = med(&tls, |r| r.bytes_per_s) / 1e6;
        let plain_us = med(&plain, |r| r.server_ns_per_message) / 1e3;
        let tls_us = med(&tls, |r| r.server_ns_per_message) / 1e3;
        println!(
            "{:<32} {:>11.0} {:>11.0} {:>10.1} {:>9.1} {:>5.2}x {:>12.2} {:>10.2} {:>5.2}x",
            work.name,
            plain_msgs,
            tls_msgs,
            plain_mb,
            tls_mb,
            tls_msgs / plain_msgs,
            plain_us,
            tls_us,
            tls_us / plain_us
        );
    }
    let _ = std::fs::remove_dir_all(&dir);
}
