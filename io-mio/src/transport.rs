//! The byte stream under a WebSocket connection: plain TCP, or TLS (rustls) over TCP.
//!
//! The loop reads and writes application bytes through [`Transport`] and never sees a TLS
//! record; the ws6455 core never sees the transport. rustls is sans-IO like the core:
//! here its records are moved between the non-blocking socket and its buffers, at most as
//! much as the socket takes, so the TLS layer buffers at most one write chunk of ours.

use std::io::{self, Read, Write};

use mio::net::TcpStream;

/// Plaintext handed to rustls per write (16 records, one `writev`): the rest stays in
/// the core's output buffer, where backpressure accounting sees it.
const TLS_WRITE_CHUNK: usize = 256 << 10;
/// Socket reads per `read` call that may yield no plaintext (handshake records, empty
/// records) before the caller gets its turn back.
const TLS_READS_PER_CALL: usize = 8;
/// The largest TLS record on the wire: 16 KiB of plaintext, 2 KiB of expansion (TLS 1.2
/// allows that much), a 5-byte header.
const MAX_TLS_RECORD: usize = 16384 + 2048 + 5;
/// The smallest socket read for TLS, whatever the caller's buffer.
const MIN_TLS_READ: usize = 4096;

/// What rustls had decrypted.
enum Drained {
    /// This many bytes (0: none yet).
    Bytes(usize),
    /// The stream has ended (close_notify, or the TCP stream ended).
    End,
}

/// Moves the application bytes rustls holds into `buf`.
fn drain_plaintext(tls: &mut rustls::Connection, buf: &mut [u8]) -> Drained {
    let mut filled = 0;
    while filled < buf.len() {
        match tls.reader().read(&mut buf[filled..]) {
            Ok(0) if filled == 0 => return Drained::End,
            Ok(0) => break,
            Ok(n) => filled += n,
            // WouldBlock: nothing more decrypted. UnexpectedEof: the TCP stream ended
            // without close_notify; for the WebSocket above an end like any other (its
            // own Close frame says whether the end was clean, and a truncation cannot
            // forge one). Other errors are not returned by rustls' reader.
            Err(e) if e.kind() == io::ErrorKind::UnexpectedEof && filled == 0 => {
                return Drained::End
            }
            Err(_) => break,
        }
    }
    Drained::Bytes(filled)
}

/// Hands `records` to rustls, processes them and moves the decrypted bytes into `buf`;
/// says how many, or that close_notify came before any. Records that do not fit (only
/// when `buf` is full) go to `pending`.
fn feed(
    tls: &mut rustls::Connection,
    socket: &mut TcpStream,
    records: &[u8],
    buf: &mut [u8],
    pending: &mut Vec<u8>,
) -> io::Result<Drained> {
    let mut rest = records;
    let mut filled = 0;
    // Never an empty read: rustls would take it for the end of the stream.
    while !rest.is_empty() {
        if filled == buf.len() {
            pending.extend_from_slice(rest);
            break;
        }
        tls.read_tls(&mut rest)?;
        if let Err(error) = tls.process_new_packets() {
            // rustls has queued an alert saying why: send it, best effort.
            let _ = Transport::write_records(tls, socket);
            return Err(io::Error::new(io::ErrorKind::InvalidData, error));
        }
        // Handshake answers, key updates: sent now, or when the socket is writable. A
        // write error must not discard what was just decrypted: the next flush reports it.
        let _ = Transport::write_records(tls, socket);
        match drain_plaintext(tls, &mut buf[filled..]) {
            Drained::Bytes(n) => filled += n,
            // close_notify: what follows it is ignored, as TLS requires; the end is
            // reported now if nothing precedes it, else by the next read.
            Drained::End if filled == 0 => return Ok(Drained::End),
            Drained::End => break,
        }
    }
    Ok(Drained::Bytes(filled))
}

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
    /// Boxed: a plain connection carries one pointer for it.
    tls: Option<Box<Tls>>,
}

struct Tls {
    session: rustls::Connection,
    /// Records read but not yet handed to rustls (only when the caller's buffer filled
    /// up first); empty, and unallocated, otherwise.
    pending: Vec<u8>,
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
    pub(crate) fn tls(socket: TcpStream, mut tls: rustls::Connection) -> Self {
        // rustls takes at most 64 KiB per write by default. We hand it plaintext only
        // when it holds nothing, so this limit is what it ever holds.
        tls.set_buffer_limit(Some(TLS_WRITE_CHUNK));
        Transport {
            socket,
            tls: Some(Box::new(Tls {
                session: tls,
                pending: Vec::new(),
            })),
        }
    }

    /// The socket alone, the TLS session ended (for lingering).
    pub(crate) fn into_socket(self) -> TcpStream {
        self.socket
    }

    /// The socket, for registration with the poller and socket options.
    pub(crate) fn socket_mut(&mut self) -> &mut TcpStream {
        &mut self.socket
    }

