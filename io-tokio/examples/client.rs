//! A command-line client on tokio: each line typed is sent as a text message, each
//! message received is printed. `ws://` and `wss://` (Mozilla's roots); end with Ctrl-D,
//! which closes with 1000.
//!
//!     cargo run -p ws6455-tokio --example client -- [URL]
//!
//! URL defaults to ws://127.0.0.1:9002/ (the chat_room example).

use futures_util::{SinkExt, StreamExt};
use tokio::io::AsyncBufReadExt;
use ws6455_tokio::{connect, Message, Options};

#[tokio::main(flavor = "current_thread")]
async fn main() -> Result<(), Box<dyn std::error::Error>> {
    let url = std::env::args()
        .nth(1)
        .unwrap_or("ws://127.0.0.1:9002/".into());
    let (mut ws, _) = connect(&url, &Options::default()).await?;
    eprintln!("connected to {url}");
    let mut lines = tokio::io::BufReader::new(tokio::io::stdin()).lines();
    let mut typing = true;
    loop {
        tokio::select! {
            line = lines.next_line(), if typing => match line? {
                Some(line) => ws.send(Message::Text(line)).await?,
                None => {
                    typing = false;
                    ws.close().await?;
                }
            },
            message = ws.next() => match message {
                Some(Ok(Message::Text(text))) => println!("{text}"),
                Some(Ok(Message::Binary(data))) => println!("({} bytes)", data.len()),
                Some(Ok(Message::Close(frame))) => eprintln!("closed: {frame:?}"),
                Some(Ok(_)) => {}
                Some(Err(e)) => eprintln!("error: {e}"),
                None => return Ok(()),
            },
        }
    }
}
