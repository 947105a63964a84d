//! A received data message: the one type that carries the receive path's UTF-8 verdict to
//! the application, so that no layer above validates the same text again.

/// The kind of a data message.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum MessageKind {
    /// UTF-8 text (validated before the message is reported).
    Text,
    /// Arbitrary bytes.
    Binary,
}

/// A whole data message, all fragments joined, unmasked and inflated.
///
/// Only the receive path makes a [`Message::Text`] from received bytes, after it validated
/// them (RFC 6455 section 8.1); drivers and applications take the `String` as it is.
/// The buffer may be a reused one with more capacity than the message (at most four times
/// its length, or 64 KiB): call `shrink_to_fit` before keeping many of them, or hand it
/// back with [`Connection::recycle`](crate::Connection::recycle) ([`into_bytes`](Self::into_bytes)
/// costs nothing).
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Message {
    /// A text message (opcode 0x1).
    Text(String),
    /// A binary message (opcode 0x2).
    Binary(Vec<u8>),
}

impl Message {
    /// Wraps a payload the receive path has finished with.
    ///
    /// # Safety
    /// For [`MessageKind::Text`], `data` must be valid UTF-8.
    #[allow(unsafe_code)]
    #[inline]
    pub(super) unsafe fn validated(kind: MessageKind, data: Vec<u8>) -> Message {
        match kind {
            // SAFETY: the caller guarantees that text is valid UTF-8 (this function's
            // contract); binary data is not interpreted.
            MessageKind::Text => Message::Text(unsafe { String::from_utf8_unchecked(data) }),
            MessageKind::Binary => Message::Binary(data),
        }
    }

    /// Text or binary.
    pub fn kind(&self) -> MessageKind {
        match self {
            Message::Text(_) => MessageKind::Text,
            Message::Binary(_) => MessageKind::Binary,
        }
    }

    /// The payload's bytes.
    pub fn as_bytes(&self) -> &[u8] {
        match self {
            Message::Text(text) => text.as_bytes(),
            Message::Binary(data) => data,
        }
    }

    /// The payload's buffer, without a copy.
    pub fn into_bytes(self) -> Vec<u8> {
        match self {
            Message::Text(text) => text.into_bytes(),
            Message::Binary(data) => data,
        }
    }

    /// The payload's length in bytes.
    pub fn len(&self) -> usize {
        self.as_bytes().len()
    }

    /// True for an empty payload.
    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }
}
