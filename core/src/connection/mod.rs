//! The WebSocket connection after the opening handshake: messages, control frames, the
//! closing handshake and the connection's timers (RFC 6455 sections 5, 6 and 7) as a
//! sans-IO state machine.
//!
//! One job a file: the public types and the state here, received messages in
//! `message.rs`, the receive path in
//! [`receive`](self) (`receive.rs`), commands and framing of outgoing messages in
//! `send.rs`, deadlines in `timers.rs`.

mod message;
mod receive;
mod send;
mod timers;

use std::io::IoSlice;
use std::sync::Arc;
use std::time::Instant;

use crate::close::CloseCode;
use crate::config::Config;
use crate::decoder::FrameDecoder;
use crate::deflate::{DeflateCodec, DeflateConfig, DeflateParams};
use crate::error::ProtocolError;
use crate::output::OutputQueue;
use crate::random::RandomSource;
use crate::Role;

pub use message::{Message, MessageKind};
use receive::Assembly;
pub use send::check_control;
pub use timers::{Expired, RELEASE_AFTER};

/// Buffers at least this large outlive a driver's idle release
/// ([`Connection::release_idle_memory_into`]) until the quiet deadline: the allocator
/// maps buffers of this size apart from its heap (glibc's threshold starts at 128 KiB).
pub const LARGE_BUFFER: usize = 128 << 10;

/// The state of a connection, as an application sees it (RFC 6455 sections 4 and 7).
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum ConnectionState {
    /// Messages flow both ways.
    Open,
    /// We sent a Close frame and wait for the peer's (section 7.1.2). Incoming data
    /// frames are discarded; nothing but control frames is sent.
    Closing,
    /// The closing handshake finished, the connection failed, or the transport ended.
    /// See [`Connection::close_status`].
    Closed,
}

/// Something the peer did, returned by [`Connection::receive`].
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Event {
    /// A whole data message; its text is valid UTF-8. Hand the buffer back with
    /// [`Connection::recycle`]`(message.into_bytes())` to avoid an allocation per message.
    Message(Message),
    /// A Ping (already answered when [`Config::auto_pong`](crate::Config::auto_pong) is on).
    Ping(Vec<u8>),
    /// A Pong, solicited or not.
    Pong(Vec<u8>),
    /// The peer's Close frame: its code (1005 when it had none) and reason. Our answering
    /// Close, if one was due, is already queued.
    Close(crate::close::CloseFrame),
}

/// How a connection ended, for the application's "terminate" callback.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct CloseStatus {
    /// The peer's code, 1005 when its Close frame had none, 1006 when there was no closing
    /// handshake (transport ended, protocol error, timeout).
    pub code: CloseCode,
    /// The peer's reason; for 1006, a description of what went wrong (never sent).
    pub reason: String,
    /// True when both Close frames were exchanged.
    pub clean: bool,
}

/// RFC 6455's states past the opening handshake, each with what it needs.
#[derive(Clone, Debug)]
enum State {
    Open,
    /// We sent a Close frame (section 7.1.2) at `since` and wait for the peer's.
    LocalClosing {
        since: Instant,
    },
    /// Finished (boxed: an open connection does not carry a closed one's record).
    Closed(Box<Closed>),
}

/// What a closed connection keeps.
#[derive(Clone, Debug)]
struct Closed {
    /// Final.
    status: CloseStatus,
    /// The transport should close by then (the close timeout from the start of the
    /// closing handshake), when one is known.
    deadline: Option<Instant>,
    /// The first fatal error; every later input is refused with it (sticky failure).
    failure: Option<ProtocolError>,
}

/// The frame currently being received.
#[derive(Clone, Copy, Debug)]
struct CurrentFrame {
    header: crate::frame::FrameHeader,
    /// False when the payload is skipped (data frames after we sent Close).
    keep: bool,
}

