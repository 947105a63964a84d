//! Peer echo server for `benches/compare.sh`: tokio-tungstenite as its `echo-server`
//! example shows it (split, forward text and binary), on a one-thread runtime so that it
//! is compared with `ws6455-server --threads 1`. Differences from the example, each
//! applied to every server compared: TCP_NODELAY, and 64 MiB as the message and frame
//! limit (ws6455's default; tungstenite's default frame limit, 16 MiB, is exactly the
//! largest workload's message size).
//!
//!     peer_tokio_tungstenite [ADDR]   (default 127.0.0.1:8080)

use futures_util::{future, StreamExt, TryStreamExt};
use tokio::net::{TcpListener, TcpStream};
use tokio_tungstenite::tungstenite::protocol::WebSocketConfig;

async fn accept_connection(stream: TcpStream) {
    let _ = stream.set_nodelay(true);
    let config = WebSocketConfig::default()
        .max_message_size(Some(64 << 20))
        .max_frame_size(Some(64 << 20));
    let Ok(ws_stream) = tokio_tungstenite::accept_async_with_config(stream, Some(config)).await
    else {
        return;
    };
    let (write, read) = ws_stream.split();
    let _ = read
        .try_filter(|msg| future::ready(msg.is_text() || msg.is_binary()))
        .forward(write)
        .await;
}

fn main() {
    let addr = std::env::args()
        .nth(1)
        .unwrap_or_else(|| "127.0.0.1:8080".to_string());
    let runtime = tokio::runtime::Builder::new_current_thread()
        .enable_io()
        .build()
        .expect("tokio runtime");
    runtime.block_on(async move {
        let listener = TcpListener::bind(&addr).await.expect("bind");
        while let Ok((stream, _)) = listener.accept().await {
            tokio::spawn(accept_connection(stream));
        }
    });
}
