//! Topics on one node, over real sockets with an independent client (tungstenite):
//! subscriptions from callbacks and from other threads, publish with and without the
//! sender, several loop threads, slow subscribers, subscriptions ended by a close.

use std::net::{SocketAddr, TcpStream};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use tungstenite::{Message, WebSocket};
use ws6455_server::*;

const WAIT: Duration = Duration::from_secs(5);

/// Joins the topics named in `?topics=a,b` when it opens; obeys commands sent as text.
struct Member;

impl ConnectionHandler for Member {
    fn on_open(&self, ws: &WebSocketConnection) {
        let _ = ws;
    }

    fn on_message(&self, ws: &WebSocketConnection, event: MessageEvent) {
        let Data::Text(text) = event.data else { return };
        let mut parts = text.splitn(3, ':');
        let (verb, topic, rest) = (
            parts.next().unwrap_or(""),
            parts.next().unwrap_or(""),
            parts.next().unwrap_or(""),
        );
        match verb {
            "sub" => {
                let answer = match ws.subscribe(topic) {
                    Ok(new) => format!("sub {new}"),
                    Err(e) => format!("refused {e:?}"),
                };
                ws.send(answer).unwrap();
            }
            "unsub" => ws.send(format!("unsub {}", ws.unsubscribe(topic))).unwrap(),
            "others" => {
                ws.publish(topic, rest);
            }
            "all" => {
                ws.wss().publish(topic, rest);
            }
            // A send, a publish that reaches this connection too, a send: in this order.
            "order" => {
                ws.send("first").unwrap();
                ws.wss().publish(topic, "second");
                ws.send("third").unwrap();
            }
            _ => ws.send(format!("unknown {text}")).unwrap(),
        }
    }
}

struct App {
    errors: Arc<Mutex<Vec<String>>>,
}

impl ServerHandler for App {
    fn on_connection(
        &self,
        _: &WebSocketServer,
        _: &ConnectionEvent,
    ) -> Option<Arc<dyn ConnectionHandler>> {
        Some(Arc::new(Member))
    }

    fn on_error(&self, _: &WebSocketServer, event: ErrorEvent) {
        let mut errors = self.errors.lock().unwrap();
        errors.extend(event.errors.iter().map(|e| e.to_string()));
    }
}

fn server_with(options: impl FnOnce(&mut ServerOptions)) -> WebSocketServer {
    let mut opts = ServerOptions {
        listen: "127.0.0.1:0".parse().unwrap(),
        ..ServerOptions::default()
    };
    options(&mut opts);
    let app = App {
        errors: Arc::default(),
    };
    WebSocketServer::new(app, opts).unwrap()
}

type Client = WebSocket<TcpStream>;

fn connect(addr: SocketAddr) -> Client {
    let stream = TcpStream::connect(addr).unwrap();
    stream.set_read_timeout(Some(WAIT)).unwrap();
    let (ws, _) = tungstenite::client(format!("ws://{addr}/"), stream).unwrap();
    ws
}

fn recv(ws: &mut Client) -> String {
    loop {
        match ws.read().expect("a message before the timeout") {
            Message::Text(text) => return text.to_string(),
            Message::Binary(bytes) => return format!("binary {}", bytes.len()),
            Message::Close(frame) => return format!("close {:?}", frame.map(|f| f.code)),
            _ => continue,
        }
    }
}

/// Asks the connection's handler something and returns its answer.
fn ask(ws: &mut Client, command: &str) -> String {
    ws.send(Message::text(command)).unwrap();
    recv(ws)
}

fn subscribed(addr: SocketAddr, topic: &str) -> Client {
    let mut ws = connect(addr);
    assert_eq!(ask(&mut ws, &format!("sub:{topic}")), "sub true");
    ws
}

/// Nothing is on its way to `ws`: a marker published now (on a topic only `ws` holds)
/// is the next thing it reads.
fn nothing_before_marker(ws: &mut Client, server: &WebSocketServer, marker_topic: &str) {
    server.publish(marker_topic, "marker");
    assert_eq!(recv(ws), "marker");
}

fn wait_until(what: &str, mut done: impl FnMut() -> bool) {
    let deadline = Instant::now() + WAIT;
    while !done() {
        assert!(Instant::now() < deadline, "timed out waiting for {what}");
        std::thread::sleep(Duration::from_millis(5));
    }
}

