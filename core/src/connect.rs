//! The client's opening handshake as one sans-IO object: a [`Connector`] writes the
//! request, reads the response within [`Config::handshake_timeout`], and becomes a
//! [`Connection`] with the agreed subprotocol and permessage-deflate.
//!
//! ```
//! use std::time::Instant;
//! use ws6455_core::connect::Connector;
//! use ws6455_core::handshake::ClientRequest;
//! use ws6455_core::{Config, FixedRandom};
//!
//! let now = Instant::now();
//! let request = ClientRequest { host: "example.com", resource: "/chat", ..Default::default() };
//! let random = Box::new(FixedRandom::new(&[7]));
//! let connector = Connector::new(&request, Config::default(), random, now).unwrap();
//! assert!(connector.pending_output().starts_with(b"GET /chat HTTP/1.1\r\n"));
//! ```

use std::sync::Arc;
use std::time::Instant;

use crate::config::Config;
use crate::connection::Connection;
use crate::handshake::{
    ClientHandshake, ClientHandshakeError, ClientRequest, InvalidHeader, Response,
};
use crate::random::RandomSource;

/// A client connection during its opening handshake.
pub struct Connector {
    handshake: ClientHandshake,
    request: Vec<u8>,
    sent: usize,
    config: Arc<Config>,
    /// For the masking keys of the connection to come (taken when it is made).
    random: Option<Box<dyn RandomSource>>,
    deadline: Instant,
}

impl std::fmt::Debug for Connector {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Connector")
            .field("request_unsent", &(self.request.len() - self.sent))
            .field("deadline", &self.deadline)
            .finish_non_exhaustive()
    }
}

/// The opening handshake is done.
#[derive(Debug)]
pub struct Connected {
    /// The open connection; it keeps the frames that came right after the response for
    /// its first [`Connection::receive`].
    pub connection: Connection,
    /// The server's 101: headers (e.g. `Set-Cookie`), subprotocol, extensions.
    pub response: Response,
}

impl Connector {
    /// Writes the request (with a fresh key from `random`, and a permessage-deflate offer
    /// when [`Config::deflate`] is set) for a connection started at `now`. Fails when an
    /// extra header would break the request (CR/LF in a value, a bad name).
    pub fn new(
        request: &ClientRequest<'_>,
        config: impl Into<Arc<Config>>,
        mut random: Box<dyn RandomSource>,
        now: Instant,
    ) -> Result<Connector, InvalidHeader> {
        let config = config.into();
        let offer = config.deflate.as_ref().map(|deflate| deflate.offer());
        let mut extensions: Vec<&str> = request.extensions.to_vec();
        extensions.extend(offer.as_deref());
        let request = ClientRequest {
            extensions: &extensions,
            ..request.clone()
        };
        let mut bytes = Vec::new();
        let handshake = ClientHandshake::new(
            &request,
            &mut *random,
            config.max_handshake_size,
            &mut bytes,
        )?;
        Ok(Connector {
            handshake,
            request: bytes,
            sent: 0,
            deadline: now + config.handshake_timeout,
            config,
            random: Some(random),
        })
    }

    /// The request bytes still to write.
    pub fn pending_output(&self) -> &[u8] {
        &self.request[self.sent..]
    }

    /// Records that the transport took `n` more bytes of the request.
    pub fn consume_output(&mut self, n: usize) {
        self.sent = (self.sent + n).min(self.request.len());
    }

    /// Takes bytes from the server at `now`. Returns the open connection once the 101 is
    /// complete and valid, `Ok(None)` while it is not; any other answer is an error (a
    /// refusal carries the HTTP status). After success or failure, input is ignored.
    pub fn receive_data(
        &mut self,
        now: Instant,
        data: &[u8],
    ) -> Result<Option<Connected>, ClientHandshakeError> {
        if self.random.is_none() {
            return Ok(None);
        }
        let response = match self.handshake.receive_data(data) {
            Ok(None) => return Ok(None),
            Ok(Some(response)) => response,
            Err(error) => {
                self.random = None;
                return Err(error);
            }
        };
        let Some(random) = self.random.take() else {
            return Ok(None);
        };
        let deflate = match &self.config.deflate {
            Some(ours) => ours
                .check_response(&response.extensions)
                .map_err(ClientHandshakeError::Extension)?
                .map(|params| (ours, params)),
            None => None,
        };
        let mut connection = Connection::client(self.config.clone(), random);
        if let Some((ours, params)) = &deflate {
            connection.enable_deflate(params, ours);
        }
        let early = self.handshake.leftover().to_vec();
        connection.after_handshake(Vec::new(), early, now);
        Ok(Some(Connected {
            connection,
            response,
        }))
    }

    /// The handshake deadline, while it runs.
    pub fn poll_timeout(&self) -> Option<Instant> {
        self.random.is_some().then_some(self.deadline)
    }

    /// True when the response did not come in time: the driver closes the transport.
    pub fn handle_timeout(&mut self, now: Instant) -> bool {
        self.random.is_some() && now >= self.deadline
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::accept::{Acceptor, Choices};
    use crate::{DeflateConfig, Event, FixedRandom, Message};
    use std::time::Duration;

    #[test]
    fn connector_and_acceptor_agree_and_frames_flow_at_once() {
        let now = Instant::now();
        let config = Config {
            deflate: Some(DeflateConfig::default()),
            ..Config::default()
        };
        let request = ClientRequest {
            host: "localhost",
            resource: "/",
            subprotocols: &["chat"],
            ..Default::default()
        };
        let random = Box::new(FixedRandom::new(&[1, 2, 3]));
        let mut connector = Connector::new(&request, config.clone(), random, now).unwrap();
        let mut acceptor = Acceptor::new(config, now);
        let accepted = acceptor
            .receive_data(now, connector.pending_output())
            .unwrap()
            .unwrap();
        let choices = Choices {
            subprotocol: Some("chat".into()),
            ..Choices::default()
        };
        let mut server = accepted.accept(&choices, now).unwrap();
        server.send_text("welcome").unwrap();
        let mut wire = Vec::new();
        while server.wants_write() {
            wire.extend_from_slice(server.pending_output());
            let n = server.pending_output().len();
            server.consume_output(n);
        }
        let Connected {
            mut connection,
            response,
        } = connector.receive_data(now, &wire).unwrap().unwrap();
        assert_eq!(response.subprotocol.as_deref(), Some("chat"));
        assert!(connection.deflate_params().is_some());
        assert_eq!(connector.poll_timeout(), None);
        let mut none: &[u8] = &[];
        assert_eq!(
            connection.receive(now, &mut none).unwrap(),
            Some(Event::Message(Message::Text("welcome".into())))
        );
    }

    #[test]
    fn refusals_and_silence_end_the_handshake() {
        let now = Instant::now();
        let request = ClientRequest {
            host: "h",
            ..Default::default()
        };
        let random = || Box::new(FixedRandom::new(&[1]));
        let mut connector = Connector::new(&request, Config::default(), random(), now).unwrap();
        let error = connector
            .receive_data(now, b"HTTP/1.1 403 Forbidden\r\n\r\n")
            .unwrap_err();
        assert!(matches!(
            error,
            ClientHandshakeError::Rejected { status: 403, .. }
        ));
        assert_eq!(connector.poll_timeout(), None);

        let mut connector = Connector::new(&request, Config::default(), random(), now).unwrap();
        assert!(!connector.handle_timeout(now + Duration::from_secs(9)));
        assert!(connector.handle_timeout(now + Duration::from_secs(10)));
    }
}
