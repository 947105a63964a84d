//! Benchmarks live in `benches/`; this library only holds the shared input builders.

use ws6455_core::encoder::encode_frame;
use ws6455_core::frame::OpCode;

/// `count` masked client frames of `size` payload bytes each (ASCII text when `text`),
/// as a server would receive them.
pub fn masked_frames(size: usize, count: usize, text: bool) -> Vec<u8> {
    let payload: Vec<u8> = (0..size).map(|i| b'a' + (i % 26) as u8).collect();
    let opcode = if text { OpCode::Text } else { OpCode::Binary };
    let mut out = Vec::with_capacity(count * (size + 14));
    for i in 0..count {
        let key = (i as u32).wrapping_mul(0x9e37_79b9).to_be_bytes();
        encode_frame(&mut out, true, opcode, &payload, Some(key));
    }
    out
}

/// How many frames of `size` payload bytes make one measured batch: about 64 KiB, so that
/// an iteration over small frames is long enough to time (throughput counts payload).
pub fn frames_per_batch(size: usize) -> usize {
    ((64 << 10) / size).max(1)
}
