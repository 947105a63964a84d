//! Close status codes (RFC 6455 section 7.4) and the rules for who may send which.

use std::fmt;

use crate::error::{ProtocolError, SendError};

/// A close status code as carried in a Close frame or reported to the application.
///
/// The named constants are the codes of the IANA registry. Whether a code may appear on
/// the wire depends on the direction: see [`CloseCode::is_valid_on_wire`] (what a peer may
/// send us) and [`CloseCode::is_application_code`] (what an application may ask us to send).
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct CloseCode(pub u16);

impl CloseCode {
    /// 1000: the purpose of the connection has been fulfilled.
    pub const NORMAL: CloseCode = CloseCode(1000);
    /// 1001: the endpoint is going away (server shutdown, page navigation).
    pub const GOING_AWAY: CloseCode = CloseCode(1001);
    /// 1002: the peer broke the protocol.
    pub const PROTOCOL_ERROR: CloseCode = CloseCode(1002);
    /// 1003: the endpoint received a type of data it cannot accept.
    pub const UNSUPPORTED_DATA: CloseCode = CloseCode(1003);
    /// 1005: reported locally when a Close frame carried no code. Never sent.
    pub const NO_STATUS: CloseCode = CloseCode(1005);
    /// 1006: reported locally when the connection ended without a close handshake. Never sent.
    pub const ABNORMAL: CloseCode = CloseCode(1006);
    /// 1007: a message's data was inconsistent with its type (invalid UTF-8 in text).
    pub const INVALID_PAYLOAD: CloseCode = CloseCode(1007);
    /// 1008: a message violated the endpoint's policy.
    pub const POLICY_VIOLATION: CloseCode = CloseCode(1008);
    /// 1009: a message or frame was too big to process.
    pub const TOO_BIG: CloseCode = CloseCode(1009);
    /// 1010: the client expected the server to negotiate an extension it did not.
    pub const MANDATORY_EXTENSION: CloseCode = CloseCode(1010);
    /// 1011: the server met an unexpected condition.
    pub const INTERNAL_ERROR: CloseCode = CloseCode(1011);
    /// 1012: the service is restarting.
    pub const SERVICE_RESTART: CloseCode = CloseCode(1012);
    /// 1013: try again later.
    pub const TRY_AGAIN_LATER: CloseCode = CloseCode(1013);
    /// 1014: a gateway received an invalid response.
    pub const BAD_GATEWAY: CloseCode = CloseCode(1014);
    /// 1015: reported locally when the TLS handshake failed. Never sent.
    pub const TLS_HANDSHAKE: CloseCode = CloseCode(1015);

    /// True for the codes a peer may put in a Close frame: 1000-1003, 1007-1014 and
    /// 3000-4999. Anything else received is a protocol error (1002).
    pub fn is_valid_on_wire(self) -> bool {
        matches!(self.0, 1000..=1003 | 1007..=1014 | 3000..=4999)
    }

    /// True for the codes an application may choose when it closes: 1000 and 3000-4999.
    /// The other standard codes are the engine's to send, each for its own reason.
    pub fn is_application_code(self) -> bool {
        matches!(self.0, 1000 | 3000..=4999)
    }
}

impl From<u16> for CloseCode {
    fn from(code: u16) -> Self {
        CloseCode(code)
    }
}

impl From<CloseCode> for u16 {
    fn from(code: CloseCode) -> Self {
        code.0
    }
}

impl fmt::Display for CloseCode {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}", self.0)
    }
}

/// The longest close reason that fits a control frame: 125 bytes minus the 2-byte code.
pub const MAX_CLOSE_REASON: usize = 123;

/// The content of a Close frame, or of the locally recorded end of a connection.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct CloseFrame {
    /// The status code (1005 when the frame carried none, 1006 for an abnormal end).
    pub code: CloseCode,
    /// The reason text; empty when none was given.
    pub reason: String,
}

/// Who asks for a Close frame: the rules differ (RFC 6455 section 7.4).
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum Closer {
    /// The application: 1000 or 3000-4999 only.
    Application,
    /// The engine or its driver: any code valid on the wire (1001 on shutdown, 1008 on a
    /// policy breach, 1011 after a handler failure...).
    Engine,
}

/// Checks a Close that `by` wants to send: the code must be one it may send, the reason
/// at most 123 bytes. The one place these rules live; drivers call it to refuse a close at
/// once, on the caller's thread, before anything is queued.
pub fn check_close(code: CloseCode, reason: &str, by: Closer) -> Result<(), SendError> {
    let allowed = match by {
        Closer::Application => code.is_application_code(),
        Closer::Engine => code.is_valid_on_wire(),
    };
    if !allowed {
        return Err(SendError::InvalidCloseCode(code.0));
    }
    if reason.len() > MAX_CLOSE_REASON {
        return Err(SendError::CloseReasonTooLong(reason.len()));
    }
    Ok(())
}

