//! Drives the Autobahn|Testsuite fuzzing server with the tokio client: every case echoes
//! each message back as it came, with permessage-deflate offered, then the reports are
//! written.
//!
//!     autobahn_tokio_client [URL] [AGENT]     # defaults ws://127.0.0.1:9001 and ws6455
//!
//! `AUTOBAHN_CLIENT=tokio autobahn/client.sh` starts the server, runs this and checks.

use std::sync::Arc;
use std::time::Duration;

use futures_util::{SinkExt, StreamExt};
use ws6455_tokio::{connect, Config, DeflateConfig, Message, Options};

/// Bounds each case: the slowest Autobahn cases take a few seconds.
const CASE_TIMEOUT: Duration = Duration::from_secs(120);

#[tokio::main(flavor = "current_thread")]
async fn main() -> Result<(), Box<dyn std::error::Error>> {
    let mut args = std::env::args().skip(1);
    let base = args.next().unwrap_or("ws://127.0.0.1:9001".into());
    let agent = args.next().unwrap_or("ws6455".into());
    let options = Options {
        protocol: Arc::new(Config {
            deflate: Some(DeflateConfig::default()),
            ..Config::default()
        }),
        ..Options::default()
    };

    let (mut ws, _) = connect(&format!("{base}/getCaseCount"), &options).await?;
    let mut count = 0;
    while let Some(Ok(message)) = ws.next().await {
        if let Message::Text(text) = message {
            count = text.trim().parse()?;
        }
    }
    println!("{count} cases");

    for case in 1..=count {
        let url = format!("{base}/runCase?case={case}&agent={agent}");
        let run = async {
            let (mut ws, _) = connect(&url, &options).await?;
            // Cases may end with our own refusal of bad input: that is what they test.
            // Errors too are read past: the stream then writes the Close and ends.
            while let Some(message) = ws.next().await {
                if let Ok(message @ (Message::Text(_) | Message::Binary(_))) = message {
                    // Queued; the next `next()` writes it (one write per burst).
                    let _ = ws.feed(message).await;
                }
            }
            Ok::<_, ws6455_tokio::ConnectError>(())
        };
        match tokio::time::timeout(CASE_TIMEOUT, run).await {
            Ok(Ok(())) => {}
            Ok(Err(e)) => eprintln!("case {case}: {e}"),
            Err(_) => eprintln!("case {case}: no end within {CASE_TIMEOUT:?}"),
        }
    }

    let (mut ws, _) = connect(&format!("{base}/updateReports?agent={agent}"), &options).await?;
    while ws.next().await.is_some() {}
    println!("reports updated for agent {agent}");
    Ok(())
}
