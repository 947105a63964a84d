//! `WebSocketServer`: binds, runs the loops, and hands out connection handles.

use std::collections::BTreeMap;
use std::fmt;
use std::io;
use std::net::SocketAddr;
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::sync::{Arc, Condvar, Mutex};
use std::thread::JoinHandle;
use std::time::Duration;

use ws6455_core::handshake::OriginPolicy;
use ws6455_mio::{EventLoop, LoopConfig, LoopHandle, Outgoing};

use crate::backplane::Relay;
use crate::connection::{ConnectionHandler, WebSocketConnection};
use crate::glue::Glue;
use crate::topics::{check_name, server_frame, TopicOptions, TopicStats, Topics};
use crate::types::{ConnectionEvent, HttpResponse, Request};
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
    pub(crate) local_addr: SocketAddr,
    pub(crate) loops: Vec<LoopHandle>,
    pub(crate) connections: Mutex<BTreeMap<u64, WebSocketConnection>>,
    pub(crate) running_loops: AtomicUsize,
    pub(crate) terminated: AtomicBool,
    pub(crate) done: (Mutex<bool>, Condvar),
    pub(crate) threads: Mutex<Vec<JoinHandle<()>>>,
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

    /// Called by each loop as it exits; the last one ends the server.
    pub(crate) fn loop_exited(self: &Arc<Self>) {
        if self.running_loops.fetch_sub(1, Ordering::AcqRel) != 1 {
            return;
        }
        if let Some(relay) = self.relay.get() {
            relay.stop();
        }
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

/// A running WebSocket server: a cheap, clonable, thread-safe handle.
#[derive(Clone)]
pub struct WebSocketServer {
    pub(crate) inner: Arc<ServerInner>,
}

impl fmt::Debug for WebSocketServer {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("WebSocketServer")
            .field("local_addr", &self.inner.local_addr)
            .field("path", &self.inner.options.path)
            .field("terminated", &self.terminated())
            .finish()
    }
}

impl WebSocketServer {
    /// Binds, starts the event loop(s), calls `on_open`, and returns the handle.
    pub fn new(handler: impl ServerHandler, options: ServerOptions) -> io::Result<WebSocketServer> {
        let threads = options.threads.max(1);
        let listeners = ws6455_mio::bind(options.listen, threads)?;
        let local_addr = listeners[0].local_addr()?;
        let config = Arc::new(options.limits.clone());
        let mut loops = Vec::new();
        let mut handles = Vec::new();
        for listener in listeners {
            let (event_loop, handle) = match &options.tls {
                None => EventLoop::new(listener, config.clone())?,
                Some(tls) => EventLoop::with_tls(listener, tls.clone(), config.clone())?,
            };
            loops.push(event_loop);
            handles.push(handle);
        }
        let topics = Topics::new(handles.clone(), options.topics.clone());
        let inner = Arc::new(ServerInner {
            handler: Arc::new(handler),
            options,
            local_addr,
            loops: handles,
            connections: Mutex::new(BTreeMap::new()),
            running_loops: AtomicUsize::new(loops.len()),
            terminated: AtomicBool::new(false),
            done: (Mutex::new(false), Condvar::new()),
            threads: Mutex::new(Vec::new()),
            topics,
            relay: std::sync::OnceLock::new(),
        });
        if let Some(backplane) = &inner.options.topics.backplane {
            let changed = inner.topics.changed.clone();
            let relay = Relay::start(backplane, changed, Arc::downgrade(&inner))?;
            let _ = inner.relay.set(relay);
        }
        let server = WebSocketServer { inner };
        // Connections wait in the listen backlog until the loops start: `on_open` comes first.
        if let Err(error) = ws6455_mio::guarded(|| server.inner.handler.on_open(&server)) {
            server
                .inner
                .report_error(500, format!("on_open: {error}"), "server");
        }
        let mut threads = Vec::new();
        for (index, event_loop) in loops.into_iter().enumerate() {
            // The loop gets its handler now that the server it reports to exists.
            let glue = Glue::new(server.inner.clone(), index);
            let thread = std::thread::Builder::new()
                .name(format!("ws6455-server-{index}"))
                .spawn(move || event_loop.run(glue))?;
            threads.push(thread);
        }
        *server
            .inner
            .threads
            .lock()
            .unwrap_or_else(|e| e.into_inner()) = threads;
        Ok(server)
    }

    /// Every current connection: opened (after its `on_open` began) and not Closed. A
    /// connection leaves as soon as its status is Closed, even while its last bytes are
    /// still being written; one refused or dropped before it opened never appears.
    pub fn connections(&self) -> Vec<WebSocketConnection> {
        let map = self
            .inner
            .connections
            .lock()
            .unwrap_or_else(|e| e.into_inner());
        map.values()
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
        self.inner.options.tls.is_some()
    }

    /// The address the server is bound to (with the real port when 0 was asked).
    pub fn local_addr(&self) -> SocketAddr {
        self.inner.local_addr
    }

    /// Closes the server: no new connections; every connection gets a Close (1001), waits
    /// for the peer's Close, and its TCP connection is shut down cleanly (FIN) once
    /// answered. The close timeout does not cut this short; a dead peer is found by the
    /// keepalive (nothing heard for `ping_interval + pong_timeout`: given up, 1006).
    pub fn terminate(&self) {
        for handle in &self.inner.loops {
            handle.shutdown(None);
        }
    }

    /// Like [`terminate`](Self::terminate), but connections still open after `timeout` are
    /// destroyed by force (a TCP reset), also when `timeout` is longer than the close
    /// timeout. A zero timeout destroys them at once: no Close frames, no FIN.
    pub fn terminate_with_timeout(&self, timeout: Duration) {
        for handle in &self.inner.loops {
            handle.shutdown(Some(timeout));
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
        if self.inner.loops.iter().any(LoopHandle::is_loop_thread) {
            return self.terminated();
        }
        let (lock, condvar) = &self.inner.done;
        let mut done = lock.lock().unwrap_or_else(|e| e.into_inner());
        let deadline = timeout.map(|t| std::time::Instant::now() + t);
        while !*done {
            match deadline {
                None => done = condvar.wait(done).unwrap_or_else(|e| e.into_inner()),
                Some(deadline) => {
                    let left = deadline.saturating_duration_since(std::time::Instant::now());
                    if left.is_zero() {
                        return false;
                    }
                    done = condvar
                        .wait_timeout(done, left)
                        .unwrap_or_else(|e| e.into_inner())
                        .0;
                }
            }
        }
        drop(done);
        let threads =
            std::mem::take(&mut *self.inner.threads.lock().unwrap_or_else(|e| e.into_inner()));
        for thread in threads {
            let _ = thread.join();
        }
        true
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
