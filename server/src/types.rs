//! The values handed to and taken from server handlers: requests and HTTP answers. The
//! data types, events and errors shared with the client live in `ws6455_api`.

use std::net::SocketAddr;

use ws6455_core::handshake::{reason_phrase, Headers};

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

    /// The body of a plain HTTP request (a POST's), up to
    /// `limits.protocol.max_http_body` (64 KiB by default; 413 beyond it); empty for an
    /// upgrade.
    pub fn body(&self) -> &[u8] {
        self.inner.body()
    }

    /// The method: `GET` for an upgrade; any for plain HTTP.
    pub fn method(&self) -> &str {
        self.inner.method()
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

    /// The whole answer (a HEAD's is cut after the header block by the caller).
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
