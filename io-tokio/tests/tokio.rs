//! ws6455-tokio over real sockets and in-memory pipes: against itself, against
//! tokio-tungstenite both ways, against the mio server and client both ways, and a
//! property test over `tokio::io::duplex` with small capacities.

use std::sync::Arc;
use std::time::Duration;

use futures_util::{SinkExt, StreamExt};
use proptest::prelude::*;
use tokio::net::{TcpListener, TcpStream};
use tokio_tungstenite::tungstenite;
use ws6455_tokio::{
    accept, accept_with, client, connect, Choices, ClientRequest, CloseCode, CloseFrame, Config,
    ConnectError, Decision, DeflateConfig, Error, Message, Options,
};

/// Bounds every wait of these tests.
const WAIT: Duration = Duration::from_secs(10);

async fn within<T>(f: impl std::future::Future<Output = T>) -> T {
    tokio::time::timeout(WAIT, f).await.expect("in time")
}

/// A tokio echo server on a free port; returns its address.
async fn echo_server(options: Options) -> std::net::SocketAddr {
    let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    tokio::spawn(async move {
        loop {
            let Ok((tcp, _)) = listener.accept().await else {
                return;
            };
            let options = options.clone();
            tokio::spawn(async move {
                let Ok(mut ws) = accept(tcp, &options).await else {
                    return;
                };
                while let Some(Ok(message)) = ws.next().await {
                    if let Message::Text(_) | Message::Binary(_) = message {
                        let _ = ws.send(message).await;
                    }
                }
            });
        }
    });
    addr
}

fn deflate_options() -> Options {
    Options {
        protocol: Arc::new(Config {
            deflate: Some(DeflateConfig::default()),
            ..Config::default()
        }),
        ..Options::default()
    }
}

/// Reads until the next data message.
async fn next_data<S>(ws: &mut ws6455_tokio::WebSocketStream<S>) -> Message
where
    S: tokio::io::AsyncRead + tokio::io::AsyncWrite + Unpin,
{
    loop {
        let message = within(ws.next()).await.expect("a message").unwrap();
        if let Message::Text(_) | Message::Binary(_) = message {
            return message;
        }
    }
}

#[tokio::test]
async fn round_trips_with_itself_with_and_without_deflate() {
    for options in [Options::default(), deflate_options()] {
        let addr = echo_server(options.clone()).await;
        let (mut ws, response) = within(connect(&format!("ws://{addr}/x"), &options))
            .await
            .unwrap();
        let deflate = response
            .extensions
            .iter()
            .any(|e| e.starts_with("permessage-deflate"));
        assert_eq!(deflate, options.protocol.deflate.is_some());
        for message in [
            Message::Text("héllo".into()),
            Message::Text(String::new()),
            Message::Binary(vec![7; 1 << 20]),
        ] {
            ws.send(message.clone()).await.unwrap();
            assert_eq!(next_data(&mut ws).await, message);
        }
        ws.send(Message::Ping(b"p".to_vec())).await.unwrap();
        let pong = within(ws.next()).await.unwrap().unwrap();
        assert_eq!(pong, Message::Pong(b"p".to_vec()));
        ws.send(Message::Close(Some(CloseFrame {
            code: CloseCode(4000),
            reason: "bye".into(),
        })))
        .await
        .unwrap();
        // The server echoes our code; the stream ends once the server closes TCP.
        let echoed = within(ws.next()).await.unwrap().unwrap();
        assert!(matches!(echoed, Message::Close(Some(ref f)) if f.code == CloseCode(4000)));
        assert!(within(ws.next()).await.is_none());
        let status = ws.connection().close_status().unwrap();
        assert_eq!((status.code, status.clean), (CloseCode(4000), true));
    }
}

#[tokio::test]
async fn application_close_codes_are_checked() {
    let addr = echo_server(Options::default()).await;
    let (mut ws, _) = connect(&format!("ws://{addr}/"), &Options::default())
        .await
        .unwrap();
    let refused = ws
        .send(Message::Close(Some(CloseFrame {
            code: CloseCode(1001),
            reason: String::new(),
        })))
        .await;
    assert!(matches!(refused, Err(Error::Send(_))), "{refused:?}");
    // Still open: the refusal sent nothing.
    ws.send(Message::Text("still here".into())).await.unwrap();
    assert_eq!(next_data(&mut ws).await, Message::Text("still here".into()));
}

