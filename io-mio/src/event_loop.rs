//! The event loop: one `mio::Poll`, a listener, a slab of connections, a timer heap and a
//! command queue. Edge-triggered: sockets are read until `WouldBlock` (at most a few reads
//! per turn, for fairness) and written until `WouldBlock`; WRITABLE is asked for only while
//! output is pending.

use std::cmp::Reverse;
use std::collections::{BinaryHeap, VecDeque};
use std::io;
use std::net::SocketAddr;
use std::panic::{catch_unwind, AssertUnwindSafe};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use mio::net::{TcpListener, TcpStream};
use mio::{Events, Interest, Poll, Token, Waker};
use slab::Slab;
use ws6455_core::handshake::{accept_response, validate_upgrade, HandshakeError, ServerHandshake};
use ws6455_core::{CloseCode, Connection, ConnectionState, Event, OsRandom};

use crate::config::LoopConfig;
use crate::handle::{
    over_cap, Adoption, Command, ConnShared, HandleInner, LoopHandle, Status, CURRENT_LOOP,
};
use crate::handler::{ConnError, Decision, Handler};
use crate::transport::ClientStream;
use crate::transport::Transport;

const LISTENER: Token = Token(usize::MAX - 1);
const WAKER: Token = Token(usize::MAX);
/// The read buffer shared by every connection of a loop: connections keep only leftovers.
/// Large enough that a bulk transfer costs few reads (the kernel copies only what is
/// there, so small messages do not pay for its size).
const READ_BUFFER: usize = 256 << 10;
/// Most output chunks handed to one vectored write.
const WRITE_SLICES: usize = 16;
/// Reads per connection per turn before others get theirs.
const READS_PER_TURN: usize = 16;

/// What only a connection still in its opening handshake needs (boxed, so that an open
/// connection does not carry it).
struct Handshaking {
    parser: ServerHandshake,
    remote: SocketAddr,
    accepted: Instant,
}

enum Phase<C> {
    /// Reading the handshake request.
    Handshake(Box<Handshaking>),
    /// Writing an HTTP answer (refusal or plain HTTP), then closing.
    Responding,
    /// The WebSocket connection proper.
    Open { core: Box<Connection>, app: C },
}

struct Conn<C> {
    transport: Transport,
    /// Limits and timeouts: the loop's for accepted connections, the client's own for
    /// adopted ones.
    config: Arc<LoopConfig>,
    shared: Arc<ConnShared>,
    phase: Phase<C>,
    /// HTTP bytes (101 or an error answer), written before any frame.
    http_out: Vec<u8>,
    http_sent: usize,
    interest: Interest,
    /// The earliest timer entry this connection has in the heap.
    scheduled: Option<Instant>,
    last_input: Instant,
    ping_sent: Option<Instant>,
    /// When the closing handshake (or an HTTP answer) started.
    closing_since: Option<Instant>,
    read_paused: bool,
    /// Bytes read but not yet decoded because the outgoing buffer reached its cap in the
    /// middle of them (at most one read's worth); decoded first when reading resumes.
    unread: Vec<u8>,
    in_ready: bool,
    errored: bool,
    eof: bool,
    /// The poller reported the peer's end of the stream (or an error): a short read no
    /// longer proves that nothing more is to be read, since the end itself is.
    read_closed: bool,
}

impl<C> Conn<C> {
    /// A connection just accepted or adopted; `unread` holds bytes already received.
    fn new(
        transport: Transport,
        shared: Arc<ConnShared>,
        config: Arc<LoopConfig>,
        phase: Phase<C>,
        unread: Vec<u8>,
    ) -> Self {
        let now = Instant::now();
        Conn {
            transport,
            config,
            shared,
            phase,
            http_out: Vec::new(),
            http_sent: 0,
            interest: Interest::READABLE,
            scheduled: None,
            last_input: now,
            ping_sent: None,
            closing_since: None,
            read_paused: false,
            unread,
            in_ready: false,
            errored: false,
            eof: false,
            read_closed: false,
        }
    }

    fn pending_output(&self) -> &[u8] {
        pending_output(&self.http_out, self.http_sent, &self.phase)
    }

    fn consume_output(&mut self, n: usize) {
        if self.http_sent < self.http_out.len() {
            self.http_sent += n;
            if self.http_sent == self.http_out.len() {
                self.http_out = Vec::new();
                self.http_sent = 0;
            }
        } else if let Phase::Open { core, .. } = &mut self.phase {
            core.consume_output(n);
        }
    }

