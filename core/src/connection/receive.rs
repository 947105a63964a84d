//! The receive path: bytes from the peer in, one event at a time out. Frames come from
//! the [`FrameDecoder`](crate::decoder::FrameDecoder); here they are joined into messages
//! (fragments, UTF-8, inflation, size limits) and control frames are answered.

use std::time::Instant;

use super::{CloseStatus, Connection, CurrentFrame, Event, Message, MessageKind, State};
use crate::close::{parse_close_payload, CloseCode};
use crate::decoder::FramePart;
use crate::deflate::{DeflateCodec, InflateError};
use crate::encoder::encode_frame;
use crate::error::ProtocolError;
use crate::frame::{FrameHeader, OpCode};
use crate::mask::{apply_mask, extend_unmasked};
use crate::utf8::Utf8Validator;

/// What a data frame's header reserves at most before its bytes arrive.
const HEADER_RESERVE: u64 = 1 << 20;
/// A kept buffer up to this size is handed out for any message.
const SMALL_SPARE: usize = 64 << 10;
/// Payload is unmasked and validated in slices of this size, so that the second pass over
/// the bytes finds them in cache.
const UNMASK_SLICE: usize = 32 << 10;

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
/// What the general path keeps between the pieces of a frame and the frames of a
/// message (boxed in the connection, made on first use).
#[derive(Debug, Default)]
pub(super) struct Assembly {
    frame: Option<CurrentFrame>,
    /// The data message being assembled (set from its first frame to its last).
    message: Option<MessageKind>,
    /// That message is compressed (RSV1 on its first frame).
    compressed: bool,
    /// Its length so far on the wire, for the size limit.
    message_len: u64,
    pub(super) message_data: Vec<u8>,
    utf8: Utf8Validator,
    /// The control frame being received.
    control: Vec<u8>,
}

/// The kept buffer for a message whose first frame announces `len` bytes, unless it is
/// far larger than that: a small message must not hand the application a buffer that
/// holds on to a large message's allocation.
fn take_spare(spare: &mut Vec<u8>, len: u64) -> Vec<u8> {
    if spare.capacity() as u64 <= len.saturating_mul(4).max(SMALL_SPARE as u64) {
        let mut buffer = std::mem::take(spare);
        // Empty already (every way into `spare` clears); the text paths rely on it.
        buffer.clear();
        buffer
    } else {
        Vec::new()
    }
}

impl Connection {
    /// True while a frame or a data message is partly received.
    pub(super) fn receiving(&self) -> bool {
        self.assembly
            .as_ref()
            .is_some_and(|a| a.frame.is_some() || a.message.is_some())
    }

    /// Decodes bytes received from the peer at `now` up to the next event, advancing
    /// `input` past what it used, and returns that event; `Ok(None)` once every byte of
    /// `input` is taken (partial frames are kept inside). Call it in a loop:
    ///
    /// ```text
    /// while let Some(event) = connection.receive(now, &mut input)? { handle(event) }
    /// ```
    ///
    /// Each call returns an event or empties `input`, so the loop ends; between two calls
    /// the application can answer a message (an echo, say) before a later frame in the
    /// same read fails the connection. Bytes that arrived with the opening handshake are
    /// decoded first (`input` may then be empty). Input after the closing handshake is
    /// taken and ignored.
    ///
    /// On a protocol violation the connection queues a Close frame with the matching code
    /// (when one may still be sent), becomes `Closed` with code 1006, empties `input` and
    /// returns the error; every later call returns the same error.
    #[inline]
    pub fn receive(
        &mut self,
        now: Instant,
        input: &mut &[u8],
    ) -> Result<Option<Event>, ProtocolError> {
        if matches!(self.state, State::Closed(_)) || self.has_early_input() {
            return self.receive_after(now, input);
        }
        self.receive_input(now, input)
    }

