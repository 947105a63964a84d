//! Whole conversations between an in-memory client and server, and one test per protocol
//! error asserting the close code the engine answers with.

use std::time::Instant;

use proptest::prelude::*;
use ws6455_core::accept::{Acceptor, Choices};
use ws6455_core::connect::Connector;
use ws6455_core::decoder::{FrameDecoder, FramePart};
use ws6455_core::encoder::encode_frame;
use ws6455_core::frame::OpCode;
use ws6455_core::handshake::ClientRequest;
use ws6455_core::{
    CloseCode, CloseFrame, Config, Connection, ConnectionState, DeflateConfig, DeflateParams,
    Event, FixedRandom, Message, ProtocolError, Role, SendError,
};

/// A client and a server wired together in memory, like quinn-proto's test `Pair`.
struct Pair {
    client: Connection,
    server: Connection,
    client_events: Vec<Event>,
    server_events: Vec<Event>,
}

impl Pair {
    /// Runs the opening handshake through the core's connector and acceptor, as any
    /// driver does, then opens both ends.
    fn connect(config: Config) -> Pair {
        Self::connect_deflate(config, None, None).0
    }

    /// Like [`connect`](Self::connect), with permessage-deflate offered by the client and
    /// accepted by the server per their configurations. Returns the parameters both ends
    /// agreed on (`None` when the server declined).
    fn connect_deflate(
        config: Config,
        client: Option<&DeflateConfig>,
        server: Option<&DeflateConfig>,
    ) -> (Pair, Option<DeflateParams>) {
        let now = Instant::now();
        let random = Box::new(FixedRandom::new(&[2, 7, 1, 8, 2, 8, 1, 8]));
        let request = ClientRequest {
            host: "localhost",
            resource: "/",
            ..Default::default()
        };
        let client_config = Config {
            deflate: client.cloned(),
            ..config.clone()
        };
        let mut connector = Connector::new(&request, client_config, random, now).unwrap();
        let server_config = Config {
            deflate: server.cloned(),
            ..config
        };
        let mut acceptor = Acceptor::new(server_config, now);
        let accepted = acceptor
            .receive_data(now, connector.pending_output())
            .unwrap()
            .expect("a whole request");
        let mut server = accepted.accept(&Choices::default(), now).unwrap();
        let response = server.pending_output().to_vec();
        server.consume_output(response.len());
        let client = connector.receive_data(now, &response).unwrap().unwrap();
        let client = client.connection;
        let params = server.deflate_params();
        assert_eq!(client.deflate_params(), params, "both ends agree");
        let pair = Pair {
            client,
            server,
            client_events: Vec::new(),
            server_events: Vec::new(),
        };
        (pair, params)
    }

    /// Moves bytes both ways, `chunk` bytes per delivery, until nothing is pending.
    fn drive(&mut self, chunk: usize) {
        for _ in 0..10_000 {
            let moved_c = transfer(
                &mut self.client,
                &mut self.server,
                chunk,
                &mut self.server_events,
            );
            let moved_s = transfer(
                &mut self.server,
                &mut self.client,
                chunk,
                &mut self.client_events,
            );
            if !moved_c && !moved_s {
                return;
            }
        }
        panic!("pair did not go quiet");
    }
}

fn transfer(
    from: &mut Connection,
    to: &mut Connection,
    chunk: usize,
    events: &mut Vec<Event>,
) -> bool {
    let pending = from.pending_output().to_vec();
    if pending.is_empty() {
        return false;
    }
    for piece in pending.chunks(chunk.max(1)) {
        let (mut got, _) = feed(to, piece);
        events.append(&mut got);
    }
    from.consume_output(pending.len());
    true
}

/// Feeds all of `input` the way a driver does: `receive` until it says every byte is
/// taken. Returns the events and the first error.
fn feed(conn: &mut Connection, mut input: &[u8]) -> (Vec<Event>, Result<(), ProtocolError>) {
    let mut events = Vec::new();
    let now = Instant::now();
    // Each call returns an event or takes all of the input: this ends on its own; the
    // bound only turns a broken promise into a failed test.
    for _ in 0..=input.len() + 1 {
        match conn.receive(now, &mut input) {
            Ok(Some(event)) => events.push(event),
            Ok(None) => {
                assert!(input.is_empty(), "Ok(None) with input left");
                return (events, Ok(()));
            }
            Err(error) => {
                assert!(input.is_empty(), "an error takes the input");
                return (events, Err(error));
            }
        }
    }
    panic!("receive neither returned an event nor took the input");
}

/// One `receive` call on `input`: its result and what it left.
fn step<'a>(
    conn: &mut Connection,
    mut input: &'a [u8],
) -> (Result<Option<Event>, ProtocolError>, &'a [u8]) {
    let result = conn.receive(Instant::now(), &mut input);
    (result, input)
}

