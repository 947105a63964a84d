//! The two things a blocking driver does with its socket, shared by the examples: read
//! until the core's next deadline, and write what the core has for the peer.

use std::io::{self, Read, Write};
use std::net::TcpStream;
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
