//! [`BufferPool`]: a driver's few spare byte buffers, lent to its connections. A
//! connection borrows what it lacks before its input is decoded (the next message's
//! buffer, the output's encoding buffer) and gives them back when it goes idle, so that
//! steady traffic allocates nothing per message even though an idle connection holds no
//! buffer of its own. The pool is bounded in count and in buffer size, so what it holds
//! after a burst is small and does not grow with the number of connections. One pool
//! serves the connections of one thread (an event loop, a runtime's worker).

use crate::Connection;

/// Buffers kept at most: a turn lends and takes back one connection at a time, so a few
/// suffice; a bound keeps a burst from parking memory here.
const MAX_BUFFERS: usize = 32;

/// Largest capacity kept: larger buffers (a big message's) go back to the allocator.
const MAX_CAPACITY: usize = 4096;

/// Spare buffers for the connections of one thread: [`lend`](Self::lend) before feeding a
/// connection its input, [`take_back`](Self::take_back) when it goes idle (waiting for
/// input, its output written). Holds at most 32 buffers of at most 4 KiB.
#[derive(Debug, Default)]
pub struct BufferPool {
    buffers: Vec<Vec<u8>>,
}

impl BufferPool {
    /// Lends `core` what it lacks (see [`Connection::lend_buffers`]).
    pub fn lend(&mut self, core: &mut Connection) {
        core.lend_buffers(|| self.buffers.pop());
    }

    /// Takes back what an idle `core` holds and frees what the pool does not keep; a
    /// large buffer stays in the core for its quiet deadline (see
    /// [`Connection::release_idle_memory_into`]).
    pub fn take_back(&mut self, core: &mut Connection) {
        core.release_idle_memory_into(|buffer| self.put(buffer));
    }

    /// An empty buffer for the driver's own use (bytes read past an event, say), if the
    /// pool holds one.
    pub fn take(&mut self) -> Option<Vec<u8>> {
        self.buffers.pop()
    }

    /// Keeps `buffer`, emptied, when it is small and the pool has room; frees it
    /// otherwise.
    pub fn put(&mut self, mut buffer: Vec<u8>) {
        let capacity = buffer.capacity();
        if capacity > 0 && capacity <= MAX_CAPACITY && self.buffers.len() < MAX_BUFFERS {
            buffer.clear();
            self.buffers.push(buffer);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::Config;

    fn idle_with_output_buffer(capacity: usize) -> Connection {
        let mut core = Connection::server(Config::default());
        core.lend_buffers(|| Some(Vec::with_capacity(capacity)));
        core
    }

    #[test]
    fn the_pool_keeps_a_bounded_number_of_small_buffers() {
        let mut pool = BufferPool::default();
        let mut large = idle_with_output_buffer(MAX_CAPACITY + 1);
        pool.take_back(&mut large);
        assert!(
            pool.buffers.is_empty(),
            "a large buffer goes to the allocator"
        );
        for _ in 0..MAX_BUFFERS + 5 {
            let mut core = idle_with_output_buffer(1024);
            pool.take_back(&mut core);
        }
        assert_eq!(pool.buffers.len(), MAX_BUFFERS);
        let mut core = Connection::server(Config::default());
        pool.lend(&mut core);
        assert_eq!(
            pool.buffers.len(),
            MAX_BUFFERS - 2,
            "a message and an output buffer"
        );
        pool.take_back(&mut core);
        assert_eq!(pool.buffers.len(), MAX_BUFFERS);
        let taken = pool.take().unwrap();
        pool.put(Vec::new());
        assert_eq!(
            pool.buffers.len(),
            MAX_BUFFERS - 1,
            "an unallocated buffer is not kept"
        );
        pool.put(taken);
        assert_eq!(pool.buffers.len(), MAX_BUFFERS);
    }
}
