//! permessage-deflate (RFC 7692): negotiation of its parameters in the opening handshake,
//! and the per-connection compressor and decompressor.
//!
//! Negotiation is pure string work on `Sec-WebSocket-Extensions` values: the server picks
//! the first offer it can honour ([`DeflateConfig::accept_offers`]), the client builds its
//! offer ([`DeflateConfig::offer`]) and checks the server's answer
//! ([`DeflateConfig::check_response`]). Either way the result is a [`DeflateParams`],
//! which [`crate::Connection::enable_deflate`] applies.
//!
//! Window bits 8: zlib cannot compress with a 256-byte window (it refuses raw deflate with
//! 8). A deflater with a 512-byte window (9 bits) never refers further back than 250 bytes
//! (its window minus the 262-byte lookahead), so its output is valid for a peer that
//! allowed only 8 bits: 8 is agreed to and 9 is used.

use std::fmt;

use flate2::{Compress, Compression, Decompress, FlushCompress, FlushDecompress, Status};

/// The extension's token.
pub const PERMESSAGE_DEFLATE: &str = "permessage-deflate";
/// The bytes a sync flush ends with, removed from each compressed message (RFC 7692
/// section 7.2.1) and put back before inflating.
const SYNC_TAIL: [u8; 4] = [0x00, 0x00, 0xff, 0xff];

/// What this endpoint asks for and accepts. The defaults compress every message of 64 bytes
/// or more at level 1, with 32 KiB windows and context takeover both ways.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct DeflateConfig {
    /// Ask that the server reset its compression context after each message (client), or
    /// do so whatever the client asks (server). Costs ratio on small similar messages;
    /// lets an idle connection drop its compressor (about 256 KiB with 15 window bits).
    pub server_no_context_takeover: bool,
    /// The same for the client's compression context.
    pub client_no_context_takeover: bool,
    /// Largest window the server compresses with, 8..=15 (default 15).
    pub server_max_window_bits: u8,
    /// Largest window the client compresses with, 8..=15 (default 15).
    pub client_max_window_bits: u8,
    /// Messages shorter than this are sent uncompressed (default 64 bytes).
    pub threshold: usize,
    /// zlib compression level, 0..=9 (default 1: on 64 KiB of JSON-like text about 10 %
    /// faster than 6 end to end, and 1.6x as fast on incompressible bytes; see
    /// `benches/benches/deflate.rs`).
    pub level: u32,
}

impl Default for DeflateConfig {
    fn default() -> Self {
        DeflateConfig {
            server_no_context_takeover: false,
            client_no_context_takeover: false,
            server_max_window_bits: 15,
            client_max_window_bits: 15,
            threshold: 64,
            level: 1,
        }
    }
}

/// The parameters both sides agreed on.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct DeflateParams {
    /// The server resets its compression context after each message.
    pub server_no_context_takeover: bool,
    /// The client resets its compression context after each message.
    pub client_no_context_takeover: bool,
    /// The server's compression window, 8..=15.
    pub server_max_window_bits: u8,
    /// The client's compression window, 8..=15.
    pub client_max_window_bits: u8,
}

/// Why a server's permessage-deflate answer is unacceptable to the client.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum DeflateResponseError {
    /// A parameter unknown, repeated, or with a value it may not have.
    InvalidParameter(String),
    /// `client_max_window_bits` in the answer although the offer did not have it.
    UnofferedClientWindowBits,
    /// A window larger than the one we asked for.
    WindowTooLarge(String),
    /// More than one permessage-deflate answer.
    Repeated,
}

impl fmt::Display for DeflateResponseError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            DeflateResponseError::InvalidParameter(p) => {
                write!(f, "invalid permessage-deflate parameter {p:?}")
            }
            DeflateResponseError::UnofferedClientWindowBits => {
                f.write_str("client_max_window_bits in the answer but not in the offer")
            }
            DeflateResponseError::WindowTooLarge(p) => {
                write!(f, "{p} is larger than the window we asked for")
            }
            DeflateResponseError::Repeated => f.write_str("permessage-deflate answered twice"),
        }
    }
}

impl std::error::Error for DeflateResponseError {}

