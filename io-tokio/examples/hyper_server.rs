//! HTTP and WebSocket on one port with hyper 1: `/` serves a page whose script connects
//! back to `/ws`, where every text message is echoed in upper case. Anything else is a
//! 404 from hyper; a bad upgrade request gets its status (400, 405, 426) and the reason.
//!
//!     cargo run -p ws6455-tokio --example hyper_server -- [ADDR]
//!
//! ADDR defaults to 127.0.0.1:8080; open http://127.0.0.1:8080/ in a browser.

use std::convert::Infallible;

use futures_util::{SinkExt, StreamExt};
use http_body_util::Full;
use hyper::body::{Bytes, Incoming};
use hyper::server::conn::http1;
use hyper::service::service_fn;
use hyper::{Request, Response, StatusCode};
use hyper_util::rt::TokioIo;
use ws6455_tokio::upgrade::{upgrade, UpgradedStream};
use ws6455_tokio::{Choices, Decision, Message, Options};

const PAGE: &str = r#"<!doctype html>
<title>ws6455 + hyper</title>
<input id="text" value="hello" autofocus> <button id="send">send</button>
<pre id="log"></pre>
<script>
  const log = (line) => (document.getElementById("log").textContent += line + "\n");
  const ws = new WebSocket(`ws://${location.host}/ws`);
  ws.onopen = () => log("open");
  ws.onmessage = (event) => log("< " + event.data);
  ws.onclose = (event) => log(`closed ${event.code} ${event.reason}`);
  document.getElementById("send").onclick = () => {
    const text = document.getElementById("text").value;
    log("> " + text);
    ws.send(text);
  };
</script>
"#;

fn serve(mut request: Request<Incoming>, options: &Options) -> Response<Full<Bytes>> {
    match request.uri().path() {
        "/" => Response::new(Full::new(Bytes::from_static(PAGE.as_bytes()))),
        "/ws" => match upgrade(&mut request, options, |_| {
            Decision::Accept(Choices::default())
        }) {
            Ok((response, upgrading)) => {
                tokio::spawn(async move {
                    match upgrading.await {
                        Ok(ws) => shout_back(ws).await,
                        Err(e) => eprintln!("upgrade failed: {e}"),
                    }
                });
                response
            }
            Err(refusal) => refusal,
        },
        _ => {
            let mut response = Response::new(Full::new(Bytes::from_static(b"not found\n")));
            *response.status_mut() = StatusCode::NOT_FOUND;
            response
        }
    }
}

async fn shout_back(mut ws: UpgradedStream) {
    // Errors are read past: the stream then writes the Close and ends.
    while let Some(message) = ws.next().await {
        if let Ok(Message::Text(text)) = message {
            if ws.send(Message::Text(text.to_uppercase())).await.is_err() {
                return;
            }
        }
    }
}

#[tokio::main]
async fn main() -> std::io::Result<()> {
    let addr = std::env::args().nth(1).unwrap_or("127.0.0.1:8080".into());
    let listener = tokio::net::TcpListener::bind(&addr).await?;
    eprintln!("http://{}/ (WebSocket at /ws)", listener.local_addr()?);
    let options = Options::default();
    loop {
        let (tcp, _) = listener.accept().await?;
        let options = options.clone();
        tokio::spawn(async move {
            let service = service_fn(move |request| {
                let response = serve(request, &options);
                async move { Ok::<_, Infallible>(response) }
            });
            // `with_upgrades`: hyper hands the connection over after the 101.
            let served = http1::Builder::new()
                .serve_connection(TokioIo::new(tcp), service)
                .with_upgrades();
            if let Err(e) = served.await {
                eprintln!("connection: {e}");
            }
        });
    }
}
