//! `WebSocket`, the client: its handler trait, options, and the loop that drives it.

use std::fmt;
use std::sync::{Arc, Condvar, Mutex};
use std::time::{Duration, Instant};

use ws6455_api::{
    Bridge, ConnHandle, Data, DataType, Endpoint, ErrorEvent, MessageEvent, TerminateEvent,
};
use ws6455_core::handshake::Headers;
use ws6455_mio::{EventLoop, Handler, LoopConfig, LoopHandle, SendError, Status};

use crate::connect::{open, Offer};
use crate::error::ConnectError;
use ws6455_core::url::WsUrl;

/// Callbacks and handshake settings of one client connection. Only `on_message` is
/// mandatory.
///
/// Order guarantee: `on_open` once, then `on_message` any number of times, then at most
/// one `on_error` (which stops the processing of the connection), then `on_terminate`
/// exactly once, last. Callbacks run on the client's loop thread; a panic in one is
/// caught and fails this connection only (`on_error`, then close 1011).
pub trait ClientHandler: std::any::Any + Send + Sync {
    /// How messages are delivered: text (the default), blob or object (JSON).
    fn data_type(&self) -> DataType {
        DataType::Text
    }

    /// Extra handshake headers; a name may repeat (one line each). Cookies go in one
    /// `Cookie` header: `("Cookie", "a=1; b=2")`.
    fn headers(&self) -> Vec<(String, String)> {
        Vec::new()
    }

    /// Subprotocols to offer, in order of preference.
    fn protocols(&self) -> Vec<String> {
        Vec::new()
    }

    /// The connection is open (`type = "open"`).
    fn on_open(&self, ws: &WebSocket) {
        let _ = ws;
    }

    /// A whole message arrived (`type = "message"`).
    fn on_message(&self, ws: &WebSocket, event: MessageEvent);

    /// An error occurred (`type = "error"`); the connection is being closed.
    fn on_error(&self, ws: &WebSocket, event: ErrorEvent) {
        let _ = (ws, event);
    }

    /// The connection closed: the server's code (1005 if its Close had none, 1006 when
    /// there was no closing handshake), its reason, and whether the close was clean.
    fn on_terminate(&self, ws: &WebSocket, event: TerminateEvent) {
        let _ = (ws, event);
    }
}

/// Connection settings beyond the URL and the handler.
#[derive(Clone, Debug)]
pub struct ClientOptions {
    /// Time allowed for DNS, TCP connect and the opening handshake together (default 10 s).
    pub connect_timeout: Duration,
    /// Limits, timeouts and backpressure of the connection once open (max message and
    /// frame size, close timeout, keepalive ping interval and pong deadline, idle timeout,
    /// max buffered outgoing bytes): the same options as the server's.
    pub limits: LoopConfig,
    /// The loop that drives the connection; `None`: the process-wide shared client loop.
    pub event_loop: Option<ClientLoop>,
    /// TLS settings for `wss://` URLs: which roots to trust, ALPN, protocol versions.
    /// `None` (the default) verifies servers against Mozilla's root set (`webpki-roots`).
    /// To trust a private CA or a self-signed certificate as well, use
    /// [`ws6455_mio::tls::client_config_with_extra_roots`].
    pub tls: Option<Arc<ws6455_mio::rustls::ClientConfig>>,
}

impl Default for ClientOptions {
    fn default() -> Self {
        ClientOptions {
            connect_timeout: Duration::from_secs(10),
            limits: LoopConfig::default(),
            event_loop: None,
            tls: None,
        }
    }
}

/// An event loop thread driving client connections. One is shared by every client of
/// the process unless a caller makes and passes its own ([`ClientOptions::event_loop`]):
/// thousands of clients do not mean thousands of threads.
#[derive(Clone)]
pub struct ClientLoop {
    handle: LoopHandle,
}

impl fmt::Debug for ClientLoop {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("ClientLoop").finish_non_exhaustive()
    }
}

impl ClientLoop {
    /// Starts a loop thread. It runs until [`shutdown`](Self::shutdown).
    pub fn new() -> std::io::Result<ClientLoop> {
        let (event_loop, handle) = EventLoop::unbound(Arc::new(LoopConfig::default()))?;
        std::thread::Builder::new()
            .name("ws6455-client-loop".into())
            .spawn(move || event_loop.run(Glue))?;
        Ok(ClientLoop { handle })
    }

