//! ws6455-api: the application vocabulary of `../shared/spec/api.md`, shared by the
//! server and the client: data types (text, blob, object as JSON), the message,
//! terminate and error events, a connection handle whose members follow the contract,
//! and [`Bridge`], the one adapter from the event loop's callbacks to a connection's
//! handler (data type conversion, event building), used by both sides.

#![forbid(unsafe_code)]

mod logger;

pub use logger::install_stderr_logger;

use std::fmt;
use std::sync::Arc;

use ws6455_core::{CloseStatus, Message};
use ws6455_mio::{ConnError, ConnHandler, ConnShared, LoopHandle, Outgoing, SendError, Status};

/// How received messages are delivered (`data_type` in the API contract).
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, Default)]
pub enum DataType {
    /// Text messages as `Data::Text`; binary messages still arrive as `Data::Blob`.
    #[default]
    Text,
    /// Every message as bytes (`Data::Blob`).
    Blob,
    /// Every message parsed as JSON (`Data::Object`); invalid JSON fails the connection
    /// with `on_error` and close code 1007.
    Object,
}

/// A message's content: received (per [`DataType`]) or to send.
#[derive(Clone, Debug, PartialEq)]
pub enum Data {
    /// UTF-8 text; sent as a text frame.
    Text(String),
    /// Bytes; sent as a binary frame.
    Blob(Vec<u8>),
    /// A JSON value; sent as a text frame of its serialisation.
    Object(serde_json::Value),
}

impl Data {
    /// The text, for `Data::Text`.
    pub fn as_text(&self) -> Option<&str> {
        match self {
            Data::Text(text) => Some(text),
            _ => None,
        }
    }

    /// The bytes of a text or blob message (`None` for objects).
    pub fn as_bytes(&self) -> Option<&[u8]> {
        match self {
            Data::Text(text) => Some(text.as_bytes()),
            Data::Blob(bytes) => Some(bytes),
            Data::Object(_) => None,
        }
    }
}

impl From<String> for Data {
    fn from(text: String) -> Self {
        Data::Text(text)
    }
}

impl From<&str> for Data {
    fn from(text: &str) -> Self {
        Data::Text(text.to_owned())
    }
}

impl From<Vec<u8>> for Data {
    fn from(bytes: Vec<u8>) -> Self {
        Data::Blob(bytes)
    }
}

impl From<&[u8]> for Data {
    fn from(bytes: &[u8]) -> Self {
        Data::Blob(bytes.to_vec())
    }
}

impl From<serde_json::Value> for Data {
    fn from(value: serde_json::Value) -> Self {
        Data::Object(value)
    }
}

/// One error in an `on_error` event: a numeric code, a message, and the component that
/// raised it.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Error {
    /// For connection errors, the close code sent (1002, 1007, 1009, 1011), or 1006 when
    /// the connection was dropped; for server errors, the HTTP status answered, or 1015
    /// when a TLS handshake failed.
    pub code: u16,
    /// What happened.
    pub message: String,
    /// Which component raised it: `"connection"`, `"handshake"`, `"tls"`, `"listener"`,
    /// `"server"` (a server handler callback panicked), `"redis"` (the backplane).
    pub component: &'static str,
}

impl fmt::Display for Error {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "[{}] {} ({})", self.component, self.message, self.code)
    }
}

impl std::error::Error for Error {}

/// `on_message`'s event (`type = "message"`).
#[derive(Clone, Debug, PartialEq)]
pub struct MessageEvent {
    /// The message, converted per the data type.
    pub data: Data,
}

/// `on_terminate`'s event (`type = "terminate"`).
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct TerminateEvent {
    /// The peer's close code; 1005 when its Close frame had none; 1006 when the connection
    /// ended without a closing handshake.
    pub code: u16,
    /// The peer's close reason; `None` when it gave none.
    pub reason: Option<String>,
    /// True when the closing handshake completed.
    pub was_clean: bool,
}

/// An `on_error` event (`type = "error"`).
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct ErrorEvent {
    /// What went wrong.
    pub errors: Vec<Error>,
}

