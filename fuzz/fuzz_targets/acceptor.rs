//! A server connection from its first byte: the acceptor, the upgrade (with
//! permessage-deflate offered or not), then whatever followed the request. Oracle: whole
//! and chunked input give the same verdict, the same events and the same output; a
//! refusal is a 4xx answer; an upgrade's output starts with a 101; a plain request's body
//! is the same however it arrived.
#![no_main]

use std::time::Instant;

use libfuzzer_sys::fuzz_target;
use ws6455_core::accept::{Acceptor, Choices};
use ws6455_core::{Config, DeflateConfig, Event};
use ws6455_fuzz::chunks;

#[derive(Debug, PartialEq)]
enum Verdict {
    Incomplete,
    Refused(u16),
    /// A plain HTTP request, with the body read for it.
    Http(Vec<u8>),
    Upgraded { events: Vec<Event>, output: Vec<u8> },
}

fn run(pieces: &[&[u8]], deflate: bool) -> Verdict {
    let now = Instant::now();
    let config = Config {
        max_handshake_size: 4096,
        max_message_size: 1 << 14,
        deflate: deflate.then(DeflateConfig::default),
        ..Config::default()
    };
    let mut acceptor = Acceptor::new(config, now);
    for (i, piece) in pieces.iter().enumerate() {
        let accepted = match acceptor.receive_data(now, piece) {
            Ok(None) => continue,
            Ok(Some(accepted)) => accepted,
            Err(refused) => {
                assert!(refused.reply.pending_output().starts_with(b"HTTP/1.1 4"));
                return Verdict::Refused(refused.reply.status());
            }
        };
        if !accepted.is_websocket() {
            return Verdict::Http(accepted.request().body().to_vec());
        }
        let mut conn = accepted
            .accept(&Choices::default(), now)
            .expect("a valid upgrade with no choices is accepted");
        assert!(conn
            .pending_output()
            .starts_with(b"HTTP/1.1 101 Switching Protocols\r\n"));
        let mut events = Vec::new();
        let mut first: &[u8] = &[];
        while let Ok(Some(event)) = conn.receive(now, &mut first) {
            events.push(event);
        }
        for later in &pieces[i + 1..] {
            let mut rest = *later;
            while let Ok(Some(event)) = conn.receive(now, &mut rest) {
                events.push(event);
            }
            assert!(rest.is_empty(), "receive left input behind");
        }
        let mut output = Vec::new();
        while conn.wants_write() {
            output.extend_from_slice(conn.pending_output());
            let n = conn.pending_output().len();
            conn.consume_output(n);
        }
        return Verdict::Upgraded { events, output };
    }
    Verdict::Incomplete
}

fuzz_target!(|data: &[u8]| {
    let Some((&control, input)) = data.split_first() else {
        return;
    };
    let deflate = control & 0x80 != 0;
    let whole = run(&[input], deflate);
    let chunked = run(&chunks(input, control), deflate);
    assert_eq!(whole, chunked);
});
