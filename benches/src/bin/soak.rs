//! A soak run against a chat server (not in CI): many connections that chat (each line
//! is broadcast to the whole room), churn (a share reconnects every second) and, for a
//! share of raw TCP members, read slowly. Every 10 s it prints the server's resident
//! memory and open descriptors, the clients' state and what was received; at the end, a
//! summary. Exits 1 if a connection ended that the soak did not end itself.
//!
//!     ws6455-server --mode chat --listen 127.0.0.1:9100 --log warn &
//!     soak --url ws://127.0.0.1:9100/ws --server-pid $! [--conns 10000] [--seconds 600]
//!          [--churn 50] [--slow 100] [--chat-every-ms 100]
//!
//! Every loop is bounded in count and time; only 127.0.0.1 or ::1 is meant.

use std::io::{Read, Write};
use std::net::TcpStream;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use ws6455_benches::{open_fds, rss_bytes};
use ws6455_client::{ClientHandler, MessageEvent, TerminateEvent, WebSocket};

struct Args {
    url: String,
    server_pid: Option<u32>,
    conns: usize,
    seconds: u64,
    churn: usize,
    slow: usize,
    chat_every: Duration,
}

fn parse_args() -> Args {
    let mut args = Args {
        url: String::new(),
        server_pid: None,
        conns: 10_000,
        seconds: 600,
        churn: 50,
        slow: 100,
        chat_every: Duration::from_millis(100),
    };
    let mut it = std::env::args().skip(1);
    while let Some(flag) = it.next() {
        let value = it
            .next()
            .unwrap_or_else(|| usage(&format!("{flag} needs a value")));
        let number = || -> u64 {
            value
                .parse()
                .unwrap_or_else(|_| usage(&format!("{flag} {value}: not a number")))
        };
        match flag.as_str() {
            "--url" => args.url = value.clone(),
            "--server-pid" => args.server_pid = Some(number() as u32),
            "--conns" => args.conns = number() as usize,
            "--seconds" => args.seconds = number(),
            "--churn" => args.churn = number() as usize,
            "--slow" => args.slow = number() as usize,
            "--chat-every-ms" => args.chat_every = Duration::from_millis(number().max(1)),
            other => usage(&format!("unknown argument {other}")),
        }
    }
    if args.url.is_empty() {
        usage("--url is required");
    }
    args
}

fn usage(error: &str) -> ! {
    eprintln!("soak: {error}\nusage: soak --url WS_URL [--server-pid PID] [--conns N] [--seconds S] [--churn N/s] [--slow N] [--chat-every-ms MS]");
    std::process::exit(2);
}

/// What every member shares: counters, and the flag a member raises before the soak
/// closes it, so that its end is not counted as a loss.
#[derive(Default)]
struct Counters {
    received: AtomicU64,
    lost: AtomicU64,
}

struct Member {
    counters: Arc<Counters>,
    leaving: Arc<AtomicBool>,
}

impl ClientHandler for Member {
    fn on_message(&self, _: &WebSocket, _: MessageEvent) {
        self.counters.received.fetch_add(1, Ordering::Relaxed);
    }

    fn on_terminate(&self, _: &WebSocket, event: TerminateEvent) {
        if !self.leaving.load(Ordering::Relaxed) {
            eprintln!("soak: lost a connection: {} {:?}", event.code, event.reason);
            self.counters.lost.fetch_add(1, Ordering::Relaxed);
        }
    }
}

fn join(url: &str, counters: &Arc<Counters>) -> Option<(WebSocket, Arc<AtomicBool>)> {
    let leaving = Arc::new(AtomicBool::new(false));
    let member = Member {
        counters: counters.clone(),
        leaving: leaving.clone(),
    };
    match WebSocket::new(url, member) {
        Ok(ws) => Some((ws, leaving)),
        Err(e) => {
            eprintln!("soak: connect failed: {e}");
            counters.lost.fetch_add(1, Ordering::Relaxed);
            None
        }
    }
}

/// A member that speaks raw TCP and reads at most `per_tick` bytes per tick: the
/// server's output to it backs up.
struct SlowReader {
    stream: TcpStream,
    read: u64,
}

