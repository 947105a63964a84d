//! The client API over real sockets on 127.0.0.1: against our server, against an
//! independent one (tungstenite), and against raw TCP for what no good server sends.

use std::io::{Read, Write};
use std::net::TcpListener;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use ws6455_client::*;

const WAIT: Duration = Duration::from_secs(5);

/// Records every callback, in order, as text; obeys a few commands sent by the server.
#[derive(Clone, Default)]
struct Recorder {
    log: Arc<Mutex<Vec<String>>>,
    data_type: DataType,
    headers: Vec<(String, String)>,
    protocols: Vec<String>,
}

impl Recorder {
    fn entries(&self) -> Vec<String> {
        self.log.lock().unwrap().clone()
    }

    fn push(&self, entry: String) {
        self.log.lock().unwrap().push(entry);
    }

    /// Waits (bounded) until `count` entries are recorded.
    fn wait_len(&self, count: usize) -> Vec<String> {
        let deadline = Instant::now() + WAIT;
        loop {
            let entries = self.entries();
            if entries.len() >= count {
                return entries;
            }
            assert!(Instant::now() < deadline, "only {entries:?}");
            std::thread::sleep(Duration::from_millis(5));
        }
    }
}

impl ClientHandler for Recorder {
    fn data_type(&self) -> DataType {
        self.data_type
    }

    fn headers(&self) -> Vec<(String, String)> {
        self.headers.clone()
    }

    fn protocols(&self) -> Vec<String> {
        self.protocols.clone()
    }

    fn on_open(&self, ws: &WebSocket) {
        self.push(format!("open {:?}", ws.status()));
    }

    fn on_message(&self, ws: &WebSocket, event: MessageEvent) {
        if event.data.as_text() == Some("panic") {
            panic!("handler asked to panic");
        }
        if event.data.as_text() == Some("reply") {
            ws.send("reply from a callback").unwrap();
        }
        self.push(format!("message {:?}", event.data));
    }

    fn on_error(&self, _: &WebSocket, event: ErrorEvent) {
        self.push(format!("error {}", event.errors[0].code));
    }

    fn on_terminate(&self, ws: &WebSocket, event: TerminateEvent) {
        self.push(format!(
            "terminate {} {:?} {} {:?}",
            event.code,
            event.reason,
            event.was_clean,
            ws.status()
        ));
    }
}

// ----- our server -----

struct Echo;

impl ws6455_server::ConnectionHandler for Echo {
    fn on_message(
        &self,
        ws: &ws6455_server::WebSocketConnection,
        event: ws6455_server::MessageEvent,
    ) {
        match event.data.as_text() {
            Some("close-4000") => ws.terminate(Some(4000), Some("bye")).unwrap(),
            Some("say-reply") => ws.send("reply").unwrap(),
            _ => ws.send(event.data).unwrap(),
        }
    }
}

/// What the server saw of one request: the X-Multi values, the Cookie, the offered
/// subprotocols.
type SeenRequest = (Vec<String>, Option<String>, Vec<String>);

/// An echo server that records each request's X-Multi values, Cookie and offered
/// subprotocols, and each connection's end.
#[derive(Default)]
struct Server {
    requests: Mutex<Vec<SeenRequest>>,
    refuse: bool,
}

/// The handler given to the server: a handle on the shared [`Server`] record.
struct ServerRef(Arc<Server>);

impl ws6455_server::ServerHandler for ServerRef {
    fn on_connection(
        &self,
        _: &ws6455_server::WebSocketServer,
        event: &ws6455_server::ConnectionEvent,
    ) -> Option<Arc<dyn ws6455_server::ConnectionHandler>> {
        let headers = event.request.headers();
        self.0.requests.lock().unwrap().push((
            headers.get_all("x-multi").map(str::to_owned).collect(),
            headers.get("cookie").map(str::to_owned),
            event
                .request
                .subprotocols()
                .iter()
                .map(|s| s.to_string())
                .collect(),
        ));
        (!self.0.refuse).then(|| Arc::new(Echo) as _)
    }
}