    fn unwritten(&self) -> usize {
        let core = match &self.phase {
            Phase::Open { core, .. } => core.pending_output_len(),
            _ => 0,
        };
        self.http_out.len() - self.http_sent + core
    }

    /// Nothing is left to write, at any layer.
    fn drained(&self) -> bool {
        self.pending_output().is_empty() && !self.transport.has_buffered()
    }

    /// Writes until the socket would block or nothing is pending.
    fn flush(&mut self) -> io::Result<()> {
        loop {
            if !self.transport.flush()? {
                return Ok(());
            }
            let written = match &self.phase {
                // Frames, possibly in several chunks (payloads sent by value are
                // written from the application's buffers): one vectored write.
                Phase::Open { core, .. } if self.http_sent == self.http_out.len() => {
                    let mut slices = [io::IoSlice::new(&[]); WRITE_SLICES];
                    let filled = core.pending_output_vectored(&mut slices);
                    if filled == 0 {
                        return Ok(());
                    }
                    self.transport.write_vectored(&slices[..filled])
                }
                _ => {
                    let pending = pending_output(&self.http_out, self.http_sent, &self.phase);
                    if pending.is_empty() {
                        return Ok(());
                    }
                    self.transport.write(pending)
                }
            };
            match written {
                Ok(0) => return Err(io::ErrorKind::WriteZero.into()),
                Ok(n) => self.consume_output(n),
                Err(e) if e.kind() == io::ErrorKind::WouldBlock => return Ok(()),
                Err(e) if e.kind() == io::ErrorKind::Interrupted => {}
                Err(e) => return Err(e),
            }
        }
    }

    fn respond(&mut self, bytes: Vec<u8>) {
        self.http_out = bytes;
        self.http_sent = 0;
        self.phase = Phase::Responding;
        self.closing_since = Some(Instant::now());
    }

    fn next_deadline(&self) -> Option<Instant> {
        let config = &*self.config;
        match &self.phase {
            Phase::Handshake(hs) => Some(hs.accepted + config.handshake_timeout),
            Phase::Responding => self.closing_since.map(|t| t + config.close_timeout),
            Phase::Open { .. } => {
                if let Some(since) = self.closing_since {
                    return Some(since + config.close_timeout);
                }
                let idle = config.idle_timeout.map(|d| self.last_input + d);
                let ping = config.ping_interval.map(|interval| match self.ping_sent {
                    Some(sent) => sent + config.pong_timeout,
                    None => self.last_input + interval,
                });
                match (idle, ping) {
                    (Some(a), Some(b)) => Some(a.min(b)),
                    (a, b) => a.or(b),
                }
            }
        }
    }
}

/// The bytes a connection has for its peer: the HTTP answer first, then frames.
fn pending_output<'a, C>(http_out: &'a [u8], http_sent: usize, phase: &'a Phase<C>) -> &'a [u8] {
    if http_sent < http_out.len() {
        return &http_out[http_sent..];
    }
    match phase {
        Phase::Open { core, .. } => core.pending_output(),
        _ => &[],
    }
}

/// The text of a caught panic.
fn panic_message(panic: Box<dyn std::any::Any + Send>) -> String {
    if let Some(s) = panic.downcast_ref::<&str>() {
        (*s).to_owned()
    } else if let Some(s) = panic.downcast_ref::<String>() {
        s.clone()
    } else {
        "non-string panic payload".to_owned()
    }
}

/// A caught call into application code.
fn guarded<T>(f: impl FnOnce() -> T) -> Result<T, ConnError> {
    catch_unwind(AssertUnwindSafe(f)).map_err(|p| ConnError::HandlerPanic(panic_message(p)))
}

fn internal_error_response() -> Vec<u8> {
    ws6455_core::handshake::reject_response(500, "the server's handler failed", &[])
        .unwrap_or_default()
}

/// Reports `error` once and ends the connection the way the error says: a close frame with
/// its code, or an abort (1006) when no code is sent.
fn fail_open<H: Handler>(
    handler: &mut H,
    core: &mut Connection,
    app: &mut H::Conn,
    errored: &mut bool,
    error: ConnError,
) {
    if !*errored {
        *errored = true;
        let _ = guarded(|| handler.on_error(app, &error));
    }
    match error.close_code() {
        Some(code) if core.state() == ConnectionState::Open => {
            let text = error.to_string();
            let mut end = text.len().min(ws6455_core::close::MAX_CLOSE_REASON);
            while !text.is_char_boundary(end) {
                end -= 1;
            }
            let _ = core.close_with_standard_code(code, &text[..end]);
        }
        Some(_) => {}
        None => core.abort(&error.to_string()),
    }
}

