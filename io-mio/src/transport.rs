//! The byte stream under a WebSocket connection: plain TCP, or TLS (rustls) over TCP.
//!
//! The loop reads and writes application bytes through [`Transport`] and never sees a TLS
//! record; the ws6455 core never sees the transport. rustls is sans-IO like the core:
//! here its records are moved between the non-blocking socket and its buffers, at most as
//! much as the socket takes, so the TLS layer buffers at most one write chunk of ours.

use std::io::{self, Read, Write};

use mio::net::TcpStream;

/// Plaintext handed to rustls per write: the rest stays in the core's output buffer,
/// where backpressure accounting sees it.
const TLS_WRITE_CHUNK: usize = 64 << 10;
/// Socket reads per `read` call that may yield no plaintext (handshake records, empty
/// records) before the caller gets its turn back.
const TLS_READS_PER_CALL: usize = 8;

/// A client's connected stream whose opening handshake is done: what
/// [`crate::LoopHandle::adopt`] takes. Blocking mode is fine; the loop switches it.
#[derive(Debug)]
pub enum ClientStream {
    /// `ws://`: plain TCP.
    Tcp(std::net::TcpStream),
    /// `wss://`: the socket and its rustls session, handshake complete. Application bytes
    /// rustls has decrypted but nobody has read yet stay in it and are read first.
    Tls(std::net::TcpStream, Box<rustls::ClientConnection>),
}

impl ClientStream {
    /// The TCP socket under the stream.
    pub fn socket(&self) -> &std::net::TcpStream {
        match self {
            ClientStream::Tcp(socket) | ClientStream::Tls(socket, _) => socket,
        }
    }
}

/// A connection's stream. `Tls` holds the client or server side of a rustls session.
pub(crate) struct Transport {
    socket: TcpStream,
    tls: Option<Box<rustls::Connection>>,
}

fn would_block() -> io::Error {
    io::ErrorKind::WouldBlock.into()
}

impl Transport {
    /// Plain TCP.
    pub(crate) fn plain(socket: TcpStream) -> Self {
        Transport { socket, tls: None }
    }

    /// TLS over `socket`; the session may still be handshaking.
    pub(crate) fn tls(socket: TcpStream, tls: rustls::Connection) -> Self {
        Transport {
            socket,
            tls: Some(Box::new(tls)),
        }
    }

    /// The socket, for registration with the poller and socket options.
    pub(crate) fn socket_mut(&mut self) -> &mut TcpStream {
        &mut self.socket
    }

    /// Reads application bytes into `buf`. `Ok(0)` is the end of the stream (TCP FIN, or
    /// TLS close_notify). `Interrupted` means "call again": TLS records were processed
    /// without producing application bytes yet, and the socket may hold more.
    pub(crate) fn read(&mut self, buf: &mut [u8]) -> io::Result<usize> {
        let Some(tls) = &mut self.tls else {
            return self.socket.read(buf);
        };
        for _ in 0..TLS_READS_PER_CALL {
            match tls.reader().read(buf) {
                Ok(n) => return Ok(n),
                Err(e) if e.kind() == io::ErrorKind::WouldBlock => {}
                // The TCP stream ended without close_notify: for the WebSocket above, an
                // end of stream like any other (its own Close frame says whether the end
                // was clean; a truncation attack cannot forge one).
                Err(e) if e.kind() == io::ErrorKind::UnexpectedEof => return Ok(0),
                Err(e) => return Err(e),
            }
            match tls.read_tls(&mut self.socket) {
                Ok(_) => {}
                Err(e) => return Err(e),
            }
            if let Err(error) = tls.process_new_packets() {
                // rustls has queued an alert saying why: send it, best effort.
                let _ = Self::write_records(tls, &mut self.socket);
                return Err(io::Error::new(io::ErrorKind::InvalidData, error));
            }
            // Handshake answers, key updates: sent now, or when the socket is writable.
            Self::write_records(tls, &mut self.socket)?;
        }
        Err(io::ErrorKind::Interrupted.into())
    }

    /// Takes application bytes from the start of `buf`; returns how many (never 0 for a
    /// non-empty `buf`). `WouldBlock` when the socket takes nothing.
    pub(crate) fn write(&mut self, buf: &[u8]) -> io::Result<usize> {
        let Some(tls) = &mut self.tls else {
            return self.socket.write(buf);
        };
        if !Self::write_records(tls, &mut self.socket)? {
            return Err(would_block());
        }
        let chunk = &buf[..buf.len().min(TLS_WRITE_CHUNK)];
        let taken = tls.writer().write(chunk)?;
        if taken == 0 {
            // rustls's own buffer is full (only while it is still handshaking).
            return Err(would_block());
        }
        Self::write_records(tls, &mut self.socket)?;
        Ok(taken)
    }

    /// Writes the TLS records rustls holds; `Ok(true)` once none is left, `Ok(false)` when
    /// the socket would block first. Plain TCP holds nothing.
    pub(crate) fn flush(&mut self) -> io::Result<bool> {
        match &mut self.tls {
            None => Ok(true),
            Some(tls) => Self::write_records(tls, &mut self.socket),
        }
    }

    /// True while TLS records wait for the socket (handshake messages, alerts, data).
    pub(crate) fn has_buffered(&self) -> bool {
        self.tls.as_ref().is_some_and(|tls| tls.wants_write())
    }

    /// Ends the TLS session cleanly before the socket is closed: queues close_notify and
    /// writes what the socket takes now, without waiting.
    pub(crate) fn close_notify(&mut self) {
        if let Some(tls) = &mut self.tls {
            tls.send_close_notify();
            let _ = Self::write_records(tls, &mut self.socket);
        }
    }

    fn write_records(tls: &mut rustls::Connection, socket: &mut TcpStream) -> io::Result<bool> {
        while tls.wants_write() {
            match tls.write_tls(socket) {
                Ok(0) => return Err(io::ErrorKind::WriteZero.into()),
                Ok(_) => {}
                Err(e) if e.kind() == io::ErrorKind::WouldBlock => return Ok(false),
                Err(e) if e.kind() == io::ErrorKind::Interrupted => {}
                Err(e) => return Err(e),
            }
        }
        Ok(true)
    }
}
