//! The hyper 1 upgrade: one port serves a page and WebSocket; our client and
//! tokio-tungstenite connect through hyper; bad upgrades and refusals get their status.
#![cfg(feature = "hyper")]

use std::convert::Infallible;
use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;

use futures_util::{SinkExt, StreamExt};
use http_body_util::Full;
use hyper::body::{Bytes, Incoming};
use hyper::{Request, Response};
use hyper_util::rt::TokioIo;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::{TcpListener, TcpStream};
use tokio_tungstenite::tungstenite;
use ws6455_tokio::upgrade::upgrade;
use ws6455_tokio::{connect, Choices, Config, Decision, DeflateConfig, Message, Options};

const WAIT: Duration = Duration::from_secs(10);

async fn within<T>(f: impl std::future::Future<Output = T>) -> T {
    tokio::time::timeout(WAIT, f).await.expect("in time")
}

/// `/` is a page; `/ws` echoes, refuses `?deny` with 403 and picks the `echo`
/// subprotocol when offered.
fn serve(mut request: Request<Incoming>, options: &Options) -> Response<Full<Bytes>> {
    if request.uri().path() != "/ws" {
        return Response::new(Full::new(Bytes::from_static(b"a page\n")));
    }
    let decide = |request: &ws6455_tokio::Request| {
        if request.query_string() == Some("deny") {
            return Decision::Reject {
                status: 403,
                reason: "not you".into(),
            };
        }
        let subprotocol = request
            .subprotocols()
            .contains(&"echo")
            .then(|| "echo".to_owned());
        Decision::Accept(Choices {
            subprotocol,
            headers: vec![("Set-Cookie".into(), "seen=1".into())],
        })
    };
    match upgrade(&mut request, options, decide) {
        Ok((response, upgrading)) => {
            tokio::spawn(async move {
                let mut ws = upgrading.await.unwrap();
                while let Some(Ok(message)) = ws.next().await {
                    if let Message::Text(_) | Message::Binary(_) = message {
                        let _ = ws.send(message).await;
                    }
                }
            });
            response
        }
        Err(refusal) => refusal,
    }
}

