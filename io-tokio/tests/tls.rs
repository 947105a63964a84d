//! wss:// with the tokio driver: `connect` over rustls against a tokio server that
//! accepts over tokio-rustls, with a private CA; untrusted, expired and misnamed
//! certificates are refused as `ConnectError::Certificate`.

use std::time::Duration;

use futures_util::{SinkExt, StreamExt};
use tokio::net::TcpListener;
use ws6455_tokio::tls_config::rustls::CertificateError;
use ws6455_tokio::{accept, connect, ConnectError, Message, Options};

#[path = "../../server/tests/support/pki.rs"]
mod pki;

const WAIT: Duration = Duration::from_secs(10);

/// A wss echo server with `leaf`'s certificate; returns its port.
async fn wss_server(leaf: &pki::Leaf) -> u16 {
    let acceptor = tokio_rustls::TlsAcceptor::from(leaf.server_config());
    let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let port = listener.local_addr().unwrap().port();
    tokio::spawn(async move {
        loop {
            let Ok((tcp, _)) = listener.accept().await else {
                return;
            };
            let acceptor = acceptor.clone();
            tokio::spawn(async move {
                let Ok(tls) = acceptor.accept(tcp).await else {
                    return;
                };
                let Ok(mut ws) = accept(tls, &Options::default()).await else {
                    return;
                };
                while let Some(Ok(message)) = ws.next().await {
                    if let Message::Text(_) | Message::Binary(_) = message {
                        let _ = ws.feed(message).await;
                    }
                }
            });
        }
    });
    port
}

fn trusting(ca: &pki::Ca) -> Options {
    Options {
        tls: Some(ca.client_config()),
        ..Options::default()
    }
}

#[tokio::test]
async fn wss_round_trips_with_a_private_ca() {
    let ca = pki::Ca::new();
    let port = wss_server(&ca.issue(&["localhost", "127.0.0.1"], false)).await;
    for host in ["localhost", "127.0.0.1"] {
        let url = format!("wss://{host}:{port}/");
        let (mut ws, _) = tokio::time::timeout(WAIT, connect(&url, &trusting(&ca)))
            .await
            .unwrap()
            .unwrap();
        assert!(matches!(ws.get_ref(), ws6455_tokio::MaybeTlsStream::Tls(_)));
        let big = vec![5u8; 1 << 20];
        ws.send(Message::Binary(big.clone())).await.unwrap();
        let echoed = tokio::time::timeout(WAIT, ws.next())
            .await
            .unwrap()
            .unwrap()
            .unwrap();
        assert_eq!(echoed, Message::Binary(big));
        ws.close().await.unwrap();
        let close = tokio::time::timeout(WAIT, ws.next())
            .await
            .unwrap()
            .unwrap()
            .unwrap();
        assert!(matches!(close, Message::Close(Some(_))));
    }
}

#[tokio::test]
async fn bad_certificates_are_refused_with_the_reason() {
    let ca = pki::Ca::new();
    let good = wss_server(&ca.issue(&["localhost"], false)).await;
    // Mozilla's roots only: our CA is unknown.
    let untrusted = connect(&format!("wss://localhost:{good}/"), &Options::default()).await;
    assert!(
        matches!(
            untrusted,
            Err(ConnectError::Certificate {
                reason: CertificateError::UnknownIssuer,
                ..
            })
        ),
        "{untrusted:?}"
    );
    // A certificate for another name.
    let misnamed = connect(&format!("wss://127.0.0.1:{good}/"), &trusting(&ca)).await;
    assert!(
        matches!(misnamed, Err(ConnectError::Certificate { .. })),
        "{misnamed:?}"
    );
    // An expired one.
    let expired = wss_server(&ca.issue(&["localhost"], true)).await;
    let refused = connect(&format!("wss://localhost:{expired}/"), &trusting(&ca)).await;
    assert!(
        matches!(
            refused,
            Err(ConnectError::Certificate {
                reason: CertificateError::Expired | CertificateError::ExpiredContext { .. },
                ..
            })
        ),
        "{refused:?}"
    );
}
