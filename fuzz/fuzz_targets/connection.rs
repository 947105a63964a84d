//! A connection driven by arbitrary bytes, with application commands mixed in. Oracle:
//! every text message it reports is valid UTF-8 (the core builds that `String` without a
//! second check), every frame it emits is valid RFC 6455, every close code it emits may
//! be sent, and nothing follows its Close frame.
#![no_main]

use std::time::Instant;

use libfuzzer_sys::fuzz_target;
use ws6455_core::{
    CloseCode, Config, Connection, DeflateConfig, DeflateParams, FixedRandom, Message, Role,
};
use ws6455_fuzz::{assert_valid_output_with, chunks};

fuzz_target!(|data: &[u8]| {
    let Some((&control, input)) = data.split_first() else {
        return;
    };
    let role = if control & 1 == 0 {
        Role::Server
    } else {
        Role::Client
    };
    let config = Config {
        max_frame_size: 1 << 12,
        max_message_size: 1 << 14,
        auto_pong: control & 2 == 0,
        fragment_size: (control & 4 != 0).then_some(7),
        ..Config::default()
    };
    let mut conn = match role {
        Role::Server => Connection::server(config),
        Role::Client => Connection::client(config, Box::new(FixedRandom::new(&[control, 1, 2, 3]))),
    };
    // Bit 6: permessage-deflate (context takeover unless bit 7), so that the fuzzer
    // reaches inflation, the RSV1 rules and the inflated-size limit.
    let deflate = (control & 0x40 != 0).then(|| DeflateParams {
        server_no_context_takeover: control & 0x80 != 0,
        client_no_context_takeover: control & 0x80 != 0,
        server_max_window_bits: 15,
        client_max_window_bits: 15,
    });
    if let Some(params) = &deflate {
        conn.enable_deflate(
            params,
            &DeflateConfig {
                threshold: 0,
                ..DeflateConfig::default()
            },
        );
    }
    let mut output = Vec::new();
    let now = Instant::now();
    for (i, piece) in chunks(input, control).into_iter().enumerate() {
        let mut rest = piece;
        // Each call returns an event or takes every byte: the loop ends on its own.
        while let Ok(Some(event)) = conn.receive(now, &mut rest) {
            if let ws6455_core::Event::Message(message) = event {
                if let Message::Text(text) = &message {
                    assert!(
                        std::str::from_utf8(text.as_bytes()).is_ok(),
                        "invalid text reported"
                    );
                }
                let data = message.into_bytes();
                // Echo, as an application would (by value when the length is odd, by
                // reference when even); refused once closing.
                let _ = if data.len() % 2 == 1 {
                    conn.send_binary_owned(data)
                } else {
                    conn.send_binary(&data)
                };
            }
        }
        assert!(rest.is_empty(), "receive left input behind");
        match ((control >> 3) & 7, i) {
            (1, 2) => {
                let _ = conn.close(now, CloseCode::NORMAL, "done");
            }
            (2, 1) => {
                let _ = conn.send_ping(b"ping");
            }
            (3, 3) => {
                let _ = conn.close(now, CloseCode(1011), "refused: not an application code");
            }
            _ => {}
        }
        // Output may be in several chunks.
        while conn.wants_write() {
            let pending = conn.pending_output().len();
            output.extend_from_slice(conn.pending_output());
            conn.consume_output(pending);
        }
    }
    conn.receive_eof();
    assert!(conn.close_status().is_some());
    assert_valid_output_with(role, &output, deflate.as_ref());
});
