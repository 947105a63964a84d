//! ws6455-server: the `WebSocketServer` API on the ws6455 mio event loop.
//!
//! ```no_run
//! use std::sync::Arc;
//! use ws6455_server::*;
//!
//! struct Echo;
//! impl ConnectionHandler for Echo {
//!     fn on_message(&self, ws: &WebSocketConnection, event: MessageEvent) {
//!         let _ = ws.send(event.data);
//!     }
//! }
//!
//! struct Server;
//! impl ServerHandler for Server {
//!     fn on_connection(&self, _: &WebSocketServer, event: &ConnectionEvent) -> Option<Arc<dyn ConnectionHandler>> {
//!         // Refuse by returning None (HTTP 403); accept with a handler.
//!         event.request.remote_address().ip().is_loopback().then(|| Arc::new(Echo) as _)
//!     }
//! }
//!
//! let server = WebSocketServer::new(Server, ServerOptions::default()).unwrap();
//! println!("listening on ws://{}", server.local_addr());
//! server.wait(None);
//! ```
//!
//! Callbacks run on the loop threads; `send` and `terminate` work from callbacks and from
//! any other thread. See [`ConnectionHandler`] for the callback order guarantee.
//!
//! Topics: connections subscribe to named topics, and a publish reaches every subscriber
//! on every loop thread and, with a [`Backplane`] (Redis), on every node:
//!
//! ```no_run
//! use std::sync::Arc;
//! use ws6455_server::*;
//!
//! struct Member;
//! impl ConnectionHandler for Member {
//!     fn on_open(&self, ws: &WebSocketConnection) {
//!         ws.subscribe("room").unwrap();
//!     }
//!     fn on_message(&self, ws: &WebSocketConnection, event: MessageEvent) {
//!         // Everyone in the room but the sender, on every node.
//!         ws.publish("room", event.data);
//!     }
//! }
//!
//! struct App;
//! impl ServerHandler for App {
//!     fn on_connection(&self, _: &WebSocketServer, _: &ConnectionEvent) -> Option<Arc<dyn ConnectionHandler>> {
//!         Some(Arc::new(Member))
//!     }
//! }
//!
//! let mut options = ServerOptions::default();
//! options.topics.backplane = Some(Backplane::redis("redis://127.0.0.1:6379"));
//! let server = WebSocketServer::new(App, options).unwrap();
//! server.publish("room", "from the server, to everyone");
//! ```

#![forbid(unsafe_code)]

mod backplane;
mod connection;
mod glue;
mod server;
mod table;
mod topics;
mod types;
mod web;

pub use connection::{ConnectionHandler, WebSocketConnection};
pub use server::{ServerHandler, ServerOptions, WebSocketServer};
pub use topics::{Backplane, TopicError, TopicOptions, TopicStats, MAX_TOPIC_LEN};
pub use types::{ConnectionEvent, HttpResponse, Request};
pub use web::{HttpHandler, WebOptions, WebServer};
pub use ws6455_api::{Data, DataType, Error, ErrorEvent, MessageEvent, TerminateEvent};
pub use ws6455_core::handshake::{Headers, OriginPolicy};
/// The protocol part of [`LoopConfig::protocol`]: sizes, timeouts, keepalive, deflate.
pub use ws6455_core::Config as ProtocolConfig;
pub use ws6455_core::DeflateConfig;
/// TLS configuration helpers ([`ServerOptions::tls`]) and the rustls they build for.
pub use ws6455_mio::{rustls, tls};
pub use ws6455_mio::{Backpressure, LoopConfig, SendError, SlowSubscriber, Status};
