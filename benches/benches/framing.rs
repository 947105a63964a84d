//! Framing throughput: decode (parse + unmask + UTF-8 check), encode, unmask and UTF-8
//! validation, each with `memcpy` of the same bytes measured in the same run as the
//! baseline. Compare the throughput lines of one group: ratios, not absolute figures,
//! are what survives a noisy shared machine.

use std::time::Instant;

use criterion::{black_box, criterion_main, BenchmarkId, Criterion, Throughput};
use ws6455_benches::{frames_per_batch, masked_frames};
use ws6455_core::encoder::encode_frame;
use ws6455_core::frame::OpCode;
use ws6455_core::mask::{apply_mask, apply_mask_bytewise};
use ws6455_core::utf8::Utf8Validator;
use ws6455_core::{Config, Connection, Event, FixedRandom};

const SIZES: [(usize, &str); 6] = [
    (16, "16B"),
    (125, "125B"),
    (1 << 10, "1KiB"),
    (64 << 10, "64KiB"),
    (1 << 20, "1MiB"),
    (16 << 20, "16MiB"),
];

fn decode(c: &mut Criterion) {
    let mut group = c.benchmark_group("decode");
    for (size, name) in SIZES {
        let count = frames_per_batch(size);
        if size >= 1 << 20 {
            group.sample_size(20);
        }
        group.throughput(Throughput::Bytes((size * count) as u64));
        let binary = masked_frames(size, count, false);
        let text = masked_frames(size, count, true);
        let mut copy = vec![0u8; binary.len()];
        group.bench_function(BenchmarkId::new("memcpy", name), |b| {
            b.iter(|| {
                copy.copy_from_slice(black_box(&binary));
                black_box(&copy);
            })
        });
        for (kind, wire) in [("binary", &binary), ("text", &text)] {
            let mut server = Connection::server(Config::default());
            group.bench_function(BenchmarkId::new(kind, name), |b| {
                b.iter(|| {
                    let mut rest = &black_box(wire)[..];
                    let now = Instant::now();
                    while let Some(event) = server.receive(now, &mut rest).unwrap() {
                        if let Event::Message(message) = event {
                            let data = message.into_bytes();
                            black_box(&data);
                            server.recycle(data);
                        }
                    }
                })
            });
        }
    }
    group.finish();
}

fn encode(c: &mut Criterion) {
    let mut group = c.benchmark_group("encode");
    for (size, name) in SIZES {
        let count = frames_per_batch(size);
        if size >= 1 << 20 {
            group.sample_size(20);
        }
        group.throughput(Throughput::Bytes((size * count) as u64));
        let payload = vec![b'x'; size];
        let mut out = Vec::with_capacity(count * (size + 14));
        group.bench_function(BenchmarkId::new("memcpy", name), |b| {
            b.iter(|| {
                out.clear();
                for _ in 0..count {
                    out.extend_from_slice(black_box(&payload));
                }
                black_box(&out);
            })
        });
        group.bench_function(BenchmarkId::new("server", name), |b| {
            b.iter(|| {
                out.clear();
                for _ in 0..count {
                    encode_frame(&mut out, true, OpCode::Binary, black_box(&payload), None);
                }
                black_box(&out);
            })
        });
        let mut client =
            Connection::client(Config::default(), Box::new(FixedRandom::new(&[1, 2, 3, 5])));
        group.bench_function(BenchmarkId::new("client_masked", name), |b| {
            b.iter(|| {
                for _ in 0..count {
                    client.send_binary(black_box(&payload)).unwrap();
                }
                let n = client.pending_output().len();
                black_box(client.pending_output());
                client.consume_output(n);
            })
        });
    }
    group.finish();
}

fn unmask(c: &mut Criterion) {
    let mut group = c.benchmark_group("unmask");
    let size = 64 << 10;
    group.throughput(Throughput::Bytes(size as u64));
    let src = vec![0x5au8; size];
    let mut buf = vec![0u8; size];
    group.bench_function("memcpy/64KiB", |b| {
        b.iter(|| buf.copy_from_slice(black_box(&src)))
    });
    group.bench_function("word/64KiB", |b| {
        b.iter(|| apply_mask(black_box(&mut buf), [1, 2, 3, 4], 0))
    });
    group.bench_function("bytewise/64KiB", |b| {
        b.iter(|| apply_mask_bytewise(black_box(&mut buf), [1, 2, 3, 4], 0))
    });
    group.finish();
}

fn utf8(c: &mut Criterion) {
    let mut group = c.benchmark_group("utf8");
    let ascii = vec![b'a'; 64 << 10];
    let mixed = "héllo wörld ✓ 𝄞 ".repeat(4 << 10).into_bytes();
    for (name, data) in [("ascii", &ascii), ("mixed", &mixed)] {
        group.throughput(Throughput::Bytes(data.len() as u64));
        group.bench_function(BenchmarkId::new("std_from_utf8", name), |b| {
            b.iter(|| std::str::from_utf8(black_box(data)).is_ok())
        });
        group.bench_function(BenchmarkId::new("incremental_4KiB_chunks", name), |b| {
            b.iter(|| {
                let mut v = Utf8Validator::new();
                for chunk in black_box(data).chunks(4096) {
                    v.feed(chunk).unwrap();
                }
                v.finish().unwrap();
            })
        });
    }
    group.finish();
}

mod harness {
    // criterion's macro generates an undocumented `pub fn`.
    #![allow(missing_docs, unreachable_pub)]
    use super::{decode, encode, unmask, utf8};
    criterion::criterion_group!(benches, decode, encode, unmask, utf8);
}
criterion_main!(harness::benches);