async fn hyper_server(options: Options) -> SocketAddr {
    let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    tokio::spawn(async move {
        while let Ok((tcp, _)) = listener.accept().await {
            let options = options.clone();
            tokio::spawn(async move {
                let service = hyper::service::service_fn(move |request| {
                    let response = serve(request, &options);
                    async move { Ok::<_, Infallible>(response) }
                });
                let _ = hyper::server::conn::http1::Builder::new()
                    .serve_connection(TokioIo::new(tcp), service)
                    .with_upgrades()
                    .await;
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

/// Sends `request` as it is and returns the whole answer (the server closes or answers
/// with a Content-Length body; read until the body is in).
async fn raw(addr: SocketAddr, request: &str) -> String {
    let mut tcp = TcpStream::connect(addr).await.unwrap();
    tcp.write_all(request.as_bytes()).await.unwrap();
    let mut answer = Vec::new();
    let mut buf = [0; 4096];
    within(async {
        loop {
            let n = tcp.read(&mut buf).await.unwrap();
            answer.extend_from_slice(&buf[..n]);
            let text = String::from_utf8_lossy(&answer);
            if n == 0 || text.ends_with('\n') && text.contains("\r\n\r\n") {
                return;
            }
        }
    })
    .await;
    String::from_utf8(answer).unwrap()
}

#[tokio::test]
async fn one_port_serves_http_and_websocket_to_both_clients() {
    let addr = hyper_server(deflate_options()).await;
    let page = raw(addr, "GET / HTTP/1.1\r\nHost: x\r\n\r\n").await;
    assert!(page.starts_with("HTTP/1.1 200"), "{page}");
    assert!(page.ends_with("a page\n"), "{page}");

    // Ours, with deflate offered and agreed.
    let (mut ws, response) = within(connect(&format!("ws://{addr}/ws"), &deflate_options()))
        .await
        .unwrap();
    assert!(ws.connection().deflate_params().is_some());
    assert_eq!(response.headers.get("set-cookie"), Some("seen=1"));
    for message in [
        Message::Text("hello hyper".into()),
        Message::Binary(vec![9; 300_000]),
    ] {
        ws.send(message.clone()).await.unwrap();
        assert_eq!(within(ws.next()).await.unwrap().unwrap(), message);
    }
    ws.close().await.unwrap();
    assert!(matches!(
        within(ws.next()).await.unwrap().unwrap(),
        Message::Close(Some(_))
    ));

    // tokio-tungstenite, with a subprotocol.
    let mut request =
        tungstenite::client::IntoClientRequest::into_client_request(format!("ws://{addr}/ws"))
            .unwrap();
    request
        .headers_mut()
        .insert("Sec-WebSocket-Protocol", "other, echo".parse().unwrap());
    let (mut peer, response) = within(tokio_tungstenite::connect_async(request))
        .await
        .unwrap();
    assert_eq!(response.headers()["sec-websocket-protocol"], "echo");
    peer.send(tungstenite::Message::text("from tungstenite"))
        .await
        .unwrap();
    let echoed = within(peer.next()).await.unwrap().unwrap();
    assert_eq!(echoed, tungstenite::Message::text("from tungstenite"));
    peer.close(None).await.unwrap();
}

#[tokio::test]
async fn bad_upgrades_and_refusals_get_their_status_and_reason() {
    let addr = hyper_server(Options::default()).await;
    let upgrade = "GET /ws HTTP/1.1\r\nHost: x\r\nUpgrade: websocket\r\nConnection: Upgrade\r\n";
    let key = "Sec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==\r\n";

    let no_key = raw(addr, &format!("{upgrade}Sec-WebSocket-Version: 13\r\n\r\n")).await;
    assert!(no_key.starts_with("HTTP/1.1 400"), "{no_key}");
    assert!(no_key.contains("Sec-WebSocket-Key"), "{no_key}");

    let old = raw(
        addr,
        &format!("{upgrade}{key}Sec-WebSocket-Version: 8\r\n\r\n"),
    )
    .await;
    assert!(old.starts_with("HTTP/1.1 426"), "{old}");
    assert!(
        old.to_lowercase().contains("sec-websocket-version: 13"),
        "{old}"
    );

    let post = raw(
        addr,
        &format!(
            "{}{key}Sec-WebSocket-Version: 13\r\nContent-Length: 0\r\n\r\n",
            upgrade.replace("GET", "POST")
        ),
    )
    .await;
    assert!(post.starts_with("HTTP/1.1 405"), "{post}");
    assert!(post.to_lowercase().contains("allow: get"), "{post}");

    let denied = raw(
        addr,
        &format!(
            "{}{key}Sec-WebSocket-Version: 13\r\n\r\n",
            upgrade.replace("/ws", "/ws?deny")
        ),
    )
    .await;
    assert!(denied.starts_with("HTTP/1.1 403"), "{denied}");
    assert!(denied.contains("not you"), "{denied}");

    let http10 = raw(
        addr,
        &format!(
            "{}{key}Sec-WebSocket-Version: 13\r\n\r\n",
            upgrade.replace("1.1", "1.0")
        ),
    )
    .await;
    assert!(http10.contains(" 400 "), "{http10}");

    // The 101 itself, as hyper writes it.
    let ok = raw(
        addr,
        &format!("{upgrade}{key}Sec-WebSocket-Version: 13\r\n\r\n"),
    )
    .await;
    assert!(ok.starts_with("HTTP/1.1 101"), "{ok}");
    assert!(
        ok.to_lowercase()
            .contains("sec-websocket-accept: s3pplmbitxaq9kygzzhzrbk+xoo="),
        "{ok}"
    );
}
