//! Limits of the event loop beyond the protocol's. Every one has a safe default.

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
    /// Everything the protocol core decides: frame and message sizes, auto-pong, the
    /// handshake size, every timeout (handshake, close, idle, keepalive ping and pong
    /// deadline) and permessage-deflate. The loop only schedules the core's wake-ups.
    pub protocol: ws6455_core::Config,
    /// Cap on a connection's buffered outgoing bytes (default 16 MiB). Once it is reached
    /// the loop stops reading from the connection (between two messages, so TCP flow
    /// control reaches the peer) until the buffer drains, and sends are refused. A send
    /// made below the cap is accepted whole: the buffer can pass the cap by one message.
    pub max_buffered: usize,
    /// What a send at or over the cap does.
    pub backpressure: Backpressure,
    /// The most connections the loop holds, in any phase (default 100,000; a server with
    /// N threads has N loops). A connection beyond it is answered 503 Service
    /// Unavailable once its request is read, and reported through
    /// [`Handler::on_accept_problem`](crate::Handler::on_accept_problem).
    pub max_connections: usize,
}

impl Default for LoopConfig {
    fn default() -> Self {
        LoopConfig {
            protocol: ws6455_core::Config::default(),
            max_buffered: 16 << 20,
            backpressure: Backpressure::Refuse,
            max_connections: 100_000,
        }
    }
}