    /// `receive` when the past has a say: a closed connection (its sticky failure, if
    /// it failed), or bytes that came with the opening handshake and go first.
    #[cold]
    #[inline(never)]
    fn receive_after(
        &mut self,
        now: Instant,
        input: &mut &[u8],
    ) -> Result<Option<Event>, ProtocolError> {
        if let Some(error) = self.failure() {
            *input = &[];
            return Err(error.clone());
        }
        let Some(extras) = self.extras.as_mut().filter(|e| !e.early_input.is_empty()) else {
            return self.receive_input(now, input);
        };
        let mut early = std::mem::take(&mut extras.early_input);
        let mut rest = &early[..];
        let result = self.receive_input(now, &mut rest);
        let consumed = early.len() - rest.len();
        early.drain(..consumed);
        if let Some(extras) = self.extras.as_mut() {
            extras.early_input = early;
            if extras.is_empty() {
                self.extras = None;
            }
        }
        match result {
            Ok(None) => self.receive_input(now, input),
            Ok(Some(event)) => Ok(Some(event)),
            Err(error) => {
                *input = &[];
                Err(error)
            }
        }
    }

    /// The common case first: a whole small message at the start of `input`.
    #[inline]
    fn receive_input(
        &mut self,
        now: Instant,
        input: &mut &[u8],
    ) -> Result<Option<Event>, ProtocolError> {
        if input.is_empty() {
            return Ok(None);
        }
        self.last_input = Some(now);
        self.ping_sent_after = super::NO_PING;
        match self.receive_whole_message(input) {
            Ok(None) => self.receive_frames(now, input),
            Ok(Some((used, event))) => {
                *input = &input[used..];
                Ok(Some(event))
            }
            Err(error) => {
                *input = &[];
                Err(self.fail(error, now))
            }
        }
    }

    /// The general path: frame parts one at a time until an event, the end of the input
    /// or the end of the connection.
    #[inline(never)]
    fn receive_frames(
        &mut self,
        now: Instant,
        input: &mut &[u8],
    ) -> Result<Option<Event>, ProtocolError> {
        if matches!(self.state, State::Closed(_)) {
            *input = &[];
            return Ok(None);
        }
        let mut consumed = 0;
        let mut event = None;
        while !matches!(self.state, State::Closed(_)) && event.is_none() {
            let step = self.decoder.decode(&input[consumed..]);
            let (used, part) = match step {
                Ok(step) => step,
                Err(error) => {
                    *input = &[];
                    return Err(self.fail(error, now));
                }
            };
            consumed += used;
            let result = match part {
                // The decoder holds what it could not use: all of the input is taken.
                None => break,
                Some(FramePart::Header(header)) => self.on_header(header).map(|()| None),
                Some(FramePart::Payload { data, offset, last }) => {
                    self.on_payload(data, offset, last, now)
                }
            };
            match result {
                Ok(decoded) => event = decoded,
                Err(error) => {
                    *input = &[];
                    return Err(self.fail(error, now));
                }
            }
        }
        *input = if matches!(self.state, State::Closed(_)) {
            &[]
        } else {
            &input[consumed..]
        };
        Ok(event)
    }

