//! `WebSocketConnection`: a handle on one accepted connection, and its handler trait.

use std::fmt;
use std::net::{SocketAddr, SocketAddrV4, SocketAddrV6};
use std::sync::Arc;

use ws6455_api::{ConnHandle, Data, DataType, Endpoint, ErrorEvent, MessageEvent, TerminateEvent};
use ws6455_mio::{SendError, Status};

use crate::server::{ServerInner, WebSocketServer};
use crate::topics::{Subscriber, TopicError};

/// Callbacks for one connection. Only `on_message` is mandatory.
///
/// Order guarantee: `on_open` once, then `on_message` any number of times, then at most
/// one `on_error` (which stops the processing of the connection), then `on_terminate`
/// exactly once, last. Callbacks run on the connection's loop thread; a panic in one is
/// caught and fails this connection only (`on_error`, then close 1011).
pub trait ConnectionHandler: std::any::Any + Send + Sync {
    /// The connection is open (`type = "open"`), right after `on_connection` accepted it.
    fn on_open(&self, ws: &WebSocketConnection) {
        let _ = ws;
    }

    /// A whole message arrived (`type = "message"`).
    fn on_message(&self, ws: &WebSocketConnection, event: MessageEvent);

    /// The connection closed (`type = "terminate"`).
    fn on_terminate(&self, ws: &WebSocketConnection, event: TerminateEvent) {
        let _ = (ws, event);
    }

    /// An error occurred (`type = "error"`); the connection is being closed.
    fn on_error(&self, ws: &WebSocketConnection, event: ErrorEvent) {
        let _ = (ws, event);
    }
}

/// A peer's address in 16 bytes where a `SocketAddr` takes 32 (every connection keeps
/// one): an IPv6 address is boxed.
pub(crate) enum RemoteAddress {
    V4(SocketAddrV4),
    V6(Box<SocketAddrV6>),
}

impl RemoteAddress {
    pub(crate) fn get(&self) -> SocketAddr {
        match self {
            RemoteAddress::V4(v4) => SocketAddr::V4(*v4),
            RemoteAddress::V6(v6) => SocketAddr::V6(**v6),
        }
    }
}

impl From<SocketAddr> for RemoteAddress {
    fn from(address: SocketAddr) -> Self {
        match address {
            SocketAddr::V4(v4) => RemoteAddress::V4(v4),
            SocketAddr::V6(v6) => RemoteAddress::V6(Box::new(v6)),
        }
    }
}

pub(crate) struct ConnInner {
    pub(crate) conn: ConnHandle,
    pub(crate) handler: Arc<dyn ConnectionHandler>,
    pub(crate) server: Arc<ServerInner>,
    pub(crate) remote_address: RemoteAddress,
    /// Boxed `String`: a thin pointer, 8 bytes in every connection (most have none).
    #[allow(clippy::box_collection)] // the box is the point: a thin pointer
    pub(crate) subprotocol: Option<Box<String>>,
    /// The loop the connection lives on (its place in the topic registry).
    pub(crate) loop_index: u32,
    /// Its `on_open` ran (it was in `connections`).
    pub(crate) opened: std::sync::atomic::AtomicBool,
}

// One per connection: a budget (memory per idle connection), 96 bytes with its `Arc`
// counts and the allocator's header.
#[cfg(target_pointer_width = "64")]
const _: () = assert!(std::mem::size_of::<ConnInner>() <= 72);

impl Drop for ConnInner {
    fn drop(&mut self) {
        // Accepted by `on_connection` but never opened: the server stops waiting for it.
        if !*self.opened.get_mut() {
            self.server.connection_abandoned();
        }
    }
}

/// A clonable, thread-safe handle on an accepted connection (`ws` in the callbacks).
#[derive(Clone)]
pub struct WebSocketConnection {
    pub(crate) inner: Arc<ConnInner>,
}

impl fmt::Debug for WebSocketConnection {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("WebSocketConnection")
            .field("id", &self.id())
            .field("status", &self.status())
            .field("remote_address", &self.inner.remote_address.get())
            .finish()
    }
}

impl WebSocketConnection {
    /// The connection's identifier, unique in the process.
    pub fn id(&self) -> u64 {
        self.inner.conn.id()
    }

    /// `Connecting`, `Connected`, `Closing` or `Closed`.
    pub fn status(&self) -> Status {
        self.inner.conn.status()
    }

    /// Sends text (a text frame), bytes (a binary frame) or a JSON value (a text frame of
    /// its serialisation). Works from callbacks and from any thread; refused when the
    /// connection is not open or its outgoing buffer is over the cap.
    pub fn send(&self, data: impl Into<Data>) -> Result<(), SendError> {
        self.inner.conn.send(data.into())
    }

