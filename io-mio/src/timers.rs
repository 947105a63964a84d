//! The loop's wake-ups: one min-heap of (deadline, connection) entries, 16 bytes each,
//! since an idle server holds one or two per connection. An entry is never removed
//! early: when a connection's deadline moves, the old entry stays until it comes due and
//! is then recognised as stale by the connection's tag (its slab key may have been
//! reused by then).

use std::cmp::Reverse;
use std::collections::BinaryHeap;
use std::num::NonZeroU64;
use std::time::{Duration, Instant};

/// A deadline, in nanoseconds since the heap's epoch: 584 years of range, exact (the
/// epoch itself counts as its first nanosecond). Never zero, so that a connection's
/// `Option<Deadline>` takes 8 bytes.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord)]
pub(crate) struct Deadline(NonZeroU64);

#[derive(Debug)]
pub(crate) struct Timers {
    epoch: Instant,
    /// (deadline, slab key, tag): the tag is the low 32 bits of the connection's id, so
    /// an entry left by a connection whose key another one took is told apart.
    heap: BinaryHeap<Reverse<(Deadline, u32, u32)>>,
}

impl Timers {
    pub(crate) fn new(now: Instant) -> Self {
        Timers {
            epoch: now,
            heap: BinaryHeap::new(),
        }
    }

    /// `at` as a deadline of this heap (the epoch, for an instant before it).
    pub(crate) fn deadline(&self, at: Instant) -> Deadline {
        let nanos = at.saturating_duration_since(self.epoch).as_nanos();
        let nanos = u64::try_from(nanos).unwrap_or(u64::MAX);
        Deadline(NonZeroU64::new(nanos).unwrap_or(NonZeroU64::MIN))
    }

    fn instant(&self, deadline: Deadline) -> Instant {
        self.epoch + Duration::from_nanos(deadline.0.get())
    }

    /// Schedules a wake-up for the connection at `key` with id `id`.
    pub(crate) fn push(&mut self, at: Deadline, key: usize, id: u64) {
        // Slab keys are bounded by the descriptors a process can hold.
        let key = u32::try_from(key).expect("slab keys fit in 32 bits");
        self.heap.push(Reverse((at, key, tag(id))));
    }

    /// The earliest wake-up, if any.
    pub(crate) fn next(&self) -> Option<Instant> {
        self.heap
            .peek()
            .map(|Reverse((at, _, _))| self.instant(*at))
    }

    /// Takes the earliest entry due at `now`: its deadline, key and tag.
    pub(crate) fn pop_due(&mut self, now: Instant) -> Option<(Deadline, usize, u32)> {
        let now = self.deadline(now);
        let Reverse((at, key, tag)) = *self.heap.peek()?;
        if at > now {
            return None;
        }
        self.heap.pop();
        Some((at, key as usize, tag))
    }
}

/// What an entry keeps of a connection's id.
pub(crate) fn tag(id: u64) -> u32 {
    id as u32
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn entries_come_due_in_order_and_keep_their_key_and_tag() {
        let t0 = Instant::now();
        let mut timers = Timers::new(t0);
        let ms = Duration::from_millis;
        timers.push(timers.deadline(t0 + ms(30)), 3, (1 << 32) + 7);
        timers.push(timers.deadline(t0 + ms(10)), 1, 5);
        timers.push(timers.deadline(t0 + ms(20)), 2, 6);
        assert_eq!(timers.next(), Some(t0 + ms(10)), "exact, not rounded");
        assert_eq!(timers.pop_due(t0 + ms(5)), None);
        let due = timers.pop_due(t0 + ms(25));
        assert_eq!(due, Some((timers.deadline(t0 + ms(10)), 1, 5)));
        assert_eq!(timers.pop_due(t0 + ms(25)).map(|(_, k, _)| k), Some(2));
        assert_eq!(timers.pop_due(t0 + ms(25)), None);
        let (_, key, tag) = timers.pop_due(t0 + ms(30)).unwrap();
        assert_eq!((key, tag), (3, 7));
        assert_eq!(timers.next(), None);
        // An instant before the epoch is due at once.
        let early = t0.checked_sub(ms(1)).unwrap_or(t0);
        timers.push(timers.deadline(early), 0, 0);
        assert!(timers.pop_due(t0).is_some());
    }
}
