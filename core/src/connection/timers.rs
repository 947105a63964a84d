//! The connection's deadlines, with time passed in (quinn-proto's model): keepalive
//! Ping, pong deadline, idle timeout, close timeout, and the release of buffers kept for
//! reuse once the connection is quiet. A driver sleeps until
//! [`Connection::poll_timeout`] and then calls [`Connection::handle_timeout`]; it reads
//! the clock, the connection never does.

use std::time::{Duration, Instant};

use super::{Connection, State, NO_PING};
use crate::close::CloseCode;

/// A deadline that passed, as [`Connection::handle_timeout`] reports it.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
#[non_exhaustive]
pub enum Expired {
    /// Nothing arrived for [`Config::idle_timeout`](crate::Config::idle_timeout): the
    /// closing handshake started (1001).
    Idle,
    /// Our keepalive Ping got no answer (nor anything else) within
    /// [`Config::pong_timeout`](crate::Config::pong_timeout): the connection failed
    /// (1006) and the transport should close now. A driver reports it as an error.
    Pong,
    /// The closing handshake did not finish within
    /// [`Config::close_timeout`](crate::Config::close_timeout), or the transport was not
    /// closed by then: the transport should close now.
    Closing,
}

/// How long an open connection keeps the buffers it reuses from message to message (the
/// recycled message buffer, the output's encoding buffer, zlib streams no context needs)
/// after its last input: steady traffic allocates nothing per message, and a connection
/// quiet for this long holds none of them. A connection that only sends (nothing comes
/// in) releases them as soon as its output is written.
pub const RELEASE_AFTER: Duration = Duration::from_secs(1);

fn earliest(a: Option<Instant>, b: Option<Instant>) -> Option<Instant> {
    match (a, b) {
        (Some(a), Some(b)) => Some(a.min(b)),
        (a, b) => a.or(b),
    }
}

/// `now` as whole milliseconds after `last`, rounded up, short of [`NO_PING`].
fn millis_after(last: Instant, now: Instant) -> u32 {
    let nanos = now.saturating_duration_since(last).as_nanos();
    let millis = nanos.div_ceil(1_000_000);
    u32::try_from(millis)
        .unwrap_or(NO_PING - 1)
        .min(NO_PING - 1)
}

impl Connection {
    /// When the keepalive Ping that is out went (to the next millisecond after it). It
    /// went no earlier than `ping_interval` after the last input, which is also the
    /// answer when the milliseconds did not fit (a Ping over 49 days after the last
    /// input: then as if it went exactly at its interval, which may be early by as much
    /// as the driver woke late).
    fn ping_sent(&self, last_input: Instant) -> Option<Instant> {
        if self.ping_sent_after == NO_PING {
            return None;
        }
        let after = Duration::from_millis(self.ping_sent_after.into());
        let interval = self.config.ping_interval.unwrap_or_default();
        Some(last_input + after.max(interval))
    }

    /// When the kept buffers are to be released: only once the output is written (a
    /// release frees nothing before) and while there is something to release.
    fn release_due(&self, last_input: Instant) -> Option<Instant> {
        (self.output.is_empty() && self.holds_releasable_memory())
            .then(|| last_input + RELEASE_AFTER)
    }

    /// When [`handle_timeout`](Self::handle_timeout) is next due, if ever: the driver
    /// schedules one wake-up there. It changes after every input, command and timeout, so
    /// ask again after each. `None` also before the first call that passed the time (a
    /// connection made with [`server`](Self::server) / [`client`](Self::client) starts
    /// its timers at its first `receive`, `close` or `handle_timeout`).
    pub fn poll_timeout(&self) -> Option<Instant> {
        if self.close_now {
            return None;
        }
        match &self.state {
            State::Open => {
                let last = self.last_input?;
                let config = &self.config;
                let idle = config.idle_timeout.map(|idle| last + idle);
                let ping = config
                    .ping_interval
                    .map(|interval| match self.ping_sent(last) {
                        Some(sent) => sent + config.pong_timeout,
                        None => last + interval,
                    });
                let release = self.release_due(last);
                earliest(earliest(idle, ping), release)
            }
            State::LocalClosing { since } => self.close_deadline(*since),
            State::Closed(closed) => closed.deadline,
        }
    }