/// Feeds bytes to an open connection and delivers its events. The core stops at each
/// event, so the application answers a message before the next frame is decoded.
fn feed_open<H: Handler>(
    handler: &mut H,
    inner: &HandleInner,
    conn: &mut Conn<H::Conn>,
    mut data: &[u8],
) {
    let Phase::Open { core, app } = &mut conn.phase else {
        return;
    };
    conn.last_input = Instant::now();
    conn.ping_sent = None;
    loop {
        let result = core.receive_data(data);
        let mut delivered = false;
        while let Some(event) = core.poll_event() {
            delivered = true;
            let Event::Message { kind, data } = event else {
                continue;
            };
            if conn.errored {
                core.recycle(data);
                continue;
            }
            let outcome = guarded(|| handler.on_message(app, kind, data));
            // What the callback sent before failing goes out before the Close.
            inner.apply_commands_for(&conn.shared, core);
            if let Ok(Err(error)) | Err(error) = outcome {
                fail_open(handler, core, app, &mut conn.errored, error);
            }
        }
        match result {
            Ok(used) => data = &data[used..],
            Err(error) => {
                let error = ConnError::Protocol(error);
                return fail_open(handler, core, app, &mut conn.errored, error);
            }
        }
        // What the callbacks sent is in the core now: publish it, so that `send` and the
        // check below see the real buffer.
        let unwritten = core.pending_output_len() + conn.http_out.len() - conn.http_sent;
        conn.shared.set_unwritten(unwritten);
        if !data.is_empty() && over_cap(conn.shared.buffered_amount(), conn.config.max_buffered) {
            // Backpressure between two messages: keep the rest for when the buffer drains.
            conn.unread.extend_from_slice(data);
            conn.read_paused = true;
            return;
        }
        // No progress can only mean no input left; the check keeps this loop finite anyway.
        if data.is_empty() || !delivered && result == Ok(0) {
            return;
        }
    }
}

/// Feeds bytes to a connection in any phase.
fn feed<H: Handler>(handler: &mut H, inner: &HandleInner, conn: &mut Conn<H::Conn>, data: &[u8]) {
    let Phase::Handshake(hs) = &mut conn.phase else {
        return feed_open(handler, inner, conn, data);
    };
    let remote = hs.remote;
    let request = match hs.parser.receive_data(data) {
        Ok(None) => return,
        Ok(Some(request)) => request,
        Err(error) => {
            let _ = guarded(|| handler.on_bad_request(&error, remote));
            return conn.respond(error.response());
        }
    };
    let leftover = hs.parser.leftover().to_vec();
    let decision = match validate_upgrade(&request) {
        Err(HandshakeError::NotUpgrade) => guarded(|| handler.on_http_request(&request, remote))
            .map(Decision::Respond)
            .unwrap_or_else(|_| Decision::Respond(internal_error_response())),
        Err(error) => {
            let _ = guarded(|| handler.on_bad_request(&error, remote));
            Decision::Respond(error.response())
        }
        Ok(()) => guarded(|| handler.on_request(&request, remote, &conn.shared))
            .unwrap_or_else(|_| Decision::Respond(internal_error_response())),
    };
    let (app, subprotocol, headers) = match decision {
        Decision::Respond(bytes) => return conn.respond(bytes),
        Decision::Accept {
            conn: app,
            subprotocol,
            headers,
        } => (app, subprotocol, headers),
    };
    let headers: Vec<(&str, &str)> = headers
        .iter()
        .map(|(n, v)| (n.as_str(), v.as_str()))
        .collect();
    let config = conn.config.clone();
    let deflate = config
        .deflate
        .as_ref()
        .and_then(|ours| Some((ours, ours.accept_offers(&request.extensions())?)));
    let mut response = Vec::new();
    if accept_response(
        &request,
        subprotocol.as_deref(),
        deflate.as_ref().map(|(_, (_, answer))| answer.as_str()),
        &headers,
        &mut response,
    )
    .is_err()
    {
        // The application gave a header that would corrupt the response.
        drop(app);
        return conn.respond(internal_error_response());
    }
    conn.http_out = response;
    conn.http_sent = 0;
    let mut core = Box::new(Connection::server(config.protocol.clone()));
    if let Some((ours, (params, _))) = &deflate {
        core.enable_deflate(params, ours);
    }
    conn.phase = Phase::Open { core, app };
    conn.shared.set_status(Status::Connected);
    if let Phase::Open { core, app } = &mut conn.phase {
        match guarded(|| handler.on_open(app)) {
            Ok(()) => inner.apply_commands_for(&conn.shared, core),
            Err(error) => fail_open(handler, core, app, &mut conn.errored, error),
        }
    }
    if !leftover.is_empty() {
        feed_open(handler, inner, conn, &leftover);
    }
}