fn text(s: &str) -> Event {
    Event::Message(Message::Text(s.into()))
}

/// The event for a message of the strategies below (text is valid UTF-8 there).
fn message(is_text: bool, data: &[u8]) -> Event {
    Event::Message(if is_text {
        Message::Text(String::from_utf8(data.to_vec()).unwrap())
    } else {
        Message::Binary(data.to_vec())
    })
}

#[test]
fn whole_conversation_client_closes() {
    let mut pair = Pair::connect(Config {
        fragment_size: Some(3),
        ..Config::default()
    });
    pair.client.send_text("hello, server").unwrap();
    pair.client.send_binary(&[0, 1, 2, 3, 4, 5, 6]).unwrap();
    pair.client.send_ping(b"p1").unwrap();
    pair.drive(5);
    assert_eq!(
        pair.server_events,
        [
            text("hello, server"),
            Event::Message(Message::Binary(vec![0, 1, 2, 3, 4, 5, 6])),
            Event::Ping(b"p1".to_vec()),
        ]
    );
    // The automatic pong reached the client.
    assert_eq!(pair.client_events, [Event::Pong(b"p1".to_vec())]);

    pair.server.send_text("hi, client").unwrap();
    pair.drive(7);
    pair.client
        .close(Instant::now(), CloseCode(4000), "bye")
        .unwrap();
    assert_eq!(pair.client.state(), ConnectionState::Closing);
    assert!(pair.client.poll_timeout().is_some(), "the close timer runs");
    pair.drive(1);
    assert_eq!(pair.client_events[1], text("hi, client"));
    assert_eq!(
        pair.server_events.last(),
        Some(&Event::Close(CloseFrame {
            code: CloseCode(4000),
            reason: "bye".into()
        }))
    );
    assert_eq!(pair.server.state(), ConnectionState::Closed);
    assert_eq!(pair.client.state(), ConnectionState::Closed);
    // The server echoed the code; both ends saw a clean close.
    let status = pair.client.close_status().unwrap();
    assert_eq!((status.code, status.clean), (CloseCode(4000), true));
    // The server closes TCP first; the client waits for it (RFC 6455 section 7.1.1).
    assert!(pair.server.should_close_transport());
    assert!(!pair.client.should_close_transport());
    // After the handshake nothing more may be sent.
    assert!(matches!(
        pair.client.send_text("late"),
        Err(SendError::InvalidState {
            state: ConnectionState::Closed,
            ..
        })
    ));
}

#[test]
fn server_closes_and_data_after_close_is_discarded() {
    let mut pair = Pair::connect(Config::default());
    pair.server
        .close(Instant::now(), CloseCode::NORMAL, "")
        .unwrap();
    // The client's message crosses the server's Close: the server must discard it.
    pair.client.send_text("in flight").unwrap();
    pair.drive(64);
    assert!(pair
        .server_events
        .iter()
        .all(|e| !matches!(e, Event::Message(_))));
    assert_eq!(
        pair.client_events,
        [Event::Close(CloseFrame {
            code: CloseCode::NORMAL,
            reason: String::new()
        })]
    );
    assert_eq!(pair.server.close_status().unwrap().code, CloseCode::NORMAL);
    assert!(pair.server.close_status().unwrap().clean);
}

#[test]
fn control_frames_interleaved_in_a_fragmented_message() {
    let mut server = Connection::server(Config::default());
    let key = Some([9, 8, 7, 6]);
    let mut wire = Vec::new();
    encode_frame(&mut wire, false, OpCode::Text, b"frag", key);
    encode_frame(&mut wire, true, OpCode::Ping, b"!", key);
    encode_frame(&mut wire, false, OpCode::Continuation, b"men", key);
    encode_frame(&mut wire, true, OpCode::Pong, b"", key);
    encode_frame(&mut wire, true, OpCode::Continuation, b"ted", key);
    let (events, result) = feed(&mut server, &wire);
    result.unwrap();
    assert_eq!(
        events,
        [
            Event::Ping(b"!".to_vec()),
            Event::Pong(vec![]),
            text("fragmented")
        ]
    );
    assert_eq!(server.pending_output(), [0x8a, 0x01, b'!']);
}

#[test]
fn close_without_code_reports_1005_and_answers_empty() {
    let mut server = Connection::server(Config::default());
    let mut wire = Vec::new();
    encode_frame(&mut wire, true, OpCode::Close, b"", Some([1, 2, 3, 4]));
    let (events, result) = feed(&mut server, &wire);
    result.unwrap();
    assert_eq!(
        events,
        [Event::Close(CloseFrame {
            code: CloseCode::NO_STATUS,
            reason: String::new()
        })]
    );
    assert_eq!(server.pending_output(), [0x88, 0x00]);
    assert_eq!(server.close_status().unwrap().code, CloseCode::NO_STATUS);
}