#[tokio::test]
async fn a_refusal_reaches_the_client_with_its_status() {
    let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    let server = tokio::spawn(async move {
        let (tcp, _) = listener.accept().await.unwrap();
        let decided = accept_with(tcp, &Options::default(), |request| {
            assert_eq!(request.path(), "/private");
            Decision::Reject {
                status: 403,
                reason: "no".into(),
            }
        })
        .await;
        assert!(matches!(
            decided,
            Err(ws6455_tokio::AcceptError::Refused(403))
        ));
    });
    let refused = connect(&format!("ws://{addr}/private"), &Options::default()).await;
    assert!(
        matches!(refused, Err(ConnectError::Refused { status: 403, .. })),
        "{refused:?}"
    );
    within(server).await.unwrap();
}

#[tokio::test]
async fn subprotocols_and_headers_are_chosen_by_the_server() {
    let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    tokio::spawn(async move {
        let (tcp, _) = listener.accept().await.unwrap();
        let (mut ws, request) = accept_with(tcp, &Options::default(), |request| {
            let chosen = request
                .subprotocols()
                .contains(&"chat")
                .then(|| "chat".to_owned());
            Decision::Accept(Choices {
                subprotocol: chosen,
                headers: vec![("Set-Cookie".into(), "a=1".into())],
            })
        })
        .await
        .unwrap();
        assert_eq!(request.query(), [("room".to_owned(), "1".to_owned())]);
        ws.send(Message::Text("welcome".into())).await.unwrap();
        while ws.next().await.is_some() {}
    });
    let tcp = TcpStream::connect(addr).await.unwrap();
    let host = addr.to_string();
    let request = ClientRequest {
        host: &host,
        resource: "/?room=1",
        subprotocols: &["superchat", "chat"],
        ..ClientRequest::default()
    };
    let (mut ws, response) = client(tcp, &request, &Options::default()).await.unwrap();
    assert_eq!(response.subprotocol.as_deref(), Some("chat"));
    assert_eq!(response.headers.get("set-cookie"), Some("a=1"));
    // Sent right behind the 101: the core kept it for the first read.
    assert_eq!(next_data(&mut ws).await, Message::Text("welcome".into()));
}

#[tokio::test]
async fn interoperates_with_tokio_tungstenite_both_ways() {
    // tokio-tungstenite client against our server.
    let addr = echo_server(Options::default()).await;
    let (mut peer, _) = tokio_tungstenite::connect_async(format!("ws://{addr}/"))
        .await
        .unwrap();
    peer.send(tungstenite::Message::text("from tungstenite"))
        .await
        .unwrap();
    let echoed = within(peer.next()).await.unwrap().unwrap();
    assert_eq!(echoed, tungstenite::Message::text("from tungstenite"));
    peer.close(None).await.unwrap();

    // Our client against a tokio-tungstenite echo server.
    let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    tokio::spawn(async move {
        let (tcp, _) = listener.accept().await.unwrap();
        let mut peer = tokio_tungstenite::accept_async(tcp).await.unwrap();
        while let Some(Ok(message)) = peer.next().await {
            if message.is_text() || message.is_binary() {
                peer.send(message).await.unwrap();
            }
        }
    });
    let (mut ws, _) = connect(&format!("ws://{addr}/"), &Options::default())
        .await
        .unwrap();
    ws.send(Message::Binary(vec![1, 2, 3])).await.unwrap();
    assert_eq!(next_data(&mut ws).await, Message::Binary(vec![1, 2, 3]));
    ws.close().await.unwrap();
    let close = within(ws.next()).await.unwrap().unwrap();
    assert!(matches!(close, Message::Close(Some(ref f)) if f.code == CloseCode::NORMAL));
    assert!(within(ws.next()).await.is_none());
}

struct MioEcho;

impl ws6455_server::ConnectionHandler for MioEcho {
    fn on_message(
        &self,
        ws: &ws6455_server::WebSocketConnection,
        event: ws6455_server::MessageEvent,
    ) {
        let _ = ws.send(event.data);
    }
}

struct MioServer;

impl ws6455_server::ServerHandler for MioServer {
    fn on_connection(
        &self,
        _: &ws6455_server::WebSocketServer,
        _: &ws6455_server::ConnectionEvent,
    ) -> Option<Arc<dyn ws6455_server::ConnectionHandler>> {
        Some(Arc::new(MioEcho))
    }
}

