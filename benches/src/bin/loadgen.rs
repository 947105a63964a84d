//! Load generator: drives any WebSocket echo server at `ws://127.0.0.1:PORT/` from one
//! thread (mio, no async runtime) and reports what it measured on one line of
//! `key=value` pairs, for people and for `benches/compare.sh`.
//!
//!     loadgen echo --url ws://127.0.0.1:9000/ [--conns 100] [--size 64] [--in-flight 1]
//!                  [--text] [--seconds 3] [--warmup 0.5] [--server-pid PID] [--syscalls]
//!     loadgen idle --url ws://127.0.0.1:9000/ [--conns 10000] [--server-pid PID] [--hold 0]
//!
//! `echo`: opens `--conns` connections, then each keeps `--in-flight` messages of `--size`
//! bytes in flight: every echo that comes back is checked for its length and answered by
//! a new message at once. Over `--seconds` after a `--warmup`: messages/s (echoes
//! received), MB/s (payload bytes one way, 10^6), round-trip latency p50/p99/p99.9 (from
//! queueing a message to receiving its whole echo; 100 ns resolution), the connect rate,
//! and with `--server-pid` the server's CPU time per message (every thread's, from
//! /proc/PID/task/*/schedstat) and with `--syscalls` its system calls per message (from
//! `perf stat -e raw_syscalls:sys_enter`, when perf is installed and allowed).
//!
//! `idle`: opens `--conns` connections (at most 256 handshakes at a time), waits a second,
//! and with `--server-pid` reports the growth of the server's resident memory per
//! connection; then holds the connections for `--hold` seconds.
//!
//! Every frame we send is built once (masked, as RFC 6455 requires of a client) and
//! written from that one buffer with vectored writes, so the generator spends its core on
//! system calls, not on copies. Only addresses of this machine are accepted; every wait is
//! bounded.

use std::collections::VecDeque;
use std::io::{self, IoSlice, Read, Write};
use std::net::{IpAddr, SocketAddr};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use mio::net::TcpStream;
use mio::{Events, Interest, Poll, Token};
use ws6455_core::encoder::encode_frame;
use ws6455_core::frame::OpCode;

/// Handshakes in progress at a time: more would overflow the server's accept backlog.
const HANDSHAKES_AT_ONCE: usize = 256;
/// Longest wait for every connection to open.
const CONNECT_TIMEOUT: Duration = Duration::from_secs(60);
/// Latency histogram: 100 ns buckets up to 100 ms (slower samples land in the last one).
const BUCKET_NS: u64 = 100;
const BUCKETS: usize = 1_000_000;
/// Most frames handed to one `write_vectored` call.
const FRAMES_PER_WRITE: usize = 64;

struct Args {
    mode: String,
    addr: SocketAddr,
    host: String,
    path: String,
    conns: usize,
    size: usize,
    in_flight: usize,
    text: bool,
    seconds: f64,
    warmup: f64,
    server_pid: Option<u32>,
    syscalls: bool,
    hold: f64,
}

fn usage(error: &str) -> ! {
    eprintln!("loadgen: {error}\nusage: loadgen echo|idle --url ws://127.0.0.1:PORT/PATH [--conns N] [--size BYTES] [--in-flight D] [--text] [--seconds S] [--warmup S] [--server-pid PID] [--syscalls] [--hold S]");
    std::process::exit(2)
}

