//! The `ws6455-client` command-line tool, run as a user would, against our echo server.

use std::io::Write;
use std::process::{Command, Stdio};
use std::sync::Arc;
use std::time::{Duration, Instant};

use ws6455_server::*;

struct Echo;

impl ConnectionHandler for Echo {
    fn on_message(&self, ws: &WebSocketConnection, event: MessageEvent) {
        match event.data.as_text() {
            Some("close-4000") => ws.terminate(Some(4000), Some("bye")).unwrap(),
            _ => ws.send(event.data).unwrap(),
        }
    }
}

/// Accepts everyone; greets with the Cookie the client sent.
struct Greeter;

impl ServerHandler for Greeter {
    fn on_connection(
        &self,
        _: &WebSocketServer,
        event: &ConnectionEvent,
    ) -> Option<Arc<dyn ConnectionHandler>> {
        let cookie = event.request.headers().get("cookie").unwrap_or("none");
        let greeting = format!("cookie: {cookie}");
        struct Greet(String);
        impl ConnectionHandler for Greet {
            fn on_open(&self, ws: &WebSocketConnection) {
                ws.send(self.0.as_str()).unwrap();
            }
            fn on_message(&self, ws: &WebSocketConnection, event: MessageEvent) {
                Echo.on_message(ws, event)
            }
        }
        Some(Arc::new(Greet(greeting)))
    }
}

fn server() -> WebSocketServer {
    WebSocketServer::new(
        Greeter,
        ServerOptions {
            listen: "127.0.0.1:0".parse().unwrap(),
            ..ServerOptions::default()
        },
    )
    .unwrap()
}

/// Runs the tool with `args` and `stdin`; returns (exit code, stdout, stderr). Bounded.
fn run(args: &[&str], stdin: &[u8]) -> (i32, String, String) {
    let mut child = Command::new(env!("CARGO_BIN_EXE_ws6455-client"))
        .args(args)
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    child.stdin.take().unwrap().write_all(stdin).unwrap();
    let deadline = Instant::now() + Duration::from_secs(10);
    while child.try_wait().unwrap().is_none() {
        if Instant::now() > deadline {
            child.kill().unwrap();
            panic!("ws6455-client {args:?} did not exit");
        }
        std::thread::sleep(Duration::from_millis(10));
    }
    let out = child.wait_with_output().unwrap();
    (
        out.status.code().unwrap_or(-1),
        String::from_utf8_lossy(&out.stdout).into_owned(),
        String::from_utf8_lossy(&out.stderr).into_owned(),
    )
}

#[test]
fn lines_go_out_and_messages_come_back() {
    let server = server();
    let url = format!("ws://{}/", server.local_addr());
    let (code, out, err) = run(
        &["-H", "Cookie: a=1; b=2", "--linger", "0.3", &url],
        "hello\nwörld\n".as_bytes(),
    );
    assert_eq!(code, 0, "{err}");
    assert_eq!(out, "cookie: a=1; b=2\nhello\nwörld\n");
    // Binary out, hex back; our own close code counts as normal.
    let (code, out, err) = run(
        &["--binary", "--close-code", "4001", "--linger", "0.3", &url],
        b"AB\n",
    );
    assert_eq!(code, 0, "{err}");
    assert_eq!(out, "cookie: none\n4142\n");
}

#[test]
fn failures_exit_non_zero_with_the_reason() {
    let server = server();
    let url = format!("ws://{}/", server.local_addr());
    let (code, _, err) = run(&[&url], b"close-4000\n");
    assert_eq!(code, 1);
    assert!(err.contains("code 4000") && err.contains("bye"), "{err}");
    let free = std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap();
    let (code, _, err) = run(&[&format!("ws://{free}/")], b"");
    assert_eq!(code, 2);
    assert!(err.contains("cannot connect"), "{err}");
    let (code, _, err) = run(&["--close-code", "1001", &url], b"");
    assert_eq!(code, 2);
    assert!(err.contains("--close-code"), "{err}");
    // A line that is not UTF-8 cannot be a text message: said, and not a success.
    let (code, _, err) = run(&["--linger", "0", &url], b"ok\n\xff\xfe\n");
    assert_eq!(code, 1, "{err}");
    assert!(err.contains("not UTF-8"), "{err}");
    let (code, out, _) = run(&["--help"], b"");
    assert_eq!(code, 0);
    assert!(out.contains("--ping-interval") && out.contains("--protocol"));
}
