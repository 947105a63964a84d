//! ws6455-mio: a mio event loop that drives [`ws6455_core`] connections.
//!
//! One loop is one thread: a `mio::Poll`, a listener, a slab of connections, a timer heap
//! and a command queue with a `mio::Waker`, so that any thread can send, close or shut
//! down through a [`LoopHandle`]. The application plugs in through [`Handler`], handed to
//! [`EventLoop::run`] on the loop's thread.
//!
//! A thin driver: the protocol, both handshakes, the close rules and every timer
//! (handshake, close, idle, keepalive, pong) are `ws6455_core`'s. The loop reads the
//! clock and passes the time in, moves bytes between sockets and the core, schedules one
//! wake-up per connection at the core's `poll_timeout`, and isolates the application's
//! panics.
//!
//! Memory: all connections of a loop share one 256 KiB read buffer; a connection keeps
//! only bytes of a frame still incomplete, and its small message and output buffers go
//! back to the loop's pool (at most 32 of at most 4 KiB) when it goes idle, to be lent to
//! the next connection that reads; a large message's buffer (128 KiB or more) stays with
//! its connection for the core's quiet second, so that the next large message reuses it.
//!
//! Backpressure: while a connection's buffered outgoing bytes exceed
//! [`LoopConfig::max_buffered`], the loop stops reading from it, so TCP flow control
//! reaches a peer that sends without reading; sends over the cap are refused.
//!
//! A loop drives accepted (server) connections, built with [`EventLoop::new`] around a
//! listener, and client connections handed to it with [`LoopHandle::adopt`]; a loop
//! without a listener ([`EventLoop::unbound`]) serves clients only.

#![forbid(unsafe_code)]

mod commands;
mod config;
mod conn;
mod direct;
mod dispatch;
mod event_loop;
mod fanout;
mod handle;
mod handler;
mod linger;
mod shared;
mod timers;
mod transport;

use std::io;
use std::net::SocketAddr;
use std::sync::Arc;
use std::thread::JoinHandle;

pub use config::{Backpressure, LoopConfig};
pub use dispatch::guarded;
pub use event_loop::EventLoop;
pub use fanout::{FanOut, FanOutTally, SlowSubscriber};
pub use handle::{ConnShared, LoopHandle, LoopStopped, Outgoing, SendError, Status};
pub use handler::{AcceptProblem, ConnError, ConnHandler, Decision, Handler};
pub use rustls;
pub use transport::ClientStream;
pub use ws6455_core::accept::Choices;
/// TLS configuration helpers (shared with the other drivers).
pub use ws6455_tls as tls;

/// Binds `count` listening sockets to `addr`. With more than one they share the port
/// through `SO_REUSEPORT` and the kernel spreads connections over them. Port 0 picks one
/// free port for all. An address already in use fails with `AddrInUse`, also when the
/// other owner uses `SO_REUSEPORT` too (a second server started by mistake on the same
/// port is refused instead of silently sharing it).
pub fn bind(addr: SocketAddr, count: usize) -> io::Result<Vec<std::net::TcpListener>> {
    let count = count.max(1);
    let mut addr = addr;
    if count > 1 {
        // A socket without SO_REUSEPORT cannot join anyone's group: if it binds, the
        // port is free (and with port 0 it picks one). It is closed before the group
        // binds; the window between the two is the one race left.
        addr = listener_socket(addr, false)?.local_addr()?;
    }
    let mut listeners = Vec::with_capacity(count);
    for _ in 0..count {
        let listener = listener_socket(addr, count > 1)?;
        addr = listener.local_addr()?;
        listeners.push(listener);
    }
    Ok(listeners)
}

fn listener_socket(addr: SocketAddr, reuse_port: bool) -> io::Result<std::net::TcpListener> {
    let domain = socket2::Domain::for_address(addr);
    let socket = socket2::Socket::new(domain, socket2::Type::STREAM, Some(socket2::Protocol::TCP))?;
    socket.set_reuse_address(true)?;
    socket.set_reuse_port(reuse_port)?;
    if addr.is_ipv6() {
        socket.set_only_v6(true)?;
    }
    socket.bind(&addr.into())?;
    socket.listen(1024)?;
    Ok(socket.into())
}

/// Starts one loop thread per listener, each with a clone of `handler`.
pub fn spawn<H: Handler + Clone>(
    listeners: Vec<std::net::TcpListener>,
    handler: H,
    config: LoopConfig,
) -> io::Result<Vec<(LoopHandle, JoinHandle<()>)>> {
    let config = Arc::new(config);
    let mut loops = Vec::new();
    for (i, listener) in listeners.into_iter().enumerate() {
        let (event_loop, handle) = EventLoop::new(listener, config.clone())?;
        let handler = handler.clone();
        let thread = std::thread::Builder::new()
            .name(format!("ws6455-loop-{i}"))
            .spawn(move || event_loop.run(handler))?;
        loops.push((handle, thread));
    }
    Ok(loops)
}