#[test]
fn eof_without_close_is_1006() {
    let mut client = Connection::client(Config::default(), Box::new(FixedRandom::new(&[1])));
    client.receive_eof();
    let status = client.close_status().unwrap();
    assert_eq!((status.code, status.clean), (CloseCode::ABNORMAL, false));
    assert!(client.pending_output().is_empty(), "1006 is never sent");
}

#[test]
fn application_close_codes_are_checked_and_nothing_sent() {
    let mut server = Connection::server(Config::default());
    let now = Instant::now();
    for code in [999, 1001, 1005, 1006, 1011, 1015, 2999, 5000] {
        assert_eq!(
            server.close(now, CloseCode(code), ""),
            Err(SendError::InvalidCloseCode(code))
        );
    }
    assert_eq!(
        server.close(now, CloseCode::NORMAL, &"x".repeat(124)),
        Err(SendError::CloseReasonTooLong(124))
    );
    assert!(server.pending_output().is_empty());
    assert_eq!(server.state(), ConnectionState::Open);
    assert!(server
        .close_with_standard_code(now, CloseCode::GOING_AWAY, "bye")
        .is_ok());
    assert_eq!(&server.pending_output()[..4], [0x88, 0x05, 0x03, 0xe9]);
}

/// Feeds `frames` to a fresh server; returns the error and the close code it sent.
fn fail_server(config: Config, frames: &[u8]) -> (ProtocolError, u16) {
    let mut server = Connection::server(config);
    let error = match feed(&mut server, frames).1 {
        Err(error) => error,
        Ok(()) => panic!("no error for {frames:02x?}"),
    };
    let out = server.pending_output();
    assert_eq!(out[0], 0x88, "a close frame is sent");
    let code = u16::from_be_bytes([out[2], out[3]]);
    assert_eq!(code, error.close_code().0);
    // Sticky: the same error again, and the status says 1006.
    assert_eq!(step(&mut server, &[0x81]).0.unwrap_err(), error);
    assert_eq!(server.close_status().unwrap().code, CloseCode::ABNORMAL);
    assert!(server.should_close_transport() || server.wants_write());
    (error, code)
}

/// One frame as a client might send it, valid or not: any opcode (reserved ones too),
/// FIN or not, RSV bits now and then, masked or (rarely) not, text that is valid UTF-8 or
/// not, payloads around the 125 and 64-byte limits.
fn wire_frame_strategy() -> impl Strategy<Value = Vec<u8>> {
    let payload = prop_oneof![
        "\\PC{0,40}".prop_map(String::into_bytes),
        proptest::collection::vec(any::<u8>(), 0..140),
    ];
    (
        0u8..16,
        proptest::bool::weighted(0.8),
        prop_oneof![8 => Just(0u8), 1 => 1u8..8],
        proptest::bool::weighted(0.95),
        payload,
        any::<[u8; 4]>(),
    )
        .prop_map(|(opcode, fin, rsv, is_masked, payload, key)| {
            let mut out = Vec::new();
            // Encoded by hand: the encoder would refuse reserved opcodes.
            out.push(u8::from(fin) << 7 | rsv << 4 | opcode);
            let mask_bit = if is_masked { 0x80 } else { 0 };
            if payload.len() < 126 {
                out.push(mask_bit | payload.len() as u8);
            } else {
                out.push(mask_bit | 126);
                out.extend_from_slice(&(payload.len() as u16).to_be_bytes());
            }
            let start = if is_masked {
                out.extend_from_slice(&key);
                out.len()
            } else {
                out.len()
            };
            out.extend_from_slice(&payload);
            if is_masked {
                for (i, byte) in out[start..].iter_mut().enumerate() {
                    *byte ^= key[i % 4];
                }
            }
            out
        })
}

fn masked(opcode: OpCode, fin: bool, payload: &[u8]) -> Vec<u8> {
    let mut out = Vec::new();
    encode_frame(&mut out, fin, opcode, payload, Some([0xa, 0xb, 0xc, 0xd]));
    out
}

