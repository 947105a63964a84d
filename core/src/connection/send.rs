//! Commands: messages, control frames and the Close the application or the driver asks
//! for, framed into the output queue (fragmented, compressed, masked as configured).

use std::time::Instant;

use super::{Connection, State};
use crate::close::{check_close, encode_close_payload, CloseCode, Closer};
use crate::encoder::{encode_frame, encode_frame_header, encode_frame_with_rsv};
use crate::error::SendError;
use crate::frame::{OpCode, MAX_CONTROL_PAYLOAD};
use crate::mask::apply_mask;
use crate::Role;

/// Payloads handed over by value from this size up are queued as they are instead of
/// being copied behind their frame header (below it, a copy costs less than a chunk).
const HAND_OVER_MIN: usize = 16 << 10;

/// Checks a Ping or Pong payload an application wants to send (at most 125 bytes), the
/// rule [`Connection::send_ping`] and [`Connection::send_pong`] apply, for a driver that
/// refuses at once, on the caller's side, before it queues anything.
pub fn check_control(payload: &[u8]) -> Result<(), SendError> {
    if payload.len() > MAX_CONTROL_PAYLOAD {
        return Err(SendError::ControlPayloadTooLong(payload.len()));
    }
    Ok(())
}

impl Connection {
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
    /// answer to a Ping when [`Config::auto_pong`](crate::Config::auto_pong) is off).
    pub fn send_pong(&mut self, payload: &[u8]) -> Result<(), SendError> {
        self.send_control(OpCode::Pong, payload, "a pong")
    }

    /// Starts the closing handshake at `now` on the application's behalf: `code` must be
    /// 1000 or 3000-4999 and `reason` at most 123 bytes ([`check_close`]), otherwise
    /// nothing is sent. The close timeout counts from `now`.
    pub fn close(&mut self, now: Instant, code: CloseCode, reason: &str) -> Result<(), SendError> {
        self.close_as(now, code, reason, Closer::Application)
    }

    /// Starts the closing handshake with any code that may appear on the wire (1000-1003,
    /// 1007-1014, 3000-4999): for the I/O layer, which closes with 1001 on shutdown, 1008
    /// on a policy breach, 1011 after a handler failure, and so on.
    pub fn close_with_standard_code(
        &mut self,
        now: Instant,
        code: CloseCode,
        reason: &str,
    ) -> Result<(), SendError> {
        self.close_as(now, code, reason, Closer::Engine)
    }

    fn close_as(
        &mut self,
        now: Instant,
        code: CloseCode,
        reason: &str,
        by: Closer,
    ) -> Result<(), SendError> {
        check_close(code, reason, by)?;
        self.require_open("a close frame")?;
        self.queue_close(code, reason);
        self.state = State::LocalClosing { since: now };
        Ok(())
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

    pub(super) fn next_mask(&mut self) -> Option<[u8; 4]> {
        let random = self.extras.as_mut()?.random.as_mut()?;
        let mut key = [0u8; 4];
        random.fill(&mut key);
        Some(key)
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
        let codec = (self.extras.as_mut())
            .and_then(|e| e.deflate.as_mut())
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
            self.queue_message(opcode, rsv, &data);
            // Copied: a small buffer becomes the next incoming message's, so that an echo
            // (the message's own buffer sent back) allocates nothing per message. A large
            // one (fragmented) is freed: a driver that never calls `release_memory` would
            // hold it for the connection's life.
            if data.capacity() <= HAND_OVER_MIN {
                self.recycle(data);
            }
            return;
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
        check_control(payload)?;
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
    pub(super) fn queue_close(&mut self, code: CloseCode, reason: &str) {
        let mut payload = [0u8; MAX_CONTROL_PAYLOAD];
        let len = encode_close_payload(code, reason, &mut payload);
        let mask = self.next_mask();
        encode_frame(
            &mut self.output.encode_buffer(),
            true,
            OpCode::Close,
            &payload[..len],
            mask,
        );
    }
}
