//! The chat demo across nodes with the real components: a Redis server, two
//! `ws6455-server --redis` nodes, and nginx in front of them with the repository's
//! `deploy/nginx.conf` (its ports changed to free ones). A client on one node and a client
//! through nginx on the other see each other's messages; with Redis stopped both nodes go
//! on serving locally and report the outage once; with Redis back, messages cross again.
//!
//! Needs `redis-server` and `nginx` (Debian packages of the same names; `.ci/run`
//! installs them).

use std::net::{SocketAddr, TcpListener, TcpStream};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use tungstenite::{Message, WebSocket};

const WAIT: Duration = Duration::from_secs(10);

/// A child process stopped when the test ends, however it ends: SIGTERM first (nginx's
/// master then stops its workers, which a SIGKILL would leave running), SIGKILL if it is
/// still there after a few seconds.
struct Killed(Child);

impl Drop for Killed {
    fn drop(&mut self) {
        let _ = Command::new("kill")
            .args(["-TERM", &self.0.id().to_string()])
            .status();
        let deadline = Instant::now() + Duration::from_secs(5);
        while Instant::now() < deadline {
            if let Ok(Some(_)) = self.0.try_wait() {
                return;
            }
            std::thread::sleep(Duration::from_millis(10));
        }
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

/// A port free now and never handed out before in this process: the tests run in
/// parallel, and a port dropped by one (for redis-server to take) must not go to another's
/// node meanwhile.
fn free_port() -> u16 {
    static GIVEN: std::sync::Mutex<Vec<u16>> = std::sync::Mutex::new(Vec::new());
    let mut given = GIVEN.lock().unwrap();
    for _ in 0..100 {
        let port = TcpListener::bind("127.0.0.1:0")
            .unwrap()
            .local_addr()
            .unwrap()
            .port();
        if !given.contains(&port) {
            given.push(port);
            return port;
        }
    }
    panic!("no fresh free port in 100 tries");
}

/// The program's path, or a panic that says what to install.
fn program(name: &str) -> PathBuf {
    for dir in ["/usr/bin", "/usr/sbin", "/usr/local/bin", "/usr/local/sbin"] {
        let path = Path::new(dir).join(name);
        if path.exists() {
            return path;
        }
    }
    panic!("{name} not found: install the Debian package {name} (.ci/run does)");
}

fn wait_for_port(port: u16, what: &str) {
    let deadline = Instant::now() + WAIT;
    while TcpStream::connect(("127.0.0.1", port)).is_err() {
        assert!(
            Instant::now() < deadline,
            "{what} is not listening on {port}"
        );
        std::thread::sleep(Duration::from_millis(20));
    }
}

fn start_redis(port: u16) -> Killed {
    let child = Command::new(program("redis-server"))
        .args(["--port", &port.to_string(), "--bind", "127.0.0.1"])
        .args(["--save", "", "--appendonly", "no"])
        .stdout(Stdio::null())
        .spawn()
        .expect("start redis-server");
    let mut redis = Killed(child);
    wait_for_port(port, "redis-server");
    // Listening is not answering yet (a full `cargo test` once failed to connect right
    // after the port opened): wait for a PONG, and say why when none comes.
    let url = format!("redis://127.0.0.1:{port}");
    let deadline = Instant::now() + WAIT;
    loop {
        let pong = redis::Client::open(url.as_str())
            .and_then(|client| client.get_connection())
            .and_then(|mut conn| redis::cmd("PING").query::<String>(&mut conn));
        match pong {
            Ok(_) => return redis,
            Err(error) => {
                let exited = redis.0.try_wait().ok().flatten();
                assert!(
                    exited.is_none(),
                    "redis-server exited ({exited:?}): {error}"
                );
                assert!(Instant::now() < deadline, "redis-server on {port}: {error}");
                std::thread::sleep(Duration::from_millis(20));
            }
        }
    }
}

fn start_node(port: u16, redis: u16, log: &Path) -> Killed {
    let child = Command::new(env!("CARGO_BIN_EXE_ws6455-server"))
        .args(["--listen", &format!("127.0.0.1:{port}")])
        .args(["--redis", &format!("redis://127.0.0.1:{redis}")])
        .args(["--log", "debug"])
        .stderr(std::fs::File::create(log).unwrap())
        .spawn()
        .expect("start ws6455-server");
    wait_for_port(port, "ws6455-server");
    Killed(child)
}

/// nginx with `deploy/nginx.conf`, its three ports replaced.
fn start_nginx(dir: &Path, front: u16, nodes: [u16; 2]) -> Killed {
    let conf =
        std::fs::read_to_string(concat!(env!("CARGO_MANIFEST_DIR"), "/../deploy/nginx.conf"))
            .unwrap();
    for port in ["8080", "8081", "8082"] {
        assert!(
            conf.contains(&format!("127.0.0.1:{port}")),
            "deploy/nginx.conf changed"
        );
    }
    let conf = conf
        .replace("127.0.0.1:8080", &format!("127.0.0.1:{front}"))
        .replace("127.0.0.1:8081", &format!("127.0.0.1:{}", nodes[0]))
        .replace("127.0.0.1:8082", &format!("127.0.0.1:{}", nodes[1]));
    let path = dir.join("nginx.conf");
    std::fs::write(&path, conf).unwrap();
    let child = Command::new(program("nginx"))
        .arg("-p")
        .arg(dir)
        .arg("-c")
        .arg(&path)
        .args(["-e", "stderr"])
        .stderr(std::fs::File::create(dir.join("stderr.log")).unwrap())
        .spawn()
        .expect("start nginx");
    wait_for_port(front, "nginx");
    Killed(child)
}

type Client = WebSocket<TcpStream>;

/// Joins the chat room at `port`; returns the client and the port of the node that
/// welcomed it (`welcome! you are client N@PORT; ...`).
fn join(port: u16) -> (Client, u16) {
    let addr = SocketAddr::from(([127, 0, 0, 1], port));
    let stream = TcpStream::connect(addr).unwrap();
    stream
        .set_read_timeout(Some(Duration::from_millis(100)))
        .unwrap();
    let (mut ws, _) = tungstenite::client(format!("ws://{addr}/ws"), stream).unwrap();
    let welcome = next_text(&mut ws, WAIT).expect("a welcome");
    let node = welcome
        .split('@')
        .nth(1)
        .and_then(|rest| rest.split(';').next())
        .and_then(|port| port.parse().ok())
        .unwrap_or_else(|| panic!("unexpected welcome {welcome:?}"));
    (ws, node)
}

/// The next text message within `within`, if any.
fn next_text(ws: &mut Client, within: Duration) -> Option<String> {
    let deadline = Instant::now() + within;
    while Instant::now() < deadline {
        match ws.read() {
            Ok(Message::Text(text)) => return Some(text.to_string()),
            Ok(_) => {}
            Err(tungstenite::Error::Io(e))
                if matches!(
                    e.kind(),
                    std::io::ErrorKind::WouldBlock | std::io::ErrorKind::TimedOut
                ) => {}
            Err(e) => panic!("connection failed: {e}"),
        }
    }
    None
}

/// Reads until a message ending with `tail` arrives (others are the room's join
/// notices); false if none within `within`.
fn heard(ws: &mut Client, tail: &str, within: Duration) -> bool {
    let deadline = Instant::now() + within;
    while let Some(text) = next_text(ws, deadline.saturating_duration_since(Instant::now())) {
        if text.ends_with(tail) {
            return true;
        }
    }
    false
}

/// Sends numbered messages from `from` until `to` hears one (Redis subscriptions follow
/// a node's topics within milliseconds; pub/sub drops what comes before). Returns how
/// long that took.
fn until_heard(from: &mut Client, to: &mut Client, label: &str, within: Duration) -> Duration {
    let start = Instant::now();
    for n in 0.. {
        assert!(
            start.elapsed() < within,
            "{label}: nothing crossed within {within:?}"
        );
        let text = format!("{label} {n}");
        from.send(Message::text(text.clone())).unwrap();
        if heard(to, &text, Duration::from_millis(200)) {
            return start.elapsed();
        }
    }
    unreachable!()
}

fn count(log: &Path, needle: &str) -> usize {
    std::fs::read_to_string(log)
        .unwrap_or_default()
        .matches(needle)
        .count()
}

fn wait_for_log(log: &Path, needle: &str) {
    let deadline = Instant::now() + WAIT;
    while count(log, needle) == 0 {
        assert!(
            Instant::now() < deadline,
            "no {needle:?} in {}",
            log.display()
        );
        std::thread::sleep(Duration::from_millis(20));
    }
}

#[test]
fn two_nodes_behind_nginx_share_a_room_through_redis_and_survive_its_outage() {
    let dir = std::env::temp_dir().join(format!("ws6455-backplane-{}", std::process::id()));
    let _ = std::fs::remove_dir_all(&dir);
    std::fs::create_dir_all(&dir).unwrap();
    let redis_port = free_port();
    let nodes = [free_port(), free_port()];
    let front = free_port();
    let logs = [dir.join("node-a.log"), dir.join("node-b.log")];

    let mut redis = Some(start_redis(redis_port));
    let _node_a = start_node(nodes[0], redis_port, &logs[0]);
    let _node_b = start_node(nodes[1], redis_port, &logs[1]);
    let _nginx = start_nginx(&dir, front, nodes);

    // One client straight on node A; one through nginx that lands on node B (nginx
    // spreads its connections: a few tries at most).
    let (mut on_a, node) = join(nodes[0]);
    assert_eq!(node, nodes[0]);
    let mut via_nginx = None;
    let mut spare = Vec::new();
    for _ in 0..4 {
        let (ws, node) = join(front);
        if node == nodes[1] {
            via_nginx = Some(ws);
            break;
        }
        spare.push(ws);
    }
    let mut on_b = via_nginx.expect("nginx sent no connection to node B");
    drop(spare);

    // Both nodes hold the room in Redis.
    let client = redis::Client::open(format!("redis://127.0.0.1:{redis_port}")).unwrap();
    let mut admin = client.get_connection().unwrap();
    let deadline = Instant::now() + WAIT;
    loop {
        let numsub: (String, u32) = redis::cmd("PUBSUB")
            .arg("NUMSUB")
            .arg("ws6455:chat")
            .query::<Vec<(String, u32)>>(&mut admin)
            .unwrap()
            .remove(0);
        if numsub.1 == 2 {
            break;
        }
        assert!(
            Instant::now() < deadline,
            "nodes not subscribed: {numsub:?}"
        );
        std::thread::sleep(Duration::from_millis(20));
    }

    // Across nodes, both ways, and nothing delivered twice.
    on_a.send(Message::text("hello from A")).unwrap();
    assert!(heard(&mut on_b, "hello from A", WAIT), "B did not hear A");
    on_b.send(Message::text("hello from B")).unwrap();
    assert!(heard(&mut on_a, "hello from B", WAIT), "A did not hear B");
    assert!(
        !heard(&mut on_b, "hello from A", Duration::from_millis(300)),
        "B heard A twice"
    );

    // Redis goes away: both nodes say so, once each; each keeps serving its own room.
    drop(redis.take());
    for log in &logs {
        wait_for_log(log, "server error: [redis]");
    }
    let (mut second_on_a, _) = join(nodes[0]);
    let (mut second_on_b, _) = join(nodes[1]);
    for n in 0..5 {
        let text = format!("local A {n}");
        on_a.send(Message::text(text.clone())).unwrap();
        assert!(heard(&mut second_on_a, &text, WAIT), "A's room is down");
        let text = format!("local B {n}");
        second_on_b.send(Message::text(text.clone())).unwrap();
        assert!(heard(&mut on_b, &text, WAIT), "B's room is down");
    }
    assert!(
        !heard(&mut on_b, "local A 4", Duration::from_millis(300)),
        "a message crossed without Redis"
    );
    for log in &logs {
        assert_eq!(count(log, "server error: [redis]"), 1, "{}", log.display());
    }

    // Redis is back: the nodes reconnect, subscribe again, and messages cross again.
    let _redis = start_redis(redis_port);
    let took = until_heard(&mut on_a, &mut on_b, "A again", WAIT);
    let took_back = until_heard(&mut on_b, &mut on_a, "B again", WAIT);
    eprintln!("messages crossed again after {took:?} (A to B) and {took_back:?} (B to A)");
    for log in &logs {
        assert_eq!(count(log, "server error: [redis]"), 1, "{}", log.display());
        wait_for_log(log, "redis backplane reachable again");
    }
    let _ = std::fs::remove_dir_all(&dir);
}

/// In-process nodes on a real Redis: what each node holds in Redis, exactly one delivery
/// per publish, and the outage through `on_error` itself.
mod in_process {
    use super::*;
    use std::sync::{Arc, Mutex};
    use ws6455_server::*;

    struct Joins;
    impl ConnectionHandler for Joins {
        fn on_message(&self, ws: &WebSocketConnection, event: MessageEvent) {
            let Data::Text(text) = event.data else { return };
            match text.split_once(' ') {
                Some(("sub", topic)) => {
                    ws.subscribe(topic).unwrap();
                    ws.send("ok").unwrap();
                }
                Some(("unsub", topic)) => {
                    ws.unsubscribe(topic);
                    ws.send("ok").unwrap();
                }
                _ => {}
            }
        }
    }

    struct Node {
        errors: Arc<Mutex<Vec<Error>>>,
    }
    impl ServerHandler for Node {
        fn on_connection(
            &self,
            _: &WebSocketServer,
            _: &ConnectionEvent,
        ) -> Option<Arc<dyn ConnectionHandler>> {
            Some(Arc::new(Joins))
        }
        fn on_error(&self, _: &WebSocketServer, event: ErrorEvent) {
            self.errors.lock().unwrap().extend(event.errors);
        }
    }

    fn node(redis: u16) -> (WebSocketServer, Arc<Mutex<Vec<Error>>>) {
        let errors = Arc::new(Mutex::new(Vec::new()));
        let mut options = ServerOptions {
            listen: "127.0.0.1:0".parse().unwrap(),
            ..ServerOptions::default()
        };
        options.topics.backplane = Some(Backplane::redis(format!("redis://127.0.0.1:{redis}")));
        let node = Node {
            errors: errors.clone(),
        };
        (WebSocketServer::new(node, options).unwrap(), errors)
    }

    fn client(server: &WebSocketServer) -> Client {
        let stream = TcpStream::connect(server.local_addr()).unwrap();
        stream
            .set_read_timeout(Some(Duration::from_millis(100)))
            .unwrap();
        tungstenite::client(format!("ws://{}/", server.local_addr()), stream)
            .unwrap()
            .0
    }

    fn command(ws: &mut Client, text: &str) {
        ws.send(Message::text(text)).unwrap();
        assert_eq!(next_text(ws, WAIT).as_deref(), Some("ok"));
    }

    /// The node subscriber counts Redis has for each channel.
    fn numsub(admin: &mut redis::Connection, channels: &[&str]) -> Vec<u32> {
        let mut cmd = redis::cmd("PUBSUB");
        cmd.arg("NUMSUB");
        for channel in channels {
            cmd.arg(*channel);
        }
        let answer: Vec<(String, u32)> = cmd.query(admin).unwrap();
        answer.into_iter().map(|(_, n)| n).collect()
    }

    fn wait_numsub(admin: &mut redis::Connection, channels: &[&str], want: &[u32]) {
        let deadline = Instant::now() + WAIT;
        loop {
            let got = numsub(admin, channels);
            if got == want {
                return;
            }
            assert!(
                Instant::now() < deadline,
                "{channels:?}: {got:?}, not {want:?}"
            );
            std::thread::sleep(Duration::from_millis(10));
        }
    }

    #[test]
    fn a_node_holds_in_redis_only_its_topics_and_delivers_each_publish_once() {
        let redis_port = free_port();
        let _redis = start_redis(redis_port);
        let mut admin = redis::Client::open(format!("redis://127.0.0.1:{redis_port}"))
            .unwrap()
            .get_connection()
            .unwrap();
        let (a, _) = node(redis_port);
        let (b, _) = node(redis_port);
        let channels = ["ws6455:news", "ws6455:sport"];
        wait_numsub(&mut admin, &channels, &[0, 0]);

        let mut on_a = client(&a);
        let mut on_b = client(&b);
        let mut also_on_b = client(&b);
        command(&mut on_a, "sub news");
        command(&mut on_b, "sub news");
        command(&mut also_on_b, "sub news");
        command(&mut also_on_b, "sub sport");
        // One Redis subscription per node and topic, however many local subscribers.
        wait_numsub(&mut admin, &channels, &[2, 1]);

        // Each subscriber once: A's from its own loop, B's through Redis.
        assert_eq!(a.publish("news", "from A"), 1);
        for ws in [&mut on_a, &mut on_b, &mut also_on_b] {
            assert_eq!(next_text(ws, WAIT).as_deref(), Some("from A"));
        }
        assert_eq!(b.publish("sport", "only B"), 1);
        assert_eq!(next_text(&mut also_on_b, WAIT).as_deref(), Some("only B"));
        for ws in [&mut on_a, &mut on_b, &mut also_on_b] {
            assert_eq!(
                next_text(ws, Duration::from_millis(300)),
                None,
                "a copy too many"
            );
        }
        let (a_stats, b_stats) = (a.topic_stats(), b.topic_stats());
        assert_eq!((a_stats.relayed_out, a_stats.relayed_in), (1, 0));
        assert_eq!((b_stats.relayed_out, b_stats.relayed_in), (1, 1));

        // The last local subscriber leaving ends the node's Redis subscription.
        command(&mut also_on_b, "unsub sport");
        wait_numsub(&mut admin, &channels, &[2, 0]);
        command(&mut on_b, "unsub news");
        wait_numsub(&mut admin, &channels, &[2, 0]);
        also_on_b.close(None).unwrap();
        wait_numsub(&mut admin, &channels, &[1, 0]);
    }

    #[test]
    fn an_outage_is_one_error_and_the_node_resubscribes_when_redis_is_back() {
        let redis_port = free_port();
        let redis = start_redis(redis_port);
        let (a, a_errors) = node(redis_port);
        let (b, b_errors) = node(redis_port);
        let mut on_a = client(&a);
        let mut on_b = client(&b);
        command(&mut on_a, "sub t");
        command(&mut on_b, "sub t");
        let mut admin = redis::Client::open(format!("redis://127.0.0.1:{redis_port}"))
            .unwrap()
            .get_connection()
            .unwrap();
        wait_numsub(&mut admin, &["ws6455:t"], &[2]);
        drop(admin);

        drop(redis);
        let deadline = Instant::now() + WAIT;
        while a_errors.lock().unwrap().is_empty() || b_errors.lock().unwrap().is_empty() {
            assert!(Instant::now() < deadline, "the outage was not reported");
            std::thread::sleep(Duration::from_millis(10));
        }
        // Publishes during the outage: local delivery, lost across, no more errors.
        for n in 0..50 {
            assert_eq!(a.publish("t", format!("during {n}")), 1);
        }
        for n in 0..50 {
            assert_eq!(next_text(&mut on_a, WAIT), Some(format!("during {n}")));
        }
        assert_eq!(next_text(&mut on_b, Duration::from_millis(300)), None);
        for errors in [&a_errors, &b_errors] {
            let errors = errors.lock().unwrap();
            assert_eq!(errors.len(), 1, "{errors:?}");
            assert_eq!((errors[0].code, errors[0].component), (503, "redis"));
        }

        let _redis = start_redis(redis_port);
        let mut admin = redis::Client::open(format!("redis://127.0.0.1:{redis_port}"))
            .unwrap()
            .get_connection()
            .unwrap();
        wait_numsub(&mut admin, &["ws6455:t"], &[2]);
        a.publish("t", "after");
        assert_eq!(next_text(&mut on_b, WAIT).as_deref(), Some("after"));
        assert!(a.topic_stats().relay_lost > 0);
        assert_eq!(a_errors.lock().unwrap().len(), 1);
    }
}