/// A running loop. Build it with [`EventLoop::new`] and call [`EventLoop::run`] on its thread.
pub struct EventLoop<H: Handler> {
    poll: Poll,
    listener: Option<TcpListener>,
    conns: Slab<Conn<H::Conn>>,
    handler: H,
    handle: LoopHandle,
    config: Arc<LoopConfig>,
    /// TLS for accepted connections.
    tls: Option<Arc<rustls::ServerConfig>>,
    timers: BinaryHeap<Reverse<(Instant, usize, u64)>>,
    ready: VecDeque<usize>,
    read_buf: Vec<u8>,
    /// TLS records read from a socket before rustls decrypts them into `read_buf`;
    /// allocated on the first TLS read.
    tls_buf: Vec<u8>,
    /// Set once shutting down; holds the deadline after which connections are destroyed.
    shutdown: Option<Option<Instant>>,
}

impl<H: Handler> std::fmt::Debug for EventLoop<H> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("EventLoop")
            .field("connections", &self.conns.len())
            .field("shutting_down", &self.shutdown.is_some())
            .finish_non_exhaustive()
    }
}

impl<H: Handler> EventLoop<H> {
    /// A loop serving `listener` (made non-blocking here) with `handler`.
    pub fn new(
        listener: std::net::TcpListener,
        handler: H,
        config: Arc<LoopConfig>,
    ) -> io::Result<(Self, LoopHandle)> {
        listener.set_nonblocking(true)?;
        Self::build(Some(TcpListener::from_std(listener)), None, handler, config)
    }

    /// A loop serving `listener` over TLS: every accepted connection starts with a TLS
    /// handshake, which counts toward [`LoopConfig::handshake_timeout`].
    pub fn with_tls(
        listener: std::net::TcpListener,
        tls: Arc<rustls::ServerConfig>,
        handler: H,
        config: Arc<LoopConfig>,
    ) -> io::Result<(Self, LoopHandle)> {
        listener.set_nonblocking(true)?;
        Self::build(
            Some(TcpListener::from_std(listener)),
            Some(tls),
            handler,
            config,
        )
    }

    /// A loop without a listener: it drives the connections handed to it with
    /// [`LoopHandle::adopt`] (clients), and runs until shut down.
    pub fn unbound(handler: H, config: Arc<LoopConfig>) -> io::Result<(Self, LoopHandle)> {
        Self::build(None, None, handler, config)
    }

    fn build(
        mut listener: Option<TcpListener>,
        tls: Option<Arc<rustls::ServerConfig>>,
        handler: H,
        config: Arc<LoopConfig>,
    ) -> io::Result<(Self, LoopHandle)> {
        let poll = Poll::new()?;
        if let Some(listener) = &mut listener {
            poll.registry()
                .register(listener, LISTENER, Interest::READABLE)?;
        }
        let waker = Waker::new(poll.registry(), WAKER)?;
        let handle = LoopHandle {
            inner: Arc::new(HandleInner {
                commands: Mutex::new(VecDeque::new()),
                waker,
                stopped: std::sync::atomic::AtomicBool::new(false),
            }),
        };
        let event_loop = EventLoop {
            poll,
            listener,
            conns: Slab::new(),
            handler,
            handle: handle.clone(),
            config,
            tls,
            timers: BinaryHeap::new(),
            ready: VecDeque::new(),
            read_buf: vec![0; READ_BUFFER],
            tls_buf: Vec::new(),
            shutdown: None,
        };
        Ok((event_loop, handle))
    }

