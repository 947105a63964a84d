//! permessage-deflate throughput: one message sent by a server `Connection` and received
//! by a client `Connection` (encode, compress, decode, inflate), with and without deflate,
//! on compressible text and on random bytes; `memcpy` of the payload in the same run is
//! the baseline. Read the lines of one group as ratios.

use std::time::Instant;

use criterion::{black_box, criterion_main, BenchmarkId, Criterion, Throughput};
use ws6455_core::{
    Config, Connection, DeflateConfig, DeflateParams, Event, FixedRandom, MessageKind,
};

fn pair(deflate: Option<u32>) -> (Connection, Connection) {
    let mut server = Connection::server(Config::default());
    let mut client = Connection::client(Config::default(), Box::new(FixedRandom::new(&[1, 2])));
    if let Some(level) = deflate {
        let config = DeflateConfig {
            level,
            ..DeflateConfig::default()
        };
        let params = DeflateParams {
            server_no_context_takeover: false,
            client_no_context_takeover: false,
            server_max_window_bits: 15,
            client_max_window_bits: 15,
        };
        server.enable_deflate(&params, &config);
        client.enable_deflate(&params, &config);
    }
    (server, client)
}

/// Sends `payload` from `server` to `client` and returns the received length.
fn transfer(server: &mut Connection, client: &mut Connection, payload: &[u8], text: bool) -> usize {
    if text {
        server
            .send_text(std::str::from_utf8(payload).unwrap())
            .unwrap();
    } else {
        server.send_binary(payload).unwrap();
    }
    let wire = server.pending_output().to_vec();
    server.consume_output(wire.len());
    let mut rest = &wire[..];
    let mut received = 0;
    let now = Instant::now();
    while let Some(event) = client.receive(now, &mut rest).unwrap() {
        if let Event::Message(message) = event {
            debug_assert_eq!(message.kind() == MessageKind::Text, text);
            let data = message.into_bytes();
            received += data.len();
            client.recycle(data);
        }
    }
    received
}

fn deflate(c: &mut Criterion) {
    let text: Vec<u8> = "{\"user\":\"alice\",\"text\":\"the same chat words again\",\"n\":12}\n"
        .repeat(1200)
        .into_bytes();
    let mut state = 0x2545_f491_4f6c_dd1d_u64;
    let random: Vec<u8> = (0..text.len())
        .map(|_| {
            state ^= state << 13;
            state ^= state >> 7;
            state ^= state << 17;
            state as u8
        })
        .collect();
    let mut group = c.benchmark_group("deflate");
    for (name, payload, is_text) in [
        ("json-64KiB", &text, true),
        ("random-64KiB", &random, false),
    ] {
        group.throughput(Throughput::Bytes(payload.len() as u64));
        let mut copy = vec![0u8; payload.len()];
        group.bench_function(BenchmarkId::new("memcpy", name), |b| {
            b.iter(|| {
                copy.copy_from_slice(black_box(payload));
                black_box(&copy);
            })
        });
        for (mode, on) in [
            ("plain", None),
            ("deflate-level1", Some(1)),
            ("deflate-level6", Some(6)),
        ] {
            let (mut server, mut client) = pair(on);
            group.bench_function(BenchmarkId::new(mode, name), |b| {
                b.iter(|| transfer(&mut server, &mut client, black_box(payload), is_text))
            });
        }
    }
    group.finish();
}

mod harness {
    // criterion's macro generates an undocumented `pub fn`.
    #![allow(missing_docs, unreachable_pub)]
    use super::deflate;
    criterion::criterion_group!(benches, deflate);
}
criterion_main!(harness::benches);
