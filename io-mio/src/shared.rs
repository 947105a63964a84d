//! The state of one connection that its loop and the application's handles share
//! across threads: identifier, status, buffered amounts and the backpressure settings,
//! and the cap rule both sides apply.

use std::sync::atomic::{AtomicU32, AtomicU8, AtomicUsize, Ordering};

use ws6455_core::ConnectionState;

use crate::config::{Backpressure, LoopConfig};

/// Connection identifiers, unique across all loops of the process.
static NEXT_ID: std::sync::atomic::AtomicU64 = std::sync::atomic::AtomicU64::new(1);

/// The life stage of a connection, as the application API reports it.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum Status {
    /// The opening handshake is in progress.
    Connecting,
    /// Messages flow both ways.
    Connected,
    /// The closing handshake has started.
    Closing,
    /// The connection is over.
    Closed,
}

impl From<ConnectionState> for Status {
    /// The status of an open connection's core.
    fn from(state: ConnectionState) -> Status {
        match state {
            ConnectionState::Open => Status::Connected,
            ConnectionState::Closing => Status::Closing,
            ConnectionState::Closed => Status::Closed,
        }
    }
}

impl Status {
    fn from_u8(value: u8) -> Status {
        match value {
            0 => Status::Connecting,
            1 => Status::Connected,
            2 => Status::Closing,
            _ => Status::Closed,
        }
    }
}

/// State of one connection shared between its loop and the application's handles.
#[derive(Debug)]
pub struct ConnShared {
    id: u64,
    /// The connection's slab key in its loop; `u32::MAX` until a loop adopts it (32
    /// bits: a loop's connections are bounded by its descriptors, and every connection
    /// is 8 bytes smaller).
    token: AtomicU32,
    /// Backpressure settings of this connection (its loop's, or its own for a client).
    max_buffered: usize,
    backpressure: Backpressure,
    status: AtomicU8,
    /// Payload bytes of sends queued but not yet taken by the loop.
    queued: AtomicUsize,
    /// Bytes the loop holds for the socket (encoded, not yet written).
    unwritten: AtomicUsize,
}

/// A slab key as stored (`usize::MAX`, not adopted yet, as `u32::MAX`).
fn token_bits(token: usize) -> u32 {
    u32::try_from(token).unwrap_or(u32::MAX)
}

impl ConnShared {
    pub(crate) fn new(token: usize, config: &LoopConfig) -> Self {
        ConnShared {
            id: NEXT_ID.fetch_add(1, Ordering::Relaxed),
            token: AtomicU32::new(token_bits(token)),
            max_buffered: config.max_buffered,
            backpressure: config.backpressure,
            status: AtomicU8::new(0),
            queued: AtomicUsize::new(0),
            unwritten: AtomicUsize::new(0),
        }
    }

    /// The connection's identifier, unique in the process.
    pub fn id(&self) -> u64 {
        self.id
    }

    /// The connection's key in its loop, once a loop holds it: small, dense, and reused
    /// by a later connection of the same loop once this one has ended. The loop frees
    /// the key and runs the connection's close callback in one step on its thread, so no
    /// other connection has the key before that callback has returned.
    pub fn loop_key(&self) -> Option<usize> {
        Some(self.token()).filter(|&token| token != usize::MAX)
    }

    pub(crate) fn token(&self) -> usize {
        match self.token.load(Ordering::Acquire) {
            u32::MAX => usize::MAX,
            token => token as usize,
        }
    }

    pub(crate) fn set_token(&self, token: usize) {
        self.token.store(token_bits(token), Ordering::Release);
    }

    /// The current status.
    pub fn status(&self) -> Status {
        Status::from_u8(self.status.load(Ordering::Acquire))
    }

    pub(crate) fn set_status(&self, status: Status) {
        self.status.store(status as u8, Ordering::Release);
    }

    /// Outgoing bytes accepted by `send` and not yet written to the socket.
    pub fn buffered_amount(&self) -> usize {
        self.queued.load(Ordering::Acquire) + self.unwritten.load(Ordering::Acquire)
    }

    /// The cap on this connection's buffered outgoing bytes.
    pub(crate) fn max_buffered(&self) -> usize {
        self.max_buffered
    }

    /// What a send over the cap does.
    pub(crate) fn backpressure(&self) -> Backpressure {
        self.backpressure
    }

    pub(crate) fn set_unwritten(&self, bytes: usize) {
        self.unwritten.store(bytes, Ordering::Release);
    }

    /// A send of `bytes` was queued for the loop.
    pub(crate) fn enqueued(&self, bytes: usize) {
        self.queued.fetch_add(bytes, Ordering::AcqRel);
    }

    pub(crate) fn dequeued(&self, bytes: usize) {
        self.queued.fetch_sub(bytes, Ordering::AcqRel);
    }
}

/// True when `buffered` outgoing bytes have reached the cap: sends are refused and the
/// loop stops reading from the connection. The one rule both sides apply.
pub(crate) fn over_cap(buffered: usize, cap: usize) -> bool {
    buffered > 0 && buffered >= cap
}