/// One parsed extension item: its token and parameters (names lower-cased, values
/// unquoted).
#[derive(Debug, PartialEq, Eq)]
struct Item {
    name: String,
    params: Vec<(String, Option<String>)>,
}

/// Splits a `Sec-WebSocket-Extensions` value into items (RFC 6455 section 9.1 grammar,
/// quoted values allowed as RFC 7692 section 7.1 requires). `None` when malformed.
fn parse_items(value: &str) -> Option<Vec<Item>> {
    let mut items = Vec::new();
    // Split on commas and semicolons outside quotes.
    let mut parts: Vec<(String, char)> = Vec::new();
    let mut current = String::new();
    let mut quoted = false;
    for c in value.chars() {
        match c {
            '"' => {
                quoted = !quoted;
                current.push(c);
            }
            ',' | ';' if !quoted => {
                parts.push((std::mem::take(&mut current), c));
            }
            _ => current.push(c),
        }
    }
    if quoted {
        return None;
    }
    parts.push((current, ','));
    let mut item: Option<Item> = None;
    let mut after_separator = ',';
    for (text, separator) in parts {
        let text = text.trim();
        if after_separator == ',' {
            if let Some(done) = item.take() {
                items.push(done);
            }
            if text.is_empty() {
                // Empty list elements are allowed (`a, , b`), empty names are not.
                if separator == ';' {
                    return None;
                }
            } else {
                if !is_token(text) {
                    return None;
                }
                item = Some(Item {
                    name: text.to_ascii_lowercase(),
                    params: Vec::new(),
                });
            }
        } else {
            let current = item.as_mut()?;
            let (name, value) = match text.split_once('=') {
                Some((n, v)) => (n.trim(), Some(unquote(v.trim())?)),
                None => (text, None),
            };
            if !is_token(name) {
                return None;
            }
            current.params.push((name.to_ascii_lowercase(), value));
        }
        after_separator = separator;
    }
    if let Some(done) = item.take() {
        items.push(done);
    }
    Some(items)
}

fn is_token(s: &str) -> bool {
    !s.is_empty()
        && s.bytes()
            .all(|b| b.is_ascii_alphanumeric() || b"!#$%&'*+-.^_`|~".contains(&b))
}

fn unquote(v: &str) -> Option<String> {
    let inner = match v.strip_prefix('"') {
        Some(rest) => rest.strip_suffix('"')?,
        None => v,
    };
    is_token(inner).then(|| inner.to_owned())
}

/// A window-bits value: exactly one to two decimal digits, 8..=15.
fn window_bits(value: &str) -> Option<u8> {
    if value.is_empty() || value.len() > 2 || !value.bytes().all(|b| b.is_ascii_digit()) {
        return None;
    }
    value.parse().ok().filter(|bits| (8..=15).contains(bits))
}

/// An offer's parameters, checked: no unknown name, no repeat, valid values.
#[derive(Default)]
struct Offer {
    server_no_context_takeover: bool,
    client_no_context_takeover: bool,
    server_max_window_bits: Option<u8>,
    /// `Some(None)`: offered without a value.
    client_max_window_bits: Option<Option<u8>>,
}

fn parse_offer(params: &[(String, Option<String>)]) -> Option<Offer> {
    let mut offer = Offer::default();
    let mut seen: Vec<&str> = Vec::new();
    for (name, value) in params {
        if seen.contains(&name.as_str()) {
            return None;
        }
        seen.push(name);
        match (name.as_str(), value.as_deref()) {
            ("server_no_context_takeover", None) => offer.server_no_context_takeover = true,
            ("client_no_context_takeover", None) => offer.client_no_context_takeover = true,
            ("server_max_window_bits", Some(v)) => {
                offer.server_max_window_bits = Some(window_bits(v)?)
            }
            ("client_max_window_bits", None) => offer.client_max_window_bits = Some(None),
            ("client_max_window_bits", Some(v)) => {
                offer.client_max_window_bits = Some(Some(window_bits(v)?))
            }
            _ => return None,
        }
    }
    Some(offer)
}

