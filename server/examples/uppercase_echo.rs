//! The uppercase echo: every text message comes back in capitals, binary comes back as is.
//!
//!     cargo run -p ws6455-server --example uppercase_echo [ADDRESS]   # default 127.0.0.1:8081
//!
//! Try it with any WebSocket client, e.g. `python3 -m websockets ws://127.0.0.1:8081/`.
//! `server/tests/seed_examples.rs` runs it.

use std::sync::Arc;
use ws6455_server::*;

/// Text back in capitals, binary back as is.
pub(crate) struct Uppercase;

impl ConnectionHandler for Uppercase {
    fn on_open(&self, ws: &WebSocketConnection) {
        println!("connection {} open from {}", ws.id(), ws.remote_address());
    }

    fn on_message(&self, ws: &WebSocketConnection, event: MessageEvent) {
        let reply = match event.data {
            Data::Text(text) => Data::Text(text.to_uppercase()),
            other => other,
        };
        // A refusal means the peer is closing or not reading; nothing to do but say so.
        if let Err(error) = ws.send(reply) {
            eprintln!("connection {}: reply refused: {error}", ws.id());
        }
    }

    fn on_error(&self, ws: &WebSocketConnection, event: ErrorEvent) {
        for error in event.errors {
            eprintln!("connection {}: {error}", ws.id());
        }
    }

    fn on_terminate(&self, ws: &WebSocketConnection, event: TerminateEvent) {
        println!(
            "connection {} closed: code {} reason {:?}",
            ws.id(),
            event.code,
            event.reason
        );
    }
}

/// Accepts everyone.
pub(crate) struct Server;

impl ServerHandler for Server {
    fn on_connection(
        &self,
        _: &WebSocketServer,
        _: &ConnectionEvent,
    ) -> Option<Arc<dyn ConnectionHandler>> {
        Some(Arc::new(Uppercase))
    }

    fn on_open(&self, server: &WebSocketServer) {
        println!("uppercase echo on ws://{}/", server.local_addr());
    }
}

#[allow(dead_code)] // Not run when a test includes this file.
fn main() -> std::io::Result<()> {
    let listen = std::env::args().nth(1).unwrap_or("127.0.0.1:8081".into());
    let options = ServerOptions {
        listen: listen
            .parse()
            .map_err(|e| std::io::Error::new(std::io::ErrorKind::InvalidInput, e))?,
        ..ServerOptions::default()
    };
    let server = WebSocketServer::new(Server, options)?;
    server.wait(None);
    Ok(())
}
