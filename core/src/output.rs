//! The bytes a connection has for its peer, in order: frames encoded into a buffer of our
//! own, and large payloads the application handed over, queued as they are (no copy).

use std::collections::VecDeque;
use std::io::IoSlice;

/// A buffer whose capacity is at most this is kept, cleared, once drained, so that steady
/// small traffic allocates nothing; a larger one is freed, so that a burst does not leave
/// an idle connection holding its peak.
const KEEP_CAPACITY: usize = 4096;

/// The capacity an encoding buffer starts with (within [`KEEP_CAPACITY`]).
const FIRST_CAPACITY: usize = 1024;

/// Unwritten output: a queue of byte chunks, the front one partly written. The front
/// chunk lives inline, so that the common case (frames encoded into one buffer) needs no
/// allocation for the queue itself.
#[derive(Debug, Default)]
pub(crate) struct OutputQueue {
    /// The front chunk; when nothing waits, empty (an encoding buffer kept for reuse, or
    /// no allocation at all).
    head: Vec<u8>,
    /// The chunks after it, in order. Boxed: every connection, idle ones included,
    /// carries one pointer for it instead of a `VecDeque` (24 bytes less); made with
    /// the second chunk (large or piled-up output) and kept, maybe empty, until
    /// [`release`](Self::release).
    #[allow(clippy::box_collection)] // the box is the point: a thin pointer
    rest: Option<Box<VecDeque<Vec<u8>>>>,
    /// How much of `head` the transport took.
    sent: usize,
    /// The back chunk (the last of `rest`, or `head`) is an encoding buffer that frames
    /// may be appended to (a handed-over payload is not: its capacity belongs to the
    /// application's allocation).
    back_open: bool,
    /// Unwritten bytes in all chunks.
    len: usize,
}

impl OutputQueue {
    /// The buffer to append frames to: the open back chunk, or a new one.
    pub(crate) fn encode_buffer(&mut self) -> EncodeGuard<'_> {
        if !self.back_open {
            if self.len == 0 {
                // Nothing waits, so `rest` is empty and `head` is free.
                self.head.clear();
                if self.head.capacity() == 0 {
                    // Room for a burst of small frames (16 echoes of 64 B need 1 KiB):
                    // growing from empty cost four reallocations per wake-up.
                    self.head.reserve_exact(FIRST_CAPACITY);
                }
            } else {
                self.push_rest(Vec::with_capacity(FIRST_CAPACITY));
            }
            self.back_open = true;
        }
        let Self {
            head, rest, len, ..
        } = self;
        let buf = rest.as_mut().and_then(|r| r.back_mut()).unwrap_or(head);
        let before = buf.len();
        EncodeGuard { before, buf, len }
    }

    /// Queues `payload` as its own chunk, after everything queued so far.
    pub(crate) fn push_owned(&mut self, payload: Vec<u8>) {
        if payload.is_empty() {
            return;
        }
        self.len += payload.len();
        let back = (self.rest.as_mut())
            .and_then(|r| r.back_mut())
            .unwrap_or(&mut self.head);
        if self.back_open && back.is_empty() {
            // An open back chunk left empty (a kept encoding buffer) would hide what
            // follows from `front`: the payload takes its place.
            *back = payload;
        } else if self.len == payload.len() {
            // Nothing else waits: `head` is free.
            self.head = payload;
        } else {
            self.push_rest(payload);
        }
        self.back_open = false;
    }

    fn push_rest(&mut self, chunk: Vec<u8>) {
        self.rest.get_or_insert_default().push_back(chunk);
    }

    /// Unwritten bytes.
    pub(crate) fn len(&self) -> usize {
        self.len
    }

    pub(crate) fn is_empty(&self) -> bool {
        self.len == 0
    }

    /// The first unwritten bytes (the rest of the front chunk).
    pub(crate) fn front(&self) -> &[u8] {
        // Only the back chunk can be empty (an encoding buffer nothing was appended to),
        // and then nothing follows it.
        &self.head[self.sent..]
    }

    /// Fills `slices` with the unwritten chunks in order, for a vectored write; returns
    /// how many it filled.
    pub(crate) fn slices<'a>(&'a self, slices: &mut [IoSlice<'a>]) -> usize {
        let rest = self.rest.iter().flat_map(|r| r.iter().map(Vec::as_slice));
        let chunks = std::iter::once(self.front()).chain(rest);
        let mut filled = 0;
        for (slot, bytes) in slices.iter_mut().zip(chunks.filter(|c| !c.is_empty())) {
            *slot = IoSlice::new(bytes);
            filled += 1;
        }
        filled
    }

    /// Records that the transport took the first `n` unwritten bytes; every chunk that
    /// leaves the queue is handed to `drained` (payloads handed over, for reuse).
    pub(crate) fn consume(&mut self, mut n: usize, mut drained: impl FnMut(Vec<u8>)) {
        n = n.min(self.len);
        self.len -= n;
        loop {
            let left = self.head.len() - self.sent;
            if n < left {
                self.sent += n;
                return;
            }
            n -= left;
            self.sent = 0;
            match self.rest.as_mut().and_then(|r| r.pop_front()) {
                // Payloads handed over, and encoding buffers behind them, leave here.
                Some(next) => drained(std::mem::replace(&mut self.head, next)),
                None => {
                    // The last chunk: our encoding buffer is kept for the next frames
                    // when small, so that steady small traffic allocates nothing.
                    if self.back_open && self.head.capacity() <= KEEP_CAPACITY {
                        self.head.clear();
                    } else {
                        self.back_open = false;
                        let done = std::mem::take(&mut self.head);
                        if done.capacity() > 0 {
                            drained(done);
                        }
                    }
                    return;
                }
            }
        }
    }

    /// True while a drained queue still holds a buffer that [`release`](Self::release)
    /// would free.
    pub(crate) fn holds_memory(&self) -> bool {
        self.head.capacity() > 0 || self.rest.is_some()
    }

    /// Frees every buffer once nothing is left to write (for idle connections); returns
    /// the encoding buffer it kept, if any, for the caller to free or reuse.
    pub(crate) fn release(&mut self) -> Option<Vec<u8>> {
        if !self.is_empty() {
            return None;
        }
        let head = std::mem::take(self).head;
        (head.capacity() > 0).then_some(head)
    }

    /// True when nothing waits and no encoding buffer is kept: one given now would be
    /// used for the next frames.
    pub(crate) fn wants_buffer(&self) -> bool {
        self.is_empty() && self.head.capacity() == 0
    }

    /// Takes an empty buffer for the next frames, when it [`wants_buffer`](Self::wants_buffer)
    /// (dropped otherwise).
    pub(crate) fn provide(&mut self, mut buffer: Vec<u8>) {
        if self.wants_buffer() {
            buffer.clear();
            self.head = buffer;
            self.back_open = true;
        }
    }
}

