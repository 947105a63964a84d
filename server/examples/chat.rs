//! A chat room that only lets in clients from allowed addresses: `on_connection` checks
//! the remote address and refuses the rest (they get HTTP 403, no upgrade).
//!
//!     cargo run -p ws6455-server --example chat [ADDRESS] [ALLOWED_IP ...]
//!
//! Defaults: listens on 127.0.0.1:8082 and admits loopback clients only. Every message is
//! relayed to everyone else by looping over `wss().connections()`, as the seed's chat
//! does (`WebSocketServer::broadcast` encodes the frame once; topics reach other nodes
//! too); arrivals and departures are announced. `server/tests/seed_examples.rs` runs it.

use std::net::IpAddr;
use std::sync::Arc;
use ws6455_server::*;

/// A member of the room.
pub(crate) struct Member;

/// Sends `text` to every connection of the server but `ws` itself.
fn to_the_others(ws: &WebSocketConnection, text: &str) {
    for other in ws.wss().connections() {
        if other.id() != ws.id() {
            // A member that does not keep up misses the line rather than stalling the room.
            let _ = other.send(text);
        }
    }
}

impl ConnectionHandler for Member {
    fn on_open(&self, ws: &WebSocketConnection) {
        let _ = ws.send(format!("welcome, you are #{}", ws.id()));
        to_the_others(ws, &format!("#{} joined", ws.id()));
    }

    fn on_message(&self, ws: &WebSocketConnection, event: MessageEvent) {
        let Some(text) = event.data.as_text() else {
            // A chat of text: binary is refused with an application close code.
            let _ = ws.terminate(Some(4003), Some("text messages only"));
            return;
        };
        to_the_others(ws, &format!("#{}: {text}", ws.id()));
    }

    fn on_terminate(&self, ws: &WebSocketConnection, _: TerminateEvent) {
        to_the_others(ws, &format!("#{} left", ws.id()));
    }
}

/// The room's door: who may come in.
pub(crate) struct Room {
    /// Addresses admitted; empty: loopback only.
    pub(crate) allowed: Vec<IpAddr>,
}

impl ServerHandler for Room {
    fn on_connection(
        &self,
        _: &WebSocketServer,
        event: &ConnectionEvent,
    ) -> Option<Arc<dyn ConnectionHandler>> {
        let ip = event.request.remote_address().ip();
        let admitted = if self.allowed.is_empty() {
            ip.is_loopback()
        } else {
            self.allowed.contains(&ip)
        };
        if !admitted {
            eprintln!("refused {ip}");
            return None;
        }
        Some(Arc::new(Member))
    }

    fn on_open(&self, server: &WebSocketServer) {
        println!("chat on ws://{}/", server.local_addr());
    }
}

#[allow(dead_code)] // Not run when a test includes this file.
fn main() -> Result<(), Box<dyn std::error::Error>> {
    let mut args = std::env::args().skip(1);
    let listen = args.next().unwrap_or("127.0.0.1:8082".into()).parse()?;
    let allowed = args
        .map(|a| a.parse())
        .collect::<Result<Vec<IpAddr>, _>>()?;
    let options = ServerOptions {
        listen,
        ..ServerOptions::default()
    };
    let server = WebSocketServer::new(Room { allowed }, options)?;
    server.wait(None);
    Ok(())
}
