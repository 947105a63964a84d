//! The incremental frame decoder: bytes in, validated frame headers and payload slices out.
//!
//! It enforces every rule that can be checked on one frame alone: masking by role, RSV
//! bits, reserved opcodes, control frame length and fragmentation, and the maximum frame
//! size (checked on the header, before any payload is buffered). Rules that span frames
//! (fragmentation order, UTF-8, message size) belong to [`crate::Connection`].
//!
//! The decoder copies nothing but a header split across reads (at most 14 bytes): payload
//! comes out as slices of the caller's input, still masked, with their offset in the frame
//! so that the consumer can unmask them with [`crate::mask::apply_mask`].

use crate::error::ProtocolError;
use crate::frame::{FrameHeader, MAX_CONTROL_PAYLOAD, MAX_HEADER_LEN};
use crate::Role;

/// One step of decoding.
#[derive(Debug, PartialEq, Eq)]
pub enum FramePart<'a> {
    /// A complete, validated header. Its payload follows as [`FramePart::Payload`] parts
    /// (exactly one, empty, when the payload length is 0).
    Header(FrameHeader),
    /// A piece of the current frame's payload, as it was on the wire (masked if the frame is).
    Payload {
        /// The bytes, borrowed from the input.
        data: &'a [u8],
        /// The position of `data[0]` in the frame's payload (for the masking key).
        offset: u64,
        /// True when this piece ends the frame.
        last: bool,
    },
}

#[derive(Clone, Debug)]
enum DecodeState {
    /// Between frames; `buf[..len]` holds the start of a header split across inputs.
    Header { buf: [u8; MAX_HEADER_LEN], len: u8 },
    /// Inside a frame's payload, `received` bytes of it seen so far.
    Payload { header: FrameHeader, received: u64 },
}

/// Decodes frames from input that may be split at any byte.
#[derive(Clone, Debug)]
pub struct FrameDecoder {
    role: Role,
    allowed_rsv: u8,
    max_frame_size: u64,
    state: DecodeState,
}

impl FrameDecoder {
    /// A decoder for frames received by `role`, refusing payloads over `max_frame_size`.
    pub fn new(role: Role, max_frame_size: u64) -> Self {
        FrameDecoder {
            role,
            allowed_rsv: 0,
            max_frame_size,
            state: DecodeState::Header {
                buf: [0; MAX_HEADER_LEN],
                len: 0,
            },
        }
    }

    /// Allows the RSV bits in `mask` (low 3 bits, RSV1 = 0b100), for a negotiated extension.
    pub fn allow_rsv(&mut self, mask: u8) {
        self.allowed_rsv = mask & 0x07;
    }