#[tokio::test]
async fn interoperates_with_the_mio_server_and_client() {
    // Our tokio client against the mio server, deflate on both.
    let mut server_options = ws6455_server::ServerOptions {
        listen: "127.0.0.1:0".parse().unwrap(),
        ..ws6455_server::ServerOptions::default()
    };
    server_options.limits.protocol.deflate = Some(DeflateConfig::default());
    let server = ws6455_server::WebSocketServer::new(MioServer, server_options).unwrap();
    let url = format!("ws://{}/", server.local_addr());
    let (mut ws, response) = connect(&url, &deflate_options()).await.unwrap();
    assert!(!response.extensions.is_empty(), "deflate agreed");
    let text = "compress me ".repeat(100);
    ws.send(Message::Text(text.clone())).await.unwrap();
    assert_eq!(next_data(&mut ws).await, Message::Text(text));
    drop(ws);
    server.terminate_with_timeout(Duration::ZERO);
    let stopped = tokio::task::spawn_blocking(move || server.wait(Some(WAIT)));
    assert!(stopped.await.unwrap());

    // The mio client against our tokio server.
    let addr = echo_server(Options::default()).await;
    let (sender, received) = std::sync::mpsc::channel();
    struct Forward(std::sync::Mutex<std::sync::mpsc::Sender<String>>);
    impl ws6455_client::ClientHandler for Forward {
        fn on_message(&self, _: &ws6455_client::WebSocket, event: ws6455_client::MessageEvent) {
            if let Some(text) = event.data.as_text() {
                let _ = self.0.lock().unwrap().send(text.to_owned());
            }
        }
    }
    let url = format!("ws://{addr}/");
    let got = tokio::task::spawn_blocking(move || {
        let ws =
            ws6455_client::WebSocket::new(&url, Forward(std::sync::Mutex::new(sender))).unwrap();
        ws.send("from mio").unwrap();
        let got = received.recv_timeout(WAIT).unwrap();
        ws.terminate(Some(4001), Some("done")).unwrap();
        let end = ws.wait(Some(WAIT)).unwrap();
        (got, end.code, end.was_clean)
    })
    .await
    .unwrap();
    assert_eq!(got, ("from mio".to_owned(), 4001, true));
}

// Regression: an echo server that `feed`s its answers and stops at the first error used
// to drop the echo of a message that arrived in the same read as a bad frame, and its
// Close (Autobahn 3.2, 4.1.3, 5.15 ... went NON-STRICT).
#[tokio::test]
async fn an_error_still_sends_what_came_before_it_and_the_close() {
    use tokio::io::{AsyncReadExt, AsyncWriteExt};
    let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    tokio::spawn(async move {
        let (tcp, _) = listener.accept().await.unwrap();
        let mut ws = accept(tcp, &Options::default()).await.unwrap();
        // Stops at the first error and drops the stream.
        while let Some(Ok(message)) = ws.next().await {
            if let Message::Text(_) | Message::Binary(_) = message {
                ws.feed(message).await.unwrap();
            }
        }
    });
    let mut tcp = TcpStream::connect(addr).await.unwrap();
    let key = "dGhlIHNhbXBsZSBub25jZQ==";
    let request = format!("GET / HTTP/1.1\r\nHost: h\r\nUpgrade: websocket\r\nConnection: Upgrade\r\nSec-WebSocket-Key: {key}\r\nSec-WebSocket-Version: 13\r\n\r\n");
    tcp.write_all(request.as_bytes()).await.unwrap();
    let mut response = vec![0u8; 1024];
    let n = within(tcp.read(&mut response)).await.unwrap();
    assert!(response[..n].starts_with(b"HTTP/1.1 101"));
    // A masked "ok", then a frame with the reserved opcode 3, in one write.
    let frames = [0x81, 0x82, 0, 0, 0, 0, b'o', b'k', 0x83, 0x80, 0, 0, 0, 0];
    tcp.write_all(&frames).await.unwrap();
    let mut got = Vec::new();
    within(tcp.read_to_end(&mut got)).await.unwrap();
    assert_eq!(
        &got[..4],
        [0x81, 0x02, b'o', b'k'],
        "the echo first: {got:02x?}"
    );
    assert_eq!(
        &got[4..8],
        [0x88, got[5], 0x03, 0xea],
        "then Close 1002: {got:02x?}"
    );
}