    /// Runs the deadlines that have passed at `now`: releases the buffers of a quiet
    /// connection, sends the keepalive Ping, starts the closing handshake of an idle
    /// connection, fails one whose Ping went unanswered, ends a closing handshake that took
    /// too long. Early or repeated calls are harmless.
    /// Returns what expired, if anything did; then check
    /// [`should_close_transport`](Self::should_close_transport) and the output.
    pub fn handle_timeout(&mut self, now: Instant) -> Option<Expired> {
        let last = *self.last_input.get_or_insert(now);
        if self.close_now {
            return None;
        }
        match self.state {
            State::Open => {
                if self.release_due(last).is_some_and(|due| now >= due) {
                    self.release_memory();
                }
                let config = self.config.clone();
                if config.idle_timeout.is_some_and(|idle| now >= last + idle) {
                    let _ =
                        self.close_with_standard_code(now, CloseCode::GOING_AWAY, "idle timeout");
                    return Some(Expired::Idle);
                }
                let interval = config.ping_interval?;
                match self.ping_sent(last) {
                    None if now >= last + interval => {
                        let _ = self.send_ping(b"");
                        self.ping_sent_after = millis_after(last, now);
                    }
                    Some(sent) if now >= sent + config.pong_timeout => {
                        self.abort("no pong to the keepalive ping");
                        return Some(Expired::Pong);
                    }
                    _ => {}
                }
                None
            }
            State::LocalClosing { since }
                if self
                    .close_deadline(since)
                    .is_some_and(|deadline| now >= deadline) =>
            {
                self.abort("the closing handshake timed out");
                Some(Expired::Closing)
            }
            State::Closed(ref closed) if closed.deadline.is_some_and(|at| now >= at) => {
                self.close_now = true;
                Some(Expired::Closing)
            }
            _ => None,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::{Config, ConnectionState, Event, FixedRandom};
    use std::time::Duration;

    fn secs(n: u64) -> Duration {
        Duration::from_secs(n)
    }

    fn feed(conn: &mut Connection, now: Instant, mut input: &[u8]) -> Vec<Event> {
        let mut events = Vec::new();
        while let Some(event) = conn.receive(now, &mut input).unwrap() {
            events.push(event);
        }
        events
    }

    fn drain(conn: &mut Connection) -> Vec<u8> {
        let mut out = Vec::new();
        while conn.wants_write() {
            out.extend_from_slice(conn.pending_output());
            let n = conn.pending_output().len();
            conn.consume_output(n);
        }
        out
    }

    #[test]
    fn keepalive_by_default_then_the_close_timer() {
        let t0 = Instant::now();
        let mut server = Connection::server(Config::default());
        assert_eq!(server.handle_timeout(t0), None);
        assert_eq!(
            server.poll_timeout(),
            Some(t0 + secs(20)),
            "the keepalive Ping"
        );
        assert_eq!(server.handle_timeout(t0 + secs(20)), None);
        assert_eq!(drain(&mut server), [0x89, 0x00]);
        assert_eq!(
            server.poll_timeout(),
            Some(t0 + RELEASE_AFTER),
            "the Ping's buffer, due for release at once (no input for 20 s)"
        );
        assert_eq!(server.handle_timeout(t0 + secs(20)), None);
        assert_eq!(
            server.poll_timeout(),
            Some(t0 + secs(40)),
            "the pong deadline"
        );
        let off = Config {
            ping_interval: None,
            ..Config::default()
        };
        let mut server = Connection::server(off);
        assert_eq!(server.handle_timeout(t0), None);
        assert_eq!(server.poll_timeout(), None, "no keepalive, no idle timeout");
        server.close(t0, CloseCode::NORMAL, "").unwrap();
        assert_eq!(server.poll_timeout(), Some(t0 + secs(5)));
        assert_eq!(server.handle_timeout(t0 + secs(4)), None);
        assert_eq!(server.handle_timeout(t0 + secs(5)), Some(Expired::Closing));
        assert_eq!(server.close_status().unwrap().code, CloseCode::ABNORMAL);
        assert!(server.should_close_transport());
        assert_eq!(server.poll_timeout(), None);
    }

    #[test]
    fn keepalive_pings_then_fails_without_a_pong() {
        let t0 = Instant::now();
        let config = Config {
            ping_interval: Some(secs(10)),
            pong_timeout: secs(3),
            ..Config::default()
        };
        let mut server = Connection::server(config);
        server.handle_timeout(t0);
        assert_eq!(server.poll_timeout(), Some(t0 + secs(10)));
        assert_eq!(server.handle_timeout(t0 + secs(10)), None);
        assert_eq!(drain(&mut server), [0x89, 0x00], "an empty Ping");
        server.handle_timeout(t0 + secs(10)); // the Ping's buffer, released
        assert_eq!(server.poll_timeout(), Some(t0 + secs(13)));
        // Any input counts as an answer and restarts the interval.
        let pong = [0x8a, 0x80, 1, 2, 3, 4];
        assert_eq!(feed(&mut server, t0 + secs(12), &pong).len(), 1);
        let quiet = t0 + secs(12) + RELEASE_AFTER;
        assert_eq!(
            server.poll_timeout(),
            Some(quiet),
            "the Pong's assembly, released"
        );
        assert_eq!(server.handle_timeout(quiet), None);
        assert_eq!(server.poll_timeout(), Some(t0 + secs(22)));
        server.handle_timeout(t0 + secs(22));
        drain(&mut server);
        assert_eq!(server.handle_timeout(t0 + secs(25)), Some(Expired::Pong));
        assert_eq!(server.state(), ConnectionState::Closed);
        assert!(server.should_close_transport());
    }

    /// The Ping's time is kept as whole milliseconds after the last input: the pong
    /// deadline may be up to a millisecond late, never early, also when the driver woke
    /// late, and for an interval too long for the milliseconds to fit (woken on time).
    #[test]
    fn the_pong_deadline_is_never_early() {
        let t0 = Instant::now();
        let micros = Duration::from_micros;
        for (interval, woke_late) in [
            (secs(10), micros(0)),
            (secs(10), micros(1)),
            (secs(10), micros(2_345_678)),
            (secs(60 * 86_400), micros(0)),
        ] {
            let config = Config {
                ping_interval: Some(interval),
                pong_timeout: secs(3),
                ..Config::default()
            };
            let mut server = Connection::server(config);
            server.handle_timeout(t0);
            let sent = t0 + interval + woke_late;
            assert_eq!(server.handle_timeout(sent), None);
            assert_eq!(drain(&mut server), [0x89, 0x00], "the Ping");
            server.handle_timeout(sent); // the Ping's buffer, released
            let deadline = server.poll_timeout().unwrap();
            let exact = sent + secs(3);
            assert!(
                deadline >= exact && deadline <= exact + Duration::from_millis(1),
                "{interval:?} + {woke_late:?}: {:?} after the exact deadline",
                deadline.checked_duration_since(exact)
            );
            assert_eq!(server.handle_timeout(exact - micros(1)), None);
            assert_eq!(server.state(), ConnectionState::Open);
            assert_eq!(server.handle_timeout(deadline), Some(Expired::Pong));
        }
    }

    #[test]
    fn buffers_are_kept_while_messages_flow_and_released_after_a_quiet_second() {
        let t0 = Instant::now();
        let config = Config {
            ping_interval: None,
            ..Config::default()
        };
        let mut server = Connection::server(config);
        let hello = [0x81, 0x85, 0, 0, 0, 0, b'h', b'e', b'l', b'l', b'o'];
        let echo = |server: &mut Connection, now: Instant| {
            let mut events = feed(server, now, &hello);
            let Some(Event::Message(message)) = events.pop() else {
                panic!("no message");
            };
            server.send_binary_owned(message.into_bytes()).unwrap();
            drain(server)
        };
        assert_eq!(
            echo(&mut server, t0),
            [0x82, 5, b'h', b'e', b'l', b'l', b'o']
        );
        assert_eq!(server.poll_timeout(), Some(t0 + RELEASE_AFTER));
        let half = RELEASE_AFTER / 2;
        assert_eq!(server.handle_timeout(t0 + half), None);
        assert!(server.holds_releasable_memory(), "kept while quiet < 1 s");
        echo(&mut server, t0 + half);
        assert_eq!(
            server.poll_timeout(),
            Some(t0 + half + RELEASE_AFTER),
            "counted from the last input"
        );
        assert_eq!(server.handle_timeout(t0 + half + RELEASE_AFTER), None);
        assert!(!server.holds_releasable_memory(), "released");
        assert_eq!(server.poll_timeout(), None, "nothing left to release");
        // Unwritten output is not released: no deadline until it is written.
        server.send_text("later").unwrap();
        assert_eq!(server.poll_timeout(), None);
        drain(&mut server);
        assert_eq!(server.poll_timeout(), Some(t0 + half + RELEASE_AFTER));
    }

    /// An unmasked client frame: binary, `len` zero bytes, key 0.
    fn binary_frame(len: usize) -> Vec<u8> {
        let mut frame = vec![0x82, 0xFF];
        frame.extend_from_slice(&(len as u64).to_be_bytes());
        frame.extend_from_slice(&[0; 4]);
        frame.resize(frame.len() + len, 0);
        frame
    }

    #[test]
    fn the_idle_release_keeps_a_large_buffer_until_the_quiet_deadline() {
        let t0 = Instant::now();
        let config = Config {
            ping_interval: None,
            ..Config::default()
        };
        let mut server = Connection::server(config);
        let large = binary_frame(crate::LARGE_BUFFER);
        let echo = |server: &mut Connection, now: Instant, frame: &[u8]| {
            let Some(Event::Message(crate::Message::Binary(data))) = feed(server, now, frame).pop()
            else {
                panic!("no message");
            };
            let at = data.as_ptr();
            server.send_binary_owned(data).unwrap();
            drain(server);
            at
        };
        let first = echo(&mut server, t0, &large);
        let mut freed = Vec::new();
        server.release_idle_memory_into(|buffer| freed.push(buffer.capacity()));
        assert!(
            freed.iter().all(|&capacity| capacity < crate::LARGE_BUFFER),
            "only small buffers are released at once: {freed:?}"
        );
        assert!(server.holds_releasable_memory());
        assert_eq!(server.poll_timeout(), Some(t0 + RELEASE_AFTER));
        let second = echo(&mut server, t0 + secs(0), &large);
        assert_eq!(first, second, "the next large message reuses the buffer");
        server.release_idle_memory_into(drop);
        assert_eq!(server.handle_timeout(t0 + RELEASE_AFTER), None);
        assert!(
            !server.holds_releasable_memory(),
            "freed after the quiet second"
        );
        // A small message's buffers go at once.
        echo(&mut server, t0 + RELEASE_AFTER, &binary_frame(100));
        server.release_idle_memory_into(drop);
        assert!(!server.holds_releasable_memory());
        assert_eq!(server.poll_timeout(), None);
        // Review fix: once closing, the quiet deadline no longer runs, so nothing is
        // kept (a discarded message reuses no buffer).
        let later = t0 + RELEASE_AFTER * 2;
        echo(&mut server, later, &large);
        server.close(later, CloseCode::NORMAL, "").unwrap();
        drain(&mut server);
        server.release_idle_memory_into(drop);
        assert!(
            !server.holds_releasable_memory(),
            "freed at once when closing"
        );
    }

    #[test]
    fn idle_connections_are_closed_with_1001() {
        let t0 = Instant::now();
        let config = Config {
            idle_timeout: Some(secs(30)),
            ping_interval: None,
            ..Config::default()
        };
        let mut client = Connection::client(config, Box::new(FixedRandom::new(&[0])));
        client.handle_timeout(t0);
        assert_eq!(client.poll_timeout(), Some(t0 + secs(30)));
        assert_eq!(client.handle_timeout(t0 + secs(30)), Some(Expired::Idle));
        assert_eq!(client.state(), ConnectionState::Closing);
        let close = drain(&mut client);
        assert_eq!(close[0], 0x88);
        assert_eq!(
            client.poll_timeout(),
            Some(t0 + secs(35)),
            "now the close timer"
        );
    }

    #[test]
    fn a_client_waits_for_the_servers_fin_at_most_the_close_timeout() {
        let t0 = Instant::now();
        let mut client = Connection::client(Config::default(), Box::new(FixedRandom::new(&[0])));
        client.close(t0, CloseCode::NORMAL, "").unwrap();
        // The server's answering Close, a second later.
        assert_eq!(feed(&mut client, t0 + secs(1), &[0x88, 0x00]).len(), 1);
        drain(&mut client);
        assert_eq!(client.state(), ConnectionState::Closed);
        assert!(!client.should_close_transport(), "the server closes first");
        assert_eq!(
            client.poll_timeout(),
            Some(t0 + secs(5)),
            "counted from our Close"
        );
        assert_eq!(client.handle_timeout(t0 + secs(5)), Some(Expired::Closing));
        assert!(client.should_close_transport());
        assert!(
            client.close_status().unwrap().clean,
            "the handshake itself was clean"
        );
    }

    #[test]
    fn a_server_whose_peer_never_reads_its_close_gives_up_at_the_close_timeout() {
        let t0 = Instant::now();
        let mut server = Connection::server(Config::default());
        let close = [0x88, 0x80, 0, 0, 0, 0];
        assert_eq!(feed(&mut server, t0, &close).len(), 1);
        assert!(server.wants_write(), "our answering Close, never written");
        assert!(!server.should_close_transport());
        assert_eq!(server.handle_timeout(t0 + secs(5)), Some(Expired::Closing));
        assert!(server.should_close_transport());
    }

    #[test]
    fn waiting_for_the_peers_close_lasts_while_the_peer_is_heard_from() {
        let t0 = Instant::now();
        let mut server = Connection::server(Config::default());
        server.handle_timeout(t0);
        server.wait_for_peer_close();
        server
            .close_with_standard_code(t0, CloseCode::GOING_AWAY, "shutting down")
            .unwrap();
        drain(&mut server);
        // Past the close timeout: still waiting, until 40 s (20 + 20) of silence.
        assert_eq!(server.handle_timeout(t0 + secs(5)), None);
        assert_eq!(server.poll_timeout(), Some(t0 + secs(40)));
        // A late data frame (discarded after our Close) proves the peer alive.
        let text = [0x81, 0x81, 0, 0, 0, 0, b'x'];
        assert!(feed(&mut server, t0 + secs(30), &text).is_empty());
        assert_eq!(server.poll_timeout(), Some(t0 + secs(70)));
        assert_eq!(server.handle_timeout(t0 + secs(69)), None);
        assert!(!server.should_close_transport());
        assert_eq!(server.handle_timeout(t0 + secs(70)), Some(Expired::Closing));
        assert!(server.should_close_transport());
        assert_eq!(
            server.close_status().map(|s| s.code),
            Some(CloseCode::ABNORMAL)
        );
    }

    #[test]
    fn waiting_for_the_peers_close_without_keepalive_has_no_deadline() {
        let t0 = Instant::now();
        let config = Config {
            ping_interval: None,
            ..Config::default()
        };
        let mut server = Connection::server(config);
        server.handle_timeout(t0);
        server.wait_for_peer_close();
        server
            .close_with_standard_code(t0, CloseCode::GOING_AWAY, "shutting down")
            .unwrap();
        assert_eq!(server.poll_timeout(), None);
        assert_eq!(server.handle_timeout(t0 + secs(3600)), None);
        // The peer's answer ends it cleanly, as always.
        let close = [0x88, 0x82, 0, 0, 0, 0, 0x03, 0xe9];
        feed(&mut server, t0 + secs(3601), &close);
        assert!(server.close_status().is_some_and(|s| s.clean));
    }
}
