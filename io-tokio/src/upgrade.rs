//! Upgrading a request that hyper 1 parsed, so that one port serves HTTP and WebSocket:
//! the core checks the request and the application's choices and gives the 101's header
//! fields; hyper writes the response and hands over the connection.
//!
//! ```no_run
//! use http_body_util::Full;
//! use hyper::body::{Bytes, Incoming};
//! use ws6455_tokio::{upgrade, Choices, Decision, Options};
//!
//! async fn serve(mut request: hyper::Request<Incoming>) -> hyper::Response<Full<Bytes>> {
//!     if request.uri().path() != "/ws" {
//!         return hyper::Response::new(Full::new(Bytes::from_static(b"hello")));
//!     }
//!     let options = Options::default();
//!     match upgrade::upgrade(&mut request, &options, |_| Decision::Accept(Choices::default())) {
//!         Ok((response, upgrading)) => {
//!             tokio::spawn(async move {
//!                 if let Ok(ws) = upgrading.await {
//!                     // Read and write messages on `ws`.
//!                     # drop(ws);
//!                 }
//!             });
//!             response
//!         }
//!         // Not a valid upgrade, or refused: the answer says why.
//!         Err(refusal) => refusal,
//!     }
//! }
//! ```

use std::future::Future;
use std::pin::Pin;
use std::task::{ready, Context, Poll};

use http_body_util::Full;
use hyper::body::Bytes;
use hyper::header::{HeaderName, HeaderValue};
use hyper::upgrade::{OnUpgrade, Upgraded};
use hyper::{Response, StatusCode, Version};
use hyper_util::rt::TokioIo;
use ws6455_core::accept::{Accepted, Upgrade};
use ws6455_core::handshake::{reason_phrase, HandshakeError, Headers, Request};
use ws6455_core::Connection;

use crate::handshake::{Decision, Options};
use crate::stream::{now, WebSocketStream};

/// The body of the answers [`upgrade`] gives: empty for the 101, the reason as plain
/// text for a refusal.
pub type Body = Full<Bytes>;

/// The stream over a connection hyper upgraded.
pub type UpgradedStream = WebSocketStream<TokioIo<Upgraded>>;

/// Answers `request`, an HTTP/1.1 request hyper parsed, as a WebSocket upgrade:
/// - the request is checked as the RFC requires (method, `Upgrade`, `Connection`,
///   version 13, the key); an invalid one is refused with its status (400, 405, 426)
///   and the reason;
/// - `decide` looks at it (path, query, headers, offered subprotocols) and accepts with
///   a subprotocol and extra headers, or refuses with a status and reason;
/// - accepted, it gives the 101 to return from the service (permessage-deflate agreed as
///   [`Options::protocol`] allows) and the [`Upgrading`] future that yields the stream
///   once hyper has written it.
///
/// `Err` holds the refusal, to return from the service as it is.
#[allow(clippy::result_large_err)]
pub fn upgrade<B>(
    request: &mut hyper::Request<B>,
    options: &Options,
    decide: impl FnOnce(&Request) -> Decision,
) -> Result<(Response<Body>, Upgrading), Response<Body>> {
    if request.version() != Version::HTTP_11 {
        // HTTP/1.0 cannot upgrade; over HTTP/2 a WebSocket is an extended CONNECT
        // (RFC 8441), not built.
        return Err(refusal(400, "WebSocket needs HTTP/1.1", &[]));
    }
    let accepted = match Accepted::from_request(parts_of(request), options.protocol.clone()) {
        Ok(accepted) => accepted,
        Err(error) => return Err(refused(&error)),
    };
    let choices = match decide(accepted.request()) {
        Decision::Accept(choices) => choices,
        Decision::Reject { status, reason } => return Err(refusal(status, &reason, &[])),
    };
    let Upgrade {
        headers,
        connection,
    } = match accepted.accept_upgrade(&choices, now()) {
        Ok(upgrade) => upgrade,
        Err(refused) => return Err(refusal(refused.status, &refused.reason, &[])),
    };
    let mut response = Response::new(Body::default());
    *response.status_mut() = StatusCode::SWITCHING_PROTOCOLS;
    for (name, value) in headers {
        // The core checked every field: the conversions do not fail.
        let (Ok(name), Ok(value)) = (
            HeaderName::from_bytes(name.as_bytes()),
            HeaderValue::from_str(&value),
        ) else {
            return Err(refusal(
                500,
                "the server gave an invalid response header",
                &[],
            ));
        };
        response.headers_mut().append(name, value);
    }
    let upgrading = Upgrading {
        on_upgrade: hyper::upgrade::on(request),
        connection: Some(connection),
        max_buffered: options.max_buffered,
    };
    Ok((response, upgrading))
}

/// The request as the core reads it: method, target, header fields (values that are not
/// UTF-8 read lossily, as the core's own parser does).
fn parts_of<B>(request: &hyper::Request<B>) -> Request {
    let mut headers = Headers::new();
    for (name, value) in request.headers() {
        let value = String::from_utf8_lossy(value.as_bytes());
        headers.push(name.as_str(), value.trim());
    }
    let target = request
        .uri()
        .path_and_query()
        .map_or_else(|| request.uri().to_string(), |target| target.to_string());
    Request::new(request.method().as_str(), target, headers)
}

fn refused(error: &HandshakeError) -> Response<Body> {
    refusal(error.status(), &error.to_string(), error.required_headers())
}

/// A plain-text answer with `status` (500 when it is not a valid status code).
fn refusal(status: u16, reason: &str, headers: &[(&str, &str)]) -> Response<Body> {
    let (status, reason) = match StatusCode::from_u16(status) {
        Ok(status) if status.as_u16() >= 200 => (status, reason),
        _ => (StatusCode::INTERNAL_SERVER_ERROR, reason_phrase(500)),
    };
    let mut response = Response::new(Body::from(format!("{reason}\n")));
    *response.status_mut() = status;
    let fields = response.headers_mut();
    fields.insert(
        hyper::header::CONTENT_TYPE,
        HeaderValue::from_static("text/plain; charset=utf-8"),
    );
    for (name, value) in headers {
        // Constants of the core, valid.
        if let (Ok(name), Ok(value)) = (
            HeaderName::from_bytes(name.as_bytes()),
            HeaderValue::from_str(value),
        ) {
            fields.insert(name, value);
        }
    }
    response
}

/// The connection an accepted [`upgrade`] opens, once hyper has written the 101: a
/// future of the stream. It fails when hyper cannot hand the connection over (the client
/// went away, the service did not return the 101).
#[derive(Debug)]
pub struct Upgrading {
    on_upgrade: OnUpgrade,
    connection: Option<Connection>,
    max_buffered: usize,
}

impl Future for Upgrading {
    type Output = Result<UpgradedStream, hyper::Error>;

    fn poll(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Self::Output> {
        let upgraded = ready!(Pin::new(&mut self.on_upgrade).poll(cx))?;
        // Taken once: a future polled after it completed panics, as futures may.
        let connection = self
            .connection
            .take()
            .expect("Upgrading polled after it completed");
        Poll::Ready(Ok(WebSocketStream::from_connection(
            TokioIo::new(upgraded),
            connection,
            self.max_buffered,
        )))
    }
}
