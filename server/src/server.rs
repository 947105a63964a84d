//! `WebSocketServer`: binds, runs the loops, and hands out connection handles.

use std::fmt;
use std::io;
use std::net::SocketAddr;
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::sync::{Arc, Condvar, Mutex};
use std::time::Duration;

use ws6455_core::handshake::OriginPolicy;
use ws6455_mio::{LoopConfig, LoopHandle, Outgoing};

use crate::backplane::Relay;
use crate::connection::{ConnectionHandler, WebSocketConnection};
use crate::table::ConnectionTable;
use crate::topics::{check_name, server_frame, TopicOptions, TopicStats, Topics};
use crate::types::{ConnectionEvent, HttpResponse, Request};
use crate::web::{wait_until_done, HttpSide, WebInner, WebOptions, WebServer};
use ws6455_api::{Data, DataType, Error, ErrorEvent};

/// Callbacks for the server. Only `on_connection` is mandatory.
pub trait ServerHandler: std::any::Any + Send + Sync {
    /// A client's opening handshake arrived (`type = "connection"`). Return a connection
    /// handler to accept it, or `None` to refuse it (HTTP 403, no upgrade).
    fn on_connection(
        &self,
        server: &WebSocketServer,
        event: &ConnectionEvent,
    ) -> Option<Arc<dyn ConnectionHandler>>;

    /// The server has started (`type = "open"`), before any connection is handled.
    fn on_open(&self, server: &WebSocketServer) {
        let _ = server;
    }

    /// The server has closed (`type = "terminate"`), after every connection's
    /// `on_terminate`.
    fn on_terminate(&self, server: &WebSocketServer) {
        let _ = server;
    }

    /// An error occurred on the server (`type = "error"`): a refused handshake, a failing
    /// TLS handshake, a panic in one of this handler's callbacks (`on_connection`,
    /// `select_subprotocol`, `on_http_request`, `on_open`, `on_terminate`: code 500,
    /// component `"server"`), the listener out of descriptors, the Redis
    /// backplane unreachable (once per outage). May run on a loop thread or on the
    /// backplane's.
    fn on_error(&self, server: &WebSocketServer, event: ErrorEvent) {
        let _ = (server, event);
    }

    /// A plain HTTP request (no WebSocket upgrade) arrived on the port: answer it (a page,
    /// a health check) or return `None` for 426 Upgrade Required.
    fn on_http_request(&self, server: &WebSocketServer, request: &Request) -> Option<HttpResponse> {
        let _ = (server, request);
        None
    }

    /// Chooses one of the client's offered subprotocols. The default takes the first offer
    /// that `ServerOptions::subprotocols` lists.
    fn select_subprotocol(&self, server: &WebSocketServer, offered: &[&str]) -> Option<String> {
        let supported = &server.inner.options.subprotocols;
        offered
            .iter()
            .find(|p| supported.iter().any(|s| s == *p))
            .map(|p| p.to_string())
    }
}

/// Server options; every limit has a safe default.
#[derive(Clone, Debug)]
pub struct ServerOptions {
    /// Address to listen on (default `127.0.0.1:8080`; port 0 picks a free port).
    pub listen: SocketAddr,
    /// The path served: exact (`/ws`), or a prefix with a trailing `*` (`/rooms/*`). Other
    /// paths get 404. `None` (the default) serves every path.
    pub path: Option<String>,
    /// How messages are delivered (default text).
    pub data_type: DataType,
    /// Subprotocols the server speaks, for the default `select_subprotocol`.
    pub subprotocols: Vec<String>,
    /// Which web pages may connect (the browser's `Origin`), checked before
    /// `on_connection`; refused with 403. Default [`OriginPolicy::SameHost`]: the
    /// server's own pages and clients that are not browsers (no `Origin`), so that
    /// another site cannot use a visitor's cookies to talk to the server as them.
    pub allowed_origins: OriginPolicy,
    /// Event loop threads sharing the port through `SO_REUSEPORT` (default 1).
    pub threads: usize,
    /// Limits, timeouts and backpressure.
    pub limits: LoopConfig,
    /// Serve `wss://` (and `https://` for plain HTTP answers): every connection starts with
    /// a TLS handshake, which counts toward `limits.protocol.handshake_timeout`. Build it with
    /// [`ws6455_mio::tls::server_config_from_pem_files`] or its siblings (PEM in memory,
    /// DER). `None` (the default) serves plain `ws://`.
    pub tls: Option<Arc<ws6455_mio::rustls::ServerConfig>>,
    /// Publish/subscribe: the slow-subscriber policy, the per-connection limit and the
    /// Redis backplane between nodes (none by default: topics are local).
    pub topics: TopicOptions,
}

