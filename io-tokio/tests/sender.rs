//! Sending from elsewhere: `Sender` handles from other tasks and from plain threads, and
//! the halves of `split` used from two tasks, over real sockets.

use std::time::Duration;

use futures_util::{SinkExt, StreamExt};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::{TcpListener, TcpStream};
use ws6455_tokio::{
    accept, connect, CloseCode, CloseFrame, MaybeTlsStream, Message, Options, SenderError,
    WebSocketStream,
};

const WAIT: Duration = Duration::from_secs(10);

async fn within<T>(f: impl std::future::Future<Output = T>) -> T {
    tokio::time::timeout(WAIT, f).await.expect("in time")
}

/// A server connection and the client connected to it.
async fn pair() -> (WebSocketStream<TcpStream>, WebSocketStream<MaybeTlsStream>) {
    let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let url = format!("ws://{}/", listener.local_addr().unwrap());
    let server = async {
        let (tcp, _) = listener.accept().await.unwrap();
        accept(tcp, &Options::default()).await.unwrap()
    };
    let client = async { connect(&url, &Options::default()).await.unwrap().0 };
    within(async { tokio::join!(server, client) }).await
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn senders_on_tasks_and_threads_are_written_in_order_by_the_reader() {
    let (mut server, mut client) = pair().await;
    let sender = server.sender();
    // The server reads (and so writes what is queued) until the close handshake ends.
    let reading = tokio::spawn(async move {
        let mut seen = Vec::new();
        while let Some(message) = server.next().await {
            seen.push(message.unwrap());
        }
        seen
    });
    let from_thread = sender.clone();
    let thread = std::thread::spawn(move || {
        for i in 0..100 {
            from_thread
                .blocking_send(Message::Text(format!("thread {i}")))
                .unwrap();
        }
    });
    let from_task = sender.clone();
    let task = tokio::spawn(async move {
        for i in 0..100 {
            from_task
                .send(Message::Binary(vec![i as u8; 1000 * i]))
                .await
                .unwrap();
        }
    });
    let (mut texts, mut binaries) = (Vec::new(), Vec::new());
    while texts.len() + binaries.len() < 200 {
        match within(client.next()).await.unwrap().unwrap() {
            Message::Text(text) => texts.push(text),
            Message::Binary(data) => binaries.push(data),
            other => panic!("unexpected {other:?}"),
        }
    }
    thread.join().unwrap();
    task.await.unwrap();
    // Each sender's messages arrive in the order it queued them.
    let expected: Vec<String> = (0..100).map(|i| format!("thread {i}")).collect();
    assert_eq!(texts, expected);
    for (i, data) in binaries.iter().enumerate() {
        assert_eq!(data, &vec![i as u8; 1000 * i]);
    }

    // A sender closes the connection like the sink would; later sends are refused.
    let bad = CloseFrame {
        code: CloseCode(1005),
        reason: String::new(),
    };
    assert!(matches!(
        sender.send(Message::Close(Some(bad))).await,
        Err(SenderError::Invalid(_))
    ));
    assert!(matches!(
        sender.try_send(Message::Ping(vec![0; 126])),
        Err(SenderError::Invalid(_))
    ));
    let bye = CloseFrame {
        code: CloseCode(4000),
        reason: "bye".into(),
    };
    sender
        .send(Message::Close(Some(bye.clone())))
        .await
        .unwrap();
    assert_eq!(
        within(client.next()).await.unwrap().unwrap(),
        Message::Close(Some(bye))
    );
    assert!(within(client.next()).await.is_none());
    within(reading).await.unwrap();
    assert!(sender.is_closed());
    assert!(matches!(
        sender.send(Message::Text("late".into())).await,
        Err(SenderError::Closed(Message::Text(_)))
    ));
}

#[tokio::test]
async fn a_dropped_stream_closes_its_senders() {
    let (mut server, _client) = pair().await;
    let sender = server.sender();
    drop(server);
    assert!(matches!(
        sender.try_send(Message::Text("x".into())),
        Err(SenderError::Closed(_))
    ));
}

/// After `split`, the transport wakes only the task that polled it last. A sink whose
/// flush waits for the socket must still be woken when the reading task is the one the
/// socket wakes (regression: the sink's send never completed). One thread, so that the
/// polls come in the order described.
#[tokio::test]
async fn a_sink_waiting_on_the_socket_is_woken_through_the_reading_half() {
    let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    let peer = tokio::spawn(async move {
        let (mut tcp, _) = listener.accept().await.unwrap();
        let mut request = vec![0; 4096];
        let n = tcp.read(&mut request).await.unwrap();
        let request = String::from_utf8_lossy(&request[..n]).into_owned();
        let key = request
            .lines()
            .find_map(|l| l.strip_prefix("Sec-WebSocket-Key: "))
            .unwrap();
        let accept = ws6455_core::handshake::accept_key(key);
        let answer = format!(
            "HTTP/1.1 101 Switching Protocols\r\nUpgrade: websocket\r\n\
             Connection: Upgrade\r\nSec-WebSocket-Accept: {accept}\r\n\r\n"
        );
        tcp.write_all(answer.as_bytes()).await.unwrap();
        // Let the client's sink fill the socket and wait, then make its reader poll
        // (and so take the socket's write wake-up) with a message, then read it all.
        tokio::time::sleep(Duration::from_millis(300)).await;
        tcp.write_all(&[0x81, 0x02, b'h', b'i']).await.unwrap();
        let mut sink = vec![0; 1 << 16];
        let mut total = 0;
        while total < 8 << 20 {
            let n = tcp.read(&mut sink).await.unwrap();
            assert!(n > 0);
            total += n;
        }
    });
    let (ws, _) = connect(&format!("ws://{addr}/"), &Options::default())
        .await
        .unwrap();
    let (mut write, mut read) = ws.split();
    let reader = tokio::spawn(async move {
        let first = read.next().await.unwrap().unwrap();
        assert_eq!(first, Message::Text("hi".into()));
        // Keep polling, as an application reading the connection does.
        while let Some(Ok(_)) = read.next().await {}
    });
    // It completes well within a second; without the hand-over, only when some other
    // event happens to poll the sink again (here the bound of `within`, seconds later).
    let started = std::time::Instant::now();
    within(write.send(Message::Binary(vec![7; 8 << 20])))
        .await
        .unwrap();
    let took = started.elapsed();
    assert!(took < Duration::from_secs(3), "the sink waited {took:?}");
    within(peer).await.unwrap();
    reader.abort();
}