    /// The process-wide loop, started on first use (and again if it was shut down).
    pub fn shared() -> Result<ClientLoop, ConnectError> {
        static SHARED: Mutex<Option<ClientLoop>> = Mutex::new(None);
        let mut shared = SHARED.lock().unwrap_or_else(|e| e.into_inner());
        match &*shared {
            Some(running) if !running.handle.is_stopped() => Ok(running.clone()),
            _ => {
                let started = ClientLoop::new().map_err(ConnectError::Io)?;
                *shared = Some(started.clone());
                Ok(started)
            }
        }
    }

    /// True once the loop's thread has finished (after [`shutdown`](Self::shutdown)):
    /// connecting through it then fails with [`ConnectError::LoopGone`].
    pub fn is_stopped(&self) -> bool {
        self.handle.is_stopped()
    }

    /// Closes every connection of this loop (1001; destroyed at `timeout` if given) and
    /// stops its thread.
    pub fn shutdown(&self, timeout: Option<Duration>) {
        self.handle.shutdown(timeout);
    }
}

struct Inner {
    conn: ConnHandle,
    handler: Arc<dyn ClientHandler>,
    url: String,
    data_type: DataType,
    subprotocol: Option<String>,
    response_headers: Headers,
    terminated: Mutex<Option<TerminateEvent>>,
    terminated_signal: Condvar,
}

/// A client connection (`ws` in the callbacks): a clonable, thread-safe handle.
#[derive(Clone)]
pub struct WebSocket {
    inner: Arc<Inner>,
}

impl fmt::Debug for WebSocket {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("WebSocket")
            .field("id", &self.id())
            .field("url", &self.inner.url)
            .field("status", &self.status())
            .finish()
    }
}

impl WebSocket {
    /// Connects to `url` (`ws://host[:port]path[?query]`) with default options and returns
    /// once the opening handshake is done, or says why it could not be (see
    /// [`ConnectError`]). `on_open` follows on the loop thread. It blocks the calling
    /// thread for up to the connect timeout: called from a callback, it holds up every
    /// connection of that loop meanwhile.
    pub fn new(url: &str, handler: impl ClientHandler) -> Result<WebSocket, ConnectError> {
        Self::with_options(url, handler, ClientOptions::default())
    }

    /// [`new`](Self::new) with options.
    pub fn with_options(
        url: &str,
        handler: impl ClientHandler,
        options: ClientOptions,
    ) -> Result<WebSocket, ConnectError> {
        let parsed = WsUrl::parse(url)?;
        let event_loop = match options.event_loop {
            Some(event_loop) => event_loop,
            None => ClientLoop::shared()?,
        };
        let handler: Arc<dyn ClientHandler> = Arc::new(handler);
        let headers = handler.headers();
        let headers: Vec<(&str, &str)> = headers
            .iter()
            .map(|(n, v)| (n.as_str(), v.as_str()))
            .collect();
        let protocols = handler.protocols();
        let protocols: Vec<&str> = protocols.iter().map(String::as_str).collect();
        let offer = Offer {
            subprotocols: &protocols,
            headers: &headers,
            config: Arc::new(options.limits.protocol.clone()),
        };
        let upgraded = open(&parsed, &offer, options.tls, options.connect_timeout)?;
        let data_type = handler.data_type();
        let mut ws = None;
        let response = upgraded.connected.response;
        let adopted = event_loop.handle.adopt(
            upgraded.stream,
            upgraded.connected.connection,
            &options.limits,
            |shared| {
                let made = WebSocket {
                    inner: Arc::new(Inner {
                        conn: ConnHandle::new(shared.clone(), event_loop.handle.clone()),
                        handler,
                        url: url.to_owned(),
                        data_type,
                        subprotocol: response.subprotocol,
                        response_headers: response.headers,
                        terminated: Mutex::new(None),
                        terminated_signal: Condvar::new(),
                    }),
                };
                ws = Some(made.clone());
                Bridge(made)
            },
        );
        match (adopted, ws) {
            (Ok(_), Some(ws)) => Ok(ws),
            _ => Err(ConnectError::LoopGone),
        }
    }

    /// The connection's identifier, unique in the process.
    pub fn id(&self) -> u64 {
        self.inner.conn.id()
    }

    /// The URL as given to [`new`](Self::new).
    pub fn url(&self) -> &str {
        &self.inner.url
    }

    /// `Connected`, `Closing` or `Closed` (a `WebSocket` exists only once connected).
    pub fn status(&self) -> Status {
        self.inner.conn.status()
    }

