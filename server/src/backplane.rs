//! The Redis backplane: publishes go to Redis and come back to every other node's local
//! subscribers. Two threads of their own, never a loop thread: the publisher takes
//! publishes from a bounded queue and sends them in pipelined batches; the subscriber
//! holds a pub/sub connection subscribed to exactly the topics this node's connections
//! hold, and hands what other nodes publish to the local registry.
//!
//! Redis pub/sub is at-most-once: a publish made while Redis is unreachable (or while
//! the queue is full) reaches this node's subscribers only, and is counted as lost. An
//! outage is reported once through the server's `on_error`; both threads reconnect with
//! backoff and the subscriber subscribes again to every topic held.
//!
//! A message on a channel is `1` (format), the publishing node's 8-byte id, `t` or `b`
//! (text or binary) and the payload; a node skips its own messages, since it delivered
//! them locally when they were published.

use std::collections::HashSet;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::mpsc::{Receiver, SyncSender, TrySendError};
use std::sync::{Arc, Mutex, Weak};
use std::time::{Duration, Instant};

use ws6455_mio::Outgoing;

use crate::server::ServerInner;
use ws6455_core::frame::OpCode;

use crate::topics::{encode_message, Backplane};

/// Publishes waiting for the publisher thread (and at most [`QUEUE_BYTES`] of them);
/// past it they are lost (and counted) rather than held while Redis is slow or away.
const QUEUE: usize = 8192;
/// PUBLISH commands sent in one pipeline.
const BATCH: usize = 256;
/// How long the subscriber waits for a message before looking at topic changes: the
/// delay before a new topic is subscribed in Redis.
const POLL: Duration = Duration::from_millis(20);
/// How long a Redis command (SUBSCRIBE, PING, a pipeline of PUBLISH) may take before the
/// connection counts as failed; and how often the subscriber proves its connection alive
/// with a PING (a silent, half-open connection would otherwise look like quiet topics).
const COMMAND_TIMEOUT: Duration = Duration::from_secs(5);
const HEALTH_CHECK_EVERY: Duration = Duration::from_secs(1);
/// Bytes of publishes waiting for the publisher thread, at most: past it (a slow or
/// unreachable Redis and large messages) they are lost and counted.
const QUEUE_BYTES: usize = 64 << 20;
const CONNECT_TIMEOUT: Duration = Duration::from_secs(2);
const FIRST_RETRY: Duration = Duration::from_millis(100);
const LAST_RETRY: Duration = Duration::from_secs(2);
const FORMAT: u8 = 1;
const HEADER: usize = 1 + 8 + 1;

/// The publish of one node, on its way to Redis.
struct Envelope {
    channel: String,
    body: Vec<u8>,
}

/// What both threads share.
struct Shared {
    node: [u8; 8],
    prefix: String,
    stop: AtomicBool,
    /// Set when the topics this node holds change (by the registry); the subscriber
    /// reconciles.
    dirty: Arc<AtomicBool>,
    /// Set while Redis is unreachable: the outage is reported once, when it is set.
    down: AtomicBool,
    /// Body bytes in the publisher's queue.
    queued_bytes: std::sync::atomic::AtomicUsize,
    server: Weak<ServerInner>,
}

impl Shared {
    fn failed(&self, what: &str, error: &redis::RedisError) {
        if self.down.swap(true, Ordering::AcqRel) {
            return;
        }
        let message = format!(
            "redis backplane unreachable ({what}: {error}): publishes reach this node only \
             until it is back; retrying"
        );
        log::warn!("{message}");
        if let Some(server) = self.server.upgrade() {
            server.report_error(503, message, "redis");
        }
    }

    fn recovered(&self) {
        if self.down.swap(false, Ordering::AcqRel) {
            log::info!("redis backplane reachable again");
        }
    }

    fn stopped(&self) -> bool {
        self.stop.load(Ordering::Acquire)
    }
}

/// Retry delays: doubling from 100 ms to 2 s.
struct Backoff {
    delay: Duration,
}

impl Backoff {
    fn new() -> Self {
        Backoff { delay: FIRST_RETRY }
    }

    fn reset(&mut self) {
        self.delay = FIRST_RETRY;
    }

    /// The next delay (and doubles the one after).
    fn next(&mut self) -> Duration {
        let delay = self.delay;
        self.delay = (self.delay * 2).min(LAST_RETRY);
        delay
    }
}

/// A server's running backplane.
pub(crate) struct Relay {
    shared: Arc<Shared>,
    outbox: Mutex<Option<SyncSender<Envelope>>>,
}

