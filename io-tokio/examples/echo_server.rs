//! An echo server on tokio: every text and binary message comes back as it came, with
//! permessage-deflate when the client offers it. One task per connection on a
//! current-thread runtime.
//!
//!     cargo run --release -p ws6455-tokio --example echo_server -- [ADDR]
//!
//! ADDR defaults to 127.0.0.1:9001. `AUTOBAHN_SERVER=tokio autobahn/server.sh` runs the
//! Autobahn testsuite against it.

use std::sync::Arc;

use futures_util::{SinkExt, StreamExt};
use ws6455_tokio::{accept, Config, DeflateConfig, Message, Options};

#[tokio::main(flavor = "current_thread")]
async fn main() -> std::io::Result<()> {
    let addr = std::env::args().nth(1).unwrap_or("127.0.0.1:9001".into());
    let listener = tokio::net::TcpListener::bind(&addr).await?;
    eprintln!("echo server on ws://{}", listener.local_addr()?);
    let options = Options {
        protocol: Arc::new(Config {
            deflate: Some(DeflateConfig::default()),
            ..Config::default()
        }),
        ..Options::default()
    };
    loop {
        let (tcp, _) = listener.accept().await?;
        let _ = tcp.set_nodelay(true);
        let options = options.clone();
        tokio::spawn(async move {
            let Ok(mut ws) = accept(tcp, &options).await else {
                return;
            };
            // Errors too are read past: the stream then writes the Close and ends.
            while let Some(message) = ws.next().await {
                if let Ok(message @ (Message::Text(_) | Message::Binary(_))) = message {
                    // `feed` queues without flushing: the next `next()` writes every
                    // answer of a burst at once. Refused only once closing.
                    let _ = ws.feed(message).await;
                }
            }
        });
    }
}
