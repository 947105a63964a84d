//! `WebServer`: the listening address and its loops, plain HTTP answers, and the
//! WebSocket servers attached to it by path. One web server carries a chat on `/chat`
//! and a feed on `/feed` beside ordinary pages; `WebSocketServer::new` starts a web
//! server of its own for the simple case.
//!
//! ```no_run
//! use std::sync::Arc;
//! use ws6455_server::*;
//!
//! struct Pages;
//! impl HttpHandler for Pages {
//!     fn on_request(&self, _: &WebServer, request: &Request) -> Option<HttpResponse> {
//!         (request.path() == "/").then(|| HttpResponse::ok("text/html", "<h1>hello</h1>"))
//!     }
//! }
//!
//! struct Echo;
//! impl ConnectionHandler for Echo {
//!     fn on_message(&self, ws: &WebSocketConnection, event: MessageEvent) {
//!         let _ = ws.send(event.data);
//!     }
//! }
//! struct App;
//! impl ServerHandler for App {
//!     fn on_connection(&self, _: &WebSocketServer, _: &ConnectionEvent) -> Option<Arc<dyn ConnectionHandler>> {
//!         Some(Arc::new(Echo))
//!     }
//! }
//!
//! let web = WebServer::new(Pages, WebOptions::default()).unwrap();
//! let chat = ServerOptions { path: Some("/chat".into()), ..ServerOptions::default() };
//! let feed = ServerOptions { path: Some("/feed/*".into()), data_type: DataType::Blob, ..ServerOptions::default() };
//! let chat = WebSocketServer::attach(&web, App, chat).unwrap();
//! let _feed = WebSocketServer::attach(&web, App, feed).unwrap();
//! chat.terminate(); // the feed and the pages go on
//! web.wait(None);
//! ```

use std::fmt;
use std::io;
use std::net::SocketAddr;
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::sync::{Arc, Condvar, Mutex, RwLock};
use std::thread::JoinHandle;
use std::time::{Duration, Instant};

use ws6455_mio::{EventLoop, LoopConfig, LoopHandle};

use crate::glue::Glue;
use crate::server::{ServerInner, WebSocketServer};
use crate::types::{HttpResponse, Request};
use ws6455_api::{Error, ErrorEvent};

/// Answers plain HTTP requests on a [`WebServer`] and hears of its failures. Every
/// method has a default: no pages (404, or 426 on a WebSocket server's path), errors
/// ignored.
pub trait HttpHandler: std::any::Any + Send + Sync {
    /// A request without a WebSocket upgrade (GET, HEAD, any method; a body is not
    /// read): answer it, or `None` for 404 (426 Upgrade Required on a path a WebSocket
    /// server holds). A HEAD request is answered without the body.
    fn on_request(&self, web: &WebServer, request: &Request) -> Option<HttpResponse> {
        let _ = (web, request);
        None
    }

    /// A failure of the web server (`type = "error"`): an invalid handshake request
    /// (its HTTP status), a failed TLS handshake (1015), the listener out of
    /// descriptors (503), a panic in [`on_request`](Self::on_request) (500). Errors of
    /// one WebSocket server (its origin check, its callbacks) go to that server.
    fn on_error(&self, web: &WebServer, event: ErrorEvent) {
        let _ = (web, event);
    }
}

/// The web server's options; every limit has a safe default.
#[derive(Clone, Debug)]
pub struct WebOptions {
    /// Address to listen on (default `127.0.0.1:8080`; port 0 picks a free port).
    pub listen: SocketAddr,
    /// Event loop threads sharing the port through `SO_REUSEPORT` (default 1).
    pub threads: usize,
    /// Limits, timeouts and backpressure of every connection.
    pub limits: LoopConfig,
    /// Serve `https://` and `wss://` (see [`crate::ServerOptions::tls`]).
    pub tls: Option<Arc<ws6455_mio::rustls::ServerConfig>>,
}

impl Default for WebOptions {
    fn default() -> Self {
        WebOptions {
            listen: SocketAddr::from(([127, 0, 0, 1], 8080)),
            threads: 1,
            limits: LoopConfig::default(),
            tls: None,
        }
    }
}

/// Who answers plain HTTP and hears of web-level failures.
pub(crate) enum HttpSide {
    /// A web server of its own: its [`HttpHandler`].
    Handler(Arc<dyn HttpHandler>),
    /// The web server a `WebSocketServer::new` started for itself: that server's
    /// handler (`on_http_request`, `on_error`).
    OwnServer,
}

pub(crate) struct WebInner {
    pub(crate) http: HttpSide,
    pub(crate) options: WebOptions,
    pub(crate) local_addr: SocketAddr,
    pub(crate) loops: Vec<LoopHandle>,
    /// The attached WebSocket servers; their paths do not overlap.
    routes: RwLock<Vec<Arc<ServerInner>>>,
    running_loops: AtomicUsize,
    terminated: AtomicBool,
    done: (Mutex<bool>, Condvar),
    threads: Mutex<Vec<JoinHandle<()>>>,
}