impl Relay {
    /// Checks the URL and starts both threads. Redis need not be up yet: an unreachable
    /// Redis is an outage like any other.
    pub(crate) fn start(
        config: &Backplane,
        topics_changed: Arc<AtomicBool>,
        server: Weak<ServerInner>,
    ) -> std::io::Result<Relay> {
        let client = redis::Client::open(config.redis_url.as_str()).map_err(|e| {
            std::io::Error::new(
                std::io::ErrorKind::InvalidInput,
                format!("redis URL {:?}: {e}", config.redis_url),
            )
        })?;
        let mut node = [0; 8];
        getrandom::getrandom(&mut node).map_err(|e| std::io::Error::other(e.to_string()))?;
        let shared = Arc::new(Shared {
            node,
            prefix: config.channel_prefix.clone(),
            stop: AtomicBool::new(false),
            dirty: topics_changed,
            down: AtomicBool::new(false),
            queued_bytes: std::sync::atomic::AtomicUsize::new(0),
            server,
        });
        let (outbox, inbox) = std::sync::mpsc::sync_channel(QUEUE);
        // The threads hold no strong reference to the server and end on `stop`.
        {
            let (client, shared) = (client.clone(), shared.clone());
            std::thread::Builder::new()
                .name("ws6455-redis-pub".into())
                .spawn(move || run_publisher(client, inbox, shared))?;
        }
        {
            let shared = shared.clone();
            std::thread::Builder::new()
                .name("ws6455-redis-sub".into())
                .spawn(move || run_subscriber(client, shared))?;
        }
        Ok(Relay {
            shared,
            outbox: Mutex::new(Some(outbox)),
        })
    }

    /// Queues a publish for the other nodes; false when it is lost (queue full, stopped).
    pub(crate) fn publish(&self, topic: &str, message: &Outgoing) -> bool {
        let body = encode_body(&self.shared.node, message);
        let envelope = Envelope {
            channel: format!("{}{topic}", self.shared.prefix),
            body,
        };
        let size = envelope.body.len();
        let queued = &self.shared.queued_bytes;
        if queued.fetch_add(size, Ordering::AcqRel) + size > QUEUE_BYTES {
            queued.fetch_sub(size, Ordering::AcqRel);
            return false;
        }
        let outbox = self.outbox.lock().unwrap_or_else(|e| e.into_inner());
        match outbox.as_ref().map(|tx| tx.try_send(envelope)) {
            Some(Ok(())) => true,
            Some(Err(TrySendError::Full(_) | TrySendError::Disconnected(_))) | None => {
                queued.fetch_sub(size, Ordering::AcqRel);
                false
            }
        }
    }

    /// Tells both threads to end: the publisher at once, the subscriber within [`POLL`]
    /// (or its connect timeout). Not waited for: they touch nothing once stopped.
    pub(crate) fn stop(&self) {
        self.shared.stop.store(true, Ordering::Release);
        // Dropping the sender ends the publisher's wait.
        self.outbox.lock().unwrap_or_else(|e| e.into_inner()).take();
    }
}

fn lost(shared: &Shared, count: usize) {
    if let Some(server) = shared.server.upgrade() {
        server
            .topics
            .relay_lost
            .fetch_add(count as u64, Ordering::Relaxed);
    }
}