impl Default for ServerOptions {
    fn default() -> Self {
        ServerOptions {
            listen: SocketAddr::from(([127, 0, 0, 1], 8080)),
            path: None,
            data_type: DataType::Text,
            subprotocols: Vec::new(),
            allowed_origins: OriginPolicy::SameHost,
            threads: 1,
            limits: LoopConfig::default(),
            tls: None,
            topics: TopicOptions::default(),
        }
    }
}

pub(crate) struct ServerInner {
    pub(crate) handler: Arc<dyn ServerHandler>,
    pub(crate) options: ServerOptions,
    /// The web server this one is attached to.
    pub(crate) web: Arc<WebInner>,
    /// The web server was started by `new` for this server alone, and ends with it.
    owns_web: bool,
    pub(crate) connections: Mutex<ConnectionTable>,
    /// This server alone is terminating (set under the `connections` lock): its path
    /// takes no new connections, and it finishes when its last connection ends.
    closing: AtomicBool,
    /// Connections `on_connection` accepted that have not opened (or been dropped) yet:
    /// a terminating server waits for them too (changed under the `connections` lock).
    opening: AtomicUsize,
    /// `finish` ran (once).
    finished: AtomicBool,
    pub(crate) terminated: AtomicBool,
    pub(crate) done: (Mutex<bool>, Condvar),
    pub(crate) topics: Topics,
    /// The Redis backplane, when configured.
    pub(crate) relay: std::sync::OnceLock<Relay>,
}

impl ServerInner {
    /// Does `path` match the path option?
    pub(crate) fn serves(&self, path: &str) -> bool {
        match self.options.path.as_deref() {
            None => true,
            Some(pattern) => match pattern.strip_suffix('*') {
                Some(prefix) => path.starts_with(prefix),
                None => path == pattern,
            },
        }
    }

    /// This server alone is terminating.
    pub(crate) fn is_closing(&self) -> bool {
        self.closing.load(Ordering::Acquire)
    }

    /// Hands a server-level failure to the handler's `on_error` (its panic caught).
    pub(crate) fn report_error(
        self: &Arc<Self>,
        code: u16,
        message: String,
        component: &'static str,
    ) {
        let server = WebSocketServer {
            inner: self.clone(),
        };
        let errors = vec![Error {
            code,
            message,
            component,
        }];
        // A panic in on_error itself has nowhere to be reported but the log.
        let _ = ws6455_mio::guarded(|| self.handler.on_error(&server, ErrorEvent { errors }));
    }

    /// Delivers to this node's subscribers but `except`, and through the backplane to
    /// the other nodes'. Returns how many local subscribers it was queued for.
    pub(crate) fn publish(&self, topic: &str, message: Outgoing, except: Option<u64>) -> usize {
        if check_name(topic).is_err() {
            return 0;
        }
        self.topics.count_publish();
        let queued = self
            .topics
            .deliver_local(topic, &server_frame(&message), except);
        if let Some(relay) = self.relay.get() {
            if !relay.publish(topic, &message) {
                self.topics.relay_lost.fetch_add(1, Ordering::Relaxed);
            }
        }
        queued
    }

    /// A connection opened: into `connections`. One that opens while this server is
    /// terminating is closed at once (it had passed the path check before).
    pub(crate) fn connection_opened(&self, ws: &WebSocketConnection) {
        let mut map = self.connections.lock().unwrap_or_else(|e| e.into_inner());
        if !ws.inner.opened.swap(true, Ordering::AcqRel) {
            self.opening.fetch_sub(1, Ordering::AcqRel);
        }
        map.insert(ws.clone());
        if self.is_closing() {
            close_gracefully(ws);
        }
    }