    /// Decodes from `input`: returns how many bytes were consumed and the part found, if
    /// any. `(input.len(), None)` means "all consumed, send more"; call again with the rest
    /// of the input after every part. After an error the decoder must not be used again.
    pub fn decode<'a>(
        &mut self,
        input: &'a [u8],
    ) -> Result<(usize, Option<FramePart<'a>>), ProtocolError> {
        match &mut self.state {
            DecodeState::Header { buf, len } => {
                let (header, used) = if *len == 0 {
                    match FrameHeader::parse(input)? {
                        Some(found) => found,
                        None => {
                            buf[..input.len()].copy_from_slice(input);
                            *len = input.len() as u8;
                            return Ok((input.len(), None));
                        }
                    }
                } else {
                    let have = *len as usize;
                    let take = (MAX_HEADER_LEN - have).min(input.len());
                    buf[have..have + take].copy_from_slice(&input[..take]);
                    match FrameHeader::parse(&buf[..have + take])? {
                        Some((header, header_len)) => (header, header_len - have),
                        None => {
                            *len = (have + take) as u8;
                            return Ok((take, None));
                        }
                    }
                };
                self.check(&header)?;
                self.state = DecodeState::Payload {
                    header,
                    received: 0,
                };
                Ok((used, Some(FramePart::Header(header))))
            }
            DecodeState::Payload { header, received } => {
                let remaining = header.payload_len - *received;
                let take = remaining.min(input.len() as u64) as usize;
                if take == 0 && remaining > 0 {
                    return Ok((0, None));
                }
                let offset = *received;
                *received += take as u64;
                let last = *received == header.payload_len;
                if last {
                    self.state = DecodeState::Header {
                        buf: [0; MAX_HEADER_LEN],
                        len: 0,
                    };
                }
                let data = &input[..take];
                Ok((take, Some(FramePart::Payload { data, offset, last })))
            }
        }
    }

    /// True between frames with no header bytes held: the next input starts a frame.
    pub(crate) fn at_frame_start(&self) -> bool {
        matches!(self.state, DecodeState::Header { len: 0, .. })
    }

    /// The rules a single header must satisfy.
    pub(crate) fn check(&self, header: &FrameHeader) -> Result<(), ProtocolError> {
        let reserved = header.rsv & !self.allowed_rsv;
        if reserved != 0 {
            return Err(ProtocolError::ReservedBits(reserved));
        }
        match (self.role, header.mask.is_some()) {
            (Role::Server, false) => return Err(ProtocolError::UnmaskedFrame),
            (Role::Client, true) => return Err(ProtocolError::MaskedFrame),
            _ => {}
        }
        if header.opcode.is_control() {
            if header.payload_len > MAX_CONTROL_PAYLOAD as u64 {
                return Err(ProtocolError::ControlFrameTooLong(header.payload_len));
            }
            if !header.fin {
                return Err(ProtocolError::FragmentedControlFrame);
            }
        }
        if header.payload_len > self.max_frame_size {
            return Err(ProtocolError::FrameTooLarge {
                size: header.payload_len,
                max: self.max_frame_size,
            });
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::frame::OpCode;
    use crate::mask::apply_mask;

    /// Decodes `input` fed in pieces of `chunk` bytes into (header, unmasked payload) pairs.
    fn decode_all(
        role: Role,
        input: &[u8],
        chunk: usize,
    ) -> Result<Vec<(FrameHeader, Vec<u8>)>, ProtocolError> {
        let mut decoder = FrameDecoder::new(role, 1 << 20);
        let mut frames: Vec<(FrameHeader, Vec<u8>)> = Vec::new();
        for mut piece in input.chunks(chunk.max(1)) {
            loop {
                let (used, part) = decoder.decode(piece)?;
                piece = &piece[used..];
                match part {
                    None => break,
                    Some(FramePart::Header(h)) => frames.push((h, Vec::new())),
                    Some(FramePart::Payload { data, offset, .. }) => {
                        let (h, payload) = frames.last_mut().unwrap();
                        let start = payload.len();
                        payload.extend_from_slice(data);
                        if let Some(key) = h.mask {
                            apply_mask(&mut payload[start..], key, offset);
                        }
                    }
                }
            }
        }
        Ok(frames)
    }

    #[test]
    fn rfc_5_7_masked_hello_decodes_at_every_split() {
        let bytes = [
            0x81, 0x85, 0x37, 0xfa, 0x21, 0x3d, 0x7f, 0x9f, 0x4d, 0x51, 0x58,
        ];
        for chunk in 1..=bytes.len() {
            let frames = decode_all(Role::Server, &bytes, chunk).unwrap();
            assert_eq!(frames.len(), 1);
            assert_eq!(frames[0].0.opcode, OpCode::Text);
            assert_eq!(frames[0].1, b"Hello");
        }
    }

    #[test]
    fn zero_length_frame_yields_one_empty_last_part() {
        let mut d = FrameDecoder::new(Role::Client, 100);
        let (used, part) = d.decode(&[0x89, 0x00]).unwrap();
        assert_eq!(used, 2);
        assert!(matches!(part, Some(FramePart::Header(_))));
        let (used, part) = d.decode(&[]).unwrap();
        assert_eq!(used, 0);
        assert_eq!(
            part,
            Some(FramePart::Payload {
                data: &[],
                offset: 0,
                last: true
            })
        );
        assert_eq!(d.decode(&[]).unwrap(), (0, None));
    }

    #[test]
    fn frame_rules_by_role() {
        let check = |role, bytes: &[u8]| FrameDecoder::new(role, 1000).decode(bytes).err();
        assert_eq!(
            check(Role::Server, &[0x81, 0x00]),
            Some(ProtocolError::UnmaskedFrame)
        );
        assert_eq!(
            check(Role::Client, &[0x81, 0x80, 0, 0, 0, 0]),
            Some(ProtocolError::MaskedFrame)
        );
        assert_eq!(
            check(Role::Client, &[0xc1, 0x00]),
            Some(ProtocolError::ReservedBits(4))
        );
        assert_eq!(
            check(Role::Client, &[0x91, 0x00]),
            Some(ProtocolError::ReservedBits(1))
        );
        assert_eq!(
            check(Role::Client, &[0x09, 0x00]),
            Some(ProtocolError::FragmentedControlFrame)
        );
        assert_eq!(
            check(Role::Client, &[0x89, 0x7e, 0x00, 0x7e]),
            Some(ProtocolError::ControlFrameTooLong(126))
        );
        assert_eq!(
            check(Role::Client, &[0x82, 0x7e, 0x03, 0xe9]),
            Some(ProtocolError::FrameTooLarge {
                size: 1001,
                max: 1000
            })
        );
        let mut d = FrameDecoder::new(Role::Client, 1000);
        d.allow_rsv(0b100);
        assert!(d.decode(&[0xc1, 0x00]).is_ok());
    }
}
