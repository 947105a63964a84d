//! The smallest driver: a blocking `std::net` echo server, one thread per connection,
//! driven by `ws6455-core` alone. The core does the handshake, the protocol, the close
//! rules and the timers; this file only moves bytes, reads the clock and sleeps (in
//! `read`) until the core's next deadline. Every message comes back as it came, with
//! permessage-deflate when the client offers it.
//!
//!     cargo run --release -p ws6455-core --example blocking_server -- [ADDR]
//!
//! ADDR defaults to 127.0.0.1:9001. `AUTOBAHN_SERVER=blocking autobahn/server.sh` runs
//! the Autobahn testsuite against it.

use std::io::{self, Write};
use std::net::{TcpListener, TcpStream};
use std::sync::Arc;
use std::time::{Duration, Instant};

mod support;
use support::{close_lingering, read_until, wait_for_input, write_output};

use ws6455_core::accept::{Acceptor, Choices, Reply};
use ws6455_core::{Config, Connection, DeflateConfig, Event, Message};

/// A peer that takes longer than this to accept our bytes is given up on.
const WRITE_TIMEOUT: Duration = Duration::from_secs(30);

fn main() -> io::Result<()> {
    let addr = std::env::args().nth(1).unwrap_or("127.0.0.1:9001".into());
    let listener = TcpListener::bind(&addr)?;
    eprintln!("echo server on ws://{}", listener.local_addr()?);
    let config = Arc::new(Config {
        deflate: Some(DeflateConfig::default()),
        ..Config::default()
    });
    for stream in listener.incoming() {
        let Ok(stream) = stream else { continue };
        let config = config.clone();
        std::thread::spawn(move || {
            if let Err(error) = serve(stream, config) {
                eprintln!("connection ended: {error}");
            }
        });
    }
    Ok(())
}

fn serve(mut stream: TcpStream, config: Arc<Config>) -> io::Result<()> {
    stream.set_nodelay(true)?;
    stream.set_write_timeout(Some(WRITE_TIMEOUT))?;
    let mut buf = vec![0u8; 64 << 10];

    let linger = config.linger_timeout;
    // The opening handshake: bytes in until the request is whole, or the deadline.
    let mut acceptor = Acceptor::new(config, Instant::now());
    let accepted = loop {
        let Some(n) = read_until(&mut stream, &mut buf, acceptor.poll_timeout())? else {
            return Ok(()); // no request in time: just close
        };
        if n == 0 {
            return Ok(());
        }
        match acceptor.receive_data(Instant::now(), &buf[..n]) {
            Ok(Some(accepted)) => break accepted,
            Ok(None) => {}
            Err(refused) => return write_reply(stream, refused.reply, linger),
        }
    };
    let mut conn = match accepted.accept(&Choices::default(), Instant::now()) {
        Ok(conn) => conn,
        Err(reply) => return write_reply(stream, reply, linger), // plain HTTP: 426
    };

    // Messages: decode what arrived, echo it, write, then sleep until input or the
    // core's next deadline. The first round decodes what came with the request.
    let mut filled = 0;
    loop {
        let now = Instant::now();
        let mut input = &buf[..filled];
        loop {
            match conn.receive(now, &mut input) {
                Ok(Some(Event::Message(message))) => echo(&mut conn, message),
                Ok(Some(_)) => {} // pings are answered, closes echoed, by the core
                Ok(None) => break,
                Err(_) => break, // the core queued the right Close; write it below
            }
        }
        write_output(&mut stream, &mut conn)?;
        if conn.should_close_transport() {
            close_lingering(stream, linger);
            return Ok(());
        }
        filled = wait_for_input(&mut stream, &mut buf, &mut conn);
    }
}

fn echo(conn: &mut Connection, message: Message) {
    // Refused only once closing: nothing to echo then.
    let _ = match message {
        Message::Binary(data) => conn.send_binary_owned(data),
        Message::Text(text) => conn.send_text_owned(text),
    };
}

fn write_reply(mut stream: TcpStream, mut reply: Reply, linger: Duration) -> io::Result<()> {
    stream.write_all(reply.pending_output())?;
    let n = reply.pending_output().len();
    reply.consume_output(n);
    close_lingering(stream, linger);
    Ok(())
}
