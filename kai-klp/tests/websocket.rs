//! Sessions over real WebSockets on loopback, and peers that send what a KLP WebSocket must refuse.
#![cfg(all(feature = "websocket", not(target_arch = "wasm32")))]
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic, missing_docs)]

use futures::{SinkExt as _, StreamExt as _};
use kai_klp::sealed::{Envelope, MessageKind};
use kai_klp::session::{WebSocketTransport, accept, connect};
use kai_klp::{Error, Identity};
use tokio::net::TcpListener;
use tokio_tungstenite::tungstenite::Message;

/// A listener whose first connection is accepted as a KLP session for `identity`; resolves to the
/// first envelope received (or the error).
async fn klp_server(identity: Identity) -> (String, tokio::task::JoinHandle<Result<Envelope, Error>>) {
    let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let url = format!("ws://{}/klp", listener.local_addr().unwrap());
    let server = tokio::spawn(async move {
        let (stream, _) = listener.accept().await.unwrap();
        let transport = WebSocketTransport::accept(stream).await?;
        let mut session = accept(Identity::from_secret_bytes(&identity.secret_bytes()), transport).await?;
        let first = session.recv().await?;
        let reply = Envelope::new(&identity, &first.from, MessageKind::Direct, first.body.clone());
        session.send(&reply).await?;
        Ok(first)
    });
    (url, server)
}

#[tokio::test]
async fn a_session_over_loopback_websocket_carries_small_and_multi_frame_envelopes() {
    let (alice, bob) = (Identity::generate(), Identity::generate());
    let (url, server) = klp_server(Identity::from_secret_bytes(&bob.secret_bytes())).await;
    let transport = WebSocketTransport::connect(&url).await.unwrap();
    let bob_did = bob.did();
    let mut session = connect(
        Identity::from_secret_bytes(&alice.secret_bytes()),
        Some(&bob_did),
        transport,
    )
    .await
    .unwrap();
    let big = Envelope::new(
        &alice,
        &bob_did,
        MessageKind::Direct,
        serde_json::json!("y".repeat(200_000)),
    );
    session.send(&big).await.unwrap();
    let echoed = session.recv().await.unwrap();
    assert_eq!((echoed.from, &echoed.body), (bob_did, &big.body));
    assert_eq!(server.await.unwrap().unwrap(), big);
}

/// What the KLP server makes of a raw WebSocket client that sends `message` first.
async fn server_receiving(message: Message) -> Result<Envelope, Error> {
    let (url, server) = klp_server(Identity::generate()).await;
    let (mut raw, _) = tokio_tungstenite::connect_async(url.as_str()).await.unwrap();
    let _ = raw.send(message).await;
    let result = server.await.unwrap();
    drop(raw.next().await);
    result
}

#[tokio::test]
async fn text_oversized_and_non_websocket_peers_are_errors_not_panics() {
    let text = server_receiving(Message::text("hello")).await;
    assert!(matches!(text, Err(Error::SessionBroken { .. })), "{text:?}");

    let oversized = server_receiving(Message::binary(vec![0u8; 100_000])).await;
    assert!(matches!(oversized, Err(Error::SessionBroken { .. })), "{oversized:?}");

    let closed = server_receiving(Message::Close(None)).await;
    assert!(matches!(closed, Err(Error::SessionClosed)), "{closed:?}");

    // A peer that does not speak WebSocket at all fails the upgrade.
    let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let address = listener.local_addr().unwrap();
    let client = tokio::spawn(async move {
        use tokio::io::AsyncWriteExt as _;
        let mut stream = tokio::net::TcpStream::connect(address).await.unwrap();
        stream.write_all(b"\x16\x03\x01garbage\r\n\r\n").await.unwrap();
    });
    let (stream, _) = listener.accept().await.unwrap();
    assert!(matches!(WebSocketTransport::accept(stream).await, Err(Error::Io(_))));
    client.await.unwrap();

    // Nothing listening.
    let nobody = format!("ws://{address}/klp");
    drop(listener);
    assert!(matches!(WebSocketTransport::connect(&nobody).await, Err(Error::Io(_))));
}