/// A running web server: a cheap, clonable, thread-safe handle.
#[derive(Clone)]
pub struct WebServer {
    pub(crate) inner: Arc<WebInner>,
}

impl fmt::Debug for WebServer {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("WebServer")
            .field("local_addr", &self.inner.local_addr)
            .field("terminated", &self.terminated())
            .finish()
    }
}

/// Do two path patterns (see [`crate::ServerOptions::path`]) claim a common path?
fn overlap(a: Option<&str>, b: Option<&str>) -> bool {
    let (Some(a), Some(b)) = (a, b) else {
        return true;
    };
    match (a.strip_suffix('*'), b.strip_suffix('*')) {
        (Some(a), Some(b)) => a.starts_with(b) || b.starts_with(a),
        (Some(prefix), None) => b.starts_with(prefix),
        (None, Some(prefix)) => a.starts_with(prefix),
        (None, None) => a == b,
    }
}

impl WebInner {
    /// Binds and builds the loops; they run once [`start`](Self::start) is called.
    pub(crate) fn bind(
        http: HttpSide,
        options: WebOptions,
    ) -> io::Result<(Arc<WebInner>, Vec<EventLoop>)> {
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
        let inner = Arc::new(WebInner {
            http,
            options,
            local_addr,
            running_loops: AtomicUsize::new(handles.len()),
            loops: handles,
            routes: RwLock::new(Vec::new()),
            terminated: AtomicBool::new(false),
            done: (Mutex::new(false), Condvar::new()),
            threads: Mutex::new(Vec::new()),
        });
        Ok((inner, loops))
    }

    /// Runs each loop on a thread of its own.
    pub(crate) fn start(self: &Arc<Self>, loops: Vec<EventLoop>) -> io::Result<()> {
        let mut threads = Vec::new();
        for (index, event_loop) in loops.into_iter().enumerate() {
            let glue = Glue::new(self.clone(), index);
            let thread = std::thread::Builder::new()
                .name(format!("ws6455-server-{index}"))
                .spawn(move || event_loop.run(glue))?;
            threads.push(thread);
        }
        *self.threads.lock().unwrap_or_else(|e| e.into_inner()) = threads;
        Ok(())
    }

    /// Adds a WebSocket server, refused when its path overlaps another's.
    pub(crate) fn attach(&self, server: Arc<ServerInner>) -> io::Result<()> {
        let mut routes = self.routes.write().unwrap_or_else(|e| e.into_inner());
        let path = server.options.path.as_deref();
        if let Some(other) = routes
            .iter()
            .find(|r| overlap(r.options.path.as_deref(), path))
        {
            let show = |p: Option<&str>| p.unwrap_or("every path").to_owned();
            return Err(io::Error::new(
                io::ErrorKind::AlreadyExists,
                format!(
                    "WebSocket path {} overlaps {}, which another server on this web server holds",
                    show(path),
                    show(other.options.path.as_deref())
                ),
            ));
        }
        if self.terminated.load(Ordering::Acquire) {
            return Err(io::Error::other("the web server is terminated"));
        }
        routes.push(server);
        Ok(())
    }

    /// Takes a terminated WebSocket server off its path.
    pub(crate) fn detach(&self, server: &Arc<ServerInner>) {
        let mut routes = self.routes.write().unwrap_or_else(|e| e.into_inner());
        routes.retain(|r| !Arc::ptr_eq(r, server));
    }

    /// The WebSocket server that serves `path` and still takes connections.
    pub(crate) fn route(&self, path: &str) -> Option<Arc<ServerInner>> {
        let routes = self.routes.read().unwrap_or_else(|e| e.into_inner());
        routes
            .iter()
            .find(|r| r.serves(path) && !r.is_closing())
            .cloned()
    }

    /// The server a `WebSocketServer::new` started this web server for.
    fn own_server(&self) -> Option<Arc<ServerInner>> {
        let routes = self.routes.read().unwrap_or_else(|e| e.into_inner());
        routes.first().cloned()
    }

    /// Answers a plain HTTP request: a page, 404, or 426 on a WebSocket path; 500 when
    /// the handler panicked (reported).
    pub(crate) fn answer(self: &Arc<Self>, request: &Request) -> Option<Option<HttpResponse>> {
        match &self.http {
            HttpSide::Handler(handler) => {
                let web = WebServer {
                    inner: self.clone(),
                };
                self.call("on_request", || handler.on_request(&web, request))
            }
            HttpSide::OwnServer => {
                let Some(server) = self.own_server() else {
                    return Some(None);
                };
                let handle = WebSocketServer {
                    inner: server.clone(),
                };
                match ws6455_mio::guarded(|| server.handler.on_http_request(&handle, request)) {
                    Ok(answer) => Some(answer),
                    Err(error) => {
                        let message = format!("on_http_request: {error}");
                        server.report_error(500, message, "server");
                        None
                    }
                }
            }
        }
    }

    fn call<T>(self: &Arc<Self>, callback: &str, f: impl FnOnce() -> T) -> Option<T> {
        match ws6455_mio::guarded(f) {
            Ok(value) => Some(value),
            Err(error) => {
                self.report_error(500, format!("{callback}: {error}"), "server");
                None
            }
        }
    }