impl DeflateConfig {
    /// Server side: picks the first permessage-deflate offer in `offers` (the values of
    /// every `Sec-WebSocket-Extensions` header, in order) that can be honoured, and
    /// returns the agreed parameters with the answer for the response header. Offers with
    /// unknown, repeated or invalid parameters are declined (RFC 7692 section 5); `None`
    /// when no offer is acceptable, and the connection then runs without compression.
    pub fn accept_offers(&self, offers: &[&str]) -> Option<(DeflateParams, String)> {
        let ours_server = self.server_max_window_bits.clamp(8, 15);
        let ours_client = self.client_max_window_bits.clamp(8, 15);
        for value in offers {
            let Some(items) = parse_items(value) else {
                continue;
            };
            for item in items.iter().filter(|i| i.name == PERMESSAGE_DEFLATE) {
                let Some(offer) = parse_offer(&item.params) else {
                    continue;
                };
                let server_bits = offer.server_max_window_bits.unwrap_or(15).min(ours_server);
                let client_bits = match offer.client_max_window_bits {
                    // The client cannot limit its window: accept only if we need no limit.
                    None if ours_client < 15 => continue,
                    None => 15,
                    Some(None) => ours_client,
                    Some(Some(bits)) => bits.min(ours_client),
                };
                let params = DeflateParams {
                    server_no_context_takeover: offer.server_no_context_takeover
                        || self.server_no_context_takeover,
                    client_no_context_takeover: offer.client_no_context_takeover
                        || self.client_no_context_takeover,
                    server_max_window_bits: server_bits,
                    client_max_window_bits: client_bits,
                };
                let mut answer = PERMESSAGE_DEFLATE.to_owned();
                if params.server_no_context_takeover {
                    answer.push_str("; server_no_context_takeover");
                }
                if params.client_no_context_takeover {
                    answer.push_str("; client_no_context_takeover");
                }
                if offer.server_max_window_bits.is_some() || server_bits < 15 {
                    answer.push_str(&format!("; server_max_window_bits={server_bits}"));
                }
                if offer.client_max_window_bits.is_some() && client_bits < 15 {
                    answer.push_str(&format!("; client_max_window_bits={client_bits}"));
                }
                return Some((params, answer));
            }
        }
        None
    }

    /// Client side: the offer for the `Sec-WebSocket-Extensions` request header. It
    /// always says `client_max_window_bits` (we can limit our window to whatever the
    /// server asks).
    pub fn offer(&self) -> String {
        let mut offer = PERMESSAGE_DEFLATE.to_owned();
        if self.server_no_context_takeover {
            offer.push_str("; server_no_context_takeover");
        }
        if self.client_no_context_takeover {
            offer.push_str("; client_no_context_takeover");
        }
        let server_bits = self.server_max_window_bits.clamp(8, 15);
        if server_bits < 15 {
            offer.push_str(&format!("; server_max_window_bits={server_bits}"));
        }
        let client_bits = self.client_max_window_bits.clamp(8, 15);
        if client_bits < 15 {
            offer.push_str(&format!("; client_max_window_bits={client_bits}"));
        } else {
            offer.push_str("; client_max_window_bits");
        }
        offer
    }

    /// Client side: checks the server's answer (the extensions it accepted, as
    /// [`crate::handshake::Response::extensions`] lists them) against our
    /// [`offer`](Self::offer). `Ok(None)`: the server declined compression.
    pub fn check_response(
        &self,
        accepted: &[String],
    ) -> Result<Option<DeflateParams>, DeflateResponseError> {
        let mut found = None;
        for value in accepted {
            let items = parse_items(value)
                .ok_or_else(|| DeflateResponseError::InvalidParameter(value.clone()))?;
            for item in items.into_iter().filter(|i| i.name == PERMESSAGE_DEFLATE) {
                if found.is_some() {
                    return Err(DeflateResponseError::Repeated);
                }
                found = Some(self.check_answer(&item)?);
            }
        }
        Ok(found)
    }

