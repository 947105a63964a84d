//! Talking to a running loop from any thread: the handle, the commands it queues (with
//! their waker), and the loop thread's own queue. The per-connection state both sides
//! share is `shared.rs`'s.

use std::collections::VecDeque;
use std::fmt;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use mio::Waker;
use ws6455_core::close::{check_close, Closer};
use ws6455_core::{CloseCode, Connection};

use crate::config::{Backpressure, LoopConfig};

pub(crate) use crate::shared::over_cap;
pub use crate::shared::{ConnShared, Status};

/// The loop has stopped: [`LoopHandle::adopt`] cannot hand it a connection.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct LoopStopped;

impl fmt::Display for LoopStopped {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("the event loop has stopped")
    }
}

impl std::error::Error for LoopStopped {}

/// Why a send or close through a [`LoopHandle`] was refused. Nothing was queued.
#[derive(Clone, Debug, PartialEq, Eq)]
#[non_exhaustive]
pub enum SendError {
    /// The connection is not open (still connecting, closing or closed).
    NotOpen(Status),
    /// The buffered outgoing bytes would exceed the cap.
    BufferFull {
        /// Bytes buffered before this send.
        buffered: usize,
        /// The configured cap.
        cap: usize,
    },
    /// The protocol refused the command (close code, reason or control payload length).
    Protocol(ws6455_core::SendError),
}

impl fmt::Display for SendError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            SendError::NotOpen(status) => write!(f, "connection is not open (status {status:?})"),
            SendError::BufferFull { buffered, cap } => write!(
                f,
                "outgoing buffer full: {buffered} bytes buffered, cap {cap}; the peer is not reading"
            ),
            SendError::Protocol(e) => e.fmt(f),
        }
    }
}

impl std::error::Error for SendError {}

/// A message to send.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Outgoing {
    /// A text message.
    Text(String),
    /// A binary message.
    Binary(Vec<u8>),
}

impl Outgoing {
    /// The payload length in bytes.
    pub fn len(&self) -> usize {
        match self {
            Outgoing::Text(text) => text.len(),
            Outgoing::Binary(data) => data.len(),
        }
    }

    /// True for an empty payload.
    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }

    /// Queues the message in `core`, its buffer with it.
    pub(crate) fn send_on(self, core: &mut Connection) -> Result<(), ws6455_core::SendError> {
        match self {
            Outgoing::Text(text) => core.send_text_owned(text),
            Outgoing::Binary(data) => core.send_binary_owned(data),
        }
    }
}

/// Starts the closing handshake in `core` for a handle's close (code and reason checked);
/// `wait_for_peer` for a server's terminate (see
/// [`ws6455_core::Connection::wait_for_peer_close`]).
pub(crate) fn close_on(
    core: &mut Connection,
    now: std::time::Instant,
    code: CloseCode,
    reason: &str,
    wait_for_peer: bool,
) -> Result<(), ws6455_core::SendError> {
    if wait_for_peer {
        core.wait_for_peer_close();
    }
    core.close_with_standard_code(now, code, reason)
}

/// Work for the loop, queued by any thread.
#[derive(Debug)]
pub(crate) enum Command {
    Send {
        conn: Arc<ConnShared>,
        message: Outgoing,
    },
    /// A frame already encoded (server frames are unmasked, so identical for everyone).
    SendFrame {
        conn: Arc<ConnShared>,
        frame: Arc<[u8]>,
    },
    Ping {
        conn: Arc<ConnShared>,
        payload: Vec<u8>,
    },
    Close {
        conn: Arc<ConnShared>,
        code: CloseCode,
        reason: String,
        /// Wait for the peer's Close past the close timeout (a server's terminate).
        wait_for_peer: bool,
    },
    /// Destroy the connection at once: no Close frame, a TCP reset.
    Destroy {
        conn: Arc<ConnShared>,
    },
    Shutdown {
        timeout: Option<Duration>,
    },
    /// A connection opened and upgraded elsewhere (a client's), to be driven by the loop.
    Adopt(Box<Adoption>),
    /// One frame for many connections (a topic's publish).
    FanOut(Box<crate::fanout::FanOut>),
}

/// What [`LoopHandle::adopt`] hands to the loop.
pub(crate) struct Adoption {
    pub(crate) stream: crate::ClientStream,
    pub(crate) shared: Arc<ConnShared>,
    /// The application state: the loop's `Handler::Conn`, boxed to cross the queue.
    pub(crate) app: Box<dyn std::any::Any + Send>,
    /// The open connection the client's handshake made (with the frames that followed
    /// the response, its timers and extensions).
    pub(crate) core: Box<Connection>,
}

