//! Decoding masked client frames (what a server does with every byte it receives):
//! ws6455 against the decoders of tungstenite 0.30 and fastwebsockets 0.10, with memcpy
//! of the same bytes as the in-run baseline. Compare the lines of one group as ratios.
//!
//! The peers read from a stream, so every decoder here is fed the same way: a stream
//! that replays the same frames forever (one copy per read, as a socket read would make)
//! and `count` messages taken per iteration. For ws6455 that is what the event loop
//! does: read into a 256 KiB buffer, hand the bytes to `Connection::receive`.
//! Every decoder unmasks the payload; binary messages, so no UTF-8 check anywhere.

use std::io::{self, Read, Write};
use std::pin::Pin;
use std::task::{Context, Poll};

use std::time::Instant;

use criterion::{black_box, criterion_main, BenchmarkId, Criterion, Throughput};
use ws6455_benches::{frames_per_batch, masked_frames};
use ws6455_core::{Config, Connection, Event};

const SIZES: [(usize, &str); 5] = [
    (16, "16B"),
    (125, "125B"),
    (1 << 10, "1KiB"),
    (64 << 10, "64KiB"),
    (1 << 20, "1MiB"),
];

/// Serves `wire` over and over, like a peer that keeps sending the same frames.
struct Replay {
    wire: Vec<u8>,
    pos: usize,
}

impl Replay {
    fn new(wire: Vec<u8>) -> Self {
        Replay { wire, pos: 0 }
    }

    fn fill(&mut self, buf: &mut [u8]) -> usize {
        let n = buf.len().min(self.wire.len() - self.pos);
        buf[..n].copy_from_slice(&self.wire[self.pos..self.pos + n]);
        self.pos = (self.pos + n) % self.wire.len();
        n
    }
}

impl Read for Replay {
    fn read(&mut self, buf: &mut [u8]) -> io::Result<usize> {
        Ok(self.fill(buf))
    }
}

impl Write for Replay {
    fn write(&mut self, buf: &[u8]) -> io::Result<usize> {
        Ok(buf.len())
    }
    fn flush(&mut self) -> io::Result<()> {
        Ok(())
    }
}

impl tokio::io::AsyncRead for Replay {
    fn poll_read(
        self: Pin<&mut Self>,
        _: &mut Context<'_>,
        buf: &mut tokio::io::ReadBuf<'_>,
    ) -> Poll<io::Result<()>> {
        let this = self.get_mut();
        let n = this.fill(buf.initialize_unfilled());
        buf.advance(n);
        Poll::Ready(Ok(()))
    }
}

impl tokio::io::AsyncWrite for Replay {
    fn poll_write(
        self: Pin<&mut Self>,
        _: &mut Context<'_>,
        buf: &[u8],
    ) -> Poll<io::Result<usize>> {
        Poll::Ready(Ok(buf.len()))
    }
    fn poll_flush(self: Pin<&mut Self>, _: &mut Context<'_>) -> Poll<io::Result<()>> {
        Poll::Ready(Ok(()))
    }
    fn poll_shutdown(self: Pin<&mut Self>, _: &mut Context<'_>) -> Poll<io::Result<()>> {
        Poll::Ready(Ok(()))
    }
}

fn decode_peers(c: &mut Criterion) {
    let mut group = c.benchmark_group("decode_peers");
    let runtime = tokio::runtime::Builder::new_current_thread()
        .build()
        .expect("tokio runtime");
    for (size, name) in SIZES {
        let count = frames_per_batch(size);
        if size >= 1 << 20 {
            group.sample_size(20);
        }
        group.throughput(Throughput::Bytes((size * count) as u64));
        let wire = masked_frames(size, count, false);

        let mut copy = vec![0u8; wire.len()];
        group.bench_function(BenchmarkId::new("memcpy", name), |b| {
            b.iter(|| {
                copy.copy_from_slice(black_box(&wire));
                black_box(&copy);
            })
        });

        let mut stream = Replay::new(wire.clone());
        let mut server = Connection::server(Config::default());
        let mut buf = vec![0u8; 256 << 10];
        // Bytes read but not yet decoded, carried between iterations.
        let (mut start, mut end) = (0, 0);
        // The time of the last read, as a driver passes it.
        let mut now = Instant::now();
        group.bench_function(BenchmarkId::new("ws6455", name), |b| {
            b.iter(|| {
                let mut messages = 0;
                while messages < count {
                    if start == end {
                        (start, end) = (0, stream.fill(&mut buf));
                        now = Instant::now();
                    }
                    let mut rest = &buf[start..end];
                    // One message at a time, as an application that answers each would.
                    let event = server.receive(now, &mut rest).expect("valid frames");
                    start = end - rest.len();
                    if let Some(Event::Message(message)) = event {
                        let data = message.into_bytes();
                        black_box(&data);
                        server.recycle(data);
                        messages += 1;
                    }
                }
            })
        });

        let config = tungstenite::protocol::WebSocketConfig::default()
            .max_frame_size(None)
            .max_message_size(None);
        let mut ws = tungstenite::WebSocket::from_raw_socket(
            Replay::new(wire.clone()),
            tungstenite::protocol::Role::Server,
            Some(config),
        );
        group.bench_function(BenchmarkId::new("tungstenite", name), |b| {
            b.iter(|| {
                for _ in 0..count {
                    let message = ws.read().expect("valid frames");
                    black_box(&message);
                }
            })
        });

        let mut ws = fastwebsockets::WebSocket::after_handshake(
            Replay::new(wire.clone()),
            fastwebsockets::Role::Server,
        );
        ws.set_auto_close(false);
        ws.set_auto_pong(false);
        ws.set_max_message_size(64 << 20);
        group.bench_function(BenchmarkId::new("fastwebsockets", name), |b| {
            b.iter(|| {
                runtime.block_on(async {
                    for _ in 0..count {
                        let frame = ws.read_frame().await.expect("valid frames");
                        black_box(&frame.payload);
                    }
                })
            })
        });
    }
    group.finish();
}

mod harness {
    #![allow(missing_docs, unreachable_pub)]
    use super::decode_peers;
    criterion::criterion_group!(benches, decode_peers);
}
criterion_main!(harness::benches);
