//! The frame header (RFC 6455 section 5.2): opcodes, parsing and encoding.
//!
//! This module knows the wire layout only; which headers are acceptable for a role and a
//! state is decided by [`crate::decoder::FrameDecoder`].

use crate::error::ProtocolError;

/// The largest header: 2 bytes, 8 bytes of extended length, 4 bytes of masking key.
pub const MAX_HEADER_LEN: usize = 14;

/// The largest payload of a control frame.
pub const MAX_CONTROL_PAYLOAD: usize = 125;

/// A frame opcode defined by RFC 6455.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum OpCode {
    /// 0x0: continues a fragmented message.
    Continuation,
    /// 0x1: the first frame of a UTF-8 text message.
    Text,
    /// 0x2: the first frame of a binary message.
    Binary,
    /// 0x8: starts or answers the closing handshake.
    Close,
    /// 0x9: a keepalive or round-trip probe; answered with a Pong.
    Ping,
    /// 0xA: the answer to a Ping, or an unsolicited heartbeat.
    Pong,
}

impl OpCode {
    /// The opcode for the low 4 bits `bits`, or the reserved value as an error.
    pub fn from_bits(bits: u8) -> Result<OpCode, ProtocolError> {
        Ok(match bits {
            0x0 => OpCode::Continuation,
            0x1 => OpCode::Text,
            0x2 => OpCode::Binary,
            0x8 => OpCode::Close,
            0x9 => OpCode::Ping,
            0xA => OpCode::Pong,
            other => return Err(ProtocolError::ReservedOpcode(other)),
        })
    }

    /// The 4-bit wire value.
    pub fn bits(self) -> u8 {
        match self {
            OpCode::Continuation => 0x0,
            OpCode::Text => 0x1,
            OpCode::Binary => 0x2,
            OpCode::Close => 0x8,
            OpCode::Ping => 0x9,
            OpCode::Pong => 0xA,
        }
    }

    /// True for Close, Ping and Pong.
    pub fn is_control(self) -> bool {
        matches!(self, OpCode::Close | OpCode::Ping | OpCode::Pong)
    }
}

/// A decoded or to-be-encoded frame header.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct FrameHeader {
    /// The FIN bit: this frame ends its message.
    pub fin: bool,
    /// RSV1-3 as the low 3 bits (RSV1 = 0b100).
    pub rsv: u8,
    /// The opcode.
    pub opcode: OpCode,
    /// The masking key, present on every client-to-server frame.
    pub mask: Option<[u8; 4]>,
    /// The payload length.
    pub payload_len: u64,
}

impl FrameHeader {
    /// Parses a header from the start of `buf`.
    ///
    /// Returns `Ok(None)` when `buf` is too short to hold the whole header, otherwise the
    /// header and its length in bytes. Only wire-level errors are reported here (reserved
    /// opcode, 64-bit length with its top bit set); role and state rules are the decoder's.
    pub fn parse(buf: &[u8]) -> Result<Option<(FrameHeader, usize)>, ProtocolError> {
        let [b0, b1, ..] = *buf else { return Ok(None) };
        let opcode = OpCode::from_bits(b0 & 0x0f)?;
        let masked = b1 & 0x80 != 0;
        let (payload_len, len_bytes) = match b1 & 0x7f {
            126 => (None, 2),
            127 => (None, 8),
            short => (Some(u64::from(short)), 0),
        };
        // The length is checked as soon as it is complete, before the masking key arrives.
        if buf.len() < 2 + len_bytes {
            return Ok(None);
        }
        let payload_len = match payload_len {
            Some(len) => len,
            None if len_bytes == 2 => u64::from(u16::from_be_bytes([buf[2], buf[3]])),
            None => {
                let mut raw = [0u8; 8];
                raw.copy_from_slice(&buf[2..10]);
                let len = u64::from_be_bytes(raw);
                if len >> 63 != 0 {
                    return Err(ProtocolError::InvalidLength);
                }
                len
            }
        };
        let header_len = 2 + len_bytes + if masked { 4 } else { 0 };
        if buf.len() < header_len {
            return Ok(None);
        }
        let mask = masked.then(|| {
            let at = 2 + len_bytes;
            [buf[at], buf[at + 1], buf[at + 2], buf[at + 3]]
        });
        let header = FrameHeader {
            fin: b0 & 0x80 != 0,
            rsv: (b0 >> 4) & 0x07,
            opcode,
            mask,
            payload_len,
        };
        Ok(Some((header, header_len)))
    }

