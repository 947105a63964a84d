//! The server API over real sockets on 127.0.0.1, driven by an independent client
//! (tungstenite) and by raw TCP for what a well-behaved client would never send.

use std::io::{Read, Write};
use std::net::TcpStream;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use tungstenite::protocol::frame::coding::CloseCode as TCloseCode;
use tungstenite::protocol::CloseFrame as TCloseFrame;
use tungstenite::{Message, WebSocket};
use ws6455_server::*;

const WAIT: Duration = Duration::from_secs(5);
#[allow(dead_code)]
#[path = "support/raw.rs"]
mod raw;
use raw::{read_head, write_until_stalled, UPGRADE};

/// Records every callback, in order, as text.
#[derive(Default)]
struct Recorder {
    log: Mutex<Vec<String>>,
}

impl Recorder {
    fn push(&self, entry: String) {
        self.log.lock().unwrap().push(entry);
    }

    fn entries(&self) -> Vec<String> {
        self.log.lock().unwrap().clone()
    }

    /// Waits (bounded) until an entry starting with `prefix` is recorded.
    fn wait_for(&self, prefix: &str) -> Vec<String> {
        let deadline = Instant::now() + WAIT;
        loop {
            let entries = self.entries();
            if entries.iter().any(|e| e.starts_with(prefix)) {
                return entries;
            }
            assert!(Instant::now() < deadline, "no {prefix:?} in {entries:?}");
            std::thread::sleep(Duration::from_millis(5));
        }
    }
}

/// What `on_connection` saw: url, query, the X-Multi values, the remote IP.
type SeenRequest = (String, Vec<(String, String)>, Vec<String>, String);

/// Echoes, records, and obeys a few commands sent as text.
struct TestConn {
    recorder: Arc<Recorder>,
}

impl ConnectionHandler for TestConn {
    fn on_open(&self, ws: &WebSocketConnection) {
        self.recorder.push(format!("open {:?}", ws.status()));
    }

    fn on_message(&self, ws: &WebSocketConnection, event: MessageEvent) {
        self.recorder.push(format!("message {:?}", event.data));
        match &event.data {
            Data::Text(t) if t == "panic" => panic!("handler asked to panic"),
            Data::Text(t) if t == "send-then-panic" => {
                ws.send("last words").unwrap();
                panic!("handler asked to panic after a send");
            }
            // Keeps the loop thread busy, so that the test can queue input meanwhile.
            Data::Text(t) if t == "sleep" => std::thread::sleep(Duration::from_millis(300)),
            Data::Text(t) if t == "close-4000" => ws.terminate(Some(4000), Some("bye")).unwrap(),
            // What a callback sees of its own terminate: the status at once, sends refused.
            Data::Text(t) if t == "close-then-send" => {
                ws.send("before close").unwrap();
                ws.terminate(Some(4000), Some("bye")).unwrap();
                let refused = ws.send("after close");
                self.recorder
                    .push(format!("after terminate {:?} {refused:?}", ws.status()));
            }
            // A large send to every other connection, then (from another) a send whose
            // cap check must count it.
            Data::Text(t) if t == "flood-others" => {
                for other in ws.wss().connections() {
                    if other.id() != ws.id() {
                        let _ = other.send(vec![0u8; 1 << 20]);
                    }
                }
            }
            Data::Text(t) if t == "probe-cap" => {
                let verdict = match ws.send("probe") {
                    Ok(()) => "accepted",
                    Err(SendError::BufferFull { .. }) => "full",
                    Err(_) => "other",
                };
                self.recorder.push(format!("probe {verdict}"));
            }
            // A send to every other connection, from this one's callback.
            Data::Text(t) if t == "poke-others" => {
                for other in ws.wss().connections() {
                    if other.id() != ws.id() {
                        let _ = other.send(format!("poke from {}", ws.id()));
                    }
                }
            }
            // The handler as the application's own type, from its connection.
            Data::Text(t) if t == "handler" => {
                let mine = ws
                    .handler_as::<TestConn>()
                    .map(|h| Arc::ptr_eq(&h.recorder, &self.recorder));
                let other = ws.handler_as::<TestServer>().is_some();
                ws.send(format!("mine={mine:?} other={other}")).unwrap();
            }
            // `wait` on the loop thread must not block (the loop could never end).
            Data::Text(t) if t == "wait" => {
                let start = Instant::now();
                let terminated = ws.wss().wait(Some(Duration::from_secs(10)));
                let quick = start.elapsed() < Duration::from_secs(1);
                ws.send(format!("waited terminated={terminated} quick={quick}"))
                    .unwrap();
            }
            Data::Text(t) if t == "from-thread" => {
                let ws = ws.clone();
                std::thread::spawn(move || ws.send("sent from another thread").unwrap())
                    .join()
                    .unwrap();
            }
            _ => ws.send(event.data).unwrap(),
        }
    }