fn run_publisher(client: redis::Client, inbox: Receiver<Envelope>, shared: Arc<Shared>) {
    let mut link: Option<redis::Connection> = None;
    let mut backoff = Backoff::new();
    let mut retry_at = Instant::now();
    while let Ok(first) = inbox.recv() {
        let mut batch = vec![first];
        while batch.len() < BATCH {
            match inbox.try_recv() {
                Ok(envelope) => batch.push(envelope),
                Err(_) => break,
            }
        }
        let taken: usize = batch.iter().map(|e| e.body.len()).sum();
        shared.queued_bytes.fetch_sub(taken, Ordering::AcqRel);
        if shared.stopped() {
            return;
        }
        // During an outage, publishes between two attempts are not tried: they would
        // wait for a connect timeout each. The subscriber seeing Redis back ends the wait.
        let down = shared.down.load(Ordering::Acquire);
        if link.is_none() && down && Instant::now() < retry_at {
            lost(&shared, batch.len());
            continue;
        }
        let mut pipe = redis::pipe();
        for envelope in &batch {
            pipe.cmd("PUBLISH")
                .arg(&envelope.channel)
                .arg(&envelope.body)
                .ignore();
        }
        // Twice: a connection that went stale while Redis restarted fails once, then a
        // new one succeeds.
        let mut result = Err(None);
        for _ in 0..2 {
            if link.is_none() {
                let connected = client
                    .get_connection_with_timeout(CONNECT_TIMEOUT)
                    .and_then(|connection| {
                        // A Redis that stops answering fails the pipeline, never hangs it.
                        connection.set_read_timeout(Some(COMMAND_TIMEOUT))?;
                        connection.set_write_timeout(Some(COMMAND_TIMEOUT))?;
                        Ok(connection)
                    });
                match connected {
                    Ok(connection) => link = Some(connection),
                    Err(error) => {
                        result = Err(Some(error));
                        break;
                    }
                }
            }
            let Some(connection) = link.as_mut() else {
                break;
            };
            match pipe.query::<()>(connection) {
                Ok(()) => {
                    result = Ok(());
                    break;
                }
                Err(error) => {
                    link = None;
                    result = Err(Some(error));
                }
            }
        }
        match result {
            Ok(()) => {
                backoff.reset();
                shared.recovered();
                if let Some(server) = shared.server.upgrade() {
                    let sent = batch.len() as u64;
                    server.topics.relayed_out.fetch_add(sent, Ordering::Relaxed);
                }
            }
            Err(error) => {
                lost(&shared, batch.len());
                if let Some(error) = error {
                    shared.failed("publishing", &error);
                }
                retry_at = Instant::now() + backoff.next();
            }
        }
    }
}

/// Sleeps `delay` in short steps, returning early when the relay stops.
fn pause(shared: &Shared, delay: Duration) {
    let until = Instant::now() + delay;
    while !shared.stopped() {
        let left = until.saturating_duration_since(Instant::now());
        if left.is_zero() {
            return;
        }
        std::thread::sleep(left.min(POLL));
    }
}

fn run_subscriber(client: redis::Client, shared: Arc<Shared>) {
    let mut backoff = Backoff::new();
    while !shared.stopped() {
        let result = client
            .get_connection_with_timeout(CONNECT_TIMEOUT)
            .and_then(|mut link| listen(&mut link, &shared, &mut backoff));
        match result {
            Ok(()) => return,
            Err(error) => {
                shared.failed("subscribing", &error);
                pause(&shared, backoff.next());
            }
        }
    }
}

/// Follows this node's topics and delivers other nodes' messages until the relay stops
/// (`Ok`) or the connection fails.
fn listen(
    link: &mut redis::Connection,
    shared: &Shared,
    backoff: &mut Backoff,
) -> redis::RedisResult<()> {
    let mut pubsub = link.as_pubsub();
    // A fresh connection holds no subscriptions: make every topic count as new.
    let mut held: HashSet<String> = HashSet::new();
    shared.dirty.store(true, Ordering::Release);
    let mut confirmed = false;
    let mut checked = Instant::now();
    loop {
        if shared.stopped() {
            return Ok(());
        }
        let dirty = shared.dirty.swap(false, Ordering::AcqRel);
        let check = !confirmed || checked.elapsed() >= HEALTH_CHECK_EVERY;
        if dirty || check {
            // Commands wait for their answer as long as Redis may take; only the wait
            // for messages is short.
            pubsub.set_read_timeout(Some(COMMAND_TIMEOUT))?;
        }
        if dirty {
            let Some(server) = shared.server.upgrade() else {
                return Ok(());
            };
            let wanted: HashSet<String> = server.topics.names().into_iter().collect();
            drop(server);
            let channels = |topics: Vec<&String>| -> Vec<String> {
                topics
                    .into_iter()
                    .map(|t| format!("{}{t}", shared.prefix))
                    .collect()
            };
            let added = channels(wanted.difference(&held).collect());
            let removed = channels(held.difference(&wanted).collect());
            if !added.is_empty() {
                pubsub.subscribe(added)?;
            }
            if !removed.is_empty() {
                pubsub.unsubscribe(removed)?;
            }
            held = wanted;
        }
        if check {
            // Reachable and answering: the outage, if any, is over.
            pubsub.ping::<redis::Value>()?;
            checked = Instant::now();
            if !confirmed {
                confirmed = true;
                backoff.reset();
                shared.recovered();
            }
        }
        if dirty || check {
            pubsub.set_read_timeout(Some(POLL))?;
        }
        match pubsub.get_message() {
            Ok(message) => {
                let channel = message.get_channel_name();
                let Some(topic) = channel.strip_prefix(shared.prefix.as_str()) else {
                    continue;
                };
                if !deliver(shared, topic, message.get_payload_bytes()) {
                    lost(shared, 1);
                }
            }
            Err(error) if error.is_timeout() => {}
            Err(error) => return Err(error),
        }
    }
}