    /// `on_connection` accepted a connection that is about to open; false when this
    /// server is terminating (the connection is then refused).
    pub(crate) fn connection_accepted(&self) -> bool {
        let _map = self.connections.lock().unwrap_or_else(|e| e.into_inner());
        if self.is_closing() {
            return false;
        }
        self.opening.fetch_add(1, Ordering::AcqRel);
        true
    }

    /// An accepted connection was dropped before it opened (its 101 could not be
    /// made): the last one a terminating server waited for finishes it.
    pub(crate) fn connection_abandoned(self: &Arc<Self>) {
        let map = self.connections.lock().unwrap_or_else(|e| e.into_inner());
        let left = self.opening.fetch_sub(1, Ordering::AcqRel) - 1;
        let last = left == 0 && map.is_empty() && self.is_closing();
        drop(map);
        if last {
            self.finish();
        }
    }

    /// A connection ended: out of `connections`. True when it was the last one of a
    /// terminating server, which the caller then finishes.
    pub(crate) fn connection_ended(&self, ws: &WebSocketConnection) -> bool {
        let mut map = self.connections.lock().unwrap_or_else(|e| e.into_inner());
        map.remove(ws);
        map.is_empty() && self.opening.load(Ordering::Acquire) == 0 && self.is_closing()
    }

    /// Terminates this server alone, its web server going on: no new connections on its
    /// path; every connection gets a Close (1001) and waits for its peer's; with
    /// `timeout`, what is left then is destroyed (at once for zero).
    fn close_all(self: &Arc<Self>, timeout: Option<Duration>) {
        let (conns, opening): (Vec<WebSocketConnection>, usize) = {
            let map = self.connections.lock().unwrap_or_else(|e| e.into_inner());
            self.closing.store(true, Ordering::Release);
            let opening = self.opening.load(Ordering::Acquire);
            (map.iter().cloned().collect(), opening)
        };
        // Connections still opening are closed as they open (`connection_opened`).
        if conns.is_empty() && opening == 0 {
            return self.finish();
        }
        if timeout == Some(Duration::ZERO) {
            for ws in &conns {
                ws.inner.conn.loop_handle().destroy(ws.inner.conn.shared());
            }
            return;
        }
        for ws in &conns {
            close_gracefully(ws);
        }
        if let Some(timeout) = timeout {
            // One short-lived thread per terminate call: at the deadline, what is left
            // is destroyed (a command to each loop; the loops do the work).
            let _ = std::thread::Builder::new()
                .name("ws6455-terminate".into())
                .spawn(move || {
                    std::thread::sleep(timeout);
                    for ws in conns {
                        ws.inner.conn.loop_handle().destroy(ws.inner.conn.shared());
                    }
                });
        }
    }

    /// The server has closed: `on_terminate` (once), then `wait` returns.
    pub(crate) fn finish(self: &Arc<Self>) {
        if self.finished.swap(true, Ordering::AcqRel) {
            return;
        }
        if let Some(relay) = self.relay.get() {
            relay.stop();
        }
        self.web.detach(self);
        self.terminated.store(true, Ordering::Release);
        let server = WebSocketServer {
            inner: self.clone(),
        };
        if let Err(error) = ws6455_mio::guarded(|| self.handler.on_terminate(&server)) {
            self.report_error(500, format!("on_terminate: {error}"), "server");
        }
        let (lock, condvar) = &self.done;
        *lock.lock().unwrap_or_else(|e| e.into_inner()) = true;
        condvar.notify_all();
    }
}

/// Starts a connection's closing handshake (1001), waiting for the peer's answer past
/// the close timeout, as a server's terminate does.
fn close_gracefully(ws: &WebSocketConnection) {
    let conn = &ws.inner.conn;
    let code = ws6455_core::CloseCode::GOING_AWAY;
    let _ = conn
        .loop_handle()
        .close_gracefully(conn.shared(), code, "server terminated");
}

/// A running WebSocket server: a cheap, clonable, thread-safe handle.
#[derive(Clone)]
pub struct WebSocketServer {
    pub(crate) inner: Arc<ServerInner>,
}

impl fmt::Debug for WebSocketServer {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("WebSocketServer")
            .field("local_addr", &self.inner.web.local_addr)
            .field("path", &self.inner.options.path)
            .field("terminated", &self.terminated())
            .finish()
    }
}

