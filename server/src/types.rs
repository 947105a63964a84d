//! The values handed to and taken from handlers: data types, events, errors, requests.

use std::fmt;
use std::net::SocketAddr;

use ws6455_core::handshake::{reason_phrase, Headers};

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
    /// the connection was dropped; for server errors, the HTTP status answered.
    pub code: u16,
    /// What happened.
    pub message: String,
    /// Which component raised it: `"connection"`, `"handshake"`, `"server"`.
    pub component: &'static str,
}

impl fmt::Display for Error {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "[{}] {} ({})", self.component, self.message, self.code)
    }
}

impl std::error::Error for Error {}

/// The client's handshake request, as given to `on_connection`.
#[derive(Clone, Debug)]
pub struct Request {
    pub(crate) inner: ws6455_core::handshake::Request,
    pub(crate) remote_address: SocketAddr,
}

impl Request {
    /// The request headers; a header sent several times keeps every value.
    pub fn headers(&self) -> &Headers {
        self.inner.headers()
    }

    /// The URL parameters, percent-decoded, in order (repeated keys kept).
    pub fn query(&self) -> Vec<(String, String)> {
        self.inner.query()
    }

    /// The value of one URL parameter (the first, if repeated).
    pub fn query_param(&self, key: &str) -> Option<String> {
        self.query()
            .into_iter()
            .find(|(k, _)| k == key)
            .map(|(_, v)| v)
    }

    /// The request target exactly as in the request line (`/status?name=ryan`).
    pub fn url(&self) -> &str {
        self.inner.url()
    }

    /// The path of the target, without the query.
    pub fn path(&self) -> &str {
        self.inner.path()
    }

    /// The client's address.
    pub fn remote_address(&self) -> SocketAddr {
        self.remote_address
    }

    /// The subprotocols the client offered, in its order of preference.
    pub fn subprotocols(&self) -> Vec<&str> {
        self.inner.subprotocols()
    }
}

/// `on_connection`'s event (`type = "connection"`).
#[derive(Clone, Debug)]
pub struct ConnectionEvent {
    /// The client's request.
    pub request: Request,
}

/// `on_message`'s event (`type = "message"`).
#[derive(Clone, Debug, PartialEq)]
pub struct MessageEvent {
    /// The message, converted per the data type.
    pub data: Data,
}

/// `on_terminate`'s event for a connection (`type = "terminate"`).
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

/// An answer to a plain HTTP request on the WebSocket port (a page, a health check).
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct HttpResponse {
    /// The status code.
    pub status: u16,
    /// The `Content-Type` of the body.
    pub content_type: String,
    /// The body.
    pub body: Vec<u8>,
}

impl HttpResponse {
    /// A 200 answer with `body` of type `content_type`.
    pub fn ok(content_type: &str, body: impl Into<Vec<u8>>) -> Self {
        HttpResponse {
            status: 200,
            content_type: content_type.to_owned(),
            body: body.into(),
        }
    }

    pub(crate) fn to_bytes(&self) -> Vec<u8> {
        let mut out = format!(
            "HTTP/1.1 {} {}\r\nContent-Type: {}\r\nContent-Length: {}\r\nConnection: close\r\n\r\n",
            self.status,
            reason_phrase(self.status),
            self.content_type.replace(['\r', '\n'], ""),
            self.body.len()
        )
        .into_bytes();
        out.extend_from_slice(&self.body);
        out
    }
}