    /// Fails the connection (RFC 6455 section 7.1.7): sends our Close with the error's code
    /// if we still may, and ends in `Closed` with 1006.
    #[cold]
    pub(super) fn fail(&mut self, error: ProtocolError, now: Instant) -> ProtocolError {
        if matches!(self.state, State::Open) {
            self.queue_close(error.close_code(), &error.to_string());
        }
        let status = CloseStatus {
            code: CloseCode::ABNORMAL,
            reason: error.to_string(),
            clean: false,
        };
        self.finish(status, Some(error.clone()), now);
        error
    }
    /// The common case in one step: `input` starts with a whole unfragmented,
    /// uncompressed text or binary frame, taken as a message at once. Returns the bytes
    /// used and the message, `None` when the general path must decide (anything else, or
    /// not all there yet). Exactly the general path's rules apply; it only skips its
    /// per-part bookkeeping.
    fn receive_whole_message(
        &mut self,
        input: &[u8],
    ) -> Result<Option<(usize, Event)>, ProtocolError> {
        if !matches!(self.state, State::Open)
            || self.assembly.as_ref().is_some_and(|a| a.message.is_some())
            || !self.decoder.at_frame_start()
        {
            return Ok(None);
        }
        let Some((header, header_len)) = FrameHeader::parse(input)? else {
            return Ok(None);
        };
        let kind = match header.opcode {
            OpCode::Text => MessageKind::Text,
            OpCode::Binary => MessageKind::Binary,
            _ => return Ok(None),
        };
        let end = header_len as u64 + header.payload_len;
        // Large payloads take the general path, which validates UTF-8 slice by slice
        // while the bytes are still in cache.
        if !header.fin
            || header.rsv != 0
            || end > input.len() as u64
            || header.payload_len > UNMASK_SLICE as u64
        {
            return Ok(None);
        }
        self.decoder.check(&header)?;
        if header.payload_len > self.config.max_message_size {
            return Err(ProtocolError::MessageTooLarge {
                size: header.payload_len,
                max: self.config.max_message_size,
            });
        }
        let payload = &input[header_len..end as usize];
        let mut data = take_spare(&mut self.spare, header.payload_len);
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
        // SAFETY: `data` is exactly the payload (the spare buffer comes back empty from
        // `take_spare`); for text it was found to be all ASCII by `extend_unmasked` or
        // accepted by `str::from_utf8` just above, else this returned InvalidUtf8.
        #[allow(unsafe_code)]
        let message = unsafe { Message::validated(kind, data) };
        Ok(Some((end as usize, Event::Message(message))))
    }

    fn on_header(&mut self, header: FrameHeader) -> Result<(), ProtocolError> {
        let discarding = matches!(self.state, State::LocalClosing { .. });
        let max = self.config.max_message_size;
        let a = self.assembly.get_or_insert_with(Box::default);
        let rsv1 = header.rsv & 0b100 != 0;
        // The decoder lets RSV1 through only once deflate is on; then it belongs on the
        // first frame of a data message only (RFC 7692 section 6.1).
        if rsv1 && !matches!(header.opcode, OpCode::Text | OpCode::Binary) {
            return Err(ProtocolError::MisplacedCompressionBit);
        }
        let keep = match header.opcode {
            OpCode::Text | OpCode::Binary => {
                if a.message.is_some() {
                    return Err(ProtocolError::ExpectedContinuation);
                }
                a.compressed = rsv1;
                a.message = Some(if header.opcode == OpCode::Text {
                    MessageKind::Text
                } else {
                    MessageKind::Binary
                });
                a.message_len = 0;
                !discarding
            }
            OpCode::Continuation => {
                if a.message.is_none() {
                    return Err(ProtocolError::UnexpectedContinuation);
                }
                !discarding
            }
            OpCode::Close | OpCode::Ping | OpCode::Pong => {
                a.control.clear();
                true
            }
        };
        if !header.opcode.is_control() {
            let size = a.message_len + header.payload_len;
            if size > max {
                return Err(ProtocolError::MessageTooLarge { size, max });
            }
            a.message_len = size;
            if keep && a.message_data.capacity() == 0 {
                a.message_data = take_spare(&mut self.spare, header.payload_len);
            }
            if keep {
                // Bounded: an announced length is trusted only as far as `grow_for`
                // allows once bytes arrive.
                let expected = header.payload_len.min(HEADER_RESERVE) as usize;
                a.message_data.reserve(expected);
            }
        }
        a.frame = Some(CurrentFrame { header, keep });
        Ok(())
    }