    fn check_answer(&self, item: &Item) -> Result<DeflateParams, DeflateResponseError> {
        let invalid = |p: &(String, Option<String>)| {
            let text = match &p.1 {
                Some(v) => format!("{}={v}", p.0),
                None => p.0.clone(),
            };
            DeflateResponseError::InvalidParameter(text)
        };
        let mut seen: Vec<&str> = Vec::new();
        let offered_server = self.server_max_window_bits.clamp(8, 15);
        let offered_client = self.client_max_window_bits.clamp(8, 15);
        let mut params = DeflateParams {
            server_no_context_takeover: false,
            client_no_context_takeover: self.client_no_context_takeover,
            server_max_window_bits: 15,
            client_max_window_bits: offered_client,
        };
        for p in &item.params {
            if seen.contains(&p.0.as_str()) {
                return Err(invalid(p));
            }
            seen.push(&p.0);
            match (p.0.as_str(), p.1.as_deref()) {
                ("server_no_context_takeover", None) => params.server_no_context_takeover = true,
                ("client_no_context_takeover", None) => params.client_no_context_takeover = true,
                ("server_max_window_bits", Some(v)) => {
                    let bits = window_bits(v).ok_or_else(|| invalid(p))?;
                    if bits > offered_server {
                        return Err(DeflateResponseError::WindowTooLarge(format!(
                            "server_max_window_bits={bits}"
                        )));
                    }
                    params.server_max_window_bits = bits;
                }
                ("client_max_window_bits", Some(v)) => {
                    let bits = window_bits(v).ok_or_else(|| invalid(p))?;
                    if bits > offered_client {
                        return Err(DeflateResponseError::WindowTooLarge(format!(
                            "client_max_window_bits={bits}"
                        )));
                    }
                    params.client_max_window_bits = bits;
                }
                _ => return Err(invalid(p)),
            }
        }
        if self.server_no_context_takeover && !params.server_no_context_takeover {
            // We asked; the server must agree (RFC 7692 section 7.1.1.1).
            return Err(DeflateResponseError::InvalidParameter(
                "server_no_context_takeover missing from the answer".into(),
            ));
        }
        Ok(params)
    }
}

/// Inflating failed.
#[derive(Clone, Debug, PartialEq, Eq)]
pub(crate) enum InflateError {
    /// The compressed data is not valid DEFLATE.
    Corrupt,
    /// The inflated message is larger than the limit.
    TooLarge(u64),
}

/// The compression state of one connection: one direction compresses, the other
/// inflates. Both zlib streams are made on first use and dropped by
/// [`release`](Self::release) when no context has to be kept.
pub(crate) struct DeflateCodec {
    /// What the handshake agreed.
    pub(crate) params: DeflateParams,
    /// Reset our compressor after each message.
    reset_compressor: bool,
    /// Reset the inflater after each message.
    reset_decompressor: bool,
    compress_bits: u8,
    decompress_bits: u8,
    level: u32,
    /// Messages shorter than this go uncompressed.
    pub(crate) threshold: usize,
    compressor: Option<Box<Compress>>,
    decompressor: Option<Box<Decompress>>,
}

impl fmt::Debug for DeflateCodec {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("DeflateCodec")
            .field("compress_bits", &self.compress_bits)
            .field("decompress_bits", &self.decompress_bits)
            .finish_non_exhaustive()
    }
}

impl DeflateCodec {
    /// The codec for `params`, on the server side when `server`.
    pub(crate) fn new(params: &DeflateParams, server: bool, threshold: usize, level: u32) -> Self {
        let (ours, theirs) = if server {
            (
                (
                    params.server_no_context_takeover,
                    params.server_max_window_bits,
                ),
                (
                    params.client_no_context_takeover,
                    params.client_max_window_bits,
                ),
            )
        } else {
            (
                (
                    params.client_no_context_takeover,
                    params.client_max_window_bits,
                ),
                (
                    params.server_no_context_takeover,
                    params.server_max_window_bits,
                ),
            )
        };
        DeflateCodec {
            params: *params,
            reset_compressor: ours.0,
            reset_decompressor: theirs.0,
            // zlib's smallest raw window is 9 bits, and it never reaches further back
            // than 250 bytes with it: valid for an agreed 8 (see the module doc).
            compress_bits: ours.1.clamp(9, 15),
            // Inflating needs at least the peer's window; 9 also covers a peer at 8.
            decompress_bits: theirs.1.clamp(9, 15),
            level: level.min(9),
            threshold,
            compressor: None,
            decompressor: None,
        }
    }