fn our_server(refuse: bool, path: Option<&str>) -> (ws6455_server::WebSocketServer, Arc<Server>) {
    let state = Arc::new(Server {
        refuse,
        ..Server::default()
    });
    let server = ws6455_server::WebSocketServer::new(
        ServerRef(state.clone()),
        ws6455_server::ServerOptions {
            listen: "127.0.0.1:0".parse().unwrap(),
            path: path.map(str::to_owned),
            subprotocols: vec!["v2".into()],
            ..ws6455_server::ServerOptions::default()
        },
    )
    .unwrap();
    (server, state)
}

#[test]
fn every_member_and_callback_in_order_against_our_server() {
    let (server, _) = our_server(false, None);
    let url = format!("ws://{}/chat?x=1", server.local_addr());
    let recorder = Recorder::default();
    let ws = WebSocket::new(&url, recorder.clone()).unwrap();
    assert_eq!(ws.url(), url);
    assert_eq!(ws.status(), Status::Connected);
    assert_eq!(ws.data_type(), DataType::Text);
    assert!(ws.subprotocol().is_none());
    ws.send("hello").unwrap();
    ws.send(vec![1u8, 2, 3]).unwrap();
    ws.send(serde_json::json!({"k": [1, 2]})).unwrap();
    // From another thread, and a send from inside a callback ("reply" comes back as
    // "reply", which the handler answers with a send of its own, echoed in turn).
    let other = ws.clone();
    std::thread::spawn(move || other.send("from a thread").unwrap())
        .join()
        .unwrap();
    ws.send("say-reply").unwrap();
    recorder.wait_len(7);
    ws.terminate(None, None).unwrap();
    let end = ws.wait(Some(WAIT)).expect("terminated");
    assert_eq!(
        (end.code, end.reason.clone(), end.was_clean),
        (1000, None, true)
    );
    assert_eq!(ws.status(), Status::Closed);
    assert_eq!(
        recorder.entries(),
        [
            "open Connected",
            "message Text(\"hello\")",
            "message Blob([1, 2, 3])",
            "message Text(\"{\\\"k\\\":[1,2]}\")",
            "message Text(\"from a thread\")",
            "message Text(\"reply\")",
            "message Text(\"reply from a callback\")",
            "terminate 1000 None true Closed",
        ]
    );
    // Ids are unique.
    let second = WebSocket::new(&url, Recorder::default()).unwrap();
    assert_ne!(second.id(), ws.id());
}

#[test]
fn object_and_blob_data_types() {
    let (server, _) = our_server(false, None);
    let url = format!("ws://{}/", server.local_addr());
    let objects = Recorder {
        data_type: DataType::Object,
        ..Recorder::default()
    };
    let ws = WebSocket::new(&url, objects.clone()).unwrap();
    ws.send(serde_json::json!({"a": 1})).unwrap();
    ws.send("not json").unwrap();
    let end = ws.wait(Some(WAIT)).unwrap();
    // We closed with 1007 and the server echoed it: a clean closing handshake.
    assert_eq!((end.code, end.was_clean), (1007, true));
    assert_eq!(
        objects.entries(),
        [
            "open Connected",
            "message Object(Object {\"a\": Number(1)})",
            "error 1007",
            "terminate 1007 None true Closed"
        ]
    );
    let blobs = Recorder {
        data_type: DataType::Blob,
        ..Recorder::default()
    };
    let ws = WebSocket::new(&url, blobs.clone()).unwrap();
    ws.send("text").unwrap();
    assert_eq!(blobs.wait_len(2)[1], "message Blob([116, 101, 120, 116])");
}

#[test]
fn headers_cookies_and_subprotocols_reach_the_server() {
    let (server, state) = our_server(false, None);
    let recorder = Recorder {
        headers: vec![
            ("X-Multi".into(), "a".into()),
            ("X-Multi".into(), "b".into()),
            ("Cookie".into(), "session=abc; theme=dark".into()),
        ],
        protocols: vec!["v1".into(), "v2".into()],
        ..Recorder::default()
    };
    let ws = WebSocket::new(&format!("ws://{}/", server.local_addr()), recorder).unwrap();
    assert_eq!(ws.subprotocol(), Some("v2"));
    let requests = state.requests.lock().unwrap().clone();
    assert_eq!(
        requests,
        [(
            vec!["a".to_owned(), "b".to_owned()],
            Some("session=abc; theme=dark".to_owned()),
            vec!["v1".to_owned(), "v2".to_owned()]
        )]
    );
}

