//! `ws6455-client`: a command-line WebSocket client (think websocat) on the ws6455 engine.

use std::io::{BufRead, Write};
use std::process::ExitCode;
use std::sync::atomic::{AtomicBool, AtomicU16, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use ws6455_client::{
    ClientHandler, ClientOptions, Data, ErrorEvent, LoopConfig, MessageEvent, ProtocolConfig,
    WebSocket,
};

const USAGE: &str = "\
ws6455-client: talk to a WebSocket server from the terminal.

USAGE:
    ws6455-client [OPTIONS] URL

Sends every line read from stdin as a message, prints every message received on stdout
(one per line; binary as hex unless --raw). At the end of stdin it waits until the server
has been quiet for --linger seconds (so that answers are not cut off), then closes the
connection (code 1000, or --close-code) and waits for the server's answer.

EXIT STATUS:
    0  the connection closed normally (1000, no status, or the code we closed with)
    1  it closed otherwise (the code and reason are printed on stderr)
    2  it could not be opened (the reason is printed on stderr), or bad arguments

OPTIONS:
    -H, --header 'NAME: VALUE'  extra handshake header (repeatable; cookies as one
                                'Cookie: a=1; b=2')
    --protocol NAME             subprotocol to offer (repeatable, in preference order)
    --binary                    send each stdin line as a binary message
    --raw                       print received binary messages as raw bytes, not hex
    --ping-interval SECONDS     send a Ping after this long without input; drop the
                                connection if no answer in 20 s [default: 20; 0: off]
    --close-code CODE           close with CODE (1000 or 3000-4999) at the end of stdin
    --close-reason TEXT         the reason sent with it
    --linger SECONDS            quiet time awaited after the end of stdin [default: 0.5]
    --timeout SECONDS           connect and handshake timeout [default: 10]
    --deflate                   offer permessage-deflate (RFC 7692) compression
    -v, --verbose               say on stderr what was negotiated (subprotocol, extensions)
                                and log the engine's debug records
    --ca FILE                   for wss://: trust the CA certificate(s) in this PEM file
                                (a self-signed server certificate itself works too)
    --insecure                  for wss://: do not check the server's certificate at
                                all (tests only: a warning is printed on every connect)
                                besides the built-in Mozilla roots (private CA,
                                self-signed certificate)
    -h, --help                  print this help

EXAMPLES:
    ws6455-client ws://127.0.0.1:8080/ws
    ws6455-client --ca cert.pem wss://localhost:8443/ws
    echo hello | ws6455-client -H 'Cookie: session=abc' ws://[::1]:9001/echo
";

struct Args {
    url: String,
    headers: Vec<(String, String)>,
    protocols: Vec<String>,
    binary: bool,
    raw: bool,
    ping_interval: Option<Duration>,
    close_code: u16,
    close_reason: String,
    linger: Duration,
    timeout: Duration,
    ca: Option<std::path::PathBuf>,
    insecure: bool,
    deflate: bool,
    verbose: bool,
}

fn seconds(flag: &str, value: &str) -> Result<Duration, String> {
    value
        .parse::<f64>()
        .ok()
        .filter(|s| s.is_finite() && *s > 0.0 && *s < 1e9)
        .map(Duration::from_secs_f64)
        .ok_or(format!(
            "{flag} needs a positive number of seconds, not {value:?}"
        ))
}

fn parse_args() -> Result<Option<Args>, String> {
    let mut args = std::env::args().skip(1);
    let mut parsed = Args {
        url: String::new(),
        headers: Vec::new(),
        protocols: Vec::new(),
        binary: false,
        raw: false,
        ping_interval: ProtocolConfig::default().ping_interval,
        close_code: 1000,
        close_reason: String::new(),
        linger: Duration::from_millis(500),
        timeout: Duration::from_secs(10),
        ca: None,
        insecure: false,
        deflate: false,
        verbose: false,
    };
    let mut url = None;
    while let Some(arg) = args.next() {
        let mut value = |flag: &str| args.next().ok_or(format!("{flag} needs a value"));
        match arg.as_str() {
            "-h" | "--help" => return Ok(None),
            "-H" | "--header" => {
                let header = value(&arg)?;
                let (name, v) = header
                    .split_once(':')
                    .ok_or(format!("header {header:?} is not 'NAME: VALUE'"))?;
                parsed
                    .headers
                    .push((name.trim().to_owned(), v.trim().to_owned()));
            }
            "--protocol" => parsed.protocols.push(value(&arg)?),
            "--binary" => parsed.binary = true,
            "--raw" => parsed.raw = true,
            "--deflate" => parsed.deflate = true,
            "-v" | "--verbose" => parsed.verbose = true,
            "--ping-interval" => {
                let interval = value(&arg)?;
                parsed.ping_interval = match interval.as_str() {
                    "0" => None,
                    _ => Some(seconds(&arg, &interval)?),
                };
            }
            "--close-code" => {
                let code = value(&arg)?;
                parsed.close_code = code
                    .parse()
                    .ok()
                    .filter(|c| *c == 1000 || (3000..=4999).contains(c))
                    .ok_or(format!(
                        "--close-code must be 1000 or 3000-4999, not {code}"
                    ))?;
            }
            "--close-reason" => parsed.close_reason = value(&arg)?,
            "--timeout" => parsed.timeout = seconds(&arg, &value(&arg)?)?,
            "--ca" => parsed.ca = Some(value(&arg)?.into()),
            "--insecure" => parsed.insecure = true,
            "--linger" => {
                let text = value(&arg)?;
                parsed.linger = match text.as_str() {
                    "0" => Duration::ZERO,
                    _ => seconds(&arg, &text)?,
                };
            }
            flag if flag.starts_with('-') => return Err(format!("unknown option {flag}")),
            _ if url.is_some() => return Err(format!("unexpected argument {arg:?}")),
            _ => url = Some(arg),
        }
    }
    parsed.url = url.ok_or("missing URL (try --help)")?;
    if parsed.close_reason.len() > 123 {
        return Err("--close-reason is longer than 123 bytes".into());
    }
    Ok(Some(parsed))
}

struct Terminal {
    headers: Vec<(String, String)>,
    protocols: Vec<String>,
    raw: bool,
    /// When the last message arrived (for --linger).
    last_message: Arc<Mutex<Instant>>,
}

impl ClientHandler for Terminal {
    fn headers(&self) -> Vec<(String, String)> {
        self.headers.clone()
    }

    fn protocols(&self) -> Vec<String> {
        self.protocols.clone()
    }

    fn on_message(&self, _: &WebSocket, event: MessageEvent) {
        *self.last_message.lock().unwrap_or_else(|e| e.into_inner()) = Instant::now();
        let mut out = std::io::stdout().lock();
        // A closed stdout (a pipe into `head`) is not this connection's problem.
        let _ = match event.data {
            Data::Text(text) => writeln!(out, "{text}"),
            Data::Blob(bytes) if self.raw => out.write_all(&bytes),
            Data::Blob(bytes) => {
                let hex: String = bytes.iter().map(|b| format!("{b:02x}")).collect();
                writeln!(out, "{hex}")
            }
            Data::Object(value) => writeln!(out, "{value}"),
        };
        let _ = out.flush();
    }

    fn on_error(&self, _: &WebSocket, event: ErrorEvent) {
        for error in event.errors {
            eprintln!("ws6455-client: {}", error.message);
        }
    }
}

/// Sends `data`, waiting while the outgoing buffer is full (a fast stdin, a slow
/// server): input is never dropped for backpressure. Fails when the connection ends.
fn send_waiting(ws: &WebSocket, data: Data) -> Result<(), ws6455_client::SendError> {
    loop {
        match ws.send(data.clone()) {
            Err(ws6455_client::SendError::BufferFull { .. }) => {
                std::thread::sleep(Duration::from_millis(5));
            }
            other => return other,
        }
    }
}

fn main() -> ExitCode {
    let args = match parse_args() {
        Ok(Some(args)) => args,
        Ok(None) => {
            print!("{USAGE}");
            return ExitCode::SUCCESS;
        }
        Err(e) => {
            eprintln!("ws6455-client: {e}");
            return ExitCode::from(2);
        }
    };
    // The engine's own records (see the README's logging table): warnings, or all of
    // them with --verbose.
    ws6455_api::install_stderr_logger(if args.verbose {
        log::LevelFilter::Debug
    } else {
        log::LevelFilter::Warn
    });
    let tls = match &args.ca {
        Some(_) if args.insecure => {
            eprintln!("ws6455-client: --ca and --insecure contradict each other: choose one");
            return ExitCode::from(2);
        }
        None if args.insecure => {
            eprintln!(
                "ws6455-client: warning: --insecure: the server's certificate is not checked; \
                 anyone on the path can read and change this connection"
            );
            Some(ws6455_client::tls::client_config_without_verification())
        }
        None => None,
        Some(file) => match ws6455_client::tls::client_config_with_extra_roots_file(file) {
            Ok(config) => Some(config),
            Err(e) => {
                eprintln!("ws6455-client: --ca: {e}");
                return ExitCode::from(2);
            }
        },
    };
    let options = ClientOptions {
        connect_timeout: args.timeout,
        tls,
        limits: LoopConfig {
            protocol: ProtocolConfig {
                ping_interval: args.ping_interval,
                deflate: args.deflate.then(ws6455_client::DeflateConfig::default),
                ..ProtocolConfig::default()
            },
            ..LoopConfig::default()
        },
        ..ClientOptions::default()
    };
    let last_message = Arc::new(Mutex::new(Instant::now()));
    let handler = Terminal {
        headers: args.headers,
        protocols: args.protocols,
        raw: args.raw,
        last_message: last_message.clone(),
    };
    let ws = match WebSocket::with_options(&args.url, handler, options) {
        Ok(ws) => ws,
        Err(e) => {
            eprintln!("ws6455-client: {e}");
            return ExitCode::from(2);
        }
    };
    if args.verbose {
        let headers = ws.response_headers();
        eprintln!(
            "ws6455-client: connected to {} (subprotocol: {}; extensions: {})",
            args.url,
            ws.subprotocol().unwrap_or("none"),
            headers.get("sec-websocket-extensions").unwrap_or("none")
        );
    }
    // The code we close with, once stdin ends (0: the server closed first).
    let our_code = Arc::new(AtomicU16::new(0));
    let sender = ws.clone();
    let closing = our_code.clone();
    let input_lost = Arc::new(AtomicBool::new(false));
    let lost = input_lost.clone();
    let (binary, code, reason, linger) =
        (args.binary, args.close_code, args.close_reason, args.linger);
    // Stdin is read on its own thread: the process ends when the connection does, even
    // while a read is blocked.
    std::thread::spawn(move || {
        let mut stdin = std::io::stdin().lock();
        let mut line = Vec::new();
        loop {
            line.clear();
            match stdin.read_until(b'\n', &mut line) {
                Ok(0) => break,
                Ok(_) => {}
                Err(e) => {
                    eprintln!("ws6455-client: cannot read stdin: {e}");
                    lost.store(true, Ordering::SeqCst);
                    break;
                }
            }
            if line.ends_with(b"\n") {
                line.pop();
                if line.ends_with(b"\r") {
                    line.pop();
                }
            }
            let data = if binary {
                Data::Blob(line.clone())
            } else {
                match String::from_utf8(line.clone()) {
                    Ok(text) => Data::Text(text),
                    Err(_) => {
                        eprintln!("ws6455-client: a line is not UTF-8 text (use --binary)");
                        lost.store(true, Ordering::SeqCst);
                        break;
                    }
                }
            };
            if let Err(e) = send_waiting(&sender, data) {
                if sender.status() == ws6455_client::Status::Connected {
                    eprintln!("ws6455-client: not sent: {e}");
                }
                lost.store(true, Ordering::SeqCst);
                break;
            }
        }
        // Answers to the last lines may still be on their way: wait for a quiet spell.
        *last_message.lock().unwrap_or_else(|e| e.into_inner()) = Instant::now();
        loop {
            let last = *last_message.lock().unwrap_or_else(|e| e.into_inner());
            let quiet = last.elapsed();
            if quiet >= linger {
                break;
            }
            std::thread::sleep(linger - quiet);
        }
        closing.store(code, Ordering::SeqCst);
        let _ = sender.terminate(Some(code), Some(&reason));
    });
    let end = ws.wait(None).expect("waits without a timeout");
    let ours = our_code.load(Ordering::SeqCst);
    let normal = end.was_clean && (end.code == 1000 || end.code == 1005 || end.code == ours);
    if normal && input_lost.load(Ordering::SeqCst) {
        eprintln!("ws6455-client: closed before all of stdin was sent");
        ExitCode::from(1)
    } else if normal {
        ExitCode::SUCCESS
    } else {
        eprintln!(
            "ws6455-client: connection closed: code {}{}{}",
            end.code,
            end.reason
                .as_deref()
                .map(|r| format!(", reason {r:?}"))
                .unwrap_or_default(),
            if end.was_clean { "" } else { " (not clean)" }
        );
        ExitCode::from(1)
    }
}