    /// A piece of the current frame's payload; the event it completes, if any.
    fn on_payload(
        &mut self,
        data: &[u8],
        offset: u64,
        last: bool,
        now: Instant,
    ) -> Result<Option<Event>, ProtocolError> {
        // A header made the assembly and its frame.
        let Some(a) = self.assembly.as_deref_mut() else {
            return Ok(None);
        };
        let Some(frame) = a.frame else {
            return Ok(None);
        };
        let header = frame.header;
        if header.opcode.is_control() {
            let start = a.control.len();
            a.control.extend_from_slice(data);
            if let Some(key) = header.mask {
                apply_mask(&mut a.control[start..], key, offset);
            }
            if last {
                a.frame = None;
                return self.on_control(header.opcode, now);
            }
            return Ok(None);
        }
        if frame.keep && a.compressed {
            let Some(codec) = self.extras.as_mut().and_then(|e| e.deflate.as_mut()) else {
                return Err(ProtocolError::MisplacedCompressionBit);
            };
            inflate_payload(
                a,
                codec,
                self.config.max_message_size,
                data,
                header.mask,
                offset,
            )?;
        } else if frame.keep {
            let frame_left = header.payload_len - offset;
            grow_for(&mut a.message_data, data.len(), frame_left);
            let text = a.message == Some(MessageKind::Text);
            let key = header.mask.unwrap_or([0; 4]);
            for (i, slice) in data.chunks(UNMASK_SLICE).enumerate() {
                let start = a.message_data.len();
                let offset = offset + (i * UNMASK_SLICE) as u64;
                let ascii = extend_unmasked(&mut a.message_data, slice, key, offset);
                // ASCII between code points leaves the validator where it was.
                let validate = text && !(ascii && a.utf8.at_boundary());
                if validate && a.utf8.feed(&a.message_data[start..]).is_err() {
                    return Err(ProtocolError::InvalidUtf8);
                }
            }
        }
        if last {
            a.frame = None;
            if header.fin {
                return self.finish_message(frame.keep);
            }
        }
        Ok(None)
    }

    fn finish_message(&mut self, keep: bool) -> Result<Option<Event>, ProtocolError> {
        let Some(a) = self.assembly.as_deref_mut() else {
            return Ok(None);
        };
        let kind = a.message.take();
        a.message_len = 0;
        if std::mem::take(&mut a.compressed) && keep {
            if let Some(codec) = self.extras.as_mut().and_then(|e| e.deflate.as_mut()) {
                let max = self.config.max_message_size;
                let start = a.message_data.len();
                codec
                    .finish_message(&mut a.message_data, max)
                    .map_err(|e| inflate_error(e, max))?;
                if kind == Some(MessageKind::Text) && a.utf8.feed(&a.message_data[start..]).is_err()
                {
                    return Err(ProtocolError::InvalidUtf8);
                }
            }
        }
        let utf8 = a.utf8.finish();
        match (keep, kind) {
            (true, Some(kind)) => {
                if kind == MessageKind::Text && utf8.is_err() {
                    return Err(ProtocolError::InvalidUtf8);
                }
                let data = std::mem::take(&mut a.message_data);
                // SAFETY: every byte of `message_data` went through the validator `utf8`
                // (`feed` per unmasked or inflated slice; an ASCII slice at a code point
                // boundary leaves it unchanged), it and the validator start empty per message
                // (a delivered message takes the buffer, a discarded one clears it, `finish`
                // resets the validator; an error leaves them dirty but fails the connection
                // for good), and `finish` just said no code point was cut short.
                #[allow(unsafe_code)]
                let message = unsafe { Message::validated(kind, data) };
                Ok(Some(Event::Message(message)))
            }
            // A message that was cut short by our Close: drop what was kept of it.
            _ => {
                a.message_data.clear();
                Ok(None)
            }
        }
    }