fn parse_args() -> Args {
    let mut raw = std::env::args().skip(1);
    let mode = raw.next().unwrap_or_else(|| usage("no mode"));
    if mode != "echo" && mode != "idle" {
        usage(&format!("unknown mode {mode:?}"));
    }
    let mut args = Args {
        conns: if mode == "idle" { 10_000 } else { 100 },
        mode,
        addr: SocketAddr::from(([127, 0, 0, 1], 0)),
        host: String::new(),
        path: "/".into(),
        size: 64,
        in_flight: 1,
        text: false,
        seconds: 3.0,
        warmup: 0.5,
        server_pid: None,
        syscalls: false,
        hold: 0.0,
    };
    let mut url = None;
    while let Some(flag) = raw.next() {
        let mut value = |name: &str| {
            raw.next()
                .unwrap_or_else(|| usage(&format!("{name} needs a value")))
        };
        fn number<T: std::str::FromStr>(flag: &str, text: String) -> T {
            text.parse()
                .unwrap_or_else(|_| usage(&format!("{flag}: not a number: {text:?}")))
        }
        match flag.as_str() {
            "--url" => url = Some(value("--url")),
            "--conns" => args.conns = number(&flag, value(&flag)),
            "--size" => args.size = number(&flag, value(&flag)),
            "--in-flight" => args.in_flight = number(&flag, value(&flag)),
            "--seconds" => args.seconds = number(&flag, value(&flag)),
            "--warmup" => args.warmup = number(&flag, value(&flag)),
            "--server-pid" => args.server_pid = Some(number(&flag, value(&flag))),
            "--hold" => args.hold = number(&flag, value(&flag)),
            "--text" => args.text = true,
            "--syscalls" => args.syscalls = true,
            _ => usage(&format!("unknown flag {flag:?}")),
        }
    }
    let url = url.unwrap_or_else(|| usage("--url is required"));
    let rest = url
        .strip_prefix("ws://")
        .unwrap_or_else(|| usage("only ws:// URLs"));
    let (authority, path) = match rest.find('/') {
        Some(i) => (&rest[..i], &rest[i..]),
        None => (rest, "/"),
    };
    let addr: SocketAddr = authority
        .parse()
        .unwrap_or_else(|_| usage("the URL's host must be an IP address and port"));
    if !addr.ip().is_loopback() {
        usage("load is only sent to addresses of this machine (127.0.0.1, ::1)");
    }
    if args.conns == 0
        || args.in_flight == 0
        || args.seconds.is_nan()
        || args.seconds <= 0.0
        || args.seconds > 600.0
    {
        usage("--conns and --in-flight must be > 0, --seconds in (0, 600]");
    }
    args.addr = addr;
    args.host = match addr.ip() {
        IpAddr::V4(ip) => format!("{ip}:{}", addr.port()),
        IpAddr::V6(ip) => format!("[{ip}]:{}", addr.port()),
    };
    args.path = path.to_owned();
    args
}

/// Where one connection is.
enum Phase {
    /// TCP connect in progress.
    Connecting,
    /// Request (partly) written, reading the response head.
    Handshake { written: usize, head: Vec<u8> },
    /// Upgraded.
    Open,
    /// Failed or closed by the server: counted, never touched again.
    Dead,
}

/// The reader's position in the server's frames (unmasked, RFC 6455 section 5.2).
#[derive(Default)]
struct FrameReader {
    header: [u8; 10],
    header_len: usize,
    payload_left: u64,
    in_payload: bool,
    fin: bool,
    control: bool,
    message_len: u64,
}

/// What a chunk of input held.
enum Input {
    Messages(u64),
    Close,
    Bad(String),
}

impl FrameReader {
    /// Consumes `bytes`, returning how many whole data messages ended in them; every
    /// message must be `expected` bytes long.
    fn feed(&mut self, mut bytes: &[u8], expected: u64) -> Input {
        let mut messages = 0;
        while !bytes.is_empty() {
            if !self.in_payload {
                let need = self.header_need();
                let take = (need - self.header_len).min(bytes.len());
                self.header[self.header_len..self.header_len + take]
                    .copy_from_slice(&bytes[..take]);
                self.header_len += take;
                bytes = &bytes[take..];
                if self.header_len < self.header_need() {
                    continue;
                }
                let b0 = self.header[0];
                if self.header[1] & 0x80 != 0 {
                    return Input::Bad("the server masked a frame".into());
                }
                let opcode = b0 & 0x0f;
                if opcode == 0x8 {
                    return Input::Close;
                }
                self.fin = b0 & 0x80 != 0;
                self.control = opcode >= 0x8;
                self.payload_left = match self.header[1] & 0x7f {
                    126 => u64::from(u16::from_be_bytes([self.header[2], self.header[3]])),
                    127 => u64::from_be_bytes(self.header[2..10].try_into().expect("8 bytes")),
                    n => u64::from(n),
                };
                self.header_len = 0;
                self.in_payload = true;
            }
            let take = self.payload_left.min(bytes.len() as u64);
            bytes = &bytes[take as usize..];
            self.payload_left -= take;
            if !self.control {
                self.message_len += take;
            }
            if self.payload_left == 0 {
                self.in_payload = false;
                if self.fin && !self.control {
                    if self.message_len != expected {
                        return Input::Bad(format!(
                            "an echo of {} bytes, {expected} were sent",
                            self.message_len
                        ));
                    }
                    self.message_len = 0;
                    messages += 1;
                }
            }
        }
        Input::Messages(messages)
    }

