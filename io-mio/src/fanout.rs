//! One encoded frame for many connections of a loop, in one command: what a topic's
//! publish asks of each loop. The frame is encoded once by the caller and every target
//! gets the same bytes (server frames are unmasked); each target that is over its
//! outgoing cap is skipped or closed, so a slow reader never holds the others back.

use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;
use std::time::Instant;

use ws6455_core::{CloseCode, ConnectionState};

use crate::conn::Phase;
use crate::event_loop::Running;
use crate::handle::{over_cap, ConnShared};
use crate::handler::Handler;

/// What a fan-out does with a target whose outgoing buffer is at its cap
/// ([`LoopConfig::max_buffered`](crate::LoopConfig::max_buffered)).
#[derive(Clone, Copy, Debug, PartialEq, Eq, Default)]
pub enum SlowSubscriber {
    /// The message is not sent to that target (counted in [`FanOutTally::skipped`]); the
    /// connection goes on and gets later messages once it has caught up.
    #[default]
    Skip,
    /// The target is closed with 1008 (policy violation), counted in
    /// [`FanOutTally::closed`]: for applications where a gap in the stream is worse than
    /// a reconnect.
    Close,
}

/// Counts of what fan-outs did, added to by the loops (relaxed atomics: totals, not a
/// synchronisation point).
#[derive(Debug, Default)]
pub struct FanOutTally {
    /// Frames written into a target's buffer.
    pub delivered: AtomicU64,
    /// Frames not sent to a target over its cap ([`SlowSubscriber::Skip`]).
    pub skipped: AtomicU64,
    /// Targets closed for being over their cap ([`SlowSubscriber::Close`]).
    pub closed: AtomicU64,
}

impl FanOutTally {
    fn add(&self, delivered: u64, skipped: u64, closed: u64) {
        for (counter, n) in [
            (&self.delivered, delivered),
            (&self.skipped, skipped),
            (&self.closed, closed),
        ] {
            if n > 0 {
                counter.fetch_add(n, Ordering::Relaxed);
            }
        }
    }
}

/// A frame for many connections of one loop ([`LoopHandle::fan_out`](crate::LoopHandle::fan_out)).
#[derive(Debug)]
pub struct FanOut {
    /// The connections to send to. Those of other loops, and those no longer open, are
    /// passed over.
    pub targets: Arc<Vec<Arc<ConnShared>>>,
    /// One whole encoded server frame (see [`ws6455_core::encoder::encode_frame`]).
    pub frame: Arc<[u8]>,
    /// A connection id to leave out (the publisher's own).
    pub except: Option<u64>,
    /// What to do with a target over its outgoing cap.
    pub when_full: SlowSubscriber,
    /// Where the loop adds what it did.
    pub tally: Arc<FanOutTally>,
}

impl<H: Handler> Running<H> {
    /// Writes the frame into every open target's buffer, after what was sent to it
    /// before; the writes wait for the end of the turn's commands (one per target).
    pub(crate) fn fan_out(&mut self, fan: FanOut, now: Instant) {
        let (mut delivered, mut skipped, mut closed) = (0, 0, 0);
        for target in fan.targets.iter() {
            if Some(target.id()) == fan.except {
                continue;
            }
            let Some(key) = self.live(target) else {
                continue;
            };
            let Phase::Open { core, .. } = &mut self.conns[key].phase else {
                continue;
            };
            if core.state() != ConnectionState::Open {
                continue;
            }
            if over_cap(target.buffered_amount(), target.max_buffered()) {
                match fan.when_full {
                    SlowSubscriber::Skip => skipped += 1,
                    SlowSubscriber::Close => {
                        let _ = core.close_with_standard_code(
                            now,
                            CloseCode::POLICY_VIOLATION,
                            "too slow to keep up with its subscriptions",
                        );
                        closed += 1;
                        self.defer_update(key);
                    }
                }
                continue;
            }
            if core.send_encoded(&fan.frame).is_ok() {
                delivered += 1;
            }
            self.defer_update(key);
        }
        fan.tally.add(delivered, skipped, closed);
    }
}
