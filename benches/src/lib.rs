//! Benchmarks live in `benches/`; this library holds the shared input builders and the
//! process probes the load programs read.

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

/// The resident memory of process `pid` (VmRSS, Linux), in bytes.
pub fn rss_bytes(pid: u32) -> Option<u64> {
    let status = std::fs::read_to_string(format!("/proc/{pid}/status")).ok()?;
    let line = status.lines().find(|l| l.starts_with("VmRSS:"))?;
    Some(line.split_whitespace().nth(1)?.parse::<u64>().ok()? * 1024)
}

/// How many file descriptors process `pid` has open (Linux).
pub fn open_fds(pid: u32) -> Option<usize> {
    Some(std::fs::read_dir(format!("/proc/{pid}/fd")).ok()?.count())
}

/// Walks the whole unmasked frames (a server's) at the start of `buf`, calling `each`
/// with every payload, and returns how many bytes they took: the rest is a frame still
/// incomplete.
pub fn server_frames(buf: &[u8], mut each: impl FnMut(&[u8])) -> usize {
    let mut at = 0;
    loop {
        let rest = &buf[at..];
        if rest.len() < 2 {
            return at;
        }
        let (header, len) = match rest[1] & 0x7f {
            126 if rest.len() >= 4 => (4, u16::from_be_bytes([rest[2], rest[3]]) as usize),
            127 if rest.len() >= 10 => {
                let mut bytes = [0u8; 8];
                bytes.copy_from_slice(&rest[2..10]);
                (10, u64::from_be_bytes(bytes) as usize)
            }
            126 | 127 => return at,
            n => (2, n as usize),
        };
        if rest.len() < header + len {
            return at;
        }
        each(&rest[header..header + len]);
        at += header + len;
    }
}