#[test]
fn close_codes_both_ways() {
    let (server, _) = our_server(false, None);
    let url = format!("ws://{}/", server.local_addr());
    // The server closes with an application code and a reason.
    let recorder = Recorder::default();
    let ws = WebSocket::new(&url, recorder.clone()).unwrap();
    ws.send("close-4000").unwrap();
    let end = ws.wait(Some(WAIT)).unwrap();
    assert_eq!(
        (end.code, end.reason.as_deref(), end.was_clean),
        (4000, Some("bye"), true)
    );
    // We close with ours; codes an application may not send are refused, nothing sent.
    let ws = WebSocket::new(&url, Recorder::default()).unwrap();
    for code in [999, 1001, 1005, 1006, 1011, 2999, 5000] {
        assert!(
            matches!(ws.terminate(Some(code), None), Err(SendError::Protocol(_))),
            "{code} accepted"
        );
    }
    assert!(ws.terminate(Some(4001), Some(&"x".repeat(124))).is_err());
    assert_eq!(ws.status(), Status::Connected);
    ws.terminate(Some(4001), Some("done")).unwrap();
    let end = ws.wait(Some(WAIT)).unwrap();
    // The server echoes our code (not our reason): that is what the peer's frame says.
    assert_eq!(
        (end.code, end.reason.as_deref(), end.was_clean),
        (4001, None, true)
    );
    // The server vanishes without a closing handshake: 1006, not clean.
    let recorder = Recorder::default();
    let ws = WebSocket::new(&url, recorder.clone()).unwrap();
    server.terminate_with_timeout(Duration::ZERO);
    let end = ws.wait(Some(WAIT)).unwrap();
    assert_eq!((end.code, end.was_clean), (1006, false));
    assert!(ws.send("late").is_err());
}

#[test]
fn a_panicking_handler_fails_only_its_connection() {
    let (server, _) = our_server(false, None);
    let url = format!("ws://{}/", server.local_addr());
    let (bad, good) = (Recorder::default(), Recorder::default());
    let bad_ws = WebSocket::new(&url, bad.clone()).unwrap();
    let good_ws = WebSocket::new(&url, good.clone()).unwrap();
    bad_ws.send("panic").unwrap();
    bad_ws.wait(Some(WAIT)).unwrap();
    assert_eq!(
        bad.entries()[1..],
        ["error 1011", "terminate 1011 None true Closed"]
    );
    good_ws.send("still here").unwrap();
    assert_eq!(good.wait_len(2)[1], "message Text(\"still here\")");
}

// ----- refusals and connection errors -----

#[test]
fn refusals_and_failures_say_why() {
    let (server, _) = our_server(false, Some("/ws"));
    let addr = server.local_addr();
    let err = WebSocket::new(&format!("ws://{addr}/other"), Recorder::default()).unwrap_err();
    assert_eq!(err.status(), Some(404), "{err}");
    let (refusing, _) = our_server(true, None);
    let err = WebSocket::new(
        &format!("ws://{}/", refusing.local_addr()),
        Recorder::default(),
    )
    .unwrap_err();
    assert_eq!(err.status(), Some(403), "{err}");

    assert!(matches!(
        WebSocket::new("http://127.0.0.1/", Recorder::default()),
        Err(ConnectError::Url(UrlError::UnsupportedScheme(_)))
    ));
    assert!(matches!(
        WebSocket::new("ws://127.0.0.1:99999/", Recorder::default()),
        Err(ConnectError::Url(UrlError::Invalid(_)))
    ));
    assert!(matches!(
        WebSocket::new("ws://no-such-host.invalid/", Recorder::default()),
        Err(ConnectError::Dns { .. })
    ));
    let free = TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap();
    assert!(matches!(
        WebSocket::new(&format!("ws://{free}/"), Recorder::default()),
        Err(ConnectError::Connect { .. })
    ));
    let header = Recorder {
        headers: vec![("X-Bad".into(), "a\r\nInjected: 1".into())],
        ..Recorder::default()
    };
    assert!(matches!(
        WebSocket::new(&format!("ws://{addr}/ws"), header),
        Err(ConnectError::InvalidHeader(_))
    ));
}