impl fmt::Debug for Adoption {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Adoption")
            .field("conn", &self.shared.id())
            .finish_non_exhaustive()
    }
}

impl Command {
    /// One that the connection `shared` applies itself right after its callback: one of
    /// its own, except a Destroy (the loop's to run: it owns the socket).
    fn is_for(&self, shared: &ConnShared) -> bool {
        self.conn().is_some_and(|c| c.id() == shared.id())
            && !matches!(self, Command::Destroy { .. })
    }

    /// A fan-out may be for any connection: what was queued after it waits for it, or a
    /// publish and a later send would swap places.
    fn is_barrier(&self) -> bool {
        matches!(self, Command::FanOut(_))
    }

    /// The connection the command is for; `None` for loop-wide commands.
    pub(crate) fn conn(&self) -> Option<&Arc<ConnShared>> {
        match self {
            Command::Send { conn, .. }
            | Command::SendFrame { conn, .. }
            | Command::Ping { conn, .. }
            | Command::Close { conn, .. }
            | Command::Destroy { conn } => Some(conn),
            Command::Shutdown { .. } | Command::Adopt(_) | Command::FanOut(_) => None,
        }
    }

    /// Marks a send as taken off the queue: its bytes now count as the loop's.
    pub(crate) fn dequeue(&self) {
        match self {
            Command::Send { conn, message } => conn.dequeued(message.len()),
            Command::SendFrame { conn, frame } => conn.dequeued(frame.len()),
            _ => {}
        }
    }

    /// Applies a connection command to its open core. A refusal means the state changed
    /// since the handle checked it (a close crossed the send): the command is moot, as
    /// the API documents.
    pub(crate) fn apply(self, core: &mut ws6455_core::Connection, now: std::time::Instant) {
        let _ = match self {
            Command::Send { message, .. } => message.send_on(core),
            Command::SendFrame { frame, .. } => core.send_encoded(&frame),
            Command::Ping { payload, .. } => core.send_ping(&payload),
            Command::Close {
                code,
                reason,
                wait_for_peer,
                ..
            } => close_on(core, now, code, &reason, wait_for_peer),
            // The loop destroys the connection itself (it owns the socket).
            Command::Destroy { .. } => Ok(()),
            Command::Shutdown { .. } | Command::Adopt(_) | Command::FanOut(_) => Ok(()),
        };
    }
}

pub(crate) struct HandleInner {
    pub(crate) commands: Mutex<VecDeque<Command>>,
    /// How many commands `commands` holds (changed under its lock): read without the
    /// lock after a callback, where it is almost always zero.
    pub(crate) shared_queued: AtomicUsize,
    pub(crate) waker: Waker,
    /// Set when the loop's thread has finished: nothing queued will ever be applied.
    pub(crate) stopped: std::sync::atomic::AtomicBool,
}

thread_local! {
    /// The loop running on this thread, if any (address of its `HandleInner`): commands
    /// queued from inside a callback need no wake-up system call.
    pub(crate) static CURRENT_LOOP: std::cell::Cell<usize> = const { std::cell::Cell::new(0) };
    /// Commands made on a loop's own thread (by its callbacks), for that loop: no lock
    /// and no wake-up. A thread runs one loop at most.
    pub(crate) static LOCAL: std::cell::RefCell<LocalQueue> =
        std::cell::RefCell::new(LocalQueue::default());
}

/// The loop thread's own command queue, with a spare buffer so that taking its
/// commands allocates nothing once warm.
#[derive(Default)]
pub(crate) struct LocalQueue {
    queue: Vec<Command>,
    spare: Vec<Command>,
}

impl LocalQueue {
    pub(crate) fn is_empty(&self) -> bool {
        self.queue.is_empty()
    }

    /// A client connection waits in it to be adopted.
    pub(crate) fn has_adoption(&self) -> bool {
        self.queue.iter().any(|c| matches!(c, Command::Adopt(_)))
    }

    /// Takes every queued command; the queue goes on with the spare buffer.
    pub(crate) fn take(&mut self) -> Vec<Command> {
        let spare = std::mem::take(&mut self.spare);
        std::mem::replace(&mut self.queue, spare)
    }

