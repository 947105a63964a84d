//! Payload masking (RFC 6455 section 5.3).
//!
//! Masking is an XOR with a 4-byte key repeated over the payload. Both entry points take an
//! `offset`: the number of payload bytes already processed before this slice, so a payload
//! split across reads is masked exactly as if it had arrived whole.
//!
//! The fast path works on 8-byte words built with `from_ne_bytes`, which the compiler turns
//! into vector instructions; it is safe code and is checked against [`apply_mask_bytewise`]
//! at every alignment and length by the tests below and by proptest.

/// The masking key rotated so that index 0 applies to the byte at `offset`.
#[inline]
fn rotated_key(key: [u8; 4], offset: u64) -> [u8; 4] {
    let mut k = key;
    k.rotate_left((offset % 4) as usize);
    k
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

/// Writes `src` XOR `key` into `dst` in one pass (copy and unmask fused), `src[0]` being
/// payload byte number `offset`.
///
/// # Panics
/// If `dst` and `src` differ in length (a caller bug, never input-dependent).
pub fn copy_masked(dst: &mut [u8], src: &[u8], key: [u8; 4], offset: u64) {
    assert_eq!(dst.len(), src.len(), "copy_masked: slices differ in length");
    let key = rotated_key(key, offset);
    let wide = word_key(key);
    let mut dst_chunks = dst.chunks_exact_mut(8);
    let mut src_chunks = src.chunks_exact(8);
    for (d, s) in (&mut dst_chunks).zip(&mut src_chunks) {
        let word = u64::from_ne_bytes([s[0], s[1], s[2], s[3], s[4], s[5], s[6], s[7]]) ^ wide;
        d.copy_from_slice(&word.to_ne_bytes());
    }
    let tail = dst_chunks.into_remainder().iter_mut();
    for ((d, s), k) in tail.zip(src_chunks.remainder()).zip(key.iter().cycle()) {
        *d = s ^ k;
    }
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

                    let mut copied = vec![0u8; len];
                    copy_masked(&mut copied, &backing[start..start + len], key, offset);
                    assert_eq!(copied, slow, "copy_masked start {start} len {len}");
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
            let mut copied = vec![0u8; data.len()];
            copy_masked(&mut copied[..split], &data[..split], key, 0);
            copy_masked(&mut copied[split..], &data[split..], key, split as u64);
            prop_assert_eq!(&copied, &whole);
        }
    }
}