/// The open encoding buffer, lent out; keeps the queue's byte count right when dropped.
pub(crate) struct EncodeGuard<'a> {
    buf: &'a mut Vec<u8>,
    before: usize,
    len: &'a mut usize,
}

impl std::ops::Deref for EncodeGuard<'_> {
    type Target = Vec<u8>;
    fn deref(&self) -> &Vec<u8> {
        self.buf
    }
}

impl std::ops::DerefMut for EncodeGuard<'_> {
    fn deref_mut(&mut self) -> &mut Vec<u8> {
        self.buf
    }
}

impl Drop for EncodeGuard<'_> {
    fn drop(&mut self) {
        // Frames are only ever appended.
        *self.len += self.buf.len() - self.before;
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    #[derive(Debug, Clone)]
    enum Op {
        Encode(Vec<u8>),
        Owned(Vec<u8>),
        Write(usize),
        WriteVectored(usize, usize),
    }

    fn op() -> impl Strategy<Value = Op> {
        prop_oneof![
            proptest::collection::vec(any::<u8>(), 0..300).prop_map(Op::Encode),
            proptest::collection::vec(any::<u8>(), 0..6000).prop_map(Op::Owned),
            (0usize..7000).prop_map(Op::Write),
            (1usize..5, 0usize..9000).prop_map(|(n, b)| Op::WriteVectored(n, b)),
        ]
    }

    proptest! {
        // Whatever is queued comes out once, in order, however the writes split it.
        #[test]
        fn bytes_come_out_in_order(ops in proptest::collection::vec(op(), 0..60)) {
            let mut queue = OutputQueue::default();
            let mut expected = Vec::new();
            let mut written = Vec::new();
            for op in ops {
                match op {
                    Op::Encode(bytes) => {
                        queue.encode_buffer().extend_from_slice(&bytes);
                        expected.extend_from_slice(&bytes);
                    }
                    Op::Owned(bytes) => {
                        expected.extend_from_slice(&bytes);
                        queue.push_owned(bytes);
                    }
                    Op::Write(n) => {
                        let front = queue.front();
                        let n = n.min(front.len());
                        written.extend_from_slice(&front[..n]);
                        queue.consume(n, drop);
                    }
                    Op::WriteVectored(count, budget) => {
                        let mut slices = [IoSlice::new(&[]); 4];
                        let filled = queue.slices(&mut slices[..count]);
                        let mut left = budget;
                        let mut taken = 0;
                        for slice in &slices[..filled] {
                            let n = left.min(slice.len());
                            written.extend_from_slice(&slice[..n]);
                            taken += n;
                            left -= n;
                        }
                        queue.consume(taken, drop);
                    }
                }
                prop_assert_eq!(queue.len(), expected.len() - written.len());
                prop_assert_eq!(queue.is_empty(), queue.front().is_empty());
            }
            while !queue.is_empty() {
                let front = queue.front().to_vec();
                written.extend_from_slice(&front);
                queue.consume(front.len(), drop);
            }
            prop_assert_eq!(written, expected);
        }
    }

    #[test]
    fn a_drained_queue_keeps_one_small_buffer_and_release_frees_it() {
        let mut queue = OutputQueue::default();
        queue.encode_buffer().extend_from_slice(b"abc");
        queue.push_owned(vec![7; 10_000]);
        queue.encode_buffer().extend_from_slice(b"de");
        assert_eq!(queue.len(), 10_005);
        queue.consume(10_005, drop);
        assert!(queue.is_empty());
        assert!(queue.rest.as_ref().is_none_or(|r| r.is_empty()));
        let kept = queue.head.capacity();
        assert!(
            kept > 0 && kept <= KEEP_CAPACITY,
            "the small encoding buffer is kept"
        );
        queue.encode_buffer().extend_from_slice(b"f");
        let rest = queue.rest.as_ref().map_or(0, |r| r.len());
        assert_eq!((rest, queue.front()), (0, &b"f"[..]));
        assert_eq!(queue.head.capacity(), kept, "and reused");
        queue.consume(1, drop);
        queue.release();
        assert!(!queue.holds_memory(), "release frees everything");
    }
}
