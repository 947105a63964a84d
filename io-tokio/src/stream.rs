//! [`WebSocketStream`]: a core [`Connection`] driven over any `AsyncRead + AsyncWrite`,
//! as a `Stream` of messages and a `Sink` of messages. Every poll moves bytes between
//! the transport and the core, runs the core's timer, and returns; all state lives in
//! the struct, so dropping a pending `next()` or `send()` loses nothing. Reads go into
//! one buffer per thread; a stream keeps only the bytes after the event it returned.

use std::cell::RefCell;
use std::fmt;
use std::future::Future;
use std::io;
use std::pin::Pin;
use std::task::{ready, Context, Poll, Waker};
use std::time::{Duration, Instant};

use futures_core::Stream;
use futures_sink::Sink;
use tokio::io::{AsyncRead, AsyncWrite, ReadBuf};
use tokio::time::Sleep;
use ws6455_core::close::CloseFrame;
use ws6455_core::{BufferPool, CloseCode, Connection, ConnectionState, Event, Expired};

use crate::sender::{Queue, Sender, QUEUE_CAPACITY};

/// Bytes read from the transport per read call.
const READ_BUFFER: usize = 256 << 10;

thread_local! {
    /// The read buffer of every stream polled on this thread (it is borrowed only within
    /// one poll): a stream keeps only what it read and has not decoded yet, so an idle
    /// connection holds no buffer.
    static READ_BUF: RefCell<Box<[u8]>> = RefCell::new(vec![0; READ_BUFFER].into_boxed_slice());
    /// Small buffers lent to the streams polled on this thread while they decode and
    /// write, taken back when they go idle: steady traffic allocates nothing per message
    /// though an idle stream holds no buffer of its own.
    static POOL: RefCell<BufferPool> = RefCell::default();
}

/// Runs `f` on this thread's pool; skipped when the pool is already in use (a transport
/// that itself polls a stream on this thread) or gone (a thread-local destructor).
fn with_pool(f: impl FnOnce(&mut BufferPool)) {
    let _ = POOL.try_with(|pool| {
        if let Ok(mut pool) = pool.try_borrow_mut() {
            f(&mut pool);
        }
    });
}
/// Most output chunks handed to one vectored write.
const WRITE_SLICES: usize = 16;

/// A message received or to send.
///
/// A received text or binary message may come in a reused buffer with more capacity than
/// its length (a pool buffer of up to 4 KiB for a small message, at most four times the
/// length or 64 KiB otherwise): call `shrink_to_fit` before keeping many of them.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Message {
    /// UTF-8 text.
    Text(String),
    /// Bytes. Sent by value: a large payload is written from this buffer, not copied.
    Binary(Vec<u8>),
    /// A Ping (received ones are already answered when auto-pong is on, the default).
    Ping(Vec<u8>),
    /// A Pong.
    Pong(Vec<u8>),
    /// A Close: received, the peer's code (1005 when it gave none) and reason, our answer
    /// already queued; to send, an application code (1000 or 3000-4999) and a reason of
    /// at most 123 bytes (`None`: 1000).
    Close(Option<CloseFrame>),
}

/// Why a stream operation failed.
#[derive(Debug)]
#[non_exhaustive]
pub enum Error {
    /// The peer broke the protocol; the core sent the Close with the matching code.
    Protocol(ws6455_core::ProtocolError),
    /// The core refused a message to send (wrong state, close code, payload size).
    Send(ws6455_core::SendError),
    /// Our keepalive Ping got no answer within the pong timeout: the connection is over.
    PongTimeout,
    /// The transport failed.
    Io(io::Error),
}

impl fmt::Display for Error {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Error::Protocol(e) => write!(f, "protocol error: {e}"),
            Error::Send(e) => write!(f, "refused: {e}"),
            Error::PongTimeout => f.write_str("no pong to the keepalive ping"),
            Error::Io(e) => write!(f, "transport error: {e}"),
        }
    }
}

impl std::error::Error for Error {}

impl From<io::Error> for Error {
    fn from(e: io::Error) -> Self {
        Error::Io(e)
    }
}

/// The time passed to the core: tokio's clock, the one the timer runs on (a paused test
/// clock then agrees with it).
pub(crate) fn now() -> Instant {
    tokio::time::Instant::now().into_std()
}

