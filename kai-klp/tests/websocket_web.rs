//! A wasm32 agent (run under Node by `scripts/wasm-test.sh`) opens a KLP session over the host's
//! WebSocket to a native agent (`examples/ws_echo.rs`) and exchanges envelopes with it, including one
//! that needs several frames; a session to the wrong DID fails its handshake.
#![cfg(all(feature = "websocket", target_arch = "wasm32"))]
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic, missing_docs)]

use kai_klp::sealed::{Envelope, MessageKind};
use kai_klp::session::{WebSocketTransport, connect};
use kai_klp::{Did, Error, Identity};
use wasm_bindgen_test::wasm_bindgen_test;

/// Where the native echo agent listens, and its DID, fixed when the test is built.
const URL: &str = env!("KAI_KLP_WS_URL");
const SERVER: &str = env!("KAI_KLP_WS_DID");

#[wasm_bindgen_test]
async fn a_wasm_agent_talks_to_a_native_agent_over_websocket() {
    let server: Did = SERVER.parse().unwrap();
    let me = Identity::generate();
    let transport = WebSocketTransport::connect(URL).await.unwrap();
    let mut session = connect(
        Identity::from_secret_bytes(&me.secret_bytes()),
        Some(&server),
        transport,
    )
    .await
    .unwrap();
    assert_eq!(*session.peer(), server);
    for body in [
        serde_json::json!({"hello": "from wasm"}),
        serde_json::json!("z".repeat(150_000)),
    ] {
        let message = Envelope::new(&me, &server, MessageKind::Direct, body.clone());
        assert!(message.created > 1_700_000_000, "the wasm clock works");
        session.send(&message).await.unwrap();
        let reply = session.recv().await.unwrap();
        assert_eq!((reply.from, reply.to), (server, me.did()));
        assert_eq!(reply.body, serde_json::json!({"echo": body}));
    }
}

#[wasm_bindgen_test]
async fn connecting_to_the_wrong_did_over_websocket_fails_the_handshake() {
    let someone_else = Identity::generate().did();
    let transport = WebSocketTransport::connect(URL).await.unwrap();
    let result = connect(Identity::generate(), Some(&someone_else), transport).await;
    assert!(matches!(result, Err(Error::Handshake { .. })), "{result:?}");
}

#[wasm_bindgen_test]
async fn nobody_listening_is_an_error() {
    let result = WebSocketTransport::connect("ws://127.0.0.1:9/klp").await;
    assert!(matches!(result, Err(Error::Io(_))), "{result:?}");
}
