//! Sends made by a connection's own callback reach its core directly: while the loop runs
//! a callback for a connection, that connection's core sits in a thread-local slot, and
//! the handle's `send`, `ping` and `close` for it write into the core there: no command,
//! no queue, no `Arc` clone. Every other command (another connection's, another thread's,
//! a Destroy, a fan-out) keeps the queues, and the order rules hold:
//!
//! - the slot is entered only when nothing queued for the connection waits (its earlier
//!   commands are applied first, and no fan-out, which may be for it, is pending);
//! - a fan-out queued by the callback ends direct mode for the rest of the callback, so a
//!   publish and a later send keep their order;
//! - a callback's sends and its Close go into the core in the order they were made.
//!
//! The core is moved, not borrowed: the slot swaps the connection's `Box<Connection>`
//! with a placeholder of its own (two pointers change places), and a guard swaps them
//! back however the callback ends.

use std::cell::RefCell;
use std::time::Instant;

use ws6455_core::{CloseCode, Config, Connection, ConnectionState};

use crate::config::Backpressure;
use crate::handle::{close_on, over_cap, ConnShared, SendError, Status};

struct Slot {
    /// The connection whose callback runs; 0 (no connection has it) when none.
    id: u64,
    /// Its core while the callback runs; a placeholder otherwise.
    core: Box<Connection>,
    /// The time the loop passed to the callback (for a Close's timer).
    now: Instant,
}

thread_local! {
    static SLOT: RefCell<Option<Slot>> = const { RefCell::new(None) };
}

/// Runs `callback` with `core` reachable from the handle's sends for the connection `id`
/// (see the module). Callbacks never nest, so neither do slots.
pub(crate) fn run<T>(
    id: u64,
    core: &mut Box<Connection>,
    now: Instant,
    callback: impl FnOnce() -> T,
) -> T {
    /// Puts the core back, however the callback ends.
    struct Restore<'a> {
        core: &'a mut Box<Connection>,
    }
    impl Drop for Restore<'_> {
        fn drop(&mut self) {
            SLOT.with(|slot| {
                if let Some(slot) = slot.borrow_mut().as_mut() {
                    std::mem::swap(self.core, &mut slot.core);
                    slot.id = 0;
                }
            });
        }
    }
    SLOT.with(|slot| {
        let mut slot = slot.borrow_mut();
        // One placeholder per thread, made once.
        let slot = slot.get_or_insert_with(|| Slot {
            id: 0,
            core: Box::new(Connection::server(Config::default())),
            now,
        });
        std::mem::swap(core, &mut slot.core);
        slot.id = id;
        slot.now = now;
    });
    let _restore = Restore { core };
    callback()
}

/// Ends direct mode for the callback running now: what it sends next is queued, behind
/// what it queued (a fan-out).
pub(crate) fn suspend() {
    SLOT.with(|slot| {
        if let Some(slot) = slot.borrow_mut().as_mut() {
            slot.id = 0;
        }
    });
}

/// Runs `f` on the core of `conn` when its callback runs on this thread in direct mode;
/// gives `arg` back otherwise (the caller queues the command). The buffered amount is
/// published after `f`, for the cap checks that follow.
fn with_core<A, R>(
    conn: &ConnShared,
    arg: A,
    f: impl FnOnce(&mut Connection, Instant, A) -> R,
) -> Result<R, A> {
    // `try_with`: a send from a thread-local destructor finds no slot and is queued.
    let mut arg = Some(arg);
    let done = SLOT.try_with(|slot| {
        let mut slot = slot.try_borrow_mut().ok()?;
        let slot = slot.as_mut().filter(|s| s.id == conn.id())?;
        let result = f(&mut slot.core, slot.now, arg.take()?);
        conn.set_unwritten(slot.core.pending_output_len());
        Some(result)
    });
    match (done, arg) {
        (Ok(Some(result)), _) => Ok(result),
        (_, Some(arg)) => Err(arg),
        (_, None) => unreachable!("the argument is taken only when the command runs"),
    }
}

fn status(core: &Connection) -> Status {
    core.state().into()
}

/// The core's refusal as the handle reports it (the handle checked the rest).
fn refused(core: &Connection, error: ws6455_core::SendError) -> SendError {
    match error {
        ws6455_core::SendError::InvalidState { .. } => SendError::NotOpen(status(core)),
        other => SendError::Protocol(other),
    }
}

/// Starts the closing handshake, and publishes the status at once (a `status()` later in
/// the same callback reads `Closing`).
fn close_core(
    conn: &ConnShared,
    core: &mut Connection,
    now: Instant,
    code: CloseCode,
    reason: &str,
    wait_for_peer: bool,
) -> Result<(), SendError> {
    let result = close_on(core, now, code, reason, wait_for_peer).map_err(|e| refused(core, e));
    conn.set_status(status(core));
    result
}

/// A message or an encoded frame for `conn`, written into its core when its callback runs
/// here (`Err` gives it back to be queued). The cap is checked as for a queued send: over
/// it, the send is refused, or the connection closed with 1008.
pub(crate) fn send<M>(
    conn: &ConnShared,
    message: M,
    write: impl FnOnce(&mut Connection, M) -> Result<(), ws6455_core::SendError>,
) -> Result<Result<(), SendError>, M> {
    with_core(conn, message, |core, now, message| {
        if core.state() != ConnectionState::Open {
            return Err(SendError::NotOpen(status(core)));
        }
        let buffered = conn.buffered_amount();
        let cap = conn.max_buffered();
        if over_cap(buffered, cap) {
            if conn.backpressure() == Backpressure::Close {
                let code = CloseCode::POLICY_VIOLATION;
                let _ = close_core(conn, core, now, code, "outgoing buffer full", false);
            }
            return Err(SendError::BufferFull { buffered, cap });
        }
        write(core, message).map_err(|e| refused(core, e))
    })
}

/// A Ping for `conn` (payload length checked by the caller).
pub(crate) fn ping<'a>(
    conn: &ConnShared,
    payload: &'a [u8],
) -> Result<Result<(), SendError>, &'a [u8]> {
    with_core(conn, payload, |core, _, payload| {
        core.send_ping(payload).map_err(|e| refused(core, e))
    })
}

/// A Close for `conn` (code and reason checked by the caller); `wait_for_peer` as in
/// [`ws6455_core::Connection::wait_for_peer_close`].
pub(crate) fn close<'a>(
    conn: &ConnShared,
    code: CloseCode,
    reason: &'a str,
    wait_for_peer: bool,
) -> Result<Result<(), SendError>, &'a str> {
    with_core(conn, reason, |core, now, reason| {
        close_core(conn, core, now, code, reason, wait_for_peer)
    })
}
