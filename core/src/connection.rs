//! The WebSocket connection after the opening handshake: messages, control frames and the
//! closing handshake (RFC 6455 sections 5, 6 and 7) as a sans-IO state machine.

use crate::close::{CloseCode, CloseFrame, MAX_CLOSE_REASON};
use crate::decoder::{FrameDecoder, FramePart};
use crate::deflate::{DeflateCodec, DeflateConfig, DeflateParams, InflateError};
use crate::encoder::{encode_frame, encode_frame_header, encode_frame_with_rsv};
use crate::error::{ProtocolError, SendError};
use crate::frame::{FrameHeader, OpCode, MAX_CONTROL_PAYLOAD};
use crate::mask::{apply_mask, extend_unmasked};
use crate::output::OutputQueue;
use crate::random::RandomSource;
use crate::utf8::Utf8Validator;
use crate::Role;
use std::io::IoSlice;

/// Limits and behaviour of a [`Connection`]. Every limit has a safe default.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Config {
    /// The largest frame payload accepted (default 16 MiB). Larger: closed with 1009,
    /// checked on the header before any payload is buffered.
    pub max_frame_size: u64,
    /// The largest message accepted, all fragments together (default 64 MiB). Larger:
    /// closed with 1009 as soon as a header announces it.
    pub max_message_size: u64,
    /// Answer every Ping with a Pong automatically (default true). Pings are reported as
    /// events either way.
    pub auto_pong: bool,
    /// Split outgoing messages into frames of at most this many payload bytes
    /// (default `None`: one frame per message).
    pub fragment_size: Option<usize>,
}

impl Default for Config {
    fn default() -> Self {
        Config {
            max_frame_size: 16 << 20,
            max_message_size: 64 << 20,
            auto_pong: true,
            fragment_size: None,
        }
    }
}

/// The state of a connection, as an application sees it (RFC 6455 section 4 and 7).
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

/// The kind of a data message.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum MessageKind {
    /// UTF-8 text (validated before the message is reported).
    Text,
    /// Arbitrary bytes.
    Binary,
}

/// Something the peer did, reported by [`Connection::poll_event`].
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Event {
    /// A whole data message. For [`MessageKind::Text`] the bytes are valid UTF-8.
    /// Hand the buffer back with [`Connection::recycle`] to avoid an allocation per message.
    Message {
        /// Text or binary.
        kind: MessageKind,
        /// The payload, all fragments joined and unmasked.
        data: Vec<u8>,
    },
    /// A Ping (already answered when [`Config::auto_pong`] is on).
    Ping(Vec<u8>),
    /// A Pong, solicited or not.
    Pong(Vec<u8>),
    /// The peer's Close frame: its code (1005 when it had none) and reason. Our answering
    /// Close, if one was due, is already queued.
    Close(CloseFrame),
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

#[derive(Clone, Debug)]
enum State {
    Open,
    /// We sent a Close frame (section 7.1.2) and wait for the peer's.
    LocalClosing,
    /// Finished; the status is final.
    Closed(CloseStatus),
}

/// The frame currently being received.
#[derive(Clone, Copy, Debug)]
struct CurrentFrame {
    header: FrameHeader,
    /// False when the payload is skipped (data frames after we sent Close).
    keep: bool,
}

/// A sans-IO WebSocket connection in the open phase (after the opening handshake).
///
/// The API is grouped by direction, in the order a caller drives it:
///
/// - **input**: [`receive_data`](Self::receive_data) with bytes read from the transport
///   (it stops at each event and says how much it consumed),
///   [`receive_eof`](Self::receive_eof) when the transport's read side ended;
/// - **events**: [`poll_event`](Self::poll_event) until `None` after every input (also
///   after an error: events decoded before it are not lost);
/// - **commands**: [`send_text`](Self::send_text), [`send_binary`](Self::send_binary),
///   [`send_ping`](Self::send_ping), [`send_pong`](Self::send_pong),
///   [`close`](Self::close);
/// - **output**: [`pending_output`](Self::pending_output) then
///   [`consume_output`](Self::consume_output) with what the transport took;
///   [`close_expected`](Self::close_expected) (start the close timer) and
///   [`should_close_transport`](Self::should_close_transport) (close the TCP connection now).
///
/// ```
/// use ws6455_core::{Config, Connection, Event, MessageKind};
///
/// let mut server = Connection::server(Config::default());
/// // A masked text frame "Hello" from RFC 6455 section 5.7.
/// let input = [0x81, 0x85, 0x37, 0xfa, 0x21, 0x3d, 0x7f, 0x9f, 0x4d, 0x51, 0x58];
/// let mut rest = &input[..];
/// while !rest.is_empty() {
///     let used = server.receive_data(rest).unwrap();
///     rest = &rest[used..];
///     while let Some(event) = server.poll_event() {
///         let Event::Message { kind: MessageKind::Text, data } = event else { panic!() };
///         assert_eq!(data, b"Hello");
///     }
/// }
/// server.send_text("Hello").unwrap();
/// assert_eq!(server.pending_output(), &[0x81, 0x05, 0x48, 0x65, 0x6c, 0x6c, 0x6f]);
/// let n = server.pending_output().len(); // what the socket accepted
/// server.consume_output(n);
/// ```
pub struct Connection {
    role: Role,
    config: Config,
    state: State,
    /// The first fatal error; every later input is refused with it (sticky failure).
    failure: Option<ProtocolError>,
    decoder: FrameDecoder,
    frame: Option<CurrentFrame>,
    /// The data message being assembled (set from its first frame to its last).
    message: Option<MessageKind>,
    /// That message is compressed (RSV1 on its first frame).
    compressed: bool,
    /// permessage-deflate, once negotiated.
    deflate: Option<Box<DeflateCodec>>,
    message_len: u64,
    message_data: Vec<u8>,
    utf8: Utf8Validator,
    /// A buffer handed back by the application, reused for the next message.
    spare: Vec<u8>,
    control: Vec<u8>,
    /// The event decoded and not yet polled: `receive_data` stops at each event, so there
    /// is never more than one (and no queue to allocate per connection).
    event: Option<Event>,
    output: OutputQueue,
    random: Option<Box<dyn RandomSource>>,
}

impl std::fmt::Debug for Connection {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Connection")
            .field("role", &self.role)
            .field("state", &self.state)
            .field("failure", &self.failure)
            .field("pending_output", &self.output.len())
            .finish_non_exhaustive()
    }
}