    /// True when a read of `n` bytes into a buffer of `capacity` bytes proves that the
    /// socket had nothing more at that moment, so that the next read would only return
    /// `WouldBlock` and can be skipped: a short read of a plain TCP socket on Linux, whose
    /// epoll reports data arriving after that read as a new edge. (Under TLS, rustls may
    /// hold plaintext whatever the socket read returned.)
    pub(crate) fn short_read_drains(&self, n: usize, capacity: usize) -> bool {
        cfg!(any(target_os = "linux", target_os = "android")) && self.tls.is_none() && n < capacity
    }

    /// Reads application bytes into `buf`. `Ok(0)` is the end of the stream (TCP FIN, or
    /// TLS close_notify). `Interrupted` means "call again": TLS records were processed
    /// without producing application bytes yet, and the socket may hold more.
    ///
    /// TLS reads the socket into `scratch` (a buffer the loop lends to all its TLS
    /// connections) in large reads and hands the records to rustls from there: rustls'
    /// own socket reads are 4 KiB at a time, which costs a system call per 4 KiB.
    pub(crate) fn read(&mut self, buf: &mut [u8], scratch: &mut Vec<u8>) -> io::Result<usize> {
        let Some(Tls {
            session: tls,
            pending,
        }) = self.tls.as_deref_mut()
        else {
            return self.socket.read(buf);
        };
        // Decrypted bytes rustls holds, then records kept from an earlier call.
        let mut filled = match drain_plaintext(tls, buf) {
            Drained::Bytes(n) => n,
            Drained::End => return Ok(0),
        };
        if filled == 0 && !pending.is_empty() {
            let records = std::mem::take(pending);
            filled = match feed(tls, &mut self.socket, &records, buf, pending)? {
                Drained::Bytes(n) => n,
                Drained::End => return Ok(0),
            };
        }
        if filled > 0 {
            return Ok(filled);
        }
        // Room for the plaintext of what is read plus a record begun in an earlier read:
        // then everything read is handed to rustls at once.
        let limit = buf.len().saturating_sub(MAX_TLS_RECORD).max(MIN_TLS_READ);
        if scratch.len() < limit {
            scratch.resize(limit, 0);
        }
        for _ in 0..TLS_READS_PER_CALL {
            let n = self.socket.read(&mut scratch[..limit])?;
            if n == 0 {
                // rustls learns of the end from an empty read: a stream cut short
                // without close_notify, or inside a record, is reported as such.
                tls.read_tls(&mut io::empty())?;
                return match drain_plaintext(tls, buf) {
                    Drained::Bytes(n) => Ok(n),
                    Drained::End => Ok(0),
                };
            }
            match feed(tls, &mut self.socket, &scratch[..n], buf, pending)? {
                Drained::Bytes(0) => {}
                Drained::Bytes(n) => return Ok(n),
                Drained::End => return Ok(0),
            }
        }
        Err(io::ErrorKind::Interrupted.into())
    }

    /// Takes application bytes from several buffers in order, like [`write`](Self::write):
    /// one `writev` on plain TCP; under TLS, rustls seals what it takes of all of them
    /// into one run of records (so a frame header and its payload do not go out as
    /// records and segments of their own), at most 256 KiB per call.
    pub(crate) fn write_vectored(&mut self, bufs: &[io::IoSlice<'_>]) -> io::Result<usize> {
        let Some(Tls { session: tls, .. }) = self.tls.as_deref_mut() else {
            return self.socket.write_vectored(bufs);
        };
        if !Self::write_records(tls, &mut self.socket)? {
            return Err(would_block());
        }
        let mut limited = [io::IoSlice::new(&[]); 16];
        let mut count = 0;
        let mut budget = TLS_WRITE_CHUNK;
        for buf in bufs.iter().take(limited.len()) {
            if budget == 0 {
                break;
            }
            let take = buf.len().min(budget);
            limited[count] = io::IoSlice::new(&buf[..take]);
            count += 1;
            budget -= take;
        }
        let taken = tls.writer().write_vectored(&limited[..count])?;
        if taken == 0 && count > 0 {
            // rustls's own buffer is full (only while it is still handshaking).
            return Err(would_block());
        }
        Self::write_records(tls, &mut self.socket)?;
        Ok(taken)
    }

    /// Takes application bytes from the start of `buf`; returns how many (never 0 for a
    /// non-empty `buf`). `WouldBlock` when the socket takes nothing.
    pub(crate) fn write(&mut self, buf: &[u8]) -> io::Result<usize> {
        let Some(Tls { session: tls, .. }) = self.tls.as_deref_mut() else {
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
        match self.tls.as_deref_mut() {
            None => Ok(true),
            Some(tls) => Self::write_records(&mut tls.session, &mut self.socket),
        }
    }

    /// True while TLS records wait for the socket (handshake messages, alerts, data).
    pub(crate) fn has_buffered(&self) -> bool {
        self.tls
            .as_ref()
            .is_some_and(|tls| tls.session.wants_write())
    }

    /// Ends the TLS session cleanly before the socket is closed: queues close_notify and
    /// writes what the socket takes now, without waiting.
    pub(crate) fn close_notify(&mut self) {
        if let Some(Tls { session, .. }) = self.tls.as_deref_mut() {
            session.send_close_notify();
            let _ = Self::write_records(session, &mut self.socket);
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
