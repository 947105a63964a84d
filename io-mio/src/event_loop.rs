//! The event loop: one `mio::Poll`, a listener, a slab of connections, a timer heap and a
//! command queue, in the shape of mio's `tcp_server` example: accept until `WouldBlock`,
//! one function per readiness kind. Edge-triggered: sockets are read until `WouldBlock`
//! (at most a few reads per turn, for fairness) and written until `WouldBlock`; WRITABLE
//! is asked for only while output is pending. The protocol, its handshakes and its
//! timers are the core's: the loop moves bytes, reads the clock and schedules wake-ups.

use std::collections::VecDeque;
use std::io;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use mio::net::{TcpListener, TcpStream};
use mio::{Events, Interest, Poll, Token, Waker};
use slab::Slab;
use ws6455_core::accept::Acceptor;
use ws6455_core::{BufferPool, ConnectionState, Expired};

use crate::config::LoopConfig;
use crate::conn::{Conn, Handshaking, Http, Phase};
use crate::dispatch::{fail_open, feed, guarded};
use crate::handle::{over_cap, ConnShared, HandleInner, LoopHandle, Status, CURRENT_LOOP, LOCAL};
use crate::handler::{AcceptProblem, ConnError, ConnHandler, Handler};
use crate::linger::{self, Lingering};
use crate::timers::{self, Timers};
use crate::transport::Transport;

const LISTENER: Token = Token(usize::MAX - 1);
const WAKER: Token = Token(usize::MAX);
/// The read buffer shared by every connection of a loop: connections keep only leftovers.
/// Large enough that a bulk transfer costs few reads (the kernel copies only what is
/// there, so small messages do not pay for its size).
const READ_BUFFER: usize = 256 << 10;
/// Reads per connection per turn before others get theirs.
const READS_PER_TURN: usize = 16;
/// Connections accepted per turn before the connections already open get theirs (the
/// rest of the backlog is taken on the next turn).
const ACCEPTS_PER_TURN: usize = 256;
/// How long accepting pauses when the process is out of descriptors or memory: the
/// backlog waits in the kernel and is served once a retry succeeds (edge-triggered
/// readiness would not report it again; an immediate retry would spin).
const ACCEPT_RETRY: Duration = Duration::from_millis(100);
/// Connections beyond [`LoopConfig::max_connections`] that may be answering 503 at once;
/// past them, new connections are closed without an answer.
const OVER_LIMIT_ANSWERING: usize = 1024;

/// A loop built and not yet running: its handle already works (commands queue up), and
/// [`run`](Self::run) hands it the application on the thread that drives it.
pub struct EventLoop {
    poll: Poll,
    listener: Option<TcpListener>,
    handle: LoopHandle,
    config: Arc<LoopConfig>,
    /// TLS for accepted connections.
    tls: Option<Arc<rustls::ServerConfig>>,
}

impl std::fmt::Debug for EventLoop {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("EventLoop")
            .field("listening", &self.listener.is_some())
            .field("tls", &self.tls.is_some())
            .finish_non_exhaustive()
    }
}

impl EventLoop {
    /// A loop serving `listener` (made non-blocking here).
    pub fn new(
        listener: std::net::TcpListener,
        config: Arc<LoopConfig>,
    ) -> io::Result<(Self, LoopHandle)> {
        listener.set_nonblocking(true)?;
        Self::build(Some(TcpListener::from_std(listener)), None, config)
    }

    /// A loop serving `listener` over TLS: every accepted connection starts with a TLS
    /// handshake, which counts toward the protocol's handshake timeout.
    pub fn with_tls(
        listener: std::net::TcpListener,
        tls: Arc<rustls::ServerConfig>,
        config: Arc<LoopConfig>,
    ) -> io::Result<(Self, LoopHandle)> {
        listener.set_nonblocking(true)?;
        Self::build(Some(TcpListener::from_std(listener)), Some(tls), config)
    }

    /// A loop without a listener: it drives the connections handed to it with
    /// [`LoopHandle::adopt`] (clients), and runs until shut down.
    pub fn unbound(config: Arc<LoopConfig>) -> io::Result<(Self, LoopHandle)> {
        Self::build(None, None, config)
    }

