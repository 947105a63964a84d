//! Payload masking (RFC 6455 section 5.3).
//!
//! Masking is an XOR with a 4-byte key repeated over the payload. Both entry points take an
//! `offset`: the number of payload bytes already processed before this slice, so a payload
//! split across reads is masked exactly as if it had arrived whole.
//!
//! The fast paths work on 8-byte words built with `from_ne_bytes` (and `extend_unmasked`
//! on 32-byte blocks first), which the compiler turns into vector instructions; both are
//! checked against [`apply_mask_bytewise`] at every alignment and length by the tests below
//! and by proptest.

use std::mem::MaybeUninit;

/// The masking key rotated so that index 0 applies to the byte at `offset`.
#[inline]
fn rotated_key(key: [u8; 4], offset: u64) -> [u8; 4] {
    // Rotating the bytes left by n is rotating their little-endian word right by 8n bits
    // (one instruction; the slice rotation was a call).
    let shift = 8 * (offset % 4) as u32;
    u32::from_le_bytes(key).rotate_right(shift).to_le_bytes()
}

#[inline]
fn word_key(key: [u8; 4]) -> u64 {
    u64::from_ne_bytes([
        key[0], key[1], key[2], key[3], key[0], key[1], key[2], key[3],
    ])
}

/// XORs `buf` in place with `key`, `buf[0]` being payload byte number `offset`.
pub fn apply_mask(buf: &mut [u8], key: [u8; 4], offset: u64) {
    let key = rotated_key(key, offset);
    let wide = word_key(key);
    let mut chunks = buf.chunks_exact_mut(8);
    for chunk in &mut chunks {
        let word = u64::from_ne_bytes([
            chunk[0], chunk[1], chunk[2], chunk[3], chunk[4], chunk[5], chunk[6], chunk[7],
        ]) ^ wide;
        chunk.copy_from_slice(&word.to_ne_bytes());
    }
    // The chunks were multiples of 4 bytes long, so the tail starts at key index 0.
    for (byte, k) in chunks.into_remainder().iter_mut().zip(key.iter().cycle()) {
        *byte ^= k;
    }
}

/// Appends `src` XOR `key` to `dst` in one pass (copy and unmask fused), `src[0]` being
/// payload byte number `offset`. Returns true when every appended byte is ASCII, which lets
/// a text message skip UTF-8 validation of that stretch.
///
/// A zero key copies unchanged, for unmasked frames.
// One of the crate's two kinds of `unsafe` (the other, connection/message.rs and its two
// callers, makes validated text a `String` without a second check): writing straight into the vector's
// spare capacity instead of zero-filling it first (or copying, then masking in a second
// pass) lifts decoding of 64 KiB frames from ~0.4x to ~0.9x memcpy
// (benches/benches/framing.rs, group "decode").
#[allow(unsafe_code)]
pub fn extend_unmasked(dst: &mut Vec<u8>, src: &[u8], key: [u8; 4], offset: u64) -> bool {
    let key = rotated_key(key, offset);
    dst.reserve(src.len());
    let spare = &mut dst.spare_capacity_mut()[..src.len()];
    // 32-byte blocks first, as fixed-size arrays, so that the compiler turns each into a
    // few vector instructions (the 8-byte words alone cost 16 instructions per word); the
    // blocks are multiples of 4 bytes, so the key's phase carries on unchanged.
    const BLOCK: usize = 32;
    let key_block: [u8; BLOCK] = std::array::from_fn(|i| key[i % 4]);
    let mut seen_block = [0u8; BLOCK];
    let mut dst_blocks = spare.chunks_exact_mut(BLOCK);
    let mut src_blocks = src.chunks_exact(BLOCK);
    for (d, s) in (&mut dst_blocks).zip(&mut src_blocks) {
        let (Ok(d), Ok(s)) = (
            <&mut [MaybeUninit<u8>; BLOCK]>::try_from(d),
            <&[u8; BLOCK]>::try_from(s),
        ) else {
            unreachable!("exact chunks of BLOCK bytes");
        };
        for i in 0..BLOCK {
            let byte = s[i] ^ key_block[i];
            seen_block[i] |= byte;
            d[i].write(byte);
        }
    }
    let block_seen = seen_block.iter().fold(0, |all, &b| all | b);
    let wide = word_key(key);
    let mut seen = 0u64;
    let mut dst_chunks = dst_blocks.into_remainder().chunks_exact_mut(8);
    let mut src_chunks = src_blocks.remainder().chunks_exact(8);
    for (d, s) in (&mut dst_chunks).zip(&mut src_chunks) {
        let word = u64::from_ne_bytes([s[0], s[1], s[2], s[3], s[4], s[5], s[6], s[7]]) ^ wide;
        seen |= word;
        for (slot, byte) in d.iter_mut().zip(word.to_ne_bytes()) {
            slot.write(byte);
        }
    }
    let mut tail_seen = 0u8;
    let tail = dst_chunks.into_remainder().iter_mut();
    for ((slot, s), k) in tail.zip(src_chunks.remainder()).zip(key.iter().cycle()) {
        let byte = s ^ k;
        tail_seen |= byte;
        slot.write(byte);
    }
    // SAFETY: `spare` is the first `src.len()` slots of the spare capacity (reserved above,
    // so `dst.len() + src.len() <= dst.capacity()`), and the three loops wrote every one
    // of them: the block loop covers `32 * (src.len() / 32)` slots, the word loop the next
    // `8 * (src.len() % 32 / 8)` and the tail loop the remaining `src.len() % 8`, each
    // zipped with the part of `src` of the same length.
    unsafe { dst.set_len(dst.len() + src.len()) };
    block_seen < 0x80 && seen & 0x8080_8080_8080_8080 == 0 && tail_seen < 0x80
}

