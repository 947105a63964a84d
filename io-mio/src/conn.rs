//! One connection as the loop holds it: its transport, the core object of its phase
//! (acceptor, HTTP reply or open connection) and the loop's bookkeeping (interest,
//! scheduled wake-up, backpressure, end of stream). Everything the protocol decides is
//! asked of the core.

use std::io;
use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Instant;

use mio::Interest;
use ws6455_core::accept::{Acceptor, Reply};
use ws6455_core::Connection;

use crate::handle::ConnShared;
use crate::timers::Deadline;
use crate::transport::Transport;

/// Most output chunks handed to one vectored write.
const WRITE_SLICES: usize = 16;

/// A connection still in its opening handshake (boxed, so that an open connection does
/// not carry it).
pub(crate) struct Handshaking {
    pub(crate) acceptor: Acceptor,
    pub(crate) remote: SocketAddr,
    /// Accepted beyond `LoopConfig::max_connections`: its request is answered 503.
    pub(crate) over_limit: bool,
}

pub(crate) enum Phase<C> {
    /// Before the upgrade, over HTTP (boxed, so that an open connection does not carry
    /// it, and two variants: 8 bytes less in every connection than three).
    Http(Box<Http>),
    /// The WebSocket connection proper.
    Open { core: Box<Connection>, app: C },
}

pub(crate) enum Http {
    /// Reading the handshake request.
    Handshake(Handshaking),
    /// Writing an HTTP answer (refusal or plain HTTP), then closing.
    Responding(Reply),
}

impl<C> Phase<C> {
    /// An HTTP answer to write, then close.
    pub(crate) fn responding(reply: Reply) -> Self {
        Phase::Http(Box::new(Http::Responding(reply)))
    }

    /// The handshake being read, in that phase.
    pub(crate) fn handshake(&self) -> Option<&Handshaking> {
        match self {
            Phase::Http(http) => match &**http {
                Http::Handshake(hs) => Some(hs),
                Http::Responding(_) => None,
            },
            Phase::Open { .. } => None,
        }
    }

    /// Writing an HTTP answer: nothing more is read.
    pub(crate) fn is_responding(&self) -> bool {
        matches!(self, Phase::Http(http) if matches!(**http, Http::Responding(_)))
    }
}

pub(crate) struct Conn<C> {
    pub(crate) transport: Transport,
    pub(crate) shared: Arc<ConnShared>,
    pub(crate) phase: Phase<C>,
    pub(crate) interest: Interest,
    /// The earliest wake-up this connection has in the loop's timer heap.
    pub(crate) scheduled: Option<Deadline>,
    pub(crate) read_paused: bool,
    /// Bytes read but not yet decoded because the outgoing buffer reached its cap in the
    /// middle of them (at most one read's worth); decoded first when reading resumes.
    /// A thin pointer: 8 bytes in every connection, and rarely any.
    #[allow(clippy::box_collection)] // the box is the point: a thin pointer
    pub(crate) unread: Option<Box<Vec<u8>>>,
    pub(crate) in_ready: bool,
    /// `on_error` was called: at most once per connection.
    pub(crate) errored: bool,
    pub(crate) eof: bool,
    /// The poller reported the peer's end of the stream (or an error): a short read no
    /// longer proves that nothing more is to be read, since the end itself is.
    pub(crate) read_closed: bool,
    /// Listed in the loop's `deferred`: commands wrote into its buffer, and one
    /// `update` (one write) after all of them sends it.
    pub(crate) update_deferred: bool,
}

// One per connection in the loop's slab: a budget (memory per idle connection), for an
// application value of one pointer (the server's). Release builds only: with debug
// assertions mio's sockets carry a selector id, 8 bytes more.
#[cfg(all(target_pointer_width = "64", not(debug_assertions)))]
const _: () = assert!(std::mem::size_of::<Conn<Box<()>>>() <= 64);

impl<C> Conn<C> {
    pub(crate) fn new(transport: Transport, shared: Arc<ConnShared>, phase: Phase<C>) -> Self {
        Conn {
            transport,
            shared,
            phase,
            interest: Interest::READABLE,
            scheduled: None,
            read_paused: false,
            unread: None,
            in_ready: false,
            errored: false,
            eof: false,
            read_closed: false,
            update_deferred: false,
        }
    }

    /// Bytes the core holds for the socket.
    pub(crate) fn unwritten(&self) -> usize {
        match &self.phase {
            Phase::Http(http) => match &**http {
                Http::Handshake(_) => 0,
                Http::Responding(reply) => reply.pending_output().len(),
            },
            Phase::Open { core, .. } => core.pending_output_len(),
        }
    }

    /// Nothing is left to write, at any layer.
    pub(crate) fn drained(&self) -> bool {
        self.unwritten() == 0 && !self.transport.has_buffered()
    }

    /// When the core wants its `handle_timeout`.
    pub(crate) fn poll_timeout(&self) -> Option<Instant> {
        match &self.phase {
            Phase::Http(http) => match &**http {
                Http::Handshake(hs) => hs.acceptor.poll_timeout(),
                Http::Responding(reply) => reply.poll_timeout(),
            },
            Phase::Open { core, .. } => core.poll_timeout(),
        }
    }

    /// The transport's work is over: the core says so and every byte is out, or the
    /// peer's end came first.
    pub(crate) fn finished(&self) -> bool {
        match &self.phase {
            Phase::Http(http) => match &**http {
                Http::Handshake(_) => self.eof,
                Http::Responding(reply) => {
                    reply.should_close_transport() && self.drained() || self.eof
                }
            },
            Phase::Open { core, .. } => {
                core.should_close_transport() && (self.drained() || core.wants_write())
                    || self.eof && !core.wants_read()
            }
        }
    }

    /// Writes until the socket would block or nothing is pending.
    pub(crate) fn flush(&mut self) -> io::Result<()> {
        loop {
            if !self.transport.flush()? {
                return Ok(());
            }
            let written = match &self.phase {
                Phase::Http(http) => match &**http {
                    Http::Handshake(_) => return Ok(()),
                    Http::Responding(reply) => {
                        if reply.pending_output().is_empty() {
                            return Ok(());
                        }
                        self.transport.write(reply.pending_output())
                    }
                },
                // The 101 and frames, possibly in several chunks (payloads sent by value
                // are written from the application's buffers): one vectored write, or a
                // plain one for a single chunk (the common case, and cheaper to prepare).
                Phase::Open { core, .. } => {
                    let front = core.pending_output();
                    if front.is_empty() {
                        return Ok(());
                    }
                    if front.len() == core.pending_output_len() {
                        self.transport.write(front)
                    } else {
                        let mut slices = [io::IoSlice::new(&[]); WRITE_SLICES];
                        let filled = core.pending_output_vectored(&mut slices);
                        self.transport.write_vectored(&slices[..filled])
                    }
                }
            };
            match written {
                Ok(0) => return Err(io::ErrorKind::WriteZero.into()),
                Ok(n) => match &mut self.phase {
                    Phase::Http(http) => {
                        if let Http::Responding(reply) = &mut **http {
                            reply.consume_output(n);
                        }
                    }
                    Phase::Open { core, .. } => core.consume_output(n),
                },
                Err(e) if e.kind() == io::ErrorKind::WouldBlock => return Ok(()),
                Err(e) if e.kind() == io::ErrorKind::Interrupted => {}
                Err(e) => return Err(e),
            }
        }
    }
}