    /// Puts commands not run back in front of anything queued since, and keeps a
    /// drained buffer for the next [`take`](Self::take).
    pub(crate) fn give_back(&mut self, mut unrun: Vec<Command>, mut drained: Vec<Command>) {
        if !unrun.is_empty() {
            unrun.append(&mut self.queue);
            drained = std::mem::replace(&mut self.queue, unrun);
        }
        drained.clear();
        if drained.capacity() > self.spare.capacity() {
            self.spare = drained;
        }
    }
}

/// A clonable, thread-safe handle to a running loop.
#[derive(Clone)]
pub struct LoopHandle {
    pub(crate) inner: Arc<HandleInner>,
}

impl fmt::Debug for LoopHandle {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("LoopHandle").finish_non_exhaustive()
    }
}

impl HandleInner {
    /// Applies, in order, the commands this loop's thread queued for the connection
    /// `shared` (those of a callback that just ran), leaving the others queued. The loop
    /// calls this right after a callback, so that what the callback sent is in the
    /// connection's buffer before the next frame is read: an echo is not lost to a later
    /// frame that fails the connection. No lock: these commands never left the thread.
    /// The loop calls it before a callback too, for what was sent to the connection
    /// earlier; true when no fan-out (which may be for the connection) waits in either
    /// queue, so that none of its commands was left behind: its callback may then send
    /// directly ([`crate::direct`]).
    pub(crate) fn apply_commands_for(
        &self,
        shared: &ConnShared,
        core: &mut ws6455_core::Connection,
        now: std::time::Instant,
    ) -> bool {
        // Sends other threads made to this connection before its peer's message came
        // (a broadcast, say) go out before the callback's answer to it.
        let mut clear = true;
        if self.shared_queued.load(Ordering::Acquire) > 0 {
            clear = self.apply_queued_for(shared, core, now);
        }
        let taken = LOCAL.with(|local| {
            let mut local = local.borrow_mut();
            (!local.is_empty()).then(|| local.take())
        });
        let Some(mut taken) = taken else {
            return clear;
        };
        let mut blocked = false;
        let mut unrun = Vec::new();
        for command in taken.drain(..) {
            if !blocked && command.is_for(shared) {
                command.dequeue();
                command.apply(core, now);
                continue;
            }
            blocked |= command.is_barrier();
            unrun.push(command);
        }
        LOCAL.with(|local| local.borrow_mut().give_back(unrun, taken));
        clear && !blocked
    }

    /// Takes this connection's commands out of the shared queue, in order, up to the
    /// first fan-out (which may be for it too), and applies them; true when no fan-out
    /// is queued.
    fn apply_queued_for(
        &self,
        shared: &ConnShared,
        core: &mut ws6455_core::Connection,
        now: std::time::Instant,
    ) -> bool {
        let (mine, clear) = {
            let mut queue = self.commands.lock().unwrap_or_else(|e| e.into_inner());
            let is_mine = |c: &Command| c.is_for(shared);
            let before_fan_out = queue
                .iter()
                .position(Command::is_barrier)
                .unwrap_or(queue.len());
            let clear = before_fan_out == queue.len();
            if !queue.range(..before_fan_out).any(is_mine) {
                return clear;
            }
            let mut mine = Vec::new();
            let mut others = VecDeque::with_capacity(queue.len());
            for (index, command) in queue.drain(..).enumerate() {
                if index < before_fan_out && is_mine(&command) {
                    mine.push(command);
                } else {
                    others.push_back(command);
                }
            }
            *queue = others;
            self.shared_queued.store(queue.len(), Ordering::Release);
            (mine, clear)
        };
        for command in mine {
            command.dequeue();
            command.apply(core, now);
        }
        clear
    }
}

impl LoopHandle {
    pub(crate) fn address(&self) -> usize {
        Arc::as_ptr(&self.inner) as usize
    }

    fn push(&self, command: Command) {
        if self.is_loop_thread() {
            if command.is_barrier() {
                // What the running callback sends next must follow this fan-out.
                crate::direct::suspend();
            }
            LOCAL.with(|local| local.borrow_mut().queue.push(command));
            return;
        }
        let mut queue = self
            .inner
            .commands
            .lock()
            .unwrap_or_else(|e| e.into_inner());
        queue.push_back(command);
        self.inner
            .shared_queued
            .store(queue.len(), Ordering::Release);
        drop(queue);
        // A failed wake means the loop is gone; the command is then moot.
        let _ = self.inner.waker.wake();
    }

    fn check_open(conn: &ConnShared) -> Result<(), SendError> {
        match conn.status() {
            Status::Connected => Ok(()),
            other => Err(SendError::NotOpen(other)),
        }
    }

