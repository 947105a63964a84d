//! Topics on one node: which connections hold which named topics, and a publish that
//! encodes its frame once and hands each loop one fan-out command for its subscribers.
//! The registry is the one record of subscriptions: the loops read its per-loop lists
//! (shared, copied only when a subscription changes while a publish still holds them),
//! and the Redis backplane asks it which topics this node holds.

use std::collections::HashMap;
use std::fmt;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, Mutex, MutexGuard};

use ws6455_core::encoder::encode_frame;
use ws6455_core::frame::OpCode;
use ws6455_mio::{ConnShared, FanOut, FanOutTally, LoopHandle, Outgoing, SlowSubscriber, Status};

/// The longest topic name, in bytes (names travel in Redis channel names too).
pub const MAX_TOPIC_LEN: usize = 256;

/// Topic settings ([`ServerOptions::topics`](crate::ServerOptions::topics)).
#[derive(Clone, Debug)]
pub struct TopicOptions {
    /// What a publish does with a subscriber whose outgoing buffer is at
    /// `limits.max_buffered`: skip it for this message (the default) or close it with
    /// 1008. Either way the other subscribers are not held back; both are counted in
    /// [`TopicStats`].
    pub slow_subscriber: SlowSubscriber,
    /// The most topics one connection may hold (default 1,024), so that a client that
    /// asks the application for subscriptions cannot grow the registry without bound.
    pub max_per_connection: usize,
    /// Deliver publishes to the subscribers of other nodes too, through Redis pub/sub
    /// (see [`Backplane`]). `None` (the default): topics are local to this server.
    pub backplane: Option<Backplane>,
}

impl Default for TopicOptions {
    fn default() -> Self {
        TopicOptions {
            slow_subscriber: SlowSubscriber::Skip,
            max_per_connection: 1024,
            backplane: None,
        }
    }
}

/// A Redis server shared by the nodes of one application.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Backplane {
    /// `redis://[user:password@]host[:port][/db]`. The database number does not matter:
    /// Redis pub/sub channels are global to the server.
    pub redis_url: String,
    /// Prepended to every topic to make its Redis channel (default `ws6455:`), so that
    /// applications sharing a Redis server do not hear each other.
    pub channel_prefix: String,
}

impl Backplane {
    /// The backplane on the Redis server at `url`, with the default channel prefix.
    pub fn redis(url: impl Into<String>) -> Self {
        Backplane {
            redis_url: url.into(),
            channel_prefix: "ws6455:".to_owned(),
        }
    }
}

/// Why a subscription was refused. Nothing changed.
#[derive(Clone, Debug, PartialEq, Eq)]
#[non_exhaustive]
pub enum TopicError {
    /// The connection is not open (closing or closed connections get no more messages).
    NotOpen(Status),
    /// The name is empty or longer than [`MAX_TOPIC_LEN`] bytes.
    InvalidName {
        /// The length of the name given.
        len: usize,
    },
    /// The connection already holds [`TopicOptions::max_per_connection`] topics.
    TooMany {
        /// The limit.
        limit: usize,
    },
}

impl fmt::Display for TopicError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            TopicError::NotOpen(status) => {
                write!(f, "connection is not open (status {status:?})")
            }
            TopicError::InvalidName { len } => write!(
                f,
                "a topic name is 1 to {MAX_TOPIC_LEN} bytes long, this one has {len}"
            ),
            TopicError::TooMany { limit } => {
                write!(f, "the connection already holds its {limit} topics")
            }
        }
    }
}

impl std::error::Error for TopicError {}

/// Counts since the server started ([`WebSocketServer::topic_stats`](crate::WebSocketServer::topic_stats)).
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
#[non_exhaustive]
pub struct TopicStats {
    /// Publishes made on this node.
    pub published: u64,
    /// Messages written to local subscribers (one per subscriber per publish).
    pub delivered: u64,
    /// Messages a slow subscriber missed ([`SlowSubscriber::Skip`]).
    pub skipped: u64,
    /// Subscribers closed for being slow ([`SlowSubscriber::Close`]).
    pub closed: u64,
    /// Publishes handed to Redis.
    pub relayed_out: u64,
    /// Publishes of other nodes received from Redis.
    pub relayed_in: u64,
    /// Publishes not relayed: Redis unreachable or its queue full (pub/sub is
    /// at-most-once), or a malformed message on one of our channels.
    pub relay_lost: u64,
}

