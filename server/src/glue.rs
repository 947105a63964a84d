//! The web server's side of the event loop's `Handler`: routing a request to the
//! WebSocket server that holds its path, that server's origin check, `on_connection`
//! decision and subprotocol choice, plain HTTP answers, and the failures each hears of.
//! A connection's own callbacks go through `ws6455_api::Bridge`.

use std::net::SocketAddr;
use std::sync::Arc;

use ws6455_api::Bridge;
use ws6455_core::handshake::{reject_response, HandshakeError};
use ws6455_mio::{AcceptProblem, Choices, ConnShared, Decision, Handler};

use crate::connection::{ConnInner, WebSocketConnection};
use crate::server::{ServerInner, WebSocketServer};
use crate::types::{ConnectionEvent, Request};
use crate::web::WebInner;
use ws6455_api::ConnHandle;

/// One loop's view of the web server: handed to the loop when it starts running.
pub(crate) struct Glue {
    web: Arc<WebInner>,
    index: usize,
}

impl Glue {
    pub(crate) fn new(web: Arc<WebInner>, index: usize) -> Self {
        Glue { web, index }
    }
}

/// Runs one of a WebSocket server handler's callbacks; a panic is reported to that
/// server's `on_error` (500, component "server") and gives `None`, for a 500 answer.
fn call<T>(server: &Arc<ServerInner>, callback: &str, f: impl FnOnce() -> T) -> Option<T> {
    match ws6455_mio::guarded(f) {
        Ok(value) => Some(value),
        Err(error) => {
            server.report_error(500, format!("{callback}: {error}"), "server");
            None
        }
    }
}

fn refuse(status: u16, message: &str) -> Vec<u8> {
    reject_response(status, message, &[]).unwrap_or_default()
}

impl Handler for Glue {
    type Conn = Bridge<WebSocketConnection>;

    fn on_request(
        &mut self,
        request: &ws6455_core::handshake::Request,
        remote: SocketAddr,
        shared: &Arc<ConnShared>,
    ) -> Decision<Bridge<WebSocketConnection>> {
        let Some(inner) = self.web.route(request.path()) else {
            log::debug!("{remote}: no WebSocket endpoint at {}: 404", request.path());
            return Decision::Respond(refuse(404, "no WebSocket endpoint at this path"));
        };
        if !inner.options.allowed_origins.allows(request) {
            let origin = request.headers().get("origin").unwrap_or_default();
            let message = format!("{remote}: origin {origin:?} not allowed");
            log::debug!("{message}: 403");
            inner.report_error(403, message, "handshake");
            return Decision::Respond(refuse(403, "this page's origin may not connect here"));
        }
        let server = WebSocketServer {
            inner: inner.clone(),
        };
        let event = ConnectionEvent {
            request: Request {
                inner: request.clone(),
                remote_address: remote,
            },
        };
        let failed = || Decision::Respond(refuse(500, "the server's handler failed"));
        let Some(decision) = call(&inner, "on_connection", || {
            inner.handler.on_connection(&server, &event)
        }) else {
            return failed();
        };
        let Some(handler) = decision else {
            log::debug!("{remote}: refused by on_connection: 403");
            return Decision::Respond(refuse(403, "connection refused by the server"));
        };
        let offered = request.subprotocols();
        let Some(chosen) = call(&inner, "select_subprotocol", || {
            inner.handler.select_subprotocol(&server, &offered)
        }) else {
            return failed();
        };
        let subprotocol = chosen.filter(|chosen| offered.contains(&chosen.as_str()));
        if !inner.connection_accepted() {
            // Terminated while its callbacks ran.
            return Decision::Respond(refuse(503, "the server is shutting down"));
        }
        let ws = WebSocketConnection {
            inner: Arc::new(ConnInner {
                conn: ConnHandle::new(shared.clone(), self.web.loops[self.index].clone()),
                handler,
                server: inner.clone(),
                remote_address: remote.into(),
                subprotocol: subprotocol.clone().map(Box::new),
                // Loops are threads: a handful.
                loop_index: self.index as u32,
                opened: std::sync::atomic::AtomicBool::new(false),
            }),
        };
        Decision::Accept {
            conn: Bridge(ws),
            choices: Choices {
                subprotocol,
                headers: Vec::new(),
            },
        }
    }

    fn on_http_request(
        &mut self,
        request: &ws6455_core::handshake::Request,
        remote: SocketAddr,
    ) -> Vec<u8> {
        let head = request.method().eq_ignore_ascii_case("HEAD");
        let request = Request {
            inner: request.clone(),
            remote_address: remote,
        };
        let mut answer = match self.web.answer(&request) {
            Some(Some(response)) => response.to_bytes(),
            // A WebSocket server's path asked without the upgrade.
            Some(None) if self.web.route(request.path()).is_some() => {
                HandshakeError::NotUpgrade.response()
            }
            Some(None) => refuse(404, "nothing here"),
            None => refuse(500, "the server's handler failed"),
        };
        if head {
            // The same header block, Content-Length included, and no body.
            if let Some(end) = answer.windows(4).position(|w| w == b"\r\n\r\n") {
                answer.truncate(end + 4);
            }
        }
        answer
    }

    fn on_bad_request(&mut self, error: &HandshakeError, remote: SocketAddr) {
        let message = format!("{remote}: {error}");
        self.web.report_error(error.status(), message, "handshake");
    }

    fn on_tls_error(&mut self, error: &ws6455_mio::rustls::Error, remote: SocketAddr) {
        // 1015 is RFC 6455's status for "the TLS handshake failed" (never sent on the wire).
        let message = format!("{remote}: TLS handshake failed: {error}");
        self.web.report_error(1015, message, "tls");
    }

    fn on_accept_problem(&mut self, problem: AcceptProblem<'_>) {
        // 503: what the clients meet, a wait in the backlog or the answer itself.
        let message = match problem {
            AcceptProblem::Failed(error) => {
                format!("cannot accept connections ({error}): retrying every 100 ms")
            }
            AcceptProblem::AtLimit { remote, limit } => {
                format!("{remote}: answered 503, the loop holds its {limit} connections")
            }
            _ => return,
        };
        self.web.report_error(503, message, "listener");
    }

    fn on_loop_exit(&mut self) {
        self.web.loop_exited();
    }
}