/// What a message on one of our channels is.
#[derive(Debug, PartialEq, Eq)]
enum Body<'a> {
    /// This node's own publish, delivered locally when it was made.
    Own,
    /// Another node's publish.
    Message(OpCode, &'a [u8]),
    /// Not ours: wrong format, unknown kind, text that is not UTF-8.
    Malformed,
}

/// A publish as it travels on its channel: format, node id, kind, payload.
fn encode_body(node: &[u8; 8], message: &Outgoing) -> Vec<u8> {
    let (kind, payload) = match message {
        Outgoing::Text(text) => (b't', text.as_bytes()),
        Outgoing::Binary(bytes) => (b'b', bytes.as_slice()),
    };
    let mut body = Vec::with_capacity(HEADER + payload.len());
    body.push(FORMAT);
    body.extend_from_slice(node);
    body.push(kind);
    body.extend_from_slice(payload);
    body
}

fn decode_body<'a>(node: &[u8; 8], body: &'a [u8]) -> Body<'a> {
    if body.len() < HEADER || body[0] != FORMAT {
        return Body::Malformed;
    }
    if body[1..9] == node[..] {
        return Body::Own;
    }
    let payload = &body[HEADER..];
    match body[9] {
        b't' if std::str::from_utf8(payload).is_ok() => Body::Message(OpCode::Text, payload),
        b'b' => Body::Message(OpCode::Binary, payload),
        _ => Body::Malformed,
    }
}

/// Hands another node's publish to the local subscribers; false for a malformed one.
fn deliver(shared: &Shared, topic: &str, body: &[u8]) -> bool {
    let (opcode, payload) = match decode_body(&shared.node, body) {
        Body::Own => return true,
        Body::Malformed => {
            log::debug!("redis backplane: malformed message on topic {topic:?}: dropped");
            return false;
        }
        Body::Message(opcode, payload) => (opcode, payload),
    };
    let Some(server) = shared.server.upgrade() else {
        return true;
    };
    server.topics.relayed_in.fetch_add(1, Ordering::Relaxed);
    server
        .topics
        .deliver_local(topic, &encode_message(opcode, payload), None);
    true
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    const US: [u8; 8] = *b"our-node";
    const THEM: [u8; 8] = *b"elsewher";

    proptest! {
        #[test]
        fn any_publish_of_another_node_decodes_as_it_was_sent(
            text in ".*",
            bytes in proptest::collection::vec(any::<u8>(), 0..512),
        ) {
            let body = encode_body(&THEM, &Outgoing::Text(text.clone()));
            prop_assert_eq!(decode_body(&US, &body), Body::Message(OpCode::Text, text.as_bytes()));
            prop_assert_eq!(decode_body(&THEM, &body), Body::Own);
            let body = encode_body(&THEM, &Outgoing::Binary(bytes.clone()));
            prop_assert_eq!(decode_body(&US, &body), Body::Message(OpCode::Binary, &bytes[..]));
        }

        #[test]
        fn arbitrary_bytes_on_a_channel_never_panic(body in proptest::collection::vec(any::<u8>(), 0..64)) {
            let _ = decode_body(&US, &body);
        }
    }

    #[test]
    fn what_is_not_ours_is_malformed() {
        let text = encode_body(&THEM, &Outgoing::Text("hi".into()));
        assert_eq!(decode_body(&US, &text[..HEADER - 1]), Body::Malformed);
        let mut other_format = text.clone();
        other_format[0] = 2;
        assert_eq!(decode_body(&US, &other_format), Body::Malformed);
        let mut other_kind = text.clone();
        other_kind[9] = b'x';
        assert_eq!(decode_body(&US, &other_kind), Body::Malformed);
        let mut not_utf8 = text;
        not_utf8.push(0xff);
        assert_eq!(decode_body(&US, &not_utf8), Body::Malformed);
        assert_eq!(decode_body(&US, b"hello from redis-cli"), Body::Malformed);
    }

    #[test]
    fn retries_double_up_to_two_seconds_and_start_over_after_success() {
        let mut backoff = Backoff::new();
        let delays: Vec<u64> = (0..7).map(|_| backoff.next().as_millis() as u64).collect();
        assert_eq!(delays, [100, 200, 400, 800, 1600, 2000, 2000]);
        backoff.reset();
        assert_eq!(backoff.next(), FIRST_RETRY);
    }
}
