//! Noise sessions: mutual authentication bound to DIDs, and frames that are altered, replayed or
//! from the wrong peer breaking the session.
//!
//! Attacks pinned here: a man in the middle presenting another DID (`connecting_to_the_wrong_peer…`);
//! altered, replayed, reordered or dropped frames (`altered_and_replayed_frames…`); oversized envelopes
//! and malformed pieces (`oversized…`, `envelopes_larger_than_a_frame…`); a peer that goes silent mid
//! handshake (`a_peer_that_goes_silent…`). In `src/session/mod.rs`: a DID whose key is not the Noise key,
//! a signature over another handshake, a proof without the KLP context or in the other role, a handshake
//! with another prologue, malformed frame pieces.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic, missing_docs)]

use futures::executor::block_on;
use kai_klp::sealed::{Envelope, MessageKind};
use kai_klp::session::{FrameTransport, MemoryTransport, accept, connect, memory_pair};
use kai_klp::{Error, Identity};
use serde_json::json;

fn copy(identity: &Identity) -> Identity {
    Identity::from_secret_bytes(&identity.secret_bytes())
}

#[test]
fn both_sides_learn_each_others_did_and_exchange_envelopes() {
    let (alice, bob) = (Identity::generate(), Identity::generate());
    let (a, b) = memory_pair();
    let bob_did = bob.did();
    let (client, server) =
        block_on(async { futures::join!(connect(copy(&alice), Some(&bob_did), a), accept(copy(&bob), b)) });
    let (mut client, mut server) = (client.unwrap(), server.unwrap());
    assert_eq!(*client.peer(), bob.did());
    assert_eq!(*server.peer(), alice.did());

    block_on(async {
        let request = Envelope::new(&alice, &bob.did(), MessageKind::CallRequest, json!({"input": "hi"}));
        client.send(&request).await.unwrap();
        assert_eq!(server.recv().await.unwrap(), request);
        let response = Envelope::new(
            &bob,
            &alice.did(),
            MessageKind::CallResponse,
            json!({"answer": "hello"}),
        );
        server.send(&response).await.unwrap();
        assert_eq!(client.recv().await.unwrap(), response);
        // An envelope naming someone else is refused before it is sent.
        let stray = Envelope::new(&alice, &Identity::generate().did(), MessageKind::Direct, json!(1));
        assert!(matches!(client.send(&stray).await, Err(Error::SessionBroken { .. })));
    });
}

#[test]
fn connecting_to_the_wrong_peer_fails_the_handshake() {
    let (alice, bob, carol) = (Identity::generate(), Identity::generate(), Identity::generate());
    let (a, b) = memory_pair();
    let carol_did = carol.did();
    let (client, _server) = block_on(async { futures::join!(connect(alice, Some(&carol_did), a), accept(bob, b)) });
    assert!(matches!(client, Err(Error::Handshake { .. })));
}

/// The server's end of a connection, changing the `n`-th frame it receives (counted from 0) with `edit`,
/// which may also duplicate it.
struct Tamper {
    inner: MemoryTransport,
    seen: usize,
    n: usize,
    edit: fn(Vec<u8>) -> Vec<Vec<u8>>,
    queue: std::collections::VecDeque<Vec<u8>>,
}

#[kai_core::async_trait]
impl FrameTransport for Tamper {
    async fn send(&mut self, frame: &[u8]) -> Result<(), Error> {
        self.inner.send(frame).await
    }

    async fn recv(&mut self) -> Result<Vec<u8>, Error> {
        if let Some(frame) = self.queue.pop_front() {
            return Ok(frame);
        }
        let frame = self.inner.recv().await?;
        let index = self.seen;
        self.seen += 1;
        if index != self.n {
            return Ok(frame);
        }
        let mut out = (self.edit)(frame).into_iter();
        let first = out.next().unwrap_or_default();
        self.queue.extend(out);
        Ok(first)
    }
}