    /// Encodes the header into `out` with the shortest length encoding; returns its length.
    pub fn encode(&self, out: &mut [u8; MAX_HEADER_LEN]) -> usize {
        out[0] = (u8::from(self.fin) << 7) | ((self.rsv & 0x07) << 4) | self.opcode.bits();
        let mask_bit = if self.mask.is_some() { 0x80 } else { 0 };
        let mut at = match self.payload_len {
            len @ 0..=125 => {
                out[1] = mask_bit | len as u8;
                2
            }
            len @ 126..=0xffff => {
                out[1] = mask_bit | 126;
                out[2..4].copy_from_slice(&(len as u16).to_be_bytes());
                4
            }
            len => {
                out[1] = mask_bit | 127;
                out[2..10].copy_from_slice(&len.to_be_bytes());
                10
            }
        };
        if let Some(key) = self.mask {
            out[at..at + 4].copy_from_slice(&key);
            at += 4;
        }
        at
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    #[test]
    fn parses_rfc_single_frame_unmasked_hello() {
        let bytes = [0x81, 0x05, 0x48, 0x65, 0x6c, 0x6c, 0x6f];
        let (h, len) = FrameHeader::parse(&bytes).unwrap().unwrap();
        assert_eq!(len, 2);
        assert!(h.fin);
        assert_eq!(h.opcode, OpCode::Text);
        assert_eq!(h.payload_len, 5);
        assert_eq!(h.mask, None);
    }

    #[test]
    fn incomplete_headers_ask_for_more() {
        let full = [0x82, 0xfe, 0x01, 0x00, 1, 2, 3, 4];
        for cut in 0..full.len() {
            assert_eq!(FrameHeader::parse(&full[..cut]), Ok(None), "cut {cut}");
        }
        let (h, len) = FrameHeader::parse(&full).unwrap().unwrap();
        assert_eq!((h.payload_len, len, h.mask), (256, 8, Some([1, 2, 3, 4])));
    }

    #[test]
    fn rejects_reserved_opcode_and_top_bit_length() {
        assert_eq!(
            FrameHeader::parse(&[0x83, 0x00]),
            Err(ProtocolError::ReservedOpcode(3))
        );
        assert_eq!(
            FrameHeader::parse(&[0x8b, 0x00]),
            Err(ProtocolError::ReservedOpcode(0xb))
        );
        let mut huge = vec![0x82, 0x7f];
        huge.extend_from_slice(&(1u64 << 63).to_be_bytes());
        assert_eq!(FrameHeader::parse(&huge), Err(ProtocolError::InvalidLength));
    }

    fn opcode() -> impl Strategy<Value = OpCode> {
        prop_oneof![
            Just(OpCode::Continuation),
            Just(OpCode::Text),
            Just(OpCode::Binary),
            Just(OpCode::Close),
            Just(OpCode::Ping),
            Just(OpCode::Pong),
        ]
    }

    proptest! {
        #[test]
        fn header_round_trips(fin in any::<bool>(), rsv in 0u8..8, op in opcode(),
                              mask in any::<Option<[u8; 4]>>(),
                              len in prop_oneof![0u64..130, 60_000u64..70_000, 0u64..(1 << 63)]) {
            let header = FrameHeader { fin, rsv, opcode: op, mask, payload_len: len };
            let mut buf = [0u8; MAX_HEADER_LEN];
            let n = header.encode(&mut buf);
            prop_assert_eq!(FrameHeader::parse(&buf[..n]), Ok(Some((header, n))));
        }
    }
}