    /// Header bytes needed, as far as the bytes so far tell.
    fn header_need(&self) -> usize {
        if self.header_len < 2 {
            return 2;
        }
        match self.header[1] & 0x7f {
            126 => 4,
            127 => 10,
            _ => 2,
        }
    }
}

struct Conn {
    stream: TcpStream,
    phase: Phase,
    reader: FrameReader,
    /// Whole messages queued, the first `written` bytes into the first one.
    queued: usize,
    written: usize,
    /// When each message in flight was queued, oldest first (echoes come back in order).
    sent_at: VecDeque<Instant>,
}

/// The run's shared, read-only material and its tallies.
struct Run {
    frame: Vec<u8>,
    request: Vec<u8>,
    expected: u64,
    in_flight: usize,
    /// Set once every connection is open and the load starts.
    measuring_from: Option<Instant>,
    measuring_until: Option<Instant>,
    messages: u64,
    histogram: Vec<u32>,
}

impl Run {
    fn record(&mut self, now: Instant, sent: Instant) {
        let (Some(from), Some(until)) = (self.measuring_from, self.measuring_until) else {
            return;
        };
        if now < from || now >= until {
            return;
        }
        self.messages += 1;
        let bucket = (now.duration_since(sent).as_nanos() as u64 / BUCKET_NS) as usize;
        self.histogram[bucket.min(BUCKETS - 1)] += 1;
    }

    fn percentile_us(&self, fraction: f64) -> f64 {
        let total: u64 = self.histogram.iter().map(|&c| u64::from(c)).sum();
        let rank = ((total as f64) * fraction).ceil().max(1.0) as u64;
        let mut seen = 0;
        for (bucket, &count) in self.histogram.iter().enumerate() {
            seen += u64::from(count);
            if seen >= rank {
                // The bucket's middle.
                return (bucket as f64 + 0.5) * BUCKET_NS as f64 / 1000.0;
            }
        }
        f64::NAN
    }
}

/// Writes what `conn` has queued until the socket would block.
fn flush(conn: &mut Conn, run: &Run) -> io::Result<()> {
    while conn.queued > 0 {
        let count = conn.queued.min(FRAMES_PER_WRITE);
        let mut slices = [IoSlice::new(&[]); FRAMES_PER_WRITE];
        slices[0] = IoSlice::new(&run.frame[conn.written..]);
        for slice in &mut slices[1..count] {
            *slice = IoSlice::new(&run.frame);
        }
        let mut n = match conn.stream.write_vectored(&slices[..count]) {
            Ok(0) => return Err(io::ErrorKind::WriteZero.into()),
            Ok(n) => n,
            Err(e) if e.kind() == io::ErrorKind::WouldBlock => return Ok(()),
            Err(e) if e.kind() == io::ErrorKind::Interrupted => continue,
            Err(e) => return Err(e),
        };
        let first_left = run.frame.len() - conn.written;
        if n < first_left {
            conn.written += n;
            continue;
        }
        n -= first_left;
        conn.queued -= 1;
        conn.queued -= n / run.frame.len();
        conn.written = n % run.frame.len();
    }
    Ok(())
}

