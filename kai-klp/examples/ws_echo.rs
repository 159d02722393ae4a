//! A KLP agent that accepts sessions over WebSocket and answers every envelope with an echo of its
//! body: the native peer for the wasm transport test (`scripts/wasm-test.sh`), and a starting point
//! for a WebSocket gateway.
//!
//! Run: `cargo run -p kai-klp --features websocket --example ws_echo [port]`. It prints
//! `listening ws://127.0.0.1:<port>/klp <did>` when ready.

use kai_klp::sealed::{Envelope, MessageKind};
use kai_klp::session::{WebSocketTransport, accept};
use kai_klp::{Error, Identity};
use tokio::net::TcpListener;

#[tokio::main]
async fn main() -> Result<(), Box<dyn std::error::Error>> {
    let port: u16 = std::env::args().nth(1).map(|p| p.parse()).transpose()?.unwrap_or(0);
    let listener = TcpListener::bind(("127.0.0.1", port)).await?;
    let me = Identity::generate();
    println!("listening ws://{}/klp {}", listener.local_addr()?, me.did());
    loop {
        let (stream, _) = listener.accept().await?;
        let secret = me.secret_bytes();
        tokio::spawn(async move {
            let me = Identity::from_secret_bytes(&secret);
            if let Err(error) = echo(me, stream).await {
                eprintln!("session ended: {error}");
            }
        });
    }
}

async fn echo(me: Identity, stream: tokio::net::TcpStream) -> Result<(), Error> {
    let transport = WebSocketTransport::accept(stream).await?;
    let mut session = accept(Identity::from_secret_bytes(&me.secret_bytes()), transport).await?;
    loop {
        let request = match session.recv().await {
            Ok(request) => request,
            Err(Error::SessionClosed) => return Ok(()),
            Err(error) => return Err(error),
        };
        let reply = Envelope::new(
            &me,
            &request.from,
            MessageKind::Direct,
            serde_json::json!({"echo": request.body}),
        );
        session.send(&reply).await?;
    }
}