#[test]
fn each_protocol_error_closes_with_its_code() {
    let d = Config::default();
    let cases: Vec<(Vec<u8>, ProtocolError, u16)> = vec![
        (vec![0x81, 0x00], ProtocolError::UnmaskedFrame, 1002),
        (
            vec![0xc1, 0x80, 0, 0, 0, 0],
            ProtocolError::ReservedBits(4),
            1002,
        ),
        (
            vec![0x83, 0x80, 0, 0, 0, 0],
            ProtocolError::ReservedOpcode(3),
            1002,
        ),
        (
            masked(OpCode::Ping, false, b""),
            ProtocolError::FragmentedControlFrame,
            1002,
        ),
        (
            masked(OpCode::Ping, true, &[0; 126]),
            ProtocolError::ControlFrameTooLong(126),
            1002,
        ),
        (
            masked(OpCode::Continuation, true, b"x"),
            ProtocolError::UnexpectedContinuation,
            1002,
        ),
        (
            [
                masked(OpCode::Text, false, b"a"),
                masked(OpCode::Text, true, b"b"),
            ]
            .concat(),
            ProtocolError::ExpectedContinuation,
            1002,
        ),
        (
            masked(OpCode::Close, true, &[3]),
            ProtocolError::ClosePayloadTooShort,
            1002,
        ),
        (
            masked(OpCode::Close, true, &[0x03, 0xed]),
            ProtocolError::InvalidCloseCode(1005),
            1002,
        ),
        (
            masked(OpCode::Close, true, &[0x03, 0xe8, 0xff]),
            ProtocolError::InvalidCloseReason,
            1002,
        ),
        (
            masked(OpCode::Text, true, &[0xff]),
            ProtocolError::InvalidUtf8,
            1007,
        ),
        (
            {
                let mut f = vec![0x82, 0xff];
                f.extend_from_slice(&(1u64 << 63).to_be_bytes());
                f
            },
            ProtocolError::InvalidLength,
            1002,
        ),
    ];
    for (frames, error, code) in cases {
        assert_eq!(fail_server(d.clone(), &frames), (error, code));
    }
    let small = Config {
        max_frame_size: 10,
        max_message_size: 15,
        ..Config::default()
    };
    assert_eq!(
        fail_server(small.clone(), &masked(OpCode::Binary, true, &[0; 11])),
        (ProtocolError::FrameTooLarge { size: 11, max: 10 }, 1009)
    );
    let two = [
        masked(OpCode::Binary, false, &[0; 10]),
        masked(OpCode::Continuation, true, &[0; 6]),
    ]
    .concat();
    assert_eq!(
        fail_server(small, &two),
        (ProtocolError::MessageTooLarge { size: 16, max: 15 }, 1009)
    );
    // A client refuses masked frames from the server.
    let mut client = Connection::client(Config::default(), Box::new(FixedRandom::new(&[1])));
    assert_eq!(
        feed(&mut client, &masked(OpCode::Text, true, b"x")).1,
        Err(ProtocolError::MaskedFrame)
    );
}

#[test]
fn invalid_utf8_fails_before_the_message_ends() {
    let mut server = Connection::server(Config::default());
    // The first fragment is already invalid; the message never finishes.
    let wire = masked(OpCode::Text, false, &[b'o', b'k', 0xc0, 0x80]);
    assert_eq!(step(&mut server, &wire).0, Err(ProtocolError::InvalidUtf8));
    // Split inside a code point across reads: valid.
    let mut server = Connection::server(Config::default());
    let wire = masked(OpCode::Text, true, "✓✓".as_bytes());
    let mut events = Vec::new();
    for byte in &wire {
        let (result, rest) = step(&mut server, std::slice::from_ref(byte));
        assert!(rest.is_empty());
        events.extend(result.unwrap());
    }
    assert_eq!(events, [text("✓✓")]);
    // A lead byte ends one read, ASCII fills the next, a continuation byte the third:
    // the ASCII read must not skip the validator that waits for the rest of a code point.
    let mut server = Connection::server(Config::default());
    let wire = masked(OpCode::Text, true, b"ab\xc3cd\xa9");
    let header = wire.len() - 6;
    let (mut events, mut outcome) = (Vec::new(), Ok(()));
    for part in [
        &wire[..header + 3],
        &wire[header + 3..header + 5],
        &wire[header + 5..],
    ] {
        let (got, result) = feed(&mut server, part);
        events.extend(got);
        outcome = outcome.and(result);
    }
    assert_eq!((events, outcome), (vec![], Err(ProtocolError::InvalidUtf8)));
}