    fn build(
        mut listener: Option<TcpListener>,
        tls: Option<Arc<rustls::ServerConfig>>,
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
                shared_queued: std::sync::atomic::AtomicUsize::new(0),
                waker,
                stopped: std::sync::atomic::AtomicBool::new(false),
            }),
        };
        let event_loop = EventLoop {
            poll,
            listener,
            handle: handle.clone(),
            config,
            tls,
        };
        Ok((event_loop, handle))
    }

    /// Runs with `handler` until shut down and every connection is gone; then calls
    /// [`Handler::on_loop_exit`].
    pub fn run<H: Handler>(self, handler: H) {
        let acceptor_config = Arc::new(self.config.protocol.clone());
        Running {
            poll: self.poll,
            listener: self.listener,
            conns: Slab::new(),
            handler,
            handle: self.handle,
            config: self.config,
            acceptor_config,
            tls: self.tls,
            timers: Timers::new(Instant::now()),
            ready: VecDeque::new(),
            read_buf: vec![0; READ_BUFFER],
            tls_buf: Vec::new(),
            pool: BufferPool::default(),
            shutdown: None,
            accept: AcceptState::Waiting,
            deferred: Vec::new(),
            lingering: Lingering::default(),
        }
        .run();
    }
}

/// A running loop with its application.
pub(crate) struct Running<H: Handler> {
    pub(crate) poll: Poll,
    pub(crate) listener: Option<TcpListener>,
    pub(crate) conns: Slab<Conn<H::Conn>>,
    pub(crate) handler: H,
    pub(crate) handle: LoopHandle,
    pub(crate) config: Arc<LoopConfig>,
    /// The protocol configuration, shared by every accepted connection.
    pub(crate) acceptor_config: Arc<ws6455_core::Config>,
    pub(crate) tls: Option<Arc<rustls::ServerConfig>>,
    pub(crate) timers: Timers,
    pub(crate) ready: VecDeque<usize>,
    pub(crate) read_buf: Vec<u8>,
    /// TLS records read from a socket before rustls decrypts them into `read_buf`;
    /// allocated on the first TLS read.
    pub(crate) tls_buf: Vec<u8>,
    /// Set once shutting down; holds the deadline after which connections are destroyed.
    pub(crate) shutdown: Option<Option<Instant>>,
    pub(crate) accept: AcceptState,
    /// Connections that commands wrote to during this turn, to update once at its end.
    pub(crate) deferred: Vec<usize>,
    /// Sockets closed by this side, waiting for the peer's end of stream.
    pub(crate) lingering: Lingering,
    /// Buffers lent to connections while they are busy.
    pub(crate) pool: BufferPool,
}

/// Where the listener is.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) enum AcceptState {
    /// Everything waiting was accepted: the next readiness event says when to go on.
    Waiting,
    /// More may wait in the backlog: accept again on the next turn.
    More,
    /// accept failed for want of descriptors or memory: retry at this time.
    Paused(Instant),
}

fn would_block(e: &io::Error) -> bool {
    e.kind() == io::ErrorKind::WouldBlock
}

fn interrupted(e: &io::Error) -> bool {
    e.kind() == io::ErrorKind::Interrupted
}

/// An accept error that concerns one connection only, which the peer ended before it
/// was taken (Linux also passes on pending network errors: accept(2)).
fn gone_before_accept(e: &io::Error) -> bool {
    matches!(
        e.kind(),
        io::ErrorKind::ConnectionAborted | io::ErrorKind::ConnectionReset
    ) || matches!(
        e.raw_os_error(),
        // EPROTO, EPERM (a firewall), ENETDOWN, ENOPROTOOPT, EHOSTDOWN, ENONET,
        // EHOSTUNREACH, EOPNOTSUPP, ENETUNREACH, ETIMEDOUT
        Some(71 | 1 | 100 | 92 | 112 | 64 | 113 | 95 | 101 | 110)
    )
}