/// A sans-IO WebSocket connection in the open phase (after the opening handshake).
///
/// Made by [`crate::accept::Accepted::accept`] (server) or
/// [`crate::connect::Connector::receive_data`] (client) once the opening handshake is
/// done, or directly with [`server`](Self::server) / [`client`](Self::client). The API
/// is grouped by direction, in the order a driver calls it:
///
/// - **input**: [`receive`](Self::receive) with the bytes read from the transport, until
///   it returns `Ok(None)` (then every byte was taken); [`receive_eof`](Self::receive_eof)
///   when the transport's read side ended;
/// - **commands**: [`send_text`](Self::send_text), [`send_binary`](Self::send_binary),
///   [`send_ping`](Self::send_ping), [`send_pong`](Self::send_pong),
///   [`close`](Self::close);
/// - **time**: [`poll_timeout`](Self::poll_timeout) says when to wake up,
///   [`handle_timeout`](Self::handle_timeout) then (keepalive pings, pong deadline, idle
///   timeout, close timeout);
/// - **output**: [`pending_output`](Self::pending_output) (or
///   [`pending_output_vectored`](Self::pending_output_vectored)) then
///   [`consume_output`](Self::consume_output) with what the transport took;
///   [`should_close_transport`](Self::should_close_transport) says when to close it.
///
/// ```
/// use std::time::Instant;
/// use ws6455_core::{Config, Connection, Event, Message};
///
/// let mut server = Connection::server(Config::default());
/// // A masked text frame "Hello" from RFC 6455 section 5.7.
/// let input = [0x81, 0x85, 0x37, 0xfa, 0x21, 0x3d, 0x7f, 0x9f, 0x4d, 0x51, 0x58];
/// let mut rest = &input[..];
/// while let Some(event) = server.receive(Instant::now(), &mut rest).unwrap() {
///     let Event::Message(Message::Text(text)) = event else { panic!() };
///     assert_eq!(text, "Hello");
///     server.send_text("Hello").unwrap(); // answered before the next frame is decoded
/// }
/// assert!(rest.is_empty());
/// assert_eq!(server.pending_output(), &[0x81, 0x05, 0x48, 0x65, 0x6c, 0x6c, 0x6f]);
/// let n = server.pending_output().len(); // what the socket accepted
/// server.consume_output(n);
/// ```
pub struct Connection {
    role: Role,
    config: Arc<Config>,
    state: State,
    decoder: FrameDecoder,
    /// The frame and message being received piece by piece; made when the first one
    /// comes, freed with the idle buffers (whole small messages never need it).
    assembly: Option<Box<Assembly>>,
    /// A buffer handed back by the application, reused for the next message.
    spare: Vec<u8>,
    /// When the peer last sent anything; `None` until the first call that passes time.
    last_input: Option<Instant>,
    /// When our keepalive Ping went out, if no input has arrived since, as milliseconds
    /// after `last_input` rounded up (4 bytes where an `Instant` takes 16; the pong
    /// deadline is at most a millisecond late, never early, for a Ping that went out
    /// within 49 days of the last input); [`NO_PING`] when none is out.
    ping_sent_after: u32,
    /// The transport should close now, output or not: a deadline passed, or the
    /// transport itself ended or failed.
    close_now: bool,
    /// Ends the closing handshake at `Config::close_timeout` (false) or only when the peer
    /// falls silent (true: [`wait_for_peer_close`](Self::wait_for_peer_close)).
    close_while_peer_alive: bool,
    output: OutputQueue,
    /// What only some connections have (`None` for a server connection without
    /// permessage-deflate, once the bytes that came with its handshake are decoded).
    extras: Option<Box<Extras>>,
}

/// The state only some connections have, boxed together: every connection carries one
/// pointer for it, where the three fields took 40 bytes (memory per idle connection).
#[derive(Default)]
struct Extras {
    /// permessage-deflate, once negotiated.
    deflate: Option<DeflateCodec>,
    /// A client's source of masking keys; servers have none.
    random: Option<Box<dyn RandomSource>>,
    /// Bytes that arrived with the opening handshake, decoded before the next input.
    early_input: Vec<u8>,
}

impl Extras {
    fn is_empty(&self) -> bool {
        self.deflate.is_none() && self.random.is_none() && self.early_input.is_empty()
    }
}

/// `ping_sent_after` when no keepalive Ping is out.
const NO_PING: u32 = u32::MAX;

// Every connection of a server carries one, idle or not: its size is a budget (memory
// per idle connection, `benches/src/bin/idle_memory.rs`), 192 bytes with the allocator's
// header. Grow it only where a benchmark says it pays.
#[cfg(target_pointer_width = "64")]
const _: () = assert!(std::mem::size_of::<Connection>() <= 184);

impl std::fmt::Debug for Connection {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Connection")
            .field("role", &self.role)
            .field("state", &self.state)
            .field("failure", &self.failure())
            .field("pending_output", &self.output.len())
            .finish_non_exhaustive()
    }
}

