//! Typed errors, one enum per concern, and the one place that maps protocol errors to close
//! codes ([`ProtocolError::close_code`]).

use std::fmt;

use crate::close::CloseCode;
use crate::connection::ConnectionState;

/// A violation of RFC 6455 (or of a configured limit) by the peer, found while decoding its
/// frames. Each variant fails the connection with exactly one close code.
#[derive(Clone, Debug, PartialEq, Eq)]
#[non_exhaustive]
pub enum ProtocolError {
    /// RSV bits set that no negotiated extension defines.
    ReservedBits(u8),
    /// An opcode reserved by RFC 6455 (3-7, 0xB-0xF).
    ReservedOpcode(u8),
    /// A client sent an unmasked frame (section 5.1).
    UnmaskedFrame,
    /// A server sent a masked frame (section 5.1).
    MaskedFrame,
    /// A 64-bit payload length with its most significant bit set (section 5.2).
    InvalidLength,
    /// A control frame with a payload longer than 125 bytes.
    ControlFrameTooLong(u64),
    /// A control frame without the FIN bit.
    FragmentedControlFrame,
    /// A continuation frame with no fragmented message to continue.
    UnexpectedContinuation,
    /// A new text or binary frame while a fragmented message is still open.
    ExpectedContinuation,
    /// A Close frame with a 1-byte payload.
    ClosePayloadTooShort,
    /// A Close frame with a code that may not be sent on the wire.
    InvalidCloseCode(u16),
    /// A Close frame whose reason is not valid UTF-8.
    InvalidCloseReason,
    /// A text message that is not valid UTF-8 (detected at the first invalid byte).
    InvalidUtf8,
    /// A frame longer than the configured maximum frame size.
    FrameTooLarge {
        /// The payload length the frame announced.
        size: u64,
        /// The configured limit.
        max: u64,
    },
    /// RSV1 (compression) on a frame where permessage-deflate does not allow it: a control
    /// frame, a continuation frame, or any frame when it was not negotiated.
    MisplacedCompressionBit,
    /// A compressed message whose data is not valid DEFLATE.
    InvalidCompressedData,
    /// A message longer than the configured maximum message size (after inflation, for a
    /// compressed message).
    MessageTooLarge {
        /// The message size reached (or announced) so far.
        size: u64,
        /// The configured limit.
        max: u64,
    },
}

impl ProtocolError {
    /// The close code this error is reported to the peer with. This is the only place where
    /// errors are mapped to close codes.
    pub fn close_code(&self) -> CloseCode {
        match self {
            ProtocolError::InvalidUtf8 | ProtocolError::InvalidCompressedData => {
                CloseCode::INVALID_PAYLOAD
            }
            ProtocolError::FrameTooLarge { .. } | ProtocolError::MessageTooLarge { .. } => {
                CloseCode::TOO_BIG
            }
            // Invalid reason text is a malformed Close frame, not message data: 1002
            // (RFC 6455 section 7.1.6 treats the close payload as protocol data).
            ProtocolError::ReservedBits(_)
            | ProtocolError::ReservedOpcode(_)
            | ProtocolError::UnmaskedFrame
            | ProtocolError::MaskedFrame
            | ProtocolError::InvalidLength
            | ProtocolError::ControlFrameTooLong(_)
            | ProtocolError::FragmentedControlFrame
            | ProtocolError::UnexpectedContinuation
            | ProtocolError::ExpectedContinuation
            | ProtocolError::ClosePayloadTooShort
            | ProtocolError::InvalidCloseCode(_)
            | ProtocolError::InvalidCloseReason
            | ProtocolError::MisplacedCompressionBit => CloseCode::PROTOCOL_ERROR,
        }
    }
}

