//! [`Sender`]: a cheap, cloneable handle that queues messages for a
//! [`WebSocketStream`](crate::WebSocketStream) from any task or thread. The stream takes
//! them from the queue whenever it is polled and its output is below the cap.

use std::fmt;
use std::task::{Context, Poll};

use tokio::sync::mpsc;
use ws6455_core::close::{check_close, Closer};
use ws6455_core::connection::check_control;

use crate::stream::Message;

/// How many messages a stream's [`Sender`] queue holds before [`Sender::send`] waits.
pub const QUEUE_CAPACITY: usize = 64;

/// Sends on one connection from any task or thread; clones share one queue. Made by
/// [`WebSocketStream::sender`](crate::WebSocketStream::sender).
///
/// A message is checked when it is queued (a Close by the core's rules: 1000 or
/// 3000-4999, a reason of at most 123 bytes; a Ping or Pong payload of at most 125
/// bytes), then written by the task that reads the stream, in queue order. Once the
/// connection is closing, sends fail with [`SenderError::Closed`], and messages still
/// queued then are dropped.
#[derive(Clone)]
pub struct Sender {
    queue: mpsc::Sender<Message>,
}

impl fmt::Debug for Sender {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Sender")
            .field("closed", &self.is_closed())
            .finish()
    }
}

/// Why a [`Sender`] did not queue a message.
#[derive(Debug)]
#[non_exhaustive]
pub enum SenderError {
    /// The connection is closing or over (or its stream was dropped): the message back.
    Closed(Message),
    /// The queue is full ([`Sender::try_send`] only): the message back.
    Full(Message),
    /// The core's rules refuse the message (a close code, a reason or control payload
    /// too long).
    Invalid(ws6455_core::SendError),
}

impl fmt::Display for SenderError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            SenderError::Closed(_) => f.write_str("the connection is closing or closed"),
            SenderError::Full(_) => f.write_str("the send queue is full"),
            SenderError::Invalid(e) => write!(f, "refused: {e}"),
        }
    }
}

impl std::error::Error for SenderError {}

impl Sender {
    /// Queues `message`, waiting while the queue is full. Cancel-safe: dropped while it
    /// waits, nothing was queued.
    pub async fn send(&self, message: Message) -> Result<(), SenderError> {
        check(&message)?;
        self.queue
            .send(message)
            .await
            .map_err(|refused| SenderError::Closed(refused.0))
    }

    /// Queues `message` if there is room now.
    pub fn try_send(&self, message: Message) -> Result<(), SenderError> {
        check(&message)?;
        self.queue.try_send(message).map_err(|e| match e {
            mpsc::error::TrySendError::Full(m) => SenderError::Full(m),
            mpsc::error::TrySendError::Closed(m) => SenderError::Closed(m),
        })
    }

    /// Queues `message` from a thread outside the runtime, blocking while the queue is
    /// full. Panics when called from async code (tokio's rule: use [`send`](Self::send)
    /// there).
    pub fn blocking_send(&self, message: Message) -> Result<(), SenderError> {
        check(&message)?;
        self.queue
            .blocking_send(message)
            .map_err(|refused| SenderError::Closed(refused.0))
    }

    /// True once the connection is closing or over: sends fail.
    pub fn is_closed(&self) -> bool {
        self.queue.is_closed()
    }
}

/// The core's rules for what an application may send, applied before queueing.
fn check(message: &Message) -> Result<(), SenderError> {
    let checked = match message {
        Message::Close(Some(frame)) => check_close(frame.code, &frame.reason, Closer::Application),
        Message::Ping(payload) | Message::Pong(payload) => check_control(payload),
        _ => Ok(()),
    };
    checked.map_err(SenderError::Invalid)
}

/// The stream's end of its senders' queue. It keeps a sender of its own, so that
/// [`WebSocketStream::sender`](crate::WebSocketStream::sender) can hand out more.
#[derive(Debug)]
pub(crate) struct Queue {
    sender: mpsc::Sender<Message>,
    receiver: mpsc::Receiver<Message>,
}

impl Queue {
    pub(crate) fn new(capacity: usize) -> Queue {
        let (sender, receiver) = mpsc::channel(capacity);
        Queue { sender, receiver }
    }

    pub(crate) fn sender(&self) -> Sender {
        Sender {
            queue: self.sender.clone(),
        }
    }

    /// The next queued message; registers the wake-up when there is none.
    pub(crate) fn poll_recv(&mut self, cx: &mut Context<'_>) -> Poll<Option<Message>> {
        self.receiver.poll_recv(cx)
    }

    /// Refuses further sends and drops what is queued.
    pub(crate) fn close(&mut self) {
        self.receiver.close();
        while self.receiver.try_recv().is_ok() {}
    }
}