/// Keeps the larger of two buffers in `spare`, emptied.
#[inline]
fn keep_larger(spare: &mut Vec<u8>, mut buffer: Vec<u8>) {
    if buffer.capacity() > spare.capacity() {
        buffer.clear();
        *spare = buffer;
    }
}

impl Connection {
    /// The server side of an open connection. Servers never mask, so need no randomness.
    /// Its timers start with the first call that passes the time.
    pub fn server(config: impl Into<Arc<Config>>) -> Self {
        Self::new(Role::Server, config.into(), None)
    }

    /// The client side of an open connection, drawing masking keys from `random`.
    /// Its timers start with the first call that passes the time.
    pub fn client(config: impl Into<Arc<Config>>, random: Box<dyn RandomSource>) -> Self {
        Self::new(Role::Client, config.into(), Some(random))
    }

    fn new(role: Role, config: Arc<Config>, random: Option<Box<dyn RandomSource>>) -> Self {
        Connection {
            role,
            decoder: FrameDecoder::new(role, config.max_frame_size),
            config,
            state: State::Open,
            assembly: None,
            spare: Vec::new(),
            last_input: None,
            ping_sent_after: NO_PING,
            close_now: false,
            close_while_peer_alive: false,
            output: OutputQueue::default(),
            extras: random.map(|random| {
                Box::new(Extras {
                    random: Some(random),
                    ..Extras::default()
                })
            }),
        }
    }

    /// Turns on permessage-deflate with the parameters agreed in the opening handshake
    /// ([`DeflateConfig::accept_offers`] on a server, [`DeflateConfig::check_response`]
    /// on a client); `config` gives the local threshold and level. Call it before any
    /// input or output. The acceptor and the connector do it for you.
    pub fn enable_deflate(&mut self, params: &DeflateParams, config: &DeflateConfig) {
        self.decoder.allow_rsv(0b100);
        self.extras.get_or_insert_default().deflate = Some(DeflateCodec::new(
            params,
            self.role == Role::Server,
            config.threshold,
            config.level,
        ));
    }

    /// The permessage-deflate codec, once negotiated.
    fn deflate(&self) -> Option<&DeflateCodec> {
        self.extras.as_ref().and_then(|e| e.deflate.as_ref())
    }

    /// What the opening handshake leaves behind: its answer (a server's 101) first in the
    /// output, the bytes that followed the request or response kept for the next
    /// [`receive`](Self::receive), the timers started at `now`.
    pub(crate) fn after_handshake(&mut self, answer: Vec<u8>, early_input: Vec<u8>, now: Instant) {
        self.output.push_owned(answer);
        if !early_input.is_empty() {
            self.extras.get_or_insert_default().early_input = early_input;
        }
        self.last_input = Some(now);
    }

    // ----- getters -----

    /// The permessage-deflate parameters agreed in the handshake, when it is on.
    pub fn deflate_params(&self) -> Option<DeflateParams> {
        self.deflate().map(|codec| codec.params)
    }

    /// Which side of the connection this is.
    pub fn role(&self) -> Role {
        self.role
    }

    /// The configuration the connection was made with.
    pub fn config(&self) -> &Config {
        &self.config
    }

    /// The current state.
    pub fn state(&self) -> ConnectionState {
        match self.state {
            State::Open => ConnectionState::Open,
            State::LocalClosing { .. } => ConnectionState::Closing,
            State::Closed(_) => ConnectionState::Closed,
        }
    }

    /// How the connection ended, once it is [`ConnectionState::Closed`].
    pub fn close_status(&self) -> Option<&CloseStatus> {
        match &self.state {
            State::Closed(closed) => Some(&closed.status),
            _ => None,
        }
    }

    /// The fatal protocol error that failed the connection, if any.
    pub fn failure(&self) -> Option<&ProtocolError> {
        match &self.state {
            State::Closed(closed) => closed.failure.as_ref(),
            _ => None,
        }
    }

    /// True while bytes received with the opening handshake wait to be decoded: call
    /// [`receive`](Self::receive), with no new input if there is none.
    pub fn has_early_input(&self) -> bool {
        self.extras
            .as_ref()
            .is_some_and(|e| !e.early_input.is_empty())
    }

    // ----- memory -----

