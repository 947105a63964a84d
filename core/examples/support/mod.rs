//! What a blocking driver does with its socket, shared by the examples: read until the
//! core's next deadline (and tell the core what happened), write what the core has for
//! the peer, and close the transport without losing what was written.

use std::io::{self, Read, Write};
use std::net::{Shutdown, TcpStream};
use std::time::{Duration, Instant};

use ws6455_core::Connection;

/// Reads into `buf`, waiting at most until `deadline` (`None`: no deadline). Returns
/// `None` when the deadline passed first: time for the core's `handle_timeout`.
pub(crate) fn read_until(
    stream: &mut TcpStream,
    buf: &mut [u8],
    deadline: Option<Instant>,
) -> io::Result<Option<usize>> {
    // A zero timeout means "forever" to std: wait at least a millisecond.
    let wait = deadline.map(|d| {
        d.saturating_duration_since(Instant::now())
            .max(Duration::from_millis(1))
    });
    stream.set_read_timeout(wait)?;
    loop {
        return match stream.read(buf) {
            Ok(n) => Ok(Some(n)),
            Err(e)
                if matches!(
                    e.kind(),
                    io::ErrorKind::WouldBlock | io::ErrorKind::TimedOut
                ) =>
            {
                Ok(None)
            }
            Err(e) if e.kind() == io::ErrorKind::Interrupted => continue,
            Err(e) => Err(e),
        };
    }
}

/// Sleeps until the peer sends something or the core's next deadline, and tells the core
/// what happened: returns how many bytes landed in `buf` (0 when none did).
pub(crate) fn wait_for_input(
    stream: &mut TcpStream,
    buf: &mut [u8],
    conn: &mut Connection,
) -> usize {
    match read_until(stream, buf, conn.poll_timeout()) {
        Ok(Some(0)) => {
            conn.receive_eof();
            0
        }
        Ok(Some(n)) => n,
        Ok(None) => {
            conn.handle_timeout(Instant::now());
            0
        }
        // A reset ends the transport like a FIN (after a finished closing handshake it
        // is no failure).
        Err(error) => {
            conn.abort(&error.to_string());
            0
        }
    }
}

/// Writes everything the connection has for the peer (blocking, within the socket's
/// write timeout).
pub(crate) fn write_output(stream: &mut TcpStream, conn: &mut Connection) -> io::Result<()> {
    while conn.wants_write() {
        stream.write_all(conn.pending_output())?;
        let n = conn.pending_output().len();
        conn.consume_output(n);
    }
    Ok(())
}

/// Ends the transport after everything was written: our FIN, then what the peer still
/// sends is read and discarded until its FIN or `linger` (`Config::linger_timeout`). A
/// socket closed with input unread would answer the peer's next bytes with a reset, and
/// a peer still sending could lose our last bytes (the Close, an HTTP answer) with it.
pub(crate) fn close_lingering(mut stream: TcpStream, linger: Duration) {
    if linger.is_zero() || stream.shutdown(Shutdown::Write).is_err() {
        return;
    }
    let deadline = Instant::now() + linger;
    let mut scratch = [0u8; 8192];
    // Bounded: every read waits at most until the deadline.
    while let Ok(Some(n)) = read_until(&mut stream, &mut scratch, Some(deadline)) {
        if n == 0 || Instant::now() >= deadline {
            return;
        }
    }
}
