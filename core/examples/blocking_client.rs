//! The smallest client driver: blocking `std::net`, driven by `ws6455-core` alone. It
//! connects to a `ws://` URL (offering permessage-deflate), then prints every text
//! message it receives on a line of its own (binary ones as their length) until the
//! server closes; with `--echo` it sends every message back instead.
//!
//!     cargo run --release -p ws6455-core --example blocking_client -- [--echo] ws://127.0.0.1:9001/
//!
//! `AUTOBAHN_CLIENT=blocking autobahn/client.sh` runs the Autobahn testsuite with it.

use std::io::Write;
use std::net::TcpStream;
use std::time::{Duration, Instant};

mod support;
use support::{close_lingering, read_until, wait_for_input, write_output};

use ws6455_core::connect::Connector;
use ws6455_core::handshake::ClientRequest;
use ws6455_core::{Config, Connection, DeflateConfig, Event, Message, OsRandom};

/// A server that takes longer than this to accept our bytes is given up on.
const WRITE_TIMEOUT: Duration = Duration::from_secs(30);

fn main() -> Result<(), Box<dyn std::error::Error>> {
    let mut echo = false;
    let mut url = None;
    for arg in std::env::args().skip(1) {
        match arg.as_str() {
            "--echo" => echo = true,
            _ => url = Some(arg),
        }
    }
    let url = url.ok_or("usage: blocking_client [--echo] ws://HOST:PORT/PATH")?;
    let rest = url.strip_prefix("ws://").ok_or("only ws:// URLs")?;
    let (authority, resource) = rest.split_at(rest.find('/').unwrap_or(rest.len()));
    let resource = if resource.is_empty() { "/" } else { resource };

    let mut stream = TcpStream::connect(authority)?;
    stream.set_nodelay(true)?;
    stream.set_write_timeout(Some(WRITE_TIMEOUT))?;
    let config = Config {
        deflate: Some(DeflateConfig::default()),
        ..Config::default()
    };
    let request = ClientRequest {
        host: authority,
        resource,
        ..ClientRequest::default()
    };
    let random = Box::new(OsRandom::new());
    let mut connector = Connector::new(&request, config, random, Instant::now())?;
    stream.write_all(connector.pending_output())?;
    let sent = connector.pending_output().len();
    connector.consume_output(sent);

    // The server's answer, within the handshake timeout.
    let mut buf = vec![0u8; 64 << 10];
    let mut conn = loop {
        let Some(n) = read_until(&mut stream, &mut buf, connector.poll_timeout())? else {
            return Err("no handshake response in time".into());
        };
        if n == 0 {
            return Err("the server closed the connection during the handshake".into());
        }
        if let Some(connected) = connector.receive_data(Instant::now(), &buf[..n])? {
            break connected.connection;
        }
    };

    // Messages until the end: decode, act, write, sleep until input or a deadline. The
    // first round decodes what came with the response.
    let mut filled = 0;
    loop {
        let now = Instant::now();
        let mut input = &buf[..filled];
        while let Ok(Some(event)) = conn.receive(now, &mut input) {
            if let Event::Message(message) = event {
                handle(&mut conn, message, echo);
            }
        }
        write_output(&mut stream, &mut conn)?;
        if conn.should_close_transport() {
            close_lingering(stream, conn.config().linger_timeout);
            break;
        }
        filled = wait_for_input(&mut stream, &mut buf, &mut conn);
    }
    if let Some(status) = conn.close_status() {
        eprintln!(
            "closed: {} {:?} (clean: {})",
            status.code, status.reason, status.clean
        );
    }
    Ok(())
}

fn handle(conn: &mut Connection, message: Message, echo: bool) {
    match (echo, message) {
        (true, Message::Binary(data)) => {
            let _ = conn.send_binary_owned(data);
        }
        (true, Message::Text(text)) => {
            let _ = conn.send_text_owned(text);
        }
        (false, Message::Text(text)) => println!("{text}"),
        (false, Message::Binary(data)) => println!("<{} bytes>", data.len()),
    }
}