#[test]
fn a_publish_from_a_connection_reaches_every_other_subscriber_and_not_itself() {
    let server = server_with(|_| {});
    let addr = server.local_addr();
    let mut alice = subscribed(addr, "room");
    let mut bob = subscribed(addr, "room");
    let mut carol = subscribed(addr, "elsewhere");
    assert_eq!(ask(&mut carol, "sub:marker-c"), "sub true");
    assert_eq!(ask(&mut alice, "sub:marker-a"), "sub true");
    assert_eq!(server.subscriber_count("room"), 2);

    alice.send(Message::text("others:room:hello")).unwrap();
    assert_eq!(recv(&mut bob), "hello");
    // Alice is not sent her own publish, Carol holds another topic.
    nothing_before_marker(&mut alice, &server, "marker-a");
    nothing_before_marker(&mut carol, &server, "marker-c");

    // The server's publish includes everyone, the sender of the command too.
    alice.send(Message::text("all:room:to everyone")).unwrap();
    assert_eq!(recv(&mut alice), "to everyone");
    assert_eq!(recv(&mut bob), "to everyone");

    // Subscribing twice is no second subscription: one copy per publish.
    assert_eq!(ask(&mut bob, "sub:room"), "sub false");
    server.publish("room", "once");
    assert_eq!(recv(&mut bob), "once");
    assert_eq!(ask(&mut bob, "unsub:room"), "unsub true");
    assert_eq!(ask(&mut bob, "unsub:room"), "unsub false");
    assert_eq!(recv(&mut alice), "once");

    let stats = server.topic_stats();
    assert_eq!(stats.published, 3 + 2, "three to the room, two markers");
    assert!(stats.delivered >= 1 + 2 + 2, "{stats:?}");
    assert_eq!((stats.skipped, stats.closed), (0, 0));
}

#[test]
fn a_publish_from_a_callback_keeps_its_place_between_the_callbacks_sends() {
    let server = server_with(|_| {});
    let mut ws = subscribed(server.local_addr(), "t");
    ws.send(Message::text("order:t")).unwrap();
    let got: Vec<String> = (0..3).map(|_| recv(&mut ws)).collect();
    assert_eq!(got, ["first", "second", "third"]);
}

#[test]
fn subscriptions_made_from_another_thread_work_and_closing_ends_them() {
    let server = server_with(|_| {});
    let addr = server.local_addr();
    let mut ws = connect(addr);
    wait_until("the connection", || server.connections().len() == 1);
    let conn = server.connections().remove(0);
    let subscriber = std::thread::spawn({
        let conn = conn.clone();
        move || conn.subscribe("news").unwrap()
    });
    assert!(subscriber.join().unwrap());
    assert!(conn.is_subscribed("news"));
    assert_eq!(conn.topics(), ["news"]);
    let publisher = std::thread::spawn({
        let server = server.clone();
        move || server.publish("news", "from a thread")
    });
    assert_eq!(publisher.join().unwrap(), 1);
    assert_eq!(recv(&mut ws), "from a thread");

    ws.close(None).unwrap();
    let _ = ws.read();
    wait_until("the topic to empty", || {
        server.subscriber_count("news") == 0
    });
    assert!(conn.topics().is_empty());
    assert_eq!(server.publish("news", "nobody"), 0);
    match conn.subscribe("news") {
        Err(TopicError::NotOpen(Status::Closed)) => {}
        other => panic!("subscribe after close: {other:?}"),
    }
    assert_eq!(server.subscriber_count("news"), 0);
}

#[test]
fn topic_names_and_counts_are_bounded() {
    let server = server_with(|o| o.topics.max_per_connection = 2);
    let mut ws = connect(server.local_addr());
    assert_eq!(
        ask(&mut ws, "sub:"),
        "refused InvalidName { len: 0 }",
        "an empty name"
    );
    let long = "x".repeat(MAX_TOPIC_LEN + 1);
    assert_eq!(
        ask(&mut ws, &format!("sub:{long}")),
        format!("refused InvalidName {{ len: {} }}", MAX_TOPIC_LEN + 1)
    );
    assert_eq!(ask(&mut ws, "sub:a"), "sub true");
    assert_eq!(ask(&mut ws, "sub:b"), "sub true");
    assert_eq!(ask(&mut ws, "sub:c"), "refused TooMany { limit: 2 }");
    assert_eq!(ask(&mut ws, "unsub:a"), "unsub true");
    assert_eq!(ask(&mut ws, "sub:c"), "sub true");
    assert_eq!(server.publish("", "nothing"), 0);
}