    fn on_error(&self, _: &WebSocketConnection, event: ErrorEvent) {
        self.recorder
            .push(format!("error {}", event.errors[0].code));
    }

    fn on_terminate(&self, ws: &WebSocketConnection, event: TerminateEvent) {
        self.recorder.push(format!(
            "terminate {} {:?} {} {:?}",
            event.code,
            event.reason,
            event.was_clean,
            ws.status()
        ));
    }
}

struct TestServer {
    recorder: Arc<Recorder>,
    requests: Arc<Mutex<Vec<SeenRequest>>>,
}

impl ServerHandler for TestServer {
    fn on_connection(
        &self,
        _: &WebSocketServer,
        event: &ConnectionEvent,
    ) -> Option<Arc<dyn ConnectionHandler>> {
        let r = &event.request;
        self.requests.lock().unwrap().push((
            r.url().to_owned(),
            r.query(),
            r.headers().get_all("x-multi").map(str::to_owned).collect(),
            r.remote_address().ip().to_string(),
        ));
        if r.query_param("refuse").is_some() {
            return None;
        }
        Some(Arc::new(TestConn {
            recorder: self.recorder.clone(),
        }))
    }

    fn on_http_request(&self, _: &WebSocketServer, request: &Request) -> Option<HttpResponse> {
        (request.path() == "/health").then(|| HttpResponse::ok("text/plain", "ok"))
    }

    fn on_terminate(&self, _: &WebSocketServer) {
        self.recorder.push("server terminate".into());
    }
}

struct Fixture {
    server: WebSocketServer,
    recorder: Arc<Recorder>,
    requests: Arc<Mutex<Vec<SeenRequest>>>,
}

fn start(options: ServerOptions) -> Fixture {
    let recorder = Arc::new(Recorder::default());
    let requests = Arc::new(Mutex::new(Vec::new()));
    let options = ServerOptions {
        listen: "127.0.0.1:0".parse().unwrap(),
        ..options
    };
    let server = WebSocketServer::new(
        TestServer {
            recorder: recorder.clone(),
            requests: requests.clone(),
        },
        options,
    )
    .unwrap();
    Fixture {
        server,
        recorder,
        requests,
    }
}

fn connect(server: &WebSocketServer, resource: &str) -> WebSocket<TcpStream> {
    try_connect(server, resource).unwrap()
}

fn try_connect(
    server: &WebSocketServer,
    resource: &str,
) -> Result<WebSocket<TcpStream>, Box<tungstenite::Error>> {
    let stream = TcpStream::connect(server.local_addr()).unwrap();
    stream.set_read_timeout(Some(WAIT)).unwrap();
    let url = format!("ws://{}{resource}", server.local_addr());
    tungstenite::client(url, stream)
        .map(|(ws, _)| ws)
        .map_err(|e| match e {
            tungstenite::HandshakeError::Failure(e) => Box::new(e),
            tungstenite::HandshakeError::Interrupted(_) => panic!("blocking handshake interrupted"),
        })
}

/// Reads until a Close arrives, then lets tungstenite answer it and waits for the server
/// to close TCP; returns the code and reason.
fn read_close(ws: &mut WebSocket<TcpStream>) -> (u16, String) {
    let close = loop {
        match ws.read() {
            Ok(Message::Close(Some(frame))) => break (frame.code.into(), frame.reason.to_string()),
            Ok(Message::Close(None)) => break (1005, String::new()),
            Ok(_) => continue,
            Err(e) => panic!("no close frame: {e}"),
        }
    };
    while ws.read().is_ok() {}
    close
}

/// Sends raw bytes and returns everything the server answers until it closes.
fn raw_exchange(server: &WebSocketServer, bytes: &[u8]) -> String {
    let mut stream = TcpStream::connect(server.local_addr()).unwrap();
    stream.set_read_timeout(Some(WAIT)).unwrap();
    stream.write_all(bytes).unwrap();
    let mut answer = Vec::new();
    let _ = stream.read_to_end(&mut answer);
    String::from_utf8_lossy(&answer).into_owned()
}

fn wait_until(what: &str, mut condition: impl FnMut() -> bool) {
    let deadline = Instant::now() + WAIT;
    while !condition() {
        assert!(Instant::now() < deadline, "timed out waiting for {what}");
        std::thread::sleep(Duration::from_millis(5));
    }
}