#[test]
fn headers_that_would_duplicate_the_handshakes_are_refused_before_connecting() {
    let listener = TcpListener::bind("127.0.0.1:0").unwrap();
    listener.set_nonblocking(true).unwrap();
    let addr = listener.local_addr().unwrap();
    for name in [
        "Host",
        "sec-websocket-key",
        "Upgrade",
        "Sec-WebSocket-Protocol",
    ] {
        let handler = Recorder {
            headers: vec![(name.into(), "x".into())],
            ..Recorder::default()
        };
        match WebSocket::new(&format!("ws://{addr}/"), handler) {
            Err(ConnectError::InvalidHeader(e)) => {
                assert_eq!(e.name, name);
                assert!(
                    e.to_string().contains("handshake") || e.to_string().contains("subprotocol"),
                    "{e}"
                );
            }
            Err(other) => panic!("{name}: {other}"),
            Ok(_) => panic!("{name}: connected"),
        }
    }
    // Refused before any connection was made.
    std::thread::sleep(Duration::from_millis(100));
    assert!(listener.accept().is_err(), "a connection was opened");
}

/// A raw server: accepts one connection, reads the request, writes `answer`, then keeps
/// the socket open until the client goes (bounded).
fn raw_server(answer: impl Fn(&str) -> Vec<u8> + Send + 'static) -> std::net::SocketAddr {
    let listener = TcpListener::bind("127.0.0.1:0").unwrap();
    let addr = listener.local_addr().unwrap();
    std::thread::spawn(move || {
        let (mut stream, _) = listener.accept().unwrap();
        stream.set_read_timeout(Some(WAIT)).unwrap();
        let mut request = Vec::new();
        let mut byte = [0u8];
        while !request.ends_with(b"\r\n\r\n") && stream.read_exact(&mut byte).is_ok() {
            request.push(byte[0]);
        }
        let _ = stream.write_all(&answer(&String::from_utf8_lossy(&request)));
        let mut sink = [0u8; 1024];
        while matches!(stream.read(&mut sink), Ok(n) if n > 0) {}
    });
    addr
}

fn accept_for(request: &str) -> String {
    let key = request
        .lines()
        .find_map(|l| l.strip_prefix("Sec-WebSocket-Key: "))
        .unwrap();
    ws6455_core::handshake::accept_key(key.trim())
}

#[test]
fn bad_handshake_answers_and_timeouts() {
    let addr = raw_server(|_| {
        b"HTTP/1.1 101 Switching Protocols\r\nUpgrade: websocket\r\nConnection: Upgrade\r\nSec-WebSocket-Accept: AAAAAAAAAAAAAAAAAAAAAAAAAAA=\r\n\r\n".to_vec()
    });
    let err = WebSocket::new(&format!("ws://{addr}/"), Recorder::default()).unwrap_err();
    assert!(matches!(err, ConnectError::Handshake(_)), "{err}");

    let addr = raw_server(|_| b"HTTP/1.1 200 OK\r\nContent-Length: 0\r\n\r\n".to_vec());
    let err = WebSocket::new(&format!("ws://{addr}/"), Recorder::default()).unwrap_err();
    assert_eq!(err.status(), Some(200));

    // Accepts TCP, never answers.
    let addr = raw_server(|_| Vec::new());
    let started = Instant::now();
    let err = WebSocket::with_options(
        &format!("ws://{addr}/"),
        Recorder::default(),
        ClientOptions {
            connect_timeout: Duration::from_millis(200),
            ..ClientOptions::default()
        },
    )
    .unwrap_err();
    assert!(matches!(err, ConnectError::Timeout(_)), "{err}");
    assert!(started.elapsed() < WAIT);
}

#[test]
fn protocol_error_from_the_server_gives_1002_and_the_order_holds() {
    // The server sends a masked frame, which a client must refuse (1002), and a text
    // frame before it in the same write, which must be delivered first.
    let addr = raw_server(|request| {
        let mut out = format!("HTTP/1.1 101 Switching Protocols\r\nUpgrade: websocket\r\nConnection: Upgrade\r\nSec-WebSocket-Accept: {}\r\n\r\n", accept_for(request)).into_bytes();
        out.extend_from_slice(b"\x81\x02ok\x81\x82\x00\x00\x00\x00no");
        out
    });
    let recorder = Recorder::default();
    let ws = WebSocket::new(&format!("ws://{addr}/"), recorder.clone()).unwrap();
    let end = ws.wait(Some(WAIT)).unwrap();
    assert_eq!((end.code, end.was_clean), (1006, false));
    assert_eq!(
        recorder.entries(),
        [
            "open Connected",
            "message Text(\"ok\")",
            "error 1002",
            "terminate 1006 None false Closed"
        ]
    );
}

