//! Frame encoding: header plus (masked) payload appended to a caller-owned buffer.

use crate::frame::{FrameHeader, OpCode, MAX_HEADER_LEN};
use crate::mask::apply_mask;

/// Appends one frame to `out`: the header, then `payload`, masked with `mask` when given
/// (clients mask every frame, servers none). RSV bits are zero.
///
/// The encoding does not depend on the connection, so a server can encode a broadcast
/// frame once and write the same bytes to every peer.
pub fn encode_frame(
    out: &mut Vec<u8>,
    fin: bool,
    opcode: OpCode,
    payload: &[u8],
    mask: Option<[u8; 4]>,
) {
    encode_frame_with_rsv(out, fin, 0, opcode, payload, mask);
}

/// [`encode_frame`] with RSV bits (`rsv` as the low 3 bits, RSV1 = 0b100), for a
/// negotiated extension: RSV1 marks the first frame of a compressed message.
pub fn encode_frame_with_rsv(
    out: &mut Vec<u8>,
    fin: bool,
    rsv: u8,
    opcode: OpCode,
    payload: &[u8],
    mask: Option<[u8; 4]>,
) {
    out.reserve(MAX_HEADER_LEN + payload.len());
    encode_frame_header(out, fin, rsv, opcode, payload.len(), mask);
    let start = out.len();
    out.extend_from_slice(payload);
    if let Some(key) = mask {
        apply_mask(&mut out[start..], key, 0);
    }
}

/// Appends only the header of a frame whose `payload_len` bytes follow elsewhere (already
/// masked with `mask` when given): for a payload written from its own buffer.
pub fn encode_frame_header(
    out: &mut Vec<u8>,
    fin: bool,
    rsv: u8,
    opcode: OpCode,
    payload_len: usize,
    mask: Option<[u8; 4]>,
) {
    let header = FrameHeader {
        fin,
        rsv: rsv & 0x07,
        opcode,
        mask,
        payload_len: payload_len as u64,
    };
    let mut head = [0u8; MAX_HEADER_LEN];
    let head_len = header.encode(&mut head);
    out.extend_from_slice(&head[..head_len]);
}

#[cfg(test)]
mod tests {
    use super::*;

    // The examples of RFC 6455 section 5.7, byte for byte.
    #[test]
    fn rfc_5_7_examples() {
        let mut out = Vec::new();
        encode_frame(&mut out, true, OpCode::Text, b"Hello", None);
        assert_eq!(out, [0x81, 0x05, 0x48, 0x65, 0x6c, 0x6c, 0x6f]);

        out.clear();
        encode_frame(
            &mut out,
            true,
            OpCode::Text,
            b"Hello",
            Some([0x37, 0xfa, 0x21, 0x3d]),
        );
        assert_eq!(
            out,
            [0x81, 0x85, 0x37, 0xfa, 0x21, 0x3d, 0x7f, 0x9f, 0x4d, 0x51, 0x58]
        );

        out.clear();
        encode_frame(&mut out, false, OpCode::Text, b"Hel", None);
        encode_frame(&mut out, true, OpCode::Continuation, b"lo", None);
        assert_eq!(out, [0x01, 0x03, 0x48, 0x65, 0x6c, 0x80, 0x02, 0x6c, 0x6f]);

        out.clear();
        encode_frame(&mut out, true, OpCode::Ping, b"Hello", None);
        assert_eq!(out, [0x89, 0x05, 0x48, 0x65, 0x6c, 0x6c, 0x6f]);

        out.clear();
        encode_frame(
            &mut out,
            true,
            OpCode::Pong,
            b"Hello",
            Some([0x37, 0xfa, 0x21, 0x3d]),
        );
        assert_eq!(
            out,
            [0x8a, 0x85, 0x37, 0xfa, 0x21, 0x3d, 0x7f, 0x9f, 0x4d, 0x51, 0x58]
        );

        out.clear();
        encode_frame(&mut out, true, OpCode::Binary, &[0u8; 256], None);
        assert_eq!(&out[..4], [0x82, 0x7e, 0x01, 0x00]);
        assert_eq!(out.len(), 4 + 256);

        out.clear();
        encode_frame(&mut out, true, OpCode::Binary, &vec![0u8; 65536], None);
        assert_eq!(&out[..10], [0x82, 0x7f, 0, 0, 0, 0, 0, 1, 0, 0]);
        assert_eq!(out.len(), 10 + 65536);
    }
}