    /// How messages are delivered (from the handler).
    pub fn data_type(&self) -> DataType {
        self.inner.data_type
    }

    /// The handler given to [`new`](Self::new).
    pub fn handler(&self) -> &Arc<dyn ClientHandler> {
        &self.inner.handler
    }

    /// The handler given to [`new`](Self::new) as its own type, with its fields;
    /// `None` when it is of another type.
    pub fn handler_as<T: std::any::Any>(&self) -> Option<&T> {
        let handler: &dyn std::any::Any = &*self.inner.handler;
        handler.downcast_ref()
    }

    /// The subprotocol the server chose, one of those offered.
    pub fn subprotocol(&self) -> Option<&str> {
        self.inner.subprotocol.as_deref()
    }

    /// The headers of the server's 101 response (e.g. `Set-Cookie`), repeats kept.
    pub fn response_headers(&self) -> &Headers {
        &self.inner.response_headers
    }

    /// Sends text (a text frame), bytes (a binary frame) or a JSON value (a text frame of
    /// its serialisation), masked as a client must. Works from callbacks and from any
    /// thread; refused when the connection is not open or its outgoing buffer is at the
    /// cap.
    pub fn send(&self, data: impl Into<Data>) -> Result<(), SendError> {
        self.inner.conn.send(data.into())
    }

    /// Sends a Ping with up to 125 bytes of payload.
    pub fn ping(&self, payload: &[u8]) -> Result<(), SendError> {
        self.inner.conn.ping(payload)
    }

    /// Starts the closing handshake: `code` 1000 (the default) or 3000-4999, `reason` at
    /// most 123 bytes of UTF-8; anything else is refused and nothing is sent. The
    /// connection then waits for the server to close TCP (RFC 6455 7.1.1), at most the
    /// close timeout, and `on_terminate` reports the outcome.
    pub fn terminate(&self, code: Option<u16>, reason: Option<&str>) -> Result<(), SendError> {
        self.inner.conn.terminate(code, reason)
    }

    /// Outgoing bytes accepted by `send` and not yet written to the socket.
    pub fn buffered_amount(&self) -> usize {
        self.inner.conn.buffered_amount()
    }

    /// Blocks until `on_terminate` has run (or `timeout` passed) and returns its event.
    /// From a callback of this connection's loop it does not block (the loop could never
    /// get there): it returns the event if already there, else `None`.
    pub fn wait(&self, timeout: Option<Duration>) -> Option<TerminateEvent> {
        let timeout = if self.inner.conn.loop_handle().is_loop_thread() {
            Some(Duration::ZERO)
        } else {
            timeout
        };
        let deadline = timeout.map(|t| Instant::now() + t);
        let mut done = self
            .inner
            .terminated
            .lock()
            .unwrap_or_else(|e| e.into_inner());
        loop {
            if let Some(event) = &*done {
                return Some(event.clone());
            }
            done = match deadline {
                None => self
                    .inner
                    .terminated_signal
                    .wait(done)
                    .unwrap_or_else(|e| e.into_inner()),
                Some(deadline) => {
                    let left = deadline.checked_duration_since(Instant::now())?;
                    self.inner
                        .terminated_signal
                        .wait_timeout(done, left)
                        .unwrap_or_else(|e| e.into_inner())
                        .0
                }
            };
        }
    }
}

/// A client loop accepts no connections; its connections are adopted ones.
struct Glue;

impl Handler for Glue {
    type Conn = Bridge<WebSocket>;
}

impl Endpoint for WebSocket {
    fn data_type(&self) -> DataType {
        self.inner.data_type
    }

    fn on_open(&self) {
        self.inner.handler.on_open(self);
    }

    fn on_message(&self, event: MessageEvent) {
        self.inner.handler.on_message(self, event);
    }

    fn on_error(&self, event: ErrorEvent) {
        self.inner.handler.on_error(self, event);
    }

    fn on_terminate(&self, event: TerminateEvent) {
        // Whatever the handler does, waiters are released (the loop catches its panic).
        struct Release<'a>(&'a WebSocket, TerminateEvent);
        impl Drop for Release<'_> {
            fn drop(&mut self) {
                let inner = &self.0.inner;
                *inner.terminated.lock().unwrap_or_else(|e| e.into_inner()) = Some(self.1.clone());
                inner.terminated_signal.notify_all();
            }
        }
        let _release = Release(self, event.clone());
        self.inner.handler.on_terminate(self, event);
    }
}