/// One topic: its subscribers, per loop.
struct Topic {
    per_loop: Vec<Arc<Vec<Arc<ConnShared>>>>,
    count: usize,
}

#[derive(Default)]
struct Registry {
    topics: HashMap<String, Topic>,
    /// Each connection's topics, to remove them when it closes.
    by_conn: HashMap<u64, Vec<String>>,
}

/// The subscriber a registry call is about: the connection and the loop it lives on.
pub(crate) struct Subscriber<'a> {
    pub(crate) shared: &'a Arc<ConnShared>,
    pub(crate) loop_index: usize,
}

pub(crate) struct Topics {
    registry: Mutex<Registry>,
    loops: Vec<LoopHandle>,
    options: TopicOptions,
    tally: Arc<FanOutTally>,
    published: AtomicU64,
    pub(crate) relayed_out: AtomicU64,
    pub(crate) relayed_in: AtomicU64,
    pub(crate) relay_lost: AtomicU64,
    /// Set when this node's first subscriber to a topic arrives or its last one leaves:
    /// the backplane then changes its Redis subscriptions.
    pub(crate) changed: Arc<AtomicBool>,
}

/// A topic name is 1 to [`MAX_TOPIC_LEN`] bytes.
pub(crate) fn check_name(topic: &str) -> Result<(), TopicError> {
    match topic.len() {
        1..=MAX_TOPIC_LEN => Ok(()),
        len => Err(TopicError::InvalidName { len }),
    }
}

/// One unmasked server frame for a whole message: the same bytes for every connection.
pub(crate) fn server_frame(message: &Outgoing) -> Arc<[u8]> {
    match message {
        Outgoing::Text(text) => encode_message(OpCode::Text, text.as_bytes()),
        Outgoing::Binary(bytes) => encode_message(OpCode::Binary, bytes),
    }
}

/// [`server_frame`] from an opcode and a payload already checked for it.
pub(crate) fn encode_message(opcode: OpCode, payload: &[u8]) -> Arc<[u8]> {
    let mut encoded = Vec::with_capacity(payload.len() + 10);
    encode_frame(&mut encoded, true, opcode, payload, None);
    encoded.into()
}

impl Topics {
    pub(crate) fn new(loops: Vec<LoopHandle>, options: TopicOptions) -> Self {
        Topics {
            registry: Mutex::new(Registry::default()),
            loops,
            options,
            tally: Arc::new(FanOutTally::default()),
            published: AtomicU64::new(0),
            relayed_out: AtomicU64::new(0),
            relayed_in: AtomicU64::new(0),
            relay_lost: AtomicU64::new(0),
            changed: Arc::new(AtomicBool::new(false)),
        }
    }

