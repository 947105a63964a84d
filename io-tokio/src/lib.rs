//! ws6455-tokio: WebSocket on tokio, over any `AsyncRead + AsyncWrite`, driven by
//! [`ws6455_core`] and nothing else (no code is shared with the mio driver: the core owns
//! the handshakes, the protocol, the close rules and the timers; this crate moves bytes,
//! reads the clock and sets one `tokio::time::Sleep` at the core's deadline).
//!
//! ```no_run
//! use futures_util::{SinkExt, StreamExt};
//! use ws6455_tokio::{accept, Message, Options};
//!
//! # async fn run() -> Result<(), Box<dyn std::error::Error>> {
//! let listener = tokio::net::TcpListener::bind("127.0.0.1:9001").await?;
//! let (tcp, _) = listener.accept().await?;
//! let mut ws = accept(tcp, &Options::default()).await?;
//! while let Some(message) = ws.next().await {
//!     match message? {
//!         message @ (Message::Text(_) | Message::Binary(_)) => ws.send(message).await?,
//!         _ => {}
//!     }
//! }
//! # Ok(()) }
//! ```
//!
//! With hyper 1 (feature `hyper`, on by default), [`upgrade::upgrade`] turns a request of
//! a hyper service into a stream: one port serves HTTP and WebSocket.

#![forbid(unsafe_code)]

mod handshake;
mod sender;
mod stream;
mod tls;
#[cfg(feature = "hyper")]
pub mod upgrade;

pub use handshake::{
    accept, accept_with, client, connect, AcceptError, ConnectError, Decision, Options,
};
pub use sender::{Sender, SenderError, QUEUE_CAPACITY};
pub use stream::{Error, Message, WebSocketStream};
pub use tls::MaybeTlsStream;
pub use ws6455_core::accept::Choices;
pub use ws6455_core::close::CloseFrame;
pub use ws6455_core::handshake::{ClientRequest, Request, Response};
pub use ws6455_core::{CloseCode, Config, DeflateConfig};
/// TLS configuration helpers and the rustls they build for.
pub use ws6455_tls as tls_config;