    /// Sends a Ping with up to 125 bytes of payload.
    pub fn ping(&self, payload: &[u8]) -> Result<(), SendError> {
        self.inner.conn.ping(payload)
    }

    /// Closes the connection: `code` 1000 (the default) or 3000-4999, `reason` at most
    /// 123 bytes of UTF-8. Anything else is refused and nothing is sent.
    pub fn terminate(&self, code: Option<u16>, reason: Option<&str>) -> Result<(), SendError> {
        self.inner.conn.terminate(code, reason)
    }

    /// Outgoing bytes accepted by `send` and not yet written to the socket.
    pub fn buffered_amount(&self) -> usize {
        self.inner.conn.buffered_amount()
    }

    /// The server this connection belongs to.
    pub fn wss(&self) -> WebSocketServer {
        WebSocketServer {
            inner: self.inner.server.clone(),
        }
    }

    /// The connection handler returned by `on_connection`.
    pub fn handler(&self) -> &Arc<dyn ConnectionHandler> {
        &self.inner.handler
    }

    /// The connection handler as its own type, with its fields (`ws.handler_as::<Member>()`);
    /// `None` when it is of another type.
    pub fn handler_as<T: std::any::Any>(&self) -> Option<&T> {
        let handler: &dyn std::any::Any = &*self.inner.handler;
        handler.downcast_ref()
    }

    /// The client's address.
    pub fn remote_address(&self) -> SocketAddr {
        self.inner.remote_address.get()
    }

    /// The subprotocol agreed in the handshake, if any.
    pub fn subprotocol(&self) -> Option<&str> {
        self.inner.subprotocol.as_deref().map(String::as_str)
    }

    /// The server's data type, which decides how messages are delivered.
    pub fn data_type(&self) -> DataType {
        self.inner.server.options.data_type
    }

    fn subscriber(&self) -> Subscriber<'_> {
        Subscriber {
            shared: self.inner.conn.shared(),
            loop_index: self.inner.loop_index as usize,
        }
    }

    /// Subscribes to `topic` (1 to 256 bytes): from now on every publish to it reaches
    /// this connection, from this node and, with a backplane, from the others (once
    /// Redis has the subscription: within a few tens of milliseconds). `Ok(false)` when
    /// already subscribed. Refused when the connection is not open or already holds
    /// `topics.max_per_connection` topics. Closing removes every subscription.
    pub fn subscribe(&self, topic: &str) -> Result<bool, TopicError> {
        self.inner.server.topics.subscribe(self.subscriber(), topic)
    }

    /// Unsubscribes from `topic`; false when it was not subscribed.
    pub fn unsubscribe(&self, topic: &str) -> bool {
        self.inner
            .server
            .topics
            .unsubscribe(self.subscriber(), topic)
    }

    /// Is this connection subscribed to `topic`?
    pub fn is_subscribed(&self, topic: &str) -> bool {
        self.inner.server.topics.holds(self.id(), topic)
    }

    /// The topics this connection holds.
    pub fn topics(&self) -> Vec<String> {
        self.inner.server.topics.topics_of(self.id())
    }

    /// Sends `data` to every subscriber of `topic` but this connection, on every node
    /// (see [`WebSocketServer::publish`], which includes everyone). This connection need
    /// not be subscribed. Returns how many local subscribers it was queued for.
    pub fn publish(&self, topic: &str, data: impl Into<Data>) -> usize {
        let message = data.into().into_outgoing();
        self.inner.server.publish(topic, message, Some(self.id()))
    }
}

impl Endpoint for WebSocketConnection {
    fn data_type(&self) -> DataType {
        self.inner.server.options.data_type
    }

    fn on_open(&self) {
        // In `connections` from its opening on: a connection refused after
        // `on_connection` (its 101 could not be written) never appears there.
        self.inner.server.connection_opened(self);
        self.inner.handler.on_open(self);
    }

    fn on_message(&self, event: MessageEvent) {
        self.inner.handler.on_message(self, event);
    }

    fn on_error(&self, event: ErrorEvent) {
        self.inner.handler.on_error(self, event);
    }

    fn on_terminate(&self, event: TerminateEvent) {
        // Out of its topics before the handler hears of the end (and out of
        // `connections()` already: it is Closed); a terminating server finishes after its
        // last connection's `on_terminate` has returned.
        let server = &self.inner.server;
        server
            .topics
            .remove_connection(self.id(), self.inner.loop_index as usize);
        let _ = ws6455_mio::guarded(|| self.inner.handler.on_terminate(self, event));
        if server.connection_ended(self) {
            server.finish();
        }
    }
}