    /// Runs until shut down and every connection is gone; then calls
    /// [`Handler::on_loop_exit`].
    pub fn run(mut self) {
        CURRENT_LOOP.with(|c| c.set(self.handle.address()));
        let mut events = Events::with_capacity(1024);
        loop {
            let timeout = self.poll_timeout();
            if let Err(e) = self.poll.poll(&mut events, timeout) {
                if e.kind() == io::ErrorKind::Interrupted {
                    continue;
                }
                // The poller itself failed: nothing can be served any more.
                self.destroy_all();
                break;
            }
            for event in events.iter() {
                match event.token() {
                    LISTENER => self.accept(),
                    WAKER => {}
                    Token(key) => {
                        if event.is_read_closed() || event.is_error() {
                            if let Some(conn) = self.conns.get_mut(key) {
                                conn.read_closed = true;
                            }
                        }
                        if event.is_readable() || event.is_read_closed() || event.is_error() {
                            self.read(key);
                        }
                        self.update(key);
                    }
                }
            }
            self.run_commands();
            for _ in 0..self.ready.len() {
                let Some(key) = self.ready.pop_front() else {
                    break;
                };
                if let Some(conn) = self.conns.get_mut(key) {
                    conn.in_ready = false;
                }
                self.read(key);
                self.update(key);
            }
            self.fire_timers();
            if self.shutdown.is_some() && self.conns.is_empty() {
                break;
            }
        }
        CURRENT_LOOP.with(|c| c.set(0));
        self.handle
            .inner
            .stopped
            .store(true, std::sync::atomic::Ordering::Release);
        let _ = guarded(|| self.handler.on_loop_exit());
    }

    fn poll_timeout(&self) -> Option<Duration> {
        let queued = || {
            let queue = self.handle.inner.commands.lock();
            !queue.unwrap_or_else(|e| e.into_inner()).is_empty()
        };
        // Commands queued by callbacks on this thread come with no wake-up.
        if !self.ready.is_empty() || queued() {
            return Some(Duration::ZERO);
        }
        let timer = self.timers.peek().map(|Reverse((t, _, _))| *t);
        let shutdown = self.shutdown.flatten();
        let next = match (timer, shutdown) {
            (Some(a), Some(b)) => Some(a.min(b)),
            (a, b) => a.or(b),
        }?;
        // Round up so that the timer has expired when poll returns.
        Some(next.saturating_duration_since(Instant::now()) + Duration::from_millis(1))
    }

    fn accept(&mut self) {
        loop {
            let Some(listener) = &self.listener else {
                return;
            };
            match listener.accept() {
                Ok((mut socket, remote)) => {
                    let _ = socket.set_nodelay(true);
                    let entry = self.conns.vacant_entry();
                    let key = entry.key();
                    let registered =
                        self.poll
                            .registry()
                            .register(&mut socket, Token(key), Interest::READABLE);
                    if registered.is_err() {
                        continue;
                    }
                    let transport = match &self.tls {
                        None => Transport::plain(socket),
                        Some(tls) => match rustls::ServerConnection::new(tls.clone()) {
                            Ok(session) => Transport::tls(socket, session.into()),
                            // Only a configuration rustls rejects fails here: every
                            // connection would; the socket is closed.
                            Err(error) => {
                                let _ = guarded(|| self.handler.on_tls_error(&error, remote));
                                continue;
                            }
                        },
                    };
                    let shared = Arc::new(ConnShared::new(key, &self.config));
                    let handshake = Handshaking {
                        parser: ServerHandshake::new(self.config.max_request_size),
                        remote,
                        accepted: Instant::now(),
                    };
                    entry.insert(Conn::new(
                        transport,
                        shared,
                        self.config.clone(),
                        Phase::Handshake(Box::new(handshake)),
                        Vec::new(),
                    ));
                    self.update(key);
                }
                Err(e) if e.kind() == io::ErrorKind::WouldBlock => return,
                Err(e) if e.kind() == io::ErrorKind::Interrupted => {}
                // Out of file descriptors or a connection reset before accept: try again
                // on the next readiness event rather than spin.
                Err(_) => return,
            }
        }
    }