    /// Hands a web-level failure to whoever hears of them.
    pub(crate) fn report_error(
        self: &Arc<Self>,
        code: u16,
        message: String,
        component: &'static str,
    ) {
        match &self.http {
            HttpSide::Handler(handler) => {
                let web = WebServer {
                    inner: self.clone(),
                };
                let errors = vec![Error {
                    code,
                    message,
                    component,
                }];
                let _ = ws6455_mio::guarded(|| handler.on_error(&web, ErrorEvent { errors }));
            }
            HttpSide::OwnServer => {
                if let Some(server) = self.own_server() {
                    server.report_error(code, message, component);
                }
            }
        }
    }

    /// Stops every loop (see [`LoopHandle::shutdown`]).
    pub(crate) fn shutdown(&self, timeout: Option<Duration>) {
        for handle in &self.loops {
            handle.shutdown(timeout);
        }
    }

    /// Called by each loop as it exits; the last one ends every attached server (each
    /// `on_terminate` once), then the web server.
    pub(crate) fn loop_exited(&self) {
        if self.running_loops.fetch_sub(1, Ordering::AcqRel) != 1 {
            return;
        }
        self.terminated.store(true, Ordering::Release);
        let routes = std::mem::take(&mut *self.routes.write().unwrap_or_else(|e| e.into_inner()));
        for server in routes {
            server.finish();
        }
        let (lock, condvar) = &self.done;
        *lock.lock().unwrap_or_else(|e| e.into_inner()) = true;
        condvar.notify_all();
    }

    /// Blocks until terminated (at most `timeout`), then joins the loop threads; from a
    /// loop thread it does not block.
    pub(crate) fn wait(&self, timeout: Option<Duration>) -> bool {
        if self.loops.iter().any(LoopHandle::is_loop_thread) {
            return self.terminated.load(Ordering::Acquire);
        }
        if !wait_until_done(&self.done, timeout) {
            return false;
        }
        let threads = std::mem::take(&mut *self.threads.lock().unwrap_or_else(|e| e.into_inner()));
        for thread in threads {
            let _ = thread.join();
        }
        true
    }
}

/// Blocks until the flag of `done` is set (by its holder, who then notifies), at most
/// `timeout` if given; returns whether it is set.
pub(crate) fn wait_until_done(done: &(Mutex<bool>, Condvar), timeout: Option<Duration>) -> bool {
    let (lock, condvar) = done;
    let mut set = lock.lock().unwrap_or_else(|e| e.into_inner());
    let deadline = timeout.map(|t| Instant::now() + t);
    while !*set {
        match deadline {
            None => set = condvar.wait(set).unwrap_or_else(|e| e.into_inner()),
            Some(deadline) => {
                let left = deadline.saturating_duration_since(Instant::now());
                if left.is_zero() {
                    return false;
                }
                set = condvar
                    .wait_timeout(set, left)
                    .unwrap_or_else(|e| e.into_inner())
                    .0;
            }
        }
    }
    true
}

impl WebServer {
    /// Binds and starts a web server with no WebSocket server yet: attach them with
    /// [`WebSocketServer::attach`].
    pub fn new(http: impl HttpHandler, options: WebOptions) -> io::Result<WebServer> {
        let (inner, loops) = WebInner::bind(HttpSide::Handler(Arc::new(http)), options)?;
        inner.start(loops)?;
        Ok(WebServer { inner })
    }

    /// The address the web server is bound to (with the real port when 0 was asked).
    pub fn local_addr(&self) -> SocketAddr {
        self.inner.local_addr
    }

    /// True when it speaks TLS (`https://`, `wss://`).
    pub fn is_tls(&self) -> bool {
        self.inner.options.tls.is_some()
    }

    /// The WebSocket servers attached and not terminated.
    pub fn servers(&self) -> Vec<WebSocketServer> {
        let routes = self.inner.routes.read().unwrap_or_else(|e| e.into_inner());
        routes
            .iter()
            .map(|inner| WebSocketServer {
                inner: inner.clone(),
            })
            .collect()
    }

    /// Closes the web server and every WebSocket server on it, as
    /// [`WebSocketServer::terminate`] does for one (each server's `on_terminate` once).
    pub fn terminate(&self) {
        self.inner.shutdown(None);
    }

    /// [`terminate`](Self::terminate), with connections destroyed at `timeout` (at once
    /// for zero: no Close frames, no FIN).
    pub fn terminate_with_timeout(&self, timeout: Duration) {
        self.inner.shutdown(Some(timeout));
    }

    /// True once every loop has stopped.
    pub fn terminated(&self) -> bool {
        self.inner.terminated.load(Ordering::Acquire)
    }

    /// Blocks until terminated, at most `timeout` if given; returns whether it is. From a
    /// callback on one of its loop threads it does not block.
    pub fn wait(&self, timeout: Option<Duration>) -> bool {
        self.inner.wait(timeout)
    }
}