/// Runs a session whose server receives frame 2 (the first envelope; 0 and 1 are handshake) edited.
fn session_through(edit: fn(Vec<u8>) -> Vec<Vec<u8>>) -> Vec<Result<Envelope, Error>> {
    let (alice, bob) = (Identity::generate(), Identity::generate());
    let (client_end, server_end) = memory_pair();
    let server_end = Tamper {
        inner: server_end,
        seen: 0,
        n: 2,
        edit,
        queue: Default::default(),
    };
    block_on(async {
        let (client, server) = futures::join!(connect(copy(&alice), None, client_end), accept(copy(&bob), server_end));
        let (mut client, mut server) = (client.unwrap(), server.unwrap());
        for i in 0..2 {
            client
                .send(&Envelope::new(&alice, &bob.did(), MessageKind::Direct, json!(i)))
                .await
                .unwrap();
        }
        let mut received = Vec::new();
        for _ in 0..2 {
            received.push(server.recv().await);
        }
        received
    })
}

#[test]
fn altered_and_replayed_frames_break_the_session() {
    let untouched = session_through(|frame| vec![frame]);
    assert!(untouched.iter().all(Result::is_ok), "{untouched:?}");

    let altered = session_through(|mut frame| {
        frame[10] ^= 1;
        vec![frame]
    });
    assert!(matches!(altered[0], Err(Error::SessionBroken { .. })), "{altered:?}");

    let replayed = session_through(|frame| vec![frame.clone(), frame]);
    assert!(replayed[0].is_ok());
    assert!(matches!(replayed[1], Err(Error::SessionBroken { .. })), "{replayed:?}");
}

#[test]
fn oversized_and_closed_transports_are_errors() {
    let (mut a, mut b) = memory_pair();
    block_on(async {
        assert!(matches!(
            a.send(&vec![0u8; 70_000]).await,
            Err(Error::SessionBroken { .. })
        ));
        drop(a);
        assert!(matches!(b.recv().await, Err(Error::SessionClosed)));
    });
}

/// A connected client (Alice) and server (Bob) over memory.
fn pair() -> (
    Identity,
    Identity,
    kai_klp::session::Session<MemoryTransport>,
    kai_klp::session::Session<MemoryTransport>,
) {
    let (alice, bob) = (Identity::generate(), Identity::generate());
    let (a, b) = memory_pair();
    let (client, server) = block_on(async { futures::join!(connect(copy(&alice), None, a), accept(copy(&bob), b)) });
    (alice, bob, client.unwrap(), server.unwrap())
}

#[test]
fn envelopes_larger_than_a_frame_cross_in_pieces_within_the_receivers_limit() {
    let (alice, bob, mut client, server) = pair();
    let big = Envelope::new(&alice, &bob.did(), MessageKind::Direct, json!("x".repeat(300_000)));
    let small = Envelope::new(&alice, &bob.did(), MessageKind::Direct, json!("after"));
    let mut server = server;
    block_on(async {
        let (sent, received) = futures::join!(
            async {
                client.send(&big).await?;
                client.send(&small).await
            },
            async { (server.recv().await, server.recv().await) }
        );
        sent.unwrap();
        assert_eq!(received.0.unwrap(), big);
        assert_eq!(received.1.unwrap(), small);
    });

    let (alice, bob, mut client, server) = pair();
    let mut server = server.with_max_message_bytes(100_000);
    let big = Envelope::new(&alice, &bob.did(), MessageKind::Direct, json!("x".repeat(300_000)));
    block_on(async {
        let (_, received) = futures::join!(client.send(&big), server.recv());
        assert!(
            matches!(&received, Err(Error::SessionBroken { reason }) if reason.contains("100000")),
            "{received:?}"
        );
    });
}

#[test]
fn a_send_that_failed_half_way_leaves_the_session_broken() {
    let (alice, bob, mut client, server) = pair();
    drop(server);
    let message = Envelope::new(&alice, &bob.did(), MessageKind::Direct, json!("hello"));
    block_on(async {
        assert!(matches!(client.send(&message).await, Err(Error::SessionClosed)));
        let again = client.send(&message).await;
        assert!(
            matches!(&again, Err(Error::SessionBroken { reason }) if reason.contains("earlier")),
            "{again:?}"
        );
        assert!(matches!(client.recv().await, Err(Error::SessionBroken { .. })));
    });
}

#[test]
fn a_peer_that_goes_silent_fails_the_handshake_in_time() {
    let (_silent, ours) = memory_pair();
    let started = std::time::Instant::now();
    let result = block_on(kai_klp::session::accept_within(
        std::time::Duration::from_millis(200),
        Identity::generate(),
        ours,
    ));
    assert!(
        matches!(&result, Err(Error::Handshake { reason }) if reason.contains("did not complete")),
        "{result:?}"
    );
    assert!(started.elapsed() < std::time::Duration::from_secs(5));
}
