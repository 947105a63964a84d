//! Incremental UTF-8 validation for text messages split across frames and reads.
//!
//! The bulk of every chunk goes through `std::str::from_utf8` (fast on ASCII). A code point
//! cut off at the end of a chunk is held back (at most 3 bytes) and completed by the next
//! chunk. An invalid sequence is reported as soon as it is seen; only "valid so far but
//! incomplete" waits for more input, as RFC 6455 section 8.1 asks.

/// The chunk holds an invalid UTF-8 sequence (or the message ended inside a code point).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Utf8Error;

/// A streaming validator: feed chunks in order, then call [`Utf8Validator::finish`].
#[derive(Clone, Debug, Default)]
pub struct Utf8Validator {
    /// Bytes of a code point started in an earlier chunk and not yet complete.
    partial: [u8; 4],
    partial_len: u8,
}

/// The length of the UTF-8 sequence introduced by `lead`, or 0 if `lead` cannot start one.
fn sequence_len(lead: u8) -> usize {
    match lead {
        0x00..=0x7f => 1,
        0xc2..=0xdf => 2,
        0xe0..=0xef => 3,
        0xf0..=0xf4 => 4,
        _ => 0,
    }
}

impl Utf8Validator {
    /// A validator at the start of a message.
    pub fn new() -> Self {
        Self::default()
    }

    /// Validates the next chunk of the message.
    pub fn feed(&mut self, mut chunk: &[u8]) -> Result<(), Utf8Error> {
        if self.partial_len > 0 {
            let have = self.partial_len as usize;
            let need = sequence_len(self.partial[0]);
            let take = (need - have).min(chunk.len());
            self.partial[have..have + take].copy_from_slice(&chunk[..take]);
            chunk = &chunk[take..];
            let filled = have + take;
            match std::str::from_utf8(&self.partial[..filled]) {
                Ok(_) => self.partial_len = 0,
                Err(e) if e.error_len().is_none() => {
                    // Still a valid prefix; the chunk was too short to complete it.
                    self.partial_len = filled as u8;
                    return Ok(());
                }
                Err(_) => return Err(Utf8Error),
            }
        }
        match std::str::from_utf8(chunk) {
            Ok(_) => Ok(()),
            Err(e) => match e.error_len() {
                Some(_) => Err(Utf8Error),
                None => {
                    let tail = &chunk[e.valid_up_to()..];
                    self.partial[..tail.len()].copy_from_slice(tail);
                    self.partial_len = tail.len() as u8;
                    Ok(())
                }
            },
        }
    }

    /// True when no code point is cut off: the next byte must start a new one.
    pub fn at_boundary(&self) -> bool {
        self.partial_len == 0
    }

    /// Ends the message: an incomplete code point at the end is an error. Resets the
    /// validator for the next message.
    pub fn finish(&mut self) -> Result<(), Utf8Error> {
        let incomplete = self.partial_len != 0;
        self.partial_len = 0;
        if incomplete {
            Err(Utf8Error)
        } else {
            Ok(())
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    fn validate_in_chunks(data: &[u8], chunk: usize) -> Result<(), Utf8Error> {
        let mut v = Utf8Validator::new();
        for part in data.chunks(chunk.max(1)) {
            v.feed(part)?;
        }
        v.finish()
    }

    #[test]
    fn accepts_multibyte_split_everywhere() {
        let text = "κόσμε ✓ 𝄞 end".as_bytes();
        for chunk in 1..text.len() + 1 {
            assert_eq!(validate_in_chunks(text, chunk), Ok(()), "chunk {chunk}");
        }
    }

    #[test]
    fn fails_at_first_invalid_byte_not_at_end() {
        let mut v = Utf8Validator::new();
        // 0xce 0xba is "κ"; 0xff can never appear.
        assert_eq!(v.feed(&[0xce, 0xba]), Ok(()));
        assert_eq!(v.feed(&[0xff]), Err(Utf8Error));
        // A surrogate (U+D800) is rejected as soon as its second byte is seen.
        let mut v = Utf8Validator::new();
        assert_eq!(v.feed(&[0xed]), Ok(()));
        assert_eq!(v.feed(&[0xa0]), Err(Utf8Error));
        // Beyond U+10FFFF: rejected at the second byte.
        let mut v = Utf8Validator::new();
        assert_eq!(v.feed(&[0xf4, 0x90]), Err(Utf8Error));
    }

    #[test]
    fn incomplete_code_point_at_message_end_is_invalid() {
        let mut v = Utf8Validator::new();
        assert_eq!(v.feed(&[0xe2, 0x9c]), Ok(()));
        assert_eq!(v.finish(), Err(Utf8Error));
        // And the validator is reusable afterwards.
        assert_eq!(v.feed(b"ok"), Ok(()));
        assert_eq!(v.finish(), Ok(()));
    }

    proptest! {
        #[test]
        fn chunked_validation_agrees_with_std(data in proptest::collection::vec(any::<u8>(), 0..64),
                                               chunk in 1usize..8) {
            let expected = std::str::from_utf8(&data).is_ok();
            prop_assert_eq!(validate_in_chunks(&data, chunk).is_ok(), expected);
        }

        #[test]
        fn valid_strings_pass_in_any_chunking(s in "\\PC{0,40}", chunk in 1usize..7) {
            prop_assert_eq!(validate_in_chunks(s.as_bytes(), chunk), Ok(()));
        }
    }
}