    fn read(&mut self, key: usize) {
        for turn in 0.. {
            let Some(conn) = self.conns.get_mut(key) else {
                return;
            };
            if conn.read_paused || conn.eof || matches!(conn.phase, Phase::Responding) {
                return;
            }
            if turn == READS_PER_TURN {
                if !conn.in_ready {
                    conn.in_ready = true;
                    self.ready.push_back(key);
                }
                return;
            }
            if !conn.unread.is_empty() {
                let unread = std::mem::take(&mut conn.unread);
                feed(&mut self.handler, &self.handle.inner, conn, &unread);
                continue;
            }
            match conn.transport.read(&mut self.read_buf, &mut self.tls_buf) {
                Ok(0) => {
                    conn.eof = true;
                    if let Phase::Open { core, .. } = &mut conn.phase {
                        core.receive_eof();
                    }
                    return;
                }
                Ok(n) => {
                    let data = &self.read_buf[..n];
                    feed(&mut self.handler, &self.handle.inner, conn, data);
                    // Saves the read that would return WouldBlock: one syscall per
                    // message at one message in flight. (TCP urgent data also ends a
                    // read short without a new edge; it only stalls the connection that
                    // sent it, whose stream it corrupts anyway.)
                    if conn.unread.is_empty()
                        && !conn.read_closed
                        && conn.transport.short_read_drains(n, self.read_buf.len())
                    {
                        return;
                    }
                }
                Err(e) if e.kind() == io::ErrorKind::WouldBlock => return,
                Err(e) if e.kind() == io::ErrorKind::Interrupted => {}
                Err(e) => return self.fail_io(key, e),
            }
        }
    }

    fn fail_io(&mut self, key: usize, error: io::Error) {
        if let Some(conn) = self.conns.get_mut(key) {
            conn.eof = true;
            // After the handshake a TLS failure is the connection's error, reported below.
            let tls = error
                .get_ref()
                .and_then(|e| e.downcast_ref::<rustls::Error>());
            if let (Some(tls), Phase::Handshake(hs)) = (tls, &conn.phase) {
                let remote = hs.remote;
                let _ = guarded(|| self.handler.on_tls_error(tls, remote));
            }
            if let Phase::Open { core, app } = &mut conn.phase {
                if core.state() != ConnectionState::Closed {
                    fail_open(
                        &mut self.handler,
                        core,
                        app,
                        &mut conn.errored,
                        ConnError::Io(error.to_string()),
                    );
                }
            }
        }
        self.remove(key);
    }

    /// Reconciles a connection after anything happened to it: writes, decides whether it
    /// is finished, publishes its status, applies backpressure, sets interest and timers.
    fn update(&mut self, key: usize) {
        let Some(conn) = self.conns.get_mut(key) else {
            return;
        };
        if let Err(error) = conn.flush() {
            return self.fail_io(key, error);
        }
        let finished = match &conn.phase {
            Phase::Handshake(_) => conn.eof,
            Phase::Responding => conn.drained() || conn.eof,
            Phase::Open { core, .. } => {
                (core.should_close_transport() && conn.drained())
                    || (conn.eof && core.state() == ConnectionState::Closed)
            }
        };
        if finished {
            // A TLS session ends with close_notify, so that the peer can tell our end
            // from a truncation.
            conn.transport.close_notify();
            return self.remove(key);
        }
        if let Phase::Open { core, .. } = &conn.phase {
            conn.shared.set_status(match core.state() {
                ConnectionState::Open => Status::Connected,
                ConnectionState::Closing => Status::Closing,
                ConnectionState::Closed => Status::Closed,
            });
            if core.close_expected() && conn.closing_since.is_none() {
                conn.closing_since = Some(Instant::now());
            }
        }
        let unwritten = conn.unwritten();
        conn.shared.set_unwritten(unwritten);
        if unwritten == 0 && !conn.in_ready {
            // Going back to waiting: an idle connection keeps no buffers. Within a burst
            // the buffers are reused, so this costs one allocation per wake-up at most.
            // (Keeping large buffers over a quiet spell was measured: no faster for 16 MiB
            // echoes, since the allocator reuses the freed memory anyway, and it held
            // every busy connection's peak for the whole spell.)
            if let Phase::Open { core, .. } = &mut conn.phase {
                core.release_memory();
            }
        }
        if over_cap(conn.shared.buffered_amount(), conn.config.max_buffered) {
            conn.read_paused = true;
        } else if conn.read_paused {
            conn.read_paused = false;
            if !conn.in_ready {
                conn.in_ready = true;
                self.ready.push_back(key);
            }
        }
        let wanted = if unwritten > 0 || conn.transport.has_buffered() {
            Interest::READABLE | Interest::WRITABLE
        } else {
            Interest::READABLE
        };
        if wanted != conn.interest {
            if let Err(error) =
                self.poll
                    .registry()
                    .reregister(conn.transport.socket_mut(), Token(key), wanted)
            {
                return self.fail_io(key, error);
            }
            conn.interest = wanted;
        }
        if let Some(deadline) = conn.next_deadline() {
            if conn.scheduled.is_none_or(|s| deadline < s) {
                conn.scheduled = Some(deadline);
                self.timers.push(Reverse((deadline, key, conn.shared.id())));
            }
        }
    }