impl Data {
    /// Converts a received message per `data_type`: text as `Text` (the core's validated
    /// `String`, not checked again; bytes in blob mode), binary as `Blob`, anything as
    /// JSON in object mode. Invalid JSON is a [`ConnError::InvalidData`] (close 1007).
    pub fn from_message(data_type: DataType, message: Message) -> Result<Data, ConnError> {
        Ok(match (data_type, message) {
            (DataType::Text, Message::Text(text)) => Data::Text(text),
            (DataType::Text | DataType::Blob, message) => Data::Blob(message.into_bytes()),
            (DataType::Object, message) => match serde_json::from_slice(message.as_bytes()) {
                Ok(value) => Data::Object(value),
                Err(e) => return Err(ConnError::InvalidData(format!("invalid JSON: {e}"))),
            },
        })
    }

    /// What goes on the wire: text and objects (as JSON) in text frames, blobs in binary.
    pub fn into_outgoing(self) -> Outgoing {
        match self {
            Data::Text(text) => Outgoing::Text(text),
            Data::Blob(bytes) => Outgoing::Binary(bytes),
            Data::Object(value) => Outgoing::Text(value.to_string()),
        }
    }
}

impl TerminateEvent {
    /// The event for a connection that ended with `status`; the reason is kept only when
    /// the peer gave one (never for 1006, whose text is ours).
    pub fn from_status(status: &CloseStatus) -> Self {
        let peer_reason = status.code.0 != 1006 && !status.reason.is_empty();
        TerminateEvent {
            code: status.code.0,
            reason: peer_reason.then(|| status.reason.clone()),
            was_clean: status.clean,
        }
    }
}

impl ErrorEvent {
    /// The event for a connection error, from the component `"connection"`.
    pub fn from_conn_error(error: &ConnError) -> Self {
        ErrorEvent {
            errors: vec![Error {
                code: error.code(),
                message: error.to_string(),
                component: "connection",
            }],
        }
    }
}

/// One open connection as the application APIs (server and client) see it: its shared
/// state and the loop that drives it. The member semantics of the API contract (send a
/// `Data`, terminate with an optional code that defaults to 1000) live here, once.
#[derive(Clone, Debug)]
pub struct ConnHandle {
    shared: Arc<ConnShared>,
    handle: LoopHandle,
}

impl ConnHandle {
    /// The connection `shared`, driven by the loop behind `handle`.
    pub fn new(shared: Arc<ConnShared>, handle: LoopHandle) -> Self {
        ConnHandle { shared, handle }
    }

    /// The connection's identifier, unique in the process.
    pub fn id(&self) -> u64 {
        self.shared.id()
    }

    /// `Connecting`, `Connected`, `Closing` or `Closed`.
    pub fn status(&self) -> Status {
        self.shared.status()
    }

    /// Outgoing bytes accepted by `send` and not yet written to the socket.
    pub fn buffered_amount(&self) -> usize {
        self.shared.buffered_amount()
    }

    /// Sends text or an object (JSON) as a text frame, a blob as a binary frame.
    pub fn send(&self, data: Data) -> Result<(), SendError> {
        self.handle.send(&self.shared, data.into_outgoing())
    }

    /// Sends a Ping with up to 125 bytes of payload.
    pub fn ping(&self, payload: &[u8]) -> Result<(), SendError> {
        self.handle.ping(&self.shared, payload.to_vec())
    }

    /// Starts the closing handshake: `code` 1000 (the default) or 3000-4999, `reason` at
    /// most 123 bytes of UTF-8; anything else is refused and nothing is sent.
    pub fn terminate(&self, code: Option<u16>, reason: Option<&str>) -> Result<(), SendError> {
        let code = ws6455_core::CloseCode(code.unwrap_or(1000));
        self.handle.close(&self.shared, code, reason.unwrap_or(""))
    }

    /// The shared state (for frames encoded once, e.g. a broadcast).
    pub fn shared(&self) -> &Arc<ConnShared> {
        &self.shared
    }