#[allow(dead_code)]
#[path = "../../server/tests/support/raw.rs"]
mod raw;

/// A peer still sending when the stream fails the connection (a message over the limit)
/// reads the Close with 1009, not a reset: a stream read to its end shuts the transport
/// down and discards what still comes until the peer's end of stream (or the linger
/// time), rather than closing with input unread.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_peer_still_sending_an_oversized_message_reads_its_1009() {
    let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    let options = Options {
        protocol: Arc::new(Config {
            max_message_size: 1024,
            ..Config::default()
        }),
        ..Options::default()
    };
    tokio::spawn(async move {
        while let Ok((tcp, _)) = listener.accept().await {
            let options = options.clone();
            tokio::spawn(async move {
                let mut ws = accept(tcp, &options).await.unwrap();
                // Read past the error to the end, as a stream should be.
                while ws.next().await.is_some() {}
            });
        }
    });
    for round in 0..10 {
        let close = tokio::task::spawn_blocking(move || raw::send_oversized_until_close(addr))
            .await
            .unwrap()
            .unwrap_or_else(|e| panic!("round {round}: {e}"));
        assert_eq!(close[2..4], [0x03, 0xF1], "round {round}: {close:?}");
    }
}

#[tokio::test]
async fn a_dropped_stream_ends_the_peer_with_1006() {
    let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    tokio::spawn(async move {
        let (tcp, _) = listener.accept().await.unwrap();
        let ws = accept(tcp, &Options::default()).await.unwrap();
        drop(ws);
    });
    let (mut ws, _) = connect(&format!("ws://{addr}/"), &Options::default())
        .await
        .unwrap();
    assert!(within(ws.next()).await.is_none());
    let status = ws.connection().close_status().unwrap();
    assert_eq!((status.code, status.clean), (CloseCode::ABNORMAL, false));
}

#[tokio::test]
async fn keepalive_fails_a_peer_that_never_answers() {
    // A "server" that completes the handshake and then reads and ignores everything.
    let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    tokio::spawn(async move {
        use tokio::io::{AsyncReadExt, AsyncWriteExt};
        let (mut tcp, _) = listener.accept().await.unwrap();
        let mut buf = vec![0u8; 4096];
        let n = tcp.read(&mut buf).await.unwrap();
        let request = String::from_utf8_lossy(&buf[..n]).to_string();
        let key = request
            .lines()
            .find_map(|l| l.strip_prefix("Sec-WebSocket-Key: "))
            .unwrap()
            .trim()
            .to_owned();
        let accept = ws6455_core::handshake::accept_key(&key);
        let response = format!("HTTP/1.1 101 Switching Protocols\r\nUpgrade: websocket\r\nConnection: Upgrade\r\nSec-WebSocket-Accept: {accept}\r\n\r\n");
        tcp.write_all(response.as_bytes()).await.unwrap();
        while tcp.read(&mut buf).await.is_ok_and(|n| n > 0) {}
    });
    let options = Options {
        protocol: Arc::new(Config {
            ping_interval: Some(Duration::from_millis(100)),
            pong_timeout: Duration::from_millis(200),
            ..Config::default()
        }),
        ..Options::default()
    };
    let (mut ws, _) = connect(&format!("ws://{addr}/"), &options).await.unwrap();
    let started = tokio::time::Instant::now();
    let failed = within(ws.next()).await.unwrap();
    assert!(matches!(failed, Err(Error::PongTimeout)), "{failed:?}");
    // Ping at 100 ms, no answer by 300 ms: the pong deadline, not some later wake-up.
    // (Regression: the Ping once waited for the next read to be written, and the pong
    // deadline was never armed.)
    let elapsed = started.elapsed();
    assert!(elapsed >= Duration::from_millis(300), "{elapsed:?}");
    assert!(elapsed < Duration::from_secs(3), "{elapsed:?}");
    assert!(within(ws.next()).await.is_none());
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(48))]

    /// Any messages, any fragmentation, any pipe capacity: everything arrives, in order.
    #[test]
    fn messages_round_trip_through_small_pipes(
        messages in proptest::collection::vec(
            prop_oneof![
                "[a-zé✓ ]{0,300}".prop_map(Message::Text),
                proptest::collection::vec(any::<u8>(), 0..3000).prop_map(Message::Binary),
            ],
            1..8,
        ),
        capacity in 1usize..64,
        fragment in prop_oneof![Just(None), (1usize..200).prop_map(Some)],
        deflate in any::<bool>(),
    ) {
        let runtime = tokio::runtime::Builder::new_current_thread().enable_all().build().unwrap();
        runtime.block_on(async {
            let (a, b) = tokio::io::duplex(capacity);
            let options = Options {
                protocol: Arc::new(Config {
                    fragment_size: fragment,
                    deflate: deflate.then(DeflateConfig::default),
                    ..Config::default()
                }),
                ..Options::default()
            };
            let server_options = options.clone();
            let server = tokio::spawn(async move {
                let mut ws = accept(b, &server_options).await.unwrap();
                let mut got = Vec::new();
                while let Some(Ok(message)) = ws.next().await {
                    if let Message::Text(_) | Message::Binary(_) = message {
                        got.push(message);
                    }
                }
                got
            });
            let request = ClientRequest { host: "pipe", resource: "/", ..ClientRequest::default() };
            let (mut ws, _) = client(a, &request, &options).await.unwrap();
            for message in &messages {
                ws.send(message.clone()).await.unwrap();
            }
            ws.close().await.unwrap();
            while within(ws.next()).await.is_some() {}
            let got = within(server).await.unwrap();
            assert_eq!(got, messages);
        });
    }
}