    fn remove(&mut self, key: usize) {
        if !self.conns.contains(key) {
            return;
        }
        let mut conn = self.conns.remove(key);
        let _ = self.poll.registry().deregister(conn.transport.socket_mut());
        conn.shared.set_status(Status::Closed);
        conn.shared.set_unwritten(0);
        if let Phase::Open { mut core, app } = conn.phase {
            core.abort("the connection was closed");
            if let Some(status) = core.close_status() {
                let _ = guarded(|| self.handler.on_close(app, status));
            }
        }
    }

    fn live(&mut self, shared: &ConnShared) -> Option<usize> {
        let token = shared.token();
        let conn = self.conns.get(token)?;
        (conn.shared.id() == shared.id()).then_some(token)
    }

    /// Applies the commands queued when it starts, taking them one at a time: a callback
    /// run meanwhile (`on_open` of an adopted connection, `on_close`) applies its
    /// connection's queued commands itself, and must find them all still queued, or one
    /// connection's sends would be reordered. Commands queued meanwhile wait for the next
    /// turn (the poll does not sleep then), so a producer thread cannot starve reads.
    fn run_commands(&mut self) {
        let queued = self
            .handle
            .inner
            .commands
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .len();
        for _ in 0..queued {
            let next = self
                .handle
                .inner
                .commands
                .lock()
                .unwrap_or_else(|e| e.into_inner())
                .pop_front();
            let Some(command) = next else { break };
            command.dequeue();
            let command = match command {
                Command::Shutdown { timeout } => {
                    self.begin_shutdown(timeout);
                    continue;
                }
                Command::Adopt(adoption) => {
                    self.adopt(*adoption);
                    continue;
                }
                other => other,
            };
            let key = command.conn().and_then(|conn| self.live(conn));
            let Some(key) = key else { continue };
            let conn = &mut self.conns[key];
            let Phase::Open { core, .. } = &mut conn.phase else {
                if matches!(command, Command::Close { .. }) {
                    self.remove(key);
                }
                continue;
            };
            command.apply(core);
            self.update(key);
        }
    }

    /// Takes in a client connection whose handshake is done: registers it, runs `on_open`,
    /// decodes what followed the handshake response.
    fn adopt(&mut self, adoption: Adoption) {
        let Adoption {
            stream,
            shared,
            app,
            leftover,
            config,
            deflate,
        } = adoption;
        let refuse = |shared: &ConnShared| shared.set_status(Status::Closed);
        let Ok(app) = app.downcast::<H::Conn>() else {
            // A caller's bug (another type than the loop's `Handler::Conn`): not opened.
            return refuse(&shared);
        };
        let (socket, session) = match stream {
            ClientStream::Tcp(socket) => (socket, None),
            ClientStream::Tls(socket, session) => (socket, Some(session)),
        };
        let nonblocking = socket.set_nonblocking(true);
        let mut socket = TcpStream::from_std(socket);
        let entry = self.conns.vacant_entry();
        let key = entry.key();
        let registered = nonblocking.and_then(|()| {
            self.poll
                .registry()
                .register(&mut socket, Token(key), Interest::READABLE)
        });
        let mut app = *app;
        if let Err(error) = registered {
            // The order guarantee holds even here: open, error, close (1006).
            let mut core = Connection::client(config.protocol.clone(), Box::new(OsRandom::new()));
            let mut errored = false;
            let _ = guarded(|| self.handler.on_open(&mut app));
            let error = ConnError::Io(error.to_string());
            fail_open(&mut self.handler, &mut core, &mut app, &mut errored, error);
            refuse(&shared);
            if let Some(status) = core.close_status() {
                let _ = guarded(|| self.handler.on_close(app, status));
            }
            return;
        }
        shared.set_token(key);
        let mut core = Connection::client(config.protocol.clone(), Box::new(OsRandom::new()));
        if let (Some(params), Some(ours)) = (&deflate, &config.deflate) {
            core.enable_deflate(params, ours);
        }
        let phase = Phase::Open {
            core: Box::new(core),
            app,
        };
        let transport = match session {
            None => Transport::plain(socket),
            Some(session) => Transport::tls(socket, (*session).into()),
        };
        let conn = entry.insert(Conn::new(transport, shared, config, phase, leftover));
        if let Phase::Open { core, app } = &mut conn.phase {
            match guarded(|| self.handler.on_open(app)) {
                Ok(()) => self.handle.inner.apply_commands_for(&conn.shared, core),
                Err(error) => fail_open(&mut self.handler, core, app, &mut conn.errored, error),
            }
            if self.shutdown.is_some() && core.state() == ConnectionState::Open {
                let _ = core.close_with_standard_code(CloseCode::GOING_AWAY, "shutting down");
            }
        }
        // The leftover (in `unread`) and anything already in the socket are read now:
        // an edge-triggered registration reports only data that arrives later.
        self.read(key);
        self.update(key);
    }