/// Queues `count` new messages on `conn`.
fn queue(conn: &mut Conn, count: usize, now: Instant) {
    conn.queued += count;
    for _ in 0..count {
        conn.sent_at.push_back(now);
    }
}

/// Advances `conn` on readiness; returns an error that ends the connection.
fn drive(conn: &mut Conn, run: &mut Run, buf: &mut [u8], started: bool) -> Result<(), String> {
    loop {
        match &mut conn.phase {
            Phase::Dead => return Ok(()),
            Phase::Connecting => {
                if let Some(e) = conn.stream.take_error().map_err(|e| e.to_string())? {
                    return Err(format!("connect: {e}"));
                }
                match conn.stream.peer_addr() {
                    Ok(_) => {
                        conn.phase = Phase::Handshake {
                            written: 0,
                            head: Vec::new(),
                        }
                    }
                    Err(e) if e.kind() == io::ErrorKind::NotConnected => return Ok(()),
                    Err(e) => return Err(format!("connect: {e}")),
                }
            }
            Phase::Handshake { written, head } => {
                while *written < run.request.len() {
                    match conn.stream.write(&run.request[*written..]) {
                        Ok(n) => *written += n,
                        Err(e) if e.kind() == io::ErrorKind::WouldBlock => return Ok(()),
                        Err(e) => return Err(format!("handshake write: {e}")),
                    }
                }
                let mut chunk = [0u8; 1024];
                loop {
                    if head.len() > 16 * 1024 {
                        return Err("response head over 16 KiB".into());
                    }
                    // One byte at a time would be slow; a read may carry frames past the
                    // head, which are kept below.
                    match conn.stream.read(&mut chunk) {
                        Ok(0) => return Err("closed during the handshake".into()),
                        Ok(n) => head.extend_from_slice(&chunk[..n]),
                        Err(e) if e.kind() == io::ErrorKind::WouldBlock => return Ok(()),
                        Err(e) => return Err(format!("handshake read: {e}")),
                    }
                    if let Some(end) = head.windows(4).position(|w| w == b"\r\n\r\n") {
                        if !head.starts_with(b"HTTP/1.1 101") {
                            let line = head.split(|&b| b == b'\r').next().unwrap_or_default();
                            return Err(format!("refused: {}", String::from_utf8_lossy(line)));
                        }
                        let rest = head[end + 4..].to_vec();
                        conn.phase = Phase::Open;
                        if !rest.is_empty() {
                            return Err("data before the first message".into());
                        }
                        break;
                    }
                }
            }
            Phase::Open => {
                if !started {
                    return Ok(());
                }
                loop {
                    match conn.stream.read(buf) {
                        Ok(0) => return Err("the server closed the connection".into()),
                        Ok(n) => match conn.reader.feed(&buf[..n], run.expected) {
                            Input::Messages(0) => {}
                            Input::Messages(m) => {
                                let now = Instant::now();
                                for _ in 0..m {
                                    let sent =
                                        conn.sent_at.pop_front().ok_or("an echo of nothing")?;
                                    run.record(now, sent);
                                }
                                queue(conn, m as usize, now);
                                // Answer before reading on, as a client would.
                                flush(conn, run).map_err(|e| format!("write: {e}"))?;
                            }
                            Input::Close => return Err("the server sent Close".into()),
                            Input::Bad(why) => return Err(why),
                        },
                        Err(e) if e.kind() == io::ErrorKind::WouldBlock => break,
                        Err(e) if e.kind() == io::ErrorKind::Interrupted => {}
                        Err(e) => return Err(format!("read: {e}")),
                    }
                }
                return flush(conn, run).map_err(|e| format!("write: {e}"));
            }
        }
    }
}

/// CPU time used so far by every thread of process `pid`, in nanoseconds.
fn cpu_ns(pid: u32) -> Option<u64> {
    let tasks = std::fs::read_dir(format!("/proc/{pid}/task")).ok()?;
    Some(
        tasks
            .filter_map(|task| {
                let text = std::fs::read_to_string(task.ok()?.path().join("schedstat")).ok()?;
                text.split_whitespace().next()?.parse::<u64>().ok()
            })
            .sum(),
    )
}