/// Text payloads, valid and not: UTF-8 pieces and stray bytes, after an ASCII run whose
/// length puts code points across the receive path's 32 KiB unmasking slices.
fn text_payload_strategy() -> impl Strategy<Value = Vec<u8>> {
    let ascii = prop_oneof![
        Just(0usize),
        (32usize << 10) - 3..(32 << 10) + 1,
        0usize..40_000,
    ];
    let pieces = proptest::collection::vec(
        prop_oneof![
            4 => "\\PC{0,40}".prop_map(String::into_bytes),
            2 => "[a-z]{1,8}".prop_map(String::into_bytes),
            // Continuation bytes, lead bytes, anything.
            2 => proptest::collection::vec(prop_oneof![0x80u8..0xc0, 0xc2u8..0xf5, any::<u8>()], 1..4),
        ],
        0..12,
    );
    (ascii, pieces).prop_map(|(ascii, pieces)| {
        let mut payload = vec![b'a'; ascii];
        payload.extend(pieces.concat());
        payload
    })
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(300))]

    /// The core hands out text as a `String` it made without a second check, so its
    /// verdict must be std's: any payload, any fragmentation, any chunking of the reads,
    /// is reported as exactly that text when it is UTF-8 and fails with InvalidUtf8 (and
    /// no message) when it is not.
    #[test]
    fn text_is_reported_exactly_when_std_says_it_is_utf8(
        payload in text_payload_strategy(),
        fragment in proptest::option::of(1usize..5000),
        chunk in proptest::option::of(prop_oneof![Just(1usize), 1usize..8, 1usize..5000]),
    ) {
        let mut wire = Vec::new();
        let pieces: Vec<&[u8]> = match fragment {
            Some(size) if !payload.is_empty() => payload.chunks(size).collect(),
            _ => vec![&payload[..]],
        };
        for (i, piece) in pieces.iter().enumerate() {
            let opcode = if i == 0 { OpCode::Text } else { OpCode::Continuation };
            wire.extend(masked(opcode, i + 1 == pieces.len(), piece));
        }
        let mut server = Connection::server(Config::default());
        let mut events = Vec::new();
        let mut outcome = Ok(());
        for part in wire.chunks(chunk.unwrap_or(wire.len())) {
            let (got, result) = feed(&mut server, part);
            events.extend(got);
            outcome = result;
            if outcome.is_err() {
                break;
            }
        }
        match std::str::from_utf8(&payload) {
            Ok(expected) => {
                prop_assert_eq!(outcome, Ok(()));
                prop_assert_eq!(events, vec![text(expected)]);
            }
            Err(_) => {
                prop_assert_eq!(outcome, Err(ProtocolError::InvalidUtf8));
                prop_assert_eq!(events, vec![]);
            }
        }
    }
}

#[test]
fn events_before_an_error_are_kept() {
    let mut server = Connection::server(Config::default());
    let wire = [masked(OpCode::Text, true, b"first"), vec![0x81, 0x00]].concat();
    // The first call stops at the message, before the bad frame is even looked at.
    let (first, rest) = step(&mut server, &wire);
    assert_eq!(rest, [0x81, 0x00]);
    assert_eq!(first, Ok(Some(text("first"))));
    assert!(step(&mut server, rest).0.is_err());
}

#[test]
fn limit_is_enforced_on_the_header_before_buffering() {
    let mut server = Connection::server(Config {
        max_message_size: 1000,
        ..Config::default()
    });
    // Only the header of a 1 GiB frame: refused at once.
    let mut header = vec![0x82, 0xff];
    header.extend_from_slice(&(1u64 << 30).to_be_bytes());
    header.extend_from_slice(&[1, 2, 3, 4]);
    assert!(matches!(
        step(&mut server, &header).0,
        Err(ProtocolError::FrameTooLarge { .. })
    ));
}

#[test]
fn a_payload_sent_by_value_is_written_from_its_buffer_then_reused() {
    let mut server = Connection::server(Config::default());
    let payload = vec![7u8; 100_000];
    let ptr = payload.as_ptr();
    server.send_binary_owned(payload).unwrap();
    // The header from our buffer, then the payload from the application's, not a copy.
    assert_eq!(
        server.pending_output(),
        [0x82, 127, 0, 0, 0, 0, 0, 1, 0x86, 0xa0]
    );
    server.consume_output(10);
    assert_eq!(server.pending_output().as_ptr(), ptr);
    assert_eq!(server.pending_output_len(), 100_000);
    server.consume_output(100_000);
    assert!(!server.wants_write());
    // A small message is not handed that large buffer (it would keep the allocation
    // alive wherever the application stores the message)...
    let wire = masked(OpCode::Binary, true, b"small");
    let (result, rest) = step(&mut server, &wire);
    assert!(rest.is_empty());
    let Ok(Some(Event::Message(Message::Binary(data)))) = result else {
        panic!("no message")
    };
    assert_eq!(data, b"small");
    assert!(data.capacity() < 1000);
    // ...a message of a comparable size takes it.
    let wire = masked(OpCode::Binary, true, &[9; 30_000]);
    let (result, rest) = step(&mut server, &wire);
    assert!(rest.is_empty());
    let Ok(Some(Event::Message(Message::Binary(data)))) = result else {
        panic!("no message")
    };
    assert_eq!((data.len(), data.as_ptr()), (30_000, ptr));
}

