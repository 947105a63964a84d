//! permessage-deflate between our client and our server over real sockets, a compressed
//! bomb against the inflated-size limit, and the fallback when the server declines.

use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use ws6455_client::*;

const WAIT: Duration = Duration::from_secs(10);

/// Records messages and the end of the connection.
#[derive(Clone, Default)]
struct Recorder {
    messages: Arc<Mutex<Vec<Data>>>,
}

impl Recorder {
    fn wait_messages(&self, count: usize) -> Vec<Data> {
        let deadline = Instant::now() + WAIT;
        loop {
            let messages = self.messages.lock().unwrap().clone();
            if messages.len() >= count {
                return messages;
            }
            assert!(
                Instant::now() < deadline,
                "only {} messages",
                messages.len()
            );
            std::thread::sleep(Duration::from_millis(5));
        }
    }
}

impl ClientHandler for Recorder {
    fn on_message(&self, _: &WebSocket, event: MessageEvent) {
        self.messages.lock().unwrap().push(event.data);
    }
}

/// Echoes; records the connection's errors.
struct Echo(Arc<EchoServer>);

impl ws6455_server::ConnectionHandler for Echo {
    fn on_message(
        &self,
        ws: &ws6455_server::WebSocketConnection,
        event: ws6455_server::MessageEvent,
    ) {
        let _ = ws.send(event.data);
    }

    fn on_error(&self, _: &ws6455_server::WebSocketConnection, event: ErrorEvent) {
        let mut errors = self.0.errors.lock().unwrap();
        errors.extend(event.errors.iter().map(|e| e.to_string()));
    }
}

/// What the server's connections reported.
#[derive(Default)]
struct EchoServer {
    errors: Mutex<Vec<String>>,
}

struct EchoServerRef(Arc<EchoServer>);

impl ws6455_server::ServerHandler for EchoServerRef {
    fn on_connection(
        &self,
        _: &ws6455_server::WebSocketServer,
        _: &ws6455_server::ConnectionEvent,
    ) -> Option<Arc<dyn ws6455_server::ConnectionHandler>> {
        Some(Arc::new(Echo(self.0.clone())))
    }
}

fn start(
    deflate: Option<DeflateConfig>,
    max_message_size: u64,
) -> (ws6455_server::WebSocketServer, Arc<EchoServer>) {
    let mut options = ws6455_server::ServerOptions {
        listen: "127.0.0.1:0".parse().unwrap(),
        ..ws6455_server::ServerOptions::default()
    };
    options.limits.protocol.deflate = deflate;
    options.limits.protocol.max_message_size = max_message_size;
    let record = Arc::new(EchoServer::default());
    let server =
        ws6455_server::WebSocketServer::new(EchoServerRef(record.clone()), options).unwrap();
    (server, record)
}

fn deflating(config: DeflateConfig) -> ClientOptions {
    ClientOptions {
        limits: LoopConfig {
            protocol: ProtocolConfig {
                deflate: Some(config),
                ..ProtocolConfig::default()
            },
            ..LoopConfig::default()
        },
        ..ClientOptions::default()
    }
}

#[test]
fn messages_round_trip_compressed_with_each_context_setting() {
    let (server, _) = start(Some(DeflateConfig::default()), 64 << 20);
    let url = format!("ws://127.0.0.1:{}/", server.local_addr().port());
    let settings = [
        DeflateConfig::default(),
        DeflateConfig {
            server_no_context_takeover: true,
            client_no_context_takeover: true,
            server_max_window_bits: 9,
            client_max_window_bits: 10,
            ..DeflateConfig::default()
        },
    ];
    for config in settings {
        let recorder = Recorder::default();
        let ws =
            WebSocket::with_options(&url, recorder.clone(), deflating(config.clone())).unwrap();
        let answer = ws
            .response_headers()
            .get("sec-websocket-extensions")
            .unwrap_or_default()
            .to_owned();
        assert!(answer.starts_with("permessage-deflate"), "{answer}");
        if config.server_no_context_takeover {
            assert!(answer.contains("server_no_context_takeover"), "{answer}");
        }
        let text = "a compressible line of chat, ".repeat(2000);
        let random: Vec<u8> = (0..300_000u32)
            .map(|i| (i.wrapping_mul(2_654_435_761) >> 24) as u8)
            .collect();
        let sent = [
            Data::Text(text.clone()),
            Data::Text(String::new()),
            Data::Blob(random),
            Data::Text("short".into()),
            Data::Text(text),
        ];
        for data in &sent {
            ws.send(data.clone()).unwrap();
        }
        let received = recorder.wait_messages(sent.len());
        assert_eq!(received, sent, "{config:?}");
        ws.terminate(None, None).unwrap();
        assert!(ws.wait(Some(WAIT)).expect("closed").was_clean);
    }
    server.terminate();
}

#[test]
fn a_compressed_bomb_is_refused_at_the_inflated_limit() {
    let (server, record) = start(Some(DeflateConfig::default()), 1 << 20);
    let url = format!("ws://127.0.0.1:{}/", server.local_addr().port());
    let ws = WebSocket::with_options(
        &url,
        Recorder::default(),
        deflating(DeflateConfig::default()),
    )
    .unwrap();
    // 64 MiB of zeros: about 64 KiB on the wire, far past the server's 1 MiB limit.
    ws.send(Data::Blob(vec![0u8; 64 << 20])).unwrap();
    let end = ws.wait(Some(WAIT)).expect("closed by the server");
    assert_eq!(end.code, 1009, "{end:?}");
    let deadline = Instant::now() + WAIT;
    while record.errors.lock().unwrap().is_empty() {
        assert!(Instant::now() < deadline, "no error reported");
        std::thread::sleep(Duration::from_millis(5));
    }
    let errors = record.errors.lock().unwrap().clone();
    assert!(errors[0].contains("1048577"), "{errors:?}");
    server.terminate();
}

#[test]
fn a_server_without_deflate_declines_and_messages_go_uncompressed() {
    let (server, _) = start(None, 64 << 20);
    let url = format!("ws://127.0.0.1:{}/", server.local_addr().port());
    let recorder = Recorder::default();
    let ws = WebSocket::with_options(&url, recorder.clone(), deflating(DeflateConfig::default()))
        .unwrap();
    assert_eq!(ws.response_headers().get("sec-websocket-extensions"), None);
    let text = "uncompressed ".repeat(100);
    ws.send(text.as_str()).unwrap();
    assert_eq!(recorder.wait_messages(1)[0].as_text(), Some(text.as_str()));
    ws.terminate(None, None).unwrap();
    server.terminate();
}