/// Counts the system calls of `pid` for `seconds` with perf, if perf can.
fn start_syscall_count(pid: u32, seconds: f64) -> Option<Child> {
    Command::new("perf")
        .args(["stat", "-x,", "-e", "raw_syscalls:sys_enter", "-p"])
        .arg(pid.to_string())
        .args(["--", "sleep", &format!("{seconds:.3}")])
        .stdout(Stdio::null())
        .stderr(Stdio::piped())
        .spawn()
        .ok()
}

fn finish_syscall_count(child: Child) -> Option<u64> {
    let output = child.wait_with_output().ok()?;
    let text = String::from_utf8_lossy(&output.stderr);
    text.lines()
        .find(|l| l.contains("raw_syscalls:sys_enter"))?
        .split(',')
        .next()?
        .trim()
        .parse()
        .ok()
}

fn main() {
    let args = parse_args();
    let opcode = if args.text {
        OpCode::Text
    } else {
        OpCode::Binary
    };
    let payload: Vec<u8> = (0..args.size).map(|i| b'a' + (i % 26) as u8).collect();
    let mut frame = Vec::with_capacity(args.size + 14);
    encode_frame(
        &mut frame,
        true,
        opcode,
        &payload,
        Some([0x37, 0xfa, 0x21, 0x3d]),
    );
    drop(payload);
    let request = format!(
        "GET {} HTTP/1.1\r\nHost: {}\r\nUpgrade: websocket\r\nConnection: Upgrade\r\nSec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==\r\nSec-WebSocket-Version: 13\r\n\r\n",
        args.path, args.host
    );
    let mut run = Run {
        frame,
        request: request.into_bytes(),
        expected: args.size as u64,
        in_flight: args.in_flight,
        measuring_from: None,
        measuring_until: None,
        messages: 0,
        histogram: vec![0; BUCKETS],
    };
    let rss_before = args.server_pid.and_then(ws6455_benches::rss_bytes);

    let mut poll = Poll::new().expect("poll");
    let mut events = Events::with_capacity(1024);
    let mut conns: Vec<Conn> = Vec::with_capacity(args.conns);
    let mut buf = vec![0u8; 256 * 1024];
    let connect_start = Instant::now();
    let mut open = 0;
    let mut failed = 0;
    // Connect phase: keep HANDSHAKES_AT_ONCE in progress until every connection is open.
    while open + failed < args.conns {
        while conns.len() < args.conns && conns.len() - open - failed < HANDSHAKES_AT_ONCE {
            let mut stream = match TcpStream::connect(args.addr) {
                Ok(s) => s,
                Err(e) => {
                    eprintln!("loadgen: connect: {e} (is ulimit -n high enough?)");
                    std::process::exit(1);
                }
            };
            let token = Token(conns.len());
            poll.registry()
                .register(&mut stream, token, Interest::READABLE | Interest::WRITABLE)
                .expect("register");
            conns.push(Conn {
                stream,
                phase: Phase::Connecting,
                reader: FrameReader::default(),
                queued: 0,
                written: 0,
                sent_at: VecDeque::with_capacity(args.in_flight),
            });
        }
        if connect_start.elapsed() > CONNECT_TIMEOUT {
            eprintln!(
                "loadgen: only {open} of {} connections open after {CONNECT_TIMEOUT:?}",
                args.conns
            );
            std::process::exit(1);
        }
        poll.poll(&mut events, Some(Duration::from_millis(100)))
            .expect("poll");
        for event in events.iter() {
            let conn = &mut conns[event.token().0];
            let was_open = matches!(conn.phase, Phase::Open);
            if matches!(conn.phase, Phase::Dead) {
                continue;
            }
            match drive(conn, &mut run, &mut buf, false) {
                Ok(()) if !was_open && matches!(conn.phase, Phase::Open) => open += 1,
                Ok(()) => {}
                Err(why) => {
                    if failed == 0 {
                        eprintln!("loadgen: a connection failed: {why}");
                    }
                    if was_open {
                        open -= 1;
                    }
                    conn.phase = Phase::Dead;
                    failed += 1;
                }
            }
        }
    }
    let connect_seconds = connect_start.elapsed().as_secs_f64();
    if failed > 0 {
        eprintln!("loadgen: {failed} of {} connections failed", args.conns);
        std::process::exit(1);
    }
    let connect_rate = args.conns as f64 / connect_seconds;

    if args.mode == "idle" {
        std::thread::sleep(Duration::from_secs(1));
        let mut line = format!(
            "mode=idle conns={} connect_per_s={connect_rate:.0}",
            args.conns
        );
        if let (Some(before), Some(after)) = (
            rss_before,
            args.server_pid.and_then(ws6455_benches::rss_bytes),
        ) {
            let per_conn = after.saturating_sub(before) as f64 / args.conns as f64;
            line += &format!(
                " server_rss_before={before} server_rss_after={after} bytes_per_conn={per_conn:.0}"
            );
        }
        println!("{line}");
        std::thread::sleep(Duration::from_secs_f64(args.hold.clamp(0.0, 3600.0)));
        return;
    }

    // Load phase.
    let start = Instant::now();
    let from = start + Duration::from_secs_f64(args.warmup);
    let until = from + Duration::from_secs_f64(args.seconds);
    run.measuring_from = Some(from);
    run.measuring_until = Some(until);
    for conn in &mut conns {
        queue(conn, run.in_flight, start);
        if let Err(e) = flush(conn, &run) {
            eprintln!("loadgen: write: {e}");
            std::process::exit(1);
        }
    }
    let mut cpu_from = None;
    let mut syscall_counter = None;
    let mut dead = 0;
    loop {
        let now = Instant::now();
        if now >= until {
            break;
        }
        if cpu_from.is_none() && now >= from {
            if let Some(pid) = args.server_pid {
                cpu_from = cpu_ns(pid);
                if args.syscalls {
                    syscall_counter = start_syscall_count(pid, (until - now).as_secs_f64());
                }
            }
        }
        let wait = if now < from { from - now } else { until - now };
        poll.poll(&mut events, Some(wait.min(Duration::from_millis(50))))
            .expect("poll");
        for event in events.iter() {
            let conn = &mut conns[event.token().0];
            if let Err(why) = drive(conn, &mut run, &mut buf, true) {
                if !matches!(conn.phase, Phase::Dead) {
                    eprintln!("loadgen: connection {}: {why}", event.token().0);
                    conn.phase = Phase::Dead;
                    dead += 1;
                }
            }
        }
    }
    let cpu_until = args.server_pid.and_then(cpu_ns);
    let syscalls = syscall_counter.and_then(finish_syscall_count);
    if dead > 0 {
        eprintln!("loadgen: {dead} connections failed during the run");
        std::process::exit(1);
    }
    let messages = run.messages;
    let per_s = messages as f64 / args.seconds;
    let mut line = format!(
        "mode=echo conns={} size={} in_flight={} messages={messages} msg_per_s={per_s:.0} mb_per_s={:.1} p50_us={:.1} p99_us={:.1} p999_us={:.1} connect_per_s={connect_rate:.0}",
        args.conns,
        args.size,
        args.in_flight,
        per_s * args.size as f64 / 1e6,
        run.percentile_us(0.50),
        run.percentile_us(0.99),
        run.percentile_us(0.999),
    );
    if let (Some(a), Some(b)) = (cpu_from, cpu_until) {
        line += &format!(
            " server_cpu_us_per_msg={:.3} server_cpu_share={:.2}",
            (b - a) as f64 / 1e3 / messages.max(1) as f64,
            (b - a) as f64 / 1e9 / args.seconds
        );
    }
    if let Some(count) = syscalls {
        line += &format!(
            " server_syscalls_per_msg={:.3}",
            count as f64 / messages.max(1) as f64
        );
    }
    println!("{line}");
}