impl WebSocketServer {
    /// Binds, starts the event loop(s) of a web server of its own, calls `on_open`, and
    /// returns the handle. Its `on_http_request` answers plain HTTP on the port; the web
    /// server ends with this server.
    pub fn new(handler: impl ServerHandler, options: ServerOptions) -> io::Result<WebSocketServer> {
        let web_options = WebOptions {
            listen: options.listen,
            threads: options.threads,
            limits: options.limits.clone(),
            tls: options.tls.clone(),
        };
        let (web, loops) = WebInner::bind(HttpSide::OwnServer, web_options)?;
        // Connections wait in the listen backlog until the loops start: `on_open` first.
        let server = Self::start(web.clone(), Arc::new(handler), options, true)?;
        web.start(loops)?;
        Ok(server)
    }

    /// Attaches a WebSocket server to `web` at `options.path` (exact, or a prefix ending
    /// in `*`; `None` takes every path), calls `on_open`, and returns the handle. The
    /// address, threads, limits and TLS are the web server's (`options.listen`,
    /// `threads`, `limits` and `tls` are not used). Refused when the path overlaps one of
    /// another server on `web`. Its `on_http_request` is not used: the web server's
    /// [`HttpHandler`] answers plain HTTP.
    pub fn attach(
        web: &WebServer,
        handler: impl ServerHandler,
        options: ServerOptions,
    ) -> io::Result<WebSocketServer> {
        Self::start(web.inner.clone(), Arc::new(handler), options, false)
    }

    fn start(
        web: Arc<WebInner>,
        handler: Arc<dyn ServerHandler>,
        options: ServerOptions,
        owns_web: bool,
    ) -> io::Result<WebSocketServer> {
        let topics = Topics::new(web.loops.clone(), options.topics.clone());
        let inner = Arc::new(ServerInner {
            handler,
            options,
            web: web.clone(),
            owns_web,
            connections: Mutex::new(ConnectionTable::default()),
            closing: AtomicBool::new(false),
            opening: AtomicUsize::new(0),
            finished: AtomicBool::new(false),
            terminated: AtomicBool::new(false),
            done: (Mutex::new(false), Condvar::new()),
            topics,
            relay: std::sync::OnceLock::new(),
        });
        if let Some(backplane) = &inner.options.topics.backplane {
            let changed = inner.topics.changed.clone();
            let relay = Relay::start(backplane, changed, Arc::downgrade(&inner))?;
            let _ = inner.relay.set(relay);
        }
        if let Err(error) = web.attach(inner.clone()) {
            if let Some(relay) = inner.relay.get() {
                relay.stop();
            }
            return Err(error);
        }
        let server = WebSocketServer { inner };
        if let Err(error) = ws6455_mio::guarded(|| server.inner.handler.on_open(&server)) {
            server
                .inner
                .report_error(500, format!("on_open: {error}"), "server");
        }
        Ok(server)
    }

    /// Every current connection, in no particular order: opened (after its `on_open`
    /// began) and not Closed. A
    /// connection leaves as soon as its status is Closed, even while its last bytes are
    /// still being written; one refused or dropped before it opened never appears.
    pub fn connections(&self) -> Vec<WebSocketConnection> {
        let map = self
            .inner
            .connections
            .lock()
            .unwrap_or_else(|e| e.into_inner());
        map.iter()
            .filter(|ws| ws.status() != ws6455_mio::Status::Closed)
            .cloned()
            .collect()
    }

    /// How messages are delivered.
    pub fn data_type(&self) -> DataType {
        self.inner.options.data_type
    }

    /// The server handler the server was created with.
    pub fn handler(&self) -> &Arc<dyn ServerHandler> {
        &self.inner.handler
    }

    /// The server handler as its own type, with its fields (`server.handler_as::<App>()`);
    /// `None` when it is of another type.
    pub fn handler_as<T: std::any::Any>(&self) -> Option<&T> {
        let handler: &dyn std::any::Any = &*self.inner.handler;
        handler.downcast_ref()
    }

    /// The path pattern served; `None` means every path.
    pub fn path(&self) -> Option<&str> {
        self.inner.options.path.as_deref()
    }

    /// True when the server speaks TLS (`wss://`).
    pub fn is_tls(&self) -> bool {
        self.inner.web.options.tls.is_some()
    }