/// What a data frame's header reserves at most before its bytes arrive.
const HEADER_RESERVE: u64 = 1 << 20;
/// A kept buffer up to this size is handed out for any message.
const SMALL_SPARE: usize = 64 << 10;

/// Makes room in `buf` for `incoming` more bytes of a frame that has `frame_left` bytes
/// still to come (`incoming` included). It grows toward the announced length, but to at
/// most four times what has actually arrived: a large frame is copied twice or so on its
/// way up instead of at every doubling, while a peer that announces much and sends little
/// reserves at most four times what it sent.
fn grow_for(buf: &mut Vec<u8>, incoming: usize, frame_left: u64) {
    let needed = buf.len() + incoming;
    if needed <= buf.capacity() {
        return;
    }
    let cap = needed.saturating_mul(4) as u64;
    let target = (buf.len() as u64 + frame_left).min(cap) as usize;
    if buf.try_reserve(target - buf.len()).is_err() {
        buf.reserve(incoming);
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

/// Payloads handed over by value from this size up are queued as they are instead of
/// being copied behind their frame header (below it, a copy costs less than a chunk).
const HAND_OVER_MIN: usize = 16 << 10;
/// Payload is unmasked and validated in slices of this size, so that the second pass over
/// the bytes finds them in cache.
const UNMASK_SLICE: usize = 32 << 10;

impl Connection {
    /// The server side of an open connection. Servers never mask, so need no randomness.
    pub fn server(config: Config) -> Self {
        Self::new(Role::Server, config, None)
    }

    /// The client side of an open connection, drawing masking keys from `random`.
    pub fn client(config: Config, random: Box<dyn RandomSource>) -> Self {
        Self::new(Role::Client, config, Some(random))
    }

    fn new(role: Role, config: Config, random: Option<Box<dyn RandomSource>>) -> Self {
        Connection {
            role,
            decoder: FrameDecoder::new(role, config.max_frame_size),
            config,
            state: State::Open,
            failure: None,
            frame: None,
            message: None,
            compressed: false,
            deflate: None,
            message_len: 0,
            message_data: Vec::new(),
            utf8: Utf8Validator::new(),
            spare: Vec::new(),
            control: Vec::new(),
            event: None,
            output: OutputQueue::default(),
            random,
        }
    }

    /// Turns on permessage-deflate with the parameters agreed in the opening handshake
    /// ([`DeflateConfig::accept_offers`] on a server, [`DeflateConfig::check_response`]
    /// on a client); `config` gives the local threshold and level. Call it before any
    /// input or output.
    pub fn enable_deflate(&mut self, params: &DeflateParams, config: &DeflateConfig) {
        self.decoder.allow_rsv(0b100);
        self.deflate = Some(Box::new(DeflateCodec::new(
            params,
            self.role == Role::Server,
            config.threshold,
            config.level,
        )));
    }

    /// True when permessage-deflate is on.
    pub fn deflate_enabled(&self) -> bool {
        self.deflate.is_some()
    }

    // ----- getters -----

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
            State::LocalClosing => ConnectionState::Closing,
            State::Closed(_) => ConnectionState::Closed,
        }
    }

    /// How the connection ended, once it is [`ConnectionState::Closed`].
    pub fn close_status(&self) -> Option<&CloseStatus> {
        match &self.state {
            State::Closed(status) => Some(status),
            _ => None,
        }
    }

    /// The fatal protocol error that failed the connection, if any.
    pub fn failure(&self) -> Option<&ProtocolError> {
        self.failure.as_ref()
    }

    // ----- input -----

    /// Processes bytes received from the peer, up to the first event: returns how many
    /// bytes were consumed. Drain [`poll_event`](Self::poll_event), then call again with
    /// the rest. Stopping at each event lets the application answer a message (an echo,
    /// say) before a later frame in the same read fails the connection.
    ///
    /// Returns 0 while an event is still waiting to be polled. Input after the closing
    /// handshake is consumed and ignored.
    ///
    /// On a protocol violation the connection queues a Close frame with the matching code
    /// (when one may still be sent), becomes `Closed` with code 1006, and returns the error;
    /// every later call returns the same error.
    pub fn receive_data(&mut self, input: &[u8]) -> Result<usize, ProtocolError> {
        if let Some(error) = &self.failure {
            return Err(error.clone());
        }
        let mut consumed = 0;
        match self.receive_whole_message(input) {
            Ok(0) => {}
            Ok(used) => return Ok(used),
            Err(error) => return Err(self.fail(error)),
        }
        while !matches!(self.state, State::Closed(_)) && self.event.is_none() {
            let (used, part) = match self.decoder.decode(&input[consumed..]) {
                Ok(step) => step,
                Err(error) => return Err(self.fail(error)),
            };
            consumed += used;
            let result = match part {
                None => break,
                Some(FramePart::Header(header)) => self.on_header(header),
                Some(FramePart::Payload { data, offset, last }) => {
                    self.on_payload(data, offset, last)
                }
            };
            if let Err(error) = result {
                return Err(self.fail(error));
            }
        }
        if matches!(self.state, State::Closed(_)) {
            return Ok(input.len());
        }
        Ok(consumed)
    }

    /// The transport's read side ended (TCP FIN or reset). Without a finished closing
    /// handshake this is an abnormal closure (1006).
    pub fn receive_eof(&mut self) {
        self.abort("the connection ended without a closing handshake");
    }

    /// Ends the connection abnormally (1006) unless it is already closed: for the I/O
    /// layer's timeouts and transport errors. `why` is reported locally, never sent.
    pub fn abort(&mut self, why: &str) {
        if !matches!(self.state, State::Closed(_)) {
            self.state = State::Closed(CloseStatus {
                code: CloseCode::ABNORMAL,
                reason: why.to_owned(),
                clean: false,
            });
        }
    }

    // ----- events -----

    /// The next event decoded from the peer's bytes, in the order they arrived.
    #[inline]
    pub fn poll_event(&mut self) -> Option<Event> {
        self.event.take()
    }

    /// Hands a message buffer back for reuse by the next incoming message, so that steady
    /// traffic needs no allocation per message. The larger of this and the buffer already
    /// kept is kept; hand back only what the connection may hold while idle, or call
    /// [`release_memory`](Self::release_memory).
    #[inline]
    pub fn recycle(&mut self, buffer: Vec<u8>) {
        keep_larger(&mut self.spare, buffer);
    }

    /// Frees the recycled buffer, a drained output buffer, and compression state that
    /// no context needs (no_context_takeover): for idle connections.
    pub fn release_memory(&mut self) {
        self.spare = Vec::new();
        if let (Some(codec), None) = (&mut self.deflate, self.message) {
            codec.release();
        }
        self.output.release();
    }

    // ----- commands -----

    /// Queues a text message.
    pub fn send_text(&mut self, text: &str) -> Result<(), SendError> {
        self.send_message(OpCode::Text, text.as_bytes(), "a text message")
    }

    /// Queues a binary message.
    pub fn send_binary(&mut self, data: &[u8]) -> Result<(), SendError> {
        self.send_message(OpCode::Binary, data, "a binary message")
    }

    /// Queues a text message, taking its buffer: a large payload is written to the
    /// transport from that buffer, without a copy (masked in place on a client).
    pub fn send_text_owned(&mut self, text: String) -> Result<(), SendError> {
        self.send_message_owned(OpCode::Text, text.into_bytes(), "a text message")
    }

    /// Queues a binary message, taking its buffer: a large payload is written to the
    /// transport from that buffer, without a copy (masked in place on a client).
    pub fn send_binary_owned(&mut self, data: Vec<u8>) -> Result<(), SendError> {
        self.send_message_owned(OpCode::Binary, data, "a binary message")
    }

    /// Queues a frame already encoded with [`encode_frame`] (unmasked): a server encodes a
    /// broadcast once and hands the same bytes to every connection. Servers only: a client
    /// must mask each frame with its own key.
    pub fn send_encoded(&mut self, frame: &[u8]) -> Result<(), SendError> {
        if self.role == Role::Client {
            return Err(SendError::MaskRequired);
        }
        self.require_open("an encoded frame")?;
        self.output.encode_buffer().extend_from_slice(frame);
        Ok(())
    }

    /// Queues a Ping with up to 125 bytes of payload.
    pub fn send_ping(&mut self, payload: &[u8]) -> Result<(), SendError> {
        self.send_control(OpCode::Ping, payload, "a ping")
    }

    /// Queues a Pong with up to 125 bytes of payload (an unsolicited heartbeat, or the
    /// answer to a Ping when [`Config::auto_pong`] is off).
    pub fn send_pong(&mut self, payload: &[u8]) -> Result<(), SendError> {
        self.send_control(OpCode::Pong, payload, "a pong")
    }

    /// Starts the closing handshake on the application's behalf: `code` must be 1000 or
    /// 3000-4999 and `reason` at most 123 bytes, otherwise nothing is sent.
    pub fn close(&mut self, code: CloseCode, reason: &str) -> Result<(), SendError> {
        if !code.is_application_code() {
            return Err(SendError::InvalidCloseCode(code.0));
        }
        self.close_with_standard_code(code, reason)
    }

    /// Starts the closing handshake with any code that may appear on the wire (1000-1003,
    /// 1007-1014, 3000-4999): for the I/O layer, which closes with 1001 on shutdown, 1008
    /// on a policy breach, 1011 after a handler failure, and so on.
    pub fn close_with_standard_code(
        &mut self,
        code: CloseCode,
        reason: &str,
    ) -> Result<(), SendError> {
        if !code.is_valid_on_wire() {
            return Err(SendError::InvalidCloseCode(code.0));
        }
        if reason.len() > MAX_CLOSE_REASON {
            return Err(SendError::CloseReasonTooLong(reason.len()));
        }
        self.require_open("a close frame")?;
        self.queue_close(code, reason);
        self.state = State::LocalClosing;
        Ok(())
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

    /// True once the transport is expected to close soon: we sent a Close frame, or the
    /// connection is closed. The I/O layer starts its close timer then, and on expiry calls
    /// [`abort`](Self::abort) and closes the transport.
    pub fn close_expected(&self) -> bool {
        !matches!(self.state, State::Open)
    }

    /// True when the I/O layer should close the transport now: the connection is closed
    /// and all output is written, and this side closes first. The server closes first
    /// (RFC 6455 section 7.1.1); a client waits for the server's FIN (or its timer) unless
    /// the connection failed.
    pub fn should_close_transport(&self) -> bool {
        match &self.state {
            State::Closed(status) => {
                !self.wants_write() && (self.role == Role::Server || !status.clean)
            }
            _ => false,
        }
    }

    // ----- internals -----

    fn require_open(&self, what: &'static str) -> Result<(), SendError> {
        match self.state {
            State::Open => Ok(()),
            _ => Err(SendError::InvalidState {
                what,
                state: self.state(),
            }),
        }
    }

    fn next_mask(&mut self) -> Option<[u8; 4]> {
        self.random.as_mut().map(|random| {
            let mut key = [0u8; 4];
            random.fill(&mut key);
            key
        })
    }

    fn send_message(
        &mut self,
        opcode: OpCode,
        data: &[u8],
        what: &'static str,
    ) -> Result<(), SendError> {
        self.require_open(what)?;
        match self.compress(data) {
            Some(compressed) => self.queue_owned(opcode, 0b100, compressed),
            None => self.queue_message(opcode, 0, data),
        }
        Ok(())
    }

    fn send_message_owned(
        &mut self,
        opcode: OpCode,
        data: Vec<u8>,
        what: &'static str,
    ) -> Result<(), SendError> {
        self.require_open(what)?;
        match self.compress(&data) {
            Some(compressed) => self.queue_owned(opcode, 0b100, compressed),
            None => self.queue_owned(opcode, 0, data),
        }
        Ok(())
    }

    /// The compressed payload, when deflate is on and `data` reaches its threshold.
    fn compress(&mut self, data: &[u8]) -> Option<Vec<u8>> {
        let codec = self
            .deflate
            .as_mut()
            .filter(|c| data.len() >= c.threshold)?;
        let mut compressed = Vec::new();
        codec.compress(data, &mut compressed);
        Some(compressed)
    }

    /// Frames a payload we own: a large unfragmented one is queued as it is behind its
    /// header (masked in place on a client), anything else is copied by `queue_message`.
    fn queue_owned(&mut self, opcode: OpCode, rsv: u8, mut data: Vec<u8>) {
        let fragmented = self
            .config
            .fragment_size
            .is_some_and(|size| data.len() > size.max(1));
        if fragmented || data.len() < HAND_OVER_MIN {
            return self.queue_message(opcode, rsv, &data);
        }
        let mask = self.next_mask();
        if let Some(key) = mask {
            apply_mask(&mut data, key, 0);
        }
        encode_frame_header(
            &mut self.output.encode_buffer(),
            true,
            rsv,
            opcode,
            data.len(),
            mask,
        );
        self.output.push_owned(data);
    }

    /// Frames a message's payload (fragmented per the config); `rsv` goes on the first
    /// frame only.
    fn queue_message(&mut self, opcode: OpCode, rsv: u8, data: &[u8]) {
        let size = self.config.fragment_size.unwrap_or(usize::MAX).max(1);
        if data.len() <= size {
            let mask = self.next_mask();
            encode_frame_with_rsv(
                &mut self.output.encode_buffer(),
                true,
                rsv,
                opcode,
                data,
                mask,
            );
            return;
        }
        let count = data.len().div_ceil(size);
        for (i, piece) in data.chunks(size).enumerate() {
            let (op, rsv) = if i == 0 {
                (opcode, rsv)
            } else {
                (OpCode::Continuation, 0)
            };
            let mask = self.next_mask();
            encode_frame_with_rsv(
                &mut self.output.encode_buffer(),
                i + 1 == count,
                rsv,
                op,
                piece,
                mask,
            );
        }
    }

    fn send_control(
        &mut self,
        opcode: OpCode,
        payload: &[u8],
        what: &'static str,
    ) -> Result<(), SendError> {
        if payload.len() > MAX_CONTROL_PAYLOAD {
            return Err(SendError::ControlPayloadTooLong(payload.len()));
        }
        self.require_open(what)?;
        let mask = self.next_mask();
        encode_frame(
            &mut self.output.encode_buffer(),
            true,
            opcode,
            payload,
            mask,
        );
        Ok(())
    }

    /// Queues a Close frame; 1005 means "no code" (an empty Close frame).
    fn queue_close(&mut self, code: CloseCode, reason: &str) {
        let mut payload = [0u8; MAX_CONTROL_PAYLOAD];
        let len = if code == CloseCode::NO_STATUS {
            0
        } else {
            let reason = truncate_utf8(reason, MAX_CLOSE_REASON);
            payload[..2].copy_from_slice(&code.0.to_be_bytes());
            payload[2..2 + reason.len()].copy_from_slice(reason.as_bytes());
            2 + reason.len()
        };
        let mask = self.next_mask();
        encode_frame(
            &mut self.output.encode_buffer(),
            true,
            OpCode::Close,
            &payload[..len],
            mask,
        );
    }

    /// Fails the connection (RFC 6455 section 7.1.7): sends our Close with the error's code
    /// if we still may, and ends in `Closed` with 1006.
    fn fail(&mut self, error: ProtocolError) -> ProtocolError {
        if matches!(self.state, State::Open) {
            self.queue_close(error.close_code(), &error.to_string());
        }
        self.state = State::Closed(CloseStatus {
            code: CloseCode::ABNORMAL,
            reason: error.to_string(),
            clean: false,
        });
        self.failure = Some(error.clone());
        error
    }

    /// The common case in one step: `input` starts with a whole unfragmented,
    /// uncompressed text or binary frame, taken as a message at once. Returns the bytes
    /// used, 0 when the general path must decide (anything else, or not all there yet).
    /// Exactly the general path's rules apply; it only skips its per-part bookkeeping.
    fn receive_whole_message(&mut self, input: &[u8]) -> Result<usize, ProtocolError> {
        if !matches!(self.state, State::Open)
            || self.event.is_some()
            || self.message.is_some()
            || !self.decoder.at_frame_start()
        {
            return Ok(0);
        }
        let Some((header, header_len)) = FrameHeader::parse(input)? else {
            return Ok(0);
        };
        let kind = match header.opcode {
            OpCode::Text => MessageKind::Text,
            OpCode::Binary => MessageKind::Binary,
            _ => return Ok(0),
        };
        let end = header_len as u64 + header.payload_len;
        // Large payloads take the general path, which validates UTF-8 slice by slice
        // while the bytes are still in cache.
        if !header.fin
            || header.rsv != 0
            || end > input.len() as u64
            || header.payload_len > UNMASK_SLICE as u64
        {
            return Ok(0);
        }
        self.decoder.check(&header)?;
        if header.payload_len > self.config.max_message_size {
            return Err(ProtocolError::MessageTooLarge {
                size: header.payload_len,
                max: self.config.max_message_size,
            });
        }
        let payload = &input[header_len..end as usize];
        let mut data = self.take_spare(header.payload_len);
        data.reserve(payload.len());
        match header.mask {
            Some(key) => {
                let ascii = extend_unmasked(&mut data, payload, key, 0);
                if kind == MessageKind::Text && !ascii && std::str::from_utf8(&data).is_err() {
                    return Err(ProtocolError::InvalidUtf8);
                }
            }
            None => {
                if kind == MessageKind::Text && std::str::from_utf8(payload).is_err() {
                    return Err(ProtocolError::InvalidUtf8);
                }
                data.extend_from_slice(payload);
            }
        }
        self.emit(Event::Message { kind, data });
        Ok(end as usize)
    }

    /// The kept buffer for a message whose first frame announces `len` bytes, unless it
    /// is far larger than that: a small message must not hand the application a buffer
    /// that holds on to a large message's allocation.
    fn take_spare(&mut self, len: u64) -> Vec<u8> {
        if self.spare.capacity() as u64 <= len.saturating_mul(4).max(SMALL_SPARE as u64) {
            std::mem::take(&mut self.spare)
        } else {
            Vec::new()
        }
    }

    fn on_header(&mut self, header: FrameHeader) -> Result<(), ProtocolError> {
        let discarding = matches!(self.state, State::LocalClosing);
        let rsv1 = header.rsv & 0b100 != 0;
        // The decoder lets RSV1 through only once deflate is on; then it belongs on the
        // first frame of a data message only (RFC 7692 section 6.1).
        if rsv1 && !matches!(header.opcode, OpCode::Text | OpCode::Binary) {
            return Err(ProtocolError::MisplacedCompressionBit);
        }
        let keep = match header.opcode {
            OpCode::Text | OpCode::Binary => {
                if self.message.is_some() {
                    return Err(ProtocolError::ExpectedContinuation);
                }
                self.compressed = rsv1;
                self.message = Some(if header.opcode == OpCode::Text {
                    MessageKind::Text
                } else {
                    MessageKind::Binary
                });
                self.message_len = 0;
                !discarding
            }
            OpCode::Continuation => {
                if self.message.is_none() {
                    return Err(ProtocolError::UnexpectedContinuation);
                }
                !discarding
            }
            OpCode::Close | OpCode::Ping | OpCode::Pong => {
                self.control.clear();
                true
            }
        };
        if !header.opcode.is_control() {
            let size = self.message_len + header.payload_len;
            if size > self.config.max_message_size {
                return Err(ProtocolError::MessageTooLarge {
                    size,
                    max: self.config.max_message_size,
                });
            }
            self.message_len = size;
            if keep && self.message_data.capacity() == 0 {
                self.message_data = self.take_spare(header.payload_len);
            }
            if keep {
                // Bounded: an announced length is trusted only as far as `grow_for`
                // allows once bytes arrive.
                let expected = header.payload_len.min(HEADER_RESERVE) as usize;
                self.message_data.reserve(expected);
            }
        }
        self.frame = Some(CurrentFrame { header, keep });
        Ok(())
    }

    fn on_payload(&mut self, data: &[u8], offset: u64, last: bool) -> Result<(), ProtocolError> {
        let Some(frame) = self.frame else {
            return Ok(());
        };
        let header = frame.header;
        if header.opcode.is_control() {
            let start = self.control.len();
            self.control.extend_from_slice(data);
            if let Some(key) = header.mask {
                apply_mask(&mut self.control[start..], key, offset);
            }
            if last {
                self.frame = None;
                self.on_control(header.opcode)?;
            }
            return Ok(());
        }
        if frame.keep && self.compressed {
            self.inflate_payload(data, header.mask, offset)?;
        } else if frame.keep {
            let frame_left = header.payload_len - offset;
            grow_for(&mut self.message_data, data.len(), frame_left);
            let text = self.message == Some(MessageKind::Text);
            let key = header.mask.unwrap_or([0; 4]);
            for (i, slice) in data.chunks(UNMASK_SLICE).enumerate() {
                let start = self.message_data.len();
                let offset = offset + (i * UNMASK_SLICE) as u64;
                let ascii = extend_unmasked(&mut self.message_data, slice, key, offset);
                // ASCII between code points leaves the validator where it was.
                let validate = text && !(ascii && self.utf8.at_boundary());
                if validate && self.utf8.feed(&self.message_data[start..]).is_err() {
                    return Err(ProtocolError::InvalidUtf8);
                }
            }
        }
        if last {
            self.frame = None;
            if header.fin {
                self.finish_message(frame.keep)?;
            }
        }
        Ok(())
    }

    /// Unmasks a compressed payload piece into a stack buffer and inflates it onto the
    /// message, validating inflated text as it comes.
    fn inflate_payload(
        &mut self,
        data: &[u8],
        mask: Option<[u8; 4]>,
        offset: u64,
    ) -> Result<(), ProtocolError> {
        const PIECE: usize = 4096;
        let Some(codec) = &mut self.deflate else {
            return Err(ProtocolError::MisplacedCompressionBit);
        };
        let text = self.message == Some(MessageKind::Text);
        let max = self.config.max_message_size;
        let mut piece = [0u8; PIECE];
        for (i, chunk) in data.chunks(PIECE).enumerate() {
            let piece = &mut piece[..chunk.len()];
            piece.copy_from_slice(chunk);
            if let Some(key) = mask {
                apply_mask(piece, key, offset + (i * PIECE) as u64);
            }
            let start = self.message_data.len();
            codec
                .inflate(piece, &mut self.message_data, max)
                .map_err(|e| inflate_error(e, max))?;
            if text && self.utf8.feed(&self.message_data[start..]).is_err() {
                return Err(ProtocolError::InvalidUtf8);
            }
        }
        Ok(())
    }

    fn finish_message(&mut self, keep: bool) -> Result<(), ProtocolError> {
        let kind = self.message.take();
        self.message_len = 0;
        if std::mem::take(&mut self.compressed) && keep {
            if let Some(codec) = &mut self.deflate {
                let max = self.config.max_message_size;
                let start = self.message_data.len();
                codec
                    .finish_message(&mut self.message_data, max)
                    .map_err(|e| inflate_error(e, max))?;
                if kind == Some(MessageKind::Text)
                    && self.utf8.feed(&self.message_data[start..]).is_err()
                {
                    return Err(ProtocolError::InvalidUtf8);
                }
            }
        }
        let utf8 = self.utf8.finish();
        match (keep, kind) {
            (true, Some(kind)) => {
                if kind == MessageKind::Text && utf8.is_err() {
                    return Err(ProtocolError::InvalidUtf8);
                }
                let data = std::mem::take(&mut self.message_data);
                self.emit(Event::Message { kind, data });
            }
            // A message that was cut short by our Close: drop what was kept of it.
            _ => self.message_data.clear(),
        }
        Ok(())
    }

    #[inline]
    fn emit(&mut self, event: Event) {
        debug_assert!(self.event.is_none(), "receive_data stops at each event");
        // Written only when empty: the compiler then drops no old value.
        if self.event.is_none() {
            self.event = Some(event);
        }
    }

    fn on_control(&mut self, opcode: OpCode) -> Result<(), ProtocolError> {
        let payload = std::mem::take(&mut self.control);
        match opcode {
            OpCode::Ping => {
                if self.config.auto_pong && matches!(self.state, State::Open) {
                    let mask = self.next_mask();
                    encode_frame(
                        &mut self.output.encode_buffer(),
                        true,
                        OpCode::Pong,
                        &payload,
                        mask,
                    );
                }
                self.emit(Event::Ping(payload));
            }
            OpCode::Pong => self.emit(Event::Pong(payload)),
            OpCode::Close => {
                let frame = parse_close_payload(&payload)?;
                if matches!(self.state, State::Open) {
                    // Echo the peer's code (section 5.5.1); with no code, an empty Close.
                    self.queue_close(frame.code, "");
                }
                self.state = State::Closed(CloseStatus {
                    code: frame.code,
                    reason: frame.reason.clone(),
                    clean: true,
                });
                self.emit(Event::Close(frame));
            }
            OpCode::Continuation | OpCode::Text | OpCode::Binary => {}
        }
        Ok(())
    }
}

/// Parses and validates a Close frame's payload (RFC 6455 section 5.5.1 and 7.4).
pub fn parse_close_payload(payload: &[u8]) -> Result<CloseFrame, ProtocolError> {
    match payload {
        [] => Ok(CloseFrame {
            code: CloseCode::NO_STATUS,
            reason: String::new(),
        }),
        [_] => Err(ProtocolError::ClosePayloadTooShort),
        [hi, lo, reason @ ..] => {
            let code = CloseCode(u16::from_be_bytes([*hi, *lo]));
            if !code.is_valid_on_wire() {
                return Err(ProtocolError::InvalidCloseCode(code.0));
            }
            let reason = std::str::from_utf8(reason)
                .map_err(|_| ProtocolError::InvalidCloseReason)?
                .to_owned();
            Ok(CloseFrame { code, reason })
        }
    }
}

/// The longest prefix of `text` of at most `max` bytes that ends on a character boundary.
fn inflate_error(error: InflateError, max: u64) -> ProtocolError {
    match error {
        InflateError::Corrupt => ProtocolError::InvalidCompressedData,
        InflateError::TooLarge(size) => ProtocolError::MessageTooLarge { size, max },
    }
}

fn truncate_utf8(text: &str, max: usize) -> &str {
    if text.len() <= max {
        return text;
    }
    let mut end = max;
    while !text.is_char_boundary(end) {
        end -= 1;
    }
    &text[..end]
}

#[cfg(test)]
mod tests {
    use super::*;

    fn masked_header(len: u64) -> Vec<u8> {
        let header = FrameHeader {
            fin: true,
            rsv: 0,
            opcode: OpCode::Binary,
            mask: Some([0; 4]),
            payload_len: len,
        };
        let mut head = [0u8; crate::frame::MAX_HEADER_LEN];
        let n = header.encode(&mut head);
        head[..n].to_vec()
    }

    // A peer that announces a 16 MiB frame and sends little gets a bounded reservation,
    // growing with what it actually sends.
    #[test]
    fn an_announced_length_is_trusted_only_as_bytes_arrive() {
        let mut server = Connection::server(Config::default());
        let mut wire = masked_header(16 << 20);
        wire.extend_from_slice(&[1; 10]);
        assert_eq!(server.receive_data(&wire), Ok(wire.len()));
        assert!(server.message_data.capacity() <= HEADER_RESERVE as usize);
        server.receive_data(&vec![2; 2 << 20]).unwrap();
        let capacity = server.message_data.capacity();
        assert!(capacity >= 2 << 20, "room for what arrived");
        assert!(
            capacity <= 4 * ((2 << 20) + 10),
            "at most 4x what arrived: {capacity}"
        );
    }

    // A large frame that arrives in pieces fills a buffer grown a few times, to its size.
    #[test]
    fn a_large_frame_grows_its_buffer_a_few_times_only() {
        let mut server = Connection::server(Config::default());
        let size = 16 << 20;
        let head = masked_header(size);
        assert_eq!(server.receive_data(&head), Ok(head.len()));
        let mut growths = 0;
        let mut capacity = server.message_data.capacity();
        let piece = vec![3u8; 256 << 10];
        for _ in 0..size / piece.len() as u64 {
            assert_eq!(server.receive_data(&piece), Ok(piece.len()));
            if server.message_data.capacity() != capacity {
                growths += 1;
                capacity = server.message_data.capacity();
            }
        }
        let Some(Event::Message { data, .. }) = server.poll_event() else {
            panic!("no message");
        };
        assert_eq!(data.len() as u64, size);
        assert!(growths <= 3, "{growths} growths");
        assert!(data.capacity() as u64 <= size + (1 << 20));
    }
}