fn message_of(event: Event) -> Message {
    match event {
        Event::Message(ws6455_core::Message::Text(text)) => Message::Text(text),
        Event::Message(ws6455_core::Message::Binary(data)) => Message::Binary(data),
        Event::Ping(payload) => Message::Ping(payload),
        Event::Pong(payload) => Message::Pong(payload),
        Event::Close(frame) => Message::Close(Some(frame)),
    }
}

/// A WebSocket connection over the transport `S`.
///
/// - Reading: `Stream<Item = Result<Message, Error>>`. `next()` is cancel-safe: bytes
///   read but not yet decoded stay in the stream. Before it waits for input it writes
///   what the core has to send (pongs, the answering Close, messages given to `feed`),
///   and it runs the keepalive and close timers, so keep polling it; it ends (`None`)
///   once the closing handshake is over, the transport shut down and the peer's end of
///   stream read (or `Config::linger_timeout` passed: what the peer sent meanwhile is
///   discarded, so that it gets our Close rather than a reset). An echo that `feed`s
///   each answer and lets `next()` write them makes one write per burst; `send` flushes
///   each message.
/// - Writing: `Sink<Message>`. `poll_ready` waits while the buffered output is at the
///   cap; `poll_flush` writes it all; both are cancel-safe (a message is queued whole by
///   `start_send`, before any byte is written). `poll_close` sends a Close (1000) if none
///   was sent and flushes; the handshake ends when the stream sees the peer's answer.
/// - Dropping it closes the transport at once: the peer sees 1006.
///
/// Use `futures_util::StreamExt::split` for halves usable from two tasks, and
/// [`sender`](Self::sender) for handles usable from any number of tasks and threads.
pub struct WebSocketStream<S> {
    io: S,
    conn: Connection,
    /// `unread[unread_at..]`: read and not yet decoded (empty and unallocated mostly).
    unread: Vec<u8>,
    unread_at: usize,
    timer: Pin<Box<Sleep>>,
    /// The deadline the timer is set to.
    timer_at: Option<Instant>,
    max_buffered: usize,
    /// The transport was shut down at this time plus `Config::linger_timeout`: until
    /// then (or the peer's end of stream) what the peer still sends is discarded.
    linger_until: Option<Instant>,
    /// The transport was shut down and the peer's end came (or the linger time passed):
    /// the stream is over.
    done: bool,
    /// The protocol error was returned once; the stream then only closes.
    failed: bool,
    /// The sink's task, when it waits for the transport: after `split` the reading task
    /// may be the one the transport wakes, and it passes the wake-up on.
    sink_waker: Option<Waker>,
    /// Messages from [`Sender`]s, once one was made.
    queue: Option<Box<Queue>>,
}

impl<S> fmt::Debug for WebSocketStream<S> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("WebSocketStream")
            .field("connection", &self.conn)
            .field("unread", &(self.unread.len() - self.unread_at))
            .finish_non_exhaustive()
    }
}

impl<S: AsyncRead + AsyncWrite + Unpin> WebSocketStream<S> {
    /// Drives `conn` (made by the core's acceptor or connector, or directly) over `io`.
    /// Sends are refused while more than `max_buffered` bytes wait to be written.
    pub fn from_connection(io: S, mut conn: Connection, max_buffered: usize) -> Self {
        // Starts the timers of a connection made without a time (harmless otherwise).
        conn.handle_timeout(now());
        WebSocketStream {
            io,
            conn,
            unread: Vec::new(),
            unread_at: 0,
            timer: Box::pin(tokio::time::sleep_until(tokio::time::Instant::now())),
            timer_at: None,
            max_buffered,
            linger_until: None,
            done: false,
            failed: false,
            sink_waker: None,
            queue: None,
        }
    }

    /// A cheap, cloneable handle that sends on this connection from any task or thread
    /// (a chat room keeps one per member). Its messages are queued, then written by
    /// whichever task polls this stream's `next()` (or its read half, after `split`),
    /// in the order they were queued, behind what the sink already sent; keep reading.
    /// The queue holds [`QUEUE_CAPACITY`] messages: [`Sender::send`] waits while it is
    /// full and the output is at the cap. Every call returns a handle to the same queue.
    pub fn sender(&mut self) -> Sender {
        self.queue
            .get_or_insert_with(|| Box::new(Queue::new(QUEUE_CAPACITY)))
            .sender()
    }