#[test]
fn every_subscriber_on_every_loop_thread_gets_every_publish_in_order() {
    const CLIENTS: usize = 16;
    const PUBLISHERS: usize = 3;
    const EACH: usize = 40;
    let server = server_with(|o| o.threads = 4);
    let addr = server.local_addr();
    let mut clients: Vec<Client> = (0..CLIENTS).map(|_| subscribed(addr, "all")).collect();
    assert_eq!(server.subscriber_count("all"), CLIENTS);
    let publishers: Vec<_> = (0..PUBLISHERS)
        .map(|p| {
            let server = server.clone();
            std::thread::spawn(move || {
                for i in 0..EACH {
                    assert_eq!(server.publish("all", format!("{p} {i}")), CLIENTS);
                }
            })
        })
        .collect();
    for publisher in publishers {
        publisher.join().unwrap();
    }
    for ws in &mut clients {
        let mut next = [0; PUBLISHERS];
        for _ in 0..PUBLISHERS * EACH {
            let text = recv(ws);
            let (p, i) = text.split_once(' ').unwrap();
            let (p, i): (usize, usize) = (p.parse().unwrap(), i.parse().unwrap());
            assert_eq!(i, next[p], "publisher {p}'s messages out of order");
            next[p] += 1;
        }
    }
    let stats = server.topic_stats();
    assert_eq!(stats.published, (PUBLISHERS * EACH) as u64);
    assert_eq!(stats.delivered, (PUBLISHERS * EACH * CLIENTS) as u64);
}

/// A subscriber that never reads, next to one that reads every message: the publishes
/// go on for the reader whatever happens to the other.
fn slow_subscriber(policy: SlowSubscriber) -> (WebSocketServer, Client) {
    let server = server_with(|o| {
        o.limits.max_buffered = 64 << 10;
        o.topics.slow_subscriber = policy;
    });
    let addr = server.local_addr();
    let slow = subscribed(addr, "feed");
    let mut fast = subscribed(addr, "feed");
    let chunk = vec![7u8; 32 << 10];
    // Far more than the loopback socket buffers hold: the slow one is over its cap long
    // before the end. Paced by the fast reader, which therefore never is.
    for _ in 0..1024 {
        // 2, or 1 once a closed slow subscriber is gone.
        assert!(server.publish("feed", chunk.clone()) >= 1);
        assert_eq!(recv(&mut fast), format!("binary {}", chunk.len()));
    }
    (server, slow)
}

#[test]
fn a_slow_subscriber_misses_messages_without_slowing_the_others() {
    let (server, mut slow) = slow_subscriber(SlowSubscriber::Skip);
    let stats = server.topic_stats();
    assert!(stats.skipped > 0, "{stats:?}");
    assert_eq!(stats.delivered + stats.skipped, 2 * 1024, "{stats:?}");
    assert_eq!(stats.closed, 0);
    // Still open: it reads what it was sent, then gets later messages again.
    let sent = 1024 - stats.skipped as usize;
    for _ in 0..sent {
        assert_eq!(recv(&mut slow), format!("binary {}", 32 << 10));
    }
    server.publish("feed", "caught up");
    assert_eq!(recv(&mut slow), "caught up");
}

#[test]
fn a_slow_subscriber_can_be_closed_with_1008_instead() {
    let (server, mut slow) = slow_subscriber(SlowSubscriber::Close);
    let stats = server.topic_stats();
    assert_eq!(stats.closed, 1, "{stats:?}");
    let mut binary = 0;
    let close = loop {
        let got = recv(&mut slow);
        if got.starts_with("binary") {
            binary += 1;
            assert!(binary <= 1024);
            continue;
        }
        break got;
    };
    assert_eq!(close, "close Some(Policy)");
    wait_until("the slow one to leave", || {
        server.subscriber_count("feed") == 1
    });
}