    /// Appends `data` compressed, with the sync-flush tail removed, to `out`.
    pub(crate) fn compress(&mut self, data: &[u8], out: &mut Vec<u8>) {
        let (level, bits) = (self.level, self.compress_bits);
        let compressor = self.compressor.get_or_insert_with(|| {
            Box::new(Compress::new_with_window_bits(
                Compression::new(level),
                false,
                bits,
            ))
        });
        let start = out.len();
        let mut input = data;
        loop {
            out.reserve((input.len() / 2).max(64));
            let before = compressor.total_in();
            // Only fails on a stream error, which a valid stream never has.
            let _ = compressor.compress_vec(input, out, FlushCompress::Sync);
            let used = (compressor.total_in() - before) as usize;
            input = &input[used..];
            // Done when everything went in and zlib had room to spare for the flush.
            if input.is_empty() && out.len() < out.capacity() {
                break;
            }
        }
        if out[start..].ends_with(&SYNC_TAIL) {
            out.truncate(out.len() - SYNC_TAIL.len());
        } else {
            // zlib writes nothing for a flush with no new input right after a flush (an
            // empty message under context takeover). The message must still end with an
            // empty stored block (RFC 7692 section 7.2.1); the stream is byte-aligned
            // after the last flush, so that block is 00 00 00 ff ff, sent as 00.
            debug_assert_eq!(out.len(), start, "a sync flush ends with 00 00 ff ff");
            out.push(0x00);
        }
        if self.reset_compressor {
            compressor.reset();
        }
    }

    /// Inflates `input` (part of a compressed message) onto `out`, failing once `out`
    /// would exceed `max` bytes: the limit applies to the inflated size, so a small bomb
    /// cannot allocate more than `max`.
    pub(crate) fn inflate(
        &mut self,
        input: &[u8],
        out: &mut Vec<u8>,
        max: u64,
    ) -> Result<(), InflateError> {
        self.inflate_with(input, out, max, FlushDecompress::None)
    }

    /// Ends a compressed message: inflates the sync-flush tail the sender removed.
    pub(crate) fn finish_message(
        &mut self,
        out: &mut Vec<u8>,
        max: u64,
    ) -> Result<(), InflateError> {
        let result = self.inflate_with(&SYNC_TAIL, out, max, FlushDecompress::Sync);
        if self.reset_decompressor {
            if let Some(d) = &mut self.decompressor {
                d.reset(false);
            }
        }
        result
    }

    fn inflate_with(
        &mut self,
        mut input: &[u8],
        out: &mut Vec<u8>,
        max: u64,
        flush: FlushDecompress,
    ) -> Result<(), InflateError> {
        let bits = self.decompress_bits;
        let decompressor = self
            .decompressor
            .get_or_insert_with(|| Box::new(Decompress::new_with_window_bits(false, bits)));
        // One byte beyond the limit is allowed into the buffer, to detect the excess.
        let cap = usize::try_from(max).unwrap_or(usize::MAX).saturating_add(1);
        loop {
            if out.len() == out.capacity() {
                let room = cap.saturating_sub(out.len());
                if room == 0 {
                    return Err(InflateError::TooLarge(out.len() as u64));
                }
                out.reserve_exact(
                    (input.len().saturating_mul(4))
                        .clamp(4096, 1 << 20)
                        .min(room),
                );
            }
            let (before_in, before_out) = (decompressor.total_in(), decompressor.total_out());
            let status = decompressor
                .decompress_vec(input, out, flush)
                .map_err(|_| InflateError::Corrupt)?;
            if out.len() as u64 > max {
                return Err(InflateError::TooLarge(out.len() as u64));
            }
            let used = (decompressor.total_in() - before_in) as usize;
            let produced = decompressor.total_out() - before_out;
            input = &input[used..];
            if status == Status::StreamEnd {
                // A block with BFINAL set ends the DEFLATE stream (RFC 7692 section
                // 7.2.3.4 allows it): the next message starts a new one. Only the tail we
                // appended may follow it.
                decompressor.reset(false);
                return if input.is_empty() || flush == FlushDecompress::Sync {
                    Ok(())
                } else {
                    Err(InflateError::Corrupt)
                };
            }
            if input.is_empty() && out.len() < out.capacity() {
                return Ok(());
            }
            if used == 0 && produced == 0 && out.len() < out.capacity() {
                // No progress with room to spare: zlib needs more input than there is.
                return Ok(());
            }
        }
    }