    /// The core connection: state, close status, agreed extensions.
    pub fn connection(&self) -> &Connection {
        &self.conn
    }

    /// The transport.
    pub fn get_ref(&self) -> &S {
        &self.io
    }

    /// Writes what the core holds until the transport would block, then flushes it (a
    /// TLS stream holds records until flushed). A sink waiting on another task is woken
    /// when the output drains.
    pub(crate) fn poll_write_out(&mut self, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        let written = self.poll_write_all(cx);
        if written.is_ready() {
            if let Some(waker) = self.sink_waker.take() {
                if !waker.will_wake(cx.waker()) {
                    waker.wake();
                }
            }
        }
        ready!(written)?;
        Pin::new(&mut self.io).poll_flush(cx)
    }

    fn poll_write_all(&mut self, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        while self.conn.wants_write() {
            let n = if self.io.is_write_vectored() {
                let mut slices = [io::IoSlice::new(&[]); WRITE_SLICES];
                let filled = self.conn.pending_output_vectored(&mut slices);
                ready!(Pin::new(&mut self.io).poll_write_vectored(cx, &slices[..filled]))?
            } else {
                ready!(Pin::new(&mut self.io).poll_write(cx, self.conn.pending_output()))?
            };
            if n == 0 {
                return Poll::Ready(Err(io::ErrorKind::WriteZero.into()));
            }
            self.conn.consume_output(n);
        }
        Poll::Ready(Ok(()))
    }

    /// The output waiting for the transport has reached the cap.
    fn output_at_cap(&self) -> bool {
        self.conn.pending_output_len() >= self.max_buffered.max(1)
    }

    /// Runs the core's deadline if it passed (`Ready`, with what expired, if anything
    /// did: the caller then writes what it queued and asks again); registers the
    /// wake-up otherwise.
    fn poll_timer(&mut self, cx: &mut Context<'_>) -> Poll<Option<Expired>> {
        let Some(at) = self.conn.poll_timeout() else {
            return Poll::Pending;
        };
        if self.timer_at != Some(at) {
            self.timer
                .as_mut()
                .reset(tokio::time::Instant::from_std(at));
            self.timer_at = Some(at);
        }
        ready!(self.timer.as_mut().poll(cx));
        self.timer_at = None;
        Poll::Ready(self.conn.handle_timeout(now()))
    }

    /// After our shutdown: reads and discards until the peer's end of stream, an error
    /// or the linger deadline. A transport dropped with input unread would answer the
    /// peer's next bytes with a reset, and a peer still sending could lose our Close
    /// with it, before reading it.
    fn poll_linger(&mut self, cx: &mut Context<'_>) -> Poll<()> {
        let Some(deadline) = self.linger_until.filter(|at| *at > now()) else {
            return Poll::Ready(());
        };
        if self.timer_at != Some(deadline) {
            self.timer
                .as_mut()
                .reset(tokio::time::Instant::from_std(deadline));
            self.timer_at = Some(deadline);
        }
        let mut scratch = [0u8; 8192];
        // A peer that floods us gets a bounded share of this task, then a yield.
        for _ in 0..64 {
            if self.timer.as_mut().poll(cx).is_ready() {
                return Poll::Ready(());
            }
            let mut read = ReadBuf::new(&mut scratch);
            match Pin::new(&mut self.io).poll_read(cx, &mut read) {
                Poll::Ready(Ok(())) if !read.filled().is_empty() => {}
                Poll::Ready(_) => return Poll::Ready(()),
                Poll::Pending => return Poll::Pending,
            }
        }
        cx.waker().wake_by_ref();
        Poll::Pending
    }

    /// Hands a decoded event (or the end of the input, or an error) to the caller:
    /// `None` when there is nothing to return and the loop goes on.
    fn deliver(
        &mut self,
        cx: &mut Context<'_>,
        received: Result<Option<Event>, ws6455_core::ProtocolError>,
    ) -> Option<Result<Message, Error>> {
        // Output (pongs, the answering Close, messages fed to the sink) is written by
        // the next poll before it reads, so answers to a burst go out in one write.
        match received {
            Ok(Some(event)) => Some(Ok(message_of(event))),
            Ok(None) => None,
            // The core queued its Close behind what the application already sent: both
            // go out now, as far as the transport takes them, so that an application
            // that stops at the error still answers what came before it and sends the
            // Close (the next polls write the rest and end).
            // Returned once; later input is the failed connection's to discard.
            Err(_) if self.failed => None,
            Err(error) => {
                self.failed = true;
                if let Poll::Ready(Err(e)) = self.poll_write_out(cx) {
                    self.conn.abort(&e.to_string());
                }
                Some(Err(Error::Protocol(error)))
            }
        }
    }