impl<H: Handler> Running<H> {
    fn run(mut self) {
        CURRENT_LOOP.with(|c| c.set(self.handle.address()));
        let mut events = Events::with_capacity(1024);
        loop {
            let timeout = self.poll_timeout();
            if let Err(e) = self.poll.poll(&mut events, timeout) {
                if interrupted(&e) {
                    continue;
                }
                // The poller itself failed: nothing can be served any more.
                self.destroy_all();
                break;
            }
            if self.accept_due(Instant::now()) {
                self.accept();
            }
            for event in events.iter() {
                match event.token() {
                    LISTENER => self.accept(),
                    WAKER => {}
                    Token(token) if token >= linger::FIRST_TOKEN => {
                        self.lingering.on_event(self.poll.registry(), token)
                    }
                    Token(key) => self.connection_event(key, event),
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
            if self.shutdown.is_some() && self.conns.is_empty() && self.stop_unless_adopting() {
                break;
            }
        }
        CURRENT_LOOP.with(|c| c.set(0));
        // (After a poller failure, adoptions still queued cannot be run.)
        self.handle
            .inner
            .stopped
            .store(true, std::sync::atomic::Ordering::Release);
        let _ = guarded(|| self.handler.on_loop_exit());
    }

    /// Marks the loop stopped unless a client connection waits in the queue to be
    /// adopted (it must be run, since `adopt` promised it would be). Under the queue's
    /// lock, which `adopt` holds to check and push.
    fn stop_unless_adopting(&self) -> bool {
        let queue = self
            .handle
            .inner
            .commands
            .lock()
            .unwrap_or_else(|e| e.into_inner());
        let adopting = queue
            .iter()
            .any(|c| matches!(c, crate::handle::Command::Adopt(_)));
        if adopting || LOCAL.with(|local| local.borrow().has_adoption()) {
            return false;
        }
        self.handle
            .inner
            .stopped
            .store(true, std::sync::atomic::Ordering::Release);
        true
    }

    fn poll_timeout(&self) -> Option<Duration> {
        let queued = || {
            let queue = self.handle.inner.commands.lock();
            !queue.unwrap_or_else(|e| e.into_inner()).is_empty()
                || LOCAL.with(|local| !local.borrow().is_empty())
        };
        // Commands queued by callbacks on this thread come with no wake-up.
        if !self.ready.is_empty() || queued() || self.accept == AcceptState::More {
            return Some(Duration::ZERO);
        }
        let timer = self.timers.next();
        let retry = match self.accept {
            AcceptState::Paused(at) => Some(at),
            _ => None,
        };
        let linger = self.lingering.next_deadline();
        let next = [timer, self.shutdown.flatten(), retry, linger]
            .into_iter()
            .flatten()
            .min()?;
        // Round up so that the timer has expired when poll returns.
        Some(next.saturating_duration_since(Instant::now()) + Duration::from_millis(1))
    }

    fn connection_event(&mut self, key: usize, event: &mio::event::Event) {
        let closed = event.is_read_closed() || event.is_error();
        if closed {
            if let Some(conn) = self.conns.get_mut(key) {
                conn.read_closed = true;
            }
        }
        if event.is_readable() || closed {
            self.read(key);
        }
        self.update(key);
    }

    /// True when the listener has connections to take now: more than one turn's worth
    /// came at once, or a pause for descriptors is over.
    fn accept_due(&mut self, now: Instant) -> bool {
        match self.accept {
            AcceptState::Waiting => false,
            AcceptState::More => true,
            AcceptState::Paused(at) => now >= at,
        }
    }

    fn accept(&mut self) {
        let paused = matches!(self.accept, AcceptState::Paused(_));
        self.accept = AcceptState::Waiting;
        if self.shutdown.is_some() {
            return;
        }
        for _ in 0..ACCEPTS_PER_TURN {
            let Some(listener) = &self.listener else {
                return;
            };
            match listener.accept() {
                Ok((socket, remote)) => self.accepted(socket, remote),
                Err(e) if would_block(&e) => return,
                // A connection reset or refused before it was taken: the next one waits.
                Err(e) if interrupted(&e) || gone_before_accept(&e) => {}
                // Out of descriptors (EMFILE, ENFILE) or memory: the connections stay in
                // the backlog until a retry succeeds. Reported once per pause.
                Err(e) => {
                    if !paused {
                        log::warn!("cannot accept connections ({e}): retrying every 100 ms");
                        let _ =
                            guarded(|| self.handler.on_accept_problem(AcceptProblem::Failed(&e)));
                    }
                    self.accept = AcceptState::Paused(Instant::now() + ACCEPT_RETRY);
                    return;
                }
            }
        }
        self.accept = AcceptState::More;
    }

    fn accepted(&mut self, mut socket: TcpStream, remote: std::net::SocketAddr) {
        let limit = self.config.max_connections;
        let over_limit = self.conns.len() >= limit;
        if over_limit {
            log::debug!("{remote}: answered 503, the loop holds its {limit} connections");
            let problem = AcceptProblem::AtLimit { remote, limit };
            let _ = guarded(|| self.handler.on_accept_problem(problem));
            if self.conns.len() >= limit.saturating_add(OVER_LIMIT_ANSWERING) {
                // Closed unanswered: answering costs a slot too.
                return;
            }
        }
        let _ = socket.set_nodelay(true);
        let entry = self.conns.vacant_entry();
        let key = entry.key();
        let registry = self.poll.registry();
        if registry
            .register(&mut socket, Token(key), Interest::READABLE)
            .is_err()
        {
            return;
        }
        let transport = match &self.tls {
            None => Transport::plain(socket),
            Some(tls) => match rustls::ServerConnection::new(tls.clone()) {
                Ok(session) => Transport::tls(socket, session.into()),
                // Only a configuration rustls rejects fails here: every connection
                // would; the socket is closed.
                Err(error) => {
                    log::error!("the TLS configuration is refused: {error}");
                    let _ = guarded(|| self.handler.on_tls_error(&error, remote));
                    return;
                }
            },
        };
        let shared = Arc::new(ConnShared::new(key, &self.config));
        let handshake = Handshaking {
            acceptor: Acceptor::new(self.acceptor_config.clone(), Instant::now()),
            remote,
            over_limit,
        };
        entry.insert(Conn::new(
            transport,
            shared,
            Phase::Http(Box::new(Http::Handshake(handshake))),
        ));
        // A client writes its request as soon as it is connected, so it is usually in
        // the socket already: reading it now answers in this turn instead of the next
        // poll's (epoll checks readiness again before reporting, so a request read here
        // is not reported a second time).
        self.read(key);
        self.update(key);
    }

    pub(crate) fn read(&mut self, key: usize) {
        for turn in 0.. {
            let Some(conn) = self.conns.get_mut(key) else {
                return;
            };
            if conn.read_paused || conn.eof || conn.phase.is_responding() {
                return;
            }
            if turn == READS_PER_TURN {
                if !conn.in_ready {
                    conn.in_ready = true;
                    self.ready.push_back(key);
                }
                return;
            }
            let inner = &self.handle.inner;
            if let Some(unread) = conn.unread.take() {
                feed(&mut self.handler, inner, conn, &unread, Instant::now());
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
                    if let Phase::Open { core, .. } = &mut conn.phase {
                        self.pool.lend(core);
                    }
                    feed(&mut self.handler, inner, conn, data, Instant::now());
                    // Saves the read that would return WouldBlock: one syscall per
                    // message at one message in flight. (TCP urgent data also ends a
                    // read short without a new edge; it only stalls the connection that
                    // sent it, whose stream it corrupts anyway.)
                    if conn.unread.is_none()
                        && !conn.read_closed
                        && conn.transport.short_read_drains(n, self.read_buf.len())
                    {
                        return;
                    }
                }
                Err(e) if would_block(&e) => return,
                Err(e) if interrupted(&e) => {}
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
            if let (Some(tls), Some(hs)) = (tls, conn.phase.handshake()) {
                let remote = hs.remote;
                log::debug!("{remote}: TLS handshake failed: {tls}");
                let _ = guarded(|| self.handler.on_tls_error(tls, remote));
            }
            if let Phase::Open { core, app } = &mut conn.phase {
                if core.state() != ConnectionState::Closed {
                    let error = ConnError::Io(error.to_string());
                    fail_open(core, app, &mut conn.errored, error, Instant::now());
                }
            }
        }
        self.remove(key);
    }

    /// Reconciles a connection after anything happened to it: writes, decides whether it
    /// is finished, publishes its status, applies backpressure, sets interest and the
    /// core's next wake-up.
    pub(crate) fn update(&mut self, key: usize) {
        let Some(conn) = self.conns.get_mut(key) else {
            return;
        };
        if let Err(error) = conn.flush() {
            return self.fail_io(key, error);
        }
        if conn.finished() {
            // A TLS session ends with close_notify, so that the peer can tell our end
            // from a truncation.
            conn.transport.close_notify();
            // Unless the peer ended first, its last bytes may still be on their way.
            let linger = match &conn.phase {
                _ if conn.eof => Duration::ZERO,
                Phase::Open { core, .. } => core.config().linger_timeout,
                _ => self.acceptor_config.linger_timeout,
            };
            if let Some(socket) = self.remove(key) {
                let registry = self.poll.registry();
                self.lingering.add(registry, socket, linger, Instant::now());
            }
            return;
        }
        if let Phase::Open { core, .. } = &conn.phase {
            conn.shared.set_status(core.state().into());
        }
        let unwritten = conn.unwritten();
        conn.shared.set_unwritten(unwritten);
        if unwritten == 0 && !conn.in_ready {
            // Going back to waiting: an idle connection keeps no small buffers, sooner
            // than the core's own quiet-second release (a large one waits for it); they
            // go back to the loop's pool, which lends them to the next connection that
            // reads. (Keeping them in each
            // connection for the quiet second was measured, idle_memory 5000: the C
            // allocator cannot return memory freed in the middle of its heap, so a burst
            // across every connection left 2.3 KiB per idle connection after 64 B echoes
            // and 27 KiB after 64 KiB ones; 0.9 KiB both, releasing here.)
            if let Phase::Open { core, .. } = &mut conn.phase {
                self.pool.take_back(core);
            }
        }
        if over_cap(conn.shared.buffered_amount(), conn.shared.max_buffered()) {
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
            let registry = self.poll.registry();
            if let Err(error) = registry.reregister(conn.transport.socket_mut(), Token(key), wanted)
            {
                return self.fail_io(key, error);
            }
            conn.interest = wanted;
        }
        if let Some(at) = conn.poll_timeout() {
            let deadline = self.timers.deadline(at);
            if conn.scheduled.is_none_or(|s| deadline < s) {
                conn.scheduled = Some(deadline);
                self.timers.push(deadline, key, conn.shared.id());
            }
        }
    }

    /// Notes that a command wrote into the connection's buffer: its `update` (the write
    /// included) waits for [`flush_deferred`](Self::flush_deferred), so that every
    /// command of a turn costs one write per connection, not one each. The buffered
    /// amount is published now, for the cap checks of the commands that follow.
    pub(crate) fn defer_update(&mut self, key: usize) {
        let Some(conn) = self.conns.get_mut(key) else {
            return;
        };
        conn.shared.set_unwritten(conn.unwritten());
        if !conn.update_deferred {
            conn.update_deferred = true;
            self.deferred.push(key);
        }
    }

    /// Updates every connection [`defer_update`](Self::defer_update) noted.
    pub(crate) fn flush_deferred(&mut self) {
        let mut keys = std::mem::take(&mut self.deferred);
        for &key in &keys {
            if let Some(conn) = self.conns.get_mut(key) {
                conn.update_deferred = false;
            }
            self.update(key);
        }
        // The allocation is kept for the next turn.
        keys.clear();
        if self.deferred.is_empty() {
            self.deferred = keys;
        }
    }

    /// Ends a connection (its `on_close` runs) and returns its socket, which closes when
    /// dropped.
    pub(crate) fn remove(&mut self, key: usize) -> Option<TcpStream> {
        if !self.conns.contains(key) {
            return None;
        }
        let mut conn = self.conns.remove(key);
        let _ = self.poll.registry().deregister(conn.transport.socket_mut());
        conn.shared.set_status(Status::Closed);
        conn.shared.set_unwritten(0);
        if let Phase::Open { mut core, app } = conn.phase {
            core.abort("the connection was closed");
            if let Some(status) = core.close_status() {
                let _ = guarded(|| app.on_close(status));
            }
        }
        Some(conn.transport.into_socket())
    }

    fn fire_timers(&mut self) {
        let now = Instant::now();
        self.lingering.expire(self.poll.registry(), now);
        if self
            .shutdown
            .flatten()
            .is_some_and(|deadline| now >= deadline)
        {
            self.destroy_all();
        }
        while let Some((at, key, tag)) = self.timers.pop_due(now) {
            let Some(conn) = self.conns.get_mut(key) else {
                continue;
            };
            if timers::tag(conn.shared.id()) != tag {
                continue;
            }
            if conn.scheduled == Some(at) {
                conn.scheduled = None;
            }
            self.on_timer(key, now);
            self.update(key);
        }
    }

    /// Runs the core's deadlines for one connection; a deadline that ends the transport
    /// ends it now, whatever is still unwritten.
    fn on_timer(&mut self, key: usize, now: Instant) {
        let conn = &mut self.conns[key];
        let expired = match &mut conn.phase {
            // A handshake that took too long (slowloris) or an answer nobody reads.
            Phase::Http(http) => match &mut **http {
                Http::Handshake(hs) => hs.acceptor.handle_timeout(now),
                Http::Responding(reply) => reply.handle_timeout(now),
            },
            Phase::Open { core, app } => match core.handle_timeout(now) {
                Some(Expired::Pong) => {
                    let error = ConnError::Timeout("pong");
                    fail_open(core, app, &mut conn.errored, error, now);
                    true
                }
                Some(Expired::Closing) => true,
                Some(_) | None => false,
            },
        };
        if expired {
            self.remove(key);
        }
    }
}
