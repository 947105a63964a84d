//! A chat room on tokio: every text message a member sends reaches every other member,
//! prefixed with the sender's number; joins and leaves are announced. Each member's
//! connection is read by its own task; the room holds one [`Sender`] per member, so a
//! message to everyone is queued without waiting on anyone.
//!
//!     cargo run -p ws6455-tokio --example chat_room -- [ADDR]
//!
//! ADDR defaults to 127.0.0.1:9002; try it with the client example in two terminals:
//! `cargo run -p ws6455-tokio --example client -- ws://127.0.0.1:9002/`.

use std::collections::HashMap;
use std::sync::{Arc, Mutex};

use futures_util::StreamExt;
use ws6455_tokio::{accept, Message, Options, Sender, SenderError};

/// The members: their number and the handle that sends to them.
#[derive(Default)]
struct Room {
    members: Mutex<HashMap<u64, Sender>>,
}

impl Room {
    /// Queues `text` for every member but `from`. A member whose queue is full (it reads
    /// slower than the room talks) misses the line rather than slowing everyone down.
    fn tell_others(&self, from: u64, text: &str) {
        let members = self.members.lock().unwrap_or_else(|e| e.into_inner());
        for (&id, member) in members.iter().filter(|(&id, _)| id != from) {
            match member.try_send(Message::Text(text.to_owned())) {
                Ok(()) | Err(SenderError::Closed(_)) => {}
                Err(e) => eprintln!("member {id} misses a line: {e}"),
            }
        }
    }

    fn join(&self, id: u64, sender: Sender) {
        let mut members = self.members.lock().unwrap_or_else(|e| e.into_inner());
        members.insert(id, sender);
    }

    fn leave(&self, id: u64) {
        let mut members = self.members.lock().unwrap_or_else(|e| e.into_inner());
        members.remove(&id);
    }
}

#[tokio::main]
async fn main() -> std::io::Result<()> {
    let addr = std::env::args().nth(1).unwrap_or("127.0.0.1:9002".into());
    let listener = tokio::net::TcpListener::bind(&addr).await?;
    eprintln!("chat room on ws://{}", listener.local_addr()?);
    let room = Arc::new(Room::default());
    let options = Options::default();
    for id in 1.. {
        let (tcp, peer) = listener.accept().await?;
        let (room, options) = (room.clone(), options.clone());
        tokio::spawn(async move {
            let mut ws = match accept(tcp, &options).await {
                Ok(ws) => ws,
                Err(e) => return eprintln!("{peer}: handshake failed: {e}"),
            };
            room.join(id, ws.sender());
            room.tell_others(id, &format!("* {id} joined"));
            // Reading also writes what the room queued for this member.
            while let Some(message) = ws.next().await {
                match message {
                    Ok(Message::Text(text)) => room.tell_others(id, &format!("{id}: {text}")),
                    Ok(_) => {}
                    Err(e) => eprintln!("member {id}: {e}"),
                }
            }
            room.leave(id);
            room.tell_others(id, &format!("* {id} left"));
        });
    }
    Ok(())
}