    fn begin_shutdown(&mut self, timeout: Option<Duration>) {
        if let Some(mut listener) = self.listener.take() {
            let _ = self.poll.registry().deregister(&mut listener);
        }
        if timeout == Some(Duration::ZERO) {
            self.shutdown = Some(Some(Instant::now()));
            return self.destroy_all();
        }
        // A later shutdown may bring the deadline forward, never push it back or drop it.
        let deadline = timeout.map(|t| Instant::now() + t);
        self.shutdown = Some(match (self.shutdown.flatten(), deadline) {
            (Some(earlier), Some(later)) => Some(earlier.min(later)),
            (earlier, later) => earlier.or(later),
        });
        let keys: Vec<usize> = self.conns.iter().map(|(key, _)| key).collect();
        for key in keys {
            match &mut self.conns[key].phase {
                Phase::Open { core, .. } => {
                    if core.state() == ConnectionState::Open {
                        let _ =
                            core.close_with_standard_code(CloseCode::GOING_AWAY, "shutting down");
                    }
                    self.update(key);
                }
                Phase::Handshake(_) | Phase::Responding => self.remove(key),
            }
        }
    }

    /// Destroys every connection at once: no Close frame, and a TCP reset instead of FIN.
    fn destroy_all(&mut self) {
        let keys: Vec<usize> = self.conns.iter().map(|(key, _)| key).collect();
        for key in keys {
            let conn = &mut self.conns[key];
            let socket = conn.transport.socket_mut();
            let _ = socket2::SockRef::from(&*socket).set_linger(Some(Duration::ZERO));
            if let Phase::Open { core, .. } = &mut conn.phase {
                core.abort("the event loop was terminated");
            }
            self.remove(key);
        }
    }

    fn fire_timers(&mut self) {
        let now = Instant::now();
        if self
            .shutdown
            .flatten()
            .is_some_and(|deadline| now >= deadline)
        {
            self.destroy_all();
        }
        while let Some(Reverse((at, key, id))) = self.timers.peek().copied() {
            if at > now {
                break;
            }
            self.timers.pop();
            let Some(conn) = self.conns.get_mut(key) else {
                continue;
            };
            if conn.shared.id() != id {
                continue;
            }
            if conn.scheduled == Some(at) {
                conn.scheduled = None;
            }
            self.on_timer(key, now);
            self.update(key);
        }
    }

    fn on_timer(&mut self, key: usize, now: Instant) {
        let conn = &mut self.conns[key];
        let config = conn.config.clone();
        let Some(deadline) = conn.next_deadline() else {
            return;
        };
        if deadline > now {
            return;
        }
        let Phase::Open { core, app } = &mut conn.phase else {
            // A handshake that took too long (slowloris) or an answer nobody reads.
            return self.remove(key);
        };
        if conn.closing_since.is_some() {
            core.abort("the closing handshake timed out");
            return self.remove(key);
        }
        if let Some(idle) = config.idle_timeout {
            if now >= conn.last_input + idle {
                let _ = core.close_with_standard_code(CloseCode::GOING_AWAY, "idle timeout");
                return;
            }
        }
        if config.ping_interval.is_some() {
            match conn.ping_sent {
                None => {
                    let _ = core.send_ping(b"");
                    conn.ping_sent = Some(now);
                }
                Some(_) => {
                    fail_open(
                        &mut self.handler,
                        core,
                        app,
                        &mut conn.errored,
                        ConnError::Timeout("pong"),
                    );
                    self.remove(key);
                }
            }
        }
    }
}