/// The reference implementation: one byte at a time, exactly as RFC 6455 section 5.3 states
/// it. Kept public so that tests, fuzz targets and benchmarks can compare against it.
pub fn apply_mask_bytewise(buf: &mut [u8], key: [u8; 4], offset: u64) {
    for (i, byte) in buf.iter_mut().enumerate() {
        *byte ^= key[((offset + i as u64) % 4) as usize];
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    #[test]
    fn fast_path_matches_bytewise_at_every_alignment_and_length() {
        let key = [0x37, 0xfa, 0x21, 0x3d];
        let backing: Vec<u8> = (0..300u32).map(|i| (i * 7 + 3) as u8).collect();
        for start in 0..16 {
            for len in 0..(backing.len() - start).min(140) {
                for offset in 0..5u64 {
                    let mut fast = backing[start..start + len].to_vec();
                    let mut slow = fast.clone();
                    apply_mask(&mut fast, key, offset);
                    apply_mask_bytewise(&mut slow, key, offset);
                    assert_eq!(fast, slow, "start {start} len {len} offset {offset}");

                    let mut appended = vec![0xee; 3];
                    let src = &backing[start..start + len];
                    let ascii = extend_unmasked(&mut appended, src, key, offset);
                    assert_eq!(&appended[..3], [0xee; 3]);
                    assert_eq!(
                        &appended[3..],
                        slow,
                        "extend_unmasked start {start} len {len}"
                    );
                    assert_eq!(ascii, slow.is_ascii());
                }
            }
        }
    }

    #[test]
    fn masking_twice_is_identity() {
        let mut data = b"Hello".to_vec();
        apply_mask(&mut data, [1, 2, 3, 4], 0);
        assert_ne!(&data, b"Hello");
        apply_mask(&mut data, [1, 2, 3, 4], 0);
        assert_eq!(&data, b"Hello");
    }

    proptest! {
        #[test]
        fn split_masking_equals_whole(data in proptest::collection::vec(any::<u8>(), 0..600),
                                      key in any::<[u8; 4]>(), split in 0usize..600) {
            let split = split.min(data.len());
            let mut whole = data.clone();
            apply_mask_bytewise(&mut whole, key, 0);
            let mut parts = data.clone();
            let (a, b) = parts.split_at_mut(split);
            apply_mask(a, key, 0);
            apply_mask(b, key, split as u64);
            prop_assert_eq!(&parts, &whole);
            let mut appended = Vec::new();
            extend_unmasked(&mut appended, &data[..split], key, 0);
            extend_unmasked(&mut appended, &data[split..], key, split as u64);
            prop_assert_eq!(&appended, &whole);
        }
    }
}
