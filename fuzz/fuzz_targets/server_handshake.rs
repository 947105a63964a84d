//! Oracle: the server handshake parser gives the same verdict whole and chunked; every
//! refusal is a 4xx answer; every accepted request gets a 101 with a valid accept key.
#![no_main]

use libfuzzer_sys::fuzz_target;
use ws6455_core::handshake::{accept_response, validate_upgrade, ServerHandshake};
use ws6455_fuzz::chunks;

fn run(pieces: &[&[u8]]) -> (Result<Option<String>, String>, Vec<u8>) {
    let mut hs = ServerHandshake::new(4096);
    for piece in pieces {
        match hs.receive_data(piece) {
            Err(e) => {
                let response = e.response();
                assert!(response.starts_with(b"HTTP/1.1 4"), "refusal is not 4xx");
                return (Err(e.to_string()), Vec::new());
            }
            Ok(Some(request)) => {
                let verdict = match validate_upgrade(&request) {
                    Ok(()) => {
                        let mut out = Vec::new();
                        accept_response(&request, None, None, &[], &mut out).unwrap();
                        assert!(out.starts_with(b"HTTP/1.1 101 "));
                        format!("accepted {}", request.url())
                    }
                    Err(e) => format!("refused {}", e.status()),
                };
                let _ = request.query();
                let _ = request.subprotocols();
                // Bytes that arrive later are pipelined data: keep feeding them.
                for later in &pieces[pieces
                    .iter()
                    .position(|p| std::ptr::eq(*p, *piece))
                    .unwrap()
                    + 1..]
                {
                    assert_eq!(hs.receive_data(later), Ok(None));
                }
                return (Ok(Some(verdict)), hs.leftover().to_vec());
            }
            Ok(None) => {}
        }
    }
    (Ok(None), Vec::new())
}

fuzz_target!(|data: &[u8]| {
    let Some((&control, input)) = data.split_first() else {
        return;
    };
    let whole = run(&[input]);
    let chunked = run(&chunks(input, control));
    assert_eq!(whole, chunked);
});
