//! `ws6455-server`: the chat demo (default) or an echo server, on the ws6455 engine.

use std::net::SocketAddr;
use std::process::ExitCode;
use std::sync::Arc;

use ws6455_server::{
    ConnectionEvent, ConnectionHandler, Data, ErrorEvent, HttpResponse, MessageEvent, OriginPolicy,
    Request, ServerHandler, ServerOptions, TerminateEvent, WebSocketConnection, WebSocketServer,
};

/// The chat room's topic.
const ROOM: &str = "chat";

const USAGE: &str = "\
ws6455-server: a WebSocket server (RFC 6455) built on the ws6455 engine.

USAGE:
    ws6455-server [OPTIONS]

OPTIONS:
    --listen ADDR            address to listen on [default: 127.0.0.1:8080]
    --mode chat|echo         chat: an HTML page at / and a chat room at /ws (the default);
                             echo: every message is sent back as it came (text as text,
                             binary as binary), on any path (used by the Autobahn suite)
    --path PATTERN           WebSocket path: exact (/ws) or a prefix (/rooms/*)
                             [default: /ws for chat, every path for echo]
    --threads N              event loop threads sharing the port [default: 1]
    --allow-origin ORIGIN    let pages from ORIGIN (https://app.example, null for file
                             pages) connect too; repeatable [default: the server's own
                             pages only, and clients that send no Origin]
    --allow-any-origin       let pages from any site connect (no cookies to protect)
    --max-message-size BYTES largest message accepted [default: 67108864]
    --log LEVEL              error | warn | info | debug [default: info]
    --deflate                accept permessage-deflate (RFC 7692) when a client offers it
    --tls-cert FILE          serve wss:// (and https:// for the chat page) with this PEM
                             certificate chain (end-entity certificate first)
    --tls-key FILE           the PEM private key of --tls-cert (PKCS#8, PKCS#1 or SEC1)
    --redis URL              share the chat room with every node started with the same
                             Redis (redis://127.0.0.1:6379): the room is a topic, and
                             Redis pub/sub carries it between nodes
    -h, --help               print this help

Ctrl-C or SIGTERM closes every connection with 1001 and exits.
";

#[derive(Clone, Copy, PartialEq, Eq)]
enum Mode {
    Chat,
    Echo,
}

struct Args {
    options: ServerOptions,
    mode: Mode,
    level: log::LevelFilter,
}

fn parse_args() -> Result<Option<Args>, String> {
    let mut options = ServerOptions::default();
    let mut mode = Mode::Chat;
    let mut path = None;
    let mut level = log::LevelFilter::Info;
    let (mut tls_cert, mut tls_key) = (None, None);
    let mut args = std::env::args().skip(1);
    while let Some(flag) = args.next() {
        if flag == "-h" || flag == "--help" {
            return Ok(None);
        }
        let mut value = || args.next().ok_or_else(|| format!("{flag} needs a value"));
        match flag.as_str() {
            "--listen" => {
                let text = value()?;
                options.listen = text
                    .parse::<SocketAddr>()
                    .map_err(|e| format!("--listen {text}: {e} (expected e.g. 127.0.0.1:8080)"))?;
            }
            "--mode" => {
                mode = match value()?.as_str() {
                    "chat" => Mode::Chat,
                    "echo" => Mode::Echo,
                    other => return Err(format!("--mode {other}: expected chat or echo")),
                }
            }
            "--path" => path = Some(value()?),
            "--allow-origin" => {
                let origin = value()?;
                match &mut options.allowed_origins {
                    OriginPolicy::SameHostAnd(list) => list.push(origin),
                    OriginPolicy::Any => {}
                    policy => *policy = OriginPolicy::SameHostAnd(vec![origin]),
                }
            }
            "--allow-any-origin" => options.allowed_origins = OriginPolicy::Any,
            "--threads" => {
                let text = value()?;
                options.threads = text
                    .parse()
                    .ok()
                    .filter(|n| (1..=256).contains(n))
                    .ok_or_else(|| format!("--threads {text}: expected 1 to 256"))?;
            }
            "--max-message-size" => {
                let text = value()?;
                let size: u64 = text.parse().ok().filter(|n| *n > 0).ok_or_else(|| {
                    format!("--max-message-size {text}: expected a positive number of bytes")
                })?;
                options.limits.protocol.max_message_size = size;
                options.limits.protocol.max_frame_size =
                    options.limits.protocol.max_frame_size.min(size);
            }
            "--log" => {
                level = match value()?.as_str() {
                    "error" => log::LevelFilter::Error,
                    "warn" => log::LevelFilter::Warn,
                    "info" => log::LevelFilter::Info,
                    "debug" => log::LevelFilter::Debug,
                    other => {
                        return Err(format!(
                            "--log {other}: expected error, warn, info or debug"
                        ))
                    }
                }
            }
            "--deflate" => {
                options.limits.protocol.deflate = Some(ws6455_server::DeflateConfig::default())
            }
            "--tls-cert" => tls_cert = Some(std::path::PathBuf::from(value()?)),
            "--tls-key" => tls_key = Some(std::path::PathBuf::from(value()?)),
            "--redis" => {
                options.topics.backplane = Some(ws6455_server::Backplane::redis(value()?));
            }
            other => return Err(format!("unknown argument {other}")),
        }
    }
    options.tls = match (tls_cert, tls_key) {
        (None, None) => None,
        (Some(cert), Some(key)) => Some(
            ws6455_server::tls::server_config_from_pem_files(&cert, &key)
                .map_err(|e| format!("--tls-cert/--tls-key: {e}"))?,
        ),
        _ => return Err("--tls-cert and --tls-key go together".to_owned()),
    };
    options.path = match (mode, path) {
        (_, Some(path)) => Some(path),
        (Mode::Chat, None) => Some("/ws".to_owned()),
        (Mode::Echo, None) => None,
    };
    Ok(Some(Args {
        options,
        mode,
        level,
    }))
}

struct App {
    mode: Mode,
    /// Every connection's handler: both kinds are stateless, so one is shared (an `Arc`
    /// per connection would be 32 bytes of every idle connection).
    handler: Arc<dyn ConnectionHandler>,
}

impl App {
    fn new(mode: Mode) -> Self {
        let handler: Arc<dyn ConnectionHandler> = match mode {
            Mode::Chat => Arc::new(ChatMember),
            Mode::Echo => Arc::new(Echo),
        };
        App { mode, handler }
    }
}

const CHAT_PAGE: &str = include_str!("../assets/chat.html");

impl ServerHandler for App {
    fn on_connection(
        &self,
        _: &WebSocketServer,
        event: &ConnectionEvent,
    ) -> Option<Arc<dyn ConnectionHandler>> {
        let request = &event.request;
        log::debug!("{} asks for {}", request.remote_address(), request.url());
        Some(self.handler.clone())
    }

    fn on_open(&self, server: &WebSocketServer) {
        let (http, ws) = if server.is_tls() {
            ("https", "wss")
        } else {
            ("http", "ws")
        };
        let addr = server.local_addr();
        match self.mode {
            Mode::Chat => log::info!("chat on {http}://{addr}/ (WebSocket at {ws}://{addr}/ws)"),
            Mode::Echo => log::info!("echo server on {ws}://{addr}/"),
        }
    }

    fn on_terminate(&self, _: &WebSocketServer) {
        log::info!("server terminated");
    }

    fn on_error(&self, _: &WebSocketServer, event: ErrorEvent) {
        // The engine already logged each of these at its level (see the README).
        for error in event.errors {
            log::debug!("server error: {error}");
        }
    }

    fn on_http_request(&self, _: &WebSocketServer, request: &Request) -> Option<HttpResponse> {
        match (self.mode, request.path()) {
            (Mode::Chat, "/") => Some(HttpResponse::ok("text/html; charset=utf-8", CHAT_PAGE)),
            (_, "/health") => Some(HttpResponse::ok("text/plain; charset=utf-8", "ok\n")),
            _ => None,
        }
    }
}

struct Echo;

impl ConnectionHandler for Echo {
    fn on_message(&self, ws: &WebSocketConnection, event: MessageEvent) {
        if let Err(e) = ws.send(event.data) {
            log::warn!("connection {}: echo refused: {e}", ws.id());
        }
    }

    fn on_error(&self, ws: &WebSocketConnection, event: ErrorEvent) {
        for error in event.errors {
            log::debug!("connection {}: {error}", ws.id());
        }
    }
}

/// A member of the chat room: subscribed to its topic, publishing to everyone else in it
/// (on this node and, with `--redis`, on every other).
struct ChatMember;

impl ChatMember {
    /// How the room calls a member: ids are unique per process, so with several nodes the
    /// node's port tells members apart.
    fn name(ws: &WebSocketConnection) -> String {
        let server = ws.wss();
        match server.backplane() {
            Some(_) => format!("client {}@{}", ws.id(), server.local_addr().port()),
            None => format!("client {}", ws.id()),
        }
    }
}

impl ConnectionHandler for ChatMember {
    fn on_open(&self, ws: &WebSocketConnection) {
        let name = Self::name(ws);
        if let Err(e) = ws.subscribe(ROOM) {
            log::warn!("{name}: cannot join the room: {e}");
            return;
        }
        let others = ws.wss().subscriber_count(ROOM).saturating_sub(1);
        let _ = ws.send(format!(
            "welcome! you are {name}; {others} other(s) here on this node"
        ));
        ws.publish(ROOM, format!("{name} connected"));
        log::info!("{name} connected from {}", ws.remote_address());
    }

    fn on_message(&self, ws: &WebSocketConnection, event: MessageEvent) {
        let text = match event.data {
            Data::Text(text) => text,
            Data::Blob(bytes) => format!("({} bytes of binary)", bytes.len()),
            Data::Object(value) => value.to_string(),
        };
        ws.publish(ROOM, format!("{}: {text}", Self::name(ws)));
    }

    fn on_terminate(&self, ws: &WebSocketConnection, event: TerminateEvent) {
        // Out of the room already: everyone left hears it.
        let name = Self::name(ws);
        ws.wss().publish(ROOM, format!("{name} disconnected"));
        log::info!("{name} disconnected (code {})", event.code);
    }
}

fn main() -> ExitCode {
    let args = match parse_args() {
        Ok(Some(args)) => args,
        Ok(None) => {
            print!("{USAGE}");
            return ExitCode::SUCCESS;
        }
        Err(message) => {
            eprintln!("ws6455-server: {message}\n\n{USAGE}");
            return ExitCode::from(2);
        }
    };
    ws6455_api::install_stderr_logger(args.level);
    let listen = args.options.listen;
    let server = match WebSocketServer::new(App::new(args.mode), args.options) {
        Ok(server) => server,
        Err(e) => {
            eprintln!("ws6455-server: cannot listen on {listen}: {e}");
            return ExitCode::FAILURE;
        }
    };
    let signals = signal_hook::iterator::Signals::new([
        signal_hook::consts::SIGINT,
        signal_hook::consts::SIGTERM,
    ]);
    match signals {
        Ok(mut signals) => {
            let handle = server.clone();
            std::thread::spawn(move || {
                if let Some(signal) = signals.forever().next() {
                    log::info!("signal {signal}: closing connections");
                    // Graceful: Close frames to everyone, forced after 5 seconds.
                    handle.terminate_with_timeout(std::time::Duration::from_secs(5));
                }
            });
        }
        Err(e) => log::warn!("no signal handling: {e}"),
    }
    server.wait(None);
    ExitCode::SUCCESS
}
