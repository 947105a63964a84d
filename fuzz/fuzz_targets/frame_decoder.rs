//! Oracle: decoding the input whole and in random chunks gives the same frames and the
//! same error, and never panics.
#![no_main]

use libfuzzer_sys::fuzz_target;
use ws6455_core::Role;
use ws6455_fuzz::{chunks, decode_frames};

fuzz_target!(|data: &[u8]| {
    let Some((&control, input)) = data.split_first() else {
        return;
    };
    let role = if control & 1 == 0 {
        Role::Server
    } else {
        Role::Client
    };
    let whole = decode_frames(role, &[input]);
    let chunked = decode_frames(role, &chunks(input, control));
    assert_eq!(whole, chunked);
});