impl fmt::Display for ProtocolError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            ProtocolError::ReservedBits(bits) => {
                write!(
                    f,
                    "reserved bits {bits:#05b} set without a negotiated extension"
                )
            }
            ProtocolError::ReservedOpcode(op) => write!(f, "reserved opcode {op:#x}"),
            ProtocolError::UnmaskedFrame => f.write_str("client frame is not masked"),
            ProtocolError::MaskedFrame => f.write_str("server frame is masked"),
            ProtocolError::InvalidLength => {
                f.write_str("64-bit payload length has its most significant bit set")
            }
            ProtocolError::ControlFrameTooLong(len) => {
                write!(f, "control frame payload of {len} bytes exceeds 125")
            }
            ProtocolError::FragmentedControlFrame => f.write_str("control frame is fragmented"),
            ProtocolError::UnexpectedContinuation => {
                f.write_str("continuation frame without a message to continue")
            }
            ProtocolError::ExpectedContinuation => {
                f.write_str("new data frame inside a fragmented message")
            }
            ProtocolError::ClosePayloadTooShort => f.write_str("close frame with 1-byte payload"),
            ProtocolError::InvalidCloseCode(code) => write!(f, "invalid close code {code}"),
            ProtocolError::InvalidCloseReason => f.write_str("close reason is not valid UTF-8"),
            ProtocolError::InvalidUtf8 => f.write_str("text message is not valid UTF-8"),
            ProtocolError::MisplacedCompressionBit => {
                f.write_str("RSV1 set on a frame that cannot be compressed")
            }
            ProtocolError::InvalidCompressedData => {
                f.write_str("compressed message is not valid DEFLATE data")
            }
            ProtocolError::FrameTooLarge { size, max } => {
                write!(f, "frame of {size} bytes exceeds the limit of {max}")
            }
            ProtocolError::MessageTooLarge { size, max } => {
                write!(f, "message of {size} bytes exceeds the limit of {max}")
            }
        }
    }
}

impl std::error::Error for ProtocolError {}

/// Why a local command (send, ping, close) was refused. Nothing was queued.
#[derive(Clone, Debug, PartialEq, Eq)]
#[non_exhaustive]
pub enum SendError {
    /// The command is not allowed in the connection's current state.
    InvalidState {
        /// What was attempted ("a text message", "a close frame", ...).
        what: &'static str,
        /// The state the connection was in.
        state: ConnectionState,
    },
    /// An application may only close with 1000 or 3000-4999.
    InvalidCloseCode(u16),
    /// A close reason longer than 123 bytes.
    CloseReasonTooLong(usize),
    /// A ping or pong payload longer than 125 bytes.
    ControlPayloadTooLong(usize),
    /// A pre-encoded (unmasked) frame offered to a client connection, which must mask.
    MaskRequired,
}

impl fmt::Display for SendError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            SendError::InvalidState { what, state } => {
                write!(f, "{what} cannot be sent in state {state:?}")
            }
            SendError::InvalidCloseCode(code) => write!(
                f,
                "close code {code} may not be sent by an application (use 1000 or 3000-4999)"
            ),
            SendError::CloseReasonTooLong(len) => {
                write!(f, "close reason of {len} bytes exceeds 123 bytes")
            }
            SendError::ControlPayloadTooLong(len) => {
                write!(f, "control frame payload of {len} bytes exceeds 125 bytes")
            }
            SendError::MaskRequired => {
                f.write_str("a client must mask each frame: pre-encoded frames are for servers")
            }
        }
    }
}

impl std::error::Error for SendError {}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_protocol_error_maps_to_its_close_code() {
        let cases = [
            (ProtocolError::ReservedBits(4), 1002),
            (ProtocolError::ReservedOpcode(3), 1002),
            (ProtocolError::UnmaskedFrame, 1002),
            (ProtocolError::MaskedFrame, 1002),
            (ProtocolError::InvalidLength, 1002),
            (ProtocolError::ControlFrameTooLong(126), 1002),
            (ProtocolError::FragmentedControlFrame, 1002),
            (ProtocolError::UnexpectedContinuation, 1002),
            (ProtocolError::ExpectedContinuation, 1002),
            (ProtocolError::ClosePayloadTooShort, 1002),
            (ProtocolError::InvalidCloseCode(1005), 1002),
            (ProtocolError::InvalidCloseReason, 1002),
            (ProtocolError::InvalidUtf8, 1007),
            (ProtocolError::FrameTooLarge { size: 2, max: 1 }, 1009),
            (ProtocolError::MessageTooLarge { size: 2, max: 1 }, 1009),
        ];
        for (error, code) in cases {
            assert_eq!(error.close_code().0, code, "{error}");
            assert!(!error.to_string().is_empty());
        }
    }
}
