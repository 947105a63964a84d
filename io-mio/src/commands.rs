//! What other threads ask of a loop, applied on its thread: sends and closes for a
//! connection, client connections to adopt, and the shutdown (graceful, with a deadline,
//! or at once).

use std::sync::atomic::Ordering;
use std::time::{Duration, Instant};

use mio::net::TcpStream;
use mio::{Interest, Token};
use ws6455_core::{CloseCode, ConnectionState};

use crate::conn::{Conn, Phase};
use crate::dispatch::{fail_open, feed_open, guarded, open};
use crate::event_loop::Running;
use crate::handle::{Adoption, Command, ConnShared, Status, LOCAL};
use crate::handler::{ConnError, ConnHandler, Handler};
use crate::transport::{ClientStream, Transport};

impl<H: Handler> Running<H> {
    pub(crate) fn live(&mut self, shared: &ConnShared) -> Option<usize> {
        let token = shared.token();
        let conn = self.conns.get(token)?;
        (conn.shared.id() == shared.id()).then_some(token)
    }

    /// Applies the commands this thread's callbacks queued for other connections or the
    /// loop (a broadcast, a publish, a terminate), then those other threads queued before
    /// it started (taken one at a time, so that producers are not held on the lock).
    /// Commands queued meanwhile, by the callbacks it runs (`on_open` of an adopted
    /// connection, `on_close`), wait for the next turn (the poll does not sleep then), so
    /// a producer cannot starve reads. What the commands wrote goes out at the end, one
    /// write per connection.
    pub(crate) fn run_commands(&mut self) {
        let inner = self.handle.inner.clone();
        let commands = &inner.commands;
        // The count without the lock: a command pushed after this read wakes the poll,
        // so it runs next turn.
        let queued = inner.shared_queued.load(Ordering::Acquire);
        let local = LOCAL.with(|local| {
            let mut local = local.borrow_mut();
            (!local.is_empty()).then(|| local.take())
        });
        if queued == 0 && local.is_none() {
            return;
        }
        let now = Instant::now();
        // What this thread's callbacks queued first: they came before anything another
        // thread can have sent in answer to them (a reply to a publish, say).
        if let Some(mut local) = local {
            for command in local.drain(..) {
                self.run_command(command, now);
            }
            LOCAL.with(|l| l.borrow_mut().give_back(Vec::new(), local));
        }
        for _ in 0..queued {
            let next = {
                let mut queue = commands.lock().unwrap_or_else(|e| e.into_inner());
                let next = queue.pop_front();
                inner.shared_queued.store(queue.len(), Ordering::Release);
                next
            };
            let Some(command) = next else { break };
            self.run_command(command, now);
        }
        self.flush_deferred();
    }

    fn run_command(&mut self, command: Command, now: Instant) {
        command.dequeue();
        let command = match command {
            Command::Shutdown { timeout } => return self.begin_shutdown(timeout, now),
            Command::Adopt(adoption) => return self.adopt(*adoption, now),
            Command::FanOut(fan_out) => return self.fan_out(*fan_out, now),
            other => other,
        };
        let key = command.conn().and_then(|conn| self.live(conn));
        let Some(key) = key else { return };
        if matches!(command, Command::Destroy { .. }) {
            return self.destroy(key);
        }
        let conn = &mut self.conns[key];
        let Phase::Open { core, .. } = &mut conn.phase else {
            if matches!(command, Command::Close { .. }) {
                self.remove(key);
            }
            return;
        };
        command.apply(core, now);
        self.defer_update(key);
    }

