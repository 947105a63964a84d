//! Sockets this side closed first, kept for a moment with their write side shut down:
//! what the peer still sends is read and discarded until its end of stream or the
//! linger deadline. Closing a socket with unread input makes the kernel answer the
//! peer's next bytes with a reset, and a peer still sending (an oversized message, a
//! request body, frames after one that failed) would then lose the Close frame or HTTP
//! answer written just before, if it stops at its first failed write.

use std::collections::VecDeque;
use std::io::{self, Read};
use std::net::Shutdown;
use std::time::{Duration, Instant};

use mio::net::TcpStream;
use mio::{Interest, Registry, Token};
use slab::Slab;

/// Tokens at and above this one name lingering sockets (connections use slab keys,
/// far below it).
pub(crate) const FIRST_TOKEN: usize = usize::MAX / 2;
/// At most this many sockets linger per loop; beyond it one closes at once (a reset
/// for a peer still sending, as without lingering).
const MAX_LINGERING: usize = 4096;
/// Most bytes discarded per readiness event; the deadline bounds the total.
const MAX_READ_PER_EVENT: usize = 1 << 20;

/// The sockets lingering on one loop.
#[derive(Default)]
pub(crate) struct Lingering {
    sockets: Slab<(TcpStream, u64)>,
    /// Deadlines in the order they were set. They fall in that order when every
    /// connection has the same `linger_timeout`; a shorter one set after a longer one
    /// waits for it (it lingers longer, never shorter).
    deadlines: VecDeque<(Instant, usize, u64)>,
    next_id: u64,
}

impl Lingering {
    /// Shuts `socket`'s write side (our FIN after everything written) and keeps reading
    /// it until the peer's FIN, an error or `linger` from `now`. A zero `linger`, or too
    /// many lingering sockets, closes it at once.
    pub(crate) fn add(
        &mut self,
        registry: &Registry,
        mut socket: TcpStream,
        linger: Duration,
        now: Instant,
    ) {
        if linger.is_zero() || self.sockets.len() >= MAX_LINGERING {
            return;
        }
        if socket.shutdown(Shutdown::Write).is_err() {
            return; // not connected any more: nothing to wait for
        }
        let entry = self.sockets.vacant_entry();
        let key = entry.key();
        if registry
            .register(&mut socket, Token(FIRST_TOKEN + key), Interest::READABLE)
            .is_err()
        {
            return;
        }
        self.next_id += 1;
        entry.insert((socket, self.next_id));
        self.deadlines.push_back((now + linger, key, self.next_id));
        // Input may already be waiting (edge-triggered: no event for it).
        self.drain(registry, key);
    }

    /// The socket of `token` is readable: discards what it has.
    pub(crate) fn on_event(&mut self, registry: &Registry, token: usize) {
        self.drain(registry, token - FIRST_TOKEN);
    }

    fn drain(&mut self, registry: &Registry, key: usize) {
        let Some((socket, _)) = self.sockets.get_mut(key) else {
            return;
        };
        let mut scratch = [0u8; 8192];
        let mut read = 0;
        let finished = loop {
            match socket.read(&mut scratch) {
                Ok(0) => break true,
                Ok(n) => {
                    read += n;
                    if read >= MAX_READ_PER_EVENT {
                        // More comes with a new event; the deadline bounds the flood.
                        break false;
                    }
                }
                Err(e) if e.kind() == io::ErrorKind::WouldBlock => break false,
                Err(e) if e.kind() == io::ErrorKind::Interrupted => {}
                Err(_) => break true,
            }
        };
        if finished {
            let (mut socket, _) = self.sockets.remove(key);
            let _ = registry.deregister(&mut socket);
        }
    }

    /// Closes the sockets whose deadline passed.
    pub(crate) fn expire(&mut self, registry: &Registry, now: Instant) {
        while let Some(&(at, key, id)) = self.deadlines.front() {
            if at > now {
                break;
            }
            self.deadlines.pop_front();
            if self.sockets.get(key).is_some_and(|(_, live)| *live == id) {
                let (mut socket, _) = self.sockets.remove(key);
                let _ = registry.deregister(&mut socket);
            }
        }
    }

    /// The next deadline, if a socket lingers.
    pub(crate) fn next_deadline(&self) -> Option<Instant> {
        if self.sockets.is_empty() {
            return None;
        }
        self.deadlines.front().map(|(at, _, _)| *at)
    }
}