    fn on_control(&mut self, opcode: OpCode, now: Instant) -> Result<Option<Event>, ProtocolError> {
        let payload = self
            .assembly
            .as_deref_mut()
            .map(|a| std::mem::take(&mut a.control))
            .unwrap_or_default();
        let event = match opcode {
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
                Event::Ping(payload)
            }
            OpCode::Pong => Event::Pong(payload),
            OpCode::Close => {
                let frame = parse_close_payload(&payload)?;
                if matches!(self.state, State::Open) {
                    // Echo the peer's code (section 5.5.1); with no code, an empty Close.
                    self.queue_close(frame.code, "");
                }
                let status = CloseStatus {
                    code: frame.code,
                    reason: frame.reason.clone(),
                    clean: true,
                };
                self.finish(status, None, now);
                Event::Close(frame)
            }
            OpCode::Continuation | OpCode::Text | OpCode::Binary => return Ok(None),
        };
        Ok(Some(event))
    }
}
/// Unmasks a compressed payload piece into a stack buffer and inflates it onto the
/// message, validating inflated text as it comes.
fn inflate_payload(
    a: &mut Assembly,
    codec: &mut DeflateCodec,
    max: u64,
    data: &[u8],
    mask: Option<[u8; 4]>,
    offset: u64,
) -> Result<(), ProtocolError> {
    const PIECE: usize = 4096;
    let text = a.message == Some(MessageKind::Text);
    let mut piece = [0u8; PIECE];
    for (i, chunk) in data.chunks(PIECE).enumerate() {
        let piece = &mut piece[..chunk.len()];
        piece.copy_from_slice(chunk);
        if let Some(key) = mask {
            apply_mask(piece, key, offset + (i * PIECE) as u64);
        }
        let start = a.message_data.len();
        codec
            .inflate(piece, &mut a.message_data, max)
            .map_err(|e| inflate_error(e, max))?;
        if text && a.utf8.feed(&a.message_data[start..]).is_err() {
            return Err(ProtocolError::InvalidUtf8);
        }
    }
    Ok(())
}

