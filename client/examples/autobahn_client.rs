//! Drives the Autobahn|Testsuite fuzzing server with the ws6455 client: every case echoes
//! each message back as it came (text as text, binary as binary), then the reports are
//! written.
//!
//!     autobahn_client [URL] [AGENT]     # defaults ws://127.0.0.1:9001 and ws6455
//!
//! Start the server first: `../shared/tools/autobahn/fuzzingserver.sh 9001`
//! (`autobahn/client.sh` does both and checks the results).

use std::sync::mpsc;
use std::time::Duration;

use ws6455_client::*;

/// Echoes every message; used for the test cases.
struct Echo;

impl ClientHandler for Echo {
    fn on_message(&self, ws: &WebSocket, event: MessageEvent) {
        // Refused only when the connection is already closing: nothing to echo then.
        let _ = ws.send(event.data);
    }
}

/// Hands the first message to the main thread (for getCaseCount).
struct First(std::sync::Mutex<Option<mpsc::Sender<String>>>);

impl ClientHandler for First {
    fn on_message(&self, _: &WebSocket, event: MessageEvent) {
        if let (Some(sender), Some(text)) = (self.0.lock().unwrap().take(), event.data.as_text()) {
            let _ = sender.send(text.to_owned());
        }
    }
}

/// Bounds each case: the slowest Autobahn cases take a few seconds.
const CASE_TIMEOUT: Duration = Duration::from_secs(120);

fn main() -> Result<(), Box<dyn std::error::Error>> {
    let mut args = std::env::args().skip(1);
    let base = args.next().unwrap_or("ws://127.0.0.1:9001".into());
    let agent = args.next().unwrap_or("ws6455".into());

    let (sender, count) = mpsc::channel();
    let ws = WebSocket::new(
        &format!("{base}/getCaseCount"),
        First(std::sync::Mutex::new(Some(sender))),
    )?;
    let count: usize = count.recv_timeout(CASE_TIMEOUT)?.trim().parse()?;
    ws.wait(Some(CASE_TIMEOUT));
    println!("{count} cases");

    for case in 1..=count {
        let url = format!("{base}/runCase?case={case}&agent={agent}");
        // permessage-deflate offered with the defaults: the 12.* and 13.* cases answer it
        // with every parameter combination; the other cases ignore it.
        let options = ClientOptions {
            limits: LoopConfig {
                protocol: ProtocolConfig {
                    deflate: Some(DeflateConfig::default()),
                    ..ProtocolConfig::default()
                },
                ..LoopConfig::default()
            },
            ..ClientOptions::default()
        };
        match WebSocket::with_options(&url, Echo, options) {
            // Cases may end with our own refusal of bad input: that is what they test.
            Ok(ws) => {
                if ws.wait(Some(CASE_TIMEOUT)).is_none() {
                    eprintln!("case {case}: no end within {CASE_TIMEOUT:?}");
                    let _ = ws.terminate(None, None);
                }
            }
            Err(e) => eprintln!("case {case}: {e}"),
        }
    }

    let ws = WebSocket::new(&format!("{base}/updateReports?agent={agent}"), Echo)?;
    ws.wait(Some(CASE_TIMEOUT));
    println!("reports updated for agent {agent}");
    Ok(())
}
