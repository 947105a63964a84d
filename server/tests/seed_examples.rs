//! The seeds' two examples, run as tests: `examples/uppercase_echo.rs` and
//! `examples/chat.rs` (the address check in `on_connection`, the broadcast by looping over
//! `wss().connections()` excluding the sender), each included as it is and driven by
//! independent clients (tungstenite).

use std::net::TcpStream;
use std::time::Duration;

use tungstenite::{Message, WebSocket};
use ws6455_server::*;

#[allow(dead_code)]
#[path = "../examples/chat.rs"]
mod chat;
#[allow(dead_code)]
#[path = "../examples/uppercase_echo.rs"]
mod uppercase_echo;

const WAIT: Duration = Duration::from_secs(5);

fn start(handler: impl ServerHandler) -> WebSocketServer {
    let options = ServerOptions {
        listen: "127.0.0.1:0".parse().unwrap(),
        ..ServerOptions::default()
    };
    WebSocketServer::new(handler, options).unwrap()
}

fn connect(server: &WebSocketServer) -> Result<WebSocket<TcpStream>, Box<tungstenite::Error>> {
    let stream = TcpStream::connect(server.local_addr()).unwrap();
    stream.set_read_timeout(Some(WAIT)).unwrap();
    match tungstenite::client(format!("ws://{}/", server.local_addr()), stream) {
        Ok((ws, _)) => Ok(ws),
        Err(tungstenite::HandshakeError::Failure(e)) => Err(Box::new(e)),
        Err(tungstenite::HandshakeError::Interrupted(_)) => panic!("interrupted"),
    }
}

fn text(ws: &mut WebSocket<TcpStream>) -> String {
    loop {
        match ws.read().expect("a message") {
            Message::Text(t) => return t.to_string(),
            Message::Close(frame) => {
                return format!("close {:?}", frame.map(|f| u16::from(f.code)))
            }
            _ => continue,
        }
    }
}

#[test]
fn the_uppercase_echo_answers_in_capitals_and_binary_as_is() {
    let server = start(uppercase_echo::Server);
    let mut ws = connect(&server).unwrap();
    ws.send(Message::text("hello, Wörld")).unwrap();
    assert_eq!(text(&mut ws), "HELLO, WÖRLD");
    ws.send(Message::binary(vec![1u8, 2, 255])).unwrap();
    match ws.read().unwrap() {
        Message::Binary(bytes) => assert_eq!(&bytes[..], [1, 2, 255]),
        other => panic!("{other:?}"),
    }
}

#[test]
fn the_chat_admits_allowed_addresses_and_relays_to_everyone_else() {
    // Only 127.0.0.2 admitted: a loopback client from 127.0.0.1 is refused with 403.
    let refusing = start(chat::Room {
        allowed: vec!["127.0.0.2".parse().unwrap()],
    });
    match connect(&refusing).map_err(|e| *e) {
        Err(tungstenite::Error::Http(response)) => assert_eq!(response.status(), 403),
        Err(other) => panic!("{other}"),
        Ok(_) => panic!("admitted"),
    }

    let server = start(chat::Room { allowed: vec![] });
    let mut alice = connect(&server).unwrap();
    let welcome = text(&mut alice);
    assert!(welcome.starts_with("welcome, you are #"), "{welcome}");
    let alice_id = welcome.trim_start_matches("welcome, you are #").to_owned();
    let mut bob = connect(&server).unwrap();
    let bob_welcome = text(&mut bob);
    let bob_id = bob_welcome
        .trim_start_matches("welcome, you are #")
        .to_owned();
    assert_eq!(text(&mut alice), format!("#{bob_id} joined"));

    alice.send(Message::text("hi all")).unwrap();
    assert_eq!(text(&mut bob), format!("#{alice_id}: hi all"));
    // Not echoed to the sender: the next thing Alice hears is Bob.
    bob.send(Message::text("hello alice")).unwrap();
    assert_eq!(text(&mut alice), format!("#{bob_id}: hello alice"));

    // Binary is refused with the application's own close code.
    bob.send(Message::binary(vec![0u8])).unwrap();
    assert_eq!(text(&mut bob), "close Some(4003)");
    // tungstenite queued its answering Close: send it.
    let _ = bob.flush();
    assert_eq!(text(&mut alice), format!("#{bob_id} left"));
}