#[test]
fn recycled_buffers_are_reused() {
    let mut server = Connection::server(Config::default());
    let mut buffer = Vec::with_capacity(1024);
    buffer.extend_from_slice(b"old");
    let ptr = buffer.as_ptr();
    server.recycle(buffer);
    let wire = masked(OpCode::Binary, true, b"new");
    let (result, rest) = step(&mut server, &wire);
    assert!(rest.is_empty());
    let Ok(Some(Event::Message(Message::Binary(data)))) = result else {
        panic!("no message")
    };
    assert_eq!(data, b"new");
    assert_eq!(data.as_ptr(), ptr);
}

/// Decodes what a server wrote, as its client would, checking each frame is valid.
fn decode_output(mut out: &[u8]) -> Vec<(OpCode, Vec<u8>)> {
    let mut decoder = FrameDecoder::new(Role::Client, u64::MAX >> 1);
    let mut frames = Vec::new();
    loop {
        let (used, part) = decoder
            .decode(out)
            .expect("the server wrote an invalid frame");
        out = &out[used..];
        match part {
            None => break,
            Some(FramePart::Header(h)) => frames.push((h.opcode, Vec::new())),
            Some(FramePart::Payload { data, .. }) => {
                frames.last_mut().unwrap().1.extend_from_slice(data)
            }
        }
    }
    frames
}