    /// The address the server is bound to (with the real port when 0 was asked).
    pub fn local_addr(&self) -> SocketAddr {
        self.inner.web.local_addr
    }

    /// The web server this server is attached to (its own, for one made with `new`).
    pub fn web(&self) -> WebServer {
        WebServer {
            inner: self.inner.web.clone(),
        }
    }

    /// Closes the server: no new connections; every connection gets a Close (1001), waits
    /// for the peer's Close, and its TCP connection is shut down cleanly (FIN) once
    /// answered. The close timeout does not cut this short; a dead peer is found by the
    /// keepalive (nothing heard for `ping_interval + pong_timeout`: given up, 1006).
    ///
    /// On a web server shared with other WebSocket servers, only this server's
    /// connections close; the web server and the others go on, and this path answers 404
    /// from then on. A server made with `new` takes its web server with it.
    pub fn terminate(&self) {
        if self.inner.owns_web {
            self.inner.web.shutdown(None);
        } else {
            self.inner.close_all(None);
        }
    }

    /// Like [`terminate`](Self::terminate), but connections still open after `timeout` are
    /// destroyed by force (a TCP reset), also when `timeout` is longer than the close
    /// timeout. A zero timeout destroys them at once: no Close frames, no FIN.
    pub fn terminate_with_timeout(&self, timeout: Duration) {
        if self.inner.owns_web {
            self.inner.web.shutdown(Some(timeout));
        } else {
            self.inner.close_all(Some(timeout));
        }
    }

    /// True once the server is closed (every loop stopped, `on_terminate` called).
    pub fn terminated(&self) -> bool {
        self.inner.terminated.load(Ordering::Acquire)
    }

    /// Blocks until the server is terminated, at most `timeout` if given. Returns whether
    /// it is terminated. From a callback on one of the server's loop threads it does not
    /// block (the loop could never get there): it says whether the server is terminated.
    pub fn wait(&self, timeout: Option<Duration>) -> bool {
        if self.inner.owns_web {
            // The web server finishes this server before it is done itself.
            return self.inner.web.wait(timeout);
        }
        if self.inner.web.loops.iter().any(LoopHandle::is_loop_thread) {
            return self.terminated();
        }
        wait_until_done(&self.inner.done, timeout)
    }

    /// Sends `data` to every open connection except `except` (by id). The frame is encoded
    /// once and shared. Returns how many connections it was queued to (those whose buffer
    /// is full or that are closing are skipped). Local to this node: see
    /// [`publish`](Self::publish) for topics, which reach other nodes too.
    pub fn broadcast(&self, data: impl Into<Data>, except: Option<u64>) -> usize {
        let frame = server_frame(&data.into().into_outgoing());
        self.connections()
            .iter()
            .filter(|ws| Some(ws.id()) != except)
            .filter(|ws| {
                let conn = &ws.inner.conn;
                conn.loop_handle()
                    .send_frame(conn.shared(), frame.clone())
                    .is_ok()
            })
            .count()
    }

    /// Sends `data` to every subscriber of `topic`: on every loop thread of this server
    /// and, with a backplane, on every other node. The frame is encoded once; each loop
    /// gets one command for all its subscribers; a subscriber over its outgoing cap is
    /// skipped or closed (see [`TopicOptions::slow_subscriber`]) without holding back
    /// the others. Returns how many local subscribers it was queued for (0 for a name
    /// that cannot be a topic). Callable from callbacks and from any thread.
    pub fn publish(&self, topic: &str, data: impl Into<Data>) -> usize {
        self.inner.publish(topic, data.into().into_outgoing(), None)
    }

    /// The Redis backplane this server's topics go through, if any.
    pub fn backplane(&self) -> Option<&crate::Backplane> {
        self.inner.options.topics.backplane.as_ref()
    }

    /// How many of this server's connections hold `topic`.
    pub fn subscriber_count(&self, topic: &str) -> usize {
        self.inner.topics.subscriber_count(topic)
    }

    /// What publishes did since the server started: delivered, skipped or closed slow
    /// subscribers, relayed through Redis, lost.
    pub fn topic_stats(&self) -> TopicStats {
        self.inner.topics.stats()
    }
}
