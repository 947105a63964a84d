//! Bytes to the core, events to the application: the upgrade decision, message delivery
//! and the order guarantee, with every callback's panic caught and turned into that
//! connection's failure (1011), never the loop's.

use std::panic::{catch_unwind, AssertUnwindSafe};
use std::time::Instant;

use ws6455_core::close::truncate_reason;
use ws6455_core::{Connection, ConnectionState, Event};

use crate::conn::{Conn, Http, Phase};
use crate::handle::{over_cap, ConnShared, HandleInner, Status};
use crate::handler::{ConnError, ConnHandler, Decision, Handler};

/// The text of a caught panic.
fn panic_message(panic: Box<dyn std::any::Any + Send>) -> String {
    if let Some(s) = panic.downcast_ref::<&str>() {
        (*s).to_owned()
    } else if let Some(s) = panic.downcast_ref::<String>() {
        s.clone()
    } else {
        "non-string panic payload".to_owned()
    }
}

/// A caught call into application code. A panic is a bug in the application: logged at
/// `error` here, for every callback (the layers above use it for theirs too, so that a
/// panic is logged the same way wherever it happens), and returned as
/// [`ConnError::HandlerPanic`].
pub fn guarded<T>(f: impl FnOnce() -> T) -> Result<T, ConnError> {
    catch_unwind(AssertUnwindSafe(f)).map_err(|p| {
        let message = panic_message(p);
        log::error!("an application callback panicked: {message}");
        ConnError::HandlerPanic(message)
    })
}

/// Reports `error` once and ends the connection the way the error says: a close frame with
/// its code, or an abort (1006) when no code is sent.
pub(crate) fn fail_open<C: ConnHandler>(
    core: &mut Connection,
    app: &mut C,
    errored: &mut bool,
    error: ConnError,
    now: Instant,
) {
    if !*errored {
        *errored = true;
        log::debug!("connection failed: {error}");
        let _ = guarded(|| app.on_error(&error));
    }
    match error.close_code() {
        Some(code) if core.state() == ConnectionState::Open => {
            let text = error.to_string();
            let _ = core.close_with_standard_code(now, code, truncate_reason(&text));
        }
        Some(_) => {}
        None => core.abort(&error.to_string()),
    }
}

/// Runs `on_open` and applies what it sent; a panic fails the connection.
pub(crate) fn open<C: ConnHandler>(inner: &HandleInner, conn: &mut Conn<C>, now: Instant) {
    let Phase::Open { core, app } = &mut conn.phase else {
        return;
    };
    let outcome = call(inner, &conn.shared, core, now, || guarded(|| app.on_open()));
    match outcome {
        Ok(()) => {
            inner.apply_commands_for(&conn.shared, core, now);
        }
        Err(error) => fail_open(core, app, &mut conn.errored, error, now),
    }
}

/// Runs a callback of the connection `shared`: what was sent to it earlier is applied
/// first, and what the callback sends it goes straight into `core` when nothing queued
/// for it waits ([`crate::direct`]).
fn call<T>(
    inner: &HandleInner,
    shared: &ConnShared,
    core: &mut Box<Connection>,
    now: Instant,
    callback: impl FnOnce() -> T,
) -> T {
    let clear = inner.apply_commands_for(shared, core, now);
    // What was applied is the core's now: the cap checks of the callback's sends must see
    // it (the queued amount it came from was just lowered).
    shared.set_unwritten(core.pending_output_len());
    if clear {
        crate::direct::run(shared.id(), core, now, callback)
    } else {
        callback()
    }
}

/// Feeds bytes that arrived at `now` to an open connection and delivers its events. The
/// core stops at each event, so the application answers a message before the next frame
/// is decoded.
pub(crate) fn feed_open<C: ConnHandler>(
    inner: &HandleInner,
    conn: &mut Conn<C>,
    mut data: &[u8],
    now: Instant,
) {
    let Phase::Open { core, app } = &mut conn.phase else {
        return;
    };
    loop {
        match core.receive(now, &mut data) {
            Ok(None) => return,
            Ok(Some(Event::Message(message))) => {
                if conn.errored {
                    core.recycle(message.into_bytes());
                    continue;
                }
                let outcome = call(inner, &conn.shared, core, now, || {
                    guarded(|| app.on_message(message))
                });
                // What the callback sent before failing goes out before the Close.
                inner.apply_commands_for(&conn.shared, core, now);
                if let Ok(Err(error)) | Err(error) = outcome {
                    fail_open(core, app, &mut conn.errored, error, now);
                }
            }
            // Pings are answered by the core; Close frames end the state machine there.
            Ok(Some(_)) => {}
            Err(error) => {
                let error = ConnError::Protocol(error);
                return fail_open(core, app, &mut conn.errored, error, now);
            }
        }
        // What the callbacks sent is in the core now: publish it, so that `send` and the
        // check below see the real buffer.
        conn.shared.set_unwritten(core.pending_output_len());
        if !data.is_empty() && over_cap(conn.shared.buffered_amount(), conn.shared.max_buffered()) {
            // Backpressure between two messages: keep the rest for when the buffer drains.
            conn.unread.get_or_insert_default().extend_from_slice(data);
            conn.read_paused = true;
            return;
        }
    }
}

/// Feeds bytes that arrived at `now` to a connection in any phase: a request completes
/// into the application's decision, then an upgrade or an HTTP answer.
pub(crate) fn feed<H: Handler>(
    handler: &mut H,
    inner: &HandleInner,
    conn: &mut Conn<H::Conn>,
    data: &[u8],
    now: Instant,
) {
    let Phase::Http(http) = &mut conn.phase else {
        return feed_open(inner, conn, data, now);
    };
    let Http::Handshake(hs) = &mut **http else {
        return;
    };
    let remote = hs.remote;
    let accepted = match hs.acceptor.receive_data(now, data) {
        Ok(None) => return,
        Ok(Some(accepted)) => accepted,
        Err(refused) => {
            log::debug!(
                "{remote}: refused {}: {}",
                refused.error.status(),
                refused.error
            );
            let _ = guarded(|| handler.on_bad_request(&refused.error, remote));
            conn.phase = Phase::responding(refused.reply);
            return;
        }
    };
    if hs.over_limit {
        let reply = accepted.reject(503, "the server is at its connection limit", now);
        conn.phase = Phase::responding(reply);
        return;
    }
    if !accepted.is_websocket() {
        let reply = match guarded(|| handler.on_http_request(accepted.request(), remote)) {
            Ok(response) => accepted.respond(response, now),
            Err(_) => accepted.reject(500, "the server's handler failed", now),
        };
        conn.phase = Phase::responding(reply);
        return;
    }
    let decision = guarded(|| handler.on_request(accepted.request(), remote, &conn.shared));
    let (app, choices) = match decision {
        Ok(Decision::Accept { conn: app, choices }) => (app, choices),
        Ok(Decision::Respond(bytes)) => {
            conn.phase = Phase::responding(accepted.respond(bytes, now));
            return;
        }
        Err(_) => {
            let reply = accepted.reject(500, "the server's handler failed", now);
            conn.phase = Phase::responding(reply);
            return;
        }
    };
    match accepted.accept(&choices, now) {
        Ok(core) => {
            conn.phase = Phase::Open {
                core: Box::new(core),
                app,
            };
        }
        // The application's choices would break the handshake: refused, not opened.
        Err(reply) => {
            drop(app);
            conn.phase = Phase::responding(reply);
            return;
        }
    }
    conn.shared.set_status(Status::Connected);
    open(inner, conn, now);
    // Frames that came with the request.
    feed_open(inner, conn, &[], now);
}