fn message_strategy() -> impl Strategy<Value = (bool, Vec<u8>)> {
    prop_oneof![
        "\\PC{0,300}".prop_map(|s| (true, s.into_bytes())),
        proptest::collection::vec(any::<u8>(), 0..3000).prop_map(|b| (false, b)),
    ]
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(200))]

    /// Any message, any fragmentation, any chunking of the wire, either direction: the
    /// receiver reports exactly the message that was sent.
    #[test]
    fn messages_round_trip(messages in proptest::collection::vec(message_strategy(), 1..5),
                           fragment in proptest::option::of(1usize..700),
                           chunk in 1usize..200,
                           from_client in any::<bool>()) {
        let mut pair = Pair::connect(Config { fragment_size: fragment, ..Config::default() });
        let sender = if from_client { &mut pair.client } else { &mut pair.server };
        for (is_text, data) in &messages {
            if *is_text {
                sender.send_text(std::str::from_utf8(data).unwrap()).unwrap();
            } else {
                sender.send_binary(data).unwrap();
            }
        }
        pair.drive(chunk);
        let received = if from_client { &pair.server_events } else { &pair.client_events };
        let expected: Vec<Event> =
            messages.iter().map(|(is_text, data)| message(*is_text, data)).collect();
        prop_assert_eq!(received, &expected);
    }

    /// permessage-deflate with every parameter combination both ends can ask for: the
    /// negotiation agrees, and every message (compressible or not, fragmented or not,
    /// under or over the threshold, any chunking, both directions, several in a row so
    /// that context takeover matters) arrives exactly as sent.
    #[test]
    fn deflate_round_trips_with_every_parameter(
        messages in proptest::collection::vec(deflate_message_strategy(), 1..6),
        server_nct in any::<bool>(), client_nct in any::<bool>(),
        ask_server_nct in any::<bool>(), ask_client_nct in any::<bool>(),
        server_bits in 8u8..=15, client_bits in 8u8..=15,
        ask_server_bits in 8u8..=15, ask_client_bits in 8u8..=15,
        threshold in 0usize..64, level in 0u32..=9,
        fragment in proptest::option::of(1usize..700),
        chunk in 1usize..300,
        from_client in any::<bool>(),
    ) {
        let server = DeflateConfig {
            server_no_context_takeover: server_nct,
            client_no_context_takeover: client_nct,
            server_max_window_bits: server_bits,
            client_max_window_bits: client_bits,
            threshold,
            level,
        };
        let client = DeflateConfig {
            server_no_context_takeover: ask_server_nct,
            client_no_context_takeover: ask_client_nct,
            server_max_window_bits: ask_server_bits,
            client_max_window_bits: ask_client_bits,
            threshold,
            level,
        };
        let config = Config { fragment_size: fragment, ..Config::default() };
        let (mut pair, params) = Pair::connect_deflate(config, Some(&client), Some(&server));
        // Our client always offers client_max_window_bits, so our server always accepts.
        let params = params.expect("negotiated");
        prop_assert!(params.server_max_window_bits <= server_bits.min(ask_server_bits));
        prop_assert!(params.client_max_window_bits <= client_bits.min(ask_client_bits));
        prop_assert_eq!(params.server_no_context_takeover, server_nct || ask_server_nct);
        let sender = if from_client { &mut pair.client } else { &mut pair.server };
        for (is_text, data) in &messages {
            if *is_text {
                sender.send_text(std::str::from_utf8(data).unwrap()).unwrap();
            } else {
                sender.send_binary(data).unwrap();
            }
        }
        pair.drive(chunk);
        let received = if from_client { &pair.server_events } else { &pair.client_events };
        let expected: Vec<Event> =
            messages.iter().map(|(is_text, data)| message(*is_text, data)).collect();
        prop_assert_eq!(received, &expected);
    }

    /// Messages sent by value (large ones are queued as they are, masked in place by a
    /// client) or by reference, mixed, with small frames between them: the receiver
    /// reports exactly what was sent, in order.
    #[test]
    fn owned_sends_round_trip(
        messages in proptest::collection::vec(
            (any::<bool>(), any::<bool>(), proptest::collection::vec(any::<u8>(), 0..40_000)),
            1..6),
        fragment in proptest::option::of(1000usize..50_000),
        chunk in 1000usize..70_000,
        from_client in any::<bool>(),
    ) {
        let mut pair = Pair::connect(Config { fragment_size: fragment, ..Config::default() });
        let sender = if from_client { &mut pair.client } else { &mut pair.server };
        let mut expected = Vec::new();
        for (owned, is_text, data) in messages {
            // Text: the bytes as Latin-1 code points, so that any bytes make valid UTF-8.
            let message = if is_text {
                Message::Text(data.iter().map(|&b| b as char).collect())
            } else {
                Message::Binary(data)
            };
            expected.push(Event::Message(message.clone()));
            match (owned, message) {
                (true, Message::Text(text)) => sender.send_text_owned(text),
                (true, Message::Binary(data)) => sender.send_binary_owned(data),
                (false, Message::Text(text)) => sender.send_text(&text),
                (false, Message::Binary(data)) => sender.send_binary(&data),
            }.unwrap();
            sender.send_ping(b"p").unwrap();
        }
        pair.drive(chunk);
        let received: Vec<&Event> = if from_client { &pair.server_events } else { &pair.client_events }
            .iter().filter(|e| matches!(e, Event::Message(_))).collect();
        prop_assert_eq!(received, expected.iter().collect::<Vec<_>>());
    }

    /// Whole frames in one input take a one-step path; fed a byte at a time they never
    /// do. Both must agree on everything: events, error, and what the server sends.
    #[test]
    fn whole_and_bytewise_input_agree(
        frames in proptest::collection::vec(wire_frame_strategy(), 1..6),
        max_message_size in prop_oneof![Just(64u64), Just(1 << 20)],
    ) {
        let wire: Vec<u8> = frames.concat();
        let config = Config { max_message_size, ..Config::default() };
        let mut whole = Connection::server(config.clone());
        let mut bytewise = Connection::server(config);
        let (whole_events, whole_result) = feed(&mut whole, &wire);
        let mut bytewise_events = Vec::new();
        let mut bytewise_result = Ok(());
        for byte in &wire {
            let (mut events, result) = feed(&mut bytewise, std::slice::from_ref(byte));
            bytewise_events.append(&mut events);
            if result.is_err() {
                bytewise_result = result;
                break;
            }
        }
        prop_assert_eq!(&whole_events, &bytewise_events);
        prop_assert_eq!(&whole_result, &bytewise_result);
        prop_assert_eq!(whole.pending_output(), bytewise.pending_output());
        prop_assert_eq!(whole.state(), bytewise.state());
    }

    /// Arbitrary bytes never panic the server, and whatever it sends is a valid close.
    #[test]
    fn arbitrary_input_never_panics(input in proptest::collection::vec(any::<u8>(), 0..512)) {
        let mut server = Connection::server(Config::default());
        let failed = feed(&mut server, &input).1.is_err();
        let frames = decode_output(server.pending_output());
        if failed {
            let (opcode, payload) = frames.last().expect("a close frame after an error");
            prop_assert_eq!(*opcode, OpCode::Close);
            let code = CloseCode(u16::from_be_bytes([payload[0], payload[1]]));
            prop_assert!(code.is_valid_on_wire());
        }
    }
}

/// Messages for the deflate round trip: repetitive text (compresses, and refers back to
/// earlier messages under context takeover), random bytes (does not compress), empty.
fn deflate_message_strategy() -> impl Strategy<Value = (bool, Vec<u8>)> {
    prop_oneof![
        ("[a-c é]{0,40}", 0usize..60).prop_map(|(s, n)| (true, s.repeat(n).into_bytes())),
        proptest::collection::vec(any::<u8>(), 0..3000).prop_map(|v| (false, v)),
        Just((true, Vec::new())),
    ]
}

fn deflate_server(config: Config) -> Connection {
    let params = DeflateParams {
        server_no_context_takeover: false,
        client_no_context_takeover: false,
        server_max_window_bits: 15,
        client_max_window_bits: 15,
    };
    let mut server = Connection::server(config);
    server.enable_deflate(&params, &DeflateConfig::default());
    server
}

