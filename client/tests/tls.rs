//! `wss://` from the client: against our server, against an independent one (tungstenite
//! over a blocking rustls stream), and against certificates that must be refused.

use std::net::TcpListener;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use ws6455_client::rustls::CertificateError;
use ws6455_client::*;

#[path = "../../server/tests/support/pki.rs"]
mod pki;

const WAIT: Duration = Duration::from_secs(5);

/// Records messages and the end of the connection.
#[derive(Clone, Default)]
struct Recorder {
    messages: Arc<Mutex<Vec<Data>>>,
}

impl Recorder {
    /// Waits (bounded) until `count` messages arrived.
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

struct Echo;

impl ws6455_server::ConnectionHandler for Echo {
    fn on_message(
        &self,
        ws: &ws6455_server::WebSocketConnection,
        event: ws6455_server::MessageEvent,
    ) {
        ws.send(event.data).unwrap();
    }
}

struct EchoServer;

impl ws6455_server::ServerHandler for EchoServer {
    fn on_connection(
        &self,
        _: &ws6455_server::WebSocketServer,
        _: &ws6455_server::ConnectionEvent,
    ) -> Option<Arc<dyn ws6455_server::ConnectionHandler>> {
        Some(Arc::new(Echo))
    }
}

/// Our echo server over TLS with `leaf`'s certificate, on a free port of 127.0.0.1.
fn start(leaf: &pki::Leaf) -> ws6455_server::WebSocketServer {
    let options = ws6455_server::ServerOptions {
        listen: "127.0.0.1:0".parse().unwrap(),
        tls: Some(leaf.server_config()),
        ..ws6455_server::ServerOptions::default()
    };
    ws6455_server::WebSocketServer::new(EchoServer, options).unwrap()
}

fn trusting(ca: &pki::Ca) -> ClientOptions {
    ClientOptions {
        tls: Some(ca.client_config()),
        ..ClientOptions::default()
    }
}

/// Sends text and binary messages of several sizes and checks each echo.
fn check_echoes(ws: &WebSocket, recorder: &Recorder) {
    let big: Vec<u8> = (0..(1 << 20) + 3).map(|i| (i % 253) as u8).collect();
    ws.send("héllo wss").unwrap();
    ws.send(Data::Blob(big.clone())).unwrap();
    ws.send("").unwrap();
    let messages = recorder.wait_messages(3);
    assert_eq!(messages[0].as_text(), Some("héllo wss"));
    assert!(matches!(&messages[1], Data::Blob(b) if *b == big));
    assert_eq!(messages[2].as_text(), Some(""));
}

#[test]
fn wss_to_our_server_by_name_and_by_ip() {
    let ca = pki::Ca::new();
    let server = start(&ca.issue(&["localhost", "127.0.0.1"], false));
    let port = server.local_addr().port();
    for url in [
        format!("wss://localhost:{port}/chat"),
        format!("wss://127.0.0.1:{port}/chat"),
    ] {
        let recorder = Recorder::default();
        let ws = WebSocket::with_options(&url, recorder.clone(), trusting(&ca))
            .unwrap_or_else(|e| panic!("{url}: {e}"));
        check_echoes(&ws, &recorder);
        ws.terminate(Some(4000), Some("done")).unwrap();
        let end = ws.wait(Some(WAIT)).expect("closed");
        assert!(end.was_clean, "{url}: {end:?}");
        assert_eq!(end.code, 4000);
    }
    server.terminate();
}

#[test]
fn untrusted_expired_and_misnamed_certificates_are_refused() {
    let ca = pki::Ca::new();
    let cases = [
        // Signed by a CA the client does not know (only Mozilla's roots are trusted).
        (
            ca.issue(&["127.0.0.1"], false),
            ClientOptions::default(),
            "trusted root",
        ),
        (ca.issue(&["127.0.0.1"], true), trusting(&ca), "has expired"),
        (
            ca.issue(&["example.test"], false),
            trusting(&ca),
            "another name",
        ),
    ];
    for (leaf, options, words) in cases {
        let server = start(&leaf);
        let url = format!("wss://127.0.0.1:{}/", server.local_addr().port());
        let error = WebSocket::with_options(&url, Recorder::default(), options).unwrap_err();
        let ConnectError::Certificate { host, reason } = &error else {
            panic!("{words}: {error:?}");
        };
        assert_eq!(host, "127.0.0.1");
        let expected = match words {
            "trusted root" => matches!(reason, CertificateError::UnknownIssuer),
            "has expired" => matches!(
                reason,
                CertificateError::Expired | CertificateError::ExpiredContext { .. }
            ),
            _ => matches!(
                reason,
                CertificateError::NotValidForName | CertificateError::NotValidForNameContext { .. }
            ),
        };
        assert!(expected, "{words}: {reason:?}");
        assert!(error.to_string().contains(words), "{error}");
        // Nothing was opened on the server.
        assert!(server.connections().is_empty());
        server.terminate();
    }
}

#[test]
fn wss_to_a_plain_server_fails_with_a_tls_error_not_a_hang() {
    // A plain ws server: our TLS ClientHello gets an HTTP 400 answer, not a TLS record.
    let options = ws6455_server::ServerOptions {
        listen: "127.0.0.1:0".parse().unwrap(),
        ..ws6455_server::ServerOptions::default()
    };
    let server = ws6455_server::WebSocketServer::new(EchoServer, options).unwrap();
    let url = format!("wss://127.0.0.1:{}/", server.local_addr().port());
    let started = Instant::now();
    let error = WebSocket::new(&url, Recorder::default()).unwrap_err();
    assert!(matches!(error, ConnectError::Tls(_)), "{error:?}");
    assert!(started.elapsed() < WAIT);
    server.terminate();
}

#[test]
fn a_server_stalling_the_tls_handshake_hits_the_connect_timeout() {
    let listener = TcpListener::bind("127.0.0.1:0").unwrap();
    let url = format!("wss://127.0.0.1:{}/", listener.local_addr().unwrap().port());
    let options = ClientOptions {
        connect_timeout: Duration::from_millis(300),
        ..ClientOptions::default()
    };
    let started = Instant::now();
    let error = WebSocket::with_options(&url, Recorder::default(), options).unwrap_err();
    assert!(matches!(error, ConnectError::Timeout(_)), "{error:?}");
    assert!(started.elapsed() < Duration::from_secs(3));
    drop(listener);
}

/// An independent server: tungstenite over a blocking rustls stream, echoing until the
/// client closes; returns what it saw at the end.
fn tungstenite_server(leaf: &pki::Leaf) -> (u16, std::thread::JoinHandle<String>) {
    let listener = TcpListener::bind("127.0.0.1:0").unwrap();
    let port = listener.local_addr().unwrap().port();
    let config = leaf.server_config();
    let thread = std::thread::spawn(move || {
        let (socket, _) = listener.accept().unwrap();
        socket.set_read_timeout(Some(WAIT)).unwrap();
        let session = ws6455_client::rustls::ServerConnection::new(config).unwrap();
        let stream = ws6455_client::rustls::StreamOwned::new(session, socket);
        let mut ws = tungstenite::accept(stream).unwrap();
        loop {
            match ws.read() {
                Ok(tungstenite::Message::Close(frame)) => {
                    let _ = ws.flush();
                    return format!("close {:?}", frame.map(|f| u16::from(f.code)));
                }
                Ok(message @ (tungstenite::Message::Text(_) | tungstenite::Message::Binary(_))) => {
                    ws.send(message).unwrap()
                }
                Ok(_) => {}
                Err(e) => return format!("error {e}"),
            }
        }
    });
    (port, thread)
}

#[test]
fn wss_to_an_independent_server() {
    let ca = pki::Ca::new();
    let (port, server) = tungstenite_server(&ca.issue(&["localhost"], false));
    let recorder = Recorder::default();
    let url = format!("wss://localhost:{port}/");
    let ws = WebSocket::with_options(&url, recorder.clone(), trusting(&ca)).unwrap();
    check_echoes(&ws, &recorder);
    ws.terminate(None, None).unwrap();
    let end = ws.wait(Some(WAIT)).expect("closed");
    assert!(end.was_clean, "{end:?}");
    assert_eq!(server.join().unwrap(), "close Some(1000)");
}

#[test]
fn cli_trusts_the_ca_given_with_dash_dash_ca() {
    let ca = pki::Ca::new();
    let server = start(&ca.issue(&["localhost"], false));
    let dir = std::env::temp_dir().join(format!("ws6455-cli-ca-{}", std::process::id()));
    std::fs::create_dir_all(&dir).unwrap();
    let ca_file = dir.join("ca.pem");
    std::fs::write(&ca_file, ca.pem()).unwrap();
    let url = format!("wss://localhost:{}/", server.local_addr().port());
    let run = |extra: &[&std::ffi::OsStr]| {
        use std::io::Write;
        let mut child = std::process::Command::new(env!("CARGO_BIN_EXE_ws6455-client"))
            .args(extra)
            .args(["--linger", "0.2", "--timeout", "5", &url])
            .stdin(std::process::Stdio::piped())
            .stdout(std::process::Stdio::piped())
            .stderr(std::process::Stdio::piped())
            .spawn()
            .unwrap();
        child
            .stdin
            .take()
            .unwrap()
            .write_all(b"over tls\n")
            .unwrap();
        child.wait_with_output().unwrap()
    };
    let trusted = run(&["--ca".as_ref(), ca_file.as_os_str()]);
    assert_eq!(trusted.status.code(), Some(0), "{trusted:?}");
    assert_eq!(String::from_utf8_lossy(&trusted.stdout), "over tls\n");
    let untrusted = run(&[]);
    assert_eq!(untrusted.status.code(), Some(2), "{untrusted:?}");
    let stderr = String::from_utf8_lossy(&untrusted.stderr);
    assert!(stderr.contains("not signed by a trusted root"), "{stderr}");
    let _ = std::fs::remove_dir_all(&dir);
    server.terminate();
}

#[test]
fn a_server_trickling_the_tls_handshake_cannot_stretch_the_connect_timeout() {
    // Regression: rustls reads in a loop within one call and a socket timeout restarts at
    // each read, so one byte every 100 ms kept the connect going past its timeout.
    let listener = TcpListener::bind("127.0.0.1:0").unwrap();
    let url = format!("wss://127.0.0.1:{}/", listener.local_addr().unwrap().port());
    let trickler = std::thread::spawn(move || {
        use std::io::{Read, Write};
        let (mut socket, _) = listener.accept().unwrap();
        let mut hello = [0u8; 1024];
        let _ = socket.read(&mut hello);
        // The header of a 16 KiB handshake record, then its body a byte at a time
        // (bounded: 100 bytes, 10 s).
        let _ = socket.write_all(&[0x16, 0x03, 0x03, 0x40, 0x00]);
        for _ in 0..100 {
            std::thread::sleep(Duration::from_millis(100));
            if socket.write_all(&[0]).is_err() {
                break;
            }
        }
    });
    let options = ClientOptions {
        connect_timeout: Duration::from_millis(500),
        ..ClientOptions::default()
    };
    let started = Instant::now();
    let error = WebSocket::with_options(&url, Recorder::default(), options).unwrap_err();
    let took = started.elapsed();
    assert!(matches!(error, ConnectError::Timeout(_)), "{error:?}");
    assert!(took < Duration::from_secs(3), "took {took:?}");
    trickler.join().unwrap();
}
