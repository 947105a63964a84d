//! A connection driven by arbitrary bytes, with application commands mixed in. Oracle:
//! every frame it emits is valid RFC 6455, every close code it emits may be sent, and
//! nothing follows its Close frame.
#![no_main]

use libfuzzer_sys::fuzz_target;
use ws6455_core::{CloseCode, Config, Connection, DeflateConfig, DeflateParams, FixedRandom, Role};
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
    for (i, piece) in chunks(input, control).into_iter().enumerate() {
        let mut rest = piece;
        // Each round consumes bytes or drains an event; bounded all the same.
        for _ in 0..=2 * piece.len() + 1 {
            match conn.receive_data(rest) {
                Ok(used) => rest = &rest[used..],
                Err(_) => rest = &[],
            }
            while let Some(event) = conn.poll_event() {
                if let ws6455_core::Event::Message { data, .. } = event {
                    // Echo, as an application would (by value when the length is
                    // odd, by reference when even); refused once closing.
                    let _ = if data.len() % 2 == 1 {
                        conn.send_binary_owned(data)
                    } else {
                        conn.send_binary(&data)
                    };
                }
            }
            if rest.is_empty() {
                break;
            }
        }
        assert!(rest.is_empty(), "receive_data made no progress");
        match ((control >> 3) & 7, i) {
            (1, 2) => {
                let _ = conn.close(CloseCode::NORMAL, "done");
            }
            (2, 1) => {
                let _ = conn.send_ping(b"ping");
            }
            (3, 3) => {
                let _ = conn.close(CloseCode(1011), "refused: not an application code");
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