    fn lock(&self) -> MutexGuard<'_, Registry> {
        self.registry.lock().unwrap_or_else(|e| e.into_inner())
    }

    fn changed(&self) {
        self.changed.store(true, Ordering::Release);
    }

    /// Adds a subscription; `Ok(false)` when the connection already held the topic.
    pub(crate) fn subscribe(&self, who: Subscriber<'_>, topic: &str) -> Result<bool, TopicError> {
        check_name(topic)?;
        let mut registry = self.lock();
        // Under the lock: the loop marks a connection Closed before its `on_terminate`
        // takes the lock to remove its topics, so a subscription either is refused here
        // or is there to be removed.
        match who.shared.status() {
            Status::Connected => {}
            other => return Err(TopicError::NotOpen(other)),
        }
        let held = registry.by_conn.entry(who.shared.id()).or_default();
        if held.iter().any(|t| t == topic) {
            return Ok(false);
        }
        if held.len() >= self.options.max_per_connection {
            return Err(TopicError::TooMany {
                limit: self.options.max_per_connection,
            });
        }
        held.push(topic.to_owned());
        let loops = self.loops.len();
        let entry = registry
            .topics
            .entry(topic.to_owned())
            .or_insert_with(|| Topic {
                per_loop: (0..loops).map(|_| Arc::default()).collect(),
                count: 0,
            });
        Arc::make_mut(&mut entry.per_loop[who.loop_index]).push(who.shared.clone());
        entry.count += 1;
        let first = entry.count == 1;
        drop(registry);
        if first {
            self.changed();
        }
        Ok(true)
    }

    /// Removes a subscription; false when the connection did not hold the topic.
    pub(crate) fn unsubscribe(&self, who: Subscriber<'_>, topic: &str) -> bool {
        let mut registry = self.lock();
        let id = who.shared.id();
        let Some(held) = registry.by_conn.get_mut(&id) else {
            return false;
        };
        let Some(position) = held.iter().position(|t| t == topic) else {
            return false;
        };
        held.swap_remove(position);
        if held.is_empty() {
            registry.by_conn.remove(&id);
        }
        let last = Self::leave(&mut registry, id, who.loop_index, topic);
        drop(registry);
        if last {
            self.changed();
        }
        true
    }

    /// Takes the connection out of a topic's list; true when it was the last subscriber.
    fn leave(registry: &mut Registry, id: u64, loop_index: usize, topic: &str) -> bool {
        let Some(entry) = registry.topics.get_mut(topic) else {
            return false;
        };
        let list = Arc::make_mut(&mut entry.per_loop[loop_index]);
        if let Some(position) = list.iter().position(|s| s.id() == id) {
            list.swap_remove(position);
            entry.count -= 1;
        }
        if entry.count == 0 {
            registry.topics.remove(topic);
            return true;
        }
        false
    }

    /// Removes every subscription of a connection that closed.
    pub(crate) fn remove_connection(&self, id: u64, loop_index: usize) {
        let mut registry = self.lock();
        let Some(held) = registry.by_conn.remove(&id) else {
            return;
        };
        let mut emptied = false;
        for topic in &held {
            emptied |= Self::leave(&mut registry, id, loop_index, topic);
        }
        drop(registry);
        if emptied {
            self.changed();
        }
    }

    /// The topics a connection holds.
    pub(crate) fn topics_of(&self, id: u64) -> Vec<String> {
        self.lock().by_conn.get(&id).cloned().unwrap_or_default()
    }

    /// Does the connection hold the topic?
    pub(crate) fn holds(&self, id: u64, topic: &str) -> bool {
        self.lock()
            .by_conn
            .get(&id)
            .is_some_and(|held| held.iter().any(|t| t == topic))
    }

    /// How many local connections hold the topic.
    pub(crate) fn subscriber_count(&self, topic: &str) -> usize {
        self.lock().topics.get(topic).map_or(0, |t| t.count)
    }

    /// Every topic this node's connections hold.
    pub(crate) fn names(&self) -> Vec<String> {
        self.lock().topics.keys().cloned().collect()
    }

    /// Delivers a frame to this node's subscribers of `topic` but `except`; returns how
    /// many it was queued for. One fan-out command per loop that has subscribers.
    pub(crate) fn deliver_local(
        &self,
        topic: &str,
        frame: &Arc<[u8]>,
        except: Option<u64>,
    ) -> usize {
        let registry = self.lock();
        let Some(entry) = registry.topics.get(topic) else {
            return 0;
        };
        let mut queued = entry.count;
        if let Some(id) = except {
            let holds = registry
                .by_conn
                .get(&id)
                .is_some_and(|held| held.iter().any(|t| t == topic));
            queued -= usize::from(holds);
        }
        for (handle, targets) in self.loops.iter().zip(&entry.per_loop) {
            if targets.is_empty() {
                continue;
            }
            handle.fan_out(FanOut {
                targets: targets.clone(),
                frame: frame.clone(),
                except,
                when_full: self.options.slow_subscriber,
                tally: self.tally.clone(),
            });
        }
        queued
    }

    /// Counts a publish made on this node.
    pub(crate) fn count_publish(&self) {
        self.published.fetch_add(1, Ordering::Relaxed);
    }

    pub(crate) fn stats(&self) -> TopicStats {
        let load = |counter: &AtomicU64| counter.load(Ordering::Relaxed);
        TopicStats {
            published: load(&self.published),
            delivered: load(&self.tally.delivered),
            skipped: load(&self.tally.skipped),
            closed: load(&self.tally.closed),
            relayed_out: load(&self.relayed_out),
            relayed_in: load(&self.relayed_in),
            relay_lost: load(&self.relay_lost),
        }
    }
}
