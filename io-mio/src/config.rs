//! Limits and timeouts of the event loop. Every one has a safe default.

use std::time::Duration;

/// What happens to a send while a connection's buffered outgoing bytes are at or above
/// [`LoopConfig::max_buffered`].
#[derive(Clone, Copy, Debug, PartialEq, Eq, Default)]
pub enum Backpressure {
    /// The send is refused with [`crate::SendError::BufferFull`]; the connection goes on.
    #[default]
    Refuse,
    /// The send is refused and the connection is closed with 1008 (policy violation).
    Close,
}

/// Configuration of an event loop and of every connection it drives.
#[derive(Clone, Debug)]
pub struct LoopConfig {
    /// Protocol limits of each connection (frame and message size, auto-pong).
    pub protocol: ws6455_core::Config,
    /// The largest handshake request accepted (default 16 KiB); larger gets 431.
    pub max_request_size: usize,
    /// Time allowed from accept to a complete handshake request (default 10 s): slowloris
    /// connections are cut off after it.
    pub handshake_timeout: Duration,
    /// Time allowed for the closing handshake and for writing an HTTP answer (default 5 s).
    pub close_timeout: Duration,
    /// Close connections with 1001 after this long without receiving anything (default off).
    pub idle_timeout: Option<Duration>,
    /// Send a Ping after this long without receiving anything (default off).
    pub ping_interval: Option<Duration>,
    /// With `ping_interval`: drop the connection (1006) when nothing arrives this long after
    /// the Ping (default 20 s).
    pub pong_timeout: Duration,
    /// Cap on a connection's buffered outgoing bytes (default 16 MiB). Once it is reached
    /// the loop stops reading from the connection (between two messages, so TCP flow
    /// control reaches the peer) until the buffer drains, and sends are refused. A send
    /// made below the cap is accepted whole: the buffer can pass the cap by one message.
    pub max_buffered: usize,
    /// What a send at or over the cap does.
    pub backpressure: Backpressure,
    /// permessage-deflate (RFC 7692): `None` (the default) neither offers nor accepts
    /// it. A server accepts the first client offer it can honour; a client offers it and
    /// uses it when the server agrees. Inflated messages count against
    /// `protocol.max_message_size` (1009 past it).
    pub deflate: Option<ws6455_core::DeflateConfig>,
}

impl Default for LoopConfig {
    fn default() -> Self {
        LoopConfig {
            protocol: ws6455_core::Config::default(),
            max_request_size: ws6455_core::handshake::DEFAULT_MAX_REQUEST_SIZE,
            handshake_timeout: Duration::from_secs(10),
            close_timeout: Duration::from_secs(5),
            idle_timeout: None,
            ping_interval: None,
            pong_timeout: Duration::from_secs(20),
            max_buffered: 16 << 20,
            backpressure: Backpressure::Refuse,
            deflate: None,
        }
    }
}
