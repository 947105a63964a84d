//! Several WebSocket servers on one web server: pages and plain HTTP from the web
//! server's handler, each WebSocket server on its own path with its own handler and data
//! type, 404 where no server is, overlapping paths refused, and terminate of one server
//! closing its connections only.

use std::io::{Read, Write};
use std::net::TcpStream;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use tungstenite::{Message, WebSocket};
use ws6455_server::*;

const WAIT: Duration = Duration::from_secs(5);

struct Pages;

impl HttpHandler for Pages {
    fn on_request(&self, _: &WebServer, request: &Request) -> Option<HttpResponse> {
        match (request.method(), request.path()) {
            (_, "/health") => Some(HttpResponse::ok("text/plain", "ok\n")),
            ("POST", "/echo") => Some(HttpResponse::ok("text/plain", request.body().to_vec())),
            _ => None,
        }
    }
}

/// Echoes with its name in front: `name: data` (binary as its length).
struct Named(&'static str);

impl ConnectionHandler for Named {
    fn on_message(&self, ws: &WebSocketConnection, event: MessageEvent) {
        let what = match event.data {
            Data::Text(text) => format!("text {text}"),
            Data::Blob(bytes) => format!("blob {}", bytes.len()),
            Data::Object(value) => format!("object {value}"),
        };
        let _ = ws.send(format!("{}: {what}", self.0));
    }
}

/// A WebSocket server that records its `on_terminate` calls.
struct Endpoint {
    name: &'static str,
    terminated: Arc<Mutex<u32>>,
}

impl ServerHandler for Endpoint {
    fn on_connection(
        &self,
        _: &WebSocketServer,
        _: &ConnectionEvent,
    ) -> Option<Arc<dyn ConnectionHandler>> {
        Some(Arc::new(Named(self.name)))
    }

    fn on_terminate(&self, _: &WebSocketServer) {
        *self.terminated.lock().unwrap() += 1;
    }
}

fn attach(
    web: &WebServer,
    name: &'static str,
    path: &str,
    data_type: DataType,
) -> std::io::Result<(WebSocketServer, Arc<Mutex<u32>>)> {
    let terminated = Arc::new(Mutex::new(0));
    let handler = Endpoint {
        name,
        terminated: terminated.clone(),
    };
    let options = ServerOptions {
        path: Some(path.to_owned()),
        data_type,
        ..ServerOptions::default()
    };
    WebSocketServer::attach(web, handler, options).map(|server| (server, terminated))
}

fn web() -> WebServer {
    let options = WebOptions {
        listen: "127.0.0.1:0".parse().unwrap(),
        ..WebOptions::default()
    };
    WebServer::new(Pages, options).unwrap()
}

type Client = WebSocket<TcpStream>;

fn connect(web: &WebServer, path: &str) -> Result<Client, u16> {
    let stream = TcpStream::connect(web.local_addr()).unwrap();
    stream.set_read_timeout(Some(WAIT)).unwrap();
    match tungstenite::client(format!("ws://{}{path}", web.local_addr()), stream) {
        Ok((ws, _)) => Ok(ws),
        Err(tungstenite::HandshakeError::Failure(tungstenite::Error::Http(response))) => {
            Err(response.status().as_u16())
        }
        Err(e) => panic!("{e}"),
    }
}

fn text(ws: &mut Client) -> String {
    loop {
        match ws.read().expect("a message") {
            Message::Text(t) => return t.to_string(),
            Message::Close(frame) => {
                return format!("close {:?}", frame.map(|f| u16::from(f.code)))
            }
            _ => continue,
        }
    }
}

/// A plain HTTP exchange: the whole answer as text.
fn http(web: &WebServer, request: &str) -> String {
    let mut stream = TcpStream::connect(web.local_addr()).unwrap();
    stream.set_read_timeout(Some(WAIT)).unwrap();
    stream.write_all(request.as_bytes()).unwrap();
    let mut answer = Vec::new();
    let _ = stream.read_to_end(&mut answer);
    String::from_utf8_lossy(&answer).into_owned()
}

#[test]
fn pages_and_several_websocket_servers_share_one_port() {
    let web = web();
    let (_chat, _) = attach(&web, "chat", "/chat", DataType::Text).unwrap();
    let (_feed, _) = attach(&web, "feed", "/feed/*", DataType::Blob).unwrap();

    let page = http(&web, "GET /health HTTP/1.1\r\nHost: h\r\n\r\n");
    assert!(page.starts_with("HTTP/1.1 200"), "{page}");
    assert!(page.ends_with("\r\n\r\nok\n"), "{page}");
    let head = http(&web, "HEAD /health HTTP/1.1\r\nHost: h\r\n\r\n");
    assert!(head.starts_with("HTTP/1.1 200"), "{head}");
    assert!(head.contains("Content-Length: 3\r\n"), "{head}");
    assert!(
        head.ends_with("\r\n\r\n"),
        "a HEAD answer with a body: {head:?}"
    );
    let posted = http(
        &web,
        "POST /echo HTTP/1.1\r\nHost: h\r\nContent-Length: 9\r\n\r\nname=ryan",
    );
    assert!(posted.ends_with("\r\n\r\nname=ryan"), "{posted}");
    let too_big = format!(
        "POST /echo HTTP/1.1\r\nHost: h\r\nContent-Length: {}\r\n\r\n",
        (64 << 10) + 1
    );
    assert!(http(&web, &too_big).starts_with("HTTP/1.1 413"));
    let head_missing = http(&web, "HEAD /nothing HTTP/1.1\r\nHost: h\r\n\r\n");
    assert!(head_missing.starts_with("HTTP/1.1 404"), "{head_missing}");
    assert!(
        head_missing.ends_with("\r\n\r\n"),
        "a HEAD 404 with a body: {head_missing:?}"
    );
    let missing = http(&web, "GET /nothing HTTP/1.1\r\nHost: h\r\n\r\n");
    assert!(missing.starts_with("HTTP/1.1 404"), "{missing}");
    let not_upgraded = http(&web, "GET /chat HTTP/1.1\r\nHost: h\r\n\r\n");
    assert!(not_upgraded.starts_with("HTTP/1.1 426"), "{not_upgraded}");

    // Each path reaches its own server, with its own handler and data type.
    let mut chat = connect(&web, "/chat").unwrap();
    let mut feed = connect(&web, "/feed/prices?x=1").unwrap();
    chat.send(Message::text("hi")).unwrap();
    assert_eq!(text(&mut chat), "chat: text hi");
    feed.send(Message::text("hi")).unwrap();
    assert_eq!(text(&mut feed), "feed: blob 2");
    // An exact path is exact; no server holds the rest.
    assert_eq!(connect(&web, "/chat/room").err(), Some(404));
    assert_eq!(connect(&web, "/elsewhere").err(), Some(404));
    assert_eq!(web.servers().len(), 2);
}

#[test]
fn overlapping_paths_are_refused_when_attaching() {
    let web = web();
    let (_chat, _) = attach(&web, "chat", "/chat", DataType::Text).unwrap();
    let (_feed, _) = attach(&web, "feed", "/feed/*", DataType::Text).unwrap();
    for path in ["/chat", "/feed/prices", "/feed/*", "/f*", "*"] {
        let error = attach(&web, "again", path, DataType::Text).unwrap_err();
        assert_eq!(error.kind(), std::io::ErrorKind::AlreadyExists, "{path}");
        assert!(error.to_string().contains("overlaps"), "{error}");
    }
    let options = ServerOptions::default();
    let every_path = Endpoint {
        name: "all",
        terminated: Arc::default(),
    };
    assert!(WebSocketServer::attach(&web, every_path, options).is_err());
    // Paths that do not meet are fine.
    assert!(attach(&web, "chats", "/chats", DataType::Text).is_ok());
}

#[test]
fn terminating_one_server_closes_its_connections_only() {
    let web = web();
    let (chat, chat_ends) = attach(&web, "chat", "/chat", DataType::Text).unwrap();
    let (feed, feed_ends) = attach(&web, "feed", "/feed", DataType::Text).unwrap();
    let mut on_chat = connect(&web, "/chat").unwrap();
    let mut on_feed = connect(&web, "/feed").unwrap();
    let deadline = Instant::now() + WAIT;
    while chat.connections().is_empty() || feed.connections().is_empty() {
        assert!(Instant::now() < deadline);
        std::thread::sleep(Duration::from_millis(5));
    }

    chat.terminate();
    assert_eq!(text(&mut on_chat), "close Some(1001)");
    let _ = on_chat.flush(); // tungstenite's answering Close
    assert!(chat.wait(Some(WAIT)));
    assert!(chat.terminated());
    assert_eq!(*chat_ends.lock().unwrap(), 1);
    // The path is free now; the other server and the pages go on.
    assert_eq!(connect(&web, "/chat").err(), Some(404));
    on_feed.send(Message::text("still here")).unwrap();
    assert_eq!(text(&mut on_feed), "feed: text still here");
    assert!(http(&web, "GET /health HTTP/1.1\r\nHost: h\r\n\r\n").starts_with("HTTP/1.1 200"));
    assert!(!web.terminated() && !feed.terminated());
    assert_eq!(web.servers().len(), 1);

    // The web server's terminate ends the rest: each on_terminate once.
    web.terminate();
    assert_eq!(text(&mut on_feed), "close Some(1001)");
    let _ = on_feed.flush();
    assert!(web.wait(Some(WAIT)));
    assert!(feed.terminated());
    assert_eq!(*feed_ends.lock().unwrap(), 1);
    assert_eq!(*chat_ends.lock().unwrap(), 1);
}

#[test]
fn terminating_one_server_with_zero_timeout_resets_its_connections_at_once() {
    let web = web();
    let (chat, chat_ends) = attach(&web, "chat", "/chat", DataType::Text).unwrap();
    let (_feed, _) = attach(&web, "feed", "/feed", DataType::Text).unwrap();
    let mut on_chat = connect(&web, "/chat").unwrap();
    let mut on_feed = connect(&web, "/feed").unwrap();
    let deadline = Instant::now() + WAIT;
    while chat.connections().is_empty() {
        assert!(Instant::now() < deadline);
        std::thread::sleep(Duration::from_millis(5));
    }
    chat.terminate_with_timeout(Duration::ZERO);
    match on_chat.read() {
        Err(tungstenite::Error::Io(e)) => {
            assert_eq!(e.kind(), std::io::ErrorKind::ConnectionReset)
        }
        other => panic!("not a reset: {other:?}"),
    }
    assert!(chat.wait(Some(WAIT)));
    assert_eq!(*chat_ends.lock().unwrap(), 1);
    on_feed.send(Message::text("unharmed")).unwrap();
    assert_eq!(text(&mut on_feed), "feed: text unharmed");
}

/// Accepts after a pause, long enough for a terminate to come in between.
struct Slow(Arc<Mutex<u32>>);

impl ServerHandler for Slow {
    fn on_connection(
        &self,
        _: &WebSocketServer,
        _: &ConnectionEvent,
    ) -> Option<Arc<dyn ConnectionHandler>> {
        std::thread::sleep(Duration::from_millis(300));
        Some(Arc::new(Named("slow")))
    }

    fn on_terminate(&self, _: &WebSocketServer) {
        *self.0.lock().unwrap() += 1;
    }
}

#[test]
fn a_connection_accepted_while_its_server_terminates_is_refused_not_opened_after_the_end() {
    let web = web();
    let ends = Arc::new(Mutex::new(0));
    let options = ServerOptions {
        path: Some("/slow".into()),
        ..ServerOptions::default()
    };
    let slow = WebSocketServer::attach(&web, Slow(ends.clone()), options).unwrap();
    let client = {
        let web = web.clone();
        std::thread::spawn(move || connect(&web, "/slow").err())
    };
    std::thread::sleep(Duration::from_millis(100));
    slow.terminate(); // while on_connection sleeps
    assert_eq!(client.join().unwrap(), Some(503));
    assert!(slow.wait(Some(WAIT)));
    assert_eq!(*ends.lock().unwrap(), 1);
    assert!(slow.connections().is_empty());
}