    /// Hands a message buffer back for reuse by the next incoming message, so that steady
    /// traffic needs no allocation per message. The larger of this and the buffer already
    /// kept is kept; hand back only what the connection may hold while idle, or call
    /// [`release_memory`](Self::release_memory).
    #[inline]
    pub fn recycle(&mut self, buffer: Vec<u8>) {
        keep_larger(&mut self.spare, buffer);
    }

    /// Frees the recycled buffer, a drained output buffer, the receive path's state
    /// between messages, and compression state that no context needs
    /// (no_context_takeover). The connection does it by itself once it
    /// has been quiet for [`RELEASE_AFTER`] (a deadline of
    /// [`poll_timeout`](Self::poll_timeout)); call it to free them sooner.
    pub fn release_memory(&mut self) {
        self.release_memory_into(drop);
    }

    /// [`release_memory`](Self::release_memory), with the byte buffers it would free
    /// handed to `keep` instead, emptied: a driver's pool, which lends them to the next
    /// connection that needs one ([`lend_buffers`](Self::lend_buffers)).
    pub fn release_memory_into(&mut self, keep: impl FnMut(Vec<u8>)) {
        self.release_buffers(usize::MAX, keep);
    }

    /// What a driver calls each time the connection goes idle (waiting for input, the
    /// output drained): [`release_memory_into`](Self::release_memory_into), except that
    /// while the connection is open a buffer of [`LARGE_BUFFER`] bytes or more is kept
    /// for the quiet deadline, which frees it unless a message comes first. Getting a
    /// large buffer again costs a page fault for every 4 KiB of it when the allocator
    /// maps it fresh, more than copying the message. Holding it a while longer pins
    /// little heap memory (with glibc's default threshold a buffer that large is mapped
    /// apart from the heap and unmapped whole), while small buffers are cheap to get
    /// again and, kept across many idle connections, leave holes in the heap: they are
    /// best freed at once. Once closing, nothing is kept (no message is reused then).
    pub fn release_idle_memory_into(&mut self, keep: impl FnMut(Vec<u8>)) {
        let limit = match self.state {
            State::Open => LARGE_BUFFER,
            _ => usize::MAX,
        };
        self.release_buffers(limit, keep);
    }

    /// Releases the spare and the drained output buffer below `limit` bytes (into
    /// `keep`) and compression state no context needs.
    fn release_buffers(&mut self, limit: usize, mut keep: impl FnMut(Vec<u8>)) {
        if self.spare.capacity() < limit {
            let spare = std::mem::take(&mut self.spare);
            if spare.capacity() > 0 {
                keep(spare);
            }
        }
        if !self.receiving() {
            if let Some(codec) = self.extras.as_mut().and_then(|e| e.deflate.as_mut()) {
                codec.release();
            }
            if let Some(mut assembly) = self.assembly.take() {
                // A message cut short by our Close may have left its buffer.
                let data = std::mem::take(&mut assembly.message_data);
                if data.capacity() > 0 && data.capacity() < limit {
                    keep(data);
                }
            }
        }
        if let Some(buffer) = self.output.release() {
            if buffer.capacity() < limit {
                keep(buffer);
            } else {
                self.output.provide(buffer);
            }
        }
    }

    /// Takes empty buffers from a driver's pool for what the connection lacks: the next
    /// incoming message's buffer and the output's encoding buffer (`take` is called once
    /// for each missing one). With [`release_memory_into`](Self::release_memory_into)
    /// when it goes idle, a driver's connections then share a few buffers instead of each
    /// allocating its own per burst.
    pub fn lend_buffers(&mut self, mut take: impl FnMut() -> Option<Vec<u8>>) {
        if self.spare.capacity() == 0 {
            if let Some(buffer) = take() {
                self.spare = buffer;
                self.spare.clear();
            }
        }
        if self.output.wants_buffer() {
            if let Some(buffer) = take() {
                self.output.provide(buffer);
            }
        }
    }

    /// True while [`release_memory`](Self::release_memory) would free something (with
    /// the output drained): the release deadline exists only then, so that it cannot fire
    /// over and over.
    fn holds_releasable_memory(&self) -> bool {
        self.spare.capacity() > 0
            || self.output.holds_memory()
            || !self.receiving()
                && (self.assembly.is_some() || self.deflate().is_some_and(|c| c.holds_releasable()))
    }

    // ----- output -----

