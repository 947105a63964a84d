//! ws6455-client: the client `WebSocket` of the ws6455 engine.
//!
//! ```no_run
//! use ws6455_client::*;
//!
//! struct Print;
//! impl ClientHandler for Print {
//!     fn on_message(&self, _: &WebSocket, event: MessageEvent) {
//!         println!("{:?}", event.data);
//!     }
//! }
//!
//! let ws = WebSocket::new("ws://127.0.0.1:8080/ws", Print).expect("connected");
//! ws.send("hello").unwrap();
//! ws.terminate(None, None).unwrap();
//! let end = ws.wait(None).unwrap();
//! println!("closed with {} (clean: {})", end.code, end.was_clean);
//! ```
//!
//! [`WebSocket::new`] resolves, connects and runs the opening handshake on the calling
//! thread, then hands the connection to an event loop thread (one shared by every client
//! of the process unless [`ClientOptions::event_loop`] names another), where the
//! [`ClientHandler`] callbacks run. `send` and `terminate` work from callbacks and from
//! any thread. `wss://` runs TLS (rustls) and verifies the server's certificate against
//! Mozilla's roots, plus any CA given in [`ClientOptions::tls`].

#![forbid(unsafe_code)]

mod connect;
mod error;
mod websocket;

pub use error::ConnectError;
pub use websocket::{ClientHandler, ClientLoop, ClientOptions, WebSocket};
pub use ws6455_api::{Data, DataType, Error, ErrorEvent, MessageEvent, TerminateEvent};
pub use ws6455_core::handshake::Headers;
pub use ws6455_core::url::{UrlError, WsUrl};
/// The protocol part of [`LoopConfig::protocol`]: sizes, timeouts, keepalive, deflate.
pub use ws6455_core::Config as ProtocolConfig;
pub use ws6455_core::DeflateConfig;
/// TLS configuration helpers ([`ClientOptions::tls`]) and the rustls they build for.
pub use ws6455_mio::{rustls, tls};
pub use ws6455_mio::{Backpressure, LoopConfig, SendError, Status};