    /// Reads into the thread's buffer and decodes up to the first event; what follows it
    /// is kept in `unread`.
    fn poll_read_event(
        &mut self,
        cx: &mut Context<'_>,
    ) -> Poll<io::Result<Result<Option<Event>, ws6455_core::ProtocolError>>> {
        READ_BUF.with(|shared| match shared.try_borrow_mut() {
            Ok(mut buf) => self.poll_read_event_into(cx, &mut buf),
            // Re-entered (a transport that itself polls a stream on this thread): a
            // buffer of its own rather than a panic.
            Err(_) => self.poll_read_event_into(cx, &mut vec![0; READ_BUFFER]),
        })
    }

    fn poll_read_event_into(
        &mut self,
        cx: &mut Context<'_>,
        buf: &mut [u8],
    ) -> Poll<io::Result<Result<Option<Event>, ws6455_core::ProtocolError>>> {
        let mut read = ReadBuf::new(buf);
        ready!(Pin::new(&mut self.io).poll_read(cx, &mut read))?;
        let n = read.filled().len();
        if n == 0 {
            self.conn.receive_eof();
            return Poll::Ready(Ok(Ok(None)));
        }
        let mut input = &buf[..n];
        with_pool(|pool| pool.lend(&mut self.conn));
        let received = self.conn.receive(now(), &mut input);
        if !input.is_empty() {
            let mut unread = Vec::new();
            with_pool(|pool| unread = pool.take().unwrap_or_default());
            unread.extend_from_slice(input);
            (self.unread, self.unread_at) = (unread, 0);
        }
        Poll::Ready(Ok(received))
    }

    fn poll_next_message(&mut self, cx: &mut Context<'_>) -> Poll<Option<Result<Message, Error>>> {
        // Bounded: every turn decodes an event, takes input, runs a deadline or ends.
        loop {
            if self.done {
                if let Some(queue) = self.queue.as_mut() {
                    queue.close();
                }
                return Poll::Ready(None);
            }
            let has_input = self.unread_at < self.unread.len() || self.conn.has_early_input();
            if has_input && !self.output_at_cap() {
                let mut input = &self.unread[self.unread_at..];
                with_pool(|pool| pool.lend(&mut self.conn));
                let received = self.conn.receive(now(), &mut input);
                self.unread_at = self.unread.len() - input.len();
                if input.is_empty() {
                    // An idle connection keeps no buffer.
                    let spent = std::mem::take(&mut self.unread);
                    self.unread_at = 0;
                    with_pool(|pool| pool.put(spent));
                }
                if let Some(item) = self.deliver(cx, received) {
                    return Poll::Ready(Some(item));
                }
            }
            self.take_queued(cx);
            if let Poll::Ready(Err(e)) = self.poll_write_out(cx) {
                self.conn.abort(&e.to_string());
                self.done = true;
                return Poll::Ready(Some(Err(Error::Io(e))));
            }
            if self.conn.should_close_transport() {
                if self.linger_until.is_none() {
                    // Best effort: a FIN after what was written (a TLS close_notify).
                    let shut = ready!(Pin::new(&mut self.io).poll_shutdown(cx));
                    let linger = match shut {
                        Ok(()) => self.conn.config().linger_timeout,
                        Err(_) => Duration::ZERO,
                    };
                    self.linger_until = Some(now() + linger);
                }
                ready!(self.poll_linger(cx));
                self.done = true;
                continue;
            }
            match self.poll_timer(cx) {
                Poll::Ready(Some(Expired::Pong)) => {
                    return Poll::Ready(Some(Err(Error::PongTimeout)))
                }
                // A Ping or a Close to write, a deadline to set, or the end.
                Poll::Ready(_) => continue,
                Poll::Pending => {}
            }
            if self.output_at_cap() {
                // The peer does not read what we owe it (pongs to a flood of pings, say):
                // decode and read nothing more until it does. The write above registered
                // the wake-up.
                return Poll::Pending;
            }
            match self.poll_read_event(cx) {
                Poll::Ready(Ok(received)) => {
                    if let Some(item) = self.deliver(cx, received) {
                        return Poll::Ready(Some(item));
                    }
                }
                Poll::Ready(Err(e)) => {
                    self.conn.abort(&e.to_string());
                    self.done = true;
                    return Poll::Ready(Some(Err(Error::Io(e))));
                }
                Poll::Pending => {
                    if self.conn.pending_output_len() == 0 {
                        // Going back to waiting with everything written: an idle
                        // connection keeps no small buffers (the mio loop's rule; the core
                        // alone would keep them for its quiet second), and a large one
                        // until the core's quiet deadline.
                        with_pool(|pool| pool.take_back(&mut self.conn));
                    }
                    return Poll::Pending;
                }
            }
        }
    }