fn slow_reader(url: &ws6455_client::WsUrl) -> std::io::Result<SlowReader> {
    let mut stream = TcpStream::connect((url.host.as_str(), url.port))?;
    let request = format!(
        "GET {} HTTP/1.1\r\nHost: {}\r\nUpgrade: websocket\r\nConnection: Upgrade\r\n\
         Sec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==\r\nSec-WebSocket-Version: 13\r\n\r\n",
        url.resource,
        url.host_header()
    );
    stream.write_all(request.as_bytes())?;
    stream.set_read_timeout(Some(Duration::from_secs(10)))?;
    let mut head = Vec::new();
    let mut byte = [0u8];
    while !head.ends_with(b"\r\n\r\n") && head.len() < 4096 {
        stream.read_exact(&mut byte)?;
        head.push(byte[0]);
    }
    if !head.starts_with(b"HTTP/1.1 101") {
        return Err(std::io::Error::other("no 101"));
    }
    stream.set_nonblocking(true)?;
    Ok(SlowReader { stream, read: 0 })
}

fn main() {
    let args = parse_args();
    let url = ws6455_client::WsUrl::parse(&args.url).unwrap_or_else(|e| usage(&e.to_string()));
    let counters = Arc::new(Counters::default());
    let started = Instant::now();
    let mut members: Vec<(WebSocket, Arc<AtomicBool>)> = Vec::with_capacity(args.conns);
    for _ in 0..args.conns {
        if let Some(member) = join(&args.url, &counters) {
            members.push(member);
        }
    }
    let mut slow: Vec<SlowReader> = (0..args.slow)
        .filter_map(|_| slow_reader(&url).ok())
        .collect();
    eprintln!(
        "soak: {} members and {} slow readers joined in {:.1} s",
        members.len(),
        slow.len(),
        started.elapsed().as_secs_f64()
    );

    let end = Instant::now() + Duration::from_secs(args.seconds);
    let (mut next_chat, mut next_churn, mut next_report) =
        (Instant::now(), Instant::now(), Instant::now());
    let (mut lines, mut reconnects, mut seed) = (0u64, 0u64, 0x9e37_79b9_7f4a_7c15_u64);
    let mut random = move |n: usize| {
        // xorshift: a spread of members, the same on every run.
        seed ^= seed << 13;
        seed ^= seed >> 7;
        seed ^= seed << 17;
        (seed % n.max(1) as u64) as usize
    };
    let mut received_at_report = 0;
    let mut buf = [0u8; 256];
    println!("t_s,server_rss_mib,server_fds,members,slow,received_per_s,lines,reconnects,lost");
    while Instant::now() < end {
        let now = Instant::now();
        if now >= next_chat && !members.is_empty() {
            let (ws, _) = &members[random(members.len())];
            let _ = ws.send(format!("line {lines}"));
            lines += 1;
            next_chat = now + args.chat_every;
        }
        if now >= next_churn {
            for _ in 0..args.churn.min(members.len()) {
                let i = random(members.len());
                let (ws, leaving) = members.swap_remove(i);
                leaving.store(true, Ordering::Relaxed);
                let _ = ws.terminate(Some(1000), Some("churn"));
                if let Some(member) = join(&args.url, &counters) {
                    members.push(member);
                    reconnects += 1;
                }
            }
            // Slow readers take a little of what waits for them, once a second.
            for reader in &mut slow {
                if let Ok(n) = reader.stream.read(&mut buf) {
                    reader.read += n as u64;
                }
            }
            next_churn = now + Duration::from_secs(1);
        }
        if now >= next_report {
            let received = counters.received.load(Ordering::Relaxed);
            let pid = args.server_pid;
            println!(
                "{:.0},{:.1},{},{},{},{},{},{},{}",
                started.elapsed().as_secs_f64(),
                pid.and_then(rss_bytes).unwrap_or(0) as f64 / (1 << 20) as f64,
                pid.and_then(open_fds).unwrap_or(0),
                members.len(),
                slow.len(),
                (received - received_at_report) / 10,
                lines,
                reconnects,
                counters.lost.load(Ordering::Relaxed)
            );
            received_at_report = received;
            next_report = now + Duration::from_secs(10);
        }
        std::thread::sleep(Duration::from_millis(1));
    }
    for (ws, leaving) in &members {
        leaving.store(true, Ordering::Relaxed);
        let _ = ws.terminate(Some(1000), Some("soak over"));
    }
    let lost = counters.lost.load(Ordering::Relaxed);
    let slow_read: u64 = slow.iter().map(|r| r.read).sum();
    eprintln!(
        "soak: {:.0} s, {lines} lines sent, {} messages received, {reconnects} reconnects, \
         slow readers read {slow_read} bytes, {lost} connections lost",
        started.elapsed().as_secs_f64(),
        counters.received.load(Ordering::Relaxed)
    );
    std::process::exit(i32::from(lost > 0));
}