    /// The loop driving the connection.
    pub fn loop_handle(&self) -> &LoopHandle {
        &self.handle
    }
}

/// A connection as its application handler sees it: the server's `WebSocketConnection`
/// and the client's `WebSocket` both are one. [`Bridge`] turns the loop's callbacks into
/// these.
pub trait Endpoint: Send + 'static {
    /// How this connection's messages are delivered.
    fn data_type(&self) -> DataType;
    /// The connection is open (`type = "open"`).
    fn on_open(&self);
    /// A whole message arrived (`type = "message"`), converted per the data type.
    fn on_message(&self, event: MessageEvent);
    /// The connection failed (`type = "error"`): at most once, before `on_terminate`.
    fn on_error(&self, event: ErrorEvent);
    /// The connection is over (`type = "terminate"`): exactly once, last.
    fn on_terminate(&self, event: TerminateEvent);
}

/// The event loop's per-connection callbacks for an [`Endpoint`]: converts messages per
/// its data type (invalid JSON fails the connection with 1007) and builds the events.
/// The order guarantee is the loop's ([`ConnHandler`]).
#[derive(Debug)]
pub struct Bridge<E>(pub E);

impl<E: Endpoint> ConnHandler for Bridge<E> {
    fn on_open(&mut self) {
        self.0.on_open();
    }

    fn on_message(&mut self, message: Message) -> Result<(), ConnError> {
        let data = Data::from_message(self.0.data_type(), message)?;
        self.0.on_message(MessageEvent { data });
        Ok(())
    }

    fn on_error(&mut self, error: &ConnError) {
        self.0.on_error(ErrorEvent::from_conn_error(error));
    }

    fn on_close(self, status: &CloseStatus) {
        self.0.on_terminate(TerminateEvent::from_status(status));
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::sync::Mutex;

    /// Records what the bridge hands over.
    struct Recorder(DataType, Arc<Mutex<Vec<String>>>);

    impl Endpoint for Recorder {
        fn data_type(&self) -> DataType {
            self.0
        }
        fn on_open(&self) {
            self.1.lock().unwrap().push("open".into());
        }
        fn on_message(&self, event: MessageEvent) {
            self.1
                .lock()
                .unwrap()
                .push(format!("message {:?}", event.data));
        }
        fn on_error(&self, event: ErrorEvent) {
            let error = &event.errors[0];
            self.1.lock().unwrap().push(format!("error {}", error.code));
        }
        fn on_terminate(&self, event: TerminateEvent) {
            self.1
                .lock()
                .unwrap()
                .push(format!("terminate {}", event.code));
        }
    }

    #[test]
    fn the_bridge_converts_per_data_type_and_builds_the_events() {
        let log = Arc::new(Mutex::new(Vec::new()));
        let mut bridge = Bridge(Recorder(DataType::Object, log.clone()));
        bridge.on_open();
        assert_eq!(
            bridge.on_message(Message::Text(r#"{"a":1}"#.into())),
            Ok(())
        );
        let refused = bridge.on_message(Message::Text("not json".into()));
        let error = refused.unwrap_err();
        assert_eq!(
            error.close_code(),
            Some(ws6455_core::CloseCode::INVALID_PAYLOAD)
        );
        bridge.on_error(&error);
        bridge.on_close(&CloseStatus {
            code: ws6455_core::CloseCode::ABNORMAL,
            reason: "gone".into(),
            clean: false,
        });
        let log = log.lock().unwrap();
        assert_eq!(
            *log,
            [
                "open",
                r#"message Object(Object {"a": Number(1)})"#,
                "error 1007",
                "terminate 1006"
            ]
        );

        let log = Arc::new(Mutex::new(Vec::new()));
        let mut blob = Bridge(Recorder(DataType::Blob, log.clone()));
        assert_eq!(blob.on_message(Message::Text("hi".into())), Ok(()));
        assert_eq!(*log.lock().unwrap(), ["message Blob([104, 105])"]);
    }
}