    /// Writes and flushes for the sink; on `Pending` the sink's task is remembered, so
    /// that a reading task woken by the transport wakes it too.
    fn poll_sink_write(&mut self, cx: &mut Context<'_>) -> Poll<Result<(), Error>> {
        match self.poll_write_out(cx) {
            Poll::Ready(result) => Poll::Ready(result.map_err(Error::Io)),
            Poll::Pending => {
                self.sink_waker = Some(cx.waker().clone());
                Poll::Pending
            }
        }
    }

    fn send_now(&mut self, message: Message) -> Result<(), Error> {
        send_on(&mut self.conn, message).map_err(Error::Send)
    }

    /// Hands what [`Sender`]s queued to the core, as far as the output cap allows. Once
    /// the connection is closing, the queue is closed: later sends fail, and what is
    /// still queued is dropped (the core would refuse it).
    fn take_queued(&mut self, cx: &mut Context<'_>) {
        let Some(queue) = self.queue.as_mut() else {
            return;
        };
        while self.conn.state() == ConnectionState::Open {
            if self.conn.pending_output_len() >= self.max_buffered.max(1) {
                return;
            }
            match queue.poll_recv(cx) {
                Poll::Ready(Some(message)) => {
                    // A Sender checked the message; the state is Open: not refused.
                    let _ = send_on(&mut self.conn, message);
                }
                Poll::Ready(None) | Poll::Pending => return,
            }
        }
        queue.close();
    }
}

/// Queues `message` on `conn`; a close is checked by the core's rules.
fn send_on(conn: &mut Connection, message: Message) -> Result<(), ws6455_core::SendError> {
    match message {
        Message::Text(text) => conn.send_text_owned(text),
        Message::Binary(data) => conn.send_binary_owned(data),
        Message::Ping(payload) => conn.send_ping(&payload),
        Message::Pong(payload) => conn.send_pong(&payload),
        Message::Close(frame) => {
            let (code, reason) = match &frame {
                Some(frame) => (frame.code, frame.reason.as_str()),
                None => (CloseCode::NORMAL, ""),
            };
            conn.close(now(), code, reason)
        }
    }
}

impl<S: AsyncRead + AsyncWrite + Unpin> Stream for WebSocketStream<S> {
    type Item = Result<Message, Error>;

    fn poll_next(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Option<Self::Item>> {
        self.get_mut().poll_next_message(cx)
    }
}

impl<S: AsyncRead + AsyncWrite + Unpin> Sink<Message> for WebSocketStream<S> {
    type Error = Error;

    fn poll_ready(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Result<(), Error>> {
        let this = self.get_mut();
        if this.output_at_cap() {
            let _ = this.poll_sink_write(cx)?;
            if this.output_at_cap() {
                return Poll::Pending;
            }
        }
        Poll::Ready(Ok(()))
    }

    fn start_send(self: Pin<&mut Self>, message: Message) -> Result<(), Error> {
        self.get_mut().send_now(message)
    }

    fn poll_flush(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Result<(), Error>> {
        self.get_mut().poll_sink_write(cx)
    }

    fn poll_close(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Result<(), Error>> {
        let this = self.get_mut();
        if this.conn.state() == ConnectionState::Open {
            this.send_now(Message::Close(None))?;
        }
        this.poll_sink_write(cx)
    }
}
