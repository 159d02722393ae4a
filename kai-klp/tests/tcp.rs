//! Sessions over real TCP on loopback, and garbage from a peer that does not speak KLP.
#![cfg(feature = "tcp")]
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic, missing_docs)]

use kai_klp::sealed::{Envelope, MessageKind};
use kai_klp::session::{TcpTransport, accept, connect};
use kai_klp::{Error, Identity};
use tokio::io::AsyncWriteExt as _;
use tokio::net::{TcpListener, TcpStream};

#[tokio::test]
async fn a_session_over_loopback_tcp() {
    let (alice, bob) = (Identity::generate(), Identity::generate());
    let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let address = listener.local_addr().unwrap();
    let bob_secret = bob.secret_bytes();
    let server = tokio::spawn(async move {
        let (stream, _) = listener.accept().await.unwrap();
        let mut session = accept(Identity::from_secret_bytes(&bob_secret), TcpTransport::new(stream))
            .await
            .unwrap();
        let request = session.recv().await.unwrap();
        let me = Identity::from_secret_bytes(&bob_secret);
        let reply = Envelope::new(
            &me,
            &request.from,
            MessageKind::CallResponse,
            serde_json::json!({"echo": request.body}),
        );
        session.send(&reply).await.unwrap();
    });
    let stream = TcpStream::connect(address).await.unwrap();
    let bob_did = bob.did();
    let mut session = connect(
        Identity::from_secret_bytes(&alice.secret_bytes()),
        Some(&bob_did),
        TcpTransport::new(stream),
    )
    .await
    .unwrap();
    session
        .send(&Envelope::new(
            &alice,
            &bob.did(),
            MessageKind::CallRequest,
            serde_json::json!("ping"),
        ))
        .await
        .unwrap();
    let reply = session.recv().await.unwrap();
    assert_eq!(reply.body["echo"], "ping");
    server.await.unwrap();
    assert!(matches!(session.recv().await, Err(Error::SessionClosed)));
}

#[tokio::test]
async fn garbage_from_the_peer_is_an_error_not_a_panic_or_a_huge_allocation() {
    let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let address = listener.local_addr().unwrap();
    tokio::spawn(async move {
        let (mut stream, _) = listener.accept().await.unwrap();
        // An HTTP request where a frame length should be: 0x47455420 ("GET ") is ~1.2 GB.
        stream.write_all(b"GET / HTTP/1.1\r\n\r\n").await.unwrap();
    });
    let stream = TcpStream::connect(address).await.unwrap();
    let result = connect(Identity::generate(), None, TcpTransport::new(stream)).await;
    assert!(
        matches!(result, Err(Error::SessionBroken { .. }) | Err(Error::Handshake { .. })),
        "{result:?}"
    );
}

#[tokio::test]
async fn waiting_for_a_frame_can_time_out_without_losing_the_bytes_already_read() {
    use kai_klp::session::FrameTransport as _;
    let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let address = listener.local_addr().unwrap();
    let (go_on, wait) = tokio::sync::oneshot::channel::<()>();
    let writer = tokio::spawn(async move {
        let (mut stream, _) = listener.accept().await.unwrap();
        // One frame of 6 bytes, sent in two parts with a pause in between.
        stream.write_all(&[0, 0, 0, 6, b'h', b'e']).await.unwrap();
        wait.await.unwrap();
        stream.write_all(b"llo!").await.unwrap();
        stream
    });
    let mut transport = TcpTransport::new(TcpStream::connect(address).await.unwrap());
    let early = tokio::time::timeout(std::time::Duration::from_millis(200), transport.recv()).await;
    assert!(early.is_err(), "only part of the frame has arrived");
    go_on.send(()).unwrap();
    assert_eq!(transport.recv().await.unwrap(), b"hello!");
    drop(writer.await.unwrap());
    assert!(matches!(transport.recv().await, Err(Error::SessionClosed)));
}