#[test]
fn echo_order_status_and_peer_close() {
    let f = start(ServerOptions::default());
    let mut ws = connect(&f.server, "/chat?name=ryan%20b&x=1");
    ws.send(Message::Text("hello".into())).unwrap();
    assert_eq!(ws.read().unwrap(), Message::Text("hello".into()));
    ws.send(Message::Binary(vec![1, 2, 3])).unwrap();
    assert_eq!(ws.read().unwrap(), Message::Binary(vec![1, 2, 3]));
    let conns = f.server.connections();
    assert_eq!(conns.len(), 1);
    assert_eq!(conns[0].status(), Status::Connected);
    ws.close(Some(TCloseFrame {
        code: TCloseCode::from(4001),
        reason: "done".into(),
    }))
    .unwrap();
    // The server answers our Close and closes TCP.
    while ws.read().is_ok() {}
    let log = f.recorder.wait_for("terminate");
    assert_eq!(
        log,
        [
            "open Connected",
            "message Text(\"hello\")",
            "message Blob([1, 2, 3])",
            "terminate 4001 Some(\"done\") true Closed",
        ]
    );
    wait_until("connection removed", || f.server.connections().is_empty());
    let requests = f.requests.lock().unwrap();
    assert_eq!(requests[0].0, "/chat?name=ryan%20b&x=1");
    assert_eq!(
        requests[0].1,
        [("name".into(), "ryan b".into()), ("x".into(), "1".into())]
    );
    assert_eq!(requests[0].3, "127.0.0.1");
}

#[test]
fn refusals_get_the_right_http_status() {
    let f = start(ServerOptions {
        path: Some("/ws/*".into()),
        ..ServerOptions::default()
    });
    let status = |resource: &str| match try_connect(&f.server, resource) {
        Ok(_) => 101,
        Err(e) => match *e {
            tungstenite::Error::Http(response) => response.status().as_u16(),
            e => panic!("unexpected error {e}"),
        },
    };
    assert_eq!(status("/ws/room1"), 101);
    assert_eq!(status("/other"), 404);
    assert_eq!(status("/ws/x?refuse=1"), 403);
    let addr = f.server.local_addr();
    let plain = raw_exchange(
        &f.server,
        format!("GET /ws/a HTTP/1.1\r\nHost: {addr}\r\n\r\n").as_bytes(),
    );
    assert!(plain.starts_with("HTTP/1.1 426 "), "{plain}");
    let health = raw_exchange(
        &f.server,
        format!("GET /health HTTP/1.1\r\nHost: {addr}\r\n\r\n").as_bytes(),
    );
    assert!(
        health.starts_with("HTTP/1.1 200 OK") && health.ends_with("ok"),
        "{health}"
    );
    let no_key = raw_exchange(
        &f.server,
        b"GET /ws/a HTTP/1.1\r\nHost: h\r\nUpgrade: websocket\r\nConnection: Upgrade\r\nSec-WebSocket-Version: 13\r\n\r\n",
    );
    assert!(
        no_key.starts_with("HTTP/1.1 400 ") && no_key.contains("Sec-WebSocket-Key"),
        "{no_key}"
    );
    let old_version = raw_exchange(
        &f.server,
        b"GET /ws/a HTTP/1.1\r\nHost: h\r\nUpgrade: websocket\r\nConnection: Upgrade\r\nSec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==\r\nSec-WebSocket-Version: 8\r\n\r\n",
    );
    assert!(
        old_version.starts_with("HTTP/1.1 426 ")
            && old_version.contains("Sec-WebSocket-Version: 13")
    );
    let huge = format!("GET /ws/a HTTP/1.1\r\nX: {}\r\n\r\n", "a".repeat(20_000));
    assert!(raw_exchange(&f.server, huge.as_bytes()).starts_with("HTTP/1.1 431 "));
}