    /// Takes in a client connection whose handshake is done: registers it, runs `on_open`,
    /// decodes what followed the handshake response.
    fn adopt(&mut self, adoption: Adoption, now: Instant) {
        let Adoption {
            stream,
            shared,
            app,
            mut core,
        } = adoption;
        let refuse = |shared: &ConnShared| shared.set_status(Status::Closed);
        let Ok(app) = app.downcast::<H::Conn>() else {
            // A caller's bug (another type than the loop's `Handler::Conn`): not opened.
            return refuse(&shared);
        };
        let (socket, session) = match stream {
            ClientStream::Tcp(socket) => (socket, None),
            ClientStream::Tls(socket, session) => (socket, Some(session)),
        };
        let nonblocking = socket.set_nonblocking(true);
        let mut socket = TcpStream::from_std(socket);
        let entry = self.conns.vacant_entry();
        let key = entry.key();
        let registered = nonblocking.and_then(|()| {
            self.poll
                .registry()
                .register(&mut socket, Token(key), Interest::READABLE)
        });
        let mut app = *app;
        // Starts the timers of a connection made without a time (harmless otherwise).
        core.handle_timeout(now);
        if let Err(error) = registered {
            // The order guarantee holds even here: open, error, close (1006).
            let mut errored = false;
            let _ = guarded(|| app.on_open());
            let error = ConnError::Io(error.to_string());
            fail_open(&mut core, &mut app, &mut errored, error, now);
            refuse(&shared);
            if let Some(status) = core.close_status() {
                let _ = guarded(|| app.on_close(status));
            }
            return;
        }
        shared.set_token(key);
        let transport = match session {
            None => Transport::plain(socket),
            Some(session) => Transport::tls(socket, (*session).into()),
        };
        let conn = entry.insert(Conn::new(transport, shared, Phase::Open { core, app }));
        let inner = &self.handle.inner;
        open(inner, conn, now);
        if let Phase::Open { core, .. } = &mut conn.phase {
            if self.shutdown.is_some() && core.state() == ConnectionState::Open {
                core.wait_for_peer_close();
                let _ = core.close_with_standard_code(now, CloseCode::GOING_AWAY, "shutting down");
            }
        }
        // What came with the handshake response, then anything already in the socket,
        // read now rather than at the next poll.
        feed_open(inner, conn, &[], now);
        self.read(key);
        self.update(key);
    }

    fn begin_shutdown(&mut self, timeout: Option<Duration>, now: Instant) {
        if let Some(mut listener) = self.listener.take() {
            let _ = self.poll.registry().deregister(&mut listener);
        }
        if timeout == Some(Duration::ZERO) {
            self.shutdown = Some(Some(now));
            return self.destroy_all();
        }
        // A later shutdown may bring the deadline forward, never push it back or drop it.
        let deadline = timeout.map(|t| now + t);
        self.shutdown = Some(match (self.shutdown.flatten(), deadline) {
            (Some(earlier), Some(later)) => Some(earlier.min(later)),
            (earlier, later) => earlier.or(later),
        });
        let keys: Vec<usize> = self.conns.iter().map(|(key, _)| key).collect();
        for key in keys {
            match &mut self.conns[key].phase {
                Phase::Open { core, .. } => {
                    // A graceful shutdown waits for each peer's answer as long as the
                    // peer is alive; a deadline, if given, is the loop's own.
                    core.wait_for_peer_close();
                    if core.state() == ConnectionState::Open {
                        let _ = core.close_with_standard_code(
                            now,
                            CloseCode::GOING_AWAY,
                            "shutting down",
                        );
                    }
                    self.update(key);
                }
                Phase::Http(_) => {
                    self.remove(key);
                }
            }
        }
    }

    /// Destroys every connection at once: no Close frame, and a TCP reset instead of FIN.
    pub(crate) fn destroy_all(&mut self) {
        let keys: Vec<usize> = self.conns.iter().map(|(key, _)| key).collect();
        for key in keys {
            self.destroy(key);
        }
    }

    /// Destroys one connection at once: no Close frame, a TCP reset instead of FIN.
    fn destroy(&mut self, key: usize) {
        let conn = &mut self.conns[key];
        let socket = conn.transport.socket_mut();
        let _ = socket2::SockRef::from(&*socket).set_linger(Some(Duration::ZERO));
        if let Phase::Open { core, .. } = &mut conn.phase {
            core.abort("destroyed by the server");
        }
        self.remove(key);
    }
}