    fn reserve(&self, conn: &Arc<ConnShared>, bytes: usize) -> Result<(), SendError> {
        Self::check_open(conn)?;
        let buffered = conn.buffered_amount();
        let cap = conn.max_buffered();
        if over_cap(buffered, cap) {
            if conn.backpressure() == Backpressure::Close {
                self.push(Command::Close {
                    conn: conn.clone(),
                    code: CloseCode::POLICY_VIOLATION,
                    reason: "outgoing buffer full".into(),
                    wait_for_peer: false,
                });
            }
            return Err(SendError::BufferFull { buffered, cap });
        }
        conn.enqueued(bytes);
        Ok(())
    }

    /// Queues a message. Refused when the connection is not open or its buffered bytes
    /// have reached the cap. A send below the cap is accepted whole, so the buffer may
    /// pass the cap by one message; the loop then reads nothing more from the connection
    /// until it drains, which is what keeps an echo from ever being refused.
    pub fn send(&self, conn: &Arc<ConnShared>, message: Outgoing) -> Result<(), SendError> {
        let message = match crate::direct::send(conn, message, |core, m| m.send_on(core)) {
            Ok(sent) => return sent,
            Err(message) => message,
        };
        self.reserve(conn, message.len())?;
        self.push(Command::Send {
            conn: conn.clone(),
            message,
        });
        Ok(())
    }

    /// Queues a frame encoded once for many connections (see
    /// [`ws6455_core::encoder::encode_frame`]; server frames only, as they are unmasked).
    pub fn send_frame(&self, conn: &Arc<ConnShared>, frame: Arc<[u8]>) -> Result<(), SendError> {
        let frame = match crate::direct::send(conn, frame, |core, f| core.send_encoded(&f)) {
            Ok(sent) => return sent,
            Err(frame) => frame,
        };
        self.reserve(conn, frame.len())?;
        self.push(Command::SendFrame {
            conn: conn.clone(),
            frame,
        });
        Ok(())
    }

    /// Queues a Ping (at most 125 bytes of payload).
    pub fn ping(&self, conn: &Arc<ConnShared>, payload: Vec<u8>) -> Result<(), SendError> {
        if payload.len() > ws6455_core::frame::MAX_CONTROL_PAYLOAD {
            return Err(SendError::Protocol(
                ws6455_core::SendError::ControlPayloadTooLong(payload.len()),
            ));
        }
        if let Ok(sent) = crate::direct::ping(conn, &payload) {
            return sent;
        }
        Self::check_open(conn)?;
        self.push(Command::Ping {
            conn: conn.clone(),
            payload,
        });
        Ok(())
    }

    /// Starts the closing handshake with an application code (1000 or 3000-4999) and a
    /// reason of at most 123 bytes; anything else is refused and nothing is sent.
    pub fn close(
        &self,
        conn: &Arc<ConnShared>,
        code: CloseCode,
        reason: &str,
    ) -> Result<(), SendError> {
        self.close_as(conn, code, reason, Closer::Application, false)
    }

    /// Starts the closing handshake with any code valid on the wire (for the engine:
    /// 1001 on shutdown, 1007 for undecodable data, 1011 after a handler failure...).
    pub fn close_with_standard_code(
        &self,
        conn: &Arc<ConnShared>,
        code: CloseCode,
        reason: &str,
    ) -> Result<(), SendError> {
        self.close_as(conn, code, reason, Closer::Engine, false)
    }

    /// Checks the close by the core's rules on the caller's thread (so that a refusal
    /// is reported at once), then queues it.
    fn close_as(
        &self,
        conn: &Arc<ConnShared>,
        code: CloseCode,
        reason: &str,
        by: Closer,
        wait_for_peer: bool,
    ) -> Result<(), SendError> {
        check_close(code, reason, by).map_err(SendError::Protocol)?;
        if let Ok(closed) = crate::direct::close(conn, code, reason, wait_for_peer) {
            return closed;
        }
        match conn.status() {
            Status::Connected | Status::Connecting => {}
            other => return Err(SendError::NotOpen(other)),
        }
        self.push(Command::Close {
            conn: conn.clone(),
            code,
            reason: reason.to_owned(),
            wait_for_peer,
        });
        Ok(())
    }