// Review fix: a connection made directly (no acceptor, no connector) has no time yet;
// the stream starts its timers, so an idle peer is still closed.
#[tokio::test]
async fn a_connection_made_directly_runs_its_timers() {
    let (a, _peer) = tokio::io::duplex(1024);
    let config = Config {
        idle_timeout: Some(Duration::from_millis(100)),
        close_timeout: Duration::from_millis(100),
        ..Config::default()
    };
    let conn = ws6455_core::Connection::server(config);
    let mut ws = ws6455_tokio::WebSocketStream::from_connection(a, conn, 1 << 20);
    // Idle at 100 ms: Close 1001 sent; no answer by 200 ms: the stream ends.
    assert!(within(ws.next()).await.is_none());
    assert_eq!(
        ws.connection().close_status().unwrap().code,
        CloseCode::ABNORMAL
    );
}

// Review fix: a peer that floods Pings and never reads gets at most the buffer cap of
// Pongs queued; the stream stops reading until the peer reads.
#[tokio::test]
async fn a_ping_flood_from_a_peer_that_never_reads_is_bounded() {
    use tokio::io::{AsyncReadExt, AsyncWriteExt};
    const CAP: usize = 64 << 10;
    let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    let server = tokio::spawn(async move {
        let (tcp, _) = listener.accept().await.unwrap();
        let options = Options {
            max_buffered: CAP,
            ..Options::default()
        };
        let mut ws = accept(tcp, &options).await.unwrap();
        let mut pings = 0;
        let mut most = 0;
        // Until the test's deadline: the flood never ends on its own.
        while let Ok(Some(Ok(Message::Ping(_)))) =
            tokio::time::timeout(Duration::from_secs(2), ws.next()).await
        {
            pings += 1;
            most = most.max(ws.connection().pending_output_len());
        }
        (pings, most)
    });
    let mut tcp = TcpStream::connect(addr).await.unwrap();
    let key = "dGhlIHNhbXBsZSBub25jZQ==";
    let request = format!("GET / HTTP/1.1\r\nHost: h\r\nUpgrade: websocket\r\nConnection: Upgrade\r\nSec-WebSocket-Key: {key}\r\nSec-WebSocket-Version: 13\r\n\r\n");
    tcp.write_all(request.as_bytes()).await.unwrap();
    let mut response = vec![0u8; 1024];
    within(tcp.read(&mut response)).await.unwrap();
    // Masked Pings with 125-byte payloads, written until the kernel stops taking them.
    let mut ping = vec![0x89, 0xfd, 0, 0, 0, 0];
    ping.extend_from_slice(&[7; 125]);
    let burst: Vec<u8> = ping.repeat(512);
    for _ in 0..400 {
        match tokio::time::timeout(Duration::from_millis(200), tcp.write_all(&burst)).await {
            Ok(Ok(())) => {}
            _ => break,
        }
    }
    let (pings, most) = within(server).await.unwrap();
    assert!(pings > 0);
    assert!(
        most <= CAP + 256,
        "{most} bytes of pongs queued for {pings} pings"
    );
}
