//! Steady traffic of small messages allocates nothing per message: the streams polled on
//! a thread borrow their buffers from its pool and give them back when idle. Counted with
//! a global allocator, so this file holds this one test (no other test's threads).

// A counting allocator cannot be written without `unsafe`: it is test code, and each
// block only forwards to the system allocator.
#![allow(unsafe_code)]

use std::alloc::{GlobalAlloc, Layout, System};
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::Duration;

use futures_util::{SinkExt, StreamExt};
use tokio::io::DuplexStream;
use ws6455_core::{Connection, FixedRandom};
use ws6455_tokio::{Config, Message, WebSocketStream};

struct Counting;

static ALLOCATIONS: AtomicUsize = AtomicUsize::new(0);

// SAFETY: every call is passed to the system allocator unchanged; the counter is the
// only addition.
unsafe impl GlobalAlloc for Counting {
    unsafe fn alloc(&self, layout: Layout) -> *mut u8 {
        ALLOCATIONS.fetch_add(1, Ordering::Relaxed);
        // SAFETY: the caller's guarantees for `layout` are passed on.
        unsafe { System.alloc(layout) }
    }
    unsafe fn dealloc(&self, ptr: *mut u8, layout: Layout) {
        // SAFETY: `ptr` came from `System.alloc` with this `layout`.
        unsafe { System.dealloc(ptr, layout) }
    }
    unsafe fn realloc(&self, ptr: *mut u8, layout: Layout, new_size: usize) -> *mut u8 {
        ALLOCATIONS.fetch_add(1, Ordering::Relaxed);
        // SAFETY: as for `dealloc`, and `new_size` is the caller's.
        unsafe { System.realloc(ptr, layout, new_size) }
    }
}

#[global_allocator]
static GLOBAL: Counting = Counting;

#[test]
fn an_echo_of_small_messages_allocates_nothing_per_message() {
    let runtime = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .unwrap();
    runtime.block_on(async {
        let (a, b) = tokio::io::duplex(64 << 10);
        let config = || Config {
            ping_interval: None,
            ..Config::default()
        };
        let mut server = WebSocketStream::from_connection(a, Connection::server(config()), 1 << 20);
        let random = Box::new(FixedRandom::new(&[1, 2, 3, 4]));
        let mut client =
            WebSocketStream::from_connection(b, Connection::client(config(), random), 1 << 20);
        tokio::spawn(async move {
            while let Some(Ok(message)) = server.next().await {
                if server.send(message).await.is_err() {
                    break;
                }
            }
        });
        // The same buffer goes around: the test itself allocates nothing per message.
        let message = round_trips(&mut client, Message::Binary(vec![7; 64]), 100).await;
        let before = ALLOCATIONS.load(Ordering::Relaxed);
        const ROUNDS: usize = 2000;
        let message = round_trips(&mut client, message, ROUNDS).await;
        let allocations = ALLOCATIONS.load(Ordering::Relaxed) - before;
        assert_eq!(message, Message::Binary(vec![7; 64]));
        assert!(
            allocations < ROUNDS / 20,
            "{allocations} allocations in {ROUNDS} round trips (4 messages decoded or encoded each)"
        );
    });
}

/// Sends `message`, waits for its echo, sends that: `n` times; returns the last echo.
async fn round_trips(
    client: &mut WebSocketStream<DuplexStream>,
    mut message: Message,
    n: usize,
) -> Message {
    for _ in 0..n {
        client.send(message).await.unwrap();
        message = tokio::time::timeout(Duration::from_secs(10), client.next())
            .await
            .expect("in time")
            .unwrap()
            .unwrap();
    }
    message
}