#[test]
fn after_the_close_handshake_the_client_waits_for_the_server_then_gives_up() {
    // Answers our Close with its own but never closes TCP: the client waits the close
    // timeout (RFC 6455 7.1.1: the server closes first), then closes itself; still clean.
    let addr = raw_server(|request| {
        let mut out = format!("HTTP/1.1 101 Switching Protocols\r\nUpgrade: websocket\r\nConnection: Upgrade\r\nSec-WebSocket-Accept: {}\r\n\r\n", accept_for(request)).into_bytes();
        // Its Close, sent at once; ours crosses it.
        out.extend_from_slice(b"\x88\x02\x03\xe8");
        out
    });
    let recorder = Recorder::default();
    let started = Instant::now();
    let ws = WebSocket::with_options(
        &format!("ws://{addr}/"),
        recorder,
        ClientOptions {
            limits: LoopConfig {
                protocol: ProtocolConfig {
                    close_timeout: Duration::from_millis(300),
                    ..ProtocolConfig::default()
                },
                ..LoopConfig::default()
            },
            ..ClientOptions::default()
        },
    )
    .unwrap();
    let end = ws.wait(Some(WAIT)).unwrap();
    assert_eq!((end.code, end.was_clean), (1000, true));
    assert!(started.elapsed() >= Duration::from_millis(300));
}

#[test]
fn keepalive_drops_a_server_that_never_answers_pings() {
    // Completes the handshake, then reads and ignores everything: no Pong ever comes.
    let addr = raw_server(|request| {
        format!("HTTP/1.1 101 Switching Protocols\r\nUpgrade: websocket\r\nConnection: Upgrade\r\nSec-WebSocket-Accept: {}\r\n\r\n", accept_for(request)).into_bytes()
    });
    let recorder = Recorder::default();
    let ws = WebSocket::with_options(
        &format!("ws://{addr}/"),
        recorder.clone(),
        ClientOptions {
            limits: LoopConfig {
                protocol: ProtocolConfig {
                    ping_interval: Some(Duration::from_millis(100)),
                    pong_timeout: Duration::from_millis(200),
                    ..ProtocolConfig::default()
                },
                ..LoopConfig::default()
            },
            ..ClientOptions::default()
        },
    )
    .unwrap();
    let end = ws.wait(Some(WAIT)).unwrap();
    assert_eq!((end.code, end.was_clean), (1006, false));
    assert_eq!(
        recorder.entries(),
        [
            "open Connected",
            "error 1006",
            "terminate 1006 None false Closed"
        ]
    );
}

#[test]
fn a_stopped_loop_refuses_new_connections_and_a_shutdown_closes_with_1001() {
    let (server, _) = our_server(false, None);
    let url = format!("ws://{}/", server.local_addr());
    let event_loop = ClientLoop::new().unwrap();
    let options = || ClientOptions {
        event_loop: Some(event_loop.clone()),
        ..ClientOptions::default()
    };
    let recorder = Recorder::default();
    let ws = WebSocket::with_options(&url, recorder.clone(), options()).unwrap();
    recorder.wait_len(1);
    event_loop.shutdown(None);
    let end = ws.wait(Some(WAIT)).unwrap();
    assert_eq!(
        (end.code, end.was_clean),
        (1001, true),
        "the server echoed our 1001"
    );
    let deadline = Instant::now() + WAIT;
    while !event_loop.is_stopped() {
        assert!(Instant::now() < deadline, "the loop did not stop");
        std::thread::sleep(Duration::from_millis(5));
    }
    assert!(matches!(
        WebSocket::with_options(&url, Recorder::default(), options()),
        Err(ConnectError::LoopGone)
    ));
}

// ----- an independent server -----

