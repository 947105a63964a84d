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
//! | [`handshake`] | the opening handshake, server ([`handshake::ServerHandshake`]) and client ([`handshake::ClientHandshake`]) |
//! | [`frame`] | the frame header: opcodes, parse, encode |
//! | [`decoder`] | incremental frame decoding with the per-frame rules |
//! | [`encoder`] | frame encoding into a caller-owned buffer |
//! | [`mask`] | payload masking, word at a time |
//! | [`utf8`] | incremental UTF-8 validation |
//! | [`close`] | close codes and who may send them |
//! | [`connection`] | [`Connection`]: messages, ping/pong, the closing handshake |
//! | [`deflate`] | permessage-deflate (RFC 7692): negotiation and the per-connection codec |
//! | [`error`] | typed errors and the one mapping from errors to close codes |
//!
//! A server reads the request with [`handshake::ServerHandshake`], validates it with
//! [`handshake::validate_upgrade`], writes [`handshake::accept_response`], then creates
//! [`Connection::server`] and feeds it [`handshake::ServerHandshake::leftover`] followed by
//! everything it reads. See [`Connection`] for the call order.

#![warn(missing_docs)]

pub mod close;
pub mod connection;
pub mod decoder;
pub mod deflate;
pub mod encoder;
pub mod error;
pub mod frame;
pub mod handshake;
pub mod mask;
mod output;
pub mod random;
pub mod utf8;

pub use close::{CloseCode, CloseFrame};
pub use connection::{CloseStatus, Config, Connection, ConnectionState, Event, MessageKind};
pub use deflate::{DeflateConfig, DeflateParams};
pub use error::{ProtocolError, SendError};
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