/// Parses and validates a received Close frame's payload (RFC 6455 sections 5.5.1 and
/// 7.4): empty (1005), or a code valid on the wire and a UTF-8 reason. Anything else is a
/// protocol error (1002).
pub fn parse_close_payload(payload: &[u8]) -> Result<CloseFrame, ProtocolError> {
    match payload {
        [] => Ok(CloseFrame {
            code: CloseCode::NO_STATUS,
            reason: String::new(),
        }),
        [_] => Err(ProtocolError::ClosePayloadTooShort),
        [hi, lo, reason @ ..] => {
            let code = CloseCode(u16::from_be_bytes([*hi, *lo]));
            if !code.is_valid_on_wire() {
                return Err(ProtocolError::InvalidCloseCode(code.0));
            }
            let reason = std::str::from_utf8(reason)
                .map_err(|_| ProtocolError::InvalidCloseReason)?
                .to_owned();
            Ok(CloseFrame { code, reason })
        }
    }
}

/// The longest prefix of `text` that fits a Close frame (123 bytes) and ends on a
/// character boundary: for reasons the engine writes itself (error descriptions).
pub fn truncate_reason(text: &str) -> &str {
    if text.len() <= MAX_CLOSE_REASON {
        return text;
    }
    let mut end = MAX_CLOSE_REASON;
    while !text.is_char_boundary(end) {
        end -= 1;
    }
    &text[..end]
}

/// Writes a Close payload into `buf` and returns its length: empty for 1005 ("no code"),
/// else the code and the reason cut to fit.
pub(crate) fn encode_close_payload(code: CloseCode, reason: &str, buf: &mut [u8; 125]) -> usize {
    if code == CloseCode::NO_STATUS {
        return 0;
    }
    let reason = truncate_reason(reason);
    buf[..2].copy_from_slice(&code.0.to_be_bytes());
    buf[2..2 + reason.len()].copy_from_slice(reason.as_bytes());
    2 + reason.len()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn wire_validity_follows_rfc_ranges() {
        let valid = [
            1000, 1001, 1002, 1003, 1007, 1010, 1011, 1014, 3000, 3999, 4000, 4999,
        ];
        let invalid = [
            0, 999, 1004, 1005, 1006, 1015, 1016, 1100, 2000, 2999, 5000, 65535,
        ];
        for code in valid {
            assert!(CloseCode(code).is_valid_on_wire(), "{code}");
        }
        for code in invalid {
            assert!(!CloseCode(code).is_valid_on_wire(), "{code}");
        }
    }

    #[test]
    fn close_checks_by_sender() {
        assert_eq!(
            check_close(CloseCode(4000), "ok", Closer::Application),
            Ok(())
        );
        assert_eq!(
            check_close(CloseCode(1001), "", Closer::Application),
            Err(SendError::InvalidCloseCode(1001))
        );
        assert_eq!(check_close(CloseCode(1001), "", Closer::Engine), Ok(()));
        assert_eq!(
            check_close(CloseCode(1005), "", Closer::Engine),
            Err(SendError::InvalidCloseCode(1005))
        );
        let long = "x".repeat(124);
        assert_eq!(
            check_close(CloseCode(1000), &long, Closer::Application),
            Err(SendError::CloseReasonTooLong(124))
        );
    }

    #[test]
    fn close_payloads_parse_by_the_rules() {
        assert_eq!(parse_close_payload(&[]).unwrap().code, CloseCode::NO_STATUS);
        assert_eq!(
            parse_close_payload(&[3]),
            Err(ProtocolError::ClosePayloadTooShort)
        );
        assert_eq!(
            parse_close_payload(&[0x03, 0xed]),
            Err(ProtocolError::InvalidCloseCode(1005))
        );
        assert_eq!(
            parse_close_payload(&[0x03, 0xe8, 0xff]),
            Err(ProtocolError::InvalidCloseReason)
        );
        let frame = parse_close_payload(&[0x0f, 0xa0, b'h', b'i']).unwrap();
        assert_eq!((frame.code, frame.reason.as_str()), (CloseCode(4000), "hi"));
    }

    #[test]
    fn reasons_are_cut_on_a_character_boundary() {
        let text = "é".repeat(100);
        let cut = truncate_reason(&text);
        assert!(cut.len() <= MAX_CLOSE_REASON && cut.len() >= MAX_CLOSE_REASON - 1);
        assert!(text.starts_with(cut));
        let mut buf = [0u8; 125];
        assert_eq!(encode_close_payload(CloseCode::NO_STATUS, "x", &mut buf), 0);
        assert_eq!(
            encode_close_payload(CloseCode(1000), &text, &mut buf),
            2 + cut.len()
        );
    }

    #[test]
    fn applications_may_send_only_1000_and_3000_to_4999() {
        assert!(CloseCode(1000).is_application_code());
        assert!(CloseCode(3000).is_application_code());
        assert!(CloseCode(4999).is_application_code());
        for code in [999, 1001, 1002, 1005, 1006, 1011, 2999, 5000] {
            assert!(!CloseCode(code).is_application_code(), "{code}");
        }
    }
}