#[test]
fn against_tungstenite_server() {
    let listener = TcpListener::bind("127.0.0.1:0").unwrap();
    let addr = listener.local_addr().unwrap();
    let seen_cookie = Arc::new(Mutex::new(None));
    let cookie = seen_cookie.clone();
    let server = std::thread::spawn(move || {
        let (stream, _) = listener.accept().unwrap();
        stream.set_read_timeout(Some(WAIT)).unwrap();
        // The callback's error type is tungstenite's, large by its design.
        #[allow(clippy::result_large_err)]
        let callback = |request: &tungstenite::handshake::server::Request, response| {
            *cookie.lock().unwrap() = request
                .headers()
                .get("cookie")
                .map(|v| v.to_str().unwrap().to_owned());
            Ok(response)
        };
        let mut ws = tungstenite::accept_hdr(stream, callback).unwrap();
        for _ in 0..2 {
            let message = ws.read().unwrap();
            ws.send(message).unwrap();
        }
        ws.close(Some(tungstenite::protocol::CloseFrame {
            code: tungstenite::protocol::frame::coding::CloseCode::Away,
            reason: "going".into(),
        }))
        .unwrap();
        // Until our Close answer arrives and the connection ends.
        while ws.read().is_ok() {}
    });
    let recorder = Recorder {
        headers: vec![("Cookie".into(), "a=1; b=2".into())],
        ..Recorder::default()
    };
    let ws = WebSocket::new(&format!("ws://{addr}/"), recorder.clone()).unwrap();
    ws.send("über").unwrap();
    ws.send(vec![0u8, 255]).unwrap();
    let end = ws.wait(Some(WAIT)).unwrap();
    server.join().unwrap();
    assert_eq!(seen_cookie.lock().unwrap().as_deref(), Some("a=1; b=2"));
    assert_eq!(
        recorder.entries(),
        [
            "open Connected",
            "message Text(\"über\")",
            "message Blob([0, 255])",
            "terminate 1001 Some(\"going\") true Closed"
        ]
    );
    assert_eq!((end.code, end.was_clean), (1001, true));
}

#[test]
fn a_client_loop_stopping_during_connect_gives_an_error_or_a_connection_that_ends() {
    // Regression (probabilistic: the window is the loop's last turn): a loop that stops
    // while `WebSocket::with_options` hands it the connection must either refuse it
    // (`LoopGone`) or run it, callbacks included, never lose it.
    let (server, _) = our_server(false, None);
    let url = format!("ws://{}/", server.local_addr());
    let (mut refused, mut ran) = (0, 0);
    for i in 0..200u64 {
        let event_loop = ClientLoop::new().unwrap();
        let stopper = {
            let event_loop = event_loop.clone();
            std::thread::spawn(move || {
                std::thread::sleep(Duration::from_micros(i * 5));
                event_loop.shutdown(None);
            })
        };
        let options = ClientOptions {
            event_loop: Some(event_loop),
            ..ClientOptions::default()
        };
        let recorder = Recorder::default();
        match WebSocket::with_options(&url, recorder.clone(), options) {
            Ok(ws) => {
                assert!(ws.wait(Some(WAIT)).is_some(), "iteration {i}: never ended");
                let entries = recorder.entries();
                assert!(
                    entries.first().is_some_and(|e| e.starts_with("open")),
                    "{entries:?}"
                );
                assert!(
                    entries.last().is_some_and(|e| e.starts_with("terminate")),
                    "{entries:?}"
                );
                ran += 1;
            }
            Err(ConnectError::LoopGone) => refused += 1,
            Err(other) => panic!("iteration {i}: {other}"),
        }
        stopper.join().unwrap();
    }
    eprintln!("{ran} connections ran, {refused} refused");
}

#[test]
fn handler_gives_back_the_applications_own_type() {
    let (server, _) = our_server(false, None);
    let recorder = Recorder::default();
    let ws = WebSocket::new(&format!("ws://{}/", server.local_addr()), recorder.clone()).unwrap();
    let mine = ws.handler_as::<Recorder>().expect("the handler's own type");
    assert!(Arc::ptr_eq(&mine.log, &recorder.log));
    struct Other;
    impl ClientHandler for Other {
        fn on_message(&self, _: &WebSocket, _: MessageEvent) {}
    }
    assert!(ws.handler_as::<Other>().is_none());
    ws.terminate(None, None).unwrap();
    assert!(ws.wait(Some(WAIT)).is_some());
}