#[test]
fn object_data_type_parses_json_and_fails_with_1007() {
    let f = start(ServerOptions {
        data_type: DataType::Object,
        ..ServerOptions::default()
    });
    assert_eq!(f.server.data_type(), DataType::Object);
    let mut ws = connect(&f.server, "/");
    ws.send(Message::Text(r#"{"a":[1,2]}"#.into())).unwrap();
    assert_eq!(ws.read().unwrap(), Message::Text(r#"{"a":[1,2]}"#.into()));
    ws.send(Message::Text("{not json".into())).unwrap();
    let (code, reason) = read_close(&mut ws);
    assert_eq!(code, 1007);
    assert!(reason.contains("invalid JSON"), "{reason}");
    let log = f.recorder.wait_for("terminate");
    assert_eq!(
        log[1],
        "message Object(Object {\"a\": Array [Number(1), Number(2)]})"
    );
    assert_eq!(log[2], "error 1007");
    assert!(log[3].starts_with("terminate"));
    assert_eq!(log.len(), 4);
}

#[test]
fn blob_data_type_delivers_bytes() {
    let f = start(ServerOptions {
        data_type: DataType::Blob,
        ..ServerOptions::default()
    });
    let mut ws = connect(&f.server, "/");
    ws.send(Message::Text("as bytes".into())).unwrap();
    // Echoed as binary: in blob mode the handler sees bytes.
    assert_eq!(ws.read().unwrap(), Message::Binary(b"as bytes".to_vec()));
    f.recorder.wait_for("message Blob");
}

#[test]
fn server_side_terminate_codes_and_other_threads() {
    let f = start(ServerOptions::default());
    let mut ws = connect(&f.server, "/");
    ws.send(Message::Text("from-thread".into())).unwrap();
    assert_eq!(
        ws.read().unwrap(),
        Message::Text("sent from another thread".into())
    );
    let conn = f.server.connections().remove(0);
    assert!(matches!(
        conn.terminate(Some(1001), None),
        Err(SendError::Protocol(_))
    ));
    assert!(matches!(
        conn.terminate(Some(2999), None),
        Err(SendError::Protocol(_))
    ));
    assert!(conn.terminate(Some(4000), Some(&"x".repeat(124))).is_err());
    ws.send(Message::Text("close-4000".into())).unwrap();
    assert_eq!(read_close(&mut ws), (4000, "bye".into()));
    let log = f.recorder.wait_for("terminate");
    // tungstenite echoes our code and reason.
    assert_eq!(
        log.last().unwrap(),
        "terminate 4000 Some(\"bye\") true Closed"
    );
    assert!(conn.send("too late").is_err());
}

#[test]
fn a_callbacks_terminate_shows_at_once_and_refuses_later_sends() {
    let f = start(ServerOptions::default());
    let mut ws = connect(&f.server, "/");
    ws.send(Message::Text("close-then-send".into())).unwrap();
    assert_eq!(ws.read().unwrap(), Message::Text("before close".into()));
    assert_eq!(read_close(&mut ws), (4000, "bye".into()));
    let log = f.recorder.wait_for("terminate");
    assert!(
        log.contains(&"after terminate Closing Err(NotOpen(Closing))".to_owned()),
        "{log:?}"
    );
}

#[test]
fn sends_between_connections_keep_the_order_of_the_callbacks_that_made_them() {
    let f = start(ServerOptions::default());
    let mut busy = connect(&f.server, "/");
    let mut a = connect(&f.server, "/");
    let mut b = connect(&f.server, "/");
    wait_until("three open", || f.server.connections().len() == 3);
    // While the loop sleeps in `busy`'s callback, A's poke and B's own message arrive, so
    // that the loop's next turn runs both callbacks: B's echo is made after A's poke to B
    // exactly when B's callback ran second, and must reach B in that order.
    busy.send(Message::Text("sleep".into())).unwrap();
    std::thread::sleep(Duration::from_millis(100));
    a.send(Message::Text("poke-others".into())).unwrap();
    b.send(Message::Text("b's own".into())).unwrap();
    let got = [b.read().unwrap(), b.read().unwrap()].map(|m| m.into_text().unwrap());
    let log = f.recorder.entries();
    let poked_first = log.iter().position(|e| e.contains("poke-others"))
        < log.iter().position(|e| e.contains("b's own"));
    let echo_at = if poked_first { 1 } else { 0 };
    assert_eq!(got[echo_at].as_str(), "b's own", "{got:?} {log:?}");
    assert!(got[1 - echo_at].starts_with("poke from "), "{got:?}");
    drop((busy, a));
}

#[test]
fn a_callbacks_send_counts_what_another_callback_queued_for_it() {
    let f = start(ServerOptions {
        limits: LoopConfig {
            max_buffered: 64 << 10,
            ..LoopConfig::default()
        },
        ..ServerOptions::default()
    });
    let mut busy = connect(&f.server, "/");
    let mut a = connect(&f.server, "/");
    let mut b = connect(&f.server, "/"); // never reads
    wait_until("three open", || f.server.connections().len() == 3);
    // As above: both callbacks run in the loop's next turn. When A's callback ran first,
    // B's buffer holds a MiB over its 64 KiB cap by the time B's callback sends.
    busy.send(Message::Text("sleep".into())).unwrap();
    std::thread::sleep(Duration::from_millis(100));
    a.send(Message::Text("flood-others".into())).unwrap();
    b.send(Message::Text("probe-cap".into())).unwrap();
    let log = f.recorder.wait_for("probe");
    let flooded_first = log.iter().position(|e| e.contains("flood-others"))
        < log.iter().position(|e| e.contains("probe-cap"));
    if flooded_first {
        assert!(log.contains(&"probe full".to_owned()), "{log:?}");
    }
    drop((busy, a, b));
}

#[test]
fn panicking_handler_fails_only_its_connection() {
    let f = start(ServerOptions::default());
    let mut bystander = connect(&f.server, "/");
    let mut ws = connect(&f.server, "/");
    ws.send(Message::Text("panic".into())).unwrap();
    assert_eq!(read_close(&mut ws).0, 1011);
    f.recorder.wait_for("error 1011");
    // What a handler sent before it panicked still goes out, before the Close.
    let mut ws = connect(&f.server, "/");
    ws.send(Message::Text("send-then-panic".into())).unwrap();
    assert_eq!(ws.read().unwrap(), Message::Text("last words".into()));
    assert_eq!(read_close(&mut ws).0, 1011);
    bystander.send(Message::Text("still here".into())).unwrap();
    assert_eq!(
        bystander.read().unwrap(),
        Message::Text("still here".into())
    );
}

#[test]
fn protocol_error_from_peer_closes_1002_and_reports_1006() {
    let f = start(ServerOptions::default());
    let addr = f.server.local_addr();
    let mut stream = TcpStream::connect(addr).unwrap();
    stream.set_read_timeout(Some(WAIT)).unwrap();
    stream
        .write_all(&[UPGRADE, b"\x81\x02hi"].concat())
        .unwrap();
    let mut answer = Vec::new();
    let _ = stream.read_to_end(&mut answer);
    let text = String::from_utf8_lossy(&answer);
    assert!(text.starts_with("HTTP/1.1 101 "));
    let frames = &answer[text.find("\r\n\r\n").unwrap() + 4..];
    assert_eq!(&frames[..4], [0x88, frames[1], 0x03, 0xea], "close 1002");
    let log = f.recorder.wait_for("terminate");
    assert_eq!(
        log,
        [
            "open Connected",
            "error 1002",
            "terminate 1006 None false Closed"
        ]
    );
}

/// Regression (Autobahn 3.2, 5.15...): a message and a bad frame in one TCP segment. The
/// echo of the message must go out before the close, not be dropped with the connection.
#[test]
fn echo_is_sent_before_a_later_frame_in_the_same_read_fails() {
    let f = start(ServerOptions::default());
    let mut stream = TcpStream::connect(f.server.local_addr()).unwrap();
    stream.set_read_timeout(Some(WAIT)).unwrap();
    let mut request = UPGRADE.to_vec();
    // Masked (zero key) "hi", then a frame with RSV1 set: 1002.
    request.extend_from_slice(b"\x81\x82\0\0\0\0hi\xc1\x80\0\0\0\0");
    stream.write_all(&request).unwrap();
    let mut answer = Vec::new();
    let _ = stream.read_to_end(&mut answer);
    let text = String::from_utf8_lossy(&answer);
    assert!(text.starts_with("HTTP/1.1 101 "));
    let frames = &answer[text.find("\r\n\r\n").unwrap() + 4..];
    assert_eq!(&frames[..4], b"\x81\x02hi", "the echo comes first");
    assert_eq!(
        &frames[4..8],
        [0x88, frames[5], 0x03, 0xea],
        "then close 1002"
    );
}

/// Regression: data and the peer's FIN arriving together. A short read does not prove
/// that nothing more is to be read when the poller also reported the end of the stream:
/// the loop skipped the read that would have returned it, and never noticed the peer
/// was gone.
#[test]
fn a_message_and_the_peers_fin_arriving_together_are_both_seen() {
    let f = start(ServerOptions::default());
    let mut stream = TcpStream::connect(f.server.local_addr()).unwrap();
    stream.set_read_timeout(Some(WAIT)).unwrap();
    // "sleep", masked with a zero key: the loop thread sleeps in the callback.
    stream
        .write_all(&[UPGRADE, b"\x81\x85\0\0\0\0sleep"].concat())
        .unwrap();
    f.recorder.wait_for("message Text(\"sleep\")");
    // Both arrive while the loop is busy, so one readiness event reports them.
    stream.write_all(b"\x81\x82\0\0\0\0hi").unwrap();
    stream.shutdown(std::net::Shutdown::Write).unwrap();
    let log = f.recorder.wait_for("terminate");
    assert_eq!(
        log,
        [
            "open Connected",
            "message Text(\"sleep\")",
            "message Text(\"hi\")",
            "terminate 1006 None false Closed"
        ]
    );
}

#[test]
fn terminate_closes_everyone_with_1001_then_reports() {
    let f = start(ServerOptions::default());
    let mut a = connect(&f.server, "/");
    let mut b = connect(&f.server, "/");
    wait_until("two connections", || f.server.connections().len() == 2);
    assert!(!f.server.terminated());
    f.server.terminate();
    assert_eq!(read_close(&mut a).0, 1001);
    assert_eq!(read_close(&mut b).0, 1001);
    assert!(f.server.wait(Some(WAIT)));
    assert!(f.server.terminated());
    let log = f.recorder.entries();
    assert_eq!(log.last().unwrap(), "server terminate");
    assert_eq!(
        log.iter()
            .filter(|e| e.starts_with("terminate 1001"))
            .count(),
        2
    );
    assert!(TcpStream::connect(f.server.local_addr()).is_err());
}

#[test]
fn terminate_with_zero_timeout_destroys_at_once() {
    let f = start(ServerOptions::default());
    let mut ws = connect(&f.server, "/");
    wait_until("connection", || f.server.connections().len() == 1);
    f.server.terminate_with_timeout(Duration::ZERO);
    // No close frame: the connection is reset or ends.
    match ws.read() {
        Ok(Message::Close(_)) => panic!("a close frame was sent"),
        Ok(other) => panic!("unexpected {other:?}"),
        Err(_) => {}
    }
    assert!(f.server.wait(Some(WAIT)));
    f.recorder.wait_for("terminate 1006");
}

#[test]
fn terminate_with_timeout_forces_silent_peers() {
    let f = start(ServerOptions::default());
    // A peer that never answers the Close: raw TCP that completes the handshake only.
    let mut stream = TcpStream::connect(f.server.local_addr()).unwrap();
    stream.write_all(UPGRADE).unwrap();
    wait_until("connection", || f.server.connections().len() == 1);
    let started = Instant::now();
    f.server.terminate_with_timeout(Duration::from_millis(200));
    // A later terminate without a timeout does not cancel the deadline (regression).
    f.server.terminate();
    assert!(f.server.wait(Some(WAIT)));
    assert!(
        started.elapsed() < Duration::from_secs(4),
        "forced at the deadline, not the close timeout"
    );
    f.recorder.wait_for("terminate 1006");
}

#[test]
fn broadcast_reaches_all_but_the_excluded() {
    let f = start(ServerOptions::default());
    let mut a = connect(&f.server, "/");
    let mut b = connect(&f.server, "/");
    wait_until("two connections", || f.server.connections().len() == 2);
    let first = f.server.connections()[0].id();
    assert_eq!(f.server.broadcast("to all", None), 2);
    assert_eq!(f.server.broadcast("to one", Some(first)), 1);
    // Each client then sends "end", echoed after the broadcasts queued before it: what a
    // client reads before its "end" is all it was sent.
    let mut received = Vec::new();
    for ws in [&mut a, &mut b] {
        ws.send(Message::text("end")).unwrap();
        let mut texts = Vec::new();
        loop {
            match ws.read().unwrap() {
                Message::Text(t) if t.as_str() == "end" => break,
                Message::Text(t) => texts.push(t.to_string()),
                other => panic!("unexpected {other:?}"),
            }
        }
        received.push(texts);
    }
    received.sort();
    assert_eq!(received, [vec!["to all"], vec!["to all", "to one"]]);
}

#[test]
fn handshake_timeout_cuts_off_slow_clients() {
    let f = start(ServerOptions {
        limits: LoopConfig {
            protocol: ProtocolConfig {
                handshake_timeout: Duration::from_millis(200),
                ..ProtocolConfig::default()
            },
            ..LoopConfig::default()
        },
        ..ServerOptions::default()
    });
    let mut stream = TcpStream::connect(f.server.local_addr()).unwrap();
    stream.set_read_timeout(Some(WAIT)).unwrap();
    stream
        .write_all(b"GET / HTTP/1.1\r\nHost: slow\r\n")
        .unwrap();
    let started = Instant::now();
    let mut buf = [0u8; 16];
    let n = stream.read(&mut buf).unwrap_or(0);
    assert_eq!(n, 0, "the server closed the connection");
    assert!(started.elapsed() < Duration::from_secs(3));
}

#[test]
fn backpressure_refuses_sends_when_the_peer_does_not_read() {
    let f = start(ServerOptions {
        limits: LoopConfig {
            max_buffered: 256 << 10,
            ..LoopConfig::default()
        },
        ..ServerOptions::default()
    });
    let _ws = connect(&f.server, "/"); // never reads
    wait_until("connection", || f.server.connections().len() == 1);
    let conn = f.server.connections().remove(0);
    let chunk = vec![0u8; 64 << 10];
    let mut refused = None;
    for _ in 0..10_000 {
        match conn.send(chunk.clone()) {
            Ok(()) => {}
            Err(e) => {
                refused = Some(e);
                break;
            }
        }
        std::thread::sleep(Duration::from_millis(1));
    }
    assert!(
        matches!(refused, Some(SendError::BufferFull { .. })),
        "{refused:?}"
    );
    assert!(conn.buffered_amount() > 0);
    assert_eq!(conn.status(), Status::Connected);
}

/// What a [`CountingEcho`] saw.
#[derive(Default)]
struct Counts {
    messages: std::sync::atomic::AtomicUsize,
    errors: Mutex<Vec<String>>,
}

/// Echoes blobs, counting messages and errors (no per-message log: the messages are big).
#[derive(Clone, Default)]
struct CountingEcho(Arc<Counts>);

impl std::ops::Deref for CountingEcho {
    type Target = Counts;
    fn deref(&self) -> &Counts {
        &self.0
    }
}

impl ConnectionHandler for CountingEcho {
    fn on_message(&self, ws: &WebSocketConnection, event: MessageEvent) {
        self.messages
            .fetch_add(1, std::sync::atomic::Ordering::SeqCst);
        if let Err(e) = ws.send(event.data) {
            self.errors
                .lock()
                .unwrap()
                .push(format!("send refused: {e}"));
        }
    }

    fn on_error(&self, _: &WebSocketConnection, event: ErrorEvent) {
        self.errors
            .lock()
            .unwrap()
            .push(event.errors[0].to_string());
    }
}

impl ServerHandler for CountingEcho {
    fn on_connection(
        &self,
        _: &WebSocketServer,
        _: &ConnectionEvent,
    ) -> Option<Arc<dyn ConnectionHandler>> {
        Some(Arc::new(self.clone()))
    }
}

/// A peer that sends without reading: the echo server stops reading from it (TCP flow
/// control stalls the peer), buffers at most about the cap, refuses no echo, and loses
/// nothing once the peer reads again.
#[test]
fn echo_to_a_peer_that_does_not_read_is_flow_controlled_not_buffered() {
    const CAP: usize = 256 << 10;
    const PAYLOAD: usize = 60_000; // the echo has a 4-byte header (16-bit length)
    let echo = CountingEcho::default();
    let server = WebSocketServer::new(
        echo.clone(),
        ServerOptions {
            listen: "127.0.0.1:0".parse().unwrap(),
            data_type: DataType::Blob,
            limits: LoopConfig {
                max_buffered: CAP,
                ..LoopConfig::default()
            },
            ..ServerOptions::default()
        },
    )
    .unwrap();
    let mut stream = TcpStream::connect(server.local_addr()).unwrap();
    stream.set_read_timeout(Some(WAIT)).unwrap();
    stream.write_all(UPGRADE).unwrap();
    assert!(read_head(&mut stream).starts_with(b"HTTP/1.1 101 "));

    let mut frame = Vec::new();
    ws6455_core::encoder::encode_frame(
        &mut frame,
        true,
        ws6455_core::frame::OpCode::Binary,
        &[7u8; PAYLOAD],
        Some([1, 2, 3, 4]),
    );
    // Write without reading until the writes stall (bounded in bytes and time).
    let (written, failed) = write_until_stalled(&mut stream, &frame, 512 << 20);
    assert!(failed.is_none(), "write failed: {failed:?}");
    // Kernel buffers on both sides hold some megabytes; the server holds about the cap.
    assert!(
        written < 64 << 20,
        "{written} bytes written before the stall"
    );
    let conn = server.connections().remove(0);
    assert!(
        conn.buffered_amount() <= CAP + PAYLOAD + 4,
        "server buffers {} bytes",
        conn.buffered_amount()
    );

    // Finish the last frame, then read every echo back.
    stream.set_write_timeout(None).unwrap();
    let rest = (frame.len() - written % frame.len()) % frame.len();
    let messages = written.div_ceil(frame.len());
    let mut reader = stream.try_clone().unwrap();
    let expected = messages * (4 + PAYLOAD);
    let read_all = std::thread::spawn(move || {
        let mut buf = vec![0u8; 64 << 10];
        let mut total = 0;
        while total < expected {
            match reader.read(&mut buf) {
                Ok(0) | Err(_) => break,
                Ok(n) => total += n,
            }
        }
        total
    });
    stream.write_all(&frame[frame.len() - rest..]).unwrap();
    assert_eq!(read_all.join().unwrap(), expected, "every echo arrives");
    assert_eq!(
        echo.messages.load(std::sync::atomic::Ordering::SeqCst),
        messages
    );
    assert!(
        echo.errors.lock().unwrap().is_empty(),
        "{:?}",
        echo.errors.lock().unwrap()
    );
    server.terminate_with_timeout(Duration::ZERO);
}

#[test]
fn several_loop_threads_share_the_port() {
    let f = start(ServerOptions {
        threads: 3,
        ..ServerOptions::default()
    });
    let mut clients: Vec<_> = (0..12).map(|_| connect(&f.server, "/")).collect();
    wait_until("twelve connections", || f.server.connections().len() == 12);
    for (i, ws) in clients.iter_mut().enumerate() {
        ws.send(Message::text(format!("hello {i}"))).unwrap();
        assert_eq!(ws.read().unwrap(), Message::text(format!("hello {i}")));
    }
    // A broadcast reaches connections on every loop.
    assert_eq!(f.server.broadcast("all loops", None), 12);
    for ws in &mut clients {
        assert_eq!(ws.read().unwrap(), Message::text("all loops"));
    }
    f.server.terminate();
    for ws in &mut clients {
        assert_eq!(read_close(ws).0, 1001);
    }
    assert!(f.server.wait(Some(WAIT)));
    assert!(f.server.terminated());
    let log = f.recorder.entries();
    assert_eq!(
        log.iter()
            .filter(|e| e.starts_with("terminate 1001"))
            .count(),
        12,
        "{log:?}"
    );
}

#[test]
fn subprotocol_is_chosen_from_the_offers() {
    let f = start(ServerOptions {
        subprotocols: vec!["v2".into(), "v1".into()],
        ..ServerOptions::default()
    });
    let mut stream = TcpStream::connect(f.server.local_addr()).unwrap();
    stream.set_read_timeout(Some(WAIT)).unwrap();
    stream
        .write_all(b"GET / HTTP/1.1\r\nHost: h\r\nUpgrade: websocket\r\nConnection: Upgrade\r\nSec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==\r\nSec-WebSocket-Version: 13\r\nSec-WebSocket-Protocol: v0, v1\r\nSec-WebSocket-Protocol: v2\r\nX-Multi: a\r\nX-Multi: b\r\n\r\n")
        .unwrap();
    let mut answer = [0u8; 1024];
    let n = stream.read(&mut answer).unwrap();
    let answer = String::from_utf8_lossy(&answer[..n]);
    // The client prefers v0 (unsupported), then v1: v1 wins over the server's favourite v2.
    assert!(
        answer.contains("\r\nSec-WebSocket-Protocol: v1\r\n"),
        "{answer}"
    );
    assert_eq!(f.requests.lock().unwrap()[0].2, ["a", "b"]);
    assert_eq!(f.server.connections()[0].subprotocol(), Some("v1"));
}

#[test]
fn port_zero_binds_and_reports_the_real_port() {
    let f = start(ServerOptions::default());
    assert_ne!(f.server.local_addr().port(), 0);
    assert_eq!(f.server.path(), None);
}

#[test]
fn wait_called_from_a_callback_returns_at_once() {
    let f = start(ServerOptions::default());
    let mut ws = connect(&f.server, "/");
    ws.send(Message::text("wait")).unwrap();
    match ws.read().unwrap() {
        Message::Text(t) => assert_eq!(t.as_str(), "waited terminated=false quick=true"),
        other => panic!("{other:?}"),
    }
    // From another thread it does block, until the server is terminated.
    f.server.terminate();
    let _ = read_close(&mut ws);
    assert!(f.server.wait(Some(WAIT)));
}

#[test]
fn handler_gives_back_the_applications_own_types() {
    let f = start(ServerOptions::default());
    let server_handler = f
        .server
        .handler_as::<TestServer>()
        .expect("the server's type");
    assert!(Arc::ptr_eq(&server_handler.recorder, &f.recorder));
    assert!(f.server.handler_as::<TestConn>().is_none());
    let mut ws = connect(&f.server, "/");
    ws.send(Message::text("handler")).unwrap();
    match ws.read().unwrap() {
        Message::Text(t) => assert_eq!(t.as_str(), "mine=Some(true) other=false"),
        other => panic!("{other:?}"),
    }
    let conn = f.server.connections().remove(0);
    assert!(conn.handler_as::<TestConn>().is_some());
}