/// The protocol error for a failed inflation.
fn inflate_error(error: InflateError, max: u64) -> ProtocolError {
    match error {
        InflateError::Corrupt => ProtocolError::InvalidCompressedData,
        InflateError::TooLarge(size) => ProtocolError::MessageTooLarge { size, max },
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::Config;

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

    /// Feeds all of `input`: the events, and every byte taken.
    fn feed(server: &mut Connection, mut input: &[u8]) -> Vec<Event> {
        let mut events = Vec::new();
        while let Some(event) = server.receive(Instant::now(), &mut input).unwrap() {
            events.push(event);
        }
        assert!(input.is_empty(), "every byte taken");
        events
    }

    #[test]
    fn the_assembly_exists_only_while_a_message_is_received_piece_by_piece() {
        let mut server = Connection::server(Config::default());
        // Text frames masked with a zero key: "hi"; then "he" (not final) and "llo".
        let whole = [0x81, 0x82, 0, 0, 0, 0, b'h', b'i'];
        assert_eq!(feed(&mut server, &whole).len(), 1);
        assert!(
            server.assembly.is_none(),
            "a whole small message needs none"
        );
        let first = [0x01, 0x82, 0, 0, 0, 0, b'h', b'e'];
        let last = [0x80, 0x83, 0, 0, 0, 0, b'l', b'l', b'o'];
        assert!(feed(&mut server, &first).is_empty());
        assert!(feed(&mut server, &last[..4]).is_empty());
        server.release_idle_memory_into(drop);
        assert!(server.receiving(), "kept through a release mid-message");
        let events = feed(&mut server, &last[4..]);
        let [Event::Message(Message::Text(text))] = &events[..] else {
            panic!("{events:?}");
        };
        assert_eq!(text, "hello");
        assert!(server.holds_releasable_memory());
        server.release_idle_memory_into(drop);
        assert!(server.assembly.is_none(), "freed once idle");
    }

    // A peer that announces a 16 MiB frame and sends little gets a bounded reservation,
    // growing with what it actually sends.
    #[test]
    fn an_announced_length_is_trusted_only_as_bytes_arrive() {
        let mut server = Connection::server(Config::default());
        let mut wire = masked_header(16 << 20);
        wire.extend_from_slice(&[1; 10]);
        assert_eq!(feed(&mut server, &wire), []);
        assert!(
            server.assembly.as_ref().unwrap().message_data.capacity() <= HEADER_RESERVE as usize
        );
        assert_eq!(feed(&mut server, &vec![2; 2 << 20]), []);
        let capacity = server.assembly.as_ref().unwrap().message_data.capacity();
        assert!(capacity >= 2 << 20, "room for what arrived");
        assert!(
            capacity <= 4 * ((2 << 20) + 10),
            "at most 4x what arrived: {capacity}"
        );
    }

    // An echo of small messages allocates nothing per message: the buffer sent back is
    // copied into the output and then holds the next incoming message.
    #[test]
    fn a_small_message_sent_back_by_value_holds_the_next_one() {
        let mut server = Connection::server(Config::default());
        let mut wire = masked_header(64);
        wire.extend_from_slice(&[7; 64]);
        let [Event::Message(Message::Binary(data))] = &feed(&mut server, &wire)[..] else {
            panic!("one message");
        };
        // A capacity of its own tells the buffer apart (a freed block's address may come
        // back from the allocator anyway).
        let mut reply = Vec::with_capacity(1000);
        reply.extend_from_slice(data);
        server.send_binary_owned(reply).unwrap();
        let [Event::Message(Message::Binary(data))] = &feed(&mut server, &wire)[..] else {
            panic!("one message");
        };
        assert_eq!(data.capacity(), 1000, "the buffer sent back was reused");
        assert_eq!(data[..], [7; 64]);
    }

    // A driver's pool: lent buffers hold the next message and the output's frames, and
    // come back (emptied) when the connection goes idle; a connection that has a buffer
    // takes none.
    #[test]
    fn lent_buffers_are_used_then_given_back() {
        let mut server = Connection::server(Config::default());
        let mut pool = vec![Vec::with_capacity(3000), Vec::with_capacity(2000)];
        server.lend_buffers(|| pool.pop());
        assert!(pool.is_empty(), "one for the message, one for the output");
        let mut wire = masked_header(64);
        wire.extend_from_slice(&[7; 64]);
        let [Event::Message(Message::Binary(data))] = &feed(&mut server, &wire)[..] else {
            panic!("one message");
        };
        assert_eq!(data.capacity(), 2000, "the message is in the lent buffer");
        server.send_binary(data).unwrap();
        let out = server.pending_output().to_vec();
        assert_eq!(out.len(), 66);
        server.consume_output(out.len());
        let mut lent = 0;
        server.lend_buffers(|| {
            lent += 1;
            None
        });
        assert_eq!(
            lent, 1,
            "only the message buffer is missing; the output keeps its own"
        );
        server.release_memory_into(|buffer| pool.push(buffer));
        let capacities: Vec<usize> = pool.iter().map(Vec::capacity).collect();
        assert_eq!(capacities, [3000], "the output's buffer, back in the pool");
        assert!(pool.iter().all(Vec::is_empty));
        assert!(!server.holds_releasable_memory());
    }

    // A large frame that arrives in pieces fills a buffer grown a few times, to its size.
    #[test]
    fn a_large_frame_grows_its_buffer_a_few_times_only() {
        let mut server = Connection::server(Config::default());
        let size = 16 << 20;
        let head = masked_header(size);
        assert_eq!(feed(&mut server, &head), []);
        let mut events = Vec::new();
        let mut growths = 0;
        let mut capacity = server.assembly.as_ref().unwrap().message_data.capacity();
        let piece = vec![3u8; 256 << 10];
        for _ in 0..size / piece.len() as u64 {
            events.extend(feed(&mut server, &piece));
            if server.assembly.as_ref().unwrap().message_data.capacity() != capacity {
                growths += 1;
                capacity = server.assembly.as_ref().unwrap().message_data.capacity();
            }
        }
        let [Event::Message(Message::Binary(data))] = &events[..] else {
            panic!("one message: {events:?}");
        };
        assert_eq!(data.len() as u64, size);
        assert!(growths <= 3, "{growths} growths");
        assert!(data.capacity() as u64 <= size + (1 << 20));
    }
}