    /// Starts the closing handshake with any code valid on the wire and waits for the
    /// peer's Close as long as the peer is alive, past the close timeout (see
    /// [`ws6455_core::Connection::wait_for_peer_close`]): a server's terminate of one
    /// connection, as [`shutdown`](Self::shutdown) does for all.
    pub fn close_gracefully(
        &self,
        conn: &Arc<ConnShared>,
        code: CloseCode,
        reason: &str,
    ) -> Result<(), SendError> {
        self.close_as(conn, code, reason, Closer::Engine, true)
    }

    /// Destroys the connection at once, whatever its state: no Close frame, and a TCP
    /// reset instead of a FIN (`on_close` reports 1006). Nothing happens to one already
    /// gone.
    pub fn destroy(&self, conn: &Arc<ConnShared>) {
        self.push(Command::Destroy { conn: conn.clone() });
    }

    /// Hands the loop a connection that was opened and upgraded elsewhere (a client's:
    /// TCP connected, TLS and WebSocket handshakes done on the caller's thread by
    /// [`ws6455_core::connect::Connector`]): `core` is the open connection it made, with
    /// its limits, timeouts and extensions and the frames that followed the response;
    /// `config` gives the backpressure cap. `make_app` builds the application state from
    /// the connection's shared state; it must be the loop's `Handler::Conn` type
    /// (anything else is dropped, and the connection with it). The status is `Connected`
    /// on return, so sends may follow at once: the loop applies commands in order, the
    /// adoption first. The loop calls `on_open`, then decodes what the core holds; a loop
    /// shutting down then closes it at once (1001). Refused (the socket is dropped) when
    /// the loop has stopped.
    pub fn adopt<C: Send + 'static>(
        &self,
        stream: crate::ClientStream,
        core: Connection,
        config: &LoopConfig,
        make_app: impl FnOnce(&Arc<ConnShared>) -> C,
    ) -> Result<Arc<ConnShared>, LoopStopped> {
        if self.is_stopped() {
            return Err(LoopStopped);
        }
        let shared = Arc::new(ConnShared::new(usize::MAX, config));
        shared.set_status(Status::Connected);
        let app = Box::new(make_app(&shared));
        let adoption = Command::Adopt(Box::new(Adoption {
            stream,
            shared: shared.clone(),
            app,
            core: Box::new(core),
        }));
        if self.is_loop_thread() {
            // The loop is running this very call: it cannot stop meanwhile, and the
            // adoption keeps its place before what this thread sends to it next.
            LOCAL.with(|local| local.borrow_mut().queue.push(adoption));
            return Ok(shared);
        }
        // Checked again with the queue locked: the loop marks itself stopped under the
        // same lock, and only while no adoption is queued, so a queued adoption is always
        // run (its callbacks with it) and a refused one was never queued.
        let mut queue = self
            .inner
            .commands
            .lock()
            .unwrap_or_else(|e| e.into_inner());
        if self.is_stopped() {
            shared.set_status(Status::Closed);
            return Err(LoopStopped);
        }
        queue.push_back(adoption);
        self.inner
            .shared_queued
            .store(queue.len(), Ordering::Release);
        drop(queue);
        let _ = self.inner.waker.wake();
        Ok(shared)
    }

    /// Queues one encoded frame for many of this loop's connections (a topic's
    /// publish): one command and one wake-up however many targets. Each target still
    /// open gets it after everything it was sent before; one over its outgoing cap is
    /// skipped or closed per [`FanOut::when_full`](crate::FanOut::when_full), and the
    /// loop adds what it did to [`FanOut::tally`](crate::FanOut::tally).
    pub fn fan_out(&self, fan_out: crate::FanOut) {
        self.push(Command::FanOut(Box::new(fan_out)));
    }

    /// True when called on this loop's own thread (from one of its callbacks), where
    /// blocking on the loop's progress would deadlock it.
    pub fn is_loop_thread(&self) -> bool {
        CURRENT_LOOP.with(|c| c.get()) == self.address()
    }

    /// True once the loop's thread has finished: commands are no longer applied.
    pub fn is_stopped(&self) -> bool {
        self.inner.stopped.load(Ordering::Acquire)
    }

    /// Stops the loop: no new connections; every open connection gets a Close (1001) and
    /// is closed cleanly once its peer answers, however long that takes while the peer
    /// is alive (the close timeout does not apply; a peer silent for the keepalive's
    /// `ping_interval + pong_timeout` is given up). With `timeout`, connections still
    /// open at the deadline are destroyed; a zero timeout destroys them at once, with no
    /// Close frame and no FIN (TCP reset).
    pub fn shutdown(&self, timeout: Option<Duration>) {
        self.push(Command::Shutdown { timeout });
    }
}
