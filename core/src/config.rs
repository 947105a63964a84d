//! Limits, timeouts and extensions of a connection, from the opening handshake to the
//! close. Every field has a safe default; one `Config` serves both roles.

use std::time::Duration;

use crate::deflate::DeflateConfig;

/// Everything a connection's behaviour depends on. A driver shares one (behind an `Arc`)
/// among all its connections.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Config {
    /// The largest frame payload accepted (default 16 MiB). Larger: closed with 1009,
    /// checked on the header before any payload is buffered.
    pub max_frame_size: u64,
    /// The largest message accepted, all fragments together (default 64 MiB). Larger:
    /// closed with 1009 as soon as a header announces it. With permessage-deflate it
    /// bounds the inflated size.
    pub max_message_size: u64,
    /// Answer every Ping with a Pong automatically (default true). Pings are reported as
    /// events either way.
    pub auto_pong: bool,
    /// Split outgoing messages into frames of at most this many payload bytes
    /// (default `None`: one frame per message).
    pub fragment_size: Option<usize>,
    /// The largest opening handshake accepted: a request on a server (431 beyond it), a
    /// response on a client (default 16 KiB).
    pub max_handshake_size: usize,
    /// The largest body of a plain HTTP request (no upgrade) a server reads for the
    /// application (default 64 KiB; 413 beyond it). Bodies need a `Content-Length`
    /// (411 for chunked ones); they count toward the handshake timeout.
    pub max_http_body: usize,
    /// Time allowed from the start of a connection to a complete handshake request or
    /// response (default 10 s): slowloris connections are cut off after it.
    pub handshake_timeout: Duration,
    /// Time allowed for the closing handshake, and for writing an HTTP answer, before the
    /// transport is closed anyway (default 5 s).
    pub close_timeout: Duration,
    /// How long a driver that ends the transport first (a server after its closing
    /// handshake, either side after failing a connection or refusing a request) keeps
    /// reading, and discarding, for the peer's end of stream after shutting its own side
    /// down (default 2 s). Closing a socket with input unread answers the peer's next
    /// bytes with a reset, and a peer still sending (a large message over the limit, a
    /// request body) can lose the Close frame or HTTP answer we wrote before it reads
    /// it. `Duration::ZERO` closes at once.
    pub linger_timeout: Duration,
    /// Close with 1001 after this long without receiving anything (default off).
    pub idle_timeout: Option<Duration>,
    /// Send a Ping after this long without receiving anything (default 20 s; `None`
    /// turns keepalive off). A peer that vanished without a FIN (a closed laptop, a NAT
    /// that forgot the flow) is then found within `ping_interval + pong_timeout` (40 s
    /// by default) instead of never; a busy connection sends no Pings at all.
    pub ping_interval: Option<Duration>,
    /// With `ping_interval`: the connection fails (1006) when nothing arrives this long
    /// after the Ping (default 20 s).
    pub pong_timeout: Duration,
    /// permessage-deflate (RFC 7692): `None` (the default) neither offers nor accepts
    /// it. A server accepts the first client offer it can honour; a client offers it and
    /// uses it when the server agrees.
    pub deflate: Option<DeflateConfig>,
}

impl Default for Config {
    fn default() -> Self {
        Config {
            max_frame_size: 16 << 20,
            max_message_size: 64 << 20,
            auto_pong: true,
            fragment_size: None,
            max_handshake_size: 16 << 10,
            max_http_body: 64 << 10,
            handshake_timeout: Duration::from_secs(10),
            close_timeout: Duration::from_secs(5),
            linger_timeout: Duration::from_secs(2),
            idle_timeout: None,
            ping_interval: Some(Duration::from_secs(20)),
            pong_timeout: Duration::from_secs(20),
            deflate: None,
        }
    }
}