    /// The next bytes waiting to be written to the transport: empty only when nothing
    /// waits. Output is held in chunks (a payload sent by value is queued as it is), so
    /// after [`consume_output`](Self::consume_output) call this again until it is empty,
    /// or write several chunks at once with
    /// [`pending_output_vectored`](Self::pending_output_vectored).
    pub fn pending_output(&self) -> &[u8] {
        self.output.front()
    }

    /// Fills `slices` with the waiting bytes in order, a chunk a slice, for a vectored
    /// write (`writev`); returns how many slices it filled.
    pub fn pending_output_vectored<'a>(&'a self, slices: &mut [IoSlice<'a>]) -> usize {
        self.output.slices(slices)
    }

    /// How many bytes wait to be written, in all chunks.
    pub fn pending_output_len(&self) -> usize {
        self.output.len()
    }

    /// Records that the transport took the first `n` waiting bytes (of
    /// [`pending_output`](Self::pending_output), or of the slices of
    /// [`pending_output_vectored`](Self::pending_output_vectored) in order).
    pub fn consume_output(&mut self, n: usize) {
        // A payload sent by value and now written is kept for the next incoming message:
        // an echo of large messages then reuses one buffer instead of faulting in fresh
        // pages for every message.
        let spare = &mut self.spare;
        self.output.consume(n, |buffer| keep_larger(spare, buffer));
    }

    /// True while bytes are waiting to be written.
    pub fn wants_write(&self) -> bool {
        !self.output.is_empty()
    }

    /// True while the peer's bytes can still matter (the connection is not closed).
    pub fn wants_read(&self) -> bool {
        !matches!(self.state, State::Closed(_))
    }

    /// True when the driver should close the transport now: a deadline passed (close
    /// timeout, pong timeout), or the connection is closed, all output is written and this
    /// side closes first. The server closes first (RFC 6455 section 7.1.1); a client waits
    /// for the server's FIN (or the close timeout) unless the connection failed.
    pub fn should_close_transport(&self) -> bool {
        match &self.state {
            _ if self.close_now => true,
            State::Closed(closed) => {
                !self.wants_write() && (self.role == Role::Server || !closed.status.clean)
            }
            _ => false,
        }
    }

    // ----- endings -----

    /// The transport's read side ended (TCP FIN or reset). Without a finished closing
    /// handshake this is an abnormal closure (1006).
    pub fn receive_eof(&mut self) {
        self.abort("the connection ended without a closing handshake");
    }

    /// Ends the connection abnormally (1006) unless it is already closed: for the
    /// driver's transport errors. `why` is reported locally, never sent. The transport
    /// should close at once ([`should_close_transport`](Self::should_close_transport)).
    pub fn abort(&mut self, why: &str) {
        if !matches!(self.state, State::Closed(_)) {
            self.state = State::Closed(Box::new(Closed {
                status: CloseStatus {
                    code: CloseCode::ABNORMAL,
                    reason: why.to_owned(),
                    clean: false,
                },
                deadline: None,
                failure: None,
            }));
        }
        self.close_now = true;
    }

    /// Makes the closing handshake wait for the peer's Close (and a client for the
    /// server's end of TCP) for as long as the peer is alive, instead of
    /// [`Config::close_timeout`]: the transport is given up only once nothing has come
    /// from the peer for `ping_interval + pong_timeout` (the keepalive's bound; no Ping
    /// is sent after a Close), and never when keepalive is off. For a graceful shutdown,
    /// which a deadline of the driver's own may end by force. Call it before or after
    /// starting the closing handshake.
    pub fn wait_for_peer_close(&mut self) {
        self.close_while_peer_alive = true;
    }

    /// The deadline for the transport to close once the closing handshake started at
    /// `since`, if there is one.
    fn close_deadline(&self, since: Instant) -> Option<Instant> {
        if !self.close_while_peer_alive {
            return Some(since + self.config.close_timeout);
        }
        let silence = self.config.ping_interval? + self.config.pong_timeout;
        let heard = self.last_input.map_or(since, |last| last.max(since));
        Some(heard + silence)
    }

    /// Enters `Closed` with `status` (and the error that failed the connection, if one
    /// did); the close timer keeps counting from the start of the closing handshake, or
    /// starts at `now`.
    fn finish(&mut self, status: CloseStatus, failure: Option<ProtocolError>, now: Instant) {
        let since = match self.state {
            State::LocalClosing { since } => since,
            _ => now,
        };
        self.state = State::Closed(Box::new(Closed {
            status,
            deadline: self.close_deadline(since),
            failure,
        }));
    }
}