/// A masked frame with the given RSV bits.
fn masked_rsv(opcode: OpCode, fin: bool, rsv: u8, payload: &[u8]) -> Vec<u8> {
    let mut out = Vec::new();
    ws6455_core::encoder::encode_frame_with_rsv(
        &mut out,
        fin,
        rsv,
        opcode,
        payload,
        Some([9, 8, 7, 6]),
    );
    out
}

#[test]
fn deflate_compresses_on_the_wire_and_only_above_the_threshold() {
    let mut server = deflate_server(Config::default());
    let text = "the same words again and again, ".repeat(100);
    server.send_text(&text).unwrap();
    let out = server.pending_output();
    assert_eq!(out[0], 0xc1, "FIN, RSV1 and text: one compressed frame");
    assert!(out[1] < 126 && out.len() == 2 + out[1] as usize, "{out:?}");
    assert!(out.len() < text.len() / 20, "{}", out.len());
    let n = server.pending_output().len();
    server.consume_output(n);
    // Under the 64-byte default threshold: sent as is, RSV1 clear.
    server.send_text("short").unwrap();
    assert_eq!(server.pending_output(), b"\x81\x05short");
}

#[test]
fn deflate_errors_close_with_their_codes() {
    // The RFC 7692 section 7.2.3.1 "Hello", split over two frames: RSV1 on the first only.
    let hello = [0xf2, 0x48, 0xcd, 0xc9, 0xc9, 0x07, 0x00];
    let mut server = deflate_server(Config::default());
    let mut wire = masked_rsv(OpCode::Text, false, 0b100, &hello[..3]);
    wire.extend(masked_rsv(OpCode::Continuation, true, 0, &hello[3..]));
    let (events, result) = feed(&mut server, &wire);
    result.unwrap();
    assert_eq!(events, [text("Hello")]);

    let fail = |config: Config, wire: Vec<u8>| {
        let mut server = deflate_server(config);
        let error = feed(&mut server, &wire).1.unwrap_err();
        let frames = decode_output(server.pending_output());
        let (opcode, payload) = frames.last().unwrap().clone();
        assert_eq!(opcode, OpCode::Close);
        (error, u16::from_be_bytes([payload[0], payload[1]]))
    };
    // RSV1 on a continuation frame, on a control frame.
    let mut wire = masked_rsv(OpCode::Text, false, 0b100, &hello[..3]);
    wire.extend(masked_rsv(OpCode::Continuation, true, 0b100, &hello[3..]));
    assert_eq!(
        fail(Config::default(), wire),
        (ProtocolError::MisplacedCompressionBit, 1002)
    );
    assert_eq!(
        fail(
            Config::default(),
            masked_rsv(OpCode::Ping, true, 0b100, b"")
        ),
        (ProtocolError::MisplacedCompressionBit, 1002)
    );
    // Not DEFLATE at all (a reserved block type).
    assert_eq!(
        fail(
            Config::default(),
            masked_rsv(OpCode::Binary, true, 0b100, &[0xff; 8])
        ),
        (ProtocolError::InvalidCompressedData, 1007)
    );
    // Compressed text that inflates to invalid UTF-8: 0xff stored in a raw block.
    let stored_ff = [0x00, 0x01, 0x00, 0xfe, 0xff, 0xff];
    assert_eq!(
        fail(
            Config::default(),
            masked_rsv(OpCode::Text, true, 0b100, &stored_ff)
        ),
        (ProtocolError::InvalidUtf8, 1007)
    );
    // A bomb: 10 KiB on the wire (level 1) inflating past a 64 KiB limit fails there.
    let mut bomb = Vec::new();
    let mut sender = Connection::client(Config::default(), Box::new(FixedRandom::new(&[5])));
    sender.enable_deflate(
        &DeflateParams {
            server_no_context_takeover: false,
            client_no_context_takeover: false,
            server_max_window_bits: 15,
            client_max_window_bits: 15,
        },
        &DeflateConfig::default(),
    );
    sender.send_binary(&vec![0u8; 1 << 20]).unwrap();
    bomb.extend_from_slice(sender.pending_output());
    assert!(bomb.len() < 16 << 10, "{}", bomb.len());
    let limited = Config {
        max_message_size: 64 << 10,
        ..Config::default()
    };
    let (error, code) = fail(limited, bomb);
    assert!(
        matches!(error, ProtocolError::MessageTooLarge { size, max: 65536 } if size == 65537),
        "{error:?}"
    );
    assert_eq!(code, 1009);
    // Without negotiation RSV1 is a reserved bit.
    let mut plain = Connection::server(Config::default());
    let error = feed(&mut plain, &masked_rsv(OpCode::Text, true, 0b100, &hello)).1;
    assert_eq!(error, Err(ProtocolError::ReservedBits(0b100)));
}
