//! Oracle: the client's response parser gives the same verdict whole and chunked, and
//! never panics.
#![no_main]

use libfuzzer_sys::fuzz_target;
use ws6455_core::handshake::{ClientHandshake, ClientRequest};
use ws6455_core::FixedRandom;
use ws6455_fuzz::chunks;

fn run(pieces: &[&[u8]]) -> Result<Option<(Option<String>, Vec<String>)>, String> {
    let request = ClientRequest {
        host: "localhost",
        resource: "/",
        subprotocols: &["chat"],
        extensions: &["permessage-deflate"],
        headers: &[],
    };
    let mut out = Vec::new();
    // A fixed key lets the fuzzer reach a valid accept value: base64 of 16 zero bytes.
    let mut hs =
        ClientHandshake::new(&request, &mut FixedRandom::new(&[0]), 4096, &mut out).unwrap();
    for piece in pieces {
        match hs.receive_data(piece) {
            Err(e) => return Err(e.to_string()),
            Ok(Some(response)) => return Ok(Some((response.subprotocol, response.extensions))),
            Ok(None) => {}
        }
    }
    Ok(None)
}

fuzz_target!(|data: &[u8]| {
    let Some((&control, input)) = data.split_first() else {
        return;
    };
    assert_eq!(run(&[input]), run(&chunks(input, control)));
});