    /// True while [`release`](Self::release) would free a zlib stream.
    pub(crate) fn holds_releasable(&self) -> bool {
        (self.reset_compressor && self.compressor.is_some())
            || (self.reset_decompressor && self.decompressor.is_some())
    }

    /// Drops the zlib streams when no context needs keeping (for idle connections):
    /// a compressor reset after each message, an inflater likewise.
    pub(crate) fn release(&mut self) {
        if self.reset_compressor {
            self.compressor = None;
        }
        if self.reset_decompressor {
            self.decompressor = None;
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn accept(config: &DeflateConfig, offers: &[&str]) -> Option<String> {
        config.accept_offers(offers).map(|(_, answer)| answer)
    }

    #[test]
    fn server_accepts_the_first_acceptable_offer_and_answers_each_parameter() {
        let ours = DeflateConfig::default();
        assert_eq!(
            accept(&ours, &["permessage-deflate"]).as_deref(),
            Some("permessage-deflate")
        );
        assert_eq!(
            accept(&ours, &["permessage-deflate; client_max_window_bits"]).as_deref(),
            Some("permessage-deflate")
        );
        assert_eq!(
            accept(
                &ours,
                &["permessage-deflate; server_max_window_bits=10; client_no_context_takeover"]
            )
            .as_deref(),
            Some("permessage-deflate; client_no_context_takeover; server_max_window_bits=10")
        );
        // Unknown parameter, repeated parameter, bad value: declined, next offer taken.
        assert_eq!(
            accept(
                &ours,
                &["permessage-deflate; foo, permessage-deflate; server_no_context_takeover; server_no_context_takeover",
                  "permessage-deflate; server_max_window_bits=16, permessage-deflate; server_max_window_bits=\"9\""]
            )
            .as_deref(),
            Some("permessage-deflate; server_max_window_bits=9")
        );
        assert_eq!(accept(&ours, &["x-webkit-deflate-frame"]), None);
        assert_eq!(
            accept(&ours, &["permessage-deflate; server_max_window_bits"]),
            None
        );
        assert_eq!(
            accept(&ours, &["permessage-deflate; client_max_window_bits=7"]),
            None
        );
        assert_eq!(
            accept(&ours, &["permessage-deflate; server_max_window_bits=08"]).as_deref(),
            Some("permessage-deflate; server_max_window_bits=8")
        );
    }

    #[test]
    fn server_limits_from_its_own_config() {
        let ours = DeflateConfig {
            server_no_context_takeover: true,
            client_max_window_bits: 10,
            server_max_window_bits: 12,
            ..DeflateConfig::default()
        };
        let (params, answer) = ours
            .accept_offers(&["permessage-deflate; client_max_window_bits"])
            .unwrap();
        assert_eq!(
            answer,
            "permessage-deflate; server_no_context_takeover; server_max_window_bits=12; client_max_window_bits=10"
        );
        assert_eq!(params.client_max_window_bits, 10);
        // A client that cannot limit its window is declined when we need a limit.
        assert_eq!(ours.accept_offers(&["permessage-deflate"]), None);
    }

    #[test]
    fn client_offer_and_answer_checks() {
        let ours = DeflateConfig::default();
        assert_eq!(ours.offer(), "permessage-deflate; client_max_window_bits");
        let ok = |answer: &str| ours.check_response(&[answer.to_owned()]);
        assert_eq!(
            ok("permessage-deflate; server_no_context_takeover; client_max_window_bits=9"),
            Ok(Some(DeflateParams {
                server_no_context_takeover: true,
                client_no_context_takeover: false,
                server_max_window_bits: 15,
                client_max_window_bits: 9,
            }))
        );
        assert!(ok("permessage-deflate; foo").is_err());
        assert!(ok("permessage-deflate; client_max_window_bits").is_err());
        assert!(ok("permessage-deflate; server_max_window_bits=16").is_err());
        assert_eq!(ours.check_response(&[]), Ok(None));
        let small = DeflateConfig {
            server_max_window_bits: 10,
            server_no_context_takeover: true,
            ..DeflateConfig::default()
        };
        assert_eq!(
            small.offer(),
            "permessage-deflate; server_no_context_takeover; server_max_window_bits=10; client_max_window_bits"
        );
        assert!(matches!(
            small.check_response(&[
                "permessage-deflate; server_no_context_takeover; server_max_window_bits=11".into()
            ]),
            Err(DeflateResponseError::WindowTooLarge(_))
        ));
        assert!(small
            .check_response(&["permessage-deflate; server_max_window_bits=10".into()])
            .is_err());
    }

    #[test]
    fn compress_strips_the_tail_and_inflate_restores_it() {
        let params = DeflateParams {
            server_no_context_takeover: false,
            client_no_context_takeover: false,
            server_max_window_bits: 15,
            client_max_window_bits: 15,
        };
        let mut server = DeflateCodec::new(&params, true, 0, 6);
        let mut client = DeflateCodec::new(&params, false, 0, 6);
        // RFC 7692 section 7.2.3.1: "Hello" compressed without context.
        let mut wire = Vec::new();
        server.compress(b"Hello", &mut wire);
        assert_eq!(wire, [0xf2, 0x48, 0xcd, 0xc9, 0xc9, 0x07, 0x00]);
        let mut out = Vec::new();
        client.inflate(&wire, &mut out, 100).unwrap();
        client.finish_message(&mut out, 100).unwrap();
        assert_eq!(out, b"Hello");
        // Section 7.2.3.2: the second "Hello" refers back to the first.
        wire.clear();
        server.compress(b"Hello", &mut wire);
        assert_eq!(wire, [0xf2, 0x00, 0x11, 0x00, 0x00]);
        out.clear();
        client.inflate(&wire, &mut out, 100).unwrap();
        client.finish_message(&mut out, 100).unwrap();
        assert_eq!(out, b"Hello");
    }

    #[test]
    fn empty_messages_end_with_an_empty_stored_block() {
        let params = DeflateParams {
            server_no_context_takeover: false,
            client_no_context_takeover: false,
            server_max_window_bits: 15,
            client_max_window_bits: 15,
        };
        let mut server = DeflateCodec::new(&params, true, 0, 6);
        let mut client = DeflateCodec::new(&params, false, 0, 6);
        // Regression: after a flush zlib writes nothing for no input, and the peer then
        // read the next message's bytes as the length of a stored block.
        for message in [&b""[..], b"Hello", b"", b"", b"Hello"] {
            let mut wire = Vec::new();
            server.compress(message, &mut wire);
            if message.is_empty() {
                assert_eq!(wire, [0x00]);
            }
            let mut out = Vec::new();
            client.inflate(&wire, &mut out, 100).unwrap();
            client.finish_message(&mut out, 100).unwrap();
            assert_eq!(out, message);
        }
    }

    #[test]
    fn inflated_size_is_capped() {
        let params = DeflateParams {
            server_no_context_takeover: true,
            client_no_context_takeover: true,
            server_max_window_bits: 15,
            client_max_window_bits: 15,
        };
        let mut server = DeflateCodec::new(&params, true, 0, 9);
        let mut client = DeflateCodec::new(&params, false, 0, 9);
        let bomb = vec![0u8; 10 << 20];
        let mut wire = Vec::new();
        server.compress(&bomb, &mut wire);
        assert!(wire.len() < 20 << 10, "{}", wire.len());
        let mut out = Vec::new();
        let result = client
            .inflate(&wire, &mut out, 1 << 20)
            .and_then(|()| client.finish_message(&mut out, 1 << 20));
        assert_eq!(result, Err(InflateError::TooLarge((1 << 20) + 1)));
        assert!(out.capacity() <= (1 << 20) + 1, "{}", out.capacity());
        // A reserved block type (BTYPE 11).
        let mut fresh = DeflateCodec::new(&params, false, 0, 9);
        assert_eq!(
            fresh.inflate(&[0xff, 0xff, 0xff], &mut Vec::new(), 100),
            Err(InflateError::Corrupt)
        );
    }
}
