//! The client's transport: plain TCP for `ws://`, rustls over TCP (tokio-rustls) for
//! `wss://`, with the same roots, SNI and certificate errors as the mio client
//! ([`ws6455_tls`] builds the configuration for both).

use std::io;
use std::pin::Pin;
use std::sync::Arc;
use std::task::{Context, Poll};

use tokio::io::{AsyncRead, AsyncWrite, ReadBuf};
use tokio::net::TcpStream;
use tokio_rustls::client::TlsStream;
use ws6455_tls::rustls::{self, pki_types::ServerName};
use ws6455_tls::HandshakeFailure;

use crate::handshake::ConnectError;

/// What [`crate::connect`] opens: TCP, or TLS over TCP.
#[derive(Debug)]
pub enum MaybeTlsStream {
    /// `ws://`.
    Plain(TcpStream),
    /// `wss://`.
    Tls(Box<TlsStream<TcpStream>>),
}

/// Runs the TLS handshake for `host` (SNI and certificate check) over `tcp`.
pub(crate) async fn start_tls(
    tcp: TcpStream,
    host: &str,
    config: Option<Arc<rustls::ClientConfig>>,
) -> Result<MaybeTlsStream, ConnectError> {
    let config = config.unwrap_or_else(ws6455_tls::default_client_config);
    let name = ServerName::try_from(host.to_owned()).map_err(|_| {
        ConnectError::Tls(rustls::Error::General(format!(
            "{host:?} is not a valid TLS server name"
        )))
    })?;
    let connector = tokio_rustls::TlsConnector::from(config);
    match connector.connect(name, tcp).await {
        Ok(stream) => Ok(MaybeTlsStream::Tls(Box::new(stream))),
        Err(error) => Err(tls_error(error, host)),
    }
}

/// The TLS handshake's failure as a connect error.
fn tls_error(error: io::Error, host: &str) -> ConnectError {
    match ws6455_tls::handshake_failure(&error) {
        Some(HandshakeFailure::Certificate(reason)) => ConnectError::Certificate {
            host: host.to_owned(),
            reason,
        },
        Some(HandshakeFailure::Tls(other)) => ConnectError::Tls(other),
        None => ConnectError::Io(error),
    }
}

impl AsyncRead for MaybeTlsStream {
    fn poll_read(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &mut ReadBuf<'_>,
    ) -> Poll<io::Result<()>> {
        match self.get_mut() {
            MaybeTlsStream::Plain(s) => Pin::new(s).poll_read(cx, buf),
            MaybeTlsStream::Tls(s) => Pin::new(s.as_mut()).poll_read(cx, buf),
        }
    }
}

impl AsyncWrite for MaybeTlsStream {
    fn poll_write(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &[u8],
    ) -> Poll<io::Result<usize>> {
        match self.get_mut() {
            MaybeTlsStream::Plain(s) => Pin::new(s).poll_write(cx, buf),
            MaybeTlsStream::Tls(s) => Pin::new(s.as_mut()).poll_write(cx, buf),
        }
    }

    fn poll_write_vectored(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        bufs: &[io::IoSlice<'_>],
    ) -> Poll<io::Result<usize>> {
        match self.get_mut() {
            MaybeTlsStream::Plain(s) => Pin::new(s).poll_write_vectored(cx, bufs),
            MaybeTlsStream::Tls(s) => Pin::new(s.as_mut()).poll_write_vectored(cx, bufs),
        }
    }

    fn is_write_vectored(&self) -> bool {
        match self {
            MaybeTlsStream::Plain(s) => s.is_write_vectored(),
            MaybeTlsStream::Tls(s) => s.is_write_vectored(),
        }
    }

    fn poll_flush(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        match self.get_mut() {
            MaybeTlsStream::Plain(s) => Pin::new(s).poll_flush(cx),
            MaybeTlsStream::Tls(s) => Pin::new(s.as_mut()).poll_flush(cx),
        }
    }

    fn poll_shutdown(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        match self.get_mut() {
            MaybeTlsStream::Plain(s) => Pin::new(s).poll_shutdown(cx),
            MaybeTlsStream::Tls(s) => Pin::new(s.as_mut()).poll_shutdown(cx),
        }
    }
}
