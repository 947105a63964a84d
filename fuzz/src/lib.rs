//! Helpers shared by the fuzz targets: deterministic chunking and an output checker.

use ws6455_core::decoder::{FrameDecoder, FramePart};
use ws6455_core::frame::OpCode;
use ws6455_core::mask::apply_mask;
use ws6455_core::{CloseCode, Role};

/// Splits `data` into pieces whose sizes come from `seed` (1..=64 bytes each), so that a
/// target can compare a whole-input run with a chunked one.
pub fn chunks(data: &[u8], seed: u8) -> Vec<&[u8]> {
    let mut state = u32::from(seed) | 1;
    let mut out = Vec::new();
    let mut rest = data;
    while !rest.is_empty() {
        state = state.wrapping_mul(1_103_515_245).wrapping_add(12_345);
        let take = ((state >> 16) as usize % 64 + 1).min(rest.len());
        let (head, tail) = rest.split_at(take);
        out.push(head);
        rest = tail;
    }
    out
}

/// A frame as decoded: opcode, FIN, RSV bits and unmasked payload.
pub type DecodedFrame = (OpCode, bool, u8, Vec<u8>);

/// Decodes `pieces` in order as `role` would, returning the frames and the error, if any.
pub fn decode_frames(role: Role, pieces: &[&[u8]]) -> (Vec<DecodedFrame>, Option<String>) {
    decode_frames_with_rsv(role, pieces, 0)
}

/// [`decode_frames`] with the RSV bits `rsv` allowed (RSV1 for permessage-deflate).
pub fn decode_frames_with_rsv(
    role: Role,
    pieces: &[&[u8]],
    rsv: u8,
) -> (Vec<DecodedFrame>, Option<String>) {
    let mut decoder = FrameDecoder::new(role, 1 << 20);
    decoder.allow_rsv(rsv);
    let mut frames: Vec<DecodedFrame> = Vec::new();
    let mut masks = Vec::new();
    for piece in pieces {
        let mut piece = *piece;
        loop {
            match decoder.decode(piece) {
                Err(e) => return (frames, Some(e.to_string())),
                Ok((used, part)) => {
                    piece = &piece[used..];
                    match part {
                        None => break,
                        Some(FramePart::Header(h)) => {
                            frames.push((h.opcode, h.fin, h.rsv, Vec::new()));
                            masks.push(h.mask);
                        }
                        Some(FramePart::Payload { data, offset, .. }) => {
                            let payload = &mut frames.last_mut().unwrap().3;
                            let start = payload.len();
                            payload.extend_from_slice(data);
                            if let Some(key) = masks.last().copied().flatten() {
                                apply_mask(&mut payload[start..], key, offset);
                            }
                        }
                    }
                }
            }
        }
    }
    (frames, None)
}

/// Asserts that `output`, written by an endpoint of role `sender`, is valid RFC 6455: it
/// decodes cleanly for the other role, control frames are well formed, and every Close
/// carries a code that may be sent.
pub fn assert_valid_output(sender: Role, output: &[u8]) {
    assert_valid_output_with(sender, output, None)
}

/// [`assert_valid_output`] for an endpoint that may compress (permessage-deflate with
/// `deflate`): RSV1 appears only on the first frame of a data message, and a peer with
/// the same parameters accepts every message (they inflate, text is UTF-8).
pub fn assert_valid_output_with(
    sender: Role,
    output: &[u8],
    deflate: Option<&ws6455_core::DeflateParams>,
) {
    let receiver = match sender {
        Role::Client => Role::Server,
        Role::Server => Role::Client,
    };
    let rsv = if deflate.is_some() { 0b100 } else { 0 };
    let (frames, error) = decode_frames_with_rsv(receiver, &[output], rsv);
    assert!(error.is_none(), "invalid frame emitted: {error:?}");
    let mut first_of_message = true;
    for (opcode, fin, rsv, payload) in &frames {
        if opcode.is_control() || !first_of_message {
            assert_eq!(*rsv, 0, "RSV1 on a control or continuation frame");
        }
        if !opcode.is_control() {
            first_of_message = *fin;
        }
        if *opcode == OpCode::Close && !payload.is_empty() {
            assert!(payload.len() >= 2, "1-byte close payload emitted");
            let code = CloseCode(u16::from_be_bytes([payload[0], payload[1]]));
            assert!(
                code.is_valid_on_wire(),
                "unsendable close code {code} emitted"
            );
            assert!(
                std::str::from_utf8(&payload[2..]).is_ok(),
                "non-UTF-8 close reason"
            );
        }
    }
    let closes = frames.iter().filter(|f| f.0 == OpCode::Close).count();
    assert!(closes <= 1, "more than one close frame emitted");
    if closes == 1 {
        assert_eq!(
            frames.last().unwrap().0,
            OpCode::Close,
            "frame sent after close"
        );
    }
    if let Some(params) = deflate {
        // The peer decodes everything we sent without a protocol error.
        let mut peer = match receiver {
            Role::Server => ws6455_core::Connection::server(ws6455_core::Config {
                max_message_size: u64::MAX,
                max_frame_size: u64::MAX,
                ..ws6455_core::Config::default()
            }),
            Role::Client => ws6455_core::Connection::client(
                ws6455_core::Config {
                    max_message_size: u64::MAX,
                    max_frame_size: u64::MAX,
                    ..ws6455_core::Config::default()
                },
                Box::new(ws6455_core::FixedRandom::new(&[1])),
            ),
        };
        peer.enable_deflate(params, &ws6455_core::DeflateConfig::default());
        let mut rest = output;
        let now = std::time::Instant::now();
        while peer
            .receive(now, &mut rest)
            .expect("the peer accepts our output")
            .is_some()
        {}
    }
}
