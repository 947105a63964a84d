//! ws6455-core: the RFC 6455 WebSocket protocol as sans-IO state machines.
//!
//! This crate is deterministic: it owns no socket, starts no thread, reads no clock and
//! holds no global state. Bytes go in, events and bytes come out; randomness (masking keys,
//! handshake nonces) comes from an injected [`RandomSource`]. Any I/O stack can drive it:
//! ws6455's mio event loop, tokio, io_uring, or an in-memory test harness.
//!
//! The layers, each usable alone:
//!
//! | module | does |
//! | --- | --- |
//! | [`accept`] | a server connection from its first byte: [`accept::Acceptor`] reads the request, the application accepts ([`Connection`] with the 101 queued) or answers over HTTP |
//! | [`connect`] | a client connection from its first byte: [`connect::Connector`] writes the request and turns the 101 into a [`Connection`] |
//! | [`handshake`] | the opening handshake's parts: request and response parsing, validation, answers |
//! | [`config`] | [`Config`]: limits, timeouts and extensions, one for both roles |
//! | [`frame`] | the frame header: opcodes, parse, encode |
//! | [`decoder`] | incremental frame decoding with the per-frame rules |
//! | [`encoder`] | frame encoding into a caller-owned buffer |
//! | [`mask`] | payload masking, word at a time |
//! | [`utf8`] | incremental UTF-8 validation |
//! | [`close`] | close codes and who may send them |
//! | [`connection`] | [`Connection`]: messages, ping/pong, the closing handshake, timers |
//! | [`url`] | `ws://` and `wss://` URLs, parsed strictly, for every client driver |
//! | [`deflate`] | permessage-deflate (RFC 7692): negotiation and the per-connection codec |
//! | [`error`] | typed errors and the one mapping from errors to close codes |
//!
//! A driver does four things, and only these: it moves bytes between the transport and
//! the core (`receive_data` / `receive` in, `pending_output` / `consume_output` out), asks
//! the clock and calls `handle_timeout` when `poll_timeout` says, closes the transport
//! when `should_close_transport` says, and hands events to the application. A server
//! connection starts as an [`accept::Acceptor`], a client one as a
//! [`connect::Connector`]; both become a [`Connection`]. `core/examples/` holds the
//! smallest drivers: a blocking `std::net` echo server and client.
//!
//! Time is an argument: every call that may start or run a timer takes `now`, and the
//! core never reads a clock.

#![warn(missing_docs)]

pub mod accept;
pub mod close;
pub mod config;
pub mod connect;
pub mod connection;
pub mod decoder;
pub mod deflate;
pub mod encoder;
pub mod error;
pub mod frame;
pub mod handshake;
pub mod mask;
mod output;
pub mod pool;
pub mod random;
pub mod url;
pub mod utf8;

pub use close::{CloseCode, CloseFrame};
pub use config::Config;
pub use connection::{
    CloseStatus, Connection, ConnectionState, Event, Expired, Message, MessageKind, LARGE_BUFFER,
};
pub use deflate::{DeflateConfig, DeflateParams};
pub use error::{ProtocolError, SendError};
pub use pool::BufferPool;
#[cfg(feature = "os-random")]
pub use random::OsRandom;
pub use random::{FixedRandom, RandomSource};

/// Which end of the connection an endpoint is. Clients mask their frames; servers must
/// receive masked frames and send unmasked ones (RFC 6455 section 5.1).
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum Role {
    /// The end that sent the opening handshake request.
    Client,
    /// The end that answered it.
    Server,
}
